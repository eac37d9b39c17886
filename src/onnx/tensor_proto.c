/* TensorProto -> dense tensor: dtype and shape checks, raw_data / typed fields /
 * external data, alignment (use mapped bytes in place or copy), and the TensorProto
 * files of the ONNX test data (read and write). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "onnx/onnx_internal.h"

void ib__shape_string(ib_dtype dtype, int32_t rank, const int64_t *dims, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "%s[", ib_dtype_name(dtype));
    if (rank < 0 && n < cap) n += (size_t)snprintf(buf + n, cap - n, "?");
    for (int32_t i = 0; i < rank && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ",%" PRId64 : "%" PRId64, dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* Natural alignment of one element: complex numbers align as their parts. */
static size_t element_alignment(ib_dtype dt) {
    if (dt == IB_DTYPE_COMPLEX64) return 4;
    if (dt == IB_DTYPE_COMPLEX128) return 8;
    size_t s = ib_dtype_size(dt);
    return s ? s : 1;
}

static void *alloc_data(ib__tensor_env *env, size_t nbytes, const char *what) {
    void *p = env->arena ? ib__arena_alloc(env->arena, nbytes ? nbytes : 1)
                         : ib__aligned_alloc(nbytes ? nbytes : 1);
    if (!p) ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory allocating %zu bytes", what, nbytes);
    return p;
}

/* For bytes copied in whole at once: not zeroed first. */
static void *alloc_copy(ib__tensor_env *env, size_t nbytes, const char *what) {
    void *p = env->arena ? ib__arena_alloc_uninit(env->arena, nbytes ? nbytes : 1)
                         : ib__aligned_alloc(nbytes ? nbytes : 1);
    if (!p) ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory allocating %zu bytes", what, nbytes);
    return p;
}

/* Parses a non-negative decimal integer (external_data offset/length). */
static bool parse_u63(const char *s, int64_t *out) {
    if (!s || !*s) return false;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (ib__mul_overflow_i64(v, 10, &v) || ib__add_overflow_i64(v, *s - '0', &v)) return false;
    }
    *out = v;
    return true;
}

/* Which typed field a dtype uses, and how many of its entries make one element. */
typedef enum { F_NONE, F_FLOAT, F_INT32, F_INT64, F_DOUBLE, F_UINT64 } typed_field;

static typed_field field_for(ib_dtype dt, int64_t *per_element) {
    *per_element = 1;
    switch (dt) {
    case IB_DTYPE_FLOAT32:
        return F_FLOAT;
    case IB_DTYPE_COMPLEX64:
        *per_element = 2;
        return F_FLOAT;
    case IB_DTYPE_INT32:
    case IB_DTYPE_INT16:
    case IB_DTYPE_INT8:
    case IB_DTYPE_UINT16:
    case IB_DTYPE_UINT8:
    case IB_DTYPE_BOOL:
    case IB_DTYPE_FLOAT16:
    case IB_DTYPE_BFLOAT16:
        return F_INT32;
    case IB_DTYPE_INT64:
        return F_INT64;
    case IB_DTYPE_FLOAT64:
        return F_DOUBLE;
    case IB_DTYPE_COMPLEX128:
        *per_element = 2;
        return F_DOUBLE;
    case IB_DTYPE_UINT32:
    case IB_DTYPE_UINT64:
        return F_UINT64;
    default:
        return F_NONE;
    }
}

static const char *field_name(typed_field f) {
    switch (f) {
    case F_FLOAT:
        return "float_data";
    case F_INT32:
        return "int32_data";
    case F_INT64:
        return "int64_data";
    case F_DOUBLE:
        return "double_data";
    case F_UINT64:
        return "uint64_data";
    default:
        return "?";
    }
}

/* Decodes typed-field values into dst (nbytes already checked against the count). */
static void decode_typed(const Onnx__TensorProto *tp, typed_field f, ib_dtype dt, void *dst,
                         size_t n_values) {
    switch (f) {
    case F_FLOAT:
        memcpy(dst, tp->float_data, n_values * sizeof(float));
        break;
    case F_DOUBLE:
        memcpy(dst, tp->double_data, n_values * sizeof(double));
        break;
    case F_INT64:
        memcpy(dst, tp->int64_data, n_values * sizeof(int64_t));
        break;
    case F_UINT64:
        for (size_t i = 0; i < n_values; i++) {
            if (dt == IB_DTYPE_UINT32)
                ((uint32_t *)dst)[i] = (uint32_t)tp->uint64_data[i];
            else
                ((uint64_t *)dst)[i] = tp->uint64_data[i];
        }
        break;
    case F_INT32:
        /* Narrow types, float16 and bfloat16 keep their bit patterns in int32_data. */
        for (size_t i = 0; i < n_values; i++) {
            int32_t v = tp->int32_data[i];
            switch (dt) {
            case IB_DTYPE_INT32:
                ((int32_t *)dst)[i] = v;
                break;
            case IB_DTYPE_INT16:
                ((int16_t *)dst)[i] = (int16_t)v;
                break;
            case IB_DTYPE_INT8:
                ((int8_t *)dst)[i] = (int8_t)v;
                break;
            case IB_DTYPE_UINT8:
                ((uint8_t *)dst)[i] = (uint8_t)v;
                break;
            case IB_DTYPE_BOOL:
                ((uint8_t *)dst)[i] = v != 0;
                break;
            default:
                ((uint16_t *)dst)[i] = (uint16_t)v;
                break; /* u16, f16, bf16 */
            }
        }
        break;
    default:
        break;
    }
}

