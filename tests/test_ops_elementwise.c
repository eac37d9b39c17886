/* Unit tests of the element-wise families (elementwise.c, binary.c, quantize.c): each op's
 * infer and run called directly on small tensors, checked against values worked by hand. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops/ops.h"
#include "op_test_util.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------------------ */

static ib_status run_op(const ib__node *node, int32_t n_in, const ib_tensor *const *in,
                        int32_t n_out, ib_tensor *out) {
    return run_op_pool(node, n_in, in, n_out, out, NULL);
}

/* Infer only, on load-time values (dims possibly unknown). */
static ib_status infer_only(const ib__node *node, int32_t n_in, const ib__value *const *in,
                            ib__value *out) {
    ib__value *op[1] = {out};
    memset(out, 0, sizeof *out);
    out->rank = -1;
    ib__infer_ctx ic = {node, node->opset, n_in, in, 1, op};
    return ib__op_get(node->op)->infer(&ic);
}

/* ---- unary ---------------------------------------------------------------------------- */

TEST(unary_float32) {
    float x[8] = {-2.5f, -1.0f, -0.5f, 0.0f, 0.5f, 1.5f, 2.5f, 3.0f};
    int64_t dims[1] = {8};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 1, dims, x);
    const ib_tensor *in[1] = {&tx};
    ib_tensor out;

    ib__node n = make_node(IB_OP_RELU, 14, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    const float relu[8] = {0, 0, 0, 0, 0.5f, 1.5f, 2.5f, 3.0f};
    for (int i = 0; i < 8; i++) CHECK_NEAR(((float *)out.data)[i], relu[i], 0);
    ib_tensor_release(&out);

    n = make_node(IB_OP_ROUND, 11, NULL, 0); /* half to even */
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    const float rnd[8] = {-2, -1, -0.0f, 0, 0, 2, 2, 3};
    for (int i = 0; i < 8; i++) CHECK_NEAR(((float *)out.data)[i], rnd[i], 0);
    ib_tensor_release(&out);

    n = make_node(IB_OP_SIGMOID, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(((float *)out.data)[i], 1.0 / (1.0 + exp(-(double)x[i])), 1e-6);
    ib_tensor_release(&out);

    ib__attr la[1] = {attr_float("alpha", 0.1f)};
    n = make_node(IB_OP_LEAKY_RELU, 16, la, 1);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    CHECK_NEAR(((float *)out.data)[0], -0.25, 1e-6);
    CHECK_NEAR(((float *)out.data)[7], 3.0, 0);
    ib_tensor_release(&out);

    ib__attr ga[1] = {attr_string("approximate", "tanh")};
    n = make_node(IB_OP_GELU, 20, ga, 1);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    for (int i = 0; i < 8; i++) {
        double v = x[i];
        double want = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
        CHECK_NEAR(((float *)out.data)[i], want, 1e-5);
    }
    ib_tensor_release(&out);

    ib__attr sa[2] = {attr_float("lambd", 1.0f), attr_float("bias", 0.5f)};
    n = make_node(IB_OP_SHRINK, 9, sa, 2);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    const float shr[8] = {-2.0f, 0, 0, 0, 0, 1.0f, 2.0f, 2.5f};
    for (int i = 0; i < 8; i++) CHECK_NEAR(((float *)out.data)[i], shr[i], 1e-6);
    ib_tensor_release(&out);
}

TEST(unary_isinf_isnan_not) {
    float x[4] = {INFINITY, -INFINITY, NAN, 1.0f};
    int64_t dims[1] = {4};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 1, dims, x);
    const ib_tensor *in[1] = {&tx};
    ib_tensor out;
    ib__attr a[1] = {attr_int("detect_positive", 0)};
    ib__node n = make_node(IB_OP_IS_INF, 10, a, 1);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    CHECK_EQ_INT(out.dtype, IB_DTYPE_BOOL);
    const uint8_t want[4] = {0, 1, 0, 0};
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(((uint8_t *)out.data)[i], want[i]);
    ib_tensor_release(&out);

    n = make_node(IB_OP_IS_NA_N, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    CHECK_EQ_INT(((uint8_t *)out.data)[2], 1);
    CHECK_EQ_INT(((uint8_t *)out.data)[3], 0);
    ib_tensor_release(&out);

    uint8_t b[3] = {1, 0, 1};
    int64_t bd[1] = {3};
    ib_tensor tb = tensor(IB_DTYPE_BOOL, 1, bd, b);
    const ib_tensor *bin[1] = {&tb};
    n = make_node(IB_OP_NOT, 1, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 1, bin, 1, &out), IB_OK);
    CHECK_EQ_INT(((uint8_t *)out.data)[0], 0);
    CHECK_EQ_INT(((uint8_t *)out.data)[1], 1);
    ib_tensor_release(&out);
}

