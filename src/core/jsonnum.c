/* jsonnum.c — marks the number literals jansson cannot hold exactly. A marked literal becomes the
 * JSON string "\u0000#<literal>": text a client could send too, but one that only ever stands for
 * that same number, so forging it gains nothing. */
#include "jsonnum.h"

#include <string.h>

#include "buf.h"

#define MARK       "\\u0000#" /* as JSON text */
#define MARK_LEN   2          /* as the decoded string: NUL, '#' */
#define MARK_EXTRA 9          /* bytes a mark adds to the text: two quotes and MARK */

/* The end of the JSON number at p (grammar -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?), or
 * NULL when p does not start one. *plain: no fraction nor exponent; *digits: integer digits. */
static const char *number_end(const char *p, const char *end, bool *plain, size_t *digits)
{
    const char *s = p;
    if (s < end && *s == '-') s++;
    const char *int_start = s;
    if (s < end && *s == '0')
        s++;
    else if (s < end && *s >= '1' && *s <= '9')
        while (s < end && *s >= '0' && *s <= '9') s++;
    else
        return NULL;
    *digits = (size_t)(s - int_start);
    *plain = true;
    if (s < end && *s == '.') {
        const char *f = ++s;
        while (s < end && *s >= '0' && *s <= '9') s++;
        if (s == f) return NULL;
        *plain = false;
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < end && (*s == '+' || *s == '-')) s++;
        const char *x = s;
        while (s < end && *s >= '0' && *s <= '9') s++;
        if (s == x) return NULL;
        *plain = false;
    }
    return s;
}

json_t *jsonnum_load(const char *text, size_t len, size_t flags, json_error_t *error)
{
    /* With JSON_DISABLE_EOF_CHECK only the first value is read: the scan stops where it ends, so
     * a caller reading value after value from one body does not rescan the rest each time. */
    bool first_only = (flags & JSON_DISABLE_EOF_CHECK) != 0;
    const char *p = text, *end = text + len, *copied = text;
    struct buf marked = BUF_INIT;
    size_t nmarked = 0;
    int depth = 0;
    bool in_string = false;
    while (p < end) {
        char c = *p;
        if (in_string) {
            if (c == '\\' && p + 1 < end) {
                p += 2;
                continue;
            }
            p++;
            if (c != '"') continue;
            in_string = false;
            if (first_only && depth == 0) break;
            continue;
        }
        if (c == '"') {
            in_string = true;
            p++;
            continue;
        }
        if (c == '{' || c == '[') depth++;
        if (c == '}' || c == ']') depth--;
        if (c != '-' && !(c >= '0' && c <= '9')) {
            p++;
            if (first_only && depth <= 0 && (c == '}' || c == ']' || (c >= 'a' && c <= 'z'))) {
                while (p < end && *p >= 'a' && *p <= 'z') p++; /* true, false, null */
                break;
            }
            continue;
        }
        bool plain;
        size_t digits;
        const char *e = number_end(p, end, &plain, &digits);
        if (e == NULL) break; /* malformed: jansson says where */
        if (!plain || digits > 18) {
            buf_append(&marked, copied, (size_t)(p - copied));
            buf_puts(&marked, "\"" MARK);
            buf_append(&marked, p, (size_t)(e - p));
            buf_putc(&marked, '"');
            copied = e;
            nmarked++;
        }
        p = e;
        if (first_only && depth == 0) break;
    }
    if (nmarked == 0) return json_loadb(text, len, flags | JSON_ALLOW_NUL, error);
    /* the first value ends at p: what follows is not read, so it need not be copied */
    buf_append(&marked, copied, (size_t)((first_only ? p : end) - copied));
    json_t *v = json_loadb(marked.data, marked.len, flags | JSON_ALLOW_NUL, error);
    buf_free(&marked);
    if (v == NULL) /* the error's line and column must point into what the client sent */
        json_decref(json_loadb(text, len, flags | JSON_ALLOW_NUL, error));
    else if (first_only) /* every mark lies inside the value: where it ended, in the original */
        error->position -= nmarked * MARK_EXTRA;
    return v;
}

bool jsonnum_literal(const json_t *v, const char **lit, size_t *len)
{
    if (!json_is_string(v)) return false;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n <= MARK_LEN || s[0] != '\0' || s[1] != '#') return false;
    bool plain;
    size_t digits;
    /* only what jsonnum_load marks: a forged "\u0000#12" stays a string */
    if (number_end(s + MARK_LEN, s + n, &plain, &digits) != s + n || (plain && digits <= 18)) return false;
    *lit = s + MARK_LEN;
    *len = n - MARK_LEN;
    return true;
}

bool jsonnum_is_integral(const char *lit, size_t len)
{
    return memchr(lit, '.', len) == NULL && memchr(lit, 'e', len) == NULL && memchr(lit, 'E', len) == NULL;
}
