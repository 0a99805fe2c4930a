/* http.h — what every endpoint shares: JSON responses and errors, Retry-After, the content type,
 * the query string. */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <h2o.h>

#include "buf.h"
#include <stdbool.h>
#include <stdint.h>

/* Sends body (copied) with Content-Type application/json. An error body ({"error":{..}}, status
 * 400 or more) gets the request's "request_id". */
void http_send_json(h2o_req_t *req, int status, const char *body, size_t len);
/* Sends a readonly answer: 200 with an ETag of body, or 304 without a body when the request's
 * If-None-Match names that tag (etag.c). */
void http_send_readonly_json(h2o_req_t *req, const char *body, size_t len);
/* body with "request_id":"<the request's id>" added to its error object when it is
 * {"error":{...}}; otherwise body itself. The result is in the request's pool (or is body). */
h2o_iovec_t http_error_with_id(h2o_req_t *req, const char *body, size_t len);
/* Sends body (copied) as it is; the caller has set its Content-Type. */
void http_send_typed(h2o_req_t *req, int status, const char *body, size_t len);
/* Appends {"error":{"code","message"[,"query"][,"sqlstate"]}} to b; query and sqlstate may be
 * NULL. The one shape every error body has (http_send_json adds "request_id" as it sends it). */
void http_error_body(struct buf *b, const char *code, const char *message, const char *query,
                     const char *sqlstate);
/* Sends {"error":{"code","message"[,"query"][,"sqlstate"]}}; query and sqlstate may be NULL.
 * A 503 carries Retry-After. */
void http_send_error(h2o_req_t *req, int status, const char *code, const char *message, const char *query,
                     const char *sqlstate);

/* Sets Retry-After: seconds (at least 1) on the response, unless it has one already. */
void http_retry_after(h2o_req_t *req, int seconds);

/* The status's canonical error code (docs/http-api.md, "Errors"), e.g. 409 -> "conflict". */
const char *http_error_code(int status);
/* True when the request has Content-Type application/json (parameters ignored). */
bool http_is_json(h2o_req_t *req);
/* Percent-decodes a query-string component s[0..n) into the request pool ('+' is a space, as in
 * form encoding; path segments are decoded by urlpath_split instead). Returns NULL on a bad
 * escape. */
char *http_unescape(h2o_req_t *req, const char *s, size_t n, size_t *outlen);

/* Reading your writes (docs/high-availability.md): a write's answer carries Sluice-LSN, a read
 * that sends it back is served where that WAL position has been replayed. */
#define HTTP_LSN_MALFORMED                                                                                   \
    "the Sluice-LSN header must be a WAL position such as 0/16B3748, as a write's answer carries it"
/* Sets Sluice-LSN: lsn on the response; lsn 0 (unknown) sets nothing. */
void http_set_lsn(h2o_req_t *req, uint64_t lsn);
/* The request's Sluice-LSN: 1 with *lsn (the largest, when it came several times or as a comma
 * list), 0 without one, -1 when one is not a WAL position (answer 400 HTTP_LSN_MALFORMED). */
int http_lsn_token(h2o_req_t *req, uint64_t *lsn);

/* Calls fn for each key=value pair of the query string, both percent-decoded into the request
 * pool (a key without '=' has the value ""; empty pairs are skipped). Stops at the first non-zero
 * return of fn and returns it; returns -1 on a malformed escape, 0 after the last pair. */
int http_query_foreach(h2o_req_t *req,
                       int (*fn)(void *arg, const char *key, size_t klen, const char *val, size_t vlen),
                       void *arg);

#endif
