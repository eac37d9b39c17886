/* Resampling ops: Resize (opsets 10-13 semantics: nearest / linear / cubic over any
 * number of dims, every coordinate transformation mode), Upsample (opsets 7 and 9) and
 * GridSample (opset 16, 2-D). Interpolation is separable: one 1-D pass per resized dim,
 * accumulating in double as the ONNX reference does. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

typedef enum rs_mode { RS_NEAREST, RS_LINEAR, RS_CUBIC } rs_mode;

typedef enum rs_coord {
    CT_HALF_PIXEL,
    CT_HALF_PIXEL_SYMMETRIC,
    CT_PYTORCH_HALF_PIXEL,
    CT_ALIGN_CORNERS,
    CT_ASYMMETRIC,
    CT_TF_HALF_PIXEL_FOR_NN,
    CT_TF_CROP_AND_RESIZE,
} rs_coord;

typedef enum rs_nearest {
    NM_ROUND_PREFER_FLOOR,
    NM_ROUND_PREFER_CEIL,
    NM_FLOOR,
    NM_CEIL,
    NM_SIMPLE, /* Upsample and Resize-10: truncate, but ceil when downsampling */
} rs_nearest;

typedef struct rs_params {
    rs_mode mode;
    rs_coord coord;
    rs_nearest nearest;
    double cubic_a;
    bool exclude_outside;
    double extrapolation;
} rs_params;

/* Largest index magnitude used for coordinates: keeps double->int64 casts defined. */
#define COORD_LIMIT 1e15

static ib_status parse_params(const ib__node *node, int32_t opset, bool upsample, rs_params *p) {
    memset(p, 0, sizeof *p);
    p->cubic_a = -0.75;
    const char *mode;
    IB_TRY(ib__attr_string(node, "mode", "nearest", &mode));
    if (strcmp(mode, "nearest") == 0)
        p->mode = RS_NEAREST;
    else if (strcmp(mode, "linear") == 0 || (upsample && strcmp(mode, "bilinear") == 0))
        p->mode = RS_LINEAR;
    else if (strcmp(mode, "cubic") == 0 && !upsample && opset >= 11)
        p->mode = RS_CUBIC;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: mode '%s' is invalid", ib__node_label(node),
                         mode);
    if (upsample || opset < 11) {
        p->coord = CT_ASYMMETRIC;
        p->nearest = NM_SIMPLE;
        return IB_OK;
    }
    const char *ct, *nm;
    IB_TRY(ib__attr_string(node, "coordinate_transformation_mode", "half_pixel", &ct));
    static const struct {
        const char *name;
        rs_coord v;
    } cts[] = {{"half_pixel", CT_HALF_PIXEL},
               {"half_pixel_symmetric", CT_HALF_PIXEL_SYMMETRIC},
               {"pytorch_half_pixel", CT_PYTORCH_HALF_PIXEL},
               {"align_corners", CT_ALIGN_CORNERS},
               {"asymmetric", CT_ASYMMETRIC},
               {"tf_half_pixel_for_nn", CT_TF_HALF_PIXEL_FOR_NN},
               {"tf_crop_and_resize", CT_TF_CROP_AND_RESIZE}};
    size_t k = 0;
    for (; k < sizeof cts / sizeof cts[0]; k++)
        if (strcmp(ct, cts[k].name) == 0) break;
    if (k == sizeof cts / sizeof cts[0])
        return ib__error(IB_ERR_INVALID_MODEL, "%s: coordinate_transformation_mode '%s' is invalid",
                         ib__node_label(node), ct);
    p->coord = cts[k].v;
    IB_TRY(ib__attr_string(node, "nearest_mode", "round_prefer_floor", &nm));
    if (strcmp(nm, "round_prefer_floor") == 0) p->nearest = NM_ROUND_PREFER_FLOOR;
    else if (strcmp(nm, "round_prefer_ceil") == 0) p->nearest = NM_ROUND_PREFER_CEIL;
    else if (strcmp(nm, "floor") == 0) p->nearest = NM_FLOOR;
    else if (strcmp(nm, "ceil") == 0) p->nearest = NM_CEIL;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: nearest_mode '%s' is invalid",
                         ib__node_label(node), nm);
    float a, ev;
    int64_t ex;
    IB_TRY(ib__attr_float(node, "cubic_coeff_a", -0.75f, &a));
    IB_TRY(ib__attr_int(node, "exclude_outside", 0, &ex));
    IB_TRY(ib__attr_float(node, "extrapolation_value", 0.0f, &ev));
    p->cubic_a = a;
    p->exclude_outside = ex != 0;
    p->extrapolation = ev;
    /* Later opsets' options, refused unless left at their defaults. */
    int64_t antialias;
    const char *policy;
    IB_TRY(ib__attr_int(node, "antialias", 0, &antialias));
    IB_TRY(ib__attr_string(node, "keep_aspect_ratio_policy", "stretch", &policy));
    if (antialias || strcmp(policy, "stretch") != 0 || ib__node_attr(node, "axes"))
        return ib__error(IB_ERR_UNSUPPORTED,
                         "%s: antialias, axes and keep_aspect_ratio_policy are not supported",
                         ib__node_label(node));
    return IB_OK;
}

