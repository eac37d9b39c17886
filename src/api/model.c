/* The public model API: load an ONNX model, infer its shapes, describe its inputs and
 * outputs. */
#include <string.h>

#include "api/model_internal.h"
#include "ir/shape_inference.h"

static ib_status finish_load(ib__onnx_model *onnx, ib_model **out_model) {
    ib_model *m = ib__calloc(1, sizeof *m);
    if (!m) {
        ib__onnx_model_destroy(onnx);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory loading a model");
    }
    m->onnx = onnx;
    m->graph = onnx->graph;
    ib__infer_report report;
    ib_status st = ib__infer_graph(m->graph, &report);
    if (st) {
        ib_model_destroy(m);
        return st;
    }
    m->inputs = ib__calloc((size_t)m->graph->n_inputs + 1, sizeof(ib__value *));
    if (!m->inputs) {
        ib_model_destroy(m);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory loading a model");
    }
    for (int32_t i = 0; i < m->graph->n_inputs; i++)
        if (m->graph->inputs[i]->kind == IB_VALUE_INPUT) m->inputs[m->n_inputs++] = m->graph->inputs[i];
    m->n_unsupported = report.n_unsupported;
    m->first_unsupported = report.first_unsupported;
    *out_model = m;
    return IB_OK;
}

ib_status ib_model_load_file(const char *path, ib_model **out_model) {
    if (!path || !out_model) return ib__error(IB_ERR_INVALID_ARGUMENT, "path and out_model are required");
    ib__error_clear();
    ib__onnx_model *onnx = NULL;
    IB_TRY(ib__onnx_load_file(path, &onnx));
    return finish_load(onnx, out_model);
}

ib_status ib_model_load_bytes(const void *bytes, size_t size, const char *base_dir,
                              ib_model **out_model) {
    if (!bytes || !out_model) return ib__error(IB_ERR_INVALID_ARGUMENT, "bytes and out_model are required");
    ib__error_clear();
    ib__onnx_model *onnx = NULL;
    IB_TRY(ib__onnx_load_bytes(bytes, size, base_dir, &onnx));
    return finish_load(onnx, out_model);
}

void ib_model_destroy(ib_model *model) {
    if (!model) return;
    ib__onnx_model_destroy(model->onnx);
    ib__free(model->inputs);
    ib__free(model);
}

size_t ib_model_input_count(const ib_model *model) {
    return model ? (size_t)model->n_inputs : 0;
}

size_t ib_model_output_count(const ib_model *model) {
    return model ? (size_t)model->graph->n_outputs : 0;
}

static void describe(const ib__value *v, ib_value_info *info) {
    memset(info, 0, sizeof *info);
    info->name = v->name;
    info->dtype = v->dtype;
    info->rank = v->rank;
    for (int32_t i = 0; i < v->rank && i < IB_MAX_RANK; i++) {
        info->shape[i] = v->dims[i];
        info->dim_names[i] = v->dim_param[i];
    }
}

ib_status ib_model_input_info(const ib_model *model, size_t index, ib_value_info *out_info) {
    if (!model || !out_info || index >= (size_t)model->n_inputs)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "input index %zu out of range", index);
    describe(model->inputs[index], out_info);
    return IB_OK;
}

ib_status ib_model_output_info(const ib_model *model, size_t index, ib_value_info *out_info) {
    if (!model || !out_info || index >= (size_t)model->graph->n_outputs)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "output index %zu out of range", index);
    describe(model->graph->outputs[index], out_info);
    return IB_OK;
}
