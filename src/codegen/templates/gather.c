/* Kernel template gather: ONNX Gather (embedding lookups, picking a token) of any
 * element type along any axis, with int32 or int64 indices, negative ones counted from
 * the end. Every index is checked before anything is written: an index out of range
 * fails the step with IB_KERNEL_ERR_INDEX, as the reference op fails the node. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"

typedef struct gather_desc {
    int64_t outer, axis_len, inner, n_idx; /* data as [outer, axis_len, inner] */
    const char *type, *index_type;
} gather_desc;

static bool analyze(const ib__plan *plan, const ib__pkernel *k, gather_desc *g) {
    memset(g, 0, sizeof *g);
    if (k->n_nodes != 1 || k->nodes[0]->op != IB_OP_GATHER || k->n_in != 2 || k->n_out != 1 ||
        k->n_epi != 0)
        return false;
    const ib__pbuf *x = ib__plain_buf(plan, k->in[0]), *ix = ib__plain_buf(plan, k->in[1]);
    const ib__pbuf *y = ib__plain_buf(plan, k->out[0]);
    if (!x || !ix || !y || x->dtype != y->dtype || x->rank < 1) return false;
    if (ix->dtype == IB_DTYPE_INT64) g->index_type = "int64_t";
    else if (ix->dtype == IB_DTYPE_INT32) g->index_type = "int32_t";
    else return false;
    g->type = ib__bits_type(x->dtype);
    if (!g->type) return false;
    int64_t axis;
    if (ib__attr_int(k->nodes[0], "axis", 0, &axis) != IB_OK) return false;
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis >= x->rank) return false;
    g->outer = ib__shape_count(x->dims, (int32_t)axis);
    g->axis_len = x->dims[axis];
    g->inner = ib__shape_count(x->dims + axis + 1, x->rank - (int32_t)axis - 1);
    g->n_idx = ib__shape_count(ix->dims, ix->rank);
    if (g->outer < 0 || g->inner < 0 || g->n_idx < 0) return false;
    return ib__shape_count(y->dims, y->rank) == g->outer * g->n_idx * g->inner;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    gather_desc g;
    return analyze(plan, k, &g);
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    gather_desc g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "gather: unsupported kernel %s", k->fn_name);
    const char *fn = k->fn_name, *T = g.type, *I = g.index_type;
    const long long outer = (long long)g.outer, n = (long long)g.axis_len;
    const long long inner = (long long)g.inner, ni = (long long)g.n_idx;
    ib__sb_line(sb, "/* %s: gather of %lld x %lld rows of %lld elements from %lld */", fn, outer,
                ni, inner, n);
    if (outer == 0 || ni == 0 || inner == 0) { /* an empty output */
        ib__emit_copy_entry(sb, fn, NULL, 0, 0);
        return ib__sb_status(sb);
    }
    /* one item = one (outer, index) pair: a row of `inner` elements */
    ib__sb_line(sb, "static void %s_body(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const %s *restrict x = (const %s *)args[0];", T, T);
    ib__sb_line(sb, "const %s *restrict ix = (const %s *)args[1];", I, I);
    ib__sb_line(sb, "%s *restrict y = (%s *)args[2];", T, T);
    ib__sb_line(sb, "for (int64_t it = begin; it < end; it++) {");
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t o = it / %lld;", ni);
    ib__sb_line(sb, "int64_t v = (int64_t)ix[it - o * %lld];", ni);
    ib__sb_line(sb, "if (v < 0) v += %lld;", n);
    ib__sb_line(sb, "const %s *restrict xs = x + (o * %lld + v) * %lld;", T, n, inner);
    ib__sb_line(sb, "%s *restrict ys = y + it * %lld;", T, inner);
    ib__sb_line(sb, "for (int64_t j = 0; j < %lld; j++) ys[j] = xs[j];", inner);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    /* every index checked before anything is written */
    char check[256];
    snprintf(check, sizeof check,
             "    const %s *ix = (const %s *)args[1];\n"
             "    for (int64_t j = 0; j < %lld; j++)\n"
             "        if (ix[j] < -%lld || ix[j] >= %lld) return IB_KERNEL_ERR_INDEX;\n",
             I, I, ni, n, n);
    ib__emit_copy_entry(sb, fn, check, outer * ni, (unsigned long long)plan->bufs[k->out[0]].nbytes);
    return ib__sb_status(sb);
}

IB_DATA_MOVEMENT_TEMPLATE(gather, supports, emit);
