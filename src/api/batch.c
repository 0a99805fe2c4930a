/* batch.c — POST /batch with [{"query":"name","params":{..}|[..]}, ..].
 * Without a transaction every query is submitted at once (they pipeline over the pool) and the
 * reply is 200 with one {"status":s,"body":b} per item, b being what /query/{name} would answer.
 * With ?transaction=true they run in order in one transaction on one connection: all commit and
 * the reply is 200 with the items, or the first failure rolls everything back and is the reply,
 * with its "index". */
#include "batch.h"

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
#include "metrics.h"
#include "reqlife.h"
#include "route.h"
#include "ryw.h"
#include "txn.h"
#include "util.h"
#include "worker.h"

#define BATCH_MAX_ITEMS 1000

struct item {
    struct batch *b;
    struct query_def *q;
    json_t **vals;
    struct pgjob *job; /* in flight */
    int status;
    struct buf body;         /* the item's answer once known */
    struct ryw_wait ryw;     /* a readonly item waiting for a standby to replay the Sluice-LSN */
    struct pgjob *held;      /* ...its job, not submitted yet */
    struct cached_seat seat; /* a cached query's item: its key, to store the answer under */
};

struct batch {
    struct reqlife life; /* first: the request's lifecycle */
    json_t *doc;
    struct item *items;
    int n, pending, cur;
    bool transaction, answered;
    struct txn txn;
    bool txn_open;
    int fail_status; /* a failed transaction: its answer, sent once ROLLBACK is done */
    struct buf fail_body;
    uint64_t token; /* the request's Sluice-LSN, 0 without one */
    uint64_t lsn;   /* where the batch's writes are in the WAL (the answer's Sluice-LSN) */
};

/* The wait ended early (deadline, client gone, request freed): what still waits is dropped
 * (statements cancelled when they run alone on their connection, an open transaction's
 * connection closed, so the server rolls it back). */
static void cleanup(struct reqlife *life)
{
    struct batch *b = (struct batch *)life;
    for (int i = 0; i < b->n; i++) {
        struct item *it = &b->items[i];
        if (it->job) pool_abandon(it->job);
        it->job = NULL;
        ryw_cancel(&it->ryw);
        if (it->held) pgjob_free(it->held);
        it->held = NULL;
    }
    if (b->txn_open) txn_abandon(&b->txn);
    b->txn_open = false;
    b->answered = true;
}

static void dispose(struct reqlife *life)
{
    struct batch *b = (struct batch *)life;
    for (int i = 0; i < b->n; i++) {
        buf_free(&b->items[i].body);
        free(b->items[i].vals);
    }
    buf_free(&b->fail_body);
    free(b->items);
    if (b->doc) json_decref(b->doc);
}

static const struct reqlife_kind batch_kind = {.cleanup = cleanup, .dispose = dispose};

static void reply_items(struct batch *b)
{
    struct buf *out = &b->life.w->out;
    buf_reset(out);
    buf_putc(out, '[');
    for (int i = 0; i < b->n; i++) {
        buf_printf(out, "%s{\"status\":%d,\"body\":", i ? "," : "", b->items[i].status);
        buf_append(out, b->items[i].body.data, b->items[i].body.len);
        buf_putc(out, '}');
    }
    buf_putc(out, ']');
    b->answered = true;
    reqlife_done(&b->life);
    http_set_lsn(b->life.req, b->lsn);
    http_send_json(b->life.req, 200, out->data, out->len);
}

/* Per-query metrics for a batch item, as /query/{name} counts its answers. */
static void count_item(struct batch *b, struct item *it, const struct pgjob *job)
{
    uint64_t us;
    int pool = job->wait.pool ? (int)(job->wait.pool - b->life.w->pools) : it->q->pool_idx;
    if (job->status == PGJOB_OK) metrics_query_exec(b->life.w, it->q, pool, now_us() - job->sent_us);
    metrics_query_done(b->life.w, it->q, pool, it->status, b->life.started_us,
                       it->status == 200 ? NULL : job->errmsg, &us);
}

/* --- pipelined ------------------------------------------------------------------------------ */

static int bind_item(struct pgjob *job)
{
    struct item *it = job->owner;
    return call_bind(job, it->vals);
}

/* A cached query's item outside a transaction and without a Sluice-LSN: answered from the store
 * (true), or set up to fill it once its answer is in (cached.h). */
