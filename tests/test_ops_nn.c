/* Unit tests of the neural-network op families (sgemm.c, conv.c, pool.c, gemm.c,
 * normalization.c, softmax.c): the SGEMM against a naive product on awkward shapes with
 * both kernels, the ops' infer and run called directly on small tensors and checked
 * against values worked by hand or a naive reference, and bad inputs refused. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops/ops.h"
#include "ops/sgemm.h"
#include "op_test_util.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------------------ */

static ib__pool *g_pool;

/* Runs infer then run on the test pool. */
static ib_status run_op(const ib__node *node, int32_t n_in, const ib_tensor *const *in,
                        int32_t n_out, ib_tensor *out) {
    return run_op_pool(node, n_in, in, n_out, out, g_pool);
}
static float frand(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static void fill_rand(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = frand();
}

static double max_rel_err(const float *a, const float *b, int64_t n) {
    double e = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= e)) e = d;
    }
    return e;
}

/* ---- SGEMM ---------------------------------------------------------------------------- */

static void naive_gemm(const ib__sgemm_shape *s, const float *a, const float *b, float *c) {
    for (int64_t i = 0; i < s->m; i++)
        for (int64_t j = 0; j < s->n; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < s->k; p++)
                acc += (double)a[i * s->a_rs + p * s->a_cs] * (double)b[p * s->b_rs + j * s->b_cs];
            float *cp = c + i * s->ldc + j;
            *cp = (float)(s->alpha * acc + (s->beta == 0.0f ? 0.0 : s->beta * (double)*cp));
        }
}

static void check_sgemm_shapes(void) {
    static const int64_t shapes[][3] = {{1, 1, 1},    {1, 37, 19},   {2, 5, 300},  {3, 17, 8},
                                        {7, 33, 257}, {13, 40, 513}, {64, 64, 64}, {100, 70, 9},
                                        {6, 16, 256}, {73, 300, 31}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int64_t m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
        for (int tr = 0; tr < 4; tr++) {
            int ta = tr & 1, tb = tr >> 1;
            float *a = ib__malloc((size_t)(m * k) * sizeof(float));
            float *b = ib__malloc((size_t)(k * n) * sizeof(float));
            float *c = ib__malloc((size_t)(m * (n + 3)) * sizeof(float));
            float *r = ib__malloc((size_t)(m * (n + 3)) * sizeof(float));
            fill_rand(a, m * k);
            fill_rand(b, k * n);
            fill_rand(c, m * (n + 3));
            memcpy(r, c, (size_t)(m * (n + 3)) * sizeof(float));
            /* ldc > n: the columns past n must stay untouched */
            ib__sgemm_shape s = {
                m,          n,          k,          1.25f,      tr == 3 ? 0.0f : 0.5f,
                ta ? 1 : k, ta ? m : 1, tb ? 1 : n, tb ? k : 1, n + 3};
            CHECK_EQ_INT(ib__sgemm(g_pool, &s, a, b, c), IB_OK);
            naive_gemm(&s, a, b, r);
            double e = max_rel_err(c, r, m * (n + 3));
            if (e > 1e-5)
                fprintf(stderr, "  sgemm %lldx%lldx%lld trans %d: err %g\n", (long long)m,
                        (long long)n, (long long)k, tr, e);
            CHECK(e <= 1e-5);
            ib__free(a);
            ib__free(b);
            ib__free(c);
            ib__free(r);
        }
    }
}

TEST(sgemm_default_kernel) {
    check_sgemm_shapes();
}

TEST(sgemm_generic_kernel) {
    ib__sgemm_use_generic_kernel(true);
    check_sgemm_shapes();
    ib__sgemm_use_generic_kernel(false);
}

TEST(sgemm_beta_zero_ignores_nan_and_k_zero) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1};
    float c[4] = {NAN, NAN, NAN, NAN};
    ib__sgemm_shape s = {2, 2, 3, 1.0f, 0.0f, 3, 1, 2, 1, 2};
    CHECK_EQ_INT(ib__sgemm(g_pool, &s, a, b, c), IB_OK);
    /* [1 2 3; 4 5 6] x [1 0; 0 1; 1 1] = [4 5; 10 11] */
    CHECK_NEAR(c[0], 4, 0);
    CHECK_NEAR(c[1], 5, 0);
    CHECK_NEAR(c[2], 10, 0);
    CHECK_NEAR(c[3], 11, 0);
    ib__sgemm_shape z = {2, 2, 0, 1.0f, 2.0f, 0, 1, 2, 1, 2};
    CHECK_EQ_INT(ib__sgemm(g_pool, &z, a, b, c), IB_OK);
    CHECK_NEAR(c[0], 8, 0);
    CHECK_NEAR(c[3], 22, 0);
}

TEST(sgemm_batched_shared_operand) {
    enum { B = 3, M = 9, N = 21, K = 14 };
    float a[M * K], b[B * K * N], c[B * M * N], r[B * M * N];
    fill_rand(a, M * K);
    fill_rand(b, B * K * N);
    int64_t boff[B], coff[B];
    for (int i = 0; i < B; i++) {
        boff[i] = i * K * N;
        coff[i] = i * M * N;
    }
    ib__sgemm_shape s = {M, N, K, 1.0f, 0.0f, K, 1, N, 1, N};
    CHECK_EQ_INT(ib__sgemm_batched(g_pool, &s, B, a, NULL, b, boff, c, coff), IB_OK);
    for (int i = 0; i < B; i++) naive_gemm(&s, a, b + boff[i], r + coff[i]);
    CHECK(max_rel_err(c, r, B * M * N) <= 1e-5);
}

