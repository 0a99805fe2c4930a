#!/usr/bin/env bash
# bench/run.sh — what `make bench` runs. First, when COMPARE_SH names it, a side-by-side
# comparison script (PostgreSQL's ceiling, a Node peer and sluice at POOL=4 and 64 connections),
# then what that does not cover,
# each beside the ceiling measured in this same run on a throwaway PostgreSQL: req/s and latency
# at HTTP concurrency 1..256, req/s against pool size, pipelining depth, workers 1 vs 2, RSS with
# 1000 idle keep-alive connections and over a long run, bulk JSON vs CSV vs psql \copy.
# Writes bench/results/<stamp>.json and .csv files, redraws docs/perf-*.png with gnuplot.
# Knobs (environment) and method: docs/performance.md.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench

SECS=${SECS:-3}                    # seconds per measured run of the sweeps
ROUNDS=${ROUNDS:-1}                # runs per contender and point, alternating; figures are medians
WARMUP_SECS=${WARMUP_SECS:-1}      # unmeasured wrk load before the first measured run of a point
RSS_SECS=${RSS_SECS:-60}           # the long run whose RSS before/after is compared
IDLE_CONNS=${IDLE_CONNS:-1000}     # idle keep-alive connections held open for the RSS figure
CONCURRENCY=${CONCURRENCY:-"1 16 64 256"}
POOL_SIZES=${POOL_SIZES:-"2 4 8 16"}
DEPTHS=${DEPTHS:-"1 4 16"}
POOL=${POOL:-4}                    # pool size of every sweep but the pool-size one
CONNS=${CONNS:-64}                 # HTTP connections of every sweep but the concurrency one
COMPARE_SH=${COMPARE_SH:-}         # a side-by-side comparison script (compare.sh); unset: skipped
COMPARE=${COMPARE:-$([[ -n $COMPARE_SH ]] && echo 1 || echo 0)}
COMPARE_SECS=${COMPARE_SECS:-10}
COMPARE_ROUNDS=${COMPARE_ROUNDS:-2}
PEER=${PEER:-auto}                 # the Node peer in the sweeps: auto (when compare.sh installed it) | 0
PEER_WARMUP_SECS=${PEER_WARMUP_SECS:-4} # after each peer start: V8 compiles its hot paths (~3x req/s)
PEER_CACHE=${PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-bench/peer-node}
GATEWAY_WORKERS=${GATEWAY_WORKERS:-$(nproc)}
BENCH_DB_DIR=${BENCH_DB_DIR:-/tmp/sluice-bench-db}
BENCH_DB_PORT=${BENCH_DB_PORT:-55601}
GATEWAY_PORT=${GATEWAY_PORT:-55602}
PEER_PORT=${PEER_PORT:-55603}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench/results}
PLOTS_DIR=${PLOTS_DIR:-$ROOT/docs}
STAMP=${STAMP:-$(date -u +%Y-%m-%d-%H%M)}

QUOTE_ROWS=100000  # fixed in bench/quote_by_id.lua too
BULK_ROWS=200000
BULK_BATCH=10000
PGBIN=/usr/lib/postgresql/15/bin
GW_URL=http://127.0.0.1:$GATEWAY_PORT
PEER_URL=http://127.0.0.1:$PEER_PORT

for v in SECS ROUNDS RSS_SECS IDLE_CONNS POOL CONNS COMPARE_SECS COMPARE_ROUNDS GATEWAY_WORKERS BENCH_DB_PORT GATEWAY_PORT PEER_PORT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
for v in WARMUP_SECS PEER_WARMUP_SECS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench: $v must be an integer >= 0, got '${!v}'" >&2; exit 2; }
done

say() { printf '== [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
FAILURES=()
fail() { FAILURES+=("$1"); printf '!!!!! %s\n' "$1" >&2; }
trap 'echo "bench: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

for c in wrk curl luajit ss awk timeout "$PGBIN/pgbench" "$PGBIN/psql"; do
    command -v "$c" >/dev/null || die "missing $c (make bench installs it through scripts/deps.sh bench)"
done
if [[ ! -x $SLUICE_BIN ]]; then
    [[ $SLUICE_BIN == "$ROOT/build/sluice" ]] || die "SLUICE_BIN=$SLUICE_BIN is not an executable"
    say "building build/sluice"
    make -C "$ROOT" --no-print-directory -j"$(nproc)" all >&2
fi
(($(ulimit -n) > IDLE_CONNS + 200)) || ulimit -n $((IDLE_CONNS + 1024)) 2>/dev/null ||
    die "ulimit -n is $(ulimit -n), below IDLE_CONNS=$IDLE_CONNS + 200"

# ---------------------------------------------------------------------------------------------
# Processes: everything started here is tracked by PID and stopped by PID.

T=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench-run.XXXXXX")
TRACKED=()
DB_STARTED=0
track() { TRACKED+=("$1"); }
untrack() {
    local keep=() p
    for p in "${TRACKED[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    TRACKED=("${keep[@]}")
}

# SIGTERM a process and the children it had (node cluster workers), wait, then SIGKILL.
stop_pid() {
    local pid=$1 kids i p
    kids=$(pgrep -P "$pid" 2>/dev/null || true)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in $kids; do
        for ((i = 0; i < 20; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    untrack "$pid"
}

testdb() { TESTDB_DIR=$BENCH_DB_DIR TESTDB_PORT=$BENCH_DB_PORT TESTDB_REPLICA_PORT= "$ROOT/scripts/testdb.sh" "$@"; }

cleanup() {
    local rc=$? p
    trap - EXIT INT TERM ERR
    for p in "${TRACKED[@]}"; do stop_pid "$p"; done
    ((DB_STARTED)) && testdb stop >/dev/null 2>&1 || true
    rm -rf "$T"
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted: cleaning up"; exit 130' INT
trap 'say "terminated: cleaning up"; exit 143' TERM

# A bounded foreground tool, run in the background so a signal interrupts the wait at once.
run_bounded() { # LOG SECONDS CMD...
    local log=$1 limit=$2 pid rc=0
    shift 2
    timeout -s TERM "$limit" "$@" >"$log" 2>&1 &
    pid=$!
    track "$pid"
    wait "$pid" || rc=$?
    untrack "$pid"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Figures: every measurement is stored per round under a key; reports use the median.

declare -A VAL
add() { VAL[$1]="${VAL[$1]:-} $2"; }
med() { # KEY -> median, or NaN
    tr ' ' '\n' <<<"${VAL[$1]:-}" | { grep -E '^-?[0-9.]+$' || true; } | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) print "NaN"; else if (NR % 2) print a[(NR + 1) / 2];
                                  else { v = sprintf("%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2);
                                         sub(/\.?0+$/, "", v); print v } }'
}
total() { tr ' ' '\n' <<<"${VAL[$1]:-}" | awk 'NF { s += $1; n++ } END { print n ? s : "null" }'; }
last() { awk '{ print $NF }' <<<"${VAL[$1]:-}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NaN" || b == "NaN" || b + 0 == 0) print "NaN"; else printf "%.3f\n", a / b }'; }
jnum() { [[ $1 == NaN || -z $1 ]] && echo null || echo "$1"; } # JSON has no NaN

# Busy cores of the whole machine over SECONDS: what else is running (the noise).
machine_busy() {
    local a b
    a=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat)
    sleep "$1"
    b=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat)
    awk -v a="$a" -v b="$b" -v n="$(nproc)" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2];
                                                    printf "%.2f\n", t ? (y[1] - x[1]) / t * n : 0 }'
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo NaN; }

