/* listener.c — the process's LISTEN connections (see listener.h). One thread runs its own h2o
 * loop; each pool that has subscribers gets one libpq connection on it (asynchronous connect,
 * h2o watching a dup() of libpq's socket with DONT_READ). The subscriptions, channels and the
 * connections' bookkeeping are guarded by one mutex, held by the listener's thread while it
 * handles input, so a subscription made on any thread sees a consistent state. */
#include "listener.h"

#include <libpq-fe.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "conninfo.h"
#include "dbconnect.h"
#include "log.h"
#include "pgsock.h"
#include "util.h"

/* The tick that starts due connects and gives up on stuck ones. */
#define TICK_MS 50
/* After the n-th failed connect in a row: a random wait in [b/2, b], b = 50 ms x 2^n, at most. */
#define BACKOFF_MAX_MS 2000

struct lchan {
    struct lchan *next;
    char *name;
    int nsubs;
    bool listened;    /* the server has it (LISTEN answered) */
    bool in_flight;   /* in the LISTEN/UNLISTEN batch on its way */
    bool sent_listen; /* what that batch says of it: LISTEN (true) or UNLISTEN */
};

struct listener_sub {
    struct listener_sub *next; /* in its pool's list */
    struct lpool *pool;
    struct lchan *chan;
    listener_notify_cb on_notify;
    listener_reset_cb on_reset;
    void *arg;
    struct listener_target *target;
    int refs; /* its subscriber's, and one per message on its way to the target */
    bool cancelled;
};

enum lpool_state { LP_DOWN, LP_CONNECTING, LP_READY };

struct lpool {
    char *name, *url;
    uint64_t connect_timeout_ms;
    PGconn *pg;
    h2o_socket_t *sock; /* h2o's dup() of libpq's socket */
    enum lpool_state state;
    bool busy;      /* a LISTEN/UNLISTEN batch is in flight */
    bool reset_due; /* the connection was lost: reset the subscriptions once listening again */
    int failures;   /* failed connects in a row */
    uint64_t next_connect_ms, began_ms;
    int backend_pid; /* atomic: read by any thread */
    unsigned resets; /* atomic */
    struct lchan *chans;
    struct listener_sub *subs;
};

/* A notification or a reset on its way to a target. */
struct lmsg {
    h2o_multithread_message_t super;
    struct listener_sub *sub;
    bool reset;
    size_t len;
    char *channel; /* points into data, after the payload */
    char data[];
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t started;
    bool running, ready;
    bool stopping; /* the listener's thread only: it took the stop message, the last one sent */
    pthread_t thread;
    h2o_loop_t *loop;
    h2o_multithread_queue_t *queue;
    h2o_multithread_receiver_t wake; /* "look at the subscriptions again" */
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick;
    struct lpool *pools;
    size_t npools;
} L = {.lock = PTHREAD_MUTEX_INITIALIZER, .started = PTHREAD_COND_INITIALIZER};

static void on_io(h2o_socket_t *sock, const char *err);

/* --- subscriptions -------------------------------------------------------------------------- */

static struct lpool *find_pool(const char *name)
{
    for (size_t i = 0; i < L.npools; i++)
        if (strcmp(L.pools[i].name, name) == 0) return &L.pools[i];
    return NULL;
}

/* Under the lock. */
static void sub_unref(struct listener_sub *s)
{
    if (--s->refs == 0) free(s);
}

/* "Look at the subscriptions again", or (stop) "end the loop". */
struct wake_msg {
    h2o_multithread_message_t super;
    bool stop;
};

static void send_wake(bool stop)
{
    struct wake_msg *m = xcalloc(1, sizeof *m);
    m->stop = stop;
    h2o_multithread_send_message(&L.wake, &m->super);
}

/* Hands one notification (or reset) to s: at once when it has no target, else as a message to
 * its target's loop. Under the lock. */
