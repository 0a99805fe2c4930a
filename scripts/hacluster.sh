#!/usr/bin/env bash
# A throwaway high-availability PostgreSQL 15 cluster for the tests, on 127.0.0.1 only, without
# containers: one etcd, three Patroni nodes (n1, n2, n3) in synchronous mode, and on request an
# HAProxy in front of sluice gateways. Everything it starts is recorded by PID under the cluster
# directory and stopped by PID.
#
# Usage: scripts/hacluster.sh VERB [ARG..]
#   start               wipe, start etcd and the three nodes, wait until the leader takes writes
#                       and a synchronous standby streams; prints the multi-host URL and the time
#   stop                stop everything recorded (also after a half start) and delete the directory
#   status              "running" and one line per node (exit 0), or "stopped" (exit 3)
#   env                 `export` lines: ports, the read-write and standby multi-host URLs, the
#                       patronictl config, the Patroni timings (works when stopped too)
#   members             one line per node: NAME PG_PORT ROLE, ROLE = leader|sync|replica|down
#   leader              the leader's name and PostgreSQL port ("n2 61634"); exit 1 when none
#   switchover [NODE]   planned `patronictl switchover --force` to NODE (default: Patroni picks);
#                       in synchronous mode Patroni only takes the synchronous standby, so it first
#                       waits for one; then waits until another node takes writes; prints
#                       "switchover A -> B in S s"
#   kill-leader [--no-wait]
#                       kill -9 the leader's Patroni, postmaster and backends (a crashed host);
#                       then waits until another node takes writes and prints "failover ... in S s"
#   node-stop NODE      stop one node's Patroni (it stops its PostgreSQL)
#   node-start NODE     start one node's Patroni again (after node-stop or kill-leader); waits
#                       until it streams from the leader (rewound or cloned anew as needed)
#   wait-healthy        wait until a leader takes writes, every running node streams from it and
#                       one is the synchronous standby
#   down                stop every node, keeping their data: no server at all
#   up                  start the nodes that are down, wait until a leader takes writes
#   haproxy PORT BACKEND_PORT..
#                       (re)start HAProxy on 127.0.0.1:PORT in front of gateways listening on
#                       127.0.0.1:BACKEND_PORT, round robin over those whose GET /health/ready
#                       answers 200 (checked every 250 ms; down after 1 failure, up after 2
#                       successes), over those whose /health/live does while none is ready
#   haproxy-stop        stop that HAProxy
#   run CMD [ARG..]     start, run CMD with the `env` variables exported, always stop; CMD's status
#
# Environment:
#   HACLUSTER_DIR   where everything lives (default build/hacluster; /tmp/sluice-hacluster-$UID
#                   when the postgres user cannot reach it): etcd/, n1..n3/ (data/, patroni.yml,
#                   patroni.log), pids/, haproxy.cfg, patronictl.yml
#   HACLUSTER_PORT  base port B (default TESTDB_PORT + 100 when that is 61000 or more, else 61632):
#                   PostgreSQL on B+1..B+3,
#                   Patroni's REST API on B+11..B+13, etcd on B+20 (clients) and B+21 (peers)
#   HACLUSTER_OWNER a PID: when that process is gone, the cluster stops itself (a watcher checks
#                   every second), so a test that dies without its teardown leaves nothing behind
#   HACLUSTER_TIMEOUT  seconds to wait for a leader or a node (default 60)
#   PG_BINDIR       PostgreSQL's binaries (default /usr/lib/postgresql/15/bin)
set -euo pipefail
umask 022

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=$ROOT/scripts/hacluster.sh
PGBIN=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
if [ -n "${HACLUSTER_PORT:-}" ]; then
    B=$HACLUSTER_PORT
elif [ -n "${TESTDB_PORT:-}" ] && [ "$TESTDB_PORT" -ge 61000 ]; then
    B=$((TESTDB_PORT + 100))
