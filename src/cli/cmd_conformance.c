/* `inferbooster conformance`: runs ONNX backend test cases (model.onnx plus
 * test_data_set_*) and compares outputs with ONNX's tolerances. Each case runs in a
 * forked child with a timeout, so a crash or a hang is reported as that case's failure;
 * children report through a pipe, several at a time with -j. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/core.h"
#include "onnx/onnx_loader.h"

#define DEFAULT_DATA_DIR "/usr/share/libonnx-testdata/data"
#define MAX_MESSAGE 2048
#define RTOL 1e-3
#define ATOL 1e-7

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster conformance [DIR...] [options]\n"
            "\n"
            "Runs ONNX backend test cases. A DIR holding model.onnx is one case; otherwise\n"
            "each subdirectory (and each of theirs) holding model.onnx is a case. DIR\n"
            "defaults to " DEFAULT_DATA_DIR ". Cases are named by their last two path\n"
            "components (node/test_relu). Outputs must match within |got - expected| <=\n"
            "1e-7 + 1e-3 * |expected| (NaN equals NaN; integers and bools exactly).\n"
            "\n"
            "  --json                  print one JSON object instead of lines\n"
            "  -j N                    run N cases at once (default 1)\n"
            "  --timeout S             seconds per case (default 60)\n"
            "  --filter GLOB           only cases whose name matches GLOB (repeatable)\n"
            "  --threads N             threads per session (default 1)\n"
            "  --path P                executor: 'auto' (default: the session default, which\n"
            "                          compiles models except tiny ones with generated kernels),\n"
            "                          'compiled' (compile every model), 'reference'\n"
            "  --reference             same as --path reference\n"
            "  --list-passing FILE     write the names of passing cases, sorted\n"
            "  --expect-passing FILE   exit 1 if a case listed in FILE does not pass\n"
            "\n"
            "Load, session or run errors with status IB_ERR_UNSUPPORTED count as\n"
            "'unsupported'; other errors, mismatches, crashes and timeouts as 'fail'.\n");
}

typedef enum case_status { CASE_PENDING = 0, CASE_PASS, CASE_FAIL, CASE_UNSUPPORTED } case_status;

typedef struct test_case {
    char *name; /* "node/test_relu" */
    char *dir;
    case_status status;
    char *message;
    /* while running */
    pid_t pid;
    int fd;
    double deadline;
    char buf[MAX_MESSAGE + 2];
    size_t buf_len;
    bool eof;
} test_case;

typedef struct case_list {
    test_case *items;
    size_t n, cap;
} case_list;

typedef struct conf_options {
    const char **dirs;
    int n_dirs;
    const char **filters;
    int n_filters;
    bool json;
    int jobs;
    int timeout_s;
    int threads;
    bool reference;
    bool compile_all; /* --path compiled */
    const char *list_passing;
    const char *expect_passing;
} conf_options;

static char *join_path(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    while (la > 1 && a[la - 1] == '/') la--;
    char *p = ib__malloc(la + lb + 2);
    if (!p) return NULL;
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool has_model(const char *dir) {
    char *p = join_path(dir, "model.onnx");
    struct stat st;
    bool ok = p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
    ib__free(p);
    return ok;
}

/* The last two components of a path ("…/node/test_relu" -> "node/test_relu"). */
static char *case_name(const char *dir) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t slashes = 0, start = 0;
    for (size_t i = n; i > 0; i--)
        if (dir[i - 1] == '/' && ++slashes == 2) {
            start = i;
            break;
        }
    char *name = ib__malloc(n - start + 1);
    if (!name) return NULL;
    memcpy(name, dir + start, n - start);
    name[n - start] = '\0';
    return name;
}

static bool add_case(case_list *l, const char *dir, const conf_options *o) {
    char *name = case_name(dir);
    if (!name) return false;
    bool wanted = o->n_filters == 0;
    for (int i = 0; i < o->n_filters && !wanted; i++) wanted = fnmatch(o->filters[i], name, 0) == 0;
    for (size_t i = 0; i < l->n && wanted; i++)
        if (strcmp(l->items[i].name, name) == 0) wanted = false; /* given twice */
    if (!wanted) {
        ib__free(name);
        return true;
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 256;
        test_case *items = ib__realloc(l->items, ncap * sizeof *items);
        if (!items) {
            ib__free(name);
            return false;
        }
        l->items = items;
        l->cap = ncap;
    }
    test_case *c = &l->items[l->n++];
    memset(c, 0, sizeof *c);
    c->name = name;
    c->dir = ib__strdup(dir);
    c->fd = -1;
    return c->dir != NULL;
}

