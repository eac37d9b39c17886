/* The compiled-model cache as sessions and the CLI use it: whether to use it, the key of
 * a loaded model for a target and batch, the label entries are listed under. */
#ifndef IB_API_MODEL_CACHE_H
#define IB_API_MODEL_CACHE_H

#include <stdbool.h>

#include "api/model_internal.h"
#include "cache/cache.h"
#include "target/target_desc.h"

typedef struct ib__model_cache ib__model_cache;

/* True when INFERBOOSTER_NO_CACHE is set to anything but "" or "0". */
bool ib__model_cache_disabled_by_env(void);

/* Opens the cache at dir (NULL: INFERBOOSTER_CACHE_DIR, else the XDG default) for
 * compiling `model` for `target` with tuning database tuning_db (as
 * ib__tune_compile_knobs takes it; the keys carry its digest). The key's model digest is
 * computed on first use. */
ib_status ib__model_cache_open(const ib_model *model, const ib__target *target, const char *dir,
                               const char *tuning_db, ib__model_cache **out);
/* Opens the cache for the model file at model_path without parsing it: its keys come
 * from the file's bytes and the external data an earlier compile of the same bytes
 * recorded (ib__model_cache_key fails when no compile did). */
ib_status ib__model_cache_open_file(const char *model_path, const ib__target *target,
                                    const char *dir, const char *tuning_db,
                                    ib__model_cache **out);
void ib__model_cache_close(ib__model_cache *mc);

ib__cache *ib__model_cache_handle(const ib__model_cache *mc);
/* "name#create_time" of the model file ("memory#0" for a model loaded from bytes). */
const char *ib__model_cache_label(const ib__model_cache *mc);
const char *ib__model_cache_target(const ib__model_cache *mc);

/* The key of the artifact for `batch` (0: the model's own shapes): SHA-256 of the
 * model's bytes and external data, the full target description (ISA, vector width,
 * caches, cores, C compiler and flags), this compiler's identity (version, kernel ABI,
 * SHA-256 of the binary holding the compiler), the options and the tuning digest.
 * Thread-safe. */
ib_status ib__model_cache_key(ib__model_cache *mc, int64_t batch, char key[IB_CACHE_KEY_HEX + 1]);

#endif /* IB_API_MODEL_CACHE_H */
