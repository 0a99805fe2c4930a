/* events.c — GET /events/{name} as text/event-stream. A stream is a position in its channel's
 * ring (evhub.c) plus at most STREAM_BATCH events being written, held by reference: without a
 * filter no byte of an event is copied per subscriber. Over HTTP/1 the connection is taken from
 * h2o once the head is written (h2o_http1_upgrade: the head says Connection: upgrade and the body
 * runs until the connection closes), so an open stream costs its socket and this struct, not an
 * h2o request; over HTTP/2 it stays an h2o response (a generator). When the hub has news the
 * worker walks its streams of that channel; each one that is not writing takes the events after
 * its position. A stream whose next event has left the ring fell `buffer` events behind: it gets
 * `event: overflow` and is closed once its last write is taken (shut down if the client takes
 * nothing for client_timeout), and nobody else waits for it. A stream idle for the channel's
 * keepalive gets a comment line. */
#include "events.h"

#include <h2o/http1.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "auth.h"
#include "buf.h"
#include "evhub.h"
#include "guard.h"
#include "http.h"
#include "log.h"
#include "reqstats.h"
#include "script.h"
#include "util.h"
#include "worker.h"

#define STREAM_BATCH 8
/* A filter that computes this long for one event is stopped (its event is dropped). */
#define FILTER_LIMIT_MS 100

static const char FRAME_HELLO[] = ": sluice event stream\nretry: 2000\n\n";
static const char FRAME_KEEPALIVE[] = ": keepalive\n\n";
static const char FRAME_RESET[] = "event: reset\ndata: events may have been missed; refetch\n\n";
static const char FRAME_OVERFLOW[] = "event: overflow\ndata: this stream fell too far behind; reconnect\n\n";
static const char FRAME_CLOSED[] = "event: closed\ndata: the channel was removed\n\n";
static const char FRAME_STOPPING[] = "event: closed\ndata: the gateway is stopping\n\n";

struct sse {
    h2o_req_t *req;     /* HTTP/2: the response being written; NULL once it is gone */
    h2o_socket_t *sock; /* HTTP/1: the connection, ours after the head went out */
    struct worker *w;
    struct evhub *hub;
    struct channel_def *ch;  /* in reg, which the stream holds */
    struct sse *prev, *next; /* the worker's streams of hub */
    uint64_t cursor;         /* the last event id given to the client (or dropped for it) */
    unsigned reset_gen;
    int req_ref;                            /* the filter's req table in reg->L, LUA_NOREF without a filter */
    struct evhub_event *held[STREAM_BATCH]; /* what is being written */
    int nheld;
    bool writing;       /* h2o holds our last send until it is written */
    bool ended;         /* the final send was made, or the client left */
    bool linked;        /* in the hub's list and counted as a subscriber */
    bool reset_due;     /* a reset frame goes first in the next send */
    struct buf scratch; /* rewritten frames (filters only) */
    h2o_timeout_entry_t keepalive;
    h2o_timeout_entry_t write_deadline; /* linked while a stream behind waits for a write */
};

/* --- the worker's streams of each hub ------------------------------------------------------- */

static struct sse **streams_of(struct sse *s)
{
    return (struct sse **)evhub_worker_slot(s->hub, s->w->index);
}

static void link_stream(struct sse *s)
{
    struct sse **head = streams_of(s);
    s->next = *head;
    if (*head) (*head)->prev = s;
    *head = s;
}

