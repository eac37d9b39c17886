/* The search driver: per task, batches of candidates measured and appended to the
 * database. A batch is the defaults first, in a task's first batch of a run the best
 * schedules of the database's most alike other workloads (transfer by example), then,
 * while the template's cost model has too few points, greedy neighbours of the best so far mixed with random points; once it is
 * trained, the best predictions of a simulated annealing over the model's scores plus an
 * epsilon share of random points (exploration, and the unbiased part of the held-out
 * rank correlation). One model per template, trained on every record of that template
 * in the database (other workloads and models too: transfer), retrained after each of
 * its batches. Across tasks, each next batch goes to the task with the largest share of
 * the model's time (occurrences x best latency), as Ansor's task scheduler does. The
 * database is the state, so a second run continues the first. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tune/tune.h"

static uint64_t next_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Ansor's task scheduler settings (its defaults): the backward window in batches, the
 * weight of the recent drop against the forward guess, and the share of its peers' best
 * throughput a task is assumed able to reach (1 / GAIN_BETA). */
#define GAIN_WINDOW 3
#define GAIN_ALPHA 0.2
#define GAIN_BETA 2.0

typedef struct task_state {
    ib__tune_space space;
    int32_t measured;   /* records in the database (all runs) */
    int32_t run_trials; /* measured in this run */
    double best_ms, default_ms;
    double best_rel;    /* the best record's time over its batch's reference (0: none) */
    double ref_ms;      /* default knobs timed next to this run's batches (least) */
    bool exhausted;     /* no new valid candidate found */
    bool broken;        /* its default kernel cannot be measured */
    int32_t model;      /* index into the run's template models */
    double rho_sum, rho_last; /* held-out rank correlation of the cost model's batches */
    int32_t rho_n;
    /* best_ms, best_rel and measured after each of the last GAIN_WINDOW batches (and
     * at the start), oldest first: the recent drop the scheduler weighs */
    double hist_best[GAIN_WINDOW + 1];
    double hist_rel[GAIN_WINDOW + 1];
    int32_t hist_trials[GAIN_WINDOW + 1];
    int32_t hist_n;
} task_state;

/* The cost model of one template. */
typedef struct tmpl_model {
    const ib__kernel_template *tmpl;
    const ib__knobs *order; /* a task's defaults: the knob order of the features */
    ib__tune_cost_model *cm;
    bool dead;              /* XGBoost failed: its tasks go on with random + greedy */
} tmpl_model;

/* Points a model needs before it steers the search: two batches' worth. */
#define CM_MIN_POINTS 32
#define SA_CHAINS 16
#define SA_STEPS 40
#define SA_POOL 64

static void knobs_from_record(const ib__tune_record *r, const ib__knobs *defaults, ib__knobs *out) {
    *out = *defaults;
    for (int32_t i = 0; i < r->n_knobs; i++)
        for (int32_t j = 0; j < out->n; j++)
            if (strcmp(out->name[j], r->knob_name[i]) == 0) out->value[j] = r->knob_value[i];
}

double ib__tune_task_gain(const ib__tune_gain_input *in) {
    if (in->best_ms <= 0) return INFINITY; /* never measured: first */
    double back = in->recent_trials > 0 && in->recent_drop_ms > 0
                      ? in->recent_drop_ms / in->recent_trials : 0;
    double fwd = in->best_ms / (in->trials > 0 ? in->trials : 1);
    if (in->peer_gflops > 0 && in->flops > 0) {
        /* the time it would take at its peers' throughput times GAIN_BETA */
        double reach = in->best_ms - in->flops / (GAIN_BETA * in->peer_gflops * 1e9) * 1e3;
        if (reach < 0) reach = 0;
        if (reach < fwd) fwd = reach;
    }
    return in->count * (GAIN_ALPHA * back + (1 - GAIN_ALPHA) * fwd);
}

/* The task's best as the scheduler reads it: the best record's ratio to its batch's
 * reference times this run's least reference, when both are known. The absolute ms of
 * that record carry the drift of the moment it was timed (the VM's speed swings 60%
 * within minutes), which would enter the gain as a drop or a rise that is not there. */
static double sched_ms(const task_state *s) {
    return s->best_rel > 0 && s->ref_ms > 0 ? s->best_rel * s->ref_ms : s->best_ms;
}

