/* Unit tests of reduce.c, loss.c, sequence_models.c, signal.c and detection.c: each op's
 * infer and run callbacks called directly on small tensors, checked against values worked
 * out by hand, plus bad inputs that must come back as errors. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops/ops.h"
#include "test.h"

/* ---- Building nodes and tensors ----------------------------------------------------- */

static ib__attr a_int(const char *name, int64_t v) {
    ib__attr a = {.name = name, .kind = IB_ATTR_INT, .i = v};
    return a;
}
static ib__attr a_float(const char *name, float v) {
    ib__attr a = {.name = name, .kind = IB_ATTR_FLOAT, .f = v};
    return a;
}
static ib__attr a_str(const char *name, const char *s) {
    ib__attr a = {.name = name, .kind = IB_ATTR_STRING, .s = s, .s_len = strlen(s)};
    return a;
}
static ib__attr a_ints(const char *name, int32_t n, int64_t *v) {
    ib__attr a = {.name = name, .kind = IB_ATTR_INTS, .count = n, .ints = v};
    return a;
}

static ib__node node_of(ib__op_id op, int32_t opset, ib__attr *attrs, int32_t n_attrs) {
    ib__node n;
    memset(&n, 0, sizeof n);
    n.name = "n";
    n.op_type = ib__op_name(op);
    n.domain = "";
    n.op = op;
    n.opset = opset;
    n.attrs = attrs;
    n.n_attrs = n_attrs;
    return n;
}

static ib_tensor ten(ib_dtype dt, int32_t rank, const int64_t *dims, const void *data) {
    ib_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = rank;
    for (int32_t d = 0; d < rank; d++) t.shape[d] = dims[d];
    t.data = (void *)data;
    t.nbytes = (size_t)ib_tensor_element_count(&t) * ib_dtype_size(dt);
    return t;
}

#define MAX_IO 8

/* Infers (every input known, as at run time), allocates the outputs and runs. `in[i]`
 * NULL is an omitted input; `out` receives n_out tensors the caller releases. */
static ib__pool *g_pool; /* NULL: serial */

static ib_status run_node(const ib__node *node, int32_t n_in, const ib_tensor *const *in,
                          int32_t n_out, ib_tensor *out) {
    ib__value vals[MAX_IO], ovals[MAX_IO];
    const ib__value *vin[MAX_IO];
    ib__value *vout[MAX_IO];
    ib_tensor *tout[MAX_IO];
    for (int32_t i = 0; i < n_in; i++) {
        vin[i] = NULL;
        if (!in[i]) continue;
        memset(&vals[i], 0, sizeof vals[i]);
        vals[i].name = "x";
        vals[i].dtype = in[i]->dtype;
        vals[i].rank = in[i]->rank;
        for (int32_t d = 0; d < in[i]->rank; d++) vals[i].dims[d] = in[i]->shape[d];
        vals[i].constant = in[i];
        vin[i] = &vals[i];
    }
    for (int32_t o = 0; o < n_out; o++) {
        memset(&ovals[o], 0, sizeof ovals[o]);
        ovals[o].rank = -1;
        vout[o] = &ovals[o];
        memset(&out[o], 0, sizeof out[o]);
    }
    const ib__op_def *def = ib__op_get(node->op);
    if (!def) return IB_ERR_UNSUPPORTED;
    ib__infer_ctx ic = {.node = node, .opset = node->opset, .n_in = n_in, .in = vin,
                        .n_out = n_out, .out = vout};
    ib_status st = def->infer(&ic);
    if (st) return st;
    for (int32_t o = 0; o < n_out; o++) {
        st = ib__tensor_alloc(&out[o], ovals[o].dtype, ovals[o].rank, ovals[o].dims);
        if (st) return st;
        tout[o] = &out[o];
    }
    ib__run_ctx rc = {.node = node, .opset = node->opset, .n_in = n_in, .in = in,
                      .n_out = n_out, .out = tout, .pool = g_pool};
    st = def->run(&rc);
    if (st)
        for (int32_t o = 0; o < n_out; o++) ib_tensor_release(&out[o]);
    return st;
}

static void release(int32_t n, ib_tensor *t) {
    for (int32_t i = 0; i < n; i++) ib_tensor_release(&t[i]);
}

static void check_floats(const ib_tensor *t, const float *want, int64_t n, double tol) {
    CHECK_EQ_INT(ib_tensor_element_count(t), n);
    if (ib_tensor_element_count(t) != n) return;
    for (int64_t i = 0; i < n; i++) CHECK_NEAR(((const float *)t->data)[i], want[i], tol);
}

static void check_i64(const ib_tensor *t, const int64_t *want, int64_t n) {
    CHECK_EQ_INT(ib_tensor_element_count(t), n);
    if (ib_tensor_element_count(t) != n) return;
    for (int64_t i = 0; i < n; i++) CHECK_EQ_INT(((const int64_t *)t->data)[i], want[i]);
}

/* ---- Reductions --------------------------------------------------------------------- */

static const float k_x23[6] = {1, 2, 3, 4, 5, 6}; /* [[1,2,3],[4,5,6]] */
static const int64_t k_d23[2] = {2, 3};

