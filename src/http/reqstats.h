/* reqstats.h — HTTP responses counted by endpoint, method and status, with their time to the
 * first byte (sluice_http_requests_total, sluice_http_request_duration_seconds). The router names
 * a request's endpoint; an h2o filter counts every response that starts, whoever sent it (an
 * endpoint, a stream, h2o's own errors). Each worker writes only its own series, without locks;
 * a scrape reads every worker's with relaxed loads. Labels only take bounded values: endpoint
 * names come from the definitions or a fixed list, methods from a fixed list. */
#ifndef SLUICE_REQSTATS_H
#define SLUICE_REQSTATS_H

#include <h2o.h>
#include <stddef.h>
#include <stdint.h>

#include "histogram.h"

struct worker;
struct server;

/* The `endpoint` label of a request no endpoint took (an unknown path, or one refused before
 * routing: a limit, a missing Content-Type). */
#define REQSTATS_UNKNOWN "unknown"

/* The `method` label: these, and "other" for any other method. */
enum reqstats_method {
    REQSTATS_GET,
    REQSTATS_HEAD,
    REQSTATS_POST,
    REQSTATS_PUT,
    REQSTATS_PATCH,
    REQSTATS_DELETE,
    REQSTATS_OPTIONS,
    REQSTATS_OTHER,
    REQSTATS_NMETHODS
};
const char *reqstats_method_name(int m);
int reqstats_method_of(const char *method, size_t len);

/* Names req's endpoint: `kind/name` ("query/latest_quote", "bulk/ticks", "handler/echo"), or
 * kind alone for a fixed endpoint (name NULL: "batch", "health/live", ...). Copied into req's
 * pool; the last call wins. */
void reqstats_name(h2o_req_t *req, const char *kind, const char *name);

/* The endpoint req was named (reqstats_name), or REQSTATS_UNKNOWN. Points into req's pool. */
h2o_iovec_t reqstats_endpoint(h2o_req_t *req);

/* Adds the counting filter to pathconf (every response of its requests is counted once). */
void reqstats_register(h2o_pathconf_t *pathconf);

/* Counts one response of w (the worker's own thread only): its endpoint label, method, status
 * and seconds from the request's arrival to the response's start. */
void reqstats_count(struct worker *w, const char *endpoint, int method, int status, double seconds);

/* One series summed over the workers. endpoint points into the workers' store: valid until
 * reqstats_free. */
struct reqstats_row {
    const char *endpoint;
    int method, status;
    uint64_t count;
    struct histogram time;
};
/* Every (endpoint, method, status) counted so far, summed over srv's workers and sorted by
 * endpoint, method, status. Returns the count; *out is malloc'd (NULL when 0): the caller frees. */
size_t reqstats_rows(const struct server *srv, struct reqstats_row **out);

/* Frees w's series; only once its thread stopped and nothing scrapes. */
void reqstats_free(struct worker *w);

#endif
