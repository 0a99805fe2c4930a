/* route.c — calls sluice.route(query, req) on the worker's Lua state. query is a table built once
 * per named query ({name, readonly, single, pool}); req carries method, path and the Sluice-LSN
 * token (lsn). The function is looked up per call, so a reload that adds or removes it takes
 * effect at once. */
#include "route.h"

#include <lauxlib.h>
#include <string.h>

#include "breaker.h"
#include "guard.h"
#include "log.h"
#include "lsn.h"
#include "util.h"
#include "walpos.h"
#include "worker.h"

static void push_query(lua_State *L, struct query_def *q)
{
    if (q->route_info_ref > 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, q->route_info_ref);
        return;
    }
    lua_createtable(L, 0, 4);
    lua_pushstring(L, q->name);
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, q->readonly);
    lua_setfield(L, -2, "readonly");
    lua_pushboolean(L, q->single);
    lua_setfield(L, -2, "single");
    lua_pushstring(L, q->pool);
    lua_setfield(L, -2, "pool");
    lua_pushvalue(L, -1);
    q->route_info_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* A route function that does not return in time is stopped (the state runs without the JIT, so
 * the guard's count hook fires in every loop). */
#define ROUTE_LIMIT_MS 100

static void refresh_replay(struct worker *w);

int route_pool(struct worker *w, struct query_def *q, h2o_req_t *req, uint64_t lsn, bool *chosen)
{
    lua_State *L = q->reg->L; /* q's generation: its references live there, even after a reload */
    if (chosen) *chosen = false;
    lua_getglobal(L, "sluice");
    lua_getfield(L, -1, "route");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 2);
        return q->pool_idx;
    }
    if (lsn != 0) refresh_replay(w); /* a route that compares req.lsn sees positions of now */
    push_query(L, q);
    lua_createtable(L, 0, 3);
    lua_pushlstring(L, req->method.base, req->method.len);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, req->path_normalized.base, req->path_normalized.len);
    lua_setfield(L, -2, "path");
    if (lsn != 0) {
        char text[LSN_TEXT];
        lua_pushstring(L, lsn_format(text, lsn));
        lua_setfield(L, -2, "lsn");
    }
    int idx = q->pool_idx;
    int rc = guard_pcall(L, 2, 1, ROUTE_LIMIT_MS, "sluice.route ran for more than 100 ms");
    if (rc != 0) {
        const char *why = lua_tostring(L, -1);
        log_printf(LOG_ERROR, "sluice.route failed for %s: %s", q->name, why ? why : luaL_typename(L, -1));
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        const char *name = lua_tostring(L, -1);
        int found = -1;
        for (int i = 0; i < w->npools; i++)
            if (strcmp(w->pools[i].cfg.name, name) == 0) found = i;
        if (found < 0) {
            log_printf(LOG_ERROR, "sluice.route returned \"%s\", which is not a pool", name);
        } else {
            idx = found;
            if (chosen) *chosen = true;
        }
    }
    lua_pop(L, 2);
    return idx;
}

/* sluice.pools.<name>.replay_lsn: the replay position the probe published, nil when unknown. */
static void set_replay(lua_State *L, int idx)
{
    char text[LSN_TEXT];
    uint64_t lsn = walpos_replay(idx);
    if (lsn != 0)
        lua_pushstring(L, lsn_format(text, lsn));
    else
        lua_pushnil(L);
    lua_setfield(L, -2, "replay_lsn");
}

static void refresh_replay(struct worker *w)
{
    lua_State *L = w->reg->L;
    lua_getfield(L, -2, "pools"); /* below: sluice, sluice.route */
    if (lua_istable(L, -1))
        for (int i = 0; i < w->npools; i++) {
            lua_getfield(L, -1, w->pools[i].cfg.name);
            if (lua_istable(L, -1)) set_replay(L, i);
            lua_pop(L, 1);
        }
    lua_pop(L, 1);
}

void route_refresh_health(struct worker *w)
{
    lua_State *L = w->reg->L;
    lua_getglobal(L, "sluice");
    lua_getfield(L, -1, "pools");
    if (lua_istable(L, -1)) {
        for (int i = 0; i < w->npools; i++) {
            struct pool *p = &w->pools[i];
            lua_getfield(L, -1, p->cfg.name);
            if (lua_istable(L, -1)) {
                /* An open breaker past open_ms counts as healthy: the next request routed here is
                 * the half-open probe that can close it. */
                bool healthy =
                    pool_healthy(p) && breaker_would_allow(p->breaker, &p->breaker_policy, now_ms());
                lua_pushboolean(L, healthy);
                lua_setfield(L, -2, "healthy");
                set_replay(L, i);
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);
}
