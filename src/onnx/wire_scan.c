/* A small, strict reader of the protobuf wire format: lets the loader walk ModelProto and
 * GraphProto itself (so weights stay in the mapping), strip fields before protobuf-c
 * copies them, and bound message nesting before protobuf-c recurses. Also the
 * protobuf-c allocator that routes through the library's allocation hook. */
#include <string.h>

#include "onnx/onnx_internal.h"

/* protobuf-c's unpack answers NULL both for bad input and for a failed allocation:
 * this flag tells them apart. */
static _Thread_local bool t_pb_oom;

static void *pb_alloc(void *user, size_t size) {
    (void)user;
    void *p = ib__malloc(size);
    if (!p) t_pb_oom = true;
    return p;
}

static void pb_free(void *user, void *ptr) {
    (void)user;
    ib__free(ptr);
}

ProtobufCAllocator ib__pb_allocator = {pb_alloc, pb_free, NULL};

ib_status ib__pb_unpack_failed(const char *what) {
    if (t_pb_oom) {
        t_pb_oom = false;
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory decoding protobuf", what);
    }
    return ib__error(IB_ERR_INVALID_MODEL,
                     "%s could not be decoded (a field has the wrong wire type or an invalid "
                     "value)",
                     what);
}

static ib_status malformed(const char *what, size_t at, const char *why) {
    return ib__error(IB_ERR_INVALID_MODEL, "%s: malformed protobuf at byte %zu: %s", what, at, why);
}

/* Reads a base-128 varint of at most 10 bytes; the 10th may only carry the top bit. */
static ib_status read_varint(const uint8_t *buf, size_t len, size_t *pos, uint64_t *out,
                             const char *what) {
    size_t start = *pos;
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (*pos >= len) return malformed(what, start, "truncated varint");
        uint8_t b = buf[(*pos)++];
        if (i == 9 && b > 1) return malformed(what, start, "varint overflows 64 bits");
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = v;
            return IB_OK;
        }
    }
    return malformed(what, start, "varint longer than 10 bytes");
}

ib_status ib__wire_next(const uint8_t *buf, size_t len, size_t *pos, ib__wire_field *f, bool *more,
                        const char *what) {
    if (*pos >= len) {
        *more = false;
        return IB_OK;
    }
    size_t start = *pos;
    uint64_t tag;
    IB_TRY(read_varint(buf, len, pos, &tag, what));
    if (tag > UINT32_MAX) return malformed(what, start, "field tag out of range");
    uint32_t number = (uint32_t)(tag >> 3);
    uint32_t wire_type = (uint32_t)(tag & 7);
    if (number == 0) return malformed(what, start, "field number 0");
    memset(f, 0, sizeof *f);
    f->number = number;
    f->wire_type = wire_type;
    f->start = start;
    switch (wire_type) {
    case IB_WIRE_VARINT:
        IB_TRY(read_varint(buf, len, pos, &f->value, what));
        break;
    case IB_WIRE_FIXED64:
    case IB_WIRE_FIXED32: {
        size_t n = wire_type == IB_WIRE_FIXED64 ? 8 : 4;
        if (len - *pos < n) return malformed(what, start, "truncated fixed-size field");
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) v |= (uint64_t)buf[*pos + i] << (8 * i);
        f->value = v;
        *pos += n;
        break;
    }
    case IB_WIRE_LEN: {
        uint64_t n;
        IB_TRY(read_varint(buf, len, pos, &n, what));
        if (n > len - *pos) return malformed(what, start, "length runs past the end");
        f->data = buf + *pos;
        f->len = (size_t)n;
        *pos += (size_t)n;
        break;
    }
    default:
        return malformed(what, start,
                         wire_type == 3 || wire_type == 4
                             ? "groups (wire types 3/4) are not allowed"
                             : "unknown wire type");
    }
    f->end = *pos;
    *more = true;
    return IB_OK;
}

ib_status ib__wire_strip(const uint8_t *buf, size_t len, uint32_t drop, uint8_t **out,
                         size_t *out_len, const char *what) {
    uint8_t *copy = ib__malloc(len ? len : 1);
    if (!copy) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
    size_t pos = 0, n = 0;
    for (;;) {
        ib__wire_field f;
        bool more;
        ib_status st = ib__wire_next(buf, len, &pos, &f, &more, what);
        if (st) {
            ib__free(copy);
            return st;
        }
        if (!more) break;
        if (f.number == drop) continue;
        memcpy(copy + n, buf + f.start, f.end - f.start);
        n += f.end - f.start;
    }
    *out = copy;
    *out_len = n;
    return IB_OK;
}

/* The messages whose nesting is unbounded in the ONNX schema, and how they nest:
 * Graph -> Node -> Attribute -> Graph, ValueInfo -> Type -> Sequence/Optional/Map -> Type.
 * Other messages (TensorProto, shapes) nest a fixed few levels. */
enum { K_NODE, K_VALUE_INFO, K_GRAPH, K_ATTR, K_TYPE, K_TYPE_ELEM, K_TYPE_MAP };

static int child_kind(int kind, uint32_t field) {
    switch (kind) {
    case K_GRAPH:
        if (field == 1) return K_NODE;
        if (field == 11 || field == 12 || field == 13) return K_VALUE_INFO;
        break;
    case K_NODE:
        if (field == 5) return K_ATTR;
        break;
    case K_ATTR:
        if (field == 6 || field == 11) return K_GRAPH;
        if (field == 14 || field == 15) return K_TYPE;
        break;
    case K_VALUE_INFO:
        if (field == 2) return K_TYPE;
        break;
    case K_TYPE:
        if (field == 4 || field == 9) return K_TYPE_ELEM; /* sequence, optional */
        if (field == 5) return K_TYPE_MAP;
        break;
    case K_TYPE_ELEM:
        if (field == 1) return K_TYPE;
        break;
    case K_TYPE_MAP:
        if (field == 2) return K_TYPE;
        break;
    default:
        break;
    }
    return -1;
}

static ib_status check_nesting(const uint8_t *buf, size_t len, int kind, int graph_depth,
                               int type_depth, const char *what) {
    size_t pos = 0;
    for (;;) {
        ib__wire_field f;
        bool more;
        IB_TRY(ib__wire_next(buf, len, &pos, &f, &more, what));
        if (!more) return IB_OK;
        int child = child_kind(kind, f.number);
        /* A wrong wire type on a known field is left to protobuf-c, which refuses it. */
        if (child < 0 || f.wire_type != IB_WIRE_LEN) continue;
        int gd = graph_depth + (child == K_GRAPH);
        int td = type_depth + (child == K_TYPE);
        if (gd > IB_ONNX_MAX_GRAPH_DEPTH)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: subgraphs nested deeper than %d levels", what,
                             IB_ONNX_MAX_GRAPH_DEPTH);
        if (td > IB_ONNX_MAX_TYPE_DEPTH)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: types nested deeper than %d levels", what,
                             IB_ONNX_MAX_TYPE_DEPTH);
        IB_TRY(check_nesting(f.data, f.len, child, gd, td, what));
    }
}

ib_status ib__wire_check_nesting(const uint8_t *buf, size_t len, int msg_kind, int graph_depth,
                                 const char *what) {
    int kind = msg_kind == IB_WIRE_MSG_VALUE_INFO ? K_VALUE_INFO
               : msg_kind == IB_WIRE_MSG_NODE     ? K_NODE
                                                  : -1;
    if (kind < 0) return IB_OK; /* other messages nest a fixed few levels */
    return check_nesting(buf, len, kind, graph_depth, 0, what);
}
