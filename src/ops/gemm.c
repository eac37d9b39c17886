/* Matrix-product ops: Gemm, MatMul (numpy batching and broadcasting), MatMulInteger,
 * QLinearMatMul and Einsum. Float32 products go through the shared SGEMM (sgemm.h);
 * other dtypes through a double-precision loop. */
#include <math.h>
#include <string.h>

#include "ops/ops.h"
#include "ops/sgemm.h"

static bool is_float_type(ib_dtype dt) {
    return dt == IB_DTYPE_FLOAT32 || dt == IB_DTYPE_FLOAT64 || dt == IB_DTYPE_FLOAT16 ||
           dt == IB_DTYPE_BFLOAT16;
}

static bool is_matmul_type(ib_dtype dt) {
    return is_float_type(dt) || dt == IB_DTYPE_INT32 || dt == IB_DTYPE_INT64 ||
           dt == IB_DTYPE_UINT32 || dt == IB_DTYPE_UINT64;
}

/* Converts a whole tensor to doubles (caller frees with ib__aligned_free). */
static ib_status to_f64(const ib__node *node, const ib_tensor *t, double **out) {
    int64_t n = ib_tensor_element_count(t);
    if (n < 0) return ib__error(IB_ERR_SHAPE, "%s: bad input shape", ib__node_label(node));
    double *d = ib__aligned_alloc((size_t)(n ? n : 1) * sizeof(double));
    if (!d) return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(node));
    for (int64_t i = 0; i < n; i++) d[i] = ib__load_f64(t->data, t->dtype, i);
    *out = d;
    return IB_OK;
}

/* Double-precision product C[m x n] = A * B with strided A/B (generic dtypes). */
static void dgemm_ref(int64_t m, int64_t n, int64_t k, const double *a, int64_t a_rs, int64_t a_cs,
                      const double *b, int64_t b_rs, int64_t b_cs, double *c) {
    for (int64_t i = 0; i < m; i++) {
        double *crow = c + i * n;
        for (int64_t j = 0; j < n; j++) crow[j] = 0.0;
        for (int64_t p = 0; p < k; p++) {
            double av = a[i * a_rs + p * a_cs];
            const double *bp = b + p * b_rs;
            for (int64_t j = 0; j < n; j++) crow[j] += av * bp[j * b_cs];
        }
    }
}

/* =====================================================================================
 * Gemm
 * ===================================================================================== */

typedef struct gemm_attrs {
    int64_t trans_a, trans_b;
    float alpha, beta;
} gemm_attrs;

static ib_status gemm_read_attrs(const ib__node *node, gemm_attrs *g) {
    IB_TRY(ib__attr_int(node, "transA", 0, &g->trans_a));
    IB_TRY(ib__attr_int(node, "transB", 0, &g->trans_b));
    IB_TRY(ib__attr_float(node, "alpha", 1.0f, &g->alpha));
    IB_TRY(ib__attr_float(node, "beta", 1.0f, &g->beta));
    return IB_OK;
}

/* Whether dims (rank r) broadcast unidirectionally to [m, n]; unknown dims pass. */
static bool bias_broadcasts(int32_t r, const int64_t *d, int64_t m, int64_t n) {
    if (r > 2) return false;
    int64_t want[2] = {m, n};
    for (int32_t i = 0; i < r; i++) {
        int64_t x = d[i], w = want[2 - r + i];
        if (x < 0 || w < 0 || x == 1) continue;
        if (x != w) return false;
    }
    return true;
}

static ib_status infer_gemm(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *a = c->in[0], *b = c->in[1], *bias = ib__in(c, 2);
    gemm_attrs g;
    IB_TRY(gemm_read_attrs(c->node, &g));
    if (a->dtype != IB_DTYPE_UNDEFINED && !is_matmul_type(a->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: Gemm of %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(a->dtype));
    if (a->dtype != IB_DTYPE_UNDEFINED && b->dtype != IB_DTYPE_UNDEFINED && a->dtype != b->dtype)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: A is %s but B is %s", ib__node_label(c->node),
                         ib_dtype_name(a->dtype), ib_dtype_name(b->dtype));
    if ((a->rank >= 0 && a->rank != 2) || (b->rank >= 0 && b->rank != 2))
        return ib__error(IB_ERR_SHAPE, "%s: A and B must be 2-D (got ranks %d and %d)",
                         ib__node_label(c->node), a->rank, b->rank);
    int64_t m = -1, ka = -1, kb = -1, n = -1;
    if (a->rank == 2) {
        m = g.trans_a ? a->dims[1] : a->dims[0];
        ka = g.trans_a ? a->dims[0] : a->dims[1];
    }
    if (b->rank == 2) {
        kb = g.trans_b ? b->dims[1] : b->dims[0];
        n = g.trans_b ? b->dims[0] : b->dims[1];
    }
    if (ka >= 0 && kb >= 0 && ka != kb)
        return ib__error(IB_ERR_SHAPE, "%s: inner dimensions differ (A has %lld, B has %lld)",
                         ib__node_label(c->node), (long long)ka, (long long)kb);
    if (bias && bias->rank >= 0 && !bias_broadcasts(bias->rank, bias->dims, m, n))
        return ib__error(IB_ERR_SHAPE, "%s: C (rank %d) does not broadcast to [%lld, %lld]",
                         ib__node_label(c->node), bias->rank, (long long)m, (long long)n);
    int64_t dims[2] = {m, n};
    ib__set_output(c, 0, a->dtype, 2, dims);
    return IB_OK;
}

typedef struct fill_bias_job {
    const ib_tensor *bias;
    float *y;
    int64_t m, n;
} fill_bias_job;

static void fill_bias_range(void *ctx, int64_t begin, int64_t end) {
    const fill_bias_job *f = ctx;
    const ib_tensor *t = f->bias;
    const float *bd = t->data;
    int64_t bm = t->rank == 2 ? t->shape[0] : 1;
    int64_t bn = t->rank >= 1 ? t->shape[t->rank - 1] : 1;
    for (int64_t i = begin; i < end; i++) {
        const float *brow = bd + (bm == 1 ? 0 : i) * bn;
        float *yrow = f->y + i * f->n;
        if (bn == 1)
            for (int64_t j = 0; j < f->n; j++) yrow[j] = brow[0];
        else
            memcpy(yrow, brow, (size_t)f->n * sizeof(float));
    }
}

