/* Model repository: scans ROOT/<model>/<version>/model.onnx, reads config.pbtxt, builds
 * a session and a scheduler per version, and swaps versions in and out under a lock with
 * reference counts so in-flight requests keep the version they started on. */
#include "server/repository.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "server/optimizer.h"
#include "server/pbtxt.h"

#define MAX_MODELS 4096

typedef struct model_entry {
    char name[IB__CONFIG_NAME_MAX];
    const char *state; /* static strings */
    char reason[512];
    ib__served_model *versions; /* newest first */
    uint64_t fingerprint;        /* of the files the last load attempt read (poll mode) */
    struct model_entry *next;
} model_entry;

struct ib__repository {
    char *root;
    ib__repo_options opts;
    pthread_mutex_t lock;      /* entries, refs */
    pthread_mutex_t load_lock; /* one load/unload at a time */
    model_entry *entries;
    /* Versions dropped while their optimizer was compiling, freed by that thread. */
    pthread_mutex_t orphan_lock;
    pthread_cond_t orphan_gone;
    int orphans;
};

bool ib__repo_name_valid(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= IB__CONFIG_NAME_MAX || name[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              c == '.'))
            return false;
    }
    return true;
}

static bool parse_version(const char *s, int64_t *out) {
    size_t n = strlen(s);
    if (n == 0 || n > 18) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < 1) return false;
    *out = v;
    return true;
}

static void served_free(ib__served_model *m) {
    ib__sched_destroy(m->sched);
    ib_session_destroy(m->session);
    ib_model_destroy(m->model);
    ib__free(m);
}

/* m->orphaned: the optimizer thread of an abandoned version frees it when it ends. */
static void orphan_free(ib__served_model *m) {
    ib__repository *r = m->owner;
    served_free(m);
    pthread_mutex_lock(&r->orphan_lock);
    r->orphans--;
    pthread_cond_broadcast(&r->orphan_gone);
    pthread_mutex_unlock(&r->orphan_lock);
}

static void served_destroy(ib__served_model *m) {
    if (!m) return;
    ib__repository *r = m->owner;
    /* Counted before the hand-off, so the thread's decrement can never come first. */
    pthread_mutex_lock(&r->orphan_lock);
    r->orphans++;
    pthread_mutex_unlock(&r->orphan_lock);
    if (ib__optimizer_abandon(m)) return;
    pthread_mutex_lock(&r->orphan_lock);
    r->orphans--;
    pthread_mutex_unlock(&r->orphan_lock);
    served_free(m);
}

ib_status ib__repo_create(const char *root, const ib__repo_options *opts, ib__repository **out) {
    struct stat st;
    if (!root || stat(root, &st) != 0 || !S_ISDIR(st.st_mode))
        return ib__error(IB_ERR_IO, "model repository '%s' is not a readable directory", root ? root : "(null)");
    ib__repository *r = ib__calloc(1, sizeof *r);
    if (!r) return ib__error(IB_ERR_OUT_OF_MEMORY, "repository: out of memory");
    r->root = ib__strdup(root);
    if (!r->root) {
        ib__free(r);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "repository: out of memory");
    }
    if (opts) r->opts = *opts;
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->load_lock, NULL);
    pthread_mutex_init(&r->orphan_lock, NULL);
    pthread_cond_init(&r->orphan_gone, NULL);
    *out = r;
    return IB_OK;
}

void ib__repo_destroy(ib__repository *r) {
    if (!r) return;
    for (model_entry *e = r->entries, *next; e; e = next) {
        next = e->next;
        for (ib__served_model *m = e->versions, *mn; m; m = mn) {
            mn = m->next;
            served_destroy(m);
        }
        ib__free(e);
    }
    /* Compiles cannot be interrupted: wait for abandoned versions' threads to free them. */
    pthread_mutex_lock(&r->orphan_lock);
    while (r->orphans > 0) pthread_cond_wait(&r->orphan_gone, &r->orphan_lock);
    pthread_mutex_unlock(&r->orphan_lock);
    pthread_mutex_destroy(&r->orphan_lock);
    pthread_cond_destroy(&r->orphan_gone);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->load_lock);
    ib__free(r->root);
    ib__free(r);
}

