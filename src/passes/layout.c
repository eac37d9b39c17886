/* Layout: activations between kernels whose templates prefer blocked channels (NCHWc)
 * are stored blocked; layout_transform kernels convert where a PLAIN reader meets an
 * NCHWC buffer or the reverse (one converted copy per buffer and layout, shared by all
 * readers). Fallback kernels read and write PLAIN. */
#include <stdio.h>
#include <string.h>

#include "passes/passes_internal.h"

static const ib__kernel_template *const k_templates[] = {
#define IB__PASS_TEMPLATE_REF(name) &ib__template_##name,
    IB_KERNEL_TEMPLATE_LIST(IB__PASS_TEMPLATE_REF)
#undef IB__PASS_TEMPLATE_REF
};

static ib_status grow_maps(ib__lower *L) {
    int32_t need = L->plan->n_bufs + 1;
    if (need <= L->cap_map) return IB_OK;
    int32_t cap = L->cap_map ? L->cap_map : 64;
    while (cap < need) cap *= 2;
    int32_t *p = ib__realloc(L->plain_copy, (size_t)cap * sizeof *p);
    if (!p) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory planning layouts");
    L->plain_copy = p;
    int32_t *n = ib__realloc(L->nchwc_copy, (size_t)cap * sizeof *n);
    if (!n) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory planning layouts");
    L->nchwc_copy = n;
    for (int32_t i = L->cap_map; i < cap; i++) L->plain_copy[i] = L->nchwc_copy[i] = -1;
    L->cap_map = cap;
    return IB_OK;
}

/* A conversion waiting for its kernel to be committed. */
typedef struct pending {
    int32_t src, dst;
} pending;

typedef struct attempt {
    int32_t n_bufs;
    size_t weights_bytes;
    int32_t n_pre;
    pending pre[IB_MAX_KERNEL_ARGS + IB_MAX_EPILOGUE];
    bool post; /* out[0] goes through a blocked TEMP into an OUTPUT */
    pending post_conv;
    int32_t changed_out; /* TEMP made NCHWC by this attempt, else -1 */
    ib__pbuf changed_out_was;
} attempt;

static void begin(const ib__lower *L, attempt *a) {
    memset(a, 0, sizeof *a);
    a->n_bufs = L->plan->n_bufs;
    a->weights_bytes = L->plan->weights_bytes;
    a->changed_out = -1;
}

static void rollback(ib__lower *L, const attempt *a) {
    if (a->changed_out >= 0) L->plan->bufs[a->changed_out] = a->changed_out_was;
    L->plan->n_bufs = a->n_bufs;
    L->plan->weights_bytes = a->weights_bytes;
}

/* A new TEMP like b in layout (lay, block). */
static ib_status derived_buf(ib__lower *L, int32_t b, ib__layout lay, int32_t block,
                             int32_t *out_id) {
    ib__pbuf d = L->plan->bufs[b];
    d.kind = IB_BUF_TEMP;
    d.io_index = -1;
    d.layout = lay;
    d.block = lay == IB_LAYOUT_NCHWC ? block : 0;
    d.nbytes = 0;
    d.offset = 0;
    d.alias_of = -1;
    d.first_use = d.last_use = -1;
    return ib__plan_add_buf(L->plan, &d, out_id);
}

static bool is_layout(const ib__pbuf *b, ib__layout lay, int32_t block) {
    return b->layout == lay && (lay != IB_LAYOUT_NCHWC || b->block == block);
}

/* Buffer b in layout (lay, block): b, a committed copy, or a new pending copy. */
static ib_status view_in(ib__lower *L, attempt *a, int32_t b, ib__layout lay, int32_t block,
                         int32_t *out_id) {
    IB_TRY(grow_maps(L));
    if (b < 0 || is_layout(&L->plan->bufs[b], lay, block)) {
        *out_id = b;
        return IB_OK;
    }
    int32_t cached = lay == IB_LAYOUT_PLAIN ? L->plain_copy[b] : L->nchwc_copy[b];
    if (cached >= 0 && cached < L->plan->n_bufs && is_layout(&L->plan->bufs[cached], lay, block)) {
        *out_id = cached;
        return IB_OK;
    }
    for (int32_t i = 0; i < a->n_pre; i++)
        if (a->pre[i].src == b && is_layout(&L->plan->bufs[a->pre[i].dst], lay, block)) {
            *out_id = a->pre[i].dst;
            return IB_OK;
        }
    if (a->n_pre >= (int32_t)(sizeof a->pre / sizeof *a->pre))
        return ib__error(IB_ERR_INTERNAL, "too many layout conversions for one kernel");
    IB_TRY(derived_buf(L, b, lay, block, out_id));
    a->pre[a->n_pre].src = b;
    a->pre[a->n_pre++].dst = *out_id;
    return IB_OK;
}

