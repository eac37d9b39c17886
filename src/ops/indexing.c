/* Ops that pick, place or rearrange elements by index: Gather, GatherElements, GatherND,
 * Scatter, ScatterElements, ScatterND, Slice, Pad, Compress, OneHot, NonZero, Trilu,
 * ReverseSequence, Unique. Every index read from a tensor is bounds-checked. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

/* ---- Shared helpers ------------------------------------------------------------------ */

static ib_status elem_size(const ib__node *node, ib_dtype dt, size_t *out) {
    size_t es = ib_dtype_size(dt);
    if (es == 0)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: dtype %s is not supported",
                         ib__node_label(node), ib_dtype_name(dt));
    *out = es;
    return IB_OK;
}

static bool is_index_dtype(ib_dtype dt) { return dt == IB_DTYPE_INT64 || dt == IB_DTYPE_INT32; }

static ib_status check_index_dtype(const ib__node *node, const char *what, ib_dtype dt) {
    if (dt == IB_DTYPE_UNDEFINED || is_index_dtype(dt)) return IB_OK;
    return ib__error(IB_ERR_INVALID_MODEL, "%s: %s must be int32 or int64, not %s",
                     ib__node_label(node), what, ib_dtype_name(dt));
}

static inline int64_t load_index(const ib_tensor *t, int64_t i) {
    return t->dtype == IB_DTYPE_INT64 ? ((const int64_t *)t->data)[i]
                                      : ((const int32_t *)t->data)[i];
}

/* Wraps a negative index and checks it against [0, n). */
static ib_status fix_index(const ib__node *node, const char *what, int64_t v, int64_t n,
                           int64_t *out) {
    int64_t w = v < 0 ? v + n : v;
    if (w < 0 || w >= n)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "%s: %s %lld is out of range [-%lld, %lld)",
                         ib__node_label(node), what, (long long)v, (long long)n, (long long)n);
    *out = w;
    return IB_OK;
}

/* Reads an integer tensor (int32/int64) of at most cap values. */
static ib_status tensor_ints(const ib__node *node, const char *what, const ib_tensor *t,
                             int64_t *buf, int64_t cap, int64_t *count) {
    if (!is_index_dtype(t->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: %s must be int32 or int64, not %s",
                         ib__node_label(node), what, ib_dtype_name(t->dtype));
    int64_t n = ib_tensor_element_count(t);
    if (n < 0 || n > cap)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: %s holds %lld values (at most %lld)",
                         ib__node_label(node), what, (long long)n, (long long)cap);
    if (t->nbytes < (size_t)n * ib_dtype_size(t->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: %s data is truncated", ib__node_label(node),
                         what);
    for (int64_t i = 0; i < n; i++) buf[i] = load_index(t, i);
    *count = n;
    return IB_OK;
}

static int64_t count_of(const int64_t *dims, int32_t from, int32_t to) {
    int64_t n = 1;
    for (int32_t d = from; d < to; d++) n *= dims[d];
    return n;
}

static ib_status check_rank(const ib__infer_ctx *c, int64_t rank) {
    if (rank > IB_MAX_RANK)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: output rank %lld exceeds %d",
                         ib__node_label(c->node), (long long)rank, IB_MAX_RANK);
    return IB_OK;
}

/* ---- Gather -------------------------------------------------------------------------- */

static ib_status infer_gather(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0], *ix = c->in[1];
    IB_TRY(check_index_dtype(c->node, "indices", ix->dtype));
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    if (x->rank < 0 || ix->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    if (x->rank < 1)
        return ib__error(IB_ERR_SHAPE, "%s: data must have rank >= 1", ib__node_label(c->node));
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    int32_t r = x->rank + ix->rank - 1;
    IB_TRY(check_rank(c, r));
    int64_t dims[IB_MAX_RANK];
    const char *params[IB_MAX_RANK];
    int32_t k = 0;
    for (int32_t d = 0; d < ax; d++, k++) dims[k] = x->dims[d], params[k] = x->dim_param[d];
    for (int32_t d = 0; d < ix->rank; d++, k++) dims[k] = ix->dims[d], params[k] = ix->dim_param[d];
    for (int32_t d = ax + 1; d < x->rank; d++, k++) dims[k] = x->dims[d], params[k] = x->dim_param[d];
    ib__set_output(c, 0, x->dtype, r, dims);
    if (c->out[0]) memcpy(c->out[0]->dim_param, params, sizeof(params[0]) * (size_t)r);
    return IB_OK;
}

static ib_status run_gather(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *ix = c->in[1];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    IB_TRY(check_index_dtype(c->node, "indices", ix->dtype));
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    int64_t outer = count_of(x->shape, 0, ax), n = x->shape[ax];
    int64_t inner = count_of(x->shape, ax + 1, x->rank);
    int64_t ni = ib_tensor_element_count(ix);
    if (outer * ni * inner * (int64_t)es != (int64_t)y->nbytes)
        return ib__error(IB_ERR_INTERNAL, "%s: output size mismatch", ib__node_label(c->node));
    for (int64_t j = 0; j < ni; j++) { /* validate all before writing */
        int64_t w = 0;
        IB_TRY(fix_index(c->node, "index", load_index(ix, j), n, &w));
    }
    size_t chunk = (size_t)inner * es;
    char *dst = y->data;
    const char *src = x->data;
    for (int64_t o = 0; o < outer; o++) {
        const char *base = src + (size_t)(o * n) * chunk;
        for (int64_t j = 0; j < ni; j++) {
            int64_t v = load_index(ix, j);
            if (v < 0) v += n;
            if (chunk == 4)
                memcpy(dst, base + (size_t)v * 4, 4);
            else
                memcpy(dst, base + (size_t)v * chunk, chunk);
            dst += chunk;
        }
    }
    return IB_OK;
}

/* ---- GatherElements ------------------------------------------------------------------ */

static ib_status infer_gather_elements(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0], *ix = c->in[1];
    IB_TRY(check_index_dtype(c->node, "indices", ix->dtype));
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    if (x->rank >= 0 && ix->rank >= 0) {
        if (x->rank != ix->rank || x->rank < 1)
            return ib__error(IB_ERR_SHAPE, "%s: data (rank %d) and indices (rank %d) must share a rank >= 1",
                             ib__node_label(c->node), x->rank, ix->rank);
        int32_t ax;
        IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    }
    ib__set_output_like(c, 0, ix);
    if (c->out[0]) c->out[0]->dtype = x->dtype;
    return IB_OK;
}

/* Element-wise index walk shared by GatherElements and ScatterElements: for each element
 * of `ix` (whose dims must fit inside the data's, except along the axis) yields the data
 * offset. Returns an error on the first out-of-range index. */
typedef struct elem_walk {
    int32_t rank, axis;
    int64_t dims[IB_MAX_RANK];   /* indices dims */
    int64_t dstr[IB_MAX_RANK];   /* data strides */
    int64_t axis_len;
} elem_walk;

static ib_status elem_walk_init(const ib__node *node, elem_walk *w, const ib_tensor *data,
                                const ib_tensor *ix, int64_t axis) {
    if (data->rank != ix->rank || data->rank < 1)
        return ib__error(IB_ERR_SHAPE, "%s: data and indices must share a rank >= 1",
                         ib__node_label(node));
    IB_TRY(check_index_dtype(node, "indices", ix->dtype));
    int32_t ax;
    IB_TRY(ib__normalize_axis(node, axis, data->rank, &ax));
    w->rank = data->rank;
    w->axis = ax;
    w->axis_len = data->shape[ax];
    ib__strides(data->shape, data->rank, w->dstr);
    for (int32_t d = 0; d < data->rank; d++) {
        w->dims[d] = ix->shape[d];
        if (d != ax && ix->shape[d] > data->shape[d])
            return ib__error(IB_ERR_SHAPE, "%s: indices dim %d (%lld) exceeds data dim (%lld)",
                             ib__node_label(node), d, (long long)ix->shape[d],
                             (long long)data->shape[d]);
    }
    return IB_OK;
}

