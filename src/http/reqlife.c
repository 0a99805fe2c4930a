/* reqlife.c — the lifecycle every request kind that waits on the database shares (reqlife.h). */
#include "reqlife.h"

#include <string.h>

#include "endpoint.h"
#include "http.h"
#include "reqinfo.h"
#include "util.h"
#include "worker.h"

/* A watch costs a dup() and an epoll registration: only requests that wait this long get one. */
#define WATCH_AFTER_MS 500

void reqlife_hold(struct worker *w, struct registry *reg)
{
    reg->refs++;
    w->inflight++;
}

void reqlife_unhold(struct worker *w, struct registry *reg)
{
    reg->refs--;
    w->inflight--;
}

static void stop_timers(struct reqlife *life)
{
    if (h2o_timeout_is_linked(&life->deadline)) h2o_timeout_unlink(&life->deadline);
    if (h2o_timeout_is_linked(&life->watch_due)) h2o_timeout_unlink(&life->watch_due);
    clientwatch_stop(&life->watch);
}

void reqlife_done(struct reqlife *life)
{
    stop_timers(life);
    life->waiting = false;
}

void reqlife_abort(struct reqlife *life)
{
    stop_timers(life);
    if (!life->waiting) return;
    life->waiting = false;
    if (life->kind->cleanup) life->kind->cleanup(life);
}

static void on_dispose(void *p)
{
    struct reqlife *life = p;
    reqlife_abort(life);
    if (life->kind->dispose) life->kind->dispose(life);
    reqlife_unhold(life->w, life->reg);
}

static void on_deadline(h2o_timeout_entry_t *entry)
{
    struct reqlife *life = container_of(entry, struct reqlife, deadline);
    if (!life->waiting) return;
    const char *outer = reqinfo_enter(life->req);
    reqlife_abort(life);
    if (life->kind->on_deadline)
        life->kind->on_deadline(life);
    else
        http_send_error(life->req, 504, "timeout", "the request deadline passed", NULL, NULL);
    reqinfo_leave(outer);
}

static void on_client_gone(void *arg)
{
    struct reqlife *life = arg;
    if (!life->waiting) return;
    const char *outer = reqinfo_enter(life->req);
    reqlife_abort(life);
    if (life->kind->on_client_gone)
        life->kind->on_client_gone(life);
    else
        http_send_error(life->req, 503, "unavailable", "the client closed the connection", NULL, NULL);
    reqinfo_leave(outer);
}

static void on_watch_due(h2o_timeout_entry_t *entry)
{
    struct reqlife *life = container_of(entry, struct reqlife, watch_due);
    if (life->waiting) clientwatch_start(&life->watch, life->req, life->w->ctx.loop, on_client_gone, life);
}

void *reqlife_new(struct worker *w, h2o_req_t *req, size_t size, const struct reqlife_kind *kind,
                  struct registry *reg)
{
    struct reqlife *life = h2o_mem_alloc_shared(&req->pool, size, on_dispose);
    memset(life, 0, size);
    life->req = req;
    life->w = w;
    life->reg = reg;
    life->kind = kind;
    life->started_us = now_us();
    life->deadline.cb = on_deadline;
    life->watch_due.cb = on_watch_due;
    reqlife_hold(w, reg);
    clientwatch_keep_polled(req);
    return life;
}

void reqlife_wait(struct reqlife *life, uint64_t deadline_ms)
{
    struct worker *w = life->w;
    stop_timers(life);
    life->waiting = true;
    h2o_timeout_link(w->ctx.loop, worker_timeout(w, WATCH_AFTER_MS), &life->watch_due);
    if (deadline_ms > 0) h2o_timeout_link(w->ctx.loop, worker_timeout(w, deadline_ms), &life->deadline);
}

uint64_t reqlife_request_timeout_ms(const struct worker *w)
{
    return (uint64_t)(worker_config(w)->request_timeout * 1000);
}
