#!/usr/bin/env bash
# The test suite under valgrind memcheck: builds build/valgrind/ (-O1 -g), then runs tests/run.sh
# with the unit test binaries (UNIT_WRAPPER) and every gateway the integration harness starts
# (SLUICE_WRAPPER) under memcheck. Any memory error or definite/indirect leak makes the process
# exit 99, which fails the test that observes it; the gateway's report is <its dir>/wrapper.log.
# Usage: tests/valgrind.sh [FILTER]    Env: as tests/run.sh; VALGRIND_OPTS adds valgrind options,
#        SLUICE_TEST_TIMEOUT_SCALE (4) stretches the harness's timeouts, TEST_TIMEOUT (3600).
# Specs that run the binary themselves (migrate, check, import, new, docker) run it unwrapped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=build/valgrind

command -v valgrind >/dev/null || { echo "tests/valgrind.sh: valgrind is not installed" >&2; exit 1; }
make --no-print-directory -j"$(nproc 2>/dev/null || echo 2)" BUILD=$BUILD OPT="-O1 -g" all tests >/dev/null

# --smc-check=all-non-file (the amd64 default, spelled out) covers LuaJIT's machine code, which
# lives in anonymous mappings.
VG="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect"
VG+=" --show-leak-kinds=definite,indirect --num-callers=40 --smc-check=all-non-file"
VG+=" --suppressions=$ROOT/tests/valgrind.supp"

export UNIT_DIR=$BUILD/tests SLUICE_BIN=$BUILD/sluice
export UNIT_WRAPPER="$VG -q"
export SLUICE_WRAPPER="$VG --log-file={log}"
export SLUICE_TEST_TIMEOUT_SCALE=${SLUICE_TEST_TIMEOUT_SCALE:-4}
export TEST_TIMEOUT=${TEST_TIMEOUT:-3600}
export FUZZ_SMOKE=${FUZZ_SMOKE:-0} # the libFuzzer smoke test does not run under valgrind
exec tests/run.sh "$@"