/* ---- Conv ----------------------------------------------------------------------------- */

/* Naive N-d grouped convolution (explicit pads) used as the reference. */
static void naive_conv(int32_t nsp, const int64_t *xd, const float *x, const int64_t *wd,
                       const float *w, const float *bias, int64_t group, const int64_t *s,
                       const int64_t *dil, const int64_t *pads, const int64_t *yd, float *y) {
    int64_t n = xd[0], cin = xd[1], m = wd[0], cg = wd[1], mg = m / group;
    int64_t in_sp = 1, out_sp = 1, k_sp = 1;
    for (int32_t i = 0; i < nsp; i++) {
        in_sp *= xd[2 + i];
        out_sp *= yd[2 + i];
        k_sp *= wd[2 + i];
    }
    for (int64_t b = 0; b < n; b++)
        for (int64_t oc = 0; oc < m; oc++)
            for (int64_t o = 0; o < out_sp; o++) {
                int64_t oi[6], rem = o;
                for (int32_t d = nsp - 1; d >= 0; d--) {
                    oi[d] = rem % yd[2 + d];
                    rem /= yd[2 + d];
                }
                double acc = bias ? bias[oc] : 0.0;
                for (int64_t cl = 0; cl < cg; cl++)
                    for (int64_t kidx = 0; kidx < k_sp; kidx++) {
                        int64_t kk[6], r = kidx, off = 0;
                        int inside = 1;
                        for (int32_t d = nsp - 1; d >= 0; d--) {
                            kk[d] = r % wd[2 + d];
                            r /= wd[2 + d];
                        }
                        for (int32_t d = 0; d < nsp; d++) {
                            int64_t p = oi[d] * s[d] + kk[d] * dil[d] - pads[d];
                            if (p < 0 || p >= xd[2 + d]) inside = 0;
                            off = off * xd[2 + d] + p;
                        }
                        if (!inside) continue;
                        int64_t ch = (oc / mg) * cg + cl;
                        acc += (double)x[(b * cin + ch) * in_sp + off] *
                               (double)w[(oc * cg + cl) * k_sp + kidx];
                    }
                y[(b * m + oc) * out_sp + o] = (float)acc;
            }
}

/* One random Conv case through the op, compared with naive_conv. */
static void conv_case(int32_t nsp, int64_t n, int64_t cin, int64_t m, int64_t group,
                      int64_t in_size, int64_t k, int64_t stride, int64_t dil, int64_t pad,
                      bool bias) {
    int64_t xd[5] = {n, cin}, wd[5] = {m, cin / group};
    int64_t kshape[3], strides[3], dils[3], pads[6];
    for (int32_t i = 0; i < nsp; i++) {
        xd[2 + i] = in_size + i; /* unequal spatial dims */
        wd[2 + i] = k;
        kshape[i] = k;
        strides[i] = stride;
        dils[i] = dil;
        pads[i] = pad;
        pads[nsp + i] = pad;
    }
    int64_t nx = 1, nw = 1;
    for (int32_t i = 0; i < nsp + 2; i++) {
        nx *= xd[i];
        nw *= wd[i];
    }
    float *x = ib__malloc((size_t)nx * sizeof(float)), *w = ib__malloc((size_t)nw * sizeof(float));
    float bv[64];
    fill_rand(x, nx);
    fill_rand(w, nw);
    fill_rand(bv, m);
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, nsp + 2, xd, x);
    ib_tensor tw = tensor(IB_DTYPE_FLOAT32, nsp + 2, wd, w);
    int64_t bd[1] = {m};
    ib_tensor tb = tensor(IB_DTYPE_FLOAT32, 1, bd, bv);
    ib__attr attrs[5] = {attr_ints("kernel_shape", kshape, nsp), attr_ints("strides", strides, nsp),
                         attr_ints("dilations", dils, nsp), attr_ints("pads", pads, 2 * nsp),
                         attr_int("group", group)};
    ib__node node = make_node(IB_OP_CONV, 11, attrs, 5);
    const ib_tensor *in[3] = {&tx, &tw, bias ? &tb : NULL};
    ib_tensor y;
    CHECK_EQ_INT(run_op(&node, 3, in, 1, &y), IB_OK);
    int64_t ny = ib_tensor_element_count(&y);
    float *r = ib__malloc((size_t)(ny > 0 ? ny : 1) * sizeof(float));
    naive_conv(nsp, xd, x, wd, w, bias ? bv : NULL, group, strides, dils, pads, y.shape, r);
    double e = max_rel_err(y.data, r, ny);
    if (e > 1e-5)
        fprintf(stderr, "  conv nsp=%d c=%lld m=%lld g=%lld k=%lld s=%lld d=%lld p=%lld: err %g\n",
                nsp, (long long)cin, (long long)m, (long long)group, (long long)k,
                (long long)stride, (long long)dil, (long long)pad, e);
    CHECK(e <= 1e-5);
    ib_tensor_release(&y);
    ib__free(r);
    ib__free(x);
    ib__free(w);
}

