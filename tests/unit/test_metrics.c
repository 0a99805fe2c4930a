/* test_metrics.c — the Prometheus exposition helpers (escaping, histograms), request accounting
 * (statuses, slow queries, the newest error), the slow-query log line and hook, and a whole
 * exposition summed over two workers of a hand-built server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <libpq-fe.h>
#include <luajit.h>
#include <lualib.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "endpoint.h"
#include "fakeserver.h"
#include "log.h"
#include "metrics.h"
#include "reqstats.h"
#include "server.h"
#include "util.h"
#include "version.h"

/* Fails unless text contains line as a whole line. */
static void assert_has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0')) return;
    fail_msg("missing line [%s] in:\n%s", line, text);
}

static void test_label_escaping(void **state)
{
    struct buf b = BUF_INIT;
    metrics_label_value(&b, "plain");
    assert_string_equal(b.data, "plain");
    buf_reset(&b);
    metrics_label_value(&b, "a\\b\"c\nd");
    assert_string_equal(b.data, "a\\\\b\\\"c\\nd");
    buf_reset(&b);
    metrics_label_value(&b, "tab\tand unicode \xc3\xa9 stay");
    assert_string_equal(b.data, "tab\tand unicode \xc3\xa9 stay");
    buf_reset(&b);
    metrics_label(&b, "pool", "primary");
    metrics_label(&b, "query", "say \"hi\"");
    assert_string_equal(b.data, "pool=\"primary\",query=\"say \\\"hi\\\"\"");
    buf_free(&b);
}

static void test_family_and_samples(void **state)
{
    struct buf b = BUF_INIT;
    metrics_family(&b, "x_total", "counter", "Line one\nline two with a \\ and \"quotes\".");
    assert_string_equal(b.data, "# HELP x_total Line one\\nline two with a \\\\ and \"quotes\".\n"
                                "# TYPE x_total counter\n");
    buf_reset(&b);
    metrics_sample_u64(&b, "x_total", NULL, 18446744073709551615ULL);
    metrics_sample_u64(&b, "x_total", "", 0);
    metrics_sample_u64(&b, "x_total", "a=\"1\"", 7);
    metrics_sample(&b, "g", NULL, 0.1 + 0.2);
    metrics_sample(&b, "g", "a=\"1\"", 2.5);
    metrics_sample(&b, "g", NULL, 1e21);
    metrics_sample(&b, "g", NULL, -3);
    assert_string_equal(b.data, "x_total 18446744073709551615\n"
                                "x_total 0\n"
                                "x_total{a=\"1\"} 7\n"
                                "g 0.30000000000000004\n"
                                "g{a=\"1\"} 2.5\n"
                                "g 1e+21\n"
                                "g -3\n");
    buf_free(&b);
}

