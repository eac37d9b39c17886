/* Tests for the GEMM-family and transformer kernel templates (gemm, eltwise, softmax,
 * layernorm, attention): randomised shapes on every target level this machine runs,
 * each generated kernel checked against the reference ops. */
#include <dlfcn.h>
#include <unistd.h>

#include "codegen/toolchain.h"
#include "kernel_harness.h"
#include "test.h"

static const char *const g_default_levels[] = {"x86-64-v4", "x86-64-v3", "generic"};
/* The levels to test: the x86 ones, or those named on the command line ("aarch64"). */
static const char *const *g_levels = g_default_levels;
static size_t g_n_levels = 3;
static bool g_cross; /* targets from the command line: no "wide" variant */
static ib__pool *g_pool;
static uint64_t g_rng = 0x2545F4914F6CDD1Dull;

static int64_t rnd(int64_t lo, int64_t hi) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return lo + (int64_t)(g_rng % (uint64_t)(hi - lo + 1));
}

static ib__value *matmul(ib_kh_batch *b, ib__value *x, ib__value *w) {
    return ib_kh_node(b, IB_OP_MAT_MUL, 13, 2, (ib__value *[]){x, w}, 0, NULL);
}

/* Adds a case whose group is the chain of n_nodes ending at `last`; counts refusals. */
static int add_case(ib_kh_batch *b, const ib__kernel_template *t, ib__value *last, int32_t n_nodes,
                    const char *label, int32_t n_knobs, const char *const *kn,
                    const int64_t *kv) {
    if (!last) {
        fprintf(stderr, "  %s: reference failed\n", label);
        return 1;
    }
    ib_kh_spec s = {.tmpl = t, .last = last, .n_nodes = n_nodes};
    s.n_knobs = n_knobs;
    for (int32_t i = 0; i < n_knobs; i++) {
        s.knob_name[i] = kn[i];
        s.knob_value[i] = kv[i];
    }
    return ib_kh_add(b, &s, label) < 0;
}

