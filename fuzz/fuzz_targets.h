/* Entry points of the fuzz targets, shared by libFuzzer and the replay test. */
#ifndef IB_FUZZ_TARGETS_H
#define IB_FUZZ_TARGETS_H

#include <stddef.h>
#include <stdint.h>

#include "inferbooster/inferbooster.h"

/* Loads `data` as an ONNX model (no external data), walks what was built, destroys it. */
ib_status ib__fuzz_model_loader(const uint8_t *data, size_t size);
/* Loads `data` through the public API (shape inference, constant folding) and runs it
 * once on the reference executor with zero inputs. */
ib_status ib__fuzz_model_run(const uint8_t *data, size_t size);
/* Decodes `data` as an infer request (a flags digit, an optional binary-extension header
 * line, the body) against a small built-in model; when it decodes, runs it on the
 * reference executor and encodes the response. *http_code: 0 or the refusal's status. */
ib_status ib__fuzz_infer_request(const uint8_t *data, size_t size, int *http_code);
/* Parses `data` as a measurement job (the agent's standard input). */
ib_status ib__fuzz_measure_job(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif /* IB_FUZZ_TARGETS_H */
