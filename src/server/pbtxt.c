/* Protobuf text format reader for config.pbtxt: recursive descent over a byte range with
 * bounded depth, field count and token length, so hostile files fail cleanly. */
#include "server/pbtxt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

typedef struct parser {
    const char *s;
    size_t n, pos;
    int line;
    size_t fields;
} parser;

static void skip_space(parser *p) {
    while (p->pos < p->n) {
        char c = p->s[p->pos];
        if (c == '\n') {
            p->line++;
            p->pos++;
        } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            p->pos++;
        } else if (c == '#') {
            while (p->pos < p->n && p->s[p->pos] != '\n') p->pos++;
        } else {
            break;
        }
    }
}

static int peek(parser *p) {
    skip_space(p);
    return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1;
}

static bool is_ident_start(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static bool is_scalar_char(int c) {
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '+';
}

static ib_status syntax(parser *p, const char *what) {
    int c = p->pos < p->n ? (unsigned char)p->s[p->pos] : -1;
    if (c < 0) return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: %s, found end of file", p->line, what);
    if (c >= 0x20 && c < 0x7f)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: %s, found '%c'", p->line, what, c);
    return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: %s, found byte 0x%02x", p->line, what, c);
}

static ib__pb_field *new_field(parser *p) {
    if (++p->fields > IB__PBTXT_MAX_FIELDS) {
        ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: more than %d fields", p->line,
                  IB__PBTXT_MAX_FIELDS);
        return NULL;
    }
    ib__pb_field *f = ib__calloc(1, sizeof *f);
    if (!f) ib__error(IB_ERR_OUT_OF_MEMORY, "config.pbtxt: out of memory");
    return f;
}

/* An identifier or number token (no quotes). */
static ib_status read_bare(parser *p, char **out) {
    size_t start = p->pos;
    while (p->pos < p->n && is_scalar_char((unsigned char)p->s[p->pos])) p->pos++;
    size_t len = p->pos - start;
    if (len == 0) return syntax(p, "expected a value");
    if (len > IB__PBTXT_MAX_TOKEN)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: token longer than %d bytes", p->line,
                         IB__PBTXT_MAX_TOKEN);
    char *t = ib__malloc(len + 1);
    if (!t) return ib__error(IB_ERR_OUT_OF_MEMORY, "config.pbtxt: out of memory");
    memcpy(t, p->s + start, len);
    t[len] = 0;
    *out = t;
    return IB_OK;
}

/* One or more adjacent quoted strings, concatenated, with C escapes decoded. A decoded
 * NUL is refused: values become C strings. */
static ib_status read_string(parser *p, char **out) {
    char *buf = ib__malloc(IB__PBTXT_MAX_TOKEN + 1);
    if (!buf) return ib__error(IB_ERR_OUT_OF_MEMORY, "config.pbtxt: out of memory");
    size_t len = 0;
    ib_status st = IB_OK;
    while (peek(p) == '"' || peek(p) == '\'') {
        char q = p->s[p->pos++];
        for (;;) {
            if (p->pos >= p->n || p->s[p->pos] == '\n') {
                st = ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: unterminated string", p->line);
                goto done;
            }
            unsigned char c = (unsigned char)p->s[p->pos++];
            if (c == (unsigned char)q) break;
            if (c == '\\') {
                if (p->pos >= p->n) continue; /* reported as unterminated above */
                unsigned char e = (unsigned char)p->s[p->pos++];
                switch (e) {
                case 'n': c = '\n'; break;
                case 't': c = '\t'; break;
                case 'r': c = '\r'; break;
                case '\\': case '\'': case '"': c = e; break;
                case 'x': {
                    int v = 0, k = 0;
                    while (k < 2 && p->pos < p->n) {
                        char h = p->s[p->pos];
                        int d = (h >= '0' && h <= '9') ? h - '0' : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                                : (h >= 'A' && h <= 'F') ? h - 'A' + 10 : -1;
                        if (d < 0) break;
                        v = v * 16 + d;
                        p->pos++;
                        k++;
                    }
                    if (k == 0) {
                        st = ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: bad \\x escape", p->line);
                        goto done;
                    }
                    c = (unsigned char)v;
                    break;
                }
                default:
                    if (e >= '0' && e <= '7') {
                        int v = e - '0', k = 1;
                        while (k < 3 && p->pos < p->n && p->s[p->pos] >= '0' && p->s[p->pos] <= '7') {
                            v = v * 8 + (p->s[p->pos++] - '0');
                            k++;
                        }
                        c = (unsigned char)(v & 0xff);
                    } else {
                        st = ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: unknown escape '\\%c'",
                                       p->line, e >= 0x20 && e < 0x7f ? e : '?');
                        goto done;
                    }
                }
                if (c == 0) {
                    st = ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: NUL byte in string", p->line);
                    goto done;
                }
            } else if (c == 0) {
                st = ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: NUL byte in string", p->line);
                goto done;
            }
            if (len >= IB__PBTXT_MAX_TOKEN) {
                st = ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: string longer than %d bytes",
                               p->line, IB__PBTXT_MAX_TOKEN);
                goto done;
            }
            buf[len++] = (char)c;
        }
    }
    buf[len] = 0;
    *out = buf;
    return IB_OK;
