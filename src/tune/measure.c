/* The measurement harness: a batch of knob sets for one plan kernel is emitted into two
 * compile units (built at once, one shared object), then run in a forked child with a
 * timeout per candidate. Each candidate's output is checked against the plan's own
 * knobs' before it is timed; a crash, hang, error or mismatch fails that candidate and
 * a new child carries on with the next. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen/emit_common.h"
#include "codegen/toolchain.h"
#include "inferbooster/kernel_abi.h"
#include "tune/measure_job.h"
#include "tune/tune.h"

_Static_assert(3 * IB_MAX_KERNEL_ARGS <= IB_MEASURE_MAX_ARGS, "a kernel's arguments fit a job");

static void fail(ib__tune_result *r, const char *note) {
    r->ok = false;
    r->ms = 0;
    snprintf(r->note, sizeof r->note, "%s", note);
}

/* ---- emission ---------------------------------------------------------------------------- */

/* INFERBOOSTER_TUNE_BREAK=crash:N|hang:N|wrong:N replaces candidate N of every batch by
 * code that segfaults, loops forever or writes a wrong result: how the tests show that
 * tuning survives broken candidates. */
static int break_kind(int32_t idx) {
    const char *b = getenv("INFERBOOSTER_TUNE_BREAK");
    if (!b) return 0;
    const char *colon = strchr(b, ':');
    if (!colon || atoi(colon + 1) != idx) return 0;
    if (strncmp(b, "crash:", 6) == 0) return 1;
    if (strncmp(b, "hang:", 5) == 0) return 2;
    if (strncmp(b, "wrong:", 6) == 0) return 3;
    return 0;
}

static ib_status emit_candidate(const ib__plan *plan, const ib__pkernel *base, int32_t idx,
                                const ib__knobs *knobs, ib__sb *unit) {
    ib__pkernel k = *base;
    if (knobs) k.knobs = *knobs;
    if (idx == IB_MEASURE_REF) snprintf(k.fn_name, sizeof k.fn_name, "tune_ref");
    else snprintf(k.fn_name, sizeof k.fn_name, "tune_c%d", (int)idx);
    if (knobs && !k.tmpl->knobs_valid(plan, &k, &k.knobs))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "knobs refused");
    int brk = idx == IB_MEASURE_REF ? 0 : break_kind(idx);
    ib__sb one;
    ib__sb_init(&one);
    ib__sb_printf(&one, "\n/* candidate %d:", (int)idx);
    for (int32_t i = 0; i < k.knobs.n; i++)
        ib__sb_printf(&one, " %s=%lld", k.knobs.name[i], (long long)k.knobs.value[i]);
    ib__sb_printf(&one, " */\n");
    ib_status st = IB_OK;
    if (brk) {
        ib__sb_printf(&one, "static int %s(const ib_kernel_abi *abi, void *const *args) {\n"
                            "  (void)abi;\n", k.fn_name);
        if (brk == 1) ib__sb_printf(&one, "  (void)args;\n  volatile int *p = (volatile int *)16;\n"
                                          "  return *p;\n}\n");
        else if (brk == 2) ib__sb_printf(&one, "  (void)args;\n  for (;;) __asm__ volatile(\"\");\n}\n");
        else ib__sb_printf(&one, "  *(float *)args[%d] += 1.0f;\n  return 0;\n}\n", (int)k.n_in);
    } else {
        st = k.tmpl->emit(plan, &k, &one);
    }
    if (st == IB_OK) st = ib__sb_status(&one);
    if (st == IB_OK) ib__sb_printf(unit, "%s", one.data);
    ib__sb_free(&one);
    return st;
}

