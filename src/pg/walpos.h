/* walpos.h — WAL positions for reading your writes: the position a write's commit reached (what
 * Sluice-LSN carries), and how far each standby pool has replayed (published by the probe, read
 * by every worker). While requests wait for a standby, the probe is hurried: it asks that pool
 * every WALPOS_FAST_MS instead of every PROBE_EVERY_MS. */
#ifndef SLUICE_WALPOS_H
#define SLUICE_WALPOS_H

#include <h2o.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "ownsql.h"

/* Sent right after a write, on the same connection: the server's WAL insert position, at or
 * after the end of the commit record of everything that connection committed before. */
#define WALPOS_SQL  "SELECT pg_current_wal_insert_lsn() " OWN_SQL_MARK
#define WALPOS_STMT "sluice_walpos" /* its name where it is prepared (pipelined connections) */
/* The same after the COMMIT of a transaction, in one round trip (simple protocol). */
#define WALPOS_COMMIT_SQL "COMMIT; SELECT pg_current_wal_insert_lsn() " OWN_SQL_MARK

#define WALPOS_MAX_POOLS 64   /* pools past this many have no replay position */
#define WALPOS_FAST_MS   5    /* the hurried probe's pace */
#define WALPOS_HURRY_MS  50   /* how long one walpos_hurry keeps it hurried */
#define WALPOS_SOON_US   1000 /* a fresh wait asks for an extra poll at most this often */

/* The position in r (one row, one pg_lsn column, as WALPOS_SQL answers), or 0 when r is anything
 * else (an error, a NULL, a server that answered something unexpected). */
uint64_t walpos_of(const PGresult *r);

/* Publishes pool idx's replay position (0: unknown, e.g. not a standby or its probe is down).
 * Any thread; the probe calls it. */
void walpos_set_replay(int idx, uint64_t lsn);
/* Pool idx's newest published replay position, 0 when unknown. Any thread. */
uint64_t walpos_replay(int idx);

/* Asks for pool idx's replay position to be polled every WALPOS_FAST_MS for the next
 * WALPOS_HURRY_MS (a waiting request calls it again while it waits). fresh (a request that has
 * just begun to wait) also asks for a poll at once, unless one went out in the last
 * WALPOS_SOON_US. Any thread; cheap when the polls run already (atomic loads and a store). */
void walpos_hurry(int idx, bool fresh);
/* Runs the hurried polls on loop (the probe's, worker 0's): poll(idx) is called on that loop
 * for each hurried pool, at once and then every WALPOS_FAST_MS, and asks the probe to query
 * now. queue is the loop's message queue (other threads wake it through it). Call once. */
void walpos_start(h2o_loop_t *loop, h2o_multithread_queue_t *queue, void (*poll)(int idx));

#endif
