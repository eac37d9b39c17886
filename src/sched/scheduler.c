/* The scheduler: a bounded FIFO per model version, worker threads (one per instance)
 * that gather compatible requests into a batch within the queue delay, pad it to one of
 * the batch sizes the session was warmed for, run the shared session once and split the
 * outputs back to each request; the session can be swapped under running traffic. */
#include "sched/scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/core.h"

struct ib__sched {
    ib_session *session;
    ib__sched_config cfg;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_cond_t idle; /* an execution finished (session swaps wait on it) */
    /* Executions in flight per session generation: a swap bumps gen and waits until the
     * previous generation's count drops to zero; swaps are serialised, so two suffice. */
    unsigned gen;
    int running[2];
    uint64_t swaps;
    ib__infer_request *head, *tail;
    size_t queued;
    bool stopping;
    int n_threads;
    pthread_t *threads;
    ib__sched_stats stats; /* under lock */
};

uint64_t ib__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Requests that can share one execution: same inputs (names, dtypes, dims after the
 * first) and the same requested outputs. */
static bool compatible(const ib__infer_request *a, const ib__infer_request *b) {
    if (a->batch <= 0 || b->batch <= 0) return false;
    if (a->n_inputs != b->n_inputs || a->n_outputs != b->n_outputs) return false;
    for (size_t i = 0; i < a->n_inputs; i++) {
        const ib_tensor *x = &a->inputs[i], *y = &b->inputs[i];
        if (strcmp(a->input_names[i], b->input_names[i]) != 0) return false;
        if (x->dtype != y->dtype || x->rank != y->rank || x->rank < 1) return false;
        for (int32_t d = 1; d < x->rank; d++)
            if (x->shape[d] != y->shape[d]) return false;
    }
    for (size_t i = 0; i < a->n_outputs; i++)
        if (strcmp(a->output_names[i], b->output_names[i]) != 0) return false;
    return true;
}

size_t ib__sched_batch_sizes(const ib__sched_config *cfg, int64_t *out, size_t cap) {
    size_t n = 0;
    if (cap == 0) return 0;
    out[n++] = 1;
    if (cfg->max_batch_size <= 0 || !cfg->dynamic_batching) return n;
    for (size_t i = 0; i <= cfg->n_preferred && i <= IB__SCHED_MAX_PREFERRED; i++) {
        int64_t b = i < cfg->n_preferred ? cfg->preferred_batch_size[i] : cfg->max_batch_size;
        if (b < 1 || b > cfg->max_batch_size) continue;
        size_t at = 0;
        while (at < n && out[at] < b) at++;
        if ((at < n && out[at] == b) || n == cap) continue;
        memmove(out + at + 1, out + at, (n - at) * sizeof *out);
        out[at] = b;
        n++;
    }
    return n;
}

/* The smallest warmed batch size that holds `items`: a gathered batch is padded to it, so
 * every execution runs a batch size compiled at load instead of compiling on the request
 * path (a compile of a new batch size costs seconds; padding costs a few rows). */
static int64_t padded_batch(const ib__sched_config *cfg, int64_t items) {
    int64_t sizes[IB__SCHED_MAX_PREFERRED + 2];
    size_t n = ib__sched_batch_sizes(cfg, sizes, sizeof sizes / sizeof sizes[0]);
    for (size_t i = 0; i < n; i++)
        if (sizes[i] >= items) return sizes[i];
    return items;
}

/* How many items to take when `avail` could be gathered. Padding `avail` up to a warmed
 * size wastes the padded rows' compute; when that would be more than a quarter of the
 * execution, take the largest warmed size that fits instead and leave the rest queued for
 * the next execution (as Triton forms preferred sizes), so a warmed session never runs
 * mostly zeros. */
