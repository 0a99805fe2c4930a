/* script.c — runs the operator's scripts in a LuaJIT state and collects their definitions
 * through the `sluice` global: sluice.query, sluice.bulk, sluice.endpoint, sluice.channel,
 * sluice.policy, sluice.log, sluice.env, sluice.null, sluice.pools. */
#include "script.h"

#include <errno.h>
#include <glob.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "cache.h"
#include "channel.h"
#include "handler.h"
#include "hash64.h"
#include "log.h"
#include "luajson.h"
#include "metrics.h"
#include "util.h"

/* What the definition functions write into, kept in the Lua registry under this key. */
struct load_ctx {
    const struct config *cfg;
    struct registry *reg;
};
static const char CTX_KEY = 'c';

static struct load_ctx *ctx_of(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&CTX_KEY);
    lua_rawget(L, LUA_REGISTRYINDEX);
    struct load_ctx *ctx = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return ctx;
}

static bool opt_bool(lua_State *L, int t, const char *key, const char *what)
{
    lua_getfield(L, t, key);
    bool v = false;
    if (!lua_isnil(L, -1)) {
        if (!lua_isboolean(L, -1)) luaL_error(L, "%s: %s: expected a boolean", what, key);
        v = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

static const char *opt_string(lua_State *L, int t, const char *key, const char *what)
{
    lua_getfield(L, t, key);
    const char *v = NULL;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: %s: expected a string", what, key);
        v = lua_tostring(L, -1); /* stays valid: the table holds it */
    }
    lua_pop(L, 1);
    return v;
}

static int opt_int(lua_State *L, int t, const char *key, const char *what, int dflt)
{
    lua_getfield(L, t, key);
    int v = dflt;
    if (!lua_isnil(L, -1)) {
        lua_Number n = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || n < 0 || n != (lua_Number)(int)n)
            luaL_error(L, "%s: %s: expected a non-negative integer", what, key);
        v = (int)n;
    }
    lua_pop(L, 1);
    return v;
}

/* Rejects keys outside allowed (NULL-terminated), naming the first unknown one. */
static void check_keys(lua_State *L, int t, const char *const *allowed, const char *what)
{
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "%s: keys must be strings", what);
        const char *k = lua_tostring(L, -1);
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, k) == 0;
        if (!ok) luaL_error(L, "%s: unknown key \"%s\"", what, k);
    }
}

static bool valid_name(const char *s)
{
    if (!s || !*s) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
              *p == '-' || *p == '.'))
            return false;
    return true;
}

static int resolve_pool(lua_State *L, const char *pool, const char *what, char **name_out);

/* slow_query_ms of sluice.policy when it was set, else -1. */
static int policy_slow_ms(lua_State *L)
{
    int v = -1;
    lua_getglobal(L, "sluice");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "_policy");
        if (lua_istable(L, -1)) {
            lua_getfield(L, -1, "slow_query_ms");
            if (lua_type(L, -1) == LUA_TNUMBER) v = (int)lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return v;
}

/* The names of q's parameters, comma-separated, for an error message (into out). */
static const char *param_list(const struct query_def *q, char *out, size_t outlen)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < q->nparams && n < outlen; i++)
        n += (size_t)snprintf(out + n, outlen - n, "%s%s", i ? ", " : "", q->param_names[i]);
    return q->nparams ? out : "none";
}

/* params = { name = { default = value } | { optional = true }, ... }: what a missing parameter
 * takes. A default is any value JSON can hold (sluice.null too) and is converted like a client's
 * value; optional alone means SQL NULL. */