done:
    ib__free(buf);
    return st;
}

static ib_status parse_fields(parser *p, int depth, int close, ib__pb_field **out_first);

/* A message body after its opening bracket, up to and including the closing one. */
static ib_status parse_message_value(parser *p, int depth, ib__pb_field *f) {
    int open = p->s[p->pos++];
    if (depth >= IB__PBTXT_MAX_DEPTH)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: messages nested deeper than %d",
                         p->line, IB__PBTXT_MAX_DEPTH);
    f->is_message = true;
    return parse_fields(p, depth + 1, open == '{' ? '}' : '>', &f->child);
}

static ib_status parse_scalar(parser *p, ib__pb_field *f) {
    int c = peek(p);
    if (c == '"' || c == '\'') {
        f->is_string = true;
        return read_string(p, &f->value);
    }
    return read_bare(p, &f->value);
}

static ib_status append_field(parser *p, ib__pb_field ***tail, const char *name, ib__pb_field **out) {
    ib__pb_field *f = new_field(p);
    if (!f) return IB_ERR_INVALID_ARGUMENT;
    f->line = p->line;
    f->name = ib__strdup(name);
    if (!f->name) {
        ib__free(f);
        return ib__error(IB_ERR_OUT_OF_MEMORY, "config.pbtxt: out of memory");
    }
    **tail = f;
    *tail = &f->next;
    *out = f;
    return IB_OK;
}

/* Fields until `close` (or end of file when close is -1). Fields are linked as they are
 * made, so a failure part way leaves a tree the caller frees whole. */
