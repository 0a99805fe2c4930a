/* test_fakepg.c — the scripted PostgreSQL server (fakepg.c) seen through real libpq: blocking
 * calls, and pipeline mode on a non-blocking connection driven by poll() as pgconn.c drives it.
 * Each test gets a server of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fakepg.h"

static int setup(void **state)
{
    *state = fakepg_start();
    return 0;
}

static int teardown(void **state)
{
    fakepg_stop(*state);
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A connection that must succeed; the caller PQfinish-es it. */
static PGconn *connect_ok(struct fakepg *f)
{
    PGconn *c = PQconnectdb(fakepg_conninfo(f));
    if (PQstatus(c) != CONNECTION_OK) fail_msg("connect: %s", PQerrorMessage(c));
    return c;
}

/* Checks a result's status (and SQLSTATE when state is given), then clears it. */
static void check(PGresult *r, ExecStatusType want, const char *state)
{
    if (r == NULL) fail_msg("no result, wanted %s", PQresStatus(want));
    if (PQresultStatus(r) != want)
        fail_msg("got %s (%s), wanted %s", PQresStatus(PQresultStatus(r)), PQresultErrorMessage(r),
                 PQresStatus(want));
    if (state != NULL) assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), state);
    PQclear(r);
}

/* Checks a one-column row result: `n` rows whose values are `values` (NULL: SQL NULL). */
static void check_rows(PGresult *r, int n, const char *const *values)
{
    assert_non_null(r);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_SINGLE_TUPLE)
        fail_msg("got %s (%s)", PQresStatus(PQresultStatus(r)), PQresultErrorMessage(r));
    assert_int_equal(PQnfields(r), 1);
    assert_string_equal(PQfname(r, 0), "v");
    assert_int_equal(PQntuples(r), n);
    for (int i = 0; i < n; i++) {
        if (values[i] == NULL)
            assert_true(PQgetisnull(r, i, 0));
        else
            assert_string_equal(PQgetvalue(r, i, 0), values[i]);
    }
    PQclear(r);
}

/* The next result of a non-blocking connection, waiting for it with poll(): what PQgetResult
 * gives (NULL ends the results of one pipelined query). The caller clears it. */
static PGresult *next_result(PGconn *c)
{
    while (PQisBusy(c)) {
        int pending = PQflush(c);
        struct pollfd p = {.fd = PQsocket(c), .events = POLLIN | (pending == 1 ? POLLOUT : 0)};
        if (poll(&p, 1, 20000) != 1) fail_msg("no answer within 20 s");
        if (!PQconsumeInput(c)) break; /* the connection is lost: PQgetResult says so */
    }
    return PQgetResult(c);
}

/* A connection in pipeline mode on a non-blocking socket. */
static PGconn *connect_pipeline(struct fakepg *f)
{
    PGconn *c = connect_ok(f);
    assert_int_equal(PQsetnonblocking(c, 1), 0);
    assert_int_equal(PQenterPipelineMode(c), 1);
    return c;
}

static void send_params(PGconn *c, const char *sql, const char *arg)
{
    const char *vals[1] = {arg};
    assert_int_equal(PQsendQueryParams(c, sql, arg ? 1 : 0, NULL, arg ? vals : NULL, NULL, NULL, 0), 1);
}

/* In a pipeline: the result of one query, then the NULL that ends it. */
static void expect_rows(PGconn *c, const char *value)
{
    const char *values[1] = {value};
    check_rows(next_result(c), 1, values);
    assert_null(next_result(c));
}

static void expect_status(PGconn *c, ExecStatusType want, const char *state)
{
    check(next_result(c), want, state);
    if (want != PGRES_PIPELINE_SYNC) assert_null(next_result(c));
}

/* Waits (at most 10 s) until the server's counters satisfy what `ok` checks. */
static struct fakepg_stats wait_stats(struct fakepg *f, bool (*ok)(const struct fakepg_stats *, int), int arg)
{
    for (int64_t end = now_ms() + 10000; now_ms() < end; usleep(2000)) {
        struct fakepg_stats st = fakepg_stats(f);
        if (ok(&st, arg)) return st;
    }
    fail_msg("the server did not get there within 10 s");
    return fakepg_stats(f);
}

static bool open_is(const struct fakepg_stats *st, int n)
{
    return st->open == n;
}

static bool executes_reach(const struct fakepg_stats *st, int n)
{
    return st->executes >= n;
}

