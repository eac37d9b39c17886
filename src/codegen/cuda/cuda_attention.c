/* CUDA kernel template cuda_attention: the fused group MatMul(Q, K^T) -> scale ->
 * [Add mask] -> Softmax -> MatMul(., V) with one block per query row: the row of Q in
 * shared memory, its scores against every key in shared memory (never in global memory),
 * block max and sum for the softmax, then the probabilities times V, one output column
 * per thread. Keys up to 4096 and head dims up to 1024. */
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cuda_emit.h"
#include "codegen/templates/attention.h"

#define ATT_MAX_KEYS 4096
#define ATT_MAX_DIM 1024

static bool analyze(const ib__plan *plan, const ib__pkernel *k, ib__att_desc *g) {
    if (!ib__target_is_cuda(&plan->target) || !ib__attention_analyze(plan, k, g)) return false;
    return g->S2 <= ATT_MAX_KEYS && g->D <= ATT_MAX_DIM && g->batch * g->S <= 0x7fffffff;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ib__att_desc g;
    return analyze(plan, k, &g);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    ib__att_desc g;
    if (!analyze(plan, k, &g)) return;
    int64_t t = 32, w = g.S2 > g.Dv ? g.S2 : g.Dv;
    while (t < 256 && t < w) t *= 2;
    ib__knobs_set(knobs, "threads", t);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    ib__att_desc g;
    return analyze(plan, k, &g) && ib__cuda_threads_valid(knobs, 128);
}

static ib_status launch(const ib__plan *plan, const ib__pkernel *k, ib__launch_dims *out) {
    ib__att_desc g;
    if (!analyze(plan, k, &g)) return ib__error(IB_ERR_INTERNAL, "cuda_attention: unsupported kernel");
    int32_t t = (int32_t)ib__knobs_get(&k->knobs, "threads", 128);
    ib__cuda_launch_1d(g.batch * g.S * t, t, out);
    return IB_OK;
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    ib__att_desc g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "cuda_attention: %s is not supported", ib__node_label(k->nodes[0]));
    const long long T = ib__knobs_get(&k->knobs, "threads", 128);
    const long long S = g.S, S2 = g.S2, D = g.D, Dv = g.Dv;
    char scale[48];
    ib__sb_line(sb, "/* %s: fused attention from %s, %lld x [%lld queries x %lld keys], d %lld, dv %lld%s */",
                k->fn_name, ib__node_label(k->nodes[0]), (long long)g.batch, S, S2, D, Dv,
                g.has_mask ? ", masked" : "");
    ib__cuda_signature(sb, k, (int32_t)T);
    sb->indent = 4;
    ib__sb_line(sb, "__shared__ float red[32], qs[%lld], p[%lld];", D, S2);
    ib__sb_line(sb, "const int64_t b = blockIdx.x / %lld, row = blockIdx.x %% %lld;", S, S);
    ib__sb_line(sb, "const float *q = a%d + (b * %lldll + row) * %lld;", (int)g.q_arg, S, D);
    ib__sb_line(sb, "const float *kt = a%d + b * %lldll;", (int)g.k_arg, D * S2);
    ib__sb_line(sb, "const float *v = a%d + b * %lldll;", (int)g.v_arg, S2 * Dv);
    ib__sb_line(sb, "float *y = a%d + (b * %lldll + row) * %lld;", (int)k->n_in, S, Dv);
    if (g.has_mask) {
        /* the mask's offset for this (batch, row): its broadcast strides */
        ib__sb_line(sb, "int64_t mo = row * %lldll, r_ = b;", (long long)g.m_row);
        for (int32_t d = g.nbd - 1; d >= 0; d--)
            ib__sb_line(sb, "mo += (r_ %% %lldll) * %lldll; r_ /= %lldll;", (long long)g.bdims[d],
                        (long long)g.m_bstride[d], (long long)g.bdims[d]);
        ib__sb_line(sb, "const float *mask = a%d + mo;", (int)g.m_arg);
    }
    ib__sb_line(sb, "for (int i = threadIdx.x; i < %lld; i += %lld) qs[i] = q[i];", D, T);
    ib__sb_line(sb, "__syncthreads();");
    ib__sb_line(sb, "float m = -INFINITY;");
    ib__sb_line(sb, "for (int64_t j = threadIdx.x; j < %lld; j += %lld) {", S2, T);
    ib__sb_line(sb, "    float s = 0.0f;");
    ib__sb_line(sb, "    for (int d = 0; d < %lld; d++) s = fmaf(qs[d], kt[(int64_t)d * %lld + j], s);", D, S2);
    ib__sb_line(sb, "    s *= %s;", ib__cuda_flit(scale, sizeof scale, g.scale));
    if (g.has_mask) ib__sb_line(sb, "    s += mask[j * %lldll];", (long long)g.m_col);
    ib__sb_line(sb, "    p[j] = s;");
    ib__sb_line(sb, "    m = fmaxf(m, s);");
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "m = ib_block_max(m, red);");
    ib__sb_line(sb, "float sum = 0.0f;");
    ib__sb_line(sb, "for (int64_t j = threadIdx.x; j < %lld; j += %lld) { float e = expf(p[j] - m); p[j] = e; sum += e; }", S2, T);
    ib__sb_line(sb, "const float inv = 1.0f / ib_block_sum(sum, red);"); /* also orders p[] */
    ib__sb_line(sb, "for (int64_t c = threadIdx.x; c < %lld; c += %lld) {", Dv, T);
    ib__sb_line(sb, "    float acc = 0.0f;");
    ib__sb_line(sb, "    for (int64_t j = 0; j < %lld; j++) acc = fmaf(p[j], v[j * %lldll + c], acc);", S2, Dv);
    ib__sb_line(sb, "    y[c] = acc * inv;");
    ib__sb_line(sb, "}");
    sb->indent = 0;
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    ib__att_desc g;
    if (!analyze(plan, k, &g)) return 0.0;
    return (double)g.batch * (double)g.S * (double)g.S2 * (2.0 * (double)g.D + 2.0 * (double)g.Dv + 5.0);
}

const ib__kernel_template ib__template_cuda_attention = {
    .name = "cuda_attention",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = flops,
    .launch = launch,
};
