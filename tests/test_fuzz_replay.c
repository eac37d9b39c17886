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

TEST(model_loader_corpus) {
    DIR *d = opendir(CORPUS);
    CHECK(d != NULL);
    if (!d) return;
    int files = 0, valid = 0, failed = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", CORPUS, e->d_name);
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        size_t size;
        unsigned char *data = read_file(path, &size);
        CHECK(data != NULL);
        if (!data) continue;
        files++;
        CHECK_EQ_INT(LLVMFuzzerTestOneInput(data, size), 0);
        ib_status s = ib__fuzz_model_loader(data, size);
        if (strncmp(e->d_name, "valid_", 6) == 0) {
            valid++;
            if (s != IB_OK) {
                fprintf(stderr, "  %s: %s: %s\n", e->d_name, ib_status_name(s), ib_last_error());
                ib_test_failed_checks++;
            }
        } else if (s != IB_OK) {
            failed++;
            CHECK(ib_last_error()[0] != '\0');
        }
        free(data);
    }
    closedir(d);
    printf("     %d files: %d valid seeds loaded, %d others failed cleanly\n", files, valid,
           failed);
    CHECK(files >= 24);
    CHECK(valid >= 10);
}

/* The run target's corpus: every file must go through load + one reference run without
 * a crash; the node_* and valid_* seeds must also load. */
TEST(model_run_corpus) {
    const char *dir = IB_SOURCE_DIR "/fuzz/corpus/model_run";
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int files = 0, loaded = 0;
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
        ib_status s = ib__fuzz_model_run(data, size);
        bool must_load = strncmp(e->d_name, "node_", 5) == 0 || strncmp(e->d_name, "valid_", 6) == 0;
        if (s == IB_OK) loaded++;
        else if (must_load && s != IB_ERR_UNSUPPORTED) {
            fprintf(stderr, "  %s: %s: %s\n", e->d_name, ib_status_name(s), ib_last_error());
            ib_test_failed_checks++;
        }
        free(data);
    }
    closedir(d);
    printf("     %d files, %d loaded and ran\n", files, loaded);
    CHECK(files >= 40);
}

/* The infer request corpus: valid_* seeds must decode, run and encode; bad_* must be
 * refused with a 4xx; anything else (crashers the fuzzer found) only has to come back. */
TEST(infer_request_corpus) {
    const char *dir = IB_SOURCE_DIR "/fuzz/corpus/infer_request";
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int files = 0, valid = 0, refused = 0;
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
        int code = -1;
        ib_status s = ib__fuzz_infer_request(data, size, &code);
        if (strncmp(e->d_name, "valid_", 6) == 0) {
            valid++;
            if (s != IB_OK) {
                fprintf(stderr, "  %s: refused with %d\n", e->d_name, code);
                ib_test_failed_checks++;
            }
        } else if (strncmp(e->d_name, "bad_", 4) == 0) {
            refused++;
            if (code < 400 || code > 499) {
                fprintf(stderr, "  %s: answered %d, expected a 4xx\n", e->d_name, code);
                ib_test_failed_checks++;
            }
        }
        free(data);
    }
    closedir(d);
    printf("     %d files: %d valid requests served, %d bad ones refused\n", files, valid, refused);
    CHECK(valid >= 5);
    CHECK(refused >= 15);
}

int main(void) {
    RUN(model_loader_corpus);
    RUN(model_run_corpus);
    RUN(infer_request_corpus);
    TEST_SUMMARY();
}
