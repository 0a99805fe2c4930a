/* config.c — reads the config file (Lua that returns a table), applies the environment overrides
 * and validates every key. Any mistake becomes one line that names the file (or the variable),
 * the key and what was expected. The Lua state lives only for the duration of config_load. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "cpus.h"
#include "log.h"
#include "util.h"

/* What a key holds, how it is validated and where it is stored. */
enum kind {
    K_URL,       /* char *: any string, "" included */
    K_STRING,    /* char *: a non-empty string */
    K_SECRET,    /* char *: a string of at least CONFIG_MIN_SECRET_BYTES, never echoed in an error */
    K_LISTEN,    /* char *: "host:port" or "unix:/path" */
    K_WORKERS,   /* int: positive integer or "auto" (cpu_count()) */
    K_POOL_SIZE, /* int: positive integer or "auto" (2 * cpu_count() + 1) */
    K_POSITIVE,  /* int: >= 1 */
    K_COUNT,     /* int: >= 0 */
    K_BYTES,     /* size_t: >= 1 */
    K_SECONDS,   /* double: >= 0 */
    K_BOOL,      /* bool */
    K_LEVEL,     /* int: enum log_level */
    K_FORMAT,    /* bool log_json: "json" or "text" */
};

struct field {
    const char *name;
    size_t offset;
    enum kind kind;
};

#define TOP(name)  #name, offsetof(struct config, name)
#define POOL(name) #name, offsetof(struct pool_config, name)

/* clang-format off */
static const struct field top_fields[] = {
    {TOP(listen), K_LISTEN},
    {TOP(workers), K_WORKERS},
    {TOP(admin_token), K_STRING},
    {TOP(max_body_bytes), K_BYTES},
    {TOP(shutdown_timeout), K_SECONDS},
    {TOP(shutdown_grace), K_SECONDS},
    {TOP(request_timeout), K_SECONDS},
    {TOP(migrations), K_STRING},
    {TOP(protect_metrics), K_BOOL},
    {TOP(max_url_bytes), K_BYTES},
    {TOP(lua_memory_limit), K_BYTES},
    {TOP(max_response_bytes), K_BYTES},
    {TOP(max_params), K_POSITIVE},
    {TOP(max_rows), K_COUNT},
    {TOP(max_inflight), K_POSITIVE},
    {TOP(max_header_bytes), K_BYTES},
    {TOP(max_headers), K_POSITIVE},
    {TOP(client_timeout), K_SECONDS},
    {TOP(http2), K_BOOL},
    {TOP(compress_min_bytes), K_COUNT},
    {TOP(openapi_license), K_STRING},
    {TOP(openapi_license_url), K_STRING},
};
/* clang-format on */

static const struct field log_fields[] = {
    {"level", offsetof(struct config, log_level), K_LEVEL},
    {"format", offsetof(struct config, log_json), K_FORMAT},
    {"access", offsetof(struct config, log_access), K_BOOL},
};

/* origins and headers are lists, read by read_cors. */
static const struct field cors_fields[] = {
    {"max_age", offsetof(struct config, cors.max_age), K_COUNT},
    {"credentials", offsetof(struct config, cors.credentials), K_BOOL},
};

static const struct field jwt_fields[] = {
    {"secret", offsetof(struct config, jwt_secret), K_SECRET},
    {"audience", offsetof(struct config, jwt_audience), K_STRING},
    {"issuer", offsetof(struct config, jwt_issuer), K_STRING},
    {"max_age", offsetof(struct config, jwt_max_age), K_SECONDS},
};

static const struct field tls_fields[] = {
    {"cert", offsetof(struct config, tls_cert), K_STRING},
    {"key", offsetof(struct config, tls_key), K_STRING},
};

static const struct field pool_fields[] = {
    {POOL(url), K_URL},
    {POOL(pool_size), K_POOL_SIZE},
    {POOL(max_overflow), K_COUNT},
    {POOL(pool_timeout), K_SECONDS},
    {POOL(pool_recycle), K_SECONDS},
    {POOL(idle_timeout), K_SECONDS},
    {POOL(connect_timeout), K_SECONDS},
    {POOL(echo), K_BOOL},
    {POOL(prepared_statement_cache_size), K_POSITIVE},
    {POOL(statement_timeout_ms), K_COUNT},
    {POOL(pipeline_depth), K_POSITIVE},
    {POOL(max_queue), K_COUNT},
    {POOL(failover_wait_ms), K_COUNT},
    {POOL(optional), K_BOOL},
    {POOL(read_your_writes_wait_ms), K_COUNT},
};

enum scope { S_TOP, S_LOG, S_JWT, S_TLS, S_PRIMARY };

