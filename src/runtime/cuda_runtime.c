/* Runs CUDA artifacts: parses the launch plan, and drives the GPU through the CUDA driver
 * API resolved with dlsym from libcuda.so.1 (declared here from its documented C
 * signatures; no CUDA header or library is needed to build). */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codegen/cuda/cuda_codegen.h"
#include "runtime/cuda_runtime.h"

/* ---- The artifact ---------------------------------------------------------------------- */

typedef enum arg_space { ARG_NULL = 0, ARG_ARENA, ARG_WEIGHTS, ARG_INPUT, ARG_OUTPUT } arg_space;

typedef struct plan_arg {
    arg_space space;
    int64_t at; /* byte offset (arena, weights) or io index */
} plan_arg;

typedef struct plan_kernel {
    char name[64];
    int64_t grid[3];
    int32_t block[3];
    int32_t smem;
    int32_t n_args;
    plan_arg args[IB_MAX_KERNEL_ARGS + IB_MAX_KERNEL_ARGS + IB_MAX_EPILOGUE];
} plan_kernel;

typedef struct plan_copy {
    int32_t output;
    plan_arg src;
    int64_t nbytes;
} plan_copy;

struct ib__cuda_model {
    char target[32];
    int32_t sm;
    size_t arena_bytes, weights_bytes;
    unsigned char *weights;
    unsigned char *fatbin;
    size_t fatbin_bytes;
    int32_t n_in, n_out, n_kernels, n_copies;
    ib__rt_io_entry *io; /* inputs, then outputs; names owned */
    plan_kernel *kernels;
    plan_copy *copies;
};

bool ib__cuda_is_artifact(const char *dir) {
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof p, "%s/cuda_plan.txt", dir ? dir : "");
    return dir && stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static ib_status read_whole(const char *path, size_t limit, unsigned char **out, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return ib__error(IB_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > limit) {
        fclose(f);
        return ib__error(IB_ERR_INVALID_MODEL, "'%s' is not a regular file of at most %zu bytes",
                         path, limit);
    }
    size_t size = (size_t)sb.st_size;
    unsigned char *buf = ib__aligned_alloc(size + 1);
    if (!buf) {
        fclose(f);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory reading '%s'", path);
    }
    size_t got = size ? fread(buf, 1, size, f) : 0;
    fclose(f);
    if (got != size) {
        ib__aligned_free(buf);
        return ib__error(IB_ERR_IO, "short read of '%s'", path);
    }
    buf[size] = 0;
    *out = buf;
    *n = size;
    return IB_OK;
}

void ib__cuda_model_destroy(ib__cuda_model *m) {
    if (!m) return;
    if (m->io)
        for (int32_t i = 0; i < m->n_in + m->n_out; i++) ib__free((void *)m->io[i].name);
    ib__free(m->io);
    ib__free(m->kernels);
    ib__free(m->copies);
    ib__aligned_free(m->weights);
    ib__aligned_free(m->fatbin);
    ib__free(m);
}

/* A line-oriented reader over the plan text: every field is checked. */
typedef struct reader {
    char *p;
    int line;
    const char *path;
} reader;

