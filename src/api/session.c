/* Sessions and the reference executor. A session runs the compiled path by default
 * (api/compiled.c: kernel plans interpreted or compiled into a module); the reference
 * executor runs a graph node by node in topological order, inferring each node's output
 * shapes from the actual inputs, and frees each intermediate after its last use. Per-run
 * state lives on the run, so many threads may run one session at once. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "api/compiled.h"
#include "api/model_cache.h"
#include "api/model_internal.h"
#include "ir/shape_inference.h"
#include "ops/ops.h"

struct ib_session {
    const ib_model *model;  /* NULL for an artifact session without model.onnx, and for a
                               cache hit on a file until a run needs the model */
    ib_model *owned_model;  /* an artifact's model.onnx, or the file's model */
    ib__pool *pool;
    ib__compiled *compiled; /* NULL: the reference executor runs */
    char *model_path;       /* a session from a file: loaded there when needed */
    pthread_mutex_t model_mu; /* guards that late load */
};

/* The tensors of one graph while it runs; `outer` links to the enclosing graph's. */
enum { MAX_IO = 256 };

/* Per-node working arrays of the executor. They live with the graph's run (one block per
 * run_env, reused node after node) rather than on the stack: nested subgraphs (If inside
 * Loop inside ...) would otherwise stack ~150 KB per level. */
typedef struct node_scratch {
    ib__value in_vals[MAX_IO], out_vals[MAX_IO];
    const ib__value *in_ptrs[MAX_IO];
    ib__value *out_ptrs[MAX_IO];
    const ib_tensor *in_t[MAX_IO];
    ib_tensor out_store[MAX_IO];
    ib_tensor *out_t[MAX_IO];
} node_scratch;

typedef struct run_env {
    const ib__graph *graph;
    node_scratch *scratch;
    ib_tensor *vals;      /* by value index */
    uint8_t *ready;       /* vals[i] holds data */
    int32_t *uses_left;   /* node reads still to come */
    struct run_env *outer;
    ib_session *session;
} run_env;

void ib_session_options_init(ib_session_options *options) {
    if (!options) return;
    memset(options, 0, sizeof *options);
    options->use_reference = 0;
}

/* Resolves the session's target; unknown names are unsupported targets. */
static ib_status session_target(const ib_session_options *options, ib__target *t) {
    ib_status st = ib__target_resolve(options->target, t);
    if (st == IB_ERR_INVALID_ARGUMENT) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ib_last_error());
        return ib__error(IB_ERR_UNSUPPORTED, "%s", msg);
    }
    IB_TRY(st);
    if (!t->is_host)
        return ib__error(IB_ERR_UNSUPPORTED, "target '%s' cannot run on this CPU", t->name);
    return IB_OK;
}

static ib_session *session_alloc(void) {
    ib_session *s = ib__calloc(1, sizeof *s);
    if (s) pthread_mutex_init(&s->model_mu, NULL);
    return s;
}

/* Checks the options every way of creating a session shares; fills in the defaults. */
static ib_status session_prepare(const ib_session_options **options, ib_session_options *defaults,
                                 ib__target *target) {
    if (!*options) {
        ib_session_options_init(defaults);
        *options = defaults;
    }
    if (target) IB_TRY(session_target(*options, target));
    if ((*options)->num_threads < 0)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "num_threads must be >= 0, got %d",
                         (*options)->num_threads);
    return IB_OK;
}

static ib__compiled_cache_options cache_options(const ib_session_options *options) {
    ib__compiled_cache_options cache = {
        .use_cache = options->no_cache == 0 && !ib__model_cache_disabled_by_env(),
        .dir = options->cache_dir,
        .tuning_db = options->tuning_db,
    };
    return cache;
}

static ib_status pool_for(ib_session *s, const ib_session_options *options) {
    int threads = options->num_threads ? options->num_threads : ib__usable_cpus();
    return ib__pool_create(threads, &s->pool);
}