/* Fills offs[i] with the data offset of index element i. */
static ib_status elem_walk_offsets(const ib__node *node, const elem_walk *w, const ib_tensor *ix,
                                   int64_t *offs) {
    int64_t n = ib_tensor_element_count(ix);
    int64_t idx[IB_MAX_RANK] = {0};
    int64_t base = 0; /* offset of the non-axis coordinates */
    for (int64_t i = 0; i < n; i++) {
        int64_t v = 0;
        IB_TRY(fix_index(node, "index", load_index(ix, i), w->axis_len, &v));
        offs[i] = base + v * w->dstr[w->axis];
        for (int32_t d = w->rank - 1; d >= 0; d--) {
            if (++idx[d] < w->dims[d]) {
                if (d != w->axis) base += w->dstr[d];
                break;
            }
            if (d != w->axis) base -= (idx[d] - 1) * w->dstr[d];
            idx[d] = 0;
        }
    }
    return IB_OK;
}

static ib_status run_gather_elements(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *ix = c->in[1];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    elem_walk w;
    IB_TRY(elem_walk_init(c->node, &w, x, ix, axis));
    int64_t n = ib_tensor_element_count(ix);
    if (n == 0) return IB_OK;
    int64_t *offs = ib__aligned_alloc(sizeof(int64_t) * (size_t)n);
    if (!offs) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    ib_status st = elem_walk_offsets(c->node, &w, ix, offs);
    if (st == IB_OK)
        for (int64_t i = 0; i < n; i++)
            memcpy((char *)y->data + (size_t)i * es, (const char *)x->data + (size_t)offs[i] * es,
                   es);
    ib__aligned_free(offs);
    return st;
}

/* ---- GatherND ------------------------------------------------------------------------ */

static ib_status infer_gather_nd(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0], *ix = c->in[1];
    if (ix->dtype != IB_DTYPE_UNDEFINED && ix->dtype != IB_DTYPE_INT64)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: indices must be int64",
                         ib__node_label(c->node));
    int64_t b;
    IB_TRY(ib__attr_int(c->node, "batch_dims", 0, &b));
    if (x->rank < 0 || ix->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    if (ix->rank < 1 || x->rank < 1 || b < 0 || b >= ix->rank || b >= x->rank)
        return ib__error(IB_ERR_SHAPE, "%s: invalid ranks (data %d, indices %d, batch_dims %lld)",
                         ib__node_label(c->node), x->rank, ix->rank, (long long)b);
    int64_t k = ix->dims[ix->rank - 1];
    if (k < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    if (k < 1 || k > x->rank - b)
        return ib__error(IB_ERR_SHAPE, "%s: indices last dim %lld must be in [1, %lld]",
                         ib__node_label(c->node), (long long)k, (long long)(x->rank - b));
    for (int32_t d = 0; d < b; d++)
        if (x->dims[d] >= 0 && ix->dims[d] >= 0 && x->dims[d] != ix->dims[d])
            return ib__error(IB_ERR_SHAPE, "%s: batch dim %d differs (%lld vs %lld)",
                             ib__node_label(c->node), d, (long long)x->dims[d],
                             (long long)ix->dims[d]);
    int64_t r = (ix->rank - 1) + (x->rank - b - k);
    IB_TRY(check_rank(c, r));
    int64_t dims[IB_MAX_RANK];
    int32_t n = 0;
    for (int32_t d = 0; d < ix->rank - 1; d++) dims[n++] = ix->dims[d];
    for (int32_t d = (int32_t)(b + k); d < x->rank; d++) dims[n++] = x->dims[d];
    ib__set_output(c, 0, x->dtype, n, dims);
    return IB_OK;
}

static ib_status run_gather_nd(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *ix = c->in[1];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    IB_TRY(check_index_dtype(c->node, "indices", ix->dtype));
    int64_t b;
    IB_TRY(ib__attr_int(c->node, "batch_dims", 0, &b));
    if (ix->rank < 1 || b < 0 || b >= ix->rank || b >= x->rank)
        return ib__error(IB_ERR_SHAPE, "%s: invalid batch_dims %lld", ib__node_label(c->node),
                         (long long)b);
    int64_t k = ix->shape[ix->rank - 1];
    if (k < 1 || k > x->rank - b)
        return ib__error(IB_ERR_SHAPE, "%s: indices last dim %lld must be in [1, %lld]",
                         ib__node_label(c->node), (long long)k, (long long)(x->rank - b));
    for (int32_t d = 0; d < b; d++)
        if (x->shape[d] != ix->shape[d])
            return ib__error(IB_ERR_SHAPE, "%s: batch dim %d differs", ib__node_label(c->node), d);
    int64_t batch = count_of(x->shape, 0, (int32_t)b);
    int64_t per_batch = count_of(ix->shape, (int32_t)b, ix->rank - 1); /* index tuples */
    int64_t slice = count_of(x->shape, (int32_t)(b + k), x->rank);
    int64_t batch_stride = count_of(x->shape, (int32_t)b, x->rank);
    int64_t xs[IB_MAX_RANK];
    ib__strides(x->shape, x->rank, xs);
    if (batch * per_batch * slice * (int64_t)es != (int64_t)y->nbytes)
        return ib__error(IB_ERR_INTERNAL, "%s: output size mismatch", ib__node_label(c->node));
    size_t chunk = (size_t)slice * es;
    char *dst = y->data;
    for (int64_t bi = 0; bi < batch; bi++) {
        for (int64_t t = 0; t < per_batch; t++) {
            int64_t tuple = (bi * per_batch + t) * k, off = bi * batch_stride;
            for (int64_t j = 0; j < k; j++) {
                int64_t v = 0;
                IB_TRY(fix_index(c->node, "index", load_index(ix, tuple + j),
                                 x->shape[b + j], &v));
                off += v * xs[b + j];
            }
            memcpy(dst, (const char *)x->data + (size_t)off * es, chunk);
            dst += chunk;
        }
    }
    return IB_OK;
}

/* ---- Scatter family ------------------------------------------------------------------ */

typedef enum reduction { RED_NONE, RED_ADD, RED_MUL, RED_MAX, RED_MIN } reduction;

static ib_status parse_reduction(const ib__node *node, reduction *out) {
    const char *s;
    IB_TRY(ib__attr_string(node, "reduction", "none", &s));
    if (strcmp(s, "none") == 0) *out = RED_NONE;
    else if (strcmp(s, "add") == 0) *out = RED_ADD;
    else if (strcmp(s, "mul") == 0) *out = RED_MUL;
    else if (strcmp(s, "max") == 0) *out = RED_MAX;
    else if (strcmp(s, "min") == 0) *out = RED_MIN;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: reduction '%s' is invalid",
                         ib__node_label(node), s);
    return IB_OK;
}

static double reduce_f(reduction r, double a, double b) {
    switch (r) {
    case RED_ADD: return a + b;
    case RED_MUL: return a * b;
    case RED_MAX: return a > b ? a : b;
    case RED_MIN: return a < b ? a : b;
    default: return b;
    }
}

/* dst[0..n) = dst op src, elementwise in the tensor's dtype. */
static void apply_run(void *dst, const void *src, ib_dtype dt, size_t es, int64_t n,
                      reduction r) {
    if (r == RED_NONE) {
        memcpy(dst, src, (size_t)n * es);
        return;
    }
    if (dt == IB_DTYPE_FLOAT32) {
        float *d = dst;
        const float *s = src;
        for (int64_t i = 0; i < n; i++) d[i] = (float)reduce_f(r, d[i], s[i]);
    } else if (ib__dtype_is_float(dt)) {
        for (int64_t i = 0; i < n; i++)
            ib__store_f64(dst, dt, i, reduce_f(r, ib__load_f64(dst, dt, i), ib__load_f64(src, dt, i)));
    } else {
        bool uns = !ib__dtype_is_signed(dt);
        for (int64_t i = 0; i < n; i++) {
            int64_t a = ib__load_i64(dst, dt, i), b = ib__load_i64(src, dt, i), v;
            switch (r) {
            case RED_ADD: v = (int64_t)((uint64_t)a + (uint64_t)b); break;
            case RED_MUL: v = (int64_t)((uint64_t)a * (uint64_t)b); break;
            case RED_MAX: v = uns ? ((uint64_t)a > (uint64_t)b ? a : b) : (a > b ? a : b); break;
            default: v = uns ? ((uint64_t)a < (uint64_t)b ? a : b) : (a < b ? a : b); break;
            }
            ib__store_i64(dst, dt, i, v);
        }
    }
}

