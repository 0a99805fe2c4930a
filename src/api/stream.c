/* stream.c — rows as CSV or NDJSON, streamed. The query runs in single-row mode on a connection
 * taken for the stream alone (a long result must not hold up pipelined queries). Rows gather in
 * `out`; a chunk goes to h2o at FLUSH_AT bytes, and while h2o still writes the previous one and
 * PAUSE_AT bytes are waiting, the connection is paused: the server then waits on its socket, so
 * a slow client costs a bounded buffer, not the whole result. A chunk the client does not take
 * within the write deadline (client_timeout, or the statement timeout when that is shorter) cuts
 * the stream: the client's connection is closed and the database connection discarded, so a
 * client that stops reading cannot keep a pool connection. An error before the first row is the
 * usual JSON error; after it, the response is cut short (the client sees no final chunk). */
#include "stream.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "buf.h"
#include "call.h"
#include "cancel.h"
#include "http.h"
#include "reqinfo.h"
#include "jsonw.h"
#include "log.h"
#include "pgconn.h"
#include "pgjson.h"
#include "util.h"
#include "worker.h"

#define FLUSH_AT (64 * 1024)
#define PAUSE_AT (256 * 1024)

struct stream {
    h2o_generator_t gen;
    h2o_req_t *req;
    struct worker *w;
    struct query_def *q;
    enum stream_format fmt;
    struct stream_hooks hooks;
    struct pool_lease lease; /* waiting for a connection */
    struct pgconn *conn;     /* ours until the query is done */
    struct pgconn_owner owner;
    const char **values; /* parameter texts, NULL for SQL NULL (in the request's pool) */
    int nvalues;
    int timeout_ms;  /* statement_timeout for the query */
    bool setting;    /* the SET statement_timeout result is still to come */
    bool resetting;  /* the empty statement that ends single-row mode is out (see on_result) */
    bool started;    /* the response head went out */
    bool writing;    /* h2o holds `wire` until it calls proceed */
    bool rows_done;  /* no more rows will come */
    bool cut;        /* the query failed after rows went out */
    bool finished;   /* the last send is made, or the client left */
    bool reported;   /* a hook has accounted for the request */
    struct buf out;  /* rows not yet handed to h2o */
    struct buf wire; /* the chunk h2o is writing */
    h2o_timeout_entry_t write_deadline; /* linked while h2o holds a chunk the client has not taken */
    uint64_t deadline_ms;               /* its length */
};

enum stream_format stream_wanted(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1);
    if (i < 0) return STREAM_NONE;
    h2o_iovec_t v = req->headers.entries[i].value;
    const char *p = v.base, *end = v.base + v.len;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ',')) p++;
        const char *s = p;
        while (p < end && *p != ',' && *p != ';' && *p != ' ') p++;
        size_t n = (size_t)(p - s);
        if (h2o_lcstris(s, n, H2O_STRLIT("text/csv"))) return STREAM_CSV;
        if (h2o_lcstris(s, n, H2O_STRLIT("application/x-ndjson"))) return STREAM_NDJSON;
        while (p < end && *p != ',') p++; /* parameters such as ;q=0.9 */
    }
    return STREAM_NONE;
}

/* --- encoding ---------------------------------------------------------------------------------- */

/* A CSV field as PostgreSQL's COPY ... CSV writes it: quoted when it holds a comma, a quote, CR
 * or LF, or is empty (an unquoted empty field is NULL). */
static void put_csv_field(struct buf *b, const char *s, size_t n)
{
    bool quote = n == 0;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!quote) {
        buf_append(b, s, n);
        return;
    }
    buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') buf_putc(b, '"');
        buf_putc(b, s[i]);
    }
    buf_putc(b, '"');
}

static void put_header(struct stream *s, const PGresult *r)
{
    if (s->fmt != STREAM_CSV || PQnfields(r) == 0) return;
    for (int c = 0; c < PQnfields(r); c++) {
        if (c) buf_putc(&s->out, ',');
        const char *name = PQfname(r, c);
        put_csv_field(&s->out, name, strlen(name));
    }
    buf_putc(&s->out, '\n');
}

static void put_row(struct stream *s, const PGresult *r)
{
    if (s->fmt == STREAM_NDJSON) {
        pgjson_row(&s->out, r, 0);
        buf_putc(&s->out, '\n');
        return;
    }
    for (int c = 0; c < PQnfields(r); c++) {
        if (c) buf_putc(&s->out, ',');
        if (!PQgetisnull(r, 0, c)) put_csv_field(&s->out, PQgetvalue(r, 0, c), (size_t)PQgetlength(r, 0, c));
    }
    buf_putc(&s->out, '\n');
}

/* --- sending ----------------------------------------------------------------------------------- */

static void report_end(struct stream *s, int status, const char *errmsg)
{
    if (s->reported) return;
    s->reported = true;
    s->hooks.ended(s->hooks.arg, status, errmsg);
}

static void report_fail(struct stream *s, const struct call_outcome *o)
{
    if (s->reported) return;
    s->reported = true;
    s->finished = true;
    s->hooks.fail(s->hooks.arg, o);
}

