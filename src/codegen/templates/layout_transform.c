/* Kernel template layout_transform: copies a rank-4 tensor between PLAIN NCHW and
 * NCHW[b]c (or between two blocks), zero-filling the padding channels of a blocked
 * output. The layout pass inserts it as a kernel with no nodes (n_nodes == 0): in[0]
 * and out[0] hold the same logical tensor and differ only in layout. */
#include <string.h>

#include "codegen/emit_common.h"
#include "codegen/plan.h"

static bool layout_ok(const ib__pbuf *b) {
    if (b->layout == IB_LAYOUT_PLAIN) return true;
    return b->layout == IB_LAYOUT_NCHWC && b->block >= 1 && b->block <= 64;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    if (k->n_nodes != 0 || k->n_in != 1 || k->n_out != 1 || k->n_epi != 0) return false;
    if (k->in[0] < 0 || k->in[0] >= plan->n_bufs || k->out[0] < 0 || k->out[0] >= plan->n_bufs)
        return false;
    const ib__pbuf *x = &plan->bufs[k->in[0]], *y = &plan->bufs[k->out[0]];
    if (x->rank != 4 || y->rank != 4 || ib_dtype_size(x->dtype) != 4 || x->dtype != y->dtype)
        return false;
    for (int32_t d = 0; d < 4; d++)
        if (x->dims[d] != y->dims[d] || x->dims[d] <= 0 || x->dims[d] > ((int64_t)1 << 31))
            return false;
    if (!layout_ok(x) || !layout_ok(y)) return false;
    if (x->layout == y->layout && (x->layout == IB_LAYOUT_PLAIN || x->block == y->block))
        return false; /* nothing to transform: the planner aliases instead */
    return true;
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    if (!supports(plan, k))
        return ib__error(IB_ERR_INTERNAL, "layout_transform: unsupported kernel %s", k->fn_name);
    const ib__pbuf *x = &plan->bufs[k->in[0]], *y = &plan->bufs[k->out[0]];
    const char *fn = k->fn_name;
    const long long N = x->dims[0], C = x->dims[1], HW = x->dims[2] * x->dims[3];
    const bool xb = x->layout == IB_LAYOUT_NCHWC, yb = y->layout == IB_LAYOUT_NCHWC;
    const long long bx = xb ? x->block : 1, by = yb ? y->block : 1;
    const long long CBX = (C + bx - 1) / bx, CBY = (C + by - 1) / by;
    ib__sb_line(sb, "/* %s: layout %s -> %s of %lldx%lldx%lldx%lld */", fn,
                xb ? "NCHWc" : "NCHW", yb ? "NCHWc" : "NCHW", N, C, (long long)x->dims[2],
                (long long)x->dims[3]);
    ib__sb_line(sb, "static void %s_body(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const float *restrict x = (const float *)args[0];");
    ib__sb_line(sb, "float *restrict y = (float *)args[1];");
    /* one item = one output channel block (or channel, for plain output) of one image */
    ib__sb_line(sb, "for (int64_t it = begin; it < end; it++) {");
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t n = it / %lld, cb = it %% %lld;", yb ? CBY : C, yb ? CBY : C);
    ib__sb_line(sb, "float *yc = y + it * %lld;", HW * by);
    ib__sb_line(sb, "for (int64_t l = 0; l < %lld; l++) {", by);
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t c = cb * %lld + l;", by);
    ib__sb_line(sb, "if (c >= %lld) {", C);
    ib__sb_line(sb, "    for (int64_t p = 0; p < %lld; p++) yc[p * %lld + l] = 0.0f;", HW, by);
    ib__sb_line(sb, "    continue;");
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "const float *xc = x + ((n * %lld + c / %lld) * %lld) * %lld + c %% %lld;", CBX,
                bx, HW, bx, bx);
    ib__sb_line(sb, "for (int64_t p = 0; p < %lld; p++) yc[p * %lld + l] = xc[p * %lld];", HW, by, bx);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);", N * (yb ? CBY : C),
                fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

const ib__kernel_template ib__template_layout_transform = {
    .name = "layout_transform",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = ib__no_knobs,
    .knobs_valid = ib__no_knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = ib__no_flops,
};
