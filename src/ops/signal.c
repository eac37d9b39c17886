/* Signal processing ops: DFT, STFT, the Hann/Hamming/Blackman windows and
 * MelWeightMatrix — shape rules and reference kernels (computed in double). */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

#define PI 3.14159265358979323846

/* ---- Scalar inputs ------------------------------------------------------------------ */

/* Reads a single-element integer tensor (rank 0 or 1). */
static ib_status scalar_int(const ib__node *node, const char *name, const ib_tensor *t,
                            int64_t *out) {
    if (!ib__dtype_is_integer(t->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input '%s' must be an integer, not %s",
                         ib__node_label(node), name, ib_dtype_name(t->dtype));
    if (t->rank > 1 || ib_tensor_element_count(t) != 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input '%s' must hold a single value",
                         ib__node_label(node), name);
    *out = ib__load_i64(t->data, t->dtype, 0);
    return IB_OK;
}

static ib_status scalar_float(const ib__node *node, const char *name, const ib_tensor *t,
                              double *out) {
    if (!ib__dtype_is_float(t->dtype) && !ib__dtype_is_integer(t->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input '%s' must be numeric, not %s",
                         ib__node_label(node), name, ib_dtype_name(t->dtype));
    if (t->rank > 1 || ib_tensor_element_count(t) != 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input '%s' must hold a single value",
                         ib__node_label(node), name);
    *out = ib__load_f64(t->data, t->dtype, 0);
    return IB_OK;
}

static ib_status output_dtype_attr(const ib__node *node, ib_dtype *out) {
    int64_t v;
    IB_TRY(ib__attr_int(node, "output_datatype", IB_DTYPE_FLOAT32, &v));
    if (v < 0 || v > 100 || !ib__dtype_is_valid((int32_t)v) ||
        !(ib__dtype_is_float((ib_dtype)v) || ib__dtype_is_integer((ib_dtype)v)))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: output_datatype %lld is not a numeric type",
                         ib__node_label(node), (long long)v);
    *out = (ib_dtype)v;
    return IB_OK;
}

/* ---- Discrete Fourier transform of one line ---------------------------------------- */

/* In-place radix-2 FFT of n (a power of two) complex values; sign -1 forward, +1 inverse
 * (unscaled). */
static void fft_pow2(double *re, double *im, int64_t n, int sign) {
    for (int64_t i = 1, j = 0; i < n; i++) { /* bit reversal */
        int64_t bit = n >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            double t = re[i];
            re[i] = re[j];
            re[j] = t;
            t = im[i];
            im[i] = im[j];
            im[j] = t;
        }
    }
    for (int64_t len = 2; len <= n; len <<= 1) {
        int64_t half = len >> 1;
        for (int64_t k = 0; k < half; k++) {
            double ang = sign * 2.0 * PI * (double)k / (double)len;
            double wr = cos(ang), wi = sin(ang);
            for (int64_t s = 0; s < n; s += len) {
                int64_t a = s + k, b = a + half;
                double tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
    }
}

/* A transform of one length and direction, with its scratch: callers fill re/im with n
 * values and call dft_plan_run. Powers of two use the radix-2 FFT; other short lengths
 * the direct sum; other long lengths Bluestein's chirp-z convolution, so that a hostile
 * length costs O(n log n) rather than O(n^2). */
typedef struct dft_plan {
    int64_t n, m; /* m: Bluestein's power-of-two size, 0 when unused */
    int sign;
    double *mem;
    double *re, *im;
    double *t_re, *t_im; /* scratch: n (direct) or m (Bluestein) */
    double *c_re, *c_im; /* chirp exp(sign * i * pi * k^2 / n), n */
    double *b_re, *b_im; /* FFT of the conjugate chirp laid out for a circular convolution */
} dft_plan;

#define DIRECT_MAX 32

static bool dft_plan_init(dft_plan *p, int64_t n, int sign) {
    memset(p, 0, sizeof *p);
    p->n = n;
    p->sign = sign;
    bool pow2 = n > 0 && (n & (n - 1)) == 0;
    if (!pow2 && n > DIRECT_MAX) {
        p->m = 1;
        while (p->m < 2 * n - 1) p->m <<= 1;
    }
    int64_t t = p->m ? p->m : n;
    size_t total = (size_t)(2 * n + 2 * t + (p->m ? 2 * n + 2 * p->m : 0));
    p->mem = ib__aligned_alloc((total ? total : 1) * sizeof(double));
    if (!p->mem) return false;
    p->re = p->mem;
    p->im = p->re + n;
    p->t_re = p->im + n;
    p->t_im = p->t_re + t;
    if (!p->m) return true;
    p->c_re = p->t_im + t;
    p->c_im = p->c_re + n;
    p->b_re = p->c_im + n;
    p->b_im = p->b_re + p->m;
    int64_t q = 0, two_n = 2 * n; /* q = k^2 mod 2n, kept exact */
    for (int64_t k = 0; k < n; k++) {
        double ang = sign * PI * (double)q / (double)n;
        p->c_re[k] = cos(ang);
        p->c_im[k] = sin(ang);
        q = (q + 2 * k + 1) % two_n;
    }
    memset(p->b_re, 0, (size_t)p->m * 2 * sizeof(double));
    for (int64_t k = 0; k < n; k++) {
        p->b_re[k] = p->c_re[k];
        p->b_im[k] = -p->c_im[k];
        if (k > 0) {
            p->b_re[p->m - k] = p->c_re[k];
            p->b_im[p->m - k] = -p->c_im[k];
        }
    }
    fft_pow2(p->b_re, p->b_im, p->m, -1);
    return true;
}

static void dft_plan_free(dft_plan *p) { ib__aligned_free(p->mem); }

static void dft_plan_run(dft_plan *p) {
    int64_t n = p->n;
    double *re = p->re, *im = p->im;
    if (n <= 1) return;
    if (!p->m && (n & (n - 1)) == 0) {
        fft_pow2(re, im, n, p->sign);
        return;
    }
    if (!p->m) { /* direct sum with the exact angle 2*pi*(jk mod n)/n */
        for (int64_t k = 0; k < n; k++) {
            double sr = 0, si = 0;
            int64_t idx = 0;
            for (int64_t j = 0; j < n; j++) {
                double ang = p->sign * 2.0 * PI * (double)idx / (double)n;
                double wr = cos(ang), wi = sin(ang);
                sr += re[j] * wr - im[j] * wi;
                si += re[j] * wi + im[j] * wr;
                idx += k;
                if (idx >= n) idx -= n;
            }
            p->t_re[k] = sr;
            p->t_im[k] = si;
        }
        memcpy(re, p->t_re, (size_t)n * sizeof(double));
        memcpy(im, p->t_im, (size_t)n * sizeof(double));
        return;
    }
    /* X_k = c_k * sum_j (x_j c_j) conj(c_{k-j}): a circular convolution of size m. */
    int64_t m = p->m;
    memset(p->t_re, 0, (size_t)m * sizeof(double));
    memset(p->t_im, 0, (size_t)m * sizeof(double));
    for (int64_t k = 0; k < n; k++) {
        p->t_re[k] = re[k] * p->c_re[k] - im[k] * p->c_im[k];
        p->t_im[k] = re[k] * p->c_im[k] + im[k] * p->c_re[k];
    }
    fft_pow2(p->t_re, p->t_im, m, -1);
    for (int64_t k = 0; k < m; k++) {
        double a = p->t_re[k], b = p->t_im[k];
        p->t_re[k] = a * p->b_re[k] - b * p->b_im[k];
        p->t_im[k] = a * p->b_im[k] + b * p->b_re[k];
    }
    fft_pow2(p->t_re, p->t_im, m, 1);
    double inv_m = 1.0 / (double)m;
    for (int64_t k = 0; k < n; k++) {
        double a = p->t_re[k] * inv_m, b = p->t_im[k] * inv_m;
        re[k] = a * p->c_re[k] - b * p->c_im[k];
        im[k] = a * p->c_im[k] + b * p->c_re[k];
    }
}

/* ---- DFT ---------------------------------------------------------------------------- */

typedef struct dft_params {
    int32_t axis;
    bool inverse, onesided;
    int64_t length; /* -1: unknown at load time */
} dft_params;

static ib_status dft_params_make(const ib__node *node, int32_t rank, int64_t axis_dim,
                                 int64_t last_dim, const ib_tensor *len_t, bool len_unknown,
                                 dft_params *p) {
    int64_t axis, inverse, onesided;
    IB_TRY(ib__attr_int(node, "axis", 1, &axis));
    IB_TRY(ib__attr_int(node, "inverse", 0, &inverse));
    IB_TRY(ib__attr_int(node, "onesided", 0, &onesided));
    if (rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: input must have rank >= 2, got %d",
                         ib__node_label(node), rank);
    if (last_dim >= 0 && last_dim != 1 && last_dim != 2)
        return ib__error(IB_ERR_SHAPE, "%s: the last input dim must be 1 (real) or 2 (complex), got %lld",
                         ib__node_label(node), (long long)last_dim);
    if (axis < -(int64_t)rank || axis >= rank - 1 || axis == -1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: axis %lld is out of range for rank %d",
                         ib__node_label(node), (long long)axis, rank);
    p->axis = (int32_t)(axis < 0 ? axis + rank : axis);
    p->inverse = inverse != 0;
    p->onesided = onesided != 0;
    if (p->onesided && last_dim == 2)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: onesided output needs a real input",
                         ib__node_label(node));
    if (p->onesided && p->inverse)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: onesided inverse DFT is not supported",
                         ib__node_label(node));
    p->length = axis_dim;
    if (len_t) {
        IB_TRY(scalar_int(node, "dft_length", len_t, &p->length));
        if (p->length <= 0 || p->length > IB_MAX_ELEMENTS)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: dft_length %lld must be positive",
                             ib__node_label(node), (long long)p->length);
    } else if (len_unknown) {
        p->length = -1;
    }
    return IB_OK;
}

