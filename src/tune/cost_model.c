/* The tuner's cost model: features of a configuration (knob values plus loop features
 * derived from the workload's shapes and the target's caches), an XGBoost ranker
 * (rank:pairwise, one group per workload) trained on measured configurations, scores for
 * unmeasured ones, and the rank correlation that says how far to trust it. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xgboost/c_api.h>

#include "tune/tune.h"

/* ---- Workload geometry, from the workload key alone ----------------------------------
 * Parsed from the key rather than taken from a plan so that database records of other
 * models (which have no plan here) get the same features: that is what transfer needs. */
typedef struct geom {
    char tmpl[32];
    int32_t r_in0, r_in1, r_out, n_in;
    int64_t in0[IB_MAX_RANK], in1[IB_MAX_RANK], out[IB_MAX_RANK];
    int32_t in0_block, out_block; /* NCHWc channel blocks (0: plain) */
    int64_t kh, kw, sh, sw, group;
} geom;

/* Dims "[a,b,c]" at *p (advanced past them, and past a "/cN" layout suffix). */
static int32_t parse_dims(const char **p, int64_t *dims, int32_t *block) {
    const char *s = *p;
    int32_t r = 0;
    if (*s != '[') return -1;
    s++;
    while (*s && *s != ']') {
        char *end = NULL;
        long long v = strtoll(s, &end, 10);
        if (end == s) return -1;
        if (r < IB_MAX_RANK) dims[r++] = v;
        s = end;
        if (*s == ',') s++;
    }
    if (*s != ']') return -1;
    s++;
    *block = 0;
    if (s[0] == '/' && s[1] == 'c') *block = (int32_t)strtol(s + 2, NULL, 10);
    while (*s && *s != ',' && *s != '|') s++;
    *p = s;
    return r;
}

/* The pair of ints of "name:[a,b" inside the attribute section, or the defaults. */
static void attr_pair(const char *key, const char *name, int64_t *a, int64_t *b, int64_t dflt) {
    *a = *b = dflt;
    const char *in = strstr(key, "|in=");
    const char *at = strstr(key, name);
    if (!at || (in && at > in)) return;
    at += strlen(name);
    if (*at != '[') return;
    *a = strtoll(at + 1, NULL, 10);
    const char *comma = strchr(at, ',');
    const char *close = strchr(at, ']');
    *b = comma && close && comma < close ? strtoll(comma + 1, NULL, 10) : *a;
}

static void parse_geom(const char *key, geom *g) {
    memset(g, 0, sizeof *g);
    if (strncmp(key, "t=", 2) == 0) {
        size_t n = strcspn(key + 2, "|");
        if (n >= sizeof g->tmpl) n = sizeof g->tmpl - 1;
        memcpy(g->tmpl, key + 2, n);
    }
    attr_pair(key, "kernel_shape:", &g->kh, &g->kw, 1);
    attr_pair(key, "strides:", &g->sh, &g->sw, 1);
    const char *grp = strstr(key, "group:");
    g->group = grp ? strtoll(grp + 6, NULL, 10) : 1;
    if (g->group < 1) g->group = 1;
    const char *p = strstr(key, "|in=");
    if (p) {
        p += 4;
        while (*p && *p != '|') {
            const char *br = strchr(p, '[');
            if (!br) break;
            p = br;
            int32_t blk = 0;
            int64_t tmp[IB_MAX_RANK];
            int32_t r = parse_dims(&p, g->n_in == 0 ? g->in0 : g->n_in == 1 ? g->in1 : tmp, &blk);
            if (r < 0) break;
            if (g->n_in == 0) {
                g->r_in0 = r;
                g->in0_block = blk;
            } else if (g->n_in == 1) {
                g->r_in1 = r;
            }
            g->n_in++;
            if (*p == ',') p++;
        }
    }
    p = strstr(key, "|out=");
    if (p && (p = strchr(p, '[')) != NULL) {
        int32_t blk = 0;
        int32_t r = parse_dims(&p, g->out, &blk);
        if (r > 0) {
            g->r_out = r;
            g->out_block = blk;
        }
    }
}

static double prod(const int64_t *d, int32_t r, int32_t from, int32_t to) {
    double p = 1;
    for (int32_t i = from; i < to && i < r; i++) p *= (double)(d[i] > 0 ? d[i] : 1);
    return p;
}

