/* Graph construction, name lookup, topological sort and attribute access. */
#include <stdio.h>
#include <string.h>

#include "ir/graph.h"

static uint32_t hash_name(const char *s) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

ib_status ib__graph_create(ib__graph *parent, ib__graph **out) {
    ib__graph *g = ib__calloc(1, sizeof *g);
    if (!g) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a graph");
    if (parent) {
        g->root = parent->root;
        g->arena = parent->arena;
        g->parent = parent;
        g->opset = parent->opset;
        g->ir_version = parent->ir_version;
        g->next_subgraph = g->root->next_subgraph;
        g->root->next_subgraph = g;
    } else {
        ib_status st = ib__arena_create(&g->arena);
        if (st) {
            ib__free(g);
            return st;
        }
        g->root = g;
    }
    g->name = "";
    *out = g;
    return IB_OK;
}

static void free_tables(ib__graph *g) {
    ib__free(g->nodes);
    ib__free(g->values);
    ib__free(g->inputs);
    ib__free(g->outputs);
    ib__free(g->initializers);
    ib__free(g->map);
}

void ib__graph_destroy(ib__graph *graph) {
    if (!graph || graph->root != graph) return; /* subgraphs die with their root */
    ib__graph *sub = graph->next_subgraph;
    while (sub) {
        ib__graph *next = sub->next_subgraph;
        free_tables(sub);
        ib__free(sub);
        sub = next;
    }
    free_tables(graph);
    ib__arena_destroy(graph->arena);
    ib__free(graph);
}

/* Grows *arr (of pointers) to hold one more element. */
static ib_status push_ptr(void ***arr, int32_t *count, int32_t *cap, void *item) {
    if (*count == *cap) {
        int32_t ncap = *cap ? *cap * 2 : 16;
        if (ncap > (1 << 28)) return ib__error(IB_ERR_INVALID_MODEL, "graph too large");
        void **n = ib__realloc(*arr, sizeof(void *) * (size_t)ncap);
        if (!n) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory growing a graph");
        *arr = n;
        *cap = ncap;
    }
    (*arr)[(*count)++] = item;
    return IB_OK;
}

ib__value *ib__graph_find_value(const ib__graph *g, const char *name) {
    if (!g->map) return NULL;
    uint32_t mask = g->map_cap - 1;
    for (uint32_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
        int32_t slot = g->map[i];
        if (slot == 0) return NULL;
        ib__value *v = g->values[slot - 1];
        if (strcmp(v->name, name) == 0) return v;
    }
}

ib__value *ib__graph_resolve(const ib__graph *graph, const char *name) {
    for (const ib__graph *g = graph; g; g = g->parent) {
        ib__value *v = ib__graph_find_value(g, name);
        if (v) return v;
    }
    return NULL;
}

static ib_status map_rebuild(ib__graph *g, uint32_t cap) {
    int32_t *map = ib__calloc(cap, sizeof(int32_t));
    if (!map) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory indexing a graph");
    for (int32_t v = 0; v < g->n_values; v++) {
        uint32_t i = hash_name(g->values[v]->name) & (cap - 1);
        while (map[i]) i = (i + 1) & (cap - 1);
        map[i] = v + 1;
    }
    ib__free(g->map);
    g->map = map;
    g->map_cap = cap;
    return IB_OK;
}

ib_status ib__graph_get_value(ib__graph *g, const char *name, ib__value **out) {
    ib__value *v = ib__graph_find_value(g, name);
    if (v) {
        *out = v;
        return IB_OK;
    }
    v = ib__arena_alloc(g->arena, sizeof *v);
    if (!v) return IB_ERR_OUT_OF_MEMORY;
    v->name = ib__arena_strdup(g->arena, name);
    if (!v->name) return IB_ERR_OUT_OF_MEMORY;
    v->rank = -1;
    v->index = g->n_values;
    IB_TRY(push_ptr((void ***)&g->values, &g->n_values, &g->cap_values, v));
    if ((uint32_t)g->n_values * 2 > g->map_cap) {
        IB_TRY(map_rebuild(g, g->map_cap ? g->map_cap * 2 : 64));
    } else {
        uint32_t i = hash_name(name) & (g->map_cap - 1);
        while (g->map[i]) i = (i + 1) & (g->map_cap - 1);
        g->map[i] = g->n_values;
    }
    *out = v;
    return IB_OK;
}