TEST(unary_integers) {
    int8_t x[4] = {-128, -3, 0, 5};
    int64_t dims[1] = {4};
    ib_tensor tx = tensor(IB_DTYPE_INT8, 1, dims, x);
    const ib_tensor *in[1] = {&tx};
    ib_tensor out;
    ib__node n = make_node(IB_OP_ABS, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    const int8_t abs_want[4] = {-128, 3, 0, 5}; /* wraps like numpy */
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(((int8_t *)out.data)[i], abs_want[i]);
    ib_tensor_release(&out);
    n = make_node(IB_OP_NEG, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    CHECK_EQ_INT(((int8_t *)out.data)[1], 3);
    CHECK_EQ_INT(((int8_t *)out.data)[3], -5);
    ib_tensor_release(&out);
    n = make_node(IB_OP_SIGN, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    CHECK_EQ_INT(((int8_t *)out.data)[0], -1);
    CHECK_EQ_INT(((int8_t *)out.data)[2], 0);
    CHECK_EQ_INT(((int8_t *)out.data)[3], 1);
    ib_tensor_release(&out);

    /* Clip with only a max bound (min omitted) on int8 */
    int8_t hi = 2;
    ib_tensor thi = tensor(IB_DTYPE_INT8, 0, NULL, &hi);
    const ib_tensor *cin[3] = {&tx, NULL, &thi};
    n = make_node(IB_OP_CLIP, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 3, cin, 1, &out), IB_OK);
    const int8_t clip_want[4] = {-128, -3, 0, 2};
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(((int8_t *)out.data)[i], clip_want[i]);
    ib_tensor_release(&out);
}

TEST(clip_forms) {
    float x[5] = {-3, -1, 0, 1, 3};
    int64_t dims[1] = {5};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 1, dims, x);
    ib_tensor out;
    /* opset 6: attributes */
    ib__attr a[2] = {attr_float("min", -0.5f), attr_float("max", 0.5f)};
    ib__node n = make_node(IB_OP_CLIP, 6, a, 2);
    const ib_tensor *in1[1] = {&tx};
    CHECK_EQ_INT(run_op(&n, 1, in1, 1, &out), IB_OK);
    const float w6[5] = {-0.5f, -0.5f, 0, 0.5f, 0.5f};
    for (int i = 0; i < 5; i++) CHECK_NEAR(((float *)out.data)[i], w6[i], 0);
    ib_tensor_release(&out);
    /* opset 13: inputs */
    float lo = -1.0f, hi = 2.0f;
    ib_tensor tlo = tensor(IB_DTYPE_FLOAT32, 0, NULL, &lo), thi = tensor(IB_DTYPE_FLOAT32, 0, NULL, &hi);
    const ib_tensor *in3[3] = {&tx, &tlo, &thi};
    n = make_node(IB_OP_CLIP, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 3, in3, 1, &out), IB_OK);
    const float w13[5] = {-1, -1, 0, 1, 2};
    for (int i = 0; i < 5; i++) CHECK_NEAR(((float *)out.data)[i], w13[i], 0);
    ib_tensor_release(&out);
    /* a bound with two values is an error, not a crash */
    float two[2] = {0, 1};
    int64_t d2[1] = {2};
    ib_tensor ttwo = tensor(IB_DTYPE_FLOAT32, 1, d2, two);
    const ib_tensor *bad[3] = {&tx, &ttwo, NULL};
    CHECK(run_op(&n, 3, bad, 1, &out) != IB_OK);
}

TEST(cast) {
    float x[6] = {1.9f, -1.9f, 3e10f, -3e10f, NAN, 0.0f};
    int64_t dims[1] = {6};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 1, dims, x);
    const ib_tensor *in[1] = {&tx};
    ib_tensor out;
    ib__attr a[1] = {attr_int("to", IB_DTYPE_INT32)};
    ib__node n = make_node(IB_OP_CAST, 13, a, 1);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    const int32_t want[6] = {1, -1, INT32_MAX, INT32_MIN, 0, 0};
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(((int32_t *)out.data)[i], want[i]);
    ib_tensor_release(&out);

    a[0] = attr_int("to", IB_DTYPE_UINT8);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    CHECK_EQ_INT(((uint8_t *)out.data)[0], 1);
    CHECK_EQ_INT(((uint8_t *)out.data)[1], 0);
    CHECK_EQ_INT(((uint8_t *)out.data)[2], 255);
    ib_tensor_release(&out);

    a[0] = attr_int("to", IB_DTYPE_FLOAT16);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    CHECK_NEAR(ib__half_to_float(((uint16_t *)out.data)[0]), 1.900390625, 0);
    CHECK(isinf(ib__half_to_float(((uint16_t *)out.data)[2])));
    ib_tensor_release(&out);

    a[0] = attr_int("to", IB_DTYPE_BOOL);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    CHECK_EQ_INT(((uint8_t *)out.data)[0], 1);
    CHECK_EQ_INT(((uint8_t *)out.data)[5], 0);
    ib_tensor_release(&out);

    /* opset 1 spelled the type as a string */
    a[0] = attr_string("to", "DOUBLE");
    n = make_node(IB_OP_CAST, 1, a, 1);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_OK);
    CHECK_EQ_INT(out.dtype, IB_DTYPE_FLOAT64);
    CHECK_NEAR(((double *)out.data)[0], (double)1.9f, 0);
    ib_tensor_release(&out);

    int64_t big[2] = {INT64_MAX, -5};
    int64_t d2[1] = {2};
    ib_tensor tb = tensor(IB_DTYPE_INT64, 1, d2, big);
    const ib_tensor *bin[1] = {&tb};
    a[0] = attr_int("to", IB_DTYPE_INT32);
    n = make_node(IB_OP_CAST, 13, a, 1);
    CHECK_EQ_INT(run_op(&n, 1, bin, 1, &out), IB_OK);
    CHECK_EQ_INT(((int32_t *)out.data)[0], -1); /* integer casts wrap */
    CHECK_EQ_INT(((int32_t *)out.data)[1], -5);
    ib_tensor_release(&out);

    /* double -> float16 rounds once: 1 + 2^-11 + 2^-40 is just above the half-way point
     * between 1 and 1 + 2^-10, though it rounds to that point as a float */
    double dv[2] = {1.0 + ldexp(1.0, -11) + ldexp(1.0, -40), 1.0 + ldexp(1.0, -11)};
    ib_tensor tdv = tensor(IB_DTYPE_FLOAT64, 1, d2, dv);
    const ib_tensor *din[1] = {&tdv};
    a[0] = attr_int("to", IB_DTYPE_FLOAT16);
    CHECK_EQ_INT(run_op(&n, 1, din, 1, &out), IB_OK);
    CHECK_NEAR(ib__half_to_float(((uint16_t *)out.data)[0]), 1.0 + ldexp(1.0, -10), 0);
    CHECK_NEAR(ib__half_to_float(((uint16_t *)out.data)[1]), 1.0, 0); /* tie: to even */
    ib_tensor_release(&out);

    /* strings and invalid targets are refused */
    a[0] = attr_int("to", IB_DTYPE_STRING);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_ERR_UNSUPPORTED);
    a[0] = attr_int("to", 99);
    CHECK_EQ_INT(run_op(&n, 1, in, 1, &out), IB_ERR_INVALID_MODEL);

    /* CastLike takes the type of its second input */
    double like = 0;
    ib_tensor tl = tensor(IB_DTYPE_FLOAT64, 0, NULL, &like);
    const ib_tensor *lin[2] = {&tx, &tl};
    n = make_node(IB_OP_CAST_LIKE, 15, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, lin, 1, &out), IB_OK);
    CHECK_EQ_INT(out.dtype, IB_DTYPE_FLOAT64);
    CHECK_EQ_INT(out.rank, 1);
    ib_tensor_release(&out);
}


