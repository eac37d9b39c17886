/* NumPy .npy files (format versions 1, 2 and 3) to and from ib_tensor: little-endian
 * numeric and bool dtypes, C order only. Files are untrusted: the header is parsed
 * strictly and the data size is checked against the file before anything is allocated. */
#ifndef IB_CLI_NPY_H
#define IB_CLI_NPY_H

#include <stddef.h>

#include "core/core.h"

/* Longest header accepted (numpy itself writes a few hundred bytes at most). */
#define IB_NPY_MAX_HEADER 65536

/* Parses a whole .npy image held in memory. On success *out owns a copy of the data
 * (owns_data = 1; release with ib_tensor_release). Errors: IB_ERR_INVALID_ARGUMENT for a
 * malformed file, IB_ERR_UNSUPPORTED for a valid file this reader does not take
 * (big-endian, Fortran order, object or string dtypes, rank above IB_MAX_RANK). */
ib_status ib__npy_read_bytes(const void *data, size_t size, ib_tensor *out);
/* Same from a file (IB_ERR_IO when it cannot be read); the message names the file. */
ib_status ib__npy_read_file(const char *path, ib_tensor *out);

/* Serializes a tensor: *out_bytes (ib__free) receives header + data. */
ib_status ib__npy_write_bytes(const ib_tensor *t, void **out_bytes, size_t *out_size);
/* Writes a tensor to `path` (created or truncated). */
ib_status ib__npy_write_file(const char *path, const ib_tensor *t);

/* The .npy descr ("<f4", "|b1") for a dtype, or NULL when .npy cannot hold it. */
const char *ib__npy_descr(ib_dtype dtype);

#endif /* IB_CLI_NPY_H */
