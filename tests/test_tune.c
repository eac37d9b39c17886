/* Tuning database and cost-model unit tests: records round-trip through the JSON-lines
 * file, torn and foreign lines are skipped, best/has/count lookups, export and import;
 * features parsed from workload keys, Spearman's correlation, and the XGBoost ranker
 * trained on a synthetic latency function ranking held-out configurations. */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "tune/measure_job.h"
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
    CHECK(ib__tune_compile_digest(&t, NULL, d0) == IB_OK && d0[0] == '\0'); /* no file yet */
    ib__tune_db *db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    ib__tune_record r;
    make_record(&r, "kd", 4, 0.5, true);
    snprintf(r.target, sizeof r.target, "%s", tkey);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    CHECK(ib__tune_compile_digest(&t, NULL, d1) == IB_OK && strlen(d1) == 64);
    make_record(&r, "kd", 5, 0.9, true); /* slower: the best is unchanged */
    snprintf(r.target, sizeof r.target, "%s", tkey);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    CHECK(ib__tune_compile_digest(&t, NULL, d2) == IB_OK && strcmp(d1, d2) == 0);
    make_record(&r, "kd", 6, 0.1, true); /* faster: a new best */
    snprintf(r.target, sizeof r.target, "%s", tkey);
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    CHECK(ib__tune_compile_digest(&t, NULL, d2) == IB_OK && strcmp(d1, d2) != 0);
    CHECK(ib__tune_compile_digest(&t, "off", doff) == IB_OK && doff[0] == '\0'); /* over the env */
    setenv("INFERBOOSTER_TUNING_DB", "off", 1);
    CHECK(ib__tune_compile_digest(&t, NULL, doff) == IB_OK && doff[0] == '\0');
    char dpath[IB_TUNE_HEX + 1];
    CHECK(ib__tune_compile_digest(&t, p, dpath) == IB_OK && strcmp(dpath, d2) == 0); /* a path */
    unsetenv("INFERBOOSTER_TUNING_DB");
    ib__tune_db_close(db);
}


/* ---- cost model ------------------------------------------------------------------- */
static const char *conv_key(int64_t c, int64_t hw) {
    static char buf[512];
    snprintf(buf, sizeof buf,
             "t=conv2d_nchwc|ops=Conv+Relu|a={dilations:[1,1],group:1,kernel_shape:[3,3],"
             "pads:[1,1,1,1],strides:[1,1]}|in=x:float32[1,%lld,%lld,%lld]/c16,"
             "w:float32[%lld,%lld,3,3],w:float32[%lld]|out=x:float32[1,%lld,%lld,%lld]/c16|epi=Relu",
             (long long)c, (long long)hw, (long long)hw, (long long)c, (long long)c, (long long)c,
             (long long)c, (long long)hw, (long long)hw);
    return buf;
}

static uint64_t g_rng = 88172645463325252ull;
static double urand01(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * (1.0 / 9007199254740992.0);
}

static ib__knobs conv_knobs(int64_t ow, int64_t oc, int64_t icb, int64_t un, int64_t par,
                            int64_t ohb) {
    ib__knobs k = {0};
    ib__knobs_set(&k, "ow_block", ow);
    ib__knobs_set(&k, "oc_block", oc);
    ib__knobs_set(&k, "ic_block", icb);
    ib__knobs_set(&k, "ic_unroll", un);
    ib__knobs_set(&k, "parallel", par);
    ib__knobs_set(&k, "kw_inner", 0);
    ib__knobs_set(&k, "oh_block", ohb);
    return k;
}

/* A random configuration within the conv template's limits for a c x hw x hw layer. */
static ib__knobs random_conv(int64_t c, int64_t hw) {
    for (;;) {
        int64_t ow = 1 + (int64_t)(urand01() * (double)(hw < 28 ? hw : 28));
        int64_t oc = 1 + (int64_t)(urand01() * 8);
        if (ow * oc > 64 || oc > c / 16) continue;
        int64_t icb = 1 + (int64_t)(urand01() * 8), ohb = 1 + (int64_t)(urand01() * (double)hw);
        int64_t un = (int64_t)1 << (int64_t)(urand01() * 3);
        return conv_knobs(ow, oc, icb, un, urand01() < 0.5 ? 0 : 1, ohb);
    }
}