static bool next_line(reader *r, char **words, int max, int *n) {
    if (!*r->p) return false;
    char *end = strchr(r->p, '\n');
    if (end) *end = '\0';
    r->line++;
    *n = 0;
    char *save = NULL;
    for (char *w = strtok_r(r->p, " ", &save); w && *n < max; w = strtok_r(NULL, " ", &save))
        words[(*n)++] = w;
    r->p = end ? end + 1 : r->p + strlen(r->p);
    return true;
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static ib_status bad(const reader *r, const char *what) {
    return ib__error(IB_ERR_INVALID_MODEL, "'%s' line %d: %s", r->path, r->line, what);
}

static bool parse_arg(const char *w, const ib__cuda_model *m, plan_arg *a) {
    int64_t v;
    a->space = ARG_NULL;
    a->at = 0;
    if (strcmp(w, "-") == 0) return true;
    switch (w[0]) {
    case 'A': a->space = ARG_ARENA; return parse_i64(w + 1, 0, (int64_t)m->arena_bytes, &a->at);
    case 'W': a->space = ARG_WEIGHTS; return parse_i64(w + 1, 0, (int64_t)m->weights_bytes, &a->at);
    case 'I':
        a->space = ARG_INPUT;
        if (!parse_i64(w + 1, 0, m->n_in - 1, &v)) return false;
        a->at = v;
        return true;
    case 'O':
        a->space = ARG_OUTPUT;
        if (!parse_i64(w + 1, 0, m->n_out - 1, &v)) return false;
        a->at = v;
        return true;
    default: return false;
    }
}

static ib_status parse_io(reader *r, char **w, int n, const char *kind, int32_t index,
                          ib__rt_io_entry *e) {
    int64_t v, dtype, rank;
    if (n < 6 || strcmp(w[0], kind) != 0 || !parse_i64(w[1], index, index, &v) ||
        !parse_i64(w[2], 0, (int64_t)1 << 40, &e->nbytes) || !parse_i64(w[3], 0, 64, &dtype) ||
        !parse_i64(w[4], 0, IB_MAX_RANK, &rank) || n != 6 + rank)
        return bad(r, "malformed input/output line");
    e->dtype = (int32_t)dtype;
    e->rank = (int32_t)rank;
    for (int32_t d = 0; d < rank; d++)
        if (!parse_i64(w[5 + d], 0, (int64_t)1 << 40, &e->dims[d])) return bad(r, "bad dim");
    size_t len = strlen(w[5 + rank]);
    char *name = ib__malloc(len + 1);
    if (!name) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory reading the plan");
    memcpy(name, w[5 + rank], len + 1);
    e->name = name;
    return IB_OK;
}

static ib_status parse_plan(ib__cuda_model *m, reader *r) {
    char *w[64];
    int n;
    int64_t v, n_in, n_out, count;
    if (!next_line(r, w, 64, &n) || n != 2 || strcmp(w[0], IB_CUDA_PLAN_FORMAT) != 0)
        return bad(r, "not an InferBooster CUDA plan");
    if (!parse_i64(w[1], IB_CUDA_PLAN_VERSION, IB_CUDA_PLAN_VERSION, &v))
        return bad(r, "unsupported plan version");
    if (!next_line(r, w, 64, &n) || n != 3 || strcmp(w[0], "target") != 0 ||
        !parse_i64(w[2], 50, 1000, &v))
        return bad(r, "expected 'target NAME SM'");
    snprintf(m->target, sizeof m->target, "%s", w[1]);
    m->sm = (int32_t)v;
    if (!next_line(r, w, 64, &n) || n != 2 || strcmp(w[0], "arena") != 0 ||
        !parse_i64(w[1], 0, (int64_t)1 << 40, &v))
        return bad(r, "expected 'arena BYTES'");
    m->arena_bytes = (size_t)v;
    if (!next_line(r, w, 64, &n) || n != 3 || strcmp(w[0], "weights") != 0 ||
        !parse_i64(w[1], 0, (int64_t)1 << 40, &v) || (size_t)v != m->weights_bytes)
        return bad(r, "the weights line does not match weights.bin's size");
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)ib__rt_hash(m->weights, m->weights_bytes));
    if (strcmp(hash, w[2]) != 0) return bad(r, "weights.bin does not match the plan (hash)");
    if (!next_line(r, w, 64, &n) || n != 3 || strcmp(w[0], "io") != 0 ||
        !parse_i64(w[1], 0, 4096, &n_in) || !parse_i64(w[2], 0, 4096, &n_out))
        return bad(r, "expected 'io INPUTS OUTPUTS'");
    m->n_in = (int32_t)n_in;
    m->n_out = (int32_t)n_out;
    m->io = ib__calloc((size_t)(n_in + n_out) + 1, sizeof *m->io);
    if (!m->io) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory reading the plan");
    for (int32_t i = 0; i < m->n_in + m->n_out; i++) {
        bool out = i >= m->n_in;
        if (!next_line(r, w, 64, &n)) return bad(r, "truncated plan");
        IB_TRY(parse_io(r, w, n, out ? "output" : "input", out ? i - m->n_in : i, &m->io[i]));
    }
    if (!next_line(r, w, 64, &n) || n != 2 || strcmp(w[0], "kernels") != 0 ||
        !parse_i64(w[1], 0, 1 << 20, &count))
        return bad(r, "expected 'kernels N'");
    m->n_kernels = (int32_t)count;
    m->kernels = ib__calloc((size_t)count + 1, sizeof *m->kernels);
    if (!m->kernels) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory reading the plan");
    for (int32_t k = 0; k < m->n_kernels; k++) {
        plan_kernel *pk = &m->kernels[k];
        int64_t g[3], b[3], smem, na;
        if (!next_line(r, w, 64, &n) || n < 11 || strcmp(w[0], "kernel") != 0 ||
            !parse_i64(w[1], k, k, &v) || strlen(w[2]) >= sizeof pk->name)
            return bad(r, "malformed kernel line");
        snprintf(pk->name, sizeof pk->name, "%s", w[2]);
        for (int d = 0; d < 3; d++)
            if (!parse_i64(w[3 + d], 1, 0x7fffffff, &g[d]) || !parse_i64(w[6 + d], 1, 1024, &b[d]))
                return bad(r, "bad grid or block");
        if (b[0] * b[1] * b[2] > 1024 || !parse_i64(w[9], 0, 256 * 1024, &smem) ||
            !parse_i64(w[10], 0, (int64_t)(sizeof pk->args / sizeof *pk->args), &na) || n != 11 + na)
            return bad(r, "bad block size, shared memory or arguments");
        for (int d = 0; d < 3; d++) {
            pk->grid[d] = g[d];
            pk->block[d] = (int32_t)b[d];
        }
        pk->smem = (int32_t)smem;
        pk->n_args = (int32_t)na;
        for (int32_t a = 0; a < na; a++)
            if (!parse_arg(w[11 + a], m, &pk->args[a])) return bad(r, "bad kernel argument");
    }
    if (!next_line(r, w, 64, &n) || n != 2 || strcmp(w[0], "copies") != 0 ||
        !parse_i64(w[1], 0, m->n_out, &count))
        return bad(r, "expected 'copies N'");
    m->n_copies = (int32_t)count;
    m->copies = ib__calloc((size_t)count + 1, sizeof *m->copies);
    if (!m->copies) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory reading the plan");
    for (int32_t c = 0; c < m->n_copies; c++) {
        plan_copy *pc = &m->copies[c];
        if (!next_line(r, w, 64, &n) || n != 4 || strcmp(w[0], "copy") != 0 ||
            !parse_i64(w[1], 0, m->n_out - 1, &v) || !parse_arg(w[2], m, &pc->src) ||
            !parse_i64(w[3], 0, (int64_t)1 << 40, &pc->nbytes) || pc->src.space == ARG_NULL)
            return bad(r, "malformed copy line");
        pc->output = (int32_t)v;
        if (pc->nbytes != m->io[m->n_in + pc->output].nbytes) return bad(r, "copy size mismatch");
    }
    if (!next_line(r, w, 64, &n) || n != 1 || strcmp(w[0], "end") != 0) return bad(r, "expected 'end'");
    return IB_OK;
}

