/* test_etag.c — If-None-Match lists against an entity tag (weak comparison, "*", blanks,
 * commas), and the body hash behind the tags: stable, and different for different bodies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "etag.h"
#include "hash64.h"

static bool matches(const char *list, const char *tag)
{
    return etag_list_matches(list, strlen(list), tag, strlen(tag));
}

static void if_none_match_lists(void **state)
{
    const char *tag = "\"0123456789abcdef\"";
    assert_true(matches("\"0123456789abcdef\"", tag));
    assert_true(matches("W/\"0123456789abcdef\"", tag));
    assert_true(matches("\"0123456789abcdef\"", "W/\"0123456789abcdef\""));
    assert_true(matches("*", tag));
    assert_true(matches(" \"a\", \"b\",\"0123456789abcdef\" ", tag));
    assert_true(matches("\"a\",W/\"0123456789abcdef\",\"c\"", tag));
    assert_true(matches("\"a,b\", \"0123456789abcdef\"", tag)); /* a comma inside a tag */
    assert_false(matches("", tag));
    assert_false(matches("\"0123456789abcde\"", tag));
    assert_false(matches("0123456789abcdef", tag));
    assert_false(matches("\"0123456789abcdef", tag));
    assert_false(matches("w/\"0123456789abcdef\"", tag)); /* W/ is case-sensitive */
    assert_false(matches("\"a\", \"b\"", tag));
    assert_false(matches(",,, ,", tag));
}

static void hash_is_stable_and_tells_bodies_apart(void **state)
{
    assert_int_equal(hash64("abc", 3), hash64("abc", 3));
    assert_true(hash64("abc", 3) != hash64("abd", 3));
    assert_true(hash64("", 0) != hash64("\0", 1));
    assert_true(hash64("a", 1) != hash64("a\0", 2));
    /* every length around the 8-byte step, one bit flipped anywhere, gives another value */
    char buf[40];
    for (size_t n = 1; n <= sizeof buf; n++) {
        memset(buf, 'x', sizeof buf);
        uint64_t h = hash64(buf, n);
        for (size_t i = 0; i < n; i++) {
            buf[i] ^= 1;
            if (hash64(buf, n) == h) fail_msg("a flip at %zu of %zu keeps the hash", i, n);
            buf[i] ^= 1;
        }
    }
    char hex[17];
    hash64_hex(0x0123456789abcdefULL, hex);
    assert_string_equal("0123456789abcdef", hex);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(if_none_match_lists),
        cmocka_unit_test(hash_is_stable_and_tells_bodies_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