/* The inputs that define the output size, as tensors (NULL: absent or empty). */
typedef struct rs_inputs {
    const ib_tensor *roi, *scales, *sizes;
    bool pending; /* an input that is present has no data yet (load time) */
} rs_inputs;

static const ib_tensor *non_empty(const ib_tensor *t) {
    return (t && ib_tensor_element_count(t) > 0) ? t : NULL;
}

/* Output dims and per-dim scales (for coordinates) from scales or sizes. */
static ib_status resize_shape(const ib__node *node, int32_t opset, bool upsample,
                              const rs_inputs *in, int32_t rank, const int64_t *in_dims,
                              int64_t *out_dims, double *scales) {
    float attr_scales[IB_MAX_RANK];
    int32_t n_attr = 0;
    const float *as = NULL;
    if (upsample && opset < 9) {
        IB_TRY(ib__attr_floats(node, "scales", &n_attr, &as));
        if (!as)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'scales' is required",
                             ib__node_label(node));
        if (n_attr != rank)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: scales has %d values for rank %d",
                             ib__node_label(node), n_attr, rank);
        memcpy(attr_scales, as, sizeof(float) * (size_t)rank);
    }
    const ib_tensor *st = non_empty(in->scales), *zt = non_empty(in->sizes);
    if (as) {
        for (int32_t d = 0; d < rank; d++) scales[d] = attr_scales[d];
    } else if (zt) {
        if (st)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: both scales and sizes are given",
                             ib__node_label(node));
        if (zt->dtype != IB_DTYPE_INT64 || ib_tensor_element_count(zt) != rank)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: sizes must be %d int64 values",
                             ib__node_label(node), rank);
        for (int32_t d = 0; d < rank; d++) {
            int64_t v = ((const int64_t *)zt->data)[d];
            if (v < 0 || v > IB_MAX_ELEMENTS || (v > 0 && in_dims[d] == 0))
                return ib__error(IB_ERR_SHAPE, "%s: sizes[%d] = %lld is invalid",
                                 ib__node_label(node), d, (long long)v);
            out_dims[d] = v;
            scales[d] = in_dims[d] > 0 ? (double)v / (double)in_dims[d] : 1.0;
        }
        if (ib__shape_count(out_dims, rank) < 0)
            return ib__error(IB_ERR_SHAPE, "%s: output is too large", ib__node_label(node));
        return IB_OK;
    } else if (st) {
        if (!ib__dtype_is_float(st->dtype) || ib_tensor_element_count(st) != rank)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: scales must be %d float values",
                             ib__node_label(node), rank);
        for (int32_t d = 0; d < rank; d++) scales[d] = ib__load_f64(st->data, st->dtype, d);
    } else {
        return ib__error(IB_ERR_INVALID_MODEL, "%s: one of scales and sizes is required",
                         ib__node_label(node));
    }
    for (int32_t d = 0; d < rank; d++) {
        if (!(scales[d] > 0) || scales[d] > 1e9)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: scale %g for dim %d is invalid",
                             ib__node_label(node), scales[d], d);
        double o = floor((double)in_dims[d] * scales[d]);
        if (o > (double)IB_MAX_ELEMENTS)
            return ib__error(IB_ERR_SHAPE, "%s: output dim %d is too large", ib__node_label(node), d);
        out_dims[d] = (int64_t)o;
    }
    if (ib__shape_count(out_dims, rank) < 0)
        return ib__error(IB_ERR_SHAPE, "%s: output is too large", ib__node_label(node));
    return IB_OK;
}

