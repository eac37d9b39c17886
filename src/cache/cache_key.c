/* Cache keys: SHA-256 over the model's bytes (with external data), the target, the
 * compiler version, the compile options and the tuning records' digest; and the
 * sanitised labels ("name#create_time") entries are listed under. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
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

ib_status ib__cache_model_label(const char *model_path, char out[IB_CACHE_LABEL_MAX]) {
    struct stat st;
    if (!model_path || stat(model_path, &st) != 0)
        return ib__error(IB_ERR_IO, "cache: cannot stat model '%s': %s",
                         model_path ? model_path : "(null)", strerror(errno));
    const char *base = strrchr(model_path, '/');
    base = base ? base + 1 : model_path;
    char name[IB_CACHE_LABEL_MAX - 24];
    /* '#' separates the name from the time, so it may not appear in the name. */
    ib__cache_sanitize(base, name, sizeof name);
    for (char *p = name; *p; p++)
        if (*p == '#') *p = '_';
    if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) strcpy(name, "model");
    snprintf(out, IB_CACHE_LABEL_MAX, "%s#%lld", name, (long long)st.st_ctime);
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

static ib_status put_file(EVP_MD_CTX *md, char tag, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ib__error(IB_ERR_IO, "cache key: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ib__error(IB_ERR_IO, "cache key: '%s' is not a regular file", path);
    }
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = ib__malloc(CHUNK);
    if (!buf) {
        close(fd);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "cache key: out of memory");
    }
    ib_status st_out = IB_OK;
    uint64_t declared = (uint64_t)st.st_size, total = 0;
    if (!put_header(md, tag, declared))
        st_out = ib__error(IB_ERR_INTERNAL, "cache key: SHA-256 update failed");
    while (st_out == IB_OK) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st_out = ib__error(IB_ERR_IO, "cache key: cannot read '%s': %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        total += (uint64_t)r;
        if (total > declared || !EVP_DigestUpdate(md, buf, (size_t)r))
            st_out = ib__error(IB_ERR_IO, "cache key: '%s' changed while it was read", path);
    }
    if (st_out == IB_OK && total != declared)
        st_out = ib__error(IB_ERR_IO, "cache key: '%s' changed while it was read", path);
    ib__free(buf);
    close(fd);
    return st_out;
}

ib_status ib__cache_key(const ib__cache_key_input *in, char out[IB_CACHE_KEY_HEX + 1]) {
    if (!in || !in->model_path)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "cache key: no model path");
    if (in->n_data_paths > 0 && !in->data_paths)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "cache key: data_paths is NULL");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "cache key: cannot start SHA-256");
    }
    ib_status st = IB_OK;
    if (!put_string(md, 'V', "inferbooster-cache-key-1")) st = IB_ERR_INTERNAL;
    if (st == IB_OK) st = put_file(md, 'M', in->model_path);
    for (size_t i = 0; st == IB_OK && i < in->n_data_paths; i++) {
        if (!in->data_paths[i]) {
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "cache key: data path %zu is NULL", i);
            break;
        }
        st = put_file(md, 'D', in->data_paths[i]);
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
