/* test_pool.c — the pool and the connection state machine against a scripted server (fakepg):
 * every on_done and lease callback runs exactly once, connections sit on the list of their state,
 * lost connections resend readonly work and fail writes (in doubt), and nothing is left at close.
 * With two servers: a standby pool spreads over both, a read-write pool follows the primary when
 * the roles swap, and work waits out a failover (failover_wait_ms) instead of failing at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "breaker.h"
#include "endpoint.h"
#include "fakepg.h"
#include "log.h"
#include "pool.h"
#include "util.h"

/* One loop for the whole program, and pools that outlive their test: h2o 2.2.5 keeps each
 * pool's timeout queues linked into the loop, which is never destroyed. */
static h2o_loop_t *loop;
static struct pool pools[32];
static struct breaker breakers[32];
static int npools;

struct fixture {
    struct fakepg *pg, *pg2; /* pg2: a second server, for the pools with two hosts */
    struct pool *p;
    struct registry reg;
    char url[256];
};

/* What one job's owner saw: on_done must run exactly once. */
struct outcome {
    int calls;
    enum pgjob_status status;
    bool in_doubt;
    uint64_t done_ms;
    char value[32];
    char sqlstate[6];
    char errmsg[200];
};

static void on_done(struct pgjob *job)
{
    struct outcome *o = job->owner;
    o->calls++;
    o->status = job->status;
    o->in_doubt = job->in_doubt;
    o->done_ms = now_ms();
    snprintf(o->errmsg, sizeof o->errmsg, "%s", job->errmsg);
    if (job->status == PGJOB_OK && PQntuples(job->result) > 0)
        snprintf(o->value, sizeof o->value, "%s", PQgetvalue(job->result, 0, 0));
    if (job->status == PGJOB_DB_ERROR)
        snprintf(o->sqlstate, sizeof o->sqlstate, "%s", PQresultErrorField(job->result, PG_DIAG_SQLSTATE));
    pgjob_free(job);
}

static int bind_none(struct pgjob *job)
{
    job->bound = true;
    return 0;
}

/* Runs the loop until *done is non-zero or ms pass. Returns *done. */
static int run_until(const int *done, int ms)
{
    uint64_t until = now_ms() + (uint64_t)ms;
    while (!*done && now_ms() < until) h2o_evloop_run(loop, 10);
    return *done;
}

static void run_for(int ms)
{
    int never = 0;
    run_until(&never, ms);
}

static struct query_def *define(struct fixture *f, const char *name, const char *sql, bool readonly)
{
    char err[128];
    struct query_def *q = query_def_new(name, sql, NULL, err, sizeof err);
    assert_non_null(q);
    q->readonly = readonly;
    assert_int_equal(registry_add(&f->reg, q), 0);
    return q;
}

static struct pgjob *job_for(struct query_def *q, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    struct pgjob *job = pgjob_new(q, o);
    job->bind = bind_none;
    job->on_done = on_done;
    return job;
}

/* Starts a pool on f->url (failover_wait_ms as given) and waits until pool_size connections are
 * idle. */
static void open_pool(struct fixture *f, int pool_size, int max_overflow, int failover_wait_ms)
{
    registry_init(&f->reg);
    struct pool_config cfg = {
        .name = "test",
        .url = f->url,
        .pool_size = pool_size,
        .max_overflow = max_overflow,
        .pool_timeout = 2,
        .idle_timeout = 300,
        .connect_timeout = 2,
        .prepared_statement_cache_size = 2,
        .pipeline_depth = 4,
        .max_queue = 64,
        .failover_wait_ms = failover_wait_ms,
    };
    assert_true(npools < 32);
    breaker_init(&breakers[npools]);
    f->p = &pools[npools++];
    pool_init(f->p, &cfg, 0, 1, loop, &breakers[npools - 1]);
    struct pool *p = f->p;
    uint64_t until = now_ms() + 2000;
    while (pool_count(p, PGCONN_IDLE) < pool_size && now_ms() < until) h2o_evloop_run(loop, 10);
    assert_int_equal(pool_count(p, PGCONN_IDLE), pool_size);
}