static ib_status check_reduction_dtype(const ib__node *node, ib_dtype dt, reduction r) {
    if (r == RED_NONE || ib__dtype_is_float(dt) || ib__dtype_is_integer(dt) ||
        (dt == IB_DTYPE_BOOL && r != RED_NONE))
        return IB_OK;
    return ib__error(IB_ERR_UNSUPPORTED, "%s: reduction on dtype %s is not supported",
                     ib__node_label(node), ib_dtype_name(dt));
}

static ib_status infer_scatter_common(ib__infer_ctx *c) {
    for (int32_t i = 0; i < 3; i++) IB_TRY(ib__require_input(c, i));
    IB_TRY(check_index_dtype(c->node, "indices", c->in[1]->dtype));
    const ib__value *x = c->in[0], *u = c->in[2];
    if (x->dtype != IB_DTYPE_UNDEFINED && u->dtype != IB_DTYPE_UNDEFINED && x->dtype != u->dtype)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: updates (%s) and data (%s) differ in dtype",
                         ib__node_label(c->node), ib_dtype_name(u->dtype), ib_dtype_name(x->dtype));
    reduction r;
    IB_TRY(parse_reduction(c->node, &r));
    ib__set_output_like(c, 0, x);
    return IB_OK;
}

static ib_status infer_scatter_elements(ib__infer_ctx *c) {
    IB_TRY(infer_scatter_common(c));
    const ib__value *x = c->in[0], *ix = c->in[1], *u = c->in[2];
    if (x->rank >= 0 && ix->rank >= 0 && x->rank != ix->rank)
        return ib__error(IB_ERR_SHAPE, "%s: data and indices ranks differ (%d vs %d)",
                         ib__node_label(c->node), x->rank, ix->rank);
    if (ix->rank >= 0 && u->rank >= 0) {
        bool same = ix->rank == u->rank;
        for (int32_t d = 0; same && d < ix->rank; d++)
            if (ix->dims[d] >= 0 && u->dims[d] >= 0 && ix->dims[d] != u->dims[d]) same = false;
        if (!same)
            return ib__error(IB_ERR_SHAPE, "%s: updates and indices shapes differ",
                             ib__node_label(c->node));
    }
    return IB_OK;
}

static ib_status run_scatter_elements(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *ix = c->in[1], *u = c->in[2];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    reduction r;
    IB_TRY(parse_reduction(c->node, &r));
    IB_TRY(check_reduction_dtype(c->node, x->dtype, r));
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    if (u->dtype != x->dtype || u->rank != ix->rank ||
        memcmp(u->shape, ix->shape, sizeof(int64_t) * (size_t)ix->rank) != 0)
        return ib__error(IB_ERR_SHAPE, "%s: updates must match indices in shape and data in dtype",
                         ib__node_label(c->node));
    elem_walk w;
    IB_TRY(elem_walk_init(c->node, &w, x, ix, axis));
    if (y->nbytes != x->nbytes)
        return ib__error(IB_ERR_INTERNAL, "%s: output size mismatch", ib__node_label(c->node));
    memcpy(y->data, x->data, x->nbytes);
    int64_t n = ib_tensor_element_count(ix);
    if (n == 0) return IB_OK;
    int64_t *offs = ib__aligned_alloc(sizeof(int64_t) * (size_t)n);
    if (!offs) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    ib_status st = elem_walk_offsets(c->node, &w, ix, offs);
    if (st == IB_OK)
        for (int64_t i = 0; i < n; i++)
            apply_run((char *)y->data + (size_t)offs[i] * es, (const char *)u->data + (size_t)i * es,
                      x->dtype, es, 1, r);
    ib__aligned_free(offs);
    return st;
}

static ib_status infer_scatter_nd(ib__infer_ctx *c) {
    IB_TRY(infer_scatter_common(c));
    const ib__value *x = c->in[0], *ix = c->in[1], *u = c->in[2];
    if (ix->dtype != IB_DTYPE_UNDEFINED && ix->dtype != IB_DTYPE_INT64)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: indices must be int64",
                         ib__node_label(c->node));
    if (x->rank < 0 || ix->rank < 0 || u->rank < 0) return IB_OK;
    int64_t k = ix->rank >= 1 ? ix->dims[ix->rank - 1] : -2;
    if (k == -2 || (k >= 0 && (k < 1 || k > x->rank)))
        return ib__error(IB_ERR_SHAPE, "%s: indices last dim must be in [1, %d]",
                         ib__node_label(c->node), x->rank);
    if (k < 0) return IB_OK;
    int64_t want = (ix->rank - 1) + (x->rank - k);
    if (u->rank != want)
        return ib__error(IB_ERR_SHAPE, "%s: updates rank %d, expected %lld",
                         ib__node_label(c->node), u->rank, (long long)want);
    return IB_OK;
}

static ib_status run_scatter_nd(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *ix = c->in[1], *u = c->in[2];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    IB_TRY(check_index_dtype(c->node, "indices", ix->dtype));
    reduction r;
    IB_TRY(parse_reduction(c->node, &r));
    IB_TRY(check_reduction_dtype(c->node, x->dtype, r));
    if (ix->rank < 1)
        return ib__error(IB_ERR_SHAPE, "%s: indices must have rank >= 1", ib__node_label(c->node));
    int64_t k = ix->shape[ix->rank - 1];
    if (k < 1 || k > x->rank)
        return ib__error(IB_ERR_SHAPE, "%s: indices last dim %lld must be in [1, %d]",
                         ib__node_label(c->node), (long long)k, x->rank);
    /* updates shape = indices.shape[:-1] + data.shape[k:] */
    bool ok = u->dtype == x->dtype && u->rank == (ix->rank - 1) + (x->rank - (int32_t)k);
    for (int32_t d = 0; ok && d < ix->rank - 1; d++) ok = u->shape[d] == ix->shape[d];
    for (int32_t d = (int32_t)k; ok && d < x->rank; d++)
        ok = u->shape[ix->rank - 1 + d - k] == x->shape[d];
    if (!ok)
        return ib__error(IB_ERR_SHAPE, "%s: updates shape does not match indices and data",
                         ib__node_label(c->node));
    if (y->nbytes != x->nbytes)
        return ib__error(IB_ERR_INTERNAL, "%s: output size mismatch", ib__node_label(c->node));
    memcpy(y->data, x->data, x->nbytes);
    int64_t n_tuples = count_of(ix->shape, 0, ix->rank - 1);
    int64_t slice = count_of(x->shape, (int32_t)k, x->rank);
    int64_t xs[IB_MAX_RANK];
    ib__strides(x->shape, x->rank, xs);
    for (int64_t t = 0; t < n_tuples; t++) {
        int64_t off = 0;
        for (int64_t j = 0; j < k; j++) {
            int64_t v = 0;
            IB_TRY(fix_index(c->node, "index", load_index(ix, t * k + j), x->shape[j], &v));
            off += v * xs[j];
        }
        apply_run((char *)y->data + (size_t)off * es, (const char *)u->data + (size_t)(t * slice) * es,
                  x->dtype, es, slice, r);
    }
    return IB_OK;
}

/* ---- Slice --------------------------------------------------------------------------- */

typedef struct slice_plan {
    int64_t start[IB_MAX_RANK], step[IB_MAX_RANK], len[IB_MAX_RANK];
} slice_plan;

/* Clamps starts/ends per the spec for each listed axis; unlisted axes take everything. */
static ib_status slice_compute(const ib__node *node, int32_t rank, const int64_t *dims,
                               int64_t n, const int64_t *starts, const int64_t *ends,
                               const int64_t *axes, const int64_t *steps, slice_plan *p) {
    bool seen[IB_MAX_RANK] = {0};
    for (int32_t d = 0; d < rank; d++) {
        p->start[d] = 0;
        p->step[d] = 1;
        p->len[d] = dims[d];
    }
    for (int64_t i = 0; i < n; i++) {
        int32_t a;
        IB_TRY(ib__normalize_axis(node, axes ? axes[i] : i, rank, &a));
        if (seen[a])
            return ib__error(IB_ERR_INVALID_MODEL, "%s: axis %d is sliced twice",
                             ib__node_label(node), a);
        seen[a] = true;
        int64_t step = steps ? steps[i] : 1;
        if (step == 0)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: step for axis %d is zero",
                             ib__node_label(node), a);
        int64_t dim = dims[a];
        if (dim < 0) { /* unknown at load time */
            p->len[a] = -1;
            p->step[a] = step;
            continue;
        }
        if (dim == 0) {
            p->len[a] = 0;
            p->step[a] = step;
            continue;
        }
        int64_t s = starts[i], e = ends[i];
        if (s < 0) s += dim; /* no overflow: s < 0 <= dim */
        if (e < 0) e += dim;
        int64_t len;
        if (step > 0) {
            s = s < 0 ? 0 : s > dim ? dim : s;
            e = e < 0 ? 0 : e > dim ? dim : e;
            len = e > s ? (int64_t)(((uint64_t)(e - s) + (uint64_t)step - 1) / (uint64_t)step) : 0;
        } else {
            s = s < 0 ? 0 : s > dim - 1 ? dim - 1 : s;
            e = e < -1 ? -1 : e > dim - 1 ? dim - 1 : e;
            uint64_t ustep = (uint64_t)0 - (uint64_t)step;
            len = s > e ? (int64_t)(((uint64_t)(s - e) + ustep - 1) / ustep) : 0;
        }
        p->start[a] = len > 0 ? s : 0;
        p->step[a] = step;
        p->len[a] = len;
    }
    return IB_OK;
}

