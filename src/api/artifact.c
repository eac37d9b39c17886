/* Writes compiled-model artifacts: plan -> generated module, weights blob, metadata (and
 * the model file for fallback steps), built in a temporary directory beside the target
 * and renamed into place, each file fsynced, so a reader never sees half an artifact. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/compiled.h"
#include "codegen/codegen.h"
#include "tune/tune.h"
#include "ir/shape_inference.h"

static ib_status write_all_fsync(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return ib__error(IB_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    const unsigned char *p = data;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            return ib__error(IB_ERR_IO, "cannot write '%s': %s", path, strerror(e));
        }
        done += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0)
        return ib__error(IB_ERR_IO, "cannot sync '%s': %s", path, strerror(errno));
    return IB_OK;
}

static ib_status copy_file_fsync(const char *from, const char *to) {
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return ib__error(IB_ERR_IO, "cannot read '%s': %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return ib__error(IB_ERR_IO, "cannot create '%s': %s", to, strerror(errno));
    }
    char buf[1 << 16];
    ib_status st = IB_OK;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = ib__error(IB_ERR_IO, "cannot read '%s': %s", from, strerror(errno));
            break;
        }
        if (r == 0) break;
        for (ssize_t done = 0; done < r;) {
            ssize_t w = write(out, buf + done, (size_t)(r - done));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                st = ib__error(IB_ERR_IO, "cannot write '%s': %s", to, strerror(errno));
                break;
            }
            done += w;
        }
        if (st) break;
    }
    if (st == IB_OK && fsync(out) != 0)
        st = ib__error(IB_ERR_IO, "cannot sync '%s': %s", to, strerror(errno));
    close(in);
    close(out);
    return st;
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}


/* An existing out_dir may be replaced only when it is an artifact or empty. */
static ib_status check_replaceable(const char *dir, bool *exists) {
    struct stat sb;
    *exists = false;
    if (lstat(dir, &sb) != 0) return IB_OK;
    *exists = true;
    if (!S_ISDIR(sb.st_mode))
        return ib__error(IB_ERR_INVALID_ARGUMENT, "'%s' exists and is not a directory", dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    if (access(path, F_OK) == 0) return IB_OK;
    if (rmdir(dir) == 0) { /* it was empty */
        *exists = false;
        return IB_OK;
    }
    return ib__error(IB_ERR_INVALID_ARGUMENT,
                     "'%s' exists and is not an InferBooster artifact: not replacing it", dir);
}

/* An artifact for another architecture runs under the deployable runtime (core and
 * target only, see runtime.c), which cannot rebuild a plan from model.onnx: that needs the
 * loader, the passes and the reference ops, i.e. the whole compiler on the device. So a
 * plan with reference-op steps is refused for such a target, naming the first step. */
static ib_status check_deployable(const ib__plan *plan) {
#if defined(__aarch64__)
    bool foreign = plan->target.arch != IB_ARCH_AARCH64;
#else
    bool foreign = plan->target.arch != IB_ARCH_X86_64;
#endif
    if (!foreign) return IB_OK;
    int32_t n = ib__codegen_fallback_count(plan);
    for (int32_t k = 0; n > 0 && k < plan->n_kernels; k++)
        if (!plan->kernels[k].tmpl && plan->kernels[k].n_nodes > 0)
            return ib__error(IB_ERR_UNSUPPORTED,
                             "cannot compile for %s: %d node(s) have no generated kernel and "
                             "would run the reference op, which the deployable runtime does "
                             "not include (first: %s)",
                             plan->target.name, n, ib__node_label(plan->kernels[k].nodes[0]));
    if (n > 0)
        return ib__error(IB_ERR_UNSUPPORTED, "cannot compile for %s: %d reference-op steps",
                         plan->target.name, n);
    return IB_OK;
}

ib_status ib__artifact_write_files(const ib__plan *plan, const char *dir, bool keep_source) {
    char path[4300];
    ib_status st = check_deployable(plan); /* for another CPU: every step generated */
    if (st == IB_OK) st = ib__codegen_build(plan, dir, keep_source);
    if (st == IB_OK) {
        snprintf(path, sizeof path, "%s/weights.bin", dir);
        st = write_all_fsync(path, plan->weights, plan->weights_bytes);
    }
    if (st == IB_OK) {
        ib__sb meta;
        ib__sb_init(&meta);
        st = ib__codegen_meta_json(plan, &meta);
        snprintf(path, sizeof path, "%s/meta.json", dir);
        if (st == IB_OK) st = write_all_fsync(path, meta.data, meta.len);
        ib__sb_free(&meta);
    }
    return st;
}

/* A fresh directory beside out_dir for a build or a copy (mkdtemp). */
static ib_status make_sibling(const char *out_dir, char *tmp, size_t cap) {
    int len = snprintf(tmp, cap, "%s.tmp-XXXXXX", out_dir);
    if (len < 0 || (size_t)len >= cap) return ib__error(IB_ERR_INVALID_ARGUMENT, "path too long");
    if (!mkdtemp(tmp))
        return ib__error(IB_ERR_IO, "cannot create a directory next to '%s': %s", out_dir,
                         strerror(errno));
    chmod(tmp, 0755);
    return IB_OK;
}

/* Renames the finished tmp into out_dir (swapping with an existing artifact, which is
 * then removed); on failure tmp is removed. */
static ib_status publish(const char *tmp, const char *out_dir, bool exists) {
    char parent[4096];
    ib__parent_dir(out_dir, parent, sizeof parent);
    fsync_dir(tmp);
    ib_status st = IB_OK;
    bool remove_tmp = true;
    if (exists) {
        /* Swap the directories in one step, then remove the old artifact. */
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out_dir, RENAME_EXCHANGE) != 0)
            st = ib__error(IB_ERR_IO, "cannot replace '%s': %s", out_dir, strerror(errno));
    } else if (rename(tmp, out_dir) != 0) {
        st = ib__error(IB_ERR_IO, "cannot rename into '%s': %s", out_dir, strerror(errno));
    } else {
        remove_tmp = false;
    }
    fsync_dir(parent);
    if (remove_tmp) ib__remove_compiler_dir(tmp); /* the failed build, or the replaced artifact */
    return st;
}

