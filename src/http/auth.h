/* auth.h — per-endpoint access control: static bearer tokens, HS256 JWTs and Lua policies, and the
 * admin token on /metrics and /health when protect_metrics is set. Secrets are compared in
 * constant time and never logged. */
#ifndef SLUICE_AUTH_H
#define SLUICE_AUTH_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <lua.h>

#include "config.h"
#include "endpoint.h"

struct worker;

/* Seconds of clock skew allowed on exp, nbf and iat. */
#define AUTH_JWT_LEEWAY 30

/* Outcomes of auth_jwt_verify. */
enum auth_jwt_result {
    AUTH_JWT_OK = 0,
    AUTH_JWT_MALFORMED = -1, /* not three base64url parts, or not JSON objects, or bad claim types */
    AUTH_JWT_ALG = -2,       /* header alg is not "HS256" (none, RS256, ...) */
    AUTH_JWT_SIGNATURE = -3, /* HMAC-SHA256 does not match */
    AUTH_JWT_EXPIRED = -4,   /* now > exp + leeway */
    AUTH_JWT_NOT_YET = -5,   /* now + leeway < nbf (or < iat, when max_age applies) */
    AUTH_JWT_AUDIENCE = -6,  /* audience configured and aud neither equals nor contains it */
    AUTH_JWT_CRIT = -7,      /* the header has crit: no extension is understood here (RFC 7515 4.1.11) */
    AUTH_JWT_ISSUER = -8,    /* issuer configured and iss is not exactly it */
    AUTH_JWT_TOO_OLD = -9,   /* max_age set, no exp, and now > iat + max_age + leeway */
    AUTH_JWT_NO_AGE = -10,   /* max_age set and the token has neither exp nor iat */
};

/* What a token must say beyond its signature (the jwt section of the config). */
struct auth_jwt_rules {
    const char *audience; /* NULL: aud is not checked; else aud (a string or an array) must hold it */
    const char *issuer;   /* NULL: iss is not checked; else iss must equal it */
    double max_age;       /* 0: off; else a token without exp must have an iat at most this many
                             seconds ago (with AUTH_JWT_LEEWAY) */
};

/* Verifies a compact JWS token[0..len) signed with HS256 under secret[0..secret_len): the header
 * first (alg must be HS256; any crit refuses the token), then the signature, then exp/nbf against
 * now (Unix seconds) with AUTH_JWT_LEEWAY, then iat when rules->max_age applies, then iss and aud
 * as rules ask (rules may be NULL: no iss, aud or age checks). exp, nbf and iat are optional unless
 * max_age needs one; when present and checked they must be numbers. Returns AUTH_JWT_OK or the
 * first failure (enum auth_jwt_result). Allocates nothing that outlives it. */
int auth_jwt_verify(const char *token, size_t len, const char *secret, size_t secret_len,
                    const struct auth_jwt_rules *rules, int64_t now);
/* A short English reason for a result of auth_jwt_verify (static string). */
const char *auth_jwt_reason(int rc);

/* True when a[0..alen) equals b[0..blen); the time taken depends only on the lengths. */
bool auth_same_secret(const char *a, size_t alen, const char *b, size_t blen);

/* Checks req against an endpoint's auth (ref: the AUTH_LUA policy in L; name: the endpoint, for
 * the policy and the log). Returns true when it may proceed; otherwise it has answered: 401
 * unauthorized (no credentials, or a JWT that fails verification) with WWW-Authenticate, 403
 * forbidden (a token not configured, or the policy said no), or 500 (the policy raised). */
bool auth_allow(struct worker *w, h2o_req_t *req, enum endpoint_auth kind, lua_State *L, int ref,
                const char *name);

/* For /metrics and /health with protect_metrics: true when the request carries the admin token
 * (or protect_metrics is off); otherwise it has answered 401 or 403 (404 when no admin token is
 * configured, as for /admin). */
bool auth_metrics_allow(struct worker *w, h2o_req_t *req);

/* Reads the `auth` value of a definition at idx of L while its script is loaded: nil, "bearer",
 * "jwt", or (when allow_fn) a function, which is referenced in L's registry into *ref. Checks that
 * cfg supplies what the kind needs (tokens, jwt.secret). Returns the kind, or -1 with one line in
 * err. The stack is left as it was. */
int auth_parse(lua_State *L, int idx, bool allow_fn, const struct config *cfg, int *ref, char *err,
               size_t errlen);

#endif
