/* Load generator for `inferbooster serve` (or any Open Inference Protocol server): N
 * keep-alive HTTP/1.1 clients, one thread and one connection each, send the same infer
 * request (JSON or binary tensors, built from the model's metadata) for T seconds and
 * report throughput, p50/p90/p99 latency and errors. Raw sockets, so the client adds as
 * little of its own time as it can to what it measures. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RESPONSE_HEAD 16384

typedef struct options {
    char host[256];
    char port[16];
    const char *model;
    const char *version;
    int concurrency;
    double duration_s, warmup_s;
    long long batch;
    bool binary, json, verbose;
} options;

typedef struct buffer {
    char *p;
    size_t len, cap;
} buffer;

static void buf_reserve(buffer *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(1);
    }
    b->p = p;
    b->cap = cap;
}

static void buf_add(buffer *b, const void *data, size_t n) {
    buf_reserve(b, n);
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int dial(const options *o) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(o->host, o->port, &hints, &res) != 0 || !res) return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct timeval tv = {30, 0}; /* a stuck server is an error, not a hang */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads one response (Content-Length framed) into body; returns the status code, or -1 on
 * a connection error or a response this client cannot frame (chunked, or bytes past its
 * end: the client never pipelines, so there can be none). *keep: may the connection be
 * reused. */
