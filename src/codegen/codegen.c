/* Code generation for a kernel plan: compile units of template kernels (static, with
 * exported ib_k<N> wrappers), the main unit (ib_model_run calling every kernel in plan
 * order, fallback steps through abi->fallback, the I/O table, sizes and metadata JSON),
 * and the build of all of them into a shared object. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda_codegen.h"
#include "codegen/emit_common.h"
#include "codegen/toolchain.h"
#include "ir/graph_stats.h"
#include "inferbooster/kernel_abi.h"

enum { KERNELS_PER_UNIT = 12 };

/* ---- Plan queries -------------------------------------------------------------------- */

static const ib__value *model_input_value(const ib__plan *plan, int32_t i) {
    int32_t seen = 0;
    for (int32_t k = 0; k < plan->graph->n_inputs; k++) {
        const ib__value *v = plan->graph->inputs[k];
        if (v->kind != IB_VALUE_INPUT) continue;
        if (seen++ == i) return v;
    }
    return NULL;
}

static int32_t find_io_buf(const ib__plan *plan, ib__buf_kind kind, int32_t index) {
    for (int32_t b = 0; b < plan->n_bufs; b++)
        if (plan->bufs[b].kind == kind && plan->bufs[b].io_index == index) return b;
    return -1;
}

static int64_t entry_bytes(const ib__rt_io_entry *e) {
    for (int32_t d = 0; d < e->rank; d++)
        if (e->dims[d] < 0) return -1;
    int64_t n = ib__shape_count(e->dims, e->rank);
    return n < 0 ? -1 : n * (int64_t)ib_dtype_size((ib_dtype)e->dtype);
}

static void entry_from_buf(const ib__pbuf *b, ib__rt_io_entry *e) {
    e->dtype = (int32_t)b->dtype;
    e->rank = b->rank;
    for (int32_t d = 0; d < b->rank; d++) e->dims[d] = b->dims[d];
}

static void entry_from_value(const ib__value *v, ib__rt_io_entry *e) {
    e->dtype = (int32_t)v->dtype;
    e->rank = v->rank < 0 ? 0 : v->rank;
    for (int32_t d = 0; d < e->rank; d++) e->dims[d] = v->dims[d];
}

ib_status ib__codegen_io_entry(const ib__plan *plan, bool output, int32_t i,
                               ib__rt_io_entry *out) {
    ib__rt_io_entry e;
    memset(&e, 0, sizeof e);
    if (!output) {
        const ib__value *v = model_input_value(plan, i);
        if (!v) return ib__error(IB_ERR_INTERNAL, "plan input %d is not a model input", i);
        e.name = v->name;
        int32_t b = find_io_buf(plan, IB_BUF_INPUT, i);
        if (b >= 0) entry_from_buf(&plan->bufs[b], &e);
        else entry_from_value(v, &e);
    } else {
        if (i < 0 || i >= plan->graph->n_outputs)
            return ib__error(IB_ERR_INTERNAL, "plan output %d is not a model output", i);
        const ib__value *v = plan->graph->outputs[i];
        e.name = v->name;
        int32_t w, c;
        IB_TRY(ib__codegen_output_source(plan, i, &w, &c));
        entry_from_buf(&plan->bufs[w >= 0 ? w : c], &e);
    }
    e.nbytes = entry_bytes(&e);
    *out = e;
    return IB_OK;
}

ib_status ib__codegen_output_source(const ib__plan *plan, int32_t i, int32_t *write_buf,
                                    int32_t *copy_from) {
    int32_t w = find_io_buf(plan, IB_BUF_OUTPUT, i);
    int32_t c = -1;
    if (w < 0 && i >= 0 && i < plan->graph->n_outputs) {
        const ib__value *v = plan->graph->outputs[i];
        /* Prefer a buffer kernels fill (another output of the same value), then any. */
        for (int32_t b = 0; b < plan->n_bufs && c < 0; b++)
            if (plan->bufs[b].value == v && plan->bufs[b].kind == IB_BUF_OUTPUT) c = b;
        for (int32_t b = 0; b < plan->n_bufs && c < 0; b++)
            if (plan->bufs[b].value == v && plan->bufs[b].layout == IB_LAYOUT_PLAIN) c = b;
    }
    if (w < 0 && c < 0)
        return ib__error(IB_ERR_UNSUPPORTED, "the plan does not produce model output %d", i);
    if (c >= 0 && plan->bufs[c].layout != IB_LAYOUT_PLAIN)
        return ib__error(IB_ERR_UNSUPPORTED, "model output %d comes from a blocked buffer", i);
    *write_buf = w;
    *copy_from = c;
    return IB_OK;
}