/* Environment overrides; DATABASE_URL and SLUICE_POOL_* apply to the pool named "primary". */
static const struct {
    const char *var;
    enum scope scope;
    const char *key;
} env_overrides[] = {
    {"SLUICE_LISTEN", S_TOP, "listen"},
    {"SLUICE_WORKERS", S_TOP, "workers"},
    {"SLUICE_ADMIN_TOKEN", S_TOP, "admin_token"},
    {"SLUICE_LOG_LEVEL", S_LOG, "level"},
    {"SLUICE_LOG_FORMAT", S_LOG, "format"},
    {"SLUICE_LOG_ACCESS", S_LOG, "access"},
    {"SLUICE_MAX_BODY_BYTES", S_TOP, "max_body_bytes"},
    {"SLUICE_REQUEST_TIMEOUT", S_TOP, "request_timeout"},
    {"SLUICE_SHUTDOWN_TIMEOUT", S_TOP, "shutdown_timeout"},
    {"SLUICE_SHUTDOWN_GRACE", S_TOP, "shutdown_grace"},
    {"SLUICE_PROTECT_METRICS", S_TOP, "protect_metrics"},
    {"SLUICE_MAX_URL_BYTES", S_TOP, "max_url_bytes"},
    {"SLUICE_LUA_MEMORY_LIMIT", S_TOP, "lua_memory_limit"},
    {"SLUICE_MAX_RESPONSE_BYTES", S_TOP, "max_response_bytes"},
    {"SLUICE_MAX_PARAMS", S_TOP, "max_params"},
    {"SLUICE_MAX_ROWS", S_TOP, "max_rows"},
    {"SLUICE_MAX_INFLIGHT", S_TOP, "max_inflight"},
    {"SLUICE_MAX_HEADER_BYTES", S_TOP, "max_header_bytes"},
    {"SLUICE_MAX_HEADERS", S_TOP, "max_headers"},
    {"SLUICE_CLIENT_TIMEOUT", S_TOP, "client_timeout"},
    {"SLUICE_HTTP2", S_TOP, "http2"},
    {"SLUICE_COMPRESS_MIN_BYTES", S_TOP, "compress_min_bytes"},
    {"SLUICE_TLS_CERT", S_TLS, "cert"},
    {"SLUICE_TLS_KEY", S_TLS, "key"},
    {"SLUICE_JWT_SECRET", S_JWT, "secret"},
    {"SLUICE_JWT_AUDIENCE", S_JWT, "audience"},
    {"SLUICE_JWT_ISSUER", S_JWT, "issuer"},
    {"SLUICE_JWT_MAX_AGE", S_JWT, "max_age"},
    {"DATABASE_URL", S_PRIMARY, "url"},
    {"SLUICE_POOL_SIZE", S_PRIMARY, "pool_size"},
    {"SLUICE_MAX_OVERFLOW", S_PRIMARY, "max_overflow"},
    {"SLUICE_POOL_TIMEOUT", S_PRIMARY, "pool_timeout"},
    {"SLUICE_POOL_RECYCLE", S_PRIMARY, "pool_recycle"},
    {"SLUICE_ECHO", S_PRIMARY, "echo"},
    {"SLUICE_PREPARED_STATEMENT_CACHE_SIZE", S_PRIMARY, "prepared_statement_cache_size"},
    {"SLUICE_STATEMENT_TIMEOUT_MS", S_PRIMARY, "statement_timeout_ms"},
    {"SLUICE_FAILOVER_WAIT_MS", S_PRIMARY, "failover_wait_ms"},
    {"SLUICE_READ_YOUR_WRITES_WAIT_MS", S_PRIMARY, "read_your_writes_wait_ms"},
};

const char *config_env_var(size_t i)
{
    return i < ARRAY_SIZE(env_overrides) ? env_overrides[i].var : NULL;
}

#define MAX_WORKERS 1024
#define MAX_SECONDS 1e9 /* keeps every duration convertible to integer milliseconds */
/* h2o 2.2.5 parses at most 100 header lines and a request head of 8 KiB + 4 KiB per line; past
 * those it answers a plain-text 400 of its own, so our limits stay below them. */
#define MAX_HEADER_LINES 100
#define MAX_HEADER_BYTES (400 * 1024)

/* A value to validate: from the Lua table, or an environment variable (always a string). */
struct val {
    int type; /* LUA_T* */
    bool from_env;
    bool b;
    double d;
    const char *s;
    const char *type_name;
};

struct loader {
    const char *path;
    struct config *cfg;
    char msg[1024];
    int rc;
};

static int fail(struct loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct loader *ld, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->msg, sizeof ld->msg, fmt, ap);
    va_end(ap);
    ld->rc = -1;
    return -1;
}

