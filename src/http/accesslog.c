/* accesslog.c — the access line of each request, written in batches. A batch never passes
 * PIPE_BUF bytes (a line longer than that goes alone), so each write(2) of a worker reaches a pipe
 * whole, never interleaved with another worker's lines. */
#include "accesslog.h"

#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "buf.h"
#include "jsonw.h"
#include "log.h"
#include "reqinfo.h"
#include "util.h"
#include "worker.h"

struct accesslog {
    struct buf batch;  /* whole lines not yet written */
    struct buf line;   /* scratch: the line being made */
    struct buf fields; /* scratch: its members */
    h2o_timeout_t timeout;
    h2o_timeout_entry_t due; /* linked while the batch holds lines */
};

static void field_string(struct buf *b, const char *name, const char *s, size_t n)
{
    buf_printf(b, ",\"%s\":", name);
    jsonw_string(b, s, n);
}

/* "ip:port" of the client, "unix" on a unix socket; "" when unknown. */
static void remote_address(h2o_req_t *req, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    out[0] = '\0';
    if (sl == 0) return;
    if (ss.ss_family == AF_UNIX) {
        snprintf(out, len, "unix");
        return;
    }
    char host[NI_MAXHOST];
    size_t hl = h2o_socket_getnumerichost((struct sockaddr *)&ss, sl, host);
    if (hl == SIZE_MAX) return;
    int port = h2o_socket_getport((struct sockaddr *)&ss);
    snprintf(out, len, ss.ss_family == AF_INET6 ? "[%.*s]:%d" : "%.*s:%d", (int)hl, host, port);
}

/* The request's members: request_id first (it is in every line about the request). */
static void make_fields(struct buf *b, h2o_req_t *req)
{
    struct reqinfo *ri = reqinfo_of(req);
    buf_puts(b, ri->log_fields);
    field_string(b, "method", req->input.method.base, req->input.method.len);
    /* the path without its query string: parameter values stay out of the log (log_params is
     * the per-query choice for slow queries) */
    size_t plen = req->input.query_at != SIZE_MAX ? req->input.query_at : req->input.path.len;
    field_string(b, "path", req->input.path.base, plen);
    struct timeval end;
    gettimeofday(&end, NULL);
    const struct timeval *begin = &req->timestamps.request_begin_at;
    long long us = begin->tv_sec ? (long long)(end.tv_sec - begin->tv_sec) * 1000000 + (end.tv_usec - begin->tv_usec)
                                 : 0;
    buf_printf(b, ",\"status\":%d,\"bytes\":%zu,\"duration_us\":%lld", req->res.status, req->bytes_sent,
               us < 0 ? 0 : us);
    if (ri->endpoint) field_string(b, "endpoint", ri->endpoint, strlen(ri->endpoint));
    if (ri->pool) field_string(b, "pool", ri->pool, strlen(ri->pool));
    char remote[NI_MAXHOST + 16];
    remote_address(req, remote, sizeof remote);
    if (remote[0]) field_string(b, "remote", remote, strlen(remote));
    if (ri->subject) field_string(b, "subject", ri->subject, strlen(ri->subject));
}

static void on_due(h2o_timeout_entry_t *entry)
{
    struct accesslog *a = container_of(entry, struct accesslog, due);
    if (a->batch.len) log_write_raw(a->batch.data, a->batch.len);
    buf_reset(&a->batch);
}

static void log_access(h2o_logger_t *self, h2o_req_t *req)
{
    struct worker *w = worker_of(req);
    struct accesslog *a = w->accesslog;
    if (a == NULL || !worker_config(w)->log_access) return;
    buf_reset(&a->fields);
    make_fields(&a->fields, req);
    buf_reset(&a->line);
    log_format_line(&a->line, LOG_INFO, "access", a->fields.data);
    if (a->batch.len + a->line.len > PIPE_BUF) accesslog_flush(w);
    if (a->line.len >= PIPE_BUF) {
        log_write_raw(a->line.data, a->line.len);
        return;
    }
    buf_append(&a->batch, a->line.data, a->line.len);
    if (!h2o_timeout_is_linked(&a->due)) h2o_timeout_link(w->ctx.loop, &a->timeout, &a->due);
}

void accesslog_register(h2o_pathconf_t *pathconf)
{
    h2o_create_logger(pathconf, sizeof(h2o_logger_t))->log_access = log_access;
}

void accesslog_init(struct worker *w)
{
    struct accesslog *a = xcalloc(1, sizeof *a);
    h2o_timeout_init(w->ctx.loop, &a->timeout, ACCESSLOG_FLUSH_MS);
    a->due.cb = on_due;
    w->accesslog = a;
}

void accesslog_flush(struct worker *w)
{
    struct accesslog *a = w->accesslog;
    if (a == NULL) return;
    if (h2o_timeout_is_linked(&a->due)) h2o_timeout_unlink(&a->due);
    on_due(&a->due);
}

void accesslog_free(struct worker *w)
{
    struct accesslog *a = w->accesslog;
    if (a == NULL) return;
    accesslog_flush(w);
    buf_free(&a->batch);
    buf_free(&a->line);
    buf_free(&a->fields);
    free(a);
    w->accesslog = NULL;
}
