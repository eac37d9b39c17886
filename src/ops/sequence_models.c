/* Recurrent layers: RNN, GRU and LSTM (forward, reverse, bidirectional; layout 0/1;
 * sequence_lens; initial states; peepholes; clip) — shape rules and reference kernels.
 * The kernels compute in double: the input projection for all steps at once, then the
 * recurrence step by step. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ops/ops.h"

typedef enum rnn_kind { KIND_RNN, KIND_GRU, KIND_LSTM } rnn_kind;

typedef enum act_kind {
    ACT_RELU,
    ACT_TANH,
    ACT_SIGMOID,
    ACT_AFFINE,
    ACT_LEAKY_RELU,
    ACT_THRESHOLDED_RELU,
    ACT_SCALED_TANH,
    ACT_HARD_SIGMOID,
    ACT_ELU,
    ACT_SOFTSIGN,
    ACT_SOFTPLUS,
} act_kind;

typedef struct act_fn {
    act_kind kind;
    double alpha, beta;
} act_fn;

static const struct {
    const char *name;
    act_kind kind;
    bool uses_alpha, uses_beta;
    double alpha, beta; /* defaults */
} k_acts[] = {
    {"Relu", ACT_RELU, false, false, 0, 0},
    {"Tanh", ACT_TANH, false, false, 0, 0},
    {"Sigmoid", ACT_SIGMOID, false, false, 0, 0},
    {"Affine", ACT_AFFINE, true, true, 1.0, 0.0},
    {"LeakyRelu", ACT_LEAKY_RELU, true, false, 0.01, 0},
    {"ThresholdedRelu", ACT_THRESHOLDED_RELU, true, false, 1.0, 0},
    {"ScaledTanh", ACT_SCALED_TANH, true, true, 1.0, 1.0},
    {"HardSigmoid", ACT_HARD_SIGMOID, true, true, 0.2, 0.5},
    {"Elu", ACT_ELU, true, false, 1.0, 0},
    {"Softsign", ACT_SOFTSIGN, false, false, 0, 0},
    {"Softplus", ACT_SOFTPLUS, false, false, 0, 0},
};

static double act_apply(const act_fn *f, double x) {
    switch (f->kind) {
    case ACT_RELU: return x > 0 ? x : 0;
    case ACT_TANH: return tanh(x);
    case ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case ACT_AFFINE: return f->alpha * x + f->beta;
    case ACT_LEAKY_RELU: return x >= 0 ? x : f->alpha * x;
    case ACT_THRESHOLDED_RELU: return x >= f->alpha ? x : 0;
    case ACT_SCALED_TANH: return f->alpha * tanh(f->beta * x);
    case ACT_HARD_SIGMOID: {
        double v = f->alpha * x + f->beta;
        return v < 0 ? 0 : v > 1 ? 1 : v;
    }
    case ACT_ELU: return x >= 0 ? x : f->alpha * (exp(x) - 1);
    case ACT_SOFTSIGN: return x / (1 + fabs(x));
    case ACT_SOFTPLUS: return log1p(exp(x));
    }
    return x;
}

#define MAX_ACTS 3 /* per direction: LSTM f, g, h */

typedef struct rnn_attrs {
    rnn_kind kind;
    int32_t gates;      /* 1, 3 or 4 */
    int32_t n_act;      /* activations per direction */
    int64_t hidden;     /* -1 when the attribute is absent */
    int32_t dirs;       /* 1 or 2 */
    bool reverse;       /* direction == reverse (dirs == 1) */
    int64_t layout;
    bool has_clip;
    double clip;
    bool linear_before_reset;
    bool input_forget;
    act_fn acts[2][MAX_ACTS];
} rnn_attrs;

static rnn_kind kind_of(ib__op_id op) {
    return op == IB_OP_LSTM ? KIND_LSTM : op == IB_OP_GRU ? KIND_GRU : KIND_RNN;
}

