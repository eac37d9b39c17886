/* The tuning database: measured knob sets per (workload key, target) as JSON lines in
 * one append-only file. Each record is one write() on an O_APPEND descriptor followed
 * by fsync, so concurrent tuners interleave whole lines and a kill leaves at most a
 * torn last line, which readers skip. A small parser for exactly this record format
 * keeps the core library free of a JSON dependency. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tune/tune.h"

struct ib__tune_db {
    char *path;
    int32_t n, cap;
    ib__tune_record *recs;
};

ib_status ib__tune_db_default_path(char **out) {
    const char *env = getenv("INFERBOOSTER_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char buf[4096];
    int len;
    if (env && env[0]) len = snprintf(buf, sizeof buf, "%s/tuning.jsonl", env);
    else if (xdg && xdg[0] == '/') len = snprintf(buf, sizeof buf, "%s/inferbooster/tuning.jsonl", xdg);
    else if (home && home[0] == '/')
        len = snprintf(buf, sizeof buf, "%s/.cache/inferbooster/tuning.jsonl", home);
    else
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "tuning database: no cache directory: set INFERBOOSTER_CACHE_DIR or HOME");
    if (len < 0 || (size_t)len >= sizeof buf)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "tuning database: path too long");
    char *p = ib__malloc((size_t)len + 1);
    if (!p) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(p, buf, (size_t)len + 1);
    *out = p;
    return IB_OK;
}

/* ---- JSON: writing --------------------------------------------------------------------- */

static void json_str(ib__sb *sb, const char *s) {
    ib__sb_printf(sb, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') ib__sb_printf(sb, "\\%c", *p);
        else if (*p < 0x20) ib__sb_printf(sb, "\\u%04x", *p);
        else ib__sb_printf(sb, "%c", *p);
    }
    ib__sb_printf(sb, "\"");
}

static void json_num(ib__sb *sb, double v) {
    if (isfinite(v)) ib__sb_printf(sb, "%.6g", v);
    else ib__sb_printf(sb, "0");
}

ib_status ib__tune_record_json(const ib__tune_record *r, ib__sb *sb) {
    ib__sb_printf(sb, "{\"v\":1,\"target\":");
    json_str(sb, r->target);
    ib__sb_printf(sb, ",\"template\":");
    json_str(sb, r->tmpl);
    ib__sb_printf(sb, ",\"key\":");
    json_str(sb, r->key ? r->key : "");
    ib__sb_printf(sb, ",\"knobs\":{");
    for (int32_t i = 0; i < r->n_knobs; i++) {
        if (i) ib__sb_printf(sb, ",");
        json_str(sb, r->knob_name[i]);
        ib__sb_printf(sb, ":%lld", (long long)r->knob_value[i]);
    }
    ib__sb_printf(sb, "},\"ok\":%s,\"ms\":", r->ok ? "true" : "false");
    json_num(sb, r->ms);
    if (r->ref_ms > 0) {
        ib__sb_printf(sb, ",\"ref_ms\":");
        json_num(sb, r->ref_ms);
    }
    ib__sb_printf(sb, ",\"gflops\":");
    json_num(sb, r->gflops);
    ib__sb_printf(sb, ",\"time\":%.0f,\"note\":", r->when);
    json_str(sb, r->note);
    if (r->in_model) ib__sb_printf(sb, ",\"scope\":\"model\"");
    ib__sb_printf(sb, "}\n");
    return ib__sb_status(sb);
}

double ib__tune_record_relative(const ib__tune_record *r) {
    return r->ref_ms > 0 ? r->ms / r->ref_ms : r->ms;
}

bool ib__tune_record_faster(const ib__tune_record *a, const ib__tune_record *b) {
    if (a->ref_ms > 0 && b->ref_ms > 0)
        return ib__tune_record_relative(a) < ib__tune_record_relative(b);
    return a->ms < b->ms;
}

void ib__tune_record_set_knobs(ib__tune_record *r, const ib__knobs *k) {
    r->n_knobs = 0;
    for (int32_t i = 0; i < k->n && i < IB_MAX_KNOBS; i++) {
        snprintf(r->knob_name[r->n_knobs], sizeof r->knob_name[0], "%s", k->name[i]);
        r->knob_value[r->n_knobs++] = k->value[i];
    }
}

/* ---- JSON: reading ---------------------------------------------------------------------- */

typedef struct scan {
    const char *p, *end;
} scan;

static void ws(scan *s) {
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\r')) s->p++;
}

static bool lit(scan *s, char c) {
    ws(s);
    if (s->p < s->end && *s->p == c) {
        s->p++;
        return true;
    }
    return false;
}

