/* test_import.c — how `sluice import` reads a normalized statement of pg_stat_statements: which
 * statements it takes, the names it gives them and their $n, and the SQL it writes; and that the
 * file it writes loads as exactly those names and SQL, whatever they and the database's error
 * messages hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"
#include "luasandbox.h"
#include "util.h"

/* Converts stmt, expects success with that query name, SQL, readonly flag and comma-joined
 * parameter names ($1 first). */
static void check(const char *stmt, const char *name, const char *sql, bool readonly, const char *params)
{
    struct import_query q;
    if (import_convert(stmt, &q) != 0) fail_msg("[%s] was refused", stmt);
    assert_string_equal(q.name, name);
    assert_string_equal(q.sql, sql);
    if (q.readonly != readonly) fail_msg("[%s]: readonly is %d", stmt, q.readonly);
    char joined[512] = "";
    for (int i = 0; i < q.nparams; i++) {
        if (i) strcat(joined, ",");
        strcat(joined, q.params[i] ? q.params[i] : "(none)");
    }
    assert_string_equal(joined, params);
    import_query_free(&q);
    assert_null(q.sql);
}

static void refused(const char *stmt)
{
    struct import_query q;
    if (import_convert(stmt, &q) == 0) fail_msg("[%s] was taken as %s", stmt, q.name);
    assert_null(q.sql);
}

static void test_column_comparisons(void **state)
{
    check("SELECT pair, bid, ask, ts FROM quotes WHERE pair = $1 ORDER BY ts DESC LIMIT $2",
          "select_quotes_by_pair",
          "SELECT pair, bid, ask, ts FROM quotes WHERE pair = :pair ORDER BY ts DESC LIMIT :limit", true,
          "pair,limit");
    /* qualified and quoted columns, the column on the right, NOT LIKE, casts on the column */
    check("SELECT * FROM public.orders o WHERE o.account_id = $1 AND $2 < o.qty AND o.pair NOT LIKE $3",
          "select_orders_by_account_id_qty_pair",
          "SELECT * FROM public.orders o WHERE o.account_id = :account_id AND :qty < o.qty AND o.pair NOT "
          "LIKE :pair",
          true, "account_id,qty,pair");
    check("SELECT 1 FROM t WHERE \"Created At\"::date <> $1", "select_t_by_created_at",
          "SELECT 1 FROM t WHERE \"Created At\"::date <> :created_at", true, "created_at");
    /* a $n with no column beside it is p<n> */
    check("SELECT $1 + 1, lower(name) = $2 FROM t", "select_t", "SELECT :p1 + 1, lower(name) = :p2 FROM t",
          true, "p1,p2");
}

static void test_ranges_and_lists(void **state)
{
    check("SELECT * FROM quotes WHERE pair = $1 AND ts >= $2 AND ts < $3", "select_quotes_by_pair_ts",
          "SELECT * FROM quotes WHERE pair = :pair AND ts >= :ts_min AND ts < :ts_max", true,
          "pair,ts_min,ts_max");
    check("SELECT * FROM orders WHERE qty BETWEEN $1 AND $2 OFFSET $3", "select_orders_by_qty",
          "SELECT * FROM orders WHERE qty BETWEEN :qty_min AND :qty_max OFFSET :offset", true,
          "qty_min,qty_max,offset");
    check("SELECT * FROM instruments WHERE symbol IN ($1, $2, $3)", "select_instruments_by_symbol",
          "SELECT * FROM instruments WHERE symbol IN (:symbol, :symbol_2, :symbol_3)", true,
          "symbol,symbol_2,symbol_3");
    check("SELECT * FROM instruments WHERE symbol = ANY($1)", "select_instruments_by_symbol",
          "SELECT * FROM instruments WHERE symbol = ANY(:symbol)", true, "symbol");
    /* a $n used twice keeps one name */
    check("SELECT * FROM t WHERE a = $1 OR b = $1", "select_t_by_a", "SELECT * FROM t WHERE a = :a OR b = :a",
          true, "a");
}