static void define_params(lua_State *L, int t, struct query_def *q, const char *what)
{
    static const char *const spec_keys[] = {"default", "optional", "description", NULL};
    lua_getfield(L, t, "params");
    int pt = lua_gettop(L);
    if (lua_isnil(L, pt)) {
        lua_pop(L, 1);
        return;
    }
    if (!lua_istable(L, pt))
        luaL_error(
            L,
            "%s: params: expected a table such as { limit = { default = 100 }, since = { optional = true } }",
            what);
    char where[256], names[200];
    lua_pushnil(L);
    while (lua_next(L, pt) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "%s: params: keys must be parameter names", what);
        const char *name = lua_tostring(L, -2);
        int i = query_def_param(q, name, strlen(name));
        if (i < 0)
            luaL_error(L, "%s: params: \"%s\" is not a :parameter of its sql (it has: %s)", what, name,
                       param_list(q, names, sizeof names));
        snprintf(where, sizeof where, "%s: params.%s", what, name);
        int st = lua_gettop(L);
        if (!lua_istable(L, st))
            luaL_error(L, "%s: expected { default = value } or { optional = true }", where);
        check_keys(L, st, spec_keys, where);
        bool optional = opt_bool(L, st, "optional", where);
        lua_getfield(L, st, "default");
        int type = lua_type(L, -1);
        if (type == LUA_TFUNCTION || type == LUA_TUSERDATA || type == LUA_TTHREAD ||
            (type == LUA_TLIGHTUSERDATA && lua_touserdata(L, -1) != NULL))
            luaL_error(L, "%s: default: expected a value JSON can hold, got a %s", where,
                       luaL_typename(L, -1));
        if (type != LUA_TNIL) {
            struct luajson_limits lim = {.max_bytes = 1u << 20, .max_depth = 32, .cut = false};
            enum luajson_status js;
            json_t *v = luajson_from_lua(L, lua_gettop(L), &lim, &js);
            if (v == NULL) luaL_error(L, "%s: default %s", where, luajson_status_text(js));
            query_def_set_default(q, i, v);
        } else if (optional) {
            query_def_set_default(q, i, json_null());
        }
        lua_pop(L, 2); /* the default and the spec */
    }
    lua_pop(L, 1);
}

/* define_params(q, table, what) under lua_pcall. */
static int l_define_params(lua_State *L)
{
    define_params(L, 2, lua_touserdata(L, 1), lua_tostring(L, 3));
    return 0;
}

static int opt_strings(lua_State *L, int t, const char *key, const char *what, char ***out);

/* The table names of t[key] as cache table ids into *ids; returns the count. */
static int table_ids(lua_State *L, int t, const char *key, const char *what, int **ids)
{
    char **names;
    int n = opt_strings(L, t, key, what, &names);
    *ids = xcalloc((size_t)(n ? n : 1), sizeof **ids);
    int bad = -1;
    for (int i = 0; i < n; i++) {
        (*ids)[i] = cache_table_id(names[i]);
        if ((*ids)[i] < 0 && bad < 0) bad = i;
    }
    char name[200];
    snprintf(name, sizeof name, "%s", bad >= 0 ? names[bad] : "");
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (bad >= 0) luaL_error(L, "%s: %s: \"%s\" is not a usable table name", what, key, name);
    return n;
}

/* cache = { ttl_ms, tables }, coalesce and writes of a named query (docs/cache.md). */
static void define_cache(lua_State *L, struct query_def *q, int t, const char *what)
{
    static const char *const keys[] = {"ttl_ms", "tables", NULL};
    char sub[200];
    q->coalesce = opt_bool(L, t, "coalesce", what);
    q->nwrite_tables = table_ids(L, t, "writes", what, &q->write_tables);
    if (q->readonly && q->nwrite_tables > 0)
        luaL_error(L, "%s: writes: a readonly query writes nothing (drop readonly or writes)", what);
    if (!q->readonly && q->coalesce)
        luaL_error(L, "%s: coalesce: only a readonly query can be coalesced", what);
    lua_getfield(L, t, "cache");
    int c = lua_gettop(L);
    if (!lua_isnil(L, c)) {
        snprintf(sub, sizeof sub, "%s: cache", what);
        if (!lua_istable(L, c)) luaL_error(L, "%s: expected a table { ttl_ms = .., tables = {..} }", sub);
        if (!q->readonly)
            luaL_error(L, "%s: only a readonly query can be cached (a write must run every time)", sub);
        check_keys(L, c, keys, sub);
        q->cache_ttl_ms = opt_int(L, c, "ttl_ms", sub, 1000);
        if (q->cache_ttl_ms < 1) luaL_error(L, "%s: ttl_ms: expected a positive integer", sub);
        q->ncache_tables = table_ids(L, c, "tables", sub, &q->cache_tables);
        if (q->ncache_tables == 0)
            luaL_error(L, "%s: tables: name the tables the query reads, so that writes to them invalidate it",
                       sub);
        q->coalesce = true; /* a cached query always shares its executions in flight */
    }
    lua_pop(L, 1);
    if (q->coalesce) q->cache_stats = cache_stats_of(q->name);
    q->cache_def_hash =
        hash64(q->sql, strlen(q->sql)) ^ (uint64_t)q->single; /* a changed SQL or shape: new keys */
}