static ib_status run_gemm(ib__run_ctx *c) {
    const ib_tensor *a = c->in[0], *b = c->in[1];
    const ib_tensor *bias = c->n_in > 2 ? c->in[2] : NULL;
    ib_tensor *y = c->out[0];
    gemm_attrs g;
    IB_TRY(gemm_read_attrs(c->node, &g));
    int64_t m = y->shape[0], n = y->shape[1];
    int64_t k = g.trans_a ? a->shape[0] : a->shape[1];
    if (a->rank != 2 || b->rank != 2 || y->rank != 2 || a->dtype != b->dtype)
        return ib__error(IB_ERR_SHAPE, "%s: A and B must be 2-D of one type",
                         ib__node_label(c->node));
    if (bias && bias->dtype != a->dtype)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: C is %s, A is %s", ib__node_label(c->node),
                         ib_dtype_name(bias->dtype), ib_dtype_name(a->dtype));
    if (bias && !bias_broadcasts(bias->rank, bias->shape, m, n))
        return ib__error(IB_ERR_SHAPE, "%s: C does not broadcast to [%lld, %lld]",
                         ib__node_label(c->node), (long long)m, (long long)n);
    bool use_bias = bias && g.beta != 0.0f && ib_tensor_element_count(bias) > 0;
    if (a->dtype == IB_DTYPE_FLOAT32) {
        if (use_bias) {
            fill_bias_job f = {bias, y->data, m, n};
            ib__parallel_for(c->pool, m, fill_bias_range, &f);
        }
        ib__sgemm_shape s = {m,
                             n,
                             k,
                             g.alpha,
                             use_bias ? g.beta : 0.0f,
                             g.trans_a ? 1 : k,
                             g.trans_a ? m : 1,
                             g.trans_b ? 1 : n,
                             g.trans_b ? k : 1,
                             n};
        return ib__sgemm(c->pool, &s, a->data, b->data, y->data);
    }
    double *da = NULL, *db = NULL, *dc = NULL;
    ib_status st = to_f64(c->node, a, &da);
    if (st == IB_OK) st = to_f64(c->node, b, &db);
    if (st == IB_OK) {
        dc = ib__aligned_alloc((size_t)(m * n > 0 ? m * n : 1) * sizeof(double));
        if (!dc) st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    }
    if (st == IB_OK) {
        dgemm_ref(m, n, k, da, g.trans_a ? 1 : k, g.trans_a ? m : 1, db, g.trans_b ? 1 : n,
                  g.trans_b ? k : 1, dc);
        int64_t bm = use_bias && bias->rank == 2 ? bias->shape[0] : 1;
        int64_t bn = use_bias && bias->rank >= 1 ? bias->shape[bias->rank - 1] : 1;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double v = (double)g.alpha * dc[i * n + j];
                if (use_bias)
                    v += (double)g.beta * ib__load_f64(bias->data, bias->dtype,
                                                       (bm == 1 ? 0 : i) * bn + (bn == 1 ? 0 : j));
                ib__store_f64(y->data, y->dtype, i * n + j, v);
            }
    }
    ib__aligned_free(da);
    ib__aligned_free(db);
    ib__aligned_free(dc);
    return st;
}

/* =====================================================================================
 * MatMul family: numpy matmul shapes (1-D promotion, broadcast batch dims)
 * ===================================================================================== */

/* Output shape of matmul(A, B) from the two (possibly partly unknown) shapes. */
static ib_status matmul_shape(const ib__node *node, int32_t ra, const int64_t *da, int32_t rb,
                              const int64_t *db, int32_t *out_rank, int64_t *out_dims) {
    if (ra < 1 || rb < 1)
        return ib__error(IB_ERR_SHAPE, "%s: inputs must have rank >= 1 (got %d and %d)",
                         ib__node_label(node), ra, rb);
    int64_t ka = da[ra - 1];
    int64_t kb = rb == 1 ? db[0] : db[rb - 2];
    if (ka >= 0 && kb >= 0 && ka != kb)
        return ib__error(IB_ERR_SHAPE, "%s: inner dimensions differ (A has %lld, B has %lld)",
                         ib__node_label(node), (long long)ka, (long long)kb);
    int32_t ba = ra > 2 ? ra - 2 : 0, bb = rb > 2 ? rb - 2 : 0;
    int32_t nb = ba > bb ? ba : bb;
    int32_t r = 0;
    for (int32_t i = 0; i < nb; i++) {
        int32_t ia = i - (nb - ba), ib = i - (nb - bb);
        int64_t x = ia >= 0 ? da[ia] : 1, z = ib >= 0 ? db[ib] : 1;
        int64_t d;
        if (x == 1)
            d = z;
        else if (z == 1)
            d = x;
        else if (x < 0 || z < 0)
            d = x < 0 ? z : x; /* a known non-1 dim decides */
        else if (x == z)
            d = x;
        else
            return ib__error(IB_ERR_SHAPE, "%s: batch dims do not broadcast (%lld vs %lld)",
                             ib__node_label(node), (long long)x, (long long)z);
        if (x < 0 && z < 0) d = -1;
        out_dims[r++] = d;
    }
    if (ra >= 2) out_dims[r++] = da[ra - 2];
    if (rb >= 2) out_dims[r++] = db[rb - 1];
    if (r > IB_MAX_RANK)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: output rank %d is too large",
                         ib__node_label(node), r);
    *out_rank = r;
    return IB_OK;
}

static ib_status infer_matmul_common(ib__infer_ctx *c, int32_t ia, int32_t ib, ib_dtype out_dt) {
    const ib__value *a = c->in[ia], *b = c->in[ib];
    if (a->rank < 0 || b->rank < 0) {
        ib__set_output(c, 0, out_dt, -1, NULL);
        return IB_OK;
    }
    int32_t r = 0;
    int64_t dims[IB_MAX_RANK + 2];
    IB_TRY(matmul_shape(c->node, a->rank, a->dims, b->rank, b->dims, &r, dims));
    ib__set_output(c, 0, out_dt, r, dims);
    return IB_OK;
}

static ib_status infer_matmul(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *a = c->in[0], *b = c->in[1];
    if (a->dtype != IB_DTYPE_UNDEFINED && !is_matmul_type(a->dtype))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: MatMul of %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(a->dtype));
    if (a->dtype != IB_DTYPE_UNDEFINED && b->dtype != IB_DTYPE_UNDEFINED && a->dtype != b->dtype)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: A is %s but B is %s", ib__node_label(c->node),
                         ib_dtype_name(a->dtype), ib_dtype_name(b->dtype));
    return infer_matmul_common(c, 0, 1, a->dtype);
}

