/* The compiled-model cache: the index (one checksummed file rewritten atomically under
 * a lock file), entry manifests, pins, LFU eviction, lookup/insert/verify/list/clear.
 * Lock order: a key's build lock, then the cache lock; pins are taken and tested only
 * while holding the cache lock and never block, so no two processes wait on each other
 * in a cycle. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache_internal.h"

#define INDEX_MAGIC "ibcache-index 1"
#define MANIFEST_MAGIC "ibcache-manifest 1"
#define USE_MAGIC "ibcache-use 1"
#define MANIFEST_NAME ".ib-manifest"
#define INDEX_MAX_BYTES ((size_t)64 << 20)
#define MANIFEST_MAX_BYTES ((size_t)4 << 20)
#define MANIFEST_MAX_FILES 4096

struct ib__cache {
    char *dir, *entries_dir, *tmp_dir, *locks_dir, *uses_dir;
    uint64_t max_entries, max_bytes;
    bool verify_hits;
    uint64_t verify_hit_max;
    int lock_fd;
    /* flock is per open file: threads of one process sharing this handle are
     * serialised by the mutex instead. */
    pthread_mutex_t mu;
};

struct ib__cache_entry {
    ib__cache_entry_info info;
    char *path;
    int pin_fd;
};

typedef struct cache_index {
    ib__cache_entry_info *recs;
    size_t n, cap;
    uint64_t hits, misses, evictions, next_seq;
    bool rebuilt;
} cache_index;

/* ---- small helpers ------------------------------------------------------------------ */

typedef struct sbuf {
    char *data;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if (b->data && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *p = ib__realloc(b->data, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
}

static int64_t now_seconds(void) { return (int64_t)time(NULL); }

/* Splits a line at single spaces; returns the token count, max + 1 when there are more
 * than max. */
static int split_line(char *line, char **tok, int max) {
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == max) return max + 1;
        tok[n++] = p;
        char *sp = strchr(p, ' ');
        if (!sp) return n;
        *sp = '\0';
        p = sp + 1;
    }
}

static bool parse_u64(const char *s, uint64_t *out) {
    if (!s || !*s || *s == '-' || *s == '+') return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    *out = (uint64_t)v;
    return true;
}

static bool parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    *out = (int64_t)v;
    return true;
}

/* A label read from disk must be what sanitising would have produced. */
static bool copy_label(const char *s, char *out) {
    if (strcmp(s, "-") == 0) {
        out[0] = '\0';
        return true;
    }
    if (strlen(s) >= IB_CACHE_LABEL_MAX) return false;
    ib__cache_sanitize(s, out, IB_CACHE_LABEL_MAX);
    return strcmp(out, s) == 0;
}

static const char *label_or_dash(const char *s) { return s[0] ? s : "-"; }

/* Verifies "checksum HEX\n" as the last line over all bytes before it; returns the
 * length of the checked body or 0 when absent or wrong. */
static size_t checked_body(const char *buf, size_t n) {
    if (n < 2 || buf[n - 1] != '\n') return 0;
    size_t line = n - 1;
    while (line > 0 && buf[line - 1] != '\n') line--;
    const char *p = buf + line;
    if (n - line != strlen("checksum ") + IB_CACHE_KEY_HEX + 1 || strncmp(p, "checksum ", 9) != 0)
        return 0;
    char hex[IB_CACHE_KEY_HEX + 1];
    if (ib__cache_sha256_hex(buf, line, hex) != IB_OK) return 0;
    if (memcmp(hex, p + 9, IB_CACHE_KEY_HEX) != 0) return 0;
    return line;
}

static void sb_checksum(sbuf *b) {
    if (b->failed) return;
    char hex[IB_CACHE_KEY_HEX + 1];
    if (ib__cache_sha256_hex(b->data ? b->data : "", b->len, hex) != IB_OK) {
        b->failed = true;
        return;
    }
    sb_printf(b, "checksum %s\n", hex);
}

/* ---- locks ------------------------------------------------------------------------- */

static ib_status global_lock(ib__cache *c) {
    pthread_mutex_lock(&c->mu);
    int rc;
    do rc = flock(c->lock_fd, LOCK_EX);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        pthread_mutex_unlock(&c->mu);
        return ib__error(IB_ERR_IO, "cache: cannot lock '%s/lock': %s", c->dir, strerror(errno));
    }
    return IB_OK;
}

static void global_unlock(ib__cache *c) {
    flock(c->lock_fd, LOCK_UN);
    pthread_mutex_unlock(&c->mu);
}

/* Pins are only taken or tested under the cache lock, never blocking. */
static int pin_lock(ib__cache *c, const char *key, int op, int *fd) {
    char *path = ib__cache_path("%s/%s.pin", c->locks_dir, key);
    if (!path) return -1;
    int rc = ib__cache_lock_file(path, op | LOCK_NB, fd);
    ib__free(path);
    return rc;
}

/* ---- manifests --------------------------------------------------------------------- */

static bool artifact_name_ok(const char *name) {
    if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return false;
    if (strncmp(name, ".ib-", 4) == 0) return false;
    if (strlen(name) > 255) return false;
    for (const char *p = name; *p; p++)
        if (*p == '/' || (unsigned char)*p <= ' ' || *p == 0x7f) return false;
    return true;
}

typedef struct manifest_file {
    char name[256];
    char sha[IB_CACHE_KEY_HEX + 1];
    uint64_t size;
} manifest_file;

typedef struct manifest {
    char key[IB_CACHE_KEY_HEX + 1];
    char name[IB_CACHE_LABEL_MAX], target[IB_CACHE_LABEL_MAX];
    int64_t created_s, created_ns;
    manifest_file *files;
    size_t n_files;
    uint64_t bytes; /* files + the manifest itself */
} manifest;

static void manifest_free(manifest *m) {
    ib__free(m->files);
    m->files = NULL;
    m->n_files = 0;
}

/* Reads and checks dir/.ib-manifest: checksum line, key, labels, file list; then that
 * the directory holds exactly those files with those sizes (and, for files of at most
 * content_max bytes, those SHA-256 sums). false on any disagreement (no status: the entry is just bad). */