TEST(reduce_sum_axes_input) {
    ib__attr at[] = {a_int("keepdims", 0)};
    ib__node n = node_of(IB_OP_REDUCE_SUM, 13, at, 1);
    int64_t axes[1] = {-1}, ad[1] = {1};
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 2, k_d23, k_x23), a = ten(IB_DTYPE_INT64, 1, ad, axes);
    const ib_tensor *in[2] = {&x, &a};
    ib_tensor y[1];
    CHECK_EQ_INT(run_node(&n, 2, in, 1, y), IB_OK);
    CHECK_EQ_INT(y[0].rank, 1);
    check_floats(&y[0], (const float[]){6, 15}, 2, 1e-6);
    release(1, y);
    /* Omitted axes: everything, keepdims -> [1, 1]. */
    ib__node n2 = node_of(IB_OP_REDUCE_SUM, 13, NULL, 0);
    CHECK_EQ_INT(run_node(&n2, 1, in, 1, y), IB_OK);
    CHECK_EQ_INT(y[0].rank, 2);
    check_floats(&y[0], (const float[]){21}, 1, 1e-6);
    release(1, y);
    /* Empty axes with noop_with_empty_axes: identity. */
    ib__attr at3[] = {a_int("noop_with_empty_axes", 1)};
    ib__node n3 = node_of(IB_OP_REDUCE_SUM, 13, at3, 1);
    int64_t ed[1] = {0};
    ib_tensor e = ten(IB_DTYPE_INT64, 1, ed, axes);
    const ib_tensor *in3[2] = {&x, &e};
    CHECK_EQ_INT(run_node(&n3, 2, in3, 1, y), IB_OK);
    check_floats(&y[0], k_x23, 6, 0);
    release(1, y);
}

TEST(reduce_kinds_attr_axes) {
    int64_t axes[1] = {0};
    ib__attr at[] = {a_ints("axes", 1, axes), a_int("keepdims", 1)};
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 2, k_d23, k_x23);
    const ib_tensor *in[1] = {&x};
    struct {
        ib__op_id op;
        float want[3];
    } cases[] = {
        {IB_OP_REDUCE_MEAN, {2.5f, 3.5f, 4.5f}},
        {IB_OP_REDUCE_MAX, {4, 5, 6}},
        {IB_OP_REDUCE_MIN, {1, 2, 3}},
        {IB_OP_REDUCE_PROD, {4, 10, 18}},
        {IB_OP_REDUCE_L1, {5, 7, 9}},
        {IB_OP_REDUCE_L2, {(float)sqrt(17.0), (float)sqrt(29.0), (float)sqrt(45.0)}},
        {IB_OP_REDUCE_SUM_SQUARE, {17, 29, 45}},
        {IB_OP_REDUCE_LOG_SUM, {(float)log(5.0), (float)log(7.0), (float)log(9.0)}},
        {IB_OP_REDUCE_LOG_SUM_EXP,
         {(float)log(exp(1.0) + exp(4.0)), (float)log(exp(2.0) + exp(5.0)),
          (float)log(exp(3.0) + exp(6.0))}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ib__node n = node_of(cases[k].op, 11, at, 2);
        ib_tensor y[1];
        CHECK_EQ_INT(run_node(&n, 1, in, 1, y), IB_OK);
        CHECK_EQ_INT(y[0].rank, 2);
        CHECK_EQ_INT(y[0].shape[0], 1);
        check_floats(&y[0], cases[k].want, 3, 1e-5);
        release(1, y);
    }
}

TEST(reduce_int_and_strided) {
    /* Int32 max over the middle axis of [2, 3, 2]; int64 sum stays exact. */
    int32_t xi[12] = {1, -7, 9, 2, 3, 8, -1, -2, -3, -4, -5, -6};
    int64_t d[3] = {2, 3, 2}, axes[1] = {1};
    ib__attr at[] = {a_ints("axes", 1, axes), a_int("keepdims", 0)};
    ib__node n = node_of(IB_OP_REDUCE_MAX, 13, at, 2);
    ib_tensor x = ten(IB_DTYPE_INT32, 3, d, xi);
    const ib_tensor *in[1] = {&x};
    ib_tensor y[1];
    CHECK_EQ_INT(run_node(&n, 1, in, 1, y), IB_OK);
    CHECK_EQ_INT(y[0].dtype, IB_DTYPE_INT32);
    const int32_t *yi = y[0].data;
    CHECK_EQ_INT(yi[0], 9);
    CHECK_EQ_INT(yi[1], 8);
    CHECK_EQ_INT(yi[2], -1);
    CHECK_EQ_INT(yi[3], -2);
    release(1, y);
    int64_t big[2] = {(int64_t)1 << 60, 3};
    int64_t bd[1] = {2};
    ib__node n2 = node_of(IB_OP_REDUCE_SUM, 11, NULL, 0);
    ib_tensor xb = ten(IB_DTYPE_INT64, 1, bd, big);
    const ib_tensor *in2[1] = {&xb};
    CHECK_EQ_INT(run_node(&n2, 1, in2, 1, y), IB_OK);
    CHECK_EQ_INT(((int64_t *)y[0].data)[0], ((int64_t)1 << 60) + 3);
    release(1, y);
}

