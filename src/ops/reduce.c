/* Reductions and related ops: Reduce{Sum,Mean,Max,Min,Prod,L1,L2,LogSum,LogSumExp,
 * SumSquare}, ArgMax/ArgMin, TopK, CumSum and Det — shape rules and reference kernels. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"

/* Values are gathered into small blocks of doubles (or int64) before being folded, so
 * each dtype needs one conversion loop and each reduction one folding loop. */
#define BLOCK 256

/* ---- Shared helpers ----------------------------------------------------------------- */

static bool dtype_is_numeric(ib_dtype dt) {
    return ib__dtype_is_float(dt) || ib__dtype_is_integer(dt);
}

/* Reads n elements x[off + k*stride] of dtype dt as doubles. */
static void gather_f64(const void *x, ib_dtype dt, int64_t off, int64_t stride, int64_t n,
                       double *row) {
    switch (dt) {
    case IB_DTYPE_FLOAT32: {
        const float *p = (const float *)x + off;
        if (stride == 1)
            for (int64_t k = 0; k < n; k++) row[k] = p[k];
        else
            for (int64_t k = 0; k < n; k++) row[k] = p[k * stride];
        break;
    }
    case IB_DTYPE_FLOAT64: {
        const double *p = (const double *)x + off;
        for (int64_t k = 0; k < n; k++) row[k] = p[k * stride];
        break;
    }
    default:
        for (int64_t k = 0; k < n; k++) row[k] = ib__load_f64(x, dt, off + k * stride);
        break;
    }
}

static void gather_i64(const void *x, ib_dtype dt, int64_t off, int64_t stride, int64_t n,
                       int64_t *row) {
    switch (dt) {
    case IB_DTYPE_INT64: {
        const int64_t *p = (const int64_t *)x + off;
        for (int64_t k = 0; k < n; k++) row[k] = p[k * stride];
        break;
    }
    case IB_DTYPE_INT32: {
        const int32_t *p = (const int32_t *)x + off;
        for (int64_t k = 0; k < n; k++) row[k] = p[k * stride];
        break;
    }
    default:
        for (int64_t k = 0; k < n; k++) row[k] = ib__load_i64(x, dt, off + k * stride);
        break;
    }
}

/* Splits dims around `axis` into outer * n * inner. */
static void split_at_axis(const int64_t *dims, int32_t rank, int32_t axis, int64_t *outer,
                          int64_t *n, int64_t *inner) {
    int64_t o = 1, in = 1;
    for (int32_t d = 0; d < axis; d++) o *= dims[d];
    for (int32_t d = axis + 1; d < rank; d++) in *= dims[d];
    *outer = o;
    *n = dims[axis];
    *inner = in;
}

/* Sets out[i] to `from`'s shape with dims[axis] replaced by `dim` (or removed when
 * keep is false), keeping the symbolic names of the untouched dims. */
static void set_output_axis(ib__infer_ctx *c, int32_t i, ib_dtype dtype, const ib__value *from,
                            int32_t axis, bool keep, int64_t dim) {
    int64_t dims[IB_MAX_RANK];
    const char *params[IB_MAX_RANK];
    int32_t r = 0;
    for (int32_t d = 0; d < from->rank; d++) {
        if (d == axis) {
            if (!keep) continue;
            dims[r] = dim;
            params[r++] = NULL;
        } else {
            dims[r] = from->dims[d];
            params[r++] = from->dim_param[d];
        }
    }
    ib__set_output(c, i, dtype, r, dims);
    if (i < c->n_out && c->out[i])
        for (int32_t d = 0; d < r; d++) c->out[i]->dim_param[d] = params[d];
}

/* ---- Reduce* ------------------------------------------------------------------------ */

typedef enum reduce_kind {
    RK_SUM,
    RK_MEAN,
    RK_MAX,
    RK_MIN,
    RK_PROD,
    RK_L1,
    RK_L2,
    RK_LOG_SUM,
    RK_LOG_SUM_EXP,
    RK_SUM_SQUARE,
} reduce_kind;

static reduce_kind reduce_kind_of(ib__op_id op) {
    switch (op) {
    case IB_OP_REDUCE_MEAN: return RK_MEAN;
    case IB_OP_REDUCE_MAX: return RK_MAX;
    case IB_OP_REDUCE_MIN: return RK_MIN;
    case IB_OP_REDUCE_PROD: return RK_PROD;
    case IB_OP_REDUCE_L1: return RK_L1;
    case IB_OP_REDUCE_L2: return RK_L2;
    case IB_OP_REDUCE_LOG_SUM: return RK_LOG_SUM;
    case IB_OP_REDUCE_LOG_SUM_EXP: return RK_LOG_SUM_EXP;
    case IB_OP_REDUCE_SUM_SQUARE: return RK_SUM_SQUARE;
    default: return RK_SUM;
    }
}

/* ReduceSum took its axes as an input from opset 13, the other reductions from 18. */
static bool axes_from_input(const ib__node *node, int32_t opset) {
    return (node->op == IB_OP_REDUCE_SUM && opset >= 13) || opset >= 18;
}

typedef struct reduce_plan {
    bool keepdims;
    bool axes_known;       /* false: the axes input has no data yet (load time) */
    int64_t n_axes_hint;   /* when !axes_known: the axes count if its shape says, else -1 */
    bool reduce[IB_MAX_RANK];
} reduce_plan;

/* Decides which axes a Reduce* node reduces. `axes_t` is the axes input's data (NULL when
 * omitted or unknown); `axes_unknown` says the input exists but has no data yet, with
 * `axes_len` its element count when the shape gives it (else -1). */
