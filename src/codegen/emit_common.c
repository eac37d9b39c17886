/* The prelude of generated compile units and the fused-epilogue emitter. */
#include <stdio.h>
#include <string.h>

#include "codegen/emit_common.h"

/* Vector math is written once as a macro over the vector width, so every width gets
 * the same polynomial (exp: Cody-Waite range reduction + degree-6 polynomial; erf:
 * Abramowitz-Stegun 7.1.26 refined, |err| < 1.5e-7; tanh and sigmoid through exp). */
static const char *const prelude_text =
    "#include \"inferbooster/kernel_abi.h\"\n"
    "typedef float ibv1f;\n"
    "typedef float ibv4f __attribute__((vector_size(16), aligned(4)));\n"
    "typedef float ibv8f __attribute__((vector_size(32), aligned(4)));\n"
    "typedef float ibv16f __attribute__((vector_size(64), aligned(4)));\n"
    "typedef int ibv1i;\n"
    "typedef int ibv4i __attribute__((vector_size(16), aligned(4)));\n"
    "typedef int ibv8i __attribute__((vector_size(32), aligned(4)));\n"
    "typedef int ibv16i __attribute__((vector_size(64), aligned(4)));\n"
    "#define IB_INLINE static inline __attribute__((always_inline))\n"
    /* C has no ?: on vectors (only C++ does): select through the comparison mask */
    "#define IB_SEL(W, m, a, b) ((ibv##W##f)(((ibv##W##i)(a) & (m)) | ((ibv##W##i)(b) & ~(m))))\n"
    "#define IB_DEF_VEC(W)                                                              \\\n"
    "IB_INLINE ibv##W##f ib_splat##W(float x) { return x - (ibv##W##f){0}; }            \\\n"
    "IB_INLINE ibv##W##f ib_load##W(const float *p) { return *(const ibv##W##f *)p; }   \\\n"
    "IB_INLINE void ib_store##W(float *p, ibv##W##f v) { *(ibv##W##f *)p = v; }        \\\n"
    "IB_INLINE ibv##W##f ib_max##W(ibv##W##f a, ibv##W##f b) { return IB_SEL(W, a > b, a, b); } \\\n"
    "IB_INLINE ibv##W##f ib_min##W(ibv##W##f a, ibv##W##f b) { return IB_SEL(W, a < b, a, b); } \\\n"
    "IB_INLINE ibv##W##f ib_fma##W(ibv##W##f a, ibv##W##f b, ibv##W##f c) { return a * b + c; } \\\n"
    "IB_INLINE ibv##W##f ib_exp##W(ibv##W##f x0) {                                     \\\n"
    "    ibv##W##f x = ib_min##W(ib_max##W(x0, ib_splat##W(-87.3f)), ib_splat##W(88.7f)); \\\n"
    "    ibv##W##f n = x * 1.44269504f;                                                 \\\n"
    "    n = n + IB_SEL(W, n < 0, ib_splat##W(-0.5f), ib_splat##W(0.5f));               \\\n"
    "    ibv##W##i ni = __builtin_convertvector(n, ibv##W##i);                          \\\n"
    "    ibv##W##f nf = __builtin_convertvector(ni, ibv##W##f);                         \\\n"
    "    ibv##W##f r = x - nf * 0.693359375f + nf * 2.12194440e-4f;                     \\\n"
    "    ibv##W##f p = ib_splat##W(1.9875691500e-4f);                                   \\\n"
    "    p = p * r + 1.3981999507e-3f; p = p * r + 8.3334519073e-3f;                    \\\n"
    "    p = p * r + 4.1665795894e-2f; p = p * r + 1.6666665459e-1f;                    \\\n"
    "    p = p * r + 5.0000001201e-1f; p = p * r * r + r + 1.0f;                        \\\n"
    "    ibv##W##i bits = (ni + 127) << 23;                                             \\\n"
    "    ibv##W##f scale; __builtin_memcpy(&scale, &bits, sizeof scale);                \\\n"
    "    return IB_SEL(W, x0 != x0, x0, p * scale); }  /* NaN in, NaN out */         \\\n"
    "IB_INLINE ibv##W##f ib_sigmoid##W(ibv##W##f x) { return 1.0f / (1.0f + ib_exp##W(-x)); } \\\n"
    "IB_INLINE ibv##W##f ib_tanh##W(ibv##W##f x) {                                     \\\n"
    "    ibv##W##f e = ib_exp##W(ib_min##W(x * 2.0f, ib_splat##W(88.0f)));              \\\n"
    "    return IB_SEL(W, x != x, x, (e - 1.0f) / (e + 1.0f)); }                       \\\n"
    "IB_INLINE ibv##W##f ib_erf##W(ibv##W##f x) {                                      \\\n"
    "    ibv##W##f s = IB_SEL(W, x < 0, ib_splat##W(-1.0f), ib_splat##W(1.0f));        \\\n"
    "    ibv##W##f a = x * s;                                                           \\\n"
    "    ibv##W##f t = 1.0f / (1.0f + 0.3275911f * a);                                  \\\n"
    "    ibv##W##f y = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t     \\\n"
    "                   - 0.284496736f) * t + 0.254829592f) * t;                        \\\n"
    "    return s * (1.0f - y * ib_exp##W(-a * a)); }\n"
    "IB_DEF_VEC(4)\nIB_DEF_VEC(8)\nIB_DEF_VEC(16)\n"
    "IB_INLINE float ib_splat1(float x) { return x; }\n"
    "IB_INLINE float ib_load1(const float *p) { return *p; }\n"
    "IB_INLINE void ib_store1(float *p, float v) { *p = v; }\n"
    "IB_INLINE float ib_max1(float a, float b) { return a > b ? a : b; }\n"
    "IB_INLINE float ib_min1(float a, float b) { return a < b ? a : b; }\n"
    "IB_INLINE float ib_fma1(float a, float b, float c) { return a * b + c; }\n"
    "float expf(float); float tanhf(float); float erff(float);\n"
    "IB_INLINE float ib_exp1(float x) { return expf(x); }\n"
    "IB_INLINE float ib_sigmoid1(float x) { return 1.0f / (1.0f + expf(-x)); }\n"
    "IB_INLINE float ib_tanh1(float x) { return tanhf(x); }\n"
    "IB_INLINE float ib_erf1(float x) { return erff(x); }\n";

