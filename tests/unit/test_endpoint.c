/* test_endpoint.c — the registry, route aliases and the SQL built for bulk modes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "util.h"

/* route_match on path as the gateway gives it: split and decoded by urlpath_split. */
static int match(const struct route_pattern *r, const char *path, const char **vals, size_t *lens, int max)
{
    static char out[256];
    static const char *segs[32];
    static size_t seglens[32];
    struct urlpath p = {segs, seglens, 0};
    assert_true(strlen(path) < sizeof out && urlpath_max_segments(path, strlen(path)) <= 32);
    assert_int_equal(urlpath_split(path, strlen(path), out, &p), 0);
    return route_match(r, &p, vals, lens, max);
}

static void routes_parse_and_match(void **state)
{
    char err[128];
    struct route_pattern *r = route_parse("GET /accounts/{account}/orders", err, sizeof err);
    assert_non_null(r);
    assert_string_equal(r->method, "GET");
    assert_int_equal(r->nsegs, 3);
    const char *vals[4];
    size_t lens[4];
    assert_int_equal(match(r, "/accounts/42/orders", vals, lens, 4), 1);
    assert_int_equal(lens[0], 2);
    assert_memory_equal(vals[0], "42", 2);
    assert_int_equal(match(r, "/accounts/42/orders/", vals, lens, 4), 1); /* trailing slash */
    assert_int_equal(match(r, "/accounts//orders", vals, lens, 4), -1);
    assert_int_equal(match(r, "/accounts/42", vals, lens, 4), -1);
    assert_int_equal(match(r, "/accounts/42/orders/x", vals, lens, 4), -1);
    assert_int_equal(match(r, "/accounts/42/orders//", vals, lens, 4), -1);
    route_free(r);
    assert_null(route_parse("/no/method", err, sizeof err));
    assert_null(route_parse("get /lower", err, sizeof err));
}

/* A segment's value is decoded once, "+" stays, and "%2F" stays inside the one segment; literal
 * segments compare decoded; dot segments are resolved before matching, as h2o does. */
static void routes_match_decoded_segments(void **state)
{
    char err[128];
    struct route_pattern *r = route_parse("GET /quotes/{pair}", err, sizeof err);
    assert_non_null(r);
    const char *vals[4];
    size_t lens[4];
    struct {
        const char *path, *want;
    } cases[] = {
        {"/quotes/a%2Bb", "a+b"},   {"/quotes/a+b", "a+b"},   {"/quotes/%2527", "%27"},
        {"/quotes/100%25", "100%"}, {"/quotes/a%2Fb", "a/b"}, {"/%71uotes/x", "x"},
        {"/x/../quotes/y", "y"},    {"/quotes/./z", "z"},     {"/quotes/%2e%2E%2Fetc", "../etc"},
        {"/quotes/a%20b/", "a b"},  {"/quotes/%00", "\0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t wl = strcmp(cases[i].path, "/quotes/%00") == 0 ? 1 : strlen(cases[i].want);
        if (match(r, cases[i].path, vals, lens, 4) != 1 || lens[0] != wl ||
            memcmp(vals[0], cases[i].want, wl) != 0)
            fail_msg("%s: expected one value [%s]", cases[i].path, cases[i].want);
    }
    assert_int_equal(match(r, "/quotes/a/b", vals, lens, 4), -1);
    assert_int_equal(match(r, "/quotes/x/..", vals, lens, 4), -1); /* is "/quotes/" */
    assert_int_equal(match(r, "/quotes%2Fx", vals, lens, 4), -1);  /* one segment "quotes/x" */
    route_free(r);
}

static void registry_finds_by_name(void **state)
{
    struct registry reg;
    registry_init(&reg);
    char err[128], name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "q%d", i);
        struct query_def *q = query_def_new(name, "SELECT :a::int", NULL, err, sizeof err);
        assert_non_null(q);
        assert_int_equal(registry_add(&reg, q), 0);
    }
    struct query_def *dup = query_def_new("q7", "SELECT 1", NULL, err, sizeof err);
    assert_int_not_equal(registry_add(&reg, dup), 0);
    query_def_free(dup);
    struct query_def *q = registry_find(&reg, "q57", 3);
    assert_non_null(q);
    assert_string_equal(q->name, "q57");
    assert_string_equal(q->sql_numbered, "SELECT $1::int");
    assert_int_equal(query_def_param(q, "a", 1), 0);
    assert_int_equal(query_def_param(q, "b", 1), -1);
    assert_null(registry_find(&reg, "q5", 1)); /* a prefix is not a name */
    registry_free(&reg);
}

