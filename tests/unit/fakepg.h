/* fakepg.h — a scripted PostgreSQL server for unit tests: the v3 wire protocol on 127.0.0.1, served
 * from a thread of its own, answering each statement by what its SQL text asks for, so that a real
 * libpq client (and pool.c / pgconn.c above it) meets errors, delays, cancels and lost connections
 * exactly when a test wants them. */
#ifndef FAKEPG_H
#define FAKEPG_H

#include <stdbool.h>

/* What a statement's SQL asks for (words may be combined; the text is otherwise ignored):
 *   fail:XXXXX   ErrorResponse with SQLSTATE XXXXX, message "scripted failure XXXXX"
 *   sleep:MS     the answer comes MS milliseconds later; other connections are served meanwhile,
 *                and a CancelRequest ends the wait with 57014
 *   die          at execution the server closes the connection, with no ErrorResponse
 *   readonly     ErrorResponse 25006 when the server is a standby and the statement is no SELECT
 *   rows:N       N rows, column "v" = 1..N
 *   echo         one row, "v" = the first parameter (NULL without one); so does "SELECT $1..."
 *   COPY ... FROM STDIN   CopyIn; "COPY n" counts the newline-terminated lines received
 * Anything else: a SELECT gives one row "v" = 1; BEGIN, COMMIT, ROLLBACK, SET, RESET and
 * DEALLOCATE [ALL|name] do what they say (transaction status, named statements); INSERT gives
 * "INSERT 0 1", DELETE "DELETE 1", the rest "UPDATE 1". In a failed transaction everything but
 * COMMIT/ROLLBACK gets 25P02. Simple queries may hold several statements separated by ';'. */

struct fakepg;

/* Counts since fakepg_start; `open` is the client connections open now. */
struct fakepg_stats {
    int accepted;       /* TCP connections accepted, refused ones and CancelRequests included */
    int open;           /* client connections open now */
    int parses;         /* Parse messages */
    int executes;       /* Execute messages */
    int simple_queries; /* Query messages */
    int cancels;        /* CancelRequests, whether or not they found a statement to cancel */
    int syncs;          /* Sync messages */
};

/* Starts a server on 127.0.0.1 at a port the kernel picks; it is listening when this returns.
 * Aborts the process when it cannot start. The caller owns it and ends it with fakepg_stop. */
struct fakepg *fakepg_start(void);

/* Closes every connection, ends the thread and frees f. */
void fakepg_stop(struct fakepg *f);

/* A libpq connection string for the server (owned by f, valid until fakepg_stop):
 * "host=127.0.0.1 port=N user=test dbname=test sslmode=disable gssencmode=disable". */
const char *fakepg_conninfo(const struct fakepg *f);

/* The TCP port the server listens on. */
int fakepg_port(const struct fakepg *f);

/* While refuse is true, new connections are accepted and closed at once (libpq's connect fails). */
void fakepg_refuse(struct fakepg *f, bool refuse);

/* Makes the server a standby (in_hot_standby=on) or a primary. New connections report it at
 * startup; open ones get a ParameterStatus before their next ReadyForQuery. */
void fakepg_set_standby(struct fakepg *f, bool standby);

/* Closes every client connection abruptly (no ErrorResponse); done when this returns. */
void fakepg_kill_all(struct fakepg *f);

/* A consistent snapshot of the counters; callable from any thread. */
struct fakepg_stats fakepg_stats(struct fakepg *f);

#endif
