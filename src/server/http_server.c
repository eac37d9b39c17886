/* KServe V2 / Open Inference Protocol over HTTP (libmicrohttpd): routing, health,
 * metadata, inference (JSON and binary tensors; the connection is suspended while the
 * scheduler runs it, so no HTTP thread waits), the repository extension and /metrics. */
#include "server/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/core.h"
#include "server/base64.h"
#include "server/infer_codec.h"
#include "server/optimizer.h"

#define MAX_URL 1024
#define MAX_SEGMENTS 8

struct ib__server {
    ib__repository *repo;
    ib__server_options opts;
    struct MHD_Daemon *daemon;
    int port;
    atomic_bool draining;
    atomic_long inflight;
};

typedef struct conn_ctx {
    ib__server *srv;
    struct MHD_Connection *conn;
    char *body;
    size_t len, cap;
    bool too_big;
    ib__served_model *model;
    bool submitted, mutex_ready, finished;
    pthread_mutex_t mu;
    ib__infer_job job;
    uint64_t t0;
    int fd; /* the connection's socket, to see whether the client still waits */
} conn_ctx;

/* ---- Responses --------------------------------------------------------------------- */

static enum MHD_Result respond(struct MHD_Connection *c, unsigned code, const char *ctype, char *buf, size_t len,
                               size_t header_len) {
    if (!buf) {
        buf = ib__malloc(1);
        len = 0;
        if (!buf) return MHD_NO;
    }
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, buf, ib__free);
    if (!r) {
        ib__free(buf);
        return MHD_NO;
    }
    if (ctype) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (header_len) {
        char v[32];
        snprintf(v, sizeof v, "%zu", header_len);
        MHD_add_response_header(r, "Inference-Header-Content-Length", v);
    }
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* Takes ownership of `obj`. */
static enum MHD_Result respond_json(struct MHD_Connection *c, unsigned code, json_t *obj) {
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text) return respond(c, 500, "application/json", ib__strdup("{\"error\":\"out of memory\"}"), 25, 0);
    size_t n = strlen(text);
    char *buf = ib__malloc(n + 1);
    if (buf) memcpy(buf, text, n + 1);
    free(text);
    if (!buf) return MHD_NO;
    return respond(c, code, "application/json", buf, n, 0);
}

static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *o = json_object();
    json_t *m = json_string(msg);
    json_object_set_new(o, "error", m ? m : json_string("(error message not UTF-8)"));
    return respond_json(c, code, o);
}

/* ---- Growing text buffer (metrics) -------------------------------------------------- */

typedef struct text_buf {
    char *p;
    size_t len, cap;
    bool oom;
} text_buf;

static void tb_printf(text_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tb_printf(text_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)n;
        char *p = ib__realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* ---- Endpoints ----------------------------------------------------------------------- */

static enum MHD_Result server_metadata(conn_ctx *x) {
    json_t *o = json_object(), *ext = json_array();
    json_object_set_new(o, "name", json_string("inferbooster"));
    json_object_set_new(o, "version", json_string(IB_VERSION_STRING));
    const char *exts[] = {"binary_tensor_data", "model_repository", "model_configuration", "parameters", "metrics"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) json_array_append_new(ext, json_string(exts[i]));
    json_object_set_new(o, "extensions", ext);
    return respond_json(x->conn, 200, o);
}

static json_t *io_json(const ib_value_info *v) {
    json_t *o = json_object(), *shape = json_array();
    const char *dt = ib__protocol_dtype_name(v->dtype);
    json_object_set_new(o, "name", json_string(v->name ? v->name : ""));
    json_object_set_new(o, "datatype", json_string(dt ? dt : ib_dtype_name(v->dtype)));
    if (v->rank < 0) json_array_append_new(shape, json_integer(-1));
    for (int32_t d = 0; d < v->rank; d++) json_array_append_new(shape, json_integer(v->shape[d] < 0 ? -1 : v->shape[d]));
    json_object_set_new(o, "shape", shape);
    return o;
}

static enum MHD_Result model_metadata(conn_ctx *x, ib__served_model *m) {
    json_t *o = json_object(), *versions = json_array(), *ins = json_array(), *outs = json_array();
    int64_t vs[IB__CONFIG_MAX_VERSIONS];
    size_t nv = ib__repo_versions(x->srv->repo, m->name, vs, IB__CONFIG_MAX_VERSIONS);
    for (size_t i = nv; i-- > 0;) {
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)vs[i]);
        json_array_append_new(versions, json_string(b));
    }
    json_object_set_new(o, "name", json_string(m->name));
    json_object_set_new(o, "versions", versions);
    json_object_set_new(o, "platform", json_string(m->cfg.platform));
    for (size_t i = 0; i < ib_model_input_count(m->model); i++) {
        ib_value_info v;
        if (ib_model_input_info(m->model, i, &v) == IB_OK) json_array_append_new(ins, io_json(&v));
    }
    for (size_t i = 0; i < ib_model_output_count(m->model); i++) {
        ib_value_info v;
        if (ib_model_output_info(m->model, i, &v) == IB_OK) json_array_append_new(outs, io_json(&v));
    }
    json_object_set_new(o, "inputs", ins);
    json_object_set_new(o, "outputs", outs);
    /* Which executor runs this version ("compiled" or "reference"): optional parameters
     * are part of the protocol's metadata response, and clients ignore what they do not use. */
    json_t *params = json_object();
    json_object_set_new(params, "executor", json_string(atomic_load(&m->executor)));
    json_object_set_new(params, "optimization", json_string(ib__optimize_state_name(atomic_load(&m->optimize_state))));
    json_object_set_new(o, "parameters", params);
    return respond_json(x->conn, 200, o);
}

