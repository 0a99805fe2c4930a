/* server.h — the gateway process: one h2o event loop per worker thread, each with its own
 * listener, Lua state, registry and share of every pool. */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include <h2o.h>
#include <lua.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>

#include "buf.h"
#include "config.h"
#include "endpoint.h"
#include "pool.h"

struct server;

struct worker {
    h2o_context_t ctx; /* first: requests find their worker through req->conn->ctx */
    h2o_accept_ctx_t accept_ctx;
    struct server *srv;
    int index;
    pthread_t thread;
    int listen_fd;
    h2o_socket_t *listener;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t control; /* stop messages from the main thread */
    struct pool *pools;                 /* one per configured pool, in config order */
    int npools;
    struct registry *reg;     /* the current generation of definitions (reg->L runs them) */
    struct registry *retired; /* older generations, freed once unused */
    h2o_timeout_t janitor_timeout;
    h2o_timeout_entry_t janitor;
    struct buf out; /* response body scratch, reused by every request */
    struct {
        uint64_t ms;
        h2o_timeout_t timeout;
    } timeouts[32]; /* deadlines by duration (h2o 2.2.5 timeouts have one each) */
    int ntimeouts;
    int inflight;            /* requests waiting on the database */
    struct h2reset *h2reset; /* HTTP/2 reset budgets by connection (h2reset.c), made on first use */
    bool stopping;
    uint64_t stop_deadline_ms;
};

struct server {
    struct config *cfg;
    struct breaker *breakers; /* one per configured pool, shared by the workers */
    h2o_globalconf_t globalconf;
    SSL_CTX *ssl_ctx;   /* the listener's TLS context, NULL for plain HTTP; replaced on SIGHUP */
    SSL_CTX **ssl_ctxs; /* every context made, kept until exit (server.c says why) */
    size_t nssl_ctxs;
    struct config **reloaded; /* every config read on SIGHUP, freed when the server stops */
    size_t nreloaded;
    struct worker *workers;
    int nworkers;
};

/* Control messages from the main thread to a worker. */
enum control { CONTROL_STOP, CONTROL_RELOAD };

/* Serves until SIGTERM/SIGINT, then drains in-flight requests up to shutdown_timeout.
 * Returns the process exit code (0 after a clean stop, 1 when start-up failed). */
int server_run(struct config *cfg);

/* The worker's timeout queue for deadlines of ms milliseconds (made on first use; past 32
 * distinct durations the nearest longer one, or the longest, serves). */
h2o_timeout_t *worker_timeout(struct worker *w, uint64_t ms);

/* Arms entry to run cb at the request deadline, request_timeout from now; does nothing when
 * request_timeout is 0 (no deadline). */
void worker_request_deadline(struct worker *w, h2o_timeout_entry_t *entry, h2o_timeout_cb cb);

static inline struct worker *worker_of(h2o_req_t *req)
{
    return (struct worker *)req->conn->ctx;
}

#endif