TEST(conv_by_hand) {
    /* 3x3 input 0..8, 2x2 kernel of ones, bias 1: window sums + 1 */
    float x[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8}, w[4] = {1, 1, 1, 1}, b[1] = {1};
    int64_t xd[4] = {1, 1, 3, 3}, wd[4] = {1, 1, 2, 2}, bd[1] = {1};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 4, xd, x), tw = tensor(IB_DTYPE_FLOAT32, 4, wd, w);
    ib_tensor tb = tensor(IB_DTYPE_FLOAT32, 1, bd, b);
    ib__node node = make_node(IB_OP_CONV, 11, NULL, 0);
    const ib_tensor *in[3] = {&tx, &tw, &tb};
    ib_tensor y;
    CHECK_EQ_INT(run_op(&node, 3, in, 1, &y), IB_OK);
    CHECK_EQ_INT(y.rank, 4);
    CHECK_EQ_INT(y.shape[2], 2);
    CHECK_EQ_INT(y.shape[3], 2);
    const float *yv = y.data;
    CHECK_NEAR(yv[0], 9, 0);
    CHECK_NEAR(yv[1], 13, 0);
    CHECK_NEAR(yv[2], 21, 0);
    CHECK_NEAR(yv[3], 25, 0);
    ib_tensor_release(&y);
}

TEST(conv_matches_naive) {
    conv_case(2, 2, 4, 6, 1, 7, 3, 1, 1, 1, true);   /* plain 3x3, batch 2 */
    conv_case(2, 1, 8, 8, 2, 9, 3, 2, 1, 1, false);  /* grouped, strided */
    conv_case(2, 1, 6, 12, 6, 8, 3, 1, 1, 1, true);  /* depthwise with multiplier 2 */
    conv_case(2, 1, 5, 5, 5, 10, 3, 2, 2, 2, false); /* depthwise, dilated, strided */
    conv_case(2, 1, 16, 7, 1, 5, 1, 1, 1, 0, true);  /* pointwise */
    conv_case(1, 2, 3, 4, 1, 20, 5, 3, 2, 2, true);  /* 1-D dilated */
    conv_case(3, 1, 2, 3, 1, 5, 2, 1, 1, 1, true);   /* 3-D */
    conv_case(2, 1, 1, 4, 1, 6, 3, 1, 1, 0, true);   /* one input channel, group 1 */
}

TEST(conv_auto_pad_same_lower_and_unknown_batch) {
    int64_t xdims[4] = {-1, 3, 10, 9}, wdims[4] = {4, 3, 3, 3}, strides[2] = {2, 2};
    ib__attr attrs[2] = {attr_string("auto_pad", "SAME_LOWER"), attr_ints("strides", strides, 2)};
    ib__node node = make_node(IB_OP_CONV, 11, attrs, 2);
    ib__value x, w, out;
    memset(&x, 0, sizeof x);
    memset(&w, 0, sizeof w);
    memset(&out, 0, sizeof out);
    x.dtype = w.dtype = IB_DTYPE_FLOAT32;
    x.rank = w.rank = 4;
    memcpy(x.dims, xdims, sizeof xdims);
    memcpy(w.dims, wdims, sizeof wdims);
    x.dim_param[0] = "batch";
    out.rank = -1;
    const ib__value *in[2] = {&x, &w};
    ib__value *op[1] = {&out};
    ib__infer_ctx ic = {&node, 11, 2, in, 1, op};
    CHECK_EQ_INT(ib__op_get(IB_OP_CONV)->infer(&ic), IB_OK);
    CHECK_EQ_INT(out.rank, 4);
    CHECK_EQ_INT(out.dims[0], -1);
    CHECK_EQ_INT(out.dims[1], 4);
    CHECK_EQ_INT(out.dims[2], 5);
    CHECK_EQ_INT(out.dims[3], 5);
}

TEST(conv_transpose_by_hand) {
    /* 1-D: x = [1, 2], w = [1, 1, 1], stride 1 -> [1, 3, 3, 2]; stride 2 -> [1,1,3,2,2] */
    float x[2] = {1, 2}, w[3] = {1, 1, 1};
    int64_t xd[3] = {1, 1, 2}, wd[3] = {1, 1, 3};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 3, xd, x), tw = tensor(IB_DTYPE_FLOAT32, 3, wd, w);
    const ib_tensor *in[2] = {&tx, &tw};
    ib__node node = make_node(IB_OP_CONV_TRANSPOSE, 11, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&node, 2, in, 1, &y), IB_OK);
    CHECK_EQ_INT(y.shape[2], 4);
    const float *yv = y.data;
    CHECK_NEAR(yv[0], 1, 0);
    CHECK_NEAR(yv[1], 3, 0);
    CHECK_NEAR(yv[2], 3, 0);
    CHECK_NEAR(yv[3], 2, 0);
    ib_tensor_release(&y);
    int64_t s2[1] = {2};
    ib__attr attrs[1] = {attr_ints("strides", s2, 1)};
    ib__node node2 = make_node(IB_OP_CONV_TRANSPOSE, 11, attrs, 1);
    CHECK_EQ_INT(run_op(&node2, 2, in, 1, &y), IB_OK);
    CHECK_EQ_INT(y.shape[2], 5);
    yv = y.data;
    float want[5] = {1, 1, 3, 2, 2};
    for (int i = 0; i < 5; i++) CHECK_NEAR(yv[i], want[i], 0);
    ib_tensor_release(&y);
}

