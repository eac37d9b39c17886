/* Kernel template softmax: Softmax / LogSoftmax over the last axis (opset 13; before
 * 13 over the flattened trailing dims from `axis`), one row at a time with vector max,
 * exp and sum passes, parallel over blocks of rows, fused epilogue on the result. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"

typedef struct smx_desc {
    int64_t rows, len;
    bool log;
} smx_desc;

static bool analyze(const ib__plan *plan, const ib__pkernel *k, smx_desc *g) {
    memset(g, 0, sizeof *g);
    if (!k->nodes || k->n_nodes < 1 || k->n_in < 1 || k->n_out != 1) return false;
    const ib__node *n = k->nodes[0];
    if (n->op != IB_OP_SOFTMAX && n->op != IB_OP_LOG_SOFTMAX) return false;
    g->log = n->op == IB_OP_LOG_SOFTMAX;
    int32_t ids[2] = {k->in[0], k->out[0]};
    for (int i = 0; i < 2; i++) {
        if (ids[i] < 0 || ids[i] >= plan->n_bufs) return false;
        const ib__pbuf *b = &plan->bufs[ids[i]];
        if (b->dtype != IB_DTYPE_FLOAT32 || b->layout != IB_LAYOUT_PLAIN) return false;
    }
    const ib__pbuf *x = &plan->bufs[k->in[0]], *y = &plan->bufs[k->out[0]];
    if (x->rank < 1 || x->rank != y->rank) return false;
    for (int32_t d = 0; d < x->rank; d++)
        if (x->dims[d] < 0 || x->dims[d] != y->dims[d]) return false;
    int64_t axis;
    if (ib__attr_int(n, "axis", n->opset >= 13 ? -1 : 1, &axis)) return false;
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis >= x->rank) return false;
    if (n->opset >= 13 && axis != x->rank - 1) return false;
    g->rows = 1;
    g->len = 1;
    for (int32_t d = 0; d < x->rank; d++) {
        if (d < axis) g->rows *= x->dims[d];
        else g->len *= x->dims[d];
    }
    if (g->len < 1) return false;
    for (int32_t s = 0; s < k->n_epi; s++) {
        const ib__epilogue_step *e = &k->epi[s];
        if (!ib__epilogue_supports_op(e->op, e->kind)) return false;
        if (e->kind != IB_EPI_BINARY) continue;
        if (e->operand_kind == IB_EPI_PER_CHANNEL) return false;
        if (e->operand_buf < 0 || e->operand_buf >= plan->n_bufs) return false;
        const ib__pbuf *ob = &plan->bufs[e->operand_buf];
        if (ob->dtype != IB_DTYPE_FLOAT32 || ob->layout != IB_LAYOUT_PLAIN) return false;
        int64_t c = 1;
        for (int32_t d = 0; d < ob->rank; d++) c *= ob->dims[d];
        if (c != (e->operand_kind == IB_EPI_SCALAR ? 1 : g->rows * g->len)) return false;
    }
    return true;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    smx_desc g;
    return analyze(plan, k, &g);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    smx_desc g;
    if (!analyze(plan, k, &g)) return;
    /* Rows per task: about 16 KiB of input each, at least one row. */
    int64_t rpt = (16384 / 4) / g.len;
    ib__knobs_set(knobs, "rows_per_task", rpt < 1 ? 1 : rpt);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    smx_desc g;
    if (!analyze(plan, k, &g)) return false;
    int64_t r = ib__knobs_get(knobs, "rows_per_task", 1);
    return r >= 1 && r <= ((int64_t)1 << 30);
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    smx_desc g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "softmax: %s is not supported",
                         ib__node_label(k->nodes[0]));
    const int W = ib__target_vector_floats(&plan->target);
    int64_t rpt = ib__knobs_get(&k->knobs, "rows_per_task", 1);
    if (rpt < 1) rpt = 1;
    const int64_t L = g.len, tasks = (g.rows + rpt - 1) / rpt;
    const int fa = k->n_in + k->n_out;
    const char *fn = k->fn_name;
    ib__sb_line(sb, "/* %s: %s over %lld rows of %lld */", fn, ib__node_label(k->nodes[0]),
                (long long)g.rows, (long long)L);
    ib__sb_line(sb, "static void %s_body(void *ctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)ctx;");
    ib__sb_line(sb, "const float *X = (const float *)args[0];");
    ib__sb_line(sb, "float *Y = (float *)args[%d];", (int)k->n_in);
    ib__sb_line(sb, "int64_t r1 = end * %lld < %lld ? end * %lld : %lld;", (long long)rpt,
                (long long)g.rows, (long long)rpt, (long long)g.rows);
    ib__sb_line(sb, "for (int64_t r = begin * %lld; r < r1; r++) {", (long long)rpt);
    sb->indent += 4;
    ib__sb_line(sb, "const float *x = X + r * %lld;", (long long)L);
    ib__sb_line(sb, "float *y = Y + r * %lld;", (long long)L);
    ib__sb_line(sb, "int64_t j;");
    /* max */
    ib__sb_line(sb, "float m = x[0];");
    if (W > 1 && L >= W) {
        ib__sb_line(sb, "ibv%df mv = ib_load%d(x);", W, W);
        ib__sb_line(sb, "for (j = %d; j + %d <= %lld; j += %d) mv = ib_max%d(mv, ib_load%d(x + j));",
                    W, W, (long long)L, W, W, W);
        ib__sb_line(sb, "for (int l = 0; l < %d; l++) m = mv[l] > m ? mv[l] : m;", W);
        ib__sb_line(sb, "j = %lld;", (long long)(L / W * W));
    } else {
        ib__sb_line(sb, "j = 1;");
    }
    ib__sb_line(sb, "for (; j < %lld; j++) m = x[j] > m ? x[j] : m;", (long long)L);
    /* exp and sum */
    ib__sb_line(sb, "float s = 0.0f;");
    ib__sb_line(sb, "j = 0;");
    if (W > 1 && L >= W) {
        ib__sb_line(sb, "ibv%df sv = ib_splat%d(0.0f), mm = ib_splat%d(m);", W, W, W);
        ib__sb_line(sb, "for (; j + %d <= %lld; j += %d) {", W, (long long)L, W);
        ib__sb_line(sb, "    ibv%df e = ib_exp%d(ib_load%d(x + j) - mm);", W, W, W);
        if (!g.log) ib__sb_line(sb, "    ib_store%d(y + j, e);", W);
        ib__sb_line(sb, "    sv = sv + e;");
        ib__sb_line(sb, "}");
        ib__sb_line(sb, "for (int l = 0; l < %d; l++) s += sv[l];", W);
    }
    ib__sb_line(sb, "for (; j < %lld; j++) {", (long long)L);
    ib__sb_line(sb, "    float e = ib_exp1(x[j] - m);");
    if (!g.log) ib__sb_line(sb, "    y[j] = e;");
    ib__sb_line(sb, "    s += e;");
    ib__sb_line(sb, "}");
    /* normalise and epilogue */
    if (g.log)
        ib__sb_line(sb, "const float sh = m + __builtin_logf(s);");
    else
        ib__sb_line(sb, "const float inv = 1.0f / s;");
    ib__sb_line(sb, "j = 0;");
    for (int pass = 0; pass < 2; pass++) {
        const int lanes = pass == 0 ? W : 1;
        if (pass == 0 && W == 1) continue;
        if (pass == 0)
            ib__sb_line(sb, "for (; j + %d <= %lld; j += %d) {", W, (long long)L, W);
        else
            ib__sb_line(sb, "for (; j < %lld; j++) {", (long long)L);
        sb->indent += 4;
        if (g.log)
            ib__sb_line(sb, "ibv%df v = ib_load%d(x + j) - ib_splat%d(sh);", lanes, lanes, lanes);
        else
            ib__sb_line(sb, "ibv%df v = ib_load%d(y + j) * ib_splat%d(inv);", lanes, lanes, lanes);
        char elem[64];
        snprintf(elem, sizeof elem, "r * %lld + j", (long long)L);
        IB_TRY(ib__emit_epilogue(sb, k, fa, "v", lanes, "0", false, elem));
        ib__sb_line(sb, "ib_store%d(y + j, v);", lanes);
        sb->indent -= 4;
        ib__sb_line(sb, "}");
    }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
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
    smx_desc g;
    if (!analyze(plan, k, &g)) return 0.0;
    return 5.0 * (double)g.rows * (double)g.len;
}

const ib__kernel_template ib__template_softmax = {
    .name = "softmax",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = flops,
};
