/* Unit tests of the data-movement families (tensor_shape.c, indexing.c, resize.c): each
 * op's infer and run called directly on small tensors, checked against values worked by
 * hand, plus bad inputs that must fail with a status instead of crashing. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ops/ops.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------------------ */

static ib__attr a_int(const char *name, int64_t v) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_INT;
    a.i = v;
    return a;
}

static ib__attr a_ints(const char *name, int64_t *v, int32_t n) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_INTS;
    a.ints = v;
    a.count = n;
    return a;
}

static ib__attr a_str(const char *name, const char *s) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_STRING;
    a.s = s;
    a.s_len = strlen(s);
    return a;
}

static ib__attr a_tensor(const char *name, ib_tensor *t) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_TENSOR;
    a.t = t;
    return a;
}

static ib__node node_of(ib__op_id op, int32_t opset, ib__attr *attrs, int32_t n_attrs) {
    ib__node n;
    memset(&n, 0, sizeof n);
    n.name = "t";
    n.op_type = ib__op_name(op);
    n.domain = "";
    n.op = op;
    n.opset = opset;
    n.attrs = attrs;
    n.n_attrs = n_attrs;
    return n;
}

static ib_tensor tens(ib_dtype dt, int32_t rank, const int64_t *dims, void *data) {
    ib_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = rank;
    for (int32_t d = 0; d < rank; d++) t.shape[d] = dims[d];
    t.data = data;
    t.nbytes = (size_t)ib_tensor_element_count(&t) * ib_dtype_size(dt);
    return t;
}

static void value_of(ib__value *v, const ib_tensor *t, bool with_data) {
    memset(v, 0, sizeof *v);
    v->name = "in";
    v->dtype = t->dtype;
    v->rank = t->rank;
    for (int32_t d = 0; d < IB_MAX_RANK; d++) v->dims[d] = d < t->rank ? t->shape[d] : -1;
    v->constant = with_data ? t : NULL;
}

enum { MAXIO = 8 };

/* Infers (every input known, as at run time), allocates outputs from what infer set and
 * runs. in[i] may be NULL for an omitted optional input. Outputs must be released. */
static ib_status run_op(const ib__node *node, int32_t n_in, const ib_tensor *const *in,
                        int32_t n_out, ib_tensor *out) {
    ib__value vals[MAXIO], ovals[MAXIO];
    const ib__value *vp[MAXIO];
    ib__value *op[MAXIO];
    for (int32_t i = 0; i < n_in; i++) {
        vp[i] = NULL;
        if (!in[i]) continue;
        value_of(&vals[i], in[i], true);
        vp[i] = &vals[i];
    }
    for (int32_t o = 0; o < n_out; o++) {
        memset(&ovals[o], 0, sizeof ovals[o]);
        ovals[o].rank = -1;
        op[o] = &ovals[o];
        memset(&out[o], 0, sizeof out[o]);
    }
    const ib__op_def *def = ib__op_get(node->op);
    if (!def) return IB_ERR_UNSUPPORTED;
    ib__infer_ctx ic = {node, node->opset, n_in, vp, n_out, op};
    IB_TRY(def->infer(&ic));
    ib_tensor *outs[MAXIO];
    for (int32_t o = 0; o < n_out; o++) {
        IB_TRY(ib__tensor_alloc(&out[o], ovals[o].dtype, ovals[o].rank, ovals[o].dims));
        outs[o] = &out[o];
    }
    ib__run_ctx rc = {node, node->opset, n_in, in, n_out, outs, NULL, NULL};
    ib_status st = def->run(&rc);
    if (st)
        for (int32_t o = 0; o < n_out; o++) ib_tensor_release(&out[o]);
    return st;
}

/* Load-time inference on values whose data may be missing. */
static ib_status infer_values(const ib__node *node, int32_t n_in, const ib__value *const *in,
                              int32_t n_out, ib__value *out) {
    ib__value *op[MAXIO];
    for (int32_t o = 0; o < n_out; o++) {
        memset(&out[o], 0, sizeof out[o]);
        out[o].rank = -1;
        op[o] = &out[o];
    }
    ib__infer_ctx ic = {node, node->opset, n_in, in, n_out, op};
    return ib__op_get(node->op)->infer(&ic);
}

static bool shape_is(const ib_tensor *t, int32_t rank, const int64_t *dims) {
    if (t->rank != rank) return false;
    for (int32_t d = 0; d < rank; d++)
        if (t->shape[d] != dims[d]) return false;
    return true;
}

