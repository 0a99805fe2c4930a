/* evhub.c — the process's live event channels (see evhub.h). A hub's notifications arrive on the
 * listener's thread, which numbers them, formats each as a Server-Sent Events frame once, puts it
 * in the ring (dropping the reference of the event it replaces) and wakes each worker once. Ids
 * start at the hub's creation time in milliseconds x 1000, so they keep increasing across
 * restarts and an id from an earlier process is never mistaken for one of this one's. */
#include "evhub.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

struct evhub {
    struct evhub *next; /* every hub ever made, newest first */
    char *name, *listen, *pool;
    pthread_mutex_t lock; /* the ring, last_id, reset_gen, removed */
    struct evhub_event **ring;
    int cap;
    uint64_t first_id; /* the ring holds first_id..last_id (none when first_id > last_id) */
    uint64_t last_id;
    unsigned reset_gen;
    bool removed;
    struct listener_sub *sub;
    int *pending;                              /* per worker, atomic: a news message is on its way */
    void **slots;                              /* per worker: its subscribers (events.c) */
    int subscribers;                           /* atomic */
    uint64_t delivered, dropped[EVHUB_NDROPS]; /* atomic */
};

struct sink {
    h2o_multithread_receiver_t rx;
    evhub_news_cb cb;
    void *arg;
    int ready; /* atomic */
};

struct news {
    h2o_multithread_message_t super;
    struct evhub *hub;
    int worker;
};

static pthread_mutex_t hubs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct evhub *hubs;
static struct sink *sinks;
static int nsinks;

void evhub_init(int nworkers)
{
    nsinks = nworkers;
    sinks = xcalloc((size_t)nworkers, sizeof *sinks);
}

static void on_news(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        struct news *m =
            (struct news *)H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        struct sink *s = &sinks[m->worker];
        __atomic_store_n(&m->hub->pending[m->worker], 0, __ATOMIC_SEQ_CST);
        s->cb(s->arg, m->hub);
        free(m);
    }
}

void evhub_worker_init(int index, h2o_multithread_queue_t *queue, evhub_news_cb cb, void *arg)
{
    struct sink *s = &sinks[index];
    s->cb = cb;
    s->arg = arg;
    h2o_multithread_register_receiver(queue, &s->rx, on_news);
    __atomic_store_n(&s->ready, 1, __ATOMIC_RELEASE);
}

/* Tells every worker that hub changed, once until it has read the news. */
static void wake_workers(struct evhub *hub)
{
    for (int i = 0; i < nsinks; i++) {
        if (!__atomic_load_n(&sinks[i].ready, __ATOMIC_ACQUIRE)) continue;
        if (__atomic_exchange_n(&hub->pending[i], 1, __ATOMIC_SEQ_CST)) continue;
        struct news *m = xcalloc(1, sizeof *m);
        m->hub = hub;
        m->worker = i;
        h2o_multithread_send_message(&sinks[i].rx, &m->super);
    }
}

void evhub_event_unref(struct evhub_event *e)
{
    if (e != NULL && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0) free(e);
}

void evhub_frame(struct buf *b, uint64_t id, const char *payload, size_t len)
{
    buf_printf(b, "id: %llu\ndata: ", (unsigned long long)id);
    for (size_t i = 0; i < len; i++) {
        if (payload[i] == '\r' || payload[i] == '\n') {
            if (payload[i] == '\r' && i + 1 < len && payload[i + 1] == '\n') i++;
            buf_puts(b, "\ndata: ");
        } else {
            buf_putc(b, payload[i]);
        }
    }
    buf_puts(b, "\n\n");
}

/* The event of one notification: its frame, then its payload, in one allocation. */
static struct evhub_event *make_event(uint64_t id, const char *payload, size_t len)
{
    struct buf f = BUF_INIT;
    evhub_frame(&f, id, payload, len);
    struct evhub_event *e = xmalloc(sizeof *e + f.len + len + 1);
    e->refs = 1;
    e->id = id;
    e->len = len;
    memcpy(e->frame, f.data, f.len);
    e->framelen = f.len;
    e->payload = e->frame + f.len;
    if (len) memcpy(e->payload, payload, len);
    e->payload[len] = '\0';
    buf_free(&f);
    return e;
}

