/* endpoint.h — the registry of what a script defined: named queries (and their route aliases).
 * One registry per worker, built by script.c at load; immutable afterwards except for what the
 * server teaches it (parameter types). */
#ifndef SLUICE_ENDPOINT_H
#define SLUICE_ENDPOINT_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "urlpath.h"

struct metrics_entry; /* metrics.c: statistics by name */
struct cache_stats;   /* cache.h: the result cache's counters by name */

/* Who may call an endpoint (auth.c checks it before anything else runs). */
enum endpoint_auth {
    AUTH_NONE = 0, /* anyone */
    AUTH_BEARER,   /* Authorization: Bearer <one of the config's tokens> */
    AUTH_JWT,      /* Authorization: Bearer <an HS256 JWT signed with jwt.secret> */
    AUTH_LUA,      /* auth_ref: a Lua function(req) returning true to allow */
};

struct route_pattern {
    char *method; /* "GET", "POST", ... */
    char **segs;  /* path segments; "{name}" segments bind a parameter */
    int nsegs;
};

struct query_def {
    struct registry *reg; /* the generation it belongs to */
    char *name;
    char *sql;          /* as written */
    char *sql_numbered; /* :name -> $n */
    char **param_names; /* param_names[i] binds $(i+1) */
    int nparams;
    /* param_default[i]: what a missing parameter i takes (JSON null for `optional = true`), or
     * NULL when it is required. NULL as a whole when every parameter is required. Owned. */
    json_t **param_default;
    bool readonly, single, idempotent;
    int timeout_ms;              /* 0 = the pool's statement_timeout_ms */
    char *pool;                  /* NULL = sluice.route or "primary" */
    int pool_idx;                /* index of that pool in the worker's pools, resolved at load */
    int route_info_ref;          /* the table sluice.route gets for it (Lua registry ref), 0 until made */
    struct route_pattern *route; /* NULL when no alias */
    uint32_t id;                 /* process-wide unique: the prepared statement is "s<id>" */
    char stmt_name[16];
    /* Learned from the server on first prepare (PQdescribePrepared). */
    bool described;
    Oid *param_types;
    /* Per worker counters, read by /admin/queries. */
    uint64_t calls, errors;
    /* Monitoring (metrics.c): set at load from the query's own keys, sluice.policy or defaults. */
    int slow_ms;                   /* slower requests count in db_slow_query_count and are logged; 0 = off */
    bool slow_ms_set;              /* the query set slow_query_ms itself: sluice.policy does not change it */
    bool log_params;               /* the slow-query log shows parameter values, not only their names */
    struct metrics_entry *metrics; /* this worker's statistics of the name, found at first use */
    enum endpoint_auth auth;
    int auth_ref; /* AUTH_LUA: luaL_ref of the policy function in reg->L */
    /* The result cache (cache.h, cached.h): set at load. */
    int cache_ttl_ms;  /* 0: answers are not cached */
    bool coalesce;     /* identical requests in flight share one execution */
    int *cache_tables; /* ids (cache_table_id) of the tables its answers depend on */
    int ncache_tables;
    int *write_tables; /* ids of the tables a write through it changes (`writes`) */
    int nwrite_tables;
    struct cache_stats *cache_stats; /* the name's counters, when cached or coalesced */
    uint64_t cache_def_hash;         /* of what shapes its answer (SQL, single): part of every key */
};

/* The name of parameter i (0-based), or NULL when i names none. */
static inline const char *query_param_name(const struct query_def *q, int i)
{
    return i >= 0 && i < q->nparams ? q->param_names[i] : NULL;
}

enum bulk_mode { BULK_INSERT, BULK_UPSERT, BULK_UPDATE, BULK_DELETE };

struct bulk_def {
    struct registry *reg;
    char *name;
    char *table;    /* as written: may be schema-qualified */
    char **columns; /* declared columns, in COPY order */
    int ncolumns;
    enum bulk_mode mode;
    char **key; /* key columns (a subset of columns) for upsert / update / delete */
    int nkey;
    int chunk_rows; /* rows per COPY chunk, default 10000 */
    bool atomic;    /* default true: one transaction for the whole body */
    char *pool;
    int pool_idx;
    /* SQL built once at load (identifiers quoted). */
    char *sql_describe;    /* SELECT cols FROM table LIMIT 0 */
    char *sql_copy;        /* COPY target (cols) FROM STDIN */
    char *sql_copy_binary; /* the same in the binary format (insert mode), else NULL */
    char *sql_stage;       /* CREATE TEMP TABLE ... (non-insert modes), else NULL */
    char *sql_merge;       /* INSERT .. ON CONFLICT / UPDATE .. FROM / DELETE .. USING, else NULL */
    /* Learned on first use. */
    Oid *types;
    bool described;
    uint64_t calls, errors, rows;
    struct metrics_entry *metrics; /* this worker's statistics of the name (metrics.c), found at first use */
    enum endpoint_auth auth;       /* AUTH_LUA is not offered for bulk endpoints */
    int table_id;                  /* the table's id for the result cache (cache_table_id), -1 none */
};

