/* Inference request decoding and response encoding for the Open Inference Protocol:
 * JSON tensors (flat or nested), the binary tensor data extension, requested outputs,
 * and every check that keeps a hostile request from costing more than its own size. */
#include "server/infer_codec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

static int fail(char *err, size_t cap, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t cap, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return code;
}

size_t ib__json_depth(const char *s, size_t n) {
    size_t depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max) max = depth;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return max;
}

int ib__infer_header_length(const char *value, size_t body_len, size_t *json_len, char *err, size_t cap) {
    /* strtoull would accept leading spaces, a sign and overflow to ULLONG_MAX: digits only. */
    size_t n = strlen(value);
    unsigned long long v = 0;
    bool ok = n > 0 && n <= 19;
    for (size_t i = 0; ok && i < n; i++) {
        ok = value[i] >= '0' && value[i] <= '9';
        v = v * 10 + (unsigned long long)(value[i] - '0');
    }
    if (!ok || v > body_len)
        return fail(err, cap, 400, "bad Inference-Header-Content-Length '%.32s' for a %zu-byte body", value, body_len);
    *json_len = (size_t)v;
    return 0;
}

void ib__infer_job_clear(ib__infer_job *job) {
    for (size_t i = 0; i < job->n_inputs; i++) {
        if (job->input_names) ib__free(job->input_names[i]);
        if (job->inputs) ib__aligned_free(job->inputs[i].data);
    }
    for (size_t o = 0; o < job->n_outputs; o++) {
        if (job->output_names) ib__free(job->output_names[o]);
        if (job->outputs) ib_tensor_release(&job->outputs[o]);
    }
    ib__free(job->input_names);
    ib__free(job->inputs);
    ib__free(job->output_names);
    ib__free(job->outputs);
    ib__free(job->output_binary);
    json_decref(job->id);
    json_decref(job->parameters);
    memset(job, 0, sizeof *job);
}

/* Values in a (possibly nested) data array; stops counting past `limit`. */
static int64_t count_values(const json_t *v, int64_t limit) {
    if (!json_is_array(v)) return 1;
    int64_t n = 0;
    size_t k;
    const json_t *e;
    json_array_foreach(v, k, e) {
        n += count_values(e, limit - n);
        if (n > limit) return n;
    }
    return n;
}

static bool int_range(ib_dtype dt, json_int_t x) {
    switch (dt) {
    case IB_DTYPE_INT8: return x >= INT8_MIN && x <= INT8_MAX;
    case IB_DTYPE_UINT8: return x >= 0 && x <= UINT8_MAX;
    case IB_DTYPE_INT16: return x >= INT16_MIN && x <= INT16_MAX;
    case IB_DTYPE_UINT16: return x >= 0 && x <= UINT16_MAX;
    case IB_DTYPE_INT32: return x >= INT32_MIN && x <= INT32_MAX;
    case IB_DTYPE_UINT32: return x >= 0 && x <= (json_int_t)UINT32_MAX;
    case IB_DTYPE_UINT64: return x >= 0;
    default: return true;
    }
}

/* Stores the values of a (nested) array into data, in order; *k counts stored values. */
static int store_values(const json_t *v, ib_dtype dt, void *data, int64_t *k, const char *name, char *err,
                        size_t cap) {
    if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            int rc = store_values(e, dt, data, k, name, err, cap);
            if (rc) return rc;
        }
        return 0;
    }
    int64_t at = (*k)++;
    if (dt == IB_DTYPE_BOOL) {
        if (!json_is_boolean(v))
            return fail(err, cap, 400, "input '%s': value %lld is not a boolean (datatype BOOL)", name, (long long)at);
        ((uint8_t *)data)[at] = json_is_true(v) ? 1 : 0;
    } else if (ib__dtype_is_integer(dt)) {
        if (!json_is_integer(v))
            return fail(err, cap, 400, "input '%s': value %lld is not an integer", name, (long long)at);
        json_int_t x = json_integer_value(v);
        if (!int_range(dt, x))
            return fail(err, cap, 400, "input '%s': value %lld (%lld) is out of range for %s", name, (long long)at,
                        (long long)x, ib__protocol_dtype_name(dt));
        ib__store_i64(data, dt, at, (int64_t)x);
    } else {
        if (!json_is_number(v))
            return fail(err, cap, 400, "input '%s': value %lld is not a number", name, (long long)at);
        ib__store_f64(data, dt, at, json_number_value(v));
    }
    return 0;
}

