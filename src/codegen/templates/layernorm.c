/* Kernel template layernorm. (Not written yet: supports nothing.) */
#include "codegen/plan.h"

static bool supports(const ib__plan *plan, const ib__pkernel *k) { return false; }

const ib__kernel_template ib__template_layernorm = {
    .name = "layernorm",
    .supports = supports,
};
