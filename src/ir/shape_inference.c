/* Static shape/dtype inference and load-time constant folding (see shape_inference.h). */
#include <string.h>

#include "ir/shape_inference.h"
#include "ops/ops.h"

/* Ops whose result must not be computed at load time. */
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

/* Ops whose output depends on their input's shape alone. */
static bool reads_only_shape(ib__op_id op) { return op == IB_OP_SHAPE || op == IB_OP_SIZE; }

static bool shape_known(const ib__value *v) {
    if (!v || v->rank < 0) return false;
    for (int32_t d = 0; d < v->rank; d++)
        if (v->dims[d] < 0) return false;
    return true;
}

/* Computes a node whose inputs are all constant; outputs become arena constants. */
static ib_status fold_node(ib__graph *g, ib__node *node, const ib__op_def *def) {
    const ib_tensor *ins[64];
    ib_tensor outs_storage[16];
    ib_tensor *outs[16];
    if (node->n_inputs > 64 || node->n_outputs > 16) return IB_OK;
    for (int32_t i = 0; i < node->n_outputs; i++) {
        ib__value *v = node->outputs[i];
        outs[i] = NULL;
        if (!v) continue;
        if (v->rank < 0 || v->dtype == IB_DTYPE_UNDEFINED || ib_dtype_size(v->dtype) == 0)
            return IB_OK;
        int64_t n = ib__shape_count(v->dims, v->rank);
        if (n < 0 || n > IB_FOLD_MAX_ELEMENTS) return IB_OK;
    }
    ib_tensor shape_view;
    for (int32_t i = 0; i < node->n_inputs; i++)
        ins[i] = node->inputs[i] ? node->inputs[i]->constant : NULL;
    if (reads_only_shape(node->op) && node->n_inputs >= 1 && !ins[0] && node->inputs[0]) {
        /* Shape/Size read dims, never data: a view without data is enough. */
        const ib__value *v = node->inputs[0];
        memset(&shape_view, 0, sizeof shape_view);
        shape_view.dtype = v->dtype;
        shape_view.rank = v->rank;
        memcpy(shape_view.shape, v->dims, sizeof(int64_t) * (size_t)v->rank);
        ins[0] = &shape_view;
    }
    ib_status st = IB_OK;
    int32_t made = 0;
    for (int32_t i = 0; i < node->n_outputs; i++, made++) {
        ib__value *v = node->outputs[i];
        if (!v) continue;
        st = ib__tensor_alloc(&outs_storage[i], v->dtype, v->rank, v->dims);
        if (st) break;
        outs[i] = &outs_storage[i];
    }
    if (st == IB_OK) {
        ib__run_ctx rc = {node, node->opset, node->n_inputs, ins, node->n_outputs, outs, NULL, NULL};
        st = def->run(&rc);
    }
    if (st == IB_OK) {
        for (int32_t i = 0; i < node->n_outputs; i++) {
            ib__value *v = node->outputs[i];
            if (!v) continue;
            ib_tensor *t = ib__arena_alloc(g->arena, sizeof *t);
            void *data = t ? ib__arena_alloc(g->arena, outs_storage[i].nbytes) : NULL;
            if (!t || !data) {
                st = IB_ERR_OUT_OF_MEMORY;
                break;
            }
            *t = outs_storage[i];
            memcpy(data, outs_storage[i].data, outs_storage[i].nbytes);
            t->data = data;
            t->owns_data = 0;
            v->constant = t;
        }
    }
    for (int32_t i = 0; i < made && i < node->n_outputs; i++)
        if (outs[i]) ib_tensor_release(outs[i]);
    if (st) return ib__error_prefix(st, "%s (folding constants): ", ib__node_label(node));
    return IB_OK;
}

