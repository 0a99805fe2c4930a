#!/usr/bin/env bash
# bench/profile.sh — where the gateway's time goes for one request of the bench query
# (GET /query/quote_by_id, pool 4, one worker), on a throwaway PostgreSQL:
#   1. callgrind: instructions per request and the top functions, over N sequential requests on
#      one keep-alive connection (c=1) and over a wrk run at 16 connections (pipelined);
#   2. perf stat: CPU time, context switches and system calls per request at c=1 and c=64;
#   3. perf record (cpu-clock samples) at c=64: the share of the kernel and of each library.
# Usage: bench/profile.sh   (knobs: N=2000 SECS=5; SLUICE_BIN; writes bench/results/profile-<stamp>.txt)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
N=${N:-2000}
SECS=${SECS:-5}
DB_DIR=${PROFILE_DB_DIR:-/tmp/sluice-profile-db}
DB_PORT=${PROFILE_DB_PORT:-61656}
GW_PORT=${PROFILE_GATEWAY_PORT:-61657}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench/results}
STAMP=${STAMP:-$(date -u +%Y-%m-%d-%H%M)}
GW_URL=http://127.0.0.1:$GW_PORT
PGBIN=/usr/lib/postgresql/15/bin

top() { awk -v n="$1" 'NR <= n'; } # reads all its input: no SIGPIPE upstream
say() { printf '== %s\n' "$*" >&2; }
die() { printf 'profile: %s\n' "$*" >&2; exit 1; }
for c in valgrind callgrind_annotate callgrind_control wrk curl luajit; do
    command -v "$c" >/dev/null || die "missing $c (apt-get install valgrind wrk curl luajit)"
done
[[ -x $SLUICE_BIN ]] || make -C "$ROOT" --no-print-directory -j"$(nproc)" all >&2
HAVE_PERF=0
perf stat -e task-clock true >/dev/null 2>&1 && HAVE_PERF=1

