/* The runtime's plan side: executable models from a plan built in this process, plans
 * attached to artifacts with reference-op (fallback) steps, and running those steps and
 * interpreted plans through the reference ops. Not part of the deployable runtime. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "codegen/codegen.h"
#include "ops/ops.h"
#include "runtime/runtime_internal.h"

static void *buf_ptr(const ib__rt_run_ctx *c, int32_t b) {
    const ib__plan *p = c->rt->plan;
    for (int depth = 0; b >= 0 && depth < 64; depth++) {
        const ib__pbuf *pb = &p->bufs[b];
        if (pb->alias_of >= 0 && pb->alias_of != b) {
            b = pb->alias_of;
            continue;
        }
        switch (pb->kind) {
        case IB_BUF_INPUT: return c->inputs[pb->io_index];
        case IB_BUF_OUTPUT: return c->outputs[pb->io_index];
        case IB_BUF_TEMP: return c->arena + pb->offset;
        case IB_BUF_WEIGHT: return (void *)(c->rt->weights + pb->offset);
        }
        return NULL;
    }
    return NULL;
}

static bool overlaps(const void *a, size_t na, const void *b, size_t nb) {
    const char *x = a, *y = b;
    return na && nb && x < y + nb && y < x + na;
}

/* Runs fallback kernel `step`: the anchor node's reference op on views of its buffers. */
static int run_fallback(void *user, int32_t step, void *const *args) {
    ib__rt_run_ctx *c = user;
    const ib__plan *p = c->rt->plan;
    if (!p || step < 0 || step >= p->n_kernels) {
        ib__error(IB_ERR_RUNTIME, "fallback step %d has no plan", step);
        return IB_ERR_RUNTIME;
    }
    const ib__pkernel *k = &p->kernels[step];
    const ib__node *node = k->nodes[0];
    const ib__op_def *def = ib__op_get(node->op);
    ib_tensor views[2 * IB_MAX_KERNEL_ARGS];
    const ib_tensor *in[IB_MAX_KERNEL_ARGS * 16];
    ib_tensor *outs[IB_MAX_KERNEL_ARGS * 16];
    int32_t n_in = node->n_inputs, n_out = node->n_outputs;
    if (n_in > (int32_t)(sizeof in / sizeof in[0]) || n_out > (int32_t)(sizeof outs / sizeof outs[0])) {
        ib__error(IB_ERR_UNSUPPORTED, "%s: too many inputs", ib__node_label(node));
        return IB_ERR_UNSUPPORTED;
    }
    for (int32_t i = 0; i < n_in; i++) in[i] = NULL;
    for (int32_t i = 0; i < n_out; i++) outs[i] = NULL;
    for (int32_t a = 0; a < k->n_in + k->n_out; a++) {
        int32_t b = a < k->n_in ? k->in[a] : k->out[a - k->n_in];
        if (b < 0) continue;
        const ib__pbuf *pb = &p->bufs[b];
        ib_tensor *t = &views[a];
        memset(t, 0, sizeof *t);
        t->dtype = pb->dtype;
        t->rank = pb->rank;
        memcpy(t->shape, pb->dims, sizeof t->shape);
        t->data = args[a];
        int64_t n = ib__shape_count(pb->dims, pb->rank);
        t->nbytes = n > 0 ? (size_t)n * ib_dtype_size(pb->dtype) : 0;
        if (a < k->n_in) in[a] = t;
        else outs[a - k->n_in] = t;
    }
    /* Executors hand ops zeroed outputs (some ops only write part of them); skip it
     * when an output shares memory with an input (an in-place step). */
    for (int32_t o = 0; o < k->n_out; o++) {
        ib_tensor *t = outs[o];
        if (!t || !t->nbytes || !t->data) continue;
        bool inplace = false;
        for (int32_t i = 0; i < k->n_in && !inplace; i++)
            if (in[i] && overlaps(t->data, t->nbytes, in[i]->data, in[i]->nbytes)) inplace = true;
        if (!inplace) memset(t->data, 0, t->nbytes);
    }
    ib__run_ctx rc = {node, node->opset, n_in, in, n_out, outs, c->pool, NULL};
    ib_status st = def->run(&rc);
    if (st) {
        const char *msg = ib_last_error();
        if (strstr(msg, "node") != msg) ib__error_prefix(st, "%s: ", ib__node_label(node));
        return (int)st;
    }
    return 0;
}