static ib_status infer_dft(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0], *len = ib__in(c, 1);
    if (x->dtype != IB_DTYPE_UNDEFINED && !ib__dtype_is_float(x->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input dtype %s is not a float type",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    if (x->rank < 0) {
        ib__set_output(c, 0, x->dtype, -1, NULL);
        return IB_OK;
    }
    dft_params p;
    int64_t axis_attr;
    IB_TRY(ib__attr_int(c->node, "axis", 1, &axis_attr));
    int64_t axis_dim = -1;
    if (x->rank >= 2 && axis_attr >= -(int64_t)x->rank && axis_attr < x->rank)
        axis_dim = x->dims[axis_attr < 0 ? axis_attr + x->rank : axis_attr];
    IB_TRY(dft_params_make(c->node, x->rank, axis_dim, x->dims[x->rank - 1],
                           len ? len->constant : NULL, len && !len->constant, &p));
    int64_t dims[IB_MAX_RANK];
    memcpy(dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
    dims[x->rank - 1] = 2;
    dims[p.axis] = (p.length < 0) ? -1 : p.onesided ? p.length / 2 + 1 : p.length;
    ib__set_output(c, 0, x->dtype, x->rank, dims);
    if (c->n_out > 0 && c->out[0])
        for (int32_t d = 0; d < x->rank - 1; d++)
            if (d != p.axis) c->out[0]->dim_param[d] = x->dim_param[d];
    return IB_OK;
}

typedef struct dft_job {
    const ib_tensor *x;
    ib_tensor *y;
    int64_t in_n, n, out_n; /* input length on the axis, transform length, output length */
    int64_t inner;          /* elements (excluding the complex dim) after the axis */
    int64_t comps;          /* 1 real, 2 complex */
    bool inverse;
    bool failed;
} dft_job;

static void dft_range(void *ctx, int64_t begin, int64_t end) {
    dft_job *j = ctx;
    dft_plan plan;
    if (!dft_plan_init(&plan, j->n, j->inverse ? 1 : -1)) {
        j->failed = true;
        return;
    }
    double *re = plan.re, *im = plan.im;
    int64_t copy = j->in_n < j->n ? j->in_n : j->n;
    double scale = j->inverse ? 1.0 / (double)j->n : 1.0;
    for (int64_t o = begin; o < end; o++) {
        int64_t outer = o / j->inner, in = o % j->inner;
        int64_t xbase = (outer * j->in_n * j->inner + in) * j->comps;
        for (int64_t k = 0; k < j->n; k++) {
            re[k] = im[k] = 0.0;
            if (k >= copy) continue;
            int64_t at = xbase + k * j->inner * j->comps;
            re[k] = ib__load_f64(j->x->data, j->x->dtype, at);
            if (j->comps == 2) im[k] = ib__load_f64(j->x->data, j->x->dtype, at + 1);
        }
        dft_plan_run(&plan);
        int64_t ybase = (outer * j->out_n * j->inner + in) * 2;
        for (int64_t k = 0; k < j->out_n; k++) {
            int64_t at = ybase + k * j->inner * 2;
            ib__store_f64(j->y->data, j->y->dtype, at, re[k] * scale);
            ib__store_f64(j->y->data, j->y->dtype, at + 1, im[k] * scale);
        }
    }
    dft_plan_free(&plan);
}

static ib_status run_dft(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0];
    const ib_tensor *len = c->n_in > 1 ? c->in[1] : NULL;
    dft_params p;
    int64_t axis_attr;
    IB_TRY(ib__attr_int(c->node, "axis", 1, &axis_attr));
    int64_t axis_dim = (x->rank >= 2 && axis_attr >= -(int64_t)x->rank && axis_attr < x->rank)
                           ? x->shape[axis_attr < 0 ? axis_attr + x->rank : axis_attr]
                           : 0;
    IB_TRY(dft_params_make(c->node, x->rank, axis_dim, x->shape[x->rank - 1], len, false, &p));
    dft_job j = {.x = x, .y = c->out[0], .in_n = x->shape[p.axis], .n = p.length,
                 .comps = x->shape[x->rank - 1], .inverse = p.inverse};
    j.out_n = p.onesided ? p.length / 2 + 1 : p.length;
    int64_t outer = 1;
    j.inner = 1;
    for (int32_t d = 0; d < p.axis; d++) outer *= x->shape[d];
    for (int32_t d = p.axis + 1; d < x->rank - 1; d++) j.inner *= x->shape[d];
    if (j.n == 0) return IB_OK;
    ib__parallel_for(c->pool, outer * j.inner, dft_range, &j);
    if (j.failed)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    return IB_OK;
}

