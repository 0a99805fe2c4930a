#!/usr/bin/env bash
# bench/bulk_memory.sh — memory and speed of one large POST /bulk: a throwaway PostgreSQL, one
# gateway (workers 1, max_body_bytes 256 MB), a ROWS-row (default 1 000 000, ~100 MB) JSON body,
# then the same rows as CSV, each while the gateway's VmRSS is sampled every 50 ms from
# /proc/<pid>/status (VmHWM is reset before each load); and psql \copy of the same rows first.
# Prints RSS before, peak, peak - (before + body size) and rows/s of each load, and the ratios
# JSON / \copy and CSV / \copy. Stops everything it started at the end.
# With ROUNDS > 1, rates are the best of the rounds and memory the round that grew the most.
# Usage: bench/bulk_memory.sh        Env: ROWS, ROUNDS (1; best of), SLUICE_BIN, TESTDB_DIR
#        (/tmp/bulkmem-db), TESTDB_PORT (61680), GATEWAY_PORT (61681)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROWS=${ROWS:-1000000}
ROUNDS=${ROUNDS:-1}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
export TESTDB_DIR=${TESTDB_DIR:-/tmp/bulkmem-db} TESTDB_PORT=${TESTDB_PORT:-61680}
GATEWAY_PORT=${GATEWAY_PORT:-61681}
SAMPLER_PID=""
source "$ROOT/bench/harness.sh"
bench_on_exit() { [[ -z $SAMPLER_PID ]] || kill "$SAMPLER_PID" 2>/dev/null; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; } # kB -> MB

bench_start_db
sql -c 'CREATE TABLE bench_ticks (pair text, bid numeric(12,5), ask numeric(12,5), ts timestamptz)'

say "generating $ROWS rows"
luajit "$ROOT/bench/gen_ticks.lua" "$T" "$ROWS" "$ROWS"
JSON_BODY=$T/ticks-0000.json CSV_BODY=$T/ticks-0000.csv
JSON_BYTES=$(stat -c %s "$JSON_BODY") CSV_BYTES=$(stat -c %s "$CSV_BODY")

mkdir -p "$T/gw"
cat >"$T/gw/endpoints.lua" <<'LUA'
sluice.bulk "bench_ticks" { table = "bench_ticks", columns = { "pair", "bid", "ask", "ts" } }
LUA
cat >"$T/gw/sluice.lua" <<LUA
return {
  listen = "127.0.0.1:$GATEWAY_PORT",
  workers = 1,
  max_body_bytes = 256 * 1024 * 1024,
  shutdown_timeout = 2,
  pools = { primary = { url = "$DSN", pool_size = 2, max_overflow = 0 } },
  scripts = { "$T/gw/endpoints.lua" },
}
LUA
bench_start_gateway "$T/gw/sluice.lua"
# one small load first, so the column types are read and the pool is warm before measuring
printf 'pair,bid,ask,ts\nX,1,2,2026-01-01T00:00:00Z\n' |
    curl -fsS -o /dev/null -H 'Content-Type: text/csv' --data-binary @- "$URL/bulk/bench_ticks"
sql -c 'TRUNCATE bench_ticks' -c CHECKPOINT >/dev/null

status_kb() { # FIELD -> kB from the gateway's /proc status
    local k v _
    while read -r k v _; do [[ $k == "$1:" ]] && { echo "$v"; return; }; done <"/proc/$GW_PID/status"
}

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$GW_PID/stat"; } # user + system, in clock ticks

# Samples VmRSS / RssAnon / RssFile every 50 ms until killed; writes the maxima to $1 on exit.
sampler() {
    local out=$1 rss=0 anon=0 file=0 k v _
    trap 'echo "$rss $anon $file" >"$out"; exit 0' TERM
    while :; do
        while read -r k v _; do
            case $k in
            VmRSS:) ((v > rss)) && rss=$v ;;
            RssAnon:) ((v > anon)) && anon=$v ;;
            RssFile:) ((v > file)) && file=$v ;;
            esac
        done <"/proc/$GW_PID/status"
        sleep 0.05 &
        wait $!
    done
}

FINGERPRINT=""
check_rows() { # WHO -> 0 when bench_ticks holds the same rows as the first load did
    local got
    got=$(sql -c "SELECT count(*) || ' ' || sum(bid) || ' ' || sum(ask) || ' ' || sum(extract(epoch FROM ts)) FROM bench_ticks")
    if [[ ${got%% *} != "$ROWS" ]]; then say "MISMATCH ($1): ${got%% *} rows"; return 1; fi
    if [[ -z $FINGERPRINT ]]; then FINGERPRINT=$got; elif [[ $got != "$FINGERPRINT" ]]; then
        say "MISMATCH ($1): $got vs $FINGERPRINT"; return 1
    fi
}

