/* A fixed pool of worker threads running parallel-for loops, and the count of CPUs this
 * process may use (affinity mask, cgroup v2/v1 CPU quota). */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

struct ib__pool {
    int n_threads; /* including the caller */
    pthread_t *threads;
    pthread_mutex_t busy; /* held by the caller whose loop the pool runs */
    pthread_mutex_t mu;
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    /* current job */
    ib__range_fn fn;
    void *ctx;
    int64_t n;
    int64_t chunk;
    int64_t next;       /* next chunk start, guarded by mu */
    int pending;        /* workers still on this job */
    unsigned long generation;
    int stop;
};

static void run_chunks(ib__pool *p) {
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int64_t begin = p->next;
        if (begin >= p->n) {
            pthread_mutex_unlock(&p->mu);
            return;
        }
        int64_t end = begin + p->chunk < p->n ? begin + p->chunk : p->n;
        p->next = end;
        ib__range_fn fn = p->fn;
        void *ctx = p->ctx;
        pthread_mutex_unlock(&p->mu);
        fn(ctx, begin, end);
    }
}

static void *worker_main(void *arg) {
    ib__pool *p = arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->work_cv, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        run_chunks(p);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

ib_status ib__pool_create(int n_threads, ib__pool **out) {
    ib__pool *p = ib__calloc(1, sizeof *p);
    if (!p) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a thread pool");
    p->n_threads = n_threads < 1 ? 1 : n_threads;
    pthread_mutex_init(&p->busy, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    if (p->n_threads > 1) {
        p->threads = ib__calloc((size_t)p->n_threads - 1, sizeof(pthread_t));
        if (!p->threads) {
            ib__pool_destroy(p);
            return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a thread pool");
        }
        for (int i = 0; i < p->n_threads - 1; i++) {
            if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
                p->n_threads = i + 1; /* the ones started, plus the caller */
                ib__pool_destroy(p);
                return ib__error(IB_ERR_RUNTIME, "cannot start thread pool worker %d", i);
            }
        }
    }
    *out = p;
    return IB_OK;
}

void ib__pool_destroy(ib__pool *p) {
    if (!p) return;
    if (p->threads) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
        for (int i = 0; i < p->n_threads - 1; i++) pthread_join(p->threads[i], NULL);
        ib__free(p->threads);
    }
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->busy);
    ib__free(p);
}

int ib__pool_size(const ib__pool *pool) { return pool ? pool->n_threads : 1; }

void ib__parallel_for(ib__pool *p, int64_t n, ib__range_fn fn, void *ctx) {
    if (n <= 0) return;
    if (!p || p->n_threads <= 1 || n == 1 || pthread_mutex_trylock(&p->busy) != 0) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    /* A few chunks per thread balance uneven work without much locking. */
    int64_t chunks = (int64_t)p->n_threads * 4;
    p->chunk = (n + chunks - 1) / chunks;
    p->next = 0;
    p->pending = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&p->busy);
}

/* cgroup v2 "cpu.max" ("max 100000" or "200000 100000"), else v1 quota/period. */
static int cgroup_cpu_limit(void) {
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (f) {
        char quota[32];
        long period = 0;
        int ok = fscanf(f, "%31s %ld", quota, &period) == 2;
        fclose(f);
        if (ok && strcmp(quota, "max") != 0 && period > 0) {
            long q = atol(quota);
            if (q > 0) return (int)((q + period - 1) / period);
        }
        return 0;
    }
    long q = -1, period = 0;
    f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "r");
    if (f) {
        if (fscanf(f, "%ld", &q) != 1) q = -1;
        fclose(f);
    }
    f = fopen("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "r");
    if (f) {
        if (fscanf(f, "%ld", &period) != 1) period = 0;
        fclose(f);
    }
    if (q > 0 && period > 0) return (int)((q + period - 1) / period);
    return 0;
}

int ib__usable_cpus(void) {
    int n = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        n = CPU_COUNT(&set);
    }
    int quota = cgroup_cpu_limit();
    if (quota > 0 && quota < n) n = quota;
    return n < 1 ? 1 : n;
}
