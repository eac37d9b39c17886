/* Pooling ops: MaxPool (with Indices), AveragePool, LpPool, their Global forms, MaxUnpool
 * and MaxRoiPool, over any number of spatial dims. Float32 is read directly; other dtypes
 * are widened to double first. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/ops.h"

#define POOL_MAX_SP (IB_MAX_RANK - 2)

typedef enum pool_kind { POOL_MAX, POOL_AVG, POOL_LP } pool_kind;

typedef struct pool_geom {
    int32_t nsp;
    int64_t batch, ch;
    int64_t in[POOL_MAX_SP], out[POOL_MAX_SP], k[POOL_MAX_SP];
    int64_t s[POOL_MAX_SP], d[POOL_MAX_SP], pb[POOL_MAX_SP], pe[POOL_MAX_SP];
    int64_t in_sp, out_sp;
} pool_geom;

static ib_status read_ints(const ib__node *node, const char *name, int32_t want, int64_t dflt,
                           int64_t lo, int64_t *out) {
    int32_t n = 0;
    const int64_t *v = NULL;
    IB_TRY(ib__attr_ints(node, name, &n, &v));
    if (n == 0) {
        for (int32_t i = 0; i < want; i++) out[i] = dflt;
        return IB_OK;
    }
    if (n != want)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute '%s' has %d values, expected %d",
                         ib__node_label(node), name, n, want);
    for (int32_t i = 0; i < n; i++) {
        if (v[i] < lo || v[i] > ((int64_t)1 << 32))
            return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute '%s' has value %lld out of range",
                             ib__node_label(node), name, (long long)v[i]);
        out[i] = v[i];
    }
    return IB_OK;
}

static bool pool_float_type(ib_dtype dt) {
    return dt == IB_DTYPE_FLOAT32 || dt == IB_DTYPE_FLOAT64 || dt == IB_DTYPE_FLOAT16 ||
           dt == IB_DTYPE_BFLOAT16;
}

/* Geometry of a windowed pool from the attributes and X's (possibly partly unknown)
 * shape; *rank_known = false while X's rank is unknown. */