/* The stream could not run (no connection, or it was lost): 503 with message. */
static void report_unavailable(struct stream *s, const char *message, const char *detail)
{
    struct call_outcome o;
    call_error(&o, 503, message);
    if (detail) snprintf(o.detail, sizeof o.detail, "%s", detail);
    report_fail(s, &o);
}

static void start_response(struct stream *s, const PGresult *r)
{
    h2o_req_t *req = s->req;
    req->res.status = 200;
    req->res.reason = "OK";
    if (s->fmt == STREAM_CSV)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("text/csv; charset=utf-8"));
    else
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/x-ndjson"));
    /* gzip for a client that takes it, whatever the length (unknown yet); h2o's type table would
     * leave application/x-ndjson alone */
    req->compress_hint = H2O_COMPRESS_HINT_ENABLE;
    h2o_start_response(req, &s->gen);
    s->started = true;
    put_header(s, r);
}

static void on_write_deadline(h2o_timeout_entry_t *entry);

/* Starts the wait for the client to take the chunk being handed to h2o: client_timeout, or the
 * statement timeout while the database connection is held and that is shorter (a stalled
 * client must not hold a connection longer than a statement may run). */
static void arm_write_deadline(struct stream *s)
{
    if (h2o_timeout_is_linked(&s->write_deadline)) return;
    uint64_t ms = (uint64_t)(worker_config(s->w)->client_timeout * 1000);
    if (s->conn != NULL && s->timeout_ms > 0 && (uint64_t)s->timeout_ms < ms) ms = (uint64_t)s->timeout_ms;
    s->deadline_ms = ms;
    s->write_deadline.cb = on_write_deadline;
    h2o_timeout_link(s->w->ctx.loop, worker_timeout(s->w, ms), &s->write_deadline);
}

static void disarm_write_deadline(struct stream *s)
{
    if (h2o_timeout_is_linked(&s->write_deadline)) h2o_timeout_unlink(&s->write_deadline);
}

