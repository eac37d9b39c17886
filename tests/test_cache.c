/* Unit tests of the compiled-model cache: LFU order with FIFO ties, the byte limit,
 * keys that change with every input, pins that survive eviction, a corrupt index
 * rebuilt, a corrupt entry dropped by verify and rebuilt by the next insert, failed
 * builds leaving nothing, hostile labels. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/cache_internal.h"
#include "test.h"

static char g_root[64];

typedef struct build_ctx {
    size_t size;
    int seed;
    int calls;
    bool fail;
} build_ctx;

static ib_status build_blob(void *ctx, const char *dir) {
    build_ctx *b = ctx;
    b->calls++;
    if (b->fail) return ib__error(IB_ERR_RUNTIME, "test build failed on purpose");
    char path[512];
    snprintf(path, sizeof path, "%s/blob.bin", dir);
    FILE *f = fopen(path, "wb");
    if (!f) return ib__error(IB_ERR_IO, "cannot create %s", path);
    for (size_t i = 0; i < b->size; i++) fputc((int)((i * 31u + (unsigned)b->seed) & 0xff), f);
    fclose(f);
    return IB_OK;
}

static void fake_key(int n, char out[IB_CACHE_KEY_HEX + 1]) {
    char text[32];
    snprintf(text, sizeof text, "entry-%d", n);
    ib__cache_sha256_hex(text, strlen(text), out);
}

static ib__cache *open_cache(const char *sub, uint64_t max_entries, uint64_t max_bytes) {
    char dir[160];
    snprintf(dir, sizeof dir, "%s/%s", g_root, sub);
    ib__cache_limits lim = {max_entries, max_bytes, false};
    ib__cache *c = NULL;
    if (ib__cache_open(dir, &lim, &c) != IB_OK) {
        fprintf(stderr, "  open %s: %s\n", dir, ib_last_error());
        return NULL;
    }
    return c;
}

/* Inserts entry n (size bytes) and releases its pin; returns whether it was built. */
static bool put(ib__cache *c, int n, size_t size) {
    char key[IB_CACHE_KEY_HEX + 1];
    fake_key(n, key);
    build_ctx b = {size, n, 0, false};
    ib__cache_entry *e = NULL;
    bool built = false;
    char name[32];
    snprintf(name, sizeof name, "model_%d#1", n);
    ib_status st = ib__cache_insert(c, key, name, "test", build_blob, &b, &e, &built);
    CHECK_EQ_INT(st, IB_OK);
    CHECK(e != NULL);
    ib__cache_release(e);
    return built;
}

static bool hit(ib__cache *c, int n) {
    char key[IB_CACHE_KEY_HEX + 1];
    fake_key(n, key);
    ib__cache_entry *e = NULL;
    CHECK_EQ_INT(ib__cache_lookup(c, key, &e), IB_OK);
    bool found = e != NULL;
    ib__cache_release(e);
    return found;
}

static bool present(ib__cache *c, int n, uint64_t *freq) {
    char key[IB_CACHE_KEY_HEX + 1];
    fake_key(n, key);
    ib__cache_entry_info *list = NULL;
    size_t count = 0;
    CHECK_EQ_INT(ib__cache_list(c, &list, &count), IB_OK);
    bool found = false;
    for (size_t i = 0; i < count; i++)
        if (strcmp(list[i].key, key) == 0) {
            found = true;
            if (freq) *freq = list[i].freq;
        }
    ib__free(list);
    return found;
}

static uint64_t n_entries(ib__cache *c) {
    ib__cache_stats s;
    CHECK_EQ_INT(ib__cache_stats_get(c, &s), IB_OK);
    return s.entries;
}

TEST(lfu_order) {
    ib__cache *c = open_cache("lfu", 3, 0);
    if (!c) { CHECK(0); return; }
    CHECK(put(c, 1, 100));
    CHECK(!put(c, 1, 100)); /* used twice: freq 2 */
    CHECK(put(c, 2, 100));
    CHECK(put(c, 3, 100));
    CHECK(hit(c, 1)); /* freq 3 */
    uint64_t f = 0;
    CHECK(present(c, 1, &f));
    CHECK_EQ_INT(f, 3);
    CHECK(put(c, 4, 100)); /* 2 and 3 both freq 1: 2 came first */
    CHECK(present(c, 1, NULL));
    CHECK(!present(c, 2, NULL));
    CHECK(present(c, 3, NULL));
    CHECK(present(c, 4, NULL));
    CHECK(hit(c, 4));
    CHECK(hit(c, 4)); /* 4: freq 3, 3: freq 1 */
    CHECK(put(c, 5, 100));
    CHECK(!present(c, 3, NULL));
    ib__cache_stats s;
    CHECK_EQ_INT(ib__cache_stats_get(c, &s), IB_OK);
    CHECK_EQ_INT(s.entries, 3);
    CHECK_EQ_INT(s.evictions, 2);
    ib__cache_close(c);
}