static bool answered_from_cache(struct batch *b, struct item *it, struct pgjob *job, int pool)
{
    if (it->q->cache_ttl_ms == 0 || b->token != 0) return false;
    cached_begin(&it->seat, b->life.req, it->q, job);
    it->seat.lsn = cached_read_lsn(pool, 0);
    if (!cached_lookup(&it->seat, it->q, 0, &it->body)) return false;
    it->status = 200;
    return true;
}

/* What /query/{name} would answer 200 to (its max_rows applies there), and so may be stored. */
static bool query_would_answer(const struct batch *b, const struct pgjob *job)
{
    struct call_outcome o;
    call_outcome(job, worker_config(b->life.w)->max_rows, &o);
    return o.status == 200;
}

static void on_item_done(struct pgjob *job)
{
    struct item *it = job->owner;
    const char *outer = reqinfo_enter(it->b->life.req); /* a failed item's log line names the batch */
    it->job = NULL;
    it->status = call_job_json(&it->body, job);
    if (it->status == 200 && it->seat.active && query_would_answer(it->b, job))
        cached_keep(&it->seat, it->q, &it->body);
    if (it->status == 200 && job->lsn > it->b->lsn) it->b->lsn = job->lsn;
    count_item(it->b, it, job);
    pgjob_free(job);
    if (--it->b->pending == 0) reply_items(it->b);
    reqinfo_leave(outer);
}

/* Submits the item's job to pool; a refusal is the item's answer at once. */
static void submit_item(struct batch *b, struct item *it, struct pgjob *job, struct pool *pool)
{
    job->timeout_ms = it->q->timeout_ms ? it->q->timeout_ms : pool->cfg.statement_timeout_ms;
    it->job = job;
    if (pool_submit(pool, job) != 0) {
        it->job = NULL;
        job->status = PGJOB_UNAVAILABLE;
        it->status = call_job_json(&it->body, job);
        pgjob_free(job);
        b->pending--;
    }
}

/* A readonly item's standby has replayed the token, or its wait ended. */
static void item_ready(struct ryw_wait *wt, int pool)
{
    struct item *it = container_of(wt, struct item, ryw);
    struct batch *b = it->b;
    struct pgjob *job = it->held;
    it->held = NULL;
    submit_item(b, it, job, &b->life.w->pools[pool]);
    if (b->pending == 0) reply_items(b);
}

static void run_pipelined(struct batch *b)
{
    struct worker *w = b->life.w;
    b->pending = b->n;
    for (int i = 0; i < b->n; i++) {
        struct item *it = &b->items[i];
        if (it->status != 0) { /* refused while parsing */
            b->pending--;
            continue;
        }
        /* each item on the pool sluice.route picks for it, as /query/{name} would */
        bool routed;
        int idx = route_pool(w, it->q, b->life.req, b->token, &routed);
        struct pgjob *job = pgjob_new(it->q, it);
        job->bind = bind_item;
        job->on_done = on_item_done;
        if (it->q->described && call_bind(job, it->vals) != 0) {
            it->status = call_job_json(&it->body, job);
            pgjob_free(job);
            b->pending--;
            continue;
        }
        if (answered_from_cache(b, it, job, idx)) {
            pgjob_free(job);
            b->pending--;
            continue;
        }
        if (b->token != 0 && it->q->readonly) {
            uint64_t ms = reqlife_request_timeout_ms(w);
            idx = ryw_pick(w, &it->ryw, b->token, routed ? idx : -1, it->q->pool_idx,
                           ms ? b->life.started_us + ms * 1000 : 0, item_ready);
            if (idx < 0) {
                it->held = job; /* submitted by item_ready */
                continue;
            }
        }
        submit_item(b, it, job, &w->pools[idx]);
    }
    if (b->pending == 0) reply_items(b);
}

/* --- in one transaction ----------------------------------------------------------------------- */

static void txn_step(struct txn *t, PGresult *r);
static void step_logged(struct batch *b, struct txn *t, PGresult *r);

/* The failing item's error, with its index, becomes the answer; it is sent once the rollback is
 * done, so the connection goes back to the pool clean instead of being discarded. */
static void fail_txn(struct batch *b, int index, int status, struct buf *body)
{
    if (b->fail_status) return;
    b->fail_status = status;
    if (body->len > 2 && strncmp(body->data, "{\"error\":{", 10) == 0) {
        buf_append(&b->fail_body, body->data, body->len - 2);
        buf_printf(&b->fail_body, ",\"index\":%d}}", index);
    } else {
        buf_append(&b->fail_body, body->data, body->len);
    }
}