ib_status ib__graph_add_node(ib__graph *g, const char *name, const char *op_type,
                             const char *domain, int32_t opset, ib__node **out) {
    ib__node *n = ib__arena_alloc(g->arena, sizeof *n);
    if (!n) return IB_ERR_OUT_OF_MEMORY;
    n->name = ib__arena_strdup(g->arena, name ? name : "");
    n->op_type = ib__arena_strdup(g->arena, op_type ? op_type : "");
    n->domain = ib__arena_strdup(g->arena, domain ? domain : "");
    if (!n->name || !n->op_type || !n->domain) return IB_ERR_OUT_OF_MEMORY;
    n->opset = opset;
    bool default_domain = n->domain[0] == '\0' || strcmp(n->domain, "ai.onnx") == 0;
    n->op = default_domain ? ib__op_lookup(n->op_type) : IB_OP_UNKNOWN;
    n->index = g->n_nodes;
    IB_TRY(push_ptr((void ***)&g->nodes, &g->n_nodes, &g->cap_nodes, n));
    *out = n;
    return IB_OK;
}

ib_status ib__graph_add_input(ib__graph *g, ib__value *v) {
    return push_ptr((void ***)&g->inputs, &g->n_inputs, &g->cap_inputs, v);
}
ib_status ib__graph_add_output(ib__graph *g, ib__value *v) {
    return push_ptr((void ***)&g->outputs, &g->n_outputs, &g->cap_outputs, v);
}
ib_status ib__graph_add_initializer(ib__graph *g, ib__value *v) {
    return push_ptr((void ***)&g->initializers, &g->n_initializers, &g->cap_initializers, v);
}

static void heap_push(int32_t *h, int32_t *n, int32_t x) {
    int32_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > x) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static int32_t heap_pop(int32_t *h, int32_t *n) {
    int32_t top = h[0], last = h[--(*n)], i = 0;
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

/* Kahn's algorithm over value producers. Stable: keeps the model's order among ready
 * nodes, so a valid ONNX file (already sorted) is left as it is. */
ib_status ib__graph_finalize(ib__graph *g) {
    int32_t n = g->n_nodes;
    for (int32_t v = 0; v < g->n_values; v++) {
        g->values[v]->producer = NULL;
        g->values[v]->n_uses = 0;
    }
    for (int32_t i = 0; i < n; i++) {
        ib__node *node = g->nodes[i];
        for (int32_t o = 0; o < node->n_outputs; o++) {
            ib__value *v = node->outputs[o];
            if (!v) continue;
            if (v->producer || v->kind != IB_VALUE_INTERMEDIATE)
                return ib__error(IB_ERR_INVALID_MODEL,
                                 "value '%s' is produced twice (again by %s)", v->name,
                                 ib__node_label(node));
            v->producer = node;
        }
    }
    int32_t *pending = ib__calloc((size_t)n + 1, sizeof(int32_t));
    int32_t *order = ib__calloc((size_t)n + 1, sizeof(int32_t));
    int32_t *queue = ib__calloc((size_t)n + 1, sizeof(int32_t));
    /* consumers lists: CSR over values */
    int32_t *cons_start = ib__calloc((size_t)g->n_values + 1, sizeof(int32_t));
    ib_status st = IB_OK;
    if (!pending || !order || !queue || !cons_start) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory sorting the graph");
        goto done;
    }
    int64_t n_edges = 0;
    for (int32_t i = 0; i < n; i++) {
        ib__node *node = g->nodes[i];
        for (int32_t k = 0; k < node->n_inputs; k++) {
            ib__value *v = node->inputs[k];
            if (!v) continue;
            v->n_uses++;
            if (v->kind == IB_VALUE_INTERMEDIATE && !v->producer && ib__graph_find_value(g, v->name) == v) {
                st = ib__error(IB_ERR_INVALID_MODEL,
                               "%s reads '%s', which no node, input or initializer provides",
                               ib__node_label(node), v->name);
                goto done;
            }
            if (v->producer && ib__graph_find_value(g, v->name) == v) {
                pending[i]++;
                cons_start[v->index + 1]++;
                n_edges++;
            }
        }
    }
    for (int32_t o = 0; o < g->n_outputs; o++) g->outputs[o]->n_uses++;
    for (int32_t v = 0; v < g->n_values; v++) cons_start[v + 1] += cons_start[v];
    int32_t *cons = ib__calloc((size_t)n_edges + 1, sizeof(int32_t));
    int32_t *fill = ib__calloc((size_t)g->n_values + 1, sizeof(int32_t));
    if (!cons || !fill) {
        ib__free(cons);
        ib__free(fill);
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory sorting the graph");
        goto done;
    }
    for (int32_t i = 0; i < n; i++) {
        ib__node *node = g->nodes[i];
        for (int32_t k = 0; k < node->n_inputs; k++) {
            ib__value *v = node->inputs[k];
            if (v && v->producer && ib__graph_find_value(g, v->name) == v)
                cons[cons_start[v->index] + fill[v->index]++] = i;
        }
    }
    /* The ready set is a min-heap on the model's node index, so the result is the
     * smallest topological order: a model that is already sorted keeps its order. */
    int32_t heap_n = 0, n_sorted = 0;
    for (int32_t i = 0; i < n; i++)
        if (pending[i] == 0) heap_push(queue, &heap_n, i);
    while (heap_n > 0) {
        int32_t i = heap_pop(queue, &heap_n);
        order[n_sorted++] = i;
        ib__node *node = g->nodes[i];
        for (int32_t o = 0; o < node->n_outputs; o++) {
            ib__value *v = node->outputs[o];
            if (!v) continue;
            for (int32_t c = cons_start[v->index]; c < cons_start[v->index + 1]; c++)
                if (--pending[cons[c]] == 0) heap_push(queue, &heap_n, cons[c]);
        }
    }
    ib__free(cons);
    ib__free(fill);
    if (n_sorted != n) {
        for (int32_t i = 0; i < n; i++)
            if (pending[i] > 0) {
                st = ib__error(IB_ERR_INVALID_MODEL,
                               "the graph has a cycle through %s", ib__node_label(g->nodes[i]));
                goto done;
            }
    }
    {
        ib__node **sorted = ib__calloc((size_t)n + 1, sizeof(ib__node *));
        if (!sorted) {
            st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory sorting the graph");
            goto done;
        }
        for (int32_t i = 0; i < n; i++) {
            sorted[i] = g->nodes[order[i]];
            sorted[i]->index = i;
        }
        if (n) memcpy(g->nodes, sorted, sizeof(ib__node *) * (size_t)n);
        ib__free(sorted);
    }
    for (int32_t o = 0; o < g->n_outputs; o++) {
        ib__value *v = g->outputs[o];
        if (v->kind == IB_VALUE_INTERMEDIATE && !v->producer) {
            st = ib__error(IB_ERR_INVALID_MODEL, "graph output '%s' is not produced by any node",
                           v->name);
            goto done;
        }
    }
done:
    ib__free(pending);
    ib__free(order);
    ib__free(queue);
    ib__free(cons_start);
    return st;
}

