/* Runs the target's C compiler on generated sources: argument vectors, never a shell;
 * several compile units at once; the compiler's messages kept for the error. */
#ifndef IB_CODEGEN_TOOLCHAIN_H
#define IB_CODEGEN_TOOLCHAIN_H

#include "target/target_desc.h"

/* Compiles `n_sources` C files into the shared object `out_so` with the target's
 * flags (-O3 -fPIC -shared, -I include_dir for kernel_abi.h when not NULL), compiling
 * up to `jobs` units in parallel. On failure the message holds the compiler's output
 * (trimmed). Object files go next to out_so and are removed. */
ib_status ib__toolchain_build_shared(const ib__target *target, int32_t n_sources,
                                     const char *const *sources, const char *include_dir,
                                     const char *out_so, int32_t jobs);

/* Removes the compilers' leftover temporary files in `dir`/cctmp, and that directory: the
 * build functions point the compiler's $TMPDIR there (beside their output), and a process
 * killed mid-compile leaves them behind. The removers of scratch directories call this
 * before removing one. */
void ib__toolchain_tmp_remove(const char *dir);

/* The nvcc to use: $IB_NVCC when set, else /usr/local/cuda/bin/nvcc, else the first
 * `nvcc` on PATH; NULL when none is executable. */
const char *ib__toolchain_nvcc(void);

/* Compiles the CUDA C file `source` into the fat binary `out_fatbin` holding a cubin
 * and the PTX of each compute capability in `sms` (80 = sm_80; n_sms of them), with
 * nvcc run without a shell. On failure the message holds nvcc's output (trimmed). */
ib_status ib__toolchain_build_cuda(const char *source, const int32_t *sms, int32_t n_sms,
                                   const char *out_fatbin);

/* The directory holding inferbooster/kernel_abi.h for generated code: the source tree's
 * include/ when built from it (IB_SOURCE_INCLUDE_DIR), else a copy written into
 * `scratch_dir`. Returns a path valid until the next call. */
const char *ib__toolchain_abi_include_dir(const char *scratch_dir);
/* Removes the copy ib__toolchain_abi_include_dir wrote into scratch_dir (if any). */
void ib__toolchain_abi_include_remove(const char *scratch_dir);

#endif /* IB_CODEGEN_TOOLCHAIN_H */
