/* Static shape and dtype inference over a graph, with constant folding: values whose
 * inputs are all known are computed at load time by the ops' reference code, so shape
 * computations (Shape -> Gather -> Concat -> Reshape) resolve to static shapes. */
#ifndef IB_IR_SHAPE_INFERENCE_H
#define IB_IR_SHAPE_INFERENCE_H

#include "ir/graph.h"

typedef struct ib__infer_report {
    int32_t n_unsupported;            /* nodes whose op has no implementation */
    const ib__node *first_unsupported;
    int32_t n_folded;                 /* nodes whose outputs were computed at load time */
} ib__infer_report;

/* Largest output (elements) a node may have to be folded at load time. */
#define IB_FOLD_MAX_ELEMENTS (1 << 16)

/* Runs inference over graph->nodes in order (and over subgraphs). Fails on a node whose
 * attributes or input shapes are invalid, naming it. */
ib_status ib__infer_graph(ib__graph *graph, ib__infer_report *report);

/* True when every op in the graph and its subgraphs has an implementation; otherwise
 * records an IB_ERR_UNSUPPORTED message naming the first such node. */
ib_status ib__check_supported(const ib__graph *graph);

#endif /* IB_IR_SHAPE_INFERENCE_H */
