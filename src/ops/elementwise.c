/* Element-wise unary ops (math, activations, Clip, IsNaN/IsInf, Not) and Cast/CastLike:
 * shape rules and reference kernels, with branch-free float32 loops per op. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "ops/ops.h"

/* Work below this many elements runs on the calling thread: waking the pool costs more
 * than the loop. Transcendental ops are worth splitting sooner than cheap ones. */
#define PAR_MIN_CHEAP ((int64_t)1 << 16)
#define PAR_MIN_COSTLY ((int64_t)1 << 13)

typedef enum uop {
    U_ABS, U_NEG, U_FLOOR, U_CEIL, U_ROUND, U_SQRT, U_RECIPROCAL, U_EXP, U_LOG,
    U_SIN, U_COS, U_TAN, U_ASIN, U_ACOS, U_ATAN, U_SINH, U_COSH, U_ASINH, U_ACOSH,
    U_ATANH, U_SIGN, U_ERF, U_ISNAN, U_ISINF, U_NOT, U_RELU, U_LEAKY_RELU, U_ELU,
    U_SELU, U_CELU, U_SIGMOID, U_HARD_SIGMOID, U_HARD_SWISH, U_TANH, U_SOFTPLUS,
    U_SOFTSIGN, U_MISH, U_GELU, U_THRESHOLDED_RELU, U_SHRINK, U_CLIP,
} uop;

/* Which input dtypes an op accepts. */
typedef enum uclass {
    C_FLOAT,   /* float16, bfloat16, float32, float64 */
    C_NUMERIC, /* any int or float */
    C_BOOL,
} uclass;

typedef struct uinfo {
    ib__op_id op;
    uop u;
    uclass cls;
    bool bool_out; /* IsNaN, IsInf */
    bool costly;
} uinfo;

static const uinfo k_unary[] = {
    {IB_OP_ABS, U_ABS, C_NUMERIC, false, false},
    {IB_OP_NEG, U_NEG, C_NUMERIC, false, false},
    {IB_OP_FLOOR, U_FLOOR, C_FLOAT, false, false},
    {IB_OP_CEIL, U_CEIL, C_FLOAT, false, false},
    {IB_OP_ROUND, U_ROUND, C_FLOAT, false, false},
    {IB_OP_SQRT, U_SQRT, C_FLOAT, false, false},
    {IB_OP_RECIPROCAL, U_RECIPROCAL, C_FLOAT, false, false},
    {IB_OP_EXP, U_EXP, C_FLOAT, false, true},
    {IB_OP_LOG, U_LOG, C_FLOAT, false, true},
    {IB_OP_SIN, U_SIN, C_FLOAT, false, true},
    {IB_OP_COS, U_COS, C_FLOAT, false, true},
    {IB_OP_TAN, U_TAN, C_FLOAT, false, true},
    {IB_OP_ASIN, U_ASIN, C_FLOAT, false, true},
    {IB_OP_ACOS, U_ACOS, C_FLOAT, false, true},
    {IB_OP_ATAN, U_ATAN, C_FLOAT, false, true},
    {IB_OP_SINH, U_SINH, C_FLOAT, false, true},
    {IB_OP_COSH, U_COSH, C_FLOAT, false, true},
    {IB_OP_ASINH, U_ASINH, C_FLOAT, false, true},
    {IB_OP_ACOSH, U_ACOSH, C_FLOAT, false, true},
    {IB_OP_ATANH, U_ATANH, C_FLOAT, false, true},
    {IB_OP_SIGN, U_SIGN, C_NUMERIC, false, false},
    {IB_OP_ERF, U_ERF, C_FLOAT, false, true},
    {IB_OP_IS_NA_N, U_ISNAN, C_FLOAT, true, false},
    {IB_OP_IS_INF, U_ISINF, C_FLOAT, true, false},
    {IB_OP_NOT, U_NOT, C_BOOL, false, false},
    {IB_OP_RELU, U_RELU, C_NUMERIC, false, false},
    {IB_OP_LEAKY_RELU, U_LEAKY_RELU, C_FLOAT, false, false},
    {IB_OP_ELU, U_ELU, C_FLOAT, false, true},
    {IB_OP_SELU, U_SELU, C_FLOAT, false, true},
    {IB_OP_CELU, U_CELU, C_FLOAT, false, true},
    {IB_OP_SIGMOID, U_SIGMOID, C_FLOAT, false, true},
    {IB_OP_HARD_SIGMOID, U_HARD_SIGMOID, C_FLOAT, false, false},
    {IB_OP_HARD_SWISH, U_HARD_SWISH, C_FLOAT, false, false},
    {IB_OP_TANH, U_TANH, C_FLOAT, false, true},
    {IB_OP_SOFTPLUS, U_SOFTPLUS, C_FLOAT, false, true},
    {IB_OP_SOFTSIGN, U_SOFTSIGN, C_FLOAT, false, false},
    {IB_OP_MISH, U_MISH, C_FLOAT, false, true},
    {IB_OP_GELU, U_GELU, C_FLOAT, false, true},
    {IB_OP_THRESHOLDED_RELU, U_THRESHOLDED_RELU, C_FLOAT, false, false},
    {IB_OP_SHRINK, U_SHRINK, C_NUMERIC, false, false},
    {IB_OP_CLIP, U_CLIP, C_NUMERIC, false, false},
};

static const uinfo *unary_info(ib__op_id op) {
    for (size_t i = 0; i < sizeof k_unary / sizeof k_unary[0]; i++)
        if (k_unary[i].op == op) return &k_unary[i];
    return NULL;
}

