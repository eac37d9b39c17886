/* CUDA kernel templates for 2-D convolution on plain NCHW: cuda_conv2d as an implicit
 * GEMM (M = output channels of a group, N = batch x output pixels, K = input channels x
 * kernel window, im2col gathered on the fly into shared memory; groups on blockIdx.z),
 * and cuda_conv2d_depthwise (one input channel per group) as a direct kernel, one output
 * per thread. A folded BatchNormalization lives in the packed weights and bias. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cuda_emit.h"
#include "codegen/templates/conv2d_nchwc.h"

static bool const_f32(const ib__value *v, int64_t count) {
    return v && v->constant && v->constant->dtype == IB_DTYPE_FLOAT32 && v->constant->data &&
           ib_tensor_element_count(v->constant) == count;
}

static bool analyze(const ib__plan *plan, const ib__pkernel *k, ib__conv_geom *g) {
    if (!ib__target_is_cuda(&plan->target)) return false;
    if (k->n_nodes < 1 || !k->nodes || !k->nodes[0] || k->nodes[0]->op != IB_OP_CONV) return false;
    if (k->n_in < 2 || k->n_in > 3 || k->n_out != 1) return false;
    for (int32_t i = 0; i < k->n_in + k->n_out; i++) {
        int32_t id = i < k->n_in ? k->in[i] : k->out[i - k->n_in];
        if (id < 0 || id >= plan->n_bufs || plan->bufs[id].dtype != IB_DTYPE_FLOAT32) return false;
    }
    const ib__pbuf *x = &plan->bufs[k->in[0]], *w = &plan->bufs[k->in[1]], *y = &plan->bufs[k->out[0]];
    if (x->layout != IB_LAYOUT_PLAIN || y->layout != IB_LAYOUT_PLAIN) return false;
    if (ib__conv_geom_get(plan, k, g) != IB_OK) {
        ib__error_clear();
        return false;
    }
    int64_t wcount = g->OC * (g->IC / g->group) * g->KH * g->KW;
    if (w->layout != IB_LAYOUT_PACKED && !const_f32(w->value, wcount)) return false;
    if (k->n_in == 3) {
        const ib__pbuf *b = &plan->bufs[k->in[2]];
        if (b->layout != IB_LAYOUT_PACKED && !const_f32(b->value, g->OC)) return false;
    }
    if (k->n_nodes > 1 && k->nodes[1] && k->nodes[1]->op == IB_OP_BATCH_NORMALIZATION) {
        if (k->nodes[1]->n_inputs < 5) return false;
        for (int32_t i = 1; i < 5; i++)
            if (!const_f32(k->nodes[1]->inputs[i], g->OC)) return false;
    }
    if (g->OC % g->group || g->N * g->OH * g->OW > ((int64_t)1 << 40)) return false;
    return ib__cuda_epilogue_ok(plan, k, g->OC, g->N * g->OC * g->OH * g->OW);
}

static bool is_depthwise(const ib__conv_geom *g) { return g->group > 1 && g->group == g->IC; }

/* Weights [OC][IC/group * KH * KW] and bias [OC] with the BatchNormalization folded
 * in: both PACKED weight buffers, in[] = {x, w, bias}. */
static ib_status pack_weights(ib__plan *plan, ib__pkernel *k) {
    ib__conv_geom g;
    if (!analyze(plan, k, &g)) return ib__error(IB_ERR_INTERNAL, "cuda conv: unsupported kernel");
    const ib__pbuf *w = &plan->bufs[k->in[1]];
    if (w->layout == IB_LAYOUT_PACKED) return IB_OK;
    const int64_t kd = (g.IC / g.group) * g.KH * g.KW, ocp = (g.OC + 15) / 16 * 16;
    float *wp = ib__malloc((size_t)(g.OC * kd) * sizeof(float));
    /* bias zero-padded to 16 channels (the plan's per-channel convention), then the
     * BatchNormalization's scale and shift */
    float *bp = ib__calloc((size_t)(ocp + 2 * g.OC), sizeof(float));
    if (!wp || !bp) {
        ib__free(wp);
        ib__free(bp);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory packing conv weights");
    }
    float *scale = bp + ocp, *shift = bp + ocp + g.OC;
    ib_status st = ib__conv_bn_fold(k, g.OC, scale, shift);
    if (st == IB_OK) {
        const float *src = w->value->constant->data;
        const float *bias = k->n_in == 3 ? plan->bufs[k->in[2]].value->constant->data : NULL;
        for (int64_t o = 0; o < g.OC; o++) {
            for (int64_t i = 0; i < kd; i++) wp[o * kd + i] = src[o * kd + i] * scale[o];
            bp[o] = (bias ? bias[o] : 0.0f) * scale[o] + shift[o];
        }
        ib__pbuf d;
        memset(&d, 0, sizeof d);
        d.dtype = IB_DTYPE_FLOAT32;
        d.rank = 4;
        memcpy(d.dims, w->dims, sizeof d.dims);
        d.layout = IB_LAYOUT_PACKED;
        d.value = w->value;
        int32_t wid, bid;
        st = ib__plan_add_weight(plan, &d, wp, (size_t)(g.OC * kd) * sizeof(float), &wid);
        if (st == IB_OK) {
            d.rank = 1;
            memset(d.dims, 0, sizeof d.dims);
            d.dims[0] = g.OC;
            d.value = NULL;
            st = ib__plan_add_weight(plan, &d, bp, (size_t)ocp * sizeof(float), &bid);
        }
        if (st == IB_OK) {
            k->in[1] = wid;
            k->in[2] = bid;
            k->n_in = 3;
        }
    }
    ib__free(wp);
    ib__free(bp);
    return st;
}