static ib_status reduce_plan_make(const ib__node *node, int32_t opset, int32_t rank,
                                  const ib_tensor *axes_t, bool axes_unknown, int64_t axes_len,
                                  reduce_plan *p) {
    memset(p, 0, sizeof *p);
    p->n_axes_hint = -1;
    int64_t keepdims, noop;
    IB_TRY(ib__attr_int(node, "keepdims", 1, &keepdims));
    IB_TRY(ib__attr_int(node, "noop_with_empty_axes", 0, &noop));
    p->keepdims = keepdims != 0;
    int64_t axes[IB_MAX_RANK];
    int64_t n = 0;
    if (axes_from_input(node, opset)) {
        if (axes_unknown && axes_len != 0) {
            p->n_axes_hint = axes_len;
            return IB_OK;
        }
        if (axes_t) {
            if (axes_t->dtype != IB_DTYPE_INT64 && axes_t->dtype != IB_DTYPE_INT32)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: input 'axes' must be int64, not %s",
                                 ib__node_label(node), ib_dtype_name(axes_t->dtype));
            if (axes_t->rank > 1)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: input 'axes' must be 1-D (rank %d)",
                                 ib__node_label(node), axes_t->rank);
            n = ib_tensor_element_count(axes_t);
            if (n < 0 || n > rank)
                return ib__error(IB_ERR_INVALID_MODEL,
                                 "%s: input 'axes' has %lld entries for an input of rank %d",
                                 ib__node_label(node), (long long)n, rank);
            for (int64_t i = 0; i < n; i++) axes[i] = ib__load_i64(axes_t->data, axes_t->dtype, i);
        }
    } else {
        int32_t count = 0;
        const int64_t *a = NULL;
        IB_TRY(ib__attr_ints(node, "axes", &count, &a));
        if (count > rank)
            return ib__error(IB_ERR_INVALID_MODEL,
                             "%s: attribute 'axes' has %d entries for an input of rank %d",
                             ib__node_label(node), count, rank);
        n = count;
        for (int32_t i = 0; i < count; i++) axes[i] = a[i];
    }
    p->axes_known = true;
    if (n == 0) {
        for (int32_t d = 0; d < rank; d++) p->reduce[d] = !noop;
        return IB_OK;
    }
    for (int64_t i = 0; i < n; i++) {
        int32_t ax;
        IB_TRY(ib__normalize_axis(node, axes[i], rank, &ax));
        if (p->reduce[ax])
            return ib__error(IB_ERR_INVALID_MODEL, "%s: axis %lld appears twice in 'axes'",
                             ib__node_label(node), (long long)axes[i]);
        p->reduce[ax] = true;
    }
    return IB_OK;
}

static ib_status check_reduce_dtype(const ib__node *node, ib_dtype dt) {
    if (dt == IB_DTYPE_UNDEFINED || dtype_is_numeric(dt)) return IB_OK;
    return ib__error(IB_ERR_UNSUPPORTED, "%s: input dtype %s is not supported",
                     ib__node_label(node), ib_dtype_name(dt));
}