/* The pool and the compiled part of a session on s->model. */
static ib_status session_init(ib_session *s, const ib_session_options *options,
                              const ib__target *target) {
    IB_TRY(ib__check_supported(s->model->graph));
    IB_TRY(pool_for(s, options));
    if (options->use_reference > 0) return IB_OK;
    bool reference = false;
    ib__compiled_cache_options cache = cache_options(options);
    return ib__compiled_create(s->model, target, options->use_reference < 0, &cache,
                               &s->compiled, &reference);
}

ib_status ib_session_create(const ib_model *model, const ib_session_options *options,
                            ib_session **out_session) {
    if (!model || !out_session)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model and out_session are required");
    ib_session_options defaults;
    ib__target target;
    IB_TRY(session_prepare(&options, &defaults, &target));
    IB_TRY(ib__check_supported(model->graph));
    ib_session *s = session_alloc();
    if (!s) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a session");
    s->model = model;
    ib_status st = session_init(s, options, &target);
    if (st) {
        ib_session_destroy(s);
        return st;
    }
    *out_session = s;
    return IB_OK;
}

ib_status ib_session_create_from_file(const char *path, const ib_session_options *options,
                                      ib_session **out_session) {
    if (!path || !out_session)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model path and out_session are required");
    ib_session_options defaults;
    ib__target target;
    IB_TRY(session_prepare(&options, &defaults, &target));
    ib_session *s = session_alloc();
    s->model_path = s ? ib__strdup(path) : NULL;
    if (!s || !s->model_path) {
        ib_session_destroy(s);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a session");
    }
    ib_status st = IB_OK;
    if (options->use_reference <= 0) { /* a cache hit loads without parsing the model */
        ib__compiled_cache_options cache = cache_options(options);
        st = ib__compiled_from_cached_file(path, &target, &cache, &s->compiled);
        if (st == IB_OK && s->compiled) st = pool_for(s, options);
        if (st == IB_OK && ib__compiled_needs_model(s->compiled)) {
            st = ib_model_load_file(path, &s->owned_model);
            s->model = s->owned_model;
            if (st == IB_OK) st = ib__check_supported(s->model->graph);
            if (st == IB_OK) st = ib__compiled_attach_model(s->compiled, s->model);
        }
    }
    if (st == IB_OK && !s->compiled) {
        if (!s->owned_model) st = ib_model_load_file(path, &s->owned_model);
        s->model = s->owned_model;
        if (st == IB_OK) st = session_init(s, options, &target);
    }
    if (st) {
        ib_session_destroy(s);
        return st;
    }
    *out_session = s;
    return IB_OK;
}

ib_status ib_session_create_from_artifact(const char *dir, const ib_session_options *options,
                                          ib_session **out_session) {
    if (!dir || !out_session)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "artifact directory and out_session are required");
    ib_session_options defaults;
    IB_TRY(session_prepare(&options, &defaults, NULL));
    ib_session *s = session_alloc();
    if (!s) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a session");
    ib__rt_model *rt = NULL;
    ib_status st = ib__rt_open_artifact(dir, &rt);
    char path[4200];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    bool need_model =
        st == IB_OK && (ib__rt_fallback_count(rt) > 0 || options->use_reference > 0);
    if (need_model) {
        st = ib_model_load_file(path, &s->owned_model);
        if (st) ib__error_prefix(st, "artifact '%s' needs its model.onnx: ", dir);
        else s->model = s->owned_model;
    }
    if (st == IB_OK && need_model) st = ib__check_supported(s->model->graph);
    if (st == IB_OK && ib__rt_fallback_count(rt) > 0) { /* the fallback steps' nodes */
        ib__target target;
        ib__compile_options opt;
        ib__compile_options_init(&opt);
        opt.batch = (int32_t)ib__rt_batch(rt);
        ib__plan *plan = NULL;
        st = ib__rt_target(rt, &target);
        if (st == IB_OK) st = ib__build_plan(s->model->graph, &target, &opt, &plan);
        if (st == IB_OK) st = ib__rt_attach_plan(rt, plan);
        if (st) ib__error_prefix(st, "artifact '%s': ", dir);
    }
    if (st == IB_OK) st = pool_for(s, options);
    if (st == IB_OK && options->use_reference <= 0) {
        st = ib__compiled_from_rt(rt, &s->compiled);
        rt = NULL;
    }
    ib__rt_destroy(rt);
    if (st) {
        ib_session_destroy(s);
        return st;
    }
    *out_session = s;
    return IB_OK;
}