static void answer_failure(struct batch *b)
{
    if (b->fail_status == 503) http_retry_after(b->life.req, 1);
    b->answered = true;
    reqlife_done(&b->life);
    http_send_json(b->life.req, b->fail_status, b->fail_body.data, b->fail_body.len);
}

static void on_finished(struct txn *t, PGresult *r)
{
    struct batch *b = t->arg;
    bool committed = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK && !t->failed;
    txn_close(t);
    b->txn_open = false;
    if (b->answered) return;
    if (b->fail_status) {
        answer_failure(b);
        return;
    }
    if (committed) {
        b->lsn = t->lsn;
        reply_items(b);
        return;
    }
    struct buf body = BUF_INIT;
    buf_puts(&body, "{\"error\":{\"code\":\"unavailable\",\"message\":\"the transaction did not commit\"}}");
    fail_txn(b, b->n - 1, 503, &body);
    buf_free(&body);
    answer_failure(b);
}

static void next_item(struct batch *b)
{
    while (b->cur < b->n) {
        struct item *it = &b->items[b->cur];
        if (it->status != 0) { /* refused while parsing: the whole transaction fails */
            fail_txn(b, b->cur, it->status, &it->body);
            txn_finish(&b->txn, false, on_finished);
            return;
        }
        int rc = txn_query(&b->txn, it->q, it->vals, txn_step);
        if (rc == 0) return;
        struct buf body = BUF_INIT;
        struct call_outcome o;
        call_error(&o, rc == -2 ? 503 : 400, b->txn.errmsg);
        const char *param = rc != -2 ? query_param_name(it->q, b->txn.bad_param) : NULL;
        if (param) call_set_param(&o, param, strlen(param));
        call_write_json(&body, &o, NULL);
        fail_txn(b, b->cur, rc == -2 ? 503 : 400, &body);
        buf_free(&body);
        if (rc == -2) {
            txn_close(&b->txn);
            b->txn_open = false;
            answer_failure(b);
        } else {
            txn_finish(&b->txn, false, on_finished);
        }
        return;
    }
    txn_finish(&b->txn, true, on_finished);
}

static void txn_step(struct txn *t, PGresult *r)
{
    struct batch *b = t->arg;
    const char *outer = reqinfo_enter(b->life.req);
    step_logged(b, t, r);
    reqinfo_leave(outer);
}

static void step_logged(struct batch *b, struct txn *t, PGresult *r)
{
    if (r == NULL) { /* no connection, or it was lost */
        if (b->txn_open) txn_close(t);
        b->txn_open = false;
        struct buf body = BUF_INIT;
        buf_puts(&body, "{\"error\":{\"code\":\"unavailable\",\"message\":");
        jsonw_string(&body, t->errmsg, strlen(t->errmsg));
        buf_puts(&body, "}}");
        fail_txn(b, b->cur, 503, &body);
        buf_free(&body);
        answer_failure(b);
        return;
    }
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK;
    if (b->cur < 0 && !ok) { /* BEGIN failed */
        struct buf body = BUF_INIT;
        buf_puts(&body, "{\"error\":{\"code\":\"unavailable\",\"message\":\"cannot begin a transaction\"}}");
        fail_txn(b, 0, 503, &body);
        buf_free(&body);
        txn_finish(t, false, on_finished);
        return;
    }
    if (b->cur >= 0) {
        struct item *it = &b->items[b->cur];
        struct pgjob tmp = {.q = it->q, .result = r, .status = ok ? PGJOB_OK : PGJOB_DB_ERROR};
        it->status = call_job_json(&it->body, &tmp);
        if (it->status != 200) {
            fail_txn(b, b->cur, it->status, &it->body);
            txn_finish(t, false, on_finished);
            return;
        }
    }
    b->cur++;
    next_item(b);
}

/* --- parsing ---------------------------------------------------------------------------------- */

