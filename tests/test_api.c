/* Tests of the public C API over real ONNX test models: model description, runs with
 * session-owned and caller-owned outputs, argument errors, unsupported ops, and many
 * threads running one session. */
#include <pthread.h>

#include "inferbooster/inferbooster.h"
#include "onnx/onnx_loader.h"
#include "test.h"

#define NODE_DIR "/usr/share/libonnx-testdata/data/node/"

static ib_model *load(const char *case_name) {
    char path[512];
    snprintf(path, sizeof path, NODE_DIR "%s/model.onnx", case_name);
    ib_model *m = NULL;
    ib_status st = ib_model_load_file(path, &m);
    if (st) fprintf(stderr, "  load %s: %s\n", case_name, ib_last_error());
    return m;
}

static int read_pb(const char *case_name, const char *file, ib_tensor *t) {
    char path[512];
    snprintf(path, sizeof path, NODE_DIR "%s/test_data_set_0/%s", case_name, file);
    return ib__onnx_read_tensor_file(path, t, NULL) == IB_OK;
}

static int tensors_close(const ib_tensor *a, const ib_tensor *b) {
    if (a->dtype != b->dtype || a->rank != b->rank || a->nbytes != b->nbytes) return 0;
    if (a->dtype != IB_DTYPE_FLOAT32) return memcmp(a->data, b->data, a->nbytes) == 0;
    const float *x = a->data, *y = b->data;
    for (size_t i = 0; i < a->nbytes / 4; i++)
        if (fabsf(x[i] - y[i]) > 1e-5f + 1e-4f * fabsf(y[i])) return 0;
    return 1;
}

TEST(describe_inputs_outputs) {
    ib_model *m = load("test_add_bcast");
    CHECK(m != NULL);
    if (!m) return;
    CHECK_EQ_INT(ib_model_input_count(m), 2);
    CHECK_EQ_INT(ib_model_output_count(m), 1);
    ib_value_info info;
    CHECK(ib_model_input_info(m, 0, &info) == IB_OK);
    CHECK(strcmp(info.name, "x") == 0);
    CHECK(info.dtype == IB_DTYPE_FLOAT32);
    CHECK_EQ_INT(info.rank, 3);
    CHECK_EQ_INT(info.shape[2], 5);
    CHECK(ib_model_output_info(m, 0, &info) == IB_OK);
    CHECK(strcmp(info.name, "sum") == 0);
    CHECK_EQ_INT(info.rank, 3); /* inferred by broadcasting [3,4,5] + [5] */
    CHECK_EQ_INT(info.shape[0], 3);
    CHECK(ib_model_input_info(m, 7, &info) == IB_ERR_INVALID_ARGUMENT);
    ib_model_destroy(m);
}

TEST(run_session_and_caller_outputs) {
    ib_model *m = load("test_add_bcast");
    ib_session *s = NULL;
    CHECK(m && ib_session_create(m, NULL, &s) == IB_OK);
    if (!s) {
        ib_model_destroy(m);
        return;
    }
    ib_tensor in[2], expected;
    CHECK(read_pb("test_add_bcast", "input_0.pb", &in[0]));
    CHECK(read_pb("test_add_bcast", "input_1.pb", &in[1]));
    CHECK(read_pb("test_add_bcast", "output_0.pb", &expected));
    const char *names[2] = {"x", "y"};
    ib_tensor out;
    memset(&out, 0, sizeof out);
    CHECK(ib_session_run(s, 2, names, in, 1, NULL, &out) == IB_OK);
    CHECK(out.owns_data == 1);
    CHECK(tensors_close(&out, &expected));
    ib_tensor_release(&out);
    CHECK(out.data == NULL);

    /* caller buffer */
    float buf[60];
    ib_tensor mine = {.dtype = IB_DTYPE_FLOAT32, .data = buf, .nbytes = sizeof buf};
    const char *out_name = "sum";
    CHECK(ib_session_run(s, 2, names, in, 1, &out_name, &mine) == IB_OK);
    CHECK(mine.data == buf && mine.owns_data == 0);
    CHECK(tensors_close(&mine, &expected));

    /* too small a caller buffer is an error, not an overflow */
    float small[4];
    ib_tensor tiny = {.dtype = IB_DTYPE_FLOAT32, .data = small, .nbytes = sizeof small};
    CHECK(ib_session_run(s, 2, names, in, 1, &out_name, &tiny) == IB_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ib_last_error(), "sum") != NULL);

    /* missing input names it */
    memset(&out, 0, sizeof out);
    CHECK(ib_session_run(s, 1, names, in, 1, NULL, &out) == IB_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ib_last_error(), "'y'") != NULL);
    /* wrong dtype */
    ib_tensor bad = in[1];
    bad.dtype = IB_DTYPE_INT32;
    ib_tensor pair[2] = {in[0], bad};
    CHECK(ib_session_run(s, 2, names, pair, 1, NULL, &out) == IB_ERR_INVALID_ARGUMENT);
    /* wrong shape */
    bad = in[0];
    bad.shape[0] = 2;
    ib_tensor pair2[2] = {bad, in[1]};
    CHECK(ib_session_run(s, 2, names, pair2, 1, NULL, &out) == IB_ERR_INVALID_ARGUMENT);
    /* unknown output name */
    const char *nope = "nope";
    CHECK(ib_session_run(s, 2, names, in, 1, &nope, &out) == IB_ERR_INVALID_ARGUMENT);

    ib_tensor_release(&in[0]);
    ib_tensor_release(&in[1]);
    ib_tensor_release(&expected);
    ib_session_destroy(s);
    ib_model_destroy(m);
}

