/* csrf.c — the cross-site request rule on every request before routing (see csrf.h). Browsers
 * send a form post or a fetch() with a "simple" Content-Type to any origin without a preflight,
 * with the user's cookies and network position: no CORS answer can stop a request that needs no
 * preflight, so requiring any other type is what makes another site's request fail before it is
 * sent (or, for an origin cors.c allows, be asked for first). */
#include "csrf.h"

#include <string.h>

#include "http.h"

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

bool csrf_refused(const char *method, size_t mlen, const char *ctype, size_t clen)
{
    if (h2o_memis(method, mlen, H2O_STRLIT("GET")) || h2o_memis(method, mlen, H2O_STRLIT("HEAD")))
        return false;
    if (ctype == NULL) return true;
    /* The media type as a browser's MIME parser reads it: up to ';', without surrounding blanks. */
    const char *semi = memchr(ctype, ';', clen);
    size_t s = 0, e = semi ? (size_t)(semi - ctype) : clen;
    while (s < e && is_blank(ctype[s])) s++;
    while (e > s && is_blank(ctype[e - 1])) e--;
    const char *t = ctype + s;
    size_t n = e - s;
    return n == 0 || h2o_lcstris(t, n, H2O_STRLIT("text/plain")) ||
           h2o_lcstris(t, n, H2O_STRLIT("application/x-www-form-urlencoded")) ||
           h2o_lcstris(t, n, H2O_STRLIT("multipart/form-data"));
}

bool csrf_allow(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    h2o_iovec_t ct = i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
    if (!csrf_refused(req->method.base, req->method.len, i < 0 ? NULL : ct.base, ct.len)) return true;
    http_send_error(req, 415, "unsupported_media_type",
                    "a request other than GET or HEAD needs Content-Type: application/json (or its "
                    "body's type, such as text/csv for /bulk), even without a body",
                    NULL, NULL);
    return false;
}