/* A layout_transform kernel has no nodes: in[0] and out[0] hold the same logical tensor. */
static ib_status transform_kernel(ib__lower *L, int32_t src, int32_t dst, ib__pkernel *k) {
    memset(k, 0, sizeof *k);
    k->tmpl = &ib__template_layout_transform;
    k->n_in = 1;
    k->in[0] = src;
    k->n_out = 1;
    k->out[0] = dst;
    snprintf(k->fn_name, sizeof k->fn_name, "k%d_layout_transform", L->plan->n_kernels);
    return IB_OK;
}

static ib_status add_transform(ib__lower *L, int32_t src, int32_t dst) {
    ib__pkernel k;
    IB_TRY(transform_kernel(L, src, dst, &k));
    if (k.tmpl->default_knobs) k.tmpl->default_knobs(L->plan, &k, &k.knobs);
    snprintf(k.fn_name, sizeof k.fn_name, "k%d_layout_transform", L->plan->n_kernels);
    int32_t id;
    IB_TRY(ib__plan_add_kernel(L->plan, &k, &id));
    IB_TRY(grow_maps(L));
    /* Both buffers now hold the same data: either serves a reader of the other's layout
     * (a blocked result copied out to a model output stays usable blocked). */
    const ib__pbuf *sb = &L->plan->bufs[src], *db = &L->plan->bufs[dst];
    if (db->layout == IB_LAYOUT_PLAIN) L->plain_copy[src] = dst;
    if (db->layout == IB_LAYOUT_NCHWC) L->nchwc_copy[src] = dst;
    if (sb->layout == IB_LAYOUT_PLAIN) L->plain_copy[dst] = src;
    if (sb->layout == IB_LAYOUT_NCHWC) L->nchwc_copy[dst] = src;
    return IB_OK;
}

static bool transforms_supported(ib__lower *L, const attempt *a) {
    ib__pkernel k;
    for (int32_t i = 0; i <= a->n_pre; i++) {
        const pending *p = i < a->n_pre ? &a->pre[i] : (a->post ? &a->post_conv : NULL);
        if (!p) break;
        if (transform_kernel(L, p->src, p->dst, &k) != IB_OK) return false;
        if (!ib__template_layout_transform.supports ||
            !ib__template_layout_transform.supports(L->plan, &k))
            return false;
    }
    return true;
}

/* Adds the attempt's conversions, then k (knobs, packed weights), then the output copy. */
static ib_status commit(ib__lower *L, attempt *a, ib__pkernel *k) {
    for (int32_t i = 0; i < a->n_pre; i++) IB_TRY(add_transform(L, a->pre[i].src, a->pre[i].dst));
    if (k->tmpl) {
        if (k->tmpl->default_knobs) k->tmpl->default_knobs(L->plan, k, &k->knobs);
        /* tuned knobs before packing: a template may pack for its knobs (gemm's nr) */
        if (L->opt.knob_source && L->opt.knob_source->pick)
            L->opt.knob_source->pick(L->opt.knob_source->ctx, L->plan, k, L->plan->n_kernels,
                                     &k->knobs);
        if (k->tmpl->pack_weights) IB_TRY(k->tmpl->pack_weights(L->plan, k));
    }
    char name[48];
    snprintf(name, sizeof name, "%.40s", k->fn_name);
    snprintf(k->fn_name, sizeof k->fn_name, "k%d_%s", L->plan->n_kernels, name);
    int32_t id;
    IB_TRY(ib__plan_add_kernel(L->plan, k, &id));
    if (a->post) IB_TRY(add_transform(L, a->post_conv.src, a->post_conv.dst));
    return IB_OK;
}

