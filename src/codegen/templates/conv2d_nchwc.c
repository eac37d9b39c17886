/* Kernel template conv2d_nchwc: direct 2-D convolution (group 1, any kernel, stride,
 * padding, dilation) on NCHW[b]c activations with weights packed at compile time into
 * [OC/b][IC/b][KH][KW][ib][ob], a folded BatchNormalization and a fused epilogue.
 *
 * The emitted code is a register-blocked micro-kernel: ow_block output pixels times
 * oc_block output-channel vectors of accumulators, fed by one broadcast input channel
 * and oc_block weight vectors per step. Every shape is a compile-time constant, so
 * tiles that touch the padding are emitted as their own functions with the out-of-range
 * taps removed statically, and interior tiles run with no checks at all. Input
 * channels are consumed in chunks of ic_block blocks (partial sums go through the
 * output row) so that the weights a chunk reads stay in L1. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"
#include "codegen/templates/conv2d_nchwc.h"
#include "ops/ops.h"

/* ---- geometry and checks ----------------------------------------------------------- */

static const ib__pbuf *buf_of(const ib__plan *plan, int32_t id) {
    return (id >= 0 && id < plan->n_bufs) ? &plan->bufs[id] : NULL;
}

static ib_status read_pair(const ib__node *n, const char *name, int64_t dflt, int64_t out[2]) {
    int32_t c = 0;
    const int64_t *v = NULL;
    IB_TRY(ib__attr_ints(n, name, &c, &v));
    if (c == 0) {
        out[0] = out[1] = dflt;
        return IB_OK;
    }
    if (c != 2) return ib__error(IB_ERR_UNSUPPORTED, "%s: %s needs 2 values", ib__node_label(n), name);
    out[0] = v[0];
    out[1] = v[1];
    return IB_OK;
}

ib_status ib__conv_geom_get(const ib__plan *plan, const ib__pkernel *k, ib__conv_geom *g) {
    if (k->n_nodes < 1 || !k->nodes || !k->nodes[0] || k->n_in < 2 || k->n_out < 1)
        return ib__error(IB_ERR_UNSUPPORTED, "conv kernel without an anchor");
    const ib__node *n = k->nodes[0];
    const ib__pbuf *x = buf_of(plan, k->in[0]), *w = buf_of(plan, k->in[1]),
                   *y = buf_of(plan, k->out[0]);
    if (!x || !w || !y || x->rank != 4 || w->rank != 4 || y->rank != 4)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: not a 2-D convolution", ib__node_label(n));
    memset(g, 0, sizeof *g);
    g->N = x->dims[0];
    g->IC = x->dims[1];
    g->IH = x->dims[2];
    g->IW = x->dims[3];
    g->OC = w->dims[0];
    g->KH = w->dims[2];
    g->KW = w->dims[3];
    g->OH = y->dims[2];
    g->OW = y->dims[3];
    g->B = y->block;
    g->Bi = x->layout == IB_LAYOUT_NCHWC ? x->block : 1;
    IB_TRY(ib__attr_int(n, "group", 1, &g->group));
    int64_t s[2] = {1, 1}, d[2] = {1, 1}, ks[2] = {-1, -1};
    IB_TRY(read_pair(n, "strides", 1, s));
    IB_TRY(read_pair(n, "dilations", 1, d));
    IB_TRY(read_pair(n, "kernel_shape", -1, ks));
    g->SH = s[0];
    g->SW = s[1];
    g->DH = d[0];
    g->DW = d[1];
    for (int32_t i = 0; i < 4; i++)
        if (x->dims[i] <= 0 || y->dims[i] <= 0 || w->dims[i] <= 0 || x->dims[i] > (1 << 24) ||
            w->dims[i] > (1 << 24))
            return ib__error(IB_ERR_UNSUPPORTED, "%s: empty or huge dims", ib__node_label(n));
    if ((ks[0] != -1 && ks[0] != g->KH) || (ks[1] != -1 && ks[1] != g->KW))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: kernel_shape differs from weights", ib__node_label(n));
    if (g->SH < 1 || g->SW < 1 || g->DH < 1 || g->DW < 1 || g->SH > 64 || g->SW > 64 ||
        g->DH > 64 || g->DW > 64)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: bad strides/dilations", ib__node_label(n));
    if (y->dims[0] != g->N || y->dims[1] != g->OC || w->dims[1] * g->group != g->IC)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: channel/batch mismatch", ib__node_label(n));
    const char *ap = NULL;
    IB_TRY(ib__attr_string(n, "auto_pad", "NOTSET", &ap));
    int64_t ekh = (g->KH - 1) * g->DH + 1, ekw = (g->KW - 1) * g->DW + 1;
    int64_t pads_end[2];
    if (strcmp(ap, "NOTSET") == 0) {
        int32_t c = 0;
        const int64_t *p = NULL;
        IB_TRY(ib__attr_ints(n, "pads", &c, &p));
        if (c != 0 && c != 4)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: pads needs 4 values", ib__node_label(n));
        g->PT = c ? p[0] : 0;
        g->PL = c ? p[1] : 0;
        pads_end[0] = c ? p[2] : 0;
        pads_end[1] = c ? p[3] : 0;
    } else if (strcmp(ap, "VALID") == 0) {
        g->PT = g->PL = pads_end[0] = pads_end[1] = 0;
    } else if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
        int64_t th = (g->OH - 1) * g->SH + ekh - g->IH, tw = (g->OW - 1) * g->SW + ekw - g->IW;
        if (th < 0) th = 0;
        if (tw < 0) tw = 0;
        bool upper = ap[5] == 'U';
        g->PT = upper ? th / 2 : th - th / 2;
        g->PL = upper ? tw / 2 : tw - tw / 2;
        pads_end[0] = th - g->PT;
        pads_end[1] = tw - g->PL;
    } else {
        return ib__error(IB_ERR_UNSUPPORTED, "%s: auto_pad %s", ib__node_label(n), ap);
    }
    if (g->PT < 0 || g->PL < 0 || pads_end[0] < 0 || pads_end[1] < 0 || g->PT > 4096 ||
        g->PL > 4096 || pads_end[0] > 4096 || pads_end[1] > 4096)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: bad pads", ib__node_label(n));
    int64_t oh = (g->IH + g->PT + pads_end[0] - ekh) / g->SH + 1;
    int64_t ow = (g->IW + g->PL + pads_end[1] - ekw) / g->SW + 1;
    if (g->IH + g->PT + pads_end[0] < ekh || g->IW + g->PL + pads_end[1] < ekw || oh != g->OH ||
        ow != g->OW)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: output dims do not match", ib__node_label(n));
    return IB_OK;
}

