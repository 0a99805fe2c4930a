/* handler.c — Lua handlers run as coroutines on the worker's Lua state. A sluice.db call starts a
 * job (or a transaction step) and yields; its completion resumes the coroutine with the result.
 * A coroutine is anchored in the Lua registry exactly once and released exactly once. Errors
 * raised with a table {status=, code=, message=} become that HTTP error; any other Lua error is a
 * 500 with the traceback in the log. A handler that computes for HANDLER_CPU_LIMIT_MS without
 * yielding is stopped by an instruction-count hook. */
#include "handler.h"

#include "guard.h"

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "call.h"
#include "http.h"
#include "reqinfo.h"
#include "httpheader.h"
#include "jsonw.h"
#include "log.h"
#include "luajson.h"
#include "metrics.h"
#include "reqlife.h"
#include "reqstats.h"
#include "script.h"
#include "txn.h"
#include "util.h"
#include "worker.h"

#define HANDLER_CPU_LIMIT_MS 1000
#define HOOK_EVERY           10000 /* instructions between checks of the limit */

struct hreq {
    struct reqlife life; /* first: the request's lifecycle; it waits while the coroutine lives */
    struct handler_def *h;
    lua_State *L; /* the state of the generation the handler came from */
    lua_State *co;
    int co_ref; /* LUA_NOREF once released */
    json_t *body;
    struct pgjob *job; /* a pending sluice.db.query */
    json_t *params;    /* its parameters (kept alive for the bind) */
    json_t **vals;
    struct txn txn;
    struct query_def *txn_query; /* the query of the transaction step in flight */
    bool in_txn;
    bool calling; /* inside a sluice.db C function: an outcome now must not resume */
    bool sync;    /* ...and one arrived: sync_n values are on the stack */
    int sync_n;
    uint64_t resumed_ms;
    uint64_t lsn; /* where the handler's writes and commits are in the WAL (Sluice-LSN) */
};

static __thread struct hreq *running; /* the handler being resumed on this worker */

static void resume(struct hreq *hr, int nargs);
static void resume_logged(struct hreq *hr, int nargs);

/* Hands n values (pushed on the coroutine) to the waiting sluice.db call: resumes it, or, when the
 * outcome arrived while the call was still starting, lets the call return them directly. */
static void deliver(struct hreq *hr, int n)
{
    if (hr->calling) {
        hr->sync = true;
        hr->sync_n = n;
        return;
    }
    resume(hr, n);
}

/* The end of every sluice.db C function that started something. */
static int wait_outcome(lua_State *co, struct hreq *hr)
{
    hr->calling = false;
    if (hr->sync) {
        hr->sync = false;
        return hr->sync_n;
    }
    return lua_yield(co, 0);
}

/* --- answering -------------------------------------------------------------------------------- */

static void release(struct hreq *hr)
{
    if (hr->co_ref != LUA_NOREF) luaL_unref(hr->L, LUA_REGISTRYINDEX, hr->co_ref);
    hr->co_ref = LUA_NOREF;
    hr->co = NULL;
}

/* The handler ends while it waits on the database (deadline, client gone, request freed) without
 * being resumed: its query is cancelled or its transaction rolled back (the connection is
 * discarded), and the coroutine released. */
static void cleanup(struct reqlife *life)
{
    struct hreq *hr = (struct hreq *)life;
    if (hr->job) pool_abandon(hr->job);
    hr->job = NULL;
    if (hr->in_txn) txn_abandon(&hr->txn);
    hr->in_txn = false;
    release(hr);
    script_collect(hr->L, false);
}

/* Timers only run while the handler waits (it computes on this thread), so this is a wait. */
static void on_deadline(struct reqlife *life)
{
    struct hreq *hr = (struct hreq *)life;
    log_printf(LOG_WARN, "handler %s: the request deadline passed", hr->h->name);
    http_send_error(life->req, 504, "timeout", "the request deadline passed", NULL, NULL);
}

