/* Executable models: load a compiled module (dlopen), map the weights, hand out per-run
 * arenas from a free list, bind inputs and outputs by name and run the kernels. Plans
 * and their reference-op steps are runtime_plan.c's; this file needs core and target
 * alone, so it is the deployable runtime (make cross). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/runtime_internal.h"
#include "target/target_desc.h"


uint64_t ib__rt_hash(const void *data, size_t n) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Four interleaved lanes over 8-byte words (xor, rotate, multiply by an odd constant:
 * each step is a bijection, so a damaged word is never cancelled), then the tail bytes
 * and the length. Four multiplies in flight per 32 bytes instead of one per byte:
 * ResNet-50's 100 MB of weights hash in a few ms instead of ~100 ms, which was most of
 * the time a cache hit took to load. Not cryptographic: it catches damage. */
static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

uint64_t ib__rt_weights_hash(const void *data, size_t n) {
    const unsigned char *p = data;
    const uint64_t k = 0x9e3779b97f4a7c15ull;
    uint64_t h0 = 0xcbf29ce484222325ull, h1 = 0x84222325cbf29ce4ull;
    uint64_t h2 = 0xc2b2ae3d27d4eb4full, h3 = 0x165667b19e3779f9ull;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint64_t w0, w1, w2, w3;
        memcpy(&w0, p + i, 8);
        memcpy(&w1, p + i + 8, 8);
        memcpy(&w2, p + i + 16, 8);
        memcpy(&w3, p + i + 24, 8);
        h0 = rotl64(h0 ^ w0, 29) * k;
        h1 = rotl64(h1 ^ w1, 29) * k;
        h2 = rotl64(h2 ^ w2, 29) * k;
        h3 = rotl64(h3 ^ w3, 29) * k;
    }
    uint64_t h = h0 ^ rotl64(h1, 16) ^ rotl64(h2, 32) ^ rotl64(h3, 48);
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    h = (h ^ (uint64_t)n) * k;
    return h ^ (h >> 31);
}

ib__rt_model *ib__rt_alloc(void) {
    ib__rt_model *rt = ib__calloc(1, sizeof *rt);
    if (!rt) {
        ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory loading a model");
        return NULL;
    }
    pthread_mutex_init(&rt->mu, NULL);
    return rt;
}

void ib__rt_destroy(ib__rt_model *rt) {
    if (!rt) return;
    for (int32_t i = 0; i < rt->n_free; i++) ib__aligned_free(rt->free_arenas[i]);
    ib__free(rt->free_arenas);
    if (rt->io)
        for (int32_t i = 0; i < rt->n_in + rt->n_out; i++) ib__free((void *)rt->io[i].name);
    ib__free(rt->io);
    ib__free(rt->out_write);
    ib__free(rt->out_copy);
    ib__free(rt->out_scratch);
    if (rt->map) munmap(rt->map, rt->map_len);
    if (rt->so) dlclose(rt->so);
    if (rt->plan && rt->plan_free) rt->plan_free(rt->plan);
    pthread_mutex_destroy(&rt->mu);
    ib__free(rt);
}

ib_status ib__rt_alloc_io(ib__rt_model *rt, int32_t n_in, int32_t n_out) {
    if (n_in < 0 || n_out < 0 || n_in > IB_RT_MAX_IO || n_out > IB_RT_MAX_IO)
        return ib__error(IB_ERR_INVALID_MODEL, "the model declares %d inputs and %d outputs",
                         n_in, n_out);
    rt->n_in = n_in;
    rt->n_out = n_out;
    rt->io = ib__calloc((size_t)(n_in + n_out) + 1, sizeof *rt->io);
    rt->out_write = ib__calloc((size_t)n_out + 1, sizeof(int32_t));
    rt->out_copy = ib__calloc((size_t)n_out + 1, sizeof(int32_t));
    rt->out_scratch = ib__calloc((size_t)n_out + 1, sizeof(size_t));
    if (!rt->io || !rt->out_write || !rt->out_copy || !rt->out_scratch)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory loading a model");
    for (int32_t o = 0; o < n_out; o++) rt->out_write[o] = rt->out_copy[o] = -1;
    return IB_OK;
}

