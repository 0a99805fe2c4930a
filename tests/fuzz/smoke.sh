#!/usr/bin/env bash
# The fuzz smoke test, as TAP: every libFuzzer target of tests/fuzz/ runs FUZZ_SECS (default 60)
# seconds on its seed corpus; "ok" means no crash, leak, hang or sanitizer report. `make test`
# runs it through tests/run.sh; `make fuzz-smoke` runs it alone.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
export FUZZ_SECS=${FUZZ_SECS:-60}
targets=(sqlparam params jsonw bulkparse config luastr urlpath httpheader luajson)
echo "1..${#targets[@]}"
n=0 rc=0
for t in "${targets[@]}"; do
    n=$((n + 1))
    if out=$(tests/fuzz/run.sh "$t" 2>&1); then
        echo "ok $n - fuzz $t: ${FUZZ_SECS}s, $(grep -o '[0-9]* runs' <<<"$out" | tail -1), no finding"
    else
        echo "not ok $n - fuzz $t"
        sed 's/^/# /' <<<"$out" | tail -60
        rc=1
    fi
done
exit $rc
