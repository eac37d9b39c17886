/* One batch of tuning candidates as the machine that runs them sees it: the kernel's
 * arguments (sizes, which are weights), how to check and time it, and the candidates
 * to run. The same job runs in a forked child on this machine or in a measurement agent
 * on another one (`inferbooster-agent`, over a pipe: under qemu, or ssh to a board),
 * which is why it holds no plan, only plain data, and travels in a small wire format.
 *
 * Results come back as text lines, whichever way the job ran:
 *   ref ok MS | ref fail NOTE      the default knobs' kernel (the baseline, checked first)
 *   start I                        candidate I is running (a crash or hang is I's fault)
 *   res I ok MS | res I fail NOTE  its median time, or why it failed
 * Needs only libc, libdl and the thread pool: it builds into the deployable runtime. */
#ifndef IB_TUNE_MEASURE_JOB_H
#define IB_TUNE_MEASURE_JOB_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/core.h"
#include "inferbooster/kernel_abi.h"

#define IB_MEASURE_MAX_ARGS 48 /* a plan kernel: inputs, outputs, epilogue operands */
#define IB_MEASURE_MAX_CANDS 4096
#define IB_MEASURE_NOTE_MAX 120
#define IB_MEASURE_REF (-1)

typedef enum ib__measure_arg_kind {
    IB_MEASURE_ARG_NONE = 0,   /* a NULL argument */
    IB_MEASURE_ARG_FRESH = 1,  /* allocated, random float32 (zeros for other dtypes) */
    IB_MEASURE_ARG_WEIGHT = 2, /* the plan's packed weights: `data` */
} ib__measure_arg_kind;

typedef struct ib__measure_arg {
    int32_t kind;
    int32_t is_float;   /* fresh: fill with random floats */
    int32_t activation; /* fresh input: read back before each timed run, as in a model */
    uint64_t nbytes;
    const void *data;   /* weights (nbytes) */
} ib__measure_arg;

typedef struct ib__measure_job {
    int32_t threads;      /* 0: the CPUs the measuring process may use */
    int32_t repeats;      /* timed runs per candidate (at least 3) */
    int32_t priority;     /* raise the measuring process's priority where allowed */
    uint64_t flush_bytes; /* written between timed runs to push the weights out of L2 */
    int32_t n_args;
    ib__measure_arg args[IB_MEASURE_MAX_ARGS];
    /* The output checked against the default knobs' (args[out_arg], float32): its
     * channels, spatial size and NCHWc block (0: plain) say which lanes are padding. */
    int32_t out_arg;
    int64_t out_channels, out_hw, out_block;
    int32_t n_cands;
    const int32_t *cands; /* candidate indices, in the order to run them */
} ib__measure_job;

/* Loads the shared object at `so` (entry points tune_entry_0 and tune_entry_1, the
 * candidates' index parity picking one), runs the default knobs' kernel then each
 * candidate, and writes the result lines to `out` (flushed after each). Returns when
 * done; a candidate that crashes or hangs takes the process with it (by design: the
 * caller restarts after it). */
void ib__measure_job_run(const ib__measure_job *job, const char *so, FILE *out);

/* One line of what ib__measure_job_run writes (read back by the tuner from a child or an
 * agent, whose output it does not trust). */
typedef struct ib__measure_result {
    int32_t idx;  /* candidate, or IB_MEASURE_REF */
    int32_t kind; /* 0: starting idx, 1: result of idx */
    bool ok;
    double ms;
    char note[IB_MEASURE_NOTE_MAX];
} ib__measure_result;
/* Parses a NUL-terminated line without its newline; false for anything else (an
 * agent's own chatter, ignored). */
bool ib__measure_result_parse(const char *line, ib__measure_result *m);

/* The wire format: a text header, then the shared object's bytes, then the weights of
 * the WEIGHT arguments in order. Writes everything to fd. */
ib_status ib__measure_job_send(const ib__measure_job *job, const void *so_bytes, size_t so_len,
                               int fd);

/* Reads a job sent by ib__measure_job_send; the shared object is written to so_path.
 * Bounded and checked: a malformed or hostile stream is an error, never a crash. On
 * success *job's weights and candidates live in *storage (ib__aligned_free it). */
ib_status ib__measure_job_receive(FILE *in, const char *so_path, ib__measure_job *job,
                                  void **storage);

#endif /* IB_TUNE_MEASURE_JOB_H */
