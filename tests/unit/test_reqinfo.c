/* test_reqinfo.c — which X-Request-Id values are kept, and which traceparent values are valid
 * W3C trace contexts (and what is read from them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "reqinfo.h"

#define TRACE "4bf92f3577b34da6a3ce929d0e0e4736"

static bool id_ok(const char *s)
{
    return reqinfo_id_valid(s, strlen(s));
}

static bool tp_ok(const char *s)
{
    char trace[33], flags[3];
    return reqinfo_parse_traceparent(s, strlen(s), trace, flags);
}

static void request_ids(void **state)
{
    char max[REQINFO_ID_MAX + 2];
    memset(max, 'a', sizeof max);
    max[REQINFO_ID_MAX] = '\0';
    assert_true(id_ok(max));
    max[REQINFO_ID_MAX] = 'a';
    max[REQINFO_ID_MAX + 1] = '\0';
    assert_false(id_ok(max)); /* 129 */
    assert_true(id_ok("a"));
    assert_true(id_ok("Req-1.2_3:4"));
    assert_true(id_ok("550e8400-e29b-41d4-a716-446655440000"));
    const char *bad[] = {"", " ", "a b", "a;b", "a\"b", "a\nb", "a/b", "a=b", "\xc3\xa9", "a,b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (id_ok(bad[i])) fail_msg("kept %s", bad[i]);
}

static void valid_traceparents(void **state)
{
    char trace[33], flags[3];
    const char *tp = "00-" TRACE "-00f067aa0ba902b7-01";
    assert_true(reqinfo_parse_traceparent(tp, strlen(tp), trace, flags));
    assert_string_equal(TRACE, trace);
    assert_string_equal("01", flags);
    assert_true(tp_ok("00-" TRACE "-00f067aa0ba902b7-00"));
    assert_true(tp_ok("01-" TRACE "-00f067aa0ba902b7-03"));           /* a later version */
    assert_true(tp_ok("cc-" TRACE "-00f067aa0ba902b7-01-what-ever")); /* may append fields */
}

static void invalid_traceparents(void **state)
{
    const char *bad[] = {
        "",
        "00",
        "00-" TRACE "-00f067aa0ba902b7",     /* no flags */
        "00-" TRACE "-00f067aa0ba902b7-01-", /* version 00 is exactly 55 */
        "00-" TRACE "-00f067aa0ba902b7-011",
        "ff-" TRACE "-00f067aa0ba902b7-01", /* version ff */
        "0G-" TRACE "-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace id */
        "00-" TRACE "-0000000000000000-01",                        /* zero parent id */
        "00-" TRACE "-00f067aa0ba902b7-0x",
        "00_" TRACE "-00f067aa0ba902b7-01",
        "01-" TRACE "-00f067aa0ba902b7-01x", /* a later version: "-" after 55 */
        "00-" TRACE "x00f067aa0ba902b7-01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (tp_ok(bad[i])) fail_msg("accepted \"%s\"", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_ids),
        cmocka_unit_test(valid_traceparents),
        cmocka_unit_test(invalid_traceparents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
