/* Unit tests of the CUDA pieces that need neither nvcc nor a GPU: the cuda-* target
 * descriptions and "host" choosing the CPU here, the launch-plan reader on good and
 * corrupted artifacts (each corruption a clear IB_ERR_INVALID_MODEL, never a crash), and
 * sessions failing cleanly without a CUDA driver. */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/cuda_runtime.h"
#include "target/target.h"
#include "target/target_desc.h"
#include "test.h"

static char g_dir[64];
static unsigned char g_weights[256];

TEST(cuda_targets) {
    ib__target t;
    CHECK_EQ_INT(ib__target_resolve("cuda-sm90", &t), IB_OK);
    CHECK(ib__target_is_cuda(&t));
    CHECK_EQ_INT(t.cuda_sm, 90);
    CHECK_EQ_INT(t.precision, IB_PRECISION_FP32);
    CHECK(t.gpu_smem_bytes > 48 * 1024);
    CHECK_EQ_INT(ib__target_resolve("cuda-sm80-bf16", &t), IB_OK);
    CHECK_EQ_INT(t.cuda_sm, 80);
    CHECK_EQ_INT(t.precision, IB_PRECISION_BF16);
    CHECK_EQ_INT(ib__target_resolve("cuda-sm90-tf32", &t), IB_OK);
    CHECK_EQ_INT(t.precision, IB_PRECISION_TF32);
    CHECK_EQ_INT(ib__target_resolve("cuda-sm75", &t), IB_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ib_last_error(), "cuda-sm90") != NULL); /* the message lists the known ones */
    CHECK_EQ_INT(ib__target_resolve("cuda-sm90-fp8", &t), IB_ERR_INVALID_ARGUMENT);
    /* "host" picks a GPU only when one is detected: none here means the CPU */
    ib__gpu_info gpu;
    ib__gpu_detect(&gpu);
    CHECK_EQ_INT(ib__target_resolve_for_model("host", 1e12, &t), IB_OK);
    if (gpu.count == 0) CHECK(!ib__target_is_cuda(&t));
    CHECK_EQ_INT(ib__target_resolve_for_model("host", 1e3, &t), IB_OK);
    CHECK(!ib__target_is_cuda(&t)); /* too small for any GPU */
    CHECK_EQ_INT(ib__target_resolve_for_model("x86-64-v3", 1e12, &t), IB_OK);
    CHECK(!ib__target_is_cuda(&t));
}

static void write_file(const char *name, const void *data, size_t n) {
    char p[128];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK_EQ_INT(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A plan over the 256-byte weights: a copy kernel of input 0 into output 0 via the arena. */
static void plan_text(char *buf, size_t cap, const char *kernel_line, const char *hash_override) {
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)ib__rt_hash(g_weights, sizeof g_weights));
    snprintf(buf, cap,
             "inferbooster-cuda-plan 1\ntarget cuda-sm90 90\narena 1024\nweights 256 %s\n"
             "io 1 1\ninput 0 64 1 2 4 4 x\noutput 0 64 1 2 4 4 y\nkernels 2\n"
             "kernel 0 ib_k0 1 1 1 128 1 1 0 3 I0 W64 A0\n%s\ncopies 0\nend\n",
             hash_override ? hash_override : hash, kernel_line);
}

static ib_status open_with(const char *text) {
    write_file("cuda_plan.txt", text, strlen(text));
    ib__cuda_model *m = NULL;
    ib_status st = ib__cuda_model_open(g_dir, &m);
    ib__cuda_model_destroy(m);
    return st;
}

