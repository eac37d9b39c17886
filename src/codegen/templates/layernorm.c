/* Kernel template layernorm: LayerNormalization (opset 17) over the trailing axes, and
 * the decomposed form torch exports at opset 13 (ReduceMean, Sub, Pow 2, ReduceMean,
 * Add eps, Sqrt, Div, then Mul gamma and Add beta) recognised from the kernel's node
 * group; one row at a time (mean, variance, normalise + scale/shift + epilogue). */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"
#include "ops/ops.h"

typedef struct ln_desc {
    int64_t rows, len;
    float eps;
    bool decomposed;
    /* scale / shift: constants (packed into one [2, len] weight) or run-time inputs */
    const ib_tensor *gamma, *beta;
    int32_t gamma_arg, beta_arg; /* LayerNormalization with run-time inputs, else -1 */
    int32_t packed_arg;          /* the [2, len] weight after pack_weights, else -1 */
} ln_desc;

static bool f32_plain(const ib__plan *plan, int32_t id) {
    if (id < 0 || id >= plan->n_bufs) return false;
    const ib__pbuf *b = &plan->bufs[id];
    return b->dtype == IB_DTYPE_FLOAT32 && b->layout == IB_LAYOUT_PLAIN;
}

static int64_t count_of(const ib__value *v) {
    if (!v || v->rank < 0) return -1;
    int64_t n = 1;
    for (int32_t d = 0; d < v->rank; d++) {
        if (v->dims[d] < 0) return -1;
        n *= v->dims[d];
    }
    return n;
}

static bool const_scalar(const ib__value *v, float *out) {
    if (!v || !v->constant || v->constant->dtype != IB_DTYPE_FLOAT32 || !v->constant->data ||
        ib_tensor_element_count(v->constant) != 1)
        return false;
    *out = *(const float *)v->constant->data;
    return true;
}

static bool const_vec(const ib__value *v, int64_t len, const ib_tensor **out) {
    if (!v || !v->constant || v->constant->dtype != IB_DTYPE_FLOAT32 || !v->constant->data)
        return false;
    int64_t c = ib_tensor_element_count(v->constant);
    if (c != len && c != 1) return false;
    if (v->rank > 1)
        for (int32_t d = 0; d < v->rank - 1; d++)
            if (v->dims[d] != 1 && c != 1) return false;
    *out = v->constant;
    return true;
}

/* ReduceMean over the last axis only, keeping dims. */
static bool last_axis_mean(const ib__node *n, int32_t rank) {
    if (n->op != IB_OP_REDUCE_MEAN || n->n_outputs < 1 || !n->outputs[0]) return false;
    int64_t keep;
    if (ib__attr_int(n, "keepdims", 1, &keep) || !keep) return false;
    int64_t axes[IB_MAX_RANK], na = 0;
    if (n->opset >= 18) {
        bool known;
        if (n->n_inputs < 2 || !n->inputs[1] ||
            ib__const_ints(n->inputs[1], axes, IB_MAX_RANK, &na, &known) || !known)
            return false;
    } else {
        int32_t cnt;
        const int64_t *a;
        if (ib__attr_ints(n, "axes", &cnt, &a) || cnt > IB_MAX_RANK) return false;
        for (int32_t i = 0; i < cnt; i++) axes[i] = a[i];
        na = cnt;
    }
    return na == 1 && (axes[0] == -1 || axes[0] == rank - 1);
}

/* The node of the group that reads `v` at input position `pos` (-1: any) with op `op`. */
static const ib__node *consumer(const ib__pkernel *k, const ib__value *v, ib__op_id op, int pos) {
    for (int32_t i = 1; i < k->n_nodes; i++) {
        const ib__node *n = k->nodes[i];
        if (n->op != op) continue;
        for (int32_t j = 0; j < n->n_inputs; j++)
            if (n->inputs[j] == v && (pos < 0 || pos == j)) return n;
    }
    return NULL;
}

