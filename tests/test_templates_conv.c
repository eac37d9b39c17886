/* Tests of the convolution-family kernel templates (conv2d_nchwc, conv2d_pointwise,
 * conv2d_depthwise_nchwc, pool2d, layout_transform): randomised shapes with fused
 * BatchNormalization and epilogues, generated, compiled and run for every target level
 * this machine runs, and compared with the reference ops (kernel_harness.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_harness.h"
#include "test.h"

static ib__pool *g_pool;
static uint64_t g_rng = 0x243F6A8885A308D3ull;

static int64_t rnd(int64_t lo, int64_t hi) { /* inclusive */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return lo + (int64_t)(g_rng % (uint64_t)(hi - lo + 1));
}

static const char *const g_default_targets[] = {"x86-64-v4", "x86-64-v3", "generic"};
/* The x86 levels, or the targets named on the command line ("aarch64", emulated). */
static const char *const *g_targets = g_default_targets;
static size_t g_n_targets = 3;

/* A Conv node (+ optional BN, bias, epilogue) on x; returns the chain's last value and
 * the node count. epi: 0 none, 1 Relu, 2 residual Add + Relu, 3 Clip (Relu6),
 * 4 per-channel Mul, 5 Sigmoid, 6 division by a per-channel constant. */
typedef struct conv_desc {
    int64_t n, c, h, w, m, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, group;
    bool bias, bn;
    int epi;
    bool plain_in; /* input in plain NCHW (stem convolutions) */
} conv_desc;

static ib__value *build_conv(ib_kh_batch *b, const conv_desc *d, int32_t *n_nodes) {
    int64_t xd[4] = {d->n, d->c, d->h, d->w}, wd[4] = {d->m, d->c / d->group, d->kh, d->kw};
    int64_t md[1] = {d->m};
    ib__value *x = ib_kh_input(b, 4, xd);
    ib__value *w = ib_kh_const(b, 4, wd, -0.5f, 0.5f);
    ib__value *bias = d->bias ? ib_kh_const(b, 1, md, -0.5f, 0.5f) : NULL;
    int64_t ks[2] = {d->kh, d->kw}, st[2] = {d->sh, d->sw}, dl[2] = {d->dh, d->dw};
    int64_t pads[4] = {d->pt, d->pl, d->pb, d->pr};
    ib__attr a[5] = {ib_kh_attr_ints("kernel_shape", 2, ks), ib_kh_attr_ints("strides", 2, st),
                     ib_kh_attr_ints("dilations", 2, dl), ib_kh_attr_ints("pads", 4, pads),
                     ib_kh_attr_int("group", d->group)};
    ib__value *in[3] = {x, w, bias};
    ib__value *y = ib_kh_node(b, IB_OP_CONV, 11, d->bias ? 3 : 2, in, 5, a);
    if (!y) return NULL;
    *n_nodes = 1;
    if (d->bn) {
        ib__value *sc = ib_kh_const(b, 1, md, 0.5f, 1.5f), *sh = ib_kh_const(b, 1, md, -0.5f, 0.5f);
        ib__value *mu = ib_kh_const(b, 1, md, -0.5f, 0.5f), *var = ib_kh_const(b, 1, md, 0.2f, 2.0f);
        ib__attr ea[1] = {ib_kh_attr_float("epsilon", 1e-3f)};
        ib__value *bin[5] = {y, sc, sh, mu, var};
        y = ib_kh_node(b, IB_OP_BATCH_NORMALIZATION, 15, 5, bin, 1, ea);
        if (!y) return NULL;
        (*n_nodes)++;
    }
    if (d->epi == 2) {
        ib__value *r = ib_kh_input(b, 4, y->dims);
        ib__value *ain[2] = {y, r};
        y = ib_kh_node(b, IB_OP_ADD, 14, 2, ain, 0, NULL);
        (*n_nodes)++;
        if (!y) return NULL;
    }
    if (d->epi == 1 || d->epi == 2) {
        y = ib_kh_node(b, IB_OP_RELU, 14, 1, &y, 0, NULL);
        (*n_nodes)++;
    } else if (d->epi == 3) {
        int64_t one[1] = {1};
        ib__value *lo = ib_kh_const(b, 0, one, 0.0f, 0.0f), *hi = ib_kh_const(b, 0, one, 0.3f, 0.3f);
        ib__value *cin[3] = {y, lo, hi};
        y = ib_kh_node(b, IB_OP_CLIP, 13, 3, cin, 0, NULL);
        (*n_nodes)++;
    } else if (d->epi == 4) {
        int64_t pd[3] = {d->m, 1, 1};
        ib__value *s = ib_kh_const(b, 3, pd, 0.5f, 2.0f);
        ib__value *min[2] = {s, y};
        y = ib_kh_node(b, IB_OP_MUL, 14, 2, min, 0, NULL);
        (*n_nodes)++;
    } else if (d->epi == 6) {
        int64_t pd[3] = {d->m, 1, 1};
        ib__value *s = ib_kh_const(b, 3, pd, 0.5f, 2.0f);
        ib__value *din[2] = {y, s};
        y = ib_kh_node(b, IB_OP_DIV, 14, 2, din, 0, NULL);
        (*n_nodes)++;
    } else if (d->epi == 5) {
        y = ib_kh_node(b, IB_OP_SIGMOID, 13, 1, &y, 0, NULL);
        (*n_nodes)++;
    }
    return y;
}

