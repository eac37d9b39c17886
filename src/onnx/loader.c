/* ONNX ModelProto -> graph IR. Walks ModelProto and the main GraphProto with the wire
 * scanner so initializer raw_data stays in the file mapping; every other message is
 * unpacked by protobuf-c, one node / value-info / tensor at a time, after its nesting
 * is checked. Owns graph construction from ONNX: values, initializers, nodes,
 * attributes and subgraphs. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx/onnx_internal.h"

typedef struct span {
    const uint8_t *p;
    size_t n;
} span;

typedef struct span_list {
    span *items;
    size_t count, cap;
} span_list;

typedef struct load_ctx {
    ib__onnx_model *model;
    ib__onnx_store *store;
    const char *base_dir;
    ib__arena *arena;
    ib__tensor_env init_env; /* initializers: their bytes are counted */
    ib__tensor_env attr_env; /* attribute tensors: copies, not counted */
    bool default_opset_known;
    int32_t default_opset;
    /* Every graph built, parents before children, so finalize can run top-down. */
    ib__graph **graphs;
    const char **labels;
    int32_t n_graphs, cap_graphs;
} load_ctx;

static ib_status build_graph(load_ctx *c, const Onnx__GraphProto *gp, const span_list *root_inits,
                             ib__graph *g, int depth);

static ib_status oom(const char *what) {
    return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
}

static ib_status span_push(span_list *l, const uint8_t *p, size_t n) {
    if (l->count == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        span *items = ib__realloc(l->items, ncap * sizeof *items);
        if (!items) return oom("model");
        l->items = items;
        l->cap = ncap;
    }
    l->items[l->count].p = p;
    l->items[l->count].n = n;
    l->count++;
    return IB_OK;
}

static ib_status want_wire(const char *what, const char *field, const ib__wire_field *f,
                           uint32_t wire_type) {
    if (f->wire_type == wire_type) return IB_OK;
    return ib__error(IB_ERR_INVALID_MODEL, "%s: field %u (%s) has wire type %u, expected %u", what,
                     f->number, field, f->wire_type, wire_type);
}

static ib_status register_graph(load_ctx *c, ib__graph *g, const char *label) {
    if (c->n_graphs == c->cap_graphs) {
        int32_t ncap = c->cap_graphs ? c->cap_graphs * 2 : 8;
        ib__graph **gs = ib__realloc(c->graphs, sizeof *gs * (size_t)ncap);
        if (!gs) return oom("model");
        c->graphs = gs;
        const char **ls = ib__realloc(c->labels, sizeof *ls * (size_t)ncap);
        if (!ls) return oom("model");
        c->labels = ls;
        c->cap_graphs = ncap;
    }
    const char *l = ib__arena_strdup(c->arena, label);
    if (!l) return oom("model");
    c->graphs[c->n_graphs] = g;
    c->labels[c->n_graphs] = l;
    c->n_graphs++;
    return IB_OK;
}

/* ---- Types ------------------------------------------------------------------------- */

typedef struct type_info {
    ib_dtype dtype;
    int32_t rank;
    int64_t dims[IB_MAX_RANK];
    const char *dim_param[IB_MAX_RANK];
} type_info;

static const char *type_kind_name(Onnx__TypeProto__ValueCase k) {
    switch (k) {
    case ONNX__TYPE_PROTO__VALUE_SEQUENCE_TYPE:
        return "sequence";
    case ONNX__TYPE_PROTO__VALUE_MAP_TYPE:
        return "map";
    case ONNX__TYPE_PROTO__VALUE_OPTIONAL_TYPE:
        return "optional";
    case ONNX__TYPE_PROTO__VALUE_SPARSE_TENSOR_TYPE:
        return "sparse tensor";
    default:
        return "unknown";
    }
}

/* A TypeProto as dtype and shape; what is absent stays unknown (UNDEFINED, rank -1). */
static ib_status parse_type(load_ctx *c, const Onnx__TypeProto *tp, const char *what,
                            type_info *out) {
    memset(out, 0, sizeof *out);
    out->rank = -1;
    if (!tp || tp->value_case == ONNX__TYPE_PROTO__VALUE__NOT_SET) return IB_OK;
    if (tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: %s types are not supported", what,
                         type_kind_name(tp->value_case));
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    if (tt->has_elem_type && tt->elem_type != 0) {
        if (!ib__dtype_is_valid(tt->elem_type))
            return ib__error(IB_ERR_INVALID_MODEL, "%s: unknown element type %d", what,
                             tt->elem_type);
        if (tt->elem_type == IB_DTYPE_STRING)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: string tensors are not supported", what);
        out->dtype = (ib_dtype)tt->elem_type;
    }
    if (!tt->shape) return IB_OK;
    if (tt->shape->n_dim > IB_MAX_RANK)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: rank %zu exceeds the maximum of %d", what,
                         tt->shape->n_dim, IB_MAX_RANK);
    out->rank = (int32_t)tt->shape->n_dim;
    for (int32_t i = 0; i < out->rank; i++) {
        const Onnx__TensorShapeProto__Dimension *d = tt->shape->dim[i];
        out->dims[i] = -1;
        if (!d) continue;
        if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            /* Some exporters write -1 for "dynamic": read any negative as unknown. */
            if (d->dim_value >= 0) out->dims[i] = d->dim_value;
        } else if (d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
                   d->dim_param && d->dim_param[0]) {
            out->dim_param[i] = ib__arena_strdup(c->arena, d->dim_param);
            if (!out->dim_param[i]) return oom(what);
        }
    }
    return IB_OK;
}