ib_status ib__rt_set_io(ib__rt_model *rt, int32_t slot, const ib__rt_io_entry *e) {
    if (!e->name || e->rank < 0 || e->rank > IB_MAX_RANK || !ib__dtype_is_valid(e->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s %d has an invalid description",
                         slot < rt->n_in ? "input" : "output",
                         slot < rt->n_in ? slot : slot - rt->n_in);
    rt->io[slot] = *e;
    rt->io[slot].name = ib__strdup(e->name);
    if (!rt->io[slot].name) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    return IB_OK;
}

ib_status ib__rt_layout_run_arena(ib__rt_model *rt) {
    size_t off = (rt->arena_bytes + 63) & ~(size_t)63;
    for (int32_t o = 0; o < rt->n_out; o++) {
        int64_t nb = rt->io[rt->n_in + o].nbytes;
        if (nb < 0) return ib__error(IB_ERR_INVALID_MODEL, "output %d has no size", o);
        rt->out_scratch[o] = off;
        if ((uint64_t)nb > ((uint64_t)1 << 46))
            return ib__error(IB_ERR_INVALID_MODEL, "output %d is too large", o);
        off += ((size_t)nb + 63) & ~(size_t)63;
    }
    rt->run_bytes = off ? off : 64;
    return IB_OK;
}


/* ---- Artifacts ---------------------------------------------------------------------- */

static const void *need_sym(void *so, const char *name, const char *dir, ib_status *st) {
    if (*st) return NULL;
    dlerror();
    const void *p = dlsym(so, name);
    if (!p)
        *st = ib__error(IB_ERR_INVALID_MODEL, "artifact '%s': model.so does not define %s "
                        "(not an InferBooster module)", dir, name);
    return p;
}

static ib_status map_weights(ib__rt_model *rt, const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/weights.bin", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ib__error(IB_ERR_IO, "artifact '%s': cannot open weights.bin: %s", dir,
                         strerror(errno));
    struct stat sb;
    ib_status st = IB_OK;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = ib__error(IB_ERR_IO, "artifact '%s': weights.bin is not a regular file", dir);
    } else if ((uint64_t)sb.st_size != rt->sizes[IB_RT_SIZE_WEIGHTS]) {
        st = ib__error(IB_ERR_INVALID_MODEL,
                       "artifact '%s': weights.bin holds %lld bytes but model.so expects %llu "
                       "(truncated, or from another build)",
                       dir, (long long)sb.st_size,
                       (unsigned long long)rt->sizes[IB_RT_SIZE_WEIGHTS]);
    } else if (sb.st_size > 0) {
        /* Populated in one call: the hash below reads every page at once, and one
         * fault per page costs more than the hash itself (ResNet-50: ~25k faults). */
        void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
        if (m == MAP_FAILED) {
            st = ib__error(IB_ERR_IO, "artifact '%s': cannot map weights.bin: %s", dir,
                           strerror(errno));
        } else {
            rt->map = m;
            rt->map_len = (size_t)sb.st_size;
            rt->weights = m;
            rt->weights_bytes = (size_t)sb.st_size;
            if (ib__rt_weights_hash(m, rt->map_len) != rt->sizes[IB_RT_SIZE_WEIGHTS_HASH])
                st = ib__error(IB_ERR_INVALID_MODEL,
                               "artifact '%s': weights.bin does not match model.so (its hash "
                               "differs: corrupted, or from another build)", dir);
        }
    }
    close(fd);
    return st;
}

/* A CUDA artifact (cuda_runtime.c) has a cuda_plan.txt instead of model.so. Checked here
 * by name, for the message only, so that this file needs nothing of the CUDA runtime. */
