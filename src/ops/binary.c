/* Broadcasting element-wise ops: arithmetic, Pow, Mod, BitShift, comparisons, logic,
 * PRelu, Where and the variadic Max/Min/Sum/Mean. Shapes are coalesced so the inner
 * loop runs over contiguous (or scalar) operands with typed, vectorisable kernels. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

#define PAR_MIN ((int64_t)1 << 16)

typedef enum bop {
    B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_MOD, B_FMOD, B_SHL, B_SHR,
    B_EQ, B_LT, B_GT, B_LE, B_GE, B_AND, B_OR, B_XOR, B_PRELU, B_MAX, B_MIN,
} bop;

static bool bop_is_compare(bop op) {
    return op == B_EQ || op == B_LT || op == B_GT || op == B_LE || op == B_GE;
}
static bool bop_is_logic(bop op) { return op == B_AND || op == B_OR || op == B_XOR; }

/* ---- broadcast iteration ------------------------------------------------------------ */

#define MAX_BIN_IN 3

/* The output index space with per-input element strides (0 where broadcast), size-1
 * dims dropped and adjacent dims merged wherever every input allows it. The innermost
 * stride of each input is then 0 or 1. */
typedef struct bloop {
    int32_t rank;
    int32_t n_in;
    int64_t dims[IB_MAX_RANK];
    int64_t st[MAX_BIN_IN][IB_MAX_RANK];
    int64_t total;
} bloop;

static void bloop_init(bloop *L, const int64_t *out_dims, int32_t out_rank, int32_t n_in,
                       const ib_tensor *const *in) {
    memset(L, 0, sizeof *L);
    L->n_in = n_in;
    int64_t st[MAX_BIN_IN][IB_MAX_RANK];
    for (int32_t k = 0; k < n_in; k++) {
        int64_t s[IB_MAX_RANK];
        ib__strides(in[k]->shape, in[k]->rank, s);
        for (int32_t d = 0; d < out_rank; d++) {
            int32_t td = d - (out_rank - in[k]->rank);
            st[k][d] = (td < 0 || in[k]->shape[td] == 1) ? 0 : s[td];
        }
    }
    int32_t r = 0;
    L->total = 1;
    for (int32_t d = 0; d < out_rank; d++) {
        L->total *= out_dims[d];
        if (out_dims[d] == 1) continue;
        bool merge = r > 0;
        for (int32_t k = 0; k < n_in && merge; k++)
            if (L->st[k][r - 1] != st[k][d] * out_dims[d]) merge = false;
        if (merge) {
            L->dims[r - 1] *= out_dims[d];
            for (int32_t k = 0; k < n_in; k++) L->st[k][r - 1] = st[k][d];
        } else {
            L->dims[r] = out_dims[d];
            for (int32_t k = 0; k < n_in; k++) L->st[k][r] = st[k][d];
            r++;
        }
    }
    if (r == 0) { /* scalar output */
        L->dims[0] = 1;
        r = 1;
    }
    L->rank = r;
}

/* A run of n outputs starting at out_off; input k starts at off[k] and advances by
 * step[k] (0 or 1). */
typedef void (*seg_fn)(const void *ctx, const int64_t *off, int64_t out_off, int64_t n,
                       const int64_t *step);

/* Visits the output range [begin, end) as inner-dimension runs. */
static void bloop_visit(const bloop *L, int64_t begin, int64_t end, seg_fn fn, const void *ctx) {
    int32_t r = L->rank;
    int64_t inner = L->dims[r - 1];
    int64_t idx[IB_MAX_RANK] = {0};
    int64_t row[MAX_BIN_IN] = {0}, off[MAX_BIN_IN], step[MAX_BIN_IN];
    int64_t rest = begin / inner, pos = begin % inner;
    for (int32_t d = r - 2; d >= 0; d--) {
        idx[d] = rest % L->dims[d];
        rest /= L->dims[d];
        for (int32_t k = 0; k < L->n_in; k++) row[k] += idx[d] * L->st[k][d];
    }
    for (int32_t k = 0; k < L->n_in; k++) step[k] = L->st[k][r - 1];
    int64_t o = begin;
    while (o < end) {
        int64_t n = inner - pos;
        if (n > end - o) n = end - o;
        for (int32_t k = 0; k < L->n_in; k++) off[k] = row[k] + pos * step[k];
        fn(ctx, off, o, n, step);
        o += n;
        pos = 0;
        for (int32_t d = r - 2; d >= 0; d--) { /* odometer over the outer dims */
            idx[d]++;
            for (int32_t k = 0; k < L->n_in; k++) row[k] += L->st[k][d];
            if (idx[d] < L->dims[d]) break;
            for (int32_t k = 0; k < L->n_in; k++) row[k] -= L->st[k][d] * L->dims[d];
            idx[d] = 0;
        }
    }
}

typedef struct visit_job {
    const bloop *L;
    seg_fn fn;
    const void *ctx;
} visit_job;

static void visit_range(void *ctx, int64_t begin, int64_t end) {
    const visit_job *v = (const visit_job *)ctx;
    bloop_visit(v->L, begin, end, v->fn, v->ctx);
}

