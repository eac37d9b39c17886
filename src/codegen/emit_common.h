/* What every generated compile unit shares: the prelude (vector types and inline math
 * the kernels use) and the epilogue emitter that applies fused element-wise steps. */
#ifndef IB_CODEGEN_EMIT_COMMON_H
#define IB_CODEGEN_EMIT_COMMON_H

#include "codegen/plan.h"

/* Emits the prelude: #include "inferbooster/kernel_abi.h", then for W in {1, 4, 8, 16}
 * the float vector type `ibv<W>f` (W = 1 is plain float; the others are GCC vector
 * types that may be unaligned), and inline functions for each W:
 *   ibv<W>f ib_splat<W>(float x), ib_load<W>(const float *p), void ib_store<W>(float *p, v),
 *   ib_max<W>(a, b), ib_min<W>(a, b), ib_exp<W>(v), ib_sigmoid<W>(v), ib_tanh<W>(v),
 *   ib_erf<W>(v), ib_fma<W>(a, b, c) (a*b+c).
 * Templates use only these names and plain C. */
void ib__emit_prelude(ib__sb *sb, const ib__target *target);

/* Emits statements applying k's epilogue steps to variable `var` (type ibv<lanes>f).
 * Operand buffers are args[first_arg + step] as float pointers. A PER_CHANNEL operand
 * is read at index `ch_expr`: with ch_per_lane its lanes are consecutive channels
 * (vector load), otherwise one channel for all lanes (splat). A FULL operand is read
 * at index `elem_expr` (lanes consecutive). SCALAR operands splat element 0. */
ib_status ib__emit_epilogue(ib__sb *sb, const ib__pkernel *k, int32_t first_arg, const char *var,
                            int32_t lanes, const char *ch_expr, bool ch_per_lane,
                            const char *elem_expr);

/* v as a C float literal in buf, e.g. "(4.0f)" ("%.9gf" alone would write the invalid
 * "4f"); returns buf. */
const char *ib__float_literal(char *buf, size_t n, float v);
/* preferred_layout of the templates that read and write plain row-major buffers only. */
ib__layout ib__prefer_plain_layout(const ib__plan *plan, const ib__node *anchor,
                                   const ib__target *target, int32_t *block);

/* Buffer `id` of the plan when it is a valid id of a PLAIN buffer whose dims are all
 * known, else NULL (data-movement templates take only those). */
const ib__pbuf *ib__plain_buf(const ib__plan *plan, int32_t id);
/* The C type that moves one element of `dt` bit for bit ("uint32_t" for float32,
 * "uint8_t" for bool), or NULL for sizes other than 1, 2, 4 and 8 bytes. */
const char *ib__bits_type(ib_dtype dt);

/* default_knobs, knobs_valid and flops of the templates that only move data: one pass
 * over memory, nothing to tune, no floating-point work. */
void ib__no_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs);
bool ib__no_knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs);
double ib__no_flops(const ib__plan *plan, const ib__pkernel *k);
/* Emits a data-movement kernel's entry `static int <fn>(abi, args)`: the statements of
 * `prologue` (NULL: none; it may `return` an IB_KERNEL_ERR_* code), then `<fn>_body(args,
 * 0, items)`, on the calling thread when the kernel moves fewer than 64 KiB (waking the
 * other threads costs more), else through abi->parallel_for. */
void ib__emit_copy_entry(ib__sb *sb, const char *fn, const char *prologue, long long items,
                         unsigned long long bytes);

/* The template of a kernel that only moves data: plain layouts, nothing to tune. */
#define IB_DATA_MOVEMENT_TEMPLATE(id, supports_fn, emit_fn) \
    const ib__kernel_template ib__template_##id = {         \
        .name = #id,                                         \
        .supports = supports_fn,                             \
        .preferred_layout = ib__prefer_plain_layout,         \
        .default_knobs = ib__no_knobs,                       \
        .knobs_valid = ib__no_knobs_valid,                   \
        .pack_weights = NULL,                                \
        .emit = emit_fn,                                     \
        .flops = ib__no_flops,                               \
    }

/* True when `op` can be an epilogue step (the fusion pass asks). */
bool ib__epilogue_supports_op(ib__op_id op, ib__epi_kind kind);

/* The anchor node of an element-wise chain as a step, with the attributes the reference
 * op reads (LeakyRelu/HardSigmoid alpha and beta, Clip bounds from attributes or constant
 * inputs, exact GELU only); ops for which extra_op is true are unary steps the caller's
 * emitter handles itself (*extra set). False when the node cannot be one. Shared by the
 * CPU and CUDA eltwise templates (templates/eltwise.c). */
bool ib__eltwise_anchor_step(const ib__node *n, bool (*extra_op)(ib__op_id op),
                             ib__epilogue_step *e, bool *extra);

#endif /* IB_CODEGEN_EMIT_COMMON_H */
