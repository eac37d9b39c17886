/* Batch separability analysis on hand-made graphs: graphs whose samples never mix along
 * the symbolic dim 0 pass; each way of mixing them (or of not proving it) fails, with a
 * reason naming the node. */
#include <stdarg.h>

#include "ir/shape_inference.h"
#include "passes/batch_separable.h"
#include "test.h"

static ib__value *val(ib__graph *g, const char *name) {
    ib__value *v = NULL;
    ib__graph_get_value(g, name, &v);
    return v;
}

static ib__graph *graph(void) {
    ib__graph *g = NULL;
    ib__graph_create(NULL, &g);
    return g;
}

/* dims < 0 are the symbol `sym` ("N" when NULL). */
static void input(ib__graph *g, const char *name, int32_t rank, const int64_t *dims,
                  const char *sym) {
    ib__value *v = val(g, name);
    v->kind = IB_VALUE_INPUT;
    v->dtype = IB_DTYPE_FLOAT32;
    v->rank = rank;
    for (int32_t d = 0; d < rank; d++) {
        v->dims[d] = dims[d];
        if (dims[d] < 0) v->dim_param[d] = sym ? sym : "N";
    }
    ib__graph_add_input(g, v);
}

static void constant(ib__graph *g, const char *name, ib_dtype dt, int32_t rank,
                     const int64_t *dims, const void *data) {
    ib__value *v = val(g, name);
    ib_tensor *t = ib__arena_alloc(g->arena, sizeof *t);
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->rank = rank;
    for (int32_t d = 0; d < rank; d++) t->shape[d] = dims[d];
    t->nbytes = (size_t)ib__shape_count(dims, rank) * ib_dtype_size(dt);
    t->data = ib__arena_alloc(g->arena, t->nbytes + 1);
    if (data) memcpy(t->data, data, t->nbytes);
    else memset(t->data, 0, t->nbytes);
    v->kind = IB_VALUE_INITIALIZER;
    v->dtype = dt;
    v->rank = rank;
    for (int32_t d = 0; d < rank; d++) v->dims[d] = dims[d];
    v->constant = t;
    ib__graph_add_initializer(g, v);
}

static void ints(ib__graph *g, const char *name, int32_t n, const int64_t *vals) {
    constant(g, name, IB_DTYPE_INT64, 1, (int64_t[]){n}, vals);
}

/* node(g, "Gemm", "x,w", "y", "transA", 1, NULL); "perm", "axes" and "kernel_shape"
 * are lists: the count follows the name, then the values. */
static void node(ib__graph *g, const char *op, const char *ins, const char *outs, ...) {
    ib__node *n = NULL;
    ib__graph_add_node(g, "", op, "", 13, &n);
    n->name = op;
    n->inputs = ib__arena_alloc(g->arena, 8 * sizeof(ib__value *));
    n->outputs = ib__arena_alloc(g->arena, 8 * sizeof(ib__value *));
    n->attrs = ib__arena_alloc(g->arena, 4 * sizeof(ib__attr));
    const char *lists[2] = {ins, outs};
    for (int l = 0; l < 2; l++) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", lists[l]);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            ib__value *v = strcmp(tok, "-") == 0 ? NULL : val(g, tok);
            if (l == 0) n->inputs[n->n_inputs++] = v;
            else n->outputs[n->n_outputs++] = v;
        }
    }
    va_list ap;
    va_start(ap, outs);
    for (const char *name = va_arg(ap, const char *); name; name = va_arg(ap, const char *)) {
        ib__attr *a = &n->attrs[n->n_attrs++];
        memset(a, 0, sizeof *a);
        a->name = name;
        if (strcmp(name, "perm") == 0 || strcmp(name, "axes") == 0 ||
            strcmp(name, "kernel_shape") == 0) {
            a->kind = IB_ATTR_INTS;
            a->count = va_arg(ap, int);
            a->ints = ib__arena_alloc(g->arena, (size_t)a->count * sizeof(int64_t));
            for (int32_t i = 0; i < a->count; i++) a->ints[i] = va_arg(ap, int);
        } else {
            a->kind = IB_ATTR_INT;
            a->i = va_arg(ap, int);
        }
    }
    va_end(ap);
}

/* Finishes g (outputs as a comma list), analyses it and destroys it. */
static ib__batch_verdict analyze(ib__graph *g, const char *outs) {
    ib__batch_verdict v;
    memset(&v, 0, sizeof v);
    char buf[128];
    snprintf(buf, sizeof buf, "%s", outs);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        ib__graph_add_output(g, val(g, tok));
    g->opset = 13;
    if (ib__graph_finalize(g) || ib__infer_graph(g, NULL)) {
        fprintf(stderr, "  hand-made graph: %s\n", ib_last_error());
        snprintf(v.reason, sizeof v.reason, "graph did not build");
    } else if (ib__batch_analyze(g, &v) != IB_OK) {
        snprintf(v.reason, sizeof v.reason, "analysis failed");
    }
    ib__graph_destroy(g);
    return v;
}

