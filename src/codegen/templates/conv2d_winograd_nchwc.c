/* Kernel template conv2d_winograd_nchwc: 3x3 stride-1 convolution on NCHW[b]c by the
 * Winograd minimal-filtering algorithm F(m x m, 3 x 3) (Lavin & Gray, 2015), with a
 * folded BatchNormalization and a fused epilogue.
 *
 * Each m x m output tile is computed from an (m+2) x (m+2) input tile as
 *   Y = A^T [ sum over input channels (G g G^T) . (B^T d B) ] A
 * so the (m+2)^2 element-wise products of the transformed tiles become (m+2)^2
 * independent GEMMs (tiles x input channels times input channels x output channels):
 * F(2x2, 3x3) does 16 multiplies per 4 outputs where a direct convolution does 36, and
 * F(4x4, 3x3) 36 per 16 (the knob tile_size picks m). The weights are transformed
 * (U = G g G^T) at compile time.
 *
 * The kernel runs in two parallel loops:
 *   1. input transform: V[xi][tile][ic] = (B^T d B)[xi] of every tile, channels in
 *      vector lanes, into a scratch buffer of the session arena;
 *   2. per item (a group of oc_block output-channel vectors and tile_blocks x tile_block
 *      tiles):
 *      for each of the (m+2)^2 positions, register-blocked GEMMs of tile_block tiles x
 *      oc_block vectors over all input channels (one broadcast of V and oc_block vector
 *      loads of U per step, as in conv2d_nchwc), into a stack tile; then the output
 *      transform, bias and epilogue of the item's tiles, stored as NCHWc.
 * Precision: F(4x4)'s usual points 0, +-1, +-2 lose 12x more than F(2x2) (max error
 * 4.1e-6 of the output's scale on 256 channels, against 3.3e-7); the points 0, +-1,
 * 1/2, -2 lose 5x (1.8e-6). ResNet-50 with F(4x4) on every 3x3 conv still ends within
 * 3.3e-7 of PyTorch's logits, as with F(2x2) alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "codegen/emit_common.h"
#include "codegen/templates/conv2d_nchwc.h"
#include "ops/ops.h"

/* One output tile size m: F(m x m, 3 x 3), Y = AT [(G g G^T) . (BT d BT^T)] AT^T, on an
 * a x a input tile (a = m + 2, a^2 positions). */
typedef struct wino_tile {
    int m, a;
    const double *bt, *g, *at; /* row-major: a x a, a x 3, m x a */
} wino_tile;
enum { MAX_A = 6 };

/* F(2x2, 3x3) on the points 0, 1, -1 (and infinity). */
static const double k_bt2[] = {1, 0, -1, 0, 0, 1, 1, 0, 0, -1, 1, 0, 0, 1, 0, -1};
static const double k_g2[] = {1, 0, 0, 0.5, 0.5, 0.5, 0.5, -0.5, 0.5, 0, 0, 1};
static const double k_at2[] = {1, 1, 1, 0, 0, 1, -1, -1};
/* F(4x4, 3x3) on the points 0, 1, -1, 1/2, -2 (and infinity), Cook-Toom: the transforms
 * hold only values exact in binary but G's fifteenths, applied in double at compile time. */
static const double k_bt4[] = {
    1, -1.5, -2,   1.5,  1,   0, /* */
    0, -1,   0.5,  2.5,  1,   0, /* */
    0, 1,    -2.5, 0.5,  1,   0, /* */
    0, -2,   -1,   2,    1,   0, /* */
    0, 0.5,  -1,   -0.5, 1,   0, /* */
    0, 1,    -1.5, -2,   1.5, 1};
static const double k_g4[] = {
    1,             0,            0,           /* */
    1.0 / 3,       1.0 / 3,      1.0 / 3,     /* */
    -1.0 / 3,      1.0 / 3,      -1.0 / 3,    /* */
    -16.0 / 15,    -8.0 / 15,    -4.0 / 15,   /* */
    1.0 / 15,      -2.0 / 15,    4.0 / 15,    /* */
    0,             0,            1};
static const double k_at4[] = {
    1, 1, 1,  1,     1,  0, /* */
    0, 1, -1, 0.5,   -2, 0, /* */
    0, 1, 1,  0.25,  4,  0, /* */
    0, 1, -1, 0.125, -8, 1};
static const wino_tile k_f2 = {2, 4, k_bt2, k_g2, k_at2};
static const wino_tile k_f4 = {4, 6, k_bt4, k_g4, k_at4};

/* INFERBOOSTER_WINOGRAD=0 keeps every convolution direct (for comparisons, and as a way
 * out should a model need the direct kernels' rounding); =always takes every
 * convolution the kernel can do, worth it or not (tests of small shapes). */
