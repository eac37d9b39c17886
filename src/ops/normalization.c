/* Normalization ops: BatchNormalization (inference, and training-mode statistics),
 * LayerNormalization, InstanceNormalization, LRN, MeanVarianceNormalization and
 * LpNormalization. Statistics accumulate in double; float32 data is read directly and
 * other float dtypes are widened. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

static bool norm_float_type(ib_dtype dt) {
    return dt == IB_DTYPE_FLOAT32 || dt == IB_DTYPE_FLOAT64 || dt == IB_DTYPE_FLOAT16 ||
           dt == IB_DTYPE_BFLOAT16;
}

static ib_status require_float(const ib__infer_ctx *c, const ib__value *v, const char *what) {
    if (v->dtype == IB_DTYPE_UNDEFINED || norm_float_type(v->dtype)) return IB_OK;
    return ib__error(IB_ERR_UNSUPPORTED, "%s: %s of type %s is not supported",
                     ib__node_label(c->node), what, ib_dtype_name(v->dtype));
}

/* A float tensor viewed as doubles: float32 is read in place, others are widened. */
typedef struct fview {
    const float *f;
    double *d; /* owned when non-NULL */
} fview;

static ib_status fview_open(const ib__node *node, const ib_tensor *t, fview *v) {
    v->f = NULL;
    v->d = NULL;
    if (!norm_float_type(t->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: input of type %s is not supported",
                         ib__node_label(node), ib_dtype_name(t->dtype));
    if (t->dtype == IB_DTYPE_FLOAT32) {
        v->f = t->data;
        return IB_OK;
    }
    int64_t n = ib_tensor_element_count(t);
    v->d = ib__aligned_alloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!v->d) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(node));
    for (int64_t i = 0; i < n; i++) v->d[i] = ib__load_f64(t->data, t->dtype, i);
    return IB_OK;
}

static inline double fv(const fview *v, int64_t i) {
    return v->f ? (double)v->f[i] : v->d[i];
}

static void fview_close(fview *v) {
    ib__aligned_free(v->d);
}

/* Output buffer: float32 written in place, other dtypes through a double buffer. */
typedef struct fout {
    ib_tensor *t;
    float *f;
    double *d;
} fout;

static ib_status fout_open(const ib__node *node, ib_tensor *t, fout *o) {
    o->t = t;
    o->f = NULL;
    o->d = NULL;
    if (t->dtype == IB_DTYPE_FLOAT32) {
        o->f = t->data;
        return IB_OK;
    }
    int64_t n = ib_tensor_element_count(t);
    o->d = ib__aligned_alloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!o->d) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(node));
    return IB_OK;
}

static inline void fo_set(const fout *o, int64_t i, double v) {
    if (o->f)
        o->f[i] = (float)v;
    else
        o->d[i] = v;
}

/* Flushes a double buffer into the tensor's dtype and frees it. */
static void fout_close(fout *o, bool flush) {
    if (o->d && flush) {
        int64_t n = ib_tensor_element_count(o->t);
        for (int64_t i = 0; i < n; i++) ib__store_f64(o->t->data, o->t->dtype, i, o->d[i]);
    }
    ib__aligned_free(o->d);
    o->d = NULL;
}

/* Reads a small parameter tensor as doubles (caller frees). */
static double *load_params(const ib_tensor *t, int64_t n) {
    double *d = ib__aligned_alloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!d) return NULL;
    for (int64_t i = 0; i < n; i++) d[i] = ib__load_f64(t->data, t->dtype, i);
    return d;
}

/* =====================================================================================
 * BatchNormalization
 * ===================================================================================== */

static ib_status bn_training(const ib__node *node, int32_t opset, bool *training) {
    int64_t tm = 0;
    if (opset >= 14) IB_TRY(ib__attr_int(node, "training_mode", 0, &tm));
    *training = tm != 0;
    return IB_OK;
}

