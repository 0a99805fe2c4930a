/* pool.c — one named pool's share on one worker. Jobs and leases wait in one FIFO bounded by
 * pool_timeout and max_queue; a connection sits on the list of its state (pgconn_events tell
 * the pool of every change); connections come and go with backoff; the janitor refills, reaps,
 * recycles and asks idle connections their server's role. With several hosts in the URL each
 * connect names one host, chosen here: the current primary first, or the least used standby. */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "cancel.h"
#include "endpoint.h"
#include "log.h"
#include "pgconn.h"
#include "poolhosts.h"
#include "util.h"

#define JANITOR_MS     250
#define MAX_CONNECTING 2    /* connects in flight per pool and worker: no thundering herd */
#define BACKOFF_MAX_MS 1000 /* a restarted server is back in service within about a second */
/* While no server is usable: how often waiters are checked against failover_wait_ms and due
 * connects started. */
#define FAILOVER_TICK_MS 50
/* An idle connection of a pool that wants a role asks its server this often (a lone Sync), so
 * that a promotion or demotion is seen within a second. */
#define ROLE_CHECK_MS 500

static void dispatch(struct pool *p);
static void on_wait_timeout(h2o_timeout_entry_t *entry);
static void start_connect(struct pool *p);

#define PEEK(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define POKE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

static int total(const struct pool *p)
{
    int n = 0;
    for (int s = 0; s < PGCONN_NSTATES; s++) n += p->conns[s].n;
    return n;
}

/* Connections that can take work now or soon: established and not closing for their role. */
static int usable(const struct pool *p)
{
    return p->conns[PGCONN_IDLE].n + p->conns[PGCONN_PIPELINE].n + p->conns[PGCONN_LEASED].n - p->nretiring;
}

/* --- the wait queue ----------------------------------------------------------------------- */

static void enqueue(struct pool *p, struct pool_wait *w, bool front)
{
    w->pool = p;
    if (p->down_since_us && w->failover_since_us == 0) w->failover_since_us = now_us();
    if (front) {
        w->next = p->qhead;
        p->qhead = w;
        if (p->qtail == NULL) p->qtail = w;
    } else {
        w->next = NULL;
        if (p->qtail)
            p->qtail->next = w;
        else
            p->qhead = w;
        p->qtail = w;
    }
    p->qlen++;
    w->entry.cb = on_wait_timeout;
    h2o_timeout_link(p->loop, p->wait_timeout, &w->entry);
}

static void unqueue(struct pool *p, struct pool_wait *w)
{
    struct pool_wait **pp = &p->qhead, *prev = NULL;
    while (*pp && *pp != w) prev = *pp, pp = &(*pp)->next;
    if (*pp == NULL) return;
    *pp = w->next;
    if (p->qtail == w) p->qtail = prev;
    w->next = NULL;
    p->qlen--;
    if (h2o_timeout_is_linked(&w->entry)) h2o_timeout_unlink(&w->entry);
}

/* --- delivering --------------------------------------------------------------------------- */

static void deliver(struct pgjob *job)
{
    /* a write that ran (or may have): the result cache drops its tables before anyone answers */
    if (job->status != PGJOB_BIND_ERROR) cache_wrote(job->q->write_tables, job->q->nwrite_tables, job->lsn);
    if (job->owner != NULL)
        job->on_done(job);
    else
        pgjob_free(job); /* its owner left */
}

/* A wait ends (served or not): how long it waited for a usable server goes to the histogram. */
static void end_wait(struct pool_wait *w)
{
    if (w->failover_since_us == 0) return;
    histogram_observe(&w->pool->failover_wait, (double)(now_us() - w->failover_since_us) / 1e6);
    w->failover_since_us = 0;
}

/* Ends a wait without a connection: a job gets PGJOB_UNAVAILABLE, a lease its callback. */
static void fail_wait(struct pool_wait *w, const char *msg)
{
    end_wait(w);
    if (w->whole) {
        struct pool_lease *lease = (struct pool_lease *)w;
        lease->cb(lease->arg, NULL, msg);
        return;
    }
    struct pgjob *job = (struct pgjob *)w;
    job->status = PGJOB_UNAVAILABLE;
    snprintf(job->errmsg, sizeof job->errmsg, "%s", msg);
    deliver(job);
}

static void on_wait_timeout(h2o_timeout_entry_t *entry)
{
    struct pool_wait *w = container_of(entry, struct pool_wait, entry);
    struct pool *p = w->pool;
    unqueue(p, w);
    char msg[96];
    snprintf(msg, sizeof msg, "no database connection within pool_timeout (%gs)", p->cfg.pool_timeout);
    fail_wait(w, msg);
}

static const uint32_t retry_steps_ms[8] = {5, 10, 20, 40, 80, 160, 320, 640};

