/* Convolution ops: Conv, ConvTranspose, ConvInteger, QLinearConv (1-D to N-D, groups,
 * dilations, strides, pads, auto_pad). Float32 Conv is the shared SGEMM over an im2col
 * operand generated while packing (never materialised; a pointwise convolution reads X
 * directly), depthwise 2-D a direct loop, ConvTranspose SGEMM then col2im; other dtypes
 * and the quantized ops run a direct double-precision loop. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"
#include "ops/sgemm.h"

#define CONV_MAX_SP (IB_MAX_RANK - 2)

/* Everything about one convolution's shapes. Unknown dims (load time) are -1. */
typedef struct conv_geom {
    int32_t nsp;                     /* spatial dims */
    int64_t batch, cin, cout, group; /* cout: output channels (M) */
    int64_t cg, mg;                  /* channels per group: input, output */
    int64_t in[CONV_MAX_SP], out[CONV_MAX_SP], k[CONV_MAX_SP];
    int64_t s[CONV_MAX_SP], d[CONV_MAX_SP], pb[CONV_MAX_SP], pe[CONV_MAX_SP];
    int64_t in_sp, out_sp, k_sp; /* products of the spatial dims */
} conv_geom;

typedef enum auto_pad { PAD_NOTSET, PAD_SAME_UPPER, PAD_SAME_LOWER, PAD_VALID } auto_pad;

static ib_status read_auto_pad(const ib__node *node, auto_pad *out) {
    const char *s = NULL;
    IB_TRY(ib__attr_string(node, "auto_pad", "NOTSET", &s));
    if (strcmp(s, "NOTSET") == 0 || s[0] == '\0')
        *out = PAD_NOTSET;
    else if (strcmp(s, "SAME_UPPER") == 0)
        *out = PAD_SAME_UPPER;
    else if (strcmp(s, "SAME_LOWER") == 0)
        *out = PAD_SAME_LOWER;
    else if (strcmp(s, "VALID") == 0)
        *out = PAD_VALID;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: unknown auto_pad '%s'", ib__node_label(node),
                         s);
    return IB_OK;
}

/* Reads an ints attribute of exactly `want` values into out (default dflt when absent);
 * values must be >= lo. */
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

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* Fills g from the node's attributes and the (possibly partly unknown) shapes of X and W.
 * *rank_known = false when the spatial rank cannot be told yet. */
