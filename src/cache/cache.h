/* The compiled-model cache: artifact directories keyed by SHA-256 of everything that
 * shapes the compiled code, kept in one directory shared safely by processes, with LFU
 * eviction (ties: earliest inserted first) under entry-count and byte limits.
 *
 * Layout of the cache directory (nothing is ever written outside it):
 *   lock                 exclusive flock for every index read-modify-write
 *   index                one text file, rewritten atomically, last line a SHA-256 checksum
 *   entries/<key>/       an artifact directory, named by the hex key only, with
 *                        .ib-manifest (SHA-256 and size of each file, checksummed)
 *   locks/<key>.pin      shared flock while an entry is in use (pinned): never evicted
 *   locks/<key>.build    exclusive flock while a process builds that key
 *   tmp/                 builds in progress and entries being deleted
 *   digests/             remembered SHA-256 of big model files, by file identity
 * A process killed at any point leaves a cache that lookups read safely (an index
 * record whose directory is missing or damaged is a miss) and that ib__cache_verify
 * brings back to exact agreement between index and directories. */
#ifndef IB_CACHE_H
#define IB_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

#define IB_CACHE_KEY_HEX 64     /* hex digits of a key (SHA-256) */
#define IB_CACHE_LABEL_MAX 160  /* name#ctime and target strings, with the NUL */
#define IB_CACHE_DEFAULT_MAX_ENTRIES 64u
#define IB_CACHE_DEFAULT_MAX_BYTES ((uint64_t)10 << 30)

typedef struct ib__cache ib__cache;
typedef struct ib__cache_entry ib__cache_entry;

/* 0 in a field means: INFERBOOSTER_CACHE_MAX_ENTRIES / _MAX_BYTES, else the default. */
typedef struct ib__cache_limits {
    uint64_t max_entries;
    uint64_t max_bytes;
    /* Hash every file of an entry on each hit (default: sizes and manifest checksum
     * only, so that a hit stays fast; ib__cache_verify always hashes). */
    bool verify_content_on_hit;
    /* Short of that, hash on each hit the files of at most this many bytes (0: none):
     * a damaged shared object is then never loaded, while a big weights file is left to
     * its reader's own check (the runtime hashes weights.bin against model.so). */
    uint64_t verify_on_hit_max_bytes;
} ib__cache_limits;

/* What ls and lookups report about an entry. */
typedef struct ib__cache_entry_info {
    char key[IB_CACHE_KEY_HEX + 1];
    char name[IB_CACHE_LABEL_MAX];   /* sanitised "model#create_time" */
    char target[IB_CACHE_LABEL_MAX]; /* sanitised target description */
    uint64_t freq;                   /* uses: 1 at insertion, +1 per hit */
    uint64_t seq;                    /* insertion order */
    uint64_t bytes;                  /* size on disk of the entry's files */
    int64_t created;                 /* seconds since the epoch */
    int64_t last_used;
} ib__cache_entry_info;

typedef struct ib__cache_stats {
    uint64_t entries, bytes;
    uint64_t hits, misses, evictions; /* persisted in the index (reset if it is rebuilt) */
    uint64_t max_entries, max_bytes;
} ib__cache_stats;

typedef struct ib__cache_verify_report {
    bool index_rebuilt;       /* the index was missing a checksum, truncated or corrupt */
    uint64_t entries_ok;
    uint64_t records_dropped; /* index records without a (readable) directory */
    uint64_t corrupt_dropped; /* entries whose files did not match their manifest */
    uint64_t orphans_dropped; /* entry directories without an index record */
    uint64_t temps_dropped;   /* builds of dead processes, deletions cut short */
    uint64_t busy_skipped;    /* damaged but pinned by a live process: left in place */
} ib__cache_verify_report;

/* Everything that makes compiled code differ. Strings may be NULL (same as ""). */
typedef struct ib__cache_key_input {
    const char *model_path;               /* the model file's bytes */
    const char *const *data_paths;        /* its external data files, in a fixed order */
    size_t n_data_paths;
    const char *target_name;              /* "x86_64", "cuda-sm80", ... */
    const char *target_features;          /* ISA features, e.g. "avx2,fma,f16c" */
    const char *compiler_version;         /* IB_VERSION_STRING plus codegen revision */
    const char *options;                  /* canonical compile options (precision, batch) */
    const char *tuning_digest;            /* digest of the tuning records used ("" none) */
    /* When set, content digests of files >= 1 MiB are remembered in this cache by file
     * identity (path, inode, size, mtime, ctime), so hits do not rehash big models. */
    ib__cache *digest_memo;
    const char *model_digest; /* instead of model_path: SHA-256 hex of the model's bytes */
} ib__cache_key_input;