void ib__emit_prelude(ib__sb *sb, const ib__target *target) {
    ib__sb_printf(sb, "/* Generated by InferBooster for target %s. */\n", target->name);
    ib__sb_printf(sb, "%s\n", prelude_text);
}

ib__layout ib__prefer_plain_layout(const ib__plan *plan, const ib__node *anchor,
                                   const ib__target *target, int32_t *block) {
    (void)plan;
    (void)anchor;
    (void)target;
    *block = 0;
    return IB_LAYOUT_PLAIN;
}

const ib__pbuf *ib__plain_buf(const ib__plan *plan, int32_t id) {
    if (id < 0 || id >= plan->n_bufs) return NULL;
    const ib__pbuf *b = &plan->bufs[id];
    if (b->layout != IB_LAYOUT_PLAIN || b->rank < 0 || b->rank > IB_MAX_RANK) return NULL;
    for (int32_t d = 0; d < b->rank; d++)
        if (b->dims[d] < 0 || b->dims[d] > ((int64_t)1 << 40)) return NULL;
    return b;
}

const char *ib__bits_type(ib_dtype dt) {
    switch (ib_dtype_size(dt)) {
    case 1: return "uint8_t";
    case 2: return "uint16_t";
    case 4: return "uint32_t";
    case 8: return "uint64_t";
    default: return NULL;
    }
}

void ib__no_knobs(const ib__plan *plan, const ib__pkernel *k, ib__knobs *knobs) {
    (void)plan;
    (void)k;
    (void)knobs;
}

bool ib__no_knobs_valid(const ib__plan *plan, const ib__pkernel *k, const ib__knobs *knobs) {
    (void)plan;
    (void)k;
    (void)knobs;
    return true;
}

double ib__no_flops(const ib__plan *plan, const ib__pkernel *k) {
    (void)plan;
    (void)k;
    return 0.0;
}

void ib__emit_copy_entry(ib__sb *sb, const char *fn, const char *prologue, long long items,
                         unsigned long long bytes) {
    ib__sb_line(sb, "static int %s(const ib_kernel_abi *abi, void *const *args) {", fn);
    if (prologue) ib__sb_printf(sb, "%s", prologue);
    if (items <= 0)
        ib__sb_line(sb, "    (void)abi; (void)args;");
    else if (bytes < 64 * 1024 || items < 2)
        ib__sb_line(sb, "    (void)abi;\n    %s_body((void *)args, 0, %lld);", fn, items);
    else
        ib__sb_line(sb, "    abi->parallel_for(abi->pool, %lld, %s_body, (void *)args);", items, fn);
    ib__sb_line(sb, "    return 0;");
    ib__sb_line(sb, "}");
}

bool ib__epilogue_supports_op(ib__op_id op, ib__epi_kind kind) {
    if (kind == IB_EPI_BINARY)
        return op == IB_OP_ADD || op == IB_OP_SUB || op == IB_OP_MUL || op == IB_OP_DIV ||
               op == IB_OP_MAX || op == IB_OP_MIN;
    switch (op) {
    case IB_OP_RELU:
    case IB_OP_LEAKY_RELU:
    case IB_OP_CLIP:
    case IB_OP_SIGMOID:
    case IB_OP_HARD_SIGMOID:
    case IB_OP_HARD_SWISH:
    case IB_OP_TANH:
    case IB_OP_ERF:
    case IB_OP_GELU:
    case IB_OP_IDENTITY:
        return true;
    default:
        return false;
    }
}