/* A string into buf (truncated to cap - 1; \uXXXX below 0x80 only). */
static bool str(scan *s, char *buf, size_t cap) {
    if (!lit(s, '"')) return false;
    size_t n = 0;
    while (s->p < s->end && *s->p != '"') {
        char c = *s->p++;
        if ((unsigned char)c < 0x20) return false;
        if (c == '\\') {
            if (s->p >= s->end) return false;
            char e = *s->p++;
            switch (e) {
            case '"': case '\\': case '/': c = e; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'u': {
                if (s->end - s->p < 4) return false;
                char hx[5] = {s->p[0], s->p[1], s->p[2], s->p[3], 0};
                char *e2;
                long v = strtol(hx, &e2, 16);
                if (*e2 || v <= 0 || v >= 0x80) return false;
                c = (char)v;
                s->p += 4;
                break;
            }
            default: return false;
            }
        }
        if (n + 1 < cap) buf[n++] = c;
    }
    if (s->p >= s->end) return false;
    s->p++;
    buf[n] = '\0';
    return true;
}

static bool num(scan *s, double *out) {
    ws(s);
    char tmp[64];
    size_t n = 0;
    while (s->p < s->end && n + 1 < sizeof tmp && strchr("+-0123456789.eE", *s->p))
        tmp[n++] = *s->p++;
    tmp[n] = '\0';
    if (!n) return false;
    char *e;
    *out = strtod(tmp, &e);
    return *e == '\0' && isfinite(*out);
}

static bool boolean(scan *s, bool *out) {
    ws(s);
    if (s->end - s->p >= 4 && memcmp(s->p, "true", 4) == 0) {
        s->p += 4;
        *out = true;
        return true;
    }
    if (s->end - s->p >= 5 && memcmp(s->p, "false", 5) == 0) {
        s->p += 5;
        *out = false;
        return true;
    }
    return false;
}

bool ib__tune_record_parse(const char *line, size_t len, ib__tune_record *r) {
    memset(r, 0, sizeof *r);
    scan s = {line, line + len};
    char name[32];
    char *key = ib__malloc(IB_TUNE_KEY_MAX);
    if (!key) return false;
    key[0] = '\0';
    bool have_key = false, have_target = false, have_ok = false, version_ok = false;
    if (!lit(&s, '{')) goto bad;
    for (bool first = true;; first = false) {
        if (lit(&s, '}')) break;
        if (!first && !lit(&s, ',')) goto bad;
        if (!str(&s, name, sizeof name) || !lit(&s, ':')) goto bad;
        double d;
        if (strcmp(name, "v") == 0) {
            if (!num(&s, &d)) goto bad;
            version_ok = d == 1;
        } else if (strcmp(name, "target") == 0) {
            if (!str(&s, r->target, sizeof r->target)) goto bad;
            have_target = true;
        } else if (strcmp(name, "template") == 0) {
            if (!str(&s, r->tmpl, sizeof r->tmpl)) goto bad;
        } else if (strcmp(name, "key") == 0) {
            if (!str(&s, key, IB_TUNE_KEY_MAX)) goto bad;
            have_key = key[0] != '\0';
        } else if (strcmp(name, "knobs") == 0) {
            if (!lit(&s, '{')) goto bad;
            for (bool kf = true;; kf = false) {
                if (lit(&s, '}')) break;
                if (!kf && !lit(&s, ',')) goto bad;
                if (r->n_knobs >= IB_MAX_KNOBS) goto bad;
                if (!str(&s, r->knob_name[r->n_knobs], sizeof r->knob_name[0]) || !lit(&s, ':') ||
                    !num(&s, &d) || d != floor(d) || fabs(d) > 9e15)
                    goto bad;
                r->knob_value[r->n_knobs++] = (int64_t)d;
            }
        } else if (strcmp(name, "ok") == 0) {
            if (!boolean(&s, &r->ok)) goto bad;
            have_ok = true;
        } else if (strcmp(name, "ms") == 0) {
            if (!num(&s, &r->ms)) goto bad;
        } else if (strcmp(name, "ref_ms") == 0) {
            if (!num(&s, &r->ref_ms) || !(r->ref_ms > 0)) goto bad;
        } else if (strcmp(name, "gflops") == 0) {
            if (!num(&s, &r->gflops)) goto bad;
        } else if (strcmp(name, "time") == 0) {
            if (!num(&s, &r->when)) goto bad;
        } else if (strcmp(name, "note") == 0) {
            if (!str(&s, r->note, sizeof r->note)) goto bad;
        } else if (strcmp(name, "scope") == 0) {
            char scope[16];
            if (!str(&s, scope, sizeof scope)) goto bad;
            if (strcmp(scope, "model") == 0) r->in_model = true;
            else if (strcmp(scope, "kernel") != 0) goto bad;
        } else {
            goto bad; /* a field of a format we do not know */
        }
    }
    ws(&s);
    if (s.p != s.end || !have_key || !have_target || !have_ok || !version_ok) goto bad;
    if (r->ok && !(r->ms > 0)) goto bad;
    r->key = key;
    return true;
bad:
    ib__free(key);
    memset(r, 0, sizeof *r);
    return false;
}