static bool is_const_f32(const ib__value *v, int64_t count) {
    return v && v->constant && v->constant->dtype == IB_DTYPE_FLOAT32 && v->constant->data &&
           ib_tensor_element_count(v->constant) == count;
}

bool ib__conv_nchwc_supports_common(const ib__plan *plan, const ib__pkernel *k,
                                    ib__conv_geom *g) {
    if (k->n_nodes < 1 || !k->nodes || !k->nodes[0] || k->nodes[0]->op != IB_OP_CONV) return false;
    if (k->n_in < 2 || k->n_in > 3 || k->n_out != 1) return false;
    if (ib__conv_geom_get(plan, k, g) != IB_OK) {
        ib__error_clear();
        return false;
    }
    const ib__pbuf *x = buf_of(plan, k->in[0]), *w = buf_of(plan, k->in[1]),
                   *y = buf_of(plan, k->out[0]);
    int32_t B = y->block;
    if (y->layout != IB_LAYOUT_NCHWC || (B != 4 && B != 8 && B != 16) ||
        B * 32 > plan->target.vector_bits)
        return false;
    /* input: NCHWc with the output's block, or plain NCHW (Bi = 1: a stem conv with 3
     * input channels should not pay for a block of zeros) */
    if (!(x->layout == IB_LAYOUT_NCHWC && x->block == B) && x->layout != IB_LAYOUT_PLAIN)
        return false;
    if (x->dtype != IB_DTYPE_FLOAT32 || y->dtype != IB_DTYPE_FLOAT32) return false;
    if (w->layout != IB_LAYOUT_PACKED &&
        !is_const_f32(w->value, g->OC * g->KH * g->KW * (g->IC / g->group)))
        return false;
    /* Tiles reaching into the padding are emitted one function each: bound their number
     * (at most left/SW + right/SW + 3 of them) by bounding the horizontal padding. */
    int64_t right = (g->OW - 1) * g->SW + (g->KW - 1) * g->DW - g->PL - (g->IW - 1);
    if (g->PL + (right > 0 ? right : 0) > 12) return false;
    if (k->n_in == 3 && k->in[2] >= 0) {
        const ib__pbuf *b = buf_of(plan, k->in[2]);
        if (!b) return false;
        if (b->layout != IB_LAYOUT_PACKED && !is_const_f32(b->value, g->OC)) return false;
    }
    int32_t first_epi_node = 1;
    if (k->n_nodes > 1 && k->nodes[1] && k->nodes[1]->op == IB_OP_BATCH_NORMALIZATION) {
        const ib__node *bn = k->nodes[1];
        if (bn->n_inputs < 5) return false;
        for (int32_t i = 1; i < 5; i++)
            if (!is_const_f32(bn->inputs[i], g->OC)) return false;
        first_epi_node = 2;
    }
    (void)first_epi_node;
    if (k->n_epi < 0 || k->n_epi > IB_MAX_EPILOGUE) return false;
    int64_t ocp = (g->OC + B - 1) / B * B;
    for (int32_t s = 0; s < k->n_epi; s++) {
        const ib__epilogue_step *e = &k->epi[s];
        if (!ib__epilogue_supports_op(e->op, e->kind)) return false;
        if (e->kind != IB_EPI_BINARY) continue;
        const ib__pbuf *ob = buf_of(plan, e->operand_buf);
        if (!ob || ob->dtype != IB_DTYPE_FLOAT32) return false;
        switch (e->operand_kind) {
        case IB_EPI_SCALAR:
            if (ob->nbytes < sizeof(float)) return false;
            break;
        case IB_EPI_PER_CHANNEL:
            /* read a vector at a time: padded to the block (zeros; ones for a divisor,
             * which only a repack of a constant gives) */
            if (!(ob->nbytes >= (size_t)ocp * sizeof(float) &&
                  (ob->layout == IB_LAYOUT_PACKED || !(e->op == IB_OP_DIV && !e->operand_first))) &&
                !is_const_f32(ob->value, g->OC))
                return false;
            break;
        case IB_EPI_FULL:
            if (ob->layout != IB_LAYOUT_NCHWC || ob->block != B || ob->rank != 4) return false;
            for (int32_t d = 0; d < 4; d++)
                if (ob->dims[d] != y->dims[d]) return false;
            /* padding lanes of the operand are zero: x/0 there would not be finite */
            if (e->op == IB_OP_DIV && e->operand_first == false && g->OC % B) return false;
            break;
        }
    }
    return true;
}

