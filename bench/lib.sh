# bench/lib.sh — what bench/run.sh and bench/compare.sh share: process tracking by PID, figures
# by round with medians, CPU time from /proc, system calls from perf, the load generators (wrk,
# pgbench), the gateway, the Node peer (bench/peer/) and PgBouncer, the bulk loads. Sourced after
# the caller set ROOT, BENCH, the ports, SLUICE_BIN, WARMUP_SECS, CONNS, PEER_WARMUP_SECS and PEER_CACHE.

QUOTE_ROWS=100000 # fixed in bench/quote_by_id.lua too
BULK_ROWS=200000
BULK_BATCH=10000
PGBIN=/usr/lib/postgresql/15/bin
GW_URL=http://127.0.0.1:$GATEWAY_PORT
PEER_URL=http://127.0.0.1:$PEER_PORT

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

# ---------------------------------------------------------------------------------------------
# Processes: everything started here is tracked by PID and stopped by PID.

T=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
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

# shellcheck source=bench/cputicks.sh
source "$(dirname "${BASH_SOURCE[0]}")/cputicks.sh"
PG_PID=""

# CPU seconds of the children this script waited for (pgbench, once run_bounded reaped it):
# cutime and cstime of /proc/$$/stat, the script's own process even from a subshell.
child_cpu_s() {
    local st f
    st=$(cat "/proc/$$/stat")
    read -ra f <<<"${st##*) }"
    awk -v t="$((f[13] + f[14]))" -v k="$CLK_TCK" 'BEGIN { printf "%.3f\n", t / k }'
}

# System calls of running processes, counted by perf while a measurement runs (SYSCALLS=1 and
# perf usable; else the figure is NaN). sc_stop sets SC_PER with the count divided by N.
SYSCALLS=${SYSCALLS:-$(perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1 && echo 1 || echo 0)}
SC_PERF=""
sc_start() { # PID...
    SC_PERF=""
    ((SYSCALLS)) || return 0
    local pids=() p
    for p in "$@" $(for p in "$@"; do pgrep -P "$p"; done 2>/dev/null || true); do pids+=("$p"); done
    perf stat -x, -e raw_syscalls:sys_enter -p "$(IFS=,; echo "${pids[*]}")" -o "$T/sc.txt" >/dev/null 2>&1 &
    SC_PERF=$!
    track "$SC_PERF"
    sleep 0.2 # attached before the load starts
}
sc_stop() { # N
    SC_PER=NaN
    [[ -n $SC_PERF ]] || return 0
    kill -INT "$SC_PERF" 2>/dev/null || true
    wait "$SC_PERF" 2>/dev/null || true
    untrack "$SC_PERF"
    SC_PERF=""
    SC_PER=$(awk -F, -v n="$1" '$3 ~ /raw_syscalls:sys_enter/ && $1 ~ /^[0-9]+$/ && n > 0 { printf "%.2f", $1 / n }' "$T/sc.txt")
    [[ -n $SC_PER ]] || SC_PER=NaN
}

# ---------------------------------------------------------------------------------------------
# Load generators.

# wrk on /query/quote_by_id; sets W_RPS (2xx per second), W_P50, W_P99 (ms), W_REQ and W_ERR
# (non-2xx + socket errors). Errors fail the run when they come from sluice; the peer's (wrk's
# 2 s timeout when it falls behind at high concurrency) are only recorded.
# With APP_PID it also sets W_US_APP and W_US_PG: CPU microseconds per request in the app and in
# PostgreSQL, which the machine's other load disturbs far less than req/s; W_CPU_APP, W_CPU_PG
# (cores used) and W_SC (the app's system calls per request, NaN without perf).
run_wrk() { # TAG BASE_URL CONNS SECS [APP_PID]
    local tag=$1 url=$2 conns=$3 secs=$4 app=${5:-} line a0=0 a1=0 p0=0 p1=0
    if ((WARMUP_SECS > 0 && ROUND <= 1)); then
        run_bounded "$T/wrk-warm.out" $((WARMUP_SECS + 30)) \
            wrk -t1 -c"$conns" -d"${WARMUP_SECS}s" -s "$BENCH/quote_by_id.lua" "$url" || true
    fi
    [[ -z $app ]] || sc_start "$app"
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
    W_CPU_APP=$(awk -v d="$((a1 - a0))" -v k="$CLK_TCK" -v s="$dur" 'BEGIN { printf "%.2f", d / k / (s / 1e6) }')
    W_CPU_PG=$(awk -v d="$((p1 - p0))" -v k="$CLK_TCK" -v s="$dur" 'BEGIN { printf "%.2f", d / k / (s / 1e6) }')
    W_SC=NaN
    [[ -z $app ]] || { sc_stop "$req"; W_SC=$SC_PER; }
    say "  $tag: $W_RPS req/s, p50 $W_P50 ms, p99 $W_P99 ms${app:+; CPU us/request: app $W_US_APP, postgres $W_US_PG; syscalls/request $W_SC}"
}