typedef struct slice_args {
    int64_t n;
    int64_t starts[IB_MAX_RANK], ends[IB_MAX_RANK], axes[IB_MAX_RANK], steps[IB_MAX_RANK];
    bool has_axes, has_steps;
} slice_args;

/* Reads the slice arguments from attributes (opset < 10) or from the given tensors
 * (NULL: absent). *known = false when an input that is present has no data yet. */
static ib_status slice_args_read(const ib__node *node, int32_t opset, const ib_tensor *const *t,
                                 const bool *present, slice_args *a, bool *known) {
    *known = true;
    memset(a, 0, sizeof *a);
    if (opset < 10) {
        int32_t ns, ne, na;
        const int64_t *s, *e, *ax;
        IB_TRY(ib__attr_ints(node, "starts", &ns, &s));
        IB_TRY(ib__attr_ints(node, "ends", &ne, &e));
        IB_TRY(ib__attr_ints(node, "axes", &na, &ax));
        if (!s || !e || ns != ne || (ax && na != ns) || ns > IB_MAX_RANK)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: starts/ends/axes must have equal lengths",
                             ib__node_label(node));
        a->n = ns;
        memcpy(a->starts, s, sizeof(int64_t) * (size_t)ns);
        memcpy(a->ends, e, sizeof(int64_t) * (size_t)ns);
        if (ax) memcpy(a->axes, ax, sizeof(int64_t) * (size_t)ns);
        a->has_axes = ax != NULL;
        return IB_OK;
    }
    static const char *const names[4] = {"starts", "ends", "axes", "steps"};
    int64_t *bufs[4] = {a->starts, a->ends, a->axes, a->steps};
    int64_t counts[4] = {0};
    for (int k = 0; k < 4; k++) {
        if (!present[k]) {
            if (k < 2)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: input '%s' is required",
                                 ib__node_label(node), names[k]);
            continue;
        }
        if (!t[k]) {
            *known = false;
            continue;
        }
        IB_TRY(tensor_ints(node, names[k], t[k], bufs[k], IB_MAX_RANK, &counts[k]));
    }
    if (!*known) return IB_OK;
    a->n = counts[0];
    a->has_axes = present[2];
    a->has_steps = present[3];
    if (counts[1] != a->n || (present[2] && counts[2] != a->n) || (present[3] && counts[3] != a->n))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: starts/ends/axes/steps lengths differ",
                         ib__node_label(node));
    return IB_OK;
}

ib_status ib__slice_region(const ib__node *node, int32_t opset, int32_t rank, const int64_t *dims,
                           const ib_tensor *const args[4], int64_t *start, int64_t *step,
                           int64_t *len) {
    bool present[4];
    for (int k = 0; k < 4; k++) present[k] = args[k] != NULL;
    slice_args a;
    bool known;
    IB_TRY(slice_args_read(node, opset, args, present, &a, &known));
    if (!known)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: slice bounds are not constant",
                         ib__node_label(node));
    slice_plan p;
    IB_TRY(slice_compute(node, rank, dims, a.n, a.starts, a.ends, a.has_axes ? a.axes : NULL,
                         a.has_steps ? a.steps : NULL, &p));
    memcpy(start, p.start, sizeof(int64_t) * (size_t)rank);
    memcpy(step, p.step, sizeof(int64_t) * (size_t)rank);
    memcpy(len, p.len, sizeof(int64_t) * (size_t)rank);
    return IB_OK;
}

static ib_status infer_slice(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    const ib_tensor *t[4] = {0};
    bool present[4] = {0};
    for (int k = 0; k < 4; k++) {
        const ib__value *v = ib__in(c, k + 1);
        present[k] = v != NULL;
        t[k] = v ? v->constant : NULL;
    }
    slice_args a;
    bool known;
    IB_TRY(slice_args_read(c->node, c->opset, t, present, &a, &known));
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    if (!known) {
        int64_t dims[IB_MAX_RANK];
        for (int32_t d = 0; d < x->rank; d++) dims[d] = -1;
        ib__set_output(c, 0, x->dtype, x->rank, dims);
        return IB_OK;
    }
    slice_plan p;
    IB_TRY(slice_compute(c->node, x->rank, x->dims, a.n, a.starts, a.ends,
                         a.has_axes ? a.axes : NULL, a.has_steps ? a.steps : NULL, &p));
    ib__set_output(c, 0, x->dtype, x->rank, p.len);
    if (c->out[0])
        for (int32_t d = 0; d < x->rank; d++)
            if (p.len[d] == x->dims[d] && p.len[d] < 0) c->out[0]->dim_param[d] = x->dim_param[d];
    return IB_OK;
}

static ib_status run_slice(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    const ib_tensor *t[4] = {0};
    bool present[4] = {0};
    for (int k = 0; k < 4; k++) {
        t[k] = k + 1 < c->n_in ? c->in[k + 1] : NULL;
        present[k] = t[k] != NULL;
    }
    slice_args a;
    bool known;
    IB_TRY(slice_args_read(c->node, c->opset, t, present, &a, &known));
    slice_plan p;
    IB_TRY(slice_compute(c->node, x->rank, x->shape, a.n, a.starts, a.ends,
                         a.has_axes ? a.axes : NULL, a.has_steps ? a.steps : NULL, &p));
    if (ib__shape_count(p.len, x->rank) != ib_tensor_element_count(y))
        return ib__error(IB_ERR_INTERNAL, "%s: output size mismatch", ib__node_label(c->node));
    int64_t xs[IB_MAX_RANK], st[IB_MAX_RANK], off = 0;
    ib__strides(x->shape, x->rank, xs);
    for (int32_t d = 0; d < x->rank; d++) {
        if (p.len[d] == 0) return IB_OK;
        off += p.start[d] * xs[d];
        /* |step| can be huge only when a single element is taken */
        st[d] = p.len[d] == 1 ? 0 : p.step[d] * xs[d];
    }
    ib__strided_copy(y->data, (const char *)x->data + off * (int64_t)es, x->rank, p.len, st, es,
                 c->pool);
    return IB_OK;
}

/* ---- Pad ----------------------------------------------------------------------------- */

typedef enum pad_mode { PAD_CONSTANT, PAD_REFLECT, PAD_EDGE, PAD_WRAP } pad_mode;

static ib_status pad_mode_get(const ib__node *node, pad_mode *m) {
    const char *s;
    IB_TRY(ib__attr_string(node, "mode", "constant", &s));
    if (strcmp(s, "constant") == 0) *m = PAD_CONSTANT;
    else if (strcmp(s, "reflect") == 0) *m = PAD_REFLECT;
    else if (strcmp(s, "edge") == 0) *m = PAD_EDGE;
    else if (strcmp(s, "wrap") == 0) *m = PAD_WRAP;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: mode '%s' is invalid", ib__node_label(node), s);
    return IB_OK;
}

/* Per-dim begin/end pads (length rank each). pads_t/axes_t: the inputs (opset >= 11),
 * NULL when absent; *known = false when pads are an input without data yet. */