static bool floats_are(const ib_tensor *t, const float *want, int64_t n, float tol) {
    if (t->dtype != IB_DTYPE_FLOAT32 || ib_tensor_element_count(t) != n) return false;
    for (int64_t i = 0; i < n; i++)
        if (!(fabsf(((const float *)t->data)[i] - want[i]) <= tol)) {
            fprintf(stderr, "  element %lld: %g vs %g\n", (long long)i,
                    ((const float *)t->data)[i], want[i]);
            return false;
        }
    return true;
}

static bool ints_are(const ib_tensor *t, const int64_t *want, int64_t n) {
    if (ib_tensor_element_count(t) != n) return false;
    for (int64_t i = 0; i < n; i++)
        if (ib__load_i64(t->data, t->dtype, i) != want[i]) {
            fprintf(stderr, "  element %lld: %lld vs %lld\n", (long long)i,
                    (long long)ib__load_i64(t->data, t->dtype, i), (long long)want[i]);
            return false;
        }
    return true;
}

static float iota_f[64];

/* ---- tensor_shape ------------------------------------------------------------------- */

TEST(reshape_zero_and_minus_one) {
    int64_t xd[3] = {2, 3, 4}, sd[1] = {3}, shape[3] = {4, 0, -1};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 3, xd, iota_f), s = tens(IB_DTYPE_INT64, 1, sd, shape);
    const ib_tensor *in[2] = {&x, &s};
    ib__node n = node_of(IB_OP_RESHAPE, 14, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_OK);
    int64_t want[3] = {4, 3, 2};
    CHECK(shape_is(&y, 3, want));
    CHECK(floats_are(&y, iota_f, 24, 0));
    ib_tensor_release(&y);
    int64_t bad[3] = {-1, -1, 2}; /* two -1 */
    s.data = bad;
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_ERR_SHAPE);
    int64_t bad2[3] = {5, 5, 1}; /* 25 != 24 */
    s.data = bad2;
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_ERR_SHAPE);
}

TEST(reshape_unknown_shape_keeps_rank) {
    int64_t xd[2] = {2, 6}, sd[1] = {3};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 2, xd, NULL), s = tens(IB_DTYPE_INT64, 1, sd, NULL);
    ib__value xv, sv, out;
    value_of(&xv, &x, false);
    value_of(&sv, &s, false);
    const ib__value *in[2] = {&xv, &sv};
    ib__node n = node_of(IB_OP_RESHAPE, 14, NULL, 0);
    CHECK_EQ_INT(infer_values(&n, 2, in, 1, &out), IB_OK);
    CHECK_EQ_INT(out.rank, 3);
    CHECK_EQ_INT(out.dims[0], -1);
    CHECK_EQ_INT(out.dtype, IB_DTYPE_FLOAT32);
}

TEST(transpose_and_expand_and_tile) {
    int64_t xd[2] = {2, 3};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 2, xd, iota_f);
    const ib_tensor *in1[1] = {&x};
    ib__node n = node_of(IB_OP_TRANSPOSE, 13, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 1, in1, 1, &y), IB_OK);
    float tw[6] = {0, 3, 1, 4, 2, 5};
    CHECK(floats_are(&y, tw, 6, 0));
    ib_tensor_release(&y);
    int64_t perm[2] = {0, 0};
    ib__attr pa = a_ints("perm", perm, 2);
    ib__node bad = node_of(IB_OP_TRANSPOSE, 13, &pa, 1);
    CHECK_EQ_INT(run_op(&bad, 1, in1, 1, &y), IB_ERR_INVALID_MODEL);

    int64_t cd[2] = {3, 1}, sd[1] = {3}, shape[3] = {2, 1, 2};
    ib_tensor col = tens(IB_DTYPE_FLOAT32, 2, cd, iota_f), s = tens(IB_DTYPE_INT64, 1, sd, shape);
    const ib_tensor *in2[2] = {&col, &s};
    ib__node e = node_of(IB_OP_EXPAND, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&e, 2, in2, 1, &y), IB_OK);
    int64_t ew[3] = {2, 3, 2};
    CHECK(shape_is(&y, 3, ew));
    float ev[12] = {0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2};
    CHECK(floats_are(&y, ev, 12, 0));
    ib_tensor_release(&y);
    int64_t badshape[2] = {2, 4}; /* 3 cannot become 2 */
    s = tens(IB_DTYPE_INT64, 1, (int64_t[]){2}, badshape);
    CHECK_EQ_INT(run_op(&e, 2, in2, 1, &y), IB_ERR_SHAPE);

    int64_t rd[1] = {2}, reps[2] = {2, 1};
    ib_tensor r = tens(IB_DTYPE_INT64, 1, rd, reps);
    const ib_tensor *in3[2] = {&x, &r};
    ib__node t = node_of(IB_OP_TILE, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&t, 2, in3, 1, &y), IB_OK);
    float tv[12] = {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5};
    CHECK(floats_are(&y, tv, 12, 0));
    ib_tensor_release(&y);
}