static struct fixture *start(int pool_size, int max_overflow)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->pg = fakepg_start();
    snprintf(f->url, sizeof f->url, "%s", fakepg_conninfo(f->pg));
    open_pool(f, pool_size, max_overflow, 0);
    return f;
}

/* One server, a pool that waits failover_wait_ms for a usable one. */
static struct fixture *start_waiting(int pool_size, int failover_wait_ms)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->pg = fakepg_start();
    snprintf(f->url, sizeof f->url, "%s", fakepg_conninfo(f->pg));
    open_pool(f, pool_size, 0, failover_wait_ms);
    return f;
}

/* Two servers (pg2 a standby when standby2) behind one pool with target_session_attrs=target. */
static struct fixture *start_two(const char *target, bool standby1, bool standby2, int pool_size)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->pg = fakepg_start();
    f->pg2 = fakepg_start();
    fakepg_set_standby(f->pg, standby1);
    fakepg_set_standby(f->pg2, standby2);
    snprintf(f->url, sizeof f->url,
             "host=127.0.0.1,127.0.0.1 port=%d,%d user=test dbname=test sslmode=disable gssencmode=disable "
             "target_session_attrs=%s",
             fakepg_port(f->pg), fakepg_port(f->pg2), target);
    open_pool(f, pool_size, 0, 3000);
    return f;
}

/* Closes the pool: every list must be empty afterwards and nothing may still wait. */
static void stop(struct fixture *f)
{
    if (!f->p->closing) pool_close(f->p);
    for (int s = 0; s < PGCONN_NSTATES; s++) assert_int_equal(pool_count(f->p, s), 0);
    for (int i = 0; i < pool_nhosts(f->p); i++) assert_int_equal(f->p->hosts[i].conns, 0);
    assert_int_equal(f->p->qlen, 0);
    assert_int_equal(f->p->stmts_prepared, 0);
    run_for(20);
    fakepg_stop(f->pg);
    if (f->pg2) fakepg_stop(f->pg2);
    registry_free(&f->reg);
    free(f);
}

/* Runs the loop until the servers hold n1 and n2 open connections (ms at most). */
static bool wait_open(struct fixture *f, int n1, int n2, int ms)
{
    uint64_t until = now_ms() + (uint64_t)ms;
    while (now_ms() < until) {
        if (fakepg_stats(f->pg).open == n1 && fakepg_stats(f->pg2).open == n2 &&
            pool_count(f->p, PGCONN_IDLE) == n1 + n2)
            return true;
        h2o_evloop_run(loop, 10);
    }
    return false;
}

static void connects_the_resident_connections(void **state)
{
    struct fixture *f = start(3, 0);
    assert_int_equal(pool_count(f->p, PGCONN_CONNECTING), 0);
    assert_int_equal(fakepg_stats(f->pg).open, 3);
    assert_true(pool_healthy(f->p));
    stop(f);
}

static void a_job_completes_once_and_the_connection_is_idle_again(void **state)
{
    struct fixture *f = start(1, 0);
    struct query_def *q = define(f, "one", "SELECT 42 AS echo", true);
    struct outcome o;
    assert_int_equal(pool_submit(f->p, job_for(q, &o)), 0);
    assert_int_equal(o.calls, 0); /* never from inside pool_submit */
    assert_int_equal(pool_count(f->p, PGCONN_PIPELINE), 1);
    assert_true(run_until(&o.calls, 2000));
    run_for(20);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.status, PGJOB_OK);
    assert_int_equal(pool_count(f->p, PGCONN_IDLE), 1);
    assert_int_equal(pool_count(f->p, PGCONN_PIPELINE), 0);
    assert_int_equal(f->p->stmts_prepared, 1);
    stop(f);
}

/* Idle connections send a lone Sync now and then to learn their server's role: the jobs after
 * it are matched to their own results. */