static void test_histogram_rendering(void **state)
{
    struct histogram h = {0};
    histogram_observe(&h, 0.000244140625); /* le 0.0005 */
    histogram_observe(&h, 0.00390625);     /* le 0.005 */
    histogram_observe(&h, 0.25);           /* le 0.25: a bound is inclusive */
    histogram_observe(&h, 0.375);          /* le 0.5 */
    histogram_observe(&h, 20);             /* beyond 10: only +Inf */
    struct buf b = BUF_INIT;
    metrics_histogram(&b, "t_seconds", "pool=\"p\"", &h);
    assert_string_equal(b.data, "t_seconds_bucket{pool=\"p\",le=\"0.0005\"} 1\n"
                                "t_seconds_bucket{pool=\"p\",le=\"0.001\"} 1\n"
                                "t_seconds_bucket{pool=\"p\",le=\"0.0025\"} 1\n"
                                "t_seconds_bucket{pool=\"p\",le=\"0.005\"} 2\n"
                                "t_seconds_bucket{pool=\"p\",le=\"0.01\"} 2\n"
                                "t_seconds_bucket{pool=\"p\",le=\"0.025\"} 2\n"
                                "t_seconds_bucket{pool=\"p\",le=\"0.05\"} 2\n"
                                "t_seconds_bucket{pool=\"p\",le=\"0.1\"} 2\n"
                                "t_seconds_bucket{pool=\"p\",le=\"0.25\"} 3\n"
                                "t_seconds_bucket{pool=\"p\",le=\"0.5\"} 4\n"
                                "t_seconds_bucket{pool=\"p\",le=\"1\"} 4\n"
                                "t_seconds_bucket{pool=\"p\",le=\"2.5\"} 4\n"
                                "t_seconds_bucket{pool=\"p\",le=\"5\"} 4\n"
                                "t_seconds_bucket{pool=\"p\",le=\"10\"} 4\n"
                                "t_seconds_bucket{pool=\"p\",le=\"+Inf\"} 5\n"
                                "t_seconds_sum{pool=\"p\"} 20.629150390625\n"
                                "t_seconds_count{pool=\"p\"} 5\n");

    /* _count is the +Inf bucket even when a torn snapshot's count field lags the buckets */
    h.count = 4;
    buf_reset(&b);
    metrics_histogram(&b, "t_seconds", NULL, &h);
    assert_has_line(b.data, "t_seconds_bucket{le=\"+Inf\"} 5");
    assert_has_line(b.data, "t_seconds_count 5");

    /* without labels, le is the only one; an empty histogram is all zeros */
    struct histogram empty = {0};
    buf_reset(&b);
    metrics_histogram(&b, "e_seconds", NULL, &empty);
    assert_has_line(b.data, "e_seconds_bucket{le=\"0.0005\"} 0");
    assert_has_line(b.data, "e_seconds_bucket{le=\"+Inf\"} 0");
    assert_has_line(b.data, "e_seconds_sum 0");
    assert_has_line(b.data, "e_seconds_count 0");
    buf_free(&b);
}

static void test_status_mapping(void **state)
{
    assert_int_equal(metrics_status_of(200), METRICS_OK);
    assert_int_equal(metrics_status_of(204), METRICS_OK);
    assert_int_equal(metrics_status_of(400), METRICS_BAD_REQUEST);
    assert_int_equal(metrics_status_of(404), METRICS_NOT_FOUND);
    assert_int_equal(metrics_status_of(405), METRICS_METHOD_NOT_ALLOWED);
    assert_int_equal(metrics_status_of(409), METRICS_CONFLICT);
    assert_int_equal(metrics_status_of(415), METRICS_UNSUPPORTED_MEDIA_TYPE);
    assert_int_equal(metrics_status_of(503), METRICS_UNAVAILABLE);
    assert_int_equal(metrics_status_of(504), METRICS_TIMEOUT);
    assert_int_equal(metrics_status_of(500), METRICS_INTERNAL);
    assert_int_equal(metrics_status_of(502), METRICS_INTERNAL);
    assert_string_equal(metrics_status_name(METRICS_OK), "ok");
    assert_string_equal(metrics_status_name(METRICS_CONFLICT), "conflict");
    assert_string_equal(metrics_status_name(METRICS_TIMEOUT), "timeout");
    assert_string_equal(metrics_status_name(METRICS_INTERNAL), "internal");
    assert_string_equal(metrics_status_name(-1), "internal");
    assert_string_equal(metrics_status_name(METRICS_NSTATUS), "internal");
}

static struct query_def *new_query(const char *name, const char *sql)
{
    char err[128];
    struct query_def *q = query_def_new(name, sql, NULL, err, sizeof err);
    if (q == NULL) fail_msg("query_def_new: %s", err);
    return q;
}

/* The fake gateway, with an "add_item" query and a "ticks" bulk load on pool_name per worker. */
static struct fakeserver *fake_new(const char *pool_name)
{
    struct fakeserver *f = fakeserver_new(pool_name);
    for (int i = 0; i < 2; i++) {
        struct worker *w = &f->srv.workers[i];
        struct query_def *q = new_query("add_item", "INSERT INTO t VALUES (:id)");
        q->pool = xstrdup(pool_name);
        q->slow_ms = 250;
        registry_add(w->reg, q);
        struct bulk_def *d = xcalloc(1, sizeof *d);
        d->name = xstrdup("ticks");
        d->pool = xstrdup(pool_name);
        registry_add_bulk(w->reg, d);
    }
    return f;
}

