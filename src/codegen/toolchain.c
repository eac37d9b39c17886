/* Runs the C toolchain for generated code: posix_spawn with argument vectors (no shell),
 * parallel compile units, compiler output captured into the error message. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/toolchain.h"

extern char **environ;

/* The kernel ABI header's text, embedded at build time (kernel_abi_text.c). */
extern const char ib__kernel_abi_text[];

#define MAX_ARGS 48

/* The compiler's own temporary files (gcc's ccXXXXXX.s, collect2's, nvcc's) go to a
 * directory of ours beside the output instead of $TMPDIR: when we are killed mid-compile
 * (kill -9, the OOM killer) the compiler dies before it can remove them, and in /tmp
 * nobody would; beside the output they go with our scratch directory. */
#define COMPILER_TMP "cctmp"

typedef struct {
    char dir[4096];
    char var[4110]; /* "TMPDIR=<dir>" */
    char **env;     /* environ with var for TMPDIR */
} compiler_env;

/* Removes what the compilers left in their directory `dir`, then the directory. */
static void remove_compiler_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)) != NULL) {
        /* only the compilers' names: cc + 6 random characters (+ suffix), tmpxft_ (nvcc) */
        if (strncmp(e->d_name, "cc", 2) != 0 && strncmp(e->d_name, "tmpxft", 6) != 0) continue;
        int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (n > 0 && (size_t)n < sizeof path && lstat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

void ib__toolchain_tmp_remove(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/" COMPILER_TMP, dir);
    remove_compiler_tmp(path);
}

static ib_status compiler_env_open(const char *out_path, compiler_env *ce) {
    char parent[4000];
    ib__parent_dir(out_path, parent, sizeof parent);
    snprintf(ce->dir, sizeof ce->dir, "%s/" COMPILER_TMP, parent);
    if (mkdir(ce->dir, 0700) != 0 && errno != EEXIST)
        return ib__error(IB_ERR_IO, "cannot create '%s': %s", ce->dir, strerror(errno));
    snprintf(ce->var, sizeof ce->var, "TMPDIR=%s", ce->dir);
    size_t n = 0;
    while (environ[n]) n++;
    ce->env = ib__calloc(n + 2, sizeof(char *));
    if (!ce->env) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory starting the compiler");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "TMPDIR=", 7) != 0) ce->env[k++] = environ[i];
    ce->env[k++] = ce->var;
    ce->env[k] = NULL;
    return IB_OK;
}

static void compiler_env_close(compiler_env *ce) {
    ib__free(ce->env);
    ce->env = NULL;
    remove_compiler_tmp(ce->dir);
}

static ib_status spawn(const char *const *argv, const char *log_path, char **env, pid_t *out) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, env);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0)
        return ib__error(IB_ERR_IO, "cannot start the compiler '%s': %s", argv[0], strerror(rc));
    *out = pid;
    return IB_OK;
}

/* Reads the tail of the compiler's log into the error message. */
static ib_status compiler_failed(const char *what, const char *log_path, int status) {
    char text[768] = "";
    FILE *f = fopen(log_path, "r");
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, size > (long)sizeof text - 1 ? size - (long)sizeof text + 1 : 0, SEEK_SET);
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    return ib__error(IB_ERR_RUNTIME, "%s failed (%s %d): %s", what,
                     WIFSIGNALED(status) ? "signal" : "exit code",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), text);
}

static ib_status wait_ok(pid_t pid, const char *what, const char *log_path) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return ib__error(IB_ERR_IO, "waiting for the compiler: %s", strerror(errno));
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return IB_OK;
    return compiler_failed(what, log_path, status);
}

static int add_target_flags(const ib__target *t, const char **argv, int n) {
    for (int i = 0; i < IB_TARGET_MAX_FLAGS && t->cflags[i] && n < MAX_ARGS - 1; i++)
        argv[n++] = t->cflags[i];
    return n;
}

