/* test_slowplan.c — explain_slow: reading the policy flag, the once-a-minute capture gate, and
 * the newest plan over workers and pools as /admin/queries shows it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "endpoint.h"
#include "fakeserver.h"
#include "metrics.h"
#include "server.h"
#include "slowplan.h"
#include "util.h"

/* The fake gateway with a query "nap" per worker. */
static struct fakeserver *fake_new(void)
{
    struct fakeserver *f = fakeserver_new("primary");
    for (int i = 0; i < 2; i++) {
        char err[128];
        struct query_def *q = query_def_new("nap", "SELECT pg_sleep(:s)", NULL, err, sizeof err);
        assert_non_null(q);
        assert_int_equal(registry_add(f->srv.workers[i].reg, q), 0);
    }
    return f;
}

static struct query_def *nap(struct fakeserver *f, int worker)
{
    return f->srv.workers[worker].reg->queries[0];
}
static void test_enabled_reads_the_policy(void **state)
{
    struct fakeserver *f = fake_new();
    lua_State *L = f->srv.workers[0].reg->L;
    assert_false(slowplan_enabled(nap(f, 0))); /* no sluice table */
    assert_int_equal(luaL_dostring(L, "sluice = {}"), 0);
    assert_false(slowplan_enabled(nap(f, 0)));
    assert_int_equal(luaL_dostring(L, "sluice._policy = { slow_query_ms = 5 }"), 0);
    assert_false(slowplan_enabled(nap(f, 0)));
    assert_int_equal(luaL_dostring(L, "sluice._policy.explain_slow = true"), 0);
    assert_true(slowplan_enabled(nap(f, 0)));
    assert_int_equal(lua_gettop(L), 0);        /* the stack is left as it was */
    assert_false(slowplan_enabled(nap(f, 1))); /* the other worker's state is its own */
    fakeserver_free(f);
}

static void test_due_once_a_minute_per_worker_and_pool(void **state)
{
    struct fakeserver *f = fake_new();
    struct worker *w0 = &f->srv.workers[0], *w1 = &f->srv.workers[1];
    assert_true(metrics_plan_due(w0, nap(f, 0), 0));
    assert_false(metrics_plan_due(w0, nap(f, 0), 0));
    assert_true(metrics_plan_due(w0, nap(f, 0), 1)); /* another pool */
    assert_true(metrics_plan_due(w1, nap(f, 1), 0)); /* another worker */
    assert_false(metrics_plan_due(w1, nap(f, 1), 0));
    assert_false(metrics_plan_due(w0, nap(f, 0), 7)); /* no such pool */
    fakeserver_free(f);
}

static void test_newest_plan_over_workers(void **state)
{
    struct fakeserver *f = fake_new();
    struct worker *w0 = &f->srv.workers[0], *w1 = &f->srv.workers[1];
    assert_null(metrics_plan_get(&f->srv, "nap"));
    assert_null(metrics_plan_get(&f->srv, "nope"));
    const char *a = "[{\"Plan\":{\"Node Type\":\"Result\"}}]";
    assert_true(metrics_plan_set(w0, nap(f, 0), 0, a, strlen(a)));
    char *got = metrics_plan_get(&f->srv, "nap");
    assert_string_equal(got, a);
    free(got);
    usleep(3000); /* plans are ordered by wall-clock milliseconds */
    const char *b = "[{\"Plan\":{\"Node Type\":\"Seq Scan\"}}]xyz";
    assert_true(metrics_plan_set(w1, nap(f, 1), 1, b, strlen(b) - 3)); /* only len bytes are kept */
    got = metrics_plan_get(&f->srv, "nap");
    assert_string_equal(got, "[{\"Plan\":{\"Node Type\":\"Seq Scan\"}}]");
    free(got);
    usleep(3000);
    assert_true(metrics_plan_set(w0, nap(f, 0), 0, a, strlen(a))); /* replaces w0's own */
    got = metrics_plan_get(&f->srv, "nap");
    assert_string_equal(got, a);
    free(got);
    /* a plan over the bound is not kept; the previous one stays */
    size_t big = METRICS_PLAN_MAX + 1;
    char *huge = xmalloc(big);
    memset(huge, ' ', big);
    assert_false(metrics_plan_set(w0, nap(f, 0), 0, huge, big));
    free(huge);
    got = metrics_plan_get(&f->srv, "nap");
    assert_string_equal(got, a);
    free(got);
    fakeserver_free(f); /* metrics_reset frees the plans (checked by the leak sanitizer builds) */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enabled_reads_the_policy),
        cmocka_unit_test(test_due_once_a_minute_per_worker_and_pool),
        cmocka_unit_test(test_newest_plan_over_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