static ib_status infer_reduce(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    IB_TRY(check_reduce_dtype(c->node, x->dtype));
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    const ib_tensor *axes_t = NULL;
    bool axes_unknown = false;
    int64_t axes_len = -1;
    const ib__value *a = axes_from_input(c->node, c->opset) ? ib__in(c, 1) : NULL;
    if (a) {
        if (a->constant) {
            axes_t = a->constant;
        } else {
            axes_unknown = true;
            if (a->rank == 1 && a->dims[0] >= 0) axes_len = a->dims[0];
        }
    }
    reduce_plan p;
    IB_TRY(reduce_plan_make(c->node, c->opset, x->rank, axes_t, axes_unknown, axes_len, &p));
    int64_t dims[IB_MAX_RANK];
    if (!p.axes_known) {
        /* Each dim is either kept or reduced; which one is not known yet. */
        for (int32_t d = 0; d < x->rank; d++) dims[d] = (x->dims[d] == 1) ? 1 : -1;
        if (p.keepdims)
            ib__set_output(c, 0, x->dtype, x->rank, dims);
        else if (p.n_axes_hint > 0 && p.n_axes_hint <= x->rank) {
            for (int32_t d = 0; d < x->rank; d++) dims[d] = -1;
            ib__set_output(c, 0, x->dtype, x->rank - (int32_t)p.n_axes_hint, dims);
        } else
            ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    const char *params[IB_MAX_RANK];
    int32_t r = 0;
    for (int32_t d = 0; d < x->rank; d++) {
        if (p.reduce[d]) {
            if (!p.keepdims) continue;
            dims[r] = 1;
            params[r++] = NULL;
        } else {
            dims[r] = x->dims[d];
            params[r++] = x->dim_param[d];
        }
    }
    ib__set_output(c, 0, x->dtype, r, dims);
    if (c->n_out > 0 && c->out[0])
        for (int32_t d = 0; d < r; d++) c->out[0]->dim_param[d] = params[d];
    return IB_OK;
}

/* The iteration of one reduction: output elements walk the kept dims; for each, the
 * reduced elements are the outer reduced offsets times a strided inner run. */
typedef struct reduce_job {
    reduce_kind kind;
    ib_dtype dt;
    bool exact_int; /* integer input folded in int64 (sum, prod, max, min, l1, sum square) */
    bool is_u64;
    const void *x;
    void *y;
    int32_t n_keep;
    int64_t keep_dims[IB_MAX_RANK];
    int64_t keep_strides[IB_MAX_RANK];
    const int64_t *red_off; /* n_red_outer offsets */
    int64_t n_red_outer;
    int64_t inner_n, inner_stride;
    int64_t count; /* reduced elements per output */
} reduce_job;

typedef struct reduce_acc {
    double a, b; /* sum or extreme; for log-sum-exp: running max and scaled sum */
    int64_t ia;
    uint64_t ua;
    bool nan;
    bool any;
} reduce_acc;

static void acc_fold_f64(reduce_kind kind, reduce_acc *s, const double *row, int64_t n) {
    switch (kind) {
    case RK_SUM:
    case RK_MEAN:
    case RK_LOG_SUM:
        for (int64_t k = 0; k < n; k++) s->a += row[k];
        break;
    case RK_MAX:
        for (int64_t k = 0; k < n; k++) {
            if (row[k] != row[k]) s->nan = true;
            else if (row[k] > s->a) s->a = row[k];
        }
        break;
    case RK_MIN:
        for (int64_t k = 0; k < n; k++) {
            if (row[k] != row[k]) s->nan = true;
            else if (row[k] < s->a) s->a = row[k];
        }
        break;
    case RK_PROD:
        for (int64_t k = 0; k < n; k++) s->a *= row[k];
        break;
    case RK_L1:
        for (int64_t k = 0; k < n; k++) s->a += fabs(row[k]);
        break;
    case RK_L2:
    case RK_SUM_SQUARE:
        for (int64_t k = 0; k < n; k++) s->a += row[k] * row[k];
        break;
    case RK_LOG_SUM_EXP: {
        /* Online log-sum-exp: s->a is the running max, s->b the sum of exp(v - a). */
        double m = -INFINITY;
        for (int64_t k = 0; k < n; k++) {
            if (row[k] != row[k]) s->nan = true;
            else if (row[k] > m) m = row[k];
        }
        if (m == -INFINITY) break;
        if (m > s->a) {
            s->b = (s->a == -INFINITY) ? 0.0 : s->b * exp(s->a - m);
            s->a = m;
        }
        if (s->a == INFINITY) break;
        for (int64_t k = 0; k < n; k++) s->b += exp(row[k] - s->a);
        break;
    }
    }
}

static void acc_fold_i64(const reduce_job *j, reduce_acc *s, const int64_t *row, int64_t n) {
    /* Unsigned arithmetic wraps like the integer dtypes do instead of overflowing (UB). */
    switch (j->kind) {
    case RK_SUM:
    case RK_MEAN:
        for (int64_t k = 0; k < n; k++) s->ua += (uint64_t)row[k];
        break;
    case RK_PROD:
        for (int64_t k = 0; k < n; k++) s->ua *= (uint64_t)row[k];
        break;
    case RK_L1:
        for (int64_t k = 0; k < n; k++)
            s->ua += (row[k] < 0 && !j->is_u64) ? (uint64_t)0 - (uint64_t)row[k] : (uint64_t)row[k];
        break;
    case RK_SUM_SQUARE:
        for (int64_t k = 0; k < n; k++) s->ua += (uint64_t)row[k] * (uint64_t)row[k];
        break;
    case RK_MAX:
        for (int64_t k = 0; k < n; k++) {
            bool better = !s->any || (j->is_u64 ? (uint64_t)row[k] > (uint64_t)s->ia : row[k] > s->ia);
            if (better) s->ia = row[k];
            s->any = true;
        }
        break;
    case RK_MIN:
        for (int64_t k = 0; k < n; k++) {
            bool better = !s->any || (j->is_u64 ? (uint64_t)row[k] < (uint64_t)s->ia : row[k] < s->ia);
            if (better) s->ia = row[k];
            s->any = true;
        }
        break;
    default:
        break;
    }
}

static void acc_init(reduce_kind kind, reduce_acc *s) {
    memset(s, 0, sizeof *s);
    switch (kind) {
    case RK_MAX: s->a = -INFINITY; break;
    case RK_MIN: s->a = INFINITY; break;
    case RK_PROD:
        s->a = 1.0;
        s->ua = 1;
        break;
    case RK_LOG_SUM_EXP: s->a = -INFINITY; break;
    default: break;
    }
}

/* Largest / smallest value of an integer dtype: the result of Max / Min over nothing. */
static int64_t int_extreme(ib_dtype dt, bool largest) {
    switch (dt) {
    case IB_DTYPE_INT8: return largest ? INT8_MAX : INT8_MIN;
    case IB_DTYPE_INT16: return largest ? INT16_MAX : INT16_MIN;
    case IB_DTYPE_INT32: return largest ? INT32_MAX : INT32_MIN;
    case IB_DTYPE_INT64: return largest ? INT64_MAX : INT64_MIN;
    case IB_DTYPE_UINT8: return largest ? UINT8_MAX : 0;
    case IB_DTYPE_UINT16: return largest ? UINT16_MAX : 0;
    case IB_DTYPE_UINT32: return largest ? (int64_t)UINT32_MAX : 0;
    case IB_DTYPE_UINT64: return largest ? -1 : 0; /* all bits set */
    default: return 0;
    }
}

static void acc_store(const reduce_job *j, const reduce_acc *s, int64_t o) {
    if (j->exact_int) {
        int64_t v = (int64_t)s->ua;
        if (j->kind == RK_MAX || j->kind == RK_MIN)
            v = s->any ? s->ia : int_extreme(j->dt, j->kind == RK_MIN);
        if (j->kind == RK_MEAN) {
            double mean = j->is_u64 ? (double)s->ua : (double)(int64_t)s->ua;
            ib__store_f64(j->y, j->dt, o, j->count ? mean / (double)j->count : 0.0);
            return;
        }
        ib__store_i64(j->y, j->dt, o, v);
        return;
    }
    double r;
    switch (j->kind) {
    case RK_MEAN: r = s->a / (double)j->count; break;
    case RK_MAX:
    case RK_MIN: r = s->nan ? NAN : s->a; break;
    case RK_L2: r = sqrt(s->a); break;
    case RK_LOG_SUM: r = log(s->a); break;
    case RK_LOG_SUM_EXP:
        if (s->nan) r = NAN;
        else if (s->a == -INFINITY || s->a == INFINITY) r = s->a;
        else r = s->a + log(s->b);
        break;
    default: r = s->a; break;
    }
    if (j->dt == IB_DTYPE_FLOAT32)
        ((float *)j->y)[o] = (float)r;
    else
        ib__store_f64(j->y, j->dt, o, r);
}

static void reduce_range(void *ctx, int64_t begin, int64_t end) {
    const reduce_job *j = ctx;
    double rowf[BLOCK];
    int64_t rowi[BLOCK];
    for (int64_t o = begin; o < end; o++) {
        int64_t base = 0, rem = o;
        for (int32_t d = j->n_keep - 1; d >= 0; d--) {
            base += (rem % j->keep_dims[d]) * j->keep_strides[d];
            rem /= j->keep_dims[d];
        }
        reduce_acc s;
        acc_init(j->kind, &s);
        for (int64_t ro = 0; ro < j->n_red_outer; ro++) {
            int64_t off = base + j->red_off[ro];
            for (int64_t k = 0; k < j->inner_n; k += BLOCK) {
                int64_t n = j->inner_n - k < BLOCK ? j->inner_n - k : BLOCK;
                int64_t at = off + k * j->inner_stride;
                if (j->exact_int) {
                    gather_i64(j->x, j->dt, at, j->inner_stride, n, rowi);
                    acc_fold_i64(j, &s, rowi, n);
                } else {
                    gather_f64(j->x, j->dt, at, j->inner_stride, n, rowf);
                    acc_fold_f64(j->kind, &s, rowf, n);
                }
            }
        }
        acc_store(j, &s, o);
    }
}

/* ---- Float32 fast paths ----------------------------------------------------------- */
/* After dropping size-1 dims and merging neighbours, most reductions are either
 * [kept, reduced] (each output folds one contiguous run) or [kept, reduced, kept] (rows
 * streamed into a block of accumulators). Both read memory in order; sums use double
 * accumulators split across lanes so the adds can overlap. */

#define LANES 8

static double row_sum(const float *x, int64_t n, int how) { /* how: 0 x, 1 |x|, 2 x^2 */
    double acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            double v = x[i + l];
            acc[l] += how == 0 ? v : how == 1 ? fabs(v) : v * v;
        }
    for (; i < n; i++) {
        double v = x[i];
        acc[0] += how == 0 ? v : how == 1 ? fabs(v) : v * v;
    }
    double s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

/* Max (or min) with NaN sticky: once a lane holds NaN no comparison replaces it. */
static double row_extreme(const float *x, int64_t n, bool is_max) {
    float acc[LANES];
    for (int l = 0; l < LANES; l++) acc[l] = x[0];
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            float v = x[i + l];
            bool take = is_max ? v > acc[l] : v < acc[l];
            acc[l] = (take || v != v) ? v : acc[l];
        }
    for (; i < n; i++) {
        float v = x[i];
        bool take = is_max ? v > acc[0] : v < acc[0];
        acc[0] = (take || v != v) ? v : acc[0];
    }
    float m = acc[0];
    for (int l = 1; l < LANES; l++) {
        bool take = is_max ? acc[l] > m : acc[l] < m;
        m = (take || acc[l] != acc[l]) ? acc[l] : m;
    }
    return m;
}

