/* reqinfo.h — what the gateway knows of a request beyond h2o's record of it: its id (the client's
 * X-Request-Id, or one made here), the W3C trace it belongs to (traceparent), and which pool and
 * subject served it, for the access log, error bodies and every log line about it. */
#ifndef SLUICE_REQINFO_H
#define SLUICE_REQINFO_H

#include <h2o.h>
#include <stdbool.h>

#define REQINFO_ID_MAX 128 /* the longest X-Request-Id kept */

struct reqinfo {
    h2o_req_prefilter_t super; /* in req->prefilters: how reqinfo_of finds it again */
    char id[REQINFO_ID_MAX + 1];
    char trace_id[33];      /* 32 hex digits of the request's traceparent; "" without a valid one */
    char trace_flags[3];    /* its trace-flags, kept in the answer's traceparent */
    const char *pool;       /* the pool that ran it; NULL: none */
    const char *subject;    /* who authenticated (auth.c); NULL: nobody */
    const char *log_fields; /* "request_id":"..",["trace_id":".."]: the members every line carries */
};

/* The request's record, made on first use from its headers (in req's pool: it lives as long as
 * the request). An X-Request-Id of 1 to 128 of [A-Za-z0-9._:-] is kept, any other is replaced by
 * one made here (unique across workers and restarts); a traceparent that is not a valid W3C
 * trace context is ignored. Never fails. */
struct reqinfo *reqinfo_of(h2o_req_t *req);

/* Notes what served the request (copied into the request's pool); NULL or "" leaves it unset.
 * (reqstats_name names its endpoint.) */
void reqinfo_set_pool(h2o_req_t *req, const char *name);
void reqinfo_set_subject(h2o_req_t *req, const char *subject, size_t len);

/* Every log line this thread writes until reqinfo_leave names the request (log_set_context).
 * Returns the context it replaced, which reqinfo_leave restores (calls may nest). */
const char *reqinfo_enter(h2o_req_t *req);
void reqinfo_leave(const char *previous);

/* Adds X-Request-Id and, for a request with a trace, traceparent (the same trace id, a new span id)
 * to the answer, unless it has them. */
void reqinfo_add_headers(h2o_req_t *req);

/* True when s[0..n) is a request id that is kept: 1 to 128 of [A-Za-z0-9._:-]. */
bool reqinfo_id_valid(const char *s, size_t n);
/* True when s[0..n) is a valid W3C traceparent; then trace_id[33] holds its trace id and
 * flags[3] its trace-flags (both NUL-terminated). */
bool reqinfo_parse_traceparent(const char *s, size_t n, char trace_id[33], char flags[3]);

#endif
