/* Kernel template gemm: Gemm and MatMul (2-D, batched with broadcasting, constant or
 * run-time B) as a register-blocked mr x nr micro-kernel over kc-deep slivers, with a
 * constant B pre-packed at compile time into panels of nr vectors, a run-time B packed
 * per kc x nc block on the stack, and the fused epilogue applied on the last K block. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"

/* Stack scratch of one task (packed A and run-time B blocks) stays below this, so the
 * kernel never allocates and fits any worker thread's stack. */
#define GEMM_MAX_STACK_BYTES (96 * 1024)

/* The stride of B's prefetches: the cache line of every target the compiler knows (x86-64,
 * Arm Neoverse); on a core with 128-byte lines every other prefetch is redundant. */
#define PREFETCH_LINE_BYTES 64

enum { BIAS_NONE = 0, BIAS_SCALAR, BIAS_COL, BIAS_ROW, BIAS_FULL };

/* A product described as `batch` independent C[M,N] = A[M,K] B[K,N] with element
 * strides, batch offsets decomposed over the broadcast batch dims. */
typedef struct gemm_desc {
    int64_t M, N, K;
    int64_t a_rs, a_cs, b_rs, b_cs;
    float alpha, beta;
    int bias_kind;
    bool b_const;
    int32_t n_bdims;
    int64_t bdims[IB_MAX_RANK];
    int64_t a_bstride[IB_MAX_RANK]; /* elements */
    int64_t b_bstride[IB_MAX_RANK]; /* in whole B matrices */
    int64_t batch;                  /* product of bdims */
    int64_t b_mats;                 /* distinct B matrices */
} gemm_desc;

static bool is_f32_plain(const ib__pbuf *b) {
    return b->dtype == IB_DTYPE_FLOAT32 && b->layout == IB_LAYOUT_PLAIN;
}

static int64_t count_dims(const int64_t *d, int32_t r) {
    int64_t n = 1;
    for (int32_t i = 0; i < r; i++) n *= d[i];
    return n;
}

/* The shape of B: its buffer's logical dims (a packed B keeps the dims it was packed
 * from). Shapes never come from the graph's values, whose batch dims may be symbolic. */
static bool b_dims(const ib__plan *plan, const ib__pkernel *k, int32_t *rank, int64_t *dims) {
    const ib__pbuf *bb = &plan->bufs[k->in[1]];
    if (bb->dtype != IB_DTYPE_FLOAT32) return false;
    if (bb->layout != IB_LAYOUT_PACKED && bb->layout != IB_LAYOUT_PLAIN) return false;
    if (bb->rank < 1) return false;
    *rank = bb->rank;
    memcpy(dims, bb->dims, sizeof bb->dims);
    return true;
}