/* define_cache(q, table, what) under lua_pcall. */
static int l_define_cache(lua_State *L)
{
    define_cache(L, lua_touserdata(L, 1), 2, lua_tostring(L, 3));
    return 0;
}

/* Runs fn(q, the table at t, what) protected: when it raises, q is freed and the error raised
 * again with the script's file and line (a reload must not leak q). */
static void define_protected(lua_State *L, lua_CFunction fn, struct query_def *q, int t, const char *what)
{
    lua_pushcfunction(L, fn);
    lua_pushlightuserdata(L, q);
    lua_pushvalue(L, t);
    lua_pushstring(L, what);
    if (lua_pcall(L, 3, 0, 0) != 0) {
        query_def_free(q);
        luaL_where(L, 1);
        lua_insert(L, -2);
        lua_concat(L, 2);
        lua_error(L);
    }
}

static void define_query(lua_State *L, const char *name, int t)
{
    static const char *const keys[] = {"sql",           "readonly",   "single", "idempotent",
                                       "timeout_ms",    "pool",       "route",  "description",
                                       "slow_query_ms", "log_params", "auth",   "params",
                                       "cache",         "coalesce",   "writes", NULL};
    char what[160];
    snprintf(what, sizeof what, "query \"%s\"", name);
    if (!valid_name(name)) luaL_error(L, "%s: a name is letters, digits, '_', '-' or '.'", what);
    check_keys(L, t, keys, what);
    const char *sql = opt_string(L, t, "sql", what);
    if (sql == NULL) luaL_error(L, "%s: sql is required", what);
    const char *route = opt_string(L, t, "route", what);
    const char *pool = opt_string(L, t, "pool", what);
    char err[256];
    struct query_def *q = query_def_new(name, sql, route, err, sizeof err);
    if (q == NULL) luaL_error(L, "%s: %s", what, err);
    define_protected(L, l_define_params, q, t, what);
    q->readonly = opt_bool(L, t, "readonly", what);
    q->single = opt_bool(L, t, "single", what);
    q->idempotent = opt_bool(L, t, "idempotent", what);
    q->timeout_ms = opt_int(L, t, "timeout_ms", what, 0);
    /* the query's own slow_query_ms, else sluice.policy's (also when it comes later), else the default */
    lua_getfield(L, t, "slow_query_ms");
    q->slow_ms_set = !lua_isnil(L, -1);
    lua_pop(L, 1);
    int policy_ms = policy_slow_ms(L);
    q->slow_ms = opt_int(L, t, "slow_query_ms", what, policy_ms >= 0 ? policy_ms : METRICS_DEFAULT_SLOW);
    q->log_params = opt_bool(L, t, "log_params", what);
    struct load_ctx *ctx = ctx_of(L);
    lua_getfield(L, t, "auth");
    int auth = auth_parse(L, lua_gettop(L), true, ctx->cfg, &q->auth_ref, err, sizeof err);
    lua_pop(L, 1);
    if (auth < 0) {
        query_def_free(q);
        luaL_error(L, "%s: %s", what, err);
    }
    q->auth = (enum endpoint_auth)auth;
    q->pool_idx = resolve_pool(L, pool, what, &q->pool); /* on error q leaks: start-up stops anyway */
    define_protected(L, l_define_cache, q, t, what);
    if (registry_add(ctx->reg, q) != 0) {
        query_def_free(q);
        luaL_error(L, "%s is defined twice", what);
    }
}

/* Both sluice.query "name" { ... } and sluice.query("name", { ... }). */
static int l_query_body(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    define_query(L, lua_tostring(L, lua_upvalueindex(1)), 1);
    return 0;
}

static int l_query(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (lua_gettop(L) >= 2) {
        luaL_checktype(L, 2, LUA_TTABLE);
        define_query(L, name, 2);
        return 0;
    }
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, l_query_body, 1);
    return 1;
}

