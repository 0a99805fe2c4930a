/* pgconn.h — one PGconn on the worker's event loop: asynchronous connect, pipeline mode, the
 * prepared-statement cache, results matched to jobs in order. */
#ifndef SLUICE_PGCONN_H
#define SLUICE_PGCONN_H

#include <h2o.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "pgjob.h"
#include "stmt.h"

/* A connection's state is the list of its pool it sits on; every change is reported through
 * pgconn_events.on_state, so the holder's lists always agree with c->state. */
enum pgconn_state {
    PGCONN_CONNECTING, /* connect in progress */
    PGCONN_IDLE,       /* ready, nothing in flight */
    PGCONN_PIPELINE,   /* ready, njobs pipelined jobs in flight */
    PGCONN_LEASED,     /* out of pipeline mode, serving one owner (COPY, transaction, stream) */
    PGCONN_CLOSED,     /* failed or closed: the holder frees it */
};
enum { PGCONN_NSTATES = PGCONN_CLOSED }; /* the states a holder keeps a list for */

/* How a connection reports to whoever holds it (its pool), as h2o's redis client does: the
 * connection never reaches into its holder. */
struct pgconn_events {
    /* c->state changed from `from`. On PGCONN_CLOSED (why says why) the jobs that were in flight
     * are still in c's segments (pgconn_job_at) and the holder frees c with pgconn_free. */
    void (*on_state)(void *arg, struct pgconn *c, enum pgconn_state from, const char *why);
    /* Input was processed: c may take more work, or has finished what it had. */
    void (*on_room)(void *arg, struct pgconn *c);
    /* A pipelined job of c finished (job->status and job->result are set; job->conn is NULL). c is
     * NULL for a write that committed on a connection lost before its WAL position came. */
    void (*on_job_done)(void *arg, struct pgconn *c, struct pgjob *job);
};

/* One pipeline segment: the commands sent for one job, ended by a Sync (syncs = 1), or sent
 * without one because the next segment's Sync covers it (syncs = 0: a readonly Execute of a
 * statement already prepared, grouped with the others of the same turn of the event loop; it is
 * done when its last command's result came). A segment without a job is a lone Sync: a ping, or
 * the Sync of a group whose last job was done before it. */
enum { SEG_MAX_CMDS = 7 };
enum seg_cmd {
    CMD_DEALLOCATE,
    CMD_PREPARE,
    CMD_DESCRIBE,
    CMD_SET,
    CMD_EXECUTE,
    CMD_WALPOS_PREPARE,
    CMD_WALPOS
};
/* A write's segment is followed, in the same flush, by WALPOS_SQL (prepared once per connection)
 * and a second Sync: the first Sync commits the write, the query after it reads where the WAL is
 * (job->lsn). */
struct pgseg {
    struct pgjob *job;
    uint8_t cmds[SEG_MAX_CMDS];
    uint8_t ncmds, cur;
    uint8_t syncs; /* Syncs still to come: 2 while a write's WAL position follows its commit */
    bool in_cmd;
    uint32_t prepared_id; /* the statement this segment prepares, 0 if none */
    bool completed;       /* the Execute's own result came back without an error */
    bool aborted;         /* skipped after another job's error in the same group: never ran */
    uint64_t sent_us;
};

/* The owner of a leased connection (COPY, transactions, streams). Callbacks never run
 * after pgconn_release or pgconn_discard. */
struct pgconn_owner {
    void (*on_result)(void *arg, PGresult *r);   /* each result, the owner clears it; NULL: command done */
    void (*on_writable)(void *arg);              /* after pgconn_flush returned 1: output drained */
    void (*on_lost)(void *arg, const char *why); /* the connection failed; it is gone afterwards */
    void *arg;
};

