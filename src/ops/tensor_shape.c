/* Shape and layout ops that move bytes without arithmetic: Reshape, Flatten, Squeeze,
 * Unsqueeze, Shape, Size, Transpose, Expand, Tile, Concat, Split, Identity, Dropout
 * (inference), Constant, ConstantOfShape, Range, EyeLike, DepthToSpace, SpaceToDepth. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

/* Views with up to twice the tensor rank (Tile, DepthToSpace) pass through here. */
#define MAX_VIEW_RANK (2 * IB_MAX_RANK)

/* ---- Strided copy: the engine behind Transpose, Expand, Tile and the depth ops ----- */

typedef struct strided_job {
    char *dst;
    const char *src;
    int32_t rank; /* after simplification; the last dim is the inner run */
    int64_t dims[MAX_VIEW_RANK];
    int64_t strides[MAX_VIEW_RANK]; /* source strides in elements (0: broadcast) */
    size_t es;
} strided_job;

static void copy_run(char *dst, const char *src, int64_t n, int64_t stride, size_t es) {
    if (stride == 1) {
        memcpy(dst, src, (size_t)n * es);
        return;
    }
    switch (es) {
    case 1:
        for (int64_t i = 0; i < n; i++) dst[i] = src[i * stride];
        break;
    case 2: {
        uint16_t *d = (uint16_t *)dst;
        const uint16_t *s = (const uint16_t *)src;
        for (int64_t i = 0; i < n; i++) d[i] = s[i * stride];
        break;
    }
    case 4: {
        uint32_t *d = (uint32_t *)dst;
        const uint32_t *s = (const uint32_t *)src;
        for (int64_t i = 0; i < n; i++) d[i] = s[i * stride];
        break;
    }
    case 8: {
        uint64_t *d = (uint64_t *)dst;
        const uint64_t *s = (const uint64_t *)src;
        for (int64_t i = 0; i < n; i++) d[i] = s[i * stride];
        break;
    }
    default:
        for (int64_t i = 0; i < n; i++)
            memcpy(dst + (size_t)i * es, src + (i * stride) * (int64_t)es, es);
        break;
    }
}

/* Copies rows [begin, end) of the outer iteration space. */
static void strided_rows(void *ctx, int64_t begin, int64_t end) {
    const strided_job *j = ctx;
    int32_t outer = j->rank - 1;
    int64_t inner = j->dims[outer], istride = j->strides[outer];
    int64_t idx[MAX_VIEW_RANK];
    int64_t rem = begin, off = 0;
    for (int32_t d = outer - 1; d >= 0; d--) {
        idx[d] = rem % j->dims[d];
        rem /= j->dims[d];
        off += idx[d] * j->strides[d];
    }
    size_t row_bytes = (size_t)inner * j->es;
    for (int64_t r = begin; r < end; r++) {
        copy_run(j->dst + (size_t)r * row_bytes, j->src + off * (int64_t)j->es, inner, istride,
                 j->es);
        for (int32_t d = outer - 1; d >= 0; d--) {
            off += j->strides[d];
            if (++idx[d] < j->dims[d]) break;
            off -= idx[d] * j->strides[d];
            idx[d] = 0;
        }
    }
}

/* Transposes of a 2-D pair of dims in cache-sized tiles: dim p reads the source
 * contiguously, the last (output-contiguous) dim reads it with a large stride. A plain
 * row walk would touch a new cache line per element on one side. */
typedef struct tiled_job {
    char *dst;
    const char *src;
    size_t es;
    int32_t n_outer; /* the other dims, outermost first */
    int64_t odims[MAX_VIEW_RANK], osrc[MAX_VIEW_RANK], odst[MAX_VIEW_RANK];
    int64_t rows, cols;   /* dims[p] and dims[last] */
    int64_t col_src;      /* source stride of the last dim (the rows' stride is 1) */
    int64_t row_dst;      /* destination stride of dim p (the cols' stride is 1) */
    int64_t row_blocks;
} tiled_job;

enum { TILE = 32 };

/* Each tile goes through a small buffer so that both the reads and the writes run
 * along contiguous memory; power-of-two strides would otherwise thrash the L1 sets. */
#define TILE_LOOP(T)                                                                   \
    do {                                                                               \
        T *d_ = (T *)dst;                                                              \
        const T *s_ = (const T *)src;                                                  \
        T buf_[TILE * TILE];                                                           \
        for (int64_t c0 = 0; c0 < j->cols; c0 += TILE) {                               \
            int64_t c1 = c0 + TILE < j->cols ? c0 + TILE : j->cols;                    \
            for (int64_t cc = c0; cc < c1; cc++) {                                     \
                const T *sr_ = s_ + cc * j->col_src;                                   \
                T *b_ = buf_ + (cc - c0) * TILE - r0;                                  \
                for (int64_t r = r0; r < r1; r++) b_[r] = sr_[r];                      \
            }                                                                          \
            for (int64_t r = r0; r < r1; r++) {                                        \
                T *dr_ = d_ + r * j->row_dst;                                          \
                const T *b_ = buf_ + (r - r0) - c0 * TILE;                             \
                for (int64_t cc = c0; cc < c1; cc++) dr_[cc] = b_[cc * TILE];          \
            }                                                                          \
        }                                                                              \
    } while (0)

static void tiled_blocks(void *ctx, int64_t begin, int64_t end) {
    const tiled_job *j = ctx;
    for (int64_t t = begin; t < end; t++) {
        int64_t outer = t / j->row_blocks, rb = t % j->row_blocks;
        int64_t so = 0, dof = 0, rem = outer;
        for (int32_t d = j->n_outer - 1; d >= 0; d--) {
            int64_t i = rem % j->odims[d];
            rem /= j->odims[d];
            so += i * j->osrc[d];
            dof += i * j->odst[d];
        }
        char *dst = j->dst + (size_t)dof * j->es;
        const char *src = j->src + so * (int64_t)j->es;
        int64_t r0 = rb * TILE, r1 = r0 + TILE < j->rows ? r0 + TILE : j->rows;
        switch (j->es) {
        case 1: TILE_LOOP(uint8_t); break;
        case 2: TILE_LOOP(uint16_t); break;
        case 4: TILE_LOOP(uint32_t); break;
        case 8: TILE_LOOP(uint64_t); break;
        default:
            for (int64_t r = r0; r < r1; r++)
                for (int64_t cc = 0; cc < j->cols; cc++)
                    memcpy(dst + (size_t)(r * j->row_dst + cc) * j->es,
                           src + (r + cc * j->col_src) * (int64_t)j->es, j->es);
            break;
        }
    }
}

/* Uses the tiled path when the output's last dim reads the source with a stride and
 * another dim reads it contiguously; returns false when the layout is not like that. */
static bool tiled_copy(const strided_job *s, ib__pool *pool) {
    int32_t last = s->rank - 1, p = -1;
    if (s->rank < 2 || s->strides[last] == 1 || s->dims[last] < 4) return false;
    for (int32_t d = last - 1; d >= 0; d--)
        if (s->strides[d] == 1) {
            p = d;
            break;
        }
    if (p < 0 || s->dims[p] < 4) return false;
    tiled_job j;
    j.dst = s->dst;
    j.src = s->src;
    j.es = s->es;
    int64_t dstr[MAX_VIEW_RANK], acc = 1;
    for (int32_t d = last; d >= 0; d--) {
        dstr[d] = acc;
        acc *= s->dims[d];
    }
    j.n_outer = 0;
    for (int32_t d = 0; d < last; d++) {
        if (d == p) continue;
        j.odims[j.n_outer] = s->dims[d];
        j.osrc[j.n_outer] = s->strides[d];
        j.odst[j.n_outer] = dstr[d];
        j.n_outer++;
    }
    j.rows = s->dims[p];
    j.cols = s->dims[last];
    j.col_src = s->strides[last];
    j.row_dst = dstr[p];
    j.row_blocks = (j.rows + TILE - 1) / TILE;
    int64_t outer = 1;
    for (int32_t d = 0; d < j.n_outer; d++) outer *= j.odims[d];
    int64_t tasks = outer * j.row_blocks;
    if (acc * (int64_t)s->es < (1 << 18))
        tiled_blocks(&j, 0, tasks);
    else
        ib__parallel_for(pool, tasks, tiled_blocks, &j);
    return true;
}

