/* test_csrf.c — which method and Content-Type pairs the gateway refuses before routing: any
 * method but GET and HEAD with no type or one a form or a preflight-free fetch() may send. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "csrf.h"

static bool refused(const char *method, const char *ctype)
{
    return csrf_refused(method, strlen(method), ctype, ctype ? strlen(ctype) : 0);
}

static void get_and_head_are_never_refused(void **state)
{
    assert_false(refused("GET", NULL));
    assert_false(refused("HEAD", NULL));
    assert_false(refused("GET", "text/plain"));
    assert_false(refused("HEAD", "application/x-www-form-urlencoded"));
}

static void other_methods_need_a_content_type(void **state)
{
    const char *methods[] = {"POST", "PUT", "PATCH", "DELETE", "OPTIONS", "FOO", "get", "head"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (!refused(methods[i], NULL)) fail_msg("%s without Content-Type was let through", methods[i]);
        if (!refused(methods[i], "")) fail_msg("%s with an empty Content-Type was let through", methods[i]);
        if (!refused(methods[i], " \t "))
            fail_msg("%s with a blank Content-Type was let through", methods[i]);
        if (refused(methods[i], "application/json"))
            fail_msg("%s with application/json was refused", methods[i]);
    }
}

static void the_types_a_browser_sends_unasked_are_refused(void **state)
{
    const char *simple[] = {
        "text/plain",
        "text/plain;charset=UTF-8",
        "Text/Plain",
        " text/plain ; charset=utf-8",
        "\ttext/plain\t",
        "application/x-www-form-urlencoded",
        "APPLICATION/X-WWW-FORM-URLENCODED; charset=utf-8",
        "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",
        "multipart/form-data",
        ";charset=utf-8", /* no type at all */
    };
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (!refused("POST", simple[i])) fail_msg("POST with \"%s\" was let through", simple[i]);
}

static void other_types_pass_to_the_endpoint(void **state)
{
    /* a browser sends each of these cross-site only after a preflight, which sluice does not grant */
    const char *other[] = {
        "application/json", "application/json; charset=utf-8",
        "APPLICATION/JSON", "application/x-ndjson",
        "text/csv",         "text/csv; header=present",
        "application/xml",  "text/plain2",
        "text/plainx; a=b", "multipart/mixed",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        if (refused("POST", other[i])) fail_msg("POST with \"%s\" was refused", other[i]);
    /* the length given counts, not a NUL */
    assert_true(csrf_refused("POST", 4, "text/plainXYZ", 10));
    assert_true(csrf_refused("GETX", 4, NULL, 0));
    assert_false(csrf_refused("GETX", 3, NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(get_and_head_are_never_refused),
        cmocka_unit_test(other_methods_need_a_content_type),
        cmocka_unit_test(the_types_a_browser_sends_unasked_are_refused),
        cmocka_unit_test(other_types_pass_to_the_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