# pgbench -M prepared on the same SELECT over TCP; sets P_TPS, P_P50, P_P99 (ms, from the
# per-transaction log, so they compare with wrk's percentiles). pgbench's -T includes opening
# its connections, which takes long with many clients on a busy machine (a backend start cost
# 5-90 ms here), so -T gets an allowance from the connection time seen so far; tps and the log
# exclude that phase. A run that ended before any transaction is retried with more allowance.
# Also sets P_US_CLIENT and P_US_PG (CPU microseconds per query in pgbench and in PostgreSQL)
# and P_SC (pgbench's system calls per query). PGB_LOG=0: no per-transaction log (it costs
# pgbench CPU), P_P50 and P_P99 are then pgbench's average latency.
CONN_MS=20
ROUND=1 # the round of the current point: wrk warms up in the first only
# PGB_PORT and PGB_MODE (the database's port, prepared) point it elsewhere, such as at
# PgBouncer; P_N is the number of queries it ran.
run_pgbench() { # CLIENTS SECS
    local clients=$1 secs=$2 pgb try allow conn c0 c1 p0 p1 n log=()
    ((${PGB_LOG:-1})) && log=(-l --log-prefix="$T/pgblog")
    ((SYSCALLS)) && pgb=(perf stat -x, -e raw_syscalls:sys_enter -o "$T/scpgb.txt" --)
    pgb+=("$PGBIN/pgbench" -n -M "${PGB_MODE:-prepared}" -c "$clients" -j 1 -h 127.0.0.1
          -p "${PGB_PORT:-$BENCH_DB_PORT}" -U postgres -f "$T/quote_by_id.sql")
    for ((try = 1; try <= 3; try++)); do
        allow=$(((clients * CONN_MS + 999) / 1000 + 1))
        rm -f "$T"/pgblog.*
        c0=$(child_cpu_s)
        p0=$(ticks "$PG_PID")
        run_bounded "$T/pgbench.out" $((secs + allow + 60)) "${pgb[@]}" -T $((secs + allow)) "${log[@]}" postgres || true
        p1=$(ticks "$PG_PID")
        c1=$(child_cpu_s)
        P_TPS=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$T/pgbench.out")
        conn=$(awk '/^initial connection time = / { printf "%.0f", $5; exit }' "$T/pgbench.out")
        [[ -n $conn ]] && CONN_MS=$(((conn * 3 / 2) / clients > 20 ? (conn * 3 / 2) / clients : 20))
        [[ -n $P_TPS ]] && break
        CONN_MS=$((CONN_MS * 4))
        say "  pgbench -c $clients ended while connecting; retrying with more time"
    done
    [[ -n $P_TPS ]] || die "could not read pgbench's output: $(cat "$T/pgbench.out")"
    n=$(awk '/^number of transactions actually processed: / { print $6; exit }' "$T/pgbench.out")
    P_N=$n
    P_US_CLIENT=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN { printf "%.1f", n ? (b - a) / n * 1e6 : 0 }')
    P_US_PG=$(awk -v d="$((p1 - p0))" -v k="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f", n ? d / k / n * 1e6 : 0 }')
    P_SC=NaN
    if ((SYSCALLS)); then
        P_SC=$(awk -F, -v n="$n" '$3 ~ /raw_syscalls:sys_enter/ && $1 ~ /^[0-9]+$/ && n > 0 { printf "%.2f", $1 / n }' "$T/scpgb.txt")
    fi
    if ((${PGB_LOG:-1})); then
        read -r P_P50 P_P99 < <(cat "$T"/pgblog.* | awk '{ print $3 }' | sort -n |
            awk '{ a[NR] = $1 } END { i = int(NR * 0.5); j = int(NR * 0.99); if (i < 1) i = 1; if (j < 1) j = 1;
                                      printf "%.3f %.3f\n", a[i] / 1000, a[j] / 1000 }')
    else
        P_P50=$(awk '/^latency average = / { print $4; exit }' "$T/pgbench.out") P_P99=$P_P50
    fi
    rm -f "$T"/pgblog.*
    say "  ceiling (pgbench -c $clients): $P_TPS tps, p50 $P_P50 ms, p99 $P_P99 ms (connecting took ${conn:-?} ms); CPU us/query: pgbench $P_US_CLIENT, postgres $P_US_PG; syscalls/query $P_SC"
}