/* A string array field (a single string is accepted too). Returns the count; *out is malloc'd. */
static int opt_strings(lua_State *L, int t, const char *key, const char *what, char ***out)
{
    *out = NULL;
    lua_getfield(L, t, key);
    int n = 0;
    if (lua_type(L, -1) == LUA_TSTRING) {
        *out = xmalloc(sizeof **out);
        (*out)[n++] = xstrdup(lua_tostring(L, -1));
    } else if (lua_istable(L, -1)) {
        int len = (int)lua_objlen(L, -1);
        *out = xcalloc((size_t)(len ? len : 1), sizeof **out);
        for (int i = 1; i <= len; i++) {
            lua_rawgeti(L, -1, i);
            if (lua_type(L, -1) != LUA_TSTRING) {
                for (int k = 0; k < n; k++) free((*out)[k]);
                free(*out);
                *out = NULL;
                luaL_error(L, "%s: %s: expected an array of strings", what, key);
            }
            (*out)[n++] = xstrdup(lua_tostring(L, -1));
            lua_pop(L, 1);
        }
    } else if (!lua_isnil(L, -1)) {
        luaL_error(L, "%s: %s: expected an array of strings", what, key);
    }
    lua_pop(L, 1);
    return n;
}

static int resolve_pool(lua_State *L, const char *pool, const char *what, char **name_out)
{
    struct load_ctx *ctx = ctx_of(L);
    const char *pname = pool ? pool : config_pool(ctx->cfg, "primary") ? "primary" : ctx->cfg->pools[0].name;
    for (size_t i = 0; i < ctx->cfg->npools; i++)
        if (strcmp(ctx->cfg->pools[i].name, pname) == 0) {
            *name_out = xstrdup(pname);
            return (int)i;
        }
    luaL_error(L, "%s: no pool named \"%s\" in the config", what, pname);
    return -1;
}

static void define_bulk(lua_State *L, const char *name, int t)
{
    static const char *const keys[] = {"table",  "columns", "mode",        "key",  "chunk_rows",
                                       "atomic", "pool",    "description", "auth", NULL};
    static const char *const modes[] = {"insert", "upsert", "update", "delete", NULL};
    char what[160];
    snprintf(what, sizeof what, "bulk \"%s\"", name);
    if (!valid_name(name)) luaL_error(L, "%s: a name is letters, digits, '_', '-' or '.'", what);
    check_keys(L, t, keys, what);
    const char *table = opt_string(L, t, "table", what);
    if (table == NULL) luaL_error(L, "%s: table is required", what);
    const char *mode = opt_string(L, t, "mode", what);
    int m = 0;
    if (mode != NULL) {
        while (modes[m] && strcmp(modes[m], mode) != 0) m++;
        if (modes[m] == NULL) luaL_error(L, "%s: mode: expected insert, upsert, update or delete", what);
    }
    int chunk_rows = opt_int(L, t, "chunk_rows", what, 10000);
    if (chunk_rows < 1) luaL_error(L, "%s: chunk_rows: expected a positive integer", what);
    lua_getfield(L, t, "atomic");
    bool atomic = lua_isnil(L, -1) ? true : lua_toboolean(L, -1);
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1)) luaL_error(L, "%s: atomic: expected a boolean", what);
    lua_pop(L, 1);
    const char *pool = opt_string(L, t, "pool", what);
    char err[256];
    int auth_ref;
    lua_getfield(L, t, "auth");
    int auth = auth_parse(L, lua_gettop(L), false, ctx_of(L)->cfg, &auth_ref, err, sizeof err);
    lua_pop(L, 1);
    if (auth < 0) luaL_error(L, "%s: %s", what, err);

    struct bulk_def *d = xcalloc(1, sizeof *d);
    d->auth = (enum endpoint_auth)auth;
    d->ncolumns =
        opt_strings(L, t, "columns", what, &d->columns); /* on error d leaks: start-up stops anyway */
    d->nkey = opt_strings(L, t, "key", what, &d->key);
    d->name = xstrdup(name);
    d->table = xstrdup(table);
    d->mode = (enum bulk_mode)m;
    d->chunk_rows = chunk_rows;
    d->atomic = atomic;
    if (d->ncolumns == 0) {
        bulk_def_free(d);
        luaL_error(L, "%s: columns is required", what);
    }
    d->pool_idx = resolve_pool(L, pool, what, &d->pool);
    d->table_id = cache_table_id(d->table);
    if (bulk_def_prepare(d, err, sizeof err) != 0 || registry_add_bulk(ctx_of(L)->reg, d) != 0) {
        bool dup = registry_find_bulk(ctx_of(L)->reg, name, strlen(name)) != NULL;
        bulk_def_free(d);
        if (dup) luaL_error(L, "%s is defined twice", what);
        luaL_error(L, "%s: %s", what, err);
    }
}

static int l_bulk_body(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    define_bulk(L, lua_tostring(L, lua_upvalueindex(1)), 1);
    return 0;
}