static ib_status write_text(const char *path, const ib__sb *sb) {
    FILE *f = fopen(path, "w");
    if (!f) return ib__error(IB_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    size_t n = fwrite(sb->data, 1, sb->len, f);
    if (fclose(f) != 0 || n != sb->len) return ib__error(IB_ERR_IO, "cannot write '%s'", path);
    return IB_OK;
}

/* ---- the measuring process ------------------------------------------------------------- */

/* The job of candidates [first, n) not skipped: plain data, so that an agent on another
 * machine can run it as a forked child here does. cands: room for n indices. */
static void make_job(const ib__plan *plan, const ib__pkernel *k, int32_t first, int32_t n,
                     const bool *skip, const ib__tune_measure_opts *o, int32_t *cands,
                     ib__measure_job *job) {
    memset(job, 0, sizeof *job);
    job->threads = o->threads;
    job->repeats = o->repeats;
    job->priority = o->priority;
    int32_t ids[IB_MEASURE_MAX_ARGS];
    for (int32_t i = 0; i < k->n_in; i++) ids[job->n_args++] = k->in[i];
    for (int32_t i = 0; i < k->n_out; i++) ids[job->n_args++] = k->out[i];
    for (int32_t i = 0; i < k->n_epi; i++) ids[job->n_args++] = k->epi[i].operand_buf;
    for (int32_t a = 0; a < job->n_args; a++) {
        ib__measure_arg *ma = &job->args[a];
        if (ids[a] < 0) continue; /* IB_MEASURE_ARG_NONE */
        const ib__pbuf *pb = &plan->bufs[ids[a]];
        ma->is_float = pb->dtype == IB_DTYPE_FLOAT32;
        if (pb->kind == IB_BUF_WEIGHT) {
            ma->kind = IB_MEASURE_ARG_WEIGHT;
            ma->data = plan->weights + pb->offset;
            ma->nbytes = pb->nbytes;
            continue;
        }
        ma->kind = IB_MEASURE_ARG_FRESH;
        ma->nbytes = pb->nbytes ? pb->nbytes : ib__pbuf_physical_bytes(pb);
        ma->activation = a != k->n_in; /* everything fresh but the output */
    }
    job->out_arg = k->n_in;
    const ib__pbuf *ob = &plan->bufs[k->out[0]];
    job->out_channels = ob->rank == 4 ? ob->dims[1] : 0;
    job->out_hw = ob->rank == 4 ? ob->dims[2] * ob->dims[3] : 0;
    job->out_block = ob->layout == IB_LAYOUT_NCHWC ? ob->block : 0;
    /* larger than what the cores' L2 caches hold together, within reason */
    int64_t l2 = plan->target.l2_bytes > 0 ? plan->target.l2_bytes : 1 << 20;
    int64_t cores = plan->target.num_cores > 0 ? plan->target.num_cores : 1;
    int64_t fb = 4 * l2 * cores;
    job->flush_bytes = (uint64_t)(fb < (8 << 20) ? (8 << 20) : fb > (64 << 20) ? (64 << 20) : fb);
    for (int32_t i = first; i < n; i++)
        if (!skip[i]) cands[job->n_cands++] = i;
    job->cands = cands;
}

/* The agent command: split at spaces (no shell, no quoting). */
static int32_t split_command(char *cmd, char **argv, int32_t cap) {
    int32_t n = 0;
    for (char *tok = strtok(cmd, " \t"); tok && n < cap - 1; tok = strtok(NULL, " \t"))
        argv[n++] = tok;
    argv[n] = NULL;
    return n;
}

/* Starts the process that measures `job`: a forked child of this one, or the agent
 * command (o->agent) fed the job and the shared object on its standard input. Its
 * result lines arrive on *out_fd. */
static pid_t start_measurer(const ib__measure_job *job, const char *so,
                            const ib__tune_measure_opts *o, int *out_fd, char *why,
                            size_t why_cap) {
    void *so_bytes = NULL;
    size_t so_len = 0;
    if (o->agent && o->agent[0]) {
        FILE *f = fopen(so, "rb");
        long len = -1;
        if (f && fseek(f, 0, SEEK_END) == 0) len = ftell(f);
        if (f && len > 0 && fseek(f, 0, SEEK_SET) == 0 && (so_bytes = ib__malloc((size_t)len)) &&
            fread(so_bytes, 1, (size_t)len, f) == (size_t)len)
            so_len = (size_t)len;
        if (f) fclose(f);
        if (!so_len) {
            ib__free(so_bytes);
            snprintf(why, why_cap, "cannot read the candidates' shared object");
            return -1;
        }
    }
    int res[2], feed[2] = {-1, -1};
    if (pipe(res) != 0 || (so_len && pipe(feed) != 0)) {
        snprintf(why, why_cap, "pipe: %s", strerror(errno));
        ib__free(so_bytes);
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_cap, "fork: %s", strerror(errno));
        close(res[0]);
        close(res[1]);
        if (so_len) close(feed[0]), close(feed[1]);
        ib__free(so_bytes);
        return -1;
    }
    if (pid == 0) {
        close(res[0]);
        if (!so_len) { /* measure here */
            FILE *out = fdopen(res[1], "w");
            if (out) ib__measure_job_run(job, so, out);
            _exit(0);
        }
        /* the agent: its own process group, so a timeout kills what it started too */
        setpgid(0, 0);
        close(feed[1]);
        if (dup2(feed[0], 0) < 0 || dup2(res[1], 1) < 0) _exit(127);
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s", o->agent);
        char *argv[32];
        if (split_command(cmd, argv, 32) > 0) execvp(argv[0], argv);
        printf("ref fail cannot start the measurement agent '%s': %s\n", argv[0] ? argv[0] : "",
               strerror(errno));
        fflush(stdout);
        _exit(127);
    }
    close(res[1]);
    if (so_len) {
        close(feed[0]);
        /* an agent that dies early must not kill us with SIGPIPE */
        void (*old)(int) = signal(SIGPIPE, SIG_IGN);
        ib_status st = ib__measure_job_send(job, so_bytes, so_len, feed[1]);
        signal(SIGPIPE, old);
        close(feed[1]);
        if (st) ib__error_clear(); /* the agent's own line (or its death) says why */
    }
    ib__free(so_bytes);
    *out_fd = res[0];
    return pid;
}


