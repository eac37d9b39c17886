/* Kernel template pool2d: MaxPool / AveragePool (pads, strides, dilations, ceil_mode,
 * count_include_pad, auto_pad) and GlobalAveragePool / GlobalMaxPool on NCHW[b]c input,
 * a vector of b channels per pixel. Windowed pools write NCHWc; global pools write
 * NCHWc [N, C, 1, 1] or PLAIN [N, C, 1, 1] (whichever the output buffer has), so a
 * classifier head can read plain features. The valid tap range of every output row and
 * column (and the average's divisor) is computed at compile time into small tables. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"
#include "codegen/templates/conv2d_nchwc.h"
#include "codegen/templates/pool2d.h"



static const ib__pbuf *buf_of(const ib__plan *plan, int32_t id) {
    return (id >= 0 && id < plan->n_bufs) ? &plan->bufs[id] : NULL;
}

static ib_status read2(const ib__node *n, const char *name, int32_t want, int64_t dflt,
                       int64_t *out) {
    int32_t c = 0;
    const int64_t *v = NULL;
    IB_TRY(ib__attr_ints(n, name, &c, &v));
    for (int32_t i = 0; i < want; i++) out[i] = c ? (i < c ? v[i] : dflt) : dflt;
    if (c && c != want)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: %s needs %d values", ib__node_label(n), name,
                         (int)want);
    return IB_OK;
}

/* Taps t in [0, k) with 0 <= s + t*d < in: [*lo, *hi). */
static void tap_range(int64_t s, int64_t d, int64_t k, int64_t in, int64_t *lo, int64_t *hi) {
    int64_t l = s >= 0 ? 0 : (-s + d - 1) / d;
    int64_t h = in - 1 - s >= 0 ? (in - 1 - s) / d + 1 : 0;
    if (h > k) h = k;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

ib_status ib__pool_geom_get(const ib__plan *plan, const ib__pkernel *k, ib__pool_geom *g) {
    if (k->n_nodes < 1 || !k->nodes || !k->nodes[0] || k->n_in < 1 || k->n_out < 1)
        return ib__error(IB_ERR_UNSUPPORTED, "pool kernel without an anchor");
    const ib__node *n = k->nodes[0];
    const ib__pbuf *x = buf_of(plan, k->in[0]), *y = buf_of(plan, k->out[0]);
    if (!x || !y || x->rank != 4 || y->rank != 4)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: not a 2-D pool", ib__node_label(n));
    memset(g, 0, sizeof *g);
    g->global = n->op == IB_OP_GLOBAL_AVERAGE_POOL || n->op == IB_OP_GLOBAL_MAX_POOL;
    g->is_max = n->op == IB_OP_MAX_POOL || n->op == IB_OP_GLOBAL_MAX_POOL;
    if (!g->global && n->op != IB_OP_MAX_POOL && n->op != IB_OP_AVERAGE_POOL)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: not a pool", ib__node_label(n));
    g->N = x->dims[0];
    g->C = x->dims[1];
    g->IH = x->dims[2];
    g->IW = x->dims[3];
    g->OH = y->dims[2];
    g->OW = y->dims[3];
    g->B = x->block;
    for (int32_t i = 0; i < 4; i++)
        if (x->dims[i] <= 0 || y->dims[i] <= 0 || x->dims[i] > (1 << 24) || y->dims[i] > 65536)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: empty or huge dims", ib__node_label(n));
    if (y->dims[0] != g->N || y->dims[1] != g->C)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: batch/channel mismatch", ib__node_label(n));
    if (g->global) {
        if (g->OH != 1 || g->OW != 1)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: global pool output not 1x1", ib__node_label(n));
        return IB_OK;
    }
    if (n->n_outputs > 1 && n->outputs[1])
        return ib__error(IB_ERR_UNSUPPORTED, "%s: Indices output", ib__node_label(n));
    int64_t pads[4], ceil_mode = 0, cip = 0, so = 0;
    IB_TRY(read2(n, "kernel_shape", 2, -1, g->K));
    IB_TRY(read2(n, "strides", 2, 1, g->S));
    IB_TRY(read2(n, "dilations", 2, 1, g->D));
    IB_TRY(read2(n, "pads", 4, 0, pads));
    IB_TRY(ib__attr_int(n, "ceil_mode", 0, &ceil_mode));
    IB_TRY(ib__attr_int(n, "count_include_pad", 0, &cip));
    IB_TRY(ib__attr_int(n, "storage_order", 0, &so));
    g->cip = cip != 0 && !g->is_max;
    const char *ap = NULL;
    IB_TRY(ib__attr_string(n, "auto_pad", "NOTSET", &ap));
    int64_t in[2] = {g->IH, g->IW}, out[2] = {g->OH, g->OW};
    for (int32_t i = 0; i < 2; i++) {
        if (g->K[i] < 1 || g->K[i] > 4096 || g->S[i] < 1 || g->S[i] > 4096 || g->D[i] < 1 ||
            g->D[i] > 4096 || pads[i] < 0 || pads[i + 2] < 0 || pads[i] > 4096 || pads[i + 2] > 4096)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: bad window attributes", ib__node_label(n));
        int64_t ext = (g->K[i] - 1) * g->D[i] + 1, o;
        if (strcmp(ap, "SAME_UPPER") == 0 || strcmp(ap, "SAME_LOWER") == 0) {
            o = (in[i] + g->S[i] - 1) / g->S[i];
            int64_t total = (o - 1) * g->S[i] + ext - in[i];
            if (total < 0) total = 0;
            g->PB[i] = ap[5] == 'U' ? total / 2 : total - total / 2;
            g->PE[i] = total - g->PB[i];
        } else {
            if (strcmp(ap, "VALID") == 0) {
                g->PB[i] = g->PE[i] = 0;
            } else if (strcmp(ap, "NOTSET") == 0 || ap[0] == '\0') {
                g->PB[i] = pads[i];
                g->PE[i] = pads[i + 2];
            } else {
                return ib__error(IB_ERR_UNSUPPORTED, "%s: auto_pad %s", ib__node_label(n), ap);
            }
            int64_t span = in[i] + g->PB[i] + g->PE[i] - ext;
            if (span < 0) return ib__error(IB_ERR_UNSUPPORTED, "%s: window too large", ib__node_label(n));
            o = ceil_mode ? (span + g->S[i] - 1) / g->S[i] + 1 : span / g->S[i] + 1;
            if (ceil_mode && (o - 1) * g->S[i] >= in[i] + g->PB[i]) o--;
        }
        if (o != out[i])
            return ib__error(IB_ERR_UNSUPPORTED, "%s: output dims do not match", ib__node_label(n));
    }
    return IB_OK;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ib__pool_geom g;
    if (k->n_in != 1 || k->n_out != 1 || ib__pool_geom_get(plan, k, &g) != IB_OK) {
        ib__error_clear();
        return false;
    }
    const ib__pbuf *x = buf_of(plan, k->in[0]), *y = buf_of(plan, k->out[0]);
    int32_t B = x->block;
    if (x->layout != IB_LAYOUT_NCHWC || (B != 4 && B != 8 && B != 16) ||
        B * 32 > plan->target.vector_bits || x->dtype != IB_DTYPE_FLOAT32 ||
        y->dtype != IB_DTYPE_FLOAT32)
        return false;
    bool plain_out = y->layout == IB_LAYOUT_PLAIN;
    if (!(y->layout == IB_LAYOUT_NCHWC && y->block == B) && !(plain_out && g.global)) return false;
    if (k->n_epi < 0 || k->n_epi > IB_MAX_EPILOGUE) return false;
    for (int32_t s = 0; s < k->n_epi; s++) {
        const ib__epilogue_step *e = &k->epi[s];
        if (!ib__epilogue_supports_op(e->op, e->kind)) return false;
        if (e->kind != IB_EPI_BINARY) continue;
        const ib__pbuf *ob = buf_of(plan, e->operand_buf);
        if (!ob || ob->dtype != IB_DTYPE_FLOAT32) return false;
        if (e->operand_kind == IB_EPI_PER_CHANNEL) {
            int64_t cp = (g.C + B - 1) / B * B;
            bool packed = ob->nbytes >= (size_t)cp * sizeof(float) &&
                          (ob->layout == IB_LAYOUT_PACKED ||
                           !(e->op == IB_OP_DIV && !e->operand_first));
            bool constant = ob->value && ob->value->constant &&
                            ob->value->constant->dtype == IB_DTYPE_FLOAT32 &&
                            ib_tensor_element_count(ob->value->constant) == g.C;
            if (!packed && !constant) return false;
        } else if (e->operand_kind == IB_EPI_FULL) {
            if (plain_out || ob->layout != IB_LAYOUT_NCHWC || ob->block != B || ob->rank != 4)
                return false;
            for (int32_t d = 0; d < 4; d++)
                if (ob->dims[d] != y->dims[d]) return false;
            if (e->op == IB_OP_DIV && !e->operand_first && g.C % B) return false;
        }
    }
    return true;
}

static ib__layout preferred_layout(const ib__plan *plan, const ib__node *anchor,
                                   const ib__target *target, int32_t *block) {
    return ib__conv_nchwc_preferred_layout(plan, anchor, target, block);
}

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    (void)plan;
    (void)k;
    ib__knobs_set(knobs, "hw_accumulators", 4); /* global pools: partial sums in flight */
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    (void)plan;
    (void)k;
    int64_t a = ib__knobs_get(knobs, "hw_accumulators", 4);
    return a >= 1 && a <= 8;
}