static size_t typed_count(const Onnx__TensorProto *tp, typed_field f) {
    switch (f) {
    case F_FLOAT:
        return tp->n_float_data;
    case F_INT32:
        return tp->n_int32_data;
    case F_INT64:
        return tp->n_int64_data;
    case F_DOUBLE:
        return tp->n_double_data;
    case F_UINT64:
        return tp->n_uint64_data;
    default:
        return 0;
    }
}

/* Uses bytes in place when they outlive the tensor and are aligned, else copies. */
static ib_status place_bytes(const uint8_t *src, size_t nbytes, bool stable, ib_dtype dt,
                             ib__tensor_env *env, const char *what, void **data, bool *owned) {
    *owned = false;
    if (stable && env->arena && ((uintptr_t)src % element_alignment(dt)) == 0) {
        *data = (void *)src;
        env->bytes_mapped += nbytes;
        return IB_OK;
    }
    void *p = alloc_copy(env, nbytes, what);
    if (!p) return IB_ERR_OUT_OF_MEMORY;
    if (nbytes) memcpy(p, src, nbytes);
    env->bytes_copied += nbytes;
    *data = p;
    *owned = !env->arena;
    return IB_OK;
}

static ib_status load_external(const Onnx__TensorProto *tp, size_t nbytes, ib_dtype dt,
                               const char *shape, ib__tensor_env *env, const char *what,
                               void **data, bool *owned) {
    const char *location = NULL;
    int64_t offset = 0, length = -1;
    for (size_t i = 0; i < tp->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = tp->external_data[i];
        if (!e || !e->key) continue;
        if (strcmp(e->key, "location") == 0) {
            location = e->value;
        } else if (strcmp(e->key, "offset") == 0) {
            if (!parse_u63(e->value, &offset))
                return ib__error(IB_ERR_INVALID_MODEL,
                                 "%s: external data offset '%.40s' is not "
                                 "a non-negative integer",
                                 what, e->value ? e->value : "");
        } else if (strcmp(e->key, "length") == 0) {
            if (!parse_u63(e->value, &length))
                return ib__error(IB_ERR_INVALID_MODEL,
                                 "%s: external data length '%.40s' is not "
                                 "a non-negative integer",
                                 what, e->value ? e->value : "");
        }
    }
    if (!location)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: external data has no 'location' entry", what);
    if (length >= 0 && (uint64_t)length != nbytes)
        return ib__error(IB_ERR_INVALID_MODEL,
                         "%s: external data length is %" PRId64 " bytes, expected %zu (%s)", what,
                         length, nbytes, shape);
    if (!env->store)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: external data is not allowed here", what);
    const ib__onnx_mapping *m;
    IB_TRY(ib__onnx_map_external(env->store, env->base_dir, location, what, &m));
    if ((uint64_t)offset > m->len || nbytes > m->len - (size_t)offset)
        return ib__error(IB_ERR_INVALID_MODEL,
                         "%s: external data at offset %" PRId64 " + %zu bytes runs past the end "
                         "of '%s' (%zu bytes)",
                         what, offset, nbytes, location, m->len);
    const uint8_t *src = nbytes ? (const uint8_t *)m->addr + offset : (const uint8_t *)"";
    return place_bytes(src, nbytes, true, dt, env, what, data, owned);
}

