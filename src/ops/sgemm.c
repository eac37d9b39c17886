/* Float32 GEMM for the reference executor's hot ops: A and B are packed into zero-padded
 * panels, a 6-row register-blocked micro-kernel (GCC vector extensions, so it is plain
 * portable C) runs over cache-sized tiles, and the tiles run in parallel. On x86-64 the
 * same kernel source is also built for AVX2+FMA and picked at run time. */
#include <stdatomic.h>
#include <string.h>

#include "ops/sgemm.h"

#define MR 6
#define KC 256 /* depth of a packed block: a B micro-panel (KC x NR) stays in L1 */
#define MC 72  /* rows of a tile: its A block (MC x KC) stays in L2 */
#define NC 256 /* columns of a tile */

typedef void (*kernel_fn)(int64_t kc, const float *restrict a, const float *restrict b,
                          float *restrict c, int64_t ldc, float alpha, float beta);

typedef struct kernel_impl {
    kernel_fn fn;
    int64_t nr; /* columns per micro-tile: two vectors */
} kernel_impl;

/* The micro-kernel: c[0..6)[0..2V) = alpha * sum_p a[p][0..6) x b[p][0..2V) + beta * c,
 * with 12 vector accumulators held in registers. `a` is a packed MR-row panel (MR floats
 * per depth step), `b` a packed panel (2V floats per step, aligned to the vector). */
#define IB__SGEMM_STORE_ROW(VTU, r, x0, x1)                                         \
    do {                                                                         \
        VTU *cr0_ = (VTU *)(c + (r) * ldc), *cr1_ = (VTU *)(c + (r) * ldc + nv); \
        if (beta == 0.0f) {                                                      \
            *cr0_ = alpha * (x0);                                                \
            *cr1_ = alpha * (x1);                                                \
        } else {                                                                 \
            *cr0_ = alpha * (x0) + beta * *cr0_;                                 \
            *cr1_ = alpha * (x1) + beta * *cr1_;                                 \
        }                                                                        \
    } while (0)

#define IB__SGEMM_DEFINE_KERNEL(NAME, ATTR, VT, VTU)                                      \
    ATTR static void NAME(int64_t kc, const float *restrict a, const float *restrict b,   \
                          float *restrict c, int64_t ldc, float alpha, float beta) {      \
        enum { nv = sizeof(VT) / sizeof(float) };                                         \
        VT c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};              \
        VT c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};              \
        for (int64_t p = 0; p < kc; p++) {                                                \
            VT b0 = *(const VT *)b, b1 = *(const VT *)(b + nv);                           \
            c00 += a[0] * b0;                                                             \
            c01 += a[0] * b1;                                                             \
            c10 += a[1] * b0;                                                             \
            c11 += a[1] * b1;                                                             \
            c20 += a[2] * b0;                                                             \
            c21 += a[2] * b1;                                                             \
            c30 += a[3] * b0;                                                             \
            c31 += a[3] * b1;                                                             \
            c40 += a[4] * b0;                                                             \
            c41 += a[4] * b1;                                                             \
            c50 += a[5] * b0;                                                             \
            c51 += a[5] * b1;                                                             \
            a += MR;                                                                      \
            b += 2 * nv;                                                                  \
        }                                                                                 \
        IB__SGEMM_STORE_ROW(VTU, 0, c00, c01);                                                 \
        IB__SGEMM_STORE_ROW(VTU, 1, c10, c11);                                                 \
        IB__SGEMM_STORE_ROW(VTU, 2, c20, c21);                                                 \
        IB__SGEMM_STORE_ROW(VTU, 3, c30, c31);                                                 \
        IB__SGEMM_STORE_ROW(VTU, 4, c40, c41);                                                 \
        IB__SGEMM_STORE_ROW(VTU, 5, c50, c51);                                                 \
    }

typedef float v4f __attribute__((vector_size(16)));
typedef float v4f_u __attribute__((vector_size(16), aligned(4), may_alias));
IB__SGEMM_DEFINE_KERNEL(kernel_generic_6x8, , v4f, v4f_u)

#if defined(__x86_64__) && defined(__GNUC__)
#define IB__SGEMM_HAVE_AVX2 1
typedef float v8f __attribute__((vector_size(32)));
typedef float v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
/* -std=c11 turns off FMA contraction; the AVX2 build wants a*b+c fused. */
#if defined(__clang__)
#define IB__SGEMM_AVX2_ATTR __attribute__((target("avx2,fma")))
#else
#define IB__SGEMM_AVX2_ATTR __attribute__((target("avx2,fma"), optimize("fp-contract=fast")))
#endif
IB__SGEMM_DEFINE_KERNEL(kernel_avx2_6x16, IB__SGEMM_AVX2_ATTR, v8f, v8f_u)
#endif