/* Collects the Resize / Upsample inputs by opset. */
static void gather_inputs(int32_t opset, bool upsample, int32_t n, const ib_tensor *const *t,
                          const bool *present, rs_inputs *in) {
    memset(in, 0, sizeof *in);
    int32_t roi_i = -1, scales_i = -1, sizes_i = -1;
    if (upsample) {
        if (opset >= 9) scales_i = 1;
    } else if (opset < 11) {
        scales_i = 1;
    } else {
        roi_i = 1;
        scales_i = 2;
        sizes_i = 3;
    }
    int32_t idx[3] = {roi_i, scales_i, sizes_i};
    const ib_tensor **dst[3] = {&in->roi, &in->scales, &in->sizes};
    for (int k = 0; k < 3; k++) {
        int32_t i = idx[k];
        if (i < 0 || i >= n || !present[i]) continue;
        if (!t[i])
            in->pending = true;
        else
            *dst[k] = t[i];
    }
}

static ib_status infer_resize_common(ib__infer_ctx *c, bool upsample) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    rs_params p;
    IB_TRY(parse_params(c->node, c->opset, upsample, &p));
    const ib_tensor *t[4] = {0};
    bool present[4] = {0};
    for (int32_t i = 0; i < 4 && i < c->n_in; i++) {
        present[i] = c->in[i] != NULL;
        t[i] = c->in[i] ? c->in[i]->constant : NULL;
    }
    rs_inputs in;
    gather_inputs(c->opset, upsample, c->n_in, t, present, &in);
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    int64_t dims[IB_MAX_RANK];
    bool known = !in.pending;
    for (int32_t d = 0; d < x->rank; d++) known &= x->dims[d] >= 0;
    if (!known) {
        for (int32_t d = 0; d < x->rank; d++) dims[d] = -1;
        ib__set_output(c, 0, x->dtype, x->rank, dims);
        return IB_OK;
    }
    double scales[IB_MAX_RANK];
    IB_TRY(resize_shape(c->node, c->opset, upsample, &in, x->rank, x->dims, dims, scales));
    ib__set_output(c, 0, x->dtype, x->rank, dims);
    return IB_OK;
}

static ib_status infer_resize(ib__infer_ctx *c) { return infer_resize_common(c, false); }
static ib_status infer_upsample(ib__infer_ctx *c) { return infer_resize_common(c, true); }

/* ---- Coordinate mapping -------------------------------------------------------------- */

/* Output coordinate x of a dim -> input coordinate, as the ONNX reference computes it
 * (the reference uses scale * in_len, not the rounded output length, for align_corners
 * and tf_crop_and_resize). */
static double map_coord(const rs_params *p, double x, double scale, int64_t in_len,
                        int64_t out_len, double roi_start, double roi_end) {
    double out_w = scale * (double)in_len;
    switch (p->coord) {
    case CT_HALF_PIXEL: return (x + 0.5) / scale - 0.5;
    case CT_HALF_PIXEL_SYMMETRIC: {
        double adj = (double)out_len / out_w;
        double center = (double)in_len / 2;
        double offset = center * (1 - adj);
        return offset + (x + 0.5) / scale - 0.5;
    }
    case CT_PYTORCH_HALF_PIXEL: return out_len > 1 ? (x + 0.5) / scale - 0.5 : 0.0;
    case CT_ALIGN_CORNERS:
        return out_w == 1.0 ? 0.0 : x * (double)(in_len - 1) / (out_w - 1);
    case CT_ASYMMETRIC: return x / scale;
    case CT_TF_HALF_PIXEL_FOR_NN: return (x + 0.5) / scale;
    case CT_TF_CROP_AND_RESIZE: {
        double v = out_w == 1.0 ? (roi_end - roi_start) * (double)(in_len - 1) / 2
                                : x * (roi_end - roi_start) * (double)(in_len - 1) / (out_w - 1);
        return v + roi_start * (double)(in_len - 1);
    }
    }
    return x;
}

static int64_t clamp_index(double v, int64_t n) {
    if (!(v > 0)) return 0; /* also NaN */
    if (v >= (double)(n - 1)) return n - 1;
    return (int64_t)v;
}

static int64_t nearest_index(const rs_params *p, double x, double scale, int64_t n) {
    if (x != x) return 0;
    if (x > COORD_LIMIT) x = COORD_LIMIT;
    if (x < -COORD_LIMIT) x = -COORD_LIMIT;
    double fl = floor(x), r = x - fl, v;
    if (r == 0.0) {
        v = x;
    } else {
        switch (p->nearest) {
        case NM_ROUND_PREFER_FLOOR: v = r <= 0.5 ? fl : fl + 1; break;
        case NM_ROUND_PREFER_CEIL: v = r < 0.5 ? fl : fl + 1; break;
        case NM_FLOOR: v = fl; break;
        case NM_CEIL: v = fl + 1; break;
        default: v = scale < 1.0 ? ceil(x) : trunc(x); break;
        }
    }
    return clamp_index(v, n);
}