void ib__strided_copy(void *dst, const void *src, int32_t rank, const int64_t *dims,
                         const int64_t *strides, size_t es, ib__pool *pool) {
    strided_job j;
    j.dst = dst;
    j.src = src;
    j.es = es;
    j.rank = 0;
    for (int32_t d = 0; d < rank; d++) {
        if (dims[d] == 0) return;
        if (dims[d] == 1) continue;
        if (j.rank > 0 && j.strides[j.rank - 1] == strides[d] * dims[d]) {
            j.dims[j.rank - 1] *= dims[d]; /* merge with the previous dim */
            j.strides[j.rank - 1] = strides[d];
            continue;
        }
        j.dims[j.rank] = dims[d];
        j.strides[j.rank] = strides[d];
        j.rank++;
    }
    if (j.rank == 0) {
        j.dims[0] = 1;
        j.strides[0] = 1;
        j.rank = 1;
    }
    if (tiled_copy(&j, pool)) return;
    int64_t rows = 1;
    for (int32_t d = 0; d < j.rank - 1; d++) rows *= j.dims[d];
    int64_t total = rows * j.dims[j.rank - 1];
    if (total * (int64_t)es < (1 << 18) || rows < 2)
        strided_rows(&j, 0, rows);
    else
        ib__parallel_for(pool, rows, strided_rows, &j);
}

/* ---- Small shared helpers ----------------------------------------------------------- */

/* Bytes per element, refusing dtypes whose elements are not fixed-size. */
static ib_status elem_size(const ib__node *node, ib_dtype dt, size_t *out) {
    size_t es = ib_dtype_size(dt);
    if (es == 0)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: dtype %s is not supported",
                         ib__node_label(node), ib_dtype_name(dt));
    *out = es;
    return IB_OK;
}

/* Reads a constant integer input of at most `cap` elements. Absent or non-constant:
 * *known = false. A 1-D input holding more than cap values is unsupported (rank). */
static ib_status const_ints_in(const ib__infer_ctx *c, int32_t i, int64_t *buf, int64_t cap,
                               int64_t *count, bool *known) {
    const ib__value *v = ib__in(c, i);
    *known = false;
    *count = 0;
    if (!v || !v->constant) return IB_OK;
    const ib_tensor *t = v->constant;
    if (t->dtype != IB_DTYPE_INT64 && t->dtype != IB_DTYPE_INT32)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input %d should be int64, not %s",
                         ib__node_label(c->node), i, ib_dtype_name(t->dtype));
    int64_t n = ib_tensor_element_count(t);
    if (n < 0 || n > cap)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: input %d holds %lld values (at most %lld)",
                         ib__node_label(c->node), i, (long long)n, (long long)cap);
    if (t->nbytes < (size_t)n * ib_dtype_size(t->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input %d data is truncated",
                         ib__node_label(c->node), i);
    for (int64_t k = 0; k < n; k++) buf[k] = ib__load_i64(t->data, t->dtype, k);
    *count = n;
    *known = true;
    return IB_OK;
}

/* Element count of a value, -1 when unknown. */
static int64_t value_count(const ib__value *v) {
    if (v->rank < 0) return -1;
    return ib__shape_count(v->dims, v->rank);
}

static ib_status check_rank(const ib__infer_ctx *c, int64_t rank) {
    if (rank > IB_MAX_RANK)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: output rank %lld exceeds %d",
                         ib__node_label(c->node), (long long)rank, IB_MAX_RANK);
    return IB_OK;
}

/* A product of known dims with the overflow limit every tensor obeys. */
static ib_status checked_mul(const ib__infer_ctx *c, int64_t a, int64_t b, int64_t *out) {
    if (a < 0 || b < 0) {
        *out = -1;
        return IB_OK;
    }
    if (ib__mul_overflow_i64(a, b, out) || *out > IB_MAX_ELEMENTS)
        return ib__error(IB_ERR_SHAPE, "%s: output shape is too large", ib__node_label(c->node));
    return IB_OK;
}

/* Copies the whole input into an output of the same byte size. */
static ib_status run_copy(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    if (!y) return IB_OK;
    size_t n = x->nbytes < y->nbytes ? x->nbytes : y->nbytes;
    if (x->nbytes != y->nbytes)
        return ib__error(IB_ERR_SHAPE, "%s: input has %zu bytes, output %zu",
                         ib__node_label(c->node), x->nbytes, y->nbytes);
    if (n && y->data != x->data) memcpy(y->data, x->data, n);
    return IB_OK;
}

/* ---- Reshape ------------------------------------------------------------------------ */

static ib_status infer_reshape(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    int64_t allowzero;
    IB_TRY(ib__attr_int(c->node, "allowzero", 0, &allowzero));
    int64_t shape[IB_MAX_RANK];
    int64_t n = 0;
    bool known = false;
    if (c->opset < 5) {
        int32_t cnt;
        const int64_t *s;
        IB_TRY(ib__attr_ints(c->node, "shape", &cnt, &s));
        IB_TRY(check_rank(c, cnt));
        memcpy(shape, s, sizeof(int64_t) * (size_t)cnt);
        n = cnt;
        known = true;
    } else {
        IB_TRY(ib__require_input(c, 1));
        const ib__value *sv = c->in[1];
        if (sv->rank > 1)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: shape input must be 1-D, has rank %d",
                             ib__node_label(c->node), sv->rank);
        IB_TRY(const_ints_in(c, 1, shape, IB_MAX_RANK, &n, &known));
        if (!known) {
            if (sv->rank == 1 && sv->dims[0] >= 0) {
                IB_TRY(check_rank(c, sv->dims[0]));
                ib__set_output(c, 0, x->dtype, (int32_t)sv->dims[0], NULL);
                if (c->out[0]) c->out[0]->rank = (int32_t)sv->dims[0];
            } else {
                ib__set_output(c, 0, x->dtype, -1, NULL);
            }
            return IB_OK;
        }
    }
    int64_t dims[IB_MAX_RANK];
    const char *params[IB_MAX_RANK] = {0};
    int32_t neg = -1;
    bool has_zero = false, prod_known = true;
    int64_t prod = 1;
    for (int32_t i = 0; i < (int32_t)n; i++) {
        int64_t v = shape[i];
        if (v == 0 && !allowzero) {
            if (x->rank >= 0 && i >= x->rank)
                return ib__error(IB_ERR_SHAPE, "%s: shape[%d] = 0 copies a dim the input (rank %d) lacks",
                                 ib__node_label(c->node), i, x->rank);
            dims[i] = x->rank >= 0 ? x->dims[i] : -1;
            if (x->rank >= 0) params[i] = x->dim_param[i];
        } else if (v == -1) {
            if (neg >= 0)
                return ib__error(IB_ERR_SHAPE, "%s: shape has more than one -1",
                                 ib__node_label(c->node));
            neg = i;
            dims[i] = -1;
            continue;
        } else if (v < -1) {
            return ib__error(IB_ERR_SHAPE, "%s: shape[%d] = %lld is invalid",
                             ib__node_label(c->node), i, (long long)v);
        } else {
            if (v == 0) has_zero = true;
            dims[i] = v;
        }
        if (dims[i] < 0)
            prod_known = false;
        else
            IB_TRY(checked_mul(c, prod, dims[i], &prod));
    }
    if (allowzero && has_zero && neg >= 0)
        return ib__error(IB_ERR_SHAPE, "%s: allowzero forbids 0 together with -1 in the shape",
                         ib__node_label(c->node));
    int64_t total = value_count(x);
    if (neg >= 0) {
        if (total >= 0 && prod_known) {
            if (prod == 0 || total % prod != 0)
                return ib__error(IB_ERR_SHAPE,
                                 "%s: cannot reshape %lld elements with the -1 dim (others make %lld)",
                                 ib__node_label(c->node), (long long)total, (long long)prod);
            dims[neg] = total / prod;
        }
    } else if (total >= 0 && prod_known && total != prod) {
        return ib__error(IB_ERR_SHAPE, "%s: cannot reshape %lld elements into %lld",
                         ib__node_label(c->node), (long long)total, (long long)prod);
    }
    ib__set_output(c, 0, x->dtype, (int32_t)n, dims);
    if (c->out[0])
        for (int32_t i = 0; i < (int32_t)n; i++)
            if (dims[i] < 0) c->out[0]->dim_param[i] = params[i];
    return IB_OK;
}