const ib__attr *ib__node_attr(const ib__node *node, const char *name) {
    for (int32_t i = 0; i < node->n_attrs; i++)
        if (strcmp(node->attrs[i].name, name) == 0) return &node->attrs[i];
    return NULL;
}

static ib_status wrong_kind(const ib__node *node, const char *name, const char *want) {
    return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute '%s' should be %s",
                     ib__node_label(node), name, want);
}

ib_status ib__attr_int(const ib__node *node, const char *name, int64_t dflt, int64_t *out) {
    const ib__attr *a = ib__node_attr(node, name);
    if (!a) {
        *out = dflt;
        return IB_OK;
    }
    if (a->kind != IB_ATTR_INT) return wrong_kind(node, name, "an int");
    *out = a->i;
    return IB_OK;
}

ib_status ib__attr_float(const ib__node *node, const char *name, float dflt, float *out) {
    const ib__attr *a = ib__node_attr(node, name);
    if (!a) {
        *out = dflt;
        return IB_OK;
    }
    if (a->kind == IB_ATTR_INT) { /* some exporters write integral floats as ints */
        *out = (float)a->i;
        return IB_OK;
    }
    if (a->kind != IB_ATTR_FLOAT) return wrong_kind(node, name, "a float");
    *out = a->f;
    return IB_OK;
}

ib_status ib__attr_string(const ib__node *node, const char *name, const char *dflt,
                          const char **out) {
    const ib__attr *a = ib__node_attr(node, name);
    if (!a) {
        *out = dflt;
        return IB_OK;
    }
    if (a->kind != IB_ATTR_STRING) return wrong_kind(node, name, "a string");
    *out = a->s;
    return IB_OK;
}

ib_status ib__attr_ints(const ib__node *node, const char *name, int32_t *count,
                        const int64_t **out) {
    const ib__attr *a = ib__node_attr(node, name);
    if (!a) {
        *count = 0;
        *out = NULL;
        return IB_OK;
    }
    if (a->kind != IB_ATTR_INTS) return wrong_kind(node, name, "a list of ints");
    *count = a->count;
    *out = a->ints;
    return IB_OK;
}

ib_status ib__attr_floats(const ib__node *node, const char *name, int32_t *count,
                          const float **out) {
    const ib__attr *a = ib__node_attr(node, name);
    if (!a) {
        *count = 0;
        *out = NULL;
        return IB_OK;
    }
    if (a->kind != IB_ATTR_FLOATS) return wrong_kind(node, name, "a list of floats");
    *count = a->count;
    *out = a->floats;
    return IB_OK;
}

const char *ib__node_label(const ib__node *node) {
    static _Thread_local char buf[4][256];
    static _Thread_local int which;
    char *b = buf[which++ & 3];
    if (node->name && node->name[0])
        snprintf(b, 256, "node '%.160s' (%.64s)", node->name, node->op_type);
    else
        snprintf(b, 256, "node #%d (%.64s)", node->index, node->op_type);
    return b;
}