static model_entry *find_entry(ib__repository *r, const char *name) {
    for (model_entry *e = r->entries; e; e = e->next)
        if (strcmp(e->name, name) == 0) return e;
    return NULL;
}

static model_entry *get_entry(ib__repository *r, const char *name) {
    model_entry *e = find_entry(r, name);
    if (e) return e;
    e = ib__calloc(1, sizeof *e);
    if (!e) return NULL;
    snprintf(e->name, sizeof e->name, "%s", name);
    e->state = "UNAVAILABLE";
    e->next = r->entries;
    r->entries = e;
    return e;
}

/* Reads a small file whole; the size is bounded so a hostile config cannot exhaust memory. */
static ib_status read_small_file(const char *path, size_t limit, char **out, size_t *out_len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return ib__error(IB_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ib__error(IB_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > limit) {
        close(fd);
        return ib__error(IB_ERR_INVALID_ARGUMENT, "%s: %lld bytes, more than the %zu allowed", path,
                         (long long)st.st_size, limit);
    }
    size_t n = (size_t)st.st_size;
    char *buf = ib__malloc(n + 1);
    if (!buf) {
        close(fd);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(fd);
    buf[got] = 0;
    *out = buf;
    *out_len = got;
    return IB_OK;
}

static int cmp_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Version directories holding a model.onnx, newest first, filtered by the policy. */
static ib_status list_versions(const char *dir, const ib__model_config *cfg, int64_t *out, size_t *n_out) {
    DIR *d = opendir(dir);
    if (!d) return ib__error(IB_ERR_IO, "model directory '%s': %s", dir, strerror(errno));
    int64_t found[IB__CONFIG_MAX_VERSIONS * 4];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t v;
        if (!parse_version(de->d_name, &v)) continue;
        char path[4096];
        struct stat st;
        if (snprintf(path, sizeof path, "%s/%s/model.onnx", dir, de->d_name) >= (int)sizeof path) continue;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        if (n < sizeof found / sizeof found[0]) found[n++] = v;
    }
    closedir(d);
    qsort(found, n, sizeof found[0], cmp_desc);
    size_t k = 0;
    for (size_t i = 0; i < n && k < IB__CONFIG_MAX_VERSIONS; i++) {
        bool keep = false;
        if (cfg->policy == IB__VERSIONS_ALL) keep = true;
        else if (cfg->policy == IB__VERSIONS_LATEST) keep = (int64_t)i < cfg->latest_n;
        else
            for (size_t j = 0; j < cfg->n_versions; j++) keep |= cfg->versions[j] == found[i];
        if (keep) out[k++] = found[i];
    }
    if (k == 0) return ib__error(IB_ERR_IO, "model directory '%s': no version directory with a model.onnx matches the version policy", dir);
    *n_out = k;
    return IB_OK;
}

static uint64_t fnv_mix(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t stat_mix(uint64_t h, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return fnv_mix(h, "-", 1);
    int64_t v[4] = {(int64_t)st.st_size, (int64_t)st.st_mtim.tv_sec, (int64_t)st.st_mtim.tv_nsec, (int64_t)st.st_ino};
    return fnv_mix(h, v, sizeof v);
}

/* What poll mode compares: config.pbtxt and each version's model.onnx (size, mtime,
 * inode), in version order. 0 when the directory is gone. */
static uint64_t model_fingerprint(const char *root, const char *name) {
    char dir[4096], path[4200];
    if (snprintf(dir, sizeof dir, "%s/%s", root, name) >= (int)sizeof dir) return 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int64_t vs[IB__CONFIG_MAX_VERSIONS * 4];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (n < sizeof vs / sizeof vs[0] && parse_version(de->d_name, &vs[n])) n++;
    closedir(d);
    qsort(vs, n, sizeof vs[0], cmp_desc);
    uint64_t h = 1469598103934665603ull;
    snprintf(path, sizeof path, "%s/config.pbtxt", dir);
    h = stat_mix(h, path);
    for (size_t i = 0; i < n; i++) {
        h = fnv_mix(h, &vs[i], sizeof vs[i]);
        snprintf(path, sizeof path, "%s/%lld/model.onnx", dir, (long long)vs[i]);
        h = stat_mix(h, path);
    }
    return h ? h : 1;
}

static ib_status load_version(ib__repository *r, const char *name, const ib__model_config *base, int64_t version,
                              ib__served_model **out) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s/%lld/model.onnx", r->root, name, (long long)version) >= (int)sizeof path)
        return ib__error(IB_ERR_IO, "model '%s': path too long", name);
    ib__served_model *m = ib__calloc(1, sizeof *m);
    if (!m) return ib__error(IB_ERR_OUT_OF_MEMORY, "model '%s': out of memory", name);
    snprintf(m->name, sizeof m->name, "%s", name);
    m->version = version;
    m->owner = r;
    m->orphaned = orphan_free;
    m->cfg = *base;
    ib_status st = ib_model_load_file(path, &m->model);
    if (st == IB_OK) st = ib__model_config_complete(&m->cfg, m->model);
    ib__sched_config *sc = &m->sched_cfg;
    sc->max_batch_size = m->cfg.max_batch_size;
    sc->dynamic_batching = m->cfg.dynamic_batching;
    sc->n_preferred = m->cfg.n_preferred;
    memcpy(sc->preferred_batch_size, m->cfg.preferred_batch_size, sizeof sc->preferred_batch_size);
    sc->max_queue_delay_us = m->cfg.max_queue_delay_us;
    sc->max_queue_size = m->cfg.max_queue_size;
    sc->instances = (int)m->cfg.instance_count;
    sc->pad_batches = !r->opts.use_reference; /* the reference executor gains nothing from it */
    /* The optimised session's options; unless --reference or blocking, the version goes
     * live on the reference executor and this one is built in the background. */
    ib_session_options opt;
    ib_session_options_init(&opt);
    opt.num_threads = r->opts.session_threads;
    opt.use_reference = r->opts.use_reference ? 1 : r->opts.compile_all ? -1 : 0;
    bool background = !r->opts.use_reference && !r->opts.blocking;
    if (st == IB_OK) {
        ib_session_options first = opt;
        if (background) first.use_reference = 1;
        st = ib_session_create(m->model, &first, &m->session);
    }
    if (st == IB_OK && !background && !r->opts.use_reference) {
        uint64_t t0 = ib__now_ns();
        st = ib__optimizer_warm_up(m, m->session);
        atomic_store(&m->compile_us, (ib__now_ns() - t0) / 1000u);
        ib__optimizer_note_cache(m, m->session);
    }
    if (st == IB_OK) {
        atomic_store(&m->executor, ib_session_executor(m->session));
        st = ib__sched_create(m->session, sc, &m->sched);
    }
    if (st == IB_OK && background) st = ib__optimizer_start(m, &opt);
    if (st != IB_OK) {
        ib__error_prefix(st, "model '%s' version %lld: ", name, (long long)version);
        served_destroy(m);
        return st;
    }
    *out = m;
    return IB_OK;
}

static ib_status build_versions(ib__repository *r, const char *name, ib__served_model **out) {
    char dir[4096], cfgpath[4200];
    if (snprintf(dir, sizeof dir, "%s/%s", r->root, name) >= (int)sizeof dir)
        return ib__error(IB_ERR_IO, "model '%s': path too long", name);
    ib__model_config cfg;
    ib__model_config_defaults(&cfg, name);
    snprintf(cfgpath, sizeof cfgpath, "%s/config.pbtxt", dir);
    struct stat st;
    if (stat(cfgpath, &st) == 0) {
        char *text = NULL;
        size_t len = 0;
        IB_TRY(read_small_file(cfgpath, IB__PBTXT_MAX_BYTES, &text, &len));
        ib_status s = ib__model_config_parse(text, len, &cfg);
        ib__free(text);
        if (s != IB_OK) return ib__error_prefix(s, "model '%s': ", name);
    }
    int64_t versions[IB__CONFIG_MAX_VERSIONS];
    size_t nv = 0;
    IB_TRY(list_versions(dir, &cfg, versions, &nv));
    ib__served_model *head = NULL, **tail = &head;
    for (size_t i = 0; i < nv; i++) {
        ib__served_model *m = NULL;
        ib_status s = load_version(r, name, &cfg, versions[i], &m);
        if (s != IB_OK) {
            for (ib__served_model *x = head, *nx; x; x = nx) {
                nx = x->next;
                served_destroy(x);
            }
            return s;
        }
        *tail = m;
        tail = &m->next;
    }
    *out = head;
    return IB_OK;
}

/* Retires a list of versions: each is destroyed now or by its last holder. */
static void retire_locked(ib__served_model *list, ib__served_model **destroy_now) {
    for (ib__served_model *m = list, *next; m; m = next) {
        next = m->next;
        m->retired = true;
        if (m->refs == 0) {
            m->next = *destroy_now;
            *destroy_now = m;
        } else {
            m->next = NULL;
        }
    }
}

static void destroy_list(ib__served_model *list) {
    for (ib__served_model *m = list, *next; m; m = next) {
        next = m->next;
        served_destroy(m);
    }
}

ib_status ib__repo_load(ib__repository *r, const char *name) {
    if (!ib__repo_name_valid(name))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model name '%.64s' is not a valid directory name", name ? name : "");
    char dir[4096];
    struct stat sb;
    if (snprintf(dir, sizeof dir, "%s/%s", r->root, name) >= (int)sizeof dir || stat(dir, &sb) != 0 ||
        !S_ISDIR(sb.st_mode))
        return ib__error(IB_ERR_IO, "model '%s' is not in the repository", name);
    pthread_mutex_lock(&r->load_lock);
    pthread_mutex_lock(&r->lock);
    model_entry *e = get_entry(r, name);
    if (e && !e->versions) e->state = "LOADING";
    pthread_mutex_unlock(&r->lock);
    if (!e) {
        pthread_mutex_unlock(&r->load_lock);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "repository: out of memory");
    }
    ib__served_model *fresh = NULL;
    uint64_t fingerprint = model_fingerprint(r->root, name);
    ib_status st = build_versions(r, name, &fresh);
    ib__served_model *old = NULL;
    pthread_mutex_lock(&r->lock);
    e->fingerprint = fingerprint;
    if (st == IB_OK) {
        retire_locked(e->versions, &old);
        e->versions = fresh;
        e->state = "READY";
        e->reason[0] = 0;
    } else {
        snprintf(e->reason, sizeof e->reason, "%s", ib_last_error());
        if (!e->versions) e->state = "UNAVAILABLE";
    }
    pthread_mutex_unlock(&r->lock);
    destroy_list(old);
    pthread_mutex_unlock(&r->load_lock);
    return st;
}

