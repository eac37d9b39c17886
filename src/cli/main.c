/* The inferbooster command: dispatches to its subcommands (one file each). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
} k_commands[] = {
    {"info", ib__cmd_info, "describe a model: inputs, outputs, opsets, ops, parameters, FLOPs"},
    {"run", ib__cmd_run, "run a model on .npy or random inputs and print output checksums"},
    {"conformance", ib__cmd_conformance, "run the ONNX backend test cases and compare outputs"},
    {"compile", ib__cmd_compile, "compile a model into an artifact (native code, weights, metadata)"},
    {"bench", ib__cmd_bench, "measure latency, throughput and peak memory of a model or artifact"},
    {"hw", ib__cmd_hw, "show the host's CPU and GPU as InferBooster sees them"},
    {"serve", ib__cmd_serve, "serve a model repository over the Open Inference Protocol (HTTP)"},
    {"tune", ib__cmd_tune, "tune a model's kernels by measurement into the tuning database"},
    {"cache", ib__cmd_cache, "list, inspect, evict, clear and verify the compiled-model cache"},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster <command> [options]\n"
            "       inferbooster --version | --help\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        fprintf(f, "  %-12s %s\n", k_commands[i].name, k_commands[i].summary);
    fprintf(f,
            "\n"
            "Run 'inferbooster <command> --help' for a command's options.\n"
            "Exit status: 0 success, 2 bad usage or input (model, .npy, inputs), 1 failure.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return IB_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (ib__cli_is_help(cmd) || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return IB_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("inferbooster %s\n", IB_VERSION_STRING);
        return IB_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (strcmp(cmd, k_commands[i].name) == 0) return k_commands[i].fn(argc - 1, argv + 1);
    if (cmd[0] == '-')
        fprintf(stderr, "inferbooster: unknown option '%s'\n", cmd);
    else
        fprintf(stderr, "inferbooster: unknown command '%s'\n", cmd);
    fprintf(stderr, "Run 'inferbooster --help' for the list of commands.\n");
    return IB_EXIT_USAGE;
}