/* ---- STFT --------------------------------------------------------------------------- */

typedef struct stft_params {
    int64_t step, n_fft, frames, bins;
    bool onesided;
} stft_params;

/* Frame count and bins from the signal length and the known scalars; -1 where unknown. */
static ib_status stft_params_make(const ib__node *node, int64_t sig_len, int64_t comps,
                                  const ib_tensor *step_t, int64_t win_len,
                                  const ib_tensor *len_t, bool len_present, stft_params *p) {
    int64_t onesided;
    IB_TRY(ib__attr_int(node, "onesided", 1, &onesided));
    p->onesided = onesided != 0;
    if (p->onesided && comps == 2)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: onesided output needs a real signal",
                         ib__node_label(node));
    p->step = -1;
    if (step_t) {
        IB_TRY(scalar_int(node, "frame_step", step_t, &p->step));
        if (p->step <= 0)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: frame_step must be positive, got %lld",
                             ib__node_label(node), (long long)p->step);
    }
    p->n_fft = -1;
    if (len_t) {
        IB_TRY(scalar_int(node, "frame_length", len_t, &p->n_fft));
        if (p->n_fft <= 0 || p->n_fft > IB_MAX_ELEMENTS)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: frame_length must be positive, got %lld",
                             ib__node_label(node), (long long)p->n_fft);
        if (win_len >= 0 && win_len != p->n_fft)
            return ib__error(IB_ERR_SHAPE, "%s: window length %lld differs from frame_length %lld",
                             ib__node_label(node), (long long)win_len, (long long)p->n_fft);
    } else if (!len_present) {
        p->n_fft = win_len;
    }
    p->frames = -1;
    p->bins = -1;
    if (p->n_fft >= 0) p->bins = p->onesided ? p->n_fft / 2 + 1 : p->n_fft;
    if (p->n_fft >= 0 && sig_len >= 0 && p->step > 0) {
        if (p->n_fft > sig_len)
            return ib__error(IB_ERR_SHAPE, "%s: frame length %lld exceeds the signal length %lld",
                             ib__node_label(node), (long long)p->n_fft, (long long)sig_len);
        p->frames = 1 + (sig_len - p->n_fft) / p->step;
    }
    return IB_OK;
}

