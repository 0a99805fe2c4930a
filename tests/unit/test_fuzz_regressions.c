/* test_fuzz_regressions.c — one test per finding of the fuzz targets in tests/fuzz/, each with
 * its minimized input, so that a fixed bug stays fixed. */
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

/* Writes n bytes to a new temp file; its path goes to path (at least 64 bytes). */
static void write_temp(char *path, const void *data, size_t n)
{
    snprintf(path, 64, "/tmp/sluice-fuzzreg-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

/* fuzz_config: a config file that is a (damaged) LuaJIT bytecode dump crashed config_load inside
 * lua_loadx (SIGSEGV in memcpy called from the bytecode reader): LuaJIT does not verify bytecode,
 * so a config file must be loaded as text only. */
static void test_config_bytecode_file_is_refused(void **state)
{
    static const unsigned char dump[] = {0x1b, 0x4c, 0x4a, 0x02, 0x08, 0x12, 0x72, 0x77, 0x6f, 0x77, 0x6b,
                                         0x65, 0x72, 0x73, 0x3d, 0x32, 0x7d, 0x22, 0x02, 0x00, 0x01, 0x00,
                                         0xf3, 0x00, 0x02, 0x03, 0x00, 0x01, 0x35, 0x00, 0x00, 0xf0, 0x4c};
    char path[64], err[512] = "";
    struct config c;
    write_temp(path, dump, sizeof dump);
    int rc = config_load(path, &c, err, sizeof err);
    unlink(path);
    if (rc == 0) config_free(&c);
    assert_int_equal(rc, -1);
    assert_true(err[0] != '\0');
}

/* fuzz_config: config.h promises a one-line error, but an unknown key was quoted raw, so a key
 * holding a newline split the message (and a log line) in two. */
static void test_config_unknown_key_error_is_one_line(void **state)
{
    static const char file[] = "return {[\"a\\nb\"] = 1}";
    char path[64], err[512] = "";
    struct config c;
    write_temp(path, file, sizeof file - 1);
    int rc = config_load(path, &c, err, sizeof err);
    unlink(path);
    if (rc == 0) config_free(&c);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "unknown key"));
    if (strchr(err, '\n') != NULL) fail_msg("the error spans lines: [%s]", err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_bytecode_file_is_refused),
        cmocka_unit_test(test_config_unknown_key_error_is_one_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