TEST(conv_bad_inputs) {
    float x[16] = {0}, w[18] = {0};
    int64_t xd[4] = {1, 1, 4, 4}, wd[4] = {1, 2, 3, 3}; /* W wants 2 channels, X has 1 */
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 4, xd, x), tw = tensor(IB_DTYPE_FLOAT32, 4, wd, w);
    const ib_tensor *in[2] = {&tx, &tw};
    ib__node node = make_node(IB_OP_CONV, 11, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&node, 2, in, 1, &y), IB_ERR_SHAPE);
    /* kernel larger than the input */
    int64_t wd2[4] = {1, 1, 5, 5};
    float w2[25] = {0};
    ib_tensor tw2 = tensor(IB_DTYPE_FLOAT32, 4, wd2, w2);
    const ib_tensor *in2[2] = {&tx, &tw2};
    CHECK_EQ_INT(run_op(&node, 2, in2, 1, &y), IB_ERR_SHAPE);
    /* negative stride and group 0 */
    int64_t bad_s[2] = {0, 1};
    ib__attr a1[1] = {attr_ints("strides", bad_s, 2)};
    ib__node n1 = make_node(IB_OP_CONV, 11, a1, 1);
    int64_t wd3[4] = {1, 1, 3, 3};
    ib_tensor tw3 = tensor(IB_DTYPE_FLOAT32, 4, wd3, w);
    const ib_tensor *in3[2] = {&tx, &tw3};
    CHECK_EQ_INT(run_op(&n1, 2, in3, 1, &y), IB_ERR_INVALID_MODEL);
    ib__attr a2[1] = {attr_int("group", 0)};
    ib__node n2 = make_node(IB_OP_CONV, 11, a2, 1);
    CHECK_EQ_INT(run_op(&n2, 2, in3, 1, &y), IB_ERR_INVALID_MODEL);
}

/* ---- Pools ---------------------------------------------------------------------------- */

TEST(max_pool_with_indices) {
    float x[16];
    for (int i = 0; i < 16; i++) x[i] = (float)((i * 7) % 16);
    /* x = [[0 7 14 5] [12 3 10 1] [8 15 6 13] [4 11 2 9]] */
    int64_t xd[4] = {1, 1, 4, 4}, k[2] = {2, 2}, s[2] = {2, 2};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 4, xd, x);
    const ib_tensor *in[1] = {&tx};
    ib__attr attrs[2] = {attr_ints("kernel_shape", k, 2), attr_ints("strides", s, 2)};
    ib__node node = make_node(IB_OP_MAX_POOL, 12, attrs, 2);
    ib_tensor y[2];
    CHECK_EQ_INT(run_op(&node, 1, in, 2, y), IB_OK);
    const float *yv = y[0].data;
    const int64_t *iv = y[1].data;
    CHECK_NEAR(yv[0], 12, 0);
    CHECK_NEAR(yv[1], 14, 0);
    CHECK_NEAR(yv[2], 15, 0);
    CHECK_NEAR(yv[3], 13, 0);
    CHECK_EQ_INT(iv[0], 4);
    CHECK_EQ_INT(iv[1], 2);
    CHECK_EQ_INT(iv[2], 9);
    CHECK_EQ_INT(iv[3], 11);
    ib_tensor_release(&y[0]);
    ib_tensor_release(&y[1]);
}

TEST(average_pool_pads) {
    float x[4] = {1, 2, 3, 4};
    int64_t xd[4] = {1, 1, 2, 2}, k[2] = {2, 2}, p[4] = {1, 1, 1, 1};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 4, xd, x);
    const ib_tensor *in[1] = {&tx};
    ib__attr attrs[3] = {attr_ints("kernel_shape", k, 2), attr_ints("pads", p, 4),
                         attr_int("count_include_pad", 0)};
    ib__node node = make_node(IB_OP_AVERAGE_POOL, 11, attrs, 3);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&node, 1, in, 1, &y), IB_OK);
    CHECK_EQ_INT(y.shape[2], 3);
    const float *yv = y.data;
    CHECK_NEAR(yv[0], 1, 1e-6);   /* corner: only x[0] */
    CHECK_NEAR(yv[1], 1.5, 1e-6); /* (1+2)/2 */
    CHECK_NEAR(yv[4], 2.5, 1e-6); /* centre: all four */
    ib_tensor_release(&y);
    attrs[2] = attr_int("count_include_pad", 1);
    CHECK_EQ_INT(run_op(&node, 1, in, 1, &y), IB_OK);
    yv = y.data;
    CHECK_NEAR(yv[0], 0.25, 1e-6);
    CHECK_NEAR(yv[1], 0.75, 1e-6);
    ib_tensor_release(&y);
}

