/* ryw.c — reading your writes (ryw.h). A waiting request sits on its worker's list; while the
 * list is not empty a TICK_MS timer compares each waiter's token with the replay positions the
 * probe publishes (walpos.h) and keeps the probe hurried for the standbys still behind. Nothing
 * here talks to a server: the probe's own connection does. */
#include "ryw.h"

#include <stdbool.h>

#include "breaker.h"
#include "pool.h"
#include "probe.h"
#include "server.h"
#include "util.h"
#include "walpos.h"
#include "worker.h"

#define TICK_MS 2 /* how often waiting requests look at the published replay positions */

struct ryw_state {
    struct worker *w;
    h2o_linklist_t waiters;
    h2o_timeout_t every;
    h2o_timeout_entry_t tick;
    unsigned next; /* round robin over the standbys that have caught up */
    int npools;
    uint64_t (*counts)[RYW_NOUTCOMES]; /* per pool; written by this worker only, read by scrapes */
};

static const char *const outcome_names[RYW_NOUTCOMES] = {"standby", "waited", "fallback"};

const char *ryw_outcome_name(int outcome)
{
    return outcome >= 0 && outcome < RYW_NOUTCOMES ? outcome_names[outcome] : "fallback";
}

static void count(struct ryw_state *st, int pool, int outcome)
{
    if (pool < 0 || pool >= st->npools) return;
    uint64_t *c = &st->counts[pool][outcome];
    __atomic_store_n(c, *c + 1, __ATOMIC_RELAXED);
}

static bool is_standby(int i)
{
    double lag;
    return probe_replication_lag(i, &lag);
}

/* What pool i can do for a token now: nothing (down, or not a standby the gateway may pick), serve
 * it, or serve it once it has replayed further. */
enum fit { FIT_NO, FIT_LATER, FIT_NOW };

static enum fit fit(struct worker *w, int i, uint64_t lsn, bool routed)
{
    struct pool *p = &w->pools[i];
    if (!pool_healthy(p) || !breaker_would_allow(p->breaker, &p->breaker_policy, now_ms())) return FIT_NO;
    if (is_standby(i)) return walpos_replay(i) >= lsn ? FIT_NOW : FIT_LATER;
    /* sluice.route's choice: a primary has every write of its own; a pool not probed yet may turn
     * out to be a standby, so it is waited for like one */
    if (routed) return probe_is_primary(i) ? FIT_NOW : FIT_LATER;
    return FIT_NO;
}

/* A pool that serves wt's token now (the query's own first, else the standbys in turn), or -1;
 * *later tells whether one may still catch up. */
static int choose(struct ryw_state *st, const struct ryw_wait *wt, bool *later)
{
    *later = false;
    if (wt->routed >= 0) {
        enum fit f = fit(st->w, wt->routed, wt->lsn, true);
        *later = f == FIT_LATER;
        return f == FIT_NOW ? wt->routed : -1;
    }
    int n = st->npools, found = -1;
    for (int k = 0; k < n; k++) {
        int i = (int)((st->next + (unsigned)k) % (unsigned)n);
        if (!is_standby(i)) continue;
        enum fit f = fit(st->w, i, wt->lsn, false);
        if (f == FIT_LATER) *later = true;
        if (f == FIT_NOW && (found < 0 || i == wt->own)) found = i;
    }
    if (found >= 0) st->next = (unsigned)found + 1;
    return found;
}