static ib_status infer_batch_norm(ib__infer_ctx *c) {
    for (int32_t i = 0; i < 5; i++) IB_TRY(ib__require_input(c, i));
    const ib__value *x = c->in[0];
    IB_TRY(require_float(c, x, "X"));
    int64_t spatial = 1;
    if (c->opset < 9) IB_TRY(ib__attr_int(c->node, "spatial", 1, &spatial));
    if (x->rank >= 0 && x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: X needs rank >= 2 (got %d)", ib__node_label(c->node),
                         x->rank);
    int64_t ch = x->rank >= 2 ? x->dims[1] : -1;
    for (int32_t i = 1; i < 5; i++) {
        const ib__value *p = c->in[i];
        IB_TRY(require_float(c, p, "a parameter"));
        if (spatial && p->rank >= 0 &&
            (p->rank != 1 || (ch >= 0 && p->dims[0] >= 0 && p->dims[0] != ch)))
            return ib__error(IB_ERR_SHAPE, "%s: input %d must be 1-D with %lld values",
                             ib__node_label(c->node), i, (long long)ch);
    }
    ib__set_output_like(c, 0, x);
    /* Extra outputs: running mean and variance (training), or older opsets' statistics. */
    for (int32_t i = 1; i < c->n_out; i++)
        ib__set_output_like(c, i, c->in[i == 1 || i == 3 ? 3 : 4]);
    return IB_OK;
}

typedef struct bn_job {
    fview x;
    fout y;
    const double *a, *b; /* y = x * a[ch] + b[ch] */
    int64_t ch, inner, per_feature_len;
} bn_job;

static void bn_range(void *ctx, int64_t begin, int64_t end) {
    const bn_job *j = ctx;
    for (int64_t plane = begin; plane < end; plane++) {
        int64_t cidx = plane % j->ch, base = plane * j->inner;
        if (j->per_feature_len) { /* spatial = 0: one parameter per (channel, position) */
            for (int64_t i = 0; i < j->inner; i++) {
                int64_t f = cidx * j->inner + i;
                fo_set(&j->y, base + i, fv(&j->x, base + i) * j->a[f] + j->b[f]);
            }
            continue;
        }
        double a = j->a[cidx], b = j->b[cidx];
        if (j->x.f && j->y.f) {
            const float *xs = j->x.f + base;
            float *ys = j->y.f + base;
            float af = (float)a, bf = (float)b;
            for (int64_t i = 0; i < j->inner; i++) ys[i] = xs[i] * af + bf;
        } else {
            for (int64_t i = 0; i < j->inner; i++)
                fo_set(&j->y, base + i, fv(&j->x, base + i) * a + b);
        }
    }
}