/* The float32 kernels use their own vectorisable exp/erf/tanh; check them against the
 * double path (libm) over a dense sweep and at the edges. */
static double worst_rel_error(ib__op_id op, int32_t opset, ib__attr *attrs, int32_t n_attrs,
                              double lo, double hi, int n_sweep) {
    enum { N_SPECIAL = 14 };
    int64_t n = n_sweep + N_SPECIAL;
    int64_t dims[1] = {n};
    ib_tensor tf, td;
    if (ib__tensor_alloc(&tf, IB_DTYPE_FLOAT32, 1, dims) || ib__tensor_alloc(&td, IB_DTYPE_FLOAT64, 1, dims))
        return INFINITY;
    float *xf = tf.data;
    const float special[N_SPECIAL] = {0.0f, -0.0f, 1e-8f, -1e-8f, 1e-30f, 88.7f, 88.72f,
                                      -87.5f, -100.0f, -104.5f, 200.0f, -200.0f, INFINITY, -INFINITY};
    for (int i = 0; i < n_sweep; i++) xf[i] = (float)(lo + (hi - lo) * i / (n_sweep - 1));
    for (int i = 0; i < N_SPECIAL; i++) xf[n_sweep + i] = special[i];
    for (int64_t i = 0; i < n; i++) ((double *)td.data)[i] = xf[i];
    ib__node node = make_node(op, opset, attrs, n_attrs);
    ib_tensor of, od;
    const ib_tensor *inf_[1] = {&tf}, *ind[1] = {&td};
    double worst = 0;
    if (run_op(&node, 1, inf_, 1, &of) || run_op(&node, 1, ind, 1, &od)) {
        worst = INFINITY;
    } else {
        for (int64_t i = 0; i < n; i++) {
            double got = ((float *)of.data)[i], want = (double)(float)((double *)od.data)[i];
            if (isnan(want) || isnan(got)) {
                if (isnan(want) != isnan(got)) worst = INFINITY;
                continue;
            }
            if (isinf(want) || isinf(got)) {
                if (got != want) worst = INFINITY;
                continue;
            }
            double err = fabs(got - want) / (fabs(want) + 1e-25); /* relative above 1e-25 */
            if (err > worst) {
                worst = err;
                if (err > 1e-5)
                    fprintf(stderr, "  %s(%.9g) = %.9g, want %.9g\n", ib__op_name(op), xf[i], got, want);
            }
        }
        ib_tensor_release(&of);
        ib_tensor_release(&od);
    }
    ib_tensor_release(&tf);
    ib_tensor_release(&td);
    return worst;
}

