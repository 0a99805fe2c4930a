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

#endif