TEST(ties_fifo) {
    ib__cache *c = open_cache("fifo", 2, 0);
    if (!c) { CHECK(0); return; }
    put(c, 1, 10);
    put(c, 2, 10);
    put(c, 3, 10);
    CHECK(!present(c, 1, NULL));
    CHECK(present(c, 2, NULL) && present(c, 3, NULL));
    put(c, 4, 10);
    CHECK(!present(c, 2, NULL));
    CHECK(present(c, 3, NULL) && present(c, 4, NULL));
    ib__cache_close(c);
}

TEST(byte_limit) {
    ib__cache *c = open_cache("bytes", 100, 3000);
    if (!c) { CHECK(0); return; }
    put(c, 1, 900);
    put(c, 2, 900);
    CHECK_EQ_INT(n_entries(c), 2);
    put(c, 3, 900); /* ~3 x (900 + manifest) > 3000 */
    ib__cache_stats s;
    CHECK_EQ_INT(ib__cache_stats_get(c, &s), IB_OK);
    CHECK(s.bytes <= 3000);
    CHECK(!present(c, 1, NULL));
    CHECK(present(c, 3, NULL));
    /* An entry larger than the limit alone is kept (its caller uses it), others go. */
    put(c, 4, 5000);
    CHECK(present(c, 4, NULL));
    CHECK_EQ_INT(n_entries(c), 1);
    ib__cache_close(c);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

TEST(key_inputs) {
    char model[128], data[128];
    snprintf(model, sizeof model, "%s/key_model.onnx", g_root);
    snprintf(data, sizeof data, "%s/key_model.data", g_root);
    write_file(model, "model bytes");
    write_file(data, "weights");
    const char *datas[] = {data};
    ib__cache_key_input in = {model, datas, 1, "x86_64", "avx2,fma", "0.1.0", "batch=1", "", NULL};
    char base[65], again[65], k[65];
    CHECK_EQ_INT(ib__cache_key(&in, base), IB_OK);
    CHECK_EQ_INT(ib__cache_key(&in, again), IB_OK);
    CHECK(strcmp(base, again) == 0);
    CHECK(ib__cache_key_valid(base));
#define DIFFERS(field, value)                              \
    do {                                                   \
        ib__cache_key_input m = in;                        \
        m.field = value;                                   \
        CHECK_EQ_INT(ib__cache_key(&m, k), IB_OK);         \
        CHECK(strcmp(k, base) != 0);                       \
    } while (0)
    DIFFERS(target_name, "aarch64");
    DIFFERS(target_features, "avx2,fma,avx512f");
    DIFFERS(compiler_version, "0.1.1");
    DIFFERS(options, "batch=8");
    DIFFERS(tuning_digest, "abc");
    DIFFERS(n_data_paths, 0);
#undef DIFFERS
    /* Moving bytes between adjacent fields must not collide. */
    ib__cache_key_input a = in, b = in;
    a.options = "batch=1x";
    a.tuning_digest = "";
    b.options = "batch=1";
    b.tuning_digest = "x";
    char ka[65], kb[65];
    CHECK_EQ_INT(ib__cache_key(&a, ka), IB_OK);
    CHECK_EQ_INT(ib__cache_key(&b, kb), IB_OK);
    CHECK(strcmp(ka, kb) != 0);
    write_file(data, "weightz");
    CHECK_EQ_INT(ib__cache_key(&in, k), IB_OK);
    CHECK(strcmp(k, base) != 0);
    write_file(data, "weights");
    write_file(model, "model bytez");
    CHECK_EQ_INT(ib__cache_key(&in, k), IB_OK);
    CHECK(strcmp(k, base) != 0);
    ib__cache_key_input missing = in;
    missing.model_path = "/nonexistent/model.onnx";
    CHECK_EQ_INT(ib__cache_key(&missing, k), IB_ERR_IO);
    CHECK(!ib__cache_key_valid("abc"));
    CHECK(!ib__cache_key_valid("../../../../etc/passwd"));
}

/* Remembered digests of big files: the same key as hashing, and any change to the file
 * (which moves its ctime) is seen. */
TEST(digest_memo) {
    ib__cache *c = open_cache("memo", 10, 0);
    if (!c) { CHECK(0); return; }
    char model[128];
    snprintf(model, sizeof model, "%s/big_model.onnx", g_root);
    FILE *f = fopen(model, "wb");
    if (!f) { CHECK(0); ib__cache_close(c); return; }
    for (int i = 0; i < (3 << 20); i++) fputc(i & 0xff, f);
    fclose(f);
    sleep(3); /* files changed in the last 2 s are not remembered */
    ib__cache_key_input plain = {model, NULL, 0, "x86_64", "avx2", "v", "", "", NULL};
    ib__cache_key_input memo = plain;
    memo.digest_memo = c;
    char k0[65], k1[65], k2[65];
    CHECK_EQ_INT(ib__cache_key(&plain, k0), IB_OK);
    CHECK_EQ_INT(ib__cache_key(&memo, k1), IB_OK); /* computes and remembers */
    CHECK_EQ_INT(ib__cache_key(&memo, k2), IB_OK); /* from the memo */
    CHECK(strcmp(k0, k1) == 0 && strcmp(k1, k2) == 0);
    char dir[200];
    snprintf(dir, sizeof dir, "%s/digests", ib__cache_dir(c));
    struct stat st;
    CHECK(stat(dir, &st) == 0);
    int fd = open(model, O_WRONLY);
    if (fd >= 0) {
        CHECK(pwrite(fd, "Z", 1, 1000) == 1);
        close(fd);
    }
    CHECK_EQ_INT(ib__cache_key(&memo, k2), IB_OK);
    CHECK(strcmp(k1, k2) != 0);
    CHECK_EQ_INT(ib__cache_key(&plain, k0), IB_OK);
    CHECK(strcmp(k0, k2) == 0);
    ib__cache_close(c);
}

TEST(pinned_survive) {
    ib__cache *c = open_cache("pins", 1, 0);
    if (!c) { CHECK(0); return; }
    char k1[65];
    fake_key(1, k1);
    build_ctx b = {10, 1, 0, false};
    ib__cache_entry *pinned = NULL;
    CHECK_EQ_INT(ib__cache_insert(c, k1, "one", "t", build_blob, &b, &pinned, NULL), IB_OK);
    put(c, 2, 10); /* would evict 1, which is pinned: both stay */
    CHECK(present(c, 1, NULL));
    CHECK(present(c, 2, NULL));
    CHECK_EQ_INT(ib__cache_evict(c, k1), IB_ERR_RUNTIME);
    struct stat st;
    char blob[300];
    snprintf(blob, sizeof blob, "%s/blob.bin", pinned ? ib__cache_entry_path(pinned) : "");
    CHECK(stat(blob, &st) == 0);
    /* A second handle (another "process" as far as flock is concerned) cannot evict it. */
    ib__cache *other = open_cache("pins", 1, 0);
    if (other) {
        uint64_t removed = 9, busy = 9;
        CHECK_EQ_INT(ib__cache_clear(other, &removed, &busy), IB_OK);
        CHECK_EQ_INT(busy, 1);
        CHECK_EQ_INT(removed, 1);
        ib__cache_close(other);
    }
    CHECK(stat(blob, &st) == 0);
    ib__cache_release(pinned);
    put(c, 3, 10);
    CHECK(!present(c, 1, NULL));
    CHECK_EQ_INT(n_entries(c), 1);
    ib__cache_close(c);
}

TEST(corrupt_index_rebuilt) {
    ib__cache *c = open_cache("index", 10, 0);
    if (!c) { CHECK(0); return; }
    put(c, 1, 50);
    put(c, 2, 50);
    char path[200];
    snprintf(path, sizeof path, "%s/index", ib__cache_dir(c));
    /* Truncated mid-record: the checksum line is gone. */
    CHECK(truncate(path, 60) == 0);
    ib__cache_verify_report r;
    CHECK_EQ_INT(ib__cache_verify(c, &r), IB_OK);
    CHECK(r.index_rebuilt);
    CHECK_EQ_INT(r.entries_ok, 2);
    CHECK(present(c, 1, NULL) && present(c, 2, NULL));
    /* A bit flipped in a record with the old checksum kept. */
    char *buf = NULL;
    size_t n = 0;
    CHECK_EQ_INT(ib__cache_read_file(path, 1 << 20, &buf, &n, NULL), IB_OK);
    if (buf) {
        char *e = strstr(buf, "\ne ");
        if (e) e[3] ^= 1;
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(buf, 1, n, f);
            fclose(f);
        }
        ib__free(buf);
    }
    CHECK_EQ_INT(ib__cache_verify(c, &r), IB_OK);
    CHECK(r.index_rebuilt);
    CHECK_EQ_INT(n_entries(c), 2);
    /* Garbage index: lookups still work. */
    write_file(path, "not an index\n");
    CHECK(hit(c, 1));
    CHECK_EQ_INT(ib__cache_verify(c, &r), IB_OK);
    CHECK(!r.index_rebuilt);
    CHECK_EQ_INT(r.entries_ok, 2);
    ib__cache_close(c);
}