static ib_status pad_amounts(const ib__node *node, int32_t opset, int32_t rank,
                             const ib_tensor *pads_t, bool pads_present, const ib_tensor *axes_t,
                             bool axes_present, int64_t *begin, int64_t *end, bool *known) {
    int64_t pads[2 * IB_MAX_RANK], n = 0;
    int64_t axes[IB_MAX_RANK], na = rank;
    *known = true;
    if (opset < 11) {
        int32_t cnt;
        const int64_t *p;
        IB_TRY(ib__attr_ints(node, opset < 2 ? "paddings" : "pads", &cnt, &p));
        if (!p)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'pads' is required",
                             ib__node_label(node));
        if (cnt > 2 * IB_MAX_RANK)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: pads has %d values",
                             ib__node_label(node), cnt);
        memcpy(pads, p, sizeof(int64_t) * (size_t)cnt);
        n = cnt;
    } else {
        if (!pads_present)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input 'pads' is required",
                             ib__node_label(node));
        if (!pads_t || (axes_present && !axes_t)) {
            *known = false;
            return IB_OK;
        }
        IB_TRY(tensor_ints(node, "pads", pads_t, pads, 2 * IB_MAX_RANK, &n));
        if (axes_t) IB_TRY(tensor_ints(node, "axes", axes_t, axes, IB_MAX_RANK, &na));
    }
    if (!axes_t)
        for (int32_t d = 0; d < rank; d++) axes[d] = d;
    if (n != 2 * na)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: pads has %lld values, expected %lld",
                         ib__node_label(node), (long long)n, (long long)(2 * na));
    for (int32_t d = 0; d < rank; d++) begin[d] = end[d] = 0;
    bool seen[IB_MAX_RANK] = {0};
    for (int64_t i = 0; i < na; i++) {
        int32_t a;
        IB_TRY(ib__normalize_axis(node, axes[i], rank, &a));
        if (seen[a])
            return ib__error(IB_ERR_INVALID_MODEL, "%s: axis %d is repeated", ib__node_label(node), a);
        seen[a] = true;
        if (pads[i] < -IB_MAX_ELEMENTS || pads[i] > IB_MAX_ELEMENTS ||
            pads[na + i] < -IB_MAX_ELEMENTS || pads[na + i] > IB_MAX_ELEMENTS)
            return ib__error(IB_ERR_SHAPE, "%s: pad amount is too large", ib__node_label(node));
        begin[a] = pads[i];
        end[a] = pads[na + i];
    }
    return IB_OK;
}

static ib_status infer_pad(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    pad_mode m;
    IB_TRY(pad_mode_get(c->node, &m));
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    const ib__value *pv = ib__in(c, 1), *av = ib__in(c, 3);
    int64_t begin[IB_MAX_RANK], end[IB_MAX_RANK];
    bool known;
    IB_TRY(pad_amounts(c->node, c->opset, x->rank, pv ? pv->constant : NULL, pv != NULL,
                       av ? av->constant : NULL, av != NULL, begin, end, &known));
    int64_t dims[IB_MAX_RANK];
    for (int32_t d = 0; d < x->rank; d++) {
        if (!known || x->dims[d] < 0) {
            dims[d] = -1;
            continue;
        }
        dims[d] = x->dims[d] + begin[d] + end[d];
        if (dims[d] < 0 || dims[d] > IB_MAX_ELEMENTS)
            return ib__error(IB_ERR_SHAPE, "%s: dim %d becomes %lld after padding",
                             ib__node_label(c->node), d, (long long)dims[d]);
        if (m != PAD_CONSTANT && x->dims[d] == 0 && dims[d] > 0)
            return ib__error(IB_ERR_SHAPE, "%s: cannot pad an empty dim %d in this mode",
                             ib__node_label(c->node), d);
    }
    ib__set_output(c, 0, x->dtype, x->rank, dims);
    if (c->out[0] && known)
        for (int32_t d = 0; d < x->rank; d++)
            if (begin[d] == 0 && end[d] == 0) c->out[0]->dim_param[d] = x->dim_param[d];
    return IB_OK;
}

/* Source index for output position i along a dim of n input elements; -1 = pad value. */
static int64_t pad_source(pad_mode m, int64_t i, int64_t n) {
    if (i >= 0 && i < n) return i;
    switch (m) {
    case PAD_EDGE: return i < 0 ? 0 : n - 1;
    case PAD_WRAP: {
        int64_t r = i % n;
        return r < 0 ? r + n : r;
    }
    case PAD_REFLECT: {
        if (n == 1) return 0;
        int64_t period = 2 * (n - 1);
        int64_t r = i % period;
        if (r < 0) r += period;
        return r < n ? r : period - r;
    }
    default: return -1;
    }
}

typedef struct pad_job {
    const char *src;
    char *dst;
    const char *fill; /* one element */
    size_t es;
    int32_t rank;
    int64_t out_dims[IB_MAX_RANK];
    int64_t in_strides[IB_MAX_RANK];
    const int64_t *map[IB_MAX_RANK]; /* output index -> input index or -1 */
    int64_t inner_lo, inner_hi, inner_shift; /* the contiguous middle of each row */
} pad_job;

static void pad_rows(void *ctx, int64_t begin, int64_t end) {
    const pad_job *j = ctx;
    int32_t last = j->rank - 1;
    int64_t w = j->out_dims[last];
    size_t es = j->es;
    const int64_t *imap = j->map[last];
    int64_t idx[IB_MAX_RANK];
    int64_t rem = begin;
    for (int32_t d = last - 1; d >= 0; d--) {
        idx[d] = rem % j->out_dims[d];
        rem /= j->out_dims[d];
    }
    for (int64_t r = begin; r < end; r++) {
        char *dst = j->dst + (size_t)(r * w) * es;
        int64_t off = 0;
        bool fill_row = false;
        for (int32_t d = 0; d < last; d++) {
            int64_t s = j->map[d][idx[d]];
            if (s < 0) {
                fill_row = true;
                break;
            }
            off += s * j->in_strides[d];
        }
        const char *src = j->src + (size_t)off * es;
        for (int64_t i = 0; i < w;) {
            if (!fill_row && i == j->inner_lo && j->inner_hi > j->inner_lo) {
                size_t n = (size_t)(j->inner_hi - j->inner_lo);
                memcpy(dst + (size_t)i * es, src + (size_t)(i - j->inner_shift) * es, n * es);
                i = j->inner_hi;
                continue;
            }
            int64_t s = fill_row ? -1 : imap[i];
            memcpy(dst + (size_t)i * es, s < 0 ? j->fill : src + (size_t)s * es, es);
            i++;
        }
        for (int32_t d = last - 1; d >= 0; d--) {
            if (++idx[d] < j->out_dims[d]) break;
            idx[d] = 0;
        }
    }
}

static ib_status run_pad(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    pad_mode m;
    IB_TRY(pad_mode_get(c->node, &m));
    const ib_tensor *pt = c->n_in > 1 ? c->in[1] : NULL, *at = c->n_in > 3 ? c->in[3] : NULL;
    int64_t begin[IB_MAX_RANK], end[IB_MAX_RANK];
    bool known;
    IB_TRY(pad_amounts(c->node, c->opset, x->rank, pt, pt != NULL, at, at != NULL, begin, end,
                       &known));
    unsigned char fill[16] = {0};
    if (c->opset < 11) {
        float v;
        IB_TRY(ib__attr_float(c->node, "value", 0.0f, &v));
        if (ib__dtype_is_float(x->dtype) || ib__dtype_is_integer(x->dtype) ||
            x->dtype == IB_DTYPE_BOOL)
            ib__store_f64(fill, x->dtype, 0, v);
    } else if (c->n_in > 2 && c->in[2] && ib_tensor_element_count(c->in[2]) > 0) {
        const ib_tensor *cv = c->in[2];
        if (cv->dtype != x->dtype || cv->nbytes < es || es > sizeof fill)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: constant_value must be one %s",
                             ib__node_label(c->node), ib_dtype_name(x->dtype));
        memcpy(fill, cv->data, es);
    }
    int64_t total_map = 0;
    for (int32_t d = 0; d < x->rank; d++) {
        if (y->shape[d] != x->shape[d] + begin[d] + end[d])
            return ib__error(IB_ERR_INTERNAL, "%s: output shape mismatch", ib__node_label(c->node));
        if (y->shape[d] == 0) return IB_OK;
        if (x->shape[d] == 0 && m != PAD_CONSTANT)
            return ib__error(IB_ERR_SHAPE, "%s: cannot pad an empty dim %d in this mode",
                             ib__node_label(c->node), d);
        total_map += y->shape[d];
    }
    if (x->rank == 0) {
        memcpy(y->data, x->data, es);
        return IB_OK;
    }
    int64_t *maps = ib__aligned_alloc(sizeof(int64_t) * (size_t)total_map);
    if (!maps) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    pad_job j;
    memset(&j, 0, sizeof j);
    j.src = x->data;
    j.dst = y->data;
    j.fill = (const char *)fill;
    j.es = es;
    j.rank = x->rank;
    ib__strides(x->shape, x->rank, j.in_strides);
    int64_t *mp = maps;
    for (int32_t d = 0; d < x->rank; d++) {
        j.out_dims[d] = y->shape[d];
        j.map[d] = mp;
        for (int64_t i = 0; i < y->shape[d]; i++)
            mp[i] = x->shape[d] == 0 ? -1 : pad_source(m, i - begin[d], x->shape[d]);
        mp += y->shape[d];
    }
    int32_t last = x->rank - 1;
    int64_t lo = begin[last] > 0 ? begin[last] : 0;
    int64_t hi = begin[last] + x->shape[last];
    if (hi > y->shape[last]) hi = y->shape[last];
    j.inner_lo = lo;
    j.inner_hi = hi > lo ? hi : lo;
    j.inner_shift = begin[last];
    int64_t rows = count_of(y->shape, 0, last);
    if ((int64_t)y->nbytes < (1 << 18))
        pad_rows(&j, 0, rows);
    else
        ib__parallel_for(c->pool, rows, pad_rows, &j);
    ib__aligned_free(maps);
    return IB_OK;
}