struct pgconn {
    struct pgconn *prev, *next; /* the holder's list for its state */
    const struct pgconn_events *events;
    void *events_arg;
    const struct pool_config *cfg; /* the holder's settings, read when they are needed */
    h2o_loop_t *loop;
    PGconn *pg;
    h2o_socket_t *sock; /* h2o's dup() of libpq's fd */
    enum pgconn_state state;
    struct pgseg *segs; /* ring of in-flight segments */
    unsigned seg_head, nsegs, seg_cap;
    int njobs; /* jobs with a segment in flight */
    struct stmt_cache stmts;
    int session_timeout_ms; /* statement_timeout now in force, -1 unknown */
    bool walpos_prepared;   /* WALPOS_SQL is prepared here (or its Parse is on the way) */
    uint64_t created_ms, expires_ms, idle_since_ms;
    h2o_timeout_entry_t connect_entry;
    /* The jobs of one turn of the loop share one Sync and one send: the last of them is followed
     * by a Sync at the end of the turn (a 0 ms timeout of the loop). */
    h2o_timeout_t *flush_timeout;
    h2o_timeout_entry_t flush_entry;
    bool unsynced;     /* grouped segments were sent since the last Sync */
    int stmts_counted; /* the holder's: stmts.count as last added to its gauge */
    bool closing;      /* lost() runs: a nested close (an owner discarding c) is a no-op */
    bool in_io;        /* on_io runs: pgconn_free waits until it returns (free_pending) */
    bool free_pending;
    uint64_t checked_ms; /* when the server last reported its state (a ReadyForQuery) */
    /* The holder's, for following the server's role (pool.c): */
    int host;          /* index of the host connected to (pghosts.h), -1 while unknown */
    int role;          /* enum pg_role last seen on this connection */
    bool host_counted; /* counted in the holder's connections of that host */
    bool retiring;     /* takes no new work; closed once idle (its server changed role) */
    bool fallback;     /* a primary serving a prefer-standby pool while no standby is up */
    bool trial;        /* opened beyond the pool's size to see whether a host is back */
    /* PGCONN_LEASED only: */
    struct pgconn_owner *owner;
    bool copying;        /* COPY IN runs: results come only after pgconn_end_copy */
    bool wants_writable; /* the owner waits for on_writable */
    bool paused;         /* results wait in libpq (the socket is not read) until resumed */
};

/* Starts connecting with cfg's url and settings (cfg must outlive c). flush_timeout is a 0 ms
 * timeout of loop: the end of the turn where grouped jobs get their Sync. over_keys/over_vals
 * (NULL-terminated, or NULL) are libpq parameters that override the URL's (one host of a
 * multi-host URL); they are read during the call only. Returns the connection (CONNECTING) or
 * NULL when libpq refused at once (errbuf says why); the outcome is reported through events.
 * connect_timeout bounds the whole connect. */
struct pgconn *pgconn_connect(h2o_loop_t *loop, const struct pool_config *cfg, h2o_timeout_t *connect_timeout,
                              h2o_timeout_t *flush_timeout, const char *const *over_keys,
                              const char *const *over_vals, const struct pgconn_events *events, void *arg,
                              char *errbuf, size_t errlen);
/* Sends job's commands (c is IDLE or PIPELINE, and becomes PIPELINE). A readonly job of a
 * statement prepared on c joins the other such jobs of this turn of the loop under one Sync and
 * one send; when one of them fails, those after it in the group were never run and are sent
 * again. Anything else (a write, a first PREPARE, a change of statement_timeout) has a Sync of its
 * own. The outcome comes back through events->on_job_done; a failure to send closes c. */
void pgconn_start(struct pgconn *c, struct pgjob *job);
/* The job of the i-th in-flight segment, oldest first (i < c->nsegs); NULL for a lone Sync. */
struct pgjob *pgconn_job_at(const struct pgconn *c, unsigned i);
/* True when the i-th in-flight segment's Execute was handed to libpq: the server may have run
 * the statement (and committed it) even though no result came back. */
