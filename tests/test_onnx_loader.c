/* Tests of the ONNX loader: the committed models under tests/data/onnx (made by
 * tools/make_loader_test_models.py), hostile inputs (truncation, corruption, failing
 * allocations), tensor files, and every model of the ONNX backend test data. */
#include <dirent.h>
#include <glob.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/graph.h"
#include "onnx/onnx_loader.h"
#include "test.h"

#ifndef IB_SOURCE_DIR
#define IB_SOURCE_DIR "."
#endif
#define DATA     IB_SOURCE_DIR "/tests/data/onnx/"
#define TESTDATA "/usr/share/libonnx-testdata/data"

static ib__onnx_model *load_ok(const char *path) {
    ib__onnx_model *m = NULL;
    ib_status st = ib__onnx_load_file(path, &m);
    if (st != IB_OK) {
        fprintf(stderr, "  loading %s: %s: %s\n", path, ib_status_name(st), ib_last_error());
        return NULL;
    }
    return m;
}

/* Loads `name` from the data folder expecting `want`, with `needle` in the message. */
static void expect_fail(const char *name, ib_status want, const char *needle) {
    char path[512];
    snprintf(path, sizeof path, DATA "%s", name);
    ib__onnx_model *m = NULL;
    ib_status st = ib__onnx_load_file(path, &m);
    if (st != want || !strstr(ib_last_error(), needle)) {
        fprintf(stderr, "  %s: got %s '%s', want %s with '%s'\n", name, ib_status_name(st),
                ib_last_error(), ib_status_name(want), needle);
        ib_test_failed_checks++;
    }
    CHECK(m == NULL);
    ib__onnx_model_destroy(m);
}

static const ib__node *find_node(const ib__graph *g, const char *name) {
    for (int32_t i = 0; i < g->n_nodes; i++)
        if (strcmp(g->nodes[i]->name, name) == 0) return g->nodes[i];
    return NULL;
}

static const ib_tensor *init_tensor(const ib__graph *g, const char *name) {
    const ib__value *v = ib__graph_find_value(g, name);
    if (!v || v->kind != IB_VALUE_INITIALIZER || !v->constant) {
        fprintf(stderr, "  initializer '%s' missing\n", name);
        return NULL;
    }
    return v->constant;
}

static bool is_aligned(const ib_tensor *t) {
    size_t a = ib_dtype_size(t->dtype);
    if (t->dtype == IB_DTYPE_COMPLEX64) a = 4;
    if (t->dtype == IB_DTYPE_COMPLEX128) a = 8;
    return a == 0 || (uintptr_t)t->data % a == 0;
}

static void *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* ---- Hand-written protobuf, for shapes no exporter makes ------------------------------ */
typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
} wbuf;

static void put_bytes(wbuf *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_varint(wbuf *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) tmp[n] |= 0x80;
        n++;
    } while (v);
    put_bytes(b, tmp, n);
}

static void put_len(wbuf *b, uint32_t field, const void *data, size_t n) {
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    put_bytes(b, data, n);
}

static void put_str(wbuf *b, uint32_t field, const char *s) {
    put_len(b, field, s, strlen(s));
}

static void put_int(wbuf *b, uint32_t field, uint64_t v) {
    put_varint(b, (uint64_t)field << 3);
    put_varint(b, v);
}

/* ModelProto { ir_version 8, opset_import {"" 17}, graph } */
static wbuf wrap_model(const wbuf *graph) {
    wbuf m = {0}, op = {0};
    put_int(&m, 1, 8);
    put_int(&op, 2, 17);
    put_len(&m, 8, op.p, op.n);
    put_len(&m, 7, graph->p, graph->n);
    free(op.p);
    return m;
}

static ib_status load_wbuf(const wbuf *m) {
    ib__onnx_model *model = NULL;
    ib_status st = ib__onnx_load_bytes(m->p, m->n, NULL, &model);
    ib__onnx_model_destroy(model);
    return st;
}