/* The float32 fast paths against the generic path (fed the same data as float64). */
TEST(reduce_fast_paths_match_generic) {
    enum { N = 3 * 4 * 5 };
    float xf[N];
    double xd[N];
    for (int i = 0; i < N; i++) xd[i] = xf[i] = (float)(sin(i * 1.7) * 2.0 + 0.1);
    int64_t d[3] = {3, 4, 5};
    ib_tensor tf = ten(IB_DTYPE_FLOAT32, 3, d, xf), td = ten(IB_DTYPE_FLOAT64, 3, d, xd);
    static int64_t combos[][3] = {{0}, {1}, {2}, {0, 1}, {1, 2}, {0, 2}, {0, 1, 2}};
    static const int32_t counts[] = {1, 1, 1, 2, 2, 2, 3};
    ib__op_id ops[] = {IB_OP_REDUCE_SUM_SQUARE, IB_OP_REDUCE_MEAN, IB_OP_REDUCE_MAX,
                       IB_OP_REDUCE_MIN, IB_OP_REDUCE_PROD, IB_OP_REDUCE_L1, IB_OP_REDUCE_L2,
                       IB_OP_REDUCE_LOG_SUM_EXP};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (int cmb = 0; cmb < 7; cmb++) {
            ib__attr at[] = {a_ints("axes", counts[cmb], combos[cmb])};
            ib__node n = node_of(ops[o], 13, at, 1);
            const ib_tensor *inf[1] = {&tf}, *ind[1] = {&td};
            ib_tensor yf[1], yd[1];
            CHECK_EQ_INT(run_node(&n, 1, inf, 1, yf), IB_OK);
            CHECK_EQ_INT(run_node(&n, 1, ind, 1, yd), IB_OK);
            int64_t cnt = ib_tensor_element_count(&yf[0]);
            CHECK_EQ_INT(cnt, ib_tensor_element_count(&yd[0]));
            for (int64_t i = 0; i < cnt; i++) {
                double a = ((float *)yf[0].data)[i], b = ((double *)yd[0].data)[i];
                CHECK_NEAR(a, b, 1e-5 * (1 + fabs(b)));
            }
            release(1, yf);
            release(1, yd);
        }
    /* NaN propagates through max on both layouts. */
    xf[7] = NAN;
    int64_t ax_last[1] = {2}, ax_mid[1] = {1};
    ib__attr a1[] = {a_ints("axes", 1, ax_last)}, a2[] = {a_ints("axes", 1, ax_mid)};
    ib__node n1 = node_of(IB_OP_REDUCE_MAX, 13, a1, 1), n2 = node_of(IB_OP_REDUCE_MAX, 13, a2, 1);
    const ib_tensor *inf[1] = {&tf};
    ib_tensor y[1];
    CHECK_EQ_INT(run_node(&n1, 1, inf, 1, y), IB_OK);
    CHECK(isnan(((float *)y[0].data)[1])); /* element 7 is row 1 of the last axis */
    CHECK(!isnan(((float *)y[0].data)[0]));
    release(1, y);
    CHECK_EQ_INT(run_node(&n2, 1, inf, 1, y), IB_OK);
    CHECK(isnan(((float *)y[0].data)[2])); /* (0, 1, 2): output (0, 2) */
    CHECK(!isnan(((float *)y[0].data)[1]));
    release(1, y);
}

TEST(reduce_load_time_unknown_axes) {
    ib__node n = node_of(IB_OP_REDUCE_SUM, 13, NULL, 0);
    ib__value x = {.name = "x", .dtype = IB_DTYPE_FLOAT32, .rank = 2, .dims = {-1, 4}};
    ib__value a = {.name = "a", .dtype = IB_DTYPE_INT64, .rank = 1, .dims = {1}};
    ib__value out = {.rank = -1};
    const ib__value *vin[2] = {&x, &a};
    ib__value *vout[1] = {&out};
    ib__infer_ctx ic = {.node = &n, .opset = 13, .n_in = 2, .in = vin, .n_out = 1, .out = vout};
    CHECK_EQ_INT(ib__op_get(IB_OP_REDUCE_SUM)->infer(&ic), IB_OK);
    CHECK_EQ_INT(out.rank, 2); /* keepdims: rank known, dims not */
    CHECK_EQ_INT(out.dims[1], -1);
}

TEST(reduce_bad_axes) {
    int64_t axes[1] = {2};
    ib__attr at[] = {a_ints("axes", 1, axes)};
    ib__node n = node_of(IB_OP_REDUCE_MEAN, 11, at, 1);
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 2, k_d23, k_x23);
    const ib_tensor *in[1] = {&x};
    ib_tensor y[1];
    CHECK_EQ_INT(run_node(&n, 1, in, 1, y), IB_ERR_INVALID_MODEL);
    int64_t dup[2] = {0, -2};
    ib__attr at2[] = {a_ints("axes", 2, dup)};
    ib__node n2 = node_of(IB_OP_REDUCE_MEAN, 11, at2, 1);
    CHECK_EQ_INT(run_node(&n2, 1, in, 1, y), IB_ERR_INVALID_MODEL);
    /* Axes of the wrong dtype. */
    float fax[1] = {0};
    int64_t ad[1] = {1};
    ib_tensor fa = ten(IB_DTYPE_FLOAT32, 1, ad, fax);
    const ib_tensor *in3[2] = {&x, &fa};
    ib__node n3 = node_of(IB_OP_REDUCE_SUM, 13, NULL, 0);
    CHECK_EQ_INT(run_node(&n3, 2, in3, 1, y), IB_ERR_INVALID_MODEL);
}

