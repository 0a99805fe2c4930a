/* test_auth.c — the HS256 JWT verifier (signature, header, claims and the configured rules) and the
 * constant-time comparison. Tokens are built here with OpenSSL's HMAC from a header and payload
 * written out as JSON text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "auth.h"

#define SECRET "test-secret-0123456789-abcdefghijk"
#define NOW    1700000000

static const char HS256[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

/* Unpadded base64url of in[0..n) appended to out. */
static void b64url(char *out, const unsigned char *in, size_t n)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *o = out + strlen(out);
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = a[v >> 18 & 63], *o++ = a[v >> 12 & 63], *o++ = a[v >> 6 & 63], *o++ = a[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *o++ = a[v >> 18 & 63], *o++ = a[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *o++ = a[v >> 18 & 63], *o++ = a[v >> 12 & 63], *o++ = a[v >> 6 & 63];
    }
    *o = '\0';
}

/* header.payload.signature, signed with key. */
static void make(char *out, const char *header, const char *payload, const char *key)
{
    out[0] = '\0';
    b64url(out, (const unsigned char *)header, strlen(header));
    strcat(out, ".");
    b64url(out, (const unsigned char *)payload, strlen(payload));
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen;
    HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)out, strlen(out), mac, &maclen);
    strcat(out, ".");
    b64url(out, mac, maclen);
}

static int verify_rules(const char *tok, const struct auth_jwt_rules *rules)
{
    return auth_jwt_verify(tok, strlen(tok), SECRET, strlen(SECRET), rules, NOW);
}

static int verify(const char *tok, const char *aud)
{
    struct auth_jwt_rules rules = {.audience = aud};
    return verify_rules(tok, &rules);
}

static void valid_tokens_pass(void **state)
{
    char t[1024];
    make(t, HS256, "{\"sub\":\"alice\"}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_OK);
    make(t, HS256, "{\"sub\":\"alice\",\"exp\":1700000100,\"nbf\":1699999000,\"aud\":\"sluice\"}", SECRET);
    assert_int_equal(verify(t, "sluice"), AUTH_JWT_OK);
    make(t, HS256, "{\"aud\":[\"other\",\"sluice\"]}", SECRET);
    assert_int_equal(verify(t, "sluice"), AUTH_JWT_OK);
    /* an aud claim is not checked when no audience is configured */
    make(t, HS256, "{\"aud\":\"other\"}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_OK);
}

static void bad_signature_is_refused(void **state)
{
    char t[1024];
    make(t, HS256, "{\"sub\":\"alice\"}", "another-secret");
    assert_int_equal(verify(t, NULL), AUTH_JWT_SIGNATURE);
    /* payload changed after signing */
    char good[1024], forged[1024];
    make(good, HS256, "{\"sub\":\"alice\"}", SECRET);
    make(forged, HS256, "{\"sub\":\"admin\"}", SECRET);
    char *sig = strrchr(good, '.');
    *strrchr(forged, '.') = '\0';
    strcat(forged, sig);
    assert_int_equal(verify(forged, NULL), AUTH_JWT_SIGNATURE);
    /* a truncated signature (40 characters: 30 whole bytes) */
    assert_int_equal(verify(good, NULL), AUTH_JWT_OK);
    good[strlen(good) - 3] = '\0';
    assert_int_equal(verify(good, NULL), AUTH_JWT_SIGNATURE);
    /* an empty signature */
    make(t, HS256, "{}", SECRET);
    strrchr(t, '.')[1] = '\0';
    assert_int_equal(verify(t, NULL), AUTH_JWT_SIGNATURE);
}

static void expiry_honours_the_leeway(void **state)
{
    char t[1024], p[128];
    snprintf(p, sizeof p, "{\"exp\":%d}", NOW - AUTH_JWT_LEEWAY - 1);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_EXPIRED);
    snprintf(p, sizeof p, "{\"exp\":%d}", NOW - AUTH_JWT_LEEWAY + 1);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_OK);
    make(t, HS256, "{\"exp\":\"tomorrow\"}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_MALFORMED);
}

static void not_before_honours_the_leeway(void **state)
{
    char t[1024], p[128];
    snprintf(p, sizeof p, "{\"nbf\":%d}", NOW + AUTH_JWT_LEEWAY + 5);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_NOT_YET);
    snprintf(p, sizeof p, "{\"nbf\":%d}", NOW + AUTH_JWT_LEEWAY - 5);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_OK);
}

