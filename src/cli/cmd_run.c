/* `inferbooster run MODEL`: feeds inputs from .npy files (or seeded random data), runs
 * the model, prints each output's shape and checksums, optionally writes outputs as
 * .npy and reports the median run time. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "api/model_internal.h"
#include "cli/cli.h"
#include "cli/npy.h"
#include "runtime/cuda_runtime.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster run MODEL.onnx|ARTIFACT_DIR [options]\n"
            "\n"
            "Runs the compiled model (an artifact directory from 'inferbooster compile' is\n"
            "loaded as is).\n"
            "\n"
            "  --input NAME=FILE.npy  feed input NAME from a .npy file (repeatable); its dtype\n"
            "                         must match the model's, and its shape too, except that\n"
            "                         symbolic dimensions take the file's size\n"
            "  --dim NAME=VALUE       size of symbolic dimension NAME for random inputs\n"
            "                         (default 1)\n"
            "  --seed S               seed for random inputs (default 0)\n"
            "  --output-dir DIR       write each output to DIR/NAME.npy (DIR is created)\n"
            "  --threads N            threads for the session (default: usable CPUs)\n"
            "  --reference            run the reference executor\n"
            "  --compile              compile even a model too small to gain from it\n"
            "  --no-cache             compile without the compiled-model cache\n"
            "  --cache-dir DIR        the cache (default: INFERBOOSTER_CACHE_DIR, else\n"
            "                         $XDG_CACHE_HOME/inferbooster or ~/.cache/inferbooster)\n"
            "  --repeat N             run N times and print the median run time\n"
            "\n"
            "Inputs not given get random data from a SplitMix64 generator seeded by --seed and\n"
            "the input's name: floats uniform in [-1, 1); integers in [0, 100), or in\n"
            "[0, n) when the input indexes a Gather over a known axis of size n < 100;\n"
            "bools 0 or 1. For each output the command prints dtype, shape, sum, mean, min,\n"
            "max and a 64-bit FNV-1a hash of its bytes.\n");
}

typedef struct name_value {
    const char *name;
    const char *value;
} name_value;

typedef struct run_options {
    const char *model_path;
    name_value *inputs;
    int32_t n_inputs;
    name_value *dims;
    int64_t *dim_values;
    bool *dim_used;
    int32_t n_dims;
    const char *output_dir;
    bool reference;
    bool compile_all;
    bool no_cache;
    const char *cache_dir;
    int threads;
    uint64_t seed;
    int repeat;
} run_options;

static bool split_name_value(const char *arg, const char *opt, name_value *out) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || eq[1] == '\0') {
        ib__cli_usage_error("%s expects NAME=VALUE, not '%s'", opt, arg);
        return false;
    }
    /* The name is the text before the first '='; it points into argv, so copy it. */
    size_t n = (size_t)(eq - arg);
    char *name = ib__malloc(n + 1);
    if (!name) return false;
    memcpy(name, arg, n);
    name[n] = '\0';
    out->name = name;
    out->value = eq + 1;
    return true;
}

static void free_options(run_options *o) {
    for (int32_t i = 0; i < o->n_inputs; i++) ib__free((void *)o->inputs[i].name);
    for (int32_t i = 0; i < o->n_dims; i++) ib__free((void *)o->dims[i].name);
    ib__free(o->inputs);
    ib__free(o->dims);
    ib__free(o->dim_values);
    ib__free(o->dim_used);
}

