/* Kernel template pool2d. (Not written yet: supports nothing.) */
#include "codegen/plan.h"

static bool supports(const ib__plan *plan, const ib__pkernel *k) { return false; }

const ib__kernel_template ib__template_pool2d = {
    .name = "pool2d",
    .supports = supports,
};