static ib_status conv_geometry(const ib__node *node, bool transpose, int32_t xr, const int64_t *xd,
                               int32_t wr, const int64_t *wd, conv_geom *g, bool *rank_known) {
    memset(g, 0, sizeof *g);
    *rank_known = false;
    int32_t kn = 0;
    const int64_t *kv = NULL;
    IB_TRY(ib__attr_ints(node, "kernel_shape", &kn, &kv));
    int32_t nsp = xr >= 0 ? xr - 2 : (wr >= 0 ? wr - 2 : (kn > 0 ? kn : -1));
    if (nsp < 0) {
        if (xr >= 0 || wr >= 0)
            return ib__error(IB_ERR_SHAPE, "%s: X and W need rank >= 3 (got %d and %d)",
                             ib__node_label(node), xr, wr);
        return IB_OK;
    }
    if (nsp < 1 || nsp > CONV_MAX_SP)
        return ib__error(IB_ERR_SHAPE, "%s: X and W need rank 3..%d (got %d)", ib__node_label(node),
                         IB_MAX_RANK, nsp + 2);
    if (wr >= 0 && wr != nsp + 2)
        return ib__error(IB_ERR_SHAPE, "%s: W has rank %d but X has %d spatial dims",
                         ib__node_label(node), wr, nsp);
    if (kn != 0 && kn != nsp)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: kernel_shape has %d values for %d spatial dims",
                         ib__node_label(node), kn, nsp);
    g->nsp = nsp;
    *rank_known = true;
    int64_t group;
    IB_TRY(ib__attr_int(node, "group", 1, &group));
    if (group < 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: group must be >= 1 (got %lld)",
                         ib__node_label(node), (long long)group);
    g->group = group;
    IB_TRY(read_ints(node, "strides", nsp, 1, 1, g->s));
    IB_TRY(read_ints(node, "dilations", nsp, 1, 1, g->d));
    int64_t pads[2 * CONV_MAX_SP];
    IB_TRY(read_ints(node, "pads", 2 * nsp, 0, 0, pads));
    auto_pad ap = PAD_NOTSET;
    IB_TRY(read_auto_pad(node, &ap));

    g->batch = xr >= 0 ? xd[0] : -1;
    g->cin = xr >= 0 ? xd[1] : -1;
    for (int32_t i = 0; i < nsp; i++) {
        g->in[i] = xr >= 0 ? xd[2 + i] : -1;
        int64_t wk = wr >= 0 ? wd[2 + i] : -1;
        if (kn) {
            if (kv[i] < 1)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: kernel_shape value %lld is invalid",
                                 ib__node_label(node), (long long)kv[i]);
            if (wk >= 0 && wk != kv[i])
                return ib__error(IB_ERR_SHAPE, "%s: kernel_shape %lld differs from W's dim %lld",
                                 ib__node_label(node), (long long)kv[i], (long long)wk);
            wk = kv[i];
        }
        g->k[i] = wk;
    }
    /* Channels: Conv W is [M, C/group, k...]; ConvTranspose W is [C, M/group, k...]. */
    int64_t w0 = wr >= 0 ? wd[0] : -1, w1 = wr >= 0 ? wd[1] : -1;
    if (!transpose) {
        g->cout = w0;
        g->cg = w1;
        g->mg = w0 >= 0 ? w0 / group : -1;
        if (w0 >= 0 && w0 % group != 0)
            return ib__error(IB_ERR_SHAPE, "%s: %lld output channels do not split into %lld groups",
                             ib__node_label(node), (long long)w0, (long long)group);
        if (g->cin >= 0 && w1 >= 0 && g->cin != w1 * group)
            return ib__error(
                IB_ERR_SHAPE, "%s: X has %lld channels but W expects %lld x %lld groups",
                ib__node_label(node), (long long)g->cin, (long long)w1, (long long)group);
    } else {
        g->mg = w1;
        g->cout = w1 >= 0 ? w1 * group : -1;
        g->cg = g->cin >= 0 ? g->cin / group : -1;
        if (g->cin >= 0 && g->cin % group != 0)
            return ib__error(IB_ERR_SHAPE, "%s: %lld input channels do not split into %lld groups",
                             ib__node_label(node), (long long)g->cin, (long long)group);
        if (g->cin >= 0 && w0 >= 0 && g->cin != w0)
            return ib__error(IB_ERR_SHAPE, "%s: X has %lld channels but W has %lld",
                             ib__node_label(node), (long long)g->cin, (long long)w0);
    }

    int64_t out_pad[CONV_MAX_SP], out_shape[CONV_MAX_SP];
    int32_t osn = 0;
    if (transpose) {
        IB_TRY(read_ints(node, "output_padding", nsp, 0, 0, out_pad));
        const int64_t *osv = NULL;
        IB_TRY(ib__attr_ints(node, "output_shape", &osn, &osv));
        /* Some exporters write the full [N, C, spatial...] shape. */
        if (osn == nsp + 2) {
            osv += 2;
            osn = nsp;
        }
        if (osn != 0 && osn != nsp)
            return ib__error(IB_ERR_INVALID_MODEL,
                             "%s: output_shape has %d values for %d spatial "
                             "dims",
                             ib__node_label(node), osn, nsp);
        for (int32_t i = 0; i < osn; i++) {
            if (osv[i] < 0)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: output_shape value %lld is invalid",
                                 ib__node_label(node), (long long)osv[i]);
            out_shape[i] = osv[i];
        }
    }

    for (int32_t i = 0; i < nsp; i++) {
        int64_t in = g->in[i], k = g->k[i];
        g->pb[i] = pads[i];
        g->pe[i] = pads[nsp + i];
        if (in < 0 || k < 0) {
            g->out[i] = transpose && osn ? out_shape[i] : -1;
            continue;
        }
        int64_t ext;
        if (ib__mul_overflow_i64(k - 1, g->d[i], &ext) || ext > IB_MAX_ELEMENTS)
            return ib__error(IB_ERR_SHAPE, "%s: kernel extent along dim %d is too large",
                             ib__node_label(node), i);
        ext += 1;
        if (!transpose) {
            if (ap == PAD_VALID) {
                g->pb[i] = g->pe[i] = 0;
            } else if (ap == PAD_SAME_UPPER || ap == PAD_SAME_LOWER) {
                int64_t o = (in + g->s[i] - 1) / g->s[i];
                int64_t total = (o - 1) * g->s[i] + ext - in;
                if (total < 0) total = 0;
                g->pb[i] = ap == PAD_SAME_UPPER ? total / 2 : total - total / 2;
                g->pe[i] = total - g->pb[i];
            }
            int64_t span = in + g->pb[i] + g->pe[i] - ext;
            if (span < 0)
                return ib__error(IB_ERR_SHAPE,
                                 "%s: spatial dim %d (%lld, padded %lld) is smaller "
                                 "than the kernel extent %lld",
                                 ib__node_label(node), i, (long long)in,
                                 (long long)(in + g->pb[i] + g->pe[i]), (long long)ext);
            g->out[i] = span / g->s[i] + 1;
        } else {
            int64_t s_in; /* stride * input size: the SAME output size */
            if (ib__mul_overflow_i64(g->s[i], in, &s_in) || s_in > IB_MAX_ELEMENTS)
                return ib__error(IB_ERR_SHAPE, "%s: output dim %d is too large",
                                 ib__node_label(node), i);
            int64_t full = s_in - g->s[i] + out_pad[i] + ext;
            if (osn || ap == PAD_SAME_UPPER || ap == PAD_SAME_LOWER) {
                int64_t o = osn ? out_shape[i] : s_in;
                int64_t total = full - o;
                if (ap == PAD_SAME_UPPER) {
                    g->pb[i] = floor_div(total, 2);
                    g->pe[i] = total - g->pb[i];
                } else {
                    g->pe[i] = floor_div(total, 2);
                    g->pb[i] = total - g->pe[i];
                }
                g->out[i] = o;
            } else {
                if (ap == PAD_VALID) g->pb[i] = g->pe[i] = 0;
                g->out[i] = full - g->pb[i] - g->pe[i];
            }
            if (g->out[i] < 0)
                return ib__error(IB_ERR_SHAPE, "%s: output dim %d would be %lld",
                                 ib__node_label(node), i, (long long)g->out[i]);
        }
    }
    g->in_sp = g->out_sp = g->k_sp = 1;
    for (int32_t i = 0; i < nsp; i++) {
        g->in_sp = (g->in_sp < 0 || g->in[i] < 0) ? -1 : g->in_sp * g->in[i];
        g->out_sp = (g->out_sp < 0 || g->out[i] < 0) ? -1 : g->out_sp * g->out[i];
        g->k_sp = (g->k_sp < 0 || g->k[i] < 0) ? -1 : g->k_sp * g->k[i];
    }
    return IB_OK;
}