/* The drop of the task's best over its window, on the same scale as sched_ms. */
static double recent_drop_ms(const task_state *s) {
    const int32_t last = s->hist_n - 1;
    if (s->hist_rel[0] > 0 && s->hist_rel[last] > 0 && s->ref_ms > 0)
        return (s->hist_rel[0] - s->hist_rel[last]) * s->ref_ms;
    return s->hist_best[0] - s->hist_best[last];
}

/* Appends the task's current best to its window of recent bests. */
static void remember_best(task_state *s) {
    if (s->best_ms <= 0) return;
    if (s->hist_n == GAIN_WINDOW + 1) {
        memmove(s->hist_best, s->hist_best + 1, GAIN_WINDOW * sizeof *s->hist_best);
        memmove(s->hist_rel, s->hist_rel + 1, GAIN_WINDOW * sizeof *s->hist_rel);
        memmove(s->hist_trials, s->hist_trials + 1, GAIN_WINDOW * sizeof *s->hist_trials);
        s->hist_n--;
    }
    s->hist_best[s->hist_n] = s->best_ms;
    s->hist_rel[s->hist_n] = s->best_rel;
    s->hist_trials[s->hist_n++] = s->measured;
}

/* The scheduler's gain of task i (ib__tune_task_gain) from its state. */
static double task_gain(const ib__tune_taskset *ts, const task_state *st, int32_t i) {
    const task_state *s = &st[i];
    const ib__tune_task *t = &ts->tasks[i];
    ib__tune_gain_input in = {t->count, sched_ms(s), s->measured, 0, 0, t->flops, 0};
    if (s->hist_n >= 2) {
        in.recent_drop_ms = recent_drop_ms(s);
        in.recent_trials = s->hist_trials[s->hist_n - 1] - s->hist_trials[0];
    }
    for (int32_t k = 0; k < ts->n; k++) {
        if (k == i || ts->tasks[k].tmpl != t->tmpl || st[k].best_ms <= 0) continue;
        double g = ts->tasks[k].flops / (sched_ms(&st[k]) * 1e-3) * 1e-9;
        if (g > in.peer_gflops) in.peer_gflops = g;
    }
    return ib__tune_task_gain(&in);
}