static void pings_of_an_idle_connection_leave_jobs_their_results(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->pg = fakepg_start();
    /* a pool with a target checks its servers' roles: its idle connections ping */
    snprintf(f->url, sizeof f->url, "%s target_session_attrs=read-write", fakepg_conninfo(f->pg));
    open_pool(f, 1, 0, 0);
    struct query_def *q = define(f, "seven", "SELECT 7 AS echo", true);
    for (int round = 0; round < 3; round++) {
        run_for(700); /* past the ping interval */
        struct outcome o;
        assert_int_equal(pool_submit(f->p, job_for(q, &o)), 0);
        assert_true(run_until(&o.calls, 2000));
        assert_int_equal(o.status, PGJOB_OK);
    }
    assert_true(fakepg_stats(f->pg).syncs >= 6); /* pings and jobs */
    stop(f);
}

static void jobs_pipeline_on_one_connection_in_order(void **state)
{
    struct fixture *f = start(1, 0);
    struct query_def *q = define(f, "slow", "SELECT 1 /* sleep:50 */", true);
    struct outcome o[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pool_submit(f->p, job_for(q, &o[i])), 0);
    assert_int_equal(pool_count(f->p, PGCONN_PIPELINE), 1);
    assert_int_equal(f->p->conns[PGCONN_PIPELINE].head->njobs, 4);
    assert_true(run_until(&o[3].calls, 3000));
    for (int i = 0; i < 4; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].status, PGJOB_OK);
    }
    assert_int_equal(fakepg_stats(f->pg).accepted, 1);
    stop(f);
}

static void a_server_error_fails_the_job_and_keeps_the_connection(void **state)
{
    struct fixture *f = start(1, 0);
    struct query_def *q = define(f, "dup", "INSERT INTO t VALUES (1) /* fail:23505 */", false);
    struct outcome o;
    assert_int_equal(pool_submit(f->p, job_for(q, &o)), 0);
    assert_true(run_until(&o.calls, 2000));
    assert_int_equal(o.status, PGJOB_DB_ERROR);
    assert_string_equal(o.sqlstate, "23505");
    run_for(20);
    assert_int_equal(o.calls, 1);
    assert_int_equal(pool_count(f->p, PGCONN_IDLE), 1);
    assert_int_equal(f->p->conn_lost, 0);
    stop(f);
}

/* Readonly jobs of one turn of the loop share one Sync: one that fails leaves those before it
 * their results, and those after it, which the server skipped, are sent again unseen. */
static void a_failure_in_a_group_resends_the_jobs_it_aborted(void **state)
{
    struct fixture *f = start(1, 0);
    struct query_def *ok = define(f, "ok", "SELECT 1", true);
    struct query_def *bad = define(f, "bad", "SELECT 1 /* fail:22012 */", true);
    struct outcome o[4];
    /* prepared first: a first PREPARE has a Sync of its own */
    assert_int_equal(pool_submit(f->p, job_for(ok, &o[0])), 0);
    assert_true(run_until(&o[0].calls, 2000));
    assert_int_equal(pool_submit(f->p, job_for(bad, &o[0])), 0);
    assert_true(run_until(&o[0].calls, 2000));
    assert_int_equal(o[0].status, PGJOB_DB_ERROR);
    run_for(20);
    int syncs = fakepg_stats(f->pg).syncs;
    assert_int_equal(pool_submit(f->p, job_for(ok, &o[0])), 0);
    assert_int_equal(pool_submit(f->p, job_for(bad, &o[1])), 0);
    assert_int_equal(pool_submit(f->p, job_for(ok, &o[2])), 0);
    assert_int_equal(pool_submit(f->p, job_for(ok, &o[3])), 0);
    assert_true(run_until(&o[3].calls, 2000));
    run_for(20);
    assert_int_equal(o[0].status, PGJOB_OK);
    assert_string_equal(o[0].value, "1");
    assert_int_equal(o[1].status, PGJOB_DB_ERROR);
    assert_string_equal(o[1].sqlstate, "22012");
    for (int i = 2; i < 4; i++) {
        assert_int_equal(o[i].status, PGJOB_OK);
        assert_string_equal(o[i].value, "1");
    }
    for (int i = 0; i < 4; i++) assert_int_equal(o[i].calls, 1);
    /* one Sync for the four, one for the two sent again */
    assert_int_equal(fakepg_stats(f->pg).syncs - syncs, 2);
    assert_int_equal(pool_count(f->p, PGCONN_IDLE), 1);
    assert_int_equal(f->p->conn_lost, 0);
    stop(f);
}