/* Attribute values (and Clip bounds) resolved once per call. */
typedef struct uparams {
    float alpha, beta, gamma, lambd, bias;
    bool detect_neg, detect_pos;
    bool gelu_tanh;
    /* Clip bounds: float form for float dtypes, integer form for integer dtypes. */
    double lo, hi;
    int64_t ilo, ihi;
    uint64_t ulo, uhi;
} uparams;

static bool class_accepts(uclass cls, ib_dtype dt) {
    switch (cls) {
    case C_FLOAT: return ib__dtype_is_float(dt);
    case C_NUMERIC: return ib__dtype_is_float(dt) || ib__dtype_is_integer(dt);
    case C_BOOL: return dt == IB_DTYPE_BOOL;
    }
    return false;
}

static ib_status read_params(const ib__node *node, const uinfo *u, uparams *p) {
    memset(p, 0, sizeof *p);
    switch (u->u) {
    case U_LEAKY_RELU: return ib__attr_float(node, "alpha", 0.01f, &p->alpha);
    case U_ELU:
    case U_CELU: return ib__attr_float(node, "alpha", 1.0f, &p->alpha);
    case U_THRESHOLDED_RELU: return ib__attr_float(node, "alpha", 1.0f, &p->alpha);
    case U_SELU:
        IB_TRY(ib__attr_float(node, "alpha", 1.67326319217681884765625f, &p->alpha));
        return ib__attr_float(node, "gamma", 1.05070102214813232421875f, &p->gamma);
    case U_HARD_SIGMOID:
        IB_TRY(ib__attr_float(node, "alpha", 0.2f, &p->alpha));
        return ib__attr_float(node, "beta", 0.5f, &p->beta);
    case U_SHRINK:
        IB_TRY(ib__attr_float(node, "lambd", 0.5f, &p->lambd));
        return ib__attr_float(node, "bias", 0.0f, &p->bias);
    case U_ISINF: {
        int64_t neg, pos;
        IB_TRY(ib__attr_int(node, "detect_negative", 1, &neg));
        IB_TRY(ib__attr_int(node, "detect_positive", 1, &pos));
        p->detect_neg = neg != 0;
        p->detect_pos = pos != 0;
        return IB_OK;
    }
    case U_GELU: {
        const char *approx;
        IB_TRY(ib__attr_string(node, "approximate", "none", &approx));
        if (strcmp(approx, "tanh") == 0) {
            p->gelu_tanh = true;
        } else if (strcmp(approx, "none") != 0) {
            return ib__error(IB_ERR_INVALID_MODEL,
                             "%s: attribute 'approximate' must be \"none\" or \"tanh\", not \"%s\"",
                             ib__node_label(node), approx);
        }
        return IB_OK;
    }
    default: return IB_OK;
    }
}

/* ---- float32 kernels: one loop per op so each vectorises (Softplus, Log and the
 * trigonometric ops still call libm) ----------------------------------------------------- */

/* Branch-free float select. A float ternary whose arms do arithmetic is not if-converted
 * by GCC under the default -ftrapping-math, so loops using it would stay scalar; the
 * bitwise blend vectorises and keeps NaN and -0 exactly. */
static inline float select_f32(bool c, float a, float b) {
    uint32_t m = 0u - (uint32_t)c, ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    uint32_t r = (ua & m) | (ub & ~m);
    float f;
    memcpy(&f, &r, 4);
    return f;
}

/* ---- branch-free float32 transcendentals ----------------------------------------------
 * libm calls keep a loop scalar; these are written with selects and integer exponent
 * arithmetic only, so activation loops vectorise. Each is checked against double libm
 * in tests/test_ops_elementwise.c (relative error a few 1e-7, far inside ONNX's 1e-3). */

static inline float bits_to_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* e^x: x = n ln2 + r with |r| <= ln2/2, e^r by its degree-7 Taylor polynomial, 2^n applied
 * in two halves so overflow gives inf and underflow degrades through subnormals to 0. */
static inline float exp_f32(float x) {
    /* clamps as selects: a ternary with constant arms lets GCC specialise the whole
     * body per branch, and the loop is no longer if-converted */
    float xc = select_f32(x < -104.0f, -104.0f, x);
    xc = select_f32(xc > 88.8f, 88.8f, xc);
    xc = select_f32(xc != xc, 0.0f, xc); /* NaN: computed on 0, replaced by x below */
    /* round to nearest integer: adding 1.5*2^23 pushes the fraction bits out */
    float k = xc * 1.44269504088896341f + 12582912.0f;
    k -= 12582912.0f;
    float r = xc - k * 0.693359375f;  /* ln2 split: the high part is exact in k * hi */
    r = r - k * -2.12194440e-4f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t n = (int32_t)k;
    int32_t n1 = n / 2, n2 = n - n1;
    float s1 = bits_to_f32((uint32_t)(n1 + 127) << 23);
    float s2 = bits_to_f32((uint32_t)(n2 + 127) << 23);
    float y = p * s1 * s2;
    return select_f32(x != x, x, y);
}

/* e^x - 1 without cancellation near 0 */
static inline float expm1_f32(float x) {
    float t = 1.0f / 720.0f; /* Taylor to x^6 below |x| = 0.25: error < 1e-8 relative */
    t = t * x + 1.0f / 120.0f;
    t = t * x + 1.0f / 24.0f;
    t = t * x + 1.0f / 6.0f;
    t = t * x + 0.5f;
    t = t * x * x + x;
    return select_f32(fabsf(x) < 0.25f, t, exp_f32(x) - 1.0f);
}

