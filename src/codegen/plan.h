/* The kernel plan: a model lowered for one target and one set of input shapes, as an
 * ordered list of kernels over planned buffers. Passes build it from the graph
 * (fusion, layout, memory planning, weight packing); kernel templates emit C for its
 * kernels; the codegen turns it into an artifact; the runtime executes it.
 *
 * Schedules are data: every tunable choice of a kernel lives in its knobs, which come
 * from the tuning database or the template's defaults for the target. */
#ifndef IB_CODEGEN_PLAN_H
#define IB_CODEGEN_PLAN_H

#include "codegen/source_builder.h"
#include "ir/graph.h"
#include "target/target_desc.h"

/* ---- Buffers ----------------------------------------------------------------------- */
typedef enum ib__buf_kind {
    IB_BUF_INPUT = 0, /* a model input, passed by the caller */
    IB_BUF_OUTPUT,    /* a model output, written into the caller's memory */
    IB_BUF_TEMP,      /* an intermediate in the session arena, at `offset` */
    IB_BUF_WEIGHT,    /* constant data in the weights blob (possibly packed), at `offset` */
} ib__buf_kind;

typedef enum ib__layout {
    IB_LAYOUT_PLAIN = 0, /* row-major in the logical dims */
    IB_LAYOUT_NCHWC,     /* logical [N, C, H, W] stored as [N, ceil(C/b), H, W, b], b = block,
                            channels past C zero-filled */
    IB_LAYOUT_PACKED,    /* weights rearranged by a template (pack_weights), opaque */
} ib__layout;

typedef struct ib__pbuf {
    ib__buf_kind kind;
    int32_t io_index; /* INPUT/OUTPUT: position in the model's inputs/outputs */
    ib_dtype dtype;
    int32_t rank;
    int64_t dims[IB_MAX_RANK]; /* logical dims (NCHW order for NCHWC) */
    ib__layout layout;
    int32_t block;   /* NCHWC channel block */
    size_t nbytes;   /* physical size */
    int64_t offset;  /* TEMP: arena offset; WEIGHT: blob offset (64-byte aligned) */
    const ib__value *value; /* the graph value held, NULL for derived buffers */
    int32_t first_use, last_use; /* kernel indices; for memory planning */
    int32_t alias_of; /* TEMP that shares another buffer's memory (reshape): its id, else -1 */
    bool scratch;     /* TEMP workspace of one kernel (an input it writes before reading) */
} ib__pbuf;

/* ---- Knobs -------------------------------------------------------------------------- */
#define IB_MAX_KNOBS 16
typedef struct ib__knobs {
    int32_t n;
    const char *name[IB_MAX_KNOBS]; /* static strings owned by the template */
    int64_t value[IB_MAX_KNOBS];
} ib__knobs;

void ib__knobs_set(ib__knobs *k, const char *name, int64_t value);
/* The knob's value, or dflt when unset. */
int64_t ib__knobs_get(const ib__knobs *k, const char *name, int64_t dflt);

/* ---- Epilogues: element-wise ops fused after a kernel's main computation ----------- */
typedef enum ib__epi_kind {
    IB_EPI_UNARY = 0,    /* op applied to the value (Relu, Sigmoid, Clip, HardSwish, ...) */
    IB_EPI_BINARY,       /* value (op) operand, e.g. Add of a bias or a residual */
} ib__epi_kind;

typedef enum ib__epi_operand {
    IB_EPI_SCALAR = 0,   /* one element */
    IB_EPI_PER_CHANNEL,  /* indexed by the output channel (conv C, gemm column N) */
    IB_EPI_FULL,         /* same logical shape and layout as the output */
} ib__epi_operand;

typedef struct ib__epilogue_step {
    ib__epi_kind kind;
    ib__op_id op;        /* IB_OP_RELU, IB_OP_ADD, IB_OP_MUL, IB_OP_CLIP, ... */
    int32_t operand_buf; /* BINARY: buffer id of the other operand */
    ib__epi_operand operand_kind;
    bool operand_first;  /* BINARY: operand (op) value, for Sub/Div */
    float alpha, beta;   /* op parameters: Clip min/max, LeakyRelu alpha, HardSigmoid a/b */
} ib__epilogue_step;