int ib__winograd_mode(void) {
    const char *e = getenv("INFERBOOSTER_WINOGRAD");
    if (!e || !e[0]) return 1;
    static const char *const off[] = {"0", "off", "no", "false"};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++)
        if (strcasecmp(e, off[i]) == 0) return 0;
    return strcasecmp(e, "always") == 0 ? 2 : 1;
}

int ib__winograd_tile_override(void) {
    const char *e = getenv("INFERBOOSTER_WINOGRAD_TILE");
    if (!e) return 0;
    return strcmp(e, "2") == 0 ? 2 : strcmp(e, "4") == 0 ? 4 : 0;
}

static const ib__pbuf *buf_of(const ib__plan *plan, int32_t id) {
    return (id >= 0 && id < plan->n_bufs) ? &plan->bufs[id] : NULL;
}

typedef struct wgeom {
    ib__conv_geom g;
    const wino_tile *wt;
    int64_t M, A, A2;      /* output tile, input tile, positions */
    int64_t TH, TW, T;     /* tiles per column and row, in all (batch included) */
    int64_t ICB, OCB, ICP; /* channel blocks; ICP: padded input channels */
} wgeom;

/* The tile counts and padded channels of the geometry in w->g, for tiles of m x m. */
static void wgeom_tiles(wgeom *w, int64_t m) {
    const ib__conv_geom *g = &w->g;
    w->wt = m == 4 ? &k_f4 : &k_f2;
    w->M = w->wt->m;
    w->A = w->wt->a;
    w->A2 = w->A * w->A;
    w->TH = (g->OH + w->M - 1) / w->M;
    w->TW = (g->OW + w->M - 1) / w->M;
    w->T = g->N * w->TH * w->TW;
    w->ICB = (g->IC + g->B - 1) / g->B;
    w->OCB = (g->OC + g->B - 1) / g->B;
    w->ICP = w->ICB * g->B;
}

/* The output tile that should serve the geometry in w->g.
 * F(4x4) does 2.25 multiplies per output against F(2x2)'s 4 and its workspace is 2.25x
 * the input against 4x, but its transformed weights are 4x the direct ones against 1.8x
 * (streamed from DRAM inside a model), and an output side that is not a multiple of 4
 * wastes part of the edge tiles. So it serves the convolutions with many tiles per
 * weight. ResNet-50's 3x3 convs alone (bench, best of 300): stage 1 (56x56, 64 ch)
 * 0.375 -> 0.23 ms, stage 2 (28x28, 128) 0.357 -> 0.305; stage 3 (14x14, 256: 16 tiles,
 * a quarter of them waste, U 9.4 MB) 0.35 either way; stage 4 (7x7, 512) 0.42 -> 0.49. */
static int64_t pick_tile(const wgeom *w) {
    int o = ib__winograd_tile_override();
    if (o) return o;
    wgeom w4 = *w;
    wgeom_tiles(&w4, 4);
    const ib__conv_geom *g = &w4.g;
    double waste = 1.0 - (double)(g->OH * g->OW) / (double)(w4.TH * w4.TW * w4.M * w4.M);
    int64_t u4_bytes = w4.A2 * w4.OCB * w4.ICP * (int64_t)g->B * (int64_t)sizeof(float);
    return w4.T >= 49 && waste <= 0.15 && u4_bytes <= (4 << 20) ? 4 : 2;
}

/* The geometry of kernel k for the tile size of its knobs (none: the one pick_tile
 * chooses). */
static bool wgeom_get(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs, wgeom *w) {
    if (ib__conv_geom_get(plan, k, &w->g) != IB_OK) {
        ib__error_clear();
        return false;
    }
    int64_t m = knobs ? ib__knobs_get(knobs, "tile_size", 0) : 0;
    if (m == 0) m = pick_tile(w);
    if (m != 2 && m != 4) return false;
    wgeom_tiles(w, m);
    return true;
}

/* Whether Winograd should replace the direct kernel. Its transformed weights are
 * (m+2)^2/9 = 1.8x (F(2x2)) or 4x (F(4x4)) the direct ones and each is reused once per
 * tile, so with few tiles the kernel streams more bytes than the direct one saves in
 * FMAs; and a few channels leave the transforms, not the GEMMs, as the work. ResNet-50's last stage at batch 1
 * (16 tiles of 512x512 channels, weights from DRAM) still gained: layer4.1's 3x3 conv
 * 0.78 -> 0.63 ms in the model (bench --profile). */
