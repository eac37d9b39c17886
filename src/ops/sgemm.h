/* Float32 matrix multiply shared by the ops (Conv, ConvTranspose, Gemm, MatMul, Einsum,
 * recurrent cells): C = alpha * A * B + beta * C over strided operands, batched. */
#ifndef IB_OPS_SGEMM_H
#define IB_OPS_SGEMM_H

#include "core/core.h"

/* One product shape. A is m x k with element (i, p) at a[i * a_rs + p * a_cs]; B is
 * k x n with element (p, j) at b[p * b_rs + j * b_cs] (so a transpose is only a swap of
 * strides); C is m x n with element (i, j) at c[i * ldc + j]. beta == 0 overwrites C
 * without reading it (NaNs in C do not leak through). */
typedef struct ib__sgemm_shape {
    int64_t m, n, k;
    float alpha, beta;
    int64_t a_rs, a_cs;
    int64_t b_rs, b_cs;
    int64_t ldc;
} ib__sgemm_shape;

/* C = alpha * A * B + beta * C, parallel over `pool` (may be NULL). Only fails when its
 * scratch (packed panels) cannot be allocated. */
ib_status ib__sgemm(ib__pool *pool, const ib__sgemm_shape *s, const float *a, const float *b,
                    float *c);

/* `batch` independent products of the same shape: product i reads a + a_off[i],
 * b + b_off[i] and writes c + c_off[i] (offsets in elements). A NULL offset array means
 * offset 0 for every product. The C blocks of different products must not overlap. */
ib_status ib__sgemm_batched(ib__pool *pool, const ib__sgemm_shape *s, int64_t batch, const float *a,
                            const int64_t *a_off, const float *b, const int64_t *b_off, float *c,
                            const int64_t *c_off);

/* A B operand produced on demand (im2col of a convolution, say), so that it is never
 * materialised: row(ctx, i, p, j0, n, out) writes B[p][j0 .. j0 + n) of product i into
 * out[0 .. n). n is at most 256. Called concurrently from the pool's threads. */
typedef struct ib__sgemm_b_gen {
    void (*row)(const void *ctx, int64_t product, int64_t p, int64_t j0, int64_t n, float *out);
    const void *ctx;
} ib__sgemm_b_gen;

/* ib__sgemm_batched with a generated B (the shape's b_rs and b_cs are unused). */
ib_status ib__sgemm_batched_gen(ib__pool *pool, const ib__sgemm_shape *s, int64_t batch,
                                const float *a, const int64_t *a_off, const ib__sgemm_b_gen *b,
                                float *c, const int64_t *c_off);

/* Tests only: true restricts the product to the portable kernel even where a wider one
 * (AVX2) is available, so that both are checked against the reference. */
void ib__sgemm_use_generic_kernel(bool on);

#endif /* IB_OPS_SGEMM_H */