/* Transpose against a naive index walk on many shapes, perms and element sizes: covers
 * the merged-dim, row-copy and tiled paths. */
TEST(transpose_random_vs_naive) {
    uint32_t seed = 12345;
    static const ib_dtype dts[4] = {IB_DTYPE_UINT8, IB_DTYPE_INT16, IB_DTYPE_FLOAT32,
                                    IB_DTYPE_INT64};
    for (int iter = 0; iter < 60; iter++) {
        seed = seed * 1103515245u + 12345u;
        int32_t r = 1 + (int32_t)((seed >> 16) % 5);
        int64_t dims[IB_MAX_RANK], perm[IB_MAX_RANK];
        for (int32_t d = 0; d < r; d++) {
            seed = seed * 1103515245u + 12345u;
            dims[d] = 1 + (seed >> 16) % (r <= 2 ? 70 : 9);
            perm[d] = d;
        }
        for (int32_t d = r - 1; d > 0; d--) { /* Fisher-Yates */
            seed = seed * 1103515245u + 12345u;
            int32_t k = (int32_t)((seed >> 16) % (uint32_t)(d + 1));
            int64_t t = perm[d];
            perm[d] = perm[k];
            perm[k] = t;
        }
        ib_dtype dt = dts[iter % 4];
        size_t es = ib_dtype_size(dt);
        ib_tensor x;
        CHECK_EQ_INT(ib__tensor_alloc(&x, dt, r, dims), IB_OK);
        int64_t n = ib_tensor_element_count(&x);
        for (int64_t i = 0; i < n; i++) ib__store_i64(x.data, dt, i, i % 251);
        ib__attr pa = a_ints("perm", perm, r);
        ib__node nd = node_of(IB_OP_TRANSPOSE, 13, &pa, 1);
        const ib_tensor *in[1] = {&x};
        ib_tensor y;
        CHECK_EQ_INT(run_op(&nd, 1, in, 1, &y), IB_OK);
        int64_t xs[IB_MAX_RANK], idx[IB_MAX_RANK] = {0};
        ib__strides(dims, r, xs);
        int bad = 0;
        for (int64_t i = 0; i < n && !bad; i++) {
            int64_t off = 0;
            for (int32_t d = 0; d < r; d++) off += idx[d] * xs[perm[d]];
            if (memcmp((char *)y.data + (size_t)i * es, (char *)x.data + (size_t)off * es, es))
                bad = 1;
            for (int32_t d = r - 1; d >= 0; d--) {
                if (++idx[d] < dims[perm[d]]) break;
                idx[d] = 0;
            }
        }
        CHECK(!bad);
        ib_tensor_release(&x);
        ib_tensor_release(&y);
    }
}

