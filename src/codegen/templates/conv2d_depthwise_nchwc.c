/* Kernel template conv2d_depthwise_nchwc. (Not written yet: supports nothing.) */
#include "codegen/plan.h"

static bool supports(const ib__plan *plan, const ib__pkernel *k) { return false; }

const ib__kernel_template ib__template_conv2d_depthwise_nchwc = {
    .name = "conv2d_depthwise_nchwc",
    .supports = supports,
};
