/* pgconn.c — one PGconn on the worker's event loop. libpq is only used asynchronously here:
 * PQconnectStart/PQconnectPoll, pipeline mode, PQconsumeInput/PQisBusy/PQgetResult. h2o watches
 * its own dup() of libpq's socket (with DONT_READ), so each side closes only its own fd. */
#include "pgconn.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conninfo.h"
#include "endpoint.h"
#include "log.h"
#include "util.h"
#include "walpos.h"

/* A connection takes more jobs only while its oldest in-flight segment is this young: a slow
 * statement must not hold fast ones queued behind it on the same connection. */
#define PIPELINE_WINDOW_US 2000

static void on_io(h2o_socket_t *sock, const char *err);
static void on_io_leased(struct pgconn *c);
static void forget_stmt(struct pgconn *c, uint32_t id);
static void lost(struct pgconn *c, const char *why);

/* The one place c->state changes; the holder moves c to the list of its new state. */
static void set_state(struct pgconn *c, enum pgconn_state to, const char *why)
{
    enum pgconn_state from = c->state;
    if (from == to) return;
    c->state = to;
    c->events->on_state(c->events_arg, c, from, why);
}

static bool ready(const struct pgconn *c)
{
    return c->state == PGCONN_IDLE || c->state == PGCONN_PIPELINE || c->state == PGCONN_LEASED;
}

