/* Helpers shared by the op unit tests: attributes and nodes built by hand, tensor views,
 * and one op run the way the executor runs it (infer on known inputs, then run). */
#ifndef IB_OP_TEST_UTIL_H
#define IB_OP_TEST_UTIL_H

#include <string.h>

#include "ops/ops.h"

static inline ib__attr attr_int(const char *name, int64_t v) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_INT;
    a.i = v;
    return a;
}

static inline ib__attr attr_float(const char *name, float v) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_FLOAT;
    a.f = v;
    return a;
}

static inline ib__attr attr_string(const char *name, const char *s) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_STRING;
    a.s = s;
    a.s_len = strlen(s);
    return a;
}

static inline ib__attr attr_ints(const char *name, int64_t *v, int32_t n) {
    ib__attr a;
    memset(&a, 0, sizeof a);
    a.name = name;
    a.kind = IB_ATTR_INTS;
    a.ints = v;
    a.count = n;
    return a;
}

static inline ib__node make_node(ib__op_id op, int32_t opset, ib__attr *attrs, int32_t n_attrs) {
    ib__node n;
    memset(&n, 0, sizeof n);
    n.name = "t";
    n.op_type = ib__op_name(op);
    n.domain = "";
    n.op = op;
    n.opset = opset;
    n.attrs = attrs;
    n.n_attrs = n_attrs;
    return n;
}

static inline ib_tensor tensor(ib_dtype dt, int32_t rank, const int64_t *dims, void *data) {
    ib_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.rank = rank;
    for (int32_t d = 0; d < rank; d++) t.shape[d] = dims[d];
    t.data = data;
    t.nbytes = (size_t)ib_tensor_element_count(&t) * ib_dtype_size(dt);
    return t;
}

/* Runs infer (as at run time: every input known) then run; outputs are allocated from
 * what infer set. in[i] may be NULL (an omitted optional input). */
static inline ib_status run_op_pool(const ib__node *node, int32_t n_in, const ib_tensor *const *in,
                             int32_t n_out, ib_tensor *out, ib__pool *pool) {
    ib__value vals[10], ovals[4];
    const ib__value *vp[10];
    ib__value *op[4];
    for (int32_t i = 0; i < n_in; i++) {
        vp[i] = NULL;
        if (!in[i]) continue;
        memset(&vals[i], 0, sizeof vals[i]);
        vals[i].name = "in";
        vals[i].dtype = in[i]->dtype;
        vals[i].rank = in[i]->rank;
        for (int32_t d = 0; d < IB_MAX_RANK; d++)
            vals[i].dims[d] = d < in[i]->rank ? in[i]->shape[d] : -1;
        vals[i].constant = in[i];
        vp[i] = &vals[i];
    }
    for (int32_t o = 0; o < n_out; o++) {
        memset(&ovals[o], 0, sizeof ovals[o]);
        ovals[o].name = "out";
        ovals[o].rank = -1;
        op[o] = &ovals[o];
        memset(&out[o], 0, sizeof out[o]);
    }
    const ib__op_def *def = ib__op_get(node->op);
    if (!def) return IB_ERR_UNSUPPORTED;
    ib__infer_ctx ic = {node, node->opset, n_in, vp, n_out, op};
    ib_status st = def->infer(&ic);
    if (st) return st;
    ib_tensor *outs[4];
    for (int32_t o = 0; o < n_out; o++) {
        st = ib__tensor_alloc(&out[o], ovals[o].dtype, ovals[o].rank, ovals[o].dims);
        if (st) return st;
        outs[o] = &out[o];
    }
    ib__run_ctx rc = {node, node->opset, n_in, in, n_out, outs, pool, NULL};
    st = def->run(&rc);
    if (st)
        for (int32_t o = 0; o < n_out; o++) ib_tensor_release(&out[o]);
    return st;
}

/* Deterministic pseudo-random floats in [-1, 1). */
static uint64_t g_rng = 88172645463325252ull;

#endif /* IB_OP_TEST_UTIL_H */
