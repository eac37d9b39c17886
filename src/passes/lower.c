/* The compiler driver: graph -> kernel plan. Specialises shapes, creates the model's
 * input/output buffers, lowers every node that must run into kernels (fused groups with
 * templates, or fallback steps running the reference op), adds copies for outputs no
 * kernel writes, and plans memory. */
#include <stdio.h>
#include <string.h>

#include "passes/passes_internal.h"

void ib__compile_options_init(ib__compile_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->allow_fallback = true;
}

/* The first value on v's producer chain whose shape is unknown although its producer's
 * inputs are known: where the unknown shape comes from (NonZero, a Loop, ...). */
static const ib__value *unknown_origin(const ib__lower *L, const ib__value *v) {
    for (int32_t hops = 0; hops < L->graph->n_nodes && v->producer; hops++) {
        const ib__node *p = v->producer;
        const ib__value *next = NULL;
        for (int32_t i = 0; i < p->n_inputs && !next; i++)
            if (p->inputs[i] && !ib__value_concrete(&L->vals[p->inputs[i]->index]))
                next = &L->vals[p->inputs[i]->index];
        if (!next) break;
        v = next;
    }
    return v;
}

static ib_status check_concrete(const ib__lower *L, const ib__value *v) {
    if (!ib__value_concrete(v)) {
        const ib__value *o = unknown_origin(L, v);
        if (o != v && o->producer)
            return ib__error(IB_ERR_UNSUPPORTED,
                             "value '%s': shape unknown after specialisation: it depends on "
                             "'%s', output of %s, whose shape depends on data or control "
                             "flow; use the reference executor", v->name, o->name,
                             ib__node_label(o->producer));
        return ib__error(IB_ERR_UNSUPPORTED,
                         "value '%s': shape unknown after specialisation (data-dependent "
                         "or control flow); use the reference executor", v->name);
    }
    if (ib_dtype_size(v->dtype) == 0)
        return ib__error(IB_ERR_UNSUPPORTED, "value '%s': dtype %s cannot live in a buffer",
                         v->name, ib_dtype_name(v->dtype));
    return IB_OK;
}

static void desc_from_value(ib__pbuf *b, const ib__value *v, ib__buf_kind kind) {
    memset(b, 0, sizeof *b);
    b->kind = kind;
    b->io_index = -1;
    b->dtype = v->dtype;
    b->rank = v->rank;
    memcpy(b->dims, v->dims, sizeof b->dims);
    b->layout = IB_LAYOUT_PLAIN;
    b->value = v;
    b->first_use = b->last_use = -1;
    b->alias_of = -1;
}

ib_status ib__lower_value_buf(ib__lower *L, const ib__value *gv, int32_t *out_id) {
    if (L->buf[gv->index] >= 0) {
        *out_id = L->buf[gv->index];
        return IB_OK;
    }
    const ib__value *v = &L->vals[gv->index];
    IB_TRY(check_concrete(L, v));
    ib__pbuf b;
    if (v->constant) {
        desc_from_value(&b, v, IB_BUF_WEIGHT);
        const ib_tensor *t = v->constant;
        size_t need = (size_t)ib__shape_count(v->dims, v->rank) * ib_dtype_size(v->dtype);
        if (t->dtype != v->dtype || t->nbytes < need || (need && !t->data))
            return ib__error(IB_ERR_INVALID_MODEL, "constant '%s': data does not match shape",
                             v->name);
        IB_TRY(ib__plan_add_weight(L->plan, &b, t->data, need, out_id));
    } else {
        if (v->kind == IB_VALUE_INPUT)
            return ib__error(IB_ERR_INTERNAL, "input '%s' has no buffer", v->name);
        desc_from_value(&b, v, IB_BUF_TEMP);
        IB_TRY(ib__plan_add_buf(L->plan, &b, out_id));
    }
    L->buf[gv->index] = *out_id;
    return IB_OK;
}

