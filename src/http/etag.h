/* etag.h — conditional GET: a strong ETag made from the body of a readonly answer, and
 * If-None-Match compared with it, so that a client holding the same answer gets 304. */
#ifndef SLUICE_ETAG_H
#define SLUICE_ETAG_H

#include <h2o.h>
#include <stdbool.h>

/* Sets ETag: "<16 hex digits of hash64(body)>" on the answer. Returns true when the request's
 * If-None-Match matches it (the answer should then be 304 without a body). */
bool etag_set(h2o_req_t *req, const char *body, size_t len);

/* True when the If-None-Match value list[0..n) matches the entity tag tag[0..tlen) ("..." or
 * W/"..."): "*", or any listed tag equal to it by the weak comparison (W/ ignored on both sides). */
bool etag_list_matches(const char *list, size_t n, const char *tag, size_t tlen);

#endif