static bool manifest_check(const char *dir, const char *key, uint64_t content_max, manifest *m) {
    memset(m, 0, sizeof *m);
    char *path = ib__cache_path("%s/%s", dir, MANIFEST_NAME);
    if (!path) return false;
    char *buf = NULL;
    size_t n = 0;
    ib_status st = ib__cache_read_file(path, MANIFEST_MAX_BYTES, &buf, &n, NULL);
    ib__free(path);
    if (st != IB_OK) return false;
    bool ok = false;
    size_t body = checked_body(buf, n);
    if (body == 0) goto done;
    buf[body] = '\0';
    m->bytes = n;
    char *save = NULL;
    int line_no = 0;
    bool have_key = false, have_name = false, have_target = false, have_created = false;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        char *tok[5];
        if (line_no == 1) {
            if (strcmp(line, MANIFEST_MAGIC) != 0) goto done;
            continue;
        }
        int nt = split_line(line, tok, 4);
        if (nt == 2 && strcmp(tok[0], "key") == 0 && !have_key) {
            if (strcmp(tok[1], key) != 0) goto done;
            memcpy(m->key, key, IB_CACHE_KEY_HEX + 1);
            have_key = true;
        } else if (nt == 2 && strcmp(tok[0], "name") == 0 && !have_name) {
            if (!copy_label(tok[1], m->name)) goto done;
            have_name = true;
        } else if (nt == 2 && strcmp(tok[0], "target") == 0 && !have_target) {
            if (!copy_label(tok[1], m->target)) goto done;
            have_target = true;
        } else if (nt == 3 && strcmp(tok[0], "created") == 0 && !have_created) {
            if (!parse_i64(tok[1], &m->created_s) || !parse_i64(tok[2], &m->created_ns)) goto done;
            have_created = true;
        } else if (nt == 4 && strcmp(tok[0], "f") == 0) {
            if (m->n_files >= MANIFEST_MAX_FILES || !ib__cache_key_valid(tok[1]) ||
                !artifact_name_ok(tok[3]))
                goto done;
            manifest_file *files = ib__realloc(m->files, (m->n_files + 1) * sizeof *files);
            if (!files) goto done;
            m->files = files;
            manifest_file *f = &files[m->n_files];
            memcpy(f->sha, tok[1], IB_CACHE_KEY_HEX + 1);
            if (!parse_u64(tok[2], &f->size)) goto done;
            snprintf(f->name, sizeof f->name, "%s", tok[3]);
            for (size_t i = 0; i < m->n_files; i++)
                if (strcmp(files[i].name, f->name) == 0) goto done;
            m->n_files++;
            if (__builtin_add_overflow(m->bytes, f->size, &m->bytes)) goto done;
        } else {
            goto done;
        }
    }
    if (!have_key || !have_name || !have_target || !have_created) goto done;

    /* Exactly the listed files, regular, with the listed sizes. */
    DIR *d = opendir(dir);
    if (!d) goto done;
    size_t seen = 0;
    bool dir_ok = true;
    struct dirent *de;
    while (dir_ok && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            strcmp(de->d_name, MANIFEST_NAME) == 0)
            continue;
        size_t i = 0;
        while (i < m->n_files && strcmp(m->files[i].name, de->d_name) != 0) i++;
        if (i == m->n_files) {
            dir_ok = false;
            break;
        }
        struct stat fst;
        if (fstatat(dirfd(d), de->d_name, &fst, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(fst.st_mode) ||
            (uint64_t)fst.st_size != m->files[i].size)
            dir_ok = false;
        seen++;
    }
    closedir(d);
    if (!dir_ok || seen != m->n_files) goto done;
    if (content_max > 0) {
        for (size_t i = 0; i < m->n_files; i++) {
            if (m->files[i].size > content_max) continue;
            char *fp = ib__cache_path("%s/%s", dir, m->files[i].name);
            if (!fp) goto done;
            char sha[IB_CACHE_KEY_HEX + 1];
            uint64_t size = 0;
            ib_status hs = ib__cache_sha256_file(fp, sha, &size);
            ib__free(fp);
            if (hs != IB_OK || size != m->files[i].size || strcmp(sha, m->files[i].sha) != 0)
                goto done;
        }
    }
    ok = true;
done:
    ib__free(buf);
    if (!ok) manifest_free(m);
    ib__error_clear();
    return ok;
}

static ib_status fsync_file(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return ib__error(IB_ERR_IO, "cache: cannot open '%s': %s", path, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0) return ib__error(IB_ERR_IO, "cache: fsync of '%s' failed: %s", path, strerror(err));
    return IB_OK;
}

/* Checksums and fsyncs what build_fn wrote into dir and writes the manifest. */
static ib_status manifest_write(const char *dir, const char *key, const char *name,
                                const char *target, uint64_t *bytes_out) {
    DIR *d = opendir(dir);
    if (!d) return ib__error(IB_ERR_IO, "cache: cannot read build directory '%s': %s", dir, strerror(errno));
    sbuf b = {0};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sb_printf(&b, "%s\nkey %s\nname %s\ntarget %s\ncreated %lld %lld\n", MANIFEST_MAGIC, key,
              label_or_dash(name), label_or_dash(target), (long long)ts.tv_sec,
              (long long)ts.tv_nsec);
    ib_status st = IB_OK;
    uint64_t total = 0;
    size_t count = 0;
    struct dirent *de;
    while (st == IB_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (!artifact_name_ok(de->d_name)) {
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "cache: artifact file name '%s' is not allowed",
                           de->d_name);
            break;
        }
        struct stat sst;
        if (fstatat(dirfd(d), de->d_name, &sst, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sst.st_mode)) {
            st = ib__error(IB_ERR_INVALID_ARGUMENT,
                           "cache: artifact '%s' is not a regular file (directories and links "
                           "are not stored)", de->d_name);
            break;
        }
        if (++count > MANIFEST_MAX_FILES) {
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "cache: more than %d artifact files", MANIFEST_MAX_FILES);
            break;
        }
        char *fp = ib__cache_path("%s/%s", dir, de->d_name);
        if (!fp) {
            st = IB_ERR_OUT_OF_MEMORY;
            break;
        }
        char sha[IB_CACHE_KEY_HEX + 1];
        uint64_t size = 0;
        st = ib__cache_sha256_file(fp, sha, &size);
        if (st == IB_OK) st = fsync_file(fp);
        ib__free(fp);
        if (st == IB_OK) {
            sb_printf(&b, "f %s %llu %s\n", sha, (unsigned long long)size, de->d_name);
            total += size;
        }
    }
    closedir(d);
    sb_checksum(&b);
    if (st == IB_OK && b.failed) st = ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory (manifest)");
    if (st == IB_OK) st = ib__cache_write_atomic(dir, MANIFEST_NAME, ".ib-manifest.tmp", b.data, b.len);
    if (st == IB_OK) *bytes_out = total + b.len;
    ib__free(b.data);
    return st;
}

