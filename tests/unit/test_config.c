/* test_config.c — config_load: defaults, every key, the environment overrides and the exact
 * one-line error for each kind of mistake. Each test writes its own file into a temp folder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "cpus.h"
#include "log.h"
#include "util.h"

/* Every override variable, as config.c lists them. */
#define NVARS env_var_count()

static size_t env_var_count(void)
{
    size_t n = 0;
    while (config_env_var(n) != NULL) n++;
    return n;
}

static char tmpdir[64];
static char *saved_env[64]; /* more than there are overrides */
static int file_seq;

static void clear_env(void)
{
    for (size_t i = 0; i < NVARS; i++) unsetenv(config_env_var(i));
}

/* The overrides this process inherited are put back when the group ends. */
static int group_setup(void **state)
{
    assert_true(NVARS <= 64);
    for (size_t i = 0; i < NVARS; i++) {
        const char *v = getenv(config_env_var(i));
        saved_env[i] = v ? xstrdup(v) : NULL;
    }
    strcpy(tmpdir, "/tmp/sluice_test_config_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    for (size_t i = 0; i < NVARS; i++) {
        if (saved_env[i])
            setenv(config_env_var(i), saved_env[i], 1);
        else
            unsetenv(config_env_var(i));
        free(saved_env[i]);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int test_setup(void **state)
{
    clear_env();
    return 0;
}

static int test_teardown(void **state)
{
    clear_env();
    return 0;
}

/* Writes text to a fresh file in tmpdir; returns its path (static storage, valid until the next call). */
static const char *write_conf(const char *text)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/conf%d.lua", tmpdir, ++file_seq);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Loads text and checks that it fails with exactly the line fmt (where %s is the file's path). */
static void expect_error(const char *text, const char *fmt)
{
    const char *path = write_conf(text);
    char want[512], err[512];
    snprintf(want, sizeof want, fmt, path, path);
    struct config c;
    memset(&c, 0x5a, sizeof c);
    assert_int_equal(config_load(path, &c, err, sizeof err), -1);
    assert_string_equal(err, want);
    /* a failed load leaves nothing to free */
    assert_null(c.path);
    assert_null(c.pools);
    assert_int_equal(c.npools, 0);
}

static void load_ok(const char *text, struct config *c)
{
    char err[512] = "";
    int rc = config_load(write_conf(text), c, err, sizeof err);
    if (rc != 0) fail_msg("config_load: %s", err);
}

static void test_defaults(void **state)
{
    struct config c;
    const char *path = write_conf("return {}\n");
    char err[256] = "x";
    assert_int_equal(config_load(path, &c, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_string_equal(c.path, path);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_int_equal(c.workers, cpu_count());
    assert_null(c.admin_token);
    assert_int_equal(c.max_body_bytes, 64 * 1024 * 1024);
    assert_true(c.shutdown_timeout == 30);
    assert_true(c.shutdown_grace == 5);
    assert_true(c.request_timeout == 30);
    assert_string_equal(c.migrations, "migrations");
    assert_int_equal(c.log_level, LOG_INFO);
    assert_true(c.log_json);
    assert_int_equal(c.nscripts, 2);
    assert_string_equal(c.scripts[0], "lua/endpoints/*.lua");
    assert_string_equal(c.scripts[1], "lua/policy.lua");

    assert_int_equal(c.npools, 1);
    const struct pool_config *p = &c.pools[0];
    assert_string_equal(p->name, "primary");
    assert_string_equal(p->url, "");
    assert_int_equal(p->pool_size, 2 * cpu_count() + 1);
    assert_int_equal(p->max_overflow, 20);
    assert_true(p->pool_timeout == 30);
    assert_true(p->pool_recycle == 1800);
    assert_true(p->idle_timeout == 300);
    assert_true(p->connect_timeout == 5);
    assert_false(p->echo);
    assert_int_equal(p->prepared_statement_cache_size, 256);
    assert_int_equal(p->statement_timeout_ms, 30000);
    assert_int_equal(p->pipeline_depth, 16);
    assert_int_equal(p->max_queue, 1024);
    assert_int_equal(p->failover_wait_ms, 10000);
    assert_false(p->optional);
    assert_int_equal(p->read_your_writes_wait_ms, 200);
    assert_ptr_equal(config_pool(&c, "primary"), p);
    assert_null(config_pool(&c, "replica"));
    config_free(&c);
    assert_null(c.path);
    config_free(&c); /* freeing twice is harmless: the struct was cleared */
}

static void test_every_key(void **state)
{
    struct config c;
    load_ok(
        "local mb = 1024 * 1024\n"
        "return {\n"
        "  listen = 'unix:/run/sluice.sock', workers = 3, admin_token = 's3cret',\n"
        "  max_body_bytes = 8 * mb, shutdown_timeout = 2.5, shutdown_grace = 0, request_timeout = 0,\n"
        "  migrations = 'db/migrations', log = { level = 'debug', format = 'text' },\n"
        "  scripts = { 'a.lua', 'b/*.lua', 'c.lua' },\n"
        "  pools = {\n"
        "    zeta = { url = 'host=z', optional = true },\n"
        "    primary = { url = 'postgresql://u:p@db:5432/forex', pool_size = 7, max_overflow = 0,\n"
        "      pool_timeout = 1.5, pool_recycle = 0, idle_timeout = 60, connect_timeout = 2, echo = true,\n"
        "      prepared_statement_cache_size = 64, statement_timeout_ms = 0, pipeline_depth = 1,\n"
        "      max_queue = 0, failover_wait_ms = 0, optional = false, read_your_writes_wait_ms = 0 },\n"
        "    alpha = { pool_size = 'auto' },\n"
        "  },\n"
        "}\n",
        &c);
    assert_string_equal(c.listen, "unix:/run/sluice.sock");
    assert_int_equal(c.workers, 3);
    assert_string_equal(c.admin_token, "s3cret");
    assert_int_equal(c.max_body_bytes, 8 * 1024 * 1024);
    assert_true(c.shutdown_timeout == 2.5);
    assert_true(c.shutdown_grace == 0);
    assert_true(c.request_timeout == 0);
    assert_string_equal(c.migrations, "db/migrations");
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_false(c.log_json);
    assert_int_equal(c.nscripts, 3);
    assert_string_equal(c.scripts[0], "a.lua");
    assert_string_equal(c.scripts[1], "b/*.lua");
    assert_string_equal(c.scripts[2], "c.lua");

    /* primary first, then by name */
    assert_int_equal(c.npools, 3);
    assert_string_equal(c.pools[0].name, "primary");
    assert_string_equal(c.pools[1].name, "alpha");
    assert_string_equal(c.pools[2].name, "zeta");
    const struct pool_config *p = config_pool(&c, "primary");
    assert_ptr_equal(p, &c.pools[0]);
    assert_string_equal(p->url, "postgresql://u:p@db:5432/forex");
    assert_int_equal(p->pool_size, 7);
    assert_int_equal(p->max_overflow, 0);
    assert_true(p->pool_timeout == 1.5);
    assert_true(p->pool_recycle == 0);
    assert_true(p->idle_timeout == 60);
    assert_true(p->connect_timeout == 2);
    assert_true(p->echo);
    assert_int_equal(p->prepared_statement_cache_size, 64);
    assert_int_equal(p->statement_timeout_ms, 0);
    assert_int_equal(p->pipeline_depth, 1);
    assert_int_equal(p->max_queue, 0);
    assert_int_equal(p->failover_wait_ms, 0);
    assert_false(p->optional);
    assert_int_equal(p->read_your_writes_wait_ms, 0);
    p = config_pool(&c, "alpha");
    assert_int_equal(p->pool_size, 2 * cpu_count() + 1);
    assert_string_equal(p->url, "");
    p = config_pool(&c, "zeta");
    assert_string_equal(p->url, "host=z");
    assert_true(p->optional);
    assert_int_equal(p->max_overflow, 20);
    config_free(&c);
}

static void test_auto_and_script_forms(void **state)
{
    struct config c;
    load_ok(
        "return { workers = 'auto', scripts = 'only.lua', listen = '[::1]:9000',\n"
        "         pools = { primary = { pool_size = 'auto', url = os.getenv('SLUICE_NO_SUCH_VAR') } } }\n",
        &c);
    assert_int_equal(c.workers, cpu_count());
    assert_int_equal(c.nscripts, 1);
    assert_string_equal(c.scripts[0], "only.lua");
    assert_string_equal(c.listen, "[::1]:9000");
    assert_int_equal(c.pools[0].pool_size, 2 * cpu_count() + 1);
    assert_string_equal(c.pools[0].url, "");
    config_free(&c);

    load_ok("return { scripts = {}, pools = {} }\n", &c);
    assert_int_equal(c.nscripts, 0);
    assert_int_equal(c.npools, 1);
    assert_string_equal(c.pools[0].name, "primary");
    config_free(&c);
}

static void test_env_overrides(void **state)
{
    setenv("SLUICE_LISTEN", "0.0.0.0:9090", 1);
    setenv("SLUICE_WORKERS", "5", 1);
    setenv("SLUICE_ADMIN_TOKEN", "tok", 1);
    setenv("SLUICE_LOG_LEVEL", "error", 1);
    setenv("SLUICE_LOG_FORMAT", "text", 1);
    setenv("SLUICE_MAX_BODY_BYTES", "1048576", 1);
    setenv("SLUICE_REQUEST_TIMEOUT", "0.25", 1);
    setenv("SLUICE_SHUTDOWN_TIMEOUT", "7", 1);
    setenv("SLUICE_SHUTDOWN_GRACE", "12.5", 1);
    setenv("DATABASE_URL", "postgresql://env@h/db", 1);
    setenv("SLUICE_POOL_SIZE", "9", 1);
    setenv("SLUICE_MAX_OVERFLOW", "3", 1);
    setenv("SLUICE_POOL_TIMEOUT", "4.5", 1);
    setenv("SLUICE_POOL_RECYCLE", "600", 1);
    setenv("SLUICE_ECHO", "true", 1);
    setenv("SLUICE_PREPARED_STATEMENT_CACHE_SIZE", "32", 1);
    setenv("SLUICE_STATEMENT_TIMEOUT_MS", "1500", 1);
    setenv("SLUICE_FAILOVER_WAIT_MS", "2500", 1);
    setenv("SLUICE_READ_YOUR_WRITES_WAIT_MS", "75", 1);

    struct config c;
    /* the environment wins over the file */
    load_ok("return { listen = '127.0.0.1:1', workers = 1, log = { level = 'debug', format = 'json' },\n"
            "         pools = { primary = { url = 'host=file', pool_size = 2, echo = false, pipeline_depth = "
            "4 } } }\n",
            &c);
    assert_string_equal(c.listen, "0.0.0.0:9090");
    assert_int_equal(c.workers, 5);
    assert_string_equal(c.admin_token, "tok");
    assert_int_equal(c.log_level, LOG_ERROR);
    assert_false(c.log_json);
    assert_int_equal(c.max_body_bytes, 1048576);
    assert_true(c.request_timeout == 0.25);
    assert_true(c.shutdown_timeout == 7);
    assert_true(c.shutdown_grace == 12.5);
    const struct pool_config *p = config_pool(&c, "primary");
    assert_string_equal(p->url, "postgresql://env@h/db");
    assert_int_equal(p->pool_size, 9);
    assert_int_equal(p->max_overflow, 3);
    assert_true(p->pool_timeout == 4.5);
    assert_true(p->pool_recycle == 600);
    assert_true(p->echo);
    assert_int_equal(p->prepared_statement_cache_size, 32);
    assert_int_equal(p->statement_timeout_ms, 1500);
    assert_int_equal(p->failover_wait_ms, 2500);
    assert_int_equal(p->read_your_writes_wait_ms, 75);
    assert_int_equal(p->pipeline_depth, 4); /* not overridable: the file's value stays */
    config_free(&c);

    /* the primary pool is created when the file names only others */
    setenv("SLUICE_ECHO", "0", 1);
    setenv("SLUICE_WORKERS", "auto", 1);
    setenv("SLUICE_POOL_SIZE", "auto", 1);
    load_ok("return { pools = { replica = { url = 'host=r' } } }\n", &c);
    assert_int_equal(c.npools, 2);
    assert_string_equal(c.pools[0].name, "primary");
    assert_string_equal(c.pools[0].url, "postgresql://env@h/db");
    assert_false(c.pools[0].echo);
    assert_int_equal(c.pools[0].pool_size, 2 * cpu_count() + 1);
    assert_int_equal(c.workers, cpu_count());
    assert_string_equal(c.pools[1].name, "replica");
    assert_string_equal(c.pools[1].url, "host=r");
    assert_int_equal(c.pools[1].pool_size, 2 * cpu_count() + 1); /* SLUICE_POOL_SIZE is primary's only */
    config_free(&c);
}

static void test_env_empty_is_unset(void **state)
{
    for (size_t i = 0; i < NVARS; i++) setenv(config_env_var(i), "", 1);
    struct config c;
    load_ok("return { workers = 2, pools = { replica = {} } }\n", &c);
    assert_int_equal(c.workers, 2);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_null(c.admin_token);
    /* no primary appears: nothing asked for it */
    assert_int_equal(c.npools, 1);
    assert_string_equal(c.pools[0].name, "replica");
    config_free(&c);
}

static void test_unknown_keys(void **state)
{
    expect_error("return { listn = '127.0.0.1:80' }\n", "%s: unknown key \"listn\"");
    /* several: the alphabetically first is named, so the message is stable */
    expect_error("return { zz = 1, bb = 2, listen = '127.0.0.1:80', aa = 3 }\n", "%s: unknown key \"aa\"");
    expect_error("return { pools = { primary = { pool_sise = 4 } } }\n",
                 "%s: unknown key \"pools.primary.pool_sise\"");
    expect_error("return { log = { lvl = 'info' } }\n", "%s: unknown key \"log.lvl\"");
    expect_error("return { 'stray' }\n", "%s: unknown key [1]");
    expect_error("return { pools = { primary = { 5 } } }\n", "%s: unknown key pools.primary[1]");
}

static void test_wrong_types(void **state)
{
    expect_error("return { pools = { primary = { pool_size = {} } } }\n",
                 "%s: pools.primary.pool_size: expected a positive integer or \"auto\", got table");
    expect_error("return { pools = { primary = { pool_size = 'many' } } }\n",
                 "%s: pools.primary.pool_size: expected a positive integer or \"auto\", got \"many\"");
    expect_error("return { pools = { primary = { pool_size = 0 } } }\n",
                 "%s: pools.primary.pool_size: expected a positive integer or \"auto\", got 0");
    expect_error("return { workers = 2.5 }\n",
                 "%s: workers: expected a positive integer or \"auto\", got 2.5");
    expect_error("return { workers = 100000 }\n",
                 "%s: workers: expected a positive integer or \"auto\" (at most 1024), got 100000");
    expect_error("return { max_body_bytes = '64MB' }\n",
                 "%s: max_body_bytes: expected a positive integer, got \"64MB\"");
    expect_error("return { request_timeout = -1 }\n",
                 "%s: request_timeout: expected a number of seconds >= 0, got -1");
    expect_error("return { shutdown_timeout = 1/0 }\n",
                 "%s: shutdown_timeout: expected a number of seconds >= 0, got inf");
    expect_error("return { pools = { replica = { echo = 'yes' } } }\n",
                 "%s: pools.replica.echo: expected true or false, got \"yes\"");
    expect_error("return { pools = { replica = { max_overflow = -2 } } }\n",
                 "%s: pools.replica.max_overflow: expected an integer >= 0, got -2");
    expect_error("return { pools = { replica = { url = 5432 } } }\n",
                 "%s: pools.replica.url: expected a string, got 5432");
    expect_error("return { admin_token = '' }\n", "%s: admin_token: expected a non-empty string, got \"\"");
    expect_error("return { listen = 8080 }\n",
                 "%s: listen: expected \"host:port\", \"[ipv6]:port\" or \"unix:/path\", got 8080");
    expect_error("return { listen = '::1:8080' }\n",
                 "%s: listen: expected \"host:port\", \"[ipv6]:port\" or \"unix:/path\", got \"::1:8080\"");
    expect_error(
        "return { listen = 'localhost:99999' }\n",
        "%s: listen: expected \"host:port\", \"[ipv6]:port\" or \"unix:/path\", got \"localhost:99999\"");
    expect_error("return { log = 'debug' }\n", "%s: log: expected a table, got \"debug\"");
    expect_error("return { pools = { replica = 'host=r' } }\n",
                 "%s: pools.replica: expected a table, got \"host=r\"");
    expect_error("return { pools = { ['my-pool'] = {} } }\n",
                 "%s: pools: expected pool names matching [A-Za-z_][A-Za-z0-9_]*, got \"my-pool\"");
    expect_error("return { pools = 'primary' }\n", "%s: pools: expected a table, got \"primary\"");
    expect_error("return { scripts = { 'a.lua', 7 } }\n", "%s: scripts[2]: expected a string, got 7");
    expect_error("return { scripts = { main = 'a.lua' } }\n",
                 "%s: scripts: expected a string or an array of strings, got a table with other keys");
    expect_error("return { scripts = true }\n",
                 "%s: scripts: expected a string or an array of strings, got true");
}

static void test_bad_enum(void **state)
{
    expect_error("return { log = { level = 'verbose' } }\n",
                 "%s: log.level: expected \"debug\", \"info\", \"warn\" or \"error\", got \"verbose\"");
    expect_error("return { log = { format = 'xml' } }\n",
                 "%s: log.format: expected \"json\" or \"text\", got \"xml\"");
}

static void test_file_errors(void **state)
{
    char path[128], err[512], want[512];
    struct config c;
    snprintf(path, sizeof path, "%s/missing.lua", tmpdir);
    assert_int_equal(config_load(path, &c, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot open file: No such file or directory", path);
    assert_string_equal(err, want);

    assert_int_equal(config_load(tmpdir, &c, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: cannot open file: Is a directory", tmpdir);
    assert_string_equal(err, want);

    expect_error("return {\n  listen = ,\n}\n", "%s:2: unexpected symbol near ','");
    expect_error("return 42\n", "%s: expected the file to return a table, got 42");
    expect_error("local x = 1\n", "%s: expected the file to return a table, got nil");
    expect_error("error('no database configured')\n", "%s:1: no database configured");
    expect_error("error({})\n", "%s: error object is a table value");
    expect_error("return { listen = nil .. 'x' }\n", "%s:1: attempt to concatenate a nil value");

    /* a short buffer still gets a terminated prefix of the line */
    const char *p = write_conf("return { listn = 1 }\n");
    char tiny[8];
    assert_int_equal(config_load(p, &c, tiny, sizeof tiny), -1);
    assert_int_equal(strlen(tiny), 7);
    assert_int_equal(config_load(p, &c, NULL, 0), -1);
}

static void test_env_errors(void **state)
{
    static const struct {
        const char *var, *value, *want;
    } cases[] = {
        {"SLUICE_POOL_SIZE", "x", "SLUICE_POOL_SIZE: expected a positive integer or \"auto\", got \"x\""},
        {"SLUICE_POOL_SIZE", "0x10",
         "SLUICE_POOL_SIZE: expected a positive integer or \"auto\", got \"0x10\""},
        {"SLUICE_WORKERS", "4 ", "SLUICE_WORKERS: expected a positive integer or \"auto\", got \"4 \""},
        {"SLUICE_ECHO", "maybe", "SLUICE_ECHO: expected true, false, 1 or 0, got \"maybe\""},
        {"SLUICE_LOG_LEVEL", "loud",
         "SLUICE_LOG_LEVEL: expected \"debug\", \"info\", \"warn\" or \"error\", got \"loud\""},
        {"SLUICE_LOG_FORMAT", "xml", "SLUICE_LOG_FORMAT: expected \"json\" or \"text\", got \"xml\""},
        {"SLUICE_LISTEN", "8080",
         "SLUICE_LISTEN: expected \"host:port\", \"[ipv6]:port\" or \"unix:/path\", got \"8080\""},
        {"SLUICE_MAX_BODY_BYTES", "1.5", "SLUICE_MAX_BODY_BYTES: expected a positive integer, got \"1.5\""},
        {"SLUICE_REQUEST_TIMEOUT", "-3",
         "SLUICE_REQUEST_TIMEOUT: expected a number of seconds >= 0, got \"-3\""},
        {"SLUICE_SHUTDOWN_TIMEOUT", "inf",
         "SLUICE_SHUTDOWN_TIMEOUT: expected a number of seconds >= 0, got \"inf\""},
        {"SLUICE_POOL_TIMEOUT", "nan", "SLUICE_POOL_TIMEOUT: expected a number of seconds >= 0, got \"nan\""},
        {"SLUICE_STATEMENT_TIMEOUT_MS", "-1",
         "SLUICE_STATEMENT_TIMEOUT_MS: expected an integer >= 0, got \"-1\""},
        {"SLUICE_FAILOVER_WAIT_MS", "1s", "SLUICE_FAILOVER_WAIT_MS: expected an integer >= 0, got \"1s\""},
        {"SLUICE_PREPARED_STATEMENT_CACHE_SIZE", "0",
         "SLUICE_PREPARED_STATEMENT_CACHE_SIZE: expected a positive integer, got \"0\""},
    };
    const char *path = write_conf("return {}\n");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512];
        struct config c;
        setenv(cases[i].var, cases[i].value, 1);
        assert_int_equal(config_load(path, &c, err, sizeof err), -1);
        assert_string_equal(err, cases[i].want);
        unsetenv(cases[i].var);
    }
}

/* max_response_bytes: the default, the file, the environment, and what is refused. */
static void test_max_response_bytes(void **state)
{
    struct config c;
    load_ok("return {}\n", &c);
    assert_int_equal(c.max_response_bytes, 64 * 1024 * 1024);
    config_free(&c);
    load_ok("return { max_response_bytes = 4096 }\n", &c);
    assert_int_equal(c.max_response_bytes, 4096);
    config_free(&c);
    setenv("SLUICE_MAX_RESPONSE_BYTES", "2048", 1);
    load_ok("return { max_response_bytes = 4096 }\n", &c);
    assert_int_equal(c.max_response_bytes, 2048);
    config_free(&c);
    clear_env();
    expect_error("return { max_response_bytes = 0 }\n",
                 "%s: max_response_bytes: expected a positive integer, got 0");
    expect_error("return { max_response_bytes = '1MB' }\n",
                 "%s: max_response_bytes: expected a positive integer, got \"1MB\"");
    char err[512];
    const char *path = write_conf("return {}\n");
    setenv("SLUICE_MAX_RESPONSE_BYTES", "1.5", 1);
    assert_int_equal(config_load(path, &c, err, sizeof err), -1);
    assert_string_equal(err, "SLUICE_MAX_RESPONSE_BYTES: expected a positive integer, got \"1.5\"");
    clear_env();
}

/* tokens, jwt, protect_metrics and the request limits: defaults, the file, the environment. */
static void test_access_and_limits(void **state)
{
    struct config c;
    load_ok("return {}\n", &c);
    assert_int_equal(c.ntokens, 0);
    assert_null(c.jwt_secret);
    assert_null(c.jwt_audience);
    assert_null(c.jwt_issuer);
    assert_true(c.jwt_max_age == 0);
    assert_false(c.protect_metrics);
    assert_int_equal(c.max_url_bytes, 8192);
    assert_int_equal(c.max_params, 1000);
    assert_int_equal(c.max_rows, 100000);
    assert_int_equal(c.max_inflight, 10000);
    config_free(&c);

    load_ok("return { tokens = { 'a1', 'b2' },\n"
            "  jwt = { secret = 'k-0123456789abcdef0123456789abcdef', audience = 'api',\n"
            "          issuer = 'https://auth.example', max_age = 600 },\n"
            "  protect_metrics = true, max_url_bytes = 100, max_params = 3, max_rows = 0,\n"
            "  max_inflight = 7 }\n",
            &c);
    assert_int_equal(c.ntokens, 2);
    assert_string_equal(c.tokens[0], "a1");
    assert_string_equal(c.tokens[1], "b2");
    assert_string_equal(c.jwt_secret, "k-0123456789abcdef0123456789abcdef");
    assert_string_equal(c.jwt_audience, "api");
    assert_string_equal(c.jwt_issuer, "https://auth.example");
    assert_true(c.jwt_max_age == 600);
    assert_true(c.protect_metrics);
    assert_int_equal(c.max_url_bytes, 100);
    assert_int_equal(c.max_params, 3);
    assert_int_equal(c.max_rows, 0);
    assert_int_equal(c.max_inflight, 7);
    config_free(&c);

    load_ok("return { tokens = 'only' }\n", &c);
    assert_int_equal(c.ntokens, 1);
    assert_string_equal(c.tokens[0], "only");
    config_free(&c);

    /* the environment wins; SLUICE_TOKENS is comma-separated, blanks and empty items dropped */
    setenv("SLUICE_TOKENS", " x1 ,, y2,z3 ,", 1);
    setenv("SLUICE_JWT_SECRET", "from-env-0123456789abcdef01234567", 1);
    setenv("SLUICE_JWT_ISSUER", "env-issuer", 1);
    setenv("SLUICE_JWT_MAX_AGE", "90", 1);
    setenv("SLUICE_PROTECT_METRICS", "1", 1);
    setenv("SLUICE_MAX_ROWS", "50", 1);
    load_ok("return { tokens = { 'file' }, jwt = { secret = 'file-0123456789abcdef0123456789abcdef' } }\n",
            &c);
    assert_int_equal(c.ntokens, 3);
    assert_string_equal(c.tokens[0], "x1");
    assert_string_equal(c.tokens[1], "y2");
    assert_string_equal(c.tokens[2], "z3");
    assert_string_equal(c.jwt_secret, "from-env-0123456789abcdef01234567");
    assert_string_equal(c.jwt_issuer, "env-issuer");
    assert_true(c.jwt_max_age == 90);
    assert_true(c.protect_metrics);
    assert_int_equal(c.max_rows, 50);
    config_free(&c);
    clear_env();

    /* errors never show a token's value */
    expect_error("return { tokens = { 'a', 5 } }\n",
                 "%s: tokens[2]: expected a non-empty string, got number");
    expect_error("return { tokens = { 'a', '' } }\n", "%s: tokens[2]: expected a non-empty string, got \"\"");
    expect_error("return { tokens = { x = 'a' } }\n",
                 "%s: tokens: expected an array of strings, got a table with other keys");
    expect_error("return { tokens = 5 }\n", "%s: tokens: expected an array of non-empty strings, got number");
    expect_error("return { jwt = 'k' }\n", "%s: jwt: expected a table, got \"k\"");
    expect_error("return { jwt = { secrt = 'k' } }\n", "%s: unknown key \"jwt.secrt\"");
    /* a secret is never echoed, not even a short one: its length only */
    expect_error(
        "return { jwt = { secret = '' } }\n",
        "%s: jwt.secret: expected a string of at least 32 bytes (a random key, e.g. from openssl rand "
        "-base64 32), got 0 bytes");
    expect_error(
        "return { jwt = { secret = 'jwt-s3cret-for-tests-0123456' } }\n",
        "%s: jwt.secret: expected a string of at least 32 bytes (a random key, e.g. from openssl rand "
        "-base64 32), got 28 bytes");
    expect_error("return { jwt = { secret = 12345678901234567890123456789012345 } }\n",
                 "%s: jwt.secret: expected a string of at least 32 bytes, got a number");
    setenv("SLUICE_JWT_SECRET", "short-env-secret", 1);
    expect_error("return {}\n",
                 "SLUICE_JWT_SECRET: expected a string of at least 32 bytes (a random key, e.g. "
                 "from openssl rand -base64 32), got 16 bytes");
    clear_env();
    expect_error("return { jwt = { issuer = '' } }\n",
                 "%s: jwt.issuer: expected a non-empty string, got \"\"");
    expect_error("return { jwt = { max_age = -1 } }\n",
                 "%s: jwt.max_age: expected a number of seconds >= 0, got -1");
    setenv("SLUICE_JWT_MAX_AGE", "soon", 1);
    expect_error("return {}\n", "SLUICE_JWT_MAX_AGE: expected a number of seconds >= 0, got \"soon\"");
    clear_env();
    expect_error("return { max_params = 0 }\n", "%s: max_params: expected a positive integer, got 0");
    expect_error("return { max_rows = -1 }\n", "%s: max_rows: expected an integer >= 0, got -1");
    expect_error("return { protect_metrics = 'yes' }\n",
                 "%s: protect_metrics: expected true or false, got \"yes\"");
}

static void test_tls_and_client_limits(void **state)
{
    struct config c;
    load_ok("return {}\n", &c);
    assert_null(c.tls_cert);
    assert_null(c.tls_key);
    assert_int_equal(c.max_header_bytes, 32 * 1024);
    assert_int_equal(c.max_headers, 64);
    assert_true(c.client_timeout == 10);
    assert_false(c.http2);
    config_free(&c);

    load_ok(
        "return { tls = { cert = '/c.pem', key = '/k.pem' }, max_header_bytes = 4096, max_headers = 100,\n"
        "  client_timeout = 0.5, http2 = true }\n",
        &c);
    assert_true(c.http2);
    assert_string_equal(c.tls_cert, "/c.pem");
    assert_string_equal(c.tls_key, "/k.pem");
    assert_int_equal(c.max_header_bytes, 4096);
    assert_int_equal(c.max_headers, 100);
    assert_true(c.client_timeout == 0.5);
    config_free(&c);

    setenv("SLUICE_TLS_CERT", "/env.crt", 1);
    setenv("SLUICE_TLS_KEY", "/env.key", 1);
    setenv("SLUICE_CLIENT_TIMEOUT", "3", 1);
    setenv("SLUICE_HTTP2", "true", 1);
    load_ok("return {}\n", &c);
    assert_true(c.http2);
    assert_string_equal(c.tls_cert, "/env.crt");
    assert_string_equal(c.tls_key, "/env.key");
    assert_true(c.client_timeout == 3);
    config_free(&c);
    clear_env();

    expect_error("return { tls = { cert = '/c.pem' } }\n",
                 "%s: tls: expected both cert and key, got only cert");
    expect_error("return { tls = { key = '/k.pem' } }\n",
                 "%s: tls: expected both cert and key, got only key");
    expect_error("return { tls = { cert = '/c', key = '/k', ca = '/x' } }\n", "%s: unknown key \"tls.ca\"");
    expect_error("return { tls = true }\n", "%s: tls: expected a table, got true");
    expect_error("return { http2 = 'on' }\n", "%s: http2: expected true or false, got \"on\"");
    expect_error("return { max_headers = 101 }\n",
                 "%s: max_headers: expected at most 100 (the HTTP parser's limit), got 101");
    expect_error("return { max_header_bytes = 500000 }\n",
                 "%s: max_header_bytes: expected at most 409600 (the HTTP parser's limit), got 500000");
    expect_error("return { client_timeout = 0 }\n",
                 "%s: client_timeout: expected a number of seconds above 0, got 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_every_key, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_auto_and_script_forms, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_env_overrides, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_env_empty_is_unset, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_types, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_bad_enum, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_env_errors, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_access_and_limits, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_tls_and_client_limits, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_max_response_bytes, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
