/* tls.h — the listener's TLS context (OpenSSL) from the config's tls = { cert, key }. */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* A server context for cert (a PEM chain: the certificate first, then intermediates) and key
 * (PEM), TLS 1.2 (ECDHE with AES-GCM or ChaCha20-Poly1305 only) and 1.3, no session tickets,
 * offering HTTP/1.1 by ALPN, and HTTP/2 before it when http2 is set. Returns it with one
 * reference (release with SSL_CTX_free), or NULL with one line in err naming the file and what
 * OpenSSL said. */
SSL_CTX *tls_context_new(const char *cert, const char *key, bool http2, char *err, size_t errlen);

#endif
