/* test_log.c — what keeps a log line one line and its own: control characters escaped in text
 * format, and script fields named ts, level, worker or msg renamed rather than let through. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "log.h"

static void expect_escaped(const char *in, size_t n, const char *want)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, ""); /* data is never NULL below, even for an empty result */
    log_text_escape(&b, in, n);
    assert_string_equal(b.data, want);
    buf_free(&b);
}

static void text_escapes_control_characters(void **state)
{
    expect_escaped("plain text, no change", 21, "plain text, no change");
    expect_escaped("a\nb", 3, "a\\nb");
    expect_escaped("forged\n2026-01-01T00:00:00.000Z error admin logged in", 53,
                   "forged\\n2026-01-01T00:00:00.000Z error admin logged in");
    expect_escaped("cr\rlf\ntab\t", 10, "cr\\rlf\\ntab\\t");
    expect_escaped("\x01\x1b[31mred\x7f", 10, "\\x01\\x1b[31mred\\x7f");
    expect_escaped("nul\0after", 9, "nul\\x00after");
    /* UTF-8 and a backslash pass as they are */
    expect_escaped("caf\xc3\xa9 C:\\dir", 12, "caf\xc3\xa9 C:\\dir");
    expect_escaped("", 0, "");
}

static char *dump(json_t *o)
{
    return json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
}

static void reserved_fields_are_renamed(void **state)
{
    json_t *f = json_pack("{s:s, s:s, s:s, s:i, s:i}", "ts", "1999-01-01", "level", "error", "msg", "forged",
                          "worker", 7, "user", 42);
    log_fields_rename_reserved(f);
    char *s = dump(f);
    assert_string_equal(s, "{\"field_level\":\"error\",\"field_msg\":\"forged\",\"field_ts\":\"1999-01-01\","
                           "\"field_worker\":7,\"user\":42}");
    free(s);
    json_decref(f);

    /* field_ts taken already: the script's ts becomes field_field_ts, nothing is lost */
    f = json_pack("{s:s, s:s}", "ts", "a", "field_ts", "b");
    log_fields_rename_reserved(f);
    s = dump(f);
    assert_string_equal(s, "{\"field_field_ts\":\"a\",\"field_ts\":\"b\"}");
    free(s);
    json_decref(f);

    /* nothing reserved: unchanged; not an object: ignored */
    f = json_pack("{s:i, s:s}", "tss", 1, "Level", "x");
    log_fields_rename_reserved(f);
    s = dump(f);
    assert_string_equal(s, "{\"Level\":\"x\",\"tss\":1}");
    free(s);
    json_decref(f);
    f = json_integer(3);
    log_fields_rename_reserved(f);
    json_decref(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_escapes_control_characters),
        cmocka_unit_test(reserved_fields_are_renamed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