TEST(argmax_argmin) {
    float v[6] = {3, 1, 3, 0, 5, 5}; /* [[3,1,3],[0,5,5]] */
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 2, k_d23, v);
    const ib_tensor *in[1] = {&x};
    ib_tensor y[1];
    ib__attr at[] = {a_int("axis", 1), a_int("keepdims", 0)};
    ib__node n = node_of(IB_OP_ARG_MAX, 13, at, 2);
    CHECK_EQ_INT(run_node(&n, 1, in, 1, y), IB_OK);
    check_i64(&y[0], (const int64_t[]){0, 1}, 2);
    release(1, y);
    ib__attr at2[] = {a_int("axis", 1), a_int("select_last_index", 1)};
    ib__node n2 = node_of(IB_OP_ARG_MAX, 13, at2, 2);
    CHECK_EQ_INT(run_node(&n2, 1, in, 1, y), IB_OK);
    CHECK_EQ_INT(y[0].rank, 2);
    check_i64(&y[0], (const int64_t[]){2, 2}, 2);
    release(1, y);
    ib__node n3 = node_of(IB_OP_ARG_MIN, 13, NULL, 0); /* axis 0 */
    CHECK_EQ_INT(run_node(&n3, 1, in, 1, y), IB_OK);
    check_i64(&y[0], (const int64_t[]){1, 0, 0}, 3);
    release(1, y);
    ib__attr bad[] = {a_int("axis", 5)};
    ib__node n4 = node_of(IB_OP_ARG_MIN, 13, bad, 1);
    CHECK_EQ_INT(run_node(&n4, 1, in, 1, y), IB_ERR_INVALID_MODEL);
}

TEST(topk) {
    float v[6] = {1, 3, 3, 2, 0, 2};
    int64_t d[1] = {6}, k[1] = {3}, kd[1] = {1};
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 1, d, v), kt = ten(IB_DTYPE_INT64, 1, kd, k);
    const ib_tensor *in[2] = {&x, &kt};
    ib_tensor y[2];
    ib__node n = node_of(IB_OP_TOP_K, 11, NULL, 0);
    CHECK_EQ_INT(run_node(&n, 2, in, 2, y), IB_OK);
    check_floats(&y[0], (const float[]){3, 3, 2}, 3, 0);
    check_i64(&y[1], (const int64_t[]){1, 2, 3}, 3); /* ties: lower index first */
    release(2, y);
    ib__attr at[] = {a_int("largest", 0)};
    ib__node n2 = node_of(IB_OP_TOP_K, 11, at, 1);
    CHECK_EQ_INT(run_node(&n2, 2, in, 2, y), IB_OK);
    check_floats(&y[0], (const float[]){0, 1, 2}, 3, 0);
    check_i64(&y[1], (const int64_t[]){4, 0, 3}, 3);
    release(2, y);
    k[0] = 7;
    CHECK_EQ_INT(run_node(&n, 2, in, 2, y), IB_ERR_SHAPE);
    k[0] = -1;
    CHECK_EQ_INT(run_node(&n, 2, in, 2, y), IB_ERR_INVALID_MODEL);
}

TEST(cumsum) {
    double v[4] = {1, 2, 3, 4};
    int64_t d[1] = {4};
    int32_t axis = 0;
    ib_tensor x = ten(IB_DTYPE_FLOAT64, 1, d, v), a = ten(IB_DTYPE_INT32, 0, NULL, &axis);
    const ib_tensor *in[2] = {&x, &a};
    ib_tensor y[1];
    ib__node n = node_of(IB_OP_CUM_SUM, 14, NULL, 0);
    CHECK_EQ_INT(run_node(&n, 2, in, 1, y), IB_OK);
    const double want[4] = {1, 3, 6, 10};
    for (int i = 0; i < 4; i++) CHECK_NEAR(((double *)y[0].data)[i], want[i], 0);
    release(1, y);
    ib__attr at[] = {a_int("exclusive", 1), a_int("reverse", 1)};
    ib__node n2 = node_of(IB_OP_CUM_SUM, 14, at, 2);
    CHECK_EQ_INT(run_node(&n2, 2, in, 1, y), IB_OK);
    const double want2[4] = {9, 7, 4, 0};
    for (int i = 0; i < 4; i++) CHECK_NEAR(((double *)y[0].data)[i], want2[i], 0);
    release(1, y);
    axis = 1;
    CHECK_EQ_INT(run_node(&n, 2, in, 1, y), IB_ERR_INVALID_MODEL);
}

TEST(det) {
    float m[2 * 9] = {1, 2, 3, 4, 5, 6, 7, 8, 10, /* det -3 */
                      0, 1, 0, 1, 0, 0, 0, 0, 1}; /* a row swap: det -1 */
    int64_t d[3] = {2, 3, 3};
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 3, d, m);
    const ib_tensor *in[1] = {&x};
    ib_tensor y[1];
    ib__node n = node_of(IB_OP_DET, 11, NULL, 0);
    CHECK_EQ_INT(run_node(&n, 1, in, 1, y), IB_OK);
    CHECK_EQ_INT(y[0].rank, 1);
    check_floats(&y[0], (const float[]){-3, -1}, 2, 1e-5);
    release(1, y);
    int64_t bd[2] = {2, 3};
    ib_tensor xb = ten(IB_DTYPE_FLOAT32, 2, bd, m);
    const ib_tensor *inb[1] = {&xb};
    CHECK_EQ_INT(run_node(&n, 1, inb, 1, y), IB_ERR_SHAPE);
}

/* ---- Losses ------------------------------------------------------------------------- */

