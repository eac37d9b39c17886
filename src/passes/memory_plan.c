/* Memory planning: buffer lifetimes over the kernel order, then arena offsets for the
 * TEMP buffers by greedy placement (largest first, each at the lowest 64-byte aligned
 * offset free of every placed buffer whose lifetime overlaps). An alias group (a
 * reshape's view and its source) is placed as one buffer with the union lifetime. */
#include <stdlib.h>
#include <string.h>

#include "passes/passes_internal.h"

int32_t ib__kernel_args(const ib__pkernel *k, int32_t *args, int32_t cap) {
    int32_t n = 0;
    for (int32_t i = 0; i < k->n_in && n < cap; i++) args[n++] = k->in[i];
    for (int32_t i = 0; i < k->n_out && n < cap; i++) args[n++] = k->out[i];
    for (int32_t i = 0; i < k->n_epi && n < cap; i++)
        if (k->epi[i].kind == IB_EPI_BINARY) args[n++] = k->epi[i].operand_buf;
    return n;
}

/* The buffer whose memory b lives in (follows alias chains; a cycle stops). */
static int32_t alias_root(const ib__plan *plan, int32_t b) {
    for (int32_t hops = 0; hops <= plan->n_bufs && plan->bufs[b].alias_of >= 0; hops++)
        b = plan->bufs[b].alias_of;
    return b;
}

typedef struct slot {
    int32_t id; /* root buffer */
    int32_t first, last;
    int64_t size, offset;
} slot;

static int cmp_size_desc(const void *pa, const void *pb) {
    const slot *a = pa, *b = pb;
    if (a->size != b->size) return a->size > b->size ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

static int cmp_offset(const void *pa, const void *pb) {
    const slot *a = *(const slot *const *)pa, *b = *(const slot *const *)pb;
    return (a->offset > b->offset) - (a->offset < b->offset);
}

static void touch(ib__pbuf *b, int32_t k) {
    if (b->first_use < 0 || k < b->first_use) b->first_use = k;
    if (k > b->last_use) b->last_use = k;
}

ib_status ib__pass_memory_plan(ib__plan *plan) {
    for (int32_t b = 0; b < plan->n_bufs; b++) {
        plan->bufs[b].first_use = -1;
        plan->bufs[b].last_use = -1;
    }
    int32_t args[3 * IB_MAX_KERNEL_ARGS + IB_MAX_EPILOGUE];
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        int32_t n = ib__kernel_args(&plan->kernels[k], args, (int32_t)(sizeof args / sizeof *args));
        for (int32_t a = 0; a < n; a++) {
            if (args[a] < 0 || args[a] >= plan->n_bufs)
                continue;
            touch(&plan->bufs[args[a]], k);
        }
    }
    /* An alias group lives from its first member's first use to its last member's last. */
    for (int32_t b = 0; b < plan->n_bufs; b++) {
        ib__pbuf *pb = &plan->bufs[b];
        if (pb->alias_of < 0 || pb->first_use < 0) continue;
        int32_t r = alias_root(plan, b);
        touch(&plan->bufs[r], pb->first_use);
        touch(&plan->bufs[r], pb->last_use);
    }
    slot *slots = ib__calloc((size_t)plan->n_bufs + 1, sizeof *slots);
    slot **live = ib__calloc((size_t)plan->n_bufs + 1, sizeof *live);
    if (!slots || !live) {
        ib__free(slots);
        ib__free(live);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory planning memory");
    }
    int32_t n = 0;
    for (int32_t b = 0; b < plan->n_bufs; b++) {
        const ib__pbuf *pb = &plan->bufs[b];
        if (pb->kind != IB_BUF_TEMP || pb->alias_of >= 0) continue;
        slot *s = &slots[n++];
        s->id = b;
        /* A buffer no kernel touches still gets a (private) place. */
        s->first = pb->first_use >= 0 ? pb->first_use : 0;
        s->last = pb->last_use >= 0 ? pb->last_use : 0;
        s->size = (int64_t)((pb->nbytes + 63) & ~(size_t)63);
        if (s->size == 0) s->size = 64;
    }
    for (int32_t b = 0; b < plan->n_bufs; b++) { /* a member larger than its root */
        const ib__pbuf *pb = &plan->bufs[b];
        if (pb->alias_of < 0) continue;
        int32_t r = alias_root(plan, b);
        for (int32_t i = 0; i < n; i++)
            if (slots[i].id == r) {
                int64_t sz = (int64_t)((pb->nbytes + 63) & ~(size_t)63);
                if (sz > slots[i].size) slots[i].size = sz;
            }
    }
    qsort(slots, (size_t)n, sizeof *slots, cmp_size_desc);
    int64_t peak = 0;
    for (int32_t i = 0; i < n; i++) {
        slot *s = &slots[i];
        int32_t nl = 0;
        for (int32_t j = 0; j < i; j++)
            if (slots[j].first <= s->last && s->first <= slots[j].last) live[nl++] = &slots[j];
        qsort(live, (size_t)nl, sizeof *live, cmp_offset);
        int64_t at = 0;
        for (int32_t j = 0; j < nl; j++) {
            if (live[j]->offset >= at + s->size) break; /* fits in the gap before it */
            if (live[j]->offset + live[j]->size > at) at = live[j]->offset + live[j]->size;
        }
        s->offset = at;
        if (at + s->size > peak) peak = at + s->size;
        plan->bufs[s->id].offset = at;
    }
    for (int32_t b = 0; b < plan->n_bufs; b++)
        if (plan->bufs[b].alias_of >= 0)
            plan->bufs[b].offset = plan->bufs[alias_root(plan, b)].offset;
    plan->arena_bytes = (size_t)peak;
    ib__free(slots);
    ib__free(live);
    return IB_OK;
}

