/* httpheader.c — checks a response header from operator code before it reaches h2o, which
 * writes names and values as given: a CR or LF in either would end the header early and let the
 * rest of the value become headers (or a body) of its own. */
#include "httpheader.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* RFC 7230 3.2.6: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_"
 * / "`" / "|" / "~" / DIGIT / ALPHA */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Written by h2o on every answer (date, server, connection, content-length), chosen by h2o
 * (transfer-encoding), set by the gateway (content-type: answers are JSON), or hop-by-hop
 * headers that describe the connection rather than the answer. A second copy from a handler
 * would contradict the first: two Content-Length values are a request-smuggling primitive. */
static const char *const reserved[] = {
    "connection",        "content-length", "content-type", "date",    "keep-alive",
    "proxy-connection",  "server",         "te",           "trailer", "upgrade",
    "transfer-encoding",
};

enum httpheader_check httpheader_check(const char *name, size_t nlen, const char *value, size_t vlen)
{
    if (nlen == 0) return HTTPHEADER_BAD_NAME;
    for (size_t i = 0; i < nlen; i++)
        if (!is_tchar((unsigned char)name[i])) return HTTPHEADER_BAD_NAME;
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (strlen(reserved[i]) == nlen && strncasecmp(reserved[i], name, nlen) == 0)
            return HTTPHEADER_RESERVED;
    /* field-value = *( VCHAR / obs-text / SP / HTAB ): every byte from 0x20 up except DEL */
    for (size_t i = 0; i < vlen; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7F) return HTTPHEADER_BAD_VALUE;
    }
    return HTTPHEADER_OK;
}

const char *httpheader_problem(enum httpheader_check c)
{
    switch (c) {
    case HTTPHEADER_OK:
        return "is valid";
    case HTTPHEADER_BAD_NAME:
        return "is not a valid header name";
    case HTTPHEADER_BAD_VALUE:
        return "has a control character in its value";
    case HTTPHEADER_RESERVED:
        return "is set by the gateway itself";
    }
    return "is refused";
}

char *httpheader_printable(char *dst, size_t dstlen, const char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool plain = c >= 0x20 && c < 0x7F && c != '"' && c != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need + 4 > dstlen) { /* room for "..." and the NUL */
            if (o + 4 <= dstlen) {
                memcpy(dst + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (plain)
            dst[o++] = (char)c;
        else
            o += (size_t)snprintf(dst + o, dstlen - o, "\\x%02x", c);
    }
    dst[o < dstlen ? o : dstlen - 1] = '\0';
    return dst;
}