/* Keeps the probe polling every pool wt still waits for; fresh: the wait begins now. */
static void hurry(struct ryw_state *st, const struct ryw_wait *wt, bool fresh)
{
    for (int i = 0; i < st->npools; i++)
        if ((wt->routed < 0 || wt->routed == i) && fit(st->w, i, wt->lsn, wt->routed >= 0) == FIT_LATER)
            walpos_hurry(i, fresh);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    struct ryw_state *st = container_of(entry, struct ryw_state, tick);
    /* ready() may cancel other waiters (they unlink from `todo` then) or add new ones */
    h2o_linklist_t todo;
    h2o_linklist_init_anchor(&todo);
    h2o_linklist_insert_list(&todo, &st->waiters);
    uint64_t now = now_us();
    while (!h2o_linklist_is_empty(&todo)) {
        struct ryw_wait *wt = H2O_STRUCT_FROM_MEMBER(struct ryw_wait, link, todo.next);
        h2o_linklist_unlink(&wt->link);
        bool later;
        int p = choose(st, wt, &later);
        if (p < 0 && later && now < wt->until_us) {
            h2o_linklist_insert(&st->waiters, &wt->link);
            hurry(st, wt, false);
            continue;
        }
        if (p < 0) {
            p = wt->own;
            count(st, p, RYW_FALLBACK);
        } else if (is_standby(p)) {
            count(st, p, RYW_WAITED);
        }
        wt->ready(wt, p);
    }
    if (!h2o_linklist_is_empty(&st->waiters) && !h2o_timeout_is_linked(&st->tick))
        h2o_timeout_link(st->w->ctx.loop, &st->every, &st->tick);
}

int ryw_pick(struct worker *w, struct ryw_wait *wt, uint64_t lsn, int routed, int own, uint64_t deadline_us,
             void (*ready)(struct ryw_wait *wt, int pool))
{
    struct ryw_state *st = w->ryw;
    *wt = (struct ryw_wait){.lsn = lsn, .routed = routed, .own = own, .ready = ready};
    bool later;
    int p = choose(st, wt, &later);
    if (p >= 0) {
        if (is_standby(p)) count(st, p, RYW_STANDBY);
        return p;
    }
    uint64_t now = now_us();
    uint64_t until = now + (uint64_t)w->pools[own].cfg.read_your_writes_wait_ms * 1000;
    /* half the time left at most: the query still has the other half, on its own pool */
    if (deadline_us != 0) {
        uint64_t half = deadline_us > now ? now + (deadline_us - now) / 2 : now;
        if (half < until) until = half;
    }
    if (!later || until <= now) {
        count(st, own, RYW_FALLBACK);
        return own;
    }
    wt->until_us = until;
    h2o_linklist_insert(&st->waiters, &wt->link);
    hurry(st, wt, true);
    if (!h2o_timeout_is_linked(&st->tick)) h2o_timeout_link(w->ctx.loop, &st->every, &st->tick);
    return -1;
}

void ryw_cancel(struct ryw_wait *wt)
{
    if (h2o_linklist_is_linked(&wt->link)) h2o_linklist_unlink(&wt->link);
}

void ryw_init(struct worker *w)
{
    struct ryw_state *st = xcalloc(1, sizeof *st);
    st->w = w;
    h2o_linklist_init_anchor(&st->waiters);
    h2o_timeout_init(w->ctx.loop, &st->every, TICK_MS);
    st->tick.cb = on_tick;
    st->npools = w->npools;
    st->counts = xcalloc((size_t)(w->npools ? w->npools : 1), sizeof *st->counts);
    __atomic_store_n(&w->ryw, st, __ATOMIC_RELEASE); /* scrapes on other workers read the counts */
}

void ryw_free(struct worker *w)
{
    struct ryw_state *st = w->ryw;
    /* Requests cut by shutdown_timeout may still wait: then it stays, reachable, until exit. */
    if (st == NULL || !h2o_linklist_is_empty(&st->waiters)) return;
    if (h2o_timeout_is_linked(&st->tick)) h2o_timeout_unlink(&st->tick);
    h2o_timeout_dispose(w->ctx.loop, &st->every);
    w->ryw = NULL;
    free(st->counts);
    free(st);
}

void ryw_totals(struct server *srv, int pool, uint64_t out[RYW_NOUTCOMES])
{
    for (int o = 0; o < RYW_NOUTCOMES; o++) out[o] = 0;
    for (int k = 0; k < srv->nworkers; k++) {
        struct ryw_state *st = __atomic_load_n(&srv->workers[k].ryw, __ATOMIC_ACQUIRE);
        if (st == NULL || pool < 0 || pool >= st->npools) continue; /* that worker is still starting */
        for (int o = 0; o < RYW_NOUTCOMES; o++)
            out[o] += __atomic_load_n(&st->counts[pool][o], __ATOMIC_RELAXED);
    }
}