int32_t ib__codegen_fallback_count(const ib__plan *plan) {
    int32_t n = 0;
    for (int32_t k = 0; k < plan->n_kernels; k++)
        if (!plan->kernels[k].tmpl) n++;
    return n;
}

bool ib__codegen_gpu_worthwhile(const ib__plan *plan) {
    if (!plan || !ib__target_is_cuda(&plan->target)) return false;
    double flops = 0.0;
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        const ib__pkernel *pk = &plan->kernels[k];
        if (!pk->tmpl || !pk->tmpl->launch) return false;
        if (pk->tmpl->flops) flops += pk->tmpl->flops(plan, pk);
    }
    return flops >= IB_GPU_MIN_FLOPS;
}

int64_t ib__codegen_plan_batch(const ib__plan *plan) {
    for (int32_t i = 0; i < plan->n_inputs; i++) {
        const ib__value *v = model_input_value(plan, i);
        int32_t b = find_io_buf(plan, IB_BUF_INPUT, i);
        if (v && b >= 0 && v->rank >= 1 && v->dims[0] < 0 && plan->bufs[b].rank >= 1)
            return plan->bufs[b].dims[0];
    }
    return 0;
}

/* ---- Text helpers -------------------------------------------------------------------- */

static void json_str(ib__sb *sb, const char *s) {
    ib__sb_printf(sb, "\"");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') ib__sb_printf(sb, "\\%c", *p);
        else if (*p < 0x20) ib__sb_printf(sb, "\\u%04x", *p);
        else ib__sb_printf(sb, "%c", *p);
    }
    ib__sb_printf(sb, "\"");
}

/* A name safe inside a C comment: printable ASCII, no comment terminators. */
static const char *comment_safe(const char *s, char *buf, size_t cap) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p && n + 1 < cap; p++) {
        char c = (*p >= 0x20 && *p < 0x7f) ? (char)*p : '?';
        if (c == '/' && n > 0 && buf[n - 1] == '*') c = '|';
        if (c == '*' && p[1] == '/') c = '+';
        buf[n++] = c;
    }
    buf[n] = '\0';
    if (n == 0) snprintf(buf, cap, "(unnamed)");
    return buf;
}

static void dims_text(const int64_t *dims, int32_t rank, char *buf, size_t cap) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int32_t d = 0; d < rank && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)dims[d]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

/* JSON text as a C string literal, in lines of about 100 bytes. */
static void c_string_literal(ib__sb *sb, const char *text, size_t len) {
    ib__sb_printf(sb, "\"");
    size_t col = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') ib__sb_printf(sb, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f || c == '?') ib__sb_printf(sb, "\\%03o", c);
        else ib__sb_printf(sb, "%c", c);
        if (++col >= 100 && i + 1 < len) {
            ib__sb_printf(sb, "\"\n    \"");
            col = 0;
        }
    }
    ib__sb_printf(sb, "\"");
}

/* ---- Metadata -------------------------------------------------------------------------- */

static void json_io(ib__sb *sb, const ib__plan *plan, bool output, int32_t n) {
    ib__sb_printf(sb, "[");
    for (int32_t i = 0; i < n; i++) {
        ib__rt_io_entry e;
        if (ib__codegen_io_entry(plan, output, i, &e) != IB_OK) continue;
        ib__sb_printf(sb, "%s{\"name\": ", i ? ", " : "");
        json_str(sb, e.name);
        ib__sb_printf(sb, ", \"dtype\": \"%s\", \"shape\": [", ib_dtype_name((ib_dtype)e.dtype));
        for (int32_t d = 0; d < e.rank; d++)
            ib__sb_printf(sb, "%s%lld", d ? ", " : "", (long long)e.dims[d]);
        ib__sb_printf(sb, "]}");
    }
    ib__sb_printf(sb, "]");
}