static bool cuda_artifact(const char *dir) {
    char p[4200];
    struct stat sb;
    snprintf(p, sizeof p, "%s/cuda_plan.txt", dir);
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* dlopen of a module for another CPU says only "cannot open shared object file": read
 * the ELF header's machine first, so an aarch64 artifact on x86 (or the reverse) gets
 * a message that says so. Anything else is left to dlopen to judge. */
static ib_status check_machine(const char *path, const char *dir) {
    unsigned char h[20];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(h, 1, sizeof h, f) : 0;
    if (f) fclose(f);
    if (n < sizeof h || memcmp(h, "\x7f" "ELF", 4) != 0 || h[5] != 1 /* little-endian */)
        return IB_OK;
    unsigned machine = (unsigned)h[18] | (unsigned)h[19] << 8;
#if defined(__aarch64__)
    const unsigned self = 183; /* EM_AARCH64 */
#elif defined(__x86_64__)
    const unsigned self = 62; /* EM_X86_64 */
#else
    const unsigned self = machine;
#endif
    if (machine == self) return IB_OK;
    const char *what = machine == 183 ? "64-bit ARM (aarch64)" : machine == 62 ? "x86-64" : "another CPU";
    return ib__error(IB_ERR_UNSUPPORTED, "artifact '%s' holds code for %s, which this CPU cannot "
                     "run (run it on that machine, e.g. with inferbooster-run)", dir, what);
}

ib_status ib__rt_open_artifact(const char *dir, ib__rt_model **out) {
    if (!dir || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "artifact directory required");
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return ib__error(IB_ERR_IO, "artifact '%s' is not a directory", dir);
    char path[4200];
    int len = snprintf(path, sizeof path, "%s/model.so", dir);
    if (len < 0 || (size_t)len >= sizeof path)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "artifact path too long");
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return ib__error(cuda_artifact(dir) ? IB_ERR_UNSUPPORTED : IB_ERR_IO,
                         cuda_artifact(dir) ? "artifact '%s' was compiled for an NVIDIA GPU: "
                         "'inferbooster run' runs it through the CUDA runtime"
                                                   : "artifact '%s' has no model.so", dir);
    ib__rt_model *rt = ib__rt_alloc();
    if (!rt) return IB_ERR_OUT_OF_MEMORY;
    ib_status st = IB_OK;
    /* A path with a '/' makes dlopen load that file, never search the library path. */
    if (path[0] != '/' && strncmp(path, "./", 2) != 0 && !strchr(path, '/'))
        st = ib__error(IB_ERR_INTERNAL, "unexpected module path");
    if (!st) st = check_machine(path, dir);
    rt->so = st ? NULL : dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!st && !rt->so) {
        const char *why = dlerror();
        st = ib__error(IB_ERR_INVALID_MODEL, "artifact '%s': cannot load model.so: %s", dir,
                       why ? why : "unknown error");
    }
    const uint32_t *ver = need_sym(rt->so, "ib_model_abi_version", dir, &st);
    if (!st && *ver != IB_KERNEL_ABI_VERSION)
        st = ib__error(IB_ERR_INVALID_MODEL,
                       "artifact '%s': model.so has kernel ABI version %u, this runtime runs "
                       "version %u (recompile the model)", dir, *ver, IB_KERNEL_ABI_VERSION);
    const int32_t *n_io = need_sym(rt->so, "ib_model_n_io", dir, &st);
    const ib__rt_io_entry *io = need_sym(rt->so, "ib_model_io", dir, &st);
    const uint64_t *sizes = need_sym(rt->so, "ib_model_sizes", dir, &st);
    const char *target = need_sym(rt->so, "ib_model_target", dir, &st);
    const int64_t *tdesc = need_sym(rt->so, "ib_model_target_desc", dir, &st);
    need_sym(rt->so, "ib_model_meta", dir, &st);
    rt->entry = (ib__rt_entry_fn)need_sym(rt->so, "ib_model_run", dir, &st);
    rt->steps = need_sym(rt->so, "ib_model_kernels", dir, &st);
    if (!st) {
        memcpy(rt->sizes, sizes, sizeof rt->sizes);
        memcpy(rt->target_desc, tdesc, sizeof rt->target_desc);
        snprintf(rt->target, sizeof rt->target, "%s", target);
        ib__target t;
        if (ib__target_resolve(rt->target, &t) != IB_OK)
            st = ib__error(IB_ERR_INVALID_MODEL, "artifact '%s': unknown target '%s'", dir,
                           rt->target);
        else if (!t.is_host)
            st = ib__error(IB_ERR_UNSUPPORTED,
                           "artifact '%s' was compiled for %s, which this CPU cannot run", dir,
                           rt->target);
    }
    if (!st) st = ib__rt_alloc_io(rt, n_io[0], n_io[1]);
    for (int32_t i = 0; !st && i < rt->n_in + rt->n_out; i++) st = ib__rt_set_io(rt, i, &io[i]);
    if (!st) {
        rt->arena_bytes = (size_t)rt->sizes[IB_RT_SIZE_ARENA];
        if (rt->sizes[IB_RT_SIZE_ARENA] > ((uint64_t)1 << 46))
            st = ib__error(IB_ERR_INVALID_MODEL, "artifact '%s': arena size is absurd", dir);
    }
    if (!st) st = ib__rt_layout_run_arena(rt);
    if (!st) st = map_weights(rt, dir);
    if (st) {
        ib__rt_destroy(rt);
        return st;
    }
    *out = rt;
    return IB_OK;
}