/* Appends s as a short quoted string: at most 60 bytes, control characters as '?'. */
static void quote(char *out, size_t n, const char *s)
{
    size_t o = 0, i = 0;
    if (n < 8) {
        if (n) out[0] = '\0';
        return;
    }
    out[o++] = '"';
    for (; s[i] && i < 60 && o + 6 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') out[o++] = '\\';
        out[o++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    if (s[i]) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* The "got ..." part of an error: strings quoted, numbers and booleans as written, else the type. */
static void describe(const struct val *v, char *out, size_t n)
{
    switch (v->type) {
    case LUA_TSTRING:
        quote(out, n, v->s);
        break;
    case LUA_TNUMBER:
        snprintf(out, n, "%.14g", v->d);
        break;
    case LUA_TBOOLEAN:
        snprintf(out, n, "%s", v->b ? "true" : "false");
        break;
    default:
        snprintf(out, n, "%s", v->type_name);
        break;
    }
}

static void read_val(lua_State *L, int idx, struct val *v)
{
    memset(v, 0, sizeof *v);
    v->type = lua_type(L, idx);
    v->type_name = lua_typename(L, v->type);
    if (v->type == LUA_TSTRING)
        v->s = lua_tostring(L, idx);
    else if (v->type == LUA_TNUMBER)
        v->d = lua_tonumber(L, idx);
    else if (v->type == LUA_TBOOLEAN)
        v->b = lua_toboolean(L, idx);
}

_Static_assert(CONFIG_MIN_SECRET_BYTES == 32, "expected() names the minimum length of a secret");

static const char *expected(enum kind k, bool from_env)
{
    switch (k) {
    case K_URL:
        return "a string";
    case K_STRING:
        return "a non-empty string";
    case K_SECRET:
        return "a string of at least 32 bytes";
    case K_LISTEN:
        return "\"host:port\", \"[ipv6]:port\" or \"unix:/path\"";
    case K_WORKERS:
    case K_POOL_SIZE:
        return "a positive integer or \"auto\"";
    case K_POSITIVE:
    case K_BYTES:
        return "a positive integer";
    case K_COUNT:
        return "an integer >= 0";
    case K_SECONDS:
        return "a number of seconds >= 0";
    case K_BOOL:
        return from_env ? "true, false, 1 or 0" : "true or false";
    case K_LEVEL:
        return "\"debug\", \"info\", \"warn\" or \"error\"";
    case K_FORMAT:
        return "\"json\" or \"text\"";
    }
    return "?";
}

/* A number, from a Lua number or (environment only) a decimal string. */
static bool as_number(const struct val *v, double *out)
{
    if (v->type == LUA_TNUMBER) {
        *out = v->d;
        return true;
    }
    if (!v->from_env || v->type != LUA_TSTRING) return false;
    const char *s = v->s;
    /* strtod also takes hex, "inf", "nan" and leading blanks: only plain decimals count */
    if (!((*s >= '0' && *s <= '9') || *s == '-' || *s == '+' || *s == '.')) return false;
    if (strpbrk(s, "xXnNiI")) return false;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE) return false;
    *out = d;
    return true;
}

static bool listen_ok(const char *s)
{
    if (strncmp(s, "unix:", 5) == 0) return s[5] != '\0';
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s) return false;
    if (s[0] == '[') {
        if (colon[-1] != ']' || colon - s < 3) return false;
    } else if (memchr(s, ':', (size_t)(colon - s))) {
        return false; /* a bare IPv6 address is ambiguous: it needs brackets */
    }
    const char *p = colon + 1;
    if (*p == '\0' || strlen(p) > 5) return false;
    long port = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') return false;
        port = port * 10 + (*p - '0');
    }
    return port >= 1 && port <= 65535;
}

static bool bool_from_env(const char *s, bool *out)
{
    if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0) {
        *out = true;
        return true;
    }
    if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0) {
        *out = false;
        return true;
    }
    return false;
}

/* Validates v against f and stores it in the struct at base. where prefixes the error: "file: key"
 * or the variable name. Returns 0, or -1 with ld->msg set. */
static int set_field(struct loader *ld, const char *where, const struct field *f, void *base,
                     const struct val *v)
{
    char *slot = (char *)base + f->offset;
    char got[128];
    describe(v, got, sizeof got);
    const char *want = expected(f->kind, v->from_env);
    double d;

    switch (f->kind) {
    case K_URL:
    case K_STRING:
    case K_LISTEN: {
        if (v->type != LUA_TSTRING) break;
        if (f->kind == K_STRING && v->s[0] == '\0') break;
        if (f->kind == K_LISTEN && !listen_ok(v->s)) break;
        char **sp = (char **)slot;
        free(*sp);
        *sp = xstrdup(v->s);
        return 0;
    }
    case K_SECRET: {
        /* A secret is never echoed, not even a short one: only its length, or its type. */
        if (v->type != LUA_TSTRING) return fail(ld, "%s: expected %s, got a %s", where, want, v->type_name);
        size_t n = strlen(v->s);
        if (n < CONFIG_MIN_SECRET_BYTES)
            return fail(ld,
                        "%s: expected %s (a random key, e.g. from openssl rand -base64 32), got %zu bytes",
                        where, want, n);
        char **sp = (char **)slot;
        free(*sp);
        *sp = xstrdup(v->s);
        return 0;
    }
    case K_WORKERS:
    case K_POOL_SIZE:
    case K_POSITIVE:
    case K_COUNT:
    case K_BYTES: {
        bool is_auto_kind = f->kind == K_WORKERS || f->kind == K_POOL_SIZE;
        if (is_auto_kind && v->type == LUA_TSTRING && strcmp(v->s, "auto") == 0) {
            *(int *)slot = f->kind == K_WORKERS ? cpu_count() : 2 * cpu_count() + 1;
            return 0;
        }
        if (!as_number(v, &d) || !isfinite(d) || d != floor(d)) break;
        double min = f->kind == K_COUNT ? 0 : 1;
        double max = f->kind == K_WORKERS ? MAX_WORKERS : f->kind == K_BYTES ? 9007199254740992.0 : INT_MAX;
        if (d < min) break;
        if (d > max) return fail(ld, "%s: expected %s (at most %.0f), got %s", where, want, max, got);
        if (f->kind == K_BYTES)
            *(size_t *)slot = (size_t)d;
        else
            *(int *)slot = (int)d;
        return 0;
    }
    case K_SECONDS:
        if (!as_number(v, &d) || !isfinite(d) || d < 0) break;
        if (d > MAX_SECONDS)
            return fail(ld, "%s: expected %s (at most %.0f), got %s", where, want, MAX_SECONDS, got);
        *(double *)slot = d;
        return 0;
    case K_BOOL: {
        bool b;
        if (v->type == LUA_TBOOLEAN)
            b = v->b;
        else if (!(v->from_env && bool_from_env(v->s, &b)))
            break;
        *(bool *)slot = b;
        return 0;
    }
    case K_LEVEL: {
        if (v->type != LUA_TSTRING) break;
        int level = log_level_parse(v->s);
        if (level < 0) break;
        *(int *)slot = level;
        return 0;
    }
    case K_FORMAT:
        if (v->type != LUA_TSTRING) break;
        if (strcmp(v->s, "json") == 0)
            *(bool *)slot = true;
        else if (strcmp(v->s, "text") == 0)
            *(bool *)slot = false;
        else
            break;
        return 0;
    }
    return fail(ld, "%s: expected %s, got %s", where, want, got);
}

