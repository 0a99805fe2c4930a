/* test_stmt.c — the per-connection prepared-statement LRU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "stmt.h"

static void evicts_the_least_recently_used(void **state)
{
    struct stmt_cache c;
    stmt_cache_init(&c, 2);
    assert_int_equal(stmt_cache_insert(&c, 1), 0);
    assert_int_equal(stmt_cache_insert(&c, 2), 0);
    assert_true(stmt_cache_touch(&c, 1)); /* 2 is now the oldest */
    assert_int_equal(stmt_cache_insert(&c, 3), 2);
    assert_false(stmt_cache_touch(&c, 2));
    assert_true(stmt_cache_touch(&c, 1));
    assert_true(stmt_cache_touch(&c, 3));
    assert_int_equal(c.count, 2);
    stmt_cache_free(&c);
}

static void remove_frees_a_slot(void **state)
{
    struct stmt_cache c;
    stmt_cache_init(&c, 2);
    stmt_cache_insert(&c, 7);
    stmt_cache_insert(&c, 8);
    stmt_cache_remove(&c, 7);
    assert_int_equal(c.count, 1);
    assert_int_equal(stmt_cache_insert(&c, 9), 0); /* no eviction needed */
    assert_true(stmt_cache_touch(&c, 8));
    stmt_cache_remove(&c, 42); /* unknown: nothing happens */
    assert_int_equal(c.count, 2);
    stmt_cache_free(&c);
}

static void round_robin_over_a_small_cache(void **state)
{
    struct stmt_cache c;
    stmt_cache_init(&c, 2);
    int prepared = 0;
    for (int round = 0; round < 4; round++)
        for (uint32_t id = 1; id <= 5; id++)
            if (!stmt_cache_touch(&c, id)) {
                stmt_cache_insert(&c, id);
                prepared++;
            }
    assert_int_equal(prepared, 20); /* LRU with 5 > 2 ids in a cycle misses every time */
    assert_int_equal(c.count, 2);
    stmt_cache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(evicts_the_least_recently_used),
        cmocka_unit_test(remove_frees_a_slot),
        cmocka_unit_test(round_robin_over_a_small_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
