#!/usr/bin/env bash
# The one test runner. In order: the C unit tests (cmocka), the Lua specs (busted under LuaJIT),
# then the integration specs against a real PostgreSQL and the real binary, then the fuzz smoke
# test (tests/fuzz/smoke.sh: each libFuzzer target for FUZZ_SECS, default 60). Every file speaks
# TAP; its output is shown and its ok / not ok lines counted. A file that exits non-zero without
# a `not ok`, prints no plan, or runs fewer tests than planned counts as one more failure.
# The last line is "N passed, N failed"; the exit status is 1 when anything failed.
#
# Usage: tests/run.sh [FILTER]     only files whose name contains FILTER, e.g. integration/types
# Env: UNIT_DIR (build/tests), SLUICE_BIN (build/sluice), SLUICE_TEST_DSN, TESTDB_DIR, TESTDB_PORT
#      (from scripts/testdb.sh; started here if integration specs run and none is given),
#      TEST_TIMEOUT (seconds per file, default 900), UNIT_WRAPPER (a command prefix the unit test
#      binaries run under, split on spaces, e.g. "valgrind --error-exitcode=99"; see tests/valgrind.sh).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
FILTER=${1:-}
UNIT_DIR=${UNIT_DIR:-build/tests}
read -r -a unit_wrapper <<<"${UNIT_WRAPPER:-}"
TEST_TIMEOUT=${TEST_TIMEOUT:-900}
BUSTED=(busted --lua=luajit -o TAP)

export SLUICE_ROOT=$ROOT
export SLUICE_BIN=${SLUICE_BIN:-build/sluice}
# promtool for the metrics spec: scripts/promtool.sh puts it here when it is not on PATH
[ -z "${PROMTOOL:-}" ] && [ -x "$ROOT/build/tools/promtool" ] && export PROMTOOL=$ROOT/build/tools/promtool
case $SLUICE_BIN in /*) ;; *) SLUICE_BIN=$ROOT/$SLUICE_BIN ;; esac

# The files to run, as "label<TAB>path"; the label is what FILTER matches.
files=()
add() { [[ -z $FILTER || $1 == *"$FILTER"* ]] && files+=("$1"$'\t'"$2"); }
for f in "$UNIT_DIR"/test_*; do
    [[ -f $f && -x $f ]] && add "unit/${f##*/}" "$f"
done
for f in tests/lua/*_spec.lua tests/integration/*_spec.lua; do
    [[ -f $f ]] && add "${f#tests/}" "$f"
done
# Last, the libFuzzer targets for FUZZ_SECS each (FUZZ_SMOKE=0 leaves them out).
[[ ${FUZZ_SMOKE:-1} != 0 ]] && add "fuzz/smoke" tests/fuzz/smoke.sh
if [[ ${#files[@]} -eq 0 ]]; then
    echo "tests/run.sh: no test files${FILTER:+ match '$FILTER'}" >&2
    echo "0 passed, 0 failed"
    exit 1
fi

# Integration specs need a database: use the one given, the running test database, or start
# one for this run (scripts/testdb.sh run stops it again afterwards).
if [[ -z ${SLUICE_TEST_DSN:-} ]] && printf '%s\n' "${files[@]}" | grep -q '^integration/'; then
    if scripts/testdb.sh status >/dev/null; then
        eval "$(scripts/testdb.sh env)"
    else
        exec scripts/testdb.sh run "$ROOT/tests/run.sh" "$@"
    fi
fi
export SLUICE_TEST_DSN=${SLUICE_TEST_DSN:-} TESTDB_DIR=${TESTDB_DIR:-} TESTDB_PORT=${TESTDB_PORT:-55532}

passed=0 failed=0 skipped=0
out=$(mktemp)
pid=
trap 'rm -f "$out"' EXIT
trap '[[ -n $pid ]] && kill -TERM -- -$pid 2>/dev/null; exit 130' INT TERM

# Runs one file, shows its output as it comes, and adds up its results.
run_one() {
    local label=$1 rc ok nok skip ran plan nplans extra=
    shift
    echo "# ---- $label"
    : >"$out"
    # timeout puts the test in a process group of its own: whatever the test leaves running
    # (a gateway, a client) is ended with it.
    timeout -k 10 "$TEST_TIMEOUT" "$@" </dev/null >"$out" 2>&1 &
    pid=$!
    tail -n +1 -s 0.1 --pid="$pid" -f "$out" &
    local tailpid=$!
    wait "$pid"
    rc=$?
    kill -TERM -- -"$pid" 2>/dev/null
    wait "$tailpid"
    pid=

    # TAP: "1..N" plans (cmocka prints one per group), "ok" / "not ok" lines, "# SKIP" directives.
    read -r ok nok skip ran nplans plan < <(awk '
        /^1\.\.[0-9]+/ { nplans++; plan += substr($0, 4) + 0 }
        /^(not )?ok([ \t]|$)/ {
            ran++
            if (tolower($0) ~ /^(not )?ok[^#]*# *skip/) skip++
            else if (/^not/) nok++
            else ok++
        }
        END { print ok + 0, nok + 0, skip + 0, ran + 0, nplans + 0, plan + 0 }' "$out")

    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        extra="timed out after ${TEST_TIMEOUT}s"
    elif [[ $nplans -eq 0 ]]; then
        extra="no TAP plan (exit status $rc)"
    elif [[ $plan -ne $ran ]]; then
        extra="planned $plan tests, ran $ran (exit status $rc)"
    elif [[ $rc -ne 0 && $nok -eq 0 ]]; then
        extra="exit status $rc"
    fi
    passed=$((passed + ok))
    skipped=$((skipped + skip))
    failed=$((failed + nok))
    if [[ -n $extra ]]; then
        failed=$((failed + 1))
        echo "not ok - $label: $extra"
    fi
}

for entry in "${files[@]}"; do
    label=${entry%%$'\t'*}
    path=${entry#*$'\t'}
    case $label in
    unit/*) CMOCKA_MESSAGE_OUTPUT=TAP run_one "$label" ${unit_wrapper[@]+"${unit_wrapper[@]}"} "$path" ;;
    fuzz/*) run_one "$label" "$path" ;;
    *) run_one "$label" "${BUSTED[@]}" "$path" ;;
    esac
done

summary="$passed passed, $failed failed"
[[ $skipped -eq 0 ]] || summary+=", $skipped skipped"
echo "$summary"
[[ $failed -eq 0 ]]