/* erfc(a) for a >= 0.5 (Chebyshev fit from Numerical Recipes, relative error 1.2e-7) */
static inline float erfc_big_f32(float a) {
    float t = 1.0f / (1.0f + 0.5f * a);
    float q = 0.17087277f;
    q = q * t - 0.82215223f;
    q = q * t + 1.48851587f;
    q = q * t - 1.13520398f;
    q = q * t + 0.27886807f;
    q = q * t - 0.18628806f;
    q = q * t + 0.09678418f;
    q = q * t + 0.37409196f;
    q = q * t + 1.00002368f;
    q = q * t - 1.26551223f;
    return t * exp_f32(q - a * a);
}

/* erf(x) for |x| < 0.5: 2/sqrt(pi) * sum (-1)^k x^(2k+1) / (k! (2k+1)), to x^15 */
static inline float erf_small_f32(float x) {
    float z = x * x;
    float q = -1.0f / 75600.0f;
    q = q * z + 1.0f / 9360.0f;
    q = q * z - 1.0f / 1320.0f;
    q = q * z + 1.0f / 216.0f;
    q = q * z - 1.0f / 42.0f;
    q = q * z + 1.0f / 10.0f;
    q = q * z - 1.0f / 3.0f;
    q = q * z + 1.0f;
    return 1.12837916709551257f * x * q;
}

static inline float erf_f32(float x) {
    float a = fabsf(x);
    float big = 1.0f - erfc_big_f32(select_f32(a < 0.5f, 0.5f, a));
    big = select_f32(x < 0.0f, -big, big);
    return select_f32(a < 0.5f, erf_small_f32(x), big);
}

/* 1 + erf(x), accurate also where erf(x) is close to -1 (GELU's negative tail) */
static inline float one_plus_erf_f32(float x) {
    float a = fabsf(x);
    float c = erfc_big_f32(select_f32(a < 0.5f, 0.5f, a));
    float big = select_f32(x < 0.0f, c, 2.0f - c);
    return select_f32(a < 0.5f, 1.0f + erf_small_f32(x), big);
}

static inline float tanh_f32(float x) {
    float a = fabsf(x);
    /* |x| < 0.3: odd Taylor series to x^11 (error < 1e-9); else 1 - 2 / (e^2|x| + 1) */
    float z = x * x;
    float q = -1382.0f / 155925.0f;
    q = q * z + 62.0f / 2835.0f;
    q = q * z - 17.0f / 315.0f;
    q = q * z + 2.0f / 15.0f;
    q = q * z - 1.0f / 3.0f;
    float small = q * z * x + x;
    float e = exp_f32(2.0f * select_f32(a > 10.0f, 10.0f, a)); /* tanh(10) is 1 in float */
    float big = 1.0f - 2.0f / (e + 1.0f);
    big = select_f32(x < 0.0f, -big, big);
    return select_f32(a < 0.3f, small, select_f32(x != x, x, big));
}

static inline float sigmoid_f32(float x) {
    float e = exp_f32(-fabsf(x)); /* never overflows */
    float r = 1.0f / (1.0f + e);
    return select_f32(x >= 0.0f, r, e * r);
}

/* x * tanh(softplus(x)) = x * n (n + 2) / (n (n + 2) + 2) with n = e^x */
static inline float mish_f32(float x) {
    float n = exp_f32(select_f32(x > 20.0f, 20.0f, x));
    float m = n * (n + 2.0f);
    float t = m / (m + 2.0f);
    return x * select_f32(x > 20.0f, 1.0f, t);
}

static float softplus_f32(float x) {
    /* log(1 + e^x) without overflow for large x and without losing small results */
    return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x));
}

