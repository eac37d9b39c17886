/* Control-flow ops: If, Loop and Scan. Their bodies are subgraphs run through the
 * executor's subgraph runner; output shapes are known only after running them. */
#include <string.h>

#include "ops/ops.h"

static ib_status get_graph_attr(const ib__node *node, const char *name, ib__graph **out) {
    const ib__attr *a = ib__node_attr(node, name);
    if (!a || a->kind != IB_ATTR_GRAPH || !a->g)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: graph attribute '%s' is missing",
                         ib__node_label(node), name);
    *out = a->g;
    return IB_OK;
}

static bool scalar_true(const ib_tensor *t) {
    return t && ib_tensor_element_count(t) >= 1 && ib__load_i64(t->data, t->dtype, 0) != 0;
}

/* ---- If ------------------------------------------------------------------------- */

/* Outputs take the branch's inferred types where both branches agree on them. */
static ib_status infer_if(ib__infer_ctx *c) {
    ib__graph *then_g = NULL, *else_g = NULL;
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(get_graph_attr(c->node, "then_branch", &then_g));
    IB_TRY(get_graph_attr(c->node, "else_branch", &else_g));
    if (then_g->n_outputs != c->n_out || else_g->n_outputs != c->n_out)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: branches must have %d outputs",
                         ib__node_label(c->node), c->n_out);
    for (int32_t o = 0; o < c->n_out; o++) {
        const ib__value *t = then_g->outputs[o], *e = else_g->outputs[o];
        if (t->dtype != IB_DTYPE_UNDEFINED && t->dtype != e->dtype &&
            e->dtype != IB_DTYPE_UNDEFINED)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: branches disagree on output %d dtype",
                             ib__node_label(c->node), o);
        ib_dtype dt = t->dtype != IB_DTYPE_UNDEFINED ? t->dtype : e->dtype;
        if (t->rank >= 0 && t->rank == e->rank) {
            int64_t dims[IB_MAX_RANK];
            for (int32_t d = 0; d < t->rank; d++)
                dims[d] = t->dims[d] == e->dims[d] ? t->dims[d] : -1;
            ib__set_output(c, o, dt, t->rank, dims);
        } else {
            ib__set_output(c, o, dt, -1, NULL);
        }
    }
    return IB_OK;
}

static ib_status run_if(ib__run_ctx *c) {
    ib__graph *branch = NULL;
    IB_TRY(get_graph_attr(c->node, scalar_true(c->in[0]) ? "then_branch" : "else_branch",
                          &branch));
    if (!c->subgraphs)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: needs an executor", ib__node_label(c->node));
    ib_tensor outs[64];
    if (c->n_out > 64) return ib__error(IB_ERR_UNSUPPORTED, "%s: too many outputs", ib__node_label(c->node));
    memset(outs, 0, sizeof outs);
    IB_TRY(c->subgraphs->run(c->subgraphs->exec, branch, 0, NULL, c->n_out, outs));
    for (int32_t o = 0; o < c->n_out; o++) {
        if (c->out[o]) *c->out[o] = outs[o];
        else ib_tensor_release(&outs[o]);
    }
    return IB_OK;
}

/* ---- Loop ----------------------------------------------------------------------- */
/* inputs: M (optional trip count), cond (optional), v_initial...;
 * body: (iter_num, cond_in, v_in...) -> (cond_out, v_out..., scan_out...). */

static ib_status infer_loop(ib__infer_ctx *c) {
    ib__graph *body = NULL;
    IB_TRY(get_graph_attr(c->node, "body", &body));
    int32_t n_carried = c->n_in - 2;
    if (n_carried < 0 || body->n_outputs != 1 + n_carried + (c->n_out - n_carried) ||
        c->n_out < n_carried)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: body signature does not match the node",
                         ib__node_label(c->node));
    for (int32_t o = 0; o < c->n_out; o++) {
        if (o < n_carried && c->in[2 + o]) {
            ib__set_output_like(c, o, c->in[2 + o]);
            continue;
        }
        const ib__value *bv = body->outputs[1 + o];
        ib__set_output(c, o, bv->dtype, -1, NULL);
    }
    return IB_OK;
}