/* ---- implicit GEMM ------------------------------------------------------------------------ */

typedef struct conv_text {
    char a[160], b[160], store[256], setup[64];
    ib__sb value;
} conv_text;

static ib_status describe(const ib__plan *plan, const ib__pkernel *k, const ib__conv_geom *g,
                          conv_text *t, ib__cuda_mm *mm) {
    memset(mm, 0, sizeof *mm);
    const int64_t mg = g->OC / g->group, kd = (g->IC / g->group) * g->KH * g->KW;
    mm->M = mg;
    mm->N = g->N * g->OH * g->OW;
    mm->K = kd;
    mm->batch = g->group;
    snprintf(t->a, sizeof t->a, "a1[(bz * %lldll + m) * %lldll + k]", (long long)mg, (long long)kd);
    snprintf(t->b, sizeof t->b, "%s_im2col(a0, bz, k, n)", k->fn_name);
    snprintf(t->store, sizeof t->store,
             "a%d[((n / %lldll) * %lldll + bz * %lldll + m) * %lldll + n %% %lldll] = v;",
             (int)k->n_in, (long long)(g->OH * g->OW), (long long)g->OC, (long long)mg,
             (long long)(g->OH * g->OW), (long long)(g->OH * g->OW));
    mm->a_expr = t->a;
    mm->b_expr = t->b;
    mm->store = t->store;
    ib__sb_init(&t->value);
    if (plan) {
        char elem[200];
        snprintf(elem, sizeof elem, "((n / %lldll) * %lldll + bz * %lldll + m) * %lldll + n %% %lldll",
                 (long long)(g->OH * g->OW), (long long)g->OC, (long long)mg,
                 (long long)(g->OH * g->OW), (long long)(g->OH * g->OW));
        char ch[64];
        snprintf(ch, sizeof ch, "bz * %lldll + m", (long long)mg);
        t->value.indent = 16;
        ib__sb_line(&t->value, "v += a2[%s];", ch);
        IB_TRY(ib__cuda_epilogue(&t->value, k, k->n_in + k->n_out, "v", ch, elem));
        IB_TRY(ib__sb_status(&t->value));
        mm->value = t->value.data;
    }
    return IB_OK;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ib__conv_geom g;
    return analyze(plan, k, &g) && !is_depthwise(&g) && g.group <= 65535;
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    ib__conv_geom g;
    if (!analyze(plan, k, &g)) return;
    conv_text t;
    ib__cuda_mm mm;
    if (describe(NULL, k, &g, &t, &mm) == IB_OK) ib__cuda_mm_default_knobs(&plan->target, &mm, knobs);
    ib__sb_free(&t.value);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    ib__conv_geom g;
    if (!analyze(plan, k, &g)) return false;
    conv_text t;
    ib__cuda_mm mm;
    bool ok = describe(NULL, k, &g, &t, &mm) == IB_OK &&
              ib__cuda_mm_knobs_valid(&plan->target, &mm, knobs);
    ib__sb_free(&t.value);
    return ok;
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    ib__conv_geom g;
    if (!analyze(plan, k, &g) || plan->bufs[k->in[1]].layout != IB_LAYOUT_PACKED || k->n_in != 3)
        return ib__error(IB_ERR_INTERNAL, "cuda_conv2d: %s is not supported (or not packed)",
                         ib__node_label(k->nodes[0]));
    const long long ICg = g.IC / g.group, KHW = g.KH * g.KW, OHW = g.OH * g.OW;
    ib__sb_line(sb, "/* %s: %s as implicit GEMM, [%lld x %lld] * [%lld x %lld] per group, %lld group(s) */",
                k->fn_name, ib__node_label(k->nodes[0]), (long long)(g.OC / g.group),
                ICg * KHW, ICg * KHW, (long long)(g.N * OHW), (long long)g.group);
    /* B[k][n] of the implicit GEMM: input pixel of channel k / KHW at window offset k % KHW
     * for output pixel n, zero in the padding */
    ib__sb_line(sb, "static __device__ __forceinline__ float %s_im2col(const float *x, int64_t g, int64_t k, int64_t n) {", k->fn_name);
    ib__sb_line(sb, "    const int64_t ic = g * %lldll + k / %lld, r = k %% %lld;", ICg, KHW, KHW);
    ib__sb_line(sb, "    const int64_t b = n / %lldll, p = n %% %lldll;", OHW, OHW);
    ib__sb_line(sb, "    const int64_t ih = (p / %lld) * %lld - %lld + (r / %lld) * %lld;", (long long)g.OW,
                (long long)g.SH, (long long)g.PT, (long long)g.KW, (long long)g.DH);
    ib__sb_line(sb, "    const int64_t iw = (p %% %lld) * %lld - %lld + (r %% %lld) * %lld;", (long long)g.OW,
                (long long)g.SW, (long long)g.PL, (long long)g.KW, (long long)g.DW);
    ib__sb_line(sb, "    if (ih < 0 || ih >= %lld || iw < 0 || iw >= %lld) return 0.0f;", (long long)g.IH,
                (long long)g.IW);
    ib__sb_line(sb, "    return x[((b * %lldll + ic) * %lld + ih) * %lld + iw];", (long long)g.IC,
                (long long)g.IH, (long long)g.IW);
    ib__sb_line(sb, "}");
    conv_text t;
    ib__cuda_mm mm;
    ib_status st = describe(plan, k, &g, &t, &mm);
    ib__launch_dims ld;
    if (st == IB_OK) st = ib__cuda_mm_launch(&plan->target, &mm, &k->knobs, &ld);
    if (st == IB_OK) {
        ib__cuda_signature(sb, k, ld.block[0]);
        st = ib__cuda_mm_emit(sb, &plan->target, &mm, &k->knobs);
    }
    ib__sb_free(&t.value);
    return st;
}

