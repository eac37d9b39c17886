/* Tests for the CUDA kernel templates: every template's generated CUDA C for a set of
 * shapes (odd sizes, epilogues, non-default knobs, each tensor-core precision) compiled
 * by nvcc for sm_80 and sm_90 in one run per precision, then, where an NVIDIA GPU and its
 * driver are present, every kernel run on randomised data against the reference ops.
 * Without nvcc the test reports itself skipped (exit 77). Tolerances (max |got - want| /
 * max(1, |want|)): FP32 1e-4; TF32 and FP16 tensor cores 2e-2 (10-bit mantissas, K up to
 * ~600); BF16 8e-2 (7-bit mantissa). */
#include <stdint.h>

#include "codegen/toolchain.h"
#include "kernel_harness.h"
#include "runtime/cuda_runtime.h"
#include "test.h"

static ib__pool *g_pool;
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static bool g_any_run;

static int64_t rnd(int64_t lo, int64_t hi) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return lo + (int64_t)(g_rng % (uint64_t)(hi - lo + 1));
}

static ib__value *node1(ib_kh_batch *b, ib__op_id op, int32_t opset, ib__value *x) {
    return ib_kh_node(b, op, opset, 1, &x, 0, NULL);
}
static ib__value *node2(ib_kh_batch *b, ib__op_id op, ib__value *x, ib__value *y) {
    return ib_kh_node(b, op, 14, 2, (ib__value *[]){x, y}, 0, NULL);
}

/* Adds a case (chain of n_nodes ending at last) with knob overrides; CHECKs it is taken. */
static void add(ib_kh_batch *b, const ib__kernel_template *t, ib__value *last, int32_t n_nodes,
                const char *label, int32_t n_knobs, const char *const *kn, const int64_t *kv) {
    CHECK(last != NULL);
    if (!last) return;
    ib_kh_spec s;
    memset(&s, 0, sizeof s);
    s.tmpl = t;
    s.last = last;
    s.n_nodes = n_nodes;
    s.n_knobs = n_knobs;
    for (int32_t i = 0; i < n_knobs && i < 8; i++) {
        s.knob_name[i] = kn[i];
        s.knob_value[i] = kv[i];
    }
    int32_t idx = ib_kh_add(b, &s, label);
    if (idx < 0) fprintf(stderr, "  case refused: %s\n", label);
    CHECK(idx >= 0);
}

