/* Test harness for kernel templates: builds one-kernel plans by hand around a small
 * chain of nodes (anchor, optional BatchNormalization, element-wise epilogue nodes),
 * runs the template's default_knobs / pack_weights / emit, compiles a batch of kernels
 * into one shared object for a target, runs them through the kernel ABI on a thread
 * pool, and compares every output with the reference ops (converting NCHWc buffers to
 * and from plain in the harness).
 *
 * Usage:
 *   ib_kh_batch *b; ib_kh_batch_create("x86-64-v3", pool, &b);   (skip when IB_ERR_UNSUPPORTED)
 *   ib__value *x = ib_kh_input(b, 4, (int64_t[]){1, 8, 5, 5});
 *   ib__value *w = ib_kh_const(b, 4, (int64_t[]){4, 8, 3, 3}, -1, 1);
 *   ib__attr a[] = {ib_kh_attr_ints("pads", 4, (int64_t[]){1, 1, 1, 1})};
 *   ib__value *y = ib_kh_node(b, IB_OP_CONV, 11, 2, (ib__value *[]){x, w}, 1, a);
 *   ib__value *r = ib_kh_node(b, IB_OP_RELU, 14, 1, (ib__value *[]){y}, 0, NULL);
 *   ib_kh_spec s = {.tmpl = &ib__template_conv2d_nchwc, .last = r, .n_nodes = 2,
 *                   .in_layout = IB_LAYOUT_NCHWC, .out_layout = IB_LAYOUT_NCHWC};
 *   ib_kh_add(b, &s, "conv relu");
 *   int failed = ib_kh_run(b, 1e-4);          (compiles once, runs and checks every kernel)
 *   ib_kh_batch_destroy(b);
 *
 * Environment: IB_KH_KEEP=1 keeps the generated source (path printed); IB_KH_BENCH=<ms>
 * times each passing kernel for about that long and prints ms and GFLOP/s.
 *
 * Every value gets data as it is created: inputs and constants random, node outputs
 * from the reference op, so a case's expected output is known before any codegen. */
#ifndef IB_TESTS_KERNEL_HARNESS_H
#define IB_TESTS_KERNEL_HARNESS_H

#include "codegen/emit_common.h"
#include "codegen/plan.h"
#include "inferbooster/kernel_abi.h"
#include "ops/ops.h"

typedef struct ib_kh_batch ib_kh_batch;

/* A batch of kernels compiled together for one target. IB_ERR_UNSUPPORTED (and no
 * message) when code for the target cannot run on this machine: the caller skips. */
ib_status ib_kh_batch_create(const char *target_name, ib__pool *pool, ib_kh_batch **out);
/* Same, but a target the host cannot run (nor emulate) gives a compile-only batch: ib_kh_run builds
 * its kernels (catching code that does not compile for that ISA) and runs none. */
ib_status ib_kh_batch_create_ex(const char *target_name, ib__pool *pool, bool allow_compile_only,
                                ib_kh_batch **out);
void ib_kh_batch_destroy(ib_kh_batch *b);
const ib__target *ib_kh_target(const ib_kh_batch *b);
/* Floats per target vector: the default NCHWc block. */
int32_t ib_kh_block(const ib_kh_batch *b);

/* Values, owned by the batch. Inputs hold uniform random data in [-1, 1); constants in
 * [lo, hi) (value->constant set, so templates see them as weights). */
ib__value *ib_kh_input(ib_kh_batch *b, int32_t rank, const int64_t *dims);
ib__value *ib_kh_const(ib_kh_batch *b, int32_t rank, const int64_t *dims, float lo, float hi);
/* Attributes for ib_kh_node (names and lists are copied by ib_kh_node). */
ib__attr ib_kh_attr_int(const char *name, int64_t v);
ib__attr ib_kh_attr_float(const char *name, float v);
ib__attr ib_kh_attr_ints(const char *name, int32_t n, const int64_t *v);
ib__attr ib_kh_attr_string(const char *name, const char *s);
/* Adds a node (in[i] may be NULL for an omitted optional input), runs its reference op
 * on the inputs' data, and returns its first output; NULL on error (printed). */
ib__value *ib_kh_node(ib_kh_batch *b, ib__op_id op, int32_t opset, int32_t n_in,
                      ib__value *const *in, int32_t n_attrs, const ib__attr *attrs);