static ib_status launch(const ib__plan *plan, const ib__pkernel *k, ib__launch_dims *out) {
    ib__conv_geom g;
    if (!analyze(plan, k, &g)) return ib__error(IB_ERR_INTERNAL, "cuda_conv2d: unsupported kernel");
    conv_text t;
    ib__cuda_mm mm;
    ib_status st = describe(NULL, k, &g, &t, &mm);
    if (st == IB_OK) st = ib__cuda_mm_launch(&plan->target, &mm, &k->knobs, out);
    ib__sb_free(&t.value);
    return st;
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    ib__conv_geom g;
    if (!analyze(plan, k, &g)) return 0.0;
    return 2.0 * (double)g.N * (double)g.OC * (double)g.OH * (double)g.OW *
           (double)(g.IC / g.group) * (double)(g.KH * g.KW);
}

const ib__kernel_template ib__template_cuda_conv2d = {
    .name = "cuda_conv2d",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = pack_weights,
    .emit = emit,
    .flops = flops,
    .launch = launch,
};

/* ---- depthwise ---------------------------------------------------------------------------- */

static bool dw_supports(const ib__plan *plan, const ib__pkernel *k) {
    ib__conv_geom g;
    return analyze(plan, k, &g) && is_depthwise(&g);
}

static void dw_default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    (void)plan;
    (void)k;
    ib__knobs_set(knobs, "threads", 256);
    /* outputs along a row per thread: neighbours share input pixels in registers */
    ib__knobs_set(knobs, "outputs_per_thread", 1);
}

static bool dw_knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    ib__conv_geom g;
    if (!analyze(plan, k, &g)) return false;
    int64_t t = ib__knobs_get(knobs, "threads", 256), o = ib__knobs_get(knobs, "outputs_per_thread", 1);
    return t >= 32 && t <= 1024 && t % 32 == 0 && (o == 1 || o == 2 || o == 4);
}

static ib_status dw_launch(const ib__plan *plan, const ib__pkernel *k, ib__launch_dims *out) {
    ib__conv_geom g;
    if (!analyze(plan, k, &g)) return ib__error(IB_ERR_INTERNAL, "cuda depthwise: unsupported kernel");
    int64_t o = ib__knobs_get(&k->knobs, "outputs_per_thread", 1);
    int64_t owt = (g.OW + o - 1) / o;
    ib__cuda_launch_1d(g.N * g.OC * g.OH * owt, (int32_t)ib__knobs_get(&k->knobs, "threads", 256), out);
    return IB_OK;
}

