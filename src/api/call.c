/* call.c — named queries called with JSON parameters, and the JSON body of their outcome. */
#include "call.h"

#include <stdio.h>
#include <string.h>

#include "http.h"
#include "jsonw.h"
#include "pgjson.h"
#include "log.h"
#include "pgtype.h"
#include "query.h"

int call_resolve(const struct query_def *q, json_t *params, json_t **vals, char *err, size_t errlen)
{
    for (int i = 0; i < q->nparams; i++) vals[i] = NULL;
    if (params == NULL || json_is_null(params)) {
        if (q->nparams == 0) return 0;
        snprintf(err, errlen, "missing parameter \"%s\"", q->param_names[0]);
        return -1;
    }
    if (json_is_array(params)) {
        if ((int)json_array_size(params) != q->nparams) {
            snprintf(err, errlen, "expected %d parameters by position, got %zu", q->nparams,
                     json_array_size(params));
            return -1;
        }
        for (int i = 0; i < q->nparams; i++) vals[i] = json_array_get(params, (size_t)i);
        return 0;
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
            return -1;
        }
        vals[i] = v;
    }
    for (int i = 0; i < q->nparams; i++)
        if (vals[i] == NULL) {
            snprintf(err, errlen, "missing parameter \"%s\"", q->param_names[i]);
            return -1;
        }
    return 0;
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
            return -1;
        }
        job->param_off[i] = is_null ? -1 : (int)before;
    }
    job->bound = true;
    return 0;
}

static int write_error(struct buf *b, int status, const char *message, const char *query,
                       const char *sqlstate)
{
    http_error_body(b, http_error_code(status), message, query, sqlstate);
    return status;
}

int call_write(struct buf *b, const struct pgjob *job)
{
    const struct query_def *q = job->q;
    switch (job->status) {
    case PGJOB_OK:
        if (!q->single) {
            pgjson_result(b, job->result);
            return 200;
        }
        if (PQresultStatus(job->result) != PGRES_TUPLES_OK || PQntuples(job->result) == 0)
            return write_error(b, 404, "no row", q->name, NULL);
        pgjson_row(b, job->result, 0);
        return 200;
    case PGJOB_BIND_ERROR:
        return write_error(b, 400, job->errmsg, q->name, NULL);
    case PGJOB_UNAVAILABLE:
        return write_error(b, 503, job->errmsg, q->name, NULL);
    case PGJOB_DB_ERROR:
        break;
    }
    const char *state = PQresultErrorField(job->result, PG_DIAG_SQLSTATE);
    const char *primary = PQresultErrorField(job->result, PG_DIAG_MESSAGE_PRIMARY);
    int status = query_status_for_sqlstate(state);
    if (status == 500) {
        log_printf(LOG_ERROR, "query %s failed: %s (SQLSTATE %s)", q->name, primary ? primary : "?",
                   state ? state : "?");
        return write_error(b, 500, "internal error", q->name, state);
    }
    return write_error(b, status,
                       status == 504 ? "statement timeout"
                       : primary     ? primary
                                     : "database error",
                       q->name, state);
}
