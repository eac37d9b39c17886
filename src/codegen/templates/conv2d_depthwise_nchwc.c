/* Kernel template conv2d_depthwise_nchwc: depthwise 2-D Conv (group == C == OC,
 * multiplier 1) on NCHW[b]c, weights packed [C/b][KH][KW][b] with a folded
 * BatchNormalization, fused epilogue. One vector holds b channels of a pixel, so each
 * tap is a vector FMA of the input pixel with the tap's weight vector; ow_block pixels
 * of a row accumulate in registers. Tiles that touch the padding are emitted with the
 * out-of-range taps removed statically, as in conv2d_nchwc. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"
#include "codegen/templates/conv2d_nchwc.h"

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ib__conv_geom g;
    if (!ib__conv_nchwc_supports_common(plan, k, &g)) return false;
    return g.group == g.IC && g.OC == g.IC && g.group > 1 && g.Bi == g.B;
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    ib__conv_geom g;
    if (ib__conv_geom_get(plan, k, &g) != IB_OK) {
        ib__error_clear();
        return;
    }
    int32_t regs = plan->target.vector_regs > 0 ? plan->target.vector_regs : 16;
    /* accumulators + the tap's weight + an input vector; at least 8 chains in flight
     * hide the FMA latency, tails cost a whole tile */
    int64_t best_ow = 1;
    double best = 1e300;
    for (int64_t ow = 1; ow <= g.OW && ow <= regs - 3; ow++) {
        double cost = (double)((g.OW + ow - 1) / ow) * (double)(ow > 8 ? ow : 8) + 0.01 * (double)ow;
        cost += 4.0 * (double)((g.OW + ow - 1) / ow); /* per-tile overhead */
        if (cost < best * 0.999) {
            best = cost;
            best_ow = ow;
        }
    }
    ib__knobs_set(knobs, "ow_block", best_ow);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    ib__conv_geom g;
    if (ib__conv_geom_get(plan, k, &g) != IB_OK) {
        ib__error_clear();
        return false;
    }
    int64_t ow = ib__knobs_get(knobs, "ow_block", 0);
    return ow >= 1 && ow <= 64 && ow <= g.OW;
}

static ib_status pack_weights(ib__plan *plan, ib__pkernel *k) {
    ib__conv_geom g;
    IB_TRY(ib__conv_geom_get(plan, k, &g));
    const ib__pbuf *wb = &plan->bufs[k->in[1]];
    if (wb->layout == IB_LAYOUT_PACKED) return IB_OK;
    int32_t B = g.B;
    int64_t CB = (g.OC + B - 1) / B, KK = g.KH * g.KW;
    float *pw = ib__calloc((size_t)(CB * KK * B), sizeof(float));
    float *bias = ib__calloc((size_t)(CB * B), sizeof(float));
    float *scale = ib__malloc((size_t)g.OC * sizeof(float));
    float *shift = ib__malloc((size_t)g.OC * sizeof(float));
    ib_status st = IB_OK;
    if (!pw || !bias || !scale || !shift) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory packing %s",
                       ib__node_label(k->nodes[0]));
        goto done;
    }
    if ((st = ib__conv_bn_fold(k, g.OC, scale, shift)) != IB_OK) goto done;
    const float *w = wb->value->constant->data;
    for (int64_t c = 0; c < g.OC; c++)
        for (int64_t kk = 0; kk < KK; kk++)
            pw[((c / B) * KK + kk) * B + c % B] = w[c * KK + kk] * scale[c];
    const float *b0 = (k->n_in == 3 && k->in[2] >= 0) ? plan->bufs[k->in[2]].value->constant->data
                                                       : NULL;
    for (int64_t c = 0; c < g.OC; c++) bias[c] = (b0 ? b0[c] : 0.0f) * scale[c] + shift[c];
    ib__pbuf d;
    memset(&d, 0, sizeof d);
    d.dtype = IB_DTYPE_FLOAT32;
    d.rank = 4;
    memcpy(d.dims, wb->dims, sizeof d.dims);
    d.layout = IB_LAYOUT_PACKED;
    d.value = wb->value;
    int32_t wid, bid;
    if ((st = ib__plan_add_weight(plan, &d, pw, (size_t)(CB * KK * B) * sizeof(float), &wid)))
        goto done;
    memset(&d, 0, sizeof d);
    d.dtype = IB_DTYPE_FLOAT32;
    d.rank = 1;
    d.dims[0] = CB * B;
    d.layout = IB_LAYOUT_PACKED;
    if ((st = ib__plan_add_weight(plan, &d, bias, (size_t)(CB * B) * sizeof(float), &bid)))
        goto done;
    k->in[1] = wid;
    k->in[2] = bid;
    k->n_in = 3;
    st = ib__conv_pad_channel_operands(plan, k, g.OC, B);