# CPU clock ticks used by a process and its live children, plus the children it already reaped
# (postgres backends that exited): fields 14-17 of /proc/PID/stat.
CLK_TCK=$(getconf CLK_TCK)
ticks() { # PID
    local pid sum=0 st f
    for pid in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
        st=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        read -ra f <<<"${st##*) }" # f[0] is field 3: the command name may hold spaces
        sum=$((sum + f[11] + f[12]))
        [[ $pid == "$1" ]] && sum=$((sum + f[13] + f[14]))
    done
    echo "$sum"
}
PG_PID=""

# ---------------------------------------------------------------------------------------------
# Load generators.

# wrk on /query/quote_by_id; sets W_RPS (2xx per second), W_P50, W_P99 (ms), W_REQ and W_ERR
# (non-2xx + socket errors). Errors fail the run when they come from sluice; the peer's (wrk's
# 2 s timeout when it falls behind at high concurrency) are only recorded.
# With APP_PID it also sets W_US_APP and W_US_PG: CPU microseconds per request in the app and in
# PostgreSQL, which the machine's other load disturbs far less than req/s.
run_wrk() { # TAG BASE_URL CONNS SECS [APP_PID]
    local tag=$1 url=$2 conns=$3 secs=$4 app=${5:-} line a0=0 a1=0 p0=0 p1=0
    if ((WARMUP_SECS > 0 && ROUND <= 1)); then
        run_bounded "$T/wrk-warm.out" $((WARMUP_SECS + 30)) \
            wrk -t1 -c"$conns" -d"${WARMUP_SECS}s" -s "$BENCH/quote_by_id.lua" "$url" || true
    fi
    [[ -z $app ]] || { a0=$(ticks "$app"); p0=$(ticks "$PG_PID"); }
    run_bounded "$T/wrk.out" $((secs + 30)) wrk -t1 -c"$conns" -d"${secs}s" --latency \
        -s "$BENCH/quote_by_id.lua" "$url" || die "wrk failed ($tag): $(tail -3 "$T/wrk.out")"
    [[ -z $app ]] || { sleep 0.2; a1=$(ticks "$app"); p1=$(ticks "$PG_PID"); }
    line=$(grep '^WRK_RESULT ' "$T/wrk.out") || die "no result from wrk ($tag): $(tail -3 "$T/wrk.out")"
    local req dur non2xx sockerr p50 p99
    IFS=' =' read -r _ _ req _ dur _ non2xx _ sockerr _ p50 _ p99 _ <<<"$line"
    W_ERR=$((non2xx + sockerr))
    if ((W_ERR)); then
        if [[ $url == "$GW_URL" ]]; then fail "$tag: $non2xx non-2xx responses, $sockerr socket errors"
        else say "  $tag: $non2xx non-2xx responses, $sockerr socket errors (recorded)"; fi
    fi
    W_REQ=$req
    W_RPS=$(awk -v r="$req" -v e="$non2xx" -v d="$dur" 'BEGIN { printf "%.0f", (r - e) / (d / 1e6) }')
    W_P50=$(awk -v v="$p50" 'BEGIN { printf "%.3f", v / 1000 }')
    W_P99=$(awk -v v="$p99" 'BEGIN { printf "%.3f", v / 1000 }')
    W_US_APP=$(awk -v d="$((a1 - a0))" -v k="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.1f", r ? d / k / r * 1e6 : 0 }')
    W_US_PG=$(awk -v d="$((p1 - p0))" -v k="$CLK_TCK" -v r="$req" 'BEGIN { printf "%.1f", r ? d / k / r * 1e6 : 0 }')
    say "  $tag: $W_RPS req/s, p50 $W_P50 ms, p99 $W_P99 ms${app:+; CPU us/request: app $W_US_APP, postgres $W_US_PG}"
}

