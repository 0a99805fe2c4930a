#!/usr/bin/env bash
# bench/cache.sh — the result cache against its ceiling, in one run on a throwaway PostgreSQL:
# a hot cached key (one id, GET /query/quote_cached) beside the same query uncached and beside
# pgbench -M prepared on the same SQL; then a mixed load (reads over KEYS ids, one write in
# WRITE_EVERY requests, through the gateway) with the hit ratio from /metrics and, at the same
# time, a probe that writes and reads back at once and counts stale reads. Ratios are of this
# run only (the machine may be shared). Exit status 1 when the hot key is under 3x the uncached
# query or under 1.2x pgbench, or a read was stale. Also the CPU per request of a hit and of an
# uncached request (gateway, PostgreSQL), which wrk's own share of the cores does not blur.
# Beside them, nginx (Debian's package) answering the hit's body as a constant: an answer that does
# no work, the ceiling of a cache hit on this machine under the same wrk; its req/s over the
# uncached query's is about the most any cache can reach here.
# Stops everything it started.
# Usage: bench/cache.sh
# Env: SECS (5), ROUNDS (3: the hot-key figures are medians), CONNS (32 HTTP connections),
#      GATEWAY_WORKERS (2), PGB_CLIENTS (8), KEYS (10), WRITE_EVERY (100), LOG_ACCESS (true),
#      SLUICE_BIN, TESTDB_DIR (/tmp/cache-bench-db), TESTDB_PORT (61710), GATEWAY_PORT (61711),
#      STATIC_PORT (61712)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECS=${SECS:-5}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
WORKERS=${GATEWAY_WORKERS:-2}
PGB_CLIENTS=${PGB_CLIENTS:-8}
KEYS=${KEYS:-10}
WRITE_EVERY=${WRITE_EVERY:-100}
LOG_ACCESS=${LOG_ACCESS:-true} # the gateway's access log (one line per request, for both paths)
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
export TESTDB_DIR=${TESTDB_DIR:-/tmp/cache-bench-db} TESTDB_PORT=${TESTDB_PORT:-61710}
GATEWAY_PORT=${GATEWAY_PORT:-61711}
STATIC_PORT=${STATIC_PORT:-61712}
PGBIN=/usr/lib/postgresql/15/bin
SELECT="SELECT id, pair, bid, ask, ts FROM bench_quotes WHERE id = "
source "$ROOT/bench/harness.sh"

bench_start_db
bench_quotes_table 1000

mkdir -p "$T/gw"
cat >"$T/gw/q.lua" <<LUA
sluice.query "quote" { readonly = true, single = true, sql = [[ $SELECT :id ]] }
sluice.query "quote_cached" { readonly = true, single = true, sql = [[ $SELECT :id ]],
  cache = { ttl_ms = 60000, tables = { "bench_quotes" } } }
sluice.query "set_bid" { single = true, sql = [[ UPDATE bench_quotes SET bid = :bid WHERE id = :id RETURNING bid ]],
  writes = { "bench_quotes" } }
LUA
cat >"$T/gw/sluice.lua" <<LUA
return {
  listen = "127.0.0.1:$GATEWAY_PORT", workers = $WORKERS, shutdown_timeout = 2, shutdown_grace = 0, log = { level = "warn", access = $LOG_ACCESS },
  pools = { primary = { url = "$DSN", pool_size = 8, max_overflow = 0 } },
  scripts = { "$T/gw/q.lua" },
}
LUA
bench_start_gateway "$T/gw/sluice.lua"
curl -fsS -o /dev/null "$URL/query/quote_cached?id=42"
curl -fsS -o /dev/null "$URL/query/quote?id=42"

