/* Fusion: groups the nodes that must run into kernels. An anchor (Conv, Gemm, MatMul,
 * pools, Softmax, ...) takes a following BatchNormalization (Conv/Gemm only) and then a
 * chain of element-wise nodes whose intermediates have one reader and are not outputs;
 * the exact-erf GELU subgraph becomes one step; chains without an anchor become one
 * element-wise group; decomposed LayerNorm and scaled-dot-product attention are
 * recognised as wholes. Groups are proposals: lower.c asks the templates and splits a
 * group nobody supports. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "codegen/emit_common.h"
#include "ops/ops.h"
#include "passes/passes_internal.h"

/* ---- Reads and consumers ------------------------------------------------------------ */
static ib_status count_consumers(ib__lower *L) {
    const ib__graph *g = L->graph;
    size_t nv = (size_t)g->n_values + 1;
    memset(L->n_reads, 0, nv * sizeof *L->n_reads);
    L->cons_start = ib__calloc(nv + 1, sizeof(int32_t));
    if (!L->cons_start) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory fusing");
    int64_t total = 0;
    for (int32_t n = 0; n < g->n_nodes; n++) {
        if (!L->live[n]) continue;
        const ib__node *node = g->nodes[n];
        for (int32_t i = 0; i < node->n_inputs; i++)
            if (node->inputs[i]) {
                L->n_reads[node->inputs[i]->index]++;
                L->cons_start[node->inputs[i]->index + 1]++;
                total++;
            }
    }
    for (size_t v = 0; v < nv; v++) L->cons_start[v + 1] += L->cons_start[v];
    L->cons = ib__calloc((size_t)total + 1, sizeof(int32_t));
    int32_t *fill = ib__calloc(nv, sizeof(int32_t));
    if (!L->cons || !fill) {
        ib__free(fill);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory fusing");
    }
    for (int32_t n = 0; n < g->n_nodes; n++) {
        if (!L->live[n]) continue;
        const ib__node *node = g->nodes[n];
        for (int32_t i = 0; i < node->n_inputs; i++)
            if (node->inputs[i]) {
                int32_t v = node->inputs[i]->index;
                L->cons[L->cons_start[v] + fill[v]++] = n;
            }
    }
    ib__free(fill);
    for (int32_t o = 0; o < g->n_outputs; o++) L->n_reads[g->outputs[o]->index]++;
    return IB_OK;
}

static bool claimable(const ib__lower *L, const ib__node *n) {
    return n && n->index >= 0 && L->live[n->index] && L->group[n->index] == L->claim_token;
}

/* The one node reading v, when v has exactly one read and that node may join a chain. */
static const ib__node *sole_consumer(const ib__lower *L, const ib__value *v) {
    if (!v || L->n_reads[v->index] != 1) return NULL;
    int32_t s = L->cons_start[v->index];
    if (L->cons_start[v->index + 1] - s != 1) return NULL; /* it is a graph output */
    const ib__node *n = L->graph->nodes[L->cons[s]];
    return claimable(L, n) ? n : NULL;
}

/* The nodes reading v when it has exactly two reads (both by claimable nodes). */
static bool two_consumers(const ib__lower *L, const ib__value *v, const ib__node **a,
                          const ib__node **b) {
    if (L->n_reads[v->index] != 2) return false;
    int32_t s = L->cons_start[v->index];
    if (L->cons_start[v->index + 1] - s != 2) return false;
    *a = L->graph->nodes[L->cons[s]];
    *b = L->graph->nodes[L->cons[s + 1]];
    return *a != *b && claimable(L, *a) && claimable(L, *b);
}

/* ---- Small predicates ------------------------------------------------------------- */
static const ib__value *sv(const ib__lower *L, const ib__value *v) {
    return v ? &L->vals[v->index] : NULL;
}

static bool same_shape(const ib__value *a, const ib__value *b) {
    if (a->rank != b->rank) return false;
    for (int32_t d = 0; d < a->rank; d++)
        if (a->dims[d] != b->dims[d]) return false;
    return true;
}

static bool is_f32(const ib__value *v) {
    return v && v->dtype == IB_DTYPE_FLOAT32 && ib__value_concrete(v);
}