static bool is_activation(const ib__lower *L, const ib__pkernel *k, int32_t i) {
    const ib__pbuf *b = &L->plan->bufs[k->in[i]];
    const ib__op_id op = k->nodes[0]->op;
    if ((op == IB_OP_CONV || op == IB_OP_CONV_TRANSPOSE) && i != 0) return false;
    return b->kind != IB_BUF_WEIGHT && b->rank == 4 && b->dtype == IB_DTYPE_FLOAT32;
}

/* k with its activations blocked by `block` (with plain_x, a conv's input 0 stays as it
 * is); true when a template takes it. */
static ib_status try_nchwc(ib__lower *L, ib__pkernel *k, int32_t block, bool plain_x,
                           bool *added) {
    *added = false;
    if (k->n_out != 1 || k->out[0] < 0) return IB_OK;
    const ib__pbuf *ob = &L->plan->bufs[k->out[0]];
    if (ob->rank != 4 || ob->dtype != IB_DTYPE_FLOAT32 || ob->alias_of >= 0) return IB_OK;
    ib__pkernel t = *k;
    attempt a;
    begin(L, &a);
    ib_status st = IB_OK;
    for (int32_t i = 0; i < t.n_in && st == IB_OK; i++) {
        if (t.in[i] < 0 || (plain_x && i == 0)) continue;
        if (is_activation(L, &t, i))
            st = view_in(L, &a, t.in[i], IB_LAYOUT_NCHWC, block, &t.in[i]);
        else if (L->plan->bufs[t.in[i]].layout == IB_LAYOUT_NCHWC)
            st = view_in(L, &a, t.in[i], IB_LAYOUT_PLAIN, 0, &t.in[i]);
    }
    for (int32_t s = 0; s < t.n_epi && st == IB_OK; s++)
        if (t.epi[s].kind == IB_EPI_BINARY && t.epi[s].operand_kind == IB_EPI_FULL)
            st = view_in(L, &a, t.epi[s].operand_buf, IB_LAYOUT_NCHWC, block,
                         &t.epi[s].operand_buf);
    if (st == IB_OK) {
        int32_t o = t.out[0];
        if (L->plan->bufs[o].kind == IB_BUF_TEMP) {
            a.changed_out = o;
            a.changed_out_was = L->plan->bufs[o];
            ib__pbuf *pb = &L->plan->bufs[o];
            pb->layout = IB_LAYOUT_NCHWC;
            pb->block = block;
            pb->nbytes = ib__pbuf_physical_bytes(pb);
        } else {
            st = derived_buf(L, o, IB_LAYOUT_NCHWC, block, &t.out[0]);
            a.post = true;
            a.post_conv.src = t.out[0];
            a.post_conv.dst = o;
        }
    }
    const ib__kernel_template *tmpl = NULL;
    if (st == IB_OK) {
        tmpl = ib__template_find(L->plan, &t);
        if (tmpl && !transforms_supported(L, &a)) tmpl = NULL;
    }
    if (st != IB_OK || !tmpl) {
        rollback(L, &a);
        return st;
    }
    t.tmpl = tmpl;
    IB_TRY(commit(L, &a, &t));
    *k = t;
    *added = true;
    return IB_OK;
}

bool ib__node_elementwise(ib__op_id op) {
    switch (op) {
    case IB_OP_ADD: case IB_OP_SUB: case IB_OP_MUL: case IB_OP_DIV: case IB_OP_MAX:
    case IB_OP_MIN: case IB_OP_RELU: case IB_OP_LEAKY_RELU: case IB_OP_CLIP:
    case IB_OP_SIGMOID: case IB_OP_HARD_SIGMOID: case IB_OP_HARD_SWISH: case IB_OP_TANH:
    case IB_OP_ERF: case IB_OP_GELU:
        return true;
    default:
        return false;
    }
}

ib_status ib__layout_plain_input(ib__lower *L, int32_t b, int32_t *out_id) {
    attempt a;
    begin(L, &a);
    IB_TRY(view_in(L, &a, b, IB_LAYOUT_PLAIN, 0, out_id));
    if (a.n_pre && !transforms_supported(L, &a)) {
        rollback(L, &a);
        return ib__error(IB_ERR_INTERNAL, "no layout_transform for buffer %d", b);
    }
    for (int32_t i = 0; i < a.n_pre; i++) IB_TRY(add_transform(L, a.pre[i].src, a.pre[i].dst));
    return IB_OK;
}

