/* csrf.h — refuses what a web page on another site could make a browser send without asking the
 * server first (a CORS preflight): a request that is not GET or HEAD and whose Content-Type is
 * absent or one of the three an HTML form or a plain fetch() may use. */
#ifndef SLUICE_CSRF_H
#define SLUICE_CSRF_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>

/* True when a request with method[0..mlen) and the Content-Type value ctype[0..clen) (ctype NULL
 * when there is no such header) must be refused: the method is not GET or HEAD, and the media type
 * (before any ';', blanks trimmed, any case) is empty, text/plain,
 * application/x-www-form-urlencoded or multipart/form-data. */
bool csrf_refused(const char *method, size_t mlen, const char *ctype, size_t clen);

/* Applies csrf_refused to req before it is routed. Returns true when it may go on; otherwise it
 * has answered 415 unsupported_media_type, saying what to send. */
bool csrf_allow(h2o_req_t *req);

#endif