static void cubic_coeffs(double r, double A, double *c) {
    double r1 = r + 1, q = 1 - r, q1 = q + 1;
    c[0] = ((A * r1 - 5 * A) * r1 + 8 * A) * r1 - 4 * A;
    c[1] = ((A + 2) * r - (A + 3)) * r * r + 1;
    c[2] = ((A + 2) * q - (A + 3)) * q * q + 1;
    c[3] = ((A * q1 - 5 * A) * q1 + 8 * A) * q1 - 4 * A;
}

/* Taps of one output coordinate: input indices (clamped) and weights. */
typedef struct rs_taps {
    int32_t n;
    int64_t idx[4];
    double w[4];
} rs_taps;

static void interp_taps(const rs_params *p, double x, int64_t in_len, rs_taps *t) {
    int32_t n = p->mode == RS_CUBIC ? 4 : 2;
    if (x != x) x = 0;
    if (x > COORD_LIMIT) x = COORD_LIMIT;
    if (x < -COORD_LIMIT) x = -COORD_LIMIT;
    double fl = floor(x);
    /* The reference picks the n nearest indices preferring the left ones, so an
     * integral x counts as ratio 1 from its left neighbour. */
    double ratio = x == fl ? 1.0 : x - fl;
    double coef[4];
    if (n == 2) {
        coef[0] = 1 - ratio;
        coef[1] = ratio;
    } else {
        cubic_coeffs(ratio, p->cubic_a, coef);
    }
    int64_t pad = n / 2;
    int64_t lo = (int64_t)ceil(x) - pad;
    /* the reference searches the edge-padded array, so neighbours never leave it */
    if (lo < -pad) lo = -pad;
    if (lo > in_len + pad - n) lo = in_len + pad - n;
    if (p->exclude_outside) {
        double sum = 0;
        for (int32_t k = 0; k < n; k++) {
            int64_t i = lo + k;
            if (i < 0 || i >= in_len) coef[k] = 0;
            sum += coef[k];
        }
        if (sum != 0)
            for (int32_t k = 0; k < n; k++) coef[k] /= sum;
    }
    t->n = 0;
    for (int32_t k = 0; k < n; k++) {
        if (coef[k] == 0.0) continue;
        int64_t i = lo + k;
        t->idx[t->n] = i < 0 ? 0 : i >= in_len ? in_len - 1 : i;
        t->w[t->n] = coef[k];
        t->n++;
    }
    if (t->n == 0) { /* all weights vanished: keep one zero tap */
        t->idx[0] = lo < 0 ? 0 : lo >= in_len ? in_len - 1 : lo;
        t->w[0] = 0;
        t->n = 1;
    }
}

/* ---- Run ----------------------------------------------------------------------------- */

typedef struct rs_dim {
    int64_t in_len, out_len;
    double scale, roi_start, roi_end;
    bool identity;
} rs_dim;

