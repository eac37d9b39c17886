/* Kernel template eltwise: a chain of element-wise nodes (a unary or binary anchor with
 * numpy broadcasting, then fused epilogue steps) as one vectorised loop over the output,
 * dims coalesced so that broadcast operands become splats or contiguous loads, parallel
 * over chunks of rows. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"

#define ELT_MAX_OPS (2 + IB_MAX_EPILOGUE)

/* One operand of the loop: its argument slot and, per coalesced output dim, its stride
 * (0 where it broadcasts). */
typedef struct elt_operand {
    int32_t arg;
    int32_t buf;
    int64_t stride[IB_MAX_RANK];
    int64_t count;
} elt_operand;

typedef struct elt_desc {
    int32_t rank; /* coalesced */
    int64_t dims[IB_MAX_RANK];
    int64_t total;
    int32_t n_ops; /* anchor inputs (1 or 2), then epilogue operands */
    elt_operand ops[ELT_MAX_OPS];
    int32_t op_of_step[IB_MAX_EPILOGUE]; /* operand index of each binary step, else -1 */
    ib__epilogue_step anchor;            /* the anchor as a step (binary: operand = ops[1]) */
    bool anchor_extra;                   /* Neg/Abs/Exp/Reciprocal: emitted here */
} elt_desc;

static bool extra_unary(ib__op_id op) {
    return op == IB_OP_NEG || op == IB_OP_ABS || op == IB_OP_EXP || op == IB_OP_RECIPROCAL;
}

/* Constant scalar input `i` of node n (Clip's min/max from opset 11), or dflt. */
static bool const_input(const ib__node *n, int32_t i, float dflt, float *out) {
    *out = dflt;
    if (i >= n->n_inputs || !n->inputs[i]) return true;
    const ib_tensor *t = n->inputs[i]->constant;
    if (!t || t->dtype != IB_DTYPE_FLOAT32 || ib_tensor_element_count(t) != 1 || !t->data)
        return false;
    *out = *(const float *)t->data;
    return true;
}

bool ib__eltwise_anchor_step(const ib__node *n, bool (*extra_op)(ib__op_id op),
                             ib__epilogue_step *e, bool *extra) {
    memset(e, 0, sizeof *e);
    e->op = n->op;
    e->operand_buf = -1;
    *extra = false;
    if (n->n_outputs < 1 || n->n_inputs < 1 || !n->inputs[0]) return false;
    if (extra_op(n->op)) {
        *extra = true;
        e->kind = IB_EPI_UNARY;
        return n->n_inputs == 1;
    }
    if (ib__epilogue_supports_op(n->op, IB_EPI_UNARY)) {
        e->kind = IB_EPI_UNARY;
        switch (n->op) {
        case IB_OP_LEAKY_RELU: return ib__attr_float(n, "alpha", 0.01f, &e->alpha) == IB_OK;
        case IB_OP_HARD_SIGMOID:
            return ib__attr_float(n, "alpha", 0.2f, &e->alpha) == IB_OK &&
                   ib__attr_float(n, "beta", 0.5f, &e->beta) == IB_OK;
        case IB_OP_CLIP:
            if (n->opset < 11)
                return ib__attr_float(n, "min", -3.402823466e38f, &e->alpha) == IB_OK &&
                       ib__attr_float(n, "max", 3.402823466e38f, &e->beta) == IB_OK;
            return const_input(n, 1, -3.402823466e38f, &e->alpha) &&
                   const_input(n, 2, 3.402823466e38f, &e->beta);
        case IB_OP_GELU: {
            const char *approx = NULL;
            if (ib__attr_string(n, "approximate", "none", &approx) || !approx) return false;
            return strcmp(approx, "none") == 0;
        }
        default: return n->n_inputs == 1;
        }
    }
    if (ib__epilogue_supports_op(n->op, IB_EPI_BINARY)) {
        e->kind = IB_EPI_BINARY;
        e->operand_first = false;
        return n->n_inputs == 2 && n->inputs[1];
    }
    return false;
}

