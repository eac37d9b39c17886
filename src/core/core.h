/* Internal core services shared by every part: allocation hook, error reporting,
 * arena allocator, dtype helpers (fp16/bf16), checked arithmetic, thread pool. */
#ifndef IB_CORE_H
#define IB_CORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inferbooster/inferbooster.h"

/* ---- Allocation: every allocation in the library goes through this hook. ---------- */
typedef void *(*ib__alloc_fn)(void *user, void *ptr, size_t old_size, size_t new_size);
/* Installs a hook (NULL restores the default). realloc semantics: new_size 0 frees. */
void ib__set_allocator(ib__alloc_fn fn, void *user);
void *ib__malloc(size_t size);
void *ib__calloc(size_t count, size_t size); /* overflow-checked */
void *ib__realloc(void *ptr, size_t size);
void ib__free(void *ptr);
char *ib__strdup(const char *s);
/* 64-byte aligned block; free with ib__aligned_free. */
void *ib__aligned_alloc(size_t size);
void ib__aligned_free(void *ptr);

/* ---- Errors ------------------------------------------------------------------------ */
/* Records a printf-style message for this thread and returns `status`. */
ib_status ib__error(ib_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with more context ("node 'conv1': " + old). */
ib_status ib__error_prefix(ib_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void ib__error_clear(void);

#define IB_TRY(expr)                         \
    do {                                     \
        ib_status ib__s_ = (expr);           \
        if (ib__s_ != IB_OK) return ib__s_;  \
    } while (0)

/* Internal invariant: a bug in InferBooster, never bad input. */
#define IB_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) ib__assert_fail(#cond, __FILE__, __LINE__);               \
    } while (0)
_Noreturn void ib__assert_fail(const char *expr, const char *file, int line);

/* ---- Checked arithmetic (true on overflow) ---------------------------------------- */
static inline bool ib__mul_overflow_i64(int64_t a, int64_t b, int64_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline bool ib__add_overflow_i64(int64_t a, int64_t b, int64_t *out) {
    return __builtin_add_overflow(a, b, out);
}
/* Largest element count a single tensor may have (2^40): refuses absurd shapes early. */
#define IB_MAX_ELEMENTS ((int64_t)1 << 40)

/* ---- Arena: many small allocations freed together ---------------------------------- */
typedef struct ib__arena ib__arena;
ib_status ib__arena_create(ib__arena **out);
void ib__arena_destroy(ib__arena *arena);
/* 16-byte aligned, zeroed; NULL on out-of-memory (status recorded). */
void *ib__arena_alloc(ib__arena *arena, size_t size);
/* The same, not zeroed: for blocks the caller fills at once (a model's weights copied
 * out of the file, where zeroing first would touch every page twice). */
void *ib__arena_alloc_uninit(ib__arena *arena, size_t size);
char *ib__arena_strdup(ib__arena *arena, const char *s);
char *ib__arena_strndup(ib__arena *arena, const char *s, size_t n);

/* ---- Dtype helpers ------------------------------------------------------------------ */
float ib__half_to_float(uint16_t h);
uint16_t ib__float_to_half(float f);
float ib__bf16_to_float(uint16_t b);
uint16_t ib__float_to_bf16(float f);
bool ib__dtype_is_float(ib_dtype dt);   /* float16, bfloat16, float32, float64 */
bool ib__dtype_is_integer(ib_dtype dt); /* signed or unsigned ints (not bool) */
bool ib__dtype_is_signed(ib_dtype dt);
bool ib__dtype_is_valid(int32_t dt);    /* one of the enum values */
/* Reads element i of a buffer of dtype dt as double / int64 (numeric dtypes only). */
double ib__load_f64(const void *data, ib_dtype dt, int64_t i);
int64_t ib__load_i64(const void *data, ib_dtype dt, int64_t i);
/* Stores a double / int64 into element i, converting as C casts do (saturating for
 * float->int out-of-range, to avoid UB). */
void ib__store_f64(void *data, ib_dtype dt, int64_t i, double v);
void ib__store_i64(void *data, ib_dtype dt, int64_t i, int64_t v);

/* ---- Tensor helpers ----------------------------------------------------------------- */
/* Element count of dims[0..rank); -1 on negative dims or overflow past IB_MAX_ELEMENTS. */
int64_t ib__shape_count(const int64_t *dims, int32_t rank);
/* Allocates tensor data (64-byte aligned, zeroed) for dtype/shape; owns_data = 1. */
ib_status ib__tensor_alloc(ib_tensor *t, ib_dtype dtype, int32_t rank, const int64_t *dims);
/* Row-major strides in elements. */
void ib__strides(const int64_t *dims, int32_t rank, int64_t *strides);

/* ---- Thread pool ------------------------------------------------------------------- */
typedef struct ib__pool ib__pool;
/* n_threads <= 1 makes a pool that runs everything on the caller's thread. */
ib_status ib__pool_create(int n_threads, ib__pool **out);
void ib__pool_destroy(ib__pool *pool);
int ib__pool_size(const ib__pool *pool);
/* Calls fn(ctx, begin, end) over [0, n) split into contiguous chunks; blocks until done.
 * pool may be NULL (serial). Safe to call from several threads: a caller that finds the
 * pool busy runs its loop itself. */
typedef void (*ib__range_fn)(void *ctx, int64_t begin, int64_t end);
void ib__parallel_for(ib__pool *pool, int64_t n, ib__range_fn fn, void *ctx);
/* The number of CPUs this process may use: affinity mask and cgroup CPU quota. */
int ib__usable_cpus(void);

/* ---- Timing ---------------------------------------------------------------------------- */
/* Seconds on CLOCK_MONOTONIC: for intervals only. */
double ib__now_s(void);
/* qsort order of doubles, ascending. */
int ib__cmp_double(const void *a, const void *b);

/* ---- Scratch directories ----------------------------------------------------------- */
/* Where scratch files go: $TMPDIR when it is an absolute path, else /tmp. */
const char *ib__tmp_dir(void);
/* Calls remove(path) for each directory in parent named <prefix>-<pid>-XXXXXX whose
 * process is gone (died before cleaning up after itself). */
void ib__sweep_dead_scratch(const char *parent, const char *prefix, void (*remove)(const char *path));
/* The directory holding `path` into buf ("." when it has no slash, "/" for the root). */
void ib__parent_dir(const char *path, char *buf, size_t cap);

#endif /* IB_CORE_H */
