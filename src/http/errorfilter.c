/* errorfilter.c — rewrites h2o's own plain-text error responses into the JSON error shape. */
#include "errorfilter.h"

#include <string.h>

#include "buf.h"
#include "http.h"

struct json_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
};

static void do_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
                    h2o_send_state_t state)
{
    struct json_ostream *o = (struct json_ostream *)self;
    /* The original body is dropped; ours goes out with the final call. */
    if (h2o_send_state_is_in_progress(state))
        h2o_ostream_send_next(self, req, NULL, 0, state);
    else
        h2o_ostream_send_next(self, req, &o->body, 1, state);
}

static bool is_json(h2o_req_t *req)
{
    ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    return i >= 0 && h2o_memis(req->res.headers.entries[i].value.base, req->res.headers.entries[i].value.len,
                               H2O_STRLIT("application/json"));
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    if (req->res.status >= 400 && !is_json(req)) {
        const char *msg = req->res.status == 413 ? "the request body is larger than max_body_bytes"
                          : req->res.reason      ? req->res.reason
                                                 : "error";
        const char *code = http_error_code(req->res.status);
        struct buf b = BUF_INIT;
        http_error_body(&b, code, msg, NULL, NULL);
        struct json_ostream *o = (struct json_ostream *)h2o_add_ostream(req, sizeof *o, slot);
        o->body = h2o_strdup(&req->pool, b.data, b.len);
        o->body = http_error_with_id(req, o->body.base, o->body.len);
        o->super.do_send = do_send;
        buf_free(&b);
        h2o_set_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("application/json"),
                       1);
        req->res.content_length = o->body.len;
        slot = &o->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

void errorfilter_register(h2o_pathconf_t *pathconf)
{
    h2o_create_filter(pathconf, sizeof(h2o_filter_t))->on_setup_ostream = on_setup_ostream;
}