static ib_status run_resize_common(ib__run_ctx *c, bool upsample) {
    const ib_tensor *x = c->in[0];
    ib_tensor *y = c->out[0];
    size_t es = ib_dtype_size(x->dtype);
    if (es == 0)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: dtype %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    rs_params p;
    IB_TRY(parse_params(c->node, c->opset, upsample, &p));
    const ib_tensor *t[4] = {0};
    bool present[4] = {0};
    for (int32_t i = 0; i < 4 && i < c->n_in; i++) {
        present[i] = c->in[i] != NULL;
        t[i] = c->in[i];
    }
    rs_inputs in;
    gather_inputs(c->opset, upsample, c->n_in, t, present, &in);
    int32_t rank = x->rank;
    int64_t out_dims[IB_MAX_RANK];
    double scales[IB_MAX_RANK];
    IB_TRY(resize_shape(c->node, c->opset, upsample, &in, rank, x->shape, out_dims, scales));
    if (y->rank != rank || memcmp(y->shape, out_dims, sizeof(int64_t) * (size_t)rank) != 0)
        return ib__error(IB_ERR_INTERNAL, "%s: output shape mismatch", ib__node_label(c->node));
    if (rank == 0) {
        memcpy(y->data, x->data, es);
        return IB_OK;
    }
    if (ib_tensor_element_count(y) == 0) return IB_OK;
    const ib_tensor *roi = p.coord == CT_TF_CROP_AND_RESIZE ? non_empty(in.roi) : NULL;
    if (p.coord == CT_TF_CROP_AND_RESIZE) {
        if (!roi || ib_tensor_element_count(roi) != 2 * rank || !ib__dtype_is_float(roi->dtype))
            return ib__error(IB_ERR_INVALID_MODEL, "%s: tf_crop_and_resize needs roi of %d floats",
                             ib__node_label(c->node), 2 * rank);
    }
    if (p.mode != RS_NEAREST && !ib__dtype_is_float(x->dtype) && !ib__dtype_is_integer(x->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: %s interpolation of dtype %s",
                         ib__node_label(c->node), p.mode == RS_LINEAR ? "linear" : "cubic",
                         ib_dtype_name(x->dtype));
    rs_dim dims[IB_MAX_RANK];
    int64_t total_out = 0;
    for (int32_t d = 0; d < rank; d++) {
        dims[d].in_len = x->shape[d];
        dims[d].out_len = out_dims[d];
        dims[d].scale = scales[d];
        dims[d].roi_start = roi ? ib__load_f64(roi->data, roi->dtype, d) : 0.0;
        dims[d].roi_end = roi ? ib__load_f64(roi->data, roi->dtype, rank + d) : 1.0;
        total_out += out_dims[d];
    }
    /* Per-dim tables: for nearest one index, otherwise taps; plus an outside flag for
     * tf_crop_and_resize extrapolation. */
    size_t tap_bytes = p.mode == RS_NEAREST ? sizeof(int64_t) : sizeof(rs_taps);
    unsigned char *tables = ib__aligned_alloc((size_t)total_out * (tap_bytes + 1));
    if (!tables) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    unsigned char *outside_all = tables + (size_t)total_out * tap_bytes;
    void *tab[IB_MAX_RANK];
    unsigned char *outside[IB_MAX_RANK];
    bool any_outside = false;
    {
        size_t off = 0;
        for (int32_t d = 0; d < rank; d++) {
            rs_dim *D = &dims[d];
            tab[d] = tables + off * tap_bytes;
            outside[d] = outside_all + off;
            off += (size_t)D->out_len;
            D->identity = D->in_len == D->out_len;
            for (int64_t o = 0; o < D->out_len; o++) {
                double xo = map_coord(&p, (double)o, D->scale, D->in_len, D->out_len, D->roi_start,
                                      D->roi_end);
                outside[d][o] = p.coord == CT_TF_CROP_AND_RESIZE &&
                                (xo < 0 || xo > (double)(D->in_len - 1) || xo != xo);
                any_outside |= outside[d][o];
                if (p.mode == RS_NEAREST) {
                    int64_t i = nearest_index(&p, xo, D->scale, D->in_len);
                    ((int64_t *)tab[d])[o] = i;
                    if (i != o) D->identity = false;
                } else {
                    rs_taps *tp = &((rs_taps *)tab[d])[o];
                    interp_taps(&p, xo, D->in_len, tp);
                    if (tp->n != 1 || tp->idx[0] != o || tp->w[0] != 1.0) D->identity = false;
                }
                if (outside[d][o]) D->identity = false;
            }
        }
    }
    ib_status st = IB_OK;
    int64_t ys[IB_MAX_RANK], xs[IB_MAX_RANK];
    ib__strides(y->shape, rank, ys);
    ib__strides(x->shape, rank, xs);
    int64_t n_out = ib_tensor_element_count(y);
    unsigned char ext[16] = {0};
    if (ib__dtype_is_float(x->dtype) || ib__dtype_is_integer(x->dtype) || x->dtype == IB_DTYPE_BOOL)
        ib__store_f64(ext, x->dtype, 0, p.extrapolation);
    if (p.mode == RS_NEAREST) {
        /* gather: rows over all but the last dim */
        int32_t last = rank - 1;
        int64_t w = y->shape[last];
        const int64_t *lt = tab[last];
        int64_t idx[IB_MAX_RANK] = {0};
        int64_t rows = n_out / w;
        char *dst = y->data;
        for (int64_t r = 0; r < rows; r++) {
            int64_t base = 0;
            bool out_row = false;
            for (int32_t d = 0; d < last; d++) {
                base += ((const int64_t *)tab[d])[idx[d]] * xs[d];
                out_row |= outside[d][idx[d]];
            }
            const char *src = (const char *)x->data + (size_t)base * es;
            for (int64_t i = 0; i < w; i++) {
                const void *s = (out_row || outside[last][i]) ? (const void *)ext
                                                              : src + (size_t)lt[i] * es;
                switch (es) {
                case 4: memcpy(dst, s, 4); break;
                case 1: *dst = *(const char *)s; break;
                default: memcpy(dst, s, es); break;
                }
                dst += es;
            }
            for (int32_t d = last - 1; d >= 0; d--) {
                if (++idx[d] < y->shape[d]) break;
                idx[d] = 0;
            }
        }
        ib__aligned_free(tables);
        return IB_OK;
    }
    /* Separable passes in double: cur has dims cd; each non-identity dim is resampled. */
    int64_t cd[IB_MAX_RANK];
    memcpy(cd, x->shape, sizeof(int64_t) * (size_t)rank);
    int64_t n_in = ib_tensor_element_count(x), cap = n_in;
    for (int64_t d = 0, sz = n_in; d < rank; d++) { /* largest intermediate */
        if (dims[d].identity) continue;
        if (ib__mul_overflow_i64(sz / dims[d].in_len, dims[d].out_len, &sz) ||
            sz > IB_MAX_ELEMENTS) {
            st = ib__error(IB_ERR_UNSUPPORTED, "%s: intermediate result is too large",
                           ib__node_label(c->node));
            ib__aligned_free(tables);
            return st;
        }
        if (sz > cap) cap = sz;
    }
    double *a = ib__aligned_alloc(sizeof(double) * (size_t)cap);
    double *b = ib__aligned_alloc(sizeof(double) * (size_t)cap);
    if (!a || !b) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
        goto done;
    }
    if (x->dtype == IB_DTYPE_FLOAT32) {
        const float *xf = x->data;
        for (int64_t i = 0; i < n_in; i++) a[i] = xf[i];
    } else {
        for (int64_t i = 0; i < n_in; i++) a[i] = ib__load_f64(x->data, x->dtype, i);
    }
    for (int32_t d = 0; d < rank; d++) {
        if (dims[d].identity) continue;
        int64_t outer = 1, inner = 1;
        for (int32_t k = 0; k < d; k++) outer *= cd[k];
        for (int32_t k = d + 1; k < rank; k++) inner *= cd[k];
        int64_t L = cd[d], O = dims[d].out_len;
        const rs_taps *tp = tab[d];
        for (int64_t o = 0; o < outer; o++) {
            const double *src = a + o * L * inner;
            double *dst = b + o * O * inner;
            for (int64_t j = 0; j < O; j++) {
                double *drow = dst + j * inner;
                const rs_taps *tj = &tp[j];
                const double *s0 = src + tj->idx[0] * inner;
                double w0 = tj->w[0];
                for (int64_t i = 0; i < inner; i++) drow[i] = w0 * s0[i];
                for (int32_t k = 1; k < tj->n; k++) {
                    const double *sk = src + tj->idx[k] * inner;
                    double wk = tj->w[k];
                    for (int64_t i = 0; i < inner; i++) drow[i] += wk * sk[i];
                }
            }
        }
        cd[d] = O;
        double *tmp = a;
        a = b;
        b = tmp;
    }
    if (any_outside) { /* any coordinate outside the roi takes the extrapolation value */
        int64_t idx[IB_MAX_RANK] = {0};
        for (int64_t i = 0; i < n_out; i++) {
            bool out = false;
            for (int32_t d = 0; d < rank; d++) out |= outside[d][idx[d]];
            if (out) a[i] = p.extrapolation;
            for (int32_t d = rank - 1; d >= 0; d--) {
                if (++idx[d] < y->shape[d]) break;
                idx[d] = 0;
            }
        }
    }
    if (y->dtype == IB_DTYPE_FLOAT32) {
        float *yf = y->data;
        for (int64_t i = 0; i < n_out; i++) yf[i] = (float)a[i];
    } else { /* integers truncate, as the reference's astype does */
        for (int64_t i = 0; i < n_out; i++) ib__store_f64(y->data, y->dtype, i, a[i]);
    }
done:
    ib__aligned_free(a);
    ib__aligned_free(b);
    ib__aligned_free(tables);
    return st;
}

