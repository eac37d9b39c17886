/* Linear quantization: QuantizeLinear, DequantizeLinear (per-tensor and per-axis) and
 * DynamicQuantizeLinear, with float32 fast paths. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

#define PAR_MIN ((int64_t)1 << 15)

static bool is_q_dtype(ib_dtype dt) { return dt == IB_DTYPE_UINT8 || dt == IB_DTYPE_INT8; }

/* Resolves per-tensor vs per-axis: *axis_out = -1 for per-tensor. Scale (and zero point)
 * of one element is per-tensor; a 1-D scale is per-axis (opset >= 13) along 'axis'. */
static ib_status q_layout(const ib__node *node, int32_t opset, int32_t x_rank,
                          const int64_t *x_dims, int32_t s_rank, const int64_t *s_dims,
                          bool s_known_one, int32_t *axis_out) {
    *axis_out = -1;
    if (s_known_one || s_rank == 0) return IB_OK;
    if (s_rank != 1 || opset < 13)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: scale must be a scalar%s",
                         ib__node_label(node), opset < 13 ? "" : " or a 1-D tensor");
    int64_t axis;
    IB_TRY(ib__attr_int(node, "axis", 1, &axis));
    if (x_rank < 0) return IB_OK; /* checked at run time */
    int32_t a;
    IB_TRY(ib__normalize_axis(node, axis, x_rank, &a));
    if (s_dims[0] >= 0 && x_dims[a] >= 0 && s_dims[0] != x_dims[a])
        return ib__error(IB_ERR_SHAPE, "%s: scale has %lld elements but axis %d has %lld",
                         ib__node_label(node), (long long)s_dims[0], a, (long long)x_dims[a]);
    *axis_out = a;
    return IB_OK;
}

static ib_status infer_q_common(ib__infer_ctx *c, bool quantize) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0], *s = c->in[1], *zp = ib__in(c, 2);
    if (s->dtype != IB_DTYPE_UNDEFINED && !ib__dtype_is_float(s->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: scale must be a float tensor, not %s",
                         ib__node_label(c->node), ib_dtype_name(s->dtype));
    if (s->rank >= 0) {
        bool one = s->rank == 1 && s->dims[0] == 1;
        int32_t axis;
        IB_TRY(q_layout(c->node, c->opset, x->rank, x->dims, s->rank, s->dims, one, &axis));
    }
    if (zp && zp->rank >= 0 && s->rank >= 0 && zp->rank != s->rank &&
        !(zp->rank <= 1 && s->rank <= 1))
        return ib__error(IB_ERR_SHAPE, "%s: zero point and scale shapes differ",
                         ib__node_label(c->node));
    ib_dtype odt;
    if (quantize) {
        if (x->dtype != IB_DTYPE_UNDEFINED && !ib__dtype_is_float(x->dtype) &&
            x->dtype != IB_DTYPE_INT32)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input of type %s cannot be quantized",
                             ib__node_label(c->node), ib_dtype_name(x->dtype));
        odt = zp ? zp->dtype : IB_DTYPE_UINT8;
        if (odt != IB_DTYPE_UNDEFINED && !is_q_dtype(odt))
            return ib__error(IB_ERR_UNSUPPORTED, "%s: quantizing to %s is not supported",
                             ib__node_label(c->node), ib_dtype_name(odt));
    } else {
        if (x->dtype != IB_DTYPE_UNDEFINED && !is_q_dtype(x->dtype) && x->dtype != IB_DTYPE_INT32)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: dequantizing %s is not supported",
                             ib__node_label(c->node), ib_dtype_name(x->dtype));
        if (zp && zp->dtype != IB_DTYPE_UNDEFINED && x->dtype != IB_DTYPE_UNDEFINED &&
            zp->dtype != x->dtype)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: zero point is %s but the input is %s",
                             ib__node_label(c->node), ib_dtype_name(zp->dtype),
                             ib_dtype_name(x->dtype));
        odt = s->dtype != IB_DTYPE_UNDEFINED ? s->dtype : IB_DTYPE_FLOAT32;
    }
    ib__set_output_like(c, 0, x);
    if (c->n_out > 0 && c->out[0]) c->out[0]->dtype = odt;
    return IB_OK;
}