/* ---- Flatten ------------------------------------------------------------------------ */

static ib_status infer_flatten(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", 1, &axis));
    int64_t dims[2] = {-1, -1};
    if (x->rank >= 0) {
        if (axis < -(int64_t)x->rank || axis > x->rank)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: axis %lld is out of range for rank %d",
                             ib__node_label(c->node), (long long)axis, x->rank);
        if (axis < 0) axis += x->rank;
        dims[0] = dims[1] = 1;
        for (int32_t d = 0; d < x->rank; d++) {
            int64_t *p = d < axis ? &dims[0] : &dims[1];
            if (x->dims[d] < 0 || *p < 0)
                *p = -1;
            else
                IB_TRY(checked_mul(c, *p, x->dims[d], p));
        }
    }
    ib__set_output(c, 0, x->dtype, 2, dims);
    return IB_OK;
}

/* ---- Squeeze / Unsqueeze ------------------------------------------------------------ */

/* The axes of Squeeze/Unsqueeze: attribute before opset 13, input 1 from 13. */
static ib_status squeeze_axes(ib__infer_ctx *c, int64_t *axes, int64_t *n, bool *given,
                              bool *known) {
    *given = false;
    *known = true;
    *n = 0;
    if (c->opset < 13) {
        int32_t cnt;
        const int64_t *a;
        IB_TRY(ib__attr_ints(c->node, "axes", &cnt, &a));
        if (cnt > MAX_VIEW_RANK)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: too many axes (%d)", ib__node_label(c->node),
                             cnt);
        if (a) {
            memcpy(axes, a, sizeof(int64_t) * (size_t)cnt);
            *given = true;
        }
        *n = cnt;
        return IB_OK;
    }
    const ib__value *av = ib__in(c, 1);
    if (!av) return IB_OK;
    *given = true;
    IB_TRY(const_ints_in(c, 1, axes, MAX_VIEW_RANK, n, known));
    if (!*known && av->rank == 1 && av->dims[0] >= 0) *n = av->dims[0];
    else if (!*known) *n = -1;
    return IB_OK;
}

static ib_status infer_squeeze(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    int64_t axes[MAX_VIEW_RANK], n;
    bool given, known;
    IB_TRY(squeeze_axes(c, axes, &n, &given, &known));
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    if (!known) { /* which dims go is unknown; only the count may be */
        ib__set_output(c, 0, x->dtype, -1, NULL);
        if (n >= 0 && n <= x->rank && c->out[0]) c->out[0]->rank = x->rank - (int32_t)n;
        return IB_OK;
    }
    bool drop[IB_MAX_RANK] = {0};
    if (given && n > 0) {
        for (int64_t k = 0; k < n; k++) {
            int32_t a;
            IB_TRY(ib__normalize_axis(c->node, axes[k], x->rank, &a));
            if (drop[a])
                return ib__error(IB_ERR_INVALID_MODEL, "%s: axis %lld is repeated",
                                 ib__node_label(c->node), (long long)axes[k]);
            if (x->dims[a] >= 0 && x->dims[a] != 1)
                return ib__error(IB_ERR_SHAPE, "%s: cannot squeeze dim %d of size %lld",
                                 ib__node_label(c->node), a, (long long)x->dims[a]);
            drop[a] = true;
        }
    } else {
        for (int32_t d = 0; d < x->rank; d++) {
            if (x->dims[d] < 0) { /* might be 1: the result rank is unknown */
                ib__set_output(c, 0, x->dtype, -1, NULL);
                return IB_OK;
            }
            drop[d] = x->dims[d] == 1;
        }
    }
    int64_t dims[IB_MAX_RANK];
    const char *params[IB_MAX_RANK];
    int32_t r = 0;
    for (int32_t d = 0; d < x->rank; d++) {
        if (drop[d]) continue;
        params[r] = x->dim_param[d];
        dims[r++] = x->dims[d];
    }
    ib__set_output(c, 0, x->dtype, r, dims);
    if (c->out[0]) memcpy(c->out[0]->dim_param, params, sizeof(params[0]) * (size_t)r);
    return IB_OK;
}

static ib_status infer_unsqueeze(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    int64_t axes[MAX_VIEW_RANK], n;
    bool given, known;
    IB_TRY(squeeze_axes(c, axes, &n, &given, &known));
    if (!given)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: axes are required", ib__node_label(c->node));
    if (x->rank < 0 || !known) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        if (x->rank >= 0 && n >= 0 && c->out[0]) {
            IB_TRY(check_rank(c, x->rank + n));
            c->out[0]->rank = x->rank + (int32_t)n;
        }
        return IB_OK;
    }
    int64_t r64 = x->rank + n;
    IB_TRY(check_rank(c, r64));
    int32_t r = (int32_t)r64;
    bool add[IB_MAX_RANK] = {0};
    for (int64_t k = 0; k < n; k++) {
        int32_t a;
        IB_TRY(ib__normalize_axis(c->node, axes[k], r, &a));
        if (add[a])
            return ib__error(IB_ERR_INVALID_MODEL, "%s: axis %lld is repeated",
                             ib__node_label(c->node), (long long)axes[k]);
        add[a] = true;
    }
    int64_t dims[IB_MAX_RANK];
    const char *params[IB_MAX_RANK];
    for (int32_t d = 0, s = 0; d < r; d++) {
        params[d] = add[d] ? NULL : x->dim_param[s];
        dims[d] = add[d] ? 1 : x->dims[s++];
    }
    ib__set_output(c, 0, x->dtype, r, dims);
    if (c->out[0]) memcpy(c->out[0]->dim_param, params, sizeof(params[0]) * (size_t)r);
    return IB_OK;
}

/* ---- Shape / Size ------------------------------------------------------------------- */

static ib_status shape_range(const ib__node *node, int32_t opset, int32_t rank, int64_t *start,
                             int64_t *end) {
    *start = 0;
    *end = rank;
    if (opset < 15) return IB_OK;
    IB_TRY(ib__attr_int(node, "start", 0, start));
    IB_TRY(ib__attr_int(node, "end", rank, end));
    if (*start < 0) *start += rank;
    if (*end < 0) *end += rank;
    if (*start < 0) *start = 0;
    if (*start > rank) *start = rank;
    if (*end < 0) *end = 0;
    if (*end > rank) *end = rank;
    if (*end < *start) *end = *start;
    return IB_OK;
}

static ib_status infer_shape(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    int64_t dim = -1;
    if (x->rank >= 0) {
        int64_t start, end;
        IB_TRY(shape_range(c->node, c->opset, x->rank, &start, &end));
        dim = end - start;
    }
    ib__set_output(c, 0, IB_DTYPE_INT64, 1, &dim);
    return IB_OK;
}

static ib_status run_shape(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    int64_t start, end;
    IB_TRY(shape_range(c->node, c->opset, x->rank, &start, &end));
    ib_tensor *y = c->out[0];
    if (y->dtype != IB_DTYPE_INT64 || y->shape[0] != end - start)
        return ib__error(IB_ERR_INTERNAL, "%s: output shape mismatch", ib__node_label(c->node));
    for (int64_t i = start; i < end; i++) ((int64_t *)y->data)[i - start] = x->shape[i];
    return IB_OK;
}

static ib_status infer_size(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    ib__set_output(c, 0, IB_DTYPE_INT64, 0, NULL);
    return IB_OK;
}

