/* Timing: the monotonic clock every timer of the project reads, and the order its
 * timings sort in for medians and percentiles. */
#include <time.h>

#include "core/core.h"

double ib__now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int ib__cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