/* The other input of a binary node whose one input is `v`. */
static const ib__value *other(const ib__node *n, const ib__value *v) {
    if (n->n_inputs != 2) return NULL;
    return n->inputs[0] == v ? n->inputs[1] : n->inputs[0];
}

static bool analyze_decomposed(const ib__plan *plan, const ib__pkernel *k, ln_desc *g,
                               const ib__value **out_value) {
    const ib__node *rm1 = k->nodes[0];
    const ib__pbuf *xb = &plan->bufs[k->in[0]];
    if (rm1->n_inputs < 1 || !last_axis_mean(rm1, xb->rank)) return false;
    const ib__value *x = rm1->inputs[0], *mean = rm1->outputs[0];
    const ib__node *sub = consumer(k, mean, IB_OP_SUB, 1);
    if (!sub || sub->inputs[0] != x) return false;
    const ib__value *d = sub->outputs[0];
    const ib__node *sq = consumer(k, d, IB_OP_POW, 0);
    float two;
    if (sq) {
        if (!const_scalar(sq->inputs[1], &two) || two != 2.0f) return false;
    } else {
        sq = consumer(k, d, IB_OP_MUL, -1);
        if (!sq || sq->inputs[0] != d || sq->inputs[1] != d) return false;
    }
    const ib__node *rm2 = consumer(k, sq->outputs[0], IB_OP_REDUCE_MEAN, 0);
    if (!rm2 || !last_axis_mean(rm2, xb->rank)) return false;
    const ib__node *ae = consumer(k, rm2->outputs[0], IB_OP_ADD, -1);
    if (!ae || !const_scalar(other(ae, rm2->outputs[0]), &g->eps)) return false;
    const ib__node *sqrt = consumer(k, ae->outputs[0], IB_OP_SQRT, 0);
    if (!sqrt) return false;
    const ib__node *div = consumer(k, sqrt->outputs[0], IB_OP_DIV, 1);
    if (!div || div->inputs[0] != d) return false;
    int32_t used = 7;
    const ib__value *last = div->outputs[0];
    const ib__node *mul = consumer(k, last, IB_OP_MUL, -1);
    if (mul) {
        if (!const_vec(other(mul, last), g->len, &g->gamma)) return false;
        last = mul->outputs[0];
        used++;
    }
    const ib__node *add = consumer(k, last, IB_OP_ADD, -1);
    if (add) {
        if (!const_vec(other(add, last), g->len, &g->beta)) return false;
        last = add->outputs[0];
        used++;
    }
    if (used != k->n_nodes) return false;
    *out_value = last;
    return true;
}

