/* etag.c — ETags of readonly answers and If-None-Match. The tag is a hash of the exact bytes of
 * the body (core/hash64.c), so the same rows give the same tag on every worker and instance. When
 * the answer is gzip-encoded the tag is sent weak (answerfilter.c): the bytes then differ. */
#include "etag.h"

#include <string.h>

#include "hash64.h"

static bool blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Skips a leading W/ (weak) of an entity tag. */
static void strip_weak(const char **s, size_t *n)
{
    if (*n >= 2 && (*s)[0] == 'W' && (*s)[1] == '/') {
        *s += 2;
        *n -= 2;
    }
}

bool etag_list_matches(const char *list, size_t n, const char *tag, size_t tlen)
{
    strip_weak(&tag, &tlen);
    size_t i = 0;
    while (i < n) {
        while (i < n && (blank(list[i]) || list[i] == ',')) i++;
        if (i >= n) break;
        if (list[i] == '*') return true;
        const char *t = list + i;
        size_t start = i;
        if (n - i >= 2 && list[i] == 'W' && list[i + 1] == '/') i += 2;
        if (i < n && list[i] == '"') { /* a quoted tag may not hold a comma, so find its close */
            const char *close = memchr(list + i + 1, '"', n - i - 1);
            i = close ? (size_t)(close - list) + 1 : n;
        } else {
            while (i < n && list[i] != ',' && !blank(list[i])) i++;
        }
        size_t len = i - start;
        strip_weak(&t, &len);
        if (len == tlen && memcmp(t, tag, len) == 0) return true;
        while (i < n && list[i] != ',') i++;
    }
    return false;
}

bool etag_set(h2o_req_t *req, const char *body, size_t len)
{
    char *tag = h2o_mem_alloc_pool(&req->pool, 19);
    tag[0] = '"';
    hash64_hex(hash64(body, len), tag + 1);
    tag[17] = '"';
    tag[18] = '\0';
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, tag, 18);
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, i)) >= 0;) {
        h2o_iovec_t v = req->headers.entries[i].value;
        if (etag_list_matches(v.base, v.len, tag, 18)) return true;
    }
    return false;
}
