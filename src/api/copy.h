/* copy.h — POST /bulk/{name}: a JSON array, NDJSON or CSV body streamed into COPY FROM STDIN,
 * chunk by chunk, on a leased connection (pool_acquire). */
#ifndef SLUICE_COPY_H
#define SLUICE_COPY_H

#include <h2o.h>

#include "endpoint.h"

struct worker;

/* Answers the request (now or when the load finishes); returns 0. */
int copy_handle(struct worker *w, h2o_req_t *req, struct bulk_def *d);

#endif