static bool worth_it(const wgeom *w) {
    /* The workspace holds (m+2)^2/m^2 = 4x (F(2x2)) or 2.25x (F(4x4)) the input: not
     * beyond 64 MiB (ResNet-50's stage 1 at batch 64 would take 205 MB more arena with
     * F(2x2)). */
    int64_t v_bytes = w->A2 * w->T * w->ICP * (int64_t)sizeof(float);
    return w->ICB * w->g.B >= 32 && w->OCB * w->g.B >= 32 && w->T >= 16 && v_bytes <= (64 << 20);
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    int mode = ib__winograd_mode();
    wgeom w;
    if (mode == 0 || !ib__conv_nchwc_supports_common(plan, k, &w.g)) return false;
    const ib__conv_geom *g = &w.g;
    if (g->group != 1 || g->KH != 3 || g->KW != 3 || g->SH != 1 || g->SW != 1 || g->DH != 1 ||
        g->DW != 1 || g->Bi != g->B || g->PT > 2 || g->PL > 2)
        return false;
    wgeom_tiles(&w, pick_tile(&w));
    return mode == 2 || worth_it(&w);
}

/* ---- knobs -------------------------------------------------------------------------- */

/* Bytes of the stack tile of one item: every position's GEMM result for its tiles. */
static int64_t item_tile_bytes(const wgeom *w, int64_t st, int64_t no) {
    return w->A2 * st * no * w->g.B * (int64_t)sizeof(float);
}

/* The stack tile: a loop may run on the caller's thread, whose stack may be small (musl's
 * 128 KiB); gemm's scratch has the same bound. */
enum { MAX_ITEM_BYTES = 96 * 1024 };

static void default_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    wgeom w;
    if (!wgeom_get(plan, k, NULL, &w)) return;
    const ib__target *t = &plan->target;
    int32_t regs = t->vector_regs > 0 ? t->vector_regs : 16;
    /* the register tile: the same cost as conv2d_nchwc's (FMAs over two pipes, loads
     * over the load ports, a floor for the FMA latency), tails costing a full tile */
    const double lat_floor = regs >= 32 ? 10.0 : 6.0;
    double best = 1e300;
    int64_t bnt = 1, bno = 1;
    for (int64_t no = 1; no <= 4 && no <= w.OCB; no++) {
        /* the accumulators, the no weight vectors and the broadcast: with more than one
         * weight vector the broadcast is reused and needs a register of its own (GCC
         * spilled an accumulator of a 7x4 tile, and the loop ran at the latency of the
         * store-to-load chain through the stack) */
        int64_t budget = regs - no - (regs < 32 || no > 1 ? 1 : 0);
        for (int64_t nt = 1; nt <= w.T && nt * no <= budget; nt++) {
            double fma = (double)(nt * no) / 2.0, ld = (double)(nt + no) / 1.67;
            double per = fma > ld ? fma : ld;
            if (per < lat_floor) per = lat_floor;
            double cost = (double)((w.T + nt - 1) / nt) * (double)((w.OCB + no - 1) / no) * per;
            if (cost < best * 0.999) {
                best = cost;
                bnt = nt;
                bno = no;
            }
        }
    }
    /* tiles per item: whole register tiles, as many as keep >= 4 items per core and the
     * stack tile within a quarter of L2 (it is written once and read once per item) */
    int64_t cores = t->num_cores > 0 ? t->num_cores : 1;
    int64_t l2 = t->l2_bytes > 0 ? t->l2_bytes : 1 << 20;
    int64_t ocg = (w.OCB + bno - 1) / bno, nb = 1;
    for (int64_t b = 2; (b - 1) * bnt < w.T; b++) {
        int64_t s = b * bnt, items = ocg * ((w.T + s - 1) / s);
        if (items < 4 * cores || item_tile_bytes(&w, s, bno) > l2 / 4 ||
            item_tile_bytes(&w, s, bno) > MAX_ITEM_BYTES)
            break;
        nb = b;
    }
    ib__knobs_set(knobs, "tile_size", w.M);
    ib__knobs_set(knobs, "tile_block", bnt);
    ib__knobs_set(knobs, "oc_block", bno);
    ib__knobs_set(knobs, "tile_blocks", nb);
}

static bool knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    wgeom w;
    if (!wgeom_get(plan, k, knobs, &w)) return false;
    int64_t nt = ib__knobs_get(knobs, "tile_block", 0), no = ib__knobs_get(knobs, "oc_block", 0);
    int64_t nb = ib__knobs_get(knobs, "tile_blocks", 0);
    if (nt < 1 || nt > 32 || no < 1 || no > 8 || no > w.OCB || nt * no > 40) return false;
    if (nb < 1 || (nb - 1) * nt >= w.T) return false;
    return item_tile_bytes(&w, nb * nt, no) <= MAX_ITEM_BYTES;
}