static ib_status pool_geometry(const ib__node *node, int32_t xr, const int64_t *xd, bool allow_ceil,
                               pool_geom *g, bool *rank_known) {
    memset(g, 0, sizeof *g);
    *rank_known = false;
    int32_t kn = 0;
    const int64_t *kv = NULL;
    IB_TRY(ib__attr_ints(node, "kernel_shape", &kn, &kv));
    if (kn == 0)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'kernel_shape' is required",
                         ib__node_label(node));
    if (kn > POOL_MAX_SP)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: %d spatial dims is too many",
                         ib__node_label(node), kn);
    if (xr >= 0 && xr != kn + 2)
        return ib__error(IB_ERR_SHAPE, "%s: X has rank %d but kernel_shape has %d dims",
                         ib__node_label(node), xr, kn);
    int32_t nsp = kn;
    g->nsp = nsp;
    IB_TRY(read_ints(node, "strides", nsp, 1, 1, g->s));
    IB_TRY(read_ints(node, "dilations", nsp, 1, 1, g->d));
    int64_t pads[2 * POOL_MAX_SP];
    IB_TRY(read_ints(node, "pads", 2 * nsp, 0, 0, pads));
    int64_t ceil_mode = 0;
    if (allow_ceil) IB_TRY(ib__attr_int(node, "ceil_mode", 0, &ceil_mode));
    const char *ap = NULL;
    IB_TRY(ib__attr_string(node, "auto_pad", "NOTSET", &ap));
    bool same_upper = strcmp(ap, "SAME_UPPER") == 0, same_lower = strcmp(ap, "SAME_LOWER") == 0;
    bool valid = strcmp(ap, "VALID") == 0;
    if (!same_upper && !same_lower && !valid && strcmp(ap, "NOTSET") != 0 && ap[0] != '\0')
        return ib__error(IB_ERR_INVALID_MODEL, "%s: unknown auto_pad '%s'", ib__node_label(node),
                         ap);
    for (int32_t i = 0; i < nsp; i++) {
        if (kv[i] < 1 || kv[i] > ((int64_t)1 << 32))
            return ib__error(IB_ERR_INVALID_MODEL, "%s: kernel_shape value %lld is invalid",
                             ib__node_label(node), (long long)kv[i]);
        g->k[i] = kv[i];
        g->pb[i] = pads[i];
        g->pe[i] = pads[nsp + i];
    }
    if (xr < 0) return IB_OK;
    *rank_known = true;
    g->batch = xd[0];
    g->ch = xd[1];
    for (int32_t i = 0; i < nsp; i++) {
        int64_t in = xd[2 + i];
        g->in[i] = in;
        if (in < 0) {
            g->out[i] = -1;
            continue;
        }
        int64_t ext;
        if (ib__mul_overflow_i64(g->k[i] - 1, g->d[i], &ext) || ext > IB_MAX_ELEMENTS)
            return ib__error(IB_ERR_SHAPE, "%s: window extent along dim %d is too large",
                             ib__node_label(node), i);
        ext += 1;
        if (same_upper || same_lower) {
            int64_t o = (in + g->s[i] - 1) / g->s[i];
            int64_t total = (o - 1) * g->s[i] + ext - in;
            if (total < 0) total = 0;
            g->pb[i] = same_upper ? total / 2 : total - total / 2;
            g->pe[i] = total - g->pb[i];
            g->out[i] = o;
            continue;
        }
        if (valid) g->pb[i] = g->pe[i] = 0;
        int64_t span = in + g->pb[i] + g->pe[i] - ext;
        if (span < 0)
            return ib__error(IB_ERR_SHAPE,
                             "%s: spatial dim %d (%lld, padded %lld) is smaller than "
                             "the window %lld",
                             ib__node_label(node), i, (long long)in,
                             (long long)(in + g->pb[i] + g->pe[i]), (long long)ext);
        int64_t o = ceil_mode ? (span + g->s[i] - 1) / g->s[i] + 1 : span / g->s[i] + 1;
        /* A last window that would start inside the end padding is dropped (PyTorch). */
        if (ceil_mode && (o - 1) * g->s[i] >= in + g->pb[i]) o--;
        g->out[i] = o;
    }
    g->in_sp = g->out_sp = 1;
    for (int32_t i = 0; i < nsp; i++) {
        g->in_sp = (g->in_sp < 0 || g->in[i] < 0) ? -1 : g->in_sp * g->in[i];
        g->out_sp = (g->out_sp < 0 || g->out[i] < 0) ? -1 : g->out_sp * g->out[i];
    }
    return IB_OK;
}

static ib_status infer_windowed(ib__infer_ctx *c, bool allow_ceil, bool indices) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    pool_geom g;
    bool known;
    IB_TRY(pool_geometry(c->node, x->rank, x->dims, allow_ceil, &g, &known));
    if (!known) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        if (indices) ib__set_output(c, 1, IB_DTYPE_INT64, -1, NULL);
        return IB_OK;
    }
    int64_t dims[IB_MAX_RANK];
    dims[0] = g.batch;
    dims[1] = g.ch;
    for (int32_t i = 0; i < g.nsp; i++) dims[2 + i] = g.out[i];
    ib__set_output(c, 0, x->dtype, g.nsp + 2, dims);
    if (c->out[0]) c->out[0]->dim_param[0] = x->dim_param[0];
    if (indices) ib__set_output(c, 1, IB_DTYPE_INT64, g.nsp + 2, dims);
    return IB_OK;
}

static ib_status check_pool_dtype(const ib__infer_ctx *c, bool allow_q8) {
    ib_dtype dt = c->in[0]->dtype;
    if (dt == IB_DTYPE_UNDEFINED || pool_float_type(dt)) return IB_OK;
    if (allow_q8 && (dt == IB_DTYPE_INT8 || dt == IB_DTYPE_UINT8)) return IB_OK;
    return ib__error(IB_ERR_UNSUPPORTED, "%s: input type %s is not supported",
                     ib__node_label(c->node), ib_dtype_name(dt));
}

static ib_status infer_max_pool(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(check_pool_dtype(c, true));
    int64_t so;
    IB_TRY(ib__attr_int(c->node, "storage_order", 0, &so));
    if (so != 0 && so != 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: storage_order must be 0 or 1",
                         ib__node_label(c->node));
    return infer_windowed(c, true, true);
}

static ib_status infer_average_pool(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(check_pool_dtype(c, false));
    return infer_windowed(c, true, false);
}