ib_status ib__pass_compact_weights(ib__plan *plan) {
    /* Weights that packing replaced are read by no kernel: drop their bytes. */
    uint8_t *used = ib__calloc((size_t)plan->n_bufs + 1, 1);
    if (!used) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory compacting weights");
    int32_t args[3 * IB_MAX_KERNEL_ARGS + IB_MAX_EPILOGUE];
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        int32_t n = ib__kernel_args(&plan->kernels[k], args, (int32_t)(sizeof args / sizeof *args));
        for (int32_t a = 0; a < n; a++)
            if (args[a] >= 0 && args[a] < plan->n_bufs) used[args[a]] = 1;
    }
    size_t total = 0;
    for (int32_t b = 0; b < plan->n_bufs; b++)
        if (plan->bufs[b].kind == IB_BUF_WEIGHT && used[b])
            total = ((total + 63) & ~(size_t)63) + plan->bufs[b].nbytes;
    if (total == plan->weights_bytes) {
        ib__free(used);
        return IB_OK;
    }
    unsigned char *blob = ib__aligned_alloc(total ? total : 1);
    if (!blob) {
        ib__free(used);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory compacting weights");
    }
    memset(blob, 0, total ? total : 1);
    size_t at = 0;
    for (int32_t b = 0; b < plan->n_bufs; b++) {
        ib__pbuf *pb = &plan->bufs[b];
        if (pb->kind != IB_BUF_WEIGHT) continue;
        if (!used[b]) { /* kept as an entry (ids stay stable), holding nothing */
            pb->offset = 0;
            pb->nbytes = 0;
            continue;
        }
        at = (at + 63) & ~(size_t)63;
        if (pb->nbytes) memcpy(blob + at, plan->weights + pb->offset, pb->nbytes);
        pb->offset = (int64_t)at;
        at += pb->nbytes;
    }
    ib__aligned_free(plan->weights);
    plan->weights = blob;
    plan->weights_bytes = total;
    ib__free(used);
    return IB_OK;
}