/* ---- use records --------------------------------------------------------------------- */
/* uses/<key> keeps an entry's frequency and last use beside the index (one small
 * checksummed file, rewritten atomically under the cache lock at each hit), so that an
 * index rebuilt from the entry directories keeps the LFU order instead of resetting
 * every frequency to 1. */

static void use_write(ib__cache *c, const ib__cache_entry_info *r) {
    sbuf b = {0};
    sb_printf(&b, "%s\nkey %s\nfreq %llu\nlast %lld\n", USE_MAGIC, r->key,
              (unsigned long long)r->freq, (long long)r->last_used);
    sb_checksum(&b);
    char tmp_name[IB_CACHE_KEY_HEX + 8];
    snprintf(tmp_name, sizeof tmp_name, "%s.tmp", r->key);
    /* Best effort: a lost record only costs the frequency if the index is lost too. */
    if (!b.failed) ib__cache_write_atomic_ex(c->uses_dir, r->key, tmp_name, b.data, b.len, false);
    ib__free(b.data);
    ib__error_clear();
}

/* Reads uses/<key> into freq and last_used; false (fields untouched) when absent or bad. */
static bool use_read(ib__cache *c, const char *key, uint64_t *freq, int64_t *last_used) {
    char *path = ib__cache_path("%s/%s", c->uses_dir, key);
    char *buf = NULL;
    size_t n = 0;
    bool ok = path && ib__cache_read_file(path, 4096, &buf, &n, NULL) == IB_OK;
    ib__free(path);
    ib__error_clear();
    size_t body = ok ? checked_body(buf, n) : 0;
    ok = false;
    if (body > 0) {
        buf[body] = '\0';
        char k[IB_CACHE_KEY_HEX + 2];
        unsigned long long f = 0;
        long long last = 0;
        char magic[32];
        if (sscanf(buf, "%31[^\n]\nkey %65s\nfreq %llu\nlast %lld\n", magic, k, &f, &last) == 4 &&
            strcmp(magic, USE_MAGIC) == 0 && strcmp(k, key) == 0 && f >= 1) {
            *freq = f;
            *last_used = last;
            ok = true;
        }
    }
    ib__free(buf);
    return ok;
}

static void use_remove(ib__cache *c, const char *key) {
    char *path = ib__cache_path("%s/%s", c->uses_dir, key);
    if (path) unlink(path);
    ib__free(path);
    ib__error_clear();
}

/* ---- the index ---------------------------------------------------------------------- */

static void index_free(cache_index *idx) {
    ib__free(idx->recs);
    memset(idx, 0, sizeof *idx);
}

static ib__cache_entry_info *index_find(cache_index *idx, const char *key) {
    for (size_t i = 0; i < idx->n; i++)
        if (strcmp(idx->recs[i].key, key) == 0) return &idx->recs[i];
    return NULL;
}

static ib_status index_add(cache_index *idx, const ib__cache_entry_info *rec) {
    if (idx->n == idx->cap) {
        size_t cap = idx->cap ? idx->cap * 2 : 16;
        ib__cache_entry_info *p = ib__realloc(idx->recs, cap * sizeof *p);
        if (!p) return ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory (index)");
        idx->recs = p;
        idx->cap = cap;
    }
    idx->recs[idx->n++] = *rec;
    return IB_OK;
}

static void index_remove(cache_index *idx, const char *key) {
    for (size_t i = 0; i < idx->n; i++)
        if (strcmp(idx->recs[i].key, key) == 0) {
            memmove(&idx->recs[i], &idx->recs[i + 1], (idx->n - i - 1) * sizeof idx->recs[0]);
            idx->n--;
            return;
        }
}

static bool index_parse(char *buf, size_t n, cache_index *idx) {
    size_t body = checked_body(buf, n);
    if (body == 0) return false;
    buf[body] = '\0';
    char *save = NULL;
    int line_no = 0;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        char *tok[10];
        if (line_no == 1) {
            if (strcmp(line, INDEX_MAGIC) != 0) return false;
            continue;
        }
        int nt = split_line(line, tok, 9);
        if (line_no == 2) {
            if (nt != 5 || strcmp(tok[0], "counters") != 0 || !parse_u64(tok[1], &idx->hits) ||
                !parse_u64(tok[2], &idx->misses) || !parse_u64(tok[3], &idx->evictions) ||
                !parse_u64(tok[4], &idx->next_seq))
                return false;
            continue;
        }
        ib__cache_entry_info r;
        memset(&r, 0, sizeof r);
        if (nt != 9 || strcmp(tok[0], "e") != 0 || !ib__cache_key_valid(tok[1]) ||
            !parse_u64(tok[2], &r.freq) || !parse_u64(tok[3], &r.seq) ||
            !parse_u64(tok[4], &r.bytes) || !parse_i64(tok[5], &r.created) ||
            !parse_i64(tok[6], &r.last_used) || !copy_label(tok[7], r.name) ||
            !copy_label(tok[8], r.target))
            return false;
        memcpy(r.key, tok[1], IB_CACHE_KEY_HEX + 1);
        if (index_find(idx, r.key) || r.seq >= idx->next_seq) return false;
        if (index_add(idx, &r) != IB_OK) return false;
    }
    return line_no >= 2;
}

static int by_created(const void *a, const void *b) {
    const ib__cache_entry_info *x = a, *y = b;
    /* seq temporarily holds created_ns during a rebuild */
    if (x->created != y->created) return x->created < y->created ? -1 : 1;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return strcmp(x->key, y->key);
}

/* Deletes an entry directory (caller holds the cache lock and the entry's exclusive pin
 * or knows nobody can pin it): moved into tmp/ first so a crash leaves no half-deleted
 * entry under entries/. */
static void remove_entry_dir(ib__cache *c, const char *key) {
    static unsigned counter;
    char *src = ib__cache_path("%s/%s", c->entries_dir, key);
    char *dst = ib__cache_path("%s/d.%s.%ld.%u", c->tmp_dir, key, (long)getpid(), counter++);
    use_remove(c, key);
    if (src && dst) {
        if (rename(src, dst) == 0) {
            ib__cache_fsync_dir(c->entries_dir);
            ib__cache_remove_tree(dst);
        } else if (errno != ENOENT) {
            ib__cache_remove_tree(src);
        }
    }
    ib__free(src);
    ib__free(dst);
    ib__error_clear();
}