static void apply_type(ib__value *v, const type_info *t) {
    if (t->dtype != IB_DTYPE_UNDEFINED) v->dtype = t->dtype;
    if (t->rank >= 0) {
        v->rank = t->rank;
        for (int32_t i = 0; i < t->rank; i++) {
            v->dims[i] = t->dims[i];
            v->dim_param[i] = t->dim_param[i];
        }
    }
}

/* ---- Opsets ------------------------------------------------------------------------- */

static bool is_default_domain(const char *d) {
    return !d || d[0] == '\0' || strcmp(d, "ai.onnx") == 0;
}

/* Real models import a handful of domains; the cap keeps lookups cheap on hostile ones. */
#define MAX_OPSET_IMPORTS 256

static ib_status add_opsets(load_ctx *c, const span_list *spans) {
    ib__onnx_model *m = c->model;
    if (spans->count > MAX_OPSET_IMPORTS)
        return ib__error(IB_ERR_INVALID_MODEL, "model: %zu opset imports (at most %d allowed)",
                         spans->count, MAX_OPSET_IMPORTS);
    m->opsets = ib__arena_alloc(c->arena, sizeof *m->opsets * (spans->count + 1));
    if (!m->opsets) return oom("model");
    for (size_t i = 0; i < spans->count; i++) {
        Onnx__OperatorSetIdProto *op = onnx__operator_set_id_proto__unpack(
            &ib__pb_allocator, spans->items[i].n, spans->items[i].p);
        if (!op) {
            char what[64];
            snprintf(what, sizeof what, "model: opset_import #%zu", i);
            return ib__pb_unpack_failed(what);
        }
        const char *domain = is_default_domain(op->domain) ? "" : op->domain;
        int64_t version = op->has_version ? op->version : 0;
        ib_status st = IB_OK;
        if (version < 1 || version > INT32_MAX)
            st = ib__error(IB_ERR_INVALID_MODEL,
                           "model: opset_import for domain '%s' has invalid version %" PRId64,
                           domain, version);
        bool dup = false;
        for (int32_t k = 0; st == IB_OK && k < m->n_opsets; k++) {
            if (strcmp(m->opsets[k].domain, domain) != 0) continue;
            if (m->opsets[k].version != version)
                st = ib__error(IB_ERR_INVALID_MODEL,
                               "model: domain '%s' is imported twice, as opset %" PRId64
                               " and %" PRId64,
                               domain, m->opsets[k].version, version);
            dup = true;
        }
        if (st == IB_OK && !dup) {
            const char *d = ib__arena_strdup(c->arena, domain);
            if (!d) st = oom("model");
            m->opsets[m->n_opsets].domain = d;
            m->opsets[m->n_opsets].version = version;
            m->n_opsets++;
            if (domain[0] == '\0') {
                c->default_opset_known = true;
                c->default_opset = (int32_t)version;
            }
        }
        onnx__operator_set_id_proto__free_unpacked(op, &ib__pb_allocator);
        IB_TRY(st);
    }
    /* IR versions before 3 had no opset_import: they mean opset 1. */
    if (!c->default_opset_known && m->ir_version < 3) {
        c->default_opset_known = true;
        c->default_opset = 1;
    }
    return IB_OK;
}

static ib_status node_opset(load_ctx *c, ib__node *node) {
    if (is_default_domain(node->domain)) {
        if (!c->default_opset_known)
            return ib__error(IB_ERR_INVALID_MODEL,
                             "%s: the model imports no opset for the default ONNX domain",
                             ib__node_label(node));
        node->opset = c->default_opset;
        return IB_OK;
    }
    for (int32_t i = 0; i < c->model->n_opsets; i++)
        if (strcmp(c->model->opsets[i].domain, node->domain) == 0) {
            node->opset = (int32_t)c->model->opsets[i].version;
            return IB_OK;
        }
    return ib__error(IB_ERR_INVALID_MODEL, "%s: domain '%s' is not imported by the model",
                     ib__node_label(node), node->domain);
}

/* ---- Attributes ---------------------------------------------------------------------- */

static ib_status build_subgraph(load_ctx *c, ib__graph *parent, const Onnx__GraphProto *gp,
                                int depth, const char *what, ib__graph **out) {
    if (depth > IB_ONNX_MAX_GRAPH_DEPTH)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: subgraphs nested deeper than %d levels", what,
                         IB_ONNX_MAX_GRAPH_DEPTH);
    ib__graph *sub;
    IB_TRY(ib__graph_create(parent, &sub));
    IB_TRY(register_graph(c, sub, what));
    ib_status st = build_graph(c, gp, NULL, sub, depth);
    if (st) return ib__error_prefix(st, "%s: ", what);
    *out = sub;
    return IB_OK;
}

