/* Tuned knobs for the compiler: a knob source (passes/compile_plan.h) that gives each
 * workload the knobs of its best tuning record, records every kernel's workload key,
 * and digests the records it applied (for the compiled-model cache key). */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tune/tune.h"

struct ib__tune_knobs {
    ib__knob_source source;
    const ib__tune_db *db;
    ib__tune_db *owned_db;
    char target[IB_TUNE_TARGET_MAX];
    int32_t n_keys;
    char **keys;          /* per kernel index: its workload key, NULL when not tunable */
    int32_t applied;
    EVP_MD_CTX *md;       /* over "key\ttarget\tknobs\n" of each record applied */
};

static void note_key(ib__tune_knobs *tk, int32_t index, const char *key) {
    if (index < 0) return;
    if (index >= tk->n_keys) {
        int32_t n = tk->n_keys ? tk->n_keys : 64;
        while (n <= index) n *= 2;
        char **k = ib__realloc(tk->keys, (size_t)n * sizeof *k);
        if (!k) return; /* only the task list loses this kernel */
        for (int32_t i = tk->n_keys; i < n; i++) k[i] = NULL;
        tk->keys = k;
        tk->n_keys = n;
    }
    ib__free(tk->keys[index]);
    tk->keys[index] = key ? ib__strdup(key) : NULL;
}

static void pick(void *ctx, const ib__plan *plan, const ib__pkernel *k, int32_t index,
                 ib__knobs *knobs) {
    ib__tune_knobs *tk = ctx;
    char key[IB_TUNE_KEY_MAX];
    ib__pkernel probe = *k;
    probe.knobs = *knobs;
    if (!ib__tune_workload_key(plan, &probe, key, sizeof key)) {
        note_key(tk, index, NULL);
        return;
    }
    note_key(tk, index, key);
    /* The best record naming exactly the template's knobs (older ones are stale: Winograd
     * records from before tile_size ran F(2x2) where its default is now F(4x4)), applied
     * only when the template still accepts its values. */
    const ib__tune_record *best = tk->db ? ib__tune_db_pick(tk->db, tk->target, key, knobs) : NULL;
    if (!best) return;
    ib__knobs cand = *knobs;
    for (int32_t i = 0; i < best->n_knobs; i++) {
        int32_t j = 0;
        while (j < cand.n && strcmp(cand.name[j], best->knob_name[i]) != 0) j++;
        if (j == cand.n) return; /* not reached: the pick named exactly these knobs */
        cand.value[j] = best->knob_value[i];
    }
    if (!k->tmpl->knobs_valid(plan, k, &cand)) return;
    *knobs = cand;
    tk->applied++;
    if (tk->md) {
        ib__sb line;
        ib__sb_init(&line);
        ib__sb_printf(&line, "%s\t%s\t", key, tk->target);
        for (int32_t i = 0; i < cand.n; i++)
            ib__sb_printf(&line, "%s=%lld;", cand.name[i], (long long)cand.value[i]);
        ib__sb_printf(&line, "\n");
        if (ib__sb_status(&line) == IB_OK) EVP_DigestUpdate(tk->md, line.data, line.len);
        ib__sb_free(&line);
    }
}

ib_status ib__tune_knobs_create(const ib__tune_db *db, const ib__target *target,
                                ib__tune_knobs **out) {
    ib__tune_knobs *tk = ib__calloc(1, sizeof *tk);
    if (!tk) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    tk->db = db;
    ib__tune_target_key(target, tk->target);
    tk->source.pick = pick;
    tk->source.ctx = tk;
    tk->md = EVP_MD_CTX_new();
    if (!tk->md || !EVP_DigestInit_ex(tk->md, EVP_sha256(), NULL)) {
        ib__tune_knobs_destroy(tk);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "cannot start a digest");
    }
    *out = tk;
    return IB_OK;
}

void ib__tune_knobs_destroy(ib__tune_knobs *tk) {
    if (!tk) return;
    for (int32_t i = 0; i < tk->n_keys; i++) ib__free(tk->keys[i]);
    ib__free(tk->keys);
    if (tk->md) EVP_MD_CTX_free(tk->md);
    ib__tune_db_close(tk->owned_db);
    ib__free(tk);
}

const ib__knob_source *ib__tune_knobs_source(ib__tune_knobs *tk) { return &tk->source; }
int32_t ib__tune_knobs_applied(const ib__tune_knobs *tk) { return tk->applied; }

