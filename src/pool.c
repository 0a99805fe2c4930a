/* pool.c — one named pool's share on one worker. Jobs wait in a FIFO bounded by pool_timeout
 * and max_queue; connections come and go with backoff; the janitor refills, reaps and recycles. */
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

struct pgjob *pgjob_new(struct query_def *q, void *owner)
{
    struct pgjob *job = xcalloc(1, sizeof *job);
    job->q = q;
    if (q) q->reg->refs++; /* its definitions outlive a reload while it runs */
    job->owner = owner;
    int n = q ? q->nparams : 0;
    job->param_off = xmalloc((size_t)(n ? n : 1) * sizeof *job->param_off);
    for (int i = 0; i < n; i++) job->param_off[i] = -1;
    buf_init(&job->params);
    return job;
}

void pgjob_free(struct pgjob *job)
{
    if (job->q) job->q->reg->refs--;
    if (job->result) PQclear(job->result);
    buf_free(&job->params);
    free(job->param_off);
    free(job);
}

void pgjob_param(struct pgjob *job, int index, const char *text, size_t len)
{
    if (text == NULL) {
        job->param_off[index] = -1;
        return;
    }
    job->param_off[index] = (int)job->params.len;
    buf_append(&job->params, text, len);
    buf_putc(&job->params, '\0');
}

static void on_wait_timeout(h2o_timeout_entry_t *entry);

/* --- delivering --------------------------------------------------------------------------- */

static void deliver(struct pgjob *job)
{
    if (job->owner != NULL) {
        job->on_done(job);
        return;
    }
    if (job->conn != NULL) pgconn_release(job->conn);
    pgjob_free(job);
}

static const uint32_t retry_steps_ms[8] = {5, 10, 20, 40, 80, 160, 320, 640};

static void on_retry_due(h2o_timeout_entry_t *entry)
{
    struct pgjob *job = container_of(entry, struct pgjob, wait_entry);
    struct pool *p = job->pool;
    if (p->closing) {
        job->status = PGJOB_UNAVAILABLE;
        snprintf(job->errmsg, sizeof job->errmsg, "the gateway is shutting down");
        deliver(job);
        return;
    }
    job->queued_us = now_us();
    job->next = NULL;
    if (p->qtail)
        p->qtail->next = job;
    else
        p->qhead = job;
    p->qtail = job;
    p->qlen++;
    job->wait_entry.cb = on_wait_timeout;
    h2o_timeout_link(p->loop, p->wait_timeout, &job->wait_entry);
    dispatch(p);
}

/* Resends a readonly or idempotent job after a backoff with full jitter. Returns false when the
 * policy, the attempts or the request deadline do not allow it. */
static bool retry_later(struct pool *p, struct pgjob *job)
{
    if (job->owner == NULL || p->closing || job->q == NULL || !(job->q->readonly || job->q->idempotent) ||
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
        on_retry_due(&job->wait_entry);
        return true;
    }
    job->wait_entry.cb = on_retry_due;
    h2o_timeout_link(p->loop, &p->retry_timeouts[i], &job->wait_entry);
    return true;
}

