/* CUDA kernel template cuda_softmax: Softmax / LogSoftmax over the last axis (opset 13;
 * before 13 over the flattened trailing dims from `axis`), one block per row: block max,
 * block sum of exponentials, then the normalised row with the fused epilogue. */
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cuda_emit.h"

typedef struct smx_g {
    int64_t rows, len;
    bool log;
} smx_g;

static bool analyze(const ib__plan *plan, const ib__pkernel *k, smx_g *g) {
    memset(g, 0, sizeof *g);
    if (!ib__target_is_cuda(&plan->target)) return false;
    if (!k->nodes || k->n_nodes < 1 || k->n_in != 1 || k->n_out != 1) return false;
    const ib__node *n = k->nodes[0];
    if (n->op != IB_OP_SOFTMAX && n->op != IB_OP_LOG_SOFTMAX) return false;
    g->log = n->op == IB_OP_LOG_SOFTMAX;
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
    if (ib__attr_int(n, "axis", n->opset >= 13 ? -1 : 1, &axis)) return false;
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis >= x->rank) return false;
    if (n->opset >= 13 && axis != x->rank - 1) return false;
    g->rows = g->len = 1;
    for (int32_t d = 0; d < x->rank; d++) {
        if (d < axis) g->rows *= x->dims[d];
        else g->len *= x->dims[d];
    }
    if (g->len < 1 || g->rows < 1 || g->rows > ((int64_t)1 << 31)) return false;
    return ib__cuda_epilogue_ok(plan, k, g->len, g->rows * g->len);
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    smx_g g;
    return analyze(plan, k, &g);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    smx_g g;
    if (!analyze(plan, k, &g)) return;
    int64_t t = 32;
    while (t < 1024 && t * 4 < g.len) t *= 2; /* about four elements per thread */
    ib__knobs_set(knobs, "threads", t);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    smx_g g;
    return analyze(plan, k, &g) && ib__cuda_threads_valid(knobs, 128);
}

static ib_status launch(const ib__plan *plan, const ib__pkernel *k, ib__launch_dims *out) {
    smx_g g;
    if (!analyze(plan, k, &g)) return ib__error(IB_ERR_INTERNAL, "cuda_softmax: unsupported kernel");
    int32_t t = (int32_t)ib__knobs_get(&k->knobs, "threads", 128);
    ib__cuda_launch_1d(g.rows * t, t, out);
    return IB_OK;
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    smx_g g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "cuda_softmax: %s is not supported", ib__node_label(k->nodes[0]));
    const long long T = ib__knobs_get(&k->knobs, "threads", 128), L = g.len;
    ib__sb_line(sb, "/* %s: %s over %lld rows of %lld, a block per row */", k->fn_name,
                ib__node_label(k->nodes[0]), (long long)g.rows, L);
    ib__cuda_signature(sb, k, (int32_t)T);
    sb->indent = 4;
    ib__sb_line(sb, "__shared__ float red[32];");
    ib__sb_line(sb, "const int64_t r = blockIdx.x;");
    ib__sb_line(sb, "const float *x = a0 + r * %lldll;", L);
    ib__sb_line(sb, "float *y = a1 + r * %lldll;", L);
    ib__sb_line(sb, "float m = -INFINITY;");
    ib__sb_line(sb, "for (int64_t j = threadIdx.x; j < %lld; j += %lld) m = fmaxf(m, x[j]);", L, T);
    ib__sb_line(sb, "m = ib_block_max(m, red);");
    ib__sb_line(sb, "float s = 0.0f;");
    ib__sb_line(sb, "for (int64_t j = threadIdx.x; j < %lld; j += %lld) s += expf(x[j] - m);", L, T);
    ib__sb_line(sb, "s = ib_block_sum(s, red);");
    if (g.log) ib__sb_line(sb, "const float sh = m + logf(s);");
    else ib__sb_line(sb, "const float inv = 1.0f / s;");
    IB_TRY(ib__sb_status(sb));
    return ib__cuda_emit_row_store(sb, k, L, T, g.log ? "x[j] - sh" : "expf(x[j] - m) * inv");
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    smx_g g;
    return analyze(plan, k, &g) ? 5.0 * (double)g.rows * (double)g.len : 0.0;
}

const ib__kernel_template ib__template_cuda_softmax = {
    .name = "cuda_softmax",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = flops,
    .launch = launch,
};
