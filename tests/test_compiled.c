/* Tests of the compiled path through the C API: compiled sessions equal reference ones
 * (static shapes, per-batch variants of a symbolic batch), many threads running one
 * compiled session with several batch sizes at once, caller and library output buffers,
 * artifacts written and loaded in the same process, and argument errors. */
#include <dirent.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "api/compiled.h"
#include "cache/cache.h"
#include "inferbooster/inferbooster.h"
#include "onnx/onnx_loader.h"
#include "test.h"

#define NODE_DIR "/usr/share/libonnx-testdata/data/node/"
#define CONVERTED_DIR "/usr/share/libonnx-testdata/data/pytorch-converted/"

static ib_model *load_path(const char *path) {
    ib_model *m = NULL;
    if (ib_model_load_file(path, &m) != IB_OK) fprintf(stderr, "  load %s: %s\n", path, ib_last_error());
    return m;
}

static int read_pb(const char *case_name, const char *file, ib_tensor *t) {
    char path[512];
    snprintf(path, sizeof path, NODE_DIR "%s/test_data_set_0/%s", case_name, file);
    return ib__onnx_read_tensor_file(path, t, NULL) == IB_OK;
}

static int tensors_close(const ib_tensor *a, const ib_tensor *b) {
    if (a->dtype != b->dtype || a->rank != b->rank || a->nbytes != b->nbytes) return 0;
    for (int32_t d = 0; d < a->rank; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    if (a->dtype != IB_DTYPE_FLOAT32) return memcmp(a->data, b->data, a->nbytes) == 0;
    const float *x = a->data, *y = b->data;
    for (size_t i = 0; i < a->nbytes / 4; i++)
        if (fabsf(x[i] - y[i]) > 1e-5f + 1e-4f * fabsf(y[i])) return 0;
    return 1;
}

static ib_session *session(const ib_model *m, int32_t use_reference, int32_t threads) {
    ib_session_options o;
    ib_session_options_init(&o);
    o.use_reference = use_reference;
    o.num_threads = threads;
    ib_session *s = NULL;
    if (ib_session_create(m, &o, &s) != IB_OK) fprintf(stderr, "  session: %s\n", ib_last_error());
    return s;
}

static void fill(ib_tensor *t, uint32_t seed) {
    float *p = t->data;
    for (size_t i = 0; i < t->nbytes / 4; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)(seed >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
    }
}

TEST(static_model_matches_expected) {
    const char *c = "test_conv_with_strides_padding";
    char path[512];
    snprintf(path, sizeof path, NODE_DIR "%s/model.onnx", c);
    ib_model *m = load_path(path);
    ib_session *s = m ? session(m, -1, 2) : NULL;
    ib_tensor in[2], want, out[2];
    memset(out, 0, sizeof out);
    CHECK(s && read_pb(c, "input_0.pb", &in[0]) && read_pb(c, "input_1.pb", &in[1]) &&
          read_pb(c, "output_0.pb", &want));
    if (!s) {
        ib_model_destroy(m);
        return;
    }
    CHECK(strcmp(ib_session_executor(s), "compiled") == 0);
    const char *names[2] = {"x", "W"};
    CHECK(ib_session_run(s, 2, names, in, 1, NULL, out) == IB_OK);
    CHECK(out[0].owns_data && tensors_close(&out[0], &want));
    /* caller buffer, and the same output twice */
    const char *twice[2] = {"y", "y"};
    ib_tensor caller[2];
    memset(caller, 0, sizeof caller);
    float buf[64];
    caller[0].dtype = IB_DTYPE_FLOAT32;
    caller[0].data = buf;
    caller[0].nbytes = sizeof buf;
    CHECK(ib_session_run(s, 2, names, in, 2, twice, caller) == IB_OK);
    CHECK(tensors_close(&caller[0], &want) && tensors_close(&caller[1], &want));
    CHECK(caller[0].owns_data == 0 && caller[1].owns_data == 1);
    ib_tensor_release(&caller[1]);
    /* errors: small caller buffer, missing input, wrong dims */
    memset(caller, 0, sizeof caller);
    caller[0].dtype = IB_DTYPE_FLOAT32;
    caller[0].data = buf;
    caller[0].nbytes = 8;
    CHECK(ib_session_run(s, 2, names, in, 1, NULL, caller) == IB_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ib_last_error(), "caller buffer") != NULL);
    CHECK(ib_session_run(s, 1, names, in, 1, NULL, out + 1) == IB_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ib_last_error(), "'W' was not given") != NULL);
    in[0].shape[3] += 1;
    CHECK(ib_session_run(s, 2, names, in, 1, NULL, out + 1) == IB_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ib_last_error(), "dim 3") != NULL);
    in[0].shape[3] -= 1;
    ib_tensor_release(&out[0]);
    ib_tensor_release(&in[0]);
    ib_tensor_release(&in[1]);
    ib_tensor_release(&want);
    ib_session_destroy(s);
    ib_model_destroy(m);
}