TEST(corrupt_entry) {
    ib__cache *c = open_cache("entry", 10, 0);
    if (!c) { CHECK(0); return; }
    put(c, 1, 200);
    put(c, 2, 200);
    char key[65], blob[300];
    fake_key(1, key);
    snprintf(blob, sizeof blob, "%s/entries/%s/blob.bin", ib__cache_dir(c), key);
    /* Same size, one byte changed: only hashing finds it. */
    int fd = open(blob, O_WRONLY);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(pwrite(fd, "X", 1, 7) == 1);
        close(fd);
    }
    ib__cache_verify_report r;
    CHECK_EQ_INT(ib__cache_verify(c, &r), IB_OK);
    CHECK_EQ_INT(r.corrupt_dropped, 1);
    CHECK_EQ_INT(r.entries_ok, 1);
    CHECK(!present(c, 1, NULL));
    CHECK(put(c, 1, 200)); /* rebuilt */
    CHECK_EQ_INT(ib__cache_verify(c, &r), IB_OK);
    CHECK_EQ_INT(r.entries_ok, 2);
    CHECK_EQ_INT(r.corrupt_dropped, 0);
    /* Truncation is caught on the hit itself (sizes), and the next insert rebuilds. */
    CHECK(truncate(blob, 10) == 0);
    CHECK(!hit(c, 1));
    CHECK(put(c, 1, 200));
    CHECK(hit(c, 1));
    /* With content checks on hits, a same-size change is a miss too. */
    ib__cache_limits lim = {10, 0, true};
    ib__cache *strict = NULL;
    CHECK_EQ_INT(ib__cache_open(ib__cache_dir(c), &lim, &strict), IB_OK);
    fd = open(blob, O_WRONLY);
    if (fd >= 0) {
        CHECK(pwrite(fd, "Y", 1, 3) == 1);
        close(fd);
    }
    if (strict) {
        CHECK(hit(c, 1)); /* the fast path does not hash */
        CHECK(!hit(strict, 1));
        ib__cache_close(strict);
    }
    /* Records without directories, directories without records, dead builds. */
    char k2[65], p2[300], orphan[300], deadb[400];
    fake_key(2, k2);
    snprintf(p2, sizeof p2, "%s/entries/%s", ib__cache_dir(c), k2);
    CHECK_EQ_INT(ib__cache_remove_tree(p2), IB_OK);
    fake_key(77, key);
    snprintf(orphan, sizeof orphan, "%s/entries/%s", ib__cache_dir(c), key);
    mkdir(orphan, 0700);
    snprintf(deadb, sizeof deadb, "%s/tmp/b.%s.1.abcdef", ib__cache_dir(c), key);
    mkdir(deadb, 0700);
    CHECK_EQ_INT(ib__cache_verify(c, &r), IB_OK);
    CHECK_EQ_INT(r.records_dropped, 1);
    CHECK_EQ_INT(r.orphans_dropped, 1);
    CHECK_EQ_INT(r.temps_dropped, 1);
    CHECK_EQ_INT(ib__cache_verify(c, &r), IB_OK);
    CHECK_EQ_INT(r.records_dropped + r.orphans_dropped + r.temps_dropped + r.corrupt_dropped, 0);
    ib__cache_close(c);
}

