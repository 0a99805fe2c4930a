#!/usr/bin/env bash
# A throwaway PostgreSQL 15 for the tests: created fresh by `start`, deleted by `stop`.
#
# Usage: scripts/testdb.sh start|stop|restart|status|down|up|env|run CMD [ARG..]
#   start    wipe, initdb, start; prints the DSN (host=127.0.0.1 port=55532 user=postgres dbname=postgres)
#   stop     stop the server (also a half-started one) and delete everything
#   restart  restart the running server, keeping its data (pg_ctl restart -m fast)
#   down/up  stop the server keeping its data / start it again (fault tests)
#   status   prints "running DSN" (exit 0) or "stopped" (exit 3)
#   env      prints `export` lines for TESTDB_DIR, TESTDB_PORT and SLUICE_TEST_DSN
#   run      start, run CMD with those variables exported, always stop; exits with CMD's status
# Environment: TESTDB_DIR (default build/testdb), TESTDB_PORT (default 55532),
#   TESTDB_REPLICA_PORT (unset: no replica; set: a streaming replica on that port too, with
#   SLUICE_TEST_REPLICA_DSN). TESTDB_DIR holds data/, replica/, *.log and the unix socket.
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
PORT=${TESTDB_PORT:-55532}
RPORT=${TESTDB_REPLICA_PORT:-}
DSN="host=127.0.0.1 port=$PORT user=postgres dbname=postgres"
RDSN=${RPORT:+host=127.0.0.1 port=$RPORT user=postgres dbname=postgres}

source "$ROOT/scripts/pgdir.sh"
D=$(pg_dir "${TESTDB_DIR:-$ROOT/build/testdb}" "/tmp/sluice-testdb-$UID")

die() {
    echo "testdb: $*" >&2
    exit 1
}

pgctl() { as_pg "$PGBIN/pg_ctl" "$@"; }

is_running() { [ -f "$D/$1/postmaster.pid" ] && pgctl -D "$D/$1" status >/dev/null 2>&1; }

# Stops one cluster (data or replica) by every means needed, as far as it got started.
stop_one() {
    local c=$D/$1 pid
    [ -f "$c/postmaster.pid" ] || return 0
    pgctl -D "$c" -m fast -w -t 20 stop >/dev/null 2>&1 && return 0
    pgctl -D "$c" -m immediate -w -t 10 stop >/dev/null 2>&1 && return 0
    # Last resort: kill the postmaster named in the pid file, if it really is this cluster's.
    pid=$(head -n1 "$c/postmaster.pid" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$c"; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
}

start_one() {
    local c=$1
    pgctl -D "$D/$c" -l "$D/$c.log" -w -t 30 start >/dev/null ||
        { tail -n 20 "$D/$c.log" >&2 || true; die "$c did not start (log: $D/$c.log)"; }
}

cmd_start() {
    cmd_stop
    mkdir -p "$D"
    [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$D"
    as_pg "$PGBIN/initdb" -D "$D/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
        >"$D/initdb.log" 2>&1 || { cat "$D/initdb.log" >&2; die "initdb failed"; }
    cat >>"$D/data/postgresql.conf" <<CONF

# scripts/testdb.sh: throwaway test server
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$D'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
shared_preload_libraries = 'pg_stat_statements'
wal_level = replica
max_wal_senders = 5
CONF
    echo "host replication all 127.0.0.1/32 trust" >>"$D/data/pg_hba.conf"
    start_one data
    as_pg psql -qX -h "$D" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements' >/dev/null
    if [ -n "$RPORT" ]; then
        as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PORT" -U postgres -D "$D/replica" -R \
            -X stream -c fast >"$D/basebackup.log" 2>&1 ||
            { cat "$D/basebackup.log" >&2; die "pg_basebackup failed"; }
        echo "port = $RPORT" >>"$D/replica/postgresql.conf"
        start_one replica
    fi
    echo "$DSN"
    [ -z "$RPORT" ] || echo "$RDSN"
}

cmd_stop() {
    [ -d "$D" ] || return 0
    stop_one replica
    stop_one data
    rm -rf "$D"
}

cmd_restart() {
    [ -d "$D/data" ] || die "not started (no $D/data)"
    pgctl -D "$D/data" -l "$D/data.log" -m fast -w -t 30 restart >/dev/null ||
        { tail -n 20 "$D/data.log" >&2 || true; die "restart failed"; }
}

cmd_status() {
    if is_running data; then
        echo "running $DSN"
        [ -z "$RPORT" ] || ! is_running replica || echo "running $RDSN"
    else
        echo stopped
        return 3
    fi
}

cmd_env() {
    printf 'export TESTDB_DIR=%q TESTDB_PORT=%q SLUICE_TEST_DSN=%q\n' "$D" "$PORT" "$DSN"
    [ -z "$RPORT" ] || printf 'export TESTDB_REPLICA_PORT=%q SLUICE_TEST_REPLICA_DSN=%q\n' "$RPORT" "$RDSN"
}

cmd_run() {
    [ $# -gt 0 ] || die "run: no command"
    trap 'cmd_stop' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    cmd_start >/dev/null
    eval "$(cmd_env)"
    local rc=0
    "$@" || rc=$?
    exit $rc
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_restart ;;
down) [ -d "$D/data" ] || die "not started"; stop_one replica; stop_one data ;;
up)
    [ -d "$D/data" ] || die "not started (no $D/data)"
    is_running data || start_one data
    [ ! -d "$D/replica" ] || is_running replica || start_one replica
    ;;
status) cmd_status ;;
env) cmd_env ;;
run) shift; cmd_run "$@" ;;
*) echo "usage: $0 start|stop|restart|status|down|up|env|run CMD [ARG..]" >&2; exit 2 ;;
esac
