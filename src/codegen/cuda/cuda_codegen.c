/* CUDA code generation: the kernels of a plan as one CUDA C unit, the host-side launch
 * plan, and their nvcc build into a fat binary (cubin + PTX). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "codegen/cuda/cuda_codegen.h"
#include "codegen/cuda/cuda_emit.h"
#include "codegen/toolchain.h"

static void kernel_name(int32_t k, char *buf, size_t cap) { snprintf(buf, cap, "ib_k%d", (int)k); }

static ib_status check_kernel(const ib__plan *plan, int32_t k) {
    const ib__pkernel *pk = &plan->kernels[k];
    if (!pk->tmpl || !pk->tmpl->launch) {
        const char *what = pk->n_nodes > 0 && pk->nodes ? ib__node_label(pk->nodes[0]) : "a layout copy";
        return ib__error(IB_ERR_UNSUPPORTED, "target %s: %s has no CUDA kernel (the GPU runs no "
                         "reference fallback; compile for the CPU instead)", plan->target.name, what);
    }
    return IB_OK;
}

ib_status ib__cuda_codegen_source(const ib__plan *plan, ib__sb *sb) {
    if (!ib__target_is_cuda(&plan->target))
        return ib__error(IB_ERR_INTERNAL, "CUDA codegen for non-CUDA target %s", plan->target.name);
    ib__cuda_prelude(sb, &plan->target);
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        IB_TRY(check_kernel(plan, k));
        ib__pkernel pk = plan->kernels[k];
        kernel_name(k, pk.fn_name, sizeof pk.fn_name);
        ib__sb_printf(sb, "\n/* kernel %d: %s, %d node(s), %d fused epilogue step(s)", (int)k,
                      pk.tmpl->name, (int)pk.n_nodes, (int)pk.n_epi);
        if (pk.knobs.n) {
            ib__sb_printf(sb, "\n *   knobs:");
            for (int32_t i = 0; i < pk.knobs.n; i++)
                ib__sb_printf(sb, " %s=%lld", pk.knobs.name[i], (long long)pk.knobs.value[i]);
        }
        ib__sb_printf(sb, " */\n");
        ib_status st = pk.tmpl->emit(plan, &pk, sb);
        if (st) return ib__error_prefix(st, "kernel %d (%s): ", (int)k, pk.tmpl->name);
    }
    return ib__sb_status(sb);
}

/* "A<offset>" (arena), "W<offset>" (weights), "I<i>" / "O<i>" (model input/output), "-". */
static void arg_text(const ib__plan *plan, int32_t b, char *buf, size_t cap) {
    for (int depth = 0; b >= 0 && b < plan->n_bufs && depth < 64; depth++) {
        const ib__pbuf *pb = &plan->bufs[b];
        if (pb->alias_of >= 0 && pb->alias_of != b) {
            b = pb->alias_of;
            continue;
        }
        switch (pb->kind) {
        case IB_BUF_INPUT: snprintf(buf, cap, "I%d", (int)pb->io_index); return;
        case IB_BUF_OUTPUT: snprintf(buf, cap, "O%d", (int)pb->io_index); return;
        case IB_BUF_TEMP: snprintf(buf, cap, "A%lld", (long long)pb->offset); return;
        case IB_BUF_WEIGHT: snprintf(buf, cap, "W%lld", (long long)pb->offset); return;
        }
    }
    snprintf(buf, cap, "-");
}

static void io_line(ib__sb *sb, const char *what, int32_t i, const ib__rt_io_entry *e) {
    ib__sb_printf(sb, "%s %d %lld %d %d", what, (int)i, (long long)e->nbytes, (int)e->dtype, (int)e->rank);
    for (int32_t d = 0; d < e->rank; d++) ib__sb_printf(sb, " %lld", (long long)e->dims[d]);
    /* the name last, printable ASCII without spaces (the metadata has it exactly) */
    ib__sb_printf(sb, " ");
    for (const unsigned char *p = (const unsigned char *)(e->name ? e->name : ""); *p; p++)
        ib__sb_printf(sb, "%c", *p > 0x20 && *p < 0x7f ? *p : '?');
    if (!e->name || !e->name[0]) ib__sb_printf(sb, "?");
    ib__sb_printf(sb, "\n");
}

