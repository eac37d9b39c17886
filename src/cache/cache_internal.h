/* Helpers shared by the cache's files: durable file writes, tree removal, SHA-256 of
 * files and buffers, lock files that survive their own deletion. */
#ifndef IB_CACHE_INTERNAL_H
#define IB_CACHE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"

/* Lowercase hex of n bytes into out (2n + 1 chars). */
void ib__cache_hex(const unsigned char *bytes, size_t n, char *out);
/* SHA-256 of a buffer, as hex. */
ib_status ib__cache_sha256_hex(const void *data, size_t n, char out[IB_CACHE_KEY_HEX + 1]);
/* SHA-256 of a regular file (not followed if a symlink), as hex, and its size. */
ib_status ib__cache_sha256_file(const char *path, char out[IB_CACHE_KEY_HEX + 1],
                                uint64_t *size);
/* Makes the directory's entries durable. */
ib_status ib__cache_fsync_dir(const char *dir);
/* Writes dir/tmp_name, fsyncs it, renames it to dir/name, fsyncs dir. */
ib_status ib__cache_write_atomic(const char *dir, const char *name, const char *tmp_name,
                                 const void *data, size_t n);
/* The same; without sync_dir the rename is atomic but may be undone by a power loss
 * (the old file comes back whole): for counters a hit updates, where the directory
 * fsync would be most of a hit's time and losing the last increments costs nothing. */
ib_status ib__cache_write_atomic_ex(const char *dir, const char *name, const char *tmp_name,
                                    const void *data, size_t n, bool sync_dir);
/* Reads a whole file of at most max bytes; *out is NUL-terminated (ib__free).
 * IB_ERR_IO with errno ENOENT kept in *missing (may be NULL) when it does not exist. */
ib_status ib__cache_read_file(const char *path, size_t max, char **out, size_t *n,
                              bool *missing);
/* Removes a file or a directory tree without following symlinks. */
ib_status ib__cache_remove_tree(const char *path);
/* mkdir that accepts an existing directory. */
ib_status ib__cache_mkdir(const char *path, unsigned mode);

/* Opens (creating) a lock file and flocks it (op: LOCK_SH or LOCK_EX, may add LOCK_NB).
 * Re-opens when the file was unlinked or replaced while waiting, so a holder may
 * unlink its lock file before unlocking. Returns 0 with *fd set, 1 if it would block,
 * -1 on error (status recorded). */
int ib__cache_lock_file(const char *path, int op, int *fd);

/* snprintf into a fresh ib__malloc'ed string; NULL (status recorded) on failure. */
char *ib__cache_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* IB_CACHE_INTERNAL_H */
