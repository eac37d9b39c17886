/* Tuning database and search-space unit tests: records round-trip through the JSON-lines
 * file, torn and foreign lines are skipped, best/has/count lookups, export and import,
 * and search spaces pruned by the template's knobs_valid. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "tune/tune.h"

static char g_dir[] = "/tmp/ib_test_tune.XXXXXX";

static void path_in(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_dir, name);
}

static void make_record(ib__tune_record *r, const char *key, int64_t ow, double ms, bool ok) {
    memset(r, 0, sizeof *r);
    r->key = (char *)key;
    snprintf(r->target, sizeof r->target, "x86-64-v4/2c");
    snprintf(r->tmpl, sizeof r->tmpl, "conv2d_nchwc");
    r->n_knobs = 2;
    snprintf(r->knob_name[0], sizeof r->knob_name[0], "ow_block");
    r->knob_value[0] = ow;
    snprintf(r->knob_name[1], sizeof r->knob_name[1], "parallel");
    r->knob_value[1] = 1;
    r->ok = ok;
    r->ms = ok ? ms : 0;
    r->gflops = ok ? 1.0 / ms : 0;
    snprintf(r->note, sizeof r->note, "%s", ok ? "" : "crashed \"badly\"\n");
}

static ib__knobs knobs_ow(int64_t ow) {
    ib__knobs k = {0};
    ib__knobs_set(&k, "ow_block", ow);
    ib__knobs_set(&k, "parallel", 1);
    return k;
}

static void test_round_trip(void) {
    char p[256];
    path_in(p, sizeof p, "sub/dir/db.jsonl"); /* parents are created */
    ib__tune_db *db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    CHECK(ib__tune_db_size(db) == 0);
    const char *key_a = "t=conv2d_nchwc|ops=Conv|in=x:float32[1,16,8,8]/c16", *key_b = "t=gemm|x";
    ib__tune_record r;
    make_record(&r, key_a, 4, 0.50, true);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    make_record(&r, key_a, 7, 0.25, true);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    make_record(&r, key_a, 9, 0, false);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    make_record(&r, key_b, 2, 0.10, true);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    ib__tune_db_close(db);

    db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    CHECK(ib__tune_db_size(db) == 4);
    const ib__tune_record *best = ib__tune_db_best(db, "x86-64-v4/2c", key_a);
    CHECK(best && best->knob_value[0] == 7 && best->ms == 0.25);
    CHECK(best && strcmp(best->knob_name[0], "ow_block") == 0);
    CHECK(ib__tune_db_best(db, "x86-64-v3/2c", key_a) == NULL); /* keyed by target too */
    int32_t n_all = 0, n_ok = 0;
    ib__tune_db_count(db, "x86-64-v4/2c", key_a, &n_all, &n_ok);
    CHECK(n_all == 3 && n_ok == 2);
    ib__knobs k9 = knobs_ow(9), k5 = knobs_ow(5);
    CHECK(ib__tune_db_has(db, "x86-64-v4/2c", key_a, &k9));  /* failed ones count as tried */
    CHECK(!ib__tune_db_has(db, "x86-64-v4/2c", key_a, &k5));
    const ib__tune_record *failed = ib__tune_db_at(db, 2);
    CHECK(failed && !failed->ok && strcmp(failed->note, "crashed \"badly\"\n") == 0);

    /* export, then import into an empty database: the same records; again: none new */
    char ex[256], other[256];
    path_in(ex, sizeof ex, "export.jsonl");
    path_in(other, sizeof other, "other.jsonl");
    CHECK(ib__tune_db_export(db, ex) == IB_OK);
    ib__tune_db *db2 = NULL;
    CHECK(ib__tune_db_open(other, &db2) == IB_OK);
    int32_t added = -1;
    if (db2) {
        CHECK(ib__tune_db_import(db2, ex, &added) == IB_OK && added == 4);
        CHECK(ib__tune_db_import(db2, ex, &added) == IB_OK && added == 0);
        const ib__tune_record *b2 = ib__tune_db_best(db2, "x86-64-v4/2c", key_a);
        CHECK(b2 && b2->knob_value[0] == 7);
        ib__tune_db_close(db2);
    }
    char missing[256];
    path_in(missing, sizeof missing, "missing.jsonl");
    CHECK(ib__tune_db_import(db, missing, &added) != IB_OK);
    ib__error_clear();
    ib__tune_db_close(db);
}

static void append_raw(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return;
    ssize_t w = write(fd, text, strlen(text));
    (void)w;
    close(fd);
}