static void set_conv_output(ib__infer_ctx *c, const conv_geom *g, ib_dtype dt, bool rank_known) {
    if (!rank_known) {
        ib__set_output(c, 0, dt, -1, NULL);
        return;
    }
    int64_t dims[IB_MAX_RANK];
    dims[0] = g->batch;
    dims[1] = g->cout;
    for (int32_t i = 0; i < g->nsp; i++) dims[2 + i] = g->out[i];
    ib__set_output(c, 0, dt, g->nsp + 2, dims);
    if (c->out[0] && c->in[0] && c->in[0]->rank > 0)
        c->out[0]->dim_param[0] = c->in[0]->dim_param[0];
}

static ib_status check_bias(const ib__node *node, const ib__value *b, int64_t cout) {
    if (!b || b->rank < 0) return IB_OK;
    if (b->rank != 1 || (cout >= 0 && b->dims[0] >= 0 && b->dims[0] != cout))
        return ib__error(IB_ERR_SHAPE, "%s: bias must be 1-D with %lld values",
                         ib__node_label(node), (long long)cout);
    return IB_OK;
}

static bool conv_float_type(ib_dtype dt) {
    return dt == IB_DTYPE_FLOAT32 || dt == IB_DTYPE_FLOAT64 || dt == IB_DTYPE_FLOAT16 ||
           dt == IB_DTYPE_BFLOAT16;
}

static ib_status infer_conv_like(ib__infer_ctx *c, bool transpose) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0], *w = c->in[1];
    if (x->dtype != IB_DTYPE_UNDEFINED && !conv_float_type(x->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: input type %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    if (x->dtype != IB_DTYPE_UNDEFINED && w->dtype != IB_DTYPE_UNDEFINED && x->dtype != w->dtype)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: X is %s but W is %s", ib__node_label(c->node),
                         ib_dtype_name(x->dtype), ib_dtype_name(w->dtype));
    conv_geom g;
    bool known;
    IB_TRY(conv_geometry(c->node, transpose, x->rank, x->dims, w->rank, w->dims, &g, &known));
    IB_TRY(check_bias(c->node, ib__in(c, 2), g.cout));
    set_conv_output(c, &g, x->dtype, known);
    return IB_OK;
}

static ib_status infer_conv(ib__infer_ctx *c) {
    return infer_conv_like(c, false);
}
static ib_status infer_conv_transpose(ib__infer_ctx *c) {
    return infer_conv_like(c, true);
}

/* ---- Float32 Conv ----------------------------------------------------------------- */