TEST(concat_split_squeeze) {
    int64_t ad[2] = {2, 1}, bd[2] = {2, 2};
    float av[2] = {9, 8};
    ib_tensor a = tens(IB_DTYPE_FLOAT32, 2, ad, av), b = tens(IB_DTYPE_FLOAT32, 2, bd, iota_f);
    const ib_tensor *in[2] = {&a, &b};
    ib__attr ax = a_int("axis", -1);
    ib__node n = node_of(IB_OP_CONCAT, 13, &ax, 1);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_OK);
    float w[6] = {9, 0, 1, 8, 2, 3};
    CHECK(floats_are(&y, w, 6, 0));
    ib_tensor_release(&y);
    int64_t cd[2] = {3, 1};
    ib_tensor bad = tens(IB_DTYPE_FLOAT32, 2, cd, iota_f);
    const ib_tensor *inb[2] = {&a, &bad};
    CHECK_EQ_INT(run_op(&n, 2, inb, 1, &y), IB_ERR_SHAPE);

    /* Split with a split input (opset 13), then an uneven equal split (error). */
    int64_t xd[1] = {5}, sd[1] = {2}, split[2] = {2, 3};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 1, xd, iota_f), s = tens(IB_DTYPE_INT64, 1, sd, split);
    const ib_tensor *sin[2] = {&x, &s};
    ib__node sp = node_of(IB_OP_SPLIT, 13, NULL, 0);
    ib_tensor ys[2];
    CHECK_EQ_INT(run_op(&sp, 2, sin, 2, ys), IB_OK);
    float w0[2] = {0, 1}, w1[3] = {2, 3, 4};
    CHECK(floats_are(&ys[0], w0, 2, 0));
    CHECK(floats_are(&ys[1], w1, 3, 0));
    ib_tensor_release(&ys[0]);
    ib_tensor_release(&ys[1]);
    CHECK_EQ_INT(run_op(&sp, 1, sin, 2, ys), IB_ERR_SHAPE);

    int64_t qd[3] = {1, 3, 1}, axes[1] = {-1}, axd[1] = {1};
    ib_tensor q = tens(IB_DTYPE_FLOAT32, 3, qd, iota_f), at = tens(IB_DTYPE_INT64, 1, axd, axes);
    const ib_tensor *qin[2] = {&q, &at};
    ib__node sq = node_of(IB_OP_SQUEEZE, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&sq, 2, qin, 1, &y), IB_OK);
    int64_t qw[2] = {1, 3};
    CHECK(shape_is(&y, 2, qw));
    ib_tensor_release(&y);
    axes[0] = 1; /* dim of size 3 */
    CHECK_EQ_INT(run_op(&sq, 2, qin, 1, &y), IB_ERR_SHAPE);
    int64_t uaxes[2] = {0, 4};
    ib__attr ua = a_ints("axes", uaxes, 2);
    ib__node us = node_of(IB_OP_UNSQUEEZE, 11, &ua, 1);
    CHECK_EQ_INT(run_op(&us, 1, qin, 1, &y), IB_OK);
    int64_t uw[5] = {1, 1, 3, 1, 1};
    CHECK(shape_is(&y, 5, uw));
    ib_tensor_release(&y);
}

TEST(constant_points_at_attribute) {
    float v[3] = {1, 2, 3};
    int64_t d[1] = {3};
    ib_tensor t = tens(IB_DTYPE_FLOAT32, 1, d, v);
    ib__attr a = a_tensor("value", &t);
    ib__node n = node_of(IB_OP_CONSTANT, 13, &a, 1);
    ib__value out;
    CHECK_EQ_INT(infer_values(&n, 0, NULL, 1, &out), IB_OK);
    CHECK(out.constant == &t);
    CHECK_EQ_INT(out.rank, 1);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 0, NULL, 1, &y), IB_OK);
    CHECK(floats_are(&y, v, 3, 0));
    ib_tensor_release(&y);
    ib__node none = node_of(IB_OP_CONSTANT, 13, NULL, 0);
    CHECK_EQ_INT(infer_values(&none, 0, NULL, 1, &out), IB_ERR_INVALID_MODEL);
}

