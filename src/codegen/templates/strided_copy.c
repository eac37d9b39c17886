/* Kernel template strided_copy: ONNX Transpose and Slice (constant bounds, any steps) of
 * any element type, as a copy loop over output rows of a strided view of the input: axes
 * of size 1 dropped and axes that stay contiguous merged, so that the common "swap two
 * middle axes" of attention heads or a split of a fused QKV projection becomes rows of
 * contiguous copies. Parallel over output rows. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"
#include "ops/ops.h"

/* The copy after coalescing: output dims and, per output axis, its input stride; the
 * input offset of output element 0. */
typedef struct sc_desc {
    int32_t rank;
    int64_t dims[IB_MAX_RANK];
    int64_t in_stride[IB_MAX_RANK];
    int64_t offset;
    int64_t total;
    const char *type;
} sc_desc;

/* Output axis i reads input axis axis_of[i] with `extent` elements, input stride stride[i]. */
static bool view_of(const ib__plan *plan, const ib__pkernel *k, const ib__pbuf *x,
                    const ib__pbuf *y, int64_t *extent, int64_t *stride, int64_t *offset) {
    const ib__node *n = k->nodes[0];
    const int32_t r = x->rank;
    int64_t x_stride[IB_MAX_RANK], s = 1;
    for (int32_t d = r - 1; d >= 0; d--) {
        x_stride[d] = s;
        s *= x->dims[d];
    }
    *offset = 0;
    if (n->op == IB_OP_TRANSPOSE) {
        if (k->n_in != 1) return false;
        int64_t perm[IB_MAX_RANK];
        int32_t n_perm = 0;
        const int64_t *p = NULL;
        if (ib__attr_ints(n, "perm", &n_perm, &p) != IB_OK) return false;
        if (n_perm == 0) /* default: reverse the axes */
            for (int32_t i = 0; i < r; i++) perm[i] = r - 1 - i;
        else if (n_perm != r) return false;
        else memcpy(perm, p, (size_t)r * sizeof *perm);
        bool seen[IB_MAX_RANK] = {false};
        for (int32_t i = 0; i < r; i++) {
            if (perm[i] < 0 || perm[i] >= r || seen[perm[i]]) return false;
            seen[perm[i]] = true;
            extent[i] = x->dims[perm[i]];
            stride[i] = x_stride[perm[i]];
        }
    } else { /* Slice: bounds from its constant inputs (or attributes before opset 10) */
        const ib_tensor *args[4] = {NULL, NULL, NULL, NULL};
        for (int32_t i = 1; i < k->n_in && i <= 4; i++) {
            if (k->in[i] < 0) continue;
            if (k->in[i] >= plan->n_bufs) return false;
            const ib__value *v = plan->bufs[k->in[i]].value;
            if (!v || !v->constant) return false;
            args[i - 1] = v->constant;
        }
        int64_t start[IB_MAX_RANK], step[IB_MAX_RANK];
        if (ib__slice_region(n, n->opset, r, x->dims, args, start, step, extent) != IB_OK) {
            ib__error_clear();
            return false;
        }
        for (int32_t i = 0; i < r; i++) {
            stride[i] = step[i] * x_stride[i];
            if (extent[i] > 0) *offset += start[i] * x_stride[i];
        }
    }
    for (int32_t i = 0; i < r; i++)
        if (y->dims[i] != extent[i]) return false;
    return true;
}