/* Model inputs and outputs first, at fixed ids (see compile_plan.h). */
static ib_status add_io_buffers(ib__lower *L) {
    const ib__graph *g = L->graph;
    ib__plan *plan = L->plan;
    for (int32_t i = 0; i < g->n_inputs; i++) {
        const ib__value *gv = g->inputs[i];
        if (gv->kind != IB_VALUE_INPUT) continue;
        const ib__value *v = &L->vals[gv->index];
        IB_TRY(check_concrete(L, v));
        ib__pbuf b;
        desc_from_value(&b, v, IB_BUF_INPUT);
        b.io_index = plan->n_inputs++;
        int32_t id;
        IB_TRY(ib__plan_add_buf(plan, &b, &id));
        L->buf[gv->index] = id;
    }
    for (int32_t o = 0; o < g->n_outputs; o++) {
        const ib__value *gv = g->outputs[o];
        const ib__value *v = &L->vals[gv->index];
        IB_TRY(check_concrete(L, v));
        ib__pbuf b;
        desc_from_value(&b, v, IB_BUF_OUTPUT);
        b.io_index = plan->n_outputs++;
        int32_t id;
        IB_TRY(ib__plan_add_buf(plan, &b, &id));
        /* The producer writes the first listing of a computed value; the rest get copies. */
        if (L->buf[gv->index] < 0 && !v->constant) L->buf[gv->index] = id;
    }
    return IB_OK;
}

static const ib__node **node_list(ib__lower *L, const ib__group *g, int32_t n_nodes,
                                  int32_t *count) {
    bool extra = g->anchor != g->nodes[0];
    const ib__node **nodes =
        ib__arena_alloc(L->plan->arena, (size_t)(n_nodes + 1) * sizeof *nodes);
    if (!nodes) return NULL;
    int32_t n = 0;
    if (extra) nodes[n++] = g->anchor;
    for (int32_t i = 0; i < n_nodes; i++) nodes[n++] = g->nodes[i];
    *count = n;
    return nodes;
}

/* A one-node kernel over all of the node's inputs and outputs (template or fallback). */
static ib_status emit_single(ib__lower *L, const ib__node *node) {
    if (node->n_inputs > IB_MAX_KERNEL_ARGS || node->n_outputs > IB_MAX_KERNEL_ARGS)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: more than %d inputs or outputs for a kernel",
                         ib__node_label(node), IB_MAX_KERNEL_ARGS);
    ib__pkernel k;
    memset(&k, 0, sizeof k);
    ib__group g;
    ib__group_single(node, &g);
    k.nodes = node_list(L, &g, 1, &k.n_nodes);
    if (!k.nodes) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory lowering a node");
    k.n_in = node->n_inputs;
    for (int32_t i = 0; i < node->n_inputs; i++) {
        k.in[i] = -1;
        if (node->inputs[i]) IB_TRY(ib__lower_value_buf(L, node->inputs[i], &k.in[i]));
    }
    k.n_out = node->n_outputs;
    for (int32_t o = 0; o < node->n_outputs; o++) {
        k.out[o] = -1;
        if (node->outputs[o]) IB_TRY(ib__lower_value_buf(L, node->outputs[o], &k.out[o]));
    }
    /* A reshape of an arena buffer is a view of it: no kernel, no copy. */
    bool view_op = node->op == IB_OP_RESHAPE || node->op == IB_OP_FLATTEN ||
                   node->op == IB_OP_SQUEEZE || node->op == IB_OP_UNSQUEEZE ||
                   node->op == IB_OP_IDENTITY;
    if (view_op && k.n_out == 1 && k.out[0] >= 0 && k.in[0] >= 0) {
        int32_t src;
        IB_TRY(ib__layout_plain_input(L, k.in[0], &src));
        ib__pbuf *ob = &L->plan->bufs[k.out[0]];
        int32_t root = src;
        while (L->plan->bufs[root].alias_of >= 0) root = L->plan->bufs[root].alias_of;
        const ib__pbuf *rb = &L->plan->bufs[root];
        if (ob->kind == IB_BUF_TEMP && ob->alias_of < 0 && rb->kind == IB_BUF_TEMP &&
            rb->layout == IB_LAYOUT_PLAIN && ob->layout == IB_LAYOUT_PLAIN &&
            L->plan->bufs[src].nbytes == ob->nbytes && L->plan->bufs[src].dtype == ob->dtype) {
            ob->alias_of = src;
            return IB_OK;
        }
    }
    snprintf(k.fn_name, sizeof k.fn_name, "%.40s", node->op_type);
    bool added;
    IB_TRY(ib__layout_add_kernel(L, &k, true, &added));
    if (!k.tmpl && !L->opt.allow_fallback)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: no kernel template and fallback is off",
                         ib__node_label(node));
    return IB_OK;
}

