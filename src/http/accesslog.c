/* accesslog.c — the access line of each request, written in batches. On a pipe a batch never
 * passes PIPE_BUF bytes (a line longer than that goes alone), so each write(2) of a worker arrives
 * whole, never interleaved with another worker's lines; on a regular file batches are larger. */
#include "accesslog.h"

#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "buf.h"
#include "jsonw.h"
#include "log.h"
#include "reqinfo.h"
#include "reqstats.h"
#include "util.h"
#include "worker.h"

#define ACCESSLOG_FILE_BATCH (64 * 1024)

struct accesslog {
    size_t batch_max;  /* PIPE_BUF, or more when the log is a regular file */
    struct buf batch;  /* whole lines not yet written */
    struct buf fields; /* scratch: a text-format line's members */
    h2o_timeout_t timeout;
    h2o_timeout_entry_t due; /* linked while the batch holds lines */
    struct {
        uint64_t conn_id; /* 0: empty (h2o numbers connections from 1) */
        char text[NI_MAXHOST + 16];
    } remotes[64]; /* the client address by connection: formatted once per connection */
};

/* ,"name": (name a literal) */
#define FIELD(b, name) buf_append((b), ",\"" name "\":", sizeof(",\"" name "\":") - 1)
#define PUT(b, lit)    buf_append((b), (lit), sizeof(lit) - 1)

/* ,"name":"s" for s that needs no escape (an id of [A-Za-z0-9._:-], an address, a pool name) */
#define FIELD_PLAIN(b, name, s)                                                                              \
    do {                                                                                                     \
        FIELD(b, name);                                                                                      \
        buf_putc((b), '"');                                                                                  \
        buf_puts((b), (s));                                                                                  \
        buf_putc((b), '"');                                                                                  \
    } while (0)

/* "ip:port" of the client, "unix" on a unix socket; "" when unknown. */
static void format_remote(h2o_req_t *req, char *out, size_t len)
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

/* The client address of req's connection, from a's cache. */
static const char *remote_address(struct accesslog *a, h2o_req_t *req)
{
    uint64_t id = req->conn->id;
    size_t slot = (size_t)(id % ARRAY_SIZE(a->remotes));
    if (a->remotes[slot].conn_id != id || id == 0) {
        format_remote(req, a->remotes[slot].text, sizeof a->remotes[slot].text);
        a->remotes[slot].conn_id = id;
    }
    return a->remotes[slot].text;
}

/* The request's members: request_id first (it is in every line about the request). */
static void make_fields(struct accesslog *a, struct buf *b, h2o_req_t *req)
{
    struct reqinfo *ri = reqinfo_of(req);
    buf_puts(b, ri->log_fields);
    FIELD(b, "method");
    jsonw_string(b, req->input.method.base, req->input.method.len);
    /* the path without its query string: parameter values stay out of the log (log_params is
     * the per-query choice for slow queries) */
    size_t plen = req->input.query_at != SIZE_MAX ? req->input.query_at : req->input.path.len;
    FIELD(b, "path");
    jsonw_string(b, req->input.path.base, plen);
    struct timeval end;
    gettimeofday(&end, NULL);
    const struct timeval *begin = &req->timestamps.request_begin_at;
    long long us = begin->tv_sec
                       ? (long long)(end.tv_sec - begin->tv_sec) * 1000000 + (end.tv_usec - begin->tv_usec)
                       : 0;
    FIELD(b, "status");
    buf_put_uint(b, (uint64_t)(req->res.status < 0 ? 0 : req->res.status));
    FIELD(b, "bytes");
    buf_put_uint(b, req->bytes_sent);
    FIELD(b, "duration_us");
    buf_put_uint(b, (uint64_t)(us < 0 ? 0 : us));
    h2o_iovec_t endpoint = reqstats_endpoint(req); /* the same name as the metrics' endpoint label */
    if (!h2o_memis(endpoint.base, endpoint.len, H2O_STRLIT(REQSTATS_UNKNOWN))) {
        FIELD(b, "endpoint");
        jsonw_string(b, endpoint.base, endpoint.len);
    }
    if (ri->pool) FIELD_PLAIN(b, "pool", ri->pool);
    const char *remote = remote_address(a, req);
    if (remote[0]) FIELD_PLAIN(b, "remote", remote);
    if (ri->subject) {
        FIELD(b, "subject");
        jsonw_string(b, ri->subject, strlen(ri->subject));
    }
}

/* Appends req's access line to b: in JSON as log.c writes a line, without its formatting. */
static void make_line(struct accesslog *a, struct buf *b, struct worker *w, h2o_req_t *req)
{
    if (!worker_config(w)->log_json) {
        buf_reset(&a->fields);
        make_fields(a, &a->fields, req);
        log_format_line(b, LOG_INFO, "access", a->fields.data);
        return;
    }
    char ts[25];
    log_timestamp(ts);
    PUT(b, "{\"ts\":\"");
    buf_append(b, ts, 24);
    PUT(b, "\",\"level\":\"info\",\"worker\":");
    buf_put_uint(b, (uint64_t)w->index);
    PUT(b, ",\"msg\":\"access\",");
    make_fields(a, b, req);
    PUT(b, "}\n");
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
    size_t before = a->batch.len;
    make_line(a, &a->batch, w, req); /* straight into the batch: no copy on the common path */
    if (a->batch.len > a->batch_max && before > 0) {
        /* the batch would pass its size: what it held goes first, this line starts the next */
        log_write_raw(a->batch.data, before);
        memmove(a->batch.data, a->batch.data + before, a->batch.len - before);
        a->batch.len -= before;
    }
    if (a->batch.len >= a->batch_max) { /* one line as long as a whole batch */
        accesslog_flush(w);
        return;
    }
    if (!h2o_timeout_is_linked(&a->due)) h2o_timeout_link(w->ctx.loop, &a->timeout, &a->due);
}

void accesslog_register(h2o_pathconf_t *pathconf)
{
    h2o_create_logger(pathconf, sizeof(h2o_logger_t))->log_access = log_access;
}

void accesslog_init(struct worker *w)
{
    struct accesslog *a = xcalloc(1, sizeof *a);
    /* A pipe (or socket) takes a write of at most PIPE_BUF bytes whole; a longer one could
     * interleave with another worker's. Writes to a regular file do not interleave (the kernel
     * holds the file's position lock), so there a batch may be larger: fewer system calls. */
    struct stat st;
    a->batch_max = fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode) ? ACCESSLOG_FILE_BATCH : PIPE_BUF;
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
    buf_free(&a->fields);
    free(a);
    w->accesslog = NULL;
}