static void check_typed(const ib__graph *g) {
    const ib_tensor *t;
    if ((t = init_tensor(g, "t_float"))) {
        CHECK_EQ_INT(t->dtype, IB_DTYPE_FLOAT32);
        CHECK_EQ_INT(t->rank, 1);
        CHECK_NEAR(((float *)t->data)[2], 3.25, 0);
    }
    if ((t = init_tensor(g, "t_int32"))) CHECK_EQ_INT(((int32_t *)t->data)[1], 2147483647);
    if ((t = init_tensor(g, "t_int8"))) {
        CHECK_EQ_INT(((int8_t *)t->data)[0], -128);
        CHECK_EQ_INT(((int8_t *)t->data)[2], 127);
        CHECK_EQ_INT(t->nbytes, 3);
    }
    if ((t = init_tensor(g, "t_uint8"))) CHECK_EQ_INT(((uint8_t *)t->data)[1], 255);
    if ((t = init_tensor(g, "t_int16"))) CHECK_EQ_INT(((int16_t *)t->data)[0], -32768);
    if ((t = init_tensor(g, "t_uint16"))) CHECK_EQ_INT(((uint16_t *)t->data)[1], 65535);
    if ((t = init_tensor(g, "t_bool"))) {
        CHECK_EQ_INT(((uint8_t *)t->data)[0], 1);
        CHECK_EQ_INT(((uint8_t *)t->data)[1], 0);
    }
    if ((t = init_tensor(g, "t_float16"))) {
        CHECK_NEAR(ib__half_to_float(((uint16_t *)t->data)[0]), 1.0, 0);
        CHECK_NEAR(ib__half_to_float(((uint16_t *)t->data)[1]), -2.0, 0);
    }
    if ((t = init_tensor(g, "t_bfloat16")))
        CHECK_NEAR(ib__bf16_to_float(((uint16_t *)t->data)[1]), 3.0, 0);
    if ((t = init_tensor(g, "t_int64"))) {
        CHECK(((int64_t *)t->data)[0] == -((int64_t)1 << 40));
        CHECK(((int64_t *)t->data)[1] == (int64_t)1 << 62);
    }
    if ((t = init_tensor(g, "t_double"))) CHECK_NEAR(((double *)t->data)[1], -1e300, 0);
    if ((t = init_tensor(g, "t_uint32"))) CHECK(((uint32_t *)t->data)[1] == 4294967295u);
    if ((t = init_tensor(g, "t_uint64"))) CHECK(((uint64_t *)t->data)[0] == UINT64_MAX);
    if ((t = init_tensor(g, "t_scalar"))) {
        CHECK_EQ_INT(t->rank, 0);
        CHECK_NEAR(((float *)t->data)[0], 42.0, 0);
    }
    if ((t = init_tensor(g, "t_empty"))) {
        CHECK_EQ_INT(t->nbytes, 0);
        CHECK_EQ_INT(t->shape[0], 0);
        CHECK(t->data != NULL);
    }
    if ((t = init_tensor(g, "r_int64"))) CHECK_EQ_INT(((int64_t *)t->data)[3], 4);
    if ((t = init_tensor(g, "r_aligned"))) CHECK_NEAR(((float *)t->data)[15], 0.5, 0);
    if ((t = init_tensor(g, "r_misaligned"))) CHECK_NEAR(((float *)t->data)[0], 0.25, 0);
    size_t total = 0;
    for (int32_t i = 0; i < g->n_initializers; i++) {
        const ib_tensor *c = g->initializers[i]->constant;
        CHECK(is_aligned(c));
        total += c->nbytes;
    }
    CHECK_EQ_INT(total, 280);
}

TEST(typed_fields_and_raw_data) {
    ib__onnx_model *m = load_ok(DATA "typed_fields.onnx");
    if (!m) {
        CHECK(0);
        return;
    }
    check_typed(m->graph);
    /* r_aligned (64 bytes) is used in place; the typed fields (96 bytes) and
     * r_misaligned (64 bytes, at an odd offset) are copied. */
    CHECK(m->weight_bytes_mapped >= 64);
    CHECK(m->weight_bytes_copied >= 96 + 64);
    CHECK_EQ_INT(m->weight_bytes_mapped + m->weight_bytes_copied, 280);
    size_t mapped = m->weight_bytes_mapped;
    ib__onnx_model_destroy(m);

    /* The same from memory: the private copy keeps offsets' alignment. */
    size_t size;
    void *bytes = read_all(DATA "typed_fields.onnx", &size);
    CHECK(bytes != NULL);
    ib__onnx_model *mb = NULL;
    CHECK_EQ_INT(ib__onnx_load_bytes(bytes, size, NULL, &mb), IB_OK);
    free(bytes); /* the model must not need the caller's buffer */
    if (mb) {
        check_typed(mb->graph);
        CHECK_EQ_INT(mb->weight_bytes_mapped, mapped);
    }
    ib__onnx_model_destroy(mb);
}

TEST(external_data) {
    ib__onnx_model *m = load_ok(DATA "external.onnx");
    if (!m) {
        CHECK(0);
        return;
    }
    const ib_tensor *a = init_tensor(m->graph, "e_aligned");
    const ib_tensor *b = init_tensor(m->graph, "e_misaligned");
    if (a && b) {
        CHECK_EQ_INT(a->shape[0], 8);
        CHECK_NEAR(((float *)a->data)[7], 7.0, 0);
        CHECK_NEAR(((float *)b->data)[0], 7.0, 0);
        CHECK_NEAR(((float *)b->data)[1], 9.0, 0);
        CHECK(is_aligned(b));
    }
    CHECK(m->weight_bytes_mapped >= 32);
    CHECK(m->weight_bytes_copied >= 8);
    ib__onnx_model_destroy(m);

    size_t size;
    void *bytes = read_all(DATA "external.onnx", &size);
    ib__onnx_model *mb = NULL;
    CHECK_EQ_INT(ib__onnx_load_bytes(bytes, size, IB_SOURCE_DIR "/tests/data/onnx", &mb), IB_OK);
    ib__onnx_model_destroy(mb);
    mb = NULL;
    CHECK_EQ_INT(ib__onnx_load_bytes(bytes, size, NULL, &mb), IB_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ib_last_error(), "e_aligned") != NULL);
    free(bytes);
}

