/* luastr.c — Lua string literals and comment text for generated Lua files (see luastr.h). The
 * rules follow LuaJIT's lexer (lj_lex.c): a long bracket of level n ends at the first "]", n "=",
 * "]" and drops one line break right after its opener; it turns CR, CR LF and LF CR into LF,
 * which is why text with control bytes is quoted instead. */
#include "luastr.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static void escape(struct buf *b, const char *s, size_t len, bool quote)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || (quote && c == '"')) {
            buf_putc(b, '\\');
            buf_putc(b, (char)c);
        } else if (c == '\n') {
            buf_puts(b, "\\n");
        } else if (c == '\r') {
            buf_puts(b, "\\r");
        } else if (c == '\t') {
            buf_puts(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            /* Always three digits: a digit after the escape must not join it. */
            buf_printf(b, "\\%03u", c);
        } else {
            buf_putc(b, (char)c);
        }
    }
}

void luastr_escape(struct buf *b, const char *s, size_t len)
{
    escape(b, s, len, false);
}

void luastr_quote(struct buf *b, const char *s, size_t len)
{
    buf_putc(b, '"');
    escape(b, s, len, true);
    buf_putc(b, '"');
}

void luastr_comment(struct buf *b, const char *s, size_t len)
{
    buf_puts(b, "-- ");
    escape(b, s, len, false);
    buf_putc(b, '\n');
}

/* The lowest long-bracket level n such that the text holds no "]", n "=", "]" and does not end
 * with "]" and n "=" (which the closer would complete). Level 0 is also avoided when the text
 * holds "[[", which Lua 5.1 (not LuaJIT) refuses inside [[...]]. */
static size_t bracket_level(const char *s, size_t len)
{
    /* Each level in use needs a "]" of its own, so one of 0 .. len+1 is free. */
    bool *used = xcalloc(len + 2, sizeof *used);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '[' && i + 1 < len && s[i + 1] == '[') used[0] = true;
        if (s[i] != ']') continue;
        size_t j = i + 1;
        while (j < len && s[j] == '=') j++;
        if (j == len || s[j] == ']') used[j - i - 1] = true;
    }
    size_t level = 0;
    while (used[level]) level++;
    free(used);
    return level;
}

/* Long brackets keep newline and tab as they are and any byte from 0x20 up except DEL. */
static bool long_bracket_ok(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) return false;
    }
    return true;
}

void luastr_text(struct buf *b, const char *s, size_t len)
{
    if (!long_bracket_ok(s, len)) {
        luastr_quote(b, s, len);
        return;
    }
    size_t level = bracket_level(s, len);
    buf_putc(b, '[');
    for (size_t i = 0; i < level; i++) buf_putc(b, '=');
    buf_putc(b, '[');
    /* The lexer drops a line break right after the opener: give it ours, never the text's. */
    if (len > 0 && memchr(s, '\n', len) != NULL) buf_putc(b, '\n');
    if (len > 0) buf_append(b, s, len);
    buf_putc(b, ']');
    for (size_t i = 0; i < level; i++) buf_putc(b, '=');
    buf_putc(b, ']');
}