static bool queries_reach(const struct fakepg_stats *st, int n)
{
    return st->simple_queries >= n;
}

/* --- blocking libpq ------------------------------------------------------------------------ */

static void startup_reports_parameters(void **state)
{
    struct fakepg *f = *state;
    char port[16];
    snprintf(port, sizeof port, "port=%d ", fakepg_port(f));
    assert_non_null(strstr(fakepg_conninfo(f), port));
    PGconn *c = connect_ok(f);
    assert_string_equal(PQparameterStatus(c, "server_version"), "15.0");
    assert_string_equal(PQparameterStatus(c, "server_encoding"), "UTF8");
    assert_string_equal(PQparameterStatus(c, "integer_datetimes"), "on");
    assert_string_equal(PQparameterStatus(c, "in_hot_standby"), "off");
    assert_int_equal(PQserverVersion(c), 150000);
    assert_true(PQbackendPID(c) > 0);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
    PGconn *d = connect_ok(f);
    assert_int_not_equal(PQbackendPID(c), PQbackendPID(d));
    assert_int_equal(fakepg_stats(f).open, 2);
    PQfinish(d);
    PQfinish(c);
    struct fakepg_stats st = wait_stats(f, open_is, 0);
    assert_int_equal(st.accepted, 2);
}

static void simple_queries(void **state)
{
    PGconn *c = connect_ok(*state);
    check_rows(PQexec(c, "SELECT 1"), 1, (const char *[]){"1"});
    check_rows(PQexec(c, "select rows:3"), 3, (const char *[]){"1", "2", "3"});
    check_rows(PQexec(c, "SELECT rows:0"), 0, NULL);
    check_rows(PQexec(c, "SELECT echo"), 1, (const char *[]){NULL});

    PGresult *r = PQexec(c, "UPDATE t SET x = 1");
    assert_string_equal(PQcmdStatus(r), "UPDATE 1");
    check(r, PGRES_COMMAND_OK, NULL);
    r = PQexec(c, "INSERT INTO t VALUES (1)");
    assert_string_equal(PQcmdStatus(r), "INSERT 0 1");
    check(r, PGRES_COMMAND_OK, NULL);
    check(PQexec(c, ""), PGRES_EMPTY_QUERY, NULL);
    check(PQexec(c, " ;; "), PGRES_EMPTY_QUERY, NULL);

    /* several statements: each answered; PQexec returns the last */
    r = PQexec(c, "SET statement_timeout = 5; BEGIN");
    assert_string_equal(PQcmdStatus(r), "BEGIN");
    check(r, PGRES_COMMAND_OK, NULL);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS);
    check(PQexec(c, "COMMIT"), PGRES_COMMAND_OK, NULL);

    assert_int_equal(PQsendQuery(c, "SELECT rows:2; SELECT ';' AS semi; RESET x"), 1);
    check_rows(PQgetResult(c), 2, (const char *[]){"1", "2"});
    check_rows(PQgetResult(c), 1, (const char *[]){"1"});
    r = PQgetResult(c);
    assert_string_equal(PQcmdStatus(r), "RESET");
    check(r, PGRES_COMMAND_OK, NULL);
    assert_null(PQgetResult(c));
    assert_int_equal(fakepg_stats(*state).simple_queries, 11);
    PQfinish(c);
}

static void params_are_echoed(void **state)
{
    PGconn *c = connect_ok(*state);
    const char *hello[] = {"hello"}, *null[] = {NULL}, *two[] = {"first", "second"};
    check_rows(PQexecParams(c, "SELECT $1", 1, NULL, hello, NULL, NULL, 0), 1, hello);
    check_rows(PQexecParams(c, "SELECT $1::int", 1, NULL, null, NULL, NULL, 0), 1, null);
    check_rows(PQexecParams(c, "SELECT echo $2, $1", 2, NULL, two, NULL, NULL, 0), 1,
               (const char *[]){"first"});
    check_rows(PQexecParams(c, "SELECT $1 FROM t", 1, NULL, hello, NULL, NULL, 0), 1, hello);
    check_rows(PQexecParams(c, "SELECT 7", 0, NULL, NULL, NULL, NULL, 0), 1, (const char *[]){"1"});
    PGresult *r = PQexecParams(c, "DELETE FROM t WHERE id = $1", 1, NULL, hello, NULL, NULL, 0);
    assert_string_equal(PQcmdTuples(r), "1");
    check(r, PGRES_COMMAND_OK, NULL);
    /* a parameter count that does not match the statement is a protocol error, not a crash */
    check(PQexecParams(c, "SELECT $1, $2", 1, NULL, hello, NULL, NULL, 0), PGRES_FATAL_ERROR, "08P01");
    check_rows(PQexec(c, "SELECT 1"), 1, (const char *[]){"1"});
    struct fakepg_stats st = fakepg_stats(*state);
    assert_int_equal(st.parses, 7);
    assert_int_equal(st.executes, 6);
    assert_int_equal(st.syncs, 7);
    PQfinish(c);
}