/* ---- the parent ---------------------------------------------------------------------------- */

/* Removes a batch's scratch directory: the two units, the module, the compiler's log and
 * the kernel ABI header copy. */
static void remove_batch_dir(const char *dir) {
    static const char *const files[] = {"tune_0.c", "tune_1.c", "tune.so", "tune.so.log"};
    char path[4300];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    ib__toolchain_abi_include_remove(dir);
    ib__toolchain_tmp_remove(dir);
    rmdir(dir);
}
/* Runs candidates [first, n) in one child until it finishes, dies or times out; returns
 * the index to restart from (n when done), or -1 when the reference failed. */
static int32_t run_child(const ib__plan *plan, const ib__pkernel *k, const char *so,
                         int32_t first, int32_t n, const bool *skip,
                         const ib__tune_measure_opts *o, ib__tune_result *res, double *ref_ms,
                         char *why, size_t why_cap) {
    int32_t *cands = ib__malloc((size_t)(n > 0 ? n : 1) * sizeof *cands);
    if (!cands) {
        snprintf(why, why_cap, "out of memory");
        return -1;
    }
    ib__measure_job job;
    make_job(plan, k, first, n, skip, o, cands, &job);
    int fd = -1;
    pid_t pid = start_measurer(&job, so, o, &fd, why, why_cap);
    ib__free(cands);
    if (pid < 0) return -1;
    bool remote = o->agent && o->agent[0];
    double limit = o->timeout_s > 0 ? o->timeout_s : 10.0;
    /* loading, threads and the reference run (an emulator takes its time) */
    double deadline = ib__now_s() + (remote ? 300.0 : 60.0);
    int32_t current = IB_MEASURE_REF, next = n;
    int32_t resume = first; /* after the last candidate with a result */
    bool ref_seen = first > 0, done = false, timed_out = false;
    char buf[512];
    size_t have = 0;
    while (!done) {
        double left = deadline - ib__now_s();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pf = {fd, POLLIN, 0};
        int pr = poll(&pf, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr == 0) continue;
        ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break; /* the measuring process is gone */
        have += (size_t)r;
        buf[have] = '\0';
        char *line = buf, *nl;
        while (!done && (nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            ib__measure_result m;
            bool parsed = ib__measure_result_parse(line, &m);
            line = nl + 1;
            if (!parsed) continue;
            if (m.idx == IB_MEASURE_REF) {
                if (!m.ok) {
                    snprintf(why, why_cap, "%s", m.note);
                    next = -1;
                    done = true;
                    break;
                }
                ref_seen = true;
                if (*ref_ms <= 0 || m.ms < *ref_ms) *ref_ms = m.ms;
                /* a candidate may take many times the default's time, not forever */
                double per = m.ms * 1e-3 * 100.0 * (double)(o->repeats + 2) + 1.0;
                if (per < limit) limit = per;
                deadline = ib__now_s() + limit;
                continue;
            }
            if (m.idx < first || m.idx >= n) continue;
            if (m.kind == 0) {
                current = m.idx;
                deadline = ib__now_s() + limit;
                continue;
            }
            res[m.idx].ok = m.ok;
            res[m.idx].ms = m.ms;
            if (m.idx + 1 > resume) resume = m.idx + 1;
            snprintf(res[m.idx].note, sizeof res[m.idx].note, "%.63s", m.note);
            current = IB_MEASURE_REF;
            deadline = ib__now_s() + limit;
        }
        have = strlen(line);
        memmove(buf, line, have + 1);
        if (have >= sizeof buf - 1) have = 0; /* a line too long to be ours */
    }
    close(fd);
    if (timed_out || next == -1) kill(-pid, SIGKILL), kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (next == -1) return -1;
    if (!ref_seen) {
        snprintf(why, why_cap, "%s", timed_out ? "the default knobs' kernel timed out"
                                               : "the default knobs' kernel crashed");
        return -1;
    }
    if (current != IB_MEASURE_REF) {
        char note[64];
        if (timed_out) snprintf(note, sizeof note, "timed out after %.1f s", limit);
        else if (WIFSIGNALED(status)) snprintf(note, sizeof note, "crashed (signal %d)", WTERMSIG(status));
        /* a sanitizer's fault handler reports and exits instead of dying by the signal */
        else if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
            snprintf(note, sizeof note, "crashed (exit status %d)", WEXITSTATUS(status));
        else snprintf(note, sizeof note, "the measuring process died");
        fail(&res[current], note);
        return current + 1;
    }
    /* died while timing the reference between candidates: the rest in a new child */
    if (resume > first && resume < n) return resume;
    return n;
}

ib_status ib__tune_measure(const ib__plan *plan, int32_t kernel, int32_t n,
                           const ib__knobs *cands, const ib__tune_measure_opts *o,
                           ib__tune_result *res, double *ref_ms) {
    if (kernel < 0 || kernel >= plan->n_kernels || n < 0)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "tune: no kernel %d", kernel);
    const ib__pkernel *k = &plan->kernels[kernel];
    if (!k->tmpl || !k->tmpl->emit || !k->tmpl->knobs_valid)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "tune: kernel %d has no tunable template", kernel);
    bool *skip = ib__calloc((size_t)(n ? n : 1), sizeof *skip);
    if (!skip) return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    for (int32_t i = 0; i < n; i++) fail(&res[i], "not measured");
    *ref_ms = 0;
    ib__sb unit[2];
    for (int u = 0; u < 2; u++) {
        ib__sb_init(&unit[u]);
        ib__emit_prelude(&unit[u], &plan->target);
    }
    ib_status st = emit_candidate(plan, k, IB_MEASURE_REF, NULL, &unit[0]);
    if (st) {
        ib__free(skip);
        ib__sb_free(&unit[0]);
        ib__sb_free(&unit[1]);
        return ib__error_prefix(st, "tune: the default knobs' kernel: ");
    }
    for (int32_t i = 0; i < n; i++) {
        if (emit_candidate(plan, k, i, &cands[i], &unit[i % 2]) != IB_OK) {
            fail(&res[i], ib_last_error());
            ib__error_clear();
            skip[i] = true;
        }
    }
    for (int u = 0; u < 2; u++) {
        ib__sb_printf(&unit[u], "\n__attribute__((visibility(\"default\"))) int tune_entry_%d("
                                "int idx, const ib_kernel_abi *abi, void *const *args);\n", u);
        ib__sb_printf(&unit[u], "int tune_entry_%d(int idx, const ib_kernel_abi *abi, "
                                "void *const *args) {\n  switch (idx) {\n", u);
        if (u == 0) ib__sb_printf(&unit[u], "  case %d: return tune_ref(abi, args);\n", IB_MEASURE_REF);
        for (int32_t i = u; i < n; i += 2)
            if (!skip[i]) ib__sb_printf(&unit[u], "  case %d: return tune_c%d(abi, args);\n", (int)i, (int)i);
        ib__sb_printf(&unit[u], "  }\n  return -2;\n}\n");
    }
    const char *tmpdir = ib__tmp_dir();
    /* a tuner killed mid-batch (Ctrl-C is how tuning ends) leaves its directory: the
     * pid in the name lets the next one sweep it */
    ib__sweep_dead_scratch(tmpdir, "ib_tune", remove_batch_dir);
    char dir[4096], src[2][4200], so[4200];
    snprintf(dir, sizeof dir, "%s/ib_tune-%ld-XXXXXX", tmpdir, (long)getpid());
    if (!mkdtemp(dir)) st = ib__error(IB_ERR_IO, "tune: cannot create a scratch directory: %s",
                                      strerror(errno));
    for (int u = 0; u < 2 && st == IB_OK; u++) {
        snprintf(src[u], sizeof src[u], "%s/tune_%d.c", dir, u);
        st = ib__sb_status(&unit[u]);
        if (st == IB_OK) st = write_text(src[u], &unit[u]);
    }
    snprintf(so, sizeof so, "%s/tune.so", dir);
    if (st == IB_OK) {
        const char *srcs[2] = {src[0], src[1]};
        st = ib__toolchain_build_shared(&plan->target, 2, srcs, ib__toolchain_abi_include_dir(dir),
                                        so, 2);
        if (st) {
            /* one candidate that does not compile must not cost the batch: each alone */
            fprintf(stderr, "tune: batch build failed (%s); measuring nothing of it\n",
                    ib_last_error());
            ib__error_clear();
            for (int32_t i = 0; i < n; i++)
                if (!skip[i]) {
                    fail(&res[i], "build failed");
                    skip[i] = true;
                }
            st = IB_OK;
        }
    }
    char why[128] = "";
    for (int32_t first = 0; st == IB_OK && first < n;) {
        bool any = false;
        for (int32_t i = first; i < n; i++) any |= !skip[i];
        if (!any) break;
        int32_t next = run_child(plan, k, so, first, n, skip, o, res, ref_ms, why, sizeof why);
        if (next < 0) st = ib__error(IB_ERR_INTERNAL, "tune: %s", why);
        else first = next;
    }
    if (!getenv("IB_TUNE_KEEP")) remove_batch_dir(dir);
    ib__sb_free(&unit[0]);
    ib__sb_free(&unit[1]);
    ib__free(skip);
    return st;
}