static void bloop_run(const bloop *L, ib__pool *pool, seg_fn fn, const void *ctx) {
    if (L->total <= 0) return;
    visit_job v = {L, fn, ctx};
    if (pool && L->total >= PAR_MIN)
        ib__parallel_for(pool, L->total, visit_range, &v);
    else
        visit_range(&v, 0, L->total);
}

/* Branch-free float select: GCC does not if-convert a float ternary with arithmetic in
 * its arms (-ftrapping-math), so PRelu's loop would stay scalar without it. */
static inline float select_f32(bool c, float a, float b) {
    uint32_t m = 0u - (uint32_t)c, ua, ub;
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    uint32_t r = (ua & m) | (ub & ~m);
    float f;
    memcpy(&f, &r, 4);
    return f;
}

/* ---- typed fast kernels ----------------------------------------------------------------
 * K(a, sa, b, sb, y, n): y[i] = f(a[i*sa], b[i*sb]); sa, sb in {0, 1}. One loop per
 * stride pattern so each is a plain vectorisable loop. */
typedef void (*bin_kernel)(const void *a, int64_t sa, const void *b, int64_t sb, void *y,
                           int64_t n);

#define DEF_BIN(name, TA, TY, EXPR)                                                      \
    static void name(const void *pa, int64_t sa, const void *pb, int64_t sb, void *py,   \
                     int64_t n) {                                                        \
        const TA *a = (const TA *)pa;                                                    \
        const TA *b = (const TA *)pb;                                                    \
        TY *y = (TY *)py;                                                                \
        if (sa && sb) {                                                                  \
            for (int64_t i = 0; i < n; i++) {                                            \
                TA x = a[i], z = b[i];                                                   \
                y[i] = (TY)(EXPR);                                                       \
            }                                                                            \
        } else if (sa) {                                                                 \
            const TA z = b[0];                                                           \
            for (int64_t i = 0; i < n; i++) {                                            \
                TA x = a[i];                                                             \
                y[i] = (TY)(EXPR);                                                       \
            }                                                                            \
        } else if (sb) {                                                                 \
            const TA x = a[0];                                                           \
            for (int64_t i = 0; i < n; i++) {                                            \
                TA z = b[i];                                                             \
                y[i] = (TY)(EXPR);                                                       \
            }                                                                            \
        } else {                                                                         \
            const TA x = a[0], z = b[0];                                                 \
            const TY v = (TY)(EXPR);                                                     \
            for (int64_t i = 0; i < n; i++) y[i] = v;                                    \
        }                                                                                \
    }