ib_status ib__codegen_meta_json(const ib__plan *plan, ib__sb *sb) {
    int32_t fused = 0, fallback = 0;
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        if (!plan->kernels[k].tmpl) fallback++;
        if (plan->kernels[k].n_nodes > 1) fused++;
    }
    ib__sb_printf(sb, "{\n  \"format\": \"inferbooster-artifact\",\n");
    ib__sb_printf(sb, "  \"compiler_version\": \"%s\",\n  \"abi_version\": %u,\n",
                  IB_VERSION_STRING, (unsigned)IB_KERNEL_ABI_VERSION);
    ib__sb_printf(sb, "  \"target\": {\"name\": ");
    json_str(sb, plan->target.name);
    ib__sb_printf(sb, ", \"vector_bits\": %d, \"cc\": ", plan->target.vector_bits);
    json_str(sb, plan->target.cc);
    if (ib__target_is_cuda(&plan->target)) {
        static const char *const precisions[] = {"fp32", "tf32", "fp16", "bf16"};
        ib__sb_printf(sb, ", \"device\": \"cuda\", \"cuda_sm\": %d, \"precision\": \"%s\"",
                      (int)plan->target.cuda_sm, precisions[plan->target.precision & 3]);
    }
    ib__sb_printf(sb, "},\n  \"batch\": %lld,\n", (long long)ib__codegen_plan_batch(plan));
    ib__sb_printf(sb, "  \"inputs\": ");
    json_io(sb, plan, false, plan->n_inputs);
    ib__sb_printf(sb, ",\n  \"outputs\": ");
    json_io(sb, plan, true, plan->n_outputs);
    ib__sb_printf(sb, ",\n  \"arena_bytes\": %zu,\n  \"weights_bytes\": %zu,\n",
                  plan->arena_bytes, plan->weights_bytes);
    ib__sb_printf(sb, "  \"kernel_count\": %d,\n  \"fused_kernels\": %d,\n  \"fallback_kernels\": %d,\n",
                  plan->n_kernels, fused, fallback);
    ib__sb_printf(sb, "  \"kernels\": [");
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        const ib__pkernel *pk = &plan->kernels[k];
        ib__sb_printf(sb, "%s\n    {\"index\": %d, \"template\": ", k ? "," : "", k);
        if (pk->tmpl) json_str(sb, pk->tmpl->name);
        else ib__sb_printf(sb, "null");
        ib__sb_printf(sb, ", \"nodes\": [");
        for (int32_t n = 0; n < pk->n_nodes; n++) {
            ib__sb_printf(sb, "%s", n ? ", " : "");
            json_str(sb, pk->nodes[n]->name);
        }
        ib__sb_printf(sb, "], \"ops\": [");
        for (int32_t n = 0; n < pk->n_nodes; n++) {
            ib__sb_printf(sb, "%s", n ? ", " : "");
            json_str(sb, pk->nodes[n]->op_type);
        }
        ib__sb_printf(sb, "], \"epilogue\": %d, \"knobs\": {", pk->n_epi);
        for (int32_t i = 0; i < pk->knobs.n; i++) {
            ib__sb_printf(sb, "%s", i ? ", " : "");
            json_str(sb, pk->knobs.name[i]);
            ib__sb_printf(sb, ": %lld", (long long)pk->knobs.value[i]);
        }
        double flops = pk->tmpl && pk->tmpl->flops ? pk->tmpl->flops(plan, pk) : 0.0;
        ib__sb_printf(sb, "}, \"flops\": %.0f}", flops);
    }
    ib__sb_printf(sb, "\n  ]\n}\n");
    return ib__sb_status(sb);
}

/* ---- Compile units ------------------------------------------------------------------------ */