static ib_status parse_fields(parser *p, int depth, int close, ib__pb_field **out_first) {
    ib__pb_field **tail = out_first;
    for (;;) {
        int c = peek(p);
        if (c == close) {
            if (c >= 0) p->pos++;
            return IB_OK;
        }
        if (c < 0) return syntax(p, close == '}' ? "expected '}'" : "expected '>'");
        if (c == '[') return syntax(p, "extension fields ([...]) are not supported; expected a field name");
        if (!is_ident_start(c)) return syntax(p, "expected a field name");
        char *name = NULL;
        ib_status st = read_bare(p, &name);
        if (st != IB_OK) return st;
        for (const char *q = name; *q; q++)
            if (!is_ident_start((unsigned char)*q) && !(*q >= '0' && *q <= '9')) {
                st = ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: bad field name '%.64s'", p->line,
                               name);
                ib__free(name);
                return st;
            }
        bool colon = false;
        if (peek(p) == ':') {
            colon = true;
            p->pos++;
        }
        c = peek(p);
        ib__pb_field *f = NULL;
        if (c == '{' || c == '<') {
            st = append_field(p, &tail, name, &f);
            if (st == IB_OK) st = parse_message_value(p, depth, f);
        } else if (c == '[') {
            /* Lists of messages may omit the colon ("input [ { ... } ]"). */
            p->pos++;
            if (peek(p) == ']') {
                p->pos++;
            } else {
                for (;;) {
                    st = append_field(p, &tail, name, &f);
                    if (st != IB_OK) break;
                    c = peek(p);
                    if (c == '{' || c == '<')
                        st = parse_message_value(p, depth, f);
                    else
                        st = parse_scalar(p, f);
                    if (st != IB_OK) break;
                    c = peek(p);
                    if (c == ',') {
                        p->pos++;
                        continue;
                    }
                    if (c == ']') {
                        p->pos++;
                        break;
                    }
                    st = syntax(p, "expected ',' or ']' in a list");
                    break;
                }
            }
        } else if (colon) {
            st = append_field(p, &tail, name, &f);
            if (st == IB_OK) st = parse_scalar(p, f);
        } else {
            st = syntax(p, "expected ':' or '{' after a field name");
        }
        ib__free(name);
        if (st != IB_OK) return st;
        c = peek(p);
        if (c == ',' || c == ';') p->pos++;
    }
}

void ib__pbtxt_free(ib__pb_field *f) {
    /* Siblings iteratively; children recurse, bounded by the depth limit. */
    while (f) {
        ib__pb_field *next = f->next;
        ib__pbtxt_free(f->child);
        ib__free(f->name);
        ib__free(f->value);
        ib__free(f);
        f = next;
    }
}

ib_status ib__pbtxt_parse(const char *text, size_t len, ib__pb_field **out_root) {
    if (!text && len) return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt: NULL text");
    if (len > IB__PBTXT_MAX_BYTES)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt: %zu bytes, more than the %zu allowed", len,
                         IB__PBTXT_MAX_BYTES);
    parser p = {text, len, 0, 1, 0};
    ib__pb_field *root = ib__calloc(1, sizeof *root);
    if (!root) return ib__error(IB_ERR_OUT_OF_MEMORY, "config.pbtxt: out of memory");
    root->is_message = true;
    ib_status st = parse_fields(&p, 0, -1, &root->child);
    if (st != IB_OK) {
        ib__pbtxt_free(root);
        return st;
    }
    *out_root = root;
    return IB_OK;
}

const ib__pb_field *ib__pb_find(const ib__pb_field *msg, const char *name, const ib__pb_field *after) {
    if (!msg) return NULL;
    const ib__pb_field *f = after ? after->next : msg->child;
    for (; f; f = f->next)
        if (strcmp(f->name, name) == 0) return f;
    return NULL;
}

ib_status ib__pb_int(const ib__pb_field *f, int64_t lo, int64_t hi, int64_t *out) {
    if (f->is_message || f->is_string || !f->value)
        return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: field '%s' must be an integer", f->line,
                         f->name);
    errno = 0;
    char *end = NULL;
    long long v = strtoll(f->value, &end, 0);
    if (errno || end == f->value || *end || v < lo || v > hi)
        return ib__error(IB_ERR_INVALID_ARGUMENT,
                         "config.pbtxt line %d: field '%s' is '%.64s', expected an integer in [%lld, %lld]",
                         f->line, f->name, f->value, (long long)lo, (long long)hi);
    *out = v;
    return IB_OK;
}

ib_status ib__pb_bool(const ib__pb_field *f, bool *out) {
    if (!f->is_message && !f->is_string && f->value) {
        if (!strcmp(f->value, "true") || !strcmp(f->value, "True") || !strcmp(f->value, "1")) {
            *out = true;
            return IB_OK;
        }
        if (!strcmp(f->value, "false") || !strcmp(f->value, "False") || !strcmp(f->value, "0")) {
            *out = false;
            return IB_OK;
        }
    }
    return ib__error(IB_ERR_INVALID_ARGUMENT, "config.pbtxt line %d: field '%s' must be true or false", f->line,
                     f->name);
}