TEST(failed_build_leaves_nothing) {
    ib__cache *c = open_cache("fail", 10, 0);
    if (!c) { CHECK(0); return; }
    char key[65];
    fake_key(5, key);
    build_ctx b = {10, 5, 0, true};
    ib__cache_entry *e = NULL;
    CHECK_EQ_INT(ib__cache_insert(c, key, "x", "t", build_blob, &b, &e, NULL), IB_ERR_RUNTIME);
    CHECK(e == NULL);
    CHECK_EQ_INT(n_entries(c), 0);
    ib__cache_verify_report r;
    CHECK_EQ_INT(ib__cache_verify(c, &r), IB_OK);
    CHECK_EQ_INT(r.temps_dropped, 0);
    b.fail = false;
    CHECK_EQ_INT(ib__cache_insert(c, key, "x", "t", build_blob, &b, &e, NULL), IB_OK);
    ib__cache_release(e);
    CHECK_EQ_INT(ib__cache_insert(c, "../../escape", "x", "t", build_blob, &b, &e, NULL),
                 IB_ERR_INVALID_ARGUMENT);
    ib__cache_close(c);
}

TEST(hostile_labels) {
    char out[IB_CACHE_LABEL_MAX];
    ib__cache_sanitize("../../etc/passwd name\n", out, sizeof out);
    CHECK(strchr(out, '/') == NULL && strchr(out, ' ') == NULL && strchr(out, '\n') == NULL);
    ib__cache *c = open_cache("labels", 10, 0);
    if (!c) { CHECK(0); return; }
    char key[65];
    fake_key(9, key);
    build_ctx b = {10, 9, 0, false};
    ib__cache_entry *e = NULL;
    CHECK_EQ_INT(ib__cache_insert(c, key, "../../../x y\tz", "t/../../u", build_blob, &b, &e, NULL),
                 IB_OK);
    if (e) {
        CHECK(strchr(ib__cache_entry_info_get(e)->name, '/') == NULL);
        CHECK(strstr(ib__cache_entry_path(e), key) != NULL);
    }
    ib__cache_release(e);
    ib__cache_verify_report r;
    CHECK_EQ_INT(ib__cache_verify(c, &r), IB_OK);
    CHECK_EQ_INT(r.entries_ok, 1);
    CHECK(!r.index_rebuilt);
    ib__cache_close(c);
}