static ib_status infer_stft(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *x = c->in[0], *step = c->in[1], *win = ib__in(c, 2), *len = ib__in(c, 3);
    if (x->dtype != IB_DTYPE_UNDEFINED && !ib__dtype_is_float(x->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: signal dtype %s is not a float type",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    if (x->rank >= 0 && x->rank != 3)
        return ib__error(IB_ERR_SHAPE, "%s: signal must have rank 3 [batch, length, 1|2], got %d",
                         ib__node_label(c->node), x->rank);
    if (win && win->rank >= 0 && win->rank != 1)
        return ib__error(IB_ERR_SHAPE, "%s: window must be 1-D, got rank %d",
                         ib__node_label(c->node), win->rank);
    if (!win && !len)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: needs a window or a frame_length",
                         ib__node_label(c->node));
    int64_t win_len = (win && win->rank == 1) ? win->dims[0] : -1;
    stft_params p;
    IB_TRY(stft_params_make(c->node, x->rank == 3 ? x->dims[1] : -1,
                            x->rank == 3 ? x->dims[2] : -1, step->constant, win_len,
                            len ? len->constant : NULL, len != NULL, &p));
    int64_t dims[4] = {x->rank == 3 ? x->dims[0] : -1, p.frames, p.bins, 2};
    ib__set_output(c, 0, x->dtype, 4, dims);
    if (x->rank == 3 && c->n_out > 0 && c->out[0]) c->out[0]->dim_param[0] = x->dim_param[0];
    return IB_OK;
}

static ib_status run_stft(ib__run_ctx *c) {
    const ib_tensor *x = c->in[0], *step = c->in[1];
    const ib_tensor *win = c->n_in > 2 ? c->in[2] : NULL, *len = c->n_in > 3 ? c->in[3] : NULL;
    if (x->rank != 3 || (x->shape[2] != 1 && x->shape[2] != 2))
        return ib__error(IB_ERR_SHAPE, "%s: signal must have shape [batch, length, 1|2]",
                         ib__node_label(c->node));
    if (win && win->rank != 1)
        return ib__error(IB_ERR_SHAPE, "%s: window must be 1-D", ib__node_label(c->node));
    if (!win && !len)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: needs a window or a frame_length",
                         ib__node_label(c->node));
    stft_params p;
    IB_TRY(stft_params_make(c->node, x->shape[1], x->shape[2], step, win ? win->shape[0] : -1,
                            len, len != NULL, &p));
    ib_tensor *y = c->out[0];
    int64_t batch = x->shape[0], sig = x->shape[1], comps = x->shape[2], n = p.n_fft;
    dft_plan plan;
    if (!dft_plan_init(&plan, n, -1))
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    double *re = plan.re, *im = plan.im;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t f = 0; f < p.frames; f++) {
            for (int64_t k = 0; k < n; k++) {
                int64_t at = (b * sig + f * p.step + k) * comps;
                double w = win ? ib__load_f64(win->data, win->dtype, k) : 1.0;
                re[k] = ib__load_f64(x->data, x->dtype, at) * w;
                im[k] = comps == 2 ? ib__load_f64(x->data, x->dtype, at + 1) * w : 0.0;
            }
            dft_plan_run(&plan);
            for (int64_t k = 0; k < p.bins; k++) {
                int64_t at = ((b * p.frames + f) * p.bins + k) * 2;
                ib__store_f64(y->data, y->dtype, at, re[k]);
                ib__store_f64(y->data, y->dtype, at + 1, im[k]);
            }
        }
    dft_plan_free(&plan);
    return IB_OK;
}