static void deliver(struct listener_sub *s, bool reset, const char *channel, const char *payload, size_t len)
{
    if (s->target == NULL) {
        if (!reset)
            s->on_notify(s->arg, channel, payload, len);
        else if (s->on_reset)
            s->on_reset(s->arg, channel);
        return;
    }
    if (reset && s->on_reset == NULL) return;
    size_t clen = strlen(channel);
    struct lmsg *m = xmalloc(sizeof *m + len + 1 + clen + 1);
    memset(&m->super, 0, sizeof m->super);
    m->sub = s;
    m->reset = reset;
    m->len = len;
    if (len) memcpy(m->data, payload, len);
    m->data[len] = '\0';
    m->channel = m->data + len + 1;
    memcpy(m->channel, channel, clen + 1);
    s->refs++;
    h2o_multithread_send_message(&s->target->receiver, &m->super);
}

/* On the target's thread: runs the callbacks of subscriptions still alive. */
static void on_target_messages(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        struct lmsg *m =
            (struct lmsg *)H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        struct listener_sub *s = m->sub;
        pthread_mutex_lock(&L.lock);
        bool live = !s->cancelled;
        pthread_mutex_unlock(&L.lock);
        if (live) {
            if (m->reset)
                s->on_reset(s->arg, m->channel);
            else
                s->on_notify(s->arg, m->channel, m->data, m->len);
        }
        pthread_mutex_lock(&L.lock);
        sub_unref(s);
        pthread_mutex_unlock(&L.lock);
        free(m);
    }
}

void listener_target_init(struct listener_target *t, h2o_multithread_queue_t *queue)
{
    h2o_multithread_register_receiver(queue, &t->receiver, on_target_messages);
}

void listener_target_dispose(struct listener_target *t)
{
    h2o_multithread_unregister_receiver(t->receiver.queue, &t->receiver);
}

struct listener_sub *listener_subscribe(const char *pool_name, const char *channel,
                                        listener_notify_cb on_notify, listener_reset_cb on_reset, void *arg,
                                        struct listener_target *target)
{
    pthread_mutex_lock(&L.lock);
    struct lpool *p = L.running ? find_pool(pool_name) : NULL;
    if (p == NULL) {
        pthread_mutex_unlock(&L.lock);
        return NULL;
    }
    struct lchan *c = p->chans;
    while (c != NULL && strcmp(c->name, channel) != 0) c = c->next;
    if (c == NULL) {
        c = xcalloc(1, sizeof *c);
        c->name = xstrdup(channel);
        c->next = p->chans;
        p->chans = c;
    }
    c->nsubs++;
    struct listener_sub *s = xcalloc(1, sizeof *s);
    *s = (struct listener_sub){.next = p->subs,
                               .pool = p,
                               .chan = c,
                               .on_notify = on_notify,
                               .on_reset = on_reset,
                               .arg = arg,
                               .target = target,
                               .refs = 1};
    p->subs = s;
    bool need_listen = !c->listened && !c->in_flight;
    if (need_listen) send_wake(false);
    pthread_mutex_unlock(&L.lock);
    return s;
}