TEST(external_data_must_stay_in_folder) {
    expect_fail("external_dotdot.onnx", IB_ERR_INVALID_MODEL, "'..'");
    expect_fail("external_absolute.onnx", IB_ERR_INVALID_MODEL, "absolute");
    expect_fail("external_past_end.onnx", IB_ERR_INVALID_MODEL, "runs past the end");
    expect_fail("external_bad_length.onnx", IB_ERR_INVALID_MODEL, "length is 12 bytes");
    expect_fail("external_missing.onnx", IB_ERR_IO, "no_such_file.bin");

    /* A symlink inside the folder that leads outside it is refused; one that stays
     * inside is followed. */
    char dir[] = "/tmp/ib_loader_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char sub[300], model[300], link_path[300], secret[300];
    snprintf(sub, sizeof sub, "%s/model", dir);
    snprintf(model, sizeof model, "%s/model/m.onnx", dir);
    snprintf(link_path, sizeof link_path, "%s/model/link.bin", dir);
    snprintf(secret, sizeof secret, "%s/secret.bin", dir);
    CHECK(mkdir(sub, 0700) == 0);
    size_t size;
    void *bytes = read_all(DATA "external_symlink.onnx", &size);
    FILE *f = fopen(model, "wb");
    CHECK(f && fwrite(bytes, 1, size, f) == size);
    if (f) fclose(f);
    free(bytes);
    f = fopen(secret, "wb");
    CHECK(f && fwrite("12345678", 1, 8, f) == 8);
    if (f) fclose(f);
    CHECK(symlink("../secret.bin", link_path) == 0);
    ib__onnx_model *m = NULL;
    CHECK_EQ_INT(ib__onnx_load_file(model, &m), IB_ERR_INVALID_MODEL);
    CHECK(strstr(ib_last_error(), "outside the model's folder") != NULL);
    ib__onnx_model_destroy(m);
    m = NULL;
    char inside[300];
    snprintf(inside, sizeof inside, "%s/model/data.bin", dir);
    CHECK(rename(secret, inside) == 0);
    CHECK(unlink(link_path) == 0);
    CHECK(symlink("data.bin", link_path) == 0);
    CHECK_EQ_INT(ib__onnx_load_file(model, &m), IB_OK);
    ib__onnx_model_destroy(m);
    m = NULL;
    /* A FIFO where the weights should be: refused, not waited on. */
    CHECK(unlink(link_path) == 0);
    CHECK(mkfifo(link_path, 0600) == 0);
    CHECK_EQ_INT(ib__onnx_load_file(model, &m), IB_ERR_IO);
    CHECK(strstr(ib_last_error(), "not a regular file") != NULL);
    unlink(link_path);
    unlink(inside);
    unlink(model);
    rmdir(sub);
    rmdir(dir);
}

TEST(subgraphs_resolve_outer_values) {
    ib__onnx_model *m = load_ok(DATA "subgraphs.onnx");
    if (!m) {
        CHECK(0);
        return;
    }
    const ib__graph *g = m->graph;
    const ib__value *x = ib__graph_find_value(g, "x");
    const ib__value *w = ib__graph_find_value(g, "w");
    const ib__node *if_node = find_node(g, "if");
    const ib__node *loop = find_node(g, "loop");
    CHECK(x && w && if_node && loop);
    if (!x || !w || !if_node || !loop) {
        ib__onnx_model_destroy(m);
        return;
    }
    CHECK_EQ_INT(if_node->op, IB_OP_IF);
    const ib__attr *then_a = ib__node_attr(if_node, "then_branch");
    const ib__attr *else_a = ib__node_attr(if_node, "else_branch");
    CHECK(then_a && then_a->kind == IB_ATTR_GRAPH && then_a->g);
    CHECK(else_a && else_a->kind == IB_ATTR_GRAPH && else_a->g);
    if (then_a && then_a->g) {
        const ib__graph *tg = then_a->g;
        CHECK(tg->parent == g);
        CHECK(strcmp(tg->name, "then_body") == 0);
        const ib__node *add = find_node(tg, "then_add");
        CHECK(add && add->inputs[0] == x); /* captured from the main graph */
        const ib__value *bias = ib__graph_find_value(tg, "bias");
        CHECK(bias && bias->kind == IB_VALUE_INITIALIZER && add && add->inputs[1] == bias);
        CHECK(ib__graph_find_value(g, "bias") == NULL); /* not leaked into the parent */
        CHECK_EQ_INT(tg->n_outputs, 1);
    }
    if (else_a && else_a->g) {
        const ib__node *mul = find_node(else_a->g, "else_mul");
        CHECK(mul && mul->inputs[1] == ib__graph_find_value(g, "y"));
    }
    CHECK_EQ_INT(loop->n_inputs, 3);
    CHECK(loop->inputs[1] == NULL); /* omitted optional input */
    const ib__attr *body = ib__node_attr(loop, "body");
    if (body && body->g) {
        CHECK_EQ_INT(body->g->n_inputs, 3);
        CHECK_EQ_INT(body->g->inputs[2]->rank, -1);
        const ib__node *badd = find_node(body->g, "body_add");
        CHECK(badd && badd->inputs[1] == w);
    } else {
        CHECK(0);
    }
    /* Reads from subgraphs count as uses of the outer value. */
    CHECK(x->n_uses >= 3);
    ib__onnx_model_destroy(m);

    m = load_ok(DATA "nested_ok.onnx");
    CHECK(m != NULL);
    ib__onnx_model_destroy(m);
}

