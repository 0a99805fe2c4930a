#!/usr/bin/env bash
# bench/valgrind_growth.sh — does memory grow per request? Serves N1 (1000), then N2 (10000)
# requests from build/valgrind/sluice under valgrind memcheck (a mix: GET and POST named query,
# a 400, a Lua handler, /metrics, /health), stops it with SIGTERM each time and compares the
# heap "in use at exit" and the lost bytes of the two runs. The difference per request must be ~0.
# Usage: bench/valgrind_growth.sh    Env: N1, N2, WORKERS (2), PARALLEL (4 client connections),
#        TESTDB_DIR (/tmp/vg-growth-db), TESTDB_PORT (61663), GATEWAY_PORT (61664), SLUICE_BIN,
#        OUT (bench/results/valgrind-growth-<date>.txt).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N1=${N1:-1000}
N2=${N2:-10000}
WORKERS=${WORKERS:-2}
PARALLEL=${PARALLEL:-4}
export TESTDB_DIR=${TESTDB_DIR:-/tmp/vg-growth-db} TESTDB_PORT=${TESTDB_PORT:-61663}
GATEWAY_PORT=${GATEWAY_PORT:-61664}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/valgrind/sluice}
OUT=${OUT:-$ROOT/bench/results/valgrind-growth-$(date -u +%Y-%m-%d-%H%M).txt}
command -v valgrind >/dev/null || { printf 'valgrind is not installed\n' >&2; exit 1; }
if [[ $SLUICE_BIN == "$ROOT/build/valgrind/sluice" ]]; then
    make -C "$ROOT" --no-print-directory -j"$(nproc 2>/dev/null || echo 2)" BUILD=build/valgrind OPT="-O1 -g" all >/dev/null
fi
source "$ROOT/bench/harness.sh" # $T, the private copy $T/sluice, say, the clean-up on exit

bench_start_db

mkdir -p "$T/gw"
cat >"$T/gw/endpoints.lua" <<'LUA'
sluice.query "one" { readonly = true, sql = [[ SELECT 1 AS one ]] }
sluice.query "echo" { readonly = true, sql = [[ SELECT CAST(:n AS int4) AS n, 'x' || :n AS s ]] }
sluice.endpoint "twice" {
  route = "GET /twice/{n}",
  handler = function(req)
    local r = sluice.db.query("echo", { n = req.path.n })
    return 200, { n = r.rows[1].n * 2 }
  end,
}
LUA
cat >"$T/gw/sluice.lua" <<LUA
return {
  listen = "127.0.0.1:$GATEWAY_PORT",
  workers = $WORKERS,
  shutdown_timeout = 10,
  pools = { primary = { url = "$DSN", pool_size = 4, max_overflow = 0, pool_timeout = 30 } },
  scripts = { "$T/gw/endpoints.lua" },
}
LUA

# The curl config for n requests, cycling through the mix; the expected status codes, in order,
# go to $T/want-n.
KINDS=6
write_requests() {
    local n=$1 i cfg=$T/curl-$1.cfg want=$T/want-$1
    : >"$cfg"
    : >"$want"
    for ((i = 0; i < n; i++)); do
        case $((i % KINDS)) in
        0) echo "url = \"$URL/query/one\"" >>"$cfg"; echo 200 >>"$want" ;;
        1) printf 'url = "%s/query/echo"\nrequest = "POST"\nheader = "Content-Type: application/json"\ndata = "{\\"n\\":%d}"\n' \
            "$URL" "$i" >>"$cfg"; echo 200 >>"$want" ;;
        2) echo "url = \"$URL/query/echo?n=nan$i\"" >>"$cfg"; echo 400 >>"$want" ;;
        3) echo "url = \"$URL/twice/$i\"" >>"$cfg"; echo 200 >>"$want" ;;
        4) echo "url = \"$URL/metrics\"" >>"$cfg"; echo 200 >>"$want" ;;
        5) echo "url = \"$URL/health\"" >>"$cfg"; echo 200 >>"$want" ;;
        esac
        printf 'output = "/dev/null"\nwrite-out = "%%{http_code} %s\\n"\nmax-time = 60\nsilent\n' "$i" >>"$cfg"
        ((i == n - 1)) || echo next >>"$cfg"
    done
}