# nginx in the foreground with the gateway's worker count, returning the hit's body with an ETag;
# its access log, when the gateway's is on, is batched as the gateway's is. Sets STATIC_PID, or
# leaves it empty (and says why) when nginx is missing or does not start.
STATIC_PID=""
static_start() {
    local dir=$T/nginx body log=off
    command -v nginx >/dev/null || { say "nginx is missing (scripts/deps.sh bench installs it): no constant-answer row"; return 0; }
    mkdir -p "$dir"
    body=$(curl -fsS "$URL/query/quote_cached?id=42")
    [[ $LOG_ACCESS == true ]] && log="$dir/access.log combined buffer=64k flush=1s"
    cat >"$dir/nginx.conf" <<NGX
worker_processes $WORKERS;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log $log;
  keepalive_requests 1000000000;
  server {
    listen 127.0.0.1:$STATIC_PORT;
    location / { default_type application/json; add_header ETag '"0123456789abcdef"'; return 200 '$body'; }
  }
}
NGX
    nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" &
    STATIC_PID=$!
    for _ in $(seq 50); do
        [[ $(curl -fsS --max-time 1 "http://127.0.0.1:$STATIC_PORT/q" 2>/dev/null) == "$body" ]] && return 0
        sleep 0.1
    done
    say "nginx did not start: no constant-answer row"; cat "$dir/error.log" >&2
    kill "$STATIC_PID" 2>/dev/null || true
    STATIC_PID=""
}
bench_on_exit() { [[ -z $STATIC_PID ]] || { kill "$STATIC_PID"; wait "$STATIC_PID"; } 2>/dev/null; }
static_start

