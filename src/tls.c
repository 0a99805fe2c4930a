/* tls.c — builds the listener's TLS context. h2o does the handshakes; this file decides what
 * is offered: TLS 1.2+ only, no compression or renegotiation, the server's cipher order. */
#include "tls.h"

#include <stdio.h>

#include <openssl/err.h>

#include <h2o.h>
#include <h2o/http2.h>

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

SSL_CTX *tls_context_new(const char *cert, const char *key, char *err, size_t errlen)
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
    SSL_CTX_set_options(ctx,
                        SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
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
    h2o_ssl_register_alpn_protocols(ctx, h2o_http2_alpn_protocols);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}
