/* pool.c — one named pool's share on one worker. Jobs and leases wait in one FIFO bounded by
 * pool_timeout and max_queue; a connection sits on the list of its state (pgconn_events tell
 * the pool of every change); connections come and go with backoff; the janitor refills, reaps
 * and recycles. */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "endpoint.h"
#include "log.h"
#include "pgconn.h"
#include "util.h"

#define JANITOR_MS     250
#define MAX_CONNECTING 2    /* connects in flight per pool and worker: no thundering herd */
#define BACKOFF_MAX_MS 1000 /* a restarted server is back in service within about a second */

static void dispatch(struct pool *p);
static void on_wait_timeout(h2o_timeout_entry_t *entry);

static int total(const struct pool *p)
{
    int n = 0;
    for (int s = 0; s < PGCONN_NSTATES; s++) n += p->conns[s].n;
    return n;
}

/* --- the wait queue ----------------------------------------------------------------------- */

static void enqueue(struct pool *p, struct pool_wait *w, bool front)
{
    w->pool = p;
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
    if (job->owner != NULL)
        job->on_done(job);
    else
        pgjob_free(job); /* its owner left */
}

/* Ends a wait without a connection: a job gets PGJOB_UNAVAILABLE, a lease its callback. */
static void fail_wait(struct pool_wait *w, const char *msg)
{
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

/* Resends a readonly or idempotent job after a backoff with full jitter. Returns false when the
 * policy, the attempts or the request deadline do not allow it. */
static bool retry_later(struct pool *p, struct pgjob *job)
{
    if (job->owner == NULL || p->closing || !(job->q->readonly || job->q->idempotent) ||
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

/* pgconn_events.on_job_done: counts what the result says of the server, then delivers the job
 * or resends it. */
static void on_job_done(void *arg, struct pgjob *job)
{
    struct pool *p = arg;
    if (job->status == PGJOB_DB_ERROR) {
        const char *state = PQresultErrorField(job->result, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "40P01") == 0) p->deadlocks++;
        if (retry_sqlstate_connection(state)) {
            if (breaker_failure(p->breaker, &p->breaker_policy, now_ms()))
                log_warn("pool %s: circuit breaker open", p->cfg.name);
        } else if (breaker_success(p->breaker)) { /* the server answered: it is reachable */
            log_info("pool %s: circuit breaker closed", p->cfg.name);
        }
        if (retry_sqlstate_transient(state) && retry_later(p, job)) return;
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

/* Frees a connection that has nothing in flight (IDLE or CONNECTING) without callbacks. */
static void drop(struct pool *p, struct pgconn *c)
{
    list_del(p, c->state, c);
    count_stmts(p, c, 0);
    pgconn_free(c);
}

static void note_connect_failure(struct pool *p, const char *why)
{
    p->connect_failures++;
    p->connect_errors++;
    if (breaker_failure(p->breaker, &p->breaker_policy, now_ms()))
        log_warn("pool %s: circuit breaker open after repeated connection failures", p->cfg.name);
    unsigned shift = p->connect_failures < 7 ? (unsigned)p->connect_failures : 7;
    uint64_t backoff = (uint64_t)50 << shift;
    if (backoff > BACKOFF_MAX_MS) backoff = BACKOFF_MAX_MS;
    p->next_connect_ms = now_ms() + backoff / 2 + (uint64_t)rand() % (backoff / 2 + 1);
    if (strcmp(p->last_error, why) != 0 || p->connect_failures == 1)
        log_warn("pool %s: cannot connect: %s", p->cfg.name, why);
    snprintf(p->last_error, sizeof p->last_error, "%s", why);
}

/* A connect failed and nothing else can serve: what waits for a connection fails now instead
 * of at pool_timeout. */
static void fail_waiting_if_down(struct pool *p)
{
    if (total(p) > 0) return;
    char msg[200];
    snprintf(msg, sizeof msg, "database unavailable: %.150s", p->last_error);
    while (p->qhead) {
        struct pool_wait *w = p->qhead;
        unqueue(p, w);
        fail_wait(w, msg);
    }
}

static const struct pgconn_events conn_events;

static void start_connect(struct pool *p)
{
    if (p->closing || p->conns[PGCONN_CONNECTING].n >= MAX_CONNECTING || now_ms() < p->next_connect_ms)
        return;
    if (total(p) >= p->cfg.pool_size + p->cfg.max_overflow) return;
    char err[256];
    struct pgconn *c =
        pgconn_connect(p->loop, &p->cfg, &p->connect_timeout, &conn_events, p, err, sizeof err);
    if (c == NULL) {
        note_connect_failure(p, err);
        fail_waiting_if_down(p);
        return;
    }
    list_add(p, PGCONN_CONNECTING, c);
}

static void conn_ready(struct pool *p, struct pgconn *c)
{
    if (p->connect_failures > 0) log_info("pool %s: connected again", p->cfg.name);
    if (breaker_success(p->breaker)) log_info("pool %s: circuit breaker closed", p->cfg.name);
    p->connect_failures = 0;
    p->next_connect_ms = 0;
    p->connects++;
    c->created_ms = c->idle_since_ms = now_ms();
    if (p->cfg.pool_recycle > 0) {
        double jitter = 0.9 + 0.2 * ((double)rand() / RAND_MAX);
        c->expires_ms = c->created_ms + (uint64_t)(p->cfg.pool_recycle * 1000 * jitter);
    }
    dispatch(p);
}

/* c closed (it is on no list any more): its in-flight jobs are resent or fail, then it is freed. */
static void conn_closed(struct pool *p, struct pgconn *c, enum pgconn_state from, const char *why)
{
    if (from == PGCONN_CONNECTING) {
        note_connect_failure(p, why);
    } else {
        p->conn_lost++;
        snprintf(p->last_error, sizeof p->last_error, "%s", why);
        if (!p->closing) log_warn("pool %s: connection lost: %s", p->cfg.name, why);
        /* Only a loss that fails requests counts: an idle connection the server ended (a terminated
         * backend, idle_session_timeout) is simply replaced. */
        if (!p->closing && from != PGCONN_IDLE && strcmp(why, "discarded by its owner") != 0 &&
            breaker_failure(p->breaker, &p->breaker_policy, now_ms()))
            log_warn("pool %s: circuit breaker open", p->cfg.name);
    }
    /* Hand the in-flight jobs back: readonly ones are resent, the others fail. */
    struct pgjob *failed = NULL;
    for (unsigned i = 0; i < c->nsegs; i++) {
        struct pgjob *job = pgconn_job_at(c, i);
        if (!retry_later(p, job)) {
            if (job->result) PQclear(job->result);
            job->result = NULL;
            job->conn = NULL;
            job->status = PGJOB_UNAVAILABLE;
            snprintf(job->errmsg, sizeof job->errmsg, "the database connection was lost");
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
    if (from == PGCONN_CONNECTING) fail_waiting_if_down(p);
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

/* pgconn_events.on_room: an idle connection past its age, or left inside a transaction, goes;
 * then whatever waits gets a turn. */
static void on_room(void *arg, struct pgconn *c)
{
    struct pool *p = arg;
    count_stmts(p, c, c->stmts.count);
    if (c->state == PGCONN_IDLE) {
        bool expired = c->expires_ms && now_ms() >= c->expires_ms;
        bool dirty = PQtransactionStatus(c->pg) != PQTRANS_IDLE;
        if (expired || dirty) {
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
    if (p->conns[PGCONN_IDLE].head) return p->conns[PGCONN_IDLE].head;
    if (whole || total(p) < p->cfg.pool_size + p->cfg.max_overflow) return NULL;
    struct pgconn *best = NULL;
    for (struct pgconn *c = p->conns[PGCONN_PIPELINE].head; c; c = c->next)
        if (pgconn_has_room(c, now) && (best == NULL || c->njobs < best->njobs)) best = c;
    return best;
}

/* Hands c to what waited: a job is pipelined, a lease gets the whole connection. */
static void start(struct pool *p, struct pgconn *c, struct pool_wait *w)
{
    histogram_observe(&p->acquire, (double)(now_us() - w->queued_us) / 1e6);
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
    if (!breaker_allow(p->breaker, &p->breaker_policy, now_ms())) {
        snprintf(err, errlen, "circuit breaker open for pool %s", p->cfg.name);
        return -SLUICE_EBUSY;
    }
    if (p->connect_failures > 0 && total(p) == p->conns[PGCONN_CONNECTING].n) {
        if (breaker_state(p->breaker) != BREAKER_HALF_OPEN) {
            snprintf(err, errlen, "database unavailable: %.150s", p->last_error);
            return -SLUICE_EBUSY;
        }
        p->next_connect_ms = 0; /* the half-open probe: try a connection now */
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
        if (surplus || expired) drop(p, c);
    }
    if (total(p) < p->cfg.pool_size || p->qhead) start_connect(p);
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
    h2o_timeout_init(loop, &p->janitor_timeout, JANITOR_MS);
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
    return total(p) > p->conns[PGCONN_CONNECTING].n || p->connect_failures == 0;
}

int pool_retry_after(const struct pool *p)
{
    return breaker_retry_after(p->breaker, &p->breaker_policy, now_ms());
}
