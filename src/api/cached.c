/* cached.c — requests of cached and coalesced named queries (cached.h). A flight is one
 * execution on one worker that every identical request arriving while it runs waits on; it lives
 * in the worker's table until its job ends, owns the job, and answers each request with the same
 * outcome. The store itself is cache.c. */
#include "cached.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "hash64.h"
#include "listener.h"
#include "log.h"
#include "probe.h"
#include "util.h"
#include "walpos.h"
#include "worker.h"

#define FLIGHT_BUCKETS  1024
#define CACHED_CHANNEL  "sluice_invalidate" /* what `sluice cache-triggers` NOTIFYs */
#define LISTEN_WATCH_MS 100                 /* how often worker 0 looks at the LISTEN connections */

struct flight {
    struct flight *next; /* the bucket's chain, while joinable */
    struct flights *home;
    uint64_t hash;
    char *key; /* malloc'd: the requests that made it may leave */
    size_t keylen;
    uint64_t gens, lsn;
    bool joinable;
    struct pgjob *job;
    h2o_linklist_t seats;
    struct cached_seat *leader; /* answered "miss"; the others "coalesced" */
    cached_answer_fn answer;
    cached_bind_fn bind;
};

struct flights {
    struct worker *w;
    struct flight *buckets[FLIGHT_BUCKETS];
    h2o_timeout_t every; /* worker 0: the watch on the LISTEN connections */
    h2o_timeout_entry_t tick;
};

/* The pools whose cached queries depend on a LISTEN connection (cached_listen; bits are only ever
 * added, by the main thread), whether each is up as last seen, and its backend then. The last two
 * are written by worker 0's watch, read by every worker. */
static uint64_t listen_pools;
static bool listening[CACHE_MAX_POOLS];
static int listen_pid[CACHE_MAX_POOLS];

/* True when an answer of pool may be stored or served: nothing is missed while it is. */
static bool pool_listening(int pool)
{
    if (pool < 0 || pool >= CACHE_MAX_POOLS ||
        !(__atomic_load_n(&listen_pools, __ATOMIC_ACQUIRE) & (1ull << pool)))
        return true;
    return __atomic_load_n(&listening[pool], __ATOMIC_ACQUIRE);
}

/* Every LISTEN_WATCH_MS: a LISTEN connection lost (or not made yet) stops its pool's entries from
 * being served or stored, and drops those there are; a new one lets them be stored again. */
static void on_watch(h2o_timeout_entry_t *entry)
{
    struct flights *fs = H2O_STRUCT_FROM_MEMBER(struct flights, tick, entry);
    const struct config *cfg = worker_config(fs->w);
    uint64_t pools = __atomic_load_n(&listen_pools, __ATOMIC_ACQUIRE);
    for (size_t i = 0; i < cfg->npools && i < CACHE_MAX_POOLS; i++) {
        if (!(pools & (1ull << i))) continue;
        int pid = listener_backend_pid(cfg->pools[i].name);
        if (pid == listen_pid[i]) continue;
        if (listen_pid[i] != 0) cache_bump_pool((int)i);
        listen_pid[i] = pid;
        __atomic_store_n(&listening[i], pid != 0, __ATOMIC_RELEASE);
    }
    h2o_timeout_link(fs->w->ctx.loop, &fs->every, &fs->tick);
}

void cached_init(struct worker *w)
{
    struct flights *fs = w->flights = xcalloc(1, sizeof *w->flights);
    fs->w = w;
    /* Worker 0 watches even when no pool is subscribed yet: a reload may subscribe one. */
    if (w->index != 0) return;
    h2o_timeout_init(w->ctx.loop, &fs->every, LISTEN_WATCH_MS);
    fs->tick.cb = on_watch;
    h2o_timeout_link(w->ctx.loop, &fs->every, &fs->tick);
}

void cached_free(struct worker *w)
{
    struct flights *fs = w->flights;
    if (fs == NULL) return;
    /* flights still in progress at exit (shutdown_timeout) stay reachable from their jobs */
    for (int i = 0; i < FLIGHT_BUCKETS; i++)
        if (fs->buckets[i]) return;
    if (h2o_timeout_is_linked(&fs->tick)) h2o_timeout_unlink(&fs->tick);
    if (fs->tick.cb) h2o_timeout_dispose(w->ctx.loop, &fs->every);
    free(fs);
    w->flights = NULL;
}