/* The server goes away mid-statement: the readonly job is resent on a new connection and
 * succeeds, the write fails (its commit is in doubt); each hears once. */
static void a_lost_connection_resends_reads_and_fails_writes(void **state)
{
    struct fixture *f = start(2, 0);
    struct query_def *r = define(f, "read", "SELECT 7 /* sleep:300 */", true);
    struct query_def *w = define(f, "write", "UPDATE t SET a = 1 /* sleep:300 */", false);
    struct outcome ro, wo;
    assert_int_equal(pool_submit(f->p, job_for(r, &ro)), 0);
    assert_int_equal(pool_submit(f->p, job_for(w, &wo)), 0);
    run_for(50);
    fakepg_kill_all(f->pg);
    int both = 0;
    uint64_t until = now_ms() + 3000;
    while (!(both = ro.calls && wo.calls) && now_ms() < until) h2o_evloop_run(loop, 10);
    assert_true(both);
    run_for(50);
    assert_int_equal(ro.calls, 1);
    assert_int_equal(ro.status, PGJOB_OK);
    assert_int_equal(wo.calls, 1);
    assert_int_equal(wo.status, PGJOB_UNAVAILABLE);
    assert_true(wo.in_doubt); /* sent, then lost: it may have committed, so never resent */
    assert_non_null(strstr(wo.errmsg, "may or may not have been committed"));
    assert_false(ro.in_doubt);
    assert_true(f->p->conn_lost >= 2);
    assert_true(f->p->retries >= 1);
    stop(f);
}

struct lease_seen {
    int calls;
    struct pgconn *conn;
    char err[128];
};

static void on_lease(void *arg, struct pgconn *c, const char *err)
{
    struct lease_seen *s = arg;
    s->calls++;
    s->conn = c;
    if (err) snprintf(s->err, sizeof s->err, "%s", err);
}

/* A lease takes the whole connection: a job waits behind it and runs once it is released. */
static void a_lease_holds_the_connection_until_released(void **state)
{
    struct fixture *f = start(1, 0);
    struct query_def *q = define(f, "q", "SELECT 1", true);
    struct pool_lease lease;
    struct lease_seen seen = {0};
    char err[128];
    assert_int_equal(pool_acquire(f->p, &lease, on_lease, &seen, err, sizeof err), 0);
    assert_int_equal(seen.calls, 1); /* an idle connection: at once */
    assert_non_null(seen.conn);
    assert_int_equal(seen.conn->state, PGCONN_LEASED);
    assert_int_equal(pool_count(f->p, PGCONN_LEASED), 1);
    struct outcome o;
    assert_int_equal(pool_submit(f->p, job_for(q, &o)), 0);
    run_for(100);
    assert_int_equal(o.calls, 0); /* nothing else to run on */
    assert_int_equal(f->p->qlen, 1);
    pgconn_release(seen.conn);
    assert_true(run_until(&o.calls, 2000));
    assert_int_equal(o.status, PGJOB_OK);
    assert_int_equal(pool_count(f->p, PGCONN_LEASED), 0);
    stop(f);
}

/* Owners that leave: a waiting lease and a waiting job never hear back; a job in flight is
 * dropped when its result comes; nothing leaks (the sanitizer builds check). */
