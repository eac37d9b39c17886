/* config.pbtxt reader and Triton model configuration: the fields people write, and
 * hostile inputs (truncation, deep nesting, huge tokens, bad escapes, random bytes) that
 * must fail with a message naming the line, never crash or leak. */
#include <stdint.h>
#include <string.h>

#include "core/core.h"
#include "server/model_config.h"
#include "server/pbtxt.h"
#include "test.h"

static ib_status parse_cfg(const char *text, ib__model_config *cfg) {
    ib__model_config_defaults(cfg, "m");
    return ib__model_config_parse(text, strlen(text), cfg);
}

TEST(triton_example) {
    const char *text = "# comment\n"
                       "name: \"m\"\nplatform: 'onnxruntime_onnx'\nmax_batch_size: 16\n"
                       "input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 3, -1 ] }, { name: \"y\", data_type: TYPE_INT64, dims: 4 dims: 5 } ]\n"
                       "output { name: \"z\" data_type: TYPE_FP16 dims: [ 2 ] }\n"
                       "dynamic_batching { preferred_batch_size: [ 4, 8 ] max_queue_delay_microseconds: 100 "
                       "default_queue_policy { max_queue_size: 7 default_timeout_microseconds: 250 } }\n"
                       "instance_group [ { count: 2 kind: KIND_CPU }, { kind: KIND_GPU gpus: [ 0 ] } ]\n"
                       "version_policy: { specific: { versions: [1, 3] } }\n"
                       "optimization { execution_accelerators { cpu_execution_accelerator : [ { name : \"openvino\" } ] } }\n"
                       "parameters { key: \"k\" value: { string_value: \"v\" } }\n";
    ib__model_config c;
    CHECK_EQ_INT(parse_cfg(text, &c), IB_OK);
    CHECK_EQ_INT(c.max_batch_size, 16);
    CHECK_EQ_INT(c.n_inputs, 2);
    CHECK(strcmp(c.inputs[0].name, "x") == 0);
    CHECK_EQ_INT(c.inputs[0].dtype, IB_DTYPE_FLOAT32);
    CHECK_EQ_INT(c.inputs[0].rank, 2);
    CHECK_EQ_INT(c.inputs[0].dims[1], -1);
    CHECK_EQ_INT(c.inputs[1].dtype, IB_DTYPE_INT64);
    CHECK_EQ_INT(c.inputs[1].rank, 2);
    CHECK_EQ_INT(c.inputs[1].dims[1], 5);
    CHECK_EQ_INT(c.n_outputs, 1);
    CHECK_EQ_INT(c.outputs[0].dtype, IB_DTYPE_FLOAT16);
    CHECK(c.dynamic_batching);
    CHECK_EQ_INT(c.n_preferred, 2);
    CHECK_EQ_INT(c.preferred_batch_size[1], 8);
    CHECK_EQ_INT(c.max_queue_delay_us, 100);
    CHECK_EQ_INT(c.max_queue_size, 7);
    CHECK_EQ_INT(c.default_timeout_us, 250);
    CHECK_EQ_INT(c.instance_count, 3);
    CHECK(c.instance_kind_gpu);
    CHECK_EQ_INT(c.policy, IB__VERSIONS_SPECIFIC);
    CHECK_EQ_INT(c.n_versions, 2);
    CHECK_EQ_INT(c.versions[1], 3);
}

TEST(backend_and_policies) {
    ib__model_config c;
    CHECK_EQ_INT(parse_cfg("backend: \"onnxruntime\" version_policy { latest { num_versions: 2 } }", &c), IB_OK);
    CHECK_EQ_INT(c.policy, IB__VERSIONS_LATEST);
    CHECK_EQ_INT(c.latest_n, 2);
    CHECK_EQ_INT(parse_cfg("version_policy: { all { } }", &c), IB_OK);
    CHECK_EQ_INT(c.policy, IB__VERSIONS_ALL);
    CHECK_EQ_INT(parse_cfg("", &c), IB_OK);
    CHECK_EQ_INT(c.max_batch_size, -1);
    CHECK_EQ_INT(parse_cfg("max_batch_size: 0x10;", &c), IB_OK);
    CHECK_EQ_INT(c.max_batch_size, 16);
}

