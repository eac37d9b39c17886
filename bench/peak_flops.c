/* FMA throughput probe: the float32 GFLOP/s this CPU reaches on independent FMA chains (512-, 256-
 * and 128-bit; 1 and N threads), the ceiling that bench/ reports kernel efficiency against.
 *
 * build: cc -O2 -march=native -pthread bench/peak_flops.c -o peak_flops
 * usage: peak_flops [--threads N] [--ms M] [--reps R] [--json]
 * Reports the best of R timed windows of about M ms each: on a shared machine short windows
 * often run undisturbed, and the peak is what the core can do, not what the load leaves.
 * Widths the CPU lacks (checked at run time, so one binary serves any host) are skipped. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Twice the FMA latency (4 cycles on current x86) times two FMA ports would be 8 chains;
 * more keep both ports busy through scheduling noise, but leave registers for the operands. */
#define CHAINS_512 24 /* of 32 zmm */
#define CHAINS_256 12 /* of 16 ymm */
#define CHAINS_128 12 /* of 16 xmm */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* acc = acc * m + c with m slightly below 1 stays bounded and never denormal, and the
 * compiler cannot fold the chain because acc depends on every previous step. Each kernel
 * returns a sum of the accumulators so the loop is not dead code. */
#define FMA_KERNEL(NAME, ATTR, VT, SET1, FMADD, ADD, CHAINS, STORE, LANES)             \
    ATTR static float NAME(int64_t iters) {                                             \
        VT acc[CHAINS];                                                                 \
        _Pragma("GCC unroll 32")                                                        \
        for (int k = 0; k < CHAINS; k++) acc[k] = SET1(1.0f + 0.001f * (float)k);       \
        const VT m = SET1(0.999999f), c = SET1(1e-6f);                                  \
        for (int64_t i = 0; i < iters; i++) {                                           \
            _Pragma("GCC unroll 32")                                                    \
            for (int k = 0; k < CHAINS; k++) {                                          \
                acc[k] = FMADD(acc[k], m, c);                                           \
                /* An empty asm that "changes" acc: no compiler can fold the chain. */  \
                __asm__("" : "+v"(acc[k]));                                             \
            }                                                                           \
        }                                                                               \
        _Pragma("GCC unroll 32")                                                        \
        for (int k = 1; k < CHAINS; k++) acc[0] = ADD(acc[0], acc[k]);                  \
        float out[LANES];                                                               \
        STORE(out, acc[0]);                                                             \
        return out[0];                                                                  \
    }

FMA_KERNEL(fma512, __attribute__((target("avx512f"))), __m512, _mm512_set1_ps, _mm512_fmadd_ps,
           _mm512_add_ps, CHAINS_512, _mm512_storeu_ps, 16)
FMA_KERNEL(fma256, __attribute__((target("avx2,fma"))), __m256, _mm256_set1_ps, _mm256_fmadd_ps,
           _mm256_add_ps, CHAINS_256, _mm256_storeu_ps, 8)
FMA_KERNEL(fma128, __attribute__((target("avx2,fma"))), __m128, _mm_set1_ps, _mm_fmadd_ps,
           _mm_add_ps, CHAINS_128, _mm_storeu_ps, 4)

typedef float (*kernel_fn)(int64_t);

typedef struct {
    const char *name;
    kernel_fn fn;
    int lanes;
    int chains;
    const char *feature;
} width_desc;

typedef struct {
    kernel_fn fn;
    int64_t iters;
    int cpu;
    pthread_barrier_t *start;
    double seconds;
    float sink;
} worker;

static void pin(int cpu) {
    cpu_set_t allowed, one;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    /* The cpu-th CPU this process may use, so a restricted cpuset still gets distinct cores. */
    int seen = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &allowed)) continue;
        if (seen++ == cpu) {
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            pthread_setaffinity_np(pthread_self(), sizeof one, &one);
            return;
        }
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    pin(w->cpu);
    pthread_barrier_wait(w->start);
    double t0 = now_s();
    w->sink = w->fn(w->iters);
    w->seconds = now_s() - t0;
    return NULL;
}