static int64_t batch_cap(const ib__sched_config *cfg, int64_t avail) {
    if (!cfg->pad_batches) return cfg->max_batch_size;
    int64_t padded = padded_batch(cfg, avail);
    if ((padded - avail) * 4 <= padded) return cfg->max_batch_size;
    int64_t sizes[IB__SCHED_MAX_PREFERRED + 2], best = 1;
    size_t n = ib__sched_batch_sizes(cfg, sizes, sizeof sizes / sizeof sizes[0]);
    for (size_t i = 0; i < n; i++)
        if (sizes[i] <= avail) best = sizes[i];
    return best;
}

static int64_t batch_target(const ib__sched_config *cfg) {
    int64_t t = 0;
    for (size_t i = 0; i < cfg->n_preferred; i++)
        if (cfg->preferred_batch_size[i] <= cfg->max_batch_size && cfg->preferred_batch_size[i] > t)
            t = cfg->preferred_batch_size[i];
    return t > 0 ? t : cfg->max_batch_size;
}

/* Items that could join the head's batch now (capped at max_batch_size). */
static int64_t gatherable(const ib__sched *s) {
    const ib__infer_request *h = s->head;
    int64_t total = h->batch;
    for (const ib__infer_request *r = h->next; r; r = r->next)
        if (compatible(h, r) && total + r->batch <= s->cfg.max_batch_size) total += r->batch;
    return total;
}

static void fail_request(ib__infer_request *r, ib_status st, const char *msg) {
    r->status = st;
    snprintf(r->error, sizeof r->error, "%s", msg && msg[0] ? msg : ib_status_name(st));
    for (size_t o = 0; o < r->n_outputs; o++) ib_tensor_release(&r->outputs[o]);
}

/* Runs one batch of requests (linked through ->next, all compatible when more than one)
 * on `session`, padded with zero rows to `rows` (>= items) when batching. */
static void execute(ib__sched *s, ib_session *session, ib__infer_request *batch, size_t count, int64_t items,
                    int64_t rows) {
    ib__infer_request *first = batch;
    (void)s;
    if (count == 1 && rows == items) {
        ib_status st = ib_session_run(session, first->n_inputs, first->input_names, first->inputs,
                                      first->n_outputs, first->output_names, first->outputs);
        if (st == IB_OK) first->status = IB_OK;
        else fail_request(first, st, ib_last_error());
        return;
    }
    size_t ni = first->n_inputs, no = first->n_outputs;
    ib_tensor *in = ib__calloc(ni, sizeof *in);
    ib_tensor *out = ib__calloc(no, sizeof *out);
    ib_status st = (in && out) ? IB_OK : IB_ERR_OUT_OF_MEMORY;
    char msg[512] = "out of memory gathering a batch";
    for (size_t i = 0; st == IB_OK && i < ni; i++) {
        int64_t dims[IB_MAX_RANK];
        memcpy(dims, first->inputs[i].shape, sizeof dims);
        dims[0] = rows;
        st = ib__tensor_alloc(&in[i], first->inputs[i].dtype, first->inputs[i].rank, dims);
        if (st != IB_OK) {
            snprintf(msg, sizeof msg, "%s", ib_last_error());
            break;
        }
        size_t off = 0;
        size_t real = in[i].nbytes / (size_t)rows * (size_t)items;
        if (in[i].nbytes > real) memset((char *)in[i].data + real, 0, in[i].nbytes - real);
        for (ib__infer_request *r = batch; r; r = r->next) {
            size_t nb = r->inputs[i].nbytes;
            if (off + nb > in[i].nbytes) {
                st = IB_ERR_INTERNAL;
                snprintf(msg, sizeof msg, "input '%s': batched sizes disagree", first->input_names[i]);
                break;
            }
            if (nb) memcpy((char *)in[i].data + off, r->inputs[i].data, nb);
            off += nb;
        }
    }
    if (st == IB_OK) {
        st = ib_session_run(session, ni, first->input_names, in, no, first->output_names, out);
        if (st != IB_OK) snprintf(msg, sizeof msg, "%s", ib_last_error());
    }
    for (size_t o = 0; st == IB_OK && o < no; o++) {
        if (out[o].rank < 1 || out[o].shape[0] != rows) {
            st = IB_ERR_SHAPE;
            snprintf(msg, sizeof msg, "output '%s' does not keep the batch dimension (%lld items), so it cannot be split",
                     first->output_names[o], (long long)rows);
            break;
        }
        size_t row = out[o].nbytes / (size_t)rows, off = 0;
        for (ib__infer_request *r = batch; r && st == IB_OK; r = r->next) {
            int64_t dims[IB_MAX_RANK];
            memcpy(dims, out[o].shape, sizeof dims);
            dims[0] = r->batch;
            st = ib__tensor_alloc(&r->outputs[o], out[o].dtype, out[o].rank, dims);
            if (st != IB_OK) {
                snprintf(msg, sizeof msg, "%s", ib_last_error());
                break;
            }
            size_t nb = row * (size_t)r->batch;
            if (nb) memcpy(r->outputs[o].data, (char *)out[o].data + off, nb);
            off += nb;
        }
    }
    for (ib__infer_request *r = batch; r; r = r->next) {
        if (st == IB_OK) r->status = IB_OK;
        else fail_request(r, st, msg);
    }
    for (size_t i = 0; in && i < ni; i++) ib_tensor_release(&in[i]);
    for (size_t o = 0; out && o < no; o++) ib_tensor_release(&out[o]);
    ib__free(in);
    ib__free(out);
}

