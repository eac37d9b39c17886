/* Graph statistics (see graph_stats.h): op histogram, parameters and a FLOP estimate. */
#include "ir/graph_stats.h"

#include <stdlib.h>
#include <string.h>

/* Nesting deeper than any real model; a hostile one stops here instead of exhausting
 * the stack. */
#define IB_STATS_MAX_DEPTH 64

/* Element count of a value whose shape is fully known, else -1. */
static double value_count(const ib__value *v) {
    if (!v || v->rank < 0 || v->rank > IB_MAX_RANK) return -1;
    double n = 1;
    for (int32_t i = 0; i < v->rank; i++) {
        if (v->dims[i] < 0) return -1;
        n *= (double)v->dims[i];
    }
    return n;
}

static const ib__value *node_in(const ib__node *n, int32_t i) {
    return i >= 0 && i < n->n_inputs ? n->inputs[i] : NULL;
}

static const ib__value *node_out(const ib__node *n, int32_t i) {
    return i >= 0 && i < n->n_outputs ? n->outputs[i] : NULL;
}

/* Sum of the element counts of the present outputs; -1 when one is unknown. */
static double outputs_count(const ib__node *n) {
    double total = 0;
    for (int32_t i = 0; i < n->n_outputs; i++) {
        if (!n->outputs[i]) continue;
        double c = value_count(n->outputs[i]);
        if (c < 0) return -1;
        total += c;
    }
    return total;
}

static bool scaled(double count, double per_element, double *out) {
    if (count < 0) return false;
    *out = count * per_element;
    return true;
}

static bool matmul_flops(const ib__node *n, int32_t a_index, double *out) {
    const ib__value *a = node_in(n, a_index);
    double y = value_count(node_out(n, 0));
    if (!a || a->rank < 1 || y < 0) return false;
    int64_t k = a->dims[a->rank - 1];
    if (k < 0) return false;
    *out = 2.0 * y * (double)k;
    return true;
}

static bool gemm_flops(const ib__node *n, double *out) {
    const ib__value *a = node_in(n, 0);
    double y = value_count(node_out(n, 0));
    int64_t trans_a = 0;
    if (!a || a->rank != 2 || y < 0) return false;
    if (ib__attr_int(n, "transA", 0, &trans_a) != IB_OK) return false;
    int64_t k = trans_a ? a->dims[0] : a->dims[1];
    if (k < 0) return false;
    *out = 2.0 * y * (double)k + (node_in(n, 2) ? y : 0);
    return true;
}

/* Conv: each output element is a dot product over C/group x kernel = W elements / M. */
static bool conv_flops(const ib__node *n, int32_t w_index, int32_t bias_index, double *out) {
    const ib__value *w = node_in(n, w_index);
    double y = value_count(node_out(n, 0));
    double wc = value_count(w);
    if (y < 0 || wc < 0 || w->rank < 1 || w->dims[0] <= 0) return false;
    *out = 2.0 * y * (wc / (double)w->dims[0]) + (node_in(n, bias_index) ? y : 0);
    return true;
}

/* ConvTranspose: each input element scatters into M/group x kernel = W elements / C. */
static bool conv_transpose_flops(const ib__node *n, double *out) {
    const ib__value *w = node_in(n, 1);
    double x = value_count(node_in(n, 0));
    double wc = value_count(w);
    double y = value_count(node_out(n, 0));
    if (x < 0 || wc < 0 || y < 0 || w->rank < 1 || w->dims[0] <= 0) return false;
    *out = 2.0 * x * (wc / (double)w->dims[0]) + (node_in(n, 2) ? y : 0);
    return true;
}

/* Einsum: the iteration space is the product of every index letter's extent; each point
 * costs about one operation per operand. Ellipses are not derived. */