# ---------------------------------------------------------------------------------------------
# Servers.

# 0 once URL answers, 1 when PID exits first or after TRIES tenths of a second.
wait_up() { # PID URL TRIES
    local i
    for ((i = 0; i < $3; i++)); do
        kill -0 "$1" 2>/dev/null || return 1
        curl -fsS --max-time 1 -o /dev/null "$2" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

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
        if wait_up "$GW_PID" "$GW_URL/health/live" 100; then
            check_answer gateway "$GW_URL"
            say "gateway up: pool_size=$pool workers=$workers pipeline_depth=$depth (pid $GW_PID)"
            return 0
        fi
        stop_pid "$GW_PID"
        GW_PID=""
        grep -qi 'already in use' "$T/gateway.log" || break
        sleep 2
    done
    tail -20 "$T/gateway.log" >&2
    die "the gateway did not start"
}
gw_stop() { if [[ -n $GW_PID ]]; then stop_pid "$GW_PID"; GW_PID=""; fi; }

BOUNCER_PID=""
# PgBouncer (Debian's package) in front of the same database. BOUNCER_MODE=transaction (the
# default) pools the way the gateway does: POOL server connections shared by every client.
# BOUNCER_MODE=session gives each of the CONNS clients a server connection of its own, PgBouncer's
# cheapest way to relay. It refuses to run as root, so as root it runs as postgres. Returns 1
# (and says why) when it cannot.
bouncer_start() { # POOL
    local dir=$T/bouncer run=() i size=$1
    [[ ${BOUNCER_MODE:-transaction} == session ]] && size=$CONNS
    command -v pgbouncer >/dev/null || { say "pgbouncer is missing (scripts/deps.sh bench installs it): no PgBouncer row"; return 1; }
    mkdir -p "$dir"
    cat >"$dir/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$BENCH_DB_PORT dbname=postgres user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = ${BOUNCER_MODE:-transaction}
default_pool_size = $size
max_client_conn = 1000
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    echo '"postgres" ""' >"$dir/users.txt"
    if (($(id -u) == 0)); then
        chmod o+x "$T"
        chown -R postgres "$dir"
        run=(runuser -u postgres --)
    fi
    "${run[@]}" pgbouncer -d "$dir/pgbouncer.ini" >"$dir/start.log" 2>&1 || true
    for ((i = 0; i < 50; i++)); do
        BOUNCER_PID=$(cat "$dir/pgbouncer.pid" 2>/dev/null || true)
        [[ -n $BOUNCER_PID ]] && "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$BOUNCER_PORT" -U postgres -d postgres \
            -c 'SELECT 1' >/dev/null 2>&1 && { track "$BOUNCER_PID"; return 0; }
        sleep 0.1
    done
    cat "$dir/start.log" "$dir/pgbouncer.log" >&2 2>/dev/null || true
    [[ -z $BOUNCER_PID ]] || kill "$BOUNCER_PID" 2>/dev/null || true
    BOUNCER_PID=""
    fail "PgBouncer did not start; it is left out"
    return 1
}

# Installs the peer (bench/peer/) into PEER_CACHE with npm, never into the repository; again
# only when its package files changed. Returns 1 (and says why) when it cannot.
peer_install() {
    local src=$BENCH/peer stamp
    command -v node >/dev/null && command -v npm >/dev/null || { say "node and npm are missing: no peer"; return 1; }
    (($(node -p 'process.versions.node.split(".")[0]') >= 18)) || { say "node is older than 18: no peer"; return 1; }
    stamp=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
    mkdir -p "$PEER_CACHE"
    if [[ $(cat "$PEER_CACHE/.stamp" 2>/dev/null) != "$stamp" || ! -d $PEER_CACHE/node_modules ]]; then
        say "installing the Node peer's dependencies into $PEER_CACHE"
        cp "$src/package.json" "$src/package-lock.json" "$PEER_CACHE/"
        (cd "$PEER_CACHE" && npm ci --omit=dev --no-audit --no-fund >&2) || { say "npm ci failed: no peer"; return 1; }
        echo "$stamp" >"$PEER_CACHE/.stamp"
    fi
    cp "$src/server.js" "$PEER_CACHE/"
}

