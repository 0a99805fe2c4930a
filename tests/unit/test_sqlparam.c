/* test_sqlparam.c — :name -> $n rewriting, and every way SQL can hide a colon. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlparam.h"

/* Rewrites sql, expects success, the output text and the comma-joined names. */
static void check_ok(const char *sql, const char *want_sql, const char *want_names)
{
    struct sqlparams p;
    char err[256] = "";
    int rc = sqlparam_rewrite(sql, &p, err, sizeof err);
    if (rc != 0) fail_msg("rewrite of [%s] failed: %s", sql, err);
    assert_string_equal(p.sql, want_sql);
    char joined[512] = "";
    for (int i = 0; i < p.count; i++) {
        if (i) strcat(joined, ",");
        strcat(joined, p.names[i]);
    }
    assert_string_equal(joined, want_names);
    sqlparam_free(&p);
    assert_null(p.sql);
    assert_null(p.names);
    assert_int_equal(p.count, 0);
}

/* Expects failure with an error message that contains want_substr. */
static void check_err(const char *sql, const char *want_substr)
{
    struct sqlparams p;
    char err[256] = "";
    int rc = sqlparam_rewrite(sql, &p, err, sizeof err);
    if (rc == 0) fail_msg("rewrite of [%s] succeeded: %s", sql, p.sql);
    assert_int_equal(rc, -1);
    if (strstr(err, want_substr) == NULL) fail_msg("error [%s] lacks [%s]", err, want_substr);
    assert_null(p.sql);
    assert_null(p.names);
    assert_int_equal(p.count, 0);
}

static void test_basic(void **state)
{
    check_ok("SELECT pair, bid FROM quotes WHERE pair = :pair ORDER BY ts DESC LIMIT :n",
             "SELECT pair, bid FROM quotes WHERE pair = $1 ORDER BY ts DESC LIMIT $2", "pair,n");
    check_ok("SELECT 1", "SELECT 1", "");
    check_ok("", "", "");
    check_ok(":a", "$1", "a");
    check_ok("(:a,:b)", "($1,$2)", "a,b");
    check_ok("x=:_under_score9", "x=$1", "_under_score9");
    check_ok("SELECT :Pair, :pair", "SELECT $1, $2", "Pair,pair");
}

static void test_repeated_name(void **state)
{
    check_ok("SELECT * FROM t WHERE a = :x OR b = :y OR c = :x",
             "SELECT * FROM t WHERE a = $1 OR b = $2 OR c = $1", "x,y");
    /* a name that is a prefix of another stays distinct */
    check_ok(":ab + :a + :abc + :a", "$1 + $2 + $3 + $2", "ab,a,abc");
}

static void test_many_params(void **state)
{
    /* double-digit numbers */
    char sql[512] = "SELECT ";
    char want[512] = "SELECT ";
    char names[512] = "";
    for (int i = 1; i <= 12; i++) {
        char tmp[32];
        snprintf(tmp, sizeof tmp, "%s:p%d", i > 1 ? "," : "", i);
        strcat(sql, tmp);
        snprintf(tmp, sizeof tmp, "%s$%d", i > 1 ? "," : "", i);
        strcat(want, tmp);
        snprintf(tmp, sizeof tmp, "%sp%d", i > 1 ? "," : "", i);
        strcat(names, tmp);
    }
    check_ok(sql, want, names);
}

static void test_casts(void **state)
{
    check_ok("SELECT :a::int", "SELECT $1::int", "a");
    check_ok("SELECT x::text FROM t", "SELECT x::text FROM t", "");
    check_ok("SELECT :a::numeric(10,2), b::timestamptz", "SELECT $1::numeric(10,2), b::timestamptz", "a");
    check_ok("SELECT '1'::int", "SELECT '1'::int", "");
    check_ok("SELECT (:a)::int[]", "SELECT ($1)::int[]", "a");
}

static void test_colon_not_a_name(void **state)
{
    check_ok("DO $$ BEGIN x := 1; END $$", "DO $$ BEGIN x := 1; END $$", "");
    check_ok("SELECT a[1:2] FROM t", "SELECT a[1:2] FROM t", "");
    check_ok("SELECT a[lo:hi] FROM t", "SELECT a[lo:hi] FROM t", "");
    check_ok("SELECT a[:n] FROM t", "SELECT a[$1] FROM t", "n");
    check_ok("SELECT a[:lo::int:hi]", "SELECT a[$1::int:hi]", "lo");
    check_ok("x := :v", "x := $1", "v");
    check_ok("SELECT ': ', :1x", "SELECT ': ', :1x", "");
    check_ok("a :", "a :", "");
    check_ok("a : b", "a : b", "");
}

static void test_single_quotes(void **state)
{
    check_ok("SELECT ':not_a_param', :p", "SELECT ':not_a_param', $1", "p");
    check_ok("SELECT 'it''s :x', :y", "SELECT 'it''s :x', $1", "y");
    check_ok("SELECT '', :y", "SELECT '', $1", "y");
    check_ok("SELECT '''', :y", "SELECT '''', $1", "y");
    /* a backslash is an ordinary character in a standard literal */
    check_ok("SELECT 'a\\', :y", "SELECT 'a\\', $1", "y");
    check_ok("SELECT U&':x\\0041', B'01', X'ff', N':n'", "SELECT U&':x\\0041', B'01', X'ff', N':n'", "");
}