ib_status ib__cuda_model_open(const char *dir, ib__cuda_model **out) {
    if (!dir || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "artifact directory required");
    ib__cuda_model *m = ib__calloc(1, sizeof *m);
    if (!m) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory opening an artifact");
    char path[4200];
    unsigned char *text = NULL;
    size_t text_n = 0;
    snprintf(path, sizeof path, "%s/weights.bin", dir);
    ib_status st = read_whole(path, (size_t)1 << 40, &m->weights, &m->weights_bytes);
    if (st == IB_OK) {
        snprintf(path, sizeof path, "%s/model.fatbin", dir);
        st = read_whole(path, (size_t)1 << 32, &m->fatbin, &m->fatbin_bytes);
        if (st == IB_OK && m->fatbin_bytes < 16)
            st = ib__error(IB_ERR_INVALID_MODEL, "'%s' is too short to be a fat binary", path);
    }
    if (st == IB_OK) {
        snprintf(path, sizeof path, "%s/cuda_plan.txt", dir);
        st = read_whole(path, (size_t)64 << 20, &text, &text_n);
    }
    if (st == IB_OK && strlen((const char *)text) != text_n)
        st = ib__error(IB_ERR_INVALID_MODEL, "'%s' holds a NUL byte", path);
    if (st == IB_OK) {
        reader r = {(char *)text, 0, path};
        st = parse_plan(m, &r);
    }
    ib__aligned_free(text);
    if (st) {
        ib__cuda_model_destroy(m);
        return st;
    }
    *out = m;
    return IB_OK;
}

int32_t ib__cuda_model_input_count(const ib__cuda_model *m) { return m->n_in; }
int32_t ib__cuda_model_output_count(const ib__cuda_model *m) { return m->n_out; }
const ib__rt_io_entry *ib__cuda_model_input(const ib__cuda_model *m, int32_t i) {
    return i >= 0 && i < m->n_in ? &m->io[i] : NULL;
}
const ib__rt_io_entry *ib__cuda_model_output(const ib__cuda_model *m, int32_t i) {
    return i >= 0 && i < m->n_out ? &m->io[m->n_in + i] : NULL;
}
int32_t ib__cuda_model_kernel_count(const ib__cuda_model *m) { return m->n_kernels; }
const char *ib__cuda_model_target(const ib__cuda_model *m) { return m->target; }