typedef struct worker {
    ib_session *compiled, *reference;
    int ok;
    int id;
} worker;

/* Runs the MLP with batch sizes 1..4 in turn, comparing with the reference session. */
static void *run_batches(void *p) {
    worker *w = p;
    const char *in_name = "input";
    for (int r = 0; r < 24; r++) {
        int64_t b = 1 + (r + w->id) % 4;
        ib_tensor in, got, want;
        int64_t dims[2] = {b, 16};
        memset(&got, 0, sizeof got);
        memset(&want, 0, sizeof want);
        if (ib__tensor_alloc(&in, IB_DTYPE_FLOAT32, 2, dims) != IB_OK) {
            w->ok = 0;
            return NULL;
        }
        fill(&in, (uint32_t)(r * 31 + w->id));
        if (ib_session_run(w->compiled, 1, &in_name, &in, 1, NULL, &got) != IB_OK ||
            ib_session_run(w->reference, 1, &in_name, &in, 1, NULL, &want) != IB_OK ||
            !tensors_close(&got, &want) || got.shape[0] != b)
            w->ok = 0;
        ib_tensor_release(&in);
        ib_tensor_release(&got);
        ib_tensor_release(&want);
    }
    return NULL;
}

TEST(threads_and_batch_variants) {
    ib_model *m = load_path(IB_SOURCE_DIR "/examples/models/mlp/model.onnx");
    ib_session *c = m ? session(m, -1, 2) : NULL;
    ib_session *r = m ? session(m, 1, 1) : NULL;
    CHECK(c && r);
    if (c && r) {
        CHECK(strcmp(ib_session_executor(r), "reference") == 0);
        pthread_t th[4];
        worker w[4];
        for (int i = 0; i < 4; i++) {
            w[i] = (worker){c, r, 1, i};
            pthread_create(&th[i], NULL, run_batches, &w[i]);
        }
        for (int i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            CHECK(w[i].ok);
        }
        CHECK(strcmp(ib_session_executor(c), "compiled") == 0);
    }
    ib_session_destroy(c);
    ib_session_destroy(r);
    ib_model_destroy(m);
}