TEST(fast_transcendentals_accuracy) {
    const double tol = 2e-6; /* ONNX's conformance tolerance is 1e-3 relative */
    CHECK(worst_rel_error(IB_OP_EXP, 13, NULL, 0, -87.0, 88.0, 200001) < tol);
    CHECK(worst_rel_error(IB_OP_SIGMOID, 13, NULL, 0, -90.0, 90.0, 200001) < tol);
    CHECK(worst_rel_error(IB_OP_TANH, 13, NULL, 0, -12.0, 12.0, 200001) < tol);
    CHECK(worst_rel_error(IB_OP_TANH, 13, NULL, 0, -0.5, 0.5, 100001) < tol);
    CHECK(worst_rel_error(IB_OP_ERF, 13, NULL, 0, -6.0, 6.0, 200001) < tol);
    CHECK(worst_rel_error(IB_OP_ERF, 13, NULL, 0, -0.6, 0.6, 100001) < tol);
    CHECK(worst_rel_error(IB_OP_ELU, 6, NULL, 0, -20.0, 5.0, 100001) < tol);
    CHECK(worst_rel_error(IB_OP_ELU, 6, NULL, 0, -0.3, 0.3, 100001) < tol);
    CHECK(worst_rel_error(IB_OP_SELU, 6, NULL, 0, -20.0, 5.0, 100001) < tol);
    ib__attr ca[1] = {attr_float("alpha", 2.0f)};
    CHECK(worst_rel_error(IB_OP_CELU, 12, ca, 1, -20.0, 5.0, 100001) < tol);
    CHECK(worst_rel_error(IB_OP_MISH, 18, NULL, 0, -30.0, 30.0, 200001) < 1e-5);
    /* GELU: the negative tail is tiny but still relatively accurate (no 1 + erf cancellation) */
    CHECK(worst_rel_error(IB_OP_GELU, 20, NULL, 0, -12.0, 8.0, 200001) < 1e-5);
    ib__attr ga[1] = {attr_string("approximate", "tanh")};
    CHECK(worst_rel_error(IB_OP_GELU, 20, ga, 1, -12.0, 8.0, 200001) < 1e-5);
}

/* ---- binary ------------------------------------------------------------------------------ */

TEST(add_broadcast) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    float b[3] = {10, 20, 30};
    int64_t da[2] = {2, 3}, db[1] = {3};
    ib_tensor ta = tensor(IB_DTYPE_FLOAT32, 2, da, a), tb = tensor(IB_DTYPE_FLOAT32, 1, db, b);
    const ib_tensor *in[2] = {&ta, &tb};
    ib_tensor out;
    ib__node n = make_node(IB_OP_ADD, 14, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &out), IB_OK);
    CHECK_EQ_INT(out.rank, 2);
    const float want[6] = {11, 22, 33, 14, 25, 36};
    for (int i = 0; i < 6; i++) CHECK_NEAR(((float *)out.data)[i], want[i], 0);
    ib_tensor_release(&out);

    /* [2,1] column against [1,3] row: outer product of sums */
    int64_t dc[2] = {2, 1}, dr[2] = {1, 3};
    float col[2] = {100, 200};
    ib_tensor tc = tensor(IB_DTYPE_FLOAT32, 2, dc, col), tr = tensor(IB_DTYPE_FLOAT32, 2, dr, b);
    const ib_tensor *in2[2] = {&tc, &tr};
    n = make_node(IB_OP_SUB, 14, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, in2, 1, &out), IB_OK);
    const float w2[6] = {90, 80, 70, 190, 180, 170};
    for (int i = 0; i < 6; i++) CHECK_NEAR(((float *)out.data)[i], w2[i], 0);
    ib_tensor_release(&out);

    /* incompatible shapes: an error naming the node */
    int64_t dbad[1] = {2};
    ib_tensor tbad = tensor(IB_DTYPE_FLOAT32, 1, dbad, b);
    const ib_tensor *in3[2] = {&ta, &tbad};
    n = make_node(IB_OP_ADD, 14, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, in3, 1, &out), IB_ERR_SHAPE);
    CHECK(strstr(ib_last_error(), "node") != NULL);

    /* mixed dtypes are invalid */
    int32_t bi[3] = {1, 2, 3};
    ib_tensor tbi = tensor(IB_DTYPE_INT32, 1, db, bi);
    const ib_tensor *in4[2] = {&ta, &tbi};
    CHECK_EQ_INT(run_op(&n, 2, in4, 1, &out), IB_ERR_INVALID_MODEL);
}