void cached_begin(struct cached_seat *s, h2o_req_t *req, const struct query_def *q, const struct pgjob *job)
{
    memset(s, 0, sizeof *s);
    if (!q->coalesce || !job->bound) return;
    /* The query (its definition's hash and its name), the caller's credentials when the query has
     * auth (one caller never gets another's entry), then the bound parameters as they go to the
     * server: where each value starts (-1: NULL), then the NUL-terminated values. Lengths and
     * terminators keep the parts apart, so two different requests never make the same bytes. */
    h2o_iovec_t auth = h2o_iovec_init(NULL, 0);
    if (q->auth != AUTH_NONE) {
        ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
        if (i >= 0) auth = req->headers.entries[i].value;
    }
    uint32_t authlen = (uint32_t)auth.len;
    size_t namelen = strlen(q->name) + 1, offs = sizeof *job->param_off * (size_t)q->nparams;
    s->keylen = sizeof q->cache_def_hash + namelen + sizeof authlen + auth.len + offs + job->params.len;
    char *k = s->key = h2o_mem_alloc_pool(&req->pool, s->keylen);
    memcpy(k, &q->cache_def_hash, sizeof q->cache_def_hash), k += sizeof q->cache_def_hash;
    memcpy(k, q->name, namelen), k += namelen;
    memcpy(k, &authlen, sizeof authlen), k += sizeof authlen;
    if (auth.len) memcpy(k, auth.base, auth.len), k += auth.len;
    if (offs) memcpy(k, job->param_off, offs), k += offs;
    if (job->params.len) memcpy(k, job->params.data, job->params.len);
    s->hash = hash64(s->key, s->keylen);
    s->gens = cache_gens(q->cache_tables, q->ncache_tables, q->pool_idx);
    s->active = true;
}

bool cached_lookup(struct cached_seat *s, const struct query_def *q, uint64_t token, struct buf *out)
{
    if (!s->active || q->cache_ttl_ms == 0) return false;
    if (!pool_listening(q->pool_idx)) { /* writes made elsewhere would go unseen */
        cache_count(&q->cache_stats->misses);
        return false;
    }
    enum cache_found f = cache_lookup(s->key, s->keylen, s->hash, s->gens, token, out, &s->body_hash);
    if (f == CACHE_HIT) {
        cache_count(&q->cache_stats->hits);
        return true;
    }
    if (f == CACHE_STALE) cache_count(&q->cache_stats->invalidations);
    cache_count(&q->cache_stats->misses);
    return false;
}

static struct flight **slot_of(struct flights *fs, uint64_t hash, const char *key, size_t keylen)
{
    struct flight **pp = &fs->buckets[hash % FLIGHT_BUCKETS];
    while (*pp && !((*pp)->hash == hash && (*pp)->keylen == keylen && memcmp((*pp)->key, key, keylen) == 0))
        pp = &(*pp)->next;
    return pp;
}

/* No request joins f from now on. */
static void close_flight(struct flight *f)
{
    if (!f->joinable) return;
    struct flight **pp = slot_of(f->home, f->hash, f->key, f->keylen);
    if (*pp == f) *pp = f->next;
    f->joinable = false;
}

bool cached_join(struct worker *w, struct cached_seat *s, const struct query_def *q)
{
    if (!s->active) return false;
    struct flight *f = *slot_of(w->flights, s->hash, s->key, s->keylen);
    /* a flight that began before a write to its tables may have read before it: not shared */
    if (f == NULL || f->gens != s->gens) return false;
    s->flight = f;
    h2o_linklist_insert(&f->seats, &s->link);
    cache_count(&q->cache_stats->coalesced);
    return true;
}

static int flight_bind(struct pgjob *job)
{
    struct flight *f = job->owner;
    struct cached_seat *s = H2O_STRUCT_FROM_MEMBER(struct cached_seat, link, f->seats.next);
    return f->bind(s, job);
}

/* The flight ends with o (body: a 200's rendering): every request still waiting is answered. */
static void land(struct flight *f, const struct call_outcome *o, const struct buf *body)
{
    close_flight(f);
    while (!h2o_linklist_is_empty(&f->seats)) {
        struct cached_seat *s = H2O_STRUCT_FROM_MEMBER(struct cached_seat, link, f->seats.next);
        h2o_linklist_unlink(&s->link);
        s->flight = NULL;
        f->answer(s, f->job, o, body, s == f->leader ? "miss" : "coalesced");
    }
    free(f->key);
    free(f);
}