static int gemm_cases(ib_kh_batch *b) {
    int bad = 0;
    char label[96];
    const ib__kernel_template *T = &ib__template_gemm;
    /* MatMul 2-D, constant and run-time B, odd sizes. */
    for (int it = 0; it < 8; it++) {
        int64_t M = rnd(1, 40), K = rnd(1, 70), N = rnd(1, 90);
        if (it == 0) M = K = N = 1;
        if (it == 1) M = 64, K = 48, N = 96;
        bool cb = it % 2 == 0;
        ib__value *a = ib_kh_input(b, 2, (int64_t[]){M, K});
        ib__value *w = cb ? ib_kh_const(b, 2, (int64_t[]){K, N}, -1, 1)
                          : ib_kh_input(b, 2, (int64_t[]){K, N});
        snprintf(label, sizeof label, "matmul %lldx%lldx%lld %s", (long long)M, (long long)K,
                 (long long)N, cb ? "const B" : "runtime B");
        bad += add_case(b, T, matmul(b, a, w), 1, label, 0, NULL, NULL);
    }
    /* Knob variants: several K blocks, packed A, M-inner tasks, small tiles. */
    {
        int64_t M = 45, K = 75, N = 70;
        ib__value *a = ib_kh_input(b, 2, (int64_t[]){M, K});
        ib__value *w = ib_kh_const(b, 2, (int64_t[]){K, N}, -1, 1);
        ib__value *wr = ib_kh_input(b, 2, (int64_t[]){K, N});
        const char *kn[] = {"kc", "pack_a", "par_n_inner", "mc", "nc", "mr", "nr", "ku"};
        const int64_t W = ib__target_vector_floats(ib_kh_target(b));
        int64_t kv1[] = {16, 1, 0, 12, 2 * W, 4, 2, 3};
        int64_t kv2[] = {32, 0, 1, 8, W, 2, 1, 2};
        bad += add_case(b, T, matmul(b, a, w), 1, "matmul knobs kc16 packA ku3", 8, kn, kv1);
        bad += add_case(b, T, matmul(b, a, w), 1, "matmul knobs kc32 small ku2", 8, kn, kv2);
        bad += add_case(b, T, matmul(b, a, wr), 1, "matmul runtime B knobs", 8, kn, kv1);
    }
    /* Batched with broadcasting. */
    {
        ib__value *a = ib_kh_input(b, 4, (int64_t[]){2, 3, 7, 9});
        ib__value *w = ib_kh_const(b, 3, (int64_t[]){3, 9, 11}, -1, 1);
        bad += add_case(b, T, matmul(b, a, w), 1, "batched [2,3,7,9]x[3,9,11] const", 0, NULL,
                        NULL);
        ib__value *a2 = ib_kh_input(b, 4, (int64_t[]){2, 1, 5, 6});
        ib__value *w2 = ib_kh_input(b, 4, (int64_t[]){1, 4, 6, 19});
        bad += add_case(b, T, matmul(b, a2, w2), 1, "batched [2,1,5,6]x[1,4,6,19] runtime", 0,
                        NULL, NULL);
        ib__value *a3 = ib_kh_input(b, 2, (int64_t[]){13, 8});
        ib__value *w3 = ib_kh_const(b, 3, (int64_t[]){3, 8, 17}, -1, 1);
        bad += add_case(b, T, matmul(b, a3, w3), 1, "batched [13,8]x[3,8,17]", 0, NULL, NULL);
        ib__value *a4 = ib_kh_input(b, 3, (int64_t[]){2, 33, 20});
        ib__value *w4 = ib_kh_const(b, 2, (int64_t[]){20, 31}, -1, 1);
        bad += add_case(b, T, matmul(b, a4, w4), 1, "folded [2,33,20]x[20,31]", 0, NULL, NULL);
        ib__value *a5 = ib_kh_input(b, 1, (int64_t[]){20});
        bad += add_case(b, T, matmul(b, a5, w4), 1, "vector [20]x[20,31]", 0, NULL, NULL);
        ib__value *q = ib_kh_input(b, 4, (int64_t[]){1, 2, 9, 8});
        ib__value *kt = ib_kh_input(b, 4, (int64_t[]){1, 2, 8, 9});
        bad += add_case(b, T, matmul(b, q, kt), 1, "scores [1,2,9,8]x[1,2,8,9]", 0, NULL, NULL);
    }
    /* Gemm: transposes, alpha/beta, bias kinds, const and run-time B. */
    for (int it = 0; it < 12; it++) {
        int64_t M = rnd(1, 30), K = rnd(1, 40), N = rnd(1, 50);
        int64_t ta = it & 1, tb = (it >> 1) & 1;
        int bias = it % 5; /* 0 none, 1 [N], 2 [M,N], 3 [M,1], 4 [1] */
        bool cb = it % 3 != 2;
        float alpha = it % 4 == 3 ? 0.5f : 1.0f, beta = it % 3 == 1 ? -2.0f : 1.0f;
        ib__value *a = ib_kh_input(b, 2, ta ? (int64_t[]){K, M} : (int64_t[]){M, K});
        int64_t bd[2] = {tb ? N : K, tb ? K : N};
        ib__value *w = cb ? ib_kh_const(b, 2, bd, -1, 1) : ib_kh_input(b, 2, bd);
        ib__value *c = NULL;
        if (bias == 1) c = ib_kh_const(b, 1, (int64_t[]){N}, -1, 1);
        if (bias == 2) c = ib_kh_input(b, 2, (int64_t[]){M, N});
        if (bias == 3) c = ib_kh_const(b, 2, (int64_t[]){M, 1}, -1, 1);
        if (bias == 4) c = ib_kh_const(b, 1, (int64_t[]){1}, -1, 1);
        ib__attr at[] = {ib_kh_attr_int("transA", ta), ib_kh_attr_int("transB", tb),
                         ib_kh_attr_float("alpha", alpha), ib_kh_attr_float("beta", beta)};
        ib__value *y = ib_kh_node(b, IB_OP_GEMM, 13, c ? 3 : 2, (ib__value *[]){a, w, c}, 4, at);
        snprintf(label, sizeof label, "gemm %lldx%lldx%lld tA%lld tB%lld bias%d a%g b%g %s",
                 (long long)M, (long long)K, (long long)N, (long long)ta, (long long)tb, bias,
                 (double)alpha, (double)beta, cb ? "const" : "runtime");
        bad += add_case(b, T, y, 1, label, 0, NULL, NULL);
    }
    /* Epilogues: Relu, Gelu, Add of a residual, Mul by a scalar. */
    {
        int64_t M = 19, K = 33, N = 45;
        ib__value *a = ib_kh_input(b, 2, (int64_t[]){M, K});
        ib__value *w = ib_kh_const(b, 2, (int64_t[]){K, N}, -1, 1);
        ib__value *c = ib_kh_const(b, 1, (int64_t[]){N}, -1, 1);
        ib__value *y = ib_kh_node(b, IB_OP_GEMM, 13, 3, (ib__value *[]){a, w, c}, 0, NULL);
        ib__value *r = ib_kh_node(b, IB_OP_RELU, 14, 1, (ib__value *[]){y}, 0, NULL);
        bad += add_case(b, T, r, 2, "gemm + relu", 0, NULL, NULL);
        ib__value *mm = matmul(b, ib_kh_input(b, 3, (int64_t[]){1, M, K}), w);
        ib__value *g = ib_kh_node(b, IB_OP_GELU, 20, 1, (ib__value *[]){mm}, 0, NULL);
        bad += add_case(b, T, g, 2, "matmul + gelu", 0, NULL, NULL);
        ib__value *res = ib_kh_input(b, 3, (int64_t[]){1, M, N});
        ib__value *ad = ib_kh_node(b, IB_OP_ADD, 14, 2, (ib__value *[]){mm, res}, 0, NULL);
        ib__value *sc = ib_kh_const(b, 1, (int64_t[]){1}, 0.5f, 2);
        ib__value *mu = ib_kh_node(b, IB_OP_MUL, 14, 2, (ib__value *[]){ad, sc}, 0, NULL);
        bad += add_case(b, T, mu, 3, "matmul + residual add + scalar mul", 0, NULL, NULL);
    }
    return bad;
}

static ib__value *node1(ib_kh_batch *b, ib__op_id op, int32_t opset, ib__value *x) {
    return ib_kh_node(b, op, opset, 1, (ib__value *[]){x}, 0, NULL);
}

static ib__value *node2(ib_kh_batch *b, ib__op_id op, ib__value *x, ib__value *y) {
    return ib_kh_node(b, op, 14, 2, (ib__value *[]){x, y}, 0, NULL);
}