static void unary_f32(uop op, const uparams *p, const float *x, void *out, int64_t n) {
    float *y = (float *)out;
    uint8_t *yb = (uint8_t *)out;
    switch (op) {
    case U_ABS: for (int64_t i = 0; i < n; i++) y[i] = fabsf(x[i]); break;
    case U_NEG: for (int64_t i = 0; i < n; i++) y[i] = -x[i]; break;
    case U_FLOOR: for (int64_t i = 0; i < n; i++) y[i] = floorf(x[i]); break;
    case U_CEIL: for (int64_t i = 0; i < n; i++) y[i] = ceilf(x[i]); break;
    /* rintf rounds half to even in the default rounding mode, as ONNX Round requires */
    case U_ROUND: for (int64_t i = 0; i < n; i++) y[i] = rintf(x[i]); break;
    case U_SQRT: for (int64_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); break;
    case U_RECIPROCAL: for (int64_t i = 0; i < n; i++) y[i] = 1.0f / x[i]; break;
    case U_EXP: for (int64_t i = 0; i < n; i++) y[i] = exp_f32(x[i]); break;
    case U_LOG: for (int64_t i = 0; i < n; i++) y[i] = logf(x[i]); break;
    case U_SIN: for (int64_t i = 0; i < n; i++) y[i] = sinf(x[i]); break;
    case U_COS: for (int64_t i = 0; i < n; i++) y[i] = cosf(x[i]); break;
    case U_TAN: for (int64_t i = 0; i < n; i++) y[i] = tanf(x[i]); break;
    case U_ASIN: for (int64_t i = 0; i < n; i++) y[i] = asinf(x[i]); break;
    case U_ACOS: for (int64_t i = 0; i < n; i++) y[i] = acosf(x[i]); break;
    case U_ATAN: for (int64_t i = 0; i < n; i++) y[i] = atanf(x[i]); break;
    case U_SINH: for (int64_t i = 0; i < n; i++) y[i] = sinhf(x[i]); break;
    case U_COSH: for (int64_t i = 0; i < n; i++) y[i] = coshf(x[i]); break;
    case U_ASINH: for (int64_t i = 0; i < n; i++) y[i] = asinhf(x[i]); break;
    case U_ACOSH: for (int64_t i = 0; i < n; i++) y[i] = acoshf(x[i]); break;
    case U_ATANH: for (int64_t i = 0; i < n; i++) y[i] = atanhf(x[i]); break;
    case U_SIGN:
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = select_f32(v > 0.0f, 1.0f, select_f32(v < 0.0f, -1.0f, v)); /* keeps ±0, NaN */
        }
        break;
    case U_ERF: for (int64_t i = 0; i < n; i++) y[i] = erf_f32(x[i]); break;
    case U_ISNAN: for (int64_t i = 0; i < n; i++) yb[i] = (uint8_t)(x[i] != x[i]); break;
    case U_ISINF:
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            yb[i] = (uint8_t)((p->detect_pos && v == INFINITY) || (p->detect_neg && v == -INFINITY));
        }
        break;
    case U_RELU: for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f; break;
    case U_LEAKY_RELU: {
        float a = p->alpha;
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = v * select_f32(v < 0.0f, a, 1.0f);
        }
        break;
    }
    case U_ELU: {
        float a = p->alpha;
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = select_f32(v >= 0.0f, v, a * expm1_f32(v));
        }
        break;
    }
    case U_SELU: {
        float a = p->alpha, g = p->gamma;
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = g * select_f32(v > 0.0f, v, a * expm1_f32(v));
        }
        break;
    }
    case U_CELU: {
        float a = p->alpha;
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = select_f32(v > 0.0f, v, a * expm1_f32(v / a));
        }
        break;
    }
    case U_SIGMOID: for (int64_t i = 0; i < n; i++) y[i] = sigmoid_f32(x[i]); break;
    case U_HARD_SIGMOID: {
        float a = p->alpha, b = p->beta;
        for (int64_t i = 0; i < n; i++) {
            float v = a * x[i] + b;
            v = v < 0.0f ? 0.0f : v; /* NaN stays NaN, as with numpy's clip */
            y[i] = v > 1.0f ? 1.0f : v;
        }
        break;
    }
    case U_HARD_SWISH:
        for (int64_t i = 0; i < n; i++) {
            float v = x[i], g = v * (1.0f / 6.0f) + 0.5f;
            g = select_f32(g < 0.0f, 0.0f, g);
            y[i] = v * select_f32(g > 1.0f, 1.0f, g);
        }
        break;
    case U_TANH: for (int64_t i = 0; i < n; i++) y[i] = tanh_f32(x[i]); break;
    case U_SOFTPLUS: for (int64_t i = 0; i < n; i++) y[i] = softplus_f32(x[i]); break;
    case U_SOFTSIGN: for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + fabsf(x[i])); break;
    case U_MISH:
        for (int64_t i = 0; i < n; i++) y[i] = mish_f32(x[i]);
        break;
    case U_GELU:
        if (p->gelu_tanh) {
            /* 0.5 (1 + tanh(u)) == sigmoid(2u): no cancellation in the negative tail */
            const float k2 = 2.0f * 0.7978845608028654f; /* 2 sqrt(2/pi) */
            for (int64_t i = 0; i < n; i++) {
                float v = x[i];
                y[i] = v * sigmoid_f32(k2 * (v + 0.044715f * v * v * v));
            }
        } else {
            for (int64_t i = 0; i < n; i++)
                y[i] = 0.5f * x[i] * one_plus_erf_f32(x[i] * 0.70710678118654752f);
        }
        break;
    case U_THRESHOLDED_RELU: {
        float a = p->alpha;
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > a ? x[i] : 0.0f;
        break;
    }
    case U_SHRINK: {
        float l = p->lambd, b = p->bias;
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            y[i] = select_f32(v < -l, v + b, select_f32(v > l, v - b, 0.0f));
        }
        break;
    }
    case U_CLIP: {
        float lo = (float)p->lo, hi = (float)p->hi;
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            v = v < lo ? lo : v; /* NaN passes through both tests */
            y[i] = v > hi ? hi : v;
        }
        break;
    }
    case U_NOT: break; /* bool only, handled elsewhere */
    }
}

/* ---- generic paths: other float dtypes in double, integers in int64/uint64 -------- */