TEST(every_attribute_kind) {
    ib__onnx_model *m = load_ok(DATA "attributes.onnx");
    if (!m) {
        CHECK(0);
        return;
    }
    const ib__graph *g = m->graph;
    CHECK_EQ_INT(m->ir_version, 8);
    CHECK_EQ_INT(g->ir_version, 8);
    CHECK_EQ_INT(g->opset, 17);
    CHECK_EQ_INT(m->n_opsets, 2);
    CHECK(strcmp(m->producer_name, "make_loader_test_models") == 0);
    const ib__node *ev = find_node(g, "everything");
    if (!ev) {
        CHECK(0);
        ib__onnx_model_destroy(m);
        return;
    }
    CHECK(strcmp(ev->domain, "test.domain") == 0);
    CHECK_EQ_INT(ev->opset, 3);
    CHECK_EQ_INT(ev->op, IB_OP_UNKNOWN);
    const ib__attr *a;
    CHECK((a = ib__node_attr(ev, "a_float")) && a->kind == IB_ATTR_FLOAT && a->f == 0.5f);
    CHECK((a = ib__node_attr(ev, "a_int")) && a->kind == IB_ATTR_INT && a->i == -3);
    CHECK((a = ib__node_attr(ev, "a_string")) && a->kind == IB_ATTR_STRING && a->s_len == 5 &&
          strcmp(a->s, "hello") == 0);
    a = ib__node_attr(ev, "a_tensor");
    CHECK(a && a->kind == IB_ATTR_TENSOR && a->t && a->t->dtype == IB_DTYPE_INT32 &&
          a->t->rank == 2 && ((int32_t *)a->t->data)[3] == 4);
    a = ib__node_attr(ev, "a_graph");
    CHECK(a && a->kind == IB_ATTR_GRAPH && a->g && a->g->n_nodes == 1 && a->g->parent == g);
    a = ib__node_attr(ev, "a_floats");
    CHECK(a && a->kind == IB_ATTR_FLOATS && a->count == 2 && a->floats[1] == 2.5f);
    a = ib__node_attr(ev, "a_ints");
    CHECK(a && a->kind == IB_ATTR_INTS && a->count == 3 && a->ints[1] == -2);
    a = ib__node_attr(ev, "a_strings");
    CHECK(a && a->kind == IB_ATTR_STRINGS && a->count == 2 && strcmp(a->strings[1], "qr") == 0);
    a = ib__node_attr(ev, "a_tensors");
    CHECK(a && a->kind == IB_ATTR_TENSORS && a->count == 2 &&
          a->tensors[1]->dtype == IB_DTYPE_INT64 && ((int64_t *)a->tensors[1]->data)[1] == 3);
    a = ib__node_attr(ev, "a_graphs");
    CHECK(a && a->kind == IB_ATTR_GRAPHS && a->count == 2 && a->graphs[0] != a->graphs[1]);
    CHECK((a = ib__node_attr(ev, "a_sparse")) && a->kind == IB_ATTR_SPARSE_TENSOR);
    CHECK((a = ib__node_attr(ev, "a_type")) && a->kind == IB_ATTR_TYPE_PROTO);
    CHECK((a = ib__node_attr(ev, "a_empty_ints")) && a->kind == IB_ATTR_INTS && a->count == 0);
    int32_t n;
    const int64_t *ints;
    CHECK_EQ_INT(ib__attr_ints(ev, "a_float", &n, &ints), IB_ERR_INVALID_MODEL); /* wrong kind */

    const ib__node *c = find_node(g, "c_value");
    CHECK(c && c->op == IB_OP_CONSTANT && (a = ib__node_attr(c, "value")) &&
          a->kind == IB_ATTR_TENSOR && ((float *)a->t->data)[1] == 2.0f);
    c = find_node(g, "c_value_floats");
    CHECK(c && (a = ib__node_attr(c, "value_floats")) && a->kind == IB_ATTR_FLOATS);
    c = find_node(g, "c_value_int");
    CHECK(c && (a = ib__node_attr(c, "value_int")) && a->kind == IB_ATTR_INT && a->i == 7);
    c = find_node(g, "c_value_ints");
    CHECK(c && (a = ib__node_attr(c, "value_ints")) && a->count == 2 && a->ints[1] == 5);
    c = find_node(g, "c_value_string");
    CHECK(c && (a = ib__node_attr(c, "value_string")) && a->kind == IB_ATTR_STRING);
    c = find_node(g, "c_sparse");
    CHECK(c && (a = ib__node_attr(c, "sparse_value")) && a->kind == IB_ATTR_SPARSE_TENSOR);

    /* value_info hint, symbolic and unknown dims, initializer listed as input. */
    const ib__value *cv = ib__graph_find_value(g, "c_value");
    CHECK(cv && cv->dtype == IB_DTYPE_FLOAT32 && cv->rank == 1 && cv->dims[0] == 2);
    const ib__value *x = ib__graph_find_value(g, "x");
    CHECK(x && x->kind == IB_VALUE_INPUT && x->rank == 3 && x->dims[0] == -1 && x->dim_param[0] &&
          strcmp(x->dim_param[0], "batch") == 0 && x->dims[1] == -1 && x->dim_param[1] == NULL &&
          x->dims[2] == 4);
    const ib__value *w = ib__graph_find_value(g, "w");
    CHECK(w && w->kind == IB_VALUE_INITIALIZER && w->constant);
    CHECK_EQ_INT(g->n_inputs, 2);
    CHECK(g->n_inputs == 2 && g->inputs[1] == w);
    const ib__node *clip = find_node(g, "clip");
    CHECK(clip && clip->n_inputs == 3 && clip->inputs[1] == NULL && clip->n_outputs == 2 &&
          clip->outputs[1] == NULL);
    CHECK(g->n_outputs == 2 && g->outputs[0]->rank == -1);
    ib__onnx_model_destroy(m);
}

