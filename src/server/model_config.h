/* A model's serving configuration: the part of Triton's ModelConfig people write for
 * ONNX models, read from config.pbtxt or derived from the ONNX file's inputs/outputs. */
#ifndef IB_SERVER_MODEL_CONFIG_H
#define IB_SERVER_MODEL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inferbooster/inferbooster.h"

#define IB__CONFIG_MAX_IO 64
#define IB__CONFIG_MAX_PREFERRED 16
#define IB__CONFIG_MAX_VERSIONS 64
#define IB__CONFIG_NAME_MAX 128

typedef struct ib__io_config {
    char name[IB__CONFIG_NAME_MAX];
    ib_dtype dtype;
    int32_t rank;                /* -1: not given */
    int64_t dims[IB_MAX_RANK];   /* without the batch dim when max_batch_size > 0 */
} ib__io_config;

typedef enum { IB__VERSIONS_LATEST, IB__VERSIONS_ALL, IB__VERSIONS_SPECIFIC } ib__version_policy_kind;

typedef struct ib__model_config {
    char name[IB__CONFIG_NAME_MAX];
    char platform[64];
    int64_t max_batch_size;      /* 0: the model takes no batch dimension from the server */
    size_t n_inputs, n_outputs;
    ib__io_config inputs[IB__CONFIG_MAX_IO];
    ib__io_config outputs[IB__CONFIG_MAX_IO];
    bool dynamic_batching;
    size_t n_preferred;
    int64_t preferred_batch_size[IB__CONFIG_MAX_PREFERRED];
    int64_t max_queue_delay_us;
    int64_t max_queue_size;      /* 0: the server's default bound */
    int64_t default_timeout_us;  /* 0: requests wait in the queue as long as it takes */
    int64_t instance_count;
    bool instance_kind_gpu;
    ib__version_policy_kind policy;
    int64_t latest_n;
    size_t n_versions;
    int64_t versions[IB__CONFIG_MAX_VERSIONS];
    bool from_file;
} ib__model_config;

/* Defaults for a model called `name` (no config file). */
void ib__model_config_defaults(ib__model_config *cfg, const char *name);
/* Reads config.pbtxt text over the defaults; unknown fields are ignored (Triton has many
 * that do not apply here), known fields with bad values are errors naming them. */
ib_status ib__model_config_parse(const char *text, size_t len, ib__model_config *cfg);
/* Checks the config against the loaded model and fills what the file left out (inputs,
 * outputs, whether the batch dim is there). */
ib_status ib__model_config_complete(ib__model_config *cfg, const ib_model *model);
/* "TYPE_FP32" <-> dtype; "FP32" (the protocol's names) <-> dtype. 0 on unknown. */
ib_dtype ib__config_dtype(const char *type_name);
ib_dtype ib__protocol_dtype(const char *datatype);
const char *ib__protocol_dtype_name(ib_dtype dtype); /* NULL for dtypes without one */

#endif /* IB_SERVER_MODEL_CONFIG_H */