static void owners_that_leave_are_never_called(void **state)
{
    struct fixture *f = start(1, 0);
    struct query_def *q = define(f, "q", "SELECT 1 /* sleep:100 */", true);
    struct outcome running, waiting;
    struct pgjob *in_flight = job_for(q, &running);
    assert_int_equal(pool_submit(f->p, in_flight), 0);
    struct pool_lease lease;
    struct lease_seen seen = {0};
    char err[128];
    assert_int_equal(pool_acquire(f->p, &lease, on_lease, &seen, err, sizeof err), 0);
    struct pgjob *queued = job_for(q, &waiting);
    assert_int_equal(pool_submit(f->p, queued), 0);
    assert_int_equal(f->p->qlen, 2);
    pool_cancel_lease(&lease);
    pool_abandon(queued);
    pool_abandon(in_flight);
    assert_int_equal(f->p->qlen, 0);
    run_for(300);
    assert_int_equal(seen.calls, 0);
    assert_int_equal(waiting.calls, 0);
    assert_int_equal(running.calls, 0);
    assert_int_equal(pool_count(f->p, PGCONN_IDLE), 1);
    stop(f);
}

/* A server that refuses connections: what waits fails fast, once, and new work is refused at
 * the door until a connect succeeds again. */
static void an_unreachable_server_fails_waiters_once(void **state)
{
    struct fixture *f = start(1, 0);
    struct query_def *q = define(f, "q", "SELECT 1", true);
    fakepg_refuse(f->pg, true);
    fakepg_kill_all(f->pg);
    run_for(100); /* the idle connection's loss is seen; reconnects fail */
    struct outcome o;
    struct pgjob *job = job_for(q, &o);
    int rc = pool_submit(f->p, job);
    if (rc == 0) {
        assert_true(run_until(&o.calls, 3000));
        assert_int_equal(o.status, PGJOB_UNAVAILABLE);
    } else {
        assert_int_equal(rc, -SLUICE_EBUSY);
        pgjob_free(job);
    }
    assert_false(pool_healthy(f->p));
    fakepg_refuse(f->pg, false);
    uint64_t until = now_ms() + 3000;
    while (pool_count(f->p, PGCONN_IDLE) == 0 && now_ms() < until) h2o_evloop_run(loop, 10);
    assert_int_equal(pool_count(f->p, PGCONN_IDLE), 1);
    assert_true(pool_healthy(f->p));
    run_for(20);
    assert_true(o.calls <= 1);
    stop(f);
}

/* A small statement cache: the gauge follows evictions, and closing forgets them all. */
static void the_statement_gauge_follows_the_cache(void **state)
{
    struct fixture *f = start(1, 0);
    struct query_def *q[3] = {define(f, "a", "SELECT 1", true), define(f, "b", "SELECT 2", true),
                              define(f, "c", "SELECT 3", true)};
    for (int i = 0; i < 3; i++) {
        struct outcome o;
        assert_int_equal(pool_submit(f->p, job_for(q[i], &o)), 0);
        assert_true(run_until(&o.calls, 2000));
        assert_int_equal(o.status, PGJOB_OK);
    }
    run_for(20);
    assert_int_equal(f->p->stmts_prepared, 2); /* the cache holds 2 */
    stop(f);
}

/* pool_close with work waiting: every waiter hears once, with PGJOB_UNAVAILABLE or an error. */
static void closing_answers_every_waiter_once(void **state)
{
    struct fixture *f = start(1, 0);
    struct query_def *q = define(f, "q", "SELECT 1 /* sleep:200 */", false);
    struct outcome o[3];
    for (int i = 0; i < 3; i++) assert_int_equal(pool_submit(f->p, job_for(q, &o[i])), 0);
    struct pool_lease lease;
    struct lease_seen seen = {0};
    char err[128];
    assert_int_equal(pool_acquire(f->p, &lease, on_lease, &seen, err, sizeof err), 0);
    pool_close(f->p);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].status, PGJOB_UNAVAILABLE);
    }
    assert_int_equal(seen.calls, 1);
    assert_null(seen.conn);
    assert_string_equal(seen.err, "the gateway is shutting down");
    stop(f);
}

