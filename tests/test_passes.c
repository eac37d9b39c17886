/* Compiler passes: plans built from ONNX test models and hand-made graphs are checked
 * for concrete shapes, the input/output buffer convention, and a memory plan in which
 * no two buffers live at the same time share a byte (checked exhaustively). */
#include <dirent.h>
#include <stdarg.h>

#include "api/model_internal.h"
#include "ir/shape_inference.h"
#include "passes/compile_plan.h"
#include "passes/passes_internal.h"
#include "test.h"

#define DATA "/usr/share/libonnx-testdata/data/"

static int32_t root_of(const ib__plan *p, int32_t b) {
    for (int32_t hops = 0; hops <= p->n_bufs && p->bufs[b].alias_of >= 0; hops++)
        b = p->bufs[b].alias_of;
    return b;
}

static int32_t args_of(const ib__pkernel *k, int32_t *args) {
    int32_t n = 0;
    for (int32_t i = 0; i < k->n_in; i++) args[n++] = k->in[i];
    for (int32_t i = 0; i < k->n_out; i++) args[n++] = k->out[i];
    for (int32_t i = 0; i < k->n_epi; i++)
        if (k->epi[i].kind == IB_EPI_BINARY) args[n++] = k->epi[i].operand_buf;
    return n;
}

/* Every invariant a plan must hold, whatever passes ran. */
static void check_plan(const ib__plan *p, const ib__graph *g) {
    int32_t n_rt_inputs = 0;
    for (int32_t i = 0; i < g->n_inputs; i++) n_rt_inputs += g->inputs[i]->kind == IB_VALUE_INPUT;
    CHECK_EQ_INT(p->n_inputs, n_rt_inputs);
    CHECK_EQ_INT(p->n_outputs, g->n_outputs);
    CHECK(p->n_bufs >= p->n_inputs + p->n_outputs);
    for (int32_t i = 0; i < p->n_inputs; i++) {
        CHECK_EQ_INT(p->bufs[i].kind, IB_BUF_INPUT);
        CHECK_EQ_INT(p->bufs[i].io_index, i);
    }
    for (int32_t o = 0; o < p->n_outputs; o++) {
        const ib__pbuf *b = &p->bufs[p->n_inputs + o];
        CHECK_EQ_INT(b->kind, IB_BUF_OUTPUT);
        CHECK_EQ_INT(b->io_index, o);
        CHECK(strcmp(b->value->name, g->outputs[o]->name) == 0);
        int writers = 0;
        for (int32_t k = 0; k < p->n_kernels; k++)
            for (int32_t j = 0; j < p->kernels[k].n_out; j++)
                writers += p->kernels[k].out[j] == p->n_inputs + o;
        CHECK_EQ_INT(writers, 1);
    }
    size_t sum = 0;
    for (int32_t b = 0; b < p->n_bufs; b++) {
        const ib__pbuf *pb = &p->bufs[b];
        CHECK(pb->rank >= 0 && pb->rank <= IB_MAX_RANK);
        for (int32_t d = 0; d < pb->rank; d++) CHECK(pb->dims[d] >= 0);
        if (pb->kind != IB_BUF_WEIGHT) CHECK_EQ_INT(pb->nbytes, ib__pbuf_physical_bytes(pb));
        if (pb->kind == IB_BUF_WEIGHT)
            CHECK(pb->offset % 64 == 0 && (size_t)pb->offset + pb->nbytes <= p->weights_bytes);
        if (pb->kind == IB_BUF_TEMP && pb->alias_of < 0) {
            CHECK(pb->offset % 64 == 0);
            CHECK((size_t)pb->offset + pb->nbytes <= p->arena_bytes);
            sum += (pb->nbytes + 63) & ~(size_t)63;
        }
        if (pb->alias_of >= 0) CHECK(p->bufs[root_of(p, b)].alias_of < 0);
    }
    CHECK(p->arena_bytes <= sum);
    /* Each kernel's buffers are within their (root's) lifetime, and TEMPs it reads were
     * written by an earlier kernel. */
    uint8_t *written = calloc((size_t)p->n_bufs + 1, 1);
    int32_t args[64];
    for (int32_t k = 0; k < p->n_kernels; k++) {
        const ib__pkernel *kk = &p->kernels[k];
        if (kk->tmpl == &ib__template_layout_transform)
            CHECK(kk->n_nodes == 0 && kk->n_in == 1 && kk->n_out == 1);
        else
            CHECK(kk->n_nodes >= 1 && kk->nodes && kk->nodes[0]);
        int32_t n = args_of(kk, args);
        for (int32_t a = 0; a < n; a++) {
            if (args[a] < 0) continue;
            CHECK(args[a] < p->n_bufs);
            int32_t r = root_of(p, args[a]);
            const ib__pbuf *rb = &p->bufs[r];
            if (rb->kind == IB_BUF_TEMP) CHECK(rb->first_use <= k && k <= rb->last_use);
            bool is_out = a >= kk->n_in && a < kk->n_in + kk->n_out;
            /* a kernel's workspace lives in that kernel alone */
            if (rb->scratch) CHECK(rb->kind == IB_BUF_TEMP && rb->first_use == k && rb->last_use == k);
            if (!is_out && rb->kind == IB_BUF_TEMP && !rb->scratch && !written[r]) {
                fprintf(stderr, "  kernel %d (%s) reads buffer %d before it is written\n", k,
                        kk->fn_name, args[a]);
                CHECK(written[r]);
            }
        }
        for (int32_t j = 0; j < kk->n_out; j++)
            if (kk->out[j] >= 0) written[root_of(p, kk->out[j])] = 1;
        /* Layouts: the reference op sees PLAIN buffers only; a FULL epilogue operand is in
         * its kernel's output layout. */
        if (!kk->tmpl)
            for (int32_t a = 0; a < n; a++)
                if (args[a] >= 0) CHECK_EQ_INT(p->bufs[args[a]].layout, IB_LAYOUT_PLAIN);
        for (int32_t e = 0; e < kk->n_epi; e++)
            if (kk->epi[e].kind == IB_EPI_BINARY && kk->epi[e].operand_kind == IB_EPI_FULL) {
                const ib__pbuf *ob = &p->bufs[kk->epi[e].operand_buf], *yb = &p->bufs[kk->out[0]];
                CHECK(ob->layout == yb->layout && ob->block == yb->block);
            }
        if (kk->tmpl == &ib__template_layout_transform) {
            const ib__pbuf *x = &p->bufs[kk->in[0]], *y = &p->bufs[kk->out[0]];
            CHECK(x->rank == y->rank && memcmp(x->dims, y->dims, sizeof x->dims) == 0);
            CHECK(x->layout != y->layout || x->block != y->block);
        }
    }
    free(written);
    /* Exhaustive: no two TEMP memories alive at once overlap. */
    int overlaps = 0;
    for (int32_t a = 0; a < p->n_bufs; a++) {
        const ib__pbuf *A = &p->bufs[a];
        if (A->kind != IB_BUF_TEMP || A->alias_of >= 0) continue;
        for (int32_t b = a + 1; b < p->n_bufs; b++) {
            const ib__pbuf *B = &p->bufs[b];
            if (B->kind != IB_BUF_TEMP || B->alias_of >= 0) continue;
            bool live_together = A->first_use <= B->last_use && B->first_use <= A->last_use;
            bool share = A->offset < B->offset + (int64_t)B->nbytes &&
                         B->offset < A->offset + (int64_t)A->nbytes;
            if (live_together && share && A->nbytes && B->nbytes) overlaps++;
        }
    }
    CHECK_EQ_INT(overlaps, 0);
}

