/* The request scheduler on a real session (the example MLP, reference executor): the
 * batch sizes it runs, padded dynamic batches split back row by row, a session swap under
 * running traffic that fails nothing, and queued requests dropped when nobody waits. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "core/core.h"
#include "sched/scheduler.h"
#include "test.h"

#ifndef IB_SOURCE_DIR
#define IB_SOURCE_DIR "."
#endif
#define MLP IB_SOURCE_DIR "/examples/models/mlp/model.onnx"
#define FEATURES 16
#define CLASSES 4

static const char *k_in = "input", *k_out = "probabilities";

typedef struct slot {
    ib__infer_request req;
    ib_tensor in, out;
    float x[FEATURES];
    bool drop; /* `wanted` answers no */
} slot;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_done;

static void on_done(ib__infer_request *req, void *user) {
    (void)req;
    (void)user;
    pthread_mutex_lock(&g_mu);
    g_done++;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

static bool wanted(const ib__infer_request *req, void *user) {
    (void)req;
    return !((slot *)user)->drop;
}

static void wait_done(int n) {
    pthread_mutex_lock(&g_mu);
    while (g_done < n) pthread_cond_wait(&g_cv, &g_mu);
    pthread_mutex_unlock(&g_mu);
}

static void slot_init(slot *s, int seed) {
    memset(s, 0, sizeof *s);
    for (int i = 0; i < FEATURES; i++) s->x[i] = (float)((seed * 7 + i * 3) % 11) / 5.0f - 1.0f;
    s->in = (ib_tensor){IB_DTYPE_FLOAT32, 2, {1, FEATURES}, s->x, sizeof s->x};
    s->req.n_inputs = 1;
    s->req.input_names = &k_in;
    s->req.inputs = &s->in;
    s->req.n_outputs = 1;
    s->req.output_names = &k_out;
    s->req.outputs = &s->out;
    s->req.batch = 1;
    s->req.done = on_done;
    s->req.wanted = wanted;
    s->req.user = s;
}

/* The same row run alone, for comparison. */
static bool matches_alone(ib_session *session, slot *s) {
    ib_tensor out = {0};
    if (ib_session_run(session, 1, &k_in, &s->in, 1, &k_out, &out) != IB_OK) return false;
    bool same = s->out.data && s->out.nbytes == out.nbytes && s->out.shape[0] == 1;
    for (size_t i = 0; same && i < out.nbytes / sizeof(float); i++)
        same = fabsf(((const float *)s->out.data)[i] - ((const float *)out.data)[i]) <= 1e-6f;
    ib_tensor_release(&out);
    return same;
}

static ib_model *g_model;

static ib_session *reference_session(void) {
    ib_session_options o;
    ib_session_options_init(&o);
    o.use_reference = 1;
    o.num_threads = 1;
    ib_session *s = NULL;
    return ib_session_create(g_model, &o, &s) == IB_OK ? s : NULL;
}

TEST(batch_sizes) {
    ib__sched_config c = {0};
    c.max_batch_size = 32;
    c.dynamic_batching = true;
    c.n_preferred = 4;
    int64_t pref[4] = {16, 8, 8, 40};
    memcpy(c.preferred_batch_size, pref, sizeof pref);
    int64_t out[8];
    size_t n = ib__sched_batch_sizes(&c, out, 8);
    CHECK_EQ_INT(n, 4);
    CHECK(n == 4 && out[0] == 1 && out[1] == 8 && out[2] == 16 && out[3] == 32);
    c.dynamic_batching = false;
    CHECK_EQ_INT(ib__sched_batch_sizes(&c, out, 8), 1);
}

/* n single-row requests gathered on a model warmed for 1, 4 and 32 rows; returns the
 * number of executions after checking every row against a run of it alone, and the rows
 * executed (padding included) in *rows. */
static int64_t gather_rows(ib_session *session, int n, int64_t *rows) {
    ib__sched_config c = {0};
    c.max_batch_size = 32;
    c.dynamic_batching = true;
    c.n_preferred = 1;
    c.preferred_batch_size[0] = 4;
    c.max_queue_delay_us = 300000; /* long enough for all to meet */
    c.instances = 1;
    c.pad_batches = true;
    ib__sched *s = NULL;
    CHECK_EQ_INT(ib__sched_create(session, &c, &s), IB_OK);
    if (!s) return -1;
    slot slots[8];
    g_done = 0;
    for (int k = 0; k < n; k++) {
        slot_init(&slots[k], k);
        CHECK_EQ_INT(ib__sched_submit(s, &slots[k].req), IB__SCHED_QUEUED);
    }
    wait_done(n);
    for (int k = 0; k < n; k++) {
        CHECK_EQ_INT(slots[k].req.status, IB_OK);
        CHECK(matches_alone(session, &slots[k]));
        ib_tensor_release(&slots[k].out);
    }
    ib__sched_stats st;
    ib__sched_stats_get(s, &st);
    CHECK_EQ_INT(st.inference_count, n); /* padding rows are not inferences */
    CHECK(st.exec_duration_us <= st.compute_duration_us); /* per execution vs per request */
    *rows = (int64_t)st.exec_rows;
    ib__sched_destroy(s);
    return (int64_t)st.exec_count;
}

TEST(padded_batch_split_back) {
    ib_session *session = reference_session();
    CHECK(session != NULL);
    if (!session) return;
    int64_t rows = 0;
    /* 3 rows: padded to 4 (a quarter wasted at most), one execution. */
    CHECK_EQ_INT(gather_rows(session, 3, &rows), 1);
    CHECK_EQ_INT(rows, 4);
    /* 5 rows: padding to 32 would waste most of it, so 4 run now and 1 after. */
    CHECK_EQ_INT(gather_rows(session, 5, &rows), 2);
    CHECK_EQ_INT(rows, 5);
    ib_session_destroy(session);
}

typedef struct traffic {
    ib__sched *s;
    slot *slots;
    int n;
    atomic_int submitted;
} traffic;

static void *submitter(void *arg) {
    traffic *t = arg;
    for (int k = 0; k < t->n; k++) {
        if (ib__sched_submit(t->s, &t->slots[k].req) != IB__SCHED_QUEUED) break; /* a failure shows in the count */
        atomic_fetch_add(&t->submitted, 1);
    }
    return NULL;
}

TEST(swap_under_traffic) {
    ib_session *first = reference_session(), *second = reference_session();
    CHECK(first && second);
    if (!first || !second) return;
    ib__sched_config c = {0};
    c.max_batch_size = 8;
    c.dynamic_batching = true;
    c.max_queue_delay_us = 100;
    c.instances = 2;
    c.pad_batches = true;
    ib__sched *s = NULL;
    CHECK_EQ_INT(ib__sched_create(first, &c, &s), IB_OK);
    enum { N = 400 };
    slot *slots = calloc(N, sizeof *slots);
    for (int k = 0; k < N; k++) slot_init(&slots[k], k);
    g_done = 0;
    traffic t = {s, slots, N, 0};
    pthread_t th;
    pthread_create(&th, NULL, submitter, &t);
    while (atomic_load(&t.submitted) < N / 2) sched_yield();
    ib_session *old = ib__sched_swap_session(s, second);
    CHECK(old == first);
    /* No execution uses `first` any more: destroying it now is what the optimizer does
     * (under ASan, a worker still inside it would be a use-after-free). */
    ib_session_destroy(first);
    pthread_join(th, NULL);
    wait_done(N);
    int ok = 0;
    for (int k = 0; k < N; k++) {
        ok += slots[k].req.status == IB_OK && matches_alone(second, &slots[k]);
        ib_tensor_release(&slots[k].out);
    }
    CHECK_EQ_INT(ok, N);
    ib__sched_stats st;
    ib__sched_stats_get(s, &st);
    CHECK_EQ_INT(st.session_swaps, 1);
    CHECK_EQ_INT(st.request_failure, 0);
    ib__sched_destroy(s);
    ib_session_destroy(second);
    free(slots);
}

TEST(unwanted_requests_dropped) {
    ib_session *session = reference_session();
    CHECK(session != NULL);
    if (!session) return;
    ib__sched_config c = {0};
    c.instances = 1;
    ib__sched *s = NULL;
    CHECK_EQ_INT(ib__sched_create(session, &c, &s), IB_OK);
    slot slots[2];
    g_done = 0;
    for (int k = 0; k < 2; k++) slot_init(&slots[k], k);
    slots[0].drop = true;
    CHECK_EQ_INT(ib__sched_submit(s, &slots[0].req), IB__SCHED_QUEUED);
    CHECK_EQ_INT(ib__sched_submit(s, &slots[1].req), IB__SCHED_QUEUED);
    wait_done(2);
    CHECK(slots[0].req.cancelled && slots[0].req.status != IB_OK && slots[0].out.data == NULL);
    CHECK(!slots[1].req.cancelled && slots[1].req.status == IB_OK);
    ib_tensor_release(&slots[1].out);
    ib__sched_stats st;
    ib__sched_stats_get(s, &st);
    CHECK_EQ_INT(st.cancelled, 1);
    CHECK_EQ_INT(st.exec_count, 1);
    CHECK_EQ_INT(st.request_failure, 1);
    ib__sched_destroy(s);
    ib_session_destroy(session);
}

int main(void) {
    if (ib_model_load_file(MLP, &g_model) != IB_OK) {
        fprintf(stderr, "%s: %s\n", MLP, ib_last_error());
        return 1;
    }
    RUN(batch_sizes);
    RUN(padded_batch_split_back);
    RUN(swap_under_traffic);
    RUN(unwanted_requests_dropped);
    ib_model_destroy(g_model);
    TEST_SUMMARY();
}
