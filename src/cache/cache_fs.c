/* Filesystem primitives of the compiled-model cache: SHA-256 of files and buffers
 * (OpenSSL libcrypto), durable atomic writes, tree removal and re-validated lock files. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "cache/cache_internal.h"

void ib__cache_hex(const unsigned char *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

char *ib__cache_path(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0) {
        ib__error(IB_ERR_INTERNAL, "cache: cannot format a path");
        return NULL;
    }
    char *s = ib__malloc((size_t)len + 1);
    if (!s) {
        ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory for a path");
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return s;
}

ib_status ib__cache_sha256_hex(const void *data, size_t n, char out[IB_CACHE_KEY_HEX + 1]) {
    unsigned char md[32];
    unsigned int md_len = 0;
    if (!EVP_Digest(data, n, md, &md_len, EVP_sha256(), NULL) || md_len != 32)
        return ib__error(IB_ERR_INTERNAL, "cache: SHA-256 failed (libcrypto)");
    ib__cache_hex(md, 32, out);
    return IB_OK;
}

ib_status ib__cache_sha256_file(const char *path, char out[IB_CACHE_KEY_HEX + 1],
                                uint64_t *size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return ib__error(IB_ERR_IO, "cache: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ib__error(IB_ERR_IO, "cache: '%s' is not a regular file", path);
    }
    EVP_MD_CTX *md_ctx = EVP_MD_CTX_new();
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = ib__malloc(CHUNK);
    ib_status st_out = IB_OK;
    if (!md_ctx || !buf || !EVP_DigestInit_ex(md_ctx, EVP_sha256(), NULL)) {
        st_out = ib__error(IB_ERR_OUT_OF_MEMORY, "cache: cannot start SHA-256 of '%s'", path);
        goto done;
    }
    uint64_t total = 0;
    for (;;) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st_out = ib__error(IB_ERR_IO, "cache: cannot read '%s': %s", path, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        if (!EVP_DigestUpdate(md_ctx, buf, (size_t)r)) {
            st_out = ib__error(IB_ERR_INTERNAL, "cache: SHA-256 update failed");
            goto done;
        }
        total += (uint64_t)r;
    }
    unsigned char md[32];
    unsigned int md_len = 0;
    if (!EVP_DigestFinal_ex(md_ctx, md, &md_len) || md_len != 32) {
        st_out = ib__error(IB_ERR_INTERNAL, "cache: SHA-256 final failed");
        goto done;
    }
    ib__cache_hex(md, 32, out);
    if (size) *size = total;
done:
    ib__free(buf);
    EVP_MD_CTX_free(md_ctx);
    close(fd);
    return st_out;
}

ib_status ib__cache_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ib__error(IB_ERR_IO, "cache: cannot open directory '%s': %s", dir, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0) return ib__error(IB_ERR_IO, "cache: fsync of '%s' failed: %s", dir, strerror(err));
    return IB_OK;
}

static ib_status write_all(int fd, const void *data, size_t n, const char *path) {
    const unsigned char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return ib__error(IB_ERR_IO, "cache: cannot write '%s': %s", path, strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return IB_OK;
}

ib_status ib__cache_write_atomic(const char *dir, const char *name, const char *tmp_name,
                                 const void *data, size_t n) {
    return ib__cache_write_atomic_ex(dir, name, tmp_name, data, n, true);
}

ib_status ib__cache_write_atomic_ex(const char *dir, const char *name, const char *tmp_name,
                                    const void *data, size_t n, bool sync_dir) {
    char *tmp = ib__cache_path("%s/%s", dir, tmp_name);
    char *dst = ib__cache_path("%s/%s", dir, name);
    ib_status st = IB_OK;
    int fd = -1;
    if (!tmp || !dst) {
        st = IB_ERR_OUT_OF_MEMORY;
        goto done;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        st = ib__error(IB_ERR_IO, "cache: cannot create '%s': %s", tmp, strerror(errno));
        goto done;
    }
    st = write_all(fd, data, n, tmp);
    if (st == IB_OK && fsync(fd) != 0)
        st = ib__error(IB_ERR_IO, "cache: fsync of '%s' failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == IB_OK)
        st = ib__error(IB_ERR_IO, "cache: close of '%s' failed: %s", tmp, strerror(errno));
    fd = -1;
    if (st == IB_OK && rename(tmp, dst) != 0)
        st = ib__error(IB_ERR_IO, "cache: cannot rename '%s': %s", tmp, strerror(errno));
    if (st == IB_OK && sync_dir) st = ib__cache_fsync_dir(dir);
    if (st != IB_OK) unlink(tmp);
done:
    ib__free(tmp);
    ib__free(dst);
    return st;
}

ib_status ib__cache_read_file(const char *path, size_t max, char **out, size_t *n,
                              bool *missing) {
    if (missing) *missing = false;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (missing && errno == ENOENT) *missing = true;
        return ib__error(IB_ERR_IO, "cache: cannot open '%s': %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        close(fd);
        return ib__error(IB_ERR_IO, "cache: '%s' is not a regular file of at most %zu bytes",
                         path, max);
    }
    size_t size = (size_t)st.st_size;
    char *buf = ib__malloc(size + 1);
    if (!buf) {
        close(fd);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "cache: out of memory reading '%s'", path);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *n = got;
    return IB_OK;
}

static int remove_one(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)ftw;
    int rc = (type == FTW_DP || type == FTW_D) ? rmdir(path) : unlink(path);
    if (rc != 0 && errno != ENOENT) return -1;
    return 0;
}

ib_status ib__cache_remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) return IB_OK;
        return ib__error(IB_ERR_IO, "cache: cannot stat '%s': %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0 && errno != ENOENT)
            return ib__error(IB_ERR_IO, "cache: cannot remove '%s': %s", path, strerror(errno));
        return IB_OK;
    }
    if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0)
        return ib__error(IB_ERR_IO, "cache: cannot remove '%s': %s", path, strerror(errno));
    return IB_OK;
}

ib_status ib__cache_mkdir(const char *path, unsigned mode) {
    if (mkdir(path, (mode_t)mode) == 0) return IB_OK;
    struct stat st;
    if (errno == EEXIST && lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) return IB_OK;
    return ib__error(IB_ERR_IO, "cache: cannot create directory '%s': %s", path, strerror(errno));
}

int ib__cache_lock_file(const char *path, int op, int *fd_out) {
    for (int attempt = 0; attempt < 1000; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
            ib__error(IB_ERR_IO, "cache: cannot open lock '%s': %s", path, strerror(errno));
            return -1;
        }
        int rc;
        do rc = flock(fd, op);
        while (rc != 0 && errno == EINTR);
        if (rc != 0) {
            int err = errno;
            close(fd);
            if (err == EWOULDBLOCK) return 1;
            ib__error(IB_ERR_IO, "cache: cannot lock '%s': %s", path, strerror(err));
            return -1;
        }
        /* The holder we waited for may have unlinked the file: our lock would then be
         * on an inode nobody else can find, so start again on the current file. */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
            a.st_dev == b.st_dev) {
            *fd_out = fd;
            return 0;
        }
        close(fd);
    }
    ib__error(IB_ERR_IO, "cache: lock '%s' keeps being replaced", path);
    return -1;
}