TEST(bias_add_channels_and_parallel) {
    /* [N=2, C=3, HW=4] + [C, 1]: the inner loop sees a scalar per channel */
    enum { N = 2, C = 3, HW = 4 };
    float x[N * C * HW], bias[C] = {1, 2, 3};
    for (int i = 0; i < N * C * HW; i++) x[i] = (float)i;
    int64_t dx[3] = {N, C, HW}, dbias[2] = {C, 1};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 3, dx, x), tbias = tensor(IB_DTYPE_FLOAT32, 2, dbias, bias);
    const ib_tensor *in[2] = {&tx, &tbias};
    ib_tensor out;
    ib__node n = make_node(IB_OP_ADD, 14, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &out), IB_OK);
    for (int i = 0; i < N * C * HW; i++)
        CHECK_NEAR(((float *)out.data)[i], x[i] + bias[(i / HW) % C], 0);
    ib_tensor_release(&out);

    /* a large residual-style multiply on a pool matches the scalar result */
    ib__pool *pool = NULL;
    CHECK_EQ_INT(ib__pool_create(3, &pool), IB_OK);
    enum { R = 300, K = 517 };
    int64_t dbig[2] = {R, K}, drow[1] = {K};
    ib_tensor tbig, trow;
    CHECK_EQ_INT(ib__tensor_alloc(&tbig, IB_DTYPE_FLOAT32, 2, dbig), IB_OK);
    CHECK_EQ_INT(ib__tensor_alloc(&trow, IB_DTYPE_FLOAT32, 1, drow), IB_OK);
    float *pb = tbig.data, *pr = trow.data;
    for (int i = 0; i < R * K; i++) pb[i] = (float)(i % 97) * 0.5f;
    for (int i = 0; i < K; i++) pr[i] = (float)(i % 13) - 6.0f;
    const ib_tensor *bin[2] = {&tbig, &trow};
    n = make_node(IB_OP_MUL, 14, NULL, 0);
    CHECK_EQ_INT(run_op_pool(&n, 2, bin, 1, &out, pool), IB_OK);
    int bad = 0;
    for (int i = 0; i < R * K; i++)
        if (((float *)out.data)[i] != pb[i] * pr[i % K]) bad++;
    CHECK_EQ_INT(bad, 0);
    ib_tensor_release(&out);
    /* scalar on the left, on the pool */
    float two = 2.0f;
    ib_tensor ts = tensor(IB_DTYPE_FLOAT32, 0, NULL, &two);
    const ib_tensor *sin2[2] = {&ts, &tbig};
    n = make_node(IB_OP_DIV, 14, NULL, 0);
    CHECK_EQ_INT(run_op_pool(&n, 2, sin2, 1, &out, pool), IB_OK);
    bad = 0;
    for (int i = 0; i < R * K; i++)
        if (((float *)out.data)[i] != 2.0f / pb[i]) bad++;
    CHECK_EQ_INT(bad, 0);
    ib_tensor_release(&out);
    ib_tensor_release(&tbig);
    ib_tensor_release(&trow);
    ib__pool_destroy(pool);
}

TEST(integer_div_mod) {
    int32_t a[6] = {7, -7, 7, -7, INT32_MIN, 5};
    int32_t b[6] = {2, 2, -2, -2, -1, 0};
    int64_t d[1] = {6};
    ib_tensor ta = tensor(IB_DTYPE_INT32, 1, d, a), tb = tensor(IB_DTYPE_INT32, 1, d, b);
    const ib_tensor *in[2] = {&ta, &tb};
    ib_tensor out;
    ib__node n = make_node(IB_OP_DIV, 14, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &out), IB_OK);
    const int32_t wdiv[6] = {3, -3, -3, 3, INT32_MIN, 0}; /* truncation; defined edge cases */
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(((int32_t *)out.data)[i], wdiv[i]);
    ib_tensor_release(&out);

    n = make_node(IB_OP_MOD, 13, NULL, 0); /* Python-style: sign of the divisor */
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &out), IB_OK);
    const int32_t wmod[6] = {1, 1, -1, -1, 0, 0};
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(((int32_t *)out.data)[i], wmod[i]);
    ib_tensor_release(&out);

    ib__attr fa[1] = {attr_int("fmod", 1)};
    n = make_node(IB_OP_MOD, 13, fa, 1); /* C fmod: sign of the dividend */
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &out), IB_OK);
    const int32_t wfmod[6] = {1, -1, 1, -1, 0, 0};
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(((int32_t *)out.data)[i], wfmod[i]);
    ib_tensor_release(&out);

    fa[0] = attr_int("fmod", 2);
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &out), IB_ERR_INVALID_MODEL);

    float fx[2] = {-4.5f, 4.5f}, fy[2] = {2.0f, -2.0f};
    int64_t d2[1] = {2};
    ib_tensor tfx = tensor(IB_DTYPE_FLOAT32, 1, d2, fx), tfy = tensor(IB_DTYPE_FLOAT32, 1, d2, fy);
    const ib_tensor *fin[2] = {&tfx, &tfy};
    fa[0] = attr_int("fmod", 1);
    CHECK_EQ_INT(run_op(&n, 2, fin, 1, &out), IB_OK);
    CHECK_NEAR(((float *)out.data)[0], -0.5, 0);
    CHECK_NEAR(((float *)out.data)[1], 0.5, 0);
    ib_tensor_release(&out);

    uint8_t u[2] = {250, 3}, v[2] = {10, 0};
    ib_tensor tu = tensor(IB_DTYPE_UINT8, 1, d2, u), tv = tensor(IB_DTYPE_UINT8, 1, d2, v);
    const ib_tensor *uin[2] = {&tu, &tv};
    n = make_node(IB_OP_ADD, 14, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, uin, 1, &out), IB_OK);
    CHECK_EQ_INT(((uint8_t *)out.data)[0], 4); /* wraps */
    ib_tensor_release(&out);
    n = make_node(IB_OP_DIV, 14, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, uin, 1, &out), IB_OK);
    CHECK_EQ_INT(((uint8_t *)out.data)[0], 25);
    CHECK_EQ_INT(((uint8_t *)out.data)[1], 0);
    ib_tensor_release(&out);
}

