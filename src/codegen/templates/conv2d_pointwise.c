/* Kernel template conv2d_pointwise: 1x1, stride-1, unpadded Conv on NCHW[b]c, i.e. a
 * GEMM with the pixels as M. It is conv2d_nchwc's emitter (conv2d_nchwc.c) on the
 * degenerate geometry, where every tile is interior and the packed weights are the
 * [OC/b][IC/b][ib][ob] GEMM panel; kept as its own template so the planner and the
 * tuner can tell the two apart (their best knobs differ). */
#include "codegen/templates/conv2d_nchwc.h"

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ib__conv_geom g;
    if (!ib__conv_nchwc_supports_common(plan, k, &g)) return false;
    return g.group == 1 && g.KH == 1 && g.KW == 1 && g.SH == 1 && g.SW == 1 && g.PT == 0 &&
           g.PL == 0 && g.IH == g.OH && g.IW == g.OW;
}

const ib__kernel_template ib__template_conv2d_pointwise = {
    .name = "conv2d_pointwise",
    .supports = supports,
    .preferred_layout = ib__conv_nchwc_preferred_layout,
    .default_knobs = ib__conv_nchwc_default_knobs,
    .knobs_valid = ib__conv_nchwc_knobs_valid,
    .pack_weights = ib__conv_nchwc_pack_weights,
    .emit = ib__conv_nchwc_emit,
    .flops = ib__conv_nchwc_flops,
};
