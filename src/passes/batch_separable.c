/* Batch separability analysis (see batch_separable.h): one forward walk in topological
 * order giving each value a state: constant (independent of the inputs), batched (dim 0
 * is the batch, row i depends only on sample i) or unproven; outputs must be batched.
 * The rules are deliberately conservative: an op or attribute not listed, an unknown
 * rank where an axis must be normalised, or a constant that would need the batch size
 * (a Reshape to [N, ...] computed from Shape) all make the graph "not separable", and the
 * session then compiles per exact size as before. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "passes/batch_separable.h"

/* ST_SHAPE: Shape of a batched value ([N, d1, ...]): only ConstantOfShape may read it
 * (its result is batched: the same value in every row). */
enum { ST_UNPROVEN = 0, ST_CONST, ST_BATCH, ST_SHAPE };

typedef struct walk {
    const ib__graph *g;
    uint8_t *state; /* per value index */
    ib__batch_verdict *out;
} walk;

static bool refuse(walk *w, const ib__node *n, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n)
        snprintf(w->out->reason, sizeof w->out->reason, "%s: %s", ib__node_label(n), msg);
    else
        snprintf(w->out->reason, sizeof w->out->reason, "%s", msg);
    return false;
}

static int state_of(const walk *w, const ib__value *v) {
    if (!v) return ST_CONST; /* an omitted optional input */
    if (v->constant) return ST_CONST;
    if (v->index < 0 || v->index >= w->g->n_values || w->g->values[v->index] != v)
        return ST_UNPROVEN; /* not of this graph */
    return w->state[v->index];
}

static bool is_op(const ib__node *n, const char *const *list) {
    for (; *list; list++)
        if (strcmp(n->op_type, *list) == 0) return true;
    return false;
}

/* One output per element of the same position of its (first) input. */
static const char *const UNARY[] = {
    "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Abs", "Neg", "Clip", "LeakyRelu",
    "HardSigmoid", "HardSwish", "Erf", "Identity", "Cast", "Softplus", "Softsign", "Elu",
    "Selu", "Celu", "Gelu", "Mish", "ThresholdedRelu", "Dropout", "Not", "Floor", "Ceil",
    "Round", "Reciprocal", "Sign", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh",
    "Cosh", "Asinh", "Acosh", "Atanh", "IsNaN", "IsInf", "Shrink", "CastLike", NULL};
/* Broadcasting element-wise ops over all their inputs. */
static const char *const BROADCAST[] = {
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Equal", "Less",
    "Greater", "LessOrEqual", "GreaterOrEqual", "Where", "And", "Or", "Xor", "PRelu",
    "Mod", "BitShift", NULL};
/* Per-sample ops: input 0 is [N, C, ...]; the other inputs are parameters. */
static const char *const PER_SAMPLE[] = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "LpPool", "GlobalLpPool", "InstanceNormalization", "LRN",
    "DepthToSpace", "SpaceToDepth", "GroupNormalization", NULL};
static const char *const REDUCE[] = {
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
    "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", NULL};

/* Reads a constant's integers (int64 or int32); false when it is not one. */
static bool const_ints(const ib__value *v, int64_t *vals, int32_t cap, int32_t *count) {
    if (!v || !v->constant) return false;
    const ib_tensor *t = v->constant;
    size_t es = t->dtype == IB_DTYPE_INT64 ? 8 : t->dtype == IB_DTYPE_INT32 ? 4 : 0;
    if (!es || t->rank > 1 || (t->nbytes && !t->data)) return false;
    size_t n = t->nbytes / es;
    if (n > (size_t)cap) return false;
    for (size_t i = 0; i < n; i++)
        vals[i] = es == 8 ? ((const int64_t *)t->data)[i] : ((const int32_t *)t->data)[i];
    *count = (int32_t)n;
    return true;
}

/* Whether the list of axes (attribute or constant input) leaves axis 0 alone; `rank`
 * normalises negative axes (-1: unknown). */
static bool axes_avoid_zero(const int64_t *axes, int32_t n, int32_t rank) {
    for (int32_t i = 0; i < n; i++) {
        int64_t a = axes[i];
        if (a < 0) {
            if (rank < 0) return false;
            a += rank;
        }
        if (a == 0) return false;
    }
    return true;
}

/* The node's axes from its attribute, or else from input `input` (a constant); *given
 * false when neither is present. */
