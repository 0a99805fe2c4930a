/* call.h — a named query called with JSON parameters (an object by name, an array by position),
 * and the JSON body of its outcome; shared by /batch and Lua handlers. */
#ifndef SLUICE_CALL_H
#define SLUICE_CALL_H

#include <jansson.h>
#include <stddef.h>

#include "buf.h"
#include "endpoint.h"
#include "pool.h"

/* Puts q's parameters in order into vals[0..q->nparams) (borrowed from params; JSON null stays a
 * json null). params may be NULL for a query without parameters. Returns 0, or -1 with a
 * client-facing reason (unknown / missing parameter, wrong count) in err. */
int call_resolve(const struct query_def *q, json_t *params, json_t **vals, char *err, size_t errlen);
/* Converts vals for q's declared types into job's parameters. Returns 0, or -1 with job->errmsg. */
int call_bind(struct pgjob *job, json_t *const *vals);
/* Appends the body /query/{name} would answer for the finished job (rows, a single row, or the
 * error object) and returns its HTTP status. */
int call_write(struct buf *b, const struct pgjob *job);

#endif
