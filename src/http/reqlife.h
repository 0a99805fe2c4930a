/* reqlife.h — the one lifecycle of a request that waits on the database (named query, batch,
 * bulk load, stream, handler, explain). Its state lives in the request's pool, so a client that
 * leaves frees it; it holds its registry generation and a place in the worker's in-flight count;
 * a deadline and a client watch end a wait early, and one cleanup slot undoes what is pending. */
#ifndef SLUICE_REQLIFE_H
#define SLUICE_REQLIFE_H

#include <h2o.h>
#include <stdbool.h>
#include <stdint.h>

#include "clientwatch.h"

struct worker;
struct registry;
struct reqlife;

/* What a request kind plugs into its lifecycle. Every hook may be NULL. */
struct reqlife_kind {
    /* Undoes what the wait left pending (abandon a job, discard a connection, end a coroutine).
     * Runs at most once per wait, when the wait ends other than by reqlife_done. */
    void (*cleanup)(struct reqlife *life);
    /* Answers after the deadline ended the wait (cleanup ran). NULL: 504 "the request deadline
     * passed". */
    void (*on_deadline)(struct reqlife *life);
    /* Answers after the client hung up during the wait (cleanup ran); the answer only lets h2o
     * free the request. NULL: 503 "the client closed the connection". */
    void (*on_client_gone)(struct reqlife *life);
    /* Frees what the kind holds, when h2o frees the request (after cleanup, if it waited). */
    void (*dispose)(struct reqlife *life);
};

/* The first member of each request kind's state. */
struct reqlife {
    h2o_req_t *req;
    struct worker *w;
    struct registry *reg; /* held until the request is freed: its definitions outlive a reload */
    const struct reqlife_kind *kind;
    uint64_t started_us;
    bool waiting; /* between reqlife_wait and the end of that wait */
    h2o_timeout_entry_t deadline;
    h2o_timeout_entry_t watch_due; /* a wait still running after a while watches its client */
    struct clientwatch watch;
};

/* Allocates size bytes (at least a struct reqlife, which they start with) in req's pool, zeroed,
 * holding reg and a place in w's in-flight count until h2o frees the request. Never fails. */
void *reqlife_new(struct worker *w, h2o_req_t *req, size_t size, const struct reqlife_kind *kind,
                  struct registry *reg);
/* A wait on the database begins: the deadline deadline_ms from now (0: none) and, after a while,
 * the client watch. */
void reqlife_wait(struct reqlife *life, uint64_t deadline_ms);
/* The wait ended normally: timers and watch stop, cleanup does not run. Idempotent. */
void reqlife_done(struct reqlife *life);
/* The wait ends now (the request kind gives up on it): timers and watch stop and cleanup runs, at
 * most once. Idempotent. */
void reqlife_abort(struct reqlife *life);
/* request_timeout in milliseconds (0: no request deadline). */
uint64_t reqlife_request_timeout_ms(const struct worker *w);

/* For work without a request of its own (a slow plan's capture): holds reg and a place in the
 * in-flight count, as reqlife_new does, until reqlife_unhold. */
void reqlife_hold(struct worker *w, struct registry *reg);
void reqlife_unhold(struct worker *w, struct registry *reg);

#endif
