/* Cache keys: SHA-256 over the model's bytes (with external data), the target, the
 * compiler version, the compile options and the tuning records' digest; and the
 * sanitised labels ("name#create_time") entries are listed under. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cache/cache_internal.h"

bool ib__cache_key_valid(const char *key) {
    if (!key) return false;
    size_t i = 0;
    for (; key[i]; i++) {
        char c = key[i];
        if (i >= IB_CACHE_KEY_HEX || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return i == IB_CACHE_KEY_HEX;
}

void ib__cache_sanitize(const char *in, char *out, size_t cap) {
    if (cap == 0) return;
    size_t j = 0;
    for (size_t i = 0; in && in[i] && j + 1 < cap; i++) {
        char c = in[i];
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '+' || c == '-' || c == ',' || c == ':' ||
                    c == '=' || c == '#';
        out[j++] = keep ? c : '_';
    }
    out[j] = '\0';
}

/* "Create time": the file's birth time where the filesystem records it (statx), else
 * its ctime. */
ib_status ib__cache_model_label(const char *model_path, char out[IB_CACHE_LABEL_MAX]) {
    struct stat st;
    if (!model_path || stat(model_path, &st) != 0)
        return ib__error(IB_ERR_IO, "cache: cannot stat model '%s': %s",
                         model_path ? model_path : "(null)", strerror(errno));
    long long when = (long long)st.st_ctime;
    struct statx stx;
    if (statx(AT_FDCWD, model_path, 0, STATX_BTIME, &stx) == 0 && (stx.stx_mask & STATX_BTIME))
        when = (long long)stx.stx_btime.tv_sec;
    const char *base = strrchr(model_path, '/');
    base = base ? base + 1 : model_path;
    char name[IB_CACHE_LABEL_MAX - 24];
    /* '#' separates the name from the time, so it may not appear in the name. */
    ib__cache_sanitize(base, name, sizeof name);
    for (char *p = name; *p; p++)
        if (*p == '#') *p = '_';
    if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) strcpy(name, "model");
    snprintf(out, IB_CACHE_LABEL_MAX, "%s#%lld", name, when);
    return IB_OK;
}

/* Each field is tag, 8-byte length, bytes: no concatenation of two inputs can equal
 * another's. */
static bool put_header(EVP_MD_CTX *md, char tag, uint64_t n) {
    unsigned char hdr[9];
    hdr[0] = (unsigned char)tag;
    for (int i = 0; i < 8; i++) hdr[1 + i] = (unsigned char)(n >> (8 * i));
    return EVP_DigestUpdate(md, hdr, sizeof hdr);
}

static bool put_field(EVP_MD_CTX *md, char tag, const void *data, uint64_t n) {
    return put_header(md, tag, n) && (n == 0 || EVP_DigestUpdate(md, data, n));
}

static bool put_string(EVP_MD_CTX *md, char tag, const char *s) {
    if (!s) s = "";
    return put_field(md, tag, s, strlen(s));
}

/* Content digests of large files are remembered under <cache>/digests, keyed by the
 * file's identity (real path, device, inode, size, mtime and ctime in ns), so a hit on
 * an unchanged 100 MB model does not rehash it. Any write to the file moves its ctime;
 * files changed in the last 2 s are not remembered (a write in the same clock tick
 * could keep the times), as git does for its index. */
#define MEMO_MIN_BYTES ((int64_t)1 << 20)

