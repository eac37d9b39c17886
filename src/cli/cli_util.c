/* Helpers shared by the subcommands: exit codes from statuses, error messages, option
 * matching, number parsing, shape and JSON formatting, random inputs for timing runs. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/core.h"

int ib__cli_exit_code(ib_status status) {
    switch (status) {
    case IB_OK: return IB_EXIT_OK;
    case IB_ERR_INVALID_ARGUMENT:
    case IB_ERR_INVALID_MODEL:
    case IB_ERR_UNSUPPORTED:
    case IB_ERR_IO:
    case IB_ERR_SHAPE:
        return IB_EXIT_USAGE;
    default:
        return IB_EXIT_FAILURE;
    }
}

int ib__cli_fail(ib_status status, const char *what_fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, what_fmt);
    vsnprintf(what, sizeof what, what_fmt, ap);
    va_end(ap);
    fflush(stdout); /* keep what was printed before the error in order */
    const char *err = ib_last_error();
    if (err && *err)
        fprintf(stderr, "inferbooster: %s: %s\n", what, err);
    else
        fprintf(stderr, "inferbooster: %s: %s\n", what, ib_status_name(status));
    return ib__cli_exit_code(status);
}

int ib__cli_usage_error(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fputs("inferbooster: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return IB_EXIT_USAGE;
}

bool ib__cli_is_help(const char *arg) {
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

int ib__cli_option(int argc, char **argv, int *i, const char *name, const char **value) {
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0) return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0') return 0;
    if (*i + 1 >= argc) {
        ib__cli_usage_error("option %s needs a value", name);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

bool ib__cli_parse_int(const char *s, long long lo, long long hi, const char *what,
                       long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        ib__cli_usage_error("%s must be an integer in [%lld, %lld], not '%s'", what, lo, hi, s);
        return false;
    }
    *out = v;
    return true;
}

/* Matches argv[*i] against opt's name or alias ("--name VALUE", "--name=VALUE", "-x4" for
 * a short alias); the return as ib__cli_option's. */
static int match_value(int argc, char **argv, int *i, const ib__cli_opt *opt, const char **v) {
    int m = ib__cli_option(argc, argv, i, opt->name, v);
    if (m == 0 && opt->alias) m = ib__cli_option(argc, argv, i, opt->alias, v);
    const char *a = argv[*i], *s = strlen(opt->name) == 2 ? opt->name : opt->alias;
    if (m == 0 && s && strlen(s) == 2 && s[0] == '-' && s[1] != '-' && strncmp(a, s, 2) == 0 && a[2]) {
        *v = a + 2;
        m = 1;
    }
    return m;
}

/* 1: argv[*i] is opt (parsed, *i past its value); 0: another argument; -1: a bad value
 * (message printed). */
static int parse_one(int argc, char **argv, int *i, const ib__cli_opt *opt) {
    const char *v = NULL;
    if (opt->kind == IB_CLI_FLAG || opt->kind == IB_CLI_UNSET) {
        if (strcmp(argv[*i], opt->name) != 0 && !(opt->alias && strcmp(argv[*i], opt->alias) == 0))
            return 0;
        *(bool *)opt->dest = opt->kind == IB_CLI_FLAG;
        return 1;
    }
    int m = match_value(argc, argv, i, opt, &v);
    if (m <= 0) return m;
    if (opt->kind == IB_CLI_STRING) {
        *(const char **)opt->dest = v;
        return 1;
    }
    if (opt->kind == IB_CLI_LIST) {
        ib__cli_list *l = opt->dest;
        if (l->n == l->cap) {
            ib__cli_usage_error("%s given more than %zu times", opt->name, l->cap);
            return -1;
        }
        l->items[l->n++] = v;
        return 1;
    }
    return ib__cli_parse_int(v, opt->lo, opt->hi, opt->name, (long long *)opt->dest) ? 1 : -1;
}

int ib__cli_parse_list(const char *cmd, int argc, char **argv, const ib__cli_opt *opts,
                       size_t n_opts, ib__cli_list *positionals, void (*usage)(FILE *)) {
    for (int i = 1; i < argc; i++) {
        if (ib__cli_is_help(argv[i])) {
            usage(stdout);
            return IB_EXIT_OK;
        }
        int m = 0;
        for (size_t o = 0; o < n_opts && m == 0; o++) m = parse_one(argc, argv, &i, &opts[o]);
        if (m < 0) return IB_EXIT_USAGE;
        if (m > 0) continue;
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            ib__cli_usage_error("%s: unknown option '%s'", cmd, argv[i]);
            usage(stderr);
            return IB_EXIT_USAGE;
        }
        if (!positionals || positionals->cap == 0)
            return ib__cli_usage_error("%s: unexpected argument '%s'", cmd, argv[i]);
        if (positionals->n == positionals->cap) {
            if (positionals->cap == 1)
                return ib__cli_usage_error("%s: one model at a time ('%s' and '%s')", cmd,
                                           positionals->items[0], argv[i]);
            return ib__cli_usage_error("%s: unexpected argument '%s'", cmd, argv[i]);
        }
        positionals->items[positionals->n++] = argv[i];
    }
    return -1;
}

int ib__cli_parse(const char *cmd, int argc, char **argv, const ib__cli_opt *opts, size_t n_opts,
                  const char **positional, void (*usage)(FILE *)) {
    const char *one[1] = {NULL};
    ib__cli_list l = {one, 0, positional ? 1 : 0};
    int rc = ib__cli_parse_list(cmd, argc, argv, opts, n_opts, &l, usage);
    if (positional && l.n) *positional = one[0];
    return rc;
}

int ib__cli_no_model(const char *cmd, void (*usage)(FILE *)) {
    ib__cli_usage_error("%s: no model given", cmd);
    usage(stderr);
    return IB_EXIT_USAGE;
}

void ib__json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            /* Control bytes are escaped; bytes >= 0x80 pass through (names from a model
             * are UTF-8; invalid sequences are the model's, and parsers replace them). */
            if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

void ib__json_number(FILE *f, double v) {
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    if (v == floor(v) && fabs(v) < 9e15) fprintf(f, "%.0f", v);
    else fprintf(f, "%.17g", v);
}

const char *ib__cli_shape_string(const ib_value_info *info, char *buf, size_t cap) {
    if (info->rank < 0) {
        snprintf(buf, cap, "(unknown rank)");
        return buf;
    }
    size_t n = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int32_t i = 0; i < info->rank && i < IB_MAX_RANK && n < cap; i++) {
        const char *sep = i ? ", " : "";
        if (info->shape[i] >= 0)
            n += (size_t)snprintf(buf + n, cap - n, "%s%lld", sep, (long long)info->shape[i]);
        else if (info->dim_names[i] && info->dim_names[i][0])
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", sep, info->dim_names[i]);
        else
            n += (size_t)snprintf(buf + n, cap - n, "%s?", sep);
    }
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

const char *ib__cli_dims_string(const int64_t *dims, int32_t rank, char *buf, size_t cap) {
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int32_t i = 0; i < rank && i < IB_MAX_RANK && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

const char *ib__cli_human(double v, const char *unit, char *buf, size_t cap) {
    static const char *const prefixes[] = {"", "K", "M", "G", "T", "P", "E"};
    int p = 0;
    double x = v;
    while (fabs(x) >= 1000.0 && p < 6) {
        x /= 1000.0;
        p++;
    }
    if (p == 0) snprintf(buf, cap, "%.0f %s", x, unit);
    else snprintf(buf, cap, "%.3g %s%s", x, prefixes[p], unit);
    return buf;
}

uint64_t ib__fnv1a64(const void *data, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void ib__cli_io_free(ib__cli_io *b) {
    for (size_t i = 0; b->in && i < b->n_in; i++) ib_tensor_release(&b->in[i]);
    for (size_t i = 0; b->out && i < b->n_out; i++) ib_tensor_release(&b->out[i]);
    ib__free(b->in);
    ib__free(b->out);
    ib__free(b->in_names);
    ib__free(b->out_names);
}

ib_status ib__cli_random_inputs(const ib_session *s, int64_t batch, ib__cli_io *b) {
    b->n_in = ib_session_input_count(s);
    b->n_out = ib_session_output_count(s);
    b->in = ib__calloc(b->n_in + 1, sizeof *b->in);
    b->out = ib__calloc(b->n_out + 1, sizeof *b->out);
    b->in_names = ib__calloc(b->n_in + 1, sizeof *b->in_names);
    b->out_names = ib__calloc(b->n_out + 1, sizeof *b->out_names);
    if (!b->in || !b->out || !b->in_names || !b->out_names)
        return ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory");
    uint64_t state = 0x243f6a8885a308d3ull;
    for (size_t i = 0; i < b->n_in; i++) {
        ib_value_info info;
        IB_TRY(ib_session_input_info(s, i, &info));
        b->in_names[i] = info.name;
        if (info.rank < 0)
            return ib__error(IB_ERR_UNSUPPORTED, "input '%s' has unknown rank", info.name);
        int64_t dims[IB_MAX_RANK];
        for (int32_t d = 0; d < info.rank; d++)
            dims[d] = info.shape[d] >= 0 ? info.shape[d] : (d == 0 ? batch : 1);
        IB_TRY(ib__tensor_alloc(&b->in[i], info.dtype, info.rank, dims));
        if (!ib__dtype_is_float(info.dtype)) continue;
        int64_t n = ib_tensor_element_count(&b->in[i]);
        for (int64_t k = 0; k < n; k++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            double u = (double)(state >> 11) * (1.0 / 9007199254740992.0);
            ib__store_f64(b->in[i].data, info.dtype, k, 2.0 * u - 1.0);
        }
    }
    for (size_t i = 0; i < b->n_out; i++) {
        ib_value_info info;
        IB_TRY(ib_session_output_info(s, i, &info));
        b->out_names[i] = info.name;
    }
    return IB_OK;
}
