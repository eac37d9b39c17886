/* libFuzzer target: arbitrary bytes as the measurement job a tuner sends to
 * inferbooster-agent on its standard input (tune/measure_job.h): the header lines, the
 * shared object's bytes (written to a scratch file, never loaded here) and the weights.
 * A job that parses is checked for the limits the parser promises. The same bytes, line
 * by line, are also what an agent could answer: each goes through the result parser the
 * tuner reads it with. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_targets.h"
#include "tune/measure_job.h"

ib_status ib__fuzz_measure_job(const uint8_t *data, size_t size) {
    static char so[64];
    if (!so[0]) snprintf(so, sizeof so, "/tmp/ib_fuzz_measure_job.%ld.so", (long)getpid());
    /* fmemopen refuses a size of 0: an empty input is an empty file */
    FILE *in = size ? fmemopen((void *)data, size, "rb") : fopen("/dev/null", "rb");
    if (!in) return IB_ERR_OUT_OF_MEMORY;
    ib__measure_job job;
    void *storage = NULL;
    ib_status st = ib__measure_job_receive(in, so, &job, &storage);
    fclose(in);
    if (st == IB_OK) {
        if (job.n_args < 1 || job.n_args > IB_MEASURE_MAX_ARGS || job.out_arg < 0 ||
            job.out_arg >= job.n_args || job.n_cands < 0 || job.n_cands > IB_MEASURE_MAX_CANDS)
            abort();
        for (int32_t a = 0; a < job.n_args; a++)
            if (job.args[a].kind == IB_MEASURE_ARG_WEIGHT && job.args[a].nbytes &&
                !job.args[a].data)
                abort();
        for (int32_t c = 0; c < job.n_cands; c++)
            if (job.cands[c] < 0) abort();
    }
    ib__aligned_free(storage);
    unlink(so);
    /* result lines, cut as the tuner cuts them (a bounded buffer, lines NUL-terminated) */
    char line[512];
    size_t at = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n') {
            if (at < sizeof line - 1) line[at++] = (char)data[i];
            continue;
        }
        line[at] = '\0';
        at = 0;
        ib__measure_result m;
        if (!ib__measure_result_parse(line, &m)) continue;
        if ((m.kind != 0 && m.kind != 1) || memchr(m.note, '\0', sizeof m.note) == NULL) abort();
        if (m.ok && !(isfinite(m.ms) && m.ms >= 0)) abort();
        if (m.idx < 0 && m.idx != IB_MEASURE_REF) abort();
    }
    return st;
}

#ifndef IB_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ib__fuzz_measure_job(data, size);
    return 0;
}
#endif