void ib_session_destroy(ib_session *session) {
    if (!session) return;
    ib__compiled_destroy(session->compiled);
    ib__pool_destroy(session->pool);
    ib_model_destroy(session->owned_model);
    ib__free(session->model_path);
    pthread_mutex_destroy(&session->model_mu);
    ib__free(session);
}

const ib_model *ib__session_model(const ib_session *session) {
    return session ? session->model : NULL;
}

const char *ib_session_executor(const ib_session *session) {
    if (!session) return "none";
    return session->compiled ? ib__compiled_executor(session->compiled) : "reference";
}

static void describe_entry(const ib__rt_io_entry *e, ib_value_info *info) {
    memset(info, 0, sizeof *info);
    info->name = e->name;
    info->dtype = (ib_dtype)e->dtype;
    info->rank = e->rank;
    for (int32_t d = 0; d < e->rank; d++) info->shape[d] = e->dims[d];
}

size_t ib_session_input_count(const ib_session *session) {
    if (!session) return 0;
    const ib__rt_model *rt = ib__compiled_fixed(session->compiled);
    if (!rt && session->model) return ib_model_input_count(session->model);
    return rt ? (size_t)ib__rt_input_count(rt) : 0;
}

size_t ib_session_output_count(const ib_session *session) {
    if (!session) return 0;
    const ib__rt_model *rt = ib__compiled_fixed(session->compiled);
    if (!rt && session->model) return ib_model_output_count(session->model);
    return rt ? (size_t)ib__rt_output_count(rt) : 0;
}

ib_status ib_session_input_info(const ib_session *session, size_t index, ib_value_info *out_info) {
    if (!session || !out_info) return ib__error(IB_ERR_INVALID_ARGUMENT, "session and info required");
    /* A fixed executable knows the concrete shapes (an artifact's batch). */
    const ib__rt_model *rt = ib__compiled_fixed(session->compiled);
    if (!rt && session->model) return ib_model_input_info(session->model, index, out_info);
    if (!rt || index >= (size_t)ib__rt_input_count(rt))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "input index %zu out of range", index);
    describe_entry(ib__rt_input(rt, (int32_t)index), out_info);
    return IB_OK;
}

ib_status ib_session_output_info(const ib_session *session, size_t index, ib_value_info *out_info) {
    if (!session || !out_info) return ib__error(IB_ERR_INVALID_ARGUMENT, "session and info required");
    /* A fixed executable knows the concrete shapes (an artifact's batch). */
    const ib__rt_model *rt = ib__compiled_fixed(session->compiled);
    if (!rt && session->model) return ib_model_output_info(session->model, index, out_info);
    if (!rt || index >= (size_t)ib__rt_output_count(rt))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "output index %zu out of range", index);
    describe_entry(ib__rt_output(rt, (int32_t)index), out_info);
    return IB_OK;
}

static void env_free(run_env *e) {
    if (e->vals)
        for (int32_t i = 0; i < e->graph->n_values; i++) ib_tensor_release(&e->vals[i]);
    ib__free(e->vals);
    ib__free(e->ready);
    ib__free(e->uses_left);
    ib__free(e->scratch);
}

static ib_status env_init(run_env *e, const ib__graph *g, run_env *outer, ib_session *s) {
    memset(e, 0, sizeof *e);
    e->graph = g;
    e->outer = outer;
    e->session = s;
    size_t n = (size_t)g->n_values + 1;
    e->vals = ib__calloc(n, sizeof(ib_tensor));
    e->ready = ib__calloc(n, 1);
    e->uses_left = ib__calloc(n, sizeof(int32_t));
    e->scratch = ib__malloc(sizeof *e->scratch);
    if (!e->vals || !e->ready || !e->uses_left || !e->scratch) {
        env_free(e);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory starting a run");
    }
    for (int32_t i = 0; i < g->n_values; i++) {
        const ib__value *v = g->values[i];
        e->uses_left[i] = v->n_uses;
        if (v->constant) { /* weights and values folded at load time: borrowed views */
            e->vals[i] = *v->constant;
            e->vals[i].owns_data = 0;
            e->ready[i] = 1;
        }
    }
    return IB_OK;
}