static void gemm_cases(ib_kh_batch *b, bool tensor_cores) {
    const ib__kernel_template *T = &ib__template_cuda_gemm;
    char label[128];
    for (int it = 0; it < (tensor_cores ? 5 : 10); it++) {
        int64_t M = rnd(1, 70), K = rnd(1, 300), N = rnd(1, 130);
        if (it == 0) M = K = N = 1;
        if (it == 1) M = 64, K = 128, N = 64;
        bool cb = it % 2 == 0;
        ib__value *a = ib_kh_input(b, 2, (int64_t[]){M, K});
        ib__value *w = cb ? ib_kh_const(b, 2, (int64_t[]){K, N}, -1, 1) : ib_kh_input(b, 2, (int64_t[]){K, N});
        ib__value *y = node2(b, IB_OP_MAT_MUL, a, w);
        int32_t nn = 1;
        if (it % 3 == 1) {
            y = node1(b, IB_OP_RELU, 14, y);
            nn++;
        }
        snprintf(label, sizeof label, "matmul %lldx%lldx%lld %s B%s", (long long)M, (long long)K,
                 (long long)N, cb ? "const" : "runtime", nn > 1 ? " relu" : "");
        add(b, T, y, nn, label, 0, NULL, NULL);
    }
    /* batched: both operands, and B shared (a linear layer on [B, S, H]) */
    {
        ib__value *a = ib_kh_input(b, 4, (int64_t[]){2, 3, 17, 24});
        ib__value *c = ib_kh_input(b, 4, (int64_t[]){2, 3, 24, 9});
        add(b, T, node2(b, IB_OP_MAT_MUL, a, c), 1, "matmul batched [2,3,17,24]x[2,3,24,9]", 0, NULL, NULL);
        ib__value *x = ib_kh_input(b, 2, (int64_t[]){19, 40});
        ib__value *w = ib_kh_const(b, 2, (int64_t[]){40, 33}, -1, 1);
        ib__value *bias = ib_kh_const(b, 1, (int64_t[]){33}, -1, 1);
        ib__value *y = node2(b, IB_OP_ADD, node2(b, IB_OP_MAT_MUL, x, w), bias);
        ib__value *g = node1(b, IB_OP_GELU, 20, y);
        add(b, T, g, 3, "linear [19,40]x[40,33] + bias, gelu", 0, NULL, NULL);
        ib__value *res = ib_kh_input(b, 2, (int64_t[]){19, 33});
        add(b, T, node2(b, IB_OP_ADD, node2(b, IB_OP_MAT_MUL, x, w), res), 2,
            "linear + residual", 0, NULL, NULL);
    }
    /* Gemm: transposes, alpha/beta, bias shapes */
    for (int it = 0; it < 4; it++) {
        int64_t M = rnd(1, 40), K = rnd(1, 90), N = rnd(1, 70);
        int64_t ta = it & 1, tb = (it >> 1) & 1;
        ib__value *a = ib_kh_input(b, 2, ta ? (int64_t[]){K, M} : (int64_t[]){M, K});
        ib__value *w = ib_kh_const(b, 2, tb ? (int64_t[]){N, K} : (int64_t[]){K, N}, -1, 1);
        int64_t cd[2] = {it == 2 ? M : 1, it == 3 ? 1 : N};
        ib__value *c = ib_kh_const(b, 2, cd, -1, 1);
        ib__attr at[4] = {ib_kh_attr_int("transA", ta), ib_kh_attr_int("transB", tb),
                          ib_kh_attr_float("alpha", it == 1 ? 0.5f : 1.0f),
                          ib_kh_attr_float("beta", it == 2 ? 2.0f : 1.0f)};
        ib__value *y = ib_kh_node(b, IB_OP_GEMM, 13, 3, (ib__value *[]){a, w, c}, 4, at);
        snprintf(label, sizeof label, "gemm %lldx%lldx%lld tA%lld tB%lld bias[%lld,%lld]", (long long)M,
                 (long long)K, (long long)N, (long long)ta, (long long)tb, (long long)cd[0],
                 (long long)cd[1]);
        add(b, T, y, 1, label, 0, NULL, NULL);
    }
    if (tensor_cores) {
        static const char *const kn[4] = {"block_m", "block_n", "warp_m", "warp_n"};
        ib__value *a = ib_kh_input(b, 2, (int64_t[]){45, 77});
        ib__value *w = ib_kh_const(b, 2, (int64_t[]){77, 50}, -1, 1);
        add(b, T, node2(b, IB_OP_MAT_MUL, a, w), 1, "matmul tc 32x32 warps 16x16", 4, kn,
            (const int64_t[]){32, 32, 16, 16});
        return;
    }
    /* non-default knobs: small tiles, one stage, float4 loads of B */
    static const char *const kn[7] = {"block_m", "block_n", "block_k", "thread_m", "thread_n", "stages", "vec"};
    ib__value *a = ib_kh_input(b, 2, (int64_t[]){37, 53});
    ib__value *w = ib_kh_const(b, 2, (int64_t[]){53, 64}, -1, 1);
    add(b, T, node2(b, IB_OP_MAT_MUL, a, w), 1, "matmul knobs 32x32x8 t2x2 s1 v4", 7, kn,
        (const int64_t[]){32, 32, 8, 2, 2, 1, 4});
    add(b, T, node2(b, IB_OP_MAT_MUL, a, w), 1, "matmul knobs 16x64x32 t1x4 s2 v1", 7, kn,
        (const int64_t[]){16, 64, 32, 1, 4, 2, 1});
}