TEST(global_pools_and_unpool_bad_index) {
    float x[8] = {1, 2, 3, 4, -1, -2, -3, -8};
    int64_t xd[4] = {1, 2, 2, 2};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 4, xd, x);
    const ib_tensor *in[1] = {&tx};
    ib__node gap = make_node(IB_OP_GLOBAL_AVERAGE_POOL, 1, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&gap, 1, in, 1, &y), IB_OK);
    CHECK_EQ_INT(y.shape[3], 1);
    CHECK_NEAR(((float *)y.data)[0], 2.5, 1e-6);
    CHECK_NEAR(((float *)y.data)[1], -3.5, 1e-6);
    ib_tensor_release(&y);
    ib__node gmp = make_node(IB_OP_GLOBAL_MAX_POOL, 1, NULL, 0);
    CHECK_EQ_INT(run_op(&gmp, 1, in, 1, &y), IB_OK);
    CHECK_NEAR(((float *)y.data)[1], -1, 0);
    ib_tensor_release(&y);
    /* MaxUnpool with an index past the unpooled tensor is refused */
    float xv[1] = {5};
    int64_t idx[1] = {99}, d1[4] = {1, 1, 1, 1}, k[2] = {2, 2}, s[2] = {2, 2};
    ib_tensor tv = tensor(IB_DTYPE_FLOAT32, 4, d1, xv), ti = tensor(IB_DTYPE_INT64, 4, d1, idx);
    const ib_tensor *uin[2] = {&tv, &ti};
    ib__attr attrs[2] = {attr_ints("kernel_shape", k, 2), attr_ints("strides", s, 2)};
    ib__node un = make_node(IB_OP_MAX_UNPOOL, 11, attrs, 2);
    CHECK_EQ_INT(run_op(&un, 2, uin, 1, &y), IB_ERR_SHAPE);
    idx[0] = 3;
    CHECK_EQ_INT(run_op(&un, 2, uin, 1, &y), IB_OK);
    CHECK_NEAR(((float *)y.data)[3], 5, 0);
    CHECK_NEAR(((float *)y.data)[0], 0, 0);
    ib_tensor_release(&y);
    /* MaxPool without kernel_shape */
    ib__node mp = make_node(IB_OP_MAX_POOL, 12, NULL, 0);
    CHECK_EQ_INT(run_op(&mp, 1, in, 1, &y), IB_ERR_INVALID_MODEL);
}

TEST(pool_fast_path_matches_generic) {
    /* MaxPool with an Indices output takes the generic N-d loop, without it the 2-D fast
     * path: both must agree, with pads, dilations, strides and ceil_mode. */
    float x[2 * 3 * 11 * 10];
    fill_rand(x, 2 * 3 * 11 * 10);
    int64_t xd[4] = {2, 3, 11, 10}, k[2] = {3, 2}, s[2] = {2, 3}, d[2] = {2, 1},
            p[4] = {1, 0, 2, 1};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 4, xd, x);
    const ib_tensor *in[1] = {&tx};
    ib__attr attrs[5] = {attr_ints("kernel_shape", k, 2), attr_ints("strides", s, 2),
                         attr_ints("dilations", d, 2), attr_ints("pads", p, 4),
                         attr_int("ceil_mode", 1)};
    ib__node node = make_node(IB_OP_MAX_POOL, 12, attrs, 5);
    ib_tensor fast, gen[2];
    CHECK_EQ_INT(run_op(&node, 1, in, 1, &fast), IB_OK);
    CHECK_EQ_INT(run_op(&node, 1, in, 2, gen), IB_OK);
    int64_t n = ib_tensor_element_count(&fast);
    CHECK(n > 0 && n == ib_tensor_element_count(&gen[0]));
    CHECK(max_rel_err(fast.data, gen[0].data, n) == 0.0);
    for (int64_t i = 0; i < n; i++) /* each index names the max it reports */
        CHECK_NEAR(x[((int64_t *)gen[1].data)[i]], ((float *)gen[0].data)[i], 0);
    ib_tensor_release(&fast);
    ib_tensor_release(&gen[0]);
    ib_tensor_release(&gen[1]);
    /* a dilation whose window extent overflows is refused, not wrapped */
    int64_t huge[2] = {(int64_t)1 << 32, 1};
    attrs[2] = attr_ints("dilations", huge, 2);
    int64_t big_k[2] = {(int64_t)1 << 31, 2};
    attrs[0] = attr_ints("kernel_shape", big_k, 2);
    CHECK_EQ_INT(run_op(&node, 1, in, 1, &fast), IB_ERR_SHAPE);
}

/* ---- Gemm, MatMul, Einsum ----------------------------------------------------------- */

TEST(gemm_trans_and_bias) {
    /* A^T with A = [[1 4] [2 5] [3 6]] (3x2, transA) -> [[1 2 3] [4 5 6]];
     * B^T with B = [[1 0 1] [0 1 1]] (2x3, transB) -> [[1 0] [0 1] [1 1]] */
    float a[6] = {1, 4, 2, 5, 3, 6}, b[6] = {1, 0, 1, 0, 1, 1}, cb[2] = {10, 20};
    int64_t ad[2] = {3, 2}, bd[2] = {2, 3}, cd[1] = {2};
    ib_tensor ta = tensor(IB_DTYPE_FLOAT32, 2, ad, a), tb = tensor(IB_DTYPE_FLOAT32, 2, bd, b);
    ib_tensor tc = tensor(IB_DTYPE_FLOAT32, 1, cd, cb);
    ib__attr attrs[4] = {attr_int("transA", 1), attr_int("transB", 1), attr_float("alpha", 2.0f),
                         attr_float("beta", 0.5f)};
    ib__node node = make_node(IB_OP_GEMM, 13, attrs, 4);
    const ib_tensor *in[3] = {&ta, &tb, &tc};
    ib_tensor y;
    CHECK_EQ_INT(run_op(&node, 3, in, 1, &y), IB_OK);
    const float *yv = y.data;
    /* A'B' = [[4 5] [10 11]]; 2 * that + 0.5 * [10 20] */
    CHECK_NEAR(yv[0], 13, 1e-6);
    CHECK_NEAR(yv[1], 20, 1e-6);
    CHECK_NEAR(yv[2], 25, 1e-6);
    CHECK_NEAR(yv[3], 32, 1e-6);
    ib_tensor_release(&y);
    /* inner dims that differ */
    ib__node plain = make_node(IB_OP_GEMM, 13, NULL, 0);
    const ib_tensor *bad[2] = {&ta, &ta};
    CHECK_EQ_INT(run_op(&plain, 2, bad, 1, &y), IB_ERR_SHAPE);
}