static void add_conv_knobs(ib_kh_batch *b, const ib__kernel_template *t, const conv_desc *d,
                           int *added, int32_t n_knobs, const char *const *kn, const int64_t *kv) {
    int32_t nn = 0;
    ib__value *y = build_conv(b, d, &nn);
    CHECK(y != NULL);
    if (!y) return;
    ib_kh_spec s;
    memset(&s, 0, sizeof s);
    s.tmpl = t;
    s.last = y;
    s.n_nodes = nn;
    s.in_layout = s.out_layout = IB_LAYOUT_NCHWC;
    if (d->plain_in) s.in_layout = IB_LAYOUT_PLAIN;
    s.n_knobs = n_knobs;
    for (int32_t i = 0; i < n_knobs; i++) {
        s.knob_name[i] = kn[i];
        s.knob_value[i] = kv[i];
    }
    char label[96];
    snprintf(label, sizeof label, "%s n%lld c%lld %lldx%lld m%lld k%lldx%lld s%lld d%lld p%lld g%lld e%d%s",
             t->name, (long long)d->n, (long long)d->c, (long long)d->h, (long long)d->w,
             (long long)d->m, (long long)d->kh, (long long)d->kw, (long long)d->sh,
             (long long)d->dh, (long long)d->pt, (long long)d->group, d->epi, d->plain_in ? " plain-in" : d->bn ? " bn" : "");
    int32_t idx = ib_kh_add(b, &s, label);
    CHECK(idx >= 0);
    (*added)++;
}

static void add_conv(ib_kh_batch *b, const ib__kernel_template *t, const conv_desc *d,
                     int *added) {
    add_conv_knobs(b, t, d, added, 0, NULL, NULL);
}

static conv_desc random_conv(bool pointwise) {
    conv_desc d;
    memset(&d, 0, sizeof d);
    d.n = rnd(1, 2);
    d.c = rnd(1, 40);
    d.m = rnd(1, 40);
    d.h = rnd(1, 13);
    d.w = rnd(1, 17);
    d.group = 1;
    if (pointwise) {
        d.kh = d.kw = d.sh = d.sw = d.dh = d.dw = 1;
    } else {
        d.kh = rnd(1, 5);
        d.kw = rnd(1, 5);
        d.sh = rnd(1, 3);
        d.sw = rnd(1, 3);
        d.dh = rnd(1, 2);
        d.dw = rnd(1, 2);
        d.pt = rnd(0, 2);
        d.pl = rnd(0, 2);
        d.pb = rnd(0, 2);
        d.pr = rnd(0, 2);
        while ((d.kh - 1) * d.dh + 1 > d.h + d.pt + d.pb) d.h++;
        while ((d.kw - 1) * d.dw + 1 > d.w + d.pl + d.pr) d.w++;
    }
    d.bias = rnd(0, 1);
    d.bn = rnd(0, 2) == 0;
    d.epi = (int)rnd(0, 6);
    return d;
}

