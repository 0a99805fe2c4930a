/* route.h — sluice.route(query, req): the operator's per-request choice of pool, and the
 * sluice.pools.<name>.healthy flags it can consult. */
#ifndef SLUICE_ROUTE_H
#define SLUICE_ROUTE_H

#include <h2o.h>

#include "endpoint.h"

struct worker;

/* The index of the pool q runs on for req: what sluice.route returns when the scripts define it
 * (an unknown name or an error is logged and falls back), else q's own pool. */
int route_pool(struct worker *w, struct query_def *q, h2o_req_t *req);
/* Writes each pool's health into sluice.pools.<name>.healthy (called once a second). */
void route_refresh_health(struct worker *w);

#endif