/* IB_PLAN_DUMP=1 prints each plan's kernels (for reading what fusion and layout did). */
static void dump_plan(const ib__plan *p, const char *what) {
    if (!getenv("IB_PLAN_DUMP")) return;
    printf("plan %s: %d kernels, %d buffers, arena %zu, weights %zu\n", what, p->n_kernels,
           p->n_bufs, p->arena_bytes, p->weights_bytes);
    for (int32_t k = 0; k < p->n_kernels; k++) {
        const ib__pkernel *kk = &p->kernels[k];
        printf("  %-28s %-22s", kk->fn_name, kk->tmpl ? kk->tmpl->name : "(fallback)");
        for (int32_t n = 0; n < kk->n_nodes; n++) printf(" %s", kk->nodes[n]->op_type);
        printf(" |");
        for (int32_t e = 0; e < kk->n_epi; e++)
            printf(" %s%s", ib__op_name(kk->epi[e].op),
                   kk->epi[e].kind == IB_EPI_BINARY
                       ? (const char *[]){"(s)", "(c)", "(f)"}[kk->epi[e].operand_kind]
                       : "");
        const ib__pbuf *o = kk->n_out > 0 && kk->out[0] >= 0 ? &p->bufs[kk->out[0]] : NULL;
        if (o && o->layout == IB_LAYOUT_NCHWC) printf(" [nchw%dc]", o->block);
        printf("\n");
    }
}

static ib_model *load(const char *path) {
    ib_model *m = NULL;
    if (ib_model_load_file(path, &m) != IB_OK) {
        fprintf(stderr, "  cannot load %s: %s\n", path, ib_last_error());
        return NULL;
    }
    return m;
}

static void plan_model(const char *path, int32_t batch, bool fusion) {
    ib_model *m = load(path);
    CHECK(m != NULL);
    if (!m) return;
    ib__target t;
    CHECK_EQ_INT(ib__target_resolve("generic", &t), IB_OK);
    ib__compile_options opt;
    ib__compile_options_init(&opt);
    opt.batch = batch;
    opt.disable_fusion = !fusion;
    ib__plan *p = NULL;
    ib_status st = ib__build_plan(ib__model_graph(m), &t, &opt, &p);
    if (st) fprintf(stderr, "  %s: %s\n", path, ib_last_error());
    CHECK_EQ_INT(st, IB_OK);
    if (p) {
        check_plan(p, ib__model_graph(m));
        CHECK(p->n_kernels > 0);
        dump_plan(p, path);
    }
    ib__plan_destroy(p);
    ib_model_destroy(m);
}