TEST(broken_models_fail_with_a_named_cause) {
    expect_fail("cycle.onnx", IB_ERR_INVALID_MODEL, "cycle");
    expect_fail("duplicate_producer.onnx", IB_ERR_INVALID_MODEL, "produced twice");
    expect_fail("undefined_input.onnx", IB_ERR_INVALID_MODEL, "'nowhere'");
    expect_fail("truncated.onnx", IB_ERR_INVALID_MODEL, "malformed protobuf");
    expect_fail("huge_dims.onnx", IB_ERR_INVALID_MODEL, "initializer 'huge'");
    expect_fail("negative_dim.onnx", IB_ERR_INVALID_MODEL, "initializer 'neg': dimension 0");
    expect_fail("raw_size_mismatch.onnx", IB_ERR_INVALID_MODEL,
                "initializer 'fc.weight': raw_data holds 10 bytes, expected 4096 "
                "(float32[32,32])");
    expect_fail("typed_count_mismatch.onnx", IB_ERR_INVALID_MODEL,
                "float_data holds 3 values, expected 4");
    expect_fail("unknown_dtype.onnx", IB_ERR_INVALID_MODEL, "unknown data type 99");
    expect_fail("string_initializer.onnx", IB_ERR_UNSUPPORTED, "string tensors are not supported");
    expect_fail("sequence_input.onnx", IB_ERR_UNSUPPORTED, "graph input 's': sequence types");
    expect_fail("rank9_input.onnx", IB_ERR_UNSUPPORTED, "rank 9");
    expect_fail("attribute_no_graph.onnx", IB_ERR_INVALID_MODEL, "'then_branch' holds no graph");
    expect_fail("nested_too_deep.onnx", IB_ERR_UNSUPPORTED, "nested deeper than 64");
    expect_fail("wire_graph_as_varint.onnx", IB_ERR_INVALID_MODEL, "(graph) has wire type 0");
    expect_fail("wire_overlong_varint.onnx", IB_ERR_INVALID_MODEL, "varint");
    expect_fail("wire_length_past_end.onnx", IB_ERR_INVALID_MODEL, "past the end");
    expect_fail("wire_group.onnx", IB_ERR_INVALID_MODEL, "groups");
    expect_fail("wire_node_bad_field.onnx", IB_ERR_INVALID_MODEL, "node #0");
    expect_fail("wire_raw_data_fixed32.onnx", IB_ERR_INVALID_MODEL, "raw_data has wire type 5");
    expect_fail("no_such_model.onnx", IB_ERR_IO, "no_such_model.onnx");
    ib__onnx_model *m = NULL;
    CHECK_EQ_INT(ib__onnx_load_bytes("", 0, NULL, &m), IB_ERR_INVALID_MODEL);
    CHECK_EQ_INT(ib__onnx_load_bytes(NULL, 5, NULL, &m), IB_ERR_INVALID_ARGUMENT);
    CHECK_EQ_INT(ib__onnx_load_file(DATA, &m), IB_ERR_IO); /* a folder */
    CHECK(m == NULL);
}

/* Shapes that make naive loaders quadratic or recursive: they must load (or fail) fast. */
/* ModelProto { ..., graph { Relu x -> y, name "g", doc_string graph_doc } } plus `extra`
 * model-level fields, for the metadata tests. */
static wbuf relu_model(const char *graph_doc, const wbuf *extra) {
    wbuf node = {0}, graph = {0}, vi = {0};
    put_str(&node, 1, "x");
    put_str(&node, 2, "y");
    put_str(&node, 4, "Relu");
    put_len(&graph, 1, node.p, node.n);
    put_str(&graph, 2, "g");
    if (graph_doc) put_str(&graph, 10, graph_doc);
    put_str(&vi, 1, "x");
    put_len(&graph, 11, vi.p, vi.n);
    vi.n = 0;
    put_str(&vi, 1, "y");
    put_len(&graph, 12, vi.p, vi.n);
    wbuf m = wrap_model(&graph);
    if (extra && extra->n) put_bytes(&m, extra->p, extra->n);
    free(node.p);
    free(graph.p);
    free(vi.p);
    return m;
}

static void put_prop(wbuf *b, const char *key, const char *value) {
    wbuf e = {0};
    if (key) put_str(&e, 1, key);
    if (value) put_str(&e, 2, value);
    put_len(b, 14, e.p ? (const void *)e.p : "", e.n);
    free(e.p);
}