static int eltwise_cases(ib_kh_batch *b) {
    int bad = 0;
    const ib__kernel_template *T = &ib__template_eltwise;
    ib__value *x = ib_kh_input(b, 4, (int64_t[]){2, 3, 4, 5});
    ib__value *c = ib_kh_const(b, 3, (int64_t[]){3, 1, 1}, -1, 1);
    ib__value *s = ib_kh_const(b, 1, (int64_t[]){1}, 0.5f, 2);
    ib__value *t = node2(b, IB_OP_ADD, x, c);
    t = node1(b, IB_OP_RELU, 14, t);
    t = node2(b, IB_OP_MUL, t, s);
    bad += add_case(b, T, t, 3, "add [3,1,1] relu mul scalar", 0, NULL, NULL);
    bad += add_case(b, T, node2(b, IB_OP_SUB, s, x), 1, "scalar - x", 0, NULL, NULL);
    ib__value *sg = node1(b, IB_OP_SIGMOID, 13, x);
    bad += add_case(b, T, node2(b, IB_OP_MUL, sg, x), 2, "silu", 0, NULL, NULL);
    ib__value *y3 = ib_kh_input(b, 3, (int64_t[]){4, 6, 7});
    ib__value *v7 = ib_kh_const(b, 1, (int64_t[]){7}, 0.5f, 2);
    bad += add_case(b, T, node2(b, IB_OP_DIV, y3, v7), 1, "div by [7]", 0, NULL, NULL);
    ib__value *p = ib_kh_input(b, 3, (int64_t[]){4, 1, 7}), *q = ib_kh_input(b, 3, (int64_t[]){1, 6, 1});
    bad += add_case(b, T, node2(b, IB_OP_ADD, p, q), 1, "[4,1,7] + [1,6,1]", 0, NULL, NULL);
    ib__attr clip[] = {ib_kh_attr_float("min", 0.0f), ib_kh_attr_float("max", 6.0f)};
    ib__value *cl = ib_kh_node(b, IB_OP_CLIP, 6, 1, (ib__value *[]){y3}, 2, clip);
    bad += add_case(b, T, cl, 1, "clip-6 [0, 6]", 0, NULL, NULL);
    bad += add_case(b, T, node1(b, IB_OP_EXP, 13, y3), 1, "exp", 0, NULL, NULL);
    ib__value *ng = node1(b, IB_OP_NEG, 13, y3);
    bad += add_case(b, T, node1(b, IB_OP_TANH, 13, ng), 2, "neg tanh", 0, NULL, NULL);
    ib__value *big = ib_kh_input(b, 3, (int64_t[]){1, 64, 3072 + 5});
    bad += add_case(b, T, node1(b, IB_OP_GELU, 20, big), 1, "gelu [1,64,3077]", 0, NULL, NULL);
    /* torch's decomposed GELU: x * 0.5 * (1 + erf(x / sqrt 2)), Mul x a full operand */
    ib__value *sq = ib_kh_const(b, 0, NULL, 1.41421356f, 1.41421357f);
    ib__value *one = ib_kh_const(b, 0, NULL, 1.0f, 1.0000001f);
    ib__value *half = ib_kh_const(b, 0, NULL, 0.5f, 0.5000001f);
    ib__value *g = node2(b, IB_OP_DIV, y3, sq);
    g = node1(b, IB_OP_ERF, 13, g);
    g = node2(b, IB_OP_ADD, g, one);
    g = node2(b, IB_OP_MUL, y3, g);
    g = node2(b, IB_OP_MUL, g, half);
    bad += add_case(b, T, g, 5, "decomposed gelu", 0, NULL, NULL);
    const char *kn[] = {"chunk"};
    int64_t kv[] = {ib__target_vector_floats(ib_kh_target(b)) * 3};
    bad += add_case(b, T, node2(b, IB_OP_MAX, big, s), 1, "max scalar, small chunks", 1, kn, kv);
    return bad;
}

static int softmax_cases(ib_kh_batch *b) {
    int bad = 0;
    const ib__kernel_template *T = &ib__template_softmax;
    const int64_t shapes[][3] = {{3, 5, 7}, {1, 4, 128}, {2, 2, 1}, {1, 3, 35}};
    for (int i = 0; i < 4; i++) {
        ib__value *x = ib_kh_input(b, 3, shapes[i]);
        char label[64];
        snprintf(label, sizeof label, "softmax [%lld,%lld,%lld]", (long long)shapes[i][0],
                 (long long)shapes[i][1], (long long)shapes[i][2]);
        bad += add_case(b, T, node1(b, IB_OP_SOFTMAX, 13, x), 1, label, 0, NULL, NULL);
        snprintf(label, sizeof label, "logsoftmax [%lld,%lld,%lld]", (long long)shapes[i][0],
                 (long long)shapes[i][1], (long long)shapes[i][2]);
        bad += add_case(b, T, node1(b, IB_OP_LOG_SOFTMAX, 13, x), 1, label, 0, NULL, NULL);
    }
    /* opset 11, axis 1 of a rank-3 input: the flattened trailing dims */
    ib__value *x = ib_kh_input(b, 3, (int64_t[]){3, 4, 9});
    ib__attr ax[] = {ib_kh_attr_int("axis", 1)};
    bad += add_case(b, T, ib_kh_node(b, IB_OP_SOFTMAX, 11, 1, (ib__value *[]){x}, 1, ax), 1,
                    "softmax-11 axis 1", 0, NULL, NULL);
    ib__value *sm = node1(b, IB_OP_SOFTMAX, 13, x);
    ib__value *sc = ib_kh_const(b, 1, (int64_t[]){1}, 2, 3);
    bad += add_case(b, T, node2(b, IB_OP_MUL, sm, sc), 2, "softmax * scalar", 0, NULL, NULL);
    return bad;
}

