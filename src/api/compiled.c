/* Compiled sessions: build the kernel plan of a model for each batch size it runs with,
 * interpret plans made only of fallback steps, generate and dlopen a module for plans
 * with template kernels (through the compiled-model cache: a hit loads the entry's
 * artifact, pinned while the session lives, without planning or compiling; a miss
 * compiles into the cache; without the cache, in a private scratch directory), and
 * dispatch runs. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/batch_buckets.h"
#include "api/compiled.h"
#include "api/model_cache.h"
#include "codegen/codegen.h"
#include "codegen/toolchain.h"
#include "tune/tune.h"

enum { MAX_VARIANTS = 32 };

/* Below this much work per run (FLOPs of generated kernels plus bytes of activations),
 * running the reference ops costs less than starting the C compiler (~0.3 s) would
 * save in hundreds of runs. */
#define SMALL_PLAN_WORK 2e6

typedef struct variant {
    int64_t batch;
    ib__rt_model *rt; /* NULL: this batch runs on the reference executor */
    ib__cache_entry *entry; /* the cache entry rt was loaded from (pinned), or NULL */
    bool building;    /* a thread compiles it; others wait on `built` */
    ib_status status; /* of the build (IB_OK, or why it failed) */
} variant;

struct ib__compiled {
    const ib__graph *graph;
    ib__target target;
    ib__rt_model *fixed; /* static model or artifact */
    ib__cache_entry *fixed_entry;
    ib__model_cache *cache; /* NULL: compile without the cache */
    char *tuning_db;        /* NULL: the environment's or the default tuning database */
    bool dynamic;
    bool compile_all;
    ib__buckets buckets; /* variants of a separable symbolic batch: bucket sizes only */
    pthread_mutex_t mu;
    pthread_cond_t built;
    variant variants[MAX_VARIANTS];
    int32_t n_variants;
    char *scratch;       /* mkdtemp directory for generated modules, created on need */
    bool last_reference; /* the last build fell back to the reference executor */
    /* Variants loaded from the cache / compiled into it (the server's cache metrics). */
    _Atomic uint64_t cache_hits, cache_misses;
};

/* ---- Scratch directories ------------------------------------------------------------ */

static bool compiler_file_name(const char *n) {
    size_t len = strlen(n);
    static const char *const exact[] = {"model.so", "weights.bin", "meta.json", "model.onnx",
                                        "model_main.c", "model.so.log", "kernel_abi.h",
                                        /* CUDA artifacts */
                                        "model.fatbin", "model.fatbin.log", "model.cu",
                                        "cuda_plan.txt"};
    for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
        if (strcmp(n, exact[i]) == 0) return true;
    if (strncmp(n, "unit_", 5) == 0 && len > 2 && strcmp(n + len - 2, ".c") == 0) return true;
    if (strncmp(n, "model.so.", 9) == 0 && len > 2 && strcmp(n + len - 2, ".o") == 0) return true;
    return false;
}

static bool compiler_dir_name(const char *n) {
    if (strcmp(n, "include") == 0 || strcmp(n, "inferbooster") == 0) return true;
    if (n[0] != 'b' || !n[1]) return false; /* per-batch scratch: b<digits> */
    for (const char *p = n + 1; *p; p++)
        if (*p < '0' || *p > '9') return false;
    return true;
}

static void remove_dir_depth(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        int len = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (len < 0 || (size_t)len >= sizeof path) continue;
        struct stat st;
        if (lstat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < 3 && compiler_dir_name(e->d_name)) remove_dir_depth(path, depth + 1);
        } else if (S_ISREG(st.st_mode) && compiler_file_name(e->d_name)) {
            unlink(path);
        }
    }
    closedir(d);
    ib__toolchain_tmp_remove(dir); /* the compiler's, when it was killed with us */
    rmdir(dir);
}

void ib__remove_compiler_dir(const char *dir) {
    if (dir && dir[0]) remove_dir_depth(dir, 0);
}

static ib_status make_scratch(ib__compiled *c);

/* Called by builders of different batches at once: the directory is made once. */
static ib_status ensure_scratch(ib__compiled *c) {
    pthread_mutex_lock(&c->mu);
    ib_status st = IB_OK;
    if (!c->scratch) st = make_scratch(c);
    pthread_mutex_unlock(&c->mu);
    return st;
}