TEST(range_shape_depth) {
    int32_t s = 10, l = 4, dl = -3;
    ib_tensor st = tens(IB_DTYPE_INT32, 0, NULL, &s), lt = tens(IB_DTYPE_INT32, 0, NULL, &l),
              dt = tens(IB_DTYPE_INT32, 0, NULL, &dl);
    const ib_tensor *in[3] = {&st, &lt, &dt};
    ib__node n = node_of(IB_OP_RANGE, 11, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 3, in, 1, &y), IB_OK);
    int64_t w[2] = {10, 7};
    CHECK(ints_are(&y, w, 2));
    ib_tensor_release(&y);
    dl = 0;
    CHECK_EQ_INT(run_op(&n, 3, in, 1, &y), IB_ERR_INVALID_MODEL);

    int64_t xd[3] = {3, 4, 5};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 3, xd, NULL);
    const ib_tensor *sin[1] = {&x};
    ib__attr sa[2] = {a_int("start", -2), a_int("end", 10)};
    ib__node sh = node_of(IB_OP_SHAPE, 15, sa, 2);
    CHECK_EQ_INT(run_op(&sh, 1, sin, 1, &y), IB_OK);
    int64_t sw[2] = {4, 5};
    CHECK(ints_are(&y, sw, 2));
    ib_tensor_release(&y);

    /* DepthToSpace CRD on [1, 4, 1, 1]: channel c*4 + i*2 + j lands at (i, j). */
    float dv[4] = {0, 1, 2, 3};
    int64_t dd[4] = {1, 4, 1, 1};
    ib_tensor dx = tens(IB_DTYPE_FLOAT32, 4, dd, dv);
    const ib_tensor *din[1] = {&dx};
    ib__attr da[2] = {a_int("blocksize", 2), a_str("mode", "CRD")};
    ib__node d2s = node_of(IB_OP_DEPTH_TO_SPACE, 13, da, 2);
    CHECK_EQ_INT(run_op(&d2s, 1, din, 1, &y), IB_OK);
    int64_t dw[4] = {1, 1, 2, 2};
    CHECK(shape_is(&y, 4, dw));
    CHECK(floats_are(&y, dv, 4, 0));
    ib_tensor_release(&y);
    ib__attr bad = a_int("blocksize", 3); /* 4 channels do not divide by 9 */
    ib__node d2 = node_of(IB_OP_DEPTH_TO_SPACE, 13, &bad, 1);
    CHECK_EQ_INT(run_op(&d2, 1, din, 1, &y), IB_ERR_SHAPE);
}

/* ---- indexing ----------------------------------------------------------------------- */

TEST(gather_bounds) {
    int64_t xd[2] = {3, 2}, id[1] = {2}, idx[2] = {-1, 0};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 2, xd, iota_f), i = tens(IB_DTYPE_INT64, 1, id, idx);
    const ib_tensor *in[2] = {&x, &i};
    ib__node n = node_of(IB_OP_GATHER, 13, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_OK);
    float w[4] = {4, 5, 0, 1};
    CHECK(floats_are(&y, w, 4, 0));
    ib_tensor_release(&y);
    idx[1] = 3;
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_ERR_INVALID_ARGUMENT);

    /* GatherND with batch_dims = 1 */
    int64_t nd[3] = {2, 2, 2}, nid[2] = {2, 1}, nidx[2] = {1, 0};
    ib_tensor nx = tens(IB_DTYPE_FLOAT32, 3, nd, iota_f), ni = tens(IB_DTYPE_INT64, 2, nid, nidx);
    const ib_tensor *nin[2] = {&nx, &ni};
    ib__attr bd = a_int("batch_dims", 1);
    ib__node g = node_of(IB_OP_GATHER_ND, 13, &bd, 1);
    CHECK_EQ_INT(run_op(&g, 2, nin, 1, &y), IB_OK);
    float gw[4] = {2, 3, 4, 5};
    CHECK(floats_are(&y, gw, 4, 0));
    ib_tensor_release(&y);
    nidx[0] = -3;
    CHECK_EQ_INT(run_op(&g, 2, nin, 1, &y), IB_ERR_INVALID_ARGUMENT);
}

TEST(scatter_family) {
    float data[4] = {1, 1, 1, 1}, upd[2] = {5, 7};
    int64_t dd[1] = {4}, id[2] = {2, 1}, idx[2] = {3, 3}, ud[1] = {2};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 1, dd, data), i = tens(IB_DTYPE_INT64, 2, id, idx),
              u = tens(IB_DTYPE_FLOAT32, 1, ud, upd);
    const ib_tensor *in[3] = {&x, &i, &u};
    ib__attr red = a_str("reduction", "add");
    ib__node n = node_of(IB_OP_SCATTER_ND, 16, &red, 1);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 3, in, 1, &y), IB_OK);
    float w[4] = {1, 1, 1, 13};
    CHECK(floats_are(&y, w, 4, 0));
    ib_tensor_release(&y);
    idx[0] = 4;
    CHECK_EQ_INT(run_op(&n, 3, in, 1, &y), IB_ERR_INVALID_ARGUMENT);

    int64_t ed[1] = {2}, eidx[2] = {0, -1};
    ib_tensor ei = tens(IB_DTYPE_INT64, 1, ed, eidx);
    const ib_tensor *ein[3] = {&x, &ei, &u};
    ib__node se = node_of(IB_OP_SCATTER_ELEMENTS, 16, NULL, 0);
    CHECK_EQ_INT(run_op(&se, 3, ein, 1, &y), IB_OK);
    float ew[4] = {5, 1, 1, 7};
    CHECK(floats_are(&y, ew, 4, 0));
    ib_tensor_release(&y);
    eidx[1] = 9;
    CHECK_EQ_INT(run_op(&se, 3, ein, 1, &y), IB_ERR_INVALID_ARGUMENT);
}