ib_status ib__cuda_codegen_plan_text(const ib__plan *plan, ib__sb *sb) {
    ib__sb_printf(sb, "%s %d\n", IB_CUDA_PLAN_FORMAT, IB_CUDA_PLAN_VERSION);
    ib__sb_printf(sb, "target %s %d\n", plan->target.name, (int)plan->target.cuda_sm);
    ib__sb_printf(sb, "arena %zu\n", plan->arena_bytes);
    ib__sb_printf(sb, "weights %zu %016llx\n", plan->weights_bytes,
                  (unsigned long long)ib__rt_hash(plan->weights, plan->weights_bytes));
    ib__sb_printf(sb, "io %d %d\n", (int)plan->n_inputs, (int)plan->n_outputs);
    for (int32_t i = 0; i < plan->n_inputs; i++) {
        ib__rt_io_entry e;
        IB_TRY(ib__codegen_io_entry(plan, false, i, &e));
        if (e.nbytes < 0)
            return ib__error(IB_ERR_UNSUPPORTED, "input %d has open dims: a CUDA plan needs them fixed", i);
        io_line(sb, "input", i, &e);
    }
    for (int32_t o = 0; o < plan->n_outputs; o++) {
        ib__rt_io_entry e;
        IB_TRY(ib__codegen_io_entry(plan, true, o, &e));
        io_line(sb, "output", o, &e);
    }
    ib__sb_printf(sb, "kernels %d\n", (int)plan->n_kernels);
    for (int32_t k = 0; k < plan->n_kernels; k++) {
        IB_TRY(check_kernel(plan, k));
        ib__pkernel pk = plan->kernels[k];
        kernel_name(k, pk.fn_name, sizeof pk.fn_name);
        ib__launch_dims ld;
        IB_TRY(pk.tmpl->launch(plan, &pk, &ld));
        int32_t n_args = pk.n_in + pk.n_out + pk.n_epi;
        ib__sb_printf(sb, "kernel %d %s %lld %lld %lld %d %d %d %d %d", (int)k, pk.fn_name,
                      (long long)ld.grid[0], (long long)ld.grid[1], (long long)ld.grid[2],
                      (int)ld.block[0], (int)ld.block[1], (int)ld.block[2], (int)ld.smem_bytes,
                      (int)n_args);
        for (int32_t a = 0; a < n_args; a++) {
            int32_t b;
            if (a < pk.n_in) b = pk.in[a];
            else if (a < pk.n_in + pk.n_out) b = pk.out[a - pk.n_in];
            else {
                const ib__epilogue_step *e = &pk.epi[a - pk.n_in - pk.n_out];
                b = e->kind == IB_EPI_BINARY ? e->operand_buf : -1;
            }
            char t[48];
            arg_text(plan, b, t, sizeof t);
            ib__sb_printf(sb, " %s", t);
        }
        ib__sb_printf(sb, "\n");
    }
    /* outputs no kernel writes (an input, a weight, another output): device copies */
    int32_t n_copies = 0;
    for (int32_t o = 0; o < plan->n_outputs; o++) {
        int32_t w, c;
        IB_TRY(ib__codegen_output_source(plan, o, &w, &c));
        n_copies += c >= 0;
    }
    ib__sb_printf(sb, "copies %d\n", (int)n_copies);
    for (int32_t o = 0; o < plan->n_outputs; o++) {
        int32_t w, c;
        IB_TRY(ib__codegen_output_source(plan, o, &w, &c));
        if (c < 0) continue;
        ib__rt_io_entry e;
        IB_TRY(ib__codegen_io_entry(plan, true, o, &e));
        char t[48];
        arg_text(plan, c, t, sizeof t);
        ib__sb_printf(sb, "copy %d %s %lld\n", (int)o, t, (long long)e.nbytes);
    }
    ib__sb_printf(sb, "end\n");
    return ib__sb_status(sb);
}

static ib_status write_file(const char *path, const ib__sb *sb) {
    FILE *f = fopen(path, "w");
    if (!f) return ib__error(IB_ERR_IO, "cannot write '%s'", path);
    size_t n = fwrite(sb->data, 1, sb->len, f);
    int rc = fclose(f);
    if (n != sb->len || rc != 0) return ib__error(IB_ERR_IO, "cannot write '%s'", path);
    return IB_OK;
}

ib_status ib__cuda_codegen_build(const ib__plan *plan, const char *dir, bool keep_source) {
    ib__sb cu, pt;
    ib__sb_init(&cu);
    ib__sb_init(&pt);
    char cu_path[4200], pt_path[4200], fb_path[4200];
    snprintf(cu_path, sizeof cu_path, "%s/model.cu", dir);
    snprintf(pt_path, sizeof pt_path, "%s/cuda_plan.txt", dir);
    snprintf(fb_path, sizeof fb_path, "%s/model.fatbin", dir);
    ib_status st = ib__cuda_codegen_source(plan, &cu);
    if (st == IB_OK) st = ib__cuda_codegen_plan_text(plan, &pt);
    if (st == IB_OK) st = write_file(cu_path, &cu);
    if (st == IB_OK) st = write_file(pt_path, &pt);
    if (st == IB_OK) {
        int32_t sm = plan->target.cuda_sm;
        st = ib__toolchain_build_cuda(cu_path, &sm, 1, fb_path);
    }
    if (!keep_source) unlink(cu_path);
    ib__sb_free(&cu);
    ib__sb_free(&pt);
    return st;
}