static void on_retry_due(h2o_timeout_entry_t *entry)
{
    struct pgjob *job = container_of(entry, struct pgjob, wait.entry);
    struct pool *p = job->wait.pool;
    if (p->closing) {
        fail_wait(&job->wait, "the gateway is shutting down");
        return;
    }
    job->wait.queued_us = now_us();
    enqueue(p, &job->wait, false);
    dispatch(p);
}

/* Resends a readonly or idempotent job — or any job whose statement was never sent (unsent) —
 * after a backoff with full jitter; it then waits in the queue like new work, for a usable server
 * too. Returns false when the policy, the attempts or the request deadline do not allow it. */
static bool retry_later(struct pool *p, struct pgjob *job, bool unsent)
{
    if (job->owner == NULL || p->closing || !(job->q->readonly || job->q->idempotent || unsent) ||
        job->attempts >= p->retry_policy.attempts)
        return false;
    uint32_t delay = retry_delay_ms(&p->retry_policy, job->attempts, (uint32_t)rand());
    if (job->deadline_us && now_us() + (uint64_t)delay * 1000 >= job->deadline_us) return false;
    if (job->result) PQclear(job->result);
    job->result = NULL;
    job->status = PGJOB_OK;
    job->conn = NULL;
    p->retries++;
    int i = -1;
    while (i + 1 < 8 && retry_steps_ms[i + 1] <= delay) i++;
    if (i < 0) {
        on_retry_due(&job->wait.entry);
        return true;
    }
    job->wait.entry.cb = on_retry_due;
    h2o_timeout_link(p->loop, &p->retry_timeouts[i], &job->wait.entry);
    return true;
}

static void retire(struct pool *p, struct pgconn *c, const char *why, bool may_free);
static void host_backoff(struct pool *p, int h, bool reached);

/* pgconn_events.on_job_done: counts what the result says of the server, then delivers the job
 * or resends it. c must not be freed here (its input is still being read). */
static void on_job_done(void *arg, struct pgconn *c, struct pgjob *job)
{
    struct pool *p = arg;
    if (job->status == PGJOB_DB_ERROR) {
        const char *state = PQresultErrorField(job->result, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "40P01") == 0) p->deadlocks++;
        if (c != NULL && state && strcmp(state, "25006") == 0 && poolhosts_follows_primary(p)) {
            /* A read-write pool's server refused a write as read-only: it is no primary any more
             * (or was made read-only). The connection goes; nothing was written, so the job is
             * re-run where the policy allows, else answered at once. */
            if (c->host >= 0 && pool_nhosts(p) > 1) host_backoff(p, c->host, true);
            retire(p, c, "the server is read-only (25006)", false);
            if (retry_later(p, job, false)) return;
            PQclear(job->result);
            job->result = NULL;
            job->status = PGJOB_UNAVAILABLE;
            snprintf(job->errmsg, sizeof job->errmsg,
                     "the database server is read-only (no longer the primary): nothing was written");
            deliver(job);
            return;
        }
        /* Only a server that answers with connection-class errors counts: a shutdown (57P01..03)
         * is how a switchover looks, and the pool waits for a server instead. */
        if (retry_sqlstate_connection(state) && strncmp(state, "57P", 3) != 0) {
            if (breaker_failure(p->breaker, &p->breaker_policy, now_ms()))
                log_warn("pool %s: circuit breaker open", p->cfg.name);
        } else if (breaker_success(p->breaker)) { /* the server answered: it is reachable */
            log_info("pool %s: circuit breaker closed", p->cfg.name);
        }
        if (retry_sqlstate_transient(state) && retry_later(p, job, false)) return;
    } else if (job->status == PGJOB_OK && breaker_success(p->breaker)) {
        log_info("pool %s: circuit breaker closed", p->cfg.name);
    }
    deliver(job);
}

/* --- connections by state ----------------------------------------------------------------- */

static void list_add(struct pool *p, enum pgconn_state s, struct pgconn *c)
{
    struct pgconn_list *l = &p->conns[s];
    c->prev = NULL;
    c->next = l->head;
    if (l->head) l->head->prev = c;
    l->head = c;
    __atomic_store_n(&l->n, l->n + 1, __ATOMIC_RELAXED);
}

static void list_del(struct pool *p, enum pgconn_state s, struct pgconn *c)
{
    struct pgconn_list *l = &p->conns[s];
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    __atomic_store_n(&l->n, l->n - 1, __ATOMIC_RELAXED);
}

/* The gauge of prepared statements follows each connection's cache. */
static void count_stmts(struct pool *p, struct pgconn *c, int now)
{
    p->stmts_prepared += now - c->stmts_counted;
    c->stmts_counted = now;
}

/* c leaves the pool's counts: its host's connections (or connects), the retiring ones. */
static void forget(struct pool *p, struct pgconn *c, enum pgconn_state from)
{
    if (c->host >= 0 && from == PGCONN_CONNECTING) p->hosts[c->host].connecting--;
    if (c->host_counted) {
        POKE(p->hosts[c->host].conns, p->hosts[c->host].conns - 1);
        c->host_counted = false;
    }
    if (c->retiring) {
        p->nretiring--;
        c->retiring = false;
    }
}

