/* What the library's own tools (CLI, tests) may see of an ib_model beyond the public
 * API: its loaded ONNX model and its graph with shapes inferred. */
#ifndef IB_API_MODEL_INTERNAL_H
#define IB_API_MODEL_INTERNAL_H

#include "inferbooster/inferbooster.h"
#include "ir/graph.h"
#include "onnx/onnx_loader.h"

struct ib_model {
    ib__onnx_model *onnx; /* owns the graph */
    ib__graph *graph;     /* onnx->graph, after shape inference and constant folding */
    /* Inputs a caller feeds (graph inputs that are not initializers), in model order. */
    int32_t n_inputs;
    ib__value **inputs;
    /* Ops without an implementation, for the error a session reports. */
    int32_t n_unsupported;
    const ib__node *first_unsupported;
};

static inline const ib__graph *ib__model_graph(const ib_model *m) { return m->graph; }
static inline const ib__onnx_model *ib__model_onnx(const ib_model *m) { return m->onnx; }

/* The model a session runs on: NULL for an artifact session without model.onnx and for
 * a cache hit on a file, which does not parse it (until a run needs it). */
const ib_model *ib__session_model(const ib_session *session);

/* An input whose dim 0 is not fixed: the model is compiled per batch size. */
static inline bool ib__model_has_symbolic_batch(const ib_model *m) {
    for (int32_t i = 0; i < m->n_inputs; i++)
        if (m->inputs[i]->rank >= 1 && m->inputs[i]->dims[0] < 0) return true;
    return false;
}

#endif /* IB_API_MODEL_INTERNAL_H */