static double cdiv(double a, double b) { return b > 0 ? ceil(a / b) : a; }

static bool is_conv(const char *t) { return strncmp(t, "conv2d", 6) == 0; }

/* Fraction of the cores' work slots used when `items` equal items are spread over cores. */
static double balance(double items, double cores) {
    if (items <= 0) return 0;
    return items / (cdiv(items, cores) * cores);
}

void ib__tune_features(const char *key, const ib__target *t, const ib__knobs *k,
                       float out[IB_TUNE_NFEAT]) {
    for (int32_t i = 0; i < IB_TUNE_NFEAT; i++) out[i] = 0;
    for (int32_t i = 0; i < k->n && i < IB_TUNE_NKNOBF; i++) out[i] = (float)k->value[i];
    geom g;
    parse_geom(key, &g);
    const double vf = ib__target_vector_floats(t) > 0 ? ib__target_vector_floats(t) : 4;
    const double regs = t->vector_regs > 0 ? t->vector_regs : 16;
    const double l1 = t->l1d_bytes > 0 ? (double)t->l1d_bytes : 32768;
    const double l2 = t->l2_bytes > 0 ? (double)t->l2_bytes : 1 << 20;
    const double l3 = t->l3_bytes > 0 ? (double)t->l3_bytes : 8 << 20;
    const double cores = t->num_cores > 0 ? t->num_cores : 1;
    float *d = out + IB_TUNE_NKNOBF; /* derived: 12 slots */
    float *w = d + 12;               /* the workload itself: 4 slots */
    double flops = 0, out_elems = prod(g.out, g.r_out, 0, g.r_out);
#define KN(name, dflt) ((double)ib__knobs_get(k, name, dflt))
    if (is_conv(g.tmpl) && g.r_in0 == 4 && g.r_out == 4) {
        double N = (double)g.in0[0], IC = (double)g.in0[1], IH = (double)g.in0[2],
               IW = (double)g.in0[3], OC = (double)g.out[1], OH = (double)g.out[2],
               OW = (double)g.out[3], KH = (double)g.kh, KW = (double)g.kw, SH = (double)g.sh,
               SW = (double)g.sw;
        double B = g.out_block > 0 ? g.out_block : vf, Bi = g.in0_block > 0 ? g.in0_block : 1;
        bool dw = g.group > 1;
        double ow = KN("ow_block", 1), oc = KN("oc_block", 1), icb = KN("ic_block", 1),
               ohb = KN("oh_block", 1), par = KN("parallel", 0), un = KN("ic_unroll", 1);
        double OCB = cdiv(OC, B), ICB = cdiv(IC, Bi);
        if (dw) icb = 1;
        double icg = dw ? 1 : IC / (double)g.group;
        flops = 2.0 * N * OC * OH * OW * icg * KH * KW;
        double rows = (ohb - 1) * SH + KH;
        double wchunk = KH * KW * Bi * B * oc * icb * 4;
        double xtile = icb * Bi * KH * ((ow - 1) * SW + KW) * 4;
        d[0] = (float)((ow * oc + oc) / regs);
        d[1] = (float)((wchunk + xtile) / l1);
        d[2] = (float)((icb * Bi * IW * rows * 4 + (par > 0 ? OCB * wchunk / (oc > 0 ? oc : 1) : wchunk)) / l2);
        d[3] = (float)((ICB * Bi * IH * IW * 4 + OCB * B * ICB * Bi * KH * KW * 4 + OCB * B * OH * OW * 4) / l3);
        d[4] = (float)((OW / (cdiv(OW, ow) * ow)) * (OCB / (cdiv(OCB, oc) * oc)) * (OC / (OCB * B)));
        double ocg = cdiv(OCB, oc);
        double items = N * (par > 0 ? 1 : ocg) * cdiv(OH, ohb);
        d[5] = (float)(items / cores);
        d[6] = (float)balance(items, cores);
        d[7] = (float)(ow * oc / (ow + oc));
        /* traffic: the input once per output-channel group it is read for, the weights once
         * per row block, the output once per input-channel chunk (partial sums) */
        double in_b = N * ICB * Bi * IH * IW * 4, w_b = OCB * B * ICB * Bi * KH * KW * 4;
        double out_b = N * OCB * B * OH * OW * 4;
        double traffic = in_b * (par > 0 ? 1 : ocg) + w_b * cdiv(OH, ohb) * N + out_b * cdiv(ICB, icb);
        d[8] = (float)(traffic > 0 ? flops / traffic : 0);
        d[9] = (float)cdiv(ICB, icb);
        d[10] = (float)un;
        d[11] = (float)(ow * oc + oc + (regs >= 32 ? 0 : 1) > regs);
    } else if (strcmp(g.tmpl, "gemm") == 0 && g.r_out >= 1 && g.r_in0 >= 1) {
        double M = prod(g.out, g.r_out, 0, g.r_out - 1), N = (double)g.out[g.r_out - 1],
               K = (double)g.in0[g.r_in0 - 1];
        double mr = KN("mr", 6), nr = KN("nr", 2), kc = KN("kc", 256), mc = KN("mc", 64),
               nc = KN("nc", 64), ku = KN("ku", 1);
        flops = 2.0 * M * N * K;
        double nw = nr * vf;
        d[0] = (float)((mr * nr + nr + 1) / regs);
        d[1] = (float)(kc * (mr + nw) * 4 / l1);
        d[2] = (float)(mc * kc * 4 / l2);
        d[3] = (float)(kc * nc * 4 / l3);
        d[4] = (float)((M / (cdiv(M, mr) * mr)) * (N / (cdiv(N, nw) * nw)));
        double items = cdiv(M, mc) * cdiv(N, nc);
        d[5] = (float)(items / cores);
        d[6] = (float)balance(items, cores);
        d[7] = (float)(mr * nw / (mr + nw));
        double traffic = (M * K * cdiv(N, nc) + K * N * cdiv(M, mc) + M * N * cdiv(K, kc)) * 4;
        d[8] = (float)(traffic > 0 ? flops / traffic : 0);
        d[9] = (float)cdiv(K, kc);
        d[10] = (float)ku;
        d[11] = (float)(mr * nr + nr + 1 > regs);
    } else {
        /* row- or chunk-parallel templates (element-wise, softmax, layernorm, pooling) */
        double row = g.r_out > 0 ? (double)g.out[g.r_out - 1] : 1;
        double per = 0;
        if (ib__knobs_get(k, "chunk", 0) > 0) per = KN("chunk", 1);
        else if (ib__knobs_get(k, "rows_per_task", 0) > 0) per = KN("rows_per_task", 1) * row;
        else if (ib__knobs_get(k, "rows", 0) > 0) per = KN("rows", 1) * row;
        else per = out_elems / cores;
        if (per < 1) per = 1;
        flops = out_elems;
        double streams = g.n_in + 1;
        d[1] = (float)(per * 4 * streams / l1);
        d[2] = (float)(per * 4 * streams / l2);
        d[3] = (float)(out_elems * 4 * streams / l3);
        d[4] = (float)(per / (cdiv(per, vf) * vf));
        double items = cdiv(out_elems, per);
        d[5] = (float)(items / cores);
        d[6] = (float)balance(items, cores);
        d[10] = (float)KN("hw_accumulators", 0);
    }
#undef KN
    w[0] = (float)log2(flops + 1);
    w[1] = (float)log2(out_elems + 1);
    w[2] = (float)log2(prod(g.in0, g.r_in0, 0, g.r_in0) + 1);
    w[3] = (float)log2(prod(g.in1, g.r_in1, 0, g.r_in1) + 1);
}