void listener_unsubscribe(struct listener_sub *s)
{
    if (s == NULL) return;
    pthread_mutex_lock(&L.lock);
    struct lpool *p = s->pool;
    for (struct listener_sub **pp = &p->subs; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    s->cancelled = true;
    if (--s->chan->nsubs == 0 && L.running) send_wake(false);
    sub_unref(s);
    pthread_mutex_unlock(&L.lock);
}

/* Reads one atomic counter of pool_name's connection (any thread); 0 for no such pool. */
static int read_pool(const char *pool_name, bool pid)
{
    pthread_mutex_lock(&L.lock);
    struct lpool *p = L.running ? find_pool(pool_name) : NULL;
    int v = p == NULL ? 0
            : pid     ? __atomic_load_n(&p->backend_pid, __ATOMIC_RELAXED)
                      : (int)__atomic_load_n(&p->resets, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&L.lock);
    return v;
}

int listener_backend_pid(const char *pool_name)
{
    return read_pool(pool_name, true);
}

unsigned listener_resets(const char *pool_name)
{
    return (unsigned)read_pool(pool_name, false);
}

/* --- the connections (listener thread, under the lock) -------------------------------------- */

static bool wanted(const struct lpool *p)
{
    for (const struct lchan *c = p->chans; c; c = c->next)
        if (c->nsubs > 0) return true;
    return false;
}

static void disconnect(struct lpool *p)
{
    if (p->sock) h2o_socket_close(p->sock);
    p->sock = NULL;
    if (p->pg) PQfinish(p->pg);
    p->pg = NULL;
    p->busy = false;
    __atomic_store_n(&p->backend_pid, 0, __ATOMIC_RELAXED);
}

/* The connection failed or was lost: every channel must be LISTENed again on the next one, and
 * the subscribers told once it listens, if it had been up. */
static void lost(struct lpool *p, const char *reason)
{
    char why[256];
    snprintf(why, sizeof why, "%s", reason);
    dbconnect_one_line(why);
    bool was_ready = p->state == LP_READY;
    if (was_ready)
        log_warn("pool %s: the LISTEN connection was lost (%s); reconnecting", p->name, why);
    else
        log_debug("pool %s: LISTEN connect failed: %s", p->name, why);
    disconnect(p);
    p->state = LP_DOWN;
    if (was_ready) p->reset_due = true;
    for (struct lchan *c = p->chans; c; c = c->next) c->listened = c->in_flight = false;
    if (!was_ready) p->failures++;
    uint64_t b = 50ull << (p->failures < 6 ? p->failures : 6);
    if (b > BACKOFF_MAX_MS) b = BACKOFF_MAX_MS;
    p->next_connect_ms = now_ms() + (was_ready ? 0 : b / 2 + (uint64_t)rand() % (b / 2 + 1));
}

static void want_write(struct lpool *p)
{
    if (p->sock && !h2o_socket_is_writing(p->sock)) h2o_socket_notify_write(p->sock, on_io);
}

static void on_notice(void *arg, const PGresult *res)
{
    struct lpool *p = arg;
    const char *msg = PQresultErrorMessage(res);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n') n--;
    log_printf(LOG_INFO, "pool %s: LISTEN connection notice: %.*s", p->name, (int)n, msg);
}

static void start_connect(struct lpool *p)
{
    const char *keys[] = {"application_name", "client_encoding", "dbname", NULL};
    const char *vals[] = {"sluice-listen", "UTF8", p->url, NULL};
    p->began_ms = now_ms();
    /* libpq's text of a string it cannot use may quote it, password included: never shown */
    if (!conninfo_usable(p->url)) {
        lost(p, CONNINFO_INVALID);
        return;
    }
    p->pg = PQconnectStartParams(keys, vals, 1);
    if (p->pg == NULL || PQstatus(p->pg) == CONNECTION_BAD) {
        lost(p, p->pg ? PQerrorMessage(p->pg) : "out of memory");
        return;
    }
    PQsetNoticeReceiver(p->pg, on_notice, p);
    if (!pgsock_attach(L.loop, p->pg, &p->sock, p)) {
        lost(p, "cannot watch the database socket");
        return;
    }
    p->state = LP_CONNECTING;
    want_write(p);
}

/* Sends one batch that LISTENs to every channel followed and not listened yet, and UNLISTENs
 * those nobody follows any more (which are then forgotten). Nothing when a batch is on its way. */
static void sync_channels(struct lpool *p)
{
    if (p->state != LP_READY || p->busy) return;
    struct buf sql = BUF_INIT;
    for (struct lchan **cc = &p->chans; *cc;) {
        struct lchan *c = *cc;
        const char *verb = NULL;
        if (c->nsubs > 0 && !c->listened)
            verb = "LISTEN ";
        else if (c->nsubs == 0 && c->listened)
            verb = "UNLISTEN ";
        else if (c->nsubs == 0) { /* never listened: forget it */
            *cc = c->next;
            free(c->name);
            free(c);
            continue;
        }
        cc = &c->next;
        if (verb == NULL) continue;
        char *id = PQescapeIdentifier(p->pg, c->name, strlen(c->name));
        if (id == NULL) continue;
        buf_printf(&sql, "%s%s;", verb, id);
        PQfreemem(id);
        c->in_flight = true;
        c->sent_listen = c->nsubs > 0;
    }
    if (sql.len == 0) return;
    int ok = PQsendQuery(p->pg, sql.data);
    buf_free(&sql);
    if (!ok) {
        lost(p, PQerrorMessage(p->pg));
        return;
    }
    p->busy = true;
    if (PQflush(p->pg) == 1) want_write(p);
}

/* The batch was answered: what it said is now so. The first batch after a loss resets the
 * subscriptions, now that their channels are followed again. */
static void batch_done(struct lpool *p, bool failed)
{
    p->busy = false;
    for (struct lchan *c = p->chans; c; c = c->next) {
        if (!c->in_flight) continue;
        c->in_flight = false;
        if (!failed) c->listened = c->sent_listen;
    }
    if (failed) return;
    if (p->reset_due) {
        p->reset_due = false;
        __atomic_store_n(&p->resets, p->resets + 1, __ATOMIC_RELAXED);
        log_info("pool %s: LISTEN connection back; subscribers are reset", p->name);
        for (struct listener_sub *s = p->subs; s; s = s->next)
            if (s->chan->listened) deliver(s, true, s->chan->name, NULL, 0);
    }
    sync_channels(p);
}

static void dispatch(struct lpool *p, const PGnotify *n)
{
    size_t len = strlen(n->extra);
    for (struct listener_sub *s = p->subs; s; s = s->next)
        if (strcmp(s->chan->name, n->relname) == 0) deliver(s, false, n->relname, n->extra, len);
}

static void connect_step(struct lpool *p)
{
    int rc = pgsock_connect_step(L.loop, p->pg, &p->sock, p, on_io);
    if (rc < 0) {
        lost(p, PQerrorMessage(p->pg));
        return;
    }
    if (rc == 0) return;
    p->state = LP_READY;
    p->failures = 0;
    __atomic_store_n(&p->backend_pid, PQbackendPID(p->pg), __ATOMIC_RELAXED);
    log_debug("pool %s: LISTEN connection up (backend %d)", p->name, PQbackendPID(p->pg));
    sync_channels(p);
}

static void handle_io(struct lpool *p)
{
    if (p->state == LP_CONNECTING) {
        connect_step(p);
        return;
    }
    if (p->state != LP_READY) return;
    if (PQflush(p->pg) == 1) want_write(p);
    if (!PQconsumeInput(p->pg)) {
        lost(p, PQerrorMessage(p->pg));
        return;
    }
    bool failed = false;
    while (p->busy && !PQisBusy(p->pg)) {
        PGresult *r = PQgetResult(p->pg);
        if (r == NULL) {
            batch_done(p, failed);
            break;
        }
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            failed = true;
            log_warn("pool %s: LISTEN failed: %s", p->name, PQresultErrorMessage(r));
        }
        PQclear(r);
    }
    for (PGnotify *n; p->pg && (n = PQnotifies(p->pg)) != NULL; PQfreemem(n)) dispatch(p, n);
    if (p->pg && PQstatus(p->pg) == CONNECTION_BAD) lost(p, PQerrorMessage(p->pg));
}

