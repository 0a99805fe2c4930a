/* urlpath.c — splits and decodes a raw request path (see urlpath.h). Decoding happens exactly
 * once, after the split: "%252F" is the three characters "%2F", never a separator. */
#include "urlpath.h"

#include <string.h>

#include "util.h"

size_t urlpath_max_segments(const char *path, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++) n += path[i] == '/';
    return n;
}

long urlpath_decode(const char *s, size_t n, char *out, bool plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = plus_is_space && s[i] == '+' ? ' ' : s[i];
            continue;
        }
        int hi, lo;
        if (i + 2 >= n || (hi = hex_digit(s[i + 1])) < 0 || (lo = hex_digit(s[i + 2])) < 0) return -1;
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    return (long)o;
}

static bool is_dots(const char *s, size_t n, size_t dots)
{
    return n == dots && memcmp(s, "..", dots) == 0;
}

int urlpath_split(const char *path, size_t len, char *out, struct urlpath *p)
{
    size_t i = len > 0 && path[0] == '/' ? 1 : 0, o = 0;
    p->n = 0;
    for (;;) {
        const char *slash = memchr(path + i, '/', len - i);
        size_t end = slash ? (size_t)(slash - path) : len;
        long n = urlpath_decode(path + i, end - i, out + o, false);
        if (n < 0) {
            p->n = 0;
            return -1;
        }
        const char *seg = out + o;
        bool last = slash == NULL;
        if (is_dots(seg, (size_t)n, 1) || is_dots(seg, (size_t)n, 2)) {
            if (n == 2 && p->n > 0) p->n--;
            if (last) { /* "/a/." is "/a/": the path still ends in a separator */
                p->segs[p->n] = out + o;
                p->lens[p->n++] = 0;
            }
        } else {
            p->segs[p->n] = seg;
            p->lens[p->n++] = (size_t)n;
            o += (size_t)n;
        }
        if (last) break;
        i = end + 1;
    }
    return 0;
}