/* The first answer of a pipeline closes the pool from its callback (a drain that ends with it):
 * the connection is closed while the reader still walks its segments, so its free waits for the
 * end of that read (ASan sees the difference). The others are answered once. */
static struct pool *pool_to_close;

static void on_done_closing(struct pgjob *job)
{
    on_done(job);
    pool_close(pool_to_close);
}

static void a_callback_that_closes_the_pool_leaves_the_reader_safe(void **state)
{
    struct fixture *f = start(1, 0);
    struct query_def *q = define(f, "q", "SELECT 1", true);
    struct outcome o[3];
    assert_int_equal(pool_submit(f->p, job_for(q, &o[0])), 0); /* prepared first */
    assert_true(run_until(&o[0].calls, 2000));
    pool_to_close = f->p;
    for (int i = 0; i < 3; i++) {
        struct pgjob *job = job_for(q, &o[i]);
        if (i == 0) job->on_done = on_done_closing;
        assert_int_equal(pool_submit(f->p, job), 0);
    }
    assert_true(run_until(&o[2].calls, 2000));
    run_for(20);
    for (int i = 0; i < 3; i++) assert_int_equal(o[i].calls, 1);
    assert_int_equal(o[0].status, PGJOB_OK);
    stop(f);
}

/* --- several hosts, roles, failover ------------------------------------------------------- */

/* A standby pool over two standbys: the connections spread over both, and a job runs. */
static void a_standby_pool_spreads_over_every_host(void **state)
{
    struct fixture *f = start_two("standby", true, true, 4);
    assert_true(wait_open(f, 2, 2, 2000));
    assert_int_equal(pool_nhosts(f->p), 2);
    assert_int_equal(f->p->hosts[0].conns, 2);
    assert_int_equal(f->p->hosts[1].conns, 2);
    assert_int_equal(pool_host_role(f->p, 0), PG_ROLE_STANDBY);
    assert_int_equal(pool_host_role(f->p, 1), PG_ROLE_STANDBY);
    struct query_def *q = define(f, "q", "SELECT 1", true);
    struct outcome o;
    assert_int_equal(pool_submit(f->p, job_for(q, &o)), 0);
    assert_true(run_until(&o.calls, 2000));
    assert_int_equal(o.status, PGJOB_OK);
    stop(f);
}

/* A standby pool whose standby is promoted: its connections leave the new primary for the
 * other standby. */
static void a_standby_pool_leaves_a_promoted_standby(void **state)
{
    struct fixture *f = start_two("standby", true, true, 2);
    assert_true(wait_open(f, 1, 1, 2000));
    fakepg_set_standby(f->pg, false);
    assert_true(wait_open(f, 0, 2, 2000));
    assert_int_equal(pool_host_role(f->p, 0), PG_ROLE_PRIMARY);
    assert_int_equal(f->p->shared->role_changes, 1);
    stop(f);
}

/* prefer-standby: with a standby up, only the standby serves; when it goes away the primary
 * serves instead (the pool does not wait), and the pool returns to the standby once it is back. */
static void a_prefer_standby_pool_falls_back_to_the_primary_and_returns(void **state)
{
    struct fixture *f = start_two("prefer-standby", false, true, 2);
    assert_true(wait_open(f, 0, 2, 3000));
    struct query_def *q = define(f, "q", "SELECT 1", true);
    fakepg_refuse(f->pg2, true);
    fakepg_kill_all(f->pg2);
    assert_true(wait_open(f, 2, 0, 3000));
    assert_true(pool_healthy(f->p));
    struct outcome o;
    assert_int_equal(pool_submit(f->p, job_for(q, &o)), 0);
    assert_true(run_until(&o.calls, 2000));
    assert_int_equal(o.status, PGJOB_OK);
    fakepg_refuse(f->pg2, false);
    assert_true(wait_open(f, 0, 2, 5000));
    stop(f);
}