static void prepared_statements(void **state)
{
    PGconn *c = connect_ok(*state);
    const Oid types[] = {23};
    check(PQprepare(c, "s1", "SELECT echo $1, $2", 1, types), PGRES_COMMAND_OK, NULL);
    PGresult *r = PQdescribePrepared(c, "s1");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    assert_int_equal(PQnparams(r), 2);
    assert_int_equal(PQparamtype(r, 0), 23);
    assert_int_equal(PQparamtype(r, 1), 25); /* left open: text */
    assert_int_equal(PQnfields(r), 1);
    assert_string_equal(PQfname(r, 0), "v");
    assert_int_equal(PQftype(r, 0), 25);
    PQclear(r);
    check(PQprepare(c, "s2", "UPDATE t SET x = $1", 0, NULL), PGRES_COMMAND_OK, NULL);
    r = PQdescribePrepared(c, "s2");
    assert_int_equal(PQnparams(r), 1);
    assert_int_equal(PQnfields(r), 0); /* NoData */
    PQclear(r);

    const char *vals[] = {"42", "x"};
    check_rows(PQexecPrepared(c, "s1", 2, vals, NULL, NULL, 0), 1, vals);
    check(PQprepare(c, "s1", "SELECT 2", 0, NULL), PGRES_FATAL_ERROR, "42P05");
    check(PQdescribePrepared(c, "nope"), PGRES_FATAL_ERROR, "26000");
    check(PQexecPrepared(c, "nope", 0, NULL, NULL, NULL, 0), PGRES_FATAL_ERROR, "26000");
    check(PQdescribePortal(c, "nope"), PGRES_FATAL_ERROR, "34000");

    /* DEALLOCATE forgets the statement (name folded to lower case, as PostgreSQL does) */
    check(PQexec(c, "DEALLOCATE S1"), PGRES_COMMAND_OK, NULL);
    check(PQexecPrepared(c, "s1", 2, vals, NULL, NULL, 0), PGRES_FATAL_ERROR, "26000");
    check(PQexec(c, "DEALLOCATE s1"), PGRES_FATAL_ERROR, "26000");
    check(PQexec(c, "DEALLOCATE PREPARE \"s2\""), PGRES_COMMAND_OK, NULL);
    check(PQexecPrepared(c, "s2", 1, vals, NULL, NULL, 0), PGRES_FATAL_ERROR, "26000");
    check(PQprepare(c, "s3", "SELECT 3", 0, NULL), PGRES_COMMAND_OK, NULL);
    check(PQexec(c, "DEALLOCATE ALL"), PGRES_COMMAND_OK, NULL);
    check(PQexecPrepared(c, "s3", 0, NULL, NULL, NULL, 0), PGRES_FATAL_ERROR, "26000");
    PQfinish(c);
}

static void scripted_errors(void **state)
{
    PGconn *c = connect_ok(*state);
    PGresult *r = PQexec(c, "SELECT fail:40001");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "40001");
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SEVERITY), "ERROR");
    assert_string_equal(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY), "scripted failure 40001");
    PQclear(r);
    const char *one[] = {"1"};
    check(PQexecParams(c, "UPDATE t SET x = $1 -- fail:23505", 1, NULL, one, NULL, NULL, 0),
          PGRES_FATAL_ERROR, "23505");
    /* the rest of a failed simple query is not run */
    assert_int_equal(PQsendQuery(c, "SELECT 1; SELECT fail:22012; SELECT 3"), 1);
    check_rows(PQgetResult(c), 1, one);
    check(PQgetResult(c), PGRES_FATAL_ERROR, "22012");
    assert_null(PQgetResult(c));
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
    check_rows(PQexec(c, "SELECT 1"), 1, one);
    PQfinish(c);
}

