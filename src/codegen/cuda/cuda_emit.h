/* What the CUDA kernel templates share: the device prelude of a generated .cu file, the
 * kernel signature, the scalar fused-epilogue emitter, operand checks, and the tiled
 * matrix-multiply core that GEMM and implicit-GEMM convolution both instantiate. */
#ifndef IB_CODEGEN_CUDA_EMIT_H
#define IB_CODEGEN_CUDA_EMIT_H

#include "codegen/emit_common.h"

/* The prelude of a .cu unit: includes (mma.h, cuda_fp16.h, cuda_bf16.h) and device
 * helpers ib_sigmoid, ib_gelu, ib_warp_sum, ib_warp_max, ib_block_sum, ib_block_max. */
void ib__cuda_prelude(ib__sb *sb, const ib__target *target);

/* `extern "C" __global__ void __launch_bounds__(threads) <fn>(float *a0, ..., float *aN)`
 * for all of k's arguments (in, out, epilogue operands), then " {". */
void ib__cuda_signature(ib__sb *sb, const ib__pkernel *k, int32_t threads);

/* Number of pointer arguments of k's kernel. */
int32_t ib__cuda_arg_count(const ib__pkernel *k);

/* True when every epilogue step of k can be emitted by ib__cuda_epilogue for an output
 * of `elems` elements with `channels` per-channel entries: supported ops, float32
 * operands, PER_CHANNEL at least `channels` floats, FULL plain with `elems` elements. */
bool ib__cuda_epilogue_ok(const ib__plan *plan, const ib__pkernel *k, int64_t channels,
                          int64_t elems);

/* Statements applying k's epilogue to float `var`; operand of step s is a<first_arg+s>,
 * read at ch_expr (PER_CHANNEL) or elem_expr (FULL). */
ib_status ib__cuda_epilogue(ib__sb *sb, const ib__pkernel *k, int32_t first_arg, const char *var,
                            const char *ch_expr, const char *elem_expr);

/* A float as a CUDA literal. */
const char *ib__cuda_flit(char *buf, size_t n, float v);

/* A tiled C[M,N] = A[M,K] B[K,N] over `batch` (blockIdx.z), as expressions in the
 * kernel's variables: `m`, `n`, `k` (int64) and `bz` (the batch index). The core loads
 * A and B tiles into shared memory (bounds-checked, zero outside), multiplies them with
 * fp32 FMA per thread micro-tile or with WMMA tensor cores (precision), then for each
 * in-range (m, n): `float v = acc`, the `value` statements (alpha, bias, epilogue; they
 * may use `v`, `m`, `n`, `bz`), and the `store` statement. */
typedef struct ib__cuda_mm {
    int64_t M, N, K, batch;
    const char *setup;  /* statements after bz is known (batch offsets), or NULL */
    const char *a_expr; /* A[m][k], valid when m < M and k < K */
    const char *b_expr; /* B[k][n], valid when k < K and n < N */
    const char *value;  /* statements turning acc `v` into the output value */
    const char *store;  /* the statement writing `v` at (m, n) */
    bool b_vec_ok;      /* b_expr at n .. n+3 is contiguous and 16-byte aligned for n % 4 == 0 */
} ib__cuda_mm;

/* Knobs of the matrix-multiply core: block_m, block_n, block_k, thread_m, thread_n
 * (SIMT), warp_m, warp_n (tensor cores), stages (1 or 2 shared-memory buffers), vec
 * (1 or 4: float4 loads of B rows). */
void ib__cuda_mm_default_knobs(const ib__target *t, const ib__cuda_mm *mm, ib__knobs *knobs);
bool ib__cuda_mm_knobs_valid(const ib__target *t, const ib__cuda_mm *mm, const ib__knobs *knobs);
/* Emits the whole kernel body (after ib__cuda_signature). */
ib_status ib__cuda_mm_emit(ib__sb *sb, const ib__target *t, const ib__cuda_mm *mm,
                           const ib__knobs *knobs);
ib_status ib__cuda_mm_launch(const ib__target *t, const ib__cuda_mm *mm, const ib__knobs *knobs,
                             ib__launch_dims *out);
/* True when the knobs (and target precision) select tensor cores. */
bool ib__cuda_mm_uses_tensor_cores(const ib__target *t, const ib__cuda_mm *mm);

/* 1-D launch of `total` threads in blocks of `threads`. */
void ib__cuda_launch_1d(int64_t total, int32_t threads, ib__launch_dims *out);

/* The "threads" knob (dflt when unset) is a block size CUDA runs: 32..1024, whole warps. */
bool ib__cuda_threads_valid(const ib__knobs *knobs, int64_t dflt);

/* The tail of a kernel with a block per row of L elements (T threads): each thread's
 * elements j get v = value, the fused epilogue, y[j] = v; then the function's end. */
ib_status ib__cuda_emit_row_store(ib__sb *sb, const ib__pkernel *k, long long L, long long T,
                                  const char *value);

#endif /* IB_CODEGEN_CUDA_EMIT_H */