# "bytes blocks" of the summary line NAME ("in use at exit", "definitely lost", ...) in log $1.
vg_field() {
    sed -n "s/.*$2: \([0-9,]*\) bytes in \([0-9,]*\) blocks.*/\1 \2/p" "$1" | tr -d , | head -n1
}

# One run: start under valgrind, serve n requests, SIGTERM, wait for the report.
declare -A R
run() {
    local n=$1 log=$T/vg-$1.log rc t0 t1 v envv=(env -u DATABASE_URL)
    write_requests "$n"
    for v in $(compgen -e); do [[ $v == SLUICE_* ]] && envv+=(-u "$v"); done
    "${envv[@]}" valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
        --show-leak-kinds=definite,indirect --num-callers=40 --suppressions="$ROOT/tests/valgrind.supp" \
        --log-file="$log" "$T/sluice" serve --config "$T/gw/sluice.lua" >"$T/gateway-$n.log" 2>&1 &
    GW_PID=$!
    for _ in $(seq 600); do
        kill -0 "$GW_PID" 2>/dev/null || { cat "$T/gateway-$n.log" "$log" >&2; say "the gateway exited"; exit 1; }
        curl -fsS --max-time 2 -o /dev/null "$URL/health/live" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS --max-time 2 -o /dev/null "$URL/health/live" || { cat "$T/gateway-$n.log" >&2; exit 1; }
    t0=$EPOCHREALTIME
    curl --parallel --parallel-max "$PARALLEL" --no-progress-meter -K "$T/curl-$n.cfg" >"$T/codes-$n" 2>"$T/curl-$n.err" || true
    t1=$EPOCHREALTIME
    # every answer must be the expected one (a request that failed would not count as served)
    sort -k2,2n "$T/codes-$n" | paste -d' ' - "$T/want-$n" | awk '$1 != $3 { print "request " $2 ": " $1 ", expected " $3 }' >"$T/bad-$n"
    if [[ -s $T/bad-$n || $(wc -l <"$T/codes-$n") -ne $n ]]; then
        say "run $n: $(wc -l <"$T/bad-$n") unexpected answers of $(wc -l <"$T/codes-$n"):"
        head "$T/bad-$n" >&2
        exit 1
    fi
    # the live heap while still serving (memcheck's gdbserver): reachable + lost + suppressed
    sleep 1
    R[$n.live]=$(vgdb --pid="$GW_PID" leak_check summary 2>/dev/null |
        sed -n 's/.*\(definitely lost\|indirectly lost\|possibly lost\|still reachable\|suppressed\): \([0-9,]*\) .*/\2/p' |
        tr -d , | awk '{ s += $1 } END { print s + 0 }')
    kill -TERM "$GW_PID"
    rc=0
    wait "$GW_PID" || rc=$?
    GW_PID=""
    R[$n.rc]=$rc
    R[$n.secs]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    R[$n.inuse]=$(vg_field "$log" "in use at exit")
    R[$n.def]=$(vg_field "$log" "definitely lost")
    R[$n.ind]=$(vg_field "$log" "indirectly lost")
    R[$n.pos]=$(vg_field "$log" "possibly lost")
    R[$n.supp]=$(vg_field "$log" "suppressed")
    R[$n.allocs]=$(sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' "$log" | tr -d ,)
    R[$n.errors]=$(sed -n 's/.*ERROR SUMMARY: \([0-9,]*\) errors.*/\1/p' "$log" | tr -d ,)
    [[ -n ${R[$n.def]} ]] || R[$n.def]="0 0"
    [[ -n ${R[$n.ind]} ]] || R[$n.ind]="0 0"
    [[ -n ${R[$n.pos]} ]] || R[$n.pos]="0 0"
    [[ -n ${R[$n.supp]} ]] || R[$n.supp]="0 0"
    if [[ $rc -ne 0 || ${R[$n.errors]} -ne 0 ]]; then
        grep -v '^==[0-9]*== *$' "$log" >&2
        say "run $n: exit $rc, ${R[$n.errors]} valgrind errors"
    fi
}

say "run 1: $N1 requests"
run "$N1"
say "run 2: $N2 requests"
run "$N2"

bytes() { echo "${1%% *}"; }
per() { awk -v d="$1" -v n="$((N2 - N1))" 'BEGIN { printf "%.3f", d / n }'; }
{
    echo "valgrind_growth: $(date -u '+%Y-%m-%d %H:%M UTC'), $(valgrind --version), build/valgrind (-O1 -g)"
    echo "gateway workers=$WORKERS pool_size=4, $PARALLEL client connections; mix of $KINDS kinds in turn:"
    echo "  GET /query/one, POST /query/echo, GET /query/echo?n=nan (400), GET /twice/{n} (Lua handler"
    echo "  + query), GET /metrics, GET /health; then SIGTERM. tests/valgrind.supp applied."
    echo "  live heap: every byte allocated, 1 s after the last request, before SIGTERM (vgdb leak_check)"
    echo
    printf '%-8s %5s %6s %11s %12s %9s %10s %10s %9s %10s %6s %4s\n' requests secs allocs/req "live heap" \
        "in use@exit" blocks "def. lost" "ind. lost" "possibly" suppressed errors exit
    for n in "$N1" "$N2"; do
        read -r iu ib <<<"${R[$n.inuse]}"
        printf '%-8s %5s %10.1f %11s %12s %9s %10s %10s %9s %10s %6s %4s\n' "$n" "${R[$n.secs]}" \
            "$(awk -v a="${R[$n.allocs]}" -v n="$n" 'BEGIN { print a / n }')" "${R[$n.live]}" "$iu" "$ib" \
            "$(bytes "${R[$n.def]}")" "$(bytes "${R[$n.ind]}")" "$(bytes "${R[$n.pos]}")" \
            "$(bytes "${R[$n.supp]}")" "${R[$n.errors]}" "${R[$n.rc]}"
    done
    echo
    d_inuse=$(($(bytes "${R[$N2.inuse]}") - $(bytes "${R[$N1.inuse]}")))
    d_live=$((${R[$N2.live]} - ${R[$N1.live]}))
    d_lost=$(($(bytes "${R[$N2.def]}") + $(bytes "${R[$N2.ind]}") - $(bytes "${R[$N1.def]}") - $(bytes "${R[$N1.ind]}")))
    d_allocs=$((${R[$N2.allocs]} - ${R[$N1.allocs]}))
    d_supp=$(($(bytes "${R[$N2.supp]}") - $(bytes "${R[$N1.supp]}")))
    d_own=$((d_inuse - d_supp))
    echo "difference ($N2 - $N1 = $((N2 - N1)) requests):"
    echo "  in use at exit:                     $d_inuse B = $(per "$d_inuse") B/request"
    echo "    of it, h2o's recycle lists (supp.): $d_supp B (bounded per thread, varies with peak load)"
    echo "    the rest:                         $d_own B = $(per "$d_own") B/request"
    echo "  definitely+indirectly lost:         $d_lost B = $(per "$d_lost") B/request"
    echo "  live heap while serving:            $d_live B = $(per "$d_live") B/request (informational: it"
    echo "    includes Lua garbage not yet collected and the recycle lists, tens of kB either way)"
    echo "  mallocs per extra request:          $(per "$d_allocs") (all freed again)"
    # One block kept per request would be >= 8 B/request; under 1 B/request is what a few
    # buffers that grow once (libpq's, jansson's) leave.
    verdict=PASS
    awk -v a="$(per "$d_own")" 'BEGIN { exit !(a < 1 && a > -1) }' || verdict=FAIL
    # the suppressed lists must stay bounded too: a pool chunk (4 kB) lost per request would not
    awk -v a="$(per "$d_supp")" 'BEGIN { exit !(a < 8 && a > -8) }' || verdict=FAIL
    [[ $d_lost -eq 0 && ${R[$N1.errors]} -eq 0 && ${R[$N2.errors]} -eq 0 ]] || verdict=FAIL
    [[ ${R[$N1.rc]} -eq 0 && ${R[$N2.rc]} -eq 0 ]] || verdict=FAIL
    echo "verdict: $verdict (in use at exit outside the recycle lists under 1 B/request, the lists"
    echo "  under 8 B/request, nothing lost outside them, no memcheck errors, both runs exit 0)"
} | tee "$OUT"
say "written to $OUT"
grep -q 'verdict: PASS' "$OUT"