static int find_model_value(const ib_model *model, bool input, const char *name, ib_value_info *info) {
    size_t n = input ? ib_model_input_count(model) : ib_model_output_count(model);
    for (size_t k = 0; k < n; k++) {
        if ((input ? ib_model_input_info(model, k, info) : ib_model_output_info(model, k, info)) != IB_OK) continue;
        if (info->name && strcmp(info->name, name) == 0) return (int)k;
    }
    return -1;
}

static char *dup_name(const char *s) { return ib__strdup(s); }

static int parse_inputs(ib__served_model *m, const json_t *inputs, const char *bin, size_t bin_len,
                        ib__infer_job *job, char *err, size_t cap) {
    size_t n_model = ib_model_input_count(m->model);
    size_t n = json_array_size(inputs);
    if (!json_is_array(inputs) || n == 0) return fail(err, cap, 400, "'inputs' must be a non-empty array");
    if (n > n_model) return fail(err, cap, 400, "%zu inputs given, model '%s' has %zu", n, m->name, n_model);
    job->input_names = ib__calloc(n, sizeof *job->input_names);
    job->inputs = ib__calloc(n, sizeof *job->inputs);
    if (!job->input_names || !job->inputs) return fail(err, cap, 500, "out of memory");
    job->n_inputs = n;
    size_t bin_off = 0;
    int64_t batch = -1;
    for (size_t i = 0; i < n; i++) {
        const json_t *in = json_array_get(inputs, i);
        if (!json_is_object(in)) return fail(err, cap, 400, "inputs[%zu] must be an object", i);
        const char *name = json_string_value(json_object_get(in, "name"));
        if (!name) return fail(err, cap, 400, "inputs[%zu] has no 'name' string", i);
        ib_value_info info;
        if (find_model_value(m->model, true, name, &info) < 0)
            return fail(err, cap, 400, "unexpected inference input '%.128s' for model '%s'", name, m->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(job->input_names[j], name) == 0)
                return fail(err, cap, 400, "input '%.128s' given twice", name);
        if (!(job->input_names[i] = dup_name(name))) return fail(err, cap, 500, "out of memory");
        const char *dts = json_string_value(json_object_get(in, "datatype"));
        if (!dts) return fail(err, cap, 400, "input '%s' has no 'datatype' string", name);
        ib_dtype dt = ib__protocol_dtype(dts);
        if (dt == IB_DTYPE_STRING) return fail(err, cap, 400, "input '%s': datatype BYTES is not supported", name);
        if (dt == IB_DTYPE_UNDEFINED) return fail(err, cap, 400, "input '%s': unknown datatype '%.32s'", name, dts);
        if (dt != info.dtype)
            return fail(err, cap, 400, "input '%s': datatype %s, the model expects %s", name, dts,
                        ib__protocol_dtype_name(info.dtype) ? ib__protocol_dtype_name(info.dtype)
                                                            : ib_dtype_name(info.dtype));
        const json_t *shape = json_object_get(in, "shape");
        if (!json_is_array(shape)) return fail(err, cap, 400, "input '%s' has no 'shape' array", name);
        size_t rank = json_array_size(shape);
        if (rank > IB_MAX_RANK) return fail(err, cap, 400, "input '%s': rank %zu exceeds %d", name, rank, IB_MAX_RANK);
        ib_tensor *t = &job->inputs[i];
        t->dtype = dt;
        t->rank = (int32_t)rank;
        for (size_t d = 0; d < rank; d++) {
            const json_t *x = json_array_get(shape, d);
            if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > IB_MAX_ELEMENTS)
                return fail(err, cap, 400, "input '%s': shape[%zu] must be a non-negative integer", name, d);
            t->shape[d] = (int64_t)json_integer_value(x);
        }
        char want[160];
        if (info.rank >= 0) {
            bool ok = info.rank == t->rank;
            for (int32_t d = 0; ok && d < t->rank; d++) ok = info.shape[d] < 0 || info.shape[d] == t->shape[d];
            if (!ok) {
                size_t w = 0;
                want[0] = 0;
                for (int32_t d = 0; d < info.rank && w < sizeof want - 24; d++)
                    w += (size_t)snprintf(want + w, sizeof want - w, "%s%lld", d ? "," : "", (long long)info.shape[d]);
                return fail(err, cap, 400, "input '%s': unexpected shape, the model expects [%s] (-1: any)", name,
                            want);
            }
        }
        if (m->cfg.max_batch_size > 0) {
            if (t->rank < 1) return fail(err, cap, 400, "input '%s' lacks the batch dimension", name);
            if (t->shape[0] < 1 || t->shape[0] > m->cfg.max_batch_size)
                return fail(err, cap, 400, "input '%s': batch size %lld is outside 1..%lld (max_batch_size)", name,
                            (long long)t->shape[0], (long long)m->cfg.max_batch_size);
            if (batch >= 0 && batch != t->shape[0])
                return fail(err, cap, 400, "input '%s': batch size %lld differs from the other inputs' %lld", name,
                            (long long)t->shape[0], (long long)batch);
            batch = t->shape[0];
        }
        int64_t count = ib__shape_count(t->shape, t->rank);
        size_t es = ib_dtype_size(dt);
        if (count < 0 || (uint64_t)count > SIZE_MAX / es) return fail(err, cap, 400, "input '%s': shape too large", name);
        size_t nbytes = (size_t)count * es;
        const json_t *params = json_object_get(in, "parameters");
        const json_t *bsize = params ? json_object_get(params, "binary_data_size") : NULL;
        const json_t *data = json_object_get(in, "data");
        if (bsize) {
            if (data) return fail(err, cap, 400, "input '%s' has both 'data' and binary_data_size", name);
            if (!json_is_integer(bsize) || json_integer_value(bsize) < 0)
                return fail(err, cap, 400, "input '%s': binary_data_size must be a non-negative integer", name);
            uint64_t bs = (uint64_t)json_integer_value(bsize);
            if (bs != nbytes)
                return fail(err, cap, 400, "input '%s': binary_data_size %llu, shape and datatype need %zu bytes", name,
                            (unsigned long long)bs, nbytes);
            if (bs > bin_len - bin_off)
                return fail(err, cap, 400, "input '%s': binary_data_size %llu runs past the %zu binary bytes left",
                            name, (unsigned long long)bs, bin_len - bin_off);
            /* Checked against the request's real size first, so this allocation is bounded by it. */
            t->data = ib__aligned_alloc(nbytes ? nbytes : 1);
            if (!t->data) return fail(err, cap, 500, "out of memory");
            if (nbytes) memcpy(t->data, bin + bin_off, nbytes);
            bin_off += nbytes;
        } else {
            if (!data) return fail(err, cap, 400, "input '%s' has no 'data' (nor binary_data_size)", name);
            int64_t have = count_values(data, count);
            if (have != count)
                return fail(err, cap, 400, "input '%s': %s%lld values, shape needs %lld", name,
                            have > count ? "more than " : "", (long long)(have > count ? count : have),
                            (long long)count);
            t->data = ib__aligned_alloc(nbytes ? nbytes : 1);
            if (!t->data) return fail(err, cap, 500, "out of memory");
            int64_t k = 0;
            int rc = store_values(data, dt, t->data, &k, name, err, cap);
            if (rc) return rc;
        }
        t->nbytes = nbytes;
    }
    if (n != n_model) {
        for (size_t k = 0; k < n_model; k++) {
            ib_value_info info;
            if (ib_model_input_info(m->model, k, &info) != IB_OK || !info.name) continue;
            bool given = false;
            for (size_t i = 0; i < n; i++) given |= strcmp(job->input_names[i], info.name) == 0;
            if (!given) return fail(err, cap, 400, "missing input '%s' for model '%s'", info.name, m->name);
        }
    }
    if (bin_off != bin_len)
        return fail(err, cap, 400, "%zu bytes of binary data follow the inputs that use %zu", bin_len, bin_off);
    job->req.batch = m->cfg.max_batch_size > 0 ? batch : 0;
    return 0;
}