static json_t *io_config_json(const ib__io_config *io) {
    json_t *o = json_object(), *dims = json_array();
    char t[32];
    const char *dt = ib__protocol_dtype_name(io->dtype);
    snprintf(t, sizeof t, "TYPE_%s", dt ? (strcmp(dt, "BYTES") ? dt : "STRING") : "INVALID");
    json_object_set_new(o, "name", json_string(io->name));
    json_object_set_new(o, "data_type", json_string(t));
    for (int32_t d = 0; d < io->rank; d++) json_array_append_new(dims, json_integer(io->dims[d]));
    json_object_set_new(o, "dims", dims);
    return o;
}

static enum MHD_Result model_config(conn_ctx *x, ib__served_model *m) {
    const ib__model_config *c = &m->cfg;
    json_t *o = json_object(), *ins = json_array(), *outs = json_array(), *groups = json_array(), *g = json_object();
    json_object_set_new(o, "name", json_string(m->name));
    json_object_set_new(o, "platform", json_string(c->platform));
    json_object_set_new(o, "backend", json_string("onnxruntime"));
    json_object_set_new(o, "max_batch_size", json_integer(c->max_batch_size));
    for (size_t i = 0; i < c->n_inputs; i++) json_array_append_new(ins, io_config_json(&c->inputs[i]));
    for (size_t i = 0; i < c->n_outputs; i++) json_array_append_new(outs, io_config_json(&c->outputs[i]));
    json_object_set_new(o, "input", ins);
    json_object_set_new(o, "output", outs);
    if (c->dynamic_batching) {
        json_t *db = json_object(), *pref = json_array();
        for (size_t i = 0; i < c->n_preferred; i++) json_array_append_new(pref, json_integer(c->preferred_batch_size[i]));
        json_object_set_new(db, "preferred_batch_size", pref);
        json_object_set_new(db, "max_queue_delay_microseconds", json_integer(c->max_queue_delay_us));
        json_object_set_new(o, "dynamic_batching", db);
    }
    json_object_set_new(g, "count", json_integer(c->instance_count));
    json_object_set_new(g, "kind", json_string("KIND_CPU"));
    json_array_append_new(groups, g);
    json_object_set_new(o, "instance_group", groups);
    return respond_json(x->conn, 200, o);
}

typedef struct index_ctx {
    json_t *arr;
    bool ready_only;
} index_ctx;

static void index_item(void *user, const char *name, int64_t version, const char *state, const char *reason) {
    index_ctx *ic = user;
    if (ic->ready_only && strcmp(state, "READY") != 0) return;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(name));
    if (version > 0) {
        char b[32];
        snprintf(b, sizeof b, "%lld", (long long)version);
        json_object_set_new(o, "version", json_string(b));
    }
    json_object_set_new(o, "state", json_string(state));
    if (reason && reason[0]) {
        json_t *r = json_string(reason);
        json_object_set_new(o, "reason", r ? r : json_string("(reason not UTF-8)"));
    }
    json_array_append_new(ic->arr, o);
}

