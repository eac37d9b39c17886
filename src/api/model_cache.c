/* The compiled-model cache as sessions and the CLI use it: whether it is on, the cache
 * key of a loaded model (computed once, then per batch), the labels entries get. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/model_cache.h"
#include "cache/cache_internal.h"
#include "codegen/source_builder.h"
#include "inferbooster/kernel_abi.h"
#include "tune/tune.h"

struct ib__model_cache {
    ib__cache *cache;
    const ib_model *model;
    char label[IB_CACHE_LABEL_MAX];
    char target_name[IB_CACHE_LABEL_MAX];
    char *target_desc; /* every field of the target that shapes generated code */
    ib__target target;
    pthread_mutex_t mu;
    bool have_base;
    char base[IB_CACHE_KEY_HEX + 1]; /* key over everything but the per-batch options */
};

bool ib__model_cache_disabled_by_env(void) {
    const char *v = getenv("INFERBOOSTER_NO_CACHE");
    return v && v[0] && strcmp(v, "0") != 0;
}

static char *describe_target(const ib__target *t) {
    ib__sb sb;
    ib__sb_init(&sb);
    ib__sb_printf(&sb, "name=%s arch=%d vbits=%d vregs=%d fma=%d l1d=%lld l2=%lld l3=%lld "
                  "cores=%d cc=%s flags=", t->name, (int)t->arch, t->vector_bits,
                  t->vector_regs, t->has_fma ? 1 : 0, (long long)t->l1d_bytes,
                  (long long)t->l2_bytes, (long long)t->l3_bytes, t->num_cores, t->cc);
    for (int i = 0; i < IB_TARGET_MAX_FLAGS && t->cflags[i]; i++)
        ib__sb_printf(&sb, "%s%s", i ? "," : "", t->cflags[i]);
    if (ib__sb_status(&sb) != IB_OK) {
        ib__sb_free(&sb);
        return NULL;
    }
    return sb.data; /* NUL-terminated, ib__malloc'ed */
}

/* This compiler: its version, the kernel ABI, and the SHA-256 of the binary its code
 * was loaded from (so a rebuilt compiler never hits an entry of the old one). Computed
 * once per process. */
static pthread_mutex_t identity_mu = PTHREAD_MUTEX_INITIALIZER;
static char identity[256];

static void compute_identity(ib__cache *memo) {
    Dl_info info;
    char hex[IB_CACHE_KEY_HEX + 1] = "unknown";
    if (dladdr((void *)compute_identity, &info) && info.dli_fname && info.dli_fname[0]) {
        const char *path = info.dli_fname;
        /* The main program's name may come back relative or bare: use /proc/self/exe. */
        if (!strchr(path, '/')) path = "/proc/self/exe";
        if (ib__cache_file_digest(path, memo, hex) != IB_OK &&
            ib__cache_file_digest("/proc/self/exe", memo, hex) != IB_OK)
            snprintf(hex, sizeof hex, "unknown");
        ib__error_clear();
    }
    snprintf(identity, sizeof identity, "inferbooster %s abi %u binary %s", IB_VERSION_STRING,
             (unsigned)IB_KERNEL_ABI_VERSION, hex);
}

ib_status ib__model_cache_open(const ib_model *model, const ib__target *target, const char *dir,
                               ib__model_cache **out) {
    if (!model || !target || !out)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model cache: NULL argument");
    ib__model_cache *mc = ib__calloc(1, sizeof *mc);
    if (!mc) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory opening the cache");
    pthread_mutex_init(&mc->mu, NULL);
    mc->model = model;
    mc->target = *target;
    /* Loading a damaged model.so could crash the process: hash it (and the metadata) on
     * every hit; weights.bin is checked by the runtime against the module's hash. */
    ib__cache_limits limits = {0, 0, false, (uint64_t)64 << 20};
    ib_status st = ib__cache_open(dir, &limits, &mc->cache);
    const ib__onnx_model *onnx = ib__model_onnx(model);
    if (st == IB_OK && onnx->source_path)
        st = ib__cache_model_label(onnx->source_path, mc->label);
    else if (st == IB_OK)
        snprintf(mc->label, sizeof mc->label, "memory#0");
    if (st == IB_OK) {
        ib__cache_sanitize(target->name, mc->target_name, sizeof mc->target_name);
        mc->target_desc = describe_target(target);
        if (!mc->target_desc) st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory opening the cache");
    }
    if (st) {
        ib__model_cache_close(mc);
        return st;
    }
    *out = mc;
    return IB_OK;
}

void ib__model_cache_close(ib__model_cache *mc) {
    if (!mc) return;
    ib__cache_close(mc->cache);
    ib__free(mc->target_desc);
    pthread_mutex_destroy(&mc->mu);
    ib__free(mc);
}

ib__cache *ib__model_cache_handle(const ib__model_cache *mc) { return mc->cache; }
const char *ib__model_cache_label(const ib__model_cache *mc) { return mc->label; }
const char *ib__model_cache_target(const ib__model_cache *mc) { return mc->target_name; }

/* The model's bytes (by file, with the cache's digest memo, or from memory), external
 * data, target and compiler. Caller holds mc->mu. */
static ib_status compute_base(ib__model_cache *mc) {
    pthread_mutex_lock(&identity_mu);
    if (!identity[0]) compute_identity(mc->cache);
    pthread_mutex_unlock(&identity_mu);
    const ib__onnx_model *onnx = ib__model_onnx(mc->model);
    const char **data = NULL;
    size_t n_data = 0;
    IB_TRY(ib__onnx_data_paths(onnx, &data, &n_data));
    char digest[IB_CACHE_KEY_HEX + 1];
    char tuning[IB_TUNE_HEX + 1] = "";
    ib_status st = ib__tune_compile_digest(&mc->target, tuning);
    if (st == IB_OK && !onnx->source_path)
        st = ib__cache_sha256_hex(onnx->source_bytes ? onnx->source_bytes : "", onnx->source_size,
                                  digest);
    ib__cache_key_input in = {
        .model_path = onnx->source_path,
        .model_digest = onnx->source_path ? NULL : digest,
        .data_paths = data,
        .n_data_paths = n_data,
        .target_name = mc->target_name,
        .target_features = mc->target_desc,
        .compiler_version = identity,
        .options = "",
        .tuning_digest = tuning, /* the records a compile for this target may use */
        .digest_memo = mc->cache,
    };
    if (st == IB_OK) st = ib__cache_key(&in, mc->base);
    ib__free(data);
    if (st == IB_OK) mc->have_base = true;
    return st;
}

ib_status ib__model_cache_key(ib__model_cache *mc, int64_t batch, char key[IB_CACHE_KEY_HEX + 1]) {
    pthread_mutex_lock(&mc->mu);
    ib_status st = mc->have_base ? IB_OK : compute_base(mc);
    char base[IB_CACHE_KEY_HEX + 1];
    memcpy(base, mc->base, sizeof base);
    pthread_mutex_unlock(&mc->mu);
    IB_TRY(st);
    char options[96];
    /* Everything ib__compile_options can change; only the batch varies today. */
    snprintf(options, sizeof options, "batch=%lld precision=fp32", (long long)batch);
    ib__cache_key_input in = {.model_digest = base, .options = options};
    return ib__cache_key(&in, key);
}
