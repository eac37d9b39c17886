/* NumPy .npy reader and writer (see npy.h). The header is a Python dict literal; this
 * parser takes exactly what numpy writes (the three keys, once each, in any order) and
 * refuses everything else with a message saying what it found. */
#include "cli/npy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "npy.c assumes a little-endian host: '<' data is used in place"
#endif

static const char k_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

typedef struct npy_header {
    ib_dtype dtype;
    int32_t rank;
    int64_t dims[IB_MAX_RANK];
    size_t data_offset; /* bytes before the array data */
    size_t data_bytes;  /* bytes the shape needs */
} npy_header;

/* ---- Header dictionary parser ---------------------------------------------------- */

typedef struct cursor {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool eat(cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted string without escapes (numpy never writes escapes in these fields). */
static ib_status parse_string(cursor *c, const char *what, char *buf, size_t cap) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: expected a quoted %s", what);
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '\\' || ch < 0x20 || ch >= 0x7f)
            return ib__error(IB_ERR_INVALID_ARGUMENT,
                             ".npy header: unexpected character 0x%02x in the %s", ch, what);
        if (n + 1 >= cap)
            return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: %s is too long", what);
        buf[n++] = (char)ch;
        c->p++;
    }
    if (c->p >= c->end)
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: unterminated %s", what);
    c->p++;
    buf[n] = '\0';
    return IB_OK;
}

static bool eat_word(cursor *c, const char *word) {
    skip_ws(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    /* "Falsey" is not "False". */
    if ((size_t)(c->end - c->p) > n) {
        char next = c->p[n];
        if ((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') ||
            (next >= '0' && next <= '9') || next == '_')
            return false;
    }
    c->p += n;
    return true;
}

static ib_status parse_descr(const char *s, ib_dtype *out) {
    static const struct {
        const char *code;
        ib_dtype dtype;
    } k_codes[] = {
        {"f2", IB_DTYPE_FLOAT16}, {"f4", IB_DTYPE_FLOAT32}, {"f8", IB_DTYPE_FLOAT64},
        {"i1", IB_DTYPE_INT8},    {"i2", IB_DTYPE_INT16},   {"i4", IB_DTYPE_INT32},
        {"i8", IB_DTYPE_INT64},   {"u1", IB_DTYPE_UINT8},   {"u2", IB_DTYPE_UINT16},
        {"u4", IB_DTYPE_UINT32},  {"u8", IB_DTYPE_UINT64},  {"b1", IB_DTYPE_BOOL},
    };
    char order = s[0];
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return ib__error(IB_ERR_UNSUPPORTED, ".npy dtype '%s' is not supported", s);
    for (size_t i = 0; i < sizeof k_codes / sizeof k_codes[0]; i++) {
        if (strcmp(s + 1, k_codes[i].code) != 0) continue;
        bool single = ib_dtype_size(k_codes[i].dtype) == 1;
        /* Byte order means nothing for one-byte types; '=' is native, and every host
         * this builds on is little-endian (checked above). */
        if (!single && order == '>')
            return ib__error(IB_ERR_UNSUPPORTED,
                             ".npy dtype '%s' is big-endian; save it little-endian "
                             "(a.astype(a.dtype.newbyteorder('<')))",
                             s);
        if (!single && order == '|')
            return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy dtype '%s' lacks a byte order", s);
        *out = k_codes[i].dtype;
        return IB_OK;
    }
    return ib__error(IB_ERR_UNSUPPORTED,
                     ".npy dtype '%s' is not supported (supported: f2 f4 f8 i1 i2 i4 i8 u1 u2 "
                     "u4 u8 b1)",
                     s);
}

static ib_status parse_shape(cursor *c, npy_header *h) {
    if (!eat(c, '('))
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: 'shape' is not a tuple");
    h->rank = 0;
    bool need_comma_for_single = true;
    for (;;) {
        skip_ws(c);
        if (c->p < c->end && *c->p == ')') break;
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return ib__error(IB_ERR_INVALID_ARGUMENT,
                             ".npy header: 'shape' holds something other than "
                             "non-negative integers");
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (ib__mul_overflow_i64(v, 10, &v) || ib__add_overflow_i64(v, *c->p - '0', &v))
                return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: a dimension overflows");
            c->p++;
        }
        if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2 longs */
        if (h->rank >= IB_MAX_RANK)
            return ib__error(IB_ERR_UNSUPPORTED, ".npy array has more than %d dimensions",
                             IB_MAX_RANK);
        h->dims[h->rank++] = v;
        if (eat(c, ',')) {
            need_comma_for_single = false;
            continue;
        }
        skip_ws(c);
        if (c->p < c->end && *c->p == ')') break;
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: malformed 'shape' tuple");
    }
    c->p++; /* ')' */
    /* "(3)" is the integer 3 to Python, not a tuple. */
    if (h->rank == 1 && need_comma_for_single)
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: 'shape' is not a tuple");
    return IB_OK;
}

static ib_status parse_dict(const char *text, size_t len, npy_header *h) {
    cursor c = {text, text + len};
    bool have_descr = false, have_order = false, have_shape = false;
    if (!eat(&c, '{'))
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header is not a dictionary");
    for (;;) {
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}') break;
        char key[32];
        IB_TRY(parse_string(&c, "key", key, sizeof key));
        if (!eat(&c, ':'))
            return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: expected ':' after '%s'",
                             key);
        if (strcmp(key, "descr") == 0 && !have_descr) {
            skip_ws(&c);
            if (c.p < c.end && *c.p == '[')
                return ib__error(IB_ERR_UNSUPPORTED, ".npy structured dtypes are not supported");
            char descr[32];
            IB_TRY(parse_string(&c, "'descr'", descr, sizeof descr));
            IB_TRY(parse_descr(descr, &h->dtype));
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0 && !have_order) {
            if (eat_word(&c, "True"))
                return ib__error(IB_ERR_UNSUPPORTED,
                                 ".npy array is in Fortran order; save a C-ordered array "
                                 "(numpy.ascontiguousarray)");
            if (!eat_word(&c, "False"))
                return ib__error(IB_ERR_INVALID_ARGUMENT,
                                 ".npy header: 'fortran_order' is neither True nor False");
            have_order = true;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            IB_TRY(parse_shape(&c, h));
            have_shape = true;
        } else {
            return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: unexpected or repeated key '%s'",
                             key);
        }
        if (eat(&c, ',')) continue;
        skip_ws(&c);
        if (c.p < c.end && *c.p == '}') break;
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: expected ',' or '}'");
    }
    c.p++; /* '}' */
    skip_ws(&c);
    if (c.p != c.end)
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header: unexpected text after the dictionary");
    if (!have_descr || !have_order || !have_shape)
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header lacks '%s'",
                         !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    return IB_OK;
}