static ib_status infer_lp_pool(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(check_pool_dtype(c, false));
    return infer_windowed(c, true, false);
}

/* ---- The window kernel --------------------------------------------------------------- */

typedef struct pool_job {
    const pool_geom *g;
    pool_kind kind;
    bool count_include_pad;
    double p; /* Lp */
    int64_t storage_order;
    const float *xf;  /* float32 input, or */
    const double *xd; /* widened input */
    float *yf;        /* float32 output, or */
    double *yd;
    int64_t *ind; /* MaxPool Indices or NULL */
} pool_job;

/* Taps k with 0 <= start + k * dil < limit: [lo, hi). */
static void tap_range(int64_t start, int64_t dil, int64_t k, int64_t limit, int64_t *lo,
                      int64_t *hi) {
    int64_t a = start >= 0 ? 0 : (-start + dil - 1) / dil;
    int64_t b = limit - start <= 0 ? 0 : (limit - start - 1) / dil + 1;
    if (b > k) b = k;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

static void pool_range(void *ctx, int64_t begin, int64_t end) {
    const pool_job *j = ctx;
    const pool_geom *g = j->g;
    const int32_t nsp = g->nsp;
    int64_t in_st[POOL_MAX_SP], cm_st[POOL_MAX_SP];
    ib__strides(g->in, nsp, in_st);
    int64_t run = 1; /* column-major spatial strides for storage_order 1 */
    for (int32_t d = 0; d < nsp; d++) {
        cm_st[d] = run;
        run *= g->in[d];
    }
    for (int64_t plane = begin; plane < end; plane++) {
        const int64_t xbase = plane * g->in_sp, ybase = plane * g->out_sp;
        int64_t oi[POOL_MAX_SP] = {0};
        for (int64_t o = 0; o < g->out_sp; o++) {
            int64_t start[POOL_MAX_SP], lo[POOL_MAX_SP], hi[POOL_MAX_SP];
            int64_t valid = 1;
            double padded = 1.0; /* may exceed int64 for absurd pads; only divides */
            for (int32_t d = 0; d < nsp; d++) {
                start[d] = oi[d] * g->s[d] - g->pb[d];
                tap_range(start[d], g->d[d], g->k[d], g->in[d], &lo[d], &hi[d]);
                valid *= hi[d] - lo[d];
                if (j->kind == POOL_AVG && j->count_include_pad) {
                    int64_t plo, phi; /* taps inside the padded extent */
                    tap_range(start[d] + g->pb[d], g->d[d], g->k[d], g->in[d] + g->pb[d] + g->pe[d],
                              &plo, &phi);
                    padded *= (double)(phi - plo);
                }
            }
            double acc = j->kind == POOL_MAX ? -INFINITY : 0.0;
            int64_t arg = -1;
            if (valid > 0) {
                int64_t kk[POOL_MAX_SP];
                for (int32_t d = 0; d < nsp; d++) kk[d] = lo[d];
                for (;;) {
                    int64_t off = 0;
                    for (int32_t d = 0; d < nsp; d++)
                        off += (start[d] + kk[d] * g->d[d]) * in_st[d];
                    double v = j->xf ? (double)j->xf[xbase + off] : j->xd[xbase + off];
                    if (j->kind == POOL_MAX) {
                        if (v > acc || arg < 0 || (isnan(v) && !isnan(acc))) {
                            acc = v;
                            arg = off;
                            if (j->storage_order) {
                                arg = 0;
                                for (int32_t d = 0; d < nsp; d++)
                                    arg += (start[d] + kk[d] * g->d[d]) * cm_st[d];
                            }
                        }
                    } else if (j->kind == POOL_AVG) {
                        acc += v;
                    } else {
                        acc += j->p == 2.0 ? v * v : pow(fabs(v), j->p);
                    }
                    int32_t d = nsp - 1;
                    for (; d >= 0; d--) {
                        if (++kk[d] < hi[d]) break;
                        kk[d] = lo[d];
                    }
                    if (d < 0) break;
                }
            }
            if (j->kind == POOL_AVG) {
                double div = j->count_include_pad ? padded : (double)valid;
                acc = div > 0.0 ? acc / div : 0.0;
            } else if (j->kind == POOL_LP) {
                acc = j->p == 2.0 ? sqrt(acc) : pow(acc, 1.0 / j->p);
            }
            if (j->yf)
                j->yf[ybase + o] = (float)acc;
            else
                j->yd[ybase + o] = acc;
            if (j->ind) j->ind[ybase + o] = xbase + (arg < 0 ? 0 : arg);
            for (int32_t d = nsp - 1; d >= 0; d--) {
                if (++oi[d] < g->out[d]) break;
                oi[d] = 0;
            }
        }
    }
}

/* Float32 2-D max/average pooling without Indices: the hot case (CNN stems and heads),
 * with the valid tap ranges hoisted out of the window loops. */
static void pool2d_f32_range(void *ctx, int64_t begin, int64_t end) {
    const pool_job *j = ctx;
    const pool_geom *g = j->g;
    const int64_t H = g->in[0], W = g->in[1], OH = g->out[0], OW = g->out[1];
    for (int64_t plane = begin; plane < end; plane++) {
        const float *x = j->xf + plane * g->in_sp;
        float *y = j->yf + plane * g->out_sp;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t hs = oh * g->s[0] - g->pb[0], hlo, hhi;
            tap_range(hs, g->d[0], g->k[0], H, &hlo, &hhi);
            double ph = 1.0;
            if (j->count_include_pad) {
                int64_t plo, phi;
                tap_range(hs + g->pb[0], g->d[0], g->k[0], H + g->pb[0] + g->pe[0], &plo, &phi);
                ph = (double)(phi - plo);
            }
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ws = ow * g->s[1] - g->pb[1], wlo, whi;
                tap_range(ws, g->d[1], g->k[1], W, &wlo, &whi);
                if (j->kind == POOL_MAX) {
                    float m = -INFINITY;
                    for (int64_t kh = hlo; kh < hhi; kh++) {
                        const float *row = x + (hs + kh * g->d[0]) * W + ws;
                        for (int64_t kw = wlo; kw < whi; kw++) {
                            float v = row[kw * g->d[1]];
                            if (v > m || isnan(v)) m = v;
                        }
                    }
                    y[oh * OW + ow] = m;
                } else {
                    double acc = 0.0;
                    for (int64_t kh = hlo; kh < hhi; kh++) {
                        const float *row = x + (hs + kh * g->d[0]) * W + ws;
                        for (int64_t kw = wlo; kw < whi; kw++) acc += row[kw * g->d[1]];
                    }
                    double div = (double)((hhi - hlo) * (whi - wlo));
                    if (j->count_include_pad) {
                        int64_t plo, phi;
                        tap_range(ws + g->pb[1], g->d[1], g->k[1], W + g->pb[1] + g->pe[1], &plo,
                                  &phi);
                        div = ph * (double)(phi - plo);
                    }
                    y[oh * OW + ow] = div > 0.0 ? (float)(acc / div) : 0.0f;
                }
            }
        }
    }
}

