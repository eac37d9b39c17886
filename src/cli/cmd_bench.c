/* `inferbooster bench MODEL|ARTIFACT`: warm-up runs, then timed runs on fixed random
 * inputs; prints median and p90 latency, throughput and the process's peak RSS. */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "api/batch_buckets.h"
#include "api/model_internal.h"
#include "runtime/runtime.h"
#include "cli/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster bench MODEL.onnx|ARTIFACT_DIR [options]\n"
            "\n"
            "  --threads N    threads for the session (default: usable CPUs)\n"
            "  --batch B      size of symbolic batch dimensions (default 1)\n"
            "  --runs R       timed runs (default 20)\n"
            "  --warmup W     untimed runs first (default 3)\n"
            "  --target T     compile for T (default host)\n"
            "  --reference    time the reference executor\n"
            "  --compile      compile even a model too small to gain from it\n"
            "  --profile      then R more runs timing each plan step: a table of the\n"
            "                 steps by time (ms per run, share, GFLOP/s) on stderr\n"
            "  --no-cache     compile without the compiled-model cache\n"
            "  --cache-dir D  the cache (default: INFERBOOSTER_CACHE_DIR, else ~/.cache/inferbooster)\n"
            "  --json         one JSON object: median_ms, p90_ms, throughput, peak_rss_mb, ...\n"
            "\n"
            "Inputs are random (floats in [-1, 1), integers 0); throughput is\n"
            "batch * 1000 / median_ms inferences per second.\n");
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Percentile p in [0, 1] of sorted values, linear between neighbours. */
static double percentile(const double *v, int n, double p) {
    double pos = p * (n - 1);
    int lo = (int)pos;
    int hi = lo + 1 < n ? lo + 1 : lo;
    return v[lo] + (v[hi] - v[lo]) * (pos - lo);
}

typedef struct step_time {
    int32_t step;
    int64_t ns, best_ns;
} step_time;

static int cmp_step_time(const void *a, const void *b) {
    const step_time *x = a, *y = b;
    return (x->best_ns < y->best_ns) - (x->best_ns > y->best_ns);
}

/* The profiled steps by their fastest time, longest first (the mean is shown too: on a
 * busy machine the fastest run is the one to trust). */
static void print_profile(const ib__rt_profile *p, FILE *f) {
    if (!p->rt || p->runs == 0) {
        fprintf(f, "profile: no compiled steps ran (reference executor?)\n");
        return;
    }
    int32_t n = ib__rt_step_count(p->rt);
    step_time *st = ib__calloc((size_t)n + 1, sizeof *st);
    if (!st) return;
    int64_t total = 0, best_total = 0;
    for (int32_t k = 0; k < n; k++) {
        st[k] = (step_time){k, p->ns[k], p->best_ns[k]};
        total += p->ns[k];
        best_total += p->best_ns[k];
    }
    qsort(st, (size_t)n, sizeof *st, cmp_step_time);
    double runs = (double)p->runs;
    fprintf(f, "profile: %d steps in %lld runs; per run %.3f ms mean, %.3f ms summing each "
            "step's fastest\n", n, (long long)p->runs, (double)total / runs / 1e6,
            (double)best_total / 1e6);
    fprintf(f, "%6s %8s %8s %6s %8s  %s\n", "step", "best ms", "mean ms", "share", "GFLOP/s",
            "kernel");
    double cum = 0;
    for (int32_t i = 0; i < n; i++) {
        double flops, best = (double)st[i].best_ns / 1e6;
        const char *label = ib__rt_step_label(p->rt, st[i].step, &flops);
        cum += (double)st[i].best_ns;
        if (i >= 40 && cum > 0.98 * (double)best_total) {
            fprintf(f, "   ... %d more steps, %.1f%% of the time\n", n - i,
                    100.0 * (1.0 - (cum - (double)st[i].best_ns) / (double)best_total));
            break;
        }
        char gf[16] = "-";
        if (flops > 0 && best > 0) snprintf(gf, sizeof gf, "%.1f", flops / (best * 1e6));
        fprintf(f, "%6d %8.3f %8.3f %5.1f%% %8s  %s\n", st[i].step, best,
                (double)st[i].ns / runs / 1e6,
                best_total ? 100.0 * (double)st[i].best_ns / (double)best_total : 0.0, gf, label);
    }
    ib__free(st);
}

