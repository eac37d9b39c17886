/* signal ops. (No ops implemented yet.) */
#include "ops/ops.h"

const ib__op_def ib__ops_signal[] = {
    {IB_OP_UNKNOWN, NULL, NULL},
};