static bool node_axes(const ib__node *n, int32_t input, int64_t *axes, int32_t *count,
                      bool *given) {
    *given = false;
    *count = 0;
    const ib__attr *a = ib__node_attr(n, "axes");
    if (a) {
        if (a->kind != IB_ATTR_INTS || a->count > IB_MAX_RANK * 2) return false;
        for (int32_t i = 0; i < a->count; i++) axes[i] = a->ints[i];
        *count = a->count;
        *given = true;
        return true;
    }
    if (input < n->n_inputs && n->inputs[input]) {
        *given = true;
        return const_ints(n->inputs[input], axes, IB_MAX_RANK * 2, count);
    }
    return true;
}

/* An int attribute normalised as an axis of a value of `rank`; false when it is absent
 * where required, not an int, or negative with the rank unknown. */
static bool axis_attr(const ib__node *n, const char *name, int64_t dflt, int32_t rank,
                      int64_t *axis) {
    int64_t a;
    if (ib__attr_int(n, name, dflt, &a) != IB_OK) {
        ib__error_clear();
        return false;
    }
    if (a < 0) {
        if (rank < 0) return false;
        a += rank;
    }
    *axis = a;
    return true;
}

/* A constant operand (an initializer, or computed from initializers only) broadcast
 * against a batched result of rank `rank`: it must not reach dim 0 with a size other
 * than 1, nor add leading axes. Its shape is the value's: a computed constant has no
 * tensor attached yet. */
static bool const_broadcasts(const ib__value *v, int32_t rank) {
    if (!v) return true;
    int32_t r = v->constant ? v->constant->rank : v->rank;
    if (r < 0) return false;
    int64_t d0 = r == 0 ? 1 : v->constant ? v->constant->shape[0] : v->dims[0];
    return r < rank || (r == rank && d0 == 1);
}

static bool rule_broadcast(walk *w, const ib__node *n) {
    int32_t rank = -1;
    bool any = false;
    for (int32_t i = 0; i < n->n_inputs; i++) {
        const ib__value *v = n->inputs[i];
        int s = state_of(w, v);
        if (s == ST_UNPROVEN) return refuse(w, n, "input '%s' not proven per sample", v->name);
        if (s == ST_BATCH) {
            if (v->rank < 1) return refuse(w, n, "batched input '%s' of unknown rank", v->name);
            if (rank >= 0 && v->rank != rank)
                return refuse(w, n, "batched inputs of different ranks broadcast dim 0 "
                              "against another axis");
            rank = v->rank;
            any = true;
        }
    }
    if (!any) return true; /* all constant: the caller marks outputs constant */
    for (int32_t i = 0; i < n->n_inputs; i++) {
        const ib__value *v = n->inputs[i];
        if (state_of(w, v) == ST_CONST && !const_broadcasts(v, rank))
            return refuse(w, n, "constant '%s' spans dim 0", v->name);
    }
    return true;
}

/* Input 0 batched, every other input constant. */
static bool first_batched_rest_const(walk *w, const ib__node *n) {
    if (n->n_inputs < 1 || state_of(w, n->inputs[0]) != ST_BATCH)
        return refuse(w, n, "input 0 is not batched");
    for (int32_t i = 1; i < n->n_inputs; i++)
        if (state_of(w, n->inputs[i]) != ST_CONST)
            return refuse(w, n, "input %d ('%s') is not a constant", i, n->inputs[i]->name);
    return true;
}

static bool rule_gemm(walk *w, const ib__node *n) {
    int64_t ta = 0, tb = 0;
    if (ib__attr_int(n, "transA", 0, &ta) || ib__attr_int(n, "transB", 0, &tb)) {
        ib__error_clear();
        return refuse(w, n, "bad transA/transB");
    }
    if (ta) return refuse(w, n, "transA puts the batch on the reduced axis");
    if (!first_batched_rest_const(w, n)) return false;
    if (n->n_inputs > 2 && !const_broadcasts(n->inputs[2], 2))
        return refuse(w, n, "bias C spans the rows");
    return true;
}