static ib_status attr_tensor(load_ctx *c, const Onnx__TensorProto *tp, const char *what,
                             ib_tensor **out) {
    if (!tp) return ib__error(IB_ERR_INVALID_MODEL, "%s: holds no tensor", what);
    ib_tensor *t = ib__arena_alloc(c->arena, sizeof *t);
    if (!t) return oom(what);
    IB_TRY(ib__tensor_from_proto(tp, NULL, 0, false, false, &c->attr_env, what, t));
    *out = t;
    return IB_OK;
}

static char *arena_bytes(ib__arena *arena, const ProtobufCBinaryData *b) {
    char *s = ib__arena_alloc(arena, b->len + 1);
    if (s && b->len) memcpy(s, b->data, b->len);
    return s;
}

/* Infers an attribute's kind from the field set, for files older than AttributeProto.type. */
static int32_t infer_attr_kind(const Onnx__AttributeProto *ap) {
    if (ap->has_f) return IB_ATTR_FLOAT;
    if (ap->has_i) return IB_ATTR_INT;
    if (ap->has_s) return IB_ATTR_STRING;
    if (ap->t) return IB_ATTR_TENSOR;
    if (ap->g) return IB_ATTR_GRAPH;
    if (ap->sparse_tensor) return IB_ATTR_SPARSE_TENSOR;
    if (ap->tp) return IB_ATTR_TYPE_PROTO;
    if (ap->n_floats) return IB_ATTR_FLOATS;
    if (ap->n_ints) return IB_ATTR_INTS;
    if (ap->n_strings) return IB_ATTR_STRINGS;
    if (ap->n_tensors) return IB_ATTR_TENSORS;
    if (ap->n_graphs) return IB_ATTR_GRAPHS;
    if (ap->n_sparse_tensors) return IB_ATTR_SPARSE_TENSORS;
    if (ap->n_type_protos) return IB_ATTR_TYPE_PROTOS;
    return IB_ATTR_UNDEFINED;
}

static ib_status build_attr(load_ctx *c, ib__graph *g, const ib__node *node,
                            const Onnx__AttributeProto *ap, size_t index, int depth, ib__attr *a) {
    if (!ap || !ap->name || !ap->name[0])
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute #%zu has no name",
                         ib__node_label(node), index);
    char what[400];
    snprintf(what, sizeof what, "%s: attribute '%.100s'", ib__node_label(node), ap->name);
    if (ap->ref_attr_name && ap->ref_attr_name[0])
        return ib__error(IB_ERR_INVALID_MODEL,
                         "%s refers to function attribute '%.100s' outside a function", what,
                         ap->ref_attr_name);
    int32_t kind = ap->has_type ? (int32_t)ap->type : infer_attr_kind(ap);
    a->name = ib__arena_strdup(c->arena, ap->name);
    if (!a->name) return oom(what);
    a->kind = (ib__attr_kind)kind;
    size_t n = 0;
    switch (kind) {
    case IB_ATTR_FLOATS:
        n = ap->n_floats;
        break;
    case IB_ATTR_INTS:
        n = ap->n_ints;
        break;
    case IB_ATTR_STRINGS:
        n = ap->n_strings;
        break;
    case IB_ATTR_TENSORS:
        n = ap->n_tensors;
        break;
    case IB_ATTR_GRAPHS:
        n = ap->n_graphs;
        break;
    default:
        break;
    }
    if (n > INT32_MAX) return ib__error(IB_ERR_INVALID_MODEL, "%s has too many values", what);
    a->count = (int32_t)n;
    switch (kind) {
    case IB_ATTR_FLOAT:
        a->f = ap->f;
        return IB_OK;
    case IB_ATTR_INT:
        a->i = ap->i;
        return IB_OK;
    case IB_ATTR_STRING:
        a->s = arena_bytes(c->arena, &ap->s);
        a->s_len = ap->s.len;
        return a->s ? IB_OK : oom(what);
    case IB_ATTR_TENSOR:
        return attr_tensor(c, ap->t, what, &a->t);
    case IB_ATTR_GRAPH:
        if (!ap->g) return ib__error(IB_ERR_INVALID_MODEL, "%s holds no graph", what);
        return build_subgraph(c, g, ap->g, depth + 1, what, &a->g);
    case IB_ATTR_FLOATS:
        a->floats = ib__arena_alloc(c->arena, sizeof(float) * (n ? n : 1));
        if (!a->floats) return oom(what);
        if (n) memcpy(a->floats, ap->floats, sizeof(float) * n);
        return IB_OK;
    case IB_ATTR_INTS:
        a->ints = ib__arena_alloc(c->arena, sizeof(int64_t) * (n ? n : 1));
        if (!a->ints) return oom(what);
        if (n) memcpy(a->ints, ap->ints, sizeof(int64_t) * n);
        return IB_OK;
    case IB_ATTR_STRINGS:
        a->strings = ib__arena_alloc(c->arena, sizeof(char *) * (n ? n : 1));
        if (!a->strings) return oom(what);
        for (size_t i = 0; i < n; i++) {
            a->strings[i] = arena_bytes(c->arena, &ap->strings[i]);
            if (!a->strings[i]) return oom(what);
        }
        return IB_OK;
    case IB_ATTR_TENSORS:
        a->tensors = ib__arena_alloc(c->arena, sizeof(ib_tensor *) * (n ? n : 1));
        if (!a->tensors) return oom(what);
        for (size_t i = 0; i < n; i++) {
            char w[460];
            snprintf(w, sizeof w, "%s[%zu]", what, i);
            IB_TRY(attr_tensor(c, ap->tensors[i], w, &a->tensors[i]));
        }
        return IB_OK;
    case IB_ATTR_GRAPHS:
        a->graphs = ib__arena_alloc(c->arena, sizeof(ib__graph *) * (n ? n : 1));
        if (!a->graphs) return oom(what);
        for (size_t i = 0; i < n; i++) {
            char w[460];
            snprintf(w, sizeof w, "%s[%zu]", what, i);
            if (!ap->graphs[i]) return ib__error(IB_ERR_INVALID_MODEL, "%s holds no graph", w);
            IB_TRY(build_subgraph(c, g, ap->graphs[i], depth + 1, w, &a->graphs[i]));
        }
        return IB_OK;
    case IB_ATTR_SPARSE_TENSOR:
    case IB_ATTR_SPARSE_TENSORS:
    case IB_ATTR_TYPE_PROTO:
    case IB_ATTR_TYPE_PROTOS:
        a->count = 0; /* kept as kind only: no op reads their contents */
        return IB_OK;
    case IB_ATTR_UNDEFINED:
        return ib__error(IB_ERR_INVALID_MODEL, "%s has no type and no value", what);
    default:
        return ib__error(IB_ERR_INVALID_MODEL, "%s has unknown type %d", what, kind);
    }
}

