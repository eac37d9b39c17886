/* inferbooster-agent: the measurement agent a tuner on another machine talks to (the
 * RPC idea of AutoTVM, over a pipe: run it under qemu, or through ssh on a board). It
 * reads one batch of candidates from standard input (tune/measure_job.h), runs them and
 * writes the result lines to standard output, then exits; a candidate that crashes or
 * hangs ends the process, and the tuner starts a new agent after it. Needs libc, libdl
 * and the runtime's thread pool only: `make cross` builds it for aarch64. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tune/measure_job.h"

/* The scratch directory of an agent that died with its candidate (by design: a crash
 * is how a broken candidate reports). */
static void remove_scratch(const char *dir) {
    char path[4300];
    snprintf(path, sizeof path, "%s/candidates.so", dir);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv) {
    if (argc > 1) {
        FILE *f = strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ? stdout : stderr;
        fprintf(f, "usage: inferbooster-agent < JOB\n"
                   "Runs one batch of tuning candidates sent by 'inferbooster tune --agent CMD'\n"
                   "on standard input and writes the results to standard output.\n");
        return f == stdout ? 0 : 2;
    }
    const char *tmp = ib__tmp_dir();
    ib__sweep_dead_scratch(tmp, "ib_agent", remove_scratch);
    char dir[4096], so[4200];
    snprintf(dir, sizeof dir, "%s/ib_agent-%ld-XXXXXX", tmp, (long)getpid());
    if (!mkdtemp(dir)) {
        printf("ref fail the agent cannot create a scratch directory under %s: %s\n", tmp,
               strerror(errno));
        return 1;
    }
    snprintf(so, sizeof so, "%s/candidates.so", dir);
    ib__measure_job job;
    void *storage = NULL;
    ib_status st = ib__measure_job_receive(stdin, so, &job, &storage);
    int rc = 0;
    if (st) {
        printf("ref fail %s\n", ib_last_error());
        rc = 2;
    } else {
        ib__measure_job_run(&job, so, stdout);
    }
    fflush(stdout);
    remove_scratch(dir);
    ib__aligned_free(storage);
    return rc;
}