int ib__cmd_bench(int argc, char **argv) {
    const char *path = NULL, *target = NULL;
    long long threads = 0, batch = 1, runs = 20, warmup = 3;
    bool reference = false, json = false, compile_all = false, profile = false;
    bool no_cache = false;
    const char *cache_dir = NULL;
    const ib__cli_opt options[] = {
        {"--threads", NULL, IB_CLI_INT, &threads, 0, 4096},
        {"--batch", NULL, IB_CLI_INT, &batch, 1, 1 << 20},
        {"--runs", NULL, IB_CLI_INT, &runs, 1, 1000000},
        {"--warmup", NULL, IB_CLI_INT, &warmup, 0, 1000000},
        {"--target", NULL, IB_CLI_STRING, &target, 0, 0},
        {"--reference", NULL, IB_CLI_FLAG, &reference, 0, 0},
        {"--json", NULL, IB_CLI_FLAG, &json, 0, 0},
        {"--profile", NULL, IB_CLI_FLAG, &profile, 0, 0},
        {"--compile", NULL, IB_CLI_FLAG, &compile_all, 0, 0},
        {"--no-cache", NULL, IB_CLI_FLAG, &no_cache, 0, 0},
        {"--cache-dir", NULL, IB_CLI_STRING, &cache_dir, 0, 0},
    };
    int parsed = ib__cli_parse("bench", argc, argv, options, sizeof options / sizeof *options,
                               &path, usage);
    if (parsed >= 0) return parsed;
    if (!path) return ib__cli_no_model("bench", usage);
    ib_session_options opts;
    ib_session_options_init(&opts);
    opts.num_threads = (int32_t)threads;
    opts.target = target;
    opts.use_reference = reference ? 1 : compile_all ? -1 : 0;
    opts.no_cache = no_cache;
    opts.cache_dir = cache_dir;
    ib_session *sess = NULL;
    ib__cli_io io;
    memset(&io, 0, sizeof io);
    double *times = ib__calloc((size_t)runs, sizeof *times);
    int rc = IB_EXIT_OK;
    ib_status s = IB_OK;
    double t_setup = now_ms(), t_session = 0;
    if (!times) {
        rc = IB_EXIT_FAILURE;
    } else if (ib__cli_is_artifact(path)) {
        s = ib_session_create_from_artifact(path, &opts, &sess);
        if (s) rc = ib__cli_fail(s, "cannot load artifact '%s'", path);
        t_session = now_ms() - t_setup;
    } else {
        /* Load and session in one: a cache hit skips parsing the model. */
        s = ib_session_create_from_file(path, &opts, &sess);
        if (s) rc = ib__cli_fail(s, "cannot create a session for '%s'", path);
        t_session = now_ms() - t_setup;
    }
    if (rc == IB_EXIT_OK && (s = ib__cli_random_inputs(sess, batch, &io)) != IB_OK)
        rc = ib__cli_fail(s, "preparing inputs");
    /* The first run compiles a per-batch variant and allocates the outputs, which later
     * runs reuse as caller buffers. */
    for (long long r = 0; rc == IB_EXIT_OK && r < warmup + runs + 1; r++) {
        double t0 = now_ms();
        s = ib_session_run(sess, io.n_in, io.in_names, io.in, io.n_out, io.out_names, io.out);
        double dt = now_ms() - t0;
        if (s) rc = ib__cli_fail(s, "running '%s'", path);
        else if (r == 0) t_setup = now_ms() - t_setup;
        else if (r > warmup) times[r - warmup - 1] = dt;
    }
    if (rc == IB_EXIT_OK && profile) {
        ib__rt_profile prof;
        if ((s = ib__rt_profile_init(&prof, IB_RT_PROFILE_MAX_STEPS)) != IB_OK)
            rc = ib__cli_fail(s, "profiling");
        ib__rt_profile_attach(&prof);
        for (long long r = 0; rc == IB_EXIT_OK && r < runs; r++)
            if ((s = ib_session_run(sess, io.n_in, io.in_names, io.in, io.n_out, io.out_names,
                                    io.out)) != IB_OK)
                rc = ib__cli_fail(s, "running '%s'", path);
        ib__rt_profile_attach(NULL);
        if (rc == IB_EXIT_OK) print_profile(&prof, stderr);
        ib__rt_profile_free(&prof);
    }
    /* Report the batch the inputs carry (an artifact's, or the model's fixed one). */
    if (rc == IB_EXIT_OK && io.n_in > 0 && io.in[0].rank >= 1) batch = io.in[0].shape[0];
    if (rc == IB_EXIT_OK) {
        qsort(times, (size_t)runs, sizeof *times, ib__cmp_double);
        double median = percentile(times, (int)runs, 0.5);
        double p90 = percentile(times, (int)runs, 0.9);
        double thr = median > 0 ? (double)batch * 1000.0 / median : 0.0;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double rss_mb = (double)ru.ru_maxrss / 1024.0;
        const char *exec = ib_session_executor(sess);
        /* Which bucket variants served this batch (a compiled model session only). */
        ib__buckets bk;
        ib__bucket_piece piece[IB_BUCKETS_MAX_PIECES];
        int32_t n_pieces = 0;
        char desc[400] = "";
        const ib_model *model = ib__session_model(sess);
        if (model && strcmp(exec, "compiled") == 0 && ib__buckets_for_model(model, &bk)) {
            ib__buckets_describe(&bk, desc, sizeof desc);
            if (bk.mode != IB_BUCKETS_OFF) n_pieces = ib__buckets_pieces(&bk, batch, piece);
        }
        if (json) {
            printf("{\"model\": ");
            ib__json_string(stdout, path);
            printf(", \"executor\": ");
            ib__json_string(stdout, exec);
            printf(", \"batch\": %lld, \"threads\": %lld, \"runs\": %lld, \"median_ms\": ", batch,
                   threads, runs);
            ib__json_number(stdout, median);
            printf(", \"p90_ms\": ");
            ib__json_number(stdout, p90);
            printf(", \"min_ms\": ");
            ib__json_number(stdout, times[0]);
            printf(", \"throughput\": ");
            ib__json_number(stdout, thr);
            printf(", \"peak_rss_mb\": ");
            ib__json_number(stdout, rss_mb);
            printf(", \"setup_ms\": ");
            ib__json_number(stdout, t_setup);
            /* model load and session creation (compile, or a cache hit's load) */
            printf(", \"session_ms\": ");
            ib__json_number(stdout, t_session);
            printf(", \"buckets\": [");
            for (int32_t p = 0, first = 1; p < n_pieces; p++) /* one entry per run */
                for (int64_t t = 0; t < piece[p].times; t++, first = 0)
                    printf("%s%lld", first ? "" : ", ", (long long)piece[p].bucket);
            printf("]}\n");
        } else {
            printf("model:      %s (%s executor)\n", path, exec);
            printf("batch:      %lld, %lld runs after %lld warm-up\n", batch, runs, warmup);
            printf("setup:      %.1f ms (session, first run)\n", t_setup);
            printf("median:     %.3f ms\n", median);
            printf("p90:        %.3f ms\n", p90);
            printf("min:        %.3f ms\n", times[0]);
            printf("throughput: %.1f inferences/s\n", thr);
            printf("peak RSS:   %.1f MB\n", rss_mb);
            if (desc[0]) {
                printf("buckets:    %s", desc);
                for (int32_t p = 0; p < n_pieces; p++) {
                    printf("%s%lld", p ? "+" : "; this batch ran as ", (long long)piece[p].bucket);
                    if (piece[p].times > 1) printf("x%lld", (long long)piece[p].times);
                    if (piece[p].rows != piece[p].bucket)
                        printf(" (%lld rows padded)", (long long)piece[p].rows);
                }
                printf("\n");
            }
        }
    }
    ib__cli_io_free(&io);
    ib__free(times);
    ib_session_destroy(sess);
    return rc;
}