/* The tensor holding value v, searching enclosing graphs for captured values. */
static ib_tensor *env_lookup(run_env *e, const ib__value *v) {
    for (; e; e = e->outer) {
        const ib__graph *g = e->graph;
        if (v->index < g->n_values && g->values[v->index] == v)
            return e->ready[v->index] ? &e->vals[v->index] : NULL;
    }
    return NULL;
}

static bool is_graph_output(const ib__graph *g, const ib__value *v) {
    for (int32_t i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) return true;
    return false;
}

static ib_status run_graph(run_env *e);

static ib_status run_subgraph(void *exec, const ib__graph *graph, int32_t n_in,
                              const ib_tensor *const *in, int32_t n_out, ib_tensor *out) {
    run_env *outer = exec;
    if (n_in > graph->n_inputs)
        return ib__error(IB_ERR_INVALID_MODEL, "subgraph '%s' takes %d inputs, given %d",
                         graph->name, graph->n_inputs, n_in);
    if (n_out != graph->n_outputs)
        return ib__error(IB_ERR_INVALID_MODEL, "subgraph '%s' has %d outputs, expected %d",
                         graph->name, graph->n_outputs, n_out);
    run_env e;
    IB_TRY(env_init(&e, graph, outer, outer->session));
    for (int32_t i = 0; i < n_in; i++) {
        const ib__value *v = graph->inputs[i];
        if (!in[i]) continue;
        ib_tensor_release(&e.vals[v->index]);
        e.vals[v->index] = *in[i];
        e.vals[v->index].owns_data = 0;
        e.ready[v->index] = 1;
    }
    ib_status st = run_graph(&e);
    for (int32_t o = 0; st == IB_OK && o < n_out; o++) {
        const ib__value *v = graph->outputs[o];
        ib_tensor *t = env_lookup(&e, v);
        if (!t) {
            st = ib__error(IB_ERR_RUNTIME, "subgraph output '%s' was not computed", v->name);
            break;
        }
        st = ib__tensor_alloc(&out[o], t->dtype, t->rank, t->shape);
        if (st == IB_OK && t->nbytes) memcpy(out[o].data, t->data, t->nbytes);
    }
    if (st)
        for (int32_t o = 0; o < n_out; o++) ib_tensor_release(&out[o]);
    env_free(&e);
    return st;
}

/* Describes a tensor as a fully known value for run-time inference. */
static void value_from_tensor(ib__value *v, const ib__value *model_value, const ib_tensor *t) {
    memset(v, 0, sizeof *v);
    v->name = model_value->name;
    v->kind = model_value->kind;
    v->dtype = t->dtype;
    v->rank = t->rank;
    for (int32_t d = 0; d < t->rank; d++) v->dims[d] = t->shape[d];
    v->constant = t;
    v->index = model_value->index;
}

/* Frees intermediates nobody reads any more (never graph outputs or weights). */
static void release_inputs(run_env *e, const ib__node *node) {
    for (int32_t i = 0; i < node->n_inputs; i++) {
        const ib__value *v = node->inputs[i];
        if (!v || v->index >= e->graph->n_values || e->graph->values[v->index] != v) continue;
        if (--e->uses_left[v->index] <= 0 && e->vals[v->index].owns_data &&
            !is_graph_output(e->graph, v)) {
            ib_tensor_release(&e->vals[v->index]);
            e->ready[v->index] = 0;
        }
    }
}