/* ---- Groups that are not a chain (decomposed layer norm, attention): built here ---- */

/* The harness's record behind every value (tests/kernel_harness.c): its data. */
typedef struct kh_val_view {
    ib__value v;
    ib_tensor t;
    float *data;
    int64_t count;
} kh_val_view;

#define MAX_GROUP_CASES 64
typedef struct group_batch {
    ib__target target;
    ib__sb unit;
    int32_t n;
    ib__plan *plans[MAX_GROUP_CASES];
    const ib__value *want[MAX_GROUP_CASES];
    char label[MAX_GROUP_CASES][80];
} group_batch;

/* A kernel over `nodes` (anchor first) reading `ins` and writing `out`; false when the
 * template refuses it or emission fails. */
static bool group_add_epi(group_batch *gb, const ib__kernel_template *t, int32_t n_nodes,
                          const ib__node *const *nodes, int32_t n_in, ib__value *const *ins,
                          const ib__value *out, int32_t n_epi, const ib__epilogue_step *epi,
                          ib__value *const *epi_vals, const char *label) {
    if (gb->n >= MAX_GROUP_CASES || !out) return false;
    ib__plan *plan = NULL;
    if (ib__plan_create(NULL, &gb->target, &plan)) return false;
    ib__pkernel k;
    memset(&k, 0, sizeof k);
    const ib__node **nl = ib__arena_alloc(plan->arena, sizeof(*nl) * (size_t)n_nodes);
    bool ok = nl != NULL;
    for (int32_t i = 0; ok && i < n_nodes; i++) nl[i] = nodes[i];
    k.nodes = nl;
    k.n_nodes = n_nodes;
    for (int32_t i = 0; ok && i <= n_in + n_epi; i++) {
        if (i > n_in) {
            k.epi[k.n_epi] = epi[i - n_in - 1];
            k.epi[k.n_epi].operand_buf = -1;
            if (!epi_vals[i - n_in - 1]) {
                k.n_epi++;
                continue;
            }
        }
        const ib__value *v = i < n_in ? ins[i] : i == n_in ? out : epi_vals[i - n_in - 1];
        ib__pbuf pb;
        memset(&pb, 0, sizeof pb);
        pb.kind = i == n_in ? IB_BUF_OUTPUT : v->constant ? IB_BUF_WEIGHT : IB_BUF_INPUT;
        pb.dtype = IB_DTYPE_FLOAT32;
        pb.rank = v->rank;
        memcpy(pb.dims, v->dims, sizeof pb.dims);
        pb.value = v;
        pb.alias_of = -1;
        const kh_val_view *kv = (const kh_val_view *)v;
        int32_t id;
        if (pb.kind == IB_BUF_WEIGHT)
            ok = !ib__plan_add_weight(plan, &pb, kv->data, (size_t)kv->count * 4, &id);
        else
            ok = !ib__plan_add_buf(plan, &pb, &id);
        if (i < n_in) k.in[k.n_in++] = id;
        else if (i == n_in) k.out[k.n_out++] = id;
        else k.epi[k.n_epi++].operand_buf = id;
    }
    snprintf(k.fn_name, sizeof k.fn_name, "grp%d", (int)gb->n);
    int32_t kid;
    ok = ok && !ib__plan_add_kernel(plan, &k, &kid);
    ib__pkernel *kp = ok ? &plan->kernels[kid] : NULL;
    ok = ok && t->supports(plan, kp);
    if (ok) {
        t->default_knobs(plan, kp, &kp->knobs);
        ok = t->knobs_valid(plan, kp, &kp->knobs);
    }
    ok = ok && (!t->pack_weights || !t->pack_weights(plan, kp));
    ok = ok && !t->emit(plan, kp, &gb->unit);
    if (!ok) {
        fprintf(stderr, "  [%s] %s: refused (%s)\n", gb->target.name, label, ib_last_error());
        ib__plan_destroy(plan);
        return false;
    }
    gb->plans[gb->n] = plan;
    gb->want[gb->n] = out;
    snprintf(gb->label[gb->n], sizeof gb->label[0], "%s", label);
    gb->n++;
    return true;
}

static bool group_add(group_batch *gb, const ib__kernel_template *t, int32_t n_nodes,
                      const ib__node *const *nodes, int32_t n_in, ib__value *const *ins,
                      const ib__value *out, const char *label) {
    return group_add_epi(gb, t, n_nodes, nodes, n_in, ins, out, 0, NULL, NULL, label);
}

static void pf(void *pool, int64_t n, ib_kernel_range_fn fn, void *ctx) {
    ib__parallel_for(pool, n, fn, ctx);
}