static double *widen(const ib_tensor *t) {
    int64_t n = ib_tensor_element_count(t);
    double *d = ib__aligned_alloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!d) return NULL;
    for (int64_t i = 0; i < n; i++) d[i] = ib__load_f64(t->data, t->dtype, i);
    return d;
}

/* Runs pool_range over every (image, channel) plane, widening non-float32 dtypes. */
static ib_status run_pool_job(ib__run_ctx *c, pool_job *j) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    int64_t planes = j->g->batch * j->g->ch;
    if (x->dtype == IB_DTYPE_FLOAT32) {
        j->xf = x->data;
        j->yf = y->data;
        bool fast = j->g->nsp == 2 && !j->ind && j->kind != POOL_LP;
        ib__parallel_for(c->pool, planes, fast ? pool2d_f32_range : pool_range, j);
        return IB_OK;
    }
    int64_t ny = ib_tensor_element_count(y);
    double *xd = widen(x);
    double *yd = ib__aligned_alloc((size_t)(ny > 0 ? ny : 1) * sizeof(double));
    if (!xd || !yd) {
        ib__aligned_free(xd);
        ib__aligned_free(yd);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    }
    j->xd = xd;
    j->yd = yd;
    ib__parallel_for(c->pool, planes, pool_range, j);
    for (int64_t i = 0; i < ny; i++) ib__store_f64(y->data, y->dtype, i, yd[i]);
    ib__aligned_free(xd);
    ib__aligned_free(yd);
    return IB_OK;
}