/* The result of a reduction from its folded state: s (sum, extreme or product), m (the
 * max, for log-sum-exp, whose s is then the sum of exp(x - m)) and the element count. */
static double reduce_finish(reduce_kind kind, double s, double m, int64_t count) {
    switch (kind) {
    case RK_MEAN: return s / (double)count;
    case RK_L2: return sqrt(s);
    case RK_LOG_SUM: return log(s);
    case RK_LOG_SUM_EXP:
        if (m != m || m == INFINITY || m == -INFINITY) return m;
        return m + log(s);
    default: return s;
    }
}

static double row_reduce(reduce_kind kind, const float *x, int64_t n) {
    switch (kind) {
    case RK_SUM:
    case RK_MEAN:
    case RK_LOG_SUM: return reduce_finish(kind, row_sum(x, n, 0), 0, n);
    case RK_L1: return row_sum(x, n, 1);
    case RK_L2:
    case RK_SUM_SQUARE: return reduce_finish(kind, row_sum(x, n, 2), 0, n);
    case RK_MAX: return row_extreme(x, n, true);
    case RK_MIN: return row_extreme(x, n, false);
    case RK_PROD: {
        double p = 1.0;
        for (int64_t i = 0; i < n; i++) p *= x[i];
        return p;
    }
    case RK_LOG_SUM_EXP: {
        double m = row_extreme(x, n, true), s = 0.0;
        if (m == m && m != INFINITY && m != -INFINITY)
            for (int64_t i = 0; i < n; i++) s += exp(x[i] - m);
        return reduce_finish(kind, s, m, n);
    }
    }
    return 0.0;
}

typedef struct fast_job {
    reduce_kind kind;
    const float *x;
    float *y;
    int64_t outer, r, inner, n_blocks;
} fast_job;

static void fast_rows_range(void *ctx, int64_t begin, int64_t end) {
    const fast_job *j = ctx;
    for (int64_t o = begin; o < end; o++) j->y[o] = (float)row_reduce(j->kind, j->x + o * j->r, j->r);
}

#define COLS 1024 /* whole rows of typical widths: strided partial rows read far slower */

static void fast_cols_range(void *ctx, int64_t begin, int64_t end) {
    const fast_job *j = ctx;
    double acc[COLS], mx[COLS];
    for (int64_t u = begin; u < end; u++) {
        int64_t o = u / j->n_blocks, b0 = (u % j->n_blocks) * COLS;
        int64_t w = j->inner - b0 < COLS ? j->inner - b0 : COLS;
        const float *base = j->x + o * j->r * j->inner + b0;
        reduce_kind k = j->kind;
        if (k == RK_MAX || k == RK_MIN || k == RK_LOG_SUM_EXP) {
            bool is_max = k != RK_MIN;
            for (int64_t i = 0; i < w; i++) mx[i] = base[i];
            for (int64_t row = 1; row < j->r; row++) {
                const float *p = base + row * j->inner;
                for (int64_t i = 0; i < w; i++) {
                    double v = p[i];
                    bool take = is_max ? v > mx[i] : v < mx[i];
                    mx[i] = (take || v != v) ? v : mx[i];
                }
            }
        }
        if (k == RK_MAX || k == RK_MIN) {
            for (int64_t i = 0; i < w; i++) j->y[o * j->inner + b0 + i] = (float)mx[i];
            continue;
        }
        double init = k == RK_PROD ? 1.0 : 0.0;
        for (int64_t i = 0; i < w; i++) acc[i] = init;
        for (int64_t row = 0; row < j->r; row++) {
            const float *p = base + row * j->inner;
            switch (k) {
            case RK_L1:
                for (int64_t i = 0; i < w; i++) acc[i] += fabs((double)p[i]);
                break;
            case RK_L2:
            case RK_SUM_SQUARE:
                for (int64_t i = 0; i < w; i++) acc[i] += (double)p[i] * p[i];
                break;
            case RK_PROD:
                for (int64_t i = 0; i < w; i++) acc[i] *= p[i];
                break;
            case RK_LOG_SUM_EXP:
                for (int64_t i = 0; i < w; i++) acc[i] += exp(p[i] - mx[i]);
                break;
            default: {
                int64_t i = 0;
                for (; i + LANES <= w; i += LANES) /* fixed-width bodies vectorise at -O2 */
                    for (int l = 0; l < LANES; l++) acc[i + l] += p[i + l];
                for (; i < w; i++) acc[i] += p[i];
                break;
            }
            }
        }
        for (int64_t i = 0; i < w; i++)
            j->y[o * j->inner + b0 + i] =
                (float)reduce_finish(k, acc[i], k == RK_LOG_SUM_EXP ? mx[i] : 0.0, j->r);
    }
}