static const struct field *find_field(const struct field *fields, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(fields[i].name, name) == 0) return &fields[i];
    return NULL;
}

/* The fields an environment variable of each scope sets. */
static const struct {
    const struct field *fields;
    size_t n;
} scopes[] = {
    [S_TOP] = {top_fields, ARRAY_SIZE(top_fields)},       [S_LOG] = {log_fields, ARRAY_SIZE(log_fields)},
    [S_JWT] = {jwt_fields, ARRAY_SIZE(jwt_fields)},       [S_TLS] = {tls_fields, ARRAY_SIZE(tls_fields)},
    [S_PRIMARY] = {pool_fields, ARRAY_SIZE(pool_fields)},
};

/* ---- defaults ---- */

static void pool_defaults(struct pool_config *p, const char *name)
{
    memset(p, 0, sizeof *p);
    p->name = xstrdup(name);
    p->url = xstrdup("");
    p->pool_size = 2 * cpu_count() + 1;
    p->max_overflow = 20;
    p->pool_timeout = 30;
    p->pool_recycle = 1800;
    p->idle_timeout = 300;
    p->connect_timeout = 5;
    p->echo = false;
    p->prepared_statement_cache_size = 256;
    p->statement_timeout_ms = 30000;
    p->pipeline_depth = 16;
    p->max_queue = 1024;
    p->failover_wait_ms = 10000;
    p->optional = false;
    p->read_your_writes_wait_ms = 200;
}

static void config_defaults(struct config *c, const char *path)
{
    memset(c, 0, sizeof *c);
    c->path = xstrdup(path);
    c->listen = xstrdup("127.0.0.1:8080");
    c->workers = cpu_count();
    c->admin_token = NULL;
    c->max_body_bytes = 64u * 1024 * 1024;
    c->shutdown_timeout = 30;
    c->shutdown_grace = 5;
    c->request_timeout = 30;
    c->migrations = xstrdup("migrations");
    c->log_level = LOG_INFO;
    c->log_json = true;
    c->log_access = true;
    c->compress_min_bytes = 1024;
    c->cors.max_age = 600;
    c->nscripts = 2;
    c->scripts = xcalloc(2, sizeof(char *));
    c->scripts[0] = xstrdup("lua/endpoints/*.lua");
    c->scripts[1] = xstrdup("lua/policy.lua");
    c->protect_metrics = false;
    c->max_url_bytes = 8192;
    c->lua_memory_limit = 64u * 1024 * 1024;
    /* as large as the Lua state a handler builds its answer in: any answer that state can hold
     * as distinct data fits, one made of repeated references to the same data does not */
    c->max_response_bytes = 64u * 1024 * 1024;
    c->max_params = 1000;
    c->max_rows = 100000;
    c->max_inflight = 10000;
    c->max_header_bytes = 32 * 1024;
    c->max_headers = 64;
    c->client_timeout = 10;
    c->http2 = false; /* h2o 2.2.5's HTTP/2 has no limit on reset streams (docs/security.md) */
    c->openapi_license = xstrdup("Proprietary");
}

/* ---- the Lua table ---- */

/* Pushes t[key] without metamethods; t is an absolute index. */
static void rawget(lua_State *L, int t, const char *key)
{
    lua_pushstring(L, key);
    lua_rawget(L, t);
}

/* Fails on the first key of table t (absolute index) that is not in fields (or extra), in a
 * stable order: string keys alphabetically, then any other key. prefix: "" or "pools.primary." */
