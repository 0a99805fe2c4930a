/* test_call.c — the call core: one mapping of a job's outcome to status, code and message, the
 * same in the JSON answer and in what a Lua handler receives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <lauxlib.h>
#include <string.h>

#include "buf.h"
#include "call.h"
#include "endpoint.h"
#include "pgjob.h"

static struct query_def *define(struct registry *reg, const char *name, const char *sql)
{
    char err[128];
    struct query_def *q = query_def_new(name, sql, NULL, err, sizeof err);
    assert_non_null(q);
    assert_int_equal(registry_add(reg, q), 0);
    return q;
}

static void a_write_in_doubt_says_so(void **state)
{
    struct registry reg;
    registry_init(&reg);
    struct query_def *q = define(&reg, "record", "INSERT INTO t VALUES (1)");
    struct pgjob *job = pgjob_new(q, NULL);
    job->status = PGJOB_UNAVAILABLE;
    job->in_doubt = true;
    snprintf(job->errmsg, sizeof job->errmsg, "the database connection was lost");

    struct call_outcome o;
    call_outcome(job, 0, &o);
    assert_int_equal(o.status, 503);
    struct buf b = BUF_INIT;
    call_write_json(&b, &o, q->name);
    assert_string_equal(b.data,
                        "{\"error\":{\"code\":\"unavailable\",\"message\":\"the database connection was "
                        "lost\",\"query\":\"record\",\"outcome\":\"unknown\"}}");

    lua_State *L = luaL_newstate();
    assert_int_equal(call_push_lua(L, &o, q->name), 2);
    assert_true(lua_isnil(L, -2));
    lua_getfield(L, -1, "outcome");
    assert_string_equal(lua_tostring(L, -1), "unknown");
    lua_getfield(L, -2, "status");
    assert_int_equal(lua_tointeger(L, -1), 503);
    lua_close(L);

    job->in_doubt = false; /* a plain 503 has no outcome */
    call_outcome(job, 0, &o);
    buf_reset(&b);
    call_write_json(&b, &o, q->name);
    assert_null(strstr(b.data, "outcome"));
    buf_free(&b);
    pgjob_free(job);
    registry_free(&reg);
}

static void server_errors_map_once(void **state)
{
    assert_int_equal(call_status_for_sqlstate("23505"), 409);
    assert_int_equal(call_status_for_sqlstate("22P02"), 400);
    assert_int_equal(call_status_for_sqlstate("57014"), 504);
    assert_int_equal(call_status_for_sqlstate("08006"), 503);
    assert_int_equal(call_status_for_sqlstate("57P01"), 503);
    assert_int_equal(call_status_for_sqlstate("40P01"), 409);
    assert_int_equal(call_status_for_sqlstate("42P01"), 500);
    assert_int_equal(call_status_for_sqlstate(NULL), 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_write_in_doubt_says_so),
        cmocka_unit_test(server_errors_map_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