static void unlink_pin(ib__cache *c, const char *key) {
    char *path = ib__cache_path("%s/%s.pin", c->locks_dir, key);
    if (path) unlink(path);
    ib__free(path);
}

/* Rebuilds the index from the entry directories (under the cache lock): valid ones are
 * adopted in creation order with the frequency and last use of their use record (1 and
 * creation time without one); invalid ones not pinned are deleted. */
static ib_status index_rebuild(ib__cache *c, cache_index *idx) {
    index_free(idx);
    idx->rebuilt = true;
    DIR *d = opendir(c->entries_dir);
    if (!d) return ib__error(IB_ERR_IO, "cache: cannot read '%s': %s", c->entries_dir, strerror(errno));
    struct dirent *de;
    ib_status st = IB_OK;
    while (st == IB_OK && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char *path = ib__cache_path("%s/%s", c->entries_dir, de->d_name);
        if (!path) {
            st = IB_ERR_OUT_OF_MEMORY;
            break;
        }
        manifest m;
        if (ib__cache_key_valid(de->d_name) && manifest_check(path, de->d_name, 0, &m)) {
            ib__cache_entry_info r;
            memset(&r, 0, sizeof r);
            memcpy(r.key, de->d_name, IB_CACHE_KEY_HEX + 1);
            memcpy(r.name, m.name, sizeof r.name);
            memcpy(r.target, m.target, sizeof r.target);
            r.freq = 1;
            r.seq = (uint64_t)m.created_ns;
            r.bytes = m.bytes;
            r.created = m.created_s;
            r.last_used = m.created_s;
            use_read(c, r.key, &r.freq, &r.last_used);
            manifest_free(&m);
            st = index_add(idx, &r);
        } else {
            int fd = -1;
            if (!ib__cache_key_valid(de->d_name)) {
                ib__cache_remove_tree(path);
            } else if (pin_lock(c, de->d_name, LOCK_EX, &fd) == 0) {
                remove_entry_dir(c, de->d_name);
                unlink_pin(c, de->d_name);
                close(fd);
            }
            ib__error_clear();
        }
        ib__free(path);
    }
    closedir(d);
    if (st != IB_OK) return st;
    if (idx->n > 1) qsort(idx->recs, idx->n, sizeof idx->recs[0], by_created);
    for (size_t i = 0; i < idx->n; i++) idx->recs[i].seq = i + 1;
    idx->next_seq = idx->n + 1;
    return IB_OK;
}

static ib_status index_load(ib__cache *c, cache_index *idx) {
    memset(idx, 0, sizeof *idx);
    idx->next_seq = 1;
    char *path = ib__cache_path("%s/index", c->dir);
    if (!path) return IB_ERR_OUT_OF_MEMORY;
    char *buf = NULL;
    size_t n = 0;
    bool missing = false;
    ib_status st = ib__cache_read_file(path, INDEX_MAX_BYTES, &buf, &n, &missing);
    ib__free(path);
    ib__error_clear();
    if (st == IB_OK && index_parse(buf, n, idx)) {
        ib__free(buf);
        return IB_OK;
    }
    ib__free(buf);
    if (missing) {
        /* A fresh cache has no index; one whose index vanished still has entries. */
        st = index_rebuild(c, idx);
        if (st == IB_OK && idx->n == 0) idx->rebuilt = false;
        return st;
    }
    return index_rebuild(c, idx);
}

/* sync_dir false only for a hit's counter update (see ib__cache_write_atomic_ex). */
static ib_status index_save_ex(ib__cache *c, const cache_index *idx, bool sync_dir) {
    sbuf b = {0};
    sb_printf(&b, "%s\ncounters %llu %llu %llu %llu\n", INDEX_MAGIC, (unsigned long long)idx->hits,
              (unsigned long long)idx->misses, (unsigned long long)idx->evictions,
              (unsigned long long)idx->next_seq);
    for (size_t i = 0; i < idx->n; i++) {
        const ib__cache_entry_info *r = &idx->recs[i];
        sb_printf(&b, "e %s %llu %llu %llu %lld %lld %s %s\n", r->key, (unsigned long long)r->freq,
                  (unsigned long long)r->seq, (unsigned long long)r->bytes, (long long)r->created,
                  (long long)r->last_used, label_or_dash(r->name), label_or_dash(r->target));
    }
    sb_checksum(&b);
    ib_status st = b.failed ? ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory (index)")
                            : ib__cache_write_atomic_ex(c->dir, "index", "index.tmp", b.data,
                                                        b.len, sync_dir);
    ib__free(b.data);
    return st;
}

static ib_status index_save(ib__cache *c, const cache_index *idx) {
    return index_save_ex(c, idx, true);
}

static uint64_t index_bytes(const cache_index *idx) {
    uint64_t total = 0;
    for (size_t i = 0; i < idx->n; i++) total += idx->recs[i].bytes;
    return total;
}

/* ---- open / close -------------------------------------------------------------------- */

ib_status ib__cache_default_dir(char **out) {
    const char *env = getenv("INFERBOOSTER_CACHE_DIR");
    char *dir = NULL;
    if (env && env[0]) {
        dir = ib__strdup(env);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME");
        const char *home = getenv("HOME");
        if (xdg && xdg[0] == '/')
            dir = ib__cache_path("%s/inferbooster", xdg);
        else if (home && home[0] == '/')
            dir = ib__cache_path("%s/.cache/inferbooster", home);
        else
            return ib__error(IB_ERR_INVALID_ARGUMENT,
                             "cache: no cache directory: set INFERBOOSTER_CACHE_DIR or HOME");
    }
    if (!dir) return ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory");
    *out = dir;
    return IB_OK;
}

static ib_status env_limit(const char *var, uint64_t dflt, uint64_t *out) {
    const char *s = getenv(var);
    if (!s || !s[0]) {
        *out = dflt;
        return IB_OK;
    }
    char *end = NULL;
    errno = 0;
    if (*s == '-' || *s == '+') goto bad;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s) goto bad;
    uint64_t mult = 1;
    if (*end) {
        switch (*end) {
        case 'K': case 'k': mult = (uint64_t)1 << 10; break;
        case 'M': case 'm': mult = (uint64_t)1 << 20; break;
        case 'G': case 'g': mult = (uint64_t)1 << 30; break;
        case 'T': case 't': mult = (uint64_t)1 << 40; break;
        default: goto bad;
        }
        end++;
        if (*end == 'i' || *end == 'I') end++;
        if (*end == 'B' || *end == 'b') end++;
        if (*end) goto bad;
    }
    uint64_t r;
    if (v == 0 || __builtin_mul_overflow((uint64_t)v, mult, &r)) goto bad;
    *out = r;
    return IB_OK;
