/* explain.c — GET /admin/explain/{name}?params[&analyze=true]. The plan comes from a transaction
 * that is always rolled back, so even EXPLAIN ANALYZE of a readonly query leaves nothing behind;
 * writes are never analyzed. */
#include "explain.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "call.h"
#include "http.h"
#include "jsonw.h"
#include "reqlife.h"
#include "txn.h"
#include "util.h"
#include "worker.h"

struct explain {
    struct reqlife life; /* first: the request's lifecycle */
    struct query_def *q;
    json_t *params;
    json_t **vals;
    struct txn txn;
    bool open, analyze;
    int status;
    struct buf body; /* the answer, sent once the rollback is done */
};

/* The wait ended early: the transaction's connection is closed, so the server rolls back. */
static void cleanup(struct reqlife *life)
{
    struct explain *e = (struct explain *)life;
    if (e->open) txn_abandon(&e->txn);
    e->open = false;
}

static void dispose(struct reqlife *life)
{
    struct explain *e = (struct explain *)life;
    if (e->params) json_decref(e->params);
    free(e->vals);
    buf_free(&e->body);
}

static const struct reqlife_kind explain_kind = {.cleanup = cleanup, .dispose = dispose};

static void answer(struct explain *e)
{
    reqlife_done(&e->life);
    if (e->status == 503) http_retry_after(e->life.req, 1);
    http_send_json(e->life.req, e->status, e->body.data, e->body.len);
}

static void error_body(struct explain *e, int status, const char *msg, const char *sqlstate)
{
    e->status = status;
    buf_reset(&e->body);
    http_error_body(&e->body, http_error_code(status), msg, e->q->name, sqlstate);
}

static void on_rolled_back(struct txn *t, PGresult *r)
{
    struct explain *e = t->arg;
    txn_close(t);
    e->open = false;
    answer(e);
}

static void on_plan(struct txn *t, PGresult *r)
{
    struct explain *e = t->arg;
    if (r == NULL) {
        txn_close(t);
        e->open = false;
        error_body(e, 503, t->errmsg, NULL);
        answer(e);
        return;
    }
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        e->status = 200;
        buf_reset(&e->body);
        buf_puts(&e->body, "{\"query\":");
        jsonw_string(&e->body, e->q->name, strlen(e->q->name));
        buf_puts(&e->body, ",\"plan\":");
        buf_append(&e->body, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0)); /* already JSON */
        buf_putc(&e->body, '}');
    } else {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        int status = state && strncmp(state, "22", 2) == 0 ? 400 : 500;
        error_body(e, status, msg ? msg : "explain failed", state);
    }
    txn_finish(t, false, on_rolled_back);
}

static void on_begun(struct txn *t, PGresult *r)
{
    struct explain *e = t->arg;
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
        if (e->open) txn_close(t);
        e->open = false;
        error_body(e, 503, r == NULL ? t->errmsg : "cannot begin a transaction", NULL);
        answer(e);
        return;
    }
    struct buf sql = BUF_INIT;
    buf_printf(&sql, "EXPLAIN (FORMAT JSON%s) %s", e->analyze ? ", ANALYZE, BUFFERS" : "",
               e->q->sql_numbered);
    int rc = txn_query_sql(t, sql.data, e->q, e->vals, on_plan);
    buf_free(&sql);
    if (rc == 0) return;
    error_body(e, rc == -2 ? 503 : 400, t->errmsg, NULL);
    if (rc == -2) {
        txn_close(t);
        e->open = false;
        answer(e);
    } else {
        txn_finish(t, false, on_rolled_back);
    }
}

/* Parameters come from the query string as strings in PostgreSQL's input syntax; analyze is ours. */
struct explain_args {
    json_t *params;
    bool analyze;
};

static int on_query_pair(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    struct explain_args *a = arg;
    if (strcmp(key, "analyze") == 0) {
        a->analyze = strcmp(val, "true") == 0 || strcmp(val, "1") == 0;
    } else {
        json_t *v = json_stringn(val, vlen); /* NULL for invalid UTF-8: the server would refuse it too */
        json_object_set_new(a->params, key, v ? v : json_null());
    }
    return 0;
}

int explain_handle(struct worker *w, h2o_req_t *req, const char *name, size_t len)
{
    struct query_def *q = registry_find(w->reg, name, len);
    if (q == NULL) {
        http_send_error(req, 404, "not_found", "no such query", NULL, NULL);
        return 0;
    }
    /* Parameters from the query string, as strings in PostgreSQL's input syntax. */
    struct explain_args a = {json_object(), false};
    if (http_query_foreach(req, on_query_pair, &a) < 0) {
        json_decref(a.params);
        http_send_error(req, 400, "bad_request", "malformed percent-encoding in the query string", q->name,
                        NULL);
        return 0;
    }
    json_t *params = a.params;
    bool analyze = a.analyze;
    if (analyze && !q->readonly) {
        json_decref(params);
        http_send_error(req, 400, "bad_request", "analyze=true runs the query: only for readonly queries",
                        q->name, NULL);
        return 0;
    }
    json_t **vals = xcalloc((size_t)(q->nparams ? q->nparams : 1), sizeof *vals);
    char err[256];
    if (call_resolve(q, params, vals, err, sizeof err, NULL) != 0) {
        json_decref(params);
        free(vals);
        http_send_error(req, 400, "bad_request", err, q->name, NULL);
        return 0;
    }
    struct explain *e = reqlife_new(w, req, sizeof *e, &explain_kind, q->reg);
    e->q = q;
    e->params = params;
    e->vals = vals;
    e->analyze = analyze;
    reqlife_wait(&e->life, reqlife_request_timeout_ms(w));
    if (txn_open(&e->txn, &w->pools[q->pool_idx], on_begun, e) != 0) {
        error_body(e, 503, e->txn.errmsg, NULL);
        answer(e);
        return 0;
    }
    e->open = true;
    return 0;
}
