/* Unit tests for core: dtype conversion, arena, thread pool, allocation hook, op list. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "core/core.h"
#include "ir/op_list.h"
#include "test.h"

TEST(half_roundtrip) {
    float vals[] = {0.0f, 1.0f, -2.5f, 65504.0f, 6.1035156e-05f, 5.9604645e-08f, 0.333251953125f};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++)
        CHECK(ib__half_to_float(ib__float_to_half(vals[i])) == vals[i]);
    CHECK(ib__float_to_half(1e6f) == 0x7c00);              /* overflow to inf */
    CHECK(ib__float_to_half(1.0f + 1.0f / 4096) == 0x3c00); /* ties to even */
    CHECK(ib__half_to_float(0x0001) == 5.9604645e-08f);    /* smallest subnormal */
    float nan = ib__half_to_float(ib__float_to_half(NAN));
    CHECK(nan != nan);
}

TEST(bf16_roundtrip) {
    CHECK(ib__bf16_to_float(ib__float_to_bf16(1.0f)) == 1.0f);
    CHECK(ib__bf16_to_float(ib__float_to_bf16(-3.0f)) == -3.0f);
    CHECK(ib__float_to_bf16(1.00390625f) == 0x3f80); /* tie rounds to even */
}

TEST(saturating_store) {
    int32_t x = 0;
    ib__store_f64(&x, IB_DTYPE_INT32, 0, 1e20);
    CHECK_EQ_INT(x, 2147483647);
    ib__store_f64(&x, IB_DTYPE_INT32, 0, NAN);
    CHECK_EQ_INT(x, 0);
    uint8_t b = 7;
    ib__store_f64(&b, IB_DTYPE_BOOL, 0, 0.5);
    CHECK_EQ_INT(b, 1);
}

TEST(arena) {
    ib__arena *a = NULL;
    CHECK(ib__arena_create(&a) == IB_OK);
    char *big = ib__arena_alloc(a, 1 << 20);
    CHECK(big != NULL);
    for (int i = 0; i < 10000; i++) {
        int *p = ib__arena_alloc(a, 24);
        CHECK(((uintptr_t)p & 15) == 0);
        *p = i;
    }
    CHECK(strcmp(ib__arena_strndup(a, "abcdef", 3), "abc") == 0);
    ib__arena_destroy(a);
}

static void sum_range(void *ctx, int64_t begin, int64_t end) {
    int64_t *out = ctx;
    for (int64_t i = begin; i < end; i++) out[i] = i * 2;
}

TEST(pool_parallel_for) {
    ib__pool *p = NULL;
    CHECK(ib__pool_create(3, &p) == IB_OK);
    int64_t out[1000];
    for (int rep = 0; rep < 50; rep++) {
        memset(out, 0, sizeof out);
        ib__parallel_for(p, 1000, sum_range, out);
        int bad = 0;
        for (int i = 0; i < 1000; i++) bad += out[i] != i * 2;
        CHECK_EQ_INT(bad, 0);
    }
    ib__pool_destroy(p);
    CHECK(ib__usable_cpus() >= 1);
}

typedef struct count_job {
    _Atomic int32_t hits[257];
} count_job;

static void count_range(void *ctx, int64_t begin, int64_t end) {
    count_job *j = ctx;
    for (int64_t i = begin; i < end; i++) atomic_fetch_add(&j->hits[i], 1);
}

typedef struct pool_caller {
    ib__pool *pool;
    int bad;
} pool_caller;

/* Loops of every small size, some after the workers fell asleep (past their spin), some
 * back to back: every index must run exactly once. */
static void *pool_caller_main(void *arg) {
    pool_caller *c = arg;
    count_job *j = calloc(1, sizeof *j);
    if (!j) {
        c->bad = 1;
        return NULL;
    }
    for (int rep = 0; rep < 400; rep++) {
        int64_t n = 1 + rep % 257;
        for (int64_t i = 0; i < n; i++) atomic_store(&j->hits[i], 0);
        if (rep % 50 == 0) {
            struct timespec ts = {0, 1000 * 1000}; /* 1 ms: longer than the workers spin */
            nanosleep(&ts, NULL);
        }
        ib__parallel_for(c->pool, n, count_range, j);
        for (int64_t i = 0; i < n; i++) c->bad += atomic_load(&j->hits[i]) != 1;
    }
    free(j);
    return NULL;
}