/* ---- Rank correlation ---------------------------------------------------------------- */
typedef struct ranked {
    double v;
    int32_t i;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
    double x = ((const ranked *)a)->v, y = ((const ranked *)b)->v;
    return x < y ? -1 : x > y ? 1 : 0;
}

/* Ranks of v (1-based, ties get their average rank) into r. */
static bool ranks(const double *v, int32_t n, double *r) {
    ranked *s = ib__malloc((size_t)n * sizeof *s);
    if (!s) return false;
    for (int32_t i = 0; i < n; i++) s[i] = (ranked){v[i], i};
    qsort(s, (size_t)n, sizeof *s, cmp_ranked);
    for (int32_t i = 0; i < n;) {
        int32_t j = i;
        while (j + 1 < n && s[j + 1].v == s[i].v) j++;
        double avg = 0.5 * (double)(i + j) + 1;
        for (int32_t m = i; m <= j; m++) r[s[m].i] = avg;
        i = j + 1;
    }
    ib__free(s);
    return true;
}

double ib__tune_spearman(const double *a, const double *b, int32_t n) {
    if (n < 2) return NAN;
    double *ra = ib__malloc((size_t)n * 2 * sizeof *ra);
    if (!ra) return NAN;
    double *rb = ra + n;
    double rho = NAN;
    if (ranks(a, n, ra) && ranks(b, n, rb)) {
        /* Pearson on the ranks: right with ties too */
        double ma = 0, mb = 0;
        for (int32_t i = 0; i < n; i++) {
            ma += ra[i];
            mb += rb[i];
        }
        ma /= n;
        mb /= n;
        double sab = 0, saa = 0, sbb = 0;
        for (int32_t i = 0; i < n; i++) {
            sab += (ra[i] - ma) * (rb[i] - mb);
            saa += (ra[i] - ma) * (ra[i] - ma);
            sbb += (rb[i] - mb) * (rb[i] - mb);
        }
        rho = saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
    }
    ib__free(ra);
    return rho;
}