/* Appends a copy of `t` as row `iter` of a growing stacked tensor. */
static ib_status stack_append(ib_tensor *stack, int64_t *cap, int64_t iter, const ib_tensor *t,
                              const ib__node *node) {
    if (iter == 0) {
        int64_t dims[IB_MAX_RANK];
        if (t->rank + 1 > IB_MAX_RANK)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: scan output rank too large", ib__node_label(node));
        dims[0] = 4;
        for (int32_t d = 0; d < t->rank; d++) dims[d + 1] = t->shape[d];
        IB_TRY(ib__tensor_alloc(stack, t->dtype, t->rank + 1, dims));
        *cap = 4;
        stack->shape[0] = 0;
    }
    if (t->dtype != stack->dtype || t->rank + 1 != stack->rank ||
        memcmp(t->shape, stack->shape + 1, sizeof(int64_t) * (size_t)t->rank) != 0)
        return ib__error(IB_ERR_SHAPE, "%s: scan output changes shape between iterations",
                         ib__node_label(node));
    size_t row = t->nbytes;
    if (iter >= *cap) {
        int64_t ncap = *cap * 2;
        size_t nbytes = row * (size_t)ncap;
        void *data = ib__aligned_alloc(nbytes ? nbytes : 1);
        if (!data) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(node));
        if (row) memcpy(data, stack->data, row * (size_t)iter);
        ib__aligned_free(stack->data);
        stack->data = data;
        *cap = ncap;
    }
    if (row) memcpy((char *)stack->data + row * (size_t)iter, t->data, row);
    stack->shape[0] = iter + 1;
    stack->nbytes = row * (size_t)(iter + 1);
    return IB_OK;
}

static ib_status copy_tensor(ib_tensor *dst, const ib_tensor *src) {
    IB_TRY(ib__tensor_alloc(dst, src->dtype, src->rank, src->shape));
    if (src->nbytes) memcpy(dst->data, src->data, src->nbytes);
    return IB_OK;
}

#define LOOP_MAX_VALUES 64

