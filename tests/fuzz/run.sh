#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ (clang, with ASan and UBSan) and runs each for a
# bounded time on its seed corpus. A crash, leak, hang or sanitizer report stops that target;
# its input is left in build/fuzz/ (crash-*, leak-*, timeout-*, oom-*) and the script exits 1
# once every target has run.
#
# Usage: tests/fuzz/run.sh [TARGET...]      default: every target (sqlparam params jsonw bulkparse config
#                                           luastr urlpath httpheader luajson)
# Env:   FUZZ_SECS   seconds per target (default 10)
#        FUZZ_ARGS   extra libFuzzer flags, e.g. "-seed=1 -only_ascii=1"
#        CC          the compiler (default clang)
# Replay one input:  build/fuzz/fuzz_<target> build/fuzz/crash-<sha1>
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1

CC=${CC:-clang}
FUZZ_SECS=${FUZZ_SECS:-10}
OUT=build/fuzz
PKGS="luajit jansson libpq"

# Target -> the modules of src/*/ it links (never main) and its -max_len.
declare -A MODULES=(
    [sqlparam]="sqlparam buf util"
    [params]="pgjson pgtype jsonnum jsonw buf util"
    [jsonw]="pgjson jsonw pgtype jsonnum buf util"
    [bulkparse]="bulkparse copybin pgtype jsonnum jsonw buf util"
    [config]="config cpus log jsonw pgtype jsonnum buf util"
    [luastr]="luastr buf util"
    [urlpath]="urlpath"
    [httpheader]="httpheader"
    [luajson]="luajson jsonw pgtype jsonnum buf util"
)
declare -A MAXLEN=([sqlparam]=4096 [params]=4096 [jsonw]=4096 [bulkparse]=8192 [config]=3072 [luastr]=4096
    [urlpath]=1024 [httpheader]=512 [luajson]=2048)
ALL=(sqlparam params jsonw bulkparse config luastr urlpath httpheader luajson)

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")
for t in "${targets[@]}"; do
    [ -n "${MODULES[$t]:-}" ] || { echo "fuzz: unknown target '$t' (known: ${ALL[*]})" >&2; exit 2; }
done

command -v "$CC" >/dev/null || { echo "fuzz: $CC not found (scripts/deps.sh installs clang)" >&2; exit 2; }
PKG_CFLAGS=$(pkg-config --cflags $PKGS) || exit 2
PKG_LIBS=$(pkg-config --libs $PKGS) || exit 2

# Coverage for libFuzzer in every object; a UBSan report aborts like an ASan one.
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
INCLUDES=$(for d in src/*/; do printf -- '-I%s ' "${d%/}"; done)
CFLAGS_COMMON="-std=gnu11 -g -O1 -Wall -Wextra -Wno-unused-parameter -DH2O_USE_EPOLL=1 $INCLUDES $PKG_CFLAGS"

mkdir -p "$OUT/obj" "$OUT/corpus" || exit 1

# Rebuilds obj when its source or any header of src/ or tests/fuzz/ is newer.
stale() {
    local obj=$1 src=$2
    [ -f "$obj" ] || return 0
    [ "$src" -nt "$obj" ] && return 0
    local h
    for h in src/*/*.h; do [ "$h" -nt "$obj" ] && return 0; done
    return 1
}

build_target() {
    local t=$1 objs=() m
    for m in ${MODULES[$t]}; do
        local o=$OUT/obj/$m.o c
        c=$(echo src/*/"$m".c)
        if stale "$o" "$c"; then
            $CC $CFLAGS_COMMON $SAN -fsanitize=fuzzer-no-link -c -o "$o" "$c" || return 1
        fi
        objs+=("$o")
    done
    local bin=$OUT/fuzz_$t
    if stale "$bin" "tests/fuzz/fuzz_$t.c" || [ -n "$(find "${objs[@]}" -newer "$bin" 2>/dev/null)" ]; then
        $CC $CFLAGS_COMMON $SAN -fsanitize=fuzzer -o "$bin" "tests/fuzz/fuzz_$t.c" "${objs[@]}" \
            $PKG_LIBS -lm || return 1
    fi
}

run_target() {
    local t=$1 work=$OUT/corpus/$t log=$OUT/fuzz_$t.log
    mkdir -p "$work"
    echo "fuzz: $t for ${FUZZ_SECS}s (max_len ${MAXLEN[$t]}), log in $log"
    # New inputs go to the work corpus; the seeds in tests/fuzz/corpus stay as committed.
    # shellcheck disable=SC2086
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$OUT/fuzz_$t" -max_total_time="$FUZZ_SECS" -max_len="${MAXLEN[$t]}" -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 -artifact_prefix="$OUT/" \
        ${FUZZ_ARGS:-} "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1
    local rc=$?
    local runs
    runs=$(awk '/stat::number_of_executed_units/ {s += $2} END {print s + 0}' "$log")
    if [ $rc -ne 0 ]; then
        echo "fuzz: $t FAILED (exit $rc) after $runs runs; the report:" >&2
        grep -a -E -A30 '==ERROR|runtime error|^fuzz_[a-z]*: |Test unit written|deadly signal|ALARM' "$log" |
            head -60 >&2 || tail -20 "$log" >&2
        return 1
    fi
    echo "fuzz: $t ok, $runs runs"
}

failed=()
for t in "${targets[@]}"; do
    if ! build_target "$t"; then
        echo "fuzz: building $t failed" >&2
        failed+=("$t")
        continue
    fi
    run_target "$t" || failed+=("$t")
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: findings or failures in: ${failed[*]} (inputs in $OUT/)" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} target(s) ran clean"