static void on_io(h2o_socket_t *sock, const char *err)
{
    struct lpool *p = sock->data;
    pthread_mutex_lock(&L.lock);
    handle_io(p);
    pthread_mutex_unlock(&L.lock);
}

/* Connects pools that have subscribers and are due, drops connects that take too long, and sends
 * what changed in the channels. Under the lock. */
static void look_around(void)
{
    uint64_t now = now_ms();
    for (size_t i = 0; i < L.npools; i++) {
        struct lpool *p = &L.pools[i];
        if (p->state == LP_DOWN && wanted(p) && now >= p->next_connect_ms)
            start_connect(p);
        else if (p->state == LP_CONNECTING && now - p->began_ms > p->connect_timeout_ms)
            lost(p, "connect timeout");
        else if (p->state == LP_READY)
            sync_channels(p);
    }
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    pthread_mutex_lock(&L.lock);
    look_around();
    pthread_mutex_unlock(&L.lock);
    h2o_timeout_link(L.loop, &L.tick_timeout, &L.tick);
}

static void on_wake(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        struct wake_msg *m =
            (struct wake_msg *)H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->super.link);
        if (m->stop) L.stopping = true;
        free(m);
    }
    if (L.stopping) return;
    pthread_mutex_lock(&L.lock);
    look_around();
    pthread_mutex_unlock(&L.lock);
}

