/* The HTTP front end: Open Inference Protocol (KServe V2) REST over libmicrohttpd,
 * the repository extension and Prometheus metrics. */
#ifndef IB_SERVER_HTTP_SERVER_H
#define IB_SERVER_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inferbooster/inferbooster.h"
#include "server/repository.h"

typedef enum { IB__CONTROL_NONE, IB__CONTROL_EXPLICIT, IB__CONTROL_POLL } ib__control_mode;

typedef struct ib__server_options {
    const char *host; /* IPv4 or IPv6 literal */
    int port;         /* 0: any free port (see ib__server_port) */
    ib__control_mode control_mode;
    size_t max_body_bytes;
    int http_threads;
} ib__server_options;

typedef struct ib__server ib__server;

/* Starts listening; the repository is borrowed and must outlive the server. */
ib_status ib__server_start(ib__repository *repo, const ib__server_options *opts, ib__server **out);
int ib__server_port(const ib__server *s);
/* Stops accepting inferences, waits (up to drain_ms) for those in flight, then closes
 * every connection and frees the server. NULL is fine. */
void ib__server_stop(ib__server *s, int drain_ms);

#endif /* IB_SERVER_HTTP_SERVER_H */