/* ---- weights ------------------------------------------------------------------------ */

/* U[xi][ocb][ic][ob] = (G g G^T)[xi] of output channel ocb*B+ob, input channel ic, with
 * the BatchNormalization scale folded in; channels past OC and IC are zero. Then a
 * TEMP buffer for V, the transformed input, is appended as input 3. */
static ib_status pack_weights(ib__plan *plan, ib__pkernel *k) {
    wgeom w;
    if (!wgeom_get(plan, k, &k->knobs, &w))
        return ib__error(IB_ERR_INTERNAL, "winograd: no geometry");
    const ib__conv_geom *g = &w.g;
    const ib__pbuf *wb = buf_of(plan, k->in[1]);
    if (!wb || wb->layout == IB_LAYOUT_PACKED)
        return ib__error(IB_ERR_INTERNAL, "%s: weights packed twice", ib__node_label(k->nodes[0]));
    const int32_t B = g->B;
    int64_t total = w.A2 * w.OCB * w.ICP * B;
    float *pu = ib__calloc((size_t)total, sizeof(float));
    float *scale = ib__malloc((size_t)g->OC * sizeof(float));
    float *shift = ib__malloc((size_t)g->OC * sizeof(float));
    ib_status st = IB_OK;
    if (!pu || !scale || !shift) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory packing %s", ib__node_label(k->nodes[0]));
        goto done;
    }
    if ((st = ib__conv_bn_fold(k, g->OC, scale, shift)) != IB_OK) goto done;
    const float *src = wb->value->constant->data;
    for (int64_t o = 0; o < g->OC; o++)
        for (int64_t i = 0; i < g->IC; i++) {
            const float *f = src + (o * g->IC + i) * 9;
            const double *G = w.wt->g;
            double gg[MAX_A][3]; /* G g */
            for (int r = 0; r < w.A; r++)
                for (int c = 0; c < 3; c++)
                    gg[r][c] = G[r * 3] * f[c] + G[r * 3 + 1] * f[3 + c] + G[r * 3 + 2] * f[6 + c];
            for (int r = 0; r < w.A; r++)
                for (int c = 0; c < w.A; c++) {
                    double u = gg[r][0] * G[c * 3] + gg[r][1] * G[c * 3 + 1] + gg[r][2] * G[c * 3 + 2];
                    int64_t xi = r * w.A + c;
                    pu[((xi * w.OCB + o / B) * w.ICP + i) * B + o % B] = (float)(u * scale[o]);
                }
        }
    if ((st = ib__conv_add_packed_weights(plan, k, g->OC, B, pu, (size_t)total * sizeof(float),
                                          scale, shift)) != IB_OK)
        goto done;
    ib__pbuf d;
    memset(&d, 0, sizeof d);
    d.kind = IB_BUF_TEMP;
    d.dtype = IB_DTYPE_FLOAT32;
    d.rank = 1;
    d.dims[0] = w.A2 * w.T * w.ICP;
    d.layout = IB_LAYOUT_PLAIN;
    d.first_use = d.last_use = -1;
    d.alias_of = -1;
    d.scratch = true;
    int32_t vid;
    if ((st = ib__plan_add_buf(plan, &d, &vid)) != IB_OK) goto done;
    k->in[3] = vid;
    k->n_in = 4;
done:
    ib__free(pu);
    ib__free(scale);
    ib__free(shift);
    return st;
}

/* ---- emission ----------------------------------------------------------------------- */

/* Emits dst[i][j] = sum_r sum_c L[i][r] src[r][c] R[j][c] for vectors named
 * <src>r_c, as the two products with every zero left out and +-1 as adds. */
static void emit_coef_sum(ib__sb *sb, int32_t B, const char *dst, const double *row,
                          int32_t n, const char *const *terms) {
    char line[1024];
    int len = snprintf(line, sizeof line, "const ibv%df %s = ", B, dst);
    bool first = true;
    for (int32_t r = 0; r < n; r++) {
        double c = row[r];
        if (c == 0) continue;
        const char *sign = c < 0 ? "-" : first ? "" : "+";
        double a = c < 0 ? -c : c;
        char lit[48];
        if (a == 1)
            len += snprintf(line + len, sizeof line - (size_t)len, "%s %s ", sign, terms[r]);
        else
            len += snprintf(line + len, sizeof line - (size_t)len, "%s %s * %s ", sign,
                            ib__float_literal(lit, sizeof lit, (float)a), terms[r]);
        first = false;
    }
    if (first) snprintf(line + len, sizeof line - (size_t)len, "ib_splat%d(0.0f)", B);
    size_t l = strlen(line);
    while (l > 0 && line[l - 1] == ' ') line[--l] = '\0';
    ib__sb_line(sb, "%s;", line);
}

