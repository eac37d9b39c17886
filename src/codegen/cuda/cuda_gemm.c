/* CUDA kernel template cuda_gemm: Gemm (transA/transB, alpha, beta, bias C) and MatMul
 * (2-D, or batched with B shared or batched like A) on the shared-memory tiled core
 * (fp32 SIMT, or tensor cores when the target's precision allows), bias and fused
 * epilogue applied on the way out. */
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cuda_emit.h"

enum { BIAS_NONE = 0, BIAS_SCALAR, BIAS_COL, BIAS_ROW, BIAS_FULL };

typedef struct gemm_g {
    int64_t M, N, K, batch;
    int64_t a_rs, a_cs, b_rs, b_cs, a_bs, b_bs;
    float alpha, beta;
    int bias;
} gemm_g;

static bool f32_plain(const ib__pbuf *b) {
    return b->dtype == IB_DTYPE_FLOAT32 && b->layout == IB_LAYOUT_PLAIN;
}

static int64_t prod(const int64_t *d, int32_t n) {
    int64_t p = 1;
    for (int32_t i = 0; i < n; i++) p *= d[i];
    return p;
}

static bool analyze(const ib__plan *plan, const ib__pkernel *k, gemm_g *g) {
    memset(g, 0, sizeof *g);
    if (!k->nodes || k->n_nodes < 1 || !k->nodes[0]) return false;
    const ib__node *n = k->nodes[0];
    if (n->op != IB_OP_GEMM && n->op != IB_OP_MAT_MUL) return false;
    if (k->n_in < 2 || k->n_in > 3 || k->n_out != 1) return false;
    /* a BatchNormalization folded after the anchor is not applied here */
    if (k->n_nodes > 1 && k->nodes[1] && k->nodes[1]->op == IB_OP_BATCH_NORMALIZATION) return false;
    for (int32_t i = 0; i < k->n_in + k->n_out; i++) {
        int32_t id = i < k->n_in ? k->in[i] : k->out[i - k->n_in];
        if (id < 0 || id >= plan->n_bufs || !f32_plain(&plan->bufs[id])) return false;
    }
    const ib__pbuf *a = &plan->bufs[k->in[0]], *b = &plan->bufs[k->in[1]],
                   *y = &plan->bufs[k->out[0]];
    g->alpha = g->beta = 1.0f;
    g->batch = 1;
    if (n->op == IB_OP_GEMM) {
        int64_t ta = 0, tb = 0;
        if (a->rank != 2 || b->rank != 2 || y->rank != 2) return false;
        if (ib__attr_int(n, "transA", 0, &ta) || ib__attr_int(n, "transB", 0, &tb) ||
            ib__attr_float(n, "alpha", 1.0f, &g->alpha) || ib__attr_float(n, "beta", 1.0f, &g->beta))
            return false;
        g->M = ta ? a->dims[1] : a->dims[0];
        g->K = ta ? a->dims[0] : a->dims[1];
        g->N = tb ? b->dims[0] : b->dims[1];
        if ((tb ? b->dims[1] : b->dims[0]) != g->K) return false;
        g->a_rs = ta ? 1 : a->dims[1];
        g->a_cs = ta ? a->dims[1] : 1;
        g->b_rs = tb ? 1 : b->dims[1];
        g->b_cs = tb ? b->dims[1] : 1;
        if (k->n_in == 3) {
            const ib__pbuf *c = &plan->bufs[k->in[2]];
            if (c->rank > 2) return false;
            int64_t c0 = c->rank == 2 ? c->dims[0] : 1, c1 = c->rank >= 1 ? c->dims[c->rank - 1] : 1;
            g->bias = c0 == 1 && c1 == 1       ? BIAS_SCALAR
                      : c0 == 1 && c1 == g->N  ? BIAS_COL
                      : c0 == g->M && c1 == 1  ? BIAS_ROW
                      : c0 == g->M && c1 == g->N ? BIAS_FULL
                                                 : -1;
            if (g->bias < 0) return false;
            if (g->beta == 0.0f) g->bias = BIAS_NONE;
        }
        if (y->dims[0] != g->M || y->dims[1] != g->N) return false;
    } else {
        if (k->n_in != 2 || a->rank < 2 || b->rank < 2 || y->rank < 2) return false;
        g->M = a->dims[a->rank - 2];
        g->K = a->dims[a->rank - 1];
        g->N = b->dims[b->rank - 1];
        if (b->dims[b->rank - 2] != g->K) return false;
        if (y->dims[y->rank - 2] != g->M || y->dims[y->rank - 1] != g->N) return false;
        g->batch = prod(y->dims, y->rank - 2);
        int64_t ab = prod(a->dims, a->rank - 2), bb = prod(b->dims, b->rank - 2);
        /* each operand is either one matrix for all or one per output matrix, in order */
        if ((ab != 1 && ab != g->batch) || (bb != 1 && bb != g->batch)) return false;
        if (ab == g->batch && ab > 1 && a->rank != y->rank) return false;
        if (bb == g->batch && bb > 1 && b->rank != y->rank) return false;
        for (int32_t d = 0; d < y->rank - 2; d++) {
            if (ab > 1 && a->dims[d] != y->dims[d]) return false;
            if (bb > 1 && b->dims[d] != y->dims[d]) return false;
        }
        g->a_rs = g->K;
        g->a_cs = 1;
        g->b_rs = g->N;
        g->b_cs = 1;
        g->a_bs = ab > 1 ? g->M * g->K : 0;
        g->b_bs = bb > 1 ? g->K * g->N : 0;
    }
    if (g->M < 1 || g->N < 1 || g->K < 1 || g->batch < 1 || g->batch > 65535) return false;
    return ib__cuda_epilogue_ok(plan, k, g->N, g->batch * g->M * g->N);
}