/* The C expression for buffer b's address inside ib_model_run. */
static void buf_expr(const ib__plan *plan, int32_t b, char *buf, size_t cap) {
    for (int depth = 0; b >= 0 && depth < 64; depth++) {
        const ib__pbuf *pb = &plan->bufs[b];
        if (pb->alias_of >= 0 && pb->alias_of != b) {
            b = pb->alias_of;
            continue;
        }
        switch (pb->kind) {
        case IB_BUF_INPUT: snprintf(buf, cap, "inputs[%d]", pb->io_index); return;
        case IB_BUF_OUTPUT: snprintf(buf, cap, "outputs[%d]", pb->io_index); return;
        case IB_BUF_TEMP: snprintf(buf, cap, "(void *)(A + %lld)", (long long)pb->offset); return;
        case IB_BUF_WEIGHT:
            snprintf(buf, cap, "(void *)(W + %lld)", (long long)pb->offset);
            return;
        }
    }
    snprintf(buf, cap, "(void *)0");
}

static void kernel_comment(ib__sb *sb, const ib__plan *plan, int32_t k) {
    const ib__pkernel *pk = &plan->kernels[k];
    char name[128], dims[160];
    ib__sb_line(sb, "/* kernel %d: %s", k, pk->tmpl ? pk->tmpl->name : "fallback (reference op)");
    for (int32_t n = 0; n < pk->n_nodes; n++)
        ib__sb_line(sb, " *   node '%s' (%s)", comment_safe(pk->nodes[n]->name, name, sizeof name),
                    comment_safe(pk->nodes[n]->op_type, dims, sizeof dims));
    for (int32_t a = 0; a < pk->n_in + pk->n_out; a++) {
        int32_t b = a < pk->n_in ? pk->in[a] : pk->out[a - pk->n_in];
        if (b < 0) continue;
        const ib__pbuf *pb = &plan->bufs[b];
        dims_text(pb->dims, pb->rank, dims, sizeof dims);
        static const char *const layouts[] = {"plain", "nchwc", "packed"};
        ib__sb_line(sb, " *   %s %d: %s %s %s%s", a < pk->n_in ? "in " : "out", b,
                    ib_dtype_name(pb->dtype), dims,
                    pb->layout <= IB_LAYOUT_PACKED ? layouts[pb->layout] : "?",
                    pb->layout == IB_LAYOUT_NCHWC ? " (blocked)" : "");
    }
    if (pk->n_epi) ib__sb_line(sb, " *   epilogue: %d fused step(s)", pk->n_epi);
    if (pk->knobs.n) {
        ib__sb_printf(sb, " *   knobs:");
        for (int32_t i = 0; i < pk->knobs.n; i++)
            ib__sb_printf(sb, " %s=%lld", pk->knobs.name[i], (long long)pk->knobs.value[i]);
        ib__sb_printf(sb, "\n");
    }
    ib__sb_line(sb, " */");
}

static ib_status write_file(const char *path, const ib__sb *sb) {
    FILE *f = fopen(path, "w");
    if (!f) return ib__error(IB_ERR_IO, "cannot write '%s'", path);
    size_t n = fwrite(sb->data, 1, sb->len, f);
    int rc = fclose(f);
    if (n != sb->len || rc != 0) return ib__error(IB_ERR_IO, "cannot write '%s'", path);
    return IB_OK;
}

/* A kernel as its template sees it: with a function name when the plan left it empty. */
static void named_kernel(const ib__pkernel *pk, int32_t k, ib__pkernel *out) {
    *out = *pk;
    if (!out->fn_name[0]) snprintf(out->fn_name, sizeof out->fn_name, "kernel_%d", k);
}

static ib_status emit_unit(const ib__plan *plan, const int32_t *ks, int32_t n, ib__sb *sb) {
    ib__emit_prelude(sb, &plan->target);
    for (int32_t i = 0; i < n; i++) {
        int32_t k = ks[i];
        ib__pkernel pk;
        named_kernel(&plan->kernels[k], k, &pk);
        ib__sb_printf(sb, "\n");
        kernel_comment(sb, plan, k);
        if (!pk.tmpl->emit)
            return ib__error(IB_ERR_INTERNAL, "template %s has no emitter", pk.tmpl->name);
        ib_status st = pk.tmpl->emit(plan, &pk, sb);
        if (st) return ib__error_prefix(st, "kernel %d (%s): ", k, pk.tmpl->name);
        ib__sb_line(sb, "int ib_k%d(const ib_kernel_abi *abi, void *const *args);", k);
        ib__sb_line(sb, "int ib_k%d(const ib_kernel_abi *abi, void *const *args) { return %s(abi, args); }",
                    k, pk.fn_name);
    }
    return ib__sb_status(sb);
}

