/* Graph -> kernel plan: the compiler's passes (shape specialisation, fusion, layout,
 * weight packing, memory planning) behind one entry point.
 *
 * Conventions of the plans it builds (the codegen and the runtime rely on them):
 * - bufs[0 .. n_inputs) are the model's runtime inputs (io_index = position among the
 *   graph inputs of kind IB_VALUE_INPUT) and bufs[n_inputs .. n_inputs + n_outputs) the
 *   graph outputs, in order, whether or not a kernel touches them. All buffers have
 *   concrete dims.
 * - A fallback kernel (tmpl == NULL) has one node; n_in == nodes[0]->n_inputs and
 *   in[i] is the buffer of input i, or -1 for an omitted optional input (its argument
 *   pointer is NULL); likewise n_out == nodes[0]->n_outputs and out[o] (optional outputs
 *   nobody reads still get a TEMP buffer, because the reference op writes them).
 *   Fallback kernels read and write PLAIN buffers. A graph output that is a model
 *   input, a constant, or listed twice is written by a fallback copy kernel whose node
 *   is a synthetic Identity.
 * - A layout_transform kernel (tmpl == &ib__template_layout_transform) has no nodes
 *   (n_nodes == 0, nodes == NULL): it copies in[0] to out[0], the same logical tensor in
 *   another layout. Every other kernel has nodes[0].
 * - pbuf->value points at the plan's specialised copy of the graph value (same name and
 *   index as the graph's, concrete dims, `constant` set when the data is known, possibly
 *   computed at plan time): templates must read shapes from buffers or these copies,
 *   never from the graph's values, whose batch dims may be symbolic.
 * - A fused kernel's in[] are its anchor's inputs (weights as WEIGHT buffers, possibly
 *   replaced by pack_weights), out[0] the group's final output (n_out == 1), and
 *   epilogue operands are named by epi[s].operand_buf. nodes[] lists every node the
 *   kernel computes: the anchor, then a folded BatchNormalization (Conv/Gemm anchors,
 *   constant parameters), then the epilogue's nodes (a GELU step stands for five).
 * - PER_CHANNEL operands index the output's dim 1 for Conv/ConvTranspose/pool anchors and
 *   its last dim for every other anchor; their WEIGHT is a flat [C] f32 vector whose
 *   bytes are zero-padded to a multiple of 16 channels (nbytes says so). SCALAR operands
 *   are one-element constants; FULL operands have the output's shape and layout.
 * - Decomposed LayerNorm (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add):
 *   nodes[0] is a synthetic LayerNormalization (opset 17; inputs x, gamma, beta; attrs
 *   axis = -1 and the pattern's epsilon) followed by the nine original nodes;
 *   in[] = {x, gamma, beta}. Synthetic nodes have index -1.
 * - Attention (MatMul, [Mul|Div by a constant scalar], [Add mask], Softmax on the last
 *   axis, MatMul): nodes[0] is the first MatMul; in[] = {q, k (as the MatMul reads it),
 *   v, [mask]}. Templates read the scale from nodes[1] when it is a Mul/Div.
 * - Reshape/Flatten/Squeeze/Unsqueeze/Identity of a PLAIN arena buffer produce no
 *   kernel: their output is a TEMP with alias_of = the input's buffer (same bytes). */
#ifndef IB_PASSES_COMPILE_PLAN_H
#define IB_PASSES_COMPILE_PLAN_H

#include "codegen/plan.h"

/* Where tuned knobs come from (the tuning database, src/tune/): called for every
 * template kernel after its template filled default knobs and before its weights are
 * packed; `index` is the id the kernel will have in plan->kernels. It may overwrite
 * *knobs (it must check them with the template's knobs_valid) or leave them. */
typedef struct ib__knob_source {
    void (*pick)(void *ctx, const ib__plan *plan, const ib__pkernel *k, int32_t index,
                 ib__knobs *knobs);
    void *ctx;
} ib__knob_source;

typedef struct ib__compile_options {
    /* 0: as the model says (a symbolic batch dim becomes 1); > 0: symbolic batch dims
     * (dim 0 of the inputs, and every dim sharing its name) take this value. */
    int32_t batch;
    bool allow_fallback; /* nodes no template supports run the reference op (true) */
    bool disable_fusion; /* every node its own kernel */
    const ib__knob_source *knob_source; /* NULL: the templates' default knobs */
} ib__compile_options;

/* Fills the defaults: batch 0, allow_fallback true, fusion on, default knobs. */
void ib__compile_options_init(ib__compile_options *opt);

/* Builds the plan for `graph` (never modified) on `target`. IB_ERR_UNSUPPORTED, naming
 * the value or node, when a shape stays unknown (data-dependent outputs, control flow)
 * or a node has no kernel and fallback is off: the caller then uses the reference
 * executor. opt may be NULL (defaults). */
ib_status ib__build_plan(const ib__graph *graph, const ib__target *target,
                         const ib__compile_options *opt, ib__plan **out);

#endif /* IB_PASSES_COMPILE_PLAN_H */
