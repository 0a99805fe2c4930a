/* test_lsn.c — WAL positions: pg_lsn's input syntax exactly (what the server accepts, nothing
 * more), the server's output form, and the Sluice-LSN header's list of positions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "lsn.h"

static bool parse(const char *s, uint64_t *out)
{
    return lsn_parse(s, strlen(s), out);
}

static void parses_what_pg_lsn_accepts(void **state)
{
    uint64_t v = 7;
    assert_true(parse("0/0", &v));
    assert_true(v == 0);
    assert_true(parse("0/16B3748", &v));
    assert_true(v == 0x16B3748);
    assert_true(parse("16/b374d848", &v)); /* either case */
    assert_true(v == (0x16ull << 32 | 0xB374D848));
    assert_true(parse("FFFFFFFF/FFFFFFFF", &v));
    assert_true(v == UINT64_MAX);
    assert_true(parse("00000001/00000000", &v));
    assert_true(v == 1ull << 32);
}

static void refuses_everything_else(void **state)
{
    static const char *const bad[] = {
        "",     "/",    "0/",   "/0",   "0",     "16B3748", "0/16B3748 ",  " 0/1",
        "0 /1", "0/ 1", "+0/1", "-1/0", "0x1/0", "1/2/3",   "123456789/0", "0/123456789",
        "g/0",  "0/1g", "0;1",  "０/1", "0/1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        uint64_t v = 42;
        assert_false(parse(bad[i], &v));
        assert_true(v == 42); /* untouched */
    }
    uint64_t v;
    assert_false(lsn_parse("0/1\0", 4, &v)); /* a NUL inside the given length */
    assert_true(lsn_parse("0/1x", 3, &v));   /* only n bytes are read */
}

static void formats_as_the_server(void **state)
{
    char text[LSN_TEXT];
    assert_string_equal(lsn_format(text, 0), "0/0");
    assert_string_equal(lsn_format(text, 0x16B3748), "0/16B3748");
    assert_string_equal(lsn_format(text, UINT64_MAX), "FFFFFFFF/FFFFFFFF");
    uint64_t v;
    assert_true(parse(lsn_format(text, 0x12345678abcdefull), &v));
    assert_true(v == 0x12345678abcdefull);
}

static void header_lists_give_the_largest(void **state)
{
    uint64_t v;
    const char *s = "0/5, 1/0 ,\t0/FFFFFFFF";
    assert_true(lsn_parse_list(s, strlen(s), &v));
    assert_true(v == 1ull << 32);
    s = "0/16B3748";
    assert_true(lsn_parse_list(s, strlen(s), &v));
    assert_true(v == 0x16B3748);
    static const char *const bad[] = {"", " ", ",", "0/1,", ",0/1", "0/1,,0/2", "0/1 0/2", "0/1,x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(lsn_parse_list(bad[i], strlen(bad[i]), &v));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_what_pg_lsn_accepts),
        cmocka_unit_test(refuses_everything_else),
        cmocka_unit_test(formats_as_the_server),
        cmocka_unit_test(header_lists_give_the_largest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