/* The e2e models (generated into the build's tests/models by test_models_e2e), when
 * present: ctest runs this binary in that directory. */
TEST(e2e_models) {
    const char *names[] = {"resnet50_small", "mobilenet_v2_small", "bert_small"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[256];
        snprintf(path, sizeof path, "models/%s/model.onnx", names[i]);
        FILE *f = fopen(path, "rb");
        if (!f) {
            printf("note: %s absent (run the e2e tests to generate it)\n", path);
            continue;
        }
        fclose(f);
        for (int fusion = 0; fusion < 2; fusion++) {
            plan_model(path, 0, fusion);
            plan_model(path, 3, fusion);
        }
    }
}

TEST(converted_models) {
    const char *cases[] = {"pytorch-converted/test_ConvTranspose2d", "pytorch-converted/test_PReLU_2d",
                           "pytorch-operator/test_operator_lstm", "node/test_add_bcast",
                           "node/test_identity",
                           "pytorch-converted/test_Linear", "pytorch-converted/test_Conv2d_groups"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char path[256];
        snprintf(path, sizeof path, DATA "%s/model.onnx", cases[i]);
        FILE *f = fopen(path, "rb");
        if (!f) continue; /* not every package version ships every case */
        fclose(f);
        plan_model(path, 0, true);
    }
}

/* Every ONNX backend node case: the plan builds (or is refused as unsupported, naming
 * why) and holds the invariants. */
TEST(all_node_cases) {
    const char *dirs[] = {DATA "node", DATA "pytorch-converted", DATA "pytorch-operator",
                          DATA "simple"};
    int planned = 0, refused = 0, unloadable = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof *dirs; d++) {
        DIR *dir = opendir(dirs[d]);
        if (!dir) continue;
        struct dirent *e;
        while ((e = readdir(dir))) {
            if (e->d_name[0] == '.') continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s/model.onnx", dirs[d], e->d_name);
            ib_model *m = NULL;
            if (ib_model_load_file(path, &m) != IB_OK) {
                unloadable++;
                continue;
            }
            for (int fusion = 0; fusion < 2; fusion++) {
                ib__target t;
                ib__target_resolve(fusion ? "x86-64-v3" : "generic", &t);
                ib__compile_options opt;
                ib__compile_options_init(&opt);
                opt.disable_fusion = !fusion;
                ib__plan *p = NULL;
                ib_status st = ib__build_plan(ib__model_graph(m), &t, &opt, &p);
                if (st == IB_OK) {
                    int before = ib_test_failed_checks;
                    check_plan(p, ib__model_graph(m));
                    if (ib_test_failed_checks != before) fprintf(stderr, "  in %s\n", path);
                    planned++;
                } else {
                    if (st != IB_ERR_UNSUPPORTED && st != IB_ERR_SHAPE &&
                        st != IB_ERR_INVALID_MODEL) {
                        fprintf(stderr, "  %s: %s: %s\n", path, ib_status_name(st), ib_last_error());
                        CHECK(false);
                    }
                    if (getenv("IB_PLAN_DUMP")) printf("refused %s: %s\n", path, ib_last_error());
                    refused++;
                }
                ib__plan_destroy(p);
            }
            ib_model_destroy(m);
        }
        closedir(dir);
    }
    printf("note: %d plans built, %d refused, %d models not loadable\n", planned, refused,
           unloadable);
    CHECK(planned > 1000);
}

/* ---- Hand-made graphs ---------------------------------------------------------------- */
static ib__value *val(ib__graph *g, const char *name) {
    ib__value *v = NULL;
    ib__graph_get_value(g, name, &v);
    return v;
}

static ib__value *add_input(ib__graph *g, const char *name, int32_t rank, const int64_t *dims) {
    ib__value *v = val(g, name);
    v->kind = IB_VALUE_INPUT;
    v->dtype = IB_DTYPE_FLOAT32;
    v->rank = rank;
    for (int32_t d = 0; d < rank; d++) {
        v->dims[d] = dims[d];
        if (dims[d] < 0) v->dim_param[d] = "N";
    }
    ib__graph_add_input(g, v);
    return v;
}

static ib__value *add_const(ib__graph *g, const char *name, ib_dtype dt, int32_t rank,
                            const int64_t *dims, const void *data) {
    ib__value *v = val(g, name);
    ib_tensor *t = ib__arena_alloc(g->arena, sizeof *t);
    t->dtype = dt;
    t->rank = rank;
    for (int32_t d = 0; d < rank; d++) t->shape[d] = dims[d];
    t->nbytes = (size_t)ib__shape_count(dims, rank) * ib_dtype_size(dt);
    t->data = ib__arena_alloc(g->arena, t->nbytes + 1);
    if (data) memcpy(t->data, data, t->nbytes);
    v->kind = IB_VALUE_INITIALIZER;
    v->dtype = dt;
    v->rank = rank;
    for (int32_t d = 0; d < rank; d++) v->dims[d] = dims[d];
    v->constant = t;
    ib__graph_add_initializer(g, v);
    return v;
}