static bool rule_matmul(walk *w, const ib__node *n) {
    if (n->n_inputs != 2) return refuse(w, n, "expects 2 inputs");
    const ib__value *a = n->inputs[0], *b = n->inputs[1];
    int sa = state_of(w, a), sb = state_of(w, b);
    if (sa == ST_UNPROVEN || sb == ST_UNPROVEN) return refuse(w, n, "input not proven per sample");
    if (sa == ST_BATCH && sb == ST_CONST) {
        if (a->rank < 2) return refuse(w, n, "batched A of rank < 2");
        /* the batch is A's rows (rank 2) or A's leading axis; B must not add axes in
         * front of it ([N,K] @ [3,K,M] is [3,N,M]) nor span it */
        return const_broadcasts(b, a->rank) ? true
                                            : refuse(w, n, "B's leading dims move the batch");
    }
    if (sa == ST_BATCH && sb == ST_BATCH) { /* batched matmul: both index the batch */
        if (a->rank >= 3 && a->rank == b->rank) return true;
        return refuse(w, n, "both inputs batched but not as a leading batch axis");
    }
    if (sa == ST_CONST && sb == ST_BATCH) {
        if (b->rank < 3) return refuse(w, n, "batched B is reduced over (rank < 3)");
        return const_broadcasts(a, b->rank) ? true
                                            : refuse(w, n, "A's leading dim spans the batch");
    }
    return true;
}

static bool rule_reshape(walk *w, const ib__node *n) {
    if (!first_batched_rest_const(w, n) || n->n_inputs < 2) return false;
    int64_t allowzero = 0;
    if (ib__attr_int(n, "allowzero", 0, &allowzero)) {
        ib__error_clear();
        return refuse(w, n, "bad allowzero");
    }
    int64_t shape[IB_MAX_RANK];
    int32_t k = 0;
    if (!const_ints(n->inputs[1], shape, IB_MAX_RANK, &k) || k < 1)
        return refuse(w, n, "target shape is not a constant");
    if (shape[0] == 0 && !allowzero) return true; /* copies dim 0 */
    if (shape[0] != -1) return refuse(w, n, "target dim 0 is %lld, not the batch", (long long)shape[0]);
    /* [-1, rest...] keeps the batch when rest covers exactly one sample. */
    const ib__value *x = n->inputs[0];
    if (x->rank < 1) return refuse(w, n, "input rank unknown");
    int64_t sample = 1, rest = 1;
    for (int32_t d = 1; d < x->rank; d++) {
        if (x->dims[d] < 0) return refuse(w, n, "input dim %d is not static", d);
        sample *= x->dims[d];
    }
    for (int32_t d = 1; d < k; d++) {
        int64_t s = shape[d];
        if (s == 0 && !allowzero && d < x->rank) s = x->dims[d];
        if (s <= 0) return refuse(w, n, "target dim %d is %lld", d, (long long)shape[d]);
        rest *= s;
    }
    return rest == sample ? true : refuse(w, n, "target [-1, ...] regroups samples");
}

static bool rule_gather(walk *w, const ib__node *n) {
    if (n->n_inputs != 2) return refuse(w, n, "expects 2 inputs");
    int sd = state_of(w, n->inputs[0]), si = state_of(w, n->inputs[1]);
    int64_t axis;
    if (sd == ST_BATCH && si == ST_CONST) {
        if (!axis_attr(n, "axis", 0, n->inputs[0]->rank, &axis) || axis == 0)
            return refuse(w, n, "gathers along the batch");
        return true;
    }
    if (sd == ST_CONST && si == ST_BATCH) { /* an embedding lookup: rows follow indices */
        if (!axis_attr(n, "axis", 0, n->inputs[0]->rank, &axis) || axis != 0)
            return refuse(w, n, "batched indices along axis != 0");
        return true;
    }
    return refuse(w, n, "data and indices both batched or unproven");
}

static bool rule_slice(walk *w, const ib__node *n) {
    if (!first_batched_rest_const(w, n)) return false;
    int32_t rank = n->inputs[0]->rank;
    int64_t axes[IB_MAX_RANK * 2], starts[IB_MAX_RANK * 2];
    int32_t n_axes = 0, n_starts = 0;
    bool given = false;
    if (n->opset < 10) {
        const ib__attr *s = ib__node_attr(n, "starts");
        if (!s || s->kind != IB_ATTR_INTS) return refuse(w, n, "no starts");
        n_starts = s->count;
        if (!node_axes(n, 99, axes, &n_axes, &given)) return refuse(w, n, "bad axes");
    } else {
        if (n->n_inputs < 3 || !const_ints(n->inputs[1], starts, IB_MAX_RANK * 2, &n_starts))
            return refuse(w, n, "starts not constant");
        if (!node_axes(n, 3, axes, &n_axes, &given)) return refuse(w, n, "axes not constant");
    }
    if (!given) { /* axes 0..k-1: includes the batch */
        return refuse(w, n, "slices along the batch (default axes)");
    }
    return axes_avoid_zero(axes, n_axes, rank) ? true : refuse(w, n, "slices along the batch");
}