static int parse_outputs(ib__served_model *m, const json_t *outputs, ib__infer_job *job, char *err, size_t cap) {
    size_t n_model = ib_model_output_count(m->model);
    size_t n = outputs ? json_array_size(outputs) : n_model;
    if (outputs && (!json_is_array(outputs) || n == 0)) return fail(err, cap, 400, "'outputs' must be a non-empty array");
    if (n > n_model) return fail(err, cap, 400, "%zu outputs requested, model '%s' has %zu", n, m->name, n_model);
    job->output_names = ib__calloc(n, sizeof *job->output_names);
    job->outputs = ib__calloc(n, sizeof *job->outputs);
    job->output_binary = ib__calloc(n, sizeof *job->output_binary);
    if (!job->output_names || !job->outputs || !job->output_binary) return fail(err, cap, 500, "out of memory");
    job->n_outputs = n;
    for (size_t o = 0; o < n; o++) {
        ib_value_info info;
        const char *name;
        job->output_binary[o] = job->binary_output_default;
        if (outputs) {
            const json_t *out = json_array_get(outputs, o);
            if (!json_is_object(out)) return fail(err, cap, 400, "outputs[%zu] must be an object", o);
            name = json_string_value(json_object_get(out, "name"));
            if (!name) return fail(err, cap, 400, "outputs[%zu] has no 'name' string", o);
            if (find_model_value(m->model, false, name, &info) < 0)
                return fail(err, cap, 400, "unexpected inference output '%.128s' for model '%s'", name, m->name);
            for (size_t j = 0; j < o; j++)
                if (strcmp(job->output_names[j], name) == 0)
                    return fail(err, cap, 400, "output '%.128s' requested twice", name);
            const json_t *params = json_object_get(out, "parameters");
            if (params && !json_is_object(params))
                return fail(err, cap, 400, "output '%s': 'parameters' must be an object", name);
            const json_t *b = params ? json_object_get(params, "binary_data") : NULL;
            if (b) {
                if (!json_is_boolean(b)) return fail(err, cap, 400, "output '%s': binary_data must be a boolean", name);
                job->output_binary[o] = json_is_true(b);
            }
            if (params && json_object_get(params, "classification"))
                return fail(err, cap, 400, "output '%s': the classification extension is not supported", name);
        } else {
            if (ib_model_output_info(m->model, o, &info) != IB_OK || !info.name)
                return fail(err, cap, 500, "model '%s' output %zu has no name", m->name, o);
            name = info.name;
        }
        if (!(job->output_names[o] = dup_name(name))) return fail(err, cap, 500, "out of memory");
    }
    return 0;
}

