/* The allocation hook: every byte the library allocates passes through ib__alloc_fn,
 * so tests can fail the N-th allocation and exercise every out-of-memory path. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static void *default_alloc(void *user, void *ptr, size_t old_size, size_t new_size) {
    (void)user;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, new_size);
}

static ib__alloc_fn g_alloc = default_alloc;
static void *g_alloc_user;

void ib__set_allocator(ib__alloc_fn fn, void *user) {
    g_alloc = fn ? fn : default_alloc;
    g_alloc_user = fn ? user : NULL;
}

void *ib__malloc(size_t size) { return g_alloc(g_alloc_user, NULL, 0, size ? size : 1); }

void *ib__calloc(size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) return NULL;
    void *p = ib__malloc(total);
    if (p) memset(p, 0, total ? total : 1);
    return p;
}

void *ib__realloc(void *ptr, size_t size) {
    return g_alloc(g_alloc_user, ptr, 0, size ? size : 1);
}

void ib__free(void *ptr) {
    if (ptr) g_alloc(g_alloc_user, ptr, 0, 0);
}

char *ib__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ib__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Over-allocates and stores the original pointer just before the aligned block. */
void *ib__aligned_alloc(size_t size) {
    size_t total;
    if (__builtin_add_overflow(size, (size_t)64 + sizeof(void *), &total)) return NULL;
    char *raw = ib__malloc(total);
    if (!raw) return NULL;
    uintptr_t p = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)p)[-1] = raw;
    return (void *)p;
}

void ib__aligned_free(void *ptr) {
    if (ptr) ib__free(((void **)ptr)[-1]);
}