/* A constant with one element, as float. */
static bool const_scalar(const ib__lower *L, const ib__value *gv, float *out) {
    const ib__value *v = sv(L, gv);
    if (!v || !v->constant || ib__shape_count(v->dims, v->rank) != 1 || !v->constant->data)
        return false;
    if (!ib__dtype_is_float(v->dtype) && !ib__dtype_is_integer(v->dtype)) return false;
    *out = (float)ib__load_f64(v->constant->data, v->dtype, 0);
    return true;
}

static bool near(float a, float b) { return fabsf(a - b) <= 1e-4f * fabsf(b); }

/* The node's single present output (others absent or never read). */
static const ib__value *main_output(const ib__lower *L, const ib__node *n) {
    if (n->n_outputs < 1 || !n->outputs[0]) return NULL;
    for (int32_t o = 1; o < n->n_outputs; o++)
        if (n->outputs[o] && L->n_reads[n->outputs[o]->index] != 0) return NULL;
    return n->outputs[0];
}

static bool is_binary_eltwise(ib__op_id op) {
    return op == IB_OP_ADD || op == IB_OP_SUB || op == IB_OP_MUL || op == IB_OP_DIV ||
           op == IB_OP_MAX || op == IB_OP_MIN;
}

/* Element-wise ops that may start a chain (the eltwise template decides which it runs). */
static bool is_eltwise_anchor(ib__op_id op) {
    if (is_binary_eltwise(op) || ib__epilogue_supports_op(op, IB_EPI_UNARY)) return true;
    switch (op) {
    case IB_OP_ABS: case IB_OP_NEG: case IB_OP_EXP: case IB_OP_LOG: case IB_OP_SQRT:
    case IB_OP_RECIPROCAL: case IB_OP_POW: case IB_OP_ELU: case IB_OP_SELU:
    case IB_OP_SOFTPLUS: case IB_OP_MISH: case IB_OP_P_RELU:
        return true;
    default:
        return false;
    }
}

static bool is_anchor(ib__op_id op) {
    switch (op) {
    case IB_OP_CONV: case IB_OP_CONV_TRANSPOSE: case IB_OP_GEMM: case IB_OP_MAT_MUL:
    case IB_OP_MAX_POOL: case IB_OP_AVERAGE_POOL: case IB_OP_GLOBAL_AVERAGE_POOL:
    case IB_OP_GLOBAL_MAX_POOL: case IB_OP_SOFTMAX: case IB_OP_LAYER_NORMALIZATION:
    case IB_OP_REDUCE_MEAN:
        return true;
    default:
        return false;
    }
}

static bool conv_like(ib__op_id op) {
    return op == IB_OP_CONV || op == IB_OP_CONV_TRANSPOSE || op == IB_OP_MAX_POOL ||
           op == IB_OP_AVERAGE_POOL || op == IB_OP_GLOBAL_AVERAGE_POOL ||
           op == IB_OP_GLOBAL_MAX_POOL;
}

static bool add_node(ib__group *g, const ib__node *n) {
    if (g->n_nodes >= IB_GROUP_MAX_NODES) return false;
    g->nodes[g->n_nodes++] = n;
    return true;
}

/* ---- Epilogue steps ----------------------------------------------------------------- */
/* Unary step parameters from the node; false when they are not constant. */
static bool unary_params(const ib__lower *L, const ib__node *c, ib__epilogue_step *st) {
    switch (c->op) {
    case IB_OP_LEAKY_RELU:
        return ib__attr_float(c, "alpha", 0.01f, &st->alpha) == IB_OK;
    case IB_OP_HARD_SIGMOID:
        return ib__attr_float(c, "alpha", 0.2f, &st->alpha) == IB_OK &&
               ib__attr_float(c, "beta", 0.5f, &st->beta) == IB_OK;
    case IB_OP_CLIP:
        st->alpha = -FLT_MAX;
        st->beta = FLT_MAX;
        if (c->opset < 11)
            return ib__attr_float(c, "min", -FLT_MAX, &st->alpha) == IB_OK &&
                   ib__attr_float(c, "max", FLT_MAX, &st->beta) == IB_OK;
        if (c->n_inputs > 1 && c->inputs[1] && !const_scalar(L, c->inputs[1], &st->alpha))
            return false;
        if (c->n_inputs > 2 && c->inputs[2] && !const_scalar(L, c->inputs[2], &st->beta))
            return false;
        return isfinite(st->alpha) && isfinite(st->beta);
    case IB_OP_GELU: {
        const char *approx = NULL;
        return ib__attr_string(c, "approximate", "none", &approx) == IB_OK &&
               strcmp(approx, "none") == 0;
    }
    default:
        return c->n_inputs == 1;
    }
}