static ib_status make_dir(const char *path) {
    if (mkdir(path, 0755) == 0 || errno == EEXIST) {
        struct stat sb;
        if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return IB_OK;
    }
    return ib__error(IB_ERR_IO, "cannot make the folder '%s'", path);
}

/* True when the file at `path` holds exactly `len` bytes equal to `data`. */
static bool same_file_bytes(const char *path, const void *data, size_t len) {
    char *have = NULL;
    size_t n = 0;
    if (read_small_file(path, len + 1, &have, &n) != IB_OK) {
        ib__error_clear();
        return false;
    }
    bool same = n == len && memcmp(have, data, len) == 0;
    ib__free(have);
    return same;
}

void ib__repo_drop_model_file(ib__repository *r, const char *name, int64_t version) {
    char path[4200];
    if (!ib__repo_name_valid(name)) return;
    snprintf(path, sizeof path, "%s/%s/%lld/model.onnx", r->root, name, (long long)version);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s/%lld", r->root, name, (long long)version);
    rmdir(path); /* only when empty */
    snprintf(path, sizeof path, "%s/%s", r->root, name);
    rmdir(path);
}

ib_status ib__repo_put_model_file(ib__repository *r, const char *name, int64_t version,
                                  const void *data, size_t len, bool *created) {
    *created = false;
    if (!ib__repo_name_valid(name))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model name '%.64s' is not a valid directory name", name ? name : "");
    if (version < 1 || version > INT32_MAX)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "version %lld is out of range", (long long)version);
    char dir[4096], tmp[4200], dst[4200];
    if (snprintf(dir, sizeof dir, "%s/%s", r->root, name) >= (int)sizeof dir)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model path too long");
    IB_TRY(make_dir(dir));
    size_t n = strlen(dir);
    snprintf(dir + n, sizeof dir - n, "/%lld", (long long)version);
    IB_TRY(make_dir(dir));
    snprintf(tmp, sizeof tmp, "%s/.upload-XXXXXX", dir);
    snprintf(dst, sizeof dst, "%s/model.onnx", dir);
    struct stat sb;
    if (lstat(dst, &sb) == 0) {
        if (S_ISREG(sb.st_mode) && (size_t)sb.st_size == len && same_file_bytes(dst, data, len))
            return IB_OK;
        return ib__error(IB_ERR_INVALID_ARGUMENT, "version %lld of '%s' is already in the repository "
                         "with other contents (upload under a new version or name)", (long long)version, name);
    }
    int fd = mkstemp(tmp);
    if (fd < 0) return ib__error(IB_ERR_IO, "cannot write into '%s': %s", dir, strerror(errno));
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        done += (size_t)w;
    }
    bool ok = done == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, dst) != 0) {
        int e = errno;
        unlink(tmp);
        return ib__error(IB_ERR_IO, "cannot write '%s': %s", dst, strerror(e));
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    *created = true;
    return IB_OK;
}