static ib_status make_scratch(ib__compiled *c) {
    const char *tmp = ib__tmp_dir();
    ib__sweep_dead_scratch(tmp, "inferbooster", ib__remove_compiler_dir); /* killed mid-compile */
    size_t len = strlen(tmp) + 64;
    char *path = ib__malloc(len);
    if (!path) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(path, len, "%s/inferbooster-%ld-XXXXXX", tmp, (long)getpid());
    if (!mkdtemp(path)) {
        ib__free(path);
        return ib__error(IB_ERR_IO, "cannot create a scratch directory under '%s'", tmp);
    }
    c->scratch = path;
    return IB_OK;
}

/* ---- Building --------------------------------------------------------------------------- */

static double plan_work(const ib__plan *plan) {
    double work = 0;
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        const ib__pkernel *pk = &plan->kernels[k];
        if (pk->tmpl && pk->tmpl->flops) work += pk->tmpl->flops(plan, pk);
    }
    for (int32_t b = 0; b < plan->n_bufs; b++)
        if (plan->bufs[b].kind != IB_BUF_WEIGHT) work += (double)plan->bufs[b].nbytes;
    return work;
}

/* The kernel plan for one batch, with the tuning database's best knobs when there is
 * one (the cache key carries the database's digest for this target). */
static ib_status plan_for_batch(const ib__compiled *c, int64_t batch, ib__plan **plan) {
    ib__compile_options opt;
    ib__compile_options_init(&opt);
    opt.batch = (int32_t)batch;
    ib__tune_knobs *tuned = NULL;
    IB_TRY(ib__tune_compile_knobs(&c->target, c->tuning_db, &tuned));
    if (tuned) opt.knob_source = ib__tune_knobs_source(tuned);
    ib_status st = ib__build_plan(c->graph, &c->target, &opt, plan);
    ib__tune_knobs_destroy(tuned);
    return st;
}

/* Loads the artifact of a cache entry. Plans with reference steps need the plan's
 * steps attached: `plan` (consumed) when the caller has it, else built now. */
static ib_status open_entry(ib__compiled *c, const ib__cache_entry *e, int64_t batch,
                            ib__plan *plan, ib__rt_model **out) {
    ib__rt_model *rt = NULL;
    ib_status st = ib__rt_open_artifact(ib__cache_entry_path(e), &rt);
    if (st == IB_OK && ib__rt_fallback_count(rt) > 0) {
        if (!plan) st = plan_for_batch(c, batch, &plan);
        if (st == IB_OK) st = ib__rt_attach_plan(rt, plan);
        plan = NULL;
    }
    ib__plan_destroy(plan);
    if (st) {
        ib__rt_destroy(rt);
        return st;
    }
    *out = rt;
    return IB_OK;
}

typedef struct entry_build {
    const ib__plan *plan;
    ib_status status; /* of the build itself (not of the cache around it) */
} entry_build;

static ib_status build_entry(void *ctx, const char *dir) {
    entry_build *b = ctx;
    b->status = ib__artifact_write_files(b->plan, dir, false);
    return b->status;
}

/* The cached path of build_variant. *rt NULL with IB_OK: not served from the cache (the
 * cache failed, or a module is not needed); *plan, when set, is the plan built. */
static ib_status cached_variant(ib__compiled *c, int64_t batch, ib__plan **plan_out,
                                ib__rt_model **rt, ib__cache_entry **entry) {
    char key[IB_CACHE_KEY_HEX + 1];
    ib__cache *cache = ib__model_cache_handle(c->cache);
    if (ib__model_cache_key(c->cache, batch, key) != IB_OK) {
        ib__error_clear(); /* a model file gone since loading: compile without the cache */
        return IB_OK;
    }
    ib__cache_entry *e = NULL;
    if (ib__cache_find(cache, key, &e) == IB_OK && e) {
        if (open_entry(c, e, batch, NULL, rt) == IB_OK) {
            *entry = e;
            atomic_fetch_add(&c->cache_hits, 1);
            return IB_OK;
        }
        /* Damaged in a way only loading shows (weights hash): drop it and rebuild. */
        ib__cache_release(e);
        ib__cache_evict(cache, key);
    }
    ib__error_clear();
    ib__plan *plan = NULL;
    IB_TRY(plan_for_batch(c, batch, &plan));
    *plan_out = plan;
    bool needs_module = ib__codegen_fallback_count(plan) < plan->n_kernels;
    if (!needs_module || (!c->compile_all && plan_work(plan) < SMALL_PLAN_WORK)) return IB_OK;
    entry_build b = {plan, IB_OK};
    bool built = false;
    ib_status st = ib__cache_insert(cache, key, ib__model_cache_label(c->cache),
                                    ib__model_cache_target(c->cache), build_entry, &b, &e, &built);
    if (st && b.status) { /* the compiler failed: no point compiling again */
        ib__plan_destroy(plan);
        *plan_out = NULL;
        return st;
    }
    if (st) {
        ib__error_clear(); /* the cache failed (disk full, permissions): compile without */
        return IB_OK;
    }
    *plan_out = NULL;
    st = open_entry(c, e, batch, plan, rt);
    if (st) {
        ib__cache_release(e);
        return st;
    }
    *entry = e;
    /* Not built here: another process inserted it meanwhile, which is a hit too. */
    atomic_fetch_add(built ? &c->cache_misses : &c->cache_hits, 1);
    return IB_OK;
}