static bool analyze(const ib__plan *plan, const ib__pkernel *k, gemm_desc *g) {
    memset(g, 0, sizeof *g);
    if (!k->nodes || k->n_nodes < 1) return false;
    const ib__node *n = k->nodes[0];
    if (n->op != IB_OP_GEMM && n->op != IB_OP_MAT_MUL) return false;
    if (k->n_in < 2 || k->n_out != 1 || n->n_inputs < 2 || !n->inputs[1]) return false;
    for (int32_t i = 0; i < k->n_in + k->n_out; i++) {
        int32_t id = i < k->n_in ? k->in[i] : k->out[i - k->n_in];
        if (id < 0 || id >= plan->n_bufs) return false;
    }
    const ib__pbuf *ab = &plan->bufs[k->in[0]], *yb = &plan->bufs[k->out[0]];
    if (!is_f32_plain(ab) || !is_f32_plain(yb)) return false;
    int32_t brank;
    int64_t bd[IB_MAX_RANK];
    if (!b_dims(plan, k, &brank, bd)) return false;
    /* A constant B is a WEIGHT buffer (its bytes in the blob), packed or not. */
    const ib__pbuf *bbuf = &plan->bufs[k->in[1]];
    g->b_const = bbuf->kind == IB_BUF_WEIGHT;
    if (bbuf->layout == IB_LAYOUT_PACKED && !g->b_const) return false;
    for (int32_t i = 0; i < ab->rank; i++)
        if (ab->dims[i] < 0) return false;
    for (int32_t i = 0; i < brank; i++)
        if (bd[i] < 0) return false;
    g->alpha = 1.0f;
    g->beta = 1.0f;
    g->b_mats = 1;
    g->batch = 1;
    if (n->op == IB_OP_GEMM) {
        int64_t ta = 0, tb = 0;
        if (ab->rank != 2 || brank != 2 || n->opset < 7) return false;
        if (ib__attr_int(n, "transA", 0, &ta) || ib__attr_int(n, "transB", 0, &tb)) return false;
        if (ib__attr_float(n, "alpha", 1.0f, &g->alpha) ||
            ib__attr_float(n, "beta", 1.0f, &g->beta))
            return false;
        g->M = ta ? ab->dims[1] : ab->dims[0];
        g->K = ta ? ab->dims[0] : ab->dims[1];
        g->N = tb ? bd[0] : bd[1];
        if ((tb ? bd[1] : bd[0]) != g->K) return false;
        g->a_rs = ta ? 1 : ab->dims[1];
        g->a_cs = ta ? ab->dims[1] : 1;
        g->b_rs = tb ? 1 : bd[1];
        g->b_cs = tb ? bd[1] : 1;
        if (k->n_in >= 3 && n->n_inputs >= 3 && n->inputs[2]) {
            const ib__pbuf *cb = &plan->bufs[k->in[2]];
            if (!is_f32_plain(cb) || cb->rank > 2) return false;
            int64_t c0 = cb->rank == 2 ? cb->dims[0] : 1;
            int64_t c1 = cb->rank >= 1 ? cb->dims[cb->rank - 1] : 1;
            if (c0 == 1 && c1 == 1)
                g->bias_kind = BIAS_SCALAR;
            else if (c0 == 1 && c1 == g->N)
                g->bias_kind = BIAS_COL;
            else if (c0 == g->M && c1 == 1)
                g->bias_kind = BIAS_ROW;
            else if (c0 == g->M && c1 == g->N)
                g->bias_kind = BIAS_FULL;
            else
                return false;
            if (g->beta == 0.0f) g->bias_kind = BIAS_NONE;
        } else if (k->n_in != 2) {
            return false;
        }
        if (yb->rank != 2 || yb->dims[0] != g->M || yb->dims[1] != g->N) return false;
    } else {
        if (k->n_in != 2 || ab->rank < 1 || brank < 2) return false;
        int32_t ar = ab->rank;
        g->M = ar >= 2 ? ab->dims[ar - 2] : 1;
        g->K = ab->dims[ar - 1];
        g->N = bd[brank - 1];
        if (bd[brank - 2] != g->K) return false;
        g->a_rs = g->K;
        g->a_cs = 1;
        g->b_rs = g->N;
        g->b_cs = 1;
        /* Batch dims broadcast right-aligned. */
        int32_t abr = ar >= 2 ? ar - 2 : 0, bbr = brank - 2;
        int32_t nb = abr > bbr ? abr : bbr;
        int64_t as = g->M * g->K, bs = 1;
        int64_t astr[IB_MAX_RANK], bstr[IB_MAX_RANK];
        for (int32_t d = nb - 1; d >= 0; d--) {
            int32_t ai = d - (nb - abr), bi = d - (nb - bbr);
            int64_t da = ai >= 0 ? ab->dims[ai] : 1, db = bi >= 0 ? bd[bi] : 1;
            if (da != db && da != 1 && db != 1) return false;
            g->bdims[d] = da > db ? da : db;
            if (da == 0 || db == 0) g->bdims[d] = 0;
            astr[d] = da == 1 ? 0 : as;
            bstr[d] = db == 1 ? 0 : bs;
            as *= da;
            bs *= db;
        }
        g->b_mats = bs;
        g->n_bdims = nb;
        memcpy(g->a_bstride, astr, sizeof astr);
        memcpy(g->b_bstride, bstr, sizeof bstr);
        g->batch = count_dims(g->bdims, nb);
        /* One B for every product and a contiguous A: the batch folds into M. */
        if (bs == 1 && g->batch > 0) {
            bool a_full = true;
            for (int32_t d = 0; d < nb; d++)
                if (astr[d] == 0 && g->bdims[d] != 1) a_full = false;
            if (a_full) {
                g->M *= g->batch;
                g->batch = 1;
                g->n_bdims = 0;
            }
        }
        if (count_dims(yb->dims, yb->rank) != g->batch * g->M * g->N) return false;
    }
    if (g->M <= 0 || g->N <= 0 || g->K <= 0 || g->batch <= 0) return false;
    /* Epilogue operands: per column (N), full output or scalar. */
    for (int32_t s = 0; s < k->n_epi; s++) {
        const ib__epilogue_step *e = &k->epi[s];
        if (!ib__epilogue_supports_op(e->op, e->kind)) return false;
        if (e->kind != IB_EPI_BINARY) continue;
        if (e->operand_buf < 0 || e->operand_buf >= plan->n_bufs) return false;
        const ib__pbuf *ob = &plan->bufs[e->operand_buf];
        if (!is_f32_plain(ob)) return false;
        int64_t cnt = count_dims(ob->dims, ob->rank);
        if (e->operand_kind == IB_EPI_SCALAR && cnt < 1) return false;
        if (e->operand_kind == IB_EPI_PER_CHANNEL && cnt != g->N) return false;
        if (e->operand_kind == IB_EPI_FULL && cnt != g->batch * g->M * g->N) return false;
    }
    return true;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    gemm_desc g;
    return analyze(plan, k, &g);
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Spreads K over blocks of at most `kc` so that the last block is not tiny. */
static int64_t balance(int64_t total, int64_t blk, int64_t mult) {
    if (blk >= total) return total;
    int64_t nblk = (total + blk - 1) / blk;
    return round_up((total + nblk - 1) / nblk, mult);
}

static void fill_knobs(const ib__plan *plan, const gemm_desc *g, ib__knobs *kn) {
    const ib__target *t = &plan->target;
    const int64_t W = ib__target_vector_floats(t);
    /* Accumulators mr x nr plus nr B vectors and one A broadcast fit the registers. */
    int64_t mr = t->vector_regs >= 32 ? 8 : 6, nr = t->vector_regs >= 32 ? 3 : 2;
    if (g->N <= W) nr = 1;
    else if (g->N <= 2 * W && nr > 2) nr = 2;
    if (nr == 1 && t->vector_regs >= 32) mr = 12;
    else if (nr == 1) mr = 8;
    const int64_t NR = nr * W;
    /* The kc x NR sliver of B stays in half of L1. */
    int64_t l1 = t->l1d_bytes > 0 ? t->l1d_bytes : 32768;
    int64_t l2 = t->l2_bytes > 0 ? t->l2_bytes : 1 << 20;
    int64_t kc = max64(16, l1 / 2 / (NR * 4));
    kc = balance(g->K, kc, 4);
    int64_t pack_a = g->a_cs != 1;
    /* The mc x kc block of A stays in half of L2 (on the stack when packed). */
    int64_t mc = max64(mr, (l2 / 2) / (kc * 4) / mr * mr);
    if (pack_a) mc = max64(mr, min64(mc, (GEMM_MAX_STACK_BYTES / 2) / (kc * 4) / mr * mr));
    mc = min64(mc, round_up(g->M, mr));
    /* The mc x nc block of C stays in a quarter of L2 across the K blocks (measured: 128 x
     * 3072 x 768 on Zen 3 went from ~64 to ~72 GFLOP/s per core with nc 3072 -> 192). */
    int64_t nc = max64(NR, (l2 / 4) / (mc * 4) / NR * NR);
    if (!g->b_const) nc = max64(NR, min64(nc, (GEMM_MAX_STACK_BYTES / 2) / (kc * 4) / NR * NR));
    nc = balance(round_up(g->N, NR), nc, NR);
    /* Enough tasks for the cores: split N first (A rows are read in place), then M. */
    int64_t cores = t->num_cores > 0 ? t->num_cores : 1;
    for (;;) {
        int64_t tasks = g->batch * ((g->M + mc - 1) / mc) * ((g->N + nc - 1) / nc);
        if (tasks >= 3 * cores || cores == 1) break;
        if (nc > NR && nc >= 2 * NR) nc = round_up(nc / 2, NR);
        else if (mc >= 2 * mr) mc = round_up(mc / 2, mr);
        else break;
    }
    ib__knobs_set(kn, "mr", mr);
    ib__knobs_set(kn, "nr", nr);
    ib__knobs_set(kn, "kc", kc);
    ib__knobs_set(kn, "mc", mc);
    ib__knobs_set(kn, "nc", nc);
    ib__knobs_set(kn, "par_n_inner", 1);
    ib__knobs_set(kn, "pack_a", pack_a);
    ib__knobs_set(kn, "ku", 1);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    gemm_desc g;
    if (!analyze(plan, k, &g)) return;
    fill_knobs(plan, &g, knobs);
}

typedef struct gemm_knobs {
    int64_t mr, nr, kc, mc, nc, par_n_inner, pack_a, ku;
} gemm_knobs;

static void read_knobs(const ib__plan *plan, const gemm_desc *g, const ib__knobs *kn,
                       gemm_knobs *o) {
    ib__knobs d = {0};
    fill_knobs(plan, g, &d);
    o->mr = ib__knobs_get(kn, "mr", ib__knobs_get(&d, "mr", 6));
    o->nr = ib__knobs_get(kn, "nr", ib__knobs_get(&d, "nr", 2));
    o->kc = ib__knobs_get(kn, "kc", ib__knobs_get(&d, "kc", 256));
    o->mc = ib__knobs_get(kn, "mc", ib__knobs_get(&d, "mc", 64));
    o->nc = ib__knobs_get(kn, "nc", ib__knobs_get(&d, "nc", 64));
    o->par_n_inner = ib__knobs_get(kn, "par_n_inner", 1);
    o->pack_a = ib__knobs_get(kn, "pack_a", ib__knobs_get(&d, "pack_a", 0));
    o->ku = ib__knobs_get(kn, "ku", ib__knobs_get(&d, "ku", 1));
}

static bool knobs_ok(const ib__plan *plan, const gemm_desc *g, const gemm_knobs *q) {
    const int64_t W = ib__target_vector_floats(&plan->target);
    if (q->mr < 1 || q->mr > 16 || q->nr < 1 || q->nr > 8) return false;
    /* Accumulators and B vectors must fit the register file. */
    if (q->mr * q->nr + q->nr + 1 > plan->target.vector_regs + 4) return false;
    const int64_t NR = q->nr * W;
    if (q->kc < 1 || q->mc < q->mr || q->mc % q->mr || q->nc < NR || q->nc % NR) return false;
    if (q->pack_a != 0 && q->pack_a != 1) return false;
    if (q->ku < 1 || q->ku > 8) return false;
    if (!q->pack_a && g->a_cs != 1) return false;
    int64_t stack = 0;
    if (q->pack_a) stack += min64(q->mc, round_up(g->M, q->mr)) * min64(q->kc, g->K) * 4;
    if (!g->b_const) stack += min64(q->nc, round_up(g->N, NR)) * min64(q->kc, g->K) * 4;
    stack += q->mr * NR * 4;
    return stack <= GEMM_MAX_STACK_BYTES;
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    gemm_desc g;
    if (!analyze(plan, k, &g)) return false;
    gemm_knobs q;
    read_knobs(plan, &g, knobs, &q);
    return knobs_ok(plan, &g, &q);
}

/* Packs each B matrix into [ceil(N/NR)][K][NR] panels (columns past N zero), the order
 * the micro-kernel streams it in; the buffer's `block` records NR. */
static ib_status pack_weights(ib__plan *plan, ib__pkernel *k) {
    gemm_desc g;
    if (!analyze(plan, k, &g) || !g.b_const) return IB_OK;
    if (plan->bufs[k->in[1]].layout == IB_LAYOUT_PACKED) return IB_OK;
    if (k->knobs.n == 0) fill_knobs(plan, &g, &k->knobs);
    gemm_knobs q;
    read_knobs(plan, &g, &k->knobs, &q);
    const int64_t W = ib__target_vector_floats(&plan->target);
    const int64_t NR = q.nr * W, NP = (g.N + NR - 1) / NR;
    const ib__pbuf *wb = &plan->bufs[k->in[1]];
    if (wb->offset < 0 || (size_t)wb->offset > plan->weights_bytes ||
        wb->nbytes < (size_t)(g.b_mats * g.K * g.N) * sizeof(float) ||
        wb->nbytes > plan->weights_bytes - (size_t)wb->offset)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: weight B holds %zu bytes, expected %lld",
                         ib__node_label(k->nodes[0]), wb->nbytes,
                         (long long)(g.b_mats * g.K * g.N * 4));
    int64_t total;
    if (ib__mul_overflow_i64(g.b_mats * NP * NR, g.K, &total) || total > IB_MAX_ELEMENTS)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: packed weight too large",
                         ib__node_label(k->nodes[0]));
    float *p = ib__calloc((size_t)total, sizeof(float));
    if (!p) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory packing a gemm weight");
    /* Read before ib__plan_add_weight, which may move the blob. */
    const float *src = (const float *)(plan->weights + wb->offset);
    for (int64_t m = 0; m < g.b_mats; m++) {
        const float *b = src + m * g.K * g.N;
        float *dst = p + m * NP * g.K * NR;
        for (int64_t jp = 0; jp < NP; jp++)
            for (int64_t kk = 0; kk < g.K; kk++)
                for (int64_t jj = 0; jj < NR; jj++) {
                    int64_t j = jp * NR + jj;
                    if (j < g.N) dst[(jp * g.K + kk) * NR + jj] = b[kk * g.b_rs + j * g.b_cs];
                }
    }
    ib__pbuf desc = plan->bufs[k->in[1]];
    desc.layout = IB_LAYOUT_PACKED;
    desc.block = (int32_t)NR;
    desc.value = NULL; /* derived data: no value is held as such */
    desc.first_use = desc.last_use = -1;
    int32_t id;
    ib_status st = ib__plan_add_weight(plan, &desc, p, (size_t)total * sizeof(float), &id);
    ib__free(p);
    if (st) return st;
    k->in[1] = id;
    return IB_OK;
}