const char *ib__rt_target_name(const ib__rt_model *rt) { return rt->target; }
ib_status ib__rt_target(const ib__rt_model *rt, ib__target *out) {
    ib__target t;
    IB_TRY(ib__target_resolve(rt->target, &t));
    const int64_t *d = rt->target_desc;
    if (d[IB_RT_TARGET_VECTOR_BITS] != t.vector_bits)
        return ib__error(IB_ERR_INVALID_MODEL, "the artifact's target '%s' has %lld-bit vectors, "
                         "this build's has %d", rt->target, (long long)d[IB_RT_TARGET_VECTOR_BITS],
                         t.vector_bits);
    if (d[IB_RT_TARGET_VECTOR_REGS] > 0 && d[IB_RT_TARGET_VECTOR_REGS] <= 64)
        t.vector_regs = (int32_t)d[IB_RT_TARGET_VECTOR_REGS];
    t.has_fma = d[IB_RT_TARGET_HAS_FMA] != 0;
    if (d[IB_RT_TARGET_L1D] > 0) t.l1d_bytes = d[IB_RT_TARGET_L1D];
    if (d[IB_RT_TARGET_L2] > 0) t.l2_bytes = d[IB_RT_TARGET_L2];
    if (d[IB_RT_TARGET_L3] > 0) t.l3_bytes = d[IB_RT_TARGET_L3];
    if (d[IB_RT_TARGET_CORES] > 0 && d[IB_RT_TARGET_CORES] <= 65536)
        t.num_cores = (int32_t)d[IB_RT_TARGET_CORES];
    *out = t;
    return IB_OK;
}

int64_t ib__rt_batch(const ib__rt_model *rt) { return (int64_t)rt->sizes[IB_RT_SIZE_BATCH]; }
int64_t ib__rt_fallback_count(const ib__rt_model *rt) {
    return (int64_t)rt->sizes[IB_RT_SIZE_FALLBACKS];
}


int32_t ib__rt_input_count(const ib__rt_model *rt) { return rt->n_in; }
int32_t ib__rt_output_count(const ib__rt_model *rt) { return rt->n_out; }
const ib__rt_io_entry *ib__rt_input(const ib__rt_model *rt, int32_t i) {
    return i >= 0 && i < rt->n_in ? &rt->io[i] : NULL;
}
const ib__rt_io_entry *ib__rt_output(const ib__rt_model *rt, int32_t i) {
    return i >= 0 && i < rt->n_out ? &rt->io[rt->n_in + i] : NULL;
}
const ib__plan *ib__rt_plan(const ib__rt_model *rt) { return rt->plan; }
const char *ib__rt_mode(const ib__rt_model *rt) { return rt->entry ? "compiled" : "interpreted"; }

int32_t ib__rt_find_input(const ib__rt_model *rt, const char *name) {
    for (int32_t i = 0; name && i < rt->n_in; i++)
        if (strcmp(rt->io[i].name, name) == 0) return i;
    return -1;
}

/* ---- Arenas --------------------------------------------------------------------------- */

static void *arena_take(ib__rt_model *rt) {
    void *a = NULL;
    pthread_mutex_lock(&rt->mu);
    if (rt->n_free > 0) a = rt->free_arenas[--rt->n_free];
    pthread_mutex_unlock(&rt->mu);
    if (a) return a;
    a = ib__aligned_alloc(rt->run_bytes);
    if (!a) ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory for a %zu-byte run arena",
                      rt->run_bytes);
    return a;
}

