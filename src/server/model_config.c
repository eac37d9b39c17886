/* Triton-style model configuration: config.pbtxt fields (name, platform/backend,
 * max_batch_size, input/output, dynamic_batching, instance_group, version_policy) mapped
 * onto ib__model_config, and their check against the ONNX model. */
#include "server/model_config.h"

#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "server/pbtxt.h"

static const struct {
    const char *config, *protocol;
    ib_dtype dtype;
} k_types[] = {
    {"TYPE_BOOL", "BOOL", IB_DTYPE_BOOL},       {"TYPE_UINT8", "UINT8", IB_DTYPE_UINT8},
    {"TYPE_UINT16", "UINT16", IB_DTYPE_UINT16}, {"TYPE_UINT32", "UINT32", IB_DTYPE_UINT32},
    {"TYPE_UINT64", "UINT64", IB_DTYPE_UINT64}, {"TYPE_INT8", "INT8", IB_DTYPE_INT8},
    {"TYPE_INT16", "INT16", IB_DTYPE_INT16},    {"TYPE_INT32", "INT32", IB_DTYPE_INT32},
    {"TYPE_INT64", "INT64", IB_DTYPE_INT64},    {"TYPE_FP16", "FP16", IB_DTYPE_FLOAT16},
    {"TYPE_FP32", "FP32", IB_DTYPE_FLOAT32},    {"TYPE_FP64", "FP64", IB_DTYPE_FLOAT64},
    {"TYPE_BF16", "BF16", IB_DTYPE_BFLOAT16},   {"TYPE_STRING", "BYTES", IB_DTYPE_STRING},
};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

ib_dtype ib__config_dtype(const char *s) {
    for (size_t i = 0; s && i < N_TYPES; i++)
        if (strcmp(s, k_types[i].config) == 0) return k_types[i].dtype;
    return IB_DTYPE_UNDEFINED;
}
ib_dtype ib__protocol_dtype(const char *s) {
    for (size_t i = 0; s && i < N_TYPES; i++)
        if (strcmp(s, k_types[i].protocol) == 0) return k_types[i].dtype;
    return IB_DTYPE_UNDEFINED;
}
const char *ib__protocol_dtype_name(ib_dtype dt) {
    for (size_t i = 0; i < N_TYPES; i++)
        if (k_types[i].dtype == dt) return k_types[i].protocol;
    return NULL;
}

void ib__model_config_defaults(ib__model_config *cfg, const char *name) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->name, sizeof cfg->name, "%s", name ? name : "");
    /* Triton's platform name for ONNX models: clients and tools key on it. */
    snprintf(cfg->platform, sizeof cfg->platform, "onnxruntime_onnx");
    cfg->max_batch_size = -1; /* decided from the model when the file says nothing */
    cfg->instance_count = 1;
    cfg->policy = IB__VERSIONS_LATEST;
    cfg->latest_n = 1;
}

static ib_status scalar_string(const ib__pb_field *f, char *dst, size_t cap) {
    if (f->is_message || !f->value)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: field '%s' must be a string", f->line,
                         f->name);
    if (strlen(f->value) >= cap)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: field '%s' longer than %zu bytes", f->line,
                         f->name, cap - 1);
    memcpy(dst, f->value, strlen(f->value) + 1);
    return IB_OK;
}

static ib_status need_message(const ib__pb_field *f) {
    if (!f->is_message)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: field '%s' must be a message { ... }",
                         f->line, f->name);
    return IB_OK;
}

static ib_status parse_io(const ib__pb_field *msg, ib__io_config *io) {
    IB_TRY(need_message(msg));
    memset(io, 0, sizeof *io);
    io->rank = -1;
    const ib__pb_field *f = ib__pb_find(msg, "name", NULL);
    if (!f) return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: %s without a name", msg->line, msg->name);
    IB_TRY(scalar_string(f, io->name, sizeof io->name));
    if ((f = ib__pb_find(msg, "data_type", NULL))) {
        if (f->is_message || !f->value || !(io->dtype = ib__config_dtype(f->value)))
            return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: %s '%s': unknown data_type '%.32s'",
                             f->line, msg->name, io->name, f->value ? f->value : "");
    }
    int32_t rank = 0;
    for (f = ib__pb_find(msg, "dims", NULL); f; f = ib__pb_find(msg, "dims", f)) {
        if (rank >= IB_MAX_RANK)
            return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: %s '%s' has more than %d dims", f->line,
                             msg->name, io->name, IB_MAX_RANK);
        IB_TRY(ib__pb_int(f, -1, IB_MAX_ELEMENTS, &io->dims[rank]));
        rank++;
    }
    if (rank > 0 || ib__pb_find(msg, "reshape", NULL)) io->rank = rank;
    if (ib__pb_find(msg, "reshape", NULL))
        return ib__error(IB_ERR_UNSUPPORTED, "config.pbtxt line %d: %s '%s': reshape is not supported", msg->line,
                         msg->name, io->name);
    return IB_OK;
}