TEST(conv2d_nchwc_random) {
    for (size_t ti = 0; ti < g_n_targets; ti++) {
        ib_kh_batch *b = NULL;
        ib_status st = ib_kh_batch_create_ex(g_targets[ti], g_pool, true, &b);
        CHECK_EQ_INT(st, IB_OK);
        if (st) continue;
        int added = 0;
        /* fixed shapes: ResNet-like 3x3 with output-width tails */
        conv_desc r = {1, 35, 9, 11, 33, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, 2};
        add_conv(b, &ib__template_conv2d_nchwc, &r, &added);
        conv_desc s2 = {2, 16, 15, 15, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, false, true, 1};
        add_conv(b, &ib__template_conv2d_nchwc, &s2, &added);
        for (int i = 0; i < 14; i++) {
            conv_desc d = random_conv(false);
            add_conv(b, d.kh == 1 && d.kw == 1 && d.sh == 1 && d.sw == 1 && d.pt + d.pl + d.pb + d.pr == 0
                            ? &ib__template_conv2d_pointwise
                            : &ib__template_conv2d_nchwc,
                     &d, &added);
        }
        for (int i = 0; i < 6; i++) {
            conv_desc d = random_conv(true);
            add_conv(b, &ib__template_conv2d_pointwise, &d, &added);
        }
        /* plain NCHW input: a ResNet-like stem (7x7 stride 2 pad 3) and random ones */
        conv_desc stem = {1, 3, 23, 21, 20, 7, 7, 2, 2, 1, 1, 3, 3, 3, 3, 1, false, true, 1, true};
        add_conv(b, &ib__template_conv2d_nchwc, &stem, &added);
        for (int i = 0; i < 3; i++) {
            conv_desc d = random_conv(false);
            d.plain_in = true;
            if (d.kh == 1 && d.kw == 1) d.kh = 2;
            while ((d.kh - 1) * d.dh + 1 > d.h + d.pt + d.pb) d.h++;
            add_conv(b, &ib__template_conv2d_nchwc, &d, &added);
        }
        /* schedules other than the defaults: the tuner's search space must stay correct */
        const char *kn[7] = {"ow_block", "oc_block", "ic_block", "ic_unroll",
                             "parallel", "kw_inner", "oh_block"};
        const int64_t kv[4][7] = {{3, 2, 1, 4, 1, 1, 2}, {5, 1, 2, 2, 0, 0, 3},
                                  {1, 3, 1, 1, 1, 1, 1}, {4, 2, 3, 8, 1, 0, 4}};
        for (int i = 0; i < 4; i++) {
            conv_desc d = random_conv(false);
            d.c = rnd(9, 40);
            d.m = rnd(33, 56); /* at least 3 channel blocks of 16 */
            d.w = rnd(9, 17);
            d.h = rnd(9, 13);
            /* output at least 5 wide and high: every ow_block / oh_block above is valid */
            d.sw = d.dw = d.sh = d.dh = 1;
            add_conv_knobs(b, &ib__template_conv2d_nchwc, &d, &added, 7, kn, kv[i]);
        }
        int32_t failed = ib_kh_run(b, 1e-4);
        CHECK_EQ_INT(failed, 0);
        ib_kh_batch_destroy(b);
    }
}

static conv_desc random_depthwise(void) {
    conv_desc d = random_conv(false);
    d.c = d.m = d.group = rnd(2, 40);
    if (d.kh == 1 && d.kw == 1) d.kh = d.kw = 3;
    while ((d.kh - 1) * d.dh + 1 > d.h + d.pt + d.pb) d.h++;
    while ((d.kw - 1) * d.dw + 1 > d.w + d.pl + d.pr) d.w++;
    return d;
}

TEST(conv2d_depthwise_random) {
    for (size_t ti = 0; ti < g_n_targets; ti++) {
        ib_kh_batch *b = NULL;
        ib_status st = ib_kh_batch_create_ex(g_targets[ti], g_pool, true, &b);
        CHECK_EQ_INT(st, IB_OK);
        if (st) continue;
        int added = 0;
        /* MobileNetV2-like: 3x3 pad 1, stride 1 and 2, Relu6 */
        conv_desc m1 = {1, 96, 14, 14, 96, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 96, false, true, 3};
        conv_desc m2 = {2, 24, 15, 16, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 24, true, false, 3};
        add_conv(b, &ib__template_conv2d_depthwise_nchwc, &m1, &added);
        add_conv(b, &ib__template_conv2d_depthwise_nchwc, &m2, &added);
        for (int i = 0; i < 12; i++) {
            conv_desc d = random_depthwise();
            add_conv(b, &ib__template_conv2d_depthwise_nchwc, &d, &added);
        }
        CHECK_EQ_INT(ib_kh_run(b, 1e-4), 0);
        ib_kh_batch_destroy(b);
    }
}

