/* The public view of a model's metadata (producer, domain, graph name, versions, doc
 * strings, metadata_props), for bindings such as the Python package's get_modelmeta(). */
#include <string.h>

#include "api/model_internal.h"

ib_status ib_model_get_metadata(const ib_model *model, ib_model_metadata *out_metadata) {
    if (!model || !out_metadata)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model and out_metadata are required");
    const ib__onnx_model *onnx = model->onnx;
    ib_model_metadata md;
    memset(&md, 0, sizeof md);
    md.producer_name = onnx->producer_name ? onnx->producer_name : "";
    md.producer_version = onnx->producer_version ? onnx->producer_version : "";
    md.domain = onnx->domain ? onnx->domain : "";
    md.graph_name = model->graph->name ? model->graph->name : "";
    md.model_version = onnx->model_version;
    md.ir_version = onnx->ir_version;
    md.opset = model->graph->opset;
    md.doc_string = onnx->doc_string ? onnx->doc_string : "";
    md.graph_doc_string = onnx->graph_doc_string ? onnx->graph_doc_string : "";
    md.n_props = onnx->n_props;
    md.prop_keys = onnx->prop_keys;
    md.prop_values = onnx->prop_values;
    *out_metadata = md;
    return IB_OK;
}
