/* events.h — GET /events/{name}: a sluice.channel's notifications as Server-Sent Events, on the
 * worker that accepted the stream (evhub.h holds the channel's events for the whole process). */
#ifndef SLUICE_EVENTS_H
#define SLUICE_EVENTS_H

#include <h2o.h>
#include <stddef.h>

struct worker;

/* Connects w to the hubs' news (call on w's thread, before it serves). */
void events_worker_init(struct worker *w);
/* Ends every stream of w with its last event sent (the worker stops). */
void events_worker_stop(struct worker *w);
/* Serves GET /events/{name} (name[0..len) as in the path). Always answers; returns 0. */
int events_handle(struct worker *w, h2o_req_t *req, const char *name, size_t len);

#endif