static void attach(struct pgconn *c)
{
    if (c->sock != NULL) h2o_socket_close(c->sock);
    c->sock = NULL;
    int fd = fcntl(PQsocket(c->pg), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return;
    c->sock = h2o_evloop_socket_create(c->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    c->sock->data = c;
}

static void want_write(struct pgconn *c)
{
    if (c->sock != NULL && !h2o_socket_is_writing(c->sock)) h2o_socket_notify_write(c->sock, on_io);
}

static void on_notice(void *arg, const PGresult *res)
{
    struct pgconn *c = arg;
    const char *msg = PQresultErrorMessage(res);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n') n--;
    log_printf(LOG_INFO, "pool %s: server notice: %.*s", c->cfg->name, (int)n, msg);
}

static int sync_group(struct pgconn *c);

/* The end of the turn of the loop: the jobs grouped during it get their Sync, and go out. */
static void on_flush_due(h2o_timeout_entry_t *entry)
{
    struct pgconn *c = container_of(entry, struct pgconn, flush_entry);
    if (ready(c) && sync_group(c) != 0) lost(c, PQerrorMessage(c->pg));
}

static void on_connect_timeout(h2o_timeout_entry_t *entry)
{
    struct pgconn *c = container_of(entry, struct pgconn, connect_entry);
    lost(c, "connect timeout");
}

struct pgconn *pgconn_connect(h2o_loop_t *loop, const struct pool_config *cfg, h2o_timeout_t *connect_timeout,
                              h2o_timeout_t *flush_timeout, const char *const *over_keys,
                              const char *const *over_vals, const struct pgconn_events *events, void *arg,
                              char *errbuf, size_t errlen)
{
    char opts[96];
    snprintf(opts, sizeof opts, "-c statement_timeout=%d -c DateStyle=ISO,YMD", cfg->statement_timeout_ms);
    /* The URL comes after these defaults so that what it says wins over them, and the overrides
     * (one host of the URL's list) after the URL: libpq keeps the last value of a key. */
    const char *keys[16] = {"application_name", "client_encoding", "options", "dbname"};
    const char *vals[16] = {"sluice", "UTF8", opts, cfg->url};
    int n = 4;
    for (int i = 0; over_keys != NULL && over_keys[i] != NULL && n < 15; i++, n++) {
        keys[n] = over_keys[i];
        vals[n] = over_vals[i];
    }
    keys[n] = vals[n] = NULL;
    /* libpq's text of a string it cannot use may quote it, password included: never shown */
    bool usable = conninfo_usable(cfg->url);
    PGconn *pg = usable ? PQconnectStartParams(keys, vals, 1) : NULL;
    if (pg == NULL || PQstatus(pg) == CONNECTION_BAD) {
        snprintf(errbuf, errlen, "%s", usable && pg == NULL ? "out of memory" : CONNINFO_INVALID);
        if (pg) PQfinish(pg);
        return NULL;
    }
    struct pgconn *c = xcalloc(1, sizeof *c);
    c->events = events;
    c->events_arg = arg;
    c->cfg = cfg;
    c->loop = loop;
    c->pg = pg;
    c->state = PGCONN_CONNECTING;
    c->host = -1;
    c->session_timeout_ms = cfg->statement_timeout_ms;
    c->seg_cap = (unsigned)cfg->pipeline_depth + 1;
    c->segs = xcalloc(c->seg_cap, sizeof *c->segs);
    stmt_cache_init(&c->stmts, cfg->prepared_statement_cache_size);
    PQsetNoticeReceiver(pg, on_notice, c);
    attach(c);
    if (c->sock == NULL) {
        snprintf(errbuf, errlen, "cannot watch the database socket");
        pgconn_free(c);
        return NULL;
    }
    want_write(c);
    c->connect_entry.cb = on_connect_timeout;
    h2o_timeout_link(loop, connect_timeout, &c->connect_entry);
    c->flush_timeout = flush_timeout;
    c->flush_entry.cb = on_flush_due;
    return c;
}

void pgconn_free(struct pgconn *c)
{
    if (c->in_io) { /* a callback of on_io's loop closed c: the loop still reads it */
        c->free_pending = true;
        return;
    }
    if (h2o_timeout_is_linked(&c->connect_entry)) h2o_timeout_unlink(&c->connect_entry);
    if (h2o_timeout_is_linked(&c->flush_entry)) h2o_timeout_unlink(&c->flush_entry);
    if (c->sock != NULL) h2o_socket_close(c->sock);
    if (c->pg != NULL) PQfinish(c->pg);
    stmt_cache_free(&c->stmts);
    free(c->segs);
    free(c);
}

static void connect_step(struct pgconn *c)
{
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        attach(c); /* libpq may have moved to another socket (next host or address) */
        if (c->sock) h2o_socket_read_start(c->sock, on_io);
        break;
    case PGRES_POLLING_WRITING:
        attach(c);
        want_write(c);
        break;
    case PGRES_POLLING_OK:
        h2o_timeout_unlink(&c->connect_entry);
        if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
            lost(c, PQerrorMessage(c->pg));
            return;
        }
        attach(c);
        if (c->sock == NULL) {
            lost(c, "cannot watch the database socket");
            return;
        }
        h2o_socket_read_start(c->sock, on_io); /* kept on for good: level-triggered */
        c->checked_ms = now_ms();
        set_state(c, PGCONN_IDLE, NULL);
        return;
    default:
        lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (c->sock == NULL) lost(c, "cannot watch the database socket");
}

bool pgconn_has_room(const struct pgconn *c, uint64_t now_us)
{
    if (c->retiring) return false;
    if (c->state == PGCONN_IDLE) return true;
    if (c->state != PGCONN_PIPELINE) return false;
    if (c->nsegs + 1 >= c->seg_cap || c->njobs >= c->cfg->pipeline_depth) return false;
    return now_us - c->segs[c->seg_head].sent_us < PIPELINE_WINDOW_US;
}

/* Doubles the ring, oldest segment first: lone Syncs of groups may briefly add to the jobs. */
static void grow_segs(struct pgconn *c)
{
    struct pgseg *segs = xcalloc(c->seg_cap * 2, sizeof *segs);
    for (unsigned i = 0; i < c->nsegs; i++) segs[i] = c->segs[(c->seg_head + i) % c->seg_cap];
    free(c->segs);
    c->segs = segs;
    c->seg_head = 0;
    c->seg_cap *= 2;
}

static struct pgseg *push_seg(struct pgconn *c, struct pgjob *job)
{
    if (c->nsegs == c->seg_cap) grow_segs(c);
    struct pgseg *s = &c->segs[(c->seg_head + c->nsegs++) % c->seg_cap];
    memset(s, 0, sizeof *s);
    s->job = job;
    s->sent_us = now_us();
    s->syncs = 1; /* a write's segment adds the Sync after its WAL position (send_walpos) */
    return s;
}

static int send_simple(struct pgconn *c, struct pgseg *s, enum seg_cmd cmd, const char *sql)
{
    s->cmds[s->ncmds++] = (uint8_t)cmd;
    return PQsendQueryParams(c->pg, sql, 0, NULL, NULL, NULL, NULL, 0) ? 0 : -1;
}

static int send_execute(struct pgconn *c, struct pgseg *s, struct pgjob *job)
{
    struct query_def *q = job->q;
    if (job->timeout_ms != c->session_timeout_ms) {
        char sql[64];
        snprintf(sql, sizeof sql, "SET statement_timeout = %d", job->timeout_ms);
        if (send_simple(c, s, CMD_SET, sql) != 0) return -1;
        c->session_timeout_ms = job->timeout_ms;
    }
    const char *stackvals[32];
    const char **vals = q->nparams <= 32 ? stackvals : xmalloc((size_t)q->nparams * sizeof *vals);
    for (int i = 0; i < q->nparams; i++)
        vals[i] = job->param_off[i] < 0 ? NULL : job->params.data + job->param_off[i];
    int ok = PQsendQueryPrepared(c->pg, q->stmt_name, q->nparams, vals, NULL, NULL, 0);
    if (vals != stackvals) free(vals);
    s->cmds[s->ncmds++] = CMD_EXECUTE;
    return ok ? 0 : -1;
}

static int flush(struct pgconn *c)
{
    int r = PQflush(c->pg);
    if (r == 1) want_write(c);
    return r < 0 ? -1 : 0;
}

/* After the Sync that commits a write, in the same flush (no extra round trip): where the WAL is
 * now, through a statement prepared once per connection. */
static int send_walpos(struct pgconn *c, struct pgseg *s)
{
    if (!c->walpos_prepared) {
        s->cmds[s->ncmds++] = CMD_WALPOS_PREPARE;
        if (!PQsendPrepare(c->pg, WALPOS_STMT, WALPOS_SQL, 0, NULL)) return -1;
        c->walpos_prepared = true;
    }
    s->cmds[s->ncmds++] = CMD_WALPOS;
    if (!PQsendQueryPrepared(c->pg, WALPOS_STMT, 0, NULL, NULL, NULL, 0) || !PQpipelineSync(c->pg)) return -1;
    s->syncs = 2;
    return 0;
}

/* Ends the open group with a Sync, which libpq 15 sends at once with everything before it: the
 * group's last segment waits for that Sync, or a lone Sync follows when it is done already. */
static int sync_group(struct pgconn *c)
{
    if (h2o_timeout_is_linked(&c->flush_entry)) h2o_timeout_unlink(&c->flush_entry);
    if (!c->unsynced) return 0;
    c->unsynced = false;
    struct pgseg *tail = c->nsegs > 0 ? &c->segs[(c->seg_head + c->nsegs - 1) % c->seg_cap] : NULL;
    if (tail != NULL && tail->syncs == 0)
        tail->syncs = 1;
    else
        push_seg(c, NULL);
    if (!PQpipelineSync(c->pg)) return -1;
    return flush(c);
}

/* A readonly Execute of a statement prepared here, with the session's statement_timeout: its
 * segment needs nothing that an aborted group would leave half done. */
static bool groupable(struct pgconn *c, struct pgjob *job)
{
    struct query_def *q = job->q;
    return q->readonly && q->described && job->bound && !job->replan &&
           job->timeout_ms == c->session_timeout_ms && stmt_cache_touch(&c->stmts, q->id);
}

/* Sends the job's segment. Returns -1 when the connection failed (the caller closes it). */
static int send_job(struct pgconn *c, struct pgjob *job)
{
    struct query_def *q = job->q;
    bool bind_failed = false;
    if (q->described && !job->bound) {
        if (job->owner == NULL || job->bind(job) != 0)
            bind_failed = true;
        else
            job->bound = true;
    }
    if (!bind_failed && groupable(c, job)) {
        struct pgseg *s = push_seg(c, job);
        s->syncs = 0;
        job->sent_us = s->sent_us;
        job->lsn = 0;
        if (send_execute(c, s, job) != 0) return -1;
        c->unsynced = true;
        if (!h2o_timeout_is_linked(&c->flush_entry))
            h2o_timeout_link(c->loop, c->flush_timeout, &c->flush_entry);
        return 0;
    }
    if (sync_group(c) != 0) { /* what went before keeps its own Sync */
        push_seg(c, job);     /* in flight, unsent: the holder takes it back with the others */
        return -1;
    }
    struct pgseg *s = push_seg(c, job);
    job->sent_us = s->sent_us;
    job->lsn = 0;
    char sql[64];

    if (job->replan) {
        /* 0A000: the statement exists but its plan is stale; 26000: it is gone already. */
        if (stmt_cache_touch(&c->stmts, q->id)) {
            forget_stmt(c, q->id);
            snprintf(sql, sizeof sql, "DEALLOCATE %s", q->stmt_name);
            if (send_simple(c, s, CMD_DEALLOCATE, sql) != 0) return -1;
        }
        job->replan = false;
    }
    if (!stmt_cache_touch(&c->stmts, q->id)) {
        uint32_t evicted = stmt_cache_insert(&c->stmts, q->id);
        if (evicted != 0) {
            snprintf(sql, sizeof sql, "DEALLOCATE s%u", evicted);
            if (send_simple(c, s, CMD_DEALLOCATE, sql) != 0) return -1;
        }
        s->cmds[s->ncmds++] = CMD_PREPARE;
        s->prepared_id = q->id;
        if (!PQsendPrepare(c->pg, q->stmt_name, q->sql_numbered, q->described ? q->nparams : 0,
                           q->described ? q->param_types : NULL))
            return -1;
        if (!q->described) {
            s->cmds[s->ncmds++] = CMD_DESCRIBE;
            if (!PQsendDescribePrepared(c->pg, q->stmt_name)) return -1;
        }
    } else if (!q->described) {
        /* Prepared here, but another connection found the statement stale and asked for a new
         * description: describe it here before binding. */
        s->cmds[s->ncmds++] = CMD_DESCRIBE;
        if (!PQsendDescribePrepared(c->pg, q->stmt_name)) return -1;
    }
    if (bind_failed)
        job->status = PGJOB_BIND_ERROR;
    else if (q->described && send_execute(c, s, job) != 0)
        return -1;
    if (!PQpipelineSync(c->pg)) return -1;
    if (!q->readonly && memchr(s->cmds, CMD_EXECUTE, s->ncmds) != NULL && send_walpos(c, s) != 0) return -1;
    return flush(c);
}

void pgconn_start(struct pgconn *c, struct pgjob *job)
{
    if (c->njobs++ == 0) set_state(c, PGCONN_PIPELINE, NULL);
    job->attempts++;
    job->conn = c;
    job->status = PGJOB_OK;
    if (send_job(c, job) != 0) lost(c, PQerrorMessage(c->pg));
}

static void forget_stmt(struct pgconn *c, uint32_t id)
{
    stmt_cache_remove(&c->stmts, id);
}

struct pgjob *pgconn_job_at(const struct pgconn *c, unsigned i)
{
    return c->segs[(c->seg_head + i) % c->seg_cap].job;
}

bool pgconn_executed_at(const struct pgconn *c, unsigned i)
{
    const struct pgseg *s = &c->segs[(c->seg_head + i) % c->seg_cap];
    return !s->aborted && memchr(s->cmds, CMD_EXECUTE, s->ncmds) != NULL;
}

bool pgconn_rolled_back_at(const struct pgconn *c, unsigned i)
{
    const struct pgseg *s = &c->segs[(c->seg_head + i) % c->seg_cap];
    return s->job != NULL && s->job->status == PGJOB_DB_ERROR && !s->completed;
}

void pgconn_ping(struct pgconn *c)
{
    if (c->state != PGCONN_IDLE || c->nsegs > 0) return;
    push_seg(c, NULL);
    /* A failure here means the connection is broken: the read watcher reports it (level-triggered),
     * so the caller never loses c under its feet. */
    if (PQpipelineSync(c->pg)) flush(c);
}

static void take_error(struct pgjob *job, PGresult *r)
{
    if (job->result == NULL || job->status != PGJOB_DB_ERROR) {
        if (job->result) PQclear(job->result);
        job->result = r;
        job->status = PGJOB_DB_ERROR;
    } else {
        PQclear(r);
    }
}

static void on_cmd_result(struct pgconn *c, struct pgseg *s, PGresult *r)
{
    struct pgjob *job = s->job;
    enum seg_cmd cmd = s->cur < s->ncmds ? s->cmds[s->cur] : CMD_EXECUTE;
    if (cmd == CMD_WALPOS_PREPARE || cmd == CMD_WALPOS) {
        /* a failure (a standby, a cancel) only leaves the position unknown */
        if (cmd == CMD_WALPOS_PREPARE && PQresultStatus(r) != PGRES_COMMAND_OK) c->walpos_prepared = false;
        if (cmd == CMD_WALPOS) job->lsn = walpos_of(r);
        PQclear(r);
        return;
    }
    ExecStatusType st = PQresultStatus(r);
    bool failed = st == PGRES_FATAL_ERROR || st == PGRES_PIPELINE_ABORTED || st == PGRES_BAD_RESPONSE;
    if (failed) {
        if (cmd == CMD_PREPARE) forget_stmt(c, s->prepared_id);
        if (cmd == CMD_SET) c->session_timeout_ms = -1;
        if (st == PGRES_PIPELINE_ABORTED) {
            if (job->status == PGJOB_OK) s->aborted = true; /* by another job's error */
            PQclear(r);
        } else {
            take_error(job, r);
        }
        return;
    }
    if (cmd == CMD_DESCRIBE) {
        int n = PQnparams(r);
        Oid types[n > 0 ? n : 1];
        for (int i = 0; i < n; i++) types[i] = PQparamtype(r, i);
        query_def_learn_types(job->q, types, n);
        PQclear(r);
    } else if (cmd == CMD_EXECUTE) {
        if (job->result) PQclear(job->result);
        job->result = r;
        s->completed = true;
    } else {
        PQclear(r);
    }
}

static bool stale_statement(const struct pgjob *job)
{
    if (job->status != PGJOB_DB_ERROR || job->result == NULL) return false;
    const char *state = PQresultErrorField(job->result, PG_DIAG_SQLSTATE);
    return state && (strcmp(state, "26000") == 0 || strcmp(state, "0A000") == 0);
}

/* The Sync of the head segment arrived. */
static void on_segment_done(struct pgconn *c)
{
    struct pgseg *s = &c->segs[c->seg_head];
    struct pgjob *job = s->job;
    c->checked_ms = now_ms();
    if (job == NULL) { /* a ping: on_room follows, where the holder reads what the server said */
        c->seg_head = (c->seg_head + 1) % c->seg_cap;
        c->nsegs--;
        return;
    }
    bool executed = memchr(s->cmds, CMD_EXECUTE, s->ncmds) != NULL;
    /* A segment runs as one implicit transaction: when anything in it failed, its SET of
     * statement_timeout was rolled back with it. */
    if (job->status != PGJOB_OK && memchr(s->cmds, CMD_SET, s->ncmds) != NULL) c->session_timeout_ms = -1;
    c->seg_head = (c->seg_head + 1) % c->seg_cap;
    c->nsegs--;

    if (job->status == PGJOB_OK && s->aborted) {
        /* Another job of its group failed first: the server skipped this one, send it again. */
        if (send_job(c, job) != 0) lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (job->status == PGJOB_OK && !executed) {
        /* The statement was described just now (or another job reset its description while this
         * one waited): bind and execute on the same connection. */
        if (send_job(c, job) != 0) lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (stale_statement(job) && job->attempts < 3) {
        /* Dropped or invalidated by DDL: prepare afresh and run once more, unseen by the client. */
        PQclear(job->result);
        job->result = NULL;
        query_def_forget_types(job->q);
        job->bound = false;
        job->replan = true;
        job->status = PGJOB_OK;
        job->attempts++;
        if (send_job(c, job) != 0) lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (--c->njobs == 0) {
        /* done before its group's Sync went out (libpq sent a large group early): the lone Sync
         * goes now, so that an idle connection never waits for the end of the turn. A failure
         * means a broken connection, which the read watcher reports (as for a ping). */
        (void)sync_group(c);
        c->idle_since_ms = now_ms();
        set_state(c, PGCONN_IDLE, NULL);
    }
    if (job->status == PGJOB_OK && job->result == NULL) { /* never an empty success */
        job->status = PGJOB_UNAVAILABLE;
        snprintf(job->errmsg, sizeof job->errmsg, "the statement did not run");
    }
    job->conn = NULL;
    c->events->on_job_done(c->events_arg, c, job);
}

static void read_results(struct pgconn *c)
{
    while (c->nsegs > 0 && ready(c)) {
        if (PQisBusy(c->pg)) return;
        PGresult *r = PQgetResult(c->pg);
        struct pgseg *s = &c->segs[c->seg_head];
        if (r == NULL) {
            if (!s->in_cmd) return;
            s->in_cmd = false;
            s->cur++;
            if (s->syncs == 0 && s->cur >= s->ncmds) on_segment_done(c); /* grouped: no Sync of its own */
            continue;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            if (--s->syncs == 0) on_segment_done(c);
            continue;
        }
        s->in_cmd = true;
        on_cmd_result(c, s, r);
    }
}

/* Leased use: results go to the owner one by one, in order. */
static void on_io_leased(struct pgconn *c)
{
    int f = PQflush(c->pg);
    if (f < 0 || !PQconsumeInput(c->pg)) {
        lost(c, PQerrorMessage(c->pg));
        return;
    }
    if (f == 1) {
        want_write(c);
    } else if (c->wants_writable && c->owner) {
        c->wants_writable = false;
        c->owner->on_writable(c->owner->arg);
        if (c->state != PGCONN_LEASED) return;
    }
    /* While COPY IN runs, results only come after pgconn_end_copy. */
    while (c->owner != NULL && !c->copying && !c->paused && !PQisBusy(c->pg)) {
        PGresult *r = PQgetResult(c->pg);
        if (r != NULL && PQresultStatus(r) == PGRES_COPY_IN) c->copying = true;
        struct pgconn_owner *owner = c->owner;
        owner->on_result(owner->arg, r); /* may release, discard or send again */
        if (r == NULL || c->state != PGCONN_LEASED || c->owner != owner) return;
    }
    if (c->state == PGCONN_LEASED && PQstatus(c->pg) == CONNECTION_BAD) lost(c, PQerrorMessage(c->pg));
}

static void on_io_pipeline(struct pgconn *c);

/* A job's callback may close c (and the holder free it) while the read loop still walks c's
 * segments: the free waits for the end of this event. */
static void on_io(h2o_socket_t *sock, const char *err)
{
    (void)err;
    struct pgconn *c = sock->data;
    c->in_io = true;
    on_io_pipeline(c);
    c->in_io = false;
    if (c->free_pending) pgconn_free(c);
}

static void on_io_pipeline(struct pgconn *c)
{
    if (c->state == PGCONN_CONNECTING) {
        connect_step(c);
        return;
    }
    if (c->state == PGCONN_LEASED) {
        on_io_leased(c);
        return;
    }
    if (!ready(c)) return;
    if (flush(c) != 0 || !PQconsumeInput(c->pg)) {
        lost(c, PQerrorMessage(c->pg));
        return;
    }
    read_results(c);
    if (!ready(c)) return;
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        lost(c, PQerrorMessage(c->pg));
        return;
    }
    c->events->on_room(c->events_arg, c);
}

/* The oldest segment when it is a write whose commit came back (its first Sync) while its WAL
 * position did not: it is taken off c, for it is done, not lost. NULL otherwise. */
static struct pgjob *take_committed(struct pgconn *c)
{
    if (c->nsegs == 0) return NULL;
    struct pgseg *s = &c->segs[c->seg_head];
    if (s->syncs != 1 || memchr(s->cmds, CMD_WALPOS, s->ncmds) == NULL || s->job->status != PGJOB_OK ||
        s->job->result == NULL)
        return NULL;
    c->seg_head = (c->seg_head + 1) % c->seg_cap;
    c->nsegs--;
    c->njobs--;
    s->job->conn = NULL;
    return s->job;
}

/* Takes the connection out of service: the owner of a lease hears first, then the holder, which
 * takes back the in-flight jobs and frees c. A write that had committed is answered as done,
 * without its WAL position, once c is gone (so that nothing new is started on c). */
static void lost(struct pgconn *c, const char *why)
{
    if (c->state == PGCONN_CLOSED || c->closing) return;
    c->closing = true; /* an owner that discards c from its on_lost changes nothing */
    if (h2o_timeout_is_linked(&c->flush_entry)) h2o_timeout_unlink(&c->flush_entry);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", why && *why ? why : "connection lost");
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = '\0';
    struct pgconn_owner *owner = c->owner;
    c->owner = NULL;
    if (owner != NULL) owner->on_lost(owner->arg, msg);
    struct pgjob *committed = take_committed(c);
    const struct pgconn_events *events = c->events;
    void *events_arg = c->events_arg;
    set_state(c, PGCONN_CLOSED, msg);                                        /* the holder frees c */
    if (committed != NULL) events->on_job_done(events_arg, NULL, committed); /* c is gone */
}

void pgconn_close(struct pgconn *c)
{
    lost(c, "closed");
}

/* --- leased use ---------------------------------------------------------------------------- */

int pgconn_lease(struct pgconn *c)
{
    if (PQexitPipelineMode(c->pg) != 1) return -1;
    set_state(c, PGCONN_LEASED, NULL);
    return 0;
}

void pgconn_own(struct pgconn *c, struct pgconn_owner *owner)
{
    c->owner = owner;
}

int pgconn_send(struct pgconn *c, const char *sql, int nparams, const char *const *values)
{
    if (!PQsendQueryParams(c->pg, sql, nparams, NULL, values, NULL, NULL, 0) || pgconn_flush(c) < 0) {
        lost(c, PQerrorMessage(c->pg));
        return -1;
    }
    return 0;
}

int pgconn_send_simple(struct pgconn *c, const char *sql)
{
    if (!PQsendQuery(c->pg, sql) || pgconn_flush(c) < 0) {
        lost(c, PQerrorMessage(c->pg));
        return -1;
    }
    return 0;
}

int pgconn_send_rows(struct pgconn *c, const char *sql, int nparams, const char *const *values)
{
    if (!PQsendQueryParams(c->pg, sql, nparams, NULL, values, NULL, NULL, 0) || !PQsetSingleRowMode(c->pg) ||
        pgconn_flush(c) < 0) {
        lost(c, PQerrorMessage(c->pg));
        return -1;
    }
    return 0;
}

void pgconn_pause(struct pgconn *c, bool paused)
{
    if (c->paused == paused || c->sock == NULL) return;
    c->paused = paused;
    if (paused) {
        h2o_socket_read_stop(c->sock);
    } else {
        h2o_socket_read_start(c->sock, on_io);
        pgconn_yield(c); /* libpq may hold results already read: on_io delivers them */
    }
}

int pgconn_begin(struct pgconn *c)
{
    int want = c->cfg->statement_timeout_ms;
    if (c->session_timeout_ms == want) return pgconn_send(c, "BEGIN", 0, NULL);
    char sql[80];
    snprintf(sql, sizeof sql, "SET statement_timeout = %d; BEGIN", want);
    c->session_timeout_ms = want;
    if (!PQsendQuery(c->pg, sql) || pgconn_flush(c) < 0) {
        lost(c, PQerrorMessage(c->pg));
        return -1;
    }
    return 0;
}

int pgconn_put_copy(struct pgconn *c, const char *data, size_t len)
{
    if (PQputCopyData(c->pg, data, (int)len) != 1) {
        lost(c, PQerrorMessage(c->pg));
        return -1;
    }
    return 0;
}

int pgconn_end_copy(struct pgconn *c, const char *errmsg)
{
    c->copying = false;
    if (PQputCopyEnd(c->pg, errmsg) != 1 || pgconn_flush(c) < 0) {
        lost(c, PQerrorMessage(c->pg));
        return -1;
    }
    return 0;
}

int pgconn_flush(struct pgconn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) return -1;
    if (r == 1) {
        c->wants_writable = true;
        want_write(c);
    }
    return r;
}

void pgconn_yield(struct pgconn *c)
{
    c->wants_writable = true;
    want_write(c);
}

void pgconn_release(struct pgconn *c)
{
    pgconn_pause(c, false); /* idle connections are always read: a close is seen at once */
    c->owner = NULL;
    c->copying = c->wants_writable = false;
    if (PQtransactionStatus(c->pg) != PQTRANS_IDLE || PQenterPipelineMode(c->pg) != 1) {
        lost(c, "released inside a transaction");
        return;
    }
    c->idle_since_ms = now_ms();
    set_state(c, PGCONN_IDLE, NULL);
    c->events->on_room(c->events_arg, c);
}

void pgconn_discard(struct pgconn *c)
{
    c->owner = NULL;
    lost(c, "discarded by its owner");
}