static void arena_give(ib__rt_model *rt, void *a) {
    pthread_mutex_lock(&rt->mu);
    if (rt->n_free == rt->cap_free) {
        int32_t ncap = rt->cap_free ? rt->cap_free * 2 : 4;
        void **n = ib__realloc(rt->free_arenas, (size_t)ncap * sizeof *n);
        if (n) {
            rt->free_arenas = n;
            rt->cap_free = ncap;
        }
    }
    if (rt->n_free < rt->cap_free) {
        rt->free_arenas[rt->n_free++] = a;
        a = NULL;
    }
    pthread_mutex_unlock(&rt->mu);
    ib__aligned_free(a);
}

/* ---- Running ---------------------------------------------------------------------------- */


static _Thread_local ib__rt_profile *tl_profile;

ib_status ib__rt_profile_init(ib__rt_profile *p, int32_t n_steps) {
    memset(p, 0, sizeof *p);
    p->n_steps = n_steps;
    p->ns = ib__calloc((size_t)n_steps + 1, sizeof *p->ns);
    p->best_ns = ib__calloc((size_t)n_steps + 1, sizeof *p->best_ns);
    if (p->ns && p->best_ns) return IB_OK;
    ib__rt_profile_free(p);
    return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory for a profile");
}

void ib__rt_profile_free(ib__rt_profile *p) {
    ib__free(p->ns);
    ib__free(p->best_ns);
    p->ns = p->best_ns = NULL;
}

void ib__rt_profile_attach(ib__rt_profile *profile) { tl_profile = profile; }

int32_t ib__rt_step_count(const ib__rt_model *rt) {
    return (int32_t)rt->sizes[IB_RT_SIZE_KERNELS];
}