const char *ib__float_literal(char *buf, size_t n, float v) {
    char t[40];
    snprintf(t, sizeof t, "%.9g", (double)v);
    snprintf(buf, n, "(%s%sf)", t, strpbrk(t, ".eEn") ? "" : ".0");
    return buf;
}

ib_status ib__emit_epilogue(ib__sb *sb, const ib__pkernel *k, int32_t first_arg, const char *var,
                            int32_t lanes, const char *ch_expr, bool ch_per_lane,
                            const char *elem_expr) {
    int W = lanes;
    for (int32_t s = 0; s < k->n_epi; s++) {
        const ib__epilogue_step *e = &k->epi[s];
        char fa[48], fb[48];
        if (e->kind == IB_EPI_UNARY) {
            switch (e->op) {
            case IB_OP_RELU:
                ib__sb_line(sb, "%s = ib_max%d(%s, ib_splat%d(0.0f));", var, W, var, W);
                break;
            case IB_OP_LEAKY_RELU:
                ib__sb_line(sb, "%s = ib_max%d(%s, ib_splat%d(0.0f)) + ib_min%d(%s, ib_splat%d(0.0f)) * %s;",
                            var, W, var, W, W, var, W, ib__float_literal(fa, sizeof fa, e->alpha));
                break;
            case IB_OP_CLIP:
                ib__sb_line(sb, "%s = ib_min%d(ib_max%d(%s, ib_splat%d(%s)), ib_splat%d(%s));",
                            var, W, W, var, W, ib__float_literal(fa, sizeof fa, e->alpha), W,
                            ib__float_literal(fb, sizeof fb, e->beta));
                break;
            case IB_OP_SIGMOID:
                ib__sb_line(sb, "%s = ib_sigmoid%d(%s);", var, W, var);
                break;
            case IB_OP_HARD_SIGMOID:
                ib__sb_line(sb,
                            "%s = ib_min%d(ib_max%d(%s * %s + %s, ib_splat%d(0.0f)), "
                            "ib_splat%d(1.0f));",
                            var, W, W, var, ib__float_literal(fa, sizeof fa, e->alpha),
                            ib__float_literal(fb, sizeof fb, e->beta), W, W);
                break;
            case IB_OP_HARD_SWISH:
                ib__sb_line(sb,
                            "%s = %s * ib_min%d(ib_max%d(%s * (1.0f / 6.0f) + 0.5f, "
                            "ib_splat%d(0.0f)), ib_splat%d(1.0f));",
                            var, var, W, W, var, W, W);
                break;
            case IB_OP_TANH:
                ib__sb_line(sb, "%s = ib_tanh%d(%s);", var, W, var);
                break;
            case IB_OP_ERF:
                ib__sb_line(sb, "%s = ib_erf%d(%s);", var, W, var);
                break;
            case IB_OP_GELU: /* exact (erf) form */
                ib__sb_line(sb, "%s = 0.5f * %s * (1.0f + ib_erf%d(%s * 0.70710678f));", var, var,
                            W, var);
                break;
            case IB_OP_IDENTITY:
                break;
            default:
                return ib__error(IB_ERR_INTERNAL, "epilogue: unsupported unary op %s",
                                 ib__op_name(e->op));
            }
            continue;
        }
        char operand[256];
        const int arg = first_arg + s;
        switch (e->operand_kind) {
        case IB_EPI_SCALAR:
            snprintf(operand, sizeof operand, "ib_splat%d(((const float *)args[%d])[0])", W, arg);
            break;
        case IB_EPI_PER_CHANNEL:
            if (ch_per_lane)
                snprintf(operand, sizeof operand, "ib_load%d((const float *)args[%d] + (%s))", W,
                         arg, ch_expr);
            else
                snprintf(operand, sizeof operand, "ib_splat%d(((const float *)args[%d])[%s])", W,
                         arg, ch_expr);
            break;
        case IB_EPI_FULL:
            snprintf(operand, sizeof operand, "ib_load%d((const float *)args[%d] + (%s))", W, arg,
                     elem_expr);
            break;
        }
        const char *a = e->operand_first ? operand : var;
        const char *b = e->operand_first ? var : operand;
        switch (e->op) {
        case IB_OP_ADD: ib__sb_line(sb, "%s = %s + %s;", var, a, b); break;
        case IB_OP_SUB: ib__sb_line(sb, "%s = %s - %s;", var, a, b); break;
        case IB_OP_MUL: ib__sb_line(sb, "%s = %s * %s;", var, a, b); break;
        case IB_OP_DIV: ib__sb_line(sb, "%s = %s / %s;", var, a, b); break;
        case IB_OP_MAX: ib__sb_line(sb, "%s = ib_max%d(%s, %s);", var, W, a, b); break;
        case IB_OP_MIN: ib__sb_line(sb, "%s = ib_min%d(%s, %s);", var, W, a, b); break;
        default:
            return ib__error(IB_ERR_INTERNAL, "epilogue: unsupported binary op %s",
                             ib__op_name(e->op));
        }
    }
    return ib__sb_status(sb);
}