TEST(slice_negative_steps_and_clamping) {
    int64_t xd[2] = {3, 4}, one[1] = {1}, two[1] = {2};
    int64_t starts[2] = {INT64_MAX, 1}, ends[2] = {INT64_MIN, 1000}, axes[2] = {1, 0},
            steps[2] = {-2, 1};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 2, xd, iota_f);
    ib_tensor st = tens(IB_DTYPE_INT64, 1, two, starts), en = tens(IB_DTYPE_INT64, 1, two, ends),
              ax = tens(IB_DTYPE_INT64, 1, two, axes), sp = tens(IB_DTYPE_INT64, 1, two, steps);
    const ib_tensor *in[5] = {&x, &st, &en, &ax, &sp};
    ib__node n = node_of(IB_OP_SLICE, 13, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 5, in, 1, &y), IB_OK);
    int64_t ws[2] = {2, 2};
    CHECK(shape_is(&y, 2, ws));
    float w[4] = {7, 5, 11, 9};
    CHECK(floats_are(&y, w, 4, 0));
    ib_tensor_release(&y);
    steps[0] = 0;
    CHECK_EQ_INT(run_op(&n, 5, in, 1, &y), IB_ERR_INVALID_MODEL);
    steps[0] = 1;
    axes[1] = 1; /* repeated axis */
    CHECK_EQ_INT(run_op(&n, 5, in, 1, &y), IB_ERR_INVALID_MODEL);
    (void)one;
}

TEST(pad_modes) {
    int64_t xd[1] = {3}, pd[1] = {2};
    float xv[3] = {1, 2, 3};
    int64_t pads[2] = {2, 2};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 1, xd, xv), p = tens(IB_DTYPE_INT64, 1, pd, pads);
    const ib_tensor *in[2] = {&x, &p};
    ib__attr m = a_str("mode", "reflect");
    ib__node n = node_of(IB_OP_PAD, 13, &m, 1);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_OK);
    float w[7] = {3, 2, 1, 2, 3, 2, 1};
    CHECK(floats_are(&y, w, 7, 0));
    ib_tensor_release(&y);
    m = a_str("mode", "edge");
    pads[0] = -1; /* crop one on the left */
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_OK);
    float we[4] = {2, 3, 3, 3};
    CHECK(floats_are(&y, we, 4, 0));
    ib_tensor_release(&y);
    pads[0] = -6; /* crops more than the dim holds */
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_ERR_SHAPE);
    /* opset 2: pads and value attributes */
    int64_t ap[4] = {0, 1, 0, 0};
    ib__attr aa[3] = {a_str("mode", "constant"), a_ints("pads", ap, 4), a_int("value", 7)};
    aa[2].kind = IB_ATTR_FLOAT;
    aa[2].f = 7.0f;
    int64_t md[2] = {1, 2};
    ib_tensor mx = tens(IB_DTYPE_FLOAT32, 2, md, xv);
    const ib_tensor *min[1] = {&mx};
    ib__node old = node_of(IB_OP_PAD, 2, aa, 3);
    CHECK_EQ_INT(run_op(&old, 1, min, 1, &y), IB_OK);
    float wo[3] = {7, 1, 2};
    CHECK(floats_are(&y, wo, 3, 0));
    ib_tensor_release(&y);
}