/* ---- Emission ------------------------------------------------------------------------ */

/* Applies alpha, the Gemm C term and the fused epilogue to `var` of `lanes` lanes at row
 * `row` (expr, within the product) and column `col` (expr). */
/* A float as a C literal ("%.9gf" alone turns 2 into the invalid "2f"). */
static const char *flit(char *buf, size_t n, float v) {
    char t[40];
    snprintf(t, sizeof t, "%.9g", (double)v);
    snprintf(buf, n, "(%s%sf)", t, strpbrk(t, ".eEn") ? "" : ".0");
    return buf;
}

static ib_status emit_finish(ib__sb *sb, const ib__pkernel *k, const gemm_desc *g, const char *var,
                             int lanes, const char *row, const char *col) {
    char alpha[48];
    if (g->alpha != 1.0f)
        ib__sb_line(sb, "%s = %s * %s;", var, var, flit(alpha, sizeof alpha, g->alpha));
    const char *bs = g->beta == 1.0f ? "" : "* ";
    char beta[48] = "";
    if (g->beta != 1.0f) flit(beta, sizeof beta, g->beta);
    switch (g->bias_kind) {
    case BIAS_SCALAR:
        ib__sb_line(sb, "%s = %s + ib_splat%d(bias[0]) %s%s;", var, var, lanes, bs, beta);
        break;
    case BIAS_COL:
        ib__sb_line(sb, "%s = %s + ib_load%d(bias + %s) %s%s;", var, var, lanes, col, bs, beta);
        break;
    case BIAS_ROW:
        ib__sb_line(sb, "%s = %s + ib_splat%d(bias[%s]) %s%s;", var, var, lanes, row, bs, beta);
        break;
    case BIAS_FULL:
        ib__sb_line(sb, "%s = %s + ib_load%d(bias + (%s) * %lld + %s) %s%s;", var, var, lanes, row,
                    (long long)g->N, col, bs, beta);
        break;
    default:
        break;
    }
    char elem[160];
    snprintf(elem, sizeof elem, "cbase + (%s) * %lld + %s", row, (long long)g->N, col);
    return ib__emit_epilogue(sb, k, k->n_in + k->n_out, var, lanes, col, true, elem);
}

