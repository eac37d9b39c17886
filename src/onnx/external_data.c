/* The mappings a loaded model's weights point into: the model file (or a private copy
 * of an in-memory model) and external data files, which must lie inside the model's
 * folder. Owns the path checks that keep a hostile model from reading other files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx/onnx_internal.h"

static ib__onnx_mapping *push_mapping(ib__onnx_store *store) {
    ib__onnx_mapping *m = ib__calloc(1, sizeof *m);
    if (!m) return NULL;
    m->next = store->maps;
    store->maps = m;
    return m;
}

ib_status ib__onnx_map_file(ib__onnx_store *store, const char *path, ib__onnx_mapping **out) {
    /* O_NONBLOCK: opening a FIFO planted where a weights file should be must not hang. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return ib__error(IB_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ib__error(IB_ERR_IO, "cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ib__error(IB_ERR_IO, "'%s' is not a regular file", path);
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)SIZE_MAX / 2) {
        close(fd);
        return ib__error(IB_ERR_IO, "'%s' is too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    void *addr = NULL;
    if (size > 0) {
        addr = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (addr == MAP_FAILED) {
            int e = errno;
            close(fd);
            return ib__error(IB_ERR_IO, "cannot map '%s': %s", path, strerror(e));
        }
    }
    close(fd);
    ib__onnx_mapping *m = push_mapping(store);
    if (!m) {
        if (addr) munmap(addr, size);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory mapping '%s'", path);
    }
    m->addr = addr;
    m->len = size;
    m->is_mmap = addr != NULL;
    *out = m;
    return IB_OK;
}

ib_status ib__onnx_map_copy(ib__onnx_store *store, const void *data, size_t size,
                            ib__onnx_mapping **out) {
    void *block = ib__aligned_alloc(size ? size : 1);
    if (!block)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory copying a %zu-byte model", size);
    if (size) memcpy(block, data, size);
    ib__onnx_mapping *m = push_mapping(store);
    if (!m) {
        ib__aligned_free(block);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory copying a model");
    }
    m->addr = block;
    m->len = size;
    *out = m;
    return IB_OK;
}

/* True when some component of the path, split at '/' or '\\', is "..". */
static bool has_dotdot(const char *p) {
    const char *c = p;
    for (;;) {
        size_t n = strcspn(c, "/\\");
        if (n == 2 && c[0] == '.' && c[1] == '.') return true;
        if (c[n] == '\0') return false;
        c += n + 1;
    }
}

ib_status ib__onnx_map_external(ib__onnx_store *store, const char *base_dir, const char *location,
                                const char *what, const ib__onnx_mapping **out) {
    if (!location || !location[0])
        return ib__error(IB_ERR_INVALID_MODEL, "%s: external data has no location", what);
    if (!base_dir)
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "%s: external data '%s' needs the model's folder, and none was given",
                         what, location);
    if (location[0] == '/' || location[0] == '\\' ||
        (location[0] && location[1] == ':')) /* also "C:\..." from Windows exporters */
        return ib__error(IB_ERR_INVALID_MODEL,
                         "%s: external data path '%s' is absolute; it must be relative to the "
                         "model's folder",
                         what, location);
    if (has_dotdot(location))
        return ib__error(IB_ERR_INVALID_MODEL,
                         "%s: external data path '%s' contains '..'; it must stay inside the "
                         "model's folder",
                         what, location);
    size_t blen = strlen(base_dir), llen = strlen(location);
    if (blen + llen + 2 > PATH_MAX)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: external data path '%.200s' is too long", what,
                         location);
    char joined[PATH_MAX];
    memcpy(joined, base_dir, blen);
    joined[blen] = '/';
    memcpy(joined + blen + 1, location, llen + 1);
    char base_real[PATH_MAX], file_real[PATH_MAX];
    if (!realpath(base_dir, base_real))
        return ib__error(IB_ERR_IO, "%s: cannot resolve the model folder '%s': %s", what, base_dir,
                         strerror(errno));
    if (!realpath(joined, file_real))
        return ib__error(IB_ERR_IO, "%s: cannot open external data '%s': %s", what, location,
                         strerror(errno));
    /* A symlink inside the folder may still point outside it: compare resolved paths. */
    size_t n = strlen(base_real);
    bool inside = strncmp(file_real, base_real, n) == 0 &&
                  (file_real[n] == '/' || (n == 1 && base_real[0] == '/'));
    if (!inside)
        return ib__error(IB_ERR_INVALID_MODEL,
                         "%s: external data '%s' resolves to '%s', outside the model's folder",
                         what, location, file_real);
    for (ib__onnx_mapping *m = store->maps; m; m = m->next)
        if (m->realpath && strcmp(m->realpath, file_real) == 0) {
            *out = m;
            return IB_OK;
        }
    char *copy = ib__strdup(file_real);
    if (!copy) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
    ib__onnx_mapping *m;
    ib_status st = ib__onnx_map_file(store, file_real, &m);
    if (st) {
        ib__free(copy);
        return ib__error_prefix(st, "%s: external data '%s': ", what, location);
    }
    m->realpath = copy;
    *out = m;
    return IB_OK;
}

void ib__onnx_store_release(ib__onnx_store *store) {
    if (!store) return;
    ib__onnx_mapping *m = store->maps;
    while (m) {
        ib__onnx_mapping *next = m->next;
        if (m->is_mmap)
            munmap(m->addr, m->len);
        else
            ib__aligned_free(m->addr);
        ib__free(m->realpath);
        ib__free(m);
        m = next;
    }
    store->maps = NULL;
}

static int by_path(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

ib_status ib__onnx_data_paths(const ib__onnx_model *model, const char ***out, size_t *n) {
    const ib__onnx_store *store = model->priv;
    size_t count = 0;
    for (const ib__onnx_mapping *m = store ? store->maps : NULL; m; m = m->next)
        if (m->realpath) count++;
    const char **paths = ib__calloc(count + 1, sizeof *paths);
    if (!paths) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    size_t k = 0;
    for (const ib__onnx_mapping *m = store ? store->maps : NULL; m; m = m->next)
        if (m->realpath) paths[k++] = m->realpath;
    if (k > 1) qsort(paths, k, sizeof *paths, by_path);
    *out = paths;
    *n = k;
    return IB_OK;
}