TEST(matmul_promotion_and_broadcast) {
    /* [2,1,2,3] x [3,3,2] -> [2,3,2,2]; and 1-D x 2-D -> 1-D */
    float a[12], b[18];
    fill_rand(a, 12);
    fill_rand(b, 18);
    int64_t ad[4] = {2, 1, 2, 3}, bd[3] = {3, 3, 2};
    ib_tensor ta = tensor(IB_DTYPE_FLOAT32, 4, ad, a), tb = tensor(IB_DTYPE_FLOAT32, 3, bd, b);
    const ib_tensor *in[2] = {&ta, &tb};
    ib__node node = make_node(IB_OP_MAT_MUL, 13, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&node, 2, in, 1, &y), IB_OK);
    CHECK_EQ_INT(y.rank, 4);
    CHECK_EQ_INT(y.shape[0], 2);
    CHECK_EQ_INT(y.shape[1], 3);
    const float *yv = y.data;
    for (int i0 = 0; i0 < 2; i0++)
        for (int i1 = 0; i1 < 3; i1++)
            for (int r = 0; r < 2; r++)
                for (int cc = 0; cc < 2; cc++) {
                    double acc = 0;
                    for (int p = 0; p < 3; p++)
                        acc += (double)a[i0 * 6 + r * 3 + p] * b[i1 * 6 + p * 2 + cc];
                    CHECK_NEAR(yv[((i0 * 3 + i1) * 2 + r) * 2 + cc], acc, 1e-5);
                }
    ib_tensor_release(&y);
    float v[3] = {1, 2, 3}, m[6] = {1, 0, 0, 1, 1, 1};
    int64_t vd[1] = {3}, md[2] = {3, 2};
    ib_tensor tv = tensor(IB_DTYPE_FLOAT32, 1, vd, v), tm = tensor(IB_DTYPE_FLOAT32, 2, md, m);
    const ib_tensor *in2[2] = {&tv, &tm};
    CHECK_EQ_INT(run_op(&node, 2, in2, 1, &y), IB_OK);
    CHECK_EQ_INT(y.rank, 1);
    CHECK_NEAR(((float *)y.data)[0], 4, 0);
    CHECK_NEAR(((float *)y.data)[1], 5, 0);
    ib_tensor_release(&y);
    /* batch dims that do not broadcast */
    int64_t bd2[3] = {2, 3, 2};
    float b2[12] = {0};
    int64_t ad2[3] = {3, 2, 3};
    float a2[18] = {0};
    ib_tensor ta2 = tensor(IB_DTYPE_FLOAT32, 3, ad2, a2),
              tb2 = tensor(IB_DTYPE_FLOAT32, 3, bd2, b2);
    const ib_tensor *in3[2] = {&ta2, &tb2};
    CHECK_EQ_INT(run_op(&node, 2, in3, 1, &y), IB_ERR_SHAPE);
}

TEST(matmul_float64_and_integer) {
    double a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    int64_t d[2] = {2, 2};
    ib_tensor ta = tensor(IB_DTYPE_FLOAT64, 2, d, a), tb = tensor(IB_DTYPE_FLOAT64, 2, d, b);
    const ib_tensor *in[2] = {&ta, &tb};
    ib__node node = make_node(IB_OP_MAT_MUL, 13, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&node, 2, in, 1, &y), IB_OK);
    CHECK_NEAR(((double *)y.data)[0], 19, 0);
    CHECK_NEAR(((double *)y.data)[3], 50, 0);
    ib_tensor_release(&y);
    uint8_t qa[4] = {11, 12, 13, 14}, qb[4] = {1, 2, 3, 4}, za[1] = {10};
    ib_tensor tqa = tensor(IB_DTYPE_UINT8, 2, d, qa), tqb = tensor(IB_DTYPE_UINT8, 2, d, qb);
    int64_t sd[1] = {1};
    ib_tensor tza = tensor(IB_DTYPE_UINT8, 1, sd, za);
    const ib_tensor *qin[3] = {&tqa, &tqb, &tza};
    ib__node mi = make_node(IB_OP_MAT_MUL_INTEGER, 10, NULL, 0);
    CHECK_EQ_INT(run_op(&mi, 3, qin, 1, &y), IB_OK);
    /* [1 2; 3 4] x [1 2; 3 4] = [7 10; 15 22] */
    const int32_t *iv = y.data;
    CHECK_EQ_INT(iv[0], 7);
    CHECK_EQ_INT(iv[1], 10);
    CHECK_EQ_INT(iv[2], 15);
    CHECK_EQ_INT(iv[3], 22);
    ib_tensor_release(&y);
}

