/* Replays the fuzz corpora through the fuzz targets' own entry points, so every seed
 * and every crasher found so far stays a regression test. Seeds named valid_* must load;
 * the rest only have to fail cleanly. */
#include <dirent.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "fuzz_targets.h"
#include "test.h"

#ifndef IB_SOURCE_DIR
#define IB_SOURCE_DIR "."
#endif
#define CORPUS IB_SOURCE_DIR "/fuzz/corpus/model_loader"

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = n > 0 ? (size_t)n : 0;
    return buf;
}

typedef void (*corpus_fn)(void *ctx, const char *name, const unsigned char *data, size_t size);

/* Calls fn for every regular file of the corpus folder `dir`; returns how many, or -1
 * (a failed check) when the folder cannot be read. */
static int each_corpus_file(const char *dir, corpus_fn fn, void *ctx) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return -1;
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        size_t size;
        unsigned char *data = read_file(path, &size);
        CHECK(data != NULL);
        if (!data) continue;
        files++;
        fn(ctx, e->d_name, data, size);
        free(data);
    }
    closedir(d);
    return files;
}

static bool named(const char *name, const char *prefix) {
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

typedef struct counts {
    int valid, failed, loaded, refused;
} counts;

static void loader_file(void *ctx, const char *name, const unsigned char *data, size_t size) {
    counts *c = ctx;
    CHECK_EQ_INT(LLVMFuzzerTestOneInput(data, size), 0);
    ib_status s = ib__fuzz_model_loader(data, size);
    if (named(name, "valid_")) {
        c->valid++;
        if (s != IB_OK) {
            fprintf(stderr, "  %s: %s: %s\n", name, ib_status_name(s), ib_last_error());
            ib_test_failed_checks++;
        }
    } else if (s != IB_OK) {
        c->failed++;
        CHECK(ib_last_error()[0] != '\0');
    }
}

TEST(model_loader_corpus) {
    counts c = {0, 0, 0, 0};
    int files = each_corpus_file(CORPUS, loader_file, &c);
    printf("     %d files: %d valid seeds loaded, %d others failed cleanly\n", files, c.valid,
           c.failed);
    CHECK(files >= 24);
    CHECK(c.valid >= 10);
}

/* The run target's corpus: every file must go through load + one reference run without
 * a crash; the node_* and valid_* seeds must also load. */
static void run_file(void *ctx, const char *name, const unsigned char *data, size_t size) {
    counts *c = ctx;
    ib_status s = ib__fuzz_model_run(data, size);
    bool must_load = named(name, "node_") || named(name, "valid_");
    if (s == IB_OK) c->loaded++;
    else if (must_load && s != IB_ERR_UNSUPPORTED) {
        fprintf(stderr, "  %s: %s: %s\n", name, ib_status_name(s), ib_last_error());
        ib_test_failed_checks++;
    }
}

TEST(model_run_corpus) {
    counts c = {0, 0, 0, 0};
    int files = each_corpus_file(IB_SOURCE_DIR "/fuzz/corpus/model_run", run_file, &c);
    printf("     %d files, %d loaded and ran\n", files, c.loaded);
    CHECK(files >= 40);
}

/* The infer request corpus: valid_* seeds must decode, run and encode; bad_* must be
 * refused with a 4xx; anything else (crashers the fuzzer found) only has to come back. */
static void request_file(void *ctx, const char *name, const unsigned char *data, size_t size) {
    counts *c = ctx;
    int code = -1;
    ib_status s = ib__fuzz_infer_request(data, size, &code);
    if (named(name, "valid_")) {
        c->valid++;
        if (s != IB_OK) {
            fprintf(stderr, "  %s: refused with %d\n", name, code);
            ib_test_failed_checks++;
        }
    } else if (named(name, "bad_")) {
        c->refused++;
        if (code < 400 || code > 499) {
            fprintf(stderr, "  %s: answered %d, expected a 4xx\n", name, code);
            ib_test_failed_checks++;
        }
    }
}

TEST(infer_request_corpus) {
    counts c = {0, 0, 0, 0};
    int files = each_corpus_file(IB_SOURCE_DIR "/fuzz/corpus/infer_request", request_file, &c);
    printf("     %d files: %d valid requests served, %d bad ones refused\n", files, c.valid,
           c.refused);
    CHECK(c.valid >= 5);
    CHECK(c.refused >= 15);
}

/* The measurement job corpus: valid_* seeds must parse, bad_* must be refused. */
static void job_file(void *ctx, const char *name, const unsigned char *data, size_t size) {
    counts *c = ctx;
    ib_status s = ib__fuzz_measure_job(data, size);
    if (named(name, "valid_")) {
        c->valid++;
        if (s != IB_OK) {
            fprintf(stderr, "  %s: refused: %s\n", name, ib_last_error());
            ib_test_failed_checks++;
        }
    } else if (named(name, "bad_")) {
        c->refused++;
        if (s == IB_OK) {
            fprintf(stderr, "  %s: accepted\n", name);
            ib_test_failed_checks++;
        }
    }
}

TEST(measure_job_corpus) {
    counts c = {0, 0, 0, 0};
    int files = each_corpus_file(IB_SOURCE_DIR "/fuzz/corpus/measure_job", job_file, &c);
    printf("     %d files: %d valid jobs parsed, %d bad ones refused\n", files, c.valid, c.refused);
    CHECK(c.valid >= 2);
    CHECK(c.refused >= 6);
}

int main(void) {
    RUN(model_loader_corpus);
    RUN(model_run_corpus);
    RUN(infer_request_corpus);
    RUN(measure_job_corpus);
    TEST_SUMMARY();
}