TEST(onehot_nonzero_trilu_unique) {
    int64_t id[1] = {3}, idx[3] = {0, -1, 5};
    float depth = 3, vals[2] = {0, 1};
    int64_t vd[1] = {2};
    ib_tensor i = tens(IB_DTYPE_INT64, 1, id, idx), d = tens(IB_DTYPE_FLOAT32, 0, NULL, &depth),
              v = tens(IB_DTYPE_FLOAT32, 1, vd, vals);
    const ib_tensor *in[3] = {&i, &d, &v};
    ib__node n = node_of(IB_OP_ONE_HOT, 11, NULL, 0);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 3, in, 1, &y), IB_OK);
    float w[9] = {1, 0, 0, 0, 0, 1, 0, 0, 0};
    CHECK(floats_are(&y, w, 9, 0));
    ib_tensor_release(&y);

    uint8_t b[4] = {0, 1, 1, 0};
    int64_t bd[2] = {2, 2};
    ib_tensor bt = tens(IB_DTYPE_BOOL, 2, bd, b);
    const ib_tensor *bin[1] = {&bt};
    ib__node nz = node_of(IB_OP_NON_ZERO, 13, NULL, 0);
    CHECK_EQ_INT(run_op(&nz, 1, bin, 1, &y), IB_OK);
    int64_t nw[4] = {0, 1, 1, 0};
    CHECK(ints_are(&y, nw, 4));
    ib_tensor_release(&y);

    int64_t td[2] = {2, 3}, k = -1;
    ib_tensor tx = tens(IB_DTYPE_FLOAT32, 2, td, iota_f), kt = tens(IB_DTYPE_INT64, 0, NULL, &k);
    const ib_tensor *tin[2] = {&tx, &kt};
    ib__attr up = a_int("upper", 0);
    ib__node tr = node_of(IB_OP_TRILU, 14, &up, 1);
    CHECK_EQ_INT(run_op(&tr, 2, tin, 1, &y), IB_OK);
    float trw[6] = {0, 0, 0, 3, 0, 0};
    CHECK(floats_are(&y, trw, 6, 0));
    ib_tensor_release(&y);

    float uv[6] = {2, 1, 1, 3, 4, 3};
    int64_t ud[1] = {6};
    ib_tensor ux = tens(IB_DTYPE_FLOAT32, 1, ud, uv);
    const ib_tensor *uin[1] = {&ux};
    ib__attr so = a_int("sorted", 0);
    ib__node un = node_of(IB_OP_UNIQUE, 11, &so, 1);
    ib_tensor uy[4];
    CHECK_EQ_INT(run_op(&un, 1, uin, 4, uy), IB_OK);
    float yw[4] = {2, 1, 3, 4};
    int64_t iw[4] = {0, 1, 3, 4}, invw[6] = {0, 1, 1, 2, 3, 2}, cw[4] = {1, 2, 2, 1};
    CHECK(floats_are(&uy[0], yw, 4, 0));
    CHECK(ints_are(&uy[1], iw, 4));
    CHECK(ints_are(&uy[2], invw, 6));
    CHECK(ints_are(&uy[3], cw, 4));
    for (int k2 = 0; k2 < 4; k2++) ib_tensor_release(&uy[k2]);
    ib__attr bad_axis = a_int("axis", 3);
    ib__node ub = node_of(IB_OP_UNIQUE, 11, &bad_axis, 1);
    CHECK_EQ_INT(run_op(&ub, 1, uin, 4, uy), IB_ERR_INVALID_MODEL);
}

/* ---- resize ------------------------------------------------------------------------- */

TEST(resize_nearest_and_linear) {
    float xv[4] = {1, 2, 3, 4};
    int64_t xd[4] = {1, 1, 2, 2}, sd[1] = {4};
    float scales[4] = {1, 1, 2, 2};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 4, xd, xv), s = tens(IB_DTYPE_FLOAT32, 1, sd, scales);
    const ib_tensor *in[3] = {&x, NULL, &s};
    ib__attr m = a_str("mode", "nearest");
    ib__node n = node_of(IB_OP_RESIZE, 13, &m, 1);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 3, in, 1, &y), IB_OK);
    float nw[16] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
    CHECK(floats_are(&y, nw, 16, 0));
    ib_tensor_release(&y);
    /* half_pixel linear, 2 -> 4: coordinates -0.25, 0.25, 0.75, 1.25 */
    m = a_str("mode", "linear");
    CHECK_EQ_INT(run_op(&n, 3, in, 1, &y), IB_OK);
    float lw[16] = {1,   1.25f, 1.75f, 2,    1.5f, 1.75f, 2.25f, 2.5f,
                    2.5f, 2.75f, 3.25f, 3.5f, 3,    3.25f, 3.75f, 4};
    CHECK(floats_are(&y, lw, 16, 1e-6f));
    ib_tensor_release(&y);
    scales[2] = -1;
    CHECK_EQ_INT(run_op(&n, 3, in, 1, &y), IB_ERR_INVALID_MODEL);
    const ib_tensor *none[3] = {&x, NULL, NULL};
    CHECK_EQ_INT(run_op(&n, 3, none, 1, &y), IB_ERR_INVALID_MODEL);
}