ib_status ib__toolchain_build_shared(const ib__target *target, int32_t n_sources,
                                     const char *const *sources, const char *include_dir,
                                     const char *out_so, int32_t jobs) {
    if (n_sources <= 0 || n_sources > 4096)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "between 1 and 4096 sources are needed");
    if (jobs < 1) jobs = 1;
    char log_path[4096];
    snprintf(log_path, sizeof log_path, "%s.log", out_so);
    unlink(log_path);
    compiler_env ce = {0};
    IB_TRY(compiler_env_open(out_so, &ce));
    char **objs = ib__calloc((size_t)n_sources, sizeof(char *));
    pid_t *pids = ib__calloc((size_t)n_sources, sizeof(pid_t));
    ib_status st = IB_OK;
    if (!objs || !pids) {
        st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory starting the compiler");
        goto done;
    }
    int32_t started = 0, finished = 0;
    while (finished < n_sources && st == IB_OK) {
        while (started < n_sources && started - finished < jobs && st == IB_OK) {
            size_t len = strlen(out_so) + 32;
            objs[started] = ib__malloc(len);
            if (!objs[started]) {
                st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory starting the compiler");
                break;
            }
            snprintf(objs[started], len, "%s.%d.o", out_so, started);
            const char *argv[MAX_ARGS];
            int n = 0;
            argv[n++] = target->cc;
            argv[n++] = "-std=c11";
            argv[n++] = "-O3";
            argv[n++] = "-fPIC";
            argv[n++] = "-ffp-contract=fast";
            argv[n++] = "-fno-math-errno";
            argv[n++] = "-w";
            n = add_target_flags(target, argv, n);
            if (include_dir) {
                argv[n++] = "-I";
                argv[n++] = include_dir;
            }
            argv[n++] = "-c";
            argv[n++] = sources[started];
            argv[n++] = "-o";
            argv[n++] = objs[started];
            argv[n] = NULL;
            st = spawn(argv, log_path, ce.env, &pids[started]);
            if (st == IB_OK) started++;
        }
        if (finished < started) {
            ib_status w = wait_ok(pids[finished], "compiling generated code", log_path);
            if (st == IB_OK) st = w;
            finished++;
        } else {
            break;
        }
    }
    while (finished < started) { /* reap whatever still runs after a failure */
        int status;
        waitpid(pids[finished++], &status, 0);
    }
    if (st == IB_OK) {
        const char **argv = ib__calloc((size_t)n_sources + 16, sizeof(char *));
        if (!argv) {
            st = ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory linking");
        } else {
            int n = 0;
            argv[n++] = target->cc;
            argv[n++] = "-shared";
            argv[n++] = "-o";
            argv[n++] = out_so;
            for (int32_t i = 0; i < n_sources; i++) argv[n++] = objs[i];
            argv[n++] = "-lm";
            argv[n] = NULL;
            pid_t pid;
            st = spawn(argv, log_path, ce.env, &pid);
            if (st == IB_OK) st = wait_ok(pid, "linking generated code", log_path);
            ib__free(argv);
        }
    }
done:
    if (objs)
        for (int32_t i = 0; i < n_sources; i++) {
            if (objs[i]) unlink(objs[i]);
            ib__free(objs[i]);
        }
    ib__free(objs);
    ib__free(pids);
    compiler_env_close(&ce);
    if (st == IB_OK) unlink(log_path);
    return st;
}

static bool executable(const char *path) {
    struct stat sb;
    return path && path[0] && stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, X_OK) == 0;
}

const char *ib__toolchain_nvcc(void) {
    static _Thread_local char found[4096];
    const char *env = getenv("IB_NVCC");
    if (env && env[0]) return executable(env) ? env : NULL;
    if (executable("/usr/local/cuda/bin/nvcc")) return "/usr/local/cuda/bin/nvcc";
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        if (n > 0 && n < sizeof found - 8) {
            snprintf(found, sizeof found, "%.*s/nvcc", (int)n, path);
            if (executable(found)) return found;
        }
        path = end ? end + 1 : NULL;
    }
    return NULL;
}

ib_status ib__toolchain_build_cuda(const char *source, const int32_t *sms, int32_t n_sms,
                                   const char *out_fatbin) {
    const char *nvcc = ib__toolchain_nvcc();
    if (!nvcc)
        return ib__error(IB_ERR_UNSUPPORTED, "no nvcc found (set IB_NVCC, or install the CUDA "
                         "toolkit at /usr/local/cuda)");
    if (n_sms < 1 || n_sms > 8) return ib__error(IB_ERR_INVALID_ARGUMENT, "1 to 8 architectures");
    char log_path[4096];
    snprintf(log_path, sizeof log_path, "%s.log", out_fatbin);
    unlink(log_path);
    /* -gencode arch=compute_XY,code=[sm_XY,compute_XY]: the cubin, and PTX that newer GPUs
     * compile at load time */
    char gencode[8][64];
    const char *argv[MAX_ARGS];
    int n = 0;
    argv[n++] = nvcc;
    argv[n++] = "-fatbin";
    argv[n++] = "-O3";
    argv[n++] = "-std=c++17";
    argv[n++] = "-w";
    /* the architectures compile in parallel (2 jobs, like the C units) */
    argv[n++] = "--threads";
    argv[n++] = "2";
    for (int32_t i = 0; i < n_sms; i++) {
        snprintf(gencode[i], sizeof gencode[i], "arch=compute_%d,code=[sm_%d,compute_%d]",
                 (int)sms[i], (int)sms[i], (int)sms[i]);
        argv[n++] = "-gencode";
        argv[n++] = gencode[i];
    }
    argv[n++] = "-o";
    argv[n++] = out_fatbin;
    argv[n++] = source;
    argv[n] = NULL;
    compiler_env ce = {0};
    IB_TRY(compiler_env_open(out_fatbin, &ce));
    pid_t pid;
    ib_status st = spawn(argv, log_path, ce.env, &pid);
    if (st == IB_OK) st = wait_ok(pid, "nvcc", log_path);
    compiler_env_close(&ce);
    if (st == IB_OK) unlink(log_path);
    return st;
}

const char *ib__toolchain_abi_include_dir(const char *scratch_dir) {
    static _Thread_local char dir[4096];
    char path[4200];
    snprintf(dir, sizeof dir, "%s/include", scratch_dir);
    snprintf(path, sizeof path, "%s/inferbooster", dir);
    mkdir(dir, 0700);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/inferbooster/kernel_abi.h", dir);
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(ib__kernel_abi_text, f);
    if (fclose(f) != 0) return NULL;
    return dir;
}

void ib__toolchain_abi_include_remove(const char *scratch_dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/include/inferbooster/kernel_abi.h", scratch_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/include/inferbooster", scratch_dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/include", scratch_dir);
    rmdir(path);
}
