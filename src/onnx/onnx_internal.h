/* What the ONNX loader's files share: the protobuf wire scanner, the protobuf-c
 * allocator, the store of mappings (model bytes, external data) and TensorProto
 * conversion. Nothing outside src/onnx/ includes this. */
#ifndef IB_ONNX_INTERNAL_H
#define IB_ONNX_INTERNAL_H

#include "onnx.pb-c.h"
#include "onnx/onnx_loader.h"

/* Deepest nesting of subgraphs (If/Loop/Scan bodies) a model may have. */
#define IB_ONNX_MAX_GRAPH_DEPTH 64
/* Deepest nesting of TypeProto (sequence of map of optional ...) accepted. */
#define IB_ONNX_MAX_TYPE_DEPTH 32

/* ---- Wire format (wire_scan.c) -------------------------------------------------------- */
enum { IB_WIRE_VARINT = 0, IB_WIRE_FIXED64 = 1, IB_WIRE_LEN = 2, IB_WIRE_FIXED32 = 5 };

/* One field of a serialized message. */
typedef struct ib__wire_field {
    uint32_t number;
    uint32_t wire_type;
    uint64_t value;      /* VARINT, FIXED64, FIXED32 */
    const uint8_t *data; /* LEN: the payload */
    size_t len;          /* LEN: payload length */
    size_t start, end;   /* the whole field (tag to end) as offsets in the buffer */
} ib__wire_field;

/* Reads the field at *pos. *more = false (and IB_OK) at the end of the buffer. Malformed
 * input (truncation, a varint over 10 bytes, a length past the end, a group or unknown
 * wire type, field number 0) is IB_ERR_INVALID_MODEL naming `what` and the offset. */
ib_status ib__wire_next(const uint8_t *buf, size_t len, size_t *pos, ib__wire_field *f, bool *more,
                        const char *what);
/* Checks a serialized NodeProto (and everything below it) before protobuf-c unpacks it
 * recursively: wire format well formed where it matters, subgraphs nested at most
 * IB_ONNX_MAX_GRAPH_DEPTH - graph_depth more levels, TypeProto at most
 * IB_ONNX_MAX_TYPE_DEPTH. msg_kind says which message buf holds. */
enum { IB_WIRE_MSG_NODE = 0, IB_WIRE_MSG_VALUE_INFO = 1 };
ib_status ib__wire_check_nesting(const uint8_t *buf, size_t len, int msg_kind, int graph_depth,
                                 const char *what);
/* Copies buf without the fields numbered `drop` (a copy the caller frees with ib__free;
 * *out may be non-NULL with *out_len 0). */
ib_status ib__wire_strip(const uint8_t *buf, size_t len, uint32_t drop, uint8_t **out,
                         size_t *out_len, const char *what);

/* protobuf-c allocations routed through ib__malloc / ib__free. */
extern ProtobufCAllocator ib__pb_allocator;
/* The status for a NULL from a protobuf-c unpack: OUT_OF_MEMORY when an allocation
 * failed, else INVALID_MODEL ("<what> could not be decoded ..."). */
ib_status ib__pb_unpack_failed(const char *what);

/* ---- Mappings (external_data.c) -------------------------------------------------------- */
/* Everything a loaded model's weights may point into; released with the model. */
typedef struct ib__onnx_mapping {
    struct ib__onnx_mapping *next;
    void *addr;
    size_t len;
    int is_mmap;    /* else an ib__aligned_alloc block */
    char *realpath; /* external file identity (ib__malloc'ed), NULL for the model */
} ib__onnx_mapping;

typedef struct ib__onnx_store {
    ib__onnx_mapping *maps;
} ib__onnx_store;

/* Maps `path` read-only (a regular file). *out->addr is NULL for an empty file. */
ib_status ib__onnx_map_file(ib__onnx_store *store, const char *path, ib__onnx_mapping **out);
/* Copies `size` bytes into an aligned private block owned by the store. */
ib_status ib__onnx_map_copy(ib__onnx_store *store, const void *data, size_t size,
                            ib__onnx_mapping **out);
/* Resolves an external-data `location` against base_dir, refusing absolute paths, '..'
 * components and symlinks that lead outside base_dir, and maps the file (once per file). */
ib_status ib__onnx_map_external(ib__onnx_store *store, const char *base_dir, const char *location,
                                const char *what, const ib__onnx_mapping **out);
void ib__onnx_store_release(ib__onnx_store *store);

/* ---- TensorProto (tensor_proto.c) ------------------------------------------------------ */
typedef struct ib__tensor_env {
    ib__arena *arena;      /* copies live here; NULL: the tensor owns an aligned copy */
    ib__onnx_store *store; /* for external data; NULL refuses it */
    const char *base_dir;  /* folder external data is relative to; may be NULL */
    size_t bytes_mapped;   /* counters the conversion adds to */
    size_t bytes_copied;
} ib__tensor_env;

/* Converts a TensorProto to a dense tensor. raw/raw_len/has_raw give raw_data when the
 * caller kept it out of `tp` (the wire scanner); raw_stable says those bytes outlive the
 * tensor (a mapping) so an aligned tensor may point at them. Every size is checked;
 * `what` names the tensor in messages ("initializer 'fc.weight'"). */
ib_status ib__tensor_from_proto(const Onnx__TensorProto *tp, const uint8_t *raw, size_t raw_len,
                                bool has_raw, bool raw_stable, ib__tensor_env *env,
                                const char *what, ib_tensor *out);
/* Splits a serialized TensorProto: raw_data stays where it is (*raw points into buf,
 * *has_raw says whether the field was present), the rest is unpacked by protobuf-c.
 * Free *out with onnx__tensor_proto__free_unpacked(*out, &ib__pb_allocator). */
ib_status ib__tensor_proto_parse(const uint8_t *buf, size_t len, const char *what,
                                 Onnx__TensorProto **out, const uint8_t **raw, size_t *raw_len,
                                 bool *has_raw);
/* "float32[32,32]" into buf. */
void ib__shape_string(ib_dtype dtype, int32_t rank, const int64_t *dims, char *buf, size_t cap);

#endif /* IB_ONNX_INTERNAL_H */