/* The batch decomposition of a matmul over actual tensors: `batch` products of
 * m x k by k x n, with element offsets of each product's A, B and C. */
typedef struct mm_plan {
    int64_t batch, m, n, k;
    int64_t *a_off, *b_off, *c_off;
} mm_plan;

static void mm_plan_free(mm_plan *p) {
    ib__free(p->a_off);
    ib__free(p->b_off);
    ib__free(p->c_off);
}

static ib_status mm_plan_make(const ib__node *node, const ib_tensor *a, const ib_tensor *b,
                              mm_plan *p) {
    memset(p, 0, sizeof *p);
    int32_t ra = a->rank, rb = b->rank;
    if (ra < 1 || rb < 1)
        return ib__error(IB_ERR_SHAPE, "%s: inputs must have rank >= 1", ib__node_label(node));
    p->k = a->shape[ra - 1];
    p->m = ra >= 2 ? a->shape[ra - 2] : 1;
    p->n = rb >= 2 ? b->shape[rb - 1] : 1;
    int64_t kb = rb >= 2 ? b->shape[rb - 2] : b->shape[0];
    if (kb != p->k)
        return ib__error(IB_ERR_SHAPE, "%s: inner dimensions differ (A has %lld, B has %lld)",
                         ib__node_label(node), (long long)p->k, (long long)kb);
    int32_t ba = ra > 2 ? ra - 2 : 0, bb = rb > 2 ? rb - 2 : 0;
    int32_t nb = ba > bb ? ba : bb;
    int64_t bdims[IB_MAX_RANK], sa[IB_MAX_RANK], sb[IB_MAX_RANK];
    int64_t a_mat = p->m * p->k, b_mat = p->k * p->n;
    int64_t batch = 1;
    /* Strides (in whole matrices) of each batch dim in A and B; 0 where broadcast. */
    int64_t stride_a = 1, stride_b = 1;
    for (int32_t i = nb - 1; i >= 0; i--) {
        int32_t ia = i - (nb - ba), ib = i - (nb - bb);
        int64_t x = ia >= 0 ? a->shape[ia] : 1, z = ib >= 0 ? b->shape[ib] : 1;
        if (x != z && x != 1 && z != 1)
            return ib__error(IB_ERR_SHAPE, "%s: batch dims do not broadcast (%lld vs %lld)",
                             ib__node_label(node), (long long)x, (long long)z);
        bdims[i] = x == 1 ? z : x;
        sa[i] = x == 1 ? 0 : stride_a;
        sb[i] = z == 1 ? 0 : stride_b;
        stride_a *= x;
        stride_b *= z;
        batch *= bdims[i];
    }
    p->batch = batch;
    if (batch == 0) return IB_OK;
    p->a_off = ib__calloc((size_t)batch, sizeof(int64_t));
    p->b_off = ib__calloc((size_t)batch, sizeof(int64_t));
    p->c_off = ib__calloc((size_t)batch, sizeof(int64_t));
    if (!p->a_off || !p->b_off || !p->c_off) {
        mm_plan_free(p);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(node));
    }
    for (int64_t t = 0; t < batch; t++) {
        int64_t rem = t, oa = 0, ob = 0;
        for (int32_t i = nb - 1; i >= 0; i--) {
            int64_t idx = rem % bdims[i];
            rem /= bdims[i];
            oa += idx * sa[i];
            ob += idx * sb[i];
        }
        p->a_off[t] = oa * a_mat;
        p->b_off[t] = ob * b_mat;
        p->c_off[t] = t * p->m * p->n;
    }
    return IB_OK;
}

static ib_status run_matmul(ib__run_ctx *c) {
    const ib_tensor *a = c->in[0], *b = c->in[1];
    ib_tensor *y = c->out[0];
    mm_plan p;
    IB_TRY(mm_plan_make(c->node, a, b, &p));
    ib_status st = IB_OK;
    if (p.batch == 0 || p.m == 0 || p.n == 0) {
        mm_plan_free(&p);
        return IB_OK;
    }
    if (a->dtype == IB_DTYPE_FLOAT32) {
        ib__sgemm_shape s = {p.m, p.n, p.k, 1.0f, 0.0f, p.k, 1, p.n, 1, p.n};
        /* A shared B with A's batches contiguous: one tall product instead of many. */
        bool b_shared = true, a_contig = true;
        for (int64_t t = 0; t < p.batch; t++) {
            if (p.b_off[t] != p.b_off[0]) b_shared = false;
            if (p.a_off[t] != t * p.m * p.k) a_contig = false;
        }
        if (b_shared && a_contig) {
            s.m = p.m * p.batch;
            st = ib__sgemm(c->pool, &s, a->data, (const float *)b->data + p.b_off[0], y->data);
        } else {
            st = ib__sgemm_batched(c->pool, &s, p.batch, a->data, p.a_off, b->data, p.b_off,
                                   y->data, p.c_off);
        }
        mm_plan_free(&p);
        return st;
    }
    double *da = NULL, *db = NULL, *dc = NULL;
    st = to_f64(c->node, a, &da);
    if (st == IB_OK) st = to_f64(c->node, b, &db);
    if (st == IB_OK) {
        dc = ib__aligned_alloc((size_t)(p.m * p.n) * sizeof(double));
        if (!dc) st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
    }
    for (int64_t t = 0; st == IB_OK && t < p.batch; t++) {
        dgemm_ref(p.m, p.n, p.k, da + p.a_off[t], p.k, 1, db + p.b_off[t], p.n, 1, dc);
        for (int64_t i = 0; i < p.m * p.n; i++)
            ib__store_f64(y->data, y->dtype, p.c_off[t] + i, dc[i]);
    }
    ib__aligned_free(da);
    ib__aligned_free(db);
    ib__aligned_free(dc);
    mm_plan_free(&p);
    return st;
}

/* ---- Integer products (MatMulInteger, QLinearMatMul) ------------------------------- */

static bool is_q8(ib_dtype dt) {
    return dt == IB_DTYPE_UINT8 || dt == IB_DTYPE_INT8;
}

/* Reads a zero point / scale tensor that is either a scalar or a vector of `want`
 * elements (per row of A / per column of B). */
static ib_status per_axis_count(const ib__node *node, const ib_tensor *t, const char *what,
                                int64_t want, int64_t *count) {
    int64_t n = ib_tensor_element_count(t);
    if (n == 1 || (n == want && t->rank == 1)) {
        *count = n;
        return IB_OK;
    }
    return ib__error(IB_ERR_SHAPE, "%s: %s must be a scalar or hold %lld values (has %lld)",
                     ib__node_label(node), what, (long long)want, (long long)n);
}