/* node(g, "Relu", "in1,in2", "out", "axis", 1, NULL): inputs/outputs as comma lists
 * ("" entries are omitted), then int attributes as name, value pairs. */
static ib__node *node(ib__graph *g, const char *op, const char *ins, const char *outs, ...) {
    ib__node *n = NULL;
    ib__graph_add_node(g, "", op, "", 13, &n);
    n->inputs = ib__arena_alloc(g->arena, 16 * sizeof(ib__value *));
    n->outputs = ib__arena_alloc(g->arena, 16 * sizeof(ib__value *));
    n->attrs = ib__arena_alloc(g->arena, 8 * sizeof(ib__attr));
    const char *lists[2] = {ins, outs};
    for (int l = 0; l < 2; l++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", lists[l]);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            ib__value *v = strcmp(tok, "-") == 0 ? NULL : val(g, tok);
            if (l == 0)
                n->inputs[n->n_inputs++] = v;
            else
                n->outputs[n->n_outputs++] = v;
        }
    }
    va_list ap;
    va_start(ap, outs);
    for (const char *name = va_arg(ap, const char *); name; name = va_arg(ap, const char *)) {
        ib__attr *a = &n->attrs[n->n_attrs++];
        a->name = name;
        a->kind = IB_ATTR_INT;
        a->i = va_arg(ap, int);
        int32_t list = strcmp(name, "axes") == 0                                      ? 1
                       : strcmp(name, "kernel_shape") == 0 || strcmp(name, "strides") == 0 ? 2
                                                                                           : 0;
        if (list) { /* a list repeating the value */
            a->kind = IB_ATTR_INTS;
            a->count = list;
            a->ints = ib__arena_alloc(g->arena, 2 * sizeof(int64_t));
            a->ints[0] = a->ints[1] = a->i;
        }
    }
    va_end(ap);
    return n;
}

static ib__graph *finish(ib__graph *g, const char *outs) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", outs);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        ib__graph_add_output(g, val(g, tok));
    g->opset = 13;
    if (ib__graph_finalize(g) || ib__infer_graph(g, NULL)) {
        fprintf(stderr, "  hand-made graph: %s\n", ib_last_error());
        ib__graph_destroy(g);
        return NULL;
    }
    return g;
}

static ib__plan *plan_graph(const ib__graph *g, int32_t batch, bool fusion, ib_status *st_out) {
    ib__target t;
    ib__target_resolve("generic", &t);
    ib__compile_options opt;
    ib__compile_options_init(&opt);
    opt.batch = batch;
    opt.disable_fusion = !fusion;
    ib__plan *p = NULL;
    ib_status st = ib__build_plan(g, &t, &opt, &p);
    if (st_out) *st_out = st;
    if (st == IB_OK) check_plan(p, g);
    return p;
}

static float g_w[4096];

/* Inputs/constants as outputs, a duplicated output, a dead branch, a symbolic batch. */
TEST(io_copies_and_dead_code) {
    ib__graph *g = NULL;
    ib__graph_create(NULL, &g);
    add_input(g, "x", 4, (int64_t[]){-1, 3, 8, 8});
    add_const(g, "w", IB_DTYPE_FLOAT32, 4, (int64_t[]){4, 3, 3, 3}, g_w);
    add_const(g, "m", IB_DTYPE_FLOAT32, 2, (int64_t[]){4 * 6 * 6, 5}, g_w);
    node(g, "Conv", "x,w", "c", NULL);
    node(g, "Relu", "c", "r", NULL);
    node(g, "Flatten", "r", "f", NULL);
    node(g, "MatMul", "f,m", "y", NULL);
    node(g, "Sigmoid", "x", "dead", NULL);
    g = finish(g, "y,x,w,y,r");
    CHECK(g != NULL);
    if (!g) return;
    ib_status st;
    ib__plan *p = plan_graph(g, 3, false, &st);
    CHECK_EQ_INT(st, IB_OK);
    if (p) {
        const ib__pbuf *y = &p->bufs[1];
        CHECK_EQ_INT(y->rank, 2);
        CHECK_EQ_INT(y->dims[0], 3);
        CHECK_EQ_INT(y->dims[1], 5);
        CHECK_EQ_INT(p->bufs[0].dims[0], 3);
        for (int32_t k = 0; k < p->n_kernels; k++)
            CHECK(p->kernels[k].n_nodes == 0 || p->kernels[k].nodes[0]->op != IB_OP_SIGMOID);
        int copies = 0;
        for (int32_t k = 0; k < p->n_kernels; k++)
            copies += p->kernels[k].n_nodes && p->kernels[k].nodes[0]->index < 0 &&
                      strcmp(p->kernels[k].nodes[0]->name, "output_copy") == 0;
        CHECK_EQ_INT(copies, 3); /* x, w, second y */
    }
    ib__plan_destroy(p);
    p = plan_graph(g, 0, true, &st);
    CHECK_EQ_INT(st, IB_OK);
    if (p) CHECK_EQ_INT(p->bufs[0].dims[0], 1);
    ib__plan_destroy(p);
    ib__graph_destroy(g);
}

