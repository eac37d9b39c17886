/* Code generation: turns a kernel plan into C compile units (kernels, the AOT entry
 * `ib_model_run`, the I/O table and the metadata JSON) and builds them into a module. */
#ifndef IB_CODEGEN_CODEGEN_H
#define IB_CODEGEN_CODEGEN_H

#include "codegen/plan.h"
#include "runtime/runtime.h"

/* Writes the plan's C sources into `dir`: unit_1.c ... (kernels, ib_k<N> wrappers) and
 * model_main.c (entry, tables). *unit_paths: ib__free each and the array
 * (ib__codegen_free_units). */
ib_status ib__codegen_module(const ib__plan *plan, const char *dir, int32_t *n_units,
                             char ***unit_paths);
void ib__codegen_free_units(int32_t n_units, char **unit_paths);

/* Generates, compiles (2 jobs) and links `dir`/model.so. The sources stay in `dir` when
 * keep_source, else they are removed. */
ib_status ib__codegen_build(const ib__plan *plan, const char *dir, bool keep_source);

/* The metadata JSON (inputs/outputs, target, version, sizes, kernels with knobs). */
ib_status ib__codegen_meta_json(const ib__plan *plan, ib__sb *out);

/* Model input/output i as the runtime sees it (name, dtype, rank, dims; dims -1 and
 * nbytes -1 when the plan leaves them open, for inputs no kernel reads). */
ib_status ib__codegen_io_entry(const ib__plan *plan, bool output, int32_t i,
                               ib__rt_io_entry *out);

/* How model output i is produced: *write_buf is the OUTPUT buffer kernels write into
 * the caller's memory (or -1), *copy_from a buffer copied into it after the kernels
 * (or -1; a weight, an input, or another output's buffer). */
ib_status ib__codegen_output_source(const ib__plan *plan, int32_t i, int32_t *write_buf,
                                    int32_t *copy_from);

/* Kernels without a template (run by the reference op through abi->fallback). */
int32_t ib__codegen_fallback_count(const ib__plan *plan);

/* For "host" with a GPU present: whether plan (built for a CUDA target) runs wholly on
 * the GPU and does at least IB_GPU_MIN_FLOPS per run (smaller models are launch-bound
 * there and stay on the CPU). */
bool ib__codegen_gpu_worthwhile(const ib__plan *plan);

/* Batch the plan was specialised for: dim 0 of its first rank >= 1 input, else 0. */
int64_t ib__codegen_plan_batch(const ib__plan *plan);

#endif /* IB_CODEGEN_CODEGEN_H */