static ib_status pack_weights(ib__plan *plan, ib__pkernel *k) {
    ib__pool_geom g;
    IB_TRY(ib__pool_geom_get(plan, k, &g));
    return ib__conv_pad_channel_operands(plan, k, g.C, g.B);
}

static void emit_table(ib__sb *sb, const char *fn, const char *name, const int64_t *v, int64_t n) {
    ib__sb_printf(sb, "static const int32_t %s_%s[%lld] = {", fn, name, (long long)n);
    for (int64_t i = 0; i < n; i++) ib__sb_printf(sb, "%s%lld", i ? ", " : "", (long long)v[i]);
    ib__sb_printf(sb, "};\n");
}

static ib_status emit_global(const ib__plan *plan, const ib__pkernel *k, const ib__pool_geom *g,
                             ib__sb *sb) {
    const char *fn = k->fn_name;
    const int32_t B = g->B;
    const int64_t CB = (g->C + B - 1) / B, HW = g->IH * g->IW;
    int64_t na = ib__knobs_get(&k->knobs, "hw_accumulators", 4);
    if (na > HW) na = HW;
    bool plain = plan->bufs[k->out[0]].layout == IB_LAYOUT_PLAIN;
    const char *op = g->is_max ? "ib_max" : NULL;
    ib__sb_line(sb, "/* %s: global %s pool %lldx%lldx%lldx%lld, NCHW%dc -> %s */", fn,
                g->is_max ? "max" : "average", (long long)g->N, (long long)g->C, (long long)g->IH,
                (long long)g->IW, B, plain ? "plain" : "NCHWc");
    ib__sb_line(sb, "static void %s_body(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const float *x = (const float *)args[0];");
    ib__sb_line(sb, "float *y = (float *)args[1];");
    ib__sb_line(sb, "for (int64_t ncb = begin; ncb < end; ncb++) {");
    sb->indent += 4;
    ib__sb_line(sb, "const float *xc = x + ncb * %lld;", (long long)(HW * B));
    ib__sb_line(sb, "const int64_t cb = ncb %% %lld, n = ncb / %lld;", (long long)CB, (long long)CB);
    ib__sb_line(sb, "(void)n; (void)cb;");
    for (int64_t a = 0; a < na; a++)
        ib__sb_line(sb, "ibv%df a%lld = ib_load%d(xc + %lld);", B, (long long)a, B, (long long)(a * B));
    ib__sb_line(sb, "int64_t p = %lld;", (long long)na);
    ib__sb_line(sb, "for (; p + %lld <= %lld; p += %lld) {", (long long)na, (long long)HW, (long long)na);
    for (int64_t a = 0; a < na; a++) {
        if (op)
            ib__sb_line(sb, "    a%lld = ib_max%d(a%lld, ib_load%d(xc + (p + %lld) * %d));",
                        (long long)a, B, (long long)a, B, (long long)a, B);
        else
            ib__sb_line(sb, "    a%lld = a%lld + ib_load%d(xc + (p + %lld) * %d);", (long long)a,
                        (long long)a, B, (long long)a, B);
    }
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "for (; p < %lld; p++)", (long long)HW);
    if (op)
        ib__sb_line(sb, "    a0 = ib_max%d(a0, ib_load%d(xc + p * %d));", B, B, B);
    else
        ib__sb_line(sb, "    a0 = a0 + ib_load%d(xc + p * %d);", B, B);
    for (int64_t a = 1; a < na; a++) {
        if (op)
            ib__sb_line(sb, "a0 = ib_max%d(a0, a%lld);", B, (long long)a);
        else
            ib__sb_line(sb, "a0 = a0 + a%lld;", (long long)a);
    }
    if (!g->is_max) ib__sb_line(sb, "a0 = a0 / %.1ff;", (double)HW);
    const int32_t first_arg = k->n_in + k->n_out;
    char ch[32], el[32];
    snprintf(ch, sizeof ch, "cb * %d", B);
    snprintf(el, sizeof el, "ncb * %d", B);
    IB_TRY(ib__emit_epilogue(sb, k, first_arg, "a0", B, ch, true, el));
    if (plain) {
        ib__sb_line(sb, "float lanes[%d];", B);
        ib__sb_line(sb, "ib_store%d(lanes, a0);", B);
        ib__sb_line(sb, "for (int l = 0; l < %d && cb * %d + l < %lld; l++) y[n * %lld + cb * %d + l] = lanes[l];",
                    B, B, (long long)g->C, (long long)g->C, B);
    } else {
        ib__sb_line(sb, "ib_store%d(y + ncb * %d, a0);", B, B);
    }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);",
                (long long)(g->N * CB), fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    ib__pool_geom g;
    IB_TRY(ib__pool_geom_get(plan, k, &g));
    if (g.global) return emit_global(plan, k, &g, sb);
    const char *fn = k->fn_name;
    const int32_t B = g.B;
    const int64_t CB = (g.C + B - 1) / B;
    int64_t *tab = ib__malloc(sizeof(int64_t) * (size_t)(3 * (g.OH > g.OW ? g.OH : g.OW)));
    if (!tab) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory emitting %s", fn);
    int64_t out[2] = {g.OH, g.OW}, in[2] = {g.IH, g.IW};
    const char *nm[2][3] = {{"hlo", "hhi", "hcnt"}, {"wlo", "whi", "wcnt"}};
    for (int32_t d = 0; d < 2; d++) {
        int64_t n = out[d];
        for (int64_t o = 0; o < n; o++) {
            int64_t s = o * g.S[d] - g.PB[d], lo, hi, plo, phi;
            tap_range(s, g.D[d], g.K[d], in[d], &lo, &hi);
            tab[o] = lo;
            tab[n + o] = hi;
            if (g.cip) {
                tap_range(s + g.PB[d], g.D[d], g.K[d], in[d] + g.PB[d] + g.PE[d], &plo, &phi);
                tab[2 * n + o] = phi - plo;
            } else {
                tab[2 * n + o] = hi - lo;
            }
        }
        for (int32_t t = 0; t < 3; t++) emit_table(sb, fn, nm[d][t], tab + t * n, n);
    }
    ib__free(tab);
    ib__sb_line(sb, "/* %s: %s pool %lldx%lldx%lldx%lld -> %lldx%lld, kernel %lldx%lld, stride %lldx%lld, "
                    "dilation %lldx%lld, pads %lld,%lld; NCHW%dc */",
                fn, g.is_max ? "max" : "average", (long long)g.N, (long long)g.C, (long long)g.IH,
                (long long)g.IW, (long long)g.OH, (long long)g.OW, (long long)g.K[0],
                (long long)g.K[1], (long long)g.S[0], (long long)g.S[1], (long long)g.D[0],
                (long long)g.D[1], (long long)g.PB[0], (long long)g.PB[1], B);
    ib__sb_line(sb, "static void %s_body(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const float *x = (const float *)args[0];");
    ib__sb_line(sb, "float *y = (float *)args[1];");
    ib__sb_line(sb, "for (int64_t it = begin; it < end; it++) {");
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t oh = it %% %lld, ncb = it / %lld, cb = ncb %% %lld;", (long long)g.OH,
                (long long)g.OH, (long long)CB);
    ib__sb_line(sb, "(void)cb;");
    ib__sb_line(sb, "const float *xc = x + ncb * %lld;", (long long)(g.IH * g.IW * B));
    ib__sb_line(sb, "const int64_t ybase = (ncb * %lld + oh) * %lld;", (long long)g.OH,
                (long long)(g.OW * B));
    ib__sb_line(sb, "const int64_t hs = oh * %lld - %lld, hlo = %s_hlo[oh], hhi = %s_hhi[oh];",
                (long long)g.S[0], (long long)g.PB[0], fn, fn);
    ib__sb_line(sb, "for (int64_t ow = 0; ow < %lld; ow++) {", (long long)g.OW);
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t ws = ow * %lld - %lld, wlo = %s_wlo[ow], whi = %s_whi[ow];",
                (long long)g.S[1], (long long)g.PB[1], fn, fn);
    ib__sb_line(sb, "ibv%df acc = ib_splat%d(%s);", B, B, g.is_max ? "-__builtin_inff()" : "0.0f");
    ib__sb_line(sb, "for (int64_t kh = hlo; kh < hhi; kh++) {");
    ib__sb_line(sb, "    const float *row = xc + ((hs + kh * %lld) * %lld + ws) * %d;", (long long)g.D[0],
                (long long)g.IW, B);
    ib__sb_line(sb, "    for (int64_t kw = wlo; kw < whi; kw++)");
    if (g.is_max)
        ib__sb_line(sb, "        acc = ib_max%d(acc, ib_load%d(row + kw * %lld));", B, B,
                    (long long)(g.D[1] * B));
    else
        ib__sb_line(sb, "        acc = acc + ib_load%d(row + kw * %lld);", B, (long long)(g.D[1] * B));
    ib__sb_line(sb, "}");
    if (!g.is_max) {
        ib__sb_line(sb, "const int32_t div = %s_hcnt[oh] * %s_wcnt[ow];", fn, fn);
        ib__sb_line(sb, "acc = div > 0 ? acc / (float)div : ib_splat%d(0.0f);", B);
    }
    char ch[32], el[48];
    snprintf(ch, sizeof ch, "cb * %d", B);
    snprintf(el, sizeof el, "ybase + ow * %d", B);
    IB_TRY(ib__emit_epilogue(sb, k, k->n_in + k->n_out, "acc", B, ch, true, el));
    ib__sb_line(sb, "ib_store%d(y + ybase + ow * %d, acc);", B, B);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);",
                (long long)(g.N * CB * g.OH), fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

static double flops(const ib__plan *plan, const ib__pkernel *k) {
    ib__pool_geom g;
    if (ib__pool_geom_get(plan, k, &g) != IB_OK) {
        ib__error_clear();
        return 0;
    }
    if (g.global) return (double)g.N * (double)g.C * (double)(g.IH * g.IW);
    return (double)g.N * (double)g.C * (double)(g.OH * g.OW) * (double)(g.K[0] * g.K[1]);
}

const ib__kernel_template ib__template_pool2d = {
    .name = "pool2d",
    .supports = supports,
    .preferred_layout = preferred_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = pack_weights,
    .emit = emit,
    .flops = flops,
};