/* Shape -> Gather -> Unsqueeze -> Concat -> Reshape on a symbolic batch resolves at plan
 * time: no kernel runs the shape computation. */
TEST(shape_chain_folds_for_batch) {
    ib__graph *g = NULL;
    ib__graph_create(NULL, &g);
    add_input(g, "x", 4, (int64_t[]){-1, 2, 3, 4});
    int64_t zero = 0, axes0 = 0, minus1 = -1;
    add_const(g, "i0", IB_DTYPE_INT64, 0, NULL, &zero);
    add_const(g, "ax", IB_DTYPE_INT64, 1, (int64_t[]){1}, &axes0);
    add_const(g, "m1", IB_DTYPE_INT64, 1, (int64_t[]){1}, &minus1);
    node(g, "Relu", "x", "r", NULL);
    node(g, "Shape", "r", "s", NULL);
    node(g, "Gather", "s,i0", "n", NULL);
    node(g, "Unsqueeze", "n,ax", "nu", NULL);
    node(g, "Concat", "nu,m1", "shp", "axis", 0, NULL);
    node(g, "Reshape", "r,shp", "y", NULL);
    g = finish(g, "y");
    CHECK(g != NULL);
    if (!g) return;
    ib_status st;
    ib__plan *p = plan_graph(g, 5, false, &st);
    CHECK_EQ_INT(st, IB_OK);
    if (p) {
        CHECK_EQ_INT(p->bufs[1].rank, 2);
        CHECK_EQ_INT(p->bufs[1].dims[0], 5);
        CHECK_EQ_INT(p->bufs[1].dims[1], 24);
        for (int32_t k = 0; k < p->n_kernels; k++) {
            if (!p->kernels[k].n_nodes) continue;
            ib__op_id op = p->kernels[k].nodes[0]->op;
            CHECK(op == IB_OP_RELU || op == IB_OP_RESHAPE);
        }
    }
    ib__plan_destroy(p);
    ib__graph_destroy(g);
}

TEST(data_dependent_shape_is_refused) {
    ib__graph *g = NULL;
    ib__graph_create(NULL, &g);
    add_input(g, "x", 2, (int64_t[]){3, 4});
    node(g, "NonZero", "x", "nz", NULL);
    node(g, "Transpose", "nz", "y", NULL);
    g = finish(g, "y");
    CHECK(g != NULL);
    if (!g) return;
    ib_status st;
    ib__plan *p = plan_graph(g, 0, true, &st);
    CHECK_EQ_INT(st, IB_ERR_UNSUPPORTED);
    CHECK(strstr(ib_last_error(), "'nz'") != NULL);
    CHECK(p == NULL);
    ib__graph_destroy(g);
}

/* A long chain with branches: the arena is reused, far below the sum of the buffers. */
TEST(memory_reuse) {
    ib__graph *g = NULL;
    ib__graph_create(NULL, &g);
    add_input(g, "x", 2, (int64_t[]){64, 64});
    char prev[16] = "x", cur[16], side[16], sum[16];
    for (int i = 0; i < 20; i++) {
        snprintf(cur, sizeof cur, "t%d", i);
        snprintf(side, sizeof side, "s%d", i);
        snprintf(sum, sizeof sum, "a%d", i);
        node(g, "Relu", prev, cur, NULL);
        node(g, "Neg", cur, side, NULL);
        char ins[40];
        snprintf(ins, sizeof ins, "%s,%s", cur, side);
        node(g, "Add", ins, sum, NULL);
        snprintf(prev, sizeof prev, "%s", sum);
    }
    g = finish(g, prev);
    CHECK(g != NULL);
    if (!g) return;
    ib_status st;
    ib__plan *p = plan_graph(g, 0, false, &st);
    CHECK_EQ_INT(st, IB_OK);
    if (p) {
        CHECK_EQ_INT(p->n_kernels, 60);
        CHECK(p->arena_bytes <= 3 * 64 * 64 * 4);
    }
    ib__plan_destroy(p);
    ib__graph_destroy(g);
}

static float g_ones[64] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

static ib__value *scalar(ib__graph *g, const char *name, float f) {
    return add_const(g, name, IB_DTYPE_FLOAT32, 0, NULL, &f);
}

/* Runs shapes and fusion only, returning the group that holds the node producing `v`. */
static const ib__group *group_of(ib__lower *L, const char *value) {
    const ib__value *v = ib__graph_find_value(L->graph, value);
    if (!v || !v->producer || L->group[v->producer->index] < 0) return NULL;
    return &L->groups[L->group[v->producer->index]];
}