TEST(nll_and_sce) {
    /* N=2, C=3 log-probabilities; targets 2 and 0; weights 1, 2, 3. */
    float lp[6] = {-1, -2, -3, -4, -5, -6};
    int64_t xd[2] = {2, 3}, td[1] = {2}, wd[1] = {3};
    int64_t tgt[2] = {2, 0};
    float w[3] = {1, 2, 3};
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 2, xd, lp), t = ten(IB_DTYPE_INT64, 1, td, tgt);
    ib_tensor wt = ten(IB_DTYPE_FLOAT32, 1, wd, w);
    const ib_tensor *in[3] = {&x, &t, &wt};
    ib_tensor y[2];
    ib__attr none[] = {a_str("reduction", "none")};
    ib__node n = node_of(IB_OP_NEGATIVE_LOG_LIKELIHOOD_LOSS, 13, none, 1);
    CHECK_EQ_INT(run_node(&n, 3, in, 1, y), IB_OK);
    check_floats(&y[0], (const float[]){9, 4}, 2, 1e-6); /* 3*3, 1*4 */
    release(1, y);
    ib__node nm = node_of(IB_OP_NEGATIVE_LOG_LIKELIHOOD_LOSS, 13, NULL, 0); /* mean */
    CHECK_EQ_INT(run_node(&nm, 3, in, 1, y), IB_OK);
    CHECK_EQ_INT(y[0].rank, 0);
    check_floats(&y[0], (const float[]){13.0f / 4.0f}, 1, 1e-6);
    release(1, y);
    ib__attr ii[] = {a_int("ignore_index", 0)};
    ib__node ni = node_of(IB_OP_NEGATIVE_LOG_LIKELIHOOD_LOSS, 13, ii, 1);
    CHECK_EQ_INT(run_node(&ni, 3, in, 1, y), IB_OK);
    check_floats(&y[0], (const float[]){3.0f}, 1, 1e-6); /* 9 / 3 */
    release(1, y);
    /* SCE on uniform scores: loss log(3) each, log_prob -log(3) everywhere. */
    float sc[6] = {7, 7, 7, 1, 1, 1};
    ib_tensor s = ten(IB_DTYPE_FLOAT32, 2, xd, sc);
    const ib_tensor *in2[2] = {&s, &t};
    ib__attr sum[] = {a_str("reduction", "sum")};
    ib__node ns = node_of(IB_OP_SOFTMAX_CROSS_ENTROPY_LOSS, 13, sum, 1);
    CHECK_EQ_INT(run_node(&ns, 2, in2, 2, y), IB_OK);
    check_floats(&y[0], (const float[]){(float)(2 * log(3.0))}, 1, 1e-5);
    for (int i = 0; i < 6; i++) CHECK_NEAR(((float *)y[1].data)[i], -log(3.0), 1e-5);
    release(2, y);
    /* A label outside [0, C) is an error, not a read out of bounds. */
    tgt[1] = 3;
    CHECK_EQ_INT(run_node(&n, 3, in, 1, y), IB_ERR_INVALID_ARGUMENT);
    /* Target shape that does not match the input. */
    int64_t td3[1] = {1};
    ib_tensor t3 = ten(IB_DTYPE_INT64, 1, td3, tgt);
    const ib_tensor *in3[2] = {&x, &t3};
    CHECK_EQ_INT(run_node(&n, 2, in3, 1, y), IB_ERR_SHAPE);
}

/* ---- Recurrent layers --------------------------------------------------------------- */

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

