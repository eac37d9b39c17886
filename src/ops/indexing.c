/* indexing ops. (No ops implemented yet.) */
#include "ops/ops.h"

const ib__op_def ib__ops_indexing[] = {
    {IB_OP_UNKNOWN, NULL, NULL},
};
