/* NVIDIA GPU detection through the driver's own libraries, opened with dlopen so that
 * InferBooster neither includes CUDA headers nor links CUDA: the CUDA driver API
 * (libcuda) lists devices as CUDA programs see them; NVML (libnvidia-ml) adds the driver
 * version and free memory, and lists devices when libcuda is missing. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "target/target.h"

/* ---- CUDA driver API, declared from its documented C signatures ------------------ */
typedef int ib_cu_result; /* CUresult; 0 = CUDA_SUCCESS */
typedef int ib_cu_device; /* CUdevice */
typedef ib_cu_result (*cu_init_fn)(unsigned int flags);
typedef ib_cu_result (*cu_driver_get_version_fn)(int *version);
typedef ib_cu_result (*cu_device_get_count_fn)(int *count);
typedef ib_cu_result (*cu_device_get_fn)(ib_cu_device *device, int ordinal);
typedef ib_cu_result (*cu_device_get_name_fn)(char *name, int len, ib_cu_device device);
typedef ib_cu_result (*cu_device_total_mem_fn)(size_t *bytes, ib_cu_device device);
typedef ib_cu_result (*cu_device_get_attribute_fn)(int *value, int attribute,
                                                   ib_cu_device device);
enum {
    IB_CU_ATTR_MULTIPROCESSOR_COUNT = 16,
    IB_CU_ATTR_COMPUTE_CAPABILITY_MAJOR = 75,
    IB_CU_ATTR_COMPUTE_CAPABILITY_MINOR = 76,
};

/* ---- NVML ---------------------------------------------------------------------------- */
typedef int ib_nvml_return; /* nvmlReturn_t; 0 = NVML_SUCCESS */
typedef void *ib_nvml_device;
typedef struct ib_nvml_memory {
    unsigned long long total, free, used;
} ib_nvml_memory; /* nvmlMemory_t (v1) */
typedef ib_nvml_return (*nvml_init_fn)(void);
typedef ib_nvml_return (*nvml_shutdown_fn)(void);
typedef ib_nvml_return (*nvml_driver_version_fn)(char *version, unsigned int len);
typedef ib_nvml_return (*nvml_count_fn)(unsigned int *count);
typedef ib_nvml_return (*nvml_handle_fn)(unsigned int index, ib_nvml_device *device);
typedef ib_nvml_return (*nvml_name_fn)(ib_nvml_device device, char *name, unsigned int len);
typedef ib_nvml_return (*nvml_memory_fn)(ib_nvml_device device, ib_nvml_memory *memory);
typedef ib_nvml_return (*nvml_cc_fn)(ib_nvml_device device, int *major, int *minor);

/* dlsym returns void *; going through uintptr_t keeps -Wpedantic quiet about the
 * object-to-function pointer conversion POSIX guarantees to work. */
static void *sym(void *lib, const char *name) { return lib ? dlsym(lib, name) : NULL; }
#define IB_LOAD(lib, type, name) ((type)(uintptr_t)sym(lib, name))

typedef struct nvml_api {
    void *lib;
    bool ok;
    nvml_shutdown_fn shutdown;
    nvml_count_fn count;
    nvml_handle_fn handle;
    nvml_name_fn name;
    nvml_memory_fn memory;
    nvml_cc_fn cc;
} nvml_api;

static void nvml_open(nvml_api *n, ib__gpu_info *info) {
    memset(n, 0, sizeof *n);
    n->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!n->lib) return;
    nvml_init_fn init = IB_LOAD(n->lib, nvml_init_fn, "nvmlInit_v2");
    n->shutdown = IB_LOAD(n->lib, nvml_shutdown_fn, "nvmlShutdown");
    if (!init || !n->shutdown || init() != 0) {
        dlclose(n->lib);
        n->lib = NULL;
        return;
    }
    n->ok = true;
    nvml_driver_version_fn ver = IB_LOAD(n->lib, nvml_driver_version_fn, "nvmlSystemGetDriverVersion");
    char buf[80];
    if (ver && ver(buf, sizeof buf) == 0) {
        buf[sizeof buf - 1] = '\0';
        snprintf(info->driver_version, sizeof info->driver_version, "%s", buf);
    }
    n->count = IB_LOAD(n->lib, nvml_count_fn, "nvmlDeviceGetCount_v2");
    n->handle = IB_LOAD(n->lib, nvml_handle_fn, "nvmlDeviceGetHandleByIndex_v2");
    n->name = IB_LOAD(n->lib, nvml_name_fn, "nvmlDeviceGetName");
    n->memory = IB_LOAD(n->lib, nvml_memory_fn, "nvmlDeviceGetMemoryInfo");
    n->cc = IB_LOAD(n->lib, nvml_cc_fn, "nvmlDeviceGetCudaComputeCapability");
}

static void nvml_close(nvml_api *n) {
    if (!n->lib) return;
    if (n->ok) n->shutdown();
    dlclose(n->lib);
    n->lib = NULL;
}

