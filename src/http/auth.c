/* auth.c — per-endpoint access control: static bearer tokens, HS256 JWTs (verified here with
 * OpenSSL's HMAC) and Lua policy functions; and the admin token on /metrics and /health when
 * protect_metrics is set. Every secret comparison runs in constant time; no token or secret is
 * ever written to the log or echoed to the client. */
#include "auth.h"

#include <jansson.h>
#include <lauxlib.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <string.h>
#include <time.h>

#include "guard.h"
#include "http.h"
#include "reqinfo.h"
#include "log.h"
#include "util.h"
#include "worker.h"

/* --- JWT ------------------------------------------------------------------------------------ */

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Decodes unpadded base64url s[0..n) into out (room for n * 3 / 4 + 1 bytes). Returns the decoded
 * length, or -1 on a character outside the alphabet, padding, an impossible length (n % 4 == 1)
 * or non-zero trailing bits (so that each value has one encoding only). */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    if (n % 4 == 1) return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) return -1;
    return (long)o;
}

/* Decodes one part into a JSON object; NULL when it is not one. */
static json_t *decode_part(const char *s, size_t n)
{
    unsigned char *raw = xmalloc(n * 3 / 4 + 1);
    long len = b64url_decode(s, n, raw);
    json_t *v = len < 0 ? NULL : json_loadb((const char *)raw, (size_t)len, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (v != NULL && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* A NumericDate claim: absent (true, *present false), a number (true), or anything else (false). */
static bool numeric_claim(json_t *payload, const char *key, bool *present, double *out)
{
    json_t *v = json_object_get(payload, key);
    *present = v != NULL;
    if (v == NULL) return true;
    if (!json_is_number(v)) return false;
    *out = json_number_value(v);
    return isfinite(*out);
}

/* Without exp, max_age bounds the token's life from its iat; with neither, nothing does. */
static int check_age(json_t *payload, double max_age, int64_t now)
{
    bool has;
    double iat;
    if (!numeric_claim(payload, "iat", &has, &iat)) return AUTH_JWT_MALFORMED;
    if (!has) return AUTH_JWT_NO_AGE;
    if ((double)now + AUTH_JWT_LEEWAY < iat) return AUTH_JWT_NOT_YET; /* issued in the future */
    if ((double)now > iat + max_age + AUTH_JWT_LEEWAY) return AUTH_JWT_TOO_OLD;
    return AUTH_JWT_OK;
}

static int check_claims(json_t *payload, const struct auth_jwt_rules *rules, int64_t now)
{
    bool has_exp, has;
    double t;
    if (!numeric_claim(payload, "exp", &has_exp, &t)) return AUTH_JWT_MALFORMED;
    if (has_exp && (double)now > t + AUTH_JWT_LEEWAY) return AUTH_JWT_EXPIRED;
    if (!numeric_claim(payload, "nbf", &has, &t)) return AUTH_JWT_MALFORMED;
    if (has && (double)now + AUTH_JWT_LEEWAY < t) return AUTH_JWT_NOT_YET;
    if (rules == NULL) return AUTH_JWT_OK;
    if (!has_exp && rules->max_age > 0) {
        int rc = check_age(payload, rules->max_age, now);
        if (rc != AUTH_JWT_OK) return rc;
    }
    if (rules->issuer != NULL) {
        json_t *iss = json_object_get(payload, "iss");
        if (!json_is_string(iss) || strcmp(json_string_value(iss), rules->issuer) != 0)
            return AUTH_JWT_ISSUER;
    }
    const char *audience = rules->audience;
    if (audience == NULL) return AUTH_JWT_OK;
    json_t *aud = json_object_get(payload, "aud");
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), audience) == 0 ? AUTH_JWT_OK : AUTH_JWT_AUDIENCE;
    if (json_is_array(aud)) {
        size_t i;
        json_t *a;
        json_array_foreach(aud, i, a) if (json_is_string(a) &&
                                          strcmp(json_string_value(a), audience) == 0) return AUTH_JWT_OK;
    }
    return AUTH_JWT_AUDIENCE;
}

int auth_jwt_verify(const char *token, size_t len, const char *secret, size_t secret_len,
                    const struct auth_jwt_rules *rules, int64_t now)
{
    const char *dot1 = memchr(token, '.', len);
    if (dot1 == NULL) return AUTH_JWT_MALFORMED;
    const char *dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        return AUTH_JWT_MALFORMED;
    size_t hlen = (size_t)(dot1 - token), plen = (size_t)(dot2 - dot1 - 1),
           slen = len - (size_t)(dot2 + 1 - token);
    if (hlen == 0 || plen == 0) return AUTH_JWT_MALFORMED;
    for (size_t i = 0; i < len; i++) /* the alphabet of every part before anything is decoded */
        if (token[i] != '.' && b64url_value((unsigned char)token[i]) < 0) return AUTH_JWT_MALFORMED;

    json_t *header = decode_part(token, hlen);
    if (header == NULL) return AUTH_JWT_MALFORMED;
    json_t *alg = json_object_get(header, "alg");
    bool hs256 = json_is_string(alg) && strcmp(json_string_value(alg), "HS256") == 0;
    bool has_alg = alg != NULL;
    /* crit names header parameters the recipient must understand or refuse the token; no
     * extension is understood here, so any crit (even an empty or malformed one) refuses it. */
    bool has_crit = json_object_get(header, "crit") != NULL;
    json_decref(header);
    if (!has_alg) return AUTH_JWT_MALFORMED;
    if (!hs256) return AUTH_JWT_ALG;
    if (has_crit) return AUTH_JWT_CRIT;

    /* The signature before anything in the payload is believed. */
    unsigned char sig[64], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (slen > 86) return AUTH_JWT_SIGNATURE; /* 86 characters encode 64 bytes: longer is never HS256 */
    long siglen = b64url_decode(dot2 + 1, slen, sig);
    if (siglen < 0) return AUTH_JWT_MALFORMED;
    if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)token, hlen + 1 + plen, mac,
             &maclen) == NULL ||
        siglen != (long)maclen || CRYPTO_memcmp(sig, mac, maclen) != 0)
        return AUTH_JWT_SIGNATURE;

    json_t *payload = decode_part(dot1 + 1, plen);
    if (payload == NULL) return AUTH_JWT_MALFORMED;
    int rc = check_claims(payload, rules, now);
    json_decref(payload);
    return rc;
}