/* Runs the reduction through a fast path when the layout allows; false otherwise. */
static bool reduce_f32_fast(ib__pool *pool, const reduce_plan *p, const ib_tensor *x,
                            ib_tensor *y, reduce_kind kind) {
    int64_t size[IB_MAX_RANK];
    bool red[IB_MAX_RANK];
    int32_t ng = 0;
    for (int32_t d = 0; d < x->rank; d++) {
        if (x->shape[d] == 1) continue;
        if (x->shape[d] == 0) return false;
        if (ng > 0 && red[ng - 1] == p->reduce[d]) {
            size[ng - 1] *= x->shape[d];
        } else {
            size[ng] = x->shape[d];
            red[ng++] = p->reduce[d];
        }
    }
    fast_job j = {.kind = kind, .x = x->data, .y = y->data, .outer = 1, .inner = 1};
    if (ng == 1 && red[0]) j.r = size[0];
    else if (ng == 2 && !red[0] && red[1]) {
        j.outer = size[0];
        j.r = size[1];
    } else if (ng == 2 && red[0] && !red[1]) {
        j.r = size[0];
        j.inner = size[1];
    } else if (ng == 3 && !red[0] && red[1] && !red[2]) {
        j.outer = size[0];
        j.r = size[1];
        j.inner = size[2];
    } else
        return false;
    if (j.inner == 1) {
        ib__parallel_for(j.outer * j.r > 32768 ? pool : NULL, j.outer, fast_rows_range, &j);
    } else {
        j.n_blocks = (j.inner + COLS - 1) / COLS;
        ib__parallel_for(j.outer * j.r * j.inner > 32768 ? pool : NULL, j.outer * j.n_blocks,
                         fast_cols_range, &j);
    }
    return true;
}

static ib_status run_reduce(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    const ib_tensor *axes_t = (axes_from_input(c->node, c->opset) && c->n_in > 1) ? c->in[1] : NULL;
    reduce_plan p;
    IB_TRY(reduce_plan_make(c->node, c->opset, x->rank, axes_t, false, -1, &p));
    reduce_job j;
    memset(&j, 0, sizeof j);
    j.kind = reduce_kind_of(c->node->op);
    j.dt = x->dtype;
    j.x = x->data;
    j.y = y->data;
    j.is_u64 = x->dtype == IB_DTYPE_UINT64;
    j.exact_int = ib__dtype_is_integer(x->dtype) &&
                  (j.kind == RK_SUM || j.kind == RK_MEAN || j.kind == RK_PROD || j.kind == RK_MAX ||
                   j.kind == RK_MIN || j.kind == RK_L1 || j.kind == RK_SUM_SQUARE);
    int64_t strides[IB_MAX_RANK];
    ib__strides(x->shape, x->rank, strides);

    /* Kept dims in order (size-1 dims dropped: they do not move the offset). */
    int64_t out_count = 1;
    for (int32_t d = 0; d < x->rank; d++) {
        if (p.reduce[d] || x->shape[d] == 1) continue;
        j.keep_dims[j.n_keep] = x->shape[d];
        j.keep_strides[j.n_keep++] = strides[d];
        out_count *= x->shape[d];
    }
    int64_t y_count = ib_tensor_element_count(y);
    if (y_count != out_count)
        return ib__error(IB_ERR_INTERNAL, "%s: output holds %lld elements, expected %lld",
                         ib__node_label(c->node), (long long)y_count, (long long)out_count);
    if (out_count == 0) return IB_OK;
    if (x->dtype == IB_DTYPE_FLOAT32 && reduce_f32_fast(c->pool, &p, x, y, j.kind)) return IB_OK;

    /* Reduced dims: the last one is walked as a strided run, the others are enumerated. */
    int32_t red[IB_MAX_RANK], n_red = 0;
    j.count = 1;
    for (int32_t d = 0; d < x->rank; d++)
        if (p.reduce[d]) {
            red[n_red++] = d;
            j.count *= x->shape[d];
        }
    j.inner_n = 1;
    j.inner_stride = 1;
    if (n_red > 0) {
        j.inner_n = x->shape[red[n_red - 1]];
        j.inner_stride = strides[red[n_red - 1]];
        n_red--;
    }
    j.n_red_outer = 1;
    for (int32_t k = 0; k < n_red; k++) j.n_red_outer *= x->shape[red[k]];
    if (j.inner_n == 0) j.n_red_outer = 0;
    size_t off_n = (size_t)(j.n_red_outer > 0 ? j.n_red_outer : 1);
    int64_t *red_off = ib__aligned_alloc(off_n * sizeof(int64_t));
    if (!red_off)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    int64_t idx[IB_MAX_RANK] = {0};
    for (int64_t ro = 0; ro < j.n_red_outer; ro++) {
        int64_t off = 0;
        for (int32_t k = 0; k < n_red; k++) off += idx[k] * strides[red[k]];
        red_off[ro] = off;
        for (int32_t k = n_red - 1; k >= 0; k--) {
            if (++idx[k] < x->shape[red[k]]) break;
            idx[k] = 0;
        }
    }
    j.red_off = red_off;
    ib__parallel_for(j.count > 4096 || out_count > 64 ? c->pool : NULL, out_count, reduce_range,
                     &j);
    ib__aligned_free(red_off);
    return IB_OK;
}

