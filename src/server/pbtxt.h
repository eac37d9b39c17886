/* A small, hardened reader for protobuf text format (Triton's config.pbtxt): a tree of
 * fields, each a scalar or a nested message, with limits on size, depth and count. */
#ifndef IB_SERVER_PBTXT_H
#define IB_SERVER_PBTXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inferbooster/inferbooster.h"

/* Limits that bound the parser's time and memory whatever the input. */
#define IB__PBTXT_MAX_BYTES ((size_t)1 << 20)
#define IB__PBTXT_MAX_DEPTH 32
#define IB__PBTXT_MAX_FIELDS 65536
#define IB__PBTXT_MAX_TOKEN 4096

typedef struct ib__pb_field {
    char *name;
    bool is_message;
    bool is_string;              /* scalar came from a quoted string */
    char *value;                 /* scalar text (unescaped string, identifier or number) */
    struct ib__pb_field *child;  /* first field of a message */
    struct ib__pb_field *next;   /* next sibling */
    int line;                    /* where the field starts, for messages */
} ib__pb_field;

/* Parses `len` bytes into a root message (its fields are root->child). The message on
 * failure names the line and what was expected. */
ib_status ib__pbtxt_parse(const char *text, size_t len, ib__pb_field **out_root);
void ib__pbtxt_free(ib__pb_field *root);

/* The first field called `name` among msg's children, or NULL; `after` continues a search
 * for repeated fields (pass NULL to start). */
const ib__pb_field *ib__pb_find(const ib__pb_field *msg, const char *name,
                                const ib__pb_field *after);
/* A scalar field as a checked integer / boolean; a message or junk is an error naming
 * the field. */
ib_status ib__pb_int(const ib__pb_field *f, int64_t lo, int64_t hi, int64_t *out);
ib_status ib__pb_bool(const ib__pb_field *f, bool *out);

#endif /* IB_SERVER_PBTXT_H */