static void transaction_status(void **state)
{
    PGconn *c = connect_ok(*state);
    check(PQexec(c, "BEGIN"), PGRES_COMMAND_OK, NULL);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS);
    check(PQexec(c, "UPDATE t SET x = 1"), PGRES_COMMAND_OK, NULL);
    check(PQexec(c, "COMMIT"), PGRES_COMMAND_OK, NULL);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);

    check(PQexec(c, "BEGIN"), PGRES_COMMAND_OK, NULL);
    check(PQexec(c, "SELECT fail:40P01"), PGRES_FATAL_ERROR, "40P01");
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
    check(PQexec(c, "SELECT 1"), PGRES_FATAL_ERROR, "25P02");
    check(PQexecParams(c, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0), PGRES_FATAL_ERROR, "25P02");
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
    PGresult *r = PQexec(c, "COMMIT");
    assert_string_equal(PQcmdStatus(r), "ROLLBACK"); /* a failed block only rolls back */
    check(r, PGRES_COMMAND_OK, NULL);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);

    /* a transaction opened through the extended protocol, and an error outside one */
    check(PQexecParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0), PGRES_COMMAND_OK, NULL);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS);
    check(PQexec(c, "ROLLBACK"), PGRES_COMMAND_OK, NULL);
    check(PQexecParams(c, "SELECT fail:22P02", 0, NULL, NULL, NULL, NULL, 0), PGRES_FATAL_ERROR, "22P02");
    assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
    PQfinish(c);
}

static void copy_from_stdin(void **state)
{
    PGconn *c = connect_ok(*state);
    check(PQexec(c, "COPY t (a, b) FROM STDIN"), PGRES_COPY_IN, NULL);
    assert_int_equal(PQputCopyData(c, "1\tx\n2\t", 6), 1);
    assert_int_equal(PQputCopyData(c, "y\n3\tz\n", 6), 1); /* a line across two CopyData */
    assert_int_equal(PQputCopyEnd(c, NULL), 1);
    PGresult *r = PQgetResult(c);
    assert_string_equal(PQcmdStatus(r), "COPY 3");
    check(r, PGRES_COMMAND_OK, NULL);
    assert_null(PQgetResult(c));

    check(PQexec(c, "COPY t FROM STDIN"), PGRES_COPY_IN, NULL);
    assert_int_equal(PQputCopyData(c, "1\n", 2), 1);
    assert_int_equal(PQputCopyEnd(c, "client gave up"), 1);
    r = PQgetResult(c);
    assert_non_null(strstr(PQresultErrorMessage(r), "client gave up"));
    check(r, PGRES_FATAL_ERROR, "57014");
    assert_null(PQgetResult(c));

    /* statements after the COPY in the same query run once the data is in */
    assert_int_equal(PQsendQuery(c, "BEGIN; COPY t FROM STDIN; SELECT rows:2"), 1);
    check(PQgetResult(c), PGRES_COMMAND_OK, NULL);
    check(PQgetResult(c), PGRES_COPY_IN, NULL);
    assert_int_equal(PQputCopyData(c, "a\nb\n", 4), 1);
    assert_int_equal(PQputCopyEnd(c, NULL), 1);
    check(PQgetResult(c), PGRES_COMMAND_OK, NULL);
    check_rows(PQgetResult(c), 2, (const char *[]){"1", "2"});
    assert_null(PQgetResult(c));
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INTRANS);
    check(PQexec(c, "COMMIT"), PGRES_COMMAND_OK, NULL);
    PQfinish(c);
}

/* --- pipeline mode ------------------------------------------------------------------------- */

/* An error aborts the rest of its sync segment only: what follows the Sync runs. */
static void pipeline_results_in_order(void **state)
{
    PGconn *c = connect_pipeline(*state);
    send_params(c, "SELECT $1", "a");
    send_params(c, "SELECT $1::text AS echo", "b");
    send_params(c, "UPDATE t SET x = $1 -- fail:22012", "c");
    send_params(c, "SELECT $1", "d");
    send_params(c, "SELECT rows:2", NULL);
    assert_int_equal(PQpipelineSync(c), 1);
    send_params(c, "SELECT $1", "e");
    send_params(c, "INSERT INTO t VALUES ($1)", "f");
    assert_int_equal(PQpipelineSync(c), 1);

    expect_rows(c, "a");
    expect_rows(c, "b");
    expect_status(c, PGRES_FATAL_ERROR, "22012");
    expect_status(c, PGRES_PIPELINE_ABORTED, NULL);
    expect_status(c, PGRES_PIPELINE_ABORTED, NULL);
    expect_status(c, PGRES_PIPELINE_SYNC, NULL);
    expect_rows(c, "e");
    expect_status(c, PGRES_COMMAND_OK, NULL);
    expect_status(c, PGRES_PIPELINE_SYNC, NULL);
    assert_int_equal(PQpipelineStatus(c), PQ_PIPELINE_ON);

    struct fakepg_stats st = fakepg_stats(*state);
    assert_int_equal(st.parses, 5); /* d and rows:2 were skipped until the Sync */
    assert_int_equal(st.executes, 5);
    assert_int_equal(st.syncs, 2);
    PQfinish(c);
}