static bool fuse(ib__lower *L, const ib__graph *g, bool disable) {
    ib__target t;
    ib__target_resolve("generic", &t);
    ib__compile_options opt;
    ib__compile_options_init(&opt);
    opt.disable_fusion = disable;
    if (ib__lower_init(L, g, &t, &opt) || ib__pass_shapes(L) || ib__pass_fusion(L)) {
        fprintf(stderr, "  fusion: %s\n", ib_last_error());
        ib__lower_free(L, true);
        return false;
    }
    return true;
}

/* The full plan builds and is valid whatever the templates take. */
static void plan_ok(const ib__graph *g) {
    for (int fusion = 0; fusion < 2; fusion++) {
        ib_status st;
        ib__plan *p = plan_graph(g, 0, fusion, &st);
        CHECK_EQ_INT(st, IB_OK);
        if (p) dump_plan(p, "hand-made");
        ib__plan_destroy(p);
    }
}

TEST(fusion_conv_bn_epilogue) {
    ib__graph *g = NULL;
    ib__graph_create(NULL, &g);
    add_input(g, "x", 4, (int64_t[]){1, 3, 8, 8});
    add_const(g, "w", IB_DTYPE_FLOAT32, 4, (int64_t[]){4, 3, 3, 3}, g_w);
    add_const(g, "w2", IB_DTYPE_FLOAT32, 4, (int64_t[]){4, 3, 3, 3}, g_w);
    add_const(g, "s", IB_DTYPE_FLOAT32, 1, (int64_t[]){4}, g_ones);
    add_const(g, "b", IB_DTYPE_FLOAT32, 1, (int64_t[]){4}, g_w);
    add_const(g, "mu", IB_DTYPE_FLOAT32, 1, (int64_t[]){4}, g_w);
    add_const(g, "var", IB_DTYPE_FLOAT32, 1, (int64_t[]){4}, g_ones);
    add_const(g, "bias", IB_DTYPE_FLOAT32, 3, (int64_t[]){4, 1, 1}, g_w);
    scalar(g, "two", 2.0f);
    node(g, "Conv", "x,w", "c", NULL);
    node(g, "BatchNormalization", "c,s,b,mu,var", "bn", NULL);
    node(g, "Relu", "bn", "r", NULL);
    node(g, "Conv", "x,w2", "c2", NULL);
    node(g, "Add", "r,c2", "a", NULL);
    node(g, "Add", "bias,a", "ab", NULL);
    node(g, "Mul", "ab,two", "y", NULL);
    g = finish(g, "y");
    CHECK(g != NULL);
    if (!g) return;
    ib__lower L;
    if (fuse(&L, g, false)) {
        const ib__group *gr = group_of(&L, "y");
        CHECK(gr != NULL);
        if (gr) {
            CHECK_EQ_INT(gr->kind, IB_GROUP_ANCHOR);
            CHECK_EQ_INT(gr->n_main, 2);
            CHECK_EQ_INT(gr->nodes[1]->op, IB_OP_BATCH_NORMALIZATION);
            CHECK_EQ_INT(gr->n_epi, 4);
            CHECK_EQ_INT(gr->epi[0].op, IB_OP_RELU);
            CHECK_EQ_INT(gr->epi[1].operand_kind, IB_EPI_FULL);
            CHECK_EQ_INT(gr->epi[2].operand_kind, IB_EPI_PER_CHANNEL);
            CHECK(gr->epi[2].operand_first);
            CHECK_EQ_INT(gr->epi[3].operand_kind, IB_EPI_SCALAR);
            CHECK(strcmp(gr->out->name, "y") == 0);
            CHECK(gr->channel_axis_1);
        }
        ib__lower_free(&L, true);
    }
    if (fuse(&L, g, true)) {
        for (int32_t i = 0; i < L.n_groups; i++) CHECK_EQ_INT(L.groups[i].kind, IB_GROUP_SINGLE);
        CHECK_EQ_INT(L.n_groups, 7);
        ib__lower_free(&L, true);
    }
    plan_ok(g);
    ib__graph_destroy(g);
}

/* The erf GELU after a MatMul, in two of the orders exporters write. */
TEST(fusion_gelu) {
    for (int form = 0; form < 2; form++) {
        ib__graph *g = NULL;
        ib__graph_create(NULL, &g);
        add_input(g, "x", 2, (int64_t[]){2, 8});
        add_const(g, "m", IB_DTYPE_FLOAT32, 2, (int64_t[]){8, 8}, g_w);
        scalar(g, "sqrt2", 1.4142135f);
        scalar(g, "one", 1.0f);
        scalar(g, "half", 0.5f);
        node(g, "MatMul", "x,m", "h", NULL);
        node(g, "Div", "h,sqrt2", "d", NULL);
        node(g, "Erf", "d", "e", NULL);
        node(g, "Add", "e,one", "f", NULL);
        if (form == 0) {
            node(g, "Mul", "h,f", "gg", NULL);
            node(g, "Mul", "gg,half", "y", NULL);
        } else {
            node(g, "Mul", "h,half", "hh", NULL);
            node(g, "Mul", "hh,f", "y", NULL);
        }
        g = finish(g, "y");
        CHECK(g != NULL);
        if (!g) return;
        ib__lower L;
        if (fuse(&L, g, false)) {
            const ib__group *gr = group_of(&L, "y");
            CHECK(gr != NULL);
            if (gr) {
                CHECK_EQ_INT(gr->kind, IB_GROUP_ANCHOR);
                CHECK_EQ_INT(gr->n_nodes, 6);
                CHECK_EQ_INT(gr->n_epi, 1);
                CHECK_EQ_INT(gr->epi[0].op, IB_OP_GELU);
            }
            ib__lower_free(&L, true);
        }
        plan_ok(g);
        ib__graph_destroy(g);
    }
}