static void test_e_literals(void **state)
{
    check_ok("SELECT E'it\\'s :x', :y", "SELECT E'it\\'s :x', $1", "y");
    check_ok("SELECT e'\\\\', :y", "SELECT e'\\\\', $1", "y");
    check_ok("SELECT E'a''b :x', :y", "SELECT E'a''b :x', $1", "y");
    /* a word ending in e followed by a quote is not an E literal: the backslash does not escape */
    check_ok("SELECT type'a\\', :y", "SELECT type'a\\', $1", "y");
    check_err("SELECT E'it\\'s", "unterminated quoted string");
}

static void test_quoted_identifiers(void **state)
{
    check_ok("SELECT \"a:b\", \"x\"\":y\" FROM t WHERE c = :c",
             "SELECT \"a:b\", \"x\"\":y\" FROM t WHERE c = $1", "c");
    check_ok("SELECT \"\"\"\", :c", "SELECT \"\"\"\", $1", "c");
    check_err("SELECT \"abc", "unterminated quoted identifier");
    check_err("SELECT \"ab\"\"", "unterminated quoted identifier");
}

static void test_line_comments(void **state)
{
    check_ok("SELECT 1 -- :a it's\n, :b", "SELECT 1 -- :a it's\n, $1", "b");
    check_ok("SELECT :a -- trailing :z", "SELECT $1 -- trailing :z", "a");
    check_ok("SELECT 1 - -:a", "SELECT 1 - -$1", "a");
}

static void test_block_comments(void **state)
{
    check_ok("SELECT /* :a 'x */ :b", "SELECT /* :a 'x */ $1", "b");
    check_ok("SELECT /* outer /* inner :a */ still :b */ :c", "SELECT /* outer /* inner :a */ still :b */ $1",
             "c");
    check_ok("SELECT 2/:d", "SELECT 2/$1", "d");
    check_ok("SELECT :a*/**/:b", "SELECT $1*/**/$2", "a,b");
    check_err("SELECT /* open", "unterminated block comment");
    check_err("SELECT /* a /* b */ :c", "unterminated block comment");
}

static void test_dollar_quotes(void **state)
{
    check_ok("SELECT $$ :a 'x \" $$, :b", "SELECT $$ :a 'x \" $$, $1", "b");
    check_ok("SELECT $fn$ :a $$ :z $fn$, :b", "SELECT $fn$ :a $$ :z $fn$, $1", "b");
    check_ok("SELECT $a$x$b$ :y $b$ :z$a$, :q", "SELECT $a$x$b$ :y $b$ :z$a$, $1", "q");
    check_ok("SELECT $$$$, :q", "SELECT $$$$, $1", "q");
    /* '$' inside an identifier is not a dollar quote or a positional parameter */
    check_ok("SELECT a$b, c$1 FROM t WHERE x = :x", "SELECT a$b, c$1 FROM t WHERE x = $1", "x");
    check_err("SELECT $$ open", "unterminated dollar-quoted string");
    check_err("SELECT $tag$ open $other$", "unterminated dollar-quoted string");
}

static void test_positional_rejected(void **state)
{
    check_err("SELECT * FROM t WHERE a = $1", "positional $n placeholders are not supported; use :name");
    check_err("SELECT :a, $2", "positional");
    /* but a $1 inside quotes or comments is text */
    check_ok("SELECT '$1', \"$1\", $$ $1 $$ -- $1\n/* $1 */", "SELECT '$1', \"$1\", $$ $1 $$ -- $1\n/* $1 */",
             "");
}

static void test_unterminated(void **state)
{
    check_err("SELECT 'abc", "unterminated quoted string");
    check_err("SELECT 'abc''", "unterminated quoted string");
    check_err("SELECT :a, 'x", "position 12");
}

static void test_small_error_buffer(void **state)
{
    struct sqlparams p;
    char err[8];
    assert_int_equal(sqlparam_rewrite("SELECT $1", &p, err, sizeof err), -1);
    assert_int_equal(strlen(err), 7);
    assert_int_equal(sqlparam_rewrite("SELECT $1", &p, NULL, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_repeated_name),
        cmocka_unit_test(test_many_params),
        cmocka_unit_test(test_casts),
        cmocka_unit_test(test_colon_not_a_name),
        cmocka_unit_test(test_single_quotes),
        cmocka_unit_test(test_e_literals),
        cmocka_unit_test(test_quoted_identifiers),
        cmocka_unit_test(test_line_comments),
        cmocka_unit_test(test_block_comments),
        cmocka_unit_test(test_dollar_quotes),
        cmocka_unit_test(test_positional_rejected),
        cmocka_unit_test(test_unterminated),
        cmocka_unit_test(test_small_error_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