/* ---- The driver API -------------------------------------------------------------------- */

typedef int cu_result; /* CUresult; 0 = CUDA_SUCCESS */
typedef int cu_device;
typedef void *cu_context, *cu_module, *cu_function, *cu_stream, *cu_graph, *cu_graph_exec;
typedef unsigned long long cu_ptr; /* CUdeviceptr */

enum { CU_STREAM_NON_BLOCKING = 1, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1 };

typedef struct cu_api {
    void *lib;
    cu_result (*init)(unsigned);
    cu_result (*device_get_count)(int *);
    cu_result (*device_get)(cu_device *, int);
    cu_result (*primary_retain)(cu_context *, cu_device);
    cu_result (*primary_release)(cu_device);
    cu_result (*ctx_set_current)(cu_context);
    cu_result (*module_load_data)(cu_module *, const void *);
    cu_result (*module_unload)(cu_module);
    cu_result (*module_get_function)(cu_function *, cu_module, const char *);
    cu_result (*mem_alloc)(cu_ptr *, size_t);
    cu_result (*mem_free)(cu_ptr);
    cu_result (*mem_host_alloc)(void **, size_t, unsigned);
    cu_result (*mem_free_host)(void *);
    cu_result (*memcpy_htod)(cu_ptr, const void *, size_t);
    cu_result (*memcpy_htod_async)(cu_ptr, const void *, size_t, cu_stream);
    cu_result (*memcpy_dtoh_async)(void *, cu_ptr, size_t, cu_stream);
    cu_result (*memcpy_dtod_async)(cu_ptr, cu_ptr, size_t, cu_stream);
    cu_result (*memset_d8_async)(cu_ptr, unsigned char, size_t, cu_stream);
    cu_result (*stream_create)(cu_stream *, unsigned);
    cu_result (*stream_destroy)(cu_stream);
    cu_result (*stream_synchronize)(cu_stream);
    cu_result (*launch_kernel)(cu_function, unsigned, unsigned, unsigned, unsigned, unsigned,
                               unsigned, unsigned, cu_stream, void **, void **);
    cu_result (*stream_begin_capture)(cu_stream, int);
    cu_result (*stream_end_capture)(cu_stream, cu_graph *);
    cu_result (*graph_instantiate)(cu_graph_exec *, cu_graph, unsigned long long);
    cu_result (*graph_launch)(cu_graph_exec, cu_stream);
    cu_result (*graph_exec_destroy)(cu_graph_exec);
    cu_result (*graph_destroy)(cu_graph);
    cu_result (*get_error_string)(cu_result, const char **);
} cu_api;

static void *sym(void *lib, const char *name, const char *v2) {
    void *p = v2 ? dlsym(lib, v2) : NULL;
    return p ? p : dlsym(lib, name);
}

/* Loads the driver library and resolves the entry points; the versioned (_v2) names are
 * the ones CUDA headers map the plain names to. */
static ib_status cu_load(cu_api *a) {
    memset(a, 0, sizeof *a);
    a->lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!a->lib)
        return ib__error(IB_ERR_UNSUPPORTED, "no CUDA driver: libcuda.so.1 cannot be loaded (%s)",
                         dlerror());