/* Runs every step of an interpreted plan (all of them fallback steps). */
static ib_status interpret(ib__rt_run_ctx *c) {
    ib__rt_model *rt = c->rt;
    const ib__plan *p = rt->plan;
    void *args[2 * IB_MAX_KERNEL_ARGS];
    for (int32_t k = 0; k < p->n_kernels; k++) {
        const ib__pkernel *pk = &p->kernels[k];
        for (int32_t a = 0; a < pk->n_in + pk->n_out; a++) {
            int32_t b = a < pk->n_in ? pk->in[a] : pk->out[a - pk->n_in];
            args[a] = b >= 0 ? buf_ptr(c, b) : NULL;
        }
        int rc = run_fallback(c, k, args);
        if (rc) return (ib_status)rc;
    }
    /* Outputs that no kernel writes (a weight, an input, another output). */
    for (int32_t o = 0; o < rt->n_out; o++) {
        if (rt->out_copy[o] < 0) continue;
        const void *src = buf_ptr(c, rt->out_copy[o]);
        size_t nb = (size_t)rt->io[rt->n_in + o].nbytes;
        if (nb && src != c->outputs[o]) memmove(c->outputs[o], src, nb);
    }
    return IB_OK;
}

static void install_plan(ib__rt_model *rt, ib__plan *plan) {
    rt->plan = plan;
    rt->fallback = run_fallback;
    rt->interpret = interpret;
    rt->plan_free = ib__plan_destroy;
}

/* Nodes the runtime cannot run as a fallback step: their bodies need the executor. */
static bool node_has_subgraph(const ib__node *n) {
    for (int32_t a = 0; a < n->n_attrs; a++)
        if (n->attrs[a].kind == IB_ATTR_GRAPH || n->attrs[a].kind == IB_ATTR_GRAPHS) return true;
    return false;
}

/* Checks the fallback steps of a plan are ones the runtime can run. */
static ib_status check_plan_steps(const ib__plan *plan) {
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        const ib__pkernel *pk = &plan->kernels[k];
        if (pk->n_in < 0 || pk->n_out < 0 || pk->n_in > IB_MAX_KERNEL_ARGS ||
            pk->n_out > IB_MAX_KERNEL_ARGS)
            return ib__error(IB_ERR_INTERNAL, "kernel %d has bad argument counts", k);
        for (int32_t i = 0; i < pk->n_in + pk->n_out; i++) {
            int32_t b = i < pk->n_in ? pk->in[i] : pk->out[i - pk->n_in];
            if (b < -1 || b >= plan->n_bufs)
                return ib__error(IB_ERR_INTERNAL, "kernel %d argument %d: bad buffer %d", k, i, b);
        }
        if (pk->tmpl) continue;
        if (pk->n_nodes != 1 || !pk->nodes || !pk->nodes[0] || pk->n_epi != 0)
            return ib__error(IB_ERR_INTERNAL, "fallback kernel %d must hold one node", k);
        const ib__node *node = pk->nodes[0];
        const ib__op_def *def = ib__op_get(node->op);
        if (!def || !def->run || def->dynamic_outputs || node_has_subgraph(node))
            return ib__error(IB_ERR_UNSUPPORTED, "%s cannot run as a planned step",
                             ib__node_label(node));
        if (pk->n_in > node->n_inputs || pk->n_out > node->n_outputs)
            return ib__error(IB_ERR_INTERNAL, "fallback kernel %d: more arguments than %s has",
                             k, ib__node_label(node));
        for (int32_t i = 0; i < pk->n_in + pk->n_out; i++) {
            int32_t b = i < pk->n_in ? pk->in[i] : pk->out[i - pk->n_in];
            if (b < 0) continue;
            const ib__pbuf *pb = &plan->bufs[b];
            if (pb->layout != IB_LAYOUT_PLAIN || ib_dtype_size(pb->dtype) == 0)
                return ib__error(IB_ERR_UNSUPPORTED, "%s: buffer %d is not a plain numeric "
                                 "tensor", ib__node_label(node), b);
        }
    }
    return IB_OK;
}