static int compare_names(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip_dots(const struct dirent *e) { return e->d_name[0] != '.'; }

/* Adds the cases under dir: dir itself, its subdirectories, or theirs. */
static bool collect(case_list *l, const char *dir, int depth, const conf_options *o) {
    if (has_model(dir)) return add_case(l, dir, o);
    if (depth >= 2) return true;
    struct dirent **entries = NULL;
    int n = scandir(dir, &entries, skip_dots, compare_names);
    if (n < 0) return true;
    bool ok = true;
    for (int i = 0; i < n; i++) {
        char *sub = ok ? join_path(dir, entries[i]->d_name) : NULL;
        if (sub && is_dir(sub)) ok = collect(l, sub, depth + 1, o);
        else if (ok && !sub) ok = false;
        ib__free(sub);
        free(entries[i]); /* allocated by scandir */
    }
    free(entries);
    return ok;
}

static int compare_cases(const void *a, const void *b) {
    return strcmp(((const test_case *)a)->name, ((const test_case *)b)->name);
}

/* ---- One case, in the child ------------------------------------------------------ */

typedef struct case_result {
    case_status status;
    char message[MAX_MESSAGE];
} case_result;

static void set_result(case_result *r, case_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_result(case_result *r, case_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    r->status = st;
}

static case_status status_for(ib_status s) { return s == IB_ERR_UNSUPPORTED ? CASE_UNSUPPORTED : CASE_FAIL; }

static void format_value(char *buf, size_t cap, const ib_tensor *t, int64_t i) {
    if (ib__dtype_is_float(t->dtype)) snprintf(buf, cap, "%.9g", ib__load_f64(t->data, t->dtype, i));
    else if (t->dtype == IB_DTYPE_UINT64)
        snprintf(buf, cap, "%llu", (unsigned long long)((const uint64_t *)t->data)[i]);
    else snprintf(buf, cap, "%lld", (long long)ib__load_i64(t->data, t->dtype, i));
}

/* Compares one output; false with r set on a mismatch. */
static bool compare_output(const char *name, const ib_tensor *got, const ib_tensor *want,
                           case_result *r) {
    char a[160], b[160];
    /* ONNX stores bfloat16 test data as uint16 bit patterns (numpy has no bfloat16). */
    ib_tensor want_bf16;
    if (got->dtype == IB_DTYPE_BFLOAT16 && want->dtype == IB_DTYPE_UINT16) {
        want_bf16 = *want;
        want_bf16.dtype = IB_DTYPE_BFLOAT16;
        want = &want_bf16;
    }
    if (got->dtype != want->dtype) {
        set_result(r, CASE_FAIL, "output '%s': dtype %s, expected %s", name,
                   ib_dtype_name(got->dtype), ib_dtype_name(want->dtype));
        return false;
    }
    bool same_shape = got->rank == want->rank;
    for (int32_t d = 0; same_shape && d < got->rank; d++) same_shape = got->shape[d] == want->shape[d];
    if (!same_shape) {
        set_result(r, CASE_FAIL, "output '%s': shape %s, expected %s", name,
                   ib__cli_dims_string(got->shape, got->rank, a, sizeof a),
                   ib__cli_dims_string(want->shape, want->rank, b, sizeof b));
        return false;
    }
    int64_t count = ib_tensor_element_count(want);
    size_t esize = ib_dtype_size(want->dtype);
    if (count < 0 || esize == 0) {
        set_result(r, CASE_UNSUPPORTED, "output '%s': cannot compare dtype %s", name,
                   ib_dtype_name(want->dtype));
        return false;
    }
    if (count > 0 && (!got->data || got->nbytes < (size_t)count * esize || !want->data ||
                      want->nbytes < (size_t)count * esize)) {
        set_result(r, CASE_FAIL, "output '%s': holds %zu bytes, its shape needs %zu", name,
                   got->nbytes, (size_t)count * esize);
        return false;
    }
    int64_t worst = -1, bad = 0;
    double worst_excess = 0;
    if (ib__dtype_is_float(want->dtype)) {
        for (int64_t i = 0; i < count; i++) {
            double g = ib__load_f64(got->data, got->dtype, i);
            double e = ib__load_f64(want->data, want->dtype, i);
            double excess;
            if (isnan(e) || isnan(g)) excess = isnan(e) && isnan(g) ? 0 : INFINITY;
            else if (isinf(e) || isinf(g)) excess = g == e ? 0 : INFINITY;
            else excess = fabs(g - e) - (ATOL + RTOL * fabs(e));
            if (excess > 0) {
                bad++;
                if (worst < 0 || excess > worst_excess) {
                    worst = i;
                    worst_excess = excess;
                }
            }
        }
    } else {
        const unsigned char *g = got->data, *e = want->data;
        for (int64_t i = 0; i < count; i++)
            if (memcmp(g + (size_t)i * esize, e + (size_t)i * esize, esize) != 0) {
                if (worst < 0) worst = i;
                bad++;
            }
    }
    if (bad == 0) return true;
    char gv[64], ev[64];
    format_value(gv, sizeof gv, got, worst);
    format_value(ev, sizeof ev, want, worst);
    set_result(r, CASE_FAIL, "output '%s' %s worst at index %lld: got %s expected %s (%lld of %lld differ)",
               name, ib__cli_dims_string(want->shape, want->rank, a, sizeof a), (long long)worst, gv,
               ev, (long long)bad, (long long)count);
    return false;
}

typedef struct tensor_set {
    ib_tensor *t;
    char **names;
    size_t n, cap;
} tensor_set;

static void tensor_set_free(tensor_set *s) {
    for (size_t i = 0; i < s->n; i++) {
        ib_tensor_release(&s->t[i]);
        ib__free(s->names[i]);
    }
    ib__free(s->t);
    ib__free(s->names);
    memset(s, 0, sizeof *s);
}

/* Reads prefix_0.pb, prefix_1.pb, ... until one is missing. */
static bool read_tensors(const char *set_dir, const char *prefix, tensor_set *s, case_result *r) {
    for (size_t k = 0;; k++) {
        char file[64];
        snprintf(file, sizeof file, "%s_%zu.pb", prefix, k);
        char *path = join_path(set_dir, file);
        if (!path) {
            set_result(r, CASE_FAIL, "out of memory");
            return false;
        }
        struct stat st;
        if (stat(path, &st) != 0) {
            ib__free(path);
            return true;
        }
        if (s->n == s->cap) {
            size_t ncap = s->cap ? s->cap * 2 : 8;
            ib_tensor *t = ib__realloc(s->t, ncap * sizeof *t);
            if (t) s->t = t;
            char **names = t ? ib__realloc(s->names, ncap * sizeof *names) : NULL;
            if (names) s->names = names;
            if (!t || !names) {
                ib__free(path);
                set_result(r, CASE_FAIL, "out of memory");
                return false;
            }
            s->cap = ncap;
        }
        memset(&s->t[s->n], 0, sizeof s->t[s->n]);
        s->names[s->n] = NULL;
        ib_status rs = ib__onnx_read_tensor_file(path, &s->t[s->n], &s->names[s->n]);
        ib__free(path);
        if (rs != IB_OK) {
            set_result(r, status_for(rs), "reading %s: %s", file, ib_last_error());
            return false;
        }
        s->n++;
    }
}

static int is_data_set(const struct dirent *e) { return strncmp(e->d_name, "test_data_set_", 14) == 0; }

/* Names for tensors read from files: theirs, or the model's in order when empty. */
static bool resolve_names(const ib_model *m, tensor_set *s, bool inputs, const char **names,
                          case_result *r) {
    size_t model_n = inputs ? ib_model_input_count(m) : ib_model_output_count(m);
    for (size_t i = 0; i < s->n; i++) {
        if (s->names[i] && s->names[i][0]) {
            names[i] = s->names[i];
            continue;
        }
        ib_value_info info;
        if (i >= model_n || (inputs ? ib_model_input_info(m, i, &info) : ib_model_output_info(m, i, &info)) != IB_OK) {
            set_result(r, CASE_FAIL, "%s_%zu.pb has no name and the model has only %zu %ss",
                       inputs ? "input" : "output", i, model_n, inputs ? "input" : "output");
            return false;
        }
        names[i] = info.name;
    }
    return true;
}

/* ONNX stores bfloat16 test inputs as uint16 bit patterns; give them the dtype the
 * model declares. */
static void relabel_bf16_inputs(const ib_model *m, tensor_set *in, const char **names) {
    size_t n = ib_model_input_count(m);
    for (size_t i = 0; i < in->n; i++) {
        if (in->t[i].dtype != IB_DTYPE_UINT16) continue;
        for (size_t k = 0; k < n; k++) {
            ib_value_info info;
            if (ib_model_input_info(m, k, &info) == IB_OK && strcmp(info.name, names[i]) == 0 &&
                info.dtype == IB_DTYPE_BFLOAT16)
                in->t[i].dtype = IB_DTYPE_BFLOAT16;
        }
    }
}

static void run_data_set(ib_session *sess, const ib_model *m, const char *set_dir, const char *set_name,
                         case_result *r) {
    tensor_set in, want;
    memset(&in, 0, sizeof in);
    memset(&want, 0, sizeof want);
    const char **in_names = NULL, **out_names = NULL;
    ib_tensor *got = NULL;
    if (!read_tensors(set_dir, "input", &in, r) || !read_tensors(set_dir, "output", &want, r))
        goto done;
    in_names = ib__calloc(in.n + 1, sizeof *in_names);
    out_names = ib__calloc(want.n + 1, sizeof *out_names);
    got = ib__calloc(want.n + 1, sizeof *got);
    if (!in_names || !out_names || !got) {
        set_result(r, CASE_FAIL, "out of memory");
        goto done;
    }
    if (!resolve_names(m, &in, true, in_names, r) || !resolve_names(m, &want, false, out_names, r))
        goto done;
    relabel_bf16_inputs(m, &in, in_names);
    if (want.n == 0) {
        set_result(r, CASE_FAIL, "%s has no output_0.pb", set_name);
        goto done;
    }
    ib_status s = ib_session_run(sess, in.n, in_names, in.t, want.n, out_names, got);
    if (s != IB_OK) {
        set_result(r, status_for(s), "%s", ib_last_error());
        goto done;
    }
    for (size_t i = 0; i < want.n; i++)
        if (!compare_output(out_names[i], &got[i], &want.t[i], r)) break;
done:
    if (got)
        for (size_t i = 0; i < want.n; i++) ib_tensor_release(&got[i]);
    ib__free(got);
    ib__free(in_names);
    ib__free(out_names);
    tensor_set_free(&in);
    tensor_set_free(&want);
}

static void run_case(const test_case *c, const conf_options *o, case_result *r) {
    r->status = CASE_PASS;
    r->message[0] = '\0';
    char *model_path = join_path(c->dir, "model.onnx");
    ib_model *model = NULL;
    ib_session *sess = NULL;
    struct dirent **sets = NULL;
    int n_sets = 0;
    if (!model_path) {
        set_result(r, CASE_FAIL, "out of memory");
        return;
    }
    ib_status s = ib_model_load_file(model_path, &model);
    if (s != IB_OK) {
        set_result(r, status_for(s), "%s", ib_last_error());
        goto done;
    }
    ib_session_options opts;
    ib_session_options_init(&opts);
    opts.num_threads = o->threads;
    if (o->reference) opts.use_reference = 1;
    else if (o->compile_all) opts.use_reference = -1;
    s = ib_session_create(model, &opts, &sess);
    if (s != IB_OK) {
        set_result(r, status_for(s), "%s", ib_last_error());
        goto done;
    }
    n_sets = scandir(c->dir, &sets, is_data_set, compare_names);
    if (n_sets <= 0) {
        set_result(r, CASE_FAIL, "no test_data_set_* directory");
        goto done;
    }
    for (int i = 0; i < n_sets && r->status == CASE_PASS; i++) {
        char *set_dir = join_path(c->dir, sets[i]->d_name);
        if (!set_dir) {
            set_result(r, CASE_FAIL, "out of memory");
            break;
        }
        run_data_set(sess, model, set_dir, sets[i]->d_name, r);
        /* Several data sets: say which one failed. */
        if (r->status != CASE_PASS && n_sets > 1) {
            char tmp[MAX_MESSAGE];
            snprintf(tmp, sizeof tmp, "%s: %s", sets[i]->d_name, r->message);
            memcpy(r->message, tmp, sizeof tmp);
        }
        ib__free(set_dir);
    }
done:
    for (int i = 0; i < n_sets; i++) free(sets[i]);
    free(sets);
    ib_session_destroy(sess);
    ib_model_destroy(model);
    ib__free(model_path);
}

/* Test hook for the runner itself: IB_CONFORMANCE_FAULT=crash:GLOB (or hang:GLOB)
 * makes the children of matching cases crash (or hang), so tests can check that the
 * runner survives and reports them. */
static void inject_fault(const char *name) {
    const char *f = getenv("IB_CONFORMANCE_FAULT");
    if (!f) return;
    if (strncmp(f, "crash:", 6) == 0 && fnmatch(f + 6, name, 0) == 0) {
        signal(SIGSEGV, SIG_DFL); /* past a sanitizer's handler: die by the signal */
        raise(SIGSEGV);
    }
    if (strncmp(f, "hang:", 5) == 0 && fnmatch(f + 5, name, 0) == 0)
        for (;;) pause();
}

/* Child: run the case, write "<status byte><message>" to fd, exit. */
static _Noreturn void child_main(const test_case *c, const conf_options *o, int fd) {
    /* Library chatter on stdout must not interleave with the runner's (or its JSON). */
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, STDOUT_FILENO);
        close(devnull);
    }
    inject_fault(c->name);
    case_result r;
    run_case(c, o, &r);
    char out[MAX_MESSAGE + 1];
    out[0] = r.status == CASE_PASS ? 'P' : r.status == CASE_UNSUPPORTED ? 'U' : 'F';
    size_t n = strnlen(r.message, sizeof r.message - 1);
    memcpy(out + 1, r.message, n);
    size_t len = n + 1, off = 0;
    while (off < len) {
        ssize_t w = write(fd, out + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(3);
        off += (size_t)w;
    }
    close(fd);
    /* exit, not _exit: under LeakSanitizer a leak then shows as a nonzero status. stdout
     * is /dev/null and was flushed before the fork, so nothing is written twice. */
    exit(0);
}

/* ---- The runner (parent) --------------------------------------------------------- */

static void finish(test_case *c, case_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void finish(test_case *c, case_status st, const char *fmt, ...) {
    char msg[MAX_MESSAGE + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    c->status = st;
    c->message = ib__strdup(msg);
}

static bool start_case(test_case *c, const conf_options *o) {
    int fds[2];
    if (pipe(fds) != 0) {
        finish(c, CASE_FAIL, "(cannot create a pipe: %s)", strerror(errno));
        return false;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        finish(c, CASE_FAIL, "(cannot fork: %s)", strerror(errno));
        return false;
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(c, o, fds[1]);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[0], F_SETFL, O_NONBLOCK);
    c->pid = pid;
    c->fd = fds[0];
    c->deadline = ib__now_s() + o->timeout_s;
    c->buf_len = 0;
    c->eof = false;
    return true;
}

/* Reads what the child wrote; true at end of file. */
static void drain(test_case *c) {
    for (;;) {
        char tmp[1024];
        ssize_t n = read(c->fd, tmp, sizeof tmp);
        if (n > 0) {
            size_t room = sizeof c->buf - 1 - c->buf_len;
            size_t take = (size_t)n < room ? (size_t)n : room;
            memcpy(c->buf + c->buf_len, tmp, take);
            c->buf_len += take;
            continue;
        }
        if (n == 0) c->eof = true;
        else if (errno == EINTR) continue;
        else if (errno != EAGAIN && errno != EWOULDBLOCK) c->eof = true;
        return;
    }
}

/* Called once the child has exited (status from waitpid). */
static void conclude(test_case *c, int wstatus) {
    drain(c);
    close(c->fd);
    c->fd = -1;
    c->pid = 0;
    c->buf[c->buf_len] = '\0';
    bool reported = c->buf_len >= 1;
    const char *msg = reported ? c->buf + 1 : "";
    case_status st = !reported ? CASE_FAIL
                     : c->buf[0] == 'P' ? CASE_PASS
                     : c->buf[0] == 'U' ? CASE_UNSUPPORTED
                                        : CASE_FAIL;
    if (WIFSIGNALED(wstatus)) {
        int sig = WTERMSIG(wstatus);
        if (reported)
            finish(c, CASE_FAIL, "%s%s(crashed: signal %d while cleaning up)", msg, *msg ? " " : "", sig);
        else
            finish(c, CASE_FAIL, "(crashed: signal %d)", sig);
    } else if (!reported) {
        finish(c, CASE_FAIL, "(exited with status %d)",
               WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1);
    } else if (WEXITSTATUS(wstatus) != 0) {
        /* Reported, then failed on the way out: a leak or sanitizer report. */
        finish(c, CASE_FAIL, "%s%s(exited with status %d after reporting '%s')", msg,
               *msg ? " " : "", WEXITSTATUS(wstatus),
               st == CASE_PASS ? "pass" : st == CASE_UNSUPPORTED ? "unsupported" : "fail");
    } else {
        finish(c, st, "%s", msg);
    }
}

static void print_case_line(const test_case *c) {
    const char *word = c->status == CASE_PASS ? "pass" : c->status == CASE_FAIL ? "fail" : "unsupported";
    if (c->message && c->message[0]) printf("%s %s: %s\n", word, c->name, c->message);
    else printf("%s %s\n", word, c->name);
    fflush(stdout);
}

static void run_all(case_list *l, const conf_options *o) {
    size_t next = 0, printed = 0, running = 0;
    test_case **active = ib__calloc((size_t)o->jobs, sizeof *active);
    struct pollfd *pfds = ib__calloc((size_t)o->jobs, sizeof *pfds);
    if (!active || !pfds) {
        for (size_t i = 0; i < l->n; i++) finish(&l->items[i], CASE_FAIL, "(out of memory)");
        ib__free(active);
        ib__free(pfds);
        return;
    }
    while (next < l->n || running > 0) {
        while (next < l->n && running < (size_t)o->jobs) {
            test_case *c = &l->items[next++];
            if (start_case(c, o)) active[running++] = c;
        }
        int np = 0;
        double soonest = 1e300;
        for (size_t i = 0; i < running; i++) {
            if (active[i]->deadline < soonest) soonest = active[i]->deadline;
            if (!active[i]->eof) {
                pfds[np].fd = active[i]->fd;
                pfds[np].events = POLLIN;
                pfds[np].revents = 0;
                np++;
            }
        }
        if (running > 0) {
            /* Wake at least every 50 ms to reap children that exited after EOF. */
            double wait = (soonest - ib__now_s()) * 1000.0;
            int timeout = wait < 0 ? 0 : wait > 50 ? 50 : (int)wait;
            if (np > 0) poll(pfds, (nfds_t)np, timeout);
            else nanosleep(&(struct timespec){0, (long)timeout * 1000000L}, NULL);
        }
        for (size_t i = 0; i < running;) {
            test_case *c = active[i];
            if (!c->eof) drain(c);
            int wstatus = 0;
            pid_t w = waitpid(c->pid, &wstatus, WNOHANG);
            bool done = false;
            if (w == c->pid) {
                conclude(c, wstatus);
                done = true;
            } else if (ib__now_s() > c->deadline) {
                kill(c->pid, SIGKILL);
                while (waitpid(c->pid, &wstatus, 0) < 0 && errno == EINTR) {
                }
                close(c->fd);
                c->fd = -1;
                c->pid = 0;
                finish(c, CASE_FAIL, "(timed out after %d s)", o->timeout_s);
                done = true;
            }
            if (done) active[i] = active[--running];
            else i++;
        }
        /* Lines come out in name order, as soon as every earlier case is done. */
        while (!o->json && printed < l->n && l->items[printed].status != CASE_PENDING)
            print_case_line(&l->items[printed++]);
    }
    ib__free(active);
    ib__free(pfds);
}

/* ---- Lists of passing cases -------------------------------------------------------- */

static int write_passing(const case_list *l, const char *path) {
    size_t tlen = strlen(path) + 16;
    char *tmp = ib__malloc(tlen);
    if (!tmp) return IB_EXIT_FAILURE;
    snprintf(tmp, tlen, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        int rc = ib__cli_usage_error("cannot write '%s': %s", tmp, strerror(errno));
        ib__free(tmp);
        return rc;
    }
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].status == CASE_PASS) fprintf(f, "%s\n", l->items[i].name);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    /* Rename over the old list so a killed run never leaves half a list. */
    if (!ok || rename(tmp, path) != 0) {
        int rc = ib__cli_usage_error("cannot write '%s': %s", path, strerror(errno));
        unlink(tmp);
        ib__free(tmp);
        return rc;
    }
    ib__free(tmp);
    return IB_EXIT_OK;
}

/* Names listed in `path` that did not pass; *out_names (ib__free each and the array). */
static int find_regressions(const case_list *l, const char *path, char ***out_names, size_t *out_n) {
    FILE *f = fopen(path, "r");
    if (!f) return ib__cli_usage_error("cannot read '%s': %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    char line[4096];
    int rc = IB_EXIT_OK;
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = '\0';
        char *s = line;
        while (*s == ' ' || *s == '\t') s++;
        len = strlen(s);
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t')) s[--len] = '\0';
        if (*s == '\0' || *s == '#') continue;
        bool passed = false;
        for (size_t i = 0; i < l->n && !passed; i++)
            passed = l->items[i].status == CASE_PASS && strcmp(l->items[i].name, s) == 0;
        if (passed) continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nn = ib__realloc(names, ncap * sizeof *nn);
            if (!nn) {
                rc = IB_EXIT_FAILURE;
                break;
            }
            names = nn;
            cap = ncap;
        }
        names[n] = ib__strdup(s);
        if (!names[n]) {
            rc = IB_EXIT_FAILURE;
            break;
        }
        n++;
    }
    fclose(f);
    *out_names = names;
    *out_n = n;
    return rc;
}