static void unlink_stream(struct sse *s)
{
    struct sse **head = streams_of(s);
    if (s->prev)
        s->prev->next = s->next;
    else if (*head == s)
        *head = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* --- sending -------------------------------------------------------------------------------- */

static void release_held(struct sse *s)
{
    for (int i = 0; i < s->nheld; i++) evhub_event_unref(s->held[i]);
    s->nheld = 0;
}

static void arm_keepalive(struct sse *s)
{
    if (s->ended || h2o_timeout_is_linked(&s->keepalive)) return;
    h2o_timeout_link(s->w->ctx.loop, worker_timeout(s->w, (uint64_t)s->ch->keepalive_ms), &s->keepalive);
}

static void disarm_keepalive(struct sse *s)
{
    if (h2o_timeout_is_linked(&s->keepalive)) h2o_timeout_unlink(&s->keepalive);
}

static void on_written(h2o_socket_t *sock, const char *err);

/* Hands bufs to h2o; final ends the stream (s may be freed inside this call). */
static void send_bufs(struct sse *s, h2o_iovec_t *bufs, size_t n, bool final)
{
    disarm_keepalive(s);
    s->writing = true;
    if (final) s->ended = true;
    if (s->sock != NULL)
        h2o_socket_write(s->sock, bufs, n, on_written);
    else
        h2o_send(s->req, bufs, n, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void send_final(struct sse *s, const char *frame, size_t len)
{
    h2o_iovec_t b = h2o_iovec_init(frame, len);
    send_bufs(s, &b, 1, true);
}

/* Runs the channel's filter on e for this stream. Returns 1 to pass the event as it is, 2 when
 * a rewritten frame was appended to s->scratch (from *start), 0 to drop it (counted). */
static int run_filter(struct sse *s, struct evhub_event *e, size_t *start)
{
    lua_State *L = s->ch->reg->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->ch->filter_ref);
    lua_pushlstring(L, e->payload, e->len);
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->req_ref);
    bool was = script_enforce_limit(L, true);
    int rc = guard_pcall(L, 2, 1, FILTER_LIMIT_MS, "the channel filter ran for more than 100 ms");
    script_enforce_limit(L, was);
    int out = 0;
    if (rc != 0) {
        log_printf(LOG_WARN, "channel %s: filter failed, the event is dropped for this stream: %s",
                   s->ch->name, lua_isstring(L, -1) ? lua_tostring(L, -1) : luaL_typename(L, -1));
        evhub_count_dropped(s->hub, EVHUB_DROP_ERROR, 1);
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *p = lua_tolstring(L, -1, &n);
        *start = s->scratch.len;
        evhub_frame(&s->scratch, e->id, p, n);
        out = 2;
    } else if (lua_toboolean(L, -1)) {
        out = lua_type(L, -1) == LUA_TBOOLEAN ? 1 : 0;
        if (out == 0) {
            log_printf(LOG_WARN, "channel %s: filter returned a %s; expected nil, false, true or a string",
                       s->ch->name, luaL_typename(L, -1));
            evhub_count_dropped(s->hub, EVHUB_DROP_ERROR, 1);
        }
    } else {
        evhub_count_dropped(s->hub, EVHUB_DROP_FILTER, 1);
    }
    lua_pop(L, 1);
    script_collect(L, false);
    return out;
}

/* Sends what the stream has not had yet, when h2o is free: a reset, then up to STREAM_BATCH
 * events; or the last frame when the channel is gone or the stream fell behind. */
static void pump(struct sse *s)
{
    if (s->writing || s->ended) return;
    struct evhub_event *got[STREAM_BATCH];
    struct evhub_read r;
    evhub_read(s->hub, s->cursor, got, STREAM_BATCH, &r);
    if (r.removed) {
        send_final(s, FRAME_CLOSED, sizeof FRAME_CLOSED - 1);
        return;
    }
    if (r.overflow) {
        evhub_count_dropped(s->hub, EVHUB_DROP_OVERFLOW, r.last_id - s->cursor);
        s->cursor = r.last_id;
        send_final(s, FRAME_OVERFLOW, sizeof FRAME_OVERFLOW - 1);
        return;
    }
    if (r.reset_gen != s->reset_gen) {
        s->reset_gen = r.reset_gen;
        s->reset_due = true;
    }
    /* Frames are noted as (event, or offset in scratch) and turned into iovecs at the end: scratch
     * may move while filters append to it. */
    struct {
        const char *base; /* NULL: at off in scratch */
        size_t off, len;
    } parts[STREAM_BATCH + 1];
    size_t nparts = 0;
    buf_reset(&s->scratch);
    if (s->reset_due) {
        parts[nparts++] = (typeof(parts[0])){FRAME_RESET, 0, sizeof FRAME_RESET - 1};
        s->reset_due = false;
    }
    uint64_t delivered = 0;
    for (int i = 0; i < r.n || (nparts == 0 && r.n == STREAM_BATCH); i++) {
        if (i == r.n) { /* a filter dropped a whole batch: read on */
            evhub_read(s->hub, s->cursor, got, STREAM_BATCH, &r);
            if (r.removed || r.overflow) break; /* the next pump says so */
            i = -1;
            continue;
        }
        struct evhub_event *e = got[i];
        s->cursor = e->id;
        size_t start = 0;
        int verdict = s->req_ref == LUA_NOREF ? 1 : run_filter(s, e, &start);
        if (verdict == 0) {
            evhub_event_unref(e);
            continue;
        }
        if (verdict == 1) {
            parts[nparts++] = (typeof(parts[0])){e->frame, 0, e->framelen};
        } else {
            parts[nparts++] = (typeof(parts[0])){NULL, start, s->scratch.len - start};
        }
        s->held[s->nheld++] = e;
        delivered++;
    }
    if (nparts == 0) {
        if (r.removed || r.overflow) pump(s); /* at most once: it sends the last frame */
        arm_keepalive(s);
        return;
    }
    h2o_iovec_t bufs[STREAM_BATCH + 1];
    for (size_t i = 0; i < nparts; i++)
        bufs[i] =
            h2o_iovec_init(parts[i].base ? parts[i].base : s->scratch.data + parts[i].off, parts[i].len);
    if (delivered) evhub_count_delivered(s->hub, delivered);
    send_bufs(s, bufs, nparts, false);
}

static void on_keepalive(h2o_timeout_entry_t *entry)
{
    struct sse *s = container_of(entry, struct sse, keepalive);
    if (s->writing || s->ended) return;
    h2o_iovec_t b = h2o_iovec_init(FRAME_KEEPALIVE, sizeof FRAME_KEEPALIVE - 1);
    send_bufs(s, &b, 1, false);
}

/* The last send was written: the next one, or the keepalive's wait. */
static void written(struct sse *s)
{
    s->writing = false;
    if (h2o_timeout_is_linked(&s->write_deadline)) h2o_timeout_unlink(&s->write_deadline);
    release_held(s);
    pump(s);
    if (!s->writing) arm_keepalive(s);
}

static void sse_free(struct sse *s)
{
    disarm_keepalive(s);
    if (h2o_timeout_is_linked(&s->write_deadline)) h2o_timeout_unlink(&s->write_deadline);
    release_held(s);
    if (s->linked) {
        unlink_stream(s);
        evhub_count_subscriber(s->hub, -1);
    }
    if (s->req_ref != LUA_NOREF) luaL_unref(s->ch->reg->L, LUA_REGISTRYINDEX, s->req_ref);
    s->ch->reg->refs--;
    buf_free(&s->scratch);
    free(s);
}

/* HTTP/1: the stream is over (ended, failed, or the client left); a write in progress is
 * dropped with the socket. */
static void close_raw(struct sse *s)
{
    h2o_socket_close(s->sock);
    sse_free(s);
}

static void on_written(h2o_socket_t *sock, const char *err)
{
    struct sse *s = sock->data;
    if (err != NULL || s->ended) {
        close_raw(s);
        return;
    }
    written(s);
}

/* HTTP/1: the client sends nothing on an event stream; end of file or an error means it left
 * (noticed at once, not at the next write). Anything it sends is thrown away. */
static void on_client_read(h2o_socket_t *sock, const char *err)
{
    struct sse *s = sock->data;
    if (err != NULL) {
        close_raw(s);
        return;
    }
    h2o_buffer_consume(&sock->input, sock->input->size);
}

/* HTTP/2: */
struct sse_gen {
    h2o_generator_t gen;
    struct sse *s;
};

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    written(((struct sse_gen *)gen)->s);
}

