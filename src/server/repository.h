/* The model repository (Triton's layout: ROOT/<model>/<version>/model.onnx and an
 * optional ROOT/<model>/config.pbtxt): loading, unloading and reference-counted access
 * to the live versions, so a reload or unload never pulls a model from under a request. */
#ifndef IB_SERVER_REPOSITORY_H
#define IB_SERVER_REPOSITORY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "inferbooster/inferbooster.h"
#include "sched/scheduler.h"
#include "server/model_config.h"

typedef struct ib__served_model {
    char name[IB__CONFIG_NAME_MAX];
    int64_t version;
    ib__model_config cfg;
    ib__sched_config sched_cfg;
    ib_model *model;
    ib_session *session; /* the live one; swapped by the optimizer (see optimizer.h) */
    ib__sched *sched;
    /* Which executor serves now ("reference" or "compiled"), for metadata and metrics,
     * which must not touch a session a swap may be destroying. */
    _Atomic(const char *) executor;
    /* Background optimisation (optimizer.c): state, its thread, its result. */
    atomic_int optimize_state; /* ib__optimize_state */
    atomic_bool optimize_cancel;
    bool optimizer_started;
    pthread_t optimizer;
    atomic_int optimizer_handoff; /* who frees the version when it is dropped mid-compile */
    /* Called by the optimizer thread when the repository abandoned the version to it. */
    void (*orphaned)(struct ib__served_model *m);
    void *owner; /* the repository */
    _Atomic uint64_t compile_us; /* building and warming the optimised session */
    /* Its executables (one per warmed batch size) loaded from / compiled into the cache. */
    _Atomic uint64_t cache_hits, cache_misses;
    char optimize_note[256];     /* why the reference session stayed, when it did */
    int refs;     /* under the repository lock */
    bool retired; /* replaced or unloaded: destroyed by the last release */
    struct ib__served_model *next;
} ib__served_model;

typedef struct ib__repository ib__repository;

typedef struct ib__repo_options {
    int session_threads; /* per session; 0: all usable CPUs */
    bool use_reference;  /* serve the reference executor only */
    bool compile_all;    /* compile even models too small to repay it (use_reference -1) */
    bool blocking;       /* compile before a model is ready, instead of in the background */
} ib__repo_options;

ib_status ib__repo_create(const char *root, const ib__repo_options *opts, ib__repository **out);
/* Unloads everything (waits for nothing: call when no request holds a model). */
void ib__repo_destroy(ib__repository *repo);

/* Loads (or reloads) a model by directory name; the new versions replace the old ones
 * atomically. A failure leaves the previous versions serving and records the reason. */
ib_status ib__repo_load(ib__repository *repo, const char *name);
/* Writes an uploaded ROOT/<name>/<version>/model.onnx (the repository extension's
 * `file:` load parameters) atomically: a temporary file in that folder, fsync, rename,
 * fsync of the folder. The name must be a valid model name; version 1 .. 2^31-1. A
 * version that already holds other bytes is refused (an upload never replaces a model);
 * the same bytes again are fine. *created: the file is new (ib__repo_drop_model_file
 * takes it back when the load that follows fails). */
ib_status ib__repo_put_model_file(ib__repository *repo, const char *name, int64_t version,
                                  const void *data, size_t len, bool *created);
/* Removes ROOT/<name>/<version>/model.onnx and the folders it leaves empty. */
void ib__repo_drop_model_file(ib__repository *repo, const char *name, int64_t version);
ib_status ib__repo_unload(ib__repository *repo, const char *name);
/* Loads every model directory; returns how many failed (reasons recorded, printed). */
int ib__repo_load_all(ib__repository *repo);
bool ib__repo_name_valid(const char *name);
/* Poll mode: (re)loads each model whose config.pbtxt or version files changed since its
 * last load attempt, and unloads those whose directory is gone. Returns the changes. */
int ib__repo_poll(ib__repository *repo);

/* A live version (version <= 0: the latest) with a reference held, or NULL when the
 * model or version is unknown or not loaded. Pair with ib__repo_release. */
ib__served_model *ib__repo_acquire(ib__repository *repo, const char *name, int64_t version);
void ib__repo_release(ib__repository *repo, ib__served_model *m);

/* Every model directory and every loaded version: state is "READY", "UNAVAILABLE" or
 * "LOADING"; version is 0 for a model without a live version. */
typedef void (*ib__repo_index_fn)(void *user, const char *name, int64_t version, const char *state,
                                  const char *reason);
void ib__repo_index(ib__repository *repo, ib__repo_index_fn fn, void *user);
/* Each live version, under the repository lock (fn must not call back into it). */
typedef void (*ib__repo_model_fn)(void *user, ib__served_model *m);
void ib__repo_foreach_live(ib__repository *repo, ib__repo_model_fn fn, void *user);
/* Versions live for `name`, newest first, up to cap; returns the count. */
size_t ib__repo_versions(ib__repository *repo, const char *name, int64_t *out, size_t cap);

#endif /* IB_SERVER_REPOSITORY_H */
