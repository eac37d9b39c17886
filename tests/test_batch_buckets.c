/* Batch buckets through the C API: a symbolic-batch model (the example MLP, compiled)
 * run at n = 1, 3, 5, 8, 13 equals the reference executor and, bit for bit, a session
 * compiling each exact size; only bucket-sized variants land in the compiled-model
 * cache; caller buffers, padding mode, batches beyond the largest bucket and bad inputs. */
#include <stdlib.h>
#include <unistd.h>

#include "api/batch_buckets.h"
#include "cache/cache.h"
#include "core/core.h"
#include "inferbooster/inferbooster.h"
#include "test.h"

#define MLP IB_SOURCE_DIR "/examples/models/mlp/model.onnx"

static char g_cache[512];

static ib_session *session(const ib_model *m, int32_t use_reference, const char *buckets) {
    if (buckets) setenv("INFERBOOSTER_BATCH_BUCKETS", buckets, 1);
    else unsetenv("INFERBOOSTER_BATCH_BUCKETS");
    ib_session_options o;
    ib_session_options_init(&o);
    o.use_reference = use_reference;
    o.num_threads = 2;
    o.cache_dir = g_cache;
    ib_session *s = NULL;
    if (ib_session_create(m, &o, &s) != IB_OK) fprintf(stderr, "  session: %s\n", ib_last_error());
    unsetenv("INFERBOOSTER_BATCH_BUCKETS");
    return s;
}

static float *random_rows(int64_t n, uint32_t seed) {
    float *p = malloc((size_t)n * 16 * sizeof(float));
    for (int64_t i = 0; i < n * 16; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / (float)(1u << 24) * 4.0f - 2.0f;
    }
    return p;
}

/* Runs s on n rows; the output (library-allocated) in *out. */
static ib_status run(ib_session *s, const float *x, int64_t n, ib_tensor *out) {
    ib_tensor in = {IB_DTYPE_FLOAT32, 2, {n, 16}, (void *)x, (size_t)n * 16 * sizeof(float), 0};
    const char *name = "input";
    memset(out, 0, sizeof *out);
    return ib_session_run(s, 1, &name, &in, 1, NULL, out);
}

static double max_diff(const ib_tensor *a, const ib_tensor *b) {
    if (a->nbytes != b->nbytes || a->rank != b->rank || a->shape[0] != b->shape[0]) return 1e30;
    const float *x = a->data, *y = b->data;
    double d = 0;
    for (size_t i = 0; i < a->nbytes / 4; i++) d = fmax(d, fabs((double)x[i] - y[i]));
    return d;
}

/* The batch sizes of the cache's entries, as a bit set (bit b: batch b, b < 63). */
static uint64_t cached_batches(int *count) {
    ib__cache *c = NULL;
    ib__cache_entry_info *e = NULL;
    size_t n = 0;
    uint64_t set = 0;
    *count = 0;
    if (ib__cache_open(g_cache, NULL, &c) != IB_OK || ib__cache_list(c, &e, &n) != IB_OK) {
        ib__cache_close(c);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char path[1024], buf[4096];
        snprintf(path, sizeof path, "%s/entries/%s/meta.json", g_cache, e[i].key);
        FILE *f = fopen(path, "rb");
        size_t k = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        buf[k] = '\0';
        const char *p = strstr(buf, "\"batch\":");
        long long b = -1;
        if (p && sscanf(p + 8, " %lld", &b) == 1 && b >= 0 && b < 63) set |= 1ull << b;
        (*count)++;
    }
    ib__free(e);
    ib__cache_close(c);
    return set;
}