static ib_status infer_quantize(ib__infer_ctx *c) { return infer_q_common(c, true); }
static ib_status infer_dequantize(ib__infer_ctx *c) { return infer_q_common(c, false); }

typedef struct qjob {
    const void *x;
    void *y;
    ib_dtype xdt, ydt;
    const void *scale, *zp;
    ib_dtype sdt, zdt;
    int64_t channels, inner; /* element i uses channel (i / inner) % channels */
    float qmin, qmax;
} qjob;

/* Per-channel parameters for element i. */
static inline int64_t q_channel(const qjob *j, int64_t i) {
    return j->channels == 1 ? 0 : (i / j->inner) % j->channels;
}

static inline float q_zero_point(const qjob *j, int64_t ch) {
    return j->zp ? (float)ib__load_i64(j->zp, j->zdt, ch) : 0.0f;
}

/* round half to even, add the zero point, saturate; NaN maps to the zero point */
static inline float q_saturate(float v, float zp, float qmin, float qmax) {
    float q = rintf(v) + zp;
    if (q != q) q = zp;
    return q < qmin ? qmin : q > qmax ? qmax : q;
}

static void quantize_range(void *ctx, int64_t begin, int64_t end) {
    const qjob *j = (const qjob *)ctx;
    int64_t i = begin;
    while (i < end) {
        int64_t ch = q_channel(j, i);
        /* a run of elements sharing one channel */
        int64_t run_end = j->channels == 1 ? end : (i / j->inner + 1) * j->inner;
        if (run_end > end) run_end = end;
        float s = (float)ib__load_f64(j->scale, j->sdt, ch);
        float zp = q_zero_point(j, ch);
        if (j->xdt == IB_DTYPE_FLOAT32 && j->ydt == IB_DTYPE_UINT8) {
            const float *x = (const float *)j->x;
            uint8_t *y = (uint8_t *)j->y;
            for (int64_t k = i; k < run_end; k++)
                y[k] = (uint8_t)q_saturate(x[k] / s, zp, j->qmin, j->qmax);
        } else if (j->xdt == IB_DTYPE_FLOAT32 && j->ydt == IB_DTYPE_INT8) {
            const float *x = (const float *)j->x;
            int8_t *y = (int8_t *)j->y;
            for (int64_t k = i; k < run_end; k++)
                y[k] = (int8_t)q_saturate(x[k] / s, zp, j->qmin, j->qmax);
        } else {
            for (int64_t k = i; k < run_end; k++) {
                double v = ib__load_f64(j->x, j->xdt, k) / (double)s;
                ib__store_f64(j->y, j->ydt, k, q_saturate((float)v, zp, j->qmin, j->qmax));
            }
        }
        i = run_end;
    }
}

static void dequantize_range(void *ctx, int64_t begin, int64_t end) {
    const qjob *j = (const qjob *)ctx;
    int64_t i = begin;
    while (i < end) {
        int64_t ch = q_channel(j, i);
        int64_t run_end = j->channels == 1 ? end : (i / j->inner + 1) * j->inner;
        if (run_end > end) run_end = end;
        float s = (float)ib__load_f64(j->scale, j->sdt, ch);
        float zp = q_zero_point(j, ch);
        if (j->ydt == IB_DTYPE_FLOAT32 && j->xdt == IB_DTYPE_UINT8) {
            const uint8_t *x = (const uint8_t *)j->x;
            float *y = (float *)j->y;
            for (int64_t k = i; k < run_end; k++) y[k] = ((float)x[k] - zp) * s;
        } else if (j->ydt == IB_DTYPE_FLOAT32 && j->xdt == IB_DTYPE_INT8) {
            const int8_t *x = (const int8_t *)j->x;
            float *y = (float *)j->y;
            for (int64_t k = i; k < run_end; k++) y[k] = ((float)x[k] - zp) * s;
        } else {
            for (int64_t k = i; k < run_end; k++) {
                float v = ((float)ib__load_i64(j->x, j->xdt, k) - zp) * s;
                ib__store_f64(j->y, j->ydt, k, v);
            }
        }
        i = run_end;
    }
}

