/* Host CPU detection: vendor and model, the ISA features both the CPU and the OS enable
 * (CPUID + XGETBV on x86-64, auxiliary vector on aarch64), cache sizes and usable cores. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "target/target.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define IB_CPU_X86 1
#endif
#if defined(__aarch64__)
#include <sys/auxv.h>
#endif

const char *ib__cpu_feature_name(ib__cpu_feature feature) {
    switch (feature) {
#define IB__CPU_FEATURE_NAME(id, name) \
    case IB_CPU_##id:                  \
        return name;
        IB_CPU_FEATURE_LIST(IB__CPU_FEATURE_NAME)
#undef IB__CPU_FEATURE_NAME
    case IB_CPU_FEATURE_COUNT:
        break;
    }
    return "unknown";
}

static void set_feature(ib__cpu_info *info, ib__cpu_feature f, bool on) {
    if (on) info->features |= (uint64_t)1 << f;
}

/* Copies s into dst with leading/trailing blanks removed and runs of blanks collapsed
 * (CPUID brand strings are padded). */
static void copy_trimmed(char *dst, size_t cap, const char *s) {
    size_t n = 0;
    bool pending_space = false;
    for (; *s && n + 1 < cap; s++) {
        if (*s == ' ' || *s == '\t' || *s == '\n') {
            pending_space = n > 0;
            continue;
        }
        if (pending_space && n + 2 < cap) dst[n++] = ' ';
        pending_space = false;
        dst[n++] = *s;
    }
    dst[n] = '\0';
}

/* The value of the first "key : value" line of /proc/cpuinfo, or false. */
static bool cpuinfo_field(const char *key, char *out, size_t cap) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[1024];
    size_t klen = strlen(key);
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) != 0) continue;
        const char *p = line + klen;
        while (*p == ' ' || *p == '\t') p++;
        if (*p != ':') continue;
        copy_trimmed(out, cap, p + 1);
        found = true;
        break;
    }
    fclose(f);
    return found;
}

/* ---- Caches from sysfs ---------------------------------------------------------- */

static bool read_small_file(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "r");
    if (!f) return false;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0;
}

/* "32K", "1024K", "32M", "512" -> bytes; 0 when malformed. */
static int64_t parse_size(const char *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || v < 0) return 0;
    int64_t mult = 1;
    if (*end == 'K' || *end == 'k') mult = 1024;
    else if (*end == 'M' || *end == 'm') mult = 1024 * 1024;
    else if (*end == 'G' || *end == 'g') mult = (int64_t)1024 * 1024 * 1024;
    int64_t out;
    if (ib__mul_overflow_i64((int64_t)v, mult, &out)) return 0;
    return out;
}

static bool caches_from_sysfs(ib__cpu_info *info) {
    bool any = false;
    for (int idx = 0; idx < 16; idx++) {
        char path[128], level[16], type[32], size[32], line[16];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", idx);
        if (!read_small_file(path, level, sizeof level)) break;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", idx);
        if (!read_small_file(path, type, sizeof type)) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", idx);
        if (!read_small_file(path, size, sizeof size)) continue;
        snprintf(path, sizeof path,
                 "/sys/devices/system/cpu/cpu0/cache/index%d/coherency_line_size", idx);
        if (read_small_file(path, line, sizeof line) && info->cache_line_bytes == 0)
            info->cache_line_bytes = atoi(line);
        int lv = atoi(level);
        int64_t bytes = parse_size(size);
        if (strncmp(type, "Instruction", 11) == 0 || bytes <= 0) continue;
        if (lv == 1 && strncmp(type, "Data", 4) == 0) info->l1d_bytes = bytes;
        else if (lv == 2) info->l2_bytes = bytes;
        else if (lv == 3) info->l3_bytes = bytes;
        any = true;
    }
    return any;
}

/* ---- x86-64 ------------------------------------------------------------------------ */
#if defined(IB_CPU_X86)

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Deterministic cache parameters: leaf 4 (Intel) or 0x8000001D (AMD), same layout. */
static void caches_from_cpuid(ib__cpu_info *info, unsigned leaf) {
    for (unsigned sub = 0; sub < 16; sub++) {
        unsigned a, b, c, d;
        __cpuid_count(leaf, sub, a, b, c, d);
        unsigned type = a & 0x1f;
        if (type == 0) break;
        unsigned level = (a >> 5) & 7;
        int64_t ways = ((b >> 22) & 0x3ff) + 1, parts = ((b >> 12) & 0x3ff) + 1;
        int64_t line = (b & 0xfff) + 1, sets = (int64_t)c + 1;
        int64_t bytes = ways * parts * line * sets;
        if (info->cache_line_bytes == 0) info->cache_line_bytes = (int32_t)line;
        if (level == 1 && type == 1) info->l1d_bytes = bytes;
        else if (level == 2 && type != 2) info->l2_bytes = bytes;
        else if (level == 3 && type != 2) info->l3_bytes = bytes;
    }
}