static ib_status run_resize(ib__run_ctx *c) { return run_resize_common(c, false); }
static ib_status run_upsample(ib__run_ctx *c) { return run_resize_common(c, true); }

/* ---- GridSample ---------------------------------------------------------------------- */

typedef enum gs_mode { GS_BILINEAR, GS_NEAREST, GS_BICUBIC } gs_mode;
typedef enum gs_pad { GS_ZEROS, GS_BORDER, GS_REFLECTION } gs_pad;

typedef struct gs_params {
    gs_mode mode;
    gs_pad pad;
    bool align;
} gs_params;

static ib_status gs_parse(const ib__node *node, gs_params *p) {
    const char *mode, *pad;
    int64_t align;
    IB_TRY(ib__attr_string(node, "mode", "bilinear", &mode));
    IB_TRY(ib__attr_string(node, "padding_mode", "zeros", &pad));
    IB_TRY(ib__attr_int(node, "align_corners", 0, &align));
    if (strcmp(mode, "bilinear") == 0 || strcmp(mode, "linear") == 0) p->mode = GS_BILINEAR;
    else if (strcmp(mode, "nearest") == 0) p->mode = GS_NEAREST;
    else if (strcmp(mode, "bicubic") == 0 || strcmp(mode, "cubic") == 0) p->mode = GS_BICUBIC;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: mode '%s' is invalid", ib__node_label(node), mode);
    if (strcmp(pad, "zeros") == 0) p->pad = GS_ZEROS;
    else if (strcmp(pad, "border") == 0) p->pad = GS_BORDER;
    else if (strcmp(pad, "reflection") == 0) p->pad = GS_REFLECTION;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: padding_mode '%s' is invalid",
                         ib__node_label(node), pad);
    p->align = align != 0;
    return IB_OK;
}

