#!/usr/bin/env bash
# The persistent development PostgreSQL 15 behind `make run`: data under .data/ in the repo,
# created once (with a database `sluice`), started and stopped on demand, never wiped.
#
# Usage: scripts/localdb.sh start|stop|status
#   start   initdb once, start if down, create database sluice once; prints the DATABASE_URL
#           (postgresql://postgres@127.0.0.1:55433/sluice)
#   stop    stop the server; the data stays
#   status  prints "running URL" (exit 0) or "stopped" (exit 3)
# Environment: LOCALDB_DIR (default .data), LOCALDB_PORT (default 55433).
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PORT=${LOCALDB_PORT:-55433}
URL="postgresql://postgres@127.0.0.1:$PORT/sluice"

if [ "$(id -u)" -eq 0 ]; then
    # initdb and pg_ctl refuse to run as root; cd / since the caller's directory may be closed to postgres.
    as_pg() { (cd / && runuser -u postgres -- "$@"); }
else
    as_pg() { "$@"; }
fi

reachable() {
    local d=$1
    while [ ! -d "$d" ]; do d=$(dirname "$d"); done
    as_pg test -x "$d" 2>/dev/null
}
D=${LOCALDB_DIR:-$ROOT/.data}
case $D in /*) ;; *) D=$PWD/$D ;; esac
if ! reachable "$(dirname "$D")"; then
    # A checkout the postgres user cannot enter (e.g. under /root): keep the data in /var/tmp,
    # one folder per checkout.
    D=/var/tmp/sluice-localdb-$(printf '%s' "$D" | cksum | cut -d' ' -f1)
fi

die() {
    echo "localdb: $*" >&2
    exit 1
}

is_running() { [ -f "$D/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$D/data" status >/dev/null 2>&1; }

psql_pg() { as_pg psql -qAtX -h "$D" -p "$PORT" -U postgres -v ON_ERROR_STOP=1 "$@"; }

cmd_start() {
    if [ ! -f "$D/data/PG_VERSION" ]; then
        echo "localdb: creating a PostgreSQL cluster in $D" >&2
        mkdir -p "$D"
        [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$D"
        as_pg "$PGBIN/initdb" -D "$D/data" -U postgres -A trust -E UTF8 --no-locale \
            >"$D/initdb.log" 2>&1 || { cat "$D/initdb.log" >&2; die "initdb failed"; }
        cat >>"$D/data/postgresql.conf" <<CONF

# scripts/localdb.sh: development server for make run (the port comes from pg_ctl -o)
listen_addresses = '127.0.0.1'
unix_socket_directories = '$D'
max_connections = 200
shared_preload_libraries = 'pg_stat_statements'
CONF
    fi
    if ! is_running; then
        as_pg "$PGBIN/pg_ctl" -D "$D/data" -l "$D/server.log" -o "-p $PORT" -w -t 60 start >/dev/null ||
            { tail -n 20 "$D/server.log" >&2 || true; die "server did not start (log: $D/server.log)"; }
    fi
    if [ "$(psql_pg -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'sluice'")" != 1 ]; then
        psql_pg -d postgres -c 'CREATE DATABASE sluice'
        psql_pg -d sluice -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements'
    fi
    echo "$URL"
}

cmd_stop() {
    is_running || return 0
    as_pg "$PGBIN/pg_ctl" -D "$D/data" -m fast -w -t 60 stop >/dev/null
}

cmd_status() {
    if is_running; then
        echo "running $URL"
    else
        echo stopped
        return 3
    fi
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