const char *ib__tune_knobs_key_of(const ib__tune_knobs *tk, int32_t index) {
    return index >= 0 && index < tk->n_keys ? tk->keys[index] : NULL;
}

void ib__tune_knobs_digest(const ib__tune_knobs *tk, char out[IB_TUNE_HEX + 1]) {
    out[0] = '\0';
    if (!tk || !tk->applied || !tk->md) return;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    /* a copy, so more kernels may still be added to the running digest */
    if (c && EVP_MD_CTX_copy_ex(c, tk->md) && EVP_DigestFinal_ex(c, md, &len) && len == 32) {
        static const char hex[] = "0123456789abcdef";
        for (unsigned i = 0; i < 32; i++) {
            out[2 * i] = hex[md[i] >> 4];
            out[2 * i + 1] = hex[md[i] & 15];
        }
        out[64] = '\0';
    }
    if (c) EVP_MD_CTX_free(c);
}

ib_status ib__tune_compile_knobs(const ib__target *target, const char *db_path,
                                 ib__tune_knobs **out) {
    *out = NULL;
    const char *which = db_path ? db_path : getenv("INFERBOOSTER_TUNING_DB");
    if (which && (strcmp(which, "off") == 0 || strcmp(which, "none") == 0)) return IB_OK;
    char *path = NULL;
    if (which && which[0]) {
        path = ib__strdup(which);
        if (!path) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    } else if (ib__tune_db_default_path(&path) != IB_OK) {
        ib__error_clear(); /* no cache directory: no tuning records either */
        return IB_OK;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        ib__free(path);
        return IB_OK;
    }
    ib__tune_db *db = NULL;
    ib_status st = ib__tune_db_open(path, &db);
    ib__free(path);
    if (st) {
        /* an unreadable database must not stop compiling: defaults are always right */
        ib__error_clear();
        return IB_OK;
    }
    ib__tune_knobs *tk = NULL;
    st = ib__tune_knobs_create(db, target, &tk);
    if (st) {
        ib__tune_db_close(db);
        return st;
    }
    tk->owned_db = db;
    *out = tk;
    return IB_OK;
}

static int rec_cmp(const void *a, const void *b) {
    const ib__tune_record *x = *(const ib__tune_record *const *)a;
    const ib__tune_record *y = *(const ib__tune_record *const *)b;
    return strcmp(x->key, y->key);
}

ib_status ib__tune_compile_digest(const ib__target *target, const char *db_path,
                                  char out[IB_TUNE_HEX + 1]) {
    out[0] = '\0';
    ib__tune_knobs *tk = NULL;
    IB_TRY(ib__tune_compile_knobs(target, db_path, &tk));
    if (!tk) return IB_OK;
    const ib__tune_db *db = tk->db;
    int32_t n = ib__tune_db_size(db), m = 0;
    const ib__tune_record **best = ib__calloc((size_t)(n ? n : 1), sizeof *best);
    if (!best) {
        ib__tune_knobs_destroy(tk);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    }
    /* one best record per workload key, in key order (file order must not matter) */
    for (int32_t i = 0; i < n; i++) {
        const ib__tune_record *r = ib__tune_db_at(db, i);
        if (!r->ok || strcmp(r->target, tk->target) != 0) continue;
        if (ib__tune_db_pick(db, tk->target, r->key, NULL) != r) continue;
        best[m++] = r;
    }
    qsort(best, (size_t)m, sizeof *best, rec_cmp);
    for (int32_t i = 0; i < m && tk->md; i++) {
        ib__sb line;
        ib__sb_init(&line);
        ib__sb_printf(&line, "%s\t%s\t", best[i]->key, tk->target);
        for (int32_t j = 0; j < best[i]->n_knobs; j++)
            ib__sb_printf(&line, "%s=%lld;", best[i]->knob_name[j], (long long)best[i]->knob_value[j]);
        ib__sb_printf(&line, "\n");
        if (ib__sb_status(&line) == IB_OK) EVP_DigestUpdate(tk->md, line.data, line.len);
        ib__sb_free(&line);
        tk->applied++;
    }
    ib__tune_knobs_digest(tk, out);
    ib__free(best);
    ib__tune_knobs_destroy(tk);
    return IB_OK;
}