#define CU_SYM(field, name, v2)                                                              \
    do {                                                                                     \
        *(void **)&a->field = sym(a->lib, name, v2);                                         \
        if (!a->field) {                                                                     \
            dlclose(a->lib);                                                                 \
            a->lib = NULL;                                                                   \
            return ib__error(IB_ERR_UNSUPPORTED, "no usable CUDA driver: libcuda.so.1 lacks %s", \
                             name);                                                          \
        }                                                                                    \
    } while (0)
    CU_SYM(init, "cuInit", NULL);
    CU_SYM(device_get_count, "cuDeviceGetCount", NULL);
    CU_SYM(device_get, "cuDeviceGet", NULL);
    CU_SYM(primary_retain, "cuDevicePrimaryCtxRetain", NULL);
    CU_SYM(primary_release, "cuDevicePrimaryCtxRelease", "cuDevicePrimaryCtxRelease_v2");
    CU_SYM(ctx_set_current, "cuCtxSetCurrent", NULL);
    CU_SYM(module_load_data, "cuModuleLoadData", NULL);
    CU_SYM(module_unload, "cuModuleUnload", NULL);
    CU_SYM(module_get_function, "cuModuleGetFunction", NULL);
    CU_SYM(mem_alloc, "cuMemAlloc", "cuMemAlloc_v2");
    CU_SYM(mem_free, "cuMemFree", "cuMemFree_v2");
    CU_SYM(mem_host_alloc, "cuMemHostAlloc", NULL);
    CU_SYM(mem_free_host, "cuMemFreeHost", NULL);
    CU_SYM(memcpy_htod, "cuMemcpyHtoD", "cuMemcpyHtoD_v2");
    CU_SYM(memcpy_htod_async, "cuMemcpyHtoDAsync", "cuMemcpyHtoDAsync_v2");
    CU_SYM(memcpy_dtoh_async, "cuMemcpyDtoHAsync", "cuMemcpyDtoHAsync_v2");
    CU_SYM(memcpy_dtod_async, "cuMemcpyDtoDAsync", "cuMemcpyDtoDAsync_v2");
    CU_SYM(memset_d8_async, "cuMemsetD8Async", NULL);
    CU_SYM(stream_create, "cuStreamCreate", NULL);
    CU_SYM(stream_destroy, "cuStreamDestroy", "cuStreamDestroy_v2");
    CU_SYM(stream_synchronize, "cuStreamSynchronize", NULL);
    CU_SYM(launch_kernel, "cuLaunchKernel", NULL);
    CU_SYM(stream_begin_capture, "cuStreamBeginCapture", "cuStreamBeginCapture_v2");
    CU_SYM(stream_end_capture, "cuStreamEndCapture", NULL);
    CU_SYM(graph_instantiate, "cuGraphInstantiateWithFlags", NULL);
    CU_SYM(graph_launch, "cuGraphLaunch", NULL);
    CU_SYM(graph_exec_destroy, "cuGraphExecDestroy", NULL);
    CU_SYM(graph_destroy, "cuGraphDestroy", NULL);
    CU_SYM(get_error_string, "cuGetErrorString", NULL);
#undef CU_SYM
    return IB_OK;
}

static ib_status cu_fail(const cu_api *a, cu_result r, const char *what) {
    const char *s = NULL;
    if (a->get_error_string) a->get_error_string(r, &s);
    return ib__error(IB_ERR_RUNTIME, "CUDA %s failed: %s (%d)", what, s ? s : "unknown error", r);
}

#define CU_TRY(a, call, what)                                                                \
    do {                                                                                     \
        cu_result r_ = (call);                                                               \
        if (r_ != 0) return cu_fail((a), r_, (what));                                        \
    } while (0)

bool ib__cuda_driver_available(char *why, size_t cap) {
    cu_api a;
    ib_status st = cu_load(&a);
    int count = 0;
    if (st == IB_OK) {
        cu_result r = a.init(0);
        if (r == 0) r = a.device_get_count(&count);
        if (r != 0 || count == 0)
            st = ib__error(IB_ERR_UNSUPPORTED, "no NVIDIA GPU/driver: the CUDA driver reports %s",
                           r != 0 ? "an error at cuInit" : "no device");
        dlclose(a.lib);
    }
    if (st != IB_OK && why) snprintf(why, cap, "%s", ib_last_error());
    if (st != IB_OK) ib__error_clear();
    return st == IB_OK;
}

/* ---- Sessions -------------------------------------------------------------------------- */

struct ib__cuda_session {
    const ib__cuda_model *m;
    cu_api api;
    cu_device dev;
    bool ctx_retained;
    cu_context ctx;
    cu_module module;
    cu_function *fns;
    cu_stream stream;
    cu_ptr arena, weights;
    cu_ptr *io;          /* device buffer per input, then per output */
    unsigned char *pinned; /* pinned host staging, inputs then outputs */
    size_t *pinned_at;
    cu_ptr *params;      /* kernel argument values, IB_MAX args per kernel */
    void **param_ptrs;   /* pointers to them, as cuLaunchKernel takes */
    cu_graph graph;
    cu_graph_exec exec;
    pthread_mutex_t lock;
};

enum { MAX_ARGS_PER_KERNEL = IB_MAX_KERNEL_ARGS + IB_MAX_KERNEL_ARGS + IB_MAX_EPILOGUE };

