/* The operator interface: what each file under src/ops/ provides for its ops, and the
 * helpers those files share (attribute parsing, broadcasting, shape setting).
 *
 * An op has two callbacks:
 *   infer: from the node's attributes and what is known of its inputs (dtype, rank,
 *          dims, and data when constant), set each output's dtype, rank and dims.
 *          Called at load time on graph values (some dims or data may be unknown: then
 *          leave the corresponding output dims at -1, or rank at -1, and return IB_OK),
 *          and again at run time on fully known values (every input has data).
 *          Invalid attributes or incompatible inputs: return an ib__error(...) status.
 *   run:   compute outputs from inputs. Outputs arrive allocated with the shapes infer
 *          set at run time. Must not keep pointers to anything after returning.
 */
#ifndef IB_OPS_H
#define IB_OPS_H

#include "core/core.h"
#include "ir/graph.h"

typedef struct ib__infer_ctx {
    const ib__node *node;
    int32_t opset;
    int32_t n_in;
    const ib__value *const *in; /* in[i] == NULL: optional input omitted */
    int32_t n_out;
    ib__value *const *out;      /* out[i] == NULL: optional output omitted */
} ib__infer_ctx;

/* Runs a subgraph (If/Loop/Scan bodies) with the executor that runs the node: inputs
 * bind to the subgraph's inputs in order; outputs receive library-owned tensors (the
 * caller releases them). Values of enclosing graphs are visible to the subgraph. */
typedef struct ib__subgraph_runner {
    void *exec;
    ib_status (*run)(void *exec, const ib__graph *graph, int32_t n_in,
                     const ib_tensor *const *in, int32_t n_out, ib_tensor *out);
} ib__subgraph_runner;

typedef struct ib__run_ctx {
    const ib__node *node;
    int32_t opset;
    int32_t n_in;
    const ib_tensor *const *in; /* NULL when omitted */
    int32_t n_out;
    ib_tensor *const *out;      /* allocated by the executor; NULL when omitted */
    ib__pool *pool;             /* for ib__parallel_for; may be NULL */
    const ib__subgraph_runner *subgraphs; /* NULL at load-time folding */
} ib__run_ctx;

typedef struct ib__op_def {
    ib__op_id op;
    ib_status (*infer)(ib__infer_ctx *ctx);
    ib_status (*run)(ib__run_ctx *ctx);
    /* Set for ops whose output shapes are known only after running (If, Loop, Scan):
     * the executor passes empty output tensors and run allocates them with
     * ib__tensor_alloc. */
    bool dynamic_outputs;
} ib__op_def;

/* The definition for an op, or NULL when the op has none. */
const ib__op_def *ib__op_get(ib__op_id op);

/* ---- Families: each src/ops/<family>.c defines `const ib__op_def ib__ops_<family>[]`
 * terminated by an entry with op == IB_OP_UNKNOWN. ---------------------------------- */
#define IB_OP_FAMILY_LIST(X) \
    X(elementwise)           \
    X(binary)                \
    X(conv)                  \
    X(pool)                  \
    X(gemm)                  \
    X(normalization)         \
    X(softmax)               \
    X(tensor_shape)          \
    X(indexing)              \
    X(resize)                \
    X(reduce)                \
    X(sequence_models)       \
    X(quantize)              \
    X(loss)                  \
    X(signal)                \
    X(detection)             \
    X(control_flow)

#define IB__OP_FAMILY_DECL(family) extern const ib__op_def ib__ops_##family[];
IB_OP_FAMILY_LIST(IB__OP_FAMILY_DECL)
#undef IB__OP_FAMILY_DECL

/* ---- Helpers for infer ----------------------------------------------------------- */
/* Input i (or NULL when omitted / out of range). */
static inline const ib__value *ib__in(const ib__infer_ctx *c, int32_t i) {
    return (i < c->n_in) ? c->in[i] : NULL;
}
/* Sets out[i] (if present) to dtype and rank/dims (dims may be NULL for rank -1). */
void ib__set_output(ib__infer_ctx *c, int32_t i, ib_dtype dtype, int32_t rank,
                    const int64_t *dims);
/* Copies dtype, rank, dims and dim_params of `from` into out[i]. */
void ib__set_output_like(ib__infer_ctx *c, int32_t i, const ib__value *from);
/* Requires input i to be present; the error names the node and the input. */
ib_status ib__require_input(const ib__infer_ctx *c, int32_t i);
/* Numpy-style multidirectional broadcast of a set of values into out dims.
 * Unknown dims propagate as -1. Error names the node when shapes are incompatible. */
ib_status ib__broadcast_values(const ib__infer_ctx *c, int32_t n, const ib__value *const *vals,
                               int32_t *out_rank, int64_t *out_dims,
                               const char **out_dim_param);
/* Reads a constant integer tensor (int32/int64) into `buf` (capacity cap): *count
 * elements. *known = false (and IB_OK) when the value has no constant data; an error
 * when it is not an integer tensor or holds more than cap elements. */
ib_status ib__const_ints(const ib__value *v, int64_t *buf, int64_t cap, int64_t *count,
                         bool *known);
/* Normalises an axis in [-rank, rank) to [0, rank); error names the node and attr. */
ib_status ib__normalize_axis(const ib__node *node, int64_t axis, int32_t rank, int32_t *out);

/* ---- Helpers for run ------------------------------------------------------------- */
/* Broadcast iteration: for output index `oi` of out dims, the offset into an input whose
 * dims are right-aligned against the output (size-1 dims broadcast). */
typedef struct ib__bcast {
    int32_t rank;
    int64_t out_dims[IB_MAX_RANK];
    int64_t in_strides[4][IB_MAX_RANK]; /* up to 4 inputs; stride 0 where broadcast */
    int32_t n_in;
} ib__bcast;
void ib__bcast_init(ib__bcast *b, const ib_tensor *out, int32_t n_in, const ib_tensor *const *in);
/* Offsets of each input for the linear output index oi. */
void ib__bcast_offsets(const ib__bcast *b, int64_t oi, int64_t *offsets);

/* dst (dense, row-major over dims) receives src[sum idx[d] * strides[d]] element by
 * element (strides in elements, any sign, 0 to broadcast; rank <= 2 * IB_MAX_RANK):
 * the engine behind Transpose, Expand, Tile, Slice and the depth ops (tensor_shape.c). */
void ib__strided_copy(void *dst, const void *src, int32_t rank, const int64_t *dims,
                      const int64_t *strides, size_t es, ib__pool *pool);

/* The region a Slice node takes from an input of `dims`: per axis its first index, step
 * and length (the spec's clamping applied). args: the node's starts, ends, axes and steps
 * tensors (NULL where absent; opset < 10 reads the attributes). For compilers that copy
 * the region themselves; the reference op uses the same rules. */
ib_status ib__slice_region(const ib__node *node, int32_t opset, int32_t rank, const int64_t *dims,
                           const ib_tensor *const args[4], int64_t *start, int64_t *step,
                           int64_t *len);

#endif /* IB_OPS_H */