static void dispose(struct reqlife *life)
{
    struct hreq *hr = (struct hreq *)life;
    if (hr->in_txn) txn_abandon(&hr->txn); /* a handler that failed inside its transaction */
    if (hr->params) json_decref(hr->params);
    free(hr->vals);
    if (hr->body) json_decref(hr->body);
}

static const struct reqlife_kind handler_kind = {
    .cleanup = cleanup, .on_deadline = on_deadline, .dispose = dispose};

/* Tables in a handler's answer nest at most this deep (a table inside itself meets it too). */
#define ANSWER_MAX_DEPTH 64

/* A worker's output buffer grown past this by one big answer is released after it is sent. */
#define KEEP_OUT_BYTES (1u << 20)

/* True when the handler's headers (the table at index 3) name a Content-Type. */
static bool has_content_type(lua_State *co)
{
    bool found = false;
    lua_pushnil(co);
    while (!found && lua_next(co, 3) != 0) {
        size_t n;
        const char *k = lua_type(co, -2) == LUA_TSTRING ? lua_tolstring(co, -2, &n) : NULL;
        found = k != NULL && h2o_lcstris(k, n, H2O_STRLIT("content-type")) && lua_type(co, -1) == LUA_TSTRING;
        lua_pop(co, found ? 2 : 1);
    }
    return found;
}

/* Checks every header the handler returned (the table at index 3) before any is added: one
 * refused header refuses the answer (logged with the endpoint and the header's name). Names and
 * values that are not strings are skipped, as they always were. */
static bool headers_ok(struct hreq *hr, bool typed)
{
    lua_State *co = hr->co;
    lua_pushnil(co);
    while (lua_next(co, 3) != 0) {
        if (lua_type(co, -2) == LUA_TSTRING && lua_type(co, -1) == LUA_TSTRING) {
            size_t kl, vl;
            const char *k = lua_tolstring(co, -2, &kl), *v = lua_tolstring(co, -1, &vl);
            /* a typed answer names its own Content-Type: only its value is checked */
            bool own_type = typed && h2o_lcstris(k, kl, H2O_STRLIT("content-type"));
            enum httpheader_check c =
                own_type ? httpheader_check("x", 1, v, vl) : httpheader_check(k, kl, v, vl);
            if (c != HTTPHEADER_OK) {
                char name[96];
                log_printf(LOG_ERROR, "handler %s: response header \"%s\" %s; answered 500", hr->h->name,
                           httpheader_printable(name, sizeof name, k, kl), httpheader_problem(c));
                lua_pop(co, 2);
                return false;
            }
        }
        lua_pop(co, 1);
    }
    return true;
}

/* Adds the checked headers, names in lower case (HTTP/2 requires it; h2o only recognises its
 * own headers that way). */
static void add_headers(struct hreq *hr)
{
    lua_State *co = hr->co;
    h2o_mem_pool_t *pool = &hr->life.req->pool;
    lua_pushnil(co);
    while (lua_next(co, 3) != 0) {
        if (lua_type(co, -2) == LUA_TSTRING && lua_type(co, -1) == LUA_TSTRING) {
            size_t kl, vl;
            const char *k = lua_tolstring(co, -2, &kl), *v = lua_tolstring(co, -1, &vl);
            h2o_iovec_t name = h2o_strdup(pool, k, kl);
            h2o_strtolower(name.base, name.len);
            h2o_add_header_by_str(pool, &hr->life.req->res.headers, name.base, name.len, 1, NULL,
                                  h2o_strdup(pool, v, vl).base, vl);
        }
        lua_pop(co, 1);
    }
}

/* Writes the body (index 2; nil is an empty body) into b, within max_response_bytes and
 * ANSWER_MAX_DEPTH. Returns NULL, or the client's message after logging what was refused. */
