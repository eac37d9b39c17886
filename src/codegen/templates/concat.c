/* Kernel template concat: ONNX Concat of up to IB_MAX_KERNEL_ARGS inputs of any element
 * type along any axis, as copies of each input's rows into its place in the output rows
 * (a ViT's class token before the patches, a U-Net's skip connection). Parallel over the
 * output rows when there are many. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"

typedef struct concat_desc {
    int64_t outer;                       /* rows: the product of the dims before the axis */
    int64_t row;                         /* output elements per row */
    int64_t part[IB_MAX_KERNEL_ARGS];    /* elements each input brings to a row */
    const char *type;
} concat_desc;

static bool analyze(const ib__plan *plan, const ib__pkernel *k, concat_desc *g) {
    memset(g, 0, sizeof *g);
    if (k->n_nodes != 1 || k->nodes[0]->op != IB_OP_CONCAT || k->n_out != 1 || k->n_epi != 0 ||
        k->n_in < 1 || k->n_in > IB_MAX_KERNEL_ARGS - 1)
        return false;
    const ib__pbuf *y = ib__plain_buf(plan, k->out[0]);
    if (!y || y->rank < 1) return false;
    g->type = ib__bits_type(y->dtype);
    if (!g->type) return false;
    int64_t axis;
    if (ib__attr_int(k->nodes[0], "axis", 0, &axis) != IB_OK) return false;
    if (axis < 0) axis += y->rank;
    if (axis < 0 || axis >= y->rank) return false;
    g->outer = ib__shape_count(y->dims, (int32_t)axis);
    int64_t inner = ib__shape_count(y->dims + axis + 1, y->rank - (int32_t)axis - 1), along = 0;
    for (int32_t i = 0; i < k->n_in; i++) {
        const ib__pbuf *x = ib__plain_buf(plan, k->in[i]);
        if (!x || x->dtype != y->dtype || x->rank != y->rank) return false;
        for (int32_t d = 0; d < y->rank; d++)
            if (d != axis && x->dims[d] != y->dims[d]) return false;
        g->part[i] = x->dims[axis] * inner;
        along += x->dims[axis];
    }
    g->row = along * inner;
    return along == y->dims[axis];
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    concat_desc g;
    return analyze(plan, k, &g);
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    concat_desc g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "concat: unsupported kernel %s", k->fn_name);
    const char *fn = k->fn_name, *T = g.type;
    ib__sb_line(sb, "/* %s: concat of %d inputs, %lld rows of %lld elements */", fn, k->n_in,
                (long long)g.outer, (long long)g.row);
    ib__sb_line(sb, "static void %s_body(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "%s *restrict y = (%s *)args[%d];", T, T, k->n_in);
    ib__sb_line(sb, "for (int64_t o = begin; o < end; o++) {");
    sb->indent += 4;
    int64_t at = 0;
    for (int32_t i = 0; i < k->n_in; i++) {
        if (g.part[i] > 0) {
            ib__sb_line(sb, "{");
            ib__sb_line(sb, "    const %s *restrict x = (const %s *)args[%d] + o * %lld;", T, T, i,
                        (long long)g.part[i]);
            ib__sb_line(sb, "    for (int64_t j = 0; j < %lld; j++) y[o * %lld + %lld + j] = x[j];",
                        (long long)g.part[i], (long long)g.row, (long long)at);
            ib__sb_line(sb, "}");
        }
        at += g.part[i];
    }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__emit_copy_entry(sb, fn, NULL, g.row ? (long long)g.outer : 0,
                         (unsigned long long)plan->bufs[k->out[0]].nbytes);
    return ib__sb_status(sb);
}

IB_DATA_MOVEMENT_TEMPLATE(concat, supports, emit);