bool pgconn_executed_at(const struct pgconn *c, unsigned i);
/* True when the server ended the i-th segment's statement with an error before the statement
 * completed (a shutdown's FATAL 57P01 among them): its implicit transaction rolled back, so
 * nothing of it was committed and it may run again. (After a commit interrupted in a synchronous
 * replication wait the server sends only a warning, and the statement completed.) */
bool pgconn_rolled_back_at(const struct pgconn *c, unsigned i);
/* True when another job may be pipelined now (never on a retiring connection). */
bool pgconn_has_room(const struct pgconn *c, uint64_t now_us);
/* Sends a lone Sync on an IDLE connection with nothing in flight (else does nothing): the
 * server answers with ReadyForQuery, preceded by any reported parameter that changed (such as
 * in_hot_standby after a promotion), so an idle connection learns its server's role. The
 * answer updates checked_ms and is followed by on_room; c stays IDLE meanwhile. Never closes c
 * itself: a broken connection is reported from the loop. */
void pgconn_ping(struct pgconn *c);
/* Closes the connection; in-flight jobs are handed back with pool_conn_failed semantics. */
void pgconn_close(struct pgconn *c);

/* --- leased use: the connection leaves pipeline mode and serves one owner ------------------ */
/* Leases an IDLE connection (it becomes LEASED). Returns 0, or -1 when it could not leave
 * pipeline mode (the caller closes it). */
int pgconn_lease(struct pgconn *c);
void pgconn_own(struct pgconn *c, struct pgconn_owner *owner);
/* Sends one statement (text parameters, may be 0). Results come to owner->on_result, then NULL.
 * Returns 0, or -1 when the connection failed (on_lost follows). */
int pgconn_send(struct pgconn *c, const char *sql, int nparams, const char *const *values);
/* Sends sql with the simple protocol: it may hold several statements, whose results come to the
 * owner in turn, then NULL (an error ends the string there). Returns 0 or -1 like pgconn_send. */
int pgconn_send_simple(struct pgconn *c, const char *sql);
/* Like pgconn_send, in single-row mode: each row comes as its own PGRES_SINGLE_TUPLE result,
 * then a PGRES_TUPLES_OK without rows (or the error), then NULL. libpq 15 leaves single-row mode
 * on for the first query pipelined afterwards: send one more statement (an empty one will do)
 * before pgconn_release. */
int pgconn_send_rows(struct pgconn *c, const char *sql, int nparams, const char *const *values);
/* Stops (paused) or restarts handing results to the owner. While paused the socket is not read,
 * so a server with more to send waits: a reader slower than the query holds no more than
 * libpq's buffer. Resuming delivers what is buffered at the next turn of the loop. */
void pgconn_pause(struct pgconn *c, bool paused);
/* Sends BEGIN, first restoring the pool's statement_timeout when a query of this connection set
 * another (one simple-protocol round trip: the owner sees the SET's result, then BEGIN's).
 * Returns 0 or -1 like pgconn_send. */
int pgconn_begin(struct pgconn *c);
/* After a PGRES_COPY_IN result: queues data. Returns 0, or -1 on failure. */
int pgconn_put_copy(struct pgconn *c, const char *data, size_t len);
/* Ends the COPY (errmsg non-NULL aborts it on the server). Returns 0 or -1. */
int pgconn_end_copy(struct pgconn *c, const char *errmsg);
/* Pushes queued output. Returns 0 when all is sent, 1 when on_writable will follow, -1 on failure. */
int pgconn_flush(struct pgconn *c);
/* Asks for on_writable at the next turn of the loop (the socket is watched for writability):
 * a way to yield between batches that costs no timer delay. */
void pgconn_yield(struct pgconn *c);
/* Gives the connection back: IDLE again, or closed if it is inside a transaction. */
void pgconn_release(struct pgconn *c);
/* Closes it without any further callback (the owner went away mid-conversation). */
void pgconn_discard(struct pgconn *c);
void pgconn_free(struct pgconn *c);

#endif