/* Integer matmul: acc[t][i][j] = sum_p (A - za[i]) * (B - zb[j]), exact in int32. */
typedef struct imm_job {
    const mm_plan *p;
    const ib_tensor *a, *b, *za, *zb;
    int64_t nza, nzb;
    int32_t *acc;
} imm_job;

static void imm_range(void *ctx, int64_t begin, int64_t end) {
    const imm_job *j = ctx;
    const mm_plan *p = j->p;
    for (int64_t r = begin; r < end; r++) {
        int64_t t = r / p->m, i = r % p->m;
        int32_t za =
            j->za ? (int32_t)ib__load_i64(j->za->data, j->za->dtype, j->nza == 1 ? 0 : i) : 0;
        int32_t *crow = j->acc + p->c_off[t] + i * p->n;
        for (int64_t q = 0; q < p->n; q++) crow[q] = 0;
        const int64_t a0 = p->a_off[t] + i * p->k;
        for (int64_t k = 0; k < p->k; k++) {
            int32_t av = (int32_t)ib__load_i64(j->a->data, j->a->dtype, a0 + k) - za;
            if (av == 0) continue;
            const int64_t b0 = p->b_off[t] + k * p->n;
            if (j->b->dtype == IB_DTYPE_UINT8) {
                const uint8_t *brow = (const uint8_t *)j->b->data + b0;
                for (int64_t q = 0; q < p->n; q++) crow[q] += av * (int32_t)brow[q];
            } else {
                const int8_t *brow = (const int8_t *)j->b->data + b0;
                for (int64_t q = 0; q < p->n; q++) crow[q] += av * (int32_t)brow[q];
            }
        }
        /* Subtracting B's zero point afterwards: sum_p a'(b - zb) = sum_p a'b - zb sum_p a'. */
        if (j->zb) {
            int32_t asum = 0;
            for (int64_t k = 0; k < p->k; k++)
                asum += (int32_t)ib__load_i64(j->a->data, j->a->dtype, a0 + k) - za;
            for (int64_t q = 0; q < p->n; q++) {
                int32_t zb = (int32_t)ib__load_i64(j->zb->data, j->zb->dtype, j->nzb == 1 ? 0 : q);
                crow[q] -= zb * asum;
            }
        }
    }
}

static ib_status integer_matmul(ib__run_ctx *c, const ib_tensor *a, const ib_tensor *b,
                                const ib_tensor *za, const ib_tensor *zb, mm_plan *p,
                                int32_t *acc) {
    imm_job j = {p, a, b, za, zb, 1, 1, acc};
    if (za) IB_TRY(per_axis_count(c->node, za, "the zero point of A", p->m, &j.nza));
    if (zb) IB_TRY(per_axis_count(c->node, zb, "the zero point of B", p->n, &j.nzb));
    if ((za && za->dtype != a->dtype) || (zb && zb->dtype != b->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: a zero point's type differs from its input's",
                         ib__node_label(c->node));
    ib__parallel_for(c->pool, p->batch * p->m, imm_range, &j);
    return IB_OK;
}

static ib_status infer_matmul_integer(ib__infer_ctx *c) {
    IB_TRY(ib__require_input(c, 0));
    IB_TRY(ib__require_input(c, 1));
    const ib__value *a = c->in[0], *b = c->in[1];
    if ((a->dtype != IB_DTYPE_UNDEFINED && !is_q8(a->dtype)) ||
        (b->dtype != IB_DTYPE_UNDEFINED && !is_q8(b->dtype)))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: inputs must be int8 or uint8 (got %s, %s)",
                         ib__node_label(c->node), ib_dtype_name(a->dtype), ib_dtype_name(b->dtype));
    return infer_matmul_common(c, 0, 1, IB_DTYPE_INT32);
}

static ib_status run_matmul_integer(ib__run_ctx *c) {
    const ib_tensor *a = c->in[0], *b = c->in[1];
    const ib_tensor *za = c->n_in > 2 ? c->in[2] : NULL, *zb = c->n_in > 3 ? c->in[3] : NULL;
    mm_plan p;
    IB_TRY(mm_plan_make(c->node, a, b, &p));
    ib_status st = IB_OK;
    if (p.batch > 0 && p.m > 0 && p.n > 0)
        st = integer_matmul(c, a, b, za, zb, &p, c->out[0]->data);
    mm_plan_free(&p);
    return st;
}

static ib_status infer_qlinear_matmul(ib__infer_ctx *c) {
    for (int32_t i = 0; i < 8; i++) IB_TRY(ib__require_input(c, i));
    const ib__value *a = c->in[0], *b = c->in[3], *yz = c->in[7];
    if ((a->dtype != IB_DTYPE_UNDEFINED && !is_q8(a->dtype)) ||
        (b->dtype != IB_DTYPE_UNDEFINED && !is_q8(b->dtype)) ||
        (yz->dtype != IB_DTYPE_UNDEFINED && !is_q8(yz->dtype)))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: quantized inputs must be int8 or uint8",
                         ib__node_label(c->node));
    return infer_matmul_common(c, 0, 3, yz->dtype);
}

/* Saturating cast of a rounded value to the 8-bit output type. */
static void store_q8(void *data, ib_dtype dt, int64_t i, double v) {
    double lo = dt == IB_DTYPE_UINT8 ? 0.0 : -128.0, hi = dt == IB_DTYPE_UINT8 ? 255.0 : 127.0;
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    if (dt == IB_DTYPE_UINT8)
        ((uint8_t *)data)[i] = (uint8_t)v;
    else
        ((int8_t *)data)[i] = (int8_t)v;
}