/* The rule for one node; true when proven (outputs then batched, or constant when no
 * input is batched). */
static bool rule(walk *w, const ib__node *n) {
    if (n->domain && n->domain[0]) return refuse(w, n, "domain '%s' has no rule", n->domain);
    const ib__value *x = n->n_inputs > 0 ? n->inputs[0] : NULL;
    int32_t rank = x ? x->rank : -1;
    int64_t axis, axes[IB_MAX_RANK * 2];
    int32_t n_axes = 0;
    bool given = false;
    if (is_op(n, UNARY)) {
        if (!first_batched_rest_const(w, n)) return false;
        if (strcmp(n->op_type, "Dropout") == 0 || n->n_outputs == 1) return true;
        return refuse(w, n, "unexpected extra outputs");
    }
    if (is_op(n, BROADCAST)) return rule_broadcast(w, n);
    if (is_op(n, PER_SAMPLE)) return first_batched_rest_const(w, n);
    if (strcmp(n->op_type, "BatchNormalization") == 0) {
        int64_t training = 0;
        if (ib__attr_int(n, "training_mode", 0, &training)) ib__error_clear();
        if (training) return refuse(w, n, "training mode averages over the batch");
        for (int32_t o = 1; o < n->n_outputs; o++)
            if (n->outputs[o] && n->outputs[o]->n_uses > 0)
                return refuse(w, n, "running statistics are read");
        return first_batched_rest_const(w, n);
    }
    if (strcmp(n->op_type, "LayerNormalization") == 0) {
        if (!first_batched_rest_const(w, n)) return false;
        if (!axis_attr(n, "axis", -1, rank, &axis) || axis == 0)
            return refuse(w, n, "normalises over the batch");
        for (int32_t o = 1; o < n->n_outputs; o++)
            if (n->outputs[o] && n->outputs[o]->n_uses > 0)
                return refuse(w, n, "mean/inv-std outputs are read");
        return true;
    }
    if (strcmp(n->op_type, "Gemm") == 0) return rule_gemm(w, n);
    if (strcmp(n->op_type, "MatMul") == 0) return rule_matmul(w, n);
    if (strcmp(n->op_type, "Reshape") == 0) return rule_reshape(w, n);
    if (strcmp(n->op_type, "Flatten") == 0) {
        if (!first_batched_rest_const(w, n)) return false;
        if (!axis_attr(n, "axis", 1, rank, &axis) || axis == 0)
            return refuse(w, n, "flattens the batch into one row");
        return true;
    }
    if (strcmp(n->op_type, "Transpose") == 0) {
        if (!first_batched_rest_const(w, n)) return false;
        const ib__attr *p = ib__node_attr(n, "perm");
        if (!p || p->kind != IB_ATTR_INTS || p->count < 1 || p->ints[0] != 0)
            return refuse(w, n, "moves the batch off axis 0");
        return true;
    }
    if (strcmp(n->op_type, "Squeeze") == 0 || strcmp(n->op_type, "Unsqueeze") == 0) {
        if (!first_batched_rest_const(w, n)) return false;
        if (!node_axes(n, 1, axes, &n_axes, &given) || !given)
            return refuse(w, n, "axes not given as constants (would squeeze a batch of 1)");
        int32_t r = rank;
        if (strcmp(n->op_type, "Unsqueeze") == 0 && r >= 0) r += n_axes;
        return axes_avoid_zero(axes, n_axes, r) ? true : refuse(w, n, "acts on axis 0");
    }
    if (strcmp(n->op_type, "Softmax") == 0 || strcmp(n->op_type, "LogSoftmax") == 0 ||
        strcmp(n->op_type, "Hardmax") == 0) {
        if (!first_batched_rest_const(w, n)) return false;
        if (!axis_attr(n, "axis", n->opset < 13 ? 1 : -1, rank, &axis) || axis == 0)
            return refuse(w, n, "normalises over the batch");
        return true;
    }
    if (is_op(n, REDUCE)) {
        if (!first_batched_rest_const(w, n)) return false;
        if (!node_axes(n, 1, axes, &n_axes, &given)) return refuse(w, n, "axes not constant");
        if (!given || n_axes == 0) return refuse(w, n, "reduces every axis, the batch too");
        return axes_avoid_zero(axes, n_axes, rank) ? true : refuse(w, n, "reduces over the batch");
    }
    if (strcmp(n->op_type, "ArgMax") == 0 || strcmp(n->op_type, "ArgMin") == 0 ||
        strcmp(n->op_type, "CumSum") == 0 || strcmp(n->op_type, "TopK") == 0 ||
        strcmp(n->op_type, "Split") == 0) {
        if (!first_batched_rest_const(w, n)) return false;
        if (strcmp(n->op_type, "CumSum") == 0) {
            int32_t k = 0;
            if (n->n_inputs < 2 || !const_ints(n->inputs[1], axes, 1, &k) || k != 1 ||
                !axes_avoid_zero(axes, 1, rank))
                return refuse(w, n, "accumulates over the batch");
            return true;
        }
        if (!axis_attr(n, "axis", strcmp(n->op_type, "TopK") == 0 ? -1 : 0, rank, &axis) ||
            axis == 0)
            return refuse(w, n, "works along the batch");
        return true;
    }
    if (strcmp(n->op_type, "Concat") == 0) {
        for (int32_t i = 0; i < n->n_inputs; i++)
            if (state_of(w, n->inputs[i]) != ST_BATCH)
                return refuse(w, n, "input '%s' is not batched", n->inputs[i] ? n->inputs[i]->name : "-");
        if (!axis_attr(n, "axis", 0, rank, &axis) || axis == 0)
            return refuse(w, n, "concatenates along the batch");
        return true;
    }
    if (strcmp(n->op_type, "Gather") == 0) return rule_gather(w, n);
    if (strcmp(n->op_type, "Slice") == 0) return rule_slice(w, n);
    if (strcmp(n->op_type, "Pad") == 0) {
        if (!first_batched_rest_const(w, n)) return false;
        int64_t pads[IB_MAX_RANK * 2];
        int32_t k = 0;
        const ib__attr *a = ib__node_attr(n, "pads");
        if (a && a->kind == IB_ATTR_INTS && a->count <= IB_MAX_RANK * 2) {
            for (int32_t i = 0; i < a->count; i++) pads[i] = a->ints[i];
            k = a->count;
        } else if (n->n_inputs < 2 || !const_ints(n->inputs[1], pads, IB_MAX_RANK * 2, &k)) {
            return refuse(w, n, "pads not constant");
        }
        if (n->n_inputs > 3 && n->inputs[3]) return refuse(w, n, "explicit axes");
        if (k % 2 || k < 2 || pads[0] != 0 || pads[k / 2] != 0)
            return refuse(w, n, "pads the batch axis");
        return true;
    }
    if (strcmp(n->op_type, "Expand") == 0 || strcmp(n->op_type, "Tile") == 0) {
        if (!first_batched_rest_const(w, n)) return false;
        int64_t s[IB_MAX_RANK];
        int32_t k = 0;
        if (n->n_inputs < 2 || !const_ints(n->inputs[1], s, IB_MAX_RANK, &k) || rank < 1)
            return refuse(w, n, "shape/repeats not constant");
        if (strcmp(n->op_type, "Tile") == 0)
            return k == rank && s[0] == 1 ? true : refuse(w, n, "tiles the batch");
        return k < rank || (k == rank && s[0] == 1) ? true : refuse(w, n, "expands the batch");
    }
    if (strcmp(n->op_type, "Resize") == 0 || strcmp(n->op_type, "Upsample") == 0) {
        if (n->n_inputs < 1 || state_of(w, n->inputs[0]) != ST_BATCH)
            return refuse(w, n, "input 0 is not batched");
        float one = 0;
        const ib__value *scales = NULL;
        for (int32_t i = 1; i < n->n_inputs; i++) {
            const ib__value *v = n->inputs[i];
            if (!v || (v->constant && v->constant->nbytes == 0)) continue;
            if (state_of(w, v) != ST_CONST) return refuse(w, n, "parameters not constant");
            bool is_scales = (n->n_inputs == 2 && i == 1) || (n->n_inputs > 2 && i == 2);
            if (!is_scales) return refuse(w, n, "roi/sizes fix the batch");
            scales = v;
        }
        if (!scales || scales->constant->dtype != IB_DTYPE_FLOAT32 || !scales->constant->data)
            return refuse(w, n, "scales not a constant");
        memcpy(&one, scales->constant->data, sizeof one);
        return one == 1.0f ? true : refuse(w, n, "scales the batch");
    }
    return refuse(w, n, "no batch rule for '%s'", n->op_type);
}