/* Range [lo, hi) of output positions o with 0 <= o * s + off < in. */
static void valid_range(int64_t off, int64_t s, int64_t in, int64_t out, int64_t *lo, int64_t *hi) {
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = in - off <= 0 ? 0 : (in - off - 1) / s + 1;
    if (b > out) b = out;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* im2col as a generated SGEMM operand: B[(c, kernel offset)][output position] of group
 * `gi` is the input value that kernel tap reads at that output position (0 in padding). */
typedef struct im2col_src {
    const conv_geom *g;
    const float *x; /* one image: [C, in...] */
} im2col_src;

static void im2col_row(const void *ctx, int64_t gi, int64_t k, int64_t j0, int64_t n, float *out) {
    const im2col_src *b = ctx;
    const conv_geom *g = b->g;
    const int32_t nsp = g->nsp, last = nsp - 1;
    const int64_t out_w = g->out[last], in_w = g->in[last], sw = g->s[last];
    int64_t cl = k / g->k_sp, kidx = k % g->k_sp;
    int64_t kk[CONV_MAX_SP];
    for (int32_t d = nsp - 1; d >= 0; d--) {
        kk[d] = kidx % g->k[d];
        kidx /= g->k[d];
    }
    const float *xc = b->x + (gi * g->cg + cl) * g->in_sp;
    int64_t off_w = kk[last] * g->d[last] - g->pb[last];
    int64_t lo, hi;
    valid_range(off_w, sw, in_w, out_w, &lo, &hi);
    /* the output position j0 as (outer coordinates, column) */
    int64_t oidx[CONV_MAX_SP], rem = j0 / out_w, ow = j0 % out_w;
    for (int32_t d = last - 1; d >= 0; d--) {
        oidx[d] = rem % g->out[d];
        rem /= g->out[d];
    }
    while (n > 0) {
        int64_t run = out_w - ow < n ? out_w - ow : n;
        int64_t in_off = 0;
        bool inside = true;
        for (int32_t d = 0; d < last; d++) {
            int64_t pos = oidx[d] * g->s[d] + kk[d] * g->d[d] - g->pb[d];
            if (pos < 0 || pos >= g->in[d]) inside = false;
            in_off = in_off * g->in[d] + pos;
        }
        if (!inside) {
            memset(out, 0, (size_t)run * sizeof(float));
        } else {
            const float *src = xc + in_off * in_w + off_w;
            int64_t a = ow, e = ow + run;
            int64_t v0 = lo > a ? lo : a, v1 = hi < e ? hi : e;
            if (v1 < v0) v1 = v0 = e;
            for (int64_t o = a; o < v0; o++) out[o - a] = 0.0f;
            if (sw == 1)
                memcpy(out + (v0 - a), src + v0, (size_t)(v1 - v0) * sizeof(float));
            else
                for (int64_t o = v0; o < v1; o++) out[o - a] = src[o * sw];
            for (int64_t o = v1; o < e; o++) out[o - a] = 0.0f;
        }
        out += run;
        n -= run;
        ow = 0;
        for (int32_t d = last - 1; d >= 0; d--) {
            if (++oidx[d] < g->out[d]) break;
            oidx[d] = 0;
        }
    }
}

typedef struct depthwise_job {
    const conv_geom *g;
    const float *x, *w, *bias;
    float *y;
} depthwise_job;

/* Depthwise 2-D (one input channel per group): direct loop per output channel. */
static void depthwise_range(void *ctx, int64_t begin, int64_t end) {
    const depthwise_job *j = ctx;
    const conv_geom *g = j->g;
    const int64_t oh_n = g->out[0], ow_n = g->out[1], ih_n = g->in[0], iw_n = g->in[1];
    const int64_t kh_n = g->k[0], kw_n = g->k[1], sh = g->s[0], sw = g->s[1];
    for (int64_t t = begin; t < end; t++) {
        int64_t n = t / g->cout, m = t % g->cout;
        int64_t ci = m / g->mg; /* the group's only input channel */
        const float *xc = j->x + (n * g->cin + ci) * g->in_sp;
        const float *wm = j->w + m * g->k_sp;
        float *yc = j->y + (n * g->cout + m) * g->out_sp;
        float b = j->bias ? j->bias[m] : 0.0f;
        for (int64_t o = 0; o < g->out_sp; o++) yc[o] = b;
        for (int64_t oh = 0; oh < oh_n; oh++) {
            float *yrow = yc + oh * ow_n;
            for (int64_t kh = 0; kh < kh_n; kh++) {
                int64_t ih = oh * sh + kh * g->d[0] - g->pb[0];
                if (ih < 0 || ih >= ih_n) continue;
                const float *xrow = xc + ih * iw_n;
                for (int64_t kw = 0; kw < kw_n; kw++) {
                    int64_t off = kw * g->d[1] - g->pb[1];
                    int64_t lo, hi;
                    valid_range(off, sw, iw_n, ow_n, &lo, &hi);
                    float wv = wm[kh * kw_n + kw];
                    const float *src = xrow + off;
                    if (sw == 1)
                        for (int64_t ow = lo; ow < hi; ow++) yrow[ow] += wv * src[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) yrow[ow] += wv * src[ow * sw];
                }
            }
        }
    }
}

typedef struct bias_job {
    const float *bias;
    float *y; /* [rows, len]; row r gets bias[r % channels] */
    int64_t channels, len;
} bias_job;

static void bias_range(void *ctx, int64_t begin, int64_t end) {
    const bias_job *j = ctx;
    for (int64_t r = begin; r < end; r++) {
        float b = j->bias ? j->bias[r % j->channels] : 0.0f;
        float *row = j->y + r * j->len;
        for (int64_t i = 0; i < j->len; i++) row[i] = b;
    }
}

static ib_status conv_f32(ib__run_ctx *c, const conv_geom *g) {
    const float *x = c->in[0]->data, *w = c->in[1]->data;
    const float *bias = (c->n_in > 2 && c->in[2]) ? c->in[2]->data : NULL;
    float *y = c->out[0]->data;
    if (g->out_sp == 0 || g->batch == 0 || g->cout == 0) return IB_OK;
    if (g->cg == 1 && g->nsp == 2) {
        depthwise_job j = {g, x, w, bias, y};
        ib__parallel_for(c->pool, g->batch * g->cout, depthwise_range, &j);
        return IB_OK;
    }
    bool pointwise = true;
    for (int32_t i = 0; i < g->nsp; i++)
        if (g->k[i] != 1 || g->s[i] != 1 || g->pb[i] != 0 || g->pe[i] != 0) pointwise = false;
    int64_t offs[3 * 64];
    int64_t *off = g->group <= 64 ? offs : ib__calloc((size_t)g->group * 3, sizeof(int64_t));
    if (!off) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    int64_t kdim = g->cg * g->k_sp;
    for (int64_t gi = 0; gi < g->group; gi++) {
        off[gi] = gi * g->mg * kdim;                     /* W rows of the group */
        off[g->group + gi] = gi * g->cg * g->in_sp;      /* X channels of the group */
        off[2 * g->group + gi] = gi * g->mg * g->out_sp; /* Y channels of the group */
    }
    /* Y_g = W_g [mg x cg*k] * im2col(X_g) [cg*k x out]; a pointwise convolution's im2col is
     * X itself. */
    ib__sgemm_shape s = {g->mg, g->out_sp, kdim,     1.0f, bias ? 1.0f : 0.0f,
                         kdim,  1,         g->in_sp, 1,    g->out_sp};
    ib_status st = IB_OK;
    for (int64_t n = 0; n < g->batch && st == IB_OK; n++) {
        const float *xn = x + n * g->cin * g->in_sp;
        float *yn = y + n * g->cout * g->out_sp;
        if (bias) {
            bias_job bj = {bias, yn, g->cout, g->out_sp};
            ib__parallel_for(c->pool, g->cout, bias_range, &bj);
        }
        if (pointwise) {
            st = ib__sgemm_batched(c->pool, &s, g->group, w, off, xn, off + g->group, yn,
                                   off + 2 * g->group);
        } else {
            im2col_src src = {g, xn};
            ib__sgemm_b_gen gen = {im2col_row, &src};
            st = ib__sgemm_batched_gen(c->pool, &s, g->group, w, off, &gen, yn, off + 2 * g->group);
        }
    }
    if (off != offs) ib__free(off);
    return st;
}

/* ---- Direct double-precision convolution (other dtypes, quantized ops) -------------- */

typedef struct direct_job {
    const conv_geom *g;
    const double *x, *w, *bias; /* x, w already offset by their zero points */
    double *y;                  /* [N, M, out...] */
} direct_job;

static void direct_range(void *ctx, int64_t begin, int64_t end) {
    const direct_job *j = ctx;
    const conv_geom *g = j->g;
    const int32_t nsp = g->nsp;
    for (int64_t t = begin; t < end; t++) {
        int64_t n = t / g->cout, m = t % g->cout;
        int64_t grp = m / g->mg;
        double *yc = j->y + t * g->out_sp;
        for (int64_t o = 0; o < g->out_sp; o++) {
            int64_t oi[CONV_MAX_SP], rem = o;
            for (int32_t d = nsp - 1; d >= 0; d--) {
                oi[d] = rem % g->out[d];
                rem /= g->out[d];
            }
            double acc = j->bias ? j->bias[m] : 0.0;
            for (int64_t kidx = 0; kidx < g->k_sp; kidx++) {
                int64_t r = kidx, in_off = 0;
                bool inside = true;
                int64_t kk[CONV_MAX_SP];
                for (int32_t d = nsp - 1; d >= 0; d--) {
                    kk[d] = r % g->k[d];
                    r /= g->k[d];
                }
                for (int32_t d = 0; d < nsp; d++) {
                    int64_t pos = oi[d] * g->s[d] + kk[d] * g->d[d] - g->pb[d];
                    if (pos < 0 || pos >= g->in[d]) {
                        inside = false;
                        break;
                    }
                    in_off = in_off * g->in[d] + pos;
                }
                if (!inside) continue;
                for (int64_t cl = 0; cl < g->cg; cl++) {
                    int64_t ch = grp * g->cg + cl;
                    acc += j->x[(n * g->cin + ch) * g->in_sp + in_off] *
                           j->w[(m * g->cg + cl) * g->k_sp + kidx];
                }
            }
            yc[o] = acc;
        }
    }
}

/* Loads a tensor into doubles minus a zero point (a scalar, or one per leading-dim slice
 * of `per` elements when zp has `nzp` > 1 values). */
static double *load_shifted(const ib_tensor *t, const ib_tensor *zp, int64_t per) {
    int64_t n = ib_tensor_element_count(t);
    double *d = ib__aligned_alloc((size_t)(n > 0 ? n : 1) * sizeof(double));
    if (!d) return NULL;
    int64_t nzp = zp ? ib_tensor_element_count(zp) : 0;
    for (int64_t i = 0; i < n; i++) {
        double z = 0.0;
        if (nzp == 1)
            z = ib__load_f64(zp->data, zp->dtype, 0);
        else if (nzp > 1)
            z = ib__load_f64(zp->data, zp->dtype, i / per);
        d[i] = ib__load_f64(t->data, t->dtype, i) - z;
    }
    return d;
}

/* y (doubles, [N, M, out...]) = conv(x - xz, w - wz) + bias. */
static ib_status conv_direct(ib__run_ctx *c, const conv_geom *g, const ib_tensor *x,
                             const ib_tensor *xz, const ib_tensor *w, const ib_tensor *wz,
                             const double *bias, double **out) {
    int64_t ny = g->batch * g->cout * g->out_sp;
    double *dx = load_shifted(x, xz, 1);
    double *dw = load_shifted(w, wz, g->cg * g->k_sp);
    double *dy = ib__aligned_alloc((size_t)(ny > 0 ? ny : 1) * sizeof(double));
    if (!dx || !dw || !dy) {
        ib__aligned_free(dx);
        ib__aligned_free(dw);
        ib__aligned_free(dy);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    }
    direct_job j = {g, dx, dw, bias, dy};
    ib__parallel_for(c->pool, g->batch * g->cout, direct_range, &j);
    ib__aligned_free(dx);
    ib__aligned_free(dw);
    *out = dy;
    return IB_OK;
}

static ib_status run_geometry(ib__run_ctx *c, bool transpose, conv_geom *g) {
    const ib_tensor *x = c->in[0], *w = c->in[1];
    bool known;
    IB_TRY(conv_geometry(c->node, transpose, x->rank, x->shape, w->rank, w->shape, g, &known));
    if (!known) return ib__error(IB_ERR_SHAPE, "%s: bad input ranks", ib__node_label(c->node));
    return IB_OK;
}

static ib_status run_conv(ib__run_ctx *c) {
    conv_geom g;
    IB_TRY(run_geometry(c, false, &g));
    const ib_tensor *bias = c->n_in > 2 ? c->in[2] : NULL;
    if (bias && (bias->dtype != c->in[0]->dtype || ib_tensor_element_count(bias) != g.cout))
        return ib__error(IB_ERR_SHAPE, "%s: bias must hold %lld values of the input type",
                         ib__node_label(c->node), (long long)g.cout);
    if (c->in[0]->dtype == IB_DTYPE_FLOAT32) return conv_f32(c, &g);
    double *db = NULL, *dy = NULL;
    if (bias) {
        db = load_shifted(bias, NULL, 1);
        if (!db)
            return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    }
    ib_status st = conv_direct(c, &g, c->in[0], NULL, c->in[1], NULL, db, &dy);
    if (st == IB_OK) {
        ib_tensor *y = c->out[0];
        int64_t n = ib_tensor_element_count(y);
        for (int64_t i = 0; i < n; i++) ib__store_f64(y->data, y->dtype, i, dy[i]);
    }
    ib__aligned_free(db);
    ib__aligned_free(dy);
    return st;
}

/* ---- ConvTranspose ------------------------------------------------------------------ */

typedef struct col2im_job {
    const conv_geom *g;
    const float *col; /* [group][mg * k_sp][in_sp] == [M * k_sp][in_sp] */
    float *y;         /* one image: [M, out...], holding the bias already */
} col2im_job;

static void col2im_range(void *ctx, int64_t begin, int64_t end) {
    const col2im_job *j = ctx;
    const conv_geom *g = j->g;
    const int32_t nsp = g->nsp, last = nsp - 1;
    const int64_t in_w = g->in[last], out_w = g->out[last];
    for (int64_t m = begin; m < end; m++) {
        float *ym = j->y + m * g->out_sp;
        for (int64_t kidx = 0; kidx < g->k_sp; kidx++) {
            const float *src = j->col + (m * g->k_sp + kidx) * g->in_sp;
            int64_t kk[CONV_MAX_SP], r = kidx;
            for (int32_t d = nsp - 1; d >= 0; d--) {
                kk[d] = r % g->k[d];
                r /= g->k[d];
            }
            /* input column iw lands on output iw * s + off; keep 0 <= that < out_w */
            int64_t off = kk[last] * g->d[last] - g->pb[last], sw = g->s[last];
            int64_t lo = off >= 0 ? 0 : (-off + sw - 1) / sw;
            int64_t hi = out_w - off <= 0 ? 0 : (out_w - off - 1) / sw + 1;
            if (hi > in_w) hi = in_w;
            int64_t rows = g->in_sp / in_w;
            int64_t iidx[CONV_MAX_SP] = {0};
            for (int64_t row = 0; row < rows; row++, src += in_w) {
                int64_t out_off = 0;
                bool inside = true;
                for (int32_t d = 0; d < last; d++) {
                    int64_t pos = iidx[d] * g->s[d] + kk[d] * g->d[d] - g->pb[d];
                    if (pos < 0 || pos >= g->out[d]) inside = false;
                    out_off = out_off * g->out[d] + pos;
                }
                if (inside) {
                    float *dst = ym + out_off * out_w + off;
                    for (int64_t i = lo; i < hi; i++) dst[i * sw] += src[i];
                }
                for (int32_t d = last - 1; d >= 0; d--) {
                    if (++iidx[d] < g->in[d]) break;
                    iidx[d] = 0;
                }
            }
        }
    }
}

static ib_status conv_transpose_f32(ib__run_ctx *c, const conv_geom *g) {
    const float *x = c->in[0]->data, *w = c->in[1]->data;
    const float *bias = (c->n_in > 2 && c->in[2]) ? c->in[2]->data : NULL;
    float *y = c->out[0]->data;
    if (g->out_sp == 0 || g->batch == 0 || g->cout == 0) return IB_OK;
    if (g->in_sp == 0) { /* nothing to scatter: the output is the bias */
        for (int64_t n = 0; n < g->batch; n++) {
            bias_job bj = {bias, y + n * g->cout * g->out_sp, g->cout, g->out_sp};
            ib__parallel_for(c->pool, g->cout, bias_range, &bj);
        }
        return IB_OK;
    }
    int64_t rows = g->cout * g->k_sp, elems;
    if (ib__mul_overflow_i64(rows, g->in_sp, &elems) || elems > IB_MAX_ELEMENTS)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: convolution too large", ib__node_label(c->node));
    float *col = ib__aligned_alloc((size_t)(elems > 0 ? elems : 1) * sizeof(float));
    int64_t *off = ib__calloc((size_t)g->group * 3, sizeof(int64_t));
    if (!col || !off) {
        ib__aligned_free(col);
        ib__free(off);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    }
    int64_t mk = g->mg * g->k_sp;
    for (int64_t gi = 0; gi < g->group; gi++) {
        off[gi] = gi * g->cg * mk;                   /* W [C, mg, k...]: the group's C rows */
        off[g->group + gi] = gi * g->cg * g->in_sp;  /* X channels of the group */
        off[2 * g->group + gi] = gi * mk * g->in_sp; /* col rows of the group */
    }
    /* col[(m, k), i] = sum_c W[c, m, k] * X[c, i]: A = W^T (rows m,k; depth c). */
    ib__sgemm_shape s = {mk, g->in_sp, g->cg, 1.0f, 0.0f, 1, mk, g->in_sp, 1, g->in_sp};
    ib_status st = IB_OK;
    for (int64_t n = 0; n < g->batch && st == IB_OK; n++) {
        const float *xn = x + n * g->cin * g->in_sp;
        float *yn = y + n * g->cout * g->out_sp;
        st = ib__sgemm_batched(c->pool, &s, g->group, w, off, xn, off + g->group, col,
                               off + 2 * g->group);
        if (st != IB_OK) break;
        bias_job bj = {bias, yn, g->cout, g->out_sp};
        ib__parallel_for(c->pool, g->cout, bias_range, &bj);
        col2im_job cj = {g, col, yn};
        ib__parallel_for(c->pool, g->cout, col2im_range, &cj);
    }
    ib__aligned_free(col);
    ib__free(off);
    return st;
}

typedef struct tdirect_job {
    const conv_geom *g;
    const double *x, *w, *bias;
    double *y;
} tdirect_job;

/* Direct transposed convolution per (image, output channel): scatter every input. */
static void tdirect_range(void *ctx, int64_t begin, int64_t end) {
    const tdirect_job *j = ctx;
    const conv_geom *g = j->g;
    const int32_t nsp = g->nsp;
    for (int64_t t = begin; t < end; t++) {
        int64_t n = t / g->cout, m = t % g->cout, grp = m / g->mg, ml = m % g->mg;
        double *yc = j->y + t * g->out_sp;
        for (int64_t o = 0; o < g->out_sp; o++) yc[o] = j->bias ? j->bias[m] : 0.0;
        for (int64_t cl = 0; cl < g->cg; cl++) {
            int64_t ch = grp * g->cg + cl;
            const double *xc = j->x + (n * g->cin + ch) * g->in_sp;
            const double *wc = j->w + (ch * g->mg + ml) * g->k_sp;
            for (int64_t i = 0; i < g->in_sp; i++) {
                int64_t ii[CONV_MAX_SP], rem = i;
                for (int32_t d = nsp - 1; d >= 0; d--) {
                    ii[d] = rem % g->in[d];
                    rem /= g->in[d];
                }
                for (int64_t kidx = 0; kidx < g->k_sp; kidx++) {
                    int64_t r = kidx, out_off = 0;
                    bool inside = true;
                    int64_t kk[CONV_MAX_SP];
                    for (int32_t d = nsp - 1; d >= 0; d--) {
                        kk[d] = r % g->k[d];
                        r /= g->k[d];
                    }
                    for (int32_t d = 0; d < nsp; d++) {
                        int64_t pos = ii[d] * g->s[d] + kk[d] * g->d[d] - g->pb[d];
                        if (pos < 0 || pos >= g->out[d]) {
                            inside = false;
                            break;
                        }
                        out_off = out_off * g->out[d] + pos;
                    }
                    if (inside) yc[out_off] += xc[i] * wc[kidx];
                }
            }
        }
    }
}

static ib_status run_conv_transpose(ib__run_ctx *c) {
    conv_geom g;
    IB_TRY(run_geometry(c, true, &g));
    const ib_tensor *bias = c->n_in > 2 ? c->in[2] : NULL;
    if (bias && (bias->dtype != c->in[0]->dtype || ib_tensor_element_count(bias) != g.cout))
        return ib__error(IB_ERR_SHAPE, "%s: bias must hold %lld values of the input type",
                         ib__node_label(c->node), (long long)g.cout);
    if (c->in[0]->dtype == IB_DTYPE_FLOAT32) return conv_transpose_f32(c, &g);
    int64_t ny = ib_tensor_element_count(c->out[0]);
    double *dx = load_shifted(c->in[0], NULL, 1), *dw = load_shifted(c->in[1], NULL, 1);
    double *db = bias ? load_shifted(bias, NULL, 1) : NULL;
    double *dy = ib__aligned_alloc((size_t)(ny > 0 ? ny : 1) * sizeof(double));
    ib_status st = IB_OK;
    if (!dx || !dw || !dy || (bias && !db)) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    } else {
        tdirect_job j = {&g, dx, dw, db, dy};
        ib__parallel_for(c->pool, g.batch * g.cout, tdirect_range, &j);
        for (int64_t i = 0; i < ny; i++) ib__store_f64(c->out[0]->data, c->out[0]->dtype, i, dy[i]);
    }
    ib__aligned_free(dx);
    ib__aligned_free(dw);
    ib__aligned_free(db);
    ib__aligned_free(dy);
    return st;
}