/* Makes node c, reading x, an epilogue step of g. */
static bool try_step(const ib__lower *L, ib__group *g, const ib__node *c, const ib__value *x) {
    if (g->n_epi >= IB_MAX_EPILOGUE || c->n_outputs != 1 || !c->outputs[0]) return false;
    const ib__value *xv = sv(L, x), *cv = sv(L, c->outputs[0]);
    if (!is_f32(xv) || !is_f32(cv) || !same_shape(xv, cv)) return false;
    ib__epilogue_step st;
    memset(&st, 0, sizeof st);
    st.op = c->op;
    st.operand_buf = -1;
    const ib__value *operand = NULL;
    if (ib__epilogue_supports_op(c->op, IB_EPI_UNARY) && c->n_inputs >= 1 &&
        c->inputs[0] == x) {
        st.kind = IB_EPI_UNARY;
        for (int32_t i = 1; i < c->n_inputs; i++)
            if (c->inputs[i] == x) return false;
        if (!unary_params(L, c, &st)) return false;
    } else if (is_binary_eltwise(c->op) && ib__epilogue_supports_op(c->op, IB_EPI_BINARY) &&
               c->n_inputs == 2 && c->inputs[0] && c->inputs[1] &&
               (c->inputs[0] == x) != (c->inputs[1] == x)) {
        st.kind = IB_EPI_BINARY;
        st.operand_first = c->inputs[1] == x;
        operand = st.operand_first ? c->inputs[0] : c->inputs[1];
        const ib__value *ov = sv(L, operand);
        if (!is_f32(ov) || ov->rank > cv->rank) return false;
        int64_t count = ib__shape_count(ov->dims, ov->rank);
        if (ov->constant && count == 1) {
            st.operand_kind = IB_EPI_SCALAR;
        } else if (same_shape(ov, cv)) {
            st.operand_kind = IB_EPI_FULL;
        } else if (ov->constant && cv->rank >= 1) {
            /* Per channel: all ones but the channel dim, right-aligned to the output. */
            int32_t ch = g->channel_axis_1 ? 1 : cv->rank - 1;
            if (ch >= cv->rank) return false;
            int32_t off = cv->rank - ov->rank;
            for (int32_t d = 0; d < ov->rank; d++) {
                int64_t want = d + off == ch ? cv->dims[ch] : 1;
                if (ov->dims[d] != want) return false;
            }
            if (ch - off < 0) return false; /* the channel dim is not in the operand */
            st.operand_kind = IB_EPI_PER_CHANNEL;
        } else {
            return false;
        }
    } else {
        return false;
    }
    g->epi_node[g->n_epi] = g->n_nodes;
    if (!add_node(g, c)) return false;
    g->operand[g->n_epi] = operand;
    g->epi[g->n_epi++] = st;
    return true;
}

static bool is_const_near(const ib__lower *L, const ib__value *v, float want) {
    float f;
    return const_scalar(L, v, &f) && near(f, want);
}

/* The other input of a two-input node `n` that reads `v` once. */
static const ib__value *other_input(const ib__node *n, const ib__value *v) {
    if (n->n_inputs != 2 || !n->inputs[0] || !n->inputs[1]) return NULL;
    if (n->inputs[0] == v && n->inputs[1] != v) return n->inputs[1];
    if (n->inputs[1] == v && n->inputs[0] != v) return n->inputs[0];
    return NULL;
}

/* Matches the GELU subgraph whose two readers of x are `scale` (x / sqrt 2) and `second`
 * (the final multiply by x, or x * 0.5); fills its five nodes and returns its result. */
