/* httpheader.h — the rules a response header written by operator code (a Lua handler's third
 * return value) must meet before it reaches h2o: a token for a name, no control characters in
 * the value, and none of the headers the gateway and h2o write themselves. */
#ifndef SLUICE_HTTPHEADER_H
#define SLUICE_HTTPHEADER_H

#include <stddef.h>

enum httpheader_check {
    HTTPHEADER_OK = 0,
    HTTPHEADER_BAD_NAME,  /* empty, or a byte that is not an RFC 7230 tchar */
    HTTPHEADER_BAD_VALUE, /* a control character (CR, LF, NUL, ... DEL); HTAB is allowed */
    HTTPHEADER_RESERVED,  /* a header the gateway or h2o sets itself (framing, Content-Type, ...) */
};

/* Checks one header; the name is compared without regard to case. Pure: no allocation. */
enum httpheader_check httpheader_check(const char *name, size_t nlen, const char *value, size_t vlen);

/* A short English phrase for a refusal, e.g. "is not a valid header name". Static storage. */
const char *httpheader_problem(enum httpheader_check c);

/* Writes s[0..n) into dst (dstlen > 0, always NUL-terminated) for a log line: bytes outside
 * printable ASCII and '"' / '\\' become \xNN, and it is cut with "..." past about dstlen - 4
 * bytes. Returns dst. */
char *httpheader_printable(char *dst, size_t dstlen, const char *s, size_t n);

#endif
