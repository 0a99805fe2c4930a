/* metrics.h — request statistics of named queries and bulk operations, the slow-query report, and
 * GET /metrics in the Prometheus text format 0.0.4 (docs/metrics.md). Each worker writes only its own
 * counters, without locks or atomic read-modify-writes; a scrape reads every worker's counters
 * with relaxed loads and sums them, so it is a snapshot, never a decision input. Statistics are
 * kept per worker, per name and per pool for the life of the process: a reload's new definitions
 * continue the same counters, and a query sluice.route sends elsewhere counts under that pool. */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "histogram.h"

struct worker;
struct server;
struct query_def;
struct bulk_def;
typedef struct st_h2o_req_t h2o_req_t;

/* The `status` label of db_query_count: ok, or the error code of docs/http-api.md the client got. */
enum metrics_status {
    METRICS_OK,
    METRICS_BAD_REQUEST,
    METRICS_UNAUTHORIZED,
    METRICS_FORBIDDEN,
    METRICS_NOT_FOUND,
    METRICS_METHOD_NOT_ALLOWED,
    METRICS_CONFLICT,
    METRICS_TOO_LARGE,
    METRICS_UNSUPPORTED_MEDIA_TYPE,
    METRICS_UNAVAILABLE,
    METRICS_TIMEOUT,
    METRICS_INTERNAL,
    METRICS_NSTATUS
};

#define METRICS_LAST_ERROR   160  /* bytes kept of a query's newest error message */
#define METRICS_DEFAULT_SLOW 1000 /* slow_query_ms when neither the query nor sluice.policy sets it */

/* One named query's statistics on one pool and one worker. */
struct query_stats {
    struct histogram time;            /* db_query_time_seconds: arrival to answer, every status */
    struct histogram exec;            /* prepared_stmt_execution_time_seconds: sent to result, OK only */
    uint64_t status[METRICS_NSTATUS]; /* db_query_count by enum metrics_status */
    uint64_t slow;                    /* db_slow_query_count */
    /* The newest error, for /admin/queries. Written under a sequence number that is odd while
     * the text changes, so a reader on another worker retries a torn copy (the writer never waits). */
    unsigned last_error_seq;
    uint64_t last_error_ms; /* wall clock, so workers' errors compare */
    char last_error[METRICS_LAST_ERROR];
    /* explain_slow: the newest captured plan (malloc'd JSON text, swapped under a mutex that only
     * captures and /admin/queries take), when it was stored, and when the last capture began. */
    char *plan;
    uint64_t plan_ms;
    uint64_t plan_tried_ms;
};

/* One bulk operation's statistics on one pool and one worker. */
struct bulk_stats {
    struct histogram time; /* bulk_operation_time_seconds of successful loads; its count = executions */
    uint64_t rows;         /* bulk_operation_rows_total: rows committed, by failed loads too */
    uint64_t errors;       /* sluice_bulk_operation_errors_total */
};

/* The statistics of a name on one worker, one set per pool (opaque; struct query_def and struct
 * bulk_def cache a pointer to theirs). */
struct metrics_entry;

/* --- recording (the worker w that owns q or d only; a few increments and one histogram) ---- */

/* Counts one answered request of q on pool (its index in config order): http_status is what was
 * sent, started_us when the request reached the gateway (now_us clock), errmsg what went wrong
 * (NULL for a 2xx; kept as the newest error otherwise). Writes the duration to *duration_us.
 * Returns true when the request was slower than q->slow_ms (already counted): the caller then
 * calls metrics_slow_query. */
bool metrics_query_done(struct worker *w, struct query_def *q, int pool, int http_status, uint64_t started_us,
                        const char *errmsg, uint64_t *duration_us);
