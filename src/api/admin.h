/* admin.h — /admin/...: bearer-token protected operator endpoints. */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <h2o.h>

struct worker;

/* Answers any path under /admin; 404 when no admin_token is configured. Returns 0. */
int admin_handle(struct worker *w, h2o_req_t *req, h2o_iovec_t path);

#endif
