/* What a compilation target is: ISA, vector width and registers, caches, and the C
 * toolchain (compiler and flags) that builds code for it. The codegen and the kernel
 * templates read this, never the host directly, so that cross targets work the same. */
#ifndef IB_TARGET_DESC_H
#define IB_TARGET_DESC_H

#include "core/core.h"

typedef enum ib__arch { IB_ARCH_X86_64 = 0, IB_ARCH_AARCH64 = 1 } ib__arch;

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
} ib__target;

/* Resolves a target name: NULL or "host" (detects this CPU and picks the best of the
 * x86-64 levels it supports), "x86-64-v4" (AVX-512), "x86-64-v3" (AVX2+FMA), "generic"
 * (baseline x86-64 SSE2). Unknown names: IB_ERR_INVALID_ARGUMENT listing the known ones. */
ib_status ib__target_resolve(const char *name, ib__target *out);

/* Floats per vector (vector_bits / 32). */
static inline int32_t ib__target_vector_floats(const ib__target *t) { return t->vector_bits / 32; }

#endif /* IB_TARGET_DESC_H */