static int read_response(int fd, buffer *body, bool *keep) {
    char head[MAX_RESPONSE_HEAD];
    size_t hl = 0;
    char *end = NULL;
    while (!end) {
        if (hl == sizeof head - 1) return -1;
        ssize_t r = recv(fd, head + hl, sizeof head - 1 - hl, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        hl += (size_t)r;
        head[hl] = 0;
        end = strstr(head, "\r\n\r\n");
    }
    size_t head_len = (size_t)(end - head) + 4;
    int code = 0;
    if (sscanf(head, "HTTP/1.%*d %d", &code) != 1) return -1;
    long long content_length = -1;
    *keep = true;
    for (char *line = strstr(head, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
        char *l = line + 2;
        if (strncasecmp(l, "Content-Length:", 15) == 0) content_length = atoll(l + 15);
        else if (strncasecmp(l, "Connection:", 11) == 0 && strncasecmp(l + 11 + strspn(l + 11, " "), "close", 5) == 0)
            *keep = false;
        else if (strncasecmp(l, "Transfer-Encoding:", 18) == 0) return -1;
    }
    if (content_length < 0) return -1;
    body->len = 0;
    buf_reserve(body, (size_t)content_length + 1);
    size_t have = hl - head_len;
    if (have > (size_t)content_length) return -1;
    buf_add(body, head + head_len, have);
    while (body->len < (size_t)content_length) {
        ssize_t r = recv(fd, body->p + body->len, (size_t)content_length - body->len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        body->len += (size_t)r;
    }
    body->p[body->len] = 0;
    return code;
}

/* ---- The request, from the model's metadata ----------------------------------------- */

static size_t dtype_size(const char *dt) {
    if (!strcmp(dt, "BOOL") || !strcmp(dt, "UINT8") || !strcmp(dt, "INT8")) return 1;
    if (!strcmp(dt, "UINT16") || !strcmp(dt, "INT16") || !strcmp(dt, "FP16")) return 2;
    if (!strcmp(dt, "UINT32") || !strcmp(dt, "INT32") || !strcmp(dt, "FP32")) return 4;
    if (!strcmp(dt, "UINT64") || !strcmp(dt, "INT64") || !strcmp(dt, "FP64")) return 8;
    return 0;
}

/* Element i of a seeded pattern: small values every datatype can hold. */
static double pattern(size_t i) { return (double)((i * 2654435761u) % 1000u) / 1000.0; }

static void write_binary(buffer *b, const char *dt, size_t count) {
    size_t es = dtype_size(dt);
    buf_reserve(b, count * es);
    for (size_t i = 0; i < count; i++) {
        double v = pattern(i);
        unsigned char tmp[8];
        if (!strcmp(dt, "FP32")) {
            float f = (float)v;
            memcpy(tmp, &f, 4);
        } else if (!strcmp(dt, "FP64")) {
            memcpy(tmp, &v, 8);
        } else if (!strcmp(dt, "FP16")) {
            uint16_t h = 0x3c00; /* 1.0 */
            memcpy(tmp, &h, 2);
        } else {
            int64_t x = (int64_t)(v * 4) & 1; /* 0 or 1: valid for BOOL and every integer type */
            memcpy(tmp, &x, es);                /* little-endian */
        }
        buf_add(b, tmp, es);
    }
}

static json_t *json_data(const char *dt, size_t count) {
    json_t *a = json_array();
    for (size_t i = 0; i < count; i++) {
        double v = pattern(i);
        if (!strcmp(dt, "BOOL")) json_array_append_new(a, json_boolean(((int)(v * 4)) & 1));
        else if (dt[0] == 'F') json_array_append_new(a, json_real(v));
        else json_array_append_new(a, json_integer(((int)(v * 4)) & 1));
    }
    return a;
}

static char *http_get(const options *o, const char *path, int *code) {
    int fd = dial(o);
    if (fd < 0) return NULL;
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n", path, o->host,
                     o->port);
    buffer body = {0};
    bool keep;
    *code = send_all(fd, req, (size_t)n) ? read_response(fd, &body, &keep) : -1;
    close(fd);
    return body.p;
}

/* Builds the whole HTTP request (head and body) once; every client sends these bytes. */
static bool build_request(const options *o, buffer *req, long long *items) {
    char path[512];
    if (o->version) snprintf(path, sizeof path, "/v2/models/%s/versions/%s", o->model, o->version);
    else snprintf(path, sizeof path, "/v2/models/%s", o->model);
    int code = 0;
    char *meta_text = http_get(o, path, &code);
    if (!meta_text || code != 200) {
        fprintf(stderr, "loadgen: GET %s: %s %s\n", path, code > 0 ? "HTTP" : "no answer", meta_text ? meta_text : "");
        free(meta_text);
        return false;
    }
    json_error_t jerr;
    json_t *meta = json_loads(meta_text, 0, &jerr);
    free(meta_text);
    json_t *inputs = meta ? json_object_get(meta, "inputs") : NULL;
    if (!json_is_array(inputs)) {
        fprintf(stderr, "loadgen: the model metadata has no inputs array\n");
        json_decref(meta);
        return false;
    }
    json_t *root = json_object(), *rin = json_array();
    buffer bin = {0};
    size_t k;
    json_t *in;
    *items = o->batch;
    json_array_foreach(inputs, k, in) {
        const char *name = json_string_value(json_object_get(in, "name"));
        const char *dt = json_string_value(json_object_get(in, "datatype"));
        json_t *shape = json_object_get(in, "shape");
        if (!name || !dt || !json_is_array(shape) || !dtype_size(dt)) {
            fprintf(stderr, "loadgen: input %zu: missing name, shape or a supported datatype\n", k);
            json_decref(meta);
            return false;
        }
        json_t *js = json_array();
        size_t count = 1, d;
        json_t *x;
        json_array_foreach(shape, d, x) {
            long long v = json_integer_value(x);
            if (v < 0) v = d == 0 ? o->batch : 1; /* a variable dim: the batch first, 1 elsewhere */
            json_array_append_new(js, json_integer(v));
            count *= (size_t)v;
        }
        json_t *ji = json_object();
        json_object_set_new(ji, "name", json_string(name));
        json_object_set_new(ji, "datatype", json_string(dt));
        json_object_set_new(ji, "shape", js);
        if (o->binary) {
            json_t *p = json_object();
            json_object_set_new(p, "binary_data_size", json_integer((json_int_t)(count * dtype_size(dt))));
            json_object_set_new(ji, "parameters", p);
            write_binary(&bin, dt, count);
        } else {
            json_object_set_new(ji, "data", json_data(dt, count));
        }
        json_array_append_new(rin, ji);
    }
    json_decref(meta);
    json_object_set_new(root, "inputs", rin);
    if (o->binary) {
        json_t *p = json_object();
        json_object_set_new(p, "binary_data_output", json_true());
        json_object_set_new(root, "parameters", p);
    }
    char *text = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    size_t jl = strlen(text);
    char head[1024];
    if (o->version) snprintf(path, sizeof path, "/v2/models/%s/versions/%s/infer", o->model, o->version);
    else snprintf(path, sizeof path, "/v2/models/%s/infer", o->model);
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n", path, o->host,
                      o->port, o->binary ? "application/octet-stream" : "application/json", jl + bin.len);
    if (o->binary) hn += snprintf(head + hn, sizeof head - (size_t)hn, "Inference-Header-Content-Length: %zu\r\n", jl);
    hn += snprintf(head + hn, sizeof head - (size_t)hn, "\r\n");
    buf_add(req, head, (size_t)hn);
    buf_add(req, text, jl);
    if (bin.len) buf_add(req, bin.p, bin.len);
    free(text);
    free(bin.p);
    return true;
}

/* ---- Clients --------------------------------------------------------------------------- */

typedef struct client {
    const options *o;
    const buffer *req;
    pthread_t thread;
    uint64_t t_measure, t_end; /* latencies count from t_measure; the client stops at t_end */
    uint64_t *lat_ns;
    size_t n_lat, cap_lat;
    uint64_t ok, errors, connects;
    char first_error[256];
} client;

static void note_error(client *c, const char *fmt, const char *detail) {
    c->errors++;
    if (!c->first_error[0]) snprintf(c->first_error, sizeof c->first_error, fmt, detail);
}

static void *client_main(void *arg) {
    client *c = arg;
    buffer body = {0};
    int fd = -1;
    while (now_ns() < c->t_end) {
        if (fd < 0) {
            fd = dial(c->o);
            c->connects++;
            if (fd < 0) {
                note_error(c, "connect: %s", strerror(errno));
                usleep(10000);
                continue;
            }
        }
        uint64_t t0 = now_ns();
        bool keep = false;
        int code = send_all(fd, c->req->p, c->req->len) ? read_response(fd, &body, &keep) : -1;
        uint64_t t1 = now_ns();
        bool measured = t0 >= c->t_measure;
        if (code != 200) {
            if (measured || code > 0) {
                if (code < 0) note_error(c, "%s", "connection error or unframed response");
                else note_error(c, "HTTP error: %.200s", body.p ? body.p : "");
            }
            keep = false;
        } else if (measured) {
            c->ok++;
            if (c->n_lat == c->cap_lat) {
                c->cap_lat = c->cap_lat ? c->cap_lat * 2 : 4096;
                c->lat_ns = realloc(c->lat_ns, c->cap_lat * sizeof *c->lat_ns);
                if (!c->lat_ns) exit(1);
            }
            c->lat_ns[c->n_lat++] = t1 - t0;
        }
        if (!keep) {
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0) close(fd);
    free(body.p);
    return NULL;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(const uint64_t *v, size_t n, double q) {
    if (!n) return 0;
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

static void usage(FILE *f) {
    fprintf(f, "usage: inferbooster-loadgen --model NAME [--url http://127.0.0.1:8000] [--version V]\n"
               "                            [--concurrency N] [--duration SECS] [--warmup SECS]\n"
               "                            [--batch B] [--binary] [--json] [--verbose]\n"
               "N keep-alive clients (default 1) send one infer request (built from the model's\n"
               "metadata, variable dims: the batch B first, 1 elsewhere) back to back for SECS\n"
               "(default 10) after WARMUP (default 1) unmeasured seconds. Prints throughput,\n"
               "p50/p90/p99 latency and errors; exits 1 when any request failed.\n");
}

static bool parse_url(const char *url, options *o) {
    if (strncmp(url, "http://", 7) == 0) url += 7;
    const char *colon = strrchr(url, ':');
    size_t hl = colon ? (size_t)(colon - url) : strcspn(url, "/");
    if (hl == 0 || hl >= sizeof o->host) return false;
    memcpy(o->host, url, hl);
    o->host[hl] = 0;
    if (colon) {
        size_t pl = strcspn(colon + 1, "/");
        if (pl == 0 || pl >= sizeof o->port) return false;
        memcpy(o->port, colon + 1, pl);
        o->port[pl] = 0;
    }
    return true;
}

int main(int argc, char **argv) {
    options o = {.host = "127.0.0.1", .port = "8000", .concurrency = 1, .duration_s = 10, .warmup_s = 1, .batch = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool takes = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--binary")) o.binary = true, takes = false;
        else if (!strcmp(a, "--json")) o.json = true, takes = false;
        else if (!strcmp(a, "--verbose")) o.verbose = true, takes = false;
        else if (!v) {
            fprintf(stderr, "loadgen: %s needs a value (or is unknown)\n", a);
            return 2;
        } else if (!strcmp(a, "--url")) {
            if (!parse_url(v, &o)) {
                fprintf(stderr, "loadgen: bad --url '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--version")) o.version = v;
        else if (!strcmp(a, "--concurrency")) o.concurrency = atoi(v);
        else if (!strcmp(a, "--duration")) o.duration_s = atof(v);
        else if (!strcmp(a, "--warmup")) o.warmup_s = atof(v);
        else if (!strcmp(a, "--batch")) o.batch = atoll(v);
        else {
            fprintf(stderr, "loadgen: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (takes) i++;
    }
    if (!o.model || o.concurrency < 1 || o.concurrency > 4096 || o.duration_s <= 0 || o.warmup_s < 0 || o.batch < 1) {
        usage(stderr);
        return 2;
    }
    buffer req = {0};
    long long items = 1;
    if (!build_request(&o, &req, &items)) return 1;
    client *cs = calloc((size_t)o.concurrency, sizeof *cs);
    uint64_t t_start = now_ns();
    uint64_t t_measure = t_start + (uint64_t)(o.warmup_s * 1e9), t_end = t_measure + (uint64_t)(o.duration_s * 1e9);
    for (int k = 0; k < o.concurrency; k++) {
        cs[k] = (client){.o = &o, .req = &req, .t_measure = t_measure, .t_end = t_end};
        if (pthread_create(&cs[k].thread, NULL, client_main, &cs[k]) != 0) {
            fprintf(stderr, "loadgen: cannot start client %d\n", k);
            return 1;
        }
    }
    uint64_t ok = 0, errors = 0, connects = 0;
    size_t n = 0;
    const char *first_error = NULL;
    for (int k = 0; k < o.concurrency; k++) {
        pthread_join(cs[k].thread, NULL);
        ok += cs[k].ok;
        errors += cs[k].errors;
        connects += cs[k].connects;
        n += cs[k].n_lat;
        if (!first_error && cs[k].first_error[0]) first_error = cs[k].first_error;
    }
    uint64_t *all = malloc((n ? n : 1) * sizeof *all);
    size_t at = 0;
    for (int k = 0; k < o.concurrency; k++) {
        memcpy(all + at, cs[k].lat_ns, cs[k].n_lat * sizeof *all);
        at += cs[k].n_lat;
    }
    qsort(all, n, sizeof *all, cmp_u64);
    double secs = (double)(now_ns() - t_measure) / 1e9;
    double rps = (double)ok / secs;
    double p50 = pct_ms(all, n, 0.5), p90 = pct_ms(all, n, 0.9), p99 = pct_ms(all, n, 0.99);
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += (double)all[i] / 1e6;
    mean = n ? mean / (double)n : 0;
    if (o.json) {
        printf("{\"model\": \"%s\", \"concurrency\": %d, \"binary\": %s, \"batch\": %lld, \"seconds\": %.3f, "
               "\"requests\": %llu, \"errors\": %llu, \"connects\": %llu, \"requests_per_s\": %.3f, "
               "\"inferences_per_s\": %.3f, \"p50_ms\": %.4f, \"p90_ms\": %.4f, \"p99_ms\": %.4f, "
               "\"mean_ms\": %.4f, \"request_bytes\": %zu}\n",
               o.model, o.concurrency, o.binary ? "true" : "false", o.batch, secs, (unsigned long long)ok,
               (unsigned long long)errors, (unsigned long long)connects, rps, rps * (double)items, p50, p90, p99,
               mean, req.len);
    } else {
        printf("model %s, %d client%s, %s tensors, batch %lld, %.1f s\n", o.model, o.concurrency,
               o.concurrency == 1 ? "" : "s", o.binary ? "binary" : "JSON", o.batch, secs);
        printf("requests:   %llu ok, %llu errors (%llu connections)\n", (unsigned long long)ok,
               (unsigned long long)errors, (unsigned long long)connects);
        printf("throughput: %.1f requests/s, %.1f inferences/s\n", rps, rps * (double)items);
        printf("latency:    p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, mean %.3f ms\n", p50, p90, p99, mean);
    }
    if (first_error) fprintf(stderr, "loadgen: first error: %s\n", first_error);
    for (int k = 0; k < o.concurrency; k++) free(cs[k].lat_ns);
    free(cs);
    free(all);
    free(req.p);
    return errors ? 1 : 0;
}
