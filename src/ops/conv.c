/* conv ops. (No ops implemented yet.) */
#include "ops/ops.h"

const ib__op_def ib__ops_conv[] = {
    {IB_OP_UNKNOWN, NULL, NULL},
};