/* GFLOP/s of `threads` threads each running iters steps; wall time is the slowest thread's. */
static double measure(const width_desc *wd, int threads, int64_t iters) {
    worker ws[64];
    pthread_t tids[64];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++) {
        ws[t] = (worker){wd->fn, iters, t, &start, 0.0, 0.0f};
        if (t > 0 && pthread_create(&tids[t], NULL, worker_main, &ws[t]) != 0) {
            fprintf(stderr, "peak_flops: pthread_create failed\n");
            exit(1);
        }
    }
    worker_main(&ws[0]);
    for (int t = 1; t < threads; t++) pthread_join(tids[t], NULL);
    pthread_barrier_destroy(&start);
    double slowest = 0.0;
    float sink = 0.0f;
    for (int t = 0; t < threads; t++) {
        if (ws[t].seconds > slowest) slowest = ws[t].seconds;
        sink += ws[t].sink;
    }
    if (sink == 12345.678f) fputc(' ', stderr); /* keeps the results observable */
    double flops = 2.0 * wd->lanes * wd->chains * (double)iters * threads;
    return flops / slowest / 1e9;
}

/* Best of reps timed runs, sized to roughly ms milliseconds each after a calibration. */
static double probe(const width_desc *wd, int threads, double ms, int reps) {
    int64_t iters = 1 << 16;
    for (;;) {
        double t0 = now_s();
        wd->fn(iters);
        double dt = now_s() - t0;
        if (dt > 0.02 || iters > ((int64_t)1 << 40)) {
            iters = (int64_t)((double)iters * (ms / 1000.0) / dt) + 1;
            break;
        }
        iters *= 4;
    }
    double best = 0.0;
    for (int rep = 0; rep < reps; rep++) {
        double g = measure(wd, threads, iters);
        if (g > best) best = g;
    }
    return best;
}

int main(int argc, char **argv) {
    int threads = 2;
    double ms = 2.0;
    int reps = 300;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--ms") && i + 1 < argc) {
            ms = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else {
            fprintf(stderr, "usage: %s [--threads N] [--ms M] [--reps R] [--json]\n", argv[0]);
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || !(ms > 0.0) || reps < 1) {
        fprintf(stderr, "peak_flops: --threads must be 1..64, --ms and --reps positive\n");
        return 2;
    }
    __builtin_cpu_init();
    const width_desc widths[] = {
        {"fma512", fma512, 16, CHAINS_512, "avx512f"},
        {"fma256", fma256, 8, CHAINS_256, "fma"},
        {"fma128", fma128, 4, CHAINS_128, "fma"},
    };
    int have[3] = {__builtin_cpu_supports("avx512f"), __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2"),
                   __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2")};
    int counts[2] = {1, threads};
    int n_counts = threads > 1 ? 2 : 1;
    double best[2] = {0.0, 0.0};
    if (json) printf("{");
    int first = 1;
    for (int w = 0; w < 3; w++) {
        for (int c = 0; c < n_counts; c++) {
            if (!have[w]) {
                if (json) {
                    printf("%s\"%s_%dt\": null", first ? "" : ", ", widths[w].name, counts[c]);
                    first = 0;
                } else if (c == 0) {
                    printf("%s: not supported by this CPU (no %s)\n", widths[w].name, widths[w].feature);
                }
                continue;
            }
            double g = probe(&widths[w], counts[c], ms, reps);
            if (g > best[c]) best[c] = g;
            if (json) {
                printf("%s\"%s_%dt\": %.2f", first ? "" : ", ", widths[w].name, counts[c], g);
                first = 0;
            } else {
                printf("%s %d thread%s: %8.2f GFLOP/s\n", widths[w].name, counts[c], counts[c] == 1 ? " " : "s", g);
            }
        }
    }
    if (json) {
        printf("%s\"peak_1t\": %.2f", first ? "" : ", ", best[0]);
        if (n_counts > 1) printf(", \"peak_%dt\": %.2f, \"threads\": %d", threads, best[1], threads);
        printf("}\n");
    } else {
        printf("peak: %.2f GFLOP/s on 1 thread", best[0]);
        if (n_counts > 1) printf(", %.2f GFLOP/s on %d threads", best[1], threads);
        printf("\n");
    }
    return 0;
}
