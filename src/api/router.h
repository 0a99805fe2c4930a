/* router.h — the gateway's one h2o handler: routes every request to its endpoint. */
#ifndef SLUICE_ROUTER_H
#define SLUICE_ROUTER_H

#include <h2o.h>

/* The h2o on_req of the gateway's path "/": answers every request (returns 0). */
int router_on_req(h2o_handler_t *self, h2o_req_t *req);

#endif