/* ---- ArgMax / ArgMin ---------------------------------------------------------------- */

static ib_status infer_arg(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    IB_TRY(check_reduce_dtype(c->node, x->dtype));
    int64_t axis, keepdims, last;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    IB_TRY(ib__attr_int(c->node, "keepdims", 1, &keepdims));
    IB_TRY(ib__attr_int(c->node, "select_last_index", 0, &last));
    if (x->rank < 0) {
        ib__set_output(c, 0, IB_DTYPE_INT64, -1, NULL);
        return IB_OK;
    }
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    if (x->dims[ax] == 0)
        return ib__error(IB_ERR_SHAPE, "%s: cannot take %s over the empty axis %d",
                         ib__node_label(c->node), c->node->op_type, ax);
    set_output_axis(c, 0, IB_DTYPE_INT64, x, ax, keepdims != 0, 1);
    return IB_OK;
}

typedef struct arg_job {
    const ib_tensor *x;
    int64_t *y;
    int64_t n, inner;
    bool is_max, last;
} arg_job;

static void arg_range(void *ctx, int64_t begin, int64_t end) {
    const arg_job *j = ctx;
    ib_dtype dt = j->x->dtype;
    bool exact_int = ib__dtype_is_integer(dt) && dt != IB_DTYPE_UINT64;
    double rowf[BLOCK];
    int64_t rowi[BLOCK];
    for (int64_t o = begin; o < end; o++) {
        int64_t outer = o / j->inner, in = o % j->inner;
        int64_t off = outer * j->n * j->inner + in;
        int64_t best_i = 0;
        double best_f = 0.0;
        int64_t best_v = 0;
        bool best_nan = false;
        for (int64_t k = 0; k < j->n; k += BLOCK) {
            int64_t m = j->n - k < BLOCK ? j->n - k : BLOCK;
            if (exact_int) {
                gather_i64(j->x->data, dt, off + k * j->inner, j->inner, m, rowi);
                for (int64_t t = 0; t < m; t++) {
                    int64_t v = rowi[t];
                    bool take;
                    if (k + t == 0) take = true;
                    else if (j->is_max) take = j->last ? v >= best_v : v > best_v;
                    else take = j->last ? v <= best_v : v < best_v;
                    if (take) {
                        best_v = v;
                        best_i = k + t;
                    }
                }
            } else {
                gather_f64(j->x->data, dt, off + k * j->inner, j->inner, m, rowf);
                for (int64_t t = 0; t < m; t++) {
                    double v = rowf[t];
                    bool take;
                    /* NaN wins, as in numpy: the first NaN (or last with select_last_index). */
                    if (k + t == 0) take = true;
                    else if (v != v) take = !best_nan || j->last;
                    else if (best_nan) take = false;
                    else if (j->is_max) take = j->last ? v >= best_f : v > best_f;
                    else take = j->last ? v <= best_f : v < best_f;
                    if (take) {
                        best_f = v;
                        best_nan = v != v;
                        best_i = k + t;
                    }
                }
            }
        }
        j->y[o] = best_i;
    }
}

static ib_status run_arg(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    int64_t axis, last;
    IB_TRY(ib__attr_int(c->node, "axis", 0, &axis));
    IB_TRY(ib__attr_int(c->node, "select_last_index", 0, &last));
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    arg_job j = {.x = x, .y = c->out[0]->data, .is_max = c->node->op == IB_OP_ARG_MAX,
                 .last = last != 0};
    int64_t outer;
    split_at_axis(x->shape, x->rank, ax, &outer, &j.n, &j.inner);
    if (j.n == 0)
        return ib__error(IB_ERR_SHAPE, "%s: cannot take %s over the empty axis %d",
                         ib__node_label(c->node), c->node->op_type, ax);
    ib__parallel_for(c->pool, outer * j.inner, arg_range, &j);
    return IB_OK;
}

/* ---- TopK --------------------------------------------------------------------------- */

/* K from the attribute (opset < 10) or the 1-element input; *known false at load time
 * when the input has no data. */
static ib_status topk_k(const ib__node *node, int32_t opset, const ib_tensor *k_t, bool have_k,
                        int64_t *k, bool *known) {
    *known = false;
    if (opset < 10) {
        IB_TRY(ib__attr_int(node, "k", -1, k));
        *known = true;
    } else {
        if (!have_k)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: required input 'K' is missing",
                             ib__node_label(node));
        if (!k_t) return IB_OK;
        if (k_t->dtype != IB_DTYPE_INT64 && k_t->dtype != IB_DTYPE_INT32)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input 'K' must be int64, not %s",
                             ib__node_label(node), ib_dtype_name(k_t->dtype));
        if (ib_tensor_element_count(k_t) != 1 || k_t->rank > 1)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input 'K' must hold a single value",
                             ib__node_label(node));
        *k = ib__load_i64(k_t->data, k_t->dtype, 0);
        *known = true;
    }
    if (*k < 0)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: K must be non-negative, got %lld",
                         ib__node_label(node), (long long)*k);
    return IB_OK;
}

static ib_status infer_topk(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    IB_TRY(check_reduce_dtype(c->node, x->dtype));
    const ib__value *kv = ib__in(c, 1);
    int64_t k = -1;
    bool known;
    IB_TRY(topk_k(c->node, c->opset, kv ? kv->constant : NULL, kv != NULL, &k, &known));
    int64_t axis;
    IB_TRY(ib__attr_int(c->node, "axis", -1, &axis));
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        ib__set_output(c, 1, IB_DTYPE_INT64, -1, NULL);
        return IB_OK;
    }
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    if (known && x->dims[ax] >= 0 && k > x->dims[ax])
        return ib__error(IB_ERR_SHAPE, "%s: K (%lld) exceeds the axis dimension (%lld)",
                         ib__node_label(c->node), (long long)k, (long long)x->dims[ax]);
    set_output_axis(c, 0, x->dtype, x, ax, true, known ? k : -1);
    set_output_axis(c, 1, IB_DTYPE_INT64, x, ax, true, known ? k : -1);
    return IB_OK;
}