static ib_status run_geometry(ib__run_ctx *c, pool_geom *g) {
    bool known;
    IB_TRY(pool_geometry(c->node, c->in[0]->rank, c->in[0]->shape, true, g, &known));
    if (!known) return ib__error(IB_ERR_SHAPE, "%s: bad input rank", ib__node_label(c->node));
    return IB_OK;
}

static ib_status run_max_pool(ib__run_ctx *c) {
    pool_geom g;
    IB_TRY(run_geometry(c, &g));
    pool_job j;
    memset(&j, 0, sizeof j);
    j.g = &g;
    j.kind = POOL_MAX;
    IB_TRY(ib__attr_int(c->node, "storage_order", 0, &j.storage_order));
    j.ind = c->n_out > 1 && c->out[1] ? c->out[1]->data : NULL;
    return run_pool_job(c, &j);
}

static ib_status run_average_pool(ib__run_ctx *c) {
    pool_geom g;
    IB_TRY(run_geometry(c, &g));
    pool_job j;
    memset(&j, 0, sizeof j);
    j.g = &g;
    j.kind = POOL_AVG;
    int64_t cip;
    IB_TRY(ib__attr_int(c->node, "count_include_pad", 0, &cip));
    j.count_include_pad = cip != 0;
    return run_pool_job(c, &j);
}

static ib_status read_p(const ib__node *node, double *p) {
    float pf;
    IB_TRY(ib__attr_float(node, "p", 2.0f, &pf));
    if (!(pf > 0.0f) || !isfinite(pf))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: p must be positive (got %g)",
                         ib__node_label(node), (double)pf);
    *p = pf;
    return IB_OK;
}

static ib_status run_lp_pool(ib__run_ctx *c) {
    pool_geom g;
    IB_TRY(run_geometry(c, &g));
    pool_job j;
    memset(&j, 0, sizeof j);
    j.g = &g;
    j.kind = POOL_LP;
    IB_TRY(read_p(c->node, &j.p));
    return run_pool_job(c, &j);
}

/* ---- Global pools: one window covering every spatial dim ------------------------------ */

static ib_status infer_global(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(check_pool_dtype(c, false));
    const ib__value *x = c->in[0];
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    if (x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: X needs rank >= 2 (got %d)", ib__node_label(c->node),
                         x->rank);
    int64_t dims[IB_MAX_RANK];
    for (int32_t i = 0; i < x->rank; i++) dims[i] = i < 2 ? x->dims[i] : 1;
    ib__set_output(c, 0, x->dtype, x->rank, dims);
    if (c->out[0]) c->out[0]->dim_param[0] = x->dim_param[0];
    return IB_OK;
}

typedef struct global_job {
    pool_kind kind;
    double p;
    int64_t len;
    const float *xf;
    const double *xd;
    float *yf;
    double *yd;
} global_job;

static void global_range(void *ctx, int64_t begin, int64_t end) {
    const global_job *j = ctx;
    for (int64_t plane = begin; plane < end; plane++) {
        double acc = j->kind == POOL_MAX ? -INFINITY : 0.0;
        for (int64_t i = 0; i < j->len; i++) {
            double v = j->xf ? (double)j->xf[plane * j->len + i] : j->xd[plane * j->len + i];
            if (j->kind == POOL_MAX) {
                if (v > acc || isnan(v)) acc = v;
                if (isnan(acc)) break;
            } else if (j->kind == POOL_AVG) {
                acc += v;
            } else {
                acc += j->p == 2.0 ? v * v : pow(fabs(v), j->p);
            }
        }
        if (j->kind == POOL_AVG)
            acc = j->len > 0 ? acc / (double)j->len : 0.0;
        else if (j->kind == POOL_LP)
            acc = j->p == 2.0 ? sqrt(acc) : pow(acc, 1.0 / j->p);
        if (j->yf)
            j->yf[plane] = (float)acc;
        else
            j->yd[plane] = acc;
    }
}

