/* CUDA kernel template cuda_pool2d: MaxPool / AveragePool (pads, strides, dilations,
 * ceil_mode, count_include_pad) as one output per thread, and GlobalAveragePool /
 * GlobalMaxPool as one warp per (image, channel) plane with a shuffle reduction; plain
 * NCHW in and out, fused epilogue per channel. */
#include <stdio.h>
#include <string.h>

#include "codegen/cuda/cuda_emit.h"
#include "codegen/templates/pool2d.h"

static bool analyze(const ib__plan *plan, const ib__pkernel *k, ib__pool_geom *g) {
    if (!ib__target_is_cuda(&plan->target) || k->n_in != 1 || k->n_out != 1) return false;
    for (int32_t i = 0; i < 2; i++) {
        int32_t id = i ? k->out[0] : k->in[0];
        if (id < 0 || id >= plan->n_bufs) return false;
        const ib__pbuf *b = &plan->bufs[id];
        if (b->dtype != IB_DTYPE_FLOAT32 || b->layout != IB_LAYOUT_PLAIN) return false;
    }
    if (ib__pool_geom_get(plan, k, g) != IB_OK) {
        ib__error_clear();
        return false;
    }
    return ib__cuda_epilogue_ok(plan, k, g->C, g->N * g->C * g->OH * g->OW);
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ib__pool_geom g;
    return analyze(plan, k, &g);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    (void)plan;
    (void)k;
    ib__knobs_set(knobs, "threads", 256);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    ib__pool_geom g;
    return analyze(plan, k, &g) && ib__cuda_threads_valid(knobs, 256);
}

static ib_status launch(const ib__plan *plan, const ib__pkernel *k, ib__launch_dims *out) {
    ib__pool_geom g;
    if (!analyze(plan, k, &g)) return ib__error(IB_ERR_INTERNAL, "cuda_pool2d: unsupported kernel");
    int32_t t = (int32_t)ib__knobs_get(&k->knobs, "threads", 256);
    /* global: a warp per plane */
    ib__cuda_launch_1d(g.global ? g.N * g.C * 32 : g.N * g.C * g.OH * g.OW, t, out);
    return IB_OK;
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    ib__pool_geom g;
    if (!analyze(plan, k, &g))
        return ib__error(IB_ERR_INTERNAL, "cuda_pool2d: %s is not supported", ib__node_label(k->nodes[0]));
    const long long T = ib__knobs_get(&k->knobs, "threads", 256);
    const int fa = k->n_in + k->n_out, yo = k->n_in;
    ib__sb_line(sb, "/* %s: %s, %s */", k->fn_name, ib__node_label(k->nodes[0]),
                g.global ? "global, a warp per plane" : "one output per thread");
    ib__cuda_signature(sb, k, (int32_t)T);
    sb->indent = 4;
    const char *init = g.is_max ? "-INFINITY" : "0.0f";
    if (g.global) {
        const long long HW = g.IH * g.IW;
        ib__sb_line(sb, "const int64_t plane = ((int64_t)blockIdx.x * %lld + threadIdx.x) >> 5;", T);
        ib__sb_line(sb, "const int lane = threadIdx.x & 31;");
        ib__sb_line(sb, "if (plane >= %lldll) return;", (long long)(g.N * g.C));
        ib__sb_line(sb, "const float *x = a0 + plane * %lldll;", HW);
        ib__sb_line(sb, "float v = %s;", init);
        ib__sb_line(sb, "for (int64_t i = lane; i < %lld; i += 32) v = %s;", HW,
                    g.is_max ? "fmaxf(v, x[i])" : "v + x[i]");
        ib__sb_line(sb, "v = %s(v);", g.is_max ? "ib_warp_max" : "ib_warp_sum");
        ib__sb_line(sb, "if (lane != 0) return;");
        char inv[48];
        if (!g.is_max) ib__sb_line(sb, "v *= %s;", ib__cuda_flit(inv, sizeof inv, (float)(1.0 / (double)HW)));
        ib__sb_line(sb, "const int64_t c = plane %% %lld, e = plane;", (long long)g.C);
        ib__sb_line(sb, "(void)c;");
    } else {
        ib__sb_line(sb, "const int64_t e = (int64_t)blockIdx.x * %lld + threadIdx.x;", T);
        ib__sb_line(sb, "if (e >= %lldll) return;", (long long)(g.N * g.C * g.OH * g.OW));
        ib__sb_line(sb, "const int64_t ow = e %% %lld, oh = (e / %lld) %% %lld, plane = e / %lldll;",
                    (long long)g.OW, (long long)g.OW, (long long)g.OH, (long long)(g.OH * g.OW));
        ib__sb_line(sb, "const int64_t c = plane %% %lld;", (long long)g.C);
        ib__sb_line(sb, "(void)c;");
        ib__sb_line(sb, "const float *x = a0 + plane * %lldll;", (long long)(g.IH * g.IW));
        ib__sb_line(sb, "float v = %s;", init);
        ib__sb_line(sb, "int cnt = 0;");
        ib__sb_line(sb, "for (int kh = 0; kh < %lld; kh++) {", (long long)g.K[0]);
        ib__sb_line(sb, "    const int64_t ih = oh * %lld - %lld + kh * %lld;", (long long)g.S[0],
                    (long long)g.PB[0], (long long)g.D[0]);
        if (g.cip) /* taps in the padding count, taps past it (ceil_mode) do not */
            ib__sb_line(sb, "    if (ih >= %lld) break;", (long long)(g.IH + g.PE[0]));
        ib__sb_line(sb, "    for (int kw = 0; kw < %lld; kw++) {", (long long)g.K[1]);
        ib__sb_line(sb, "        const int64_t iw = ow * %lld - %lld + kw * %lld;", (long long)g.S[1],
                    (long long)g.PB[1], (long long)g.D[1]);
        if (g.cip) ib__sb_line(sb, "        if (iw >= %lld) break;", (long long)(g.IW + g.PE[1]));
        if (g.cip) ib__sb_line(sb, "        cnt++;");
        ib__sb_line(sb, "        if (ih < 0 || ih >= %lld || iw < 0 || iw >= %lld) continue;",
                    (long long)g.IH, (long long)g.IW);
        if (!g.cip) ib__sb_line(sb, "        cnt++;");
        ib__sb_line(sb, "        const float t = x[ih * %lld + iw];", (long long)g.IW);
        ib__sb_line(sb, "        v = %s;", g.is_max ? "fmaxf(v, t)" : "v + t");
        ib__sb_line(sb, "    }");
        ib__sb_line(sb, "}");
        if (!g.is_max) ib__sb_line(sb, "v = cnt > 0 ? v / (float)cnt : 0.0f;");
        else ib__sb_line(sb, "(void)cnt;");
    }
    IB_TRY(ib__cuda_epilogue(sb, k, fa, "v", "c", "e"));
    ib__sb_line(sb, "a%d[e] = v;", yo);
    sb->indent = 0;
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    ib__pool_geom g;
    if (!analyze(plan, k, &g)) return 0.0;
    if (g.global) return (double)(g.N * g.C * g.IH * g.IW);
    return (double)(g.N * g.C * g.OH * g.OW) * (double)(g.K[0] * g.K[1]);
}

const ib__kernel_template ib__template_cuda_pool2d = {
    .name = "cuda_pool2d",
    .supports = supports,
    .preferred_layout = ib__prefer_plain_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = NULL,
    .emit = emit,
    .flops = flops,
    .launch = launch,
};