#define IB_MAX_EPILOGUE 8

/* ---- Kernels ----------------------------------------------------------------------- */
typedef struct ib__kernel_template ib__kernel_template;

#define IB_MAX_KERNEL_ARGS 16
typedef struct ib__pkernel {
    const ib__kernel_template *tmpl; /* NULL: fallback to the reference op of nodes[0] */
    int32_t n_nodes;
    const ib__node **nodes;          /* the fused group; nodes[0] is the anchor */
    int32_t n_in, in[IB_MAX_KERNEL_ARGS];   /* buffer ids: the anchor's inputs (weights are
                                               the packed buffers) */
    int32_t n_out, out[IB_MAX_KERNEL_ARGS]; /* buffer ids */
    int32_t n_epi;
    ib__epilogue_step epi[IB_MAX_EPILOGUE];
    ib__knobs knobs;
    char fn_name[64]; /* name of its function in the generated source */
} ib__pkernel;

typedef struct ib__plan {
    ib__arena *arena;
    const ib__graph *graph;
    ib__target target;
    int32_t n_bufs, cap_bufs;
    ib__pbuf *bufs;
    int32_t n_kernels, cap_kernels;
    ib__pkernel *kernels;
    int32_t n_inputs, n_outputs;    /* model inputs/outputs, in ib_model order */
    size_t arena_bytes;             /* planned peak of TEMP buffers */
    size_t weights_bytes;
    unsigned char *weights;         /* the blob (ib__aligned_alloc), weights_bytes long */
    /* allocated size of `weights` when it is still the block plan.c grew (weights_cap_of);
     * code that replaces the blob need not update them */
    size_t weights_cap;
    const void *weights_cap_of;
} ib__plan;

ib_status ib__plan_create(const ib__graph *graph, const ib__target *target, ib__plan **out);
void ib__plan_destroy(ib__plan *plan);
/* Appends a buffer / kernel; the returned id indexes plan->bufs / plan->kernels. */
ib_status ib__plan_add_buf(ib__plan *plan, const ib__pbuf *buf, int32_t *out_id);
ib_status ib__plan_add_kernel(ib__plan *plan, const ib__pkernel *k, int32_t *out_id);
/* Physical byte size of a buffer from dtype, dims, layout and block. */
size_t ib__pbuf_physical_bytes(const ib__pbuf *b);

/* ---- Kernel templates -------------------------------------------------------------- */
/* How a device kernel is launched: grid and block dims, dynamic shared memory bytes. */
typedef struct ib__launch_dims {
    int64_t grid[3];
    int32_t block[3];
    int32_t smem_bytes;
} ib__launch_dims;

/* A template generates one kind of kernel (conv2d_nchwc, gemm, pool2d_nchwc, ...).
 * All callbacks are pure functions of their arguments. */