/* ---- Nodes and graphs -------------------------------------------------------------- */

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorting, not pairwise comparison: a hostile node may carry a million attributes. */
static ib_status check_unique_attrs(const ib__node *node) {
    if (node->n_attrs < 2) return IB_OK;
    const char **names = ib__calloc((size_t)node->n_attrs, sizeof *names);
    if (!names) return oom(ib__node_label(node));
    for (int32_t i = 0; i < node->n_attrs; i++) names[i] = node->attrs[i].name;
    qsort(names, (size_t)node->n_attrs, sizeof *names, compare_names);
    ib_status st = IB_OK;
    for (int32_t i = 1; i < node->n_attrs && st == IB_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            st = ib__error(IB_ERR_INVALID_MODEL, "%s: attribute '%.100s' appears twice",
                           ib__node_label(node), names[i]);
    ib__free(names);
    return st;
}

static ib_status build_node(load_ctx *c, ib__graph *g, const Onnx__NodeProto *np, size_t index,
                            int depth) {
    if (!np->op_type || !np->op_type[0])
        return ib__error(IB_ERR_INVALID_MODEL, "node #%zu ('%.100s') has no op_type", index,
                         np->name ? np->name : "");
    if (np->n_input > INT32_MAX || np->n_output > INT32_MAX || np->n_attribute > INT32_MAX)
        return ib__error(IB_ERR_INVALID_MODEL, "node #%zu has too many inputs or outputs", index);
    ib__node *node;
    IB_TRY(ib__graph_add_node(g, np->name, np->op_type, np->domain, 0, &node));
    IB_TRY(node_opset(c, node));
    const char *label = ib__node_label(node);
    node->inputs = ib__arena_alloc(c->arena, sizeof(ib__value *) * (np->n_input + 1));
    node->outputs = ib__arena_alloc(c->arena, sizeof(ib__value *) * (np->n_output + 1));
    node->attrs = ib__arena_alloc(c->arena, sizeof(ib__attr) * (np->n_attribute + 1));
    if (!node->inputs || !node->outputs || !node->attrs) return oom(label);
    for (size_t i = 0; i < np->n_input; i++) {
        const char *name = np->input[i];
        ib__value *v = NULL;
        if (name && name[0]) { /* "" is an omitted optional input */
            v = ib__graph_resolve(g, name);
            if (!v) IB_TRY(ib__graph_get_value(g, name, &v)); /* finalize reports it */
        }
        node->inputs[node->n_inputs++] = v;
    }
    for (size_t i = 0; i < np->n_output; i++) {
        const char *name = np->output[i];
        ib__value *v = NULL;
        if (name && name[0]) IB_TRY(ib__graph_get_value(g, name, &v));
        node->outputs[node->n_outputs++] = v;
    }
    for (size_t i = 0; i < np->n_attribute; i++) {
        IB_TRY(build_attr(c, g, node, np->attribute[i], i, depth, &node->attrs[node->n_attrs]));
        node->n_attrs++;
    }
    return check_unique_attrs(node);
}

static ib_status add_initializer(load_ctx *c, ib__graph *g, const char *name, size_t index,
                                 const ib_tensor *t) {
    if (!name || !name[0])
        return ib__error(IB_ERR_INVALID_MODEL, "initializer #%zu has no name", index);
    if (ib__graph_find_value(g, name))
        return ib__error(IB_ERR_INVALID_MODEL, "initializer '%s' is listed twice", name);
    ib__value *v;
    IB_TRY(ib__graph_get_value(g, name, &v));
    ib_tensor *copy = ib__arena_alloc(c->arena, sizeof *copy);
    if (!copy) return oom(name);
    *copy = *t;
    v->kind = IB_VALUE_INITIALIZER;
    v->dtype = t->dtype;
    v->rank = t->rank;
    for (int32_t i = 0; i < t->rank; i++) v->dims[i] = t->shape[i];
    v->constant = copy;
    return ib__graph_add_initializer(g, v);
}

/* An initializer of the main graph, its raw_data left in the mapping. */
static ib_status load_root_initializer(load_ctx *c, ib__graph *g, const span *s, size_t index) {
    char what[300];
    snprintf(what, sizeof what, "initializer #%zu", index);
    Onnx__TensorProto *tp;
    const uint8_t *raw;
    size_t raw_len;
    bool has_raw;
    IB_TRY(ib__tensor_proto_parse(s->p, s->n, what, &tp, &raw, &raw_len, &has_raw));
    if (tp->name && tp->name[0]) snprintf(what, sizeof what, "initializer '%.200s'", tp->name);
    ib_tensor t;
    ib_status st = ib__tensor_from_proto(tp, raw, raw_len, has_raw, true, &c->init_env, what, &t);
    if (st == IB_OK) st = add_initializer(c, g, tp->name, index, &t);
    onnx__tensor_proto__free_unpacked(tp, &ib__pb_allocator);
    return st;
}

/* Graph inputs; listed[i] marks initializer i (of the n_before values existing before)
 * once an input has named it. */
static ib_status build_inputs(load_ctx *c, const Onnx__GraphProto *gp, ib__graph *g,
                              uint8_t *listed, int32_t n_before) {
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        if (!vi->name || !vi->name[0])
            return ib__error(IB_ERR_INVALID_MODEL, "graph input #%zu has no name", i);
        char what[300];
        snprintf(what, sizeof what, "graph input '%.200s'", vi->name);
        type_info t;
        IB_TRY(parse_type(c, vi->type, what, &t));
        ib__value *v = ib__graph_find_value(g, vi->name);
        if (v && (v->kind == IB_VALUE_INPUT || (v->index < n_before && listed[v->index])))
            return ib__error(IB_ERR_INVALID_MODEL, "%s is listed twice", what);
        if (v) { /* an initializer a caller may override: its data decides dtype and shape */
            listed[v->index] = 1;
            if (t.dtype != IB_DTYPE_UNDEFINED && t.dtype != v->dtype)
                return ib__error(IB_ERR_INVALID_MODEL,
                                 "%s is declared %s but its initializer "
                                 "holds %s",
                                 what, ib_dtype_name(t.dtype), ib_dtype_name(v->dtype));
        } else {
            IB_TRY(ib__graph_get_value(g, vi->name, &v));
            v->kind = IB_VALUE_INPUT;
            apply_type(v, &t);
        }
        IB_TRY(ib__graph_add_input(g, v));
    }
    return IB_OK;
}

