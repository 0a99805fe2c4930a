/* call.c — the one core of a named query's call: JSON parameters in, the outcome out as JSON or
 * as Lua values (call.h). */
#include "call.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "luapg.h"
#include "pgjson.h"
#include "pgtype.h"

/* Fills the parameters vals leaves unset with q's defaults. Returns 0, or -1 naming the first
 * missing required one. */
static int fill_defaults(const struct query_def *q, json_t **vals, char *err, size_t errlen,
                         const char **param)
{
    for (int i = 0; i < q->nparams; i++) {
        if (vals[i] == NULL) vals[i] = query_def_default(q, i);
        if (vals[i] == NULL) {
            snprintf(err, errlen, "missing parameter \"%s\"", q->param_names[i]);
            *param = q->param_names[i];
            return -1;
        }
    }
    return 0;
}

int call_resolve(const struct query_def *q, json_t *params, json_t **vals, char *err, size_t errlen,
                 const char **param)
{
    const char *unused;
    if (param == NULL) param = &unused;
    *param = NULL;
    for (int i = 0; i < q->nparams; i++) vals[i] = NULL;
    if (params == NULL || json_is_null(params)) return fill_defaults(q, vals, err, errlen, param);
    if (json_is_array(params)) {
        if ((int)json_array_size(params) > q->nparams) {
            snprintf(err, errlen, "expected %d parameters by position, got %zu", q->nparams,
                     json_array_size(params));
            return -1;
        }
        for (size_t i = 0; i < json_array_size(params); i++) vals[i] = json_array_get(params, i);
        return fill_defaults(q, vals, err, errlen, param);
    }
    if (!json_is_object(params)) {
        snprintf(err, errlen, "params must be an object (by name) or an array (by position)");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(params, key, v)
    {
        int i = query_def_param(q, key, strlen(key));
        if (i < 0) {
            snprintf(err, errlen, "unknown parameter \"%.64s\"", key);
            *param = key;
            return -1;
        }
        vals[i] = v;
    }
    return fill_defaults(q, vals, err, errlen, param);
}

int call_bind(struct pgjob *job, json_t *const *vals)
{
    struct query_def *q = job->q;
    buf_reset(&job->params);
    for (int i = 0; i < q->nparams; i++) {
        size_t before = job->params.len;
        bool is_null = false;
        char err[128];
        Oid type = q->param_types ? q->param_types[i] : 0;
        if (pgtype_param_json(type, vals[i], &job->params, &is_null, err, sizeof err) != 0) {
            snprintf(job->errmsg, sizeof job->errmsg, "parameter \"%s\": %s", q->param_names[i], err);
            job->bad_param = i;
            return -1;
        }
        job->param_off[i] = is_null ? -1 : (int)before;
    }
    job->bound = true;
    return 0;
}

int call_status_for_sqlstate(const char *s)
{
    if (s == NULL) return 500;
    if (strncmp(s, "23", 2) == 0) return 409;
    if (strncmp(s, "22", 2) == 0) return 400;
    if (strcmp(s, "57014") == 0) return 504;
    if (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
        strcmp(s, "57P03") == 0 || strcmp(s, "53300") == 0)
        return 503;
    if (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0) return 409;
    return 500;
}

void call_error(struct call_outcome *o, int status, const char *message)
{
    memset(o, 0, sizeof *o);
    o->status = status;
    snprintf(o->message, sizeof o->message, "%s", message);
    snprintf(o->detail, sizeof o->detail, "%.159s", message);
}

void call_set_param(struct call_outcome *o, const char *name, size_t len)
{
    if (name == NULL) len = 0;
    if (len >= sizeof o->param) len = sizeof o->param - 1;
    memcpy(o->param, name ? name : "", len);
    o->param[len] = '\0';
}

/* The parameter a server error is about, from its context: while it reads a bound value the
 * server adds "unnamed portal parameter $N" (libpq binds to the unnamed portal). Returns the
 * index, or -1. */
static int failed_param(const struct query_def *q, const PGresult *r)
{
    static const char mark[] = "unnamed portal parameter $";
    const char *ctx = PQresultErrorField(r, PG_DIAG_CONTEXT);
    const char *at = ctx ? strstr(ctx, mark) : NULL;
    if (at == NULL) return -1;
    int n = atoi(at + sizeof mark - 1);
    return n >= 1 && n <= q->nparams ? n - 1 : -1;
}

void call_db_error(const struct query_def *q, const PGresult *r, struct call_outcome *o)
{
    memset(o, 0, sizeof *o);
    o->sqlstate = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    o->status = call_status_for_sqlstate(o->sqlstate);
    int bad = o->status == 400 ? failed_param(q, r) : -1;
    if (bad >= 0) {
        const char *name = q->param_names[bad];
        call_set_param(o, name, strlen(name));
        snprintf(o->message, sizeof o->message, "parameter \"%s\": %s", name,
                 primary ? primary : "invalid value");
    } else if (o->status == 500) {
        log_printf(LOG_ERROR, "query %s failed: %s (SQLSTATE %s)", q->name, primary ? primary : "?",
                   o->sqlstate ? o->sqlstate : "?");
        snprintf(o->message, sizeof o->message, "internal error");
    } else if (o->status == 504) {
        snprintf(o->message, sizeof o->message, "statement timeout");
    } else {
        snprintf(o->message, sizeof o->message, "%s", primary ? primary : "database error");
    }
    snprintf(o->detail, sizeof o->detail, "%.130s (SQLSTATE %.5s)", primary ? primary : o->message,
             o->sqlstate ? o->sqlstate : "?");
}

void call_outcome(const struct pgjob *job, int max_rows, struct call_outcome *o)
{
    const struct query_def *q = job->q;
    memset(o, 0, sizeof *o);
    switch (job->status) {
    case PGJOB_OK:
        o->status = 200;
        o->result = job->result;
        o->single = q->single;
        if (q->single) {
            if (PQresultStatus(job->result) != PGRES_TUPLES_OK || PQntuples(job->result) == 0)
                call_error(o, 404, "no row");
        } else if (max_rows > 0 && PQntuples(job->result) > max_rows) {
            /* refused before encoding: a huge result never takes the worker's memory */
            char msg[200];
            snprintf(msg, sizeof msg,
                     "the result has %d rows, more than max_rows (%d): page it (LIMIT/OFFSET or keyset "
                     "parameters)",
                     PQntuples(job->result), max_rows);
            call_error(o, 413, msg);
        }
        return;
    case PGJOB_BIND_ERROR:
        call_error(o, 400, job->errmsg);
        if (job->bad_param >= 0 && job->bad_param < q->nparams)
            call_set_param(o, q->param_names[job->bad_param], strlen(q->param_names[job->bad_param]));
        return;
    case PGJOB_UNAVAILABLE:
        call_error(o, 503, job->errmsg);
        o->in_doubt = job->in_doubt;
        return;
    case PGJOB_DB_ERROR:
        call_db_error(q, job->result, o);
        return;
    }
}

void call_write_json(struct buf *b, const struct call_outcome *o, const char *query)
{
    if (o->status == 200) {
        if (o->single)
            pgjson_row(b, o->result, 0);
        else
            pgjson_result(b, o->result);
        return;
    }
    http_error_body(b, http_error_code(o->status), o->message, query, o->sqlstate);
    if (o->param[0] || o->in_doubt) { /* inside the error object: {"error":{...,"param":..}} */
        b->len -= 2;
        if (o->param[0]) {
            buf_puts(b, ",\"param\":");
            jsonw_string(b, o->param, strlen(o->param));
        }
        if (o->in_doubt) buf_puts(b, ",\"outcome\":\"unknown\"");
        buf_puts(b, "}}");
    }
}

int call_job_json(struct buf *b, const struct pgjob *job)
{
    struct call_outcome o;
    call_outcome(job, 0, &o);
    call_write_json(b, &o, job->q->name);
    return o.status;
}

int call_push_lua(lua_State *L, const struct call_outcome *o, const char *query)
{
    if (o->status == 200) {
        if (o->single)
            luapg_push_row(L, o->result, 0);
        else
            luapg_push_result(L, o->result);
        return 1;
    }
    lua_pushnil(L);
    lua_createtable(L, 0, 6);
    lua_pushinteger(L, o->status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, http_error_code(o->status));
    lua_setfield(L, -2, "code");
    lua_pushstring(L, o->message);
    lua_setfield(L, -2, "message");
    lua_pushstring(L, query);
    lua_setfield(L, -2, "query");
    if (o->sqlstate) {
        lua_pushlstring(L, o->sqlstate, strnlen(o->sqlstate, 5));
        lua_setfield(L, -2, "sqlstate");
    }
    if (o->in_doubt) {
        lua_pushstring(L, "unknown");
        lua_setfield(L, -2, "outcome");
    }
    if (o->param[0]) {
        lua_pushstring(L, o->param);
        lua_setfield(L, -2, "param");
    }
    return 2;
}
