/* The CUDA runtime: a CUDA artifact (model.fatbin, cuda_plan.txt, weights.bin) opened on
 * any machine, and sessions that run it on an NVIDIA GPU through the CUDA driver API,
 * loaded with dlopen("libcuda.so.1") so that nothing links against CUDA. */
#ifndef IB_RUNTIME_CUDA_RUNTIME_H
#define IB_RUNTIME_CUDA_RUNTIME_H

#include "codegen/plan.h" /* ib__launch_dims */
#include "runtime/runtime.h"

typedef struct ib__cuda_model ib__cuda_model;
typedef struct ib__cuda_session ib__cuda_session;

/* True when `dir` holds a CUDA artifact (cuda_plan.txt). */
bool ib__cuda_is_artifact(const char *dir);

/* Reads and checks the artifact (plan text, fat binary, weights and their hash); needs
 * no GPU. Bad files give IB_ERR_INVALID_MODEL naming the file and line. */
ib_status ib__cuda_model_open(const char *dir, ib__cuda_model **out);
void ib__cuda_model_destroy(ib__cuda_model *m);
int32_t ib__cuda_model_input_count(const ib__cuda_model *m);
int32_t ib__cuda_model_output_count(const ib__cuda_model *m);
const ib__rt_io_entry *ib__cuda_model_input(const ib__cuda_model *m, int32_t i);
const ib__rt_io_entry *ib__cuda_model_output(const ib__cuda_model *m, int32_t i);
int32_t ib__cuda_model_kernel_count(const ib__cuda_model *m);
const char *ib__cuda_model_target(const ib__cuda_model *m);

/* A session on GPU `device`: the driver loaded, the device's primary context, the module
 * loaded (the cubin, or the PTX compiled by the driver on newer GPUs), one device arena
 * from the memory plan, the weights uploaded once, a stream, pinned host buffers for
 * inputs and outputs, and the kernels captured as one CUDA graph (use_graph).
 * IB_ERR_UNSUPPORTED "no CUDA driver ..." when libcuda.so.1 cannot be loaded or finds no
 * device. The model must outlive the session. */
ib_status ib__cuda_session_create(const ib__cuda_model *m, int32_t device, bool use_graph,
                                  ib__cuda_session **out);
/* Runs once: inputs[i] / outputs[o] are host buffers of the plan's byte sizes. Calls on
 * one session are serialised (its stream and buffers are shared). */
ib_status ib__cuda_session_run(ib__cuda_session *s, const void *const *inputs,
                               void *const *outputs);
void ib__cuda_session_destroy(ib__cuda_session *s);

/* One kernel of a fat binary run once on GPU `device` (for kernel tests and the tuner's
 * measurements): each argument's host bytes are uploaded to a fresh device buffer (NULL
 * host: a NULL pointer argument), the kernel launched with `ld`, and the buffers marked
 * read_back copied back. */
typedef struct ib__cuda_kernel_arg {
    void *host;
    size_t nbytes;
    bool read_back;
} ib__cuda_kernel_arg;
ib_status ib__cuda_run_kernel(const void *fatbin, const char *name, const ib__launch_dims *ld,
                              int32_t n_args, const ib__cuda_kernel_arg *args, int32_t device);

/* Whether libcuda.so.1 loads and reports at least one device; *why says otherwise. */
bool ib__cuda_driver_available(char *why, size_t cap);

#endif /* IB_RUNTIME_CUDA_RUNTIME_H */