static ib_status run_size(ib__run_ctx *c) {
    *(int64_t *)c->out[0]->data = ib_tensor_element_count(c->in[0]);
    return IB_OK;
}

/* ---- Transpose ---------------------------------------------------------------------- */

static ib_status transpose_perm(const ib__node *node, int32_t rank, int32_t *perm) {
    int32_t n;
    const int64_t *p;
    IB_TRY(ib__attr_ints(node, "perm", &n, &p));
    if (!p) {
        for (int32_t d = 0; d < rank; d++) perm[d] = rank - 1 - d;
        return IB_OK;
    }
    if (n != rank)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: perm has %d entries for rank %d",
                         ib__node_label(node), n, rank);
    bool seen[IB_MAX_RANK] = {0};
    for (int32_t d = 0; d < rank; d++) {
        int64_t v = p[d] < 0 ? p[d] + rank : p[d];
        if (v < 0 || v >= rank || seen[v])
            return ib__error(IB_ERR_INVALID_MODEL, "%s: perm is not a permutation of 0..%d",
                             ib__node_label(node), rank - 1);
        seen[v] = true;
        perm[d] = (int32_t)v;
    }
    return IB_OK;
}

static ib_status infer_transpose(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    if (x->rank < 0) {
        int32_t n;
        const int64_t *p;
        IB_TRY(ib__attr_ints(c->node, "perm", &n, &p));
        ib__set_output(c, 0, x->dtype, -1, NULL);
        if (p && n <= IB_MAX_RANK && c->out[0]) c->out[0]->rank = n;
        return IB_OK;
    }
    int32_t perm[IB_MAX_RANK];
    IB_TRY(transpose_perm(c->node, x->rank, perm));
    int64_t dims[IB_MAX_RANK];
    for (int32_t d = 0; d < x->rank; d++) dims[d] = x->dims[perm[d]];
    ib__set_output(c, 0, x->dtype, x->rank, dims);
    if (c->out[0])
        for (int32_t d = 0; d < x->rank; d++) c->out[0]->dim_param[d] = x->dim_param[perm[d]];
    return IB_OK;
}

static ib_status run_transpose(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    int32_t perm[IB_MAX_RANK];
    IB_TRY(transpose_perm(c->node, x->rank, perm));
    int64_t xs[IB_MAX_RANK], st[IB_MAX_RANK];
    ib__strides(x->shape, x->rank, xs);
    for (int32_t d = 0; d < x->rank; d++) st[d] = xs[perm[d]];
    ib__strided_copy(y->data, x->data, y->rank, y->shape, st, es, c->pool);
    return IB_OK;
}

/* ---- Expand ------------------------------------------------------------------------- */

static ib_status infer_expand(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0];
    int64_t shape[IB_MAX_RANK], n;
    bool known;
    IB_TRY(const_ints_in(c, 1, shape, IB_MAX_RANK, &n, &known));
    if (!known || x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        const ib__value *sv = c->in[1];
        int64_t len = known ? n : (sv->rank == 1 ? sv->dims[0] : -1);
        if (x->rank >= 0 && len >= 0 && c->out[0]) {
            int64_t r = len > x->rank ? len : x->rank;
            IB_TRY(check_rank(c, r));
            c->out[0]->rank = (int32_t)r;
        }
        return IB_OK;
    }
    int32_t r = (int32_t)(n > x->rank ? n : x->rank);
    int64_t dims[IB_MAX_RANK];
    for (int32_t d = 0; d < r; d++) {
        int32_t xd = d - (r - x->rank), sd = d - (r - (int32_t)n);
        int64_t a = xd >= 0 ? x->dims[xd] : 1;
        int64_t b = sd >= 0 ? shape[sd] : 1;
        if (b < 0)
            return ib__error(IB_ERR_SHAPE, "%s: shape[%d] = %lld is negative",
                             ib__node_label(c->node), sd, (long long)b);
        if (a == 1 || a == b)
            dims[d] = b;
        else if (b == 1)
            dims[d] = a;
        else if (a < 0)
            dims[d] = b; /* a must be 1 or b for this to be valid */
        else
            return ib__error(IB_ERR_SHAPE, "%s: cannot expand dim %d of size %lld to %lld",
                             ib__node_label(c->node), d, (long long)a, (long long)b);
    }
    if (ib__shape_count(dims, r) < 0) {
        bool unknown = false;
        for (int32_t d = 0; d < r; d++) unknown |= dims[d] < 0;
        if (!unknown)
            return ib__error(IB_ERR_SHAPE, "%s: output shape is too large", ib__node_label(c->node));
    }
    ib__set_output(c, 0, x->dtype, r, dims);
    return IB_OK;
}

static ib_status run_expand(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    int64_t xs[IB_MAX_RANK], st[IB_MAX_RANK];
    ib__strides(x->shape, x->rank, xs);
    for (int32_t d = 0; d < y->rank; d++) {
        int32_t xd = d - (y->rank - x->rank);
        st[d] = (xd < 0 || x->shape[xd] == 1) ? 0 : xs[xd];
        if (xd >= 0 && x->shape[xd] != 1 && x->shape[xd] != y->shape[d])
            return ib__error(IB_ERR_INTERNAL, "%s: output shape mismatch", ib__node_label(c->node));
    }
    ib__strided_copy(y->data, x->data, y->rank, y->shape, st, es, c->pool);
    return IB_OK;
}

/* ---- Tile --------------------------------------------------------------------------- */

static ib_status infer_tile(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0];
    if (c->opset < 6)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: Tile before opset 6 is not supported",
                         ib__node_label(c->node));
    int64_t reps[IB_MAX_RANK], n;
    bool known;
    IB_TRY(const_ints_in(c, 1, reps, IB_MAX_RANK, &n, &known));
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    if (known && n != x->rank)
        return ib__error(IB_ERR_SHAPE, "%s: repeats has %lld values for rank %d",
                         ib__node_label(c->node), (long long)n, x->rank);
    int64_t dims[IB_MAX_RANK];
    for (int32_t d = 0; d < x->rank; d++) {
        if (!known) {
            dims[d] = -1;
            continue;
        }
        if (reps[d] < 0)
            return ib__error(IB_ERR_SHAPE, "%s: repeats[%d] = %lld is negative",
                             ib__node_label(c->node), d, (long long)reps[d]);
        IB_TRY(checked_mul(c, x->dims[d], reps[d], &dims[d]));
    }
    if (known && value_count(x) >= 0 && ib__shape_count(dims, x->rank) < 0)
        return ib__error(IB_ERR_SHAPE, "%s: output shape is too large", ib__node_label(c->node));
    ib__set_output(c, 0, x->dtype, x->rank, dims);
    return IB_OK;
}

static ib_status run_tile(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    if (y->rank != x->rank)
        return ib__error(IB_ERR_INTERNAL, "%s: output rank mismatch", ib__node_label(c->node));
    /* View the output as [rep0, d0, rep1, d1, ...] reading the input with stride 0
     * along each repeat dim. */
    int64_t xs[IB_MAX_RANK], dims[MAX_VIEW_RANK], st[MAX_VIEW_RANK];
    ib__strides(x->shape, x->rank, xs);
    for (int32_t d = 0; d < x->rank; d++) {
        if (x->shape[d] == 0) return IB_OK;
        if (y->shape[d] % x->shape[d] != 0)
            return ib__error(IB_ERR_INTERNAL, "%s: output shape mismatch", ib__node_label(c->node));
        dims[2 * d] = y->shape[d] / x->shape[d];
        st[2 * d] = 0;
        dims[2 * d + 1] = x->shape[d];
        st[2 * d + 1] = xs[d];
    }
    ib__strided_copy(y->data, x->data, 2 * x->rank, dims, st, es, c->pool);
    return IB_OK;
}

/* ---- Concat ------------------------------------------------------------------------- */

