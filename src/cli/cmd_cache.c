/* `inferbooster cache`: list, stats, evict, clear and verify the compiled-model cache;
 * plus the test-only `put` / `get`, which insert and look up a model through the real
 * cache code path with a stand-in artifact (a copy of the model and a meta file). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cli/cli.h"
#include "target/target.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster cache ls [--json]\n"
            "       inferbooster cache stats [--json]\n"
            "       inferbooster cache evict KEY\n"
            "       inferbooster cache clear\n"
            "       inferbooster cache verify\n"
            "\n"
            "The compiled-model cache: entries keyed by SHA-256 of the model (with external\n"
            "data), target, compiler version, compile options and tuning records; LFU\n"
            "eviction (ties: first inserted goes first) under entry and byte limits.\n"
            "\n"
            "  ls           key, name#ctime, target, frequency, size, last use\n"
            "  stats        entries, bytes, hits, misses, evictions\n"
            "  evict KEY    remove one entry (KEY: the full key or a unique prefix)\n"
            "  clear        remove every entry not in use\n"
            "  verify       hash every entry against its manifest; drop damaged entries,\n"
            "               records without files, files without records, dead builds\n"
            "\n"
            "options:\n"
            "  --cache-dir DIR     the cache (default: INFERBOOSTER_CACHE_DIR, else\n"
            "                      $XDG_CACHE_HOME/inferbooster, else ~/.cache/inferbooster)\n"
            "  --max-entries N     entry limit (default INFERBOOSTER_CACHE_MAX_ENTRIES or 64)\n"
            "  --max-bytes N       byte limit (default INFERBOOSTER_CACHE_MAX_BYTES or 10 GiB)\n"
            "  --json              JSON output (ls, stats, verify)\n"
            "\n"
            "Test-only (used by the test suite; the artifact is a copy of the model):\n"
            "  put MODEL [--options S] [--build-delay-ms N]   look up, build on a miss\n"
            "  get MODEL [--options S]                        look up only\n");
}

typedef struct put_ctx {
    const char *model;
    const char *label;
    long long delay_ms;
} put_ctx;

static ib_status copy_file(const char *src, const char *dst) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return ib__error(IB_ERR_IO, "cannot open '%s': %s", src, strerror(errno));
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        close(in);
        return ib__error(IB_ERR_IO, "cannot create '%s': %s", dst, strerror(errno));
    }
    char buf[65536];
    ib_status st = IB_OK;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = ib__error(IB_ERR_IO, "cannot read '%s': %s", src, strerror(errno));
            break;
        }
        if (r == 0) break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                st = ib__error(IB_ERR_IO, "cannot write '%s': %s", dst, strerror(errno));
                break;
            }
            off += w;
        }
        if (st != IB_OK) break;
    }
    close(in);
    if (close(out) != 0 && st == IB_OK) st = ib__error(IB_ERR_IO, "cannot write '%s'", dst);
    return st;
}

/* The stand-in artifact: the model's bytes and a meta file saying what this is. */
static ib_status put_build(void *ctx, const char *dir) {
    const put_ctx *p = ctx;
    size_t n = strlen(dir) + 32;
    char *path = ib__malloc(n);
    if (!path) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    snprintf(path, n, "%s/model.onnx", dir);
    ib_status st = copy_file(p->model, path);
    /* Sleeping in slices between the two files widens the window the kill and
     * concurrency tests aim at. */
    for (long long left = p->delay_ms; st == IB_OK && left > 0; left -= 10) {
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (st == IB_OK) {
        snprintf(path, n, "%s/meta.json", dir);
        FILE *f = fopen(path, "wx");
        if (!f) st = ib__error(IB_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
        else {
            fprintf(f, "{\"model\": ");
            ib__json_string(f, p->label);
            fprintf(f, ", \"artifact\": \"test stand-in (cache put)\"}\n");
            if (fclose(f) != 0) st = ib__error(IB_ERR_IO, "cannot write '%s'", path);
        }
    }
    ib__free(path);
    return st;
}

static void host_target(char *name, size_t name_cap, char *features, size_t feat_cap) {
    ib__cpu_info cpu;
    ib__cpu_detect(&cpu);
    snprintf(name, name_cap, "%s", cpu.arch[0] ? cpu.arch : "cpu");
    size_t len = 0;
    features[0] = '\0';
    for (int f = 0; f < IB_CPU_FEATURE_COUNT; f++) {
        if (!ib__cpu_has(&cpu, (ib__cpu_feature)f)) continue;
        int w = snprintf(features + len, feat_cap - len, "%s%s", len ? "," : "",
                         ib__cpu_feature_name((ib__cpu_feature)f));
        if (w < 0 || (size_t)w >= feat_cap - len) break;
        len += (size_t)w;
    }
}

static void format_time(int64_t t, char *buf, size_t cap) {
    time_t tt = (time_t)t;
    struct tm tm;
    if (t <= 0 || !gmtime_r(&tt, &tm) || !strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, cap, "-");
}

/* The batch size an entry's artifact was compiled for, from its meta.json (-1 when it
 * cannot be read: a damaged entry is verify's business, not ls's). */
static long long entry_batch(ib__cache *cache, const char *key) {
    char path[4300], buf[4096];
    snprintf(path, sizeof path, "%s/entries/%s/meta.json", ib__cache_dir(cache), key);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strstr(buf, "\"batch\":");
    long long b = -1;
    if (!p || sscanf(p + 8, " %lld", &b) != 1) return -1;
    return b;
}

static int cmd_ls(ib__cache *cache, bool json) {
    ib__cache_entry_info *e = NULL;
    size_t n = 0;
    ib_status st = ib__cache_list(cache, &e, &n);
    if (st != IB_OK) return ib__cli_fail(st, "cache ls");
    char when[32], size[32];
    if (json) {
        printf("[");
        for (size_t i = 0; i < n; i++) {
            format_time(e[i].last_used, when, sizeof when);
            printf("%s\n  {\"key\": \"%s\", \"name\": ", i ? "," : "", e[i].key);
            ib__json_string(stdout, e[i].name);
            printf(", \"target\": ");
            ib__json_string(stdout, e[i].target);
            printf(", \"freq\": %llu, \"seq\": %llu, \"bytes\": %llu, \"created\": %lld, "
                   "\"last_used\": %lld, \"last_used_utc\": \"%s\", \"batch\": %lld}",
                   (unsigned long long)e[i].freq, (unsigned long long)e[i].seq,
                   (unsigned long long)e[i].bytes, (long long)e[i].created,
                   (long long)e[i].last_used, when, entry_batch(cache, e[i].key));
        }
        printf("%s]\n", n ? "\n" : "");
    } else {
        printf("%-64s  %-32s  %5s  %10s  %-20s  %s\n", "KEY", "NAME#CTIME", "FREQ", "SIZE",
               "LAST USED (UTC)", "TARGET");
        for (size_t i = 0; i < n; i++) {
            format_time(e[i].last_used, when, sizeof when);
            ib__cli_human((double)e[i].bytes, "B", size, sizeof size);
            printf("%-64s  %-32s  %5llu  %10s  %-20s  %s\n", e[i].key, e[i].name,
                   (unsigned long long)e[i].freq, size, when, e[i].target);
        }
    }
    ib__free(e);
    return IB_EXIT_OK;
}

static int cmd_stats(ib__cache *cache, bool json) {
    ib__cache_stats s;
    ib_status st = ib__cache_stats_get(cache, &s);
    if (st != IB_OK) return ib__cli_fail(st, "cache stats");
    if (json) {
        printf("{\"dir\": ");
        ib__json_string(stdout, ib__cache_dir(cache));
        printf(", \"entries\": %llu, \"bytes\": %llu, \"hits\": %llu, \"misses\": %llu, "
               "\"evictions\": %llu, \"max_entries\": %llu, \"max_bytes\": %llu}\n",
               (unsigned long long)s.entries, (unsigned long long)s.bytes,
               (unsigned long long)s.hits, (unsigned long long)s.misses,
               (unsigned long long)s.evictions, (unsigned long long)s.max_entries,
               (unsigned long long)s.max_bytes);
    } else {
        char b[32], mb[32];
        ib__cli_human((double)s.bytes, "B", b, sizeof b);
        ib__cli_human((double)s.max_bytes, "B", mb, sizeof mb);
        printf("cache      %s\n", ib__cache_dir(cache));
        printf("entries    %llu (limit %llu)\n", (unsigned long long)s.entries,
               (unsigned long long)s.max_entries);
        printf("bytes      %llu (%s, limit %s)\n", (unsigned long long)s.bytes, b, mb);
        printf("hits       %llu\nmisses     %llu\nevictions  %llu\n", (unsigned long long)s.hits,
               (unsigned long long)s.misses, (unsigned long long)s.evictions);
    }
    return IB_EXIT_OK;
}

static int cmd_evict(ib__cache *cache, const char *arg) {
    char key[IB_CACHE_KEY_HEX + 1] = "";
    if (ib__cache_key_valid(arg)) {
        snprintf(key, sizeof key, "%s", arg);
    } else {
        size_t len = strlen(arg);
        if (len < 6 || len > IB_CACHE_KEY_HEX)
            return ib__cli_usage_error("cache evict: '%s' is not a key (64 hex digits, or a "
                                       "unique prefix of at least 6)", arg);
        ib__cache_entry_info *e = NULL;
        size_t n = 0;
        ib_status st = ib__cache_list(cache, &e, &n);
        if (st != IB_OK) return ib__cli_fail(st, "cache evict");
        int matches = 0;
        for (size_t i = 0; i < n; i++)
            if (strncmp(e[i].key, arg, len) == 0) {
                matches++;
                snprintf(key, sizeof key, "%s", e[i].key);
            }
        ib__free(e);
        if (matches != 1)
            return ib__cli_usage_error("cache evict: %s entry matches '%s'",
                                       matches ? "more than one" : "no", arg);
    }
    ib_status st = ib__cache_evict(cache, key);
    if (st != IB_OK) return ib__cli_fail(st, "cache evict");
    printf("evicted %s\n", key);
    return IB_EXIT_OK;
}

static int cmd_clear(ib__cache *cache) {
    uint64_t removed = 0, busy = 0;
    ib_status st = ib__cache_clear(cache, &removed, &busy);
    if (st != IB_OK) return ib__cli_fail(st, "cache clear");
    printf("removed %llu entries", (unsigned long long)removed);
    if (busy) printf(", %llu in use left in place", (unsigned long long)busy);
    printf("\n");
    return IB_EXIT_OK;
}

static int cmd_verify(ib__cache *cache, bool json) {
    ib__cache_verify_report r;
    ib_status st = ib__cache_verify(cache, &r);
    if (st != IB_OK) return ib__cli_fail(st, "cache verify");
    bool clean = !r.index_rebuilt && r.records_dropped == 0 && r.corrupt_dropped == 0 &&
                 r.orphans_dropped == 0 && r.temps_dropped == 0 && r.busy_skipped == 0;
    if (json) {
        printf("{\"clean\": %s, \"index_rebuilt\": %s, \"entries_ok\": %llu, "
               "\"records_dropped\": %llu, \"corrupt_dropped\": %llu, \"orphans_dropped\": %llu, "
               "\"temps_dropped\": %llu, \"busy_skipped\": %llu}\n",
               clean ? "true" : "false", r.index_rebuilt ? "true" : "false",
               (unsigned long long)r.entries_ok, (unsigned long long)r.records_dropped,
               (unsigned long long)r.corrupt_dropped, (unsigned long long)r.orphans_dropped,
               (unsigned long long)r.temps_dropped, (unsigned long long)r.busy_skipped);
    } else {
        printf("%llu entries ok; index %s; dropped: %llu records without files, %llu damaged "
               "entries, %llu directories without records, %llu dead temporaries; %llu damaged "
               "but in use\n%s\n",
               (unsigned long long)r.entries_ok, r.index_rebuilt ? "rebuilt" : "intact",
               (unsigned long long)r.records_dropped, (unsigned long long)r.corrupt_dropped,
               (unsigned long long)r.orphans_dropped, (unsigned long long)r.temps_dropped,
               (unsigned long long)r.busy_skipped, clean ? "clean" : "repaired");
    }
    return IB_EXIT_OK;
}

static int cmd_put_get(ib__cache *cache, bool put, const char *model, const char *options,
                       long long delay_ms) {
    char tname[32], feats[512], label[IB_CACHE_LABEL_MAX], target[IB_CACHE_LABEL_MAX];
    host_target(tname, sizeof tname, feats, sizeof feats);
    snprintf(target, sizeof target, "%s:%s", tname, feats);
    ib__cache_key_input in = {
        .model_path = model,
        .target_name = tname,
        .target_features = feats,
        .compiler_version = "inferbooster " IB_VERSION_STRING " cache-put-test",
        .options = options,
        .tuning_digest = "",
        .digest_memo = cache,
    };
    char key[IB_CACHE_KEY_HEX + 1];
    ib_status st = ib__cache_key(&in, key);
    if (st == IB_OK) st = ib__cache_model_label(model, label);
    if (st != IB_OK) return ib__cli_fail(st, "cache %s '%s'", put ? "put" : "get", model);
    ib__cache_entry *e = NULL;
    bool built = false;
    if (put) {
        put_ctx ctx = {model, label, delay_ms};
        st = ib__cache_insert(cache, key, label, target, put_build, &ctx, &e, &built);
    } else {
        st = ib__cache_lookup(cache, key, &e);
    }
    if (st != IB_OK) return ib__cli_fail(st, "cache %s '%s'", put ? "put" : "get", model);
    if (!e) {
        printf("miss %s %s\n", key, label);
        return IB_EXIT_OK;
    }
    printf("%s %s %s freq=%llu %s\n", built ? "built" : "hit", key, label,
           (unsigned long long)ib__cache_entry_info_get(e)->freq, ib__cache_entry_path(e));
    ib__cache_release(e);
    return IB_EXIT_OK;
}

int ib__cmd_cache(int argc, char **argv) {
    const char *action = NULL, *operand = NULL, *dir = NULL, *options = "";
    bool json = false;
    long long delay_ms = 0, max_entries = 0, max_bytes = 0;
    const ib__cli_opt opts[] = {
        {"--json", NULL, IB_CLI_FLAG, &json, 0, 0},
        {"--cache-dir", NULL, IB_CLI_STRING, &dir, 0, 0},
        {"--options", NULL, IB_CLI_STRING, &options, 0, 0},
        {"--build-delay-ms", NULL, IB_CLI_INT, &delay_ms, 0, 600000},
        {"--max-entries", NULL, IB_CLI_INT, &max_entries, 1, 1LL << 40},
        {"--max-bytes", NULL, IB_CLI_INT, &max_bytes, 1, 1LL << 62},
    };
    const char *words[2] = {NULL, NULL}; /* the action and its operand */
    ib__cli_list args = {words, 0, 2};
    int parsed = ib__cli_parse_list("cache", argc, argv, opts, sizeof opts / sizeof *opts, &args, usage);
    if (parsed >= 0) return parsed;
    action = words[0];
    operand = words[1];
    if (!action) {
        usage(stderr);
        return IB_EXIT_USAGE;
    }
    bool needs_operand = strcmp(action, "evict") == 0 || strcmp(action, "put") == 0 ||
                         strcmp(action, "get") == 0;
    bool known = needs_operand || strcmp(action, "ls") == 0 || strcmp(action, "stats") == 0 ||
                 strcmp(action, "clear") == 0 || strcmp(action, "verify") == 0;
    if (!known) return ib__cli_usage_error("cache: unknown action '%s' (ls, stats, evict, clear, verify)", action);
    if (needs_operand && !operand) return ib__cli_usage_error("cache %s: missing operand", action);
    if (!needs_operand && operand) return ib__cli_usage_error("cache %s: unexpected argument '%s'", action, operand);

    ib__cache_limits limits = {(uint64_t)max_entries, (uint64_t)max_bytes, false};
    ib__cache *cache = NULL;
    ib_status st = ib__cache_open(dir, &limits, &cache);
    if (st != IB_OK) return ib__cli_fail(st, "cache");
    int rc;
    if (strcmp(action, "ls") == 0) rc = cmd_ls(cache, json);
    else if (strcmp(action, "stats") == 0) rc = cmd_stats(cache, json);
    else if (strcmp(action, "evict") == 0) rc = cmd_evict(cache, operand);
    else if (strcmp(action, "clear") == 0) rc = cmd_clear(cache);
    else if (strcmp(action, "verify") == 0) rc = cmd_verify(cache, json);
    else rc = cmd_put_get(cache, strcmp(action, "put") == 0, operand, options, delay_ms);
    ib__cache_close(cache);
    return rc;
}