static bool fails_at(const ib__batch_verdict *v, const char *what) {
    if (v->separable || !strstr(v->reason, what)) {
        fprintf(stderr, "  expected a refusal mentioning '%s', got separable=%d '%s'\n", what,
                v->separable, v->reason);
        return false;
    }
    return true;
}

static float g_zero[4096];

/* A small CNN: Conv, BatchNormalization, Relu, MaxPool, residual Add, global pool,
 * Flatten, Gemm, Softmax. */
TEST(cnn_is_separable) {
    ib__graph *g = graph();
    input(g, "x", 4, (int64_t[]){-1, 3, 8, 8}, "batch");
    constant(g, "w", IB_DTYPE_FLOAT32, 4, (int64_t[]){4, 3, 3, 3}, g_zero);
    constant(g, "b", IB_DTYPE_FLOAT32, 1, (int64_t[]){4}, g_zero);
    constant(g, "s", IB_DTYPE_FLOAT32, 1, (int64_t[]){4}, g_zero);
    constant(g, "fw", IB_DTYPE_FLOAT32, 2, (int64_t[]){10, 4}, g_zero);
    constant(g, "fb", IB_DTYPE_FLOAT32, 1, (int64_t[]){10}, g_zero);
    node(g, "Conv", "x,w,b", "c", NULL);
    node(g, "BatchNormalization", "c,s,b,b,s", "bn", NULL);
    node(g, "Relu", "bn", "r", NULL);
    node(g, "Add", "r,c", "res", NULL);
    node(g, "MaxPool", "res", "p", "kernel_shape", 2, 2, 2, NULL);
    node(g, "GlobalAveragePool", "p", "gp", NULL);
    node(g, "Flatten", "gp", "f", "axis", 1, NULL);
    node(g, "Gemm", "f,fw,fb", "logits", "transB", 1, NULL);
    node(g, "Softmax", "logits", "prob", "axis", 1, NULL);
    ib__batch_verdict v = analyze(g, "prob,logits");
    CHECK(v.separable);
    CHECK(strcmp(v.symbol, "batch") == 0);
    if (!v.separable) fprintf(stderr, "  reason: %s\n", v.reason);
}

/* Transformer-style: embedding Gather, MatMul on [N, S, D], Transpose keeping axis 0,
 * batched MatMul of two batched values, Reshape [0, S, -1], ReduceMean on the last
 * axis, Concat on axis 1, Slice on axis 2. */
TEST(encoder_is_separable) {
    ib__graph *g = graph();
    input(g, "ids", 2, (int64_t[]){-1, 4}, NULL);
    val(g, "ids")->dtype = IB_DTYPE_INT64;
    constant(g, "emb", IB_DTYPE_FLOAT32, 2, (int64_t[]){32, 8}, g_zero);
    constant(g, "wq", IB_DTYPE_FLOAT32, 2, (int64_t[]){8, 8}, g_zero);
    ints(g, "shp", 3, (int64_t[]){0, 4, -1});
    ints(g, "st", 1, (int64_t[]){0});
    ints(g, "en", 1, (int64_t[]){4});
    ints(g, "ax", 1, (int64_t[]){2});
    node(g, "Gather", "emb,ids", "e", "axis", 0, NULL);
    node(g, "MatMul", "e,wq", "q", NULL);
    node(g, "Transpose", "q", "qt", "perm", 3, 0, 2, 1, NULL);
    node(g, "MatMul", "q,qt", "att", NULL);
    node(g, "Reshape", "att,shp", "rs", NULL);
    node(g, "ReduceMean", "rs", "m", "axes", 1, -1, NULL);
    node(g, "Concat", "rs,e", "cat", "axis", 2, NULL);
    node(g, "Slice", "cat,st,en,ax", "sl", NULL);
    /* token types as BERT exports them: zeros shaped like the ids */
    node(g, "Shape", "ids", "ids_shape", NULL);
    node(g, "ConstantOfShape", "ids_shape", "zeros", NULL);
    node(g, "Cast", "zeros", "types", "to", IB_DTYPE_INT64, NULL);
    node(g, "Gather", "emb,types", "te", "axis", 0, NULL);
    node(g, "Add", "sl,te", "sum", NULL);
    ib__batch_verdict v = analyze(g, "m,sum");
    CHECK(v.separable);
    if (!v.separable) fprintf(stderr, "  reason: %s\n", v.reason);
}