typedef struct topk_item {
    double f;
    int64_t i; /* integer value (exact for int dtypes) */
    int64_t index;
} topk_item;

/* Orders: largest first (ties: lower index first), NaN above everything. */
static int cmp_f_desc(const void *pa, const void *pb) {
    const topk_item *a = pa, *b = pb;
    bool na = a->f != a->f, nb = b->f != b->f;
    if (na != nb) return na ? -1 : 1;
    if (!na && a->f != b->f) return a->f > b->f ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}
static int cmp_f_asc(const void *pa, const void *pb) {
    const topk_item *a = pa, *b = pb;
    bool na = a->f != a->f, nb = b->f != b->f;
    if (na != nb) return na ? 1 : -1;
    if (!na && a->f != b->f) return a->f < b->f ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}
static int cmp_i_desc(const void *pa, const void *pb) {
    const topk_item *a = pa, *b = pb;
    if (a->i != b->i) return a->i > b->i ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}
static int cmp_i_asc(const void *pa, const void *pb) {
    const topk_item *a = pa, *b = pb;
    if (a->i != b->i) return a->i < b->i ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

typedef struct topk_job {
    const ib_tensor *x;
    ib_tensor *values, *indices;
    int64_t n, inner, k;
    bool largest;
    bool failed;
} topk_job;

static void topk_range(void *ctx, int64_t begin, int64_t end) {
    topk_job *j = ctx;
    ib_dtype dt = j->x->dtype;
    bool exact_int = ib__dtype_is_integer(dt) && dt != IB_DTYPE_UINT64;
    size_t es = ib_dtype_size(dt);
    topk_item *items = ib__aligned_alloc((size_t)(j->n > 0 ? j->n : 1) * sizeof(topk_item));
    if (!items) {
        j->failed = true;
        return;
    }
    int (*cmp)(const void *, const void *) =
        exact_int ? (j->largest ? cmp_i_desc : cmp_i_asc) : (j->largest ? cmp_f_desc : cmp_f_asc);
    const char *xd = j->x->data;
    char *vd = j->values ? j->values->data : NULL;
    int64_t *id = j->indices ? j->indices->data : NULL;
    for (int64_t o = begin; o < end; o++) {
        int64_t outer = o / j->inner, in = o % j->inner;
        int64_t off = outer * j->n * j->inner + in;
        for (int64_t t = 0; t < j->n; t++) {
            int64_t at = off + t * j->inner;
            items[t].index = t;
            if (exact_int) items[t].i = ib__load_i64(xd, dt, at);
            else items[t].f = ib__load_f64(xd, dt, at);
        }
        qsort(items, (size_t)j->n, sizeof *items, cmp);
        int64_t obase = outer * j->k * j->inner + in;
        for (int64_t t = 0; t < j->k; t++) {
            int64_t oat = obase + t * j->inner;
            if (vd)
                memcpy(vd + (size_t)oat * es, xd + (size_t)(off + items[t].index * j->inner) * es, es);
            if (id) id[oat] = items[t].index;
        }
    }
    ib__aligned_free(items);
}

static ib_status run_topk(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    int64_t k = 0, axis, largest;
    bool known;
    IB_TRY(topk_k(c->node, c->opset, c->n_in > 1 ? c->in[1] : NULL, c->n_in > 1 && c->in[1], &k,
                  &known));
    IB_TRY(ib__attr_int(c->node, "axis", -1, &axis));
    IB_TRY(ib__attr_int(c->node, "largest", 1, &largest));
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    topk_job j = {.x = x, .values = c->n_out > 0 ? c->out[0] : NULL,
                  .indices = c->n_out > 1 ? c->out[1] : NULL, .k = k, .largest = largest != 0};
    int64_t outer;
    split_at_axis(x->shape, x->rank, ax, &outer, &j.n, &j.inner);
    if (k > j.n)
        return ib__error(IB_ERR_SHAPE, "%s: K (%lld) exceeds the axis dimension (%lld)",
                         ib__node_label(c->node), (long long)k, (long long)j.n);
    if (k == 0) return IB_OK;
    ib__parallel_for(c->pool, outer * j.inner, topk_range, &j);
    if (j.failed)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    return IB_OK;
}

/* ---- CumSum ------------------------------------------------------------------------- */

static ib_status cumsum_axis(const ib__node *node, const ib_tensor *a, int32_t rank, int32_t *ax) {
    if (a->dtype != IB_DTYPE_INT64 && a->dtype != IB_DTYPE_INT32)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input 'axis' must be int32 or int64, not %s",
                         ib__node_label(node), ib_dtype_name(a->dtype));
    if (a->rank > 1 || ib_tensor_element_count(a) != 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input 'axis' must hold a single value",
                         ib__node_label(node));
    return ib__normalize_axis(node, ib__load_i64(a->data, a->dtype, 0), rank, ax);
}

static ib_status infer_cumsum(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0];
    IB_TRY(check_reduce_dtype(c->node, x->dtype));
    if (x->rank == 0)
        return ib__error(IB_ERR_SHAPE, "%s: input 'x' must have rank >= 1", ib__node_label(c->node));
    if (c->in[1]->constant && x->rank > 0) {
        int32_t ax;
        IB_TRY(cumsum_axis(c->node, c->in[1]->constant, x->rank, &ax));
    }
    ib__set_output_like(c, 0, x);
    return IB_OK;
}

typedef struct cumsum_job {
    const ib_tensor *x;
    ib_tensor *y;
    int64_t n, inner;
    bool exclusive, reverse;
} cumsum_job;