/* Returns -1 to continue, else the exit code. */
static int parse_args(int argc, char **argv, run_options *o) {
    memset(o, 0, sizeof *o);
    o->repeat = 0;
    o->inputs = ib__calloc((size_t)argc, sizeof *o->inputs);
    o->dims = ib__calloc((size_t)argc, sizeof *o->dims);
    o->dim_values = ib__calloc((size_t)argc, sizeof *o->dim_values);
    o->dim_used = ib__calloc((size_t)argc, sizeof *o->dim_used);
    if (!o->inputs || !o->dims || !o->dim_values || !o->dim_used) {
        fprintf(stderr, "inferbooster: out of memory\n");
        return IB_EXIT_FAILURE;
    }
    const char **strings = ib__calloc((size_t)argc * 2, sizeof *strings);
    if (!strings) {
        fprintf(stderr, "inferbooster: out of memory\n");
        return IB_EXIT_FAILURE;
    }
    ib__cli_list inputs = {strings, 0, (size_t)argc}, dims = {strings + argc, 0, (size_t)argc};
    long long threads = 0, seed = 0, repeat = 0;
    const ib__cli_opt options[] = {
        {"--input", NULL, IB_CLI_LIST, &inputs, 0, 0},
        {"--dim", NULL, IB_CLI_LIST, &dims, 0, 0},
        {"--output-dir", NULL, IB_CLI_STRING, &o->output_dir, 0, 0},
        {"--threads", NULL, IB_CLI_INT, &threads, 0, 4096},
        {"--seed", NULL, IB_CLI_INT, &seed, 0, INT64_MAX},
        {"--repeat", NULL, IB_CLI_INT, &repeat, 1, 1000000},
        {"--reference", NULL, IB_CLI_FLAG, &o->reference, 0, 0},
        {"--compile", NULL, IB_CLI_FLAG, &o->compile_all, 0, 0},
        {"--no-cache", NULL, IB_CLI_FLAG, &o->no_cache, 0, 0},
        {"--cache-dir", NULL, IB_CLI_STRING, &o->cache_dir, 0, 0},
    };
    int rc = ib__cli_parse("run", argc, argv, options, sizeof options / sizeof *options,
                           &o->model_path, usage);
    o->threads = (int)threads;
    o->seed = (uint64_t)seed;
    o->repeat = (int)repeat;
    for (size_t i = 0; rc < 0 && i < inputs.n; i++) {
        if (!split_name_value(inputs.items[i], "--input", &o->inputs[o->n_inputs])) rc = IB_EXIT_USAGE;
        for (int32_t k = 0; rc < 0 && k < o->n_inputs; k++)
            if (strcmp(o->inputs[k].name, o->inputs[o->n_inputs].name) == 0)
                rc = ib__cli_usage_error("input '%s' given twice", o->inputs[k].name);
        if (o->inputs[o->n_inputs].name) o->n_inputs++;
    }
    for (size_t i = 0; rc < 0 && i < dims.n; i++) {
        long long x;
        if (!split_name_value(dims.items[i], "--dim", &o->dims[o->n_dims])) rc = IB_EXIT_USAGE;
        else if (!ib__cli_parse_int(o->dims[o->n_dims++].value, 0, (long long)1 << 40, "--dim value", &x))
            rc = IB_EXIT_USAGE;
        else o->dim_values[o->n_dims - 1] = x;
    }
    ib__free(strings);
    if (rc >= 0) return rc;
    if (!o->model_path) return ib__cli_no_model("run", usage);
    return -1;
}

/* ---- Random inputs --------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Integer inputs that index a Gather must stay inside the gathered axis. */
static int64_t integer_bound(const ib__graph *g, const char *name) {
    int64_t bound = 100;
    for (int32_t i = 0; g && i < g->n_nodes; i++) {
        const ib__node *n = g->nodes[i];
        if (n->op != IB_OP_GATHER || n->n_inputs < 2 || !n->inputs[0] || !n->inputs[1] ||
            strcmp(n->inputs[1]->name, name) != 0)
            continue;
        const ib__value *data = n->inputs[0];
        int64_t axis = 0;
        if (ib__attr_int(n, "axis", 0, &axis) != IB_OK || data->rank <= 0) continue;
        if (axis < 0) axis += data->rank;
        if (axis < 0 || axis >= data->rank) continue;
        if (data->dims[axis] > 0 && data->dims[axis] < bound) bound = data->dims[axis];
    }
    return bound;
}