typedef struct conv_d {
    int64_t n, c, h, w, m, kh, kw, s, d, p, group;
    int epi; /* 0 none, 1 bn+relu, 2 bn+residual+relu, 3 clip (relu6), 4 per-channel mul */
    bool bias;
} conv_d;

static void conv_case(ib_kh_batch *b, const conv_d *d, int32_t n_knobs, const char *const *kn,
                      const int64_t *kv) {
    int64_t xd[4] = {d->n, d->c, d->h, d->w}, wd[4] = {d->m, d->c / d->group, d->kh, d->kw}, md[1] = {d->m};
    ib__value *x = ib_kh_input(b, 4, xd);
    ib__value *w = ib_kh_const(b, 4, wd, -0.5f, 0.5f);
    ib__value *bias = d->bias ? ib_kh_const(b, 1, md, -0.5f, 0.5f) : NULL;
    int64_t ks[2] = {d->kh, d->kw}, st[2] = {d->s, d->s}, dl[2] = {d->d, d->d};
    int64_t pads[4] = {d->p, d->p, d->p, d->p > 0 ? d->p - 1 : 0};
    ib__attr a[5] = {ib_kh_attr_ints("kernel_shape", 2, ks), ib_kh_attr_ints("strides", 2, st),
                     ib_kh_attr_ints("dilations", 2, dl), ib_kh_attr_ints("pads", 4, pads),
                     ib_kh_attr_int("group", d->group)};
    ib__value *y = ib_kh_node(b, IB_OP_CONV, 11, d->bias ? 3 : 2, (ib__value *[]){x, w, bias}, 5, a);
    int32_t nn = 1;
    if (y && (d->epi == 1 || d->epi == 2)) {
        ib__value *sc = ib_kh_const(b, 1, md, 0.5f, 1.5f), *sh = ib_kh_const(b, 1, md, -0.5f, 0.5f);
        ib__value *mu = ib_kh_const(b, 1, md, -0.5f, 0.5f), *var = ib_kh_const(b, 1, md, 0.2f, 2.0f);
        ib__attr ea[1] = {ib_kh_attr_float("epsilon", 1e-3f)};
        y = ib_kh_node(b, IB_OP_BATCH_NORMALIZATION, 15, 5, (ib__value *[]){y, sc, sh, mu, var}, 1, ea);
        nn++;
        if (y && d->epi == 2) {
            y = node2(b, IB_OP_ADD, y, ib_kh_input(b, 4, y->dims));
            nn++;
        }
        if (y) {
            y = node1(b, IB_OP_RELU, 14, y);
            nn++;
        }
    } else if (y && d->epi == 3) {
        int64_t one[1] = {1};
        ib__value *lo = ib_kh_const(b, 0, one, 0.0f, 0.0f), *hi = ib_kh_const(b, 0, one, 6.0f, 6.0f);
        y = ib_kh_node(b, IB_OP_CLIP, 13, 3, (ib__value *[]){y, lo, hi}, 0, NULL);
        nn++;
    } else if (y && d->epi == 4) {
        ib__value *s = ib_kh_const(b, 3, (int64_t[]){d->m, 1, 1}, 0.5f, 2.0f);
        y = node2(b, IB_OP_MUL, s, y);
        nn++;
    }
    bool dw = d->group > 1 && d->group == d->c;
    char label[128];
    snprintf(label, sizeof label, "%s n%lld c%lld %lldx%lld m%lld k%lldx%lld s%lld d%lld p%lld g%lld e%d%s",
             dw ? "depthwise" : "conv", (long long)d->n, (long long)d->c, (long long)d->h,
             (long long)d->w, (long long)d->m, (long long)d->kh, (long long)d->kw, (long long)d->s,
             (long long)d->d, (long long)d->p, (long long)d->group, d->epi, n_knobs ? " knobs" : "");
    add(b, dw ? &ib__template_cuda_conv2d_depthwise : &ib__template_cuda_conv2d, y, nn, label,
        n_knobs, kn, kv);
}

