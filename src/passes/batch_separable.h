/* Batch separability: whether a graph's symbolic dim 0 is a batch whose samples never
 * mix, so that running rows [a, b) of every input yields rows [a, b) of every output
 * (what lets a session serve batch n with variants compiled for other sizes). */
#ifndef IB_PASSES_BATCH_SEPARABLE_H
#define IB_PASSES_BATCH_SEPARABLE_H

#include <stdbool.h>

#include "ir/graph.h"

typedef struct ib__batch_verdict {
    bool separable;
    char symbol[64];  /* the batch dim's name when separable */
    char reason[320]; /* why not, naming the node or value at fault */
} ib__batch_verdict;

/* Proves separability by propagating "dim 0 is the batch" through the nodes the rules
 * know (element-wise, Conv/Pool/normalisation, Gemm/MatMul with the batch as rows,
 * Reshape/Flatten/Transpose keeping dim 0, Softmax/Reduce/Concat/Gather/Slice on other
 * axes, ...); anything not proven is "not separable" with a reason. Fails only when out
 * of memory. */
ib_status ib__batch_analyze(const ib__graph *g, ib__batch_verdict *out);

#endif /* IB_PASSES_BATCH_SEPARABLE_H */