static const kernel_impl k_generic = {kernel_generic_6x8, 8};
#ifdef IB__SGEMM_HAVE_AVX2
static const kernel_impl k_avx2 = {kernel_avx2_6x16, 16};
#endif

static atomic_int g_force_generic;

void ib__sgemm_use_generic_kernel(bool on) { atomic_store(&g_force_generic, on ? 1 : 0); }

static const kernel_impl *pick_kernel(void) {
#ifdef IB__SGEMM_HAVE_AVX2
    if (!atomic_load(&g_force_generic) && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return &k_avx2;
#endif
    return &k_generic;
}

/* ---- The packed driver -------------------------------------------------------------- */

typedef struct gemm_job {
    const kernel_impl *ker;
    ib__sgemm_shape s;
    int64_t batch;
    const float *a, *b;
    float *c;
    const int64_t *a_off, *b_off, *c_off; /* a_off/b_off NULL: shared, packed once */
    int64_t mp, np;                       /* m, n rounded up to MR, NR */
    int64_t m_panels, n_panels, m_tiles, n_tiles;
    int64_t a_packs, b_packs; /* packed copies of A / B: 1 when shared, else batch */
    float *ap, *bp;
} gemm_job;

/* Packed layout of one operand copy: the depth blocks [pc, pc + kc) follow each other;
 * block pc starts at pc * mp and holds m_panels panels of kc * MR floats, depth-major. */
static void pack_a_panel(const gemm_job *j, int64_t copy, int64_t panel) {
    const ib__sgemm_shape *s = &j->s;
    const float *src = j->a + (j->a_off ? j->a_off[copy] : 0);
    float *base = j->ap + copy * j->mp * s->k;
    int64_t r0 = panel * MR;
    int64_t mr = s->m - r0 < MR ? s->m - r0 : MR;
    for (int64_t pc = 0; pc < s->k; pc += KC) {
        int64_t kc = s->k - pc < KC ? s->k - pc : KC;
        float *dst = base + pc * j->mp + panel * MR * kc;
        for (int64_t r = 0; r < MR; r++) {
            if (r >= mr) {
                for (int64_t p = 0; p < kc; p++) dst[p * MR + r] = 0.0f;
                continue;
            }
            const float *row = src + (r0 + r) * s->a_rs + pc * s->a_cs;
            if (s->a_cs == 1)
                for (int64_t p = 0; p < kc; p++) dst[p * MR + r] = row[p];
            else
                for (int64_t p = 0; p < kc; p++) dst[p * MR + r] = row[p * s->a_cs];
        }
    }
}

static void pack_b_panel(const gemm_job *j, int64_t copy, int64_t panel) {
    const ib__sgemm_shape *s = &j->s;
    const int64_t nr = j->ker->nr;
    const float *src = j->b + (j->b_off ? j->b_off[copy] : 0);
    float *base = j->bp + copy * j->np * s->k;
    int64_t c0 = panel * nr;
    int64_t ncols = s->n - c0 < nr ? s->n - c0 : nr;
    for (int64_t pc = 0; pc < s->k; pc += KC) {
        int64_t kc = s->k - pc < KC ? s->k - pc : KC;
        float *dst = base + pc * j->np + panel * nr * kc;
        if (s->b_cs == 1) {
            for (int64_t p = 0; p < kc; p++) {
                const float *row = src + (pc + p) * s->b_rs + c0;
                memcpy(dst + p * nr, row, (size_t)ncols * sizeof(float));
                for (int64_t q = ncols; q < nr; q++) dst[p * nr + q] = 0.0f;
            }
        } else {
            /* Column-major-ish B (a transposed operand): walk each column contiguously. */
            for (int64_t q = 0; q < nr; q++) {
                if (q >= ncols) {
                    for (int64_t p = 0; p < kc; p++) dst[p * nr + q] = 0.0f;
                    continue;
                }
                const float *col = src + pc * s->b_rs + (c0 + q) * s->b_cs;
                for (int64_t p = 0; p < kc; p++) dst[p * nr + q] = col[p * s->b_rs];
            }
        }
    }
}

static void pack_range(void *ctx, int64_t begin, int64_t end) {
    const gemm_job *j = ctx;
    int64_t a_jobs = j->a_packs * j->m_panels;
    for (int64_t t = begin; t < end; t++) {
        if (t < a_jobs) {
            pack_a_panel(j, t / j->m_panels, t % j->m_panels);
        } else {
            int64_t u = t - a_jobs;
            pack_b_panel(j, u / j->n_panels, u % j->n_panels);
        }
    }
}

static void compute_tile(const gemm_job *j, int64_t bi, int64_t tm, int64_t tn) {
    const ib__sgemm_shape *s = &j->s;
    const int64_t nr = j->ker->nr;
    const float *ap = j->ap + (j->a_packs > 1 ? bi : 0) * j->mp * s->k;
    const float *bp = j->bp + (j->b_packs > 1 ? bi : 0) * j->np * s->k;
    float *c = j->c + (j->c_off ? j->c_off[bi] : 0);
    int64_t i_lo = tm * MC, i_hi = i_lo + MC < s->m ? i_lo + MC : s->m;
    int64_t j_lo = tn * NC, j_hi = j_lo + NC < s->n ? j_lo + NC : s->n;
    float tmp[MR * 16] __attribute__((aligned(64)));
    for (int64_t pc = 0; pc < s->k; pc += KC) {
        int64_t kc = s->k - pc < KC ? s->k - pc : KC;
        float beta = pc == 0 ? s->beta : 1.0f;
        for (int64_t jc = j_lo; jc < j_hi; jc += nr) {
            const float *bpanel = bp + pc * j->np + (jc / nr) * nr * kc;
            int64_t ncols = j_hi - jc < nr ? j_hi - jc : nr;
            for (int64_t ic = i_lo; ic < i_hi; ic += MR) {
                const float *apanel = ap + pc * j->mp + (ic / MR) * MR * kc;
                int64_t mrows = i_hi - ic < MR ? i_hi - ic : MR;
                float *ct = c + ic * s->ldc + jc;
                if (mrows == MR && ncols == nr) {
                    j->ker->fn(kc, apanel, bpanel, ct, s->ldc, s->alpha, beta);
                    continue;
                }
                j->ker->fn(kc, apanel, bpanel, tmp, nr, 1.0f, 0.0f);
                for (int64_t r = 0; r < mrows; r++) {
                    float *crow = ct + r * s->ldc;
                    const float *trow = tmp + r * nr;
                    if (beta == 0.0f)
                        for (int64_t q = 0; q < ncols; q++) crow[q] = s->alpha * trow[q];
                    else
                        for (int64_t q = 0; q < ncols; q++)
                            crow[q] = s->alpha * trow[q] + beta * crow[q];
                }
            }
        }
    }
}

static void compute_range(void *ctx, int64_t begin, int64_t end) {
    const gemm_job *j = ctx;
    int64_t per_batch = j->m_tiles * j->n_tiles;
    for (int64_t t = begin; t < end; t++) {
        int64_t bi = t / per_batch, r = t % per_batch;
        compute_tile(j, bi, r / j->n_tiles, r % j->n_tiles);
    }
}

/* ---- Direct path for very short A (one or two rows: a vector-matrix product), where
 * padding A to six rows and packing B would cost more than the product itself. -------- */

typedef struct gemv_job {
    ib__sgemm_shape s;
    const float *a, *b;
    float *c;
    const int64_t *a_off, *b_off, *c_off;
    int64_t chunks; /* column chunks per product */
} gemv_job;

#define GEMV_CHUNK 512

static void gemv_range(void *ctx, int64_t begin, int64_t end) {
    const gemv_job *j = ctx;
    const ib__sgemm_shape *s = &j->s;
    float acc[GEMV_CHUNK];
    for (int64_t t = begin; t < end; t++) {
        int64_t bi = t / j->chunks;
        int64_t j0 = (t % j->chunks) * GEMV_CHUNK;
        int64_t nc = s->n - j0 < GEMV_CHUNK ? s->n - j0 : GEMV_CHUNK;
        const float *a = j->a + (j->a_off ? j->a_off[bi] : 0);
        const float *b = j->b + (j->b_off ? j->b_off[bi] : 0) + j0;
        float *c = j->c + (j->c_off ? j->c_off[bi] : 0) + j0;
        for (int64_t i = 0; i < s->m; i++) {
            for (int64_t q = 0; q < nc; q++) acc[q] = 0.0f;
            for (int64_t p = 0; p < s->k; p++) {
                float av = a[i * s->a_rs + p * s->a_cs];
                const float *brow = b + p * s->b_rs;
                for (int64_t q = 0; q < nc; q++) acc[q] += av * brow[q];
            }
            float *crow = c + i * s->ldc;
            if (s->beta == 0.0f)
                for (int64_t q = 0; q < nc; q++) crow[q] = s->alpha * acc[q];
            else
                for (int64_t q = 0; q < nc; q++) crow[q] = s->alpha * acc[q] + s->beta * crow[q];
        }
    }
}

/* A NULL offset array, or one whose entries are all equal, names one shared operand. */
static bool shared_operand(const int64_t *off, int64_t batch) {
    if (!off) return true;
    for (int64_t i = 1; i < batch; i++)
        if (off[i] != off[0]) return false;
    return true;
}

static void scale_c(const ib__sgemm_shape *s, int64_t batch, float *c, const int64_t *c_off) {
    for (int64_t bi = 0; bi < batch; bi++) {
        float *cb = c + (c_off ? c_off[bi] : 0);
        for (int64_t i = 0; i < s->m; i++)
            for (int64_t q = 0; q < s->n; q++)
                cb[i * s->ldc + q] = s->beta == 0.0f ? 0.0f : s->beta * cb[i * s->ldc + q];
    }
}

ib_status ib__sgemm_batched(ib__pool *pool, const ib__sgemm_shape *s, int64_t batch,
                            const float *a, const int64_t *a_off, const float *b,
                            const int64_t *b_off, float *c, const int64_t *c_off) {
    if (batch <= 0 || s->m <= 0 || s->n <= 0) return IB_OK;
    if (s->k <= 0) {
        scale_c(s, batch, c, c_off);
        return IB_OK;
    }
    if (s->m <= 2 && s->b_cs == 1) {
        gemv_job g = {*s, a, b, c, a_off, b_off, c_off, (s->n + GEMV_CHUNK - 1) / GEMV_CHUNK};
        ib__parallel_for(pool, batch * g.chunks, gemv_range, &g);
        return IB_OK;
    }

    gemm_job j;
    memset(&j, 0, sizeof j);
    j.ker = pick_kernel();
    j.s = *s;
    j.batch = batch;
    j.a = a;
    j.b = b;
    j.c = c;
    j.c_off = c_off;
    const int64_t nr = j.ker->nr;
    j.m_panels = (s->m + MR - 1) / MR;
    j.n_panels = (s->n + nr - 1) / nr;
    j.mp = j.m_panels * MR;
    j.np = j.n_panels * nr;
    j.m_tiles = (s->m + MC - 1) / MC;
    j.n_tiles = (s->n + NC - 1) / NC;
    bool a_shared = shared_operand(a_off, batch), b_shared = shared_operand(b_off, batch);
    /* A shared operand is packed once, from its (common) offset. */
    if (a_shared) j.a = a + (a_off ? a_off[0] : 0);
    else j.a_off = a_off;
    if (b_shared) j.b = b + (b_off ? b_off[0] : 0);
    else j.b_off = b_off;
    j.a_packs = a_shared ? 1 : batch;
    j.b_packs = b_shared ? 1 : batch;

    int64_t a_elems, b_elems;
    if (ib__mul_overflow_i64(j.a_packs * j.mp, s->k, &a_elems) ||
        ib__mul_overflow_i64(j.b_packs * j.np, s->k, &b_elems) || a_elems > IB_MAX_ELEMENTS ||
        b_elems > IB_MAX_ELEMENTS)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "matrix product %lldx%lldx%lld is too large",
                         (long long)s->m, (long long)s->n, (long long)s->k);
    j.ap = ib__aligned_alloc((size_t)a_elems * sizeof(float));
    j.bp = ib__aligned_alloc((size_t)b_elems * sizeof(float));
    if (!j.ap || !j.bp) {
        ib__aligned_free(j.ap);
        ib__aligned_free(j.bp);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory packing a %lldx%lldx%lld product",
                         (long long)s->m, (long long)s->n, (long long)s->k);
    }
    ib__parallel_for(pool, j.a_packs * j.m_panels + j.b_packs * j.n_panels, pack_range, &j);
    ib__parallel_for(pool, batch * j.m_tiles * j.n_tiles, compute_range, &j);
    ib__aligned_free(j.ap);
    ib__aligned_free(j.bp);
    return IB_OK;
}

ib_status ib__sgemm(ib__pool *pool, const ib__sgemm_shape *s, const float *a, const float *b,
                    float *c) {
    return ib__sgemm_batched(pool, s, 1, a, NULL, b, NULL, c, NULL);
}
