/* tune's in-model check: the model compiled with each task's best kernel-alone record
 * and with the default knobs, the two run alternately with per-step timing; every task
 * whose best differs from its defaults then gets an in-model record for both knob sets,
 * and compiles apply whichever ran faster inside the model (ib__tune_db_pick).
 *
 * Why: a kernel timed alone, even with its weights evicted and its input spread over the
 * cores' caches as the kernel before would leave it, meets the memory system differently
 * than inside the model, and the ranking of two close schedules can flip there (ResNet-50:
 * a 1x1 conv's winner alone, 0.25 against 0.30 ms, ran 0.36 against 0.29 ms in the model,
 * and the tuned model was 6% slower than the untuned one). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "runtime/runtime.h"
#include "tune/tune.h"
#include "cli/tune_check.h"

static bool same_as_defaults(const ib__tune_record *r, const ib__knobs *d) {
    for (int32_t i = 0; i < r->n_knobs; i++)
        for (int32_t j = 0; j < d->n; j++)
            if (strcmp(r->knob_name[i], d->name[j]) == 0 && r->knob_value[i] != d->value[j])
                return false;
    return true;
}

/* Creates a session on model compiled with tuning database db ("off": the defaults). Both
 * compiles bypass the compiled-model cache: the tuned one's records are a temporary
 * file's (no later compile would hit the entry), and the two must be made the same way -
 * a fresh artifact against a cached one ran 3-10% slower step by step with identical
 * code. */
static ib_status session_with(const ib_model *model, const char *db, int32_t threads,
                              ib_session **out) {
    ib_session_options o;
    ib_session_options_init(&o);
    o.num_threads = threads;
    o.use_reference = -1;
    o.no_cache = 1;
    o.tuning_db = db;
    return ib_session_create(model, &o, out);
}

/* Writes the records cand[t] with use[t] (use NULL: every one with a key) to a new
 * temporary database file; *path (cap bytes) names it (empty after a failure). */
static ib_status write_db(const ib__tune_record *cand, const bool *use, int32_t n, char *path,
                          size_t cap) {
    snprintf(path, cap, "%s/ib_tune_check.XXXXXX", ib__tmp_dir());
    int fd = mkstemp(path);
    if (fd < 0) {
        path[0] = '\0';
        return ib__error(IB_ERR_IO, "tune: cannot create a file in %s", ib__tmp_dir());
    }
    ib_status st = IB_OK;
    ib__sb sb;
    ib__sb_init(&sb);
    for (int32_t t = 0; t < n && st == IB_OK; t++)
        if (cand[t].key && (!use || use[t])) st = ib__tune_record_json(&cand[t], &sb);
    if (st == IB_OK && write(fd, sb.data, sb.len) != (ssize_t)sb.len)
        st = ib__error(IB_ERR_IO, "tune: cannot write %s", path);
    close(fd);
    ib__sb_free(&sb);
    if (st) {
        unlink(path);
        path[0] = '\0';
    }
    return st;
}

/* Runs sess[0] and sess[1] in alternating rounds in ABBA order, each round 3 untimed runs
 * then RUNS timed ones: both see the same moments of a machine whose speed drifts, neither
 * always goes first. prof (NULL: none) gets each session's per-step times; e2e_ms each
 * session's median over the rounds of a round's mean wall time per run. */
enum { RUNS = 20, MAX_ROUNDS = 64 };
static ib_status abba(ib_session *sess[2], const ib__cli_io *io, int32_t rounds,
                      ib__rt_profile *prof, double e2e_ms[2]) {
    double wall[2][MAX_ROUNDS];
    if (rounds > MAX_ROUNDS) rounds = MAX_ROUNDS;
    ib_status st = IB_OK;
    for (int32_t r = 0; r < rounds && st == IB_OK; r++)
        for (int half = 0; half < 2 && st == IB_OK; half++) {
            const int v = (r & 1) ? 1 - half : half;
            for (int w = 0; w < 3 && st == IB_OK; w++)
                st = ib_session_run(sess[v], io->n_in, io->in_names, io->in, io->n_out,
                                    io->out_names, io->out);
            if (prof) ib__rt_profile_attach(&prof[v]);
            double t0 = ib__now_s();
            for (int i = 0; i < RUNS && st == IB_OK; i++)
                st = ib_session_run(sess[v], io->n_in, io->in_names, io->in, io->n_out,
                                    io->out_names, io->out);
            wall[v][r] = (ib__now_s() - t0) * 1e3 / RUNS;
            if (prof) ib__rt_profile_attach(NULL);
        }
    for (int v = 0; v < 2 && st == IB_OK; v++) {
        qsort(wall[v], (size_t)rounds, sizeof wall[v][0], ib__cmp_double);
        e2e_ms[v] = rounds > 0 ? wall[v][rounds / 2] : 0;
    }
    return st;
}

