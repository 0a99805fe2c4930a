/* query.c — serving a named query over HTTP. Parameters come from route segments, the query
 * string and a JSON body (object by name or array by position); each is converted for the type
 * the server declared before it is bound. */
#include "query.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "cached.h"
#include "call.h"
#include "http.h"
#include "reqinfo.h"
#include "jsonnum.h"
#include "jsonw.h"
#include "log.h"
#include "metrics.h"
#include "pgjson.h"
#include "pgtype.h"
#include "reqlife.h"
#include "route.h"
#include "ryw.h"
#include "slowplan.h"
#include "stream.h"
#include "util.h"
#include "worker.h"

/* Where a parameter's value comes from. */
struct pvalue {
    const char *text; /* from the path or query string (decoded, in the request pool) */
    size_t len;
    json_t *json; /* from the body (borrowed from qreq->body) */
    bool set;
};

/* The state of a request waiting on the database; lives in the request's pool and is disposed
 * with it, so a client that leaves abandons its job cleanly. */
struct qreq {
    struct reqlife life; /* first: the request's lifecycle; started_us is its arrival */
    struct query_def *q;
    struct pgjob *job; /* while it waits on the database */
    json_t *body;
    struct pvalue *vals;
    int pool_idx;            /* the pool it runs on: q's own until sluice.route chose */
    bool statement_deadline; /* the deadline is timeout_ms (plus grace), not request_timeout */
    enum stream_format fmt;  /* rows streamed as CSV or NDJSON, or one JSON answer */
    struct ryw_wait ryw;     /* a read waiting for a standby to replay its Sluice-LSN (ryw.h) */
    struct pgjob *held;      /* ...its job, bound and not submitted yet */
    const char *bad_name;    /* a refused parameter: its name (in the request pool or q), for the answer */
    size_t bad_len;
    uint64_t token;          /* its Sluice-LSN, 0 without one */
    struct cached_seat seat; /* a cached or coalesced query: its key, and the flight it waits on */
};

/* How long past timeout_ms the gateway waits for the server's own statement timeout before it
 * cancels the statement itself and answers 504. */
#define STATEMENT_GRACE_MS 1000

/* The wait ended early: the job is dropped (its statement cancelled when it runs alone). */
static void cleanup(struct reqlife *life)
{
    struct qreq *qr = (struct qreq *)life;
    if (qr->job != NULL) pool_abandon(qr->job);
    qr->job = NULL;
    ryw_cancel(&qr->ryw);
    if (qr->held != NULL) pgjob_free(qr->held);
    qr->held = NULL;
    cached_leave(&qr->seat);
}

static void dispose(struct reqlife *life)
{
    struct qreq *qr = (struct qreq *)life;
    if (qr->body) json_decref(qr->body);
}

static void on_deadline(struct reqlife *life);
static void on_client_gone(struct reqlife *life);
static const struct reqlife_kind query_kind = {cleanup, on_deadline, on_client_gone, dispose};

/* Converts qr's values for the declared types into job's parameters. */
static int bind_values(struct qreq *qr, struct pgjob *job)
{
    struct query_def *q = job->q;
    buf_reset(&job->params);
    for (int i = 0; i < q->nparams; i++) {
        struct pvalue *v = &qr->vals[i];
        Oid type = q->param_types ? q->param_types[i] : 0;
        size_t before = job->params.len;
        char err[128];
        int rc;
        bool is_null = false;
        if (v->json)
            rc = pgtype_param_json(type, v->json, &job->params, &is_null, err, sizeof err);
        else
            rc = pgtype_param_text(type, v->text, v->len, &job->params, err, sizeof err);
        if (rc != 0) {
            snprintf(job->errmsg, sizeof job->errmsg, "parameter \"%s\": %s", q->param_names[i], err);
            job->bad_param = i;
            return -1;
        }
        job->param_off[i] = is_null ? -1 : (int)before;
    }
    job->bound = true;
    return 0;
}

static int bind_params(struct pgjob *job)
{
    return bind_values(job->owner, job);
}

/* A shared execution binds with the values of one of its requests: they are all the same. */
static int bind_seat(struct cached_seat *s, struct pgjob *job)
{
    return bind_values(container_of(s, struct qreq, seat), job);
}

/* The parameters for the slow-query log: their names, or (log_params) names and values, each
 * value cut to 200 bytes. vals may be NULL (nothing parsed yet). Returns a malloc'd JSON text. */
