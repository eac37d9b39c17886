/* What the two halves of the runtime share: the executable model's fields, the context
 * of one run, and the helpers that fill them. runtime.c (artifacts, arenas, binding,
 * compiled runs) needs core and target alone, so it builds into the small deployable
 * runtime; runtime_plan.c adds plans, whose fallback steps run the reference ops. */
#ifndef IB_RUNTIME_INTERNAL_H
#define IB_RUNTIME_INTERNAL_H

#include <pthread.h>

#include "inferbooster/kernel_abi.h"
#include "runtime/runtime.h"

typedef struct ib__rt_run_ctx ib__rt_run_ctx;

typedef int (*ib__rt_entry_fn)(const ib_kernel_abi *abi, void *const *inputs, void *const *outputs,
                            void *arena, const void *weights);

struct ib__rt_model {
    ib__plan *plan; /* owned; NULL for an artifact without fallback steps */
    void *so;       /* dlopen handle, NULL when interpreting */
    ib__rt_entry_fn entry;
    const unsigned char *weights;
    size_t weights_bytes;
    void *map; /* mmap of weights.bin */
    size_t map_len;
    uint64_t sizes[IB_RT_SIZE_COUNT];
    char target[32];
    int64_t target_desc[IB_RT_TARGET_COUNT]; /* artifacts only */
    int32_t n_in, n_out;
    ib__rt_io_entry *io; /* n_in + n_out, names owned */
    int32_t *out_write;  /* per output: OUTPUT buffer (plan) or -1 */
    int32_t *out_copy;   /* per output: buffer copied in after the kernels, or -1 */
    size_t arena_bytes;  /* planned TEMP peak */
    size_t run_bytes;    /* arena + scratch for outputs the caller did not request */
    size_t *out_scratch; /* per output: offset of its scratch in a run's arena */
    pthread_mutex_t mu;
    void **free_arenas;
    int32_t n_free, cap_free;
    int32_t n_arenas; /* allocated in all */
    const ib_model_kernel_info *steps; /* the module's ib_model_kernels[], or NULL */
    /* Installed with a plan (runtime_plan.c); NULL in the deployable runtime. */
    int (*fallback)(void *user, int32_t step, void *const *args); /* one reference-op step */
    ib_status (*interpret)(ib__rt_run_ctx *c);           /* the whole plan */
    void (*plan_free)(ib__plan *plan);
};

/* One run: the bound input and output pointers and the run's arena. */
struct ib__rt_run_ctx {
    ib__rt_model *rt;
    ib__pool *pool;
    void *const *inputs;
    void *const *outputs;
    unsigned char *arena;
};

enum { IB_RT_MAX_IO = 4096 };

ib__rt_model *ib__rt_alloc(void);
/* Sizes the I/O tables for n_in inputs and n_out outputs. */
ib_status ib__rt_alloc_io(ib__rt_model *rt, int32_t n_in, int32_t n_out);
/* Copies an I/O entry into slot `slot`, checking what a module's table may hold. */
ib_status ib__rt_set_io(ib__rt_model *rt, int32_t slot, const ib__rt_io_entry *e);
/* Places the scratch of outputs a run does not hand back after the planned arena. */
ib_status ib__rt_layout_run_arena(ib__rt_model *rt);

#endif /* IB_RUNTIME_INTERNAL_H */