TEST(fusion_layernorm_and_attention) {
    ib__graph *g = NULL;
    ib__graph_create(NULL, &g);
    add_input(g, "q", 4, (int64_t[]){1, 2, 4, 8});
    add_input(g, "kt", 4, (int64_t[]){1, 2, 8, 4});
    add_input(g, "v", 4, (int64_t[]){1, 2, 4, 8});
    add_input(g, "mask", 4, (int64_t[]){1, 1, 1, 4});
    scalar(g, "scale", 2.0f);
    scalar(g, "two", 2.0f);
    scalar(g, "eps", 1e-5f);
    add_const(g, "gamma", IB_DTYPE_FLOAT32, 1, (int64_t[]){8}, g_ones);
    add_const(g, "beta", IB_DTYPE_FLOAT32, 1, (int64_t[]){8}, g_w);
    node(g, "MatMul", "q,kt", "s", NULL);
    node(g, "Div", "s,scale", "sd", NULL);
    node(g, "Add", "sd,mask", "sm", NULL);
    node(g, "Softmax", "sm", "p", "axis", -1, NULL);
    node(g, "MatMul", "p,v", "att", NULL);
    node(g, "ReduceMean", "att", "mean", "axes", -1, NULL);
    node(g, "Sub", "att,mean", "dev", NULL);
    node(g, "Pow", "dev,two", "sq", NULL);
    node(g, "ReduceMean", "sq", "var", "axes", -1, NULL);
    node(g, "Add", "var,eps", "ve", NULL);
    node(g, "Sqrt", "ve", "sd2", NULL);
    node(g, "Div", "dev,sd2", "nrm", NULL);
    node(g, "Mul", "nrm,gamma", "sc", NULL);
    node(g, "Add", "sc,beta", "y", NULL);
    g = finish(g, "y");
    CHECK(g != NULL);
    if (!g) return;
    ib__lower L;
    if (fuse(&L, g, false)) {
        const ib__group *at = group_of(&L, "att");
        CHECK(at != NULL);
        if (at) {
            CHECK_EQ_INT(at->kind, IB_GROUP_ATTENTION);
            CHECK_EQ_INT(at->n_nodes, 5);
            CHECK_EQ_INT(at->n_in, 4);
        }
        const ib__group *ln = group_of(&L, "y");
        CHECK(ln != NULL);
        if (ln) {
            CHECK_EQ_INT(ln->kind, IB_GROUP_LAYERNORM);
            CHECK_EQ_INT(ln->n_nodes, 9);
            CHECK_EQ_INT(ln->anchor->op, IB_OP_LAYER_NORMALIZATION);
            CHECK_EQ_INT(ln->n_in, 3);
            float eps = 0;
            CHECK_EQ_INT(ib__attr_float(ln->anchor, "epsilon", 0, &eps), IB_OK);
            CHECK_NEAR(eps, 1e-5, 1e-9);
        }
        ib__lower_free(&L, true);
    }
    plan_ok(g);
    ib__graph_destroy(g);
}

/* Reshape-like nodes on arena buffers become views; a model output still gets a copy. */
TEST(reshape_aliases) {
    ib__graph *g = NULL;
    ib__graph_create(NULL, &g);
    add_input(g, "x", 2, (int64_t[]){4, 6});
    int64_t shp[2] = {6, 4};
    add_const(g, "shp", IB_DTYPE_INT64, 1, (int64_t[]){2}, shp);
    node(g, "Relu", "x", "r", NULL);
    node(g, "Reshape", "r,shp", "rs", NULL);
    node(g, "Flatten", "rs", "fl", NULL);
    node(g, "Sigmoid", "fl", "y", NULL);
    node(g, "Reshape", "r,shp", "y2", NULL);
    g = finish(g, "y,y2");
    CHECK(g != NULL);
    if (!g) return;
    ib_status st;
    ib__plan *p = plan_graph(g, 0, true, &st);
    CHECK_EQ_INT(st, IB_OK);
    if (p) {
        int reshapes = 0, aliases = 0;
        for (int32_t k = 0; k < p->n_kernels; k++)
            reshapes += p->kernels[k].n_nodes && (p->kernels[k].nodes[0]->op == IB_OP_RESHAPE ||
                                                  p->kernels[k].nodes[0]->op == IB_OP_FLATTEN);
        for (int32_t b = 0; b < p->n_bufs; b++) aliases += p->bufs[b].alias_of >= 0;
        CHECK_EQ_INT(reshapes, 1); /* y2: the caller's memory needs the bytes */
        CHECK_EQ_INT(aliases, 2);  /* rs and fl share r */
        dump_plan(p, "aliases");
    }
    ib__plan_destroy(p);
    ib__graph_destroy(g);
}