static void einsum_check(const char *eq, int32_t n_in, const ib_tensor *const *in,
                         int32_t want_rank, const int64_t *want_dims, const float *want) {
    ib__attr attrs[1] = {attr_string("equation", eq)};
    ib__node node = make_node(IB_OP_EINSUM, 12, attrs, 1);
    ib_tensor y;
    ib_status st = run_op(&node, n_in, in, 1, &y);
    CHECK_EQ_INT(st, IB_OK);
    if (st != IB_OK) return;
    CHECK_EQ_INT(y.rank, want_rank);
    for (int32_t d = 0; d < want_rank; d++) CHECK_EQ_INT(y.shape[d], want_dims[d]);
    int64_t n = ib_tensor_element_count(&y);
    for (int64_t i = 0; i < n; i++) CHECK_NEAR(((float *)y.data)[i], want[i], 1e-5);
    ib_tensor_release(&y);
}

TEST(einsum_forms) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 1, 1}, sq[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    int64_t ad[2] = {2, 3}, bd[2] = {3, 2}, sd[2] = {3, 3};
    ib_tensor ta = tensor(IB_DTYPE_FLOAT32, 2, ad, a), tb = tensor(IB_DTYPE_FLOAT32, 2, bd, b);
    ib_tensor ts = tensor(IB_DTYPE_FLOAT32, 2, sd, sq);
    const ib_tensor *ab[2] = {&ta, &tb}, *s1[1] = {&ts}, *a1[1] = {&ta};
    int64_t d22[2] = {2, 2}, d3[1] = {3}, d32[2] = {3, 2};
    float mm[4] = {4, 5, 10, 11};
    einsum_check("ij,jk->ik", 2, ab, 2, d22, mm);
    einsum_check("ij,jk", 2, ab, 2, d22, mm); /* implicit output: ik */
    float mmt[4] = {4, 10, 5, 11};
    einsum_check("ij, jk -> ki", 2, ab, 2, d22, mmt);
    float diag[3] = {1, 5, 9};
    einsum_check("ii->i", 1, s1, 1, d3, diag);
    float tr[1] = {15};
    einsum_check("ii", 1, s1, 0, NULL, tr); /* trace */
    float at[6] = {1, 4, 2, 5, 3, 6};
    einsum_check("ij->ji", 1, a1, 2, d32, at);
    float colsum[3] = {5, 7, 9};
    einsum_check("...j->j", 1, a1, 1, d3, colsum);
    /* bad equations */
    ib__attr attrs[1] = {attr_string("equation", "ij,jk->iq")};
    ib__node node = make_node(IB_OP_EINSUM, 12, attrs, 1);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&node, 2, ab, 1, &y), IB_ERR_INVALID_MODEL);
    attrs[0] = attr_string("equation", "ijk,jk->i");
    CHECK_EQ_INT(run_op(&node, 2, ab, 1, &y), IB_ERR_SHAPE);
    attrs[0] = attr_string("equation", "ij,kk->ik");
    CHECK_EQ_INT(run_op(&node, 2, ab, 1, &y), IB_ERR_SHAPE);
}

/* ---- Normalization, softmax ------------------------------------------------------------ */