/* Parses the preamble and header found in the first `avail` bytes of a file of
 * `file_size` bytes. */
static ib_status parse_header(const unsigned char *buf, size_t avail, size_t file_size,
                              npy_header *h) {
    memset(h, 0, sizeof *h);
    if (avail < 10 || memcmp(buf, k_magic, sizeof k_magic) != 0)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "not a .npy file (bad magic)");
    unsigned major = buf[6], minor = buf[7];
    size_t header_len, prefix;
    if (major == 1) {
        header_len = (size_t)buf[8] | (size_t)buf[9] << 8;
        prefix = 10;
    } else if (major == 2 || major == 3) {
        if (avail < 12) return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy file is truncated");
        header_len = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
                     (size_t)buf[11] << 24;
        prefix = 12;
    } else {
        return ib__error(IB_ERR_UNSUPPORTED, ".npy format version %u.%u is not supported",
                         major, minor);
    }
    if (minor != 0)
        return ib__error(IB_ERR_UNSUPPORTED, ".npy format version %u.%u is not supported",
                         major, minor);
    if (header_len > IB_NPY_MAX_HEADER)
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header is %zu bytes (limit %d)",
                         header_len, IB_NPY_MAX_HEADER);
    if (prefix + header_len > avail || prefix + header_len > file_size)
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy file is truncated inside its header");
    const char *text = (const char *)buf + prefix;
    /* The format demands a newline at the end of the header. */
    if (header_len == 0 || text[header_len - 1] != '\n')
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header does not end with a newline");
    if (memchr(text, '\0', header_len))
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy header contains a NUL byte");
    IB_TRY(parse_dict(text, header_len, h));

    int64_t count = ib__shape_count(h->dims, h->rank);
    if (count < 0)
        return ib__error(IB_ERR_INVALID_ARGUMENT, ".npy shape has too many elements");
    size_t esize = ib_dtype_size(h->dtype);
    h->data_offset = prefix + header_len;
    h->data_bytes = (size_t)count * esize;
    size_t have = file_size - h->data_offset;
    if (have != h->data_bytes)
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         ".npy data is %zu bytes but shape and dtype need %zu%s", have,
                         h->data_bytes, have < h->data_bytes ? " (truncated file)" : "");
    return IB_OK;
}

/* Bool bytes other than 0/1 would break kernels that index with them. */
static void normalize_bools(ib_tensor *t) {
    if (t->dtype != IB_DTYPE_BOOL) return;
    unsigned char *b = t->data;
    for (size_t i = 0; i < t->nbytes; i++) b[i] = b[i] != 0;
}

ib_status ib__npy_read_bytes(const void *data, size_t size, ib_tensor *out) {
    if (!data || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "ib__npy_read_bytes: NULL argument");
    npy_header h;
    IB_TRY(parse_header(data, size, size, &h));
    ib_tensor t;
    IB_TRY(ib__tensor_alloc(&t, h.dtype, h.rank, h.dims));
    if (h.data_bytes) memcpy(t.data, (const unsigned char *)data + h.data_offset, h.data_bytes);
    normalize_bools(&t);
    *out = t;
    return IB_OK;
}

static ib_status read_fully(int fd, void *buf, size_t n, const char *path) {
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return ib__error(IB_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (r == 0) return ib__error(IB_ERR_INVALID_ARGUMENT, "%s: file shrank while reading", path);
        p += r;
        n -= (size_t)r;
    }
    return IB_OK;
}