static const ib__value *match_gelu(const ib__lower *L, const ib__value *x,
                                   const ib__node *scale, const ib__node *second,
                                   const ib__node **nodes) {
    bool div = scale->op == IB_OP_DIV && scale->n_inputs == 2 && scale->inputs[0] == x &&
               is_const_near(L, scale->inputs[1], 1.41421356f);
    bool mul = scale->op == IB_OP_MUL && is_const_near(L, other_input(scale, x), 0.70710678f);
    if (!div && !mul) return NULL;
    const ib__node *erf = sole_consumer(L, scale->outputs[0]);
    if (!erf || erf->op != IB_OP_ERF || erf->n_outputs != 1) return NULL;
    const ib__node *add1 = sole_consumer(L, erf->outputs[0]);
    if (!add1 || add1->op != IB_OP_ADD ||
        !is_const_near(L, other_input(add1, erf->outputs[0]), 1.0f))
        return NULL;
    const ib__node *m1 = sole_consumer(L, add1->outputs[0]);
    if (!m1 || m1->op != IB_OP_MUL || m1->n_outputs != 1) return NULL;
    const ib__value *m1_other = other_input(m1, add1->outputs[0]);
    nodes[0] = scale;
    nodes[1] = erf;
    nodes[2] = add1;
    if (m1 == second && m1_other == x) { /* (x * (1 + erf)) * 0.5 */
        const ib__node *m2 = sole_consumer(L, m1->outputs[0]);
        if (!m2 || m2->op != IB_OP_MUL ||
            !is_const_near(L, other_input(m2, m1->outputs[0]), 0.5f))
            return NULL;
        nodes[3] = m1;
        nodes[4] = m2;
        return m2->outputs[0];
    }
    if (second->op == IB_OP_MUL && is_const_near(L, other_input(second, x), 0.5f) &&
        m1_other == second->outputs[0] && sole_consumer(L, second->outputs[0]) == m1) {
        nodes[3] = second; /* (x * 0.5) * (1 + erf) */
        nodes[4] = m1;
        return m1->outputs[0];
    }
    if (m1_other && is_const_near(L, m1_other, 0.5f)) { /* x * ((1 + erf) * 0.5) */
        const ib__node *m2 = sole_consumer(L, m1->outputs[0]);
        if (m2 != second || m2->op != IB_OP_MUL || other_input(m2, m1->outputs[0]) != x)
            return NULL;
        nodes[3] = m1;
        nodes[4] = m2;
        return m2->outputs[0];
    }
    return NULL;
}

/* x * 0.5 * (1 + erf(x / sqrt 2)) in the orders exporters write it: one GELU step. */
static bool try_gelu(const ib__lower *L, ib__group *g, const ib__value *x,
                     const ib__value **out) {
    const ib__node *a, *b;
    if (g->n_epi >= IB_MAX_EPILOGUE || g->n_nodes + 5 > IB_GROUP_MAX_NODES) return false;
    if (!is_f32(sv(L, x)) || !two_consumers(L, x, &a, &b)) return false;
    const ib__node *nodes[5];
    const ib__value *res = match_gelu(L, x, a, b, nodes);
    if (!res) res = match_gelu(L, x, b, a, nodes);
    if (!res || !is_f32(sv(L, res)) || !same_shape(sv(L, res), sv(L, x))) return false;
    ib__epilogue_step st;
    memset(&st, 0, sizeof st);
    st.kind = IB_EPI_UNARY;
    st.op = IB_OP_GELU;
    st.operand_buf = -1;
    g->epi_node[g->n_epi] = g->n_nodes;
    for (int k = 0; k < 5; k++) g->nodes[g->n_nodes++] = nodes[k];
    g->operand[g->n_epi] = NULL;
    g->epi[g->n_epi++] = st;
    *out = res;
    return true;
}

/* Extends g from its current result with epilogue steps while the rules allow. */
static void extend_chain(const ib__lower *L, ib__group *g) {
    for (;;) {
        const ib__value *x = g->out, *next = NULL;
        const ib__node *c = sole_consumer(L, x);
        if (c) {
            if (try_step(L, g, c, x)) next = c->outputs[0];
        } else if (!try_gelu(L, g, x, &next)) {
            next = NULL;
        }
        if (!next) return;
        g->out = next;
    }
}

/* ---- Groups ------------------------------------------------------------------------ */
static void set_inputs(ib__group *g, const ib__node *n) {
    g->n_in = n->n_inputs < IB_MAX_KERNEL_ARGS ? n->n_inputs : IB_MAX_KERNEL_ARGS;
    for (int32_t i = 0; i < g->n_in; i++) g->in[i] = n->inputs[i];
}

void ib__group_single(const ib__node *node, ib__group *g) {
    memset(g, 0, sizeof *g);
    g->kind = IB_GROUP_SINGLE;
    g->nodes[0] = node;
    g->n_nodes = g->n_main = 1;
    g->anchor = node;
    set_inputs(g, node);
    g->out = node->n_outputs > 0 ? node->outputs[0] : NULL;
}