/* The client left (or its connection failed): h2o frees the request next. */
static void on_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    struct sse *s = ((struct sse_gen *)gen)->s;
    s->ended = true;
    disarm_keepalive(s);
}

static void on_req_dispose(void *p)
{
    sse_free(((struct sse_gen *)p)->s);
}

/* A stream fell behind while a write was still on its way: once the write is done the next pump
 * sends it `event: overflow`. A client that takes nothing for client_timeout cannot be told: its
 * connection is shut down, so the write fails and the stream is freed. */
static void on_write_deadline(h2o_timeout_entry_t *entry)
{
    struct sse *s = container_of(entry, struct sse, write_deadline);
    struct evhub_read r;
    evhub_read(s->hub, s->cursor, NULL, 0, &r);
    evhub_count_dropped(s->hub, EVHUB_DROP_OVERFLOW, r.last_id - s->cursor);
    s->cursor = r.last_id;
    s->ended = true;
    log_printf(LOG_INFO, "channel %s: a stream that took nothing for client_timeout while behind is cut",
               s->ch->name);
    h2o_socket_t *sock = s->sock ? s->sock : s->req->conn->callbacks->get_socket(s->req->conn);
    if (sock != NULL) shutdown(h2o_socket_get_fd(sock), SHUT_RDWR);
}

