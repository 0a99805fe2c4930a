/* test_conninfo.c — passwords masked in every form of connection string, malformed ones
 * included, and which strings libpq cannot use as they stand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "conninfo.h"

static void redacts(const char *in, const char *want)
{
    char *got = url_redact(in);
    if (strcmp(got, want) != 0) fail_msg("url_redact(\"%s\"):\n  got  \"%s\"\n  want \"%s\"", in, got, want);
    free(got);
}

static void urls(void **state)
{
    redacts("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app");
    redacts("postgres://app:s3cret@db/app?sslmode=verify-full",
            "postgres://app:***@db/app?sslmode=verify-full");
    redacts("postgresql://app:s3cr%zzet@127.0.0.1:1/app", "postgresql://app:***@127.0.0.1:1/app");
    redacts("postgresql://:pw@db/app", "postgresql://:***@db/app");
    /* no password: unchanged */
    redacts("postgresql://app@db:5432/app", "postgresql://app@db:5432/app");
    redacts("postgresql://db:5432/app", "postgresql://db:5432/app");
    redacts("postgresql:///app?host=/var/run/postgresql", "postgresql:///app?host=/var/run/postgresql");
    /* a raw '@', '/' or '?' in the password: masked up to the last '@' */
    redacts("postgresql://app:p@ss@db/app", "postgresql://app:***@db/app");
    redacts("postgresql://app:pa/ss@db/app", "postgresql://app:***@db/app");
    redacts("postgresql://app:p?x=1@db/app", "postgresql://app:***@db/app");
    redacts("postgresql://app:secret@[::1/app", "postgresql://app:***@[::1/app");
    /* password parameters, any case, percent-encoded names; the rest after them is hidden */
    redacts("postgresql://app@db/app?password=s3cret", "postgresql://app@db/app?password=***");
    redacts("postgresql://app@db/app?sslmode=require&password=s3cret&connect_timeout=3",
            "postgresql://app@db/app?sslmode=require&password=***");
    redacts("postgresql://db/app?sslpassword=keypass", "postgresql://db/app?sslpassword=***");
    redacts("postgresql://db/app?PASSWORD=x", "postgresql://db/app?PASSWORD=***");
    redacts("postgresql://db/app?pass%77ord=x", "postgresql://db/app?pass%77ord=***");
    redacts("postgresql://db/app?application_name=a@b&password=x",
            "postgresql://db/app?application_name=a@b&password=***");
    redacts("postgresql://u:pw@db/app?password=x&y", "postgresql://u:***@db/app?password=***");
    redacts("postgresql://db/app?passwords=x", "postgresql://db/app?passwords=x");
}

static void keyword_value_strings(void **state)
{
    redacts("host=db port=5432 user=app password=s3cret dbname=app",
            "host=db port=5432 user=app password=*** dbname=app");
    redacts("password = 's3 cret' host=db", "password = *** host=db");
    redacts("password='it\\'s' host=db", "password=*** host=db");
    redacts("password=s3\\ cret host=db", "password=*** host=db");
    redacts("host=db sslpassword=k", "host=db sslpassword=***");
    redacts("host=db PASSWORD=x", "host=db PASSWORD=***");
    redacts("  host=db  ", "  host=db  ");
    redacts("host=db port=5432", "host=db port=5432");
    /* what libpq cannot read hides the rest: an unquoted value with a space, an open quote */
    redacts("host=db password=my secret dbname=x", "host=db password=*** ***");
    redacts("host=db password='s3cr", "host=db ***");
    redacts("password", "password");
    redacts("host=db =x password=y", "host=db ***");
}

static void other_strings(void **state)
{
    redacts("", "");
    redacts("appdb", "appdb");
    char *s = url_redact(NULL);
    assert_string_equal(s, "");
    free(s);
}

static void usable(void **state)
{
    assert_true(conninfo_usable(NULL));
    assert_true(conninfo_usable(""));
    assert_true(conninfo_usable("appdb"));
    assert_true(conninfo_usable("postgresql://app:s3cret@db:5432/app?sslmode=require"));
    assert_true(conninfo_usable("postgresql://app:p%40ss@db/app"));
    assert_true(conninfo_usable("postgresql://h1:5432,h2:5433/app"));
    assert_true(conninfo_usable("host=db port=5432 password='a b'"));
    assert_true(conninfo_usable("host=/var/run/pg@1 dbname=x"));
    /* libpq's parser refuses these, and its message would quote them */
    assert_false(conninfo_usable("postgresql://app:s3cr%zzet@127.0.0.1:1/app"));
    assert_false(conninfo_usable("postgresql://app:s3cret@[::1/app"));
    assert_false(conninfo_usable("host=db password='s3cr"));
    assert_false(conninfo_usable("host=db nosuchoption=1"));
    assert_false(conninfo_usable("postgresql://db/app?nosuchoption=1"));
    /* a password with a raw '@' or '/' ends up in the host or the port */
    assert_false(conninfo_usable("postgresql://app:p@ss@db/app"));
    assert_false(conninfo_usable("postgresql://app:pa/ss@db/app"));
    assert_false(conninfo_usable("host=db port=5432x"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(urls),
        cmocka_unit_test(keyword_value_strings),
        cmocka_unit_test(other_strings),
        cmocka_unit_test(usable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