static const char *write_body(struct hreq *hr, struct buf *b)
{
    lua_State *co = hr->co;
    buf_reset(b);
    if (lua_gettop(co) < 2 || lua_isnil(co, 2)) return NULL;
    size_t max = worker_config(hr->life.w)->max_response_bytes;
    struct luajson_limits lim = {.max_bytes = max, .max_depth = ANSWER_MAX_DEPTH, .cut = false};
    enum luajson_status st = luajson_write(co, 2, b, &lim);
    switch (st) {
    case LUAJSON_OK:
        return NULL;
    case LUAJSON_TOO_LARGE:
        log_printf(LOG_ERROR, "handler %s: the answer is larger than max_response_bytes (%zu); answered 500",
                   hr->h->name, max);
        return "the handler's answer is larger than max_response_bytes";
    case LUAJSON_TOO_DEEP:
    case LUAJSON_CYCLE:
        break;
    }
    log_printf(LOG_ERROR, "handler %s: the answer %s (%d levels); answered 500", hr->h->name,
               luajson_status_text(st), ANSWER_MAX_DEPTH);
    return st == LUAJSON_CYCLE ? "the handler's answer holds a table inside itself"
                               : "the handler's answer nests tables deeper than 64 levels";
}

/* The coroutine returned: status, body [, headers]. Headers are checked first and added only to
 * an answer that is sent: a refused header or body is a 500 without them. */
static void answer(struct hreq *hr)
{
    lua_State *co = hr->co;
    int n = lua_gettop(co);
    int status = n >= 1 && lua_isnumber(co, 1) ? (int)lua_tointeger(co, 1) : 200;
    if (status < 100 || status > 599) status = 500;
    bool has_headers = n >= 3 && lua_istable(co, 3);
    /* A string body under the handler's own Content-Type is the body itself (a page, a file) */
    bool typed = has_headers && lua_type(co, 2) == LUA_TSTRING && has_content_type(co);
    if (has_headers && !headers_ok(hr, typed)) {
        http_send_error(hr->life.req, 500, "internal",
                        "the handler returned a response header that is not allowed", NULL, NULL);
        return;
    }
    if (typed) {
        size_t len;
        const char *text = lua_tolstring(co, 2, &len);
        if (len > worker_config(hr->life.w)->max_response_bytes) {
            log_printf(LOG_ERROR, "handler %s: the answer is larger than max_response_bytes; answered 500",
                       hr->h->name);
            http_send_error(hr->life.req, 500, "internal",
                            "the handler's answer is larger than max_response_bytes", NULL, NULL);
            return;
        }
        add_headers(hr);
        http_send_typed(hr->life.req, status, text, len);
        return;
    }
    struct buf *b = &hr->life.w->out;
    const char *refused = write_body(hr, b);
    if (refused) {
        http_send_error(hr->life.req, 500, "internal", refused, NULL, NULL);
    } else {
        if (has_headers) add_headers(hr);
        /* a successful answer after writes says where they are, unless the handler said it */
        if (status < 300 &&
            h2o_find_header_by_str(&hr->life.req->res.headers, H2O_STRLIT("sluice-lsn"), -1) < 0)
            http_set_lsn(hr->life.req, hr->lsn);
        http_send_json(hr->life.req, status, b->data ? b->data : "", b->len);
    }
    if (b->cap > KEEP_OUT_BYTES) buf_free(b); /* h2o sent a copy */
}

