/* h2reset.c — the Rapid Reset guard. Each HTTP/2 request holds a small watch in its memory pool;
 * when the pool is freed and no answer had begun (status still 0: the client reset the stream, or
 * left), the connection's token bucket loses one token. A bucket that runs dry marks the
 * connection closed, logs why once, and shuts its socket down: h2o then fails its next read or
 * write and frees the connection with its streams. Requests that still arrive on it from data
 * already read are refused without work. Buckets live in a per-worker table keyed by h2o's
 * connection id, made on the first reset; a full probe run evicts the longest-idle bucket. */
#include "h2reset.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "http.h"
#include "log.h"
#include "server.h"
#include "util.h"

#define SLOTS  1024 /* a power of two */
#define PROBES 8

struct bucket {
    uint64_t conn_id; /* 0: free */
    uint64_t last_ms; /* when tokens was last brought up to date */
    double tokens;
    bool closed;
};

struct h2reset {
    struct bucket slots[SLOTS];
};

struct watch {
    struct worker *w;
    h2o_req_t *req;
};

static size_t slot_of(uint64_t id)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (SLOTS - 1);
}

/* The bucket of connection id, or NULL when it has none and create is false. */
static struct bucket *find(struct worker *w, uint64_t id, bool create)
{
    if (w->h2reset == NULL) {
        if (!create) return NULL;
        w->h2reset = xcalloc(1, sizeof *w->h2reset);
    }
    struct bucket *victim = NULL;
    for (size_t i = 0, s = slot_of(id); i < PROBES; i++, s = (s + 1) & (SLOTS - 1)) {
        struct bucket *b = &w->h2reset->slots[s];
        if (b->conn_id == id) return b;
        if (victim == NULL || (victim->conn_id != 0 && (b->conn_id == 0 || b->last_ms < victim->last_ms)))
            victim = b;
    }
    if (!create) return NULL;
    *victim = (struct bucket){id, now_ms(), H2RESET_BURST, false};
    return victim;
}

/* "address:port" of req's client, or "?" */
static void peer_text(h2o_req_t *req, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    char host[INET6_ADDRSTRLEN] = "?";
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    int port = 0;
    if (len != 0 && ss.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        port = ntohs(a->sin_port);
    } else if (len != 0 && ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        port = ntohs(a->sin6_port);
    }
    snprintf(out, outlen, port ? "%s:%d" : "%s", host, port);
}

/* The request is being freed; req and its connection are still valid. */
static void on_dispose(void *p)
{
    struct watch *wt = p;
    h2o_req_t *req = wt->req;
    if (req->res.status != 0) return; /* answered, or its answer had begun */
    struct bucket *b = find(wt->w, req->conn->id, true);
    if (b->closed) return;
    uint64_t now = now_ms();
    b->tokens += (double)(now - b->last_ms) / 1000 * H2RESET_PER_SECOND;
    if (b->tokens > H2RESET_BURST) b->tokens = H2RESET_BURST;
    b->last_ms = now;
    if (--b->tokens >= 0) return;
    b->closed = true;
    char peer[INET6_ADDRSTRLEN + 8];
    peer_text(req, peer, sizeof peer);
    log_warn(
        "HTTP/2 connection from %s closed: more than %d requests ended by the client before their answer "
        "(%d more allowed a second; Rapid Reset)",
        peer, H2RESET_BURST, H2RESET_PER_SECOND);
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock != NULL) shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
}

bool h2reset_admit(struct worker *w, h2o_req_t *req)
{
    if (req->version < 0x200) return true;
    struct bucket *b = find(w, req->conn->id, false);
    if (b != NULL && b->closed) {
        http_send_error(req, 503, "unavailable",
                        "this HTTP/2 connection ended too many requests early and is closed", NULL, NULL);
        return false;
    }
    struct watch *wt = h2o_mem_alloc_shared(&req->pool, sizeof *wt, on_dispose);
    wt->w = w;
    wt->req = req;
    return true;
}

void h2reset_free(struct worker *w)
{
    free(w->h2reset);
    w->h2reset = NULL;
}
