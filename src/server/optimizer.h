/* Progressive optimisation of a served model version: it goes live on the reference
 * executor at once, while a background thread builds the compiled session, warms it for
 * every batch size the scheduler runs, and swaps it in without failing a request. */
#ifndef IB_SERVER_OPTIMIZER_H
#define IB_SERVER_OPTIMIZER_H

#include "server/repository.h"

typedef enum {
    IB__OPTIMIZE_NONE = 0, /* reference only (--reference), or not started */
    IB__OPTIMIZE_RUNNING,  /* compiling or warming in the background */
    IB__OPTIMIZE_SWAPPED,  /* the compiled session serves */
    IB__OPTIMIZE_KEPT,     /* compiling would not pay off (the compiled session chose the reference ops) */
    IB__OPTIMIZE_FAILED    /* the compile or its warm-up failed; the reference session serves on */
} ib__optimize_state;

/* Runs `session` once per batch size in ib__sched_batch_sizes(&m->sched_cfg) on zero
 * inputs, so those compiles happen now rather than on a request's path. Stops early
 * (IB_OK) when m->optimize_cancel is set. */
ib_status ib__optimizer_warm_up(ib__served_model *m, ib_session *session);
/* Records in m the cache hits and misses of the session's executables, for /metrics. */
void ib__optimizer_note_cache(ib__served_model *m, const ib_session *session);
/* Starts the background thread: builds a session with `options`, warms it, and when it
 * runs compiled code, swaps it in through the scheduler. m->sched must exist. */
ib_status ib__optimizer_start(ib__served_model *m, const ib_session_options *options);
/* For a version being destroyed: asks the thread to stop at its next step. Returns true
 * when the thread is still running (a compile cannot be interrupted): it then owns the
 * version and calls m->orphaned(m) when it ends, so neither an unload nor the HTTP thread
 * releasing the last reference waits for a compile. Returns false when no thread runs
 * (joined): the caller destroys the version. */
bool ib__optimizer_abandon(ib__served_model *m);
/* "none", "running", "swapped", "kept", "failed". */
const char *ib__optimize_state_name(int state);

#endif /* IB_SERVER_OPTIMIZER_H */
