/* Search spaces: candidate values for each knob of a workload, derived from the knob's
 * default and its kind (flag, register tile, cache block, loop chunk), pruned by the
 * template's knobs_valid before anything is compiled. */
#include <string.h>

#include "tune/tune.h"

static void add_val(ib__tune_space *sp, int32_t i, int64_t v) {
    if (v < 0) return;
    for (int32_t j = 0; j < sp->n_vals[i]; j++)
        if (sp->vals[i][j] == v) return;
    if (sp->n_vals[i] >= (int32_t)(sizeof sp->vals[i] / sizeof sp->vals[i][0])) return;
    /* kept ascending, so a neighbour in the list is a neighbour in value */
    int32_t j = sp->n_vals[i]++;
    while (j > 0 && sp->vals[i][j - 1] > v) {
        sp->vals[i][j] = sp->vals[i][j - 1];
        j--;
    }
    sp->vals[i][j] = v;
}

static void add_range(ib__tune_space *sp, int32_t i, int64_t lo, int64_t hi) {
    for (int64_t v = lo; v <= hi; v++) add_val(sp, i, v);
}

/* Powers of two from lo to hi, and the default with its halves and doubles. */
static void add_pow2(ib__tune_space *sp, int32_t i, int64_t lo, int64_t hi, int64_t d) {
    for (int64_t v = lo; v <= hi; v *= 2) add_val(sp, i, v);
    add_val(sp, i, d);
    if (d > 1) add_val(sp, i, d / 2);
    add_val(sp, i, d * 2);
    if (d > 2) add_val(sp, i, d * 3 / 4);
    add_val(sp, i, d + d / 2);
}

static bool is(const char *a, const char *b) { return strcmp(a, b) == 0; }

void ib__tune_space_init(const ib__tune_task *task, ib__tune_space *sp) {
    memset(sp, 0, sizeof *sp);
    const ib__knobs *d = &task->defaults;
    bool gemm = task->tmpl == &ib__template_gemm;
    for (int32_t i = 0; i < d->n && i < IB_MAX_KNOBS; i++) {
        const char *n = d->name[i];
        int64_t v = d->value[i];
        sp->name[i] = n;
        sp->dflt[i] = v;
        sp->n = i + 1;
        add_val(sp, i, v);
        if (is(n, "parallel") || is(n, "kw_inner") || is(n, "pack_a") || is(n, "par_n_inner")) {
            add_range(sp, i, 0, 1);
        } else if ((gemm && is(n, "nr")) || is(n, "tile_size")) {
            /* packed B panels are nr vectors wide, Winograd's weights are transformed for
             * its tile size: fixed at what the plan packed */
        } else if (is(n, "ow_block")) {
            add_range(sp, i, 1, 32);
        } else if (is(n, "oc_block") || is(n, "mr")) {
            add_range(sp, i, 1, 16);
        } else if (is(n, "oh_block") || is(n, "rows") || is(n, "rows_per_task")) {
            add_range(sp, i, 1, 8);
            add_pow2(sp, i, 1, 64, v);
        } else if (is(n, "ic_unroll") || is(n, "ku") || is(n, "hw_accumulators")) {
            add_pow2(sp, i, 1, 8, v);
            add_val(sp, i, 3);
        } else if (is(n, "ic_block")) {
            add_range(sp, i, 1, 8);
            add_pow2(sp, i, 1, 256, v);
        } else if (is(n, "mc") || is(n, "nc") || is(n, "kc")) {
            int64_t unit = v >= 16 ? 16 : 1;
            for (int64_t m = 1; m <= 16; m++) add_val(sp, i, v * m / 4 / unit * unit);
            add_pow2(sp, i, 16, 4096, v);
        } else if (is(n, "chunk")) {
            add_pow2(sp, i, 64, 1 << 16, v);
        } else if (v == 0 || v == 1) {
            add_range(sp, i, 0, 4);
        } else {
            add_pow2(sp, i, 1, v * 4, v);
            add_range(sp, i, v > 3 ? v - 3 : 1, v + 3);
        }
    }
}

double ib__tune_space_size(const ib__tune_space *sp) {
    double n = 1;
    for (int32_t i = 0; i < sp->n; i++) n *= sp->n_vals[i] > 0 ? sp->n_vals[i] : 1;
    return n;
}

bool ib__tune_space_valid(const ib__plan *plan, const ib__tune_task *task, const ib__knobs *k) {
    const ib__pkernel *pk = &plan->kernels[task->kernel];
    return task->tmpl->knobs_valid && task->tmpl->knobs_valid(plan, pk, k);
}