/* ib_model_kernels[]: a label and the FLOPs of every plan step, for profiles. */
static ib_status emit_kernel_table(const ib__plan *plan, ib__sb *sb) {
    ib__sb_printf(sb, "const ib_model_kernel_info ib_model_kernels[%d] = {\n", plan->n_kernels + 1);
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        const ib__pkernel *pk = &plan->kernels[k];
        const char *what = "-";
        if (pk->n_nodes) what = pk->nodes[0]->name[0] ? pk->nodes[0]->name : pk->nodes[0]->op_type;
        char label[200];
        if (pk->n_nodes > 1)
            snprintf(label, sizeof label, "%s: %s (+%d)", pk->tmpl ? pk->tmpl->name : "fallback",
                     what, pk->n_nodes - 1);
        else
            snprintf(label, sizeof label, "%s: %s", pk->tmpl ? pk->tmpl->name : "fallback", what);
        double flops = 0.0;
        if (pk->tmpl && pk->tmpl->flops) flops = pk->tmpl->flops(plan, pk);
        else if (!pk->tmpl && pk->n_nodes && !ib__node_flops(pk->nodes[0], &flops)) flops = 0.0;
        ib__sb_printf(sb, "    {");
        c_string_literal(sb, label, strlen(label));
        ib__sb_printf(sb, ", %.0f},\n", flops);
    }
    ib__sb_printf(sb, "    {0, 0}\n};\n\n");
    return ib__sb_status(sb);
}

