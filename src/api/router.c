/* router.c — which endpoint serves a request: the limits every request meets first, then the
 * fixed paths (/query, /bulk, /batch, /events, /health, /metrics, /openapi.json, /admin), Lua handler
 * routes and the route aliases of named queries. */
#include "router.h"

#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "auth.h"
#include "batch.h"
#include "copy.h"
#include "cors.h"
#include "csrf.h"
#include "events.h"
#include "h2reset.h"
#include "handler.h"
#include "health.h"
#include "http.h"
#include "metrics.h"
#include "openapi.h"
#include "query.h"
#include "reqinfo.h"
#include "reqstats.h"
#include "server.h"
#include "urlpath.h"
#include "worker.h"

static bool path_is(h2o_iovec_t path, const char *lit)
{
    size_t n = strlen(lit);
    return path.len == n && memcmp(path.base, lit, n) == 0;
}

static bool path_has_prefix(h2o_iovec_t path, const char *lit)
{
    size_t n = strlen(lit);
    return path.len > n && memcmp(path.base, lit, n) == 0;
}

/* The segments of the request's path, decoded once from the raw target (h2o's path_normalized
 * is decoded already: decoding it again turned "%2527" into "'" and "a%2Bb" into "a b", and it has
 * split "%2F" into two segments). Returns false on a malformed escape. */
static bool split_path(h2o_req_t *req, struct urlpath *segs)
{
    size_t len = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    size_t max = urlpath_max_segments(req->path.base, len);
    segs->segs = h2o_mem_alloc_pool(&req->pool, max * sizeof *segs->segs);
    segs->lens = h2o_mem_alloc_pool(&req->pool, max * sizeof *segs->lens);
    char *out = h2o_mem_alloc_pool(&req->pool, len + 1);
    return urlpath_split(req->path.base, len, out, segs) == 0;
}

/* Route aliases: "METHOD /path/{param}" of named queries. */
static int route_alias(struct worker *w, h2o_req_t *req, const struct urlpath *path)
{
    const char *vals[16];
    size_t lens[16];
    bool path_matched = false;
    for (int i = 0; i < w->reg->nqueries; i++) {
        struct query_def *q = w->reg->queries[i];
        if (q->route == NULL) continue;
        int n = route_match(q->route, path, vals, lens, 16);
        if (n < 0) continue;
        path_matched = true;
        const char *m = q->route->method;
        bool head_as_get =
            strcmp(m, "GET") == 0 && h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
        if (!h2o_memis(req->method.base, req->method.len, m, strlen(m)) && !head_as_get) continue;
        reqstats_name(req, "query", q->name);
        return query_handle(w, req, q, vals, lens, n);
    }
    if (path_matched) {
        /* Allow lists every method some alias takes on this path. */
        char allow[64] = "";
        for (int i = 0; i < w->reg->nqueries; i++) {
            struct query_def *q = w->reg->queries[i];
            if (q->route == NULL || route_match(q->route, path, vals, lens, 16) < 0 ||
                strstr(allow, q->route->method) != NULL ||
                strlen(allow) + strlen(q->route->method) + 3 > sizeof allow)
                continue;
            if (allow[0]) strcat(allow, ", ");
            strcat(allow, q->route->method);
        }
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
                       h2o_strdup(&req->pool, allow, SIZE_MAX).base, strlen(allow));
        http_send_error(req, 405, "method_not_allowed", "method not allowed on this route", NULL, NULL);
        return 0;
    }
    return -1;
}

/* The limits every request meets before routing (docs/http-api.md, "Errors"). Returns false once it has
 * answered: 414 for a request target past max_url_bytes, 431 for more header lines than max_headers
 * or more header bytes than max_header_bytes, 400 for more than max_params query-string
 * items, 503 + Retry-After when the worker already has max_inflight requests in progress (probes
 * and metrics are exempt, so an overloaded worker still reports). */
