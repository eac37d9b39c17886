/* InferBooster public C API: load an ONNX model, inspect it, create a session, run it.
 *
 * Lifecycle:  ib_model_load_file / ib_model_load_bytes
 *               -> ib_session_create(model, options)
 *               -> ib_session_run(...)  (any number of times, from any number of threads)
 *               -> ib_session_destroy, ib_model_destroy.
 *
 * Every fallible function returns ib_status (IB_OK == 0). On failure, ib_last_error()
 * returns a message for the calling thread naming the node, input or field at fault.
 * Output parameters are written only on success. Destroy functions accept NULL.
 */
#ifndef INFERBOOSTER_H
#define INFERBOOSTER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IB_VERSION_STRING "0.1.0"

/* Largest tensor rank the library handles; deeper tensors are refused with a status. */
#define IB_MAX_RANK 8

/* ---- Status codes ---------------------------------------------------------------- */
/* X(name, value, description) */
#define IB_STATUS_LIST(X)                                                   \
    X(IB_OK, 0, "success")                                                  \
    X(IB_ERR_INVALID_ARGUMENT, 1, "invalid argument")                       \
    X(IB_ERR_INVALID_MODEL, 2, "invalid model")                             \
    X(IB_ERR_UNSUPPORTED, 3, "unsupported")                                 \
    X(IB_ERR_OUT_OF_MEMORY, 4, "out of memory")                             \
    X(IB_ERR_IO, 5, "input/output error")                                   \
    X(IB_ERR_SHAPE, 6, "shape mismatch")                                    \
    X(IB_ERR_RUNTIME, 7, "runtime failure")                                 \
    X(IB_ERR_INTERNAL, 8, "internal error")

typedef enum ib_status {
#define IB__STATUS_ENUM(name, value, desc) name = value,
    IB_STATUS_LIST(IB__STATUS_ENUM)
#undef IB__STATUS_ENUM
} ib_status;

/* "IB_ERR_SHAPE" etc. */
const char *ib_status_name(ib_status status);
/* The message of the last failure on this thread ("" if none). */
const char *ib_last_error(void);

/* ---- Data types (values match ONNX TensorProto.DataType) ------------------------- */
#define IB_DTYPE_LIST(X)                 \
    X(IB_DTYPE_UNDEFINED, 0, "undefined", 0) \
    X(IB_DTYPE_FLOAT32, 1, "float32", 4) \
    X(IB_DTYPE_UINT8, 2, "uint8", 1)     \
    X(IB_DTYPE_INT8, 3, "int8", 1)       \
    X(IB_DTYPE_UINT16, 4, "uint16", 2)   \
    X(IB_DTYPE_INT16, 5, "int16", 2)     \
    X(IB_DTYPE_INT32, 6, "int32", 4)     \
    X(IB_DTYPE_INT64, 7, "int64", 8)     \
    X(IB_DTYPE_STRING, 8, "string", 0)   \
    X(IB_DTYPE_BOOL, 9, "bool", 1)       \
    X(IB_DTYPE_FLOAT16, 10, "float16", 2) \
    X(IB_DTYPE_FLOAT64, 11, "float64", 8) \
    X(IB_DTYPE_UINT32, 12, "uint32", 4)  \
    X(IB_DTYPE_UINT64, 13, "uint64", 8)  \
    X(IB_DTYPE_COMPLEX64, 14, "complex64", 8) \
    X(IB_DTYPE_COMPLEX128, 15, "complex128", 16) \
    X(IB_DTYPE_BFLOAT16, 16, "bfloat16", 2)

typedef enum ib_dtype {
#define IB__DTYPE_ENUM(name, value, str, size) name = value,
    IB_DTYPE_LIST(IB__DTYPE_ENUM)
#undef IB__DTYPE_ENUM
} ib_dtype;

/* "float32" etc.; "invalid" for values outside the list. */
const char *ib_dtype_name(ib_dtype dtype);
/* Bytes per element; 0 for undefined, string and invalid values. */
size_t ib_dtype_size(ib_dtype dtype);

/* ---- Tensors ----------------------------------------------------------------------- */
/* A dense, row-major tensor view. `data` is borrowed unless `owns_data` is set, in which
 * case ib_tensor_release() frees it (outputs the session allocated for the caller). */
typedef struct ib_tensor {
    ib_dtype dtype;
    int32_t rank;
    int64_t shape[IB_MAX_RANK];
    void *data;
    size_t nbytes;
    int32_t owns_data;
} ib_tensor;

/* Number of elements (1 for rank 0); -1 if a dim is negative or the count overflows. */
int64_t ib_tensor_element_count(const ib_tensor *tensor);
/* Frees data the library allocated (owns_data set) and clears the view. NULL is fine. */
void ib_tensor_release(ib_tensor *tensor);

/* ---- Models ------------------------------------------------------------------------ */
typedef struct ib_model ib_model;

/* Loads an ONNX file; external data files are resolved next to it and mapped. */
ib_status ib_model_load_file(const char *path, ib_model **out_model);
/* Loads an ONNX model held in memory (copied; external data resolved from `base_dir`,
 * which may be NULL when the model has none). */
ib_status ib_model_load_bytes(const void *bytes, size_t size, const char *base_dir,
                              ib_model **out_model);