/* Builds the executable model for one batch (0: as the model says). *rt NULL with IB_OK:
 * the plan cannot be built (shapes depend on data): use the reference executor. */
static ib_status build_variant(ib__compiled *c, int64_t batch, ib__rt_model **rt,
                               ib__cache_entry **entry) {
    *rt = NULL;
    *entry = NULL;
    ib__plan *plan = NULL;
    ib_status st = IB_OK;
    if (c->cache) st = cached_variant(c, batch, &plan, rt, entry);
    if (st == IB_OK && *rt) return IB_OK;
    if (st == IB_OK && !plan) st = plan_for_batch(c, batch, &plan);
    if (st == IB_ERR_UNSUPPORTED) {
        ib__error_clear();
        return IB_OK;
    }
    IB_TRY(st);
    bool needs_module = ib__codegen_fallback_count(plan) < plan->n_kernels;
    if (needs_module && !c->compile_all && plan_work(plan) < SMALL_PLAN_WORK) {
        ib__plan_destroy(plan);
        return IB_OK;
    }
    if (!needs_module) {
        st = ib__rt_create_from_plan(plan, NULL, rt);
    } else {
        char dir[4200];
        st = ensure_scratch(c);
        if (st == IB_OK) {
            snprintf(dir, sizeof dir, "%s/b%lld", c->scratch, (long long)batch);
            if (mkdir(dir, 0700) != 0)
                st = ib__error(IB_ERR_IO, "cannot create '%s'", dir);
        }
        if (st == IB_OK) st = ib__codegen_build(plan, dir, false);
        if (st == IB_OK) {
            char so[4300];
            snprintf(so, sizeof so, "%s/model.so", dir);
            st = ib__rt_create_from_plan(plan, so, rt);
        } else {
            ib__plan_destroy(plan);
        }
    }
    if (st == IB_ERR_UNSUPPORTED) { /* a step the runtime cannot run (control flow) */
        ib__error_clear();
        *rt = NULL;
        return IB_OK;
    }
    return st;
}

/* Plans copy every weight they read into their blob, also those only reference-op steps
 * read; until they can borrow the model's mapped data, a model whose weights are this
 * large runs on the reference executor, which reads them in place (RSS stays small). */
#define MAX_COPIED_WEIGHTS ((double)(1u << 30))

static double constant_bytes(const ib__graph *g) {
    double n = 0;
    for (int32_t i = 0; i < g->n_values; i++)
        if (g->values[i]->constant) n += (double)g->values[i]->constant->nbytes;
    return n;
}

ib_status ib__compiled_create(const ib_model *model, const ib__target *target,
                              bool compile_all, const ib__compiled_cache_options *cache,
                              ib__compiled **out, bool *reference) {
    *reference = false;
    if (!compile_all && constant_bytes(model->graph) > MAX_COPIED_WEIGHTS) {
        *reference = true;
        *out = NULL;
        return IB_OK;
    }
    ib__compiled *c = ib__calloc(1, sizeof *c);
    if (!c) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a session");
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->built, NULL);
    c->graph = model->graph;
    c->target = *target;
    c->dynamic = ib__model_has_symbolic_batch(model);
    c->compile_all = compile_all;
    if (cache && cache->tuning_db && !(c->tuning_db = ib__strdup(cache->tuning_db))) {
        ib__compiled_destroy(c);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a session");
    }
    ib_status bst = c->dynamic ? ib__buckets_configure(model->graph, &c->buckets) : IB_OK;
    if (bst) {
        ib__compiled_destroy(c);
        return bst;
    }
    if (cache && cache->use_cache) {
        /* A cache that cannot be opened (no home, read-only disk) only costs speed. */
        if (ib__model_cache_open(model, target, cache->dir, cache->tuning_db, &c->cache) != IB_OK)
            ib__error_clear();
    }
    if (!c->dynamic) {
        ib_status st = build_variant(c, 0, &c->fixed, &c->fixed_entry);
        if (st || !c->fixed) {
            ib__compiled_destroy(c);
            if (st) return st;
            *reference = true;
            *out = NULL;
            return IB_OK;
        }
    }
    *out = c;
    return IB_OK;
}