static ib_status run_qlinear_matmul(ib__run_ctx *c) {
    const ib_tensor *a = c->in[0], *as = c->in[1], *az = c->in[2];
    const ib_tensor *b = c->in[3], *bs = c->in[4], *bz = c->in[5];
    const ib_tensor *ys = c->in[6], *yz = c->in[7];
    ib_tensor *y = c->out[0];
    if (ib_tensor_element_count(ys) != 1 || ib_tensor_element_count(yz) != 1)
        return ib__error(IB_ERR_SHAPE, "%s: y_scale and y_zero_point must be scalars",
                         ib__node_label(c->node));
    if (!is_float_type(as->dtype) || !is_float_type(bs->dtype) || !is_float_type(ys->dtype))
        return ib__error(IB_ERR_INVALID_MODEL, "%s: scales must be float tensors",
                         ib__node_label(c->node));
    mm_plan p;
    IB_TRY(mm_plan_make(c->node, a, b, &p));
    int64_t nas = 1, nbs = 1;
    ib_status st = per_axis_count(c->node, as, "a_scale", p.m, &nas);
    if (st == IB_OK) st = per_axis_count(c->node, bs, "b_scale", p.n, &nbs);
    int64_t total = p.batch * p.m * p.n;
    int32_t *acc = NULL;
    if (st == IB_OK && total > 0) {
        acc = ib__aligned_alloc((size_t)total * sizeof(int32_t));
        if (!acc)
            st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
        if (st == IB_OK) st = integer_matmul(c, a, b, az, bz, &p, acc);
    }
    if (st == IB_OK && total > 0) {
        double y_scale = ib__load_f64(ys->data, ys->dtype, 0);
        double y_zero = (double)ib__load_i64(yz->data, yz->dtype, 0);
        if (!(y_scale != 0.0))
            st = ib__error(IB_ERR_INVALID_MODEL, "%s: y_scale is zero", ib__node_label(c->node));
        for (int64_t e = 0; st == IB_OK && e < total; e++) {
            int64_t q = e % p.n, i = (e / p.n) % p.m;
            double scale = ib__load_f64(as->data, as->dtype, nas == 1 ? 0 : i) *
                           ib__load_f64(bs->data, bs->dtype, nbs == 1 ? 0 : q);
            /* rounding half to even, as numpy's rint in the reference */
            store_q8(y->data, y->dtype, e, nearbyint((double)acc[e] * scale / y_scale) + y_zero);
        }
    }
    ib__aligned_free(acc);
    mm_plan_free(&p);
    return st;
}

/* =====================================================================================
 * Einsum
 * ===================================================================================== */

#define EIN_MAX_OPS    8
#define EIN_LETTERS    52 /* a-z, A-Z; ellipsis dims get labels after these */
#define EIN_MAX_LABELS (EIN_LETTERS + IB_MAX_RANK)

typedef struct ein_term {
    int32_t n;                       /* subscripts written, "..." counting as one */
    int32_t labels[IB_MAX_RANK + 1]; /* label id per subscript, -1 for the ellipsis */
    bool has_ellipsis;
} ein_term;

typedef struct ein_eq {
    int32_t n_ops;
    ein_term in[EIN_MAX_OPS];
    ein_term out;
    bool explicit_out;
} ein_eq;

static int32_t ein_label(char ch) {
    if (ch >= 'a' && ch <= 'z') return ch - 'a';
    if (ch >= 'A' && ch <= 'Z') return 26 + (ch - 'A');
    return -1;
}

static ib_status ein_parse_term(const ib__node *node, const char *s, size_t len, ein_term *t) {
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < len;) {
        char ch = s[i];
        if (ch == ' ') {
            i++;
            continue;
        }
        if (ch == '.') {
            if (i + 2 >= len || s[i + 1] != '.' || s[i + 2] != '.' || t->has_ellipsis)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: malformed ellipsis in equation",
                                 ib__node_label(node));
            if (t->n >= IB_MAX_RANK + 1)
                return ib__error(IB_ERR_UNSUPPORTED,
                                 "%s: an equation term has too many "
                                 "subscripts",
                                 ib__node_label(node));
            t->has_ellipsis = true;
            t->labels[t->n++] = -1;
            i += 3;
            continue;
        }
        int32_t l = ein_label(ch);
        if (l < 0)
            return ib__error(IB_ERR_INVALID_MODEL, "%s: invalid character '%c' in equation",
                             ib__node_label(node), ch);
        if (t->n >= IB_MAX_RANK + 1)
            return ib__error(IB_ERR_UNSUPPORTED, "%s: an equation term has too many subscripts",
                             ib__node_label(node));
        t->labels[t->n++] = l;
        i++;
    }
    return IB_OK;
}

static ib_status ein_parse(const ib__node *node, ein_eq *eq) {
    const char *s = NULL;
    IB_TRY(ib__attr_string(node, "equation", NULL, &s));
    if (!s)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: attribute 'equation' is missing",
                         ib__node_label(node));
    memset(eq, 0, sizeof *eq);
    const char *arrow = strstr(s, "->");
    size_t lhs_len = arrow ? (size_t)(arrow - s) : strlen(s);
    size_t start = 0;
    for (size_t i = 0; i <= lhs_len; i++) {
        if (i == lhs_len || s[i] == ',') {
            if (eq->n_ops >= EIN_MAX_OPS)
                return ib__error(IB_ERR_UNSUPPORTED, "%s: more than %d Einsum operands",
                                 ib__node_label(node), EIN_MAX_OPS);
            IB_TRY(ein_parse_term(node, s + start, i - start, &eq->in[eq->n_ops++]));
            start = i + 1;
        }
    }
    if (arrow) {
        eq->explicit_out = true;
        IB_TRY(ein_parse_term(node, arrow + 2, strlen(arrow + 2), &eq->out));
        bool seen[EIN_LETTERS] = {false};
        for (int32_t i = 0; i < eq->out.n; i++) {
            int32_t l = eq->out.labels[i];
            if (l < 0) continue;
            if (seen[l])
                return ib__error(IB_ERR_INVALID_MODEL, "%s: output subscript repeated",
                                 ib__node_label(node));
            seen[l] = true;
        }
    }
    return IB_OK;
}

/* The shape binding of an equation to operand shapes: a dim per label (letters, then
 * ellipsis dims), the output labels, and each operand's stride per label. */
typedef struct ein_bind {
    int32_t ell_rank;
    int64_t dim[EIN_MAX_LABELS]; /* -1 unknown, 0 unused label */
    bool used[EIN_MAX_LABELS];
    int32_t count[EIN_MAX_LABELS]; /* operands using the label */
    int32_t out_n;
    int32_t out_labels[EIN_MAX_LABELS];
} ein_bind;

/* Maps subscript position s of term t (operand rank r) to label ids: ellipsis dims are
 * right-aligned to the global ellipsis. Returns the number of dims written. */
static int32_t ein_expand(const ein_term *t, int32_t rank, int32_t ell_rank, int32_t *labels) {
    int32_t nd = 0;
    int32_t my_ell = rank - (t->n - (t->has_ellipsis ? 1 : 0));
    for (int32_t s = 0; s < t->n; s++) {
        if (t->labels[s] >= 0) {
            labels[nd++] = t->labels[s];
        } else {
            for (int32_t e = 0; e < my_ell; e++)
                labels[nd++] = EIN_LETTERS + (ell_rank - my_ell) + e;
        }
    }
    return nd;
}