static ib_status io_from_plan(ib__rt_model *rt, const ib__plan *plan) {
    IB_TRY(ib__rt_alloc_io(rt, plan->n_inputs, plan->n_outputs));
    for (int32_t i = 0; i < plan->n_inputs + plan->n_outputs; i++) {
        ib__rt_io_entry e;
        bool out = i >= plan->n_inputs;
        IB_TRY(ib__codegen_io_entry(plan, out, out ? i - plan->n_inputs : i, &e));
        IB_TRY(ib__rt_set_io(rt, i, &e));
    }
    for (int32_t o = 0; o < plan->n_outputs; o++)
        IB_TRY(ib__codegen_output_source(plan, o, &rt->out_write[o], &rt->out_copy[o]));
    return IB_OK;
}

ib_status ib__rt_create_from_plan(ib__plan *plan, const char *so_path, ib__rt_model **out) {
    ib__rt_model *rt = ib__rt_alloc();
    if (!rt) {
        ib__plan_destroy(plan);
        return IB_ERR_OUT_OF_MEMORY;
    }
    install_plan(rt, plan);
    ib_status st = check_plan_steps(plan);
    if (st == IB_OK && !so_path)
        for (int32_t k = 0; k < plan->n_kernels && st == IB_OK; k++)
            if (plan->kernels[k].tmpl)
                st = ib__error(IB_ERR_INTERNAL, "kernel %d has a template: it needs the "
                               "compiled module", k);
    if (st == IB_OK) st = io_from_plan(rt, plan);
    if (st == IB_OK) {
        rt->weights = plan->weights;
        rt->weights_bytes = plan->weights_bytes;
        rt->arena_bytes = plan->arena_bytes;
        snprintf(rt->target, sizeof rt->target, "%s", plan->target.name);
        rt->sizes[IB_RT_SIZE_ARENA] = plan->arena_bytes;
        rt->sizes[IB_RT_SIZE_WEIGHTS] = plan->weights_bytes;
        rt->sizes[IB_RT_SIZE_KERNELS] = (uint64_t)plan->n_kernels;
        rt->sizes[IB_RT_SIZE_FALLBACKS] = (uint64_t)ib__codegen_fallback_count(plan);
        rt->sizes[IB_RT_SIZE_BATCH] = (uint64_t)ib__codegen_plan_batch(plan);
        st = ib__rt_layout_run_arena(rt);
    }
    if (st == IB_OK && so_path) {
        rt->so = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
        if (!rt->so) {
            const char *why = dlerror();
            st = ib__error(IB_ERR_RUNTIME, "cannot load the compiled module '%s': %s", so_path,
                           why ? why : "unknown error");
        } else {
            rt->entry = (ib__rt_entry_fn)dlsym(rt->so, "ib_model_run");
            rt->steps = dlsym(rt->so, "ib_model_kernels");
            if (!rt->entry)
                st = ib__error(IB_ERR_RUNTIME, "module '%s' lacks ib_model_run", so_path);
        }
    }
    if (st) {
        ib__rt_destroy(rt);
        return st;
    }
    *out = rt;
    return IB_OK;
}

ib_status ib__rt_attach_plan(ib__rt_model *rt, ib__plan *plan) {
    ib_status st = check_plan_steps(plan);
    if (!st && ((uint64_t)plan->n_kernels != rt->sizes[IB_RT_SIZE_KERNELS] ||
                plan->weights_bytes != rt->sizes[IB_RT_SIZE_WEIGHTS] ||
                plan->arena_bytes != rt->sizes[IB_RT_SIZE_ARENA] ||
                plan->n_inputs != rt->n_in || plan->n_outputs != rt->n_out ||
                (plan->weights_bytes &&
                 memcmp(plan->weights, rt->weights, plan->weights_bytes) != 0)))
        st = ib__error(IB_ERR_INVALID_MODEL,
                       "the artifact's model.onnx does not rebuild the plan model.so was "
                       "compiled from (%d kernels, %zu weight bytes; module: %llu, %llu)",
                       plan->n_kernels, plan->weights_bytes,
                       (unsigned long long)rt->sizes[IB_RT_SIZE_KERNELS],
                       (unsigned long long)rt->sizes[IB_RT_SIZE_WEIGHTS]);
    for (int32_t o = 0; !st && o < plan->n_outputs; o++)
        st = ib__codegen_output_source(plan, o, &rt->out_write[o], &rt->out_copy[o]);
    if (st) {
        ib__plan_destroy(plan);
        return st;
    }
    if (rt->plan && rt->plan_free) rt->plan_free(rt->plan);
    install_plan(rt, plan);
    return IB_OK;
}
