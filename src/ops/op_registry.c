/* Builds the op-id -> definition table from the family tables (ops/ops.h). */
#include <pthread.h>

#include "ops/ops.h"

static const ib__op_def *g_table[IB_OP_COUNT];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_table(void) {
    static const ib__op_def *const families[] = {
#define IB__OP_FAMILY_REF(family) ib__ops_##family,
        IB_OP_FAMILY_LIST(IB__OP_FAMILY_REF)
#undef IB__OP_FAMILY_REF
    };
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (const ib__op_def *d = families[f]; d->op != IB_OP_UNKNOWN; d++)
            if (d->op > 0 && d->op < IB_OP_COUNT) g_table[d->op] = d;
}

const ib__op_def *ib__op_get(ib__op_id op) {
    pthread_once(&g_once, build_table);
    return (op > 0 && op < IB_OP_COUNT) ? g_table[op] : NULL;
}
