/* test_urlpath.c — the raw request path split into segments and decoded once; query-string
 * components decoded with '+' as a space. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "urlpath.h"

/* Splits path and checks the segments against want, written joined by '|'. */
static void check_split(const char *path, const char *want)
{
    char out[256], got[512] = "";
    const char *segs[32];
    size_t lens[32];
    struct urlpath p = {segs, lens, 0};
    size_t len = strlen(path);
    assert_true(urlpath_max_segments(path, len) <= 32);
    if (urlpath_split(path, len, out, &p) != 0) fail_msg("%s: refused", path);
    assert_true((size_t)p.n <= urlpath_max_segments(path, len));
    for (int i = 0; i < p.n; i++) {
        if (i > 0) strcat(got, "|");
        strncat(got, segs[i], lens[i]);
    }
    if (strcmp(got, want) != 0) fail_msg("%s: got [%s], want [%s]", path, got, want);
}

static void splits_and_decodes_once(void **state)
{
    check_split("/echo/a%2Bb", "echo|a+b");
    check_split("/echo/a+b", "echo|a+b");
    check_split("/echo/%2527", "echo|%27");
    check_split("/echo/100%25", "echo|100%");
    check_split("/echo/a%2Fb", "echo|a/b");
    check_split("/echo/%e2%82%AC", "echo|\xe2\x82\xac");
    check_split("/", "");
    check_split("", "");
    check_split("/a/b/", "a|b|");
    check_split("/a//b", "a||b");
    check_split("a/b", "a|b"); /* read as "/a/b" */
}

static void resolves_dot_segments(void **state)
{
    check_split("/a/./b", "a|b");
    check_split("/a/../b", "b");
    check_split("/../../b", "b");
    check_split("/a/.", "a|");
    check_split("/a/..", "");
    check_split("/a/%2e%2E/b", "b");        /* decoded first, as h2o does */
    check_split("/a/%2E%2E%2Fb", "a|../b"); /* an encoded '/' splits nothing */
    check_split("/a/...", "a|...");
    check_split("/a/.b", "a|.b");
}

static void refuses_malformed_escapes(void **state)
{
    const char *bad[] = {"/echo/100%", "/echo/%2", "/echo/%zz", "/echo/%g0/x", "/%", "/a%2/b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[64];
        const char *segs[8];
        size_t lens[8];
        struct urlpath p = {segs, lens, 5};
        if (urlpath_split(bad[i], strlen(bad[i]), out, &p) != -1) fail_msg("%s: accepted", bad[i]);
        assert_int_equal(p.n, 0);
    }
}

static void query_components_take_plus_as_space(void **state)
{
    char out[32];
    assert_int_equal(urlpath_decode("a+b%2B", 6, out, true), 4);
    assert_memory_equal(out, "a b+", 4);
    assert_int_equal(urlpath_decode("a+b%2B", 6, out, false), 4);
    assert_memory_equal(out, "a+b+", 4);
    assert_int_equal(urlpath_decode("%4", 2, out, true), -1);
    assert_int_equal(urlpath_decode("", 0, out, true), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(splits_and_decodes_once),
        cmocka_unit_test(resolves_dot_segments),
        cmocka_unit_test(refuses_malformed_escapes),
        cmocka_unit_test(query_components_take_plus_as_space),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
