#!/usr/bin/env bash
# bench/events.sh — live events at scale: STREAMS (10 000) Server-Sent Events streams held open
# on one gateway (2 workers) by one epoll client (bench/sse_fanout.c), then ROUNDS NOTIFYs, each
# timed from just before it was sent to its arrival on every stream. Prints p50/p99/max over all
# streams and rounds and the gateway's RSS with every stream open, checks them against the
# targets (p99 <= 100 ms, RSS <= 64 MB), and the number of LISTEN backends (one). Stops
# everything it started.
# Usage: bench/events.sh    Env: STREAMS (10000), ROUNDS (5), SLUICE_BIN, TESTDB_DIR
#        (/tmp/events-bench-db), TESTDB_PORT (61690), GATEWAY_PORT (61691)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STREAMS=${STREAMS:-10000}
ROUNDS=${ROUNDS:-5}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
export TESTDB_DIR=${TESTDB_DIR:-/tmp/events-bench-db} TESTDB_PORT=${TESTDB_PORT:-61690}
GATEWAY_PORT=${GATEWAY_PORT:-61691}
P99_MAX_MS=100
RSS_MAX_KB=$((64 * 1024))
source "$ROOT/bench/harness.sh"

# Every stream is a socket on both sides.
ulimit -n $((STREAMS * 2 + 1024)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(( $(ulimit -n) > STREAMS + 100 )) || { say "events: ulimit -n $(ulimit -n) is too low for $STREAMS streams"; exit 1; }

cc -O2 -Wall -o "$T/sse_fanout" "$ROOT/bench/sse_fanout.c" $(pkg-config --cflags --libs libpq)
bench_start_db

mkdir -p "$T/scripts"
echo 'sluice.channel "bench" { listen = "bench", buffer = 1000 }' >"$T/scripts/events.lua"
cat >"$T/config.lua" <<EOF
return {
  listen = "127.0.0.1:$GATEWAY_PORT", workers = 2, shutdown_grace = 0,
  log = { level = "warn" },
  pools = { primary = { url = "$DSN", pool_size = 2 } },
  scripts = { "$T/scripts/*.lua" },
}
EOF
bench_start_gateway "$T/config.lua"
RSS_IDLE=$(awk '/VmRSS/ {print $2}' "/proc/$GW_PID/status")

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
say "events: $STREAMS streams, $ROUNDS NOTIFYs (load average $LOAD)"
OUT=$("$T/sse_fanout" "$GATEWAY_PORT" /events/bench "$STREAMS" "$DSN" bench "$ROUNDS" "$GW_PID") || {
    say "$OUT"; tail -20 "$T/gateway.log" >&2; exit 1; }
LISTENERS=$(psql -X -A -t -d "$DSN" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice-listen'")
field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$OUT"; }
P99=$(field p99_ms) RSS=$(field rss_kb)
echo "events: $OUT rss_idle_kb=$RSS_IDLE listen_backends=$LISTENERS loadavg_before=\"$LOAD\""
echo "events: $STREAMS streams: one NOTIFY reached all in p50 $(field p50_ms) ms, p99 $P99 ms, max $(field max_ms) ms;" \
    "gateway RSS $((RSS / 1024)) MB with them open ($((RSS_IDLE / 1024)) MB before), $(((RSS - RSS_IDLE) * 1024 / STREAMS)) B per stream"
ok=true
awk -v p="$P99" -v m="$P99_MAX_MS" 'BEGIN { exit !(p <= m) }' || { echo "events: FAILED p99 $P99 ms > $P99_MAX_MS ms"; ok=false; }
((RSS <= RSS_MAX_KB)) || { echo "events: FAILED RSS $RSS kB > $RSS_MAX_KB kB"; ok=false; }
((LISTENERS == 1)) || { echo "events: FAILED $LISTENERS LISTEN backends, expected 1"; ok=false; }
$ok
