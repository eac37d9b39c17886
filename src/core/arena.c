/* Arena allocator: bump allocation in chunks; everything is freed at once. Large
 * requests get a chunk of their own so small ones do not waste the tail. */
#include <string.h>

#include "core/core.h"

#define IB__ARENA_CHUNK (64 * 1024)

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used;
    size_t cap;
    _Alignas(16) unsigned char data[];
} arena_chunk;

struct ib__arena {
    arena_chunk *head;
};

ib_status ib__arena_create(ib__arena **out) {
    ib__arena *a = ib__calloc(1, sizeof *a);
    if (!a) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating an arena");
    *out = a;
    return IB_OK;
}

void ib__arena_destroy(ib__arena *arena) {
    if (!arena) return;
    arena_chunk *c = arena->head;
    while (c) {
        arena_chunk *next = c->next;
        ib__free(c);
        c = next;
    }
    ib__free(arena);
}

static arena_chunk *new_chunk(size_t cap) {
    size_t total;
    if (__builtin_add_overflow(cap, sizeof(arena_chunk), &total)) return NULL;
    arena_chunk *c = ib__malloc(total);
    if (!c) return NULL;
    c->next = NULL;
    c->used = 0;
    c->cap = cap;
    return c;
}

void *ib__arena_alloc_uninit(ib__arena *arena, size_t size) {
    size_t need = (size + 15) & ~(size_t)15;
    if (need < size) {
        ib__error(IB_ERR_OUT_OF_MEMORY, "arena request of %zu bytes overflows", size);
        return NULL;
    }
    if (need == 0) need = 16;
    arena_chunk *c = arena->head;
    if (!c || c->cap - c->used < need) {
        if (need > IB__ARENA_CHUNK / 4) {
            /* Dedicated chunk, linked behind the head so the head keeps its free tail. */
            arena_chunk *big = new_chunk(need);
            if (!big) {
                ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes", size);
                return NULL;
            }
            big->used = need;
            if (c) {
                big->next = c->next;
                c->next = big;
            } else {
                arena->head = big;
            }
            return big->data;
        }
        c = new_chunk(IB__ARENA_CHUNK);
        if (!c) {
            ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes", size);
            return NULL;
        }
        c->next = arena->head;
        arena->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    return p;
}

void *ib__arena_alloc(ib__arena *arena, size_t size) {
    void *p = ib__arena_alloc_uninit(arena, size);
    if (p) memset(p, 0, size ? (size + 15) & ~(size_t)15 : 16);
    return p;
}

char *ib__arena_strndup(ib__arena *arena, const char *s, size_t n) {
    char *d = ib__arena_alloc(arena, n + 1);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *ib__arena_strdup(ib__arena *arena, const char *s) {
    return ib__arena_strndup(arena, s, strlen(s));
}
