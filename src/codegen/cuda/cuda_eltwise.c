/* CUDA kernel template cuda_eltwise: a chain of element-wise nodes (a unary or binary
 * anchor with numpy broadcasting, then fused epilogue steps) as one thread per output
 * element (grid-stride), operand offsets from the output index through compile-time
 * dims and broadcast strides. */
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cuda_emit.h"

typedef struct elt_g {
    int32_t rank;
    int64_t dims[IB_MAX_RANK];
    int64_t total;
    int32_t n_src;                       /* anchor inputs: 1 or 2 */
    int64_t stride[2][IB_MAX_RANK];      /* per anchor input, 0 where broadcast */
    bool contiguous[2];                  /* same shape as the output: index e directly */
    ib__epilogue_step anchor;
    bool extra;                          /* Neg/Abs/Exp/Reciprocal/Sqrt */
} elt_g;

static bool extra_unary(ib__op_id op) {
    return op == IB_OP_NEG || op == IB_OP_ABS || op == IB_OP_EXP || op == IB_OP_RECIPROCAL ||
           op == IB_OP_SQRT;
}

static bool analyze(const ib__plan *plan, const ib__pkernel *k, elt_g *g) {
    memset(g, 0, sizeof *g);
    if (!ib__target_is_cuda(&plan->target)) return false;
    if (!k->nodes || k->n_nodes < 1 || !k->nodes[0] || k->n_out != 1) return false;
    if (!ib__eltwise_anchor_step(k->nodes[0], extra_unary, &g->anchor, &g->extra)) return false;
    g->n_src = g->anchor.kind == IB_EPI_BINARY ? 2 : 1;
    /* Clip's min/max inputs are read as constants above, not as buffers */
    if (k->n_in < g->n_src || (k->n_in > g->n_src && k->nodes[0]->op != IB_OP_CLIP)) return false;
    int32_t ids[3] = {k->out[0], k->in[0], g->n_src > 1 ? k->in[1] : k->in[0]};
    for (int i = 0; i < 3; i++) {
        if (ids[i] < 0 || ids[i] >= plan->n_bufs) return false;
        if (plan->bufs[ids[i]].dtype != IB_DTYPE_FLOAT32 || plan->bufs[ids[i]].layout != IB_LAYOUT_PLAIN)
            return false;
    }
    const ib__pbuf *y = &plan->bufs[k->out[0]];
    g->rank = y->rank;
    g->total = 1;
    for (int32_t d = 0; d < y->rank; d++) {
        if (y->dims[d] < 0) return false;
        g->dims[d] = y->dims[d];
        g->total *= y->dims[d];
    }
    if (g->total < 1) return false;
    for (int32_t s = 0; s < g->n_src; s++) {
        const ib__pbuf *b = &plan->bufs[k->in[s]];
        if (b->rank > g->rank) return false;
        int64_t st = 1;
        bool same = b->rank == g->rank;
        for (int32_t d = g->rank - 1; d >= 0; d--) {
            int32_t bd = d - (g->rank - b->rank);
            int64_t n = bd >= 0 ? b->dims[bd] : 1;
            if (n != g->dims[d] && n != 1) return false;
            if (n != g->dims[d]) same = false;
            g->stride[s][d] = n == 1 ? 0 : st;
            st *= n;
        }
        g->contiguous[s] = same;
    }
    int64_t last = g->rank ? g->dims[g->rank - 1] : 1;
    return ib__cuda_epilogue_ok(plan, k, last, g->total);
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    elt_g g;
    return analyze(plan, k, &g);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    elt_g g;
    if (!analyze(plan, k, &g)) return;
    ib__knobs_set(knobs, "threads", 256);
    /* elements per thread: a grid of at most ~8 waves of the GPU's SMs */
    int64_t sms = plan->target.gpu_sm_count > 0 ? plan->target.gpu_sm_count : 100;
    int64_t per = g.total / (sms * 2048 * 8);
    ib__knobs_set(knobs, "elements_per_thread", per < 1 ? 1 : per > 64 ? 64 : per);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    elt_g g;
    int64_t t = ib__knobs_get(knobs, "threads", 256), p = ib__knobs_get(knobs, "elements_per_thread", 1);
    return analyze(plan, k, &g) && t >= 32 && t <= 1024 && t % 32 == 0 && p >= 1 && p <= 1024;
}