/* ranks[i] / dims[i]: operand shapes (all ranks known). */
static ib_status ein_bind_shapes(const ib__node *node, const ein_eq *eq, const int32_t *ranks,
                                 const int64_t *const *dims, ein_bind *b) {
    memset(b, 0, sizeof *b);
    for (int32_t o = 0; o < eq->n_ops; o++) {
        const ein_term *t = &eq->in[o];
        int32_t letters = t->n - (t->has_ellipsis ? 1 : 0);
        int32_t ell = ranks[o] - letters;
        if (ell < 0 || (!t->has_ellipsis && ell != 0))
            return ib__error(IB_ERR_SHAPE,
                             "%s: operand %d has rank %d but the equation gives "
                             "it %d subscripts",
                             ib__node_label(node), o, ranks[o], letters);
        if (ell > b->ell_rank) b->ell_rank = ell;
    }
    for (int32_t l = 0; l < EIN_MAX_LABELS; l++) b->dim[l] = 1;
    for (int32_t o = 0; o < eq->n_ops; o++) {
        int32_t labels[IB_MAX_RANK];
        int32_t nd = ein_expand(&eq->in[o], ranks[o], b->ell_rank, labels);
        bool in_this[EIN_MAX_LABELS] = {false};
        for (int32_t d = 0; d < nd; d++) {
            int32_t l = labels[d];
            int64_t x = dims[o][d];
            if (!in_this[l]) b->count[l]++;
            in_this[l] = true;
            if (!b->used[l]) {
                b->used[l] = true;
                b->dim[l] = x;
                continue;
            }
            int64_t have = b->dim[l];
            if (x == have || x < 0) continue;
            if (have < 0) {
                b->dim[l] = x;
                continue;
            }
            if (l >= EIN_LETTERS && (x == 1 || have == 1)) { /* ellipsis dims broadcast */
                if (have == 1) b->dim[l] = x;
                continue;
            }
            return ib__error(IB_ERR_SHAPE, "%s: subscript '%c' has sizes %lld and %lld",
                             ib__node_label(node), l < 26 ? 'a' + l : (l < 52 ? 'A' + l - 26 : '.'),
                             (long long)have, (long long)x);
        }
    }
    for (int32_t e = 0; e < b->ell_rank; e++) b->used[EIN_LETTERS + e] = true;
    if (eq->explicit_out) {
        for (int32_t s = 0; s < eq->out.n; s++) {
            int32_t l = eq->out.labels[s];
            if (l < 0) {
                for (int32_t e = 0; e < b->ell_rank; e++)
                    b->out_labels[b->out_n++] = EIN_LETTERS + e;
                continue;
            }
            if (!b->used[l])
                return ib__error(IB_ERR_INVALID_MODEL,
                                 "%s: output subscript '%c' is not in any "
                                 "input",
                                 ib__node_label(node), l < 26 ? 'a' + l : 'A' + l - 26);
            b->out_labels[b->out_n++] = l;
        }
    } else {
        for (int32_t e = 0; e < b->ell_rank; e++) b->out_labels[b->out_n++] = EIN_LETTERS + e;
        /* implicit output: letters used exactly once, in ASCII order (upper case first) */
        for (int32_t pass = 0; pass < 2; pass++)
            for (int32_t i = 0; i < 26; i++) {
                int32_t l = pass == 0 ? 26 + i : i;
                int32_t uses = 0;
                for (int32_t o = 0; o < eq->n_ops; o++)
                    for (int32_t s = 0; s < eq->in[o].n; s++)
                        if (eq->in[o].labels[s] == l) uses++;
                if (uses == 1) b->out_labels[b->out_n++] = l;
            }
    }
    if (b->out_n > IB_MAX_RANK)
        return ib__error(IB_ERR_UNSUPPORTED, "%s: output rank %d is too large",
                         ib__node_label(node), b->out_n);
    return IB_OK;
}

static ib_status infer_einsum(ib__infer_ctx *c) {
    ein_eq eq;
    IB_TRY(ein_parse(c->node, &eq));
    if (eq.n_ops != c->n_in)
        return ib__error(IB_ERR_INVALID_MODEL,
                         "%s: the equation has %d operands but the node "
                         "has %d inputs",
                         ib__node_label(c->node), eq.n_ops, c->n_in);
    int32_t ranks[EIN_MAX_OPS];
    const int64_t *dims[EIN_MAX_OPS];
    ib_dtype dt = IB_DTYPE_UNDEFINED;
    bool all_known = true;
    for (int32_t o = 0; o < eq.n_ops; o++) {
        IB_TRY(ib__require_input(c, o));
        const ib__value *v = c->in[o];
        if (v->dtype != IB_DTYPE_UNDEFINED) {
            if (dt != IB_DTYPE_UNDEFINED && v->dtype != dt)
                return ib__error(IB_ERR_INVALID_MODEL, "%s: operands have different types",
                                 ib__node_label(c->node));
            dt = v->dtype;
        }
        ranks[o] = v->rank;
        dims[o] = v->dims;
        if (v->rank < 0) all_known = false;
    }
    if (dt != IB_DTYPE_UNDEFINED && !ib__dtype_is_float(dt) && !ib__dtype_is_integer(dt))
        return ib__error(IB_ERR_UNSUPPORTED, "%s: Einsum of %s is not supported",
                         ib__node_label(c->node), ib_dtype_name(dt));
    if (!all_known) {
        ib__set_output(c, 0, dt, -1, NULL);
        return IB_OK;
    }
    ein_bind b;
    IB_TRY(ein_bind_shapes(c->node, &eq, ranks, dims, &b));
    int64_t out_dims[IB_MAX_RANK];
    for (int32_t i = 0; i < b.out_n; i++) out_dims[i] = b.dim[b.out_labels[i]];
    ib__set_output(c, 0, dt, b.out_n, out_dims);
    return IB_OK;
}

/* Per-operand element stride of every label (summed over repeated subscripts, which
 * walks a diagonal; 0 for labels the operand lacks or broadcasts). */
static void ein_strides(const ein_eq *eq, const ein_bind *b, int32_t o, const ib_tensor *t,
                        int64_t *stride) {
    int32_t labels[IB_MAX_RANK];
    int32_t nd = ein_expand(&eq->in[o], t->rank, b->ell_rank, labels);
    int64_t st[IB_MAX_RANK];
    ib__strides(t->shape, t->rank, st);
    for (int32_t l = 0; l < EIN_MAX_LABELS; l++) stride[l] = 0;
    for (int32_t d = 0; d < nd; d++)
        if (t->shape[d] != 1) stride[labels[d]] += st[d];
}

