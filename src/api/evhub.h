/* evhub.h — the process's live event channels: one hub per sluice.channel, fed by the listener
 * (one LISTEN connection per pool, listener.h) and read by every worker. A hub numbers its events
 * and keeps the last `buffer` of them in a ring of reference-counted, ready-to-send frames, so a
 * subscriber holds only a position in it. Workers learn of news through a message on their own
 * loop (coalesced: one per hub until they read it). */
#ifndef SLUICE_EVHUB_H
#define SLUICE_EVHUB_H

#include <h2o.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "endpoint.h"

/* One notification, immutable once made; freed by whoever drops the last reference. */
struct evhub_event {
    int refs; /* atomic */
    uint64_t id;
    size_t len;      /* of the payload */
    size_t framelen; /* of the frame */
    char *payload;   /* NUL-terminated, inside the same allocation */
    char frame[];    /* "id: N\ndata: ...\n\n", a data: line per line of the payload */
};

/* Why an event did not reach a subscriber (sluice_events_dropped_total's reason label). */
enum evhub_drop { EVHUB_DROP_FILTER, EVHUB_DROP_ERROR, EVHUB_DROP_OVERFLOW, EVHUB_NDROPS };

struct evhub;

/* Called on a worker's loop when hub has news (events, a reset, or it was removed). */
typedef void (*evhub_news_cb)(void *arg, struct evhub *hub);

/* Prepares for nworkers workers (call once, before evhub_sync). */
void evhub_init(int nworkers);
/* Registers worker index's receiver on its queue (call on that worker's thread). */
void evhub_worker_init(int index, h2o_multithread_queue_t *queue, evhub_news_cb cb, void *arg);
/* Makes the hubs match reg's channels (start-up and reload, main thread): a new channel gets a
 * hub and its LISTEN; a channel removed, or whose listen or pool changed, has its hub removed
 * (its subscribers are told, and close). A hub whose channel is unchanged is kept as it is. */
void evhub_sync(const struct registry *reg);
/* Frees every hub (after the workers stopped and the listener was stopped). */
void evhub_free_all(void);

/* The live hub of the channel called name, or NULL. Any thread. */
struct evhub *evhub_find(const char *name);
/* Calls fn(arg, hub) for every hub, removed ones too (on the caller's thread). */
void evhub_each(evhub_news_cb fn, void *arg);
/* The slot in which worker index keeps its own subscribers of hub (only that worker touches it). */
void **evhub_worker_slot(struct evhub *hub, int index);

/* What a subscriber at position `after` (the last id it has) finds in hub. */
struct evhub_read {
    int n;              /* events given, ids after+1.., each with a reference the caller drops */
    bool overflow;      /* the event after `after` is no longer held: the subscriber fell behind */
    bool removed;       /* the channel is gone (reload) */
    uint64_t last_id;   /* the newest id of the hub */
    unsigned reset_gen; /* bumped at each reset of the LISTEN connection */
};
/* Reads up to max events after `after` into out. */
void evhub_read(struct evhub *hub, uint64_t after, struct evhub_event **out, int max, struct evhub_read *r);
/* Where a new subscriber starts: after last_event_id when the ring still holds every event after
 * it (returns true; replay follows), else at the newest event (returns false: some are gone, or
 * the id is not one of this hub's). has_id false: at the newest. */
bool evhub_start(struct evhub *hub, bool has_id, uint64_t last_event_id, uint64_t *start,
                 unsigned *reset_gen);
void evhub_event_unref(struct evhub_event *e);
/* Appends payload's Server-Sent Events frame to b: "id: N", a data: line per line of the payload
 * (CR, LF or CRLF end a line in an event stream), then a blank line. */
struct buf;
void evhub_frame(struct buf *b, uint64_t id, const char *payload, size_t len);

/* Counters (sluice_events_*): any thread. */
void evhub_count_subscriber(struct evhub *hub, int delta);
void evhub_count_delivered(struct evhub *hub, uint64_t n);
void evhub_count_dropped(struct evhub *hub, enum evhub_drop why, uint64_t n);
/* Appends the sluice_events_* families for the live hubs to b (Prometheus text). */
void evhub_metrics(struct buf *b);

#endif
