/* `inferbooster tune MODEL`: lists a model's tunable workloads, tunes them by measurement
 * into the tuning database, and exports or imports database files. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/model_internal.h"
#include "cli/cli.h"
#include "cli/tune_check.h"
#include "tune/tune.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster tune MODEL.onnx [options]\n"
            "       inferbooster tune --export FILE | --import FILE [--db PATH]\n"
            "\n"
            "  --list-tasks     print the model's tunable workloads (de-duplicated) and exit\n"
            "  --trials N       measured configurations per workload (default 64; with\n"
            "                   --budget, as many as the budget allows)\n"
            "  --budget T       overall time limit: 90s, 20m, 1h (default: none)\n"
            "  --batch N        size of the symbolic batch dimension (default 1)\n"
            "  --target T       host (default), or any compile target with --agent\n"
            "  --agent CMD      measure on the target through a measurement agent: CMD runs\n"
            "                   inferbooster-agent there (split at spaces, no shell), e.g.\n"
            "                   'qemu-aarch64 -L /usr/aarch64-linux-gnu build-aarch64/\n"
            "                   inferbooster-agent' (checks only: emulated times mean\n"
            "                   nothing) or 'ssh board inferbooster-agent'\n"
            "  --db PATH        tuning database (default: <cache dir>/tuning.jsonl)\n"
            "  --threads N      threads the kernels run on while measured (default: all)\n"
            "  --seed N         random seed of the search (default 1)\n"
            "  --no-cost-model  random + greedy search (no XGBoost model; a first batch still\n"
            "                   measures the most alike workloads' best knobs after the defaults)\n"
            "  --no-model-check keep the kernel-alone winners without timing them inside\n"
            "                   the model (the check: the model compiled tuned and with\n"
            "                   defaults, run alternately, each step timed; the knobs\n"
            "                   faster there are what compiles apply)\n"
            "  --task K[,K...]  tune only these tasks (indices as --list-tasks prints them)\n"
            "  --plot FILE.svg  draw the tuning curves (best latency vs trials, per task and\n"
            "                   end to end) from the database after tuning\n"
            "  --json           --list-tasks as JSON\n"
            "  --export FILE    write every record of the database to FILE\n"
            "  --import FILE    append FILE's records that the database lacks\n"
            "\n"
            "Each measurement is appended to the database at once, so an interrupted run\n"
            "loses nothing and running again continues. 'compile' and sessions use each\n"
            "workload's best record automatically (INFERBOOSTER_TUNING_DB=PATH|off).\n");
}

static bool parse_budget(const char *s, double *out) {
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || end == s || !(v >= 0) || v > 1e7) return false;
    double mul = 1;
    if (*end == 's' || *end == '\0') mul = 1;
    else if (*end == 'm') mul = 60;
    else if (*end == 'h') mul = 3600;
    else return false;
    if (*end && end[1]) return false;
    *out = v * mul;
    return true;
}

/* Keeps only the tasks listed ("3" or "0,4,7"), in the order listed. */
static bool select_tasks(ib__tune_taskset *ts, const char *spec) {
    bool keep[4096] = {false};
    int32_t order[4096], n = 0;
    const char *p = spec;
    while (*p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= ts->n || v >= 4096 || (*end && *end != ',')) {
            ib__cli_usage_error("tune: --task wants task indices below %d separated by commas, "
                                "got '%s'", ts->n, spec);
            return false;
        }
        if (!keep[v]) order[n++] = (int32_t)v;
        keep[v] = true;
        p = *end ? end + 1 : end;
    }
    if (n == 0) {
        ib__cli_usage_error("tune: --task wants at least one task index");
        return false;
    }
    ib__tune_task *sel = ib__malloc((size_t)n * sizeof *sel);
    if (!sel) {
        ib__cli_usage_error("tune: out of memory");
        return false;
    }
    for (int32_t i = 0; i < n; i++) sel[i] = ts->tasks[order[i]];
    memcpy(ts->tasks, sel, (size_t)n * sizeof *sel);
    ts->n = n;
    ib__free(sel);
    return true;
}