/* Compiles the unit, runs every case and compares; returns the failures. */
static int group_run(group_batch *gb, double tol, bool run) {
    int failed = 0;
    ib__sb_printf(&gb->unit, "\n__attribute__((visibility(\"default\"))) int grp_entry(int i, "
                             "const ib_kernel_abi *abi, void *const *args) {\n  switch (i) {\n");
    for (int32_t i = 0; i < gb->n; i++)
        ib__sb_printf(&gb->unit, "  case %d: return grp%d(abi, args);\n", (int)i, (int)i);
    ib__sb_printf(&gb->unit, "  }\n  return -1;\n}\n");
    char dir[] = "/tmp/ib_tg.XXXXXX", src[300], so[256];
    if (!mkdtemp(dir)) return gb->n;
    snprintf(src, sizeof src, "%s/u.c", dir);
    snprintf(so, sizeof so, "%s/u.so", dir);
    FILE *f = fopen(src, "w");
    if (!f) return gb->n;
    fwrite(gb->unit.data, 1, gb->unit.len, f);
    fclose(f);
    const char *srcs[1] = {src};
    ib_kh_unit *unit = NULL;
    if (ib__toolchain_build_shared(&gb->target, 1, srcs, ib__toolchain_abi_include_dir(dir), so,
                                   1)) {
        fprintf(stderr, "  [%s] build failed: %s\n", gb->target.name, ib_last_error());
        failed = gb->n;
    } else if (run && ib_kh_unit_open(&gb->target, so, "grp_entry", &unit) != IB_OK) {
        fprintf(stderr, "  [%s] %s\n", gb->target.name, ib_last_error());
        failed = gb->n;
    }
    for (int32_t c = 0; run && unit && c < gb->n; c++) {
        ib__plan *plan = gb->plans[c];
        const ib__pkernel *k = &plan->kernels[0];
        void *args[2 * IB_MAX_KERNEL_ARGS];
        size_t bytes[2 * IB_MAX_KERNEL_ARGS];
        float *own[2 * IB_MAX_KERNEL_ARGS], *outp = NULL;
        int32_t na = 0, no = 0, out_arg = -1;
        for (int32_t i = 0; i < k->n_in + k->n_out + k->n_epi; i++) {
            int32_t id = i < k->n_in                ? k->in[i]
                         : i < k->n_in + k->n_out ? k->out[i - k->n_in]
                                                  : k->epi[i - k->n_in - k->n_out].operand_buf;
            bytes[na] = 0;
            if (id < 0) {
                args[na++] = NULL;
                continue;
            }
            const ib__pbuf *pb = &plan->bufs[id];
            if (pb->kind == IB_BUF_WEIGHT) {
                bytes[na] = plan->weights_bytes - (size_t)pb->offset;
                args[na++] = plan->weights + pb->offset;
                continue;
            }
            const kh_val_view *kv = (const kh_val_view *)pb->value;
            float *p = ib__aligned_alloc((size_t)kv->count * 4 + 64);
            for (int64_t e = 0; e < kv->count; e++)
                p[e] = pb->kind == IB_BUF_INPUT ? kv->data[e] : NAN;
            if (pb->kind == IB_BUF_OUTPUT) {
                outp = p;
                out_arg = na;
            }
            own[no++] = p;
            bytes[na] = (size_t)kv->count * 4;
            args[na++] = p;
        }
        ib_kernel_abi abi = {IB_KERNEL_ABI_VERSION, ib__pool_size(g_pool), pf, g_pool, NULL, NULL};
        int rc = ib_kh_unit_call(unit, c, &abi, na, args, bytes, out_arg);
        const kh_val_view *w = (const kh_val_view *)gb->want[c];
        double worst = rc ? INFINITY : 0;
        for (int64_t e = 0; e < w->count; e++) {
            double d = fabs((double)outp[e] - w->data[e]) / fmax(1.0, fabs(w->data[e]));
            if (!(d <= worst)) worst = isnan(d) ? INFINITY : d;
        }
        if (!(worst <= tol)) {
            fprintf(stderr, "  [%s] %s: max rel error %g\n", gb->target.name, gb->label[c], worst);
            failed++;
        }
        for (int32_t i = 0; i < no; i++) ib__aligned_free(own[i]);
    }
    ib_kh_unit_close(unit);
    unlink(src);
    unlink(so);
    snprintf(src, sizeof src, "%s.log", so);
    unlink(src);
    ib__toolchain_abi_include_remove(dir);
    rmdir(dir);
    return failed;
}

static void group_free(group_batch *gb) {
    for (int32_t i = 0; i < gb->n; i++) ib__plan_destroy(gb->plans[i]);
    ib__sb_free(&gb->unit);
}

typedef int (*group_fn)(ib_kh_batch *b, group_batch *gb);

/* Runs `fn`'s group cases for every level: run and checked where this machine runs the
 * code, compiled only elsewhere; "wide" is x86-64-v3 code shaped like x86-64-v4's
 * (512-bit vector types, 32 registers), so the AVX-512 kernels' logic runs here too. */
static void run_groups(const char *name, group_fn fn) {
    static const char *const x86_levels[] = {"x86-64-v4", "x86-64-v3", "generic", "wide"};
    const char *const *levels = g_cross ? g_levels : x86_levels;
    size_t n_levels = g_cross ? g_n_levels : sizeof x86_levels / sizeof x86_levels[0];
    for (size_t l = 0; l < n_levels; l++) {
        ib__target t;
        bool wide = strcmp(levels[l], "wide") == 0;
        CHECK(ib__target_resolve(wide ? "x86-64-v3" : levels[l], &t) == IB_OK);
        if (wide) {
            if (!t.is_host) continue;
            t.vector_bits = 512;
            t.vector_regs = 32;
            snprintf(t.name, sizeof t.name, "wide");
        }
        ib_kh_batch *b = NULL;
        ib_status st = ib_kh_batch_create("generic", g_pool, &b); /* values only */
        CHECK(st == IB_OK);
        if (st) continue;
        group_batch gb;
        memset(&gb, 0, sizeof gb);
        gb.target = t;
        ib__sb_init(&gb.unit);
        ib__emit_prelude(&gb.unit, &gb.target);
        int refused = fn(b, &gb);
        bool runs = ib_kh_can_run(&t);
        int failed = group_run(&gb, 1e-4, runs);
        printf("  %s [%s]: %d refused, %d failed%s\n", name, t.name, refused, failed,
               runs ? (t.is_host ? "" : " (emulated)") : " (compiled only: not runnable here)");
        CHECK_EQ_INT(refused, 0);
        CHECK_EQ_INT(failed, 0);
        group_free(&gb);
        ib_kh_batch_destroy(b);
    }
}