ib_status ib__layout_add_kernel(ib__lower *L, ib__pkernel *k, bool allow_fallback_here,
                                bool *added) {
    *added = false;
    /* Blocked layouts, in the order of the templates that prefer them: for conv and pool
     * kernels, and for element-wise kernels already reading blocked data (a residual Add
     * left unfused), so that chains stay blocked. */
    int32_t tried[8], n_tried = 0;
    const ib__op_id op = k->nodes[0]->op;
    bool blocked_in = false;
    for (int32_t i = 0; i < k->n_in; i++)
        blocked_in |= k->in[i] >= 0 && L->plan->bufs[k->in[i]].layout == IB_LAYOUT_NCHWC;
    bool want_blocked = op == IB_OP_CONV || op == IB_OP_CONV_TRANSPOSE ||
                        op == IB_OP_MAX_POOL || op == IB_OP_AVERAGE_POOL ||
                        op == IB_OP_GLOBAL_AVERAGE_POOL || op == IB_OP_GLOBAL_MAX_POOL ||
                        (blocked_in && op != IB_OP_IDENTITY && k->tmpl == NULL &&
                         k->n_nodes >= 1 && ib__node_elementwise(op));
    /* NCHWc serves CPU vector units; the GPU kernels read plain NCHW. */
    if (ib__target_is_cuda(&L->plan->target)) want_blocked = false;
    for (size_t i = 0; want_blocked && i < sizeof k_templates / sizeof *k_templates; i++) {
        const ib__kernel_template *t = k_templates[i];
        if (!t->preferred_layout || !t->supports || t == &ib__template_layout_transform) continue;
        int32_t block = 0;
        if (t->preferred_layout(L->plan, k->nodes[0], &L->plan->target, &block) !=
                IB_LAYOUT_NCHWC ||
            block <= 0 || block > 64)
            continue;
        bool seen = false;
        for (int32_t j = 0; j < n_tried; j++) seen |= tried[j] == block;
        if (seen || n_tried == 8) continue;
        tried[n_tried++] = block;
        /* A stem conv reads its few input channels from the plain image: blocking 3
         * channels by 16 would write and read 5x the bytes in a single-threaded copy. */
        const ib__pbuf *x0 = k->n_in > 0 && k->in[0] >= 0 ? &L->plan->bufs[k->in[0]] : NULL;
        if (op == IB_OP_CONV && x0 && x0->layout == IB_LAYOUT_PLAIN && x0->rank == 4 &&
            x0->dims[1] > 0 && x0->dims[1] < block) {
            IB_TRY(try_nchwc(L, k, block, true, added));
            if (*added) return IB_OK;
        }
        IB_TRY(try_nchwc(L, k, block, false, added));
        if (*added) return IB_OK;
    }
    /* PLAIN: blocked inputs are converted back. */
    ib__pkernel t = *k;
    attempt a;
    begin(L, &a);
    ib_status st = IB_OK;
    for (int32_t i = 0; i < t.n_in && st == IB_OK; i++)
        st = view_in(L, &a, t.in[i], IB_LAYOUT_PLAIN, 0, &t.in[i]);
    for (int32_t s = 0; s < t.n_epi && st == IB_OK; s++)
        if (t.epi[s].kind == IB_EPI_BINARY)
            st = view_in(L, &a, t.epi[s].operand_buf, IB_LAYOUT_PLAIN, 0, &t.epi[s].operand_buf);
    const ib__kernel_template *tmpl = st == IB_OK ? ib__template_find(L->plan, &t) : NULL;
    bool conv_ok = st == IB_OK && transforms_supported(L, &a);
    if (!conv_ok || (!tmpl && !allow_fallback_here)) {
        rollback(L, &a);
        if (st == IB_OK && !conv_ok)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: needs a layout conversion no template "
                             "implements", ib__node_label(k->nodes[0]));
        return st;
    }
    t.tmpl = tmpl;
    IB_TRY(commit(L, &a, &t));
    *k = t;
    *added = true;
    return IB_OK;
}
