/* What a compilation target is: ISA, vector width and registers, caches, and the C
 * toolchain (compiler and flags) that builds code for it. The codegen and the kernel
 * templates read this, never the host directly, so that cross targets work the same. */
#ifndef IB_TARGET_DESC_H
#define IB_TARGET_DESC_H

#include "core/core.h"

typedef enum ib__arch { IB_ARCH_X86_64 = 0, IB_ARCH_AARCH64 = 1 } ib__arch;

/* Where the generated kernels run: the CPU (C, the target's cc) or an NVIDIA GPU (CUDA C
 * built by nvcc; the CPU fields then describe the host that launches them). */
typedef enum ib__device { IB_DEVICE_CPU = 0, IB_DEVICE_CUDA = 1 } ib__device;

/* Arithmetic the GPU GEMM-like kernels may use: FP32 (default, exact fp32 FMA), or tensor
 * cores on TF32 / FP16 / BF16 operands with fp32 accumulation (the "-tf32" ... target
 * name suffixes). */
typedef enum ib__precision {
    IB_PRECISION_FP32 = 0,
    IB_PRECISION_TF32,
    IB_PRECISION_FP16,
    IB_PRECISION_BF16
} ib__precision;

#define IB_TARGET_MAX_FLAGS 8

typedef struct ib__target {
    char name[32];        /* "x86-64-v4", "x86-64-v3", "generic", ... ("host" resolves) */
    ib__arch arch;
    int32_t vector_bits;  /* widest float vector the kernels may use: 512, 256, 128 */
    int32_t vector_regs;  /* architectural vector registers: 32 (AVX-512, NEON), 16 */
    bool has_fma;
    int64_t l1d_bytes, l2_bytes, l3_bytes; /* per core (L3: shared), for blocking */
    int32_t num_cores;    /* cores the kernels are planned for */
    char cc[64];          /* compiler driver, e.g. "cc" or "aarch64-linux-gnu-gcc" */
    const char *cflags[IB_TARGET_MAX_FLAGS]; /* target flags, NULL-terminated */
    bool is_host;         /* code built for it runs on this machine */
    /* IB_DEVICE_CUDA only: compute capability (90 = sm_90), tensor-core precision, and
     * the GPU limits the templates plan their defaults from. */
    ib__device device;
    int32_t cuda_sm;
    ib__precision precision;
    int32_t gpu_smem_bytes;   /* shared memory one block may use (opt-in maximum) */
    int32_t gpu_sm_count;     /* SMs of the detected GPU, or the family's typical count */
} ib__target;

/* Resolves a target name: NULL or "host" (detects this CPU and picks the best of the
 * x86-64 levels it supports), "x86-64-v4" (AVX-512), "x86-64-v3" (AVX2+FMA), "generic"
 * (baseline x86-64 SSE2), "aarch64" (ARMv8-A NEON), "aarch64-dotprod" (ARMv8.2-A; from
 * x86 both build with the cross compiler aarch64-linux-gnu-gcc), "cuda-sm80" /
 * "cuda-sm90" (NVIDIA Ampere / Hopper, optionally with "-tf32", "-fp16" or "-bf16").
 * Unknown names: IB_ERR_INVALID_ARGUMENT listing the known ones. */
ib_status ib__target_resolve(const char *name, ib__target *out);

/* As ib__target_resolve, but "host" (or NULL) becomes the detected GPU's CUDA target when
 * one of compute capability 8.0+ is present and the model is big enough to gain from it
 * (`model_flops` per inference at least IB_GPU_MIN_FLOPS, or unknown: < 0, for the caller
 * to decide from the plan); otherwise the CPU. */
#define IB_GPU_MIN_FLOPS 2.0e8
ib_status ib__target_resolve_for_model(const char *name, double model_flops, ib__target *out);

static inline bool ib__target_is_cuda(const ib__target *t) { return t->device == IB_DEVICE_CUDA; }

/* Floats per vector (vector_bits / 32). */
static inline int32_t ib__target_vector_floats(const ib__target *t) { return t->vector_bits / 32; }

#endif /* IB_TARGET_DESC_H */