/* Each of these must be refused with a message (and, when a line is at fault, name it). */
TEST(bad_configs) {
    static const char *const bad[] = {
        "name: \"other\"",                             /* differs from the directory */
        "platform: \"tensorflow_savedmodel\"",
        "backend: \"pytorch\"",
        "max_batch_size: -1",
        "max_batch_size: 99999999999999999999999",
        "max_batch_size: \"8\"",
        "max_batch_size: { }",
        "max_batch_size 8",
        "input [ { data_type: TYPE_FP32 } ]",
        "input [ { name: \"x\" data_type: TYPE_NOPE } ]",
        "input [ { name: \"x\" dims: [ 1, 2, 3, 4, 5, 6, 7, 8, 9 ] } ]",
        "input [ { name: \"x\" dims: [ -2 ] } ]",
        "input [ { name: \"x\" reshape: { shape: [ 1 ] } } ]",
        "input: \"x\"",
        "dynamic_batching: 3",
        "dynamic_batching { preferred_batch_size: 0 }",
        "dynamic_batching { max_queue_delay_microseconds: -5 }",
        "instance_group [ { count: 0 } ]",
        "instance_group [ { kind: KIND_TPU } ]",
        "instance_group [ { count: 200 }, { count: 200 } ]",
        "version_policy { }",
        "version_policy { specific { } }",
        "version_policy { latest { num_versions: 0 } }",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ib__model_config c;
        ib_status st = parse_cfg(bad[i], &c);
        if (st == IB_OK) fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK(st != IB_OK);
        CHECK(ib_last_error()[0] != 0);
    }
}

static ib_status parse_raw(const char *text, size_t len) {
    ib__pb_field *root = NULL;
    ib_status st = ib__pbtxt_parse(text, len, &root);
    if (st == IB_OK) ib__pbtxt_free(root);
    return st;
}

TEST(syntax_errors_name_the_line) {
    static const char *const bad[] = {
        "a: 1\nb {\n", "a: \"unterminated\n", "a: 'x\\", "a: \"\\q\"", "a: \"\\x\"", "a: \"\\0\"",
        "{", "}", ":", "a: [1, 2", "a: [1 2]", "a: [,]", "a: ", "a {", "a < b: 1 }", "[ext.field]: 1",
        "a: 1 }", "a: \"x\" b", "a: @", "a: \"x\0y\"", "9a: 1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len = strlen(bad[i]);
        if (i == sizeof bad / sizeof bad[0] - 2) len = 9; /* the embedded NUL */
        ib_status st = parse_raw(bad[i], len);
        if (st == IB_OK) fprintf(stderr, "  accepted: %s\n", bad[i]);
        CHECK(st != IB_OK);
        CHECK(strstr(ib_last_error(), "config.pbtxt") != NULL);
    }
    CHECK(parse_raw("a: 1\n\nb { c: @", 15) != IB_OK);
    CHECK(strstr(ib_last_error(), "line 3") != NULL);
}

TEST(strings_and_lists) {
    const char *t = "s: \"a\\tb\" 'c\\x41\\101' e: [] m: < k: 1 > l: [ { x: 1 }, { x: 2 } ]";
    ib__pb_field *root = NULL;
    CHECK_EQ_INT(ib__pbtxt_parse(t, strlen(t), &root), IB_OK);
    if (!root) return;
    const ib__pb_field *s = ib__pb_find(root, "s", NULL);
    CHECK(s && s->is_string && strcmp(s->value, "a\tbcAA") == 0);
    CHECK(ib__pb_find(root, "e", NULL) == NULL);
    const ib__pb_field *m = ib__pb_find(root, "m", NULL);
    CHECK(m && m->is_message && ib__pb_find(m, "k", NULL));
    const ib__pb_field *l1 = ib__pb_find(root, "l", NULL);
    const ib__pb_field *l2 = l1 ? ib__pb_find(root, "l", l1) : NULL;
    CHECK(l1 && l2 && l1->is_message && l2->is_message);
    ib__pbtxt_free(root);
}