static double unary_f64(uop op, const uparams *p, double x) {
    switch (op) {
    case U_ABS: return fabs(x);
    case U_NEG: return -x;
    case U_FLOOR: return floor(x);
    case U_CEIL: return ceil(x);
    case U_ROUND: return rint(x);
    case U_SQRT: return sqrt(x);
    case U_RECIPROCAL: return 1.0 / x;
    case U_EXP: return exp(x);
    case U_LOG: return log(x);
    case U_SIN: return sin(x);
    case U_COS: return cos(x);
    case U_TAN: return tan(x);
    case U_ASIN: return asin(x);
    case U_ACOS: return acos(x);
    case U_ATAN: return atan(x);
    case U_SINH: return sinh(x);
    case U_COSH: return cosh(x);
    case U_ASINH: return asinh(x);
    case U_ACOSH: return acosh(x);
    case U_ATANH: return atanh(x);
    case U_SIGN: return x > 0 ? 1.0 : x < 0 ? -1.0 : x;
    case U_ERF: return erf(x);
    case U_ISNAN: return x != x;
    case U_ISINF: return (p->detect_pos && x == INFINITY) || (p->detect_neg && x == -INFINITY);
    case U_NOT: return x == 0.0;
    case U_RELU: return x > 0 ? x : 0.0;
    case U_LEAKY_RELU: return x >= 0 ? x : p->alpha * x;
    case U_ELU: return x >= 0 ? x : p->alpha * expm1(x);
    case U_SELU: return p->gamma * (x > 0 ? x : p->alpha * expm1(x));
    case U_CELU: return x > 0 ? x : p->alpha * expm1(x / p->alpha);
    case U_SIGMOID: {
        double e = exp(-fabs(x));
        return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
    }
    case U_HARD_SIGMOID: {
        double v = p->alpha * x + p->beta;
        v = v < 0 ? 0 : v;
        return v > 1 ? 1 : v;
    }
    case U_HARD_SWISH: {
        double g = x / 6.0 + 0.5;
        g = g < 0 ? 0 : g;
        return x * (g > 1 ? 1 : g);
    }
    case U_TANH: return tanh(x);
    case U_SOFTPLUS: return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
    case U_SOFTSIGN: return x / (1.0 + fabs(x));
    case U_MISH: return x * tanh(x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)));
    case U_GELU:
        if (p->gelu_tanh) { /* 0.5 (1 + tanh(u)) == sigmoid(2u) */
            double u = 2.0 * 0.7978845608028654 * (x + 0.044715 * x * x * x);
            double e = exp(-fabs(u));
            return x * (u >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e));
        }
        return 0.5 * x * erfc(-x * 0.70710678118654752);
    case U_THRESHOLDED_RELU: return x > p->alpha ? x : 0.0;
    case U_SHRINK: return x < -p->lambd ? x + p->bias : x > p->lambd ? x - p->bias : 0.0;
    case U_CLIP: {
        double v = x < p->lo ? p->lo : x;
        return v > p->hi ? p->hi : v;
    }
    }
    return x;
}

/* Integer forms of the ops that accept integers (wrapping like two's complement C). */
static int64_t unary_i64(uop op, const uparams *p, int64_t x) {
    switch (op) {
    case U_ABS: return x < 0 ? (int64_t)(0 - (uint64_t)x) : x;
    case U_NEG: return (int64_t)(0 - (uint64_t)x);
    case U_SIGN: return x > 0 ? 1 : x < 0 ? -1 : 0;
    case U_RELU: return x > 0 ? x : 0;
    case U_CLIP: {
        int64_t v = x < p->ilo ? p->ilo : x;
        return v > p->ihi ? p->ihi : v;
    }
    default: return x;
    }
}

static uint64_t unary_u64(uop op, const uparams *p, uint64_t x) {
    switch (op) {
    case U_NEG: return 0 - x;
    case U_SIGN: return x > 0;
    case U_CLIP: {
        uint64_t v = x < p->ulo ? p->ulo : x;
        return v > p->uhi ? p->uhi : v;
    }
    default: return x; /* Abs, Relu: identity on unsigned values */
    }
}

typedef struct ujob {
    uop op;
    const uparams *p;
    ib_dtype dt;
    const void *x;
    void *y;
} ujob;

static void unary_range(void *ctx, int64_t begin, int64_t end) {
    const ujob *j = (const ujob *)ctx;
    ib_dtype dt = j->dt;
    bool bool_out = j->op == U_ISNAN || j->op == U_ISINF;
    if (dt == IB_DTYPE_FLOAT32) {
        size_t osz = bool_out ? 1 : 4;
        unary_f32(j->op, j->p, (const float *)j->x + begin, (char *)j->y + (size_t)begin * osz,
                  end - begin);
        return;
    }
    if (j->op == U_NOT) {
        const uint8_t *x = (const uint8_t *)j->x;
        uint8_t *y = (uint8_t *)j->y;
        for (int64_t i = begin; i < end; i++) y[i] = (uint8_t)(x[i] == 0);
        return;
    }
    /* Shrink on integers follows the float formula (attributes are floats). */
    if (ib__dtype_is_integer(dt) && j->op != U_SHRINK) {
        if (ib__dtype_is_signed(dt)) {
            for (int64_t i = begin; i < end; i++)
                ib__store_i64(j->y, dt, i, unary_i64(j->op, j->p, ib__load_i64(j->x, dt, i)));
        } else {
            for (int64_t i = begin; i < end; i++) {
                uint64_t v = (uint64_t)ib__load_i64(j->x, dt, i);
                ib__store_i64(j->y, dt, i, (int64_t)unary_u64(j->op, j->p, v));
            }
        }
        return;
    }
    ib_dtype odt = bool_out ? IB_DTYPE_BOOL : dt;
    for (int64_t i = begin; i < end; i++)
        ib__store_f64(j->y, odt, i, unary_f64(j->op, j->p, ib__load_f64(j->x, dt, i)));
}

static void run_parallel(ib__pool *pool, int64_t n, int64_t min_par, ib__range_fn fn, void *ctx) {
    if (n >= min_par && pool)
        ib__parallel_for(pool, n, fn, ctx);
    else if (n > 0)
        fn(ctx, 0, n);
}

/* ---- Clip bounds -------------------------------------------------------------------- */

static ib_status clip_bound(const ib__node *node, const ib_tensor *t, const char *which,
                            ib_dtype dt, uparams *p, bool is_min) {
    if (!t) return IB_OK;
    if (t->dtype != dt)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input '%s' is %s but the data is %s",
                         ib__node_label(node), which, ib_dtype_name(t->dtype), ib_dtype_name(dt));
    if (ib_tensor_element_count(t) != 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input '%s' must hold one value, not %lld",
                         ib__node_label(node), which, (long long)ib_tensor_element_count(t));
    if (ib__dtype_is_float(dt)) {
        double v = ib__load_f64(t->data, dt, 0);
        if (is_min) p->lo = v;
        else p->hi = v;
    } else if (ib__dtype_is_signed(dt)) {
        int64_t v = ib__load_i64(t->data, dt, 0);
        if (is_min) p->ilo = v;
        else p->ihi = v;
    } else {
        uint64_t v = (uint64_t)ib__load_i64(t->data, dt, 0);
        if (is_min) p->ulo = v;
        else p->uhi = v;
    }
    return IB_OK;
}