static struct bulk_def *bulk(const char *const *cols, int n, const char *const *key, int nkey,
                             enum bulk_mode mode)
{
    struct bulk_def *d = xcalloc(1, sizeof *d);
    d->name = xstrdup("t");
    d->table = xstrdup("public.ticks");
    d->columns = xcalloc((size_t)n, sizeof *d->columns);
    for (int i = 0; i < n; i++) d->columns[d->ncolumns++] = xstrdup(cols[i]);
    d->key = xcalloc((size_t)(nkey ? nkey : 1), sizeof *d->key);
    for (int i = 0; i < nkey; i++) d->key[d->nkey++] = xstrdup(key[i]);
    d->mode = mode;
    return d;
}

static void bulk_sql_quotes_identifiers(void **state)
{
    const char *cols[] = {"pair", "bid", "ts"}, *key[] = {"pair", "ts"};
    char err[128];
    struct bulk_def *d = bulk(cols, 3, NULL, 0, BULK_INSERT);
    assert_int_equal(bulk_def_prepare(d, err, sizeof err), 0);
    assert_string_equal(d->sql_copy, "COPY \"public\".\"ticks\" (\"pair\", \"bid\", \"ts\") FROM STDIN");
    assert_null(d->sql_merge);
    bulk_def_free(d);

    d = bulk(cols, 3, key, 2, BULK_UPSERT);
    assert_int_equal(bulk_def_prepare(d, err, sizeof err), 0);
    assert_string_equal(d->sql_merge,
                        "INSERT INTO \"public\".\"ticks\" (\"pair\", \"bid\", \"ts\") SELECT \"pair\", "
                        "\"bid\", \"ts\" FROM sluice_bulk_stage ON CONFLICT (\"pair\", \"ts\") DO "
                        "UPDATE SET \"bid\" = EXCLUDED.\"bid\"");
    bulk_def_free(d);

    d = bulk(cols, 3, key, 2, BULK_DELETE);
    assert_int_equal(bulk_def_prepare(d, err, sizeof err), 0);
    assert_string_equal(d->sql_merge,
                        "DELETE FROM \"public\".\"ticks\" AS t USING sluice_bulk_stage AS s WHERE "
                        "t.\"pair\" = s.\"pair\" AND t.\"ts\" = s.\"ts\"");
    bulk_def_free(d);

    /* A double quote inside a name is doubled, as PQescapeIdentifier does: the name stays one
     * identifier whatever it holds. */
    const char *hostile[] = {"a\"); DROP TABLE x; --"};
    d = bulk(hostile, 1, NULL, 0, BULK_INSERT);
    assert_int_equal(bulk_def_prepare(d, err, sizeof err), 0);
    assert_string_equal(d->sql_copy, "COPY \"public\".\"ticks\" (\"a\"\"); DROP TABLE x; --\") FROM STDIN");
    bulk_def_free(d);

    d = bulk(cols, 3, NULL, 0, BULK_UPDATE);
    assert_int_not_equal(bulk_def_prepare(d, err, sizeof err), 0); /* update needs a key */
    bulk_def_free(d);

    const char *bad[] = {"nope"};
    d = bulk(cols, 3, bad, 1, BULK_UPSERT);
    assert_int_not_equal(bulk_def_prepare(d, err, sizeof err), 0);
    assert_non_null(strstr(err, "nope"));
    bulk_def_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(routes_parse_and_match),
        cmocka_unit_test(routes_match_decoded_segments),
        cmocka_unit_test(registry_finds_by_name),
        cmocka_unit_test(bulk_sql_quotes_identifiers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
