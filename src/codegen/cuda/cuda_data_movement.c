/* CUDA kernel templates that move or convert data without arithmetic: cuda_gather
 * (Gather on any axis, int32/int64 indices, negative ones wrapped and out-of-range ones
 * clamped so a bad index cannot read outside the tensor), cuda_transpose (any
 * permutation), cuda_cast (between float32, int32, int64 and bool). One thread per
 * output element, grid-stride; offsets from compile-time dims. */
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cuda_emit.h"

static const ib__pbuf *buf(const ib__plan *plan, int32_t id) {
    return id >= 0 && id < plan->n_bufs ? &plan->bufs[id] : NULL;
}

static int64_t count(const ib__pbuf *b) {
    int64_t c = 1;
    for (int32_t d = 0; d < b->rank; d++) c *= b->dims[d];
    return c;
}

static bool plain(const ib__pbuf *b) { return b && b->layout == IB_LAYOUT_PLAIN; }

/* The element type of a buffer in generated code, or NULL when the kernels do not take it. */
static const char *ctype(ib_dtype t) {
    switch (t) {
    case IB_DTYPE_FLOAT32: return "float";
    case IB_DTYPE_INT32: return "int";
    case IB_DTYPE_INT64: return "long long";
    case IB_DTYPE_BOOL: return "unsigned char";
    default: return NULL;
    }
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    (void)plan;
    (void)k;
    ib__knobs_set(knobs, "threads", 256);
}

static bool threads_ok(const ib__knobs *knobs) {
    return ib__cuda_threads_valid(knobs, 256);
}

static ib_status launch_out(const ib__plan *plan, const ib__pkernel *k, ib__launch_dims *out) {
    const ib__pbuf *y = buf(plan, k->out[0]);
    if (!y) return ib__error(IB_ERR_INTERNAL, "kernel without output");
    ib__cuda_launch_1d(count(y), (int32_t)ib__knobs_get(&k->knobs, "threads", 256), out);
    /* at most ~64K blocks: the loop is grid-stride */
    if (out->grid[0] > 65536) out->grid[0] = 65536;
    return IB_OK;
}

static void loop_head(ib__sb *sb, const ib__pkernel *k, int64_t total) {
    const long long T = ib__knobs_get(&k->knobs, "threads", 256);
    ib__cuda_signature(sb, k, (int32_t)T);
    sb->indent = 4;
    ib__sb_line(sb, "const int64_t stride = (int64_t)gridDim.x * %lld;", T);
    ib__sb_line(sb, "for (int64_t e = (int64_t)blockIdx.x * %lld + threadIdx.x; e < %lldll; e += stride) {",
                T, (long long)total);
    sb->indent = 8;
}

static ib_status loop_tail(ib__sb *sb) {
    sb->indent = 4;
    ib__sb_line(sb, "}");
    sb->indent = 0;
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double no_flops(const ib__plan *plan, const ib__pkernel *k) {
    (void)plan;
    (void)k;
    return 0.0;
}

/* ---- Gather ----------------------------------------------------------------------------- */

typedef struct gather_g {
    int64_t outer, axis_dim, n_idx, inner;
    const char *data_t, *idx_t;
} gather_g;

static bool gather_analyze(const ib__plan *plan, const ib__pkernel *k, gather_g *g) {
    if (!ib__target_is_cuda(&plan->target) || !k->nodes || k->n_nodes != 1 || !k->nodes[0] ||
        k->nodes[0]->op != IB_OP_GATHER || k->n_in != 2 || k->n_out != 1 || k->n_epi != 0)
        return false;
    const ib__pbuf *x = buf(plan, k->in[0]), *ix = buf(plan, k->in[1]), *y = buf(plan, k->out[0]);
    if (!plain(x) || !plain(ix) || !plain(y) || x->dtype != y->dtype || x->rank < 1) return false;
    g->data_t = ctype(x->dtype);
    g->idx_t = ix->dtype == IB_DTYPE_INT64 ? "long long" : ix->dtype == IB_DTYPE_INT32 ? "int" : NULL;
    if (!g->data_t || !g->idx_t) return false;
    int64_t axis;
    if (ib__attr_int(k->nodes[0], "axis", 0, &axis)) return false;
    if (axis < 0) axis += x->rank;
    if (axis < 0 || axis >= x->rank || y->rank != x->rank - 1 + ix->rank) return false;
    g->outer = g->inner = 1;
    for (int32_t d = 0; d < x->rank; d++) {
        if (d < axis) g->outer *= x->dims[d];
        if (d > axis) g->inner *= x->dims[d];
    }
    g->axis_dim = x->dims[axis];
    g->n_idx = count(ix);
    return g->axis_dim >= 1 && count(y) == g->outer * g->n_idx * g->inner;
}

static bool gather_supports(const ib__plan *plan, const ib__pkernel *k) {
    gather_g g;
    return gather_analyze(plan, k, &g);
}

static bool gather_knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    return gather_supports(plan, k) && threads_ok(knobs);
}