TEST(pow_and_shift) {
    int64_t d3[1] = {3};
    float fb[3] = {1, 2, 3};
    int64_t ie[3] = {4, 5, 6};
    ib_tensor tfb = tensor(IB_DTYPE_FLOAT32, 1, d3, fb), tie = tensor(IB_DTYPE_INT64, 1, d3, ie);
    const ib_tensor *in[2] = {&tfb, &tie};
    ib_tensor out;
    ib__node n = make_node(IB_OP_POW, 15, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &out), IB_OK);
    CHECK_EQ_INT(out.dtype, IB_DTYPE_FLOAT32);
    CHECK_NEAR(((float *)out.data)[1], 32, 0);
    CHECK_NEAR(((float *)out.data)[2], 729, 0);
    ib_tensor_release(&out);

    int32_t ib[3] = {2, -3, 5};
    float fe[3] = {0.5f, 2.0f, 1.5f};
    ib_tensor tib = tensor(IB_DTYPE_INT32, 1, d3, ib), tfe = tensor(IB_DTYPE_FLOAT32, 1, d3, fe);
    const ib_tensor *in2[2] = {&tib, &tfe};
    CHECK_EQ_INT(run_op(&n, 2, in2, 1, &out), IB_OK);
    CHECK_EQ_INT(out.dtype, IB_DTYPE_INT32);
    CHECK_EQ_INT(((int32_t *)out.data)[0], 1); /* 1.414 truncated */
    CHECK_EQ_INT(((int32_t *)out.data)[1], 9);
    CHECK_EQ_INT(((int32_t *)out.data)[2], 11);
    ib_tensor_release(&out);

    uint16_t sa[3] = {16, 4, 1}, sb[3] = {1, 2, 20};
    ib_tensor tsa = tensor(IB_DTYPE_UINT16, 1, d3, sa), tsb = tensor(IB_DTYPE_UINT16, 1, d3, sb);
    const ib_tensor *sin[2] = {&tsa, &tsb};
    ib__attr dir[1] = {attr_string("direction", "RIGHT")};
    n = make_node(IB_OP_BIT_SHIFT, 11, dir, 1);
    CHECK_EQ_INT(run_op(&n, 2, sin, 1, &out), IB_OK);
    CHECK_EQ_INT(((uint16_t *)out.data)[0], 8);
    CHECK_EQ_INT(((uint16_t *)out.data)[1], 1);
    CHECK_EQ_INT(((uint16_t *)out.data)[2], 0);
    ib_tensor_release(&out);
    dir[0] = attr_string("direction", "LEFT");
    CHECK_EQ_INT(run_op(&n, 2, sin, 1, &out), IB_OK);
    CHECK_EQ_INT(((uint16_t *)out.data)[0], 32);
    CHECK_EQ_INT(((uint16_t *)out.data)[2], 0); /* shifted out of 16 bits */
    ib_tensor_release(&out);
    dir[0] = attr_string("direction", "UP");
    CHECK_EQ_INT(run_op(&n, 2, sin, 1, &out), IB_ERR_INVALID_MODEL);
    /* signed types are not allowed */
    dir[0] = attr_string("direction", "LEFT");
    CHECK(run_op(&n, 2, in2, 1, &out) != IB_OK);
}

TEST(compare_logic_where) {
    int64_t d4[1] = {4};
    float a[4] = {1, 2, 3, NAN}, b[4] = {2, 2, 2, 2};
    ib_tensor ta = tensor(IB_DTYPE_FLOAT32, 1, d4, a), tb = tensor(IB_DTYPE_FLOAT32, 1, d4, b);
    const ib_tensor *in[2] = {&ta, &tb};
    ib_tensor out;
    ib__node n = make_node(IB_OP_GREATER_OR_EQUAL, 16, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &out), IB_OK);
    CHECK_EQ_INT(out.dtype, IB_DTYPE_BOOL);
    const uint8_t wge[4] = {0, 1, 1, 0};
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(((uint8_t *)out.data)[i], wge[i]);
    ib_tensor_release(&out);

    uint8_t p[4] = {1, 1, 0, 0}, q[2] = {1, 0};
    int64_t d22[2] = {2, 2}, d2[1] = {2};
    ib_tensor tp = tensor(IB_DTYPE_BOOL, 2, d22, p), tq = tensor(IB_DTYPE_BOOL, 1, d2, q);
    const ib_tensor *lin[2] = {&tp, &tq};
    n = make_node(IB_OP_XOR, 7, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, lin, 1, &out), IB_OK);
    const uint8_t wx[4] = {0, 1, 1, 0};
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(((uint8_t *)out.data)[i], wx[i]);
    ib_tensor_release(&out);
    /* And on floats is invalid */
    n = make_node(IB_OP_AND, 7, NULL, 0);
    CHECK(run_op(&n, 2, in, 1, &out) != IB_OK);

    /* Where: [2,2] condition, [2] X, scalar Y */
    int64_t x2[2] = {10, 20}, yv = -1;
    ib_tensor tx = tensor(IB_DTYPE_INT64, 1, d2, x2), ty = tensor(IB_DTYPE_INT64, 0, NULL, &yv);
    const ib_tensor *win[3] = {&tp, &tx, &ty};
    n = make_node(IB_OP_WHERE, 16, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 3, win, 1, &out), IB_OK);
    const int64_t ww[4] = {10, 20, -1, -1};
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(((int64_t *)out.data)[i], ww[i]);
    ib_tensor_release(&out);
}