/* conv2d_winograd_nchwc: 3x3 stride-1 shapes with odd sizes (partial output tiles),
 * pads 0-2, channel tails, batches, fused BN and every epilogue, under default knobs and
 * the tuner's others, at both output tiles (2x2 and 4x4); INFERBOOSTER_WINOGRAD=always
 * lets it take small shapes. */
static conv_desc random_winograd(void) {
    conv_desc d = random_conv(false);
    d.kh = d.kw = 3;
    d.sh = d.sw = d.dh = d.dw = 1;
    d.n = rnd(1, 3);
    d.c = rnd(1, 40);
    d.m = rnd(1, 40);
    d.h = rnd(1, 13);
    d.w = rnd(1, 15);
    while (3 > d.h + d.pt + d.pb) d.h++;
    while (3 > d.w + d.pl + d.pr) d.w++;
    return d;
}

TEST(conv2d_winograd_random) {
    setenv("INFERBOOSTER_WINOGRAD", "always", 1);
    for (size_t ti = 0; ti < g_n_targets; ti++) {
        ib_kh_batch *b = NULL;
        ib_status st = ib_kh_batch_create_ex(g_targets[ti], g_pool, true, &b);
        CHECK_EQ_INT(st, IB_OK);
        if (st) continue;
        int added = 0;
        /* ResNet-like: 3x3 pad 1 with a residual Add + Relu, even and odd sizes */
        conv_desc r1 = {1, 64, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, 2};
        conv_desc r2 = {2, 35, 7, 9, 33, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, false, true, 1};
        add_conv(b, &ib__template_conv2d_winograd_nchwc, &r1, &added);
        add_conv(b, &ib__template_conv2d_winograd_nchwc, &r2, &added);
        for (int i = 0; i < 14; i++) {
            conv_desc d = random_winograd();
            add_conv(b, &ib__template_conv2d_winograd_nchwc, &d, &added);
        }
        /* F(4x4, 3x3) on the ResNet-like shapes and random ones (edge tiles of 1-3 rows
         * and columns), then schedules other than the defaults (tails of the tile and
         * channel groups) at both tile sizes */
        const char *kn[4] = {"tile_size", "tile_block", "oc_block", "tile_blocks"};
        const int64_t f4[4] = {4, 7, 2, 1};
        add_conv_knobs(b, &ib__template_conv2d_winograd_nchwc, &r1, &added, 4, kn, f4);
        add_conv_knobs(b, &ib__template_conv2d_winograd_nchwc, &r2, &added, 4, kn, f4);
        const int64_t f4_small[4] = {4, 3, 1, 1}; /* any channel count, any tile count */
        for (int i = 0; i < 6; i++) {
            conv_desc d = random_winograd();
            add_conv_knobs(b, &ib__template_conv2d_winograd_nchwc, &d, &added, 4, kn, f4_small);
        }
        /* ResNet-50 stage 2 at a quarter of the channels: 49 whole 4x4 tiles, which the
         * default knobs give F(4x4) */
        conv_desc s2 = {1, 32, 28, 28, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, true, true, 2};
        add_conv(b, &ib__template_conv2d_winograd_nchwc, &s2, &added);
        const int64_t kv[6][4] = {{2, 3, 2, 2}, {2, 5, 1, 1}, {2, 1, 3, 4},
                                  {4, 3, 2, 2}, {4, 5, 1, 1}, {4, 1, 3, 4}};
        for (int i = 0; i < 6; i++) {
            conv_desc d = random_winograd();
            d.m = rnd(33, 56);
            d.h = rnd(5, 13);
            d.w = rnd(5, 13);
            add_conv_knobs(b, &ib__template_conv2d_winograd_nchwc, &d, &added, 4, kn, kv[i]);
        }
        CHECK_EQ_INT(added, 31);
        CHECK_EQ_INT(ib_kh_run(b, 1e-4), 0);
        ib_kh_batch_destroy(b);
    }
    unsetenv("INFERBOOSTER_WINOGRAD");
}