bad:
    return ib__error(IB_ERR_INVALID_ARGUMENT, "cache: %s='%s' is not a positive integer", var, s);
}

static ib_status mkdir_parents(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        ib_status st = ib__cache_mkdir(path, 0700);
        *p = '/';
        if (st != IB_OK) return st;
    }
    return ib__cache_mkdir(path, 0700);
}

ib_status ib__cache_open(const char *dir, const ib__cache_limits *limits, ib__cache **out) {
    ib__cache *c = ib__calloc(1, sizeof *c);
    if (!c) return ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory");
    c->lock_fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    ib_status st = IB_OK;
    if (dir && dir[0]) {
        c->dir = ib__strdup(dir);
        if (!c->dir) st = ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory");
    } else {
        st = ib__cache_default_dir(&c->dir);
    }
    if (st == IB_OK) {
        size_t len = strlen(c->dir);
        while (len > 1 && c->dir[len - 1] == '/') c->dir[--len] = '\0';
    }
    if (st == IB_OK)
        st = env_limit("INFERBOOSTER_CACHE_MAX_ENTRIES", IB_CACHE_DEFAULT_MAX_ENTRIES, &c->max_entries);
    if (st == IB_OK)
        st = env_limit("INFERBOOSTER_CACHE_MAX_BYTES", IB_CACHE_DEFAULT_MAX_BYTES, &c->max_bytes);
    if (st == IB_OK && limits) {
        if (limits->max_entries) c->max_entries = limits->max_entries;
        if (limits->max_bytes) c->max_bytes = limits->max_bytes;
        c->verify_hits = limits->verify_content_on_hit;
        c->verify_hit_max = limits->verify_on_hit_max_bytes;
    }
    if (st == IB_OK) {
        c->entries_dir = ib__cache_path("%s/entries", c->dir);
        c->tmp_dir = ib__cache_path("%s/tmp", c->dir);
        c->locks_dir = ib__cache_path("%s/locks", c->dir);
        c->uses_dir = ib__cache_path("%s/uses", c->dir);
        if (!c->entries_dir || !c->tmp_dir || !c->locks_dir || !c->uses_dir)
            st = IB_ERR_OUT_OF_MEMORY;
    }
    if (st == IB_OK && c->dir[0] == '/') st = mkdir_parents(c->dir);
    else if (st == IB_OK) st = ib__cache_mkdir(c->dir, 0700);
    if (st == IB_OK) st = ib__cache_mkdir(c->entries_dir, 0700);
    if (st == IB_OK) st = ib__cache_mkdir(c->tmp_dir, 0700);
    if (st == IB_OK) st = ib__cache_mkdir(c->locks_dir, 0700);
    if (st == IB_OK) st = ib__cache_mkdir(c->uses_dir, 0700);
    if (st == IB_OK) {
        char *lp = ib__cache_path("%s/lock", c->dir);
        if (!lp) st = IB_ERR_OUT_OF_MEMORY;
        else {
            c->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (c->lock_fd < 0)
                st = ib__error(IB_ERR_IO, "cache: cannot open '%s': %s", lp, strerror(errno));
            ib__free(lp);
        }
    }
    if (st != IB_OK) {
        ib__cache_close(c);
        return st;
    }
    *out = c;
    return IB_OK;
}

void ib__cache_close(ib__cache *c) {
    if (!c) return;
    if (c->lock_fd >= 0) close(c->lock_fd);
    pthread_mutex_destroy(&c->mu);
    ib__free(c->dir);
    ib__free(c->entries_dir);
    ib__free(c->tmp_dir);
    ib__free(c->locks_dir);
    ib__free(c->uses_dir);
    ib__free(c);
}

const char *ib__cache_dir(const ib__cache *c) { return c->dir; }

/* ---- entries ----------------------------------------------------------------------- */

const char *ib__cache_entry_path(const ib__cache_entry *e) { return e->path; }
const ib__cache_entry_info *ib__cache_entry_info_get(const ib__cache_entry *e) { return &e->info; }

void ib__cache_release(ib__cache_entry *e) {
    if (!e) return;
    if (e->pin_fd >= 0) close(e->pin_fd);
    ib__free(e->path);
    ib__free(e);
}

/* Under the cache lock: a hit pins and counts; a record whose files are missing or bad
 * is dropped (and its directory deleted unless another process still pins it). */
static ib_status lookup_locked(ib__cache *c, cache_index *idx, const char *key, bool count_miss,
                               ib__cache_entry **out) {
    *out = NULL;
    ib__cache_entry_info *rec = index_find(idx, key);
    if (rec) {
        char *path = ib__cache_path("%s/%s", c->entries_dir, key);
        if (!path) return IB_ERR_OUT_OF_MEMORY;
        int fd = -1;
        int rc = pin_lock(c, key, LOCK_SH, &fd);
        if (rc < 0) {
            ib__free(path);
            return IB_ERR_IO;
        }
        manifest m;
        if (rc == 0 && manifest_check(path, key, c->verify_hits ? UINT64_MAX : c->verify_hit_max, &m)) {
            manifest_free(&m);
            ib__cache_entry *e = ib__calloc(1, sizeof *e);
            if (!e) {
                close(fd);
                ib__free(path);
                return ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory");
            }
            rec->freq++;
            rec->last_used = now_seconds();
            idx->hits++;
            use_write(c, rec);
            e->info = *rec;
            e->path = path;
            e->pin_fd = fd;
            *out = e;
            return IB_OK;
        }
        /* Damaged: drop the record; delete the files if nobody else pins them. */
        if (rc == 0) close(fd);
        fd = -1;
        if (pin_lock(c, key, LOCK_EX, &fd) == 0) {
            remove_entry_dir(c, key);
            unlink_pin(c, key);
            close(fd);
        }
        ib__error_clear();
        index_remove(idx, key);
        ib__free(path);
    }
    if (count_miss) idx->misses++;
    return IB_OK;
}