/* doc strings and metadata_props (what ONNX Runtime's ModelMetadata reports). */
TEST(doc_strings_and_metadata_props) {
    wbuf extra = {0};
    put_str(&extra, 6, "the model's doc");
    put_prop(&extra, "author", "someone");
    put_prop(&extra, "license", NULL); /* no value: "" */
    put_prop(&extra, "author", "someone else");
    wbuf m = relu_model("graph doc", &extra);
    ib__onnx_model *model = NULL;
    CHECK_EQ_INT(ib__onnx_load_bytes(m.p, m.n, NULL, &model), IB_OK);
    if (model) {
        CHECK(strcmp(model->doc_string, "the model's doc") == 0);
        CHECK(strcmp(model->graph_doc_string, "graph doc") == 0);
        CHECK(model->n_props == 3);
        if (model->n_props == 3) {
            CHECK(strcmp(model->prop_keys[0], "author") == 0);
            CHECK(strcmp(model->prop_values[0], "someone") == 0);
            CHECK(strcmp(model->prop_keys[1], "license") == 0);
            CHECK(strcmp(model->prop_values[1], "") == 0);
            CHECK(strcmp(model->prop_values[2], "someone else") == 0);
        }
    }
    ib__onnx_model_destroy(model);
    free(m.p);

    /* None of them: empty strings, no props. */
    m = relu_model(NULL, NULL);
    model = NULL;
    CHECK_EQ_INT(ib__onnx_load_bytes(m.p, m.n, NULL, &model), IB_OK);
    if (model) {
        CHECK(strcmp(model->doc_string, "") == 0 && strcmp(model->graph_doc_string, "") == 0);
        CHECK(model->n_props == 0);
    }
    ib__onnx_model_destroy(model);
    free(m.p);

    /* A key that is not a string, and a doc_string that is not one: named errors. */
    extra.n = 0;
    wbuf e = {0};
    put_int(&e, 1, 7);
    put_len(&extra, 14, e.p, e.n);
    m = relu_model(NULL, &extra);
    CHECK_EQ_INT(load_wbuf(&m), IB_ERR_INVALID_MODEL);
    CHECK(strstr(ib_last_error(), "metadata_props #0") != NULL);
    free(m.p);
    extra.n = 0;
    put_int(&extra, 6, 1);
    m = relu_model(NULL, &extra);
    CHECK_EQ_INT(load_wbuf(&m), IB_ERR_INVALID_MODEL);
    CHECK(strstr(ib_last_error(), "doc_string") != NULL);
    free(m.p);
    free(e.p);
    free(extra.p);
}

TEST(hostile_shapes_stay_cheap) {
    enum { N = 100000 };
    char name[32];
    /* One node with N distinct attributes, then the same with a duplicate. */
    wbuf node = {0}, graph = {0};
    put_str(&node, 1, "x");
    put_str(&node, 2, "y");
    put_str(&node, 4, "Relu");
    for (int i = 0; i < N; i++) {
        wbuf a = {0};
        snprintf(name, sizeof name, "a%d", i);
        put_str(&a, 1, name);
        put_int(&a, 20, 2);
        put_int(&a, 3, (uint64_t)i);
        put_len(&node, 5, a.p, a.n);
        free(a.p);
    }
    put_len(&graph, 1, node.p, node.n);
    wbuf vi = {0};
    put_str(&vi, 1, "x");
    put_len(&graph, 11, vi.p, vi.n);
    vi.n = 0;
    put_str(&vi, 1, "y");
    put_len(&graph, 12, vi.p, vi.n);
    wbuf m = wrap_model(&graph);
    CHECK_EQ_INT(load_wbuf(&m), IB_OK);
    free(m.p);
    wbuf dup = {0};
    put_str(&dup, 1, "a77");
    put_int(&dup, 20, 2);
    put_len(&node, 5, dup.p, dup.n);
    graph.n = 0;
    put_len(&graph, 1, node.p, node.n);
    m = wrap_model(&graph);
    CHECK_EQ_INT(load_wbuf(&m), IB_ERR_INVALID_MODEL);
    CHECK(strstr(ib_last_error(), "'a77' appears twice") != NULL);
    free(m.p);
    free(dup.p);
    free(node.p);

    /* N initializers, each also a graph input, and one listed twice. */
    graph.n = 0;
    for (int i = 0; i < N; i++) {
        wbuf t = {0};
        snprintf(name, sizeof name, "w%d", i);
        put_int(&t, 2, IB_DTYPE_FLOAT32);
        put_str(&t, 8, name);
        put_len(&t, 9, "\0\0\0\0", 4);
        put_len(&graph, 5, t.p, t.n);
        vi.n = 0;
        put_str(&vi, 1, name);
        put_len(&graph, 11, vi.p, vi.n);
        free(t.p);
    }
    vi.n = 0;
    put_str(&vi, 1, "w0");
    put_len(&graph, 12, vi.p, vi.n);
    m = wrap_model(&graph);
    CHECK_EQ_INT(load_wbuf(&m), IB_OK);
    free(m.p);
    vi.n = 0;
    put_str(&vi, 1, "w5");
    put_len(&graph, 11, vi.p, vi.n);
    m = wrap_model(&graph);
    CHECK_EQ_INT(load_wbuf(&m), IB_ERR_INVALID_MODEL);
    CHECK(strstr(ib_last_error(), "graph input 'w5' is listed twice") != NULL);
    free(m.p);

    /* A graph input of type sequence<sequence<...>> nested 3000 deep (protobuf-c would
     * recurse once per level). */
    wbuf type = {0};
    put_len(&type, 1, "", 0); /* innermost: tensor_type {} */
    for (int i = 0; i < 3000; i++) {
        wbuf seq = {0}, outer = {0};
        put_len(&seq, 1, type.p, type.n);
        put_len(&outer, 4, seq.p, seq.n);
        free(seq.p);
        free(type.p);
        type = outer;
    }
    graph.n = 0;
    vi.n = 0;
    put_str(&vi, 1, "s");
    put_len(&vi, 2, type.p, type.n);
    put_len(&graph, 11, vi.p, vi.n);
    m = wrap_model(&graph);
    CHECK_EQ_INT(load_wbuf(&m), IB_ERR_UNSUPPORTED);
    CHECK(strstr(ib_last_error(), "nested deeper") != NULL);
    free(m.p);
    free(type.p);

    /* Many opset imports. */
    wbuf many = {0}, op = {0};
    put_int(&op, 2, 1);
    for (int i = 0; i < N; i++) put_len(&many, 8, op.p, op.n);
    CHECK_EQ_INT(ib__onnx_load_bytes(many.p, many.n, NULL, &(ib__onnx_model *){NULL}),
                 IB_ERR_INVALID_MODEL);
    free(many.p);
    free(op.p);
    free(vi.p);
    free(graph.p);
}