/* A made-up but shaped-like-the-real-thing latency of a 3x3 conv on 2 AVX-512 cores:
 * FMA- or load-bound register tiles with an FMA-latency floor, edge tiles that cost a
 * full tile, spills when the tile outgrows the 32 registers, a penalty when a chunk's
 * weights and input rows overflow L1, idle cores when there are too few parallel items,
 * and 3% measurement noise. */
static double synthetic_ms(int64_t c, int64_t hw, const ib__knobs *k) {
    double ow = (double)ib__knobs_get(k, "ow_block", 1), oc = (double)ib__knobs_get(k, "oc_block", 1);
    double icb = (double)ib__knobs_get(k, "ic_block", 1), ohb = (double)ib__knobs_get(k, "oh_block", 1);
    double par = (double)ib__knobs_get(k, "parallel", 0), un = (double)ib__knobs_get(k, "ic_unroll", 1);
    double OCB = (double)c / 16, ICB = (double)c / 16, OW = (double)hw, OH = (double)hw;
    double per = fmax(fmax(ow * oc / 2.0, (ow + oc) / 1.67), 10.0);
    double tiles = ceil(OW / ow) * ceil(OCB / oc);
    double cyc = tiles * per * OH * ICB * 9 * 16;
    if (ow * oc + oc > 32) cyc *= 2.5;
    double ws = 9 * 16 * 16 * oc * icb * 4 + icb * 16 * 3 * (ow + 2) * 4;
    if (ws > 48 * 1024) cyc *= 1 + 0.5 * log2(ws / (48 * 1024));
    cyc *= 1 + 0.15 * ceil(ICB / icb) / ICB; /* partial sums written back per chunk */
    double items = (par > 0 ? 1 : ceil(OCB / oc)) * ceil(OH / ohb);
    double bal = items / (ceil(items / 2) * 2);
    cyc /= 2 * bal;
    if (un == 2) cyc *= 0.96;
    double noise = 1 + 0.03 * (urand01() + urand01() + urand01() - 1.5);
    return cyc / 4.0e6 * noise;
}

static void test_spearman(void) {
    double a[] = {1, 2, 3, 4, 5}, b[] = {10, 20, 30, 40, 50}, r[] = {5, 4, 3, 2, 1};
    double t[] = {1, 1, 2, 2, 3}, c[] = {3, 3, 3, 3, 3};
    CHECK(fabs(ib__tune_spearman(a, b, 5) - 1) < 1e-12);
    CHECK(fabs(ib__tune_spearman(a, r, 5) + 1) < 1e-12);
    double rt = ib__tune_spearman(a, t, 5); /* ties: average ranks, still monotone */
    CHECK(rt > 0.9 && rt < 1);
    CHECK(isnan(ib__tune_spearman(a, c, 5)));
    CHECK(isnan(ib__tune_spearman(a, b, 1)));
}

/* The task scheduler's expected gain: a task still improving beats a flat one of the same
 * latency; one already at its peers' throughput has little forward gain; occurrences
 * multiply; a task never measured comes first. */
static void test_task_gain(void) {
    ib__tune_gain_input flat = {1, 1.0, 64, 0, 0, 1e9, 0};
    ib__tune_gain_input improving = flat;
    improving.recent_drop_ms = 0.3;
    improving.recent_trials = 48;
    CHECK(ib__tune_task_gain(&improving) > ib__tune_task_gain(&flat));
    ib__tune_gain_input twice = flat;
    twice.count = 2;
    CHECK(fabs(ib__tune_task_gain(&twice) - 2 * ib__tune_task_gain(&flat)) < 1e-12);
    /* 1 GFLOP in 1 ms is 1000 GFLOP/s; peers at 400 GFLOP/s: no forward gain left */
    ib__tune_gain_input at_peers = flat;
    at_peers.peer_gflops = 400;
    CHECK(ib__tune_task_gain(&at_peers) == 0);
    /* peers 4x faster: the forward guess is best/trials (1/64), below the peer bound */
    at_peers.peer_gflops = 4000;
    CHECK(fabs(ib__tune_task_gain(&at_peers) - 0.8 / 64) < 1e-12);
    /* few trials so far: the peer bound (1 - 1/8 ms) is the lesser */
    at_peers.trials = 1;
    CHECK(fabs(ib__tune_task_gain(&at_peers) - 0.8 * (1 - 0.125)) < 1e-12);
    ib__tune_gain_input fresh = {1, 0, 0, 0, 0, 1e9, 0};
    CHECK(isinf(ib__tune_task_gain(&fresh)));
}