/* Emits the 2-D transform L . S . R^T of the vectors <in>r_c (rows x cols) into
 * <out>i_j, L: li x rows, R: rj x cols. */
static void emit_transform(ib__sb *sb, int32_t B, const char *in, const char *out, int32_t rows,
                           int32_t cols, const double *L, int32_t li, const double *R, int32_t rj) {
    char names[MAX_A][MAX_A][24], dst[32];
    const char *terms[MAX_A];
    /* T = L . S: t<i>_<c> */
    for (int32_t i = 0; i < li; i++)
        for (int32_t c = 0; c < cols; c++) {
            for (int32_t r = 0; r < rows; r++) {
                snprintf(names[r][c], sizeof names[r][c], "%s%d_%d", in, (int)r, (int)c);
                terms[r] = names[r][c];
            }
            snprintf(dst, sizeof dst, "%st%d_%d", out, (int)i, (int)c);
            emit_coef_sum(sb, B, dst, L + i * rows, rows, terms);
        }
    /* out = T . R^T */
    for (int32_t i = 0; i < li; i++)
        for (int32_t j = 0; j < rj; j++) {
            for (int32_t c = 0; c < cols; c++) {
                snprintf(names[0][c], sizeof names[0][c], "%st%d_%d", out, (int)i, (int)c);
                terms[c] = names[0][c];
            }
            snprintf(dst, sizeof dst, "%s%d_%d", out, (int)i, (int)j);
            emit_coef_sum(sb, B, dst, R + j * cols, cols, terms);
        }
}

typedef struct emit_ctx {
    const ib__pkernel *k;
    ib__sb *sb;
    wgeom w;
    int32_t B;
    int64_t nt, no, st;
    const char *fn;
} emit_ctx;

/* Phase 1: <fn>_in(args, begin, end) over (image, tile row, input block). */
static void emit_input_transform(emit_ctx *c) {
    ib__sb *sb = c->sb;
    const ib__conv_geom *g = &c->w.g;
    const int32_t B = c->B;
    const char *fn = c->fn;
    for (int checked = 0; checked < 2; checked++) {
        ib__sb_line(sb, "static inline __attribute__((always_inline)) void %s_tile%s(const float *restrict xb, "
                        "float *restrict v, int64_t ih0, int64_t iw0) {",
                    fn, checked ? "_edge" : "");
        sb->indent += 4;
        if (!checked) ib__sb_line(sb, "(void)ih0; (void)iw0;");
        const int A = (int)c->w.A;
        for (int r = 0; r < A; r++)
            for (int q = 0; q < A; q++) {
                if (checked)
                    ib__sb_line(sb, "const ibv%df d%d_%d = ((uint64_t)(ih0 + %d) < %lldu && (uint64_t)(iw0 + %d) < %lldu) "
                                    "? ib_load%d(xb + ((ih0 + %d) * %lld + iw0 + %d) * %d) : ib_splat%d(0.0f);",
                                B, r, q, r, (long long)g->IH, q, (long long)g->IW, B, r,
                                (long long)g->IW, q, B, B);
                else
                    ib__sb_line(sb, "const ibv%df d%d_%d = ib_load%d(xb + ((ih0 + %d) * %lld + iw0 + %d) * %d);",
                                B, r, q, B, r, (long long)g->IW, q, B);
            }
        emit_transform(sb, B, "d", "v", A, A, c->w.wt->bt, A, c->w.wt->bt, A);
        for (int r = 0; r < A; r++)
            for (int q = 0; q < A; q++)
                ib__sb_line(sb, "ib_store%d(v + %lld, v%d_%d);", B,
                            (long long)((int64_t)(r * A + q) * c->w.T * c->w.ICP), r, q);
        sb->indent -= 4;
        ib__sb_line(sb, "}");
    }
    ib__sb_line(sb, "static void %s_in(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const float *x = (const float *)args[0];");
    ib__sb_line(sb, "float *vbuf = (float *)args[3];");
    ib__sb_line(sb, "for (int64_t it = begin; it < end; it++) {");
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t icb = it %% %lld, r = it / %lld;", (long long)c->w.ICB,
                (long long)c->w.ICB);
    ib__sb_line(sb, "const int64_t th = r %% %lld, n = r / %lld;", (long long)c->w.TH, (long long)c->w.TH);
    ib__sb_line(sb, "const float *xb = x + (n * %lld + icb) * %lld;", (long long)c->w.ICB,
                (long long)(g->IH * g->IW * B));
    ib__sb_line(sb, "const int64_t ih0 = th * %lld - %lld;", (long long)c->w.M, (long long)g->PT);
    ib__sb_line(sb, "const int rows_in = ih0 >= 0 && ih0 + %lld <= %lld;", (long long)c->w.A,
                (long long)g->IH);
    ib__sb_line(sb, "for (int64_t tw = 0; tw < %lld; tw++) {", (long long)c->w.TW);
    sb->indent += 4;
    ib__sb_line(sb, "const int64_t iw0 = tw * %lld - %lld;", (long long)c->w.M, (long long)g->PL);
    ib__sb_line(sb, "float *v = vbuf + (r * %lld + tw) * %lld + icb * %d;", (long long)c->w.TW,
                (long long)c->w.ICP, B);
    ib__sb_line(sb, "if (rows_in && iw0 >= 0 && iw0 + %lld <= %lld) %s_tile(xb, v, ih0, iw0);",
                (long long)c->w.A, (long long)g->IW, fn);
    ib__sb_line(sb, "else %s_tile_edge(xb, v, ih0, iw0);", fn);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
}