int ib__infer_parse(ib__served_model *m, const char *body, size_t len, size_t json_len, ib__infer_job *job,
                    char *err, size_t cap) {
    memset(job, 0, sizeof *job);
    job->model = m;
    if (json_len > len) return fail(err, cap, 400, "Inference-Header-Content-Length %zu exceeds the body's %zu bytes", json_len, len);
    if (ib__json_depth(body, json_len) > IB__JSON_MAX_DEPTH)
        return fail(err, cap, 400, "JSON nested deeper than %d", IB__JSON_MAX_DEPTH);
    json_error_t jerr;
    json_t *root = json_loadb(body, json_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return fail(err, cap, 400, "failed to parse the request JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = fail(err, cap, 400, "the request must be a JSON object");
        goto out;
    }
    json_t *id = json_object_get(root, "id");
    if (id) {
        if (!json_is_string(id)) {
            rc = fail(err, cap, 400, "'id' must be a string");
            goto out;
        }
        job->id = json_incref(id);
    }
    json_t *params = json_object_get(root, "parameters");
    if (params) {
        if (!json_is_object(params)) {
            rc = fail(err, cap, 400, "'parameters' must be an object");
            goto out;
        }
        job->parameters = json_incref(params);
        json_t *b = json_object_get(params, "binary_data_output");
        if (b) {
            if (!json_is_boolean(b)) {
                rc = fail(err, cap, 400, "parameters.binary_data_output must be a boolean");
                goto out;
            }
            job->binary_output_default = json_is_true(b);
        }
        /* Triton's per-request "timeout" (microseconds) overrides the model's default. */
        json_t *t = json_object_get(params, "timeout");
        if (t) {
            if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > 3600ll * 1000 * 1000) {
                rc = fail(err, cap, 400, "parameters.timeout must be an integer of microseconds (0 to 3600e6)");
                goto out;
            }
            job->req.timeout_us = (uint64_t)json_integer_value(t);
        }
    }
    if (!job->req.timeout_us && m->cfg.default_timeout_us > 0) job->req.timeout_us = (uint64_t)m->cfg.default_timeout_us;
    rc = parse_inputs(m, json_object_get(root, "inputs"), body + json_len, len - json_len, job, err, cap);
    if (!rc) rc = parse_outputs(m, json_object_get(root, "outputs"), job, err, cap);
    if (!rc) {
        job->req.n_inputs = job->n_inputs;
        job->req.input_names = (const char *const *)job->input_names;
        job->req.inputs = job->inputs;
        job->req.n_outputs = job->n_outputs;
        job->req.output_names = (const char *const *)job->output_names;
        job->req.outputs = job->outputs;
    }
out:
    json_decref(root);
    return rc;
}

