/* Float32 GEMM for the reference executor's hot ops: tiles of C run in parallel; each
 * packs cache-sized blocks of A and B into zero-padded panels and runs a 6-row
 * register-blocked micro-kernel over them (GCC vector extensions, so plain portable C).
 * On x86-64 the same kernel source is also built for AVX2+FMA and picked at run time. */
#include <stdatomic.h>
#include <string.h>

#include "ops/sgemm.h"

#define MR 6
#define KC 256 /* depth of a packed block: a B micro-panel (KC x NR) stays in L1 */
#define MC 72  /* rows of a packed A block: with the B block it stays in L2 */
#define NC 256 /* columns of a task's tile and of its packed B block */

typedef void (*kernel_fn)(int64_t kc, const float *restrict a, const float *restrict b,
                          float *restrict c, int64_t ldc, float alpha, float beta);

typedef struct kernel_impl {
    kernel_fn fn;
    int64_t nr; /* columns per micro-tile: two vectors */
} kernel_impl;

/* The micro-kernel: c[0..6)[0..2V) = alpha * sum_p a[p][0..6) x b[p][0..2V) + beta * c,
 * with 12 vector accumulators held in registers. `a` is a packed MR-row panel (MR floats
 * per depth step), `b` a packed panel (2V floats per step, aligned to the vector). */
#define IB__SGEMM_STORE_ROW(VTU, r, x0, x1)                                                        \
    do {                                                                                           \
        VTU *cr0_ = (VTU *)(c + (r)*ldc), *cr1_ = (VTU *)(c + (r)*ldc + nv);                       \
        if (beta == 0.0f) {                                                                        \
            *cr0_ = alpha * (x0);                                                                  \
            *cr1_ = alpha * (x1);                                                                  \
        } else {                                                                                   \
            *cr0_ = alpha * (x0) + beta * *cr0_;                                                   \
            *cr1_ = alpha * (x1) + beta * *cr1_;                                                   \
        }                                                                                          \
    } while (0)

