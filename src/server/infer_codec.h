/* Open Inference Protocol request/response codec: JSON tensors (flat or nested) and the
 * binary tensor data extension to and from ib_tensor, checked against the model. No
 * HTTP here, so a fuzz target can drive it directly. */
#ifndef IB_SERVER_INFER_CODEC_H
#define IB_SERVER_INFER_CODEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "sched/scheduler.h"
#include "server/repository.h"

#define IB__JSON_MAX_DEPTH 32

typedef struct ib__infer_job {
    ib__served_model *model; /* borrowed */
    json_t *id;              /* references held; NULL when absent */
    json_t *parameters;
    bool binary_output_default;
    size_t n_inputs;
    char **input_names;
    ib_tensor *inputs; /* data owned (ib__aligned_alloc) */
    size_t n_outputs;
    char **output_names;
    ib_tensor *outputs;
    bool *output_binary;
    ib__infer_request req;
} ib__infer_job;

/* Deepest bracket nesting in a JSON text (strings skipped), to refuse deep documents
 * before a recursive parser sees them. */
size_t ib__json_depth(const char *s, size_t n);

/* Reads the binary extension's Inference-Header-Content-Length value (decimal, at most
 * the body's length). Returns 0 and sets *json_len, or 400 with a message in err. */
int ib__infer_header_length(const char *value, size_t body_len, size_t *json_len, char *err, size_t err_cap);
/* Parses an inference request: the JSON part is body[0..json_len) and any binary tensor
 * data follows it. Fills job (and job->req, without done/user). Returns 0 on success, else
 * the HTTP status to answer with (400 bad request) and a message in err. */
int ib__infer_parse(ib__served_model *m, const char *body, size_t len, size_t json_len, ib__infer_job *job,
                    char *err, size_t err_cap);
/* Builds the response after a successful run: *out (ib__malloc) holds the JSON and then
 * any binary output data; *json_len is the JSON's length. Returns 0 or an HTTP status. */
int ib__infer_respond(const ib__infer_job *job, char **out, size_t *out_len, size_t *json_len, char *err,
                      size_t err_cap);
/* Frees what the job owns; the job can be reused after. */
void ib__infer_job_clear(ib__infer_job *job);

#endif /* IB_SERVER_INFER_CODEC_H */
