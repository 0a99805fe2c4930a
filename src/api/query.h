/* query.h — serving a named query over HTTP: parameters in, one pipelined execution, JSON out. */
#ifndef SLUICE_QUERY_H
#define SLUICE_QUERY_H

#include <h2o.h>
#include <libpq-fe.h>

#include "endpoint.h"

struct worker;

/* Handles GET|POST for q. path_vals/path_lens are the {param} values of a route alias (npath of
 * them, in the route's order, percent-decoded) or NULL. Always answers (now or when the database replies);
 * returns 0. */
int query_handle(struct worker *w, h2o_req_t *req, struct query_def *q, const char **path_vals,
                 const size_t *path_lens, int npath);

/* A server error result r of q: the HTTP status, the client's message in msg (the server's own
 * unless the status is 500, which is logged here with the detail), and in detail the server's
 * message with its SQLSTATE, for /admin/queries, which is for operators. */
int query_db_error(const struct query_def *q, const PGresult *r, char *msg, size_t msglen, char *detail,
                   size_t detaillen);

/* Maps a server error to an HTTP status: 23xxx 409, 22xxx 400, 57014 504, connection class 503,
 * anything else 500. */
int query_status_for_sqlstate(const char *sqlstate);

#endif