/* The coroutine raised: a {status, code, message} table is that error, anything else a 500. */
static void answer_error(struct hreq *hr)
{
    lua_State *co = hr->co;
    if (lua_istable(co, -1)) {
        lua_getfield(co, -1, "status");
        int status = (int)lua_tointeger(co, -1);
        lua_getfield(co, -2, "code");
        lua_getfield(co, -3, "message");
        lua_getfield(co, -4, "query");
        lua_getfield(co, -5, "sqlstate");
        lua_getfield(co, -6, "param");
        const char *code = lua_tostring(co, -5), *msg = lua_tostring(co, -4), *param = lua_tostring(co, -1);
        if (status >= 400 && status <= 599 && msg && param) { /* about one parameter: say which */
            struct call_outcome o;
            call_error(&o, status, msg);
            o.sqlstate = lua_tostring(co, -2);
            call_set_param(&o, param, strlen(param));
            struct buf *b = &hr->life.w->out;
            buf_reset(b);
            call_write_json(b, &o, lua_tostring(co, -3));
            http_send_json(hr->life.req, status, b->data, b->len);
            return;
        }
        if (status >= 400 && status <= 599 && msg) {
            http_send_error(hr->life.req, status, code ? code : http_error_code(status), msg,
                            lua_tostring(co, -3), lua_tostring(co, -2));
            return;
        }
    }
    const char *msg = lua_tostring(co, -1);
    luaL_traceback(hr->L, co, msg ? msg : "(error object is not a string)", 0);
    log_printf(LOG_ERROR, "handler %s failed: %s", hr->h->name, lua_tostring(hr->L, -1));
    lua_pop(hr->L, 1);
    http_send_error(hr->life.req, 500, "internal", "internal error", NULL, NULL);
}

static void on_hook(lua_State *L, lua_Debug *ar)
{
    if (running != NULL && now_ms() - running->resumed_ms > HANDLER_CPU_LIMIT_MS)
        guard_trip(L, "handler ran for more than 1000 ms without waiting on the database");
}

static void resume(struct hreq *hr, int nargs)
{
    const char *outer = reqinfo_enter(hr->life.req);
    resume_logged(hr, nargs);
    reqinfo_leave(outer);
}

static void resume_logged(struct hreq *hr, int nargs)
{
    running = hr;
    guard_arm();
    hr->resumed_ms = now_ms();
    script_enforce_limit(hr->L, true);
    int rc = lua_resume(hr->co, nargs);
    script_enforce_limit(hr->L, false);
    running = NULL;
    if (rc == LUA_YIELD) return; /* waiting on the database */
    reqlife_done(&hr->life);
    if (rc == 0)
        answer(hr);
    else
        answer_error(hr);
    release(hr);
    script_collect(hr->L, rc != 0); /* the coroutine is unanchored: its garbage goes too */
}

/* --- sluice.db --------------------------------------------------------------------------------- */

/* Raises {status, code, message [, param]}: param names the parameter the error is about. */
static int raise_about(lua_State *co, int status, const char *msg, const char *param)
{
    if (running) running->calling = false;
    lua_newtable(co);
    lua_pushinteger(co, status);
    lua_setfield(co, -2, "status");
    lua_pushstring(co, http_error_code(status));
    lua_setfield(co, -2, "code");
    lua_pushstring(co, msg);
    lua_setfield(co, -2, "message");
    if (param) {
        lua_pushstring(co, param);
        lua_setfield(co, -2, "param");
    }
    return lua_error(co);
}

static int raise(lua_State *co, int status, const char *msg)
{
    return raise_about(co, status, msg, NULL);
}

static struct query_def *named(lua_State *co, struct hreq *hr, int idx)
{
    size_t len;
    const char *name = luaL_checklstring(co, idx, &len);
    struct query_def *q = registry_find(hr->life.reg, name, len); /* the handler's own generation */
    if (q == NULL) {
        char msg[160];
        snprintf(msg, sizeof msg, "no query named \"%.100s\"", name);
        raise(co, 500, msg);
    }
    return q;
}

/* Keeps the parameters alive on hr and orders them for q. Raises a 400 on a bad parameter, a
 * 500 when the table is past max_body_bytes (what a request body may be), nests deeper than
 * ANSWER_MAX_DEPTH or holds itself. */