ib_status ib__artifact_compile(const ib_model *model, const char *model_path,
                               const char *target_name, int32_t batch, const char *out_dir,
                               bool keep_source, ib__compile_report *report) {
    if (!model || !out_dir || !out_dir[0])
        return ib__error(IB_ERR_INVALID_ARGUMENT, "model and output directory required");
    if (batch < 0) return ib__error(IB_ERR_INVALID_ARGUMENT, "batch must be >= 0, got %d", batch);
    double t0 = ib__now_s() * 1e3;
    ib__target target;
    /* "host" with a GPU detected tries the GPU first; the plan decides below */
    IB_TRY(ib__target_resolve_for_model(target_name, -1.0, &target));
    IB_TRY(ib__check_supported(model->graph));
    bool exists = false;
    IB_TRY(check_replaceable(out_dir, &exists));
    ib__compile_options opt;
    ib__compile_options_init(&opt);
    opt.batch = batch;
    ib__tune_knobs *tuned = NULL; /* the tuning database's best knobs, when there is one */
    IB_TRY(ib__tune_compile_knobs(&target, NULL, &tuned));
    if (tuned) opt.knob_source = ib__tune_knobs_source(tuned);
    ib__plan *plan = NULL;
    ib_status st = ib__build_plan(model->graph, &target, &opt, &plan);
    if (ib__target_is_cuda(&target) && (!target_name || strcmp(target_name, "host") == 0) &&
        (st != IB_OK || !ib__codegen_gpu_worthwhile(plan))) {
        ib__plan_destroy(plan); /* too small for the GPU, or not all of it runs there */
        plan = NULL;
        ib__error_clear();
        /* the CPU target's tuning records, not the GPU's */
        ib__tune_knobs_destroy(tuned);
        tuned = NULL;
        opt.knob_source = NULL;
        st = ib__target_resolve(target_name, &target);
        if (st == IB_OK) st = ib__tune_compile_knobs(&target, NULL, &tuned);
        if (tuned) opt.knob_source = ib__tune_knobs_source(tuned);
        if (st == IB_OK) st = ib__build_plan(model->graph, &target, &opt, &plan);
    }
    int32_t tuned_kernels = tuned ? ib__tune_knobs_applied(tuned) : 0;
    ib__tune_knobs_destroy(tuned);
    if (st) return ib__error_prefix(st, "cannot compile: ");
    st = check_deployable(plan); /* before making a directory for it */
    if (st) {
        ib__plan_destroy(plan);
        return st;
    }
    char tmp[4200], path[4300];
    st = make_sibling(out_dir, tmp, sizeof tmp);
    bool made = st == IB_OK;
    if (st == IB_OK) st = ib__artifact_write_files(plan, tmp, keep_source);
    int32_t fallback = ib__codegen_fallback_count(plan);
    if (st == IB_OK && fallback > 0) {
        if (!model_path)
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "the plan has %d reference steps: the model "
                           "file is needed in the artifact", fallback);
        snprintf(path, sizeof path, "%s/model.onnx", tmp);
        if (st == IB_OK) st = copy_file_fsync(model_path, path);
    }
    if (st == IB_OK) st = publish(tmp, out_dir, exists);
    else if (made) ib__remove_compiler_dir(tmp);
    if (st == IB_OK && report) {
        memset(report, 0, sizeof *report);
        snprintf(report->target, sizeof report->target, "%s", target.name);
        report->batch = ib__codegen_plan_batch(plan);
        report->kernels = plan->n_kernels;
        report->fallback = fallback;
        for (int32_t k = 0; k < plan->n_kernels; k++)
            if (plan->kernels[k].n_nodes > 1) report->fused++;
        report->arena_bytes = plan->arena_bytes;
        report->weights_bytes = plan->weights_bytes;
        report->has_model_copy = fallback > 0;
        report->tuned_kernels = tuned_kernels;
        report->compile_ms = ib__now_s() * 1e3 - t0;
    }
    ib__plan_destroy(plan);
    return st;
}

