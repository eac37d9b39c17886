/* `inferbooster run CUDA_ARTIFACT`: runs an artifact compiled for a cuda-* target on an
 * NVIDIA GPU through the CUDA runtime (inputs from .npy files or seeded random floats,
 * outputs printed with checksums and optionally written as .npy, median time of
 * --repeat runs). Without a driver it says so and exits 1. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/npy.h"
#include "runtime/cuda_runtime.h"

#define MAX_NAMED 64

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct cuda_run {
    const char *dir, *output_dir;
    const char *in_name[MAX_NAMED], *in_file[MAX_NAMED];
    int n_named;
    long long repeat, device, seed;
    bool no_graph;
} cuda_run;

static int parse(int argc, char **argv, cuda_run *o) {
    memset(o, 0, sizeof *o);
    o->repeat = 1;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if ((m = ib__cli_option(argc, argv, &i, "--input", &v)) != 0) {
            if (m < 0) return IB_EXIT_USAGE;
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1] || o->n_named == MAX_NAMED)
                return ib__cli_usage_error("run: --input needs NAME=FILE.npy (at most %d)", MAX_NAMED);
            o->in_name[o->n_named] = v;
            o->in_file[o->n_named++] = eq + 1;
        } else if ((m = ib__cli_option(argc, argv, &i, "--output-dir", &v)) != 0) {
            if (m < 0) return IB_EXIT_USAGE;
            o->output_dir = v;
        } else if ((m = ib__cli_option(argc, argv, &i, "--repeat", &v)) != 0) {
            if (m < 0 || !ib__cli_parse_int(v, 1, 1000000, "--repeat", &o->repeat)) return IB_EXIT_USAGE;
        } else if ((m = ib__cli_option(argc, argv, &i, "--device", &v)) != 0) {
            if (m < 0 || !ib__cli_parse_int(v, 0, 63, "--device", &o->device)) return IB_EXIT_USAGE;
        } else if ((m = ib__cli_option(argc, argv, &i, "--seed", &v)) != 0) {
            if (m < 0 || !ib__cli_parse_int(v, 0, 0x7fffffffffffffffLL, "--seed", &o->seed))
                return IB_EXIT_USAGE;
        } else if (strcmp(argv[i], "--no-graph") == 0) {
            o->no_graph = true;
        } else if (argv[i][0] == '-') {
            return ib__cli_usage_error("run: option '%s' does not apply to a CUDA artifact "
                                       "(--input, --output-dir, --repeat, --seed, --device, --no-graph do)",
                                       argv[i]);
        } else if (o->dir) {
            return ib__cli_usage_error("run: one model at a time");
        } else {
            o->dir = argv[i];
        }
    }
    return o->dir ? -1 : ib__cli_usage_error("run: no artifact given");
}

static bool same_shape(const ib_tensor *t, const ib__rt_io_entry *e) {
    if ((int32_t)t->dtype != e->dtype || t->rank != e->rank || (int64_t)t->nbytes != e->nbytes) return false;
    for (int32_t d = 0; d < e->rank; d++)
        if (t->shape[d] != e->dims[d]) return false;
    return true;
}

static void print_output(const ib__rt_io_entry *e, const void *data) {
    char dims[160];
    printf("output '%s': %s %s\n", e->name, ib_dtype_name((ib_dtype)e->dtype),
           ib__cli_dims_string(e->dims, e->rank, dims, sizeof dims));
    double sum = 0, lo = 0, hi = 0;
    int64_t count = e->dtype == IB_DTYPE_FLOAT32 ? e->nbytes / 4 : 0;
    for (int64_t i = 0; i < count; i++) {
        double v = ((const float *)data)[i];
        sum += v;
        if (i == 0 || v < lo) lo = v;
        if (i == 0 || v > hi) hi = v;
    }
    printf("  sum=%.9g mean=%.9g min=%.9g max=%.9g fnv1a=%016llx\n", sum,
           count ? sum / (double)count : 0.0, lo, hi,
           (unsigned long long)ib__fnv1a64(data, (size_t)e->nbytes));
}

int ib__cmd_run_cuda(int argc, char **argv) {
    cuda_run o;
    int rc = parse(argc, argv, &o);
    if (rc >= 0) return rc;
    ib__cuda_model *m = NULL;
    ib_status s = ib__cuda_model_open(o.dir, &m);
    if (s) return ib__cli_fail(s, "cannot open CUDA artifact '%s'", o.dir);
    int32_t n_in = ib__cuda_model_input_count(m), n_out = ib__cuda_model_output_count(m);
    ib_tensor *files = ib__calloc((size_t)n_in + 1, sizeof *files);
    void **in = ib__calloc((size_t)n_in + 1, sizeof *in), **out = ib__calloc((size_t)n_out + 1, sizeof *out);
    double *times = ib__calloc((size_t)o.repeat, sizeof *times);
    ib__cuda_session *sess = NULL;
    rc = IB_EXIT_OK;
    if (!files || !in || !out || !times) rc = ib__cli_fail(IB_ERR_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < o.n_named && rc == IB_EXIT_OK; i++) {
        size_t len = (size_t)(o.in_file[i] - 1 - o.in_name[i]);
        int32_t which = -1;
        for (int32_t j = 0; j < n_in; j++) {
            const char *nm = ib__cuda_model_input(m, j)->name;
            if (strlen(nm) == len && strncmp(nm, o.in_name[i], len) == 0) which = j;
        }
        if (which < 0) {
            rc = ib__cli_usage_error("run: the model has no input '%.*s'", (int)len, o.in_name[i]);
            break;
        }
        ib_tensor_release(&files[which]);
        s = ib__npy_read_file(o.in_file[i], &files[which]);
        if (s) rc = ib__cli_fail(s, "reading '%s'", o.in_file[i]);
        else if (!same_shape(&files[which], ib__cuda_model_input(m, which)))
            rc = ib__cli_usage_error("run: '%s' does not have input '%s''s dtype and shape (a CUDA "
                                     "artifact's shapes are fixed)", o.in_file[i],
                                     ib__cuda_model_input(m, which)->name);
        else in[which] = files[which].data;
    }
    for (int32_t j = 0; j < n_in && rc == IB_EXIT_OK; j++) {
        if (in[j]) continue;
        const ib__rt_io_entry *e = ib__cuda_model_input(m, j);
        if (e->dtype != IB_DTYPE_FLOAT32) {
            rc = ib__cli_usage_error("run: input '%s' is not float32: give it with --input", e->name);
            break;
        }
        in[j] = ib__aligned_alloc((size_t)e->nbytes + 1);
        files[j].data = in[j];
        files[j].owns_data = 1;
        if (!in[j]) {
            rc = ib__cli_fail(IB_ERR_OUT_OF_MEMORY, "out of memory");
            break;
        }
        uint64_t state = (uint64_t)o.seed ^ ib__fnv1a64(e->name, strlen(e->name));
        for (int64_t i = 0; i < e->nbytes / 4; i++)
            ((float *)in[j])[i] = (float)((double)(splitmix64(&state) >> 11) * 0x1p-53 * 2.0 - 1.0);
    }
    for (int32_t j = 0; j < n_out && rc == IB_EXIT_OK; j++) {
        out[j] = ib__malloc((size_t)ib__cuda_model_output(m, j)->nbytes + 1);
        if (!out[j]) rc = ib__cli_fail(IB_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (rc == IB_EXIT_OK) {
        s = ib__cuda_session_create(m, (int32_t)o.device, !o.no_graph, &sess);
        /* no driver or GPU here is the machine's lack, not a bad input: exit 1 */
        if (s) {
            ib__cli_fail(s, "cannot run '%s' (target %s)", o.dir, ib__cuda_model_target(m));
            rc = IB_EXIT_FAILURE;
        }
    }
    for (long long r = 0; r < o.repeat && rc == IB_EXIT_OK; r++) {
        double t0 = now_ms();
        s = ib__cuda_session_run(sess, (const void *const *)in, out);
        times[r] = now_ms() - t0;
        if (s) rc = ib__cli_fail(s, "running '%s'", o.dir);
    }
    for (int32_t j = 0; j < n_out && rc == IB_EXIT_OK; j++) {
        const ib__rt_io_entry *e = ib__cuda_model_output(m, j);
        print_output(e, out[j]);
        if (o.output_dir) {
            char path[4300];
            mkdir(o.output_dir, 0755);
            snprintf(path, sizeof path, "%s/%s.npy", o.output_dir, e->name);
            ib_tensor t = {(ib_dtype)e->dtype, e->rank, {0}, out[j], (size_t)e->nbytes};
            for (int32_t d = 0; d < e->rank; d++) t.shape[d] = e->dims[d];
            s = strchr(e->name, '/') || e->name[0] == '.' ? ib__error(IB_ERR_INVALID_ARGUMENT, "unsafe name")
                                                           : ib__npy_write_file(path, &t);
            if (s) rc = ib__cli_fail(s, "writing output '%s'", e->name);
        }
    }
    if (rc == IB_EXIT_OK && o.repeat > 1) {
        qsort(times, (size_t)o.repeat, sizeof *times, ib__cmp_double);
        printf("median %.3f ms over %lld runs (%s)\n", times[o.repeat / 2], o.repeat,
               o.no_graph ? "stream launches" : "CUDA graph");
    }
    ib__cuda_session_destroy(sess);
    for (int32_t j = 0; files && j < n_in; j++) ib_tensor_release(&files[j]);
    for (int32_t j = 0; out && j < n_out; j++) ib__free(out[j]);
    ib__free(files);
    ib__free(in);
    ib__free(out);
    ib__free(times);
    ib__cuda_model_destroy(m);
    return rc;
}
