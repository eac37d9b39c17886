/* The auto-tuner's internal interface: workloads (tasks) of a plan, the tuning database,
 * search spaces over a template's knobs, the measurement harness and the search driver.
 * The compiler reaches it only through an ib__knob_source (passes/compile_plan.h). */
#ifndef IB_TUNE_TUNE_H
#define IB_TUNE_TUNE_H

#include <stdio.h>

#include "passes/compile_plan.h"

/* ---- Workloads ------------------------------------------------------------------------ */
#define IB_TUNE_KEY_MAX 1024
#define IB_TUNE_TARGET_MAX 64
#define IB_TUNE_HEX 64

/* "x86-64-v4/2c": the target name and the cores its defaults are planned for. */
void ib__tune_target_key(const ib__target *t, char out[IB_TUNE_TARGET_MAX]);

/* The canonical workload key of template kernel k as the layout pass commits it
 * (template, anchor ops and attributes, every argument's role, dtype, dims, layout,
 * epilogue signature). Stable across models and runs; weight values are not in it.
 * False when k is not tunable (no template, no knobs_valid, no knobs, or too long). */
bool ib__tune_workload_key(const ib__plan *plan, const ib__pkernel *k, char *out, size_t cap);
/* First 16 hex digits of SHA-256(key). */
void ib__tune_key_hash(const char *key, char out[17]);

typedef struct ib__tune_task {
    char key[IB_TUNE_KEY_MAX];
    char hash[17];
    const ib__kernel_template *tmpl;
    int32_t kernel;      /* a representative kernel: index into the plan's kernels */
    int32_t count;       /* occurrences in the plan */
    double flops;        /* of one occurrence */
    ib__knobs defaults;  /* the template's default knobs for it */
    char label[96];      /* "conv2d_nchwc 1x64x56x56 k3x3 s1" style, for people */
} ib__tune_task;

typedef struct ib__tune_taskset {
    ib__plan *plan;      /* built with default knobs; owned */
    char **kernel_keys;  /* per plan kernel: its workload key, NULL when not tunable */
    int32_t n, cap;
    ib__tune_task *tasks; /* de-duplicated, by weight (count x flops) descending */
} ib__tune_taskset;

/* Builds the plan of graph for (target, batch) with default knobs and extracts its
 * tunable workloads. */
ib_status ib__tune_extract(const ib__graph *graph, const ib__target *target, int32_t batch,
                           ib__tune_taskset **out);
void ib__tune_taskset_destroy(ib__tune_taskset *ts);

/* ---- Tuning database ------------------------------------------------------------------ */
typedef struct ib__tune_record {
    char *key;                       /* workload key (ib__malloc'ed) */
    char target[IB_TUNE_TARGET_MAX];
    char tmpl[32];
    int32_t n_knobs;
    char knob_name[IB_MAX_KNOBS][24];
    int64_t knob_value[IB_MAX_KNOBS];
    bool ok;                         /* false: the candidate failed (note says why) */
    bool in_model;                   /* ms is the kernel's time inside runs of the whole model
                                        (the in-model check), not of the kernel alone */
    double ms;                       /* median latency of one run */
    double ref_ms;                   /* the default knobs' median in the same process just
                                        before (the batch's reference; 0: not known) */
    double gflops;
    double when;                     /* seconds since the epoch */
    char note[64];
} ib__tune_record;

typedef struct ib__tune_db ib__tune_db;

/* <cache dir>/tuning.jsonl, the cache's default directory rule (INFERBOOSTER_CACHE_DIR,
 * else $XDG_CACHE_HOME/inferbooster, else $HOME/.cache/inferbooster). ib__free it. */
ib_status ib__tune_db_default_path(char **out);
/* Opens (reading every complete line; a torn or foreign line is skipped) the database at
 * path; a missing file is an empty database, created on the first append. */
ib_status ib__tune_db_open(const char *path, ib__tune_db **out);
void ib__tune_db_close(ib__tune_db *db);
const char *ib__tune_db_path(const ib__tune_db *db);
int32_t ib__tune_db_size(const ib__tune_db *db);
const ib__tune_record *ib__tune_db_at(const ib__tune_db *db, int32_t i);
/* Appends r as one JSON line: one write() on an O_APPEND descriptor, then fsync. */
ib_status ib__tune_db_append(ib__tune_db *db, const ib__tune_record *r);
/* The fastest successful kernel-alone record of (target, key), or NULL: what the search
 * compares its measurements with. */
