/* Per-model-version request scheduler: a bounded queue, dynamic batching (requests of
 * compatible shapes concatenated along dim 0, run once, split back) and a pool of
 * instance threads sharing one session; counts what Triton's metrics report. */
#ifndef IB_SCHED_SCHEDULER_H
#define IB_SCHED_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inferbooster/inferbooster.h"

#define IB__SCHED_MAX_PREFERRED 16
#define IB__SCHED_DEFAULT_QUEUE 1024

typedef struct ib__infer_request ib__infer_request;
/* Called once per request from a scheduler thread when it has finished (status set). */
typedef void (*ib__request_done_fn)(ib__infer_request *req, void *user);
/* Optional: false when nobody waits for the answer any more (the client hung up), so a
 * queued request is dropped instead of run. Called from a scheduler thread. */
typedef bool (*ib__request_wanted_fn)(const ib__infer_request *req, void *user);

struct ib__infer_request {
    /* Filled by the submitter; the scheduler borrows them until `done` runs. */
    size_t n_inputs;
    const char *const *input_names;
    const ib_tensor *inputs;
    size_t n_outputs; /* > 0; names explicit */
    const char *const *output_names;
    ib_tensor *outputs; /* n_outputs slots, zeroed; on success each owns its data */
    int64_t batch;      /* dim 0 of every input when the model batches, else 0 */
    ib__request_done_fn done;
    ib__request_wanted_fn wanted; /* NULL: always wanted */
    void *user;
    uint64_t timeout_us; /* 0: none; a request still queued after this fails (timed_out) */
    /* Filled by the scheduler. */
    ib_status status;
    bool timed_out;
    bool cancelled; /* dropped from the queue: `wanted` said no */
    char error[512];
    uint64_t t_enqueue_ns, t_start_ns, t_end_ns;
    ib__infer_request *next;
};

typedef struct ib__sched_config {
    int64_t max_batch_size; /* 0: no batching */
    bool dynamic_batching;
    size_t n_preferred;
    int64_t preferred_batch_size[IB__SCHED_MAX_PREFERRED];
    int64_t max_queue_delay_us;
    int64_t max_queue_size; /* 0: IB__SCHED_DEFAULT_QUEUE */
    int instances;          /* worker threads; >= 1 */
    bool pad_batches;       /* pad gathered batches to ib__sched_batch_sizes (compiled sessions) */
} ib__sched_config;

/* Counters since creation (Triton's metric meanings; durations in microseconds). */
typedef struct ib__sched_stats {
    uint64_t request_success, request_failure;
    uint64_t inference_count; /* items: sum of batch sizes (1 per unbatched request) */
    uint64_t exec_count;      /* model executions */
    uint64_t request_duration_us, queue_duration_us, compute_duration_us;
    uint64_t pending;
    uint64_t session_swaps; /* ib__sched_swap_session calls */
    uint64_t cancelled;     /* requests dropped unrun because their client left (also failures) */
    uint64_t exec_rows;     /* batch rows executed, padding included (exec_rows - inference_count: padding) */
    uint64_t exec_duration_us; /* executions' wall time, once per execution (busy time of the instances) */
} ib__sched_stats;

typedef struct ib__sched ib__sched;

enum { IB__SCHED_QUEUED = 0, IB__SCHED_FULL = 1, IB__SCHED_STOPPED = 2 };

/* The session is borrowed and must outlive the scheduler. */
ib_status ib__sched_create(ib_session *session, const ib__sched_config *cfg, ib__sched **out);
/* Queues a request (IB__SCHED_QUEUED: `done` will run exactly once), or refuses it
 * (FULL / STOPPED: `done` is not called). */
int ib__sched_submit(ib__sched *s, ib__infer_request *req);
/* A request refused before it reached the queue (bad input), for the failure counter. */
void ib__sched_count_failure(ib__sched *s, uint64_t duration_us);
void ib__sched_stats_get(ib__sched *s, ib__sched_stats *out);
/* Replaces the session (e.g. the reference one by a compiled one): executions that start
 * after the call use `session`; returns the previous one once no execution uses it any
 * more, for the caller to destroy. Both must take the same inputs and give the same outputs. */
ib_session *ib__sched_swap_session(ib__sched *s, ib_session *session);
/* The batch sizes executions run with (ascending; at most cap): 1, and with dynamic
 * batching the preferred sizes and max_batch_size, to which gathered batches are padded.
 * Warming a session for these keeps compiles off the request path. */
size_t ib__sched_batch_sizes(const ib__sched_config *cfg, int64_t *out, size_t cap);
/* Runs what is queued, then stops the threads. NULL is fine. */
void ib__sched_destroy(ib__sched *s);
uint64_t ib__now_ns(void);

#endif /* IB_SCHED_SCHEDULER_H */
