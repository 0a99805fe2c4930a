/* cancel.h — asks the server to cancel the statement running on a connection. libpq's PQcancel
 * blocks (it opens a new connection), so requests go to one background thread. */
#ifndef SLUICE_CANCEL_H
#define SLUICE_CANCEL_H

#include <libpq-fe.h>

/* Starts the thread; call once before serving. */
void cancel_start(void);
/* Stops it after the queued cancels went out. */
void cancel_stop(void);
/* Queues a cancel for what pg runs now. Never blocks; a failure is only logged. */
void cancel_request(PGconn *pg);

#endif