ib_status ib__conv_pad_channel_operands(ib__plan *plan, ib__pkernel *k, int64_t oc,
                                        int32_t block) {
    int64_t ocp = (oc + block - 1) / block * block;
    for (int32_t s = 0; s < k->n_epi; s++) {
        ib__epilogue_step *e = &k->epi[s];
        if (e->kind != IB_EPI_BINARY || e->operand_kind != IB_EPI_PER_CHANNEL) continue;
        const ib__pbuf *ob = buf_of(plan, e->operand_buf);
        if (!ob) return ib__error(IB_ERR_INTERNAL, "epilogue operand buffer missing");
        if (ob->layout == IB_LAYOUT_PACKED) continue; /* already padded */
        bool divisor = e->op == IB_OP_DIV && !e->operand_first;
        if (ob->nbytes >= (size_t)ocp * sizeof(float) && !divisor) continue; /* zero-padded */
        if (!is_const_f32(ob->value, oc))
            return ib__error(IB_ERR_UNSUPPORTED, "per-channel epilogue operand is not constant");
        float *p = ib__malloc((size_t)ocp * sizeof(float));
        if (!p) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory padding an operand");
        const float *src = ob->value->constant->data;
        float fill = (e->op == IB_OP_DIV && !e->operand_first) ? 1.0f : 0.0f;
        for (int64_t c = 0; c < ocp; c++) p[c] = c < oc ? src[c] : fill;
        ib__pbuf d;
        memset(&d, 0, sizeof d);
        d.dtype = IB_DTYPE_FLOAT32;
        d.rank = 1;
        d.dims[0] = ocp;
        d.layout = IB_LAYOUT_PACKED;
        d.value = ob->value;
        int32_t id;
        ib_status st = ib__plan_add_weight(plan, &d, p, (size_t)ocp * sizeof(float), &id);
        ib__free(p);
        IB_TRY(st);
        e->operand_buf = id;
    }
    return IB_OK;
}

ib_status ib__conv_bn_fold(const ib__pkernel *k, int64_t oc, float *scale, float *shift) {
    for (int64_t c = 0; c < oc; c++) {
        scale[c] = 1.0f;
        shift[c] = 0.0f;
    }
    if (k->n_nodes < 2 || !k->nodes[1] || k->nodes[1]->op != IB_OP_BATCH_NORMALIZATION)
        return IB_OK;
    const ib__node *bn = k->nodes[1];
    float eps;
    IB_TRY(ib__attr_float(bn, "epsilon", 1e-5f, &eps));
    for (int32_t i = 1; i < 5; i++)
        if (!is_const_f32(bn->inputs[i], oc))
            return ib__error(IB_ERR_UNSUPPORTED, "%s: input %d is not a constant of %lld floats",
                             ib__node_label(bn), (int)i, (long long)oc);
    const float *gm = bn->inputs[1]->constant->data, *bt = bn->inputs[2]->constant->data,
                *mu = bn->inputs[3]->constant->data, *var = bn->inputs[4]->constant->data;
    for (int64_t c = 0; c < oc; c++) {
        /* the reference computes (x - mean) / sqrt(var + eps) * scale + B in float */
        float sc = gm[c] / sqrtf(var[c] + eps);
        scale[c] = sc;
        shift[c] = bt[c] - mu[c] * sc;
    }
    return IB_OK;
}

/* ---- knobs -------------------------------------------------------------------------- */

ib__layout ib__conv_nchwc_preferred_layout(const ib__plan *plan, const ib__node *anchor,
                                           const ib__target *target, int32_t *block) {
    (void)plan;
    (void)anchor;
    int32_t vf = ib__target_vector_floats(target);
    *block = vf >= 16 ? 16 : vf >= 8 ? 8 : 4;
    return IB_LAYOUT_NCHWC;
}

/* Accumulator registers available: the vector file less the oc_block weight vectors and
 * one broadcast register - needed even with AVX-512's embedded broadcasts once the input
 * value feeds more than one weight vector (GCC then broadcasts into a register; a 7x4
 * tile spilled an accumulator, and its loop ran at the latency of the stack round trip). */
static int32_t acc_budget(const ib__target *t, int32_t B, int64_t oc_block) {
    int32_t regs = t->vector_regs > 0 ? t->vector_regs : 16;
    /* narrower blocks than the vector still use whole registers */
    (void)B;
    return regs - (int32_t)oc_block - (regs < 32 || oc_block > 1 ? 1 : 0);
}