TEST(artifact_in_process) {
    const char *model_path = IB_SOURCE_DIR "/examples/models/mlp/model.onnx";
    ib_model *m = load_path(model_path);
    char dir[] = "/tmp/ib_test_compiled_c.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char art[600];
    snprintf(art, sizeof art, "%s/mlp.ibc", dir);
    ib__compile_report rep;
    CHECK(m && ib__artifact_compile(m, model_path, NULL, 3, art, false, &rep) == IB_OK);
    CHECK_EQ_INT(rep.batch, 3);
    CHECK(rep.kernels > 0);
    ib_session *a = NULL, *r = m ? session(m, 1, 1) : NULL;
    CHECK(ib_session_create_from_artifact(art, NULL, &a) == IB_OK);
    if (a && r) {
        CHECK_EQ_INT(ib_session_input_count(a), 1);
        ib_value_info info;
        CHECK(ib_session_input_info(a, 0, &info) == IB_OK && info.shape[0] == 3);
        int64_t dims[2] = {3, 16};
        ib_tensor in, got, want;
        memset(&got, 0, sizeof got);
        memset(&want, 0, sizeof want);
        CHECK(ib__tensor_alloc(&in, IB_DTYPE_FLOAT32, 2, dims) == IB_OK);
        fill(&in, 7);
        const char *name = "input";
        CHECK(ib_session_run(a, 1, &name, &in, 1, NULL, &got) == IB_OK);
        CHECK(ib_session_run(r, 1, &name, &in, 1, NULL, &want) == IB_OK);
        CHECK(tensors_close(&got, &want));
        ib_tensor_release(&got);
        /* a batch the artifact was not compiled for */
        in.shape[0] = 2;
        CHECK(ib_session_run(a, 1, &name, &in, 1, NULL, &got) == IB_ERR_INVALID_ARGUMENT);
        ib_tensor_release(&in);
        ib_tensor_release(&want);
    }
    ib_session_destroy(a);
    ib_session_destroy(r);
    /* recompiling into the same directory replaces the artifact */
    CHECK(m && ib__artifact_compile(m, model_path, "generic", 1, art, false, &rep) == IB_OK);
    CHECK(strcmp(rep.target, "generic") == 0);
    a = NULL;
    CHECK(ib_session_create_from_artifact(art, NULL, &a) == IB_OK);
    ib_session_destroy(a);
    CHECK(ib_session_create_from_artifact("/nonexistent/x.ibc", NULL, &a) != IB_OK);
    CHECK(strstr(ib_last_error(), "/nonexistent/x.ibc") != NULL);
    ib__remove_compiler_dir(art);
    rmdir(dir);
    ib_model_destroy(m);
}

/* Copies a file (the test's model, so that the cache records what this test made). */
static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int ok = in && out;
    char buf[65536];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = 0;
    return ok;
}

static ib_session *file_session(const char *path, const char *cache_dir) {
    ib_session_options o;
    ib_session_options_init(&o);
    o.use_reference = -1; /* compile even this small model */
    o.num_threads = 1;
    o.cache_dir = cache_dir;
    ib_session *s = NULL;
    if (ib_session_create_from_file(path, &o, &s) != IB_OK)
        fprintf(stderr, "  session from %s: %s\n", path, ib_last_error());
    return s;
}

static uint64_t cache_hits(const char *cache_dir) {
    ib__cache *c = NULL;
    ib__cache_stats st;
    memset(&st, 0, sizeof st);
    if (ib__cache_open(cache_dir, NULL, &c) == IB_OK) ib__cache_stats_get(c, &st);
    ib__cache_close(c);
    return st.hits;
}

/* A session made from a file compiled before loads from the cache without parsing it;
 * the record that makes this possible is keyed by content, and a damaged one only costs
 * the parse. */