static ib_status infer_concat(ib__infer_ctx *c) {
    int64_t axis;
    const ib__attr *a = ib__node_attr(c->node, "axis");
    if (!a && c->opset >= 4)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'axis' is required",
                         ib__node_label(c->node));
    IB_TRY(ib__attr_int(c->node, "axis", 1, &axis));
    if (c->n_in < 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: needs at least one input",
                         ib__node_label(c->node));
    ib_dtype dt = IB_DTYPE_UNDEFINED;
    int32_t rank = -1;
    for (int32_t i = 0; i < c->n_in; i++) {
        IB_TRY(ib__require_input(c, i));
        const ib__value *v = c->in[i];
        if (dt == IB_DTYPE_UNDEFINED) dt = v->dtype;
        if (v->dtype != IB_DTYPE_UNDEFINED && v->dtype != dt)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input %d is %s, input 0 is %s",
                             ib__node_label(c->node), i, ib_dtype_name(v->dtype),
                             ib_dtype_name(dt));
        if (v->rank < 0) continue;
        if (rank >= 0 && v->rank != rank)
            return ib__error(IB_ERR_SHAPE, "%s: input %d has rank %d, others %d",
                             ib__node_label(c->node), i, v->rank, rank);
        rank = v->rank;
    }
    if (rank < 0) {
        ib__set_output(c, 0, dt, -1, NULL);
        return IB_OK;
    }
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, rank, &ax));
    int64_t dims[IB_MAX_RANK];
    const char *params[IB_MAX_RANK] = {0};
    for (int32_t d = 0; d < rank; d++) dims[d] = d == ax ? 0 : -1;
    for (int32_t i = 0; i < c->n_in; i++) {
        const ib__value *v = c->in[i];
        if (v->rank < 0) {
            dims[ax] = -1;
            continue;
        }
        for (int32_t d = 0; d < rank; d++) {
            int64_t x = v->dims[d];
            if (d == ax) {
                if (x < 0 || dims[ax] < 0)
                    dims[ax] = -1;
                else if (ib__add_overflow_i64(dims[ax], x, &dims[ax]) || dims[ax] > IB_MAX_ELEMENTS)
                    return ib__error(IB_ERR_SHAPE, "%s: output is too large",
                                     ib__node_label(c->node));
                continue;
            }
            if (x < 0) {
                if (dims[d] < 0 && !params[d]) params[d] = v->dim_param[d];
                continue;
            }
            if (dims[d] >= 0 && dims[d] != x)
                return ib__error(IB_ERR_SHAPE, "%s: input %d has dim %d = %lld, expected %lld",
                                 ib__node_label(c->node), i, d, (long long)x,
                                 (long long)dims[d]);
            dims[d] = x;
        }
    }
    ib__set_output(c, 0, dt, rank, dims);
    if (c->out[0])
        for (int32_t d = 0; d < rank; d++)
            if (dims[d] < 0) c->out[0]->dim_param[d] = params[d];
    return IB_OK;
}

static ib_status run_concat(ib__run_ctx *c) {
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, y->dtype, &es));
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", 1, &axis));
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, y->rank, &ax));
    int64_t outer = 1, inner = 1;
    for (int32_t d = 0; d < ax; d++) outer *= y->shape[d];
    for (int32_t d = ax + 1; d < y->rank; d++) inner *= y->shape[d];
    size_t out_row = (size_t)(y->shape[ax] * inner) * es;
    size_t off = 0;
    for (int32_t i = 0; i < c->n_in; i++) {
        const ib_tensor *x = c->in[i];
        if (x->dtype != y->dtype || x->rank != y->rank)
            return ib__error(IB_ERR_INTERNAL, "%s: input %d mismatch", ib__node_label(c->node), i);
        size_t row = (size_t)(x->shape[ax] * inner) * es;
        if (off + row > out_row)
            return ib__error(IB_ERR_INTERNAL, "%s: output too small", ib__node_label(c->node));
        if (row == 0) continue;
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)y->data + (size_t)o * out_row + off,
                   (const char *)x->data + (size_t)o * row, row);
        off += row;
    }
    return IB_OK;
}

/* ---- Split -------------------------------------------------------------------------- */

/* Part sizes along the axis of length `dim` (-1 unknown): from the split attribute
 * (opset < 13) or input (>= 13), else equal parts. *known = false when they cannot be
 * computed yet. */
static ib_status split_sizes(const ib__node *node, int32_t opset, int32_t n_out,
                             const ib_tensor *split_t, bool split_given, int64_t dim,
                             int64_t *sizes, bool *known) {
    *known = false;
    if (n_out < 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: needs at least one output", ib__node_label(node));
    int32_t n = 0;
    const int64_t *attr = NULL;
    if (opset < 13) IB_TRY(ib__attr_ints(node, "split", &n, &attr));
    if (attr || split_given) {
        if (split_given && !split_t) return IB_OK; /* not constant yet */
        if (split_t) {
            if (split_t->dtype != IB_DTYPE_INT64 && split_t->dtype != IB_DTYPE_INT32)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: split must be int64",
                                 ib__node_label(node));
            int64_t cnt = ib_tensor_element_count(split_t);
            if (cnt != n_out)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: split has %lld values for %d outputs",
                                 ib__node_label(node), (long long)cnt, n_out);
            for (int32_t i = 0; i < n_out; i++)
                sizes[i] = ib__load_i64(split_t->data, split_t->dtype, i);
        } else {
            if (n != n_out)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: split has %d values for %d outputs",
                                 ib__node_label(node), n, n_out);
            memcpy(sizes, attr, sizeof(int64_t) * (size_t)n);
        }
        int64_t sum = 0;
        for (int32_t i = 0; i < n_out; i++) {
            if (sizes[i] < 0 || sizes[i] > IB_MAX_ELEMENTS)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: split[%d] = %lld is invalid",
                                 ib__node_label(node), i, (long long)sizes[i]);
            sum += sizes[i];
        }
        if (dim >= 0 && sum != dim)
            return ib__error(IB_ERR_SHAPE, "%s: split sums to %lld but the axis has %lld",
                             ib__node_label(node), (long long)sum, (long long)dim);
        *known = true;
        return IB_OK;
    }
    if (dim < 0) return IB_OK;
    int64_t num;
    IB_TRY(ib__attr_int(node, "num_outputs", n_out, &num));
    if (num != n_out)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: num_outputs is %lld but the node has %d outputs",
                         ib__node_label(node), (long long)num, n_out);
    if (dim % n_out == 0) {
        for (int32_t i = 0; i < n_out; i++) sizes[i] = dim / n_out;
    } else if (opset >= 18) { /* the last part takes what is left */
        int64_t part = (dim + n_out - 1) / n_out;
        if (part * (n_out - 1) >= dim)
            return ib__error(IB_ERR_SHAPE, "%s: cannot split %lld into %d parts",
                             ib__node_label(node), (long long)dim, n_out);
        for (int32_t i = 0; i < n_out; i++) sizes[i] = part;
        sizes[n_out - 1] = dim - part * (n_out - 1);
    } else {
        return ib__error(IB_ERR_SHAPE, "%s: axis of size %lld does not split into %d equal parts",
                         ib__node_label(node), (long long)dim, n_out);
    }
    *known = true;
    return IB_OK;
}

enum { MAX_SPLIT = 4096 };

static ib_status infer_split(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    if (c->n_out > MAX_SPLIT)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: too many outputs", ib__node_label(c->node));
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    const ib__value *sv = c->opset >= 13 ? ib__in(c, 1) : NULL;
    if (x->rank < 0) {
        for (int32_t o = 0; o < c->n_out; o++) ib__set_output(c, o, x->dtype, -1, NULL);
        return IB_OK;
    }
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    int64_t sizes[MAX_SPLIT];
    bool known;
    IB_TRY(split_sizes(c->node, c->opset, c->n_out, sv ? sv->constant : NULL, sv != NULL,
                       x->dims[ax], sizes, &known));
    for (int32_t o = 0; o < c->n_out; o++) {
        ib__set_output_like(c, o, x);
        if (o < c->n_out && c->out[o]) {
            c->out[o]->dims[ax] = known ? sizes[o] : -1;
            c->out[o]->dim_param[ax] = NULL;
        }
    }
    return IB_OK;
}

