/* tls.c — builds the listener's TLS context. h2o does the handshakes; this file decides what
 * is offered: TLS 1.2+ only, forward-secret AEAD suites only, no compression or renegotiation,
 * the server's cipher order, and resumption from a server-side cache instead of ticket keys. */
#include "tls.h"

#include <stdio.h>

#include <openssl/err.h>

#include <h2o.h>
#include <h2o/http2.h>

/* TLS 1.2 suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (Mozilla's
 * "intermediate" list without the DHE ones). No static RSA (no forward secrecy), no CBC with
 * SHA-1 MACs. In the server's order: AES-GCM first (hardware-accelerated on servers), but a client
 * that lists ChaCha20 first (no AES instructions) gets it (SSL_OP_PRIORITIZE_CHACHA). TLS 1.3
 * keeps OpenSSL's suites, which are all AEAD. */
static const char tls12_ciphers[] = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char tls_groups[] = "X25519:P-256:P-384";

/* How long a session can be resumed. */
#define SESSION_LIFETIME_S 3600

/* OpenSSL's last queued error as text, the queue emptied. */
static void openssl_reason(char *out, size_t outlen)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        snprintf(out, outlen, "unknown error");
        return;
    }
    ERR_error_string_n(e, out, outlen);
    ERR_clear_error();
}

/* ALPN without HTTP/2: a client that offers only h2 gets no ALPN answer and speaks HTTP/1.1. */
static const h2o_iovec_t http1_only[] = {{H2O_STRLIT("http/1.1")}, {NULL}};

SSL_CTX *tls_context_new(const char *cert, const char *key, bool http2, char *err, size_t errlen)
{
    char why[256];
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        openssl_reason(why, sizeof why);
        snprintf(err, errlen, "tls: cannot create a context: %s", why);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* No session tickets: OpenSSL would seal every ticket with one key made with the context and
     * kept until it is freed (libh2o adds no rotation), so that key could decrypt every resumed
     * TLS 1.2 session recorded since. Sessions are resumed from the context's own cache instead
     * (shared by the workers, SESSION_LIFETIME_S at most; TLS 1.3 then sends stateful tickets),
     * and nothing outlives the sessions it protects. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_PRIORITIZE_CHACHA | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_set_timeout(ctx, SESSION_LIFETIME_S);
    if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1 || SSL_CTX_set1_groups_list(ctx, tls_groups) != 1) {
        openssl_reason(why, sizeof why);
        snprintf(err, errlen, "tls: cannot set the cipher suites: %s", why);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        openssl_reason(why, sizeof why);
        snprintf(err, errlen, "tls.cert: %s: %s", cert, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        openssl_reason(why, sizeof why);
        snprintf(err, errlen, "tls.key: %s: %s", key, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls.key: %s does not match the certificate in %s", key, cert);
        goto fail;
    }
    h2o_ssl_register_alpn_protocols(ctx, http2 ? h2o_http2_alpn_protocols : http1_only);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}
