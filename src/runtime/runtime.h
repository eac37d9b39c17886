/* The runtime: an executable model (a compiled module loaded with dlopen, or the kernel
 * plan interpreted step by step), its mapped weights, a free list of per-run arenas, and
 * the run entry that binds inputs and outputs by name. The functions that take a plan
 * live in runtime_plan.c; the rest is the deployable runtime (core and target only). */
#ifndef IB_RUNTIME_RUNTIME_H
#define IB_RUNTIME_RUNTIME_H

#include "core/core.h"
#include "target/target_desc.h"

/* Plans are the codegen's (codegen/plan.h); the runtime proper only holds one. */
typedef struct ib__plan ib__plan;

/* Layout of one entry of the `ib_model_io[]` table the generated module exports
 * (inputs first, then outputs); codegen emits the same struct. */
typedef struct ib__rt_io_entry {
    const char *name;
    int32_t dtype;
    int32_t rank;
    int64_t dims[IB_MAX_RANK];
    int64_t nbytes;
} ib__rt_io_entry;

/* What the generated module says of itself, in `ib_model_sizes[]` (order fixed). */
enum {
    IB_RT_SIZE_ARENA = 0,
    IB_RT_SIZE_WEIGHTS,
    IB_RT_SIZE_KERNELS,
    IB_RT_SIZE_FALLBACKS,
    IB_RT_SIZE_BATCH,
    IB_RT_SIZE_WEIGHTS_HASH,
    IB_RT_SIZE_COUNT
};

/* The target fields a plan's knobs depend on, in `ib_model_target_desc[]` (order fixed). */
enum {
    IB_RT_TARGET_VECTOR_BITS = 0,
    IB_RT_TARGET_VECTOR_REGS,
    IB_RT_TARGET_HAS_FMA,
    IB_RT_TARGET_L1D,
    IB_RT_TARGET_L2,
    IB_RT_TARGET_L3,
    IB_RT_TARGET_CORES,
    IB_RT_TARGET_COUNT
};

typedef struct ib__rt_model ib__rt_model;

/* An executable model from a plan built in this process (ownership of `plan` passes to
 * the model, also on failure). so_path: the module compiled from it, or NULL to
 * interpret the plan (every kernel then must be a fallback step). */
ib_status ib__rt_create_from_plan(ib__plan *plan, const char *so_path, ib__rt_model **out);

/* Opens an artifact directory: dlopen(model.so), checks its ABI version, maps weights.bin
 * and checks its size and hash. When the module has fallback steps the caller must
 * attach the plan rebuilt from the artifact's model.onnx (ib__rt_attach_plan) before
 * running. */
ib_status ib__rt_open_artifact(const char *dir, ib__rt_model **out);
/* The artifact's target name, batch and fallback count, as the module records them. */
const char *ib__rt_target_name(const ib__rt_model *rt);
/* The target the artifact's plan was built for: its name resolved, with the recorded
 * caches, cores and vector registers (the plan's knobs depend on them). */
ib_status ib__rt_target(const ib__rt_model *rt, ib__target *out);
int64_t ib__rt_batch(const ib__rt_model *rt);
int64_t ib__rt_fallback_count(const ib__rt_model *rt);
/* Gives an opened artifact the plan its fallback steps need (ownership passes, also on
 * failure); refused when the plan does not match the module (kernels, sizes, I/O). */
ib_status ib__rt_attach_plan(ib__rt_model *rt, ib__plan *plan);

void ib__rt_destroy(ib__rt_model *rt);

/* Inputs and outputs, in model order. */
int32_t ib__rt_input_count(const ib__rt_model *rt);
int32_t ib__rt_output_count(const ib__rt_model *rt);
const ib__rt_io_entry *ib__rt_input(const ib__rt_model *rt, int32_t i);
const ib__rt_io_entry *ib__rt_output(const ib__rt_model *rt, int32_t i);
/* The plan, when the model has one (NULL for an artifact without fallbacks). */
const ib__plan *ib__rt_plan(const ib__rt_model *rt);
/* "compiled" (a module runs) or "interpreted" (the plan's steps run in the runtime). */
const char *ib__rt_mode(const ib__rt_model *rt);

/* Runs with ib_session_run's contract: inputs and outputs bound by name (output_names
 * NULL: all outputs in order), caller or library-allocated output buffers. Thread-safe. */
ib_status ib__rt_run(ib__rt_model *rt, ib__pool *pool, size_t n_inputs,
                     const char *const *input_names, const ib_tensor *inputs, size_t n_outputs,
                     const char *const *output_names, ib_tensor *outputs);

/* Per-step times of the runs made on this thread while a profile is attached: the
 * runtime fills `rt` (the model profiled) and adds each step's nanoseconds; runs of
 * another model (a different batch variant) are not counted. For diagnostics
 * (`inferbooster bench --profile`): the sink is thread-local, the run path unchanged
 * when none is attached. */
typedef struct ib__rt_profile {
    const ib__rt_model *rt;
    int32_t n_steps;  /* capacity of ns[] */
    int64_t *ns;      /* per plan step, summed over runs */
    int64_t *best_ns; /* per plan step, the fastest run (0: not run yet); robust to a
                       * busy machine where sums are not */
    int64_t runs;
    int64_t t_start;  /* of the step running now */
} ib__rt_profile;

/* Room for models of up to n_steps steps, zeroed; ib__rt_profile_free releases it. A
 * model with more steps than the room is not profiled. */
enum { IB_RT_PROFILE_MAX_STEPS = 1 << 16 };
ib_status ib__rt_profile_init(ib__rt_profile *profile, int32_t n_steps);
void ib__rt_profile_free(ib__rt_profile *profile);
void ib__rt_profile_attach(ib__rt_profile *profile); /* NULL detaches */
int32_t ib__rt_step_count(const ib__rt_model *rt);
/* The step's label ("template: node") and FLOPs, from the module's table ("?" when the
 * module has none). */
const char *ib__rt_step_label(const ib__rt_model *rt, int32_t step, double *flops);

/* Index of the model input named `name`, or -1. */
int32_t ib__rt_find_input(const ib__rt_model *rt, const char *name);

/* 64-bit FNV-1a (input seeds and output checksums of the runners, CUDA weights). */
uint64_t ib__rt_hash(const void *data, size_t n);
/* The CPU artifacts' weights.bin integrity hash: word-wise, 4 lanes, ~30x faster than
 * FNV-1a on ResNet-50's 100 MB; not cryptographic. */
uint64_t ib__rt_weights_hash(const void *data, size_t n);

#endif /* IB_RUNTIME_RUNTIME_H */