static void detect_x86(ib__cpu_info *info) {
    unsigned a, b, c, d;
    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf == 0) return;
    __cpuid(0, a, b, c, d);
    char vendor[13];
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    vendor[12] = '\0';
    snprintf(info->vendor, sizeof info->vendor, "%s", vendor);

    unsigned max_ext = __get_cpuid_max(0x80000000u, NULL);
    if (max_ext >= 0x80000004u) {
        char brand[49];
        for (unsigned i = 0; i < 3; i++) {
            __cpuid(0x80000002u + i, a, b, c, d);
            memcpy(brand + 16 * i, &a, 4);
            memcpy(brand + 16 * i + 4, &b, 4);
            memcpy(brand + 16 * i + 8, &c, 4);
            memcpy(brand + 16 * i + 12, &d, 4);
        }
        brand[48] = '\0';
        copy_trimmed(info->model_name, sizeof info->model_name, brand);
    }

    __cpuid(1, a, b, c, d);
    unsigned ecx1 = c;
    bool osxsave = (ecx1 >> 27) & 1;
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    /* The OS must save the wider register state on context switches, or using the
     * instructions faults (or silently corrupts state). */
    bool os_avx = (xcr0 & 0x6) == 0x6;                  /* XMM | YMM */
    bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;   /* opmask | ZMM_Hi256 | Hi16_ZMM */
    bool os_amx = (xcr0 & 0x60000) == 0x60000;          /* XTILECFG | XTILEDATA */

    set_feature(info, IB_CPU_SSE42, (ecx1 >> 20) & 1);
    set_feature(info, IB_CPU_AVX, os_avx && ((ecx1 >> 28) & 1));
    set_feature(info, IB_CPU_FMA, os_avx && ((ecx1 >> 12) & 1));
    set_feature(info, IB_CPU_F16C, os_avx && ((ecx1 >> 29) & 1));

    if (max_leaf >= 7) {
        unsigned max_sub, ebx7, ecx7, edx7;
        __cpuid_count(7, 0, max_sub, ebx7, ecx7, edx7);
        set_feature(info, IB_CPU_AVX2, os_avx && ((ebx7 >> 5) & 1));
        set_feature(info, IB_CPU_AVX512F, os_avx512 && ((ebx7 >> 16) & 1));
        set_feature(info, IB_CPU_AVX512DQ, os_avx512 && ((ebx7 >> 17) & 1));
        set_feature(info, IB_CPU_AVX512CD, os_avx512 && ((ebx7 >> 28) & 1));
        set_feature(info, IB_CPU_AVX512BW, os_avx512 && ((ebx7 >> 30) & 1));
        set_feature(info, IB_CPU_AVX512VL, os_avx512 && ((ebx7 >> 31) & 1));
        set_feature(info, IB_CPU_AVX512_VNNI, os_avx512 && ((ecx7 >> 11) & 1));
        set_feature(info, IB_CPU_AVX512_FP16, os_avx512 && ((edx7 >> 23) & 1));
        set_feature(info, IB_CPU_AMX_BF16, os_amx && ((edx7 >> 22) & 1));
        set_feature(info, IB_CPU_AMX_TILE, os_amx && ((edx7 >> 24) & 1));
        set_feature(info, IB_CPU_AMX_INT8, os_amx && ((edx7 >> 25) & 1));
        if (max_sub >= 1) {
            unsigned eax71, ebx71, ecx71, edx71;
            __cpuid_count(7, 1, eax71, ebx71, ecx71, edx71);
            set_feature(info, IB_CPU_AVX_VNNI, os_avx && ((eax71 >> 4) & 1));
            set_feature(info, IB_CPU_AVX512_BF16, os_avx512 && ((eax71 >> 5) & 1));
        }
    }

    if (info->l1d_bytes == 0 && info->l2_bytes == 0) {
        bool amd = strcmp(info->vendor, "AuthenticAMD") == 0 ||
                   strcmp(info->vendor, "HygonGenuine") == 0;
        if (amd && max_ext >= 0x8000001Du) caches_from_cpuid(info, 0x8000001Du);
        else if (!amd && max_leaf >= 4) caches_from_cpuid(info, 4);
        /* Some hypervisors leave 0x8000001D empty (seen on a virtual Zen 5): AMD's older
         * leaves still give L1d (KiB in ecx[31:24]), L2 (KiB in ecx[31:16]) and L3
         * (512 KiB units in edx[31:18]). */
        if (amd && info->l1d_bytes == 0 && max_ext >= 0x80000006u) {
            __cpuid(0x80000005u, a, b, c, d);
            info->l1d_bytes = (int64_t)(c >> 24) * 1024;
            if (info->cache_line_bytes == 0) info->cache_line_bytes = (int32_t)(c & 0xff);
            __cpuid(0x80000006u, a, b, c, d);
            info->l2_bytes = (int64_t)(c >> 16) * 1024;
            info->l3_bytes = (int64_t)(d >> 18) * 512 * 1024;
        }
    }
}
#endif /* IB_CPU_X86 */