static void take_params(lua_State *co, struct hreq *hr, struct query_def *q, int idx)
{
    if (hr->params) json_decref(hr->params);
    hr->params = NULL;
    free(hr->vals);
    hr->vals = xcalloc((size_t)(q->nparams ? q->nparams : 1), sizeof *hr->vals);
    if (!lua_isnoneornil(co, idx)) {
        struct luajson_limits lim = {.max_bytes = worker_config(hr->life.w)->max_body_bytes,
                                     .max_depth = ANSWER_MAX_DEPTH,
                                     .cut = false};
        enum luajson_status st;
        /* the walk grows the stack only: a memory error there would leak the half-built value */
        bool was = script_enforce_limit(hr->L, false);
        hr->params = luajson_from_lua(co, idx, &lim, &st);
        script_enforce_limit(hr->L, was);
        if (hr->params == NULL) {
            char msg[160];
            snprintf(msg, sizeof msg, "the parameters table of \"%.80s\" %s", q->name,
                     st == LUAJSON_TOO_LARGE ? "is larger than max_body_bytes" : luajson_status_text(st));
            raise(co, 500, msg);
        }
    }
    char err[256];
    const char *param;
    if (call_resolve(q, hr->params, hr->vals, err, sizeof err, &param) != 0) {
        char name[64];
        snprintf(name, sizeof name, "%s", param ? param : "");
        raise_about(co, 400, err, param ? name : NULL); /* a copy: param may be in hr->params */
    }
}

static int bind_job(struct pgjob *job)
{
    struct hreq *hr = job->owner;
    return call_bind(job, hr->vals);
}

static void on_query_done(struct pgjob *job)
{
    struct hreq *hr = job->owner;
    hr->job = NULL;
    struct call_outcome o;
    call_outcome(job, 0, &o);
    int status = o.status;
    int pool = (int)(job->wait.pool - hr->life.w->pools);
    uint64_t us;
    if (job->status == PGJOB_OK) metrics_query_exec(hr->life.w, job->q, pool, now_us() - job->sent_us);
    metrics_query_done(hr->life.w, job->q, pool, status, job->wait.queued_us ? job->wait.queued_us : now_us(),
                       status == 200 ? NULL : job->errmsg, &us);
    if (o.status == 200 && job->lsn > hr->lsn) hr->lsn = job->lsn;
    int n = call_push_lua(hr->co, &o, job->q->name);
    pgjob_free(job); /* after the push: o borrows the result */
    deliver(hr, n);
}

static struct hreq *current(lua_State *co)
{
    if (running == NULL || running->co != co) luaL_error(co, "sluice.db can only be used inside a handler");
    return running;
}

/* sluice.db._query(name, params) -> result | nil, err (yields) */
static int l_query(lua_State *co)
{
    struct hreq *hr = current(co);
    if (hr->in_txn) return raise(co, 500, "inside sluice.db.transaction use tx:query");
    struct query_def *q = named(co, hr, 1);
    take_params(co, hr, q, 2);
    struct pool *pool = &hr->life.w->pools[q->pool_idx];
    struct pgjob *job = pgjob_new(q, hr);
    job->bind = bind_job;
    job->on_done = on_query_done;
    job->timeout_ms = q->timeout_ms ? q->timeout_ms : pool->cfg.statement_timeout_ms;
    if (q->described && call_bind(job, hr->vals) != 0) {
        char msg[sizeof job->errmsg];
        snprintf(msg, sizeof msg, "%s", job->errmsg);
        int bad = job->bad_param; /* read before the job is freed */
        pgjob_free(job);
        return raise_about(co, 400, msg, bad >= 0 && bad < q->nparams ? q->param_names[bad] : NULL);
    }
    hr->job = job;
    hr->calling = true;
    if (pool_submit(pool, job) != 0) {
        hr->job = NULL;
        char msg[sizeof job->errmsg];
        snprintf(msg, sizeof msg, "%s", job->errmsg);
        pgjob_free(job);
        return raise(co, 503, msg);
    }
    return wait_outcome(co, hr);
}

static void push_unavailable(lua_State *co, const char *msg)
{
    lua_pushnil(co);
    lua_newtable(co);
    lua_pushinteger(co, 503);
    lua_setfield(co, -2, "status");
    lua_pushstring(co, "unavailable");
    lua_setfield(co, -2, "code");
    lua_pushstring(co, msg);
    lua_setfield(co, -2, "message");
}