/* Conv chains on every target level: blocked layouts where templates take them, and
 * the plan invariants (conversions, PLAIN fallbacks) hold either way. */
TEST(conv_chain_layouts) {
    ib__graph *g = NULL;
    ib__graph_create(NULL, &g);
    add_input(g, "x", 4, (int64_t[]){-1, 3, 10, 10});
    add_const(g, "w1", IB_DTYPE_FLOAT32, 4, (int64_t[]){8, 3, 3, 3}, g_w);
    add_const(g, "w2", IB_DTYPE_FLOAT32, 4, (int64_t[]){8, 8, 1, 1}, g_w);
    add_const(g, "w3", IB_DTYPE_FLOAT32, 4, (int64_t[]){8, 8, 3, 3}, g_w);
    node(g, "Conv", "x,w1", "c1", NULL);
    node(g, "Relu", "c1", "r1", NULL);
    node(g, "Conv", "r1,w2", "c2", NULL);
    node(g, "Add", "c2,r1", "a", NULL);
    node(g, "MaxPool", "a", "p", "kernel_shape", 2, NULL);
    node(g, "Conv", "p,w3", "c3", NULL);
    node(g, "Softsign", "c3", "s", NULL); /* no template: reads PLAIN */
    node(g, "Conv", "s,w2", "y", NULL);
    g = finish(g, "y,a");
    CHECK(g != NULL);
    if (!g) return;
    const char *targets[] = {"generic", "x86-64-v3", "x86-64-v4"};
    for (int t = 0; t < 3; t++)
        for (int fusion = 0; fusion < 2; fusion++) {
            ib__target tg;
            CHECK_EQ_INT(ib__target_resolve(targets[t], &tg), IB_OK);
            ib__compile_options opt;
            ib__compile_options_init(&opt);
            opt.batch = 2;
            opt.disable_fusion = !fusion;
            ib__plan *p = NULL;
            ib_status st = ib__build_plan(g, &tg, &opt, &p);
            CHECK_EQ_INT(st, IB_OK);
            if (!p) continue;
            check_plan(p, g);
            dump_plan(p, targets[t]);
            ib__plan_destroy(p);
        }
    ib__graph_destroy(g);
}

/* Out of memory at every allocation of a plan build: an error, never a crash or a leak
 * (the ASan build checks the leaks). */
static long g_allocs_left;
static void *failing_alloc(void *user, void *ptr, size_t old_size, size_t new_size) {
    (void)user;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    if (g_allocs_left-- <= 0) return NULL;
    return realloc(ptr, new_size);
}

TEST(out_of_memory_paths) {
    ib__graph *g = NULL;
    ib__graph_create(NULL, &g);
    add_input(g, "x", 4, (int64_t[]){-1, 3, 10, 10});
    add_const(g, "w1", IB_DTYPE_FLOAT32, 4, (int64_t[]){8, 3, 3, 3}, g_w);
    add_const(g, "w2", IB_DTYPE_FLOAT32, 4, (int64_t[]){8, 8, 1, 1}, g_w);
    node(g, "Conv", "x,w1", "c1", NULL);
    node(g, "Relu", "c1", "r1", NULL);
    node(g, "Conv", "r1,w2", "c2", NULL);
    node(g, "Add", "c2,r1", "a", NULL);
    node(g, "Softsign", "a", "s", NULL);
    node(g, "Flatten", "s", "f", NULL);
    node(g, "Relu", "f", "y", NULL);
    g = finish(g, "y,a");
    CHECK(g != NULL);
    if (!g) return;
    ib__target t;
    ib__target_resolve("x86-64-v3", &t);
    bool built = false;
    for (long n = 0; n < 5000 && !built; n++) {
        g_allocs_left = n;
        ib__set_allocator(failing_alloc, NULL);
        ib__plan *p = NULL;
        ib_status st = ib__build_plan(g, &t, NULL, &p);
        ib__set_allocator(NULL, NULL);
        if (st == IB_OK) {
            built = true;
            check_plan(p, g);
        } else {
            CHECK(p == NULL);
        }
        ib__plan_destroy(p);
    }
    CHECK(built);
    ib__graph_destroy(g);
}

int main(void) {
    RUN(out_of_memory_paths);
    RUN(reshape_aliases);
    RUN(conv_chain_layouts);
    RUN(fusion_conv_bn_epilogue);
    RUN(fusion_gelu);
    RUN(fusion_layernorm_and_attention);
    RUN(io_copies_and_dead_code);
    RUN(shape_chain_folds_for_batch);
    RUN(data_dependent_shape_is_refused);
    RUN(memory_reuse);
    RUN(converted_models);
    RUN(e2e_models);
    RUN(all_node_cases);
    TEST_SUMMARY();
}