static bool analyze(const ib__plan *plan, const ib__pkernel *k, ln_desc *g) {
    memset(g, 0, sizeof *g);
    g->gamma_arg = g->beta_arg = g->packed_arg = -1;
    if (!k->nodes || k->n_nodes < 1 || k->n_in < 1 || k->n_out != 1) return false;
    if (!f32_plain(plan, k->in[0]) || !f32_plain(plan, k->out[0])) return false;
    const ib__pbuf *xb = &plan->bufs[k->in[0]], *yb = &plan->bufs[k->out[0]];
    if (xb->rank < 1 || xb->rank != yb->rank) return false;
    for (int32_t d = 0; d < xb->rank; d++)
        if (xb->dims[d] < 0 || xb->dims[d] != yb->dims[d]) return false;
    const ib__node *a = k->nodes[0];
    int64_t axis = xb->rank - 1;
    if (a->op == IB_OP_LAYER_NORMALIZATION) {
        /* Nodes after it are the decomposition it stands for (the fusion pass puts a
         * synthetic LayerNormalization first) and the epilogue's nodes. */
        if (a->n_inputs < 2 || !a->inputs[1] || k->n_in < 2) return false;
        for (int32_t o = 1; o < a->n_outputs; o++)
            if (a->outputs[o] && a->outputs[o]->n_uses > 0) return false;
        if (ib__attr_int(a, "axis", -1, &axis) || ib__attr_float(a, "epsilon", 1e-5f, &g->eps))
            return false;
        if (axis < 0) axis += xb->rank;
        if (axis < 0 || axis >= xb->rank) return false;
    } else if (a->op != IB_OP_REDUCE_MEAN) {
        return false;
    }
    g->rows = 1;
    g->len = 1;
    for (int32_t d = 0; d < xb->rank; d++) {
        if (d < axis) g->rows *= xb->dims[d];
        else g->len *= xb->dims[d];
    }
    if (g->len < 1) return false;
    if (a->op == IB_OP_LAYER_NORMALIZATION) {
        if (!(g->eps >= 0.0f && g->eps < 1e30f)) return false;
        g->decomposed = false;
        /* the buffers' values are the plan's specialised copies (constant where known) */
        const ib__value *sv = a->inputs[1], *bv = a->n_inputs > 2 ? a->inputs[2] : NULL;
        if (k->in[1] >= 0 && k->in[1] < plan->n_bufs && plan->bufs[k->in[1]].value)
            sv = plan->bufs[k->in[1]].value;
        if (bv && k->n_in > 2 && k->in[2] >= 0 && k->in[2] < plan->n_bufs &&
            plan->bufs[k->in[2]].value)
            bv = plan->bufs[k->in[2]].value;
        if (count_of(sv) != g->len || (bv && count_of(bv) != g->len)) return false;
        const ib_tensor *gt = NULL, *bt = NULL;
        if (const_vec(sv, g->len, &gt) && (!bv || const_vec(bv, g->len, &bt))) {
            g->gamma = gt;
            g->beta = bt;
        } else {
            /* a run-time scale or shift: both read from the kernel's inputs */
            if (!f32_plain(plan, k->in[1])) return false;
            g->gamma_arg = 1;
            if (bv) {
                if (k->n_in < 3 || !f32_plain(plan, k->in[2])) return false;
                g->beta_arg = 2;
            }
        }
    } else {
        g->decomposed = true;
        const ib__value *outv = NULL;
        if (!analyze_decomposed(plan, k, g, &outv)) return false;
        if (!(g->eps >= 0.0f && g->eps < 1e30f)) return false;
    }
    /* The packed [2, len] gamma/beta weight, once pack_weights added it. */
    const ib__pbuf *lb = &plan->bufs[k->in[k->n_in - 1]];
    if (k->n_in >= 2 && lb->layout == IB_LAYOUT_PACKED && lb->rank == 2 && lb->dims[0] == 2 &&
        lb->dims[1] == g->len && lb->dtype == IB_DTYPE_FLOAT32)
        g->packed_arg = k->n_in - 1;
    for (int32_t s = 0; s < k->n_epi; s++) {
        const ib__epilogue_step *e = &k->epi[s];
        if (!ib__epilogue_supports_op(e->op, e->kind)) return false;
        if (e->kind != IB_EPI_BINARY) continue;
        if (e->operand_kind == IB_EPI_PER_CHANNEL || !f32_plain(plan, e->operand_buf)) return false;
        const ib__pbuf *ob = &plan->bufs[e->operand_buf];
        int64_t c = 1;
        for (int32_t d = 0; d < ob->rank; d++) c *= ob->dims[d];
        if (c != (e->operand_kind == IB_EPI_SCALAR ? 1 : g->rows * g->len)) return false;
    }
    return true;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ln_desc g;
    return analyze(plan, k, &g);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    ln_desc g;
    if (!analyze(plan, k, &g)) return;
    int64_t rpt = (16384 / 4) / g.len;
    ib__knobs_set(knobs, "rows_per_task", rpt < 1 ? 1 : rpt);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    ln_desc g;
    if (!analyze(plan, k, &g)) return false;
    int64_t r = ib__knobs_get(knobs, "rows_per_task", 1);
    return r >= 1 && r <= ((int64_t)1 << 30);
}

/* Appends one WEIGHT holding gamma then beta ([2, len]; 1 and 0 where absent) to k->in,
 * so the kernel reads constant scale and shift from the blob whatever form they had. */