/* "key": N in meta.json (written by ib__codegen_meta_json), or -1. */
static long long meta_int(const char *meta, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = meta ? strstr(meta, pat) : NULL;
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

static ib_status read_small(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ib__error(IB_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) return ib__error(IB_ERR_IO, "cannot read '%s'", path);
    buf[n] = '\0';
    return IB_OK;
}

ib_status ib__artifact_export(const char *entry_dir, const char *model_path, const char *out_dir,
                              ib__compile_report *report) {
    if (!entry_dir || !out_dir || !out_dir[0])
        return ib__error(IB_ERR_INVALID_ARGUMENT, "artifact and output directory required");
    double t0 = ib__now_s() * 1e3;
    bool exists = false;
    IB_TRY(check_replaceable(out_dir, &exists));
    char meta[1 << 14], from[4300], to[4300], tmp[4200];
    snprintf(from, sizeof from, "%s/meta.json", entry_dir);
    IB_TRY(read_small(from, meta, sizeof meta));
    long long fallback = meta_int(meta, "fallback_kernels");
    IB_TRY(make_sibling(out_dir, tmp, sizeof tmp));
    /* Every file of the entry but the cache's own (.ib-*). */
    ib_status st = IB_OK;
    DIR *d = opendir(entry_dir);
    if (!d) st = ib__error(IB_ERR_IO, "cannot read '%s': %s", entry_dir, strerror(errno));
    struct dirent *de;
    while (st == IB_OK && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        int n1 = snprintf(from, sizeof from, "%s/%s", entry_dir, de->d_name);
        int n2 = snprintf(to, sizeof to, "%s/%s", tmp, de->d_name);
        if (n1 < 0 || n2 < 0 || (size_t)n1 >= sizeof from || (size_t)n2 >= sizeof to)
            st = ib__error(IB_ERR_INVALID_ARGUMENT, "path too long under '%s'", entry_dir);
        else
            st = copy_file_fsync(from, to);
    }
    if (d) closedir(d);
    if (st == IB_OK && fallback > 0) {
        snprintf(to, sizeof to, "%s/model.onnx", tmp);
        st = model_path ? copy_file_fsync(model_path, to)
                        : ib__error(IB_ERR_INVALID_ARGUMENT, "the plan has %lld reference "
                                    "steps: the model file is needed in the artifact", fallback);
    }
    if (st == IB_OK) st = publish(tmp, out_dir, exists);
    else ib__remove_compiler_dir(tmp);
    if (st == IB_OK && report) {
        memset(report, 0, sizeof *report);
        const char *t = strstr(meta, "\"target\": {\"name\": \"");
        if (t) sscanf(t + strlen("\"target\": {\"name\": \""), "%31[^\"]", report->target);
        report->batch = meta_int(meta, "batch");
        report->kernels = (int32_t)meta_int(meta, "kernel_count");
        report->fused = (int32_t)meta_int(meta, "fused_kernels");
        report->fallback = (int32_t)fallback;
        report->arena_bytes = (size_t)meta_int(meta, "arena_bytes");
        report->weights_bytes = (size_t)meta_int(meta, "weights_bytes");
        report->has_model_copy = fallback > 0;
        report->compile_ms = ib__now_s() * 1e3 - t0;
    }
    return st;
}