TEST(variadic_and_prelu) {
    int64_t d3[1] = {3}, d13[2] = {1, 3}, d21[2] = {2, 1};
    float a[3] = {3, 2, 1}, b[3] = {1, 3, NAN}, c2[2] = {2, 0};
    ib_tensor ta = tensor(IB_DTYPE_FLOAT32, 1, d3, a), tb = tensor(IB_DTYPE_FLOAT32, 2, d13, b),
              tc = tensor(IB_DTYPE_FLOAT32, 2, d21, c2);
    const ib_tensor *in[3] = {&ta, &tb, &tc};
    ib_tensor out;
    ib__node n = make_node(IB_OP_MAX, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 3, in, 1, &out), IB_OK);
    CHECK_EQ_INT(out.rank, 2);
    CHECK_EQ_INT(out.shape[0], 2);
    float *o = out.data;
    CHECK_NEAR(o[0], 3, 0);
    CHECK_NEAR(o[1], 3, 0);
    CHECK(isnan(o[2])); /* NaN propagates */
    CHECK_NEAR(o[3], 3, 0);
    ib_tensor_release(&out);

    n = make_node(IB_OP_MEAN, 13, NULL, 0);
    const ib_tensor *in2[2] = {&ta, &tc};
    CHECK_EQ_INT(run_op(&n, 2, in2, 1, &out), IB_OK);
    o = out.data;
    CHECK_NEAR(o[0], 2.5, 0);
    CHECK_NEAR(o[5], 0.5, 0);
    ib_tensor_release(&out);

    n = make_node(IB_OP_SUM, 13, NULL, 0);
    const ib_tensor *in1[1] = {&ta};
    CHECK_EQ_INT(run_op(&n, 1, in1, 1, &out), IB_OK);
    CHECK_NEAR(((float *)out.data)[2], 1, 0);
    ib_tensor_release(&out);

    /* PRelu: slope [C,1,1] per channel; before opset 7 a 1-D slope meant channels too */
    enum { C = 2, H = 2 };
    float x[C * H * H] = {-1, 1, -2, 2, -4, 4, -8, 8};
    float slope[C] = {0.5f, 0.25f};
    int64_t dx[4] = {1, C, H, H}, ds[3] = {C, 1, 1}, ds1[1] = {C};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 4, dx, x), ts = tensor(IB_DTYPE_FLOAT32, 3, ds, slope);
    const ib_tensor *pin[2] = {&tx, &ts};
    const float want[8] = {-0.5f, 1, -1, 2, -1, 4, -2, 8};
    n = make_node(IB_OP_P_RELU, 16, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, pin, 1, &out), IB_OK);
    for (int i = 0; i < 8; i++) CHECK_NEAR(((float *)out.data)[i], want[i], 0);
    ib_tensor_release(&out);
    ib_tensor ts1 = tensor(IB_DTYPE_FLOAT32, 1, ds1, slope);
    const ib_tensor *pin6[2] = {&tx, &ts1};
    n = make_node(IB_OP_P_RELU, 6, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, pin6, 1, &out), IB_OK);
    for (int i = 0; i < 8; i++) CHECK_NEAR(((float *)out.data)[i], want[i], 0);
    ib_tensor_release(&out);
    /* a slope that does not broadcast to X */
    int64_t dbad[1] = {3};
    float sbad[3] = {1, 1, 1};
    ib_tensor tsb = tensor(IB_DTYPE_FLOAT32, 1, dbad, sbad);
    const ib_tensor *pbad[2] = {&tx, &tsb};
    n = make_node(IB_OP_P_RELU, 16, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, pbad, 1, &out), IB_ERR_SHAPE);
}

TEST(legacy_broadcast_axis) {
    /* opset 6: Add(broadcast=1, axis=0) of [2,3] and [2] adds per row */
    double a[6] = {1, 2, 3, 4, 5, 6}, b[2] = {10, 20};
    int64_t da[2] = {2, 3}, db[1] = {2};
    ib_tensor ta = tensor(IB_DTYPE_FLOAT64, 2, da, a), tb = tensor(IB_DTYPE_FLOAT64, 1, db, b);
    const ib_tensor *in[2] = {&ta, &tb};
    ib__attr at[2] = {attr_int("broadcast", 1), attr_int("axis", 0)};
    ib__node n = make_node(IB_OP_ADD, 6, at, 2);
    ib_tensor out;
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &out), IB_OK);
    const double want[6] = {11, 12, 13, 24, 25, 26};
    for (int i = 0; i < 6; i++) CHECK_NEAR(((double *)out.data)[i], want[i], 0);
    ib_tensor_release(&out);
    at[1] = attr_int("axis", 5);
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &out), IB_ERR_INVALID_MODEL);
}

TEST(infer_unknown_dims) {
    ib__value a, b, out;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.dtype = b.dtype = IB_DTYPE_FLOAT32;
    a.rank = 2;
    a.dims[0] = -1;
    a.dim_param[0] = "batch";
    a.dims[1] = 8;
    b.rank = 1;
    b.dims[0] = 8;
    const ib__value *in[2] = {&a, &b};
    ib__node n = make_node(IB_OP_ADD, 14, NULL, 0);
    CHECK_EQ_INT(infer_only(&n, 2, in, &out), IB_OK);
    CHECK_EQ_INT(out.rank, 2);
    CHECK_EQ_INT(out.dims[0], -1);
    CHECK(out.dim_param[0] && strcmp(out.dim_param[0], "batch") == 0);
    CHECK_EQ_INT(out.dims[1], 8);
    b.rank = -1;
    CHECK_EQ_INT(infer_only(&n, 2, in, &out), IB_OK);
    CHECK_EQ_INT(out.rank, -1);
    n = make_node(IB_OP_EQUAL, 13, NULL, 0);
    CHECK_EQ_INT(infer_only(&n, 2, in, &out), IB_OK);
    CHECK_EQ_INT(out.dtype, IB_DTYPE_BOOL);
    const ib__value *one[1] = {&a};
    n = make_node(IB_OP_SIGMOID, 13, NULL, 0);
    CHECK_EQ_INT(infer_only(&n, 1, one, &out), IB_OK);
    CHECK_EQ_INT(out.dims[0], -1);
    a.dtype = IB_DTYPE_INT32; /* Sigmoid needs floats */
    CHECK_EQ_INT(infer_only(&n, 1, one, &out), IB_ERR_INVALID_MODEL);
}

