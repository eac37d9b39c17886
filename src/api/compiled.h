/* The compiled execution path behind ib_session: per-batch executable models built from
 * the graph (interpreted plans or generated modules), artifacts written to and loaded
 * from disk. session.c dispatches here unless the session uses the reference executor. */
#ifndef IB_API_COMPILED_H
#define IB_API_COMPILED_H

#include "api/model_internal.h"
#include "passes/compile_plan.h"
#include "runtime/runtime.h"

typedef struct ib__compiled ib__compiled;

/* Prepares compiled execution of `model` for `target` (through the cache when `cache`
 * says so; a cache that cannot be opened or written is bypassed, never an error). A model without a symbolic batch
 * dimension is compiled now; one with it on first use of each batch size. Plans with
 * generated kernels but too little work to repay the C compiler run on the reference
 * executor unless compile_all. *reference
 * is set (and *out NULL) when the model cannot be compiled (shapes depend on data, or
 * control flow): the session then runs the reference executor. */
typedef struct ib__compiled_cache_options {
    bool use_cache;  /* false: compile without the compiled-model cache */
    const char *dir; /* NULL: INFERBOOSTER_CACHE_DIR, else the XDG default */
    const char *tuning_db; /* NULL: INFERBOOSTER_TUNING_DB, else the default; "off": none */
} ib__compiled_cache_options;

ib_status ib__compiled_create(const ib_model *model, const ib__target *target,
                              bool compile_all, const ib__compiled_cache_options *cache,
                              ib__compiled **out, bool *reference);
/* A static model's compiled part straight from the cache, without parsing the file:
 * *out is NULL (IB_OK) when the cache holds no entry for its bytes that an earlier
 * compile recorded. Reference steps of the artifact need the model attached before the
 * first run (ib__compiled_needs_model, ib__compiled_attach_model). */
ib_status ib__compiled_from_cached_file(const char *model_path, const ib__target *target,
                                        const ib__compiled_cache_options *cache,
                                        ib__compiled **out);
bool ib__compiled_needs_model(const ib__compiled *c);
ib_status ib__compiled_attach_model(ib__compiled *c, const ib_model *model);
/* Wraps an executable model loaded from an artifact (ownership passes). */
ib_status ib__compiled_from_rt(ib__rt_model *rt, ib__compiled **out);
void ib__compiled_destroy(ib__compiled *c);

/* Runs; *use_reference is set (nothing run) when these inputs need the reference
 * executor (a batch size whose shapes cannot be compiled). */
ib_status ib__compiled_run(ib__compiled *c, ib__pool *pool, size_t n_inputs,
                           const char *const *input_names, const ib_tensor *inputs,
                           size_t n_outputs, const char *const *output_names,
                           ib_tensor *outputs, bool *use_reference);

/* "compiled" when the last build produced a module or an interpreted plan, else
 * "reference" (every batch seen so far fell back). */
const char *ib__compiled_executor(const ib__compiled *c);
/* The executable model of a static or artifact session (NULL for per-batch ones). */
const ib__rt_model *ib__compiled_fixed(const ib__compiled *c);
/* Executables (one per batch size) loaded from the compiled-model cache (hits) and
 * compiled into it (misses) since creation; plans not worth a module count neither. */
void ib__compiled_cache_counts(const ib__compiled *c, uint64_t *hits, uint64_t *misses);
/* The same for a session's compiled part (0 and 0 on the reference executor). */
void ib__session_cache_counts(const ib_session *session, uint64_t *hits, uint64_t *misses);

/* ---- Artifacts ---------------------------------------------------------------------- */
typedef struct ib__compile_report {
    char target[32];
    int64_t batch;
    int32_t kernels, fused, fallback;
    size_t arena_bytes, weights_bytes;
    double compile_ms;
    bool has_model_copy; /* model.onnx stored for the fallback steps */
    int32_t tuned_kernels; /* kernels given knobs from the tuning database */
} ib__compile_report;

/* Compiles `model` (loaded from `model_path`, which is copied into the artifact when
 * the plan has fallback steps) into the artifact directory `out_dir`: model.so,
 * weights.bin, meta.json, and model.onnx when needed; the generated sources too when
 * keep_source. Written next to out_dir and renamed into place; an existing out_dir is
 * replaced only when it is an artifact. */
ib_status ib__artifact_compile(const ib_model *model, const char *model_path,
                               const char *target, int32_t batch, const char *out_dir,
                               bool keep_source, ib__compile_report *report);

/* Writes the artifact files of a plan into the existing directory dir: model.so,
 * weights.bin, meta.json (and the generated sources when keep_source). */
ib_status ib__artifact_write_files(const ib__plan *plan, const char *dir, bool keep_source);

/* Copies the artifact in entry_dir (a cache entry) to out_dir as ib__artifact_compile
 * would have written it (model.onnx from model_path when the plan has reference steps),
 * atomically; report from its meta.json (compile_ms: the copy's time). */
ib_status ib__artifact_export(const char *entry_dir, const char *model_path, const char *out_dir,
                              ib__compile_report *report);

/* Removes a directory the compiler wrote (artifact or scratch): only the file names it
 * writes, then the directory itself; anything else present keeps it. */
void ib__remove_compiler_dir(const char *dir);

#endif /* IB_API_COMPILED_H */