const ib__tune_record *ib__tune_db_best(const ib__tune_db *db, const char *target,
                                        const char *key);
/* The record a compile applies: the fastest in-model record of (target, key) when it has
 * any (times in the model beat times of the kernel alone), else the fastest kernel-alone
 * one. With `names`, only records naming exactly those knobs count: a record without a
 * knob the template has since gained was timed with the code of before that knob. */
const ib__tune_record *ib__tune_db_pick(const ib__tune_db *db, const char *target,
                                        const char *key, const ib__knobs *names);
/* Records of (target, key): all, and how many succeeded. */
void ib__tune_db_count(const ib__tune_db *db, const char *target, const char *key,
                       int32_t *n_all, int32_t *n_ok);
/* True when (target, key, knobs) was measured already (successfully or not). */
bool ib__tune_db_has(const ib__tune_db *db, const char *target, const char *key,
                     const ib__knobs *knobs);
/* Writes every record to path (atomically: temp file, fsync, rename). */
ib_status ib__tune_db_export(const ib__tune_db *db, const char *path);
/* Appends the records of the database file at path that this one lacks; *added counts. */
ib_status ib__tune_db_import(ib__tune_db *db, const char *path, int32_t *added);
/* One record as its JSON line (with the newline); for the tests. */
ib_status ib__tune_record_json(const ib__tune_record *r, ib__sb *out);
/* Parses one JSON line into r (r->key ib__malloc'ed); false for anything else. */
bool ib__tune_record_parse(const char *line, size_t len, ib__tune_record *r);
void ib__tune_record_set_knobs(ib__tune_record *r, const ib__knobs *k);
/* A successful record's time relative to its batch's reference, ms / ref_ms; its ms when
 * it has no reference. This VM's speed drifts by up to 40% over minutes (the same knobs
 * read 0.32 and 0.53 ms within the hour), so absolute times from different batches rank
 * the moments they ran in more than the knobs; the ratio to the defaults timed next to
 * each cancels the drift. */
double ib__tune_record_relative(const ib__tune_record *r);
/* Whether a ran faster than b, two successful records of one workload: by their relative
 * times when both have a reference, else by their times. */
bool ib__tune_record_faster(const ib__tune_record *a, const ib__tune_record *b);

/* ---- Tuned knobs for the compiler ---------------------------------------------------- */
/* A knob source that applies each workload's best record (when its template's
 * knobs_valid accepts it) and remembers which records it used. */
typedef struct ib__tune_knobs ib__tune_knobs;
/* db may be NULL (nothing applied; keys still recorded per kernel). */
ib_status ib__tune_knobs_create(const ib__tune_db *db, const ib__target *target,
                                ib__tune_knobs **out);
void ib__tune_knobs_destroy(ib__tune_knobs *tk);
const ib__knob_source *ib__tune_knobs_source(ib__tune_knobs *tk);
/* SHA-256 hex of the records applied so far ("" when none): what a compile's cache key
 * needs so that it changes when tuning changes the knobs. */
void ib__tune_knobs_digest(const ib__tune_knobs *tk, char out[IB_TUNE_HEX + 1]);
int32_t ib__tune_knobs_applied(const ib__tune_knobs *tk);
/* The workload key recorded for kernel index (NULL when not tunable). */
const char *ib__tune_knobs_key_of(const ib__tune_knobs *tk, int32_t index);

/* Both below take the tuning database a compile uses as `db`: a path, "off" (or "none")
 * for none, or NULL for INFERBOOSTER_TUNING_DB, else <cache dir>/tuning.jsonl when it
 * exists.
 *
 * A digest that a compile's cache key can take before the plan is built: SHA-256 hex over
 * the best record of every workload of `target` in `db`; "" when there is none. It
 * changes whenever tuning changes what a compile for this target may pick (coarser than
 * the per-plan ib__tune_knobs_digest: tuning one model also re-keys others on the same
 * target). */