/* How a batch splits: binary digits, whole maximum-sized pieces first, padding. */
TEST(pieces) {
    ib__buckets split = {IB_BUCKETS_SPLIT, 64, ""}, pad = {IB_BUCKETS_PAD, 64, ""};
    ib__buckets off = {IB_BUCKETS_OFF, 0, ""};
    ib__bucket_piece p[IB_BUCKETS_MAX_PIECES];
    CHECK_EQ_INT(ib__buckets_pieces(&split, 0, p), 0);
    CHECK_EQ_INT(ib__buckets_pieces(&split, 13, p), 3);
    CHECK(p[0].bucket == 8 && p[1].bucket == 4 && p[2].bucket == 1 && p[2].rows == 1);
    CHECK(ib__buckets_direct(&split, 64) && !ib__buckets_direct(&split, 128));
    CHECK_EQ_INT(ib__buckets_pieces(&split, 64, p), 1);
    CHECK_EQ_INT(ib__buckets_pieces(&split, 130, p), 2); /* 64 x 2 + 2 */
    CHECK(p[0].bucket == 64 && p[0].times == 2 && p[1].bucket == 2 && p[1].times == 1);
    CHECK_EQ_INT(ib__buckets_pieces(&split, 1 << 20, p), 1);
    CHECK(p[0].bucket == 64 && p[0].times == (1 << 14));
    CHECK_EQ_INT(ib__buckets_pieces(&split, 64 * 3 - 1, p), 7); /* 64 x 2 + 32+16+8+4+2+1 */
    CHECK_EQ_INT(ib__buckets_pieces(&pad, 13, p), 1);
    CHECK(p[0].rows == 13 && p[0].bucket == 16);
    CHECK_EQ_INT(ib__buckets_pieces(&pad, 100, p), 2);
    CHECK(p[0].bucket == 64 && p[1].rows == 36 && p[1].bucket == 64);
    CHECK_EQ_INT(ib__buckets_pieces(&off, 13, p), 1);
    CHECK(p[0].bucket == 13 && ib__buckets_direct(&off, 13));
}

static const int64_t SIZES[] = {1, 3, 5, 8, 13};
enum { N_SIZES = 5 };

TEST(buckets_match_reference_and_exact_sizes) {
    ib_model *m = NULL;
    CHECK(ib_model_load_file(MLP, &m) == IB_OK);
    if (!m) return;
    ib_session *bucketed = session(m, -1, NULL);
    ib_session *ref = session(m, 1, NULL);
    CHECK(bucketed && ref);
    for (int i = 0; bucketed && ref && i < N_SIZES; i++) {
        int64_t n = SIZES[i];
        float *x = random_rows(n, (uint32_t)(7 + n));
        ib_tensor a, r;
        CHECK(run(bucketed, x, n, &a) == IB_OK);
        CHECK(run(ref, x, n, &r) == IB_OK);
        CHECK_EQ_INT(a.shape[0], n);
        CHECK_EQ_INT(a.shape[1], 4);
        CHECK(max_diff(&a, &r) <= 1e-5);
        ib_tensor_release(&a);
        ib_tensor_release(&r);
        free(x);
    }
    CHECK(bucketed && strcmp(ib_session_executor(bucketed), "compiled") == 0);
    /* 13 = 8 + 4 + 1, 5 = 4 + 1, 3 = 2 + 1: buckets 1, 2, 4, 8 only */
    int count = 0;
    uint64_t set = cached_batches(&count);
    CHECK_EQ_INT(count, 4);
    CHECK_EQ_INT(set, (1u << 1) | (1u << 2) | (1u << 4) | (1u << 8));
    /* Exact-size variants (buckets off) give the same bits. */
    ib_session *exact = session(m, -1, "off");
    CHECK(exact != NULL);
    for (int i = 0; exact && bucketed && i < N_SIZES; i++) {
        int64_t n = SIZES[i];
        float *x = random_rows(n, (uint32_t)(7 + n));
        ib_tensor a, e;
        CHECK(run(bucketed, x, n, &a) == IB_OK);
        CHECK(run(exact, x, n, &e) == IB_OK);
        CHECK(a.nbytes == e.nbytes && memcmp(a.data, e.data, a.nbytes) == 0);
        ib_tensor_release(&a);
        ib_tensor_release(&e);
        free(x);
    }
    set = cached_batches(&count);
    CHECK(set & (1u << 13)); /* the exact session compiled 13 itself */
    ib_session_destroy(exact);
    ib_session_destroy(bucketed);
    ib_session_destroy(ref);
    ib_model_destroy(m);
}

