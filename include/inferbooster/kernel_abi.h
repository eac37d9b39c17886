/* The kernel ABI: the one header that code InferBooster generates includes. A compiled
 * model (a shared object) exports
 *
 *     int ib_model_run(const ib_kernel_abi *abi, void *const *inputs,
 *                      void *const *outputs, void *arena, const void *weights);
 *     extern const char ib_model_meta[];   (metadata, JSON text)
 *     extern const uint32_t ib_model_abi_version;
 *     extern const ib_model_kernel_info ib_model_kernels[];  (one per plan step, then {0})
 *
 * and links nothing of ours: the runtime passes everything the kernels need (the
 * thread pool, the fallback for nodes that have no generated kernel) through `abi`.
 * Every function returns int: 0 on success. */
#ifndef INFERBOOSTER_KERNEL_ABI_H
#define INFERBOOSTER_KERNEL_ABI_H

#include <stddef.h>
#include <stdint.h>

#define IB_KERNEL_ABI_VERSION 2u

/* What a kernel returns when it fails (0 is success). ib_model_run adds the failing
 * step: it returns code | (step + 1) << 8, so the runtime can name the step. */
#define IB_KERNEL_ERR_INDEX 1 /* an index input is out of range */
#define IB_KERNEL_STEP_FAILED(code, step) ((code) | ((step) + 1) << 8)

/* Body of a parallel loop: handles iterations [begin, end). */
typedef void (*ib_kernel_range_fn)(void *ctx, int64_t begin, int64_t end);

typedef struct ib_kernel_abi {
    uint32_t version; /* IB_KERNEL_ABI_VERSION */
    int32_t num_threads;
    /* Runs fn over [0, n) on the session's threads; returns when all are done. */
    void (*parallel_for)(void *pool, int64_t n, ib_kernel_range_fn fn, void *ctx);
    void *pool;
    /* Runs graph node `step` of the plan with the reference implementation; buffers are
     * the step's argument pointers (inputs, then outputs) in the plan's order. */
    int (*fallback)(void *user, int32_t step, void *const *buffers);
    void *fallback_user;
    /* NULL unless the caller profiles the run: then called with end = 0 before and
     * end = 1 after each plan step, on the thread that called ib_model_run. */
    void (*profile)(void *user, int32_t step, int32_t end);
    void *profile_user;
} ib_kernel_abi;

/* What each plan step is, for profiles: "template: first node (+n more)" and its FLOPs. */
typedef struct ib_model_kernel_info {
    const char *label;
    double flops;
} ib_model_kernel_info;

#endif /* INFERBOOSTER_KERNEL_ABI_H */