const char *auth_jwt_reason(int rc)
{
    switch (rc) {
    case AUTH_JWT_OK:
        return "valid";
    case AUTH_JWT_MALFORMED:
        return "malformed token";
    case AUTH_JWT_ALG:
        return "unsupported algorithm (only HS256 is accepted)";
    case AUTH_JWT_SIGNATURE:
        return "bad signature";
    case AUTH_JWT_EXPIRED:
        return "token expired";
    case AUTH_JWT_NOT_YET:
        return "token not valid yet";
    case AUTH_JWT_AUDIENCE:
        return "wrong audience";
    case AUTH_JWT_CRIT:
        return "unsupported critical header parameter (crit)";
    case AUTH_JWT_ISSUER:
        return "wrong issuer";
    case AUTH_JWT_TOO_OLD:
        return "token too old (issued more than max_age ago)";
    case AUTH_JWT_NO_AGE:
        return "token without exp or iat";
    default:
        return "invalid token";
    }
}

/* --- comparisons ------------------------------------------------------------------------------ */

bool auth_same_secret(const char *a, size_t alen, const char *b, size_t blen)
{
    /* Hashing first makes the comparison's time independent of where the inputs differ. */
    unsigned char ha[SHA256_DIGEST_LENGTH], hb[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)a, alen, ha);
    SHA256((const unsigned char *)b, blen, hb);
    return (CRYPTO_memcmp(ha, hb, sizeof ha) == 0) & (alen == blen);
}

/* --- answering -------------------------------------------------------------------------------- */

static void deny_401(h2o_req_t *req, const char *challenge, const char *message)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, challenge,
                   strlen(challenge));
    http_send_error(req, 401, "unauthorized", message, NULL, NULL);
}

/* The bearer token of req, or false when there is no "Authorization: Bearer <token>". */
static bool bearer_token(h2o_req_t *req, const char **tok, size_t *len)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0) return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer "))) return false;
    size_t s = 7;
    while (s < v.len && v.base[s] == ' ') s++;
    size_t e = v.len;
    while (e > s && v.base[e - 1] == ' ') e--;
    if (e == s) return false;
    *tok = v.base + s;
    *len = e - s;
    return true;
}