static void wait_until(ib__sched *s, uint64_t deadline_ns) {
    /* The condition variable uses CLOCK_MONOTONIC (set at creation). */
    struct timespec ts = {(time_t)(deadline_ns / 1000000000ull), (long)(deadline_ns % 1000000000ull)};
    pthread_cond_timedwait(&s->cond, &s->lock, &ts);
}

/* Unlinks requests whose timeout passed while queued; the caller finishes them unlocked. */
static ib__infer_request *take_expired_locked(ib__sched *s, uint64_t now) {
    ib__infer_request *expired = NULL, **link = &s->head;
    while (*link) {
        ib__infer_request *r = *link;
        if (r->timeout_us && now - r->t_enqueue_ns > r->timeout_us * 1000u) {
            *link = r->next;
            r->next = expired;
            expired = r;
            s->queued--;
            s->stats.pending--;
            s->stats.request_failure++;
            s->stats.request_duration_us += (now - r->t_enqueue_ns) / 1000u;
            s->stats.queue_duration_us += (now - r->t_enqueue_ns) / 1000u;
        } else {
            link = &r->next;
        }
    }
    s->tail = NULL;
    for (ib__infer_request *r = s->head; r; r = r->next) s->tail = r;
    return expired;
}

static bool head_expired(const ib__sched *s) {
    const ib__infer_request *h = s->head;
    return h && h->timeout_us && ib__now_ns() - h->t_enqueue_ns > h->timeout_us * 1000u;
}

static void finish_expired(ib__infer_request *expired) {
    for (ib__infer_request *r = expired, *next; r; r = next) {
        next = r->next;
        r->next = NULL;
        r->status = IB_ERR_RUNTIME;
        r->timed_out = true;
        snprintf(r->error, sizeof r->error, "request timed out after %llu us in the queue",
                 (unsigned long long)r->timeout_us);
        r->done(r, r->user);
    }
}

static void finish_cancelled(ib__infer_request *list) {
    for (ib__infer_request *r = list, *next; r; r = next) {
        next = r->next;
        r->next = NULL;
        r->status = IB_ERR_RUNTIME;
        r->cancelled = true;
        snprintf(r->error, sizeof r->error, "the client disconnected while the request was queued");
        r->done(r, r->user);
    }
}

