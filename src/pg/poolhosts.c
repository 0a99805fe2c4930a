/* poolhosts.c — the hosts behind a pool: the roles its workers share, the choice of the host for
 * the next connect, and each host's backoff (poolhosts.h). */
#include "poolhosts.h"

#include <pthread.h>
#include <stdlib.h>

#include "log.h"
#include "util.h"

#define PEEK(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

const char *poolhosts_name(const struct pool *p, int h)
{
    return h >= 0 && h < pool_nhosts(p) ? p->shared->hosts.h[h].name : "?";
}

bool poolhosts_follows_primary(const struct pool *p)
{
    return p->target == PG_TARGET_READ_WRITE || p->target == PG_TARGET_PRIMARY;
}

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pool_shared **shared_all;
static size_t nshared;

/* The shared state of the pool whose breaker is key, made on first use from url. */
struct pool_shared *poolhosts_shared(const struct breaker *key, const char *url)
{
    pthread_mutex_lock(&shared_lock);
    struct pool_shared *s = NULL;
    for (size_t i = 0; i < nshared && s == NULL; i++)
        if (shared_all[i]->key == key) s = shared_all[i];
    if (s == NULL) {
        s = xcalloc(1, sizeof *s);
        s->key = key;
        pghosts_parse(url, &s->hosts);
        if (s->hosts.truncated)
            log_warn("a pool URL lists more than %d hosts: the pool uses the first %d", PGHOSTS_MAX,
                     PGHOSTS_MAX);
        s->roles = xcalloc((size_t)s->hosts.n, sizeof *s->roles);
        s->last_primary = -1;
        shared_all = xrealloc(shared_all, (nshared + 1) * sizeof *shared_all);
        shared_all[nshared++] = s;
    }
    pthread_mutex_unlock(&shared_lock);
    return s;
}

/* A connection to host h found its server in role r. Remembers it for every worker, and counts
 * a change once (whichever worker sees it first): a server seen in the other role than before,
 * or, for a pool that follows the primary, the primary found on another host than before. */
void poolhosts_observe(struct pool *p, int h, enum pg_role r)
{
    if (h < 0 || r == PG_ROLE_UNKNOWN) return;
    struct pool_shared *s = p->shared;
    int old = PEEK(s->roles[h]);
    bool changed = false;
    if (old != (int)r) {
        if (!__atomic_compare_exchange_n(&s->roles[h], &old, (int)r, false, __ATOMIC_RELAXED,
                                         __ATOMIC_RELAXED))
            return; /* another worker saw it first */
        if (old != PG_ROLE_UNKNOWN) {
            changed = true;
            log_warn("pool %s: %s is now a %s", p->cfg.name, poolhosts_name(p, h), pg_role_name(r));
        }
    }
    if (r == PG_ROLE_PRIMARY && poolhosts_follows_primary(p)) {
        int prev = __atomic_exchange_n(&s->last_primary, h, __ATOMIC_RELAXED);
        if (prev >= 0 && prev != h && !changed) {
            changed = true;
            log_warn("pool %s: the primary is now %s (was %s)", p->cfg.name, poolhosts_name(p, h),
                     poolhosts_name(p, prev));
        }
    }
    if (changed) __atomic_fetch_add(&s->role_changes, 1, __ATOMIC_RELAXED);
}

/* True when a standby other than host `except` is known to be up for this worker: seen as a
 * standby, and its last connect did not fail. */
bool poolhosts_standby_up(const struct pool *p, int except)
{
    for (int i = 0; i < pool_nhosts(p); i++)
        if (i != except && pool_host_role(p, i) == PG_ROLE_STANDBY &&
            (p->hosts[i].conns > 0 || p->hosts[i].last_result >= 0))
            return true;
    return false;
}

bool poolhosts_standby_possible(const struct pool *p, int except)
{
    uint64_t now = now_ms();
    for (int i = 0; i < pool_nhosts(p); i++) {
        if (i == except || pool_host_role(p, i) == PG_ROLE_PRIMARY) continue;
        if (p->hosts[i].conns > 0 || (p->hosts[i].last_result >= 0 && p->hosts[i].retry_ms <= now))
            return true;
    }
    return false;
}

/* True when the role last seen on host h does not suit the pool (a standby for a read-write pool,
 * a primary for a standby pool): such a host is tried after the others. */
bool poolhosts_mismatch(const struct pool *p, int h)
{
    enum pg_role r = pool_host_role(p, h);
    switch (p->target) {
    case PG_TARGET_READ_WRITE:
    case PG_TARGET_PRIMARY:
        return r == PG_ROLE_STANDBY;
    case PG_TARGET_STANDBY:
    case PG_TARGET_PREFER_STANDBY:
        return r == PG_ROLE_PRIMARY;
    default:
        return false;
    }
}

/* The host for the next connect, -1 when every host waits out its backoff. A pool that follows
 * one server keeps to the current one, else takes the next in the URL's order; a standby pool
 * takes the host with the fewest connections (round-robin among equals). Hosts last seen in the
 * wrong role come last. */
int poolhosts_choose(struct pool *p)
{
    int n = pool_nhosts(p);
    if (n == 1) return 0;
    uint64_t now = now_ms();
    bool spread = pg_target_spreads(p->target);
    int start = spread ? (int)(p->next_host % (unsigned)n) : p->current >= 0 ? p->current : 0;
    for (int pass = 0; pass < 2; pass++) {
        int best = -1, best_load = 0;
        for (int k = 0; k < n; k++) {
            int i = (start + k) % n;
            if (p->hosts[i].retry_ms > now || poolhosts_mismatch(p, i) != (pass == 1)) continue;
            int load = p->hosts[i].conns + p->hosts[i].connecting;
            if (best < 0 || (spread && load < best_load)) best = i, best_load = load;
            if (!spread) break;
        }
        if (best >= 0) {
            if (spread) p->next_host = (unsigned)best + 1;
            return best;
        }
    }
    return -1;
}

/* When the next host may be tried: the earliest end of a backoff. */
uint64_t poolhosts_earliest_retry(const struct pool *p)
{
    uint64_t at = UINT64_MAX;
    for (int i = 0; i < pool_nhosts(p); i++)
        if (p->hosts[i].retry_ms < at) at = p->hosts[i].retry_ms;
    return at;
}

void poolhosts_backoff(struct pool *p, int h, bool reached, bool serving)
{
    struct pool_host *ph = &p->hosts[h];
    ph->failures++;
    __atomic_store_n(&ph->last_result, reached ? 1 : -1, __ATOMIC_RELAXED);
    uint64_t cap = serving ? POOLHOSTS_RETRY_UP_MS : POOLHOSTS_RETRY_DOWN_MS;
    unsigned shift = ph->failures < 8 ? (unsigned)ph->failures : 8;
    uint64_t b = (uint64_t)50 << shift;
    if (b > cap) b = cap;
    ph->retry_ms = now_ms() + b / 2 + (uint64_t)rand() % (b / 2 + 1);
}

void poolhosts_retry_soon(struct pool *p)
{
    uint64_t soon = now_ms() + POOLHOSTS_RETRY_DOWN_MS;
    for (int i = 0; i < pool_nhosts(p); i++)
        if (p->hosts[i].retry_ms > soon) p->hosts[i].retry_ms = soon;
}