static ib_status gather_emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    gather_g g;
    if (!gather_analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "cuda_gather: %s is not supported", ib__node_label(k->nodes[0]));
    ib__sb_line(sb, "/* %s: %s, %lld x [%lld of %lld] x %lld */", k->fn_name, ib__node_label(k->nodes[0]),
                (long long)g.outer, (long long)g.n_idx, (long long)g.axis_dim, (long long)g.inner);
    loop_head(sb, k, g.outer * g.n_idx * g.inner);
    ib__sb_line(sb, "const int64_t in_ = e %% %lldll, j = (e / %lldll) %% %lldll, o = e / %lldll;",
                (long long)g.inner, (long long)g.inner, (long long)g.n_idx, (long long)(g.inner * g.n_idx));
    ib__sb_line(sb, "int64_t ix = (int64_t)((const %s *)a1)[j];", g.idx_t);
    ib__sb_line(sb, "if (ix < 0) ix += %lldll;", (long long)g.axis_dim);
    ib__sb_line(sb, "ix = ix < 0 ? 0 : ix >= %lldll ? %lldll : ix;", (long long)g.axis_dim,
                (long long)(g.axis_dim - 1));
    ib__sb_line(sb, "((%s *)a2)[e] = ((const %s *)a0)[(o * %lldll + ix) * %lldll + in_];", g.data_t,
                g.data_t, (long long)g.axis_dim, (long long)g.inner);
    return loop_tail(sb);
}

const ib__kernel_template ib__template_cuda_gather = {
    .name = "cuda_gather",
    .supports = gather_supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = gather_knobs_valid,
    .pack_weights = NULL,
    .emit = gather_emit,
    .flops = no_flops,
    .launch = launch_out,
};

/* ---- Transpose -------------------------------------------------------------------------- */

static bool transpose_analyze(const ib__plan *plan, const ib__pkernel *k, int64_t *perm) {
    if (!ib__target_is_cuda(&plan->target) || !k->nodes || k->n_nodes != 1 || !k->nodes[0] ||
        k->nodes[0]->op != IB_OP_TRANSPOSE || k->n_in != 1 || k->n_out != 1 || k->n_epi != 0)
        return false;
    const ib__pbuf *x = buf(plan, k->in[0]), *y = buf(plan, k->out[0]);
    if (!plain(x) || !plain(y) || x->dtype != y->dtype || !ctype(x->dtype) || x->rank != y->rank ||
        x->rank < 1)
        return false;
    int32_t n = 0;
    const int64_t *p = NULL;
    if (ib__attr_ints(k->nodes[0], "perm", &n, &p)) return false;
    if (n != 0 && n != x->rank) return false;
    bool seen[IB_MAX_RANK] = {false};
    for (int32_t d = 0; d < x->rank; d++) {
        perm[d] = n ? p[d] : x->rank - 1 - d;
        if (perm[d] < 0 || perm[d] >= x->rank || seen[perm[d]]) return false;
        seen[perm[d]] = true;
        if (y->dims[d] != x->dims[perm[d]]) return false;
    }
    return true;
}