/* Host h failed a connect or turned out in the wrong role: it is tried again after a backoff. */
static void host_backoff(struct pool *p, int h, bool reached)
{
    poolhosts_backoff(p, h, reached, p->down_since_us == 0 && usable(p) > 0);
}

/* Frees a connection that has nothing in flight (IDLE or CONNECTING) without callbacks. */
static void drop(struct pool *p, struct pgconn *c)
{
    list_del(p, c->state, c);
    forget(p, c, c->state);
    count_stmts(p, c, 0);
    pgconn_free(c);
}

/* --- waiting for a usable server ---------------------------------------------------------- */

static void on_failover_tick(h2o_timeout_entry_t *entry);

/* Fails what has waited failover_wait_ms for a usable server. */
static void expire_waiters(struct pool *p)
{
    uint64_t now = now_us(), wait = (uint64_t)p->cfg.failover_wait_ms * 1000;
    struct pool_wait *expired = NULL, **tail = &expired;
    for (struct pool_wait *w = p->qhead, *next; w; w = next) {
        next = w->next;
        if (w->failover_since_us == 0 || now < w->failover_since_us + wait) continue;
        unqueue(p, w);
        *tail = w;
        tail = &w->next;
    }
    if (expired == NULL) return;
    char msg[200];
    snprintf(msg, sizeof msg, "no usable database server within failover_wait_ms (%d ms): %.120s",
             p->cfg.failover_wait_ms, p->last_error);
    /* answered after the queue walk: an owner may submit again from its callback */
    for (struct pool_wait *w; (w = expired) != NULL;) {
        expired = w->next;
        w->next = NULL;
        fail_wait(w, msg);
    }
}

/* No connection is usable and connecting failed: from now on work waits for a server (up to
 * failover_wait_ms each), hosts are tried again within half a second, and the failover tick
 * runs until a connection is up. */
static void set_down(struct pool *p)
{
    if (p->down_since_us != 0 || p->closing) return;
    uint64_t now = now_us();
    POKE(p->down_since_us, now);
    log_warn("pool %s: no usable database server; requests wait up to %d ms (failover_wait_ms)", p->cfg.name,
             p->cfg.failover_wait_ms);
    for (struct pool_wait *w = p->qhead; w; w = w->next)
        if (w->failover_since_us == 0) w->failover_since_us = now;
    poolhosts_retry_soon(p);
    if (!h2o_timeout_is_linked(&p->failover_tick))
        h2o_timeout_link(p->loop, &p->failover_tick_timeout, &p->failover_tick);
    if (p->cfg.failover_wait_ms == 0) expire_waiters(p);
}

static void clear_down(struct pool *p)
{
    if (p->down_since_us == 0) return;
    log_info("pool %s: serving again after %llu ms without a usable server", p->cfg.name,
             (unsigned long long)((now_us() - p->down_since_us) / 1000));
    POKE(p->down_since_us, 0);
    if (h2o_timeout_is_linked(&p->failover_tick)) h2o_timeout_unlink(&p->failover_tick);
}

static void on_failover_tick(h2o_timeout_entry_t *entry)
{
    struct pool *p = container_of(entry, struct pool, failover_tick);
    if (p->down_since_us == 0 || p->closing) return;
    h2o_timeout_link(p->loop, &p->failover_tick_timeout, &p->failover_tick);
    start_connect(p);
    expire_waiters(p);
}

/* --- connecting --------------------------------------------------------------------------- */

/* A connect to host h failed (reached: the server answered in the wrong role). With several
 * hosts, another host is tried at once and only a round with none left counts as the pool's
 * failure (backoff, last_error, and waiting for a server when none is up). */
static void connect_failed(struct pool *p, int h, bool trial, bool reached, const char *reason)
{
    p->connect_errors++;
    char why[320];
    snprintf(why, sizeof why, "%s", reason);
    if (pool_nhosts(p) > 1 && h >= 0) {
        /* say which host, unless the reason does (libpq's does) */
        const struct pg_host *ph = &p->shared->hosts.h[h];
        const char *id = *ph->host ? ph->host : ph->hostaddr;
        if (*id == '\0' || strstr(reason, id) == NULL)
            snprintf(why, sizeof why, "%s: %s", poolhosts_name(p, h), reason);
        if (p->hosts[h].failures == 0 || p->hosts[h].last_result != (reached ? 1 : -1))
            log_info("pool %s: %s", p->cfg.name, why);
        host_backoff(p, h, reached);
        if (trial || poolhosts_choose(p) >= 0) {
            if (!trial) start_connect(p);
            return;
        }
        p->next_connect_ms = poolhosts_earliest_retry(p);
    } else {
        if (h >= 0) POKE(p->hosts[h].last_result, -1);
        unsigned shift = p->connect_failures + 1 < 7 ? (unsigned)p->connect_failures + 1 : 7;
        uint64_t backoff = (uint64_t)50 << shift;
        if (backoff > BACKOFF_MAX_MS) backoff = BACKOFF_MAX_MS;
        p->next_connect_ms = now_ms() + backoff / 2 + (uint64_t)rand() % (backoff / 2 + 1);
    }
    p->connect_failures++;
    /* several hosts take turns with their reasons: each host's changes were logged above */
    if (p->connect_failures == 1 || (pool_nhosts(p) == 1 && strcmp(p->last_error, why) != 0))
        log_warn("pool %s: cannot connect: %s", p->cfg.name, why);
    snprintf(p->last_error, sizeof p->last_error, "%.*s", (int)sizeof p->last_error - 1, why);
    if (usable(p) == 0) set_down(p);
}