/* The database's view of a task: records, best, the defaults' time. */
static void refresh(const ib__tune_db *db, const char *target, const ib__tune_task *t,
                    task_state *s) {
    int32_t n_all = 0, n_ok = 0;
    ib__tune_db_count(db, target, t->key, &n_all, &n_ok);
    s->measured = n_all;
    const ib__tune_record *best = ib__tune_db_best(db, target, t->key);
    s->best_ms = best ? best->ms : 0;
    s->best_rel = best && best->ref_ms > 0 ? ib__tune_record_relative(best) : 0;
    s->default_ms = 0;
    for (int32_t i = 0; i < ib__tune_db_size(db); i++) {
        const ib__tune_record *r = ib__tune_db_at(db, i);
        if (!r->ok || r->in_model || strcmp(r->target, target) || strcmp(r->key, t->key)) continue;
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

static double urand(uint64_t *rng) { return (double)(next_rand(rng) >> 11) * (1.0 / 9007199254740992.0); }

static bool is_new(const ib__tune_db *db, const char *target, const ib__tune_task *t,
                   const ib__knobs *batch, int32_t n, const ib__knobs *c) {
    return !in_batch(batch, n, c) && !ib__tune_db_has(db, target, t->key, c);
}

/* Simulated annealing over the model's scores: SA_CHAINS chains from the best measured
 * configurations and random points take neighbour steps, accepted by the Metropolis rule
 * at a temperature that falls to zero; the best-scored new valid points any chain
 * visited fill batch[n..want). Returns the new n. */
static int32_t sa_pick(const ib__plan *plan, const ib__tune_db *db, const char *target,
                       const ib__tune_task *t, const task_state *s, const tmpl_model *tm,
                       int32_t want, uint64_t *rng, ib__knobs *batch, int32_t n, FILE *log) {
    const ib__target *tg = &plan->target;
    ib__knobs cur[SA_CHAINS], nb[SA_CHAINS], pool[SA_POOL];
    float cs[SA_CHAINS], ns[SA_CHAINS], ps[SA_POOL], f[SA_CHAINS][IB_TUNE_NFEAT];
    int32_t np = 0, nc = 0;
    /* starts: the fastest measured configurations of this task, then random points */
    const ib__tune_record *top[SA_CHAINS / 2];
    int32_t n_top = 0;
    for (int32_t i = 0; i < ib__tune_db_size(db); i++) {
        const ib__tune_record *r = ib__tune_db_at(db, i);
        if (!r->ok || r->in_model || strcmp(r->target, target) || strcmp(r->key, t->key)) continue;
        if (n_top == SA_CHAINS / 2 && !ib__tune_record_faster(r, top[n_top - 1])) continue;
        int32_t at = n_top < SA_CHAINS / 2 ? n_top++ : n_top - 1;
        top[at] = r; /* insertion into the few, fastest first */
        while (at > 0 && ib__tune_record_faster(top[at], top[at - 1])) {
            const ib__tune_record *tmp = top[at];
            top[at] = top[at - 1];
            top[at - 1] = tmp;
            at--;
        }
    }
    for (int32_t c = 0; c < n_top; c++) knobs_from_record(top[c], tm->order, &cur[nc++]);
    for (int32_t tries = 0; nc < SA_CHAINS && tries < SA_CHAINS * 50; tries++) {
        random_point(&s->space, &t->defaults, rng, &cur[nc]);
        if (ib__tune_space_valid(plan, t, &cur[nc])) nc++;
    }
    if (nc == 0) return n;
    for (int32_t c = 0; c < nc; c++) ib__tune_features(t->key, tg, &cur[c], f[c]);
    if (ib__tune_cm_predict(tm->cm, nc, &f[0][0], cs)) goto fail;
    double mean = 0, var = 0;
    for (int32_t c = 0; c < nc; c++) mean += cs[c];
    mean /= nc;
    for (int32_t c = 0; c < nc; c++) var += (cs[c] - mean) * (cs[c] - mean);
    double t0 = var > 0 ? sqrt(var / nc) : 1.0;
    for (int32_t step = 0; step < SA_STEPS; step++) {
        double temp = t0 * (1.0 - (double)step / SA_STEPS) + 1e-9;
        for (int32_t c = 0; c < nc; c++) {
            nb[c] = cur[c];
            for (int32_t tries = 0; tries < 8; tries++) {
                ib__knobs cand;
                neighbour(&s->space, &cur[c], rng, &cand);
                if (!in_batch(&cur[c], 1, &cand) && ib__tune_space_valid(plan, t, &cand)) {
                    nb[c] = cand;
                    break;
                }
            }
            ib__tune_features(t->key, tg, &nb[c], f[c]);
        }
        if (ib__tune_cm_predict(tm->cm, nc, &f[0][0], ns)) goto fail;
        for (int32_t c = 0; c < nc; c++) {
            if (ns[c] >= cs[c] || urand(rng) < exp((ns[c] - cs[c]) / temp)) {
                cur[c] = nb[c];
                cs[c] = ns[c];
            }
            if (in_batch(pool, np, &nb[c]) || !is_new(db, target, t, batch, n, &nb[c])) continue;
            int32_t at = np;
            if (np == SA_POOL) { /* replace the worst when better */
                at = 0;
                for (int32_t i = 1; i < np; i++)
                    if (ps[i] < ps[at]) at = i;
                if (ps[at] >= ns[c]) continue;
            } else {
                np++;
            }
            pool[at] = nb[c];
            ps[at] = ns[c];
        }
    }
    /* the best of the pool, in score order */
    while (n < want && np > 0) {
        int32_t b = 0;
        for (int32_t i = 1; i < np; i++)
            if (ps[i] > ps[b]) b = i;
        batch[n++] = pool[b];
        pool[b] = pool[np - 1];
        ps[b] = ps[np - 1];
        np--;
    }
    return n;
fail:
    if (log) fprintf(log, "  cost model: %s (random points instead)\n", ib_last_error());
    ib__error_clear();
    return n;
}

/* How alike two workload keys of one template are: the key's fields that match, the input
 * and output shapes counting most. The fused ops weigh least: a ResNet-18 block's second
 * 3x3 conv differs from ResNet-50's only in its fused Add, and runs fastest with the same
 * schedule. */
static int32_t key_likeness(const char *a, const char *b) {
    static const struct { const char *field; int32_t weight; } fields[] = {
        {"|in=", 4}, {"|out=", 4}, {"|a=", 2}, {"|ops=", 1}, {"|epi=", 1}};
    int32_t score = 0;
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        const char *x = strstr(a, fields[f].field), *y = strstr(b, fields[f].field);
        if (!x || !y) {
            if (!x && !y) score += fields[f].weight; /* both lack it: alike there */
            continue;
        }
        size_t lx = strcspn(x + 1, "|"), ly = strcspn(y + 1, "|");
        if (lx == ly && memcmp(x, y, lx + 1) == 0) score += fields[f].weight;
    }
    return score;
}

/* The likeness of two keys whose shapes and attributes all match (in, out, a): a twin, such
 * as the same conv with another fused epilogue. */
#define TWIN_LIKENESS 10

/* Up to `cap` fastest successful kernel-alone records of `key` on target, fastest first, into
 * top; returns how many. */
static int32_t fastest_records(const ib__tune_db *db, const char *target, const char *key,
                               const ib__tune_record **top, int32_t cap) {
    int32_t n = 0;
    for (int32_t i = 0; i < ib__tune_db_size(db); i++) {
        const ib__tune_record *r = ib__tune_db_at(db, i);
        if (!r->ok || r->in_model || strcmp(r->target, target) || strcmp(r->key, key)) continue;
        int32_t at = n < cap ? n : cap;
        while (at > 0 && ib__tune_record_faster(r, top[at - 1])) at--;
        if (at >= cap) continue;
        if (n < cap) n++;
        memmove(top + at + 1, top + at, (size_t)(n - 1 - at) * sizeof *top);
        top[at] = r;
    }
    return n;
}

/* Adds c to batch when it is new and valid; true when added. */
static bool add_seed(const ib__plan *plan, const ib__tune_db *db, const char *target,
                     const ib__tune_task *t, ib__knobs *batch, int32_t *n, const ib__knobs *c) {
    if (in_batch(batch, *n, c) || ib__tune_db_has(db, target, t->key, c) ||
        !ib__tune_space_valid(plan, t, c))
        return false;
    batch[(*n)++] = *c;
    return true;
}

/* Transfer by example: the best knobs of the database's other workloads of t's template
 * on this target, the most alike first, up to TRANSFER_SEEDS new valid ones into batch:
 * a schedule found for another model, measured in the task's first batch. A twin (same
 * shapes, another fused epilogue: ResNet-18's 3x3 convs with their Add beside ResNet-50's)
 * gives its TWIN_SEEDS fastest first: its single best is one noisy measurement's winner,
 * and the schedules close behind it are as likely to win here. Returns the new n. */
#define TRANSFER_SEEDS 4
#define TWIN_SEEDS 6
#define TRANSFER_KEYS 256
static int32_t transfer_seeds(const ib__plan *plan, const ib__tune_db *db, const char *target,
                              const ib__tune_task *t, int32_t want, ib__knobs *batch, int32_t n) {
    const ib__tune_record *best[TRANSFER_KEYS];
    int32_t score[TRANSFER_KEYS], nk = 0, twin = -1;
    for (int32_t i = 0; i < ib__tune_db_size(db); i++) {
        const ib__tune_record *r = ib__tune_db_at(db, i);
        if (!r->ok || r->in_model || strcmp(r->target, target) ||
            strcmp(r->tmpl, t->tmpl->name) || strcmp(r->key, t->key) == 0)
            continue;
        int32_t k = 0;
        while (k < nk && strcmp(best[k]->key, r->key) != 0) k++;
        if (k == nk) {
            if (nk == TRANSFER_KEYS) continue;
            best[nk] = r;
            score[nk++] = key_likeness(t->key, r->key);
        } else if (ib__tune_record_faster(r, best[k])) {
            best[k] = r;
        }
    }
    for (int32_t k = 0; k < nk; k++)
        if (score[k] >= TWIN_LIKENESS && (twin < 0 || score[k] > score[twin])) twin = k;
    if (twin >= 0) {
        const ib__tune_record *top[TWIN_SEEDS];
        int32_t nt = fastest_records(db, target, best[twin]->key, top, TWIN_SEEDS);
        for (int32_t i = 0; i < nt && n < want; i++) {
            ib__knobs c;
            knobs_from_record(top[i], &t->defaults, &c);
            add_seed(plan, db, target, t, batch, &n, &c);
        }
    }
    int32_t added = 0;
    while (added < TRANSFER_SEEDS && n < want && nk > 0) {
        int32_t b = 0; /* most alike; among equals the most GFLOP/s */
        for (int32_t k = 1; k < nk; k++)
            if (score[k] > score[b] || (score[k] == score[b] && best[k]->gflops > best[b]->gflops))
                b = k;
        ib__knobs c;
        knobs_from_record(best[b], &t->defaults, &c);
        best[b] = best[nk - 1];
        score[b] = score[nk - 1];
        nk--;
        if (add_seed(plan, db, target, t, batch, &n, &c)) added++;
    }
    return n;
}

/* Up to `want` new valid candidates for task t into batch; tm: the template's model when
 * it is trained (NULL: random + greedy only). */
static int32_t propose(const ib__plan *plan, const ib__tune_db *db, const char *target,
                       const ib__tune_task *t, task_state *s, const tmpl_model *tm,
                       double epsilon, int32_t want, uint64_t *rng, ib__knobs *batch, FILE *log) {
    int32_t n = 0;
    if (!ib__tune_db_has(db, target, t->key, &t->defaults)) batch[n++] = t->defaults;
    /* once per run and task: a later batch would find the same seeds already measured,
     * after a scan of the whole database */
    if (s->run_trials == 0) n = transfer_seeds(plan, db, target, t, want, batch, n);
    if (tm) {
        int32_t explore = (int32_t)ceil(epsilon * want);
        if (explore < 1) explore = 1;
        if (want - explore > n) n = sa_pick(plan, db, target, t, s, tm, want - explore, rng, batch, n, log);
    }
    ib__knobs best = t->defaults;
    const ib__tune_record *br = ib__tune_db_best(db, target, t->key);
    if (br) knobs_from_record(br, &t->defaults, &best);
    for (int32_t tries = 0; n < want && tries < want * 200; tries++) {
        ib__knobs c;
        /* without a model two thirds greedy around the best, a third anywhere (escapes
         * local minima); with one the rest is random: the epsilon of epsilon-greedy */
        if (!tm && next_rand(rng) % 3 != 0) neighbour(&s->space, &best, rng, &c);
        else random_point(&s->space, &t->defaults, rng, &c);
        if (in_batch(batch, n, &c) || ib__tune_db_has(db, target, t->key, &c)) continue;
        if (!ib__tune_space_valid(plan, t, &c)) continue;
        batch[n++] = c;
    }
    if (n == 0) s->exhausted = true;
    return n;
}

/* Adds to cm every successful kernel-alone record of template tmpl for this target in db,
 * one rank group per workload key, except the records i with held[i] (held may be NULL). */
static ib_status add_records(const ib__tune_db *db, const char *target, const ib__target *tg,
                             const char *tmpl, const ib__knobs *order, const bool *held,
                             ib__tune_cost_model *cm, int32_t *n_groups) {
    int32_t n = ib__tune_db_size(db), groups = 0;
    const char **keys = ib__malloc((size_t)(n ? n : 1) * sizeof *keys);
    bool *rel = ib__malloc((size_t)(n ? n : 1) * sizeof *rel);
    if (!keys || !rel) {
        ib__free(keys);
        ib__free(rel);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    }
    ib_status st = IB_OK;
    for (int32_t i = 0; i < n && st == IB_OK; i++) {
        const ib__tune_record *r = ib__tune_db_at(db, i);
        if ((held && held[i]) || !r->ok || r->in_model || strcmp(r->target, target) ||
            strcmp(r->tmpl, tmpl))
            continue;
        /* relative and absolute times never share a rank group */
        int32_t g = 0;
        while (g < groups && (strcmp(keys[g], r->key) != 0 || rel[g] != (r->ref_ms > 0))) g++;
        if (g == groups) {
            keys[groups] = r->key;
            rel[groups++] = r->ref_ms > 0;
        }
        ib__knobs k;
        knobs_from_record(r, order, &k);
        float f[IB_TUNE_NFEAT];
        ib__tune_features(r->key, tg, &k, f);
        st = ib__tune_cm_add(cm, g, f, r->ok, ib__tune_record_relative(r));
    }
    ib__free(keys);
    ib__free(rel);
    if (n_groups) *n_groups = groups;
    return st;
}

/* Refits template model m on every successful record of its template for this target in
 * db (other workloads too: transfer). */
static void retrain(const ib__tune_db *db, const char *target, const ib__target *tg,
                    tmpl_model *m, FILE *log, bool announce) {
    if (m->dead) return;
    ib__tune_cm_clear(m->cm);
    int32_t groups = 0;
    ib_status st = add_records(db, target, tg, m->tmpl->name, m->order, NULL, m->cm, &groups);
    int32_t pts = ib__tune_cm_size(m->cm);
    if (st == IB_OK && pts >= CM_MIN_POINTS) st = ib__tune_cm_train(m->cm);
    if (st == IB_ERR_INVALID_ARGUMENT) {
        /* too few points in groups of two or more (many workloads, one record each):
         * not an error, the model waits for more */
        ib__error_clear();
        return;
    }
    if (st) {
        if (log) fprintf(log, "cost model %s: %s; random + greedy search from here\n", m->tmpl->name,
                         ib_last_error());
        ib__error_clear();
        m->dead = true;
        return;
    }
    if (announce && log && pts >= CM_MIN_POINTS)
        fprintf(log, "cost model %s: pre-trained on %d records of %d workloads in the database\n",
                m->tmpl->name, pts, groups);
}

/* The cost model's rank correlation on measurements it has not seen, by CV_FOLDS-fold
 * cross-validation over task t's records: each fold's records are left out, the model is
 * trained on the rest (the template's other workloads included, as in the search) and
 * ranks them; the mean of the folds' Spearman correlations. Unlike the batches' own
 * correlation, whose points the search picked from a narrow band of top predictions, the
 * folds sample the whole range the search measured. NaN when t has fewer than CV_MIN
 * successful records or XGBoost fails. */
#define CV_FOLDS 5
#define CV_MIN 20
static double cross_validated_rho(const ib__tune_db *db, const char *target, const ib__target *tg,
                                  const ib__tune_task *t, uint64_t seed) {
    int32_t n = ib__tune_db_size(db), n_own = 0;
    bool *held = ib__calloc((size_t)(n ? n : 1), sizeof *held);
    int32_t *own = ib__malloc((size_t)(n ? n : 1) * sizeof *own);
    float *f = ib__malloc((size_t)(n ? n : 1) * IB_TUNE_NFEAT * sizeof *f);
    float *score = ib__malloc((size_t)(n ? n : 1) * sizeof *score);
    double *xy = ib__malloc((size_t)(n ? n : 1) * 2 * sizeof *xy);
    ib__tune_cost_model *cm = NULL;
    double sum = 0;
    int32_t folds = 0;
    if (!held || !own || !f || !score || !xy || ib__tune_cm_create(seed, &cm)) goto out;
    for (int32_t i = 0; i < n; i++) {
        const ib__tune_record *r = ib__tune_db_at(db, i);
        if (r->ok && !r->in_model && !strcmp(r->target, target) &&
            !strcmp(r->key, t->key))
            own[n_own++] = i;
    }
    if (n_own < CV_MIN) goto out;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int32_t i = n_own - 1; i > 0; i--) { /* folds drawn at random, not by time */
        int32_t j = (int32_t)(next_rand(&rng) % (uint64_t)(i + 1));
        int32_t tmp = own[i];
        own[i] = own[j];
        own[j] = tmp;
    }
    for (int32_t fold = 0; fold < CV_FOLDS; fold++) {
        int32_t m = 0;
        memset(held, 0, (size_t)n * sizeof *held);
        for (int32_t j = fold; j < n_own; j += CV_FOLDS) {
            const ib__tune_record *r = ib__tune_db_at(db, own[j]);
            held[own[j]] = true;
            ib__knobs k;
            knobs_from_record(r, &t->defaults, &k);
            ib__tune_features(r->key, tg, &k, f + (size_t)m * IB_TUNE_NFEAT);
            xy[n + m] = -ib__tune_record_relative(r); /* faster ranks higher, as a score does */
            m++;
        }
        ib__tune_cm_clear(cm);
        if (add_records(db, target, tg, t->tmpl->name, &t->defaults, held, cm, NULL) ||
            ib__tune_cm_train(cm) || ib__tune_cm_predict(cm, m, f, score))
            break;
        for (int32_t i = 0; i < m; i++) xy[i] = score[i];
        double rho = ib__tune_spearman(xy, xy + n, m);
        if (isfinite(rho)) {
            sum += rho;
            folds++;
        }
    }
out:
    ib__error_clear();
    ib__tune_cm_destroy(cm);
    ib__free(held);
    ib__free(own);
    ib__free(f);
    ib__free(score);
    ib__free(xy);
    return folds == CV_FOLDS ? sum / folds : NAN;
}

