/* cached.h — a readonly named query's requests through the result cache (cache.h) and request
 * coalescing: the key (query, bound parameters, the caller's credentials when the query has
 * auth), the lookup, and the flights — one execution that identical requests in flight on a
 * worker share, answered to each of them with the same outcome (docs/cache.md). */
#ifndef SLUICE_CACHED_H
#define SLUICE_CACHED_H

#include <h2o.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "call.h"
#include "endpoint.h"
#include "pool.h"

struct worker;
struct flight;

/* A request's part in the cache and in a flight; lives in the request's state (its pool). */
struct cached_seat {
    bool active; /* the request takes part: a cached or coalesced query, bound already */
    char *key;   /* in the request's pool */
    size_t keylen;
    uint64_t hash;         /* hash64 of the key */
    uint64_t gens;         /* the generation sum of its query's tables when it began */
    uint64_t lsn;          /* the WAL position its answer will have been read at, at least */
    uint64_t body_hash;    /* a hit: hash64 of the body, its ETag */
    struct flight *flight; /* the execution it waits on, while it does */
    h2o_linklist_t link;   /* on that flight's list */
};

/* What a flight hands each waiting request when its execution ends: the outcome (o), the
 * rendered body of a 200 (NULL otherwise) and the Sluice-Cache verdict ("miss" for the request
 * that began it, "coalesced" for the others). The job stays the flight's. */
typedef void (*cached_answer_fn)(struct cached_seat *s, const struct pgjob *job, const struct call_outcome *o,
                                 const struct buf *body, const char *verdict);
/* Binds a flight's job with the values of one of its (identical) requests. */
typedef int (*cached_bind_fn)(struct cached_seat *s, struct pgjob *job);

/* Sets up and frees w's flights (the worker's thread). */
void cached_init(struct worker *w);
void cached_free(struct worker *w);

/* Makes s take part when q is cached or coalesced and job is bound: builds the key from job's
 * parameters (and the Authorization header when q has auth) and reads the generations. */
void cached_begin(struct cached_seat *s, h2o_req_t *req, const struct query_def *q, const struct pgjob *job);
/* Looks s up in the store (cached queries): true on a hit, with the body appended to out.
 * token: the request's Sluice-LSN (0: none); an entry read before it is a miss. Counts the hit,
 * miss or invalidation. */
bool cached_lookup(struct cached_seat *s, const struct query_def *q, uint64_t token, struct buf *out);
/* Joins the flight of an identical request in progress on w, when one began with the same
 * generations: true when it did (the answer then comes through that flight's answer hook). */
bool cached_join(struct worker *w, struct cached_seat *s, const struct query_def *q);
/* Begins a flight on w for s with job (bound or not yet, unsubmitted): the job's owner becomes
 * the flight; the caller submits it and, should the pool refuse it, calls cached_refused. */
void cached_lead(struct worker *w, struct cached_seat *s, struct pgjob *job, cached_answer_fn answer,
                 cached_bind_fn bind);
/* The pool refused the flight's job at once: every request of the flight gets outcome o. */
void cached_refused(struct pgjob *job, const struct call_outcome *o);
/* s leaves its flight without an answer (deadline, client gone); the last one out abandons the
 * job. Harmless when s waits on none. */
void cached_leave(struct cached_seat *s);
/* The WAL position an answer of pool idx read now will include at least: the standby's replay
 * position, or on a primary the newest write this process saw (and token, a write the client
 * saw). Set before the query is sent. */
uint64_t cached_read_lsn(int pool, uint64_t token);
/* Keeps a 200 answer of s's query (cached queries). */
void cached_keep(const struct cached_seat *s, const struct query_def *q, const struct buf *body);

/* The pools (bit i: pool i) whose queries reg caches: those that need a LISTEN connection. */
uint64_t cached_pools(const struct registry *reg);
/* Subscribes to sluice_invalidate on each pool of the mask that is not subscribed yet
 * (listener.h): a payload makes its table stale. While a pool's LISTEN connection is down (lost,
 * or not made yet) its cached queries are neither served from the cache nor stored, and when it
 * is lost or made again every entry of them becomes stale, since what was notified meanwhile is
 * lost (worker 0 looks every LISTEN_WATCH_MS). A pool stays subscribed until the process exits.
 * Main thread only: after listener_start and before the workers start, and on each reload
 * before the workers load the new scripts (so that none stores an entry of a newly cached pool
 * before its LISTEN connection is seen up). */
void cached_listen(const struct config *cfg, uint64_t pools);

/* Sets Sluice-Cache: verdict on the response. */
void cached_header(h2o_req_t *req, const char *verdict);

#endif