static const struct pgconn_events conn_events;

/* Starts a connect to host h (one of several: its host, address and port override the URL's, and
 * the pool checks the role itself once connected). */
static void open_conn(struct pool *p, int h, bool trial)
{
    const char *keys[5], *vals[5];
    int k = 0;
    if (pool_nhosts(p) > 1) {
        const struct pg_host *ph = &p->shared->hosts.h[h];
        if (*ph->host) keys[k] = "host", vals[k++] = ph->host;
        if (*ph->hostaddr) keys[k] = "hostaddr", vals[k++] = ph->hostaddr;
        if (*ph->port) keys[k] = "port", vals[k++] = ph->port;
        keys[k] = "target_session_attrs", vals[k++] = "any";
    }
    keys[k] = vals[k] = NULL;
    char err[256];
    struct pgconn *c = pgconn_connect(p->loop, &p->cfg, &p->connect_timeout, &p->flush_timeout, keys, vals,
                                      &conn_events, p, err, sizeof err);
    if (c == NULL) {
        connect_failed(p, h, trial, false, err);
        return;
    }
    c->host = h;
    c->trial = trial;
    p->hosts[h].connecting++;
    list_add(p, PGCONN_CONNECTING, c);
}

static void start_connect(struct pool *p)
{
    if (p->closing || p->conns[PGCONN_CONNECTING].n >= MAX_CONNECTING || now_ms() < p->next_connect_ms)
        return;
    if (total(p) - p->nretiring >= p->cfg.pool_size + p->cfg.max_overflow) return;
    int h = poolhosts_choose(p);
    if (h < 0) {
        p->next_connect_ms = poolhosts_earliest_retry(p); /* every host waits out its backoff */
        return;
    }
    open_conn(p, h, false);
}

/* After a trial connect found host h back: one idle connection of the busiest host goes, so that
 * the connections spread again. */
static void rebalance(struct pool *p, int h)
{
    int most = -1;
    for (int i = 0; i < pool_nhosts(p); i++)
        if (i != h && (most < 0 || p->hosts[i].conns > p->hosts[most].conns)) most = i;
    if (most < 0 || p->hosts[most].conns <= p->hosts[h].conns + 1) return;
    for (struct pgconn *c = p->conns[PGCONN_IDLE].head; c; c = c->next)
        if (c->host == most) {
            drop(p, c);
            return;
        }
}

/* The server of a new connection, by the role it reports: true when it may serve. A mismatch
 * is dropped and counts as a failed connect to its host. */
static bool accept_role(struct pool *p, struct pgconn *c)
{
    c->role = pg_role_of(c->pg);
    poolhosts_observe(p, c->host, (enum pg_role)c->role);
    if (pg_target_accepts(p->target, c->pg)) return true;
    if (p->target == PG_TARGET_PREFER_STANDBY && !poolhosts_standby_possible(p, c->host)) {
        c->fallback = true; /* every other host was tried: the primary serves meanwhile */
        return true;
    }
    int h = c->host;
    bool trial = c->trial;
    char why[160];
    snprintf(why, sizeof why, "%s is a %s, not what target_session_attrs=%s asks for", poolhosts_name(p, h),
             c->role == PG_ROLE_STANDBY   ? "standby"
             : c->role == PG_ROLE_PRIMARY ? "primary"
                                          : "read-only server",
             pg_target_name(p->target));
    drop(p, c);
    connect_failed(p, h, trial, true, why);
    return false;
}