T=$(mktemp -d "${TMPDIR:-/tmp}/sluice-profile.XXXXXX")
GW_PID=""
DB_STARTED=0
testdb() { TESTDB_DIR=$DB_DIR TESTDB_PORT=$DB_PORT TESTDB_REPLICA_PORT= "$ROOT/scripts/testdb.sh" "$@"; }
stop_gw() {
    [[ -n $GW_PID ]] || return 0
    kill -TERM "$GW_PID" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$GW_PID" 2>/dev/null || true
    wait "$GW_PID" 2>/dev/null || true
    GW_PID=""
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_gw
    ((DB_STARTED)) && testdb stop >/dev/null 2>&1 || true
    rm -rf "$T"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting PostgreSQL on 127.0.0.1:$DB_PORT"
DB_STARTED=1
testdb start >/dev/null
printf "shared_preload_libraries = ''\n" >>"$DB_DIR/data/postgresql.conf"
testdb restart
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DB_PORT" -U postgres -d postgres -v rows=100000 \
    -f "$BENCH/schema.sql" >/dev/null

cat >"$T/endpoints.lua" <<'LUA'
sluice.query "quote_by_id" { sql = "SELECT id, pair, bid, ask, ts FROM bench_quotes WHERE id = :id", readonly = true }
LUA
cat >"$T/sluice.lua" <<LUA
return {
  listen = "127.0.0.1:$GW_PORT", workers = 1, shutdown_timeout = 2,
  pools = { primary = { url = "host=127.0.0.1 port=$DB_PORT dbname=postgres user=postgres", pool_size = 4, max_overflow = 0 } },
  scripts = { "$T/endpoints.lua" },
}
LUA
# N requests for random ids, for one curl on one keep-alive connection.
luajit -e "math.randomseed(7); for i = 1, $N do
  print('url = \"$GW_URL/query/quote_by_id?id=' .. math.random(1, 100000) .. '\"'); print('output = /dev/null') end" >"$T/urls.txt"
head -400 "$T/urls.txt" >"$T/warm.txt"

start_gw() { # CMD... ; waits up to 120 s (valgrind starts slowly)
    local envv=(env) v i
    for v in $(compgen -e); do [[ $v == SLUICE_* || $v == DATABASE_URL ]] && envv+=(-u "$v"); done
    (cd "$T" && exec "${envv[@]}" "$@" serve --config "$T/sluice.lua") >"$T/gw.log" 2>&1 &
    GW_PID=$!
    for ((i = 0; i < 1200; i++)); do
        kill -0 "$GW_PID" 2>/dev/null || { tail "$T/gw.log" >&2; die "the gateway exited"; }
        curl -fsS --max-time 2 -o /dev/null "$GW_URL/health/live" 2>/dev/null && return 0
        sleep 0.1
    done
    die "the gateway did not start"
}
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_req() { awk '/requests in/ { print $1 }' "$1"; }

OUT=$T/report.txt
{
    echo "sluice profile $STAMP: GET /query/quote_by_id, pool 4, workers 1, $(nproc) cores, $(uname -r)"
    rev=${SLUICE_REV:-unknown}
    [[ -n ${SLUICE_REV:-} || $SLUICE_BIN != "$ROOT/build/sluice" ]] || rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    echo "binary: $SLUICE_BIN ($("$SLUICE_BIN" version 2>/dev/null | head -1), rev $rev)"
} >"$OUT"

# ---- 1. callgrind ---------------------------------------------------------------------------
say "callgrind: starting the gateway under valgrind"
start_gw valgrind --tool=callgrind --callgrind-out-file="$T/cg.out" "$SLUICE_BIN"
curl -sS --config "$T/warm.txt" || die "warm-up requests failed"
callgrind_control -z "$GW_PID" >/dev/null
say "callgrind: $N sequential requests (c=1)"
curl -sS --config "$T/urls.txt" -w '%{http_code}\n' | sort | uniq -c >"$T/codes.txt"
grep -q "^ *$N 200$" "$T/codes.txt" || die "not every request was 200: $(cat "$T/codes.txt")"
callgrind_control -d "$GW_PID" >/dev/null
sleep 1
say "callgrind: wrk -c16 for $((SECS * 4))s"
callgrind_control -z "$GW_PID" >/dev/null
wrk -t1 -c16 -d"$((SECS * 4))s" -s "$BENCH/quote_by_id.lua" "$GW_URL" >"$T/wrk-cg.out" 2>&1
callgrind_control -d "$GW_PID" >/dev/null
sleep 1
CG16_REQ=$(wrk_req "$T/wrk-cg.out")
stop_gw
mapfile -t DUMPS < <(ls -1 "$T"/cg.out.* 2>/dev/null | grep -E '\.[0-9]+$' | sort -t. -k3n)
((${#DUMPS[@]} >= 2)) || DUMPS=($(ls -1tr "$T"/cg.out* | tail -3 | top 2))
# Function lines of callgrind_annotate: "1,234  file:function [lib]" -> "1234<TAB>function<TAB>lib".
functions() { # DUMP INCLUSIVE(yes|no)
    callgrind_annotate --auto=no --show-percs=no --threshold=100 --inclusive="$2" "$1" 2>/dev/null |
        awk 'seen && $1 ~ /^[0-9,]+$/ && NF >= 2 {
                 n = $1; gsub(",", "", n); $1 = ""; lib = "(inlined)"
                 if (match($0, /\[[^]]*\]$/)) { lib = substr($0, RSTART + 1, RLENGTH - 2); sub(/.*\//, "", lib); $0 = substr($0, 1, RSTART - 1) }
                 fn = $0; sub(/^ +/, "", fn); sub(/ +$/, "", fn); sub(/.*:/, "", fn)
                 printf "%s\t%s\t%s\n", n, fn, lib }
             /file:function/ { seen = 1 }'
}
annotate() { # DUMP REQUESTS TITLE
    local total
    total=$(callgrind_annotate --auto=no "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1; exit }')
    # Thread entry points carry the whole run even in the exclusive list; inlined copies repeat
    # their function in the inclusive one.
    functions "$1" no | awk -F'\t' '$2 != "clone" && $2 != "start_thread"' >"$T/excl.tsv"
    functions "$1" yes | awk -F'\t' '$3 != "(inlined)"' >"$T/incl.tsv"
    echo
    echo "== $3: $(awk -v t="$total" -v n="$2" 'BEGIN { printf "%.0f", t / n }') instructions per request ($total over $2 requests)"
    echo "   by library (own instructions):"
    awk -F'\t' -v t="$total" -v r="$2" '{ s[$3] += $1 } END { for (l in s) printf "%s\t%s\n", s[l], l }' "$T/excl.tsv" |
        sort -rn | top 8 | awk -F'\t' -v t="$total" -v r="$2" '{ printf "   %6.2f%%  %7.0f/req  %s\n", 100 * $1 / t, $1 / r, $2 }'
    echo "   top functions by own instructions:"
    top 25 <"$T/excl.tsv" | awk -F'\t' -v t="$total" -v r="$2" '{ printf "   %6.2f%%  %7.0f/req  %s  [%s]\n", 100 * $1 / t, $1 / r, $2, $3 }'
    echo "   top functions with what they call (inclusive):"
    top 40 <"$T/incl.tsv" | awk -F'\t' -v t="$total" -v r="$2" '{ printf "   %6.2f%%  %7.0f/req  %s  [%s]\n", 100 * $1 / t, $1 / r, $2, $3 }'
}
{
    annotate "${DUMPS[0]}" "$N" "callgrind, c=1 ($N requests on one keep-alive connection)"
    annotate "${DUMPS[1]}" "$CG16_REQ" "callgrind, c=16 (wrk, $CG16_REQ requests)"
} >>"$OUT"

# ---- 2. perf stat and perf record on the native binary ---------------------------------------
if ((HAVE_PERF)); then
    start_gw "$SLUICE_BIN"
    curl -sS --config "$T/warm.txt"
    EVENTS=task-clock,context-switches,raw_syscalls:sys_enter
    for s in epoll_wait read recvfrom write writev sendto epoll_ctl futex; do
        perf stat -e "syscalls:sys_enter_$s" true >/dev/null 2>&1 && EVENTS+=",syscalls:sys_enter_$s"
    done
    for c in 1 64; do
        say "perf stat: ${SECS}s in the middle of a wrk -c$c run"
        wrk -t1 -c"$c" -d"$((SECS + 3))s" -s "$BENCH/quote_by_id.lua" "$GW_URL" >"$T/wrk-ps.out" 2>&1 &
        WRK=$!
        sleep 1.5
        perf stat -x, -e "$EVENTS" -p "$GW_PID" -o "$T/stat.txt" -- sleep "$SECS" 2>/dev/null || true
        wait "$WRK" || true
        rps=$(wrk_rps "$T/wrk-ps.out")
        # Requests in the window: one writev per response (h2o writes a small reply in one call);
        # wrk's average rate times the window is the fallback.
        n=$(awk -F, '$3 == "syscalls:sys_enter_writev" { print $1 }' "$T/stat.txt")
        [[ -n $n && $n != 0 && $n != "<not counted>" ]] || n=$(awk -v r="$rps" -v s="$SECS" 'BEGIN { print r * s }')
        {
            echo
            echo "== perf stat, c=$c: ${SECS}s while wrk ran at $rps req/s; per request (requests = writev calls = $n):"
            awk -F, -v n="$n" 'NF > 3 && $1 ~ /^[0-9.]+$/ {
                v = $1 / n; ev = $3; if (ev == "task-clock") printf "   %-34s %8.1f us\n", "CPU (task-clock)", v * 1000;
                else printf "   %-34s %8.3f\n", ev, v }' "$T/stat.txt"
        } >>"$OUT"
    done
    say "perf record: cpu-clock samples for ${SECS}s at c=64"
    wrk -t1 -c64 -d"$((SECS + 3))s" -s "$BENCH/quote_by_id.lua" "$GW_URL" >/dev/null 2>&1 &
    WRK=$!
    sleep 1.5
    perf record -q -e cpu-clock -F 4000 -p "$GW_PID" -o "$T/perf.data" -- sleep "$SECS" >/dev/null 2>&1 || true
    wait "$WRK" || true
    {
        echo
        echo "== perf record, c=64: share of the gateway's CPU samples by library (kernel = syscalls and network stack)"
        perf report -i "$T/perf.data" --stdio --sort dso 2>/dev/null | grep -E '^ +[0-9]' | top 12 | sed 's/^/  /'
        echo "   top symbols:"
        perf report -i "$T/perf.data" --stdio --sort dso,symbol 2>/dev/null | grep -E '^ +[0-9]' | top 30 | sed 's/^/  /'
    } >>"$OUT"
    stop_gw
fi

mkdir -p "$RESULTS_DIR"
cp "$OUT" "$RESULTS_DIR/profile-$STAMP.txt"
cat "$OUT"