static void test_features(void) {
    ib__target t;
    CHECK(ib__target_resolve("x86-64-v4", &t) == IB_OK);
    t.num_cores = 2;
    float f1[IB_TUNE_NFEAT], f2[IB_TUNE_NFEAT], f3[IB_TUNE_NFEAT];
    ib__knobs k = conv_knobs(14, 2, 1, 1, 0, 7);
    ib__tune_features(conv_key(128, 28), &t, &k, f1);
    /* knob values first, in the knobs' order */
    CHECK(f1[0] == 14 && f1[1] == 2 && f1[6] == 7);
    /* the workload's flops parsed from the key: 2 x 128 x 28 x 28 x 128 x 9 */
    double flops = 2.0 * 128 * 28 * 28 * 128 * 9;
    CHECK(fabs(f1[IB_TUNE_NKNOBF + 12] - log2(flops + 1)) < 1e-3);
    /* derived features: a 28-wide row in 14-wide tiles of 2 of 8 channel groups uses the
     * vectors fully; 8 parallel items (4 oc groups x 4 row blocks) on 2 cores: 4 each */
    CHECK(fabs(f1[IB_TUNE_NKNOBF + 4] - 1) < 1e-6);
    CHECK(fabs(f1[IB_TUNE_NKNOBF + 5] - 8) < 1e-6 && fabs(f1[IB_TUNE_NKNOBF + 6] - 1) < 1e-6);
    /* another shape, same knobs: derived features change, knob ones do not */
    ib__tune_features(conv_key(256, 14), &t, &k, f2);
    CHECK(f2[0] == 14 && memcmp(f1 + IB_TUNE_NKNOBF, f2 + IB_TUNE_NKNOBF, 12 * sizeof(float)) != 0);
    /* a wider tile touches more L1 and uses more registers */
    ib__knobs k2 = conv_knobs(14, 4, 1, 1, 0, 7);
    ib__tune_features(conv_key(128, 28), &t, &k2, f3);
    CHECK(f3[IB_TUNE_NKNOBF + 0] > f1[IB_TUNE_NKNOBF + 0] && f3[IB_TUNE_NKNOBF + 1] > f1[IB_TUNE_NKNOBF + 1]);
    /* garbage keys give features, not crashes */
    ib__tune_features("t=conv2d_nchwc|in=x:float32[1,2", &t, &k, f3);
    ib__tune_features("", &t, &k, f3);
    ib__tune_features("t=gemm|in=x:float32[]|out=x:float32[1,1000]", &t, &k, f3);
    CHECK(f3[0] == 14);
}

/* Trains on n synthetic points of each (c, hw) in train, returns the held-out Spearman
 * correlation on m fresh points of (tc, thw). */