static ib_status dw_emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    ib__conv_geom g;
    if (!analyze(plan, k, &g) || plan->bufs[k->in[1]].layout != IB_LAYOUT_PACKED || k->n_in != 3)
        return ib__error(IB_ERR_INTERNAL, "cuda_conv2d_depthwise: %s is not supported",
                         ib__node_label(k->nodes[0]));
    const long long O = ib__knobs_get(&k->knobs, "outputs_per_thread", 1);
    const long long T = ib__knobs_get(&k->knobs, "threads", 256);
    const long long mult = g.OC / g.IC, owt = (g.OW + O - 1) / O;
    const long long total = (long long)(g.N * g.OC * g.OH) * owt;
    ib__sb_line(sb, "/* %s: %s, depthwise %lldx%lld, %lld output(s) per thread */", k->fn_name,
                ib__node_label(k->nodes[0]), (long long)g.KH, (long long)g.KW, O);
    ib__cuda_signature(sb, k, (int32_t)T);
    sb->indent = 4;
    ib__sb_line(sb, "const int64_t i = (int64_t)blockIdx.x * %lld + threadIdx.x;", T);
    ib__sb_line(sb, "if (i >= %lldll) return;", total);
    ib__sb_line(sb, "const int64_t ow0 = (i %% %lld) * %lld, oh = (i / %lld) %% %lld;", owt, O, owt,
                (long long)g.OH);
    ib__sb_line(sb, "const int64_t oc = (i / %lldll) %% %lld, b = i / %lldll;", owt * g.OH,
                (long long)g.OC, owt * g.OH * g.OC);
    ib__sb_line(sb, "const float *x = a0 + (b * %lldll + oc / %lld) * %lldll;", (long long)g.IC, mult,
                (long long)(g.IH * g.IW));
    ib__sb_line(sb, "const float *w = a1 + oc * %lld;", (long long)(g.KH * g.KW));
    ib__sb_line(sb, "float acc[%lld];", O);
    ib__sb_line(sb, "#pragma unroll");
    ib__sb_line(sb, "for (int o = 0; o < %lld; o++) acc[o] = a2[oc];", O);
    ib__sb_line(sb, "#pragma unroll");
    ib__sb_line(sb, "for (int kh = 0; kh < %lld; kh++) {", (long long)g.KH);
    ib__sb_line(sb, "    const int64_t ih = oh * %lld - %lld + kh * %lld;", (long long)g.SH, (long long)g.PT,
                (long long)g.DH);
    ib__sb_line(sb, "    if (ih < 0 || ih >= %lld) continue;", (long long)g.IH);
    ib__sb_line(sb, "    #pragma unroll");
    ib__sb_line(sb, "    for (int kw = 0; kw < %lld; kw++) {", (long long)g.KW);
    ib__sb_line(sb, "        const float wv = w[kh * %lld + kw];", (long long)g.KW);
    ib__sb_line(sb, "        #pragma unroll");
    ib__sb_line(sb, "        for (int o = 0; o < %lld; o++) {", O);
    ib__sb_line(sb, "            const int64_t iw = (ow0 + o) * %lld - %lld + kw * %lld;", (long long)g.SW,
                (long long)g.PL, (long long)g.DW);
    ib__sb_line(sb, "            if (iw >= 0 && iw < %lld) acc[o] = fmaf(x[ih * %lld + iw], wv, acc[o]);",
                (long long)g.IW, (long long)g.IW);
    ib__sb_line(sb, "        }");
    ib__sb_line(sb, "    }");
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "#pragma unroll");
    ib__sb_line(sb, "for (int o = 0; o < %lld; o++) {", O);
    sb->indent = 8;
    ib__sb_line(sb, "if (ow0 + o >= %lld) break;", (long long)g.OW);
    ib__sb_line(sb, "const int64_t e = ((b * %lld + oc) * %lld + oh) * %lld + ow0 + o;", (long long)g.OC,
                (long long)g.OH, (long long)g.OW);
    ib__sb_line(sb, "float v = acc[o];");
    IB_TRY(ib__cuda_epilogue(sb, k, k->n_in + k->n_out, "v", "oc", "e"));
    ib__sb_line(sb, "a%d[e] = v;", (int)k->n_in);
    sb->indent = 4;
    ib__sb_line(sb, "}");
    sb->indent = 0;
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

const ib__kernel_template ib__template_cuda_conv2d_depthwise = {
    .name = "cuda_conv2d_depthwise",
    .supports = dw_supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = dw_default_knobs,
    .knobs_valid = dw_knobs_valid,
    .pack_weights = pack_weights,
    .emit = dw_emit,
    .flops = flops,
    .launch = dw_launch,
};