/* --- the thread ----------------------------------------------------------------------------- */

static void *listener_main(void *arg)
{
    /* Signals are the main thread's (sigwait): one delivered here would end the process. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    log_set_worker(-1);
    /* Made on this thread: h2o's sockets take the creating thread's buffer allocator. */
    L.loop = h2o_evloop_create();
    L.queue = h2o_multithread_create_queue(L.loop);
    h2o_multithread_register_receiver(L.queue, &L.wake, on_wake);
    h2o_timeout_init(L.loop, &L.tick_timeout, TICK_MS);
    L.tick.cb = on_tick;
    h2o_timeout_link(L.loop, &L.tick_timeout, &L.tick);
    pthread_mutex_lock(&L.lock);
    L.ready = true;
    pthread_cond_broadcast(&L.started);
    pthread_mutex_unlock(&L.lock);
    /* Ends once the stop message is taken: no message is left for the receiver then (h2o asserts
     * that none is when it is unregistered), as none is sent after it. */
    while (!L.stopping) h2o_evloop_run(L.loop, INT32_MAX);
    pthread_mutex_lock(&L.lock);
    for (size_t i = 0; i < L.npools; i++) disconnect(&L.pools[i]);
    pthread_mutex_unlock(&L.lock);
    h2o_timeout_unlink(&L.tick);
    h2o_multithread_unregister_receiver(L.queue, &L.wake);
    h2o_multithread_destroy_queue(L.queue);
    h2o_evloop_run(L.loop, 0); /* lets the closed sockets go */
    h2o_timeout_dispose(L.loop, &L.tick_timeout);
    h2o_evloop_destroy(L.loop);
    return NULL;
}

int listener_start(const struct config *cfg)
{
    pthread_mutex_lock(&L.lock);
    if (L.running) {
        pthread_mutex_unlock(&L.lock);
        return -1;
    }
    L.npools = cfg->npools;
    L.pools = xcalloc(cfg->npools ? cfg->npools : 1, sizeof *L.pools);
    for (size_t i = 0; i < cfg->npools; i++) {
        struct lpool *p = &L.pools[i];
        p->name = xstrdup(cfg->pools[i].name);
        p->url = xstrdup(cfg->pools[i].url ? cfg->pools[i].url : "");
        double t = cfg->pools[i].connect_timeout;
        p->connect_timeout_ms = t > 0 ? (uint64_t)(t * 1000) : 5000;
    }
    L.stopping = false;
    L.ready = false;
    if (pthread_create(&L.thread, NULL, listener_main, NULL) != 0) { /* no thread: nobody subscribes */
        for (size_t i = 0; i < L.npools; i++) {
            free(L.pools[i].name);
            free(L.pools[i].url);
        }
        free(L.pools);
        L.pools = NULL;
        L.npools = 0;
        pthread_mutex_unlock(&L.lock);
        log_warn("cannot start the LISTEN thread: live events are off");
        return -1;
    }
    L.running = true;
    while (!L.ready) pthread_cond_wait(&L.started, &L.lock);
    pthread_mutex_unlock(&L.lock);
    return 0;
}

void listener_stop(void)
{
    pthread_mutex_lock(&L.lock);
    if (!L.running) {
        pthread_mutex_unlock(&L.lock);
        return;
    }
    send_wake(true);
    L.running = false; /* from now on nobody wakes the thread: its queue goes with it */
    pthread_mutex_unlock(&L.lock);
    pthread_join(L.thread, NULL);
    pthread_mutex_lock(&L.lock);
    for (size_t i = 0; i < L.npools; i++) {
        struct lpool *p = &L.pools[i];
        while (p->subs) {
            struct listener_sub *s = p->subs;
            p->subs = s->next;
            s->cancelled = true;
            sub_unref(s);
        }
        while (p->chans) {
            struct lchan *c = p->chans;
            p->chans = c->next;
            free(c->name);
            free(c);
        }
        free(p->name);
        free(p->url);
    }
    free(L.pools);
    L.pools = NULL;
    L.npools = 0;
    pthread_mutex_unlock(&L.lock);
}