static ib_status lookup(ib__cache *c, const char *key, bool count_miss, ib__cache_entry **out) {
    if (!c || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "cache lookup: NULL argument");
    if (!ib__cache_key_valid(key))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "cache lookup: '%s' is not a cache key",
                         key ? key : "(null)");
    IB_TRY(global_lock(c));
    cache_index idx;
    ib__cache_entry *e = NULL;
    ib_status st = index_load(c, &idx);
    size_t records = idx.n;
    if (st == IB_OK) st = lookup_locked(c, &idx, key, count_miss, &e);
    /* An uncounted miss that changed nothing leaves the index as it was; a plain hit
     * only moves counters. */
    bool changed = idx.rebuilt || idx.n != records;
    if (st == IB_OK && (e || count_miss || changed)) st = index_save_ex(c, &idx, changed);
    global_unlock(c);
    index_free(&idx);
    if (st != IB_OK) {
        ib__cache_release(e);
        return st;
    }
    *out = e;
    return IB_OK;
}

typedef struct victim {
    char key[IB_CACHE_KEY_HEX + 1];
    int fd;
} victim;

ib_status ib__cache_lookup(ib__cache *c, const char *key, ib__cache_entry **out) {
    return lookup(c, key, true, out);
}

ib_status ib__cache_find(ib__cache *c, const char *key, ib__cache_entry **out) {
    return lookup(c, key, false, out);
}

/* Picks LFU victims (lowest freq, then lowest seq) that nobody pins, removes their
 * records, and returns them with their exclusive pins held; the caller saves the index
 * before deleting their directories. */
static ib_status evict_select(ib__cache *c, cache_index *idx, const char *keep, victim **out,
                              size_t *n_out) {
    *out = NULL;
    *n_out = 0;
    size_t n_tried = 0;
    char (*tried)[IB_CACHE_KEY_HEX + 1] = NULL;
    victim *v = NULL;
    size_t nv = 0;
    ib_status st = IB_OK;
    while (idx->n > c->max_entries || index_bytes(idx) > c->max_bytes) {
        ib__cache_entry_info *best = NULL;
        for (size_t i = 0; i < idx->n; i++) {
            ib__cache_entry_info *r = &idx->recs[i];
            if (keep && strcmp(r->key, keep) == 0) continue;
            bool skip = false;
            for (size_t t = 0; t < n_tried && !skip; t++) skip = strcmp(tried[t], r->key) == 0;
            if (skip) continue;
            if (!best || r->freq < best->freq || (r->freq == best->freq && r->seq < best->seq))
                best = r;
        }
        if (!best) break; /* everything left is pinned or kept */
        int fd = -1;
        int rc = pin_lock(c, best->key, LOCK_EX, &fd);
        ib__error_clear();
        if (rc != 0) {
            void *p = ib__realloc(tried, (n_tried + 1) * sizeof *tried);
            if (!p) {
                st = ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory (eviction)");
                break;
            }
            tried = p;
            memcpy(tried[n_tried++], best->key, IB_CACHE_KEY_HEX + 1);
            continue;
        }
        victim *p = ib__realloc(v, (nv + 1) * sizeof *v);
        if (!p) {
            close(fd);
            st = ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory (eviction)");
            break;
        }
        v = p;
        memcpy(v[nv].key, best->key, IB_CACHE_KEY_HEX + 1);
        v[nv].fd = fd;
        nv++;
        index_remove(idx, best->key);
        idx->evictions++;
    }
    ib__free(tried);
    *out = v;
    *n_out = nv;
    return st;
}

static void victims_delete(ib__cache *c, victim *v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        remove_entry_dir(c, v[i].key);
        unlink_pin(c, v[i].key);
        close(v[i].fd);
    }
    ib__free(v);
}

/* Removes this key's build directories left by dead processes (caller holds the key's
 * build lock, so no live build of it exists). */
static void remove_stale_builds(ib__cache *c, const char *key) {
    DIR *d = opendir(c->tmp_dir);
    if (!d) return;
    char prefix[IB_CACHE_KEY_HEX + 4];
    snprintf(prefix, sizeof prefix, "b.%s.", key);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0) continue;
        char *p = ib__cache_path("%s/%s", c->tmp_dir, de->d_name);
        if (p) ib__cache_remove_tree(p);
        ib__free(p);
    }
    closedir(d);
    ib__error_clear();
}