/* BEGIN completed, or the connection could not be had or was lost. */
static void on_txn_step(struct txn *t, PGresult *r)
{
    struct hreq *hr = t->arg;
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
        if (hr->in_txn) txn_close(t);
        hr->in_txn = false;
        push_unavailable(hr->co, r == NULL ? t->errmsg : "cannot begin a transaction");
        deliver(hr, 2);
        return;
    }
    lua_pushboolean(hr->co, 1);
    deliver(hr, 1);
}

/* sluice.db._begin() -> true | nil, err (yields) */
static int l_begin(lua_State *co)
{
    struct hreq *hr = current(co);
    if (hr->in_txn || hr->job) return raise(co, 500, "a transaction is already open in this handler");
    struct pool *pool = &hr->life.w->pools[hr->h->pool_idx];
    hr->in_txn = true;
    hr->calling = true;
    if (txn_open(&hr->txn, pool, on_txn_step, hr) != 0) {
        hr->in_txn = false;
        return raise(co, 503, hr->txn.errmsg);
    }
    return wait_outcome(co, hr);
}

static void on_txn_query(struct txn *t, PGresult *r)
{
    struct hreq *hr = t->arg;
    if (r == NULL) {
        on_txn_step(t, NULL);
        return;
    }
    ExecStatusType st = PQresultStatus(r);
    struct pgjob tmp = {.q = hr->txn_query,
                        .result = r,
                        .status =
                            st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK ? PGJOB_OK : PGJOB_DB_ERROR};
    struct call_outcome o;
    call_outcome(&tmp, 0, &o);
    deliver(hr, call_push_lua(hr->co, &o, tmp.q->name));
}

/* sluice.db._txquery(name, params) -> result | nil, err (yields) */
static int l_txquery(lua_State *co)
{
    struct hreq *hr = current(co);
    if (!hr->in_txn) return raise(co, 500, "the transaction is over");
    struct query_def *q = named(co, hr, 1);
    take_params(co, hr, q, 2);
    hr->txn_query = q;
    hr->calling = true;
    int rc = txn_query(&hr->txn, q, hr->vals, on_txn_query);
    if (rc == -2) return raise(co, 503, hr->txn.errmsg);
    if (rc != 0) return raise_about(co, 400, hr->txn.errmsg, query_param_name(q, hr->txn.bad_param));
    return wait_outcome(co, hr);
}

static void on_txn_end(struct txn *t, PGresult *r)
{
    struct hreq *hr = t->arg;
    bool ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    if (ok && t->lsn > hr->lsn) hr->lsn = t->lsn;
    txn_close(t);
    hr->in_txn = false;
    lua_pushboolean(hr->co, ok);
    deliver(hr, 1);
}

/* sluice.db._finish(commit) -> committed (yields) */
static int l_finish(lua_State *co)
{
    struct hreq *hr = current(co);
    if (!hr->in_txn) {
        lua_pushboolean(co, 0);
        return 1;
    }
    hr->calling = true;
    txn_finish(&hr->txn, lua_toboolean(co, 1), on_txn_end);
    return wait_outcome(co, hr);
}

/* The public half, in Lua: errors become raised error objects, and a transaction's function runs
 * under pcall (LuaJIT lets it yield across) so that any error rolls back. */
static const char DB_LUA[] = "local db = ...\n"
                             "function db.query(name, params)\n"
                             "  local r, e = db._query(name, params)\n"
                             "  if r == nil then error(e, 2) end\n"
                             "  return r\n"
                             "end\n"
                             "local tx = {}\n"
                             "tx.__index = tx\n"
                             "function tx:query(name, params)\n"
                             "  local r, e = db._txquery(name, params)\n"
                             "  if r == nil then error(e, 2) end\n"
                             "  return r\n"
                             "end\n"
                             "function db.transaction(fn)\n"
                             "  local ok, e = db._begin()\n"
                             "  if not ok then error(e, 2) end\n"
                             "  local res = { pcall(fn, setmetatable({}, tx)) }\n"
                             "  local committed = db._finish(res[1])\n"
                             "  if not res[1] then error(res[2], 0) end\n"
                             "  if not committed then error({ status = 409, code = 'conflict', message = "
                             "'the transaction did not commit' }, 2) end\n"
                             "  return unpack(res, 2, table.maxn(res))\n"
                             "end\n";