/* ---- The ranker ---------------------------------------------------------------------- */
typedef struct point {
    int32_t group;
    double ms;
    float f[IB_TUNE_NFEAT];
} point;

struct ib__tune_cost_model {
    uint64_t seed;
    int32_t n, cap;
    point *pts;
    BoosterHandle booster; /* NULL until trained */
};

static ib_status xgb_fail(const char *what) {
    return ib__error(IB_ERR_INTERNAL, "cost model: %s: %s", what, XGBGetLastError());
}

ib_status ib__tune_cm_create(uint64_t seed, ib__tune_cost_model **out) {
    *out = NULL;
    ib__tune_cost_model *m = ib__calloc(1, sizeof *m);
    if (!m) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    m->seed = seed;
    /* XGBoost's own warnings would interleave with the tuner's progress lines */
    XGBSetGlobalConfig("{\"verbosity\": 0}");
    *out = m;
    return IB_OK;
}

void ib__tune_cm_destroy(ib__tune_cost_model *m) {
    if (!m) return;
    if (m->booster) XGBoosterFree(m->booster);
    ib__free(m->pts);
    ib__free(m);
}

void ib__tune_cm_clear(ib__tune_cost_model *m) { m->n = 0; }

int32_t ib__tune_cm_size(const ib__tune_cost_model *m) { return m->n; }

bool ib__tune_cm_ready(const ib__tune_cost_model *m) { return m->booster != NULL; }

ib_status ib__tune_cm_add(ib__tune_cost_model *m, int32_t group, const float *f, bool ok,
                          double ms) {
    /* A failed candidate (crash, hang, wrong output) says nothing about how fast the
     * configuration is, and its validity is decided by the template before measuring;
     * as a rank label it would teach the model that the correct but slow neighbours of
     * a broken corner are slow. Left out. */
    if (!ok || !(ms > 0) || !isfinite(ms)) return IB_OK;
    if (m->n == m->cap) {
        int32_t cap = m->cap ? m->cap * 2 : 256;
        point *p = ib__malloc((size_t)cap * sizeof *p);
        if (!p) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
        if (m->n) memcpy(p, m->pts, (size_t)m->n * sizeof *p);
        ib__free(m->pts);
        m->pts = p;
        m->cap = cap;
    }
    point *p = &m->pts[m->n++];
    p->group = group;
    p->ms = ms;
    memcpy(p->f, f, sizeof p->f);
    return IB_OK;
}

static int cmp_group(const void *a, const void *b) {
    const point *x = a, *y = b;
    if (x->group != y->group) return x->group < y->group ? -1 : 1;
    return x->ms < y->ms ? -1 : x->ms > y->ms ? 1 : 0;
}

