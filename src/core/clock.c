/* The monotonic clock every timer of the project reads. */
#include <time.h>

#include "core/core.h"

double ib__now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