TEST(batch_norm_and_layer_norm) {
    float x[4] = {1, 2, 3, 4}, sc[2] = {1, 2}, bi[2] = {0, 1}, mu[2] = {1, 2}, var[2] = {4, 1};
    int64_t xd[4] = {1, 2, 2, 1}, pd[1] = {2};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 4, xd, x);
    ib_tensor ts = tensor(IB_DTYPE_FLOAT32, 1, pd, sc), tb = tensor(IB_DTYPE_FLOAT32, 1, pd, bi);
    ib_tensor tm = tensor(IB_DTYPE_FLOAT32, 1, pd, mu), tv = tensor(IB_DTYPE_FLOAT32, 1, pd, var);
    ib__attr attrs[1] = {attr_float("epsilon", 0.0f)};
    ib__node bn = make_node(IB_OP_BATCH_NORMALIZATION, 15, attrs, 1);
    const ib_tensor *in[5] = {&tx, &ts, &tb, &tm, &tv};
    ib_tensor y;
    CHECK_EQ_INT(run_op(&bn, 5, in, 1, &y), IB_OK);
    const float *yv = y.data;
    CHECK_NEAR(yv[0], 0.0, 1e-6); /* (1-1)/2 */
    CHECK_NEAR(yv[1], 0.5, 1e-6); /* (2-1)/2 */
    CHECK_NEAR(yv[2], 3.0, 1e-6); /* (3-2)*2+1 */
    CHECK_NEAR(yv[3], 5.0, 1e-6);
    ib_tensor_release(&y);
    /* parameters of the wrong length */
    int64_t pd3[1] = {3};
    float three[3] = {1, 1, 1};
    ib_tensor t3 = tensor(IB_DTYPE_FLOAT32, 1, pd3, three);
    const ib_tensor *bad[5] = {&tx, &t3, &tb, &tm, &tv};
    CHECK_EQ_INT(run_op(&bn, 5, bad, 1, &y), IB_ERR_SHAPE);

    /* LayerNormalization over the last axis, with Mean and InvStdDev outputs */
    float lx[4] = {1, 3, 0, 4}, lsc[2] = {1, 1}, lb[2] = {0, 10};
    int64_t ld[2] = {2, 2};
    ib_tensor tlx = tensor(IB_DTYPE_FLOAT32, 2, ld, lx);
    ib_tensor tls = tensor(IB_DTYPE_FLOAT32, 1, pd, lsc), tlb = tensor(IB_DTYPE_FLOAT32, 1, pd, lb);
    ib__attr la[1] = {attr_float("epsilon", 0.0f)};
    ib__node ln = make_node(IB_OP_LAYER_NORMALIZATION, 17, la, 1);
    const ib_tensor *lin[3] = {&tlx, &tls, &tlb};
    ib_tensor lo[3];
    CHECK_EQ_INT(run_op(&ln, 3, lin, 3, lo), IB_OK);
    const float *lv = lo[0].data;
    CHECK_NEAR(lv[0], -1, 1e-6);
    CHECK_NEAR(lv[1], 11, 1e-6);
    CHECK_NEAR(lv[2], -1, 1e-6);
    CHECK_NEAR(lv[3], 11, 1e-6);
    CHECK_EQ_INT(lo[1].rank, 2);
    CHECK_EQ_INT(lo[1].shape[1], 1);
    CHECK_NEAR(((float *)lo[1].data)[0], 2, 1e-6);
    CHECK_NEAR(((float *)lo[2].data)[0], 1, 1e-6);
    CHECK_NEAR(((float *)lo[2].data)[1], 0.5, 1e-6);
    for (int i = 0; i < 3; i++) ib_tensor_release(&lo[i]);
    ib__attr lbad[1] = {attr_int("axis", 2)};
    ib__node ln2 = make_node(IB_OP_LAYER_NORMALIZATION, 17, lbad, 1);
    CHECK_EQ_INT(run_op(&ln2, 3, lin, 1, lo), IB_ERR_INVALID_MODEL);
}

TEST(softmax_axis_semantics) {
    /* x [2, 2]: opset 13 default axis -1 normalises each row; opset 11 with axis 0
     * coerces to [1, 4] and normalises all four together. */
    float x[4] = {0, 0, 0, (float)log(3.0)};
    int64_t d[2] = {2, 2};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 2, d, x);
    const ib_tensor *in[1] = {&tx};
    ib__node s13 = make_node(IB_OP_SOFTMAX, 13, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&s13, 1, in, 1, &y), IB_OK);
    const float *yv = y.data;
    CHECK_NEAR(yv[0], 0.5, 1e-6);
    CHECK_NEAR(yv[2], 0.25, 1e-6);
    CHECK_NEAR(yv[3], 0.75, 1e-6);
    ib_tensor_release(&y);
    ib__attr a0[1] = {attr_int("axis", 0)};
    ib__node s11 = make_node(IB_OP_SOFTMAX, 11, a0, 1);
    CHECK_EQ_INT(run_op(&s11, 1, in, 1, &y), IB_OK);
    yv = y.data;
    CHECK_NEAR(yv[0], 1.0 / 6.0, 1e-6);
    CHECK_NEAR(yv[3], 0.5, 1e-6);
    ib_tensor_release(&y);
    ib__node ls = make_node(IB_OP_LOG_SOFTMAX, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&ls, 1, in, 1, &y), IB_OK);
    CHECK_NEAR(((float *)y.data)[0], log(0.5), 1e-6);
    ib_tensor_release(&y);
    ib__node hm = make_node(IB_OP_HARDMAX, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&hm, 1, in, 1, &y), IB_OK);
    yv = y.data;
    CHECK_NEAR(yv[0], 1, 0); /* a tie picks the first */
    CHECK_NEAR(yv[1], 0, 0);
    CHECK_NEAR(yv[3], 1, 0);
    ib_tensor_release(&y);
    ib__attr a5[1] = {attr_int("axis", 5)};
    ib__node sbad = make_node(IB_OP_SOFTMAX, 13, a5, 1);
    CHECK_EQ_INT(run_op(&sbad, 1, in, 1, &y), IB_ERR_INVALID_MODEL);
}

int main(void) {
    if (ib__pool_create(2, &g_pool) != IB_OK) return 1;
    RUN(sgemm_default_kernel);
    RUN(sgemm_generic_kernel);
    RUN(sgemm_beta_zero_ignores_nan_and_k_zero);
    RUN(sgemm_batched_shared_operand);
    RUN(conv_by_hand);
    RUN(conv_matches_naive);
    RUN(conv_auto_pad_same_lower_and_unknown_batch);
    RUN(conv_transpose_by_hand);
    RUN(conv_bad_inputs);
    RUN(max_pool_with_indices);
    RUN(average_pool_pads);
    RUN(global_pools_and_unpool_bad_index);
    RUN(pool_fast_path_matches_generic);
    RUN(gemm_trans_and_bias);
    RUN(matmul_promotion_and_broadcast);
    RUN(matmul_float64_and_integer);
    RUN(einsum_forms);
    RUN(batch_norm_and_layer_norm);
    RUN(softmax_axis_semantics);
    ib__pool_destroy(g_pool);
    TEST_SUMMARY();
}
