/* test_listener.c — the process's LISTEN connection against the real test database
 * (SLUICE_TEST_DSN; skipped without one): delivery on the listener's thread and on another loop,
 * one backend for every channel, reset and LISTEN again after pg_terminate_backend, UNLISTEN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "listener.h"
#include "util.h"

static const char *dsn;
static PGconn *db; /* the test's own connection: NOTIFY and checks */
static h2o_loop_t *loop;
static h2o_multithread_queue_t *queue;

struct seen {
    int notified, resets; /* atomic: the direct callbacks run on the listener's thread */
    char last[64];
    char channel[64];
};

static void on_notify(void *arg, const char *channel, const char *payload, size_t len)
{
    struct seen *s = arg;
    snprintf(s->last, sizeof s->last, "%.*s", (int)len, payload);
    snprintf(s->channel, sizeof s->channel, "%s", channel);
    __atomic_add_fetch(&s->notified, 1, __ATOMIC_SEQ_CST);
}

static void on_reset(void *arg, const char *channel)
{
    struct seen *s = arg;
    __atomic_add_fetch(&s->resets, 1, __ATOMIC_SEQ_CST);
}

static void exec(const char *sql)
{
    PGresult *r = PQexec(db, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQerrorMessage(db));
    PQclear(r);
}

static long count(const char *sql)
{
    PGresult *r = PQexec(db, sql);
    long n = PQresultStatus(r) == PGRES_TUPLES_OK ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    return n;
}

/* Runs the test's loop (targeted callbacks) until *counter reaches want or 5 s pass. */
static bool wait_for(int *counter, int want)
{
    uint64_t end = now_ms() + 5000;
    while (__atomic_load_n(counter, __ATOMIC_SEQ_CST) < want && now_ms() < end) h2o_evloop_run(loop, 20);
    return __atomic_load_n(counter, __ATOMIC_SEQ_CST) >= want;
}

/* Waits until the pool's LISTEN connection has a backend and listens to channel. */
static int wait_listening(const char *channel)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-listen' "
             "AND query LIKE '%%%s%%' AND state = 'idle'",
             channel);
    uint64_t end = now_ms() + 5000;
    int pid = 0;
    while (now_ms() < end) {
        h2o_evloop_run(loop, 20);
        pid = listener_backend_pid("primary");
        if (pid != 0 && count(sql) == 1) return pid;
    }
    return pid;
}

static int setup(void **state)
{
    dsn = getenv("SLUICE_TEST_DSN");
    if (dsn == NULL || *dsn == '\0') return 0;
    db = PQconnectdb(dsn);
    if (PQstatus(db) != CONNECTION_OK) return -1;
    loop = h2o_evloop_create();
    queue = h2o_multithread_create_queue(loop);
    static struct pool_config pools[1];
    static struct config cfg;
    pools[0] = (struct pool_config){.name = "primary", .url = (char *)dsn, .connect_timeout = 5};
    cfg.pools = pools;
    cfg.npools = 1;
    assert_int_equal(listener_start(&cfg), 0);
    assert_int_equal(listener_start(&cfg), -1);
    return 0;
}

static int teardown(void **state)
{
    if (db == NULL) return 0;
    listener_stop();
    h2o_multithread_destroy_queue(queue);
    h2o_evloop_destroy(loop);
    PQfinish(db);
    return 0;
}

static void unknown_pool_is_refused(void **state)
{
    if (db == NULL) skip();
    struct seen s = {0};
    assert_null(listener_subscribe("nope", "x", on_notify, on_reset, &s, NULL));
}

/* Two channels, a direct and a targeted subscriber: one backend, every notification where it
 * belongs; a LISTEN connection killed comes back, listens again and resets both. */
static void delivers_resets_and_listens_again(void **state)
{
    if (db == NULL) skip();
    struct listener_target target;
    listener_target_init(&target, queue);
    struct seen direct = {0}, targeted = {0}, other = {0};
    struct listener_sub *a = listener_subscribe("primary", "t_quotes", on_notify, on_reset, &direct, NULL);
    struct listener_sub *b =
        listener_subscribe("primary", "t_quotes", on_notify, on_reset, &targeted, &target);
    struct listener_sub *c = listener_subscribe("primary", "T Other", on_notify, NULL, &other, &target);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    int pid = wait_listening("T Other");
    assert_int_not_equal(pid, 0);
    assert_int_equal(count("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-listen'"),
                     1);

    exec("NOTIFY t_quotes, 'line one\nline two'");
    exec("SELECT pg_notify('T Other', 'élan')");
    assert_true(wait_for(&targeted.notified, 1));
    assert_true(wait_for(&other.notified, 1));
    assert_true(wait_for(&direct.notified, 1));
    assert_string_equal(targeted.last, "line one\nline two");
    assert_string_equal(direct.last, "line one\nline two");
    assert_string_equal(direct.channel, "t_quotes");
    assert_string_equal(other.last, "élan");
    assert_string_equal(other.channel, "T Other");

    char sql[128];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", pid);
    exec(sql);
    assert_true(wait_for(&targeted.resets, 1));
    assert_true(wait_for(&direct.resets, 1));
    assert_int_equal(listener_resets("primary"), 1);
    int pid2 = wait_listening("t_quotes");
    assert_int_not_equal(pid2, 0);
    assert_int_not_equal(pid2, pid);

    exec("NOTIFY t_quotes, 'after'");
    assert_true(wait_for(&targeted.notified, 2));
    assert_true(wait_for(&direct.notified, 2));
    assert_string_equal(targeted.last, "after");

    /* Cancelled: nothing more comes, and the channel nobody follows is UNLISTENed. */
    listener_unsubscribe(c);
    exec("SELECT pg_notify('T Other', 'late')");
    exec("NOTIFY t_quotes, 'marker'");
    assert_true(wait_for(&targeted.notified, 3));
    assert_int_equal(other.notified, 1);
    uint64_t end = now_ms() + 5000;
    long listening = -1;
    while (now_ms() < end && listening != 0) {
        h2o_evloop_run(loop, 20);
        listening = count("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-listen' "
                          "AND query LIKE 'UNLISTEN%'");
        listening = listening == 1 ? 0 : 1;
    }
    assert_int_equal(listening, 0);
    listener_unsubscribe(a);
    listener_unsubscribe(b);
    h2o_evloop_run(loop, 0);
    listener_target_dispose(&target);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unknown_pool_is_refused),
        cmocka_unit_test(delivers_resets_and_listens_again),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
