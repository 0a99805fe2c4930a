#!/usr/bin/env bash
# bench/run.sh — what `make bench` runs. First bench/compare.sh, the side-by-side table
# (PostgreSQL's ceiling, the Node peer and sluice at POOL=4 and 64 connections), then what that
# does not cover,
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
COMPARE_SH=${COMPARE_SH:-$BENCH/compare.sh} # the side-by-side comparison (or another script that writes the same JSON line)
COMPARE=${COMPARE:-1}              # 0: skip it
COMPARE_SECS=${COMPARE_SECS:-10}
COMPARE_ROUNDS=${COMPARE_ROUNDS:-2}
PEER=${PEER:-auto}                 # the Node peer (bench/peer/) in the sweeps: auto (when npm can install it) | 0
PEER_WARMUP_SECS=${PEER_WARMUP_SECS:-4} # after each peer start: V8 compiles its hot paths (~3x req/s)
PEER_CACHE=${PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-bench/peer}
GATEWAY_WORKERS=${GATEWAY_WORKERS:-$(nproc)}
BENCH_DB_DIR=${BENCH_DB_DIR:-/tmp/sluice-bench-db}
BENCH_DB_PORT=${BENCH_DB_PORT:-61601}
GATEWAY_PORT=${GATEWAY_PORT:-61602}
PEER_PORT=${PEER_PORT:-61603}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench/results}
PLOTS_DIR=${PLOTS_DIR:-$ROOT/docs}
STAMP=${STAMP:-$(date -u +%Y-%m-%d-%H%M)}

for v in SECS ROUNDS RSS_SECS IDLE_CONNS POOL CONNS COMPARE_SECS COMPARE_ROUNDS GATEWAY_WORKERS BENCH_DB_PORT GATEWAY_PORT PEER_PORT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bench: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done
for v in WARMUP_SECS PEER_WARMUP_SECS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench: $v must be an integer >= 0, got '${!v}'" >&2; exit 2; }
done

SYSCALLS=${SYSCALLS:-0} # perf's counting would cost the measured processes CPU
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
(($(ulimit -n) > IDLE_CONNS + 200)) || ulimit -n $((IDLE_CONNS + 1024)) 2>/dev/null ||
    die "ulimit -n is $(ulimit -n), below IDLE_CONNS=$IDLE_CONNS + 200"

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
    peer_install && PEER=1
fi

# ---------------------------------------------------------------------------------------------
# The database: scripts/testdb.sh with this run's own dir and port, set up like compare.sh's.

db_start 400 # room for pgbench -c 256 beside the pools
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

for ((round = 1; round <= ROUNDS; round++)); do
    say "round $round: bulk of $BULK_ROWS rows"
    reset_ticks
    t0=$EPOCHREALTIME
    copy_ticks
    add bulk.copy "$B_ROWS_S"
    post_bulk json "$GW_URL" json application/json; add bulk.json "$B_ROWS_S"
    post_bulk csv "$GW_URL" csv text/csv; add bulk.csv "$B_ROWS_S"
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
"$BENCH/cache.sh" | tee "$RESULTS_DIR/$STAMP-cache.txt" || OK=false # the result cache: hot key, mixed load
[[ $OK == true ]]