ib_status ib__tensor_from_proto(const Onnx__TensorProto *tp, const uint8_t *raw, size_t raw_len,
                                bool has_raw, bool raw_stable, ib__tensor_env *env,
                                const char *what, ib_tensor *out) {
    if (!tp->has_data_type || tp->data_type == 0)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: data type is missing", what);
    if (!ib__dtype_is_valid(tp->data_type))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: unknown data type %d", what, tp->data_type);
    ib_dtype dt = (ib_dtype)tp->data_type;
    if (dt == IB_DTYPE_STRING)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: string tensors are not supported", what);
    if (tp->segment)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: segmented tensors are not supported", what);
    if (tp->n_dims > IB_MAX_RANK)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: rank %zu exceeds the maximum of %d", what,
                         tp->n_dims, IB_MAX_RANK);
    int32_t rank = (int32_t)tp->n_dims;
    int64_t count = 1;
    for (int32_t i = 0; i < rank; i++) {
        if (tp->dims[i] < 0)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: dimension %d is %" PRId64, what, i,
                             tp->dims[i]);
        if (ib__mul_overflow_i64(count, tp->dims[i], &count) || count > IB_MAX_ELEMENTS) {
            char s[160];
            ib__shape_string(dt, rank, tp->dims, s, sizeof s);
            return ib__error(IB_ERR_INVALID_MODEL, "%s: shape %s has more than 2^40 elements", what,
                             s);
        }
    }
    char shape[160];
    ib__shape_string(dt, rank, tp->dims, shape, sizeof shape);
    size_t nbytes = (size_t)count * ib_dtype_size(dt);

    if (tp->has_raw_data) { /* protobuf-c kept it: a copy that dies with tp */
        raw = tp->raw_data.data;
        raw_len = tp->raw_data.len;
        has_raw = true;
        raw_stable = false;
    }
    bool external =
        tp->has_data_location && tp->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    if (tp->has_data_location && tp->data_location != 0 && !external)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: unknown data_location %d", what,
                         (int)tp->data_location);
    int64_t per_element;
    typed_field want = field_for(dt, &per_element);
    const char *sources[8];
    int n_sources = 0;
    if (has_raw) sources[n_sources++] = "raw_data";
    if (external) sources[n_sources++] = "external data";
    if (tp->n_float_data) sources[n_sources++] = "float_data";
    if (tp->n_int32_data) sources[n_sources++] = "int32_data";
    if (tp->n_int64_data) sources[n_sources++] = "int64_data";
    if (tp->n_double_data) sources[n_sources++] = "double_data";
    if (tp->n_uint64_data) sources[n_sources++] = "uint64_data";
    if (tp->n_string_data) sources[n_sources++] = "string_data";
    if (n_sources > 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: data is given twice, in %s and in %s", what,
                         sources[0], sources[1]);

    void *data = NULL;
    bool owned = false;
    if (external) {
        IB_TRY(load_external(tp, nbytes, dt, shape, env, what, &data, &owned));
    } else if (has_raw) {
        if (raw_len != nbytes)
            return ib__error(IB_ERR_INVALID_MODEL,
                             "%s: raw_data holds %zu bytes, expected %zu (%s)", what, raw_len,
                             nbytes, shape);
        if (nbytes == 0) raw = (const uint8_t *)"";
        IB_TRY(place_bytes(raw, nbytes, raw_stable, dt, env, what, &data, &owned));
    } else if (n_sources == 1) {
        typed_field have = tp->n_float_data    ? F_FLOAT
                           : tp->n_int32_data  ? F_INT32
                           : tp->n_int64_data  ? F_INT64
                           : tp->n_double_data ? F_DOUBLE
                           : tp->n_uint64_data ? F_UINT64
                                               : F_NONE;
        if (have != want)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: %s cannot hold %s data", what,
                             have == F_NONE ? "string_data" : field_name(have), ib_dtype_name(dt));
        size_t n_values = typed_count(tp, have);
        if ((uint64_t)n_values != (uint64_t)count * (uint64_t)per_element)
            return ib__error(IB_ERR_INVALID_MODEL,
                             "%s: %s holds %zu values, expected %" PRId64 " (%s)", what,
                             field_name(have), n_values, count * per_element, shape);
        data = alloc_data(env, nbytes, what);
        if (!data) return IB_ERR_OUT_OF_MEMORY;
        decode_typed(tp, have, dt, data, n_values);
        env->bytes_copied += nbytes;
        owned = !env->arena;
    } else {
        if (count != 0)
            return ib__error(IB_ERR_INVALID_MODEL,
                             "%s: holds no data, expected %" PRId64 " elements (%s)", what, count,
                             shape);
        data = alloc_data(env, 0, what);
        if (!data) return IB_ERR_OUT_OF_MEMORY;
        owned = !env->arena;
    }
    memset(out, 0, sizeof *out);
    out->dtype = dt;
    out->rank = rank;
    for (int32_t i = 0; i < rank; i++) out->shape[i] = tp->dims[i];
    out->data = data;
    out->nbytes = nbytes;
    out->owns_data = owned;
    return IB_OK;
}