void handler_api_install(lua_State *L)
{
    /* The instruction-count hook that stops a runaway handler never fires inside JIT-compiled
     * traces, so handlers run interpreted: the guard must hold for any loop. */
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    guard_install(L);
    static const luaL_Reg fns[] = {{"_query", l_query},
                                   {"_begin", l_begin},
                                   {"_txquery", l_txquery},
                                   {"_finish", l_finish},
                                   {NULL, NULL}};
    lua_getglobal(L, "sluice");
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "db");
    if (luaL_loadbuffer(L, DB_LUA, sizeof DB_LUA - 1, "=sluice.db") == 0) {
        lua_insert(L, -2);
        if (lua_pcall(L, 1, 0, 0) != 0) lua_pop(L, 1);
    } else {
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
}

/* --- definitions and routing -------------------------------------------------------------------- */

int handler_collect(lua_State *L, const struct config *cfg, struct registry *reg, char *err, size_t errlen)
{
    lua_getglobal(L, "sluice");
    lua_getfield(L, -1, "_endpoints");
    int rc = 0;
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (rc == 0 && lua_next(L, -2) != 0) {
            const char *name = lua_tostring(L, -2);
            lua_getfield(L, -1, "route");
            const char *route = lua_tostring(L, -1);
            lua_getfield(L, -2, "handler");
            lua_getfield(L, -3, "pool");
            const char *pool = lua_tostring(L, -1);
            int pool_idx = -1;
            for (size_t i = 0; i < cfg->npools; i++)
                if (strcmp(cfg->pools[i].name, pool ? pool : "primary") == 0) pool_idx = (int)i;
            if (pool == NULL && pool_idx < 0) pool_idx = 0;
            lua_getfield(L, -4, "auth"); /* stack: def, route, handler, pool, auth */
            struct route_pattern *rp = NULL;
            int auth_ref = LUA_NOREF, auth = AUTH_NONE;
            if (route == NULL || !lua_isfunction(L, -3)) {
                snprintf(err, errlen,
                         "endpoint \"%s\": route (\"METHOD /path\") and handler (a function) are required",
                         name ? name : "?");
                rc = -1;
            } else if (pool_idx < 0) {
                snprintf(err, errlen, "endpoint \"%s\": no pool named \"%s\" in the config", name, pool);
                rc = -1;
            } else if ((auth = auth_parse(L, lua_gettop(L), true, cfg, &auth_ref, err, errlen)) < 0) {
                char why[256];
                snprintf(why, sizeof why, "%s", err);
                snprintf(err, errlen, "endpoint \"%s\": %s", name, why);
                rc = -1;
            } else if ((rp = route_parse(route, err, (unsigned)errlen)) == NULL) {
                rc = -1;
            } else {
                struct handler_def *h = xcalloc(1, sizeof *h);
                h->reg = reg;
                h->name = xstrdup(name);
                h->route = rp;
                h->pool_idx = pool_idx;
                h->auth = (enum endpoint_auth)auth;
                h->auth_ref = auth_ref;
                lua_pushvalue(L, -3);
                h->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
                reg->handlers = xrealloc(reg->handlers, (size_t)(reg->nhandlers + 1) * sizeof *reg->handlers);
                reg->handlers[reg->nhandlers++] = h;
            }
            lua_pop(L, 5);
        }
        if (rc != 0) lua_pop(L, 1); /* the key lua_next left */
    }
    lua_pop(L, 2);
    return rc;
}

static int on_query_pair(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    lua_State *co = arg;
    lua_pushlstring(co, key, klen);
    lua_pushlstring(co, val, vlen);
    lua_settable(co, -3);
    return 0;
}