rate() { awk -v a="$1" -v b="$2" -v n="$ROWS" 'BEGIN { printf "%.0f", n / (b - a) }'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b > a) ? b : a }'; }

declare -A R # results: who.field
load() { # WHO CONTENT_TYPE BODY BYTES
    local who=$1 ctype=$2 body=$3 bytes=$4 before hwm code t0 t1 peak anon file r c0 c1
    sql -c 'TRUNCATE bench_ticks' -c CHECKPOINT >/dev/null
    echo 5 >"/proc/$GW_PID/clear_refs" # resets VmHWM to the current RSS
    before=$(status_kb VmRSS)
    sampler "$T/peak" &
    SAMPLER_PID=$!
    c0=$(cpu_ticks)
    t0=$EPOCHREALTIME
    code=$(curl -sS --max-time 600 -o "$T/reply" -w '%{http_code}' -H "Content-Type: $ctype" -H 'Expect:' \
        --data-binary "@$body" "$URL/bulk/bench_ticks")
    t1=$EPOCHREALTIME
    c1=$(cpu_ticks)
    hwm=$(status_kb VmHWM)
    kill -TERM "$SAMPLER_PID"
    wait "$SAMPLER_PID" || true
    SAMPLER_PID=""
    read -r peak anon file <"$T/peak"
    ((hwm > peak)) && peak=$hwm
    [[ $code == 200 ]] || { say "$who: HTTP $code $(head -c 500 "$T/reply")"; return 1; }
    check_rows "$who"
    r=$(rate "$t0" "$t1")
    say "  $who: $(cat "$T/reply")"
    say "  $who: RSS before $(mb "$before") MB, peak $(mb "$peak") MB (anon $(mb "$anon"), file $(mb "$file")), body $(mb $((bytes / 1024))) MB, peak - (before + body) $(mb $((peak - before - bytes / 1024))) MB, $r rows/s, gateway CPU $(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }') s"
    # the memory figures kept are those of the round that grew the most over before + body
    if [[ -z ${R[$who.extra]:-} ]] || ((peak - before - bytes / 1024 > R[$who.extra])); then
        R[$who.before]=$before R[$who.peak]=$peak R[$who.anon]=$anon R[$who.file]=$file
        R[$who.extra]=$((peak - before - bytes / 1024))
    fi
    R[$who.rate]=$(best "${R[$who.rate]:-}" "$r")
}

copy() {
    local t0 t1 r
    sql -c 'TRUNCATE bench_ticks' -c CHECKPOINT >/dev/null
    t0=$EPOCHREALTIME
    sql -c "\\copy bench_ticks (pair, bid, ask, ts) FROM '$T/ticks.csv' WITH (FORMAT csv)" >/dev/null
    t1=$EPOCHREALTIME
    check_rows copy
    r=$(rate "$t0" "$t1")
    say "  psql \\copy: $r rows/s"
    R[copy.rate]=$(best "${R[copy.rate]:-}" "$r")
}

for ((round = 1; round <= ROUNDS; round++)); do
    say "round $round of $ROUNDS: $ROWS rows"
    copy
    load json application/json "$JSON_BODY" "$JSON_BYTES"
    load csv text/csv "$CSV_BODY" "$CSV_BYTES"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "bulk_memory: $ROWS rows, gateway workers=1 max_body_bytes=256MB, best of $ROUNDS round(s); memory: the round that grew the most"
for who in json csv; do
    bytes=$JSON_BYTES
    [[ $who == csv ]] && bytes=$CSV_BYTES
    printf '%-4s body %6s MB  RSS before %6s MB  peak %6s MB (anon %s, file %s)  peak-(before+body) %6s MB  %8s rows/s  %s x \\copy\n' \
        "$who" "$(mb $((bytes / 1024)))" "$(mb "${R[$who.before]}")" "$(mb "${R[$who.peak]}")" \
        "$(mb "${R[$who.anon]}")" "$(mb "${R[$who.file]}")" "$(mb "${R[$who.extra]}")" "${R[$who.rate]}" \
        "$(ratio "${R[$who.rate]}" "${R[copy.rate]}")"
done
printf 'copy psql \\copy (CSV file, same rows) %s rows/s\n' "${R[copy.rate]}"
