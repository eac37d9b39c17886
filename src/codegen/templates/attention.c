/* Kernel template attention: the group MatMul(Q, K^T) -> Div/Mul by a constant scale ->
 * (Add mask) -> Softmax(last axis) -> MatMul(., V) over [batch..., S, D] as one kernel:
 * a block of score rows lives on the stack, is scaled, masked and normalised there and
 * multiplied by V, so the [S, S] probabilities never reach memory. Parallel over
 * batch x row blocks. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"
#include "codegen/templates/attention.h"

#define ATT_MAX_STACK_BYTES (64 * 1024)

static const ib__node *consumer(const ib__pkernel *k, const ib__value *v) {
    const ib__node *found = NULL;
    for (int32_t i = 1; i < k->n_nodes; i++)
        for (int32_t j = 0; j < k->nodes[i]->n_inputs; j++)
            if (k->nodes[i]->inputs[j] == v) {
                if (found && found != k->nodes[i]) return NULL; /* two readers: not a chain */
                found = k->nodes[i];
            }
    return found;
}

static bool const_scalar(const ib__value *v, float *out) {
    if (!v || !v->constant || v->constant->dtype != IB_DTYPE_FLOAT32 || !v->constant->data ||
        ib_tensor_element_count(v->constant) != 1)
        return false;
    *out = *(const float *)v->constant->data;
    return true;
}

/* The kernel argument holding value v, or -1. The passes give buffers specialised
 * copies of the graph's values (same index and name), so those match too. */
static int32_t arg_of(const ib__plan *plan, const ib__pkernel *k, const ib__value *v) {
    if (!v) return -1;
    for (int pass = 0; pass < 2; pass++)
        for (int32_t i = 0; i < k->n_in; i++) {
            if (k->in[i] < 0 || k->in[i] >= plan->n_bufs) continue;
            const ib__pbuf *b = &plan->bufs[k->in[i]];
            if (b->dtype != IB_DTYPE_FLOAT32 || b->layout != IB_LAYOUT_PLAIN || !b->value)
                continue;
            if (pass == 0 ? b->value == v
                          : b->value->index == v->index && b->value->name == v->name && v->name)
                return i;
        }
    return -1;
}