static ib_status clip_params(const ib__run_ctx *c, ib_dtype dt, uparams *p) {
    p->lo = -INFINITY;
    p->hi = INFINITY;
    p->ilo = INT64_MIN;
    p->ihi = INT64_MAX;
    p->ulo = 0;
    p->uhi = UINT64_MAX;
    if (c->opset < 11) { /* bounds were attributes, float only */
        float lo, hi;
        IB_TRY(ib__attr_float(c->node, "min", -FLT_MAX, &lo));
        IB_TRY(ib__attr_float(c->node, "max", FLT_MAX, &hi));
        p->lo = lo;
        p->hi = hi;
        return IB_OK;
    }
    IB_TRY(clip_bound(c->node, c->n_in > 1 ? c->in[1] : NULL, "min", dt, p, true));
    return clip_bound(c->node, c->n_in > 2 ? c->in[2] : NULL, "max", dt, p, false);
}

/* ---- infer / run for the unary table ------------------------------------------------ */

static ib_status infer_unary(ib__infer_ctx *c) {
    const uinfo *u = unary_info(c->node->op);
    if (!u) return ib__error(IB_ERR_INTERNAL, "%s: not a unary op", ib__node_label(c->node));
    IB_TRY(ib__require_input(c, 0));
    const ib__value *x = c->in[0];
    if (x->dtype != IB_DTYPE_UNDEFINED && !class_accepts(u->cls, x->dtype))
        return ib__error(x->dtype == IB_DTYPE_STRING ? IB_ERR_UNSUPPORTED : IB_ERR_INVALID_MODEL,
                         "%s: input of type %s is not supported", ib__node_label(c->node),
                         ib_dtype_name(x->dtype));
    if (u->u == U_CLIP && c->opset >= 11) {
        for (int32_t i = 1; i <= 2; i++) {
            const ib__value *b = ib__in(c, i);
            if (!b) continue;
            if (b->dtype != IB_DTYPE_UNDEFINED && x->dtype != IB_DTYPE_UNDEFINED &&
                b->dtype != x->dtype)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: %s bound is %s but the input is %s",
                                 ib__node_label(c->node), i == 1 ? "min" : "max",
                                 ib_dtype_name(b->dtype), ib_dtype_name(x->dtype));
            if (b->rank > 1 || (b->rank == 1 && b->dims[0] > 1))
                return ib__error(IB_ERR_INVALID_MODEL, "%s: %s bound must be a scalar",
                                 ib__node_label(c->node), i == 1 ? "min" : "max");
        }
    }
    uparams p;
    IB_TRY(read_params(c->node, u, &p)); /* reject bad attributes at load time */
    ib__set_output_like(c, 0, x);
    if (u->bool_out && c->n_out > 0 && c->out[0]) c->out[0]->dtype = IB_DTYPE_BOOL;
    return IB_OK;
}

static ib_status check_same_shape(const ib__node *node, const ib_tensor *x, const ib_tensor *y) {
    if (x->rank != y->rank)
        return ib__error(IB_ERR_SHAPE, "%s: output rank %d differs from input rank %d",
                         ib__node_label(node), y->rank, x->rank);
    for (int32_t d = 0; d < x->rank; d++)
        if (x->shape[d] != y->shape[d])
            return ib__error(IB_ERR_SHAPE, "%s: output dim %d is %lld, input has %lld",
                             ib__node_label(node), d, (long long)y->shape[d],
                             (long long)x->shape[d]);
    return IB_OK;
}