/* ---- The database ---------------------------------------------------------------------- */

static ib_status add(ib__tune_db *db, const ib__tune_record *r) {
    if (db->n == db->cap) {
        int32_t ncap = db->cap ? db->cap * 2 : 64;
        ib__tune_record *n = ib__realloc(db->recs, (size_t)ncap * sizeof *n);
        if (!n) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory reading the tuning database");
        db->recs = n;
        db->cap = ncap;
    }
    db->recs[db->n++] = *r;
    return IB_OK;
}

/* Reads every complete, well-formed line of path into db (a missing file is empty). */
static ib_status load(ib__tune_db *db, const char *path, int32_t *n_read) {
    *n_read = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return IB_OK;
        return ib__error(IB_ERR_IO, "cannot read the tuning database '%s': %s", path,
                         strerror(errno));
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    ib_status st = IB_OK;
    while (st == IB_OK && (len = getline(&line, &cap, f)) >= 0) {
        /* a line without its newline was torn by a kill mid-append: skipped */
        if (len == 0 || line[len - 1] != '\n') continue;
        ib__tune_record r;
        if (!ib__tune_record_parse(line, (size_t)len - 1, &r)) continue;
        st = add(db, &r);
        if (st) ib__free(r.key);
        else (*n_read)++;
    }
    free(line);
    fclose(f);
    return st;
}

ib_status ib__tune_db_open(const char *path, ib__tune_db **out) {
    if (!path || !path[0]) return ib__error(IB_ERR_INVALID_ARGUMENT, "tuning database path required");
    ib__tune_db *db = ib__calloc(1, sizeof *db);
    if (!db) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    db->path = ib__strdup(path);
    int32_t n;
    ib_status st = db->path ? load(db, path, &n) : ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    if (st) {
        ib__tune_db_close(db);
        return st;
    }
    *out = db;
    return IB_OK;
}

void ib__tune_db_close(ib__tune_db *db) {
    if (!db) return;
    for (int32_t i = 0; i < db->n; i++) ib__free(db->recs[i].key);
    ib__free(db->recs);
    ib__free(db->path);
    ib__free(db);
}

const char *ib__tune_db_path(const ib__tune_db *db) { return db->path; }
int32_t ib__tune_db_size(const ib__tune_db *db) { return db->n; }
const ib__tune_record *ib__tune_db_at(const ib__tune_db *db, int32_t i) {
    return i >= 0 && i < db->n ? &db->recs[i] : NULL;
}

/* mkdir -p of path's parent directories. */
static void make_parents(const char *path) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
}

static ib_status append_line(const char *path, const ib__sb *line) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        make_parents(path);
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    }
    if (fd < 0)
        return ib__error(IB_ERR_IO, "cannot open the tuning database '%s': %s", path,
                         strerror(errno));
    ssize_t w = write(fd, line->data, line->len);
    int werr = errno;
    int rc = w == (ssize_t)line->len ? fsync(fd) : -1;
    close(fd);
    if (w != (ssize_t)line->len)
        return ib__error(IB_ERR_IO, "cannot append to the tuning database '%s': %s", path,
                         w < 0 ? strerror(werr) : "short write");
    if (rc != 0)
        return ib__error(IB_ERR_IO, "cannot sync the tuning database '%s': %s", path,
                         strerror(errno));
    return IB_OK;
}

ib_status ib__tune_db_append(ib__tune_db *db, const ib__tune_record *r) {
    if (!r->key || !r->key[0] || strchr(r->key, '\n'))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "tuning record without a workload key");
    ib__tune_record c = *r;
    if (c.when == 0) c.when = (double)time(NULL);
    ib__sb line;
    ib__sb_init(&line);
    ib_status st = ib__tune_record_json(&c, &line);
    if (st == IB_OK) st = append_line(db->path, &line);
    ib__sb_free(&line);
    if (st) return st;
    c.key = ib__strdup(r->key);
    if (!c.key) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    st = add(db, &c);
    if (st) ib__free(c.key);
    return st;
}