ib_status ib__tune_compile_digest(const ib__target *target, const char *db,
                                  char out[IB_TUNE_HEX + 1]);

/* The knob source compile paths attach: the best records of `db`. *out NULL (IB_OK) when
 * there is none. */
ib_status ib__tune_compile_knobs(const ib__target *target, const char *db, ib__tune_knobs **out);

/* ---- Search space ------------------------------------------------------------------- */
typedef struct ib__tune_space {
    int32_t n;                           /* knobs */
    const char *name[IB_MAX_KNOBS];
    int32_t n_vals[IB_MAX_KNOBS];
    int64_t vals[IB_MAX_KNOBS][48];      /* candidate values, ascending */
    int64_t dflt[IB_MAX_KNOBS];
} ib__tune_space;

/* Candidate values of each knob of task's defaults: booleans 0/1, ranges and powers of
 * two around the default, fixed where packing depends on it (gemm's nr). */
void ib__tune_space_init(const ib__tune_task *task, ib__tune_space *sp);
/* Total configurations before pruning (saturating). */
double ib__tune_space_size(const ib__tune_space *sp);
/* True when knobs pass the template's knobs_valid for the task's kernel. */
bool ib__tune_space_valid(const ib__plan *plan, const ib__tune_task *task, const ib__knobs *k);

/* ---- Measurement --------------------------------------------------------------------- */
typedef struct ib__tune_result {
    bool ok;
    double ms;     /* median */
    char note[64]; /* why it failed */
} ib__tune_result;

typedef struct ib__tune_measure_opts {
    int32_t threads;     /* 0: the CPUs this process may use */
    int32_t repeats;     /* timed runs per candidate (at least 3) */
    double timeout_s;    /* per candidate, 0: 10 s */
    bool priority;       /* child in its own session at nice -20 (when permitted) */
    /* NULL: measure in a forked child. Else the command (split at spaces, no shell) of a
     * measurement agent for the target, e.g. "qemu-aarch64 -L /usr/aarch64-linux-gnu
     * build-aarch64/inferbooster-agent" or "ssh board inferbooster-agent": each batch
     * is sent to it on its standard input (tune/measure_job.h). */
    const char *agent;
} ib__tune_measure_opts;

/* Compiles n candidate knob sets of plan kernel `kernel` (two compile units, both cores)
 * and runs them in a forked child with a timeout per candidate: each output is checked
 * against the plan's own knobs' (1e-4 relative), then timed (warm-up, repeats, median).
 * A crash, hang, error or mismatch fails that candidate only. IB_OK unless nothing could
 * be measured at all (the reference kernel failed). *ref_ms: the plan's own knobs' median
 * in this batch (the least over the children that ran it). */
ib_status ib__tune_measure(const ib__plan *plan, int32_t kernel, int32_t n,
                           const ib__knobs *cands, const ib__tune_measure_opts *o,
                           ib__tune_result *res, double *ref_ms);

/* ---- Cost model (cost_model.c) ------------------------------------------------------ */
#define IB_TUNE_NKNOBF 16  /* knob values, in the template's knob order */
#define IB_TUNE_NFEAT (IB_TUNE_NKNOBF + 12 + 4)
#define IB_TUNE_CM_ROUNDS 60

/* Features of knobs k for the workload of `key` on target t: the knob values, then loop
 * features derived from the shapes in the key (register use, bytes touched per cache
 * level over its size, vector utilisation, parallel items per core and their balance,
 * arithmetic intensity of the register tile and of the whole loop nest), then the
 * workload's size. Parsed from the key, so records of other models get them too. */
void ib__tune_features(const char *key, const ib__target *t, const ib__knobs *k,
                       float out[IB_TUNE_NFEAT]);

/* Trials per task of a run bounded by its budget only: more than any --trials. */
#define IB_TUNE_TRIALS_UNBOUNDED INT32_MAX