static int l_bulk(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    if (lua_gettop(L) >= 2) {
        luaL_checktype(L, 2, LUA_TTABLE);
        define_bulk(L, name, 2);
        return 0;
    }
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, l_bulk_body, 1);
    return 1;
}

/* sluice.endpoint: recorded in sluice._endpoints by name; handler.c builds the handlers from it. */
/* Records def (at def_idx) under name in the table at rec_idx; a name defined twice is an error. */
static void record_def(lua_State *L, int rec_idx, int name_idx, int def_idx)
{
    lua_pushvalue(L, name_idx);
    lua_rawget(L, rec_idx);
    if (!lua_isnil(L, -1)) {
        lua_getglobal(L, "sluice");
        lua_getfield(L, -1, "_channels");
        bool channel = lua_rawequal(L, -1, rec_idx);
        luaL_error(L, "%s \"%s\" is defined twice", channel ? "channel" : "endpoint",
                   lua_tostring(L, name_idx));
    }
    lua_pop(L, 1);
    lua_pushvalue(L, name_idx);
    lua_pushvalue(L, def_idx);
    lua_rawset(L, rec_idx);
}

static int l_record_body(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    record_def(L, lua_upvalueindex(2), lua_upvalueindex(1), 1);
    return 0;
}

static int record(lua_State *L, const char *field)
{
    luaL_checkstring(L, 1);
    int nargs = lua_gettop(L);
    lua_getglobal(L, "sluice");
    lua_getfield(L, -1, field);
    int rec = lua_gettop(L);
    if (nargs >= 2 && lua_istable(L, 2)) {
        record_def(L, rec, 1, 2);
        return 0;
    }
    lua_pushvalue(L, 1);
    lua_pushvalue(L, rec);
    lua_pushcclosure(L, l_record_body, 2);
    return 1;
}

static int l_endpoint(lua_State *L)
{
    return record(L, "_endpoints");
}

/* sluice.channel: recorded in sluice._channels by name; channel.c reads them. */
static int l_channel(lua_State *L)
{
    return record(L, "_channels");
}

static int l_policy(lua_State *L)
{
    static const char *const keys[] = {"slow_query_ms", "explain_slow", "retry", "breaker", NULL};
    luaL_checktype(L, 1, LUA_TTABLE);
    check_keys(L, 1, keys, "policy");
    int slow_ms = opt_int(L, 1, "slow_query_ms", "policy", -1);
    struct load_ctx *ctx = ctx_of(L); /* NULL once loading is over: then only the table changes */
    if (slow_ms >= 0 && ctx != NULL) {
        /* queries defined before the policy take its threshold unless they set their own */
        for (int i = 0; i < ctx->reg->nqueries; i++)
            if (!ctx->reg->queries[i]->slow_ms_set) ctx->reg->queries[i]->slow_ms = slow_ms;
    }
    lua_getglobal(L, "sluice");
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "_policy");
    return 0;
}

static int l_env(lua_State *L)
{
    const char *v = getenv(luaL_checkstring(L, 1));
    if (v != NULL && *v)
        lua_pushstring(L, v);
    else
        lua_settop(L, 2);
    return 1;
}

/* Log fields: nesting past LOG_FIELDS_DEPTH (or a table inside itself) is cut to "...", and
 * fields whose JSON would pass LOG_FIELDS_BYTES are left out of the line, which says so. */
#define LOG_FIELDS_DEPTH 8
#define LOG_FIELDS_BYTES (64 * 1024)

/* True when the table at idx has a key the log line writes itself (log_reserved). */
static bool has_reserved_key(lua_State *L, int idx)
{
    if (!lua_istable(L, idx)) return false;
    bool found = false;
    for (size_t i = 0; i < log_nreserved && !found; i++) {
        lua_getfield(L, idx, log_reserved[i]);
        found = !lua_isnil(L, -1);
        lua_pop(L, 1);
    }
    return found;
}

/* Appends the members of the fields object obj without its braces. A script's ts, level, worker
 * or msg is renamed (log_fields_rename_reserved), so it cannot replace the line's own: that rare
 * case goes through jansson. */