/* One register tile: nt tiles x no channel vectors over every input channel, for one
 * position. v: V at (position, first tile); u: U at (position, first block); mo: the
 * stack tile at (position, first tile of the tile). */
static void emit_gemm(emit_ctx *c, int64_t nt, int64_t no) {
    ib__sb *sb = c->sb;
    const int32_t B = c->B;
    const int64_t K = c->w.ICP;
    ib__sb_line(sb, "static inline __attribute__((always_inline)) void %s_mm%lld_%lld(const float *restrict v, "
                    "const float *restrict u, float *restrict mo) {",
                c->fn, (long long)nt, (long long)no);
    sb->indent += 4;
    for (int64_t j = 0; j < nt; j++)
        for (int64_t o = 0; o < no; o++)
            ib__sb_line(sb, "ibv%df c%lld_%lld = ib_splat%d(0.0f);", B, (long long)j, (long long)o, B);
    ib__sb_line(sb, "for (int64_t ic = 0; ic < %lld; ic++) {", (long long)K);
    sb->indent += 4;
    for (int64_t o = 0; o < no; o++)
        ib__sb_line(sb, "const ibv%df w%lld = ib_load%d(u + %lld + ic * %d);", B, (long long)o, B,
                    (long long)(o * K * B), B);
    for (int64_t j = 0; j < nt; j++) {
        ib__sb_line(sb, "{ const ibv%df xv = ib_splat%d(v[%lld + ic]);", B, B, (long long)(j * K));
        for (int64_t o = 0; o < no; o++)
            ib__sb_line(sb, "  c%lld_%lld = ib_fma%d(xv, w%lld, c%lld_%lld);", (long long)j,
                        (long long)o, B, (long long)o, (long long)j, (long long)o);
        ib__sb_line(sb, "}");
    }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    for (int64_t j = 0; j < nt; j++)
        for (int64_t o = 0; o < no; o++)
            ib__sb_line(sb, "ib_store%d(mo + %lld, c%lld_%lld);", B,
                        (long long)((j * c->no + o) * B), (long long)j, (long long)o);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
}

/* The output transform of one tile and channel vector from the stack tile, with bias
 * and epilogue, stored where the tile lies inside the output. */