static json_t *value_json(const ib_tensor *t, int64_t i) {
    switch (t->dtype) {
    case IB_DTYPE_BOOL: return json_boolean(((const uint8_t *)t->data)[i] != 0);
    case IB_DTYPE_UINT64: {
        uint64_t u = ((const uint64_t *)t->data)[i];
        return u <= (uint64_t)INT64_MAX ? json_integer((json_int_t)u) : json_real((double)u);
    }
    default:
        if (ib__dtype_is_integer(t->dtype)) return json_integer((json_int_t)ib__load_i64(t->data, t->dtype, i));
        double v = ib__load_f64(t->data, t->dtype, i);
        /* JSON has no NaN or infinity. */
        return isfinite(v) ? json_real(v) : json_null();
    }
}

int ib__infer_respond(const ib__infer_job *job, char **out, size_t *out_len, size_t *json_len, char *err,
                      size_t cap) {
    const ib__served_model *m = job->model;
    json_t *root = json_object();
    json_t *outs = json_array();
    int rc = 0;
    size_t bin_total = 0;
    bool any_binary = false;
    char ver[32];
    snprintf(ver, sizeof ver, "%lld", (long long)m->version);
    if (!root || !outs) {
        rc = fail(err, cap, 500, "out of memory");
        goto done;
    }
    json_object_set_new(root, "model_name", json_string(m->name));
    json_object_set_new(root, "model_version", json_string(ver));
    if (job->id) json_object_set(root, "id", job->id);
    if (job->parameters) json_object_set(root, "parameters", job->parameters);
    for (size_t o = 0; o < job->n_outputs; o++) {
        const ib_tensor *t = &job->outputs[o];
        const char *dts = ib__protocol_dtype_name(t->dtype);
        if (!dts || t->dtype == IB_DTYPE_STRING) {
            rc = fail(err, cap, 500, "output '%s' has dtype %s, which the protocol cannot carry", job->output_names[o],
                      ib_dtype_name(t->dtype));
            goto done;
        }
        json_t *jo = json_object(), *shape = json_array();
        json_object_set_new(jo, "name", json_string(job->output_names[o]));
        json_object_set_new(jo, "datatype", json_string(dts));
        for (int32_t d = 0; d < t->rank; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_object_set_new(jo, "shape", shape);
        if (job->output_binary[o]) {
            json_t *p = json_object();
            json_object_set_new(p, "binary_data_size", json_integer((json_int_t)t->nbytes));
            json_object_set_new(jo, "parameters", p);
            bin_total += t->nbytes;
            any_binary = true;
        } else {
            json_t *data = json_array();
            int64_t count = ib_tensor_element_count(t);
            for (int64_t i = 0; i < count; i++) json_array_append_new(data, value_json(t, i));
            json_object_set_new(jo, "data", data);
        }
        json_array_append_new(outs, jo);
    }
    json_object_set(root, "outputs", outs);
    /* Nine significant digits round-trip float32 and shorten responses; FP64 keeps 17. */
    bool any_fp64 = false;
    for (size_t o = 0; o < job->n_outputs; o++) any_fp64 |= job->outputs[o].dtype == IB_DTYPE_FLOAT64;
    char *text = json_dumps(root, JSON_COMPACT | (any_fp64 ? 0 : JSON_REAL_PRECISION(9)));
    if (!text) {
        rc = fail(err, cap, 500, "out of memory encoding the response");
        goto done;
    }
    size_t jl = strlen(text);
    char *buf = ib__malloc(jl + bin_total + 1);
    if (!buf) {
        free(text);
        rc = fail(err, cap, 500, "out of memory encoding the response");
        goto done;
    }
    memcpy(buf, text, jl);
    free(text);
    size_t off = jl;
    for (size_t o = 0; o < job->n_outputs; o++)
        if (job->output_binary[o] && job->outputs[o].nbytes) {
            memcpy(buf + off, job->outputs[o].data, job->outputs[o].nbytes);
            off += job->outputs[o].nbytes;
        }
    buf[off] = 0;
    *out = buf;
    *out_len = off;
    *json_len = any_binary ? jl : 0;
done:
    json_decref(outs);
    json_decref(root);
    return rc;
}