static ib_status build_graph(load_ctx *c, const Onnx__GraphProto *gp, const span_list *root_inits,
                             ib__graph *g, int depth) {
    g->name = ib__arena_strdup(c->arena, gp->name ? gp->name : "");
    if (!g->name) return oom("graph");
    if (gp->n_sparse_initializer)
        return ib__error(IB_ERR_UNSUPPORTED, "sparse initializers are not supported ('%.100s')",
                         gp->sparse_initializer[0] && gp->sparse_initializer[0]->values &&
                                 gp->sparse_initializer[0]->values->name
                             ? gp->sparse_initializer[0]->values->name
                             : "");
    if (root_inits)
        for (size_t i = 0; i < root_inits->count; i++)
            IB_TRY(load_root_initializer(c, g, &root_inits->items[i], i));
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *tp = gp->initializer[i];
        char what[300];
        snprintf(what, sizeof what, "initializer '%.200s'", tp->name ? tp->name : "");
        ib_tensor t;
        IB_TRY(ib__tensor_from_proto(tp, NULL, 0, false, false, &c->init_env, what, &t));
        IB_TRY(add_initializer(c, g, tp->name, i, &t));
    }
    /* Marks initializers already listed as inputs (every initializer exists by now). */
    int32_t n_before = g->n_values;
    uint8_t *listed = ib__calloc((size_t)n_before + 1, 1);
    if (!listed) return oom("graph inputs");
    ib_status st = build_inputs(c, gp, g, listed, n_before);
    ib__free(listed);
    IB_TRY(st);
    /* Node outputs exist before any node is built, so a subgraph can resolve an outer
     * name whatever the order of the enclosing graph's nodes. */
    for (size_t i = 0; i < gp->n_node; i++)
        for (size_t k = 0; k < gp->node[i]->n_output; k++) {
            const char *name = gp->node[i]->output[k];
            ib__value *v;
            if (name && name[0]) IB_TRY(ib__graph_get_value(g, name, &v));
        }
    for (size_t i = 0; i < gp->n_value_info; i++) {
        const Onnx__ValueInfoProto *vi = gp->value_info[i];
        if (!vi->name) continue;
        ib__value *v = ib__graph_find_value(g, vi->name);
        if (!v || v->kind != IB_VALUE_INTERMEDIATE) continue;
        char what[300];
        snprintf(what, sizeof what, "value_info '%.200s'", vi->name);
        type_info t;
        ib_status hint = parse_type(c, vi->type, what, &t);
        if (hint == IB_ERR_UNSUPPORTED) { /* a hint only: sequences etc. inside the graph */
            ib__error_clear();
            continue;
        }
        IB_TRY(hint);
        apply_type(v, &t);
    }
    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        if (!vi->name || !vi->name[0])
            return ib__error(IB_ERR_INVALID_MODEL, "graph output #%zu has no name", i);
        char what[300];
        snprintf(what, sizeof what, "graph output '%.200s'", vi->name);
        type_info t;
        IB_TRY(parse_type(c, vi->type, what, &t));
        ib__value *v = ib__graph_resolve(g, vi->name);
        if (!v) IB_TRY(ib__graph_get_value(g, vi->name, &v)); /* finalize reports it */
        if (ib__graph_find_value(g, vi->name) == v && v->kind != IB_VALUE_INITIALIZER)
            apply_type(v, &t);
        IB_TRY(ib__graph_add_output(g, v));
    }
    for (size_t i = 0; i < gp->n_node; i++) IB_TRY(build_node(c, g, gp->node[i], i, depth));
    return IB_OK;
}