static bool transpose_supports(const ib__plan *plan, const ib__pkernel *k) {
    int64_t perm[IB_MAX_RANK];
    return transpose_analyze(plan, k, perm);
}

static bool transpose_knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    return transpose_supports(plan, k) && threads_ok(knobs);
}

static ib_status transpose_emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    int64_t perm[IB_MAX_RANK];
    if (!transpose_analyze(plan, k, perm))
        return ib__error(IB_ERR_INTERNAL, "cuda_transpose: %s is not supported", ib__node_label(k->nodes[0]));
    const ib__pbuf *x = buf(plan, k->in[0]), *y = buf(plan, k->out[0]);
    int64_t xs[IB_MAX_RANK], s = 1;
    for (int32_t d = x->rank - 1; d >= 0; d--) {
        xs[d] = s;
        s *= x->dims[d];
    }
    const char *t = ctype(x->dtype);
    ib__sb_line(sb, "/* %s: %s */", k->fn_name, ib__node_label(k->nodes[0]));
    loop_head(sb, k, count(y));
    ib__sb_line(sb, "int64_t r = e, src = 0;");
    for (int32_t d = y->rank - 1; d >= 0; d--) {
        /* output dim d is input dim perm[d] */
        ib__sb_line(sb, "src += (r %% %lldll) * %lldll; r /= %lldll;", (long long)y->dims[d],
                    (long long)xs[perm[d]], (long long)y->dims[d]);
    }
    ib__sb_line(sb, "((%s *)a1)[e] = ((const %s *)a0)[src];", t, t);
    return loop_tail(sb);
}

const ib__kernel_template ib__template_cuda_transpose = {
    .name = "cuda_transpose",
    .supports = transpose_supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = transpose_knobs_valid,
    .pack_weights = NULL,
    .emit = transpose_emit,
    .flops = no_flops,
    .launch = launch_out,
};

/* ---- Cast ------------------------------------------------------------------------------- */

static bool cast_supports(const ib__plan *plan, const ib__pkernel *k) {
    if (!ib__target_is_cuda(&plan->target) || !k->nodes || k->n_nodes != 1 || !k->nodes[0] ||
        k->nodes[0]->op != IB_OP_CAST || k->n_in != 1 || k->n_out != 1 || k->n_epi != 0)
        return false;
    const ib__pbuf *x = buf(plan, k->in[0]), *y = buf(plan, k->out[0]);
    return plain(x) && plain(y) && ctype(x->dtype) && ctype(y->dtype) && count(x) == count(y);
}

static bool cast_knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    return cast_supports(plan, k) && threads_ok(knobs);
}

static ib_status cast_emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    if (!cast_supports(plan, k))
        return ib__error(IB_ERR_INTERNAL, "cuda_cast: %s is not supported", ib__node_label(k->nodes[0]));
    const ib__pbuf *x = buf(plan, k->in[0]), *y = buf(plan, k->out[0]);
    const char *xt = ctype(x->dtype), *yt = ctype(y->dtype);
    ib__sb_line(sb, "/* %s: %s, %s to %s */", k->fn_name, ib__node_label(k->nodes[0]),
                ib_dtype_name(x->dtype), ib_dtype_name(y->dtype));
    loop_head(sb, k, count(y));
    if (y->dtype == IB_DTYPE_BOOL)
        ib__sb_line(sb, "((%s *)a1)[e] = ((const %s *)a0)[e] != 0 ? 1 : 0;", yt, xt);
    else
        ib__sb_line(sb, "((%s *)a1)[e] = (%s)((const %s *)a0)[e];", yt, yt, xt);
    return loop_tail(sb);
}

const ib__kernel_template ib__template_cuda_cast = {
    .name = "cuda_cast",
    .supports = cast_supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = cast_knobs_valid,
    .pack_weights = NULL,
    .emit = cast_emit,
    .flops = no_flops,
    .launch = launch_out,
};