ib_status ib__repo_unload(ib__repository *r, const char *name) {
    if (!ib__repo_name_valid(name))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model name '%.64s' is not a valid directory name", name ? name : "");
    pthread_mutex_lock(&r->load_lock);
    pthread_mutex_lock(&r->lock);
    model_entry *e = find_entry(r, name);
    ib__served_model *old = NULL;
    ib_status st = IB_OK;
    if (!e || !e->versions) {
        st = ib__error(IB_ERR_INVALID_ARGUMENT, "model '%s' is not loaded", name);
    } else {
        retire_locked(e->versions, &old);
        e->versions = NULL;
        e->state = "UNAVAILABLE";
        snprintf(e->reason, sizeof e->reason, "unloaded");
    }
    pthread_mutex_unlock(&r->lock);
    destroy_list(old);
    pthread_mutex_unlock(&r->load_lock);
    return st;
}

int ib__repo_load_all(ib__repository *r) {
    DIR *d = opendir(r->root);
    if (!d) return 1;
    char *names[MAX_MODELS];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < MAX_MODELS) {
        if (!ib__repo_name_valid(de->d_name)) continue;
        char dir[4096];
        struct stat sb;
        if (snprintf(dir, sizeof dir, "%s/%s", r->root, de->d_name) >= (int)sizeof dir) continue;
        if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) continue;
        names[n] = ib__strdup(de->d_name);
        if (names[n]) n++;
    }
    closedir(d);
    int failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (ib__repo_load(r, names[i]) != IB_OK) {
            fprintf(stderr, "inferbooster serve: failed to load '%s': %s\n", names[i], ib_last_error());
            failed++;
        }
        ib__free(names[i]);
    }
    return failed;
}

