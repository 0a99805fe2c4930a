/* probe.c — the replication-lag probe: one libpq connection per pool, connected and queried
 * asynchronously on one worker's loop (PQconnectStart/PQconnectPoll, PQsendQuery; h2o watches a
 * dup() of libpq's socket with DONT_READ). Results are published in a static array read with
 * relaxed atomics. */
#include "probe.h"

#include <h2o.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conninfo.h"
#include "log.h"
#include "lsn.h"
#include "ownsql.h"
#include "pgsock.h"
#include "util.h"
#include "walpos.h"

/* When a probe (connect or query) has not finished after this long, its connection is dropped. */
#define PROBE_STUCK_MS 10000
/* A primary's probe connection is closed at once (it costs the server nothing between probes);
 * the primary is asked again this often, in case it became a replica. */
#define PROBE_PRIMARY_EVERY_MS 60000

/* The lag keeps growing on an idle primary's replica when measured from the last replayed
 * transaction alone; a replica that has replayed all it received is not behind. */
static const char PROBE_SQL[] =
    "SELECT pg_is_in_recovery(), CASE WHEN NOT pg_is_in_recovery() THEN NULL "
    "WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() "
    "AND pg_last_wal_receive_lsn() IS NOT NULL THEN 0 "
    "ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) END, "
    "pg_last_wal_replay_lsn() " OWN_SQL_MARK;

enum probe_state { PROBE_IDLE, PROBE_CONNECTING, PROBE_QUERYING };

struct probe {
    int idx;
    h2o_loop_t *loop;
    char *url;
    PGconn *pg;
    h2o_socket_t *sock;
    enum probe_state state;
    uint64_t began_ms;
    uint64_t next_ms; /* no new connection before this (a primary's recheck) */
    h2o_timeout_t every;
    h2o_timeout_entry_t tick;
};

/* Published per pool: 0 unknown, 1 primary, 2 replica; the lag in microseconds, -1 unknown. */
static int published_kind[PROBE_MAX_POOLS];
static int64_t published_lag_us[PROBE_MAX_POOLS];
static struct probe *probes[PROBE_MAX_POOLS]; /* for the hurried polls (walpos.c) */

/* The replay position goes with the kind: a pool that is not a known replica has none. */
static void publish(int idx, int kind, int64_t lag_us, uint64_t replay_lsn)
{
    __atomic_store_n(&published_lag_us[idx], lag_us, __ATOMIC_RELAXED);
    __atomic_store_n(&published_kind[idx], kind, __ATOMIC_RELAXED);
    walpos_set_replay(idx, kind == 2 ? replay_lsn : 0);
}

bool probe_replication_lag(int idx, double *lag_seconds)
{
    if (idx < 0 || idx >= PROBE_MAX_POOLS || __atomic_load_n(&published_kind[idx], __ATOMIC_RELAXED) != 2)
        return false;
    int64_t us = __atomic_load_n(&published_lag_us[idx], __ATOMIC_RELAXED);
    *lag_seconds = us < 0 ? -1.0 : (double)us / 1e6;
    return true;
}

bool probe_is_primary(int idx)
{
    return idx >= 0 && idx < PROBE_MAX_POOLS && __atomic_load_n(&published_kind[idx], __ATOMIC_RELAXED) == 1;
}

static void on_io(h2o_socket_t *sock, const char *err);

/* Closes the probe connection; what was published stays. */
static void disconnect(struct probe *p)
{
    if (p->sock) h2o_socket_close(p->sock);
    p->sock = NULL;
    if (p->pg) PQfinish(p->pg);
    p->pg = NULL;
    p->state = PROBE_IDLE;
}

/* The probe failed: the connection is closed and the lag is unknown until the next answer. */
static void drop(struct probe *p, const char *why)
{
    log_debug("replication probe of pool %d: %s", p->idx, why ? why : "closed");
    disconnect(p);
    publish(p->idx, 0, -1, 0);
}

static void on_writable(h2o_socket_t *sock, const char *err)
{
    on_io(sock, err);
}

static void send_probe(struct probe *p)
{
    p->began_ms = now_ms();
    if (!PQsendQuery(p->pg, PROBE_SQL)) {
        drop(p, PQerrorMessage(p->pg));
        return;
    }
    p->state = PROBE_QUERYING;
    if (PQflush(p->pg) == 1) h2o_socket_notify_write(p->sock, on_writable);
}

static void connect_step(struct probe *p)
{
    int rc = pgsock_connect_step(p->loop, p->pg, &p->sock, p, on_io);
    if (rc < 0)
        drop(p, PQerrorMessage(p->pg));
    else if (rc > 0)
        send_probe(p);
}