const char *ib__rt_step_label(const ib__rt_model *rt, int32_t step, double *flops) {
    *flops = 0.0;
    if (!rt->steps || step < 0 || step >= ib__rt_step_count(rt)) return "?";
    *flops = rt->steps[step].flops;
    return rt->steps[step].label ? rt->steps[step].label : "?";
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void profile_step(void *user, int32_t step, int32_t end) {
    ib__rt_profile *p = user;
    int64_t t = now_ns();
    if (!end) p->t_start = t;
    else if (step >= 0 && step < p->n_steps) {
        int64_t dt = t - p->t_start;
        p->ns[step] += dt;
        if (p->best_ns[step] == 0 || dt < p->best_ns[step]) p->best_ns[step] = dt;
    }
}

static void abi_parallel_for(void *pool, int64_t n, ib_kernel_range_fn fn, void *ctx) {
    ib__parallel_for(pool, n, fn, ctx);
}

/* The compiled module of an artifact whose plan was not attached reaches this for a
 * reference-op step: the deployable runtime has no reference ops. */
static int no_fallback(void *user, int32_t step, void *const *args) {
    (void)user;
    (void)args;
    ib__error(IB_ERR_UNSUPPORTED, "kernel %d runs a reference op, which needs the model's plan "
              "(this runtime runs compiled kernels only)", step);
    return IB_ERR_UNSUPPORTED;
}

static ib_status execute(ib__rt_run_ctx *c) {
    ib__rt_model *rt = c->rt;
    if (!rt->entry) return rt->interpret(c);
    ib_kernel_abi abi;
    memset(&abi, 0, sizeof abi);
    abi.version = IB_KERNEL_ABI_VERSION;
    abi.num_threads = c->pool ? ib__pool_size(c->pool) : 1;
    abi.parallel_for = abi_parallel_for;
    abi.pool = c->pool;
    abi.fallback = rt->fallback ? rt->fallback : no_fallback;
    abi.fallback_user = c;
    ib__rt_profile *prof = tl_profile;
    if (prof && (!prof->rt || prof->rt == rt) && prof->n_steps >= ib__rt_step_count(rt)) {
        prof->rt = rt;
        prof->runs++;
        abi.profile = profile_step;
        abi.profile_user = prof;
    }
    int rc = rt->entry(&abi, c->inputs, c->outputs, c->arena, rt->weights);
    if (rc >= 256) { /* a generated kernel failed: IB_KERNEL_STEP_FAILED(code, step) */
        double flops;
        const char *label = ib__rt_step_label(rt, (rc >> 8) - 1, &flops);
        int code = rc & 255;
        return ib__error(code == IB_KERNEL_ERR_INDEX ? IB_ERR_INVALID_ARGUMENT : IB_ERR_RUNTIME,
                         "step %d (%s) failed: %s", (rc >> 8) - 1, label,
                         code == IB_KERNEL_ERR_INDEX ? "an index is out of range"
                                                     : "kernel error");
    }
    if (rc != 0) { /* a fallback step: its message is set */
        if (!ib_last_error()[0]) ib__error(IB_ERR_RUNTIME, "a compiled kernel failed (code %d)", rc);
        return rc > 0 && rc <= IB_ERR_INTERNAL ? (ib_status)rc : IB_ERR_RUNTIME;
    }
    return IB_OK;
}

static ib_status check_input(const ib__rt_io_entry *e, const ib_tensor *t) {
    if (!t || t->rank < 0 || t->rank > IB_MAX_RANK)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': invalid tensor", e->name);
    if (t->dtype != (ib_dtype)e->dtype)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': expected dtype %s, got %s",
                         e->name, ib_dtype_name((ib_dtype)e->dtype), ib_dtype_name(t->dtype));
    if (t->rank != e->rank)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': expected rank %d, got %d",
                         e->name, e->rank, t->rank);
    for (int32_t d = 0; d < t->rank; d++)
        if (e->dims[d] >= 0 && t->shape[d] != e->dims[d])
            return ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': dim %d must be %lld, got %lld",
                             e->name, d, (long long)e->dims[d], (long long)t->shape[d]);
    int64_t n = ib_tensor_element_count(t);
    size_t esize = ib_dtype_size(t->dtype);
    if (n < 0 || esize == 0)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': invalid shape or dtype", e->name);
    if (t->nbytes < (size_t)n * esize || (!t->data && n > 0))
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "input '%s': buffer holds %zu bytes, shape needs %zu", e->name,
                         t->nbytes, (size_t)n * esize);
    return IB_OK;
}

static ib_status check_caller_buffer(const ib__rt_io_entry *e, const ib_tensor *dst) {
    if (dst->dtype != (ib_dtype)e->dtype || dst->nbytes < (size_t)e->nbytes)
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "output '%s': caller buffer is %s with %zu bytes, result is %s with "
                         "%lld bytes",
                         e->name, ib_dtype_name(dst->dtype), dst->nbytes,
                         ib_dtype_name((ib_dtype)e->dtype), (long long)e->nbytes);
    return IB_OK;
}