/* ---- quantize ------------------------------------------------------------------------------ */

TEST(quantize_dequantize) {
    float x[6] = {0, 2, 3, 1000, -254, -1000};
    int64_t d6[1] = {6};
    float scale = 2.0f;
    uint8_t zp = 128;
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 1, d6, x), ts = tensor(IB_DTYPE_FLOAT32, 0, NULL, &scale),
              tz = tensor(IB_DTYPE_UINT8, 0, NULL, &zp);
    const ib_tensor *in[3] = {&tx, &ts, &tz};
    ib_tensor out;
    ib__node n = make_node(IB_OP_QUANTIZE_LINEAR, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 3, in, 1, &out), IB_OK);
    const uint8_t wq[6] = {128, 129, 130, 255, 1, 0}; /* 3/2 = 1.5 rounds to 2 */
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(((uint8_t *)out.data)[i], wq[i]);
    ib_tensor_release(&out);

    /* per-axis int8 along axis 1 of [1,2,2] */
    float xa[4] = {10, -10, 9, 400};
    float sa[2] = {2, 3};
    int8_t za[2] = {1, -2};
    int64_t dxa[3] = {1, 2, 2}, dsa[1] = {2};
    ib_tensor txa = tensor(IB_DTYPE_FLOAT32, 3, dxa, xa), tsa = tensor(IB_DTYPE_FLOAT32, 1, dsa, sa),
              tza = tensor(IB_DTYPE_INT8, 1, dsa, za);
    const ib_tensor *ina[3] = {&txa, &tsa, &tza};
    CHECK_EQ_INT(run_op(&n, 3, ina, 1, &out), IB_OK);
    const int8_t wa[4] = {6, -4, 1, 127};
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(((int8_t *)out.data)[i], wa[i]);

    ib_tensor q = out;
    const ib_tensor *dq[3] = {&q, &tsa, &tza};
    ib_tensor back;
    n = make_node(IB_OP_DEQUANTIZE_LINEAR, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 3, dq, 1, &back), IB_OK);
    const float wb[4] = {10, -10, 9, 387};
    for (int i = 0; i < 4; i++) CHECK_NEAR(((float *)back.data)[i], wb[i], 0);
    ib_tensor_release(&back);
    ib_tensor_release(&q);

    /* scale length that does not match the axis */
    float s3[3] = {1, 1, 1};
    int64_t d3[1] = {3};
    ib_tensor ts3 = tensor(IB_DTYPE_FLOAT32, 1, d3, s3);
    const ib_tensor *bad[2] = {&txa, &ts3};
    n = make_node(IB_OP_QUANTIZE_LINEAR, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 2, bad, 1, &out), IB_ERR_SHAPE);
}

TEST(dynamic_quantize) {
    float x[6] = {0, 2, -3, -2.5f, 1.34f, 0.5f};
    int64_t d6[1] = {6};
    ib_tensor tx = tensor(IB_DTYPE_FLOAT32, 1, d6, x);
    const ib_tensor *in[1] = {&tx};
    ib_tensor out[3];
    ib__node n = make_node(IB_OP_DYNAMIC_QUANTIZE_LINEAR, 11, NULL, 0);
    CHECK_EQ_INT(run_op(&n, 1, in, 3, out), IB_OK);
    CHECK_NEAR(((float *)out[1].data)[0], 5.0f / 255.0f, 1e-9);
    CHECK_EQ_INT(((uint8_t *)out[2].data)[0], 153);
    const uint8_t want[6] = {153, 255, 0, 26, 221, 179};
    for (int i = 0; i < 6; i++) CHECK_EQ_INT(((uint8_t *)out[0].data)[i], want[i]);
    for (int i = 0; i < 3; i++) ib_tensor_release(&out[i]);

    int32_t xi[2] = {1, 2};
    int64_t d2[1] = {2};
    ib_tensor ti = tensor(IB_DTYPE_INT32, 1, d2, xi);
    const ib_tensor *bad[1] = {&ti};
    CHECK(run_op(&n, 1, bad, 3, out) != IB_OK);
}

int main(void) {
    RUN(unary_float32);
    RUN(unary_isinf_isnan_not);
    RUN(unary_integers);
    RUN(clip_forms);
    RUN(cast);
    RUN(fast_transcendentals_accuracy);
    RUN(add_broadcast);
    RUN(bias_add_channels_and_parallel);
    RUN(integer_div_mod);
    RUN(pow_and_shift);
    RUN(compare_logic_where);
    RUN(variadic_and_prelu);
    RUN(legacy_broadcast_axis);
    RUN(infer_unknown_dims);
    RUN(quantize_dequantize);
    RUN(dynamic_quantize);
    TEST_SUMMARY();
}