PEER_PID=""
peer_start() { # POOL
    peer_stop
    env DATABASE_URL="postgres://postgres@127.0.0.1:$BENCH_DB_PORT/postgres" HOST=127.0.0.1 PORT="$PEER_PORT" \
        POOL="$1" WORKERS="${PEER_WORKERS:-$(nproc)}" node "$PEER_CACHE/server.js" >"$T/peer.log" 2>&1 &
    PEER_PID=$!
    track "$PEER_PID"
    if wait_up "$PEER_PID" "$PEER_URL/health" 150; then
        check_answer peer "$PEER_URL"
        ((PEER_WARMUP_SECS == 0)) || run_bounded "$T/wrk-peerwarm.out" $((PEER_WARMUP_SECS + 30)) \
            wrk -t1 -c"$CONNS" -d"${PEER_WARMUP_SECS}s" -s "$BENCH/quote_by_id.lua" "$PEER_URL" || true
        return 0
    fi
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
# The database and the bulk loads.

# Starts PostgreSQL 15 with scripts/testdb.sh in BENCH_DB_DIR on BENCH_DB_PORT (durability off,
# no pg_stat_statements: it costs every query a little), creates bench/schema.sql's tables,
# pgbench's script of the query and the bulk rows (bench/gen_ticks.lua); sets PG_PID, PG_VERSION.
db_start() { # MAX_CONNECTIONS
    say "starting PostgreSQL on 127.0.0.1:$BENCH_DB_PORT ($BENCH_DB_DIR)"
    DB_STARTED=1
    testdb start >/dev/null
    printf "# bench\nshared_preload_libraries = ''\nmax_connections = %d\n" "$1" >>"$BENCH_DB_DIR/data/postgresql.conf"
    testdb restart
    PG_PID=$(head -1 "$BENCH_DB_DIR/data/postmaster.pid")
    sql -v rows="$QUOTE_ROWS" -f "$BENCH/schema.sql" >/dev/null
    PG_VERSION=$(sql -c 'SHOW server_version')
    printf '\\set id random(1, %d)\nSELECT id, pair, bid, ask, ts FROM bench_quotes WHERE id = :id;\n' "$QUOTE_ROWS" >"$T/quote_by_id.sql"
    say "generating $BULK_ROWS tick rows"
    luajit "$BENCH/gen_ticks.lua" "$T" "$BULK_ROWS" "$BULK_BATCH"
}
sql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_DB_PORT" -U postgres -d postgres -At "$@"; }

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
# psql \copy of all the rows -> B_ROWS_S (client start included)
copy_ticks() {
    local t0 t1
    reset_ticks
    t0=$EPOCHREALTIME
    sql -c "\\copy bench_ticks (pair, bid, ask, ts) FROM '$T/ticks.csv' WITH (FORMAT csv)" >/dev/null
    t1=$EPOCHREALTIME
    B_ROWS_S=$(awk -v a="$t0" -v b="$t1" -v n="$BULK_ROWS" 'BEGIN { printf "%.0f", n / (b - a) }')
    check_ticks copy || B_ROWS_S=NaN
    reset_ticks
}
# The bodies of BULK_BATCH rows POSTed to BASE_URL/bulk/bench_ticks one after another on one
# keep-alive connection -> B_ROWS_S; checks the rows against \copy's.
post_bulk() { # WHO BASE_URL EXT CONTENT_TYPE
    local who=$1 url=$2 ext=$3 ctype=$4 args=() f t0 t1 codes
    for f in "$T"/ticks-*."$ext"; do
        ((${#args[@]})) && args+=(--next)
        args+=(-sS --max-time 120 -o /dev/null -w '%{http_code}\n' -H "Content-Type: $ctype" -H 'Expect:'
            --data-binary "@$f" "$url/bulk/bench_ticks")
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
