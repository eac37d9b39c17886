/* binary ops. (No ops implemented yet.) */
#include "ops/ops.h"

const ib__op_def ib__ops_binary[] = {
    {IB_OP_UNKNOWN, NULL, NULL},
};