/* Single-node gemm kernels through the group path (so they also run "wide"). */
static int gemm_groups(ib_kh_batch *b, group_batch *gb) {
    int bad = 0;
    const ib__kernel_template *T = &ib__template_gemm;
    const int64_t mkn[][3] = {{1, 1, 1}, {13, 29, 53}, {64, 96, 150}, {9, 300, 17}};
    for (int i = 0; i < 4; i++) {
        for (int cb = 0; cb < 2; cb++) {
            ib__value *a = ib_kh_input(b, 2, (int64_t[]){mkn[i][0], mkn[i][1]});
            int64_t wd[2] = {mkn[i][1], mkn[i][2]};
            ib__value *w = cb ? ib_kh_const(b, 2, wd, -1, 1) : ib_kh_input(b, 2, wd);
            ib__value *y = matmul(b, a, w);
            char label[64];
            snprintf(label, sizeof label, "matmul %lldx%lldx%lld %s", (long long)mkn[i][0],
                     (long long)mkn[i][1], (long long)mkn[i][2], cb ? "const" : "runtime");
            bad += !group_add(gb, T, 1, (const ib__node *[]){y->producer}, 2,
                              (ib__value *[]){a, w}, y, label);
        }
    }
    ib__value *a = ib_kh_input(b, 2, (int64_t[]){21, 11});
    ib__value *w = ib_kh_const(b, 2, (int64_t[]){40, 21}, -1, 1);
    ib__value *c = ib_kh_const(b, 1, (int64_t[]){40}, -1, 1);
    ib__attr at[] = {ib_kh_attr_int("transA", 1), ib_kh_attr_int("transB", 1),
                     ib_kh_attr_float("alpha", 0.5f), ib_kh_attr_float("beta", 2.0f)};
    ib__value *y = ib_kh_node(b, IB_OP_GEMM, 13, 3, (ib__value *[]){a, w, c}, 4, at);
    bad += !group_add(gb, T, 1, (const ib__node *[]){y->producer}, 3, (ib__value *[]){a, w, c}, y,
                      "gemm tA tB alpha beta bias [N]");
    /* BERT's linear layer: MatMul, Add of a per-column bias, then GELU or a residual */
    {
        ib__value *x = ib_kh_input(b, 3, (int64_t[]){1, 19, 40});
        ib__value *wl = ib_kh_const(b, 2, (int64_t[]){40, 70}, -1, 1);
        ib__value *bias = ib_kh_const(b, 1, (int64_t[]){70}, -1, 1);
        ib__value *res = ib_kh_input(b, 3, (int64_t[]){1, 19, 70});
        ib__value *mm = matmul(b, x, wl);
        ib__value *ab = node2(b, IB_OP_ADD, mm, bias);
        ib__value *ge = node1(b, IB_OP_GELU, 20, ab);
        ib__value *rs = node2(b, IB_OP_ADD, ab, res);
        ib__value *re = node1(b, IB_OP_RELU, 14, rs);
        ib__epilogue_step e1[2] = {{.kind = IB_EPI_BINARY, .op = IB_OP_ADD,
                                    .operand_kind = IB_EPI_PER_CHANNEL},
                                   {.kind = IB_EPI_UNARY, .op = IB_OP_GELU}};
        bad += !group_add_epi(gb, T, 3, (const ib__node *[]){mm->producer, ab->producer,
                                                            ge->producer},
                              2, (ib__value *[]){x, wl}, ge, 2, e1, (ib__value *[]){bias, NULL},
                              "matmul + bias [N] + gelu");
        ib__epilogue_step e2[3] = {{.kind = IB_EPI_BINARY, .op = IB_OP_ADD,
                                    .operand_kind = IB_EPI_PER_CHANNEL},
                                   {.kind = IB_EPI_BINARY, .op = IB_OP_ADD,
                                    .operand_kind = IB_EPI_FULL},
                                   {.kind = IB_EPI_UNARY, .op = IB_OP_RELU}};
        bad += !group_add_epi(gb, T, 4, (const ib__node *[]){mm->producer, ab->producer,
                                                            rs->producer, re->producer},
                              2, (ib__value *[]){x, wl}, re, 3, e2,
                              (ib__value *[]){bias, res, NULL}, "matmul + bias + residual + relu");
    }
    ib__value *a4 = ib_kh_input(b, 4, (int64_t[]){2, 3, 7, 9});
    ib__value *w4 = ib_kh_const(b, 3, (int64_t[]){3, 9, 35}, -1, 1);
    ib__value *y4 = matmul(b, a4, w4);
    bad += !group_add(gb, T, 1, (const ib__node *[]){y4->producer}, 2, (ib__value *[]){a4, w4},
                      y4, "batched const B");
    return bad;
}

