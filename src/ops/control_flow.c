/* control_flow ops. (No ops implemented yet.) */
#include "ops/ops.h"

const ib__op_def ib__ops_control_flow[] = {
    {IB_OP_UNKNOWN, NULL, NULL},
};
