/* CUDA kernel template cuda_layernorm: LayerNormalization (the ONNX op, or the synthetic
 * one the fusion pass puts first for the decomposed pattern) over the trailing dims from
 * `axis`, one block per row: mean and variance by block reductions (two passes over the
 * row, which stays in L1/L2), then scale, shift and the fused epilogue. */
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cuda_emit.h"

typedef struct ln_g {
    int64_t rows, len;
    float eps;
    bool has_beta;
} ln_g;

static bool vec_buf(const ib__plan *plan, int32_t id, int64_t len) {
    if (id < 0 || id >= plan->n_bufs) return false;
    const ib__pbuf *b = &plan->bufs[id];
    if (b->dtype != IB_DTYPE_FLOAT32 || b->layout == IB_LAYOUT_NCHWC) return false;
    int64_t c = 1;
    for (int32_t d = 0; d < b->rank; d++) c *= b->dims[d];
    return c == len;
}

static bool analyze(const ib__plan *plan, const ib__pkernel *k, ln_g *g) {
    memset(g, 0, sizeof *g);
    if (!ib__target_is_cuda(&plan->target)) return false;
    if (!k->nodes || k->n_nodes < 1 || k->n_in < 2 || k->n_in > 3 || k->n_out != 1) return false;
    const ib__node *a = k->nodes[0];
    if (a->op != IB_OP_LAYER_NORMALIZATION) return false;
    for (int32_t o = 1; o < a->n_outputs; o++)
        if (a->outputs[o] && a->outputs[o]->n_uses > 0) return false;
    for (int i = 0; i < 2; i++) {
        int32_t id = i ? k->out[0] : k->in[0];
        if (id < 0 || id >= plan->n_bufs) return false;
        if (plan->bufs[id].dtype != IB_DTYPE_FLOAT32 || plan->bufs[id].layout != IB_LAYOUT_PLAIN)
            return false;
    }
    const ib__pbuf *x = &plan->bufs[k->in[0]], *y = &plan->bufs[k->out[0]];
    if (x->rank < 1 || x->rank != y->rank) return false;
    for (int32_t d = 0; d < x->rank; d++)
        if (x->dims[d] < 0 || x->dims[d] != y->dims[d]) return false;
    int64_t axis;
    if (ib__attr_int(a, "axis", -1, &axis) || ib__attr_float(a, "epsilon", 1e-5f, &g->eps)) return false;
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis >= x->rank || !(g->eps >= 0.0f && g->eps < 1e30f)) return false;
    g->rows = g->len = 1;
    for (int32_t d = 0; d < x->rank; d++) {
        if (d < axis) g->rows *= x->dims[d];
        else g->len *= x->dims[d];
    }
    if (g->len < 1 || g->rows < 1 || g->rows > ((int64_t)1 << 31)) return false;
    if (!vec_buf(plan, k->in[1], g->len)) return false;
    g->has_beta = k->n_in == 3 && k->in[2] >= 0;
    if (g->has_beta && !vec_buf(plan, k->in[2], g->len)) return false;
    return ib__cuda_epilogue_ok(plan, k, g->len, g->rows * g->len);
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ln_g g;
    return analyze(plan, k, &g);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    ln_g g;
    if (!analyze(plan, k, &g)) return;
    int64_t t = 32;
    while (t < 1024 && t * 4 < g.len) t *= 2;
    ib__knobs_set(knobs, "threads", t);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    ln_g g;
    return analyze(plan, k, &g) && ib__cuda_threads_valid(knobs, 128);
}

static ib_status launch(const ib__plan *plan, const ib__pkernel *k, ib__launch_dims *out) {
    ln_g g;
    if (!analyze(plan, k, &g)) return ib__error(IB_ERR_INTERNAL, "cuda_layernorm: unsupported kernel");
    int32_t t = (int32_t)ib__knobs_get(&k->knobs, "threads", 128);
    ib__cuda_launch_1d(g.rows * t, t, out);
    return IB_OK;
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    ln_g g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "cuda_layernorm: %s is not supported", ib__node_label(k->nodes[0]));
    const long long T = ib__knobs_get(&k->knobs, "threads", 128), L = g.len;
    char eps[48];
    ib__sb_line(sb, "/* %s: %s over %lld rows of %lld, a block per row */", k->fn_name,
                ib__node_label(k->nodes[0]), (long long)g.rows, L);
    ib__cuda_signature(sb, k, (int32_t)T);
    sb->indent = 4;
    ib__sb_line(sb, "__shared__ float red[32];");
    ib__sb_line(sb, "const int64_t r = blockIdx.x;");
    ib__sb_line(sb, "const float *x = a0 + r * %lldll;", L);
    ib__sb_line(sb, "float *y = a%d + r * %lldll;", (int)k->n_in, L);
    ib__sb_line(sb, "float s = 0.0f;");
    ib__sb_line(sb, "for (int64_t j = threadIdx.x; j < %lld; j += %lld) s += x[j];", L, T);
    ib__sb_line(sb, "const float mean = ib_block_sum(s, red) * (1.0f / %lld.0f);", L);
    ib__sb_line(sb, "float q = 0.0f;");
    ib__sb_line(sb, "for (int64_t j = threadIdx.x; j < %lld; j += %lld) { float d = x[j] - mean; q += d * d; }", L, T);
    ib__sb_line(sb, "const float rstd = rsqrtf(ib_block_sum(q, red) * (1.0f / %lld.0f) + %s);", L,
                ib__cuda_flit(eps, sizeof eps, g.eps));
    IB_TRY(ib__sb_status(sb));
    return ib__cuda_emit_row_store(sb, k, L, T, g.has_beta ? "(x[j] - mean) * rstd * a1[j] + a2[j]"
                                                           : "(x[j] - mean) * rstd * a1[j]");
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    ln_g g;
    return analyze(plan, k, &g) ? 8.0 * (double)g.rows * (double)g.len : 0.0;
}

const ib__kernel_template ib__template_cuda_layernorm = {
    .name = "cuda_layernorm",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = flops,
    .launch = launch,
};
