#!/usr/bin/env bash
# bench/rapid_reset.sh — what HTTP/2 Rapid Reset (CVE-2023-44487) does to the gateway. One
# gateway over TLS (h2 by ALPN) and one over plain HTTP (h2c with prior knowledge), each with a
# pool of POOL_SIZE. For each: a well-behaved client's latency alone (bench/latency_probe.py,
# /query/one over HTTP/1.1), then the same client while one connection sends PAIRS
# HEADERS+RST_STREAM pairs (bench/h2_rapid_reset.py) for a path without database work
# (/health/live) and for a query that sleeps (/query/slow), then the same from a client that
# reconnects whenever the gateway closes it, and for comparison an HTTP/1.1 client that sends the
# query and hangs up (bench/http1_abandon.py): the gateway's CPU over each, the probe's latency,
# and how many of the abandoned requests reached the database (a sequence the query advances).
# With http2 = false the attack is refused at once.
# Usage: bench/rapid_reset.sh     Env: PAIRS (200000), SECONDS_MAX (10), POOL_SIZE (4), WORKERS (2),
#        HTTP2 (the gateway's http2 setting, default true; empty: the key is left out),
#        SLUICE_BIN, TESTDB_DIR (/tmp/rr-db), TESTDB_PORT (31692), PORT_TLS (31693), PORT_H2C (31694)
#        (below the ephemeral port range, so an outgoing connection never holds them)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PAIRS=${PAIRS:-200000}
SECONDS_MAX=${SECONDS_MAX:-10}
POOL_SIZE=${POOL_SIZE:-4}
WORKERS=${WORKERS:-2}
HTTP2=${HTTP2-true}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
export TESTDB_DIR=${TESTDB_DIR:-/tmp/rr-db} TESTDB_PORT=${TESTDB_PORT:-31692}
PORT_TLS=${PORT_TLS:-31693}
PORT_H2C=${PORT_H2C:-31694}
DSN="host=127.0.0.1 port=$TESTDB_PORT user=postgres dbname=postgres"
PY=${PYTHON:-python3}

T=$(mktemp -d /tmp/rapid-reset.XXXXXX)
PIDS=()