static bool einsum_flops(const ib__node *n, double *out) {
    const char *eq = NULL;
    if (ib__attr_string(n, "equation", NULL, &eq) != IB_OK || !eq) return false;
    int64_t extent[128];
    for (int i = 0; i < 128; i++) extent[i] = -1;
    int32_t operand = 0, pos = 0;
    for (const char *p = eq; *p && !(p[0] == '-' && p[1] == '>'); p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == ' ') continue;
        if (ch == '.') return false;
        if (ch == ',') {
            operand++;
            pos = 0;
            continue;
        }
        if (ch >= 128 || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))) return false;
        const ib__value *v = node_in(n, operand);
        if (!v || pos >= v->rank || v->dims[pos] < 0) return false;
        int64_t d = v->dims[pos++];
        if (extent[ch] < 0 || extent[ch] == 1) extent[ch] = d; /* 1 broadcasts */
    }
    if (operand + 1 != n->n_inputs) return false;
    double space = 1;
    for (int i = 0; i < 128; i++)
        if (extent[i] >= 0) space *= (double)extent[i];
    *out = space * (double)n->n_inputs;
    return true;
}

/* RNN/GRU/LSTM: per step and batch row, one matrix-vector product with W and R each. */
static bool recurrent_flops(const ib__node *n, double *out) {
    const ib__value *x = node_in(n, 0);
    double w = value_count(node_in(n, 1)), r = value_count(node_in(n, 2));
    int64_t layout = 0;
    if (!x || x->rank != 3 || w < 0 || r < 0) return false;
    if (ib__attr_int(n, "layout", 0, &layout) != IB_OK) return false;
    int64_t seq = x->dims[layout ? 1 : 0], batch = x->dims[layout ? 0 : 1];
    if (seq < 0 || batch < 0) return false;
    *out = 2.0 * (double)seq * (double)batch * (w + r);
    return true;
}

static bool pool_flops(const ib__node *n, double *out) {
    int32_t k_count = 0;
    const int64_t *k = NULL;
    double y = value_count(node_out(n, 0));
    if (y < 0 || ib__attr_ints(n, "kernel_shape", &k_count, &k) != IB_OK) return false;
    double window = 1;
    for (int32_t i = 0; i < k_count; i++) window *= (double)(k[i] > 0 ? k[i] : 1);
    *out = y * window;
    return true;
}