static void flight_done(struct pgjob *job)
{
    struct flight *f = job->owner;
    struct call_outcome o;
    call_outcome(job, worker_config(f->home->w)->max_rows, &o);
    struct buf body = BUF_INIT;
    if (o.status == 200) {
        call_write_json(&body, &o, job->q->name);
        struct cached_seat keep = {
            .key = f->key, .keylen = f->keylen, .hash = f->hash, .gens = f->gens, .lsn = f->lsn};
        cached_keep(&keep, job->q, &body);
    }
    land(f, &o, o.status == 200 ? &body : NULL);
    buf_free(&body);
    pgjob_free(job);
}

void cached_lead(struct worker *w, struct cached_seat *s, struct pgjob *job, cached_answer_fn answer,
                 cached_bind_fn bind)
{
    struct flight *f = xcalloc(1, sizeof *f);
    f->home = w->flights;
    f->key = xmalloc(s->keylen);
    memcpy(f->key, s->key, s->keylen);
    f->keylen = s->keylen;
    f->hash = s->hash;
    f->gens = s->gens;
    f->lsn = s->lsn;
    f->job = job;
    f->leader = s;
    f->answer = answer;
    f->bind = bind;
    h2o_linklist_init_anchor(&f->seats);
    h2o_linklist_insert(&f->seats, &s->link);
    s->flight = f;
    struct flight **pp = slot_of(w->flights, f->hash, f->key, f->keylen);
    if (*pp == NULL) { /* else an older one of another generation keeps the slot */
        *pp = f;
        f->joinable = true;
    }
    job->owner = f;
    job->on_done = flight_done;
    job->bind = flight_bind;
}

void cached_refused(struct pgjob *job, const struct call_outcome *o)
{
    land(job->owner, o, NULL);
    pgjob_free(job);
}

void cached_leave(struct cached_seat *s)
{
    struct flight *f = s->flight;
    if (f == NULL) return;
    h2o_linklist_unlink(&s->link);
    s->flight = NULL;
    if (f->leader == s) f->leader = NULL;
    if (!h2o_linklist_is_empty(&f->seats)) return;
    close_flight(f);
    pool_abandon(f->job); /* nobody waits for it any more */
    free(f->key);
    free(f);
}

uint64_t cached_read_lsn(int pool, uint64_t token)
{
    double lag;
    if (probe_replication_lag(pool, &lag)) return walpos_replay(pool); /* a standby */
    uint64_t known = cache_known_lsn();
    return token > known ? token : known;
}

void cached_keep(const struct cached_seat *s, const struct query_def *q, const struct buf *body)
{
    if (q->cache_ttl_ms == 0 || s->key == NULL || !pool_listening(q->pool_idx)) return;
    cache_store(s->key, s->keylen, s->hash, body->data, body->len, s->gens, s->lsn, q->cache_ttl_ms,
                q->cache_stats);
}

uint64_t cached_pools(const struct registry *reg)
{
    uint64_t mask = 0;
    for (int i = 0; i < reg->nqueries; i++) {
        const struct query_def *q = reg->queries[i];
        if (q->cache_ttl_ms > 0 && q->pool_idx >= 0 && q->pool_idx < CACHE_MAX_POOLS)
            mask |= 1ull << q->pool_idx;
    }
    return mask;
}

/* On the listener's thread, under its lock: only atomics here. */
static void on_invalidate(void *arg, const char *channel, const char *payload, size_t len)
{
    if (!cache_invalidate_named(payload))
        log_debug("sluice_invalidate: no cached query reads \"%.64s\"", payload);
}

static void on_listen_reset(void *arg, const char *channel)
{
    cache_bump_pool((int)(intptr_t)arg);
}

void cached_listen(const struct config *cfg, uint64_t pools)
{
    pools &= ~__atomic_load_n(&listen_pools, __ATOMIC_ACQUIRE); /* only the main thread adds bits */
    for (size_t i = 0; i < cfg->npools && i < CACHE_MAX_POOLS; i++) {
        if (!(pools & (1ull << i))) continue;
        if (listener_subscribe(cfg->pools[i].name, CACHED_CHANNEL, on_invalidate, on_listen_reset,
                               (void *)(intptr_t)i, NULL) != NULL)
            __atomic_or_fetch(&listen_pools, 1ull << i, __ATOMIC_RELEASE);
        else
            log_warn("pool %s: cannot LISTEN %s: writes made elsewhere do not invalidate its cached queries",
                     cfg->pools[i].name, CACHED_CHANNEL);
    }
}

void cached_header(h2o_req_t *req, const char *verdict)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sluice-cache"), 0, "Sluice-Cache",
                          verdict, strlen(verdict));
}
