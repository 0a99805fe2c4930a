# bench/harness.sh — what the standalone benchmark scripts (stream.sh, bulk_memory.sh, cache.sh, events.sh, valgrind_growth.sh)
# share, sourced after they set ROOT, SLUICE_BIN, TESTDB_DIR, TESTDB_PORT and GATEWAY_PORT: a
# private temp dir $T, a throwaway PostgreSQL, one gateway started from a copy of the binary
# without the caller's SLUICE_* variables, and a cleanup on exit that stops both (bench_on_exit,
# when the script defines it, runs first).
DSN="host=127.0.0.1 port=$TESTDB_PORT user=postgres dbname=postgres"
URL="http://127.0.0.1:$GATEWAY_PORT"
T=$(mktemp -d "/tmp/$(basename "$0" .sh).XXXXXX")
GW_PID=""

say() { printf '%s\n' "$*" >&2; }
# shellcheck source=bench/cputicks.sh
source "$ROOT/bench/cputicks.sh"
sql() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$DSN" "$@"; }

bench_cleanup() {
    if declare -F bench_on_exit >/dev/null; then bench_on_exit || true; fi
    if [[ -n $GW_PID ]] && kill -0 "$GW_PID" 2>/dev/null; then
        kill -TERM "$GW_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$GW_PID" 2>/dev/null || true
    fi
    "$ROOT/scripts/testdb.sh" stop >/dev/null 2>&1 || true
    rm -rf "$T"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -x $SLUICE_BIN ]] || { say "no gateway binary at $SLUICE_BIN (make first)"; exit 1; }
cp "$SLUICE_BIN" "$T/sluice" # a private copy: a rebuild meanwhile does not touch the run

# Starts the test database (scripts/testdb.sh start).
bench_start_db() {
    say "starting PostgreSQL in $TESTDB_DIR on port $TESTDB_PORT"
    "$ROOT/scripts/testdb.sh" start >/dev/null
}

# Creates bench_quotes with ids 1..$1 (one EURUSD quote each, a millisecond apart).
bench_quotes_table() {
    sql -c "CREATE TABLE bench_quotes AS SELECT g AS id, 'EURUSD'::text AS pair,
          round((1.08 + g % 1000 / 1e5)::numeric, 5) AS bid, round((1.0801 + g % 1000 / 1e5)::numeric, 5) AS ask,
          timestamptz '2026-01-01 00:00:00+00' + g * interval '1 ms' AS ts
        FROM generate_series(1, $1) AS g" -c "ALTER TABLE bench_quotes ADD PRIMARY KEY (id)" -c "VACUUM ANALYZE bench_quotes"
}

# Starts the gateway with the config file $1 (its log: $T/gateway.log) and waits until
# /health/live answers; exits with the log if it does not start.
bench_start_gateway() {
    local envv=(env) v
    for v in $(compgen -e); do [[ $v == SLUICE_* || $v == DATABASE_URL ]] && envv+=(-u "$v"); done
    "${envv[@]}" "$T/sluice" serve --config "$1" >"$T/gateway.log" 2>&1 &
    GW_PID=$!
    for _ in $(seq 100); do
        curl -fsS --max-time 1 -o /dev/null "$URL/health/live" 2>/dev/null && return 0
        kill -0 "$GW_PID" 2>/dev/null || { cat "$T/gateway.log" >&2; exit 1; }
        sleep 0.1
    done
    say "the gateway did not start"; cat "$T/gateway.log" >&2; exit 1
}