/* "/64" after a task's trial count; nothing when the budget is the bound. */
static const char *trials_of(int32_t trials, char buf[16]) {
    buf[0] = '\0';
    if (trials < IB_TUNE_TRIALS_UNBOUNDED) snprintf(buf, 16, "/%d", (int)trials);
    return buf;
}

/* The live line: the task being measured, its trials, best GFLOP/s, and the time left
 * (of the budget, else estimated from the pace so far). */
static void live_line(FILE *tty, int32_t ti, int32_t n_tasks, const ib__tune_task *t,
                      const task_state *s, int32_t n, int32_t trials, double elapsed,
                      double budget, int64_t done, int64_t todo) {
    if (!tty) return;
    double gf = s->best_ms > 0 ? t->flops / (s->best_ms * 1e-3) * 1e-9 : 0;
    double left = budget > 0 ? budget - elapsed : done > 0 ? elapsed / (double)done * (double)todo : 0;
    char of[16];
    fprintf(tty, "\r\033[K[task %d/%d] %-32.32s trials %d+%d%s  best %.1f GFLOP/s  ~%.0fs left",
            ti + 1, n_tasks, t->label, s->measured, n, trials_of(trials, of), gf, left > 0 ? left : 0);
    fflush(tty);
}

static void live_clear(FILE *tty) {
    if (!tty) return;
    fputs("\r\033[K", tty);
    fflush(tty);
}