static double ranker_corr(const int64_t (*train)[2], int32_t n_train, int32_t n, int64_t tc,
                          int64_t thw, int32_t m) {
    ib__target t;
    if (ib__target_resolve("x86-64-v4", &t) != IB_OK) return NAN;
    t.num_cores = 2;
    ib__tune_cost_model *cm = NULL;
    if (ib__tune_cm_create(7, &cm) != IB_OK) return NAN;
    float f[IB_TUNE_NFEAT];
    for (int32_t g = 0; g < n_train; g++)
        for (int32_t i = 0; i < n; i++) {
            ib__knobs k = random_conv(train[g][0], train[g][1]);
            ib__tune_features(conv_key(train[g][0], train[g][1]), &t, &k, f);
            CHECK(ib__tune_cm_add(cm, g, f, true, synthetic_ms(train[g][0], train[g][1], &k)) == IB_OK);
        }
    /* failed candidates are left out of training */
    CHECK(ib__tune_cm_add(cm, 0, f, false, 0) == IB_OK && ib__tune_cm_size(cm) == n_train * n);
    double rho = NAN;
    float *hf = malloc((size_t)m * IB_TUNE_NFEAT * sizeof *hf), *sc = malloc((size_t)m * sizeof *sc);
    double *ps = malloc((size_t)m * sizeof *ps), *ms = malloc((size_t)m * sizeof *ms);
    if (hf && sc && ps && ms && ib__tune_cm_train(cm) == IB_OK && ib__tune_cm_ready(cm)) {
        for (int32_t i = 0; i < m; i++) {
            ib__knobs k = random_conv(tc, thw);
            ib__tune_features(conv_key(tc, thw), &t, &k, hf + (size_t)i * IB_TUNE_NFEAT);
            ms[i] = -synthetic_ms(tc, thw, &k);
        }
        if (ib__tune_cm_predict(cm, m, hf, sc) == IB_OK) {
            for (int32_t i = 0; i < m; i++) ps[i] = sc[i];
            rho = ib__tune_spearman(ps, ms, m);
        }
    }
    free(hf);
    free(sc);
    free(ps);
    free(ms);
    ib__tune_cm_destroy(cm);
    return rho;
}

static void test_cost_model(void) {
    /* 200 measured points of one task, 100 held out */
    const int64_t one[][2] = {{128, 28}};
    double rho = ranker_corr(one, 1, 200, 128, 28, 100);
    printf("  held-out rank correlation, 200 points of the task: %.3f\n", rho);
    CHECK(rho >= 0.5);
    /* transfer: trained on two other shapes only, ranking a third */
    const int64_t others[][2] = {{64, 56}, {256, 14}};
    double rt = ranker_corr(others, 2, 150, 128, 28, 100);
    printf("  held-out rank correlation, other shapes only: %.3f\n", rt);
    CHECK(rt >= 0.5);
    /* too few points: an error, not a model */
    ib__tune_cost_model *cm = NULL;
    CHECK(ib__tune_cm_create(1, &cm) == IB_OK);
    if (cm) {
        float f[IB_TUNE_NFEAT] = {0};
        CHECK(ib__tune_cm_add(cm, 0, f, true, 1.0) == IB_OK);
        CHECK(ib__tune_cm_train(cm) != IB_OK && !ib__tune_cm_ready(cm));
        ib__error_clear();
        float sc;
        CHECK(ib__tune_cm_predict(cm, 1, f, &sc) != IB_OK);
        ib__error_clear();
        ib__tune_cm_destroy(cm);
    }
}

/* In-model records ("scope":"model") survive a round trip, stay out of the search's view
 * (best, counts) and are what a compile picks when a workload has one that succeeded. */
static void test_in_model_pick(void) {
    char p[256];
    path_in(p, sizeof p, "model_scope.jsonl");
    ib__tune_db *db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    const char *key = "t=conv2d_pointwise|x", *t = "x86-64-v4/2c";
    ib__tune_record r;
    make_record(&r, key, 7, 0.20, true); /* the kernel-alone winner */
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    make_record(&r, key, 4, 0.30, true); /* the defaults, alone */
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    CHECK(ib__tune_db_pick(db, t, key, NULL) && ib__tune_db_pick(db, t, key, NULL)->knob_value[0] == 7);
    make_record(&r, key, 7, 0.36, false); /* the winner lost in the model: failed */
    r.in_model = true;
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    make_record(&r, key, 4, 0.29, true); /* the defaults in the model */
    r.in_model = true;
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    ib__tune_db_close(db);
    db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    CHECK(ib__tune_db_size(db) == 4);
    const ib__tune_record *pick = ib__tune_db_pick(db, t, key, NULL), *best = ib__tune_db_best(db, t, key);
    CHECK(pick && pick->in_model && pick->knob_value[0] == 4 && pick->ms == 0.29);
    CHECK(best && !best->in_model && best->knob_value[0] == 7 && best->ms == 0.20);
    int32_t n_all = 0, n_ok = 0;
    ib__tune_db_count(db, t, key, &n_all, &n_ok);
    CHECK(n_all == 2 && n_ok == 2);
    ib__tune_db_close(db);
    /* an unknown scope is a record of a format we do not know: skipped */
    FILE *f = fopen(p, "a");
    CHECK(f != NULL);
    if (f) {
        fprintf(f, "{\"v\":1,\"target\":\"%s\",\"template\":\"x\",\"key\":\"%s\",\"knobs\":{},"
                   "\"ok\":true,\"ms\":0.01,\"gflops\":1,\"time\":0,\"note\":\"\",\"scope\":\"moon\"}\n", t, key);
        fclose(f);
    }
    db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    CHECK(db && ib__tune_db_size(db) == 4);
    ib__tune_db_close(db);
}