/* The default directory: INFERBOOSTER_CACHE_DIR, else $XDG_CACHE_HOME/inferbooster,
 * else $HOME/.cache/inferbooster. *out is ib__malloc'ed. */
ib_status ib__cache_default_dir(char **out);

/* Opens (creating if needed) the cache at dir (NULL: the default). limits may be NULL. */
ib_status ib__cache_open(const char *dir, const ib__cache_limits *limits, ib__cache **out);
void ib__cache_close(ib__cache *cache);
const char *ib__cache_dir(const ib__cache *cache);

/* SHA-256 over a tagged, length-prefixed serialisation of every field, so that no two
 * different inputs hash the same byte stream. out: 64 lowercase hex digits + NUL. */
ib_status ib__cache_key(const ib__cache_key_input *in, char out[IB_CACHE_KEY_HEX + 1]);
/* SHA-256 hex of a file's content, remembered in memo (may be NULL) as the key's
 * digests are (files >= 1 MiB, by identity). */
ib_status ib__cache_file_digest(const char *path, ib__cache *memo, char out[IB_CACHE_KEY_HEX + 1]);
/* "basename#create_time" of a model file (birth time, else ctime, in seconds),
 * sanitised to [A-Za-z0-9._+,:=-] (never a path). */
ib_status ib__cache_model_label(const char *model_path, char out[IB_CACHE_LABEL_MAX]);
/* Replaces characters outside [A-Za-z0-9._+,:=#-] with '_' and truncates. */
void ib__cache_sanitize(const char *in, char *out, size_t cap);

/* Hit: *out is the entry, pinned (never deleted until ib__cache_release), its
 * frequency incremented and last use updated. Miss: *out is NULL. Both return IB_OK. */
ib_status ib__cache_lookup(ib__cache *cache, const char *key, ib__cache_entry **out);

/* Like ib__cache_lookup, but a miss is neither counted nor written to the index: for
 * callers that may not build the entry after all (a model too small to compile). */
ib_status ib__cache_find(ib__cache *cache, const char *key, ib__cache_entry **out);

/* Writes an artifact into `dir` (an empty directory inside the cache); plain files only,
 * names without '/' or whitespace and not starting with ".ib-". A compiler that builds
 * beside its output and renames into place may rmdir `dir` and rename its finished
 * directory to that path (its scratch, named after `dir`, stays inside the cache and is
 * cleaned by verify if the process dies). */
typedef ib_status (*ib__cache_build_fn)(void *ctx, const char *dir);

/* Looks key up; on a miss builds it with build_fn (only one process builds a key at a
 * time: the others wait and then hit), checksums the files, publishes the entry
 * atomically and evicts LFU entries until within limits (never the new one, never a
 * pinned one). *out is the pinned entry; *built (may be NULL) says whether this call
 * built it. name and target label the entry for `ls` (sanitised). */
ib_status ib__cache_insert(ib__cache *cache, const char *key, const char *name,
                           const char *target, ib__cache_build_fn build_fn, void *ctx,
                           ib__cache_entry **out, bool *built);

/* The entry's artifact directory (valid until release). */
const char *ib__cache_entry_path(const ib__cache_entry *entry);
const ib__cache_entry_info *ib__cache_entry_info_get(const ib__cache_entry *entry);
/* Unpins and frees; NULL is allowed. */
void ib__cache_release(ib__cache_entry *entry);

/* Every entry, ordered by insertion; *out ib__malloc'ed (ib__free), *n may be 0. */
ib_status ib__cache_list(ib__cache *cache, ib__cache_entry_info **out, size_t *n);
ib_status ib__cache_stats_get(ib__cache *cache, ib__cache_stats *out);
/* Removes one entry. IB_ERR_INVALID_ARGUMENT: no such key; IB_ERR_RUNTIME: pinned. */
ib_status ib__cache_evict(ib__cache *cache, const char *key);
/* Removes every entry not pinned; *n_removed and *n_busy may be NULL. */
ib_status ib__cache_clear(ib__cache *cache, uint64_t *n_removed, uint64_t *n_busy);
/* Hashes every entry against its manifest, drops what does not agree (see report). */
ib_status ib__cache_verify(ib__cache *cache, ib__cache_verify_report *out);

/* True for 64 lowercase hex digits. */
bool ib__cache_key_valid(const char *key);

#endif /* IB_CACHE_H */
