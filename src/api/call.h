/* call.h — the one core of a named query's call: parameters in (JSON by name or position), and
 * its outcome out — rows, or status, code, message and SQLSTATE — rendered as the JSON of
 * /query, /batch and streams, or pushed to Lua for handlers with the same type mapping. */
#ifndef SLUICE_CALL_H
#define SLUICE_CALL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "endpoint.h"
#include "pool.h"

/* Puts q's parameters in order into vals[0..q->nparams) (borrowed from params, or q's default for
 * a missing optional one; JSON null stays a json null). params may be NULL when no parameter is
 * required. An array may leave out trailing optional parameters. Returns 0, or -1 with a
 * client-facing reason (unknown / missing parameter, wrong count) in err and, when it is about
 * one parameter, its name in *param (borrowed from q or params; NULL otherwise). */
int call_resolve(const struct query_def *q, json_t *params, json_t **vals, char *err, size_t errlen,
                 const char **param);
/* Converts vals for q's declared types into job's parameters. Returns 0, or -1 with job->errmsg. */
int call_bind(struct pgjob *job, json_t *const *vals);
/* What a finished execution of a named query came to. */
struct call_outcome {
    int status;             /* 200, or the error's HTTP status */
    const PGresult *result; /* 200: the statement's result (borrowed from the job) */
    bool single;            /* 200: the body is the first row itself */
    const char *sqlstate;   /* an error from the server (borrowed), else NULL */
    bool in_doubt;          /* a write whose commit may or may not have happened */
    char message[256];      /* an error: what the client is told */
    char detail[160];       /* an error: what /admin/queries keeps for operators */
    char param[64];         /* an error about one parameter: its name (the "param" field), else "" */
};

/* The outcome of a finished job of q, by the one mapping of job status and SQLSTATE to HTTP
 * status (call_status_for_sqlstate); a single query without a row is 404, a result of more than
 * max_rows rows (0: no limit) 413. A 500 from the server is logged here with its detail. o
 * borrows from job, which must outlive it. */
void call_outcome(const struct pgjob *job, int max_rows, struct call_outcome *o);
/* An outcome that is an error of the gateway's own: status and message (also the detail). */
void call_error(struct call_outcome *o, int status, const char *message);
/* Names the parameter an error is about (len bytes of name; NULL: none). */
void call_set_param(struct call_outcome *o, const char *name, size_t len);
/* The outcome of a server error result r of q (streams and bulk loads, which read results
 * themselves). An error the server raised while reading a parameter's value names it (in the
 * message and o->param). o borrows from r. */
void call_db_error(const struct query_def *q, const PGresult *r, struct call_outcome *o);
/* Maps a server error to an HTTP status: 23xxx 409, 22xxx 400, 57014 504, connection class 503,
 * 40001/40P01 409, anything else 500. */
int call_status_for_sqlstate(const char *sqlstate);
/* Appends the JSON body of o for query: the rows, the single row, or the error object. */
void call_write_json(struct buf *b, const struct call_outcome *o, const char *query);
/* The outcome of job appended as JSON (call_outcome without max_rows, then call_write_json);
 * returns its HTTP status. */
int call_job_json(struct buf *b, const struct pgjob *job);
/* Pushes o for a Lua handler: 1 value, the result (as call_write_json's JSON would decode), or 2,
 * nil and {status, code, message, query, sqlstate [, outcome]}. Returns the count. */
int call_push_lua(lua_State *L, const struct call_outcome *o, const char *query);

#endif