static void append_members(struct buf *out, const struct buf *obj, bool reserved)
{
    json_t *f = reserved ? json_loadb(obj->data, obj->len, 0, NULL) : NULL;
    if (f == NULL) {
        buf_append(out, obj->data + 1, obj->len - 2);
        return;
    }
    log_fields_rename_reserved(f);
    char *s = json_dumps(f, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(f);
    size_t n = s ? strlen(s) : 0;
    if (n >= 2) buf_append(out, s + 1, n - 2);
    free(s);
}

static int log_at(lua_State *L, enum log_level level)
{
    if (!log_enabled(level)) return 0;
    const char *msg = luaL_checkstring(L, 1);
    struct buf text = BUF_INIT, fields = BUF_INIT;
    if (!lua_isnoneornil(L, 2)) {
        struct luajson_limits lim = {
            .max_bytes = LOG_FIELDS_BYTES, .max_depth = LOG_FIELDS_DEPTH, .cut = true};
        /* the walk grows the stack only: a memory error there would leak the buffer */
        bool was = script_enforce_limit(L, false);
        enum luajson_status st = luajson_write(L, 2, &text, &lim);
        script_enforce_limit(L, was);
        if (st != LUAJSON_OK)
            buf_printf(&fields, "\"fields_dropped\":\"larger than %d bytes\"", LOG_FIELDS_BYTES);
        else if (text.data[0] == '{')
            append_members(&fields, &text, has_reserved_key(L, 2));
        else
            buf_printf(&fields, "\"data\":%s", text.data);
    }
    log_write(level, msg, fields.data);
    buf_free(&text);
    buf_free(&fields);
    return 0;
}

static int l_log_debug(lua_State *L)
{
    return log_at(L, LOG_DEBUG);
}
static int l_log_info(lua_State *L)
{
    return log_at(L, LOG_INFO);
}
static int l_log_warn(lua_State *L)
{
    return log_at(L, LOG_WARN);
}
static int l_log_error(lua_State *L)
{
    return log_at(L, LOG_ERROR);
}

static void install_api(lua_State *L, const struct config *cfg)
{
    static const luaL_Reg fns[] = {{"query", l_query},
                                   {"bulk", l_bulk},
                                   {"endpoint", l_endpoint},
                                   {"channel", l_channel},
                                   {"policy", l_policy},
                                   {"env", l_env},
                                   {NULL, NULL}};
    static const luaL_Reg logfns[] = {{"debug", l_log_debug},
                                      {"info", l_log_info},
                                      {"warn", l_log_warn},
                                      {"error", l_log_error},
                                      {NULL, NULL}};
    lua_newtable(L);
    luaL_register(L, NULL, fns);
    lua_newtable(L);
    luaL_register(L, NULL, logfns);
    lua_setfield(L, -2, "log");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_newtable(L);
    lua_setfield(L, -2, "_endpoints");
    lua_newtable(L);
    lua_setfield(L, -2, "_channels");
    lua_newtable(L);
    for (size_t i = 0; i < cfg->npools; i++) {
        lua_newtable(L);
        lua_pushstring(L, cfg->pools[i].name);
        lua_setfield(L, -2, "name");
        lua_pushboolean(L, 1);
        lua_setfield(L, -2, "healthy");
        lua_setfield(L, -2, cfg->pools[i].name);
    }
    lua_setfield(L, -2, "pools");
    lua_setglobal(L, "sluice");
    handler_api_install(L);
}

static int traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    lua_pushstring(L, msg ? msg : "(error object is not a string)");
    return 1;
}

static int run_file(lua_State *L, const char *path, char *err, size_t errlen)
{
    lua_pushcfunction(L, traceback);
    /* Text only: LuaJIT does not verify bytecode. */
    if (luaL_loadfilex(L, path, "t") != 0 || lua_pcall(L, 0, 0, -2) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_settop(L, 0);
        return -1;
    }
    lua_settop(L, 0);
    return 0;
}

/* Every script state allocates through this: it keeps the state under lua_memory_limit (Lua then
 * raises "not enough memory" in the code that asked, a handler gets a 500) and counts what it
 * holds for /metrics. */
struct lua_mem {
    size_t used, limit;
    bool enforce; /* only while operator code runs: the gateway's own calls into the state must
                   * not fail outside a protected call, where LuaJIT would panic */
};

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct lua_mem *m = ud;
    if (nsize == 0) {
        free(ptr);
        __atomic_store_n(&m->used, m->used - osize, __ATOMIC_RELAXED);
        return NULL;
    }
    if (nsize > osize && m->enforce && m->used - osize + nsize > m->limit) return NULL;
    void *p = realloc(ptr, nsize);
    if (p != NULL) __atomic_store_n(&m->used, m->used - osize + nsize, __ATOMIC_RELAXED);
    return p;
}