static ib_status run_batch_norm(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    if (x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: X needs rank >= 2", ib__node_label(c->node));
    float eps, momentum;
    IB_TRY(ib__attr_float(c->node, "epsilon", 1e-5f, &eps));
    IB_TRY(ib__attr_float(c->node, "momentum", 0.9f, &momentum));
    int64_t spatial = 1;
    if (c->opset < 9) IB_TRY(ib__attr_int(c->node, "spatial", 1, &spatial));
    bool training;
    IB_TRY(bn_training(c->node, c->opset, &training));
    int64_t n = x->shape[0], ch = x->shape[1];
    int64_t inner = 1;
    for (int32_t i = 2; i < x->rank; i++) inner *= x->shape[i];
    int64_t nparam = spatial ? ch : ch * inner;
    for (int32_t i = 1; i < 5; i++)
        if (!norm_float_type(c->in[i]->dtype) || ib_tensor_element_count(c->in[i]) != nparam)
            return ib__error(IB_ERR_SHAPE, "%s: input %d must be a float tensor of %lld values",
                             ib__node_label(c->node), i, (long long)nparam);
    if (training && !spatial)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: training mode needs spatial = 1",
                         ib__node_label(c->node));
    double *scale = load_params(c->in[1], nparam), *bias = load_params(c->in[2], nparam);
    double *mean = load_params(c->in[3], nparam), *var = load_params(c->in[4], nparam);
    double *a = ib__aligned_alloc((size_t)(nparam > 0 ? nparam : 1) * sizeof(double));
    double *b = ib__aligned_alloc((size_t)(nparam > 0 ? nparam : 1) * sizeof(double));
    bn_job j;
    memset(&j, 0, sizeof j);
    ib_status st = IB_OK;
    if (!scale || !bias || !mean || !var || !a || !b) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
        goto done;
    }
    st = fview_open(c->node, x, &j.x);
    if (st == IB_OK) st = fout_open(c->node, c->out[0], &j.y);
    if (st != IB_OK) goto done;
    if (training) {
        /* batch statistics (population variance) replace the running ones for Y */
        int64_t cnt = n * inner;
        for (int64_t k = 0; k < ch; k++) {
            double s = 0.0, s2 = 0.0;
            for (int64_t b0 = 0; b0 < n; b0++)
                for (int64_t i = 0; i < inner; i++) s += fv(&j.x, (b0 * ch + k) * inner + i);
            double mu = cnt ? s / (double)cnt : 0.0;
            for (int64_t b0 = 0; b0 < n; b0++)
                for (int64_t i = 0; i < inner; i++) {
                    double dlt = fv(&j.x, (b0 * ch + k) * inner + i) - mu;
                    s2 += dlt * dlt;
                }
            double v = cnt ? s2 / (double)cnt : 0.0;
            a[k] = scale[k] / sqrt(v + (double)eps);
            b[k] = bias[k] - mu * a[k];
            double rm = mean[k] * momentum + mu * (1.0 - momentum);
            double rv = var[k] * momentum + v * (1.0 - momentum);
            if (c->n_out > 1 && c->out[1]) ib__store_f64(c->out[1]->data, c->out[1]->dtype, k, rm);
            if (c->n_out > 2 && c->out[2]) ib__store_f64(c->out[2]->data, c->out[2]->dtype, k, rv);
        }
    } else {
        for (int64_t k = 0; k < nparam; k++) {
            a[k] = scale[k] / sqrt(var[k] + (double)eps);
            b[k] = bias[k] - mean[k] * a[k];
        }
        /* Inference with extra outputs (old opsets): pass the statistics through. */
        for (int32_t o = 1; o < c->n_out; o++) {
            if (!c->out[o]) continue;
            const double *src = (o == 1 || o == 3) ? mean : var;
            int64_t cnt = ib_tensor_element_count(c->out[o]);
            for (int64_t k = 0; k < cnt && k < nparam; k++)
                ib__store_f64(c->out[o]->data, c->out[o]->dtype, k, src[k]);
        }
    }
    j.a = a;
    j.b = b;
    j.ch = ch;
    j.inner = inner;
    j.per_feature_len = spatial ? 0 : inner;
    ib__parallel_for(c->pool, n * ch, bn_range, &j);
    fout_close(&j.y, true);
done:
    fview_close(&j.x);
    fout_close(&j.y, false);
    ib__aligned_free(scale);
    ib__aligned_free(bias);
    ib__aligned_free(mean);
    ib__aligned_free(var);
    ib__aligned_free(a);
    ib__aligned_free(b);
    return st;
}

/* =====================================================================================
 * LayerNormalization
 * ===================================================================================== */

static ib_status infer_layer_norm(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0];
    IB_TRY(require_float(c, x, "X"));
    int64_t axis, stash;
    IB_TRY(ib__attr_int(c->node, "axis", -1, &axis));
    IB_TRY(ib__attr_int(c->node, "stash_type", 1, &stash));
    ib_dtype sdt = stash == 1 ? IB_DTYPE_FLOAT32 : (ib_dtype)stash;
    if (!ib__dtype_is_valid((int32_t)stash) || !norm_float_type(sdt))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: stash_type %lld is not a float type",
                         ib__node_label(c->node), (long long)stash);
    ib__set_output_like(c, 0, x);
    if (x->rank < 0) {
        ib__set_output(c, 1, sdt, -1, NULL);
        ib__set_output(c, 2, sdt, -1, NULL);
        return IB_OK;
    }
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    int64_t dims[IB_MAX_RANK];
    for (int32_t i = 0; i < x->rank; i++) dims[i] = i < ax ? x->dims[i] : 1;
    ib__set_output(c, 1, sdt, x->rank, dims);
    ib__set_output(c, 2, sdt, x->rank, dims);
    return IB_OK;
}

/* Expands a parameter broadcastable to the normalized shape dims[ax..rank) into `inner`
 * doubles laid out over that shape. */
