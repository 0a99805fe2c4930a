/* http.c — what every endpoint shares: JSON success and error responses, Retry-After, the
 * content type, and the query string's percent-decoding. (Routing is router.c's.) */
#include "http.h"

#include <stdio.h>
#include <string.h>

#include "etag.h"
#include "jsonw.h"
#include "lsn.h"
#include "reqinfo.h"
#include "urlpath.h"
#include "worker.h"

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Entity";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        break;
    }
    return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
}

const char *http_error_code(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 401:
        return "unauthorized";
    case 403:
        return "forbidden";
    case 404:
        return "not_found";
    case 405:
        return "method_not_allowed";
    case 409:
        return "conflict";
    case 413:
    case 414:
    case 431:
        return "too_large";
    case 415:
        return "unsupported_media_type";
    case 503:
        return "unavailable";
    case 504:
        return "timeout";
    default:
        return "internal";
    }
}

h2o_iovec_t http_error_with_id(h2o_req_t *req, const char *body, size_t len)
{
    static const char head[] = "{\"error\":{";
    if (len < sizeof head + 1 || memcmp(body, head, sizeof head - 1) != 0 ||
        memcmp(body + len - 2, "}}", 2) != 0)
        return h2o_iovec_init(body, len);
    const char *id = reqinfo_of(req)->id; /* [A-Za-z0-9._:-] only: nothing to escape */
    size_t idlen = strlen(id), n = len + idlen + sizeof ",\"request_id\":\"\"" - 1;
    char *out = h2o_mem_alloc_pool(&req->pool, n);
    char *p = out;
    memcpy(p, body, len - 2);
    p += len - 2;
    p += sprintf(p, ",\"request_id\":\"%s\"", id);
    memcpy(p, "}}", 2);
    return h2o_iovec_init(out, n);
}

void http_send_json(h2o_req_t *req, int status, const char *body, size_t len)
{
    if (status >= 400) {
        h2o_iovec_t b = http_error_with_id(req, body, len);
        body = b.base;
        len = b.len;
    }
    req->res.status = status;
    req->res.reason = reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("application/json"));
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void http_send_readonly_json(h2o_req_t *req, const char *body, size_t len)
{
    if (!etag_set(req, body, len)) {
        http_send_json(req, 200, body, len);
        return;
    }
    req->res.status = 304;
    req->res.reason = "Not Modified";
    h2o_send_inline(req, NULL, 0);
}

void http_error_body(struct buf *b, const char *code, const char *message, const char *query,
                     const char *sqlstate)
{
    buf_puts(b, "{\"error\":{\"code\":");
    jsonw_string(b, code, strlen(code));
    buf_puts(b, ",\"message\":");
    jsonw_string(b, message, strlen(message));
    if (query) {
        buf_puts(b, ",\"query\":");
        jsonw_string(b, query, strlen(query));
    }
    if (sqlstate) {
        buf_puts(b, ",\"sqlstate\":");
        jsonw_string(b, sqlstate, strnlen(sqlstate, 5));
    }
    buf_puts(b, "}}");
}

void http_send_error(h2o_req_t *req, int status, const char *code, const char *message, const char *query,
                     const char *sqlstate)
{
    struct buf *b = &worker_of(req)->out;
    buf_reset(b);
    http_error_body(b, code, message, query, sqlstate);
    if (status == 503) http_retry_after(req, 1);
    http_send_json(req, status, b->data, b->len);
}

void http_retry_after(h2o_req_t *req, int seconds)
{
    if (h2o_find_header(&req->res.headers, H2O_TOKEN_RETRY_AFTER, -1) >= 0) return;
    char tmp[16];
    int n = snprintf(tmp, sizeof tmp, "%d", seconds < 1 ? 1 : seconds);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL,
                   h2o_strdup(&req->pool, tmp, (size_t)n).base, (size_t)n);
}

void http_set_lsn(h2o_req_t *req, uint64_t lsn)
{
    if (lsn == 0) return;
    char text[LSN_TEXT];
    lsn_format(text, lsn);
    size_t n = strlen(text);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sluice-lsn"), 0, "Sluice-LSN",
                          h2o_strdup(&req->pool, text, n).base, n);
}

int http_lsn_token(h2o_req_t *req, uint64_t *lsn)
{
    int found = 0;
    *lsn = 0;
    for (ssize_t i = -1; (i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("sluice-lsn"), i)) >= 0;) {
        uint64_t v;
        h2o_iovec_t value = req->headers.entries[i].value;
        if (!lsn_parse_list(value.base, value.len, &v)) return -1;
        if (v > *lsn) *lsn = v;
        found = 1;
    }
    return found;
}

bool http_is_json(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0) return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    size_t n = 0;
    while (n < v.len && v.base[n] != ';' && v.base[n] != ' ') n++;
    return h2o_lcstris(v.base, n, H2O_STRLIT("application/json"));
}

char *http_unescape(h2o_req_t *req, const char *s, size_t n, size_t *outlen)
{
    char *out = h2o_mem_alloc_pool(&req->pool, n + 1);
    long len = urlpath_decode(s, n, out, true);
    *outlen = 0;
    if (len < 0) return NULL;
    out[len] = '\0';
    *outlen = (size_t)len;
    return out;
}

int http_query_foreach(h2o_req_t *req,
                       int (*fn)(void *arg, const char *key, size_t klen, const char *val, size_t vlen),
                       void *arg)
{
    if (req->query_at == SIZE_MAX) return 0;
    const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    for (; p < end; p++) {
        const char *amp = memchr(p, '&', (size_t)(end - p)), *stop = amp ? amp : end;
        if (stop > p) {
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            size_t klen, vlen = 0;
            char *key = http_unescape(req, p, (size_t)((eq ? eq : stop) - p), &klen);
            char *val = eq ? http_unescape(req, eq + 1, (size_t)(stop - eq - 1), &vlen) : "";
            if (key == NULL || val == NULL) return -1;
            int rc = fn(arg, key, klen, val, vlen);
            if (rc != 0) return rc;
        }
        p = stop;
    }
    return 0;
}

void http_send_typed(h2o_req_t *req, int status, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason(status);
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}