/* A kernel case. The fused group is the chain of the n_nodes producers ending at
 * `last` (each node's chain input is the previous node's output): anchor first, then a
 * BatchNormalization when present, then element-wise epilogue nodes. n_nodes == 0 is a
 * layout transform of `last` from in_layout to out_layout (no nodes). Rank-4 activation
 * inputs of the anchor use in_layout, the output and rank-4 FULL epilogue operands
 * out_layout; block 0 means ib_kh_block(). */
typedef struct ib_kh_spec {
    const ib__kernel_template *tmpl;
    ib__value *last;
    int32_t n_nodes;
    ib__layout in_layout, out_layout;
    int32_t block;
    int32_t n_knobs; /* overrides applied over default_knobs */
    const char *knob_name[8];
    int64_t knob_value[8];
} ib_kh_spec;

/* Builds the case's plan, checks supports() and knobs_valid(), packs weights and emits
 * the kernel into the batch's compile unit. Returns the case index, or -1 with the
 * reason printed (supports() false included). */
int32_t ib_kh_add(ib_kh_batch *b, const ib_kh_spec *spec, const char *label);
/* True when the template supports the case (no emit); for tests of refusals. */
bool ib_kh_supported(ib_kh_batch *b, const ib_kh_spec *spec);
/* Compiles the unit, runs every added case, compares against the reference with
 * max |got - want| / max(1, |want|) <= tol (and finite NCHWc padding); prints each
 * failure with its label. Returns the number of failed cases (all when the build
 * fails). Cases are cleared afterwards; values stay. */
int32_t ib_kh_run(ib_kh_batch *b, double tol);

/* True when the batch only compiles its kernels (*why: the reason, e.g. no NVIDIA
 * GPU/driver). CUDA batches compile with nvcc for sm_80 and sm_90 in one run. */
bool ib_kh_compile_only(const ib_kh_batch *b, const char **why);

/* ---- Compiled units, run here or under an emulator ---------------------------------- */
/* A unit for a target this machine cannot execute but can emulate (aarch64 under
 * qemu-aarch64 -L /usr/aarch64-linux-gnu, both found on PATH / disk) runs its kernels in
 * a small driver process (tests/kernel_driver.c, built with the target's compiler): each
 * call ships every argument buffer there and the output back. */
bool ib_kh_emulated(const ib__target *t);
/* The host runs t's code, natively or emulated. */
bool ib_kh_can_run(const ib__target *t);

typedef struct ib_kh_unit ib_kh_unit;
/* Loads `so` (native: dlopen) and finds `entry`, an int entry(int case, const
 * ib_kernel_abi *, void *const *args); IB_ERR_UNSUPPORTED when t cannot run here. */
ib_status ib_kh_unit_open(const ib__target *t, const char *so, const char *entry,
                          ib_kh_unit **out);
/* Calls case `idx`; arg_bytes[i] is the size of args[i] (what an emulated call copies),
 * out_arg the argument copied back. Returns the kernel's code (-1: the call failed). */
int ib_kh_unit_call(ib_kh_unit *u, int32_t idx, const ib_kernel_abi *abi, int32_t n_args,
                    void *const *args, const size_t *arg_bytes, int32_t out_arg);
bool ib_kh_unit_is_emulated(const ib_kh_unit *u);
void ib_kh_unit_close(ib_kh_unit *u);

/* The targets a template test runs: argv[1..] when given (a ctest entry per cross target,
 * e.g. "aarch64" under label cross), else `dflt`. A named target that cannot run here
 * (no emulator or cross compiler installed) is reported and returns false: that test
 * must fail, not skip. */
bool ib_kh_pick_targets(int argc, char **argv, const char *const *dflt, size_t n_dflt,
                        const char *const **targets, size_t *n_targets);

/* Plain NCHW <-> NCHWc (block `bl`; channels past C are zero-filled by to_nchwc). */
void ib_kh_to_nchwc(const float *plain, const int64_t *dims, int32_t bl, float *blocked);
void ib_kh_from_nchwc(const float *blocked, const int64_t *dims, int32_t bl, float *plain);

#endif /* IB_TESTS_KERNEL_HARNESS_H */