/* Threads of one process, through one handle and through two: one build per key. */
static atomic_int g_builds;

static ib_status build_slow(void *ctx, const char *dir) {
    (void)ctx;
    atomic_fetch_add(&g_builds, 1);
    usleep(100 * 1000);
    build_ctx b = {64, 3, 0, false};
    return build_blob(&b, dir);
}

typedef struct thread_arg {
    ib__cache *cache;
    ib_status status;
    bool got_entry;
} thread_arg;

static void *insert_thread(void *p) {
    thread_arg *a = p;
    char key[65];
    fake_key(42, key);
    ib__cache_entry *e = NULL;
    a->status = ib__cache_insert(a->cache, key, "threads", "t", build_slow, NULL, &e, NULL);
    a->got_entry = e != NULL;
    ib__cache_release(e);
    return NULL;
}

TEST(threads_one_build) {
    ib__cache *c1 = open_cache("threads", 10, 0);
    ib__cache *c2 = open_cache("threads", 10, 0);
    if (!c1 || !c2) { CHECK(0); ib__cache_close(c1); ib__cache_close(c2); return; }
    pthread_t t[4];
    thread_arg args[4];
    atomic_store(&g_builds, 0);
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){i % 2 ? c2 : c1, IB_ERR_INTERNAL, false};
        pthread_create(&t[i], NULL, insert_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(args[i].status, IB_OK);
        CHECK(args[i].got_entry);
    }
    CHECK_EQ_INT(atomic_load(&g_builds), 1);
    CHECK_EQ_INT(n_entries(c1), 1);
    ib__cache_close(c1);
    ib__cache_close(c2);
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/ib_test_cache.XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    unsetenv("INFERBOOSTER_CACHE_MAX_ENTRIES");
    unsetenv("INFERBOOSTER_CACHE_MAX_BYTES");
    RUN(lfu_order);
    RUN(ties_fifo);
    RUN(byte_limit);
    RUN(key_inputs);
    RUN(digest_memo);
    RUN(pinned_survive);
    RUN(corrupt_index_rebuilt);
    RUN(corrupt_entry);
    RUN(failed_build_leaves_nothing);
    RUN(hostile_labels);
    RUN(threads_one_build);
    ib__cache_remove_tree(g_root);
    TEST_SUMMARY();
}
