/* listener.h — LISTEN/NOTIFY for the whole process: one dedicated libpq connection per pool,
 * on a thread of its own with its own event loop, LISTENing to every channel anyone subscribed
 * to. Each notification is handed to the subscriptions of its channel, either on the listener's
 * thread or on another thread's loop (a target). A lost connection is made again with backoff,
 * every channel is LISTENed again, then each subscription's on_reset runs: notifications sent
 * while it was down are lost and cannot be known. */
#ifndef SLUICE_LISTENER_H
#define SLUICE_LISTENER_H

#include <h2o.h>
#include <stddef.h>

#include "config.h"

/* A notification: channel, payload[0..len) (NUL-terminated too). Both are only valid during the
 * call. */
typedef void (*listener_notify_cb)(void *arg, const char *channel, const char *payload, size_t len);
/* The LISTEN connection came back after it was lost: channel is LISTENed again, and whatever was
 * notified in between is gone. */
typedef void (*listener_reset_cb)(void *arg, const char *channel);

/* Where a subscription's callbacks run: another thread's event loop, through its multithread
 * queue. Initialise it on that loop's thread (h2o's receivers are registered unlocked); it must
 * outlive every subscription that names it. */
struct listener_target {
    h2o_multithread_receiver_t receiver;
};

struct listener_sub;

/* Starts the listener thread for cfg's pools (cfg must outlive the listener: the pool names and
 * URLs are copied, but only here). No connection is made before a first subscription to a
 * pool. Call once per process; returns 0, or -1 when it runs already or its
 * thread cannot be made (then nothing can subscribe). */
int listener_start(const struct config *cfg);
/* Stops the thread, closes the connections and frees every subscription still there (their
 * callbacks never run again). Targets stay registered: their owners dispose of them. */
void listener_stop(void);

void listener_target_init(struct listener_target *t, h2o_multithread_queue_t *queue);
/* Unregisters t; call on its thread, after every subscription naming it was cancelled and once
 * its queue was read since (h2o asserts that no message is left for a receiver it unregisters). */
void listener_target_dispose(struct listener_target *t);

/* Subscribes to channel (a PostgreSQL identifier, as written: case counts) on pool_name's LISTEN
 * connection. With target NULL the callbacks run on the listener's thread, under the listener's
 * lock: they must be quick and must not call listener_*. With a target they run on its loop.
 * on_reset may be NULL. Returns the subscription, or NULL when no pool has that name or the
 * listener is not started. Any thread. */
struct listener_sub *listener_subscribe(const char *pool_name, const char *channel,
                                        listener_notify_cb on_notify, listener_reset_cb on_reset, void *arg,
                                        struct listener_target *target);
/* Cancels s: no callback of it starts after this returns (a targeted one: call it on the
 * target's thread, so none is running either). The channel is UNLISTENed once nobody follows it.
 * Any thread for target NULL. */
void listener_unsubscribe(struct listener_sub *s);

/* The server process id of pool_name's LISTEN connection, 0 while it is not connected. */
int listener_backend_pid(const char *pool_name);
/* How many times pool_name's LISTEN connection came back after a loss (it then reset its
 * subscriptions). */
unsigned listener_resets(const char *pool_name);

#endif