static ib_status run_unary(ib__run_ctx *c) {
    const uinfo *u = unary_info(c->node->op);
    if (!u) return ib__error(IB_ERR_INTERNAL, "%s: not a unary op", ib__node_label(c->node));
    const ib_tensor *x = c->n_in > 0 ? c->in[0] : NULL;
    ib_tensor *y = c->n_out > 0 ? c->out[0] : NULL;
    if (!x) return ib__error(IB_ERR_INVALID_MODEL, "%s: input 0 is missing", ib__node_label(c->node));
    if (!y) return IB_OK;
    if (!class_accepts(u->cls, x->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: input of type %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    ib_dtype want = u->bool_out ? IB_DTYPE_BOOL : x->dtype;
    if (y->dtype != want)
        return ib__error(IB_ERR_INTERNAL, "%s: output is %s, expected %s",
                         ib__node_label(c->node), ib_dtype_name(y->dtype), ib_dtype_name(want));
    IB_TRY(check_same_shape(c->node, x, y));
    uparams p;
    IB_TRY(read_params(c->node, u, &p));
    if (u->u == U_CLIP) IB_TRY(clip_params(c, x->dtype, &p));
    int64_t n = ib_tensor_element_count(x);
    if (n < 0) return ib__error(IB_ERR_SHAPE, "%s: bad input shape", ib__node_label(c->node));
    ujob j = {u->u, &p, x->dtype, x->data, y->data};
    run_parallel(c->pool, n, u->costly ? PAR_MIN_COSTLY : PAR_MIN_CHEAP, unary_range, &j);
    return IB_OK;
}

/* ---- Cast / CastLike ------------------------------------------------------------------ */

static bool cast_dtype_ok(ib_dtype dt) {
    return ib__dtype_is_float(dt) || ib__dtype_is_integer(dt) || dt == IB_DTYPE_BOOL;
}

/* Opset 1 wrote the target type as a string ("FLOAT"). */
static ib_status cast_target(const ib__node *node, ib_dtype *out) {
    const ib__attr *a = ib__node_attr(node, "to");
    if (!a)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'to' is missing",
                         ib__node_label(node));
    if (a->kind == IB_ATTR_STRING) {
        static const struct { const char *name; ib_dtype dt; } names[] = {
            {"FLOAT", IB_DTYPE_FLOAT32},  {"UINT8", IB_DTYPE_UINT8},    {"INT8", IB_DTYPE_INT8},
            {"UINT16", IB_DTYPE_UINT16},  {"INT16", IB_DTYPE_INT16},    {"INT32", IB_DTYPE_INT32},
            {"INT64", IB_DTYPE_INT64},    {"STRING", IB_DTYPE_STRING},  {"BOOL", IB_DTYPE_BOOL},
            {"FLOAT16", IB_DTYPE_FLOAT16}, {"DOUBLE", IB_DTYPE_FLOAT64}, {"UINT32", IB_DTYPE_UINT32},
            {"UINT64", IB_DTYPE_UINT64},  {"BFLOAT16", IB_DTYPE_BFLOAT16},
        };
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(a->s, names[i].name) == 0) {
                *out = names[i].dt;
                return IB_OK;
            }
        return ib__error(IB_ERR_INVALID_MODEL, "%s: unknown type name '%s' in 'to'",
                         ib__node_label(node), a->s);
    }
    if (a->kind != IB_ATTR_INT || a->i > INT32_MAX || a->i < 0 ||
        !ib__dtype_is_valid((int32_t)a->i) || a->i == IB_DTYPE_UNDEFINED)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'to' is not a valid type",
                         ib__node_label(node));
    *out = (ib_dtype)a->i;
    return IB_OK;
}

static ib_status cast_check(const ib__node *node, ib_dtype from, ib_dtype to) {
    if (from != IB_DTYPE_UNDEFINED && !cast_dtype_ok(from))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: casting from %s is not supported",
                         ib__node_label(node), ib_dtype_name(from));
    if (to != IB_DTYPE_UNDEFINED && !cast_dtype_ok(to))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: casting to %s is not supported",
                         ib__node_label(node), ib_dtype_name(to));
    return IB_OK;
}

static ib_status infer_cast(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    ib_dtype to;
    if (c->node->op == IB_OP_CAST_LIKE) {
        IB_TRY(ib__require_input(c, 1));
        to = c->in[1]->dtype;
    } else {
        IB_TRY(cast_target(c->node, &to));
    }
    IB_TRY(cast_check(c->node, c->in[0]->dtype, to));
    ib__set_output_like(c, 0, c->in[0]);
    if (c->n_out > 0 && c->out[0]) c->out[0]->dtype = to;
    return IB_OK;
}

typedef struct cjob {
    ib_dtype from, to;
    const void *x;
    void *y;
} cjob;

/* Float to integer without UB: truncation toward zero, NaN to 0, saturation. */
static inline int64_t f32_to_i64(float v) {
    if (v != v) return 0;
    if (v >= 9.2233720368547758e18f) return INT64_MAX;
    if (v <= -9.2233720368547758e18f) return INT64_MIN;
    return (int64_t)v;
}
static inline int32_t f32_to_i32(float v) {
    if (v != v) return 0;
    if (v >= 2147483648.0f) return INT32_MAX;
    if (v <= -2147483648.0f) return INT32_MIN;
    return (int32_t)v;
}

/* double -> float rounded to odd: a following float -> half (or bfloat16) rounding to
 * nearest even then gives the correctly rounded result, which plain double -> float ->
 * half does not (the first rounding can land exactly on a half-way point). */
static inline float f64_to_f32_odd(double v) {
    float f = (float)v;
    if ((double)f != v && isfinite(f)) {
        uint32_t u;
        memcpy(&u, &f, 4);
        if (!(u & 1)) f = nextafterf(f, v > (double)f ? INFINITY : -INFINITY);
    }
    return f;
}

