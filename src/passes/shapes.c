/* Shape specialisation: concrete shapes of every value for one batch size, computed by
 * re-running the ops' inference on copies of the graph's values (the model graph is
 * shared by reference sessions and never touched), and plan-time folding of nodes whose
 * inputs became known once the batch is fixed (Shape -> Gather -> Concat -> Reshape). */
#include <string.h>

#include "ir/shape_inference.h"
#include "ops/ops.h"
#include "passes/passes_internal.h"

enum { MAX_NODE_IO = 64 };

bool ib__value_concrete(const ib__value *v) {
    if (!v || v->rank < 0 || v->rank > IB_MAX_RANK || v->dtype == IB_DTYPE_UNDEFINED)
        return false;
    for (int32_t d = 0; d < v->rank; d++)
        if (v->dims[d] < 0) return false;
    return ib__shape_count(v->dims, v->rank) >= 0;
}

bool ib__node_folded(const ib__lower *L, const ib__node *node) {
    bool any = false;
    for (int32_t o = 0; o < node->n_outputs; o++) {
        const ib__value *v = node->outputs[o];
        if (!v) continue;
        if (!L->vals[v->index].constant) return false;
        any = true;
    }
    return any;
}

static bool has_subgraph(const ib__node *node) {
    for (int32_t a = 0; a < node->n_attrs; a++)
        if (node->attrs[a].kind == IB_ATTR_GRAPH || node->attrs[a].kind == IB_ATTR_GRAPHS)
            return true;
    return false;
}

/* Ops whose result must not be computed before run time (same rule as load time). */
static bool foldable(ib__op_id op) {
    switch (op) {
    case IB_OP_RANDOM_NORMAL:
    case IB_OP_RANDOM_NORMAL_LIKE:
    case IB_OP_RANDOM_UNIFORM:
    case IB_OP_RANDOM_UNIFORM_LIKE:
    case IB_OP_BERNOULLI:
    case IB_OP_MULTINOMIAL:
    case IB_OP_IF:
    case IB_OP_LOOP:
    case IB_OP_SCAN:
        return false;
    default:
        return true;
    }
}

/* Marks nodes reachable backwards from the graph outputs; `stop_at_folded` makes a
 * folded node a leaf (its inputs are not needed at run time). */
static ib_status mark_live(ib__lower *L, bool stop_at_folded) {
    const ib__graph *g = L->graph;
    memset(L->live, 0, (size_t)g->n_nodes);
    int32_t *stack = ib__calloc((size_t)g->n_nodes + 1, sizeof(int32_t));
    if (!stack) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory planning liveness");
    int32_t sp = 0;
    for (int32_t o = 0; o < g->n_outputs; o++) {
        const ib__node *p = g->outputs[o]->producer;
        if (p && !L->live[p->index]) {
            L->live[p->index] = 1;
            stack[sp++] = p->index;
        }
    }
    while (sp > 0) {
        const ib__node *node = g->nodes[stack[--sp]];
        if (stop_at_folded && ib__node_folded(L, node)) continue;
        for (int32_t i = 0; i < node->n_inputs; i++) {
            const ib__value *v = node->inputs[i];
            if (!v || !v->producer || L->live[v->producer->index]) continue;
            L->live[v->producer->index] = 1;
            stack[sp++] = v->producer->index;
        }
    }
    if (stop_at_folded)
        for (int32_t n = 0; n < g->n_nodes; n++)
            if (L->live[n] && ib__node_folded(L, g->nodes[n])) L->live[n] = 0;
    ib__free(stack);
    return IB_OK;
}

/* Gives the model's runtime inputs concrete dims: dim 0 when symbolic, and every dim
 * named like a symbolic dim 0, take the batch; any other unknown dim is refused. */
static ib_status specialise_inputs(ib__lower *L) {
    const ib__graph *g = L->graph;
    int64_t batch = L->opt.batch > 0 ? L->opt.batch : 1;
    for (int32_t i = 0; i < g->n_inputs; i++) {
        const ib__value *gv = g->inputs[i];
        if (gv->kind != IB_VALUE_INPUT) continue;
        ib__value *v = &L->vals[gv->index];
        if (v->rank < 0 || v->rank > IB_MAX_RANK || v->dtype == IB_DTYPE_UNDEFINED)
            return ib__error(IB_ERR_UNSUPPORTED, "input '%s': rank or dtype unknown",
                             v->name);
        for (int32_t d = 0; d < v->rank; d++) {
            if (v->dims[d] >= 0) continue;
            bool batch_dim = d == 0;
            for (int32_t k = 0; k < g->n_inputs && !batch_dim && v->dim_param[d]; k++) {
                const ib__value *o = g->inputs[k];
                if (o->kind == IB_VALUE_INPUT && o->rank > 0 && o->dims[0] < 0 &&
                    o->dim_param[0] && strcmp(o->dim_param[0], v->dim_param[d]) == 0)
                    batch_dim = true;
            }
            if (!batch_dim)
                return ib__error(IB_ERR_UNSUPPORTED,
                                 "input '%s': dim %d ('%s') is symbolic and not the batch",
                                 v->name, d, v->dim_param[d] ? v->dim_param[d] : "?");
            v->dims[d] = batch;
        }
    }
    return IB_OK;
}