/* Hands the gathered rows to h2o when it is free and there is a chunk's worth, or the end. */
static void pump(struct stream *s)
{
    if (!s->started || s->writing || s->finished) return;
    if (s->cut) {
        s->finished = true;
        h2o_send(s->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    bool last = s->rows_done;
    if (!last && s->out.len < FLUSH_AT) return;
    struct buf t = s->wire;
    s->wire = s->out;
    s->out = t;
    buf_reset(&s->out);
    s->writing = true;
    if (last) {
        s->finished = true;
        report_end(s, 200, NULL);
    }
    arm_write_deadline(s); /* before h2o_send: a final send may free the request inside it */
    h2o_iovec_t chunk = h2o_iovec_init(s->wire.data, s->wire.len);
    h2o_send(s->req, &chunk, chunk.len ? 1 : 0, last ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    struct stream *s = container_of(gen, struct stream, gen);
    s->writing = false;
    disarm_write_deadline(s);
    pump(s);
    if (s->conn != NULL && s->conn->paused && s->out.len < PAUSE_AT) pgconn_pause(s->conn, false);
}

/* The database side is over: the connection goes back (or went away). */
static void db_done(struct stream *s)
{
    if (s->conn != NULL) pgconn_release(s->conn);
    s->conn = NULL;
}

/* The client did not take a chunk in time. The query is cancelled if it may still run and its
 * connection discarded (never reused mid-result); the client's connection is shut down, so h2o
 * fails the pending write and frees the request (over HTTP/2 that ends the whole connection:
 * h2o 2.2.5 has no way to reset one stream with data queued). */
static void on_write_deadline(h2o_timeout_entry_t *entry)
{
    struct stream *s = container_of(entry, struct stream, write_deadline);
    char why[160];
    snprintf(why, sizeof why, "the client took no data for %.3g s (%s)", (double)s->deadline_ms / 1000,
             s->deadline_ms < (uint64_t)(worker_config(s->w)->client_timeout * 1000) ? "the statement timeout"
                                                                                     : "client_timeout");
    const char *outer = reqinfo_enter(s->req);
    log_printf(LOG_WARN, "query %s: streamed response cut: %s%s", s->q->name, why,
               s->conn != NULL ? "; its database connection is closed" : "");
    reqinfo_leave(outer);
    if (s->conn != NULL) {
        if (!s->rows_done) cancel_request(s->conn->pg); /* it may be computing, not blocked on us */
        pgconn_discard(s->conn);
        s->conn = NULL;
    }
    db_done(s);
    s->cut = s->rows_done = s->finished = true;
    report_end(s, 408, why);
    h2o_socket_t *sock = s->req->conn->callbacks->get_socket(s->req->conn);
    if (sock != NULL) shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
}

/* The client left mid-stream: closing the connection stops the query on the server. */
static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    struct stream *s = container_of(gen, struct stream, gen);
    disarm_write_deadline(s);
    s->finished = true;
    if (s->conn != NULL) pgconn_discard(s->conn);
    s->conn = NULL;
    db_done(s);
    report_end(s, 503, "the client closed the connection");
}

/* --- the query --------------------------------------------------------------------------------- */

static void send_query(struct stream *s)
{
    s->setting = false;
    pgconn_send_rows(s->conn, s->q->sql_numbered, s->nvalues, s->values); /* a failure reaches on_lost */
}

static void on_error_result(struct stream *s, PGresult *r)
{
    struct call_outcome o;
    call_db_error(s->q, r, &o);
    if (!s->started) {
        report_fail(s, &o);
        return;
    }
    const char *outer = reqinfo_enter(s->req);
    log_printf(LOG_WARN, "query %s: streamed response cut short: %s", s->q->name, o.detail);
    reqinfo_leave(outer);
    s->cut = true;
    s->rows_done = true;
    report_end(s, o.status, o.detail);
    pump(s);
}

static void on_result(void *arg, PGresult *r)
{
    struct stream *s = arg;
    if (r == NULL) { /* a statement is over */
        if (s->setting) {
            send_query(s);
        } else if (!s->resetting) {
            /* libpq 15 keeps single-row mode on for the first query pipelined after it: one empty
             * statement outside the pipeline ends it before the connection goes back. */
            s->resetting = true;
            pgconn_send(s->conn, "", 0, NULL); /* a failure reaches on_lost */
        } else {
            db_done(s);
            pump(s); /* the last chunk only now: the request cannot end before the connection is back */
        }
        return;
    }
    if (s->setting || s->resetting || s->finished) { /* SET's or the reset's result; rows nobody waits for */
        PQclear(r);
        return;
    }
    switch (PQresultStatus(r)) {
    case PGRES_SINGLE_TUPLE:
        if (!s->started) start_response(s, r);
        put_row(s, r);
        if (s->out.len >= FLUSH_AT) pump(s);
        if (s->writing && s->out.len >= PAUSE_AT) pgconn_pause(s->conn, true);
        break;
    case PGRES_TUPLES_OK:  /* after the last row, or at once for none */
    case PGRES_COMMAND_OK: /* a statement without a result set: an empty body */
        if (!s->started) start_response(s, r);
        s->rows_done = true;
        break;
    default:
        on_error_result(s, r);
        break;
    }
    PQclear(r);
}

static void on_writable(void *arg) {}

static void on_lost(void *arg, const char *why)
{
    struct stream *s = arg;
    s->conn = NULL;
    db_done(s);
    if (!s->started) {
        report_unavailable(s, "the connection to the database was lost", why);
        return;
    }
    if (s->rows_done) { /* every row is in: lost while ending single-row mode */
        pump(s);
        return;
    }
    const char *outer = reqinfo_enter(s->req);
    log_printf(LOG_WARN, "query %s: streamed response cut short: %s", s->q->name, why);
    reqinfo_leave(outer);
    s->cut = true;
    s->rows_done = true;
    report_end(s, 503, why);
    pump(s);
}

static void on_conn(void *arg, struct pgconn *c, const char *err)
{
    struct stream *s = arg;
    if (c == NULL) {
        db_done(s);
        report_unavailable(s, err, NULL);
        return;
    }
    s->conn = c;
    pgconn_own(s->conn, &s->owner);
    if (s->conn->session_timeout_ms == s->timeout_ms) {
        send_query(s);
        return;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "SET statement_timeout = %d", s->timeout_ms);
    s->conn->session_timeout_ms = s->timeout_ms;
    s->setting = true;
    pgconn_send(s->conn, sql, 0, NULL); /* a failure reaches on_lost */
}

static void on_dispose(void *p)
{
    struct stream *s = p;
    disarm_write_deadline(s);
    pool_cancel_lease(&s->lease);
    if (s->conn != NULL) pgconn_discard(s->conn);
    s->conn = NULL;
    db_done(s);
    buf_free(&s->out);
    buf_free(&s->wire);
}

void stream_start(struct worker *w, h2o_req_t *req, struct query_def *q, struct pool *pool,
                  enum stream_format fmt, const struct pgjob *job, const struct stream_hooks *hooks)
{
    struct stream *s = h2o_mem_alloc_shared(&req->pool, sizeof *s, on_dispose);
    memset(s, 0, sizeof *s);
    s->gen = (h2o_generator_t){on_proceed, on_stop};
    s->req = req;
    s->w = w;
    s->q = q;
    s->fmt = fmt;
    s->hooks = *hooks;
    s->owner = (struct pgconn_owner){on_result, on_writable, on_lost, s};
    s->timeout_ms = q->timeout_ms ? q->timeout_ms : pool->cfg.statement_timeout_ms;
    s->nvalues = q->nparams;
    s->values = h2o_mem_alloc_pool(&req->pool, sizeof *s->values * (size_t)(q->nparams ? q->nparams : 1));
    for (int i = 0; i < q->nparams; i++) /* job->params is the caller's: copies in the request's pool */
        s->values[i] = job->param_off[i] < 0
                           ? NULL
                           : h2o_strdup(&req->pool, job->params.data + job->param_off[i], SIZE_MAX).base;

    char err[200];
    if (pool_acquire(pool, &s->lease, on_conn, s, err, sizeof err) != 0) {
        db_done(s);
        http_retry_after(req, pool_retry_after(pool));
        report_unavailable(s, err, NULL);
    }
}
