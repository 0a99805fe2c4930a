/* test_cpus.c — the CPU count of `auto`: cgroup v2 cpu.max and v1 cfs quotas read from fake
 * cgroup trees in a temporary directory (rounded up, the smallest along the path, none when
 * unlimited or unreadable), and the real count staying within the online CPUs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "cpus.h"

static char root[64];
static char self[128];

/* Writes text to root/rel, creating its folders. */
static void put(const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    snprintf(root, sizeof root, "/tmp/test_cpus.XXXXXX");
    assert_non_null(mkdtemp(root));
    snprintf(self, sizeof self, "%s/self_cgroup", root);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : -1;
}

static void v2_quota_rounds_up(void **state)
{
    put("self_cgroup", "0::/system.slice/sluice.service\n");
    put("system.slice/sluice.service/cpu.max", "150000 100000\n");
    assert_int_equal(cpus_quota(root, self), 2);
    put("system.slice/sluice.service/cpu.max", "50000 100000\n");
    assert_int_equal(cpus_quota(root, self), 1); /* half a CPU still needs one worker */
    put("system.slice/sluice.service/cpu.max", "400000 100000\n");
    assert_int_equal(cpus_quota(root, self), 4);
}

static void v2_parent_quota_binds(void **state)
{
    put("self_cgroup", "0::/a/b\n");
    put("a/b/cpu.max", "max 100000\n");
    put("a/cpu.max", "300000 100000\n");
    assert_int_equal(cpus_quota(root, self), 3);
    put("a/b/cpu.max", "200000 100000\n");
    assert_int_equal(cpus_quota(root, self), 2); /* the smallest along the path */
}

static void v2_unlimited_or_missing_is_none(void **state)
{
    put("self_cgroup", "0::/\n");
    assert_int_equal(cpus_quota(root, self), 0); /* no cpu.max at all */
    put("cpu.max", "max 100000\n");
    assert_int_equal(cpus_quota(root, self), 0);
    put("cpu.max", "garbage\n");
    assert_int_equal(cpus_quota(root, self), 0);
    assert_int_equal(cpus_quota(root, "/nonexistent/cgroup"), 0);
}

static void v2_namespace_root(void **state)
{
    /* inside a cgroup namespace the listed path may not exist under the mount: its root counts */
    put("self_cgroup", "0::/../../elsewhere\n");
    put("cpu.max", "200000 100000\n");
    assert_int_equal(cpus_quota(root, self), 2);
}

static void v1_cfs_quota(void **state)
{
    put("self_cgroup", "4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n");
    put("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "250000\n");
    put("cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    assert_int_equal(cpus_quota(root, self), 3);
    put("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
    assert_int_equal(cpus_quota(root, self), 0);
}

static void v1_plain_cpu_mount(void **state)
{
    put("self_cgroup", "2:cpu:/job\n");
    put("cpu/job/cpu.cfs_quota_us", "100000\n");
    put("cpu/job/cpu.cfs_period_us", "100000\n");
    assert_int_equal(cpus_quota(root, self), 1);
}

static void real_count_within_online(void **state)
{
    int n = cpu_count();
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(n >= 1);
    assert_true(n <= (online > 0 ? online : 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(v2_quota_rounds_up, setup, teardown),
        cmocka_unit_test_setup_teardown(v2_parent_quota_binds, setup, teardown),
        cmocka_unit_test_setup_teardown(v2_unlimited_or_missing_is_none, setup, teardown),
        cmocka_unit_test_setup_teardown(v2_namespace_root, setup, teardown),
        cmocka_unit_test_setup_teardown(v1_cfs_quota, setup, teardown),
        cmocka_unit_test_setup_teardown(v1_plain_cpu_mount, setup, teardown),
        cmocka_unit_test(real_count_within_online),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