PG_PID=$(head -1 "$TESTDB_DIR/data/postmaster.pid")
# SERVER_PID wrk-args..: prints req/s, then the CPU µs per request of the server and of
# PostgreSQL (from /proc: steadier than req/s on a shared machine); a non-2xx answer fails the run
wrk_run() {
    local server=$1 out g0 g1 p0 p1
    shift
    g0=$(ticks "$server") p0=$(ticks "$PG_PID")
    out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" "$@")
    g1=$(ticks "$server") p1=$(ticks "$PG_PID")
    if grep -q "Non-2xx" <<<"$out"; then say "non-2xx answers: $out"; exit 1; fi
    awk -v g=$((g1 - g0)) -v p=$((p1 - p0)) -v k="$CLK_TCK" '
        / requests in / { n = $1 } /^Requests\/sec:/ { r = $2 }
        END { printf "%.0f %.1f %.1f\n", r, g / k / n * 1e6, p / k / n * 1e6 }' <<<"$out"
}
wrk_rps() { wrk_run "$GW_PID" "$@" | awk '{ print $1 }'; }
metric() { curl -fsS "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

printf '\\set id 42\n%s :id;\n' "$SELECT" >"$T/pgb.sql"
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
say "hot key, ${SECS}s each, $ROUNDS rounds in turn: cached, uncached, pgbench -c $PGB_CLIENTS${STATIC_PID:+, the nginx constant}"
C=() U=() P=() CG=() UG=() UP=() S=() SC=()
for ((r = 1; r <= ROUNDS; r++)); do
    if [[ -n $STATIC_PID ]]; then
        read -r rps us _ < <(wrk_run "$STATIC_PID" "http://127.0.0.1:$STATIC_PORT/q")
        S+=("$rps") SC+=("$us")
    fi
    read -r rps gw pg < <(wrk_run "$GW_PID" "$URL/query/quote_cached?id=42")
    C+=("$rps") CG+=("$gw")
    read -r rps gw pg < <(wrk_run "$GW_PID" "$URL/query/quote?id=42")
    U+=("$rps") UG+=("$gw") UP+=("$pg")
    P+=("$("$PGBIN/pgbench" -n -M prepared -c "$PGB_CLIENTS" -j 2 -T "$SECS" -h 127.0.0.1 -p "$TESTDB_PORT" \
        -U postgres -f "$T/pgb.sql" postgres 2>/dev/null | awk '/^tps = / { printf "%.0f", $3; exit }')")
done
CACHED=$(median "${C[@]}") UNCACHED=$(median "${U[@]}") PGB=$(median "${P[@]}")
HIT_US=$(median "${CG[@]}") MISS_US=$(median "${UG[@]}") MISS_PG_US=$(median "${UP[@]}")

H0=$(metric 'sluice_cache_hits_total{query="quote_cached"}')
M0=$(metric 'sluice_cache_misses_total{query="quote_cached"}')
say "mixed: reads over $KEYS ids, 1 write in $WRITE_EVERY, with the freshness probe, ${SECS}s"
luajit "$ROOT/bench/cache_fresh.lua" "$URL" "$SECS" >"$T/fresh.out" &
FRESH_PID=$!
MIXED=$(wrk_rps -s "$ROOT/bench/cache_mixed.lua" "$URL" -- "$KEYS" "$WRITE_EVERY")
wait "$FRESH_PID"
H1=$(metric 'sluice_cache_hits_total{query="quote_cached"}')
M1=$(metric 'sluice_cache_misses_total{query="quote_cached"}')
read -r PAIRS STALE < <(sed 's/pairs=\([0-9]*\) stale=\([0-9]*\)/\1 \2/' "$T/fresh.out")
BYTES=$(metric sluice_cache_bytes)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
R_UNCACHED=$(ratio "$CACHED" "$UNCACHED")
R_PGB=$(ratio "$CACHED" "$PGB")
HIT=$(awk -v h="$((H1 - H0))" -v m="$((M1 - M0))" 'BEGIN { printf "%.1f", (h + m > 0 ? 100 * h / (h + m) : 0) }')
printf 'result cache, %d workers, %d HTTP connections, access log %s, %ss per run, medians of %d rounds (same run)\n' \
    "$WORKERS" "$CONNS" "$LOG_ACCESS" "$SECS" "$ROUNDS"
printf '  hot key cached      %8s req/s\n' "$CACHED"
printf '  hot key uncached    %8s req/s   cached/uncached %s (want >= 3)\n' "$UNCACHED" "$R_UNCACHED"
printf '  pgbench -c %-3s      %8s tps     cached/pgbench  %s (want >= 1.2)\n' "$PGB_CLIENTS" "$PGB" "$R_PGB"
printf '  CPU per request: a hit %s us in the gateway; uncached %s us in the gateway + %s us in PostgreSQL (%s x a hit)\n' \
    "$HIT_US" "$MISS_US" "$MISS_PG_US" "$(awk -v h="$HIT_US" -v g="$MISS_US" -v p="$MISS_PG_US" 'BEGIN { printf "%.2f", (h > 0 ? (g + p) / h : 0) }')"
if ((${#S[@]})); then
    STATIC=$(median "${S[@]}")
    printf '  nginx, a constant   %8s req/s   cached/constant %s; constant/uncached %s, the most a cache can reach here (%s us of CPU per answer)\n' \
        "$STATIC" "$(ratio "$CACHED" "$STATIC")" "$(ratio "$STATIC" "$UNCACHED")" "$(median "${SC[@]}")"
fi
printf '  mixed (1 write in %s, %s ids) %s req/s: hit ratio %s%% (%d hits, %d misses); freshness probe: %s write-then-read pairs, %s stale; cache %s bytes\n' \
    "$WRITE_EVERY" "$KEYS" "$MIXED" "$HIT" "$((H1 - H0))" "$((M1 - M0))" "$PAIRS" "$STALE" "$BYTES"
ok=true
awk -v r="$R_UNCACHED" 'BEGIN { exit !(r >= 3) }' || { say "FAIL: cached/uncached $R_UNCACHED < 3"; ok=false; }
awk -v r="$R_PGB" 'BEGIN { exit !(r >= 1.2) }' || { say "FAIL: cached/pgbench $R_PGB < 1.2"; ok=false; }
[[ $STALE == 0 && $PAIRS -gt 0 ]] || { say "FAIL: $STALE stale reads in $PAIRS pairs"; ok=false; }
[[ $ok == true ]]