/* A read-write pool over a primary and a standby: the connections go to the primary only; when
 * the roles swap, they move to the new primary within a second, and work runs there. */
static void a_read_write_pool_follows_the_primary(void **state)
{
    struct fixture *f = start_two("read-write", false, true, 2);
    assert_true(wait_open(f, 2, 0, 2000));
    assert_int_equal(f->p->current, 0);
    struct query_def *q = define(f, "w", "INSERT INTO t VALUES (1) /* readonly */", false);
    fakepg_set_standby(f->pg, true);
    fakepg_set_standby(f->pg2, false);
    uint64_t t0 = now_ms();
    assert_true(wait_open(f, 0, 2, 3000));
    uint64_t took = now_ms() - t0;
    assert_true(took < 1000);
    assert_int_equal(f->p->current, 1);
    assert_int_equal(pool_host_role(f->p, 0), PG_ROLE_STANDBY);
    assert_int_equal(pool_host_role(f->p, 1), PG_ROLE_PRIMARY);
    assert_true(f->p->shared->role_changes >= 1);
    struct outcome o;
    assert_int_equal(pool_submit(f->p, job_for(q, &o)), 0);
    assert_true(run_until(&o.calls, 2000));
    assert_int_equal(o.status, PGJOB_OK);
    print_message("# connections moved to the new primary in %llu ms\n", (unsigned long long)took);
    stop(f);
}

/* A write that meets a read-only server (25006) closes its connection and is answered once,
 * 503-style; an idempotent one waits for a primary and runs there. */
static void a_read_only_error_closes_the_connection_and_is_answered_once(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->pg = fakepg_start();
    snprintf(f->url, sizeof f->url, "%s target_session_attrs=read-write", fakepg_conninfo(f->pg));
    open_pool(f, 1, 0, 3000);
    struct query_def *w = define(f, "w", "UPDATE t SET a = 1 /* readonly */", false);
    struct query_def *idem = define(f, "idem", "UPDATE t SET b = 1 /* readonly */", false);
    idem->idempotent = true;
    struct outcome wo, io;
    fakepg_set_standby(f->pg, true);
    assert_int_equal(pool_submit(f->p, job_for(w, &wo)), 0); /* before any ping sees the change */
    assert_int_equal(pool_submit(f->p, job_for(idem, &io)), 0);
    assert_true(run_until(&wo.calls, 2000));
    assert_int_equal(wo.status, PGJOB_UNAVAILABLE);
    assert_false(wo.in_doubt);
    assert_non_null(strstr(wo.errmsg, "read-only"));
    assert_true(f->p->role_closes >= 1);
    run_for(300);
    assert_int_equal(io.calls, 0); /* it waits for a primary */
    assert_false(pool_healthy(f->p));
    fakepg_set_standby(f->pg, false);
    assert_true(run_until(&io.calls, 3000));
    assert_int_equal(io.status, PGJOB_OK);
    run_for(50);
    assert_int_equal(wo.calls, 1);
    assert_int_equal(io.calls, 1);
    assert_int_equal(breaker_state(f->p->breaker), BREAKER_CLOSED);
    stop(f);
}

/* The server refuses connections for less than failover_wait_ms: reads and writes submitted
 * meanwhile wait and then succeed; the wait is measured; the breaker stays closed. */