/* The WEIGHT holding a per-channel operand as a flat [C] vector, zero-padded to a multiple
 * of 16 channels so that blocked and vector loads stay in bounds. */
static ib_status per_channel_buf(ib__lower *L, const ib__value *gv, int32_t *out_id) {
    const ib__value *v = &L->vals[gv->index];
    int64_t c = ib__shape_count(v->dims, v->rank);
    if (c <= 0 || !v->constant || !v->constant->data || v->dtype != IB_DTYPE_FLOAT32)
        return ib__error(IB_ERR_INTERNAL, "per-channel operand '%s' is not constant f32",
                         v->name);
    int64_t padded = (c + 15) / 16 * 16;
    float *data = ib__calloc((size_t)padded, sizeof(float));
    if (!data) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(data, v->constant->data, (size_t)c * sizeof(float));
    ib__pbuf b;
    desc_from_value(&b, v, IB_BUF_WEIGHT);
    b.rank = 1;
    memset(b.dims, 0, sizeof b.dims);
    b.dims[0] = c;
    ib_status st = ib__plan_add_weight(L->plan, &b, data, (size_t)padded * sizeof(float), out_id);
    ib__free(data);
    return st;
}

/* Builds g's kernel over its first n_nodes nodes and n_epi steps (out = `out`). */
static ib_status build_kernel(ib__lower *L, const ib__group *g, int32_t n_nodes, int32_t n_epi,
                              const ib__value *out, ib__pkernel *k) {
    memset(k, 0, sizeof *k);
    k->nodes = node_list(L, g, n_nodes, &k->n_nodes);
    if (!k->nodes) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory lowering a group");
    k->n_in = g->n_in;
    for (int32_t i = 0; i < g->n_in; i++) {
        k->in[i] = -1;
        if (g->in[i]) IB_TRY(ib__lower_value_buf(L, g->in[i], &k->in[i]));
    }
    k->n_out = 1;
    IB_TRY(ib__lower_value_buf(L, out, &k->out[0]));
    k->n_epi = n_epi;
    for (int32_t s = 0; s < n_epi; s++) {
        k->epi[s] = g->epi[s];
        if (g->epi[s].kind != IB_EPI_BINARY) continue;
        if (g->epi[s].operand_kind == IB_EPI_PER_CHANNEL)
            IB_TRY(per_channel_buf(L, g->operand[s], &k->epi[s].operand_buf));
        else
            IB_TRY(ib__lower_value_buf(L, g->operand[s], &k->epi[s].operand_buf));
    }
    const char *what = g->kind == IB_GROUP_LAYERNORM   ? "layernorm"
                       : g->kind == IB_GROUP_ATTENTION ? "attention"
                                                       : g->anchor->op_type;
    snprintf(k->fn_name, sizeof k->fn_name, "%.24s%s", what, n_epi ? "_fused" : "");
    return IB_OK;
}

/* Tries g's first n_nodes nodes as one kernel; *done = false leaves the plan as it was. */
static ib_status try_group(ib__lower *L, const ib__group *g, int32_t n_nodes, int32_t n_epi,
                           const ib__value *out, bool *done) {
    int32_t n_bufs = L->plan->n_bufs;
    size_t weights = L->plan->weights_bytes;
    ib__pkernel k;
    IB_TRY(build_kernel(L, g, n_nodes, n_epi, out, &k));
    IB_TRY(ib__layout_add_kernel(L, &k, false, done));
    if (!*done) { /* forget the buffers made for it */
        for (int32_t v = 0; v < L->n_values; v++)
            if (L->buf[v] >= n_bufs) L->buf[v] = -1;
        L->plan->n_bufs = n_bufs;
        L->plan->weights_bytes = weights;
    }
    return IB_OK;
}