TEST(rnn_gru_lstm_scalar) {
    /* seq 2, batch 1, input 1, hidden 1. */
    float xv[2] = {1, 2};
    int64_t xd[3] = {2, 1, 1};
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 3, xd, xv);
    ib_tensor y[3];
    {
        float w[1] = {1}, r[1] = {0.5f};
        int64_t wd[3] = {1, 1, 1};
        ib_tensor tw = ten(IB_DTYPE_FLOAT32, 3, wd, w), tr = ten(IB_DTYPE_FLOAT32, 3, wd, r);
        const ib_tensor *in[3] = {&x, &tw, &tr};
        ib__attr at[] = {a_int("hidden_size", 1)};
        ib__node n = node_of(IB_OP_RNN, 14, at, 1);
        CHECK_EQ_INT(run_node(&n, 3, in, 2, y), IB_OK);
        double h1 = tanh(1.0), h2 = tanh(2.0 + 0.5 * h1);
        check_floats(&y[0], (const float[]){(float)h1, (float)h2}, 2, 1e-6);
        check_floats(&y[1], (const float[]){(float)h2}, 1, 1e-6);
        release(2, y);
        /* Reverse: starts from the last step. */
        ib__attr at2[] = {a_int("hidden_size", 1), a_str("direction", "reverse")};
        ib__node n2 = node_of(IB_OP_RNN, 14, at2, 2);
        CHECK_EQ_INT(run_node(&n2, 3, in, 2, y), IB_OK);
        double g2 = tanh(2.0), g1 = tanh(1.0 + 0.5 * g2);
        check_floats(&y[0], (const float[]){(float)g1, (float)g2}, 2, 1e-6);
        release(2, y);
    }
    {
        /* GRU gates z, r, h with W = [0.5, -1, 1], R = [0.25, 0.5, 2]. */
        float w[3] = {0.5f, -1, 1}, r[3] = {0.25f, 0.5f, 2};
        int64_t wd[3] = {1, 3, 1};
        ib_tensor tw = ten(IB_DTYPE_FLOAT32, 3, wd, w), tr = ten(IB_DTYPE_FLOAT32, 3, wd, r);
        const ib_tensor *in[3] = {&x, &tw, &tr};
        for (int lbr = 0; lbr < 2; lbr++) {
            ib__attr at[] = {a_int("hidden_size", 1), a_int("linear_before_reset", lbr)};
            ib__node n = node_of(IB_OP_GRU, 14, at, 2);
            CHECK_EQ_INT(run_node(&n, 3, in, 2, y), IB_OK);
            double h = 0, want[2];
            for (int t = 0; t < 2; t++) {
                double z = sigm(0.5 * xv[t] + 0.25 * h), rr = sigm(-1 * xv[t] + 0.5 * h);
                double hh = tanh(xv[t] + (lbr ? rr * (2 * h) : 2 * (rr * h)));
                h = (1 - z) * hh + z * h;
                want[t] = h;
            }
            check_floats(&y[0], (const float[]){(float)want[0], (float)want[1]}, 2, 1e-6);
            release(2, y);
        }
    }
    {
        /* LSTM gates i, o, f, c; with peepholes P = [pi, po, pf] and an initial cell. */
        float w[4] = {0.5f, -0.5f, 1, 2}, r[4] = {0.1f, 0.2f, 0.3f, 0.4f};
        float p[3] = {0.3f, -0.2f, 0.1f}, c0[1] = {0.7f};
        int64_t wd[3] = {1, 4, 1}, pd[2] = {1, 3}, cd[3] = {1, 1, 1};
        ib_tensor tw = ten(IB_DTYPE_FLOAT32, 3, wd, w), tr = ten(IB_DTYPE_FLOAT32, 3, wd, r);
        ib_tensor tp = ten(IB_DTYPE_FLOAT32, 2, pd, p), tc = ten(IB_DTYPE_FLOAT32, 3, cd, c0);
        const ib_tensor *in[8] = {&x, &tw, &tr, NULL, NULL, NULL, &tc, &tp};
        ib__attr at[] = {a_int("hidden_size", 1)};
        ib__node n = node_of(IB_OP_LSTM, 14, at, 1);
        CHECK_EQ_INT(run_node(&n, 8, in, 3, y), IB_OK);
        double h = 0, c = c0[0], want[2];
        for (int t = 0; t < 2; t++) {
            double gi = sigm(w[0] * xv[t] + r[0] * h + p[0] * c);
            double gf = sigm(w[2] * xv[t] + r[2] * h + p[2] * c);
            double gc = tanh(w[3] * xv[t] + r[3] * h);
            c = gf * c + gi * gc;
            double go = sigm(w[1] * xv[t] + r[1] * h + p[1] * c);
            h = go * tanh(c);
            want[t] = h;
        }
        check_floats(&y[0], (const float[]){(float)want[0], (float)want[1]}, 2, 1e-6);
        check_floats(&y[2], (const float[]){(float)c}, 1, 1e-6);
        release(3, y);
        /* W with the wrong gate count. */
        int64_t bad[3] = {1, 3, 1};
        ib_tensor tb = ten(IB_DTYPE_FLOAT32, 3, bad, w);
        const ib_tensor *inb[3] = {&x, &tb, &tr};
        CHECK(run_node(&n, 3, inb, 3, y) == IB_ERR_SHAPE);
    }
}

TEST(rnn_sequence_lens_and_layout) {
    /* batch 2, seq 2 in layout 1; batch 1 has length 1: its second step stays zero. */
    float xv[4] = {1, 2, 3, 4}; /* [batch][seq][1] */
    int64_t xd[3] = {2, 2, 1}, wd[3] = {1, 1, 1}, sd[1] = {2};
    float w[1] = {1}, r[1] = {1};
    int32_t lens[2] = {2, 1};
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 3, xd, xv), tw = ten(IB_DTYPE_FLOAT32, 3, wd, w);
    ib_tensor tr = ten(IB_DTYPE_FLOAT32, 3, wd, r), sl = ten(IB_DTYPE_INT32, 1, sd, lens);
    const ib_tensor *in[5] = {&x, &tw, &tr, NULL, &sl};
    ib__attr at[] = {a_int("hidden_size", 1), a_int("layout", 1)};
    ib__node n = node_of(IB_OP_RNN, 14, at, 2);
    ib_tensor y[2];
    CHECK_EQ_INT(run_node(&n, 5, in, 2, y), IB_OK);
    CHECK_EQ_INT(y[0].shape[0], 2); /* [batch, seq, dirs, hidden] */
    CHECK_EQ_INT(y[0].shape[1], 2);
    double a1 = tanh(1.0), a2 = tanh(2.0 + a1), b1 = tanh(3.0);
    check_floats(&y[0], (const float[]){(float)a1, (float)a2, (float)b1, 0}, 4, 1e-6);
    check_floats(&y[1], (const float[]){(float)a2, (float)b1}, 2, 1e-6);
    release(2, y);
    lens[1] = 3; /* longer than the sequence */
    CHECK_EQ_INT(run_node(&n, 5, in, 2, y), IB_ERR_INVALID_ARGUMENT);
}