static enum MHD_Result repository_index(conn_ctx *x) {
    index_ctx ic = {json_array(), false};
    if (x->len) {
        if (ib__json_depth(x->body, x->len) > IB__JSON_MAX_DEPTH) {
            json_decref(ic.arr);
            return respond_error(x->conn, 400, "JSON nested deeper than %d", IB__JSON_MAX_DEPTH);
        }
        json_error_t e;
        json_t *req = json_loadb(x->body, x->len, 0, &e);
        if (!json_is_object(req)) {
            json_decref(req);
            json_decref(ic.arr);
            return respond_error(x->conn, 400, "the index request must be a JSON object");
        }
        ic.ready_only = json_is_true(json_object_get(req, "ready"));
        json_decref(req);
    }
    ib__repo_index(x->srv->repo, index_item, &ic);
    return respond_json(x->conn, 200, ic.arr);
}

/* The repository extension's model-file override: a load request's parameters may hold
 * "file:<version>/model.onnx": "<base64>" entries (Triton's form; the model's other files
 * and a "config" override are not taken). They are written into the repository before the
 * load, so the uploaded model is served (and survives a restart) like any other; the
 * files of a load that fails are taken back. 0 when all were written, else the status
 * code of the error set in *why. */
typedef struct uploads {
    int n;
    int64_t created[16]; /* versions whose file this request wrote */
} uploads;

static int write_uploads(conn_ctx *x, const char *name, uploads *up, char *why, size_t why_cap) {
    if (ib__json_depth(x->body, x->len) > IB__JSON_MAX_DEPTH) {
        snprintf(why, why_cap, "JSON nested deeper than %d", IB__JSON_MAX_DEPTH);
        return 400;
    }
    json_error_t e;
    json_t *req = json_loadb(x->body, x->len, 0, &e);
    json_t *params = json_is_object(req) ? json_object_get(req, "parameters") : NULL;
    int code = 0;
    if (!json_is_object(req) || (params && !json_is_object(params))) {
        snprintf(why, why_cap, "the load request must be a JSON object with an object 'parameters'");
        code = 400;
    }
    const char *key;
    json_t *val;
    json_object_foreach(params, key, val) {
        if (code) break;
        if (strncmp(key, "file:", 5) != 0) {
            if (strcmp(key, "config") == 0) {
                snprintf(why, why_cap, "a 'config' override is not supported: put config.pbtxt in the repository");
                code = 400;
            }
            continue;
        }
        char *end = NULL;
        long long version = strtoll(key + 5, &end, 10);
        if (!(key[5] >= '1' && key[5] <= '9') || !end || strcmp(end, "/model.onnx") != 0 ||
            version < 1 || version > INT32_MAX) {
            snprintf(why, why_cap, "upload '%.64s': only 'file:<version>/model.onnx' is accepted", key);
            code = 400;
            break;
        }
        if (!json_is_string(val)) {
            snprintf(why, why_cap, "upload '%.64s': the value must be base64 text", key);
            code = 400;
            break;
        }
        uint8_t *bytes = NULL;
        size_t n = 0;
        ib_status st = ib__base64_decode(json_string_value(val), json_string_length(val), &bytes, &n);
        bool created = false;
        if (st == IB_OK && up->n == (int)(sizeof up->created / sizeof up->created[0]))
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "at most %d files per load",
                           (int)(sizeof up->created / sizeof up->created[0]));
        if (st == IB_OK) st = ib__repo_put_model_file(x->srv->repo, name, version, bytes, n, &created);
        if (created) up->created[up->n++] = version;
        ib__free(bytes);
        if (st != IB_OK) {
            snprintf(why, why_cap, "upload '%.64s': %s", key, ib_last_error());
            code = st == IB_ERR_IO ? 500 : 400;
        }
    }
    json_decref(req);
    return code;
}