static ib_status rnn_attrs_read(const ib__node *node, rnn_attrs *a) {
    memset(a, 0, sizeof *a);
    a->kind = kind_of(node->op);
    a->gates = a->kind == KIND_LSTM ? 4 : a->kind == KIND_GRU ? 3 : 1;
    a->n_act = a->kind == KIND_LSTM ? 3 : a->kind == KIND_GRU ? 2 : 1;
    IB_TRY(ib__attr_int(node, "hidden_size", -1, &a->hidden));
    if (ib__node_attr(node, "hidden_size") && a->hidden <= 0)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: hidden_size must be positive, got %lld",
                         ib__node_label(node), (long long)a->hidden);
    const char *dir = NULL;
    IB_TRY(ib__attr_string(node, "direction", "forward", &dir));
    if (strcmp(dir, "forward") == 0) a->dirs = 1;
    else if (strcmp(dir, "reverse") == 0) {
        a->dirs = 1;
        a->reverse = true;
    } else if (strcmp(dir, "bidirectional") == 0) a->dirs = 2;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: unknown direction '%s'", ib__node_label(node),
                         dir);
    IB_TRY(ib__attr_int(node, "layout", 0, &a->layout));
    if (a->layout != 0 && a->layout != 1)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: layout must be 0 or 1, got %lld",
                         ib__node_label(node), (long long)a->layout);
    a->has_clip = ib__node_attr(node, "clip") != NULL;
    float clip = 0;
    IB_TRY(ib__attr_float(node, "clip", 0.0f, &clip));
    a->clip = clip;
    if (a->has_clip && !(clip > 0))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: clip must be positive", ib__node_label(node));
    int64_t v;
    IB_TRY(ib__attr_int(node, "linear_before_reset", 0, &v));
    a->linear_before_reset = v != 0;
    IB_TRY(ib__attr_int(node, "input_forget", 0, &v));
    a->input_forget = v != 0;

    /* Activations: defaults per kind; a list of n_act (shared) or n_act * dirs. */
    static const act_kind dflt[3][MAX_ACTS] = {
        {ACT_TANH}, {ACT_SIGMOID, ACT_TANH}, {ACT_SIGMOID, ACT_TANH, ACT_TANH}};
    const ib__attr *names = ib__node_attr(node, "activations");
    int32_t n_alpha = 0, n_beta = 0;
    const float *alphas = NULL, *betas = NULL;
    IB_TRY(ib__attr_floats(node, "activation_alpha", &n_alpha, &alphas));
    IB_TRY(ib__attr_floats(node, "activation_beta", &n_beta, &betas));
    if (names && names->kind != IB_ATTR_STRINGS)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'activations' must be strings",
                         ib__node_label(node));
    int32_t count = names ? names->count : 0;
    if (count != 0 && count != a->n_act && count != a->n_act * a->dirs)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: expected %d activations, got %d",
                         ib__node_label(node), a->n_act * a->dirs, count);
    int32_t ia = 0, ib = 0;
    for (int32_t d = 0; d < a->dirs; d++) {
        for (int32_t k = 0; k < a->n_act; k++) {
            act_fn *f = &a->acts[d][k];
            if (count == 0) {
                f->kind = dflt[a->kind][k];
                continue;
            }
            const char *name = names->strings[(count == a->n_act) ? k : d * a->n_act + k];
            size_t which = sizeof k_acts / sizeof k_acts[0];
            for (size_t t = 0; t < sizeof k_acts / sizeof k_acts[0]; t++)
                if (name && strcasecmp(name, k_acts[t].name) == 0) which = t;
            if (which == sizeof k_acts / sizeof k_acts[0])
                return ib__error(IB_ERR_UNSUPPORTED, "%s: activation '%s' is not supported",
                                 ib__node_label(node), name ? name : "");
            f->kind = k_acts[which].kind;
            /* Alphas and betas are consumed only by the functions that take them. */
            f->alpha = k_acts[which].alpha;
            f->beta = k_acts[which].beta;
            if (k_acts[which].uses_alpha && ia < n_alpha) f->alpha = alphas[ia++];
            if (k_acts[which].uses_beta && ib < n_beta) f->beta = betas[ib++];
        }
    }
    return IB_OK;
}