TEST(load_errors) {
    ib_model *m = NULL;
    CHECK(ib_model_load_file("/nonexistent/model.onnx", &m) == IB_ERR_IO);
    CHECK(m == NULL);
    CHECK(strstr(ib_last_error(), "/nonexistent/model.onnx") != NULL);
    const char junk[] = "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    CHECK(ib_model_load_bytes(junk, sizeof junk, NULL, &m) == IB_ERR_INVALID_MODEL);
    CHECK(m == NULL);
}

TEST(unsupported_op_reported_at_session_creation) {
    ib_model *m = load("test_tfidfvectorizer_tf_only_bigrams_skip0");
    CHECK(m != NULL);
    if (!m) return;
    ib_session *s = NULL;
    CHECK(ib_session_create(m, NULL, &s) == IB_ERR_UNSUPPORTED);
    CHECK(strstr(ib_last_error(), "TfIdfVectorizer") != NULL);
    CHECK(s == NULL);
    ib_model_destroy(m);
}

typedef struct {
    ib_session *s;
    const ib_tensor *in;
    const ib_tensor *expected;
    int ok;
} thread_arg;

static void *run_many(void *p) {
    thread_arg *a = p;
    const char *names[2] = {"a", "b"};
    a->ok = 1;
    for (int i = 0; i < 40; i++) {
        ib_tensor out;
        memset(&out, 0, sizeof out);
        if (ib_session_run(a->s, 2, names, a->in, 1, NULL, &out) != IB_OK ||
            !tensors_close(&out, a->expected))
            a->ok = 0;
        ib_tensor_release(&out);
    }
    return NULL;
}

TEST(many_threads_one_session) {
    ib_model *m = load("test_matmul_2d");
    ib_session_options opt;
    ib_session_options_init(&opt);
    opt.num_threads = 2;
    ib_session *s = NULL;
    CHECK(m && ib_session_create(m, &opt, &s) == IB_OK);
    if (!s) {
        ib_model_destroy(m);
        return;
    }
    ib_tensor in[2], expected;
    CHECK(read_pb("test_matmul_2d", "input_0.pb", &in[0]));
    CHECK(read_pb("test_matmul_2d", "input_1.pb", &in[1]));
    CHECK(read_pb("test_matmul_2d", "output_0.pb", &expected));
    pthread_t th[4];
    thread_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg){s, in, &expected, 0};
        pthread_create(&th[i], NULL, run_many, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(args[i].ok);
    }
    ib_tensor_release(&in[0]);
    ib_tensor_release(&in[1]);
    ib_tensor_release(&expected);
    ib_session_destroy(s);
    ib_model_destroy(m);
}

TEST(options_validated) {
    ib_model *m = load("test_add_bcast");
    ib_session_options opt;
    ib_session_options_init(&opt);
    opt.target = "sparc";
    ib_session *s = NULL;
    CHECK(m && ib_session_create(m, &opt, &s) == IB_ERR_UNSUPPORTED);
    opt.target = NULL;
    opt.num_threads = -3;
    CHECK(ib_session_create(m, &opt, &s) == IB_ERR_INVALID_ARGUMENT);
    CHECK(s == NULL);
    ib_model_destroy(m);
    ib_session_destroy(NULL);
    ib_model_destroy(NULL);
}

int main(void) {
    RUN(describe_inputs_outputs);
    RUN(run_session_and_caller_outputs);
    RUN(load_errors);
    RUN(unsupported_op_reported_at_session_creation);
    RUN(many_threads_one_session);
    RUN(options_validated);
    TEST_SUMMARY();
}
