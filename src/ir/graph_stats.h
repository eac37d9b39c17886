/* Static statistics of a graph, from its inferred shapes: op histogram, parameter count
 * and bytes, and an estimate of floating-point operations per run. Used by
 * `inferbooster info` and meant for the server's model metadata. */
#ifndef IB_IR_GRAPH_STATS_H
#define IB_IR_GRAPH_STATS_H

#include "ir/graph.h"

typedef struct ib__op_count {
    const char *op_type; /* borrowed from the graph */
    const char *domain;  /* "" for the default domain */
    int64_t count;
} ib__op_count;

typedef struct ib__graph_statistics {
    int64_t n_nodes;       /* including nodes of subgraphs (If/Loop/Scan bodies) */
    int32_t n_op_types;
    ib__op_count *ops;     /* sorted by count, descending, then by op type */
    int64_t param_count;   /* elements of initializers (root graph and subgraphs) */
    int64_t param_bytes;
    /* FLOPs of one run. A multiply-add counts 2 (Conv, ConvTranspose, Gemm, MatMul,
     * Einsum, recurrent cells); element-wise, pooling, normalisation and reduction ops
     * count a few per element; data movement counts 0. Only root-graph nodes count:
     * how often a Loop or Scan body runs is not static, so control flow makes the
     * total unknown. */
    bool flops_known;          /* every counted node's cost was derivable */
    double flops;              /* sum over nodes whose cost is known */
    int64_t n_flops_unknown;   /* nodes whose shapes were not fully known */
    const ib__node *first_flops_unknown;
} ib__graph_statistics;

/* Fills *out (free with ib__graph_stats_free). The graph is only read. */
ib_status ib__graph_stats(const ib__graph *graph, ib__graph_statistics *out);
void ib__graph_stats_free(ib__graph_statistics *stats);

/* The FLOPs of one node from the known shapes of its values; false when a shape it
 * needs is unknown (symbolic) or the op is control flow. */
bool ib__node_flops(const ib__node *node, double *out_flops);

#endif /* IB_IR_GRAPH_STATS_H */
