/* Kernel template cast: ONNX Cast between the dtypes whose C conversion is exactly the
 * reference op's (integers and bool to float32/float64, float32 <-> float64, integer to
 * integer, anything to bool), as one vectorisable loop. Float to integer stays with the
 * reference op, which defines NaN and out-of-range results that C leaves undefined. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"

/* The C type holding one element of `dt` as a number, or NULL. */
static const char *value_type(ib_dtype dt) {
    switch (dt) {
    case IB_DTYPE_FLOAT32: return "float";
    case IB_DTYPE_FLOAT64: return "double";
    case IB_DTYPE_INT8: return "int8_t";
    case IB_DTYPE_UINT8: return "uint8_t";
    case IB_DTYPE_INT16: return "int16_t";
    case IB_DTYPE_UINT16: return "uint16_t";
    case IB_DTYPE_INT32: return "int32_t";
    case IB_DTYPE_UINT32: return "uint32_t";
    case IB_DTYPE_INT64: return "int64_t";
    case IB_DTYPE_UINT64: return "uint64_t";
    case IB_DTYPE_BOOL: return "uint8_t";
    default: return NULL;
    }
}

static bool is_float(ib_dtype dt) { return dt == IB_DTYPE_FLOAT32 || dt == IB_DTYPE_FLOAT64; }

static bool analyze(const ib__plan *plan, const ib__pkernel *k, ib_dtype *from, ib_dtype *to,
                    int64_t *count) {
    if (k->n_nodes != 1 || k->nodes[0]->op != IB_OP_CAST || k->n_in != 1 || k->n_out != 1 ||
        k->n_epi != 0)
        return false;
    const ib__pbuf *x = ib__plain_buf(plan, k->in[0]), *y = ib__plain_buf(plan, k->out[0]);
    if (!x || !y || !value_type(x->dtype) || !value_type(y->dtype)) return false;
    *count = ib__shape_count(x->dims, x->rank);
    if (*count < 0 || *count != ib__shape_count(y->dims, y->rank)) return false;
    *from = x->dtype;
    *to = y->dtype;
    /* float -> integer: the reference saturates and maps NaN; C does neither */
    if (is_float(*from) && !is_float(*to) && *to != IB_DTYPE_BOOL) return false;
    return true;
}

static bool supports(const ib__plan *plan, const ib__pkernel *k) {
    ib_dtype f, t;
    int64_t n;
    return analyze(plan, k, &f, &t, &n);
}

enum { CAST_CHUNK = 4096 }; /* elements per parallel item */

static ib_status emit(const ib__plan *plan, const ib__pkernel *k, ib__sb *sb) {
    ib_dtype f, t;
    int64_t n;
    if (!analyze(plan, k, &f, &t, &n))
        return ib__error(IB_ERR_INTERNAL, "cast: unsupported kernel %s", k->fn_name);
    const char *fn = k->fn_name, *X = value_type(f), *Y = value_type(t);
    const long long count = (long long)n, chunks = (count + CAST_CHUNK - 1) / CAST_CHUNK;
    ib__sb_line(sb, "/* %s: cast of %lld elements, %s -> %s */", fn, count, ib_dtype_name(f),
                ib_dtype_name(t));
    ib__sb_line(sb, "static void %s_body(void *vctx, int64_t begin, int64_t end) {", fn);
    sb->indent += 4;
    ib__sb_line(sb, "void *const *args = (void *const *)vctx;");
    ib__sb_line(sb, "const %s *restrict x = (const %s *)args[0];", X, X);
    ib__sb_line(sb, "%s *restrict y = (%s *)args[1];", Y, Y);
    ib__sb_line(sb, "const int64_t hi = end * %d < %lld ? end * %d : %lld;", CAST_CHUNK, count,
                CAST_CHUNK, count);
    if (t == IB_DTYPE_BOOL)
        ib__sb_line(sb, "for (int64_t i = begin * %d; i < hi; i++) y[i] = x[i] != 0;", CAST_CHUNK);
    else if (f == IB_DTYPE_BOOL)
        ib__sb_line(sb, "for (int64_t i = begin * %d; i < hi; i++) y[i] = (%s)(x[i] != 0);",
                    CAST_CHUNK, Y);
    else if (f == IB_DTYPE_UINT64 && t == IB_DTYPE_FLOAT32) /* through double, as the reference */
        ib__sb_line(sb, "for (int64_t i = begin * %d; i < hi; i++) y[i] = (float)(double)x[i];",
                    CAST_CHUNK);
    else
        ib__sb_line(sb, "for (int64_t i = begin * %d; i < hi; i++) y[i] = (%s)x[i];", CAST_CHUNK, Y);
    sb->indent -= 4;
    ib__sb_line(sb, "}");
    ib__emit_copy_entry(sb, fn, NULL, chunks, (unsigned long long)plan->bufs[k->out[0]].nbytes);
    return ib__sb_status(sb);
}

IB_DATA_MOVEMENT_TEMPLATE(cast, supports, emit);
