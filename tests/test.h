/* A minimal test harness: TEST(name) functions registered in main via RUN(name); CHECK
 * records failures without stopping; every binary ends with "N passed, N failed". */
#ifndef IB_TEST_H
#define IB_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ib_test_failed_checks;
static int ib_test_passed, ib_test_failed;

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "  CHECK failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
            ib_test_failed_checks++;                                              \
        }                                                                         \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                             \
    do {                                                                               \
        long long ib_a_ = (long long)(a), ib_b_ = (long long)(b);                      \
        if (ib_a_ != ib_b_) {                                                          \
            fprintf(stderr, "  CHECK failed: %s == %s (%lld vs %lld) (%s:%d)\n", #a, #b, \
                    ib_a_, ib_b_, __FILE__, __LINE__);                                 \
            ib_test_failed_checks++;                                                   \
        }                                                                              \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                          \
    do {                                                                               \
        double ib_a_ = (double)(a), ib_b_ = (double)(b);                               \
        if (!(fabs(ib_a_ - ib_b_) <= (tol))) {                                         \
            fprintf(stderr, "  CHECK failed: %s ~= %s (%g vs %g) (%s:%d)\n", #a, #b,   \
                    ib_a_, ib_b_, __FILE__, __LINE__);                                 \
            ib_test_failed_checks++;                                                   \
        }                                                                              \
    } while (0)

#define TEST(name) static void test_##name(void)

#define RUN(name)                                                   \
    do {                                                            \
        int ib_before_ = ib_test_failed_checks;                     \
        test_##name();                                              \
        if (ib_test_failed_checks == ib_before_) {                  \
            ib_test_passed++;                                       \
            printf("ok   %s\n", #name);                             \
        } else {                                                    \
            ib_test_failed++;                                       \
            printf("FAIL %s\n", #name);                             \
        }                                                           \
    } while (0)

#define TEST_SUMMARY()                                                     \
    do {                                                                   \
        printf("%d passed, %d failed\n", ib_test_passed, ib_test_failed);  \
        return ib_test_failed ? 1 : 0;                                     \
    } while (0)

#endif /* IB_TEST_H */