static void test_query_accounting(void **state)
{
    struct fakeserver *f = fake_new("primary");
    struct worker *w = &f->srv.workers[0];
    struct query_def *q = w->reg->queries[0];
    q->slow_ms = 1000;
    uint64_t us = 0;
    assert_false(metrics_query_done(w, q, 0, 200, now_us(), NULL, &us));
    assert_true(us < 1000000);
    assert_true(metrics_query_done(w, q, 0, 409, now_us() - 1500000, "duplicate key", &us)); /* 1.5 s: slow */
    assert_true(us >= 1500000);
    assert_false(metrics_query_done(w, q, 0, 400, now_us() - 999000, "bad", &us)); /* under the threshold */
    struct query_totals t;
    metrics_query_totals(&f->srv, "add_item", &t);
    assert_int_equal(t.status[METRICS_OK], 1);
    assert_int_equal(t.status[METRICS_CONFLICT], 1);
    assert_int_equal(t.status[METRICS_BAD_REQUEST], 1);
    assert_int_equal(t.calls, 3);
    assert_int_equal(t.errors, 2);
    assert_int_equal(t.slow, 1);
    assert_int_equal(t.time.count, 3);
    assert_int_equal(t.time.counts[HISTOGRAM_BUCKETS - 3], 1); /* 1.5 s: le 2.5 */
    assert_string_equal(t.last_error, "bad");
    assert_int_equal(q->calls, 3);
    assert_int_equal(q->errors, 2);
    q->slow_ms = 0; /* off */
    assert_false(metrics_query_done(w, q, 0, 200, now_us() - 60000000, NULL, &us));
    metrics_query_exec(w, q, 0, 2000);
    metrics_query_totals(&f->srv, "add_item", &t);
    assert_int_equal(t.exec.count, 1);
    assert_int_equal(t.exec.counts[2], 1); /* 2 ms: le 0.0025 */
    assert_int_equal(t.slow, 1);

    /* a reload's new definition of the same name continues the same counters */
    struct query_def *again = new_query("add_item", "INSERT INTO t VALUES (:id)");
    metrics_query_done(w, again, 0, 200, now_us(), NULL, &us);
    metrics_query_totals(&f->srv, "add_item", &t);
    assert_int_equal(t.calls, 5);
    query_def_free(again);
    /* pools out of range are ignored, not a crash */
    assert_false(metrics_query_done(w, q, 7, 200, now_us() - 60000000, NULL, &us));
    metrics_query_exec(w, q, -1, 10);
    metrics_query_totals(&f->srv, "add_item", &t);
    assert_int_equal(t.calls, 5);
    fakeserver_free(f);
}