void ib__conv_nchwc_default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    ib__conv_geom g;
    if (ib__conv_geom_get(plan, k, &g) != IB_OK) {
        ib__error_clear();
        return;
    }
    const ib__target *t = &plan->target;
    int32_t B = g.B > 0 ? g.B : ib__target_vector_floats(t);
    int64_t OCB = (g.OC + B - 1) / B;
    /* Cost model, in cycles per input channel of a tile: FMAs over two pipes; loads (ow
     * broadcasts + oc weight vectors) over the load ports, derated (they also feed the
     * address arithmetic and the edge tiles); and a floor for the FMA latency that too
     * few accumulator chains cannot hide (more chains are needed with 32 registers of
     * wide vectors). Summed over the row's tiles and the output-channel groups (tails
     * cost a full tile), plus the per-tile cost of loading and storing accumulators.
     * Picks, e.g.: AVX2 4x3 for 14- and 7-wide rows, 6x2 for 28/56; AVX-512 14x2, 7x4. */
    const int32_t Bi = g.Bi > 0 ? g.Bi : B;
    int64_t ICB = (g.IC + Bi - 1) / Bi;
    double steps = (double)(g.KH * g.KW * Bi) * (double)(ICB < 4 ? ICB : 4);
    const double lat_floor = t->vector_regs >= 32 ? 10.0 : 6.0;
    double best = 1e300;
    int64_t bow = 1, boc = 1;
    for (int64_t oc = 1; oc <= 8 && oc <= OCB; oc++) {
        int32_t budget = acc_budget(t, B, oc);
        /* A plain-input (stem) conv reads one strided scalar per output column and
         * channel step: tiles of more than 12 accumulators ran slower than the model
         * predicts (ResNet-50's stem in the model: 14x2 0.92 ms; 12x1, 6x2, 4x3 0.65-0.75).
         * With 16 registers and a long kernel row, 10: the unrolled row keeps loads in
         * flight, and GCC spilled the 12 accumulators of 6x2 (Zen 3, ResNet-50's 7x7 stem
         * in the model: 2.4 ms, 5x2 1.4; MobileNetV2's 3x3 stem kept 6x2, 0.19 ms). */
        const int32_t plain_cap = t->vector_regs < 32 && g.KW > 3 ? 10 : 12;
        if (g.Bi == 1 && budget > plain_cap) budget = plain_cap;
        for (int64_t ow = 1; ow <= g.OW && ow * oc <= budget; ow++) {
            double fma = (double)(ow * oc) / 2.0, ld = (double)(ow + oc) / 1.67;
            double per = fma > ld ? fma : ld;
            if (per < lat_floor) per = lat_floor;
            per += (double)(2 * ow * oc + 16) / steps;
            double tiles = (double)((g.OW + ow - 1) / ow) * (double)((OCB + oc - 1) / oc);
            double cost = tiles * per;
            if (cost < best * 0.999) {
                best = cost;
                bow = ow;
                boc = oc;
            }
        }
    }
    ib__knobs_set(knobs, "ow_block", bow);
    ib__knobs_set(knobs, "oc_block", boc);
    /* ic_block: input-channel blocks per chunk so the chunk's weights for one oc group
     * fill about half of L1. */
    int64_t wbytes = g.KH * g.KW * Bi * B * boc * (int64_t)sizeof(float);
    int64_t l1 = t->l1d_bytes > 0 ? t->l1d_bytes : 32768;
    int64_t icc = wbytes > 0 ? (l1 / 2) / wbytes : 1;
    if (icc < 1) icc = 1;
    if (icc > ICB) icc = ICB;
    ib__knobs_set(knobs, "ic_block", icc);
    /* ic_unroll. With 32 registers, 1: unrolling the in-block channel loop lets GCC
     * interleave steps and spill. With 16 (AVX2) the rolled loop is the one that spills:
     * GCC keeps an accumulator on the stack across iterations, and the loop runs at the
     * latency of the store-load round trip. Measured on Zen 3, ResNet-50 in the model:
     * its 1x1 convs 1.2-1.6 ms rolled, 0.6-0.8 unrolled by the block (8). Its 3x3
     * stride-2 convs in layers 2 and 3: 1.6-1.8 rolled, 1.3-1.5 unrolled by 4, 1.6-1.8 by
     * 8 (the tuner's best for 256 -> 256 at 28x28 unrolled by 4-6); layer 4's (7x7
     * output) was 1.67 rolled, 1.87 by 4, 1.55 by 8 - left to the tuner. */
    int64_t unroll = t->vector_regs >= 32 ? 1 : g.KH * g.KW == 1 ? Bi : (Bi < 4 ? Bi : 4);
    ib__knobs_set(knobs, "ic_unroll", unroll);
    /* parallel: 0 splits output-channel groups across threads (each streams only its
     * share of the weights); 1 gives each item all groups for its rows, so the rows'
     * input stays in cache while every group reads it - better when the image is much
     * larger than L2 but the weights fit (a 1x1 conv on a 56x56x256 input read once
     * per group from DRAM ran 5x slower). Not for a plain-input (stem) conv: its work per
     * byte of image is so high (ResNet-50's 7x7 stem: 236 MFLOP on a 0.6 MB image) that
     * re-reading the image per group costs little; measured in the model, that stem ran
     * 1.14 ms with 1 and 0.62 ms with 0. */
    int64_t l2b = t->l2_bytes > 0 ? t->l2_bytes : 1 << 20;
    int64_t img_bytes = ICB * g.IH * g.IW * Bi * (int64_t)sizeof(float);
    int64_t w_bytes = OCB * B * ICB * Bi * g.KH * g.KW * (int64_t)sizeof(float);
    int64_t par = (g.Bi != 1 && img_bytes > l2b / 2 && w_bytes <= l2b / 2) ? 1 : 0;
    ib__knobs_set(knobs, "parallel", par);
    ib__knobs_set(knobs, "kw_inner", 0);
    /* oh_block: as many rows per parallel item as keep >= 8 items per core (balance) and
     * the item's working set within half of L2: the rows' input for one channel chunk
     * plus the output rows it writes (every group's with parallel 1). Without the output
     * term large batches, which meet the balance rule with huge items, got 28-row items
     * (ResNet-50 batch 8, layer-1 1x1 convs in the model: 3.1-3.6 ms; the tuner's 4-7
     * rows: 2.5-3.1 ms). */
    int64_t cores = t->num_cores > 0 ? t->num_cores : 1, OCG = (OCB + boc - 1) / boc;
    int64_t l2 = t->l2_bytes > 0 ? t->l2_bytes : 1 << 20, ohb = 1;
    for (int64_t h = 2; h <= g.OH; h++) {
        int64_t items = g.N * (par ? 1 : OCG) * ((g.OH + h - 1) / h);
        int64_t rows = (h - 1) * g.SH + (g.KH - 1) * g.DH + 1;
        int64_t xbytes = icc * Bi * g.IW * rows * (int64_t)sizeof(float);
        int64_t obytes = (par ? OCB : boc) * B * g.OW * h * (int64_t)sizeof(float);
        if (items < 8 * cores || xbytes + obytes > l2 / 2) break;
        ohb = h;
    }
    /* the same number of parts with rows spread evenly: 56 rows as 28 + 28, not 55 + 1 */
    int64_t parts = (g.OH + ohb - 1) / ohb;
    ohb = (g.OH + parts - 1) / parts;
    ib__knobs_set(knobs, "oh_block", ohb);
}