ib_status ib__cache_insert(ib__cache *c, const char *key, const char *name, const char *target,
                           ib__cache_build_fn build_fn, void *ctx, ib__cache_entry **out,
                           bool *built) {
    if (!c || !build_fn || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "cache insert: NULL argument");
    if (!ib__cache_key_valid(key))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "cache insert: '%s' is not a cache key",
                         key ? key : "(null)");
    char clean_name[IB_CACHE_LABEL_MAX], clean_target[IB_CACHE_LABEL_MAX];
    ib__cache_sanitize(name, clean_name, sizeof clean_name);
    ib__cache_sanitize(target, clean_target, sizeof clean_target);

    if (built) *built = false;
    ib__cache_entry *e = NULL;
    IB_TRY(ib__cache_lookup(c, key, &e));
    if (e) {
        *out = e;
        return IB_OK;
    }

    /* One builder per key: the others wait here, then find the entry. */
    char *build_lock = ib__cache_path("%s/%s.build", c->locks_dir, key);
    if (!build_lock) return IB_ERR_OUT_OF_MEMORY;
    int build_fd = -1;
    if (ib__cache_lock_file(build_lock, LOCK_EX, &build_fd) != 0) {
        ib__free(build_lock);
        return IB_ERR_IO;
    }
    char *tmp = NULL;
    cache_index idx;
    memset(&idx, 0, sizeof idx);
    ib_status st = global_lock(c);
    if (st == IB_OK) {
        st = index_load(c, &idx);
        if (st == IB_OK) st = lookup_locked(c, &idx, key, false, &e);
        if (st == IB_OK && e) st = index_save(c, &idx);
        global_unlock(c);
        index_free(&idx);
    }
    if (st != IB_OK || e) goto done;

    remove_stale_builds(c, key);
    tmp = ib__cache_path("%s/b.%s.%ld.XXXXXX", c->tmp_dir, key, (long)getpid());
    if (!tmp) {
        st = IB_ERR_OUT_OF_MEMORY;
        goto done;
    }
    if (!mkdtemp(tmp)) {
        st = ib__error(IB_ERR_IO, "cache: cannot create a build directory in '%s': %s", c->tmp_dir,
                       strerror(errno));
        ib__free(tmp);
        tmp = NULL;
        goto done;
    }
    st = build_fn(ctx, tmp);
    uint64_t bytes = 0;
    if (st == IB_OK) st = manifest_write(tmp, key, clean_name, clean_target, &bytes);
    if (st == IB_OK) st = ib__cache_fsync_dir(tmp);
    if (st != IB_OK) goto done;

    victim *victims = NULL;
    size_t n_victims = 0;
    st = global_lock(c);
    if (st != IB_OK) goto done;
    st = index_load(c, &idx);
    char *dst = st == IB_OK ? ib__cache_path("%s/%s", c->entries_dir, key) : NULL;
    if (st == IB_OK && !dst) st = IB_ERR_OUT_OF_MEMORY;
    if (st == IB_OK) {
        /* A directory left without a record (crash after publishing, damaged entry). */
        struct stat sst;
        if (lstat(dst, &sst) == 0) {
            int fd = -1;
            if (pin_lock(c, key, LOCK_EX, &fd) == 0) {
                index_remove(&idx, key);
                remove_entry_dir(c, key);
                close(fd);
            } else {
                st = ib__error(IB_ERR_RUNTIME,
                               "cache: entry %s is damaged but still in use by another process",
                               key);
            }
        }
    }
    if (st == IB_OK && rename(tmp, dst) != 0)
        st = ib__error(IB_ERR_IO, "cache: cannot publish entry %s: %s", key, strerror(errno));
    if (st == IB_OK) {
        ib__free(tmp);
        tmp = NULL;
        st = ib__cache_fsync_dir(c->entries_dir);
    }
    if (st == IB_OK) {
        ib__cache_entry_info r;
        memset(&r, 0, sizeof r);
        memcpy(r.key, key, IB_CACHE_KEY_HEX + 1);
        memcpy(r.name, clean_name, sizeof r.name);
        memcpy(r.target, clean_target, sizeof r.target);
        r.freq = 1;
        r.seq = idx.next_seq++;
        r.bytes = bytes;
        r.created = r.last_used = now_seconds();
        index_remove(&idx, key);
        st = index_add(&idx, &r);
        if (st == IB_OK) {
            e = ib__calloc(1, sizeof *e);
            if (!e) st = ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory");
        }
        if (st == IB_OK) {
            e->info = r;
            e->path = dst;
            dst = NULL;
            e->pin_fd = -1;
            if (pin_lock(c, key, LOCK_SH, &e->pin_fd) != 0)
                st = ib__error(IB_ERR_IO, "cache: cannot pin new entry %s", key);
        }
        if (st == IB_OK) st = evict_select(c, &idx, key, &victims, &n_victims);
        if (st == IB_OK) use_write(c, &r);
        if (st == IB_OK) st = index_save(c, &idx);
        if (st == IB_OK) victims_delete(c, victims, n_victims);
        else {
            for (size_t i = 0; i < n_victims; i++) close(victims[i].fd);
            ib__free(victims);
        }
    }
    ib__free(dst);
    global_unlock(c);
    index_free(&idx);
    if (st == IB_OK && built) *built = true;

done:
    if (tmp) {
        ib__cache_remove_tree(tmp);
        ib__free(tmp);
    }
    /* Unlink before unlocking: waiters re-open and find the new entry. */
    unlink(build_lock);
    close(build_fd);
    ib__free(build_lock);
    if (st != IB_OK) {
        ib__cache_release(e);
        return st;
    }
    *out = e;
    return IB_OK;
}

/* ---- list, stats, evict, clear, verify --------------------------------------------- */

ib_status ib__cache_list(ib__cache *c, ib__cache_entry_info **out, size_t *n) {
    IB_TRY(global_lock(c));
    cache_index idx;
    ib_status st = index_load(c, &idx);
    if (st == IB_OK && idx.rebuilt) st = index_save(c, &idx);
    global_unlock(c);
    if (st != IB_OK) {
        index_free(&idx);
        return st;
    }
    *out = idx.recs; /* already in insertion order */
    *n = idx.n;
    if (!idx.recs) *out = ib__calloc(1, sizeof **out);
    return *out ? IB_OK : ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory");
}

ib_status ib__cache_stats_get(ib__cache *c, ib__cache_stats *out) {
    IB_TRY(global_lock(c));
    cache_index idx;
    ib_status st = index_load(c, &idx);
    if (st == IB_OK && idx.rebuilt) st = index_save(c, &idx);
    global_unlock(c);
    if (st == IB_OK) {
        memset(out, 0, sizeof *out);
        out->entries = idx.n;
        out->bytes = index_bytes(&idx);
        out->hits = idx.hits;
        out->misses = idx.misses;
        out->evictions = idx.evictions;
        out->max_entries = c->max_entries;
        out->max_bytes = c->max_bytes;
    }
    index_free(&idx);
    return st;
}

ib_status ib__cache_evict(ib__cache *c, const char *key) {
    if (!ib__cache_key_valid(key))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "cache evict: '%s' is not a cache key",
                         key ? key : "(null)");
    IB_TRY(global_lock(c));
    cache_index idx;
    ib_status st = index_load(c, &idx);
    int fd = -1;
    if (st == IB_OK && !index_find(&idx, key))
        st = ib__error(IB_ERR_INVALID_ARGUMENT, "cache evict: no entry %s", key);
    if (st == IB_OK) {
        int rc = pin_lock(c, key, LOCK_EX, &fd);
        if (rc == 1) st = ib__error(IB_ERR_RUNTIME, "cache evict: entry %s is in use", key);
        else if (rc < 0) st = IB_ERR_IO;
    }
    if (st == IB_OK) {
        index_remove(&idx, key);
        idx.evictions++;
        st = index_save(c, &idx);
        if (st == IB_OK) {
            remove_entry_dir(c, key);
            unlink_pin(c, key);
        }
    }
    if (fd >= 0) close(fd);
    global_unlock(c);
    index_free(&idx);
    return st;
}

ib_status ib__cache_clear(ib__cache *c, uint64_t *n_removed, uint64_t *n_busy) {
    IB_TRY(global_lock(c));
    cache_index idx;
    ib_status st = index_load(c, &idx);
    victim *v = NULL;
    size_t nv = 0;
    uint64_t busy = 0;
    for (size_t i = 0; st == IB_OK && i < idx.n;) {
        int fd = -1;
        int rc = pin_lock(c, idx.recs[i].key, LOCK_EX, &fd);
        ib__error_clear();
        if (rc != 0) {
            busy++;
            i++;
            continue;
        }
        victim *p = ib__realloc(v, (nv + 1) * sizeof *v);
        if (!p) {
            close(fd);
            st = ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory");
            break;
        }
        v = p;
        memcpy(v[nv].key, idx.recs[i].key, IB_CACHE_KEY_HEX + 1);
        v[nv++].fd = fd;
        index_remove(&idx, idx.recs[i].key);
    }
    if (st == IB_OK) st = index_save(c, &idx);
    if (st == IB_OK) victims_delete(c, v, nv);
    else {
        for (size_t i = 0; i < nv; i++) close(v[i].fd);
        ib__free(v);
    }
    if (st == IB_OK) {
        char *memo = ib__cache_path("%s/digests", c->dir);
        if (memo) ib__cache_remove_tree(memo);
        ib__free(memo);
        ib__error_clear();
    }
    global_unlock(c);
    index_free(&idx);
    if (st == IB_OK) {
        if (n_removed) *n_removed = nv;
        if (n_busy) *n_busy = busy;
    }
    return st;
}