static ib_status run_split(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    if (c->n_out > MAX_SPLIT)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: too many outputs", ib__node_label(c->node));
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    const ib_tensor *st = (c->opset >= 13 && c->n_in > 1) ? c->in[1] : NULL;
    int64_t sizes[MAX_SPLIT];
    bool known;
    IB_TRY(split_sizes(c->node, c->opset, c->n_out, st, st != NULL, x->shape[ax], sizes, &known));
    if (!known) return ib__error(IB_ERR_INTERNAL, "%s: split unknown", ib__node_label(c->node));
    int64_t outer = 1, inner = 1;
    for (int32_t d = 0; d < ax; d++) outer *= x->shape[d];
    for (int32_t d = ax + 1; d < x->rank; d++) inner *= x->shape[d];
    size_t in_row = (size_t)(x->shape[ax] * inner) * es, off = 0;
    for (int32_t o = 0; o < c->n_out; o++) {
        size_t row = (size_t)(sizes[o] * inner) * es;
        ib_tensor *y = c->out[o];
        if (y && row) {
            if (y->nbytes != row * (size_t)outer)
                return ib__error(IB_ERR_INTERNAL, "%s: output %d size mismatch",
                                 ib__node_label(c->node), o);
            for (int64_t r = 0; r < outer; r++)
                memcpy((char *)y->data + (size_t)r * row,
                       (const char *)x->data + (size_t)r * in_row + off, row);
        }
        off += row;
    }
    return IB_OK;
}

/* ---- Identity / Dropout ------------------------------------------------------------- */

static ib_status infer_identity(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    ib__set_output_like(c, 0, c->in[0]);
    return IB_OK;
}

/* Dropout at inference: the output is the input, the mask all true. Training mode with
 * a non-zero ratio would need random numbers: refused. */
static ib_status dropout_check_training(const ib__node *node, int32_t opset,
                                        const ib_tensor *ratio, const ib_tensor *training) {
    if (opset < 12 || !training) return IB_OK;
    if (ib_tensor_element_count(training) != 1 || training->nbytes < ib_dtype_size(training->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: training_mode must be a scalar",
                         ib__node_label(node));
    if (ib__load_f64(training->data, training->dtype, 0) == 0.0) return IB_OK;
    double r = 0.5;
    if (ratio && ib_tensor_element_count(ratio) == 1 && ratio->nbytes >= ib_dtype_size(ratio->dtype))
        r = ib__load_f64(ratio->data, ratio->dtype, 0);
    if (r == 0.0) return IB_OK;
    return ib__error(IB_ERR_UNSUPPORTED, "%s: Dropout in training mode is not supported",
                     ib__node_label(node));
}

static ib_status infer_dropout(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    const ib__value *rv = ib__in(c, 1), *tv = ib__in(c, 2);
    IB_TRY(dropout_check_training(c->node, c->opset, rv ? rv->constant : NULL,
                                  tv ? tv->constant : NULL));
    ib__set_output_like(c, 0, x);
    if (c->n_out > 1 && c->out[1]) {
        ib__set_output_like(c, 1, x);
        c->out[1]->dtype = c->opset >= 10 ? IB_DTYPE_BOOL : x->dtype;
    }
    return IB_OK;
}

static ib_status run_dropout(ib__run_ctx *c) {
    IB_TRY(dropout_check_training(c->node, c->opset, c->n_in > 1 ? c->in[1] : NULL,
                                  c->n_in > 2 ? c->in[2] : NULL));
    IB_TRY(run_copy(c));
    ib_tensor *m = c->n_out > 1 ? c->out[1] : NULL;
    if (m) {
        int64_t n = ib_tensor_element_count(m);
        if (m->dtype == IB_DTYPE_BOOL) {
            memset(m->data, 1, (size_t)n);
        } else {
            if (!ib__dtype_is_float(m->dtype) && !ib__dtype_is_integer(m->dtype))
                return ib__error(IB_ERR_UNSUPPORTED, "%s: mask dtype %s",
                                 ib__node_label(c->node), ib_dtype_name(m->dtype));
            for (int64_t i = 0; i < n; i++) ib__store_f64(m->data, m->dtype, i, 1.0);
        }
    }
    return IB_OK;
}

/* ---- Constant ----------------------------------------------------------------------- */

/* The one value attribute a Constant node carries. */
static ib_status constant_attr(const ib__node *node, const ib__attr **out) {
    static const char *const names[] = {"value",        "value_float",  "value_floats",
                                        "value_int",    "value_ints",   "value_string",
                                        "value_strings", "sparse_value"};
    const ib__attr *found = NULL;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const ib__attr *a = ib__node_attr(node, names[k]);
        if (!a) continue;
        if (found)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: more than one value attribute",
                             ib__node_label(node));
        found = a;
    }
    if (!found)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: no value attribute", ib__node_label(node));
    const char *name = found->name;
    ib__attr_kind want = strcmp(name, "value") == 0           ? IB_ATTR_TENSOR
                         : strcmp(name, "value_float") == 0   ? IB_ATTR_FLOAT
                         : strcmp(name, "value_floats") == 0  ? IB_ATTR_FLOATS
                         : strcmp(name, "value_int") == 0     ? IB_ATTR_INT
                         : strcmp(name, "value_ints") == 0    ? IB_ATTR_INTS
                         : IB_ATTR_UNDEFINED;
    if (want == IB_ATTR_UNDEFINED)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: attribute '%s' is not supported",
                         ib__node_label(node), name);
    if (found->kind != want || (want == IB_ATTR_TENSOR && !found->t))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute '%s' has the wrong kind",
                         ib__node_label(node), name);
    *out = found;
    return IB_OK;
}

/* Checks that a tensor attribute's bytes cover its shape. */
static ib_status check_attr_tensor(const ib__node *node, const char *what, const ib_tensor *t) {
    if (t->rank < 0 || t->rank > IB_MAX_RANK)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: %s has rank %d", ib__node_label(node), what,
                         t->rank);
    size_t es = ib_dtype_size(t->dtype);
    if (es == 0)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: %s has dtype %s", ib__node_label(node), what,
                         ib_dtype_name(t->dtype));
    int64_t n = ib_tensor_element_count(t);
    if (n < 0 || t->nbytes < (size_t)n * es || (n > 0 && !t->data))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: %s data does not match its shape",
                         ib__node_label(node), what);
    return IB_OK;
}

static ib_status infer_constant(ib__infer_ctx *c) {
    const ib__attr *a;
    IB_TRY(constant_attr(c->node, &a));
    switch (a->kind) {
    case IB_ATTR_TENSOR:
        IB_TRY(check_attr_tensor(c->node, "value", a->t));
        ib__set_output(c, 0, a->t->dtype, a->t->rank, a->t->shape);
        /* Known at load time: later nodes fold against the attribute's own tensor. */
        if (c->n_out > 0 && c->out[0]) c->out[0]->constant = a->t;
        break;
    case IB_ATTR_FLOAT: ib__set_output(c, 0, IB_DTYPE_FLOAT32, 0, NULL); break;
    case IB_ATTR_INT: ib__set_output(c, 0, IB_DTYPE_INT64, 0, NULL); break;
    case IB_ATTR_FLOATS:
    case IB_ATTR_INTS: {
        int64_t n = a->count;
        ib__set_output(c, 0, a->kind == IB_ATTR_FLOATS ? IB_DTYPE_FLOAT32 : IB_DTYPE_INT64, 1, &n);
        break;
    }
    default: break;
    }
    return IB_OK;
}