/* A Lua handler (sluice.endpoint): its function lives in the worker's Lua registry. */
struct handler_def {
    struct registry *reg;
    char *name;
    struct route_pattern *route;
    int fn_ref; /* luaL_ref of the handler function */
    int pool_idx;
    enum endpoint_auth auth;
    int auth_ref; /* AUTH_LUA: luaL_ref of the policy function */
};

/* A live event channel (sluice.channel): NOTIFYs on `listen` served as Server-Sent Events at
 * GET /events/{name}. */
struct channel_def {
    struct registry *reg;
    char *name;
    char *listen; /* the PostgreSQL channel LISTENed to */
    char *pool;
    int buffer;       /* events kept for replay; a subscriber this far behind is closed */
    int keepalive_ms; /* a comment line on a stream idle this long */
    enum endpoint_auth auth;
    int auth_ref;   /* AUTH_LUA: luaL_ref of the policy function */
    int filter_ref; /* luaL_ref of filter(payload, req), LUA_NOREF without one */
};

/* One generation of definitions: what one load of the scripts produced, with the Lua state that
 * ran them. A reload makes a new one; the old one is retired and freed once nothing uses it. */
struct registry {
    struct lua_State *L;
    int refs;            /* requests and jobs still using these definitions */
    uint64_t retired_ms; /* 0 while current */
    struct registry *next_retired;
    struct bulk_def **bulks;
    int nbulks;
    struct handler_def **handlers;
    int nhandlers;
    struct channel_def **channels;
    int nchannels;
    struct query_def **queries;
    int nqueries, cap;
    /* open-addressing index name -> query, power-of-two size */
    struct query_def **index;
    unsigned index_mask;
};

void registry_init(struct registry *r);
void registry_free(struct registry *r);
/* Takes ownership of q. Returns 0, or -SLUICE_EINVAL when the name is taken (q is not taken). */
int registry_add(struct registry *r, struct query_def *q);
struct query_def *registry_find(const struct registry *r, const char *name, size_t len);

/* Takes ownership of b. Returns 0, or -SLUICE_EINVAL when the name is taken. */
int registry_add_bulk(struct registry *r, struct bulk_def *b);
struct bulk_def *registry_find_bulk(const struct registry *r, const char *name, size_t len);
/* The channel called name[0..len), or NULL. */
struct channel_def *registry_find_channel(const struct registry *r, const char *name, size_t len);
/* Builds the SQL of b from its fields (call once they are set). Returns 0, or -1 with err
 * (a key column that is not declared, no key for a mode that needs one). */
int bulk_def_prepare(struct bulk_def *b, char *err, unsigned errlen);
void bulk_def_free(struct bulk_def *b);
/* Appends ident quoted as a SQL identifier ("a.b" becomes "a"."b"). */
struct buf;
void endpoint_quote_ident(struct buf *b, const char *ident);

/* Builds a query definition; rewrites its SQL. Returns NULL with a message in err on bad SQL
 * or route. Strings are copied. */
struct query_def *query_def_new(const char *name, const char *sql, const char *route, char *err,
                                unsigned errlen);
void query_def_free(struct query_def *q);
/* The one writer of what the server said of q's parameters: n types (extra ones ignored, missing
 * ones left unknown as 0). q is described afterwards. */
void query_def_learn_types(struct query_def *q, const Oid *types, int n);
/* Forgets the learned types (the statement went stale): the next use describes it again. */
void query_def_forget_types(struct query_def *q);
/* Index of the parameter called name, or -1. */
int query_def_param(const struct query_def *q, const char *name, size_t len);
/* The value a missing parameter i takes (borrowed from q), or NULL when it is required. */
json_t *query_def_default(const struct query_def *q, int i);
/* Sets what a missing parameter i takes (takes the reference v; NULL: required again). */
void query_def_set_default(struct query_def *q, int i, json_t *v);

/* Parses "METHOD /a/{b}/c". Returns NULL with a message in err when malformed. */
struct route_pattern *route_parse(const char *spec, char *err, unsigned errlen);
void route_free(struct route_pattern *r);
/* Matches the decoded segments of a request path (urlpath_split) against r: a literal segment by
 * its bytes, a {param} segment by any non-empty value; a last empty segment (a trailing '/') is
 * allowed. On success fills vals/lens for each {param} in order (at most max; they point into
 * path) and returns the count; -1 when it does not match. */
int route_match(const struct route_pattern *r, const struct urlpath *path, const char **vals, size_t *lens,
                int max);

#endif