static void print_tasks(const ib__tune_taskset *ts, const ib__tune_db *db, const char *target,
                        bool json) {
    double total = 0;
    for (int32_t i = 0; i < ts->n; i++) total += ts->tasks[i].count * ts->tasks[i].flops;
    if (json) printf("{\"target\": \"%s\", \"tasks\": [", target);
    else
        printf("%-4s %-16s %5s %9s %6s %7s  %s\n", "task", "hash", "count", "MFLOP", "weight",
               "records", "workload");
    for (int32_t i = 0; i < ts->n; i++) {
        const ib__tune_task *t = &ts->tasks[i];
        int32_t n_all = 0, n_ok = 0;
        ib__tune_db_count(db, target, t->key, &n_all, &n_ok);
        double w = total > 0 ? t->count * t->flops / total : 0;
        if (json) {
            printf("%s\n  {\"index\": %d, \"hash\": \"%s\", \"template\": ", i ? "," : "", i, t->hash);
            ib__json_string(stdout, t->tmpl->name);
            printf(", \"count\": %d, \"flops\": %.0f, \"weight\": ", t->count, t->flops);
            ib__json_number(stdout, w);
            printf(", \"records\": %d, \"label\": ", n_all);
            ib__json_string(stdout, t->label);
            printf(", \"key\": ");
            ib__json_string(stdout, t->key);
            printf(", \"default_knobs\": {");
            for (int32_t k = 0; k < t->defaults.n; k++) {
                printf("%s", k ? ", " : "");
                ib__json_string(stdout, t->defaults.name[k]);
                printf(": %lld", (long long)t->defaults.value[k]);
            }
            printf("}}");
        } else {
            printf("%-4d %-16s %5d %9.1f %6.3f %7d  %s\n", i, t->hash, t->count, t->flops * 1e-6, w,
                   n_all, t->label);
        }
    }
    if (json) printf("\n]}\n");
    else printf("%d tasks, %.1f MFLOP per run in tunable kernels\n", ts->n, total * 1e-6);
}