/* A windowed or global pool on an NCHWc input, optionally followed by Relu. */
static void add_pool(ib_kh_batch *b, ib__op_id op, int64_t n, int64_t c, int64_t h, int64_t w,
                     int64_t k0, int64_t k1, int64_t s, int64_t d, int64_t pad, int64_t ceil_mode,
                     int64_t cip, bool relu, ib__layout out_layout) {
    int64_t xd[4] = {n, c, h, w};
    ib__value *x = ib_kh_input(b, 4, xd);
    int64_t ks[2] = {k0, k1}, st[2] = {s, s}, dl[2] = {d, d}, pads[4] = {pad, pad, pad > 0 ? pad - 1 : 0, pad};
    ib__attr a[6];
    int32_t na = 0;
    bool global = op == IB_OP_GLOBAL_AVERAGE_POOL || op == IB_OP_GLOBAL_MAX_POOL;
    if (!global) {
        a[na++] = ib_kh_attr_ints("kernel_shape", 2, ks);
        a[na++] = ib_kh_attr_ints("strides", 2, st);
        a[na++] = ib_kh_attr_ints("pads", 4, pads);
        a[na++] = ib_kh_attr_int("ceil_mode", ceil_mode);
        if (op == IB_OP_MAX_POOL) a[na++] = ib_kh_attr_ints("dilations", 2, dl);
        else a[na++] = ib_kh_attr_int("count_include_pad", cip);
    }
    ib__value *y = ib_kh_node(b, op, op == IB_OP_MAX_POOL ? 12 : 11, 1, &x, na, a);
    CHECK(y != NULL);
    if (!y) return;
    int32_t nn = 1;
    if (relu) {
        y = ib_kh_node(b, IB_OP_RELU, 14, 1, &y, 0, NULL);
        nn++;
    }
    ib_kh_spec sp;
    memset(&sp, 0, sizeof sp);
    sp.tmpl = &ib__template_pool2d;
    sp.last = y;
    sp.n_nodes = nn;
    sp.in_layout = IB_LAYOUT_NCHWC;
    sp.out_layout = out_layout;
    char label[128];
    snprintf(label, sizeof label, "%s n%lld c%lld %lldx%lld k%lldx%lld s%lld d%lld p%lld ceil%lld cip%lld%s",
             ib__op_name(op), (long long)n, (long long)c, (long long)h, (long long)w, (long long)k0,
             (long long)k1, (long long)s, (long long)d, (long long)pad, (long long)ceil_mode,
             (long long)cip, out_layout == IB_LAYOUT_PLAIN ? " plain-out" : "");
    CHECK(ib_kh_add(b, &sp, label) >= 0);
}

TEST(pool2d_random) {
    for (size_t ti = 0; ti < g_n_targets; ti++) {
        ib_kh_batch *b = NULL;
        ib_status st = ib_kh_batch_create_ex(g_targets[ti], g_pool, true, &b);
        CHECK_EQ_INT(st, IB_OK);
        if (st) continue;
        /* ResNet stem pool and head */
        add_pool(b, IB_OP_MAX_POOL, 1, 64, 20, 20, 3, 3, 2, 1, 1, 0, 0, false, IB_LAYOUT_NCHWC);
        add_pool(b, IB_OP_GLOBAL_AVERAGE_POOL, 2, 37, 7, 7, 0, 0, 0, 0, 0, 0, 0, false, IB_LAYOUT_PLAIN);
        add_pool(b, IB_OP_GLOBAL_AVERAGE_POOL, 1, 20, 5, 3, 0, 0, 0, 0, 0, 0, 0, true, IB_LAYOUT_NCHWC);
        add_pool(b, IB_OP_GLOBAL_MAX_POOL, 2, 9, 4, 6, 0, 0, 0, 0, 0, 0, 0, false, IB_LAYOUT_PLAIN);
        add_pool(b, IB_OP_GLOBAL_MAX_POOL, 1, 17, 1, 1, 0, 0, 0, 0, 0, 0, 0, false, IB_LAYOUT_NCHWC);
        for (int i = 0; i < 14; i++) {
            ib__op_id op = rnd(0, 1) ? IB_OP_MAX_POOL : IB_OP_AVERAGE_POOL;
            int64_t k0 = rnd(1, 4), k1 = rnd(1, 4), s = rnd(1, 3), d = op == IB_OP_MAX_POOL ? rnd(1, 2) : 1;
            int64_t pad = rnd(0, k0 < k1 ? k0 - 1 : k1 - 1);
            int64_t h = rnd((k0 - 1) * d + 1, 12), w = rnd((k1 - 1) * d + 1, 13);
            add_pool(b, op, rnd(1, 2), rnd(1, 40), h, w, k0, k1, s, d, pad, rnd(0, 1), rnd(0, 1),
                     rnd(0, 1), IB_LAYOUT_NCHWC);
        }
        CHECK_EQ_INT(ib_kh_run(b, 1e-4), 0);
        ib_kh_batch_destroy(b);
    }
}