static char *slow_params(const struct query_def *q, const struct pvalue *vals)
{
    struct buf b = BUF_INIT;
    buf_putc(&b, q->log_params && vals ? '{' : '[');
    for (int i = 0; i < q->nparams; i++) {
        const char *name = q->param_names[i];
        if (i) buf_putc(&b, ',');
        jsonw_string(&b, name, strlen(name));
        if (!q->log_params || vals == NULL) continue;
        buf_putc(&b, ':');
        const struct pvalue *v = &vals[i];
        const char *lit;
        size_t litlen;
        if (!v->set) {
            buf_puts(&b, "null");
        } else if (v->json && jsonnum_literal(v->json, &lit, &litlen)) {
            buf_append(&b, lit, litlen);
        } else if (v->json) {
            char *t = json_dumps(v->json, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
            size_t n = t ? strlen(t) : 0;
            if (n > 0 && n <= 200)
                buf_puts(&b, t);
            else
                jsonw_string(&b, t ? t : "", n > 200 ? 200 : n);
            free(t);
        } else {
            jsonw_string(&b, v->text, v->len > 200 ? 200 : v->len);
        }
    }
    buf_putc(&b, q->log_params && vals ? '}' : ']');
    return buf_steal(&b);
}

/* What counting an answer found: a slow request is reported once the answer has left. */
struct outcome {
    bool slow;
    int pool;
    uint64_t us;
    char *params;       /* slow only: for the log line */
    json_t **plan_vals; /* slow, explain_slow and due: the values for the plan capture */
};

/* The request's parameter values as JSON (text values as strings, in PostgreSQL's input syntax),
 * for an EXPLAIN of the same statement; NULL when one is missing. */
static json_t **plan_values(const struct query_def *q, const struct pvalue *vals)
{
    json_t **out = xcalloc((size_t)(q->nparams ? q->nparams : 1), sizeof *out);
    for (int i = 0; i < q->nparams; i++) {
        const struct pvalue *v = &vals[i];
        if (!v->set) {
            for (int k = 0; k < i; k++)
                if (out[k]) json_decref(out[k]);
            free(out);
            return NULL;
        }
        if (v->json)
            out[i] = json_is_null(v->json) ? NULL : json_incref(v->json);
        else
            out[i] = json_stringn_nocheck(v->text, v->len);
    }
    return out;
}

/* Counts an answer of q in the metrics; runs before the answer is sent, so a scrape that follows
 * the response sees it. qr is NULL when the request failed before its state existed. */
static void count(struct worker *w, struct query_def *q, struct qreq *qr, int status, uint64_t started_us,
                  const char *errmsg, struct outcome *o)
{
    o->pool = qr ? qr->pool_idx : q->pool_idx;
    o->slow = metrics_query_done(w, q, o->pool, status, started_us, errmsg, &o->us);
    o->params = o->slow ? slow_params(q, qr ? qr->vals : NULL) : NULL;
    o->plan_vals = NULL;
    if (o->slow && qr != NULL && slowplan_enabled(q) && metrics_plan_due(w, q, o->pool))
        o->plan_vals = plan_values(q, qr->vals);
}

/* After the answer: logs a slow request and hands it to sluice.on_slow_query. */
static void report(struct worker *w, struct query_def *q, int status, struct outcome *o)
{
    if (o->pool >= 0 && (size_t)o->pool < worker_config(w)->npools && w->pools[o->pool].cfg.echo &&
        log_enabled(LOG_INFO)) {
        /* echo = true: every statement of the pool with its duration */
        const char *pool = worker_config(w)->pools[o->pool].name;
        struct buf f = BUF_INIT;
        buf_puts(&f, "\"query\":");
        jsonw_string(&f, q->name, strlen(q->name));
        buf_puts(&f, ",\"pool\":");
        jsonw_string(&f, pool, strlen(pool));
        buf_printf(&f, ",\"duration_ms\":%.3f,\"status\":%d", (double)o->us / 1000.0, status);
        log_write(LOG_INFO, "statement", f.data);
        buf_free(&f);
    }
    if (!o->slow) return;
    metrics_slow_query(w, q, o->pool, status, o->us, o->params);
    free(o->params);
    if (o->plan_vals) slowplan_capture(w, q, o->pool, o->plan_vals);
}

/* Names the pool that served the request in its access line. */
static void note_pool(struct worker *w, h2o_req_t *req, int pool)
{
    if (pool >= 0 && (size_t)pool < worker_config(w)->npools)
        reqinfo_set_pool(req, worker_config(w)->pools[pool].name);
}

/* Sends the error answer o for q and accounts for it (o->detail is what /admin/queries keeps). */
static void answer_outcome(struct worker *w, h2o_req_t *req, struct query_def *q, struct qreq *qr,
                           uint64_t started_us, const struct call_outcome *o)
{
    struct outcome counted;
    count(w, q, qr, o->status, started_us, o->detail, &counted);
    struct buf *b = &w->out;
    buf_reset(b);
    call_write_json(b, o, q->name);
    if (o->status == 503) http_retry_after(req, 1);
    http_send_json(req, o->status, b->data, b->len);
    report(w, q, o->status, &counted);
}

/* Sends an error answer for q (code from the status) and accounts for it; detail is what
 * /admin/queries keeps (NULL: the message). */
static void answer_error(struct worker *w, h2o_req_t *req, struct query_def *q, struct qreq *qr,
                         uint64_t started_us, int status, const char *message, const char *sqlstate,
                         const char *detail)
{
    struct call_outcome o;
    call_error(&o, status, message);
    o.sqlstate = sqlstate;
    if (detail) snprintf(o.detail, sizeof o.detail, "%s", detail);
    answer_outcome(w, req, q, qr, started_us, &o);
}

/* GET or HEAD: a readonly answer then carries an ETag. */
static bool is_get(const h2o_req_t *req)
{
    return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
           h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
}

/* Sends the 200 answer body of job; ran: the request's own execution (not one it shared). */
static void send_ok(struct qreq *qr, const struct pgjob *job, const struct buf *b, bool ran)
{
    struct query_def *q = qr->q;
    if (ran) metrics_query_exec(qr->life.w, q, qr->pool_idx, now_us() - job->sent_us);
    struct outcome counted;
    count(qr->life.w, q, qr, 200, qr->life.started_us, NULL, &counted);
    http_set_lsn(qr->life.req, job->lsn); /* a write: where its commit is in the WAL */
    h2o_req_t *req = qr->life.req;
    if (q->readonly && is_get(req))
        http_send_readonly_json(req, b->data, b->len); /* ETag; 304 when the client has it */
    else
        http_send_json(req, 200, b->data, b->len);
    report(qr->life.w, q, 200, &counted);
}

static void send_result(struct qreq *qr, struct pgjob *job)
{
    struct query_def *q = qr->q;
    struct call_outcome o;
    call_outcome(job, worker_config(qr->life.w)->max_rows, &o);
    if (qr->seat.active) cached_header(qr->life.req, "miss"); /* a read with a Sluice-LSN */
    if (o.status != 200) {
        answer_outcome(qr->life.w, qr->life.req, q, qr, qr->life.started_us, &o);
        return;
    }
    struct buf *b = &qr->life.w->out;
    buf_reset(b);
    call_write_json(b, &o, q->name);
    if (qr->seat.active) cached_keep(&qr->seat, q, b);
    send_ok(qr, job, b, true);
}

/* A shared execution ended (cached.h): qr gets its outcome. */
static void on_flight_answer(struct cached_seat *s, const struct pgjob *job, const struct call_outcome *o,
                             const struct buf *body, const char *verdict)
{
    struct qreq *qr = container_of(s, struct qreq, seat);
    const char *outer = reqinfo_enter(qr->life.req); /* log lines name this request */
    reqlife_done(&qr->life);
    cached_header(qr->life.req, verdict);
    if (o->status != 200)
        answer_outcome(qr->life.w, qr->life.req, qr->q, qr, qr->life.started_us, o);
    else
        send_ok(qr, job, body, strcmp(verdict, "miss") == 0);
    reqinfo_leave(outer);
}

static void on_done(struct pgjob *job)
{
    struct qreq *qr = job->owner;
    const char *outer = reqinfo_enter(qr->life.req);
    reqlife_done(&qr->life);
    qr->job = NULL;
    send_result(qr, job);
    pgjob_free(job);
    reqinfo_leave(outer);
}

/* The request deadline (or the statement's, when the server did not enforce it) passed: the
 * statement was cancelled on the server (cleanup); the client gets 504. */
static void on_deadline(struct reqlife *life)
{
    struct qreq *qr = (struct qreq *)life;
    answer_error(life->w, life->req, qr->q, qr, life->started_us, 504,
                 qr->statement_deadline ? "statement timeout" : "the request deadline passed", NULL, NULL);
}

/* The client hung up while its statement ran (cleanup cancelled it). The answer only makes h2o
 * notice the closed connection and free the request. */
static void on_client_gone(struct reqlife *life)
{
    struct qreq *qr = (struct qreq *)life;
    http_send_error(life->req, 503, "unavailable", "the client closed the connection", qr->q->name, NULL);
}

static int set_value(struct qreq *qr, const char *name, size_t nlen, const char *text, size_t len,
                     json_t *json, char *err, size_t errlen)
{
    int i = query_def_param(qr->q, name, nlen);
    if (i < 0 && memchr(name, '\0', nlen) != NULL) { /* %00 in a query-string key */
        snprintf(err, errlen, "parameter names must not contain NUL bytes");
        return -1;
    }
    if (i < 0) {
        snprintf(err, errlen, "unknown parameter \"%.*s\"", (int)(nlen > 64 ? 64 : nlen), name);
        qr->bad_name = name;
        qr->bad_len = nlen;
        return -1;
    }
    qr->vals[i] = (struct pvalue){text, len, json, true};
    return 0;
}

struct qs_ctx {
    struct qreq *qr;
    char *err;
    size_t errlen;
};

static int on_query_pair(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    struct qs_ctx *c = arg;
    /* _-prefixed keys are cache busters (?_=1712345678), unless the query has such a parameter */
    if (klen > 0 && key[0] == '_' && query_def_param(c->qr->q, key, klen) < 0) return 0;
    return set_value(c->qr, key, klen, val, vlen, NULL, c->err, c->errlen) != 0 ? 1 : 0;
}

static int parse_query_string(struct qreq *qr, char *err, size_t errlen)
{
    struct qs_ctx c = {qr, err, errlen};
    int rc = http_query_foreach(qr->life.req, on_query_pair, &c);
    if (rc < 0) snprintf(err, errlen, "malformed percent-encoding in the query string");
    return rc != 0 ? -1 : 0;
}

static int parse_body(struct qreq *qr, char *err, size_t errlen, int *status)
{
    h2o_req_t *req = qr->life.req;
    struct query_def *q = qr->q;
    if (req->entity.base == NULL || req->entity.len == 0) return 0;
    if (!http_is_json(req)) {
        *status = 415;
        snprintf(err, errlen, "the body must be application/json");
        return -1;
    }
    json_error_t jerr;
    qr->body = jsonnum_load(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr);
    if (qr->body == NULL) {
        snprintf(err, errlen, "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return -1;
    }
    size_t given = json_is_object(qr->body)  ? json_object_size(qr->body)
                   : json_is_array(qr->body) ? json_array_size(qr->body)
                                             : 0;
    if (given > (size_t)worker_config(qr->life.w)->max_params) {
        snprintf(err, errlen, "the body has more than max_params (%d) parameters",
                 worker_config(qr->life.w)->max_params);
        return -1;
    }
    if (json_is_object(qr->body)) {
        const char *key;
        json_t *v;
        json_object_foreach(qr->body, key, v)
        {
            if (set_value(qr, key, strlen(key), NULL, 0, v, err, errlen) != 0) return -1;
        }
        return 0;
    }
    if (json_is_array(qr->body)) {
        /* trailing optional parameters may be left out */
        int n = (int)json_array_size(qr->body);
        if (n > q->nparams || (n < q->nparams && query_def_default(q, n) == NULL)) {
            snprintf(err, errlen, "expected %d parameters by position, got %d", q->nparams, n);
            return -1;
        }
        for (int i = 0; i < n; i++)
            qr->vals[i] = (struct pvalue){NULL, 0, json_array_get(qr->body, (size_t)i), true};
        return 0;
    }
    snprintf(err, errlen, "the body must be a JSON object (parameters by name) or array (by position)");
    return -1;
}

/* A streamed answer (stream.c) failed before its first byte, or ended. */
static void stream_failed(void *arg, const struct call_outcome *o)
{
    struct qreq *qr = arg;
    answer_outcome(qr->life.w, qr->life.req, qr->q, qr, qr->life.started_us, o);
}

static void stream_ended(void *arg, int status, const char *errmsg)
{
    struct qreq *qr = arg;
    struct outcome o;
    count(qr->life.w, qr->q, qr, status, qr->life.started_us, errmsg, &o);
    report(qr->life.w, qr->q, status, &o);
}

/* statement_timeout for q on pool: the query's timeout_ms, else the pool's. */
static int job_timeout_ms(struct worker *w, const struct query_def *q, int pool)
{
    return q->timeout_ms ? q->timeout_ms : w->pools[pool].cfg.statement_timeout_ms;
}

/* The request's deadline in ms from its arrival (0: none): request_timeout, or the statement's
 * timeout plus STATEMENT_GRACE_MS when that is earlier (*statement is then true). */
static uint64_t request_deadline_ms(struct qreq *qr, int timeout_ms, bool *statement)
{
    uint64_t deadline_ms = reqlife_request_timeout_ms(qr->life.w);
    *statement = false;
    /* request_timeout 0 means no request deadline; timeout_ms 0 means the server's alone. */
    if (timeout_ms > 0 && (deadline_ms == 0 || (uint64_t)timeout_ms + STATEMENT_GRACE_MS < deadline_ms)) {
        deadline_ms = (uint64_t)timeout_ms + STATEMENT_GRACE_MS;
        *statement = true;
    }
    return deadline_ms;
}

/* Runs job (bound already when it can be) on qr->pool_idx: streamed, or submitted to the pool
 * under the request's deadline. */
static void run(struct qreq *qr, struct pgjob *job)
{
    struct worker *w = qr->life.w;
    h2o_req_t *req = qr->life.req;
    struct query_def *q = qr->q;
    struct pool *pool = &w->pools[qr->pool_idx];
    job->timeout_ms = job_timeout_ms(w, q, qr->pool_idx);
    note_pool(w, req, qr->pool_idx);
    if (qr->fmt != STREAM_NONE) {
        /* Accept: text/csv or application/x-ndjson: rows as they come, on a connection of their own */
        reqlife_done(&qr->life); /* a wait for a standby ends here; the stream has its own deadline */
        struct stream_hooks hooks = {stream_failed, stream_ended, qr};
        stream_start(w, req, q, pool, qr->fmt, job, &hooks);
        pgjob_free(job);
        return;
    }
    uint64_t deadline_ms = request_deadline_ms(qr, job->timeout_ms, &qr->statement_deadline);
    uint64_t left_ms = deadline_ms;
    if (deadline_ms > 0) {
        job->deadline_us = qr->life.started_us + deadline_ms * 1000;
        uint64_t spent_ms = (now_us() - qr->life.started_us) / 1000; /* a wait for a standby */
        left_ms = spent_ms < deadline_ms ? deadline_ms - spent_ms : 1;
    }
    reqlife_wait(&qr->life, left_ms);
    if (qr->seat.active) {
        qr->seat.lsn = cached_read_lsn(qr->pool_idx, qr->token);
        if (qr->token == 0) { /* identical requests from now on share this execution */
            cached_lead(w, &qr->seat, job, on_flight_answer, bind_seat);
            if (pool_submit(pool, job) != 0) {
                struct call_outcome o;
                call_error(&o, 503, job->errmsg);
                http_retry_after(req, pool_retry_after(pool));
                cached_refused(job, &o);
            }
            return;
        }
    }
    qr->job = job;
    if (pool_submit(pool, job) != 0) {
        reqlife_done(&qr->life);
        qr->job = NULL;
        http_retry_after(req, pool_retry_after(pool));
        answer_error(w, req, q, qr, qr->life.started_us, 503, job->errmsg, NULL, NULL);
        pgjob_free(job);
    }
}

/* The store had the answer (hit), or an identical request in flight will share its outcome:
 * true when job is no longer needed (freed). */
static bool cached_answered(struct qreq *qr, struct pgjob *job)
{
    struct worker *w = qr->life.w;
    struct buf *b = &w->out;
    buf_reset(b);
    if (cached_lookup(&qr->seat, qr->q, qr->token, b)) {
        h2o_req_t *req = qr->life.req;
        cached_header(req, "hit");
        if (is_get(req))
            http_send_readonly_json_hashed(req, b->data, b->len,
                                           qr->seat.body_hash); /* 304 when the client has it */
        else
            http_send_json(req, 200, b->data, b->len);
        pgjob_free(job);
        return true;
    }
    if (qr->token == 0 && cached_join(w, &qr->seat, qr->q)) {
        reqlife_wait(&qr->life, request_deadline_ms(qr, job_timeout_ms(w, qr->q, qr->q->pool_idx),
                                                    &qr->statement_deadline));
        pgjob_free(job);
        return true;
    }
    return false;
}

/* A standby replayed the token, or the wait ended: the held job runs on pool. */
static void ryw_ready(struct ryw_wait *wt, int pool)
{
    struct qreq *qr = container_of(wt, struct qreq, ryw);
    struct pgjob *job = qr->held;
    qr->held = NULL;
    qr->pool_idx = pool;
    run(qr, job);
}

int query_handle(struct worker *w, h2o_req_t *req, struct query_def *q, const char **path_vals,
                 const size_t *path_lens, int npath)
{
    if (!auth_allow(w, req, q->auth, q->reg->L, q->auth_ref, q->name)) return 0;
    uint64_t started_us = now_us();
    bool get = is_get(req);
    bool post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    /* A route alias was matched on its method already; /query/{name} takes GET only when readonly. */
    if (path_vals == NULL && (!(get || post) || (get && !q->readonly))) {
        const char *allow = q->readonly ? "GET, POST" : "POST";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
        const char *msg = q->readonly ? "use GET or POST" : "this query writes: use POST";
        answer_error(w, req, q, NULL, started_us, 405, msg, NULL, NULL);
        return 0;
    }

    uint64_t token;
    int has_token = http_lsn_token(req, &token);
    if (has_token < 0) {
        answer_error(w, req, q, NULL, started_us, 400, HTTP_LSN_MALFORMED, NULL, NULL);
        return 0;
    }

    struct qreq *qr = reqlife_new(w, req, sizeof *qr, &query_kind, q->reg);
    qr->life.started_us = started_us;
    qr->q = q;
    qr->pool_idx = q->pool_idx;
    qr->vals = h2o_mem_alloc_pool(&req->pool, sizeof *qr->vals * (size_t)(q->nparams ? q->nparams : 1));
    memset(qr->vals, 0, sizeof *qr->vals * (size_t)(q->nparams ? q->nparams : 1));

    char err[256];
    int status = 400;
    /* Route segments bind by name, in the order the route names them. */
    for (int i = 0, k = 0; q->route && i < q->route->nsegs && k < npath; i++) {
        const char *seg = q->route->segs[i];
        if (seg[0] != '{') continue;
        int rc = set_value(qr, seg + 1, strlen(seg) - 2, path_vals[k], path_lens[k], NULL, err, sizeof err);
        k++;
        if (rc != 0) goto bad;
    }
    if (parse_query_string(qr, err, sizeof err) != 0 || parse_body(qr, err, sizeof err, &status) != 0)
        goto bad;
    for (int i = 0; i < q->nparams; i++) {
        json_t *dflt = qr->vals[i].set ? NULL : query_def_default(q, i);
        if (dflt != NULL) qr->vals[i] = (struct pvalue){NULL, 0, dflt, true};
        if (!qr->vals[i].set) {
            snprintf(err, sizeof err, "missing parameter \"%s\"", q->param_names[i]);
            qr->bad_name = q->param_names[i];
            qr->bad_len = strlen(q->param_names[i]);
            goto bad;
        }
    }

    bool routed;
    qr->pool_idx = route_pool(w, q, req, token, &routed);
    struct pgjob *job = pgjob_new(q, qr);
    job->bind = bind_params;
    job->on_done = on_done;
    qr->fmt = q->single ? STREAM_NONE : stream_wanted(req);
    /* A stream binds now: its statement is sent as text, without a prepare that would learn the
     * types. Otherwise the first use on a worker binds once the statement is described. */
    if ((qr->fmt != STREAM_NONE || q->described) && bind_params(job) != 0) {
        struct call_outcome o;
        job->status = PGJOB_BIND_ERROR;
        call_outcome(job, 0, &o); /* names the parameter */
        answer_outcome(w, req, q, qr, started_us, &o);
        pgjob_free(job);
        return 0;
    }
    if (qr->fmt == STREAM_NONE && q->readonly) {
        qr->token = has_token ? token : 0;
        cached_begin(&qr->seat, req, q, job);
        if (cached_answered(qr, job)) return 0;
    }
    if (has_token && q->readonly) {
        /* Read your writes: a standby serves it once it has replayed the token (ryw.h). */
        uint64_t deadline_ms =
            request_deadline_ms(qr, job_timeout_ms(w, q, q->pool_idx), &qr->statement_deadline);
        int p = ryw_pick(w, &qr->ryw, token, routed ? qr->pool_idx : -1, q->pool_idx,
                         deadline_ms ? started_us + deadline_ms * 1000 : 0, ryw_ready);
        if (p < 0) {
            qr->held = job;
            reqlife_wait(&qr->life, deadline_ms);
            return 0;
        }
        qr->pool_idx = p;
    }
    run(qr, job);
    return 0;

bad:;
    struct call_outcome o;
    call_error(&o, status, err);
    call_set_param(&o, qr->bad_name, qr->bad_len);
    answer_outcome(w, req, q, qr, started_us, &o);
    return 0;
}