/* ---- aarch64 ----------------------------------------------------------------------- */
#if defined(__aarch64__)

static const char *arm_implementer(unsigned id) {
    switch (id) {
    case 0x41: return "ARM";
    case 0x42: return "Broadcom";
    case 0x43: return "Cavium";
    case 0x46: return "Fujitsu";
    case 0x48: return "HiSilicon";
    case 0x4e: return "NVIDIA";
    case 0x51: return "Qualcomm";
    case 0x61: return "Apple";
    case 0xc0: return "Ampere";
    default: return NULL;
    }
}

static const char *arm_part(unsigned impl, unsigned part) {
    if (impl != 0x41) return NULL;
    switch (part) {
    case 0xd03: return "Cortex-A53";
    case 0xd04: return "Cortex-A35";
    case 0xd05: return "Cortex-A55";
    case 0xd07: return "Cortex-A57";
    case 0xd08: return "Cortex-A72";
    case 0xd09: return "Cortex-A73";
    case 0xd0a: return "Cortex-A75";
    case 0xd0b: return "Cortex-A76";
    case 0xd0c: return "Neoverse-N1";
    case 0xd0d: return "Cortex-A77";
    case 0xd40: return "Neoverse-V1";
    case 0xd41: return "Cortex-A78";
    case 0xd44: return "Cortex-X1";
    case 0xd46: return "Cortex-A510";
    case 0xd47: return "Cortex-A710";
    case 0xd48: return "Cortex-X2";
    case 0xd49: return "Neoverse-N2";
    case 0xd4f: return "Neoverse-V2";
    case 0xd8e: return "Neoverse-N3";
    default: return NULL;
    }
}

/* Kernel uapi values, defined here for older headers. */
#define IB_HWCAP_FPHP (1ul << 9)
#define IB_HWCAP_ASIMD (1ul << 1)
#define IB_HWCAP_ASIMDDP (1ul << 20)
#define IB_HWCAP_SVE (1ul << 22)
#define IB_HWCAP2_SVE2 (1ul << 1)
#define IB_HWCAP2_I8MM (1ul << 13)
#define IB_HWCAP2_BF16 (1ul << 14)

static void detect_aarch64(ib__cpu_info *info) {
    unsigned long hw = getauxval(AT_HWCAP);
    unsigned long hw2 = getauxval(AT_HWCAP2);
    set_feature(info, IB_CPU_NEON, hw & IB_HWCAP_ASIMD);
    set_feature(info, IB_CPU_FP16, hw & IB_HWCAP_FPHP);
    set_feature(info, IB_CPU_DOTPROD, hw & IB_HWCAP_ASIMDDP);
    set_feature(info, IB_CPU_SVE, hw & IB_HWCAP_SVE);
    set_feature(info, IB_CPU_SVE2, hw2 & IB_HWCAP2_SVE2);
    set_feature(info, IB_CPU_I8MM, hw2 & IB_HWCAP2_I8MM);
    set_feature(info, IB_CPU_BF16, hw2 & IB_HWCAP2_BF16);

    char impl_s[64] = "", part_s[64] = "";
    unsigned impl = 0, part = 0;
    if (cpuinfo_field("CPU implementer", impl_s, sizeof impl_s))
        impl = (unsigned)strtoul(impl_s, NULL, 0);
    if (cpuinfo_field("CPU part", part_s, sizeof part_s)) part = (unsigned)strtoul(part_s, NULL, 0);
    const char *iname = arm_implementer(impl);
    if (iname) snprintf(info->vendor, sizeof info->vendor, "%s", iname);
    else if (impl) snprintf(info->vendor, sizeof info->vendor, "implementer 0x%02x", impl);
    const char *pname = arm_part(impl, part);
    if (pname) snprintf(info->model_name, sizeof info->model_name, "%s", pname);
    else if (part) snprintf(info->model_name, sizeof info->model_name, "part 0x%03x", part);
}
#endif /* __aarch64__ */

void ib__cpu_detect(ib__cpu_info *out) {
    ib__cpu_info info;
    memset(&info, 0, sizeof info);
    struct utsname u;
    if (uname(&u) == 0) snprintf(info.arch, sizeof info.arch, "%.15s", u.machine);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    info.logical_cpus = online > 0 ? (int)online : 1;
    info.usable_cpus = ib__usable_cpus();
    caches_from_sysfs(&info);
#if defined(IB_CPU_X86)
    detect_x86(&info);
#elif defined(__aarch64__)
    detect_aarch64(&info);
#endif
    if (info.model_name[0] == '\0')
        cpuinfo_field("model name", info.model_name, sizeof info.model_name);
    if (info.vendor[0] == '\0') cpuinfo_field("vendor_id", info.vendor, sizeof info.vendor);
    *out = info;
}
