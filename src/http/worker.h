/* worker.h — one worker thread: an h2o event loop with its own listener, Lua state, registry and
 * share of every pool. Everything a request touches on its way is reached from here. */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include <h2o.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "endpoint.h"
#include "pool.h"

struct server;
struct ryw_state;
struct accesslog;
struct reqstats;

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
    struct reqstats *reqstats;   /* responses by endpoint, method, status (reqstats.c), made on first use */
    int inflight;                /* requests waiting on the database */
    struct h2reset *h2reset;     /* HTTP/2 reset budgets by connection (h2reset.c), made on first use */
    struct accesslog *accesslog; /* access lines not yet written (accesslog.c) */
    struct ryw_state *ryw;       /* reads waiting for a standby to replay their Sluice-LSN (ryw.c) */
    bool stopping;
    uint64_t stop_deadline_ms;
    uint64_t stop_linger_ms; /* the listener closed: serve until then at least (serve.c) */
};

/* The configuration in force (it changes at a reload). */
const struct config *worker_config(const struct worker *w);

/* The worker's timeout queue for deadlines of ms milliseconds (made on first use; past 32
 * distinct durations the nearest longer one, or the longest, serves). */
h2o_timeout_t *worker_timeout(struct worker *w, uint64_t ms);

static inline struct worker *worker_of(h2o_req_t *req)
{
    return (struct worker *)req->conn->ctx;
}

#endif
