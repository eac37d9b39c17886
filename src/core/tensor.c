/* Tensor views: element counts, strides, and library-owned data. */
#include <string.h>

#include "core/core.h"

int64_t ib__shape_count(const int64_t *dims, int32_t rank) {
    int64_t n = 1;
    for (int32_t i = 0; i < rank; i++) {
        if (dims[i] < 0) return -1;
        if (ib__mul_overflow_i64(n, dims[i], &n) || n > IB_MAX_ELEMENTS) return -1;
    }
    return n;
}

int64_t ib_tensor_element_count(const ib_tensor *tensor) {
    if (!tensor || tensor->rank < 0 || tensor->rank > IB_MAX_RANK) return -1;
    return ib__shape_count(tensor->shape, tensor->rank);
}

void ib__strides(const int64_t *dims, int32_t rank, int64_t *strides) {
    int64_t s = 1;
    for (int32_t i = rank - 1; i >= 0; i--) {
        strides[i] = s;
        s *= dims[i];
    }
}

ib_status ib__tensor_alloc(ib_tensor *t, ib_dtype dtype, int32_t rank, const int64_t *dims) {
    if (rank < 0 || rank > IB_MAX_RANK)
        return ib__error(IB_ERR_UNSUPPORTED, "tensor rank %d exceeds the maximum of %d", rank,
                         IB_MAX_RANK);
    int64_t n = ib__shape_count(dims, rank);
    if (n < 0) return ib__error(IB_ERR_SHAPE, "tensor shape is negative or too large");
    size_t esize = ib_dtype_size(dtype);
    if (esize == 0)
        return ib__error(IB_ERR_UNSUPPORTED, "cannot allocate a tensor of dtype %s",
                         ib_dtype_name(dtype));
    size_t nbytes = (size_t)n * esize;
    void *data = ib__aligned_alloc(nbytes ? nbytes : 1);
    if (!data)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory allocating %zu bytes", nbytes);
    memset(data, 0, nbytes);
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->rank = rank;
    if (rank) memcpy(t->shape, dims, sizeof(int64_t) * (size_t)rank);
    t->data = data;
    t->nbytes = nbytes;
    t->owns_data = 1;
    return IB_OK;
}

void ib_tensor_release(ib_tensor *tensor) {
    if (!tensor) return;
    if (tensor->owns_data) ib__aligned_free(tensor->data);
    memset(tensor, 0, sizeof *tensor);
}