static ib_status file_digest(const char *path, ib__cache *memo, char hex[IB_CACHE_KEY_HEX + 1]) {
    char real[PATH_MAX];
    if (!realpath(path, real))
        return ib__error(IB_ERR_IO, "cache key: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (stat(real, &st) != 0 || !S_ISREG(st.st_mode))
        return ib__error(IB_ERR_IO, "cache key: '%s' is not a regular file", path);
    char *identity = NULL, *memo_dir = NULL, *memo_path = NULL;
    char id_hex[IB_CACHE_KEY_HEX + 1];
    bool use_memo = memo && st.st_size >= MEMO_MIN_BYTES &&
                    (int64_t)time(NULL) - (int64_t)st.st_ctim.tv_sec > 2;
    if (use_memo) {
        identity = ib__cache_path("%s\n%llu %llu %lld %lld.%09ld %lld.%09ld\n", real,
                                  (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
                                  (long long)st.st_size, (long long)st.st_mtim.tv_sec,
                                  st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec,
                                  st.st_ctim.tv_nsec);
        memo_dir = ib__cache_path("%s/digests", ib__cache_dir(memo));
        if (identity && memo_dir && ib__cache_sha256_hex(identity, strlen(identity), id_hex) == IB_OK)
            memo_path = ib__cache_path("%s/%s", memo_dir, id_hex);
        use_memo = memo_path != NULL;
        if (use_memo) {
            char *buf = NULL;
            size_t n = 0;
            size_t id_len = strlen(identity);
            if (ib__cache_read_file(memo_path, 2 * PATH_MAX, &buf, &n, NULL) == IB_OK &&
                n == id_len + IB_CACHE_KEY_HEX + 1 && memcmp(buf, identity, id_len) == 0 &&
                buf[n - 1] == '\n') {
                buf[n - 1] = '\0';
                if (ib__cache_key_valid(buf + id_len)) {
                    memcpy(hex, buf + id_len, IB_CACHE_KEY_HEX + 1);
                    ib__free(buf);
                    ib__free(identity);
                    ib__free(memo_dir);
                    ib__free(memo_path);
                    return IB_OK;
                }
            }
            ib__free(buf);
            ib__error_clear();
        }
    }
    uint64_t size = 0;
    ib_status status = ib__cache_sha256_file(real, hex, &size);
    if (status == IB_OK && size != (uint64_t)st.st_size) use_memo = false; /* changed meanwhile */
    if (status == IB_OK && use_memo && ib__cache_mkdir(memo_dir, 0700) == IB_OK) {
        char *text = ib__cache_path("%s%s\n", identity, hex);
        char tmp_name[IB_CACHE_KEY_HEX + 32];
        snprintf(tmp_name, sizeof tmp_name, "%s.%ld.tmp", id_hex, (long)getpid());
        /* Best effort: a memo that cannot be written only costs a rehash next time. */
        if (text) ib__cache_write_atomic(memo_dir, id_hex, tmp_name, text, strlen(text));
        ib__free(text);
        ib__error_clear();
    }
    ib__free(identity);
    ib__free(memo_dir);
    ib__free(memo_path);
    return status;
}

ib_status ib__cache_file_digest(const char *path, ib__cache *memo, char out[IB_CACHE_KEY_HEX + 1]) {
    if (!path) return ib__error(IB_ERR_INVALID_ARGUMENT, "cache: no file to digest");
    return file_digest(path, memo, out);
}

static ib_status put_file(EVP_MD_CTX *md, char tag, const char *path, ib__cache *memo) {
    char hex[IB_CACHE_KEY_HEX + 1];
    IB_TRY(file_digest(path, memo, hex));
    if (!put_field(md, tag, hex, IB_CACHE_KEY_HEX))
        return ib__error(IB_ERR_INTERNAL, "cache key: SHA-256 update failed");
    return IB_OK;
}

ib_status ib__cache_key(const ib__cache_key_input *in, char out[IB_CACHE_KEY_HEX + 1]) {
    if (!in || (!in->model_path && !ib__cache_key_valid(in->model_digest)))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "cache key: no model path or digest");
    if (in->n_data_paths > 0 && !in->data_paths)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "cache key: data_paths is NULL");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "cache key: cannot start SHA-256");
    }
    ib_status st = IB_OK;
    if (!put_string(md, 'V', "inferbooster-cache-key-2")) st = IB_ERR_INTERNAL;
    if (st == IB_OK && in->model_path) st = put_file(md, 'M', in->model_path, in->digest_memo);
    else if (st == IB_OK && !put_field(md, 'M', in->model_digest, IB_CACHE_KEY_HEX))
        st = ib__error(IB_ERR_INTERNAL, "cache key: SHA-256 update failed");
    for (size_t i = 0; st == IB_OK && i < in->n_data_paths; i++) {
        if (!in->data_paths[i]) {
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "cache key: data path %zu is NULL", i);
            break;
        }
        st = put_file(md, 'D', in->data_paths[i], in->digest_memo);
    }
    if (st == IB_OK &&
        !(put_string(md, 'T', in->target_name) && put_string(md, 'F', in->target_features) &&
          put_string(md, 'C', in->compiler_version) && put_string(md, 'O', in->options) &&
          put_string(md, 'R', in->tuning_digest)))
        st = ib__error(IB_ERR_INTERNAL, "cache key: SHA-256 update failed");
    unsigned char digest[32];
    unsigned int len = 0;
    if (st == IB_OK && (!EVP_DigestFinal_ex(md, digest, &len) || len != 32))
        st = ib__error(IB_ERR_INTERNAL, "cache key: SHA-256 final failed");
    EVP_MD_CTX_free(md);
    if (st == IB_OK) ib__cache_hex(digest, 32, out);
    return st;
}