/* ---- ConvInteger, QLinearConv --------------------------------------------------------- */

static bool is_q8(ib_dtype dt) {
    return dt == IB_DTYPE_UINT8 || dt == IB_DTYPE_INT8;
}

/* Zero point or scale: a scalar, or (per output channel) `want` values. */
static ib_status check_per_channel(const ib__node *node, const ib_tensor *t, const char *what,
                                   int64_t want, bool allow_vector) {
    int64_t n = ib_tensor_element_count(t);
    if (n == 1 || (allow_vector && n == want && t->rank == 1)) return IB_OK;
    return ib__error(IB_ERR_SHAPE, "%s: %s must be a scalar%s (has %lld values)",
                     ib__node_label(node), what, allow_vector ? " or one per output channel" : "",
                     (long long)n);
}

static ib_status infer_quant_conv(ib__infer_ctx *c, int32_t xi, int32_t wi, ib_dtype out_dt) {
    IB_TRY(ib__require_input(c, xi));
    IB_TRY(ib__require_input(c, wi));
    const ib__value *x = c->in[xi], *w = c->in[wi];
    if ((x->dtype != IB_DTYPE_UNDEFINED && !is_q8(x->dtype)) ||
        (w->dtype != IB_DTYPE_UNDEFINED && !is_q8(w->dtype)))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: x and w must be int8 or uint8 (got %s, %s)",
                         ib__node_label(c->node), ib_dtype_name(x->dtype), ib_dtype_name(w->dtype));
    conv_geom g;
    bool known;
    IB_TRY(conv_geometry(c->node, false, x->rank, x->dims, w->rank, w->dims, &g, &known));
    if (!known) {
        ib__set_output(c, 0, out_dt, -1, NULL);
        return IB_OK;
    }
    int64_t dims[IB_MAX_RANK];
    dims[0] = g.batch;
    dims[1] = g.cout;
    for (int32_t i = 0; i < g.nsp; i++) dims[2 + i] = g.out[i];
    ib__set_output(c, 0, out_dt, g.nsp + 2, dims);
    return IB_OK;
}