/* Every prefix and every single-byte corruption of some valid models: never a crash, and
 * every failure has a message. */
TEST(truncations_and_corruptions_never_crash) {
    const char *names[] = {"valid_small.onnx", "subgraphs.onnx", "attributes.onnx",
                           "typed_fields.onnx"};
    int loads = 0, failures = 0;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char path[512];
        snprintf(path, sizeof path, DATA "%s", names[k]);
        size_t size;
        uint8_t *bytes = read_all(path, &size);
        if (!bytes) {
            CHECK(0);
            continue;
        }
        for (size_t n = 0; n < size; n++) {
            ib__onnx_model *m = NULL;
            ib_status st = ib__onnx_load_bytes(bytes, n, NULL, &m);
            loads++;
            if (st) {
                failures++;
                CHECK(ib_last_error()[0] != '\0');
            }
            ib__onnx_model_destroy(m);
        }
        uint8_t *copy = malloc(size);
        for (size_t i = 0; i < size; i++)
            for (int flip = 0; flip < 3; flip++) {
                static const uint8_t masks[] = {0xff, 0x80, 0x01};
                memcpy(copy, bytes, size);
                copy[i] ^= masks[flip];
                ib__onnx_model *m = NULL;
                ib_status st = ib__onnx_load_bytes(copy, size, NULL, &m);
                loads++;
                if (st) CHECK(ib_last_error()[0] != '\0');
                ib__onnx_model_destroy(m);
            }
        free(copy);
        free(bytes);
    }
    CHECK(failures > 0);
    printf("     %d loads of damaged models\n", loads);
}

/* The allocation hook fails the N-th allocation, for every N up to a successful load:
 * each out-of-memory path must fail cleanly (ASan checks nothing leaks). */
typedef struct fail_state {
    long countdown;
} fail_state;

static void *failing_alloc(void *user, void *ptr, size_t old_size, size_t new_size) {
    (void)old_size;
    fail_state *s = user;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    if (s->countdown-- == 0) return NULL;
    return realloc(ptr, new_size);
}

TEST(out_of_memory_at_every_allocation) {
    const char *names[] = {DATA "subgraphs.onnx", DATA "attributes.onnx", DATA "external.onnx"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        int fails = 0;
        for (long n = 0; n < 100000; n++) {
            fail_state s = {n};
            ib__set_allocator(failing_alloc, &s);
            ib__onnx_model *m = NULL;
            ib_status st = ib__onnx_load_file(names[k], &m);
            ib__onnx_model_destroy(m);
            ib__set_allocator(NULL, NULL);
            if (st == IB_OK) break;
            fails++;
            if (st != IB_ERR_OUT_OF_MEMORY) {
                fprintf(stderr, "  %s, allocation %ld failing: %s %s\n", names[k], n,
                        ib_status_name(st), ib_last_error());
                ib_test_failed_checks++;
                break;
            }
        }
        CHECK(fails > 10);
    }
}