static int check_keys(struct loader *ld, lua_State *L, int t, const char *prefix, const struct field *fields,
                      size_t nfields, const char *const *extra)
{
    char *worst = NULL; /* the alphabetically first unknown string key */
    char other[128] = "";
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            const char *k = lua_tostring(L, -1);
            bool known = find_field(fields, nfields, k) != NULL;
            for (size_t i = 0; extra && extra[i] && !known; i++) known = strcmp(extra[i], k) == 0;
            if (!known && (worst == NULL || strcmp(k, worst) < 0)) {
                free(worst);
                worst = xstrdup(k);
            }
        } else if (other[0] == '\0') {
            struct val v;
            read_val(L, -1, &v);
            describe(&v, other, sizeof other);
        }
    }
    int rc = 0;
    size_t plen = strlen(prefix);
    if (worst) {
        /* the key may hold anything, a newline included: the message stays one line */
        char *full = xmalloc(plen + strlen(worst) + 1), q[80];
        strcpy(full, prefix);
        strcat(full, worst);
        quote(q, sizeof q, full);
        free(full);
        rc = fail(ld, "%s: unknown key %s", ld->path, q);
    } else if (other[0]) /* t[1] in "pools.primary." reads pools.primary[1] */
        rc = fail(ld, "%s: unknown key %.*s[%s]", ld->path, (int)(plen ? plen - 1 : 0), prefix, other);
    free(worst);
    return rc;
}

/* Reads the known fields of table t into base. prefix as for check_keys. */
static int read_fields(struct loader *ld, lua_State *L, int t, const char *prefix, const struct field *fields,
                       size_t nfields, void *base)
{
    for (size_t i = 0; i < nfields; i++) {
        rawget(L, t, fields[i].name);
        if (!lua_isnil(L, -1)) {
            struct val v;
            read_val(L, -1, &v);
            char where[512];
            snprintf(where, sizeof where, "%s: %s%s", ld->path, prefix, fields[i].name);
            if (set_field(ld, where, &fields[i], base, &v) < 0) return -1;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* Fails unless the value at idx (absolute) is a table. */
static int want_table(struct loader *ld, lua_State *L, int idx, const char *key)
{
    if (lua_type(L, idx) == LUA_TTABLE) return 0;
    struct val v;
    read_val(L, idx, &v);
    char got[128];
    describe(&v, got, sizeof got);
    return fail(ld, "%s: %s: expected a table, got %s", ld->path, key, got);
}

/* Copies a validated string (v, at idx) or array of n strings into a new list *out; returns its
 * length. */
static size_t copy_strings(lua_State *L, int idx, const struct val *v, size_t n, char ***out)
{
    *out = xcalloc(n ? n : 1, sizeof(char *));
    if (v->type == LUA_TSTRING) {
        (*out)[0] = xstrdup(v->s);
        return n;
    }
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        (*out)[i - 1] = xstrdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    return n;
}

static int read_scripts(struct loader *ld, lua_State *L, int idx)
{
    struct config *c = ld->cfg;
    struct val v;
    read_val(L, idx, &v);
    char got[128];
    describe(&v, got, sizeof got);
    size_t n = 0;
    if (v.type == LUA_TSTRING) {
        n = 1;
    } else if (v.type == LUA_TTABLE) {
        n = lua_objlen(L, idx);
        /* an array: exactly the keys 1..n */
        size_t count = 0;
        bool array = true;
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            lua_pop(L, 1);
            count++;
            if (lua_type(L, -1) != LUA_TNUMBER) array = false;
        }
        if (!array || count != n)
            return fail(ld,
                        "%s: scripts: expected a string or an array of strings, got a table with other keys",
                        ld->path);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (int)i);
            struct val e;
            read_val(L, -1, &e);
            lua_pop(L, 1);
            if (e.type != LUA_TSTRING) {
                describe(&e, got, sizeof got);
                return fail(ld, "%s: scripts[%zu]: expected a string, got %s", ld->path, i, got);
            }
        }
    } else {
        return fail(ld, "%s: scripts: expected a string or an array of strings, got %s", ld->path, got);
    }
    for (size_t i = 0; i < c->nscripts; i++) free(c->scripts[i]);
    free(c->scripts);
    c->nscripts = copy_strings(L, idx, &v, n, &c->scripts);
    return 0;
}

static void free_tokens(struct config *c)
{
    for (size_t i = 0; i < c->ntokens; i++) free(c->tokens[i]);
    free(c->tokens);
    c->tokens = NULL;
    c->ntokens = 0;
}

/* tokens = { "t1", "t2" }: an array of non-empty strings (a single string is one token). */
static int read_tokens(struct loader *ld, lua_State *L, int idx)
{
    struct config *c = ld->cfg;
    struct val v;
    read_val(L, idx, &v);
    char got[128];
    size_t n = 1;
    if (v.type == LUA_TTABLE) {
        n = lua_objlen(L, idx);
        size_t count = 0;
        lua_pushnil(L);
        while (lua_next(L, idx) != 0) {
            lua_pop(L, 1);
            count++;
        }
        if (count != n)
            return fail(ld, "%s: tokens: expected an array of strings, got a table with other keys",
                        ld->path);
        for (size_t i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, (int)i);
            struct val e;
            read_val(L, -1, &e);
            lua_pop(L, 1);
            if (e.type != LUA_TSTRING || e.s[0] == '\0') {
                /* the value is a secret: name its type only */
                return fail(ld, "%s: tokens[%zu]: expected a non-empty string, got %s", ld->path, i,
                            e.type == LUA_TSTRING ? "\"\"" : e.type_name);
            }
        }
    } else if (v.type != LUA_TSTRING || v.s[0] == '\0') {
        describe(&v, got, sizeof got);
        return fail(ld, "%s: tokens: expected an array of non-empty strings, got %s", ld->path,
                    v.type == LUA_TSTRING ? got : v.type_name);
    }
    free_tokens(c);
    c->ntokens = copy_strings(L, idx, &v, n, &c->tokens);
    return 0;
}