/* Strides of buffer `b` (right-aligned against out dims, 0 where broadcast). */
static bool bcast_strides(const ib__pbuf *b, int32_t rank, const int64_t *dims, int64_t *st) {
    if (b->rank > rank) return false;
    int64_t s = 1;
    for (int32_t d = rank - 1; d >= 0; d--) {
        int32_t bd = d - (rank - b->rank);
        int64_t n = bd >= 0 ? b->dims[bd] : 1;
        if (n != dims[d] && n != 1) return false;
        st[d] = (n == 1) ? 0 : s;
        s *= n;
    }
    return true;
}

static bool analyze(const ib__plan *plan, const ib__pkernel *k, elt_desc *g) {
    memset(g, 0, sizeof *g);
    if (!k->nodes || k->n_nodes < 1 || k->n_out != 1) return false;
    const ib__node *a = k->nodes[0];
    if (!ib__eltwise_anchor_step(a, extra_unary, &g->anchor, &g->anchor_extra)) return false;
    int32_t n_anchor_in = g->anchor.kind == IB_EPI_BINARY ? 2 : 1;
    if (k->n_in < n_anchor_in) return false;
    if (k->out[0] < 0 || k->out[0] >= plan->n_bufs) return false;
    const ib__pbuf *ob = &plan->bufs[k->out[0]];
    if (ob->dtype != IB_DTYPE_FLOAT32) return false;
    const bool blocked = ob->layout == IB_LAYOUT_NCHWC;
    if (ob->layout != IB_LAYOUT_PLAIN && !blocked) return false;
    int32_t rank = ob->rank;
    int64_t dims[IB_MAX_RANK];
    for (int32_t d = 0; d < rank; d++) {
        if (ob->dims[d] < 0) return false;
        dims[d] = ob->dims[d];
    }
    int32_t bufs[ELT_MAX_OPS], args[ELT_MAX_OPS], n = 0;
    for (int32_t i = 0; i < n_anchor_in; i++) {
        bufs[n] = k->in[i];
        args[n++] = i;
    }
    for (int32_t s = 0; s < k->n_epi; s++) {
        const ib__epilogue_step *e = &k->epi[s];
        g->op_of_step[s] = -1;
        if (!ib__epilogue_supports_op(e->op, e->kind)) return false;
        if (e->kind != IB_EPI_BINARY) continue;
        g->op_of_step[s] = n;
        bufs[n] = e->operand_buf;
        args[n++] = k->n_in + k->n_out + s;
    }
    /* Blocked outputs: only operands of the very same physical shape, or scalars. */
    const int64_t phys_count = (int64_t)(ob->nbytes / sizeof(float));
    g->n_ops = n;
    for (int32_t i = 0; i < n; i++) {
        if (bufs[i] < 0 || bufs[i] >= plan->n_bufs) return false;
        const ib__pbuf *b = &plan->bufs[bufs[i]];
        if (b->dtype != IB_DTYPE_FLOAT32) return false;
        elt_operand *o = &g->ops[i];
        o->arg = args[i];
        o->buf = bufs[i];
        o->count = 1;
        for (int32_t d = 0; d < b->rank; d++) o->count *= b->dims[d];
        if (blocked) {
            bool same = b->layout == IB_LAYOUT_NCHWC && b->block == ob->block &&
                        b->rank == ob->rank && b->nbytes == ob->nbytes;
            for (int32_t d = 0; same && d < rank; d++) same = b->dims[d] == ob->dims[d];
            if (!same && o->count != 1) return false;
            o->stride[0] = o->count == 1 ? 0 : 1;
            continue;
        }
        if (b->layout != IB_LAYOUT_PLAIN) return false;
        if (!bcast_strides(b, rank, dims, o->stride)) return false;
    }
    if (blocked) {
        g->rank = 1;
        g->dims[0] = phys_count;
        g->total = phys_count;
        return true;
    }
    /* Coalesce: drop size-1 dims, merge neighbours every operand walks contiguously. */
    int32_t r = 0;
    int64_t cd[IB_MAX_RANK], cs[ELT_MAX_OPS][IB_MAX_RANK];
    for (int32_t d = 0; d < rank; d++) {
        if (dims[d] == 1) continue;
        bool merge = r > 0;
        for (int32_t i = 0; merge && i < n; i++)
            merge = cs[i][r - 1] == g->ops[i].stride[d] * dims[d];
        if (merge) {
            cd[r - 1] *= dims[d];
            for (int32_t i = 0; i < n; i++) cs[i][r - 1] = g->ops[i].stride[d];
        } else {
            cd[r] = dims[d];
            for (int32_t i = 0; i < n; i++) cs[i][r] = g->ops[i].stride[d];
            r++;
        }
    }
    if (r == 0) {
        cd[0] = 1;
        for (int32_t i = 0; i < n; i++) cs[i][0] = 0;
        r = 1;
    }
    g->rank = r;
    g->total = 1;
    for (int32_t d = 0; d < r; d++) {
        g->dims[d] = cd[d];
        g->total *= cd[d];
    }
    for (int32_t i = 0; i < n; i++) memcpy(g->ops[i].stride, cs[i], sizeof cs[i]);
    return true;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    elt_desc g;
    return analyze(plan, k, &g);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    (void)k;
    /* Chunks of a few KiB: enough work per task to hide the dispatch, many tasks. */
    int64_t W = ib__target_vector_floats(&plan->target);
    ib__knobs_set(knobs, "chunk", W * 256);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    elt_desc g;
    if (!analyze(plan, k, &g)) return false;
    int64_t W = ib__target_vector_floats(&plan->target);
    int64_t ch = ib__knobs_get(knobs, "chunk", W * 256);
    return ch >= W && ch % W == 0 && ch <= ((int64_t)1 << 24);
}