TEST(pool_spin_sleep_and_concurrent_callers) {
    ib__pool *p = NULL;
    CHECK(ib__pool_create(3, &p) == IB_OK);
    pool_caller a = {p, 0}, b = {p, 0};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, pool_caller_main, &a) == 0);
    pool_caller_main(&b); /* the busy pool runs one caller's loops on its own thread */
    pthread_join(t, NULL);
    CHECK_EQ_INT(a.bad, 0);
    CHECK_EQ_INT(b.bad, 0);
    ib__pool_destroy(p);
}

/* Each thread starts on its own contiguous share of the range (the caller on the first):
 * with 2 threads the worker's first item is n / 2, whatever the timing. The caller's item
 * 0 waits (up to 1 s) for the worker to start, so the worker takes part. */
typedef struct affinity_job {
    pthread_t caller;
    int64_t n;
    _Atomic int64_t worker_first;
    _Atomic int half_started;
} affinity_job;

static void affinity_range(void *ctx, int64_t begin, int64_t end) {
    affinity_job *j = ctx;
    for (int64_t i = begin; i < end; i++) {
        if (!pthread_equal(pthread_self(), j->caller)) {
            int64_t none = -1;
            atomic_compare_exchange_strong(&j->worker_first, &none, i);
        }
        if (i == j->n / 2) atomic_store(&j->half_started, 1);
        for (int spin = 0; i == 0 && spin < 1000 && !atomic_load(&j->half_started); spin++) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

TEST(pool_threads_start_on_their_share) {
    ib__pool *p = NULL;
    CHECK(ib__pool_create(2, &p) == IB_OK);
    int joined = 0;
    for (int rep = 0; rep < 20; rep++) {
        affinity_job j = {.caller = pthread_self(), .n = 64};
        atomic_store(&j.worker_first, -1);
        atomic_store(&j.half_started, 0);
        ib__parallel_for(p, j.n, affinity_range, &j);
        int64_t first = atomic_load(&j.worker_first);
        if (first >= 0) {
            joined++;
            CHECK_EQ_INT(first, j.n / 2);
        }
    }
    CHECK(joined > 0);
    ib__pool_destroy(p);
}

static int g_fail_after = -1;
static void *failing_alloc(void *user, void *ptr, size_t old, size_t n) {
    (void)user;
    (void)old;
    if (n == 0) {
        free(ptr);
        return NULL;
    }
    if (g_fail_after == 0) return NULL;
    if (g_fail_after > 0) g_fail_after--;
    return realloc(ptr, n);
}

TEST(alloc_hook_failure) {
    ib__set_allocator(failing_alloc, NULL);
    g_fail_after = 0;
    ib__arena *a = NULL;
    CHECK(ib__arena_create(&a) == IB_ERR_OUT_OF_MEMORY);
    g_fail_after = -1;
    ib__set_allocator(NULL, NULL);
}

TEST(op_list_sorted_and_lookup) {
    for (int i = 2; i < IB_OP_COUNT; i++) CHECK(strcmp(ib__op_name(i - 1), ib__op_name(i)) < 0);
    CHECK(ib__op_lookup("Conv") == IB_OP_CONV);
    CHECK(ib__op_lookup("LRN") == IB_OP_LRN);
    CHECK(ib__op_lookup("NoSuchOp") == IB_OP_UNKNOWN);
    CHECK(strcmp(ib_status_name(IB_ERR_SHAPE), "IB_ERR_SHAPE") == 0);
    CHECK(ib_dtype_size(IB_DTYPE_BFLOAT16) == 2);
}

int main(void) {
    RUN(half_roundtrip);
    RUN(bf16_roundtrip);
    RUN(saturating_store);
    RUN(arena);
    RUN(pool_parallel_for);
    RUN(pool_spin_sleep_and_concurrent_callers);
    RUN(pool_threads_start_on_their_share);
    RUN(alloc_hook_failure);
    RUN(op_list_sorted_and_lookup);
    TEST_SUMMARY();
}