/* SLUICE_TOKENS: comma-separated; blanks around a token are dropped, empty items skipped. */
static void tokens_from_env(struct config *c, const char *s)
{
    free_tokens(c);
    c->tokens = xcalloc(strlen(s) / 2 + 1, sizeof(char *));
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if (t > s) c->tokens[c->ntokens++] = xstrndup(s, (size_t)(t - s));
        s = e;
    }
}

/* One origin as a browser sends it: http or https, a host, an optional port; no path, no
 * trailing slash. */
static bool origin_ok(const char *s)
{
    const char *host;
    if (strncasecmp(s, "https://", 8) == 0)
        host = s + 8;
    else if (strncasecmp(s, "http://", 7) == 0)
        host = s + 7;
    else
        return false;
    if (*host == '\0' || *host == ':') return false;
    for (const char *p = host; *p; p++)
        if (*p == '/' || *p == '?' || *p == '#' || *p == '@' || *p <= ' ' || *p == 0x7f) return false;
    return true;
}

/* A header name (an HTTP token). */
static bool header_name_ok(const char *s)
{
    if (*s == '\0') return false;
    for (; *s; s++)
        if (!(strchr("!#$%&'*+-.^_`|~", *s) || (*s >= '0' && *s <= '9') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= 'a' && *s <= 'z')))
            return false;
    return true;
}

/* Checks that the value at idx is an array of strings each accepted by ok; copies it into *out.
 * key names it in an error, want says what each item must be. */
static int read_string_list(struct loader *ld, lua_State *L, int idx, const char *key,
                            bool (*ok)(const char *), const char *want, char ***out, size_t *nout)
{
    struct val v;
    read_val(L, idx, &v);
    char got[128];
    if (v.type != LUA_TTABLE) {
        describe(&v, got, sizeof got);
        return fail(ld, "%s: %s: expected an array of %s, got %s", ld->path, key, want, got);
    }
    size_t n = lua_objlen(L, idx), count = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        count++;
    }
    if (count != n || n == 0)
        return fail(ld, "%s: %s: expected a non-empty array of %s, got %s", ld->path, key, want,
                    n == 0 && count == 0 ? "an empty table" : "a table with other keys");
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        struct val e;
        read_val(L, -1, &e);
        lua_pop(L, 1);
        if (e.type != LUA_TSTRING || !ok(e.s)) {
            describe(&e, got, sizeof got);
            return fail(ld, "%s: %s[%zu]: expected %s, got %s", ld->path, key, i, want, got);
        }
    }
    *nout = copy_strings(L, idx, &v, n, out);
    return 0;
}

/* cors = { origins = {"https://app.example"} | "*", headers = {..}, max_age = 600,
 * credentials = false } */
static int read_cors(struct loader *ld, lua_State *L, int idx)
{
    static const char *const lists[] = {"headers", "origins", NULL};
    struct cors_config *c = &ld->cfg->cors;
    if (want_table(ld, L, idx, "cors") < 0 ||
        check_keys(ld, L, idx, "cors.", cors_fields, ARRAY_SIZE(cors_fields), lists) < 0 ||
        read_fields(ld, L, idx, "cors.", cors_fields, ARRAY_SIZE(cors_fields), ld->cfg) < 0)
        return -1;
    int rc = 0;
    rawget(L, idx, "origins");
    int o = lua_gettop(L);
    if (lua_isnil(L, o))
        rc = fail(ld,
                  "%s: cors.origins: expected \"*\" or an array of origins such as "
                  "\"https://app.example\", got nothing",
                  ld->path);
    else if (lua_type(L, o) == LUA_TSTRING && strcmp(lua_tostring(L, o), "*") == 0)
        c->any_origin = true;
    else if (lua_type(L, o) == LUA_TSTRING)
        rc = fail(ld,
                  "%s: cors.origins: expected \"*\" or an array of origins, got a single string (write "
                  "{\"%.100s\"})",
                  ld->path, lua_tostring(L, o));
    else
        rc = read_string_list(ld, L, o, "cors.origins", origin_ok,
                              "an origin such as \"https://app.example\" (scheme, host, optional port; no "
                              "path or trailing slash)",
                              &c->origins, &c->norigins);
    lua_pop(L, 1);
    for (size_t i = 0; i < c->norigins; i++)
        for (char *p = c->origins[i]; *p; p++) *p = (char)tolower((unsigned char)*p);
    if (rc < 0) return -1;
    rawget(L, idx, "headers");
    int h = lua_gettop(L);
    if (!lua_isnil(L, h))
        rc = read_string_list(ld, L, h, "cors.headers", header_name_ok, "a header name such as \"X-Api-Key\"",
                              &c->headers, &c->nheaders);
    lua_pop(L, 1);
    if (rc < 0) return -1;
    c->enabled = true;
    return 0;
}

