/* test_breaker.c — the circuit breaker's state machine, driven with explicit time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "breaker.h"

static struct breaker_policy policy(void)
{
    struct breaker_policy p = {.failures = 3, .window_ms = 1000, .open_ms = 500, .half_open = 1};
    return p;
}

static void opens_after_failures_in_window(void **state)
{
    struct breaker b;
    struct breaker_policy p = policy();
    breaker_init(&b);
    assert_true(breaker_allow(&b, &p, 0));
    assert_false(breaker_failure(&b, &p, 10));
    assert_false(breaker_failure(&b, &p, 20));
    assert_true(breaker_failure(&b, &p, 30)); /* the third opens it */
    assert_int_equal(breaker_state(&b), BREAKER_OPEN);
    assert_false(breaker_allow(&b, &p, 100));
    assert_string_equal(breaker_state_name(breaker_state(&b)), "open");
}

static void failures_outside_the_window_do_not_add_up(void **state)
{
    struct breaker b;
    struct breaker_policy p = policy();
    breaker_init(&b);
    breaker_failure(&b, &p, 0);
    breaker_failure(&b, &p, 500);
    assert_false(breaker_failure(&b, &p, 1500)); /* a new window started */
    assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
}

static void half_open_probe_closes_or_reopens(void **state)
{
    struct breaker b;
    struct breaker_policy p = policy();
    breaker_init(&b);
    for (int i = 0; i < 3; i++) breaker_failure(&b, &p, 100);
    assert_false(breaker_allow(&b, &p, 599));
    assert_true(breaker_allow(&b, &p, 600)); /* open_ms passed: one probe */
    assert_int_equal(breaker_state(&b), BREAKER_HALF_OPEN);
    assert_false(breaker_allow(&b, &p, 601));  /* only one */
    assert_true(breaker_failure(&b, &p, 650)); /* the probe failed: open again */
    assert_int_equal(breaker_state(&b), BREAKER_OPEN);
    assert_false(breaker_allow(&b, &p, 1000));
    assert_true(breaker_allow(&b, &p, 1150));
    assert_true(breaker_success(&b));
    assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
    assert_true(breaker_allow(&b, &p, 1200));
}

static void success_while_closed_changes_nothing(void **state)
{
    struct breaker b;
    breaker_init(&b);
    assert_false(breaker_success(&b));
    assert_int_equal(breaker_state(&b), BREAKER_CLOSED);
}

static void a_success_resets_the_count(void **state)
{
    struct breaker b;
    struct breaker_policy p = policy();
    breaker_init(&b);
    breaker_failure(&b, &p, 10);
    breaker_failure(&b, &p, 20);
    assert_false(breaker_success(&b)); /* still closed: nothing to report */
    assert_false(breaker_failure(&b, &p, 30));
    assert_false(breaker_failure(&b, &p, 40));
    assert_int_equal(breaker_state(&b), BREAKER_CLOSED); /* 2 in a row, not 4 */
}

static void unanswered_probes_are_replaced_after_open_ms(void **state)
{
    struct breaker b;
    struct breaker_policy p = policy();
    breaker_init(&b);
    for (int i = 0; i < 3; i++) breaker_failure(&b, &p, 0);
    assert_true(breaker_allow(&b, &p, 500)); /* the probe, whose client then leaves */
    assert_false(breaker_allow(&b, &p, 700));
    assert_true(breaker_allow(&b, &p, 1000)); /* another open_ms: a new probe */
    assert_int_equal(breaker_state(&b), BREAKER_HALF_OPEN);
}

static void retry_after_counts_down(void **state)
{
    struct breaker b;
    struct breaker_policy p = policy();
    p.open_ms = 5000;
    breaker_init(&b);
    for (int i = 0; i < 3; i++) breaker_failure(&b, &p, 1000);
    assert_int_equal(breaker_retry_after(&b, &p, 1000), 5);
    assert_int_equal(breaker_retry_after(&b, &p, 5500), 1);
    assert_int_equal(breaker_retry_after(&b, &p, 9000), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(opens_after_failures_in_window),
        cmocka_unit_test(failures_outside_the_window_do_not_add_up),
        cmocka_unit_test(half_open_probe_closes_or_reopens),
        cmocka_unit_test(success_while_closed_changes_nothing),
        cmocka_unit_test(a_success_resets_the_count),
        cmocka_unit_test(unanswered_probes_are_replaced_after_open_ms),
        cmocka_unit_test(retry_after_counts_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