void ib_model_destroy(ib_model *model);

/* A model input or output. shape[i] == -1 for a dimension not fixed by the model;
 * dim_names[i] then holds its symbolic name ("batch") or NULL. Strings are owned by
 * the model. */
typedef struct ib_value_info {
    const char *name;
    ib_dtype dtype;
    int32_t rank; /* -1 when unknown */
    int64_t shape[IB_MAX_RANK];
    const char *dim_names[IB_MAX_RANK];
} ib_value_info;

size_t ib_model_input_count(const ib_model *model);
size_t ib_model_output_count(const ib_model *model);
ib_status ib_model_input_info(const ib_model *model, size_t index, ib_value_info *out_info);
ib_status ib_model_output_info(const ib_model *model, size_t index, ib_value_info *out_info);

/* Model-level metadata. Strings and arrays are owned by the model ("" when the file has
 * none), so they live as long as it does. */
typedef struct ib_model_metadata {
    const char *producer_name;
    const char *producer_version;
    const char *domain;
    const char *graph_name;
    int64_t model_version;
    int64_t ir_version;
    int64_t opset;                  /* of the default ONNX domain */
    const char *doc_string;         /* the model's doc_string (ONNX Runtime's description) */
    const char *graph_doc_string;   /* the main graph's doc_string (graph_description) */
    size_t n_props;                 /* the model's metadata_props, in file order: */
    const char *const *prop_keys;   /*   n_props keys (a key may repeat: the file's order */
    const char *const *prop_values; /*   is kept, so the last one is ONNX Runtime's) */
} ib_model_metadata;

ib_status ib_model_get_metadata(const ib_model *model, ib_model_metadata *out_metadata);

/* ---- Sessions ---------------------------------------------------------------------- */
typedef struct ib_session ib_session;

typedef struct ib_session_options {
    int32_t num_threads;   /* 0: the CPUs this process may use */
    const char *target;    /* NULL or "host", or a target this CPU runs: "x86-64-v4",
                              "x86-64-v3", "generic" */
    int32_t use_reference; /* 1: run the reference executor; 0 (default): compile, except
                              models too small to repay the C compiler's time, which run on
                              the reference executor; -1: compile every model */
    int32_t no_cache;      /* 1: compile without the compiled-model cache (also when the
                              environment sets INFERBOOSTER_NO_CACHE=1); 0 (default): a
                              model compiled before loads from the cache in milliseconds */
    const char *cache_dir; /* NULL: INFERBOOSTER_CACHE_DIR, else $XDG_CACHE_HOME/inferbooster,
                              else ~/.cache/inferbooster */
    const char *tuning_db; /* the tuning database whose best knobs compiles use (written by
                              `inferbooster tune`): a path, or "off" for none; NULL:
                              INFERBOOSTER_TUNING_DB, else <cache dir>/tuning.jsonl */
} ib_session_options;

void ib_session_options_init(ib_session_options *options);

/* The session keeps a reference to `model`, which must outlive it. */
ib_status ib_session_create(const ib_model *model, const ib_session_options *options,
                            ib_session **out_session);
void ib_session_destroy(ib_session *session);

/* Loads the ONNX file at `path` and creates a session on it, as ib_model_load_file and
 * ib_session_create would; the session owns the model. A model of fixed shapes compiled
 * before (by any process sharing the cache) loads from the cache without parsing the
 * file: its inputs and outputs then come from the compiled artifact. */
ib_status ib_session_create_from_file(const char *path, const ib_session_options *options,
                                      ib_session **out_session);

/* Creates a session from an artifact directory written by `inferbooster compile`
 * (model.so, weights.bin, meta.json, and model.onnx when some nodes run the reference
 * op). options->target is ignored: the artifact was compiled for one. A broken or
 * mismatched artifact gives a status and a message, never a crash. */
ib_status ib_session_create_from_artifact(const char *dir, const ib_session_options *options,
                                          ib_session **out_session);

/* "compiled" (generated kernels, or the compiled plan's steps) or "reference" (the
 * model's shapes depend on data, the model is too small to repay compiling, or
 * use_reference was set). */
const char *ib_session_executor(const ib_session *session);

/* The session's inputs and outputs (for artifact sessions, which may have no model). */
size_t ib_session_input_count(const ib_session *session);
size_t ib_session_output_count(const ib_session *session);
ib_status ib_session_input_info(const ib_session *session, size_t index, ib_value_info *out_info);
ib_status ib_session_output_info(const ib_session *session, size_t index,
                                 ib_value_info *out_info);

/* Runs the model. Inputs are matched by name. For each requested output, a caller
 * buffer (outputs[i].data != NULL) receives the result if its dtype and size match;
 * otherwise the session allocates one (owns_data = 1; free with ib_tensor_release).
 * output_names may be NULL to request all model outputs in order (n_outputs must then
 * equal ib_model_output_count). Safe to call from many threads at once. */
ib_status ib_session_run(ib_session *session, size_t n_inputs, const char *const *input_names,
                         const ib_tensor *inputs, size_t n_outputs,
                         const char *const *output_names, ib_tensor *outputs);

#ifdef __cplusplus
}
#endif
#endif /* INFERBOOSTER_H */
