/* libFuzzer target: arbitrary bytes as an Open Inference Protocol infer request (the
 * JSON header, the binary tensor extension's header length and binary data) through the
 * server's codec, then, when it decodes, one reference run and the response encoding.
 * Input layout: byte 0 holds flags (the digits '0'..'3' keep seeds readable; bit 0: the
 * model batches with max_batch_size 8, bit 1: an Inference-Header-Content-Length value
 * follows, up to the first newline); the rest is the HTTP body. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "fuzz_targets.h"
#include "infer_codec_model.h"
#include "server/infer_codec.h"

#define FUZZ_ALLOC_CAP ((size_t)64 << 20)
#define HEADER_MAX 64

static void *capped_alloc(void *user, void *ptr, size_t old_size, size_t new_size) {
    (void)user;
    (void)old_size;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    if (new_size > FUZZ_ALLOC_CAP) return NULL;
    return realloc(ptr, new_size);
}

/* The two served models (unbatched, batched) share one model and session; built on the
 * first call and kept for the process, as the server keeps its models. */
static ib__served_model g_models[2];
static bool g_ready;

static bool setup(void) {
    if (g_ready) return true;
    ib_model *model = NULL;
    ib_session *session = NULL;
    ib_session_options so;
    ib_session_options_init(&so);
    so.use_reference = 1;
    so.num_threads = 1;
    if (ib_model_load_bytes(k_infer_codec_model, sizeof k_infer_codec_model, NULL, &model) != IB_OK ||
        ib_session_create(model, &so, &session) != IB_OK)
        return false;
    for (int k = 0; k < 2; k++) {
        ib__served_model *m = &g_models[k];
        snprintf(m->name, sizeof m->name, "codec");
        m->version = 1;
        m->model = model;
        m->session = session;
        ib__model_config_defaults(&m->cfg, m->name);
        m->cfg.max_batch_size = k ? 8 : 0;
        if (ib__model_config_complete(&m->cfg, model) != IB_OK) return false;
    }
    g_ready = true;
    return true;
}

ib_status ib__fuzz_infer_request(const uint8_t *data, size_t size, int *http_code) {
    *http_code = 0;
    if (size < 1 || !setup()) return IB_ERR_INVALID_ARGUMENT;
    unsigned flags = data[0];
    ib__served_model *m = &g_models[flags & 1u];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    char header[HEADER_MAX + 1];
    bool has_header = (flags & 2u) != 0;
    if (has_header) {
        size_t h = 0;
        while (h < len && h < HEADER_MAX && body[h] != '\n') h++;
        memcpy(header, body, h);
        header[h] = 0;
        if (h < len && body[h] == '\n') h++;
        body += h;
        len -= h;
    }
    ib__set_allocator(capped_alloc, NULL);
    char err[768];
    size_t json_len = len;
    err[0] = 0;
    int code = has_header ? ib__infer_header_length(header, len, &json_len, err, sizeof err) : 0;
    ib__infer_job job;
    memset(&job, 0, sizeof job);
    /* The server hands the codec a copy of the body; so does this, to catch overreads. */
    char *copy = malloc(len ? len : 1);
    if (!copy) code = 500;
    else if (len) memcpy(copy, body, len);
    if (!code) code = ib__infer_parse(m, copy, len, json_len, &job, err, sizeof err);
    ib_status st = IB_ERR_INVALID_ARGUMENT;
    if (!code) {
        st = ib_session_run(m->session, job.req.n_inputs, job.req.input_names, job.req.inputs, job.req.n_outputs,
                            job.req.output_names, job.req.outputs);
        if (st == IB_OK) {
            char *out = NULL;
            size_t out_len = 0, out_json = 0;
            code = ib__infer_respond(&job, &out, &out_len, &out_json, err, sizeof err);
            if (!code && out_json > out_len) abort(); /* the header length must fit the body */
            ib__free(out);
        } else {
            code = 400;
        }
    } else if (!err[0]) {
        abort(); /* every refusal names its reason */
    }
    ib__infer_job_clear(&job);
    free(copy);
    ib__set_allocator(NULL, NULL);
    *http_code = code;
    return code ? IB_ERR_INVALID_ARGUMENT : IB_OK;
}

#ifndef IB_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int code;
    ib__fuzz_infer_request(data, size, &code);
    return 0;
}
#endif