/* req.query: the query string decoded into a table (the last of repeated keys wins; pairs
 * after a malformed escape are left out). */
static void push_query(lua_State *co, h2o_req_t *req)
{
    lua_newtable(co);
    http_query_foreach(req, on_query_pair, co);
}

static void push_request(struct hreq *hr, const char **vals, const size_t *lens, int n)
{
    lua_State *co = hr->co;
    h2o_req_t *req = hr->life.req;
    lua_createtable(co, 0, 5);
    lua_pushlstring(co, req->method.base, req->method.len);
    lua_setfield(co, -2, "method");
    lua_newtable(co);
    for (int i = 0, k = 0; i < hr->h->route->nsegs && k < n; i++) {
        const char *seg = hr->h->route->segs[i];
        if (seg[0] != '{') continue;
        lua_pushlstring(co, seg + 1, strlen(seg) - 2);
        lua_pushlstring(co, vals[k], lens[k]); /* decoded already, once */
        k++;
        lua_settable(co, -3);
    }
    lua_setfield(co, -2, "path");
    lua_pushvalue(co, -1);
    lua_getfield(co, -1, "path");
    lua_setfield(co, -3, "params");
    lua_pop(co, 1);
    push_query(co, req);
    lua_setfield(co, -2, "query");
    lua_newtable(co);
    for (size_t i = 0; i < req->headers.size; i++) {
        h2o_header_t *hd = &req->headers.entries[i];
        lua_pushlstring(co, hd->name->base, hd->name->len); /* h2o keeps names lower-case */
        lua_pushlstring(co, hd->value.base, hd->value.len);
        lua_settable(co, -3);
    }
    lua_setfield(co, -2, "headers");
    if (hr->body)
        luajson_push(co, hr->body);
    else
        lua_pushnil(co);
    lua_setfield(co, -2, "body");
}

static void run(struct worker *w, h2o_req_t *req, struct handler_def *h, const char **vals,
                const size_t *lens, int n)
{
    if (!auth_allow(w, req, h->auth, h->reg->L, h->auth_ref, h->name)) return;
    json_t *body = NULL;
    if (req->entity.base != NULL && req->entity.len > 0) {
        if (!http_is_json(req)) {
            http_send_error(req, 415, "unsupported_media_type", "the body must be application/json", NULL,
                            NULL);
            return;
        }
        json_error_t jerr;
        body = json_loadb(req->entity.base, req->entity.len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
        if (body == NULL) {
            char msg[256];
            snprintf(msg, sizeof msg, "malformed JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                     jerr.column);
            http_send_error(req, 400, "bad_request", msg, NULL, NULL);
            return;
        }
    }
    struct hreq *hr = reqlife_new(w, req, sizeof *hr, &handler_kind, h->reg);
    hr->h = h;
    hr->body = body;
    hr->co_ref = LUA_NOREF;

    lua_State *L = hr->L = w->reg->L;
    hr->co = lua_newthread(L);
    hr->co_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* anchors the coroutine until release() */
    lua_sethook(hr->co, on_hook, LUA_MASKCOUNT, HOOK_EVERY);
    lua_rawgeti(hr->co, LUA_REGISTRYINDEX, h->fn_ref);
    push_request(hr, vals, lens, n);
    reqlife_wait(&hr->life, reqlife_request_timeout_ms(w));
    resume(hr, 1);
}

int handler_route(struct worker *w, h2o_req_t *req, const struct urlpath *path)
{
    const char *vals[16];
    size_t lens[16];
    for (int i = 0; i < w->reg->nhandlers; i++) {
        struct handler_def *h = w->reg->handlers[i];
        if (!h2o_memis(req->method.base, req->method.len, h->route->method, strlen(h->route->method)))
            continue;
        int n = route_match(h->route, path, vals, lens, 16);
        if (n < 0) continue;
        reqstats_name(req, "handler", h->name);
        run(w, req, h, vals, lens, n);
        return 0;
    }
    return -1;
}