static ib_status random_tensor(const ib_value_info *info, run_options *o, const ib__graph *g,
                               ib_tensor *out) {
    if (info->rank < 0)
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "input '%s' has unknown rank: give it with --input %s=FILE.npy",
                         info->name, info->name);
    if (ib_dtype_size(info->dtype) == 0)
        return ib__error(IB_ERR_UNSUPPORTED,
                         "input '%s' has dtype %s, which random data cannot fill: give it "
                         "with --input",
                         info->name, ib_dtype_name(info->dtype));
    int64_t dims[IB_MAX_RANK];
    for (int32_t d = 0; d < info->rank; d++) {
        dims[d] = info->shape[d];
        if (dims[d] >= 0) continue;
        dims[d] = 1;
        for (int32_t k = 0; k < o->n_dims; k++)
            if (info->dim_names[d] && strcmp(info->dim_names[d], o->dims[k].name) == 0) {
                dims[d] = o->dim_values[k];
                o->dim_used[k] = true;
            }
    }
    IB_TRY(ib__tensor_alloc(out, info->dtype, info->rank, dims));
    uint64_t state = o->seed ^ ib__fnv1a64(info->name, strlen(info->name));
    int64_t count = ib_tensor_element_count(out);
    if (ib__dtype_is_float(info->dtype)) {
        for (int64_t i = 0; i < count; i++) {
            double u = (double)(splitmix64(&state) >> 11) * (1.0 / 9007199254740992.0);
            ib__store_f64(out->data, info->dtype, i, 2.0 * u - 1.0);
        }
    } else if (info->dtype == IB_DTYPE_BOOL) {
        for (int64_t i = 0; i < count; i++)
            ib__store_i64(out->data, info->dtype, i, (int64_t)(splitmix64(&state) & 1));
    } else {
        uint64_t bound = (uint64_t)integer_bound(g, info->name);
        for (int64_t i = 0; i < count; i++)
            ib__store_i64(out->data, info->dtype, i, (int64_t)(splitmix64(&state) % bound));
    }
    return IB_OK;
}

static ib_status check_file_input(const ib_value_info *info, const char *file, const ib_tensor *t) {
    char a[160], b[160];
    if (info->dtype != IB_DTYPE_UNDEFINED && t->dtype != info->dtype)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "%s holds %s but input '%s' is %s", file,
                         ib_dtype_name(t->dtype), info->name, ib_dtype_name(info->dtype));
    if (info->rank < 0) return IB_OK;
    bool ok = t->rank == info->rank;
    for (int32_t d = 0; ok && d < t->rank; d++)
        if (info->shape[d] >= 0 && info->shape[d] != t->shape[d]) ok = false;
    if (!ok)
        return ib__error(IB_ERR_SHAPE, "%s has shape %s but input '%s' is %s", file,
                         ib__cli_dims_string(t->shape, t->rank, a, sizeof a), info->name,
                         ib__cli_shape_string(info, b, sizeof b));
    return IB_OK;
}

/* ---- Outputs --------------------------------------------------------------------- */

static void print_output(const char *name, const ib_tensor *t) {
    char dims[160];
    printf("output '%s': %s %s\n", name, ib_dtype_name(t->dtype),
           ib__cli_dims_string(t->shape, t->rank, dims, sizeof dims));
    int64_t count = ib_tensor_element_count(t);
    uint64_t hash = ib__fnv1a64(t->data, t->nbytes);
    if (count <= 0 || ib_dtype_size(t->dtype) == 0 || !t->data) {
        printf("  sum=0 mean=nan min=nan max=nan fnv1a=%016llx\n", (unsigned long long)hash);
        return;
    }
    double sum = 0, lo = 0, hi = 0;
    for (int64_t i = 0; i < count; i++) {
        double v = ib__load_f64(t->data, t->dtype, i);
        sum += v;
        if (i == 0 || v < lo) lo = v;
        if (i == 0 || v > hi) hi = v;
    }
    printf("  sum=%.9g mean=%.9g min=%.9g max=%.9g fnv1a=%016llx\n", sum, sum / (double)count, lo,
           hi, (unsigned long long)hash);
}

/* A file name from an output name: no separators, no "..", no leading dot. */
static void safe_file_name(const char *name, size_t index, char *buf, size_t cap) {
    size_t n = 0;
    for (const char *p = name; *p && n + 5 < cap; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        if (c == '.' && (n == 0 || buf[n - 1] == '.')) ok = false;
        buf[n++] = ok ? c : '_';
    }
    buf[n] = '\0';
    if (n == 0) snprintf(buf, cap, "output_%zu", index);
}

/* mkdir -p: creates dir and any missing parents. */
static bool make_dirs(const char *dir) {
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) {
        errno = ENAMETOOLONG;
        return false;
    }
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST) return false;
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0) return false;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return false;
    }
    return true;
}