typedef struct ein_general_job {
    int32_t n_ops;
    const ib_tensor *const *in;
    ib_tensor *out;
    int32_t n_out, n_sum;
    int64_t out_dims[IB_MAX_RANK], sum_dims[EIN_MAX_LABELS];
    int64_t out_stride[EIN_MAX_OPS][IB_MAX_RANK];
    int64_t sum_stride[EIN_MAX_OPS][EIN_MAX_LABELS];
    int64_t sum_total;
} ein_general_job;

static void ein_general_range(void *ctx, int64_t begin, int64_t end) {
    const ein_general_job *j = ctx;
    for (int64_t oi = begin; oi < end; oi++) {
        int64_t base[EIN_MAX_OPS] = {0};
        int64_t rem = oi;
        for (int32_t d = j->n_out - 1; d >= 0; d--) {
            int64_t idx = rem % j->out_dims[d];
            rem /= j->out_dims[d];
            for (int32_t o = 0; o < j->n_ops; o++) base[o] += idx * j->out_stride[o][d];
        }
        double acc = 0.0;
        int64_t sidx[EIN_MAX_LABELS] = {0};
        int64_t off[EIN_MAX_OPS];
        for (int32_t o = 0; o < j->n_ops; o++) off[o] = base[o];
        for (int64_t s = 0; s < j->sum_total; s++) {
            double prod = 1.0;
            for (int32_t o = 0; o < j->n_ops; o++)
                prod *= ib__load_f64(j->in[o]->data, j->in[o]->dtype, off[o]);
            acc += prod;
            /* odometer over the summed labels, updating offsets incrementally */
            for (int32_t d = j->n_sum - 1; d >= 0; d--) {
                sidx[d]++;
                for (int32_t o = 0; o < j->n_ops; o++) off[o] += j->sum_stride[o][d];
                if (sidx[d] < j->sum_dims[d]) break;
                for (int32_t o = 0; o < j->n_ops; o++)
                    off[o] -= j->sum_stride[o][d] * j->sum_dims[d];
                sidx[d] = 0;
            }
        }
        ib__store_f64(j->out->data, j->out->dtype, oi, acc);
    }
}

/* Copies src (strides per dim) into a contiguous dst of dims (n dims). */
static void gather_copy(float *dst, int32_t n, const int64_t *dims, const int64_t *strides,
                        const float *src) {
    int64_t total = 1;
    for (int32_t d = 0; d < n; d++) total *= dims[d];
    if (total == 0) return;
    int64_t idx[EIN_MAX_LABELS] = {0};
    int64_t inner = n > 0 ? dims[n - 1] : 1, inner_st = n > 0 ? strides[n - 1] : 0;
    int64_t off = 0;
    for (int64_t e = 0; e < total; e += inner) {
        for (int64_t i = 0; i < inner; i++) dst[e + i] = src[off + i * inner_st];
        for (int32_t d = n - 2; d >= 0; d--) {
            idx[d]++;
            off += strides[d];
            if (idx[d] < dims[d]) break;
            off -= strides[d] * dims[d];
            idx[d] = 0;
        }
    }
}

/* Two float32 operands whose every label is a batch (both + output), row (A + output),
 * column (B + output) or contracted (both, not output) label: permute into
 * [batch, m, k] and [batch, k, n], multiply with SGEMM, permute into the output. */