static ib_status expand_param(const ib__node *node, const ib_tensor *p, const int64_t *dims,
                              int32_t nd, int64_t inner, double *out, const char *what) {
    if (p->rank > nd)
        return ib__error(IB_ERR_SHAPE, "%s: %s has rank %d, more than the %d normalized dims",
                         ib__node_label(node), what, p->rank, nd);
    int64_t st[IB_MAX_RANK], pst[IB_MAX_RANK];
    ib__strides(p->shape, p->rank, pst);
    for (int32_t d = 0; d < nd; d++) {
        int32_t pd = d - (nd - p->rank);
        if (pd < 0) {
            st[d] = 0;
            continue;
        }
        if (p->shape[pd] != 1 && p->shape[pd] != dims[d])
            return ib__error(IB_ERR_SHAPE, "%s: %s does not broadcast to the normalized shape",
                             ib__node_label(node), what);
        st[d] = p->shape[pd] == 1 ? 0 : pst[pd];
    }
    for (int64_t i = 0; i < inner; i++) {
        int64_t rem = i, off = 0;
        for (int32_t d = nd - 1; d >= 0; d--) {
            off += (rem % dims[d]) * st[d];
            rem /= dims[d];
        }
        out[i] = ib__load_f64(p->data, p->dtype, off);
    }
    return IB_OK;
}

typedef struct ln_job {
    fview x;
    fout y;
    const double *scale, *bias; /* inner values each; bias may be NULL */
    int64_t inner;
    double eps;
    ib_tensor *mean_out, *inv_out;
} ln_job;

static void ln_range(void *ctx, int64_t begin, int64_t end) {
    const ln_job *j = ctx;
    for (int64_t r = begin; r < end; r++) {
        int64_t base = r * j->inner;
        double s = 0.0, s2 = 0.0;
        for (int64_t i = 0; i < j->inner; i++) s += fv(&j->x, base + i);
        double mu = j->inner ? s / (double)j->inner : 0.0;
        for (int64_t i = 0; i < j->inner; i++) {
            double d = fv(&j->x, base + i) - mu;
            s2 += d * d;
        }
        double inv = 1.0 / sqrt((j->inner ? s2 / (double)j->inner : 0.0) + j->eps);
        for (int64_t i = 0; i < j->inner; i++) {
            double v = (fv(&j->x, base + i) - mu) * inv * j->scale[i];
            if (j->bias) v += j->bias[i];
            fo_set(&j->y, base + i, v);
        }
        if (j->mean_out) ib__store_f64(j->mean_out->data, j->mean_out->dtype, r, mu);
        if (j->inv_out) ib__store_f64(j->inv_out->data, j->inv_out->dtype, r, inv);
    }
}

static ib_status run_layer_norm(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *scale = c->in[1];
    const ib_tensor *bias = c->n_in > 2 ? c->in[2] : NULL;
    int64_t axis;
    float eps;
    IB_TRY(ib__attr_int(c->node, "axis", -1, &axis));
    IB_TRY(ib__attr_float(c->node, "epsilon", 1e-5f, &eps));
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    if (!norm_float_type(scale->dtype) || (bias && !norm_float_type(bias->dtype)))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: Scale and B must be float tensors",
                         ib__node_label(c->node));
    int64_t outer = 1, inner = 1;
    for (int32_t i = 0; i < x->rank; i++) {
        if (i < ax)
            outer *= x->shape[i];
        else
            inner *= x->shape[i];
    }
    ln_job j;
    memset(&j, 0, sizeof j);
    double *sc = ib__aligned_alloc((size_t)(inner > 0 ? inner : 1) * sizeof(double));
    double *bi = bias ? ib__aligned_alloc((size_t)(inner > 0 ? inner : 1) * sizeof(double)) : NULL;
    ib_status st = IB_OK;
    if (!sc || (bias && !bi)) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
        goto done;
    }
    st = expand_param(c->node, scale, x->shape + ax, x->rank - ax, inner, sc, "Scale");
    if (st == IB_OK && bias)
        st = expand_param(c->node, bias, x->shape + ax, x->rank - ax, inner, bi, "B");
    if (st == IB_OK) st = fview_open(c->node, x, &j.x);
    if (st == IB_OK) st = fout_open(c->node, c->out[0], &j.y);
    if (st != IB_OK) goto done;
    j.scale = sc;
    j.bias = bi;
    j.inner = inner;
    j.eps = eps;
    j.mean_out = c->n_out > 1 ? c->out[1] : NULL;
    j.inv_out = c->n_out > 2 ? c->out[2] : NULL;
    ib__parallel_for(c->pool, outer, ln_range, &j);
    fout_close(&j.y, true);