done:
    ib__free(pw);
    ib__free(bias);
    ib__free(scale);
    ib__free(shift);
    return st;
}

typedef struct dw_ctx {
    const ib__pkernel *k;
    ib__sb *sb;
    ib__conv_geom g;
    int32_t B;
    int64_t CB, owb;
} dw_ctx;

static bool tile_interior(const dw_ctx *c, int64_t ow0, int64_t nj) {
    const ib__conv_geom *g = &c->g;
    return nj == c->owb && ow0 * g->SW - g->PL >= 0 &&
           (ow0 + nj - 1) * g->SW - g->PL + (g->KW - 1) * g->DW < g->IW;
}

/* One tile of nj pixels; ow0 < 0: interior at a run-time column. */
static ib_status emit_micro(dw_ctx *c, const char *name, int64_t nj, int64_t ow0) {
    ib__sb *sb = c->sb;
    const ib__conv_geom *g = &c->g;
    const int32_t B = c->B;
    ib__sb_line(sb, "static inline __attribute__((always_inline)) void %s(const float *restrict xc, "
                    "const float *restrict wc, const float *restrict bias, float *restrict yt, "
                    "void *const *args, int64_t yoff, int64_t cb, int64_t oh, int64_t ow0) {",
                name);
    sb->indent += 4;
    ib__sb_line(sb, "(void)args; (void)yoff; (void)ow0;");
    ib__sb_line(sb, "const ibv%df bv = ib_load%d(bias + cb * %d);", B, B, B);
    for (int64_t j = 0; j < nj; j++) ib__sb_line(sb, "ibv%df c%lld = bv;", B, (long long)j);
    ib__sb_line(sb, "const int64_t ih0 = oh * %lld - %lld;", (long long)g->SH, (long long)g->PT);
    ib__sb_line(sb, "for (int64_t kh = 0; kh < %lld; kh++) {", (long long)g->KH);
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t ih = ih0 + kh * %lld;", (long long)g->DH);
    ib__sb_line(sb, "if ((uint64_t)ih >= (uint64_t)%lld) continue;", (long long)g->IH);
    if (ow0 < 0)
        ib__sb_line(sb, "const float *xr = xc + (ih * %lld + ow0 * %lld - %lld) * %d;",
                    (long long)g->IW, (long long)g->SW, (long long)g->PL, B);
    else
        ib__sb_line(sb, "const float *xr = xc + ih * %lld;", (long long)(g->IW * B));
    ib__sb_line(sb, "const float *wk = wc + kh * %lld;", (long long)(g->KW * B));
    for (int64_t kw = 0; kw < g->KW; kw++) {
        bool any = false;
        for (int64_t j = 0; j < nj && !any; j++) {
            int64_t iw = ow0 * g->SW - g->PL + kw * g->DW + j * g->SW;
            any = ow0 < 0 || (iw >= 0 && iw < g->IW);
        }
        if (!any) continue;
        ib__sb_line(sb, "{ const ibv%df w = ib_load%d(wk + %lld);", B, B, (long long)(kw * B));
        for (int64_t j = 0; j < nj; j++) {
            int64_t off;
            if (ow0 < 0) {
                off = (kw * g->DW + j * g->SW) * B;
            } else {
                int64_t iw = ow0 * g->SW - g->PL + kw * g->DW + j * g->SW;
                if (iw < 0 || iw >= g->IW) continue;
                off = iw * B;
            }
            ib__sb_line(sb, "  c%lld = ib_fma%d(ib_load%d(xr + %lld), w, c%lld);", (long long)j, B, B,
                        (long long)off, (long long)j);
        }
        ib__sb_line(sb, "}");
    }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    const int32_t first_arg = c->k->n_in + c->k->n_out;
    for (int64_t j = 0; j < nj; j++) {
        char var[32], ch[48], el[48];
        snprintf(var, sizeof var, "c%lld", (long long)j);
        snprintf(ch, sizeof ch, "cb * %d", B);
        snprintf(el, sizeof el, "yoff + %lld", (long long)(j * B));
        IB_TRY(ib__emit_epilogue(sb, c->k, first_arg, var, B, ch, true, el));
        ib__sb_line(sb, "ib_store%d(yt + %lld, c%lld);", B, (long long)(j * B), (long long)j);
    }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    return IB_OK;
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    dw_ctx c;
    memset(&c, 0, sizeof c);
    IB_TRY(ib__conv_geom_get(plan, k, &c.g));
    if (k->n_in != 3 || plan->bufs[k->in[1]].layout != IB_LAYOUT_PACKED)
        return ib__error(IB_ERR_INTERNAL, "%s: weights not packed", ib__node_label(k->nodes[0]));
    if (!knobs_valid(plan, k, &k->knobs))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "%s: invalid knobs", ib__node_label(k->nodes[0]));
    const ib__conv_geom *g = &c.g;
    c.k = k;
    c.sb = sb;
    c.B = g->B;
    c.CB = (g->OC + c.B - 1) / c.B;
    c.owb = ib__knobs_get(&k->knobs, "ow_block", 1);
    const char *fn = k->fn_name;
    int64_t n_tiles = (g->OW + c.owb - 1) / c.owb, ta = -1, tb = -1, edges = 0;
    for (int64_t t = 0; t < n_tiles; t++) {
        int64_t ow0 = t * c.owb, nj = g->OW - ow0 < c.owb ? g->OW - ow0 : c.owb;
        if (tile_interior(&c, ow0, nj)) {
            if (ta < 0) ta = t;
            tb = t + 1;
        } else {
            edges++;
        }
    }
    if (edges > 16)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: too many edge tiles", ib__node_label(k->nodes[0]));
    ib__sb_line(sb, "/* %s: depthwise conv %lldx%lldx%lldx%lld -> %lldx%lld, kernel %lldx%lld, "
                    "stride %lldx%lld, dilation %lldx%lld, pads %lld,%lld; NCHW%dc; ow_block %lld */",
                fn, (long long)g->N, (long long)g->IC, (long long)g->IH, (long long)g->IW,
                (long long)g->OH, (long long)g->OW, (long long)g->KH, (long long)g->KW,
                (long long)g->SH, (long long)g->SW, (long long)g->DH, (long long)g->DW,
                (long long)g->PT, (long long)g->PL, c.B, (long long)c.owb);
    char name[256];
    if (ta >= 0) {
        snprintf(name, sizeof name, "%s_mi", fn);
        IB_TRY(emit_micro(&c, name, c.owb, -1));
    }
    for (int64_t t = 0; t < n_tiles; t++) {
        if (ta >= 0 && t >= ta && t < tb) continue;
        int64_t ow0 = t * c.owb, nj = g->OW - ow0 < c.owb ? g->OW - ow0 : c.owb;
        snprintf(name, sizeof name, "%s_me%lld", fn, (long long)t);
        IB_TRY(emit_micro(&c, name, nj, ow0));
    }
    ib__sb_line(sb, "static void %s_body(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const float *x = (const float *)args[0], *w = (const float *)args[1], "
                    "*bias = (const float *)args[2];");
    ib__sb_line(sb, "float *y = (float *)args[3];");
    ib__sb_line(sb, "for (int64_t it = begin; it < end; it++) {");
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t oh = it %% %lld, ncb = it / %lld, cb = ncb %% %lld;",
                (long long)g->OH, (long long)g->OH, (long long)c.CB);
    ib__sb_line(sb, "const float *xc = x + ncb * %lld;", (long long)(g->IH * g->IW * c.B));
    ib__sb_line(sb, "const float *wc = w + cb * %lld;", (long long)(g->KH * g->KW * c.B));
    ib__sb_line(sb, "const int64_t ybase = (ncb * %lld + oh) * %lld;", (long long)g->OH,
                (long long)(g->OW * c.B));
    for (int64_t t = 0; t < n_tiles; t++) {
        int64_t ow0 = t * c.owb;
        if (ta >= 0 && t == ta) {
            ib__sb_line(sb, "for (int64_t ow0 = %lld; ow0 < %lld; ow0 += %lld)", (long long)ow0,
                        (long long)(tb * c.owb), (long long)c.owb);
            ib__sb_line(sb, "    %s_mi(xc, wc, bias, y + ybase + ow0 * %d, args, ybase + ow0 * %d, cb, "
                            "oh, ow0);",
                        fn, c.B, c.B);
            continue;
        }
        if (ta >= 0 && t > ta && t < tb) continue;
        ib__sb_line(sb, "%s_me%lld(xc, wc, bias, y + ybase + %lld, args, ybase + %lld, cb, oh, %lld);",
                    fn, (long long)t, (long long)(ow0 * c.B), (long long)(ow0 * c.B), (long long)ow0);
    }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);",
                (long long)(g->N * c.CB * g->OH), fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    ib__conv_geom g;
    if (ib__conv_geom_get(plan, k, &g) != IB_OK) {
        ib__error_clear();
        return 0;
    }
    return 2.0 * (double)g.N * (double)g.OC * (double)g.OH * (double)g.OW * (double)g.KH *
           (double)g.KW;
}

const ib__kernel_template ib__template_conv2d_depthwise_nchwc = {
    .name = "conv2d_depthwise_nchwc",
    .supports = supports,
    .preferred_layout = ib__conv_nchwc_preferred_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = pack_weights,
    .emit = emit,
    .flops = flops,
};