static bool params_constant(const ib__node *n, int32_t from) {
    for (int32_t i = from; i < n->n_inputs; i++)
        if (!n->inputs[i] || !n->inputs[i]->constant) return false;
    return true;
}

static bool build_anchor(const ib__lower *L, const ib__node *node, ib__group *g) {
    const ib__value *out = main_output(L, node);
    if (!out || node->n_inputs > IB_MAX_KERNEL_ARGS) return false;
    ib__group_single(node, g);
    g->kind = IB_GROUP_ANCHOR;
    g->out = out;
    g->channel_axis_1 = conv_like(node->op);
    if (node->op == IB_OP_CONV || node->op == IB_OP_GEMM) {
        const ib__node *bn = sole_consumer(L, out);
        int64_t training = 0;
        /* BN parameters must be weights in the graph: pack_weights folds them. */
        if (bn && bn->op == IB_OP_BATCH_NORMALIZATION && bn->n_inputs == 5 &&
            bn->inputs[0] == out && params_constant(bn, 1) && main_output(L, bn) &&
            ib__attr_int(bn, "training_mode", 0, &training) == IB_OK && !training &&
            is_f32(sv(L, bn->outputs[0]))) {
            add_node(g, bn);
            g->n_main = 2;
            g->out = bn->outputs[0];
        }
    }
    extend_chain(L, g);
    return true;
}

static bool build_eltwise(const ib__lower *L, const ib__node *node, ib__group *g) {
    const ib__value *out = main_output(L, node);
    if (!out || node->n_outputs != 1 || !is_f32(sv(L, out)) ||
        node->n_inputs > IB_MAX_KERNEL_ARGS)
        return false;
    ib__group_single(node, g);
    g->kind = IB_GROUP_ELTWISE;
    extend_chain(L, g);
    return true;
}

/* ReduceMean over the last axis only, keeping dims. */
static bool reduces_last_axis(const ib__lower *L, const ib__node *n) {
    if (n->op != IB_OP_REDUCE_MEAN || n->n_outputs != 1 || !n->inputs[0]) return false;
    const ib__value *x = sv(L, n->inputs[0]);
    int64_t keep = 1;
    if (ib__attr_int(n, "keepdims", 1, &keep) != IB_OK || keep != 1) return false;
    int64_t axes[2];
    int64_t count = 0;
    if (n->n_inputs >= 2 && n->inputs[1]) { /* opset 18: axes input */
        bool known = false;
        if (ib__const_ints(sv(L, n->inputs[1]), axes, 2, &count, &known) != IB_OK || !known)
            return false;
    } else {
        int32_t c32 = 0;
        const int64_t *a = NULL;
        if (ib__attr_ints(n, "axes", &c32, &a) != IB_OK || c32 != 1) return false;
        axes[0] = a[0];
        count = c32;
    }
    return count == 1 && x->rank >= 1 && (axes[0] == -1 || axes[0] == x->rank - 1);
}

/* A constant [D] (or [1..., D]) f32 vector for the last dim D of `like`. */
static bool last_dim_vector(const ib__lower *L, const ib__value *gv, const ib__value *like) {
    const ib__value *v = sv(L, gv);
    if (!v || !v->constant || !is_f32(v) || !gv->constant || v->rank < 1) return false;
    for (int32_t d = 0; d + 1 < v->rank; d++)
        if (v->dims[d] != 1) return false;
    return v->dims[v->rank - 1] == like->dims[like->rank - 1];
}

/* (x - mean) / sqrt(var + eps) * gamma + beta, as torch 1.13 exports LayerNorm at
 * opset 13: ReduceMean, Sub, Pow 2, ReduceMean, Add eps, Sqrt, Div, Mul, Add. The
 * kernel's anchor is a synthetic LayerNormalization(x, gamma, beta) with its epsilon,
 * so the layernorm template (and the reference fallback) see one standard node. */