static ib_status run_node(run_env *e, const ib__node *node) {
    const ib__op_def *def = ib__op_get(node->op);
    if (!def || !def->run || !def->infer)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: operator '%s' is not supported",
                         ib__node_label(node), node->op_type);
    if (node->n_inputs > MAX_IO || node->n_outputs > MAX_IO)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: more than %d inputs or outputs",
                         ib__node_label(node), MAX_IO);
    node_scratch *sc = e->scratch;
    ib__value *in_vals = sc->in_vals, *out_vals = sc->out_vals;
    const ib__value **in_ptrs = sc->in_ptrs;
    ib__value **out_ptrs = sc->out_ptrs;
    const ib_tensor **in_t = sc->in_t;
    ib_tensor *out_store = sc->out_store;
    ib_tensor **out_t = sc->out_t;
    for (int32_t i = 0; i < node->n_inputs; i++) {
        const ib__value *v = node->inputs[i];
        in_ptrs[i] = NULL;
        in_t[i] = NULL;
        if (!v) continue;
        const ib_tensor *t = env_lookup(e, v);
        if (!t)
            return ib__error(IB_ERR_RUNTIME, "%s: input '%s' has no value",
                             ib__node_label(node), v->name);
        value_from_tensor(&in_vals[i], v, t);
        in_ptrs[i] = &in_vals[i];
        in_t[i] = t;
    }
    for (int32_t o = 0; o < node->n_outputs; o++) {
        out_ptrs[o] = NULL;
        out_t[o] = NULL;
        if (!node->outputs[o]) continue;
        memset(&out_vals[o], 0, sizeof out_vals[o]);
        out_vals[o].name = node->outputs[o]->name;
        out_vals[o].rank = -1;
        out_ptrs[o] = &out_vals[o];
    }
    ib__infer_ctx ic = {node, node->opset, node->n_inputs, in_ptrs, node->n_outputs, out_ptrs};
    ib_status st = def->infer(&ic);
    if (st) return st;
    int32_t allocated = 0;
    for (int32_t o = 0; o < node->n_outputs; o++, allocated++) {
        if (!out_ptrs[o]) continue;
        if (def->dynamic_outputs) { /* run allocates */
            memset(&out_store[o], 0, sizeof out_store[o]);
            out_t[o] = &out_store[o];
            continue;
        }
        const ib__value *ov = &out_vals[o];
        if (ov->rank < 0 || ov->dtype == IB_DTYPE_UNDEFINED) {
            st = ib__error(IB_ERR_INTERNAL, "%s: output '%s' shape unknown at run time",
                           ib__node_label(node), ov->name);
            break;
        }
        for (int32_t d = 0; d < ov->rank && st == IB_OK; d++)
            if (ov->dims[d] < 0)
                st = ib__error(IB_ERR_INTERNAL, "%s: output '%s' dim %d unknown at run time",
                               ib__node_label(node), ov->name, d);
        if (st) break;
        st = ib__tensor_alloc(&out_store[o], ov->dtype, ov->rank, ov->dims);
        if (st) {
            ib__error_prefix(st, "%s: output '%s': ", ib__node_label(node), ov->name);
            break;
        }
        out_t[o] = &out_store[o];
    }
    if (st == IB_OK) {
        ib__subgraph_runner runner = {e, run_subgraph};
        ib__run_ctx rc = {node, node->opset, node->n_inputs, in_t, node->n_outputs, out_t,
                          e->session->pool, &runner};
        st = def->run(&rc);
        if (st) {
            const char *msg = ib_last_error();
            if (strstr(msg, "node") != msg)
                ib__error_prefix(st, "%s: ", ib__node_label(node));
        }
    }
    for (int32_t o = 0; st == IB_OK && def->dynamic_outputs && o < node->n_outputs; o++)
        if (out_t[o] && !out_t[o]->owns_data)
            st = ib__error(IB_ERR_INTERNAL, "%s: output %d was not produced",
                           ib__node_label(node), o);
    if (st) {
        for (int32_t o = 0; o < allocated && o < node->n_outputs; o++)
            if (out_t[o]) ib_tensor_release(out_t[o]);
        return st;
    }
    for (int32_t o = 0; o < node->n_outputs; o++) {
        const ib__value *v = node->outputs[o];
        if (!v) continue;
        ib_tensor_release(&e->vals[v->index]);
        e->vals[v->index] = out_store[o];
        e->ready[v->index] = 1;
    }
    release_inputs(e, node);
    return IB_OK;
}