int ib__cmd_tune(int argc, char **argv) {
    const char *model_path = NULL, *target_name = NULL, *db_path = NULL;
    const char *export_path = NULL, *import_path = NULL, *agent = NULL, *task_list = NULL;
    const char *plot_path = NULL;
    long long trials = 0, batch = 1, threads = 0, seed = 1; /* trials 0: not given */
    double budget = 0;
    bool list = false, json = false, cost_model = true, model_check = true;
    const char *budget_text = NULL;
    const ib__cli_opt options[] = {
        {"--target", NULL, IB_CLI_STRING, &target_name, 0, 0},
        {"--plot", NULL, IB_CLI_STRING, &plot_path, 0, 0},
        {"--task", NULL, IB_CLI_STRING, &task_list, 0, 0},
        {"--db", NULL, IB_CLI_STRING, &db_path, 0, 0},
        {"--agent", NULL, IB_CLI_STRING, &agent, 0, 0},
        {"--export", NULL, IB_CLI_STRING, &export_path, 0, 0},
        {"--import", NULL, IB_CLI_STRING, &import_path, 0, 0},
        {"--trials", NULL, IB_CLI_INT, &trials, 1, 100000},
        {"--batch", NULL, IB_CLI_INT, &batch, 1, 1 << 20},
        {"--threads", NULL, IB_CLI_INT, &threads, 1, 4096},
        {"--seed", NULL, IB_CLI_INT, &seed, 0, 1ll << 62},
        {"--budget", NULL, IB_CLI_STRING, &budget_text, 0, 0},
        {"--list-tasks", NULL, IB_CLI_FLAG, &list, 0, 0},
        {"--no-cost-model", NULL, IB_CLI_UNSET, &cost_model, 0, 0},
        {"--no-model-check", NULL, IB_CLI_UNSET, &model_check, 0, 0},
        {"--json", NULL, IB_CLI_FLAG, &json, 0, 0},
    };
    int parsed = ib__cli_parse("tune", argc, argv, options, sizeof options / sizeof *options,
                               &model_path, usage);
    if (parsed >= 0) return parsed;
    if (budget_text && !parse_budget(budget_text, &budget))
        return ib__cli_usage_error("tune: --budget wants a duration such as 90s, 20m or 1h, got '%s'",
                                   budget_text);
    /* a budget alone bounds the run, as Ansor's does: the scheduler spends it where the
     * model gains most, not 64 trials each and done in minutes */
    if (trials == 0) trials = budget > 0 ? IB_TUNE_TRIALS_UNBOUNDED : 64;
    if (export_path && import_path)
        return ib__cli_usage_error("tune: --export and --import are separate runs");
    if (!model_path && !export_path && !import_path) return ib__cli_no_model("tune", usage);
    char *default_db = NULL;
    if (!db_path) {
        ib_status s = ib__tune_db_default_path(&default_db);
        if (s) return ib__cli_fail(s, "tune");
        db_path = default_db;
    }
    ib__tune_db *db = NULL;
    ib_status s = ib__tune_db_open(db_path, &db);
    if (s) {
        ib__free(default_db);
        return ib__cli_fail(s, "tune");
    }
    int rc = IB_EXIT_OK;
    if (export_path || import_path) {
        if (export_path) {
            s = ib__tune_db_export(db, export_path);
            if (s) rc = ib__cli_fail(s, "tune --export");
            else printf("exported %d records from %s to %s\n", ib__tune_db_size(db), db_path,
                        export_path);
        } else {
            int32_t added = 0;
            s = ib__tune_db_import(db, import_path, &added);
            if (s) rc = ib__cli_fail(s, "tune --import");
            else printf("imported %d new records from %s into %s\n", added, import_path, db_path);
        }
        if (rc || !model_path) goto done;
    }
    ib__target target;
    if ((s = ib__target_resolve(target_name, &target)) != IB_OK) {
        rc = ib__cli_fail(s, "tune");
        goto done;
    }
    if (!target.is_host && !list && !agent) {
        rc = ib__cli_usage_error("tune: target %s cannot run on this machine: measure on it "
                                 "with --agent CMD (--list-tasks works for any target)",
                                 target.name);
        goto done;
    }
    if (threads > 0) target.num_cores = (int32_t)threads;
    ib_model *model = NULL;
    if ((s = ib_model_load_file(model_path, &model)) != IB_OK) {
        rc = ib__cli_fail(s, "cannot load model '%s'", model_path);
        goto done;
    }
    ib__tune_taskset *ts = NULL;
    s = ib__tune_extract(ib__model_graph(model), &target, (int32_t)batch, &ts);
    if (s) {
        rc = ib__cli_fail(s, "cannot plan '%s'", model_path);
        ib_model_destroy(model);
        goto done;
    }
    if (task_list && !list && !select_tasks(ts, task_list)) {
        rc = IB_EXIT_USAGE;
        ib__tune_taskset_destroy(ts);
        ib_model_destroy(model);
        goto done;
    }
    char tkey[IB_TUNE_TARGET_MAX];
    ib__tune_target_key(&target, tkey);
    if (list) {
        print_tasks(ts, db, tkey, json);
    } else {
        ib__tune_options o;
        memset(&o, 0, sizeof o);
        o.trials = (int32_t)trials;
        o.budget_s = budget;
        o.batch = 16;
        o.seed = (uint64_t)seed;
        o.measure.threads = (int32_t)threads;
        o.measure.repeats = 7;
        o.measure.priority = true;
        o.measure.agent = agent;
        o.log = stdout;
        o.cost_model = cost_model;
        o.live = isatty(fileno(stderr)) ? stderr : NULL;
        ib__tune_summary *sum = ib__calloc((size_t)(ts->n ? ts->n : 1), sizeof *sum);
        if (!sum) s = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
        else s = ib__tune_run(ts, db, &o, sum);
        if (s) {
            rc = ib__cli_fail(s, "tune '%s'", model_path);
        } else {
            double d_tot = 0, b_tot = 0;
            printf("\n%-4s %-44s %5s %10s %10s %7s %8s %9s %8s\n", "task", "workload", "count",
                   "default ms", "tuned ms", "trials", "GFLOP/s", "rank corr", "cv corr");
            for (int32_t i = 0; i < ts->n; i++) {
                const ib__tune_task *t = &ts->tasks[i];
                int32_t n_all = 0, n_ok = 0;
                ib__tune_db_count(db, tkey, t->key, &n_all, &n_ok);
                double best = sum[i].best_ms, dflt = sum[i].default_ms;
                printf("%-4d %-44.44s %5d %10.4f %10.4f %7d %8.1f", i, t->label, t->count, dflt,
                       best, n_all, best > 0 ? t->flops / (best * 1e-3) * 1e-9 : 0.0);
                /* the mean over the batches the model scored before they were measured */
                if (sum[i].rank_batches > 0) printf(" %9.2f", sum[i].rank_corr);
                else printf(" %9s", "-");
                /* the model's ranking of the task's records, each left out of its training */
                if (isfinite(sum[i].rank_corr_cv)) printf(" %8.2f\n", sum[i].rank_corr_cv);
                else printf(" %8s\n", "-");
                if (dflt > 0 && best > 0) {
                    d_tot += dflt * t->count;
                    b_tot += best * t->count;
                }
            }
            if (b_tot > 0)
                printf("tunable kernels, sum over the model: default %.3f ms, tuned %.3f ms "
                       "(%.2fx)\n", d_tot, b_tot, d_tot / b_tot);
            /* on the host only: an agent's target cannot run the model here */
            if (model_check && !agent && target.is_host) {
                fflush(stdout);
                s = ib__tune_model_check(model, ts, db, tkey, batch, (int32_t)threads, 10, stdout);
                if (s) rc = ib__cli_fail(s, "tune: in-model check");
            }
            printf("database: %s (%d records)\n", db_path, ib__tune_db_size(db));
            if (plot_path) {
                s = ib__tune_plot_svg(ts, db, tkey, plot_path);
                if (s) rc = ib__cli_fail(s, "tune --plot");
                else printf("tuning curves: %s\n", plot_path);
            }
        }
        ib__free(sum);
    }
    ib__tune_taskset_destroy(ts);
    ib_model_destroy(model);
done:
    ib__tune_db_close(db);
    ib__free(default_db);
    return rc;
}
