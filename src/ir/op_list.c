/* Op-type lookup over the single op list (ir/op_list.h). */
#include <stdlib.h>
#include <string.h>

#include "ir/op_list.h"

static const char *const op_names[IB_OP_COUNT] = {
    [IB_OP_UNKNOWN] = "<unknown>",
#define IB__OP_NAME(id, name) [IB_OP_##id] = name,
    IB_OP_LIST(IB__OP_NAME)
#undef IB__OP_NAME
};

const char *ib__op_name(ib__op_id op) {
    return (op >= 0 && op < IB_OP_COUNT) ? op_names[op] : "<invalid>";
}

/* The list is generated sorted by name, so a binary search finds the op. */
ib__op_id ib__op_lookup(const char *op_type) {
    int lo = 1, hi = IB_OP_COUNT - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(op_type, op_names[mid]);
        if (c == 0) return (ib__op_id)mid;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return IB_OP_UNKNOWN;
}
