/* batch.h — POST /batch: several named queries in one request, pipelined, or in one transaction
 * with ?transaction=true. */
#ifndef SLUICE_BATCH_H
#define SLUICE_BATCH_H

#include <h2o.h>

struct worker;

/* Answers the request (now or when every query finished); returns 0. */
int batch_handle(struct worker *w, h2o_req_t *req);

#endif
