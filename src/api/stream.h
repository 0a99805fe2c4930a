/* stream.h — a named query's rows streamed as CSV or NDJSON (Accept: text/csv or
 * application/x-ndjson): single-row mode on a connection of its own, each batch of rows sent as
 * the client takes the last one, so memory stays flat however large the result. */
#ifndef SLUICE_STREAM_H
#define SLUICE_STREAM_H

#include <h2o.h>

#include "endpoint.h"
#include "pool.h"

struct call_outcome; /* call.h */

struct worker;

enum stream_format { STREAM_NONE, STREAM_CSV, STREAM_NDJSON };

/* What the Accept header asks for: the first of text/csv and application/x-ndjson it names, or
 * STREAM_NONE (JSON) when it names neither. */
enum stream_format stream_wanted(h2o_req_t *req);

/* How a stream reports back to the request that started it. */
struct stream_hooks {
    /* Nothing was sent yet: answer this error (the JSON error of docs/http-api.md). */
    void (*fail)(void *arg, const struct call_outcome *o);
    /* The stream is over: 200 when every row went out; otherwise the status the failure would
     * have had (the client saw a cut-short body) with what happened. */
    void (*ended)(void *arg, int status, const char *errmsg);
    void *arg;
};

/* Runs q on pool in format fmt with the parameter texts of job (bound: job->params and
 * param_off; job is only read). Always answers, through hooks when it fails before the first
 * byte. The caller's request lifecycle (reqlife.h, the named query's) holds the registry and the
 * in-flight count for the whole request; the stream adds its own write deadline. */
void stream_start(struct worker *w, h2o_req_t *req, struct query_def *q, struct pool *pool,
                  enum stream_format fmt, const struct pgjob *job, const struct stream_hooks *hooks);

#endif