/* The value of operand i at the loop position, as an expression of `lanes` lanes. */
static void operand_expr(char *buf, size_t n, const elt_desc *g, int32_t i, int lanes) {
    const elt_operand *o = &g->ops[i];
    const int32_t inner = g->rank - 1;
    if (o->stride[inner] == 0)
        snprintf(buf, n, "ib_splat%d(((const float *)args[%d])[o%d])", lanes, (int)o->arg, (int)i);
    else
        snprintf(buf, n, "ib_load%d((const float *)args[%d] + o%d + j)", lanes, (int)o->arg,
                 (int)i);
}

static ib_status emit_value(ib__sb *sb, const ib__pkernel *k, const elt_desc *g, int lanes) {
    char x[160];
    operand_expr(x, sizeof x, g, 0, lanes);
    ib__sb_line(sb, "ibv%df v = %s;", lanes, x);
    ib__pkernel one = *k;
    one.n_epi = 1;
    const int32_t inner = g->rank - 1;
    if (g->anchor_extra) {
        switch (g->anchor.op) {
        case IB_OP_NEG: ib__sb_line(sb, "v = -v;"); break;
        case IB_OP_ABS: ib__sb_line(sb, "v = ib_max%d(v, -v);", lanes); break;
        case IB_OP_EXP: ib__sb_line(sb, "v = ib_exp%d(v);", lanes); break;
        case IB_OP_RECIPROCAL: ib__sb_line(sb, "v = 1.0f / v;"); break;
        default: return ib__error(IB_ERR_INTERNAL, "eltwise: bad anchor");
        }
    } else {
        one.epi[0] = g->anchor;
        int32_t first = 0;
        char ch[32] = "0", el[48] = "0";
        if (g->anchor.kind == IB_EPI_BINARY) {
            const elt_operand *o = &g->ops[1];
            first = o->arg;
            one.epi[0].operand_kind = o->stride[inner] ? IB_EPI_FULL : IB_EPI_PER_CHANNEL;
            snprintf(ch, sizeof ch, "o1");
            snprintf(el, sizeof el, "o1 + j");
        }
        IB_TRY(ib__emit_epilogue(sb, &one, first, "v", lanes, ch, false, el));
    }
    for (int32_t s = 0; s < k->n_epi; s++) {
        one.epi[0] = k->epi[s];
        int32_t oi = g->op_of_step[s], first = 0;
        char ch[32] = "0", el[48] = "0";
        if (oi >= 0) {
            const elt_operand *o = &g->ops[oi];
            first = o->arg;
            one.epi[0].operand_kind = o->stride[inner] ? IB_EPI_FULL : IB_EPI_PER_CHANNEL;
            snprintf(ch, sizeof ch, "o%d", (int)oi);
            snprintf(el, sizeof el, "o%d + j", (int)oi);
        }
        IB_TRY(ib__emit_epilogue(sb, &one, first, "v", lanes, ch, false, el));
    }
    ib__sb_line(sb, "ib_store%d(y + orow + j, v);", lanes);
    return ib__sb_status(sb);
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    elt_desc g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "eltwise: %s is not supported",
                         ib__node_label(k->nodes[0]));
    const int W = ib__target_vector_floats(&plan->target);
    const int64_t L = g.dims[g.rank - 1];
    int64_t chunk = ib__knobs_get(&k->knobs, "chunk", (int64_t)W * 256);
    if (chunk < W || chunk % W) chunk = (int64_t)W * 256;
    const int64_t nch = L > 0 ? (L + chunk - 1) / chunk : 1;
    const int64_t rows = L > 0 ? g.total / L : 0;
    const char *fn = k->fn_name;
    ib__sb_line(sb, "/* %s: %s and %d fused steps over %lld elements (%lld rows of %lld) */", fn,
                ib__node_label(k->nodes[0]), (int)k->n_epi, (long long)g.total, (long long)rows,
                (long long)L);
    ib__sb_line(sb, "static void %s_body(void *ctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)ctx;");
    ib__sb_line(sb, "float *y = (float *)args[%d];", (int)k->n_in);
    ib__sb_line(sb, "for (int64_t t = begin; t < end; t++) {");
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t row = t / %lld, j0 = t %% %lld * %lld;", (long long)nch,
                (long long)nch, (long long)chunk);
    ib__sb_line(sb, "const int64_t j1 = j0 + %lld < %lld ? j0 + %lld : %lld;", (long long)chunk,
                (long long)L, (long long)chunk, (long long)L);
    ib__sb_line(sb, "const int64_t orow = row * %lld;", (long long)L);
    for (int32_t i = 0; i < g.n_ops; i++) ib__sb_line(sb, "int64_t o%d = 0;", (int)i);
    if (g.rank > 1) {
        ib__sb_line(sb, "int64_t r = row;");
        for (int32_t d = g.rank - 2; d >= 0; d--) {
            ib__sb_line(sb, "{ const int64_t ix = r %% %lld; r /= %lld;", (long long)g.dims[d],
                        (long long)g.dims[d]);
            for (int32_t i = 0; i < g.n_ops; i++)
                if (g.ops[i].stride[d])
                    ib__sb_line(sb, "  o%d += ix * %lld;", (int)i, (long long)g.ops[i].stride[d]);
            ib__sb_line(sb, "}");
        }
        ib__sb_line(sb, "(void)r;");
    }
    for (int32_t i = 0; i < g.n_ops; i++) ib__sb_line(sb, "(void)o%d;", (int)i);
    ib__sb_line(sb, "int64_t j = j0;");
    if (W > 1) {
        ib__sb_line(sb, "for (; j + %d <= j1; j += %d) {", W, W);
        sb->indent += 4;
        IB_TRY(emit_value(sb, k, &g, W));
        sb->indent -= 4;
        ib__sb_line(sb, "}");
    }
    ib__sb_line(sb, "for (; j < j1; j++) {");
    sb->indent += 4;
    IB_TRY(emit_value(sb, k, &g, 1));
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);",
                (long long)(rows * nch), fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    elt_desc g;
    if (!analyze(plan, k, &g)) return 0.0;
    return (double)g.total * (double)(1 + k->n_epi);
}

const ib__kernel_template ib__template_eltwise = {
    .name = "eltwise",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = flops,
};
