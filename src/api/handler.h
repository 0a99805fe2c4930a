/* handler.h — Lua handlers (sluice.endpoint): each request runs its handler in a coroutine;
 * sluice.db.query and sluice.db.transaction yield to the event loop and resume with the result
 * (the cosocket model). */
#ifndef SLUICE_HANDLER_H
#define SLUICE_HANDLER_H

#include <h2o.h>
#include <lua.h>
#include <stddef.h>

#include "config.h"
#include "endpoint.h"

struct worker;

/* Adds sluice.db to the state (call before the scripts run). */
void handler_api_install(lua_State *L);
/* After the scripts ran: turns sluice._endpoints into handler definitions in reg. Returns 0, or
 * -1 with one line in err (a missing handler function, a bad route). */
int handler_collect(lua_State *L, const struct config *cfg, struct registry *reg, char *err, size_t errlen);
/* Runs the handler whose route matches path (the request's decoded segments); returns 0 when
 * one did (it answers), -1 when none. */
int handler_route(struct worker *w, h2o_req_t *req, const struct urlpath *path);

#endif
