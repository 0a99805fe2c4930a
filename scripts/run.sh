#!/usr/bin/env bash
# `make run`: builds, starts the local development PostgreSQL (.data/) unless DATABASE_URL is
# set, applies the migrations and serves the example service in the foreground. Ctrl-C or
# SIGTERM stops the gateway (it drains in-flight requests), then the local database; the data
# stays. Env: SLUICE_CONFIG (default conf/sluice.lua), LOCALDB_PORT (scripts/localdb.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CONFIG=${SLUICE_CONFIG:-conf/sluice.lua}

make --no-print-directory deps all

own_db=
stop_db() { [ -z "$own_db" ] || scripts/localdb.sh stop; }
trap stop_db EXIT
if [ -z "${DATABASE_URL:-}" ]; then
    own_db=1
    DATABASE_URL=$(scripts/localdb.sh start)
    export DATABASE_URL
fi

build/sluice migrate --config "$CONFIG" up

# A session of its own, so that Ctrl-C reaches the gateway once: as the SIGTERM sent below.
setsid build/sluice serve --config "$CONFIG" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
status=0
while kill -0 "$pid" 2>/dev/null; do
    wait "$pid" && status=0 || status=$?
done
exit "$status"