say() { printf '%s\n' "$*" >&2; }
cleanup() {
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    "$ROOT/scripts/testdb.sh" stop >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$DSN" "$@"; }
[[ -x $SLUICE_BIN ]] || { say "no gateway binary at $SLUICE_BIN (make first)"; exit 1; }

"$ROOT/scripts/testdb.sh" start >/dev/null
sql -c "CREATE SEQUENCE rr_hits"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/key.pem" -out "$T/cert.pem" \
    -days 1 -subj /CN=localhost 2>/dev/null
cat >"$T/q.lua" <<'LUA'
sluice.query "one" { readonly = true, single = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "slow" { readonly = true, single = true, sql = [[
  SELECT nextval('rr_hits') AS n, (SELECT 1 FROM pg_sleep(:s::float8)) AS slept ]] }
LUA

# start_gateway NAME PORT TLS_LUA: starts it (its pid in GW_PID) and waits until /health/live answers.
start_gateway() {
    cat >"$T/$1.lua" <<LUA
return {
  listen = "127.0.0.1:$2", workers = $WORKERS, shutdown_timeout = 2, ${HTTP2:+http2 = $HTTP2,} $3
  pools = { primary = { url = "$DSN", pool_size = $POOL_SIZE, max_overflow = 0 } },
  scripts = { "$T/q.lua" },
}
LUA
    local envv=(env)
    for v in $(compgen -e); do [[ $v == SLUICE_* || $v == DATABASE_URL ]] && envv+=(-u "$v"); done
    "${envv[@]}" "$SLUICE_BIN" serve --config "$T/$1.lua" >"$T/$1.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    GW_PID=$pid
    local scheme=http
    [[ -n $3 ]] && scheme=https
    for _ in $(seq 100); do
        curl -ksf --max-time 1 -o /dev/null "$scheme://127.0.0.1:$2/health/live" && break
        kill -0 "$pid" 2>/dev/null || { cat "$T/$1.log" >&2; exit 1; }
        sleep 0.1
    done
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# attack LABEL PID SCHEME PORT CMD...: the probe (/query/one over HTTP/1.1) while CMD runs; the
# gateway's CPU over that time and the database executions of /query/slow it started.
attack() {
    local label=$1 pid=$2 scheme=$3 port=$4
    shift 4
    local hits0 hits1 c0 c1 t0 t1 probe_pid cpu
    hits0=$(sql -c "SELECT last_value FROM rr_hits")
    c0=$(cpu_ticks "$pid")
    t0=$EPOCHREALTIME
    $PY "$ROOT/bench/latency_probe.py" --url "$scheme://127.0.0.1:$port/query/one" \
        --seconds "$((SECONDS_MAX + 1))" >"$T/probe.json" &
    probe_pid=$!
    sleep 0.5
    "$@" >"$T/attack.json" || true
    c1=$(cpu_ticks "$pid")
    t1=$EPOCHREALTIME
    wait "$probe_pid"
    sleep 1 # queries still running finish
    hits1=$(sql -c "SELECT last_value FROM rr_hits")
    cpu=$(awk -v a="$c0" -v b="$c1" -v s="$t0" -v e="$t1" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.0f", 100 * (b - a) / hz / (e - s) }')
    printf '%s\n  attacker: %s\n  gateway CPU %s%% of one core over %.1f s; database executions: %s\n  probe: %s\n' \
        "$label" "$(cat "$T/attack.json")" "$cpu" "$(awk -v s="$t0" -v e="$t1" 'BEGIN { print e - s }')" \
        "$((hits1 - hits0))" "$(cat "$T/probe.json")"
}

baseline() { # LABEL SCHEME PORT
    printf '%s\n  probe: %s\n' "$1" \
        "$($PY "$ROOT/bench/latency_probe.py" --url "$2://127.0.0.1:$3/query/one" --seconds 5)"
}

say "PostgreSQL on $TESTDB_PORT; gateways: TLS on $PORT_TLS, plain on $PORT_H2C; workers $WORKERS," \
    "pool_size $POOL_SIZE, http2 = $HTTP2; $PAIRS pairs or $SECONDS_MAX s per attack"
sql -c "SELECT nextval('rr_hits')" >/dev/null
start_gateway tls "$PORT_TLS" "tls = { cert = \"$T/cert.pem\", key = \"$T/key.pem\" },"
PID_TLS=$GW_PID
start_gateway h2c "$PORT_H2C" ""
PID_H2C=$GW_PID

RR=("$PY" "$ROOT/bench/h2_rapid_reset.py" --n "$PAIRS" --seconds "$SECONDS_MAX")
SLOW="/query/slow?s=0.2"
for mode in tls h2c; do
    if [[ $mode == tls ]]; then pid=$PID_TLS scheme=https port=$PORT_TLS tlsflag=(--tls); else
        pid=$PID_H2C scheme=http port=$PORT_H2C tlsflag=(); fi
    baseline "$mode: no attack" "$scheme" "$port"
    attack "$mode: rapid reset, /health/live" "$pid" "$scheme" "$port" \
        "${RR[@]}" --port "$port" "${tlsflag[@]}" --path /health/live
    attack "$mode: rapid reset, $SLOW" "$pid" "$scheme" "$port" \
        "${RR[@]}" --port "$port" "${tlsflag[@]}" --path "$SLOW"
    attack "$mode: rapid reset, $SLOW, reconnecting" "$pid" "$scheme" "$port" \
        "${RR[@]}" --port "$port" "${tlsflag[@]}" --path "$SLOW" --reconnect
done
attack "plain: HTTP/1.1 connect, GET $SLOW, reset (for comparison)" "$PID_H2C" http "$PORT_H2C" \
    "$PY" "$ROOT/bench/http1_abandon.py" --port "$PORT_H2C" --path "$SLOW" --seconds "$SECONDS_MAX"
say "gateway warnings:"
grep -h '"level":"warn"' "$T/tls.log" "$T/h2c.log" | sort | uniq -c | sort -rn | head -5 >&2 || true
