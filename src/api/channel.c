/* channel.c — sluice.channel "name" { listen, pool, auth, buffer, keepalive, filter }: each
 * definition recorded in sluice._channels by the script becomes a struct channel_def. */
#include "channel.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "util.h"

/* Reads one definition (the table on top of L, named name) into a new channel_def; NULL with
 * err on a bad key or value. Leaves the stack as it was. */
static struct channel_def *read_def(lua_State *L, const struct config *cfg, const char *name, char *err,
                                    size_t errlen)
{
    static const char *const keys[] = {"listen",    "pool",   "auth",        "buffer",
                                       "keepalive", "filter", "description", NULL};
    int t = lua_gettop(L);
    for (lua_pushnil(L); lua_next(L, t) != 0; lua_pop(L, 1)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        bool ok = false;
        for (const char *const *a = keys; k && *a && !ok; a++) ok = strcmp(*a, k) == 0;
        if (!ok) {
            snprintf(err, errlen, "channel \"%s\": unknown key \"%s\"", name, k ? k : "?");
            lua_settop(L, t);
            return NULL;
        }
    }
    lua_getfield(L, t, "listen");
    lua_getfield(L, t, "pool");
    lua_getfield(L, t, "buffer");
    lua_getfield(L, t, "keepalive");
    lua_getfield(L, t, "filter");
    const char *listen = lua_type(L, t + 1) == LUA_TSTRING ? lua_tostring(L, t + 1) : name;
    const char *pool = lua_type(L, t + 2) == LUA_TSTRING ? lua_tostring(L, t + 2) : NULL;
    double buffer = lua_isnil(L, t + 3) ? CHANNEL_DEFAULT_BUFFER : lua_tonumber(L, t + 3);
    double keepalive = lua_isnil(L, t + 4) ? CHANNEL_DEFAULT_KEEPALIVE : lua_tonumber(L, t + 4);
    const char *why = NULL;
    if (!lua_isnil(L, t + 1) && (lua_type(L, t + 1) != LUA_TSTRING || !*listen || strlen(listen) > 63))
        why = "listen: expected a PostgreSQL channel name (1 to 63 bytes)";
    else if (!lua_isnil(L, t + 2) && pool == NULL)
        why = "pool: expected a string";
    else if (lua_type(L, t + 3) != LUA_TNUMBER && !lua_isnil(L, t + 3))
        why = "buffer: expected a positive integer";
    else if (!(buffer >= 1 && buffer <= CHANNEL_MAX_BUFFER) || buffer != (double)(int)buffer) /* NaN too */
        why = "buffer: expected an integer from 1 to 1000000";
    else if ((lua_type(L, t + 4) != LUA_TNUMBER && !lua_isnil(L, t + 4)) || !(keepalive >= 0.1) ||
             keepalive > 3600)
        why = "keepalive: expected seconds, at least 0.1 and at most 3600";
    else if (!lua_isnil(L, t + 5) && !lua_isfunction(L, t + 5))
        why = "filter: expected a function(payload, req)";
    int pool_idx = -1;
    const char *pname = pool ? pool : config_pool(cfg, "primary") ? "primary" : cfg->pools[0].name;
    for (size_t i = 0; i < cfg->npools; i++)
        if (strcmp(cfg->pools[i].name, pname) == 0) pool_idx = (int)i;
    char perr[160];
    if (why == NULL && pool_idx < 0) {
        snprintf(perr, sizeof perr, "no pool named \"%s\" in the config", pname);
        why = perr;
    }
    int auth_ref = LUA_NOREF, auth = AUTH_NONE;
    char aerr[256];
    if (why == NULL) {
        lua_getfield(L, t, "auth");
        auth = auth_parse(L, lua_gettop(L), true, cfg, &auth_ref, aerr, sizeof aerr);
        lua_pop(L, 1);
        if (auth < 0) why = aerr;
    }
    if (why != NULL) {
        snprintf(err, errlen, "channel \"%s\": %s", name, why);
        lua_settop(L, t);
        return NULL;
    }
    struct channel_def *c = xcalloc(1, sizeof *c);
    c->name = xstrdup(name);
    c->listen = xstrdup(listen);
    c->pool = xstrdup(pname);
    c->buffer = (int)buffer;
    c->keepalive_ms = (int)(keepalive * 1000);
    c->auth = (enum endpoint_auth)auth;
    c->auth_ref = auth_ref;
    c->filter_ref = LUA_NOREF;
    if (lua_isfunction(L, t + 5)) {
        lua_pushvalue(L, t + 5);
        c->filter_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_settop(L, t);
    return c;
}

static bool valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 200) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-' || *p == '.'))
            return false;
    return true;
}

int channel_collect(lua_State *L, const struct config *cfg, struct registry *reg, char *err, size_t errlen)
{
    int top = lua_gettop(L);
    lua_getglobal(L, "sluice");
    lua_getfield(L, -1, "_channels");
    int rc = 0;
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        for (lua_pushnil(L); rc == 0 && lua_next(L, t) != 0; lua_pop(L, 1)) {
            const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
            if (!valid_name(name)) {
                snprintf(err, errlen, "channel \"%s\": a name is letters, digits, '_', '-' or '.'",
                         name ? name : "?");
                rc = -1;
                break;
            }
            struct channel_def *c = read_def(L, cfg, name, err, errlen);
            if (c == NULL) {
                rc = -1;
                break;
            }
            c->reg = reg;
            reg->channels = xrealloc(reg->channels, (size_t)(reg->nchannels + 1) * sizeof *reg->channels);
            reg->channels[reg->nchannels++] = c;
        }
    }
    lua_settop(L, top);
    return rc;
}
