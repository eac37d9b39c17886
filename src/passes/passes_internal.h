/* State shared by the compiler passes while one plan is built (lower.c drives them). */
#ifndef IB_PASSES_INTERNAL_H
#define IB_PASSES_INTERNAL_H

#include "passes/compile_plan.h"

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
} ib__lower;

/* shapes.c: fills L->vals with concrete shapes for L->opt.batch, folding nodes whose
 * inputs became known (Shape of a now-static dim, ...). Marks structurally needed
 * nodes in L->live first, and leaves L->live = nodes that must run. */
ib_status ib__pass_shapes(ib__lower *L);
/* True when v's rank and dims are all known. */
bool ib__value_concrete(const ib__value *v);
/* True when every output of the node is a known constant in L->vals. */
bool ib__node_folded(const ib__lower *L, const ib__node *node);

/* memory_plan.c: first_use/last_use of every buffer from the kernels' arguments, then
 * arena offsets for TEMP buffers (alias groups share one lifetime), arena_bytes. */
ib_status ib__pass_memory_plan(ib__plan *plan);
/* The arguments of kernel k in ABI order (in, out, epilogue operands); returns count. */
int32_t ib__kernel_args(const ib__pkernel *k, int32_t *args, int32_t cap);

#endif /* IB_PASSES_INTERNAL_H */
