/* explain.h — GET /admin/explain/{name}?params: the EXPLAIN (FORMAT JSON) plan of a named query
 * with those parameters; analyze=true (readonly queries only) runs it too. */
#ifndef SLUICE_EXPLAIN_H
#define SLUICE_EXPLAIN_H

#include <h2o.h>

struct worker;

/* Answers the request (admin authorization already checked); returns 0. */
int explain_handle(struct worker *w, h2o_req_t *req, const char *name, size_t len);

#endif