/* ---- Compress ------------------------------------------------------------------------ */

static bool nonzero_at(const void *data, ib_dtype dt, int64_t i) {
    switch (dt) {
    case IB_DTYPE_BOOL:
    case IB_DTYPE_UINT8:
    case IB_DTYPE_INT8: return ((const uint8_t *)data)[i] != 0;
    case IB_DTYPE_FLOAT32: return ((const float *)data)[i] != 0.0f;
    case IB_DTYPE_INT64:
    case IB_DTYPE_UINT64: return ((const uint64_t *)data)[i] != 0;
    case IB_DTYPE_INT32:
    case IB_DTYPE_UINT32: return ((const uint32_t *)data)[i] != 0;
    default: return ib__load_f64(data, dt, i) != 0.0;
    }
}

static bool numeric_dtype(ib_dtype dt) {
    return ib__dtype_is_float(dt) || ib__dtype_is_integer(dt) || dt == IB_DTYPE_BOOL;
}

/* Number of kept slices for a condition over an axis of length `len`. */
static ib_status compress_count(const ib__node *node, const ib_tensor *cond, int64_t len,
                                int64_t *out) {
    if (!numeric_dtype(cond->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: condition must be bool", ib__node_label(node));
    if (cond->rank != 1)
        return ib__error(IB_ERR_SHAPE, "%s: condition must be 1-D", ib__node_label(node));
    int64_t n = cond->shape[0], k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!nonzero_at(cond->data, cond->dtype, i)) continue;
        if (i >= len)
            return ib__error(IB_ERR_INVALID_ARGUMENT, "%s: condition selects index %lld of %lld",
                             ib__node_label(node), (long long)i, (long long)len);
        k++;
    }
    *out = k;
    return IB_OK;
}

static ib_status infer_compress(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0], *cv = c->in[1];
    const ib__attr *aa = ib__node_attr(c->node, "axis");
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    if (cv->rank >= 0 && cv->rank != 1)
        return ib__error(IB_ERR_SHAPE, "%s: condition must be 1-D", ib__node_label(c->node));
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, aa ? -1 : 1, NULL);
        if (!aa && c->out[0]) c->out[0]->rank = 1;
        return IB_OK;
    }
    int32_t ax = -1;
    if (aa) IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    int64_t len = aa ? x->dims[ax] : ib__shape_count(x->dims, x->rank);
    int64_t k = -1;
    if (cv->constant && len >= 0) IB_TRY(compress_count(c->node, cv->constant, len, &k));
    if (!aa) {
        ib__set_output(c, 0, x->dtype, 1, &k);
        return IB_OK;
    }
    ib__set_output_like(c, 0, x);
    if (c->out[0]) {
        c->out[0]->dims[ax] = k;
        c->out[0]->dim_param[ax] = NULL;
    }
    return IB_OK;
}

static ib_status run_compress(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *cond = c->in[1];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    const ib__attr *aa = ib__node_attr(c->node, "axis");
    int64_t axis, outer = 1, len, inner = 1;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    if (aa) {
        int32_t ax;
        IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
        outer = count_of(x->shape, 0, ax);
        len = x->shape[ax];
        inner = count_of(x->shape, ax + 1, x->rank);
    } else {
        len = ib_tensor_element_count(x);
    }
    int64_t k;
    IB_TRY(compress_count(c->node, cond, len, &k));
    if ((size_t)(outer * k * inner) * es != y->nbytes)
        return ib__error(IB_ERR_INTERNAL, "%s: output size mismatch", ib__node_label(c->node));
    size_t chunk = (size_t)inner * es;
    char *dst = y->data;
    int64_t n = cond->shape[0] < len ? cond->shape[0] : len;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < n; i++) {
            if (!nonzero_at(cond->data, cond->dtype, i)) continue;
            memcpy(dst, (const char *)x->data + (size_t)(o * len + i) * chunk, chunk);
            dst += chunk;
        }
    return IB_OK;
}

/* ---- OneHot -------------------------------------------------------------------------- */

static ib_status onehot_depth(const ib__node *node, const ib_tensor *t, int64_t *out) {
    if (!numeric_dtype(t->dtype) || ib_tensor_element_count(t) != 1 ||
        t->nbytes < ib_dtype_size(t->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: depth must hold one number",
                         ib__node_label(node));
    double d = ib__load_f64(t->data, t->dtype, 0);
    if (!(d >= 1.0) || d > (double)IB_MAX_ELEMENTS)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: depth %g is invalid", ib__node_label(node), d);
    *out = ib__dtype_is_float(t->dtype) ? (int64_t)d : ib__load_i64(t->data, t->dtype, 0);
    return IB_OK;
}

static ib_status infer_one_hot(ib__infer_ctx *c) {
    for (int32_t i = 0; i < 3; i++) IB_TRY(ib__require_input(c, i));
    const ib__value *ix = c->in[0], *dv = c->in[1], *vv = c->in[2];
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", -1, &axis));
    if (vv->rank >= 0 && (vv->rank != 1 || (vv->dims[0] >= 0 && vv->dims[0] != 2)))
        return ib__error(IB_ERR_SHAPE, "%s: values must hold [off, on]", ib__node_label(c->node));
    if (ix->rank < 0) {
        ib__set_output(c, 0, vv->dtype, -1, NULL);
        return IB_OK;
    }
    int32_t r = ix->rank + 1;
    IB_TRY(check_rank(c, r));
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, r, &ax));
    int64_t depth = -1;
    if (dv->constant) IB_TRY(onehot_depth(c->node, dv->constant, &depth));
    int64_t dims[IB_MAX_RANK];
    bool all_known = true;
    for (int32_t d = 0, s = 0; d < r; d++) {
        dims[d] = d == ax ? depth : ix->dims[s++];
        all_known &= dims[d] >= 0;
    }
    if (all_known && ib__shape_count(dims, r) < 0)
        return ib__error(IB_ERR_SHAPE, "%s: output is too large", ib__node_label(c->node));
    ib__set_output(c, 0, vv->dtype, r, dims);
    return IB_OK;
}

static ib_status run_one_hot(ib__run_ctx *c) {
    const ib_tensor *ix = c->in[0], *dv = c->in[1], *vv = c->in[2];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, vv->dtype, &es));
    if (!numeric_dtype(ix->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: indices must be numeric", ib__node_label(c->node));
    if (ib_tensor_element_count(vv) != 2 || vv->dtype != y->dtype)
        return ib__error(IB_ERR_SHAPE, "%s: values must hold [off, on]", ib__node_label(c->node));
    int64_t depth, axis;
    IB_TRY(onehot_depth(c->node, dv, &depth));
    IB_TRY(ib__attr_int(c->node, "axis", -1, &axis));
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, ix->rank + 1, &ax));
    int64_t outer = count_of(ix->shape, 0, ax), inner = count_of(ix->shape, ax, ix->rank);
    if ((size_t)(outer * depth * inner) * es != y->nbytes)
        return ib__error(IB_ERR_INTERNAL, "%s: output size mismatch", ib__node_label(c->node));
    const char *off = vv->data, *on = (const char *)vv->data + es;
    int64_t total = outer * depth * inner;
    for (int64_t i = 0; i < total; i++) memcpy((char *)y->data + (size_t)i * es, off, es);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++) {
            int64_t k = o * inner + i;
            int64_t v = ib__load_i64(ix->data, ix->dtype, k); /* floats truncate, saturating */
            if (v < 0) v += depth;
            if (v < 0 || v >= depth) continue; /* out of range: the row stays off */
            memcpy((char *)y->data + (size_t)((o * depth + v) * inner + i) * es, on, es);
        }
    return IB_OK;
}