static ib_status parse_root(const ib__pb_field *root, ib__model_config *cfg) {
    const ib__pb_field *f;
    if ((f = ib__pb_find(root, "name", NULL))) {
        char name[IB__CONFIG_NAME_MAX];
        IB_TRY(scalar_string(f, name, sizeof name));
        /* Triton requires the name to match the directory; a mismatch is a config error. */
        if (cfg->name[0] && strcmp(name, cfg->name) != 0)
            return ib__error(IB_ERR_INVALID_ARGUMENT,
                             "config.pbtxt line %d: name '%s' differs from the model's directory '%s'", f->line, name,
                             cfg->name);
    }
    if ((f = ib__pb_find(root, "platform", NULL))) {
        char platform[64];
        IB_TRY(scalar_string(f, platform, sizeof platform));
        if (strcmp(platform, "onnxruntime_onnx") != 0 && strcmp(platform, "inferbooster_onnx") != 0)
            return ib__error(IB_ERR_UNSUPPORTED,
                             "config.pbtxt line %d: platform '%s': only ONNX models (onnxruntime_onnx) are served",
                             f->line, platform);
    }
    if ((f = ib__pb_find(root, "backend", NULL))) {
        char backend[64];
        IB_TRY(scalar_string(f, backend, sizeof backend));
        if (strcmp(backend, "onnxruntime") != 0 && strcmp(backend, "inferbooster") != 0)
            return ib__error(IB_ERR_UNSUPPORTED,
                             "config.pbtxt line %d: backend '%s': only ONNX models (onnxruntime) are served", f->line,
                             backend);
    }
    if ((f = ib__pb_find(root, "max_batch_size", NULL))) IB_TRY(ib__pb_int(f, 0, 1 << 20, &cfg->max_batch_size));
    for (f = ib__pb_find(root, "input", NULL); f; f = ib__pb_find(root, "input", f)) {
        if (cfg->n_inputs >= IB__CONFIG_MAX_IO)
            return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt: more than %d inputs", IB__CONFIG_MAX_IO);
        IB_TRY(parse_io(f, &cfg->inputs[cfg->n_inputs++]));
    }
    for (f = ib__pb_find(root, "output", NULL); f; f = ib__pb_find(root, "output", f)) {
        if (cfg->n_outputs >= IB__CONFIG_MAX_IO)
            return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt: more than %d outputs", IB__CONFIG_MAX_IO);
        IB_TRY(parse_io(f, &cfg->outputs[cfg->n_outputs++]));
    }
    if ((f = ib__pb_find(root, "dynamic_batching", NULL))) {
        IB_TRY(need_message(f));
        cfg->dynamic_batching = true;
        const ib__pb_field *g;
        for (g = ib__pb_find(f, "preferred_batch_size", NULL); g; g = ib__pb_find(f, "preferred_batch_size", g)) {
            if (cfg->n_preferred >= IB__CONFIG_MAX_PREFERRED)
                return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: more than %d preferred_batch_size",
                                 g->line, IB__CONFIG_MAX_PREFERRED);
            IB_TRY(ib__pb_int(g, 1, 1 << 20, &cfg->preferred_batch_size[cfg->n_preferred++]));
        }
        if ((g = ib__pb_find(f, "max_queue_delay_microseconds", NULL)))
            IB_TRY(ib__pb_int(g, 0, 60 * 1000 * 1000, &cfg->max_queue_delay_us));
        const ib__pb_field *qp = ib__pb_find(f, "default_queue_policy", NULL);
        if (qp) {
            IB_TRY(need_message(qp));
            if ((g = ib__pb_find(qp, "max_queue_size", NULL)))
                IB_TRY(ib__pb_int(g, 0, 1 << 20, &cfg->max_queue_size));
            if ((g = ib__pb_find(qp, "default_timeout_microseconds", NULL)))
                IB_TRY(ib__pb_int(g, 0, 3600ll * 1000 * 1000, &cfg->default_timeout_us));
        }
    }
    int64_t instances = 0;
    for (f = ib__pb_find(root, "instance_group", NULL); f; f = ib__pb_find(root, "instance_group", f)) {
        IB_TRY(need_message(f));
        int64_t count = 1;
        const ib__pb_field *g = ib__pb_find(f, "count", NULL);
        if (g) IB_TRY(ib__pb_int(g, 1, 256, &count));
        if ((g = ib__pb_find(f, "kind", NULL))) {
            if (g->is_message || !g->value ||
                (strcmp(g->value, "KIND_CPU") && strcmp(g->value, "KIND_GPU") && strcmp(g->value, "KIND_AUTO")))
                return ib__error(IB_ERR_INVALID_ARGUMENT,
                                 "config.pbtxt line %d: instance_group kind must be KIND_CPU, KIND_GPU or KIND_AUTO",
                                 g->line);
            if (!strcmp(g->value, "KIND_GPU")) cfg->instance_kind_gpu = true;
        }
        instances += count;
        if (instances > 256)
            return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: more than 256 instances in all",
                             f->line);
    }
    if (instances > 0) cfg->instance_count = instances;
    if ((f = ib__pb_find(root, "version_policy", NULL))) {
        IB_TRY(need_message(f));
        const ib__pb_field *g;
        if ((g = ib__pb_find(f, "latest", NULL))) {
            IB_TRY(need_message(g));
            cfg->policy = IB__VERSIONS_LATEST;
            const ib__pb_field *n = ib__pb_find(g, "num_versions", NULL);
            cfg->latest_n = 1;
            if (n) IB_TRY(ib__pb_int(n, 1, IB__CONFIG_MAX_VERSIONS, &cfg->latest_n));
        } else if ((g = ib__pb_find(f, "all", NULL))) {
            IB_TRY(need_message(g));
            cfg->policy = IB__VERSIONS_ALL;
        } else if ((g = ib__pb_find(f, "specific", NULL))) {
            IB_TRY(need_message(g));
            cfg->policy = IB__VERSIONS_SPECIFIC;
            for (const ib__pb_field *v = ib__pb_find(g, "versions", NULL); v; v = ib__pb_find(g, "versions", v)) {
                if (cfg->n_versions >= IB__CONFIG_MAX_VERSIONS)
                    return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: more than %d versions", v->line,
                                     IB__CONFIG_MAX_VERSIONS);
                IB_TRY(ib__pb_int(v, 1, INT64_MAX, &cfg->versions[cfg->n_versions++]));
            }
            if (cfg->n_versions == 0)
                return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: specific version policy lists none",
                                 g->line);
        } else {
            return ib__error(IB_ERR_INVALID_ARGUMENT,
                             "config.pbtxt line %d: version_policy needs latest, all or specific", f->line);
        }
    }
    return IB_OK;
}

