/* `inferbooster-run ARTIFACT`: the deployable runner. Runs a compiled artifact with the
 * small runtime (core, target, runtime.c: libc, libm, libpthread, libdl only), feeding
 * .npy inputs or seeded random data, and writes the outputs as .npy files. It is what a
 * device without a toolchain needs next to the artifact (make cross). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/npy.h"
#include "runtime/runtime.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, MAX_FILES = 256 };

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster-run ARTIFACT [options]\n"
            "\n"
            "  --input NAME=FILE.npy  input NAME from a .npy file (repeatable)\n"
            "  --output-dir DIR       write each output as DIR/<name>.npy\n"
            "  --seed S               seed for random inputs (default 0)\n"
            "  --threads N            worker threads (default: the CPUs this process may use)\n"
            "  --runs R               run R times and print the median time (default 1)\n"
            "\n"
            "Inputs not given get the random data 'inferbooster run --seed S' gives them\n"
            "(SplitMix64 seeded by S and the input's name; floats uniform in [-1, 1), integers\n"
            "in [0, 100), bools 0/1). Exit codes: 0 success, 2 bad input, 1 internal failure.\n");
}

static int exit_code(ib_status st) {
    switch (st) {
    case IB_OK: return EXIT_OK;
    case IB_ERR_INVALID_ARGUMENT:
    case IB_ERR_INVALID_MODEL:
    case IB_ERR_UNSUPPORTED:
    case IB_ERR_IO:
    case IB_ERR_SHAPE: return EXIT_USAGE;
    default: return EXIT_FAIL;
    }
}

static int fail(ib_status st, const char *what) {
    fflush(stdout);
    fprintf(stderr, "inferbooster-run: %s: %s\n", what,
            ib_last_error()[0] ? ib_last_error() : ib_status_name(st));
    return exit_code(st);
}

static int usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "inferbooster-run: %s%s%s\n", msg, arg ? " " : "", arg ? arg : "");
    usage(stderr);
    return EXIT_USAGE;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The same data as `inferbooster run` (cmd_run.c) gives an input, so that a run on the
 * device can be checked against the host without moving files. */
static ib_status random_input(const ib__rt_io_entry *e, uint64_t seed, ib_tensor *out) {
    for (int32_t d = 0; d < e->rank; d++)
        if (e->dims[d] < 0)
            return ib__error(IB_ERR_INVALID_MODEL, "input '%s' has a symbolic dimension", e->name);
    IB_TRY(ib__tensor_alloc(out, (ib_dtype)e->dtype, e->rank, e->dims));
    uint64_t state = seed ^ ib__rt_hash(e->name, strlen(e->name));
    int64_t count = ib_tensor_element_count(out);
    ib_dtype dt = (ib_dtype)e->dtype;
    for (int64_t i = 0; i < count; i++) {
        if (ib__dtype_is_float(dt)) {
            double u = (double)(splitmix64(&state) >> 11) * (1.0 / 9007199254740992.0);
            ib__store_f64(out->data, dt, i, 2.0 * u - 1.0);
        } else if (dt == IB_DTYPE_BOOL) {
            ib__store_i64(out->data, dt, i, (int64_t)(splitmix64(&state) & 1));
        } else {
            ib__store_i64(out->data, dt, i, (int64_t)(splitmix64(&state) % 100));
        }
    }
    return IB_OK;
}

/* A file name from an output name: no separators, no "..", no leading dot. */
static void file_name(const char *name, int32_t index, char *buf, size_t cap) {
    size_t n = 0;
    for (const char *p = name; *p && n + 1 < cap; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || (c == '.' && n > 0 && buf[n - 1] != '.');
        buf[n++] = ok ? c : '_';
    }
    buf[n] = '\0';
    if (n == 0) snprintf(buf, cap, "output_%d", (int)index);
}