ib_status ib__tune_cm_train(ib__tune_cost_model *m) {
    qsort(m->pts, (size_t)m->n, sizeof *m->pts, cmp_group);
    /* groups of one point carry no order: dropped */
    int32_t rows = 0, groups = 0;
    for (int32_t i = 0; i < m->n;) {
        int32_t j = i;
        while (j < m->n && m->pts[j].group == m->pts[i].group) j++;
        if (j - i >= 2) {
            rows += j - i;
            groups++;
        }
        i = j;
    }
    if (rows < 4) return ib__error(IB_ERR_INVALID_ARGUMENT, "cost model: too few points (%d)", rows);
    float *x = ib__malloc((size_t)rows * IB_TUNE_NFEAT * sizeof *x);
    float *label = ib__malloc((size_t)rows * sizeof *label);
    unsigned *gsize = ib__malloc((size_t)groups * sizeof *gsize);
    ib_status st = IB_OK;
    DMatrixHandle dm = NULL;
    BoosterHandle h = NULL;
    if (!x || !label || !gsize) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
        goto out;
    }
    int32_t r = 0, gi = 0;
    for (int32_t i = 0; i < m->n;) {
        int32_t j = i;
        while (j < m->n && m->pts[j].group == m->pts[i].group) j++;
        if (j - i >= 2) {
            /* relevance: the group's fastest over this one's time, so 1 is the best of its
             * workload and only the order within a workload matters (pairwise) */
            double best = m->pts[i].ms;
            for (int32_t q = i; q < j; q++, r++) {
                memcpy(x + (size_t)r * IB_TUNE_NFEAT, m->pts[q].f, sizeof m->pts[q].f);
                label[r] = (float)(best / m->pts[q].ms);
            }
            gsize[gi++] = (unsigned)(j - i);
        }
        i = j;
    }
    if (XGDMatrixCreateFromMat(x, (bst_ulong)rows, IB_TUNE_NFEAT, NAN, &dm) ||
        XGDMatrixSetFloatInfo(dm, "label", label, (bst_ulong)rows) ||
        XGDMatrixSetUIntInfo(dm, "group", gsize, (bst_ulong)groups)) {
        st = xgb_fail("training data");
        goto out;
    }
    if (XGBoosterCreate(&dm, 1, &h)) {
        st = xgb_fail("create");
        goto out;
    }
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)(m->seed % 1000000007ull));
    /* one thread: the tuner measures kernels on every core right after training, and
     * XGBoost's OpenMP pool would fight them; the parameters are TVM's for this job */
    const char *params[][2] = {
        {"objective", "rank:pairwise"}, {"nthread", "1"}, {"max_depth", "8"},
        {"eta", "0.2"}, {"gamma", "0.0001"}, {"min_child_weight", "0"},
        {"subsample", "1"}, {"tree_method", "exact"}, {"seed", seed}, {"verbosity", "0"},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        if (XGBoosterSetParam(h, params[i][0], params[i][1])) {
            st = xgb_fail("parameters");
            goto out;
        }
    for (int32_t it = 0; it < IB_TUNE_CM_ROUNDS; it++)
        if (XGBoosterUpdateOneIter(h, it, dm)) {
            st = xgb_fail("training");
            goto out;
        }
    if (m->booster) XGBoosterFree(m->booster);
    m->booster = h;
    h = NULL;
out:
    if (h) XGBoosterFree(h);
    if (dm) XGDMatrixFree(dm);
    ib__free(x);
    ib__free(label);
    ib__free(gsize);
    return st;
}

ib_status ib__tune_cm_predict(const ib__tune_cost_model *m, int32_t n, const float *f,
                              float *score) {
    if (!m->booster) return ib__error(IB_ERR_INVALID_ARGUMENT, "cost model: not trained");
    if (n <= 0) return IB_OK;
    DMatrixHandle dm = NULL;
    if (XGDMatrixCreateFromMat(f, (bst_ulong)n, IB_TUNE_NFEAT, NAN, &dm))
        return xgb_fail("prediction data");
    bst_ulong len = 0;
    const float *res = NULL;
    ib_status st = IB_OK;
    if (XGBoosterPredict(m->booster, dm, 0, 0, 0, &len, &res)) st = xgb_fail("prediction");
    else if (len != (bst_ulong)n) st = ib__error(IB_ERR_INTERNAL, "cost model: %llu scores for %d rows",
                                                 (unsigned long long)len, n);
    else memcpy(score, res, (size_t)n * sizeof *score);
    XGDMatrixFree(dm);
    return st;
}