ib_status ib__model_config_parse(const char *text, size_t len, ib__model_config *cfg) {
    ib__pb_field *root = NULL;
    IB_TRY(ib__pbtxt_parse(text, len, &root));
    ib_status st = parse_root(root, cfg);
    ib__pbtxt_free(root);
    if (st == IB_OK) cfg->from_file = true;
    return st;
}

/* Whether every input and output has a variable first dim: the server may then batch. */
static bool model_batchable(const ib_model *model) {
    size_t ni = ib_model_input_count(model), no = ib_model_output_count(model);
    for (size_t k = 0; k < ni + no; k++) {
        ib_value_info v;
        if ((k < ni ? ib_model_input_info(model, k, &v) : ib_model_output_info(model, k - ni, &v)) != IB_OK)
            return false;
        if (v.rank < 1 || v.shape[0] != -1) return false;
    }
    return ni + no > 0;
}

static ib_status check_io(const ib__model_config *cfg, ib__io_config *io, bool input, const ib_model *model) {
    size_t n = input ? ib_model_input_count(model) : ib_model_output_count(model);
    const char *kind = input ? "input" : "output";
    for (size_t k = 0; k < n; k++) {
        ib_value_info v;
        IB_TRY(input ? ib_model_input_info(model, k, &v) : ib_model_output_info(model, k, &v));
        if (!v.name || strcmp(v.name, io->name) != 0) continue;
        if (io->dtype && io->dtype != v.dtype)
            return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt: %s '%s' has data_type %s, the model says %s",
                             kind, io->name, ib_dtype_name(io->dtype), ib_dtype_name(v.dtype));
        io->dtype = v.dtype;
        int32_t off = cfg->max_batch_size > 0 ? 1 : 0;
        if (io->rank >= 0 && v.rank >= 0) {
            if (io->rank + off != v.rank)
                return ib__error(IB_ERR_INVALID_ARGUMENT,
                                 "config.pbtxt: %s '%s' has %d dims%s, the model's has rank %d", kind, io->name,
                                 io->rank, off ? " plus the batch dim" : "", v.rank);
            for (int32_t d = 0; d < io->rank; d++) {
                int64_t m = v.shape[d + off];
                if (io->dims[d] != -1 && m != -1 && io->dims[d] != m)
                    return ib__error(IB_ERR_INVALID_ARGUMENT,
                                     "config.pbtxt: %s '%s' dim %d is %lld, the model's is %lld", kind, io->name, d,
                                     (long long)io->dims[d], (long long)m);
            }
        } else if (v.rank >= off) {
            io->rank = v.rank - off;
            for (int32_t d = 0; d < io->rank; d++) io->dims[d] = v.shape[d + off];
        }
        return IB_OK;
    }
    return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt: %s '%s' is not one of the model's %ss", kind, io->name,
                     kind);
}

