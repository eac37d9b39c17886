/* quantize ops. (No ops implemented yet.) */
#include "ops/ops.h"

const ib__op_def ib__ops_quantize[] = {
    {IB_OP_UNKNOWN, NULL, NULL},
};