/* Every line is a comment or `name{labels} value`; every family has HELP then TYPE. */
static void assert_well_formed(const char *text)
{
    regex_t sample, help, type;
    assert_int_equal(regcomp(&sample,
                             "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
                             "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})? "
                             "(-?[0-9.e+-]+|\\+Inf|-Inf|NaN)$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    assert_int_equal(regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$", REG_EXTENDED | REG_NOSUB), 0);
    assert_int_equal(regcomp(&type, "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram)$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    char *copy = xstrdup(text), *save = NULL;
    int helps = 0, types = 0;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        regex_t *re = strncmp(line, "# HELP", 6) == 0   ? &help
                      : strncmp(line, "# TYPE", 6) == 0 ? &type
                                                        : &sample;
        helps += re == &help;
        types += re == &type;
        if (regexec(re, line, 0, NULL, 0) != 0) fail_msg("malformed line [%s]", line);
    }
    assert_int_equal(helps, types);
    free(copy);
    regfree(&sample);
    regfree(&help);
    regfree(&type);
}

static void test_render_sums_workers(void **state)
{
    struct fakeserver *f = fake_new("pri\"m\\ary");
    struct worker *w0 = &f->srv.workers[0], *w1 = &f->srv.workers[1];
    struct query_def *q0 = w0->reg->queries[0], *q1 = w1->reg->queries[0];
    uint64_t us;
    metrics_query_done(w0, q0, 0, 200, now_us(), NULL, &us);
    metrics_query_done(w1, q1, 0, 200, now_us(), NULL, &us);
    metrics_query_done(w1, q1, 0, 409, now_us(), "duplicate key value", &us);
    metrics_query_exec(w0, q0, 0, 1000);
    metrics_query_exec(w1, q1, 0, 1000);
    metrics_query_done(w1, q1, 1, 200, now_us(), NULL, &us); /* sluice.route sent one to the replica */
    metrics_query_exec(w1, q1, 1, 1000);
    metrics_bulk_done(w0, w0->reg->bulks[0], true, 1000, now_us());
    metrics_bulk_done(w1, w1->reg->bulks[0], false, 10, now_us());
    w0->pools[0].conns[PGCONN_PIPELINE].n = 1; /* counts only: the lists stay empty */
    w0->pools[0].conns[PGCONN_IDLE].n = 1;
    w0->pools[0].conns[PGCONN_CONNECTING].n = 1;
    w1->pools[0].conns[PGCONN_PIPELINE].n = 2;
    w1->pools[0].qlen = 5;
    w0->pools[0].stmts_prepared = 2;
    w1->pools[0].stmts_prepared = 1;
    w0->pools[0].deadlocks = 1;
    w0->pools[0].connect_errors = 2;
    w1->pools[0].conn_lost = 1;
    histogram_observe(&w0->pools[0].acquire, 0.0001);
    histogram_observe(&w1->pools[0].acquire, 0.2);
    histogram_observe(&w0->pools[0].failover_wait, 1.5);
    histogram_observe(&w1->pools[0].failover_wait, 0.3);
    struct pool_shared shared = {.role_changes = 2};
    w0->pools[0].shared = w1->pools[0].shared = &shared; /* what the workers of a pool share */
    reqstats_count(w0, "query/add_item", REQSTATS_POST, 200, 0.002);
    reqstats_count(w1, "query/add_item", REQSTATS_POST, 200, 0.02);
    reqstats_count(w1, "query/add_item", REQSTATS_POST, 409, 0.003);
    reqstats_count(w1, "unknown", REQSTATS_OTHER, 405, 0.0001);

    struct buf b = BUF_INIT;
    metrics_render(&f->srv, &b);
    const char *P = "pool=\"pri\\\"m\\\\ary\"";
    char line[256];
#define HAS(...)                                                                                             \
    do {                                                                                                     \
        snprintf(line, sizeof line, __VA_ARGS__);                                                            \
        assert_has_line(b.data, line);                                                                       \
    } while (0)
    HAS("# TYPE db_pool_size gauge");
    HAS("db_pool_size{%s} 4", P);
    HAS("db_pool_size{pool=\"replica\"} 2");
    HAS("db_pool_usage{%s} 3", P);
    HAS("db_connection_time_seconds_bucket{%s,le=\"0.0005\"} 1", P);
    HAS("db_connection_time_seconds_bucket{%s,le=\"+Inf\"} 2", P);
    HAS("db_connection_time_seconds_count{%s} 2", P);
    HAS("prepared_stmt_cache_size{%s} 3", P);
    HAS("# TYPE prepared_stmt_execution_time_seconds histogram");
    HAS("prepared_stmt_execution_time_seconds_count{%s,query=\"add_item\"} 2", P);
    HAS("prepared_stmt_executions_total{%s,query=\"add_item\"} 2", P);
    HAS("# TYPE bulk_operation_time_seconds histogram");
    HAS("bulk_operation_time_seconds_count{%s,operation=\"ticks\"} 1", P);
    HAS("bulk_operation_rows_total{%s,operation=\"ticks\"} 1010", P);
    HAS("bulk_operation_executions_total{%s,operation=\"ticks\"} 1", P);
    HAS("sluice_bulk_operation_errors_total{%s,operation=\"ticks\"} 1", P);
    HAS("db_query_time_seconds_count{%s,query=\"add_item\"} 3", P);
    HAS("# TYPE db_query_count counter");
    HAS("db_query_count{%s,query=\"add_item\",status=\"ok\"} 2", P);
    HAS("db_query_count{%s,query=\"add_item\",status=\"conflict\"} 1", P);
    HAS("db_query_count{pool=\"replica\",query=\"add_item\",status=\"ok\"} 1");
    HAS("prepared_stmt_executions_total{pool=\"replica\",query=\"add_item\"} 1");
    HAS("db_slow_query_count{pool=\"replica\",query=\"add_item\"} 0");
    assert_null(strstr(b.data, "pool=\"replica\",operation=")); /* no bulk load ran there */
    assert_null(strstr(b.data, "status=\"timeout\""));          /* statuses never seen are left out */
    HAS("db_slow_query_count{%s,query=\"add_item\"} 0", P);
    HAS("db_deadlock_count{%s} 1", P);
    HAS("db_connection_errors{%s} 3", P);
    HAS("sluice_pool_connections{%s,state=\"open\"} 4", P);
    HAS("sluice_pool_connections{%s,state=\"connecting\"} 1", P);
    HAS("sluice_pool_waiting{%s} 5", P);
    HAS("# TYPE sluice_pool_role_changes_total counter");
    HAS("sluice_pool_role_changes_total{%s} 2", P); /* shared: counted once, not per worker */
    HAS("sluice_pool_role_changes_total{pool=\"replica\"} 0");
    HAS("# TYPE sluice_failover_wait_seconds histogram");
    HAS("sluice_failover_wait_seconds_bucket{%s,le=\"0.25\"} 0", P);
    HAS("sluice_failover_wait_seconds_bucket{%s,le=\"0.5\"} 1", P);
    HAS("sluice_failover_wait_seconds_count{%s} 2", P);
    HAS("sluice_http_requests_total{endpoint=\"query/add_item\",method=\"POST\",code=\"200\"} 2");
    HAS("sluice_http_requests_total{endpoint=\"query/add_item\",method=\"POST\",code=\"409\"} 1");
    HAS("sluice_http_requests_total{endpoint=\"unknown\",method=\"other\",code=\"405\"} 1");
    HAS("# TYPE sluice_http_request_duration_seconds histogram");
    /* one histogram per endpoint and method, over every status and worker */
    HAS("sluice_http_request_duration_seconds_bucket{endpoint=\"query/"
        "add_item\",method=\"POST\",le=\"0.0025\"} 1");
    HAS("sluice_http_request_duration_seconds_bucket{endpoint=\"query/"
        "add_item\",method=\"POST\",le=\"0.005\"} 2");
    HAS("sluice_http_request_duration_seconds_count{endpoint=\"query/add_item\",method=\"POST\"} 3");
    HAS("sluice_build_info{version=\"%s\",h2o=\"%s\",libpq=\"%d.%d\",luajit=\"%s\"} 1", SLUICE_VERSION,
        H2O_VERSION, PQlibVersion() / 10000, PQlibVersion() % 10000, LUAJIT_VERSION);
    HAS("sluice_workers 2");
    HAS("# TYPE process_resident_memory_bytes gauge");
    HAS("# TYPE process_open_fds gauge");
    assert_non_null(strstr(b.data, "\nprocess_resident_memory_bytes "));
    assert_well_formed(b.data);

    /* the newest error over the workers, and the totals /admin/queries shows */
    struct query_totals t;
    metrics_query_done(w0, q0, 0, 503, now_us(), "no database connection within pool_timeout", &us);
    metrics_query_totals(&f->srv, "add_item", &t);
    assert_int_equal(t.calls, 5);
    assert_int_equal(t.errors, 2);
    assert_int_equal(t.status[METRICS_UNAVAILABLE], 1);
    assert_int_equal(t.time.count, 5);
    assert_string_equal(t.last_error, "no database connection within pool_timeout");
    metrics_query_totals(&f->srv, "nope", &t);
    assert_int_equal(t.calls, 0);
    assert_string_equal(t.last_error, "");
    buf_free(&b);
    fakeserver_free(f);
}

/* Runs fn with stderr going to a temp file; returns what was written (malloc'd). */
static char *capture_stderr(void (*fn)(void *), void *arg)
{
    char path[] = "/tmp/test_metrics.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    fn(arg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    char *out = xcalloc(1, (size_t)n + 1);
    assert_int_equal(pread(fd, out, (size_t)n, 0), n);
    close(fd);
    unlink(path);
    return out;
}

static void report_slow(void *arg)
{
    struct worker *w = arg;
    metrics_slow_query(w, w->reg->queries[0], 0, 200, 1500250, "[\"id\"]");
}

static void test_slow_query_log_and_hook(void **state)
{
    struct fakeserver *f = fake_new("primary");
    struct worker *w = &f->srv.workers[0];
    log_setup(LOG_INFO, true);

    /* without a Lua state or hook: the log line only */
    char *out = capture_stderr(report_slow, w);
    if (strstr(out,
               "\"level\":\"warn\",\"msg\":\"slow query\",\"query\":\"add_item\",\"pool\":\"primary\","
               "\"duration_ms\":1500.250,\"threshold_ms\":250,\"status\":200,\"params\":[\"id\"]}") == NULL)
        fail_msg("unexpected slow-query line: %s", out);
    free(out);

    /* the hook gets {query, pool, duration_ms, status} */
    w->reg->L = luaL_newstate();
    luaL_openlibs(w->reg->L);
    assert_int_equal(
        luaL_dostring(w->reg->L,
                      "sluice = {}\n"
                      "function sluice.on_slow_query(ev)\n"
                      "  seen = ev.query .. '|' .. ev.pool .. '|' .. ev.duration_ms .. '|' .. ev.status\n"
                      "end"),
        0);
    free(capture_stderr(report_slow, w));
    lua_getglobal(w->reg->L, "seen");
    assert_string_equal(lua_tostring(w->reg->L, -1), "add_item|primary|1500.25|200");
    lua_pop(w->reg->L, 1);
    assert_int_equal(lua_gettop(w->reg->L), 0);

    /* a hook that raises is logged; nothing else happens and the stack is left clean */
    assert_int_equal(luaL_dostring(w->reg->L, "function sluice.on_slow_query(ev) error('hook broke') end"),
                     0);
    out = capture_stderr(report_slow, w);
    assert_non_null(strstr(out, "sluice.on_slow_query failed"));
    assert_non_null(strstr(out, "hook broke"));
    assert_int_equal(lua_gettop(w->reg->L), 0);
    free(out);

    /* a hook that never returns is stopped (the worker states run with the JIT off) */
    luaJIT_setmode(w->reg->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    assert_int_equal(luaL_dostring(w->reg->L, "function sluice.on_slow_query(ev) while true do end end"), 0);
    uint64_t t0 = now_ms();
    out = capture_stderr(report_slow, w);
    assert_true(now_ms() - t0 < 2000);
    assert_non_null(strstr(out, "ran for more than"));
    assert_null(lua_gethook(w->reg->L)); /* no hook is left behind */
    assert_int_equal(lua_gettop(w->reg->L), 0);
    free(out);

    /* a non-function hook is ignored */
    assert_int_equal(luaL_dostring(w->reg->L, "sluice.on_slow_query = 42"), 0);
    out = capture_stderr(report_slow, w);
    assert_null(strstr(out, "failed"));
    free(out);
    fakeserver_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_escaping),          cmocka_unit_test(test_family_and_samples),
        cmocka_unit_test(test_histogram_rendering),     cmocka_unit_test(test_status_mapping),
        cmocka_unit_test(test_query_accounting),        cmocka_unit_test(test_render_sums_workers),
        cmocka_unit_test(test_slow_query_log_and_hook),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
