/* Data types: names, sizes, classification, fp16/bf16 conversion, and generic element
 * load/store used by reference kernels that handle every numeric dtype. */
#include <math.h>
#include <string.h>

#include "core/core.h"

const char *ib_dtype_name(ib_dtype dtype) {
    switch (dtype) {
#define IB__DTYPE_CASE(name, value, str, size) \
    case name:                                 \
        return str;
        IB_DTYPE_LIST(IB__DTYPE_CASE)
#undef IB__DTYPE_CASE
    }
    return "invalid";
}

size_t ib_dtype_size(ib_dtype dtype) {
    switch (dtype) {
#define IB__DTYPE_SIZE(name, value, str, size) \
    case name:                                 \
        return size;
        IB_DTYPE_LIST(IB__DTYPE_SIZE)
#undef IB__DTYPE_SIZE
    }
    return 0;
}

bool ib__dtype_is_valid(int32_t dt) {
    switch (dt) {
#define IB__DTYPE_VALID(name, value, str, size) case value:
        IB_DTYPE_LIST(IB__DTYPE_VALID)
#undef IB__DTYPE_VALID
        return true;
    }
    return false;
}

bool ib__dtype_is_float(ib_dtype dt) {
    return dt == IB_DTYPE_FLOAT32 || dt == IB_DTYPE_FLOAT16 || dt == IB_DTYPE_BFLOAT16 ||
           dt == IB_DTYPE_FLOAT64;
}

bool ib__dtype_is_signed(ib_dtype dt) {
    return dt == IB_DTYPE_INT8 || dt == IB_DTYPE_INT16 || dt == IB_DTYPE_INT32 ||
           dt == IB_DTYPE_INT64;
}

bool ib__dtype_is_integer(ib_dtype dt) {
    return ib__dtype_is_signed(dt) || dt == IB_DTYPE_UINT8 || dt == IB_DTYPE_UINT16 ||
           dt == IB_DTYPE_UINT32 || dt == IB_DTYPE_UINT64;
}

float ib__half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while ((mant & 0x400) == 0);
            mant &= 0x3ff;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even, with overflow to infinity and gradual underflow. */