static void *worker(void *arg) {
    ib__sched *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->head && !s->stopping) pthread_cond_wait(&s->cond, &s->lock);
        ib__infer_request *expired = take_expired_locked(s, ib__now_ns());
        if (expired) {
            pthread_mutex_unlock(&s->lock);
            finish_expired(expired);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        if (!s->head) break;
        bool batching = s->cfg.dynamic_batching && s->cfg.max_batch_size > 0 && s->head->batch > 0;
        if (batching && !s->stopping) {
            int64_t target = batch_target(&s->cfg);
            uint64_t deadline = s->head->t_enqueue_ns + (uint64_t)s->cfg.max_queue_delay_us * 1000u;
            while (s->head && !s->stopping && gatherable(s) < target && ib__now_ns() < deadline &&
                   !head_expired(s)) {
                uint64_t wake = deadline;
                if (s->head->timeout_us && s->head->t_enqueue_ns + s->head->timeout_us * 1000u < wake)
                    wake = s->head->t_enqueue_ns + s->head->timeout_us * 1000u + 1000u;
                wait_until(s, wake);
                if (s->head) deadline = s->head->t_enqueue_ns + (uint64_t)s->cfg.max_queue_delay_us * 1000u;
            }
            if (!s->head || head_expired(s)) continue; /* the loop's top fails expired requests */
        }
        /* Take the head and, when batching, the compatible requests behind it. */
        int64_t cap = batching ? batch_cap(&s->cfg, gatherable(s)) : 0;
        ib__infer_request *h = s->head, *batch = h, *btail = h;
        s->head = h->next;
        size_t count = 1;
        int64_t items = h->batch > 0 ? h->batch : 1;
        if (batching) {
            ib__infer_request **link = &s->head;
            while (*link) {
                ib__infer_request *r = *link;
                if (compatible(h, r) && items + r->batch <= cap) {
                    *link = r->next;
                    btail->next = r;
                    btail = r;
                    items += r->batch;
                    count++;
                } else {
                    link = &r->next;
                }
            }
        }
        btail->next = NULL;
        s->tail = NULL;
        for (ib__infer_request *r = s->head; r; r = r->next) s->tail = r;
        s->queued -= count;
        /* Requests whose client left are dropped here, at the last moment before they
         * would cost an execution (checking the whole queue on every wake-up would cost
         * a system call per queued request). */
        ib__infer_request *dropped = NULL;
        for (ib__infer_request **link = &batch; *link;) {
            ib__infer_request *r = *link;
            if (r->wanted && !r->wanted(r, r->user)) {
                *link = r->next;
                r->next = dropped;
                dropped = r;
                count--;
                items -= r->batch > 0 ? r->batch : 1;
                uint64_t now = ib__now_ns();
                s->stats.pending--;
                s->stats.request_failure++;
                s->stats.cancelled++;
                s->stats.request_duration_us += (now - r->t_enqueue_ns) / 1000u;
                s->stats.queue_duration_us += (now - r->t_enqueue_ns) / 1000u;
            } else {
                link = &r->next;
            }
        }
        if (!batch) {
            pthread_mutex_unlock(&s->lock);
            finish_cancelled(dropped);
            pthread_mutex_lock(&s->lock);
            continue;
        }
        ib_session *session = s->session;
        unsigned gen = s->gen & 1u;
        s->running[gen]++;
        pthread_mutex_unlock(&s->lock);
        finish_cancelled(dropped);

        int64_t rows = batching && s->cfg.pad_batches ? padded_batch(&s->cfg, items) : items;
        uint64_t t0 = ib__now_ns();
        for (ib__infer_request *r = batch; r; r = r->next) r->t_start_ns = t0;
        execute(s, session, batch, count, items, rows);
        uint64_t t1 = ib__now_ns();

        pthread_mutex_lock(&s->lock);
        if (--s->running[gen] == 0) pthread_cond_broadcast(&s->idle);
        s->stats.exec_count++;
        s->stats.exec_rows += (uint64_t)rows;
        s->stats.exec_duration_us += (t1 - t0) / 1000u;
        for (ib__infer_request *r = batch; r; r = r->next) {
            r->t_end_ns = t1;
            if (r->status == IB_OK) {
                s->stats.request_success++;
                s->stats.inference_count += (uint64_t)(r->batch > 0 ? r->batch : 1);
            } else {
                s->stats.request_failure++;
            }
            s->stats.request_duration_us += (t1 - r->t_enqueue_ns) / 1000u;
            s->stats.queue_duration_us += (r->t_start_ns - r->t_enqueue_ns) / 1000u;
            s->stats.compute_duration_us += (t1 - t0) / 1000u;
        }
        s->stats.pending -= count;
        pthread_mutex_unlock(&s->lock);
        /* `done` may free the request: read next first. */
        for (ib__infer_request *r = batch, *next; r; r = next) {
            next = r->next;
            r->next = NULL;
            r->done(r, r->user);
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

ib_status ib__sched_create(ib_session *session, const ib__sched_config *cfg, ib__sched **out) {
    if (!session || !cfg || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "sched: NULL argument");
    if (cfg->instances < 1 || cfg->instances > 256)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "sched: %d instances, expected 1..256", cfg->instances);
    ib__sched *s = ib__calloc(1, sizeof *s);
    if (!s) return ib__error(IB_ERR_OUT_OF_MEMORY, "sched: out of memory");
    s->session = session;
    s->cfg = *cfg;
    if (s->cfg.max_queue_size <= 0) s->cfg.max_queue_size = IB__SCHED_DEFAULT_QUEUE;
    if (s->cfg.n_preferred > IB__SCHED_MAX_PREFERRED) s->cfg.n_preferred = IB__SCHED_MAX_PREFERRED;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->idle, NULL);
    pthread_mutex_init(&s->lock, NULL);
    s->threads = ib__calloc((size_t)cfg->instances, sizeof *s->threads);
    if (!s->threads) {
        ib__sched_destroy(s);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "sched: out of memory");
    }
    for (int i = 0; i < cfg->instances; i++) {
        int rc = pthread_create(&s->threads[i], NULL, worker, s);
        if (rc != 0) {
            ib__sched_destroy(s);
            return ib__error(IB_ERR_RUNTIME, "sched: cannot start instance thread %d: %s", i, strerror(rc));
        }
        s->n_threads++;
    }
    *out = s;
    return IB_OK;
}