done:
    fview_close(&j.x);
    fout_close(&j.y, false);
    ib__aligned_free(sc);
    ib__aligned_free(bi);
    return st;
}

/* =====================================================================================
 * InstanceNormalization
 * ===================================================================================== */

static ib_status infer_instance_norm(ib__infer_ctx *c) {
    for (int32_t i = 0; i < 3; i++) IB_TRY(ib__require_input(c, i));
    const ib__value *x = c->in[0];
    IB_TRY(require_float(c, x, "X"));
    if (x->rank >= 0 && x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: X needs rank >= 2 (got %d)", ib__node_label(c->node),
                         x->rank);
    for (int32_t i = 1; i < 3; i++) {
        const ib__value *p = c->in[i];
        if (p->rank >= 0 && (p->rank != 1 || (x->rank >= 2 && x->dims[1] >= 0 && p->dims[0] >= 0 &&
                                              p->dims[0] != x->dims[1])))
            return ib__error(IB_ERR_SHAPE, "%s: input %d must be 1-D with one value per channel",
                             ib__node_label(c->node), i);
    }
    ib__set_output_like(c, 0, x);
    return IB_OK;
}

typedef struct in_job {
    fview x;
    fout y;
    const double *scale, *bias;
    int64_t ch, inner;
    double eps;
} in_job;

static void in_range(void *ctx, int64_t begin, int64_t end) {
    const in_job *j = ctx;
    for (int64_t plane = begin; plane < end; plane++) {
        int64_t base = plane * j->inner, k = plane % j->ch;
        double s = 0.0, s2 = 0.0;
        for (int64_t i = 0; i < j->inner; i++) s += fv(&j->x, base + i);
        double mu = j->inner ? s / (double)j->inner : 0.0;
        for (int64_t i = 0; i < j->inner; i++) {
            double d = fv(&j->x, base + i) - mu;
            s2 += d * d;
        }
        double a = j->scale[k] / sqrt((j->inner ? s2 / (double)j->inner : 0.0) + j->eps);
        double b = j->bias[k] - mu * a;
        for (int64_t i = 0; i < j->inner; i++) fo_set(&j->y, base + i, fv(&j->x, base + i) * a + b);
    }
}

static ib_status run_instance_norm(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    if (x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: X needs rank >= 2", ib__node_label(c->node));
    float eps;
    IB_TRY(ib__attr_float(c->node, "epsilon", 1e-5f, &eps));
    int64_t ch = x->shape[1], inner = 1;
    for (int32_t i = 2; i < x->rank; i++) inner *= x->shape[i];
    for (int32_t i = 1; i < 3; i++)
        if (!norm_float_type(c->in[i]->dtype) || ib_tensor_element_count(c->in[i]) != ch)
            return ib__error(IB_ERR_SHAPE, "%s: input %d must hold %lld float values",
                             ib__node_label(c->node), i, (long long)ch);
    in_job j;
    memset(&j, 0, sizeof j);
    double *sc = load_params(c->in[1], ch), *bi = load_params(c->in[2], ch);
    ib_status st = IB_OK;
    if (!sc || !bi) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
        goto done;
    }
    st = fview_open(c->node, x, &j.x);
    if (st == IB_OK) st = fout_open(c->node, c->out[0], &j.y);
    if (st != IB_OK) goto done;
    j.scale = sc;
    j.bias = bi;
    j.ch = ch;
    j.inner = inner;
    j.eps = eps;
    ib__parallel_for(c->pool, x->shape[0] * ch, in_range, &j);
    fout_close(&j.y, true);
done:
    fview_close(&j.x);
    fout_close(&j.y, false);
    ib__aligned_free(sc);
    ib__aligned_free(bi);
    return st;
}

/* =====================================================================================
 * LRN
 * ===================================================================================== */

