/* ryw.h — reading your writes: which pool serves a readonly named query whose request carries a
 * Sluice-LSN. A standby serves it only once its replay position has reached the token; while
 * none has, the request waits (read_your_writes_wait_ms of the query's own pool, at most half
 * the time left before its deadline) with the probe hurried, then runs on the query's own pool.
 * Counted per pool and outcome for sluice_read_your_writes_total (docs/high-availability.md). */
#ifndef SLUICE_RYW_H
#define SLUICE_RYW_H

#include <h2o.h>
#include <stdint.h>

struct worker;
struct server;

enum ryw_outcome {
    RYW_STANDBY,  /* a standby had replayed the token already */
    RYW_WAITED,   /* a standby replayed it while the request waited */
    RYW_FALLBACK, /* none did in time (or there is none): the query's own pool */
    RYW_NOUTCOMES
};

/* One request's wait; the memory is the caller's (the request's pool) and must stay put until
 * ready ran or ryw_cancel was called. */
struct ryw_wait {
    h2o_linklist_t link; /* on the worker's list while it waits */
    uint64_t lsn;
    int routed;        /* the pool sluice.route chose, -1: the gateway picks among the standbys */
    int own;           /* the query's own pool: the fallback */
    uint64_t until_us; /* the wait ends here at the latest */
    void (*ready)(struct ryw_wait *wt, int pool);
};

/* Sets up w's waiters and counters (the worker's thread, before it serves). */
void ryw_init(struct worker *w);
void ryw_free(struct worker *w);

/* The pool for a readonly query of pool `own` whose request carries lsn; routed is what
 * sluice.route returned (-1 for nothing). Returns the pool now (a standby that has replayed lsn,
 * the routed pool when it is a primary, or `own` when waiting is pointless), or -1 when the
 * request waits: ready(wt, pool) then runs later from the loop, never from inside this call.
 * The wait lasts read_your_writes_wait_ms of `own` at most, and half the time left before
 * deadline_us (0: none), so that the query can still run in the other half. */
int ryw_pick(struct worker *w, struct ryw_wait *wt, uint64_t lsn, int routed, int own, uint64_t deadline_us,
             void (*ready)(struct ryw_wait *wt, int pool));
/* The request stops waiting without an answer (deadline, client gone); harmless when it does
 * not wait. */
void ryw_cancel(struct ryw_wait *wt);

/* sluice_read_your_writes_total of pool over every worker, by enum ryw_outcome (a snapshot). */
void ryw_totals(struct server *srv, int pool, uint64_t out[RYW_NOUTCOMES]);
/* The outcome label: "standby", "waited" or "fallback". */
const char *ryw_outcome_name(int outcome);

#endif