static ib_status infer_graph(ib__graph *g, ib__infer_report *r, int depth) {
    if (depth > 64) return ib__error(IB_ERR_INVALID_MODEL, "subgraphs nested too deeply");
    for (int32_t n = 0; n < g->n_nodes; n++) {
        ib__node *node = g->nodes[n];
        for (int32_t a = 0; a < node->n_attrs; a++) {
            ib__attr *at = &node->attrs[a];
            if (at->kind == IB_ATTR_GRAPH && at->g) IB_TRY(infer_graph(at->g, r, depth + 1));
            if (at->kind == IB_ATTR_GRAPHS)
                for (int32_t k = 0; k < at->count; k++)
                    if (at->graphs[k]) IB_TRY(infer_graph(at->graphs[k], r, depth + 1));
        }
        const ib__op_def *def = ib__op_get(node->op);
        if (!def || !def->infer) {
            if (r->n_unsupported++ == 0) r->first_unsupported = node;
            continue; /* outputs stay unknown */
        }
        /* What the file declared (value_info, graph outputs) fills in what inference
         * cannot know, e.g. the symbolic name of a batch dimension. */
        ib__value declared[16];
        int32_t n_decl = node->n_outputs < 16 ? node->n_outputs : 16;
        for (int32_t o = 0; o < n_decl; o++)
            if (node->outputs[o]) declared[o] = *node->outputs[o];
        ib__infer_ctx c = {node,
                           node->opset,
                           node->n_inputs,
                           (const ib__value *const *)node->inputs,
                           node->n_outputs,
                           node->outputs};
        ib_status st = def->infer(&c);
        if (st) {
            const char *msg = ib_last_error();
            if (strstr(msg, "node") == msg) return st; /* already names the node */
            return ib__error_prefix(st, "%s: ", ib__node_label(node));
        }
        for (int32_t o = 0; o < n_decl; o++) {
            ib__value *v = node->outputs[o];
            const ib__value *d = &declared[o];
            if (!v || d->rank < 0) continue;
            if (v->rank < 0) {
                v->rank = d->rank;
                memcpy(v->dims, d->dims, sizeof v->dims);
                memcpy(v->dim_param, d->dim_param, sizeof v->dim_param);
            } else if (v->rank == d->rank) {
                for (int32_t k = 0; k < v->rank; k++) {
                    if (v->dims[k] < 0 && d->dims[k] >= 0) v->dims[k] = d->dims[k];
                    if (v->dims[k] < 0 && !v->dim_param[k]) v->dim_param[k] = d->dim_param[k];
                }
            }
            if (v->dtype == IB_DTYPE_UNDEFINED) v->dtype = d->dtype;
        }
        for (int32_t o = 0; o < node->n_outputs; o++) {
            ib__value *v = node->outputs[o];
            if (v && v->rank > IB_MAX_RANK)
                return ib__error(IB_ERR_UNSUPPORTED, "%s: output '%s' has rank %d (max %d)",
                                 ib__node_label(node), v->name, v->rank, IB_MAX_RANK);
        }
        bool all_const = def->run && foldable(node->op) && node->n_outputs > 0;
        for (int32_t i = 0; i < node->n_inputs && all_const; i++) {
            const ib__value *in = node->inputs[i];
            if (!in || in->constant) continue;
            if (i == 0 && reads_only_shape(node->op) && shape_known(in)) continue;
            all_const = false;
        }
        bool already = true;
        for (int32_t o = 0; o < node->n_outputs; o++)
            if (node->outputs[o] && !node->outputs[o]->constant) already = false;
        if (all_const && !already) {
            IB_TRY(fold_node(g, node, def));
            r->n_folded++;
        }
    }
    return IB_OK;
}

ib_status ib__infer_graph(ib__graph *graph, ib__infer_report *report) {
    ib__infer_report r;
    memset(&r, 0, sizeof r);
    IB_TRY(infer_graph(graph, &r, 0));
    if (report) *report = r;
    return IB_OK;
}

static const ib__node *find_unsupported(const ib__graph *g, int depth) {
    if (depth > 64) return NULL;
    for (int32_t n = 0; n < g->n_nodes; n++) {
        const ib__node *node = g->nodes[n];
        const ib__op_def *def = ib__op_get(node->op);
        if (!def || !def->run) return node;
        for (int32_t a = 0; a < node->n_attrs; a++) {
            const ib__attr *at = &node->attrs[a];
            const ib__node *bad = NULL;
            if (at->kind == IB_ATTR_GRAPH && at->g) bad = find_unsupported(at->g, depth + 1);
            for (int32_t k = 0; !bad && at->kind == IB_ATTR_GRAPHS && k < at->count; k++)
                if (at->graphs[k]) bad = find_unsupported(at->graphs[k], depth + 1);
            if (bad) return bad;
        }
    }
    return NULL;
}

ib_status ib__check_supported(const ib__graph *graph) {
    const ib__node *bad = find_unsupported(graph, 0);
    if (!bad) return IB_OK;
    if (bad->op == IB_OP_UNKNOWN)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: operator '%s%s%s' is not supported",
                         ib__node_label(bad), bad->domain, bad->domain[0] ? "." : "",
                         bad->op_type);
    return ib__error(IB_ERR_UNSUPPORTED, "%s: operator '%s' has no implementation yet",
                     ib__node_label(bad), bad->op_type);
}