static ib_status run_loop(ib__run_ctx *c) {
    const ib__node *node = c->node;
    ib__graph *body = NULL;
    IB_TRY(get_graph_attr(node, "body", &body));
    int32_t n_carried = c->n_in - 2;
    int32_t n_scan = c->n_out - n_carried;
    if (n_carried < 0 || n_scan < 0 || n_carried + n_scan > LOOP_MAX_VALUES ||
        body->n_outputs != 1 + n_carried + n_scan || body->n_inputs != 2 + n_carried)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: body signature does not match the node",
                         ib__node_label(node));
    int64_t max_trips = INT64_MAX;
    if (c->in[0] && ib_tensor_element_count(c->in[0]) >= 1)
        max_trips = ib__load_i64(c->in[0]->data, c->in[0]->dtype, 0);
    bool cond = c->in[1] ? scalar_true(c->in[1]) : true;

    ib_tensor carried[LOOP_MAX_VALUES], scans[LOOP_MAX_VALUES], body_out[1 + 2 * LOOP_MAX_VALUES];
    int64_t scan_cap[LOOP_MAX_VALUES];
    memset(carried, 0, sizeof carried);
    memset(scans, 0, sizeof scans);
    ib_status st = IB_OK;
    for (int32_t i = 0; i < n_carried && st == IB_OK; i++) {
        if (!c->in[2 + i]) {
            st = ib__error(IB_ERR_UNSUPPORTED, "%s: optional loop-carried values are not supported",
                           ib__node_label(node));
            break;
        }
        st = copy_tensor(&carried[i], c->in[2 + i]);
    }
    int64_t iter = 0;
    /* Guard against models that loop forever: a trip count is required or cond must
     * turn false within a generous bound. */
    const int64_t hard_limit = (int64_t)1 << 31;
    while (st == IB_OK && iter < max_trips && cond) {
        if (iter >= hard_limit) {
            st = ib__error(IB_ERR_RUNTIME, "%s: loop exceeded %lld iterations",
                           ib__node_label(node), (long long)hard_limit);
            break;
        }
        int64_t it_dims[1] = {1};
        ib_tensor iter_t, cond_t;
        int64_t iter_val = iter;
        uint8_t cond_val = 1;
        memset(&iter_t, 0, sizeof iter_t);
        memset(&cond_t, 0, sizeof cond_t);
        iter_t.dtype = IB_DTYPE_INT64;
        iter_t.data = &iter_val;
        iter_t.nbytes = 8;
        cond_t.dtype = IB_DTYPE_BOOL;
        cond_t.data = &cond_val;
        cond_t.nbytes = 1;
        (void)it_dims;
        const ib_tensor *ins[2 + LOOP_MAX_VALUES];
        ins[0] = &iter_t;
        ins[1] = &cond_t;
        for (int32_t i = 0; i < n_carried; i++) ins[2 + i] = &carried[i];
        memset(body_out, 0, sizeof(ib_tensor) * (size_t)(1 + n_carried + n_scan));
        st = c->subgraphs ? c->subgraphs->run(c->subgraphs->exec, body, 2 + n_carried, ins,
                                              1 + n_carried + n_scan, body_out)
                          : ib__error(IB_ERR_UNSUPPORTED, "%s: needs an executor", ib__node_label(node));
        if (st) break;
        cond = scalar_true(&body_out[0]);
        ib_tensor_release(&body_out[0]);
        for (int32_t i = 0; i < n_carried; i++) {
            ib_tensor_release(&carried[i]);
            carried[i] = body_out[1 + i];
            body_out[1 + i].owns_data = 0;
        }
        for (int32_t k = 0; k < n_scan && st == IB_OK; k++)
            st = stack_append(&scans[k], &scan_cap[k], iter, &body_out[1 + n_carried + k], node);
        for (int32_t k = 0; k < n_scan; k++) ib_tensor_release(&body_out[1 + n_carried + k]);
        iter++;
    }
    for (int32_t k = 0; st == IB_OK && k < n_scan; k++) {
        if (iter == 0) { /* no iterations: empty scan outputs of the body's declared shape */
            const ib__value *bv = body->outputs[1 + n_carried + k];
            int64_t dims[IB_MAX_RANK] = {0};
            int32_t rank = bv->rank >= 0 ? bv->rank + 1 : 1;
            if (rank > IB_MAX_RANK) rank = 1;
            for (int32_t d = 1; d < rank; d++) dims[d] = bv->dims[d - 1] > 0 ? bv->dims[d - 1] : 0;
            st = ib__tensor_alloc(&scans[k], bv->dtype != IB_DTYPE_UNDEFINED ? bv->dtype : IB_DTYPE_FLOAT32, rank, dims);
        }
    }
    if (st == IB_OK) {
        for (int32_t i = 0; i < n_carried; i++) {
            if (c->out[i]) *c->out[i] = carried[i];
            else ib_tensor_release(&carried[i]);
        }
        for (int32_t k = 0; k < n_scan; k++) {
            if (c->out[n_carried + k]) *c->out[n_carried + k] = scans[k];
            else ib_tensor_release(&scans[k]);
        }
        return IB_OK;
    }
    for (int32_t i = 0; i < n_carried; i++) ib_tensor_release(&carried[i]);
    for (int32_t k = 0; k < n_scan; k++) ib_tensor_release(&scans[k]);
    return st;
}

/* ---- Scan (opset >= 9) ---------------------------------------------------------- */
/* inputs: N initial states, then M scan inputs sliced along their scan axis;
 * body: (state..., scan_slice...) -> (state..., scan_out_slice...). */

static ib_status scan_params(const ib__node *node, int32_t n_in, int32_t *n_state, int32_t *n_scan_in) {
    int64_t m;
    IB_TRY(ib__attr_int(node, "num_scan_inputs", -1, &m));
    if (m < 1 || m > n_in)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: num_scan_inputs is invalid", ib__node_label(node));
    *n_scan_in = (int32_t)m;
    *n_state = n_in - (int32_t)m;
    return IB_OK;
}

static ib_status infer_scan(ib__infer_ctx *c) {
    if (c->opset < 9)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: Scan before opset 9 is not supported",
                         ib__node_label(c->node));
    ib__graph *body = NULL;
    int32_t n_state = 0, n_scan_in = 0;
    IB_TRY(get_graph_attr(c->node, "body", &body));
    IB_TRY(scan_params(c->node, c->n_in, &n_state, &n_scan_in));
    if (body->n_inputs != c->n_in || body->n_outputs != c->n_out || c->n_out < n_state)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: body signature does not match the node",
                         ib__node_label(c->node));
    for (int32_t o = 0; o < c->n_out; o++) {
        if (o < n_state && c->in[o]) ib__set_output_like(c, o, c->in[o]);
        else ib__set_output(c, o, body->outputs[o]->dtype, -1, NULL);
    }
    return IB_OK;
}