/* ---- Windows ------------------------------------------------------------------------ */

static ib_status window_size(const ib__node *node, const ib_tensor *t, int64_t *size) {
    IB_TRY(scalar_int(node, "size", t, size));
    if (*size < 0 || *size > IB_MAX_ELEMENTS)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: window size %lld is out of range",
                         ib__node_label(node), (long long)*size);
    return IB_OK;
}

static ib_status infer_window(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    ib_dtype dt;
    IB_TRY(output_dtype_attr(c->node, &dt));
    int64_t size = -1;
    if (c->in[0]->constant) IB_TRY(window_size(c->node, c->in[0]->constant, &size));
    ib__set_output(c, 0, dt, 1, &size);
    return IB_OK;
}

static ib_status run_window(ib__run_ctx *c) {
    int64_t size, periodic;
    IB_TRY(window_size(c->node, c->in[0], &size));
    IB_TRY(ib__attr_int(c->node, "periodic", 1, &periodic));
    ib_tensor *y = c->out[0];
    double n = (double)(periodic ? size : size - 1);
    for (int64_t k = 0; k < size; k++) {
        double t = n > 0 ? 2.0 * PI * (double)k / n : 0.0, v;
        switch (c->node->op) {
        case IB_OP_HANN_WINDOW: v = 0.5 - 0.5 * cos(t); break;
        case IB_OP_HAMMING_WINDOW: v = 25.0 / 46.0 - (21.0 / 46.0) * cos(t); break;
        default: v = 0.42 - 0.5 * cos(t) + 0.08 * cos(2.0 * t); break;
        }
        ib__store_f64(y->data, y->dtype, k, v);
    }
    return IB_OK;
}

/* ---- MelWeightMatrix ---------------------------------------------------------------- */