static ib_status infer_grid_sample(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0], *g = c->in[1];
    gs_params p;
    IB_TRY(gs_parse(c->node, &p));
    if (x->rank >= 0 && x->rank != 4)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: only 4-D input is supported (rank %d)",
                         ib__node_label(c->node), x->rank);
    if (g->rank >= 0 && (g->rank != 4 || (g->dims[3] >= 0 && g->dims[3] != 2)))
        return ib__error(IB_ERR_SHAPE, "%s: grid must be [N, H, W, 2]", ib__node_label(c->node));
    if (g->dtype != IB_DTYPE_UNDEFINED && !ib__dtype_is_float(g->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: grid must be a float tensor",
                         ib__node_label(c->node));
    int64_t dims[4] = {-1, -1, -1, -1};
    if (x->rank == 4) dims[0] = x->dims[0], dims[1] = x->dims[1];
    if (g->rank == 4) {
        if (dims[0] >= 0 && g->dims[0] >= 0 && dims[0] != g->dims[0])
            return ib__error(IB_ERR_SHAPE, "%s: batch of grid (%lld) and input (%lld) differ",
                             ib__node_label(c->node), (long long)g->dims[0], (long long)dims[0]);
        if (dims[0] < 0) dims[0] = g->dims[0];
        dims[2] = g->dims[1];
        dims[3] = g->dims[2];
    }
    ib__set_output(c, 0, x->dtype, 4, dims);
    return IB_OK;
}

static double gs_unnormalize(double v, int64_t size, bool align) {
    return align ? (v + 1) / 2 * (double)(size - 1) : ((v + 1) * (double)size - 1) / 2;
}

static double gs_reflect(double v, double twice_low, double twice_high) {
    if (twice_low == twice_high) return 0;
    double lo = twice_low / 2, span = (twice_high - twice_low) / 2;
    v = fabs(v - lo);
    double extra = fmod(v, span);
    double flips = floor(v / span);
    return fmod(flips, 2.0) == 0 ? extra + lo : span - extra + lo;
}

/* Applies the padding mode to a source coordinate (PyTorch's compute_coordinates). */
static double gs_pad_coord(const gs_params *p, double v, int64_t size) {
    if (p->pad == GS_BORDER) {
        v = v < 0 ? 0 : v > (double)(size - 1) ? (double)(size - 1) : v;
    } else if (p->pad == GS_REFLECTION) {
        v = p->align ? gs_reflect(v, 0, 2.0 * (double)(size - 1))
                     : gs_reflect(v, -1, 2.0 * (double)size - 1);
        v = v < 0 ? 0 : v > (double)(size - 1) ? (double)(size - 1) : v;
    }
    return v;
}

/* Pixel (ix, iy) of one channel plane, 0 outside. */
static inline double gs_pixel(const void *data, ib_dtype dt, int64_t base, int64_t ix, int64_t iy,
                              int64_t W, int64_t H) {
    if (ix < 0 || iy < 0 || ix >= W || iy >= H) return 0.0;
    int64_t i = base + iy * W + ix;
    if (dt == IB_DTYPE_FLOAT32) return ((const float *)data)[i];
    return ib__load_f64(data, dt, i);
}

/* floor() as an int64 for coordinates already kept finite and bounded. */
static int64_t gs_floor(double v) {
    if (!(v > -COORD_LIMIT)) return (int64_t)-COORD_LIMIT;
    if (v > COORD_LIMIT) return (int64_t)COORD_LIMIT;
    return (int64_t)floor(v);
}

