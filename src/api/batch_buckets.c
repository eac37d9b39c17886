/* Batch buckets (see batch_buckets.h): which buckets a model gets, how a batch splits
 * into pieces, and the run that feeds each piece a slice of the inputs (dim 0 is the
 * outermost, so a slice of rows is one contiguous range) and lets it write a slice of
 * the outputs in place. A padded piece runs on copies (zero rows after the real ones). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/batch_buckets.h"
#include "passes/batch_separable.h"

ib_status ib__buckets_configure(const ib__graph *g, ib__buckets *out) {
    memset(out, 0, sizeof *out);
    ib__bucket_mode mode = IB_BUCKETS_SPLIT;
    int64_t max = IB_BUCKETS_DEFAULT_MAX;
    const char *env = getenv("INFERBOOSTER_BATCH_BUCKETS");
    if (env && env[0]) {
        if (strncmp(env, "off", 3) == 0 || strcmp(env, "0") == 0) {
            snprintf(out->reason, sizeof out->reason, "INFERBOOSTER_BATCH_BUCKETS=%s", env);
            return IB_OK;
        }
        if (strncmp(env, "pad", 3) == 0) mode = IB_BUCKETS_PAD;
        const char *colon = strchr(env, ':');
        if (colon) {
            char *end = NULL;
            long long m = strtoll(colon + 1, &end, 10);
            if (end != colon + 1 && *end == '\0' && m >= 1 && m <= IB_BUCKETS_MAX_LIMIT) {
                max = 1;
                while (max * 2 <= m) max *= 2; /* the largest power of two <= m */
            }
        }
    }
    ib__batch_verdict v;
    IB_TRY(ib__batch_analyze(g, &v));
    if (!v.separable) {
        snprintf(out->reason, sizeof out->reason, "%s", v.reason);
        return IB_OK;
    }
    out->mode = mode;
    out->max = max;
    return IB_OK;
}

bool ib__buckets_for_model(const ib_model *m, ib__buckets *out) {
    memset(out, 0, sizeof *out);
    if (!ib__model_has_symbolic_batch(m)) return false;
    if (ib__buckets_configure(m->graph, out) != IB_OK) {
        snprintf(out->reason, sizeof out->reason, "%s", ib_last_error());
        ib__error_clear();
    }
    return true;
}

void ib__buckets_describe(const ib__buckets *b, char *buf, size_t len) {
    if (!len) return;
    if (b->mode == IB_BUCKETS_OFF) {
        snprintf(buf, len, "off (%s)", b->reason[0] ? b->reason : "no symbolic batch");
        return;
    }
    size_t used = 0;
    buf[0] = '\0';
    for (int64_t s = 1; s <= b->max && used < len; s *= 2) {
        int k = snprintf(buf + used, len - used, "%s%lld", s > 1 ? "," : "", (long long)s);
        if (k < 0) return;
        used += (size_t)k;
    }
    if (used < len)
        snprintf(buf + used, len - used, " (%s)", b->mode == IB_BUCKETS_PAD ? "pad" : "split");
}