static void conv_cases(ib_kh_batch *b, bool tensor_cores) {
    const conv_d fixed[] = {
        {1, 3, 23, 21, 16, 7, 7, 2, 1, 3, 1, 1, false}, /* ResNet stem, odd image */
        {2, 16, 9, 11, 24, 3, 3, 1, 1, 1, 1, 2, false}, /* basic block, residual */
        {1, 24, 8, 8, 40, 1, 1, 1, 1, 0, 1, 0, true},   /* pointwise */
        {1, 12, 10, 10, 18, 3, 3, 2, 2, 2, 2, 4, true}, /* grouped, dilated, strided */
        {1, 17, 13, 7, 17, 3, 3, 1, 1, 1, 17, 3, false}, /* depthwise, relu6 */
        {2, 8, 15, 15, 16, 5, 5, 2, 1, 2, 8, 1, false},  /* depthwise x2 multiplier */
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (tensor_cores && fixed[i].group > 1 && fixed[i].group == fixed[i].c) continue;
        conv_case(b, &fixed[i], 0, NULL, NULL);
    }
    for (int it = 0; it < (tensor_cores ? 2 : 6); it++) {
        conv_d d = {rnd(1, 2), rnd(1, 20), rnd(3, 14), rnd(3, 14), rnd(1, 33), 0, 0, rnd(1, 2), 1, 0, 1,
                    (int)rnd(0, 4), rnd(0, 1) == 1};
        d.kh = d.kw = rnd(0, 1) ? 3 : 1;
        d.p = d.kh / 2;
        conv_case(b, &d, 0, NULL, NULL);
    }
    if (!tensor_cores) {
        static const char *const kn[6] = {"block_m", "block_n", "block_k", "thread_m", "thread_n", "stages"};
        conv_d d = {1, 13, 9, 9, 21, 3, 3, 1, 1, 1, 1, 1, false};
        conv_case(b, &d, 6, kn, (const int64_t[]){16, 32, 8, 1, 2, 1});
        static const char *const dk[2] = {"threads", "outputs_per_thread"};
        conv_d e = {1, 10, 11, 13, 10, 3, 3, 1, 1, 1, 10, 0, true};
        conv_case(b, &e, 2, dk, (const int64_t[]){64, 4});
    }
}

static void pool_case(ib_kh_batch *b, ib__op_id op, int64_t n, int64_t c, int64_t h, int64_t w,
                      int64_t k, int64_t s, int64_t pad, int64_t ceil_mode, int64_t cip, bool relu) {
    ib__value *x = ib_kh_input(b, 4, (int64_t[]){n, c, h, w});
    int64_t ks[2] = {k, k}, st[2] = {s, s}, pads[4] = {pad, pad, pad > 0 ? pad - 1 : 0, pad};
    ib__attr a[5];
    int32_t na = 0;
    bool global = op == IB_OP_GLOBAL_AVERAGE_POOL || op == IB_OP_GLOBAL_MAX_POOL;
    if (!global) {
        a[na++] = ib_kh_attr_ints("kernel_shape", 2, ks);
        a[na++] = ib_kh_attr_ints("strides", 2, st);
        a[na++] = ib_kh_attr_ints("pads", 4, pads);
        a[na++] = ib_kh_attr_int("ceil_mode", ceil_mode);
        if (op == IB_OP_AVERAGE_POOL) a[na++] = ib_kh_attr_int("count_include_pad", cip);
    }
    ib__value *y = ib_kh_node(b, op, op == IB_OP_MAX_POOL ? 12 : 11, 1, &x, na, a);
    int32_t nn = 1;
    if (y && relu) {
        y = node1(b, IB_OP_RELU, 14, y);
        nn++;
    }
    char label[128];
    snprintf(label, sizeof label, "%s n%lld c%lld %lldx%lld k%lld s%lld p%lld ceil%lld cip%lld%s",
             ib__op_name(op), (long long)n, (long long)c, (long long)h, (long long)w, (long long)k,
             (long long)s, (long long)pad, (long long)ceil_mode, (long long)cip, relu ? " relu" : "");
    add(b, &ib__template_cuda_pool2d, y, nn, label, 0, NULL, NULL);
}

