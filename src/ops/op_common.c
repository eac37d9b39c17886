/* Helpers shared by the op files: output setting, broadcasting, constant reading. */
#include <string.h>

#include "ops/ops.h"

void ib__set_output(ib__infer_ctx *c, int32_t i, ib_dtype dtype, int32_t rank,
                    const int64_t *dims) {
    if (i >= c->n_out || !c->out[i]) return;
    ib__value *o = c->out[i];
    o->dtype = dtype;
    o->rank = (dims || rank == 0) ? rank : -1;
    for (int32_t d = 0; d < IB_MAX_RANK; d++) {
        o->dims[d] = (dims && d < rank) ? dims[d] : -1;
        o->dim_param[d] = NULL;
    }
}

void ib__set_output_like(ib__infer_ctx *c, int32_t i, const ib__value *from) {
    if (i >= c->n_out || !c->out[i]) return;
    ib__value *o = c->out[i];
    o->dtype = from->dtype;
    o->rank = from->rank;
    memcpy(o->dims, from->dims, sizeof o->dims);
    memcpy(o->dim_param, from->dim_param, sizeof o->dim_param);
}

ib_status ib__require_input(const ib__infer_ctx *c, int32_t i) {
    if (i < c->n_in && c->in[i]) return IB_OK;
    return ib__error(IB_ERR_INVALID_MODEL, "%s: required input %d is missing",
                     ib__node_label(c->node), i);
}

ib_status ib__broadcast_values(const ib__infer_ctx *c, int32_t n, const ib__value *const *vals,
                               int32_t *out_rank, int64_t *out_dims,
                               const char **out_dim_param) {
    int32_t rank = 0;
    for (int32_t k = 0; k < n; k++) {
        if (!vals[k]) continue;
        if (vals[k]->rank < 0) {
            *out_rank = -1;
            return IB_OK;
        }
        if (vals[k]->rank > rank) rank = vals[k]->rank;
    }
    for (int32_t d = 0; d < rank; d++) {
        int64_t dim = 1;
        const char *param = NULL;
        bool unknown = false;
        for (int32_t k = 0; k < n; k++) {
            const ib__value *v = vals[k];
            if (!v) continue;
            int32_t vd = d - (rank - v->rank);
            if (vd < 0) continue;
            int64_t x = v->dims[vd];
            if (x < 0) {
                if (!unknown && dim == 1) {
                    unknown = true;
                    param = v->dim_param[vd];
                } else if (unknown && param && v->dim_param[vd] &&
                           strcmp(param, v->dim_param[vd]) != 0) {
                    param = NULL;
                }
                continue;
            }
            if (x == 1) continue;
            if (unknown) { /* a known non-1 dim wins over an unknown one */
                unknown = false;
                param = NULL;
            }
            if (dim != 1 && dim != x)
                return ib__error(IB_ERR_SHAPE,
                                 "%s: inputs cannot be broadcast together (dim %d: %lld vs %lld)",
                                 ib__node_label(c->node), d, (long long)dim, (long long)x);
            dim = x;
        }
        out_dims[d] = unknown ? -1 : dim;
        if (out_dim_param) out_dim_param[d] = unknown ? param : NULL;
    }
    *out_rank = rank;
    return IB_OK;
}

ib_status ib__const_ints(const ib__value *v, int64_t *buf, int64_t cap, int64_t *count,
                         bool *known) {
    *known = false;
    *count = 0;
    if (!v || !v->constant) return IB_OK;
    const ib_tensor *t = v->constant;
    if (t->dtype != IB_DTYPE_INT64 && t->dtype != IB_DTYPE_INT32)
        return ib__error(IB_ERR_INVALID_MODEL, "value '%s' should be an int64 tensor, not %s",
                         v->name, ib_dtype_name(t->dtype));
    int64_t n = ib_tensor_element_count(t);
    if (n < 0 || n > cap)
        return ib__error(IB_ERR_INVALID_MODEL, "value '%s' holds too many elements (%lld)",
                         v->name, (long long)n);
    for (int64_t i = 0; i < n; i++) buf[i] = ib__load_i64(t->data, t->dtype, i);
    *count = n;
    *known = true;
    return IB_OK;
}

ib_status ib__normalize_axis(const ib__node *node, int64_t axis, int32_t rank, int32_t *out) {
    if (axis < -(int64_t)rank || axis >= rank)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: axis %lld is out of range for rank %d",
                         ib__node_label(node), (long long)axis, rank);
    *out = (int32_t)(axis < 0 ? axis + rank : axis);
    return IB_OK;
}

void ib__bcast_init(ib__bcast *b, const ib_tensor *out, int32_t n_in,
                    const ib_tensor *const *in) {
    memset(b, 0, sizeof *b);
    b->rank = out->rank;
    b->n_in = n_in;
    memcpy(b->out_dims, out->shape, sizeof(int64_t) * (size_t)out->rank);
    for (int32_t k = 0; k < n_in && k < 4; k++) {
        const ib_tensor *t = in[k];
        int64_t strides[IB_MAX_RANK];
        ib__strides(t->shape, t->rank, strides);
        for (int32_t d = 0; d < out->rank; d++) {
            int32_t td = d - (out->rank - t->rank);
            b->in_strides[k][d] = (td < 0 || t->shape[td] == 1) ? 0 : strides[td];
        }
    }
}

void ib__bcast_offsets(const ib__bcast *b, int64_t oi, int64_t *offsets) {
    for (int32_t k = 0; k < b->n_in; k++) offsets[k] = 0;
    for (int32_t d = b->rank - 1; d >= 0; d--) {
        int64_t dim = b->out_dims[d];
        int64_t idx = oi % dim;
        oi /= dim;
        for (int32_t k = 0; k < b->n_in; k++) offsets[k] += idx * b->in_strides[k][d];
    }
}