static ib_status run_graph(run_env *e) {
    const ib__graph *g = e->graph;
    for (int32_t n = 0; n < g->n_nodes; n++) {
        const ib__node *node = g->nodes[n];
        bool folded = node->n_outputs > 0;
        for (int32_t o = 0; o < node->n_outputs; o++)
            if (node->outputs[o] && !node->outputs[o]->constant) folded = false;
        if (folded) { /* computed at load time */
            release_inputs(e, node);
            continue;
        }
        IB_TRY(run_node(e, node));
    }
    return IB_OK;
}

static ib_status bind_input(run_env *e, const ib__value *v, const ib_tensor *t) {
    if (!t || t->rank < 0 || t->rank > IB_MAX_RANK)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': invalid tensor", v->name);
    if (v->dtype != IB_DTYPE_UNDEFINED && t->dtype != v->dtype)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': expected dtype %s, got %s",
                         v->name, ib_dtype_name(v->dtype), ib_dtype_name(t->dtype));
    if (v->rank >= 0 && t->rank != v->rank)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': expected rank %d, got %d",
                         v->name, v->rank, t->rank);
    for (int32_t d = 0; d < t->rank; d++)
        if (v->rank >= 0 && v->dims[d] >= 0 && t->shape[d] != v->dims[d])
            return ib__error(IB_ERR_INVALID_ARGUMENT,
                             "input '%s': dim %d must be %lld, got %lld", v->name, d,
                             (long long)v->dims[d], (long long)t->shape[d]);
    int64_t n = ib_tensor_element_count(t);
    size_t esize = ib_dtype_size(t->dtype);
    if (n < 0 || esize == 0)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': invalid shape or dtype", v->name);
    if (t->nbytes < (size_t)n * esize || (!t->data && n > 0))
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "input '%s': buffer holds %zu bytes, shape needs %zu", v->name,
                         t->nbytes, (size_t)n * esize);
    e->vals[v->index] = *t;
    e->vals[v->index].nbytes = (size_t)n * esize;
    e->vals[v->index].owns_data = 0;
    e->ready[v->index] = 1;
    return IB_OK;
}

static ib_status deliver_output(const ib__value *v, ib_tensor *src, ib_tensor *dst) {
    if (dst->data) { /* the caller's buffer */
        if (dst->dtype != src->dtype || dst->nbytes < src->nbytes)
            return ib__error(IB_ERR_INVALID_ARGUMENT,
                             "output '%s': caller buffer is %s with %zu bytes, result is %s "
                             "with %zu bytes", v->name, ib_dtype_name(dst->dtype), dst->nbytes,
                             ib_dtype_name(src->dtype), src->nbytes);
        if (src->nbytes) memcpy(dst->data, src->data, src->nbytes);
        dst->rank = src->rank;
        memcpy(dst->shape, src->shape, sizeof dst->shape);
        dst->nbytes = src->nbytes;
        return IB_OK;
    }
    if (src->owns_data) { /* hand the run's buffer over */
        *dst = *src;
        src->owns_data = 0;
        return IB_OK;
    }
    IB_TRY(ib__tensor_alloc(dst, src->dtype, src->rank, src->shape));
    if (src->nbytes) memcpy(dst->data, src->data, src->nbytes);
    return IB_OK;
}

static ib_status reference_run(ib_session *session, const ib_model *m, size_t n_inputs,
                               const char *const *input_names, const ib_tensor *inputs,
                               size_t n_outputs, const char *const *output_names,
                               ib_tensor *outputs);

/* A session loaded from the cache without its model, fed a name its artifact does not
 * take (an initializer the model also lists as an input, or a typo): the model decides,
 * as a session made from it would (the reference executor runs it, or says what is
 * wrong). */
static bool needs_late_model(const ib_session *s, size_t n_inputs, const char *const *names) {
    if (!s->model_path) return false;
    const ib__rt_model *rt = ib__compiled_fixed(s->compiled);
    for (size_t i = 0; rt && i < n_inputs; i++)
        if (!names[i] || ib__rt_find_input(rt, names[i]) < 0) return true;
    return false;
}