static bool power_of_two(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

bool ib__buckets_direct(const ib__buckets *b, int64_t n) {
    return b->mode == IB_BUCKETS_OFF || (power_of_two(n) && n <= b->max);
}

int32_t ib__buckets_pieces(const ib__buckets *b, int64_t n, ib__bucket_piece *out) {
    if (n < 1) return 0;
    if (ib__buckets_direct(b, n)) {
        out[0] = (ib__bucket_piece){n, n, 1};
        return 1;
    }
    int32_t k = 0;
    if (n > b->max) { /* whole maximum-sized pieces first */
        out[k++] = (ib__bucket_piece){b->max, b->max, n / b->max};
        n %= b->max;
    }
    if (n == 0) return k;
    if (b->mode == IB_BUCKETS_PAD) {
        int64_t s = 1;
        while (s < n) s *= 2;
        out[k++] = (ib__bucket_piece){n, s, 1};
        return k;
    }
    for (int64_t s = b->max; s >= 1; s /= 2) /* n's binary digits, largest first */
        if (n & s) out[k++] = (ib__bucket_piece){s, s, 1};
    return k;
}

/* Bytes of one sample (dims 1..) of a tensor of this dtype and shape; -1 on overflow. */
static int64_t row_bytes(ib_dtype dtype, int32_t rank, const int64_t *dims) {
    int64_t n = (int64_t)ib_dtype_size(dtype);
    for (int32_t d = 1; d < rank; d++) {
        if (dims[d] < 0 || (dims[d] && n > INT64_MAX / dims[d])) return -1;
        n *= dims[d];
    }
    return n;
}

typedef struct piece_io {
    ib_tensor *in;       /* per input: the view (or padded copy) a piece reads */
    ib_tensor *out;      /* per requested output: the view (or padded copy) it writes */
    int64_t *in_row;     /* bytes per sample */
    int64_t *out_row;
    uint8_t *owned;      /* per requested output: allocated here (released on failure) */
} piece_io;

static void piece_io_free(piece_io *p) {
    ib__free(p->in);
    ib__free(p->out);
    ib__free(p->in_row);
    ib__free(p->out_row);
    ib__free(p->owned);
}

/* Runs rows [first, first + rows) on rt (compiled for `bucket` rows). */
static ib_status run_piece(ib__rt_model *rt, ib__pool *pool, piece_io *io, int64_t first,
                           int64_t rows, int64_t bucket, size_t n_inputs,
                           const char *const *input_names, const ib_tensor *inputs,
                           size_t n_outputs, const char *const *output_names,
                           ib_tensor *outputs) {
    bool padded = rows != bucket;
    ib_status st = IB_OK;
    for (size_t i = 0; i < n_inputs; i++) {
        ib_tensor *t = &io->in[i];
        *t = inputs[i];
        t->shape[0] = bucket;
        t->owns_data = 0;
        t->nbytes = (size_t)(bucket * io->in_row[i]);
        unsigned char *src = inputs[i].data;
        if (src) src += first * io->in_row[i];
        if (!padded) {
            t->data = src;
            continue;
        }
        t->data = ib__calloc(1, t->nbytes ? t->nbytes : 1);
        if (!t->data) {
            st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory padding a batch");
            break;
        }
        t->owns_data = 1;
        if (src && io->in_row[i] > 0) memcpy(t->data, src, (size_t)(rows * io->in_row[i]));
    }
    for (size_t r = 0; r < n_outputs && st == IB_OK; r++) {
        ib_tensor *t = &io->out[r];
        memset(t, 0, sizeof *t);
        t->dtype = outputs[r].dtype;
        t->nbytes = (size_t)(bucket * io->out_row[r]);
        unsigned char *dst = outputs[r].data;
        if (dst) dst += first * io->out_row[r];
        if (!padded) {
            t->data = dst;
            continue;
        }
        t->data = ib__malloc(t->nbytes ? t->nbytes : 1);
        if (!t->data) st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory padding a batch");
        else t->owns_data = 1;
    }
    if (st == IB_OK)
        st = ib__rt_run(rt, pool, n_inputs, input_names, io->in, n_outputs, output_names,
                        io->out);
    for (size_t r = 0; r < n_outputs && st == IB_OK && padded; r++)
        if (io->out_row[r] > 0)
            memcpy((unsigned char *)outputs[r].data + first * io->out_row[r], io->out[r].data,
                   (size_t)(rows * io->out_row[r]));
    for (size_t i = 0; i < n_inputs && padded; i++)
        if (io->in[i].owns_data) ib__free(io->in[i].data);
    for (size_t r = 0; r < n_outputs && padded; r++)
        if (io->out[r].owns_data) ib__free(io->out[r].data);
    return st;
}

ib_status ib__buckets_run(const ib__buckets *b, int64_t n, ib__bucket_variant_fn variant,
                          void *ctx, ib__pool *pool, size_t n_inputs,
                          const char *const *input_names, const ib_tensor *inputs,
                          size_t n_outputs, const char *const *output_names, ib_tensor *outputs,
                          bool *use_reference) {
    *use_reference = false;
    ib__bucket_piece pieces[IB_BUCKETS_MAX_PIECES];
    ib__rt_model *rts[IB_BUCKETS_MAX_PIECES];
    int32_t k = ib__buckets_pieces(b, n, pieces);
    if (k < 1) return ib__error(IB_ERR_INVALID_ARGUMENT, "batch %lld is empty", (long long)n);
    /* Every piece's variant first. A small bucket may run on the reference executor
     * (too little work to repay the C compiler): its rows are padded into the next
     * bucket that is compiled, a few rows of wasted work against leaving the compiled
     * path; when none is, the whole run goes to the reference executor (nothing has been
     * written yet). */
    for (int32_t p = 0; p < k; p++) {
        IB_TRY(variant(ctx, pieces[p].bucket, &rts[p]));
        for (int64_t s = pieces[p].bucket * 2; !rts[p] && pieces[p].times == 1 && s <= b->max;
             s *= 2) {
            IB_TRY(variant(ctx, s, &rts[p]));
            if (rts[p]) pieces[p].bucket = s;
        }
        if (!rts[p]) {
            *use_reference = true;
            return IB_OK;
        }
    }
    const ib__rt_model *rt0 = rts[0];
    int32_t n_model_out = ib__rt_output_count(rt0);
    if (!output_names && n_outputs != (size_t)n_model_out)
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "all %d outputs requested but %zu output tensors given", n_model_out,
                         n_outputs);
    piece_io io = {
        .in = ib__calloc(n_inputs + 1, sizeof(ib_tensor)),
        .out = ib__calloc(n_outputs + 1, sizeof(ib_tensor)),
        .in_row = ib__calloc(n_inputs + 1, sizeof(int64_t)),
        .out_row = ib__calloc(n_outputs + 1, sizeof(int64_t)),
        .owned = ib__calloc(n_outputs + 1, 1),
    };
    ib_status st = IB_OK;
    if (!io.in || !io.out || !io.in_row || !io.out_row || !io.owned)
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory starting a run");
    /* Inputs: each must hold n samples (the pieces' runs check the rest). */
    for (size_t i = 0; i < n_inputs && st == IB_OK; i++) {
        const ib_tensor *t = &inputs[i];
        const char *name = input_names[i] ? input_names[i] : "(null)";
        if (t->rank < 1 || t->rank > IB_MAX_RANK || t->shape[0] != n) {
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': dim 0 must be the batch %lld",
                           name, (long long)n);
            break;
        }
        io.in_row[i] = row_bytes(t->dtype, t->rank, t->shape);
        if (io.in_row[i] < 0 || ib_dtype_size(t->dtype) == 0 ||
            (io.in_row[i] && n > (int64_t)(SIZE_MAX / 2) / io.in_row[i]))
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "input '%s': invalid shape or dtype", name);
        else if (t->nbytes < (size_t)(n * io.in_row[i]) || (!t->data && io.in_row[i]))
            st = ib__error(IB_ERR_INVALID_ARGUMENT,
                           "input '%s': buffer holds %zu bytes, shape needs %lld", name,
                           t->nbytes, (long long)(n * io.in_row[i]));
    }
    /* Outputs: the model's shape with dim 0 = n, in the caller's buffer or a new one. */
    size_t allocated = 0;
    for (size_t r = 0; r < n_outputs && st == IB_OK; r++, allocated++) {
        int32_t j = -1;
        if (!output_names) j = (int32_t)r;
        for (int32_t o = 0; output_names && o < n_model_out && j < 0; o++)
            if (output_names[r] && strcmp(ib__rt_output(rt0, o)->name, output_names[r]) == 0)
                j = o;
        if (j < 0) {
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "the model has no output named '%s'",
                           output_names[r] ? output_names[r] : "(null)");
            break;
        }
        const ib__rt_io_entry *e = ib__rt_output(rt0, j);
        if (e->rank < 1 || e->dims[0] != pieces[0].bucket) {
            st = ib__error(IB_ERR_INTERNAL, "output '%s' does not carry the batch", e->name);
            break;
        }
        io.out_row[r] = row_bytes((ib_dtype)e->dtype, e->rank, e->dims);
        int64_t dims[IB_MAX_RANK];
        memcpy(dims, e->dims, sizeof dims);
        dims[0] = n;
        ib_tensor *dst = &outputs[r];
        if (dst->data) {
            if (dst->dtype != (ib_dtype)e->dtype || dst->nbytes < (size_t)(n * io.out_row[r]))
                st = ib__error(IB_ERR_INVALID_ARGUMENT,
                               "output '%s': caller buffer is %s with %zu bytes, result is %s "
                               "with %lld bytes", e->name, ib_dtype_name(dst->dtype),
                               dst->nbytes, ib_dtype_name((ib_dtype)e->dtype),
                               (long long)(n * io.out_row[r]));
            else {
                dst->rank = e->rank;
                memcpy(dst->shape, dims, sizeof dst->shape);
            }
            continue;
        }
        st = ib__tensor_alloc(dst, (ib_dtype)e->dtype, e->rank, dims);
        if (st == IB_OK) io.owned[r] = 1;
    }
    int64_t first = 0;
    for (int32_t p = 0; p < k && st == IB_OK; p++)
        for (int64_t t = 0; t < pieces[p].times && st == IB_OK; t++) {
            st = run_piece(rts[p], pool, &io, first, pieces[p].rows, pieces[p].bucket,
                           n_inputs, input_names, inputs, n_outputs, output_names, outputs);
            first += pieces[p].rows;
        }
    for (size_t r = 0; r < n_outputs && st == IB_OK; r++) {
        outputs[r].nbytes = (size_t)(n * io.out_row[r]);
        outputs[r].shape[0] = n;
    }
    if (st)
        for (size_t r = 0; r < allocated && io.owned; r++)
            if (io.owned[r]) ib_tensor_release(&outputs[r]);
    piece_io_free(&io);
    return st;
}