/* Counts one successful execution of q on pool that took exec_us from send to result. */
void metrics_query_exec(struct worker *w, struct query_def *q, int pool, uint64_t exec_us);
/* Writes the slow-query log line (warn, "slow query", with query, pool, duration_ms, status,
 * threshold_ms and params) and calls sluice.on_slow_query({query=, pool=, duration_ms=,
 * status=}) in w's current Lua state when the scripts define it; an error in the hook, or a hook
 * running past 100 ms, is logged, never raised. params_json: a JSON value (the parameter names,
 * or their values when the query sets log_params), or NULL. */
void metrics_slow_query(struct worker *w, const struct query_def *q, int pool, int http_status,
                        uint64_t duration_us, const char *params_json);
/* Counts one finished bulk request of d (on its pool): ok or not, rows committed, started_us as
 * above. */
void metrics_bulk_done(struct worker *w, struct bulk_def *d, bool ok, long rows, uint64_t started_us);

#define METRICS_PLAN_MAX      (64 * 1024) /* bytes of a captured plan kept; a larger plan is not kept */
#define METRICS_PLAN_EVERY_MS 60000 /* explain_slow captures a query's plan at most this often per worker */

/* explain_slow: true (and the capture time stamped) when w has not begun capturing q's plan on
 * pool during the last METRICS_PLAN_EVERY_MS; false otherwise. */
bool metrics_plan_due(struct worker *w, struct query_def *q, int pool);
/* Stores plan (len bytes of JSON, copied) as the newest plan of q on pool for w. Returns false
 * (nothing stored) when it is longer than METRICS_PLAN_MAX. */
bool metrics_plan_set(struct worker *w, struct query_def *q, int pool, const char *plan, size_t len);
/* The newest captured plan of the query named name over the workers and pools: a malloc'd JSON
 * text the caller frees, or NULL when none. */
char *metrics_plan_get(struct server *srv, const char *name);

/* --- reading ------------------------------------------------------------------------------ */

/* A query's statistics summed over the workers and pools. */
struct query_totals {
    struct histogram time, exec;
    uint64_t status[METRICS_NSTATUS];
    uint64_t calls, errors, slow;
    char last_error[METRICS_LAST_ERROR]; /* the newest over the workers; "" when none */
};
void metrics_query_totals(struct server *srv, const char *name, struct query_totals *out);
/* Frees every statistic (and the HTTP counters). Only while no worker records or scrapes: at exit,
 * or between unit tests. */
void metrics_reset(void);

/* The label value of enum metrics_status s ("ok", "bad_request", ...). */
const char *metrics_status_name(int s);
/* The enum metrics_status of an HTTP status: 2xx/3xx ok, the codes of docs/http-api.md, else internal. */
int metrics_status_of(int http_status);

/* Answers GET|HEAD /metrics with the whole exposition; 405 for other methods. Returns 0. */
int metrics_handle(struct worker *w, h2o_req_t *req);
/* Appends the whole exposition of srv (every family of docs/metrics.md and the sluice_ / process_
 * ones) to b. */
void metrics_render(struct server *srv, struct buf *b);

/* --- exposition helpers (text format 0.0.4) ---------------------------------------------- */

/* Appends s as a label value: \ " and newline escaped, without the quotes. */
void metrics_label_value(struct buf *b, const char *s);
/* Appends `name="value"` (escaped), preceded by a comma when b is not empty. */
void metrics_label(struct buf *b, const char *name, const char *value);
/* Appends the # HELP (\ and newline escaped) and # TYPE lines of a family. */
void metrics_family(struct buf *b, const char *name, const char *type, const char *help);
/* Appends `name{labels} value`; labels is the inside of the braces ("" or NULL for none). */
void metrics_sample(struct buf *b, const char *name, const char *labels, double value);
void metrics_sample_u64(struct buf *b, const char *name, const char *labels, uint64_t value);
/* Appends the cumulative _bucket lines (le per histogram_bounds, then +Inf), _sum and _count of
 * h. _count is the +Inf bucket, so a snapshot taken while a worker writes stays consistent. */
void metrics_histogram(struct buf *b, const char *name, const char *labels, const struct histogram *h);

#endif