static void pool_cases(ib_kh_batch *b) {
    pool_case(b, IB_OP_MAX_POOL, 1, 64, 20, 20, 3, 2, 1, 0, 0, false);
    pool_case(b, IB_OP_MAX_POOL, 2, 7, 9, 13, 2, 2, 0, 1, 0, true);
    pool_case(b, IB_OP_AVERAGE_POOL, 1, 5, 11, 11, 3, 2, 1, 0, 1, false);
    pool_case(b, IB_OP_AVERAGE_POOL, 1, 5, 11, 11, 3, 2, 1, 1, 0, false);
    pool_case(b, IB_OP_GLOBAL_AVERAGE_POOL, 2, 37, 7, 7, 0, 0, 0, 0, 0, false);
    pool_case(b, IB_OP_GLOBAL_AVERAGE_POOL, 1, 20, 1, 1, 0, 0, 0, 0, 0, true);
    pool_case(b, IB_OP_GLOBAL_MAX_POOL, 2, 9, 45, 6, 0, 0, 0, 0, 0, false);
}

static void row_cases(ib_kh_batch *b) {
    const int64_t lens[] = {1, 7, 100, 1000, 3001};
    char label[96];
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        ib__value *x = ib_kh_input(b, 3, (int64_t[]){2, 3, lens[i]});
        snprintf(label, sizeof label, "softmax [2,3,%lld]", (long long)lens[i]);
        add(b, &ib__template_cuda_softmax, node1(b, IB_OP_SOFTMAX, 13, x), 1, label, 0, NULL, NULL);
    }
    ib__value *x = ib_kh_input(b, 2, (int64_t[]){5, 77});
    add(b, &ib__template_cuda_softmax, node1(b, IB_OP_LOG_SOFTMAX, 13, x), 1, "logsoftmax [5,77]", 0,
        NULL, NULL);
    ib__value *x4 = ib_kh_input(b, 4, (int64_t[]){2, 3, 4, 5});
    ib__attr ax[1] = {ib_kh_attr_int("axis", 1)};
    add(b, &ib__template_cuda_softmax, ib_kh_node(b, IB_OP_SOFTMAX, 11, 1, &x4, 1, ax), 1,
        "softmax-11 axis 1 [2,3,4,5]", 0, NULL, NULL);
    const int64_t hs[] = {37, 64, 768};
    for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) {
        ib__value *v = ib_kh_input(b, 3, (int64_t[]){2, 5, hs[i]});
        ib__value *ga = ib_kh_const(b, 1, (int64_t[]){hs[i]}, 0.5f, 1.5f);
        ib__value *be = ib_kh_const(b, 1, (int64_t[]){hs[i]}, -1, 1);
        ib__attr at[1] = {ib_kh_attr_float("epsilon", 1e-5f)};
        ib__value *ln = ib_kh_node(b, IB_OP_LAYER_NORMALIZATION, 17, 3, (ib__value *[]){v, ga, be}, 1, at);
        snprintf(label, sizeof label, "layernorm [2,5,%lld]", (long long)hs[i]);
        add(b, &ib__template_cuda_layernorm, ln, 1, label, 0, NULL, NULL);
    }
}