static ib_status run_q_common(ib__run_ctx *c, bool quantize) {
    const ib_tensor *x = c->n_in > 0 ? c->in[0] : NULL;
    const ib_tensor *s = c->n_in > 1 ? c->in[1] : NULL;
    const ib_tensor *zp = c->n_in > 2 ? c->in[2] : NULL;
    ib_tensor *y = c->n_out > 0 ? c->out[0] : NULL;
    if (!x || !s)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input and scale are required",
                         ib__node_label(c->node));
    if (!y) return IB_OK;
    if (!ib__dtype_is_float(s->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: scale must be a float tensor, not %s",
                         ib__node_label(c->node), ib_dtype_name(s->dtype));
    int64_t s_count = ib_tensor_element_count(s);
    int64_t n = ib_tensor_element_count(x);
    if (s_count < 1 || n < 0)
        return ib__error(IB_ERR_SHAPE, "%s: scale is empty", ib__node_label(c->node));
    int32_t axis;
    IB_TRY(q_layout(c->node, c->opset, x->rank, x->shape, s->rank, s->shape, s_count == 1, &axis));
    if (zp) {
        if (ib_tensor_element_count(zp) != s_count)
            return ib__error(IB_ERR_SHAPE, "%s: zero point has %lld elements, scale has %lld",
                             ib__node_label(c->node), (long long)ib_tensor_element_count(zp),
                             (long long)s_count);
        if (!ib__dtype_is_integer(zp->dtype))
            return ib__error(IB_ERR_INVALID_MODEL, "%s: zero point must be an integer tensor",
                             ib__node_label(c->node));
    }
    if (y->rank != x->rank || ib_tensor_element_count(y) != n)
        return ib__error(IB_ERR_SHAPE, "%s: output shape differs from the input's",
                         ib__node_label(c->node));
    qjob j;
    memset(&j, 0, sizeof j);
    j.x = x->data;
    j.y = y->data;
    j.xdt = x->dtype;
    j.ydt = y->dtype;
    j.scale = s->data;
    j.sdt = s->dtype;
    j.zp = zp ? zp->data : NULL;
    j.zdt = zp ? zp->dtype : IB_DTYPE_UINT8;
    j.channels = 1;
    j.inner = 1;
    if (axis >= 0) {
        j.channels = x->shape[axis];
        if (j.channels != s_count)
            return ib__error(IB_ERR_SHAPE, "%s: scale has %lld elements but axis %d has %lld",
                             ib__node_label(c->node), (long long)s_count, axis,
                             (long long)j.channels);
        for (int32_t d = axis + 1; d < x->rank; d++) j.inner *= x->shape[d];
        if (j.inner == 0) return IB_OK;
    }
    if (quantize) {
        if (!is_q_dtype(y->dtype) || (zp && zp->dtype != y->dtype))
            return ib__error(IB_ERR_UNSUPPORTED, "%s: quantizing to %s is not supported",
                             ib__node_label(c->node), ib_dtype_name(y->dtype));
        if (!ib__dtype_is_float(x->dtype) && x->dtype != IB_DTYPE_INT32)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input of type %s cannot be quantized",
                             ib__node_label(c->node), ib_dtype_name(x->dtype));
        j.qmin = y->dtype == IB_DTYPE_UINT8 ? 0.0f : -128.0f;
        j.qmax = y->dtype == IB_DTYPE_UINT8 ? 255.0f : 127.0f;
        if (c->pool && n >= PAR_MIN)
            ib__parallel_for(c->pool, n, quantize_range, &j);
        else if (n > 0)
            quantize_range(&j, 0, n);
    } else {
        if (!is_q_dtype(x->dtype) && x->dtype != IB_DTYPE_INT32)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: dequantizing %s is not supported",
                             ib__node_label(c->node), ib_dtype_name(x->dtype));
        if (zp && zp->dtype != x->dtype)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: zero point is %s but the input is %s",
                             ib__node_label(c->node), ib_dtype_name(zp->dtype),
                             ib_dtype_name(x->dtype));
        if (!ib__dtype_is_float(y->dtype))
            return ib__error(IB_ERR_INTERNAL, "%s: output must be float",
                             ib__node_label(c->node));
        if (c->pool && n >= PAR_MIN)
            ib__parallel_for(c->pool, n, dequantize_range, &j);
        else if (n > 0)
            dequantize_range(&j, 0, n);
    }
    return IB_OK;
}

