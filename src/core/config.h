/* config.h — the config file (Lua returning a table) plus environment overrides -> struct config.
 * docs/configuration.md lists every key and default. */
#ifndef SLUICE_CONFIG_H
#define SLUICE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* The shortest jwt.secret accepted: an HS256 key of fewer bytes can be guessed offline from one
 * token (RFC 7518 3.2 asks for at least the hash size, 32 bytes). */
#define CONFIG_MIN_SECRET_BYTES 32

struct pool_config {
    char *name;                        /* key in `pools`, e.g. "primary" */
    char *url;                         /* libpq URL or key=value conninfo; "" = libpq defaults (PG* env) */
    int pool_size;                     /* resolved: "auto" -> 2 * cpu_count() + 1; >= 1 */
    int max_overflow;                  /* >= 0, default 20 */
    double pool_timeout;               /* seconds, default 30 */
    double pool_recycle;               /* seconds, default 1800; 0 = never */
    double idle_timeout;               /* seconds, default 300 */
    double connect_timeout;            /* seconds, default 5 */
    bool echo;                         /* default false */
    int prepared_statement_cache_size; /* default 256, >= 1 */
    int statement_timeout_ms;          /* default 30000; 0 = none */
    int pipeline_depth;                /* queries in flight per connection, default 16, >= 1 */
    int max_queue;                     /* requests waiting for this pool (per worker share), default 1024 */
    int failover_wait_ms;              /* how long work waits for a usable server, default 10000; 0 = none */
    bool optional;                     /* default false: /health/ready ignores an optional pool */
    int read_your_writes_wait_ms;      /* a read of this pool's queries that carries Sluice-LSN waits
                                          this long for a standby to replay it; default 200 */
};

/* cors: which other sites' pages may call the gateway from a browser (cors.c). */
struct cors_config {
    bool enabled;    /* the cors key is set */
    bool any_origin; /* origins = "*" */
    char **origins;  /* "https://app.example", ... (lower-case; unused when any_origin) */
    size_t norigins;
    char **headers; /* request headers a page may send; NULL: the defaults of cors.c */
    size_t nheaders;
    int max_age;      /* seconds a browser may cache a preflight's answer, default 600 */
    bool credentials; /* default false: cookies and Authorization of the page are not allowed */
};

struct config {
    char *path;              /* the file it was read from */
    char *listen;            /* "127.0.0.1:8080", "[::1]:8080", "0.0.0.0:8080" or "unix:/path" */
    int workers;             /* resolved: "auto" -> cpu_count() */
    char *admin_token;       /* NULL = admin endpoints off */
    size_t max_body_bytes;   /* default 64 MiB */
    double shutdown_timeout; /* seconds, default 30 */
    double shutdown_grace;   /* seconds served after SIGTERM with /health/ready at 503, default 5 */
    double request_timeout;  /* seconds, default 30 */
    char *migrations;        /* folder, default "migrations" */
    int log_level;           /* enum log_level, default info */
    bool log_json;           /* log.format: "json" (default) or "text" */
    bool log_access;         /* log.access: one line per request (accesslog.c), default true */
    struct pool_config *pools;
    size_t npools;  /* >= 1: without a `pools` key there is one pool "primary" */
    char **scripts; /* glob patterns as written; default: the two of docs/configuration.md */
    size_t nscripts;
    /* Access control (auth.c). */
    char **tokens; /* bearer tokens of auth = "bearer" endpoints (tokens / SLUICE_TOKENS) */
    size_t ntokens;
    char *jwt_secret;     /* HS256 key of auth = "jwt" endpoints (jwt.secret / SLUICE_JWT_SECRET), at
                             least CONFIG_MIN_SECRET_BYTES */
    char *jwt_audience;   /* NULL = aud is not checked */
    char *jwt_issuer;     /* NULL = iss is not checked */
    double jwt_max_age;   /* seconds; 0 = off: a token without exp may then be of any age */
    bool protect_metrics; /* /metrics and /health (not /health/live) need the admin token */
    /* Limits on what a client controls. */
    size_t max_url_bytes;    /* request target (path + query string), default 8192 -> 414 */
    size_t lua_memory_limit; /* bytes per worker Lua state, default 64 MiB */
    int max_params;          /* query-string pairs or body keys per request, default 1000 -> 400 */
    int max_rows;            /* rows in one query response, default 100000 -> 413; 0 = no limit */
    int max_inflight;        /* requests in progress per worker, default 10000 -> 503 */
    size_t max_header_bytes; /* request header names + values, default 32 KiB -> 431 */
    int max_headers;         /* request header lines, default 64, at most 100 -> 431 */
    double client_timeout;   /* seconds for a request's head and body to arrive, and for an idle
                                keep-alive connection to be closed; default 10, > 0 */
    /* Bytes of the JSON a Lua handler answers, default 64 MiB -> 500. */
    size_t max_response_bytes;
    int compress_min_bytes; /* gzip answers of at least this many bytes, default 1024 */
    struct cors_config cors;
    bool http2; /* serve HTTP/2 (ALPN h2, h2c); default false: HTTP/1.1 only */
    /* info.license of /openapi.json: the terms of the operator's API, not of sluice. */
    char *openapi_license;     /* its name, default "Proprietary" */
    char *openapi_license_url; /* NULL = none */
    /* TLS on the listener: both set, or neither (plain HTTP). */
    char *tls_cert; /* PEM certificate chain (tls.cert / SLUICE_TLS_CERT) */
    char *tls_key;  /* PEM private key (tls.key / SLUICE_TLS_KEY) */
};

/* Reads path, applies the environment overrides, validates. Returns 0, or -1 with one line in
 * err naming the file, the key and what was expected, e.g.
 * "conf/sluice.lua: pools.primary.pool_size: expected a positive integer or \"auto\", got \"many\"".
 * On success the caller owns *out and frees it with config_free; on failure *out is left zeroed,
 * so config_free on it is harmless. */
int config_load(const char *path, struct config *out, char *err, size_t errlen);
void config_free(struct config *c);

/* The pool named name, or NULL. */
const struct pool_config *config_pool(const struct config *c, const char *name);

/* The i-th environment variable that overrides a config key (SLUICE_LISTEN, ...), or NULL past
 * the last: the one list, for whoever must clear or set them all. */
const char *config_env_var(size_t i);

#endif