ib_status ib__rt_run(ib__rt_model *rt, ib__pool *pool, size_t n_inputs,
                     const char *const *input_names, const ib_tensor *inputs, size_t n_outputs,
                     const char *const *output_names, ib_tensor *outputs) {
    if (!rt || (n_inputs && (!input_names || !inputs)) || (n_outputs && !outputs))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "session, names and tensors are required");
    if (!output_names && n_outputs != (size_t)rt->n_out)
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "all %d outputs requested but %zu output tensors given", rt->n_out,
                         n_outputs);
    if (n_outputs > IB_RT_MAX_IO)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "at most %d outputs per run", IB_RT_MAX_IO);
    if (!rt->entry && !rt->interpret)
        return ib__error(IB_ERR_RUNTIME, "the model has fallback steps but no plan");
    enum { SMALL = 64 };
    void *in_small[SMALL], *out_small[SMALL];
    int32_t slot_small[SMALL];
    uint8_t flag_small[SMALL];
    void **in_ptrs = rt->n_in <= SMALL ? in_small : ib__calloc((size_t)rt->n_in, sizeof(void *));
    void **out_ptrs =
        rt->n_out <= SMALL ? out_small : ib__calloc((size_t)rt->n_out, sizeof(void *));
    int32_t *slot = n_outputs <= SMALL ? slot_small : ib__calloc(n_outputs, sizeof(int32_t));
    /* per request: bit 1 = receives the output in place, bit 2 = library-allocated */
    uint8_t *flag = n_outputs <= SMALL ? flag_small : ib__calloc(n_outputs, 1);
    /* Stands in for the data pointer of empty tensors, which may be NULL. */
    static unsigned char empty_data[64] __attribute__((aligned(64)));
    ib_status st = IB_OK;
    void *arena = NULL;
    if (!in_ptrs || !out_ptrs || !slot || !flag) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory starting a run");
        goto done;
    }
    for (int32_t i = 0; i < rt->n_in; i++) in_ptrs[i] = NULL;
    for (int32_t o = 0; o < rt->n_out; o++) out_ptrs[o] = NULL;
    for (size_t r = 0; r < n_outputs; r++) flag[r] = 0;
    for (size_t i = 0; i < n_inputs && st == IB_OK; i++) {
        int32_t k = ib__rt_find_input(rt, input_names[i]);
        if (k < 0)
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "the model has no input named '%s'",
                           input_names[i] ? input_names[i] : "(null)");
        else if ((st = check_input(&rt->io[k], &inputs[i])) == IB_OK)
            in_ptrs[k] = inputs[i].data ? inputs[i].data : (void *)empty_data;
    }
    for (int32_t k = 0; k < rt->n_in && st == IB_OK; k++)
        if (!in_ptrs[k])
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s' was not given", rt->io[k].name);
    for (size_t r = 0; r < n_outputs && st == IB_OK; r++) {
        int32_t k = -1;
        if (!output_names) k = (int32_t)r;
        else
            for (int32_t j = 0; j < rt->n_out && k < 0; j++)
                if (output_names[r] && strcmp(rt->io[rt->n_in + j].name, output_names[r]) == 0)
                    k = j;
        if (k < 0)
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "the model has no output named '%s'",
                           output_names[r] ? output_names[r] : "(null)");
        slot[r] = k;
    }
    arena = st ? NULL : arena_take(rt);
    if (!st && !arena) st = IB_ERR_OUT_OF_MEMORY;
    /* The first request of each output receives it in place; a repeat copies it. */
    for (size_t r = 0; r < n_outputs && st == IB_OK; r++) {
        const ib__rt_io_entry *e = &rt->io[rt->n_in + slot[r]];
        ib_tensor *dst = &outputs[r];
        if (dst->data) {
            st = check_caller_buffer(e, dst);
        } else {
            st = ib__tensor_alloc(dst, (ib_dtype)e->dtype, e->rank, e->dims);
            if (st == IB_OK) flag[r] |= 2;
        }
        if (st == IB_OK && !out_ptrs[slot[r]]) {
            out_ptrs[slot[r]] = dst->data ? dst->data : (void *)empty_data;
            flag[r] |= 1;
        }
    }
    for (int32_t o = 0; o < rt->n_out && st == IB_OK; o++)
        if (!out_ptrs[o]) out_ptrs[o] = (unsigned char *)arena + rt->out_scratch[o];
    if (st == IB_OK) {
        ib__rt_run_ctx c = {rt, pool, in_ptrs, out_ptrs, arena};
        st = execute(&c);
    }
    for (size_t r = 0; r < n_outputs && st == IB_OK; r++) {
        const ib__rt_io_entry *e = &rt->io[rt->n_in + slot[r]];
        ib_tensor *dst = &outputs[r];
        if (!(flag[r] & 1) && e->nbytes > 0) memcpy(dst->data, out_ptrs[slot[r]], (size_t)e->nbytes);
        dst->rank = e->rank;
        memcpy(dst->shape, e->dims, sizeof dst->shape);
        dst->nbytes = (size_t)e->nbytes;
    }
    if (st)
        for (size_t r = 0; r < n_outputs; r++)
            if (flag[r] & 2) ib_tensor_release(&outputs[r]);
done:
    if (arena) arena_give(rt, arena);
    if (in_ptrs != in_small) ib__free(in_ptrs);
    if (out_ptrs != out_small) ib__free(out_ptrs);
    if (slot != slot_small) ib__free(slot);
    if (flag != flag_small) ib__free(flag);
    return st;
}