static ib_status infer_mel(ib__infer_ctx *c) {
    for (int32_t i = 0; i < 5; i++) IB_TRY(ib__require_input(c, i));
    ib_dtype dt;
    IB_TRY(output_dtype_attr(c->node, &dt));
    int64_t dims[2] = {-1, -1};
    if (c->in[1]->constant) {
        int64_t dft_len;
        IB_TRY(scalar_int(c->node, "dft_length", c->in[1]->constant, &dft_len));
        if (dft_len <= 0 || dft_len > IB_MAX_ELEMENTS)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: dft_length %lld must be positive",
                             ib__node_label(c->node), (long long)dft_len);
        dims[0] = dft_len / 2 + 1;
    }
    if (c->in[0]->constant) {
        IB_TRY(scalar_int(c->node, "num_mel_bins", c->in[0]->constant, &dims[1]));
        if (dims[1] <= 0 || dims[1] > IB_MAX_ELEMENTS)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: num_mel_bins %lld must be positive",
                             ib__node_label(c->node), (long long)dims[1]);
    }
    ib__set_output(c, 0, dt, 2, dims);
    return IB_OK;
}

static ib_status run_mel(ib__run_ctx *c) {
    const ib__node *node = c->node;
    int64_t n_mel = 0, dft_len = 0, rate = 0;
    double lo = 0, hi = 0;
    IB_TRY(scalar_int(node, "num_mel_bins", c->in[0], &n_mel));
    IB_TRY(scalar_int(node, "dft_length", c->in[1], &dft_len));
    IB_TRY(scalar_int(node, "sample_rate", c->in[2], &rate));
    IB_TRY(scalar_float(node, "lower_edge_hertz", c->in[3], &lo));
    IB_TRY(scalar_float(node, "upper_edge_hertz", c->in[4], &hi));
    if (n_mel <= 0 || dft_len <= 0 || rate <= 0 || !(lo >= 0) || !(hi > lo))
        return ib__error(IB_ERR_INVALID_MODEL,
                         "%s: needs num_mel_bins, dft_length, sample_rate > 0 and "
                         "0 <= lower_edge_hertz < upper_edge_hertz",
                         ib__node_label(node));
    ib_tensor *y = c->out[0];
    int64_t n_spec = dft_len / 2 + 1;
    if (y->rank != 2 || y->shape[0] != n_spec || y->shape[1] != n_mel)
        return ib__error(IB_ERR_INTERNAL, "%s: output shape mismatch", ib__node_label(node));
    int64_t *bins = ib__aligned_alloc((size_t)(n_mel + 2) * sizeof(int64_t));
    if (!bins) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(node));
    /* Triangles between mel-spaced edges mapped onto DFT bins; the edges are spaced by
     * (high - low) / (num_mel_bins + 2), as the reference does. */
    double lo_mel = 2595.0 * log10(1.0 + lo / 700.0), hi_mel = 2595.0 * log10(1.0 + hi / 700.0);
    double step = (hi_mel - lo_mel) / (double)(n_mel + 2);
    for (int64_t i = 0; i < n_mel + 2; i++) {
        double hz = 700.0 * (pow(10.0, ((double)i * step + lo_mel) / 2595.0) - 1.0);
        double b = floor((double)(dft_len + 1) * hz / (double)rate);
        bins[i] = b < 0 ? 0 : b > (double)(n_spec - 1) ? n_spec - 1 : (int64_t)b;
    }
    for (int64_t i = 0; i < n_mel; i++) {
        int64_t left = bins[i], center = bins[i + 1], right = bins[i + 2];
        if (center == left) {
            ib__store_f64(y->data, y->dtype, center * n_mel + i, 1.0);
        } else {
            for (int64_t k = left; k <= center; k++)
                ib__store_f64(y->data, y->dtype, k * n_mel + i,
                              (double)(k - left) / (double)(center - left));
        }
        if (right > center)
            for (int64_t k = center; k < right; k++)
                ib__store_f64(y->data, y->dtype, k * n_mel + i,
                              (double)(right - k) / (double)(right - center));
    }
    ib__aligned_free(bins);
    return IB_OK;
}

const ib__op_def ib__ops_signal[] = {
    {IB_OP_DFT, infer_dft, run_dft},
    {IB_OP_STFT, infer_stft, run_stft},
    {IB_OP_HANN_WINDOW, infer_window, run_window},
    {IB_OP_HAMMING_WINDOW, infer_window, run_window},
    {IB_OP_BLACKMAN_WINDOW, infer_window, run_window},
    {IB_OP_MEL_WEIGHT_MATRIX, infer_mel, run_mel},
    {IB_OP_UNKNOWN, NULL, NULL},
};