bool ib__node_flops(const ib__node *n, double *out_flops) {
    if (!n || !out_flops) return false;
    double f = 0;
    bool ok;
    switch (n->op) {
    /* Data movement and metadata: no arithmetic. */
    case IB_OP_CONSTANT: case IB_OP_CONSTANT_OF_SHAPE: case IB_OP_SHAPE: case IB_OP_SIZE:
    case IB_OP_RESHAPE: case IB_OP_FLATTEN: case IB_OP_SQUEEZE: case IB_OP_UNSQUEEZE:
    case IB_OP_IDENTITY: case IB_OP_DROPOUT: case IB_OP_TRANSPOSE: case IB_OP_CONCAT:
    case IB_OP_SPLIT: case IB_OP_SLICE: case IB_OP_GATHER: case IB_OP_GATHER_ELEMENTS:
    case IB_OP_GATHER_ND: case IB_OP_SCATTER: case IB_OP_SCATTER_ELEMENTS:
    case IB_OP_SCATTER_ND: case IB_OP_EXPAND: case IB_OP_TILE: case IB_OP_PAD:
    case IB_OP_CAST: case IB_OP_CAST_LIKE: case IB_OP_DEPTH_TO_SPACE:
    case IB_OP_SPACE_TO_DEPTH: case IB_OP_RANGE: case IB_OP_NON_ZERO: case IB_OP_EYE_LIKE:
    case IB_OP_COMPRESS: case IB_OP_REVERSE_SEQUENCE: case IB_OP_ONE_HOT: case IB_OP_TRILU:
        ok = true;
        break;
    case IB_OP_MAT_MUL: case IB_OP_MAT_MUL_INTEGER: case IB_OP_Q_LINEAR_MAT_MUL:
        ok = matmul_flops(n, 0, &f);
        break;
    case IB_OP_GEMM:
        ok = gemm_flops(n, &f);
        break;
    case IB_OP_CONV:
        ok = conv_flops(n, 1, 2, &f);
        break;
    case IB_OP_CONV_INTEGER:
        ok = conv_flops(n, 1, -1, &f);
        break;
    case IB_OP_Q_LINEAR_CONV:
        ok = conv_flops(n, 3, 8, &f);
        break;
    case IB_OP_CONV_TRANSPOSE:
        ok = conv_transpose_flops(n, &f);
        break;
    case IB_OP_EINSUM:
        ok = einsum_flops(n, &f);
        break;
    case IB_OP_RNN: case IB_OP_GRU: case IB_OP_LSTM:
        ok = recurrent_flops(n, &f);
        break;
    case IB_OP_AVERAGE_POOL: case IB_OP_MAX_POOL: case IB_OP_LP_POOL:
        ok = pool_flops(n, &f);
        break;
    /* One operation per input element. */
    case IB_OP_GLOBAL_AVERAGE_POOL: case IB_OP_GLOBAL_MAX_POOL: case IB_OP_GLOBAL_LP_POOL:
    case IB_OP_REDUCE_L1: case IB_OP_REDUCE_L2: case IB_OP_REDUCE_LOG_SUM:
    case IB_OP_REDUCE_LOG_SUM_EXP: case IB_OP_REDUCE_MAX: case IB_OP_REDUCE_MEAN:
    case IB_OP_REDUCE_MIN: case IB_OP_REDUCE_PROD: case IB_OP_REDUCE_SUM:
    case IB_OP_REDUCE_SUM_SQUARE: case IB_OP_ARG_MAX: case IB_OP_ARG_MIN: case IB_OP_TOP_K:
    case IB_OP_CUM_SUM: case IB_OP_UNIQUE:
        ok = scaled(value_count(node_in(n, 0)), 1, &f);
        break;
    case IB_OP_BATCH_NORMALIZATION:
        ok = scaled(value_count(node_in(n, 0)), 2, &f); /* scale and shift, once folded */
        break;
    case IB_OP_INSTANCE_NORMALIZATION: case IB_OP_LAYER_NORMALIZATION:
    case IB_OP_MEAN_VARIANCE_NORMALIZATION: case IB_OP_LP_NORMALIZATION: case IB_OP_LRN:
        ok = scaled(value_count(node_in(n, 0)), 5, &f); /* mean, variance, normalise */
        break;
    case IB_OP_SOFTMAX: case IB_OP_LOG_SOFTMAX: case IB_OP_HARDMAX:
        ok = scaled(value_count(node_in(n, 0)), 3, &f); /* max, exp-sum, divide */
        break;
    /* Control flow: how often a body runs is not static. */
    case IB_OP_IF: case IB_OP_LOOP: case IB_OP_SCAN:
        ok = false;
        break;
    default:
        /* Element-wise and everything else: one operation per output element. */
        ok = scaled(outputs_count(n), 1, &f);
        break;
    }
    if (ok) *out_flops = f;
    return ok;
}

/* ---- Histogram ------------------------------------------------------------------- */

typedef struct histogram {
    ib__op_count *items;
    int32_t n, cap;
    int32_t *slots; /* index + 1, open addressing */
    uint32_t n_slots;
} histogram;