/* Copies slice `idx` along `axis` of t into out (rank - 1). */
static ib_status take_slice(const ib_tensor *t, int32_t axis, int64_t idx, ib_tensor *out) {
    int64_t dims[IB_MAX_RANK];
    int32_t r = 0;
    for (int32_t d = 0; d < t->rank; d++)
        if (d != axis) dims[r++] = t->shape[d];
    IB_TRY(ib__tensor_alloc(out, t->dtype, r, dims));
    size_t es = ib_dtype_size(t->dtype);
    int64_t outer = 1, inner = 1;
    for (int32_t d = 0; d < axis; d++) outer *= t->shape[d];
    for (int32_t d = axis + 1; d < t->rank; d++) inner *= t->shape[d];
    for (int64_t o = 0; o < outer; o++)
        memcpy((char *)out->data + (size_t)(o * inner) * es,
               (const char *)t->data + (size_t)((o * t->shape[axis] + idx) * inner) * es,
               (size_t)inner * es);
    return IB_OK;
}

/* Moves the stacked axis 0 of `s` to `axis` (in place into a new buffer). */
static ib_status move_axis0(ib_tensor *s, int32_t axis) {
    if (axis == 0) return IB_OK;
    ib_tensor t;
    int64_t dims[IB_MAX_RANK];
    int32_t r = s->rank;
    for (int32_t d = 0, k = 1; d < r; d++) dims[d] = d == axis ? s->shape[0] : s->shape[k++];
    IB_TRY(ib__tensor_alloc(&t, s->dtype, r, dims));
    size_t es = ib_dtype_size(s->dtype);
    int64_t n = s->shape[0], outer = 1, inner = 1;
    for (int32_t d = 0; d < axis; d++) outer *= dims[d];
    for (int32_t d = axis + 1; d < r; d++) inner *= dims[d];
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)t.data + (size_t)((o * n + i) * inner) * es,
                   (const char *)s->data + (size_t)((i * outer + o) * inner) * es,
                   (size_t)inner * es);
    ib_tensor_release(s);
    *s = t;
    return IB_OK;
}