ib_status ib__tensor_proto_parse(const uint8_t *buf, size_t len, const char *what,
                                 Onnx__TensorProto **out, const uint8_t **raw, size_t *raw_len,
                                 bool *has_raw) {
    bool found = false;
    const uint8_t *r = NULL;
    size_t rlen = 0;
    size_t pos = 0;
    for (;;) {
        ib__wire_field f;
        bool more;
        IB_TRY(ib__wire_next(buf, len, &pos, &f, &more, what));
        if (!more) break;
        if (f.number != 9) continue;
        if (f.wire_type != IB_WIRE_LEN)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: raw_data has wire type %u, expected 2",
                             what, f.wire_type);
        if (found) return ib__error(IB_ERR_INVALID_MODEL, "%s: raw_data appears twice", what);
        found = true;
        r = f.data;
        rlen = f.len;
    }
    uint8_t *stripped;
    size_t slen;
    IB_TRY(ib__wire_strip(buf, len, 9, &stripped, &slen, what));
    Onnx__TensorProto *tp = onnx__tensor_proto__unpack(&ib__pb_allocator, slen, stripped);
    ib__free(stripped);
    if (!tp) return ib__pb_unpack_failed(what);
    *out = tp;
    *raw = r;
    *raw_len = rlen;
    *has_raw = found;
    return IB_OK;
}

ib_status ib__onnx_read_tensor_file(const char *path, ib_tensor *out, char **out_name) {
    if (!path || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "path and out are required");
    ib__onnx_store store = {NULL};
    ib__onnx_mapping *m;
    IB_TRY(ib__onnx_map_file(&store, path, &m));
    char what[300];
    snprintf(what, sizeof what, "tensor file '%.260s'", path);
    Onnx__TensorProto *tp = NULL;
    const uint8_t *raw;
    size_t raw_len;
    bool has_raw;
    ib_status st =
        ib__tensor_proto_parse(m->addr ? m->addr : "", m->len, what, &tp, &raw, &raw_len, &has_raw);
    ib_tensor t;
    char *name = NULL;
    if (st == IB_OK) {
        ib__tensor_env env = {0};
        st = ib__tensor_from_proto(tp, raw, raw_len, has_raw, false, &env, what, &t);
    }
    if (st == IB_OK && out_name) {
        name = ib__strdup(tp->name ? tp->name : "");
        if (!name) {
            ib_tensor_release(&t);
            st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
        }
    }
    if (tp) onnx__tensor_proto__free_unpacked(tp, &ib__pb_allocator);
    ib__onnx_store_release(&store);
    if (st) return st;
    *out = t;
    if (out_name) *out_name = name;
    return IB_OK;
}

ib_status ib__onnx_write_tensor_file(const char *path, const ib_tensor *t, const char *name) {
    if (!path || !t) return ib__error(IB_ERR_INVALID_ARGUMENT, "path and tensor are required");
    size_t esize = ib_dtype_size(t->dtype);
    if (esize == 0)
        return ib__error(IB_ERR_UNSUPPORTED, "cannot write a tensor of dtype %s",
                         ib_dtype_name(t->dtype));
    int64_t count = ib_tensor_element_count(t);
    if (count < 0) return ib__error(IB_ERR_INVALID_ARGUMENT, "tensor has an invalid shape");
    size_t nbytes = (size_t)count * esize;
    if (t->nbytes < nbytes || (nbytes && !t->data))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "tensor holds %zu bytes, its shape needs %zu",
                         t->nbytes, nbytes);
    Onnx__TensorProto tp = ONNX__TENSOR_PROTO__INIT;
    int64_t dims[IB_MAX_RANK];
    for (int32_t i = 0; i < t->rank; i++) dims[i] = t->shape[i];
    tp.n_dims = (size_t)t->rank;
    tp.dims = dims;
    tp.has_data_type = 1;
    tp.data_type = (int32_t)t->dtype;
    tp.name = (char *)(name ? name : "");
    tp.has_raw_data = 1;
    tp.raw_data.len = nbytes;
    tp.raw_data.data = nbytes ? t->data : NULL;
    size_t size = onnx__tensor_proto__get_packed_size(&tp);
    uint8_t *buf = ib__malloc(size);
    if (!buf) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory serializing a tensor");
    onnx__tensor_proto__pack(&tp, buf);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ib__free(buf);
        return ib__error(IB_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    }
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, buf + done, size - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            ib__free(buf);
            return ib__error(IB_ERR_IO, "cannot write '%s': %s", path, strerror(e));
        }
        done += (size_t)w;
    }
    ib__free(buf);
    if (close(fd) != 0) return ib__error(IB_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return IB_OK;
}
