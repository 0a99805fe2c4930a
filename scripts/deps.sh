#!/usr/bin/env bash
# Installs the Debian packages sluice needs to build and test (and, with `bench`, to benchmark).
# Quick and silent when everything is present; apt-get runs only for what is missing.
# Usage: scripts/deps.sh [bench|valgrind]
#
# etcd-server, patroni and haproxy are for the HA test cluster (scripts/hacluster.sh), which
# runs them as plain processes on its own ports. Their packages would start system services
# (etcd on 2379/2380, haproxy, patroni) and enable them at boot: the install runs under a
# policy-rc.d that denies every start, and the services are disabled afterwards.
set -euo pipefail

BASE=(build-essential pkg-config libssl-dev libpq-dev postgresql-15 libh2o-evloop-dev
      libjansson-dev libluajit-5.1-dev luajit libcmocka-dev lua-busted lua-cjson lua-socket
      curl openssl clang-format clang libclang-rt-14-dev chromium chromium-driver
      etcd-server patroni haproxy)
declare -A SERVICE_OF=([etcd-server]=etcd [patroni]=patroni [haproxy]=haproxy [pgbouncer]=pgbouncer [nginx-light]=nginx)
BENCH=(wrk gnuplot-nox pgbouncer nginx-light)
VALGRIND=(valgrind)

want=("${BASE[@]}")
[ "${1:-}" = bench ] && want+=("${BENCH[@]}")
[ "${1:-}" = valgrind ] && want+=("${VALGRIND[@]}")

# One dpkg-query for all: it prints a line per package it knows of.
installed=" $(dpkg-query -W -f='${Package}:${Status}\n' "${want[@]}" 2>/dev/null |
              sed -n 's/:install ok installed$//p' | tr '\n' ' ' || true) "
missing=()
for p in "${want[@]}"; do
    [[ $installed == *" $p "* ]] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive

# No service may start during the install: invoke-rc.d and deb-systemd-invoke ask
# /usr/sbin/policy-rc.d, and 101 means "denied". One that is already there is left alone.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\n# scripts/deps.sh: no service starts while packages install\nexit 101\n' |
        "${sudo[@]}" tee "$POLICY" >/dev/null
    "${sudo[@]}" chmod 755 "$POLICY"
    trap '"${sudo[@]}" rm -f "$POLICY"' EXIT
fi

"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

# Nor start at boot. Under systemd: disable and stop (in case one ran all the same); under
# SysV init: disable the init script's links.
for p in "${missing[@]}"; do
    svc=${SERVICE_OF[$p]:-}
    [ -n "$svc" ] || continue
    if [ -d /run/systemd/system ]; then
        "${sudo[@]}" systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
    fi
    if [ -x "/etc/init.d/$svc" ]; then
        "${sudo[@]}" update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
done