/* ---- NonZero ------------------------------------------------------------------------- */

static int64_t nonzero_count(const ib_tensor *t) {
    int64_t n = ib_tensor_element_count(t), k = 0;
    for (int64_t i = 0; i < n; i++) k += nonzero_at(t->data, t->dtype, i);
    return k;
}

static ib_status infer_non_zero(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    if (x->dtype != IB_DTYPE_UNDEFINED && !numeric_dtype(x->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: dtype %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    /* A scalar counts as a 1-element vector (numpy's behaviour). */
    int64_t dims[2] = {x->rank < 0 ? -1 : x->rank == 0 ? 1 : x->rank, -1};
    if (x->constant) dims[1] = nonzero_count(x->constant);
    ib__set_output(c, 0, IB_DTYPE_INT64, 2, dims);
    return IB_OK;
}

static ib_status run_non_zero(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    if (!numeric_dtype(x->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: dtype %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    int64_t nnz = y->shape[1], n = ib_tensor_element_count(x), k = 0;
    int32_t r = x->rank == 0 ? 1 : x->rank;
    if (y->shape[0] != r || nonzero_count(x) != nnz)
        return ib__error(IB_ERR_INTERNAL, "%s: output shape mismatch", ib__node_label(c->node));
    int64_t *out = y->data;
    int64_t idx[IB_MAX_RANK] = {0};
    for (int64_t i = 0; i < n; i++) {
        if (nonzero_at(x->data, x->dtype, i)) {
            for (int32_t d = 0; d < r; d++) out[d * nnz + k] = x->rank == 0 ? 0 : idx[d];
            k++;
        }
        for (int32_t d = x->rank - 1; d >= 0; d--) {
            if (++idx[d] < x->shape[d]) break;
            idx[d] = 0;
        }
    }
    return IB_OK;
}

/* ---- Trilu --------------------------------------------------------------------------- */

static ib_status infer_trilu(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0], *kv = ib__in(c, 1);
    if (x->rank >= 0 && x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: input must have rank >= 2", ib__node_label(c->node));
    if (kv && kv->rank > 0 && !(kv->rank == 1 && (kv->dims[0] == 1 || kv->dims[0] < 0)))
        return ib__error(IB_ERR_SHAPE, "%s: k must be a scalar", ib__node_label(c->node));
    ib__set_output_like(c, 0, x);
    return IB_OK;
}

static ib_status run_trilu(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    int64_t upper, k = 0;
    IB_TRY(ib__attr_int(c->node, "upper", 1, &upper));
    if (c->n_in > 1 && c->in[1]) {
        const ib_tensor *kt = c->in[1];
        int64_t cnt;
        IB_TRY(tensor_ints(c->node, "k", kt, &k, 1, &cnt));
        if (cnt != 1)
            return ib__error(IB_ERR_SHAPE, "%s: k must hold one value", ib__node_label(c->node));
    }
    int64_t rows = x->shape[x->rank - 2], cols = x->shape[x->rank - 1];
    int64_t mats = count_of(x->shape, 0, x->rank - 2);
    memset(y->data, 0, y->nbytes);
    for (int64_t m = 0; m < mats; m++)
        for (int64_t i = 0; i < rows; i++) {
            /* keep columns j with j - i >= k (upper) or j - i <= k (lower) */
            int64_t lo, hi;
            if (upper) {
                lo = (k > INT64_MAX - i) ? cols : i + k;
                hi = cols;
            } else {
                lo = 0;
                hi = (k > INT64_MAX - i - 1) ? cols : i + k + 1;
            }
            if (lo < 0) lo = 0;
            if (hi > cols) hi = cols;
            if (hi <= lo) continue;
            size_t off = (size_t)((m * rows + i) * cols + lo) * es;
            memcpy((char *)y->data + off, (const char *)x->data + off, (size_t)(hi - lo) * es);
        }
    return IB_OK;
}

/* ---- ReverseSequence ----------------------------------------------------------------- */

static ib_status revseq_axes(const ib__node *node, int64_t *batch, int64_t *time) {
    IB_TRY(ib__attr_int(node, "batch_axis", 1, batch));
    IB_TRY(ib__attr_int(node, "time_axis", 0, time));
    if ((*batch != 0 && *batch != 1) || (*time != 0 && *time != 1) || *batch == *time)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: batch_axis and time_axis must be 0 and 1",
                         ib__node_label(node));
    return IB_OK;
}

static ib_status infer_reverse_sequence(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0], *sl = c->in[1];
    int64_t b, t;
    IB_TRY(revseq_axes(c->node, &b, &t));
    IB_TRY(check_index_dtype(c->node, "sequence_lens", sl->dtype));
    if (x->rank >= 0 && x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: input must have rank >= 2", ib__node_label(c->node));
    if (x->rank >= 0 && sl->rank >= 0 &&
        (sl->rank != 1 || (sl->dims[0] >= 0 && x->dims[b] >= 0 && sl->dims[0] != x->dims[b])))
        return ib__error(IB_ERR_SHAPE, "%s: sequence_lens must be 1-D over the batch",
                         ib__node_label(c->node));
    ib__set_output_like(c, 0, x);
    return IB_OK;
}

static ib_status run_reverse_sequence(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *sl = c->in[1];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    IB_TRY(check_index_dtype(c->node, "sequence_lens", sl->dtype));
    int64_t b, t;
    IB_TRY(revseq_axes(c->node, &b, &t));
    if (x->rank < 2 || sl->rank != 1 || sl->shape[0] != x->shape[b])
        return ib__error(IB_ERR_SHAPE, "%s: sequence_lens must be 1-D over the batch",
                         ib__node_label(c->node));
    int64_t B = x->shape[b], T = x->shape[t];
    int64_t inner = count_of(x->shape, 2, x->rank);
    size_t chunk = (size_t)inner * es;
    /* offset of (batch i, time j) in units of chunk */
    int64_t sb = b == 0 ? T : 1, st = t == 0 ? B : 1;
    for (int64_t i = 0; i < B; i++) {
        int64_t len = load_index(sl, i);
        if (len < 0 || len > T)
            return ib__error(IB_ERR_INVALID_ARGUMENT, "%s: sequence_lens[%lld] = %lld is outside [0, %lld]",
                             ib__node_label(c->node), (long long)i, (long long)len, (long long)T);
        for (int64_t j = 0; j < T; j++) {
            int64_t from = j < len ? len - 1 - j : j;
            memcpy((char *)y->data + (size_t)(i * sb + j * st) * chunk,
                   (const char *)x->data + (size_t)(i * sb + from * st) * chunk, chunk);
        }
    }
    return IB_OK;
}

/* ---- Unique -------------------------------------------------------------------------- */

typedef struct unique_ctx {
    const void *data;
    ib_dtype dt;
    int64_t outer, len, inner; /* data viewed as [outer, len, inner]; slices along len */
} unique_ctx;

static int cmp_elem(const void *data, ib_dtype dt, int64_t a, int64_t b) {
    if (ib__dtype_is_float(dt)) {
        double x = ib__load_f64(data, dt, a), y = ib__load_f64(data, dt, b);
        if (x < y) return -1;
        if (x > y) return 1;
        if (x == y) return 0;
        return (x != x) - (y != y); /* NaNs sort last and equal each other */
    }
    if (dt == IB_DTYPE_UINT64) {
        uint64_t x = ((const uint64_t *)data)[a], y = ((const uint64_t *)data)[b];
        return (x > y) - (x < y);
    }
    int64_t x = ib__load_i64(data, dt, a), y = ib__load_i64(data, dt, b);
    return (x > y) - (x < y);
}

/* Lexicographic comparison of slices a and b (positions along the unique axis). */
static int cmp_slice(const unique_ctx *u, int64_t a, int64_t b) {
    for (int64_t o = 0; o < u->outer; o++) {
        int64_t base = o * u->len * u->inner;
        for (int64_t i = 0; i < u->inner; i++) {
            int r = cmp_elem(u->data, u->dt, base + a * u->inner + i, base + b * u->inner + i);
            if (r) return r;
        }
    }
    return 0;
}

/* Stable merge sort of positions; keeps first occurrences first among equals. */
static void sort_slices(const unique_ctx *u, int64_t *v, int64_t *tmp, int64_t n) {
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n;
            int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) tmp[k++] = cmp_slice(u, v[j], v[i]) < 0 ? v[j++] : v[i++];
            while (i < mid) tmp[k++] = v[i++];
            while (j < hi) tmp[k++] = v[j++];
        }
        memcpy(v, tmp, sizeof(int64_t) * (size_t)n);
    }
}

