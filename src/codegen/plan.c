/* Kernel plan storage: buffers, kernels, knobs, the weights blob, template lookup. */
#include <string.h>

#include "codegen/plan.h"

void ib__knobs_set(ib__knobs *k, const char *name, int64_t value) {
    for (int32_t i = 0; i < k->n; i++)
        if (strcmp(k->name[i], name) == 0) {
            k->value[i] = value;
            return;
        }
    if (k->n < IB_MAX_KNOBS) {
        k->name[k->n] = name;
        k->value[k->n++] = value;
    }
}

int64_t ib__knobs_get(const ib__knobs *k, const char *name, int64_t dflt) {
    for (int32_t i = 0; i < k->n; i++)
        if (strcmp(k->name[i], name) == 0) return k->value[i];
    return dflt;
}

ib_status ib__plan_create(const ib__graph *graph, const ib__target *target, ib__plan **out) {
    ib__plan *p = ib__calloc(1, sizeof *p);
    if (!p) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory creating a plan");
    ib_status st = ib__arena_create(&p->arena);
    if (st) {
        ib__free(p);
        return st;
    }
    p->graph = graph;
    p->target = *target;
    *out = p;
    return IB_OK;
}

void ib__plan_destroy(ib__plan *plan) {
    if (!plan) return;
    ib__free(plan->bufs);
    ib__free(plan->kernels);
    ib__aligned_free(plan->weights);
    ib__arena_destroy(plan->arena);
    ib__free(plan);
}

static ib_status grow(void **arr, int32_t *cap, int32_t need, size_t elem) {
    if (need <= *cap) return IB_OK;
    int32_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need) ncap *= 2;
    void *n = ib__realloc(*arr, elem * (size_t)ncap);
    if (!n) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory growing a plan");
    *arr = n;
    *cap = ncap;
    return IB_OK;
}

size_t ib__pbuf_physical_bytes(const ib__pbuf *b) {
    size_t es = ib_dtype_size(b->dtype);
    int64_t n = 1;
    for (int32_t d = 0; d < b->rank; d++) {
        int64_t dim = b->dims[d];
        if (b->layout == IB_LAYOUT_NCHWC && d == 1 && b->block > 0)
            dim = (dim + b->block - 1) / b->block * b->block;
        n *= dim;
    }
    return (size_t)n * es;
}

ib_status ib__plan_add_buf(ib__plan *plan, const ib__pbuf *buf, int32_t *out_id) {
    IB_TRY(grow((void **)&plan->bufs, &plan->cap_bufs, plan->n_bufs + 1, sizeof(ib__pbuf)));
    ib__pbuf *b = &plan->bufs[plan->n_bufs];
    *b = *buf;
    if (!b->nbytes) b->nbytes = ib__pbuf_physical_bytes(b);
    *out_id = plan->n_bufs++;
    return IB_OK;
}

ib_status ib__plan_add_kernel(ib__plan *plan, const ib__pkernel *k, int32_t *out_id) {
    IB_TRY(grow((void **)&plan->kernels, &plan->cap_kernels, plan->n_kernels + 1,
                sizeof(ib__pkernel)));
    plan->kernels[plan->n_kernels] = *k;
    *out_id = plan->n_kernels++;
    return IB_OK;
}

ib_status ib__plan_add_weight(ib__plan *plan, const ib__pbuf *desc, const void *data,
                              size_t nbytes, int32_t *out_id) {
    size_t offset = (plan->weights_bytes + 63) & ~(size_t)63;
    size_t total = offset + nbytes;
    if (total < offset) return ib__error(IB_ERR_OUT_OF_MEMORY, "weights blob too large");
    /* Geometric growth: a copy per weight made compiling BERT quadratic (minutes). */
    size_t have = plan->weights_cap_of == plan->weights && plan->weights ? plan->weights_cap : 0;
    if (total > have) {
        size_t cap = have > 4096 ? have : 4096;
        while (cap < total) cap = cap > SIZE_MAX / 2 ? total : cap * 2;
        unsigned char *blob = ib__aligned_alloc(cap);
        if (!blob) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory packing weights");
        if (plan->weights_bytes) memcpy(blob, plan->weights, plan->weights_bytes);
        ib__aligned_free(plan->weights);
        plan->weights = blob;
        plan->weights_cap = cap;
        plan->weights_cap_of = blob;
    }
    memset(plan->weights + plan->weights_bytes, 0, offset - plan->weights_bytes);
    if (nbytes) memcpy(plan->weights + offset, data, nbytes);
    plan->weights_bytes = total;
    ib__pbuf b = *desc;
    b.kind = IB_BUF_WEIGHT;
    b.offset = (int64_t)offset;
    b.nbytes = nbytes;
    b.alias_of = -1;
    return ib__plan_add_buf(plan, &b, out_id);
}

static const ib__kernel_template *const g_templates[] = {
#define IB__TEMPLATE_REF(name) &ib__template_##name,
    IB_KERNEL_TEMPLATE_LIST(IB__TEMPLATE_REF)
#undef IB__TEMPLATE_REF
};

static const ib__kernel_template *const g_cuda_templates[] = {
#define IB__TEMPLATE_REF(name) &ib__template_##name,
    IB_CUDA_TEMPLATE_LIST(IB__TEMPLATE_REF)
#undef IB__TEMPLATE_REF
};

const ib__kernel_template *ib__template_find(const ib__plan *plan, const ib__pkernel *k) {
    bool cuda = ib__target_is_cuda(&plan->target);
    const ib__kernel_template *const *list = cuda ? g_cuda_templates : g_templates;
    size_t n = cuda ? sizeof g_cuda_templates / sizeof *g_cuda_templates
                    : sizeof g_templates / sizeof *g_templates;
    for (size_t i = 0; i < n; i++)
        if (list[i]->supports && list[i]->supports(plan, k)) return list[i];
    return NULL;
}

const ib__kernel_template *ib__template_by_name(const char *name) {
    for (size_t i = 0; i < sizeof g_templates / sizeof g_templates[0]; i++)
        if (strcmp(g_templates[i]->name, name) == 0) return g_templates[i];
    for (size_t i = 0; i < sizeof g_cuda_templates / sizeof *g_cuda_templates; i++)
        if (strcmp(g_cuda_templates[i]->name, name) == 0) return g_cuda_templates[i];
    return NULL;
}