static enum MHD_Result repository_control(conn_ctx *x, const char *name, bool load) {
    if (x->srv->opts.control_mode != IB__CONTROL_EXPLICIT)
        return respond_error(x->conn, 503,
                             "model control mode is '%s': start the server with --model-control-mode explicit to %s models",
                             x->srv->opts.control_mode == IB__CONTROL_POLL ? "poll" : "none", load ? "load" : "unload");
    if (!ib__repo_name_valid(name)) return respond_error(x->conn, 400, "'%.128s' is not a valid model name", name);
    uploads up = {0, {0}};
    if (load && x->len) {
        char why[512];
        int code = write_uploads(x, name, &up, why, sizeof why);
        if (code) {
            for (int i = 0; i < up.n; i++) ib__repo_drop_model_file(x->srv->repo, name, up.created[i]);
            return respond_error(x->conn, code, "%s", why);
        }
    }
    ib_status st = load ? ib__repo_load(x->srv->repo, name) : ib__repo_unload(x->srv->repo, name);
    if (st != IB_OK && up.n) {
        char why[512];
        snprintf(why, sizeof why, "%s", ib_last_error());
        for (int i = 0; i < up.n; i++) ib__repo_drop_model_file(x->srv->repo, name, up.created[i]);
        ib__repo_unload(x->srv->repo, name); /* forget the entry of a model that is gone */
        ib__error(st, "%s", why);
    }
    if (st != IB_OK) {
        if (!load) return respond(x->conn, 200, "application/json", NULL, 0, 0); /* unloading the unloaded is fine */
        return respond_error(x->conn, 400, "failed to load '%s': %s", name, ib_last_error());
    }
    return respond(x->conn, 200, "application/json", NULL, 0, 0);
}

typedef struct metric_desc {
    const char *name, *help, *type;
} metric_desc;

static const metric_desc k_metrics[] = {
    {"nv_inference_request_success", "Number of successful inference requests, all batch sizes", "counter"},
    {"nv_inference_request_failure", "Number of failed inference requests, all batch sizes", "counter"},
    {"nv_inference_count", "Number of inferences performed (batch items)", "counter"},
    {"nv_inference_exec_count", "Number of model executions performed", "counter"},
    {"nv_inference_request_duration_us", "Cumulative inference request duration in microseconds", "counter"},
    {"nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds", "counter"},
    {"nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds", "counter"},
    {"nv_inference_pending_request_count", "Instantaneous number of pending requests awaiting execution", "gauge"},
};
#define N_METRICS (sizeof k_metrics / sizeof k_metrics[0])

typedef struct metrics_ctx {
    text_buf *tb;
    size_t which;
} metrics_ctx;

static void metric_line(void *user, ib__served_model *m) {
    metrics_ctx *mc = user;
    ib__sched_stats s;
    ib__sched_stats_get(m->sched, &s);
    uint64_t v[N_METRICS] = {s.request_success,     s.request_failure,   s.inference_count,     s.exec_count,
                             s.request_duration_us, s.queue_duration_us, s.compute_duration_us, s.pending};
    /* Model names are restricted to [A-Za-z0-9_.-], so they need no label escaping. */
    tb_printf(mc->tb, "%s{model=\"%s\",version=\"%lld\"} %llu\n", k_metrics[mc->which].name, m->name,
              (long long)m->version, (unsigned long long)v[mc->which]);
}

static void executor_line(void *user, ib__served_model *m) {
    tb_printf(user, "ib_model_executor_info{model=\"%s\",version=\"%lld\",executor=\"%s\",optimization=\"%s\"} 1\n",
              m->name, (long long)m->version, atomic_load(&m->executor),
              ib__optimize_state_name(atomic_load(&m->optimize_state)));
}

static void swaps_line(void *user, ib__served_model *m) {
    ib__sched_stats s;
    ib__sched_stats_get(m->sched, &s);
    tb_printf(user, "ib_model_session_swaps_total{model=\"%s\",version=\"%lld\"} %llu\n", m->name,
              (long long)m->version, (unsigned long long)s.session_swaps);
}

static void cancelled_line(void *user, ib__served_model *m) {
    ib__sched_stats s;
    ib__sched_stats_get(m->sched, &s);
    tb_printf(user, "ib_inference_request_cancelled{model=\"%s\",version=\"%lld\"} %llu\n", m->name,
              (long long)m->version, (unsigned long long)s.cancelled);
}

static void exec_rows_line(void *user, ib__served_model *m) {
    ib__sched_stats s;
    ib__sched_stats_get(m->sched, &s);
    tb_printf(user, "ib_inference_exec_rows_total{model=\"%s\",version=\"%lld\"} %llu\n", m->name,
              (long long)m->version, (unsigned long long)s.exec_rows);
}

static void exec_duration_line(void *user, ib__served_model *m) {
    ib__sched_stats s;
    ib__sched_stats_get(m->sched, &s);
    tb_printf(user, "ib_inference_exec_duration_us{model=\"%s\",version=\"%lld\"} %llu\n", m->name,
              (long long)m->version, (unsigned long long)s.exec_duration_us);
}