void pool_job_done(struct pool *p, struct pgjob *job)
{
    job->conn = NULL;
    if (job->status == PGJOB_DB_ERROR) {
        const char *state = PQresultErrorField(job->result, PG_DIAG_SQLSTATE);
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

static void unqueue(struct pool *p, struct pgjob *job)
{
    struct pgjob **pp = &p->qhead, *prev = NULL;
    while (*pp && *pp != job) prev = *pp, pp = &(*pp)->next;
    if (*pp == NULL) return;
    *pp = job->next;
    if (p->qtail == job) p->qtail = prev;
    job->next = NULL;
    p->qlen--;
    if (h2o_timeout_is_linked(&job->wait_entry)) h2o_timeout_unlink(&job->wait_entry);
}

static void on_wait_timeout(h2o_timeout_entry_t *entry)
{
    struct pgjob *job = container_of(entry, struct pgjob, wait_entry);
    struct pool *p = job->pool;
    unqueue(p, job);
    job->status = PGJOB_UNAVAILABLE;
    snprintf(job->errmsg, sizeof job->errmsg, "no database connection within pool_timeout (%gs)",
             p->cfg.pool_timeout);
    deliver(job);
}

static void enqueue(struct pool *p, struct pgjob *job, bool front)
{
    job->pool = p;
    if (front) {
        job->next = p->qhead;
        p->qhead = job;
        if (p->qtail == NULL) p->qtail = job;
    } else {
        job->next = NULL;
        if (p->qtail)
            p->qtail->next = job;
        else
            p->qhead = job;
        p->qtail = job;
    }
    p->qlen++;
    job->queued_us = now_us();
    job->wait_entry.cb = on_wait_timeout;
    h2o_timeout_link(p->loop, p->wait_timeout, &job->wait_entry);
}

/* --- connections -------------------------------------------------------------------------- */

static void link_conn(struct pool *p, struct pgconn *c)
{
    c->prev = NULL;
    c->next = p->conns;
    if (p->conns) p->conns->prev = c;
    p->conns = c;
    p->nconns++;
}

static void unlink_conn(struct pool *p, struct pgconn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    p->nconns--;
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

/* A connect failed and nothing else can serve: the jobs waiting for a connection fail now
 * instead of at pool_timeout. */
static void fail_waiting_if_down(struct pool *p)
{
    if (p->nconns > 0 || p->nconnecting > 0) return;
    while (p->qhead) {
        struct pgjob *job = p->qhead;
        unqueue(p, job);
        job->status = PGJOB_UNAVAILABLE;
        snprintf(job->errmsg, sizeof job->errmsg, "database unavailable: %.150s", p->last_error);
        deliver(job);
    }
}

static void start_connect(struct pool *p)
{
    if (p->closing || p->nconnecting >= MAX_CONNECTING || now_ms() < p->next_connect_ms) return;
    if (p->nconns >= p->cfg.pool_size + p->cfg.max_overflow) return;
    char err[256];
    struct pgconn *c = pgconn_connect(p, err, sizeof err);
    if (c == NULL) {
        note_connect_failure(p, err);
        fail_waiting_if_down(p);
        return;
    }
    link_conn(p, c);
    p->nconnecting++;
}

void pool_conn_ready(struct pool *p, struct pgconn *c)
{
    p->nconnecting--;
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

/* Closes a connection that has nothing in flight. */
static void drop(struct pool *p, struct pgconn *c)
{
    unlink_conn(p, c);
    pgconn_free(c);
}

void pool_conn_failed(struct pool *p, struct pgconn *c, const char *why)
{
    bool was_up = c->created_ms != 0;
    if (!was_up) {
        p->nconnecting--;
        note_connect_failure(p, why);
    } else {
        p->conn_lost++;
        snprintf(p->last_error, sizeof p->last_error, "%s", why);
        if (!p->closing) log_warn("pool %s: connection lost: %s", p->cfg.name, why);
        /* Only a loss that fails requests counts: an idle connection the server ended (a terminated
         * backend, idle_session_timeout) is simply replaced. */
        if (!p->closing && c->njobs > 0 && strcmp(why, "discarded by its owner") != 0 &&
            breaker_failure(p->breaker, &p->breaker_policy, now_ms()))
            log_warn("pool %s: circuit breaker open", p->cfg.name);
    }
    /* Hand the in-flight jobs back: readonly ones are resent once, the others fail. */
    struct pgjob *failed = NULL;
    for (unsigned i = 0; i < c->nsegs; i++) {
        struct pgjob *job = c->segs[(c->seg_head + i) % c->seg_cap].job;
        if (!retry_later(p, job)) {
            if (job->result) PQclear(job->result);
            job->result = NULL;
            job->conn = NULL;
            job->status = PGJOB_UNAVAILABLE;
            snprintf(job->errmsg, sizeof job->errmsg, "the database connection was lost");
            job->next = failed;
            failed = job;
        }
    }
    c->nsegs = 0;
    if (c->njobs > 0) p->nbusy--;
    drop(p, c);
    for (struct pgjob *job; (job = failed) != NULL;) {
        failed = job->next;
        deliver(job);
    }
    if (!was_up) fail_waiting_if_down(p);
    dispatch(p);
}

void pool_conn_has_room(struct pool *p, struct pgconn *c)
{
    if (c->njobs == 0) {
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

/* --- dispatching -------------------------------------------------------------------------- */

/* An idle connection first; else, while the pool may still grow, none (the job waits for a new
 * connection or a free one, so a burst spreads over overflow connections); else the pipelined
 * connection with the fewest jobs. */
static struct pgconn *pick(struct pool *p, uint64_t now, bool exclusive)
{
    struct pgconn *best = NULL;
    for (struct pgconn *c = p->conns; c; c = c->next)
        if (c->state == PGCONN_READY && c->njobs == 0) return c;
    if (exclusive || p->nconns < p->cfg.pool_size + p->cfg.max_overflow) return NULL;
    for (struct pgconn *c = p->conns; c; c = c->next)
        if (pgconn_has_room(c, now) && (best == NULL || c->njobs < best->njobs)) best = c;
    return best;
}

/* Hands job to c: pipelined, or the whole connection for an exclusive job. */
static void start(struct pool *p, struct pgconn *c, struct pgjob *job)
{
    histogram_observe(&p->acquire, (double)(now_us() - job->queued_us) / 1e6);
    if (!job->exclusive) {
        pgconn_start(c, job); /* may lose c, which re-enters dispatch */
        return;
    }
    if (pgconn_take(c) != 0) {
        enqueue(p, job, true);
        pgconn_close(c);
        return;
    }
    job->conn = c;
    job->status = PGJOB_OK;
    deliver(job);
}

static void dispatch(struct pool *p)
{
    uint64_t now = now_us();
    while (p->qhead != NULL) {
        struct pgconn *c = pick(p, now, p->qhead->exclusive);
        if (c == NULL) break;
        struct pgjob *job = p->qhead;
        unqueue(p, job);
        start(p, c, job); /* the loop re-reads everything: start may change the lists */
    }
    if (p->qhead != NULL) start_connect(p);
}

int pool_submit(struct pool *p, struct pgjob *job)
{
    job->pool = p;
    if (p->closing) {
        snprintf(job->errmsg, sizeof job->errmsg, "the gateway is shutting down");
        return -SLUICE_EBUSY;
    }
    if (!breaker_allow(p->breaker, &p->breaker_policy, now_ms())) {
        snprintf(job->errmsg, sizeof job->errmsg, "circuit breaker open for pool %s", p->cfg.name);
        return -SLUICE_EBUSY;
    }
    if (p->connect_failures > 0 && p->nconns == p->nconnecting) {
        if (breaker_state(p->breaker) != BREAKER_HALF_OPEN) {
            snprintf(job->errmsg, sizeof job->errmsg, "database unavailable: %.150s", p->last_error);
            return -SLUICE_EBUSY;
        }
        p->next_connect_ms = 0; /* the half-open probe: try a connection now */
    }
    if (p->qlen >= p->cfg.max_queue) {
        snprintf(job->errmsg, sizeof job->errmsg, "too many requests waiting for pool %s", p->cfg.name);
        return -SLUICE_EBUSY;
    }
    /* Straight to a connection when one has room and nobody waits. */
    struct pgconn *c = p->qhead == NULL ? pick(p, now_us(), job->exclusive) : NULL;
    if (c != NULL) {
        job->queued_us = now_us();
        start(p, c, job);
        return 0;
    }
    enqueue(p, job, false);
    dispatch(p);
    return 0;
}

void pool_abandon(struct pgjob *job)
{
    struct pool *p = job->pool;
    if (p != NULL && h2o_timeout_is_linked(&job->wait_entry)) {
        unqueue(p, job); /* waiting for a connection, or for a retry */
        if (h2o_timeout_is_linked(&job->wait_entry)) h2o_timeout_unlink(&job->wait_entry);
        pgjob_free(job);
        return;
    }
    job->owner = NULL; /* freed when its result arrives */
    /* Cancel it on the server when it is what the connection runs now and nothing of another
     * request is pipelined behind it (a cancel hits whatever statement is running). */
    struct pgconn *c = job->conn;
    if (c != NULL && !job->exclusive && c->state == PGCONN_READY && c->nsegs == 1 &&
        c->segs[c->seg_head].job == job)
        cancel_request(c->pg);
}

/* --- janitor ------------------------------------------------------------------------------ */

static void on_janitor(h2o_timeout_entry_t *entry)
{
    struct pool *p = container_of(entry, struct pool, janitor);
    uint64_t now = now_ms();
    for (struct pgconn *c = p->conns, *next; c; c = next) {
        next = c->next;
        if (c->state != PGCONN_READY || c->njobs != 0) continue;
        bool surplus = (p->nconns > p->cfg.pool_size &&
                        now - c->idle_since_ms >= (uint64_t)(p->cfg.idle_timeout * 1000)) ||
                       p->nconns > p->cfg.pool_size + p->cfg.max_overflow; /* after a resize down */
        bool expired = c->expires_ms && now >= c->expires_ms;
        if (surplus || expired) drop(p, c);
    }
    if (p->nconns < p->cfg.pool_size || p->qhead) start_connect(p);
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
    for (struct pgconn *c = p->conns, *next; c && p->nconns > p->cfg.pool_size + p->cfg.max_overflow;
         c = next) {
        next = c->next;
        if (c->state == PGCONN_READY && c->njobs == 0) drop(p, c);
    }
    return restart;
}

void pool_close(struct pool *p)
{
    p->closing = true;
    while (p->qhead) {
        struct pgjob *job = p->qhead;
        unqueue(p, job);
        job->status = PGJOB_UNAVAILABLE;
        snprintf(job->errmsg, sizeof job->errmsg, "the gateway is shutting down");
        deliver(job);
    }
    while (p->conns) pool_conn_failed(p, p->conns, "closed");
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
    for (const struct pgconn *c = p->conns; c; c = c->next)
        if (c->state == PGCONN_READY) return true;
    return p->connect_failures == 0;
}

int pool_retry_after(const struct pool *p)
{
    return breaker_retry_after(p->breaker, &p->breaker_policy, now_ms());
}