static void arm_write_deadline(struct sse *s)
{
    if (h2o_timeout_is_linked(&s->write_deadline)) return;
    uint64_t ms = (uint64_t)(worker_config(s->w)->client_timeout * 1000);
    h2o_timeout_link(s->w->ctx.loop, worker_timeout(s->w, ms), &s->write_deadline);
}

/* On the worker: hub has news for the streams this worker serves. */
static void on_news(void *arg, struct evhub *hub)
{
    struct worker *w = arg;
    struct sse *next;
    for (struct sse *s = *(struct sse **)evhub_worker_slot(hub, w->index); s != NULL; s = next) {
        next = s->next;                                  /* a final send may free s */
        if (s->sock == NULL && s->req == NULL) continue; /* its head is still being written */
        if (s->writing && !s->ended) {
            struct evhub_read r;
            evhub_read(hub, s->cursor, NULL, 0, &r);
            if (r.overflow) arm_write_deadline(s);
            continue;
        }
        pump(s);
    }
}

/* --- the request ---------------------------------------------------------------------------- */

static int on_query_pair(void *arg, const char *key, size_t klen, const char *val, size_t vlen)
{
    lua_State *L = arg;
    lua_pushlstring(L, key, klen);
    lua_pushlstring(L, val, vlen);
    lua_settable(L, -3);
    return 0;
}

/* The filter's req: method, path, query and headers of the request that opened the stream. */
static int make_req_table(lua_State *L, h2o_req_t *req)
{
    lua_createtable(L, 0, 4);
    lua_pushlstring(L, req->method.base, req->method.len);
    lua_setfield(L, -2, "method");
    lua_pushlstring(L, req->path_normalized.base, req->path_normalized.len);
    lua_setfield(L, -2, "path");
    lua_newtable(L);
    http_query_foreach(req, on_query_pair, L);
    lua_setfield(L, -2, "query");
    lua_newtable(L);
    for (size_t i = 0; i < req->headers.size; i++) {
        h2o_header_t *hd = &req->headers.entries[i];
        lua_pushlstring(L, hd->name->base, hd->name->len); /* h2o keeps names lower-case */
        lua_pushlstring(L, hd->value.base, hd->value.len);
        lua_settable(L, -3);
    }
    lua_setfield(L, -2, "headers");
    return luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Last-Event-ID: true with *id when the request has a decimal one. */
static bool last_event_id(h2o_req_t *req, uint64_t *id)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("last-event-id"), -1);
    if (i < 0) return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len == 0 || v.len > 19) return false;
    uint64_t n = 0;
    for (size_t k = 0; k < v.len; k++) {
        if (v.base[k] < '0' || v.base[k] > '9') return false;
        n = n * 10 + (uint64_t)(v.base[k] - '0');
    }
    *id = n;
    return true;
}

/* HTTP/1: the head and the hello are written and h2o has let go of the connection (sock NULL:
 * it failed). The request's bytes still in the input buffer are the stream's to drop. */
static void on_upgraded(void *arg, h2o_socket_t *sock, size_t reqsize)
{
    struct sse *s = arg;
    if (sock == NULL) {
        sse_free(s);
        return;
    }
    s->sock = sock;
    sock->data = s;
    h2o_buffer_consume(&sock->input, sock->input->size);
    if (s->ended) { /* the worker stopped meanwhile */
        close_raw(s);
        return;
    }
    h2o_socket_read_start(sock, on_client_read);
    written(s);
}

