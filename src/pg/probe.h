/* probe.h — replication lag of each pool, measured on a timer (every PROBE_EVERY_MS) over a
 * dedicated connection per pool, never through the pool itself, so it neither queues behind
 * user queries nor takes a connection from them. Read by /health. A replica's replay position
 * is published with it (walpos.h), more often while requests wait for it. */
#ifndef SLUICE_PROBE_H
#define SLUICE_PROBE_H

#include <h2o.h>
#include <stdbool.h>

#include "config.h"

#define PROBE_EVERY_MS  2000
#define PROBE_MAX_POOLS 64 /* pools past this many are not probed */

/* Starts probing every pool of cfg on loop (call once, from one worker; queue is that worker's,
 * for the polls other workers ask for). Never blocks: connecting and querying run on the loop. */
void probe_start(h2o_loop_t *loop, h2o_multithread_queue_t *queue, const struct config *cfg);
/* Reads the newest probe of pool idx (any thread). Returns true when the pool's server is in
 * recovery (a replica): *lag_seconds is then its replication lag, or negative when it cannot be
 * known (nothing replayed yet). Returns false for a primary and while unknown (no probe answered,
 * or the probe connection is down). */
bool probe_replication_lag(int idx, double *lag_seconds);
/* True when the newest probe of pool idx found a primary (not in recovery). Any thread. */
bool probe_is_primary(int idx);

#endif