static void cast_range(void *ctx, int64_t begin, int64_t end) {
    const cjob *j = (const cjob *)ctx;
    ib_dtype f = j->from, t = j->to;
    /* common pairs get tight loops; the rest go through int64 or double */
    if (f == IB_DTYPE_FLOAT32 && t == IB_DTYPE_FLOAT16) {
        const float *x = j->x;
        uint16_t *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = ib__float_to_half(x[i]);
    } else if (f == IB_DTYPE_FLOAT16 && t == IB_DTYPE_FLOAT32) {
        const uint16_t *x = j->x;
        float *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = ib__half_to_float(x[i]);
    } else if (f == IB_DTYPE_FLOAT32 && t == IB_DTYPE_BFLOAT16) {
        const float *x = j->x;
        uint16_t *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = ib__float_to_bf16(x[i]);
    } else if (f == IB_DTYPE_FLOAT64 && t == IB_DTYPE_FLOAT16) {
        const double *x = j->x;
        uint16_t *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = ib__float_to_half(f64_to_f32_odd(x[i]));
    } else if (f == IB_DTYPE_FLOAT64 && t == IB_DTYPE_BFLOAT16) {
        const double *x = j->x;
        uint16_t *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = ib__float_to_bf16(f64_to_f32_odd(x[i]));
    } else if (f == IB_DTYPE_FLOAT32 && t == IB_DTYPE_FLOAT64) {
        const float *x = j->x;
        double *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = x[i];
    } else if (f == IB_DTYPE_FLOAT64 && t == IB_DTYPE_FLOAT32) {
        const double *x = j->x;
        float *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = (float)x[i];
    } else if (f == IB_DTYPE_INT64 && t == IB_DTYPE_FLOAT32) {
        const int64_t *x = j->x;
        float *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = (float)x[i];
    } else if (f == IB_DTYPE_INT32 && t == IB_DTYPE_FLOAT32) {
        const int32_t *x = j->x;
        float *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = (float)x[i];
    } else if (f == IB_DTYPE_UINT8 && t == IB_DTYPE_FLOAT32) {
        const uint8_t *x = j->x;
        float *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = (float)x[i];
    } else if (f == IB_DTYPE_BOOL && t == IB_DTYPE_FLOAT32) {
        const uint8_t *x = j->x;
        float *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = x[i] ? 1.0f : 0.0f;
    } else if (f == IB_DTYPE_FLOAT32 && t == IB_DTYPE_INT64) {
        const float *x = j->x;
        int64_t *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = f32_to_i64(x[i]);
    } else if (f == IB_DTYPE_FLOAT32 && t == IB_DTYPE_INT32) {
        const float *x = j->x;
        int32_t *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = f32_to_i32(x[i]);
    } else if (f == IB_DTYPE_INT64 && t == IB_DTYPE_INT32) {
        const int64_t *x = j->x;
        int32_t *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = (int32_t)(uint32_t)(uint64_t)x[i];
    } else if (f == IB_DTYPE_INT32 && t == IB_DTYPE_INT64) {
        const int32_t *x = j->x;
        int64_t *y = j->y;
        for (int64_t i = begin; i < end; i++) y[i] = x[i];
    } else if (!ib__dtype_is_float(f)) {
        /* integers and bool: integer conversion keeps every bit of int64 values */
        if (ib__dtype_is_float(t)) {
            bool uns = !ib__dtype_is_signed(f);
            for (int64_t i = begin; i < end; i++) {
                int64_t v = ib__load_i64(j->x, f, i);
                ib__store_f64(j->y, t, i, uns ? (double)(uint64_t)v : (double)v);
            }
        } else {
            for (int64_t i = begin; i < end; i++) ib__store_i64(j->y, t, i, ib__load_i64(j->x, f, i));
        }
    } else {
        for (int64_t i = begin; i < end; i++) ib__store_f64(j->y, t, i, ib__load_f64(j->x, f, i));
    }
}

static ib_status run_cast(ib__run_ctx *c) {
    const ib_tensor *x = c->n_in > 0 ? c->in[0] : NULL;
    ib_tensor *y = c->n_out > 0 ? c->out[0] : NULL;
    if (!x) return ib__error(IB_ERR_INVALID_MODEL, "%s: input 0 is missing", ib__node_label(c->node));
    if (!y) return IB_OK;
    ib_dtype to;
    if (c->node->op == IB_OP_CAST_LIKE) {
        if (c->n_in < 2 || !c->in[1])
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input 1 is missing",
                             ib__node_label(c->node));
        to = c->in[1]->dtype;
    } else {
        IB_TRY(cast_target(c->node, &to));
    }
    IB_TRY(cast_check(c->node, x->dtype, to));
    if (y->dtype != to)
        return ib__error(IB_ERR_INTERNAL, "%s: output is %s, expected %s",
                         ib__node_label(c->node), ib_dtype_name(y->dtype), ib_dtype_name(to));
    IB_TRY(check_same_shape(c->node, x, y));
    int64_t n = ib_tensor_element_count(x);
    if (n < 0) return ib__error(IB_ERR_SHAPE, "%s: bad input shape", ib__node_label(c->node));
    if (x->dtype == to) {
        if (n > 0) memcpy(y->data, x->data, (size_t)n * ib_dtype_size(to));
        return IB_OK;
    }
    cjob j = {x->dtype, to, x->data, y->data};
    run_parallel(c->pool, n, PAR_MIN_CHEAP, cast_range, &j);
    return IB_OK;
}

#define UNARY(id) {IB_OP_##id, infer_unary, run_unary, false}

const ib__op_def ib__ops_elementwise[] = {
    UNARY(ABS), UNARY(NEG), UNARY(FLOOR), UNARY(CEIL), UNARY(ROUND), UNARY(SQRT),
    UNARY(RECIPROCAL), UNARY(EXP), UNARY(LOG), UNARY(SIN), UNARY(COS), UNARY(TAN),
    UNARY(ASIN), UNARY(ACOS), UNARY(ATAN), UNARY(SINH), UNARY(COSH), UNARY(ASINH),
    UNARY(ACOSH), UNARY(ATANH), UNARY(SIGN), UNARY(ERF), UNARY(IS_NA_N), UNARY(IS_INF),
    UNARY(NOT), UNARY(RELU), UNARY(LEAKY_RELU), UNARY(ELU), UNARY(SELU), UNARY(CELU),
    UNARY(SIGMOID), UNARY(HARD_SIGMOID), UNARY(HARD_SWISH), UNARY(TANH), UNARY(SOFTPLUS),
    UNARY(SOFTSIGN), UNARY(MISH), UNARY(GELU), UNARY(THRESHOLDED_RELU), UNARY(SHRINK),
    UNARY(CLIP),
    {IB_OP_CAST, infer_cast, run_cast, false},
    {IB_OP_CAST_LIKE, infer_cast, run_cast, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