/* ---- The main graph and the model ----------------------------------------------------- */

typedef struct root_parts {
    span_list nodes, inits, inputs, outputs, value_infos;
    span doc; /* doc_string; the last one written wins, as in protobuf */
    size_t n_sparse;
    Onnx__NodeProto **node;
    Onnx__ValueInfoProto **input, **output, **value_info;
} root_parts;

static ib_status collect_root(const uint8_t *buf, size_t len, root_parts *r, char **name) {
    size_t pos = 0;
    for (;;) {
        ib__wire_field f;
        bool more;
        IB_TRY(ib__wire_next(buf, len, &pos, &f, &more, "graph"));
        if (!more) return IB_OK;
        span_list *l = NULL;
        const char *field = NULL;
        switch (f.number) {
        case 1:
            l = &r->nodes;
            field = "node";
            break;
        case 2:
            field = "name";
            break;
        case 5:
            l = &r->inits;
            field = "initializer";
            break;
        case 11:
            l = &r->inputs;
            field = "input";
            break;
        case 12:
            l = &r->outputs;
            field = "output";
            break;
        case 13:
            l = &r->value_infos;
            field = "value_info";
            break;
        case 15:
            field = "sparse_initializer";
            r->n_sparse++;
            break;
        case 10:
            field = "doc_string";
            break;
        default:
            continue;
        }
        IB_TRY(want_wire("graph", field, &f, IB_WIRE_LEN));
        if (f.number == 10) {
            r->doc.p = f.data;
            r->doc.n = f.len;
        } else if (l) {
            IB_TRY(span_push(l, f.data, f.len));
        } else if (f.number == 2) {
            char *s = ib__realloc(*name, f.len + 1);
            if (!s) return oom("graph");
            memcpy(s, f.data, f.len);
            s[f.len] = '\0';
            *name = s;
        }
    }
}

static ib_status unpack_value_infos(const span_list *l, const char *kind,
                                    Onnx__ValueInfoProto ***out) {
    *out = ib__calloc(l->count + 1, sizeof **out);
    if (!*out) return oom("graph");
    for (size_t i = 0; i < l->count; i++) {
        char what[64];
        snprintf(what, sizeof what, "graph %s #%zu", kind, i);
        IB_TRY(
            ib__wire_check_nesting(l->items[i].p, l->items[i].n, IB_WIRE_MSG_VALUE_INFO, 0, what));
        (*out)[i] = onnx__value_info_proto__unpack(&ib__pb_allocator, l->items[i].n, l->items[i].p);
        if (!(*out)[i]) return ib__pb_unpack_failed(what);
    }
    return IB_OK;
}

static void free_value_infos(Onnx__ValueInfoProto **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++)
        if (v[i]) onnx__value_info_proto__free_unpacked(v[i], &ib__pb_allocator);
    ib__free(v);
}

static ib_status load_root_graph(load_ctx *c, const uint8_t *buf, size_t len) {
    root_parts r;
    memset(&r, 0, sizeof r);
    char *name = NULL;
    ib_status st = collect_root(buf, len, &r, &name);
    if (st == IB_OK) {
        char *doc = ib__arena_strndup(c->arena, (const char *)r.doc.p, r.doc.n);
        if (doc)
            c->model->graph_doc_string = doc;
        else
            st = oom("graph");
    }
    if (st == IB_OK && r.n_sparse)
        st = ib__error(IB_ERR_UNSUPPORTED, "graph: sparse initializers are not supported");
    if (st == IB_OK) {
        r.node = ib__calloc(r.nodes.count + 1, sizeof *r.node);
        if (!r.node) st = oom("graph");
    }
    for (size_t i = 0; st == IB_OK && i < r.nodes.count; i++) {
        char what[64];
        snprintf(what, sizeof what, "node #%zu", i);
        st = ib__wire_check_nesting(r.nodes.items[i].p, r.nodes.items[i].n, IB_WIRE_MSG_NODE, 0,
                                    what);
        if (st) break;
        r.node[i] =
            onnx__node_proto__unpack(&ib__pb_allocator, r.nodes.items[i].n, r.nodes.items[i].p);
        if (!r.node[i]) st = ib__pb_unpack_failed(what);
    }
    if (st == IB_OK) st = unpack_value_infos(&r.inputs, "input", &r.input);
    if (st == IB_OK) st = unpack_value_infos(&r.outputs, "output", &r.output);
    if (st == IB_OK) st = unpack_value_infos(&r.value_infos, "value_info", &r.value_info);
    if (st == IB_OK) {
        Onnx__GraphProto gp = ONNX__GRAPH_PROTO__INIT;
        gp.name = name;
        gp.n_node = r.nodes.count;
        gp.node = r.node;
        gp.n_input = r.inputs.count;
        gp.input = r.input;
        gp.n_output = r.outputs.count;
        gp.output = r.output;
        gp.n_value_info = r.value_infos.count;
        gp.value_info = r.value_info;
        st = build_graph(c, &gp, &r.inits, c->model->graph, 0);
    }
    if (r.node) {
        for (size_t i = 0; i < r.nodes.count; i++)
            if (r.node[i]) onnx__node_proto__free_unpacked(r.node[i], &ib__pb_allocator);
        ib__free(r.node);
    }
    free_value_infos(r.input, r.inputs.count);
    free_value_infos(r.output, r.outputs.count);
    free_value_infos(r.value_info, r.value_infos.count);
    ib__free(r.nodes.items);
    ib__free(r.inits.items);
    ib__free(r.inputs.items);
    ib__free(r.outputs.items);
    ib__free(r.value_infos.items);
    ib__free(name);
    return st;
}