/* The sequence pgconn.c sends: DEALLOCATE, Parse, Describe, then Bind/Execute, each segment
 * closed by a Sync. */
static void pipeline_prepared_statements(void **state)
{
    PGconn *c = connect_pipeline(*state);
    assert_int_equal(PQsendPrepare(c, "s1", "SELECT $1::int + 0 -- echo", 0, NULL), 1);
    assert_int_equal(PQsendDescribePrepared(c, "s1"), 1);
    assert_int_equal(PQpipelineSync(c), 1);
    const char *vals[] = {"5"};
    assert_int_equal(PQsendQueryPrepared(c, "s1", 1, vals, NULL, NULL, 0), 1);
    send_params(c, "DEALLOCATE s1", NULL);
    assert_int_equal(PQsendQueryPrepared(c, "s1", 1, vals, NULL, NULL, 0), 1);
    assert_int_equal(PQpipelineSync(c), 1);

    expect_status(c, PGRES_COMMAND_OK, NULL);
    PGresult *r = next_result(c);
    assert_int_equal(PQnparams(r), 1);
    assert_int_equal(PQparamtype(r, 0), 25);
    check(r, PGRES_COMMAND_OK, NULL);
    assert_null(next_result(c));
    expect_status(c, PGRES_PIPELINE_SYNC, NULL);
    expect_rows(c, "5");
    expect_status(c, PGRES_COMMAND_OK, NULL);
    expect_status(c, PGRES_FATAL_ERROR, "26000");
    expect_status(c, PGRES_PIPELINE_SYNC, NULL);
    PQfinish(c);
}

/* Hundreds of queued queries and a megabyte-sized parameter: partial reads and writes on both
 * sides. */
static void pipeline_large(void **state)
{
    PGconn *c = connect_pipeline(*state);
    enum { N = 400, BIG = 1 << 20 };
    char *big = malloc(BIG + 1);
    assert_non_null(big);
    memset(big, 'q', BIG);
    big[BIG] = '\0';
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        send_params(c, "SELECT $1", i == N / 2 ? big : v);
        if (i % 50 == 49) assert_int_equal(PQpipelineSync(c), 1);
    }
    send_params(c, "SELECT rows:1000", NULL);
    assert_int_equal(PQpipelineSync(c), 1);
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        expect_rows(c, i == N / 2 ? big : v);
        if (i % 50 == 49) expect_status(c, PGRES_PIPELINE_SYNC, NULL);
    }
    PGresult *r = next_result(c);
    assert_int_equal(PQntuples(r), 1000);
    assert_string_equal(PQgetvalue(r, 999, 0), "1000");
    check(r, PGRES_TUPLES_OK, NULL);
    assert_null(next_result(c));
    expect_status(c, PGRES_PIPELINE_SYNC, NULL);
    free(big);
    PQfinish(c);
}