static void eltwise_cases(ib_kh_batch *b) {
    const ib__kernel_template *T = &ib__template_cuda_eltwise;
    ib__value *p = ib_kh_input(b, 3, (int64_t[]){4, 1, 7}), *q = ib_kh_input(b, 3, (int64_t[]){1, 6, 1});
    add(b, T, node2(b, IB_OP_ADD, p, q), 1, "[4,1,7] + [1,6,1]", 0, NULL, NULL);
    ib__value *x = ib_kh_input(b, 2, (int64_t[]){13, 29}), *r = ib_kh_input(b, 1, (int64_t[]){29});
    add(b, T, node2(b, IB_OP_SUB, r, x), 1, "[29] - [13,29]", 0, NULL, NULL);
    add(b, T, node1(b, IB_OP_RELU, 14, node1(b, IB_OP_SIGMOID, 13, x)), 2, "sigmoid relu", 0, NULL, NULL);
    add(b, T, node1(b, IB_OP_EXP, 13, x), 1, "exp", 0, NULL, NULL);
    ib__value *big = ib_kh_input(b, 3, (int64_t[]){1, 64, 3077});
    add(b, T, node1(b, IB_OP_GELU, 20, big), 1, "gelu [1,64,3077]", 0, NULL, NULL);
    ib__attr pm[1] = {ib_kh_attr_ints("perm", 4, (int64_t[]){0, 2, 1, 3})};
    ib__value *t4 = ib_kh_input(b, 4, (int64_t[]){2, 3, 5, 7});
    add(b, &ib__template_cuda_transpose, ib_kh_node(b, IB_OP_TRANSPOSE, 13, 1, &t4, 1, pm), 1,
        "transpose [2,3,5,7] perm 0213", 0, NULL, NULL);
    ib__value *t3 = ib_kh_input(b, 3, (int64_t[]){4, 9, 6});
    add(b, &ib__template_cuda_transpose, ib_kh_node(b, IB_OP_TRANSPOSE, 13, 1, &t3, 0, NULL), 1,
        "transpose [4,9,6] reversed", 0, NULL, NULL);
    ib__value *two = ib_kh_const(b, 0, (int64_t[]){1}, 2.0f, 2.0f);
    add(b, T, node2(b, IB_OP_DIV, node2(b, IB_OP_MUL, x, x), two), 2, "x*x/2", 0, NULL, NULL);
}

/* One batch per precision: all templates in FP32, the tensor-core GEMM and convolution
 * in the others. Returns whether nvcc ran. */
static void run_target(const char *target, double tol, bool tensor_cores) {
    ib_kh_batch *b = NULL;
    ib_status st = ib_kh_batch_create_ex(target, g_pool, true, &b);
    CHECK_EQ_INT(st, IB_OK);
    if (st) return;
    gemm_cases(b, tensor_cores);
    conv_cases(b, tensor_cores);
    if (!tensor_cores) {
        pool_cases(b);
        row_cases(b);
        eltwise_cases(b);
    }
    const char *why = NULL;
    if (!ib_kh_compile_only(b, &why)) g_any_run = true;
    int32_t failed = ib_kh_run(b, tol);
    CHECK_EQ_INT(failed, 0);
    ib_kh_batch_destroy(b);
}

TEST(cuda_fp32) { run_target("cuda-sm90", 1e-4, false); }
TEST(cuda_tf32) { run_target("cuda-sm90-tf32", 2e-2, true); }
TEST(cuda_fp16) { run_target("cuda-sm90-fp16", 2e-2, true); }
TEST(cuda_bf16) { run_target("cuda-sm80-bf16", 8e-2, true); }

int main(void) {
    if (!ib__toolchain_nvcc()) {
        printf("skipped: nvcc not found (set IB_NVCC or install the CUDA toolkit at /usr/local/cuda)\n");
        printf("0 passed, 0 failed\n");
        return 77;
    }
    if (ib__pool_create(2, &g_pool)) return 1;
    RUN(cuda_fp32);
    RUN(cuda_tf32);
    RUN(cuda_fp16);
    RUN(cuda_bf16);
    ib__pool_destroy(g_pool);
    char why[200] = "";
    if (!g_any_run && !ib__cuda_driver_available(why, sizeof why))
        printf("GPU runs skipped: no NVIDIA GPU/driver (%s); compile checks only\n", why);
    TEST_SUMMARY();
}