static void compile_line(void *user, ib__served_model *m) {
    tb_printf(user, "ib_model_compile_duration_us{model=\"%s\",version=\"%lld\"} %llu\n", m->name,
              (long long)m->version, (unsigned long long)atomic_load(&m->compile_us));
}

static void cache_hits_line(void *user, ib__served_model *m) {
    tb_printf(user, "ib_model_cache_hits_total{model=\"%s\",version=\"%lld\"} %llu\n", m->name,
              (long long)m->version, (unsigned long long)atomic_load(&m->cache_hits));
}

static void cache_misses_line(void *user, ib__served_model *m) {
    tb_printf(user, "ib_model_cache_misses_total{model=\"%s\",version=\"%lld\"} %llu\n", m->name,
              (long long)m->version, (unsigned long long)atomic_load(&m->cache_misses));
}

static enum MHD_Result metrics(conn_ctx *x) {
    text_buf tb = {0};
    for (size_t k = 0; k < N_METRICS; k++) {
        tb_printf(&tb, "# HELP %s %s\n# TYPE %s %s\n", k_metrics[k].name, k_metrics[k].help, k_metrics[k].name,
                  k_metrics[k].type);
        metrics_ctx mc = {&tb, k};
        ib__repo_foreach_live(x->srv->repo, metric_line, &mc);
    }
    tb_printf(&tb, "# HELP ib_model_executor_info The executor serving a model version (1 for the live one)\n"
                   "# TYPE ib_model_executor_info gauge\n");
    ib__repo_foreach_live(x->srv->repo, executor_line, &tb);
    tb_printf(&tb, "# HELP ib_model_session_swaps_total Sessions swapped in under traffic (reference to compiled)\n"
                   "# TYPE ib_model_session_swaps_total counter\n");
    ib__repo_foreach_live(x->srv->repo, swaps_line, &tb);
    tb_printf(&tb, "# HELP ib_model_compile_duration_us Time spent building and warming the optimised session\n"
                   "# TYPE ib_model_compile_duration_us gauge\n");
    ib__repo_foreach_live(x->srv->repo, compile_line, &tb);
    tb_printf(&tb, "# HELP ib_model_cache_hits_total Executables of the optimised session (one per warmed batch "
                   "size) loaded from the compiled-model cache\n"
                   "# TYPE ib_model_cache_hits_total counter\n");
    ib__repo_foreach_live(x->srv->repo, cache_hits_line, &tb);
    tb_printf(&tb, "# HELP ib_model_cache_misses_total Executables of the optimised session compiled because "
                   "the cache did not hold them\n"
                   "# TYPE ib_model_cache_misses_total counter\n");
    ib__repo_foreach_live(x->srv->repo, cache_misses_line, &tb);
    tb_printf(&tb, "# HELP ib_inference_request_cancelled Queued requests dropped unrun because the client "
                   "disconnected (also counted as failures)\n"
                   "# TYPE ib_inference_request_cancelled counter\n");
    ib__repo_foreach_live(x->srv->repo, cancelled_line, &tb);
    /* Batching at a glance: rows beyond nv_inference_count are padding, and the
     * duration counted once per execution (not per request) is the instances' busy time. */
    tb_printf(&tb, "# HELP ib_inference_exec_rows_total Batch rows executed, padding to a warmed batch size included\n"
                   "# TYPE ib_inference_exec_rows_total counter\n");
    ib__repo_foreach_live(x->srv->repo, exec_rows_line, &tb);
    tb_printf(&tb, "# HELP ib_inference_exec_duration_us Cumulative execution time in microseconds, once per "
                   "execution\n"
                   "# TYPE ib_inference_exec_duration_us counter\n");
    ib__repo_foreach_live(x->srv->repo, exec_duration_line, &tb);
    if (tb.oom) {
        ib__free(tb.p);
        return respond_error(x->conn, 500, "out of memory");
    }
    return respond(x->conn, 200, "text/plain; version=0.0.4", tb.p, tb.len, 0);
}

/* ---- Inference ------------------------------------------------------------------------ */

static void on_done(ib__infer_request *req, void *user) {
    conn_ctx *x = user;
    (void)req;
    pthread_mutex_lock(&x->mu);
    x->finished = true;
    pthread_mutex_unlock(&x->mu);
    /* The connection stays suspended (so x and conn stay alive) until this call. */
    MHD_resume_connection(x->conn);
}