static void conn_ready(struct pool *p, struct pgconn *c)
{
    int h = c->host;
    p->hosts[h].connecting--;
    if (!accept_role(p, c)) {
        dispatch(p);
        return;
    }
    POKE(p->hosts[h].conns, p->hosts[h].conns + 1);
    c->host_counted = true;
    p->hosts[h].failures = 0;
    p->hosts[h].retry_ms = 0;
    POKE(p->hosts[h].last_result, 1);
    if (!pg_target_spreads(p->target)) p->current = h;
    if (p->connect_failures > 0) log_info("pool %s: connected again (%s)", p->cfg.name, poolhosts_name(p, h));
    if (breaker_success(p->breaker)) log_info("pool %s: circuit breaker closed", p->cfg.name);
    p->connect_failures = 0;
    p->next_connect_ms = 0;
    p->connects++;
    clear_down(p);
    c->created_ms = c->idle_since_ms = now_ms();
    if (p->cfg.pool_recycle > 0) {
        double jitter = 0.9 + 0.2 * ((double)rand() / RAND_MAX);
        c->expires_ms = c->created_ms + (uint64_t)(p->cfg.pool_recycle * 1000 * jitter);
    }
    if (c->trial) {
        c->trial = false;
        rebalance(p, h);
    }
    dispatch(p);
}

/* c closed (it is on no list any more): its in-flight jobs are resent or fail, then it is freed.
 * Lost connections do not count against the breaker: a server that went away makes the pool
 * reconnect, and wait for a server when none answers. */
static void conn_closed(struct pool *p, struct pgconn *c, enum pgconn_state from, const char *why)
{
    int h = c->host;
    bool trial = c->trial;
    forget(p, c, from);
    if (from != PGCONN_CONNECTING) {
        p->conn_lost++;
        snprintf(p->last_error, sizeof p->last_error, "%s", why);
        if (!p->closing) log_warn("pool %s: connection lost: %s", p->cfg.name, why);
    }
    /* Hand the in-flight jobs back: readonly and idempotent ones, and those never sent, are sent
     * again; the others fail, in doubt when their statement had gone out. */
    struct pgjob *failed = NULL;
    bool ended = false; /* the server ended the session at an earlier segment: later ones never ran */
    for (unsigned i = 0; i < c->nsegs; i++) {
        struct pgjob *job = pgconn_job_at(c, i);
        if (job == NULL) continue; /* a ping */
        bool rolled_back = pgconn_rolled_back_at(c, i);
        bool executed = !ended && !rolled_back && pgconn_executed_at(c, i);
        ended = ended || rolled_back;
        if (!retry_later(p, job, !executed)) {
            if (job->result) PQclear(job->result);
            job->result = NULL;
            job->conn = NULL;
            job->status = PGJOB_UNAVAILABLE;
            job->in_doubt = executed && !job->q->readonly;
            snprintf(job->errmsg, sizeof job->errmsg, "%s",
                     job->in_doubt ? "the database connection was lost after the statement was sent: it may "
                                     "or may not have been committed"
                                   : "the database connection was lost");
            job->wait.next = (struct pool_wait *)failed;
            failed = job;
        }
    }
    c->nsegs = 0;
    count_stmts(p, c, 0);
    pgconn_free(c);
    for (struct pgjob *job; (job = failed) != NULL;) {
        failed = (struct pgjob *)job->wait.next;
        job->wait.next = NULL;
        deliver(job);
    }
    if (from == PGCONN_CONNECTING)
        connect_failed(p, h, trial, false, why);
    else if (!p->closing && total(p) - p->nretiring < p->cfg.pool_size)
        start_connect(p); /* a lost server: look for one at once */
    dispatch(p);
}

/* pgconn_events.on_state: the one place a connection moves between the pool's lists. */
static void on_state(void *arg, struct pgconn *c, enum pgconn_state from, const char *why)
{
    struct pool *p = arg;
    list_del(p, from, c);
    if (c->state != PGCONN_CLOSED) list_add(p, c->state, c);
    if (from == PGCONN_CONNECTING && c->state == PGCONN_IDLE)
        conn_ready(p, c);
    else if (c->state == PGCONN_CLOSED)
        conn_closed(p, c, from, why);
}

/* Takes c out of service because its server no longer suits the pool: an idle one is closed now
 * (only when may_free), a busy one once its work is done (it takes no more meanwhile). */
static void retire(struct pool *p, struct pgconn *c, const char *why, bool may_free)
{
    if (c->retiring) return;
    p->role_closes++;
    log_warn("pool %s: closing a connection to %s: %s", p->cfg.name, poolhosts_name(p, c->host), why);
    if (may_free && c->state == PGCONN_IDLE) {
        drop(p, c);
        start_connect(p);
        return;
    }
    c->retiring = true;
    p->nretiring++;
}

/* Reads the role c's server reports now (after each result, and each ping of an idle
 * connection). A server that no longer suits the pool has its connection retired. Returns false
 * when c was closed. */