static void progress(FILE *log, int32_t ti, int32_t n_tasks, const ib__tune_task *t,
                     const task_state *s, int32_t trials, double elapsed, double budget) {
    if (!log) return;
    double gf = s->best_ms > 0 ? t->flops / (s->best_ms * 1e-3) * 1e-9 : 0;
    char of[16];
    fprintf(log, "[task %d/%d] %-40.40s trials %3d%s  best %.4f ms (%.1f GFLOP/s)  default %.4f ms",
            ti + 1, n_tasks, t->label, s->measured, trials_of(trials, of), s->best_ms, gf,
            s->default_ms);
    if (budget > 0) fprintf(log, "  %.0fs/%.0fs", elapsed, budget);
    else fprintf(log, "  %.0fs", elapsed);
    if (s->rho_n > 0)
        fprintf(log, "  rank corr %.2f (mean of %d: %.2f)", s->rho_last, s->rho_n, s->rho_sum / s->rho_n);
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
    tmpl_model *models = ib__calloc((size_t)(ts->n ? ts->n : 1), sizeof *models);
    float *feat = ib__calloc((size_t)bsz * IB_TUNE_NFEAT, sizeof *feat);
    float *pred = ib__calloc((size_t)bsz, sizeof *pred);
    double *rx = ib__calloc((size_t)bsz * 2, sizeof *rx);
    int32_t n_models = 0;
    ib_status status = IB_OK;
    if (!st || !batch || !res || !models || !feat || !pred || !rx) {
        status = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
        goto out;
    }
    uint64_t rng = o->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!rng) rng = 1;
    for (int32_t i = 0; i < ts->n; i++) {
        ib__tune_space_init(&ts->tasks[i], &st[i].space);
        refresh(db, target, &ts->tasks[i], &st[i]);
        remember_best(&st[i]);
        int32_t m = 0;
        while (m < n_models && models[m].tmpl != ts->tasks[i].tmpl) m++;
        if (m == n_models) {
            models[m].tmpl = ts->tasks[i].tmpl;
            models[m].order = &ts->tasks[i].defaults;
            if (!o->cost_model) models[m].dead = true;
            else if (ib__tune_cm_create(o->seed, &models[m].cm)) {
                ib__error_clear();
                models[m].dead = true;
            }
            n_models++;
        }
        st[i].model = m;
    }
    double t0 = ib__now_s();
    double epsilon = o->epsilon > 0 ? o->epsilon : 0.25;
    char per_task[48];
    if (o->trials >= IB_TUNE_TRIALS_UNBOUNDED)
        snprintf(per_task, sizeof per_task, "trials until the budget is spent");
    else
        snprintf(per_task, sizeof per_task, "%d trials each%s", o->trials,
                 o->budget_s > 0 ? " within the budget" : "");
    if (o->log)
        fprintf(o->log, "tuning %d tasks on %s, %s, %s, database %s\n", ts->n, target, per_task,
                o->cost_model ? "XGBoost cost model" : "random + greedy search", ib__tune_db_path(db));
    for (int32_t m = 0; m < n_models; m++) retrain(db, target, &ts->plan->target, &models[m], o->log, true);
    for (;;) {
        double elapsed = ib__now_s() - t0;
        if (o->budget_s > 0 && elapsed >= o->budget_s) {
            if (o->log) fprintf(o->log, "budget spent (%.0f s)\n", elapsed);
            break;
        }
        /* Next task: every open task once first (unmeasured ones in weight order), then
         * the one whose next trials are expected to take the most off the model's
         * latency (Ansor's gradient, ib__tune_task_gain). */
        int32_t pick = -1;
        double best_w = -1;
        for (int32_t i = 0; i < ts->n; i++) {
            task_state *s = &st[i];
            if (s->exhausted || s->broken || s->measured >= o->trials) continue;
            if (s->best_ms <= 0) {
                pick = i;
                break;
            }
            double w = task_gain(ts, st, i);
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
        tmpl_model *tm = &models[s->model];
        bool use_model = !tm->dead && ib__tune_cm_ready(tm->cm);
        int32_t n = propose(ts->plan, db, target, t, s, use_model ? tm : NULL, epsilon, want, &rng,
                            batch, o->log);
        if (n == 0) continue;
        /* predicted before measuring: held out from the model that scores them */
        bool predicted = false;
        if (use_model) {
            for (int32_t i = 0; i < n; i++)
                ib__tune_features(t->key, &ts->plan->target, &batch[i], feat + (size_t)i * IB_TUNE_NFEAT);
            predicted = ib__tune_cm_predict(tm->cm, n, feat, pred) == IB_OK;
            ib__error_clear();
        }
        int64_t done = 0, todo = 0;
        for (int32_t i = 0; i < ts->n; i++) {
            done += st[i].run_trials;
            if (!st[i].exhausted && !st[i].broken && st[i].measured < o->trials)
                todo += o->trials - st[i].measured;
        }
        live_line(o->live, pick, ts->n, t, s, n, o->trials, ib__now_s() - t0, o->budget_s, done, todo);
        double ref_ms = 0;
        ib_status ms = ib__tune_measure(ts->plan, t->kernel, n, batch, &o->measure, res, &ref_ms);
        if (ms) {
            live_clear(o->live);
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
            r.ref_ms = ref_ms;
            r.gflops = r.ok ? t->flops / (r.ms * 1e-3) * 1e-9 : 0;
            snprintf(r.note, sizeof r.note, "%s", res[i].note);
            failed += !r.ok;
            status = ib__tune_db_append(db, &r);
        }
        if (status) break;
        if (predicted) {
            int32_t m = 0;
            for (int32_t i = 0; i < n; i++)
                if (res[i].ok && res[i].ms > 0) {
                    rx[m] = pred[i];
                    rx[bsz + m] = -res[i].ms; /* faster ranks higher, as a score does */
                    m++;
                }
            double rho = m >= 4 ? ib__tune_spearman(rx, rx + bsz, m) : NAN;
            if (isfinite(rho)) {
                s->rho_last = rho;
                s->rho_sum += rho;
                s->rho_n++;
            }
        }
        retrain(db, target, &ts->plan->target, tm, o->log, false);
        s->run_trials += n;
        if (ref_ms > 0 && (s->ref_ms <= 0 || ref_ms < s->ref_ms)) s->ref_ms = ref_ms;
        refresh(db, target, t, s);
        remember_best(s);
        if (s->ref_ms > 0) s->default_ms = s->ref_ms;
        live_clear(o->live);
        progress(o->log, pick, ts->n, t, s, o->trials, ib__now_s() - t0, o->budget_s);
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
        summary[i].rank_batches = st[i].rho_n;
        summary[i].rank_corr = st[i].rho_n ? st[i].rho_sum / st[i].rho_n : NAN;
        summary[i].rank_corr_last = st[i].rho_n ? st[i].rho_last : NAN;
        /* for the tasks this run measured: 5 trainings each (ResNet-50's 27 tasks: about
         * 10 s), not to be paid again by a run that finds everything done */
        summary[i].rank_corr_cv = o->cost_model && !models[st[i].model].dead && st[i].run_trials > 0
                                      ? cross_validated_rho(db, target, &ts->plan->target,
                                                            &ts->tasks[i], o->seed)
                                      : NAN;
    }
out:
    for (int32_t m = 0; models && m < n_models; m++) ib__tune_cm_destroy(models[m].cm);
    ib__free(models);
    ib__free(feat);
    ib__free(pred);
    ib__free(rx);
    ib__free(st);
    ib__free(batch);
    ib__free(res);
    return status;
}
