#!/usr/bin/env bash
# bench/compare.sh — sluice beside PostgreSQL's own ceiling and a hand-written peer, in one run on
# one throwaway PostgreSQL 15 with the same SQL and the same number of database connections:
#   ceiling  pgbench -n -M prepared -c POOL -j 1 running the query with a random id; psql \copy
#   peer     bench/peer/ (node:http + node-postgres, one process per core), installed by npm into
#            PEER_CACHE; wrk -t1 -cCONNS on GET /query/quote_by_id?id=<random>; POST /bulk
#   sluice   SLUICE_BIN serve, pool_size POOL, max_overflow 0; the same wrk load and bodies
#   proxy    PgBouncer (Debian's package) in transaction pooling with POOL server connections,
#            under pgbench -M extended -c CONNS -j 1: what the reference connection pooler costs
#            per query for relaying alone (with no HTTP or JSON), beside the gateway's cost.
#            BOUNCER_MODE=session: a server connection per client, pgbench -M prepared
# ROUNDS rounds of the three in turn (the machine's drift hits all alike); every figure is the
# median over rounds. Per request or query it records the CPU time of the app (or pgbench) and
# of PostgreSQL, read from /proc, and the app's system calls (perf), which other load on the
# machine disturbs far less than req/s. Bulk: 200 000 rows as 20 JSON bodies of 10 000, one after
# another on one keep-alive connection, against one \copy of the same rows.
# Then one client of each (pgbench -c 1, wrk -c 1): the median latency of a lone caller.
# Prints a table, then one JSON line (also to OUT_JSON). Exits 1 on a non-2xx answer from
# sluice, a wrong answer, or bulk rows that differ from \copy's. Method: docs/performance.md.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
POOL=${POOL:-4}
CONNS=${CONNS:-64}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-2}
WARMUP_SECS=${WARMUP_SECS:-2}
PEER_WARMUP_SECS=${PEER_WARMUP_SECS:-4}
GATEWAY_WORKERS=${GATEWAY_WORKERS:-$(nproc)}
PEER_WORKERS=${PEER_WORKERS:-$(nproc)}
PIPELINE_DEPTH=${PIPELINE_DEPTH:-16}
BENCH_DB_DIR=${COMPARE_DB_DIR:-/tmp/sluice-compare-db}
BENCH_DB_PORT=${COMPARE_DB_PORT:-61611}
GATEWAY_PORT=${COMPARE_GATEWAY_PORT:-61612}
PEER_PORT=${COMPARE_PEER_PORT:-61613}
BOUNCER_PORT=${COMPARE_BOUNCER_PORT:-61614}
PEER_CACHE=${PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice-bench/peer}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
OUT_JSON=${OUT_JSON:-}
for v in POOL CONNS SECS ROUNDS GATEWAY_WORKERS PEER_WORKERS PIPELINE_DEPTH BENCH_DB_PORT GATEWAY_PORT PEER_PORT BOUNCER_PORT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "compare: $v must be a positive integer, got '${!v}'" >&2; exit 2; }
done

# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
[[ -x $SLUICE_BIN ]] || make -C "$ROOT" --no-print-directory -j"$(nproc)" all >&2

db_start $((CONNS + 2 * POOL + 10 > 100 ? CONNS + 2 * POOL + 10 : 100)) # room for PgBouncer in session pooling
PEER=0
peer_install && PEER=1
((PEER)) && peer_start "$POOL"
gw_start "$POOL" "$GATEWAY_WORKERS" "$PIPELINE_DEPTH"
BOUNCER=0
bouncer_start "$POOL" && BOUNCER=1
export PGB_LOG=0 # pgbench's per-transaction log would cost it CPU
say "warming up PostgreSQL (pgbench -c $POOL)"
run_pgbench "$POOL" "$WARMUP_SECS"