static ib_status model_string(load_ctx *c, const ib__wire_field *f, const char **out) {
    char *s = ib__arena_strndup(c->arena, (const char *)f->data, f->len);
    if (!s) return oom("model");
    *out = s;
    return IB_OK;
}


/* metadata_props: each StringStringEntryProto {key = 1, value = 2} into arena strings. */
static ib_status add_props(load_ctx *c, const span_list *spans) {
    ib__onnx_model *m = c->model;
    if (!spans->count) return IB_OK;
    m->prop_keys = ib__arena_alloc(c->arena, spans->count * sizeof *m->prop_keys);
    m->prop_values = ib__arena_alloc(c->arena, spans->count * sizeof *m->prop_values);
    if (!m->prop_keys || !m->prop_values) return oom("model");
    for (size_t i = 0; i < spans->count; i++) {
        char what[48];
        snprintf(what, sizeof what, "model: metadata_props #%zu", i);
        span key = {NULL, 0}, value = {NULL, 0};
        size_t pos = 0;
        for (;;) {
            ib__wire_field f;
            bool more;
            IB_TRY(ib__wire_next(spans->items[i].p, spans->items[i].n, &pos, &f, &more, what));
            if (!more) break;
            if (f.number != 1 && f.number != 2) continue;
            IB_TRY(want_wire(what, f.number == 1 ? "key" : "value", &f, IB_WIRE_LEN));
            span *dst = f.number == 1 ? &key : &value;
            dst->p = f.data;
            dst->n = f.len;
        }
        char *k = ib__arena_strndup(c->arena, (const char *)key.p, key.n);
        char *v = ib__arena_strndup(c->arena, (const char *)value.p, value.n);
        if (!k || !v) return oom("model");
        m->prop_keys[i] = k;
        m->prop_values[i] = v;
    }
    m->n_props = spans->count;
    return IB_OK;
}

static ib_status load_model(load_ctx *c, const uint8_t *buf, size_t len) {
    ib__onnx_model *m = c->model;
    m->producer_name = m->producer_version = m->domain = "";
    m->doc_string = m->graph_doc_string = "";
    span graph = {NULL, 0};
    bool have_graph = false;
    span_list opsets = {NULL, 0, 0}, props = {NULL, 0, 0};
    size_t pos = 0;
    ib_status st = IB_OK;
    for (;;) {
        ib__wire_field f;
        bool more;
        st = ib__wire_next(buf, len, &pos, &f, &more, "model");
        if (st || !more) break;
        switch (f.number) {
        case 1:
            st = want_wire("model", "ir_version", &f, IB_WIRE_VARINT);
            m->ir_version = (int64_t)f.value;
            break;
        case 2:
            st = want_wire("model", "producer_name", &f, IB_WIRE_LEN);
            if (!st) st = model_string(c, &f, &m->producer_name);
            break;
        case 3:
            st = want_wire("model", "producer_version", &f, IB_WIRE_LEN);
            if (!st) st = model_string(c, &f, &m->producer_version);
            break;
        case 4:
            st = want_wire("model", "domain", &f, IB_WIRE_LEN);
            if (!st) st = model_string(c, &f, &m->domain);
            break;
        case 5:
            st = want_wire("model", "model_version", &f, IB_WIRE_VARINT);
            m->model_version = (int64_t)f.value;
            break;
        case 7:
            st = want_wire("model", "graph", &f, IB_WIRE_LEN);
            if (!st && have_graph)
                st = ib__error(IB_ERR_INVALID_MODEL, "model: the graph field appears twice");
            graph.p = f.data;
            graph.n = f.len;
            have_graph = true;
            break;
        case 8:
            st = want_wire("model", "opset_import", &f, IB_WIRE_LEN);
            if (!st) st = span_push(&opsets, f.data, f.len);
            break;
        case 6:
            st = want_wire("model", "doc_string", &f, IB_WIRE_LEN);
            if (!st) st = model_string(c, &f, &m->doc_string);
            break;
        case 14:
            st = want_wire("model", "metadata_props", &f, IB_WIRE_LEN);
            if (!st) st = span_push(&props, f.data, f.len);
            break;
        default:
            break; /* functions, training info: not needed */
        }
        if (st) break;
    }
    if (st == IB_OK && !have_graph)
        st = ib__error(IB_ERR_INVALID_MODEL, "model: no graph (is this an ONNX model file?)");
    if (st == IB_OK && (m->ir_version < 0 || m->ir_version > INT32_MAX))
        st = ib__error(IB_ERR_INVALID_MODEL, "model: ir_version %" PRId64 " is invalid",
                       m->ir_version);
    if (st == IB_OK) st = add_opsets(c, &opsets);
    if (st == IB_OK) st = add_props(c, &props);
    ib__free(opsets.items);
    ib__free(props.items);
    IB_TRY(st);
    ib__graph *root = m->graph;
    root->ir_version = (int32_t)m->ir_version;
    root->opset = c->default_opset_known ? c->default_opset : 0;
    IB_TRY(register_graph(c, root, "graph"));
    IB_TRY(load_root_graph(c, graph.p, graph.n));
    /* Parents first: a subgraph's reads of outer values then add to their use counts
     * after the enclosing graph has counted its own. */
    for (int32_t i = 0; i < c->n_graphs; i++) {
        st = ib__graph_finalize(c->graphs[i]);
        if (st && i > 0) return ib__error_prefix(st, "%s: ", c->labels[i]);
        IB_TRY(st);
    }
    m->weight_bytes_mapped = c->init_env.bytes_mapped;
    m->weight_bytes_copied = c->init_env.bytes_copied;
    return IB_OK;
}