else
    B=61632 # above the kernel's ephemeral ports (32768-60999): a client's local port cannot take it
fi
NODES=(n1 n2 n3)
ETCD_PORT=$((B + 20))
ETCD_PEER=$((B + 21))
TIMEOUT=${HACLUSTER_TIMEOUT:-60}
# Patroni's timings. Patroni asks for loop_wait + 2 * retry_timeout <= ttl; 3.0.2 (Debian 12)
# accepts a ttl of 10 (its later releases document 20 as the least).
TTL=10 LOOP_WAIT=1 RETRY_TIMEOUT=4
SCOPE=sluice-ha
NAMESPACE=/sluice-test/

pg_port() { echo $((B + ${1#n})); }
api_port() { echo $((B + 10 + ${1#n})); }
HOSTS="127.0.0.1:$(pg_port n1),127.0.0.1:$(pg_port n2),127.0.0.1:$(pg_port n3)"
PRIMARY_URL="postgresql://postgres@$HOSTS/postgres?target_session_attrs=read-write"
STANDBY_URL="postgresql://postgres@$HOSTS/postgres?target_session_attrs=standby"

if [ "$(id -u)" -eq 0 ]; then
    # Patroni runs initdb and postgres, which refuse root. setpriv execs in place, so the PID
    # recorded is Patroni's own; cd / since the caller's directory may be closed to postgres.
    # Meant to run in a background subshell (`as_pg_exec CMD &`), which it replaces.
    as_pg_exec() { cd / && HOME=$D exec setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
else
    as_pg_exec() { exec "$@"; }
fi
source "$ROOT/scripts/pgdir.sh"
D=$(pg_dir "${HACLUSTER_DIR:-$ROOT/build/hacluster}" "/tmp/sluice-hacluster-$UID")

die() {
    echo "hacluster: $*" >&2
    exit 1
}
say() { echo "hacluster: $*"; }
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# True when PID is alive and its command line names this cluster's directory (a PID file that
# outlived its process never makes us signal a stranger).
ours() {
    local pid=$1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$D"
}
pidof_rec() { cat "$D/pids/$1.pid" 2>/dev/null || true; }
# Whether a process just started is still there. Not `ours`: until the child has exec'd, its
# command line is still this script's, which does not name $D.
alive() { local pid=$1; [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; }
record() { echo "$2" >"$D/pids/$1.pid"; }

# Sends TERM to the recorded process NAME, waits up to SECS, then KILL. Quiet if not running.
stop_rec() {
    local name=$1 secs=${2:-10} pid i
    pid=$(pidof_rec "$name")
    if ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < secs * 10; i++)); do
            ours "$pid" || break
            sleep 0.1
        done
        ! ours "$pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$D/pids/$name.pid"
}

postmaster_pid() {
    local pid
    pid=$(head -n1 "$D/$1/data/postmaster.pid" 2>/dev/null || true)
    ours "$pid" && echo "$pid"
    return 0
}

# A postmaster that outlived its Patroni (Patroni killed): immediate stop, else KILL.
stop_postmaster() {
    local node=$1 pid
    pid=$(postmaster_pid "$node")
    [ -n "$pid" ] || return 0
    as_pg "$PGBIN/pg_ctl" -D "$D/$node/data" -m immediate -w -t 10 stop >/dev/null 2>&1 ||
        kill -KILL "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# probes

# HTTP status of GET Patroni REST PATH on NODE ("000" when it does not answer).
api() { curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$(api_port "$1")$2" 2>/dev/null || true; }

# leader, sync, replica or down. (Patroni 3.0.2's GET /sync answers 503 on a synchronous
# standby too, so the state is read from GET /patroni.)
role_of() {
    local n=$1 st
    if [ "$(api "$n" /primary)" = 200 ]; then echo leader; return 0; fi
    st=$(curl -s -m 1 "http://127.0.0.1:$(api_port "$n")/patroni" 2>/dev/null || true)
    if [[ $st != *'"state": "running"'* || $st != *'"role": "replica"'* ]]; then echo down
    elif [[ $st == *'"sync_standby": true'* ]]; then echo sync
    else echo replica; fi
}

leader_node() {
    local n
    for n in "${NODES[@]}"; do
        [ "$(api "$n" /primary)" = 200 ] && { echo "$n"; return 0; }
    done
    return 1
}

psql_url() { psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$1" -c "$2" 2>/dev/null; }
node_url() { echo "postgresql://postgres@127.0.0.1:$(pg_port "$1")/postgres?connect_timeout=2"; }

# The port of the server that took a write through the read-write multi-host URL, or nothing.
# txid_current() takes a transaction id, so its commit waits for the synchronous standby.
writable_port() {
    psql_url "$PRIMARY_URL&connect_timeout=2&options=-c%20statement_timeout%3D3000" \
        "SELECT txid_current() IS NOT NULL; SELECT inet_server_port()" 2>/dev/null | tail -n1 || true
}

# Waits until a server other than port NOT_PORT takes writes; echoes its port.
wait_writable() {
    local not=${1:-0} deadline port
    deadline=$(($(date +%s) + TIMEOUT))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        port=$(writable_port)
        if [[ $port =~ ^[0-9]+$ && $port != "$not" ]]; then
            echo "$port"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

node_of_port() {
    local n
    for n in "${NODES[@]}"; do [ "$(pg_port "$n")" != "$1" ] || echo "$n"; done
}

# "streaming sync" counts of the leader's pg_stat_replication.
replication_counts() {
    psql_url "$PRIMARY_URL&connect_timeout=2" \
        "SELECT count(*) FILTER (WHERE state = 'streaming') || ' ' || count(*) FILTER (WHERE sync_state = 'sync') FROM pg_stat_replication" || true
}

# Waits until the leader has WANT streaming standbys, one of them synchronous.
wait_replicas() {
    local want=$1 deadline c
    deadline=$(($(date +%s) + TIMEOUT))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        c=$(replication_counts)
        [ "$c" = "$want 1" ] && return 0
        sleep 0.2
    done
    return 1
}

# Waits until a node is the synchronous standby in Patroni's view.
wait_sync() {
    local deadline n
    deadline=$(($(date +%s) + TIMEOUT))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        for n in "${NODES[@]}"; do [ "$(role_of "$n")" != sync ] || return 0; done
        sleep 0.2
    done
    return 1
}

# Waits until NODE streams from the leader (Patroni names each standby's connection after it).
wait_streaming() {
    local n=$1 deadline
    deadline=$(($(date +%s) + TIMEOUT))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        [ "$(psql_url "$PRIMARY_URL&connect_timeout=2" \
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$n' AND state = 'streaming'" || true)" != 1 ] || return 0
        sleep 0.2
    done
    return 1
}

# Waits until a leader takes writes, every node whose Patroni runs streams from it, and one of
# them is the synchronous standby (when there is a standby at all).
cmd_wait_healthy() {
    local n t0 port want=0
    [ -d "$D" ] || die "not started"
    t0=$(now)
    port=$(wait_writable 0) || die "no writable leader within ${TIMEOUT}s"
    for n in "${NODES[@]}"; do
        [ "$(pg_port "$n")" != "$port" ] || continue
        ours "$(pidof_rec "$n")" || continue
        want=$((want + 1))
        wait_streaming "$n" || die "$n does not stream within ${TIMEOUT}s"
    done
    [ $want -eq 0 ] || wait_sync || die "no synchronous standby within ${TIMEOUT}s"
    say "healthy after $(since "$t0") s: leader $(node_of_port "$port"), $want standbys streaming"
}

# ---------------------------------------------------------------------------------------------
# configuration

write_patroni_config() {
    local n=$1 pp ap
    pp=$(pg_port "$n")
    ap=$(api_port "$n")
    cat >"$D/$n/patroni.yml" <<YML
# scripts/hacluster.sh: node $n of a throwaway test cluster
scope: $SCOPE
namespace: $NAMESPACE
name: $n
restapi:
  listen: 127.0.0.1:$ap
  connect_address: 127.0.0.1:$ap
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    ttl: $TTL
    loop_wait: $LOOP_WAIT
    retry_timeout: $RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      remove_data_directory_on_rewind_failure: true
      remove_data_directory_on_diverged_timelines: true
      use_slots: true
      parameters:
        max_connections: 200
        max_wal_senders: 10
        max_replication_slots: 10
        wal_log_hints: 'on'
        wal_keep_size: 128MB
        # a killed process loses nothing with fsync off (the OS keeps its writes); only a
        # crashed machine would, and these clusters live for one test run. full_page_writes
        # stays on: pg_rewind needs it
        fsync: 'off'
  initdb:
  - encoding: UTF8
  - no-locale
  - no-sync
postgresql:
  listen: 127.0.0.1:$pp
  connect_address: 127.0.0.1:$pp
  data_dir: $D/$n/data
  bin_dir: $PGBIN
  pgpass: $D/$n/pgpass
  authentication:
    superuser:
      username: postgres
      password: sluice-ha-test
    replication:
      username: replicator
      password: sluice-ha-test
    rewind:
      username: postgres
      password: sluice-ha-test
  parameters:
    unix_socket_directories: '$D/$n'
    listen_addresses: 127.0.0.1
    logging_collector: 'off'
  basebackup:
  - checkpoint: fast
  # trust for local sockets and the superuser over TCP (the tests' URLs carry no password);
  # md5 for the replication user and everyone else
  pg_hba:
  - local all all trust
  - host all postgres 127.0.0.1/32 trust
  - host replication replicator 127.0.0.1/32 md5
  - host all all 127.0.0.1/32 md5
tags:
  nofailover: false
  noloadbalance: false
  clonefrom: false
YML
}

write_ctl_config() {
    cat >"$D/patronictl.yml" <<YML
scope: $SCOPE
namespace: $NAMESPACE
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
YML
}

patronictl_() { patronictl -c "$D/patronictl.yml" "$@"; }

# ---------------------------------------------------------------------------------------------
# processes

start_etcd() {
    mkdir -p "$D/etcd"
    etcd --name hacluster --data-dir "$D/etcd/data" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
        --initial-cluster "hacluster=http://127.0.0.1:$ETCD_PEER" --initial-cluster-state new \
        --initial-cluster-token "sluice-$B" --log-level warn \
        >"$D/etcd/etcd.log" 2>&1 </dev/null &
    record etcd $!
    local i
    for ((i = 0; i < TIMEOUT * 10; i++)); do
        curl -s -m 1 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"' && return 0
        alive "$(pidof_rec etcd)" || break
        sleep 0.1
    done
    tail -n 20 "$D/etcd/etcd.log" >&2 || true
    die "etcd did not become healthy (log: $D/etcd/etcd.log)"
}

start_node() {
    local n=$1
    # patroni is /usr/bin/patroni, run by the system python (not a python on PATH)
    as_pg_exec /usr/bin/patroni "$D/$n/patroni.yml" >>"$D/$n/patroni.log" 2>&1 </dev/null &
    record "$n" $!
}

# Stops NODE's Patroni (which stops its PostgreSQL), then anything of it that is left.
stop_node() {
    stop_rec "$1" 20
    stop_postmaster "$1"
}

start_watcher() {
    local owner=${HACLUSTER_OWNER:-}
    [ -n "$owner" ] || return 0
    kill -0 "$owner" 2>/dev/null || die "HACLUSTER_OWNER $owner is not running"
    # $2 (the directory) is in the watcher's command line, so `ours` recognises it.
    # shellcheck disable=SC2016 # expanded by the watcher's own shell
    nohup bash -c '
        owner=$1 dir=$2 self=$3 id=$4
        while kill -0 "$owner" 2>/dev/null && [ "$(cat "$dir/id" 2>/dev/null)" = "$id" ]; do sleep 1; done
        [ "$(cat "$dir/id" 2>/dev/null)" = "$id" ] && HACLUSTER_IN_WATCHER=1 "$self" stop
    ' hacluster-watch "$owner" "$D" "$SELF" "$(cat "$D/id")" >/dev/null 2>&1 </dev/null &
    record watcher $!
}

# ---------------------------------------------------------------------------------------------
# verbs

cmd_start() {
    cmd_stop
    local t0 n port leader
    t0=$(now)
    mkdir -p "$D/pids"
    echo "$$-$RANDOM$RANDOM" >"$D/id"
    # A start that fails or is interrupted stops what it started; the caller's traps (run's)
    # come back afterwards.
    local saved
    saved=$(trap -p EXIT INT TERM)
    trap 'rc=$?; trap - EXIT; if [ $rc -ne 0 ]; then echo "hacluster: start failed, stopping" >&2; cmd_stop; fi; exit $rc' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start_watcher
    for n in "${NODES[@]}"; do
        mkdir -p "$D/$n"
        write_patroni_config "$n"
    done
    write_ctl_config
    [ "$(id -u)" -ne 0 ] || chown -R postgres:postgres "$D"
    start_etcd
    for n in "${NODES[@]}"; do start_node "$n"; done
    if ! port=$(wait_writable 0); then
        for n in "${NODES[@]}"; do echo "--- $n" >&2; tail -n 15 "$D/$n/patroni.log" >&2 || true; done
        die "no writable leader after ${TIMEOUT}s"
    fi
    leader=$(node_of_port "$port")
    if ! wait_replicas 2; then
        for n in "${NODES[@]}"; do echo "--- $n" >&2; tail -n 15 "$D/$n/patroni.log" >&2 || true; done
        die "the standbys did not stream, one synchronously, within ${TIMEOUT}s (pg_stat_replication: $(replication_counts))"
    fi
    trap - EXIT INT TERM
    eval "$saved"
    echo "$PRIMARY_URL"
    say "started in $(since "$t0") s: leader $leader on 127.0.0.1:$port, 2 standbys streaming, 1 synchronous"
}

cmd_stop() {
    [ -d "$D" ] || return 0
    local n
    [ -n "${HACLUSTER_IN_WATCHER:-}" ] || stop_rec watcher 2
    stop_rec haproxy 5
    # Every node at once: TERM, then whatever is left of each.
    for n in "${NODES[@]}"; do
        local pid
        pid=$(pidof_rec "$n")
        ! ours "$pid" || kill -TERM "$pid" 2>/dev/null || true
    done
    for n in "${NODES[@]}"; do stop_node "$n"; done
    stop_rec etcd 10
    rm -rf "$D"
}

cmd_status() {
    if [ -d "$D" ] && ours "$(pidof_rec etcd)"; then
        echo running
        cmd_members
    else
        echo stopped
        return 3
    fi
}

cmd_env() {
    printf 'export HACLUSTER_DIR=%q HACLUSTER_PORT=%q\n' "$D" "$B"
    printf 'export HA_PG_PORT1=%q HA_PG_PORT2=%q HA_PG_PORT3=%q\n' "$(pg_port n1)" "$(pg_port n2)" "$(pg_port n3)"
    printf 'export HA_API_PORT1=%q HA_API_PORT2=%q HA_API_PORT3=%q\n' "$(api_port n1)" "$(api_port n2)" "$(api_port n3)"
    printf 'export HA_ETCD_URL=%q\n' "http://127.0.0.1:$ETCD_PORT"
    printf 'export HA_PRIMARY_URL=%q\n' "$PRIMARY_URL"
    printf 'export HA_STANDBY_URL=%q\n' "$STANDBY_URL"
    printf 'export HA_PATRONICTL_CONFIG=%q\n' "$D/patronictl.yml"
    printf 'export HA_TTL=%q HA_LOOP_WAIT=%q HA_RETRY_TIMEOUT=%q\n' "$TTL" "$LOOP_WAIT" "$RETRY_TIMEOUT"
}

cmd_members() {
    local n
    for n in "${NODES[@]}"; do echo "$n $(pg_port "$n") $(role_of "$n")"; done
}

cmd_leader() {
    local n
    n=$(leader_node) || die "no leader"
    echo "$n $(pg_port "$n")"
}

cmd_switchover() {
    local cand=${1:-} leader t0 port args
    [ -d "$D" ] || die "not started"
    leader=$(leader_node) || die "no leader to switch over from"
    args=(--leader "$leader" --force)
    [ -z "$cand" ] || args+=(--candidate "$cand")
    # In synchronous mode Patroni switches over only to the synchronous standby: wait until
    # there is one (after a failover the new leader names it within a few loops).
    wait_sync || die "no synchronous standby to switch over to"
    t0=$(now)
    # patronictl exits 0 when the leader refuses; its output says so
    if ! patronictl_ switchover "${args[@]}" "$SCOPE" >"$D/switchover.log" 2>&1 ||
        grep -q 'Switchover failed' "$D/switchover.log"; then
        cat "$D/switchover.log" >&2
        die "patronictl switchover failed"
    fi
    port=$(wait_writable "$(pg_port "$leader")") || die "no new writable leader ${TIMEOUT}s after the switchover"
    say "switchover $leader -> $(node_of_port "$port") in $(since "$t0") s (until a write commits on the new leader)"
}

cmd_kill_leader() {
    local wait=1 leader pid pm kids t0 port
    [ "${1:-}" = --no-wait ] && wait=0
    [ -d "$D" ] || die "not started"
    leader=$(leader_node) || die "no leader to kill"
    pid=$(pidof_rec "$leader")
    pm=$(postmaster_pid "$leader")
    kids=
    [ -z "$pm" ] || kids=$(ps -o pid= --ppid "$pm" | tr -s ' \n' ' ')
    ! ours "$pid" || kill -KILL "$pid" 2>/dev/null || true
    [ -z "$pm" ] || kill -KILL "$pm" 2>/dev/null || true
    # shellcheck disable=SC2086
    [ -z "$kids" ] || kill -KILL $kids 2>/dev/null || true
    # the time once every signal is sent: nothing of the old leader commits after it
    t0=$(now)
    rm -f "$D/pids/$leader.pid"
    say "killed $leader (patroni $pid, postmaster ${pm:-none} and its $(wc -w <<<"$kids") children) at $t0"
    [ $wait -eq 1 ] || return 0
    port=$(wait_writable "$(pg_port "$leader")") || die "no new writable leader ${TIMEOUT}s after the kill"
    say "failover $leader -> $(node_of_port "$port") in $(since "$t0") s (kill -9 until a write commits; ttl $TTL s)"
}

cmd_node_stop() {
    local n=${1:?node-stop NODE}
    [ -d "$D/$n" ] || die "no node $n"
    stop_node "$n"
    say "$n stopped"
}

cmd_node_start() {
    local n=${1:?node-start NODE} deadline t0
    [ -d "$D/$n" ] || die "no node $n"
    ! ours "$(pidof_rec "$n")" || die "$n is running"
    stop_postmaster "$n"
    t0=$(now)
    start_node "$n"
    deadline=$(($(date +%s) + TIMEOUT))
    if ! wait_streaming "$n"; then
        tail -n 20 "$D/$n/patroni.log" >&2 || true
        die "$n does not stream from the leader within ${TIMEOUT}s"
    fi
    say "$n started in $(since "$t0") s, streaming from the leader"
}

cmd_down() {
    [ -d "$D" ] || die "not started"
    local n
    for n in "${NODES[@]}"; do
        local pid
        pid=$(pidof_rec "$n")
        ! ours "$pid" || kill -TERM "$pid" 2>/dev/null || true
    done
    for n in "${NODES[@]}"; do stop_node "$n"; done
    say "every node stopped"
}

cmd_up() {
    [ -d "$D" ] || die "not started"
    local n t0 port
    t0=$(now)
    for n in "${NODES[@]}"; do
        ours "$(pidof_rec "$n")" && continue
        stop_postmaster "$n"
        start_node "$n"
    done
    port=$(wait_writable 0) || die "no writable leader ${TIMEOUT}s after up"
    say "up in $(since "$t0") s: leader $(node_of_port "$port")"
}

cmd_haproxy() {
    local port=${1:?haproxy PORT BACKEND_PORT..} i=0 b cfg
    shift
    [ $# -gt 0 ] || die "haproxy: no backend port"
    mkdir -p "$D/pids"
    stop_rec haproxy 5
    cfg=$D/haproxy.cfg
    {
        cat <<CFG
# scripts/hacluster.sh: HAProxy in front of sluice gateways
global
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    timeout check 1s
    # a refused connection is tried again on the same gateway only: the test shows what the
    # gateways' own drain does (production configs add option redispatch, see the docs)
    retries 1
    default-server inter 250ms fastinter 250ms downinter 250ms fall 1 rise 2

frontend sluice
    bind 127.0.0.1:$port
    # the ready gateways; while none is (every one waits out a database failover), the live ones,
    # where requests wait for the new primary instead of HAProxy answering 503 at once
    use_backend ready if { nbsrv(ready) gt 0 }
    default_backend live

backend ready
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
CFG
        for b in "$@"; do
            i=$((i + 1))
            echo "    server g$i 127.0.0.1:$b check"
        done
        printf '\nbackend live\n    balance roundrobin\n    option httpchk GET /health/live\n    http-check expect status 200\n'
        i=0
        for b in "$@"; do
            i=$((i + 1))
            echo "    server g$i 127.0.0.1:$b check"
        done
    } >"$cfg"
    haproxy -c -q -f "$cfg" || die "haproxy: invalid config $cfg"
    haproxy -db -f "$cfg" >"$D/haproxy.log" 2>&1 </dev/null &
    record haproxy $!
    for ((i = 0; i < 50; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { say "haproxy on 127.0.0.1:$port -> $*"; return 0; }
        alive "$(pidof_rec haproxy)" || break
        sleep 0.1
    done
    cat "$D/haproxy.log" >&2 || true
    die "haproxy did not listen on $port"
}

cmd_run() {
    [ $# -gt 0 ] || die "run: no command"
    trap 'cmd_stop' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    cmd_start
    eval "$(cmd_env)"
    local rc=0
    "$@" || rc=$?
    exit $rc
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cmd_env ;;
members) cmd_members ;;
leader) cmd_leader ;;
switchover) shift; cmd_switchover "$@" ;;
kill-leader) shift; cmd_kill_leader "$@" ;;
node-stop) shift; cmd_node_stop "$@" ;;
node-start) shift; cmd_node_start "$@" ;;
down) cmd_down ;;
up) cmd_up ;;
wait-healthy) cmd_wait_healthy ;;
haproxy) shift; cmd_haproxy "$@" ;;
haproxy-stop) stop_rec haproxy 5 ;;
run) shift; cmd_run "$@" ;;
*)
    echo "usage: $0 start|stop|status|env|members|leader|switchover [NODE]|kill-leader [--no-wait]|node-stop NODE|node-start NODE|wait-healthy|down|up|haproxy PORT BACKEND_PORT..|haproxy-stop|run CMD [ARG..]" >&2
    exit 2
    ;;
esac