static ib_status pack_weights(ib__plan *plan, ib__pkernel *k) {
    ln_desc g;
    if (!analyze(plan, k, &g) || g.packed_arg >= 0) return IB_OK;
    if (g.gamma_arg >= 0 || g.beta_arg >= 0) return IB_OK; /* run-time scale: read as is */
    if (k->n_in >= IB_MAX_KERNEL_ARGS)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: too many kernel inputs",
                         ib__node_label(k->nodes[0]));
    float *p = ib__calloc((size_t)(2 * g.len), sizeof(float));
    if (!p) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory packing a layer norm");
    for (int64_t j = 0; j < g.len; j++) {
        const float *gm = g.gamma ? g.gamma->data : NULL, *bt = g.beta ? g.beta->data : NULL;
        int64_t gc = g.gamma ? ib_tensor_element_count(g.gamma) : 0;
        int64_t bc = g.beta ? ib_tensor_element_count(g.beta) : 0;
        p[j] = gm ? gm[gc == 1 ? 0 : j] : 1.0f;
        p[g.len + j] = bt ? bt[bc == 1 ? 0 : j] : 0.0f;
    }
    ib__pbuf desc;
    memset(&desc, 0, sizeof desc);
    desc.dtype = IB_DTYPE_FLOAT32;
    desc.rank = 2;
    desc.dims[0] = 2;
    desc.dims[1] = g.len;
    desc.layout = IB_LAYOUT_PACKED;
    desc.first_use = desc.last_use = -1;
    int32_t id;
    ib_status st = ib__plan_add_weight(plan, &desc, p, (size_t)(2 * g.len) * sizeof(float), &id);
    ib__free(p);
    if (st) return st;
    k->in[k->n_in++] = id;
    return IB_OK;
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    ln_desc g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "layernorm: %s is not supported",
                         ib__node_label(k->nodes[0]));
    const bool runtime = g.gamma_arg >= 0 || g.beta_arg >= 0;
    if (!runtime && g.packed_arg < 0)
        return ib__error(IB_ERR_INTERNAL, "layernorm: %s: scale and shift were not packed",
                         ib__node_label(k->nodes[0]));
    const int W = ib__target_vector_floats(&plan->target);
    const int64_t L = g.len;
    int64_t rpt = ib__knobs_get(&k->knobs, "rows_per_task", 1);
    if (rpt < 1) rpt = 1;
    const int64_t tasks = (g.rows + rpt - 1) / rpt;
    const char *fn = k->fn_name;
    char eps[48], t[40];
    snprintf(t, sizeof t, "%.9g", (double)g.eps);
    snprintf(eps, sizeof eps, "%s%s", t, strpbrk(t, ".eEn") ? "" : ".0");
    ib__sb_line(sb, "/* %s: %s%s over %lld rows of %lld, eps %s */", fn,
                ib__node_label(k->nodes[0]), g.decomposed ? " (decomposed layer norm)" : "",
                (long long)g.rows, (long long)L, eps);
    ib__sb_line(sb, "static void %s_body(void *ctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)ctx;");
    ib__sb_line(sb, "const float *X = (const float *)args[0];");
    ib__sb_line(sb, "float *Y = (float *)args[%d];", (int)k->n_in);
    if (runtime) {
        ib__sb_line(sb, "const float *gam = %s;", g.gamma_arg >= 0 ? "(const float *)args[1]" : "0");
        ib__sb_line(sb, "const float *bet = %s;", g.beta_arg >= 0 ? "(const float *)args[2]" : "0");
    } else {
        ib__sb_line(sb, "const float *gam = (const float *)args[%d];", (int)g.packed_arg);
        ib__sb_line(sb, "const float *bet = gam + %lld;", (long long)L);
    }
    ib__sb_line(sb, "int64_t r1 = end * %lld < %lld ? end * %lld : %lld;", (long long)rpt,
                (long long)g.rows, (long long)rpt, (long long)g.rows);
    ib__sb_line(sb, "for (int64_t r = begin * %lld; r < r1; r++) {", (long long)rpt);
    sb->indent += 4;
    ib__sb_line(sb, "const float *x = X + r * %lld;", (long long)L);
    ib__sb_line(sb, "float *y = Y + r * %lld;", (long long)L);
    ib__sb_line(sb, "int64_t j = 0;");
    /* mean, then the variance around it (two passes: no cancellation) */
    ib__sb_line(sb, "float s = 0.0f;");
    if (W > 1 && L >= W) {
        ib__sb_line(sb, "ibv%df sv = ib_splat%d(0.0f);", W, W);
        ib__sb_line(sb, "for (; j + %d <= %lld; j += %d) sv = sv + ib_load%d(x + j);", W,
                    (long long)L, W, W);
        ib__sb_line(sb, "for (int l = 0; l < %d; l++) s += sv[l];", W);
    }
    ib__sb_line(sb, "for (; j < %lld; j++) s += x[j];", (long long)L);
    ib__sb_line(sb, "const float mean = s * (1.0f / %lld.0f);", (long long)L);
    ib__sb_line(sb, "float q = 0.0f;");
    ib__sb_line(sb, "j = 0;");
    if (W > 1 && L >= W) {
        ib__sb_line(sb, "ibv%df qv = ib_splat%d(0.0f), mv = ib_splat%d(mean);", W, W, W);
        ib__sb_line(sb, "for (; j + %d <= %lld; j += %d) { ibv%df d = ib_load%d(x + j) - mv; "
                    "qv = ib_fma%d(d, d, qv); }",
                    W, (long long)L, W, W, W, W);
        ib__sb_line(sb, "for (int l = 0; l < %d; l++) q += qv[l];", W);
    }
    ib__sb_line(sb, "for (; j < %lld; j++) { float d = x[j] - mean; q += d * d; }", (long long)L);
    ib__sb_line(sb, "const float rstd = 1.0f / __builtin_sqrtf(q * (1.0f / %lld.0f) + %sf);",
                (long long)L, eps);
    ib__sb_line(sb, "j = 0;");
    for (int pass = 0; pass < 2; pass++) {
        const int lanes = pass == 0 ? W : 1;
        if (pass == 0 && W == 1) continue;
        if (pass == 0)
            ib__sb_line(sb, "for (; j + %d <= %lld; j += %d) {", W, (long long)L, W);
        else
            ib__sb_line(sb, "for (; j < %lld; j++) {", (long long)L);
        sb->indent += 4;
        ib__sb_line(sb, "ibv%df v = (ib_load%d(x + j) - ib_splat%d(mean)) * ib_splat%d(rstd);",
                    lanes, lanes, lanes, lanes);
        if (runtime) {
            if (g.gamma_arg >= 0) ib__sb_line(sb, "v = v * ib_load%d(gam + j);", lanes);
            if (g.beta_arg >= 0) ib__sb_line(sb, "v = v + ib_load%d(bet + j);", lanes);
        } else {
            ib__sb_line(sb, "v = ib_fma%d(v, ib_load%d(gam + j), ib_load%d(bet + j));", lanes,
                        lanes, lanes);
        }
        char elem[64];
        snprintf(elem, sizeof elem, "r * %lld + j", (long long)L);
        IB_TRY(ib__emit_epilogue(sb, k, k->n_in + k->n_out, "v", lanes, "0", false, elem));
        ib__sb_line(sb, "ib_store%d(y + j, v);", lanes);
        sb->indent -= 4;
        ib__sb_line(sb, "}");
    }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "(void)gam; (void)bet;");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);",
                (long long)tasks, fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    ln_desc g;
    if (!analyze(plan, k, &g)) return 0.0;
    return 8.0 * (double)g.rows * (double)g.len;
}

const ib__kernel_template ib__template_layernorm = {
    .name = "layernorm",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = pack_weights,
    .emit = emit,
    .flops = flops,
};