static ib_status run_quantize(ib__run_ctx *c) { return run_q_common(c, true); }
static ib_status run_dequantize(ib__run_ctx *c) { return run_q_common(c, false); }

/* ---- DynamicQuantizeLinear: uint8 with scale and zero point from the data range ---- */

static ib_status infer_dynamic_quantize(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    if (x->dtype != IB_DTYPE_UNDEFINED && x->dtype != IB_DTYPE_FLOAT32)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input must be float32, not %s",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    ib__set_output_like(c, 0, x);
    if (c->n_out > 0 && c->out[0]) c->out[0]->dtype = IB_DTYPE_UINT8;
    ib__set_output(c, 1, IB_DTYPE_FLOAT32, 0, NULL);
    ib__set_output(c, 2, IB_DTYPE_UINT8, 0, NULL);
    return IB_OK;
}

static ib_status run_dynamic_quantize(ib__run_ctx *c) {
    const ib_tensor *x = c->n_in > 0 ? c->in[0] : NULL;
    if (!x || x->dtype != IB_DTYPE_FLOAT32)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: needs a float32 input",
                         ib__node_label(c->node));
    int64_t n = ib_tensor_element_count(x);
    if (n < 0) return ib__error(IB_ERR_SHAPE, "%s: bad input shape", ib__node_label(c->node));
    ib_tensor *y = c->n_out > 0 ? c->out[0] : NULL;
    ib_tensor *ys = c->n_out > 1 ? c->out[1] : NULL;
    ib_tensor *yz = c->n_out > 2 ? c->out[2] : NULL;
    if ((y && (y->dtype != IB_DTYPE_UINT8 || ib_tensor_element_count(y) != n)) ||
        (ys && (ys->dtype != IB_DTYPE_FLOAT32 || ib_tensor_element_count(ys) != 1)) ||
        (yz && (yz->dtype != IB_DTYPE_UINT8 || ib_tensor_element_count(yz) != 1)))
        return ib__error(IB_ERR_INTERNAL, "%s: outputs have unexpected types or shapes",
                         ib__node_label(c->node));
    const float *xd = (const float *)x->data;
    /* the range always includes 0 so that 0 is exactly representable; NaNs are skipped */
    float lo = 0.0f, hi = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        lo = fminf(lo, xd[i]);
        hi = fmaxf(hi, xd[i]);
    }
    float scale = (hi - lo) / 255.0f;
    float zp = 0.0f;
    if (scale > 0.0f && isfinite(scale)) {
        zp = rintf((0.0f - lo) / scale);
        zp = zp < 0.0f ? 0.0f : zp > 255.0f ? 255.0f : zp;
    }
    if (ys) ((float *)ys->data)[0] = scale;
    if (yz) ((uint8_t *)yz->data)[0] = (uint8_t)zp;
    if (y) {
        uint8_t *yd = (uint8_t *)y->data;
        if (scale > 0.0f && isfinite(scale)) {
            for (int64_t i = 0; i < n; i++) {
                float q = rintf(xd[i] / scale) + zp;
                if (q != q) q = zp;
                yd[i] = (uint8_t)(q < 0.0f ? 0.0f : q > 255.0f ? 255.0f : q);
            }
        } else {
            memset(yd, (int)zp, (size_t)n); /* all zeros (or an unusable range) */
        }
    }
    return IB_OK;
}

const ib__op_def ib__ops_quantize[] = {
    {IB_OP_QUANTIZE_LINEAR, infer_quantize, run_quantize, false},
    {IB_OP_DEQUANTIZE_LINEAR, infer_dequantize, run_dequantize, false},
    {IB_OP_DYNAMIC_QUANTIZE_LINEAR, infer_dynamic_quantize, run_dynamic_quantize, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
