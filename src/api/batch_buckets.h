/* Batch buckets: a model whose symbolic batch is separable (passes/batch_separable.h)
 * gets variants compiled for 1, 2, 4, ... up to a maximum only, and a run at any batch
 * n is served by them: n split into bucket-sized pieces (13 = 8 + 4 + 1), each piece a
 * slice of the inputs written into a slice of the outputs, or (mode pad) n padded up to
 * the next bucket. Pieces beyond the maximum are maximum-sized. */
#ifndef IB_API_BATCH_BUCKETS_H
#define IB_API_BATCH_BUCKETS_H

#include <stdbool.h>

#include "api/model_internal.h"
#include "ir/graph.h"
#include "runtime/runtime.h"

typedef enum ib__bucket_mode {
    IB_BUCKETS_OFF = 0, /* one variant per exact batch size */
    IB_BUCKETS_SPLIT,   /* pieces of bucket sizes, no padded rows */
    IB_BUCKETS_PAD,     /* the last piece padded up to the next bucket */
} ib__bucket_mode;

/* 64 by default: per-sample cost is flat in the batch on CPUs (ResNet-18: 13.1 ms per
 * image at batch 1, 12.5 at 16), so larger buckets gain nothing while each costs an
 * arena that grows with it; 64 covers the usual max_batch_size and keeps a model at 7
 * entries of the 64-entry cache. Larger batches run as repeated 64-row pieces. */
enum { IB_BUCKETS_DEFAULT_MAX = 64, IB_BUCKETS_MAX_PIECES = 20, IB_BUCKETS_MAX_LIMIT = 1 << 16 };

typedef struct ib__buckets {
    ib__bucket_mode mode;
    int64_t max;      /* largest bucket, a power of two */
    char reason[320]; /* why off ("" when on) */
} ib__buckets;

/* Decides the buckets of graph g: off unless its batch is separable; the mode and
 * maximum from INFERBOOSTER_BATCH_BUCKETS ("off", "split", "pad", optionally ":MAX",
 * e.g. "split:32"; unset: split up to 64). Fails only when out of memory. */
ib_status ib__buckets_configure(const ib__graph *g, ib__buckets *out);

/* The buckets a session of model m compiles (as ib__buckets_configure; a failure is
 * "off" with its message); false when the model has no symbolic batch. */
bool ib__buckets_for_model(const ib_model *m, ib__buckets *out);

/* "1,2,4,...,64 (split)" or "off (reason)". */
void ib__buckets_describe(const ib__buckets *b, char *buf, size_t len);

/* Whether batch n runs directly on its own variant (a bucket size, or buckets off). */
bool ib__buckets_direct(const ib__buckets *b, int64_t n);

/* The pieces serving batch n, in row order: `times` consecutive runs of `rows` rows on
 * the variant compiled for `bucket` (rows == bucket except for a padded piece). Returns
 * the count, at most IB_BUCKETS_MAX_PIECES (0: n < 1). */
typedef struct ib__bucket_piece {
    int64_t rows, bucket, times;
} ib__bucket_piece;
int32_t ib__buckets_pieces(const ib__buckets *b, int64_t n, ib__bucket_piece *out);

/* Variant lookup for a run: *rt NULL when that bucket runs on the reference executor. */
typedef ib_status (*ib__bucket_variant_fn)(void *ctx, int64_t bucket, ib__rt_model **rt);

/* Runs batch n (with ib_session_run's contract: outputs bound by name, caller or
 * library buffers) piece by piece. *use_reference set (nothing run) when some piece's
 * variant runs on the reference executor. */
ib_status ib__buckets_run(const ib__buckets *b, int64_t n, ib__bucket_variant_fn variant,
                          void *ctx, ib__pool *pool, size_t n_inputs,
                          const char *const *input_names, const ib_tensor *inputs,
                          size_t n_outputs, const char *const *output_names, ib_tensor *outputs,
                          bool *use_reference);

#endif /* IB_API_BATCH_BUCKETS_H */
