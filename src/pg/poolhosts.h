/* poolhosts.h — the hosts behind a pool (pool.c's helper): what its workers share of them (each
 * server's role as last seen, the role changes counted once), which host the next connect goes
 * to, and the backoff of a host that failed. */
#ifndef SLUICE_POOLHOSTS_H
#define SLUICE_POOLHOSTS_H

#include <stdbool.h>
#include <stdint.h>

#include "pool.h"

/* The shared state of the pool whose breaker is key (one per configured pool), made from url
 * by the first worker that asks and kept for the life of the process. Never NULL. */
struct pool_shared *poolhosts_shared(const struct breaker *key, const char *url);
/* "host:port" of host h, "?" for none. */
const char *poolhosts_name(const struct pool *p, int h);
/* True for read-write and primary pools: their connections follow one server, the primary. */
bool poolhosts_follows_primary(const struct pool *p);

/* A connection to host h found its server in role r (any worker): remembered for all, and a
 * change counted once (shared->role_changes) — a server seen in another role than before, or,
 * for a pool that follows the primary, the primary found on another host. */
void poolhosts_observe(struct pool *p, int h, enum pg_role r);
/* True when a standby other than host `except` is known to be up for this worker. */
bool poolhosts_standby_up(const struct pool *p, int except);
/* True when a host other than `except` may turn out a standby: not seen as a primary, and
 * connected, or untried or reached at its last connect and not waiting out a backoff. */
bool poolhosts_standby_possible(const struct pool *p, int except);
/* True when host h was last seen in a role that does not suit the pool. */
bool poolhosts_mismatch(const struct pool *p, int h);

/* The host for the next connect, -1 when every host waits out its backoff. A pool that follows
 * the primary keeps to the current host, else the next in the URL's order; a standby pool takes
 * the host with the fewest connections (round-robin among equals); hosts last seen in the wrong
 * role come last. */
int poolhosts_choose(struct pool *p);
/* When a host may next be tried: the earliest end of a backoff (0: now). */
uint64_t poolhosts_earliest_retry(const struct pool *p);
/* Host h failed a connect (reached: it answered, in the wrong role): it waits a backoff with
 * jitter before the next try, at most POOLHOSTS_RETRY_DOWN_MS while the pool has no usable
 * server (serving false) and at most POOLHOSTS_RETRY_UP_MS while it has. */
void poolhosts_backoff(struct pool *p, int h, bool reached, bool serving);
/* The pool lost its last server: every host may be tried again within POOLHOSTS_RETRY_DOWN_MS. */
void poolhosts_retry_soon(struct pool *p);

/* A promoted standby is found within about half a second while nothing serves; a host that
 * failed while others serve is tried again after up to 10 s. */
#define POOLHOSTS_RETRY_DOWN_MS 500
#define POOLHOSTS_RETRY_UP_MS   10000

#endif
