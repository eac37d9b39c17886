/* Softmax, LogSoftmax and Hardmax. Before opset 13 the input is coerced to 2-D at `axis`
 * (default 1) and the op runs over each row's whole tail; from opset 13 it runs along
 * `axis` alone (default -1). Float32 has a direct path; other float dtypes are widened. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

typedef enum smax_kind { SMAX_SOFTMAX, SMAX_LOG, SMAX_HARD } smax_kind;

static bool smax_float_type(ib_dtype dt) {
    return dt == IB_DTYPE_FLOAT32 || dt == IB_DTYPE_FLOAT64 || dt == IB_DTYPE_FLOAT16 ||
           dt == IB_DTYPE_BFLOAT16;
}

/* outer x len x inner decomposition of the input for the node's opset and axis. */
static ib_status smax_layout(const ib__node *node, int32_t opset, int32_t rank, const int64_t *dims,
                             int64_t *outer, int64_t *len, int64_t *inner) {
    int64_t axis;
    IB_TRY(ib__attr_int(node, "axis", opset >= 13 ? -1 : 1, &axis));
    if (rank == 0) { /* a scalar: one row of one element */
        if (axis != 0 && axis != -1)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: axis %lld is out of range for a scalar",
                             ib__node_label(node), (long long)axis);
        *outer = *len = *inner = 1;
        return IB_OK;
    }
    int32_t ax;
    if (opset < 13 && axis == rank)
        ax = rank; /* coerced to [N, 1] */
    else
        IB_TRY(ib__normalize_axis(node, axis, rank, &ax));
    *outer = 1;
    *len = 1;
    *inner = 1;
    for (int32_t i = 0; i < rank; i++) {
        if (i < ax)
            *outer *= dims[i];
        else if (opset < 13 || i == ax)
            *len *= dims[i];
        else
            *inner *= dims[i];
    }
    return IB_OK;
}

static ib_status infer_smax(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    if (x->dtype != IB_DTYPE_UNDEFINED && !smax_float_type(x->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: input type %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    if (x->rank >= 0) {
        int64_t dims[IB_MAX_RANK], o, l, in;
        for (int32_t i = 0; i < x->rank; i++) dims[i] = 1; /* only the axis check matters */
        IB_TRY(smax_layout(c->node, c->opset, x->rank, dims, &o, &l, &in));
    }
    ib__set_output_like(c, 0, x);
    return IB_OK;
}

typedef struct smax_job {
    smax_kind kind;
    int64_t len, inner;
    const float *xf;
    float *yf;
    const double *xd;
    double *yd;
} smax_job;

/* Contiguous float32 rows (inner == 1): the common case (attention, classifiers). */
static void smax_rows_f32(const smax_job *j, int64_t r) {
    const float *x = j->xf + r * j->len;
    float *y = j->yf + r * j->len;
    int64_t n = j->len;
    float mx = x[0];
    int64_t arg = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx || (isnan(x[i]) && !isnan(mx))) {
            mx = x[i];
            arg = i;
        }
    if (j->kind == SMAX_HARD) {
        for (int64_t i = 0; i < n; i++) y[i] = i == arg ? 1.0f : 0.0f;
        return;
    }
    double sum = 0.0;
    if (j->kind == SMAX_SOFTMAX) {
        for (int64_t i = 0; i < n; i++) {
            y[i] = expf(x[i] - mx);
            sum += y[i];
        }
        float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < n; i++) y[i] *= inv;
    } else {
        for (int64_t i = 0; i < n; i++) sum += exp((double)(x[i] - mx));
        float lse = (float)log(sum);
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mx) - lse;
    }
}

static inline double sx(const smax_job *j, int64_t i) {
    return j->xf ? (double)j->xf[i] : j->xd[i];
}

static inline void sy(const smax_job *j, int64_t i, double v) {
    if (j->yf)
        j->yf[i] = (float)v;
    else
        j->yd[i] = v;
}

/* General rows: element k of row (o, in) is at (o * len + k) * inner + in. */
static void smax_row_generic(const smax_job *j, int64_t r) {
    int64_t o = r / j->inner, in = r % j->inner;
    int64_t base = o * j->len * j->inner + in, st = j->inner;
    double mx = sx(j, base);
    int64_t arg = 0;
    for (int64_t k = 1; k < j->len; k++) {
        double v = sx(j, base + k * st);
        if (v > mx || (isnan(v) && !isnan(mx))) {
            mx = v;
            arg = k;
        }
    }
    if (j->kind == SMAX_HARD) {
        for (int64_t k = 0; k < j->len; k++) sy(j, base + k * st, k == arg ? 1.0 : 0.0);
        return;
    }
    double sum = 0.0;
    for (int64_t k = 0; k < j->len; k++) sum += exp(sx(j, base + k * st) - mx);
    if (j->kind == SMAX_SOFTMAX) {
        for (int64_t k = 0; k < j->len; k++)
            sy(j, base + k * st, exp(sx(j, base + k * st) - mx) / sum);
    } else {
        double lse = log(sum);
        for (int64_t k = 0; k < j->len; k++) sy(j, base + k * st, sx(j, base + k * st) - mx - lse);
    }
}

static void smax_range(void *ctx, int64_t begin, int64_t end) {
    const smax_job *j = ctx;
    for (int64_t r = begin; r < end; r++) {
        if (j->xf && j->inner == 1)
            smax_rows_f32(j, r);
        else
            smax_row_generic(j, r);
    }
}

static ib_status run_smax(ib__run_ctx *c, smax_kind kind) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    smax_job j;
    memset(&j, 0, sizeof j);
    j.kind = kind;
    int64_t outer;
    IB_TRY(smax_layout(c->node, c->opset, x->rank, x->shape, &outer, &j.len, &j.inner));
    int64_t rows = outer * j.inner, n = ib_tensor_element_count(x);
    if (rows == 0 || j.len == 0) return IB_OK;
    if (x->dtype == IB_DTYPE_FLOAT32) {
        j.xf = x->data;
        j.yf = y->data;
        ib__parallel_for(c->pool, rows, smax_range, &j);
        return IB_OK;
    }
    if (!smax_float_type(x->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: input type %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    double *xd = ib__aligned_alloc((size_t)n * sizeof(double));
    double *yd = ib__aligned_alloc((size_t)n * sizeof(double));
    if (!xd || !yd) {
        ib__aligned_free(xd);
        ib__aligned_free(yd);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    }
    for (int64_t i = 0; i < n; i++) xd[i] = ib__load_f64(x->data, x->dtype, i);
    j.xd = xd;
    j.yd = yd;
    ib__parallel_for(c->pool, rows, smax_range, &j);
    for (int64_t i = 0; i < n; i++) ib__store_f64(y->data, y->dtype, i, yd[i]);
    ib__aligned_free(xd);
    ib__aligned_free(yd);
    return IB_OK;
}

static ib_status run_softmax(ib__run_ctx *c) {
    return run_smax(c, SMAX_SOFTMAX);
}
static ib_status run_log_softmax(ib__run_ctx *c) {
    return run_smax(c, SMAX_LOG);
}
static ib_status run_hardmax(ib__run_ctx *c) {
    return run_smax(c, SMAX_HARD);
}

const ib__op_def ib__ops_softmax[] = {
    {IB_OP_SOFTMAX, infer_smax, run_softmax, false},
    {IB_OP_LOG_SOFTMAX, infer_smax, run_log_softmax, false},
    {IB_OP_HARDMAX, infer_smax, run_hardmax, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