# pgbench -M prepared on the same SELECT over TCP; sets P_TPS, P_P50, P_P99 (ms, from the
# per-transaction log, so they compare with wrk's percentiles). pgbench's -T includes opening
# its connections, which takes long with many clients on a busy machine (a backend start cost
# 5-90 ms here), so -T gets an allowance from the connection time seen so far; tps and the log
# exclude that phase. A run that ended before any transaction is retried with more allowance.
CONN_MS=20
ROUND=1 # the round of the current point: wrk warms up in the first only
run_pgbench() { # CLIENTS SECS
    local clients=$1 secs=$2 pgb try allow conn
    pgb=("$PGBIN/pgbench" -n -M prepared -c "$clients" -j 1 -h 127.0.0.1 -p "$BENCH_DB_PORT" -U postgres -f "$T/quote_by_id.sql")
    for ((try = 1; try <= 3; try++)); do
        allow=$(((clients * CONN_MS + 999) / 1000 + 1))
        rm -f "$T"/pgblog.*
        run_bounded "$T/pgbench.out" $((secs + allow + 60)) "${pgb[@]}" -T $((secs + allow)) -l --log-prefix="$T/pgblog" postgres || true
        P_TPS=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$T/pgbench.out")
        conn=$(awk '/^initial connection time = / { printf "%.0f", $5; exit }' "$T/pgbench.out")
        [[ -n $conn ]] && CONN_MS=$(((conn * 3 / 2) / clients > 20 ? (conn * 3 / 2) / clients : 20))
        [[ -n $P_TPS ]] && break
        CONN_MS=$((CONN_MS * 4))
        say "  pgbench -c $clients ended while connecting; retrying with more time"
    done
    [[ -n $P_TPS ]] || die "could not read pgbench's output: $(cat "$T/pgbench.out")"
    read -r P_P50 P_P99 < <(cat "$T"/pgblog.* | awk '{ print $3 }' | sort -n |
        awk '{ a[NR] = $1 } END { i = int(NR * 0.5); j = int(NR * 0.99); if (i < 1) i = 1; if (j < 1) j = 1;
                                  printf "%.3f %.3f\n", a[i] / 1000, a[j] / 1000 }')
    rm -f "$T"/pgblog.*
    say "  ceiling (pgbench -c $clients): $P_TPS tps, p50 $P_P50 ms, p99 $P_P99 ms (connecting took ${conn:-?} ms)"
}

# ---------------------------------------------------------------------------------------------
# Servers.

GW_PID=""
# Writes the gateway's config (compare.sh's, plus pool size, workers and pipeline depth) and
# starts it; waits for /health/live and checks one answer.
gw_start() { # POOL WORKERS DEPTH
    local pool=$1 workers=$2 depth=$3 dir=$T/gw i try
    gw_stop
    mkdir -p "$dir"
    cat >"$dir/endpoints.lua" <<'LUA'
sluice.query "quote_by_id" { sql = "SELECT id, pair, bid, ask, ts FROM bench_quotes WHERE id = :id", readonly = true }
sluice.bulk "bench_ticks" { table = "bench_ticks", columns = { "pair", "bid", "ask", "ts" } }
LUA
    cat >"$dir/sluice.lua" <<LUA
return {
  listen = "127.0.0.1:$GATEWAY_PORT",
  workers = $workers,
  shutdown_timeout = 2,
  pools = {
    primary = {
      url = "host=127.0.0.1 port=$BENCH_DB_PORT dbname=postgres user=postgres",
      pool_size = $pool,
      max_overflow = 0,
      pipeline_depth = $depth,
    },
  },
  scripts = { "$dir/endpoints.lua" },
}
LUA
    local envv=(env) v
    for v in $(compgen -e); do [[ $v == SLUICE_* || $v == DATABASE_URL ]] && envv+=(-u "$v"); done
    for ((try = 1; try <= 10; try++)); do
        # shellcheck disable=SC2016 # $1 and $2 belong to the inner bash
        "${envv[@]}" bash -c 'cd "$1" && exec "$2" serve --config "$1/sluice.lua"' _ "$dir" "$SLUICE_BIN" \
            >"$T/gateway.log" 2>&1 &
        GW_PID=$!
        track "$GW_PID"
        for ((i = 0; i < 100; i++)); do
            kill -0 "$GW_PID" 2>/dev/null || break
            if curl -fsS --max-time 1 -o /dev/null "$GW_URL/health/live" 2>/dev/null; then
                check_answer gateway "$GW_URL"
                say "gateway up: pool_size=$pool workers=$workers pipeline_depth=$depth (pid $GW_PID)"
                return 0
            fi
            sleep 0.1
        done
        stop_pid "$GW_PID"
        GW_PID=""
        grep -qi 'address already in use' "$T/gateway.log" || break
        sleep 2
    done
    tail -20 "$T/gateway.log" >&2
    die "the gateway did not start"
}
gw_stop() { if [[ -n $GW_PID ]]; then stop_pid "$GW_PID"; GW_PID=""; fi; }

PEER_PID=""
peer_start() { # POOL
    local i
    peer_stop
    env DATABASE_URL="postgres://postgres@127.0.0.1:$BENCH_DB_PORT/postgres" HOST=127.0.0.1 PORT="$PEER_PORT" \
        POOL="$1" WORKERS="$(nproc)" node "$PEER_CACHE/server.js" >"$T/peer.log" 2>&1 &
    PEER_PID=$!
    track "$PEER_PID"
    for ((i = 0; i < 150; i++)); do
        kill -0 "$PEER_PID" 2>/dev/null || break
        if curl -fsS --max-time 1 -o /dev/null "$PEER_URL/health" 2>/dev/null; then
            check_answer peer "$PEER_URL"
            ((PEER_WARMUP_SECS == 0)) || run_bounded "$T/wrk-peerwarm.out" $((PEER_WARMUP_SECS + 30)) \
                wrk -t1 -c"$CONNS" -d"${PEER_WARMUP_SECS}s" -s "$BENCH/quote_by_id.lua" "$PEER_URL" || true
            return 0
        fi
        sleep 0.1
    done
    tail -10 "$T/peer.log" >&2
    fail "the Node peer did not start; it is left out of the sweeps"
    peer_stop
    PEER=0
}
peer_stop() { if [[ -n $PEER_PID ]]; then stop_pid "$PEER_PID"; PEER_PID=""; fi; }