static ib_status load_late_model(ib_session *s) {
    pthread_mutex_lock(&s->model_mu);
    ib_status st = IB_OK;
    if (!s->owned_model) {
        st = ib_model_load_file(s->model_path, &s->owned_model);
        if (st) ib__error_prefix(st, "loading '%s' to run these inputs: ", s->model_path);
    }
    pthread_mutex_unlock(&s->model_mu);
    return st;
}

ib_status ib_session_run(ib_session *session, size_t n_inputs, const char *const *input_names,
                         const ib_tensor *inputs, size_t n_outputs,
                         const char *const *output_names, ib_tensor *outputs) {
    if (!session || (n_inputs && (!input_names || !inputs)) || (n_outputs && !outputs))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "session, names and tensors are required");
    ib__error_clear();
    const ib_model *model = session->model;
    if (session->compiled && needs_late_model(session, n_inputs, input_names)) {
        IB_TRY(load_late_model(session));
        model = session->owned_model;
    } else if (session->compiled) {
        bool use_reference = false;
        ib_status st = ib__compiled_run(session->compiled, session->pool, n_inputs, input_names,
                                        inputs, n_outputs, output_names, outputs, &use_reference);
        if (!use_reference) return st;
    }
    if (!model)
        return ib__error(IB_ERR_UNSUPPORTED, "this artifact session has no model to run the "
                         "reference executor on");
    return reference_run(session, model, n_inputs, input_names, inputs, n_outputs, output_names,
                         outputs);
}

static ib_status reference_run(ib_session *session, const ib_model *m, size_t n_inputs,
                               const char *const *input_names, const ib_tensor *inputs,
                               size_t n_outputs, const char *const *output_names,
                               ib_tensor *outputs) {
    const ib__graph *g = m->graph;
    if (!output_names && n_outputs != (size_t)g->n_outputs)
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "all %d outputs requested but %zu output tensors given", g->n_outputs,
                         n_outputs);
    const ib__value *out_vals[MAX_IO];
    if (n_outputs > MAX_IO)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "at most %d outputs per run", MAX_IO);
    for (size_t o = 0; o < n_outputs; o++) {
        out_vals[o] = NULL;
        if (!output_names) {
            out_vals[o] = g->outputs[o];
            continue;
        }
        for (int32_t k = 0; k < g->n_outputs; k++)
            if (output_names[o] && strcmp(g->outputs[k]->name, output_names[o]) == 0)
                out_vals[o] = g->outputs[k];
        if (!out_vals[o])
            return ib__error(IB_ERR_INVALID_ARGUMENT, "the model has no output named '%s'",
                             output_names[o] ? output_names[o] : "(null)");
    }
    run_env e;
    IB_TRY(env_init(&e, g, NULL, session));
    ib_status st = IB_OK;
    for (size_t i = 0; i < n_inputs && st == IB_OK; i++) {
        const ib__value *v = NULL;
        for (int32_t k = 0; k < g->n_inputs && !v; k++)
            if (input_names[i] && strcmp(g->inputs[k]->name, input_names[i]) == 0)
                v = g->inputs[k];
        if (!v)
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "the model has no input named '%s'",
                           input_names[i] ? input_names[i] : "(null)");
        else
            st = bind_input(&e, v, &inputs[i]);
    }
    for (int32_t k = 0; k < m->n_inputs && st == IB_OK; k++)
        if (!e.ready[m->inputs[k]->index])
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s' was not given",
                           m->inputs[k]->name);
    if (st == IB_OK) st = run_graph(&e);
    size_t delivered = 0;
    for (size_t o = 0; o < n_outputs && st == IB_OK; o++, delivered++) {
        ib_tensor *t = &e.vals[out_vals[o]->index];
        if (!e.ready[out_vals[o]->index])
            st = ib__error(IB_ERR_RUNTIME, "output '%s' was not computed", out_vals[o]->name);
        else
            st = deliver_output(out_vals[o], t, &outputs[o]);
    }
    if (st)
        for (size_t o = 0; o < delivered; o++)
            if (outputs[o].owns_data) ib_tensor_release(&outputs[o]);
    env_free(&e);
    return st;
}

void ib__session_cache_counts(const ib_session *session, uint64_t *hits, uint64_t *misses) {
    ib__compiled_cache_counts(session ? session->compiled : NULL, hits, misses);
}
