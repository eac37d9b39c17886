/* Pooling geometry (pool2d.c defines it), shared by the CPU and CUDA pool templates. */
#ifndef IB_CODEGEN_TEMPLATES_POOL2D_H
#define IB_CODEGEN_TEMPLATES_POOL2D_H

#include "codegen/plan.h"

typedef struct ib__pool_geom {
    bool global, is_max, cip;
    int64_t N, C, IH, IW, OH, OW, K[2], S[2], D[2], PB[2], PE[2];
    int32_t B;
} ib__pool_geom;

/* Geometry of the MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool kernel k
 * from its attributes and buffers; checks the output dims the attributes give. */
ib_status ib__pool_geom_get(const ib__plan *plan, const ib__pkernel *k, ib__pool_geom *g);

#endif /* IB_CODEGEN_TEMPLATES_POOL2D_H */