static bool same_workload(const ib__tune_record *r, const char *target, const char *key) {
    return strcmp(r->target, target) == 0 && strcmp(r->key, key) == 0;
}

/* r names exactly k's knobs, and with k's values too when `values`. */
static bool same_knob_names(const ib__tune_record *r, const ib__knobs *k, bool values) {
    if (r->n_knobs != k->n) return false;
    for (int32_t i = 0; i < k->n; i++) {
        bool found = false;
        for (int32_t j = 0; j < r->n_knobs && !found; j++)
            found = strcmp(r->knob_name[j], k->name[i]) == 0 &&
                    (!values || r->knob_value[j] == k->value[i]);
        if (!found) return false;
    }
    return true;
}

static const ib__tune_record *best_of(const ib__tune_db *db, const char *target,
                                      const char *key, bool in_model, const ib__knobs *names) {
    const ib__tune_record *best = NULL;
    for (int32_t i = 0; db && i < db->n; i++) {
        const ib__tune_record *r = &db->recs[i];
        if (!r->ok || r->in_model != in_model || !same_workload(r, target, key)) continue;
        if (names && !same_knob_names(r, names, false)) continue;
        if (!best || ib__tune_record_faster(r, best)) best = r;
    }
    return best;
}

const ib__tune_record *ib__tune_db_best(const ib__tune_db *db, const char *target,
                                        const char *key) {
    return best_of(db, target, key, false, NULL);
}

const ib__tune_record *ib__tune_db_pick(const ib__tune_db *db, const char *target,
                                        const char *key, const ib__knobs *names) {
    const ib__tune_record *m = best_of(db, target, key, true, names);
    return m ? m : best_of(db, target, key, false, names);
}

void ib__tune_db_count(const ib__tune_db *db, const char *target, const char *key,
                       int32_t *n_all, int32_t *n_ok) {
    int32_t a = 0, o = 0;
    for (int32_t i = 0; db && i < db->n; i++)
        if (!db->recs[i].in_model && same_workload(&db->recs[i], target, key)) {
            a++;
            o += db->recs[i].ok;
        }
    *n_all = a;
    *n_ok = o;
}

bool ib__tune_db_has(const ib__tune_db *db, const char *target, const char *key,
                     const ib__knobs *knobs) {
    for (int32_t i = 0; db && i < db->n; i++)
        if (same_workload(&db->recs[i], target, key) &&
            same_knob_names(&db->recs[i], knobs, true))
            return true;
    return false;
}

ib_status ib__tune_db_export(const ib__tune_db *db, const char *path) {
    char tmp[4200];
    int len = snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    if (len < 0 || (size_t)len >= sizeof tmp) return ib__error(IB_ERR_INVALID_ARGUMENT, "path too long");
    ib__sb all;
    ib__sb_init(&all);
    ib_status st = IB_OK;
    for (int32_t i = 0; i < db->n && st == IB_OK; i++) st = ib__tune_record_json(&db->recs[i], &all);
    int fd = st == IB_OK ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : -1;
    if (st == IB_OK && fd < 0)
        st = ib__error(IB_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    if (fd >= 0) {
        size_t off = 0;
        while (st == IB_OK && off < all.len) {
            ssize_t w = write(fd, all.data + off, all.len - off);
            if (w <= 0) st = ib__error(IB_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
            else off += (size_t)w;
        }
        if (st == IB_OK && fsync(fd) != 0)
            st = ib__error(IB_ERR_IO, "cannot sync '%s': %s", tmp, strerror(errno));
        close(fd);
        if (st == IB_OK && rename(tmp, path) != 0)
            st = ib__error(IB_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        if (st) unlink(tmp);
    }
    ib__sb_free(&all);
    return st;
}

ib_status ib__tune_db_import(ib__tune_db *db, const char *path, int32_t *added) {
    *added = 0;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ib__error(IB_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    ib__tune_db *other = NULL;
    IB_TRY(ib__tune_db_open(path, &other));
    ib_status st = IB_OK;
    for (int32_t i = 0; i < other->n && st == IB_OK; i++) {
        const ib__tune_record *r = &other->recs[i];
        ib__knobs k = {0};
        for (int32_t j = 0; j < r->n_knobs; j++) {
            k.name[j] = r->knob_name[j];
            k.value[j] = r->knob_value[j];
        }
        k.n = r->n_knobs;
        if (ib__tune_db_has(db, r->target, r->key, &k)) continue;
        st = ib__tune_db_append(db, r);
        if (st == IB_OK) (*added)++;
    }
    ib__tune_db_close(other);
    return st;
}
