/* Reading ONNX files (ModelProto, TensorProto) into the graph IR. The only part of
 * InferBooster that reads protobuf. */
#ifndef IB_ONNX_LOADER_H
#define IB_ONNX_LOADER_H

#include "core/core.h"
#include "ir/graph.h"

typedef struct ib__opset_import {
    const char *domain; /* "" for the default ONNX domain */
    int64_t version;
} ib__opset_import;

/* A loaded model: its graph plus model-level metadata. Strings live in the graph arena.
 * Weights point into read-only mappings of the model file / external data files (or,
 * when a tensor's bytes are not aligned for its dtype, into an aligned copy). */
typedef struct ib__onnx_model {
    ib__graph *graph;
    int64_t ir_version;
    const char *producer_name;
    const char *producer_version;
    const char *domain;
    int64_t model_version;
    const char *doc_string;       /* ModelProto.doc_string ("" when absent) */
    const char *graph_doc_string; /* the main graph's doc_string ("" when absent) */
    /* ModelProto.metadata_props in file order (duplicate keys kept as written). */
    size_t n_props;
    const char **prop_keys, **prop_values;
    int32_t n_opsets;
    ib__opset_import *opsets;
    size_t weight_bytes_mapped; /* initializer bytes used in place from a mapping */
    size_t weight_bytes_copied; /* initializer bytes copied (misaligned or typed fields) */
    void *priv;                 /* loader-owned: mappings and copies to release */
    /* Where the bytes came from (for cache keys): the model file's real path, or the
     * private copy of a model loaded from memory (then source_path is NULL). */
    char *source_path;
    const void *source_bytes;
    size_t source_size;
} ib__onnx_model;

/* Loads `path`; external data is resolved relative to the file's folder and may not
 * escape it. Errors: IB_ERR_IO (cannot read), IB_ERR_INVALID_MODEL (malformed, with
 * the field at fault), IB_ERR_UNSUPPORTED. The graph is finalized (topologically
 * sorted) but shapes are only those the file declares. */
ib_status ib__onnx_load_file(const char *path, ib__onnx_model **out);
/* Same from memory; the bytes are copied only where needed (the buffer may be freed
 * after the call). base_dir (may be NULL) resolves external data. */
ib_status ib__onnx_load_bytes(const void *data, size_t size, const char *base_dir,
                              ib__onnx_model **out);
void ib__onnx_model_destroy(ib__onnx_model *model);
/* The real paths of the external data files the model's weights were read from, sorted;
 * *out is ib__malloc'ed (the strings belong to the model), *n may be 0. */
ib_status ib__onnx_data_paths(const ib__onnx_model *model, const char ***out, size_t *n);

/* Reads a serialized TensorProto file (the ONNX test data input_0.pb / output_0.pb).
 * On success *out owns its data (owns_data = 1; release with ib_tensor_release) and
 * *out_name (may be NULL) receives a malloc'ed copy of the tensor's name (ib__free). */
ib_status ib__onnx_read_tensor_file(const char *path, ib_tensor *out, char **out_name);
/* Serializes a tensor as a TensorProto (raw_data) to `path` (used by tests/tools). */
ib_status ib__onnx_write_tensor_file(const char *path, const ib_tensor *t, const char *name);

#endif /* IB_ONNX_LOADER_H */