static bool analyze(const ib__plan *plan, const ib__pkernel *k, sc_desc *g) {
    memset(g, 0, sizeof *g);
    if (k->n_nodes != 1 || k->n_out != 1 || k->n_epi != 0 || k->n_in < 1) return false;
    const ib__op_id op = k->nodes[0]->op;
    if (op != IB_OP_TRANSPOSE && op != IB_OP_SLICE) return false;
    const ib__pbuf *x = ib__plain_buf(plan, k->in[0]), *y = ib__plain_buf(plan, k->out[0]);
    if (!x || !y || x->dtype != y->dtype || x->rank != y->rank) return false;
    g->type = ib__bits_type(x->dtype);
    if (!g->type) return false;
    int64_t extent[IB_MAX_RANK], stride[IB_MAX_RANK];
    if (!view_of(plan, k, x, y, extent, stride, &g->offset)) return false;
    g->total = ib__shape_count(extent, x->rank);
    /* Output axes in order, size-1 axes dropped; an axis that continues the previous one
     * in the input (the previous stride is this one's extent times its stride) merges. */
    for (int32_t i = 0; i < x->rank; i++) {
        if (extent[i] == 1) continue;
        if (g->rank > 0 && g->in_stride[g->rank - 1] == stride[i] * extent[i]) {
            g->dims[g->rank - 1] *= extent[i];
            g->in_stride[g->rank - 1] = stride[i];
        } else {
            g->dims[g->rank] = extent[i];
            g->in_stride[g->rank] = stride[i];
            g->rank++;
        }
    }
    return true;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    sc_desc g;
    return analyze(plan, k, &g);
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    sc_desc g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "strided_copy: unsupported kernel %s", k->fn_name);
    const char *fn = k->fn_name, *T = g.type;
    const long long total = (long long)g.total;
    const int32_t yarg = k->n_in; /* args: the input, the bounds (Slice), the output */
    ib__sb_line(sb, "/* %s: %s of %lld elements, %d axes after coalescing, input offset %lld */",
                fn, k->nodes[0]->op_type, total, g.rank, (long long)g.offset);
    if (g.total == 0 || g.rank == 0 || (g.rank == 1 && g.in_stride[0] == 1)) {
        /* nothing, one element, or one contiguous run */
        ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
        ib__sb_line(sb, "    (void)abi;");
        if (total > 0)
            ib__sb_line(sb, "    __builtin_memmove(args[%d], (const %s *)args[0] + %lld, %lluu);", yarg,
                        T, (long long)g.offset, (unsigned long long)plan->bufs[k->out[0]].nbytes);
        else
            ib__sb_line(sb, "    (void)args;");
        ib__sb_line(sb, "    return 0;");
        ib__sb_line(sb, "}");
        return ib__sb_status(sb);
    }
    const int32_t last = g.rank - 1;
    const long long row_len = (long long)g.dims[last], rows = total / row_len;
    ib__sb_line(sb, "static void %s_body(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const %s *restrict x = (const %s *)args[0] + %lld;", T, T, (long long)g.offset);
    ib__sb_line(sb, "%s *restrict y = (%s *)args[%d];", T, T, yarg);
    ib__sb_line(sb, "for (int64_t row = begin; row < end; row++) {");
    sb->indent += 4;
    ib__sb_line(sb, "int64_t rest = row, xo = 0;");
    for (int32_t a = last - 1; a >= 0; a--) {
        if (a > 0)
            ib__sb_line(sb, "xo += (rest %% %lld) * %lld; rest /= %lld;", (long long)g.dims[a],
                        (long long)g.in_stride[a], (long long)g.dims[a]);
        else
            ib__sb_line(sb, "xo += rest * %lld;", (long long)g.in_stride[a]);
    }
    ib__sb_line(sb, "const %s *restrict xs = x + xo;", T);
    ib__sb_line(sb, "%s *restrict ys = y + row * %lld;", T, row_len);
    if (g.in_stride[last] == 1)
        ib__sb_line(sb, "for (int64_t j = 0; j < %lld; j++) ys[j] = xs[j];", row_len);
    else
        ib__sb_line(sb, "for (int64_t j = 0; j < %lld; j++) ys[j] = xs[j * %lld];", row_len,
                    (long long)g.in_stride[last]);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__emit_copy_entry(sb, fn, NULL, rows, (unsigned long long)plan->bufs[k->out[0]].nbytes);
    return ib__sb_status(sb);
}

IB_DATA_MOVEMENT_TEMPLATE(strided_copy, supports, emit);