/* Listener thread: one NOTIFY of the hub's channel. */
static void on_notify(void *arg, const char *channel, const char *payload, size_t len)
{
    struct evhub *hub = arg;
    pthread_mutex_lock(&hub->lock);
    if (hub->removed) {
        pthread_mutex_unlock(&hub->lock);
        return;
    }
    struct evhub_event *e = make_event(hub->last_id + 1, payload, len);
    hub->last_id = e->id;
    struct evhub_event **slot = &hub->ring[e->id % (uint64_t)hub->cap];
    if (hub->last_id - hub->first_id >= (uint64_t)hub->cap) { /* full: the oldest goes */
        evhub_event_unref(*slot);
        hub->first_id++;
    }
    *slot = e;
    pthread_mutex_unlock(&hub->lock);
    wake_workers(hub);
}

/* Listener thread: the LISTEN connection came back; what was notified meanwhile is lost. */
static void on_reset(void *arg, const char *channel)
{
    struct evhub *hub = arg;
    pthread_mutex_lock(&hub->lock);
    hub->reset_gen++;
    pthread_mutex_unlock(&hub->lock);
    wake_workers(hub);
}

static uint64_t id_base(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000) * 1000;
}

static struct evhub *hub_new(const struct channel_def *c)
{
    struct evhub *hub = xcalloc(1, sizeof *hub);
    hub->name = xstrdup(c->name);
    hub->listen = xstrdup(c->listen);
    hub->pool = xstrdup(c->pool);
    pthread_mutex_init(&hub->lock, NULL);
    hub->cap = c->buffer;
    hub->ring = xcalloc((size_t)hub->cap, sizeof *hub->ring);
    hub->last_id = id_base();
    hub->first_id = hub->last_id + 1;
    hub->pending = xcalloc((size_t)(nsinks ? nsinks : 1), sizeof *hub->pending);
    hub->slots = xcalloc((size_t)(nsinks ? nsinks : 1), sizeof *hub->slots);
    hub->sub = listener_subscribe(hub->pool, hub->listen, on_notify, on_reset, hub, NULL);
    if (hub->sub == NULL) log_warn("channel %s: cannot LISTEN on pool %s", hub->name, hub->pool);
    return hub;
}

/* Ends hub: no more events; its subscribers are told and close. The struct stays (they still
 * point to it) until evhub_free_all. */
static void hub_remove(struct evhub *hub)
{
    listener_unsubscribe(hub->sub);
    hub->sub = NULL;
    pthread_mutex_lock(&hub->lock);
    hub->removed = true;
    for (int i = 0; i < hub->cap; i++) {
        evhub_event_unref(hub->ring[i]);
        hub->ring[i] = NULL;
    }
    hub->first_id = hub->last_id + 1;
    pthread_mutex_unlock(&hub->lock);
    wake_workers(hub);
}

void evhub_sync(const struct registry *reg)
{
    pthread_mutex_lock(&hubs_lock);
    for (struct evhub *h = hubs; h; h = h->next) {
        if (h->removed) continue;
        const struct channel_def *c = registry_find_channel(reg, h->name, strlen(h->name));
        if (c == NULL || strcmp(c->listen, h->listen) != 0 || strcmp(c->pool, h->pool) != 0) {
            log_info("channel %s: %s; its streams are closed", h->name,
                     c == NULL ? "removed" : "its listen or pool changed");
            hub_remove(h);
        }
    }
    for (int i = 0; i < reg->nchannels; i++) {
        const struct channel_def *c = reg->channels[i];
        struct evhub *h = hubs;
        while (h != NULL && (h->removed || strcmp(h->name, c->name) != 0)) h = h->next;
        if (h != NULL) continue;
        h = hub_new(c);
        h->next = hubs;
        hubs = h;
    }
    pthread_mutex_unlock(&hubs_lock);
}

void evhub_free_all(void)
{
    pthread_mutex_lock(&hubs_lock);
    while (hubs) {
        struct evhub *h = hubs;
        hubs = h->next;
        listener_unsubscribe(h->sub);
        for (int i = 0; i < h->cap; i++) evhub_event_unref(h->ring[i]);
        free(h->ring);
        free(h->pending);
        free(h->slots);
        free(h->name);
        free(h->listen);
        free(h->pool);
        pthread_mutex_destroy(&h->lock);
        free(h);
    }
    pthread_mutex_unlock(&hubs_lock);
    free(sinks);
    sinks = NULL;
    nsinks = 0;
}

