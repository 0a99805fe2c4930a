/* cpus.c — the CPU count of `auto`: affinity mask and cgroup CPU quota (cpus.h). In a container
 * or a systemd unit with CPUQuota= the host's CPU count would start too many workers and pool
 * connections for the CPU time the process actually gets. */
#define _GNU_SOURCE
#include "cpus.h"

#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Reads the first line of path into buf. Returns 0, or -1 when it cannot be read. */
static int read_line(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) return -1;
    char *got = fgets(buf, (int)len, f);
    fclose(f);
    return got ? 0 : -1;
}

/* CPUs of a quota: quota/period rounded up; 0 when unlimited (quota <= 0) or unreadable. */
static int quota_cpus(long long quota, long long period)
{
    if (quota <= 0 || period <= 0) return 0;
    long long cpus = quota / period + (quota % period != 0);
    return cpus > INT_MAX ? INT_MAX : (int)cpus;
}

/* The quota in one cgroup directory: cgroup v2's cpu.max ("max 100000" or "150000 100000"), or
 * v1's cpu.cfs_quota_us (-1 = none) over cpu.cfs_period_us. 0 when none. */
static int dir_quota(const char *dir, int v2)
{
    char path[8300], line[128];
    long long quota = 0, period = 0;
    if (v2) {
        snprintf(path, sizeof path, "%s/cpu.max", dir);
        if (read_line(path, line, sizeof line) != 0 || strncmp(line, "max", 3) == 0) return 0;
        if (sscanf(line, "%lld %lld", &quota, &period) != 2) return 0;
        return quota_cpus(quota, period);
    }
    snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir);
    if (read_line(path, line, sizeof line) != 0 || sscanf(line, "%lld", &quota) != 1) return 0;
    snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
    if (read_line(path, line, sizeof line) != 0 || sscanf(line, "%lld", &period) != 1) return 0;
    return quota_cpus(quota, period);
}

/* The smallest quota from mount/cgroup up to mount itself (a parent's quota binds its children;
 * inside a cgroup namespace the path may not exist under the mount, and its root is the one). */
static int walk_up(const char *mount, const char *cgroup, int v2)
{
    char rel[4096], dir[8192];
    snprintf(rel, sizeof rel, "%s", cgroup);
    int best = 0;
    for (;;) {
        size_t n = strlen(rel);
        while (n > 0 && rel[n - 1] == '/') rel[--n] = '\0';
        snprintf(dir, sizeof dir, "%s%s", mount, rel);
        int q = dir_quota(dir, v2);
        if (q > 0 && (best == 0 || q < best)) best = q;
        char *slash = strrchr(rel, '/');
        if (n == 0 || slash == NULL) break;
        *slash = '\0';
    }
    return best;
}

int cpus_quota(const char *root, const char *self_cgroup)
{
    FILE *f = fopen(self_cgroup, "r");
    if (f == NULL) return 0;
    char line[4096];
    int best = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        /* "hierarchy-id:controllers:path"; v2 is "0::path" */
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (c2 == NULL) continue;
        *c1 = *c2 = '\0';
        const char *controllers = c1 + 1, *path = c2 + 1;
        char mount[4096];
        int q = 0;
        if (strcmp(line, "0") == 0 && *controllers == '\0') {
            q = walk_up(root, path, 1);
        } else {
            bool has_cpu = false;
            char list[256];
            snprintf(list, sizeof list, "%s", controllers);
            for (char *save, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                has_cpu = has_cpu || strcmp(tok, "cpu") == 0;
            if (!has_cpu) continue;
            snprintf(mount, sizeof mount, "%s/%s", root, controllers); /* e.g. cpu,cpuacct */
            q = walk_up(mount, path, 0);
            if (q == 0) {
                snprintf(mount, sizeof mount, "%s/cpu", root);
                q = walk_up(mount, path, 0);
            }
        }
        if (q > 0 && (best == 0 || q < best)) best = q;
    }
    fclose(f);
    return best;
}

/* CPUs in the affinity mask, or 0 when it cannot be read. */
static int affinity_cpus(void)
{
    long conf = sysconf(_SC_NPROCESSORS_CONF);
    int n = conf > 0 ? (int)conf : 1;
    if (n < 1024) n = 1024; /* the mask covers the possible CPUs, which may exceed the configured */
    cpu_set_t *set = CPU_ALLOC((size_t)n);
    if (set == NULL) return 0;
    size_t size = CPU_ALLOC_SIZE((size_t)n);
    int count = sched_getaffinity(0, size, set) == 0 ? CPU_COUNT_S(size, set) : 0;
    CPU_FREE(set);
    return count;
}

int cpu_count(void)
{
    int n = affinity_cpus();
    if (n <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (int)online : 1;
    }
    int quota = cpus_quota("/sys/fs/cgroup", "/proc/self/cgroup");
    if (quota > 0 && quota < n) n = quota;
    return n > 0 ? n : 1;
}