static ib_status run_grid_sample(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *g = c->in[1];
    ib_tensor *y = c->out[0];
    gs_params p;
    IB_TRY(gs_parse(c->node, &p));
    if (x->rank != 4 || g->rank != 4 || g->shape[3] != 2 || g->shape[0] != x->shape[0])
        return ib__error(IB_ERR_SHAPE, "%s: expected input [N, C, H, W] and grid [N, H, W, 2]",
                         ib__node_label(c->node));
    if (!ib__dtype_is_float(g->dtype) ||
        (!ib__dtype_is_float(x->dtype) && !ib__dtype_is_integer(x->dtype)))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: dtypes %s / %s are not supported",
                         ib__node_label(c->node), ib_dtype_name(x->dtype), ib_dtype_name(g->dtype));
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int64_t Ho = g->shape[1], Wo = g->shape[2];
    if (y->shape[0] != N || y->shape[1] != C || y->shape[2] != Ho || y->shape[3] != Wo)
        return ib__error(IB_ERR_INTERNAL, "%s: output shape mismatch", ib__node_label(c->node));
    bool fast = y->dtype == IB_DTYPE_FLOAT32;
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < Ho; h++)
            for (int64_t w = 0; w < Wo; w++) {
                int64_t gi = ((n * Ho + h) * Wo + w) * 2;
                double gx = ib__load_f64(g->data, g->dtype, gi);
                double gy = ib__load_f64(g->data, g->dtype, gi + 1);
                double fx = gs_unnormalize(gx, W, p.align), fy = gs_unnormalize(gy, H, p.align);
                for (int64_t ch = 0; ch < C; ch++) {
                    int64_t base = (n * C + ch) * H * W;
                    double v = 0;
                    if (p.mode == GS_BICUBIC && (fx != fx || fy != fy)) {
                        v = 0; /* a NaN grid point samples nothing */
                    } else if (p.mode == GS_BICUBIC) {
                        int64_t x0 = gs_floor(fx), y0 = gs_floor(fy);
                        double cx[4], cy[4];
                        cubic_coeffs(fx - floor(fx), -0.75, cx);
                        cubic_coeffs(fy - floor(fy), -0.75, cy);
                        for (int32_t j = 0; j < 4; j++) {
                            double row = 0;
                            for (int32_t i = 0; i < 4; i++) {
                                double sx = gs_pad_coord(&p, (double)(x0 - 1 + i), W);
                                double sy = gs_pad_coord(&p, (double)(y0 - 1 + j), H);
                                row += cx[i] * gs_pixel(x->data, x->dtype, base, gs_floor(sx),
                                                        gs_floor(sy), W, H);
                            }
                            v += cy[j] * row;
                        }
                    } else {
                        double sx = gs_pad_coord(&p, fx, W), sy = gs_pad_coord(&p, fy, H);
                        if (sx != sx || sy != sy) {
                            v = 0;
                        } else if (p.mode == GS_NEAREST) {
                            double rx = nearbyint(sx), ry = nearbyint(sy);
                            v = gs_pixel(x->data, x->dtype, base, gs_floor(rx), gs_floor(ry), W, H);
                        } else {
                            int64_t x0 = gs_floor(sx), y0 = gs_floor(sy);
                            double tx = sx - (double)x0, ty = sy - (double)y0;
                            v = (1 - tx) * (1 - ty) * gs_pixel(x->data, x->dtype, base, x0, y0, W, H) +
                                tx * (1 - ty) * gs_pixel(x->data, x->dtype, base, x0 + 1, y0, W, H) +
                                (1 - tx) * ty * gs_pixel(x->data, x->dtype, base, x0, y0 + 1, W, H) +
                                tx * ty * gs_pixel(x->data, x->dtype, base, x0 + 1, y0 + 1, W, H);
                        }
                    }
                    int64_t oi = ((n * C + ch) * Ho + h) * Wo + w;
                    if (fast)
                        ((float *)y->data)[oi] = (float)v;
                    else
                        ib__store_f64(y->data, y->dtype, oi, v);
                }
            }
    return IB_OK;
}

const ib__op_def ib__ops_resize[] = {
    {IB_OP_RESIZE, infer_resize, run_resize, false},
    {IB_OP_UPSAMPLE, infer_upsample, run_upsample, false},
    {IB_OP_GRID_SAMPLE, infer_grid_sample, run_grid_sample, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