static bool nvml_devices(nvml_api *n, ib__gpu_info *info) {
    unsigned count = 0;
    if (!n->ok || !n->count || !n->handle || n->count(&count) != 0) return false;
    if (count > IB_MAX_GPUS) count = IB_MAX_GPUS;
    for (unsigned i = 0; i < count; i++) {
        ib__gpu_device *d = &info->devices[info->count];
        memset(d, 0, sizeof *d);
        ib_nvml_device h = NULL;
        if (n->handle(i, &h) != 0) continue;
        if (n->name && n->name(h, d->name, sizeof d->name) == 0) d->name[sizeof d->name - 1] = '\0';
        ib_nvml_memory m;
        if (n->memory && n->memory(h, &m) == 0) {
            d->total_memory = m.total;
            d->free_memory = m.free;
        }
        int ma = 0, mi = 0;
        if (n->cc && n->cc(h, &ma, &mi) == 0) {
            d->cc_major = ma;
            d->cc_minor = mi;
        }
        info->count++;
    }
    return true;
}

/* Lists devices through the CUDA driver API; false when libcuda is unusable. */
static bool cuda_devices(ib__gpu_info *info) {
    /* Never dlclose'd: once cuInit has run, the driver keeps threads and handlers that
     * must outlive the process's use of it. */
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return false;
    cu_init_fn init = IB_LOAD(lib, cu_init_fn, "cuInit");
    cu_driver_get_version_fn version = IB_LOAD(lib, cu_driver_get_version_fn, "cuDriverGetVersion");
    cu_device_get_count_fn get_count = IB_LOAD(lib, cu_device_get_count_fn, "cuDeviceGetCount");
    cu_device_get_fn get = IB_LOAD(lib, cu_device_get_fn, "cuDeviceGet");
    cu_device_get_name_fn get_name = IB_LOAD(lib, cu_device_get_name_fn, "cuDeviceGetName");
    cu_device_total_mem_fn total_mem = IB_LOAD(lib, cu_device_total_mem_fn, "cuDeviceTotalMem_v2");
    cu_device_get_attribute_fn attr =
        IB_LOAD(lib, cu_device_get_attribute_fn, "cuDeviceGetAttribute");
    if (!init || !get_count || !get || !get_name || !attr) {
        snprintf(info->note, sizeof info->note, "libcuda.so.1 lacks the driver API entry points");
        return false;
    }
    int v = 0;
    if (version && version(&v) == 0) info->cuda_version = v;
    ib_cu_result r = init(0);
    if (r != 0) {
        snprintf(info->note, sizeof info->note, "cuInit failed (CUresult %d)", r);
        return false;
    }
    int count = 0;
    if (get_count(&count) != 0) return false;
    if (count > IB_MAX_GPUS) count = IB_MAX_GPUS;
    for (int i = 0; i < count; i++) {
        ib_cu_device dev;
        if (get(&dev, i) != 0) continue;
        ib__gpu_device *d = &info->devices[info->count];
        memset(d, 0, sizeof *d);
        if (get_name(d->name, (int)sizeof d->name, dev) == 0) d->name[sizeof d->name - 1] = '\0';
        size_t mem = 0;
        if (total_mem && total_mem(&mem, dev) == 0) d->total_memory = mem;
        int x = 0;
        if (attr(&x, IB_CU_ATTR_COMPUTE_CAPABILITY_MAJOR, dev) == 0) d->cc_major = x;
        if (attr(&x, IB_CU_ATTR_COMPUTE_CAPABILITY_MINOR, dev) == 0) d->cc_minor = x;
        if (attr(&x, IB_CU_ATTR_MULTIPROCESSOR_COUNT, dev) == 0) d->sm_count = x;
        info->count++;
    }
    return true;
}

void ib__gpu_detect(ib__gpu_info *out) {
    ib__gpu_info info;
    memset(&info, 0, sizeof info);
    nvml_api nvml;
    nvml_open(&nvml, &info);
    if (cuda_devices(&info)) {
        snprintf(info.source, sizeof info.source, "cuda");
        /* Free memory comes from NVML only; CUDA and NVML number devices differently
         * (fastest first vs PCI order) unless both see the same single device or the
         * names line up one to one, so fill it in only then. */
        if (nvml.ok) {
            ib__gpu_info nv;
            memset(&nv, 0, sizeof nv);
            if (nvml_devices(&nvml, &nv) && nv.count == info.count) {
                bool same = true;
                for (int32_t i = 0; i < info.count; i++)
                    same = same && strcmp(nv.devices[i].name, info.devices[i].name) == 0 &&
                           nv.devices[i].total_memory == info.devices[i].total_memory;
                for (int32_t i = 0; same && i < info.count; i++)
                    info.devices[i].free_memory = nv.devices[i].free_memory;
            }
        }
    } else if (nvml_devices(&nvml, &info)) {
        snprintf(info.source, sizeof info.source, "nvml");
    }
    nvml_close(&nvml);
    if (info.count == 0) {
        snprintf(info.source, sizeof info.source, "none");
        if (info.note[0] == '\0')
            snprintf(info.note, sizeof info.note, "%s",
                     nvml.ok || info.cuda_version ? "the NVIDIA driver reports no GPU"
                                                  : "no NVIDIA driver (libcuda.so.1 / "
                                                    "libnvidia-ml.so.1 not found)");
    }
    *out = info;
}
