/* test_openapi.c — the OpenAPI document built from a registry and a description, without a
 * database: type mapping, loose types when nothing was described, stale descriptions ignored,
 * equivalent route paths, unique operationIds, handlers, and the describe result helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "describe.h"
#include "endpoint.h"
#include "openapi.h"
#include "pgtype.h"
#include "util.h"

static struct query_def *add_query(struct registry *reg, const char *name, const char *sql, const char *route,
                                   bool readonly, bool single)
{
    char err[256];
    struct query_def *q = query_def_new(name, sql, route, err, sizeof err);
    if (q == NULL) fail_msg("query_def_new(%s): %s", name, err);
    q->readonly = readonly;
    q->single = single;
    q->pool = xstrdup("primary");
    assert_int_equal(registry_add(reg, q), 0);
    return q;
}

/* A described entry for q: its parameters typed by types[], and ncols columns names[i]:ctypes[i]. */
static void describe(struct describe_entry *e, const struct query_def *q, const Oid *types, int ncols,
                     const char *const *names, const Oid *ctypes)
{
    e->name = xstrdup(q->name);
    e->sql = xstrdup(q->sql_numbered);
    e->ok = true;
    e->nparams = q->nparams;
    e->param_types = xcalloc((size_t)q->nparams + 1, sizeof(Oid));
    memcpy(e->param_types, types, (size_t)q->nparams * sizeof(Oid));
    e->returns_rows = ncols > 0;
    e->ncols = ncols;
    e->cols = xcalloc((size_t)ncols + 1, sizeof *e->cols);
    for (int i = 0; i < ncols; i++)
        e->cols[i] = (struct describe_column){xstrdup(names[i]), ctypes[i], false};
}

static json_t *document(const struct registry *reg, const struct describe_result *d, const char *admin_token)
{
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.admin_token = (char *)admin_token;
    struct buf out = BUF_INIT;
    openapi_write(&out, reg, d, &cfg);
    json_error_t jerr;
    json_t *doc = json_loadb(out.data, out.len, 0, &jerr);
    if (doc == NULL) fail_msg("not JSON: %s", jerr.text);
    buf_free(&out);
    return doc;
}

/* The value at a path of keys (NULL-terminated); NULL when missing. */
static json_t *at(json_t *v, ...)
{
    va_list ap;
    va_start(ap, v);
    for (const char *k; v && (k = va_arg(ap, const char *)) != NULL;) v = json_object_get(v, k);
    va_end(ap);
    return v;
}

static const char *str_at(json_t *v, const char *a, const char *b, const char *c)
{
    json_t *x = at(v, a, b, c, NULL);
    return json_is_string(x) ? json_string_value(x) : NULL;
}

static void test_described_types(void **state)
{
    struct registry reg;
    registry_init(&reg);
    struct query_def *q =
        add_query(&reg, "quote", "SELECT pair, bid, ts, n FROM quotes WHERE pair = :pair AND n > :n",
                  "GET /quotes/{pair}", true, true);
    struct describe_result d = {0};
    d.nqueries = 1;
    d.queries = xcalloc(1, sizeof *d.queries);
    const Oid ptypes[] = {PGT_TEXT, PGT_INT8};
    const char *const names[] = {"pair", "bid", "ts", "n"};
    const Oid ctypes[] = {PGT_TEXT, PGT_NUMERIC, PGT_TIMESTAMPTZ, 1016 /* int8[] */};
    describe(&d.queries[0], q, ptypes, 4, names, ctypes);

    json_t *doc = document(&reg, &d, NULL);
    json_t *row = at(doc, "components", "schemas", "query.quote.row", "properties", NULL);
    assert_string_equal(str_at(row, "pair", "type", NULL), "string");
    assert_string_equal(str_at(row, "bid", "x-pg-type", NULL), "numeric");
    assert_int_equal(json_array_size(at(row, "bid", "anyOf", NULL)), 2);
    assert_string_equal(str_at(row, "ts", "format", NULL), "date-time");
    assert_string_equal(str_at(row, "n", "type", NULL), "array");
    assert_string_equal(json_string_value(at(row, "n", "items", "x-pg-type", NULL)), "bigint");
    /* single: 200 is the row, and 404 is documented; no result schema */
    json_t *get = at(doc, "paths", "/query/quote", "get", NULL);
    assert_string_equal(
        json_string_value(at(get, "responses", "200", "content", "application/json", "schema", "$ref", NULL)),
        "#/components/schemas/query.quote.row");
    assert_non_null(at(get, "responses", "404", NULL));
    assert_null(at(doc, "components", "schemas", "query.quote.result", NULL));
    /* in the query string an int8 is a plain int64 integer */
    json_t *params = at(get, "parameters", NULL);
    assert_int_equal(json_array_size(params), 2);
    assert_string_equal(json_string_value(at(json_array_get(params, 1), "schema", "format", NULL)), "int64");
    /* the alias: pair in the path, n in the query string */
    json_t *alias = at(doc, "paths", "/quotes/{pair}", "get", "parameters", NULL);
    assert_string_equal(json_string_value(at(json_array_get(alias, 0), "in", NULL)), "path");
    assert_string_equal(json_string_value(at(json_array_get(alias, 1), "name", NULL)), "n");
    assert_string_equal(json_string_value(at(json_array_get(alias, 1), "in", NULL)), "query");
    /* no admin token: no admin path, no security scheme */
    assert_null(at(doc, "paths", "/admin/queries", NULL));
    assert_null(at(doc, "components", "securitySchemes", NULL));
    json_decref(doc);

    /* The registry learns the types from the description; a changed SQL does not. */
    struct registry other;
    registry_init(&other);
    struct query_def *same = add_query(&other, "quote", q->sql, NULL, true, true);
    struct query_def *changed = add_query(&other, "quote2", "SELECT 1 WHERE :x = 1", NULL, true, false);
    describe_apply(&d, &other);
    assert_true(same->described);
    assert_int_equal(same->param_types[1], PGT_INT8);
    assert_false(changed->described);
    free(d.queries[0].sql);
    d.queries[0].sql = xstrdup("SELECT 2");
    assert_null(describe_find_query(&d, same));
    describe_free(&d);
    assert_null(d.queries);
    registry_free(&other);
    registry_free(&reg);
}

