#!/usr/bin/env bash
# Installs the Debian packages sluice needs to build and test (and, with `bench`, to benchmark).
# Quick and silent when everything is present; apt-get runs only for what is missing.
# Usage: scripts/deps.sh [bench|valgrind]
set -euo pipefail

BASE=(build-essential pkg-config libssl-dev libpq-dev postgresql-15 libh2o-evloop-dev
      libjansson-dev libluajit-5.1-dev luajit libcmocka-dev lua-busted lua-cjson lua-socket
      curl openssl clang-format clang libclang-rt-14-dev)
BENCH=(wrk gnuplot-nox)
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
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
