/* A growable text buffer for generated source: printf-style appends, indentation. */
#ifndef IB_CODEGEN_SOURCE_BUILDER_H
#define IB_CODEGEN_SOURCE_BUILDER_H

#include "core/core.h"

typedef struct ib__sb {
    char *data;
    size_t len, cap;
    int32_t indent; /* spaces added after each newline by ib__sb_line */
    bool failed;    /* an allocation failed; the text is incomplete */
} ib__sb;

void ib__sb_init(ib__sb *sb);
void ib__sb_free(ib__sb *sb);
/* Appends formatted text as is. */
void ib__sb_printf(ib__sb *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends one line: current indentation, the formatted text, a newline. */
void ib__sb_line(ib__sb *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* IB_ERR_OUT_OF_MEMORY if any append failed, else IB_OK. */
ib_status ib__sb_status(const ib__sb *sb);

#endif /* IB_CODEGEN_SOURCE_BUILDER_H */
