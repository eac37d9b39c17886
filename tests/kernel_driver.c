/* Runs one kernel of a compiled test unit for a target this machine only emulates (an
 * aarch64 unit under qemu-aarch64): the kernel harness writes the call (case index,
 * threads, every argument buffer) to a file, this program loads the unit, makes the call
 * and writes the return code and the output buffer back. Built by the harness with the
 * target's compiler; it includes only the kernel ABI header and libc.
 *
 *   kernel_driver UNIT.so ENTRY CALL_FILE RESULT_FILE
 *
 * Call file: "IBKH", u32 version 1, i32 case, i32 threads, i32 n_args, i32 out_arg, then
 * per argument an i64 byte count (-1: NULL) and the bytes. Result file: i32 return code,
 * then the output argument's bytes. Exit 0 when the call was made, 1 otherwise. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inferbooster/kernel_abi.h"

typedef int (*entry_fn)(int, const ib_kernel_abi *, void *const *);

enum { MAX_ARGS = 64 };

/* The harness's pool runs ranges on threads; one thread here runs them all in turn. */
static void serial_for(void *pool, int64_t n, ib_kernel_range_fn fn, void *ctx) {
    (void)pool;
    if (n > 0) fn(ctx, 0, n);
}

static int no_fallback(void *user, int32_t step, void *const *buffers) {
    (void)user;
    (void)step;
    (void)buffers;
    return 1;
}

static int read_exact(FILE *f, void *p, size_t n) { return n == 0 || fread(p, 1, n, f) == n; }

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: kernel_driver UNIT.so ENTRY CALL_FILE RESULT_FILE\n");
        return 1;
    }
    void *so = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    entry_fn entry = NULL;
    if (so) *(void **)&entry = dlsym(so, argv[2]);
    if (!entry) {
        fprintf(stderr, "kernel_driver: %s\n", dlerror());
        return 1;
    }
    FILE *f = fopen(argv[3], "rb");
    char magic[4];
    uint32_t version = 0;
    int32_t hdr[4];
    if (!f || !read_exact(f, magic, 4) || memcmp(magic, "IBKH", 4) != 0 ||
        !read_exact(f, &version, 4) || version != 1 || !read_exact(f, hdr, sizeof hdr) ||
        hdr[2] < 0 || hdr[2] > MAX_ARGS || hdr[3] < 0 || hdr[3] >= hdr[2]) {
        fprintf(stderr, "kernel_driver: bad call file %s\n", argv[3]);
        return 1;
    }
    int32_t n_args = hdr[2], out_arg = hdr[3];
    void *args[MAX_ARGS];
    int64_t bytes[MAX_ARGS];
    for (int32_t i = 0; i < n_args; i++) {
        args[i] = NULL;
        if (!read_exact(f, &bytes[i], 8) || bytes[i] < -1 || bytes[i] > ((int64_t)1 << 34)) {
            fprintf(stderr, "kernel_driver: bad argument %d\n", (int)i);
            return 1;
        }
        if (bytes[i] < 0) continue;
        /* 64 bytes of slack past the end, as the harness's own buffers have */
        args[i] = aligned_alloc(64, ((size_t)bytes[i] + 64 + 63) / 64 * 64);
        if (!args[i] || !read_exact(f, args[i], (size_t)bytes[i])) {
            fprintf(stderr, "kernel_driver: cannot read argument %d\n", (int)i);
            return 1;
        }
    }
    fclose(f);
    ib_kernel_abi abi;
    memset(&abi, 0, sizeof abi);
    abi.version = IB_KERNEL_ABI_VERSION;
    abi.num_threads = hdr[1] > 0 ? hdr[1] : 1;
    abi.parallel_for = serial_for;
    abi.fallback = no_fallback;
    int32_t rc = entry(hdr[0], &abi, args);
    FILE *o = fopen(argv[4], "wb");
    if (!o || fwrite(&rc, 4, 1, o) != 1 ||
        (bytes[out_arg] > 0 && fwrite(args[out_arg], 1, (size_t)bytes[out_arg], o) !=
                                   (size_t)bytes[out_arg]) ||
        fclose(o) != 0) {
        fprintf(stderr, "kernel_driver: cannot write %s\n", argv[4]);
        return 1;
    }
    for (int32_t i = 0; i < n_args; i++) free(args[i]);
    dlclose(so);
    return 0;
}
