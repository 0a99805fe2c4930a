/* cors.c — preflight answers and the CORS headers of actual answers. An origin is allowed when
 * it is one of cors.origins (compared without regard to case) or origins is "*". With
 * credentials, "*" is never sent: browsers refuse it, so the request's own origin is echoed. */
#include "cors.h"

#include <stdio.h>
#include <string.h>

#include "http.h"
#include "worker.h"

/* Adds header name (lcname in lower case) with value[0..len), which must outlive the request. */
static void add(h2o_req_t *req, const char *lcname, const char *name, const char *value, size_t len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, lcname, strlen(lcname), 0, name, value, len);
}

/* The request's Origin when c allows it, else a NULL base. */
static h2o_iovec_t allowed_origin(h2o_req_t *req, const struct cors_config *c)
{
    h2o_iovec_t none = h2o_iovec_init(NULL, 0);
    if (!c->enabled) return none;
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    if (i < 0) return none;
    h2o_iovec_t origin = req->headers.entries[i].value;
    if (origin.len == 0) return none;
    if (c->any_origin) return origin;
    for (size_t k = 0; k < c->norigins; k++)
        if (h2o_lcstris(origin.base, origin.len, c->origins[k], strlen(c->origins[k]))) return origin;
    return none;
}

/* Access-Control-Allow-Origin and what goes with it, for an allowed origin. */
static void allow_origin(h2o_req_t *req, const struct cors_config *c, h2o_iovec_t origin)
{
    h2o_mem_pool_t *pool = &req->pool;
    if (c->any_origin && !c->credentials) {
        h2o_add_header(pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, H2O_STRLIT("*"));
    } else {
        h2o_iovec_t copy = h2o_strdup(pool, origin.base, origin.len);
        h2o_add_header(pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, copy.base,
                       copy.len);
        /* the answer depends on the Origin: a shared cache must not give it to another site */
        h2o_set_header_token(pool, &req->res.headers, H2O_TOKEN_VARY, H2O_STRLIT("Origin"));
    }
    if (c->credentials)
        add(req, "access-control-allow-credentials", "Access-Control-Allow-Credentials", H2O_STRLIT("true"));
}

/* Access-Control-Allow-Headers: items, or fallback when there are none. */
static void allow_headers(h2o_req_t *req, char **items, size_t n, const char *fallback)
{
    static const char lc[] = "access-control-allow-headers", name[] = "Access-Control-Allow-Headers";
    if (items == NULL) {
        add(req, lc, name, fallback, strlen(fallback));
        return;
    }
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += strlen(items[i]) + 2;
    char *s = h2o_mem_alloc_pool(&req->pool, len + 1), *p = s;
    for (size_t i = 0; i < n; i++) p += sprintf(p, "%s%s", i ? ", " : "", items[i]);
    add(req, lc, name, s, (size_t)(p - s));
}

bool cors_preflight(h2o_req_t *req, const struct cors_config *c)
{
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS")) ||
        h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-method"), -1) < 0)
        return false;
    h2o_iovec_t origin = allowed_origin(req, c);
    if (origin.base == NULL) return false;
    allow_origin(req, c, origin);
    add(req, "access-control-allow-methods", "Access-Control-Allow-Methods", H2O_STRLIT(CORS_METHODS));
    allow_headers(req, c->headers, c->nheaders, CORS_DEFAULT_HEADERS);
    char age[24];
    int n = snprintf(age, sizeof age, "%d", c->max_age);
    add(req, "access-control-max-age", "Access-Control-Max-Age", h2o_strdup(&req->pool, age, (size_t)n).base,
        (size_t)n);
    req->res.status = 204;
    req->res.reason = "No Content";
    h2o_send_inline(req, NULL, 0);
    return true;
}

void cors_add_headers(h2o_req_t *req, const struct cors_config *c)
{
    if (h2o_find_header(&req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, -1) >= 0)
        return; /* a preflight */
    /* Whenever the answer depends on Origin, say so, to callers of other origins and without one
     * too: a shared cache must not keep their answer (no CORS header) for an allowed origin. */
    if (c->enabled && (!c->any_origin || c->credentials))
        h2o_set_header_token(&req->pool, &req->res.headers, H2O_TOKEN_VARY, H2O_STRLIT("Origin"));
    h2o_iovec_t origin = allowed_origin(req, c);
    if (origin.base == NULL) return;
    allow_origin(req, c, origin);
    add(req, "access-control-expose-headers", "Access-Control-Expose-Headers",
        H2O_STRLIT(CORS_EXPOSE_HEADERS));
}