check_answer() { # WHO BASE_URL
    local body
    body=$(curl -sS --max-time 5 "$2/query/quote_by_id?id=42" 2>&1 || true)
    [[ $body == *'"row_count":1'* && $body =~ \"id\":\ ?\"?42\"?[,}] ]] ||
        fail "WRONG ANSWER ($1): GET /query/quote_by_id?id=42 returned: ${body:0:200}"
}

# ---------------------------------------------------------------------------------------------
# 0. compare.sh: the reference table (ceiling / peer / sluice at POOL and CONNS: 4 and 64).

mkdir -p "$RESULTS_DIR"
BG_BEFORE=$(machine_busy 2)
say "background load before the run: $BG_BEFORE busy cores of $(nproc) (other work on this machine)"
COMPARE_JSON=null
COMPARE_RC=skipped
if ((COMPARE)); then
    [[ -x $COMPARE_SH ]] || die "compare.sh not found at $COMPARE_SH (set COMPARE_SH, or COMPARE=0)"
    say "compare.sh: SECS=$COMPARE_SECS ROUNDS=$COMPARE_ROUNDS POOL=$POOL CONNS=$CONNS (its progress follows)"
    COMPARE_RC=0
    env SLUICE_BIN="$SLUICE_BIN" OUT_JSON="$T/compare.json" SECS="$COMPARE_SECS" ROUNDS="$COMPARE_ROUNDS" \
        POOL="$POOL" CONNS="$CONNS" GATEWAY_WORKERS="$GATEWAY_WORKERS" PEER_CACHE="$PEER_CACHE" \
        "$COMPARE_SH" >"$RESULTS_DIR/compare-$STAMP.txt" || COMPARE_RC=$?
    cat "$RESULTS_DIR/compare-$STAMP.txt" >&2
    ((COMPARE_RC == 0)) || fail "compare.sh exited with $COMPARE_RC (see bench/results/compare-$STAMP.txt)"
    [[ -s $T/compare.json ]] && COMPARE_JSON=$(cat "$T/compare.json")
fi

if [[ $PEER == auto ]]; then
    PEER=0
    if command -v node >/dev/null && [[ -d $PEER_CACHE/node_modules && -f $PEER_CACHE/server.js ]] &&
        (($(node -p 'process.versions.node.split(".")[0]') >= 20)); then PEER=1; fi
    ((PEER)) || say "the Node peer is left out of the sweeps (compare.sh installs it into $PEER_CACHE)"
fi

# ---------------------------------------------------------------------------------------------
# The database: scripts/testdb.sh with this run's own dir and port, set up like compare.sh's.

say "starting PostgreSQL on 127.0.0.1:$BENCH_DB_PORT ($BENCH_DB_DIR)"
DB_STARTED=1
testdb start >/dev/null
# Like compare.sh's server: no pg_stat_statements (it costs every query a little); room for
# pgbench -c 256 beside the pools.
cat >>"$BENCH_DB_DIR/data/postgresql.conf" <<CONF
# bench/run.sh
shared_preload_libraries = ''
max_connections = 400
CONF
testdb restart
PG_PID=$(head -1 "$BENCH_DB_DIR/data/postmaster.pid")
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_DB_PORT" -U postgres -d postgres)
sql() { "${PSQL[@]}" -At "$@"; }
sql -v rows="$QUOTE_ROWS" -f "$BENCH/schema.sql" >/dev/null
PG_VERSION=$(sql -c 'SHOW server_version')
printf '\\set id random(1, %d)\nSELECT id, pair, bid, ask, ts FROM bench_quotes WHERE id = :id;\n' "$QUOTE_ROWS" >"$T/quote_by_id.sql"
say "generating $BULK_ROWS tick rows"
luajit "$BENCH/gen_ticks.lua" "$T" "$BULK_ROWS" "$BULK_BATCH"
say "warming up PostgreSQL (pgbench -c $POOL)"
run_pgbench "$POOL" "$((WARMUP_SECS > 0 ? WARMUP_SECS + 1 : 1))"

# One point of a sweep: ROUNDS x (ceiling, peer, sluice) in turn, so that the machine's drift
# hits the three alike; stores rps/p50/p99/err under PREFIX.X.<who>.
measure_point() { # PREFIX X PGBENCH_CLIENTS HTTP_CONNS LABEL [ALSO_CLIENTS ALSO_KEY]
    local pre=$1 x=$2 clients=$3 conns=$4 label=$5 also=${6:-} also_key=${7:-}
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        say "$label, round $ROUND/$ROUNDS"
        run_pgbench "$clients" "$SECS"
        add "$pre.$x.ceiling.rps" "$P_TPS"; add "$pre.$x.ceiling.p50" "$P_P50"; add "$pre.$x.ceiling.p99" "$P_P99"
        add "$pre.$x.ceiling.err" 0
        if [[ -n $also ]]; then # a second ceiling, for another sweep that shares this point's HTTP runs
            run_pgbench "$also" "$SECS"
            add "$also_key.ceiling.rps" "$P_TPS"; add "$also_key.ceiling.p50" "$P_P50"; add "$also_key.ceiling.p99" "$P_P99"
            add "$also_key.ceiling.err" 0
        fi
        if ((PEER)); then
            run_wrk "peer $label" "$PEER_URL" "$conns" "$SECS" "$PEER_PID"
            add "$pre.$x.peer.rps" "$W_RPS"; add "$pre.$x.peer.p50" "$W_P50"; add "$pre.$x.peer.p99" "$W_P99"
            add "$pre.$x.peer.err" "$W_ERR"; add "$pre.$x.peer.us_app" "$W_US_APP"; add "$pre.$x.peer.us_pg" "$W_US_PG"
        fi
        run_wrk "sluice $label" "$GW_URL" "$conns" "$SECS" "$GW_PID"
        add "$pre.$x.sluice.rps" "$W_RPS"; add "$pre.$x.sluice.p50" "$W_P50"; add "$pre.$x.sluice.p99" "$W_P99"
        add "$pre.$x.sluice.err" "$W_ERR"; add "$pre.$x.sluice.us_app" "$W_US_APP"; add "$pre.$x.sluice.us_pg" "$W_US_PG"
    done
    ROUND=1
}

# ---------------------------------------------------------------------------------------------
# 1. RSS of a fresh gateway, then with IDLE_CONNS idle keep-alive connections (each has served
#    one query; h2o closes idle ones after 10 s, so they are counted at once).

gw_start "$POOL" "$GATEWAY_WORKERS" 16
say "RSS: $IDLE_CONNS idle keep-alive connections"
RSS_START=$(rss_kb "$GW_PID")
RSS_IDLE_BASE=$RSS_START
luajit "$BENCH/idle_conns.lua" 127.0.0.1 "$GATEWAY_PORT" "$IDLE_CONNS" "/query/quote_by_id?id=42" 6 >"$T/idle.out" 2>&1 &
IDLE_PID=$!
track "$IDLE_PID"
for ((i = 0; i < 600; i++)); do
    grep -q '^ready' "$T/idle.out" 2>/dev/null && break
    kill -0 "$IDLE_PID" 2>/dev/null || break
    sleep 0.1
done
read -r _ IDLE_OPEN IDLE_FAILED < <(grep '^ready' "$T/idle.out" || echo "ready 0 $IDLE_CONNS")
sleep 0.5
RSS_IDLE=$(rss_kb "$GW_PID")
IDLE_SERVER_SIDE=$(ss -Htn state established "( sport = :$GATEWAY_PORT )" 2>/dev/null | wc -l)
wait "$IDLE_PID" 2>/dev/null || true
untrack "$IDLE_PID"
((IDLE_OPEN == IDLE_CONNS)) || fail "idle connections: only $IDLE_OPEN of $IDLE_CONNS were answered ($(tail -2 "$T/idle.out"))"
RSS_PER_CONN=$(awk -v a="$RSS_IDLE_BASE" -v b="$RSS_IDLE" -v n="$IDLE_OPEN" 'BEGIN { printf "%.0f", n ? (b - a) * 1024 / n : 0 }')
say "  RSS $RSS_IDLE_BASE kB -> $RSS_IDLE kB with $IDLE_OPEN idle connections ($IDLE_SERVER_SIDE established at the server); $RSS_PER_CONN B each"

# ---------------------------------------------------------------------------------------------
# 2. HTTP concurrency 1..256 at pool POOL: sluice and the peer with c HTTP connections, the
#    ceiling with c pgbench clients (c backends: what PostgreSQL does with that many clients).

((PEER)) && peer_start "$POOL"
# The point c = CONNS is also the pool-size sweep's point POOL: its HTTP runs serve both, each
# round also measuring pgbench -c POOL.
SHARED=0
[[ " $POOL_SIZES " == *" $POOL "* && " $CONCURRENCY " == *" $CONNS "* ]] && SHARED=1
for c in $CONCURRENCY; do
    if ((SHARED && c == CONNS)); then
        measure_point conc "$c" "$c" "$c" "HTTP concurrency $c, pool $POOL" "$POOL" "pool.$POOL"
        for k in "${!VAL[@]}"; do
            if [[ $k == conc.$c.peer.* || $k == conc.$c.sluice.* ]]; then VAL[pool.$POOL.${k#conc.$c.}]=${VAL[$k]}; fi
        done
    else
        measure_point conc "$c" "$c" "$c" "HTTP concurrency $c, pool $POOL"
    fi
done
peer_stop

# ---------------------------------------------------------------------------------------------
# 3. RSS before and after a RSS_SECS run at CONNS connections (sampled every 5 s).

say "RSS: ${RSS_SECS}s wrk run at $CONNS connections"
run_bounded "$T/wrk-rsswarm.out" 40 wrk -t1 -c"$CONNS" -d5s -s "$BENCH/quote_by_id.lua" "$GW_URL" || true
sleep 1
RSS_BEFORE=$(rss_kb "$GW_PID")
RSS_SAMPLES=("$RSS_BEFORE")
timeout -s TERM $((RSS_SECS + 30)) wrk -t1 -c"$CONNS" -d"${RSS_SECS}s" --latency -s "$BENCH/quote_by_id.lua" "$GW_URL" \
    >"$T/wrk-rss.out" 2>&1 &
WRK_PID=$!
track "$WRK_PID"
while kill -0 "$WRK_PID" 2>/dev/null; do
    sleep 5
    kill -0 "$WRK_PID" 2>/dev/null && RSS_SAMPLES+=("$(rss_kb "$GW_PID")")
done
wait "$WRK_PID" || die "wrk failed: $(tail -3 "$T/wrk-rss.out")"
untrack "$WRK_PID"
sleep 1
RSS_AFTER=$(rss_kb "$GW_PID")
RSS_SAMPLES+=("$RSS_AFTER")
IFS=' =' read -r _ _ RSS_REQ _ _ _ RSS_NON2XX _ RSS_SOCKERR _ <<<"$(grep '^WRK_RESULT ' "$T/wrk-rss.out")"
((RSS_NON2XX == 0 && RSS_SOCKERR == 0)) || fail "RSS run: $RSS_NON2XX non-2xx, $RSS_SOCKERR socket errors"
RSS_GROWTH_PER_REQ=$(awk -v a="$RSS_BEFORE" -v b="$RSS_AFTER" -v n="$RSS_REQ" 'BEGIN { printf "%.4f", n ? (b - a) * 1024 / n : 0 }')
say "  RSS $RSS_BEFORE kB before, $RSS_AFTER kB after $RSS_REQ requests ($RSS_GROWTH_PER_REQ B per request); samples: ${RSS_SAMPLES[*]}"

# ---------------------------------------------------------------------------------------------
# 4. Bulk: the same 200k rows through psql \copy, POST /bulk JSON and POST /bulk CSV (20 bodies
#    of 10k rows, one after another on one keep-alive connection, like compare.sh).

reset_ticks() { sql -c 'TRUNCATE bench_ticks' -c 'CHECKPOINT' >/dev/null; }
FINGERPRINT=""
check_ticks() { # WHO -> 0 when bench_ticks holds exactly the rows \copy loaded
    local got
    got=$(sql -c "SELECT count(*) || ' ' || md5(string_agg(concat_ws('|', pair, bid, ask, ts), ',' ORDER BY ts, pair, bid, ask)) FROM bench_ticks")
    if [[ ${got%% *} != "$BULK_ROWS" ]]; then fail "BULK MISMATCH ($1): ${got%% *} rows"; return 1; fi
    if [[ -z $FINGERPRINT ]]; then FINGERPRINT=${got#* }; elif [[ ${got#* } != "$FINGERPRINT" ]]; then
        fail "BULK MISMATCH ($1): the rows differ from what \\copy loaded"; return 1
    fi
}
post_bulk() { # WHO EXT CONTENT_TYPE -> B_ROWS_S
    local who=$1 ext=$2 ctype=$3 args=() f t0 t1 codes
    for f in "$T"/ticks-*."$ext"; do
        ((${#args[@]})) && args+=(--next)
        args+=(-sS --max-time 120 -o /dev/null -w '%{http_code}\n' -H "Content-Type: $ctype" -H 'Expect:'
            --data-binary "@$f" "$GW_URL/bulk/bench_ticks")
    done
    reset_ticks
    t0=$EPOCHREALTIME
    codes=$(curl "${args[@]}" 2>"$T/curl.err") || true
    t1=$EPOCHREALTIME
    B_ROWS_S=$(awk -v a="$t0" -v b="$t1" -v n="$BULK_ROWS" 'BEGIN { printf "%.0f", n / (b - a) }')
    if grep -qv '^200$' <<<"$codes"; then
        fail "BULK ERROR ($who): $(sort <<<"$codes" | uniq -c | tr -s ' \n' ' ')"
        B_ROWS_S=NaN
    fi
    check_ticks "$who" || B_ROWS_S=NaN
    reset_ticks
}
for ((round = 1; round <= ROUNDS; round++)); do
    say "round $round: bulk of $BULK_ROWS rows"
    reset_ticks
    t0=$EPOCHREALTIME
    sql -c "\\copy bench_ticks (pair, bid, ask, ts) FROM '$T/ticks.csv' WITH (FORMAT csv)" >/dev/null
    t1=$EPOCHREALTIME
    r=$(awk -v a="$t0" -v b="$t1" -v n="$BULK_ROWS" 'BEGIN { printf "%.0f", n / (b - a) }')
    check_ticks copy || r=NaN
    add bulk.copy "$r"
    post_bulk json json application/json; add bulk.json "$B_ROWS_S"
    post_bulk csv csv text/csv; add bulk.csv "$B_ROWS_S"
    say "  \\copy $(last bulk.copy), JSON $(last bulk.json), CSV $(last bulk.csv) rows/s"
done

# ---------------------------------------------------------------------------------------------
# 5. Pool size at CONNS connections: the ceiling is pgbench with as many clients as the pool.

for p in $POOL_SIZES; do
    if ! ((SHARED && p == POOL)); then
        gw_start "$p" "$GATEWAY_WORKERS" 16
        ((PEER)) && peer_start "$p"
        measure_point pool "$p" "$p" "$CONNS" "pool size $p, $CONNS HTTP connections"
    fi
    if ((p == POOL)); then
        # the reference rows of the depth and workers tables, measured right beside the ceiling
        VAL[depth.16.ceil]=${VAL[pool.$p.ceiling.rps]}
        VAL[workers.$GATEWAY_WORKERS.ceil]=${VAL[pool.$p.ceiling.rps]}
        for k in rps p50 p99; do
            VAL[depth.16.$k]=${VAL[pool.$p.sluice.$k]}
            VAL[workers.$GATEWAY_WORKERS.$k]=${VAL[pool.$p.sluice.$k]}
        done
        for k in us_app us_pg; do
            VAL[depth.16.$k]=${VAL[pool.$p.sluice.$k]}
            VAL[workers.$GATEWAY_WORKERS.$k]=${VAL[pool.$p.sluice.$k]}
        done
    fi
done
peer_stop

# ---------------------------------------------------------------------------------------------
# 6. Pipelining depth, and workers 1 vs 2, at pool POOL and CONNS connections.

# Each point alternates with the ceiling at the same pool size (pgbench -c POOL).
measure_variant() { # KEY LABEL
    for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
        run_pgbench "$POOL" "$SECS"
        add "$1.ceil" "$P_TPS"
        run_wrk "sluice $2" "$GW_URL" "$CONNS" "$SECS" "$GW_PID"
        add "$1.rps" "$W_RPS"; add "$1.p50" "$W_P50"; add "$1.p99" "$W_P99"
        add "$1.us_app" "$W_US_APP"; add "$1.us_pg" "$W_US_PG"
    done
    ROUND=1
}
for d in $DEPTHS; do
    [[ $d == 16 && -n ${VAL[depth.16.rps]:-} ]] && continue
    gw_start "$POOL" "$GATEWAY_WORKERS" "$d"
    measure_variant "depth.$d" "pipeline_depth=$d"
done
for w in 1 2; do
    [[ -n ${VAL[workers.$w.rps]:-} ]] && continue
    gw_start "$POOL" "$w" 16
    measure_variant "workers.$w" "workers=$w"
done
gw_stop
testdb stop >/dev/null
DB_STARTED=0
BG_AFTER=$(machine_busy 2)
say "background load after the run: $BG_AFTER busy cores"

# ---------------------------------------------------------------------------------------------
# Report: CSV per plot, one JSON document, the plots, a summary on stdout.

CONC_CSV=$RESULTS_DIR/$STAMP-concurrency.csv
POOL_CSV=$RESULTS_DIR/$STAMP-poolsize.csv
write_csv() { # FILE PREFIX XNAME XS
    local file=$1 pre=$2 x who k
    {
        printf '%s' "$3"
        for who in ceiling peer sluice; do printf ',%s_rps,%s_p50_ms,%s_p99_ms' "$who" "$who" "$who"; done
        printf '\n'
        for x in $4; do
            printf '%s' "$x"
            for who in ceiling peer sluice; do
                for k in rps p50 p99; do printf ',%s' "$(med "$pre.$x.$who.$k")"; done
            done
            printf '\n'
        done
    } >"$file"
}
write_csv "$CONC_CSV" conc concurrency "$CONCURRENCY"
write_csv "$POOL_CSV" pool pool_size "$POOL_SIZES"

json_points() { # PREFIX XNAME XS
    local pre=$1 xname=$2 x who sep=""
    printf '['
    for x in $3; do
        printf '%s{"%s":%s' "$sep" "$xname" "$x"
        for who in ceiling peer sluice; do
            printf ',"%s":{"rps":%s,"p50_ms":%s,"p99_ms":%s,"errors":%s' "$who" "$(jnum "$(med "$pre.$x.$who.rps")")" \
                "$(jnum "$(med "$pre.$x.$who.p50")")" "$(jnum "$(med "$pre.$x.$who.p99")")" "$(total "$pre.$x.$who.err")"
            [[ $who == ceiling ]] || printf ',"cpu_us_app":%s,"cpu_us_pg":%s' "$(jnum "$(med "$pre.$x.$who.us_app")")" \
                "$(jnum "$(med "$pre.$x.$who.us_pg")")"
            printf '}'
        done
        printf ',"sluice_vs_ceiling":%s,"sluice_vs_peer":%s}' \
            "$(jnum "$(ratio "$(med "$pre.$x.sluice.rps")" "$(med "$pre.$x.ceiling.rps")")")" \
            "$(jnum "$(ratio "$(med "$pre.$x.sluice.rps")" "$(med "$pre.$x.peer.rps")")")"
        sep=,
    done
    printf ']'
}
json_simple() { # PREFIX XNAME XS
    local pre=$1 xname=$2 x sep=""
    printf '['
    for x in $3; do
        printf '%s{"%s":%s,"rps":%s,"p50_ms":%s,"p99_ms":%s,"cpu_us_app":%s,"cpu_us_pg":%s,"ceiling_tps":%s,"vs_ceiling":%s}' \
            "$sep" "$xname" "$x" "$(jnum "$(med "$pre.$x.rps")")" "$(jnum "$(med "$pre.$x.p50")")" "$(jnum "$(med "$pre.$x.p99")")" \
            "$(jnum "$(med "$pre.$x.us_app")")" "$(jnum "$(med "$pre.$x.us_pg")")" \
            "$(jnum "$(med "$pre.$x.ceil")")" "$(jnum "$(ratio "$(med "$pre.$x.rps")" "$(med "$pre.$x.ceil")")")"
        sep=,
    done
    printf ']'
}
OK=true
((${#FAILURES[@]} == 0)) || OK=false
# The commit the binary was built from: SLUICE_REV, else the checkout's HEAD for its own build.
REV=${SLUICE_REV:-unknown}
if [[ -z ${SLUICE_REV:-} && $SLUICE_BIN == "$ROOT/build/sluice" ]]; then
    REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
fi
VERSION=$("$SLUICE_BIN" version 2>/dev/null | head -1 || true)
{
    printf '{"date":"%s","stamp":"%s","cores":%d,"rev":"%s","version":"%s","postgres":"%s","elapsed_s":%d,' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$STAMP" "$(nproc)" "$REV" "${VERSION//\"/}" "$PG_VERSION" "$SECONDS"
    printf '"secs":%d,"rounds":%d,"pool":%d,"conns":%d,"gateway_workers":%d,"peer":%s,' \
        "$SECS" "$ROUNDS" "$POOL" "$CONNS" "$GATEWAY_WORKERS" "$( ((PEER)) && echo true || echo false)"
    printf '"background_busy_cores":{"before":%s,"after":%s},' "$BG_BEFORE" "$BG_AFTER"
    printf '"compare_exit":"%s","compare":%s,' "$COMPARE_RC" "$COMPARE_JSON"
    printf '"concurrency":%s,' "$(json_points conc concurrency "$CONCURRENCY")"
    printf '"pool_size":%s,' "$(json_points pool pool_size "$POOL_SIZES")"
    printf '"pipeline_depth":%s,' "$(json_simple depth depth "$DEPTHS")"
    printf '"workers":%s,' "$(json_simple workers workers "1 2")"
    printf '"rss":{"start_kb":%s,"idle_base_kb":%s,"idle_kb":%s,"idle_conns":%d,"idle_conns_answered":%d,"idle_conns_established":%d,"idle_bytes_per_conn":%s,' \
        "$(jnum "$RSS_START")" "$(jnum "$RSS_IDLE_BASE")" "$(jnum "$RSS_IDLE")" "$IDLE_CONNS" "$IDLE_OPEN" "$IDLE_SERVER_SIDE" "$RSS_PER_CONN"
    printf '"run_secs":%d,"run_conns":%d,"before_kb":%s,"after_kb":%s,"requests":%s,"growth_bytes_per_request":%s,"samples_kb":[%s]},' \
        "$RSS_SECS" "$CONNS" "$(jnum "$RSS_BEFORE")" "$(jnum "$RSS_AFTER")" "$(jnum "$RSS_REQ")" "$RSS_GROWTH_PER_REQ" \
        "$(IFS=,; echo "${RSS_SAMPLES[*]}")"
    printf '"bulk":{"rows":%d,"copy_rows_s":%s,"json_rows_s":%s,"csv_rows_s":%s,"json_vs_copy":%s,"csv_vs_copy":%s},' \
        "$BULK_ROWS" "$(jnum "$(med bulk.copy)")" "$(jnum "$(med bulk.json)")" "$(jnum "$(med bulk.csv)")" \
        "$(jnum "$(ratio "$(med bulk.json)" "$(med bulk.copy)")")" "$(jnum "$(ratio "$(med bulk.csv)" "$(med bulk.copy)")")"
    printf '"failures":['
    sep=""
    for f in "${FAILURES[@]}"; do printf '%s"%s"' "$sep" "${f//\"/\'}"; sep=,; done
    printf '],"ok":%s}\n' "$OK"
} >"$RESULTS_DIR/$STAMP.json"

if command -v gnuplot >/dev/null; then
    ref=$(med "pool.$POOL.ceiling.rps")
    [[ $ref == NaN ]] && ref="" || ref="; ref=$ref; refpool=$POOL"
    gnuplot -e "conc='$CONC_CSV'; pool='$POOL_CSV'; outdir='$PLOTS_DIR'; label='$STAMP, $(nproc) cores'$ref" \
        "$BENCH/plot.gp" || fail "gnuplot failed"
else
    say "gnuplot is missing (apt-get install gnuplot-nox): plots not redrawn"
fi

{
    echo
    echo "sluice bench $STAMP ($((SECONDS / 60)) min $((SECONDS % 60)) s), $VERSION rev $REV: SECS=$SECS ROUNDS=$ROUNDS, $(nproc) cores (busy before/after: $BG_BEFORE/$BG_AFTER), PostgreSQL $PG_VERSION"
    [[ -f $RESULTS_DIR/compare-$STAMP.txt ]] && sed -n '2,10p' "$RESULTS_DIR/compare-$STAMP.txt" | grep -v '^{'
    echo
    printf 'HTTP concurrency (pool %d)   ceiling: pgbench -c N                peer                         sluice               sluice/ceiling\n' "$POOL"
    for c in $CONCURRENCY; do
        printf '  c=%-4s %8s tps p50 %7s p99 %8s | %7s p50 %7s p99 %8s | %7s p50 %7s p99 %8s | %s\n' "$c" \
            "$(med conc.$c.ceiling.rps)" "$(med conc.$c.ceiling.p50)" "$(med conc.$c.ceiling.p99)" \
            "$(med conc.$c.peer.rps)" "$(med conc.$c.peer.p50)" "$(med conc.$c.peer.p99)" \
            "$(med conc.$c.sluice.rps)" "$(med conc.$c.sluice.p50)" "$(med conc.$c.sluice.p99)" \
            "$(ratio "$(med conc.$c.sluice.rps)" "$(med conc.$c.ceiling.rps)")"
        printf '         CPU us/request: sluice %s + postgres %s; peer %s + postgres %s\n' "$(med conc.$c.sluice.us_app)" \
            "$(med conc.$c.sluice.us_pg)" "$(med conc.$c.peer.us_app)" "$(med conc.$c.peer.us_pg)"
    done
    printf 'pool size (%d HTTP conns)  ceiling: pgbench -c P                peer                         sluice               sluice/ceiling\n' "$CONNS"
    for p in $POOL_SIZES; do
        printf '  P=%-4s %8s tps p50 %7s p99 %8s | %7s p50 %7s p99 %8s | %7s p50 %7s p99 %8s | %s\n' "$p" \
            "$(med pool.$p.ceiling.rps)" "$(med pool.$p.ceiling.p50)" "$(med pool.$p.ceiling.p99)" \
            "$(med pool.$p.peer.rps)" "$(med pool.$p.peer.p50)" "$(med pool.$p.peer.p99)" \
            "$(med pool.$p.sluice.rps)" "$(med pool.$p.sluice.p50)" "$(med pool.$p.sluice.p99)" \
            "$(ratio "$(med pool.$p.sluice.rps)" "$(med pool.$p.ceiling.rps)")"
        printf '         CPU us/request: sluice %s + postgres %s; peer %s + postgres %s\n' "$(med pool.$p.sluice.us_app)" \
            "$(med pool.$p.sluice.us_pg)" "$(med pool.$p.peer.us_app)" "$(med pool.$p.peer.us_pg)"
    done
    echo "sluice variants (pool $POOL, $CONNS conns), each beside pgbench -c $POOL"
    for d in $DEPTHS; do
        printf '  pipeline_depth %-3s %7s req/s p50 %7s p99 %8s  ceiling %7s tps  ratio %s  CPU us/req %s + pg %s\n' "$d" \
            "$(med depth.$d.rps)" "$(med depth.$d.p50)" "$(med depth.$d.p99)" "$(med depth.$d.ceil)" \
            "$(ratio "$(med depth.$d.rps)" "$(med depth.$d.ceil)")" "$(med depth.$d.us_app)" "$(med depth.$d.us_pg)"
    done
    for w in 1 2; do
        printf '  workers %-10s %7s req/s p50 %7s p99 %8s  ceiling %7s tps  ratio %s  CPU us/req %s + pg %s\n' "$w" \
            "$(med workers.$w.rps)" "$(med workers.$w.p50)" "$(med workers.$w.p99)" "$(med workers.$w.ceil)" \
            "$(ratio "$(med workers.$w.rps)" "$(med workers.$w.ceil)")" "$(med workers.$w.us_app)" "$(med workers.$w.us_pg)"
    done
    echo "RSS: start $RSS_START kB; $RSS_IDLE_BASE -> $RSS_IDLE kB with $IDLE_OPEN idle keep-alive connections ($RSS_PER_CONN B each);"
    echo "     ${RSS_SECS}s at $CONNS conns: $RSS_BEFORE -> $RSS_AFTER kB over $RSS_REQ requests ($RSS_GROWTH_PER_REQ B/request); samples ${RSS_SAMPLES[*]}"
    echo "bulk $BULK_ROWS rows: \\copy $(med bulk.copy) rows/s, POST JSON $(med bulk.json) ($(ratio "$(med bulk.json)" "$(med bulk.copy)")x), POST CSV $(med bulk.csv) ($(ratio "$(med bulk.csv)" "$(med bulk.copy)")x)"
    echo "results: $RESULTS_DIR/$STAMP.json, $CONC_CSV, $POOL_CSV; plots: $PLOTS_DIR/perf-concurrency.png, $PLOTS_DIR/perf-poolsize.png"
    ((${#FAILURES[@]} == 0)) || printf 'FAILED: %s\n' "${FAILURES[@]}"
} | tee "$RESULTS_DIR/$STAMP.txt"
"$BENCH/events.sh" | tee "$RESULTS_DIR/$STAMP-events.txt" || OK=false # 10 000 event streams (docs/events.md)
[[ $OK == true ]]
