/* Background optimisation of a served version: build the compiled session off the
 * request path, warm it for the scheduler's batch sizes (each new batch size compiles),
 * then hand it to the scheduler, which swaps it in between executions. */
#include "server/optimizer.h"

#include <stdio.h>
#include <string.h>

#include "api/compiled.h"
#include "core/core.h"

enum { HANDOFF_RUNNING = 0, HANDOFF_FINISHED, HANDOFF_ORPHANED };

const char *ib__optimize_state_name(int state) {
    switch (state) {
    case IB__OPTIMIZE_RUNNING: return "running";
    case IB__OPTIMIZE_SWAPPED: return "swapped";
    case IB__OPTIMIZE_KEPT: return "kept";
    case IB__OPTIMIZE_FAILED: return "failed";
    default: return "none";
    }
}

/* One run on zero inputs of batch `batch` (dim 0 when the model batches; other variable
 * dims are 1). */
static ib_status warm_run(ib__served_model *m, ib_session *session, int64_t batch) {
    size_t ni = ib_model_input_count(m->model), no = ib_model_output_count(m->model);
    ib_tensor *in = ib__calloc(ni ? ni : 1, sizeof *in), *out = ib__calloc(no ? no : 1, sizeof *out);
    const char **names = ib__calloc(ni ? ni : 1, sizeof *names);
    ib_status st = in && out && names ? IB_OK : ib__error(IB_ERR_OUT_OF_MEMORY, "warm-up: out of memory");
    size_t made = 0;
    for (size_t i = 0; st == IB_OK && i < ni; i++) {
        ib_value_info info;
        st = ib_model_input_info(m->model, i, &info);
        if (st != IB_OK) break;
        if (info.rank < 0) {
            st = ib__error(IB_ERR_UNSUPPORTED, "warm-up: input '%s' has no known rank", info.name);
            break;
        }
        int64_t dims[IB_MAX_RANK];
        for (int32_t d = 0; d < info.rank; d++)
            dims[d] = d == 0 && m->cfg.max_batch_size > 0 ? batch : info.shape[d] < 0 ? 1 : info.shape[d];
        st = ib__tensor_alloc(&in[i], info.dtype, info.rank, dims);
        if (st != IB_OK) break;
        memset(in[i].data, 0, in[i].nbytes);
        names[i] = info.name;
        made++;
    }
    if (st == IB_OK) st = ib_session_run(session, ni, names, in, no, NULL, out);
    for (size_t o = 0; out && o < no; o++) ib_tensor_release(&out[o]);
    for (size_t i = 0; i < made; i++) ib_tensor_release(&in[i]);
    ib__free(in);
    ib__free(out);
    ib__free(names);
    return st;
}

ib_status ib__optimizer_warm_up(ib__served_model *m, ib_session *session) {
    int64_t sizes[IB__SCHED_MAX_PREFERRED + 2];
    size_t n = m->cfg.max_batch_size > 0 ? ib__sched_batch_sizes(&m->sched_cfg, sizes, sizeof sizes / sizeof sizes[0])
                                         : (sizes[0] = 0, 1);
    for (size_t i = 0; i < n && !atomic_load(&m->optimize_cancel); i++) {
        ib_status st = warm_run(m, session, sizes[i]);
        if (st != IB_OK) return ib__error_prefix(st, "warm-up at batch %lld: ", (long long)sizes[i]);
    }
    return IB_OK;
}

void ib__optimizer_note_cache(ib__served_model *m, const ib_session *session) {
    uint64_t hits = 0, misses = 0;
    ib__session_cache_counts(session, &hits, &misses);
    atomic_store(&m->cache_hits, hits);
    atomic_store(&m->cache_misses, misses);
}

typedef struct optimize_job {
    ib__served_model *m;
    ib_session_options options;
} optimize_job;

static void *optimize_main(void *arg) {
    optimize_job *job = arg;
    ib__served_model *m = job->m;
    uint64_t t0 = ib__now_ns();
    ib_session *compiled = NULL;
    ib_status st = ib_session_create(m->model, &job->options, &compiled);
    if (st == IB_OK) st = ib__optimizer_warm_up(m, compiled);
    atomic_store(&m->compile_us, (ib__now_ns() - t0) / 1000u);
    ib__optimizer_note_cache(m, compiled);
    int state;
    if (st != IB_OK) {
        snprintf(m->optimize_note, sizeof m->optimize_note, "%s", ib_last_error());
        fprintf(stderr, "inferbooster serve: model '%s' version %lld stays on the reference executor: %s\n",
                m->name, (long long)m->version, m->optimize_note);
        state = IB__OPTIMIZE_FAILED;
    } else if (atomic_load(&m->optimize_cancel)) {
        state = IB__OPTIMIZE_NONE;
    } else if (strcmp(ib_session_executor(compiled), "compiled") != 0) {
        snprintf(m->optimize_note, sizeof m->optimize_note, "too small to repay compiling");
        state = IB__OPTIMIZE_KEPT;
    } else {
        ib_session *old = ib__sched_swap_session(m->sched, compiled);
        m->session = compiled;
        compiled = old; /* destroyed below: no execution uses it any more */
        atomic_store(&m->executor, "compiled");
        state = IB__OPTIMIZE_SWAPPED;
    }
    ib_session_destroy(compiled);
    atomic_store(&m->optimize_state, state);
    ib__free(job);
    int expected = HANDOFF_RUNNING;
    if (!atomic_compare_exchange_strong(&m->optimizer_handoff, &expected, HANDOFF_FINISHED)) {
        /* Abandoned while running: nobody will join this thread, and it frees the version. */
        pthread_detach(pthread_self());
        m->optimizer_started = false;
        m->orphaned(m);
    }
    return NULL;
}

ib_status ib__optimizer_start(ib__served_model *m, const ib_session_options *options) {
    optimize_job *job = ib__calloc(1, sizeof *job);
    if (!job) return ib__error(IB_ERR_OUT_OF_MEMORY, "optimizer: out of memory");
    job->m = m;
    job->options = *options;
    atomic_store(&m->optimizer_handoff, HANDOFF_RUNNING);
    atomic_store(&m->optimize_state, IB__OPTIMIZE_RUNNING);
    int rc = pthread_create(&m->optimizer, NULL, optimize_main, job);
    if (rc != 0) {
        ib__free(job);
        atomic_store(&m->optimize_state, IB__OPTIMIZE_NONE);
        return ib__error(IB_ERR_RUNTIME, "optimizer: cannot start a thread: %s", strerror(rc));
    }
    m->optimizer_started = true;
    return IB_OK;
}

bool ib__optimizer_abandon(ib__served_model *m) {
    if (!m->optimizer_started) return false;
    atomic_store(&m->optimize_cancel, true);
    int expected = HANDOFF_RUNNING;
    if (atomic_compare_exchange_strong(&m->optimizer_handoff, &expected, HANDOFF_ORPHANED)) return true;
    pthread_join(m->optimizer, NULL); /* it has finished */
    m->optimizer_started = false;
    return false;
}