static ib_status emit_main(const ib__plan *plan, ib__sb *sb) {
    char expr[96];
    ib__sb_printf(sb, "/* Generated by InferBooster %s for target %s: the model's entry point, its\n"
                      " * I/O table and metadata. Kernels live in the unit_*.c files. */\n",
                  IB_VERSION_STRING, plan->target.name);
    ib__sb_printf(sb, "#include \"inferbooster/kernel_abi.h\"\n\n");
    for (int32_t k = 0; k < plan->n_kernels; k++)
        if (plan->kernels[k].tmpl)
            ib__sb_line(sb, "int ib_k%d(const ib_kernel_abi *abi, void *const *args);", k);
    ib__sb_printf(sb, "\nconst uint32_t ib_model_abi_version = %uu;\n", (unsigned)IB_KERNEL_ABI_VERSION);
    ib__sb_printf(sb, "const char ib_model_target[] = ");
    c_string_literal(sb, plan->target.name, strlen(plan->target.name));
    ib__sb_printf(sb, ";\n");
    ib__sb_printf(sb, "const uint64_t ib_model_sizes[%d] = {%zuu, %zuu, %du, %du, %lldu, 0x%016llxu};\n",
                  IB_RT_SIZE_COUNT, plan->arena_bytes, plan->weights_bytes, plan->n_kernels,
                  ib__codegen_fallback_count(plan), (long long)ib__codegen_plan_batch(plan),
                  (unsigned long long)ib__rt_weights_hash(plan->weights, plan->weights_bytes));
    /* What the plan was specialised for, so a rebuild elsewhere picks the same knobs. */
    const ib__target *t = &plan->target;
    ib__sb_printf(sb, "const int64_t ib_model_target_desc[%d] = {%d, %d, %d, %lld, %lld, %lld, %d};\n",
                  IB_RT_TARGET_COUNT, t->vector_bits, t->vector_regs, t->has_fma ? 1 : 0,
                  (long long)t->l1d_bytes, (long long)t->l2_bytes, (long long)t->l3_bytes,
                  t->num_cores);
    /* Same layout as ib__rt_io_entry (runtime/runtime.h). */
    ib__sb_printf(sb, "\ntypedef struct { const char *name; int32_t dtype, rank; int64_t dims[%d]; "
                      "int64_t nbytes; } ib_model_io_entry;\n", IB_MAX_RANK);
    ib__sb_printf(sb, "const int32_t ib_model_n_io[2] = {%d, %d};\n", plan->n_inputs, plan->n_outputs);
    ib__sb_printf(sb, "const ib_model_io_entry ib_model_io[%d] = {\n",
                  plan->n_inputs + plan->n_outputs + 1);
    for (int32_t i = 0; i < plan->n_inputs + plan->n_outputs; i++) {
        bool out = i >= plan->n_inputs;
        ib__rt_io_entry e;
        IB_TRY(ib__codegen_io_entry(plan, out, out ? i - plan->n_inputs : i, &e));
        ib__sb_printf(sb, "    {");
        c_string_literal(sb, e.name, strlen(e.name));
        ib__sb_printf(sb, ", %d, %d, {", e.dtype, e.rank);
        for (int32_t d = 0; d < IB_MAX_RANK; d++)
            ib__sb_printf(sb, "%s%lld", d ? ", " : "", d < e.rank ? (long long)e.dims[d] : 0LL);
        ib__sb_printf(sb, "}, %lld},\n", (long long)e.nbytes);
    }
    ib__sb_printf(sb, "    {0}\n};\n\n");
    ib__sb meta;
    ib__sb_init(&meta);
    ib_status st = ib__codegen_meta_json(plan, &meta);
    if (st == IB_OK) {
        ib__sb_printf(sb, "const char ib_model_meta[] =\n    ");
        c_string_literal(sb, meta.data, meta.len);
        ib__sb_printf(sb, ";\n\n");
    }
    ib__sb_free(&meta);
    IB_TRY(st);
    IB_TRY(emit_kernel_table(plan, sb));
    ib__sb_line(sb, "int ib_model_run(const ib_kernel_abi *abi, void *const *inputs,");
    ib__sb_line(sb, "                 void *const *outputs, void *arena, const void *weights);");
    ib__sb_line(sb, "int ib_model_run(const ib_kernel_abi *abi, void *const *inputs,");
    ib__sb_line(sb, "                 void *const *outputs, void *arena, const void *weights) {");
    sb->indent = 4;
    ib__sb_line(sb, "char *A = (char *)arena;");
    ib__sb_line(sb, "const char *W = (const char *)weights;");
    ib__sb_line(sb, "int rc;");
    ib__sb_line(sb, "(void)A; (void)W; (void)inputs; (void)outputs;");
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        const ib__pkernel *pk = &plan->kernels[k];
        kernel_comment(sb, plan, k);
        ib__sb_printf(sb, "    {\n        void *const args[] = {");
        int32_t n_args = pk->n_in + pk->n_out + (pk->tmpl ? pk->n_epi : 0);
        for (int32_t a = 0; a < n_args; a++) {
            int32_t b;
            if (a < pk->n_in) b = pk->in[a];
            else if (a < pk->n_in + pk->n_out) b = pk->out[a - pk->n_in];
            else {
                const ib__epilogue_step *e = &pk->epi[a - pk->n_in - pk->n_out];
                b = e->kind == IB_EPI_BINARY ? e->operand_buf : -1;
            }
            if (b >= plan->n_bufs) return ib__error(IB_ERR_INTERNAL, "kernel %d: bad buffer", k);
            buf_expr(plan, b, expr, sizeof expr);
            ib__sb_printf(sb, "%s%s", a ? ", " : "", expr);
        }
        if (n_args == 0) ib__sb_printf(sb, "(void *)0");
        ib__sb_printf(sb, "};\n");
        ib__sb_printf(sb, "        if (abi->profile) abi->profile(abi->profile_user, %d, 0);\n", k);
        if (pk->tmpl)
            ib__sb_printf(sb, "        if ((rc = ib_k%d(abi, args)) != 0) "
                              "return IB_KERNEL_STEP_FAILED(rc, %d);\n", k, k);
        else
            ib__sb_printf(sb, "        if ((rc = abi->fallback(abi->fallback_user, %d, args)) != 0) "
                              "return rc;\n", k);
        ib__sb_printf(sb, "        if (abi->profile) abi->profile(abi->profile_user, %d, 1);\n    }\n", k);
    }
    for (int32_t o = 0; o < plan->n_outputs; o++) {
        int32_t w, c;
        IB_TRY(ib__codegen_output_source(plan, o, &w, &c));
        if (c < 0) continue;
        ib__rt_io_entry e;
        IB_TRY(ib__codegen_io_entry(plan, true, o, &e));
        buf_expr(plan, c, expr, sizeof expr);
        ib__sb_line(sb, "/* output %d is computed elsewhere (a weight, an input, another output) */", o);
        ib__sb_line(sb, "if (outputs[%d] != %s) __builtin_memmove(outputs[%d], %s, %lld);", o, expr,
                    o, expr, (long long)e.nbytes);
    }
    ib__sb_line(sb, "return 0;");
    sb->indent = 0;
    ib__sb_line(sb, "}");
    return ib__sb_status(sb);
}

