/* sqlparam.c — rewrites the :name placeholders of a named query's SQL to $1..$n, with a small
 * lexer that knows PostgreSQL's quoting (literals, E-literals, quoted identifiers, comments,
 * dollar quotes) so that a colon inside any of them is left alone. */
#include "sqlparam.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "util.h"

/* PostgreSQL's wire protocol counts parameters in an int16. */
#define MAX_PARAMS 65535

static bool is_name_start(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_name_char(unsigned char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

/* A byte that can continue an SQL identifier or a number: PostgreSQL also allows '$' after the
 * first character and any non-ASCII letter. */
static bool is_ident_char(unsigned char c)
{
    return is_name_char(c) || c == '$' || c >= 0x80;
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static void set_err(char *err, unsigned errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, unsigned errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Index of the closing quote of a literal or identifier opened at s[start] (the quote itself),
 * or -1. A doubled quote is an escaped quote; with backslashes (E'..'), \x escapes x. */
static long find_close_quote(const char *s, size_t len, size_t start, char q, bool backslashes)
{
    for (size_t i = start + 1; i < len; i++) {
        if (backslashes && s[i] == '\\') {
            i++;
            continue;
        }
        if (s[i] == q) {
            if (i + 1 < len && s[i + 1] == q) {
                i++;
                continue;
            }
            return (long)i;
        }
    }
    return -1;
}

/* Length of a dollar-quote tag ($$ or $tag$) starting at s[i] == '$', or 0 when it is not one.
 * The tag follows identifier rules without '$'. */
static size_t dollar_tag_len(const char *s, size_t len, size_t i)
{
    size_t j = i + 1;
    if (j < len && s[j] == '$') return 2;
    if (j >= len || !(is_name_start((unsigned char)s[j]) || (unsigned char)s[j] >= 0x80)) return 0;
    while (j < len && (is_name_char((unsigned char)s[j]) || (unsigned char)s[j] >= 0x80)) j++;
    if (j < len && s[j] == '$') return j - i + 1;
    return 0;
}

/* Returns the 1-based number of name, adding it to out->names when new; -1 when there are too
 * many distinct names. */
static int param_number(struct sqlparams *out, int *cap, const char *name, size_t n)
{
    for (int k = 0; k < out->count; k++)
        if (strncmp(out->names[k], name, n) == 0 && out->names[k][n] == '\0') return k + 1;
    if (out->count >= MAX_PARAMS) return -1;
    if (out->count == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        out->names = xrealloc(out->names, (size_t)*cap * sizeof *out->names);
    }
    out->names[out->count++] = xstrndup(name, n);
    return out->count;
}

static void put_number(struct buf *b, int v)
{
    char tmp[12];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    buf_putc(b, '$');
    while (n > 0) buf_putc(b, tmp[--n]);
}

int sqlparam_rewrite(const char *sql, struct sqlparams *out, char *err, unsigned errlen)
{
    struct buf b = BUF_INIT;
    int cap = 0;
    size_t len = strlen(sql);
    size_t i = 0;
    const char *what = NULL; /* set when an unterminated construct is found */
    size_t what_at = 0;

    out->sql = NULL;
    out->names = NULL;
    out->count = 0;
    buf_reserve(&b, len + 16);

    while (i < len) {
        unsigned char c = (unsigned char)sql[i];
        size_t start = i;

        if (c == '\'' || c == '"') {
            /* '..' literal (standard_conforming_strings) or "quoted identifier". */
            long end = find_close_quote(sql, len, i, (char)c, false);
            if (end < 0) {
                what = c == '\'' ? "quoted string" : "quoted identifier";
                what_at = i;
                break;
            }
            i = (size_t)end + 1;
        } else if ((c == 'E' || c == 'e') && i + 1 < len && sql[i + 1] == '\'') {
            /* E'..' with backslash escapes; reached only at the start of a token, because the
             * identifier branch below swallows letters that follow other identifier bytes. */
            long end = find_close_quote(sql, len, i + 1, '\'', true);
            if (end < 0) {
                what = "quoted string";
                what_at = i;
                break;
            }
            i = (size_t)end + 1;
        } else if (c == '-' && i + 1 < len && sql[i + 1] == '-') {
            while (i < len && sql[i] != '\n') i++;
        } else if (c == '/' && i + 1 < len && sql[i + 1] == '*') {
            int depth = 1;
            i += 2;
            while (i < len && depth > 0) {
                if (sql[i] == '/' && i + 1 < len && sql[i + 1] == '*') {
                    depth++;
                    i += 2;
                } else if (sql[i] == '*' && i + 1 < len && sql[i + 1] == '/') {
                    depth--;
                    i += 2;
                } else {
                    i++;
                }
            }
            if (depth > 0) {
                what = "block comment";
                what_at = start;
                break;
            }
        } else if (c == '$') {
            if (i + 1 < len && is_digit((unsigned char)sql[i + 1])) {
                set_err(err, errlen, "positional $n placeholders are not supported; use :name");
                goto fail;
            }
            size_t tag = dollar_tag_len(sql, len, i);
            if (tag == 0) {
                i++;
            } else {
                const char *body = sql + i + tag;
                const char *close = NULL;
                for (const char *p = body; (size_t)(p - sql) + tag <= len; p++) {
                    p = memchr(p, '$', len - (size_t)(p - sql));
                    if (p == NULL || (size_t)(p - sql) + tag > len) break;
                    if (memcmp(p, sql + i, tag) == 0) {
                        close = p;
                        break;
                    }
                }
                if (close == NULL) {
                    what = "dollar-quoted string";
                    what_at = i;
                    break;
                }
                i = (size_t)(close - sql) + tag;
            }
        } else if (c == ':') {
            if (i + 1 < len && (sql[i + 1] == ':' || sql[i + 1] == '=')) {
                i += 2; /* ::cast or := */
            } else if (i + 1 < len && is_name_start((unsigned char)sql[i + 1]) &&
                       !(i > 0 && is_ident_char((unsigned char)sql[i - 1]))) {
                /* A placeholder. A colon glued to an identifier or number on its left (an
                 * array slice such as a[lo:hi]) is not one. */
                size_t j = i + 1;
                while (j < len && is_name_char((unsigned char)sql[j])) j++;
                int num = param_number(out, &cap, sql + i + 1, j - i - 1);
                if (num < 0) {
                    set_err(err, errlen, "too many distinct parameters (at most %d)", MAX_PARAMS);
                    goto fail;
                }
                put_number(&b, num);
                i = j;
                continue;
            } else {
                i++;
            }
        } else if (is_ident_char(c)) {
            /* A whole identifier, keyword or number, so that E' inside a word such as "type'"
             * and a '$' inside an identifier are not mistaken for token starts. */
            while (i < len && is_ident_char((unsigned char)sql[i])) i++;
        } else {
            i++;
        }
        buf_append(&b, sql + start, i - start);
    }

    if (what != NULL) {
        set_err(err, errlen, "unterminated %s at position %zu", what, what_at + 1);
        goto fail;
    }
    b.data[b.len] = '\0'; /* buf_reserve leaves an empty buffer unterminated */
    out->sql = buf_steal(&b);
    return 0;

fail:
    buf_free(&b);
    sqlparam_free(out);
    return -1;
}

void sqlparam_free(struct sqlparams *p)
{
    for (int k = 0; k < p->count; k++) free(p->names[k]);
    free(p->names);
    free(p->sql);
    p->names = NULL;
    p->sql = NULL;
    p->count = 0;
}