/* ---- Shape inference ---------------------------------------------------------------- */

static ib_status infer_rnn(ib__infer_ctx *c) {
    rnn_attrs a;
    IB_TRY(rnn_attrs_read(c->node, &a));
    for (int32_t i = 0; i < 3; i++) IB_TRY(ib__require_input(c, i));
    const ib__value *x = c->in[0], *w = c->in[1], *r = c->in[2];
    if (x->dtype != IB_DTYPE_UNDEFINED && !ib__dtype_is_float(x->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input X dtype %s is not a float type",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    const ib__value *ranked[3] = {x, w, r};
    const char *names[3] = {"X", "W", "R"};
    for (int32_t i = 0; i < 3; i++)
        if (ranked[i]->rank >= 0 && ranked[i]->rank != 3)
            return ib__error(IB_ERR_SHAPE, "%s: input %s must have rank 3, got %d",
                             ib__node_label(c->node), names[i], ranked[i]->rank);
    int64_t hidden = a.hidden;
    if (hidden < 0 && r->rank == 3) hidden = r->dims[2];
    if (w->rank == 3) {
        if (w->dims[0] >= 0 && w->dims[0] != a.dirs)
            return ib__error(IB_ERR_SHAPE, "%s: W has %lld directions, expected %d",
                             ib__node_label(c->node), (long long)w->dims[0], a.dirs);
        if (hidden >= 0 && w->dims[1] >= 0 && w->dims[1] != a.gates * hidden)
            return ib__error(IB_ERR_SHAPE, "%s: W dim 1 is %lld, expected %lld",
                             ib__node_label(c->node), (long long)w->dims[1],
                             (long long)(a.gates * hidden));
        if (x->rank == 3 && x->dims[2] >= 0 && w->dims[2] >= 0 && x->dims[2] != w->dims[2])
            return ib__error(IB_ERR_SHAPE, "%s: X has input size %lld but W expects %lld",
                             ib__node_label(c->node), (long long)x->dims[2],
                             (long long)w->dims[2]);
    }
    if (r->rank == 3 && hidden >= 0 &&
        ((r->dims[1] >= 0 && r->dims[1] != a.gates * hidden) ||
         (r->dims[2] >= 0 && r->dims[2] != hidden)))
        return ib__error(IB_ERR_SHAPE, "%s: R has shape [%lld, %lld, %lld], expected [%d, %lld, %lld]",
                         ib__node_label(c->node), (long long)r->dims[0], (long long)r->dims[1],
                         (long long)r->dims[2], a.dirs, (long long)(a.gates * hidden),
                         (long long)hidden);
    int64_t seq = -1, batch = -1;
    const char *seq_p = NULL, *batch_p = NULL;
    if (x->rank == 3) {
        int32_t si = a.layout ? 1 : 0, bi = a.layout ? 0 : 1;
        seq = x->dims[si];
        batch = x->dims[bi];
        seq_p = x->dim_param[si];
        batch_p = x->dim_param[bi];
    }
    ib_dtype dt = x->dtype;
    int64_t y[4], yh[3];
    if (a.layout == 0) {
        y[0] = seq, y[1] = a.dirs, y[2] = batch, y[3] = hidden;
        yh[0] = a.dirs, yh[1] = batch, yh[2] = hidden;
    } else {
        y[0] = batch, y[1] = seq, y[2] = a.dirs, y[3] = hidden;
        yh[0] = batch, yh[1] = a.dirs, yh[2] = hidden;
    }
    ib__set_output(c, 0, dt, 4, y);
    ib__set_output(c, 1, dt, 3, yh);
    if (a.kind == KIND_LSTM) ib__set_output(c, 2, dt, 3, yh);
    /* Keep the symbolic names of the sequence and batch dims. */
    if (c->n_out > 0 && c->out[0]) {
        c->out[0]->dim_param[a.layout ? 1 : 0] = seq_p;
        c->out[0]->dim_param[a.layout ? 0 : 2] = batch_p;
    }
    for (int32_t i = 1; i < 3 && i < c->n_out; i++)
        if (c->out[i]) c->out[i]->dim_param[a.layout ? 0 : 1] = batch_p;
    return IB_OK;
}

/* ---- Kernels ------------------------------------------------------------------------ */

static void load_all(const ib_tensor *t, double *dst, int64_t n) {
    if (t->dtype == IB_DTYPE_FLOAT32) {
        const float *p = t->data;
        for (int64_t i = 0; i < n; i++) dst[i] = p[i];
    } else {
        for (int64_t i = 0; i < n; i++) dst[i] = ib__load_f64(t->data, t->dtype, i);
    }
}

/* Requires tensor t (named for the message) to have exactly the given shape. */
static ib_status check_shape(const ib__node *node, const char *name, const ib_tensor *t,
                             int32_t rank, const int64_t *dims) {
    bool ok = t->rank == rank;
    for (int32_t d = 0; ok && d < rank; d++) ok = t->shape[d] == dims[d];
    if (ok) return IB_OK;
    char want[128] = "", have[128] = "";
    size_t at = 0;
    for (int32_t d = 0; d < rank && at < sizeof want; d++)
        at += (size_t)snprintf(want + at, sizeof want - at, d ? ", %lld" : "%lld", (long long)dims[d]);
    at = 0;
    for (int32_t d = 0; d < t->rank && at < sizeof have; d++)
        at += (size_t)snprintf(have + at, sizeof have - at, d ? ", %lld" : "%lld",
                               (long long)t->shape[d]);
    return ib__error(IB_ERR_SHAPE, "%s: input %s has shape [%s], expected [%s]",
                     ib__node_label(node), name, have, want);
}

typedef struct proj_job {
    const double *x; /* [rows, k] */
    const double *w; /* [n, k] */
    const double *bias; /* [n] or NULL */
    double *out;     /* [rows, n] */
    int64_t k, n;
} proj_job;

/* out[row] = x[row] * w^T + bias, for a range of rows. */
static void proj_range(void *ctx, int64_t begin, int64_t end) {
    const proj_job *j = ctx;
    for (int64_t row = begin; row < end; row++) {
        const double *xr = j->x + row * j->k;
        double *o = j->out + row * j->n;
        for (int64_t col = 0; col < j->n; col++) {
            const double *wr = j->w + col * j->k;
            double s = j->bias ? j->bias[col] : 0.0;
            for (int64_t t = 0; t < j->k; t++) s += xr[t] * wr[t];
            o[col] = s;
        }
    }
}

static inline double clip_v(const rnn_attrs *a, double v) {
    if (!a->has_clip) return v;
    return v < -a->clip ? -a->clip : v > a->clip ? a->clip : v;
}

typedef struct recur_job {
    const rnn_attrs *a;
    int64_t d;
    bool rev;
    int64_t seq, batch, H, gh, D;
    const double *rd, *rb, *pd; /* R, its bias and the peepholes of this direction */
    const act_fn *acts;
    const double *proj;         /* X * W^T + Wb, [seq][batch][gh] */
    double *hs, *cs;            /* states [dir][batch][H] */
    const ib_tensor *SL;
    ib_tensor *Y;
    bool failed;
} recur_job;

/* The recurrence of one direction for a range of batch entries, which are independent. */
static void recur_range(void *ctx, int64_t begin, int64_t end) {
    recur_job *j = ctx;
    const rnn_attrs a = *j->a;
    int64_t seq = j->seq, batch = j->batch, H = j->H, gh = j->gh, D = j->D, d = j->d;
    const double *rd = j->rd, *rb = j->rb, *pd = j->pd, *proj = j->proj;
    const act_fn *acts = j->acts;
    const ib_tensor *SL = j->SL;
    ib_tensor *Y = j->Y;
    bool rev = j->rev;
    double *tmp = ib__aligned_alloc((size_t)(3 * gh > 0 ? 3 * gh : 1) * sizeof(double));
    if (!tmp) {
        j->failed = true;
        return;
    }
    double *hs = j->hs, *cs = j->cs;
    for (int64_t b = begin; b < end; b++) {
        int64_t len = SL ? ib__load_i64(SL->data, SL->dtype, b) : seq;
        double *h = hs + (d * batch + b) * H, *cell = cs + (d * batch + b) * H;
        for (int64_t step = 0; step < len; step++) {
            int64_t t = rev ? len - 1 - step : step;
            const double *xp = proj + (t * batch + b) * gh;
            /* hr = h * R^T + Rb (for GRU's hidden gate computed below instead). */
            int64_t rows = (a.kind == KIND_GRU && !a.linear_before_reset) ? 2 * H : gh;
            for (int64_t row = 0; row < rows; row++) {
                const double *rr = rd + row * H;
                double s = rb[row];
                for (int64_t k = 0; k < H; k++) s += h[k] * rr[k];
                tmp[row] = s;
            }
            if (a.kind == KIND_RNN) {
                for (int64_t k = 0; k < H; k++)
                    h[k] = act_apply(&acts[0], clip_v(&a, xp[k] + tmp[k]));
            } else if (a.kind == KIND_GRU) {
                double *z = tmp + gh, *rg = z + H; /* spare scratch past tmp's gh */
                for (int64_t k = 0; k < H; k++) {
                    z[k] = act_apply(&acts[0], clip_v(&a, xp[k] + tmp[k]));
                    rg[k] = act_apply(&acts[0], clip_v(&a, xp[H + k] + tmp[H + k]));
                }
                double *hh = rg + H;
                for (int64_t k = 0; k < H; k++) {
                    double pre;
                    if (a.linear_before_reset) {
                        pre = xp[2 * H + k] + rg[k] * tmp[2 * H + k];
                    } else {
                        const double *rr = rd + (2 * H + k) * H;
                        double s = rb[2 * H + k];
                        for (int64_t q = 0; q < H; q++) s += rg[q] * h[q] * rr[q];
                        pre = xp[2 * H + k] + s;
                    }
                    hh[k] = act_apply(&acts[1], clip_v(&a, pre));
                }
                for (int64_t k = 0; k < H; k++) h[k] = (1 - z[k]) * hh[k] + z[k] * h[k];
            } else { /* LSTM, gate order i, o, f, c */
                for (int64_t k = 0; k < H; k++) {
                    double cp = cell[k];
                    double gi = act_apply(&acts[0],
                                          clip_v(&a, xp[k] + tmp[k] + pd[k] * cp));
                    double gf = a.input_forget
                                    ? 1.0 - gi
                                    : act_apply(&acts[0], clip_v(&a, xp[2 * H + k] +
                                                                         tmp[2 * H + k] +
                                                                         pd[2 * H + k] * cp));
                    double gc = act_apply(&acts[1], clip_v(&a, xp[3 * H + k] + tmp[3 * H + k]));
                    double cn = gf * cp + gi * gc;
                    double go = act_apply(&acts[0],
                                          clip_v(&a, xp[H + k] + tmp[H + k] + pd[H + k] * cn));
                    cell[k] = cn;
                    h[k] = go * act_apply(&acts[2], cn);
                }
            }
            if (Y) {
                for (int64_t k = 0; k < H; k++) {
                    int64_t at = a.layout ? ((b * seq + t) * D + d) * H + k
                                          : ((t * D + d) * batch + b) * H + k;
                    ib__store_f64(Y->data, Y->dtype, at, h[k]);
                }
            }
        }
    }
    ib__aligned_free(tmp);
}

static ib_status run_rnn(ib__run_ctx *c) {
    const ib__node *node = c->node;
    rnn_attrs a;
    IB_TRY(rnn_attrs_read(node, &a));
    const ib_tensor *X = c->in[0], *W = c->in[1], *R = c->in[2];
    const ib_tensor *B = c->n_in > 3 ? c->in[3] : NULL;
    const ib_tensor *SL = c->n_in > 4 ? c->in[4] : NULL;
    const ib_tensor *H0 = c->n_in > 5 ? c->in[5] : NULL;
    const ib_tensor *C0 = (a.kind == KIND_LSTM && c->n_in > 6) ? c->in[6] : NULL;
    const ib_tensor *P = (a.kind == KIND_LSTM && c->n_in > 7) ? c->in[7] : NULL;
    ib_tensor *Y = c->n_out > 0 ? c->out[0] : NULL;
    ib_tensor *YH = c->n_out > 1 ? c->out[1] : NULL;
    ib_tensor *YC = (a.kind == KIND_LSTM && c->n_out > 2) ? c->out[2] : NULL;

    if (X->rank != 3 || R->rank != 3)
        return ib__error(IB_ERR_SHAPE, "%s: X and R must have rank 3", ib__node_label(node));
    int64_t seq = a.layout ? X->shape[1] : X->shape[0];
    int64_t batch = a.layout ? X->shape[0] : X->shape[1];
    int64_t in_size = X->shape[2];
    int64_t H = a.hidden >= 0 ? a.hidden : R->shape[2];
    if (H < 0 || H > IB_MAX_ELEMENTS)
        return ib__error(IB_ERR_SHAPE, "%s: bad hidden size %lld", ib__node_label(node),
                         (long long)H);
    int64_t G = a.gates, D = a.dirs;
    int64_t gh = G * H;
    int64_t wdims[3] = {D, gh, in_size}, rdims[3] = {D, gh, H};
    IB_TRY(check_shape(node, "W", W, 3, wdims));
    IB_TRY(check_shape(node, "R", R, 3, rdims));
    if (B) {
        int64_t bd[2] = {D, 2 * gh};
        IB_TRY(check_shape(node, "B", B, 2, bd));
    }
    if (SL) {
        int64_t sd[1] = {batch};
        IB_TRY(check_shape(node, "sequence_lens", SL, 1, sd));
        if (SL->dtype != IB_DTYPE_INT32 && SL->dtype != IB_DTYPE_INT64)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: sequence_lens must be int32",
                             ib__node_label(node));
        for (int64_t b = 0; b < batch; b++) {
            int64_t l = ib__load_i64(SL->data, SL->dtype, b);
            if (l < 0 || l > seq)
                return ib__error(IB_ERR_INVALID_ARGUMENT,
                                 "%s: sequence_lens[%lld] = %lld is outside [0, %lld]",
                                 ib__node_label(node), (long long)b, (long long)l,
                                 (long long)seq);
        }
    }
    int64_t sdims[3];
    if (a.layout) sdims[0] = batch, sdims[1] = D, sdims[2] = H;
    else sdims[0] = D, sdims[1] = batch, sdims[2] = H;
    if (H0) IB_TRY(check_shape(node, "initial_h", H0, 3, sdims));
    if (C0) IB_TRY(check_shape(node, "initial_c", C0, 3, sdims));
    if (P) {
        int64_t pd[2] = {D, 3 * H};
        IB_TRY(check_shape(node, "P", P, 2, pd));
    }

    /* Scratch: X in [seq][batch][in] order, weights, biases, projections, states. Sizes are
     * checked: an empty X may carry absurd dims. */
    int64_t sizes[] = {seq, batch, in_size, H, G, D};
    int64_t sb = ib__shape_count(sizes, 2);
    int64_t ghd[3] = {sb, G, H};
    if (sb < 0 || ib__shape_count(ghd, 3) < 0 || ib__shape_count(sizes + 2, 4) < 0)
        return ib__error(IB_ERR_SHAPE, "%s: shapes are too large", ib__node_label(node));
    int64_t n_x = seq * batch * in_size, n_w = D * gh * in_size, n_r = D * gh * H;
    int64_t n_b = D * 2 * gh, n_p = D * 3 * H, n_proj = seq * batch * gh;
    int64_t n_state = D * batch * H;
    int64_t total = n_x + n_w + n_r + n_b + n_p + n_proj + 2 * n_state;
    double *buf = ib__aligned_alloc((size_t)(total > 0 ? total : 1) * sizeof(double));
    if (!buf) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(node));
    memset(buf, 0, (size_t)(total > 0 ? total : 1) * sizeof(double));
    double *xs = buf, *ws = xs + n_x, *rs = ws + n_w, *bs = rs + n_r, *ps = bs + n_b;
    double *proj = ps + n_p, *hs = proj + n_proj, *cs = hs + n_state;

    for (int64_t s = 0; s < seq; s++)
        for (int64_t b = 0; b < batch; b++) {
            int64_t src = a.layout ? (b * seq + s) : (s * batch + b);
            for (int64_t i = 0; i < in_size; i++)
                xs[(s * batch + b) * in_size + i] = ib__load_f64(X->data, X->dtype, src * in_size + i);
        }
    load_all(W, ws, n_w);
    load_all(R, rs, n_r);
    if (B) load_all(B, bs, n_b);
    if (P) load_all(P, ps, n_p);
    /* States as [dir][batch][H]. */
    for (int64_t d = 0; d < D; d++)
        for (int64_t b = 0; b < batch; b++)
            for (int64_t k = 0; k < H; k++) {
                int64_t src = a.layout ? ((b * D + d) * H + k) : ((d * batch + b) * H + k);
                int64_t dst = (d * batch + b) * H + k;
                if (H0) hs[dst] = ib__load_f64(H0->data, H0->dtype, src);
                if (C0) cs[dst] = ib__load_f64(C0->data, C0->dtype, src);
            }

    for (int64_t d = 0; d < D; d++) {
        bool rev = (D == 2) ? d == 1 : a.reverse;
        const double *wd = ws + d * gh * in_size, *rd = rs + d * gh * H;
        const double *wb = bs + d * 2 * gh, *rb = wb + gh, *pd = ps + d * 3 * H;
        const act_fn *acts = a.acts[d];
        proj_job pj = {.x = xs, .w = wd, .bias = wb, .out = proj, .k = in_size, .n = gh};
        ib__parallel_for(c->pool, seq * batch, proj_range, &pj);
        recur_job rj = {.a = &a, .d = d, .rev = rev, .seq = seq, .batch = batch, .H = H,
                        .gh = gh, .D = D, .rd = rd, .rb = rb, .pd = pd, .acts = acts,
                        .proj = proj, .hs = hs, .cs = cs, .SL = SL, .Y = Y};
        ib__parallel_for(batch > 1 ? c->pool : NULL, batch, recur_range, &rj);
        if (rj.failed) {
            ib__aligned_free(buf);
            return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(node));
        }
    }
    for (int64_t d = 0; d < D; d++)
        for (int64_t b = 0; b < batch; b++)
            for (int64_t k = 0; k < H; k++) {
                int64_t src = (d * batch + b) * H + k;
                int64_t at = a.layout ? ((b * D + d) * H + k) : src;
                if (YH) ib__store_f64(YH->data, YH->dtype, at, hs[src]);
                if (YC) ib__store_f64(YC->data, YC->dtype, at, cs[src]);
            }
    ib__aligned_free(buf);
    return IB_OK;
}

const ib__op_def ib__ops_sequence_models[] = {
    {IB_OP_RNN, infer_rnn, run_rnn},
    {IB_OP_GRU, infer_rnn, run_rnn},
    {IB_OP_LSTM, infer_rnn, run_rnn},
    {IB_OP_UNKNOWN, NULL, NULL},
};