#define IB__SGEMM_DEFINE_KERNEL(NAME, ATTR, VT, VTU)                                               \
    ATTR static void NAME(int64_t kc, const float *restrict a, const float *restrict b,            \
                          float *restrict c, int64_t ldc, float alpha, float beta) {               \
        enum { nv = sizeof(VT) / sizeof(float) };                                                  \
        VT c00 = {0}, c01 = {0}, c10 = {0}, c11 = {0}, c20 = {0}, c21 = {0};                       \
        VT c30 = {0}, c31 = {0}, c40 = {0}, c41 = {0}, c50 = {0}, c51 = {0};                       \
        for (int64_t p = 0; p < kc; p++) {                                                         \
            VT b0 = *(const VT *)b, b1 = *(const VT *)(b + nv);                                    \
            c00 += a[0] * b0;                                                                      \
            c01 += a[0] * b1;                                                                      \
            c10 += a[1] * b0;                                                                      \
            c11 += a[1] * b1;                                                                      \
            c20 += a[2] * b0;                                                                      \
            c21 += a[2] * b1;                                                                      \
            c30 += a[3] * b0;                                                                      \
            c31 += a[3] * b1;                                                                      \
            c40 += a[4] * b0;                                                                      \
            c41 += a[4] * b1;                                                                      \
            c50 += a[5] * b0;                                                                      \
            c51 += a[5] * b1;                                                                      \
            a += MR;                                                                               \
            b += 2 * nv;                                                                           \
        }                                                                                          \
        IB__SGEMM_STORE_ROW(VTU, 0, c00, c01);                                                     \
        IB__SGEMM_STORE_ROW(VTU, 1, c10, c11);                                                     \
        IB__SGEMM_STORE_ROW(VTU, 2, c20, c21);                                                     \
        IB__SGEMM_STORE_ROW(VTU, 3, c30, c31);                                                     \
        IB__SGEMM_STORE_ROW(VTU, 4, c40, c41);                                                     \
        IB__SGEMM_STORE_ROW(VTU, 5, c50, c51);                                                     \
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

void ib__sgemm_use_generic_kernel(bool on) {
    atomic_store(&g_force_generic, on ? 1 : 0);
}

static const kernel_impl *pick_kernel(void) {
#ifdef IB__SGEMM_HAVE_AVX2
    if (!atomic_load(&g_force_generic) && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma"))
        return &k_avx2;
#endif
    return &k_generic;
}

/* ---- The packed driver --------------------------------------------------------------
 * Each task owns a tile of C (a row range by a column range of one product). For each
 * depth block it packs its B block (KC x up to NC) once, then for each MC-row slice of
 * its rows packs that A block and sweeps the micro-kernel over it. Packing buffers are
 * per-thread slots allocated once per call, so the scratch stays small (L2-sized) and
 * nothing as large as the operands is ever copied. */

typedef struct gemm_job {
    const kernel_impl *ker;
    ib__sgemm_shape s;
    const float *a, *b;
    const ib__sgemm_b_gen *gen; /* B produced row by row instead of read from b */
    float *c;
    const int64_t *a_off, *b_off, *c_off;
    int64_t m_tile, m_tiles, n_tile, n_tiles;
    /* packing slots: one per concurrent caller */
    int32_t n_slots;
    float *slots;
    int64_t slot_floats, b_floats; /* a slot holds the B block, then the A block */
    atomic_int *slot_busy;
    atomic_int failed;
} gemm_job;

/* Packs rows [i0, i0 + mh) x depth [pc, pc + kc) of A into MR-row panels, depth-major
 * within a panel, zero-padding the last panel's missing rows. */
static void pack_a_block(const gemm_job *j, const float *a, int64_t i0, int64_t mh, int64_t pc,
                         int64_t kc, float *dst) {
    const ib__sgemm_shape *s = &j->s;
    for (int64_t r0 = 0; r0 < mh; r0 += MR, dst += MR * kc) {
        int64_t mr = mh - r0 < MR ? mh - r0 : MR;
        const float *base = a + (i0 + r0) * s->a_rs + pc * s->a_cs;
        if (mr == MR && s->a_cs == 1) {
            /* six row streams, one sequential write stream */
            const float *x0 = base, *x1 = base + s->a_rs, *x2 = base + 2 * s->a_rs;
            const float *x3 = base + 3 * s->a_rs, *x4 = base + 4 * s->a_rs;
            const float *x5 = base + 5 * s->a_rs;
            float *d = dst;
            for (int64_t p = 0; p < kc; p++, d += MR) {
                d[0] = x0[p];
                d[1] = x1[p];
                d[2] = x2[p];
                d[3] = x3[p];
                d[4] = x4[p];
                d[5] = x5[p];
            }
            continue;
        }
        if (mr == MR && s->a_rs == 1) { /* a transposed A: each depth step is contiguous */
            for (int64_t p = 0; p < kc; p++)
                memcpy(dst + p * MR, base + p * s->a_cs, MR * sizeof(float));
            continue;
        }
        for (int64_t r = 0; r < MR; r++) {
            if (r >= mr) {
                for (int64_t p = 0; p < kc; p++) dst[p * MR + r] = 0.0f;
                continue;
            }
            const float *row = base + r * s->a_rs;
            for (int64_t p = 0; p < kc; p++) dst[p * MR + r] = row[p * s->a_cs];
        }
    }
}

/* Scatters one row (depth p) of a B block, columns [0, nw), into the NR-wide panels. */
static void scatter_b_row(const float *row, int64_t nw, int64_t nr, int64_t kc, int64_t p,
                          float *dst) {
    for (int64_t q0 = 0; q0 < nw; q0 += nr, dst += nr * kc) {
        int64_t ncols = nw - q0 < nr ? nw - q0 : nr;
        memcpy(dst + p * nr, row + q0, (size_t)ncols * sizeof(float));
        for (int64_t q = ncols; q < nr; q++) dst[p * nr + q] = 0.0f;
    }
}

/* Packs depth [pc, pc + kc) x columns [j0, j0 + nw) of B into NR-column panels. */
static void pack_b_block(const gemm_job *j, int64_t bi, const float *b, int64_t pc, int64_t kc,
                         int64_t j0, int64_t nw, float *dst) {
    const ib__sgemm_shape *s = &j->s;
    const int64_t nr = j->ker->nr;
    if (j->gen) {
        float row[NC];
        for (int64_t p = 0; p < kc; p++) {
            j->gen->row(j->gen->ctx, bi, pc + p, j0, nw, row);
            scatter_b_row(row, nw, nr, kc, p, dst);
        }
    } else if (s->b_cs == 1) {
        /* Rows of B are far apart: prefetch a few rows ahead so that the short runs read
         * from each do not each wait for memory. */
        enum { AHEAD = 4 };
        for (int64_t p = 0; p < kc; p++) {
            if (p + AHEAD < kc) {
                const char *next = (const char *)(b + (pc + p + AHEAD) * s->b_rs + j0);
                for (int64_t q = 0; q < nw * (int64_t)sizeof(float); q += 64)
                    __builtin_prefetch(next + q, 0, 3);
            }
            scatter_b_row(b + (pc + p) * s->b_rs + j0, nw, nr, kc, p, dst);
        }
    } else {
        /* A transposed B: walk each column contiguously. */
        for (int64_t q0 = 0; q0 < nw; q0 += nr, dst += nr * kc) {
            int64_t ncols = nw - q0 < nr ? nw - q0 : nr;
            for (int64_t q = 0; q < nr; q++) {
                if (q >= ncols) {
                    for (int64_t p = 0; p < kc; p++) dst[p * nr + q] = 0.0f;
                    continue;
                }
                const float *col = b + pc * s->b_rs + (j0 + q0 + q) * s->b_cs;
                for (int64_t p = 0; p < kc; p++) dst[p * nr + q] = col[p * s->b_rs];
            }
        }
    }
}

static void compute_tile(const gemm_job *j, int64_t bi, int64_t tm, int64_t tn, float *ap,
                         float *bp) {
    const ib__sgemm_shape *s = &j->s;
    const int64_t nr = j->ker->nr;
    const float *a = j->a + (j->a_off ? j->a_off[bi] : 0);
    const float *b = j->gen ? NULL : j->b + (j->b_off ? j->b_off[bi] : 0);
    float *c = j->c + (j->c_off ? j->c_off[bi] : 0);
    int64_t i_lo = tm * j->m_tile, i_hi = i_lo + j->m_tile < s->m ? i_lo + j->m_tile : s->m;
    int64_t j_lo = tn * j->n_tile, nw = j_lo + j->n_tile < s->n ? j->n_tile : s->n - j_lo;
    float tmp[MR * 16] __attribute__((aligned(64)));
    for (int64_t pc = 0; pc < s->k; pc += KC) {
        int64_t kc = s->k - pc < KC ? s->k - pc : KC;
        float beta = pc == 0 ? s->beta : 1.0f;
        pack_b_block(j, bi, b, pc, kc, j_lo, nw, bp);
        for (int64_t ic = i_lo; ic < i_hi; ic += MC) {
            int64_t mh = i_hi - ic < MC ? i_hi - ic : MC;
            pack_a_block(j, a, ic, mh, pc, kc, ap);
            for (int64_t q0 = 0; q0 < nw; q0 += nr) {
                const float *bpanel = bp + (q0 / nr) * nr * kc;
                int64_t ncols = nw - q0 < nr ? nw - q0 : nr;
                for (int64_t r0 = 0; r0 < mh; r0 += MR) {
                    const float *apanel = ap + (r0 / MR) * MR * kc;
                    int64_t mrows = mh - r0 < MR ? mh - r0 : MR;
                    float *ct = c + (ic + r0) * s->ldc + j_lo + q0;
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
}

static void compute_range(void *ctx, int64_t begin, int64_t end) {
    gemm_job *j = ctx;
    /* Claim a packing slot; more concurrent callers than pool threads cannot happen, but
     * a private buffer keeps that from ever being a correctness question. */
    int32_t slot = -1;
    for (int32_t i = 0; i < j->n_slots && slot < 0; i++) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&j->slot_busy[i], &expected, 1)) slot = i;
    }
    float *buf = slot >= 0 ? j->slots + (int64_t)slot * j->slot_floats
                           : ib__aligned_alloc((size_t)j->slot_floats * sizeof(float));
    if (!buf) {
        atomic_store(&j->failed, 1);
        return;
    }
    float *bp = buf, *ap = buf + j->b_floats;
    int64_t per_batch = j->m_tiles * j->n_tiles;
    for (int64_t t = begin; t < end; t++) {
        int64_t bi = t / per_batch, r = t % per_batch;
        compute_tile(j, bi, r / j->n_tiles, r % j->n_tiles, ap, bp);
    }
    if (slot >= 0)
        atomic_store(&j->slot_busy[slot], 0);
    else
        ib__aligned_free(buf);
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

static void scale_c(const ib__sgemm_shape *s, int64_t batch, float *c, const int64_t *c_off) {
    for (int64_t bi = 0; bi < batch; bi++) {
        float *cb = c + (c_off ? c_off[bi] : 0);
        for (int64_t i = 0; i < s->m; i++)
            for (int64_t q = 0; q < s->n; q++)
                cb[i * s->ldc + q] = s->beta == 0.0f ? 0.0f : s->beta * cb[i * s->ldc + q];
    }
}

static ib_status sgemm_run(ib__pool *pool, const ib__sgemm_shape *s, int64_t batch, const float *a,
                           const int64_t *a_off, const float *b, const int64_t *b_off,
                           const ib__sgemm_b_gen *gen, float *c, const int64_t *c_off) {
    if (batch <= 0 || s->m <= 0 || s->n <= 0) return IB_OK;
    if (s->k <= 0) {
        scale_c(s, batch, c, c_off);
        return IB_OK;
    }
    if (!gen && s->m <= 2 && s->b_cs == 1) {
        gemv_job g = {*s, a, b, c, a_off, b_off, c_off, (s->n + GEMV_CHUNK - 1) / GEMV_CHUNK};
        ib__parallel_for(pool, batch * g.chunks, gemv_range, &g);
        return IB_OK;
    }

    gemm_job j;
    memset(&j, 0, sizeof j);
    j.ker = pick_kernel();
    j.s = *s;
    j.a = a;
    j.b = b;
    j.gen = gen;
    j.c = c;
    j.a_off = a_off;
    j.b_off = b_off;
    j.c_off = c_off;
    /* Tiles: column strips of at most NC, as many as the threads can share evenly (a
     * strip's B block is packed once); rows are split only when there are fewer strips
     * than threads, since each row split packs the B block again. */
    int32_t threads = ib__pool_size(pool);
    const int64_t nr = j.ker->nr;
    j.n_tiles = (s->n + NC - 1) / NC;
    if (threads > 1 && batch == 1 && j.n_tiles >= threads && j.n_tiles % threads != 0) {
        int64_t want = (j.n_tiles + threads - 1) / threads * threads;
        int64_t width = ((s->n + want - 1) / want + nr - 1) / nr * nr;
        if (width >= 4 * nr) j.n_tiles = want;
    }
    j.n_tile = ((s->n + j.n_tiles - 1) / j.n_tiles + nr - 1) / nr * nr;
    j.n_tiles = (s->n + j.n_tile - 1) / j.n_tile;
    int64_t m_split = 1;
    while (batch * j.n_tiles * m_split < threads && s->m / (m_split * 2) >= 4 * MR) m_split *= 2;
    j.m_tile = ((s->m + m_split - 1) / m_split + MR - 1) / MR * MR;
    j.m_tiles = (s->m + j.m_tile - 1) / j.m_tile;
    /* Slots sized to this product (small products need little), one per thread that
     * can have work at once; 16-float multiples keep the A block vector-aligned. */
    int64_t tasks = batch * j.m_tiles * j.n_tiles;
    j.n_slots = (int32_t)(tasks < threads ? tasks : threads);
    if (j.n_slots < 1) j.n_slots = 1;
    int64_t kc_max = s->k < KC ? s->k : KC;
    int64_t mc_max = j.m_tile < MC ? j.m_tile : MC;
    j.b_floats = (kc_max * j.n_tile + 15) / 16 * 16;
    j.slot_floats = j.b_floats + (mc_max * kc_max + 15) / 16 * 16;
    j.slots = ib__aligned_alloc((size_t)j.n_slots * (size_t)j.slot_floats * sizeof(float));
    j.slot_busy = ib__calloc((size_t)j.n_slots, sizeof(atomic_int));
    if (!j.slots || !j.slot_busy) {
        ib__aligned_free(j.slots);
        ib__free(j.slot_busy);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory for a %lldx%lldx%lld product",
                         (long long)s->m, (long long)s->n, (long long)s->k);
    }
    for (int32_t i = 0; i < j.n_slots; i++) atomic_init(&j.slot_busy[i], 0);
    atomic_init(&j.failed, 0);
    ib__parallel_for(pool, batch * j.m_tiles * j.n_tiles, compute_range, &j);
    ib__aligned_free(j.slots);
    ib__free(j.slot_busy);
    if (atomic_load(&j.failed))
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory for a %lldx%lldx%lld product",
                         (long long)s->m, (long long)s->n, (long long)s->k);
    return IB_OK;
}

ib_status ib__sgemm_batched(ib__pool *pool, const ib__sgemm_shape *s, int64_t batch, const float *a,
                            const int64_t *a_off, const float *b, const int64_t *b_off, float *c,
                            const int64_t *c_off) {
    return sgemm_run(pool, s, batch, a, a_off, b, b_off, NULL, c, c_off);
}

ib_status ib__sgemm_batched_gen(ib__pool *pool, const ib__sgemm_shape *s, int64_t batch,
                                const float *a, const int64_t *a_off, const ib__sgemm_b_gen *b,
                                float *c, const int64_t *c_off) {
    return sgemm_run(pool, s, batch, a, a_off, NULL, NULL, b, c, c_off);
}

ib_status ib__sgemm(ib__pool *pool, const ib__sgemm_shape *s, const float *a, const float *b,
                    float *c) {
    return ib__sgemm_batched(pool, s, 1, a, NULL, b, NULL, c, NULL);
}