static bool check_role(struct pool *p, struct pgconn *c)
{
    enum pg_role r = pg_role_of(c->pg);
    if ((int)r != c->role) {
        c->role = r;
        poolhosts_observe(p, c->host, r);
    }
    if (c->retiring || p->target == PG_TARGET_ANY) return true;
    if (pg_target_accepts(p->target, c->pg)) {
        c->fallback = false;
        return true;
    }
    if (p->target == PG_TARGET_PREFER_STANDBY && !poolhosts_standby_up(p, c->host)) {
        c->fallback = true;
        return true;
    }
    if (pool_nhosts(p) > 1) host_backoff(p, c->host, true);
    bool idle = c->state == PGCONN_IDLE;
    retire(p, c,
           r == PG_ROLE_STANDBY   ? "the server is now a standby"
           : r == PG_ROLE_PRIMARY ? "the server is now a primary"
                                  : "the server is now read-only",
           true);
    return !idle;
}

/* pgconn_events.on_room: the server's role is checked; an idle connection past its age, left
 * inside a transaction, or retiring, goes; then whatever waits gets a turn. */
static void on_room(void *arg, struct pgconn *c)
{
    struct pool *p = arg;
    count_stmts(p, c, c->stmts.count);
    if (check_role(p, c) && c->state == PGCONN_IDLE && c->nsegs == 0) {
        bool expired = c->expires_ms && now_ms() >= c->expires_ms;
        bool dirty = PQtransactionStatus(c->pg) != PQTRANS_IDLE;
        if (expired || dirty || c->retiring) {
            if (dirty) log_warn("pool %s: discarding a connection left inside a transaction", p->cfg.name);
            drop(p, c);
            start_connect(p);
        }
    }
    dispatch(p);
}

static const struct pgconn_events conn_events = {on_state, on_room, on_job_done};

/* --- dispatching -------------------------------------------------------------------------- */

/* An idle connection first (the one idle most recently: its backend is warm); else, while the
 * pool may still grow, none (the job waits for a new connection or a free one, so a burst spreads
 * over overflow connections); else the pipelined connection with the fewest jobs. A lease only
 * ever takes an idle connection. */
static struct pgconn *pick(struct pool *p, uint64_t now, bool whole)
{
    for (struct pgconn *c = p->conns[PGCONN_IDLE].head; c; c = c->next)
        if (!c->retiring && (!whole || c->nsegs == 0)) return c; /* a lease waits out a ping */
    if (whole || total(p) - p->nretiring < p->cfg.pool_size + p->cfg.max_overflow) return NULL;
    struct pgconn *best = NULL;
    for (struct pgconn *c = p->conns[PGCONN_PIPELINE].head; c; c = c->next)
        if (pgconn_has_room(c, now) && (best == NULL || c->njobs < best->njobs)) best = c;
    return best;
}

/* Hands c to what waited: a job is pipelined, a lease gets the whole connection. */
static void start(struct pool *p, struct pgconn *c, struct pool_wait *w)
{
    histogram_observe(&p->acquire, (double)(now_us() - w->queued_us) / 1e6);
    end_wait(w);
    if (!w->whole) {
        pgconn_start(c, (struct pgjob *)w); /* may lose c, which re-enters dispatch */
        return;
    }
    if (pgconn_lease(c) != 0) {
        enqueue(p, w, true);
        pgconn_close(c);
        return;
    }
    struct pool_lease *lease = (struct pool_lease *)w;
    lease->cb(lease->arg, c, NULL);
}

static void dispatch(struct pool *p)
{
    uint64_t now = now_us();
    while (p->qhead != NULL) {
        struct pgconn *c = pick(p, now, p->qhead->whole);
        if (c == NULL) break;
        struct pool_wait *w = p->qhead;
        unqueue(p, w);
        start(p, c, w); /* the loop re-reads everything: start may change the lists */
    }
    if (p->qhead != NULL) start_connect(p);
}

/* Whether the pool takes another waiter now. Returns 0, or -SLUICE_EBUSY with the reason in err. */
static int admit(struct pool *p, char *err, size_t errlen)
{
    if (p->closing) {
        snprintf(err, errlen, "the gateway is shutting down");
        return -SLUICE_EBUSY;
    }
    /* While no server is usable the work waits for one (failover_wait_ms): the breaker judges
     * a server that answers, and there is none. */
    bool down = p->down_since_us != 0;
    if (!down && !breaker_allow(p->breaker, &p->breaker_policy, now_ms())) {
        snprintf(err, errlen, "circuit breaker open for pool %s", p->cfg.name);
        return -SLUICE_EBUSY;
    }
    if (down && p->cfg.failover_wait_ms == 0) {
        snprintf(err, errlen, "database unavailable: %.150s", p->last_error);
        return -SLUICE_EBUSY;
    }
    if (p->qlen >= p->cfg.max_queue) {
        snprintf(err, errlen, "too many requests waiting for pool %s", p->cfg.name);
        return -SLUICE_EBUSY;
    }
    return 0;
}

/* Straight to a connection when one fits and nobody waits; else into the queue. */
static void wait_or_start(struct pool *p, struct pool_wait *w)
{
    w->pool = p;
    w->queued_us = now_us();
    w->failover_since_us = 0;
    struct pgconn *c = p->qhead == NULL ? pick(p, w->queued_us, w->whole) : NULL;
    if (c != NULL) {
        start(p, c, w);
        return;
    }
    enqueue(p, w, false);
    dispatch(p);
}