TEST(limits) {
    /* Deep nesting: refused at the depth limit, not by the stack. */
    size_t depth = 100000;
    char *deep = ib__malloc(depth * 4 + 1);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++) deep[n++] = 'a', deep[n++] = '{';
    for (size_t i = 0; i < depth; i++) deep[n++] = '}';
    CHECK(parse_raw(deep, n) != IB_OK);
    CHECK(strstr(ib_last_error(), "deeper") != NULL);
    /* Within the limit it parses. */
    n = 0;
    for (size_t i = 0; i < IB__PBTXT_MAX_DEPTH; i++) deep[n++] = 'a', deep[n++] = '{';
    for (size_t i = 0; i < IB__PBTXT_MAX_DEPTH; i++) deep[n++] = '}';
    CHECK_EQ_INT(parse_raw(deep, n), IB_OK);
    ib__free(deep);
    /* Too many fields, a huge token, a huge string, an oversized file. */
    size_t cap = (size_t)IB__PBTXT_MAX_FIELDS * 5 + 16;
    char *many = ib__malloc(cap);
    n = 0;
    for (size_t i = 0; i <= IB__PBTXT_MAX_FIELDS; i++) memcpy(many + n, "a: 1 ", 5), n += 5;
    CHECK(parse_raw(many, n) != IB_OK);
    CHECK(strstr(ib_last_error(), "fields") != NULL);
    ib__free(many);
    char *tok = ib__malloc(IB__PBTXT_MAX_TOKEN + 16);
    memcpy(tok, "a: ", 3);
    memset(tok + 3, '7', IB__PBTXT_MAX_TOKEN + 1);
    CHECK(parse_raw(tok, IB__PBTXT_MAX_TOKEN + 4) != IB_OK);
    memcpy(tok, "a: \"", 4);
    memset(tok + 4, 'x', IB__PBTXT_MAX_TOKEN + 1);
    tok[IB__PBTXT_MAX_TOKEN + 5] = '"';
    CHECK(parse_raw(tok, IB__PBTXT_MAX_TOKEN + 6) != IB_OK);
    ib__free(tok);
    CHECK(parse_raw("a: 1", IB__PBTXT_MAX_BYTES + 1) != IB_OK);
}

/* Every prefix of a valid config and many random mutations: must return, never crash. */
TEST(truncation_and_mutation) {
    const char *base = "name: \"m\" max_batch_size: 8 input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 3 ] } ] "
                       "dynamic_batching { preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 10 } "
                       "instance_group [ { count: 2 kind: KIND_CPU } ] version_policy: { latest: { num_versions: 1 } }";
    size_t len = strlen(base);
    char buf[1024];
    for (size_t k = 0; k <= len; k++) {
        memcpy(buf, base, k);
        ib__model_config c;
        ib__model_config_defaults(&c, "m");
        (void)ib__model_config_parse(buf, k, &c);
    }
    uint64_t seed = 12345;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(buf, base, len);
        int edits = 1 + iter % 4;
        for (int e = 0; e < edits; e++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(seed >> 33) % len;
            buf[at] = (char)(seed >> 20);
        }
        ib__model_config c;
        ib__model_config_defaults(&c, "m");
        (void)ib__model_config_parse(buf, len, &c);
    }
    CHECK(1);
}

TEST(dtype_names) {
    CHECK_EQ_INT(ib__config_dtype("TYPE_UINT64"), IB_DTYPE_UINT64);
    CHECK_EQ_INT(ib__config_dtype("FP32"), IB_DTYPE_UNDEFINED);
    CHECK_EQ_INT(ib__protocol_dtype("BOOL"), IB_DTYPE_BOOL);
    CHECK_EQ_INT(ib__protocol_dtype(NULL), IB_DTYPE_UNDEFINED);
    CHECK(strcmp(ib__protocol_dtype_name(IB_DTYPE_FLOAT16), "FP16") == 0);
    CHECK(ib__protocol_dtype_name(IB_DTYPE_COMPLEX64) == NULL);
}

int main(void) {
    RUN(triton_example);
    RUN(backend_and_policies);
    RUN(bad_configs);
    RUN(syntax_errors_name_the_line);
    RUN(strings_and_lists);
    RUN(limits);
    RUN(truncation_and_mutation);
    RUN(dtype_names);
    TEST_SUMMARY();
}