TEST(tensor_files) {
    ib_tensor t;
    char *name = NULL;
    CHECK_EQ_INT(ib__onnx_read_tensor_file(DATA "tensor_typed.pb", &t, &name), IB_OK);
    if (name) {
        CHECK(strcmp(name, "typed_input") == 0);
        CHECK(t.owns_data && t.dtype == IB_DTYPE_INT64 && t.rank == 2);
        CHECK(((int64_t *)t.data)[3] == -4);
        ib_tensor_release(&t);
        ib__free(name);
    }
    char dir[] = "/tmp/ib_tensor_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char path[300];
    snprintf(path, sizeof path, "%s/t.pb", dir);
    static const ib_dtype dts[] = {IB_DTYPE_FLOAT32, IB_DTYPE_FLOAT16, IB_DTYPE_INT8,
                                   IB_DTYPE_BOOL,    IB_DTYPE_UINT64,  IB_DTYPE_COMPLEX128};
    for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++) {
        ib_tensor src;
        int64_t dims[3] = {2, 1, 3};
        CHECK_EQ_INT(ib__tensor_alloc(&src, dts[k], 3, dims), IB_OK);
        for (size_t i = 0; i < src.nbytes; i++) ((uint8_t *)src.data)[i] = (uint8_t)(i * 7 + 1);
        if (dts[k] == IB_DTYPE_BOOL)
            for (size_t i = 0; i < src.nbytes; i++) ((uint8_t *)src.data)[i] &= 1;
        CHECK_EQ_INT(ib__onnx_write_tensor_file(path, &src, "round"), IB_OK);
        ib_tensor back;
        char *nm = NULL;
        CHECK_EQ_INT(ib__onnx_read_tensor_file(path, &back, &nm), IB_OK);
        CHECK(nm && strcmp(nm, "round") == 0);
        CHECK(back.dtype == src.dtype && back.rank == 3 && back.shape[2] == 3 &&
              back.nbytes == src.nbytes && memcmp(back.data, src.data, src.nbytes) == 0);
        ib_tensor_release(&back);
        ib_tensor_release(&src);
        ib__free(nm);
    }
    ib_tensor empty;
    CHECK_EQ_INT(ib__tensor_alloc(&empty, IB_DTYPE_FLOAT32, 0, NULL), IB_OK);
    CHECK_EQ_INT(ib__onnx_write_tensor_file(path, &empty, NULL), IB_OK);
    ib_tensor back;
    CHECK_EQ_INT(ib__onnx_read_tensor_file(path, &back, NULL), IB_OK);
    CHECK(back.rank == 0 && back.nbytes == 4);
    ib_tensor_release(&back);
    ib_tensor_release(&empty);
    unlink(path);
    rmdir(dir);
    CHECK_EQ_INT(ib__onnx_read_tensor_file(DATA "no_such.pb", &back, NULL), IB_ERR_IO);
    CHECK_EQ_INT(ib__onnx_read_tensor_file(DATA "truncated.onnx", &back, NULL),
                 IB_ERR_INVALID_MODEL);
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Every model of the ONNX backend test data loads or fails with a status; the tensors
 * of every model that loads read back. */
TEST(onnx_backend_test_data) {
    if (!file_exists(TESTDATA)) {
        printf("     skipped: %s is not installed\n", TESTDATA);
        return;
    }
    glob_t g;
    if (glob(TESTDATA "/*/*/model.onnx", 0, NULL, &g) != 0) {
        CHECK(0);
        return;
    }
    int ok = 0, unsupported = 0, invalid = 0, tensors = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        ib__onnx_model *m = NULL;
        ib_status st = ib__onnx_load_file(g.gl_pathv[i], &m);
        if (st == IB_OK) {
            ok++;
            CHECK(m->graph && m->graph->n_outputs > 0);
            ib__onnx_model_destroy(m);
        } else if (st == IB_ERR_UNSUPPORTED) {
            unsupported++;
        } else {
            invalid++;
            fprintf(stderr, "  %s: %s: %s\n", g.gl_pathv[i], ib_status_name(st), ib_last_error());
        }
        char pattern[600];
        snprintf(pattern, sizeof pattern, "%.*s/test_data_set_0/*.pb",
                 (int)(strlen(g.gl_pathv[i]) - strlen("/model.onnx")), g.gl_pathv[i]);
        glob_t pb;
        if (glob(pattern, 0, NULL, &pb) != 0) continue;
        for (size_t k = 0; k < pb.gl_pathc; k++) {
            ib_tensor t;
            ib_status ts = ib__onnx_read_tensor_file(pb.gl_pathv[k], &t, NULL);
            if (ts == IB_OK) {
                tensors++;
                ib_tensor_release(&t);
            } else if (st == IB_OK) { /* sequences and strings only in unsupported models */
                fprintf(stderr, "  %s: %s\n", pb.gl_pathv[k], ib_last_error());
                ib_test_failed_checks++;
            }
        }
        globfree(&pb);
    }
    printf("     %d models load, %d unsupported, %d invalid; %d tensors read\n", ok, unsupported,
           invalid, tensors);
    CHECK(ok >= 1000);
    CHECK_EQ_INT(invalid, 0);
    globfree(&g);
}

int main(void) {
    RUN(typed_fields_and_raw_data);
    RUN(external_data);
    RUN(external_data_must_stay_in_folder);
    RUN(subgraphs_resolve_outer_values);
    RUN(every_attribute_kind);
    RUN(broken_models_fail_with_a_named_cause);
    RUN(doc_strings_and_metadata_props);
    RUN(hostile_shapes_stay_cheap);
    RUN(truncations_and_corruptions_never_crash);
    RUN(out_of_memory_at_every_allocation);
    RUN(tensor_files);
    RUN(onnx_backend_test_data);
    TEST_SUMMARY();
}