int pool_submit(struct pool *p, struct pgjob *job)
{
    job->wait.pool = p;
    job->wait.whole = false;
    int rc = admit(p, job->errmsg, sizeof job->errmsg);
    if (rc != 0) return rc;
    wait_or_start(p, &job->wait);
    return 0;
}

int pool_acquire(struct pool *p, struct pool_lease *lease, pool_lease_cb cb, void *arg, char *err,
                 size_t errlen)
{
    memset(lease, 0, sizeof *lease);
    lease->wait.pool = p;
    lease->wait.whole = true;
    lease->cb = cb;
    lease->arg = arg;
    int rc = admit(p, err, errlen);
    if (rc != 0) return rc;
    wait_or_start(p, &lease->wait);
    return 0;
}

void pool_cancel_lease(struct pool_lease *lease)
{
    if (lease->wait.pool != NULL && h2o_timeout_is_linked(&lease->wait.entry))
        unqueue(lease->wait.pool, &lease->wait);
}

void pool_abandon(struct pgjob *job)
{
    struct pool *p = job->wait.pool;
    if (p != NULL && h2o_timeout_is_linked(&job->wait.entry)) {
        unqueue(p, &job->wait); /* waiting for a connection, or for a retry */
        if (h2o_timeout_is_linked(&job->wait.entry)) h2o_timeout_unlink(&job->wait.entry);
        pgjob_free(job);
        return;
    }
    job->owner = NULL; /* freed when its result arrives */
    /* Cancel it on the server when it is what the connection runs now and nothing of another
     * request is pipelined behind it (a cancel hits whatever statement is running). */
    struct pgconn *c = job->conn;
    if (c != NULL && c->state == PGCONN_PIPELINE && c->nsegs == 1 && pgconn_job_at(c, 0) == job)
        cancel_request(c->pg);
}

/* --- janitor ------------------------------------------------------------------------------ */

/* A standby pool with several hosts: a prefer-standby pool that fell back to the primary goes
 * back to a standby that is up again, and a host whose connect failed is tried again (after its
 * backoff) with one connection beyond the pool's size, which takes over from the busiest host. */
static void spread_again(struct pool *p, uint64_t now)
{
    if (p->target == PG_TARGET_PREFER_STANDBY)
        for (struct pgconn *c = p->conns[PGCONN_IDLE].head, *next; c; c = next) {
            next = c->next;
            if (c->fallback && poolhosts_standby_up(p, c->host)) {
                retire(p, c, "a standby is up again", true);
                return; /* one at a time: the replacement goes to the standby */
            }
        }
    if (p->conns[PGCONN_CONNECTING].n > 0 || p->down_since_us || total(p) - p->nretiring < p->cfg.pool_size)
        return;
    for (int i = 0; i < pool_nhosts(p); i++) {
        struct pool_host *ph = &p->hosts[i];
        /* only a host whose last connect failed: with fewer connections than hosts, the others
         * are simply not needed */
        if (ph->last_result < 0 && ph->conns == 0 && ph->connecting == 0 && ph->retry_ms <= now &&
            !poolhosts_mismatch(p, i)) {
            open_conn(p, i, true);
            return;
        }
    }
}

static void on_janitor(h2o_timeout_entry_t *entry)
{
    struct pool *p = container_of(entry, struct pool, janitor);
    uint64_t now = now_ms();
    for (struct pgconn *c = p->conns[PGCONN_IDLE].head, *next; c; c = next) {
        next = c->next;
        bool surplus = (total(p) > p->cfg.pool_size &&
                        now - c->idle_since_ms >= (uint64_t)(p->cfg.idle_timeout * 1000)) ||
                       total(p) > p->cfg.pool_size + p->cfg.max_overflow; /* after a resize down */
        bool expired = c->expires_ms && now >= c->expires_ms;
        if (surplus || expired)
            drop(p, c);
        else if (p->target != PG_TARGET_ANY && now - c->checked_ms >= ROLE_CHECK_MS)
            pgconn_ping(c); /* may lose c: next was read first */
    }
    if (pg_target_spreads(p->target) && pool_nhosts(p) > 1) spread_again(p, now);
    if (total(p) - p->nretiring < p->cfg.pool_size || p->qhead) start_connect(p);
    h2o_timeout_link(p->loop, &p->janitor_timeout, &p->janitor);
}

static int share(int total, int index, int n)
{
    return total / n + (index < total % n ? 1 : 0);
}

