/* Loss ops: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss (with its optional
 * log_prob output) — shape rules and reference kernels. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"

typedef enum loss_reduction { RED_NONE, RED_SUM, RED_MEAN } loss_reduction;

typedef struct loss_attrs {
    loss_reduction reduction;
    bool has_ignore;
    int64_t ignore_index;
} loss_attrs;

static ib_status loss_attrs_read(const ib__node *node, loss_attrs *a) {
    const char *red = NULL;
    IB_TRY(ib__attr_string(node, "reduction", "mean", &red));
    if (strcmp(red, "none") == 0) a->reduction = RED_NONE;
    else if (strcmp(red, "sum") == 0) a->reduction = RED_SUM;
    else if (strcmp(red, "mean") == 0) a->reduction = RED_MEAN;
    else
        return ib__error(IB_ERR_INVALID_MODEL, "%s: unknown reduction '%s'", ib__node_label(node),
                         red);
    a->has_ignore = ib__node_attr(node, "ignore_index") != NULL;
    IB_TRY(ib__attr_int(node, "ignore_index", 0, &a->ignore_index));
    return IB_OK;
}

/* Checks input (N, C, d1..dk), target (N, d1..dk) and weight (C) against each other and
 * sets the loss output (target's shape for 'none', else a scalar) and, when asked, the
 * log_prob output (the input's shape). */
static ib_status infer_loss_common(ib__infer_ctx *c, bool with_log_prob) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    loss_attrs a;
    IB_TRY(loss_attrs_read(c->node, &a));
    const ib__value *x = c->in[0], *t = c->in[1], *w = ib__in(c, 2);
    if (x->dtype != IB_DTYPE_UNDEFINED && !ib__dtype_is_float(x->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: input dtype %s is not a float type",
                         ib__node_label(c->node), ib_dtype_name(x->dtype));
    if (t->dtype != IB_DTYPE_UNDEFINED && t->dtype != IB_DTYPE_INT32 &&
        t->dtype != IB_DTYPE_INT64)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: target dtype must be int32 or int64, not %s",
                         ib__node_label(c->node), ib_dtype_name(t->dtype));
    if (w && w->dtype != IB_DTYPE_UNDEFINED && x->dtype != IB_DTYPE_UNDEFINED &&
        w->dtype != x->dtype)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: weight dtype %s differs from input dtype %s",
                         ib__node_label(c->node), ib_dtype_name(w->dtype),
                         ib_dtype_name(x->dtype));
    if (x->rank >= 0 && x->rank < 2)
        return ib__error(IB_ERR_SHAPE, "%s: input must have rank >= 2 (N, C, ...), got %d",
                         ib__node_label(c->node), x->rank);
    if (x->rank >= 0 && t->rank >= 0) {
        if (t->rank != x->rank - 1)
            return ib__error(IB_ERR_SHAPE, "%s: target rank %d should be input rank %d minus 1",
                             ib__node_label(c->node), t->rank, x->rank);
        for (int32_t d = 0; d < t->rank; d++) {
            int64_t xd = x->dims[d == 0 ? 0 : d + 1], td = t->dims[d];
            if (xd >= 0 && td >= 0 && xd != td)
                return ib__error(IB_ERR_SHAPE, "%s: target dim %d is %lld, input has %lld",
                                 ib__node_label(c->node), d, (long long)td, (long long)xd);
        }
    }
    if (w && w->rank >= 0) {
        if (w->rank != 1)
            return ib__error(IB_ERR_SHAPE, "%s: weight must be 1-D, got rank %d",
                             ib__node_label(c->node), w->rank);
        if (x->rank >= 2 && x->dims[1] >= 0 && w->dims[0] >= 0 && w->dims[0] != x->dims[1])
            return ib__error(IB_ERR_SHAPE, "%s: weight has %lld entries for %lld classes",
                             ib__node_label(c->node), (long long)w->dims[0],
                             (long long)x->dims[1]);
    }
    if (a.reduction != RED_NONE) {
        ib__set_output(c, 0, x->dtype, 0, NULL);
    } else if (t->rank >= 0) {
        ib__set_output_like(c, 0, t);
        if (c->n_out > 0 && c->out[0]) c->out[0]->dtype = x->dtype;
    } else if (x->rank >= 2) {
        int64_t dims[IB_MAX_RANK];
        dims[0] = x->dims[0];
        for (int32_t d = 2; d < x->rank; d++) dims[d - 1] = x->dims[d];
        ib__set_output(c, 0, x->dtype, x->rank - 1, dims);
    } else {
        ib__set_output(c, 0, x->dtype, -1, NULL);
    }
    if (with_log_prob) ib__set_output_like(c, 1, x);
    return IB_OK;
}