/* ---- Entry ------------------------------------------------------------------------ */

static int parse_args(int argc, char **argv, conf_options *o) {
    memset(o, 0, sizeof *o);
    o->jobs = 1;
    o->timeout_s = 60;
    o->threads = 1;
    o->dirs = ib__calloc((size_t)argc + 1, sizeof *o->dirs);
    o->filters = ib__calloc((size_t)argc + 1, sizeof *o->filters);
    if (!o->dirs || !o->filters) return IB_EXIT_FAILURE;
    const char *path = "auto";
    long long jobs = 1, timeout_s = 60, threads = 1;
    ib__cli_list dirs = {o->dirs, 0, (size_t)argc}, filters = {o->filters, 0, (size_t)argc};
    const ib__cli_opt opts[] = {
        {"--json", NULL, IB_CLI_FLAG, &o->json, 0, 0},
        {"--reference", NULL, IB_CLI_FLAG, &o->reference, 0, 0},
        {"--path", NULL, IB_CLI_STRING, &path, 0, 0},
        {"--jobs", "-j", IB_CLI_INT, &jobs, 1, 256},
        {"--timeout", NULL, IB_CLI_INT, &timeout_s, 1, 86400},
        {"--threads", NULL, IB_CLI_INT, &threads, 0, 4096},
        {"--filter", NULL, IB_CLI_LIST, &filters, 0, 0},
        {"--list-passing", NULL, IB_CLI_STRING, &o->list_passing, 0, 0},
        {"--expect-passing", NULL, IB_CLI_STRING, &o->expect_passing, 0, 0},
    };
    int parsed = ib__cli_parse_list("conformance", argc, argv, opts, sizeof opts / sizeof *opts,
                                    &dirs, usage);
    if (parsed >= 0) return parsed;
    o->n_dirs = dirs.n;
    o->n_filters = filters.n;
    o->jobs = (int)jobs;
    o->timeout_s = (int)timeout_s;
    o->threads = (int)threads;
    if (strcmp(path, "compiled") == 0) {
        o->compile_all = true;
        o->reference = false;
    } else if (strcmp(path, "reference") == 0) {
        o->reference = true;
    } else if (strcmp(path, "auto") != 0) {
        return ib__cli_usage_error("--path must be auto, compiled or reference, not '%s'", path);
    }
    if (o->n_dirs == 0) o->dirs[o->n_dirs++] = DEFAULT_DATA_DIR;
    return -1;
}