TEST(mixing_ops_fail) {
    ib__graph *g;
    ib__batch_verdict v;
    /* softmax over the batch */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    node(g, "Softmax", "x", "y", "axis", 0, NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "normalises over the batch"));
    /* reduce over every axis */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    node(g, "ReduceSum", "x", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "reduces every axis"));
    /* transpose moving the batch */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    node(g, "Transpose", "x", "y", "perm", 2, 1, 0, NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "moves the batch"));
    /* Gemm with the batch on the reduced axis */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    constant(g, "w", IB_DTYPE_FLOAT32, 2, (int64_t[]){-1 + 5, 3}, g_zero);
    node(g, "Gemm", "x,w", "y", "transA", 1, NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "transA"));
    /* a batched value as MatMul's B (rank 2: the batch is reduced over) */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    input(g, "z", 2, (int64_t[]){-1, 4}, NULL);
    node(g, "Transpose", "z", "zt", "perm", 2, 0, 1, NULL);
    node(g, "MatMul", "x,zt", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "both inputs batched"));
    /* Reshape regrouping samples: [N, 4] -> [-1, 8] */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    ints(g, "shp", 2, (int64_t[]){-1, 8});
    node(g, "Reshape", "x,shp", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "regroups"));
    /* Flatten axis 0 */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    node(g, "Flatten", "x", "y", "axis", 0, NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "flattens the batch"));
    /* Concat along the batch */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    node(g, "Concat", "x,x", "y", "axis", 0, NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "along the batch"));
    /* a constant spanning dim 0 in a broadcast */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    constant(g, "c", IB_DTYPE_FLOAT32, 2, (int64_t[]){3, 4}, g_zero);
    node(g, "Add", "x,c", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "spans dim 0"));
    /* a constant (computed from an initializer) adding a leading axis */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    constant(g, "c", IB_DTYPE_FLOAT32, 3, (int64_t[]){3, 1, 4}, g_zero);
    node(g, "Relu", "c", "c2", NULL);
    node(g, "Add", "x,c2", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "spans dim 0"));
    /* MatMul with a rank-3 constant B: [N,4] @ [3,4,2] is [3,N,2] */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    constant(g, "b", IB_DTYPE_FLOAT32, 3, (int64_t[]){3, 4, 2}, g_zero);
    node(g, "MatMul", "x,b", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "move the batch"));
    /* Squeeze without axes (would drop a batch of 1) */
    g = graph();
    input(g, "x", 3, (int64_t[]){-1, 1, 4}, NULL);
    node(g, "Squeeze", "x", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "would squeeze"));
    /* a shape computed from the batch */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    node(g, "Shape", "x", "s", NULL);
    node(g, "Reshape", "x,s", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "reads the shape of a batched value"));
    /* an op without a rule */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    node(g, "NonZero", "x", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "no batch rule for 'NonZero'"));
}

TEST(inputs_and_outputs_must_carry_the_batch) {
    ib__graph *g;
    ib__batch_verdict v;
    /* a static dim 0 */
    g = graph();
    input(g, "x", 2, (int64_t[]){2, 4}, NULL);
    node(g, "Relu", "x", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "input 'x'"));
    /* two different symbols */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, "N");
    input(g, "z", 2, (int64_t[]){-1, 4}, "M");
    node(g, "Add", "x,z", "y", NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "different dim-0 symbols"));
    /* an output that does not depend on the inputs */
    g = graph();
    input(g, "x", 2, (int64_t[]){-1, 4}, NULL);
    constant(g, "c", IB_DTYPE_FLOAT32, 1, (int64_t[]){4}, g_zero);
    node(g, "Relu", "x", "y", NULL);
    node(g, "Neg", "c", "k", NULL);
    v = analyze(g, "y,k");
    CHECK(fails_at(&v, "output 'k'"));
    /* BatchNormalization in training mode */
    g = graph();
    input(g, "x", 4, (int64_t[]){-1, 2, 3, 3}, NULL);
    constant(g, "s", IB_DTYPE_FLOAT32, 1, (int64_t[]){2}, g_zero);
    node(g, "BatchNormalization", "x,s,s,s,s", "y", "training_mode", 1, NULL);
    v = analyze(g, "y");
    CHECK(fails_at(&v, "training"));
}

int main(void) {
    RUN(cnn_is_separable);
    RUN(encoder_is_separable);
    RUN(mixing_ops_fail);
    RUN(inputs_and_outputs_must_carry_the_batch);
    TEST_SUMMARY();
}