/* The request's bearer token, or false after answering 401. */
static bool require_bearer(h2o_req_t *req, const char **tok, size_t *len)
{
    if (bearer_token(req, tok, len)) return true;
    deny_401(req, "Bearer", "a bearer token is required");
    return false;
}

static bool allow_bearer(struct worker *w, h2o_req_t *req, const char *name)
{
    const struct config *cfg = worker_config(w);
    const char *tok;
    size_t len;
    if (!require_bearer(req, &tok, &len)) return false;
    bool ok = false;
    size_t which = 0;
    for (size_t i = 0; i < cfg->ntokens; i++) { /* no early exit: which token matched does not show */
        bool same = auth_same_secret(tok, len, cfg->tokens[i], strlen(cfg->tokens[i]));
        ok |= same;
        which |= (size_t)same * (i + 1);
    }
    if (ok) { /* the access log names the token by its place in the list, never by its value */
        char subject[32];
        int n = snprintf(subject, sizeof subject, "token:%zu", which);
        reqinfo_set_subject(req, subject, (size_t)n);
    }
    if (!ok) {
        log_debug("auth: %s: unknown bearer token", name);
        http_send_error(req, 403, "forbidden", "the token is not allowed here", NULL, NULL);
    }
    return ok;
}

/* Names a verified token's sub claim (when a string) as the request's subject. */
static void note_jwt_subject(h2o_req_t *req, const char *tok, size_t len)
{
    const char *dot1 = memchr(tok, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - tok)) : NULL;
    if (dot2 == NULL) return;
    json_t *payload = decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1));
    json_t *sub = json_object_get(payload, "sub");
    if (json_is_string(sub)) reqinfo_set_subject(req, json_string_value(sub), json_string_length(sub));
    json_decref(payload);
}

static bool allow_jwt(struct worker *w, h2o_req_t *req, const char *name)
{
    const struct config *cfg = worker_config(w);
    const char *tok;
    size_t len;
    if (!require_bearer(req, &tok, &len)) return false;
    if (cfg->jwt_secret == NULL) { /* script.c refuses such definitions; a reload could race the config */
        http_send_error(req, 500, "internal", "internal error", NULL, NULL);
        return false;
    }
    struct auth_jwt_rules rules = {
        .audience = cfg->jwt_audience, .issuer = cfg->jwt_issuer, .max_age = cfg->jwt_max_age};
    int rc = auth_jwt_verify(tok, len, cfg->jwt_secret, strlen(cfg->jwt_secret), &rules, (int64_t)time(NULL));
    if (rc == AUTH_JWT_OK) {
        note_jwt_subject(req, tok, len);
        return true;
    }
    log_debug("auth: %s: JWT refused: %s", name, auth_jwt_reason(rc));
    /* RFC 6750: a token that fails verification is invalid_token, 401; the client needs a new one */
    char msg[96];
    snprintf(msg, sizeof msg, "invalid token: %s", auth_jwt_reason(rc));
    deny_401(req, "Bearer error=\"invalid_token\"", msg);
    return false;
}

/* --- Lua policies ------------------------------------------------------------------------------ */

/* The state runs without the JIT (handler.c), so the guard's count hook fires inside any loop. */
#define POLICY_LIMIT_MS 100

/* req for a policy: method, path (the path as a string), query (decoded query string), headers
 * (lower-case names), endpoint (the definition's name). */
static void push_policy_request(lua_State *L, h2o_req_t *req, const char *name)
{
    lua_createtable(L, 0, 5);
    lua_pushlstring(L, req->method.base, req->method.len);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, req->path_normalized.base, req->path_normalized.len);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "endpoint");
    lua_newtable(L);
    if (req->query_at != SIZE_MAX) {
        const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
        while (p < end) {
            const char *amp = memchr(p, '&', (size_t)(end - p)), *stop = amp ? amp : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            size_t kl, vl = 0;
            char *k = http_unescape(req, p, (size_t)((eq ? eq : stop) - p), &kl);
            char *v = eq ? http_unescape(req, eq + 1, (size_t)(stop - eq - 1), &vl) : "";
            if (k && v && kl) {
                lua_pushlstring(L, k, kl);
                lua_pushlstring(L, v, vl);
                lua_rawset(L, -3);
            }
            p = stop + 1;
        }
    }
    lua_setfield(L, -2, "query");
    lua_newtable(L);
    for (size_t i = 0; i < req->headers.size; i++) {
        h2o_header_t *hd = &req->headers.entries[i];
        lua_pushlstring(L, hd->name->base, hd->name->len);
        lua_pushlstring(L, hd->value.base, hd->value.len);
        lua_rawset(L, -3);
    }
    lua_setfield(L, -2, "headers");
}