static ib_status run_global(ib__run_ctx *c, pool_kind kind) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    global_job j;
    memset(&j, 0, sizeof j);
    j.kind = kind;
    if (kind == POOL_LP) IB_TRY(read_p(c->node, &j.p));
    if (x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: X needs rank >= 2", ib__node_label(c->node));
    int64_t planes = x->shape[0] * x->shape[1];
    j.len = 1;
    for (int32_t i = 2; i < x->rank; i++) j.len *= x->shape[i];
    if (kind == POOL_MAX && j.len == 0 && planes > 0)
        return ib__error(IB_ERR_SHAPE, "%s: max over an empty window", ib__node_label(c->node));
    if (x->dtype == IB_DTYPE_FLOAT32) {
        j.xf = x->data;
        j.yf = y->data;
        ib__parallel_for(c->pool, planes, global_range, &j);
        return IB_OK;
    }
    double *xd = widen(x);
    double *yd = ib__aligned_alloc((size_t)(planes > 0 ? planes : 1) * sizeof(double));
    if (!xd || !yd) {
        ib__aligned_free(xd);
        ib__aligned_free(yd);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    }
    j.xd = xd;
    j.yd = yd;
    ib__parallel_for(c->pool, planes, global_range, &j);
    for (int64_t i = 0; i < planes; i++) ib__store_f64(y->data, y->dtype, i, yd[i]);
    ib__aligned_free(xd);
    ib__aligned_free(yd);
    return IB_OK;
}

static ib_status run_global_average_pool(ib__run_ctx *c) {
    return run_global(c, POOL_AVG);
}
static ib_status run_global_max_pool(ib__run_ctx *c) {
    return run_global(c, POOL_MAX);
}
static ib_status run_global_lp_pool(ib__run_ctx *c) {
    return run_global(c, POOL_LP);
}

/* ---- MaxUnpool ----------------------------------------------------------------------- */

/* Output shape: the output_shape input when its data is known, else from the attributes. */
static ib_status unpool_shape(const ib__node *node, int32_t xr, const int64_t *xd,
                              const ib__value *shape_in, int32_t *rank, int64_t *dims) {
    if (shape_in) {
        int64_t buf[IB_MAX_RANK];
        int64_t n;
        bool known;
        IB_TRY(ib__const_ints(shape_in, buf, IB_MAX_RANK, &n, &known));
        if (known) {
            if (xr >= 0 && n != xr)
                return ib__error(IB_ERR_SHAPE, "%s: output_shape has %lld values for rank %d",
                                 ib__node_label(node), (long long)n, xr);
            for (int64_t i = 0; i < n; i++) {
                if (buf[i] < 0)
                    return ib__error(IB_ERR_SHAPE, "%s: output_shape value %lld is negative",
                                     ib__node_label(node), (long long)buf[i]);
                dims[i] = buf[i];
            }
            *rank = (int32_t)n;
            return IB_OK;
        }
        *rank = xr;
        for (int32_t i = 0; i < xr; i++) dims[i] = -1;
        return IB_OK;
    }
    int64_t strides[POOL_MAX_SP];
    int32_t kn = 0;
    const int64_t *kv = NULL;
    IB_TRY(ib__attr_ints(node, "kernel_shape", &kn, &kv));
    if (kn == 0 || kn > POOL_MAX_SP)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'kernel_shape' is required",
                         ib__node_label(node));
    IB_TRY(read_ints(node, "strides", kn, 1, 1, strides));
    int64_t pads[2 * POOL_MAX_SP];
    IB_TRY(read_ints(node, "pads", 2 * kn, 0, 0, pads));
    if (xr < 0) {
        *rank = -1;
        return IB_OK;
    }
    if (xr != kn + 2)
        return ib__error(IB_ERR_SHAPE, "%s: X has rank %d but kernel_shape has %d dims",
                         ib__node_label(node), xr, kn);
    dims[0] = xd[0];
    dims[1] = xd[1];
    for (int32_t i = 0; i < kn; i++) {
        if (kv[i] < 1)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: kernel_shape value %lld is invalid",
                             ib__node_label(node), (long long)kv[i]);
        int64_t in = xd[2 + i];
        dims[2 + i] = in < 0 ? -1 : (in - 1) * strides[i] + kv[i] - pads[i] - pads[kn + i];
        if (in >= 0 && dims[2 + i] < 0)
            return ib__error(IB_ERR_SHAPE, "%s: output dim %d would be negative",
                             ib__node_label(node), i);
    }
    *rank = xr;
    return IB_OK;
}