static int write_outputs(const char *dir, size_t n, const char *const *names, const ib_tensor *outs) {
    if (!make_dirs(dir))
        return ib__cli_usage_error("cannot create output directory '%s': %s", dir, strerror(errno));
    char (*files)[200] = ib__calloc(n ? n : 1, sizeof *files);
    if (!files) return IB_EXIT_FAILURE;
    int rc = IB_EXIT_OK;
    for (size_t i = 0; i < n && rc == IB_EXIT_OK; i++) {
        safe_file_name(names[i], i, files[i], sizeof files[i] - 16);
        /* Two names may sanitise alike ("a/b" and "a_b"); keep both. */
        for (size_t k = 0; k < i; k++)
            if (strcmp(files[k], files[i]) == 0) {
                size_t len = strlen(files[i]);
                snprintf(files[i] + len, sizeof files[i] - len, "_%zu", i);
                break;
            }
        char path[4096];
        int len = snprintf(path, sizeof path, "%s/%s.npy", dir, files[i]);
        if (len < 0 || (size_t)len >= sizeof path) {
            rc = ib__cli_usage_error("output path too long in '%s'", dir);
            break;
        }
        ib_status s = ib__npy_write_file(path, &outs[i]);
        if (s != IB_OK) rc = ib__cli_fail(s, "cannot write output '%s'", names[i]);
        else printf("wrote %s\n", path);
    }
    ib__free(files);
    return rc;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- Main ------------------------------------------------------------------------ */

typedef struct run_state {
    ib_model *model; /* NULL when running an artifact */
    ib_session *session;
    size_t n_in, n_out;
    ib_tensor *inputs;
    const char **input_names;
    ib_tensor *outputs;
    const char **output_names;
    double *times;
} run_state;

static void release_outputs(run_state *st) {
    for (size_t i = 0; i < st->n_out; i++) ib_tensor_release(&st->outputs[i]);
}

static void free_state(run_state *st) {
    if (st->inputs)
        for (size_t i = 0; i < st->n_in; i++) ib_tensor_release(&st->inputs[i]);
    if (st->outputs) release_outputs(st);
    ib__free(st->inputs);
    ib__free(st->input_names);
    ib__free(st->outputs);
    ib__free(st->output_names);
    ib__free(st->times);
    ib_session_destroy(st->session);
    ib_model_destroy(st->model);
}

static ib_status input_info(const run_state *st, size_t i, ib_value_info *info) {
    return st->model ? ib_model_input_info(st->model, i, info)
                     : ib_session_input_info(st->session, i, info);
}

static int prepare_inputs(run_options *o, run_state *st) {
    const ib__graph *g = st->model ? ib__model_graph(st->model) : NULL;
    for (int32_t k = 0; k < o->n_inputs; k++) {
        bool found = false;
        for (size_t i = 0; i < st->n_in && !found; i++) {
            ib_value_info info;
            found = input_info(st, i, &info) == IB_OK &&
                    strcmp(info.name, o->inputs[k].name) == 0;
        }
        if (!found)
            return ib__cli_usage_error("model '%s' has no input named '%s'", o->model_path,
                                       o->inputs[k].name);
    }
    for (size_t i = 0; i < st->n_in; i++) {
        ib_value_info info;
        ib_status s = input_info(st, i, &info);
        if (s != IB_OK) return ib__cli_fail(s, "describing input %zu", i);
        st->input_names[i] = info.name;
        const char *file = NULL;
        for (int32_t k = 0; k < o->n_inputs; k++)
            if (strcmp(o->inputs[k].name, info.name) == 0) file = o->inputs[k].value;
        char shape[160];
        if (file) {
            s = ib__npy_read_file(file, &st->inputs[i]);
            if (s == IB_OK) s = check_file_input(&info, file, &st->inputs[i]);
            if (s != IB_OK) return ib__cli_fail(s, "input '%s' from '%s'", info.name, file);
            printf("input '%s': %s %s from %s\n", info.name, ib_dtype_name(st->inputs[i].dtype),
                   ib__cli_dims_string(st->inputs[i].shape, st->inputs[i].rank, shape, sizeof shape),
                   file);
        } else {
            s = random_tensor(&info, o, g, &st->inputs[i]);
            if (s != IB_OK) return ib__cli_fail(s, "input '%s'", info.name);
            printf("input '%s': %s %s random (seed %llu)\n", info.name,
                   ib_dtype_name(st->inputs[i].dtype),
                   ib__cli_dims_string(st->inputs[i].shape, st->inputs[i].rank, shape, sizeof shape),
                   (unsigned long long)o->seed);
        }
    }
    for (int32_t k = 0; k < o->n_dims; k++)
        if (!o->dim_used[k])
            fprintf(stderr, "inferbooster: warning: --dim %s matches no symbolic dimension of a "
                            "random input\n", o->dims[k].name);
    return IB_EXIT_OK;
}

static int create_session(run_options *o, run_state *st) {
    ib_session_options opts;
    ib_session_options_init(&opts);
    opts.num_threads = o->threads;
    if (o->reference) opts.use_reference = 1;
    else if (o->compile_all) opts.use_reference = -1;
    opts.no_cache = o->no_cache;
    opts.cache_dir = o->cache_dir;
    ib_status s = st->model ? ib_session_create(st->model, &opts, &st->session)
                            : ib_session_create_from_artifact(o->model_path, &opts, &st->session);
    if (s != IB_OK) return ib__cli_fail(s, "cannot create a session for '%s'", o->model_path);
    return IB_EXIT_OK;
}

static int execute(run_options *o, run_state *st) {
    ib_status s;
    int runs = o->repeat > 0 ? o->repeat : 1;
    for (int r = 0; r < runs; r++) {
        release_outputs(st);
        double t0 = now_ms();
        s = ib_session_run(st->session, st->n_in, st->input_names, st->inputs, st->n_out,
                           st->output_names, st->outputs);
        st->times[r] = now_ms() - t0;
        if (s != IB_OK) return ib__cli_fail(s, "running '%s'", o->model_path);
    }
    for (size_t i = 0; i < st->n_out; i++) print_output(st->output_names[i], &st->outputs[i]);
    printf("executor: %s\n", ib_session_executor(st->session));
    if (o->repeat > 0) {
        qsort(st->times, (size_t)runs, sizeof *st->times, ib__cmp_double);
        double median = runs % 2 ? st->times[runs / 2]
                                 : 0.5 * (st->times[runs / 2 - 1] + st->times[runs / 2]);
        printf("median: %.3f ms over %d run%s (min %.3f ms)\n", median, runs, runs == 1 ? "" : "s",
               st->times[0]);
    }
    if (o->output_dir) return write_outputs(o->output_dir, st->n_out, st->output_names, st->outputs);
    return IB_EXIT_OK;
}

int ib__cmd_run(int argc, char **argv) {
    run_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) {
        free_options(&o);
        return rc;
    }
    if (ib__cuda_is_artifact(o.model_path)) { /* runs on a GPU, through the CUDA runtime */
        free_options(&o);
        return ib__cmd_run_cuda(argc, argv);
    }
    run_state st;
    memset(&st, 0, sizeof st);
    ib_status s = IB_OK;
    if (ib__cli_is_artifact(o.model_path)) {
        rc = create_session(&o, &st);
        if (rc != IB_EXIT_OK) {
            free_state(&st);
            free_options(&o);
            return rc;
        }
        st.n_in = ib_session_input_count(st.session);
        st.n_out = ib_session_output_count(st.session);
    } else {
        s = ib_model_load_file(o.model_path, &st.model);
        if (s != IB_OK) {
            rc = ib__cli_fail(s, "cannot load model '%s'", o.model_path);
            free_options(&o);
            return rc;
        }
        st.n_in = ib_model_input_count(st.model);
        st.n_out = ib_model_output_count(st.model);
    }
    int runs = o.repeat > 0 ? o.repeat : 1;
    st.inputs = ib__calloc(st.n_in + 1, sizeof *st.inputs);
    st.input_names = ib__calloc(st.n_in + 1, sizeof *st.input_names);
    st.outputs = ib__calloc(st.n_out + 1, sizeof *st.outputs);
    st.output_names = ib__calloc(st.n_out + 1, sizeof *st.output_names);
    st.times = ib__calloc((size_t)runs, sizeof *st.times);
    if (!st.inputs || !st.input_names || !st.outputs || !st.output_names || !st.times) {
        fprintf(stderr, "inferbooster: out of memory\n");
        rc = IB_EXIT_FAILURE;
    } else {
        rc = IB_EXIT_OK;
        for (size_t i = 0; i < st.n_out && rc == IB_EXIT_OK; i++) {
            ib_value_info info;
            s = st.model ? ib_model_output_info(st.model, i, &info)
                         : ib_session_output_info(st.session, i, &info);
            if (s != IB_OK) rc = ib__cli_fail(s, "describing output %zu", i);
            else st.output_names[i] = info.name;
        }
        if (rc == IB_EXIT_OK && !st.session) rc = create_session(&o, &st);
        if (rc == IB_EXIT_OK) rc = prepare_inputs(&o, &st);
        if (rc == IB_EXIT_OK) rc = execute(&o, &st);
    }
    if (fflush(stdout) != 0 && rc == IB_EXIT_OK) rc = IB_EXIT_FAILURE;
    free_state(&st);
    free_options(&o);
    return rc;
}
