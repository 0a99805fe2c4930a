/* cpus.h — how many CPUs this process may use, for `auto` workers and pool sizes: the CPUs its
 * affinity mask allows, capped by the CPU quota of its cgroup (v2 cpu.max, v1 cfs quota). */
#ifndef SLUICE_CPUS_H
#define SLUICE_CPUS_H

/* The CPU quota of the process's cgroup and of every cgroup above it, the smallest, in CPUs
 * rounded up (a quota of 1.5 CPUs is 2); 0 when none is set or nothing can be read. root is
 * where the cgroup file systems are mounted ("/sys/fs/cgroup"), self_cgroup the process's
 * cgroup list ("/proc/self/cgroup"); both are parameters so that tests can fake them. */
int cpus_quota(const char *root, const char *self_cgroup);

/* The CPUs the process may use: its affinity mask (else the online CPUs), capped by
 * cpus_quota of the real cgroup files. At least 1. */
int cpu_count(void);

#endif