static ib_status run_constant(ib__run_ctx *c) {
    const ib__attr *a;
    IB_TRY(constant_attr(c->node, &a));
    ib_tensor *y = c->out[0];
    if (!y) return IB_OK;
    const void *src = NULL;
    size_t n = 0;
    switch (a->kind) {
    case IB_ATTR_TENSOR:
        IB_TRY(check_attr_tensor(c->node, "value", a->t));
        src = a->t->data;
        n = (size_t)ib_tensor_element_count(a->t) * ib_dtype_size(a->t->dtype);
        break;
    case IB_ATTR_FLOAT: src = &a->f; n = sizeof(float); break;
    case IB_ATTR_INT: src = &a->i; n = sizeof(int64_t); break;
    case IB_ATTR_FLOATS: src = a->floats; n = sizeof(float) * (size_t)a->count; break;
    case IB_ATTR_INTS: src = a->ints; n = sizeof(int64_t) * (size_t)a->count; break;
    default: break;
    }
    if (n != y->nbytes)
        return ib__error(IB_ERR_INTERNAL, "%s: output size mismatch", ib__node_label(c->node));
    if (n) memcpy(y->data, src, n);
    return IB_OK;
}

/* ---- ConstantOfShape ---------------------------------------------------------------- */

static ib_status cos_value(const ib__node *node, const ib_tensor **out) {
    const ib__attr *a = ib__node_attr(node, "value");
    *out = NULL;
    if (!a) return IB_OK;
    if (a->kind != IB_ATTR_TENSOR || !a->t)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'value' should be a tensor",
                         ib__node_label(node));
    IB_TRY(check_attr_tensor(node, "value", a->t));
    if (ib_tensor_element_count(a->t) != 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: 'value' must hold one element",
                         ib__node_label(node));
    *out = a->t;
    return IB_OK;
}

static ib_status infer_constant_of_shape(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib_tensor *val;
    IB_TRY(cos_value(c->node, &val));
    ib_dtype dt = val ? val->dtype : IB_DTYPE_FLOAT32;
    int64_t shape[IB_MAX_RANK], n;
    bool known;
    IB_TRY(const_ints_in(c, 0, shape, IB_MAX_RANK, &n, &known));
    if (!known) {
        const ib__value *sv = c->in[0];
        ib__set_output(c, 0, dt, -1, NULL);
        if (sv->rank == 1 && sv->dims[0] >= 0 && sv->dims[0] <= IB_MAX_RANK && c->out[0])
            c->out[0]->rank = (int32_t)sv->dims[0];
        return IB_OK;
    }
    for (int64_t i = 0; i < n; i++)
        if (shape[i] < 0)
            return ib__error(IB_ERR_SHAPE, "%s: shape[%lld] = %lld is negative",
                             ib__node_label(c->node), (long long)i, (long long)shape[i]);
    if (ib__shape_count(shape, (int32_t)n) < 0)
        return ib__error(IB_ERR_SHAPE, "%s: output shape is too large", ib__node_label(c->node));
    ib__set_output(c, 0, dt, (int32_t)n, shape);
    return IB_OK;
}

/* Repeats one element's bytes over a buffer. */
static void fill_bytes(void *dst, const void *elem, size_t es, int64_t n) {
    char *d = dst;
    bool zero = true;
    for (size_t b = 0; b < es; b++) zero &= ((const char *)elem)[b] == 0;
    if (zero) {
        memset(d, 0, (size_t)n * es);
        return;
    }
    if (n <= 0) return;
    memcpy(d, elem, es);
    size_t done = es, total = (size_t)n * es;
    while (done < total) { /* doubling copies */
        size_t k = done < total - done ? done : total - done;
        memcpy(d + done, d, k);
        done += k;
    }
}

static ib_status run_constant_of_shape(ib__run_ctx *c) {
    const ib_tensor *val;
    IB_TRY(cos_value(c->node, &val));
    ib_tensor *y = c->out[0];
    int64_t n = ib_tensor_element_count(y);
    if (!val) {
        memset(y->data, 0, y->nbytes);
        return IB_OK;
    }
    if (val->dtype != y->dtype)
        return ib__error(IB_ERR_INTERNAL, "%s: dtype mismatch", ib__node_label(c->node));
    fill_bytes(y->data, val->data, ib_dtype_size(val->dtype), n);
    return IB_OK;
}

/* ---- Range -------------------------------------------------------------------------- */

static ib_status range_count(const ib__node *node, const ib_tensor *s, const ib_tensor *l,
                             const ib_tensor *d, int64_t *out) {
    for (int k = 0; k < 3; k++) {
        const ib_tensor *t = k == 0 ? s : k == 1 ? l : d;
        if (ib_tensor_element_count(t) != 1 || t->nbytes < ib_dtype_size(t->dtype))
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input %d must be a scalar",
                             ib__node_label(node), k);
        if (t->dtype != s->dtype)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: inputs must share one dtype",
                             ib__node_label(node));
    }
    if (!ib__dtype_is_float(s->dtype) && !ib__dtype_is_signed(s->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: dtype %s is not supported",
                         ib__node_label(node), ib_dtype_name(s->dtype));
    double n;
    if (ib__dtype_is_float(s->dtype)) {
        double a = ib__load_f64(s->data, s->dtype, 0), b = ib__load_f64(l->data, l->dtype, 0);
        double dl = ib__load_f64(d->data, d->dtype, 0);
        if (dl == 0.0 || dl != dl || a != a || b != b)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: delta is zero or a value is NaN",
                             ib__node_label(node));
        n = ceil((b - a) / dl);
    } else {
        int64_t a = ib__load_i64(s->data, s->dtype, 0), b = ib__load_i64(l->data, l->dtype, 0);
        int64_t dl = ib__load_i64(d->data, d->dtype, 0);
        if (dl == 0)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: delta is zero", ib__node_label(node));
        __int128 diff = (__int128)b - a;
        __int128 q = diff / dl;
        if (q * dl != diff && ((diff > 0) == (dl > 0))) q++; /* ceiling */
        n = q < 0 ? 0.0 : q > IB_MAX_ELEMENTS ? (double)IB_MAX_ELEMENTS * 2 : (double)q;
    }
    if (!(n > 0)) n = 0;
    if (n > (double)IB_MAX_ELEMENTS)
        return ib__error(IB_ERR_SHAPE, "%s: the range is too long", ib__node_label(node));
    *out = (int64_t)n;
    return IB_OK;
}

static ib_status infer_range(ib__infer_ctx *c) {
    for (int32_t i = 0; i < 3; i++) IB_TRY(ib__require_input(c, i));
    int64_t n = -1;
    if (c->in[0]->constant && c->in[1]->constant && c->in[2]->constant)
        IB_TRY(range_count(c->node, c->in[0]->constant, c->in[1]->constant, c->in[2]->constant,
                           &n));
    ib__set_output(c, 0, c->in[0]->dtype, 1, &n);
    return IB_OK;
}

static ib_status run_range(ib__run_ctx *c) {
    const ib_tensor *s = c->in[0], *d = c->in[2];
    int64_t n;
    IB_TRY(range_count(c->node, s, c->in[1], d, &n));
    ib_tensor *y = c->out[0];
    if (y->shape[0] != n)
        return ib__error(IB_ERR_INTERNAL, "%s: output size mismatch", ib__node_label(c->node));
    if (s->dtype == IB_DTYPE_FLOAT32) {
        float a = *(const float *)s->data, dl = *(const float *)d->data;
        for (int64_t i = 0; i < n; i++) ((float *)y->data)[i] = a + (float)i * dl;
    } else if (ib__dtype_is_float(s->dtype)) {
        double a = ib__load_f64(s->data, s->dtype, 0), dl = ib__load_f64(d->data, d->dtype, 0);
        for (int64_t i = 0; i < n; i++) ib__store_f64(y->data, y->dtype, i, a + (double)i * dl);
    } else {
        int64_t a = ib__load_i64(s->data, s->dtype, 0), dl = ib__load_i64(d->data, d->dtype, 0);
        for (int64_t i = 0; i < n; i++) ib__store_i64(y->data, y->dtype, i, a + i * dl);
    }
    return IB_OK;
}

/* ---- EyeLike ------------------------------------------------------------------------ */

