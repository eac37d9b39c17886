/* The attention group's description (attention.c defines it), shared by the CPU and
 * CUDA attention templates: MatMul(Q, K^T) -> [Div/Mul by a constant] -> [Add mask] ->
 * Softmax(last axis) -> MatMul(., V) over [batch..., S, D]. */
#ifndef IB_CODEGEN_TEMPLATES_ATTENTION_H
#define IB_CODEGEN_TEMPLATES_ATTENTION_H

#include "codegen/plan.h"

typedef struct ib__att_desc {
    int64_t batch, S, S2, D, Dv;
    int32_t nbd; /* batch dims */
    int64_t bdims[IB_MAX_RANK];
    float scale;     /* multiply scores by this */
    bool has_mask;
    int32_t q_arg, k_arg, v_arg, m_arg;          /* indices into k->in */
    int64_t m_bstride[IB_MAX_RANK], m_row, m_col; /* mask strides (0 where broadcast) */
} ib__att_desc;

/* Recognises kernel k as the attention group (float32, plain, shapes consistent, the
 * mask broadcastable to the scores); the templates add their own size limits. */
bool ib__attention_analyze(const ib__plan *plan, const ib__pkernel *k, ib__att_desc *g);

#endif /* IB_CODEGEN_TEMPLATES_ATTENTION_H */
