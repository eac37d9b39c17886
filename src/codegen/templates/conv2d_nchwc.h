/* What the convolution templates share (conv2d_nchwc.c defines it): convolution
 * geometry read from a kernel's node and buffers, the NCHWc checks, and the
 * register-blocked direct-convolution emitter that conv2d_nchwc and conv2d_pointwise
 * both use. */
#ifndef IB_CODEGEN_TEMPLATES_CONV2D_NCHWC_H
#define IB_CODEGEN_TEMPLATES_CONV2D_NCHWC_H

#include "codegen/plan.h"

typedef struct ib__conv_geom {
    int64_t N, IC, IH, IW, OC, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL, group;
    int32_t B;  /* NCHWc block of the output */
    int32_t Bi; /* channel block of the input: B, or 1 for plain NCHW */
} ib__conv_geom;

/* Geometry of 2-D Conv kernel k (anchor nodes[0]) from its attributes and the shapes
 * of in[0], in[1] (weights, logical dims even once packed) and out[0]; checks that the
 * output dims are what the attributes give. */
ib_status ib__conv_geom_get(const ib__plan *plan, const ib__pkernel *k, ib__conv_geom *g);

/* Checks shared by the NCHWc conv templates: anchor Conv, float32, input and output
 * NCHWc with the same block that fits the target vector, constant weights and bias,
 * an optional foldable BatchNormalization in nodes[1], supported epilogue steps. */
bool ib__conv_nchwc_supports_common(const ib__plan *plan, const ib__pkernel *k,
                                    ib__conv_geom *g);

/* Per-channel epilogue operands that are constants become zero-padded copies of
 * OC rounded up to `block` (one for Div), so kernels read them a vector at a time. */
ib_status ib__conv_pad_channel_operands(ib__plan *plan, ib__pkernel *k, int64_t oc,
                                        int32_t block);

/* Adds k's packed weights (`bytes` of `packed`, described with the original weights'
 * logical dims) and its bias with the BatchNormalization folded in ((bias or 0) * scale +
 * shift, zero up to OC rounded to `block`) to the plan's weights, points inputs 1 and 2
 * at them (n_in = 3) and pads the per-channel epilogue operands. */
ib_status ib__conv_add_packed_weights(ib__plan *plan, ib__pkernel *k, int64_t oc, int32_t block,
                                      const float *packed, size_t bytes, const float *scale,
                                      const float *shift);

/* Reads BatchNormalization nodes[1] (when present) into per-channel scale and shift
 * (y = x * scale + shift), each oc floats; identity when absent. */
ib_status ib__conv_bn_fold(const ib__pkernel *k, int64_t oc, float *scale, float *shift);

/* The direct-convolution template's callbacks, shared with conv2d_pointwise. */
ib__layout ib__conv_nchwc_preferred_layout(const ib__plan *plan, const ib__node *anchor,
                                           const ib__target *target, int32_t *block);
void ib__conv_nchwc_default_knobs(const ib__plan *plan, const ib__pkernel *k,
                                  ib__knobs *knobs);
bool ib__conv_nchwc_knobs_valid(const ib__plan *plan, const ib__pkernel *k,
                                const ib__knobs *knobs);
ib_status ib__conv_nchwc_pack_weights(ib__plan *plan, ib__pkernel *k);
ib_status ib__conv_nchwc_emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *out);
double ib__conv_nchwc_flops(const ib__plan *plan, const ib__pkernel *k);

#endif /* IB_CODEGEN_TEMPLATES_CONV2D_NCHWC_H */