static ib_status eyelike_dtype(const ib__node *node, ib_dtype in, ib_dtype *out) {
    int64_t dt;
    IB_TRY(ib__attr_int(node, "dtype", (int64_t)in, &dt));
    if (dt != (int32_t)dt || !ib__dtype_is_valid((int32_t)dt) || dt == IB_DTYPE_UNDEFINED ||
        dt == IB_DTYPE_STRING)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: dtype %lld is invalid", ib__node_label(node),
                         (long long)dt);
    *out = (ib_dtype)dt;
    return IB_OK;
}

static ib_status infer_eye_like(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    ib_dtype dt = IB_DTYPE_UNDEFINED;
    IB_TRY(eyelike_dtype(c->node, x->dtype, &dt));
    if (x->rank >= 0 && x->rank != 2)
        return ib__error(IB_ERR_SHAPE, "%s: input must be 2-D, has rank %d",
                         ib__node_label(c->node), x->rank);
    ib__set_output(c, 0, dt, 2, x->rank == 2 ? x->dims : NULL);
    if (x->rank < 0 && c->out[0]) c->out[0]->rank = 2;
    return IB_OK;
}

static ib_status run_eye_like(ib__run_ctx *c) {
    ib_tensor *y = c->out[0];
    int64_t k;
    IB_TRY(ib__attr_int(c->node, "k", 0, &k));
    if (!ib__dtype_is_float(y->dtype) && !ib__dtype_is_integer(y->dtype) &&
        y->dtype != IB_DTYPE_BOOL)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: dtype %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(y->dtype));
    memset(y->data, 0, y->nbytes);
    int64_t rows = y->shape[0], cols = y->shape[1];
    for (int64_t i = 0; i < rows; i++) {
        if (k > cols || k < -rows) break; /* the diagonal misses the matrix */
        int64_t j = i + k;
        if (j >= 0 && j < cols) ib__store_f64(y->data, y->dtype, i * cols + j, 1.0);
    }
    return IB_OK;
}

/* ---- DepthToSpace / SpaceToDepth ---------------------------------------------------- */

static ib_status depth_params(const ib__node *node, bool to_space, bool *crd, int64_t *b) {
    IB_TRY(ib__attr_int(node, "blocksize", 0, b));
    if (*b <= 0 || *b > (1 << 20))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: blocksize %lld is invalid",
                         ib__node_label(node), (long long)*b);
    *crd = false;
    if (to_space) {
        const char *mode;
        IB_TRY(ib__attr_string(node, "mode", "DCR", &mode));
        if (strcmp(mode, "CRD") == 0)
            *crd = true;
        else if (strcmp(mode, "DCR") != 0)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: mode '%s' is invalid",
                             ib__node_label(node), mode);
    }
    return IB_OK;
}

static ib_status infer_depth(ib__infer_ctx *c, bool to_space) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    bool crd;
    int64_t b;
    IB_TRY(depth_params(c->node, to_space, &crd, &b));
    if (x->rank < 0) {
        int64_t dims[4] = {-1, -1, -1, -1};
        ib__set_output(c, 0, x->dtype, 4, dims);
        return IB_OK;
    }
    if (x->rank != 4)
        return ib__error(IB_ERR_SHAPE, "%s: input must be 4-D, has rank %d",
                         ib__node_label(c->node), x->rank);
    int64_t dims[4] = {x->dims[0], -1, -1, -1};
    if (to_space) {
        if (x->dims[1] >= 0) {
            if (x->dims[1] % (b * b) != 0)
                return ib__error(IB_ERR_SHAPE, "%s: channels %lld not divisible by blocksize^2",
                                 ib__node_label(c->node), (long long)x->dims[1]);
            dims[1] = x->dims[1] / (b * b);
        }
        IB_TRY(checked_mul(c, x->dims[2], b, &dims[2]));
        IB_TRY(checked_mul(c, x->dims[3], b, &dims[3]));
    } else {
        IB_TRY(checked_mul(c, x->dims[1], b * b, &dims[1]));
        for (int32_t d = 2; d < 4; d++) {
            if (x->dims[d] < 0) continue;
            if (x->dims[d] % b != 0)
                return ib__error(IB_ERR_SHAPE, "%s: dim %d (%lld) not divisible by blocksize",
                                 ib__node_label(c->node), d, (long long)x->dims[d]);
            dims[d] = x->dims[d] / b;
        }
    }
    ib__set_output(c, 0, x->dtype, 4, dims);
    if (c->out[0]) c->out[0]->dim_param[0] = x->dim_param[0];
    return IB_OK;
}

static ib_status infer_depth_to_space(ib__infer_ctx *c) { return infer_depth(c, true); }
static ib_status infer_space_to_depth(ib__infer_ctx *c) { return infer_depth(c, false); }

static ib_status run_depth(ib__run_ctx *c, bool to_space) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    size_t es = 0;
    IB_TRY(elem_size(c->node, x->dtype, &es));
    bool crd;
    int64_t b;
    IB_TRY(depth_params(c->node, to_space, &crd, &b));
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t dims[6], st[6];
    if (to_space) {
        int64_t Co = C / (b * b);
        /* output viewed as [N, C', H, b1, W, b2] */
        int64_t sb1, sb2, sc;
        if (crd) { /* input channels as [C', b1, b2] */
            sc = b * b * H * W;
            sb1 = b * H * W;
            sb2 = H * W;
        } else { /* DCR: input channels as [b1, b2, C'] */
            sb1 = b * Co * H * W;
            sb2 = Co * H * W;
            sc = H * W;
        }
        int64_t d6[6] = {N, Co, H, b, W, b}, s6[6] = {C * H * W, sc, W, sb1, 1, sb2};
        memcpy(dims, d6, sizeof dims);
        memcpy(st, s6, sizeof st);
    } else {
        /* output viewed as [N, b1, b2, C, H', W'] over input [N, C, H', b1, W', b2] */
        int64_t Ho = H / b, Wo = W / b;
        int64_t d6[6] = {N, b, b, C, Ho, Wo}, s6[6] = {C * H * W, W, 1, H * W, b * W, b};
        memcpy(dims, d6, sizeof dims);
        memcpy(st, s6, sizeof st);
    }
    if (ib__shape_count(dims, 6) != ib_tensor_element_count(y))
        return ib__error(IB_ERR_INTERNAL, "%s: output shape mismatch", ib__node_label(c->node));
    ib__strided_copy(y->data, x->data, 6, dims, st, es, c->pool);
    return IB_OK;
}

static ib_status run_depth_to_space(ib__run_ctx *c) { return run_depth(c, true); }
static ib_status run_space_to_depth(ib__run_ctx *c) { return run_depth(c, false); }

const ib__op_def ib__ops_tensor_shape[] = {
    {IB_OP_RESHAPE, infer_reshape, run_copy, false},
    {IB_OP_FLATTEN, infer_flatten, run_copy, false},
    {IB_OP_SQUEEZE, infer_squeeze, run_copy, false},
    {IB_OP_UNSQUEEZE, infer_unsqueeze, run_copy, false},
    {IB_OP_SHAPE, infer_shape, run_shape, false},
    {IB_OP_SIZE, infer_size, run_size, false},
    {IB_OP_TRANSPOSE, infer_transpose, run_transpose, false},
    {IB_OP_EXPAND, infer_expand, run_expand, false},
    {IB_OP_TILE, infer_tile, run_tile, false},
    {IB_OP_CONCAT, infer_concat, run_concat, false},
    {IB_OP_SPLIT, infer_split, run_split, false},
    {IB_OP_IDENTITY, infer_identity, run_copy, false},
    {IB_OP_DROPOUT, infer_dropout, run_dropout, false},
    {IB_OP_CONSTANT, infer_constant, run_constant, false},
    {IB_OP_CONSTANT_OF_SHAPE, infer_constant_of_shape, run_constant_of_shape, false},
    {IB_OP_RANGE, infer_range, run_range, false},
    {IB_OP_EYE_LIKE, infer_eye_like, run_eye_like, false},
    {IB_OP_DEPTH_TO_SPACE, infer_depth_to_space, run_depth_to_space, false},
    {IB_OP_SPACE_TO_DEPTH, infer_space_to_depth, run_space_to_depth, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