struct ib__kernel_template {
    const char *name;
    /* Can this template implement kernel `k` (anchor node, buffer shapes/layouts,
     * epilogue) on `target`? Must check everything the emitted code assumes. */
    bool (*supports)(const ib__plan *plan, const ib__pkernel *k);
    /* The layout the template wants for its activation input/output (the layout pass
     * asks before deciding): IB_LAYOUT_PLAIN or IB_LAYOUT_NCHWC with *block set. */
    ib__layout (*preferred_layout)(const ib__plan *plan, const ib__node *anchor,
                                   const ib__target *target, int32_t *block);
    /* Fills default knobs from the target (vector width, registers, caches). */
    void (*default_knobs)(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs);
    /* Rejects knob values the emitter cannot honour (the tuner prunes with it). */
    bool (*knobs_valid)(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs);
    /* Rewrites the kernel's weight inputs into packed WEIGHT buffers: for each weight it
     * packs, adds a buffer (layout PACKED or NCHWC) with its data in `*blob_data` form
     * via ib__plan_add_weight, and replaces the id in k->in. May be NULL. */
    ib_status (*pack_weights)(ib__plan *plan, ib__pkernel *k);
    /* Emits `static int <k->fn_name>(const ib_kernel_abi *abi, void *const *args)`
     * where args[] are the kernel's buffers in order: k->in[0..n_in), k->out[0..n_out),
     * then the epilogue operand buffers in step order. Returns 0 on success. Emitted
     * code may use GCC vector extensions and the target's flags; it includes nothing. */
    ib_status (*emit)(const ib__plan *plan, const ib__pkernel *k, ib__sb *out);
    /* Floating-point operations of the kernel (for reports and the tuner). */
    double (*flops)(const ib__plan *plan, const ib__pkernel *k);
    /* Device (CUDA) templates only, NULL for CPU ones: the launch of the kernel, whose
     * emit writes `extern "C" __global__ void <fn_name>(float *a0, ...)` taking the same
     * buffers as args[] above, one pointer each (NULL for unary epilogue steps). */
    ib_status (*launch)(const ib__plan *plan, const ib__pkernel *k, ib__launch_dims *out);
};

/* Adds a WEIGHT buffer holding `nbytes` of `data` (copied into the blob at a 64-byte
 * aligned offset) and returns its id. */
ib_status ib__plan_add_weight(ib__plan *plan, const ib__pbuf *desc, const void *data,
                              size_t nbytes, int32_t *out_id);

/* The registry of templates, in preference order (src/codegen/templates/). */
#define IB_KERNEL_TEMPLATE_LIST(X) \
    X(conv2d_winograd_nchwc)       \
    X(conv2d_nchwc)                \
    X(conv2d_depthwise_nchwc)      \
    X(conv2d_pointwise)            \
    X(gemm)                        \
    X(pool2d)                      \
    X(softmax)                     \
    X(layernorm)                   \
    X(attention)                   \
    X(eltwise)                     \
    X(strided_copy)                \
    X(gather)                      \
    X(cast)                        \
    X(concat)                      \
    X(layout_transform)

#define IB__TEMPLATE_DECL(name) extern const ib__kernel_template ib__template_##name;
IB_KERNEL_TEMPLATE_LIST(IB__TEMPLATE_DECL)
#undef IB__TEMPLATE_DECL

/* INFERBOOSTER_WINOGRAD: 0 (=0 or off) conv2d_winograd_nchwc takes no convolution, 1
 * (unset) those it expects to win, 2 (=always) every one it can do. It changes the
 * compiled code, so the compiled-model cache keys on it. */
int ib__winograd_mode(void);
/* INFERBOOSTER_WINOGRAD_TILE: 2 or 4 forces that output tile on every Winograd kernel
 * (comparisons, tests); 0 (unset, anything else) lets the template choose. The cache
 * keys on it too. */
int ib__winograd_tile_override(void);

/* The CUDA templates (src/codegen/cuda/), used instead of the list above on CUDA targets. */
#define IB_CUDA_TEMPLATE_LIST(X) \
    X(cuda_conv2d)               \
    X(cuda_conv2d_depthwise)     \
    X(cuda_attention)            \
    X(cuda_gemm)                 \
    X(cuda_pool2d)               \
    X(cuda_softmax)              \
    X(cuda_layernorm)            \
    X(cuda_eltwise)              \
    X(cuda_gather)               \
    X(cuda_transpose)            \
    X(cuda_cast)

#define IB__TEMPLATE_DECL(name) extern const ib__kernel_template ib__template_##name;
IB_CUDA_TEMPLATE_LIST(IB__TEMPLATE_DECL)
#undef IB__TEMPLATE_DECL

/* The first template (in list order, the target's list) that supports k, or NULL. */
const ib__kernel_template *ib__template_find(const ib__plan *plan, const ib__pkernel *k);
const ib__kernel_template *ib__template_by_name(const char *name);

#endif /* IB_CODEGEN_PLAN_H */