static ib_status infer_max_unpool(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0], *ind = c->in[1];
    if (ind->dtype != IB_DTYPE_UNDEFINED && ind->dtype != IB_DTYPE_INT64)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: I must be int64", ib__node_label(c->node));
    int32_t r = -1;
    int64_t dims[IB_MAX_RANK];
    IB_TRY(unpool_shape(c->node, x->rank, x->dims, ib__in(c, 2), &r, dims));
    ib__set_output(c, 0, x->dtype, r, r >= 0 ? dims : NULL);
    return IB_OK;
}

static ib_status run_max_unpool(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *ind = c->in[1];
    ib_tensor *y = c->out[0];
    int64_t n = ib_tensor_element_count(x);
    if (ind->dtype != IB_DTYPE_INT64 || ib_tensor_element_count(ind) != n)
        return ib__error(IB_ERR_SHAPE, "%s: I must be int64 with X's shape",
                         ib__node_label(c->node));
    /* Indices address the unpooled shape the attributes give (what MaxPool saw); an
     * explicit output_shape only pads that shape, so indices are re-laid into it. */
    int32_t dr = -1;
    int64_t dd[IB_MAX_RANK];
    IB_TRY(unpool_shape(c->node, x->rank, x->shape, NULL, &dr, dd));
    if (dr != y->rank)
        return ib__error(IB_ERR_SHAPE, "%s: output_shape has rank %d, X has %d",
                         ib__node_label(c->node), y->rank, dr);
    int64_t nd = ib__shape_count(dd, dr);
    int64_t yst[IB_MAX_RANK];
    ib__strides(y->shape, y->rank, yst);
    size_t es = ib_dtype_size(x->dtype);
    const int64_t *iv = ind->data;
    for (int64_t i = 0; i < n; i++) {
        if (iv[i] < 0 || iv[i] >= nd)
            return ib__error(IB_ERR_SHAPE,
                             "%s: index %lld is outside the unpooled tensor "
                             "(%lld elements)",
                             ib__node_label(c->node), (long long)iv[i], (long long)nd);
        int64_t rem = iv[i], off = 0;
        for (int32_t d = dr - 1; d >= 0; d--) {
            int64_t idx = rem % dd[d];
            rem /= dd[d];
            if (idx >= y->shape[d])
                return ib__error(IB_ERR_SHAPE, "%s: index %lld falls outside output_shape",
                                 ib__node_label(c->node), (long long)iv[i]);
            off += idx * yst[d];
        }
        memcpy((char *)y->data + (size_t)off * es, (const char *)x->data + (size_t)i * es, es);
    }
    return IB_OK;
}

/* ---- MaxRoiPool ---------------------------------------------------------------------- */

static ib_status read_pooled_shape(const ib__node *node, int64_t *ph, int64_t *pw) {
    int32_t n = 0;
    const int64_t *v = NULL;
    IB_TRY(ib__attr_ints(node, "pooled_shape", &n, &v));
    if (n != 2 || v[0] < 1 || v[1] < 1 || v[0] > (1 << 20) || v[1] > (1 << 20))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: pooled_shape must be two positive ints",
                         ib__node_label(node));
    *ph = v[0];
    *pw = v[1];
    return IB_OK;
}

static ib_status infer_max_roi_pool(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    IB_TRY(check_pool_dtype(c, false));
    const ib__value *x = c->in[0], *rois = c->in[1];
    int64_t ph = 0, pw = 0;
    IB_TRY(read_pooled_shape(c->node, &ph, &pw));
    if (x->rank >= 0 && x->rank != 4)
        return ib__error(IB_ERR_SHAPE, "%s: X must be 4-D", ib__node_label(c->node));
    if (rois->rank >= 0 && (rois->rank != 2 || (rois->dims[1] >= 0 && rois->dims[1] != 5)))
        return ib__error(IB_ERR_SHAPE, "%s: rois must be [num_rois, 5]", ib__node_label(c->node));
    int64_t dims[4] = {rois->rank == 2 ? rois->dims[0] : -1, x->rank == 4 ? x->dims[1] : -1, ph,
                       pw};
    ib__set_output(c, 0, x->dtype, 4, dims);
    return IB_OK;
}