ib_status ib__compiled_from_cached_file(const char *model_path, const ib__target *target,
                                        const ib__compiled_cache_options *cache,
                                        ib__compiled **out) {
    *out = NULL;
    if (!cache || !cache->use_cache) return IB_OK;
    ib__model_cache *mc = NULL;
    char key[IB_CACHE_KEY_HEX + 1];
    ib__cache_entry *e = NULL;
    ib__rt_model *rt = NULL;
    ib__compiled *c = NULL;
    /* Every failure below means "no usable entry": the caller parses and compiles. */
    if (ib__model_cache_open_file(model_path, target, cache->dir, cache->tuning_db, &mc) == IB_OK &&
        ib__model_cache_key(mc, 0, key) == IB_OK &&
        ib__cache_find(ib__model_cache_handle(mc), key, &e) == IB_OK && e &&
        ib__rt_open_artifact(ib__cache_entry_path(e), &rt) == IB_OK)
        c = ib__calloc(1, sizeof *c);
    if (c && cache->tuning_db && !(c->tuning_db = ib__strdup(cache->tuning_db))) {
        ib__free(c);
        c = NULL;
    }
    if (!c) {
        ib__rt_destroy(rt);
        ib__cache_release(e);
        ib__model_cache_close(mc);
        ib__error_clear();
        return IB_OK;
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->built, NULL);
    c->target = *target;
    c->fixed = rt;
    c->fixed_entry = e;
    c->cache = mc;
    *out = c;
    return IB_OK;
}

bool ib__compiled_needs_model(const ib__compiled *c) {
    return c && c->fixed && !c->graph && ib__rt_fallback_count(c->fixed) > 0;
}

ib_status ib__compiled_attach_model(ib__compiled *c, const ib_model *model) {
    c->graph = model->graph;
    if (ib__rt_fallback_count(c->fixed) == 0) return IB_OK;
    ib__plan *plan = NULL;
    IB_TRY(plan_for_batch(c, 0, &plan));
    return ib__rt_attach_plan(c->fixed, plan);
}

ib_status ib__compiled_from_rt(ib__rt_model *rt, ib__compiled **out) {
    ib__compiled *c = ib__calloc(1, sizeof *c);
    if (!c) {
        ib__rt_destroy(rt);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a session");
    }
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->built, NULL);
    c->fixed = rt;
    *out = c;
    return IB_OK;
}

void ib__compiled_destroy(ib__compiled *c) {
    if (!c) return;
    ib__rt_destroy(c->fixed);
    ib__cache_release(c->fixed_entry); /* after the module is unloaded and unmapped */
    for (int32_t i = 0; i < c->n_variants; i++) {
        ib__rt_destroy(c->variants[i].rt);
        ib__cache_release(c->variants[i].entry);
    }
    ib__model_cache_close(c->cache);
    if (c->scratch) ib__remove_compiler_dir(c->scratch);
    ib__free(c->scratch);
    ib__free(c->tuning_db);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->built);
    ib__free(c);
}

const char *ib__compiled_executor(const ib__compiled *c) {
    return c && !c->last_reference ? "compiled" : "reference";
}

const ib__rt_model *ib__compiled_fixed(const ib__compiled *c) { return c ? c->fixed : NULL; }

/* The batch size the inputs bring for the model's symbolic dim 0, or 0 if unclear. */
static int64_t batch_of(const ib__graph *g, size_t n_inputs, const char *const *names,
                        const ib_tensor *inputs) {
    int64_t batch = 0;
    for (int32_t k = 0; k < g->n_inputs; k++) {
        const ib__value *v = g->inputs[k];
        if (v->kind != IB_VALUE_INPUT || v->rank < 1 || v->dims[0] >= 0) continue;
        for (size_t i = 0; i < n_inputs; i++) {
            if (!names[i] || strcmp(names[i], v->name) != 0) continue;
            if (inputs[i].rank < 1) return 0;
            if (batch && inputs[i].shape[0] != batch) return 0;
            batch = inputs[i].shape[0];
        }
    }
    return batch >= 1 && batch <= (1 << 20) ? batch : 0;
}

