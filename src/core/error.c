/* Status names and the per-thread error message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

#define IB__ERROR_CAP 1024
static _Thread_local char t_message[IB__ERROR_CAP];

const char *ib_status_name(ib_status status) {
    switch (status) {
#define IB__STATUS_CASE(name, value, desc) \
    case name:                             \
        return #name;
        IB_STATUS_LIST(IB__STATUS_CASE)
#undef IB__STATUS_CASE
    }
    return "IB_ERR_UNKNOWN";
}

const char *ib_last_error(void) { return t_message; }

void ib__error_clear(void) { t_message[0] = '\0'; }

ib_status ib__error(ib_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_message, sizeof t_message, fmt, ap);
    va_end(ap);
    return status;
}

ib_status ib__error_prefix(ib_status status, const char *fmt, ...) {
    char prefix[IB__ERROR_CAP];
    char old[IB__ERROR_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, t_message, sizeof old);
    size_t n = strlen(prefix);
    if (n >= sizeof t_message) n = sizeof t_message - 1;
    memcpy(t_message, prefix, n);
    size_t rest = strlen(old);
    if (rest > sizeof t_message - 1 - n) rest = sizeof t_message - 1 - n;
    memcpy(t_message + n, old, rest);
    t_message[n + rest] = '\0';
    return status;
}

void ib__assert_fail(const char *expr, const char *file, int line) {
    fprintf(stderr, "inferbooster: internal error: %s at %s:%d\n", expr, file, line);
    abort();
}