bool ib__conv_nchwc_knobs_valid(const ib__plan *plan, const ib__pkernel *k,
                                const ib__knobs *knobs) {
    ib__conv_geom g;
    if (ib__conv_geom_get(plan, k, &g) != IB_OK) {
        ib__error_clear();
        return false;
    }
    int64_t ow = ib__knobs_get(knobs, "ow_block", 0), oc = ib__knobs_get(knobs, "oc_block", 0);
    int64_t icc = ib__knobs_get(knobs, "ic_block", 0), un = ib__knobs_get(knobs, "ic_unroll", 1);
    int64_t par = ib__knobs_get(knobs, "parallel", 0), kwi = ib__knobs_get(knobs, "kw_inner", 0);
    if (kwi != 0 && kwi != 1) return false;
    int64_t ohb = ib__knobs_get(knobs, "oh_block", 1);
    if (ohb < 1 || ohb > g.OH) return false;
    int32_t B = g.B;
    int64_t OCB = (g.OC + B - 1) / B;
    if (ow < 1 || ow > 64 || ow > g.OW || oc < 1 || oc > 16 || oc > OCB) return false;
    if (ow * oc > 64) return false; /* beyond this the code only spills */
    if (icc < 1 || un < 1 || un > 16 || (par != 0 && par != 1)) return false;
    return true;
}

/* ---- weights ----------------------------------------------------------------------- */

ib_status ib__conv_nchwc_pack_weights(ib__plan *plan, ib__pkernel *k) {
    ib__conv_geom g;
    IB_TRY(ib__conv_geom_get(plan, k, &g));
    const ib__pbuf *wb = buf_of(plan, k->in[1]);
    if (wb->layout == IB_LAYOUT_PACKED) return IB_OK;
    const int32_t B = g.B, Bi = g.Bi;
    int64_t OCB = (g.OC + B - 1) / B, ICB = (g.IC + Bi - 1) / Bi, KK = g.KH * g.KW;
    int64_t total = OCB * ICB * KK * Bi * B;
    float *pw = ib__calloc((size_t)total, sizeof(float));
    float *scale = ib__malloc((size_t)g.OC * sizeof(float));
    float *shift = ib__malloc((size_t)g.OC * sizeof(float));
    ib_status st = IB_OK;
    if (!pw || !scale || !shift) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory packing %s",
                       ib__node_label(k->nodes[0]));
        goto done;
    }
    if ((st = ib__conv_bn_fold(k, g.OC, scale, shift)) != IB_OK) goto done;
    const float *w = wb->value->constant->data;
    for (int64_t o = 0; o < g.OC; o++)
        for (int64_t i = 0; i < g.IC; i++)
            for (int64_t kk = 0; kk < KK; kk++) {
                int64_t dst = (((o / B) * ICB + i / Bi) * KK + kk) * Bi * B + (i % Bi) * B + o % B;
                pw[dst] = w[(o * g.IC + i) * KK + kk] * scale[o];
            }
    st = ib__conv_add_packed_weights(plan, k, g.OC, B, pw, (size_t)total * sizeof(float), scale,
                                     shift);
done:
    ib__free(pw);
    ib__free(scale);
    ib__free(shift);
    return st;
}

ib_status ib__conv_add_packed_weights(ib__plan *plan, ib__pkernel *k, int64_t oc, int32_t block,
                                      const float *packed, size_t bytes, const float *scale,
                                      const float *shift) {
    const ib__pbuf *wb = buf_of(plan, k->in[1]);
    int64_t ocp = (oc + block - 1) / block * block;
    float *bias = ib__calloc((size_t)ocp, sizeof(float));
    if (!wb || !bias) {
        ib__free(bias);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory packing %s", ib__node_label(k->nodes[0]));
    }
    const float *b0 = NULL;
    if (k->n_in == 3 && k->in[2] >= 0) b0 = buf_of(plan, k->in[2])->value->constant->data;
    for (int64_t o = 0; o < oc; o++) bias[o] = (b0 ? b0[o] : 0.0f) * scale[o] + shift[o];
    ib__pbuf d;
    memset(&d, 0, sizeof d);
    d.dtype = IB_DTYPE_FLOAT32;
    d.rank = 4;
    memcpy(d.dims, wb->dims, sizeof d.dims);
    d.layout = IB_LAYOUT_PACKED;
    d.value = wb->value;
    int32_t wid, bid;
    ib_status st = ib__plan_add_weight(plan, &d, packed, bytes, &wid);
    if (st == IB_OK) {
        memset(&d, 0, sizeof d);
        d.dtype = IB_DTYPE_FLOAT32;
        d.rank = 1;
        d.dims[0] = ocp;
        d.layout = IB_LAYOUT_PACKED;
        st = ib__plan_add_weight(plan, &d, bias, (size_t)ocp * sizeof(float), &bid);
    }
    ib__free(bias);
    IB_TRY(st);
    k->in[1] = wid;
    k->in[2] = bid;
    k->n_in = 3;
    return ib__conv_pad_channel_operands(plan, k, oc, block);
}

/* ---- emission ----------------------------------------------------------------------- */

typedef struct emit_ctx {
    const ib__pkernel *k;
    ib__sb *sb;
    ib__conv_geom g;
    int32_t B, Bi;
    int64_t ICB, OCB, WSTR, OSTR, owb, ocb, icc, unroll, kw_inner, ohb;
    const char *fn;
} emit_ctx;

/* Emits one micro-kernel: nj pixels x no channel vectors. ow0 < 0: interior tile at a
 * run-time column; else the tile at column ow0 with out-of-range taps left out. */
