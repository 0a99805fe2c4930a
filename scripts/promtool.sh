#!/usr/bin/env bash
# Makes build/tools/promtool available for the metrics spec (`promtool check metrics`) and the
# alerts spec (`promtool check rules` / `test rules` / `check config` on docker/prometheus/)
# without installing Prometheus (332 MB, and a service): the static binary is taken out of
# Debian's prometheus package. Quiet and quick when it is there already; prints nothing and exits
# 0 when it cannot be had (the specs then say so).
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/build/tools
[ -x "$OUT/promtool" ] && exit 0
command -v promtool >/dev/null 2>&1 && exit 0
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 0
if ! apt-get download prometheus >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1 || exit 0
    apt-get download prometheus >/dev/null 2>&1 || exit 0
fi
dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool 2>/dev/null || exit 0
mv ./usr/bin/promtool "$OUT/promtool"
exit 0