/* Counts the 200 of a stream whose connection is taken from h2o (sluice_http_requests_total). */
static void count_taken(struct worker *w, h2o_req_t *req, const char *name)
{
    char endpoint[256];
    snprintf(endpoint, sizeof endpoint, "events/%s", name);
    struct timeval now;
    gettimeofday(&now, NULL);
    double seconds = (double)(now.tv_sec - req->processed_at.at.tv_sec) +
                     (double)(now.tv_usec - req->processed_at.at.tv_usec) / 1e6;
    reqstats_count(w, endpoint, reqstats_method_of(req->method.base, req->method.len), 200, seconds);
}

int events_handle(struct worker *w, h2o_req_t *req, const char *name, size_t len)
{
    struct channel_def *ch = memchr(name, '/', len) ? NULL : registry_find_channel(w->reg, name, len);
    struct evhub *hub = ch ? evhub_find(ch->name) : NULL;
    if (hub == NULL) {
        http_send_error(req, 404, "not_found", "no such channel", NULL, NULL);
        return 0;
    }
    reqstats_name(req, "events", ch->name);
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET"));
        http_send_error(req, 405, "method_not_allowed", "use GET", NULL, NULL);
        return 0;
    }
    if (!auth_allow(w, req, ch->auth, ch->reg->L, ch->auth_ref, ch->name)) return 0;

    struct sse *s = xcalloc(1, sizeof *s);
    s->w = w;
    s->hub = hub;
    s->ch = ch;
    s->keepalive.cb = on_keepalive;
    s->write_deadline.cb = on_write_deadline;
    s->req_ref = ch->filter_ref != LUA_NOREF ? make_req_table(ch->reg->L, req) : LUA_NOREF;
    ch->reg->refs++;
    uint64_t asked = 0;
    bool has_id = last_event_id(req, &asked);
    bool replay = evhub_start(hub, has_id, asked, &s->cursor, &s->reset_gen);
    /* An id whose followers are no longer all held (or from another process): the client has
     * missed events, which only a refetch can make good. */
    s->reset_due = has_id && !replay;
    link_stream(s);
    s->linked = true;
    evhub_count_subscriber(hub, 1);

    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL,
                          H2O_STRLIT("no"));
    /* The head and a first comment go at once, so that the client knows it is subscribed;
     * replayed events follow when they are written. */
    h2o_iovec_t hello = h2o_iovec_init(FRAME_HELLO, sizeof FRAME_HELLO - 1);
    s->writing = true;
    if (req->version < 0x200) {
        count_taken(w, req, ch->name); /* h2o's filters never see this response start */
        h2o_http1_upgrade(req, &hello, 1, on_upgraded, s);
        return 0;
    }
    struct sse_gen *g = h2o_mem_alloc_shared(&req->pool, sizeof *g, on_req_dispose);
    g->gen = (h2o_generator_t){on_proceed, on_stop};
    g->s = s;
    s->req = req;
    /* Never compressed: a deflate state per stream would cost more than the stream itself, and a
     * compressor may hold back the small frames an event stream is made of. */
    req->compress_hint = H2O_COMPRESS_HINT_DISABLE;
    h2o_start_response(req, &g->gen);
    send_bufs(s, &hello, 1, false);
    return 0;
}

void events_worker_init(struct worker *w)
{
    evhub_worker_init(w->index, w->queue, on_news, w);
}

static void stop_hub(void *arg, struct evhub *hub)
{
    struct worker *w = arg;
    struct sse *next;
    for (struct sse *s = *(struct sse **)evhub_worker_slot(hub, w->index); s != NULL; s = next) {
        next = s->next;
        if (s->ended) continue;
        if (s->writing) {
            s->ended = true; /* the write in progress is its last: the connection closes with the loop */
            continue;
        }
        send_final(s, FRAME_STOPPING, sizeof FRAME_STOPPING - 1);
    }
}

void events_worker_stop(struct worker *w)
{
    evhub_each(stop_hub, w);
}
