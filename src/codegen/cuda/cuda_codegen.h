/* CUDA code generation for a kernel plan on a CUDA target: one CUDA C unit with every
 * kernel (model.cu), the host-side launch plan (cuda_plan.txt, read by
 * runtime/cuda_runtime.c), and the nvcc build of the unit into model.fatbin. */
#ifndef IB_CODEGEN_CUDA_CODEGEN_H
#define IB_CODEGEN_CUDA_CODEGEN_H

#include "codegen/plan.h"

#define IB_CUDA_PLAN_FORMAT "inferbooster-cuda-plan"
#define IB_CUDA_PLAN_VERSION 1

/* The CUDA C of every kernel in the plan. Fails naming the first node without a CUDA
 * kernel (the GPU runs no reference fallback). */
ib_status ib__cuda_codegen_source(const ib__plan *plan, ib__sb *out);

/* The launch plan text: buffers, kernels with grid/block/arguments, output copies. */
ib_status ib__cuda_codegen_plan_text(const ib__plan *plan, ib__sb *out);

/* Writes model.cu and cuda_plan.txt into `dir` and builds model.fatbin (cubin + PTX for
 * the target's compute capability). model.cu stays only when keep_source. */
ib_status ib__cuda_codegen_build(const ib__plan *plan, const char *dir, bool keep_source);

#endif /* IB_CODEGEN_CUDA_CODEGEN_H */