/* Floats: NaN propagates through Max/Min as in numpy. */
#define DEF_FLOAT_KERNELS(sfx, T)                                            \
    DEF_BIN(add_##sfx, T, T, x + z)                                          \
    DEF_BIN(sub_##sfx, T, T, x - z)                                          \
    DEF_BIN(mul_##sfx, T, T, x * z)                                          \
    DEF_BIN(div_##sfx, T, T, x / z)                                          \
    DEF_BIN(max_##sfx, T, T, (x > z || x != x) ? x : z)                      \
    DEF_BIN(min_##sfx, T, T, (x < z || x != x) ? x : z)                      \
    DEF_BIN(eq_##sfx, T, uint8_t, x == z)                                    \
    DEF_BIN(lt_##sfx, T, uint8_t, x < z)                                     \
    DEF_BIN(gt_##sfx, T, uint8_t, x > z)                                     \
    DEF_BIN(le_##sfx, T, uint8_t, x <= z)                                    \
    DEF_BIN(ge_##sfx, T, uint8_t, x >= z)

/* Integers: +, -, * in the unsigned type W (at least unsigned int) so overflow wraps
 * instead of being undefined. */
#define DEF_INT_KERNELS(sfx, T, W)                                           \
    DEF_BIN(add_##sfx, T, T, (W)x + (W)z)                                    \
    DEF_BIN(sub_##sfx, T, T, (W)x - (W)z)                                    \
    DEF_BIN(mul_##sfx, T, T, (W)x * (W)z)                                    \
    DEF_BIN(max_##sfx, T, T, x > z ? x : z)                                  \
    DEF_BIN(min_##sfx, T, T, x < z ? x : z)                                  \
    DEF_BIN(eq_##sfx, T, uint8_t, x == z)                                    \
    DEF_BIN(lt_##sfx, T, uint8_t, x < z)                                     \
    DEF_BIN(gt_##sfx, T, uint8_t, x > z)                                     \
    DEF_BIN(le_##sfx, T, uint8_t, x <= z)                                    \
    DEF_BIN(ge_##sfx, T, uint8_t, x >= z)

DEF_FLOAT_KERNELS(f32, float)
DEF_FLOAT_KERNELS(f64, double)
DEF_INT_KERNELS(i32, int32_t, uint32_t)
DEF_INT_KERNELS(i64, int64_t, uint64_t)
DEF_INT_KERNELS(u8, uint8_t, unsigned)
DEF_BIN(prelu_f32, float, float, x * select_f32(x < 0.0f, z, 1.0f))
DEF_BIN(prelu_f64, double, double, x < 0 ? x * z : x)
DEF_BIN(pow_f32, float, float, powf(x, z))
DEF_BIN(fmod_f32, float, float, fmodf(x, z))
DEF_BIN(and_b, uint8_t, uint8_t, (x != 0) & (z != 0))
DEF_BIN(or_b, uint8_t, uint8_t, (x != 0) | (z != 0))
DEF_BIN(xor_b, uint8_t, uint8_t, (x != 0) ^ (z != 0))

#define KERNEL_SET(sfx)                                                                 \
    switch (op) {                                                                       \
    case B_ADD: return add_##sfx;                                                       \
    case B_SUB: return sub_##sfx;                                                       \
    case B_MUL: return mul_##sfx;                                                       \
    case B_MAX: return max_##sfx;                                                       \
    case B_MIN: return min_##sfx;                                                       \
    case B_EQ: return eq_##sfx;                                                         \
    case B_LT: return lt_##sfx;                                                         \
    case B_GT: return gt_##sfx;                                                         \
    case B_LE: return le_##sfx;                                                         \
    case B_GE: return ge_##sfx;                                                         \
    default: break;                                                                     \
    }

/* A typed kernel for (op, dtype) when one exists; NULL selects the generic path. */
static bin_kernel fast_kernel(bop op, ib_dtype a, ib_dtype b) {
    if (a != b) return NULL;
    switch (a) {
    case IB_DTYPE_FLOAT32:
        if (op == B_DIV) return div_f32;
        if (op == B_POW) return pow_f32;
        if (op == B_FMOD) return fmod_f32;
        if (op == B_PRELU) return prelu_f32;
        KERNEL_SET(f32)
        return NULL;
    case IB_DTYPE_FLOAT64:
        if (op == B_DIV) return div_f64;
        if (op == B_PRELU) return prelu_f64;
        KERNEL_SET(f64)
        return NULL;
    case IB_DTYPE_INT32: KERNEL_SET(i32) return NULL;
    case IB_DTYPE_INT64: KERNEL_SET(i64) return NULL;
    case IB_DTYPE_UINT8: KERNEL_SET(u8) return NULL;
    case IB_DTYPE_BOOL:
        if (op == B_AND) return and_b;
        if (op == B_OR) return or_b;
        if (op == B_XOR) return xor_b;
        if (op == B_EQ) return eq_u8;
        return NULL;
    default: return NULL;
    }
}

/* ---- generic scalar semantics (every dtype; the reference for the kernels) ---------- */

static double op_f64(bop op, double a, double b) {
    switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return a / b;
    case B_POW: return pow(a, b);
    case B_FMOD: return fmod(a, b);
    case B_MOD: { /* result takes the sign of the divisor */
        double r = fmod(a, b);
        if (r != 0 && ((r < 0) != (b < 0))) r += b;
        return r;
    }
    case B_EQ: return a == b;
    case B_LT: return a < b;
    case B_GT: return a > b;
    case B_LE: return a <= b;
    case B_GE: return a >= b;
    case B_AND: return (a != 0) && (b != 0);
    case B_OR: return (a != 0) || (b != 0);
    case B_XOR: return (a != 0) != (b != 0);
    case B_PRELU: return a < 0 ? a * b : a;
    case B_MAX: return (a > b || a != a) ? a : b;
    case B_MIN: return (a < b || a != a) ? a : b;
    case B_SHL:
    case B_SHR: return 0;
    }
    return 0;
}

/* Integer power by squaring, wrapping like repeated multiplication in two's complement.
 * A negative exponent gives 1/a^n truncated toward zero. */
static int64_t ipow(int64_t base, int64_t e, bool e_unsigned) {
    if (!e_unsigned && e < 0) {
        if (base == 1) return 1;
        if (base == -1) return (e & 1) ? -1 : 1;
        return 0;
    }
    uint64_t r = 1, b = (uint64_t)base, k = (uint64_t)e;
    while (k) {
        if (k & 1) r *= b;
        b *= b;
        k >>= 1;
    }
    return (int64_t)r;
}

/* Signed integers; division and modulo by zero give 0 (defined, unlike C). */
static int64_t op_i64(bop op, int64_t a, int64_t b) {
    switch (op) {
    case B_ADD: return (int64_t)((uint64_t)a + (uint64_t)b);
    case B_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
    case B_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
    case B_DIV:
        if (b == 0) return 0;
        if (b == -1) return (int64_t)(0 - (uint64_t)a); /* INT64_MIN / -1 wraps */
        return a / b;
    case B_FMOD:
        if (b == 0 || b == -1) return 0;
        return a % b;
    case B_MOD: {
        if (b == 0 || b == -1) return 0;
        int64_t r = a % b;
        if (r != 0 && ((r < 0) != (b < 0))) r += b;
        return r;
    }
    case B_POW: return ipow(a, b, false);
    case B_EQ: return a == b;
    case B_LT: return a < b;
    case B_GT: return a > b;
    case B_LE: return a <= b;
    case B_GE: return a >= b;
    case B_AND: return (a != 0) && (b != 0);
    case B_OR: return (a != 0) || (b != 0);
    case B_XOR: return (a != 0) != (b != 0);
    case B_PRELU: return a < 0 ? (int64_t)((uint64_t)a * (uint64_t)b) : a;
    case B_MAX: return a > b ? a : b;
    case B_MIN: return a < b ? a : b;
    case B_SHL: return (b < 0 || b >= 64) ? 0 : (int64_t)((uint64_t)a << b);
    case B_SHR: return (b < 0 || b >= 64) ? 0 : (int64_t)((uint64_t)a >> b);
    }
    return 0;
}

static uint64_t op_u64(bop op, uint64_t a, uint64_t b) {
    switch (op) {
    case B_ADD: return a + b;
    case B_SUB: return a - b;
    case B_MUL: return a * b;
    case B_DIV: return b == 0 ? 0 : a / b;
    case B_FMOD:
    case B_MOD: return b == 0 ? 0 : a % b;
    case B_POW: return (uint64_t)ipow((int64_t)a, (int64_t)b, true);
    case B_EQ: return a == b;
    case B_LT: return a < b;
    case B_GT: return a > b;
    case B_LE: return a <= b;
    case B_GE: return a >= b;
    case B_AND: return (a != 0) && (b != 0);
    case B_OR: return (a != 0) || (b != 0);
    case B_XOR: return (a != 0) != (b != 0);
    case B_PRELU: return a; /* never negative */
    case B_MAX: return a > b ? a : b;
    case B_MIN: return a < b ? a : b;
    case B_SHL: return b >= 64 ? 0 : a << b;
    case B_SHR: return b >= 64 ? 0 : a >> b;
    }
    return 0;
}

/* ---- the binary job ------------------------------------------------------------------ */

typedef struct bjob {
    bloop L;
    bop op;
    bin_kernel kernel; /* NULL: generic */
    const char *a, *b;
    char *y;
    ib_dtype adt, bdt, ydt;
    size_t asz, bsz, ysz;
} bjob;

static void bin_seg(const void *ctx, const int64_t *off, int64_t o, int64_t n,
                    const int64_t *step) {
    const bjob *j = (const bjob *)ctx;
    if (j->kernel) {
        j->kernel(j->a + (size_t)off[0] * j->asz, step[0], j->b + (size_t)off[1] * j->bsz,
                  step[1], j->y + (size_t)o * j->ysz, n);
        return;
    }
    int64_t ia = off[0], ib = off[1];
    bool a_float = ib__dtype_is_float(j->adt);
    if (j->op == B_POW && (a_float || ib__dtype_is_float(j->bdt))) {
        /* float base or float exponent: numpy computes in double, then casts to T */
        for (int64_t t = 0; t < n; t++, ia += step[0], ib += step[1]) {
            double bv = ib__dtype_is_signed(j->bdt) || ib__dtype_is_float(j->bdt)
                            ? ib__load_f64(j->b, j->bdt, ib)
                            : (double)(uint64_t)ib__load_i64(j->b, j->bdt, ib);
            double av = ib__dtype_is_signed(j->adt) || a_float
                            ? ib__load_f64(j->a, j->adt, ia)
                            : (double)(uint64_t)ib__load_i64(j->a, j->adt, ia);
            ib__store_f64(j->y, j->ydt, o + t, pow(av, bv));
        }
    } else if (j->op == B_POW) {
        bool bu = !ib__dtype_is_signed(j->bdt);
        for (int64_t t = 0; t < n; t++, ia += step[0], ib += step[1])
            ib__store_i64(j->y, j->ydt, o + t,
                          ipow(ib__load_i64(j->a, j->adt, ia), ib__load_i64(j->b, j->bdt, ib), bu));
    } else if (a_float) {
        for (int64_t t = 0; t < n; t++, ia += step[0], ib += step[1])
            ib__store_f64(j->y, j->ydt, o + t,
                          op_f64(j->op, ib__load_f64(j->a, j->adt, ia), ib__load_f64(j->b, j->bdt, ib)));
    } else if (ib__dtype_is_signed(j->adt)) {
        for (int64_t t = 0; t < n; t++, ia += step[0], ib += step[1])
            ib__store_i64(j->y, j->ydt, o + t,
                          op_i64(j->op, ib__load_i64(j->a, j->adt, ia), ib__load_i64(j->b, j->bdt, ib)));
    } else { /* unsigned and bool */
        for (int64_t t = 0; t < n; t++, ia += step[0], ib += step[1]) {
            uint64_t r = op_u64(j->op, (uint64_t)ib__load_i64(j->a, j->adt, ia),
                                (uint64_t)ib__load_i64(j->b, j->bdt, ib));
            ib__store_i64(j->y, j->ydt, o + t, (int64_t)r);
        }
    }
}

/* Checks that t broadcasts into y's shape (right-aligned, dims equal or 1). */
static ib_status check_bcast_into(const ib__node *node, const ib_tensor *t, const ib_tensor *y,
                                  int32_t which) {
    if (t->rank > y->rank)
        return ib__error(IB_ERR_SHAPE, "%s: input %d has rank %d, more than the output's %d",
                         ib__node_label(node), which, t->rank, y->rank);
    for (int32_t d = 0; d < t->rank; d++) {
        int64_t td = t->shape[d], yd = y->shape[d + y->rank - t->rank];
        if (td != yd && td != 1)
            return ib__error(IB_ERR_SHAPE, "%s: input %d dim %d (%lld) does not broadcast to %lld",
                             ib__node_label(node), which, d, (long long)td, (long long)yd);
    }
    return IB_OK;
}

/* y = a (op) b with broadcasting; a or b may alias y when it has y's shape. */
static ib_status apply_binary(const ib__run_ctx *c, bop op, const ib_tensor *a, const ib_tensor *b,
                              ib_tensor *y) {
    IB_TRY(check_bcast_into(c->node, a, y, 0));
    IB_TRY(check_bcast_into(c->node, b, y, 1));
    bjob j;
    const ib_tensor *ins[2] = {a, b};
    bloop_init(&j.L, y->shape, y->rank, 2, ins);
    j.op = op;
    j.kernel = fast_kernel(op, a->dtype, b->dtype);
    j.a = (const char *)a->data;
    j.b = (const char *)b->data;
    j.y = (char *)y->data;
    j.adt = a->dtype;
    j.bdt = b->dtype;
    j.ydt = y->dtype;
    j.asz = ib_dtype_size(a->dtype);
    j.bsz = ib_dtype_size(b->dtype);
    j.ysz = ib_dtype_size(y->dtype);
    bloop_run(&j.L, c->pool, bin_seg, &j);
    return IB_OK;
}

/* ---- per-op description ---------------------------------------------------------------- */

typedef enum tclass {
    T_NUMERIC,     /* ints and floats */
    T_FLOAT,
    T_UNSIGNED,    /* BitShift */
    T_BOOL,        /* And, Or, Xor */
    T_EQUALITY,    /* numeric or bool */
} tclass;

static bool tclass_accepts(tclass cls, ib_dtype dt) {
    bool num = ib__dtype_is_float(dt) || ib__dtype_is_integer(dt);
    switch (cls) {
    case T_NUMERIC: return num;
    case T_FLOAT: return ib__dtype_is_float(dt);
    case T_UNSIGNED: return ib__dtype_is_integer(dt) && !ib__dtype_is_signed(dt);
    case T_BOOL: return dt == IB_DTYPE_BOOL;
    case T_EQUALITY: return num || dt == IB_DTYPE_BOOL;
    }
    return false;
}

typedef struct binfo {
    ib__op_id id;
    bop op;
    tclass cls;
} binfo;

static const binfo k_binary[] = {
    {IB_OP_ADD, B_ADD, T_NUMERIC},      {IB_OP_SUB, B_SUB, T_NUMERIC},
    {IB_OP_MUL, B_MUL, T_NUMERIC},      {IB_OP_DIV, B_DIV, T_NUMERIC},
    {IB_OP_POW, B_POW, T_NUMERIC},      {IB_OP_MOD, B_MOD, T_NUMERIC},
    {IB_OP_BIT_SHIFT, B_SHL, T_UNSIGNED},
    {IB_OP_EQUAL, B_EQ, T_EQUALITY},    {IB_OP_LESS, B_LT, T_NUMERIC},
    {IB_OP_GREATER, B_GT, T_NUMERIC},   {IB_OP_LESS_OR_EQUAL, B_LE, T_NUMERIC},
    {IB_OP_GREATER_OR_EQUAL, B_GE, T_NUMERIC},
    {IB_OP_AND, B_AND, T_BOOL},         {IB_OP_OR, B_OR, T_BOOL},
    {IB_OP_XOR, B_XOR, T_BOOL},         {IB_OP_P_RELU, B_PRELU, T_NUMERIC},
    {IB_OP_MAX, B_MAX, T_NUMERIC},      {IB_OP_MIN, B_MIN, T_NUMERIC},
    {IB_OP_SUM, B_ADD, T_NUMERIC},      {IB_OP_MEAN, B_ADD, T_FLOAT},
};

static const binfo *binary_info(ib__op_id id) {
    for (size_t i = 0; i < sizeof k_binary / sizeof k_binary[0]; i++)
        if (k_binary[i].id == id) return &k_binary[i];
    return NULL;
}

/* The op with its attributes resolved (Mod's fmod, BitShift's direction). */
static ib_status resolve_op(const ib__node *node, const binfo *bi, bop *out) {
    *out = bi->op;
    if (bi->op == B_MOD) {
        int64_t fmod_attr;
        IB_TRY(ib__attr_int(node, "fmod", 0, &fmod_attr));
        if (fmod_attr != 0 && fmod_attr != 1)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'fmod' must be 0 or 1",
                             ib__node_label(node));
        if (fmod_attr) *out = B_FMOD;
    } else if (bi->op == B_SHL) {
        const char *dir;
        IB_TRY(ib__attr_string(node, "direction", NULL, &dir));
        if (!dir)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'direction' is missing",
                             ib__node_label(node));
        if (strcmp(dir, "LEFT") == 0)
            *out = B_SHL;
        else if (strcmp(dir, "RIGHT") == 0)
            *out = B_SHR;
        else
            return ib__error(IB_ERR_INVALID_MODEL,
                             "%s: attribute 'direction' must be LEFT or RIGHT, not '%s'",
                             ib__node_label(node), dir);
    }
    return IB_OK;
}

static bool is_variadic(ib__op_id id) {
    return id == IB_OP_MAX || id == IB_OP_MIN || id == IB_OP_SUM || id == IB_OP_MEAN;
}

/* Before opset 7, broadcast=1 with an 'axis' placed B's dims at that axis of A instead
 * of right-aligning them. Returns B's dims laid out for numpy-style broadcasting.
 * *rank = -1 when A's rank is unknown. */
static ib_status legacy_b_dims(const ib__node *node, int32_t opset, int32_t a_rank,
                               int32_t b_rank, const int64_t *b_dims, int32_t *rank,
                               int64_t *dims, bool *changed) {
    *changed = false;
    if (opset >= 7 || is_variadic(node->op) || node->op == IB_OP_P_RELU) return IB_OK;
    int64_t bc;
    IB_TRY(ib__attr_int(node, "broadcast", 0, &bc));
    const ib__attr *ax = ib__node_attr(node, "axis");
    if (!bc || !ax || b_rank < 0) return IB_OK;
    *changed = true;
    if (a_rank < 0) {
        *rank = -1;
        return IB_OK;
    }
    if (ax->kind != IB_ATTR_INT)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'axis' should be an int",
                         ib__node_label(node));
    int64_t axis = ax->i < 0 ? ax->i + a_rank : ax->i;
    if (axis < 0 || axis + b_rank > a_rank)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: legacy broadcast axis %lld does not fit",
                         ib__node_label(node), (long long)ax->i);
    *rank = a_rank;
    for (int32_t d = 0; d < a_rank; d++) dims[d] = 1;
    for (int32_t d = 0; d < b_rank; d++) dims[axis + d] = b_dims[d];
    return IB_OK;
}

/* Before opset 7, PRelu's 1-D slope ran along the channel axis (1). */
static bool legacy_prelu(int32_t opset, int32_t x_rank, const int64_t *x_dims, int32_t s_rank,
                         const int64_t *s_dims) {
    return opset < 7 && x_rank >= 2 && s_rank == 1 && s_dims[0] == x_dims[1] && s_dims[0] != 1;
}

static void set_out_bcast(ib__infer_ctx *c, ib_dtype dt, int32_t rank, const int64_t *dims,
                          const char *const *params) {
    if (c->n_out < 1 || !c->out[0]) return;
    ib__set_output(c, 0, dt, rank, rank >= 0 ? dims : NULL);
    for (int32_t d = 0; d < rank && params; d++) c->out[0]->dim_param[d] = params[d];
}

static ib_status check_dtype(const ib__node *node, tclass cls, const ib__value *v, int32_t i) {
    if (v->dtype == IB_DTYPE_UNDEFINED || tclass_accepts(cls, v->dtype)) return IB_OK;
    return ib__error(v->dtype == IB_DTYPE_STRING ? IB_ERR_UNSUPPORTED : IB_ERR_INVALID_MODEL,
                     "%s: input %d of type %s is not supported", ib__node_label(node), i,
                     ib_dtype_name(v->dtype));
}

static ib_status check_same_dtype(const ib__node *node, const ib__value *a, const ib__value *b,
                                  int32_t i) {
    if (a->dtype == IB_DTYPE_UNDEFINED || b->dtype == IB_DTYPE_UNDEFINED || a->dtype == b->dtype)
        return IB_OK;
    return ib__error(IB_ERR_INVALID_MODEL, "%s: input %d is %s but input 0 is %s",
                     ib__node_label(node), i, ib_dtype_name(b->dtype), ib_dtype_name(a->dtype));
}

static ib_status infer_binary(ib__infer_ctx *c) {
    const binfo *bi = binary_info(c->node->op);
    if (!bi) return ib__error(IB_ERR_INTERNAL, "%s: not a binary op", ib__node_label(c->node));
    bop op;
    IB_TRY(resolve_op(c->node, bi, &op));
    bool variadic = is_variadic(c->node->op);
    int32_t n = c->n_in;
    if (variadic) {
        if (n < 1)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: needs at least one input",
                             ib__node_label(c->node));
    } else if (n != 2) {
        return ib__error(IB_ERR_INVALID_MODEL, "%s: takes 2 inputs, not %d",
                         ib__node_label(c->node), n);
    }
    for (int32_t i = 0; i < n; i++) {
        IB_TRY(ib__require_input(c, i));
        if (op == B_POW && i == 1) {
            IB_TRY(check_dtype(c->node, T_NUMERIC, c->in[1], 1));
            continue;
        }
        IB_TRY(check_dtype(c->node, bi->cls, c->in[i], i));
        IB_TRY(check_same_dtype(c->node, c->in[0], c->in[i], i));
    }
    const ib__value *a = c->in[0];
    ib_dtype odt = bop_is_compare(op) || bop_is_logic(op) ? IB_DTYPE_BOOL : a->dtype;
    if (op == B_PRELU) {
        /* slope broadcasts to X (one way): the output is X's shape */
        const ib__value *s = c->in[1];
        if (a->rank >= 0 && s->rank >= 0 &&
            !legacy_prelu(c->opset, a->rank, a->dims, s->rank, s->dims)) {
            const ib__value *vals[2] = {a, s};
            int32_t r;
            int64_t dims[IB_MAX_RANK];
            IB_TRY(ib__broadcast_values(c, 2, vals, &r, dims, NULL));
            if (r != a->rank)
                return ib__error(IB_ERR_SHAPE, "%s: slope has more dims than X",
                                 ib__node_label(c->node));
            for (int32_t d = 0; d < r; d++)
                if (dims[d] >= 0 && a->dims[d] >= 0 && dims[d] != a->dims[d])
                    return ib__error(IB_ERR_SHAPE, "%s: slope does not broadcast to X at dim %d",
                                     ib__node_label(c->node), d);
        }
        ib__set_output_like(c, 0, a);
        return IB_OK;
    }
    ib__value b_adj;
    const ib__value *vals[2] = {a, n > 1 ? c->in[1] : NULL};
    if (!variadic) {
        bool changed;
        int32_t r;
        int64_t dims[IB_MAX_RANK];
        IB_TRY(legacy_b_dims(c->node, c->opset, a->rank, c->in[1]->rank, c->in[1]->dims, &r,
                             dims, &changed));
        if (changed) {
            if (r < 0) {
                set_out_bcast(c, odt, -1, NULL, NULL);
                return IB_OK;
            }
            b_adj = *c->in[1];
            b_adj.rank = r;
            memcpy(b_adj.dims, dims, sizeof(int64_t) * (size_t)r);
            for (int32_t d = 0; d < r; d++) b_adj.dim_param[d] = NULL;
            vals[1] = &b_adj;
        }
    }
    int32_t rank;
    int64_t dims[IB_MAX_RANK];
    const char *params[IB_MAX_RANK];
    if (variadic)
        IB_TRY(ib__broadcast_values(c, n, (const ib__value *const *)c->in, &rank, dims, params));
    else
        IB_TRY(ib__broadcast_values(c, 2, vals, &rank, dims, params));
    if (rank > IB_MAX_RANK)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: rank %d is too large", ib__node_label(c->node),
                         rank);
    set_out_bcast(c, odt, rank, dims, params);
    return IB_OK;
}

static ib_status run_binary(ib__run_ctx *c) {
    const binfo *bi = binary_info(c->node->op);
    if (!bi) return ib__error(IB_ERR_INTERNAL, "%s: not a binary op", ib__node_label(c->node));
    bop op;
    IB_TRY(resolve_op(c->node, bi, &op));
    ib_tensor *y = c->n_out > 0 ? c->out[0] : NULL;
    int32_t n = c->n_in;
    if (n < 1 || (!is_variadic(c->node->op) && n != 2))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: wrong number of inputs (%d)",
                         ib__node_label(c->node), n);
    for (int32_t i = 0; i < n; i++) {
        if (!c->in[i])
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input %d is missing",
                             ib__node_label(c->node), i);
        bool pow_exp = op == B_POW && i == 1;
        if (!tclass_accepts(pow_exp ? T_NUMERIC : bi->cls, c->in[i]->dtype))
            return ib__error(IB_ERR_UNSUPPORTED, "%s: input %d of type %s is not supported",
                             ib__node_label(c->node), i, ib_dtype_name(c->in[i]->dtype));
        if (!pow_exp && c->in[i]->dtype != c->in[0]->dtype)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: input %d is %s but input 0 is %s",
                             ib__node_label(c->node), i, ib_dtype_name(c->in[i]->dtype),
                             ib_dtype_name(c->in[0]->dtype));
    }
    if (!y) return IB_OK;
    ib_dtype odt = bop_is_compare(op) || bop_is_logic(op) ? IB_DTYPE_BOOL : c->in[0]->dtype;
    if (y->dtype != odt)
        return ib__error(IB_ERR_INTERNAL, "%s: output is %s, expected %s",
                         ib__node_label(c->node), ib_dtype_name(y->dtype), ib_dtype_name(odt));
    if (ib_tensor_element_count(y) < 0)
        return ib__error(IB_ERR_SHAPE, "%s: bad output shape", ib__node_label(c->node));

    if (!is_variadic(c->node->op)) {
        ib_tensor a = *c->in[0], b = *c->in[1];
        if (op == B_PRELU) {
            if (legacy_prelu(c->opset, a.rank, a.shape, b.rank, b.shape)) {
                b.rank = a.rank - 1; /* [C] -> [C, 1, ..., 1] */
                for (int32_t d = 1; d < b.rank; d++) b.shape[d] = 1;
            }
        } else {
            bool changed;
            int32_t r;
            int64_t dims[IB_MAX_RANK];
            IB_TRY(legacy_b_dims(c->node, c->opset, a.rank, b.rank, b.shape, &r, dims, &changed));
            if (changed) {
                b.rank = r;
                memcpy(b.shape, dims, sizeof(int64_t) * (size_t)r);
            }
        }
        return apply_binary(c, op, &a, &b, y);
    }

    /* variadic: y = in0 (op) in1, then y = y (op) in_k */
    const ib_tensor *in0 = c->in[0];
    if (n == 1) { /* a broadcast copy: max(x, x) == x, NaN included */
        IB_TRY(apply_binary(c, B_MAX, in0, in0, y));
    } else {
        IB_TRY(apply_binary(c, op, in0, c->in[1], y));
        for (int32_t k = 2; k < n; k++) IB_TRY(apply_binary(c, op, y, c->in[k], y));
    }
    if (c->node->op == IB_OP_MEAN && n > 1) {
        int64_t cnt = ib_tensor_element_count(y);
        if (y->dtype == IB_DTYPE_FLOAT32) {
            float *p = (float *)y->data;
            float inv = (float)n;
            for (int64_t i = 0; i < cnt; i++) p[i] /= inv;
        } else {
            for (int64_t i = 0; i < cnt; i++)
                ib__store_f64(y->data, y->dtype, i, ib__load_f64(y->data, y->dtype, i) / n);
        }
    }
    return IB_OK;
}

/* ---- Where ------------------------------------------------------------------------------ */

static ib_status infer_where(ib__infer_ctx *c) {
    if (c->n_in != 3)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: takes 3 inputs, not %d",
                         ib__node_label(c->node), c->n_in);
    for (int32_t i = 0; i < 3; i++) IB_TRY(ib__require_input(c, i));
    if (c->in[0]->dtype != IB_DTYPE_UNDEFINED && c->in[0]->dtype != IB_DTYPE_BOOL)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: condition must be bool, not %s",
                         ib__node_label(c->node), ib_dtype_name(c->in[0]->dtype));
    IB_TRY(check_same_dtype(c->node, c->in[1], c->in[2], 2));
    ib_dtype dt = c->in[1]->dtype != IB_DTYPE_UNDEFINED ? c->in[1]->dtype : c->in[2]->dtype;
    if (dt == IB_DTYPE_STRING)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: string tensors are not supported",
                         ib__node_label(c->node));
    int32_t rank;
    int64_t dims[IB_MAX_RANK];
    const char *params[IB_MAX_RANK];
    IB_TRY(ib__broadcast_values(c, 3, (const ib__value *const *)c->in, &rank, dims, params));
    set_out_bcast(c, dt, rank, dims, params);
    return IB_OK;
}

typedef struct wjob {
    bloop L;
    const uint8_t *cond;
    const char *x, *z;
    char *y;
    size_t esz;
} wjob;

#define WHERE_LOOP(T)                                                                     \
    do {                                                                                  \
        const T *x = (const T *)j->x + off[1];                                            \
        const T *z = (const T *)j->z + off[2];                                            \
        T *y = (T *)j->y + o;                                                             \
        int64_t s0 = step[0], s1 = step[1], s2 = step[2];                                 \
        for (int64_t i = 0; i < n; i++) { /* both loads first: the select vectorises */   \
            T u = x[i * s1], v = z[i * s2];                                                \
            y[i] = cond[i * s0] ? u : v;                                                   \
        }                                                                                 \
    } while (0)

static void where_seg(const void *ctx, const int64_t *off, int64_t o, int64_t n,
                      const int64_t *step) {
    const wjob *j = (const wjob *)ctx;
    const uint8_t *cond = j->cond + off[0];
    switch (j->esz) {
    case 1: WHERE_LOOP(uint8_t); break;
    case 2: WHERE_LOOP(uint16_t); break;
    case 4: WHERE_LOOP(uint32_t); break;
    case 8: WHERE_LOOP(uint64_t); break;
    default:
        for (int64_t i = 0; i < n; i++) {
            const char *src = cond[i * step[0]] ? j->x + (size_t)(off[1] + i * step[1]) * j->esz
                                                : j->z + (size_t)(off[2] + i * step[2]) * j->esz;
            memcpy(j->y + (size_t)(o + i) * j->esz, src, j->esz);
        }
        break;
    }
}

static ib_status run_where(ib__run_ctx *c) {
    if (c->n_in != 3 || !c->in[0] || !c->in[1] || !c->in[2])
        return ib__error(IB_ERR_INVALID_MODEL, "%s: needs 3 inputs", ib__node_label(c->node));
    ib_tensor *y = c->n_out > 0 ? c->out[0] : NULL;
    if (!y) return IB_OK;
    const ib_tensor *cond = c->in[0], *x = c->in[1], *z = c->in[2];
    if (cond->dtype != IB_DTYPE_BOOL)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: condition must be bool, not %s",
                         ib__node_label(c->node), ib_dtype_name(cond->dtype));
    if (x->dtype != z->dtype || y->dtype != x->dtype || ib_dtype_size(x->dtype) == 0)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: X (%s), Y (%s) and output (%s) types differ",
                         ib__node_label(c->node), ib_dtype_name(x->dtype),
                         ib_dtype_name(z->dtype), ib_dtype_name(y->dtype));
    if (ib_tensor_element_count(y) < 0)
        return ib__error(IB_ERR_SHAPE, "%s: bad output shape", ib__node_label(c->node));
    for (int32_t i = 0; i < 3; i++) IB_TRY(check_bcast_into(c->node, c->in[i], y, i));
    wjob j;
    bloop_init(&j.L, y->shape, y->rank, 3, c->in);
    j.cond = (const uint8_t *)cond->data;
    j.x = (const char *)x->data;
    j.z = (const char *)z->data;
    j.y = (char *)y->data;
    j.esz = ib_dtype_size(y->dtype);
    bloop_run(&j.L, c->pool, where_seg, &j);
    return IB_OK;
}

#define BINARY(id) {IB_OP_##id, infer_binary, run_binary, false}

const ib__op_def ib__ops_binary[] = {
    BINARY(ADD), BINARY(SUB), BINARY(MUL), BINARY(DIV), BINARY(POW), BINARY(MOD),
    BINARY(BIT_SHIFT), BINARY(EQUAL), BINARY(LESS), BINARY(GREATER), BINARY(LESS_OR_EQUAL),
    BINARY(GREATER_OR_EQUAL), BINARY(AND), BINARY(OR), BINARY(XOR), BINARY(P_RELU),
    BINARY(MAX), BINARY(MIN), BINARY(SUM), BINARY(MEAN),
    {IB_OP_WHERE, infer_where, run_where, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
