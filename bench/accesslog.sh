#!/usr/bin/env bash
# accesslog.sh — what the access log costs: the gateway's CPU time per request with log.access on
# and off, back to back (on, off, on, off, ...), each run a fresh gateway serving
# GET /query/quote_by_id to wrk with its log (stderr) written to a file, as a service manager
# would. Prints one line per run and the median of each; docs/performance.md has the figures.
#   bench/accesslog.sh            SECS (10) per run, ROUNDS (3), CONNS (64), WORKERS (2), POOL (4)
# Its own PostgreSQL (scripts/testdb.sh) on BENCH_DB_PORT (61611), the gateway on GATEWAY_PORT
# (61612); both stopped by PID when it ends.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECS=${SECS:-10} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-64} WORKERS=${WORKERS:-2} POOL=${POOL:-4}
DBPORT=${BENCH_DB_PORT:-61611} PORT=${GATEWAY_PORT:-61612}
BIN=${SLUICE_BIN:-build/sluice}
export TESTDB_DIR=${TESTDB_DIR:-/tmp/sluice-bench-accesslog-db} TESTDB_PORT=$DBPORT
WORK=$(mktemp -d /tmp/sluice-accesslog.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
gw=

cleanup() {
    if [ -n "$gw" ] && kill -0 "$gw" 2>/dev/null; then kill -TERM "$gw"; wait "$gw" 2>/dev/null || true; fi
    scripts/testdb.sh stop >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

make --no-print-directory -j2 all >&2
scripts/testdb.sh start >/dev/null
psql -q -h 127.0.0.1 -p "$DBPORT" -U postgres -v rows=100000 -f bench/schema.sql >/dev/null
cat >"$WORK/q.lua" <<'LUA'
sluice.query "quote_by_id" { readonly = true, sql = [[ SELECT id, pair, bid, ask, ts FROM bench_quotes WHERE id = :id ]] }
LUA

# CPU ticks the process has used (user + system, all its threads).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

run() { # $1: true|false -> prints "µs_per_request requests"
    cat >"$WORK/c.lua" <<CFG
return { listen = "127.0.0.1:$PORT", workers = $WORKERS, shutdown_grace = 0,
  log = { access = $1 }, scripts = { "$WORK/q.lua" },
  pools = { primary = { url = "host=127.0.0.1 port=$DBPORT user=postgres dbname=postgres",
    pool_size = $POOL, max_overflow = 0 } } }
CFG
    "$BIN" serve --config "$WORK/c.lua" 2>"$WORK/log-$1" &
    gw=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/health/live" >/dev/null && break; sleep 0.05; done
    wrk -t1 -c"$CONNS" -d1s -s bench/quote_by_id.lua "http://127.0.0.1:$PORT" >/dev/null # warm-up
    local t0 out t1
    t0=$(ticks "$gw")
    out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" -s bench/quote_by_id.lua "http://127.0.0.1:$PORT")
    t1=$(ticks "$gw")
    kill -TERM "$gw"
    wait "$gw" 2>/dev/null || true
    gw=
    local n bad lines
    n=$(sed -n 's/.*WRK_RESULT requests=\([0-9]*\).*/\1/p' <<<"$out")
    bad=$(sed -n 's/.*non2xx=\([0-9]*\).*/\1/p' <<<"$out")
    lines=$(grep -c '"msg":"access"' "$WORK/log-$1" || true)
    [ "$bad" = 0 ] || { echo "non-2xx answers: $bad" >&2; exit 1; }
    awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$n" -v l="$lines" -v a="$1" \
        'BEGIN { printf "access=%-5s %8d requests %7.0f req/s  %6.2f us CPU/request  %d access lines\n", a, n, n / '"$SECS"', t * 1e6 / hz / n, l }'
}

for r in $(seq "$ROUNDS"); do
    run true
    run false
done | tee "$WORK/runs"
for a in true false; do
    m() { grep "access=$a " "$WORK/runs" | awk -v f="$1" '{ print $f }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
    echo "median access=$a: $(m 6) us CPU/request"
done