static void cumsum_range(void *ctx, int64_t begin, int64_t end) {
    const cumsum_job *j = ctx;
    ib_dtype dt = j->x->dtype;
    bool is_int = ib__dtype_is_integer(dt);
    for (int64_t o = begin; o < end; o++) {
        int64_t outer = o / j->inner, in = o % j->inner;
        int64_t off = outer * j->n * j->inner + in;
        double sf = 0.0;
        uint64_t si = 0;
        for (int64_t t = 0; t < j->n; t++) {
            int64_t at = off + (j->reverse ? j->n - 1 - t : t) * j->inner;
            if (is_int) {
                uint64_t v = (uint64_t)ib__load_i64(j->x->data, dt, at);
                if (!j->exclusive) si += v;
                ib__store_i64(j->y->data, dt, at, (int64_t)si);
                if (j->exclusive) si += v;
            } else if (dt == IB_DTYPE_FLOAT32) {
                double v = ((const float *)j->x->data)[at];
                if (!j->exclusive) sf += v;
                ((float *)j->y->data)[at] = (float)sf;
                if (j->exclusive) sf += v;
            } else {
                double v = ib__load_f64(j->x->data, dt, at);
                if (!j->exclusive) sf += v;
                ib__store_f64(j->y->data, dt, at, sf);
                if (j->exclusive) sf += v;
            }
        }
    }
}

static ib_status run_cumsum(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    int32_t ax;
    IB_TRY(cumsum_axis(c->node, c->in[1], x->rank, &ax));
    int64_t exclusive, reverse;
    IB_TRY(ib__attr_int(c->node, "exclusive", 0, &exclusive));
    IB_TRY(ib__attr_int(c->node, "reverse", 0, &reverse));
    cumsum_job j = {.x = x, .y = c->out[0], .exclusive = exclusive != 0, .reverse = reverse != 0};
    int64_t outer;
    split_at_axis(x->shape, x->rank, ax, &outer, &j.n, &j.inner);
    ib__parallel_for(c->pool, outer * j.inner, cumsum_range, &j);
    return IB_OK;
}

/* ---- Det ---------------------------------------------------------------------------- */

static ib_status infer_det(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    if (x->dtype != IB_DTYPE_UNDEFINED && !ib__dtype_is_float(x->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input dtype %s is not a float type",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    if (x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: input must have rank >= 2, got %d",
                         ib__node_label(c->node), x->rank);
    int64_t m = x->dims[x->rank - 1], n = x->dims[x->rank - 2];
    if (m >= 0 && n >= 0 && m != n)
        return ib__error(IB_ERR_SHAPE, "%s: matrices must be square, got %lld x %lld",
                         ib__node_label(c->node), (long long)n, (long long)m);
    ib__set_output(c, 0, x->dtype, x->rank - 2, x->dims);
    if (c->n_out > 0 && c->out[0])
        for (int32_t d = 0; d < x->rank - 2; d++) c->out[0]->dim_param[d] = x->dim_param[d];
    return IB_OK;
}

typedef struct det_job {
    const ib_tensor *x;
    ib_tensor *y;
    int64_t m;
    bool failed;
} det_job;

static void det_range(void *ctx, int64_t begin, int64_t end) {
    det_job *j = ctx;
    int64_t m = j->m, mm = m * m;
    double *a = ib__aligned_alloc((size_t)(mm > 0 ? mm : 1) * sizeof(double));
    if (!a) {
        j->failed = true;
        return;
    }
    for (int64_t b = begin; b < end; b++) {
        gather_f64(j->x->data, j->x->dtype, b * mm, 1, mm, a);
        /* LU with partial pivoting: det = sign * prod(diagonal). */
        double det = 1.0;
        for (int64_t col = 0; col < m && det != 0.0; col++) {
            int64_t piv = col;
            for (int64_t r = col + 1; r < m; r++)
                if (fabs(a[r * m + col]) > fabs(a[piv * m + col])) piv = r;
            if (a[piv * m + col] == 0.0) {
                det = 0.0;
                break;
            }
            if (piv != col) {
                for (int64_t t = 0; t < m; t++) {
                    double tmp = a[col * m + t];
                    a[col * m + t] = a[piv * m + t];
                    a[piv * m + t] = tmp;
                }
                det = -det;
            }
            double p = a[col * m + col];
            det *= p;
            for (int64_t r = col + 1; r < m; r++) {
                double f = a[r * m + col] / p;
                if (f == 0.0) continue;
                for (int64_t t = col; t < m; t++) a[r * m + t] -= f * a[col * m + t];
            }
        }
        ib__store_f64(j->y->data, j->y->dtype, b, det);
    }
    ib__aligned_free(a);
}

static ib_status run_det(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    det_job j = {.x = x, .y = c->out[0], .m = x->shape[x->rank - 1]};
    int64_t batch = ib__shape_count(x->shape, x->rank - 2);
    if (batch < 0) return ib__error(IB_ERR_SHAPE, "%s: bad input shape", ib__node_label(c->node));
    ib__parallel_for(c->pool, batch, det_range, &j);
    if (j.failed)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    return IB_OK;
}

const ib__op_def ib__ops_reduce[] = {
    {IB_OP_REDUCE_SUM, infer_reduce, run_reduce},
    {IB_OP_REDUCE_MEAN, infer_reduce, run_reduce},
    {IB_OP_REDUCE_MAX, infer_reduce, run_reduce},
    {IB_OP_REDUCE_MIN, infer_reduce, run_reduce},
    {IB_OP_REDUCE_PROD, infer_reduce, run_reduce},
    {IB_OP_REDUCE_L1, infer_reduce, run_reduce},
    {IB_OP_REDUCE_L2, infer_reduce, run_reduce},
    {IB_OP_REDUCE_LOG_SUM, infer_reduce, run_reduce},
    {IB_OP_REDUCE_LOG_SUM_EXP, infer_reduce, run_reduce},
    {IB_OP_REDUCE_SUM_SQUARE, infer_reduce, run_reduce},
    {IB_OP_ARG_MAX, infer_arg, run_arg},
    {IB_OP_ARG_MIN, infer_arg, run_arg},
    {IB_OP_TOP_K, infer_topk, run_topk},
    {IB_OP_CUM_SUM, infer_cumsum, run_cumsum},
    {IB_OP_DET, infer_det, run_det},
    {IB_OP_UNKNOWN, NULL, NULL},
};