static ib_status emit_group(ib__lower *L, const ib__group *g, int depth) {
    if (depth > IB_GROUP_MAX_NODES) return ib__error(IB_ERR_INTERNAL, "group split too deep");
    if (g->kind == IB_GROUP_SINGLE) return emit_single(L, g->nodes[0]);
    bool done = false;
    IB_TRY(try_group(L, g, g->n_nodes, g->n_epi, g->out, &done));
    if (done) return IB_OK;
    /* Nobody takes the whole group: the longest epilogue prefix a template takes (down to
     * the main part alone), then the rest. */
    int32_t steps = g->n_epi - 1;
    for (; steps >= 0 && !done; steps--) {
        int32_t n_nodes = g->epi_node[steps];
        if (steps == 0 && g->kind == IB_GROUP_ELTWISE) break; /* emit_single does it */
        IB_TRY(try_group(L, g, n_nodes, steps, g->nodes[n_nodes - 1]->outputs[0], &done));
        if (done) break;
    }
    const ib__node *rest[IB_GROUP_MAX_NODES];
    int32_t n_rest = 0;
    if (done) {
        for (int32_t i = g->epi_node[steps]; i < g->n_nodes; i++) rest[n_rest++] = g->nodes[i];
    } else {
        /* Anchor and BN run alone; a pattern's nodes regroup as element-wise chains. */
        bool regroup = g->kind == IB_GROUP_LAYERNORM || g->kind == IB_GROUP_ATTENTION;
        for (int32_t i = 0; i < g->n_main; i++) {
            if (regroup)
                rest[n_rest++] = g->nodes[i];
            else
                IB_TRY(emit_single(L, g->nodes[i]));
        }
        for (int32_t i = g->n_main; i < g->n_nodes; i++) rest[n_rest++] = g->nodes[i];
    }
    while (n_rest > 0) {
        ib__group sub;
        ib__group_rest(L, rest, n_rest, &sub);
        IB_TRY(emit_group(L, &sub, depth + 1));
        int32_t kept = 0;
        for (int32_t i = 0; i < n_rest; i++) {
            bool taken = false;
            for (int32_t j = 0; j < sub.n_nodes; j++) taken |= sub.nodes[j] == rest[i];
            if (!taken) rest[kept++] = rest[i];
        }
        if (kept == n_rest) return ib__error(IB_ERR_INTERNAL, "group split made no progress");
        n_rest = kept;
    }
    return IB_OK;
}

/* A synthetic Identity node copying `from` into graph output o. */
static ib_status add_output_copy(ib__lower *L, int32_t o, int32_t from_buf) {
    const ib__graph *g = L->graph;
    ib__plan *plan = L->plan;
    ib__node *n = ib__arena_alloc(plan->arena, sizeof *n);
    ib__value **io = ib__arena_alloc(plan->arena, 2 * sizeof *io);
    const ib__node **nodes = ib__arena_alloc(plan->arena, sizeof *nodes);
    if (!n || !io || !nodes) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    ib__value *v = &L->vals[g->outputs[o]->index];
    io[0] = io[1] = v;
    n->name = "output_copy";
    n->op_type = "Identity";
    n->domain = "";
    n->op = IB_OP_IDENTITY;
    n->opset = g->opset;
    n->n_inputs = 1;
    n->inputs = &io[0];
    n->n_outputs = 1;
    n->outputs = &io[1];
    n->index = -1;
    nodes[0] = n;
    ib__pkernel k;
    memset(&k, 0, sizeof k);
    k.n_nodes = 1;
    k.nodes = nodes;
    k.n_in = 1;
    k.in[0] = from_buf;
    k.n_out = 1;
    k.out[0] = plan->n_inputs + o;
    snprintf(k.fn_name, sizeof k.fn_name, "k%d_output_copy", plan->n_kernels);
    int32_t id;
    return ib__plan_add_kernel(plan, &k, &id);
}