/* tmp/: "d.*" are deletions (their deleter held the cache lock, which we hold now, so
 * they are dead); "b.<key>.*" are builds, dead when nobody holds the key's build lock. */
static void verify_tmp(ib__cache *c, ib__cache_verify_report *rep) {
    DIR *d = opendir(c->tmp_dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        char *p = ib__cache_path("%s/%s", c->tmp_dir, de->d_name);
        if (!p) continue;
        bool dead = true;
        if (strncmp(de->d_name, "b.", 2) == 0 && strlen(de->d_name) > 2 + IB_CACHE_KEY_HEX) {
            char key[IB_CACHE_KEY_HEX + 1];
            memcpy(key, de->d_name + 2, IB_CACHE_KEY_HEX);
            key[IB_CACHE_KEY_HEX] = '\0';
            char *lock = ib__cache_path("%s/%s.build", c->locks_dir, key);
            int fd = -1;
            if (lock && ib__cache_key_valid(key) &&
                ib__cache_lock_file(lock, LOCK_EX | LOCK_NB, &fd) == 0) {
                ib__cache_remove_tree(p);
                rep->temps_dropped++;
                unlink(lock);
                close(fd);
            }
            ib__free(lock);
            dead = false; /* handled above */
        }
        if (dead) {
            ib__cache_remove_tree(p);
            rep->temps_dropped++;
        }
        ib__free(p);
    }
    closedir(d);
    ib__error_clear();
}

ib_status ib__cache_verify(ib__cache *c, ib__cache_verify_report *out) {
    ib__cache_verify_report rep;
    memset(&rep, 0, sizeof rep);
    IB_TRY(global_lock(c));
    cache_index idx;
    ib_status st = index_load(c, &idx);
    rep.index_rebuilt = idx.rebuilt;
    for (size_t i = 0; st == IB_OK && i < idx.n;) {
        ib__cache_entry_info *r = &idx.recs[i];
        char *path = ib__cache_path("%s/%s", c->entries_dir, r->key);
        if (!path) {
            st = IB_ERR_OUT_OF_MEMORY;
            break;
        }
        struct stat sst;
        bool exists = lstat(path, &sst) == 0 && S_ISDIR(sst.st_mode);
        manifest m;
        bool good = exists && manifest_check(path, r->key, UINT64_MAX, &m);
        ib__free(path);
        if (good) {
            manifest_free(&m);
            r->bytes = m.bytes;
            rep.entries_ok++;
            i++;
            continue;
        }
        int fd = -1;
        if (pin_lock(c, r->key, LOCK_EX, &fd) != 0) {
            ib__error_clear();
            rep.busy_skipped++;
            i++;
            continue;
        }
        if (exists) {
            remove_entry_dir(c, r->key);
            rep.corrupt_dropped++;
        } else {
            rep.records_dropped++;
        }
        unlink_pin(c, r->key);
        close(fd);
        index_remove(&idx, r->key);
    }
    /* Directories without a record. */
    DIR *d = st == IB_OK ? opendir(c->entries_dir) : NULL;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
            if (ib__cache_key_valid(de->d_name) && index_find(&idx, de->d_name)) continue;
            int fd = -1;
            if (ib__cache_key_valid(de->d_name)) {
                if (pin_lock(c, de->d_name, LOCK_EX, &fd) != 0) {
                    ib__error_clear();
                    rep.busy_skipped++;
                    continue;
                }
                remove_entry_dir(c, de->d_name);
                unlink_pin(c, de->d_name);
                close(fd);
            } else {
                char *p = ib__cache_path("%s/%s", c->entries_dir, de->d_name);
                if (p) ib__cache_remove_tree(p);
                ib__free(p);
            }
            rep.orphans_dropped++;
        }
        closedir(d);
    }
    if (st == IB_OK) verify_tmp(c, &rep);
    /* Use records of keys that have no entry, and their temporaries (left by kills). */
    d = st == IB_OK ? opendir(c->uses_dir) : NULL;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.') continue;
            if (ib__cache_key_valid(de->d_name) && index_find(&idx, de->d_name)) continue;
            char *p = ib__cache_path("%s/%s", c->uses_dir, de->d_name);
            if (p) unlink(p);
            ib__free(p);
        }
        closedir(d);
    }
    /* Pin files of keys that have no entry (left by kills between steps). */
    d = st == IB_OK ? opendir(c->locks_dir) : NULL;
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            size_t len = strlen(de->d_name);
            if (len == IB_CACHE_KEY_HEX + 6 && strcmp(de->d_name + IB_CACHE_KEY_HEX, ".build") == 0) {
                /* Left by a builder killed before it could unlink it; a live builder
                 * holds it, so the non-blocking lock fails and it stays. */
                char *lp = ib__cache_path("%s/%s", c->locks_dir, de->d_name);
                int bfd = -1;
                if (lp && ib__cache_lock_file(lp, LOCK_EX | LOCK_NB, &bfd) == 0) {
                    unlink(lp);
                    close(bfd);
                }
                ib__free(lp);
                continue;
            }
            if (len != IB_CACHE_KEY_HEX + 4 || strcmp(de->d_name + IB_CACHE_KEY_HEX, ".pin") != 0)
                continue;
            char key[IB_CACHE_KEY_HEX + 1];
            memcpy(key, de->d_name, IB_CACHE_KEY_HEX);
            key[IB_CACHE_KEY_HEX] = '\0';
            if (index_find(&idx, key)) continue;
            int fd = -1;
            if (pin_lock(c, key, LOCK_EX, &fd) == 0) {
                unlink_pin(c, key);
                close(fd);
            }
            ib__error_clear();
        }
        closedir(d);
    }
    ib__error_clear();
    if (st == IB_OK) st = index_save(c, &idx);
    global_unlock(c);
    index_free(&idx);
    if (st == IB_OK && out) *out = rep;
    return st;
}
