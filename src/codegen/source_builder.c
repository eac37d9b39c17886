/* Growable text buffer for generated source. */
#include <stdio.h>
#include <string.h>

#include "codegen/source_builder.h"

void ib__sb_init(ib__sb *sb) { memset(sb, 0, sizeof *sb); }

void ib__sb_free(ib__sb *sb) {
    ib__free(sb->data);
    memset(sb, 0, sizeof *sb);
}

static bool reserve(ib__sb *sb, size_t extra) {
    if (sb->failed) return false;
    if (sb->len + extra + 1 <= sb->cap) return true;
    size_t cap = sb->cap ? sb->cap : 4096;
    while (cap < sb->len + extra + 1) cap *= 2;
    char *d = ib__realloc(sb->data, cap);
    if (!d) {
        sb->failed = true;
        return false;
    }
    sb->data = d;
    sb->cap = cap;
    return true;
}

static void vappend(ib__sb *sb, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || !reserve(sb, (size_t)n)) {
        sb->failed = true;
        return;
    }
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    sb->len += (size_t)n;
}

void ib__sb_printf(ib__sb *sb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vappend(sb, fmt, ap);
    va_end(ap);
}

void ib__sb_line(ib__sb *sb, const char *fmt, ...) {
    if (!reserve(sb, (size_t)sb->indent)) return;
    memset(sb->data + sb->len, ' ', (size_t)sb->indent);
    sb->len += (size_t)sb->indent;
    va_list ap;
    va_start(ap, fmt);
    vappend(sb, fmt, ap);
    va_end(ap);
    if (reserve(sb, 1)) {
        sb->data[sb->len++] = '\n';
        sb->data[sb->len] = '\0';
    }
}

ib_status ib__sb_status(const ib__sb *sb) {
    return sb->failed ? ib__error(IB_ERR_OUT_OF_MEMORY, "out of memory generating source")
                      : IB_OK;
}