static ib_status emit_micro(ib__sb *sb, const ib__pkernel *k, const gemm_desc *g,
                            const gemm_knobs *q, int W) {
    const char *fn = k->fn_name;
    const int MR = (int)q->mr, NRV = (int)q->nr, NR = NRV * W;
    /* a: A rows (packed: [kc][MR]; direct: row i at a + i * lda, rows past mv repeat the
     * last valid one so nothing out of range is read); b: [kc][NR]. */
    ib__sb_line(sb, "static void %s_ukr(int64_t kc, const float *a, int64_t lda, const float *b,",
                fn);
    ib__sb_line(sb, "    float *c, int64_t row0, int64_t col0, int64_t mv, int64_t nv, int first,");
    ib__sb_line(sb, "    int last, int64_t cbase, const float *bias, void *const *args) {");
    sb->indent += 4;
    ib__sb_line(sb, "(void)lda; (void)bias; (void)args; (void)cbase; (void)row0;");
    for (int i = 0; i < MR; i++) {
        if (q->pack_a)
            ib__sb_line(sb, "const float *a%d = a + %d;", i, i);
        else
            ib__sb_line(sb, "const float *a%d = a + (%d < mv ? %d : mv - 1) * lda;", i, i, i);
        for (int j = 0; j < NRV; j++) ib__sb_line(sb, "ibv%df c%d_%d = ib_splat%d(0.0f);", W, i, j, W);
    }
    const int ak = q->pack_a ? MR : 1;
    /* The k loop unrolled by `ku` (a knob), then the remainder one step at a time. */
    const int KU = (int)q->ku;
    for (int pass = 0; pass < 2; pass++) {
        const int steps = pass == 0 ? KU : 1;
        if (pass == 0 && KU <= 1) continue;
        if (pass == 0) {
            ib__sb_line(sb, "int64_t p = 0;");
            ib__sb_line(sb, "for (; p + %d <= kc; p += %d) {", KU, KU);
        } else {
            ib__sb_line(sb, "for (%s; p < kc; p++) {", KU > 1 ? "" : "int64_t p = 0");
        }
        sb->indent += 4;
        for (int u = 0; u < steps; u++) {
            for (int j = 0; j < NRV; j++)
                ib__sb_line(sb, "ibv%df b%d_%d = ib_load%d(b + (p + %d) * %d + %d);", W, u, j, W, u,
                            NR, j * W);
            for (int i = 0; i < MR; i++) {
                ib__sb_line(sb, "{ ibv%df av = ib_splat%d(a%d[(p + %d) * %d]);", W, W, i, u, ak);
                for (int j = 0; j < NRV; j++)
                    ib__sb_line(sb, "  c%d_%d = ib_fma%d(av, b%d_%d, c%d_%d);", i, j, W, u, j, i,
                                j);
                ib__sb_line(sb, "}");
            }
        }
        sb->indent -= 4;
        ib__sb_line(sb, "}");
    }
    /* Full tile: vector stores; partial: through a scratch tile, lane by lane. */
    ib__sb_line(sb, "if (mv == %d && nv == %d) {", MR, NR);
    sb->indent += 4;
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NRV; j++) {
            ib__sb_line(sb, "{ float *cp = c + %d * %lld + %d;", i, (long long)g->N, j * W);
            sb->indent += 2;
            ib__sb_line(sb, "ibv%df v = c%d_%d;", W, i, j);
            ib__sb_line(sb, "if (!first) v = v + ib_load%d(cp);", W);
            ib__sb_line(sb, "if (last) {");
            char row[48], col[48];
            snprintf(row, sizeof row, "row0 + %d", i);
            snprintf(col, sizeof col, "col0 + %d", j * W);
            IB_TRY(emit_finish(sb, k, g, "v", W, row, col));
            ib__sb_line(sb, "}");
            ib__sb_line(sb, "ib_store%d(cp, v); }", W);
            sb->indent -= 2;
        }
    sb->indent -= 4;
    ib__sb_line(sb, "} else {");
    sb->indent += 4;
    ib__sb_line(sb, "float t[%d];", MR * NR);
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NRV; j++) ib__sb_line(sb, "ib_store%d(t + %d, c%d_%d);", W, i * NR + j * W, i, j);
    ib__sb_line(sb, "for (int64_t i = 0; i < mv; i++)");
    ib__sb_line(sb, "    for (int64_t j = 0; j < nv; j++) {");
    sb->indent += 8;
    ib__sb_line(sb, "float v = t[i * %d + j];", NR);
    ib__sb_line(sb, "float *cp = c + i * %lld + j;", (long long)g->N);
    ib__sb_line(sb, "if (!first) v += *cp;");
    ib__sb_line(sb, "if (last) {");
    IB_TRY(emit_finish(sb, k, g, "v", 1, "row0 + i", "col0 + j"));
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "*cp = v;");
    sb->indent -= 8;
    ib__sb_line(sb, "    }");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    gemm_desc g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "gemm: %s is not supported", ib__node_label(k->nodes[0]));
    gemm_knobs q;
    read_knobs(plan, &g, &k->knobs, &q);
    if (!knobs_ok(plan, &g, &q))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "gemm: invalid knobs for %s",
                         ib__node_label(k->nodes[0]));
    const int W = ib__target_vector_floats(&plan->target);
    const int64_t MR = q.mr, NR = q.nr * W;
    const int64_t NP = (g.N + NR - 1) / NR;
    const bool packed_b = plan->bufs[k->in[1]].layout == IB_LAYOUT_PACKED;
    if (packed_b && plan->bufs[k->in[1]].block != NR)
        return ib__error(IB_ERR_INTERNAL, "gemm: %s: B packed for %d columns, knobs say %lld",
                         ib__node_label(k->nodes[0]), plan->bufs[k->in[1]].block, (long long)NR);
    const int64_t kc = min64(q.kc, g.K), mc = min64(q.mc, round_up(g.M, MR)),
                  nc = min64(q.nc, round_up(g.N, NR));
    const int64_t nmb = (g.M + mc - 1) / mc, nnb = (g.N + nc - 1) / nc;
    const char *fn = k->fn_name;
    const int out_arg = k->n_in;

    ib__sb_line(sb, "/* %s: %s, %lld x [%lld x %lld] * [%lld x %lld], micro-kernel %lld x %lld, "
                "kc %lld, mc %lld, nc %lld%s%s */",
                fn, ib__node_label(k->nodes[0]), (long long)g.batch, (long long)g.M, (long long)g.K,
                (long long)g.K, (long long)g.N, (long long)MR, (long long)NR, (long long)kc,
                (long long)mc, (long long)nc, packed_b ? ", B packed" : ", B at run time",
                q.pack_a ? ", A packed" : "");
    IB_TRY(emit_micro(sb, k, &g, &q, W));

    ib__sb_line(sb, "static void %s_body(void *ctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)ctx;");
    ib__sb_line(sb, "const float *A = (const float *)args[0];");
    ib__sb_line(sb, "const float *B = (const float *)args[1];");
    ib__sb_line(sb, "const float *bias = %s;", g.bias_kind ? "(const float *)args[2]" : "0");
    ib__sb_line(sb, "float *Y = (float *)args[%d];", out_arg);
    if (q.pack_a) ib__sb_line(sb, "float apack[%lld] __attribute__((aligned(64)));", (long long)(mc * kc));
    if (!packed_b)
        ib__sb_line(sb, "float bpack[%lld] __attribute__((aligned(64)));", (long long)(kc * nc));
    ib__sb_line(sb, "for (int64_t task = begin; task < end; task++) {");
    sb->indent += 4;
    if (q.par_n_inner)
        ib__sb_line(sb, "int64_t nb = task %% %lld, mb = task / %lld %% %lld, t = task / %lld;",
                    (long long)nnb, (long long)nnb, (long long)nmb, (long long)(nnb * nmb));
    else
        ib__sb_line(sb, "int64_t mb = task %% %lld, nb = task / %lld %% %lld, t = task / %lld;",
                    (long long)nmb, (long long)nmb, (long long)nnb, (long long)(nnb * nmb));
    /* Batch offsets from the broadcast batch dims. */
    ib__sb_line(sb, "int64_t aoff = 0, bmat = 0, r = t;");
    for (int32_t d = g.n_bdims - 1; d >= 0; d--) {
        ib__sb_line(sb, "{ int64_t ix = r %% %lld; r /= %lld; aoff += ix * %lld; bmat += ix * %lld; }",
                    (long long)g.bdims[d], (long long)g.bdims[d], (long long)g.a_bstride[d],
                    (long long)g.b_bstride[d]);
    }
    ib__sb_line(sb, "(void)r; (void)bmat;");
    ib__sb_line(sb, "const int64_t cbase = t * %lld;", (long long)(g.M * g.N));
    ib__sb_line(sb, "const int64_t i0 = mb * %lld, j0 = nb * %lld;", (long long)mc, (long long)nc);
    ib__sb_line(sb, "const int64_t mlen = %lld - i0 < %lld ? %lld - i0 : %lld;", (long long)g.M,
                (long long)mc, (long long)g.M, (long long)mc);
    ib__sb_line(sb, "const int64_t nlen = %lld - j0 < %lld ? %lld - j0 : %lld;", (long long)g.N,
                (long long)nc, (long long)g.N, (long long)nc);
    ib__sb_line(sb, "const float *a_t = A + aoff;");
    ib__sb_line(sb, "for (int64_t pc = 0; pc < %lld; pc += %lld) {", (long long)g.K, (long long)kc);
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t klen = %lld - pc < %lld ? %lld - pc : %lld;", (long long)g.K,
                (long long)kc, (long long)g.K, (long long)kc);
    ib__sb_line(sb, "const int first = pc == 0, last = pc + klen == %lld;", (long long)g.K);
    if (q.pack_a) {
        /* [mr panel][klen][MR], rows past M repeat the last row. */
        ib__sb_line(sb, "for (int64_t ip = 0; ip < mlen; ip += %lld)", (long long)MR);
        ib__sb_line(sb, "    for (int64_t i = 0; i < %lld; i++) {", (long long)MR);
        ib__sb_line(sb, "        int64_t row = i0 + ip + (ip + i < mlen ? i : mlen - 1 - ip);");
        ib__sb_line(sb, "        const float *src = a_t + row * %lld + pc * %lld;", (long long)g.a_rs,
                    (long long)g.a_cs);
        ib__sb_line(sb, "        float *dst = apack + ip * klen + i;");
        ib__sb_line(sb, "        for (int64_t p = 0; p < klen; p++) dst[p * %lld] = src[p * %lld];",
                    (long long)MR, (long long)g.a_cs);
        ib__sb_line(sb, "    }");
    }
    if (!packed_b) {
        ib__sb_line(sb, "const float *b_t = B + bmat * %lld;", (long long)(g.K * g.N));
        ib__sb_line(sb, "for (int64_t jp = 0; jp < nlen; jp += %lld)", (long long)NR);
        ib__sb_line(sb, "    for (int64_t p = 0; p < klen; p++) {");
        ib__sb_line(sb, "        float *dst = bpack + jp * klen + p * %lld;", (long long)NR);
        ib__sb_line(sb, "        const float *src = b_t + (pc + p) * %lld + (j0 + jp) * %lld;",
                    (long long)g.b_rs, (long long)g.b_cs);
        ib__sb_line(sb, "        int64_t nv = nlen - jp < %lld ? nlen - jp : %lld;", (long long)NR,
                    (long long)NR);
        ib__sb_line(sb, "        int64_t jj = 0;");
        ib__sb_line(sb, "        for (; jj < nv; jj++) dst[jj] = src[jj * %lld];", (long long)g.b_cs);
        ib__sb_line(sb, "        for (; jj < %lld; jj++) dst[jj] = 0.0f;", (long long)NR);
        ib__sb_line(sb, "    }");
    }
    ib__sb_line(sb, "for (int64_t jp = 0; jp < nlen; jp += %lld) {", (long long)NR);
    sb->indent += 4;
    if (packed_b)
        ib__sb_line(sb, "const float *bp = B + (bmat * %lld + (j0 + jp) / %lld * %lld + pc) * %lld;",
                    (long long)(NP * g.K), (long long)NR, (long long)g.K, (long long)NR);
    else
        ib__sb_line(sb, "const float *bp = bpack + jp * klen;");
    ib__sb_line(sb, "const int64_t nv = nlen - jp < %lld ? nlen - jp : %lld;", (long long)NR,
                (long long)NR);
    if (packed_b) {
        /* The next kc x NR sliver of B (the next panel, else the first panel's next K
         * block), prefetched into L2 a slice per row block while this one runs: at batch
         * 1 the weights come from DRAM, and the panels' jumps defeat the hardware
         * prefetcher (BERT's 128 x 768 x 3072 ran 1.6 ms alone, 1.9 in the model). */
        const int64_t line = PREFETCH_LINE_BYTES;
        const int64_t row_bytes = NR * (int64_t)sizeof(float); /* one k step of a sliver */
        ib__sb_line(sb, "const char *bn = 0;");
        ib__sb_line(sb, "int64_t bn_lines = 0;");
        ib__sb_line(sb, "if (jp + %lld < nlen) { bn = (const char *)(bp + %lld); bn_lines = klen * %lld / %lld; }",
                    (long long)NR, (long long)(g.K * NR), (long long)row_bytes, (long long)line);
        ib__sb_line(sb, "else if (pc + klen < %lld) {", (long long)g.K);
        ib__sb_line(sb, "    int64_t kn = %lld - pc - klen < %lld ? %lld - pc - klen : %lld;",
                    (long long)g.K, (long long)kc, (long long)g.K, (long long)kc);
        ib__sb_line(sb, "    bn = (const char *)(B + (bmat * %lld + j0 / %lld * %lld + pc + klen) * %lld);",
                    (long long)(NP * g.K), (long long)NR, (long long)g.K, (long long)NR);
        ib__sb_line(sb, "    bn_lines = kn * %lld / %lld;", (long long)row_bytes, (long long)line);
        ib__sb_line(sb, "}");
        ib__sb_line(sb, "const int64_t bn_per = (bn_lines + (mlen + %lld) / %lld - 1) / ((mlen + %lld) / %lld);",
                    (long long)(MR - 1), (long long)MR, (long long)(MR - 1), (long long)MR);
    }
    ib__sb_line(sb, "for (int64_t ip = 0; ip < mlen; ip += %lld) {", (long long)MR);
    sb->indent += 4;
    if (packed_b) {
        const int64_t line = PREFETCH_LINE_BYTES;
        ib__sb_line(sb, "for (int64_t l = ip / %lld * bn_per, le = l + bn_per < bn_lines ? l + bn_per : bn_lines; l < le; l++)",
                    (long long)MR);
        ib__sb_line(sb, "    __builtin_prefetch(bn + l * %lld, 0, 2);", (long long)line);
    }
    ib__sb_line(sb, "const int64_t mv = mlen - ip < %lld ? mlen - ip : %lld;", (long long)MR,
                (long long)MR);
    ib__sb_line(sb, "const int64_t row = i0 + ip, col = j0 + jp;");
    if (q.pack_a)
        ib__sb_line(sb, "const float *ap = apack + ip * klen;");
    else
        ib__sb_line(sb, "const float *ap = a_t + row * %lld + pc;", (long long)g.a_rs);
    ib__sb_line(sb, "%s_ukr(klen, ap, %lld, bp, Y + cbase + row * %lld + col, row, col, mv, nv, "
                "first, last, cbase, bias, args);",
                fn, (long long)g.a_rs, (long long)g.N);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);",
                (long long)(g.batch * nmb * nnb), fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    gemm_desc g;
    if (!analyze(plan, k, &g)) return 0.0;
    return 2.0 * (double)g.batch * (double)g.M * (double)g.N * (double)g.K;
}

const ib__kernel_template ib__template_gemm = {
    .name = "gemm",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = pack_weights,
    .emit = emit,
    .flops = flops,
};