static int parse(struct batch *b, char *err, size_t errlen)
{
    h2o_req_t *req = b->life.req;
    json_error_t jerr;
    b->doc = jsonnum_load(req->entity.base ? req->entity.base : "", req->entity.len, JSON_REJECT_DUPLICATES,
                          &jerr);
    if (b->doc == NULL) {
        snprintf(err, errlen, "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        return -1;
    }
    if (!json_is_array(b->doc) || json_array_size(b->doc) == 0) {
        snprintf(err, errlen, "the body must be a non-empty JSON array of {\"query\":..,\"params\":..}");
        return -1;
    }
    if (json_array_size(b->doc) > BATCH_MAX_ITEMS) {
        snprintf(err, errlen, "at most %d queries per batch", BATCH_MAX_ITEMS);
        return -1;
    }
    b->n = (int)json_array_size(b->doc);
    b->items = xcalloc((size_t)b->n, sizeof *b->items);
    for (int i = 0; i < b->n; i++) {
        struct item *it = &b->items[i];
        it->b = b;
        json_t *e = json_array_get(b->doc, (size_t)i);
        json_t *jname = json_object_get(e, "query");
        const char *name = json_string_value(jname);
        char why[256];
        /* NUL bytes pass the parser (jsonnum_load): a name holding one names no query */
        if (!json_is_object(e) || name == NULL || strlen(name) != json_string_length(jname)) {
            snprintf(err, errlen, "item %d: expected {\"query\":\"name\",\"params\":..}", i);
            return -1;
        }
        const char *key;
        json_t *v;
        json_object_foreach(e, key, v)
        {
            if (strcmp(key, "query") != 0 && strcmp(key, "params") != 0) {
                snprintf(err, errlen, "item %d: unknown key \"%.32s\"", i, key);
                return -1;
            }
        }
        it->q = registry_find(b->life.reg, name, strlen(name));
        if (it->q == NULL) {
            it->status = 404;
            buf_puts(&it->body,
                     "{\"error\":{\"code\":\"not_found\",\"message\":\"no such query\",\"query\":");
            jsonw_string(&it->body, name, strlen(name));
            buf_puts(&it->body, "}}");
            continue;
        }
        it->vals = xcalloc((size_t)(it->q->nparams ? it->q->nparams : 1), sizeof *it->vals);
        const char *param;
        if (call_resolve(it->q, json_object_get(e, "params"), it->vals, why, sizeof why, &param) != 0) {
            struct call_outcome o;
            call_error(&o, 400, why);
            if (param) call_set_param(&o, param, strlen(param));
            it->status = 400;
            call_write_json(&it->body, &o, name);
        }
    }
    return 0;
}

int batch_handle(struct worker *w, h2o_req_t *req)
{
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        http_send_error(req, 405, "method_not_allowed", "use POST", NULL, NULL);
        return 0;
    }
    if (!http_is_json(req)) {
        http_send_error(req, 415, "unsupported_media_type", "the body must be application/json", NULL, NULL);
        return 0;
    }
    uint64_t token;
    int has_token = http_lsn_token(req, &token);
    if (has_token < 0) {
        http_send_error(req, 400, "bad_request", HTTP_LSN_MALFORMED, NULL, NULL);
        return 0;
    }
    struct batch *b = reqlife_new(w, req, sizeof *b, &batch_kind, w->reg);
    b->token = has_token ? token : 0;
    if (req->query_at != SIZE_MAX) {
        h2o_iovec_t qs =
            h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
        b->transaction = h2o_memis(qs.base, qs.len, H2O_STRLIT("transaction=true"));
    }
    char err[256];
    if (parse(b, err, sizeof err) != 0) {
        http_send_error(req, 400, "bad_request", err, NULL, NULL);
        return 0;
    }
    /* A batch may run only what its caller may call on its own: the first refusal answers for all. */
    for (int i = 0; i < b->n; i++) {
        struct query_def *q = b->items[i].q;
        if (q != NULL && q->auth != AUTH_NONE &&
            !auth_allow(w, req, q->auth, q->reg->L, q->auth_ref, q->name))
            return 0;
    }
    reqlife_wait(&b->life, reqlife_request_timeout_ms(w));
    if (!b->transaction) {
        run_pipelined(b);
        return 0;
    }
    /* One transaction on the pool of the first query. */
    struct query_def *first = NULL;
    for (int i = 0; i < b->n && first == NULL; i++) first = b->items[i].q;
    struct pool *pool = &w->pools[first ? first->pool_idx : 0];
    b->cur = -1;
    if (txn_open(&b->txn, pool, txn_step, b) != 0) {
        reqlife_done(&b->life);
        http_send_error(req, 503, "unavailable", b->txn.errmsg, NULL, NULL);
        return 0;
    }
    b->txn_open = true;
    return 0;
}