/* A sleeping statement holds back what was pipelined after it, but not other connections. */
static void sleep_delays_only_its_connection(void **state)
{
    struct fakepg *f = *state;
    PGconn *a = connect_pipeline(f), *b = connect_ok(f);
    int64_t start = now_ms();
    send_params(a, "SELECT $1 -- sleep:1000", "slow");
    send_params(a, "SELECT $1", "after");
    assert_int_equal(PQpipelineSync(a), 1);
    assert_int_equal(PQflush(a), 0);
    wait_stats(f, executes_reach, 1);
    check_rows(PQexec(b, "SELECT rows:2"), 2, (const char *[]){"1", "2"});
    assert_true(now_ms() - start < 1000);
    assert_int_equal(PQconsumeInput(a), 1);
    assert_true(PQisBusy(a));
    expect_rows(a, "slow");
    assert_true(now_ms() - start >= 1000);
    expect_rows(a, "after");
    expect_status(a, PGRES_PIPELINE_SYNC, NULL);

    /* in a simple query the statements after the sleeping one wait for it too */
    start = now_ms();
    assert_int_equal(PQsendQuery(b, "SELECT rows:1; UPDATE sleep:100; SELECT 2"), 1);
    check_rows(PQgetResult(b), 1, (const char *[]){"1"});
    check(PQgetResult(b), PGRES_COMMAND_OK, NULL);
    assert_true(now_ms() - start >= 100);
    check_rows(PQgetResult(b), 1, (const char *[]){"1"});
    assert_null(PQgetResult(b));
    PQfinish(a);
    PQfinish(b);
}

static void cancel_ends_a_sleep(void **state)
{
    struct fakepg *f = *state;
    PGconn *c = connect_ok(f);
    PGcancel *cancel = PQgetCancel(c);
    char err[256];
    int64_t start = now_ms();
    assert_int_equal(PQsendQuery(c, "BEGIN; SELECT sleep:20000; SELECT 3"), 1);
    wait_stats(f, queries_reach, 1);
    check(PQgetResult(c), PGRES_COMMAND_OK, NULL);
    assert_int_equal(PQcancel(cancel, err, sizeof err), 1);
    PGresult *r = PQgetResult(c);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY),
                        "canceling statement due to user request");
    check(r, PGRES_FATAL_ERROR, "57014");
    assert_null(PQgetResult(c));
    assert_true(now_ms() - start < 10000);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
    check(PQexec(c, "ROLLBACK"), PGRES_COMMAND_OK, NULL);

    /* with nothing sleeping, a cancel changes nothing */
    assert_int_equal(PQcancel(cancel, err, sizeof err), 1);
    check_rows(PQexec(c, "SELECT 1"), 1, (const char *[]){"1"});
    assert_int_equal(fakepg_stats(f).cancels, 2);
    PQfreeCancel(cancel);
    PQfinish(c);
}

static void cancel_in_a_pipeline(void **state)
{
    struct fakepg *f = *state;
    PGconn *c = connect_pipeline(f);
    send_params(c, "SELECT $1 -- sleep:20000", "slow");
    send_params(c, "SELECT $1", "skipped");
    assert_int_equal(PQpipelineSync(c), 1);
    send_params(c, "SELECT $1", "next");
    assert_int_equal(PQpipelineSync(c), 1);
    assert_int_equal(PQflush(c), 0);
    wait_stats(f, executes_reach, 1);
    PGcancel *cancel = PQgetCancel(c);
    char err[256];
    assert_int_equal(PQcancel(cancel, err, sizeof err), 1);
    PQfreeCancel(cancel);
    expect_status(c, PGRES_FATAL_ERROR, "57014");
    expect_status(c, PGRES_PIPELINE_ABORTED, NULL);
    expect_status(c, PGRES_PIPELINE_SYNC, NULL);
    expect_rows(c, "next");
    expect_status(c, PGRES_PIPELINE_SYNC, NULL);
    PQfinish(c);
}

/* --- failures and control ------------------------------------------------------------------ */

static void refused_connections_fail(void **state)
{
    struct fakepg *f = *state;
    fakepg_refuse(f, true);
    PGconn *c = PQconnectdb(fakepg_conninfo(f));
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);
    fakepg_refuse(f, false);
    c = connect_ok(f);
    PQfinish(c);
    assert_true(fakepg_stats(f).accepted >= 2);
}

static void kill_all_drops_every_connection(void **state)
{
    struct fakepg *f = *state;
    PGconn *a = connect_ok(f), *b = connect_pipeline(f);
    assert_int_equal(fakepg_stats(f).open, 2);
    fakepg_kill_all(f);
    assert_int_equal(fakepg_stats(f).open, 0);
    PGresult *r = PQexec(a, "SELECT 1");
    assert_true(r == NULL || PQresultStatus(r) == PGRES_FATAL_ERROR);
    PQclear(r);
    assert_int_equal(PQstatus(a), CONNECTION_BAD);
    send_params(b, "SELECT 1", NULL);
    PQpipelineSync(b);
    check(next_result(b), PGRES_FATAL_ERROR, NULL);
    assert_int_equal(PQstatus(b), CONNECTION_BAD);
    PQfinish(a);
    PQfinish(b);
    a = connect_ok(f); /* the server itself goes on */
    check_rows(PQexec(a, "SELECT 1"), 1, (const char *[]){"1"});
    PQfinish(a);
}