static ib_status infer_nll(ib__infer_ctx *c) { return infer_loss_common(c, false); }
static ib_status infer_sce(ib__infer_ctx *c) { return infer_loss_common(c, true); }

/* The shared computation: `x` holds log-probabilities (NLL) or scores (SCE, turned into
 * log-probabilities per (n, d) column first, written to `log_prob` when given). */
static ib_status run_loss_common(ib__run_ctx *c, bool softmax) {
    const ib_tensor *x = c->in[0], *t = c->in[1];
    const ib_tensor *w = (c->n_in > 2) ? c->in[2] : NULL;
    ib_tensor *loss = c->out[0];
    ib_tensor *log_prob = (softmax && c->n_out > 1) ? c->out[1] : NULL;
    loss_attrs a;
    IB_TRY(loss_attrs_read(c->node, &a));
    int64_t n = x->shape[0], cls = x->shape[1];
    int64_t inner = ib__shape_count(x->shape + 2, x->rank - 2);
    if (inner < 0) return ib__error(IB_ERR_SHAPE, "%s: bad input shape", ib__node_label(c->node));
    if (w && ib_tensor_element_count(w) != cls)
        return ib__error(IB_ERR_SHAPE, "%s: weight has %lld entries for %lld classes",
                         ib__node_label(c->node), (long long)ib_tensor_element_count(w),
                         (long long)cls);
    if (ib_tensor_element_count(t) != n * inner)
        return ib__error(IB_ERR_SHAPE, "%s: target holds %lld labels, expected %lld",
                         ib__node_label(c->node), (long long)ib_tensor_element_count(t),
                         (long long)(n * inner));
    double total = 0.0, weight_sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t d = 0; d < inner; d++) {
            int64_t col = i * cls * inner + d; /* element (i, 0, d) */
            int64_t label = ib__load_i64(t->data, t->dtype, i * inner + d);
            double max = -INFINITY, lse = 0.0;
            if (softmax) {
                for (int64_t k = 0; k < cls; k++) {
                    double v = ib__load_f64(x->data, x->dtype, col + k * inner);
                    if (v > max || v != v) max = v;
                }
                double s = 0.0;
                for (int64_t k = 0; k < cls; k++)
                    s += exp(ib__load_f64(x->data, x->dtype, col + k * inner) - max);
                lse = max + log(s);
                if (log_prob)
                    for (int64_t k = 0; k < cls; k++)
                        ib__store_f64(log_prob->data, log_prob->dtype, col + k * inner,
                                      ib__load_f64(x->data, x->dtype, col + k * inner) - lse);
            }
            double l = 0.0, wt = 0.0;
            if (!(a.has_ignore && label == a.ignore_index)) {
                if (label < 0 || label >= cls)
                    return ib__error(IB_ERR_INVALID_ARGUMENT,
                                     "%s: target label %lld is outside [0, %lld)",
                                     ib__node_label(c->node), (long long)label, (long long)cls);
                wt = w ? ib__load_f64(w->data, w->dtype, label) : 1.0;
                double lp = ib__load_f64(x->data, x->dtype, col + label * inner);
                if (softmax) lp -= lse;
                l = -lp * wt;
            }
            if (a.reduction == RED_NONE) ib__store_f64(loss->data, loss->dtype, i * inner + d, l);
            total += l;
            weight_sum += wt;
        }
    }
    if (a.reduction == RED_SUM) ib__store_f64(loss->data, loss->dtype, 0, total);
    else if (a.reduction == RED_MEAN)
        ib__store_f64(loss->data, loss->dtype, 0, total / weight_sum);
    return IB_OK;
}

static ib_status run_nll(ib__run_ctx *c) { return run_loss_common(c, false); }
static ib_status run_sce(ib__run_ctx *c) { return run_loss_common(c, true); }

const ib__op_def ib__ops_loss[] = {
    {IB_OP_NEGATIVE_LOG_LIKELIHOOD_LOSS, infer_nll, run_nll},
    {IB_OP_SOFTMAX_CROSS_ENTROPY_LOSS, infer_sce, run_sce},
    {IB_OP_UNKNOWN, NULL, NULL},
};