static void test_writes(void **state)
{
    check("INSERT INTO orders (account_id, pair, side, qty, price) VALUES ($1, $2, $3, $4, $5) RETURNING id",
          "insert_orders",
          "INSERT INTO orders (account_id, pair, side, qty, price) VALUES (:account_id, :pair, :side, :qty, "
          ":price) "
          "RETURNING id",
          false, "account_id,pair,side,qty,price");
    check("INSERT INTO ticks (pair, bid) VALUES ($1, $2), ($3, $4)", "insert_ticks",
          "INSERT INTO ticks (pair, bid) VALUES (:pair, :bid), (:pair_2, :bid_2)", false,
          "pair,bid,pair_2,bid_2");
    /* only a $n that is a whole value of the tuple takes the column's name */
    check("INSERT INTO t (a, b) VALUES ($1, now() - $2::interval) ON CONFLICT (a) DO UPDATE SET b = $3",
          "insert_t",
          "INSERT INTO t (a, b) VALUES (:a, now() - :p2::interval) ON CONFLICT (a) DO UPDATE SET b = :b",
          false, "a,p2,b");
    check("UPDATE orders SET status = $1 WHERE id = $2 AND status = $3", "update_orders_by_id_status",
          "UPDATE orders SET status = :status WHERE id = :id AND status = :status_2", false,
          "status,id,status_2");
    check("DELETE FROM ONLY sessions WHERE expires_at < $1", "delete_sessions_by_expires_at",
          "DELETE FROM ONLY sessions WHERE expires_at < :expires_at", false, "expires_at");
}

static void test_readonly(void **state)
{
    check("WITH t AS (SELECT account_id, sum(qty) AS q FROM orders GROUP BY 1) SELECT * FROM t WHERE q > $1",
          "select_t_by_q",
          "WITH t AS (SELECT account_id, sum(qty) AS q FROM orders GROUP BY 1) SELECT * FROM t WHERE q > :q",
          true, "q");
    check("WITH d AS (DELETE FROM q WHERE id = $1 RETURNING *) SELECT * FROM d", "select_d",
          "WITH d AS (DELETE FROM q WHERE id = :id RETURNING *) SELECT * FROM d", false, "id");
    check("SELECT * FROM accounts WHERE id = $1 FOR UPDATE", "select_accounts_by_id",
          "SELECT * FROM accounts WHERE id = :id FOR UPDATE", false, "id");
    check("SELECT nextval($1)", "select_nextval", "SELECT nextval(:p1)", false, "p1");
    check("select now()", "select_now", "select now()", true, "");
    check("SELECT * INTO archive FROM accounts WHERE id = $1", "select_accounts_by_id",
          "SELECT * INTO archive FROM accounts WHERE id = :id", false, "id");
    check("SELECT * FROM accounts WHERE id = $1 FOR KEY SHARE", "select_accounts_by_id",
          "SELECT * FROM accounts WHERE id = :id FOR KEY SHARE", false, "id");
}

/* The calls a statement makes, as "schema.name" or "name", comma-joined. */
static void calls(const char *stmt, const char *want)
{
    struct import_call *c;
    int n = import_calls(stmt, &c);
    assert_true(n >= 0);
    char got[512] = "";
    for (int i = 0; i < n; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s%s%s", i ? "," : "",
                 c[i].schema ? c[i].schema : "", c[i].schema ? "." : "", c[i].name);
    if (strcmp(got, want) != 0) fail_msg("[%s]: calls [%s], expected [%s]", stmt, got, want);
    import_calls_free(c, n);
}

static void test_calls(void **state)
{
    calls("SELECT pg_advisory_lock($1)", "pg_advisory_lock");
    calls("SELECT Public.Next_Id( $1 ), \"My\"\"Fn\"(), s.\"F\" (x) FROM t", "public.next_id,My\"Fn,s.F");
    calls("SELECT count(*) FROM t WHERE a IN ($1, $2) AND b = 'f(x)' -- g(y)", "count,in");
    calls("SELECT 1", "");
    struct import_call *c;
    assert_int_equal(import_calls("SELECT 'unterminated", &c), -1);
}

static void test_typed_literals(void **state)
{
    check("SELECT count(*) FROM quotes WHERE ts > now() - interval $1", "select_quotes",
          "SELECT count(*) FROM quotes WHERE ts > now() - CAST(:p1 AS interval)", true, "p1");
    check("SELECT * FROM t WHERE ts < timestamp with time zone $1 AND d = date $2", "select_t",
          "SELECT * FROM t WHERE ts < CAST(:p1 AS timestamp with time zone) AND d = CAST(:p2 AS date)", true,
          "p1,p2");
    /* AT TIME ZONE $1 is an operand, not a typed literal */
    check("SELECT ts AT TIME ZONE $1 FROM t", "select_t", "SELECT ts AT TIME ZONE :p1 FROM t", true, "p1");
}