static void die_closes_the_connection(void **state)
{
    struct fakepg *f = *state;
    PGconn *c = connect_ok(f);
    PGresult *r = PQexec(c, "SELECT die");
    assert_true(r == NULL || PQresultStatus(r) == PGRES_FATAL_ERROR);
    PQclear(r);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);

    /* what was answered before the statement still arrives */
    c = connect_pipeline(f);
    send_params(c, "SELECT $1", "before");
    assert_int_equal(PQpipelineSync(c), 1);
    send_params(c, "UPDATE t SET x = $1 -- die", "x");
    assert_int_equal(PQpipelineSync(c), 1);
    expect_rows(c, "before");
    expect_status(c, PGRES_PIPELINE_SYNC, NULL);
    r = next_result(c);
    assert_true(r == NULL || PQresultStatus(r) == PGRES_FATAL_ERROR);
    PQclear(r);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);
    wait_stats(f, open_is, 0);
}

static void standby_flag(void **state)
{
    struct fakepg *f = *state;
    PGconn *old = connect_ok(f);
    fakepg_set_standby(f, true);
    PGconn *c = connect_ok(f);
    assert_string_equal(PQparameterStatus(c, "in_hot_standby"), "on");
    assert_string_equal(PQparameterStatus(old, "in_hot_standby"), "off");
    check_rows(PQexec(old, "SELECT 1"), 1, (const char *[]){"1"}); /* told before its ReadyForQuery */
    assert_string_equal(PQparameterStatus(old, "in_hot_standby"), "on");

    check(PQexec(c, "UPDATE t SET x = 1 -- readonly"), PGRES_FATAL_ERROR, "25006");
    check_rows(PQexec(c, "SELECT readonly"), 1, (const char *[]){"1"});
    check(PQexec(c, "UPDATE t SET x = 1"), PGRES_COMMAND_OK, NULL); /* only scripted ones fail */

    fakepg_set_standby(f, false);
    check(PQexec(c, "UPDATE t SET x = 1 -- readonly"), PGRES_COMMAND_OK, NULL);
    assert_string_equal(PQparameterStatus(c, "in_hot_standby"), "off");
    PQfinish(c);
    PQfinish(old);

    /* libpq's own check of target_session_attrs reads the same reports */
    char info[256];
    fakepg_set_standby(f, true);
    snprintf(info, sizeof info, "%s target_session_attrs=read-write", fakepg_conninfo(f));
    c = PQconnectdb(info);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);
    snprintf(info, sizeof info, "%s target_session_attrs=standby", fakepg_conninfo(f));
    c = PQconnectdb(info);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQfinish(c);
}

static void many_connections(void **state)
{
    struct fakepg *f = *state;
    enum { N = 24 };
    PGconn *c[N];
    for (int i = 0; i < N; i++) c[i] = connect_pipeline(f);
    assert_int_equal(fakepg_stats(f).open, N);
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        send_params(c[i], "SELECT $1 -- sleep:50", v);
        assert_int_equal(PQpipelineSync(c[i]), 1);
    }
    int64_t start = now_ms();
    for (int i = 0; i < N; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        expect_rows(c[i], v);
        expect_status(c[i], PGRES_PIPELINE_SYNC, NULL);
    }
    assert_true(now_ms() - start < 50 * N); /* the sleeps overlap */
    for (int i = 0; i < N; i++) PQfinish(c[i]);
    wait_stats(f, open_is, 0);
}

/* Reads one message from a raw socket; returns its type. */
static char read_msg(int fd)
{
    unsigned char head[5];
    char body[1024];
    assert_int_equal(recv(fd, head, 5, MSG_WAITALL), 5);
    uint32_t len = (uint32_t)head[1] << 24 | (uint32_t)head[2] << 16 | (uint32_t)head[3] << 8 | head[4];
    assert_true(len >= 4 && len - 4 <= sizeof body);
    if (len > 4) assert_int_equal(recv(fd, body, len - 4, MSG_WAITALL), (ssize_t)(len - 4));
    return (char)head[0];
}

