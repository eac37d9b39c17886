/* libFuzzer target: arbitrary bytes through ib__onnx_load_bytes, then a walk over the
 * graph it built (so a dangling or half-initialised pointer shows up under ASan). */
#include "fuzz_targets.h"
#include "ir/graph.h"
#include "onnx/onnx_loader.h"

static uint64_t walk_graph(const ib__graph *g);

static uint64_t walk_tensor(const ib_tensor *t) {
    uint64_t h = (uint64_t)t->dtype + (uint64_t)t->rank;
    const uint8_t *b = t->data;
    if (t->nbytes) h += b[0] + b[t->nbytes - 1]; /* first and last byte must be readable */
    return h;
}

static uint64_t walk_attr(const ib__attr *a) {
    uint64_t h = (uint64_t)a->kind + a->name[0];
    switch (a->kind) {
    case IB_ATTR_STRING:
        h += a->s_len ? (uint8_t)a->s[a->s_len - 1] : 0;
        break;
    case IB_ATTR_TENSOR:
        h += walk_tensor(a->t);
        break;
    case IB_ATTR_GRAPH:
        h += walk_graph(a->g);
        break;
    case IB_ATTR_FLOATS:
        h += a->count ? (uint64_t)(a->floats[a->count - 1] != 0) : 0;
        break;
    case IB_ATTR_INTS:
        h += a->count ? (uint64_t)a->ints[a->count - 1] : 0;
        break;
    case IB_ATTR_STRINGS:
        for (int32_t i = 0; i < a->count; i++) h += (uint8_t)a->strings[i][0];
        break;
    case IB_ATTR_TENSORS:
        for (int32_t i = 0; i < a->count; i++) h += walk_tensor(a->tensors[i]);
        break;
    case IB_ATTR_GRAPHS:
        for (int32_t i = 0; i < a->count; i++) h += walk_graph(a->graphs[i]);
        break;
    default:
        break;
    }
    return h;
}

static uint64_t walk_graph(const ib__graph *g) {
    uint64_t h = (uint64_t)g->n_nodes;
    for (int32_t i = 0; i < g->n_values; i++) {
        const ib__value *v = g->values[i];
        h += (uint8_t)v->name[0] + (uint64_t)v->rank;
        for (int32_t d = 0; d < v->rank; d++) h += (uint64_t)v->dims[d];
        if (v->constant) h += walk_tensor(v->constant);
    }
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ib__node *n = g->nodes[i];
        h += (uint8_t)ib__node_label(n)[0] + (uint64_t)n->opset;
        for (int32_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k]) h += (uint64_t)n->inputs[k]->index;
        for (int32_t k = 0; k < n->n_outputs; k++)
            if (n->outputs[k]) h += (uint64_t)n->outputs[k]->index;
        for (int32_t k = 0; k < n->n_attrs; k++) h += walk_attr(&n->attrs[k]);
    }
    for (int32_t i = 0; i < g->n_inputs; i++) h += (uint64_t)g->inputs[i]->index;
    for (int32_t i = 0; i < g->n_outputs; i++) h += (uint64_t)g->outputs[i]->index;
    return h;
}

static volatile uint64_t g_sink;

ib_status ib__fuzz_model_loader(const uint8_t *data, size_t size) {
    ib__onnx_model *m = NULL;
    ib_status st = ib__onnx_load_bytes(data, size, NULL, &m);
    if (st == IB_OK) g_sink += walk_graph(m->graph) + (uint64_t)m->n_opsets;
    ib__onnx_model_destroy(m);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ib__fuzz_model_loader(data, size);
    return 0;
}