static uint32_t hash_op(const char *domain, const char *op_type) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *s = domain; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    h = (h ^ 0xffu) * 16777619u;
    for (const char *s = op_type; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static ib_status hist_grow(histogram *h) {
    uint32_t ns = h->n_slots ? h->n_slots * 2 : 64;
    int32_t *slots = ib__calloc(ns, sizeof *slots);
    if (!slots) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory counting ops");
    for (int32_t i = 0; i < h->n; i++) {
        uint32_t j = hash_op(h->items[i].domain, h->items[i].op_type) & (ns - 1);
        while (slots[j]) j = (j + 1) & (ns - 1);
        slots[j] = i + 1;
    }
    ib__free(h->slots);
    h->slots = slots;
    h->n_slots = ns;
    return IB_OK;
}

static ib_status hist_add(histogram *h, const char *domain, const char *op_type) {
    if (!domain) domain = "";
    if (!op_type) op_type = "";
    if ((uint32_t)(h->n + 1) * 2 > h->n_slots) IB_TRY(hist_grow(h));
    uint32_t mask = h->n_slots - 1;
    uint32_t j = hash_op(domain, op_type) & mask;
    for (; h->slots[j]; j = (j + 1) & mask) {
        ib__op_count *c = &h->items[h->slots[j] - 1];
        if (strcmp(c->op_type, op_type) == 0 && strcmp(c->domain, domain) == 0) {
            c->count++;
            return IB_OK;
        }
    }
    if (h->n == h->cap) {
        int32_t ncap = h->cap ? h->cap * 2 : 32;
        ib__op_count *items = ib__realloc(h->items, sizeof *items * (size_t)ncap);
        if (!items) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory counting ops");
        h->items = items;
        h->cap = ncap;
    }
    h->items[h->n] = (ib__op_count){op_type, domain, 1};
    h->slots[j] = ++h->n;
    return IB_OK;
}

static int compare_counts(const void *pa, const void *pb) {
    const ib__op_count *a = pa, *b = pb;
    if (a->count != b->count) return a->count > b->count ? -1 : 1;
    int c = strcmp(a->op_type, b->op_type);
    return c ? c : strcmp(a->domain, b->domain);
}

/* ---- Walk ------------------------------------------------------------------------ */

static void add_params(const ib__graph *g, ib__graph_statistics *st) {
    for (int32_t i = 0; i < g->n_initializers; i++) {
        const ib__value *v = g->initializers[i];
        if (!v) continue;
        int64_t count = -1;
        ib_dtype dt = v->dtype;
        if (v->constant) {
            count = ib_tensor_element_count(v->constant);
            dt = v->constant->dtype;
        } else if (v->rank >= 0 && v->rank <= IB_MAX_RANK) {
            count = ib__shape_count(v->dims, v->rank);
        }
        if (count < 0) continue;
        st->param_count += count;
        st->param_bytes += count * (int64_t)ib_dtype_size(dt);
    }
}

static ib_status walk(const ib__graph *g, int depth, histogram *h, ib__graph_statistics *st) {
    if (depth > IB_STATS_MAX_DEPTH)
        return ib__error(IB_ERR_INVALID_MODEL, "subgraphs nested deeper than %d",
                         IB_STATS_MAX_DEPTH);
    add_params(g, st);
    for (int32_t i = 0; i < g->n_nodes; i++) {
        const ib__node *n = g->nodes[i];
        st->n_nodes++;
        IB_TRY(hist_add(h, n->domain, n->op_type));
        if (depth == 0) {
            double f;
            if (ib__node_flops(n, &f)) {
                st->flops += f;
            } else {
                if (!st->first_flops_unknown) st->first_flops_unknown = n;
                st->n_flops_unknown++;
            }
        }
        for (int32_t a = 0; a < n->n_attrs; a++) {
            const ib__attr *attr = &n->attrs[a];
            if (attr->kind == IB_ATTR_GRAPH && attr->g) IB_TRY(walk(attr->g, depth + 1, h, st));
            if (attr->kind == IB_ATTR_GRAPHS)
                for (int32_t k = 0; k < attr->count; k++)
                    if (attr->graphs && attr->graphs[k])
                        IB_TRY(walk(attr->graphs[k], depth + 1, h, st));
        }
    }
    return IB_OK;
}

ib_status ib__graph_stats(const ib__graph *graph, ib__graph_statistics *out) {
    if (!graph || !out) return ib__error(IB_ERR_INVALID_ARGUMENT, "graph and out are required");
    ib__graph_statistics st;
    memset(&st, 0, sizeof st);
    histogram h;
    memset(&h, 0, sizeof h);
    ib_status s = walk(graph, 0, &h, &st);
    ib__free(h.slots);
    if (s != IB_OK) {
        ib__free(h.items);
        return s;
    }
    if (h.n > 1) qsort(h.items, (size_t)h.n, sizeof *h.items, compare_counts);
    st.ops = h.items;
    st.n_op_types = h.n;
    st.flops_known = st.n_flops_unknown == 0;
    *out = st;
    return IB_OK;
}

void ib__graph_stats_free(ib__graph_statistics *stats) {
    if (!stats) return;
    ib__free(stats->ops);
    memset(stats, 0, sizeof *stats);
}