static void print_json(const case_list *l, size_t passed, size_t failed, size_t unsupported,
                       char **regressions, size_t n_regressions) {
    printf("{\"passed\":%zu,\"failed\":%zu,\"unsupported\":%zu,\"cases\":[", passed, failed,
           unsupported);
    for (size_t i = 0; i < l->n; i++) {
        const test_case *c = &l->items[i];
        printf("%s{\"name\":", i ? "," : "");
        ib__json_string(stdout, c->name);
        printf(",\"status\":\"%s\",\"message\":",
               c->status == CASE_PASS ? "pass" : c->status == CASE_FAIL ? "fail" : "unsupported");
        ib__json_string(stdout, c->message ? c->message : "");
        putchar('}');
    }
    printf("],\"regressions\":[");
    for (size_t i = 0; i < n_regressions; i++) {
        if (i) putchar(',');
        ib__json_string(stdout, regressions[i]);
    }
    printf("]}\n");
}

int ib__cmd_conformance(int argc, char **argv) {
    conf_options o;
    case_list l;
    memset(&l, 0, sizeof l);
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) goto out;
    rc = IB_EXIT_OK;
    for (int i = 0; i < o.n_dirs; i++) {
        if (!is_dir(o.dirs[i])) {
            rc = ib__cli_usage_error("conformance: '%s' is not a directory", o.dirs[i]);
            goto out;
        }
        if (!collect(&l, o.dirs[i], 0, &o)) {
            fprintf(stderr, "inferbooster: out of memory collecting cases\n");
            rc = IB_EXIT_FAILURE;
            goto out;
        }
    }
    if (l.n == 0) {
        rc = ib__cli_usage_error("conformance: no test cases (directories with model.onnx) found");
        goto out;
    }
    qsort(l.items, l.n, sizeof *l.items, compare_cases);
    /* A child killed mid-write must not kill the runner. */
    signal(SIGPIPE, SIG_IGN);
    run_all(&l, &o);

    size_t passed = 0, failed = 0, unsupported = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (l.items[i].status == CASE_PASS) passed++;
        else if (l.items[i].status == CASE_UNSUPPORTED) unsupported++;
        else failed++;
    }
    if (o.list_passing) {
        rc = write_passing(&l, o.list_passing);
        if (rc != IB_EXIT_OK) goto out;
    }
    char **regressions = NULL;
    size_t n_regressions = 0;
    if (o.expect_passing) {
        rc = find_regressions(&l, o.expect_passing, &regressions, &n_regressions);
        if (rc == IB_EXIT_OK && n_regressions > 0) rc = IB_EXIT_FAILURE;
    }
    if (o.json) {
        print_json(&l, passed, failed, unsupported, regressions, n_regressions);
        for (size_t i = 0; i < n_regressions; i++)
            fprintf(stderr, "regression: %s\n", regressions[i]);
    } else {
        for (size_t i = 0; i < n_regressions; i++) printf("regression: %s\n", regressions[i]);
        printf("unsupported: %zu\n", unsupported);
        printf("%zu passed, %zu failed\n", passed, failed);
    }
    for (size_t i = 0; i < n_regressions; i++) ib__free(regressions[i]);
    ib__free(regressions);
    if (fflush(stdout) != 0 && rc == IB_EXIT_OK) rc = IB_EXIT_FAILURE;
out:
    for (size_t i = 0; i < l.n; i++) {
        ib__free(l.items[i].name);
        ib__free(l.items[i].dir);
        ib__free(l.items[i].message);
    }
    ib__free(l.items);
    ib__free(o.dirs);
    ib__free(o.filters);
    return rc;
}
