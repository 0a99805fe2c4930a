#!/usr/bin/env bash
# bench/stream.sh — a large result read out: psql's \copy (SELECT ...) TO STDOUT CSV HEADER as the
# ceiling, then the gateway's streamed CSV and NDJSON (Accept headers) and its one-body JSON
# (max_rows = 0) of the same rows. For each: seconds, rows/s, the ratio to \copy, and how far
# the gateway's peak RSS (VmHWM, reset before each) rose above where it started. The streamed
# CSV must equal \copy's byte for byte. Stops everything it started at the end.
# Usage: bench/stream.sh     Env: ROWS (1 000 000), SLUICE_BIN, TESTDB_DIR (/tmp/stream-db),
#        TESTDB_PORT (61690), GATEWAY_PORT (61691)
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROWS=${ROWS:-1000000}
SLUICE_BIN=${SLUICE_BIN:-$ROOT/build/sluice}
export TESTDB_DIR=${TESTDB_DIR:-/tmp/stream-db} TESTDB_PORT=${TESTDB_PORT:-61690}
GATEWAY_PORT=${GATEWAY_PORT:-61691}
SELECT="SELECT id, pair, bid, ask, ts FROM bench_quotes ORDER BY id"
source "$ROOT/bench/harness.sh"

say "$ROWS rows"
bench_start_db
bench_quotes_table $ROWS

mkdir -p "$T/gw"
cat >"$T/gw/q.lua" <<LUA
sluice.query "all_quotes" { readonly = true, sql = [[ $SELECT ]] }
LUA
cat >"$T/gw/sluice.lua" <<LUA
return {
  listen = "127.0.0.1:$GATEWAY_PORT", workers = 1, max_rows = 0, shutdown_timeout = 2,
  pools = { primary = { url = "$DSN", pool_size = 2, max_overflow = 0, statement_timeout_ms = 0 } },
  scripts = { "$T/gw/q.lua" },
}
LUA
bench_start_gateway "$T/gw/sluice.lua"

status_kb() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$GW_PID/status"; }

# Warm the table into the cache, and the gateway's types.
sql -c "\\copy ($SELECT) TO '/dev/null' CSV" >/dev/null
curl -fsS -o /dev/null -H 'Accept: text/csv' "$URL/query/all_quotes"

t0=$EPOCHREALTIME
sql -c "\\copy ($SELECT) TO '$T/copy.csv' CSV HEADER"
t1=$EPOCHREALTIME
COPY_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
printf '%-26s %8s %12s %10s %14s\n' "" seconds rows/s "vs \\copy" "peak RSS rise"
printf '%-26s %8s %12.0f %10s %14s\n' "psql \\copy ... CSV" "$COPY_S" "$(awk -v n="$ROWS" -v s="$COPY_S" 'BEGIN { print n / s }')" 1.00 -

fetch() { # LABEL ACCEPT FILE
    local before hwm t0 t1 s
    echo 5 >"/proc/$GW_PID/clear_refs"
    before=$(status_kb VmRSS)
    t0=$EPOCHREALTIME
    curl -fsS --max-time 600 -o "$3" -H "Accept: $2" "$URL/query/all_quotes"
    t1=$EPOCHREALTIME
    hwm=$(status_kb VmHWM)
    s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    printf '%-26s %8s %12.0f %10.2f %11.1f MB\n' "$1" "$s" "$(awk -v n="$ROWS" -v s="$s" 'BEGIN { print n / s }')" \
        "$(awk -v c="$COPY_S" -v s="$s" 'BEGIN { print c / s }')" "$(awk -v a="$before" -v b="$hwm" 'BEGIN { print (b - a) / 1024 }')"
}
fetch "sluice text/csv" "text/csv" "$T/sluice.csv"
fetch "sluice application/x-ndjson" "application/x-ndjson" "$T/sluice.ndjson"
fetch "sluice JSON (one body)" "application/json" "$T/sluice.json"

if cmp -s "$T/copy.csv" "$T/sluice.csv"; then
    say "the streamed CSV equals \\copy's byte for byte ($(stat -c %s "$T/copy.csv") bytes)"
else
    say "MISMATCH: the streamed CSV differs from \\copy's"; cmp "$T/copy.csv" "$T/sluice.csv" | head -3 >&2; exit 1
fi
[[ $(wc -l <"$T/sluice.ndjson") == "$ROWS" ]] || { say "MISMATCH: NDJSON lines"; exit 1; }