static void test_lexing(void **state)
{
    /* $n inside literals, identifiers, comments and dollar quotes stay; trailing ';' goes */
    check("SELECT '$1', \"$2\", $$ $3 $$, E'\\'$4' /* $5 */ FROM t WHERE a = $1 -- $6\n;", "select_t_by_a",
          "SELECT '$1', \"$2\", $$ $3 $$, E'\\'$4' /* $5 */ FROM t WHERE a = :a -- $6", true, "a");
    /* names are lower-case [a-z0-9_], never starting with a digit */
    check("SELECT * FROM \"My Table\" WHERE \"2nd-Col\" = $1", "select_my_table_by_c_2nd_col",
          "SELECT * FROM \"My Table\" WHERE \"2nd-Col\" = :c_2nd_col", true, "c_2nd_col");
}

static void test_refused(void **state)
{
    refused("BEGIN");
    refused("SET statement_timeout = $1");
    refused("CREATE TABLE t (a int)");
    refused("COPY t FROM STDIN");
    refused("VACUUM ANALYZE quotes");
    refused("");
    refused("SELECT 'unterminated");
    refused("/* only a comment */");
}

/* Definitions of an imported file, whatever their texts hold, load back as they were written and
 * run nothing; the comment of a statement that did not prepare stays one comment line. */
static void test_written_file(void **state)
{
    static const struct {
        const char *name, *sql;
        bool readonly;
    } defs[] = {
        {"select_t", "SELECT b FROM t WHERE a = c[1]", true}, /* ends in ]: [[...]]] would not load */
        {"select_u", "SELECT ']]', ']=]', ']==]' FROM u WHERE b = :b", true},
        {"update_t", "\nUPDATE t\n   SET a = :a]]\n--", false},
        {"select_v", "SELECT 1\r\nFROM v -- \x01", true},
        {"x\"\nos.execute('id')\n--", "]=]\nos.execute('id')\n--[[", false},
    };
    struct buf file = BUF_INIT;
    for (size_t i = 0; i < ARRAY_SIZE(defs); i++) {
        struct import_query q = {
            .name = (char *)defs[i].name, .sql = (char *)defs[i].sql, .readonly = defs[i].readonly};
        import_write_query(&file, &q, 40, 1.25, 40);
    }
    size_t before = file.len;
    import_write_left(&file, "relation \"x\nos.execute([=[id > /tmp/pwned]=])\n--\" does not exist",
                      "SELECT * FROM \"x\nos.execute([=[id > /tmp/pwned]=])\n--\"\r\n");
    /* one line: "--   reason: statement" and its line break */
    assert_memory_equal(file.data + before, "--   relation \"x\\nos.execute(", 29);
    assert_ptr_equal(strchr(file.data + before, '\n'), file.data + file.len - 1);
    assert_null(strchr(file.data + before, '\r'));

    char err[512];
    lua_State *L = sandbox_run(file.data, file.len,
                               "got = {}\n"
                               "sluice = { query = function(name) return function(def)\n"
                               "  got[#got + 1] = { name, def.sql, def.readonly or false } end end }\n",
                               err, sizeof err);
    if (L == NULL) fail_msg("does not load: %s\n%s", err, file.data);
    lua_getglobal(L, "got");
    assert_int_equal(lua_objlen(L, -1), ARRAY_SIZE(defs));
    for (size_t i = 0; i < ARRAY_SIZE(defs); i++) {
        lua_rawgeti(L, -1, (int)i + 1);
        lua_rawgeti(L, -1, 1);
        lua_rawgeti(L, -2, 2);
        lua_rawgeti(L, -3, 3);
        assert_string_equal(lua_tostring(L, -3), defs[i].name);
        assert_string_equal(lua_tostring(L, -2), defs[i].sql);
        assert_int_equal(lua_toboolean(L, -1), defs[i].readonly);
        lua_pop(L, 4);
    }
    lua_close(L);
    /* readable SQL stays readable */
    assert_non_null(strstr(file.data, "  sql = [=[SELECT b FROM t WHERE a = c[1]]=],\n"));
    assert_non_null(strstr(file.data, "sluice.query \"update_t\" {\n  sql = [=[\n\nUPDATE t\n"));
    buf_free(&file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_column_comparisons),
        cmocka_unit_test(test_ranges_and_lists),
        cmocka_unit_test(test_writes),
        cmocka_unit_test(test_readonly),
        cmocka_unit_test(test_calls),
        cmocka_unit_test(test_typed_literals),
        cmocka_unit_test(test_lexing),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_written_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