static void print_output(const char *name, const ib_tensor *t) {
    printf("output '%s': %s [", name, ib_dtype_name(t->dtype));
    for (int32_t d = 0; d < t->rank; d++) printf("%s%lld", d ? ", " : "", (long long)t->shape[d]);
    int64_t count = ib_tensor_element_count(t);
    double sum = 0, lo = 0, hi = 0;
    for (int64_t i = 0; i < count && ib_dtype_size(t->dtype); i++) {
        double v = ib__load_f64(t->data, t->dtype, i);
        sum += v;
        if (i == 0 || v < lo) lo = v;
        if (i == 0 || v > hi) hi = v;
    }
    printf("]\n  sum=%.9g min=%.9g max=%.9g fnv1a=%016llx\n", sum, lo, hi,
           (unsigned long long)ib__rt_hash(t->data, t->nbytes));
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct runner {
    const char *artifact, *out_dir;
    const char *in_names[MAX_FILES], *in_files[MAX_FILES];
    int32_t n_files;
    uint64_t seed;
    long long threads, runs;
    ib__rt_model *rt;
    ib__pool *pool;
    int32_t n_in, n_out;
    const char **names;
    ib_tensor *inputs, *outputs;
} runner;

static int parse_args(int argc, char **argv, runner *r) {
    r->runs = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return -1;
        } else if (strcmp(a, "--input") == 0 || strcmp(a, "--output-dir") == 0 ||
                   strcmp(a, "--seed") == 0 || strcmp(a, "--threads") == 0 ||
                   strcmp(a, "--runs") == 0) {
            if (!v) return usage_error("missing value for", a);
            i++;
            if (strcmp(a, "--input") == 0) {
                char *eq = strchr(v, '=');
                if (!eq || eq == v || !eq[1]) return usage_error("--input wants NAME=FILE, got", v);
                if (r->n_files >= MAX_FILES) return usage_error("too many --input options", NULL);
                *eq = '\0';
                r->in_names[r->n_files] = v;
                r->in_files[r->n_files++] = eq + 1;
            } else if (strcmp(a, "--output-dir") == 0) {
                r->out_dir = v;
            } else if (strcmp(a, "--seed") == 0) {
                if (!parse_int(v, 0, INT64_MAX, &x)) return usage_error("bad --seed", v);
                r->seed = (uint64_t)x;
            } else if (strcmp(a, "--threads") == 0) {
                if (!parse_int(v, 1, 1024, &r->threads)) return usage_error("bad --threads", v);
            } else if (!parse_int(v, 1, 1000000, &r->runs)) {
                return usage_error("bad --runs", v);
            }
        } else if (a[0] == '-') {
            return usage_error("unknown option", a);
        } else if (r->artifact) {
            return usage_error("one artifact at a time; extra argument", a);
        } else {
            r->artifact = a;
        }
    }
    if (!r->artifact) return usage_error("no artifact given", NULL);
    return 0;
}

