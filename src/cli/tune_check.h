/* tune's in-model check (tune_check.c): tuned and default knobs timed inside the model,
 * recorded as in-model records that compiles prefer. */
#ifndef IB_CLI_TUNE_CHECK_H
#define IB_CLI_TUNE_CHECK_H

#include <stdio.h>

#include "inferbooster/inferbooster.h"
#include "tune/tune.h"

/* Compiles `model` (batch `batch`) with each task's best kernel-alone record of `db` and
 * with the defaults, runs both `rounds` times alternately on `threads` threads timing
 * each step, and appends to `db` an in-model record of both knob sets for every task
 * whose best differs from its defaults; prints a table on `log` (NULL: quiet). */
ib_status ib__tune_model_check(const ib_model *model, const ib__tune_taskset *ts,
                               ib__tune_db *db, const char *tkey, int64_t batch,
                               int32_t threads, int32_t rounds, FILE *log);

#endif /* IB_CLI_TUNE_CHECK_H */