void script_close(lua_State *L)
{
    if (L == NULL) return;
    void *ud;
    lua_getallocf(L, &ud);
    lua_close(L);
    free(ud);
}

bool script_enforce_limit(lua_State *L, bool on)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    if (ud == NULL) return false;
    bool was = ((struct lua_mem *)ud)->enforce;
    ((struct lua_mem *)ud)->enforce = on;
    return was;
}

void script_collect(lua_State *L, bool always)
{
    void *ud = NULL;
    lua_getallocf(L, &ud);
    struct lua_mem *mem = ud;
    if (mem == NULL || (!always && mem->used <= mem->limit / 2)) return;
    bool was = mem->enforce;
    mem->enforce = false; /* collecting allocates a little */
    lua_gc(L, LUA_GCCOLLECT, 0);
    mem->enforce = was;
}

size_t script_memory(lua_State *L)
{
    void *ud = NULL;
    if (L) lua_getallocf(L, &ud);
    return ud ? __atomic_load_n(&((struct lua_mem *)ud)->used, __ATOMIC_RELAXED) : 0;
}

/* What stopped a glob (a folder of the pattern that is missing, or unreadable). */
static __thread int glob_errno;

static int on_glob_error(const char *path, int e)
{
    glob_errno = e;
    return 1; /* stop: GLOB_ERR */
}

lua_State *script_load(const struct config *cfg, struct registry *reg, char *err, size_t errlen)
{
    struct lua_mem *mem = xcalloc(1, sizeof *mem);
    mem->limit = cfg->lua_memory_limit ? cfg->lua_memory_limit : (size_t)64 << 20;
    lua_State *L = lua_newstate(limited_alloc, mem);
    if (L == NULL) {
        free(mem);
        snprintf(err, errlen, "cannot create a Lua state");
        return NULL;
    }
    luaL_openlibs(L);
    struct load_ctx *ctx = xmalloc(sizeof *ctx); /* only read while the scripts run */
    ctx->cfg = cfg;
    ctx->reg = reg;
    lua_pushlightuserdata(L, (void *)&CTX_KEY);
    lua_pushlightuserdata(L, ctx);
    lua_rawset(L, LUA_REGISTRYINDEX);
    install_api(L, cfg);

    int rc = 0;
    for (size_t i = 0; i < cfg->nscripts && rc == 0; i++) {
        glob_t g;
        glob_errno = 0;
        int gr = glob(cfg->scripts[i], GLOB_ERR, on_glob_error, &g);
        if (gr == GLOB_ABORTED && (glob_errno == ENOENT || glob_errno == ENOTDIR)) gr = GLOB_NOMATCH;
        if (gr == GLOB_NOMATCH) {
            /* a relative pattern is read from the current directory: say which one that was */
            char cwd[1024] = "";
            bool relative = cfg->scripts[i][0] != '/';
            if (relative && getcwd(cwd, sizeof cwd) == NULL) snprintf(cwd, sizeof cwd, "?");
            if (strpbrk(cfg->scripts[i], "*?[") == NULL) {
                snprintf(err, errlen, "%s: cannot open script: No such file or directory%s%s%s",
                         cfg->scripts[i], relative ? " (looked in " : "", cwd, relative ? ")" : "");
                rc = -1;
            } else {
                log_warn("scripts: \"%s\" matches no file%s%s%s", cfg->scripts[i],
                         relative ? " (looked in " : "", cwd, relative ? ")" : "");
            }
            continue;
        }
        if (gr != 0) {
            snprintf(err, errlen, "%s: cannot list scripts: %s", cfg->scripts[i],
                     glob_errno ? strerror(glob_errno) : "out of memory");
            rc = -1;
            continue;
        }
        for (size_t k = 0; k < g.gl_pathc && rc == 0; k++) rc = run_file(L, g.gl_pathv[k], err, errlen);
        globfree(&g);
    }
    if (rc == 0) rc = handler_collect(L, cfg, reg, err, errlen);
    if (rc == 0) rc = channel_collect(L, cfg, reg, err, errlen);
    free(ctx);
    lua_pushlightuserdata(L, (void *)&CTX_KEY);
    lua_pushnil(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
    if (rc != 0) {
        script_close(L);
        return NULL;
    }
    return L;
}