/* A bidirectional GRU on a batch of 3 (threaded) equals three runs on one entry each. */
TEST(gru_bidirectional_batch_threads) {
    enum { S = 4, B = 3, I = 2, HS = 3 };
    float xv[S * B * I], w[2 * 3 * HS * I], r[2 * 3 * HS * HS], bias[2 * 6 * HS];
    for (int i = 0; i < S * B * I; i++) xv[i] = (float)sin(i * 0.9);
    for (int i = 0; i < 2 * 3 * HS * I; i++) w[i] = (float)cos(i * 0.31);
    for (int i = 0; i < 2 * 3 * HS * HS; i++) r[i] = (float)sin(i * 0.57) * 0.5f;
    for (int i = 0; i < 2 * 6 * HS; i++) bias[i] = (float)cos(i * 1.3) * 0.2f;
    int64_t xd[3] = {S, B, I}, wd[3] = {2, 3 * HS, I}, rd[3] = {2, 3 * HS, HS}, bd[2] = {2, 6 * HS};
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 3, xd, xv), tw = ten(IB_DTYPE_FLOAT32, 3, wd, w);
    ib_tensor tr = ten(IB_DTYPE_FLOAT32, 3, rd, r), tb = ten(IB_DTYPE_FLOAT32, 2, bd, bias);
    const ib_tensor *in[4] = {&x, &tw, &tr, &tb};
    ib__attr at[] = {a_int("hidden_size", HS), a_str("direction", "bidirectional")};
    ib__node n = node_of(IB_OP_GRU, 14, at, 2);
    ib_tensor y[2];
    CHECK(ib__pool_create(2, &g_pool) == IB_OK);
    CHECK_EQ_INT(run_node(&n, 4, in, 2, y), IB_OK);
    ib__pool_destroy(g_pool);
    g_pool = NULL;
    CHECK_EQ_INT(y[0].shape[1], 2);
    for (int b = 0; b < B; b++) {
        float xb[S * I];
        for (int t = 0; t < S; t++)
            for (int i = 0; i < I; i++) xb[t * I + i] = xv[(t * B + b) * I + i];
        int64_t xbd[3] = {S, 1, I};
        ib_tensor x1 = ten(IB_DTYPE_FLOAT32, 3, xbd, xb);
        const ib_tensor *in1[4] = {&x1, &tw, &tr, &tb};
        ib_tensor y1[2];
        CHECK_EQ_INT(run_node(&n, 4, in1, 2, y1), IB_OK);
        for (int t = 0; t < S; t++)
            for (int d = 0; d < 2; d++)
                for (int k = 0; k < HS; k++)
                    CHECK_NEAR(((float *)y[0].data)[((t * 2 + d) * B + b) * HS + k],
                               ((float *)y1[0].data)[(t * 2 + d) * HS + k], 1e-6);
        release(2, y1);
    }
    release(2, y);
}

/* ---- Signal ------------------------------------------------------------------------- */

TEST(dft_and_windows) {
    float xv[4] = {1, 2, 3, 4};
    int64_t xd[3] = {1, 4, 1};
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 3, xd, xv);
    const ib_tensor *in[1] = {&x};
    ib_tensor y[1];
    ib__node n = node_of(IB_OP_DFT, 17, NULL, 0);
    CHECK_EQ_INT(run_node(&n, 1, in, 1, y), IB_OK);
    check_floats(&y[0], (const float[]){10, 0, -2, 2, -2, 0, -2, -2}, 8, 1e-5);
    release(1, y);
    ib__attr one[] = {a_int("onesided", 1)};
    ib__node n1 = node_of(IB_OP_DFT, 17, one, 1);
    CHECK_EQ_INT(run_node(&n1, 1, in, 1, y), IB_OK);
    CHECK_EQ_INT(y[0].shape[1], 3);
    release(1, y);
    /* Length 3 (not a power of two) round trip through the inverse. */
    float cv[6] = {1, 0, 2, 1, -1, 3};
    int64_t cd[3] = {1, 3, 2};
    ib_tensor xc = ten(IB_DTYPE_FLOAT32, 3, cd, cv);
    const ib_tensor *inc[1] = {&xc};
    CHECK_EQ_INT(run_node(&n, 1, inc, 1, y), IB_OK);
    ib__attr inv[] = {a_int("inverse", 1)};
    ib__node ni = node_of(IB_OP_DFT, 17, inv, 1);
    const ib_tensor *in2[1] = {&y[0]};
    ib_tensor z[1];
    CHECK_EQ_INT(run_node(&ni, 1, in2, 1, z), IB_OK);
    check_floats(&z[0], cv, 6, 1e-5);
    release(1, z);
    release(1, y);
    /* A long length that is not a power of two (Bluestein) against the direct sum. */
    enum { L = 45 };
    float lv[L * 2];
    for (int i = 0; i < L * 2; i++) lv[i] = (float)sin(0.37 * i * i + 1.0);
    int64_t ld[3] = {1, L, 2};
    ib_tensor xl = ten(IB_DTYPE_FLOAT32, 3, ld, lv);
    const ib_tensor *inl[1] = {&xl};
    CHECK_EQ_INT(run_node(&n, 1, inl, 1, y), IB_OK);
    for (int k = 0; k < L; k++) {
        double sr = 0, si = 0;
        for (int t = 0; t < L; t++) {
            double ang = -2.0 * 3.14159265358979323846 * (double)((k * t) % L) / L;
            sr += lv[2 * t] * cos(ang) - lv[2 * t + 1] * sin(ang);
            si += lv[2 * t] * sin(ang) + lv[2 * t + 1] * cos(ang);
        }
        CHECK_NEAR(((float *)y[0].data)[2 * k], sr, 1e-4);
        CHECK_NEAR(((float *)y[0].data)[2 * k + 1], si, 1e-4);
    }
    release(1, y);
    ib__attr badax[] = {a_int("axis", 2)}; /* the complex dim */
    ib__node nb = node_of(IB_OP_DFT, 17, badax, 1);
    CHECK_EQ_INT(run_node(&nb, 1, in, 1, y), IB_ERR_INVALID_MODEL);

    int32_t size = 4;
    ib_tensor s = ten(IB_DTYPE_INT32, 0, NULL, &size);
    const ib_tensor *ins[1] = {&s};
    ib__node nh = node_of(IB_OP_HANN_WINDOW, 17, NULL, 0);
    CHECK_EQ_INT(run_node(&nh, 1, ins, 1, y), IB_OK);
    check_floats(&y[0], (const float[]){0, 0.5f, 1, 0.5f}, 4, 1e-6);
    release(1, y);
    size = -2;
    CHECK_EQ_INT(run_node(&nh, 1, ins, 1, y), IB_ERR_INVALID_MODEL);
}