TEST(file_session_skips_parse_on_hit) {
    /* weights as initializers: the conv is a generated kernel, the artifact a module */
    const char *src = CONVERTED_DIR "test_Conv2d/model.onnx";
    char dir[] = "/tmp/ib_test_from_file.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char model[600], copy[600], cache[600];
    snprintf(model, sizeof model, "%s/conv.onnx", dir);
    snprintf(copy, sizeof copy, "%s/renamed.onnx", dir);
    snprintf(cache, sizeof cache, "%s/cache", dir);
    CHECK(copy_file(src, model) && copy_file(src, copy));
    ib_tensor x[1], want, got;
    memset(&want, 0, sizeof want);
    memset(&got, 0, sizeof got);
    CHECK(ib__onnx_read_tensor_file(CONVERTED_DIR "test_Conv2d/test_data_set_0/input_0.pb", &x[0],
                                    NULL) == IB_OK);
    const char *name[1] = {NULL};
    ib_value_info in_info;

    ib_session *cold = file_session(model, cache);
    CHECK(cold && ib__session_model(cold) != NULL); /* a miss parses and compiles */
    CHECK(cold && ib_session_input_info(cold, 0, &in_info) == IB_OK);
    name[0] = cold ? in_info.name : "none";
    CHECK(cold && strcmp(ib_session_executor(cold), "compiled") == 0);
    CHECK(cold && ib_session_run(cold, 1, name, x, 1, NULL, &want) == IB_OK);
    CHECK_EQ_INT(cache_hits(cache), 0);

    ib_session *hit = file_session(model, cache);
    CHECK(hit && ib__session_model(hit) == NULL);
    CHECK_EQ_INT(cache_hits(cache), 1);
    if (cold && hit) {
        CHECK_EQ_INT(ib_session_input_count(hit), 1);
        CHECK_EQ_INT(ib_session_output_count(hit), 1);
        ib_value_info a, b;
        CHECK(ib_session_input_info(hit, 0, &a) == IB_OK && ib_session_input_info(cold, 0, &b) == IB_OK);
        CHECK(strcmp(a.name, b.name) == 0 && a.rank == b.rank && a.dtype == b.dtype);
        for (int32_t d = 0; d < a.rank && d < b.rank; d++) CHECK(a.shape[d] == b.shape[d]);
        CHECK(ib_session_run(hit, 1, name, x, 1, NULL, &got) == IB_OK);
        CHECK(tensors_close(&got, &want) && memcmp(got.data, want.data, want.nbytes) == 0);
        ib_tensor_release(&got);
        /* a name the artifact does not take: the model is loaded to say what is wrong */
        const char *bogus[1] = {"no_such_input"};
        CHECK_EQ_INT(ib_session_run(hit, 1, bogus, x, 1, NULL, &got), IB_ERR_INVALID_ARGUMENT);
        CHECK(strstr(ib_last_error(), "no_such_input") != NULL);
        CHECK(ib_session_run(hit, 1, name, x, 1, NULL, &got) == IB_OK);
        ib_tensor_release(&got);
    }
    ib_session_destroy(hit);

    /* the same bytes under another name: the record is keyed by content */
    hit = file_session(copy, cache);
    CHECK(hit && ib__session_model(hit) == NULL);
    CHECK_EQ_INT(cache_hits(cache), 2);
    ib_session_destroy(hit);

    /* a damaged record: parsed again (still a cache hit, same output), record rewritten */
    char glob_dir[700];
    snprintf(glob_dir, sizeof glob_dir, "%s/digests", cache);
    DIR *d = opendir(glob_dir);
    int damaged = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 4, ".src") != 0) continue;
        char p[1000];
        snprintf(p, sizeof p, "%s/%s", glob_dir, e->d_name);
        FILE *f = fopen(p, "r+b");
        if (f && fseek(f, 24, SEEK_SET) == 0 && fputc('X', f) != EOF) damaged++;
        if (f) fclose(f);
    }
    if (d) closedir(d);
    CHECK_EQ_INT(damaged, 1);
    hit = file_session(model, cache);
    CHECK(hit && ib__session_model(hit) != NULL);
    CHECK_EQ_INT(cache_hits(cache), 3);
    CHECK(hit && ib_session_run(hit, 1, name, x, 1, NULL, &got) == IB_OK);
    CHECK(hit && memcmp(got.data, want.data, want.nbytes) == 0);
    ib_tensor_release(&got);
    ib_session_destroy(hit);
    hit = file_session(model, cache);
    CHECK(hit && ib__session_model(hit) == NULL);
    ib_session_destroy(hit);

    /* reference sessions and missing files behave as load + create */
    ib_session_options o;
    ib_session_options_init(&o);
    o.use_reference = 1;
    o.cache_dir = cache;
    hit = NULL;
    CHECK(ib_session_create_from_file(model, &o, &hit) == IB_OK);
    CHECK(hit && ib__session_model(hit) != NULL && strcmp(ib_session_executor(hit), "reference") == 0);
    ib_session_destroy(hit);
    hit = NULL;
    CHECK(ib_session_create_from_file("/nonexistent/m.onnx", &o, &hit) == IB_ERR_IO);
    CHECK(hit == NULL && strstr(ib_last_error(), "/nonexistent/m.onnx") != NULL);

    ib_session_destroy(cold);
    ib_tensor_release(&want);
    ib_tensor_release(&x[0]);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (!getenv("IB_TEST_KEEP")) CHECK(system(cmd) == 0);
}

int main(void) {
    RUN(static_model_matches_expected);
    RUN(threads_and_batch_variants);
    RUN(artifact_in_process);
    RUN(file_session_skips_parse_on_hit);
    TEST_SUMMARY();
}