static ib_status emit_micro(emit_ctx *c, const char *name, int64_t nj, int64_t no, int64_t ow0) {
    ib__sb *sb = c->sb;
    const ib__conv_geom *g = &c->g;
    const int32_t B = c->B, Bi = c->Bi;
    ib__sb_line(sb, "static inline __attribute__((always_inline)) void %s(const float *restrict xn, "
                    "const float *restrict wg, const float *restrict bias, float *restrict yt, "
                    "void *const *args, int64_t yoff, int64_t ocb0, int64_t oh, int64_t ow0, "
                    "int64_t icb0, int64_t icb1, int first, int last) {",
                name);
    sb->indent += 4;
    ib__sb_line(sb, "(void)args; (void)yoff; (void)ow0;");
    for (int64_t j = 0; j < nj; j++)
        for (int64_t o = 0; o < no; o++) ib__sb_line(sb, "ibv%df c%lld_%lld;", B, (long long)j, (long long)o);
    ib__sb_line(sb, "if (first) {");
    for (int64_t o = 0; o < no; o++) {
        ib__sb_line(sb, "    const ibv%df b%lld = ib_load%d(bias + (ocb0 + %lld) * %d);", B,
                    (long long)o, B, (long long)o, B);
        for (int64_t j = 0; j < nj; j++)
            ib__sb_line(sb, "    c%lld_%lld = b%lld;", (long long)j, (long long)o, (long long)o);
    }
    ib__sb_line(sb, "} else {");
    for (int64_t j = 0; j < nj; j++)
        for (int64_t o = 0; o < no; o++)
            ib__sb_line(sb, "    c%lld_%lld = ib_load%d(yt + %lld);", (long long)j, (long long)o,
                        B, (long long)(o * c->OSTR + j * B));
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "const int64_t ih0 = oh * %lld - %lld;", (long long)g->SH, (long long)g->PT);
    ib__sb_line(sb, "for (int64_t icb = icb0; icb < icb1; icb++) {");
    sb->indent += 4;
    ib__sb_line(sb, "for (int64_t kh = 0; kh < %lld; kh++) {", (long long)g->KH);
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t ih = ih0 + kh * %lld;", (long long)g->DH);
    ib__sb_line(sb, "if ((uint64_t)ih >= (uint64_t)%lld) continue;", (long long)g->IH);
    if (ow0 < 0)
        ib__sb_line(sb, "const float *xr = xn + ((icb * %lld + ih) * %lld + ow0 * %lld - %lld) * %d;",
                    (long long)g->IH, (long long)g->IW, (long long)g->SW, (long long)g->PL, Bi);
    else
        ib__sb_line(sb, "const float *xr = xn + (icb * %lld + ih) * %lld * %d;", (long long)g->IH,
                    (long long)g->IW, Bi);
    ib__sb_line(sb, "const float *wk = wg + (icb * %lld + kh) * %lld;", (long long)g->KH,
                (long long)(g->KW * Bi * B));
    /* With a single input block (a stem conv on an image padded to NCHW8c, say) only
     * the real channels are read: the rest are zeros in both operands. */
    const int ib_real = c->ICB == 1 && g->IC < Bi ? (int)g->IC : Bi;
    /* kw_inner: one loop over the block's input channels with every tap inside (fewer,
     * longer iterations); else one loop per tap */
    if (c->kw_inner) {
        ib__sb_line(sb, "#pragma GCC unroll %lld", (long long)c->unroll);
        ib__sb_line(sb, "for (int i = 0; i < %d; i++) {", ib_real);
        sb->indent += 4;
    }
    for (int64_t kw = 0; kw < g->KW; kw++) {
        /* which pixels of the tile read inside the row for this tap */
        bool any = false;
        bool valid[64];
        for (int64_t j = 0; j < nj; j++) {
            if (ow0 < 0) {
                valid[j] = true;
            } else {
                int64_t iw = ow0 * g->SW - g->PL + kw * g->DW + j * g->SW;
                valid[j] = iw >= 0 && iw < g->IW;
            }
            any = any || valid[j];
        }
        if (!any) continue;
        if (!c->kw_inner) {
            ib__sb_line(sb, "#pragma GCC unroll %lld", (long long)c->unroll);
            ib__sb_line(sb, "for (int i = 0; i < %d; i++) {", ib_real);
        } else {
            ib__sb_line(sb, "{");
        }
        sb->indent += 4;
        for (int64_t o = 0; o < no; o++)
            ib__sb_line(sb, "const ibv%df w%lld = ib_load%d(wk + %lld + i * %d);", B, (long long)o, B,
                        (long long)(o * c->WSTR + kw * Bi * B), B);
        for (int64_t j = 0; j < nj; j++) {
            if (!valid[j]) continue;
            int64_t off = ow0 < 0 ? (kw * g->DW + j * g->SW) * Bi
                                  : (ow0 * g->SW - g->PL + kw * g->DW + j * g->SW) * Bi;
            ib__sb_line(sb, "{ const ibv%df xv = ib_splat%d(xr[%lld + i]);", B, B, (long long)off);
            for (int64_t o = 0; o < no; o++)
                ib__sb_line(sb, "  c%lld_%lld = ib_fma%d(xv, w%lld, c%lld_%lld);", (long long)j,
                            (long long)o, B, (long long)o, (long long)j, (long long)o);
            ib__sb_line(sb, "}");
        }
        sb->indent -= 4;
        ib__sb_line(sb, "}");
    }
    if (c->kw_inner) {
        sb->indent -= 4;
        ib__sb_line(sb, "}");
    }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    if (c->k->n_epi > 0) {
        ib__sb_line(sb, "if (last) {");
        sb->indent += 4;
        const int32_t first_arg = c->k->n_in + c->k->n_out;
        for (int64_t j = 0; j < nj; j++)
            for (int64_t o = 0; o < no; o++) {
                char var[48], ch[64], el[64];
                snprintf(var, sizeof var, "c%lld_%lld", (long long)j, (long long)o);
                snprintf(ch, sizeof ch, "(ocb0 + %lld) * %d", (long long)o, B);
                snprintf(el, sizeof el, "yoff + %lld", (long long)(o * c->OSTR + j * B));
                IB_TRY(ib__emit_epilogue(sb, c->k, first_arg, var, B, ch, true, el));
            }
        sb->indent -= 4;
        ib__sb_line(sb, "}");
    }
    for (int64_t j = 0; j < nj; j++)
        for (int64_t o = 0; o < no; o++)
            ib__sb_line(sb, "ib_store%d(yt + %lld, c%lld_%lld);", B,
                        (long long)(o * c->OSTR + j * B), (long long)j, (long long)o);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    return IB_OK;
}