static ib_status emit_output_transform(emit_ctx *c) {
    ib__sb *sb = c->sb;
    const ib__conv_geom *g = &c->w.g;
    const int32_t B = c->B;
    ib__sb_line(sb, "static inline __attribute__((always_inline)) void %s_out(const float *restrict m, "
                    "const float *restrict bias, float *restrict y, void *const *args, int64_t t, "
                    "int64_t ocb) {",
                c->fn);
    sb->indent += 4;
    ib__sb_line(sb, "(void)args;");
    const int A = (int)c->w.A, M = (int)c->w.M;
    for (int r = 0; r < A; r++)
        for (int q = 0; q < A; q++)
            ib__sb_line(sb, "const ibv%df m%d_%d = ib_load%d(m + %lld);", B, r, q, B,
                        (long long)((int64_t)(r * A + q) * c->st * c->no * B));
    emit_transform(sb, B, "m", "y", A, A, c->w.wt->at, M, c->w.wt->at, M);
    ib__sb_line(sb, "const ibv%df b = ib_load%d(bias + ocb * %d);", B, B, B);
    ib__sb_line(sb, "const int64_t tw = t %% %lld, r = t / %lld;", (long long)c->w.TW, (long long)c->w.TW);
    ib__sb_line(sb, "const int64_t th = r %% %lld, n = r / %lld;", (long long)c->w.TH, (long long)c->w.TH);
    ib__sb_line(sb, "const int64_t ybase = (n * %lld + ocb) * %lld;", (long long)c->w.OCB,
                (long long)(g->OH * g->OW * B));
    const int32_t first_arg = c->k->n_in + c->k->n_out;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < M; j++) {
            bool edge = (g->OH % M != 0 && i >= g->OH % M) || (g->OW % M != 0 && j >= g->OW % M);
            ib__sb_line(sb, "{");
            sb->indent += 4;
            ib__sb_line(sb, "const int64_t oh = th * %d + %d, ow = tw * %d + %d;", M, i, M, j);
            if (edge) ib__sb_line(sb, "if (oh < %lld && ow < %lld) {", (long long)g->OH, (long long)g->OW);
            else ib__sb_line(sb, "{");
            sb->indent += 4;
            ib__sb_line(sb, "const int64_t yo = ybase + (oh * %lld + ow) * %d;", (long long)g->OW, B);
            ib__sb_line(sb, "ibv%df o = y%d_%d + b;", B, i, j);
            if (c->k->n_epi > 0) {
                char ch[32];
                snprintf(ch, sizeof ch, "ocb * %d", B);
                IB_TRY(ib__emit_epilogue(sb, c->k, first_arg, "o", B, ch, true, "yo"));
            }
            ib__sb_line(sb, "ib_store%d(y + yo, o);", B);
            sb->indent -= 4;
            ib__sb_line(sb, "}");
            sb->indent -= 4;
            ib__sb_line(sb, "}");
        }
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    return IB_OK;
}

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    emit_ctx c;
    memset(&c, 0, sizeof c);
    if (!wgeom_get(plan, k, &k->knobs, &c.w))
        return ib__error(IB_ERR_INTERNAL, "%s: no geometry", ib__node_label(k->nodes[0]));
    if (k->n_in != 4 || buf_of(plan, k->in[1])->layout != IB_LAYOUT_PACKED)
        return ib__error(IB_ERR_INTERNAL, "%s: weights not packed", ib__node_label(k->nodes[0]));
    if (!knobs_valid(plan, k, &k->knobs))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "%s: invalid knobs", ib__node_label(k->nodes[0]));
    const wgeom *w = &c.w;
    const ib__conv_geom *g = &w->g;
    c.k = k;
    c.sb = sb;
    c.B = g->B;
    c.fn = k->fn_name;
    c.nt = ib__knobs_get(&k->knobs, "tile_block", 1);
    c.no = ib__knobs_get(&k->knobs, "oc_block", 1);
    c.st = ib__knobs_get(&k->knobs, "tile_blocks", 1) * c.nt;
    const int32_t B = c.B;
    const char *fn = c.fn;
    const int64_t NI = (w->T + c.st - 1) / c.st, OCG = (w->OCB + c.no - 1) / c.no;
    const int64_t oc_tail = w->OCB % c.no;
    /* the last item's tiles: whole register tiles then one shorter one */
    const int64_t last_tiles = w->T - (NI - 1) * c.st, tile_tail = last_tiles % c.nt;
    ib__sb_line(sb, "/* %s: Winograd F(%dx%d,3x3) conv %lldx%lldx%lldx%lld -> %lld channels, pads %lld,%lld; "
                    "NCHW%dc; %lld tiles; tile_block %lld oc_block %lld, %lld tiles per item */",
                fn, (int)w->M, (int)w->M, (long long)g->N, (long long)g->IC, (long long)g->IH, (long long)g->IW,
                (long long)g->OC, (long long)g->PT, (long long)g->PL, B, (long long)w->T,
                (long long)c.nt, (long long)c.no, (long long)c.st);
    emit_input_transform(&c);
    emit_gemm(&c, c.nt, c.no);
    if (oc_tail) emit_gemm(&c, c.nt, oc_tail);
    if (tile_tail) {
        emit_gemm(&c, tile_tail, c.no);
        if (oc_tail) emit_gemm(&c, tile_tail, oc_tail);
    }
    IB_TRY(emit_output_transform(&c));
    /* phase 2 */
    ib__sb_line(sb, "static void %s_mm(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const float *u = (const float *)args[1], *bias = (const float *)args[2], "
                    "*vbuf = (const float *)args[3];");
    ib__sb_line(sb, "float *y = (float *)args[4];");
    ib__sb_line(sb, "float mt[%lld] __attribute__((aligned(64)));",
                (long long)(w->A2 * c.st * c.no * B));
    ib__sb_line(sb, "for (int64_t it = begin; it < end; it++) {");
    sb->indent += 4;
    /* A thread runs consecutive items: make them share whichever operand is larger, so
     * that it is read from L3 once and then from L2 - the channel group's transformed
     * weights (ResNet-50 stage 3: U 4.2 MB, V 0.8 MB), or the tiles' transformed input
     * (stage 1: V 3.2 MB, U 0.26 MB). */
    const int64_t u_bytes = w->A2 * w->OCB * w->ICP * B, v_bytes = w->A2 * w->T * w->ICP;
    if (v_bytes > u_bytes)
        ib__sb_line(sb, "const int64_t gi = it %% %lld, ti = it / %lld;", (long long)OCG, (long long)OCG);
    else
        ib__sb_line(sb, "const int64_t ti = it %% %lld, gi = it / %lld;", (long long)NI, (long long)NI);
    ib__sb_line(sb, "const int64_t t0 = ti * %lld, t1 = t0 + %lld < %lld ? t0 + %lld : %lld;",
                (long long)c.st, (long long)c.st, (long long)w->T, (long long)c.st, (long long)w->T);
    ib__sb_line(sb, "const int64_t nv = gi == %lld ? %lld : %lld;", (long long)(OCG - 1),
                (long long)(oc_tail ? oc_tail : c.no), (long long)c.no);
    ib__sb_line(sb, "for (int64_t xi = 0; xi < %lld; xi++) {", (long long)w->A2);
    sb->indent += 4;
    ib__sb_line(sb, "const float *ux = u + (xi * %lld + gi * %lld) * %lld;", (long long)w->OCB,
                (long long)c.no, (long long)(w->ICP * B));
    ib__sb_line(sb, "const float *vx = vbuf + xi * %lld;", (long long)(w->T * w->ICP));
    ib__sb_line(sb, "float *mx = mt + xi * %lld;", (long long)(c.st * c.no * B));
    ib__sb_line(sb, "for (int64_t tb = t0; tb < t1; tb += %lld) {", (long long)c.nt);
    sb->indent += 4;
    ib__sb_line(sb, "const float *vt = vx + tb * %lld;", (long long)w->ICP);
    ib__sb_line(sb, "float *mo = mx + (tb - t0) * %lld;", (long long)(c.no * B));
    const char *call = "(vt, ux, mo);";
    if (tile_tail) {
        ib__sb_line(sb, "if (tb + %lld > t1) {", (long long)c.nt);
        if (oc_tail)
            ib__sb_line(sb, "    if (nv != %lld) %s_mm%lld_%lld%s else %s_mm%lld_%lld%s", (long long)c.no, fn,
                        (long long)tile_tail, (long long)oc_tail, call, fn, (long long)tile_tail,
                        (long long)c.no, call);
        else
            ib__sb_line(sb, "    %s_mm%lld_%lld%s", fn, (long long)tile_tail, (long long)c.no, call);
        ib__sb_line(sb, "    continue;");
        ib__sb_line(sb, "}");
    }
    if (oc_tail)
        ib__sb_line(sb, "if (nv != %lld) %s_mm%lld_%lld%s else %s_mm%lld_%lld%s", (long long)c.no, fn,
                    (long long)c.nt, (long long)oc_tail, call, fn, (long long)c.nt, (long long)c.no, call);
    else
        ib__sb_line(sb, "%s_mm%lld_%lld%s", fn, (long long)c.nt, (long long)c.no, call);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "for (int64_t t = t0; t < t1; t++)");
    ib__sb_line(sb, "    for (int64_t o = 0; o < nv; o++)");
    ib__sb_line(sb, "        %s_out(mt + ((t - t0) * %lld + o) * %d, bias, y, args, t, gi * %lld + o);", fn,
                (long long)c.no, B, (long long)c.no);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_in, (void *)args);",
                (long long)(g->N * w->TH * w->ICB), fn);
    ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_mm, (void *)args);", (long long)(NI * OCG), fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

const ib__kernel_template ib__template_conv2d_winograd_nchwc = {
    .name = "conv2d_winograd_nchwc",
    .supports = supports,
    .preferred_layout = ib__conv_nchwc_preferred_layout,
    .default_knobs = default_knobs,
    .knobs_valid = knobs_valid,
    .pack_weights = pack_weights,
    .emit = emit,
    /* the direct convolution's count: GFLOP/s compare with conv2d_nchwc's ("effective",
     * as cuDNN and TVM report Winograd); the FMAs done are 4/9 of it at whole tiles */
    .flops = ib__conv_nchwc_flops,
};