keep_wrk() { # WHO
    add "$1.rps" "$W_RPS"; add "$1.p50" "$W_P50"; add "$1.p99" "$W_P99"; add "$1.us_app" "$W_US_APP"
    add "$1.us_pg" "$W_US_PG"; add "$1.cpu_app" "$W_CPU_APP"; add "$1.cpu_pg" "$W_CPU_PG"
}
# perf's counting of system calls costs the counted process CPU (a few µs per request): the
# rounds run without it, and the system calls come from one more, shorter run of each.
SC_WANTED=$SYSCALLS
SYSCALLS=0
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    say "round $ROUND/$ROUNDS: POOL=$POOL, $CONNS HTTP connections, ${SECS}s each"
    run_pgbench "$POOL" "$SECS"
    add ceiling.rps "$P_TPS"; add ceiling.lat "$P_P50"; add ceiling.us_client "$P_US_CLIENT"
    add ceiling.us_pg "$P_US_PG"
    if ((PEER)); then run_wrk "peer" "$PEER_URL" "$CONNS" "$SECS" "$PEER_PID"; keep_wrk peer; fi
    run_wrk "sluice" "$GW_URL" "$CONNS" "$SECS" "$GW_PID"
    keep_wrk gateway
    if ((BOUNCER)); then
        # extended, not prepared, in transaction pooling: a statement prepared on one server
        # connection is unknown on the others (PgBouncer before 1.21 does not track them)
        mode=extended
        [[ ${BOUNCER_MODE:-transaction} == session ]] && mode=prepared
        b0=$(ticks "$BOUNCER_PID")
        PGB_PORT=$BOUNCER_PORT PGB_MODE=$mode run_pgbench "$CONNS" "$SECS"
        b1=$(ticks "$BOUNCER_PID")
        add bouncer.rps "$P_TPS"; add bouncer.lat "$P_P50"; add bouncer.us_pg "$P_US_PG"
        add bouncer.us_app "$(awk -v d="$((b1 - b0))" -v k="$CLK_TCK" -v n="$P_N" 'BEGIN { printf "%.1f", n ? d / k / n * 1e6 : 0 }')"
        say "  PgBouncer: CPU us/query $(last bouncer.us_app)"
    fi
    copy_ticks; add copy.rows_s "$B_ROWS_S"
    if ((PEER)); then post_bulk peer "$PEER_URL" json application/json; add peer.bulk "$B_ROWS_S"; fi
    post_bulk sluice "$GW_URL" json application/json; add gateway.bulk "$B_ROWS_S"
    say "  bulk rows/s: \\copy $(last copy.rows_s), peer $(last peer.bulk), sluice $(last gateway.bulk)"
done
if ((SC_WANTED)); then
    SYSCALLS=1
    sc_secs=$(((SECS + 1) / 2))
    say "system calls: one ${sc_secs}s run each, counted by perf (their CPU figures are not kept)"
    run_pgbench "$POOL" "$sc_secs"
    add ceiling.sc "$P_SC"
    if ((PEER)); then run_wrk "peer" "$PEER_URL" "$CONNS" "$sc_secs" "$PEER_PID"; add peer.sc "$W_SC"; fi
    run_wrk "sluice" "$GW_URL" "$CONNS" "$sc_secs" "$GW_PID"
    add gateway.sc "$W_SC"
fi

# One client, after the rounds: pgbench -c 1 (its median from the per-transaction log) beside
# wrk -c 1 on the peer and on sluice: what one caller waits for a query, beyond the database's
# own round trip.
ONE_SECS=$(((SECS + 1) / 2))
say "one client: ${ONE_SECS}s each"
PGB_LOG=1 run_pgbench 1 "$ONE_SECS"
add ceiling.c1_p50 "$P_P50"
if ((PEER)); then run_wrk "peer" "$PEER_URL" 1 "$ONE_SECS"; add peer.c1_p50 "$W_P50"; fi
run_wrk "sluice" "$GW_URL" 1 "$ONE_SECS"
add gateway.c1_p50 "$W_P50"
over_us() { awk -v a="$(med "$1")" -v b="$(med "$2")" 'BEGIN { if (a == "NaN" || b == "NaN" || a == "" || b == "") print "NaN"; else printf "%.0f", (a - b) * 1000 }'; }

