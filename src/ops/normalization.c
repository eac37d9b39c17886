/* normalization ops. (No ops implemented yet.) */
#include "ops/ops.h"

const ib__op_def ib__ops_normalization[] = {
    {IB_OP_UNKNOWN, NULL, NULL},
};