static void test_torn_lines(void) {
    char p[256];
    path_in(p, sizeof p, "torn.jsonl");
    ib__tune_db *db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    ib__tune_record r;
    make_record(&r, "k1", 3, 0.5, true);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    ib__tune_db_close(db);
    /* a foreign line, a bad record (ok without a time), then a line cut by a kill */
    append_raw(p, "not json at all\n");
    append_raw(p, "{\"v\":1,\"target\":\"x86-64-v4/2c\",\"key\":\"k1\",\"knobs\":{},\"ok\":true,\"ms\":0}\n");
    append_raw(p, "{\"v\":2,\"target\":\"x86-64-v4/2c\",\"key\":\"k1\",\"knobs\":{},\"ok\":true,\"ms\":1}\n");
    append_raw(p, "{\"v\":1,\"target\":\"x86-64-v4/2c\",\"key\":\"k1\",\"knobs\":{\"ow_block\":1");
    db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    CHECK(ib__tune_db_size(db) == 1);
    /* the next append starts after the torn text: it must still be readable, and the
     * torn fragment stays skipped (it now ends in the middle of a joined line) */
    make_record(&r, "k1", 2, 0.125, true);
    append_raw(p, "\n");
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    ib__tune_db_close(db);
    db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    CHECK(ib__tune_db_size(db) == 2);
    const ib__tune_record *b = ib__tune_db_best(db, "x86-64-v4/2c", "k1");
    CHECK(b && b->knob_value[0] == 2);
    ib__tune_db_close(db);
}

static void test_parse_rejects(void) {
    ib__tune_record r;
    const char *bad[] = {
        "",
        "{}",
        "{\"v\":1,\"target\":\"t\",\"key\":\"k\",\"knobs\":{\"a\":1.5},\"ok\":true,\"ms\":1}",
        "{\"v\":1,\"target\":\"t\",\"key\":\"k\",\"knobs\":{\"a\":1},\"ok\":true,\"ms\":1} x",
        "{\"v\":1,\"target\":\"t\",\"key\":\"k\",\"knobs\":{\"a\":1},\"ok\":maybe,\"ms\":1}",
        "{\"v\":1,\"target\":\"t\",\"key\":\"k\",\"knobs\":{\"a\":1},\"ok\":true,\"ms\":1,\"extra\":2}",
        "{\"v\":1,\"target\":\"t\",\"key\":\"k\",\"knobs\":{\"a\":1},\"ok\":true,\"ms\":1e999}",
        "{\"v\":1,\"target\":\"t\\q\",\"key\":\"k\",\"knobs\":{},\"ok\":true,\"ms\":1}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!ib__tune_record_parse(bad[i], strlen(bad[i]), &r));
    const char *good = "{\"v\":1,\"target\":\"t\",\"key\":\"k\\u0041\",\"knobs\":{\"a\":-3},"
                       "\"ok\":true,\"ms\":2.5,\"time\":5,\"note\":\"\"}";
    CHECK(ib__tune_record_parse(good, strlen(good), &r));
    CHECK(r.key && strcmp(r.key, "kA") == 0 && r.knob_value[0] == -3 && r.ms == 2.5);
    ib__free(r.key);
}

static void test_default_path(void) {
    char *p = NULL;
    setenv("INFERBOOSTER_CACHE_DIR", "/some/where", 1);
    CHECK(ib__tune_db_default_path(&p) == IB_OK && p && strcmp(p, "/some/where/tuning.jsonl") == 0);
    ib__free(p);
    unsetenv("INFERBOOSTER_CACHE_DIR");
    setenv("XDG_CACHE_HOME", "/xdg", 1);
    p = NULL;
    CHECK(ib__tune_db_default_path(&p) == IB_OK && p &&
          strcmp(p, "/xdg/inferbooster/tuning.jsonl") == 0);
    ib__free(p);
    unsetenv("XDG_CACHE_HOME");
}

/* The pre-build digest changes when a better record arrives, not with file order. */
static void test_compile_digest(void) {
    ib__target t;
    CHECK(ib__target_resolve("generic", &t) == IB_OK);
    char tkey[IB_TUNE_TARGET_MAX], p[256], d0[IB_TUNE_HEX + 1], d1[IB_TUNE_HEX + 1],
        d2[IB_TUNE_HEX + 1], doff[IB_TUNE_HEX + 1];
    ib__tune_target_key(&t, tkey);
    path_in(p, sizeof p, "digest.jsonl");
    setenv("INFERBOOSTER_TUNING_DB", p, 1);
    CHECK(ib__tune_compile_digest(&t, d0) == IB_OK && d0[0] == '\0'); /* no file yet */
    ib__tune_db *db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    ib__tune_record r;
    make_record(&r, "kd", 4, 0.5, true);
    snprintf(r.target, sizeof r.target, "%s", tkey);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    CHECK(ib__tune_compile_digest(&t, d1) == IB_OK && strlen(d1) == 64);
    make_record(&r, "kd", 5, 0.9, true); /* slower: the best is unchanged */
    snprintf(r.target, sizeof r.target, "%s", tkey);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    CHECK(ib__tune_compile_digest(&t, d2) == IB_OK && strcmp(d1, d2) == 0);
    make_record(&r, "kd", 6, 0.1, true); /* faster: a new best */
    snprintf(r.target, sizeof r.target, "%s", tkey);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    CHECK(ib__tune_compile_digest(&t, d2) == IB_OK && strcmp(d1, d2) != 0);
    setenv("INFERBOOSTER_TUNING_DB", "off", 1);
    CHECK(ib__tune_compile_digest(&t, doff) == IB_OK && doff[0] == '\0');
    unsetenv("INFERBOOSTER_TUNING_DB");
    ib__tune_db_close(db);
}

int main(void) {
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(round_trip);
    RUN(torn_lines);
    RUN(parse_rejects);
    RUN(default_path);
    RUN(compile_digest);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    TEST_SUMMARY();
}