static bool pool_name_ok(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_')) return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

/* "primary" first, then by name. */
static int pool_order(const void *a, const void *b)
{
    const char *x = ((const struct pool_config *)a)->name, *y = ((const struct pool_config *)b)->name;
    bool xp = strcmp(x, "primary") == 0, yp = strcmp(y, "primary") == 0;
    if (xp != yp) return xp ? -1 : 1;
    return strcmp(x, y);
}

static int read_pools(struct loader *ld, lua_State *L, int idx)
{
    struct config *c = ld->cfg;
    if (want_table(ld, L, idx, "pools") < 0) return -1;
    size_t n = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        n++;
    }
    c->pools = xcalloc(n ? n : 1, sizeof *c->pools);
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
        lua_pop(L, 1);
        struct val k;
        read_val(L, -1, &k);
        if (k.type != LUA_TSTRING || !pool_name_ok(k.s)) {
            char got[128];
            describe(&k, got, sizeof got);
            lua_pop(L, 1);
            return fail(ld, "%s: pools: expected pool names matching [A-Za-z_][A-Za-z0-9_]*, got %s",
                        ld->path, got);
        }
        pool_defaults(&c->pools[c->npools++], k.s);
    }
    qsort(c->pools, c->npools, sizeof *c->pools, pool_order);
    for (size_t i = 0; i < c->npools; i++) {
        struct pool_config *p = &c->pools[i];
        char key[256], prefix[260];
        snprintf(key, sizeof key, "pools.%s", p->name);
        snprintf(prefix, sizeof prefix, "%s.", key);
        rawget(L, idx, p->name);
        int t = lua_gettop(L);
        int rc = want_table(ld, L, t, key);
        if (rc == 0) rc = check_keys(ld, L, t, prefix, pool_fields, ARRAY_SIZE(pool_fields), NULL);
        if (rc == 0) rc = read_fields(ld, L, t, prefix, pool_fields, ARRAY_SIZE(pool_fields), p);
        lua_pop(L, 1);
        if (rc < 0) return -1;
    }
    return 0;
}

/* A table of fields stored in the config itself (log, jwt, tls): t[name], when present. */
static int read_section(struct loader *ld, lua_State *L, int t, const char *name, const struct field *fields,
                        size_t nfields)
{
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s.", name);
    rawget(L, t, name);
    int rc = 0, s = lua_gettop(L);
    if (!lua_isnil(L, s)) {
        rc = want_table(ld, L, s, name);
        if (rc == 0) rc = check_keys(ld, L, s, prefix, fields, nfields, NULL);
        if (rc == 0) rc = read_fields(ld, L, s, prefix, fields, nfields, ld->cfg);
    }
    lua_pop(L, 1);
    return rc;
}

static int read_root(struct loader *ld, lua_State *L, int t)
{
    static const char *const sections[] = {"cors", "jwt", "log", "pools", "scripts", "tls", "tokens", NULL};
    struct config *c = ld->cfg;
    if (check_keys(ld, L, t, "", top_fields, ARRAY_SIZE(top_fields), sections) < 0) return -1;
    if (read_fields(ld, L, t, "", top_fields, ARRAY_SIZE(top_fields), c) < 0) return -1;

    if (read_section(ld, L, t, "log", log_fields, ARRAY_SIZE(log_fields)) < 0 ||
        read_section(ld, L, t, "jwt", jwt_fields, ARRAY_SIZE(jwt_fields)) < 0 ||
        read_section(ld, L, t, "tls", tls_fields, ARRAY_SIZE(tls_fields)) < 0)
        return -1;

    int rc = 0, s;
    rawget(L, t, "tokens");
    s = lua_gettop(L);
    if (!lua_isnil(L, s)) rc = read_tokens(ld, L, s);
    lua_pop(L, 1);
    if (rc < 0) return -1;

    rawget(L, t, "cors");
    s = lua_gettop(L);
    if (!lua_isnil(L, s)) rc = read_cors(ld, L, s);
    lua_pop(L, 1);
    if (rc < 0) return -1;

    rawget(L, t, "scripts");
    s = lua_gettop(L);
    if (!lua_isnil(L, s)) rc = read_scripts(ld, L, s);
    lua_pop(L, 1);
    if (rc < 0) return -1;

    rawget(L, t, "pools");
    s = lua_gettop(L);
    if (!lua_isnil(L, s)) rc = read_pools(ld, L, s);
    lua_pop(L, 1);
    return rc;
}