static void work_waits_through_a_refusal_shorter_than_failover_wait(void **state)
{
    struct fixture *f = start_waiting(2, 2000);
    struct query_def *r = define(f, "r", "SELECT 1", true);
    struct query_def *w = define(f, "w", "UPDATE t SET a = 1", false);
    fakepg_refuse(f->pg, true);
    fakepg_kill_all(f->pg);
    run_for(200);
    assert_false(pool_healthy(f->p));
    struct outcome ro, wo;
    assert_int_equal(pool_submit(f->p, job_for(r, &ro)), 0);
    assert_int_equal(pool_submit(f->p, job_for(w, &wo)), 0);
    struct pool_lease lease;
    struct lease_seen seen = {0};
    char err[128];
    assert_int_equal(pool_acquire(f->p, &lease, on_lease, &seen, err, sizeof err), 0);
    run_for(600);
    assert_int_equal(ro.calls + wo.calls + seen.calls, 0);
    fakepg_refuse(f->pg, false);
    int all = 0;
    uint64_t until = now_ms() + 3000;
    while (!(all = ro.calls && wo.calls && seen.calls) && now_ms() < until) h2o_evloop_run(loop, 10);
    assert_true(all);
    assert_int_equal(ro.status, PGJOB_OK);
    assert_int_equal(wo.status, PGJOB_OK);
    assert_non_null(seen.conn);
    pgconn_release(seen.conn);
    assert_true(pool_healthy(f->p));
    assert_int_equal(f->p->failover_wait.count, 3); /* two jobs and the lease waited for a server */
    assert_true(f->p->failover_wait.sum > 3 * 0.5);
    assert_int_equal(breaker_state(f->p->breaker), BREAKER_CLOSED);
    stop(f);
}

/* No server comes back: what waits is answered UNAVAILABLE after about failover_wait_ms, once. */
static void work_fails_after_failover_wait_when_no_server_comes(void **state)
{
    struct fixture *f = start_waiting(1, 600);
    struct query_def *r = define(f, "r", "SELECT 1", true);
    fakepg_refuse(f->pg, true);
    fakepg_kill_all(f->pg);
    run_for(200);
    struct outcome o;
    uint64_t t0 = now_ms();
    assert_int_equal(pool_submit(f->p, job_for(r, &o)), 0);
    assert_true(run_until(&o.calls, 3000));
    uint64_t took = o.done_ms - t0;
    assert_int_equal(o.status, PGJOB_UNAVAILABLE);
    assert_non_null(strstr(o.errmsg, "failover_wait_ms"));
    assert_true(took >= 550 && took < 900);
    run_for(100);
    assert_int_equal(o.calls, 1);
    assert_int_equal(breaker_state(f->p->breaker), BREAKER_CLOSED);
    print_message("# answered after %llu ms (failover_wait_ms 600)\n", (unsigned long long)took);
    fakepg_refuse(f->pg, false);
    stop(f);
}

int main(void)
{
    log_setup(LOG_ERROR, false);
    loop = h2o_evloop_create();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connects_the_resident_connections),
        cmocka_unit_test(a_job_completes_once_and_the_connection_is_idle_again),
        cmocka_unit_test(pings_of_an_idle_connection_leave_jobs_their_results),
        cmocka_unit_test(jobs_pipeline_on_one_connection_in_order),
        cmocka_unit_test(a_server_error_fails_the_job_and_keeps_the_connection),
        cmocka_unit_test(a_failure_in_a_group_resends_the_jobs_it_aborted),
        cmocka_unit_test(a_lost_connection_resends_reads_and_fails_writes),
        cmocka_unit_test(a_lease_holds_the_connection_until_released),
        cmocka_unit_test(owners_that_leave_are_never_called),
        cmocka_unit_test(an_unreachable_server_fails_waiters_once),
        cmocka_unit_test(the_statement_gauge_follows_the_cache),
        cmocka_unit_test(closing_answers_every_waiter_once),
        cmocka_unit_test(a_callback_that_closes_the_pool_leaves_the_reader_safe),
        cmocka_unit_test(a_standby_pool_spreads_over_every_host),
        cmocka_unit_test(a_standby_pool_leaves_a_promoted_standby),
        cmocka_unit_test(a_prefer_standby_pool_falls_back_to_the_primary_and_returns),
        cmocka_unit_test(a_read_write_pool_follows_the_primary),
        cmocka_unit_test(a_read_only_error_closes_the_connection_and_is_answered_once),
        cmocka_unit_test(work_waits_through_a_refusal_shorter_than_failover_wait),
        cmocka_unit_test(work_fails_after_failover_wait_when_no_server_comes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