TEST(layout_transform) {
    for (size_t ti = 0; ti < g_n_targets; ti++) {
        ib_kh_batch *b = NULL;
        ib_status st = ib_kh_batch_create_ex(g_targets[ti], g_pool, true, &b);
        CHECK_EQ_INT(st, IB_OK);
        if (st) continue;
        const ib__layout L[3][2] = {{IB_LAYOUT_PLAIN, IB_LAYOUT_NCHWC},
                                    {IB_LAYOUT_NCHWC, IB_LAYOUT_PLAIN},
                                    {IB_LAYOUT_NCHWC, IB_LAYOUT_PLAIN}};
        for (int i = 0; i < 6; i++) {
            int64_t xd[4] = {rnd(1, 2), rnd(1, 37), rnd(1, 9), rnd(1, 9)};
            ib__value *x = ib_kh_input(b, 4, xd);
            ib_kh_spec sp;
            memset(&sp, 0, sizeof sp);
            sp.tmpl = &ib__template_layout_transform;
            sp.last = x;
            sp.n_nodes = 0;
            sp.in_layout = L[i % 3][0];
            sp.out_layout = L[i % 3][1];
            char label[64];
            snprintf(label, sizeof label, "layout %d c%lld", i % 3, (long long)xd[1]);
            CHECK(ib_kh_add(b, &sp, label) >= 0);
        }
        /* same layout on both sides is not a transform */
        int64_t xd[4] = {1, 8, 2, 2};
        ib_kh_spec same;
        memset(&same, 0, sizeof same);
        same.tmpl = &ib__template_layout_transform;
        same.last = ib_kh_input(b, 4, xd);
        same.in_layout = same.out_layout = IB_LAYOUT_NCHWC;
        CHECK(!ib_kh_supported(b, &same));
        CHECK_EQ_INT(ib_kh_run(b, 0.0), 0);
        ib_kh_batch_destroy(b);
    }
}

