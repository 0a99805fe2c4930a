/* policy.c — reads sluice.policy's retry and breaker tables (stored by script.c as
 * sluice._policy) into the C policies. */
#include "policy.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

/* Reads t[key] (t at the top of the stack) as a non-negative integer into *out when present. */
static int field(lua_State *L, const char *table, const char *key, long long *out, char *err, size_t errlen)
{
    lua_getfield(L, -1, key);
    int rc = 0;
    if (!lua_isnil(L, -1)) {
        lua_Number n = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || n < 0 || n != (lua_Number)(long long)n) {
            snprintf(err, errlen, "policy.%s.%s: expected a non-negative integer", table, key);
            rc = -1;
        } else {
            *out = (long long)n;
        }
    }
    lua_pop(L, 1);
    return rc;
}

static int read_table(lua_State *L, const char *name, const char *const *keys, long long *vals, char *err,
                      size_t errlen)
{
    lua_getfield(L, -1, name);
    int rc = 0;
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        while (rc == 0 && lua_next(L, -2) != 0) {
            lua_pop(L, 1);
            const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            bool known = false;
            for (int i = 0; k && keys[i]; i++) known |= strcmp(keys[i], k) == 0;
            if (!known) {
                snprintf(err, errlen, "policy.%s: unknown key \"%s\"", name, k ? k : "?");
                rc = -1;
                lua_pop(L, 1);
            }
        }
        for (int i = 0; rc == 0 && keys[i]; i++) rc = field(L, name, keys[i], &vals[i], err, errlen);
    } else if (!lua_isnil(L, -1)) {
        snprintf(err, errlen, "policy.%s: expected a table", name);
        rc = -1;
    }
    lua_pop(L, 1);
    return rc;
}

int policy_read(lua_State *L, struct breaker_policy *bp, struct retry_policy *rp, char *err, size_t errlen)
{
    breaker_policy_default(bp);
    retry_policy_default(rp);
    lua_getglobal(L, "sluice");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    lua_getfield(L, -1, "_policy");
    int rc = 0;
    if (lua_istable(L, -1)) {
        static const char *const rkeys[] = {"attempts", "base_ms", "max_ms", NULL};
        static const char *const bkeys[] = {"failures", "window_ms", "open_ms", "half_open", NULL};
        long long r[3] = {rp->attempts, rp->base_ms, rp->max_ms};
        long long b[4] = {bp->failures, (long long)bp->window_ms, (long long)bp->open_ms, bp->half_open};
        rc = read_table(L, "retry", rkeys, r, err, errlen);
        if (rc == 0) rc = read_table(L, "breaker", bkeys, b, err, errlen);
        if (rc == 0) {
            rp->attempts = r[0] < 1 ? 1 : (int)r[0];
            rp->base_ms = (int)r[1];
            rp->max_ms = (int)r[2];
            bp->failures = b[0] < 1 ? 1 : (int)b[0];
            bp->window_ms = (uint64_t)b[1];
            bp->open_ms = (uint64_t)b[2];
            bp->half_open = b[3] < 1 ? 1 : (int)b[3];
        }
    }
    lua_pop(L, 2);
    return rc;
}