/* Creates the model shell whose store will own the mappings. */
static ib_status model_create(ib__onnx_model **out) {
    ib__onnx_model *m = ib__calloc(1, sizeof *m);
    ib__onnx_store *store = ib__calloc(1, sizeof *store);
    if (!m || !store) {
        ib__free(m);
        ib__free(store);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory loading a model");
    }
    m->priv = store;
    ib_status st = ib__graph_create(NULL, &m->graph);
    if (st) {
        ib__onnx_model_destroy(m);
        return st;
    }
    *out = m;
    return IB_OK;
}

static ib_status load_mapped(ib__onnx_model *m, const ib__onnx_mapping *map, const char *base_dir) {
    load_ctx c;
    memset(&c, 0, sizeof c);
    c.model = m;
    c.store = m->priv;
    c.base_dir = base_dir;
    c.arena = m->graph->arena;
    c.init_env.arena = c.arena;
    c.init_env.store = c.store;
    c.init_env.base_dir = base_dir;
    c.attr_env = c.init_env;
    const uint8_t *buf = map->addr ? map->addr : (const uint8_t *)"";
    ib_status st = map->len ? load_model(&c, buf, map->len)
                            : ib__error(IB_ERR_INVALID_MODEL, "model: the file is empty");
    ib__free(c.graphs);
    ib__free(c.labels);
    return st;
}

ib_status ib__onnx_load_file(const char *path, ib__onnx_model **out) {
    if (!path || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "path and out are required");
    ib__onnx_model *m = NULL;
    IB_TRY(model_create(&m));
    ib__onnx_mapping *map = NULL;
    ib_status st = ib__onnx_map_file(m->priv, path, &map);
    char *dir = NULL;
    if (st == IB_OK) {
        const char *slash = strrchr(path, '/');
        dir = slash ? ib__malloc((size_t)(slash - path) + 2) : ib__strdup(".");
        if (!dir) {
            st = oom(path);
        } else if (slash) {
            size_t n = slash == path ? 1 : (size_t)(slash - path); /* "/m.onnx" -> "/" */
            memcpy(dir, path, n);
            dir[n] = '\0';
        }
    }
    if (st == IB_OK) st = load_mapped(m, map, dir);
    ib__free(dir);
    if (st == IB_OK) {
        char real[PATH_MAX];
        if (!realpath(path, real))
            st = ib__error(IB_ERR_IO, "cannot resolve '%s': %s", path, strerror(errno));
        else if (!(m->source_path = ib__strdup(real)))
            st = oom(path);
    }
    if (st) {
        ib__onnx_model_destroy(m);
        return st;
    }
    *out = m;
    return IB_OK;
}

ib_status ib__onnx_load_bytes(const void *data, size_t size, const char *base_dir,
                              ib__onnx_model **out) {
    if ((!data && size) || !out)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "data and out are required");
    ib__onnx_model *m = NULL;
    IB_TRY(model_create(&m));
    ib__onnx_mapping *map = NULL;
    ib_status st = ib__onnx_map_copy(m->priv, data, size, &map);
    if (st == IB_OK) {
        m->source_bytes = map->addr;
        m->source_size = map->len;
        st = load_mapped(m, map, base_dir);
    }
    if (st) {
        ib__onnx_model_destroy(m);
        return st;
    }
    *out = m;
    return IB_OK;
}

void ib__onnx_model_destroy(ib__onnx_model *model) {
    if (!model) return;
    ib__graph_destroy(model->graph);
    ib__onnx_store_release(model->priv);
    ib__free(model->priv);
    ib__free(model->source_path);
    ib__free(model);
}