bool ib__attention_analyze(const ib__plan *plan, const ib__pkernel *k, ib__att_desc *g) {
    memset(g, 0, sizeof *g);
    g->m_arg = -1;
    g->scale = 1.0f;
    if (!k->nodes || k->n_nodes < 3 || k->n_out != 1 || k->n_epi != 0 || k->n_in < 3) return false;
    const ib__node *mm1 = k->nodes[0];
    if (mm1->op != IB_OP_MAT_MUL || mm1->n_inputs != 2 || !mm1->outputs[0]) return false;
    int32_t used = 1;
    const ib__value *cur = mm1->outputs[0];
    const ib__node *n = consumer(k, cur);
    if (n && (n->op == IB_OP_DIV || n->op == IB_OP_MUL) && n->n_inputs == 2 && n->inputs[0] == cur) {
        float c;
        if (!const_scalar(n->inputs[1], &c)) return false;
        if (n->op == IB_OP_DIV) {
            if (c == 0.0f) return false;
            g->scale = 1.0f / c;
        } else {
            g->scale = c;
        }
        cur = n->outputs[0];
        n = consumer(k, cur);
        used++;
    }
    const ib__value *mask = NULL;
    if (n && n->op == IB_OP_ADD && n->n_inputs == 2) {
        mask = n->inputs[0] == cur ? n->inputs[1] : n->inputs[0];
        cur = n->outputs[0];
        n = consumer(k, cur);
        used++;
    }
    if (!n || n->op != IB_OP_SOFTMAX || n->inputs[0] != cur) return false;
    const int32_t rank = mm1->inputs[0] ? mm1->inputs[0]->rank : -1;
    if (rank < 2) return false;
    int64_t axis;
    if (ib__attr_int(n, "axis", n->opset >= 13 ? -1 : 1, &axis)) return false;
    if (axis != -1 && axis != rank - 1) return false;
    cur = n->outputs[0];
    n = consumer(k, cur);
    used++;
    if (!n || n->op != IB_OP_MAT_MUL || n->n_inputs != 2 || n->inputs[0] != cur) return false;
    used++;
    if (used != k->n_nodes) return false;
    /* arguments by value */
    g->q_arg = arg_of(plan, k, mm1->inputs[0]);
    g->k_arg = arg_of(plan, k, mm1->inputs[1]);
    g->v_arg = arg_of(plan, k, n->inputs[1]);
    if (g->q_arg < 0 || g->k_arg < 0 || g->v_arg < 0) return false;
    if (k->out[0] < 0 || k->out[0] >= plan->n_bufs) return false;
    const ib__pbuf *qb = &plan->bufs[k->in[g->q_arg]], *kb = &plan->bufs[k->in[g->k_arg]],
                   *vb = &plan->bufs[k->in[g->v_arg]], *ob = &plan->bufs[k->out[0]];
    if (ob->dtype != IB_DTYPE_FLOAT32 || ob->layout != IB_LAYOUT_PLAIN) return false;
    if (qb->rank != rank || kb->rank != rank || vb->rank != rank || ob->rank != rank) return false;
    g->nbd = rank - 2;
    g->batch = 1;
    for (int32_t d = 0; d < g->nbd; d++) {
        int64_t x = qb->dims[d];
        if (x < 1 || kb->dims[d] != x || vb->dims[d] != x || ob->dims[d] != x) return false;
        g->bdims[d] = x;
        g->batch *= x;
    }
    g->S = qb->dims[rank - 2];
    g->D = qb->dims[rank - 1];
    g->S2 = kb->dims[rank - 1];
    g->Dv = vb->dims[rank - 1];
    if (kb->dims[rank - 2] != g->D || vb->dims[rank - 2] != g->S2) return false;
    if (ob->dims[rank - 2] != g->S || ob->dims[rank - 1] != g->Dv) return false;
    if (g->S < 1 || g->D < 1 || g->S2 < 1 || g->Dv < 1) return false;
    if (mask) {
        g->has_mask = true;
        g->m_arg = arg_of(plan, k, mask);
        if (g->m_arg < 0) return false;
        const ib__pbuf *mb = &plan->bufs[k->in[g->m_arg]];
        if (mb->rank > rank) return false;
        /* strides right-aligned against the scores [batch..., S, S2] */
        int64_t s = 1, st[IB_MAX_RANK];
        for (int32_t d = rank - 1; d >= 0; d--) {
            int32_t md = d - (rank - mb->rank);
            int64_t want = d == rank - 1 ? g->S2 : d == rank - 2 ? g->S : g->bdims[d];
            int64_t have = md >= 0 ? mb->dims[md] : 1;
            if (have != want && have != 1) return false;
            st[d] = have == 1 ? 0 : s;
            s *= have;
        }
        for (int32_t d = 0; d < g->nbd; d++) g->m_bstride[d] = st[d];
        g->m_row = st[rank - 2];
        g->m_col = st[rank - 1];
    }
    return true;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ib__att_desc g;
    return ib__attention_analyze(plan, k, &g) && g.S2 * 4 <= ATT_MAX_STACK_BYTES;
}