/* A Lua error message as one line. */
static void lua_message(struct loader *ld, lua_State *L, int idx)
{
    const char *m = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
    if (m)
        fail(ld, "%s", m);
    else
        fail(ld, "%s: error object is a %s value", ld->path, luaL_typename(L, idx));
    for (char *p = ld->msg; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
}

/* Runs under lua_cpcall so that even an allocation failure inside Lua cannot panic. */
static int load_protected(lua_State *L)
{
    struct loader *ld = lua_touserdata(L, 1);
    lua_settop(L, 0);
    /* Text only: LuaJIT does not verify bytecode, and a damaged chunk could crash the loader. */
    if (luaL_loadfilex(L, ld->path, "t") != 0) {
        lua_message(ld, L, -1);
        return 0;
    }
    if (lua_pcall(L, 0, 1, 0) != 0) {
        lua_message(ld, L, -1);
        return 0;
    }
    if (lua_type(L, 1) != LUA_TTABLE) {
        struct val v;
        read_val(L, 1, &v);
        char got[128];
        describe(&v, got, sizeof got);
        fail(ld, "%s: expected the file to return a table, got %s", ld->path, got);
        return 0;
    }
    read_root(ld, L, 1);
    return 0;
}

static int read_file(struct loader *ld)
{
    struct stat st;
    if (stat(ld->path, &st) < 0) return fail(ld, "%s: cannot open file: %s", ld->path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return fail(ld, "%s: cannot open file: %s", ld->path, strerror(EISDIR));
    lua_State *L = luaL_newstate();
    if (L == NULL) return fail(ld, "%s: cannot create a Lua state", ld->path);
    luaL_openlibs(L);
    if (lua_cpcall(L, load_protected, ld) != 0) lua_message(ld, L, -1);
    lua_close(L);
    return ld->rc;
}

/* ---- environment ---- */

static struct pool_config *primary_pool(struct config *c)
{
    for (size_t i = 0; i < c->npools; i++)
        if (strcmp(c->pools[i].name, "primary") == 0) return &c->pools[i];
    /* created on demand; primary sorts first */
    c->pools = xrealloc(c->pools, (c->npools + 1) * sizeof *c->pools);
    memmove(c->pools + 1, c->pools, c->npools * sizeof *c->pools);
    c->npools++;
    pool_defaults(&c->pools[0], "primary");
    return &c->pools[0];
}

static int apply_env(struct loader *ld)
{
    struct config *c = ld->cfg;
    const char *tokens = getenv("SLUICE_TOKENS");
    if (tokens != NULL && *tokens != '\0') tokens_from_env(c, tokens);
    for (size_t i = 0; i < ARRAY_SIZE(env_overrides); i++) {
        const char *s = getenv(env_overrides[i].var);
        if (s == NULL || *s == '\0') continue;
        struct val v = {.type = LUA_TSTRING, .from_env = true, .s = s, .type_name = "string"};
        const struct field *fields = scopes[env_overrides[i].scope].fields;
        const struct field *f = find_field(fields, scopes[env_overrides[i].scope].n, env_overrides[i].key);
        void *base = env_overrides[i].scope == S_PRIMARY ? (void *)primary_pool(c) : (void *)c;
        if (set_field(ld, env_overrides[i].var, f, base, &v) < 0) return -1;
    }
    return 0;
}

/* What no single key can check: limits h2o sets, and keys that go together. */
static int check_combined(struct loader *ld)
{
    const struct config *c = ld->cfg;
    if (c->max_headers > MAX_HEADER_LINES)
        return fail(ld, "%s: max_headers: expected at most %d (the HTTP parser's limit), got %d", ld->path,
                    MAX_HEADER_LINES, c->max_headers);
    if (c->max_header_bytes > MAX_HEADER_BYTES)
        return fail(ld, "%s: max_header_bytes: expected at most %d (the HTTP parser's limit), got %zu",
                    ld->path, MAX_HEADER_BYTES, c->max_header_bytes);
    if (c->client_timeout <= 0)
        return fail(ld, "%s: client_timeout: expected a number of seconds above 0, got %g", ld->path,
                    c->client_timeout);
    if ((c->tls_cert == NULL) != (c->tls_key == NULL))
        return fail(ld, "%s: tls: expected both cert and key, got only %s", ld->path,
                    c->tls_cert ? "cert" : "key");
    return 0;
}

/* ---- public ---- */

int config_load(const char *path, struct config *out, char *err, size_t errlen)
{
    struct loader ld = {.path = path, .cfg = out};
    config_defaults(out, path);
    if (read_file(&ld) == 0 && apply_env(&ld) == 0 && check_combined(&ld) == 0) {
        if (out->npools == 0) primary_pool(out);
        if (err && errlen) err[0] = '\0';
        return 0;
    }
    if (err && errlen) snprintf(err, errlen, "%s", ld.msg);
    config_free(out);
    return -1;
}

void config_free(struct config *c)
{
    if (c == NULL) return;
    free(c->path);
    free(c->listen);
    free(c->admin_token);
    free(c->openapi_license);
    free(c->openapi_license_url);
    free(c->migrations);
    free_tokens(c);
    free(c->jwt_secret);
    free(c->jwt_audience);
    free(c->jwt_issuer);
    free(c->tls_cert);
    free(c->tls_key);
    for (size_t i = 0; i < c->cors.norigins; i++) free(c->cors.origins[i]);
    free(c->cors.origins);
    for (size_t i = 0; i < c->cors.nheaders; i++) free(c->cors.headers[i]);
    free(c->cors.headers);
    for (size_t i = 0; i < c->npools; i++) {
        free(c->pools[i].name);
        free(c->pools[i].url);
    }
    free(c->pools);
    for (size_t i = 0; i < c->nscripts; i++) free(c->scripts[i]);
    free(c->scripts);
    memset(c, 0, sizeof *c);
}

const struct pool_config *config_pool(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->npools; i++)
        if (strcmp(c->pools[i].name, name) == 0) return &c->pools[i];
    return NULL;
}