static ib_status infer_lrn(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    IB_TRY(require_float(c, x, "X"));
    int64_t size;
    IB_TRY(ib__attr_int(c->node, "size", 0, &size));
    if (size < 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'size' must be >= 1",
                         ib__node_label(c->node));
    if (x->rank >= 0 && x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: X needs rank >= 2", ib__node_label(c->node));
    ib__set_output_like(c, 0, x);
    return IB_OK;
}

typedef struct lrn_job {
    fview x;
    fout y;
    int64_t ch, inner, size;
    double alpha, beta, bias;
} lrn_job;

static void lrn_range(void *ctx, int64_t begin, int64_t end) {
    const lrn_job *j = ctx;
    int64_t lo_off = (j->size - 1) / 2, hi_off = j->size - 1 - lo_off;
    for (int64_t plane = begin; plane < end; plane++) {
        int64_t n = plane / j->ch, k = plane % j->ch;
        int64_t c0 = k - lo_off < 0 ? 0 : k - lo_off;
        int64_t c1 = k + hi_off >= j->ch ? j->ch - 1 : k + hi_off;
        int64_t base = plane * j->inner;
        for (int64_t i = 0; i < j->inner; i++) {
            double sq = 0.0;
            for (int64_t cc = c0; cc <= c1; cc++) {
                double v = fv(&j->x, (n * j->ch + cc) * j->inner + i);
                sq += v * v;
            }
            double den = pow(j->bias + j->alpha / (double)j->size * sq, j->beta);
            fo_set(&j->y, base + i, fv(&j->x, base + i) / den);
        }
    }
}

static ib_status run_lrn(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    if (x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: X needs rank >= 2", ib__node_label(c->node));
    lrn_job j;
    memset(&j, 0, sizeof j);
    float alpha, beta, bias;
    IB_TRY(ib__attr_int(c->node, "size", 0, &j.size));
    IB_TRY(ib__attr_float(c->node, "alpha", 1e-4f, &alpha));
    IB_TRY(ib__attr_float(c->node, "beta", 0.75f, &beta));
    IB_TRY(ib__attr_float(c->node, "bias", 1.0f, &bias));
    if (j.size < 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'size' must be >= 1",
                         ib__node_label(c->node));
    j.alpha = alpha;
    j.beta = beta;
    j.bias = bias;
    j.ch = x->shape[1];
    j.inner = 1;
    for (int32_t i = 2; i < x->rank; i++) j.inner *= x->shape[i];
    ib_status st = fview_open(c->node, x, &j.x);
    if (st == IB_OK) st = fout_open(c->node, c->out[0], &j.y);
    if (st == IB_OK) {
        ib__parallel_for(c->pool, x->shape[0] * j.ch, lrn_range, &j);
        fout_close(&j.y, true);
    }
    fview_close(&j.x);
    fout_close(&j.y, false);
    return st;
}

/* =====================================================================================
 * MeanVarianceNormalization: (X - E[X]) / (sqrt(Var[X]) + 1e-9) over `axes`
 * ===================================================================================== */

static ib_status infer_mvn(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(require_float(c, c->in[0], "X"));
    ib__set_output_like(c, 0, c->in[0]);
    return IB_OK;
}

static ib_status run_mvn(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    int32_t na = 0;
    const int64_t *av = NULL;
    IB_TRY(ib__attr_ints(c->node, "axes", &na, &av));
    static const int64_t dflt[3] = {0, 2, 3};
    if (na == 0) {
        av = dflt;
        na = 3;
    }
    bool reduced[IB_MAX_RANK] = {false};
    for (int32_t i = 0; i < na; i++) {
        int32_t a;
        IB_TRY(ib__normalize_axis(c->node, av[i], x->rank, &a));
        reduced[a] = true;
    }
    /* group id of an element: its index over the kept dims */
    int64_t n = ib_tensor_element_count(x), groups = 1;
    for (int32_t d = 0; d < x->rank; d++)
        if (!reduced[d]) groups *= x->shape[d];
    int64_t per = groups ? n / groups : 0;
    fview xv;
    fout yv;
    memset(&yv, 0, sizeof yv);
    double *mean = ib__calloc((size_t)(groups > 0 ? groups : 1), sizeof(double));
    double *sd = ib__calloc((size_t)(groups > 0 ? groups : 1), sizeof(double));
    int64_t *gid = ib__aligned_alloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    ib_status st = fview_open(c->node, x, &xv);
    if (st == IB_OK && (!mean || !sd || !gid))
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    if (st == IB_OK) st = fout_open(c->node, c->out[0], &yv);
    if (st == IB_OK) {
        int64_t idx[IB_MAX_RANK] = {0};
        for (int64_t i = 0; i < n; i++) {
            int64_t g = 0;
            for (int32_t d = 0; d < x->rank; d++)
                if (!reduced[d]) g = g * x->shape[d] + idx[d];
            gid[i] = g;
            mean[g] += fv(&xv, i);
            for (int32_t d = x->rank - 1; d >= 0; d--) {
                if (++idx[d] < x->shape[d]) break;
                idx[d] = 0;
            }
        }
        for (int64_t g = 0; g < groups; g++) mean[g] = per ? mean[g] / (double)per : 0.0;
        for (int64_t i = 0; i < n; i++) {
            double dl = fv(&xv, i) - mean[gid[i]];
            sd[gid[i]] += dl * dl;
        }
        for (int64_t g = 0; g < groups; g++) sd[g] = sqrt(per ? sd[g] / (double)per : 0.0) + 1e-9;
        for (int64_t i = 0; i < n; i++) fo_set(&yv, i, (fv(&xv, i) - mean[gid[i]]) / sd[gid[i]]);
        fout_close(&yv, true);
    }
    fview_close(&xv);
    fout_close(&yv, false);
    ib__free(mean);
    ib__free(sd);
    ib__aligned_free(gid);
    return st;
}

/* =====================================================================================
 * LpNormalization
 * ===================================================================================== */

static ib_status infer_lp_norm(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    IB_TRY(require_float(c, x, "X"));
    int64_t p, axis;
    IB_TRY(ib__attr_int(c->node, "p", 2, &p));
    IB_TRY(ib__attr_int(c->node, "axis", -1, &axis));
    if (p != 1 && p != 2)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: p must be 1 or 2 (got %lld)",
                         ib__node_label(c->node), (long long)p);
    if (x->rank >= 0) {
        int32_t ax;
        IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    }
    ib__set_output_like(c, 0, x);
    return IB_OK;
}

static ib_status run_lp_norm(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    int64_t p, axis;
    IB_TRY(ib__attr_int(c->node, "p", 2, &p));
    IB_TRY(ib__attr_int(c->node, "axis", -1, &axis));
    if (p != 1 && p != 2)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: p must be 1 or 2", ib__node_label(c->node));
    int32_t ax;
    IB_TRY(ib__normalize_axis(c->node, axis, x->rank, &ax));
    int64_t outer = 1, len = x->shape[ax], inner = 1;
    for (int32_t i = 0; i < ax; i++) outer *= x->shape[i];
    for (int32_t i = ax + 1; i < x->rank; i++) inner *= x->shape[i];
    fview xv;
    fout yv;
    memset(&yv, 0, sizeof yv);
    ib_status st = fview_open(c->node, x, &xv);
    if (st == IB_OK) st = fout_open(c->node, c->out[0], &yv);
    if (st == IB_OK) {
        for (int64_t o = 0; o < outer; o++)
            for (int64_t in = 0; in < inner; in++) {
                int64_t base = o * len * inner + in;
                double norm = 0.0;
                for (int64_t k = 0; k < len; k++) {
                    double v = fv(&xv, base + k * inner);
                    norm += p == 1 ? fabs(v) : v * v;
                }
                if (p == 2) norm = sqrt(norm);
                for (int64_t k = 0; k < len; k++) {
                    double v = fv(&xv, base + k * inner);
                    fo_set(&yv, base + k * inner, norm == 0.0 ? v : v / norm);
                }
            }
        fout_close(&yv, true);
    }
    fview_close(&xv);
    fout_close(&yv, false);
    return st;
}

const ib__op_def ib__ops_normalization[] = {
    {IB_OP_BATCH_NORMALIZATION, infer_batch_norm, run_batch_norm, false},
    {IB_OP_LAYER_NORMALIZATION, infer_layer_norm, run_layer_norm, false},
    {IB_OP_INSTANCE_NORMALIZATION, infer_instance_norm, run_instance_norm, false},
    {IB_OP_LRN, infer_lrn, run_lrn, false},
    {IB_OP_MEAN_VARIANCE_NORMALIZATION, infer_mvn, run_mvn, false},
    {IB_OP_LP_NORMALIZATION, infer_lp_norm, run_lp_norm, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
