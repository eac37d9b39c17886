/* Kernel template transpose: an ONNX Transpose of any element type as a copy loop over
 * output rows, axes of size 1 dropped and axes that stay adjacent merged, so that the
 * common "swap two middle axes" of attention heads becomes rows of contiguous copies.
 * Parallel over output rows. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"

/* The transpose after coalescing: output dims and, per output axis, its input stride. */
typedef struct tr_desc {
    int32_t rank;
    int64_t dims[IB_MAX_RANK];
    int64_t in_stride[IB_MAX_RANK];
    int64_t total;
    const char *type;
} tr_desc;

static bool analyze(const ib__plan *plan, const ib__pkernel *k, tr_desc *g) {
    memset(g, 0, sizeof *g);
    if (k->n_nodes != 1 || k->nodes[0]->op != IB_OP_TRANSPOSE || k->n_in != 1 ||
        k->n_out != 1 || k->n_epi != 0)
        return false;
    const ib__pbuf *x = ib__plain_buf(plan, k->in[0]), *y = ib__plain_buf(plan, k->out[0]);
    if (!x || !y || x->dtype != y->dtype || x->rank != y->rank) return false;
    g->type = ib__bits_type(x->dtype);
    if (!g->type) return false;
    const int32_t r = x->rank;
    int64_t perm[IB_MAX_RANK];
    int32_t n_perm = 0;
    const int64_t *p = NULL;
    if (ib__attr_ints(k->nodes[0], "perm", &n_perm, &p) != IB_OK) return false;
    if (n_perm == 0) /* default: reverse the axes */
        for (int32_t i = 0; i < r; i++) perm[i] = r - 1 - i;
    else if (n_perm != r) return false;
    else memcpy(perm, p, (size_t)r * sizeof *perm);
    bool seen[IB_MAX_RANK] = {false};
    for (int32_t i = 0; i < r; i++) {
        if (perm[i] < 0 || perm[i] >= r || seen[perm[i]]) return false;
        seen[perm[i]] = true;
        if (y->dims[i] != x->dims[perm[i]]) return false;
    }
    int64_t x_stride[IB_MAX_RANK], s = 1;
    for (int32_t d = r - 1; d >= 0; d--) {
        x_stride[d] = s;
        s *= x->dims[d];
    }
    g->total = s;
    /* Output axes in order, size-1 axes dropped; an axis that continues the previous one
     * in the input (the previous stride is this one's extent) merges into it. */
    for (int32_t i = 0; i < r; i++) {
        int32_t a = (int32_t)perm[i];
        if (x->dims[a] == 1) continue;
        if (g->rank > 0 && g->in_stride[g->rank - 1] == x_stride[a] * x->dims[a]) {
            g->dims[g->rank - 1] *= x->dims[a];
            g->in_stride[g->rank - 1] = x_stride[a];
        } else {
            g->dims[g->rank] = x->dims[a];
            g->in_stride[g->rank] = x_stride[a];
            g->rank++;
        }
    }
    return true;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    tr_desc g;
    return analyze(plan, k, &g);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    (void)plan;
    (void)k;
    (void)knobs; /* one pass over memory: nothing to tune */
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    (void)plan;
    (void)k;
    (void)knobs;
    return true;
}

/* Below this many bytes a copy is cheaper than waking the other threads. */
enum { TR_PARALLEL_BYTES = 64 * 1024 };

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    tr_desc g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "transpose: unsupported kernel %s", k->fn_name);
    const char *fn = k->fn_name, *T = g.type;
    const long long total = (long long)g.total;
    ib__sb_line(sb, "/* %s: transpose of %lld elements, %d axes after coalescing */", fn, total,
                g.rank);
    if (g.rank <= 1 || g.total == 0) { /* the permutation moves nothing */
        ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
        ib__sb_line(sb, "    (void)abi;");
        ib__sb_line(sb, "    if (args[1] != args[0]) __builtin_memmove(args[1], args[0], %lluu);",
                    (unsigned long long)plan->bufs[k->out[0]].nbytes);
        ib__sb_line(sb, "    return 0;");
        ib__sb_line(sb, "}");
        return ib__sb_status(sb);
    }
    const int32_t last = g.rank - 1;
    const long long row_len = (long long)g.dims[last], rows = total / row_len;
    ib__sb_line(sb, "static void %s_body(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const %s *restrict x = (const %s *)args[0];", T, T);
    ib__sb_line(sb, "%s *restrict y = (%s *)args[1];", T, T);
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
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    if ((unsigned long long)plan->bufs[k->out[0]].nbytes < TR_PARALLEL_BYTES)
        ib__sb_line(sb, "    (void)abi;\n    %s_body((void *)args, 0, %lld);", fn, rows);
    else
        ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);", rows, fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    (void)plan;
    (void)k;
    return 0;
}

const ib__kernel_template ib__template_transpose = {
    .name = "transpose",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = flops,
};
