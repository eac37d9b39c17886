/* The search driver: per task, batches of candidates (the defaults first, then greedy
 * neighbours of the best so far mixed with random points of the space), measured and
 * appended to the database; across tasks, each next batch goes to the task with the
 * largest share of the model's time (occurrences x best latency), as Ansor's task
 * scheduler does. The database is the state, so a second run continues the first. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tune/tune.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

typedef struct task_state {
    ib__tune_space space;
    int32_t measured;   /* records in the database (all runs) */
    int32_t run_trials; /* measured in this run */
    double best_ms, default_ms;
    double ref_ms;      /* default knobs timed next to this run's batches (least) */
    bool exhausted;     /* no new valid candidate found */
    bool broken;        /* its default kernel cannot be measured */
} task_state;

static void knobs_from_record(const ib__tune_record *r, const ib__knobs *defaults, ib__knobs *out) {
    *out = *defaults;
    for (int32_t i = 0; i < r->n_knobs; i++)
        for (int32_t j = 0; j < out->n; j++)
            if (strcmp(out->name[j], r->knob_name[i]) == 0) out->value[j] = r->knob_value[i];
}

/* The database's view of a task: records, best, the defaults' time. */
static void refresh(const ib__tune_db *db, const char *target, const ib__tune_task *t,
                    task_state *s) {
    int32_t n_all = 0, n_ok = 0;
    ib__tune_db_count(db, target, t->key, &n_all, &n_ok);
    s->measured = n_all;
    const ib__tune_record *best = ib__tune_db_best(db, target, t->key);
    s->best_ms = best ? best->ms : 0;
    s->default_ms = 0;
    for (int32_t i = 0; i < ib__tune_db_size(db); i++) {
        const ib__tune_record *r = ib__tune_db_at(db, i);
        if (!r->ok || strcmp(r->target, target) || strcmp(r->key, t->key)) continue;
        ib__knobs k;
        knobs_from_record(r, &t->defaults, &k);
        bool same = k.n == t->defaults.n;
        for (int32_t j = 0; same && j < k.n; j++) same = k.value[j] == t->defaults.value[j];
        if (same && (s->default_ms == 0 || r->ms < s->default_ms)) s->default_ms = r->ms;
    }
}

static bool in_batch(const ib__knobs *batch, int32_t n, const ib__knobs *k) {
    for (int32_t i = 0; i < n; i++) {
        bool same = true;
        for (int32_t j = 0; same && j < k->n; j++) same = batch[i].value[j] == k->value[j];
        if (same) return true;
    }
    return false;
}

/* A point near `from`: one or two knobs moved to a neighbouring candidate value. */
static void neighbour(const ib__tune_space *sp, const ib__knobs *from, uint64_t *rng, ib__knobs *out) {
    *out = *from;
    int32_t moves = 1 + (int32_t)(next_rand(rng) % 2);
    for (int32_t m = 0; m < moves && sp->n > 0; m++) {
        int32_t i = (int32_t)(next_rand(rng) % (uint64_t)sp->n);
        if (sp->n_vals[i] < 2) continue;
        int32_t at = 0;
        while (at < sp->n_vals[i] && sp->vals[i][at] != out->value[i]) at++;
        if (at == sp->n_vals[i]) at = 0;
        int32_t step = 1 + (int32_t)(next_rand(rng) % 2);
        at += (next_rand(rng) & 1) ? step : -step;
        if (at < 0) at = 0;
        if (at >= sp->n_vals[i]) at = sp->n_vals[i] - 1;
        out->value[i] = sp->vals[i][at];
    }
}

static void random_point(const ib__tune_space *sp, const ib__knobs *defaults, uint64_t *rng,
                         ib__knobs *out) {
    *out = *defaults;
    for (int32_t i = 0; i < sp->n; i++)
        if (sp->n_vals[i] > 0) out->value[i] = sp->vals[i][next_rand(rng) % (uint64_t)sp->n_vals[i]];
}

/* Up to `want` new valid candidates for task t into batch. */
static int32_t propose(const ib__plan *plan, const ib__tune_db *db, const char *target,
                       const ib__tune_task *t, task_state *s, int32_t want, uint64_t *rng,
                       ib__knobs *batch) {
    int32_t n = 0;
    if (!ib__tune_db_has(db, target, t->key, &t->defaults)) batch[n++] = t->defaults;
    ib__knobs best = t->defaults;
    const ib__tune_record *br = ib__tune_db_best(db, target, t->key);
    if (br) knobs_from_record(br, &t->defaults, &best);
    for (int32_t tries = 0; n < want && tries < want * 200; tries++) {
        ib__knobs c;
        /* two thirds greedy around the best, a third anywhere (escapes local minima) */
        if (next_rand(rng) % 3 != 0) neighbour(&s->space, &best, rng, &c);
        else random_point(&s->space, &t->defaults, rng, &c);
        if (in_batch(batch, n, &c) || ib__tune_db_has(db, target, t->key, &c)) continue;
        if (!ib__tune_space_valid(plan, t, &c)) continue;
        batch[n++] = c;
    }
    if (n == 0) s->exhausted = true;
    return n;
}