/* The executable model of one batch size, compiled on first use (*rt NULL: that batch
 * runs on the reference executor). Lookups never wait for another batch's compile: the
 * builder works unlocked. */
static ib_status variant_for(ib__compiled *c, int64_t batch, ib__rt_model **rt_out) {
    pthread_mutex_lock(&c->mu);
    int32_t found = -1;
    for (int32_t i = 0; i < c->n_variants && found < 0; i++)
        if (c->variants[i].batch == batch) found = i;
    ib_status st = IB_OK;
    if (found < 0 && c->n_variants < MAX_VARIANTS) {
        found = c->n_variants++;
        variant *v = &c->variants[found];
        v->batch = batch;
        v->building = true;
        pthread_mutex_unlock(&c->mu);
        ib__rt_model *built = NULL;
        ib__cache_entry *entry = NULL;
        st = build_variant(c, batch, &built, &entry);
        char msg[1024] = "";
        if (st) snprintf(msg, sizeof msg, "%s", ib_last_error());
        pthread_mutex_lock(&c->mu);
        v->rt = built;
        v->entry = entry;
        v->status = st;
        v->building = false;
        if (st == IB_OK) c->last_reference = built == NULL;
        pthread_cond_broadcast(&c->built);
        if (st) ib__error(st, "%s", msg);
    } else if (found >= 0) {
        while (c->variants[found].building) pthread_cond_wait(&c->built, &c->mu);
        st = c->variants[found].status;
        if (st) ib__error(st, "compiling the model for batch %lld failed earlier",
                          (long long)batch);
    }
    *rt_out = found >= 0 ? c->variants[found].rt : NULL;
    pthread_mutex_unlock(&c->mu);
    return st;
}

static ib_status bucket_variant(void *ctx, int64_t bucket, ib__rt_model **rt) {
    return variant_for(ctx, bucket, rt);
}

/* Initializers that are also graph inputs may be fed; plans hold them as weights (a
 * plan's inputs are only the graph's IB_VALUE_INPUT values). */
static bool fed_initializer(const ib__compiled *c, size_t n_inputs, const char *const *names) {
    for (size_t i = 0; c->graph && i < n_inputs; i++) {
        const ib__value *v = names[i] ? ib__graph_find_value(c->graph, names[i]) : NULL;
        if (v && v->kind == IB_VALUE_INITIALIZER) return true;
    }
    return false;
}

ib_status ib__compiled_run(ib__compiled *c, ib__pool *pool, size_t n_inputs,
                           const char *const *input_names, const ib_tensor *inputs,
                           size_t n_outputs, const char *const *output_names,
                           ib_tensor *outputs, bool *use_reference) {
    *use_reference = false;
    ib__rt_model *rt = c->fixed;
    if (!rt) {
        if (n_inputs && (!input_names || !inputs)) {
            *use_reference = true; /* the reference executor reports it */
            return IB_OK;
        }
        int64_t batch = batch_of(c->graph, n_inputs, input_names, inputs);
        if (batch == 0) {
            *use_reference = true;
            return IB_OK;
        }
        if (fed_initializer(c, n_inputs, input_names)) {
            *use_reference = true; /* plans hold them as weights */
            return IB_OK;
        }
        if (!ib__buckets_direct(&c->buckets, batch))
            return ib__buckets_run(&c->buckets, batch, bucket_variant, c, pool, n_inputs,
                                   input_names, inputs, n_outputs, output_names, outputs,
                                   use_reference);
        ib_status st = variant_for(c, batch, &rt);
        IB_TRY(st);
        if (!rt) {
            *use_reference = true;
            return IB_OK;
        }
    }
    /* the dynamic path checked it above, before splitting into buckets */
    if (c->fixed && fed_initializer(c, n_inputs, input_names)) {
        *use_reference = true;
        return IB_OK;
    }
    return ib__rt_run(rt, pool, n_inputs, input_names, inputs, n_outputs, output_names, outputs);
}

void ib__compiled_cache_counts(const ib__compiled *c, uint64_t *hits, uint64_t *misses) {
    *hits = c ? atomic_load(&c->cache_hits) : 0;
    *misses = c ? atomic_load(&c->cache_misses) : 0;
}