/* A caller's buffer receives the pieces in place; the same output twice; padding mode and
 * batches beyond the largest bucket give the same rows. */
TEST(caller_buffers_padding_and_large_batches) {
    ib_model *m = NULL;
    CHECK(ib_model_load_file(MLP, &m) == IB_OK);
    if (!m) return;
    ib_session *split = session(m, -1, NULL);
    ib_session *pad = session(m, -1, "pad");
    ib_session *small = session(m, -1, "split:4"); /* 13 = 4 + 4 + 4 + 1 */
    ib_session *ref = session(m, 1, NULL);
    CHECK(split && pad && small && ref);
    if (!split || !pad || !small || !ref) goto done;
    int64_t n = 13;
    float *x = random_rows(n, 99);
    ib_tensor r;
    CHECK(run(ref, x, n, &r) == IB_OK);
    float buf[2][13 * 4 + 1];
    ib_tensor outs[2];
    for (int k = 0; k < 2; k++) {
        memset(&outs[k], 0, sizeof outs[k]);
        outs[k].dtype = IB_DTYPE_FLOAT32;
        outs[k].data = buf[k];
        outs[k].nbytes = sizeof buf[k];
        buf[k][13 * 4] = 12345.0f; /* past the output: untouched */
    }
    ib_tensor in = {IB_DTYPE_FLOAT32, 2, {n, 16}, x, (size_t)n * 16 * sizeof(float), 0};
    const char *name = "input", *twice[2] = {"probabilities", "probabilities"};
    CHECK(ib_session_run(split, 1, &name, &in, 2, twice, outs) == IB_OK);
    for (int k = 0; k < 2; k++) {
        CHECK_EQ_INT(outs[k].nbytes, 13 * 4 * sizeof(float));
        CHECK_EQ_INT(outs[k].shape[0], 13);
        CHECK(max_diff(&outs[k], &r) <= 1e-5);
        CHECK(buf[k][13 * 4] == 12345.0f);
    }
    ib_tensor p, s;
    CHECK(run(pad, x, n, &p) == IB_OK);
    CHECK(max_diff(&p, &r) <= 1e-5);
    CHECK(run(small, x, n, &s) == IB_OK);
    CHECK(max_diff(&s, &r) <= 1e-5);
    ib_tensor_release(&p);
    ib_tensor_release(&s);
    /* a caller buffer too small, a wrong dim 1: errors, no crash */
    outs[0].nbytes = 12 * 4 * sizeof(float);
    CHECK(ib_session_run(split, 1, &name, &in, 1, NULL, outs) == IB_ERR_INVALID_ARGUMENT);
    in.shape[1] = 15;
    ib_tensor bad;
    memset(&bad, 0, sizeof bad);
    CHECK(ib_session_run(split, 1, &name, &in, 1, NULL, &bad) == IB_ERR_INVALID_ARGUMENT);
    CHECK(bad.data == NULL);
    ib_tensor_release(&r);
    free(x);
done:
    ib_session_destroy(split);
    ib_session_destroy(pad);
    ib_session_destroy(small);
    ib_session_destroy(ref);
    ib_model_destroy(m);
}

int main(void) {
    const char *root = getenv("INFERBOOSTER_CACHE_DIR");
    snprintf(g_cache, sizeof g_cache, "%s/buckets-XXXXXX", root && root[0] ? root : "/tmp");
    char parent[512];
    snprintf(parent, sizeof parent, "%s", root && root[0] ? root : "/tmp");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", parent);
    if (system(cmd) != 0 || !mkdtemp(g_cache)) {
        fprintf(stderr, "cannot create a cache directory under %s\n", parent);
        return 1;
    }
    RUN(pieces);
    RUN(buckets_match_reference_and_exact_sizes);
    RUN(caller_buffers_padding_and_large_batches);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_cache);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_cache);
    TEST_SUMMARY();
}
