/* Declarations shared by the inferbooster command's files: the subcommands, exit codes,
 * error reporting, option matching and JSON output helpers (cli_util.c). */
#ifndef IB_CLI_H
#define IB_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "inferbooster/inferbooster.h"

/* Exit codes: 0 success; 2 for anything the user gave (usage, model, .npy, inputs);
 * 1 for internal or runtime failures. */
enum { IB_EXIT_OK = 0, IB_EXIT_FAILURE = 1, IB_EXIT_USAGE = 2 };

/* Subcommands: argv[0] is the subcommand's name. Each returns an exit code. */
int ib__cmd_info(int argc, char **argv);
int ib__cmd_run(int argc, char **argv);
int ib__cmd_conformance(int argc, char **argv);
int ib__cmd_hw(int argc, char **argv);
int ib__cmd_compile(int argc, char **argv);
int ib__cmd_bench(int argc, char **argv);

/* True when `path` is a directory holding model.so or, for a CUDA target, cuda_plan.txt
 * (an artifact from `compile`). */
bool ib__cli_is_artifact(const char *path);
/* `run` on a CUDA artifact (cmd_run_cuda.c); ib__cmd_run hands it over. */
int ib__cmd_run_cuda(int argc, char **argv);
int ib__cmd_serve(int argc, char **argv);
int ib__cmd_cache(int argc, char **argv);
int ib__cmd_tune(int argc, char **argv);

/* The exit code for a failed library call: IB_EXIT_USAGE when the status blames the
 * caller's input (bad model, file, shape, unsupported op), else IB_EXIT_FAILURE. */
int ib__cli_exit_code(ib_status status);
/* Prints "inferbooster: <what>: <ib_last_error()>" on stderr and returns the exit
 * code for `status`. */
int ib__cli_fail(ib_status status, const char *what_fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "inferbooster: <message>" on stderr and returns IB_EXIT_USAGE. */
int ib__cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

bool ib__cli_is_help(const char *arg);
/* Matches argv[*i] against "--name VALUE" or "--name=VALUE". Returns 1 on a match
 * (*value set, *i advanced past a separate value), 0 when argv[*i] is another
 * argument, -1 when the option lacks its value (message printed). */
int ib__cli_option(int argc, char **argv, int *i, const char *name, const char **value);
/* Parses a decimal integer in [lo, hi]; false (message printed naming `what`) if not. */
bool ib__cli_parse_int(const char *s, long long lo, long long hi, const char *what,
                       long long *out);

/* A subcommand's options as a table for ib__cli_parse. */
typedef enum ib__cli_opt_kind {
    IB_CLI_FLAG,   /* no value: sets *(bool *)dest */
    IB_CLI_UNSET,  /* no value: clears *(bool *)dest (--no-...) */
    IB_CLI_STRING, /* "--name VALUE" or "--name=VALUE": *(const char **)dest */
    IB_CLI_INT,    /* a decimal integer in [lo, hi]: *(long long *)dest */
    IB_CLI_LIST,   /* a string, repeatable: appended to *(ib__cli_list *)dest */
} ib__cli_opt_kind;

/* Strings in argv order (they point into argv), at most cap of them. */
typedef struct ib__cli_list {
    const char **items;
    size_t n, cap;
} ib__cli_list;

typedef struct ib__cli_opt {
    const char *name;  /* "--threads" */
    const char *alias; /* another spelling ("-o"), or NULL */
    ib__cli_opt_kind kind;
    void *dest;
    long long lo, hi; /* IB_CLI_INT's range */
} ib__cli_opt;

/* Parses argv[1..] for subcommand `cmd`: options from opts in any order, and at most one
 * other argument, into *positional (its first spelling kept; a second is an error).
 * Returns -1 when every argument parsed; else the exit code to return: IB_EXIT_OK after
 * --help (usage printed on stdout), IB_EXIT_USAGE after a message on stderr (usage too
 * for an unknown option). */
int ib__cli_parse(const char *cmd, int argc, char **argv, const ib__cli_opt *opts, size_t n_opts,
                  const char **positional, void (*usage)(FILE *));
/* The same with the other arguments into a list (an error past its cap). A short option
 * ("-j") also takes its value attached ("-j4"). */
int ib__cli_parse_list(const char *cmd, int argc, char **argv, const ib__cli_opt *opts,
                       size_t n_opts, ib__cli_list *positionals, void (*usage)(FILE *));
/* "<cmd>: no model given" and the usage on stderr; returns IB_EXIT_USAGE. */
int ib__cli_no_model(const char *cmd, void (*usage)(FILE *));

/* JSON output without a library: a string with escapes, and a double that is always
 * valid JSON (null for NaN and infinities). */
void ib__json_string(FILE *f, const char *s);
void ib__json_number(FILE *f, double v);

/* "[batch, 3, 224, 224]" into buf; symbolic dims by name, unnamed unknown ones as '?'. */
const char *ib__cli_shape_string(const ib_value_info *info, char *buf, size_t cap);
/* "[2, 3]" for a concrete tensor shape. */
const char *ib__cli_dims_string(const int64_t *dims, int32_t rank, char *buf, size_t cap);
/* 1234567 -> "1.23 M" style with the given unit suffix. */
const char *ib__cli_human(double v, const char *unit, char *buf, size_t cap);
/* 64-bit FNV-1a of a byte range. */
uint64_t ib__fnv1a64(const void *data, size_t n);

/* A session's inputs and output slots for timing runs: every input at its declared shape
 * (symbolic dims: `batch` for dim 0, else 1), floats uniform in [-1, 1) from a fixed
 * seed, integers 0 (bench, tune's in-model check). */
typedef struct ib__cli_io {
    size_t n_in, n_out;
    ib_tensor *in, *out;
    const char **in_names, **out_names;
} ib__cli_io;
ib_status ib__cli_random_inputs(const ib_session *s, int64_t batch, ib__cli_io *io);
void ib__cli_io_free(ib__cli_io *io);

#endif /* IB_CLI_H */
