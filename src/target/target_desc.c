/* Target descriptions: the x86-64 levels the compiler supports, and "host". */
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

ib_status ib__target_resolve(const char *name, ib__target *out) {
    ib__target t;
    memset(&t, 0, sizeof t);
    ib__cpu_info cpu;
    bool host = !name || strcmp(name, "host") == 0;
    ib__cpu_detect(&cpu);
    if (host) {
#if defined(__x86_64__)
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
    } else {
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "unknown target '%s' (known: host, x86-64-v4, x86-64-v3, generic)", name);
    }
    fill_caches(&t, &cpu);
    t.num_cores = ib__usable_cpus();
    *out = t;
    return IB_OK;
}