ib_status ib__npy_read_file(const char *path, ib_tensor *out) {
    if (!path || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "ib__npy_read_file: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ib__error(IB_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ib__error(IB_ERR_IO, "%s: not a regular file", path);
    }
    size_t file_size = (size_t)st.st_size;
    size_t head_cap = 12 + IB_NPY_MAX_HEADER;
    size_t head_n = file_size < head_cap ? file_size : head_cap;
    unsigned char *head = ib__malloc(head_n ? head_n : 1);
    if (!head) {
        close(fd);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    ib_status s = read_fully(fd, head, head_n, path);
    npy_header h;
    if (s == IB_OK) {
        s = parse_header(head, head_n, file_size, &h);
        if (s != IB_OK) ib__error_prefix(s, "%s: ", path);
    }
    ib_tensor t;
    memset(&t, 0, sizeof t);
    if (s == IB_OK) s = ib__tensor_alloc(&t, h.dtype, h.rank, h.dims);
    if (s == IB_OK && h.data_bytes) {
        /* The data may start inside the bytes already read. */
        size_t from_head = head_n > h.data_offset ? head_n - h.data_offset : 0;
        if (from_head > h.data_bytes) from_head = h.data_bytes;
        memcpy(t.data, head + h.data_offset, from_head);
        if (from_head < h.data_bytes)
            s = read_fully(fd, (unsigned char *)t.data + from_head, h.data_bytes - from_head, path);
    }
    ib__free(head);
    close(fd);
    if (s != IB_OK) {
        ib_tensor_release(&t);
        return s;
    }
    normalize_bools(&t);
    *out = t;
    return IB_OK;
}

const char *ib__npy_descr(ib_dtype dtype) {
    switch (dtype) {
    case IB_DTYPE_FLOAT16: return "<f2";
    case IB_DTYPE_FLOAT32: return "<f4";
    case IB_DTYPE_FLOAT64: return "<f8";
    case IB_DTYPE_INT8: return "|i1";
    case IB_DTYPE_INT16: return "<i2";
    case IB_DTYPE_INT32: return "<i4";
    case IB_DTYPE_INT64: return "<i8";
    case IB_DTYPE_UINT8: return "|u1";
    case IB_DTYPE_UINT16: return "<u2";
    case IB_DTYPE_UINT32: return "<u4";
    case IB_DTYPE_UINT64: return "<u8";
    case IB_DTYPE_BOOL: return "|b1";
    default: return NULL;
    }
}

ib_status ib__npy_write_bytes(const ib_tensor *t, void **out_bytes, size_t *out_size) {
    if (!t || !out_bytes || !out_size)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "ib__npy_write_bytes: NULL argument");
    const char *descr = ib__npy_descr(t->dtype);
    if (!descr)
        return ib__error(IB_ERR_UNSUPPORTED, ".npy cannot hold dtype %s", ib_dtype_name(t->dtype));
    int64_t count = ib_tensor_element_count(t);
    if (count < 0) return ib__error(IB_ERR_INVALID_ARGUMENT, "tensor has an invalid shape");
    size_t data_bytes = (size_t)count * ib_dtype_size(t->dtype);
    if (data_bytes > 0 && (!t->data || t->nbytes < data_bytes))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "tensor holds %zu bytes but its shape needs %zu",
                         t->nbytes, data_bytes);

    char dict[64 + IB_MAX_RANK * 24];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                     descr);
    for (int32_t i = 0; i < t->rank; i++)
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%s%lld", i ? ", " : "",
                      (long long)t->shape[i]);
    n += snprintf(dict + n, sizeof dict - (size_t)n, "%s), }", t->rank == 1 ? "," : "");
    /* Version 1 with the header padded so the data starts 64-byte aligned, as numpy. */
    size_t prefix = 10;
    size_t total = prefix + (size_t)n + 1;
    size_t padded = (total + 63) / 64 * 64;
    size_t header_len = padded - prefix;
    size_t size = padded + data_bytes;
    unsigned char *buf = ib__malloc(size);
    if (!buf) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory writing .npy (%zu bytes)", size);
    memcpy(buf, k_magic, sizeof k_magic);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (unsigned char)(header_len & 0xff);
    buf[9] = (unsigned char)(header_len >> 8);
    memcpy(buf + prefix, dict, (size_t)n);
    memset(buf + prefix + n, ' ', header_len - (size_t)n - 1);
    buf[padded - 1] = '\n';
    if (data_bytes) memcpy(buf + padded, t->data, data_bytes);
    *out_bytes = buf;
    *out_size = size;
    return IB_OK;
}

ib_status ib__npy_write_file(const char *path, const ib_tensor *t) {
    void *bytes;
    size_t size;
    IB_TRY(ib__npy_write_bytes(t, &bytes, &size));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ib__free(bytes);
        return ib__error(IB_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    const unsigned char *p = bytes;
    size_t left = size;
    ib_status s = IB_OK;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            s = ib__error(IB_ERR_IO, "%s: write failed: %s", path, strerror(errno));
            break;
        }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd) != 0 && s == IB_OK)
        s = ib__error(IB_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    ib__free(bytes);
    return s;
}