static bool within_limits(struct worker *w, h2o_req_t *req, h2o_iovec_t path)
{
    const struct config *cfg = worker_config(w);
    if (req->path.len > cfg->max_url_bytes) {
        http_send_error(req, 414, "too_large", "the URL is longer than max_url_bytes", NULL, NULL);
        return false;
    }
    if (req->headers.size > (size_t)cfg->max_headers) {
        http_send_error(req, 431, "too_large", "the request has more header lines than max_headers", NULL,
                        NULL);
        return false;
    }
    size_t header_bytes = 0;
    for (size_t i = 0; i < req->headers.size; i++)
        header_bytes +=
            req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4; /* ": ", CRLF */
    if (header_bytes > cfg->max_header_bytes) {
        http_send_error(req, 431, "too_large", "the request headers are larger than max_header_bytes", NULL,
                        NULL);
        return false;
    }
    if (req->query_at != SIZE_MAX) {
        size_t items = 1;
        for (size_t i = req->query_at + 1; i < req->path.len; i++) items += req->path.base[i] == '&';
        if (items > (size_t)cfg->max_params) {
            http_send_error(req, 400, "bad_request", "the query string has more than max_params parameters",
                            NULL, NULL);
            return false;
        }
    }
    if (w->inflight >= cfg->max_inflight && !path_is(path, "/metrics") && !path_is(path, "/health") &&
        !path_has_prefix(path, "/health/")) {
        http_send_error(req, 503, "unavailable", "too many requests in progress: retry later", NULL, NULL);
        return false;
    }
    return true;
}

/* The endpoint label of the fixed paths (reqstats.h); other paths under them stay unknown. */
static void name_fixed(h2o_req_t *req, h2o_iovec_t path)
{
    static const char *const fixed[] = {"/batch",         "/health",       "/health/live",
                                        "/health/ready",  "/metrics",      "/openapi.json",
                                        "/admin/queries", "/admin/reload", NULL};
    for (const char *const *f = fixed; *f; f++)
        if (path_is(path, *f)) {
            reqstats_name(req, *f + 1, NULL);
            return;
        }
    if (path_has_prefix(path, "/admin/explain/")) reqstats_name(req, "admin/explain", NULL);
}

/* Routes req (router_on_req without the log context). */
static int route(struct worker *w, h2o_req_t *req)
{
    h2o_iovec_t path = req->path_normalized;
    if (!h2reset_admit(w, req)) return 0;
    /* Shutting down: each answer closes its connection, so that a client's next request opens a
     * new one, which a load balancer sends to another instance. */
    if (__atomic_load_n(&w->srv->draining, __ATOMIC_RELAXED)) req->http1_is_persistent = 0;

    if (req->entity.base != NULL && req->entity.len > worker_config(w)->max_body_bytes) {
        http_send_error(req, 413, "too_large", "the request body is larger than max_body_bytes", NULL, NULL);
        return 0;
    }
    if (!within_limits(w, req, path)) return 0;
    if (cors_preflight(req, &worker_config(w)->cors)) return 0; /* a browser asks before it sends */
    if (!csrf_allow(req)) return 0; /* before any endpoint can act on another site's request */

    if (path_has_prefix(path, "/query/")) {
        const char *name = path.base + 7;
        size_t n = path.len - 7;
        struct query_def *q = memchr(name, '/', n) ? NULL : registry_find(w->reg, name, n);
        if (q == NULL) {
            http_send_error(req, 404, "not_found", "no such query", NULL, NULL);
            return 0;
        }
        reqstats_name(req, "query", q->name);
        return query_handle(w, req, q, NULL, NULL, 0);
    }
    if (path_has_prefix(path, "/bulk/")) {
        struct bulk_def *d = registry_find_bulk(w->reg, path.base + 6, path.len - 6);
        if (d == NULL) {
            http_send_error(req, 404, "not_found", "no such bulk endpoint", NULL, NULL);
            return 0;
        }
        reqstats_name(req, "bulk", d->name);
        return copy_handle(w, req, d);
    }
    name_fixed(req, path);
    if (path_is(path, "/batch")) return batch_handle(w, req);
    if (path_has_prefix(path, "/events/")) return events_handle(w, req, path.base + 8, path.len - 8);
    if (path_is(path, "/health") || path_has_prefix(path, "/health/")) {
        if (!path_is(path, "/health/live") && !auth_metrics_allow(w, req)) return 0;
        return health_handle(w, req, path);
    }
    if (path_is(path, "/metrics")) return auth_metrics_allow(w, req) ? metrics_handle(w, req) : 0;
    if (path_is(path, "/openapi.json")) return openapi_handle(w, req);
    if (path_is(path, "/admin") || path_has_prefix(path, "/admin/")) return admin_handle(w, req, path);
    struct urlpath segs;
    if (!split_path(req, &segs)) {
        http_send_error(req, 400, "bad_request", "malformed percent-encoding in the path", NULL, NULL);
        return 0;
    }
    if (handler_route(w, req, &segs) == 0) return 0;
    if (route_alias(w, req, &segs) == 0) return 0;
    http_send_error(req, 404, "not_found", "no such endpoint", NULL, NULL);
    return 0;
}

int router_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    /* Lines logged while the request is routed (and run, up to its first wait) name it. */
    const char *outer = reqinfo_enter(req);
    int rc = route(worker_of(req), req);
    reqinfo_leave(outer);
    return rc;
}