static cu_ptr arg_ptr(const ib__cuda_session *s, const plan_arg *a) {
    switch (a->space) {
    case ARG_ARENA: return s->arena + (cu_ptr)a->at;
    case ARG_WEIGHTS: return s->weights + (cu_ptr)a->at;
    case ARG_INPUT: return s->io[a->at];
    case ARG_OUTPUT: return s->io[s->m->n_in + a->at];
    default: return 0;
    }
}

/* The plan's kernels and device copies, in order, on the session's stream. */
static ib_status enqueue_kernels(ib__cuda_session *s) {
    const ib__cuda_model *m = s->m;
    for (int32_t k = 0; k < m->n_kernels; k++) {
        const plan_kernel *pk = &m->kernels[k];
        CU_TRY(&s->api,
               s->api.launch_kernel(s->fns[k], (unsigned)pk->grid[0], (unsigned)pk->grid[1],
                                    (unsigned)pk->grid[2], (unsigned)pk->block[0],
                                    (unsigned)pk->block[1], (unsigned)pk->block[2],
                                    (unsigned)pk->smem, s->stream,
                                    &s->param_ptrs[(size_t)k * MAX_ARGS_PER_KERNEL], NULL),
               pk->name);
    }
    for (int32_t c = 0; c < m->n_copies; c++) {
        const plan_copy *pc = &m->copies[c];
        cu_ptr dst = s->io[m->n_in + pc->output], src = arg_ptr(s, &pc->src);
        if (dst != src && pc->nbytes > 0)
            CU_TRY(&s->api, s->api.memcpy_dtod_async(dst, src, (size_t)pc->nbytes, s->stream),
                   "output copy");
    }
    return IB_OK;
}