static bool tile_interior(const emit_ctx *c, int64_t ow0, int64_t nj) {
    const ib__conv_geom *g = &c->g;
    return nj == c->owb && ow0 * g->SW - g->PL >= 0 &&
           (ow0 + nj - 1) * g->SW - g->PL + (g->KW - 1) * g->DW < g->IW;
}

/* Emits the row function for `no` channel vectors: every tile of one output row. */
static ib_status emit_row(emit_ctx *c, int64_t no) {
    ib__sb *sb = c->sb;
    const ib__conv_geom *g = &c->g;
    const char *fn = c->fn;
    int64_t n_tiles = (g->OW + c->owb - 1) / c->owb;
    int64_t ta = -1, tb = -1; /* interior tiles [ta, tb) */
    for (int64_t t = 0; t < n_tiles; t++) {
        int64_t ow0 = t * c->owb, nj = g->OW - ow0 < c->owb ? g->OW - ow0 : c->owb;
        if (tile_interior(c, ow0, nj)) {
            if (ta < 0) ta = t;
            tb = t + 1;
        }
    }
    char name[256];
    if (ta >= 0) {
        snprintf(name, sizeof name, "%s_mi%lld", fn, (long long)no);
        IB_TRY(emit_micro(c, name, c->owb, no, -1));
    }
    for (int64_t t = 0; t < n_tiles; t++) {
        if (ta >= 0 && t >= ta && t < tb) continue;
        int64_t ow0 = t * c->owb, nj = g->OW - ow0 < c->owb ? g->OW - ow0 : c->owb;
        snprintf(name, sizeof name, "%s_me%lld_%lld", fn, (long long)t, (long long)no);
        IB_TRY(emit_micro(c, name, nj, no, ow0));
    }
    ib__sb_line(sb, "static void %s_row%lld(const float *restrict x, const float *restrict w, "
                    "const float *restrict bias, float *restrict y, void *const *args, int64_t n, "
                    "int64_t ocb0, int64_t oh0, int64_t oh1) {",
                fn, (long long)no);
    sb->indent += 4;
    ib__sb_line(sb, "const float *xn = x + n * %lld;", (long long)(c->ICB * g->IH * g->IW * c->Bi));
    ib__sb_line(sb, "const float *wg = w + ocb0 * %lld;", (long long)c->WSTR);
    /* a chunk of input channels is applied to every row of the block before the next,
     * so the chunk's weights are reused oh_block times from L1 */
    ib__sb_line(sb, "for (int64_t c0 = 0; c0 < %lld; c0 += %lld) {", (long long)c->ICB,
                (long long)c->icc);
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t c1 = c0 + %lld < %lld ? c0 + %lld : %lld;", (long long)c->icc,
                (long long)c->ICB, (long long)c->icc, (long long)c->ICB);
    ib__sb_line(sb, "const int first = c0 == 0, last = c1 == %lld;", (long long)c->ICB);
    ib__sb_line(sb, "for (int64_t oh = oh0; oh < oh1; oh++) {");
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t ybase = ((n * %lld + ocb0) * %lld + oh) * %lld;",
                (long long)c->OCB, (long long)g->OH, (long long)(g->OW * c->B));
    for (int64_t t = 0; t < n_tiles; t++) {
        int64_t ow0 = t * c->owb;
        if (ta >= 0 && t == ta) {
            ib__sb_line(sb, "for (int64_t ow0 = %lld; ow0 < %lld; ow0 += %lld)", (long long)ow0,
                        (long long)(tb * c->owb), (long long)c->owb);
            ib__sb_line(sb, "    %s_mi%lld(xn, wg, bias, y + ybase + ow0 * %d, args, ybase + ow0 * %d, "
                            "ocb0, oh, ow0, c0, c1, first, last);",
                        fn, (long long)no, c->B, c->B);
            continue;
        }
        if (ta >= 0 && t > ta && t < tb) continue;
        ib__sb_line(sb, "%s_me%lld_%lld(xn, wg, bias, y + ybase + %lld, args, ybase + %lld, ocb0, oh, "
                        "%lld, c0, c1, first, last);",
                    fn, (long long)t, (long long)no, (long long)(ow0 * c->B),
                    (long long)(ow0 * c->B), (long long)ow0);
    }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    return IB_OK;
}

