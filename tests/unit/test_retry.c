/* test_retry.c — retry classification and backoff with full jitter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "retry.h"

static void classifies_sqlstates(void **state)
{
    assert_true(retry_sqlstate_transient("40001"));
    assert_true(retry_sqlstate_transient("40P01"));
    assert_false(retry_sqlstate_transient("23505"));
    assert_false(retry_sqlstate_transient(NULL));
    assert_true(retry_sqlstate_connection("08006"));
    assert_true(retry_sqlstate_connection("57P01"));
    assert_true(retry_sqlstate_connection("53300"));
    assert_false(retry_sqlstate_connection("57014")); /* a statement timeout is not the connection */
    assert_false(retry_sqlstate_connection("22P02"));
}

static void delay_is_capped_and_jittered(void **state)
{
    struct retry_policy p = {.attempts = 5, .base_ms = 20, .max_ms = 100};
    assert_int_equal(retry_delay_ms(&p, 1, 0), 0);
    assert_int_equal(retry_delay_ms(&p, 1, 20), 20);
    assert_int_equal(retry_delay_ms(&p, 1, 21), 0); /* rnd % (cap + 1) */
    assert_int_equal(retry_delay_ms(&p, 2, 40), 40);
    assert_int_equal(retry_delay_ms(&p, 3, 80), 80);
    for (uint32_t r = 0; r < 1000; r += 7) assert_true(retry_delay_ms(&p, 10, r) <= 100);
}

static void defaults(void **state)
{
    struct retry_policy p;
    retry_policy_default(&p);
    assert_int_equal(p.attempts, 3);
    assert_int_equal(p.base_ms, 20);
    assert_int_equal(p.max_ms, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(classifies_sqlstates),
        cmocka_unit_test(delay_is_capped_and_jittered),
        cmocka_unit_test(defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
