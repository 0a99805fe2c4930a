/* test_pool.c — the pool and the connection state machine against a scripted server (fakepg):
 * every on_done and lease callback runs exactly once, connections sit on the list of their state,
 * lost connections resend readonly work and fail writes, and nothing is left at close. */
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
static struct pool pools[16];
static struct breaker breakers[16];
static int npools;

struct fixture {
    struct fakepg *pg;
    struct pool *p;
    struct registry reg;
};

/* What one job's owner saw: on_done must run exactly once. */
struct outcome {
    int calls;
    enum pgjob_status status;
    char value[32];
    char sqlstate[6];
};

static void on_done(struct pgjob *job)
{
    struct outcome *o = job->owner;
    o->calls++;
    o->status = job->status;
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

static struct fixture *start(int pool_size, int max_overflow)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->pg = fakepg_start();
    registry_init(&f->reg);
    struct pool_config cfg = {
        .name = "test",
        .url = (char *)fakepg_conninfo(f->pg),
        .pool_size = pool_size,
        .max_overflow = max_overflow,
        .pool_timeout = 2,
        .idle_timeout = 300,
        .connect_timeout = 2,
        .prepared_statement_cache_size = 2,
        .pipeline_depth = 4,
        .max_queue = 64,
    };
    assert_true(npools < 16);
    breaker_init(&breakers[npools]);
    f->p = &pools[npools++];
    pool_init(f->p, &cfg, 0, 1, loop, &breakers[npools - 1]);
    struct pool *p = f->p;
    uint64_t until = now_ms() + 2000;
    while (pool_count(p, PGCONN_IDLE) < pool_size && now_ms() < until) h2o_evloop_run(loop, 10);
    assert_int_equal(pool_count(p, PGCONN_IDLE), pool_size);
    return f;
}

/* Closes the pool: every list must be empty afterwards and nothing may still wait. */
static void stop(struct fixture *f)
{
    if (!f->p->closing) pool_close(f->p);
    for (int s = 0; s < PGCONN_NSTATES; s++) assert_int_equal(pool_count(f->p, s), 0);
    assert_int_equal(f->p->qlen, 0);
    assert_int_equal(f->p->stmts_prepared, 0);
    run_for(20);
    fakepg_stop(f->pg);
    registry_free(&f->reg);
    free(f);
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

int main(void)
{
    log_setup(LOG_ERROR, false);
    loop = h2o_evloop_create();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(connects_the_resident_connections),
        cmocka_unit_test(a_job_completes_once_and_the_connection_is_idle_again),
        cmocka_unit_test(jobs_pipeline_on_one_connection_in_order),
        cmocka_unit_test(a_server_error_fails_the_job_and_keeps_the_connection),
        cmocka_unit_test(a_lost_connection_resends_reads_and_fails_writes),
        cmocka_unit_test(a_lease_holds_the_connection_until_released),
        cmocka_unit_test(owners_that_leave_are_never_called),
        cmocka_unit_test(an_unreachable_server_fails_waiters_once),
        cmocka_unit_test(the_statement_gauge_follows_the_cache),
        cmocka_unit_test(closing_answers_every_waiter_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