static ib_status ein_try_matmul(ib__run_ctx *c, const ein_eq *eq, const ein_bind *b, bool *done) {
    *done = false;
    if (eq->n_ops != 2 || c->in[0]->dtype != IB_DTYPE_FLOAT32) return IB_OK;
    int32_t la[IB_MAX_RANK], lb[IB_MAX_RANK];
    int32_t na = ein_expand(&eq->in[0], c->in[0]->rank, b->ell_rank, la);
    int32_t nb = ein_expand(&eq->in[1], c->in[1]->rank, b->ell_rank, lb);
    bool in_a[EIN_MAX_LABELS] = {false}, in_b[EIN_MAX_LABELS] = {false};
    bool in_o[EIN_MAX_LABELS] = {false};
    for (int32_t d = 0; d < na; d++) {
        if (in_a[la[d]]) return IB_OK; /* diagonal */
        in_a[la[d]] = true;
    }
    for (int32_t d = 0; d < nb; d++) {
        if (in_b[lb[d]]) return IB_OK;
        in_b[lb[d]] = true;
    }
    for (int32_t i = 0; i < b->out_n; i++) in_o[b->out_labels[i]] = true;
    int32_t bl[EIN_MAX_LABELS], ml[EIN_MAX_LABELS], nl[EIN_MAX_LABELS], kl[EIN_MAX_LABELS];
    int32_t nbat = 0, nm = 0, nn = 0, nk = 0;
    int64_t batch = 1, m = 1, n = 1, k = 1;
    for (int32_t l = 0; l < EIN_MAX_LABELS; l++) {
        if (!in_a[l] && !in_b[l]) continue;
        if (in_a[l] && in_b[l] && in_o[l]) {
            bl[nbat++] = l;
            batch *= b->dim[l];
        } else if (in_a[l] && !in_b[l] && in_o[l]) {
            ml[nm++] = l;
            m *= b->dim[l];
        } else if (in_b[l] && !in_a[l] && in_o[l]) {
            nl[nn++] = l;
            n *= b->dim[l];
        } else if (in_a[l] && in_b[l]) {
            kl[nk++] = l;
            k *= b->dim[l];
        } else {
            return IB_OK; /* summed within one operand */
        }
    }
    /* keep the output's order for batch, row and column labels: cheaper final copy */
    nbat = nm = nn = 0;
    for (int32_t i = 0; i < b->out_n; i++) {
        int32_t l = b->out_labels[i];
        if (in_a[l] && in_b[l])
            bl[nbat++] = l;
        else if (in_a[l])
            ml[nm++] = l;
        else
            nl[nn++] = l;
    }
    int64_t sa[EIN_MAX_LABELS], sb[EIN_MAX_LABELS];
    ein_strides(eq, b, 0, c->in[0], sa);
    ein_strides(eq, b, 1, c->in[1], sb);
    int64_t a_elems = batch * m * k, b_elems = batch * k * n, c_elems = batch * m * n;
    float *pa = ib__aligned_alloc((size_t)(a_elems ? a_elems : 1) * sizeof(float));
    float *pb = ib__aligned_alloc((size_t)(b_elems ? b_elems : 1) * sizeof(float));
    float *pc = ib__aligned_alloc((size_t)(c_elems ? c_elems : 1) * sizeof(float));
    int64_t *offs = ib__calloc((size_t)(batch ? batch : 1) * 3, sizeof(int64_t));
    ib_status st = IB_OK;
    if (!pa || !pb || !pc || !offs) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "%s: out of memory", ib__node_label(c->node));
        goto done;
    }
    int64_t dims[EIN_MAX_LABELS], strides[EIN_MAX_LABELS];
    int32_t nd = 0;
    for (int32_t i = 0; i < nbat; i++, nd++) dims[nd] = b->dim[bl[i]], strides[nd] = sa[bl[i]];
    for (int32_t i = 0; i < nm; i++, nd++) dims[nd] = b->dim[ml[i]], strides[nd] = sa[ml[i]];
    for (int32_t i = 0; i < nk; i++, nd++) dims[nd] = b->dim[kl[i]], strides[nd] = sa[kl[i]];
    gather_copy(pa, nd, dims, strides, c->in[0]->data);
    nd = 0;
    for (int32_t i = 0; i < nbat; i++, nd++) dims[nd] = b->dim[bl[i]], strides[nd] = sb[bl[i]];
    for (int32_t i = 0; i < nk; i++, nd++) dims[nd] = b->dim[kl[i]], strides[nd] = sb[kl[i]];
    for (int32_t i = 0; i < nn; i++, nd++) dims[nd] = b->dim[nl[i]], strides[nd] = sb[nl[i]];
    gather_copy(pb, nd, dims, strides, c->in[1]->data);
    for (int64_t t = 0; t < batch; t++) {
        offs[t] = t * m * k;
        offs[batch + t] = t * k * n;
        offs[2 * batch + t] = t * m * n;
    }
    ib__sgemm_shape s = {m, n, k, 1.0f, 0.0f, k, 1, n, 1, n};
    st = ib__sgemm_batched(c->pool, &s, batch, pa, offs, pb, offs + batch, pc, offs + 2 * batch);
    if (st != IB_OK) goto done;
    /* pc is [batch labels, m labels, n labels]; the output orders them its own way */
    {
        int64_t cst[EIN_MAX_LABELS];
        int64_t run = 1;
        for (int32_t i = nn - 1; i >= 0; i--) cst[nl[i]] = run, run *= b->dim[nl[i]];
        for (int32_t i = nm - 1; i >= 0; i--) cst[ml[i]] = run, run *= b->dim[ml[i]];
        for (int32_t i = nbat - 1; i >= 0; i--) cst[bl[i]] = run, run *= b->dim[bl[i]];
        for (int32_t i = 0; i < b->out_n; i++) {
            dims[i] = b->dim[b->out_labels[i]];
            strides[i] = cst[b->out_labels[i]];
        }
        gather_copy(c->out[0]->data, b->out_n, dims, strides, pc);
    }
    *done = true;
done:
    ib__aligned_free(pa);
    ib__aligned_free(pb);
    ib__aligned_free(pc);
    ib__free(offs);
    return st;
}

static ib_status run_einsum(ib__run_ctx *c) {
    ein_eq eq;
    IB_TRY(ein_parse(c->node, &eq));
    if (eq.n_ops != c->n_in)
        return ib__error(IB_ERR_INVALID_MODEL, "%s: operand count mismatch",
                         ib__node_label(c->node));
    int32_t ranks[EIN_MAX_OPS];
    const int64_t *dims[EIN_MAX_OPS];
    for (int32_t o = 0; o < eq.n_ops; o++) {
        ranks[o] = c->in[o]->rank;
        dims[o] = c->in[o]->shape;
    }
    ein_bind b;
    IB_TRY(ein_bind_shapes(c->node, &eq, ranks, dims, &b));
    if (ib_tensor_element_count(c->out[0]) == 0) return IB_OK;
    bool done;
    IB_TRY(ein_try_matmul(c, &eq, &b, &done));
    if (done) return IB_OK;

    ein_general_job j;
    memset(&j, 0, sizeof j);
    j.n_ops = eq.n_ops;
    j.in = c->in;
    j.out = c->out[0];
    j.n_out = b.out_n;
    bool is_out[EIN_MAX_LABELS] = {false};
    int64_t st[EIN_MAX_OPS][EIN_MAX_LABELS];
    for (int32_t o = 0; o < eq.n_ops; o++) ein_strides(&eq, &b, o, c->in[o], st[o]);
    for (int32_t i = 0; i < b.out_n; i++) {
        int32_t l = b.out_labels[i];
        is_out[l] = true;
        j.out_dims[i] = b.dim[l];
        for (int32_t o = 0; o < eq.n_ops; o++) j.out_stride[o][i] = st[o][l];
    }
    j.sum_total = 1;
    int64_t work = ib_tensor_element_count(c->out[0]);
    for (int32_t l = 0; l < EIN_MAX_LABELS; l++) {
        if (!b.used[l] || is_out[l]) continue;
        j.sum_dims[j.n_sum] = b.dim[l];
        for (int32_t o = 0; o < eq.n_ops; o++) j.sum_stride[o][j.n_sum] = st[o][l];
        /* the loop visits every label combination: refuse what would run for hours */
        if (ib__mul_overflow_i64(j.sum_total, b.dim[l], &j.sum_total) ||
            ib__mul_overflow_i64(work, b.dim[l], &work) || work > ((int64_t)1 << 36))
            return ib__error(IB_ERR_UNSUPPORTED,
                             "%s: this contraction is too large for the "
                             "general Einsum loop",
                             ib__node_label(c->node));
        j.n_sum++;
    }
    ib__parallel_for(c->pool, ib_tensor_element_count(c->out[0]), ein_general_range, &j);
    return IB_OK;
}

const ib__op_def ib__ops_gemm[] = {
    {IB_OP_GEMM, infer_gemm, run_gemm, false},
    {IB_OP_MAT_MUL, infer_matmul, run_matmul, false},
    {IB_OP_MAT_MUL_INTEGER, infer_matmul_integer, run_matmul_integer, false},
    {IB_OP_Q_LINEAR_MAT_MUL, infer_qlinear_matmul, run_qlinear_matmul, false},
    {IB_OP_EINSUM, infer_einsum, run_einsum, false},
    {IB_OP_UNKNOWN, NULL, NULL, false},
};