struct evhub *evhub_find(const char *name)
{
    pthread_mutex_lock(&hubs_lock);
    struct evhub *h = hubs;
    while (h != NULL && (h->removed || strcmp(h->name, name) != 0)) h = h->next;
    pthread_mutex_unlock(&hubs_lock);
    return h;
}

void evhub_each(evhub_news_cb fn, void *arg)
{
    pthread_mutex_lock(&hubs_lock);
    struct evhub *first = hubs;
    pthread_mutex_unlock(&hubs_lock);
    for (struct evhub *h = first; h; h = h->next) fn(arg, h); /* hubs are only ever prepended */
}

void **evhub_worker_slot(struct evhub *hub, int index)
{
    return &hub->slots[index];
}

void evhub_read(struct evhub *hub, uint64_t after, struct evhub_event **out, int max, struct evhub_read *r)
{
    pthread_mutex_lock(&hub->lock);
    r->n = 0;
    r->removed = hub->removed;
    r->last_id = hub->last_id;
    r->reset_gen = hub->reset_gen;
    r->overflow = !hub->removed && after < hub->last_id && after + 1 < hub->first_id;
    if (!r->overflow && !r->removed)
        for (uint64_t id = after + 1; id <= hub->last_id && r->n < max; id++) {
            struct evhub_event *e = hub->ring[id % (uint64_t)hub->cap];
            __atomic_add_fetch(&e->refs, 1, __ATOMIC_RELAXED);
            out[r->n++] = e;
        }
    pthread_mutex_unlock(&hub->lock);
}

bool evhub_start(struct evhub *hub, bool has_id, uint64_t last_event_id, uint64_t *start, unsigned *reset_gen)
{
    pthread_mutex_lock(&hub->lock);
    bool held = has_id && last_event_id <= hub->last_id && last_event_id + 1 >= hub->first_id;
    *start = held ? last_event_id : hub->last_id;
    *reset_gen = hub->reset_gen;
    pthread_mutex_unlock(&hub->lock);
    return held;
}

void evhub_count_subscriber(struct evhub *hub, int delta)
{
    __atomic_add_fetch(&hub->subscribers, delta, __ATOMIC_RELAXED);
}

void evhub_count_delivered(struct evhub *hub, uint64_t n)
{
    __atomic_add_fetch(&hub->delivered, n, __ATOMIC_RELAXED);
}

void evhub_count_dropped(struct evhub *hub, enum evhub_drop why, uint64_t n)
{
    __atomic_add_fetch(&hub->dropped[why], n, __ATOMIC_RELAXED);
}

void evhub_metrics(struct buf *b)
{
    static const char *const reasons[EVHUB_NDROPS] = {"filter", "filter_error", "overflow"};
    struct buf lb = BUF_INIT;
    pthread_mutex_lock(&hubs_lock);
    metrics_family(b, "sluice_events_subscribers", "gauge", "Open event streams of the channel.");
    for (struct evhub *h = hubs; h; h = h->next) {
        if (h->removed) continue;
        buf_reset(&lb);
        metrics_label(&lb, "channel", h->name);
        metrics_sample(b, "sluice_events_subscribers", lb.data,
                       __atomic_load_n(&h->subscribers, __ATOMIC_RELAXED));
    }
    metrics_family(b, "sluice_events_delivered_total", "counter", "Events written to the channel's streams.");
    for (struct evhub *h = hubs; h; h = h->next) {
        if (h->removed) continue;
        buf_reset(&lb);
        metrics_label(&lb, "channel", h->name);
        metrics_sample_u64(b, "sluice_events_delivered_total", lb.data,
                           __atomic_load_n(&h->delivered, __ATOMIC_RELAXED));
    }
    metrics_family(b, "sluice_events_dropped_total", "counter",
                   "Events of the channel a stream did not get: its filter dropped them or failed, or the "
                   "stream fell `buffer` events behind and was closed.");
    for (struct evhub *h = hubs; h; h = h->next) {
        if (h->removed) continue;
        for (int r = 0; r < EVHUB_NDROPS; r++) {
            buf_reset(&lb);
            metrics_label(&lb, "channel", h->name);
            metrics_label(&lb, "reason", reasons[r]);
            metrics_sample_u64(b, "sluice_events_dropped_total", lb.data,
                               __atomic_load_n(&h->dropped[r], __ATOMIC_RELAXED));
        }
    }
    pthread_mutex_unlock(&hubs_lock);
    buf_free(&lb);
}
