/* route.h — sluice.route(query, req): the operator's per-request choice of pool, and the
 * sluice.pools.<name>.healthy flags and replay_lsn positions it can consult. */
#ifndef SLUICE_ROUTE_H
#define SLUICE_ROUTE_H

#include <h2o.h>

#include "endpoint.h"

struct worker;

/* The index of the pool q runs on for req: what sluice.route returns when the scripts define it
 * (an unknown name or an error is logged and falls back), else q's own pool. lsn is the
 * request's Sluice-LSN (0: none), shown to the function as req.lsn, with every pool's replay_lsn
 * refreshed first. *chosen (may be NULL) tells whether the function named a pool. */
int route_pool(struct worker *w, struct query_def *q, h2o_req_t *req, uint64_t lsn, bool *chosen);
/* Writes each pool's health into sluice.pools.<name>.healthy and its replay position into
 * replay_lsn (called once a second). */
void route_refresh_health(struct worker *w);

#endif