static void take_result(struct probe *p, PGresult *r)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        publish(p->idx, 0, -1, 0);
        return;
    }
    if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
        publish(p->idx, 1, -1, 0);
        return;
    }
    int64_t us = -1;
    if (!PQgetisnull(r, 0, 1)) {
        double s = strtod(PQgetvalue(r, 0, 1), NULL);
        us = s < 0 ? 0 : (int64_t)(s * 1e6);
    }
    uint64_t replay = 0;
    if (PQnfields(r) > 2 && !PQgetisnull(r, 0, 2)) {
        const char *v = PQgetvalue(r, 0, 2);
        lsn_parse(v, strlen(v), &replay);
    }
    publish(p->idx, 2, us, replay);
}

static void on_io(h2o_socket_t *sock, const char *err)
{
    struct probe *p = sock->data;
    if (p->state == PROBE_CONNECTING) {
        connect_step(p);
        return;
    }
    if (!PQconsumeInput(p->pg)) {
        drop(p, PQerrorMessage(p->pg));
        return;
    }
    if (p->state == PROBE_QUERYING && PQflush(p->pg) == 1) {
        h2o_socket_notify_write(p->sock, on_writable);
        return;
    }
    while (p->state == PROBE_QUERYING && !PQisBusy(p->pg)) {
        PGresult *r = PQgetResult(p->pg);
        if (r == NULL) {
            p->state = PROBE_IDLE;
            if (__atomic_load_n(&published_kind[p->idx], __ATOMIC_RELAXED) == 1) {
                disconnect(p); /* a primary: no lag to follow, no connection kept */
                p->next_ms = now_ms() + PROBE_PRIMARY_EVERY_MS;
                return;
            }
            break;
        }
        take_result(p, r);
        PQclear(r);
    }
    if (PQstatus(p->pg) == CONNECTION_BAD) drop(p, PQerrorMessage(p->pg));
}

static void start_connect(struct probe *p)
{
    const char *keys[] = {"application_name", "client_encoding", "dbname", NULL};
    const char *vals[] = {"sluice-probe", "UTF8", p->url, NULL};
    /* libpq's text of a string it cannot use may quote it, password included: never shown */
    bool usable = conninfo_usable(p->url);
    p->pg = usable ? PQconnectStartParams(keys, vals, 1) : NULL;
    p->began_ms = now_ms();
    if (p->pg == NULL || PQstatus(p->pg) == CONNECTION_BAD) {
        drop(p, usable && p->pg == NULL ? "out of memory" : CONNINFO_INVALID);
        return;
    }
    if (!pgsock_attach(p->loop, p->pg, &p->sock, p)) {
        drop(p, "cannot watch the database socket");
        return;
    }
    p->state = PROBE_CONNECTING;
    h2o_socket_notify_write(p->sock, on_writable);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    struct probe *p = container_of(entry, struct probe, tick);
    h2o_timeout_link(p->loop, &p->every, &p->tick);
    if (p->state != PROBE_IDLE) {
        if (now_ms() - p->began_ms > PROBE_STUCK_MS) drop(p, "no answer in time");
        return;
    }
    if (p->pg != NULL)
        send_probe(p);
    else if (now_ms() >= p->next_ms)
        start_connect(p);
}

/* A hurried poll (walpos.c): a replica's probe asks again now unless a question is out. */
static void poll_now(int idx)
{
    struct probe *p = idx >= 0 && idx < PROBE_MAX_POOLS ? probes[idx] : NULL;
    if (p != NULL && p->state == PROBE_IDLE && p->pg != NULL &&
        __atomic_load_n(&published_kind[idx], __ATOMIC_RELAXED) == 2)
        send_probe(p);
}

void probe_start(h2o_loop_t *loop, h2o_multithread_queue_t *queue, const struct config *cfg)
{
    for (size_t i = 0; i < cfg->npools && i < PROBE_MAX_POOLS; i++) {
        struct probe *p = xcalloc(1, sizeof *p); /* lives as long as the loop */
        p->idx = (int)i;
        p->loop = loop;
        p->url = xstrdup(cfg->pools[i].url ? cfg->pools[i].url : "");
        h2o_timeout_init(p->loop, &p->every, PROBE_EVERY_MS);
        p->tick.cb = on_tick;
        probes[i] = p;
        start_connect(p);
        h2o_timeout_link(p->loop, &p->every, &p->tick);
    }
    walpos_start(loop, queue, poll_now);
}
