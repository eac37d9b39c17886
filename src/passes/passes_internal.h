/* State shared by the compiler passes while one plan is built (lower.c drives them). */
#ifndef IB_PASSES_INTERNAL_H
#define IB_PASSES_INTERNAL_H

#include "passes/compile_plan.h"

/* A fused node group, before it becomes kernels: its main part (an anchor, a folded
 * BatchNormalization, or a recognised pattern), then epilogue steps, each standing for
 * one or more element-wise nodes. */
#define IB_GROUP_MAX_NODES 64

typedef enum ib__group_kind {
    IB_GROUP_SINGLE = 0, /* one node: a template or the reference op */
    IB_GROUP_ANCHOR,     /* anchor [+ BatchNormalization] + epilogue */
    IB_GROUP_ELTWISE,    /* element-wise nodes[0] + epilogue */
    IB_GROUP_LAYERNORM,  /* decomposed layer normalization (+ epilogue) */
    IB_GROUP_ATTENTION,  /* MatMul, scale, [mask Add], Softmax, MatMul */
} ib__group_kind;

typedef struct ib__group {
    ib__group_kind kind;
    int32_t n_nodes, n_main; /* nodes[0, n_main): main part; the rest: epilogue nodes */
    const ib__node *nodes[IB_GROUP_MAX_NODES];
    const ib__node *anchor; /* the kernel's nodes[0] (synthetic for LAYERNORM) */
    int32_t n_in;
    const ib__value *in[IB_MAX_KERNEL_ARGS]; /* kernel inputs (NULL: omitted) */
    const ib__value *out;                    /* the group's result */
    int32_t n_epi;
    ib__epilogue_step epi[IB_MAX_EPILOGUE];
    const ib__value *operand[IB_MAX_EPILOGUE];
    int32_t epi_node[IB_MAX_EPILOGUE]; /* first node of each step, index into nodes */
    bool channel_axis_1; /* PER_CHANNEL operands index dim 1 (conv-like), else the last */
} ib__group;

typedef struct ib__lower {
    const ib__graph *graph;
    ib__plan *plan;
    ib__compile_options opt;
    int32_t n_values;
    ib__value *vals;   /* plan arena: per value index, the specialised copy */
    int32_t *buf;      /* per value index: its buffer id, -1 while none */
    uint8_t *live;     /* per node index: lowered (reaches an output, not folded) */
    int32_t *n_reads;  /* per value index: reads by live nodes (and graph outputs) */
    int32_t *group;    /* per node index: kernel group id, -1 while ungrouped */
    int32_t *cons_start, *cons; /* per value: live consumer node indices (CSR) */
    int32_t claim_token; /* group[] value of nodes a chain may take (-1 while grouping) */
    int32_t n_groups;
    ib__group *groups;
    int32_t cap_map;   /* layout copies, per buffer id: */
    int32_t *plain_copy, *nchwc_copy; /* converted buffer id, -1 when none yet */
} ib__lower;

/* lower.c: state for one plan (tests drive the passes one by one with it). */
ib_status ib__lower_init(ib__lower *L, const ib__graph *graph, const ib__target *target,
                         const ib__compile_options *opt);
void ib__lower_free(ib__lower *L, bool destroy_plan);

/* shapes.c: fills L->vals with concrete shapes for L->opt.batch, folding nodes whose
 * inputs became known (Shape of a now-static dim, ...). Marks structurally needed
 * nodes in L->live first, and leaves L->live = nodes that must run. */
ib_status ib__pass_shapes(ib__lower *L);
/* True when v's rank and dims are all known. */
bool ib__value_concrete(const ib__value *v);
/* True when every output of the node is a known constant in L->vals. */
bool ib__node_folded(const ib__lower *L, const ib__node *node);

/* fusion.c: counts reads and consumers, then groups the live nodes (every node its own
 * group with disable_fusion). */
ib_status ib__pass_fusion(ib__lower *L);
/* Groups nodes of `nodes` (a split group's nodes, in order) as an anchor or
 * element-wise chain starting at nodes[0]; *out covers at least nodes[0]. */
void ib__group_rest(ib__lower *L, const ib__node *const *nodes, int32_t n, ib__group *out);
/* A group of one node. */
void ib__group_single(const ib__node *node, ib__group *out);

/* lower.c: the buffer holding graph value v (WEIGHT for constants, else TEMP). */
ib_status ib__lower_value_buf(ib__lower *L, const ib__value *v, int32_t *out_id);

/* layout.c: adds kernel k (its buffers PLAIN so far) to the plan in the best layout:
 * tries NCHWC for templates preferring it, else PLAIN with conversions of blocked
 * inputs; then default knobs and packed weights. *added = false (plan unchanged) when
 * no template supports k and `allow_fallback_here` is false; with it, k becomes a
 * fallback kernel. */
ib_status ib__layout_add_kernel(ib__lower *L, ib__pkernel *k, bool allow_fallback_here,
                                bool *added);
/* Element-wise ops a blocked kernel may run on NCHWC data as well. */
bool ib__node_elementwise(ib__op_id op);
/* A PLAIN view of buffer b for a kernel that reads it (b itself, or a converted copy). */
ib_status ib__layout_plain_input(ib__lower *L, int32_t b, int32_t *out_id);

/* memory_plan.c: first_use/last_use of every buffer from the kernels' arguments, then
 * arena offsets for TEMP buffers (alias groups share one lifetime), arena_bytes. */
ib_status ib__pass_memory_plan(ib__plan *plan);
/* Drops weights no kernel reads (the originals of packed weights) from the blob; their
 * buffers stay, with nbytes 0. */
ib_status ib__pass_compact_weights(ib__plan *plan);
/* The arguments of kernel k in ABI order (in, out, epilogue operands); returns count. */
int32_t ib__kernel_args(const ib__pkernel *k, int32_t *args, int32_t cap);

#endif /* IB_PASSES_INTERNAL_H */
