/* tensor_shape ops. (No ops implemented yet.) */
#include "ops/ops.h"

const ib__op_def ib__ops_tensor_shape[] = {
    {IB_OP_UNKNOWN, NULL, NULL},
};
