/* cors.h — cross-origin resource sharing (the cors key): which other sites' pages a browser lets
 * call the gateway and read its answers. Off when cors is unset: no answer carries CORS headers. */
#ifndef SLUICE_CORS_H
#define SLUICE_CORS_H

#include <h2o.h>
#include <stdbool.h>

#include "config.h"

/* The request headers a page may send when cors.headers is unset. */
#define CORS_DEFAULT_HEADERS                                                                                 \
    "Authorization, Content-Type, If-None-Match, Sluice-LSN, X-Request-Id, traceparent"
/* The answer headers a page may read besides the always-readable ones. */
#define CORS_EXPOSE_HEADERS "X-Request-Id, traceparent, Sluice-LSN, Sluice-Cache, ETag, Retry-After"
#define CORS_METHODS        "GET, HEAD, POST, PUT, PATCH, DELETE"

/* Answers a preflight (OPTIONS with Origin and Access-Control-Request-Method) from an allowed
 * origin: 204 with the Access-Control-Allow-* headers. Returns true when it answered; false for
 * anything else (a preflight from another origin is routed as any request, and gets no CORS
 * header). */
bool cors_preflight(h2o_req_t *req, const struct cors_config *c);
/* Adds Access-Control-Allow-Origin, -Allow-Credentials and -Expose-Headers to the answer of a
 * request whose Origin is allowed, and Vary: Origin to every answer while the allowed origin is
 * echoed (a list of origins, or credentials). */
void cors_add_headers(h2o_req_t *req, const struct cors_config *c);

#endif