static int softmax_groups(ib_kh_batch *b, group_batch *gb) {
    ib__value *x = ib_kh_input(b, 3, (int64_t[]){3, 5, 37});
    ib__value *y = node1(b, IB_OP_SOFTMAX, 13, x);
    ib__value *e = node1(b, IB_OP_GELU, 20, x);
    return !group_add(gb, &ib__template_softmax, 1, (const ib__node *[]){y->producer}, 1,
                      (ib__value *[]){x}, y, "softmax") +
           !group_add(gb, &ib__template_eltwise, 1, (const ib__node *[]){e->producer}, 1,
                      (ib__value *[]){x}, e, "gelu");
}

/* torch 1.13's LayerNorm at opset 13, optionally without the affine Mul/Add. */
static int decomposed_ln(ib_kh_batch *b, group_batch *gb, int64_t rows, int64_t len,
                         bool affine, int32_t rm_opset, bool synthetic) {
    ib__value *x = ib_kh_input(b, 3, (int64_t[]){1, rows, len});
    ib__attr ax[] = {ib_kh_attr_ints("axes", 1, (int64_t[]){-1})};
    ib__value *m = ib_kh_node(b, IB_OP_REDUCE_MEAN, rm_opset, 1, (ib__value *[]){x}, 1, ax);
    ib__value *d = node2(b, IB_OP_SUB, x, m);
    ib__value *two = ib_kh_const(b, 0, NULL, 2.0f, 2.0f);
    ib__value *p = ib_kh_node(b, IB_OP_POW, 13, 2, (ib__value *[]){d, two}, 0, NULL);
    ib__value *v = ib_kh_node(b, IB_OP_REDUCE_MEAN, rm_opset, 1, (ib__value *[]){p}, 1, ax);
    ib__value *eps = ib_kh_const(b, 0, NULL, 1e-5f, 1e-5f);
    ib__value *ve = node2(b, IB_OP_ADD, v, eps);
    ib__value *sd = node1(b, IB_OP_SQRT, 13, ve);
    ib__value *y = node2(b, IB_OP_DIV, d, sd);
    ib__value *vals[9] = {m, d, p, v, ve, sd, y};
    int32_t n = 7;
    if (affine) {
        ib__value *ga = ib_kh_const(b, 1, (int64_t[]){len}, 0.5f, 1.5f);
        ib__value *be = ib_kh_const(b, 1, (int64_t[]){len}, -1, 1);
        vals[n++] = y = node2(b, IB_OP_MUL, y, ga);
        vals[n++] = y = node2(b, IB_OP_ADD, y, be);
    }
    const ib__node *nodes[10];
    for (int32_t i = 0; i < n; i++) {
        if (!vals[i]) return 1;
        nodes[i + synthetic] = vals[i]->producer;
    }
    char label[80];
    snprintf(label, sizeof label, "decomposed layer norm [1,%lld,%lld]%s%s", (long long)rows,
             (long long)len, affine ? " affine" : "", synthetic ? " (LayerNormalization first)" : "");
    if (!synthetic)
        return !group_add(gb, &ib__template_layernorm, n, nodes, 1, (ib__value *[]){x}, y, label);
    /* the fusion pass's form: a LayerNormalization(x, gamma, beta) stands first */
    ib__value *ga = vals[7]->producer->inputs[1], *be = vals[8]->producer->inputs[1];
    ib__attr at[] = {ib_kh_attr_float("epsilon", 1e-5f)};
    ib__value *ln = ib_kh_node(b, IB_OP_LAYER_NORMALIZATION, 17, 3, (ib__value *[]){x, ga, be}, 1,
                               at);
    if (!ln) return 1;
    nodes[0] = ln->producer;
    return !group_add(gb, &ib__template_layernorm, n + 1, nodes, 3, (ib__value *[]){x, ga, be}, ln,
                      label);
}

static int layernorm_groups(ib_kh_batch *b, group_batch *gb) {
    int bad = 0;
    bad += decomposed_ln(b, gb, 9, 768, true, 13, false);
    bad += decomposed_ln(b, gb, 5, 37, true, 13, false);
    bad += decomposed_ln(b, gb, 3, 20, false, 11, false);
    bad += decomposed_ln(b, gb, 7, 96, true, 13, true);
    /* LayerNormalization-17 nodes: constant and run-time scale/bias, flattened axis */
    const ib__kernel_template *T = &ib__template_layernorm;
    ib__value *x = ib_kh_input(b, 3, (int64_t[]){2, 5, 37});
    ib__value *sc = ib_kh_const(b, 1, (int64_t[]){37}, 0.5f, 1.5f);
    ib__value *bi = ib_kh_const(b, 1, (int64_t[]){37}, -1, 1);
    ib__value *y = ib_kh_node(b, IB_OP_LAYER_NORMALIZATION, 17, 3, (ib__value *[]){x, sc, bi}, 0,
                              NULL);
    bad += !group_add(gb, T, 1, (const ib__node *[]){y->producer}, 3, (ib__value *[]){x, sc, bi},
                      y, "LayerNormalization const");
    ib__value *sr = ib_kh_input(b, 1, (int64_t[]){37});
    ib__value *y2 = ib_kh_node(b, IB_OP_LAYER_NORMALIZATION, 17, 2, (ib__value *[]){x, sr}, 0,
                               NULL);
    bad += !group_add(gb, T, 1, (const ib__node *[]){y2->producer}, 2, (ib__value *[]){x, sr}, y2,
                      "LayerNormalization run-time scale, no bias");
    ib__value *s2 = ib_kh_const(b, 2, (int64_t[]){5, 37}, 0.5f, 1.5f);
    ib__attr at[] = {ib_kh_attr_int("axis", 1), ib_kh_attr_float("epsilon", 1e-3f)};
    ib__value *y3 = ib_kh_node(b, IB_OP_LAYER_NORMALIZATION, 17, 2, (ib__value *[]){x, s2}, 2, at);
    bad += !group_add(gb, T, 1, (const ib__node *[]){y3->producer}, 2, (ib__value *[]){x, s2}, y3,
                      "LayerNormalization axis 1 eps 1e-3");
    return bad;
}