void ib__codegen_free_units(int32_t n_units, char **unit_paths) {
    if (!unit_paths) return;
    for (int32_t i = 0; i < n_units; i++) ib__free(unit_paths[i]);
    ib__free(unit_paths);
}

ib_status ib__codegen_module(const ib__plan *plan, const char *dir, int32_t *n_units,
                             char ***unit_paths) {
    int32_t n_tmpl = plan->n_kernels - ib__codegen_fallback_count(plan);
    int32_t n_kunits = (n_tmpl + KERNELS_PER_UNIT - 1) / KERNELS_PER_UNIT;
    int32_t total = n_kunits + 1;
    char **paths = ib__calloc((size_t)total, sizeof(char *));
    int32_t *ks = ib__calloc((size_t)plan->n_kernels + 1, sizeof(int32_t));
    ib_status st = IB_OK;
    if (!paths || !ks) st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory generating code");
    int32_t next = 0;
    for (int32_t u = 0; u < total && st == IB_OK; u++) {
        size_t len = strlen(dir) + 32;
        paths[u] = ib__malloc(len);
        if (!paths[u]) {
            st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory generating code");
            break;
        }
        ib__sb sb;
        ib__sb_init(&sb);
        if (u < n_kunits) {
            snprintf(paths[u], len, "%s/unit_%d.c", dir, u + 1);
            int32_t n = 0;
            while (next < plan->n_kernels && n < KERNELS_PER_UNIT) {
                if (plan->kernels[next].tmpl) ks[n++] = next;
                next++;
            }
            st = emit_unit(plan, ks, n, &sb);
        } else {
            snprintf(paths[u], len, "%s/model_main.c", dir);
            st = emit_main(plan, &sb);
        }
        if (st == IB_OK) st = ib__sb_status(&sb);
        if (st == IB_OK) st = write_file(paths[u], &sb);
        ib__sb_free(&sb);
    }
    ib__free(ks);
    if (st) {
        ib__codegen_free_units(total, paths);
        return st;
    }
    *n_units = total;
    *unit_paths = paths;
    return IB_OK;
}

ib_status ib__codegen_build(const ib__plan *plan, const char *dir, bool keep_source) {
    if (ib__target_is_cuda(&plan->target)) return ib__cuda_codegen_build(plan, dir, keep_source);
    int32_t n = 0;
    char **units = NULL;
    IB_TRY(ib__codegen_module(plan, dir, &n, &units));
    ib_status st = IB_OK;
    const char *inc = ib__toolchain_abi_include_dir(dir);
    if (!inc) st = ib__error(IB_ERR_IO, "cannot write the kernel ABI header into '%s'", dir);
    char so[4200];
    snprintf(so, sizeof so, "%s/model.so", dir);
    if (st == IB_OK)
        st = ib__toolchain_build_shared(&plan->target, n, (const char *const *)units, inc, so, 2);
    if (!keep_source) {
        for (int32_t i = 0; i < n; i++) unlink(units[i]);
        ib__toolchain_abi_include_remove(dir);
    }
    ib__codegen_free_units(n, units);
    return st;
}
