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

/* The buffer holding value v (a WEIGHT for constants, else a new TEMP). */
ib_status ib__lower_value_buf(ib__lower *L, const ib__value *gv, int32_t *out_id);
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

static ib_status add_fallback(ib__lower *L, const ib__node *node) {
    if (node->n_inputs > IB_MAX_KERNEL_ARGS || node->n_outputs > IB_MAX_KERNEL_ARGS)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: more than %d inputs or outputs for a kernel",
                         ib__node_label(node), IB_MAX_KERNEL_ARGS);
    ib__pkernel k;
    memset(&k, 0, sizeof k);
    const ib__node **nodes = ib__arena_alloc(L->plan->arena, sizeof *nodes);
    if (!nodes) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory lowering a node");
    nodes[0] = node;
    k.nodes = nodes;
    k.n_nodes = 1;
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
    snprintf(k.fn_name, sizeof k.fn_name, "k%d_fallback", L->plan->n_kernels);
    int32_t id;
    return ib__plan_add_kernel(L->plan, &k, &id);
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
    const ib__graph *g = L->graph;
    for (int32_t n = 0; n < g->n_nodes; n++) {
        if (!L->live[n]) continue;
        const ib__node *node = g->nodes[n];
        if (!L->opt.allow_fallback)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: no kernel template and fallback is off",
                             ib__node_label(node));
        IB_TRY(add_fallback(L, node));
    }
    IB_TRY(add_output_copies(L));
    return ib__pass_memory_plan(L->plan);
}

ib_status ib__build_plan(const ib__graph *graph, const ib__target *target,
                         const ib__compile_options *opt, ib__plan **out) {
    if (!graph || !target || !out)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "graph, target and out are required");
    ib__lower L;
    memset(&L, 0, sizeof L);
    L.graph = graph;
    if (opt)
        L.opt = *opt;
    else
        ib__compile_options_init(&L.opt);
    if (L.opt.batch < 0)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "batch must be >= 0, got %d", L.opt.batch);
    IB_TRY(ib__plan_create(graph, target, &L.plan));
    L.n_values = graph->n_values;
    size_t nv = (size_t)graph->n_values + 1, nn = (size_t)graph->n_nodes + 1;
    L.vals = ib__arena_alloc(L.plan->arena, nv * sizeof *L.vals);
    L.buf = ib__malloc(nv * sizeof *L.buf);
    L.live = ib__calloc(nn, 1);
    L.n_reads = ib__calloc(nv, sizeof *L.n_reads);
    L.group = ib__malloc(nn * sizeof *L.group);
    ib_status st = IB_OK;
    if (!L.vals || !L.buf || !L.live || !L.n_reads || !L.group)
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory building a plan");
    if (st == IB_OK) {
        for (size_t i = 0; i < nv; i++) L.buf[i] = -1;
        for (size_t i = 0; i < nn; i++) L.group[i] = -1;
        st = lower(&L);
    }
    ib__free(L.buf);
    ib__free(L.live);
    ib__free(L.n_reads);
    ib__free(L.group);
    if (st) {
        ib__plan_destroy(L.plan);
        return st;
    }
    *out = L.plan;
    return IB_OK;
}
