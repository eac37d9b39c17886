/* libFuzzer target: arbitrary bytes through the whole load path (loader, shape
 * inference, load-time constant folding) and, when that succeeds, one reference run on
 * zero-filled inputs, so the ops' shape rules and kernels meet hostile graphs too.
 * Allocations over 64 MiB fail (through the allocation hook) so that absurd shapes
 * exercise the out-of-memory paths instead of exhausting the fuzzer. */
#include <stdlib.h>
#include <string.h>

#include "api/model_internal.h"
#include "core/core.h"
#include "fuzz_targets.h"

#define FUZZ_ALLOC_CAP ((size_t)64 << 20)

static void *capped_alloc(void *user, void *ptr, size_t old_size, size_t new_size) {
    (void)user;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    if (new_size > FUZZ_ALLOC_CAP) return NULL;
    return realloc(ptr, new_size);
}

/* Loops and scans can legitimately run for as long as their trip count says: a fuzzed
 * trip count would only measure patience. */
static bool has_loops(const ib__graph *g) {
    for (int32_t n = 0; n < g->n_nodes; n++) {
        const ib__node *node = g->nodes[n];
        if (node->op == IB_OP_LOOP || node->op == IB_OP_SCAN) return true;
        for (int32_t a = 0; a < node->n_attrs; a++) {
            const ib__attr *at = &node->attrs[a];
            if (at->kind == IB_ATTR_GRAPH && at->g && has_loops(at->g)) return true;
            for (int32_t k = 0; at->kind == IB_ATTR_GRAPHS && k < at->count; k++)
                if (at->graphs[k] && has_loops(at->graphs[k])) return true;
        }
    }
    return false;
}

static void run_once(const ib_model *m) {
    ib_session_options opt;
    ib_session_options_init(&opt);
    opt.use_reference = 1;
    opt.num_threads = 1;
    ib_session *s = NULL;
    if (ib_session_create(m, &opt, &s) != IB_OK) return;
    size_t n_in = ib_model_input_count(m), n_out = ib_model_output_count(m);
    if (n_in > 16 || n_out > 16 || n_out == 0) {
        ib_session_destroy(s);
        return;
    }
    ib_tensor in[16], out[16];
    const char *names[16];
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    size_t ok = 0;
    for (size_t i = 0; i < n_in; i++) {
        ib_value_info info;
        if (ib_model_input_info(m, i, &info) != IB_OK || info.rank < 0) break;
        int64_t dims[IB_MAX_RANK];
        for (int32_t d = 0; d < info.rank; d++) dims[d] = info.shape[d] < 0 ? 1 : info.shape[d];
        int64_t count = ib__shape_count(dims, info.rank);
        if (count < 0 || count > (1 << 16) || ib_dtype_size(info.dtype) == 0) break;
        if (ib__tensor_alloc(&in[i], info.dtype, info.rank, dims) != IB_OK) break;
        names[i] = info.name;
        ok++;
    }
    if (ok == n_in) ib_session_run(s, n_in, names, in, n_out, NULL, out);
    for (size_t i = 0; i < n_out; i++) ib_tensor_release(&out[i]);
    for (size_t i = 0; i < ok; i++) ib_tensor_release(&in[i]);
    ib_session_destroy(s);
}

ib_status ib__fuzz_model_run(const uint8_t *data, size_t size) {
    ib__set_allocator(capped_alloc, NULL);
    ib_model *m = NULL;
    ib_status st = ib_model_load_bytes(data, size, NULL, &m);
    if (st == IB_OK && !has_loops(m->graph)) run_once(m);
    ib_model_destroy(m);
    ib__set_allocator(NULL, NULL);
    return st;
}

#ifndef IB_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ib__fuzz_model_run(data, size);
    return 0;
}
#endif