/* Runs the policy: true allows; false or nil answers 403, or 401 when its second value is 401;
 * an error, or running past POLICY_LIMIT_MS (a stop that pcall inside cannot catch), answers
 * 500 and is logged: a policy that did not finish never allows. */
static bool allow_lua(h2o_req_t *req, lua_State *L, int ref, const char *name)
{
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    push_policy_request(L, req, name);
    int rc = guard_pcall(L, 1, 2, POLICY_LIMIT_MS, "the auth policy ran for more than 100 ms");
    bool ok = false;
    if (rc != 0) {
        log_printf(LOG_ERROR, "auth policy of %s failed: %s", name,
                   lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error object is not a string)");
        http_send_error(req, 500, "internal", "internal error", NULL, NULL);
    } else if (lua_toboolean(L, -2)) {
        ok = true;
    } else if (lua_type(L, -1) == LUA_TNUMBER && lua_tointeger(L, -1) == 401) {
        deny_401(req, "Bearer", "credentials are required");
    } else {
        http_send_error(req, 403, "forbidden", "not allowed", NULL, NULL);
    }
    lua_settop(L, top);
    return ok;
}

/* --- public ----------------------------------------------------------------------------------- */

bool auth_allow(struct worker *w, h2o_req_t *req, enum endpoint_auth kind, lua_State *L, int ref,
                const char *name)
{
    switch (kind) {
    case AUTH_NONE:
        return true;
    case AUTH_BEARER:
        return allow_bearer(w, req, name);
    case AUTH_JWT:
        return allow_jwt(w, req, name);
    case AUTH_LUA:
        return allow_lua(req, L, ref, name);
    }
    http_send_error(req, 500, "internal", "internal error", NULL, NULL);
    return false;
}

bool auth_metrics_allow(struct worker *w, h2o_req_t *req)
{
    const struct config *cfg = worker_config(w);
    if (!cfg->protect_metrics) return true;
    if (cfg->admin_token == NULL) { /* protected with no way in: as absent as /admin is */
        http_send_error(req, 404, "not_found", "no such endpoint", NULL, NULL);
        return false;
    }
    const char *tok;
    size_t len;
    if (!bearer_token(req, &tok, &len)) {
        deny_401(req, "Bearer", "an admin bearer token is required");
        return false;
    }
    if (!auth_same_secret(tok, len, cfg->admin_token, strlen(cfg->admin_token))) {
        http_send_error(req, 403, "forbidden", "wrong admin token", NULL, NULL);
        return false;
    }
    reqinfo_set_subject(req, H2O_STRLIT("admin"));
    return true;
}

int auth_parse(lua_State *L, int idx, bool allow_fn, const struct config *cfg, int *ref, char *err,
               size_t errlen)
{
    *ref = LUA_NOREF;
    int t = lua_type(L, idx);
    if (t == LUA_TNIL) return AUTH_NONE;
    if (t == LUA_TFUNCTION && allow_fn) {
        lua_pushvalue(L, idx);
        *ref = luaL_ref(L, LUA_REGISTRYINDEX);
        return AUTH_LUA;
    }
    const char *s = t == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
    if (s != NULL && strcmp(s, "bearer") == 0) {
        if (cfg->ntokens == 0) {
            snprintf(err, errlen,
                     "auth: \"bearer\" needs tokens in the config (tokens = { ... } or SLUICE_TOKENS)");
            return -1;
        }
        return AUTH_BEARER;
    }
    if (s != NULL && strcmp(s, "jwt") == 0) {
        if (cfg->jwt_secret == NULL) {
            snprintf(err, errlen, "auth: \"jwt\" needs jwt.secret in the config (or SLUICE_JWT_SECRET)");
            return -1;
        }
        return AUTH_JWT;
    }
    snprintf(err, errlen, "auth: expected \"bearer\", \"jwt\"%s", allow_fn ? " or a function(req)" : "");
    return -1;
}