static int64_t max_rows(const ib__att_desc *g) { return ATT_MAX_STACK_BYTES / (g->S2 * 4); }

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    ib__att_desc g;
    if (!ib__attention_analyze(plan, k, &g)) return;
    /* A few rows share each K^T load; enough row blocks for the cores. */
    int64_t rb = 4, cores = plan->target.num_cores > 0 ? plan->target.num_cores : 1;
    while (rb > 1 && g.batch * ((g.S + rb - 1) / rb) < 4 * cores) rb /= 2;
    if (rb > max_rows(&g)) rb = max_rows(&g);
    if (rb > g.S) rb = g.S;
    ib__knobs_set(knobs, "rows", rb < 1 ? 1 : rb);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    ib__att_desc g;
    if (!ib__attention_analyze(plan, k, &g)) return false;
    int64_t rb = ib__knobs_get(knobs, "rows", 1);
    return rb >= 1 && rb <= 16 && rb <= max_rows(&g);
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    ib__att_desc g;
    if (!ib__attention_analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "attention: %s is not supported",
                         ib__node_label(k->nodes[0]));
    int64_t rb = ib__knobs_get(&k->knobs, "rows", 1);
    if (rb < 1 || rb > 16 || rb > max_rows(&g))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "attention: invalid knobs for %s",
                         ib__node_label(k->nodes[0]));
    const int W = ib__target_vector_floats(&plan->target);
    const long long S = g.S, S2 = g.S2, D = g.D, Dv = g.Dv;
    const long long nrb = (g.S + rb - 1) / rb;
    const char *fn = k->fn_name;
    char scale[48], t[40];
    snprintf(t, sizeof t, "%.9g", (double)g.scale);
    snprintf(scale, sizeof scale, "%s%sf", t, strpbrk(t, ".eEn") ? "" : ".0");
    ib__sb_line(sb, "/* %s: attention from %s, %lld x [%lld x %lld] queries, %lld keys, "
                "values of %lld, scale %s%s, %lld rows per block */",
                fn, ib__node_label(k->nodes[0]), (long long)g.batch, S, D, S2, Dv, scale,
                g.has_mask ? ", mask" : "", (long long)rb);
    ib__sb_line(sb, "static void %s_body(void *ctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)ctx;");
    ib__sb_line(sb, "float sc[%lld] __attribute__((aligned(64)));", (long long)rb * S2);
    ib__sb_line(sb, "for (int64_t t = begin; t < end; t++) {");
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t bi = t / %lld, i0 = t %% %lld * %lld;", nrb, nrb, (long long)rb);
    ib__sb_line(sb, "const int64_t nr = %lld - i0 < %lld ? %lld - i0 : %lld;", S, (long long)rb, S,
                (long long)rb);
    ib__sb_line(sb, "const float *q = (const float *)args[%d] + bi * %lld + i0 * %lld;",
                (int)g.q_arg, S * D, D);
    ib__sb_line(sb, "const float *kt = (const float *)args[%d] + bi * %lld;", (int)g.k_arg, D * S2);
    ib__sb_line(sb, "const float *v = (const float *)args[%d] + bi * %lld;", (int)g.v_arg, S2 * Dv);
    ib__sb_line(sb, "float *o = (float *)args[%d] + bi * %lld + i0 * %lld;", (int)k->n_in, S * Dv,
                Dv);
    if (g.has_mask) {
        ib__sb_line(sb, "int64_t moff = 0, rr = bi;");
        for (int32_t d = g.nbd - 1; d >= 0; d--)
            ib__sb_line(sb, "{ int64_t ix = rr %% %lld; rr /= %lld; moff += ix * %lld; }",
                        (long long)g.bdims[d], (long long)g.bdims[d], (long long)g.m_bstride[d]);
        ib__sb_line(sb, "(void)rr;");
        ib__sb_line(sb, "const float *mk = (const float *)args[%d] + moff + i0 * %lld;",
                    (int)g.m_arg, (long long)g.m_row);
    }
    /* scores = Q K^T for the block: each K^T row is loaded once for all rows */
    ib__sb_line(sb, "for (int64_t x = 0; x < nr * %lld; x++) sc[x] = 0.0f;", S2);
    ib__sb_line(sb, "for (int64_t d = 0; d < %lld; d++) {", D);
    sb->indent += 4;
    ib__sb_line(sb, "const float *kr = kt + d * %lld;", S2);
    ib__sb_line(sb, "for (int64_t r = 0; r < nr; r++) {");
    sb->indent += 4;
    ib__sb_line(sb, "const float qv = q[r * %lld + d];", D);
    ib__sb_line(sb, "float *s = sc + r * %lld;", S2);
    ib__sb_line(sb, "int64_t j = 0;");
    if (W > 1)
        ib__sb_line(sb, "for (; j + %d <= %lld; j += %d) ib_store%d(s + j, ib_fma%d(ib_splat%d(qv), "
                    "ib_load%d(kr + j), ib_load%d(s + j)));",
                    W, S2, W, W, W, W, W, W);
    ib__sb_line(sb, "for (; j < %lld; j++) s[j] += qv * kr[j];", S2);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    /* per row: scale, mask, softmax, times V */
    ib__sb_line(sb, "for (int64_t r = 0; r < nr; r++) {");
    sb->indent += 4;
    ib__sb_line(sb, "float *s = sc + r * %lld;", S2);
    ib__sb_line(sb, "float m = -3.402823466e38f;");
    ib__sb_line(sb, "for (int64_t j = 0; j < %lld; j++) {", S2);
    if (g.has_mask)
        ib__sb_line(sb, "    float x = s[j] * %s + mk[r * %lld + j * %lld];", scale,
                    (long long)g.m_row, (long long)g.m_col);
    else
        ib__sb_line(sb, "    float x = s[j] * %s;", scale);
    ib__sb_line(sb, "    s[j] = x;");
    ib__sb_line(sb, "    m = x > m ? x : m;");
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "float sum = 0.0f;");
    ib__sb_line(sb, "int64_t j = 0;");
    if (W > 1) {
        ib__sb_line(sb, "ibv%df sv = ib_splat%d(0.0f);", W, W);
        ib__sb_line(sb, "for (; j + %d <= %lld; j += %d) { ibv%df e = ib_exp%d(ib_load%d(s + j) - "
                    "ib_splat%d(m)); ib_store%d(s + j, e); sv = sv + e; }",
                    W, S2, W, W, W, W, W, W);
        ib__sb_line(sb, "for (int l = 0; l < %d; l++) sum += sv[l];", W);
    }
    ib__sb_line(sb, "for (; j < %lld; j++) { float e = ib_exp1(s[j] - m); s[j] = e; sum += e; }",
                S2);
    ib__sb_line(sb, "const float inv = 1.0f / sum;");
    /* o[r] = (p V) / sum, four vectors of the value row at a time */
    ib__sb_line(sb, "float *orow = o + r * %lld;", Dv);
    const long long step = 4LL * W;
    ib__sb_line(sb, "int64_t c = 0;");
    if (W > 1) {
        ib__sb_line(sb, "for (; c + %lld <= %lld; c += %lld) {", step, Dv, step);
        sb->indent += 4;
        ib__sb_line(sb, "ibv%df a0 = ib_splat%d(0.0f), a1 = a0, a2 = a0, a3 = a0;", W, W);
        ib__sb_line(sb, "for (int64_t jj = 0; jj < %lld; jj++) {", S2);
        ib__sb_line(sb, "    const ibv%df p = ib_splat%d(s[jj]);", W, W);
        ib__sb_line(sb, "    const float *vr = v + jj * %lld + c;", Dv);
        for (int u = 0; u < 4; u++)
            ib__sb_line(sb, "    a%d = ib_fma%d(p, ib_load%d(vr + %d), a%d);", u, W, W, u * W, u);
        ib__sb_line(sb, "}");
        for (int u = 0; u < 4; u++)
            ib__sb_line(sb, "ib_store%d(orow + c + %d, a%d * ib_splat%d(inv));", W, u * W, u, W);
        sb->indent -= 4;
        ib__sb_line(sb, "}");
        ib__sb_line(sb, "for (; c + %d <= %lld; c += %d) {", W, Dv, W);
        ib__sb_line(sb, "    ibv%df a0 = ib_splat%d(0.0f);", W, W);
        ib__sb_line(sb, "    for (int64_t jj = 0; jj < %lld; jj++) a0 = ib_fma%d(ib_splat%d(s[jj]), "
                    "ib_load%d(v + jj * %lld + c), a0);",
                    S2, W, W, W, Dv);
        ib__sb_line(sb, "    ib_store%d(orow + c, a0 * ib_splat%d(inv));", W, W);
        ib__sb_line(sb, "}");
    }
    ib__sb_line(sb, "for (; c < %lld; c++) {", Dv);
    ib__sb_line(sb, "    float a = 0.0f;");
    ib__sb_line(sb, "    for (int64_t jj = 0; jj < %lld; jj++) a += s[jj] * v[jj * %lld + c];", S2,
                Dv);
    ib__sb_line(sb, "    orow[c] = a * inv;");
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);",
                (long long)g.batch * nrb, fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    ib__att_desc g;
    if (!ib__attention_analyze(plan, k, &g)) return 0.0;
    return (double)g.batch * (double)g.S * (double)g.S2 * (2.0 * (double)(g.D + g.Dv) + 5.0);
}

const ib__kernel_template ib__template_attention = {
    .name = "attention",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = flops,
};