m() { jnum "$(med "$1")"; }
r() { jnum "$(ratio "$(med "$1")" "$(med "$2")")"; }
runs() { tr ' ' '\n' <<<"${VAL[$1]:-}" | awk 'NF { printf "%s%s", n++ ? "," : "[", ($1 == "NaN" ? "null" : $1) } END { print n ? "]" : "[]" }'; }
REV=${SLUICE_REV:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
OK=true
((${#FAILURES[@]} == 0)) || OK=false
JSON=$(
    printf '{"date":"%s","rev":"%s","cores":%d,"pool":%d,"conns":%d,"secs":%d,"rounds":%d,"gateway_workers":%d,' \
        "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$REV" "$(nproc)" "$POOL" "$CONNS" "$SECS" "$ROUNDS" "$GATEWAY_WORKERS"
    printf '"ceiling_tps":%s,"ceiling_tps_runs":%s,"ceiling_latency_avg_ms":%s,"ceiling_us_client":%s,"ceiling_us_pg":%s,"ceiling_syscalls_per_query":%s,' \
        "$(m ceiling.rps)" "$(runs ceiling.rps)" "$(m ceiling.lat)" "$(m ceiling.us_client)" "$(m ceiling.us_pg)" "$(m ceiling.sc)"
    for who in peer gateway; do
        printf '"%s_rps":%s,"%s_rps_runs":%s,"%s_p50_ms":%s,"%s_p99_ms":%s,"%s_us_app":%s,"%s_us_pg":%s,"%s_syscalls_per_request":%s,"%s_cpu_app":%s,"%s_cpu_pg":%s,"%s_bulk_rows_s":%s,' \
            "$who" "$(m $who.rps)" "$who" "$(runs $who.rps)" "$who" "$(m $who.p50)" "$who" "$(m $who.p99)" "$who" "$(m $who.us_app)" \
            "$who" "$(m $who.us_pg)" "$who" "$(m $who.sc)" "$who" "$(m $who.cpu_app)" "$who" "$(m $who.cpu_pg)" "$who" "$(m $who.bulk)"
    done
    printf '"ceiling_copy_rows_s":%s,"peer_vs_ceiling":%s,"gateway_vs_ceiling":%s,"gateway_vs_peer":%s,' \
        "$(m copy.rows_s)" "$(r peer.rps ceiling.rps)" "$(r gateway.rps ceiling.rps)" "$(r gateway.rps peer.rps)"
    printf '"gateway_us_vs_pgbench_us":%s,"peer_bulk_vs_copy":%s,"gateway_bulk_vs_copy":%s,"gateway_bulk_vs_peer":%s,' \
        "$(r gateway.us_app ceiling.us_client)" "$(r peer.bulk copy.rows_s)" "$(r gateway.bulk copy.rows_s)" "$(r gateway.bulk peer.bulk)"
    printf '"bouncer_mode":"%s","bouncer_tps":%s,"bouncer_latency_avg_ms":%s,"bouncer_us_app":%s,"bouncer_us_pg":%s,' \
        "${BOUNCER_MODE:-transaction}" "$(m bouncer.rps)" "$(m bouncer.lat)" "$(m bouncer.us_app)" "$(m bouncer.us_pg)"
    printf '"bouncer_us_vs_pgbench_us":%s,"gateway_us_vs_bouncer_us":%s,"gateway_vs_bouncer":%s,' \
        "$(r bouncer.us_app ceiling.us_client)" "$(r gateway.us_app bouncer.us_app)" "$(r gateway.rps bouncer.rps)"
    printf '"ceiling_c1_p50_ms":%s,"peer_c1_p50_ms":%s,"gateway_c1_p50_ms":%s,"gateway_c1_over_ceiling_us":%s,' \
        "$(m ceiling.c1_p50)" "$(m peer.c1_p50)" "$(m gateway.c1_p50)" "$(jnum "$(over_us gateway.c1_p50 ceiling.c1_p50)")"
    printf '"failures":['
    sep=""
    for f in "${FAILURES[@]}"; do printf '%s"%s"' "$sep" "${f//\"/\'}"; sep=,; done
    printf '],"ok":%s}' "$OK"
)
row() { printf '%-22s %9s %8s %8s %9s %9s %9s %11s\n' "$@"; }
{
    echo "sluice compare.sh, rev $REV, $(nproc) cores: POOL=$POOL CONNS=$CONNS SECS=$SECS ROUNDS=$ROUNDS workers=$GATEWAY_WORKERS, PostgreSQL $PG_VERSION"
    row "" "req/s" "p50 ms" "p99 ms" "CPU us" "pg us" "syscalls" "bulk rows/s"
    row "ceiling (pgbench)" "$(med ceiling.rps)" "$(med ceiling.lat)" "(avg)" "$(med ceiling.us_client)" "$(med ceiling.us_pg)" "$(med ceiling.sc)" "$(med copy.rows_s)"
    ((PEER)) && row "peer (node)" "$(med peer.rps)" "$(med peer.p50)" "$(med peer.p99)" "$(med peer.us_app)" "$(med peer.us_pg)" "$(med peer.sc)" "$(med peer.bulk)"
    row "sluice" "$(med gateway.rps)" "$(med gateway.p50)" "$(med gateway.p99)" "$(med gateway.us_app)" "$(med gateway.us_pg)" "$(med gateway.sc)" "$(med gateway.bulk)"
    ((BOUNCER)) && row "PgBouncer (pgbench)" "$(med bouncer.rps)" "$(med bouncer.lat)" "(avg)" "$(med bouncer.us_app)" "$(med bouncer.us_pg)" "" ""
    echo "sluice / ceiling $(ratio "$(med gateway.rps)" "$(med ceiling.rps)"), sluice / peer $(ratio "$(med gateway.rps)" "$(med peer.rps)");" \
        "bulk: sluice / \\copy $(ratio "$(med gateway.bulk)" "$(med copy.rows_s)"), sluice / peer $(ratio "$(med gateway.bulk)" "$(med peer.bulk)");" \
        "gateway CPU per request / pgbench CPU per query $(ratio "$(med gateway.us_app)" "$(med ceiling.us_client)")"
    ((BOUNCER)) && echo "relaying a query: PgBouncer CPU per query / pgbench CPU per query $(ratio "$(med bouncer.us_app)" "$(med ceiling.us_client)");" \
        "sluice CPU per request / PgBouncer CPU per query $(ratio "$(med gateway.us_app)" "$(med bouncer.us_app)")"
    echo "one client, p50: pgbench $(med ceiling.c1_p50) ms, peer $(med peer.c1_p50) ms, sluice $(med gateway.c1_p50) ms" \
        "($(over_us gateway.c1_p50 ceiling.c1_p50) us above pgbench)"
    ((${#FAILURES[@]} == 0)) || printf 'FAILED: %s\n' "${FAILURES[@]}"
    printf '%s\n' "$JSON"
}
[[ -z $OUT_JSON ]] || printf '%s\n' "$JSON" >"$OUT_JSON"
[[ $OK == true ]]