ib_status ib__tune_model_check(const ib_model *model, const ib__tune_taskset *ts,
                               ib__tune_db *db, const char *tkey, int64_t batch,
                               int32_t threads, int32_t rounds, FILE *log) {
    const ib__plan *plan = ts->plan;
    /* the candidates: each task's best kernel-alone record, where it is not the defaults
     * (copies: appending moves the database's records; their keys stay where they are) */
    ib__tune_record *cand = ib__calloc((size_t)ts->n + 1, sizeof *cand);
    bool *keep = ib__calloc((size_t)ts->n + 1, sizeof *keep);
    double *ms[2] = {ib__calloc((size_t)ts->n + 1, sizeof(double)),
                     ib__calloc((size_t)ts->n + 1, sizeof(double))};
    ib_session *sess[2] = {NULL, NULL}; /* tuned, defaults */
    ib_session *kept_sess = NULL;
    /* The databases of the tuned sessions, removed only after them: a model with a
     * symbolic batch compiles each batch size when it first runs, which reads the file
     * then (removed at creation, the "tuned" model ran on the defaults). */
    char path[4096] = "", kept_path[4096] = "";
    ib__cli_io io;
    memset(&io, 0, sizeof io);
    ib__rt_profile prof[2];
    memset(prof, 0, sizeof prof);
    ib_status st = IB_OK;
    if (!cand || !keep || !ms[0] || !ms[1]) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
        goto out;
    }
    int32_t n_cand = 0;
    for (int32_t t = 0; t < ts->n; t++) {
        const ib__tune_record *r = ib__tune_db_best(db, tkey, ts->tasks[t].key);
        if (r && !same_as_defaults(r, &ts->tasks[t].defaults)) {
            cand[t] = *r;
            n_cand++;
        }
    }
    if (n_cand == 0) goto out;
    /* a database of just those records, for the tuned compile */
    st = write_db(cand, NULL, ts->n, path, sizeof path);
    if (st == IB_OK) st = session_with(model, path, threads, &sess[0]);
    if (st == IB_OK) st = session_with(model, "off", threads, &sess[1]);
    if (st == IB_OK) st = ib__cli_random_inputs(sess[0], batch, &io);
    for (int v = 0; v < 2 && st == IB_OK; v++) st = ib__rt_profile_init(&prof[v], IB_RT_PROFILE_MAX_STEPS);
    double e2e[2] = {0, 0};
    if (st == IB_OK) st = abba(sess, &io, rounds, prof, e2e);
    /* the steps are the plan's kernels: both compiles must have the task set's plan */
    if (st == IB_OK && (!prof[0].rt || !prof[1].rt || ib__rt_step_count(prof[0].rt) != plan->n_kernels ||
                        ib__rt_step_count(prof[1].rt) != plan->n_kernels)) {
        if (log) fprintf(log, "in-model check skipped: the compiled model's steps are not the "
                              "tuned plan's kernels\n");
        goto out;
    }
    for (int32_t k = 0; k < plan->n_kernels && st == IB_OK; k++) {
        const char *key = ts->kernel_keys[k];
        if (!key) continue;
        for (int32_t t = 0; t < ts->n; t++)
            if (cand[t].key && strcmp(ts->tasks[t].key, key) == 0)
                for (int v = 0; v < 2; v++)
                    ms[v][t] += (double)prof[v].ns[k] / (double)prof[v].runs * 1e-6;
    }
    /* Two compiles of the same knobs, checked this way, differed by 0.6% and 2.2% over the
     * model and by up to 10% on single steps: tuned knobs stay only where they beat the
     * defaults by more than 3% on their steps, */
    const double STEP_MARGIN = 0.03, MODEL_MARGIN = 0.02;
    int32_t kept = 0;
    for (int32_t t = 0; t < ts->n && st == IB_OK; t++) {
        keep[t] = cand[t].key && ms[0][t] > 0 && ms[1][t] > 0 && ms[0][t] < ms[1][t] * (1.0 - STEP_MARGIN);
        kept += keep[t];
    }
    /* and only when the model compiled with the kept ones alone beats the defaults end to
     * end by more than 2%: schedules interact (one's parallel split decides where the next
     * finds its input), and on ResNet-50 step-wise gains on 17 workloads added up to a
     * model 6% slower than the untuned one. The model with every candidate, timed above,
     * is such a set too: when it wins by 2%, all of them stay, step-wise winners or not
     * (MobileNetV2: every tuned workload 3.42 against 3.79 ms, while its 18 step-wise
     * winners alone gave 4.06 against 4.07, and the check used to drop all 32). */
    double kept_ms = e2e[0], dflt_ms = e2e[1]; /* every candidate kept: the rounds above */
    const bool all_won = st == IB_OK && e2e[0] < e2e[1] * (1.0 - MODEL_MARGIN);
    if (all_won) {
        for (int32_t t = 0; t < ts->n; t++) keep[t] = cand[t].key != NULL;
        kept = n_cand;
    }
    bool whole = st == IB_OK && kept > 0, again = !all_won && whole && kept < n_cand;
    if (again) st = write_db(cand, keep, ts->n, kept_path, sizeof kept_path);
    if (again && st == IB_OK) st = session_with(model, kept_path, threads, &kept_sess);
    if (again && st == IB_OK) {
        ib_session *pair[2] = {kept_sess, sess[1]};
        double e[2];
        st = abba(pair, &io, rounds, NULL, e);
        kept_ms = e[0];
        dflt_ms = e[1];
    }
    bool model_won = all_won || (whole && st == IB_OK && kept_ms < dflt_ms * (1.0 - MODEL_MARGIN));
    if (st == IB_OK && log)
        fprintf(log, "\nin-model check (%d x %d runs of each compile, alternating): per "
                     "occurrence, ms\n%-4s %-44s %10s %10s  %s\n",
                (int)rounds, (int)RUNS, "task", "workload", "default", "tuned", "kept");
    /* Both knob sets are recorded as measured in the model; a tuned set that did not win is
     * recorded as failed, so the picker takes the defaults' record. */
    for (int32_t t = 0; t < ts->n && st == IB_OK; t++) {
        if (!cand[t].key || ms[0][t] <= 0 || ms[1][t] <= 0) continue;
        const ib__tune_task *task = &ts->tasks[t];
        double tuned = ms[0][t] / task->count, dflt = ms[1][t] / task->count;
        bool win = keep[t] && model_won;
        for (int v = 0; v < 2 && st == IB_OK; v++) {
            ib__tune_record rec = cand[t];
            if (v == 1) ib__tune_record_set_knobs(&rec, &task->defaults);
            rec.in_model = true;
            rec.when = 0; /* now */
            rec.ms = v == 0 ? tuned : dflt;
            rec.ok = v == 1 || win;
            rec.gflops = task->flops / (rec.ms * 1e-3) * 1e-9;
            if (rec.ok)
                snprintf(rec.note, sizeof rec.note, "in the model, %d runs", (int)(rounds * RUNS));
            else if (keep[t])
                snprintf(rec.note, sizeof rec.note, "in the model: faster, the model was not");
            else
                snprintf(rec.note, sizeof rec.note, "in the model: %.4f ms, defaults %.4f", tuned, dflt);
            st = ib__tune_db_append(db, &rec);
        }
        if (log)
            fprintf(log, "%-4d %-44.44s %10.4f %10.4f  %s\n", (int)t, task->label, dflt, tuned,
                    win ? "tuned" : keep[t] ? "defaults (model)" : "defaults");
    }
    if (st == IB_OK && log) {
        /* %.6g: a tiny model's runs take microseconds, and the test re-checks the rule */
        fprintf(log, "end to end, median ms per run: every tuned workload %.6g, defaults %.6g%s\n",
                e2e[0], e2e[1], all_won ? ": kept" : "");
        if (whole && !all_won)
            fprintf(log, "end to end, median ms per run: the %d faster in their steps %.6g, "
                         "defaults %.6g: %s\n", (int)kept, kept_ms, dflt_ms,
                    model_won ? "kept" : "not 2% faster, defaults everywhere");
        fprintf(log, "%d of %d tuned workloads kept after the in-model check\n",
                model_won ? (int)kept : 0, (int)n_cand);
    }
out:
    for (int v = 0; v < 2; v++) ib__rt_profile_free(&prof[v]);
    ib__cli_io_free(&io);
    if (kept_sess) ib_session_destroy(kept_sess);
    if (sess[0]) ib_session_destroy(sess[0]);
    if (sess[1]) ib_session_destroy(sess[1]);
    if (path[0]) unlink(path);
    if (kept_path[0]) unlink(kept_path);
    ib__free(cand);
    ib__free(keep);
    ib__free(ms[0]);
    ib__free(ms[1]);
    return st;
}
