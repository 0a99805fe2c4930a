/* answerfilter.c — adds the headers of answerfilter.h as each answer starts. */
#include "answerfilter.h"

#include "cors.h"
#include "reqinfo.h"
#include "worker.h"

/* A strong ETag names exact bytes; once the body is encoded those bytes differ, so the tag is made
 * weak (RFC 9110 8.8.1). If-None-Match compares weakly, so a 304 still follows. */
static void weaken_etag(h2o_req_t *req)
{
    if (h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_ENCODING, -1) < 0) return;
    ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_ETAG, -1);
    if (i < 0) return;
    h2o_iovec_t *v = &req->res.headers.entries[i].value;
    if (v->len >= 2 && v->base[0] == 'W' && v->base[1] == '/') return;
    *v = h2o_concat(&req->pool, h2o_iovec_init(H2O_STRLIT("W/")), *v);
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    reqinfo_add_headers(req);
    cors_add_headers(req, &worker_config(worker_of(req))->cors);
    weaken_etag(req);
    h2o_setup_next_ostream(req, slot);
}

void answerfilter_register(h2o_pathconf_t *pathconf)
{
    h2o_create_filter(pathconf, sizeof(h2o_filter_t))->on_setup_ostream = on_setup_ostream;
}
