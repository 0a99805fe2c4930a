/* test_httpheader.c — the checks on response headers a Lua handler returns: token names,
 * values without control characters, and the headers the gateway owns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "httpheader.h"

static enum httpheader_check check(const char *name, const char *value)
{
    return httpheader_check(name, strlen(name), value, strlen(value));
}

static void accepts_ordinary_headers(void **state)
{
    assert_int_equal(check("cache-control", "no-store"), HTTPHEADER_OK);
    assert_int_equal(check("X-Request-Id", "abc\t123"), HTTPHEADER_OK); /* HTAB is allowed */
    assert_int_equal(check("set-cookie", "a=1; Path=/; HttpOnly"), HTTPHEADER_OK);
    assert_int_equal(check("x-empty", ""), HTTPHEADER_OK);
    assert_int_equal(check("x-utf8", "caf\xc3\xa9"), HTTPHEADER_OK); /* obs-text */
    assert_int_equal(check("!#$%&'*+-.^_`|~09azAZ", "v"), HTTPHEADER_OK);
    assert_int_equal(check("retry-after", "5"), HTTPHEADER_OK);
}

static void refuses_names_that_are_not_tokens(void **state)
{
    const char *bad[] = {"",    "x y", "x:y", ":status", "x\r\ny", "x\n",
                         "x\"", "x(",  "x/y", "x@",      "x\x7f",  "\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (check(bad[i], "v") != HTTPHEADER_BAD_NAME) fail_msg("name [%s] accepted", bad[i]);
    assert_int_equal(httpheader_check("x\0y", 3, "v", 1), HTTPHEADER_BAD_NAME);
}

static void refuses_control_characters_in_values(void **state)
{
    const char *bad[] = {"a\r\nSet-Cookie: evil=1", "a\rb", "a\nb", "a\x01", "a\x7f", "\x1b[31m"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (check("x-v", bad[i]) != HTTPHEADER_BAD_VALUE) fail_msg("value [%s] accepted", bad[i]);
    assert_int_equal(httpheader_check("x-v", 3, "a\0b", 3), HTTPHEADER_BAD_VALUE);
}

static void refuses_headers_the_gateway_sets(void **state)
{
    const char *owned[] = {"Content-Length",  "transfer-encoding", "CONNECTION", "content-type", "date",
                           "server",          "keep-alive",        "upgrade",    "te",           "trailer",
                           "proxy-connection"};
    for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
        if (check(owned[i], "x") != HTTPHEADER_RESERVED) fail_msg("[%s] accepted", owned[i]);
    assert_int_equal(check("content-language", "en"), HTTPHEADER_OK);
    assert_int_equal(check("content-lengthx", "1"), HTTPHEADER_OK);
}

static void printable_escapes_and_cuts(void **state)
{
    char out[32];
    assert_string_equal(httpheader_printable(out, sizeof out, "x\r\ny\"", 5), "x\\x0d\\x0ay\\x22");
    assert_string_equal(httpheader_printable(out, sizeof out, "abc", 3), "abc");
    char long_name[100];
    memset(long_name, 'n', sizeof long_name);
    httpheader_printable(out, sizeof out, long_name, sizeof long_name);
    assert_true(strlen(out) < sizeof out);
    assert_memory_equal(out + strlen(out) - 3, "...", 3);
    char tiny[2];
    assert_string_equal(httpheader_printable(tiny, sizeof tiny, "abc", 3), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accepts_ordinary_headers),
        cmocka_unit_test(refuses_names_that_are_not_tokens),
        cmocka_unit_test(refuses_control_characters_in_values),
        cmocka_unit_test(refuses_headers_the_gateway_sets),
        cmocka_unit_test(printable_escapes_and_cuts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