/* ---- Detection ---------------------------------------------------------------------- */

TEST(nms) {
    /* Three boxes [y1, x1, y2, x2]: 0 and 1 overlap heavily, 2 is apart. */
    float boxes[12] = {0, 0, 1, 1, 0, 0.1f, 1, 1.1f, 0, 5, 1, 6};
    float scores[3] = {0.9f, 0.95f, 0.3f};
    int64_t bd[3] = {1, 3, 4}, sd[3] = {1, 1, 3}, one[1] = {1};
    int64_t max_out[1] = {10};
    float iou[1] = {0.5f}, thr[1] = {0.0f};
    ib_tensor tb = ten(IB_DTYPE_FLOAT32, 3, bd, boxes), ts = ten(IB_DTYPE_FLOAT32, 3, sd, scores);
    ib_tensor tm = ten(IB_DTYPE_INT64, 1, one, max_out), ti = ten(IB_DTYPE_FLOAT32, 1, one, iou);
    ib_tensor tt = ten(IB_DTYPE_FLOAT32, 1, one, thr);
    const ib_tensor *in[5] = {&tb, &ts, &tm, &ti, &tt};
    ib__node n = node_of(IB_OP_NON_MAX_SUPPRESSION, 11, NULL, 0);
    ib_tensor y[1];
    CHECK_EQ_INT(run_node(&n, 5, in, 1, y), IB_OK);
    CHECK_EQ_INT(y[0].shape[0], 2);
    check_i64(&y[0], (const int64_t[]){0, 0, 1, 0, 0, 2}, 6);
    release(1, y);
    thr[0] = 0.5f; /* drops box 2 */
    CHECK_EQ_INT(run_node(&n, 5, in, 1, y), IB_OK);
    check_i64(&y[0], (const int64_t[]){0, 0, 1}, 3);
    release(1, y);
    int64_t bad[3] = {1, 4, 3};
    ib_tensor tbad = ten(IB_DTYPE_FLOAT32, 3, bad, boxes);
    const ib_tensor *inb[5] = {&tbad, &ts, &tm, &ti, &tt};
    CHECK_EQ_INT(run_node(&n, 5, inb, 1, y), IB_ERR_SHAPE);
}

TEST(roi_align) {
    /* A constant feature map: every average is that constant. */
    float xv[16];
    for (int i = 0; i < 16; i++) xv[i] = 2.5f;
    float rois[4] = {0.5f, 0.5f, 3, 2.5f};
    int64_t batch_idx[1] = {0};
    int64_t xd[4] = {1, 1, 4, 4}, rd[2] = {1, 4}, id[1] = {1};
    ib_tensor x = ten(IB_DTYPE_FLOAT32, 4, xd, xv), tr = ten(IB_DTYPE_FLOAT32, 2, rd, rois);
    ib_tensor ti = ten(IB_DTYPE_INT64, 1, id, batch_idx);
    const ib_tensor *in[3] = {&x, &tr, &ti};
    ib__attr at[] = {a_int("output_height", 2), a_int("output_width", 3),
                     a_int("sampling_ratio", 2), a_float("spatial_scale", 1.0f)};
    ib__node n = node_of(IB_OP_ROI_ALIGN, 16, at, 4);
    ib_tensor y[1];
    CHECK_EQ_INT(run_node(&n, 3, in, 1, y), IB_OK);
    CHECK_EQ_INT(y[0].shape[2], 2);
    CHECK_EQ_INT(y[0].shape[3], 3);
    for (int i = 0; i < 6; i++) CHECK_NEAR(((float *)y[0].data)[i], 2.5, 1e-6);
    release(1, y);
    batch_idx[0] = 1;
    CHECK_EQ_INT(run_node(&n, 3, in, 1, y), IB_ERR_INVALID_ARGUMENT);
}

int main(void) {
    RUN(reduce_sum_axes_input);
    RUN(reduce_kinds_attr_axes);
    RUN(reduce_int_and_strided);
    RUN(reduce_fast_paths_match_generic);
    RUN(reduce_load_time_unknown_axes);
    RUN(reduce_bad_axes);
    RUN(argmax_argmin);
    RUN(topk);
    RUN(cumsum);
    RUN(det);
    RUN(nll_and_sce);
    RUN(rnn_gru_lstm_scalar);
    RUN(rnn_sequence_lens_and_layout);
    RUN(gru_bidirectional_batch_threads);
    RUN(dft_and_windows);
    RUN(nms);
    RUN(roi_align);
    TEST_SUMMARY();
}