static ib_status run_max_roi_pool(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *rois = c->in[1];
    ib_tensor *y = c->out[0];
    int64_t ph = 0, pw = 0;
    IB_TRY(read_pooled_shape(c->node, &ph, &pw));
    float scale;
    IB_TRY(ib__attr_float(c->node, "spatial_scale", 1.0f, &scale));
    if (x->rank != 4 || rois->rank != 2 || rois->shape[1] != 5 || rois->dtype != x->dtype)
        return ib__error(IB_ERR_SHAPE, "%s: X must be 4-D and rois [num_rois, 5] of X's type",
                         ib__node_label(c->node));
    int64_t nb = x->shape[0], ch = x->shape[1], h = x->shape[2], w = x->shape[3];
    for (int64_t r = 0; r < rois->shape[0]; r++) {
        double bd = ib__load_f64(rois->data, rois->dtype, r * 5);
        if (!(bd >= 0.0 && bd < (double)nb))
            return ib__error(IB_ERR_SHAPE, "%s: roi %lld names batch %g of %lld",
                             ib__node_label(c->node), (long long)r, bd, (long long)nb);
        int64_t b = (int64_t)bd;
        double coord[4];
        for (int32_t i = 0; i < 4; i++) {
            coord[i] = ib__load_f64(rois->data, rois->dtype, r * 5 + 1 + i);
            if (!isfinite(coord[i]) || fabs(coord[i] * scale) > 1e15)
                return ib__error(IB_ERR_SHAPE, "%s: roi %lld has a bad coordinate",
                                 ib__node_label(c->node), (long long)r);
        }
        int64_t x1 = (int64_t)round(coord[0] * scale), y1 = (int64_t)round(coord[1] * scale);
        int64_t x2 = (int64_t)round(coord[2] * scale), y2 = (int64_t)round(coord[3] * scale);
        int64_t rw = x2 - x1 + 1 > 1 ? x2 - x1 + 1 : 1, rh = y2 - y1 + 1 > 1 ? y2 - y1 + 1 : 1;
        double bin_h = (double)rh / (double)ph, bin_w = (double)rw / (double)pw;
        for (int64_t cc = 0; cc < ch; cc++) {
            int64_t xbase = (b * ch + cc) * h * w;
            for (int64_t i = 0; i < ph; i++) {
                int64_t hs = (int64_t)floor((double)i * bin_h) + y1;
                int64_t he = (int64_t)ceil((double)(i + 1) * bin_h) + y1;
                hs = hs < 0 ? 0 : (hs > h ? h : hs);
                he = he < 0 ? 0 : (he > h ? h : he);
                for (int64_t jx = 0; jx < pw; jx++) {
                    int64_t ws = (int64_t)floor((double)jx * bin_w) + x1;
                    int64_t we = (int64_t)ceil((double)(jx + 1) * bin_w) + x1;
                    ws = ws < 0 ? 0 : (ws > w ? w : ws);
                    we = we < 0 ? 0 : (we > w ? w : we);
                    double m = (he <= hs || we <= ws) ? 0.0 : -INFINITY;
                    for (int64_t yy = hs; yy < he; yy++)
                        for (int64_t xx = ws; xx < we; xx++) {
                            double v = ib__load_f64(x->data, x->dtype, xbase + yy * w + xx);
                            if (v > m) m = v;
                        }
                    ib__store_f64(y->data, y->dtype, ((r * ch + cc) * ph + i) * pw + jx, m);
                }
            }
        }
    }
    return IB_OK;
}

const ib__op_def ib__ops_pool[] = {
    {IB_OP_MAX_POOL, infer_max_pool, run_max_pool, false},
    {IB_OP_AVERAGE_POOL, infer_average_pool, run_average_pool, false},
    {IB_OP_LP_POOL, infer_lp_pool, run_lp_pool, false},
    {IB_OP_GLOBAL_AVERAGE_POOL, infer_global, run_global_average_pool, false},
    {IB_OP_GLOBAL_MAX_POOL, infer_global, run_global_max_pool, false},
    {IB_OP_GLOBAL_LP_POOL, infer_global, run_global_lp_pool, false},
    {IB_OP_MAX_UNPOOL, infer_max_unpool, run_max_unpool, false},
    {IB_OP_MAX_ROI_POOL, infer_max_roi_pool, run_max_roi_pool, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