static bool build_layernorm(ib__lower *L, const ib__node *rm1, ib__group *g) {
    if (!reduces_last_axis(L, rm1)) return false;
    const ib__value *x = rm1->inputs[0];
    if (!is_f32(sv(L, x))) return false;
    const ib__node *sub = sole_consumer(L, rm1->outputs[0]);
    if (!sub || sub->op != IB_OP_SUB || sub->n_inputs != 2 || sub->inputs[0] != x ||
        sub->inputs[1] != rm1->outputs[0])
        return false;
    const ib__value *d = sub->outputs[0];
    const ib__node *c1, *c2;
    if (!two_consumers(L, d, &c1, &c2)) return false;
    const ib__node *pow = c1->op == IB_OP_POW ? c1 : c2, *div = pow == c1 ? c2 : c1;
    if (pow->op != IB_OP_POW || pow->inputs[0] != d || !is_const_near(L, pow->inputs[1], 2.0f))
        return false;
    const ib__node *rm2 = sole_consumer(L, pow->outputs[0]);
    if (!rm2 || !reduces_last_axis(L, rm2)) return false;
    const ib__node *add_eps = sole_consumer(L, rm2->outputs[0]);
    float eps = 0;
    if (!add_eps || add_eps->op != IB_OP_ADD ||
        !const_scalar(L, other_input(add_eps, rm2->outputs[0]), &eps))
        return false;
    const ib__node *sqrt = sole_consumer(L, add_eps->outputs[0]);
    if (!sqrt || sqrt->op != IB_OP_SQRT || sole_consumer(L, sqrt->outputs[0]) != div)
        return false;
    if (div->op != IB_OP_DIV || div->n_inputs != 2 || div->inputs[0] != d ||
        div->inputs[1] != sqrt->outputs[0])
        return false;
    const ib__node *mul = sole_consumer(L, div->outputs[0]);
    if (!mul || mul->op != IB_OP_MUL) return false;
    const ib__value *gamma = other_input(mul, div->outputs[0]);
    if (!gamma || !last_dim_vector(L, gamma, sv(L, x))) return false;
    const ib__node *add = sole_consumer(L, mul->outputs[0]);
    if (!add || add->op != IB_OP_ADD) return false;
    const ib__value *beta = other_input(add, mul->outputs[0]);
    if (!beta || !last_dim_vector(L, beta, sv(L, x))) return false;
    const ib__value *out = add->outputs[0];
    if (!is_f32(sv(L, out)) || !same_shape(sv(L, out), sv(L, x))) return false;
    /* The synthetic node lives in the plan: the graph stays untouched. */
    ib__arena *a = L->plan->arena;
    ib__node *ln = ib__arena_alloc(a, sizeof *ln);
    ib__value **io = ib__arena_alloc(a, 4 * sizeof *io);
    ib__attr *attrs = ib__arena_alloc(a, 2 * sizeof *attrs);
    if (!ln || !io || !attrs) return false;
    io[0] = (ib__value *)x;
    io[1] = (ib__value *)gamma;
    io[2] = (ib__value *)beta;
    io[3] = (ib__value *)out;
    attrs[0].name = "axis";
    attrs[0].kind = IB_ATTR_INT;
    attrs[0].i = -1;
    attrs[1].name = "epsilon";
    attrs[1].kind = IB_ATTR_FLOAT;
    attrs[1].f = eps;
    ln->name = rm1->name;
    ln->op_type = "LayerNormalization";
    ln->domain = "";
    ln->op = IB_OP_LAYER_NORMALIZATION;
    ln->opset = 17;
    ln->n_inputs = 3;
    ln->inputs = io;
    ln->n_outputs = 1;
    ln->outputs = &io[3];
    ln->n_attrs = 2;
    ln->attrs = attrs;
    ln->index = -1;
    memset(g, 0, sizeof *g);
    g->kind = IB_GROUP_LAYERNORM;
    const ib__node *nodes[9] = {rm1, sub, pow, rm2, add_eps, sqrt, div, mul, add};
    for (int k = 0; k < 9; k++) g->nodes[k] = nodes[k];
    g->n_nodes = g->n_main = 9;
    g->anchor = ln;
    set_inputs(g, ln);
    g->out = out;
    extend_chain(L, g);
    return true;
}