static ib_status run_scan(ib__run_ctx *c) {
    const ib__node *node = c->node;
    ib__graph *body = NULL;
    int32_t n_state = 0, n_scan_in = 0;
    IB_TRY(get_graph_attr(node, "body", &body));
    IB_TRY(scan_params(node, c->n_in, &n_state, &n_scan_in));
    int32_t n_scan_out = c->n_out - n_state;
    if (c->n_in > LOOP_MAX_VALUES || c->n_out > LOOP_MAX_VALUES || n_scan_out < 0)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: too many inputs or outputs", ib__node_label(node));
    int32_t in_axes_n = 0, in_dirs_n = 0, out_axes_n = 0, out_dirs_n = 0;
    const int64_t *in_axes, *in_dirs, *out_axes, *out_dirs;
    IB_TRY(ib__attr_ints(node, "scan_input_axes", &in_axes_n, &in_axes));
    IB_TRY(ib__attr_ints(node, "scan_input_directions", &in_dirs_n, &in_dirs));
    IB_TRY(ib__attr_ints(node, "scan_output_axes", &out_axes_n, &out_axes));
    IB_TRY(ib__attr_ints(node, "scan_output_directions", &out_dirs_n, &out_dirs));
    int32_t axis_in[LOOP_MAX_VALUES];
    int64_t seq_len = -1;
    for (int32_t k = 0; k < n_scan_in; k++) {
        const ib_tensor *t = c->in[n_state + k];
        if (!t) return ib__error(IB_ERR_INVALID_MODEL, "%s: scan input %d missing", ib__node_label(node), k);
        IB_TRY(ib__normalize_axis(node, k < in_axes_n ? in_axes[k] : 0, t->rank, &axis_in[k]));
        int64_t len = t->shape[axis_in[k]];
        if (seq_len >= 0 && len != seq_len)
            return ib__error(IB_ERR_SHAPE, "%s: scan inputs differ in length", ib__node_label(node));
        seq_len = len;
    }
    ib_tensor state[LOOP_MAX_VALUES], scans[LOOP_MAX_VALUES], body_out[LOOP_MAX_VALUES];
    ib_tensor slices[LOOP_MAX_VALUES];
    int64_t caps[LOOP_MAX_VALUES];
    memset(state, 0, sizeof state);
    memset(scans, 0, sizeof scans);
    memset(slices, 0, sizeof slices);
    ib_status st = IB_OK;
    for (int32_t i = 0; i < n_state && st == IB_OK; i++) st = copy_tensor(&state[i], c->in[i]);
    for (int64_t it = 0; st == IB_OK && it < seq_len; it++) {
        const ib_tensor *ins[LOOP_MAX_VALUES];
        for (int32_t i = 0; i < n_state; i++) ins[i] = &state[i];
        for (int32_t k = 0; k < n_scan_in && st == IB_OK; k++) {
            bool reverse = k < in_dirs_n && in_dirs[k] == 1;
            ib_tensor_release(&slices[k]);
            st = take_slice(c->in[n_state + k], axis_in[k], reverse ? seq_len - 1 - it : it, &slices[k]);
            ins[n_state + k] = &slices[k];
        }
        if (st) break;
        memset(body_out, 0, sizeof(ib_tensor) * (size_t)c->n_out);
        st = c->subgraphs ? c->subgraphs->run(c->subgraphs->exec, body, c->n_in, ins, c->n_out, body_out)
                          : ib__error(IB_ERR_UNSUPPORTED, "%s: needs an executor", ib__node_label(node));
        if (st) break;
        for (int32_t i = 0; i < n_state; i++) {
            ib_tensor_release(&state[i]);
            state[i] = body_out[i];
        }
        for (int32_t k = 0; k < n_scan_out && st == IB_OK; k++)
            st = stack_append(&scans[k], &caps[k], it, &body_out[n_state + k], node);
        for (int32_t k = 0; k < n_scan_out; k++) ib_tensor_release(&body_out[n_state + k]);
    }
    for (int32_t k = 0; k < n_scan_in; k++) ib_tensor_release(&slices[k]);
    for (int32_t k = 0; st == IB_OK && k < n_scan_out; k++) {
        if (seq_len <= 0) {
            st = ib__error(IB_ERR_UNSUPPORTED, "%s: empty scan", ib__node_label(node));
            break;
        }
        if (k < out_dirs_n && out_dirs[k] == 1) { /* reverse the stacked rows */
            int64_t n = scans[k].shape[0];
            size_t row = n ? scans[k].nbytes / (size_t)n : 0;
            char *p = scans[k].data;
            for (int64_t a = 0, b = n - 1; a < b; a++, b--)
                for (size_t x = 0; x < row; x++) {
                    char tmp = p[(size_t)a * row + x];
                    p[(size_t)a * row + x] = p[(size_t)b * row + x];
                    p[(size_t)b * row + x] = tmp;
                }
        }
        int32_t ax = 0;
        if (k < out_axes_n) st = ib__normalize_axis(node, out_axes[k], scans[k].rank, &ax);
        if (st == IB_OK) st = move_axis0(&scans[k], ax);
    }
    if (st == IB_OK) {
        for (int32_t i = 0; i < n_state; i++) {
            if (c->out[i]) *c->out[i] = state[i];
            else ib_tensor_release(&state[i]);
        }
        for (int32_t k = 0; k < n_scan_out; k++) {
            if (c->out[n_state + k]) *c->out[n_state + k] = scans[k];
            else ib_tensor_release(&scans[k]);
        }
        return IB_OK;
    }
    for (int32_t i = 0; i < n_state; i++) ib_tensor_release(&state[i]);
    for (int32_t k = 0; k < n_scan_out; k++) ib_tensor_release(&scans[k]);
    return st;
}

const ib__op_def ib__ops_control_flow[] = {
    {IB_OP_IF, infer_if, run_if, true},
    {IB_OP_LOOP, infer_loop, run_loop, true},
    {IB_OP_SCAN, infer_scan, run_scan, true},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
