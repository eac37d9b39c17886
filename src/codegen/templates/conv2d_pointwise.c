/* Kernel template conv2d_pointwise. (Not written yet: supports nothing.) */
#include "codegen/plan.h"

static bool supports(const ib__plan *plan, const ib__pkernel *k) { return false; }

const ib__kernel_template ib__template_conv2d_pointwise = {
    .name = "conv2d_pointwise",
    .supports = supports,
};
