/* jsonw.c — JSON strings: UTF-8 checked, escaped, written straight into the caller's buffer
 * (this runs for every string of every response: no allocation and no printf). */
#include "jsonw.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- strings ---- */

/* 0: copied as is; 1: needs a backslash escape; 2: first byte of a multi-byte sequence (or an
 * invalid byte), checked by utf8_len. */
static const unsigned char char_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

static inline bool cont(unsigned char c)
{
    return (c & 0xC0) == 0x80;
}

/* Length of the well-formed UTF-8 sequence at s (Unicode table 3-7: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 when s[0] does not start one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c >= 0xC2 && c <= 0xDF) return n >= 2 && cont(s[1]) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || !cont(s[1]) || !cont(s[2])) return 0;
        if (c == 0xE0 && s[1] < 0xA0) return 0;
        if (c == 0xED && s[1] > 0x9F) return 0;
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || !cont(s[1]) || !cont(s[2]) || !cont(s[3])) return 0;
        if (c == 0xF0 && s[1] < 0x90) return 0;
        if (c == 0xF4 && s[1] > 0x8F) return 0;
        return 4;
    }
    return 0;
}

bool jsonw_utf8_valid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_len(s + i, n - i);
        if (k == 0) return false;
        i += k;
    }
    return true;
}

static const char hexdig[] = "0123456789abcdef";

/* The string body without quotes. */
static void put_escaped(struct buf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0, run = 0;
    buf_need(b, n);
    while (i < n) {
        unsigned char c = s[i];
        if (char_class[c] == 0) {
            i++;
            continue;
        }
        if (char_class[c] == 2) {
            size_t k = utf8_len(s + i, n - i);
            if (k > 0) {
                i += k;
                continue;
            }
        }
        buf_put_raw(b, s + run, i - run);
        switch (c) {
        case '"':
            BUF_PUTLIT(b, "\\\"");
            break;
        case '\\':
            BUF_PUTLIT(b, "\\\\");
            break;
        case '\b':
            BUF_PUTLIT(b, "\\b");
            break;
        case '\f':
            BUF_PUTLIT(b, "\\f");
            break;
        case '\n':
            BUF_PUTLIT(b, "\\n");
            break;
        case '\r':
            BUF_PUTLIT(b, "\\r");
            break;
        case '\t':
            BUF_PUTLIT(b, "\\t");
            break;
        default:
            if (c < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hexdig[c >> 4], hexdig[c & 15]};
                buf_put_raw(b, u, sizeof u);
            } else {
                BUF_PUTLIT(b, "\xEF\xBF\xBD"); /* U+FFFD for one invalid byte */
            }
        }
        i++;
        run = i;
    }
    buf_put_raw(b, s + run, n - run);
}

size_t jsonw_string_size(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t size = n + 2;
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (char_class[c] == 2) {
            size_t k = utf8_len(s + i, n - i);
            i += k > 0 ? k : 1;
            size += k > 0 ? 0 : 2; /* one invalid byte -> U+FFFD, three bytes */
            continue;
        }
        if (char_class[c] == 1)
            size += c != 0 && strchr("\"\\\b\f\n\r\t", c) != NULL ? 1 : 5; /* \n or \u00XX */
        i++;
    }
    return size;
}

static void put_string(struct buf *b, const char *s, size_t n)
{
    buf_need(b, n + 2);
    b->data[b->len++] = '"';
    put_escaped(b, s, n);
    buf_putc_raw(b, '"');
}

void jsonw_string(struct buf *b, const char *s, size_t n)
{
    put_string(b, s, n);
    buf_terminate(b);
}