ib_status ib__batch_analyze(const ib__graph *g, ib__batch_verdict *out) {
    memset(out, 0, sizeof *out);
    walk w = {g, NULL, out};
    if (!g || g->n_inputs < 1) {
        refuse(&w, NULL, "the model has no inputs");
        return IB_OK;
    }
    const char *symbol = NULL;
    for (int32_t i = 0; i < g->n_inputs; i++) {
        const ib__value *v = g->inputs[i];
        if (v->kind != IB_VALUE_INPUT) continue; /* an overridable initializer */
        if (v->rank < 1 || v->dims[0] >= 0 || !v->dim_param[0] || !v->dim_param[0][0]) {
            refuse(&w, NULL, "input '%s': dim 0 is not a named symbolic dim", v->name);
            return IB_OK;
        }
        if (symbol && strcmp(symbol, v->dim_param[0]) != 0) {
            refuse(&w, NULL, "inputs have different dim-0 symbols ('%s', '%s')", symbol,
                   v->dim_param[0]);
            return IB_OK;
        }
        symbol = v->dim_param[0];
    }
    if (!symbol) {
        refuse(&w, NULL, "the model has no runtime inputs");
        return IB_OK;
    }
    w.state = ib__calloc((size_t)g->n_values + 1, 1);
    if (!w.state) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory analysing the batch");
    for (int32_t i = 0; i < g->n_values; i++) {
        const ib__value *v = g->values[i];
        if (v->constant || v->kind == IB_VALUE_INITIALIZER) w.state[i] = ST_CONST;
        else if (v->kind == IB_VALUE_INPUT) w.state[i] = ST_BATCH;
    }
    bool ok = true;
    for (int32_t k = 0; k < g->n_nodes && ok; k++) {
        const ib__node *n = g->nodes[k];
        bool folded = n->n_outputs > 0;
        for (int32_t o = 0; o < n->n_outputs; o++)
            if (n->outputs[o] && !n->outputs[o]->constant) folded = false;
        if (folded) continue; /* computed at load time */
        if (strcmp(n->op_type, "If") == 0 || strcmp(n->op_type, "Loop") == 0 ||
            strcmp(n->op_type, "Scan") == 0 || strncmp(n->op_type, "Random", 6) == 0 ||
            strcmp(n->op_type, "Multinomial") == 0 || strcmp(n->op_type, "Bernoulli") == 0) {
            ok = refuse(&w, n, "control flow or random values have no batch rule");
            break;
        }
        bool any_batch = false, any_unproven = false, any_shape = false;
        for (int32_t i = 0; i < n->n_inputs; i++) {
            int s = state_of(&w, n->inputs[i]);
            any_batch |= s == ST_BATCH;
            any_unproven |= s == ST_UNPROVEN;
            any_shape |= s == ST_SHAPE;
        }
        int result;
        if (any_shape) {
            if (strcmp(n->op_type, "ConstantOfShape") != 0 || n->n_inputs != 1) {
                ok = refuse(&w, n, "reads the shape of a batched value");
                break;
            }
            result = ST_BATCH;
        } else if (strcmp(n->op_type, "Shape") == 0 && any_batch) {
            const ib__attr *start = ib__node_attr(n, "start");
            if (n->n_inputs != 1 || (start && (start->kind != IB_ATTR_INT || start->i != 0))) {
                ok = refuse(&w, n, "a shape slice of a batched value");
                break;
            }
            result = ST_SHAPE;
        } else if (any_unproven) {
            result = ST_UNPROVEN; /* refused if an output depends on it */
        } else if (!any_batch) {
            result = ST_CONST; /* e.g. Constant, ConstantOfShape of a constant */
        } else {
            result = rule(&w, n) ? ST_BATCH : ST_UNPROVEN;
            if (result == ST_UNPROVEN) ok = false;
        }
        for (int32_t o = 0; o < n->n_outputs; o++) {
            const ib__value *v = n->outputs[o];
            if (v && v->index >= 0 && v->index < g->n_values) w.state[v->index] = (uint8_t)result;
        }
    }
    for (int32_t o = 0; o < g->n_outputs && ok; o++) {
        const ib__value *v = g->outputs[o];
        if (state_of(&w, v) != ST_BATCH) {
            if (state_of(&w, v) == ST_CONST)
                ok = refuse(&w, NULL, "output '%s' does not depend on the batch", v->name);
            else if (!out->reason[0])
                ok = refuse(&w, NULL, "output '%s' is not proven per sample", v->name);
            else
                ok = false;
        }
    }
    ib__free(w.state);
    if (ok) {
        out->separable = true;
        out->reason[0] = '\0';
        snprintf(out->symbol, sizeof out->symbol, "%s", symbol);
    }
    return IB_OK;
}