ib_status ib__conv_nchwc_emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    emit_ctx c;
    memset(&c, 0, sizeof c);
    IB_TRY(ib__conv_geom_get(plan, k, &c.g));
    if (k->n_in != 3 || buf_of(plan, k->in[1])->layout != IB_LAYOUT_PACKED)
        return ib__error(IB_ERR_INTERNAL, "%s: weights not packed", ib__node_label(k->nodes[0]));
    if (!ib__conv_nchwc_knobs_valid(plan, k, &k->knobs))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "%s: invalid knobs", ib__node_label(k->nodes[0]));
    const ib__conv_geom *g = &c.g;
    c.k = k;
    c.sb = sb;
    c.B = g->B;
    c.Bi = g->Bi;
    c.fn = k->fn_name;
    c.ICB = (g->IC + c.Bi - 1) / c.Bi;
    c.OCB = (g->OC + c.B - 1) / c.B;
    c.WSTR = c.ICB * g->KH * g->KW * c.Bi * c.B;
    c.OSTR = g->OH * g->OW * c.B;
    c.owb = ib__knobs_get(&k->knobs, "ow_block", 1);
    c.ocb = ib__knobs_get(&k->knobs, "oc_block", 1);
    c.icc = ib__knobs_get(&k->knobs, "ic_block", 1);
    c.unroll = ib__knobs_get(&k->knobs, "ic_unroll", 1);
    c.kw_inner = ib__knobs_get(&k->knobs, "kw_inner", 0);
    c.ohb = ib__knobs_get(&k->knobs, "oh_block", 1);
    if (c.ohb > g->OH) c.ohb = g->OH;
    if (c.icc > c.ICB) c.icc = c.ICB;
    int64_t par = ib__knobs_get(&k->knobs, "parallel", 0);
    /* edge tiles are emitted one function each: refuse pathological padding */
    int64_t n_tiles = (g->OW + c.owb - 1) / c.owb, edges = 0;
    for (int64_t t = 0; t < n_tiles; t++) {
        int64_t ow0 = t * c.owb, nj = g->OW - ow0 < c.owb ? g->OW - ow0 : c.owb;
        if (!tile_interior(&c, ow0, nj)) edges++;
    }
    if (edges > 16)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: too many edge tiles (%lld)",
                         ib__node_label(k->nodes[0]), (long long)edges);
    const char *fn = k->fn_name;
    int64_t tail = c.OCB % c.ocb;
    ib__sb_line(sb, "/* %s: conv %lldx%lldx%lldx%lld -> %lldx%lldx%lldx%lld, kernel %lldx%lld, "
                    "stride %lldx%lld, dilation %lldx%lld, pads %lld,%lld; in NCHW%dc, out NCHW%dc; "
                    "ow_block %lld oc_block %lld ic_block %lld */",
                fn, (long long)g->N, (long long)g->IC, (long long)g->IH, (long long)g->IW,
                (long long)g->N, (long long)g->OC, (long long)g->OH, (long long)g->OW,
                (long long)g->KH, (long long)g->KW, (long long)g->SH, (long long)g->SW,
                (long long)g->DH, (long long)g->DW, (long long)g->PT, (long long)g->PL, c.Bi, c.B,
                (long long)c.owb, (long long)c.ocb, (long long)c.icc);
    IB_TRY(emit_row(&c, c.ocb));
    if (tail) IB_TRY(emit_row(&c, tail));
    int64_t OCG = (c.OCB + c.ocb - 1) / c.ocb;
    ib__sb_line(sb, "static void %s_body(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const float *x = (const float *)args[0], *w = (const float *)args[1], "
                    "*bias = (const float *)args[2];");
    ib__sb_line(sb, "float *y = (float *)args[3];");
    ib__sb_line(sb, "for (int64_t it = begin; it < end; it++) {");
    sb->indent += 4;
    const int64_t ohb = c.ohb, NOHB = (g->OH + ohb - 1) / ohb;
    if (par == 0) {
        ib__sb_line(sb, "const int64_t hb = it %% %lld, r = it / %lld;", (long long)NOHB,
                    (long long)NOHB);
        ib__sb_line(sb, "const int64_t gi = r %% %lld, n = r / %lld;", (long long)OCG, (long long)OCG);
    } else {
        ib__sb_line(sb, "const int64_t hb = it %% %lld, n = it / %lld;", (long long)NOHB,
                    (long long)NOHB);
    }
    ib__sb_line(sb, "const int64_t oh0 = hb * %lld, oh1 = oh0 + %lld < %lld ? oh0 + %lld : %lld;",
                (long long)ohb, (long long)ohb, (long long)g->OH, (long long)ohb, (long long)g->OH);
    if (par == 0)
        ib__sb_line(sb, "{");
    else
        ib__sb_line(sb, "for (int64_t gi = 0; gi < %lld; gi++) {", (long long)OCG);
    if (tail)
        ib__sb_line(sb, "    if (gi == %lld) { %s_row%lld(x, w, bias, y, args, n, gi * %lld, oh0, oh1); continue; }",
                    (long long)(OCG - 1), fn, (long long)tail, (long long)c.ocb);
    ib__sb_line(sb, "    %s_row%lld(x, w, bias, y, args, n, gi * %lld, oh0, oh1);", fn, (long long)c.ocb,
                (long long)c.ocb);
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    int64_t items = par == 0 ? g->N * OCG * NOHB : g->N * NOHB;
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);", (long long)items, fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

double ib__conv_nchwc_flops(const ib__plan *plan, const ib__pkernel *k) {
    ib__conv_geom g;
    if (ib__conv_geom_get(plan, k, &g) != IB_OK) {
        ib__error_clear();
        return 0;
    }
    return 2.0 * (double)g.N * (double)g.OC * (double)g.OH * (double)g.OW * (double)(g.IC / g.group) *
           (double)g.KH * (double)g.KW;
}

/* ---- the template ------------------------------------------------------------------ */

static bool is_pointwise(const ib__conv_geom *g) {
    return g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PT == 0 && g->PL == 0 &&
           g->IH == g->OH && g->IW == g->OW;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ib__conv_geom g;
    if (!ib__conv_nchwc_supports_common(plan, k, &g)) return false;
    return g.group == 1 && !is_pointwise(&g);
}

const ib__kernel_template ib__template_conv2d_nchwc = {
    .name = "conv2d_nchwc",
    .supports = supports,
    .preferred_layout = ib__conv_nchwc_preferred_layout,
    .default_knobs = ib__conv_nchwc_default_knobs,
    .knobs_valid = ib__conv_nchwc_knobs_valid,
    .pack_weights = ib__conv_nchwc_pack_weights,
    .emit = ib__conv_nchwc_emit,
    .flops = ib__conv_nchwc_flops,
};
