/* Target descriptions: the x86-64 levels and the 64-bit ARM (NEON) targets the compiler
 * supports, the CUDA targets, and "host". */
#include <stdio.h>
#include <string.h>

#include "target/target.h"
#include "target/target_desc.h"

static void fill_caches(ib__target *t, const ib__cpu_info *cpu) {
    t->l1d_bytes = cpu && cpu->l1d_bytes > 0 ? cpu->l1d_bytes : 32 * 1024;
    t->l2_bytes = cpu && cpu->l2_bytes > 0 ? cpu->l2_bytes : 1024 * 1024;
    t->l3_bytes = cpu && cpu->l3_bytes > 0 ? cpu->l3_bytes : 8 * 1024 * 1024;
}

static void set_level(ib__target *t, const char *name) {
    snprintf(t->name, sizeof t->name, "%s", name);
    t->arch = IB_ARCH_X86_64;
    snprintf(t->cc, sizeof t->cc, "cc");
    if (strcmp(name, "x86-64-v4") == 0) {
        t->vector_bits = 512;
        t->vector_regs = 32;
        t->has_fma = true;
        t->cflags[0] = "-march=x86-64-v4";
        t->cflags[1] = "-mprefer-vector-width=512";
    } else if (strcmp(name, "x86-64-v3") == 0) {
        t->vector_bits = 256;
        t->vector_regs = 16;
        t->has_fma = true;
        t->cflags[0] = "-march=x86-64-v3";
    } else {
        t->vector_bits = 128;
        t->vector_regs = 16;
        t->has_fma = false;
        t->cflags[0] = "-march=x86-64";
    }
}

/* "cuda-sm80", "cuda-sm90", each optionally "-tf32" / "-fp16" / "-bf16". */
static bool parse_cuda(const char *name, ib__target *t) {
    static const struct { const char *suffix; ib__precision p; } precisions[] = {
        {"", IB_PRECISION_FP32}, {"-tf32", IB_PRECISION_TF32},
        {"-fp16", IB_PRECISION_FP16}, {"-bf16", IB_PRECISION_BF16}};
    static const struct { const char *base; int32_t sm, smem, sms; } gpus[] = {
        {"cuda-sm80", 80, 163 * 1024, 108}, /* A100: 164 KiB per SM, 227 KiB on Hopper */
        {"cuda-sm90", 90, 227 * 1024, 132}, /* H100 SXM */
    };
    for (size_t g = 0; g < sizeof gpus / sizeof *gpus; g++) {
        size_t n = strlen(gpus[g].base);
        if (strncmp(name, gpus[g].base, n) != 0) continue;
        for (size_t p = 0; p < sizeof precisions / sizeof *precisions; p++) {
            if (strcmp(name + n, precisions[p].suffix) != 0) continue;
            snprintf(t->name, sizeof t->name, "%s", name);
            t->device = IB_DEVICE_CUDA;
            t->cuda_sm = gpus[g].sm;
            t->precision = precisions[p].p;
            t->gpu_smem_bytes = gpus[g].smem;
            t->gpu_sm_count = gpus[g].sms;
            t->vector_bits = 128; /* float4 global accesses */
            t->vector_regs = 255; /* registers per thread */
            t->has_fma = true;
            snprintf(t->cc, sizeof t->cc, "nvcc");
            return true;
        }
    }
    return false;
}

static ib_status resolve_cuda(const char *name, ib__target *out) {
    ib__target t;
    memset(&t, 0, sizeof t);
    if (!parse_cuda(name, &t)) return ib__error(IB_ERR_INVALID_ARGUMENT, "unknown target '%s'", name);
    ib__cpu_info cpu;
    ib__cpu_detect(&cpu);
    fill_caches(&t, &cpu);
    t.num_cores = ib__usable_cpus();
    /* Runs here when a GPU of this compute capability (or newer) is present. */
    ib__gpu_info gpu;
    ib__gpu_detect(&gpu);
    for (int32_t i = 0; i < gpu.count; i++) {
        int32_t sm = gpu.devices[i].cc_major * 10 + gpu.devices[i].cc_minor;
        if (sm >= t.cuda_sm && !t.is_host) {
            t.is_host = true;
            if (gpu.devices[i].sm_count > 0) t.gpu_sm_count = gpu.devices[i].sm_count;
        }
    }
    *out = t;
    return IB_OK;
}

ib_status ib__target_resolve_for_model(const char *name, double model_flops, ib__target *out) {
    if (!name || strcmp(name, "host") == 0) {
        ib__gpu_info gpu;
        ib__gpu_detect(&gpu);
        int32_t best = 0;
        for (int32_t i = 0; i < gpu.count; i++) {
            int32_t sm = gpu.devices[i].cc_major * 10 + gpu.devices[i].cc_minor;
            if (sm > best) best = sm;
        }
        /* Small models are launch-bound on a GPU and stay on the CPU. */
        if (best >= 80 && (model_flops < 0 || model_flops >= IB_GPU_MIN_FLOPS))
            return resolve_cuda(best >= 90 ? "cuda-sm90" : "cuda-sm80", out);
    }
    return ib__target_resolve(name, out);
}