static int prepare(runner *r) {
    ib_status st = ib__rt_open_artifact(r->artifact, &r->rt);
    if (st) return fail(st, "cannot open the artifact");
    if (ib__rt_fallback_count(r->rt) > 0) {
        fprintf(stderr, "inferbooster-run: artifact '%s' has %lld reference-op steps, which "
                        "need the full runtime (inferbooster run)\n",
                r->artifact, (long long)ib__rt_fallback_count(r->rt));
        return EXIT_USAGE;
    }
    r->n_in = ib__rt_input_count(r->rt);
    r->n_out = ib__rt_output_count(r->rt);
    r->names = ib__calloc((size_t)r->n_in + 1, sizeof *r->names);
    r->inputs = ib__calloc((size_t)r->n_in + 1, sizeof *r->inputs);
    r->outputs = ib__calloc((size_t)r->n_out + 1, sizeof *r->outputs);
    if (!r->names || !r->inputs || !r->outputs) return fail(IB_ERR_OUT_OF_MEMORY, "out of memory");
    for (int32_t f = 0; f < r->n_files; f++)
        if (ib__rt_find_input(r->rt, r->in_names[f]) < 0) {
            fprintf(stderr, "inferbooster-run: the artifact has no input named '%s'\n",
                    r->in_names[f]);
            return EXIT_USAGE;
        }
    for (int32_t i = 0; i < r->n_in; i++) {
        const ib__rt_io_entry *e = ib__rt_input(r->rt, i);
        r->names[i] = e->name;
        const char *file = NULL;
        for (int32_t f = 0; f < r->n_files; f++)
            if (strcmp(r->in_names[f], e->name) == 0) file = r->in_files[f];
        if (file) {
            st = ib__npy_read_file(file, &r->inputs[i]);
            if (st) return fail(st, "cannot read an input");
            printf("input '%s': %s\n", e->name, file);
        } else {
            st = random_input(e, r->seed, &r->inputs[i]);
            if (st) return fail(st, "cannot make a random input");
            printf("input '%s': random (seed %llu)\n", e->name, (unsigned long long)r->seed);
        }
    }
    int threads = r->threads > 0 ? (int)r->threads : ib__usable_cpus();
    st = ib__pool_create(threads, &r->pool);
    if (st) return fail(st, "cannot start the thread pool");
    return EXIT_OK;
}

static int run(runner *r) {
    double *ms = ib__calloc((size_t)r->runs, sizeof(double));
    if (!ms) return fail(IB_ERR_OUT_OF_MEMORY, "out of memory");
    ib_status st = IB_OK;
    for (long long k = 0; k < r->runs && st == IB_OK; k++) {
        for (int32_t o = 0; o < r->n_out; o++) ib_tensor_release(&r->outputs[o]);
        memset(r->outputs, 0, (size_t)r->n_out * sizeof *r->outputs);
        double t0 = now_ms();
        st = ib__rt_run(r->rt, r->pool, (size_t)r->n_in, r->names, r->inputs, (size_t)r->n_out,
                        NULL, r->outputs);
        ms[k] = now_ms() - t0;
    }
    if (st) {
        ib__free(ms);
        return fail(st, "run failed");
    }
    qsort(ms, (size_t)r->runs, sizeof *ms, compare_doubles);
    printf("ran %s (%s) on %d threads: median %.3f ms over %lld runs\n", r->artifact,
           ib__rt_target_name(r->rt), ib__pool_size(r->pool), ms[r->runs / 2], r->runs);
    ib__free(ms);
    for (int32_t o = 0; o < r->n_out; o++) print_output(ib__rt_output(r->rt, o)->name, &r->outputs[o]);
    if (!r->out_dir) return EXIT_OK;
    if (mkdir(r->out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "inferbooster-run: cannot create '%s': %s\n", r->out_dir, strerror(errno));
        return EXIT_USAGE;
    }
    for (int32_t o = 0; o < r->n_out; o++) {
        char name[200], path[4400];
        file_name(ib__rt_output(r->rt, o)->name, o, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s.npy", r->out_dir, name);
        st = ib__npy_write_file(path, &r->outputs[o]);
        if (st) return fail(st, "cannot write an output");
        printf("wrote %s\n", path);
    }
    return EXIT_OK;
}

int main(int argc, char **argv) {
    runner r;
    memset(&r, 0, sizeof r);
    int rc = parse_args(argc, argv, &r);
    if (rc < 0) return EXIT_OK;
    if (rc == EXIT_OK) rc = prepare(&r);
    if (rc == EXIT_OK) rc = run(&r);
    for (int32_t i = 0; r.inputs && i < r.n_in; i++) ib_tensor_release(&r.inputs[i]);
    for (int32_t o = 0; r.outputs && o < r.n_out; o++) ib_tensor_release(&r.outputs[o]);
    ib__free(r.inputs);
    ib__free(r.outputs);
    ib__free(r.names);
    ib__pool_destroy(r.pool);
    ib__rt_destroy(r.rt);
    return rc;
}