/* ---- Task scheduling (search.c) ------------------------------------------------------ */
/* What one more trial of a task is expected to take off the model's latency (ms per
 * trial), after Ansor's task scheduler: count x (alpha x the recent drop of its best time
 * per trial + (1 - alpha) x an optimistic forward guess, the least of best/trials so far
 * and the distance to half the throughput its template reaches on the run's other tasks).
 * recent_drop_ms over recent_trials: how much its best fell in the last batches (0, 0
 * when unknown); peer_gflops: the best GFLOP/s of the template's other tasks (0: none). */
typedef struct ib__tune_gain_input {
    int32_t count;
    double best_ms;
    int32_t trials;
    double recent_drop_ms;
    int32_t recent_trials;
    double flops;
    double peer_gflops;
} ib__tune_gain_input;
double ib__tune_task_gain(const ib__tune_gain_input *in);

/* Spearman's rank correlation of a and b (ties averaged); NaN when undefined (n < 2 or
 * a constant side). */
double ib__tune_spearman(const double *a, const double *b, int32_t n);

/* An XGBoost ranker (rank:pairwise, one thread): measured points are added with the
 * group of their workload, train() fits a fresh booster on all of them, predict() scores
 * configurations (higher: predicted faster; comparable within one workload only). */
typedef struct ib__tune_cost_model ib__tune_cost_model;
ib_status ib__tune_cm_create(uint64_t seed, ib__tune_cost_model **out);
void ib__tune_cm_destroy(ib__tune_cost_model *m);
/* Drops the points (the trained booster stays until the next train). */
void ib__tune_cm_clear(ib__tune_cost_model *m);
/* Failed measurements (ok false) are left out of training: see cost_model.c. */
ib_status ib__tune_cm_add(ib__tune_cost_model *m, int32_t group, const float *f, bool ok,
                          double ms);
int32_t ib__tune_cm_size(const ib__tune_cost_model *m);
/* IB_ERR_INVALID_ARGUMENT (the previous booster kept) with fewer than 4 points in groups
 * of two or more; other failures are XGBoost's own. */
ib_status ib__tune_cm_train(ib__tune_cost_model *m);
bool ib__tune_cm_ready(const ib__tune_cost_model *m);
/* f: n rows of IB_TUNE_NFEAT. */
ib_status ib__tune_cm_predict(const ib__tune_cost_model *m, int32_t n, const float *f,
                              float *score);

/* ---- Search driver --------------------------------------------------------------------- */
typedef struct ib__tune_options {
    int32_t trials;      /* per task, > 0 */
    double budget_s;     /* overall wall time, 0: unlimited */
    int32_t batch;       /* candidates per measurement batch */
    uint64_t seed;
    ib__tune_measure_opts measure;
    FILE *log;           /* progress lines (NULL: none) */
    FILE *live;          /* a terminal for a live status line rewritten in place (NULL: none) */
    bool cost_model;     /* steer by the XGBoost model once trained (false: random + greedy) */
    double epsilon;      /* random share of a model-steered batch, 0: 0.25 */
} ib__tune_options;

typedef struct ib__tune_summary {
    int32_t trials;        /* measured in this run */
    double default_ms;     /* default knobs' median, the least over this run's batches
                              (each times them next to its candidates), else the database's */
    double best_ms;        /* best record (0: none) */
    int32_t rank_batches;  /* batches the cost model scored before they were measured */
    double rank_corr;      /* their mean Spearman correlation, predicted vs measured (NaN: none) */
    double rank_corr_last; /* the last one's */
    double rank_corr_cv;   /* 5-fold cross-validated Spearman correlation over the task's
                              records (NaN: not measured in this run, under 20 records, or
                              no cost model) */
} ib__tune_summary;

/* Tunes every task of ts, appending each measurement to db; resumes from what db holds.
 * summary: ts->n entries (may be NULL). */
ib_status ib__tune_run(ib__tune_taskset *ts, ib__tune_db *db, const ib__tune_options *o,
                       ib__tune_summary *summary);

/* ---- Tuning curves (tune_plot.c) ------------------------------------------------------ */
/* Writes path as an SVG of ts's tuning curves from db's records for target: per task the
 * best latency so far relative to the first measured, end to end the sum of count x best. */
ib_status ib__tune_plot_svg(const ib__tune_taskset *ts, const ib__tune_db *db, const char *target,
                            const char *path);

#endif /* IB_TUNE_TUNE_H */
