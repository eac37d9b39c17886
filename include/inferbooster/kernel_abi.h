/* The kernel ABI: the one header that code InferBooster generates includes. A compiled
 * model (a shared object) exports
 *
 *     int ib_model_run(const ib_kernel_abi *abi, void *const *inputs,
 *                      void *const *outputs, void *arena, const void *weights);
 *     extern const char ib_model_meta[];   (metadata, JSON text)
 *     extern const uint32_t ib_model_abi_version;
 *
 * and links nothing of ours: the runtime passes everything the kernels need (the
 * thread pool, the fallback for nodes that have no generated kernel) through `abi`.
 * Every function returns int: 0 on success. */
#ifndef INFERBOOSTER_KERNEL_ABI_H
#define INFERBOOSTER_KERNEL_ABI_H

#include <stddef.h>
#include <stdint.h>

#define IB_KERNEL_ABI_VERSION 1u

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
} ib_kernel_abi;

#endif /* INFERBOOSTER_KERNEL_ABI_H */
