/* test_cache.c — the result cache's store: hits and misses, staleness by generation and by WAL
 * position, the byte bound with LRU eviction, and table names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "buf.h"
#include "cache.h"
#include "hash64.h"

static int reset(void **state)
{
    cache_clear();
    cache_set_max((size_t)64 << 20);
    return 0;
}

static enum cache_found lookup(const char *key, uint64_t gens, uint64_t lsn, struct buf *out)
{
    uint64_t h;
    buf_reset(out);
    return cache_lookup(key, strlen(key), hash64(key, strlen(key)), gens, lsn, out, &h);
}

static void stores_and_finds(void **state)
{
    struct buf out = BUF_INIT;
    struct cache_stats *s = cache_stats_of("q");
    assert_int_equal(lookup("k1", 0, 0, &out), CACHE_MISS);
    cache_store("k1", 2, hash64("k1", 2), "{\"a\":1}", 7, 0, 100, 60000, s);
    assert_int_equal(lookup("k1", 0, 0, &out), CACHE_HIT);
    assert_int_equal(out.len, 7);
    assert_memory_equal(out.data, "{\"a\":1}", 7);
    assert_int_equal(lookup("k2", 0, 0, &out), CACHE_MISS);
    /* a request that saw WAL position 101 is not served what was read at 100 */
    assert_int_equal(lookup("k1", 0, 101, &out), CACHE_MISS);
    assert_int_equal(lookup("k1", 0, 100, &out), CACHE_HIT);
    buf_free(&out);
}

static void a_bumped_table_makes_entries_stale(void **state)
{
    struct buf out = BUF_INIT;
    int t = cache_table_id("Public.Quotes");
    assert_true(t >= 0);
    assert_int_equal(cache_table_id("quotes"), t);
    assert_int_equal(cache_table_find("QUOTES"), t);
    assert_string_equal(cache_table_name(t), "quotes");
    uint64_t g = cache_gens(&t, 1, 0);
    cache_store("k", 1, hash64("k", 1), "x", 1, g, 0, 60000, NULL);
    assert_int_equal(lookup("k", cache_gens(&t, 1, 0), 0, &out), CACHE_HIT);
    cache_wrote(&t, 1, 0);
    assert_int_equal(lookup("k", cache_gens(&t, 1, 0), 0, &out), CACHE_STALE);
    assert_int_equal(lookup("k", cache_gens(&t, 1, 0), 0, &out), CACHE_MISS); /* dropped */
    /* a lost LISTEN connection: the pool's generation */
    cache_store("k", 1, hash64("k", 1), "x", 1, cache_gens(&t, 1, 3), 0, 60000, NULL);
    cache_bump_pool(3);
    assert_int_equal(lookup("k", cache_gens(&t, 1, 3), 0, &out), CACHE_STALE);
    /* NOTIFY payloads */
    assert_true(cache_invalidate_named("quotes"));
    uint64_t unknown = cache_unknown_payloads();
    assert_false(cache_invalidate_named("nothing_declared_this"));
    assert_int_equal(cache_unknown_payloads(), unknown + 1);
    buf_free(&out);
}

static void never_holds_more_than_the_bound(void **state)
{
    struct buf out = BUF_INIT;
    struct cache_stats *s = cache_stats_of("bounded");
    char body[500], key[32];
    memset(body, 'x', sizeof body);
    cache_set_max(10000);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "key%d", i);
        cache_store(key, strlen(key), hash64(key, strlen(key)), body, sizeof body, 0, 0, 60000, s);
        assert_true(cache_bytes() <= 10000);
        if (i == 5) assert_int_equal(lookup("key0", 0, 0, &out), CACHE_HIT); /* key0 is now recent */
    }
    assert_true(s->evictions > 80);
    assert_int_equal(lookup("key99", 0, 0, &out), CACHE_HIT);
    assert_int_equal(lookup("key1", 0, 0, &out), CACHE_MISS);
    /* larger than the whole bound: not stored, nothing evicted for it */
    size_t before = cache_bytes();
    char big[20000];
    memset(big, 'y', sizeof big);
    cache_store("big", 3, hash64("big", 3), big, sizeof big, 0, 0, 60000, s);
    assert_int_equal(cache_bytes(), before);
    /* a smaller bound evicts at once */
    cache_set_max(2000);
    assert_true(cache_bytes() <= 2000);
    buf_free(&out);
}

static void table_names(void **state)
{
    char c[16];
    assert_true(cache_table_canon("public.Ticks", c, sizeof c));
    assert_string_equal(c, "ticks");
    assert_true(cache_table_canon("fx.Ticks", c, sizeof c));
    assert_string_equal(c, "fx.ticks");
    assert_false(cache_table_canon("", c, sizeof c));
    assert_false(cache_table_canon("a_name_longer_than_sixteen", c, sizeof c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(stores_and_finds, reset),
        cmocka_unit_test_setup(a_bumped_table_makes_entries_stale, reset),
        cmocka_unit_test_setup(never_holds_more_than_the_bound, reset),
        cmocka_unit_test_setup(table_names, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