static void wrong_audience_is_refused(void **state)
{
    char t[1024];
    make(t, HS256, "{\"aud\":\"other\"}", SECRET);
    assert_int_equal(verify(t, "sluice"), AUTH_JWT_AUDIENCE);
    make(t, HS256, "{\"aud\":[\"a\",\"b\"]}", SECRET);
    assert_int_equal(verify(t, "sluice"), AUTH_JWT_AUDIENCE);
    make(t, HS256, "{\"sub\":\"no aud\"}", SECRET);
    assert_int_equal(verify(t, "sluice"), AUTH_JWT_AUDIENCE);
    make(t, HS256, "{\"aud\":\"sluicex\"}", SECRET);
    assert_int_equal(verify(t, "sluice"), AUTH_JWT_AUDIENCE);
}

static void other_algorithms_are_refused(void **state)
{
    char t[1024];
    make(t, "{\"alg\":\"none\"}", "{\"sub\":\"alice\"}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_ALG);
    /* alg none with an empty signature, the classic forgery */
    strrchr(t, '.')[1] = '\0';
    assert_int_equal(verify(t, NULL), AUTH_JWT_ALG);
    make(t, "{\"alg\":\"RS256\"}", "{\"sub\":\"alice\"}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_ALG);
    make(t, "{\"alg\":\"hs256\"}", "{}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_ALG);
    make(t, "{\"typ\":\"JWT\"}", "{}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_MALFORMED);
}

static void malformed_tokens_are_refused(void **state)
{
    const char *bad[] = {
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        "..",
        "eyJhbGciOiJIUzI1NiJ9..sig",      /* empty payload */
        "eyJhbGciOiJIUzI1NiJ9=.e30.c2ln", /* padding */
        "eyJhbGciOiJIUzI1NiJ9.e3+0.c2ln", /* '+' is base64, not base64url */
        "eyJhbGciOiJIUzI1NiJ9.e30.c2l*",  /* '*' in the signature */
        "eyJhbGciOiJIUzI1NiJ9x.e30.c2ln", /* impossible length */
        "bm90IGpzb24.e30.c2ln",           /* header is not JSON */
        "WzFd.e30.c2ln",                  /* header is an array */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = verify(bad[i], NULL);
        if (rc != AUTH_JWT_MALFORMED) fail_msg("token %zu (\"%s\"): got %d", i, bad[i], rc);
    }
    /* a correctly signed payload that is not a JSON object */
    char t[1024];
    make(t, HS256, "[1,2]", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_MALFORMED);
    make(t, HS256, "{\"a\":1,\"a\":2}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_MALFORMED);
    /* the length given is what counts, not a terminating NUL: 40 of 43 signature characters */
    make(t, HS256, "{}", SECRET);
    size_t n = strlen(t);
    assert_int_equal(auth_jwt_verify(t, n, SECRET, strlen(SECRET), NULL, NOW), AUTH_JWT_OK);
    assert_int_equal(auth_jwt_verify(t, n - 3, SECRET, strlen(SECRET), NULL, NOW), AUTH_JWT_SIGNATURE);
    /* leftover bits that are not zero: a second spelling of the same signature */
    assert_int_equal(auth_jwt_verify(t, n - 1, SECRET, strlen(SECRET), NULL, NOW), AUTH_JWT_MALFORMED);
}

static void crit_in_the_header_is_refused(void **state)
{
    char t[1024];
    /* no extension is understood, so any crit refuses the token, signature good or not */
    make(t, "{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", "{}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_CRIT);
    make(t, "{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", "{}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_CRIT);
    make(t, "{\"alg\":\"HS256\",\"crit\":[]}", "{}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_CRIT);
    make(t, "{\"alg\":\"HS256\",\"crit\":null}", "{}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_CRIT);
    make(t, "{\"alg\":\"HS256\",\"crit\":[\"x\"]}", "{}", "another-secret");
    assert_int_equal(verify(t, NULL), AUTH_JWT_CRIT);
    /* crit in the payload is only a claim */
    make(t, HS256, "{\"crit\":[\"x\"]}", SECRET);
    assert_int_equal(verify(t, NULL), AUTH_JWT_OK);
    assert_string_equal(auth_jwt_reason(AUTH_JWT_CRIT), "unsupported critical header parameter (crit)");
}

static void issuer_must_match_when_configured(void **state)
{
    char t[1024];
    struct auth_jwt_rules rules = {.issuer = "https://auth.example"};
    make(t, HS256, "{\"iss\":\"https://auth.example\"}", SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_OK);
    assert_int_equal(verify_rules(t, NULL), AUTH_JWT_OK);
    const char *wrong[] = {
        "{\"iss\":\"https://auth.example/\"}",
        "{\"iss\":\"https://AUTH.example\"}",
        "{\"iss\":\"\"}",
        "{\"iss\":[\"https://auth.example\"]}",
        "{\"iss\":1}",
        "{\"sub\":\"no iss\"}",
    };
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        make(t, HS256, wrong[i], SECRET);
        int rc = verify_rules(t, &rules);
        if (rc != AUTH_JWT_ISSUER) fail_msg("payload %s: got %d", wrong[i], rc);
    }
    /* with issuer and audience both configured, both are checked */
    rules.audience = "api";
    make(t, HS256, "{\"iss\":\"https://auth.example\",\"aud\":[\"web\",\"api\"]}", SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_OK);
    make(t, HS256, "{\"iss\":\"https://auth.example\",\"aud\":\"web\"}", SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_AUDIENCE);
    make(t, HS256, "{\"iss\":\"other\",\"aud\":\"api\"}", SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_ISSUER);
}

static void max_age_bounds_tokens_without_exp(void **state)
{
    char t[1024], p[128];
    struct auth_jwt_rules rules = {.max_age = 3600};
    snprintf(p, sizeof p, "{\"iat\":%d}", NOW - 3600);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_OK);
    snprintf(p, sizeof p, "{\"iat\":%d}", NOW - 3600 - AUTH_JWT_LEEWAY + 1);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_OK);
    snprintf(p, sizeof p, "{\"iat\":%d}", NOW - 3600 - AUTH_JWT_LEEWAY - 1);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_TOO_OLD);
    /* without max_age the same token is good: its age is not limited */
    assert_int_equal(verify_rules(t, NULL), AUTH_JWT_OK);
    rules.max_age = 0;
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_OK);
    rules.max_age = 3600;
    /* neither exp nor iat: refused while max_age is set */
    make(t, HS256, "{\"sub\":\"forever\"}", SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_NO_AGE);
    /* issued in the future, past the leeway */
    snprintf(p, sizeof p, "{\"iat\":%d}", NOW + AUTH_JWT_LEEWAY + 10);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_NOT_YET);
    make(t, HS256, "{\"iat\":\"yesterday\"}", SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_MALFORMED);
    /* with exp, exp decides and an old iat (or none) does not matter */
    snprintf(p, sizeof p, "{\"iat\":%d,\"exp\":%d}", NOW - 86400, NOW + 60);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_OK);
    snprintf(p, sizeof p, "{\"exp\":%d}", NOW + 60);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_OK);
    snprintf(p, sizeof p, "{\"iat\":%d,\"exp\":%d}", NOW - 10, NOW - 3600);
    make(t, HS256, p, SECRET);
    assert_int_equal(verify_rules(t, &rules), AUTH_JWT_EXPIRED);
}

static void same_secret_compares_whole_values(void **state)
{
    assert_true(auth_same_secret("abc", 3, "abc", 3));
    assert_false(auth_same_secret("abc", 3, "abd", 3));
    assert_false(auth_same_secret("abc", 3, "abcd", 4));
    assert_false(auth_same_secret("", 0, "a", 1));
    assert_true(auth_same_secret("", 0, "", 0));
    assert_string_equal(auth_jwt_reason(AUTH_JWT_EXPIRED), "token expired");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_tokens_pass),
        cmocka_unit_test(bad_signature_is_refused),
        cmocka_unit_test(expiry_honours_the_leeway),
        cmocka_unit_test(not_before_honours_the_leeway),
        cmocka_unit_test(wrong_audience_is_refused),
        cmocka_unit_test(other_algorithms_are_refused),
        cmocka_unit_test(malformed_tokens_are_refused),
        cmocka_unit_test(crit_in_the_header_is_refused),
        cmocka_unit_test(issuer_must_match_when_configured),
        cmocka_unit_test(max_age_bounds_tokens_without_exp),
        cmocka_unit_test(same_secret_compares_whole_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