/* What the templates must refuse (the planner then falls back to the reference op). */
TEST(refusals) {
    ib_kh_batch *b = NULL;
    if (ib_kh_batch_create_ex("x86-64-v3", g_pool, true, &b) != IB_OK) {
        CHECK(0);
        return;
    }
    ib_kh_spec s;
    memset(&s, 0, sizeof s);
    s.in_layout = s.out_layout = IB_LAYOUT_NCHWC;
    s.n_nodes = 1;
    int32_t nn;
    /* grouped (not depthwise) */
    conv_desc gconv = {1, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, false, false, 0, false};
    s.last = build_conv(b, &gconv, &nn);
    s.tmpl = &ib__template_conv2d_nchwc;
    CHECK(s.last && !ib_kh_supported(b, &s));
    s.tmpl = &ib__template_conv2d_depthwise_nchwc;
    CHECK(s.last && !ib_kh_supported(b, &s));
    /* huge horizontal padding */
    conv_desc pad = {1, 8, 6, 6, 8, 3, 3, 1, 1, 1, 1, 0, 20, 0, 20, 1, false, false, 0, false};
    s.last = build_conv(b, &pad, &nn);
    s.tmpl = &ib__template_conv2d_nchwc;
    CHECK(s.last && !ib_kh_supported(b, &s));
    /* weights that are not constants */
    int64_t xd[4] = {1, 8, 5, 5}, wd[4] = {4, 8, 3, 3};
    ib__value *in[2] = {ib_kh_input(b, 4, xd), ib_kh_input(b, 4, wd)};
    s.last = ib_kh_node(b, IB_OP_CONV, 11, 2, in, 0, NULL);
    CHECK(s.last && !ib_kh_supported(b, &s));
    /* pointwise shapes go to conv2d_pointwise, the rest to conv2d_nchwc */
    conv_desc pw = {1, 8, 6, 6, 8, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, false, false, 0, false};
    s.last = build_conv(b, &pw, &nn);
    CHECK(s.last && !ib_kh_supported(b, &s));
    s.tmpl = &ib__template_conv2d_pointwise;
    CHECK(s.last && ib_kh_supported(b, &s));
    /* Winograd: 3x3 stride 1 on a blocked input only; by default only where it wins */
    s.tmpl = &ib__template_conv2d_winograd_nchwc;
    conv_desc wino = {1, 32, 12, 12, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, false, false, 0, false};
    s.last = build_conv(b, &wino, &nn);
    CHECK(s.last && ib_kh_supported(b, &s));
    setenv("INFERBOOSTER_WINOGRAD", "0", 1);
    CHECK(s.last && !ib_kh_supported(b, &s));
    unsetenv("INFERBOOSTER_WINOGRAD");
    conv_desc few = wino; /* 16 channels, or 9 tiles: the transforms would be the work */
    few.c = 16;
    s.last = build_conv(b, &few, &nn);
    CHECK(s.last && !ib_kh_supported(b, &s));
    few = wino;
    few.h = few.w = 6;
    s.last = build_conv(b, &few, &nn);
    CHECK(s.last && !ib_kh_supported(b, &s));
    setenv("INFERBOOSTER_WINOGRAD", "always", 1);
    CHECK(s.last && ib_kh_supported(b, &s));
    const conv_desc never[4] = {
        {1, 32, 12, 12, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, false, false, 0, false}, /* stride */
        {1, 32, 12, 12, 32, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1, false, false, 0, false}, /* dilation */
        {1, 32, 12, 12, 32, 5, 5, 1, 1, 1, 1, 2, 2, 2, 2, 1, false, false, 0, false}, /* 5x5 */
        {1, 32, 12, 12, 32, 3, 3, 1, 1, 1, 1, 3, 3, 3, 3, 1, false, false, 0, false}, /* pad 3 */
    };
    for (int i = 0; i < 4; i++) {
        s.last = build_conv(b, &never[i], &nn);
        CHECK(s.last && !ib_kh_supported(b, &s));
    }
    s.last = build_conv(b, &wino, &nn);
    s.in_layout = IB_LAYOUT_PLAIN; /* a stem conv's plain input */
    CHECK(s.last && !ib_kh_supported(b, &s));
    s.in_layout = IB_LAYOUT_NCHWC;
    unsetenv("INFERBOOSTER_WINOGRAD");
    /* a windowed pool cannot write plain output */
    int64_t pd[4] = {1, 8, 6, 6}, ks[2] = {2, 2};
    ib__value *x = ib_kh_input(b, 4, pd);
    ib__attr a[1] = {ib_kh_attr_ints("kernel_shape", 2, ks)};
    s.last = ib_kh_node(b, IB_OP_MAX_POOL, 12, 1, &x, 1, a);
    s.tmpl = &ib__template_pool2d;
    CHECK(s.last && ib_kh_supported(b, &s));
    s.out_layout = IB_LAYOUT_PLAIN;
    CHECK(s.last && !ib_kh_supported(b, &s));
    ib_kh_batch_destroy(b);
}

int main(int argc, char **argv) {
    if (!ib_kh_pick_targets(argc, argv, g_default_targets, 3, &g_targets, &g_n_targets)) {
        printf("0 passed, 1 failed\n");
        return 1;
    }
    if (ib__pool_create(2, &g_pool) != IB_OK) return 1;
    RUN(conv2d_nchwc_random);
    RUN(conv2d_depthwise_random);
    RUN(conv2d_winograd_random);
    RUN(pool2d_random);
    RUN(layout_transform);
    RUN(refusals);
    ib__pool_destroy(g_pool);
    TEST_SUMMARY();
}