/* Upsample-7 (scales attribute, asymmetric linear) and Resize-10 (nearest, ceil when
 * downsampling): the documented examples of those opsets. */
TEST(upsample7_and_resize10) {
    float xv[4] = {1, 2, 3, 4};
    int64_t xd[4] = {1, 1, 2, 2};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 4, xd, xv);
    const ib_tensor *in[1] = {&x};
    float sc[4] = {1, 1, 2, 2};
    ib__attr ua[2] = {a_str("mode", "linear"), a_str("scales", "")};
    ua[1].kind = IB_ATTR_FLOATS;
    ua[1].floats = sc;
    ua[1].count = 4;
    ib__node up = node_of(IB_OP_UPSAMPLE, 7, ua, 2);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&up, 1, in, 1, &y), IB_OK);
    float w[16] = {1, 1.5f, 2, 2, 2, 2.5f, 3, 3, 3, 3.5f, 4, 4, 3, 3.5f, 4, 4};
    CHECK(floats_are(&y, w, 16, 1e-6f));
    ib_tensor_release(&y);
    ua[1].count = 3; /* wrong length */
    CHECK_EQ_INT(run_op(&up, 1, in, 1, &y), IB_ERR_INVALID_MODEL);

    float rv[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t rd[4] = {1, 1, 2, 4}, sd[1] = {4};
    float rs[4] = {1, 1, 0.6f, 0.6f};
    ib_tensor rx = tens(IB_DTYPE_FLOAT32, 4, rd, rv), st = tens(IB_DTYPE_FLOAT32, 1, sd, rs);
    const ib_tensor *rin[2] = {&rx, &st};
    ib__attr m = a_str("mode", "nearest");
    ib__node r10 = node_of(IB_OP_RESIZE, 10, &m, 1);
    CHECK_EQ_INT(run_op(&r10, 2, rin, 1, &y), IB_OK);
    float rw[2] = {1, 3};
    CHECK(floats_are(&y, rw, 2, 0));
    ib_tensor_release(&y);
}

TEST(grid_sample_identity) {
    /* With align_corners, a grid at the pixel centres reproduces the input. */
    float xv[4] = {1, 2, 3, 4};
    float gv[8] = {-1, -1, 1, -1, -1, 1, 1, 1};
    int64_t xd[4] = {1, 1, 2, 2}, gd[4] = {1, 2, 2, 2};
    ib_tensor x = tens(IB_DTYPE_FLOAT32, 4, xd, xv), g = tens(IB_DTYPE_FLOAT32, 4, gd, gv);
    const ib_tensor *in[2] = {&x, &g};
    ib__attr ac = a_int("align_corners", 1);
    ib__node n = node_of(IB_OP_GRID_SAMPLE, 16, &ac, 1);
    ib_tensor y;
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_OK);
    CHECK(floats_are(&y, xv, 4, 1e-6f));
    ib_tensor_release(&y);
    gv[0] = NAN; /* a NaN grid point must not crash; zeros padding gives 0 */
    CHECK_EQ_INT(run_op(&n, 2, in, 1, &y), IB_OK);
    CHECK(((float *)y.data)[0] == 0.0f);
    ib_tensor_release(&y);
    int64_t bd[4] = {1, 2, 2, 3};
    ib_tensor bad = tens(IB_DTYPE_FLOAT32, 4, bd, iota_f);
    const ib_tensor *bin[2] = {&x, &bad};
    CHECK_EQ_INT(run_op(&n, 2, bin, 1, &y), IB_ERR_SHAPE);
}

int main(void) {
    for (int i = 0; i < 64; i++) iota_f[i] = (float)i;
    RUN(reshape_zero_and_minus_one);
    RUN(reshape_unknown_shape_keeps_rank);
    RUN(transpose_and_expand_and_tile);
    RUN(transpose_random_vs_naive);
    RUN(concat_split_squeeze);
    RUN(constant_points_at_attribute);
    RUN(range_shape_depth);
    RUN(gather_bounds);
    RUN(scatter_family);
    RUN(slice_negative_steps_and_clamping);
    RUN(pad_modes);
    RUN(onehot_nonzero_trilu_unique);
    RUN(resize_nearest_and_linear);
    RUN(upsample7_and_resize10);
    RUN(grid_sample_identity);
    TEST_SUMMARY();
}