/* softmax(q @ k * scale [+ mask]) @ v, the scale a constant scalar (Mul or Div). */
static bool build_attention(const ib__lower *L, const ib__node *mm1, ib__group *g) {
    if (mm1->op != IB_OP_MAT_MUL || mm1->n_inputs != 2 || !main_output(L, mm1)) return false;
    const ib__value *cur = mm1->outputs[0];
    if (!is_f32(sv(L, cur)) || sv(L, cur)->rank < 2) return false;
    const ib__node *nodes[5];
    int32_t n = 0;
    nodes[n++] = mm1;
    const ib__node *c = sole_consumer(L, cur);
    float scale;
    if (c && (c->op == IB_OP_MUL || c->op == IB_OP_DIV) && c->n_inputs == 2 &&
        c->inputs[0] == cur && const_scalar(L, c->inputs[1], &scale) && c->inputs[1]->constant) {
        nodes[n++] = c;
        cur = c->outputs[0];
        c = sole_consumer(L, cur);
    }
    const ib__value *mask = NULL;
    if (c && c->op == IB_OP_ADD && other_input(c, cur) && is_f32(sv(L, other_input(c, cur))) &&
        same_shape(sv(L, c->outputs[0]), sv(L, cur))) {
        mask = other_input(c, cur);
        nodes[n++] = c;
        cur = c->outputs[0];
        c = sole_consumer(L, cur);
    }
    if (!c || c->op != IB_OP_SOFTMAX || c->n_outputs != 1) return false;
    int64_t axis = -1;
    if (ib__attr_int(c, "axis", c->opset >= 13 ? -1 : 1, &axis) != IB_OK) return false;
    int32_t rank = sv(L, cur)->rank;
    if (axis != -1 && axis != rank - 1) return false;
    nodes[n++] = c;
    cur = c->outputs[0];
    const ib__node *mm2 = sole_consumer(L, cur);
    if (!mm2 || mm2->op != IB_OP_MAT_MUL || mm2->n_inputs != 2 || mm2->inputs[0] != cur ||
        mm2->inputs[1] == cur || !main_output(L, mm2) || !is_f32(sv(L, mm2->outputs[0])))
        return false;
    nodes[n++] = mm2;
    memset(g, 0, sizeof *g);
    g->kind = IB_GROUP_ATTENTION;
    for (int32_t k = 0; k < n; k++) g->nodes[k] = nodes[k];
    g->n_nodes = g->n_main = n;
    g->anchor = mm1;
    g->in[g->n_in++] = mm1->inputs[0];
    g->in[g->n_in++] = mm1->inputs[1];
    g->in[g->n_in++] = mm2->inputs[1];
    if (mask) g->in[g->n_in++] = mask;
    g->out = mm2->outputs[0];
    extend_chain(L, g);
    return true;
}

static void build_group(ib__lower *L, const ib__node *node, ib__group *g) {
    if (L->opt.disable_fusion) {
        ib__group_single(node, g);
        return;
    }
    if (node->op == IB_OP_REDUCE_MEAN && build_layernorm(L, node, g)) return;
    if (node->op == IB_OP_MAT_MUL && build_attention(L, node, g)) return;
    if (is_anchor(node->op) && build_anchor(L, node, g)) return;
    if (is_eltwise_anchor(node->op) && build_eltwise(L, node, g)) return;
    ib__group_single(node, g);
}

void ib__group_rest(ib__lower *L, const ib__node *const *nodes, int32_t n, ib__group *out) {
    for (int32_t i = 0; i < n; i++) L->group[nodes[i]->index] = -2;
    L->claim_token = -2;
    bool built = false;
    if (!L->opt.disable_fusion && is_anchor(nodes[0]->op))
        built = build_anchor(L, nodes[0], out);
    if (!built && !L->opt.disable_fusion && is_eltwise_anchor(nodes[0]->op))
        built = build_eltwise(L, nodes[0], out);
    if (!built) ib__group_single(nodes[0], out);
    L->claim_token = -1;
    for (int32_t i = 0; i < n; i++) L->group[nodes[i]->index] = 0;
}

ib_status ib__pass_fusion(ib__lower *L) {
    const ib__graph *g = L->graph;
    IB_TRY(count_consumers(L));
    L->groups = ib__calloc((size_t)g->n_nodes + 1, sizeof *L->groups);
    if (!L->groups) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory fusing");
    L->claim_token = -1;
    for (int32_t n = 0; n < g->n_nodes; n++) {
        if (!L->live[n] || L->group[n] != -1) continue;
        ib__group *grp = &L->groups[L->n_groups];
        build_group(L, g->nodes[n], grp);
        for (int32_t k = 0; k < grp->n_nodes; k++) L->group[grp->nodes[k]->index] = L->n_groups;
        L->n_groups++;
    }
    return IB_OK;
}