ib_status ib__model_config_complete(ib__model_config *cfg, const ib_model *model) {
    bool batchable = model_batchable(model);
    if (cfg->max_batch_size < 0) {
        /* No config: batch when the model allows it, without waiting for company. */
        cfg->max_batch_size = batchable ? 8 : 0;
        if (batchable && !cfg->from_file) cfg->dynamic_batching = true;
    }
    if (cfg->max_batch_size > 0 && !batchable)
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "config.pbtxt: max_batch_size %lld needs a variable first dim on every input and output of "
                         "model '%s'",
                         (long long)cfg->max_batch_size, cfg->name);
    if (cfg->n_inputs == 0) {
        size_t n = ib_model_input_count(model);
        if (n > IB__CONFIG_MAX_IO) return ib__error(IB_ERR_UNSUPPORTED, "model '%s' has more than %d inputs", cfg->name, IB__CONFIG_MAX_IO);
        for (size_t k = 0; k < n; k++) {
            ib_value_info v;
            IB_TRY(ib_model_input_info(model, k, &v));
            snprintf(cfg->inputs[k].name, sizeof cfg->inputs[k].name, "%s", v.name ? v.name : "");
            cfg->inputs[k].rank = -1;
        }
        cfg->n_inputs = n;
    }
    if (cfg->n_outputs == 0) {
        size_t n = ib_model_output_count(model);
        if (n > IB__CONFIG_MAX_IO) return ib__error(IB_ERR_UNSUPPORTED, "model '%s' has more than %d outputs", cfg->name, IB__CONFIG_MAX_IO);
        for (size_t k = 0; k < n; k++) {
            ib_value_info v;
            IB_TRY(ib_model_output_info(model, k, &v));
            snprintf(cfg->outputs[k].name, sizeof cfg->outputs[k].name, "%s", v.name ? v.name : "");
            cfg->outputs[k].rank = -1;
        }
        cfg->n_outputs = n;
    }
    for (size_t k = 0; k < cfg->n_inputs; k++) IB_TRY(check_io(cfg, &cfg->inputs[k], true, model));
    for (size_t k = 0; k < cfg->n_outputs; k++) IB_TRY(check_io(cfg, &cfg->outputs[k], false, model));
    if (cfg->n_inputs != ib_model_input_count(model))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt lists %zu inputs, model '%s' has %zu", cfg->n_inputs,
                         cfg->name, ib_model_input_count(model));
    for (size_t k = 0; k < cfg->n_preferred; k++)
        if (cfg->max_batch_size > 0 && cfg->preferred_batch_size[k] > cfg->max_batch_size)
            return ib__error(IB_ERR_INVALID_ARGUMENT,
                             "config.pbtxt: preferred_batch_size %lld exceeds max_batch_size %lld",
                             (long long)cfg->preferred_batch_size[k], (long long)cfg->max_batch_size);
    if (cfg->max_batch_size == 0) cfg->dynamic_batching = false;
    return IB_OK;
}
