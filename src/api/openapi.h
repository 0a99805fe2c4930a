/* openapi.h — the OpenAPI 3.0.3 document of GET /openapi.json, generated from the loaded
 * endpoints: named queries (and their route aliases), bulk endpoints, Lua handlers, health,
 * metrics and admin paths, with the types the database described at start-up. */
#ifndef SLUICE_OPENAPI_H
#define SLUICE_OPENAPI_H

#include <h2o.h>

#include "buf.h"
#include "config.h"
#include "describe.h"
#include "endpoint.h"

struct worker;

/* Appends the document (JSON) to out: reg's named queries, route aliases, bulk endpoints and Lua
 * handlers, the fixed paths, and the admin paths when cfg has an admin token. d: what describe_all
 * learned, or NULL when the database was not reachable at start-up (parameters and columns are
 * then typed loosely). Nothing is retained. */
void openapi_write(struct buf *out, const struct registry *reg, const struct describe_result *d,
                   const struct config *cfg);

/* GET (or HEAD) /openapi.json: writes the document for w's registry and the current description.
 * Other methods get 405. Returns 0 (the request is answered). */
int openapi_handle(struct worker *w, h2o_req_t *req);

#endif