static void progress(FILE *log, int32_t ti, int32_t n_tasks, const ib__tune_task *t,
                     const task_state *s, int32_t trials, double elapsed, double budget) {
    if (!log) return;
    double gf = s->best_ms > 0 ? t->flops / (s->best_ms * 1e-3) * 1e-9 : 0;
    fprintf(log, "[task %d/%d] %-40.40s trials %3d/%d  best %.4f ms (%.1f GFLOP/s)  default %.4f ms",
            ti + 1, n_tasks, t->label, s->measured, trials, s->best_ms, gf, s->default_ms);
    if (budget > 0) fprintf(log, "  %.0fs/%.0fs", elapsed, budget);
    else fprintf(log, "  %.0fs", elapsed);
    fprintf(log, "\n");
    fflush(log);
}

ib_status ib__tune_run(ib__tune_taskset *ts, ib__tune_db *db, const ib__tune_options *o,
                       ib__tune_summary *summary) {
    if (o->trials <= 0) return ib__error(IB_ERR_INVALID_ARGUMENT, "tune: trials must be > 0");
    int32_t bsz = o->batch > 0 ? o->batch : 16;
    if (bsz > 64) bsz = 64;
    char target[IB_TUNE_TARGET_MAX];
    ib__tune_target_key(&ts->plan->target, target);
    task_state *st = ib__calloc((size_t)(ts->n ? ts->n : 1), sizeof *st);
    ib__knobs *batch = ib__calloc((size_t)bsz, sizeof *batch);
    ib__tune_result *res = ib__calloc((size_t)bsz, sizeof *res);
    if (!st || !batch || !res) {
        ib__free(st);
        ib__free(batch);
        ib__free(res);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    }
    uint64_t rng = o->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!rng) rng = 1;
    for (int32_t i = 0; i < ts->n; i++) {
        ib__tune_space_init(&ts->tasks[i], &st[i].space);
        refresh(db, target, &ts->tasks[i], &st[i]);
    }
    double t0 = now_s();
    ib_status status = IB_OK;
    if (o->log)
        fprintf(o->log, "tuning %d tasks on %s, %d trials each%s, database %s\n", ts->n, target,
                o->trials, o->budget_s > 0 ? " within the budget" : "", ib__tune_db_path(db));
    for (;;) {
        double elapsed = now_s() - t0;
        if (o->budget_s > 0 && elapsed >= o->budget_s) {
            if (o->log) fprintf(o->log, "budget spent (%.0f s)\n", elapsed);
            break;
        }
        /* Next task: every open task once first (unmeasured ones in weight order), then
         * the largest occurrences x best latency. */
        int32_t pick = -1;
        double best_w = -1;
        for (int32_t i = 0; i < ts->n; i++) {
            task_state *s = &st[i];
            if (s->exhausted || s->broken || s->measured >= o->trials) continue;
            if (s->best_ms <= 0) {
                pick = i;
                break;
            }
            double w = ts->tasks[i].count * s->best_ms;
            if (w > best_w) {
                best_w = w;
                pick = i;
            }
        }
        if (pick < 0) break;
        const ib__tune_task *t = &ts->tasks[pick];
        task_state *s = &st[pick];
        int32_t want = o->trials - s->measured;
        if (want > bsz) want = bsz;
        int32_t n = propose(ts->plan, db, target, t, s, want, &rng, batch);
        if (n == 0) continue;
        double ref_ms = 0;
        ib_status ms = ib__tune_measure(ts->plan, t->kernel, n, batch, &o->measure, res, &ref_ms);
        if (ms) {
            /* this task cannot be measured (its own default fails): the others go on */
            if (o->log) fprintf(o->log, "[task %d/%d] %s: skipped: %s\n", pick + 1, ts->n, t->label,
                                ib_last_error());
            ib__error_clear();
            s->broken = true;
            continue;
        }
        int32_t failed = 0;
        for (int32_t i = 0; i < n && status == IB_OK; i++) {
            ib__tune_record r;
            memset(&r, 0, sizeof r);
            r.key = (char *)t->key; /* borrowed: the append copies it */
            snprintf(r.target, sizeof r.target, "%s", target);
            snprintf(r.tmpl, sizeof r.tmpl, "%s", t->tmpl->name);
            ib__tune_record_set_knobs(&r, &batch[i]);
            r.ok = res[i].ok && res[i].ms > 0;
            r.ms = r.ok ? res[i].ms : 0;
            r.gflops = r.ok ? t->flops / (r.ms * 1e-3) * 1e-9 : 0;
            snprintf(r.note, sizeof r.note, "%s", res[i].note);
            failed += !r.ok;
            status = ib__tune_db_append(db, &r);
        }
        if (status) break;
        s->run_trials += n;
        if (ref_ms > 0 && (s->ref_ms <= 0 || ref_ms < s->ref_ms)) s->ref_ms = ref_ms;
        refresh(db, target, t, s);
        if (s->ref_ms > 0) s->default_ms = s->ref_ms;
        progress(o->log, pick, ts->n, t, s, o->trials, now_s() - t0, o->budget_s);
        if (failed && o->log) {
            for (int32_t i = 0; i < n; i++)
                if (!res[i].ok) {
                    fprintf(o->log, "  %d failed candidates (first: %s)\n", failed, res[i].note);
                    break;
                }
        }
    }
    for (int32_t i = 0; summary && i < ts->n; i++) {
        summary[i].trials = st[i].run_trials;
        summary[i].best_ms = st[i].best_ms;
        summary[i].default_ms = st[i].default_ms;
    }
    ib__free(st);
    ib__free(batch);
    ib__free(res);
    return status;
}