/* Records that carry their batch's reference rank by the ratio to it: a slower moment of
 * the machine does not make its batch's candidates lose to a faster moment's. */
static void test_relative_best(void) {
    char p[256];
    path_in(p, sizeof p, "relative.jsonl");
    ib__tune_db *db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    const char *key = "t=conv2d_winograd_nchwc|x", *t = "x86-64-v4/2c";
    ib__tune_record r;
    make_record(&r, key, 4, 0.50, true); /* a slow moment: defaults 0.55 next to it */
    r.ref_ms = 0.55;
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    make_record(&r, key, 7, 0.33, true); /* a fast moment: defaults 0.32 next to it */
    r.ref_ms = 0.32;
    CHECK(ib__tune_db_append(db, &r) == IB_OK);
    ib__tune_db_close(db);
    db = NULL;
    CHECK(ib__tune_db_open(p, &db) == IB_OK);
    if (!db) return;
    const ib__tune_record *a = ib__tune_db_at(db, 0), *b = ib__tune_db_at(db, 1);
    CHECK(a && a->ref_ms == 0.55 && b && b->ref_ms == 0.32); /* round trip */
    const ib__tune_record *best = ib__tune_db_best(db, t, key);
    CHECK(best && best->knob_value[0] == 4); /* 0.91 of its reference against 1.03 */
    CHECK(a && b && ib__tune_record_faster(a, b) && !ib__tune_record_faster(b, a));
    ib__tune_record c = *b;
    c.ref_ms = 0; /* without a reference on one side: by time */
    CHECK(a && ib__tune_record_faster(&c, a));
    ib__tune_db_close(db);
    const char *bad = "{\"v\":1,\"target\":\"x\",\"template\":\"y\",\"key\":\"k\",\"knobs\":{},"
                      "\"ok\":true,\"ms\":0.1,\"ref_ms\":0,\"gflops\":1,\"time\":0,\"note\":\"\"}";
    CHECK(!ib__tune_record_parse(bad, strlen(bad), &r)); /* a reference must be a time */
}

/* The lines a measuring child or agent answers with, as the tuner reads them: results
 * parse, an agent's chatter and impossible values do not. */
static void test_result_lines(void) {
    ib__measure_result m;
    CHECK(ib__measure_result_parse("ref ok 0.512000", &m) && m.idx == IB_MEASURE_REF && m.ok &&
          m.ms == 0.512);
    CHECK(ib__measure_result_parse("start 3", &m) && m.idx == 3 && m.kind == 0);
    CHECK(ib__measure_result_parse("res 3 ok 0.25", &m) && m.idx == 3 && m.kind == 1 && m.ok &&
          m.ms == 0.25);
    CHECK(ib__measure_result_parse("res 4 fail wrong output: 1, want 2", &m) && m.idx == 4 &&
          !m.ok && strcmp(m.note, "wrong output: 1, want 2") == 0);
    CHECK(ib__measure_result_parse("ref fail cannot load", &m) && m.idx == IB_MEASURE_REF &&
          !m.ok && strcmp(m.note, "cannot load") == 0);
    const char *refused[] = {"agent: warming up", "ref ok nan", "ref ok inf", "res 2 ok -1",
                             "res -3 ok 1.0", "start -1", "res 2 ok inf", ""};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        CHECK(!ib__measure_result_parse(refused[i], &m));
}

int main(void) {
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(round_trip);
    RUN(in_model_pick);
    RUN(relative_best);
    RUN(result_lines);
    RUN(torn_lines);
    RUN(parse_rejects);
    RUN(default_path);
    RUN(compile_digest);
    RUN(spearman);
    RUN(task_gain);
    RUN(features);
    RUN(cost_model);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    TEST_SUMMARY();
}