typedef struct unique_result {
    int64_t n_unique;
    int64_t *first;   /* [n_unique] position of each unique slice, in output order */
    int64_t *count;   /* [n_unique] */
    int64_t *inverse; /* [len] output index of each position */
    void *block;
} unique_result;

static void unique_free(unique_result *r) {
    ib__aligned_free(r->block);
    memset(r, 0, sizeof *r);
}

static ib_status unique_axis(const ib__node *node, const ib_tensor *x, int32_t *ax) {
    const ib__attr *aa = ib__node_attr(node, "axis");
    *ax = -1;
    if (!aa) return IB_OK;
    int64_t axis;
    IB_TRY(ib__attr_int(node, "axis", 0, &axis));
    return ib__normalize_axis(node, axis, x->rank, ax);
}

static ib_status unique_compute(const ib__node *node, const ib_tensor *x, unique_result *r) {
    memset(r, 0, sizeof *r);
    if (!numeric_dtype(x->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: dtype %s is not supported",
                         ib__node_label(node), ib_dtype_name(x->dtype));
    int32_t ax;
    IB_TRY(unique_axis(node, x, &ax));
    int64_t is_sorted;
    IB_TRY(ib__attr_int(node, "sorted", 1, &is_sorted));
    unique_ctx u = {x->data, x->dtype, 1, ib_tensor_element_count(x), 1};
    if (ax >= 0) {
        u.outer = count_of(x->shape, 0, ax);
        u.len = x->shape[ax];
        u.inner = count_of(x->shape, ax + 1, x->rank);
    }
    int64_t n = u.len;
    r->block = ib__aligned_alloc(sizeof(int64_t) * (size_t)(9 * n + 1));
    if (!r->block) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(node));
    int64_t *order = r->block, *tmp = order + n, *gid = tmp + n, *gfirst = gid + n;
    int64_t *gcount = gfirst + n, *out_of = gcount + n;
    r->first = out_of + n;
    r->count = r->first + n;
    r->inverse = r->count + n;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    sort_slices(&u, order, tmp, n);
    int64_t g = -1;
    for (int64_t i = 0; i < n; i++) {
        if (i == 0 || cmp_slice(&u, order[i - 1], order[i]) != 0) {
            g++;
            gfirst[g] = order[i]; /* the sort is stable: the first occurrence */
            gcount[g] = 0;
        }
        gcount[g]++;
        gid[order[i]] = g;
    }
    r->n_unique = g + 1;
    if (is_sorted) {
        for (int64_t k = 0; k < r->n_unique; k++) out_of[k] = k;
    } else { /* groups in order of first occurrence */
        int64_t m = 0;
        for (int64_t p = 0; p < n; p++)
            if (gfirst[gid[p]] == p) out_of[gid[p]] = m++;
    }
    for (int64_t k = 0; k < r->n_unique; k++) {
        r->first[out_of[k]] = gfirst[k];
        r->count[out_of[k]] = gcount[k];
    }
    for (int64_t p = 0; p < n; p++) r->inverse[p] = out_of[gid[p]];
    return IB_OK;
}

static ib_status infer_unique(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    int64_t is_sorted;
    IB_TRY(ib__attr_int(c->node, "sorted", 1, &is_sorted));
    const ib__attr *aa = ib__node_attr(c->node, "axis");
    int32_t ax = -1;
    if (aa && x->rank >= 0) {
        int64_t axis;
        IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
        IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    }
    int64_t u = -1, len = -1;
    if (x->rank >= 0) len = aa ? x->dims[ax] : ib__shape_count(x->dims, x->rank);
    if (x->constant) {
        unique_result r;
        IB_TRY(unique_compute(c->node, x->constant, &r));
        u = r.n_unique;
        unique_free(&r);
    }
    if (aa) {
        ib__set_output_like(c, 0, x);
        if (x->rank >= 0 && c->out[0]) {
            c->out[0]->dims[ax] = u;
            c->out[0]->dim_param[ax] = NULL;
        }
    } else {
        ib__set_output(c, 0, x->dtype, 1, &u);
    }
    ib__set_output(c, 1, IB_DTYPE_INT64, 1, &u);
    ib__set_output(c, 2, IB_DTYPE_INT64, 1, &len);
    ib__set_output(c, 3, IB_DTYPE_INT64, 1, &u);
    return IB_OK;
}

static ib_status run_unique(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    unique_result r;
    IB_TRY(unique_compute(c->node, x, &r));
    int32_t ax;
    ib_status st = unique_axis(c->node, x, &ax);
    int64_t outer = 1, len = ib_tensor_element_count(x), inner = 1;
    if (st == IB_OK && ax >= 0) {
        outer = count_of(x->shape, 0, ax);
        len = x->shape[ax];
        inner = count_of(x->shape, ax + 1, x->rank);
    }
    ib_tensor *y = c->out[0];
    if (st == IB_OK && y) {
        if ((size_t)(outer * r.n_unique * inner) * es != y->nbytes) {
            st = ib__error(IB_ERR_INTERNAL, "%s: output size mismatch", ib__node_label(c->node));
        } else {
            size_t chunk = (size_t)inner * es;
            for (int64_t o = 0; o < outer; o++)
                for (int64_t k = 0; k < r.n_unique; k++)
                    memcpy((char *)y->data + (size_t)(o * r.n_unique + k) * chunk,
                           (const char *)x->data + (size_t)(o * len + r.first[k]) * chunk, chunk);
        }
    }
    const int64_t *src[3] = {r.first, r.inverse, r.count};
    int64_t n[3] = {r.n_unique, len, r.n_unique};
    for (int32_t k = 0; st == IB_OK && k < 3; k++) {
        ib_tensor *t = k + 1 < c->n_out ? c->out[k + 1] : NULL;
        if (!t) continue;
        if (t->dtype != IB_DTYPE_INT64 || ib_tensor_element_count(t) != n[k])
            st = ib__error(IB_ERR_INTERNAL, "%s: output %d size mismatch", ib__node_label(c->node),
                           k + 1);
        else if (n[k])
            memcpy(t->data, src[k], sizeof(int64_t) * (size_t)n[k]);
    }
    unique_free(&r);
    return st;
}

const ib__op_def ib__ops_indexing[] = {
    {IB_OP_GATHER, infer_gather, run_gather, false},
    {IB_OP_GATHER_ELEMENTS, infer_gather_elements, run_gather_elements, false},
    {IB_OP_GATHER_ND, infer_gather_nd, run_gather_nd, false},
    {IB_OP_SCATTER, infer_scatter_elements, run_scatter_elements, false},
    {IB_OP_SCATTER_ELEMENTS, infer_scatter_elements, run_scatter_elements, false},
    {IB_OP_SCATTER_ND, infer_scatter_nd, run_scatter_nd, false},
    {IB_OP_SLICE, infer_slice, run_slice, false},
    {IB_OP_PAD, infer_pad, run_pad, false},
    {IB_OP_COMPRESS, infer_compress, run_compress, false},
    {IB_OP_ONE_HOT, infer_one_hot, run_one_hot, false},
    {IB_OP_NON_ZERO, infer_non_zero, run_non_zero, false},
    {IB_OP_TRILU, infer_trilu, run_trilu, false},
    {IB_OP_REVERSE_SEQUENCE, infer_reverse_sequence, run_reverse_sequence, false},
    {IB_OP_UNIQUE, infer_unique, run_unique, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
