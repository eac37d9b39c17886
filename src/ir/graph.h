/* The graph IR: values, nodes, attributes and graphs. Everything a graph holds (nodes,
 * names, attributes, folded constants) lives in its arena and dies with it. */
#ifndef IB_IR_GRAPH_H
#define IB_IR_GRAPH_H

#include "core/core.h"
#include "ir/op_list.h"

typedef struct ib__graph ib__graph;
typedef struct ib__node ib__node;

/* Where a value comes from. */
typedef enum ib__value_kind {
    IB_VALUE_INTERMEDIATE = 0, /* produced by a node */
    IB_VALUE_INPUT,            /* graph input fed at run time */
    IB_VALUE_INITIALIZER,      /* weight (possibly also listed as an input: overridable) */
    IB_VALUE_OUTER,            /* subgraph: captured from an enclosing graph */
} ib__value_kind;

/* A tensor-valued edge of the graph with what is known of it statically.
 * rank == -1: rank unknown. dims[i] == -1: unknown, with dim_param[i] naming it when
 * the model did ("batch"). constant != NULL when the value's data is known (weights,
 * Constant nodes and values folded from them). */
typedef struct ib__value {
    const char *name;
    ib__value_kind kind;
    ib_dtype dtype; /* IB_DTYPE_UNDEFINED when unknown */
    int32_t rank;
    int64_t dims[IB_MAX_RANK];
    const char *dim_param[IB_MAX_RANK];
    const ib_tensor *constant;
    ib__node *producer; /* NULL for inputs, initializers, outer values */
    int32_t index;      /* position in graph->values */
    int32_t n_uses;     /* number of node inputs (and graph outputs) reading it */
} ib__value;

typedef enum ib__attr_kind {
    IB_ATTR_UNDEFINED = 0,
    IB_ATTR_FLOAT = 1,
    IB_ATTR_INT = 2,
    IB_ATTR_STRING = 3,
    IB_ATTR_TENSOR = 4,
    IB_ATTR_GRAPH = 5,
    IB_ATTR_FLOATS = 6,
    IB_ATTR_INTS = 7,
    IB_ATTR_STRINGS = 8,
    IB_ATTR_TENSORS = 9,
    IB_ATTR_GRAPHS = 10,
    IB_ATTR_SPARSE_TENSOR = 11,
    IB_ATTR_SPARSE_TENSORS = 12,
    IB_ATTR_TYPE_PROTO = 13,
    IB_ATTR_TYPE_PROTOS = 14,
} ib__attr_kind; /* values match ONNX AttributeProto.AttributeType */

typedef struct ib__attr {
    const char *name;
    ib__attr_kind kind;
    float f;
    int64_t i;
    const char *s; /* NUL-terminated copy; s_len bytes (may contain NULs) */
    size_t s_len;
    ib_tensor *t;
    ib__graph *g;
    int32_t count; /* element count of the list kinds */
    float *floats;
    int64_t *ints;
    const char **strings;
    ib_tensor **tensors;
    ib__graph **graphs;
} ib__attr;

struct ib__node {
    const char *name;    /* may be "" */
    const char *op_type; /* as in the model */
    const char *domain;  /* "" for the default ONNX domain */
    ib__op_id op;        /* IB_OP_UNKNOWN when no implementation exists */
    int32_t opset;       /* opset version imported for the node's domain */
    int32_t n_inputs;
    ib__value **inputs; /* NULL entries for omitted optional inputs */
    int32_t n_outputs;
    ib__value **outputs; /* NULL entries for omitted optional outputs */
    int32_t n_attrs;
    ib__attr *attrs;
    int32_t index; /* position in graph->nodes (topological order) */
};

struct ib__graph {
    ib__arena *arena;
    const char *name;
    ib__graph *parent; /* enclosing graph of a subgraph, else NULL */
    int32_t n_nodes;
    ib__node **nodes; /* topologically sorted */
    int32_t n_values;
    ib__value **values;
    int32_t n_inputs;
    ib__value **inputs; /* runtime inputs (initializers that are also inputs included) */
    int32_t n_outputs;
    ib__value **outputs;
    int32_t n_initializers;
    ib__value **initializers;
    int32_t opset;      /* default-domain opset */
    int32_t ir_version; /* of the model */
    /* bookkeeping (graph.c): growable arrays and the name index */
    int32_t cap_nodes, cap_values, cap_inputs, cap_outputs, cap_initializers;
    uint32_t map_cap; /* power of two */
    int32_t *map;     /* value index + 1, 0 = empty */
    ib__graph *root;
    ib__graph *next_subgraph; /* chain of subgraphs owned by the root */
};

/* ---- Construction (used by the loader and by tests that build graphs by hand) ---- */
ib_status ib__graph_create(ib__graph *parent, ib__graph **out);
void ib__graph_destroy(ib__graph *graph); /* subgraphs share the root's arena */
/* Finds a value by name in this graph (not the parents); NULL when absent. */
ib__value *ib__graph_find_value(const ib__graph *graph, const char *name);
/* Finds a value by name, creating it (kind INTERMEDIATE, rank -1) when absent. */
ib_status ib__graph_get_value(ib__graph *graph, const char *name, ib__value **out);
ib_status ib__graph_add_node(ib__graph *graph, const char *name, const char *op_type,
                             const char *domain, int32_t opset, ib__node **out);
/* Appends to the graph's input / output / initializer lists. */
ib_status ib__graph_add_input(ib__graph *graph, ib__value *v);
ib_status ib__graph_add_output(ib__graph *graph, ib__value *v);
ib_status ib__graph_add_initializer(ib__graph *graph, ib__value *v);
/* Looks a name up in this graph, then in the enclosing graphs. */
ib__value *ib__graph_resolve(const ib__graph *graph, const char *name);
/* Sorts nodes topologically, links producers and counts uses; a cycle, a value with two
 * producers or an input nobody produces is an IB_ERR_INVALID_MODEL naming it. */
ib_status ib__graph_finalize(ib__graph *graph);

/* ---- Attribute access (defaults when absent; wrong kind is an error) ------------- */
const ib__attr *ib__node_attr(const ib__node *node, const char *name);
ib_status ib__attr_int(const ib__node *node, const char *name, int64_t dflt, int64_t *out);
ib_status ib__attr_float(const ib__node *node, const char *name, float dflt, float *out);
/* *out = NULL when absent and no default. */
ib_status ib__attr_string(const ib__node *node, const char *name, const char *dflt,
                          const char **out);
/* *count = 0 and *out = NULL when absent. */
ib_status ib__attr_ints(const ib__node *node, const char *name, int32_t *count,
                        const int64_t **out);
ib_status ib__attr_floats(const ib__node *node, const char *name, int32_t *count,
                          const float **out);
/* "node 'conv1' (Conv)" for messages; uses a small thread-local buffer. */
const char *ib__node_label(const ib__node *node);

#endif /* IB_IR_GRAPH_H */