/* Writes a message of the given type; body is `n` bytes. */
static void write_msg(int fd, char type, const char *body, size_t n)
{
    unsigned char out[256];
    uint32_t len = htonl((uint32_t)n + 4);
    out[0] = (unsigned char)type;
    memcpy(out + 1, &len, 4);
    memcpy(out + 5, body, n);
    assert_int_equal(write(fd, out, n + 5), (ssize_t)(n + 5));
}

#define WRITE_MSG(fd, type, literal) write_msg(fd, type, literal, sizeof literal - 1)

/* Raw bytes: encryption requests are declined, Close (which libpq 15 cannot send) forgets a
 * statement, and broken or half-sent packets only cost the connection that sent them. */
static void raw_protocol(void **state)
{
    struct fakepg *f = *state;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)fakepg_port(f))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const unsigned char gss[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30},
                               ssl[] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f};
    static const unsigned char startup[] = {0,   0,   0, 19,  0,   3,   0,   0, 'u', 's',
                                            'e', 'r', 0, 't', 'e', 's', 't', 0, 0};
    static const unsigned char garbage[] = {'Q', 0x7f, 0xff, 0xff, 0xff, 'x'};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char byte;
    assert_int_equal(write(fd, gss, sizeof gss), sizeof gss);
    assert_int_equal(read(fd, &byte, 1), 1);
    assert_int_equal(byte, 'N');
    assert_int_equal(write(fd, ssl, sizeof ssl), sizeof ssl);
    assert_int_equal(read(fd, &byte, 1), 1);
    assert_int_equal(byte, 'N');
    assert_int_equal(write(fd, startup, sizeof startup), sizeof startup);
    assert_int_equal(read_msg(fd), 'R'); /* AuthenticationOk */
    while (read_msg(fd) != 'Z') {
    }
    WRITE_MSG(fd, 'P', "a\0SELECT 1\0\0\0");
    WRITE_MSG(fd, 'C', "Sa\0");
    WRITE_MSG(fd, 'B', "\0a\0\0\0\0\0\0\0");
    WRITE_MSG(fd, 'E', "\0\0\0\0\0"); /* skipped after the error */
    WRITE_MSG(fd, 'S', "");
    WRITE_MSG(fd, 'C', "Pnone\0");
    WRITE_MSG(fd, 'H', "");
    WRITE_MSG(fd, 'S', "");
    static const char want[] = "13EZ3Z";
    for (const char *w = want; *w; w++) assert_int_equal(read_msg(fd), *w);
    assert_int_equal(write(fd, garbage, sizeof garbage), sizeof garbage);
    char buf[4096];
    while (read(fd, buf, sizeof buf) > 0) {
    } /* the server hangs up */
    close(fd);

    fd = socket(AF_INET, SOCK_STREAM, 0); /* half a startup packet, then gone */
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(write(fd, startup, 6), 6);
    close(fd);
    PGconn *c = connect_ok(f);
    check_rows(PQexec(c, "SELECT 1"), 1, (const char *[]){"1"});
    PQfinish(c);
    wait_stats(f, open_is, 0);
}

/* Stopping with clients still connected closes them and frees everything. */
static void stop_with_open_connections(void **state)
{
    struct fakepg *f = fakepg_start();
    PGconn *c = connect_ok(f), *p = connect_pipeline(f);
    send_params(p, "SELECT $1 -- sleep:20000", "never");
    assert_int_equal(PQpipelineSync(p), 1);
    assert_int_equal(PQflush(p), 0);
    wait_stats(f, executes_reach, 1);
    fakepg_stop(f);
    PGresult *r = PQexec(c, "SELECT 1");
    assert_true(r == NULL || PQresultStatus(r) == PGRES_FATAL_ERROR);
    PQclear(r);
    assert_int_equal(PQstatus(c), CONNECTION_BAD);
    PQfinish(c);
    PQfinish(p);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(startup_reports_parameters),
        T(simple_queries),
        T(params_are_echoed),
        T(prepared_statements),
        T(scripted_errors),
        T(transaction_status),
        T(copy_from_stdin),
        T(pipeline_results_in_order),
        T(pipeline_prepared_statements),
        T(pipeline_large),
        T(sleep_delays_only_its_connection),
        T(cancel_ends_a_sleep),
        T(cancel_in_a_pipeline),
        T(refused_connections_fail),
        T(kill_all_drops_every_connection),
        T(die_closes_the_connection),
        T(standby_flag),
        T(many_connections),
        T(raw_protocol),
        cmocka_unit_test(stop_with_open_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