static ib_status session_setup(ib__cuda_session *s, int32_t device, bool use_graph) {
    const ib__cuda_model *m = s->m;
    cu_api *a = &s->api;
    IB_TRY(cu_load(a));
    int count = 0;
    cu_result r = a->init(0);
    if (r == 0) r = a->device_get_count(&count);
    if (r != 0 || count == 0)
        return ib__error(IB_ERR_UNSUPPORTED, "no CUDA driver usable: %s",
                         r != 0 ? "cuInit failed" : "no NVIDIA GPU found");
    if (device < 0 || device >= count)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "GPU %d does not exist (%d present)", device, count);
    CU_TRY(a, a->device_get(&s->dev, device), "cuDeviceGet");
    CU_TRY(a, a->primary_retain(&s->ctx, s->dev), "cuDevicePrimaryCtxRetain");
    s->ctx_retained = true;
    CU_TRY(a, a->ctx_set_current(s->ctx), "cuCtxSetCurrent");
    /* the fat binary: the driver takes the cubin of this GPU, or compiles the PTX */
    CU_TRY(a, a->module_load_data(&s->module, m->fatbin), "cuModuleLoadData");
    s->fns = ib__calloc((size_t)m->n_kernels + 1, sizeof *s->fns);
    s->io = ib__calloc((size_t)(m->n_in + m->n_out) + 1, sizeof *s->io);
    s->pinned_at = ib__calloc((size_t)(m->n_in + m->n_out) + 1, sizeof *s->pinned_at);
    s->params = ib__calloc((size_t)m->n_kernels * MAX_ARGS_PER_KERNEL + 1, sizeof *s->params);
    s->param_ptrs = ib__calloc((size_t)m->n_kernels * MAX_ARGS_PER_KERNEL + 1, sizeof *s->param_ptrs);
    if (!s->fns || !s->io || !s->pinned_at || !s->params || !s->param_ptrs)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a CUDA session");
    for (int32_t k = 0; k < m->n_kernels; k++)
        CU_TRY(a, a->module_get_function(&s->fns[k], s->module, m->kernels[k].name), m->kernels[k].name);
    /* one arena from the memory plan, the weights once, a buffer per input and output */
    CU_TRY(a, a->mem_alloc(&s->arena, m->arena_bytes ? m->arena_bytes : 256), "arena allocation");
    CU_TRY(a, a->mem_alloc(&s->weights, m->weights_bytes ? m->weights_bytes : 256), "weights allocation");
    if (m->weights_bytes) CU_TRY(a, a->memcpy_htod(s->weights, m->weights, m->weights_bytes), "weights upload");
    size_t pinned_total = 0;
    for (int32_t i = 0; i < m->n_in + m->n_out; i++) {
        size_t nb = (size_t)m->io[i].nbytes;
        CU_TRY(a, a->mem_alloc(&s->io[i], nb ? nb : 256), "input/output allocation");
        s->pinned_at[i] = pinned_total;
        pinned_total += (nb + 255) & ~(size_t)255;
    }
    CU_TRY(a, a->mem_host_alloc((void **)&s->pinned, pinned_total ? pinned_total : 256, 0),
           "pinned host allocation");
    CU_TRY(a, a->stream_create(&s->stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
    for (int32_t k = 0; k < m->n_kernels; k++) {
        const plan_kernel *pk = &m->kernels[k];
        for (int32_t i = 0; i < pk->n_args; i++) {
            size_t at = (size_t)k * MAX_ARGS_PER_KERNEL + (size_t)i;
            s->params[at] = arg_ptr(s, &pk->args[i]);
            s->param_ptrs[at] = &s->params[at];
        }
    }
    if (use_graph) { /* the whole model as one graph: batch-1 latency is not launch-bound */
        CU_TRY(a, a->stream_begin_capture(s->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
               "cuStreamBeginCapture");
        ib_status st = enqueue_kernels(s);
        cu_result er = a->stream_end_capture(s->stream, &s->graph);
        IB_TRY(st);
        if (er != 0) return cu_fail(a, er, "cuStreamEndCapture");
        CU_TRY(a, a->graph_instantiate(&s->exec, s->graph, 0), "cuGraphInstantiate");
    }
    return IB_OK;
}

void ib__cuda_session_destroy(ib__cuda_session *s) {
    if (!s) return;
    cu_api *a = &s->api;
    if (a->lib) {
        if (s->ctx_retained) a->ctx_set_current(s->ctx);
        if (s->exec) a->graph_exec_destroy(s->exec);
        if (s->graph) a->graph_destroy(s->graph);
        if (s->stream) a->stream_destroy(s->stream);
        if (s->pinned) a->mem_free_host(s->pinned);
        if (s->io)
            for (int32_t i = 0; i < s->m->n_in + s->m->n_out; i++)
                if (s->io[i]) a->mem_free(s->io[i]);
        if (s->weights) a->mem_free(s->weights);
        if (s->arena) a->mem_free(s->arena);
        if (s->module) a->module_unload(s->module);
        if (s->ctx_retained) a->primary_release(s->dev);
        dlclose(a->lib);
    }
    ib__free(s->fns);
    ib__free(s->io);
    ib__free(s->pinned_at);
    ib__free(s->params);
    ib__free(s->param_ptrs);
    pthread_mutex_destroy(&s->lock);
    ib__free(s);
}

ib_status ib__cuda_session_create(const ib__cuda_model *m, int32_t device, bool use_graph,
                                  ib__cuda_session **out) {
    if (!m || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "model and out are required");
    ib__cuda_session *s = ib__calloc(1, sizeof *s);
    if (!s) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a CUDA session");
    s->m = m;
    pthread_mutex_init(&s->lock, NULL);
    ib_status st = session_setup(s, device, use_graph);
    if (st) {
        ib__cuda_session_destroy(s);
        return st;
    }
    *out = s;
    return IB_OK;
}

static ib_status run_locked(ib__cuda_session *s, const void *const *inputs, void *const *outputs) {
    const ib__cuda_model *m = s->m;
    cu_api *a = &s->api;
    CU_TRY(a, a->ctx_set_current(s->ctx), "cuCtxSetCurrent");
    for (int32_t i = 0; i < m->n_in; i++) {
        size_t nb = (size_t)m->io[i].nbytes;
        if (!nb) continue;
        if (!inputs[i]) return ib__error(IB_ERR_INVALID_ARGUMENT, "input %d is missing", i);
        memcpy(s->pinned + s->pinned_at[i], inputs[i], nb);
        CU_TRY(a, a->memcpy_htod_async(s->io[i], s->pinned + s->pinned_at[i], nb, s->stream),
               "input upload");
    }
    if (s->exec) CU_TRY(a, a->graph_launch(s->exec, s->stream), "cuGraphLaunch");
    else IB_TRY(enqueue_kernels(s));
    for (int32_t o = 0; o < m->n_out; o++) {
        int32_t i = m->n_in + o;
        size_t nb = (size_t)m->io[i].nbytes;
        if (nb)
            CU_TRY(a, a->memcpy_dtoh_async(s->pinned + s->pinned_at[i], s->io[i], nb, s->stream),
                   "output download");
    }
    CU_TRY(a, a->stream_synchronize(s->stream), "the model's kernels");
    for (int32_t o = 0; o < m->n_out; o++) {
        int32_t i = m->n_in + o;
        size_t nb = (size_t)m->io[i].nbytes;
        if (nb && !outputs[o]) return ib__error(IB_ERR_INVALID_ARGUMENT, "output %d has no buffer", o);
        if (nb) memcpy(outputs[o], s->pinned + s->pinned_at[i], nb);
    }
    return IB_OK;
}

ib_status ib__cuda_session_run(ib__cuda_session *s, const void *const *inputs,
                               void *const *outputs) {
    if (!s || (!inputs && s->m->n_in) || (!outputs && s->m->n_out))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "session, inputs and outputs are required");
    pthread_mutex_lock(&s->lock);
    ib_status st = run_locked(s, inputs, outputs);
    pthread_mutex_unlock(&s->lock);
    return st;
}

/* ---- One kernel ------------------------------------------------------------------------ */

ib_status ib__cuda_run_kernel(const void *fatbin, const char *name, const ib__launch_dims *ld,
                              int32_t n_args, const ib__cuda_kernel_arg *args, int32_t device) {
    if (!fatbin || !name || !ld || n_args < 0 || n_args > MAX_ARGS_PER_KERNEL || (n_args && !args))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "fatbin, kernel name, launch and arguments required");
    cu_api a;
    IB_TRY(cu_load(&a));
    cu_device dev = 0;
    cu_context ctx = NULL;
    cu_module mod = NULL;
    cu_function fn = NULL;
    cu_ptr ptr[MAX_ARGS_PER_KERNEL] = {0};
    void *pp[MAX_ARGS_PER_KERNEL];
    int count = 0;
    bool retained = false;
    ib_status st = IB_OK;
    cu_result r = a.init(0);
    if (r == 0) r = a.device_get_count(&count);
    if (r != 0 || count <= device)
        st = ib__error(IB_ERR_UNSUPPORTED, "no NVIDIA GPU/driver: %s", r ? "cuInit failed" : "no such device");
    if (st == IB_OK && (r = a.device_get(&dev, device)) != 0) st = cu_fail(&a, r, "cuDeviceGet");
    if (st == IB_OK && (r = a.primary_retain(&ctx, dev)) != 0) st = cu_fail(&a, r, "cuDevicePrimaryCtxRetain");
    retained = st == IB_OK;
    if (st == IB_OK && (r = a.ctx_set_current(ctx)) != 0) st = cu_fail(&a, r, "cuCtxSetCurrent");
    if (st == IB_OK && (r = a.module_load_data(&mod, fatbin)) != 0) st = cu_fail(&a, r, "cuModuleLoadData");
    if (st == IB_OK && (r = a.module_get_function(&fn, mod, name)) != 0) st = cu_fail(&a, r, name);
    for (int32_t i = 0; i < n_args && st == IB_OK; i++) {
        pp[i] = &ptr[i];
        if (!args[i].host) continue;
        if ((r = a.mem_alloc(&ptr[i], args[i].nbytes ? args[i].nbytes : 4)) != 0) st = cu_fail(&a, r, "cuMemAlloc");
        else if (args[i].nbytes && (r = a.memcpy_htod(ptr[i], args[i].host, args[i].nbytes)) != 0)
            st = cu_fail(&a, r, "cuMemcpyHtoD");
    }
    if (st == IB_OK &&
        (r = a.launch_kernel(fn, (unsigned)ld->grid[0], (unsigned)ld->grid[1], (unsigned)ld->grid[2],
                             (unsigned)ld->block[0], (unsigned)ld->block[1], (unsigned)ld->block[2],
                             (unsigned)ld->smem_bytes, NULL, pp, NULL)) != 0)
        st = cu_fail(&a, r, name);
    if (st == IB_OK && (r = a.stream_synchronize(NULL)) != 0) st = cu_fail(&a, r, name);
    for (int32_t i = 0; i < n_args && st == IB_OK; i++) {
        if (!args[i].host || !args[i].read_back || !args[i].nbytes) continue;
        if ((r = a.memcpy_dtoh_async(args[i].host, ptr[i], args[i].nbytes, NULL)) != 0)
            st = cu_fail(&a, r, "cuMemcpyDtoH");
    }
    if (st == IB_OK && (r = a.stream_synchronize(NULL)) != 0) st = cu_fail(&a, r, "download");
    for (int32_t i = 0; i < n_args; i++)
        if (ptr[i]) a.mem_free(ptr[i]);
    if (mod) a.module_unload(mod);
    if (retained) a.primary_release(dev);
    dlclose(a.lib);
    return st;
}