/* The text of the core's expressions (ib__cuda_mm points into it). */
typedef struct gemm_text {
    char a[256], b[256], store[256];
    ib__sb value;
} gemm_text;

static ib_status describe(const ib__plan *plan, const ib__pkernel *k, const gemm_g *g,
                          gemm_text *t, ib__cuda_mm *mm) {
    memset(mm, 0, sizeof *mm);
    mm->M = g->M;
    mm->N = g->N;
    mm->K = g->K;
    mm->batch = g->batch;
    snprintf(t->a, sizeof t->a, "a0[bz * %lldll + m * %lldll + k * %lldll]", (long long)g->a_bs,
             (long long)g->a_rs, (long long)g->a_cs);
    snprintf(t->b, sizeof t->b, "a1[bz * %lldll + k * %lldll + n * %lldll]", (long long)g->b_bs,
             (long long)g->b_rs, (long long)g->b_cs);
    const int yo = k->n_in;
    snprintf(t->store, sizeof t->store, "a%d[(bz * M + m) * N + n] = v;", yo);
    mm->a_expr = t->a;
    mm->b_expr = t->b;
    mm->store = t->store;
    mm->b_vec_ok = g->b_cs == 1 && g->b_rs % 4 == 0 && g->b_bs % 4 == 0;
    ib__sb_init(&t->value);
    if (plan) {
        char f[48];
        t->value.indent = 4 + 4 * 3; /* inside the store loop's block */
        if (g->alpha != 1.0f) ib__sb_line(&t->value, "v *= %s;", ib__cuda_flit(f, sizeof f, g->alpha));
        static const char *const bias_idx[] = {"", "0", "n", "m", "m * N + n"};
        if (g->bias != BIAS_NONE && g->beta != 1.0f)
            ib__sb_line(&t->value, "v += %s * a2[%s];", ib__cuda_flit(f, sizeof f, g->beta),
                        bias_idx[g->bias]);
        else if (g->bias != BIAS_NONE)
            ib__sb_line(&t->value, "v += a2[%s];", bias_idx[g->bias]);
        IB_TRY(ib__cuda_epilogue(&t->value, k, k->n_in + k->n_out, "v", "n", "(bz * M + m) * N + n"));
        IB_TRY(ib__sb_status(&t->value));
        mm->value = t->value.data;
    }
    return IB_OK;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    gemm_g g;
    return ib__target_is_cuda(&plan->target) && analyze(plan, k, &g);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    gemm_g g;
    if (!analyze(plan, k, &g)) return;
    gemm_text t;
    ib__cuda_mm mm;
    if (describe(NULL, k, &g, &t, &mm) == IB_OK) ib__cuda_mm_default_knobs(&plan->target, &mm, knobs);
    ib__sb_free(&t.value);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    gemm_g g;
    if (!analyze(plan, k, &g)) return false;
    gemm_text t;
    ib__cuda_mm mm;
    bool ok = describe(NULL, k, &g, &t, &mm) == IB_OK &&
              ib__cuda_mm_knobs_valid(&plan->target, &mm, knobs);
    ib__sb_free(&t.value);
    return ok;
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    gemm_g g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "cuda_gemm: %s is not supported", ib__node_label(k->nodes[0]));
    gemm_text t;
    ib__cuda_mm mm;
    ib_status st = describe(plan, k, &g, &t, &mm);
    ib__launch_dims ld;
    if (st == IB_OK) st = ib__cuda_mm_launch(&plan->target, &mm, &k->knobs, &ld);
    if (st == IB_OK) {
        ib__sb_line(sb, "/* %s: %s, %lld x [%lld x %lld] * [%lld x %lld]%s */", k->fn_name,
                    ib__node_label(k->nodes[0]), (long long)g.batch, (long long)g.M,
                    (long long)g.K, (long long)g.K, (long long)g.N,
                    ib__cuda_mm_uses_tensor_cores(&plan->target, &mm) ? ", tensor cores" : "");
        ib__cuda_signature(sb, k, ld.block[0]);
        st = ib__cuda_mm_emit(sb, &plan->target, &mm, &k->knobs);
    }
    ib__sb_free(&t.value);
    return st;
}

static ib_status launch(const ib__plan *plan, const ib__pkernel *k, ib__launch_dims *out) {
    gemm_g g;
    if (!analyze(plan, k, &g)) return ib__error(IB_ERR_INTERNAL, "cuda_gemm: unsupported kernel");
    gemm_text t;
    ib__cuda_mm mm;
    ib_status st = describe(NULL, k, &g, &t, &mm);
    if (st == IB_OK) st = ib__cuda_mm_launch(&plan->target, &mm, &k->knobs, out);
    ib__sb_free(&t.value);
    return st;
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    gemm_g g;
    if (!analyze(plan, k, &g)) return 0.0;
    return 2.0 * (double)g.batch * (double)g.M * (double)g.N * (double)g.K;
}

const ib__kernel_template ib__template_cuda_gemm = {
    .name = "cuda_gemm",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = flops,
    .launch = launch,
};
