/* health.h — /health, /health/live, /health/ready. */
#ifndef SLUICE_HEALTH_H
#define SLUICE_HEALTH_H

#include <h2o.h>

struct worker;

/* Answers any path under /health; returns 0. */
int health_handle(struct worker *w, h2o_req_t *req, h2o_iovec_t path);

#endif