static ib_status infer_conv_integer(ib__infer_ctx *c) {
    return infer_quant_conv(c, 0, 1, IB_DTYPE_INT32);
}

static ib_status infer_qlinear_conv(ib__infer_ctx *c) {
    for (int32_t i = 0; i < 8; i++) IB_TRY(ib__require_input(c, i));
    const ib__value *yz = c->in[7];
    if (yz->dtype != IB_DTYPE_UNDEFINED && !is_q8(yz->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: y_zero_point must be int8 or uint8",
                         ib__node_label(c->node));
    IB_TRY(check_bias(c->node, ib__in(c, 8), -1));
    return infer_quant_conv(c, 0, 3, yz->dtype);
}

static ib_status quant_geometry(ib__run_ctx *c, int32_t xi, int32_t wi, conv_geom *g) {
    const ib_tensor *x = c->in[xi], *w = c->in[wi];
    bool known;
    IB_TRY(conv_geometry(c->node, false, x->rank, x->shape, w->rank, w->shape, g, &known));
    if (!known) return ib__error(IB_ERR_SHAPE, "%s: bad input ranks", ib__node_label(c->node));
    return IB_OK;
}

static ib_status run_conv_integer(ib__run_ctx *c) {
    conv_geom g;
    IB_TRY(quant_geometry(c, 0, 1, &g));
    const ib_tensor *xz = c->n_in > 2 ? c->in[2] : NULL, *wz = c->n_in > 3 ? c->in[3] : NULL;
    if (xz) IB_TRY(check_per_channel(c->node, xz, "x_zero_point", g.cout, false));
    if (wz) IB_TRY(check_per_channel(c->node, wz, "w_zero_point", g.cout, true));
    double *dy = NULL;
    IB_TRY(conv_direct(c, &g, c->in[0], xz, c->in[1], wz, NULL, &dy));
    int32_t *y = c->out[0]->data;
    int64_t n = ib_tensor_element_count(c->out[0]);
    for (int64_t i = 0; i < n; i++) y[i] = (int32_t)(int64_t)dy[i]; /* exact: |acc| < 2^53 */
    ib__aligned_free(dy);
    return IB_OK;
}

static ib_status run_qlinear_conv(ib__run_ctx *c) {
    conv_geom g;
    IB_TRY(quant_geometry(c, 0, 3, &g));
    const ib_tensor *xs = c->in[1], *xz = c->in[2], *ws = c->in[4], *wz = c->in[5];
    const ib_tensor *ys = c->in[6], *yz = c->in[7];
    const ib_tensor *bias = c->n_in > 8 ? c->in[8] : NULL;
    IB_TRY(check_per_channel(c->node, xs, "x_scale", g.cout, false));
    IB_TRY(check_per_channel(c->node, xz, "x_zero_point", g.cout, false));
    IB_TRY(check_per_channel(c->node, ws, "w_scale", g.cout, true));
    IB_TRY(check_per_channel(c->node, wz, "w_zero_point", g.cout, true));
    IB_TRY(check_per_channel(c->node, ys, "y_scale", g.cout, false));
    IB_TRY(check_per_channel(c->node, yz, "y_zero_point", g.cout, false));
    if (!conv_float_type(xs->dtype) || !conv_float_type(ws->dtype) || !conv_float_type(ys->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: scales must be float tensors",
                         ib__node_label(c->node));
    if (bias && (bias->dtype != IB_DTYPE_INT32 || ib_tensor_element_count(bias) != g.cout))
        return ib__error(IB_ERR_SHAPE, "%s: B must be int32 with %lld values",
                         ib__node_label(c->node), (long long)g.cout);
    double *db = NULL, *dy = NULL;
    if (bias) {
        db = load_shifted(bias, NULL, 1);
        if (!db)
            return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    }
    ib_status st = conv_direct(c, &g, c->in[0], xz, c->in[3], wz, db, &dy);
    if (st == IB_OK) {
        ib_tensor *y = c->out[0];
        double x_scale = ib__load_f64(xs->data, xs->dtype, 0);
        double y_scale = ib__load_f64(ys->data, ys->dtype, 0);
        double y_zero = (double)ib__load_i64(yz->data, yz->dtype, 0);
        int64_t nws = ib_tensor_element_count(ws);
        double lo = y->dtype == IB_DTYPE_UINT8 ? 0.0 : -128.0;
        double hi = y->dtype == IB_DTYPE_UINT8 ? 255.0 : 127.0;
        if (!(y_scale != 0.0))
            st = ib__error(IB_ERR_INVALID_MODEL, "%s: y_scale is zero", ib__node_label(c->node));
        int64_t n = ib_tensor_element_count(y);
        for (int64_t i = 0; st == IB_OK && i < n; i++) {
            int64_t m = (i / g.out_sp) % g.cout;
            double wscale = ib__load_f64(ws->data, ws->dtype, nws == 1 ? 0 : m);
            /* round half to even (numpy rint in the reference), then saturate */
            double v = nearbyint(dy[i] * (x_scale * wscale / y_scale)) + y_zero;
            v = v < lo ? lo : (v > hi ? hi : v);
            if (y->dtype == IB_DTYPE_UINT8)
                ((uint8_t *)y->data)[i] = (uint8_t)v;
            else
                ((int8_t *)y->data)[i] = (int8_t)v;
        }
    }
    ib__aligned_free(db);
    ib__aligned_free(dy);
    return st;
}

const ib__op_def ib__ops_conv[] = {
    {IB_OP_CONV, infer_conv, run_conv, false},
    {IB_OP_CONV_TRANSPOSE, infer_conv_transpose, run_conv_transpose, false},
    {IB_OP_CONV_INTEGER, infer_conv_integer, run_conv_integer, false},
    {IB_OP_Q_LINEAR_CONV, infer_qlinear_conv, run_qlinear_conv, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