/* MatMul(Q, K^T) -> scale -> (Add mask) -> Softmax -> MatMul(., V). */
static int attention_case(ib_kh_batch *b, group_batch *gb, int32_t rank, const int64_t *bd,
                          int64_t S, int64_t S2, int64_t D, int64_t Dv, bool div, int32_t mrank,
                          const int64_t *mdims) {
    int64_t qd[IB_MAX_RANK], kd[IB_MAX_RANK], vd[IB_MAX_RANK];
    for (int32_t d = 0; d < rank - 2; d++) qd[d] = kd[d] = vd[d] = bd[d];
    qd[rank - 2] = S, qd[rank - 1] = D;
    kd[rank - 2] = D, kd[rank - 1] = S2;
    vd[rank - 2] = S2, vd[rank - 1] = Dv;
    ib__value *q = ib_kh_input(b, rank, qd), *kt = ib_kh_input(b, rank, kd);
    ib__value *v = ib_kh_input(b, rank, vd);
    ib__value *sc = matmul(b, q, kt);
    ib__value *c = ib_kh_const(b, 0, NULL, div ? 2.8284271f : 0.35f, div ? 2.8284272f : 0.3500001f);
    ib__value *t = node2(b, div ? IB_OP_DIV : IB_OP_MUL, sc, c);
    ib__value *vals[5] = {sc, t}, *ins[4] = {q, kt, v};
    int32_t n = 2, n_in = 3;
    if (mrank > 0) {
        ib__value *m = ib_kh_input(b, mrank, mdims);
        vals[n++] = t = node2(b, IB_OP_ADD, t, m);
        ins[n_in++] = m;
    }
    vals[n++] = t = node1(b, IB_OP_SOFTMAX, 13, t);
    vals[n++] = t = matmul(b, t, v);
    const ib__node *nodes[5];
    for (int32_t i = 0; i < n; i++) {
        if (!vals[i]) return 1;
        nodes[i] = vals[i]->producer;
    }
    char label[80];
    snprintf(label, sizeof label, "attention rank %d S %lld S2 %lld D %lld Dv %lld%s", (int)rank,
             (long long)S, (long long)S2, (long long)D, (long long)Dv, mrank ? " mask" : "");
    return !group_add(gb, &ib__template_attention, n, nodes, n_in, ins, t, label);
}

static int attention_groups(ib_kh_batch *b, group_batch *gb) {
    int bad = 0;
    bad += attention_case(b, gb, 4, (int64_t[]){1, 2}, 9, 9, 8, 8, true, 4,
                          (int64_t[]){1, 1, 1, 9});
    bad += attention_case(b, gb, 4, (int64_t[]){2, 3}, 17, 17, 16, 20, false, 0, NULL);
    bad += attention_case(b, gb, 4, (int64_t[]){1, 12}, 128, 128, 64, 64, true, 4,
                          (int64_t[]){1, 1, 1, 128});
    bad += attention_case(b, gb, 3, (int64_t[]){4}, 5, 7, 3, 33, true, 2, (int64_t[]){5, 7});
    return bad;
}

typedef int (*case_fn)(ib_kh_batch *b);

static void run_family(const char *name, case_fn fn) {
    for (size_t l = 0; l < g_n_levels; l++) {
        ib_kh_batch *b = NULL;
        ib_status st = ib_kh_batch_create(g_levels[l], g_pool, &b);
        if (st == IB_ERR_UNSUPPORTED) {
            printf("  %s [%s]: skipped (not runnable here)\n", name, g_levels[l]);
            continue;
        }
        CHECK(st == IB_OK);
        if (st) continue;
        int refused = fn(b);
        int failed = ib_kh_run(b, 1e-4);
        printf("  %s [%s]: %d refused, %d failed\n", name, g_levels[l], refused, failed);
        CHECK_EQ_INT(refused, 0);
        CHECK_EQ_INT(failed, 0);
        ib_kh_batch_destroy(b);
    }
}

TEST(gemm_family) { run_family("gemm", gemm_cases); }
TEST(eltwise_family) { run_family("eltwise", eltwise_cases); }
TEST(softmax_family) { run_family("softmax", softmax_cases); }
/* One compile unit per level for every group case. */
static int all_groups(ib_kh_batch *b, group_batch *gb) {
    return layernorm_groups(b, gb) + attention_groups(b, gb) + gemm_groups(b, gb) +
           softmax_groups(b, gb);
}

TEST(group_kernels) { run_groups("layernorm, attention, gemm, softmax, eltwise groups", all_groups); }

int main(int argc, char **argv) {
    if (!ib_kh_pick_targets(argc, argv, g_default_levels, 3, &g_levels, &g_n_levels)) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    g_cross = argc > 1;
    if (ib__pool_create(2, &g_pool)) return 1;
    RUN(gemm_family);
    RUN(eltwise_family);
    RUN(softmax_family);
    RUN(group_kernels);
    ib__pool_destroy(g_pool);
    TEST_SUMMARY();
}