static ib_status launch(const ib__plan *plan, const ib__pkernel *k, ib__launch_dims *out) {
    elt_g g;
    if (!analyze(plan, k, &g)) return ib__error(IB_ERR_INTERNAL, "cuda_eltwise: unsupported kernel");
    int64_t p = ib__knobs_get(&k->knobs, "elements_per_thread", 1);
    ib__cuda_launch_1d((g.total + p - 1) / p, (int32_t)ib__knobs_get(&k->knobs, "threads", 256), out);
    return IB_OK;
}

/* The offset expression of anchor input s at output index e. */
static void src_index(const elt_g *g, int32_t s, char *buf, size_t cap) {
    if (g->contiguous[s]) {
        snprintf(buf, cap, "e");
        return;
    }
    size_t n = (size_t)snprintf(buf, cap, "0");
    int64_t inner = 1;
    for (int32_t d = g->rank - 1; d >= 0 && n < cap; d--) {
        if (g->stride[s][d] != 0)
            n += (size_t)snprintf(buf + n, cap - n, " + ((e / %lldll) %% %lldll) * %lldll",
                                  (long long)inner, (long long)g->dims[d], (long long)g->stride[s][d]);
        inner *= g->dims[d];
    }
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    elt_g g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "cuda_eltwise: %s is not supported", ib__node_label(k->nodes[0]));
    const long long T = ib__knobs_get(&k->knobs, "threads", 256);
    const int yo = k->n_in;
    char i0[1024], i1[1024], ch[64];
    src_index(&g, 0, i0, sizeof i0);
    src_index(&g, g.n_src > 1 ? 1 : 0, i1, sizeof i1);
    snprintf(ch, sizeof ch, "e %% %lldll", (long long)(g.rank ? g.dims[g.rank - 1] : 1));
    ib__sb_line(sb, "/* %s: %s and %d fused step(s) over %lld elements */", k->fn_name,
                ib__node_label(k->nodes[0]), (int)k->n_epi, (long long)g.total);
    ib__cuda_signature(sb, k, (int32_t)T);
    sb->indent = 4;
    ib__sb_line(sb, "const int64_t stride = (int64_t)gridDim.x * %lld;", T);
    ib__sb_line(sb, "for (int64_t e = (int64_t)blockIdx.x * %lld + threadIdx.x; e < %lldll; e += stride) {",
                T, (long long)g.total);
    sb->indent = 8;
    ib__sb_line(sb, "float v = a0[%s];", i0);
    if (g.extra) {
        switch (g.anchor.op) {
        case IB_OP_NEG: ib__sb_line(sb, "v = -v;"); break;
        case IB_OP_ABS: ib__sb_line(sb, "v = fabsf(v);"); break;
        case IB_OP_EXP: ib__sb_line(sb, "v = expf(v);"); break;
        case IB_OP_RECIPROCAL: ib__sb_line(sb, "v = 1.0f / v;"); break;
        case IB_OP_SQRT: ib__sb_line(sb, "v = sqrtf(v);"); break;
        default: return ib__error(IB_ERR_INTERNAL, "cuda_eltwise: op %s", ib__op_name(g.anchor.op));
        }
    } else {
        /* the anchor through the epilogue emitter: a kernel of one step */
        ib__pkernel one;
        memset(&one, 0, sizeof one);
        one.n_epi = 1;
        one.epi[0] = g.anchor;
        one.epi[0].operand_kind = IB_EPI_FULL;
        IB_TRY(ib__cuda_epilogue(sb, &one, 1, "v", "0", i1)); /* operand a1 */
    }
    IB_TRY(ib__cuda_epilogue(sb, k, k->n_in + k->n_out, "v", ch, "e"));
    ib__sb_line(sb, "a%d[e] = v;", yo);
    sb->indent = 4;
    ib__sb_line(sb, "}");
    sb->indent = 0;
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    elt_g g;
    return analyze(plan, k, &g) ? (double)g.total * (1.0 + k->n_epi) : 0.0;
}

const ib__kernel_template ib__template_cuda_eltwise = {
    .name = "cuda_eltwise",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = flops,
    .launch = launch,
};