ib__served_model *ib__repo_acquire(ib__repository *r, const char *name, int64_t version) {
    pthread_mutex_lock(&r->lock);
    model_entry *e = find_entry(r, name);
    ib__served_model *m = e ? e->versions : NULL;
    if (version > 0)
        while (m && m->version != version) m = m->next;
    if (m) m->refs++;
    pthread_mutex_unlock(&r->lock);
    return m;
}

void ib__repo_release(ib__repository *r, ib__served_model *m) {
    if (!m) return;
    pthread_mutex_lock(&r->lock);
    bool last = --m->refs == 0 && m->retired;
    pthread_mutex_unlock(&r->lock);
    if (last) served_destroy(m);
}

void ib__repo_index(ib__repository *r, ib__repo_index_fn fn, void *user) {
    /* Directories not yet seen are listed as UNAVAILABLE, as Triton's index does. */
    DIR *d = opendir(r->root);
    if (d) {
        struct dirent *de;
        size_t n = 0;
        while ((de = readdir(d)) != NULL && n < MAX_MODELS) {
            if (!ib__repo_name_valid(de->d_name)) continue;
            char dir[4096];
            struct stat sb;
            if (snprintf(dir, sizeof dir, "%s/%s", r->root, de->d_name) >= (int)sizeof dir) continue;
            if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) continue;
            pthread_mutex_lock(&r->lock);
            bool known = find_entry(r, de->d_name) != NULL;
            pthread_mutex_unlock(&r->lock);
            if (!known) fn(user, de->d_name, 0, "UNAVAILABLE", "");
            n++;
        }
        closedir(d);
    }
    pthread_mutex_lock(&r->lock);
    for (model_entry *e = r->entries; e; e = e->next) {
        if (!e->versions) fn(user, e->name, 0, e->state, e->reason);
        for (ib__served_model *m = e->versions; m; m = m->next) fn(user, e->name, m->version, "READY", "");
    }
    pthread_mutex_unlock(&r->lock);
}

