/* Hardware detection of the host: CPU (vendor, model, ISA features the OS lets us use,
 * caches, usable cores) and NVIDIA GPUs (through the driver libraries, loaded at run
 * time so that nothing links against CUDA). */
#ifndef IB_TARGET_H
#define IB_TARGET_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

/* X(ENUM_SUFFIX, "name"): the CPU features detection reports. Names follow the
 * spelling of Linux /proc/cpuinfo flags where one exists. */
#define IB_CPU_FEATURE_LIST(X)          \
    X(SSE42, "sse4_2")                  \
    X(AVX, "avx")                       \
    X(AVX2, "avx2")                     \
    X(FMA, "fma")                       \
    X(F16C, "f16c")                     \
    X(AVX_VNNI, "avx_vnni")             \
    X(AVX512F, "avx512f")               \
    X(AVX512CD, "avx512cd")             \
    X(AVX512BW, "avx512bw")             \
    X(AVX512DQ, "avx512dq")             \
    X(AVX512VL, "avx512vl")             \
    X(AVX512_VNNI, "avx512_vnni")       \
    X(AVX512_BF16, "avx512_bf16")       \
    X(AVX512_FP16, "avx512_fp16")       \
    X(AMX_TILE, "amx_tile")             \
    X(AMX_INT8, "amx_int8")             \
    X(AMX_BF16, "amx_bf16")             \
    X(NEON, "asimd")                    \
    X(SVE, "sve")                       \
    X(SVE2, "sve2")                     \
    X(DOTPROD, "asimddp")               \
    X(FP16, "fphp")                     \
    X(BF16, "bf16")                     \
    X(I8MM, "i8mm")

typedef enum ib__cpu_feature {
#define IB__CPU_FEATURE_ENUM(id, name) IB_CPU_##id,
    IB_CPU_FEATURE_LIST(IB__CPU_FEATURE_ENUM)
#undef IB__CPU_FEATURE_ENUM
    IB_CPU_FEATURE_COUNT
} ib__cpu_feature;

typedef struct ib__cpu_info {
    char arch[16];        /* "x86_64", "aarch64", ... */
    char vendor[32];      /* "GenuineIntel", "AuthenticAMD", "ARM", ... */
    char model_name[128]; /* "Intel(R) Xeon(R) ..." or "Neoverse-N1" */
    int logical_cpus;     /* online */
    int usable_cpus;      /* affinity mask and cgroup quota (ib__usable_cpus) */
    uint64_t features;    /* bit (1 << ib__cpu_feature) */
    /* Per core (L1d, L2) or per cache instance seen by cpu0 (L3); 0 when unknown. */
    int64_t l1d_bytes, l2_bytes, l3_bytes;
    int32_t cache_line_bytes;
} ib__cpu_info;

/* Never fails: what cannot be found is left empty / zero. */
void ib__cpu_detect(ib__cpu_info *out);
const char *ib__cpu_feature_name(ib__cpu_feature feature);
static inline bool ib__cpu_has(const ib__cpu_info *info, ib__cpu_feature f) {
    return (info->features >> f) & 1u;
}

#define IB_MAX_GPUS 16

typedef struct ib__gpu_device {
    char name[128];
    int32_t cc_major, cc_minor; /* CUDA compute capability */
    int32_t sm_count;           /* 0 when unknown (NVML alone does not say) */
    uint64_t total_memory;      /* bytes */
    uint64_t free_memory;       /* bytes; 0 when unknown */
} ib__gpu_device;

typedef struct ib__gpu_info {
    int32_t count; /* 0: no NVIDIA GPU usable (see `note`) */
    ib__gpu_device devices[IB_MAX_GPUS];
    char driver_version[80]; /* NVML's "550.54.15", or "" */
    int32_t cuda_version;    /* cuDriverGetVersion: 12040 for 12.4; 0 when unknown */
    char source[32];         /* "cuda", "nvml" or "none" */
    char note[160];          /* why nothing was found, for the report */
} ib__gpu_info;

/* Never fails: without a driver, count is 0 and `note` says why. */
void ib__gpu_detect(ib__gpu_info *out);

#endif /* IB_TARGET_H */