static ib_status add_output_copies(ib__lower *L) {
    const ib__graph *g = L->graph;
    for (int32_t o = 0; o < g->n_outputs; o++) {
        const ib__value *gv = g->outputs[o];
        int32_t own = L->plan->n_inputs + o;
        int32_t src = L->buf[gv->index];
        if (src == own) continue;
        if (src < 0) IB_TRY(ib__lower_value_buf(L, gv, &src)); /* a constant */
        IB_TRY(add_output_copy(L, o, src));
    }
    return IB_OK;
}

static ib_status lower(ib__lower *L) {
    IB_TRY(ib__pass_shapes(L));
    IB_TRY(add_io_buffers(L));
    IB_TRY(ib__pass_fusion(L));
    /* A group runs where its last node was: everything it reads is ready there. */
    int32_t *last = ib__malloc(((size_t)L->n_groups + 1) * sizeof *last);
    if (!last) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory ordering kernels");
    for (int32_t i = 0; i < L->n_groups; i++) last[i] = -1;
    const ib__graph *g = L->graph;
    for (int32_t n = 0; n < g->n_nodes; n++)
        if (L->live[n] && L->group[n] >= 0) last[L->group[n]] = n;
    ib_status st = IB_OK;
    for (int32_t n = 0; n < g->n_nodes && st == IB_OK; n++) {
        if (!L->live[n]) continue;
        int32_t gid = L->group[n];
        if (gid < 0 || last[gid] != n) continue;
        st = emit_group(L, &L->groups[gid], 0);
    }
    ib__free(last);
    IB_TRY(st);
    IB_TRY(add_output_copies(L));
    IB_TRY(ib__pass_compact_weights(L->plan));
    return ib__pass_memory_plan(L->plan);
}

ib_status ib__lower_init(ib__lower *L, const ib__graph *graph, const ib__target *target,
                         const ib__compile_options *opt) {
    memset(L, 0, sizeof *L);
    if (!graph || !target)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "graph and target are required");
    L->graph = graph;
    if (opt)
        L->opt = *opt;
    else
        ib__compile_options_init(&L->opt);
    if (L->opt.batch < 0)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "batch must be >= 0, got %d", L->opt.batch);
    IB_TRY(ib__plan_create(graph, target, &L->plan));
    L->n_values = graph->n_values;
    size_t nv = (size_t)graph->n_values + 1, nn = (size_t)graph->n_nodes + 1;
    L->vals = ib__arena_alloc(L->plan->arena, nv * sizeof *L->vals);
    L->buf = ib__malloc(nv * sizeof *L->buf);
    L->live = ib__calloc(nn, 1);
    L->n_reads = ib__calloc(nv, sizeof *L->n_reads);
    L->group = ib__malloc(nn * sizeof *L->group);
    if (!L->vals || !L->buf || !L->live || !L->n_reads || !L->group) {
        ib__lower_free(L, true);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory building a plan");
    }
    for (size_t i = 0; i < nv; i++) L->buf[i] = -1;
    for (size_t i = 0; i < nn; i++) L->group[i] = -1;
    return IB_OK;
}

void ib__lower_free(ib__lower *L, bool destroy_plan) {
    ib__free(L->buf);
    ib__free(L->live);
    ib__free(L->n_reads);
    ib__free(L->group);
    ib__free(L->cons_start);
    ib__free(L->cons);
    ib__free(L->groups);
    ib__free(L->plain_copy);
    ib__free(L->nchwc_copy);
    if (destroy_plan) ib__plan_destroy(L->plan);
    memset(L, 0, sizeof *L);
}

ib_status ib__build_plan(const ib__graph *graph, const ib__target *target,
                         const ib__compile_options *opt, ib__plan **out) {
    if (!graph || !target || !out)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "graph, target and out are required");
    ib__lower L;
    IB_TRY(ib__lower_init(&L, graph, target, opt));
    ib_status st = lower(&L);
    ib__plan *plan = L.plan;
    ib__lower_free(&L, st != IB_OK);
    if (st) return st;
    *out = plan;
    return IB_OK;
}