void ib__repo_foreach_live(ib__repository *r, ib__repo_model_fn fn, void *user) {
    pthread_mutex_lock(&r->lock);
    for (model_entry *e = r->entries; e; e = e->next)
        for (ib__served_model *m = e->versions; m; m = m->next) fn(user, m);
    pthread_mutex_unlock(&r->lock);
}

size_t ib__repo_versions(ib__repository *r, const char *name, int64_t *out, size_t cap) {
    size_t n = 0;
    pthread_mutex_lock(&r->lock);
    model_entry *e = find_entry(r, name);
    for (ib__served_model *m = e ? e->versions : NULL; m && n < cap; m = m->next) out[n++] = m->version;
    pthread_mutex_unlock(&r->lock);
    return n;
}

int ib__repo_poll(ib__repository *r) {
    int changes = 0;
    DIR *d = opendir(r->root);
    if (d) {
        struct dirent *de;
        size_t n = 0;
        while ((de = readdir(d)) != NULL && n++ < MAX_MODELS) {
            if (!ib__repo_name_valid(de->d_name)) continue;
            char name[IB__CONFIG_NAME_MAX];
            memcpy(name, de->d_name, strlen(de->d_name) + 1); /* valid names are shorter */
            uint64_t fp = model_fingerprint(r->root, name);
            if (!fp) continue;
            pthread_mutex_lock(&r->lock);
            model_entry *e = find_entry(r, name);
            bool changed = !e || e->fingerprint != fp;
            pthread_mutex_unlock(&r->lock);
            if (!changed) continue;
            changes++;
            if (ib__repo_load(r, name) != IB_OK)
                fprintf(stderr, "inferbooster serve: poll: failed to load '%s': %s\n", name, ib_last_error());
            else
                fprintf(stderr, "inferbooster serve: poll: loaded '%s'\n", name);
        }
        closedir(d);
    }
    /* Models whose directory went away are unloaded. */
    for (;;) {
        char gone[IB__CONFIG_NAME_MAX] = "";
        pthread_mutex_lock(&r->lock);
        for (model_entry *e = r->entries; e && !gone[0]; e = e->next)
            if (e->versions && model_fingerprint(r->root, e->name) == 0) snprintf(gone, sizeof gone, "%s", e->name);
        pthread_mutex_unlock(&r->lock);
        if (!gone[0]) break;
        ib__repo_unload(r, gone);
        fprintf(stderr, "inferbooster serve: poll: unloaded '%s' (directory removed)\n", gone);
        changes++;
    }
    return changes;
}