/* Runs node's reference op on known inputs; outputs become plan-arena constants. */
static ib_status fold(ib__lower *L, const ib__node *node, const ib__op_def *def) {
    const ib_tensor *ins[MAX_NODE_IO];
    ib_tensor store[MAX_NODE_IO], shape_view;
    ib_tensor *outs[MAX_NODE_IO];
    for (int32_t o = 0; o < node->n_outputs; o++) {
        const ib__value *v = node->outputs[o] ? &L->vals[node->outputs[o]->index] : NULL;
        if (v && (!ib__value_concrete(v) || ib_dtype_size(v->dtype) == 0 ||
                  ib__shape_count(v->dims, v->rank) > IB_FOLD_MAX_ELEMENTS))
            return IB_OK; /* too big or unknown: computed at run time */
    }
    for (int32_t i = 0; i < node->n_inputs; i++)
        ins[i] = node->inputs[i] ? L->vals[node->inputs[i]->index].constant : NULL;
    if ((node->op == IB_OP_SHAPE || node->op == IB_OP_SIZE) && node->n_inputs >= 1 &&
        node->inputs[0] && !ins[0]) {
        const ib__value *v = &L->vals[node->inputs[0]->index];
        memset(&shape_view, 0, sizeof shape_view);
        shape_view.dtype = v->dtype;
        shape_view.rank = v->rank;
        memcpy(shape_view.shape, v->dims, sizeof(int64_t) * (size_t)v->rank);
        ins[0] = &shape_view;
    }
    ib_status st = IB_OK;
    int32_t made = 0;
    for (; made < node->n_outputs; made++) {
        outs[made] = NULL;
        if (!node->outputs[made]) continue;
        const ib__value *v = &L->vals[node->outputs[made]->index];
        st = ib__tensor_alloc(&store[made], v->dtype, v->rank, v->dims);
        if (st) break;
        outs[made] = &store[made];
    }
    if (st == IB_OK) {
        ib__run_ctx rc = {node, node->opset, node->n_inputs, ins, node->n_outputs, outs,
                          NULL, NULL};
        st = def->run(&rc);
    }
    for (int32_t o = 0; st == IB_OK && o < node->n_outputs; o++) {
        if (!outs[o]) continue;
        ib_tensor *t = ib__arena_alloc(L->plan->arena, sizeof *t);
        void *data = t ? ib__arena_alloc(L->plan->arena, store[o].nbytes + 1) : NULL;
        if (!t || !data) {
            st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory folding constants");
            break;
        }
        *t = store[o];
        if (store[o].nbytes) memcpy(data, store[o].data, store[o].nbytes);
        t->data = data;
        t->owns_data = 0;
        L->vals[node->outputs[o]->index].constant = t;
    }
    for (int32_t o = 0; o < made && o < node->n_outputs; o++)
        if (outs[o]) ib_tensor_release(outs[o]);
    if (st) return ib__error_prefix(st, "%s (folding at plan time): ", ib__node_label(node));
    return IB_OK;
}

static ib_status infer_node(ib__lower *L, const ib__node *node) {
    const ib__op_def *def = ib__op_get(node->op);
    if (!def || !def->infer || has_subgraph(node) || def->dynamic_outputs) return IB_OK;
    if (node->n_inputs > MAX_NODE_IO || node->n_outputs > MAX_NODE_IO) return IB_OK;
    const ib__value *in[MAX_NODE_IO];
    ib__value out_vals[MAX_NODE_IO];
    ib__value *out[MAX_NODE_IO];
    bool all_known = foldable(node->op) && def->run && node->n_outputs > 0;
    for (int32_t i = 0; i < node->n_inputs; i++) {
        in[i] = node->inputs[i] ? &L->vals[node->inputs[i]->index] : NULL;
        if (!in[i] || in[i]->constant) continue;
        if (i == 0 && (node->op == IB_OP_SHAPE || node->op == IB_OP_SIZE) &&
            ib__value_concrete(in[i]))
            continue;
        all_known = false;
    }
    for (int32_t o = 0; o < node->n_outputs; o++) {
        out[o] = NULL;
        if (!node->outputs[o]) continue;
        memset(&out_vals[o], 0, sizeof out_vals[o]);
        out_vals[o].name = node->outputs[o]->name;
        out_vals[o].rank = -1;
        out[o] = &out_vals[o];
    }
    ib__infer_ctx c = {node, node->opset, node->n_inputs, in, node->n_outputs, out};
    ib_status st = def->infer(&c);
    if (st) {
        const char *msg = ib_last_error();
        if (strstr(msg, "node") == msg) return st;
        return ib__error_prefix(st, "%s: ", ib__node_label(node));
    }
    for (int32_t o = 0; o < node->n_outputs; o++) {
        if (!out[o]) continue;
        ib__value *v = &L->vals[node->outputs[o]->index];
        if (out_vals[o].rank > IB_MAX_RANK)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: output '%s' has rank %d (max %d)",
                             ib__node_label(node), v->name, out_vals[o].rank, IB_MAX_RANK);
        v->dtype = out_vals[o].dtype;
        v->rank = out_vals[o].rank;
        memcpy(v->dims, out_vals[o].dims, sizeof v->dims);
        memcpy(v->dim_param, out_vals[o].dim_param, sizeof v->dim_param);
        v->constant = NULL;
    }
    if (all_known) IB_TRY(fold(L, node, def));
    return IB_OK;
}

ib_status ib__pass_shapes(ib__lower *L) {
    const ib__graph *g = L->graph;
    for (int32_t i = 0; i < g->n_values; i++) L->vals[i] = *g->values[i];
    IB_TRY(specialise_inputs(L));
    IB_TRY(mark_live(L, false));
    for (int32_t n = 0; n < g->n_nodes; n++) {
        const ib__node *node = g->nodes[n];
        if (!L->live[n] || ib__node_folded(L, node)) continue;
        IB_TRY(infer_node(L, node));
    }
    return mark_live(L, true);
}