static void test_without_description(void **state)
{
    struct registry reg;
    registry_init(&reg);
    add_query(&reg, "put", "INSERT INTO t (a) VALUES (:a)", NULL, false, false);
    json_t *doc = document(&reg, NULL, "secret");
    /* a write: POST only, a body with the parameter, typed loosely */
    assert_null(at(doc, "paths", "/query/put", "get", NULL));
    json_t *a = at(doc, "components", "schemas", "query.put.params", "properties", "a", NULL);
    assert_non_null(a);
    assert_null(at(a, "type", NULL));
    assert_non_null(strstr(json_string_value(at(a, "description", NULL)), "not known"));
    assert_true(
        json_is_true(at(doc, "components", "schemas", "query.put.row", "additionalProperties", NULL)));
    assert_non_null(at(doc, "paths", "/query/put", "post", "responses", "415", NULL));
    assert_null(at(doc, "paths", "/query/put", "post", "responses", "404", NULL));
    /* the admin token brings the admin path and its bearer scheme */
    assert_non_null(at(doc, "paths", "/admin/queries", "get", "security", NULL));
    assert_string_equal(str_at(at(doc, "components", "securitySchemes", NULL), "admin", "scheme", NULL),
                        "bearer");
    /* only the error responses in use are components */
    assert_non_null(at(doc, "components", "responses", "unauthorized", NULL));
    assert_non_null(at(doc, "components", "responses", "bad_request", NULL));
    json_decref(doc);
    registry_free(&reg);
}

static void test_paths_and_ids(void **state)
{
    struct registry reg;
    registry_init(&reg);
    add_query(&reg, "a", "SELECT :id AS id", "GET /things/{id}", true, false);
    /* the same path to OpenAPI (other parameter name): the router takes the first, so is the doc */
    add_query(&reg, "b", "SELECT :key AS k", "GET /things/{key}", true, false);
    /* another method on the first path is fine */
    add_query(&reg, "c", "DELETE FROM t WHERE id = :id", "DELETE /things/{id}", false, false);
    /* operationIds: query "a_get" would take "a_get" from a's GET */
    add_query(&reg, "a_get", "SELECT 1 AS one", NULL, true, false);
    struct handler_def *h = xcalloc(1, sizeof *h);
    char err[128];
    h->name = xstrdup("hello");
    h->route = route_parse("POST /hello/{who}", err, sizeof err);
    reg.handlers = xcalloc(1, sizeof *reg.handlers);
    reg.handlers[0] = h;
    reg.nhandlers = 1;

    json_t *doc = document(&reg, NULL, NULL);
    json_t *paths = at(doc, "paths", NULL);
    assert_non_null(at(paths, "/things/{id}", "get", NULL));
    assert_non_null(at(paths, "/things/{id}", "delete", NULL));
    assert_null(at(paths, "/things/{key}", NULL));
    assert_string_equal(json_string_value(at(paths, "/things/{id}", "get", "operationId", NULL)), "a_route");
    /* a DELETE alias takes its other parameters in the query string */
    assert_null(at(paths, "/things/{id}", "delete", "requestBody", NULL));
    /* every operationId differs */
    json_t *seen = json_object();
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        const char *method;
        json_t *op;
        json_object_foreach(item, method, op)
        {
            const char *id = json_string_value(json_object_get(op, "operationId"));
            assert_non_null(id);
            if (json_object_get(seen, id)) fail_msg("operationId %s twice", id);
            json_object_set_new(seen, id, json_true());
        }
    }
    assert_non_null(json_object_get(seen, "a_get"));
    assert_non_null(json_object_get(seen, "a_get_2"));
    json_decref(seen);
    /* the handler, with its path parameter */
    json_t *hello = at(paths, "/hello/{who}", "post", NULL);
    assert_string_equal(json_string_value(at(hello, "operationId", NULL)), "hello");
    assert_string_equal(json_string_value(at(json_array_get(at(hello, "parameters", NULL), 0), "name", NULL)),
                        "who");
    /* the fixed paths */
    assert_non_null(at(paths, "/batch", "post", NULL));
    assert_non_null(at(paths, "/health/ready", "get", NULL));
    assert_non_null(at(paths, "/metrics", "get", NULL));
    json_decref(doc);
    registry_free(&reg);
}

static void test_description_handover(void **state)
{
    assert_null(describe_current());
    struct describe_result *d1 = xcalloc(1, sizeof *d1), *d2 = xcalloc(1, sizeof *d2);
    describe_set_current(d1);
    assert_ptr_equal(describe_current(), d1);
    describe_set_current(d2); /* d1 stays allocated until openapi_shutdown */
    assert_ptr_equal(describe_current(), d2);
    describe_forget_all();
    assert_null(describe_current());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_described_types),
        cmocka_unit_test(test_without_description),
        cmocka_unit_test(test_paths_and_ids),
        cmocka_unit_test(test_description_handover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
