/* The compiled-model cache as sessions and the CLI use it: whether it is on, the cache
 * key of a loaded model or of a model file not parsed (computed once, then per batch),
 * the labels entries get. */
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/model_cache.h"
#include "cache/cache_internal.h"
#include "codegen/source_builder.h"
#include "inferbooster/kernel_abi.h"
#include "tune/tune.h"

struct ib__model_cache {
    ib__cache *cache;
    const ib_model *model; /* NULL: opened for a file not parsed (source_path) */
    char *source_path;
    char *tuning_db;       /* NULL: the environment's or the default tuning database */
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

/* The part of opening shared by loaded models and unparsed files. */
static ib_status open_common(const ib__target *target, const char *dir, const char *tuning_db,
                             const char *source_path, ib__model_cache **out) {
    ib__model_cache *mc = ib__calloc(1, sizeof *mc);
    if (!mc) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory opening the cache");
    pthread_mutex_init(&mc->mu, NULL);
    mc->target = *target;
    if (tuning_db && !(mc->tuning_db = ib__strdup(tuning_db))) {
        ib__model_cache_close(mc);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory opening the cache");
    }
    /* Loading a damaged model.so could crash the process: hash it (and the metadata) on
     * every hit; weights.bin is checked by the runtime against the module's hash. */
    ib__cache_limits limits = {0, 0, false, (uint64_t)64 << 20};
    ib_status st = ib__cache_open(dir, &limits, &mc->cache);
    if (st == IB_OK && source_path)
        st = ib__cache_model_label(source_path, mc->label);
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

ib_status ib__model_cache_open(const ib_model *model, const ib__target *target, const char *dir,
                               const char *tuning_db, ib__model_cache **out) {
    if (!model || !target || !out)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model cache: NULL argument");
    IB_TRY(open_common(target, dir, tuning_db, ib__model_onnx(model)->source_path, out));
    (*out)->model = model;
    return IB_OK;
}

ib_status ib__model_cache_open_file(const char *model_path, const ib__target *target,
                                    const char *dir, const char *tuning_db,
                                    ib__model_cache **out) {
    if (!model_path || !target || !out)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model cache: NULL argument");
    char *copy = ib__cache_path("%s", model_path);
    if (!copy) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory opening the cache");
    ib_status st = open_common(target, dir, tuning_db, model_path, out);
    if (st) {
        ib__free(copy);
        return st;
    }
    (*out)->source_path = copy;
    return IB_OK;
}

void ib__model_cache_close(ib__model_cache *mc) {
    if (!mc) return;
    ib__cache_close(mc->cache);
    ib__free(mc->target_desc);
    ib__free(mc->source_path);
    ib__free(mc->tuning_db);
    pthread_mutex_destroy(&mc->mu);
    ib__free(mc);
}

ib__cache *ib__model_cache_handle(const ib__model_cache *mc) { return mc->cache; }
const char *ib__model_cache_label(const ib__model_cache *mc) { return mc->label; }
const char *ib__model_cache_target(const ib__model_cache *mc) { return mc->target_name; }

/* ---- Source records ------------------------------------------------------------------
 * A key covers the model's external data files, which only parsing the model names. So
 * a compile records them in digests/<model SHA-256>.src, relative to the model's folder
 * (the loader keeps them inside it), and a later session on the same file computes its
 * key without parsing. A record is derived from the model's bytes alone; missing,
 * damaged or naming files gone means "parse the model", never a wrong hit: the data
 * files' contents are hashed into the key as they are found now. */
#define SOURCE_MAGIC "inferbooster-source 1\n"
/* Line 2: "static" or "batch" (a symbolic batch: its entries are per batch size, and a
 * session needs the model to pick them, so records of such models are never used). */
#define SOURCE_MAX_BYTES (1u << 20)

static char *source_record_dir(const ib__model_cache *mc) {
    return ib__cache_path("%s/digests", ib__cache_dir(mc->cache));
}

/* realpath of the folder holding path, or NULL. */
static char *model_folder(const char *path) {
    char real[PATH_MAX];
    if (!realpath(path, real)) return NULL;
    char *slash = strrchr(real, '/');
    if (!slash) return NULL;
    if (slash == real) slash[1] = '\0';
    else *slash = '\0';
    return ib__cache_path("%s", real);
}

/* Best effort: without a record the next session parses the model, as today. */
static void write_source_record(const ib__model_cache *mc, const char *model_path,
                                const char *model_hex, bool dynamic, const char *const *data,
                                size_t n_data) {
    char *dir = source_record_dir(mc), *folder = model_folder(model_path);
    char name[IB_CACHE_KEY_HEX + 8], tmp[IB_CACHE_KEY_HEX + 40];
    snprintf(name, sizeof name, "%s.src", model_hex);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", name, (long)getpid());
    char *path = dir ? ib__cache_path("%s/%s", dir, name) : NULL;
    ib__sb sb;
    ib__sb_init(&sb);
    bool ok = dir && folder && path;
    size_t flen = folder ? strlen(folder) : 0;
    if (ok) ib__sb_printf(&sb, SOURCE_MAGIC "%s\n%zu\n", dynamic ? "batch" : "static", n_data);
    for (size_t i = 0; ok && i < n_data; i++) {
        const char *d = data[i];
        bool inside = strncmp(d, folder, flen) == 0 && (d[flen] == '/' || folder[flen - 1] == '/');
        const char *rel = inside ? d + flen + (d[flen] == '/') : NULL;
        ok = rel && rel[0] && !strchr(rel, '\n');
        if (ok) ib__sb_printf(&sb, "%s\n", rel);
    }
    char hex[IB_CACHE_KEY_HEX + 1];
    if (ok && ib__sb_status(&sb) == IB_OK && ib__cache_sha256_hex(sb.data, sb.len, hex) == IB_OK)
        ib__sb_printf(&sb, "sha256 %s\n", hex);
    else
        ok = false;
    /* Rewritten only when it differs (missing or damaged): sessions of models with a
     * symbolic batch come through here every time. */
    char *old = NULL;
    size_t old_len = 0;
    if (ok && ib__cache_read_file(path, SOURCE_MAX_BYTES, &old, &old_len, NULL) == IB_OK &&
        old_len == sb.len && memcmp(old, sb.data, sb.len) == 0)
        ok = false;
    ib__free(old);
    if (ok && ib__sb_status(&sb) == IB_OK && ib__cache_mkdir(dir, 0700) == IB_OK)
        ib__cache_write_atomic_ex(dir, name, tmp, sb.data, sb.len, false);
    ib__sb_free(&sb);
    ib__free(path);
    ib__free(folder);
    ib__free(dir);
    ib__error_clear();
}

/* A relative path that stays inside its folder: no "..", no "//", no leading '/'. */
static bool confined_relative(const char *rel) {
    if (!rel[0] || rel[0] == '/') return false;
    for (const char *p = rel; *p;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 || (len == 2 && p[0] == '.' && p[1] == '.')) return false;
        p += len + (end ? 1 : 0);
        if (end && !*p) return false;
    }
    return true;
}

/* The external data files the record of model_hex names, resolved against the model's
 * folder (*paths: one ib__malloc'ed block, NULL-terminated array then strings). IB_OK
 * with *found false: no usable record. */
static ib_status read_source_record(const ib__model_cache *mc, const char *model_hex,
                                    char ***paths, size_t *n, bool *found) {
    *found = false;
    *paths = NULL;
    *n = 0;
    char *dir = source_record_dir(mc);
    char *path = dir ? ib__cache_path("%s/%s.src", dir, model_hex) : NULL;
    char *folder = model_folder(mc->source_path);
    char *text = NULL;
    size_t len = 0;
    ib_status st = path && folder ? IB_OK : ib__error(IB_ERR_IO, "no source record");
    if (st == IB_OK) st = ib__cache_read_file(path, SOURCE_MAX_BYTES, &text, &len, NULL);
    /* Layout: magic, "static", count, that many lines, "sha256 <hex of all before>\n". */
    char *tail = NULL;
    if (st == IB_OK && len > 72 && text[len - 1] == '\n') {
        tail = text + len - 72;
        char hex[IB_CACHE_KEY_HEX + 1];
        if (strncmp(tail, "sha256 ", 7) != 0 ||
            ib__cache_sha256_hex(text, (size_t)(tail - text), hex) != IB_OK ||
            memcmp(hex, tail + 7, IB_CACHE_KEY_HEX) != 0)
            tail = NULL;
    }
    size_t count = 0;
    char *line = NULL;
    static const char head[] = SOURCE_MAGIC "static\n";
    if (tail && strncmp(text, head, strlen(head)) == 0) {
        *tail = '\0';
        line = text + strlen(head);
        char *end = NULL;
        unsigned long long v = strtoull(line, &end, 10);
        if (end && *end == '\n' && end != line && v <= 4096) {
            count = (size_t)v;
            line = end + 1;
        } else {
            line = NULL;
        }
    }
    size_t flen = folder ? strlen(folder) : 0, total = 0;
    char *cursor = line;
    for (size_t i = 0; cursor && i < count; i++) { /* validate and measure */
        char *nl = strchr(cursor, '\n');
        if (!nl) {
            cursor = NULL;
            break;
        }
        *nl = '\0';
        if (!confined_relative(cursor)) cursor = NULL;
        else {
            total += flen + 1 + strlen(cursor) + 1;
            cursor = nl + 1;
        }
    }
    if (cursor && *cursor) cursor = NULL; /* lines beyond the count */
    char **out = NULL;
    if (cursor) {
        out = ib__malloc((count + 1) * sizeof *out + total + 1);
        if (!out) st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (out) {
        char *w = (char *)(out + count + 1);
        const char *r = line;
        for (size_t i = 0; i < count; i++) {
            out[i] = w;
            w += sprintf(w, "%s%s%s", folder, folder[flen - 1] == '/' ? "" : "/", r) + 1;
            r += strlen(r) + 1;
        }
        out[count] = NULL;
        *paths = out;
        *n = count;
        *found = true;
    }
    ib__free(text);
    ib__free(folder);
    ib__free(path);
    ib__free(dir);
    ib__error_clear();
    return st == IB_ERR_OUT_OF_MEMORY ? st : IB_OK;
}

/* The model's bytes (by file, with the cache's digest memo, or from memory), external
 * data, target and compiler. Caller holds mc->mu. A file not parsed whose source record
 * is missing gives IB_ERR_UNSUPPORTED. */
static ib_status compute_base(ib__model_cache *mc) {
    pthread_mutex_lock(&identity_mu);
    if (!identity[0]) compute_identity(mc->cache);
    pthread_mutex_unlock(&identity_mu);
    const ib__onnx_model *onnx = mc->model ? ib__model_onnx(mc->model) : NULL;
    const char *file = onnx ? onnx->source_path : mc->source_path;
    const char **data = NULL;
    char **recorded = NULL;
    size_t n_data = 0;
    char model_hex[IB_CACHE_KEY_HEX + 1];
    ib_status st = IB_OK;
    if (file) st = ib__cache_file_digest(file, mc->cache, model_hex);
    else st = ib__cache_sha256_hex(onnx->source_bytes ? onnx->source_bytes : "",
                                   onnx->source_size, model_hex);
    if (st == IB_OK && onnx) {
        st = ib__onnx_data_paths(onnx, &data, &n_data);
        if (st == IB_OK && file)
            write_source_record(mc, file, model_hex, ib__model_has_symbolic_batch(mc->model), data,
                                n_data);
    } else if (st == IB_OK) {
        bool found = false;
        st = read_source_record(mc, model_hex, &recorded, &n_data, &found);
        if (st == IB_OK && !found)
            st = ib__error(IB_ERR_UNSUPPORTED, "no source record for '%s'", file);
        data = (const char **)recorded;
    }
    char tuning[IB_TUNE_HEX + 1] = "";
    if (st == IB_OK) st = ib__tune_compile_digest(&mc->target, mc->tuning_db, tuning);
    ib__cache_key_input in = {
        .model_digest = model_hex,
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
    if (recorded) ib__free(recorded);
    else ib__free(data);
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
    /* Everything ib__compile_options can change (only the batch varies today), and the
     * environment switches that change the code. */
    int wino = ib__winograd_mode(), tile = ib__winograd_tile_override();
    char tile_opt[24] = "";
    if (tile) snprintf(tile_opt, sizeof tile_opt, " winograd_tile=%d", tile);
    snprintf(options, sizeof options, "batch=%lld precision=fp32%s%s", (long long)batch,
             wino == 1 ? "" : wino == 0 ? " winograd=0" : " winograd=always", tile_opt);
    ib__cache_key_input in = {.model_digest = base, .options = options};
    return ib__cache_key(&in, key);
}