void pool_init(struct pool *p, const struct pool_config *cfg, int index, int nworkers, h2o_loop_t *loop,
               struct breaker *breaker)
{
    memset(p, 0, sizeof *p);
    p->breaker = breaker;
    p->shared = poolhosts_shared(breaker, cfg->url);
    p->target = p->shared->hosts.target;
    p->current = -1;
    p->next_host = (unsigned)index; /* the workers start their round-robin at different hosts */
    breaker_policy_default(&p->breaker_policy);
    retry_policy_default(&p->retry_policy);
    for (int i = 0; i < 8; i++) h2o_timeout_init(loop, &p->retry_timeouts[i], retry_steps_ms[i]);
    p->cfg = *cfg;
    p->cfg.pool_size = share(cfg->pool_size, index, nworkers);
    if (p->cfg.pool_size < 1) p->cfg.pool_size = 1;
    p->cfg.max_overflow = share(cfg->max_overflow, index, nworkers);
    p->loop = loop;
    p->wait_timeout = xmalloc(sizeof *p->wait_timeout);
    h2o_timeout_init(loop, p->wait_timeout, (uint64_t)(cfg->pool_timeout * 1000));
    h2o_timeout_init(loop, &p->connect_timeout, (uint64_t)(cfg->connect_timeout * 1000));
    h2o_timeout_init(loop, &p->flush_timeout, 0);
    h2o_timeout_init(loop, &p->janitor_timeout, JANITOR_MS);
    h2o_timeout_init(loop, &p->failover_tick_timeout, FAILOVER_TICK_MS);
    p->failover_tick.cb = on_failover_tick;
    p->janitor.cb = on_janitor;
    h2o_timeout_link(loop, &p->janitor_timeout, &p->janitor);
    for (int i = 0; i < p->cfg.pool_size; i++) start_connect(p);
}

int pool_reconfigure(struct pool *p, const struct pool_config *cfg, int index, int nworkers)
{
    int restart = 0;
    if (strcmp(cfg->url, p->cfg.url) != 0) {
        log_warn("pool %s: a new url takes effect after a restart", p->cfg.name);
        restart++;
    }
    if (cfg->connect_timeout != p->cfg.connect_timeout) {
        log_warn("pool %s: a new connect_timeout takes effect after a restart", p->cfg.name);
        restart++;
    }
    if (cfg->pool_timeout != p->cfg.pool_timeout) {
        /* Jobs already waiting keep their deadline in the old queue, which stays registered with
         * the loop; new ones use the new duration. */
        p->wait_timeout = xmalloc(sizeof *p->wait_timeout);
        h2o_timeout_init(p->loop, p->wait_timeout, (uint64_t)(cfg->pool_timeout * 1000));
    }
    char *name = p->cfg.name, *url = p->cfg.url;
    double connect_timeout = p->cfg.connect_timeout;
    p->cfg = *cfg;
    p->cfg.name = name;
    p->cfg.url = url;
    p->cfg.connect_timeout = connect_timeout;
    p->cfg.pool_size = share(cfg->pool_size, index, nworkers);
    if (p->cfg.pool_size < 1) p->cfg.pool_size = 1;
    p->cfg.max_overflow = share(cfg->max_overflow, index, nworkers);
    /* A smaller pool: idle connections above the new size go now, busy ones when they finish
     * (the janitor reaps surplus once idle). */
    while (p->conns[PGCONN_IDLE].head && total(p) > p->cfg.pool_size + p->cfg.max_overflow)
        drop(p, p->conns[PGCONN_IDLE].head);
    return restart;
}

void pool_close(struct pool *p)
{
    p->closing = true;
    while (p->qhead) {
        struct pool_wait *w = p->qhead;
        unqueue(p, w);
        fail_wait(w, "the gateway is shutting down");
    }
    for (int s = 0; s < PGCONN_NSTATES; s++)
        while (p->conns[s].head) pgconn_close(p->conns[s].head);
    if (h2o_timeout_is_linked(&p->janitor)) h2o_timeout_unlink(&p->janitor);
    if (h2o_timeout_is_linked(&p->failover_tick)) h2o_timeout_unlink(&p->failover_tick);
    if (h2o_linklist_is_empty(&p->wait_timeout->_entries)) { /* the loop has stopped: nothing waits */
        h2o_timeout_dispose(p->loop, p->wait_timeout);
        free(p->wait_timeout);
        p->wait_timeout = NULL;
    }
    /* Jobs waiting for a retry fail now; then the timeouts can leave the loop. */
    for (int i = 0; i < 8; i++)
        while (!h2o_linklist_is_empty(&p->retry_timeouts[i]._entries)) {
            h2o_timeout_entry_t *e =
                H2O_STRUCT_FROM_MEMBER(h2o_timeout_entry_t, _link, p->retry_timeouts[i]._entries.next);
            h2o_timeout_unlink(e);
            on_retry_due(e);
        }
}

bool pool_healthy(const struct pool *p)
{
    return PEEK(p->down_since_us) == 0;
}

int pool_retry_after(const struct pool *p)
{
    return breaker_retry_after(p->breaker, &p->breaker_policy, now_ms());
}