uint16_t ib__float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx >= 0x7f800000u) { /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    }
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds past 65504 */
    if (absx < 0x38800000u) {                                   /* subnormal half */
        if (absx < 0x33000000u) return (uint16_t)sign;           /* below half of min */
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        /* value = m * 2^(e-150); the half subnormal unit is 2^-24, so q = m >> (126-e). */
        uint32_t s = 126 - e;
        uint32_t q = m >> s;
        uint32_t rem = m & ((1u << s) - 1);
        uint32_t halfway = 1u << (s - 1);
        if (rem > halfway || (rem == halfway && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t e = (absx >> 23) - 127 + 15;
    uint32_t m = absx & 0x7fffff;
    uint32_t q = (e << 10) | (m >> 13);
    uint32_t rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;
    return (uint16_t)(sign | q);
}

float ib__bf16_to_float(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t ib__float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    uint32_t lsb = (x >> 16) & 1;
    x += 0x7fff + lsb;
    return (uint16_t)(x >> 16);
}

double ib__load_f64(const void *data, ib_dtype dt, int64_t i) {
    switch (dt) {
    case IB_DTYPE_FLOAT32: return ((const float *)data)[i];
    case IB_DTYPE_FLOAT64: return ((const double *)data)[i];
    case IB_DTYPE_FLOAT16: return ib__half_to_float(((const uint16_t *)data)[i]);
    case IB_DTYPE_BFLOAT16: return ib__bf16_to_float(((const uint16_t *)data)[i]);
    case IB_DTYPE_INT8: return ((const int8_t *)data)[i];
    case IB_DTYPE_UINT8: return ((const uint8_t *)data)[i];
    case IB_DTYPE_INT16: return ((const int16_t *)data)[i];
    case IB_DTYPE_UINT16: return ((const uint16_t *)data)[i];
    case IB_DTYPE_INT32: return ((const int32_t *)data)[i];
    case IB_DTYPE_UINT32: return ((const uint32_t *)data)[i];
    case IB_DTYPE_INT64: return (double)((const int64_t *)data)[i];
    case IB_DTYPE_UINT64: return (double)((const uint64_t *)data)[i];
    case IB_DTYPE_BOOL: return ((const uint8_t *)data)[i] ? 1.0 : 0.0;
    default: return 0.0;
    }
}

int64_t ib__load_i64(const void *data, ib_dtype dt, int64_t i) {
    switch (dt) {
    case IB_DTYPE_INT8: return ((const int8_t *)data)[i];
    case IB_DTYPE_UINT8: return ((const uint8_t *)data)[i];
    case IB_DTYPE_INT16: return ((const int16_t *)data)[i];
    case IB_DTYPE_UINT16: return ((const uint16_t *)data)[i];
    case IB_DTYPE_INT32: return ((const int32_t *)data)[i];
    case IB_DTYPE_UINT32: return ((const uint32_t *)data)[i];
    case IB_DTYPE_INT64: return ((const int64_t *)data)[i];
    case IB_DTYPE_UINT64: return (int64_t)((const uint64_t *)data)[i];
    case IB_DTYPE_BOOL: return ((const uint8_t *)data)[i] ? 1 : 0;
    default: {
        double v = ib__load_f64(data, dt, i);
        if (v != v) return 0;
        if (v >= 9.2233720368547758e18) return INT64_MAX;
        if (v <= -9.2233720368547758e18) return INT64_MIN;
        return (int64_t)v;
    }
    }
}

/* Float -> integer conversion that never invokes UB: NaN -> 0, out of range saturates. */
static int64_t sat_i64(double v, double lo, double hi) {
    if (v != v) return 0;
    if (v <= lo) return (int64_t)lo;
    if (v >= hi) return (int64_t)hi;
    return (int64_t)v;
}

void ib__store_f64(void *data, ib_dtype dt, int64_t i, double v) {
    switch (dt) {
    case IB_DTYPE_FLOAT32: ((float *)data)[i] = (float)v; break;
    case IB_DTYPE_FLOAT64: ((double *)data)[i] = v; break;
    case IB_DTYPE_FLOAT16: ((uint16_t *)data)[i] = ib__float_to_half((float)v); break;
    case IB_DTYPE_BFLOAT16: ((uint16_t *)data)[i] = ib__float_to_bf16((float)v); break;
    case IB_DTYPE_INT8: ((int8_t *)data)[i] = (int8_t)sat_i64(v, -128, 127); break;
    case IB_DTYPE_UINT8: ((uint8_t *)data)[i] = (uint8_t)sat_i64(v, 0, 255); break;
    case IB_DTYPE_INT16: ((int16_t *)data)[i] = (int16_t)sat_i64(v, -32768, 32767); break;
    case IB_DTYPE_UINT16: ((uint16_t *)data)[i] = (uint16_t)sat_i64(v, 0, 65535); break;
    case IB_DTYPE_INT32:
        ((int32_t *)data)[i] = (int32_t)sat_i64(v, -2147483648.0, 2147483647.0);
        break;
    case IB_DTYPE_UINT32: ((uint32_t *)data)[i] = (uint32_t)sat_i64(v, 0, 4294967295.0); break;
    case IB_DTYPE_INT64:
        ((int64_t *)data)[i] = sat_i64(v, -9.2233720368547758e18, 9.2233720368547748e18);
        break;
    case IB_DTYPE_UINT64:
        ((uint64_t *)data)[i] = (v != v || v <= 0) ? 0
                                : v >= 1.8446744073709552e19 ? UINT64_MAX
                                                             : (uint64_t)v;
        break;
    case IB_DTYPE_BOOL: ((uint8_t *)data)[i] = (v != 0.0); break;
    default: break;
    }
}

void ib__store_i64(void *data, ib_dtype dt, int64_t i, int64_t v) {
    switch (dt) {
    case IB_DTYPE_INT8: ((int8_t *)data)[i] = (int8_t)v; break;
    case IB_DTYPE_UINT8: ((uint8_t *)data)[i] = (uint8_t)v; break;
    case IB_DTYPE_INT16: ((int16_t *)data)[i] = (int16_t)v; break;
    case IB_DTYPE_UINT16: ((uint16_t *)data)[i] = (uint16_t)v; break;
    case IB_DTYPE_INT32: ((int32_t *)data)[i] = (int32_t)v; break;
    case IB_DTYPE_UINT32: ((uint32_t *)data)[i] = (uint32_t)v; break;
    case IB_DTYPE_INT64: ((int64_t *)data)[i] = v; break;
    case IB_DTYPE_UINT64: ((uint64_t *)data)[i] = (uint64_t)v; break;
    case IB_DTYPE_BOOL: ((uint8_t *)data)[i] = (v != 0); break;
    default: ib__store_f64(data, dt, i, (double)v); break;
    }
}