/* 64-bit ARM: NEON is 128-bit with 32 registers and FMA in every ARMv8-A core. A cross
 * build cannot see the device, so caches and cores come from the description (Neoverse
 * N1 / Cortex-A76 class: 64 KiB L1d, 1 MiB L2 per core; 4 cores, a Raspberry Pi 5 or
 * Jetson Orin Nano) unless the code is built on the device itself. dotprod (ARMv8.2-A)
 * adds the int8 dot product; the fp32 kernels are the same, tuned for N1. */
static bool set_aarch64(ib__target *t, const char *name) {
    bool dotprod = strcmp(name, "aarch64-dotprod") == 0;
    if (!dotprod && strcmp(name, "aarch64") != 0) return false;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->arch = IB_ARCH_AARCH64;
#if defined(__aarch64__)
    snprintf(t->cc, sizeof t->cc, "cc");
#else
    snprintf(t->cc, sizeof t->cc, "aarch64-linux-gnu-gcc");
#endif
    t->vector_bits = 128;
    t->vector_regs = 32;
    t->has_fma = true;
    t->cflags[0] = dotprod ? "-march=armv8.2-a+dotprod" : "-march=armv8-a";
    t->cflags[1] = dotprod ? "-mtune=neoverse-n1" : "-mtune=cortex-a72";
    t->l1d_bytes = 64 * 1024;
    t->l2_bytes = 1024 * 1024;
    t->l3_bytes = 4 * 1024 * 1024;
    t->num_cores = 4;
    return true;
}

ib_status ib__target_resolve(const char *name, ib__target *out) {
    if (name && strncmp(name, "cuda-", 5) == 0) {
        ib__target c;
        if (resolve_cuda(name, &c) == IB_OK) {
            *out = c;
            return IB_OK;
        }
        ib__error_clear();
    }
    ib__target t;
    memset(&t, 0, sizeof t);
    ib__cpu_info cpu;
    bool host = !name || strcmp(name, "host") == 0;
    ib__cpu_detect(&cpu);
    if (host) {
#if defined(__aarch64__)
        set_aarch64(&t, ib__cpu_has(&cpu, IB_CPU_DOTPROD) ? "aarch64-dotprod" : "aarch64");
#elif defined(__x86_64__)
        bool v4 = ib__cpu_has(&cpu, IB_CPU_AVX512F) && ib__cpu_has(&cpu, IB_CPU_AVX512BW) &&
                  ib__cpu_has(&cpu, IB_CPU_AVX512DQ) && ib__cpu_has(&cpu, IB_CPU_AVX512VL);
        bool v3 = ib__cpu_has(&cpu, IB_CPU_AVX2) && ib__cpu_has(&cpu, IB_CPU_FMA);
        set_level(&t, v4 ? "x86-64-v4" : v3 ? "x86-64-v3" : "generic");
#else
        return ib__error(IB_ERR_UNSUPPORTED, "compiling for this host architecture (%s) is "
                         "not supported yet", cpu.arch);
#endif
        t.is_host = true;
    } else if (strcmp(name, "x86-64-v4") == 0 || strcmp(name, "x86-64-v3") == 0 ||
               strcmp(name, "generic") == 0) {
        set_level(&t, name);
#if defined(__x86_64__)
        /* Code for a lower level runs here; code for a higher one does not. */
        bool v4_ok = ib__cpu_has(&cpu, IB_CPU_AVX512F) && ib__cpu_has(&cpu, IB_CPU_AVX512BW) &&
                     ib__cpu_has(&cpu, IB_CPU_AVX512DQ) && ib__cpu_has(&cpu, IB_CPU_AVX512VL);
        bool v3_ok = ib__cpu_has(&cpu, IB_CPU_AVX2) && ib__cpu_has(&cpu, IB_CPU_FMA);
        t.is_host = strcmp(name, "generic") == 0 || (strcmp(name, "x86-64-v3") == 0 && v3_ok) ||
                    (strcmp(name, "x86-64-v4") == 0 && v4_ok);
#endif
    } else if (set_aarch64(&t, name)) {
#if defined(__aarch64__)
        t.is_host = strcmp(name, "aarch64") == 0 || ib__cpu_has(&cpu, IB_CPU_DOTPROD);
#endif
    } else {
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "unknown target '%s' (known: host, x86-64-v4, x86-64-v3, generic, "
                         "aarch64, aarch64-dotprod, cuda-sm80, cuda-sm90, with "
                         "-tf32/-fp16/-bf16)", name);
    }
    if (t.arch == IB_ARCH_AARCH64 && !t.is_host) { /* a cross target keeps its description */
        *out = t;
        return IB_OK;
    }
    fill_caches(&t, &cpu);
    t.num_cores = ib__usable_cpus();
    *out = t;
    return IB_OK;
}
