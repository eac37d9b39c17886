/* `inferbooster serve`: loads a Triton-layout model repository and serves it over the
 * Open Inference Protocol (HTTP) until SIGINT/SIGTERM, then drains and exits 0. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/core.h"
#include "server/http_server.h"
#include "server/repository.h"

#define MAX_LOAD_MODELS 256

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: inferbooster serve --model-repository DIR [--host 127.0.0.1] [--http-port 8000]\n"
            "                          [--model-control-mode none|explicit|poll] [--load-model NAME]...\n"
            "                          [--repository-poll-secs N]\n"
            "                          [--threads N] [--http-threads N] [--max-request-bytes N]\n"
            "                          [--reference | --compile-all] [--compile-before-ready]\n"
            "\n"
            "Serves the ONNX models of a Triton-layout repository (DIR/<model>/<version>/model.onnx,\n"
            "optional DIR/<model>/config.pbtxt) over the Open Inference Protocol (KServe V2) REST API,\n"
            "with dynamic batching, the binary tensor extension, the repository extension and\n"
            "Prometheus metrics at /metrics.\n"
            "\n"
            "  --model-control-mode none      load every model at start; no load/unload (default)\n"
            "  --model-control-mode explicit  load only --load-model models; load/unload over HTTP\n"
            "  --model-control-mode poll      load every model, then reload those whose files change\n"
            "                                 and unload removed ones every --repository-poll-secs (15)\n"
            "  --http-port 0                  any free port (printed on stderr)\n"
            "  --threads N                    threads per model session (0: all usable CPUs)\n"
            "  --http-threads N               HTTP worker threads (default 4)\n"
            "  --max-request-bytes N          largest request body accepted (default 64 MiB)\n"
            "  --reference                    run models on the reference executor only\n"
            "  --compile-all                  compile even models too small to repay the compiler\n"
            "  --compile-before-ready         compile (and warm every batch size) before a model is\n"
            "                                 ready; by default it is ready at once on the reference\n"
            "                                 executor and the compiled session is swapped in later\n");
}

int ib__cmd_serve(int argc, char **argv) {
    const char *repo_dir = NULL, *host = "127.0.0.1", *mode = "none";
    const char *load_names[MAX_LOAD_MODELS];
    ib__cli_list load = {load_names, 0, MAX_LOAD_MODELS};
    long long port = 8000, threads = 0, http_threads = 4, max_body = 64ll << 20, poll_secs = 15;
    bool reference = false, compile_all = false, blocking = false;
    const ib__cli_opt options[] = {
        {"--model-repository", NULL, IB_CLI_STRING, &repo_dir, 0, 0},
        {"--host", NULL, IB_CLI_STRING, &host, 0, 0},
        {"--http-port", NULL, IB_CLI_INT, &port, 0, 65535},
        {"--model-control-mode", NULL, IB_CLI_STRING, &mode, 0, 0},
        {"--load-model", NULL, IB_CLI_LIST, &load, 0, 0},
        {"--repository-poll-secs", NULL, IB_CLI_INT, &poll_secs, 1, 86400},
        {"--threads", NULL, IB_CLI_INT, &threads, 0, 1024},
        {"--http-threads", NULL, IB_CLI_INT, &http_threads, 1, 256},
        {"--max-request-bytes", NULL, IB_CLI_INT, &max_body, 1024, 1ll << 34},
        {"--reference", NULL, IB_CLI_FLAG, &reference, 0, 0},
        {"--compile-all", NULL, IB_CLI_FLAG, &compile_all, 0, 0},
        {"--compile-before-ready", NULL, IB_CLI_FLAG, &blocking, 0, 0},
    };
    int parsed = ib__cli_parse_list("serve", argc, argv, options, sizeof options / sizeof *options,
                                    NULL, usage);
    if (parsed >= 0) return parsed;
    if (!repo_dir) {
        usage(stderr);
        return ib__cli_usage_error("serve: --model-repository DIR is required");
    }
    ib__control_mode control;
    if (strcmp(mode, "none") == 0) control = IB__CONTROL_NONE;
    else if (strcmp(mode, "explicit") == 0) control = IB__CONTROL_EXPLICIT;
    else if (strcmp(mode, "poll") == 0) control = IB__CONTROL_POLL;
    else return ib__cli_usage_error("serve: --model-control-mode must be none, explicit or poll, not '%s'", mode);
    if (control != IB__CONTROL_EXPLICIT && load.n)
        return ib__cli_usage_error("serve: --load-model needs --model-control-mode explicit");

    if (reference && compile_all) {
        fprintf(stderr, "inferbooster serve: --reference and --compile-all exclude each other\n");
        return IB_EXIT_USAGE;
    }
    ib__repo_options ro = {(int)threads, reference, compile_all, blocking};
    ib__repository *repo = NULL;
    ib_status st = ib__repo_create(repo_dir, &ro, &repo);
    if (st != IB_OK) return ib__cli_fail(st, "serve");
    int failed = 0;
    if (control != IB__CONTROL_EXPLICIT) {
        failed = ib__repo_load_all(repo);
    } else {
        for (size_t k = 0; k < load.n; k++)
            if (ib__repo_load(repo, load.items[k]) != IB_OK) {
                fprintf(stderr, "inferbooster serve: failed to load '%s': %s\n", load.items[k],
                        ib_last_error());
                failed++;
            }
    }
    if (failed) {
        /* As Triton does by default: a model that fails to load stops the server. */
        ib__repo_destroy(repo);
        fprintf(stderr, "inferbooster serve: %d model(s) failed to load\n", failed);
        return IB_EXIT_USAGE;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    ib__server_options so = {host, (int)port, control, (size_t)max_body, (int)http_threads};
    ib__server *srv = NULL;
    st = ib__server_start(repo, &so, &srv);
    if (st != IB_OK) {
        ib__repo_destroy(repo);
        return ib__cli_fail(st, "serve");
    }
    fprintf(stderr, "inferbooster serve: listening on http://%s:%d (model control mode %s)\n", host,
            ib__server_port(srv), mode);
    fflush(stderr);
    long long ticks = 0;
    while (!g_stop) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
        /* Polling runs here, between signal checks; a load in progress delays shutdown
         * only by that load. */
        if (control == IB__CONTROL_POLL && ++ticks % (poll_secs * 20) == 0) ib__repo_poll(repo);
    }
    fprintf(stderr, "inferbooster serve: stopping\n");
    ib__server_stop(srv, 5000);
    ib__repo_destroy(repo);
    fprintf(stderr, "inferbooster serve: stopped\n");
    return IB_EXIT_OK;
}