TEST(cuda_plan_reader) {
    snprintf(g_dir, sizeof g_dir, "/tmp/ib_cuda_rt.XXXXXX");
    CHECK(mkdtemp(g_dir) != NULL);
    for (size_t i = 0; i < sizeof g_weights; i++) g_weights[i] = (unsigned char)(i * 7);
    write_file("weights.bin", g_weights, sizeof g_weights);
    static const unsigned char fake_fatbin[32] = {0x50, 0xed, 0x55, 0xba};
    write_file("model.fatbin", fake_fatbin, sizeof fake_fatbin);
    char text[2048];
    plan_text(text, sizeof text, "kernel 1 ib_k1 2 1 1 64 1 1 0 2 A0 O0", NULL);
    write_file("cuda_plan.txt", text, strlen(text));
    CHECK(ib__cuda_is_artifact(g_dir));
    ib__cuda_model *m = NULL;
    CHECK_EQ_INT(ib__cuda_model_open(g_dir, &m), IB_OK);
    if (m) {
        CHECK_EQ_INT(ib__cuda_model_input_count(m), 1);
        CHECK_EQ_INT(ib__cuda_model_output_count(m), 1);
        CHECK_EQ_INT(ib__cuda_model_kernel_count(m), 2);
        CHECK(strcmp(ib__cuda_model_input(m, 0)->name, "x") == 0);
        CHECK_EQ_INT(ib__cuda_model_output(m, 0)->nbytes, 64);
        CHECK_EQ_INT(ib__cuda_model_output(m, 0)->dims[1], 4);
        CHECK(ib__cuda_model_input(m, 1) == NULL);
        CHECK(strcmp(ib__cuda_model_target(m), "cuda-sm90") == 0);
        /* no driver here: a clean refusal naming it (with one, the fake binary fails) */
        ib__cuda_session *s = NULL;
        ib_status st = ib__cuda_session_create(m, 0, true, &s);
        CHECK(st != IB_OK && s == NULL);
        char why[200];
        if (!ib__cuda_driver_available(why, sizeof why)) {
            CHECK_EQ_INT(st, IB_ERR_UNSUPPORTED);
            CHECK(strstr(why, "no NVIDIA GPU/driver") != NULL || strstr(why, "no CUDA driver") != NULL);
        }
        ib__cuda_model_destroy(m);
    }
    /* corruptions */
    const char *bad_kernels[] = {
        "kernel 1 ib_k1 2 1 1 64 1 1 0 2 A0",              /* fewer arguments than said */
        "kernel 1 ib_k1 2 1 1 2048 1 1 0 2 A0 O0",         /* block above 1024 threads */
        "kernel 1 ib_k1 0 1 1 64 1 1 0 2 A0 O0",           /* empty grid */
        "kernel 1 ib_k1 2 1 1 64 1 1 0 2 A4096 O0",        /* past the arena */
        "kernel 1 ib_k1 2 1 1 64 1 1 0 2 W999 O0",         /* past the weights */
        "kernel 1 ib_k1 2 1 1 64 1 1 0 2 I1 O0",           /* no input 1 */
        "kernel 1 ib_k1 2 1 1 64 1 1 0 2 Z0 O0",           /* unknown space */
        "kernel 2 ib_k1 2 1 1 64 1 1 0 2 A0 O0",           /* out of order */
        "kernel 1 ib_k1 2 1 1 64 1 1 0 -1",                /* negative count */
        "kernel 1 ib_k1 2 1 1 64 1 1 0 99999999999999999999 A0", /* overflow */
    };
    for (size_t i = 0; i < sizeof bad_kernels / sizeof *bad_kernels; i++) {
        plan_text(text, sizeof text, bad_kernels[i], NULL);
        ib_status st = open_with(text);
        if (st != IB_ERR_INVALID_MODEL) fprintf(stderr, "  accepted: %s\n", bad_kernels[i]);
        CHECK_EQ_INT(st, IB_ERR_INVALID_MODEL);
    }
    plan_text(text, sizeof text, "kernel 1 ib_k1 2 1 1 64 1 1 0 2 A0 O0", "0000000000000000");
    CHECK_EQ_INT(open_with(text), IB_ERR_INVALID_MODEL);
    CHECK(strstr(ib_last_error(), "hash") != NULL);
    /* every truncation of a good plan is refused */
    plan_text(text, sizeof text, "kernel 1 ib_k1 2 1 1 64 1 1 0 2 A0 O0", NULL);
    size_t len = strlen(text);
    int accepted = 0;
    for (size_t cut = 0; cut + 5 < len; cut += 3) {
        char part[2048];
        memcpy(part, text, cut);
        part[cut] = '\0';
        accepted += open_with(part) == IB_OK;
    }
    CHECK_EQ_INT(accepted, 0);
    CHECK_EQ_INT(open_with("inferbooster-cuda-plan 2\n"), IB_ERR_INVALID_MODEL);
    /* missing pieces */
    char p[128];
    snprintf(p, sizeof p, "%s/model.fatbin", g_dir);
    unlink(p);
    CHECK(ib__cuda_model_open(g_dir, &m) != IB_OK);
    const char *names[] = {"weights.bin", "cuda_plan.txt"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", g_dir, names[i]);
        unlink(p);
    }
    CHECK(!ib__cuda_is_artifact(g_dir));
    rmdir(g_dir);
}

int main(void) {
    RUN(cuda_targets);
    RUN(cuda_plan_reader);
    TEST_SUMMARY();
}