int ib__sched_submit(ib__sched *s, ib__infer_request *req) {
    pthread_mutex_lock(&s->lock);
    if (s->stopping) {
        pthread_mutex_unlock(&s->lock);
        return IB__SCHED_STOPPED;
    }
    if ((int64_t)s->queued >= s->cfg.max_queue_size) {
        s->stats.request_failure++;
        pthread_mutex_unlock(&s->lock);
        return IB__SCHED_FULL;
    }
    req->next = NULL;
    req->status = IB_OK;
    req->timed_out = false;
    req->cancelled = false;
    req->error[0] = 0;
    req->t_enqueue_ns = ib__now_ns();
    if (s->tail) s->tail->next = req;
    else s->head = req;
    s->tail = req;
    s->queued++;
    s->stats.pending++;
    /* Broadcast: a worker gathering a batch waits for company as well as idle ones. */
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return IB__SCHED_QUEUED;
}

void ib__sched_count_failure(ib__sched *s, uint64_t duration_us) {
    pthread_mutex_lock(&s->lock);
    s->stats.request_failure++;
    s->stats.request_duration_us += duration_us;
    pthread_mutex_unlock(&s->lock);
}

void ib__sched_stats_get(ib__sched *s, ib__sched_stats *out) {
    pthread_mutex_lock(&s->lock);
    *out = s->stats;
    out->session_swaps = s->swaps;
    pthread_mutex_unlock(&s->lock);
}

ib_session *ib__sched_swap_session(ib__sched *s, ib_session *session) {
    pthread_mutex_lock(&s->lock);
    ib_session *old = s->session;
    unsigned prev = s->gen & 1u;
    /* Requests taken from now on run the new session; none waits or is dropped. */
    s->session = session;
    s->gen++;
    s->swaps++;
    while (s->running[prev] > 0) pthread_cond_wait(&s->idle, &s->lock);
    pthread_mutex_unlock(&s->lock);
    return old;
}

void ib__sched_destroy(ib__sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->n_threads; i++) pthread_join(s->threads[i], NULL);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    pthread_cond_destroy(&s->idle);
    ib__free(s->threads);
    ib__free(s);
}