/* libmicrohttpd does not watch a suspended connection, so a client that hangs up while
 * its request is queued goes unnoticed until it is resumed: the scheduler asks this just
 * before running the request. A peek that sees end-of-file or a reset means nobody waits
 * (a client that half-closes its side after sending would look gone too; HTTP clients
 * keep both sides open while they wait for the answer). */
static bool client_waiting(const ib__infer_request *req, void *user) {
    const conn_ctx *x = user;
    (void)req;
    if (x->fd < 0) return true;
    char c;
    ssize_t n = recv(x->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
    return true;
}

static unsigned status_http(ib_status st) {
    switch (st) {
    case IB_ERR_INVALID_ARGUMENT:
    case IB_ERR_SHAPE:
    case IB_ERR_UNSUPPORTED: return 400;
    default: return 500;
    }
}

static void release_model(conn_ctx *x) {
    ib__infer_job_clear(&x->job);
    ib__repo_release(x->srv->repo, x->model);
    x->model = NULL;
}

static enum MHD_Result finish_infer(conn_ctx *x) {
    enum MHD_Result ret;
    if (x->job.req.status != IB_OK) {
        ret = respond_error(x->conn,
                            x->job.req.timed_out || x->job.req.cancelled ? 503 : status_http(x->job.req.status),
                            "inference failed for model '%s': %s", x->model->name, x->job.req.error);
    } else {
        char err[512], *out = NULL;
        size_t len = 0, json_len = 0;
        int code = ib__infer_respond(&x->job, &out, &len, &json_len, err, sizeof err);
        if (code) ret = respond_error(x->conn, (unsigned)code, "%s", err);
        else
            ret = respond(x->conn, 200, json_len ? "application/octet-stream" : "application/json", out, len, json_len);
    }
    release_model(x);
    atomic_fetch_sub(&x->srv->inflight, 1);
    return ret;
}

static enum MHD_Result start_infer(conn_ctx *x, const char *name, int64_t version) {
    ib__server *srv = x->srv;
    if (atomic_load(&srv->draining)) return respond_error(x->conn, 503, "the server is shutting down");
    x->model = ib__repo_acquire(srv->repo, name, version);
    if (!x->model) {
        if (version > 0)
            return respond_error(x->conn, 404, "Request for unknown model: '%s' version %lld is not found", name,
                                 (long long)version);
        return respond_error(x->conn, 404, "Request for unknown model: '%s' is not found", name);
    }
    size_t json_len = x->len;
    const char *h = MHD_lookup_connection_value(x->conn, MHD_HEADER_KIND, "Inference-Header-Content-Length");
    if (h) {
        char herr[128];
        if (ib__infer_header_length(h, x->len, &json_len, herr, sizeof herr)) {
            ib__sched_count_failure(x->model->sched, (ib__now_ns() - x->t0) / 1000u);
            release_model(x);
            return respond_error(x->conn, 400, "%s", herr);
        }
    }
    char err[768];
    int code = ib__infer_parse(x->model, x->body ? x->body : "", x->len, json_len, &x->job, err, sizeof err);
    if (code) {
        ib__sched_count_failure(x->model->sched, (ib__now_ns() - x->t0) / 1000u);
        release_model(x);
        return respond_error(x->conn, (unsigned)code, "%s", err);
    }
    /* The body is no longer needed: tensors were copied out of it. */
    ib__free(x->body);
    x->body = NULL;
    x->len = x->cap = 0;
    x->job.req.done = on_done;
    x->job.req.wanted = client_waiting;
    x->job.req.user = x;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(x->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    x->fd = ci ? ci->connect_fd : -1;
    if (!x->mutex_ready) {
        pthread_mutex_init(&x->mu, NULL);
        x->mutex_ready = true;
    }
    pthread_mutex_lock(&x->mu);
    int rc = ib__sched_submit(x->model->sched, &x->job.req);
    if (rc != IB__SCHED_QUEUED) {
        pthread_mutex_unlock(&x->mu);
        const char *model_name = x->model->name;
        char nm[IB__CONFIG_NAME_MAX];
        snprintf(nm, sizeof nm, "%s", model_name);
        release_model(x);
        return respond_error(x->conn, 503,
                             rc == IB__SCHED_FULL ? "model '%s' is overloaded: its queue is full, retry later"
                                                  : "model '%s' is being unloaded",
                             nm);
    }
    x->submitted = true;
    atomic_fetch_add(&srv->inflight, 1);
    MHD_suspend_connection(x->conn);
    pthread_mutex_unlock(&x->mu);
    return MHD_YES;
}

/* ---- Routing --------------------------------------------------------------------------- */

static bool parse_version_segment(const char *s, int64_t *out) {
    if (!s[0] || strlen(s) > 18) return false;
    int64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        v = v * 10 + (*p - '0');
    }
    if (v < 1) return false;
    *out = v;
    return true;
}

static enum MHD_Result route(conn_ctx *x, const char *url, const char *method) {
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0, post = strcmp(method, "POST") == 0;
    char buf[MAX_URL];
    size_t ul = strlen(url);
    if (ul >= sizeof buf) return respond_error(x->conn, 404, "Not Found");
    memcpy(buf, url, ul + 1);
    char *seg[MAX_SEGMENTS];
    size_t n = 0;
    char *save = NULL; /* strtok_r: several HTTP threads route at once */
    for (char *p = strtok_r(buf, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
        if (n == MAX_SEGMENTS) return respond_error(x->conn, 404, "Not Found");
        seg[n++] = p;
    }
    if (n == 1 && strcmp(seg[0], "metrics") == 0) {
        if (!get) return respond_error(x->conn, 405, "use GET for /metrics");
        return metrics(x);
    }
    if (n == 0 || strcmp(seg[0], "v2") != 0) return respond_error(x->conn, 404, "Not Found");
    if (n == 1) {
        if (!get) return respond_error(x->conn, 405, "use GET for /v2");
        return server_metadata(x);
    }
    if (strcmp(seg[1], "health") == 0 && n == 3) {
        if (!get) return respond_error(x->conn, 405, "use GET for health");
        if (strcmp(seg[2], "live") == 0) return respond(x->conn, 200, NULL, NULL, 0, 0);
        if (strcmp(seg[2], "ready") == 0)
            return respond(x->conn, atomic_load(&x->srv->draining) ? 503 : 200, NULL, NULL, 0, 0);
        return respond_error(x->conn, 404, "Not Found");
    }
    if (strcmp(seg[1], "repository") == 0) {
        if (!post) return respond_error(x->conn, 405, "use POST for the repository extension");
        if (n == 3 && strcmp(seg[2], "index") == 0) return repository_index(x);
        if (n == 5 && strcmp(seg[2], "models") == 0) {
            if (strcmp(seg[4], "load") == 0) return repository_control(x, seg[3], true);
            if (strcmp(seg[4], "unload") == 0) return repository_control(x, seg[3], false);
        }
        return respond_error(x->conn, 404, "Not Found");
    }
    if (strcmp(seg[1], "models") == 0 && n >= 3) {
        const char *name = seg[2];
        int64_t version = 0;
        size_t k = 3;
        if (n >= 5 && strcmp(seg[3], "versions") == 0) {
            if (!parse_version_segment(seg[4], &version))
                return respond_error(x->conn, 400, "'%.32s' is not a model version", seg[4]);
            k = 5;
        } else if (n == 4 && strcmp(seg[3], "versions") == 0) {
            return respond_error(x->conn, 404, "Not Found");
        }
        if (n > k + 1) return respond_error(x->conn, 404, "Not Found");
        const char *action = n == k + 1 ? seg[k] : "";
        if (strcmp(action, "infer") == 0) {
            if (!post) return respond_error(x->conn, 405, "use POST for infer");
            return start_infer(x, name, version);
        }
        if (strcmp(action, "") && strcmp(action, "ready") && strcmp(action, "config"))
            return respond_error(x->conn, 404, "Not Found");
        if (!get) return respond_error(x->conn, 405, "use GET for model metadata");
        ib__served_model *m = ib__repo_acquire(x->srv->repo, name, version);
        if (strcmp(action, "ready") == 0) {
            ib__repo_release(x->srv->repo, m);
            return respond(x->conn, m ? 200 : 400, NULL, NULL, 0, 0);
        }
        if (!m) {
            if (version > 0)
                return respond_error(x->conn, 404, "Request for unknown model: '%s' version %lld is not found", name,
                                     (long long)version);
            return respond_error(x->conn, 404, "Request for unknown model: '%s' is not found", name);
        }
        enum MHD_Result r = action[0] ? model_config(x, m) : model_metadata(x, m);
        ib__repo_release(x->srv->repo, m);
        return r;
    }
    return respond_error(x->conn, 404, "Not Found");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                               const char *version, const char *upload_data, size_t *upload_data_size,
                               void **con_cls) {
    ib__server *srv = cls;
    conn_ctx *x = *con_cls;
    if (!x) {
        x = ib__calloc(1, sizeof *x);
        if (!x) return MHD_NO;
        x->srv = srv;
        x->conn = conn;
        x->t0 = ib__now_ns();
        *con_cls = x;
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv->opts.max_body_bytes)
            return respond_error(conn, 413, "request body of %.24s bytes exceeds the %zu-byte limit", cl,
                                 srv->opts.max_body_bytes);
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (x->too_big) return MHD_YES;
        if (n > srv->opts.max_body_bytes - x->len) {
            x->too_big = true;
            ib__free(x->body);
            x->body = NULL;
            x->len = x->cap = 0;
            return MHD_YES;
        }
        if (x->len + n + 1 > x->cap) {
            size_t cap = x->cap ? x->cap : 4096;
            while (cap < x->len + n + 1) cap *= 2;
            char *p = ib__realloc(x->body, cap);
            if (!p) return MHD_NO;
            x->body = p;
            x->cap = cap;
        }
        memcpy(x->body + x->len, upload_data, n);
        x->len += n;
        x->body[x->len] = 0;
        return MHD_YES;
    }
    if (x->submitted) {
        /* Resumed by the scheduler's completion. */
        x->submitted = false;
        return finish_infer(x);
    }
    if (x->too_big)
        return respond_error(conn, 413, "request body exceeds the %zu-byte limit", srv->opts.max_body_bytes);
    return route(x, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    conn_ctx *x = *con_cls;
    if (!x) return;
    if (x->model) release_model(x);
    ib__infer_job_clear(&x->job);
    if (x->mutex_ready) pthread_mutex_destroy(&x->mu);
    ib__free(x->body);
    ib__free(x);
    *con_cls = NULL;
}

ib_status ib__server_start(ib__repository *repo, const ib__server_options *opts, ib__server **out) {
    ib__server *s = ib__calloc(1, sizeof *s);
    if (!s) return ib__error(IB_ERR_OUT_OF_MEMORY, "server: out of memory");
    s->repo = repo;
    s->opts = *opts;
    if (!s->opts.host) s->opts.host = "127.0.0.1";
    if (!s->opts.max_body_bytes) s->opts.max_body_bytes = (size_t)64 << 20;
    if (s->opts.http_threads < 1) s->opts.http_threads = 4;
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    memset(&a4, 0, sizeof a4);
    memset(&a6, 0, sizeof a6);
    const struct sockaddr *addr;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, s->opts.host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)s->opts.port);
        addr = (const struct sockaddr *)&a4;
    } else if (inet_pton(AF_INET6, s->opts.host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)s->opts.port);
        addr = (const struct sockaddr *)&a6;
        flags |= MHD_USE_IPv6;
    } else {
        ib__free(s);
        return ib__error(IB_ERR_INVALID_ARGUMENT, "--host '%s' is not an IPv4 or IPv6 address", opts->host);
    }
    s->daemon = MHD_start_daemon(flags, (uint16_t)s->opts.port, NULL, NULL, handler, s, MHD_OPTION_SOCK_ADDR, addr,
                                 MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->opts.http_threads,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)8192, MHD_OPTION_CONNECTION_TIMEOUT,
                                 (unsigned)120, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        ib__free(s);
        return ib__error(IB_ERR_IO, "cannot listen on %s:%d (address in use or not permitted?)", opts->host ? opts->host : "127.0.0.1", opts->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->opts.port;
    *out = s;
    return IB_OK;
}

int ib__server_port(const ib__server *s) { return s->port; }

void ib__server_stop(ib__server *s, int drain_ms) {
    if (!s) return;
    atomic_store(&s->draining, true);
    /* Suspended connections must be resumed before the daemon stops: wait for every
     * queued inference to answer. Each is bounded by its model's run time. */
    long waited = 0;
    while (atomic_load(&s->inflight) > 0) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        waited += 10;
        if (drain_ms > 0 && waited == drain_ms)
            fprintf(stderr, "inferbooster serve: still draining %ld requests\n", (long)atomic_load(&s->inflight));
    }
    MHD_stop_daemon(s->daemon);
    ib__free(s);
}
