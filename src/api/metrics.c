/* metrics.c — per-worker request statistics, the slow-query report, and GET /metrics in the
 * Prometheus text format 0.0.4. Each worker has a slot (HTTP counters and a list of entries, one
 * per query or bulk name, each with statistics per pool) that only it writes; the slots live for
 * the process, so reloads and retired definitions never take counters away. A scrape sums every
 * worker's with relaxed loads (a snapshot: a histogram's _count is taken from its buckets so each
 * series stays self-consistent). */
#include "metrics.h"

#include "breaker.h"
#include "guard.h"

#include <dirent.h>
#include <h2o.h>
#include <lauxlib.h>
#include <libpq-fe.h>
#include <luajit.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "evhub.h"
#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "probe.h"
#include "reqstats.h"
#include "ryw.h"
#include "script.h"
#include "server.h"
#include "util.h"
#include "version.h"

#define PEEK(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static const char *const status_names[METRICS_NSTATUS] = {
    "ok",       "bad_request", "unauthorized",           "forbidden",   "not_found", "method_not_allowed",
    "conflict", "too_large",   "unsupported_media_type", "unavailable", "timeout",   "internal",
};

const char *metrics_status_name(int s)
{
    return s >= 0 && s < METRICS_NSTATUS ? status_names[s] : "internal";
}

int metrics_status_of(int http_status)
{
    if (http_status >= 200 && http_status < 400) return METRICS_OK;
    switch (http_status) {
    case 400:
        return METRICS_BAD_REQUEST;
    case 401:
        return METRICS_UNAUTHORIZED;
    case 403:
        return METRICS_FORBIDDEN;
    case 404:
        return METRICS_NOT_FOUND;
    case 405:
        return METRICS_METHOD_NOT_ALLOWED;
    case 409:
        return METRICS_CONFLICT;
    case 413:
        return METRICS_TOO_LARGE;
    case 415:
        return METRICS_UNSUPPORTED_MEDIA_TYPE;
    case 503:
        return METRICS_UNAVAILABLE;
    case 504:
        return METRICS_TIMEOUT;
    default:
        return METRICS_INTERNAL;
    }
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* --- a query's newest error --------------------------------------------------------------- */

/* Seqlock writer: readers on other workers see the sequence odd while the text changes. */
static void set_last_error(struct query_stats *s, const char *msg)
{
    unsigned seq = s->last_error_seq;
    __atomic_store_n(&s->last_error_seq, seq + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    snprintf(s->last_error, sizeof s->last_error, "%s", msg);
    s->last_error_ms = wall_ms();
    __atomic_store_n(&s->last_error_seq, seq + 2, __ATOMIC_RELEASE);
}

/* Copies the newest error of s into out (n bytes); returns its time, 0 when none or torn. */
static uint64_t get_last_error(const struct query_stats *s, char *out, size_t n)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        unsigned before = __atomic_load_n(&s->last_error_seq, __ATOMIC_ACQUIRE);
        if (before == 0) break;
        if (before & 1) continue;
        char copy[METRICS_LAST_ERROR];
        memcpy(copy, s->last_error, sizeof copy);
        uint64_t at = s->last_error_ms;
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&s->last_error_seq, __ATOMIC_RELAXED) != before) continue;
        copy[sizeof copy - 1] = '\0';
        snprintf(out, n, "%s", copy);
        return at;
    }
    return 0;
}

/* --- the per-worker store ------------------------------------------------------------------- */

struct metrics_entry {
    struct metrics_entry *next; /* the worker's list, newest first; published with a release store */
    bool bulk;
    uint32_t hash;
    char *name;
    int npools;
    void *by_pool[]; /* struct query_stats * or struct bulk_stats *, made at first use, published */
};

struct worker_slot {
    struct metrics_entry *entries;
} __attribute__((aligned(64))); /* no false sharing between workers */

struct table {
    int nworkers, npools;
    struct worker_slot slot[];
};
static struct table *table;

static const struct config *config_of(const struct server *srv)
{
    return __atomic_load_n(&srv->cfg, __ATOMIC_ACQUIRE);
}

/* The process's table, made on first use by whichever worker comes first (pools and workers do
 * not change without a restart). NULL without workers. */
static struct table *table_for(const struct server *srv)
{
    struct table *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    if (t != NULL || srv == NULL || srv->nworkers < 1) return t;
    size_t size = sizeof *t + (size_t)srv->nworkers * sizeof(struct worker_slot);
    size = (size + 63) / 64 * 64;
    struct table *fresh = aligned_alloc(64, size);
    if (fresh == NULL) abort();
    memset(fresh, 0, size);
    fresh->nworkers = srv->nworkers;
    fresh->npools = (int)config_of(srv)->npools;
    struct table *expected = NULL;
    if (__atomic_compare_exchange_n(&table, &expected, fresh, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return fresh;
    free(fresh); /* another worker was first */
    return expected;
}

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static struct metrics_entry *find_entry(const struct worker_slot *slot, uint32_t hash, const char *name,
                                        bool bulk)
{
    for (struct metrics_entry *e = __atomic_load_n(&slot->entries, __ATOMIC_ACQUIRE); e;
         e = __atomic_load_n(&e->next, __ATOMIC_ACQUIRE))
        if (e->hash == hash && e->bulk == bulk && strcmp(e->name, name) == 0) return e;
    return NULL;
}

/* w's entry for name, found once and cached in *cache (a field of w's own definition). */
static struct metrics_entry *entry_of(struct worker *w, struct metrics_entry **cache, const char *name,
                                      bool bulk)
{
    if (*cache != NULL) return *cache;
    struct table *t = table_for(w->srv);
    if (t == NULL || w->index < 0 || w->index >= t->nworkers) return NULL;
    struct worker_slot *slot = &t->slot[w->index];
    uint32_t hash = hash_name(name);
    struct metrics_entry *e = find_entry(slot, hash, name, bulk);
    if (e == NULL) {
        e = xcalloc(1, sizeof *e + (size_t)t->npools * sizeof e->by_pool[0]);
        e->bulk = bulk;
        e->hash = hash;
        e->name = xstrdup(name);
        e->npools = t->npools;
        e->next = slot->entries;
        __atomic_store_n(&slot->entries, e, __ATOMIC_RELEASE);
    }
    *cache = e;
    return e;
}

/* The statistics of pool in e, made on first use. NULL for a pool out of range. */
static void *stats_of(struct metrics_entry *e, int pool, size_t size)
{
    if (e == NULL || pool < 0 || pool >= e->npools) return NULL;
    void *s = e->by_pool[pool];
    if (s == NULL) {
        s = xcalloc(1, size);
        __atomic_store_n(&e->by_pool[pool], s, __ATOMIC_RELEASE);
    }
    return s;
}

static struct query_stats *query_stats_of(struct worker *w, struct query_def *q, int pool)
{
    return stats_of(entry_of(w, &q->metrics, q->name, false), pool, sizeof(struct query_stats));
}

void metrics_reset(void)
{
    struct table *t = __atomic_exchange_n(&table, NULL, __ATOMIC_ACQ_REL);
    if (t == NULL) return;
    for (int k = 0; k < t->nworkers; k++)
        for (struct metrics_entry *e = t->slot[k].entries, *next; e; e = next) {
            next = e->next;
            for (int i = 0; i < e->npools; i++) {
                if (e->by_pool[i] && !e->bulk) free(((struct query_stats *)e->by_pool[i])->plan);
                free(e->by_pool[i]);
            }
            free(e->name);
            free(e);
        }
    free(t);
}

/* --- recording ---------------------------------------------------------------------------- */

bool metrics_query_done(struct worker *w, struct query_def *q, int pool, int http_status, uint64_t started_us,
                        const char *errmsg, uint64_t *duration_us)
{
    uint64_t now = now_us();
    uint64_t us = now > started_us ? now - started_us : 0;
    *duration_us = us;
    int st = metrics_status_of(http_status);
    q->calls++;
    if (st != METRICS_OK) q->errors++;
    struct query_stats *s = query_stats_of(w, q, pool);
    if (s == NULL) return false;
    histogram_observe(&s->time, (double)us / 1e6);
    s->status[st]++;
    if (st != METRICS_OK) set_last_error(s, errmsg && *errmsg ? errmsg : metrics_status_name(st));
    if (q->slow_ms > 0 && us > (uint64_t)q->slow_ms * 1000) {
        s->slow++;
        return true;
    }
    return false;
}

void metrics_query_exec(struct worker *w, struct query_def *q, int pool, uint64_t exec_us)
{
    struct query_stats *s = query_stats_of(w, q, pool);
    if (s != NULL) histogram_observe(&s->exec, (double)exec_us / 1e6);
}

static const char *pool_name(const struct server *srv, int idx, const char *fallback)
{
    const struct config *cfg = srv ? config_of(srv) : NULL;
    if (cfg && idx >= 0 && (size_t)idx < cfg->npools) return cfg->pools[idx].name;
    return fallback ? fallback : "";
}

/* sluice.on_slow_query runs on the event loop: it must be quick. The guard's count hook (the
 * worker states run interpreted, so it fires in any loop) stops a runaway one. */
#define HOOK_LIMIT_MS 100

/* Runs sluice.on_slow_query(ev) when the scripts define it, under the guard (which puts back any
 * hook already set on L). */
static void call_hook(lua_State *L, const struct query_def *q, const char *pool, int http_status, double ms)
{
    int top = lua_gettop(L);
    lua_getglobal(L, "sluice");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "on_slow_query");
        if (lua_isfunction(L, -1)) {
            lua_createtable(L, 0, 4);
            lua_pushstring(L, q->name);
            lua_setfield(L, -2, "query");
            lua_pushstring(L, pool);
            lua_setfield(L, -2, "pool");
            lua_pushnumber(L, ms);
            lua_setfield(L, -2, "duration_ms");
            lua_pushinteger(L, http_status);
            lua_setfield(L, -2, "status");
            if (guard_pcall(L, 1, 0, HOOK_LIMIT_MS, "sluice.on_slow_query ran for more than 100 ms") != 0) {
                const char *e = lua_tostring(L, -1);
                log_printf(LOG_ERROR, "sluice.on_slow_query failed: %s",
                           e ? e : "(error object is not a string)");
            }
        }
    }
    lua_settop(L, top);
}

void metrics_slow_query(struct worker *w, const struct query_def *q, int pool, int http_status,
                        uint64_t duration_us, const char *params_json)
{
    const char *pool_label = pool_name(w ? w->srv : NULL, pool, q->pool);
    double ms = (double)duration_us / 1000.0;
    if (log_enabled(LOG_WARN)) {
        struct buf f = BUF_INIT;
        buf_puts(&f, "\"query\":");
        jsonw_string(&f, q->name, strlen(q->name));
        buf_puts(&f, ",\"pool\":");
        jsonw_string(&f, pool_label, strlen(pool_label));
        buf_printf(&f, ",\"duration_ms\":%.3f,\"threshold_ms\":%d,\"status\":%d", ms, q->slow_ms,
                   http_status);
        if (params_json) {
            buf_puts(&f, ",\"params\":");
            buf_puts(&f, params_json);
        }
        log_write(LOG_WARN, "slow query", f.data);
        buf_free(&f);
    }
    lua_State *L = w && w->reg ? w->reg->L : NULL;
    if (L) call_hook(L, q, pool_label, http_status, ms);
}

void metrics_bulk_done(struct worker *w, struct bulk_def *d, bool ok, long rows, uint64_t started_us)
{
    uint64_t now = now_us();
    struct bulk_stats *s = stats_of(entry_of(w, &d->metrics, d->name, true), d->pool_idx, sizeof *s);
    if (s == NULL) return;
    if (rows > 0) s->rows += (uint64_t)rows;
    if (ok)
        histogram_observe(&s->time, (double)(now > started_us ? now - started_us : 0) / 1e6);
    else
        s->errors++;
}

/* --- captured plans ---------------------------------------------------------------------- */

/* Captures are rare (once a minute per query and worker at most) and reads are admin requests:
 * one lock for every plan keeps the request path free of it. */
static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

bool metrics_plan_due(struct worker *w, struct query_def *q, int pool)
{
    struct query_stats *s = query_stats_of(w, q, pool);
    uint64_t now = now_ms();
    if (s == NULL || (s->plan_tried_ms != 0 && now - s->plan_tried_ms < METRICS_PLAN_EVERY_MS)) return false;
    s->plan_tried_ms = now;
    return true;
}

bool metrics_plan_set(struct worker *w, struct query_def *q, int pool, const char *plan, size_t len)
{
    struct query_stats *s = query_stats_of(w, q, pool);
    if (s == NULL || len > METRICS_PLAN_MAX) return false;
    char *copy = xstrndup(plan, len);
    pthread_mutex_lock(&plan_lock);
    char *old = s->plan;
    s->plan = copy;
    s->plan_ms = wall_ms();
    pthread_mutex_unlock(&plan_lock);
    free(old);
    return true;
}

char *metrics_plan_get(struct server *srv, const char *name)
{
    struct table *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    if (t == NULL) return NULL;
    uint32_t hash = hash_name(name);
    char *out = NULL;
    uint64_t newest = 0;
    pthread_mutex_lock(&plan_lock);
    for (int k = 0; k < t->nworkers; k++) {
        const struct metrics_entry *e = find_entry(&t->slot[k], hash, name, false);
        for (int p = 0; e && p < e->npools; p++) {
            const struct query_stats *s = __atomic_load_n(&e->by_pool[p], __ATOMIC_ACQUIRE);
            if (s && s->plan && s->plan_ms >= newest) {
                newest = s->plan_ms;
                free(out);
                out = xstrdup(s->plan);
            }
        }
    }
    pthread_mutex_unlock(&plan_lock);
    return out;
}

/* --- reading ------------------------------------------------------------------------------ */

/* Adds pool's statistics of e (NULL: nothing) into out; returns the time of e's newest error. */
static uint64_t add_query(struct query_totals *out, const struct metrics_entry *e, int pool, uint64_t newest)
{
    const struct query_stats *s =
        e && pool >= 0 && pool < e->npools ? __atomic_load_n(&e->by_pool[pool], __ATOMIC_ACQUIRE) : NULL;
    if (s == NULL) return newest;
    histogram_add(&out->time, &s->time);
    histogram_add(&out->exec, &s->exec);
    for (int i = 0; i < METRICS_NSTATUS; i++) out->status[i] += PEEK(s->status[i]);
    out->slow += PEEK(s->slow);
    char msg[METRICS_LAST_ERROR];
    uint64_t at = get_last_error(s, msg, sizeof msg);
    if (at > newest) {
        newest = at;
        memcpy(out->last_error, msg, sizeof msg);
    }
    return newest;
}

static void finish_totals(struct query_totals *out)
{
    out->calls = 0;
    for (int i = 0; i < METRICS_NSTATUS; i++) out->calls += out->status[i];
    out->errors = out->calls - out->status[METRICS_OK];
}

void metrics_query_totals(struct server *srv, const char *name, struct query_totals *out)
{
    memset(out, 0, sizeof *out);
    struct table *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    if (t == NULL) return;
    uint32_t hash = hash_name(name);
    uint64_t newest = 0;
    for (int k = 0; k < t->nworkers; k++) {
        const struct metrics_entry *e = find_entry(&t->slot[k], hash, name, false);
        for (int p = 0; e && p < e->npools; p++) newest = add_query(out, e, p, newest);
    }
    finish_totals(out);
}

/* The number of observations of h, from its buckets (what its _count shows). */
static uint64_t hist_total(const struct histogram *h)
{
    uint64_t n = 0;
    for (int i = 0; i <= HISTOGRAM_BUCKETS; i++) n += PEEK(h->counts[i]);
    return n;
}

/* --- exposition helpers ------------------------------------------------------------------- */

void metrics_label_value(struct buf *b, const char *s)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            buf_puts(b, "\\\\");
        else if (*p == '"')
            buf_puts(b, "\\\"");
        else if (*p == '\n')
            buf_puts(b, "\\n");
        else
            buf_putc(b, *p);
    }
}

void metrics_label(struct buf *b, const char *name, const char *value)
{
    if (b->len > 0) buf_putc(b, ',');
    buf_puts(b, name);
    buf_puts(b, "=\"");
    metrics_label_value(b, value);
    buf_putc(b, '"');
}

void metrics_family(struct buf *b, const char *name, const char *type, const char *help)
{
    buf_printf(b, "# HELP %s ", name);
    for (const char *p = help; *p; p++) {
        if (*p == '\\')
            buf_puts(b, "\\\\");
        else if (*p == '\n')
            buf_puts(b, "\\n");
        else
            buf_putc(b, *p);
    }
    buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

static void put_name(struct buf *b, const char *name, const char *suffix, const char *labels,
                     const char *extra)
{
    buf_puts(b, name);
    if (suffix) buf_puts(b, suffix);
    bool has = labels && *labels;
    if (has || extra) {
        buf_putc(b, '{');
        if (has) buf_puts(b, labels);
        if (extra) {
            if (has) buf_putc(b, ',');
            buf_puts(b, extra);
        }
        buf_putc(b, '}');
    }
    buf_putc(b, ' ');
}

/* The shortest of %.15g / %.17g that reads back as v; NaN and infinities as Prometheus spells them. */
static void put_double(struct buf *b, double v)
{
    if (isnan(v))
        buf_puts(b, "NaN");
    else if (isinf(v))
        buf_puts(b, v > 0 ? "+Inf" : "-Inf");
    else {
        char s[40];
        snprintf(s, sizeof s, "%.15g", v);
        if (strtod(s, NULL) != v) snprintf(s, sizeof s, "%.17g", v);
        buf_puts(b, s);
    }
}

void metrics_sample(struct buf *b, const char *name, const char *labels, double value)
{
    put_name(b, name, NULL, labels, NULL);
    put_double(b, value);
    buf_putc(b, '\n');
}

void metrics_sample_u64(struct buf *b, const char *name, const char *labels, uint64_t value)
{
    put_name(b, name, NULL, labels, NULL);
    buf_printf(b, "%llu\n", (unsigned long long)value);
}

void metrics_histogram(struct buf *b, const char *name, const char *labels, const struct histogram *h)
{
    uint64_t cum = 0;
    char le[48];
    for (int i = 0; i <= HISTOGRAM_BUCKETS; i++) {
        cum += PEEK(h->counts[i]);
        if (i < HISTOGRAM_BUCKETS)
            snprintf(le, sizeof le, "le=\"%g\"", histogram_bounds[i]);
        else
            snprintf(le, sizeof le, "le=\"+Inf\"");
        put_name(b, name, "_bucket", labels, le);
        buf_printf(b, "%llu\n", (unsigned long long)cum);
    }
    put_name(b, name, "_sum", labels, NULL);
    put_double(b, h->sum);
    buf_putc(b, '\n');
    put_name(b, name, "_count", labels, NULL);
    buf_printf(b, "%llu\n", (unsigned long long)cum);
}

/* --- the exposition ----------------------------------------------------------------------- */

struct pool_totals {
    int size, busy, open, connecting, waiting, stmts;
    uint64_t deadlocks, conn_errors, role_changes;
    struct histogram acquire, txn_time, failover_wait;
    uint64_t txn_outcomes[3];
};

static void sum_pools(struct server *srv, struct pool_totals *pt, int npools)
{
    for (int i = 0; i < npools; i++) {
        int configured = config_of(srv)->pools[i].pool_size;
        /* every worker keeps at least one resident connection (pool.c shares the total out) */
        pt[i].size = configured > srv->nworkers ? configured : srv->nworkers;
    }
    for (int k = 0; k < srv->nworkers; k++) {
        struct worker *w = &srv->workers[k];
        struct pool *pools = __atomic_load_n(&w->pools, __ATOMIC_ACQUIRE);
        if (pools == NULL) continue; /* that worker is still starting */
        int n = PEEK(w->npools) < npools ? PEEK(w->npools) : npools;
        for (int i = 0; i < n; i++) {
            struct pool *p = &pools[i];
            int busy = pool_count(p, PGCONN_PIPELINE) + pool_count(p, PGCONN_LEASED);
            pt[i].busy += busy;
            pt[i].open += pool_count(p, PGCONN_IDLE) + busy;
            pt[i].connecting += pool_count(p, PGCONN_CONNECTING);
            pt[i].waiting += PEEK(p->qlen);
            pt[i].stmts += PEEK(p->stmts_prepared);
            pt[i].deadlocks += PEEK(p->deadlocks);
            pt[i].conn_errors += PEEK(p->connect_errors) + PEEK(p->conn_lost);
            histogram_add(&pt[i].acquire, &p->acquire);
            histogram_add(&pt[i].txn_time, &p->txn_time);
            histogram_add(&pt[i].failover_wait, &p->failover_wait);
            /* shared by the workers: counted once, read from any of them */
            const struct pool_shared *sh = PEEK(p->shared);
            if (sh != NULL) pt[i].role_changes = PEEK(sh->role_changes);
            for (int o = 0; o < 3; o++) pt[i].txn_outcomes[o] += PEEK(p->txn_outcomes[o]);
        }
    }
}

/* Resets lb to `k1="v1"[,k2="v2"]` and returns its text. */
static const char *labels(struct buf *lb, const char *k1, const char *v1, const char *k2, const char *v2)
{
    buf_reset(lb);
    metrics_label(lb, k1, v1);
    if (k2) metrics_label(lb, k2, v2);
    return lb->data;
}

/* `endpoint="..",method=".."` of row r into lb (reset first). */
static const char *request_labels(struct buf *lb, const struct reqstats_row *r)
{
    return labels(lb, "endpoint", r->endpoint, "method", reqstats_method_name(r->method));
}

/* sluice_http_requests_total by endpoint, method and code, and the time to the first byte by
 * endpoint and method (reqstats.h). */
static void http_families(const struct server *srv, struct buf *b)
{
    struct reqstats_row *rows;
    size_t n = reqstats_rows(srv, &rows);
    struct buf lb = BUF_INIT;
    metrics_family(b, "sluice_http_requests_total", "counter",
                   "HTTP responses sent, by endpoint, method and status code.");
    for (size_t i = 0; i < n; i++) {
        char code[16];
        snprintf(code, sizeof code, "%d", rows[i].status);
        request_labels(&lb, &rows[i]);
        metrics_label(&lb, "code", code);
        metrics_sample_u64(b, "sluice_http_requests_total", lb.data, rows[i].count);
    }
    metrics_family(b, "sluice_http_request_duration_seconds", "histogram",
                   "Time from a request's arrival to the start of its response, by endpoint and method.");
    /* rows are sorted by endpoint, method, status: each run of one endpoint and method is summed */
    for (size_t i = 0; i < n;) {
        struct histogram h = rows[i].time;
        size_t j = i + 1;
        for (; j < n && rows[j].method == rows[i].method && strcmp(rows[j].endpoint, rows[i].endpoint) == 0;
             j++)
            histogram_add(&h, &rows[j].time);
        metrics_histogram(b, "sluice_http_request_duration_seconds", request_labels(&lb, &rows[i]), &h);
        i = j;
    }
    buf_free(&lb);
    free(rows);
}

/* The circuit breaker of each pool: its state one-hot, and how often it changed. */
static void breaker_families(const struct server *srv, struct buf *b, int npools)
{
    static const enum breaker_state states[] = {BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN};
    const struct config *cfg = config_of(srv);
    struct buf lb = BUF_INIT;
    metrics_family(
        b, "sluice_pool_breaker_state", "gauge",
        "The pool's circuit breaker: 1 for its state (closed, open, half_open), 0 for the others.");
    for (int i = 0; srv->breakers && i < npools; i++) {
        enum breaker_state now = breaker_state(&srv->breakers[i]);
        for (size_t s = 0; s < ARRAY_SIZE(states); s++)
            metrics_sample(b, "sluice_pool_breaker_state",
                           labels(&lb, "pool", cfg->pools[i].name, "state", breaker_state_name(states[s])),
                           now == states[s]);
    }
    metrics_family(b, "sluice_pool_breaker_transitions_total", "counter",
                   "Times the pool's circuit breaker changed state (closed, open, half_open).");
    for (int i = 0; srv->breakers && i < npools; i++)
        metrics_sample_u64(b, "sluice_pool_breaker_transitions_total",
                           labels(&lb, "pool", cfg->pools[i].name, NULL, NULL),
                           atomic_load(&srv->breakers[i].transitions));
    buf_free(&lb);
}

/* sluice_build_info: 1, with the versions of sluice and of the libraries it runs on. */
static void build_info(struct buf *b)
{
    char libpq[32];
    int v = PQlibVersion();
    snprintf(libpq, sizeof libpq, "%d.%d", v / 10000, v % 10000);
    struct buf lb = BUF_INIT;
    metrics_label(&lb, "version", SLUICE_VERSION);
    metrics_label(&lb, "h2o", H2O_VERSION);
    metrics_label(&lb, "libpq", libpq);
    metrics_label(&lb, "luajit", LUAJIT_VERSION);
    metrics_family(b, "sluice_build_info", "gauge",
                   "Always 1; the labels give the versions of sluice and its libraries.");
    metrics_sample(b, "sluice_build_info", lb.data, 1);
    buf_free(&lb);
}

/* Figures of the process itself, from /proc/self. Missing files leave the value at -1. */
struct process_view {
    double rss_bytes, open_fds, cpu_seconds, start_time;
};

static void read_process(struct process_view *v)
{
    v->rss_bytes = v->open_fds = v->cpu_seconds = v->start_time = -1;
    long page = sysconf(_SC_PAGESIZE), hz = sysconf(_SC_CLK_TCK);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size, resident;
        if (fscanf(f, "%lu %lu", &size, &resident) == 2) v->rss_bytes = (double)resident * (double)page;
        fclose(f);
    }
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int n = 0;
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            if (e->d_name[0] != '.') n++;
        v->open_fds = n - 1; /* not the directory's own descriptor */
        closedir(d);
    }
    char line[1024];
    unsigned long long starttime = 0;
    f = fopen("/proc/self/stat", "r");
    if (f) {
        size_t n = fread(line, 1, sizeof line - 1, f);
        line[n] = '\0';
        fclose(f);
        /* fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt
         * cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime */
        char *p = strrchr(line, ')');
        unsigned long utime, stime;
        if (p &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %*d %*d %llu",
                   &utime, &stime, &starttime) == 3)
            v->cpu_seconds = (double)(utime + stime) / (double)hz;
    }
    f = fopen("/proc/stat", "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            unsigned long long btime;
            if (sscanf(line, "btime %llu", &btime) == 1 && starttime > 0) {
                v->start_time = (double)btime + (double)starttime / (double)hz;
                break;
            }
        }
        fclose(f);
    }
}

/* One (name, pool) series of a query or bulk family. */
struct qrow {
    const char *name;
    int pool;
    struct query_totals t;
};
struct brow {
    const char *name;
    int pool;
    struct bulk_stats t;
};

/* The series to show: each name the scripts define now (worker 0's current generation names
 * them: every worker loads the same scripts), on its own pool and on every other pool that
 * sluice.route sent it to. Returns the count; *out is malloc'd. */
static int query_rows(struct server *srv, const struct registry *reg, int npools, struct qrow **out)
{
    struct table *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    int nw = t ? t->nworkers : 0, n = 0;
    struct qrow *rows = xcalloc((size_t)(reg->nqueries * npools + 1), sizeof *rows);
    const struct metrics_entry **es = xcalloc((size_t)(nw + 1), sizeof *es);
    for (int i = 0; i < reg->nqueries; i++) {
        const struct query_def *q = reg->queries[i];
        uint32_t hash = hash_name(q->name);
        for (int k = 0; k < nw; k++) es[k] = find_entry(&t->slot[k], hash, q->name, false);
        for (int p = 0; p < npools; p++) {
            struct qrow *r = &rows[n];
            memset(r, 0, sizeof *r);
            uint64_t newest = 0;
            for (int k = 0; k < nw; k++) newest = add_query(&r->t, es[k], p, newest);
            finish_totals(&r->t);
            if (p != q->pool_idx && r->t.calls == 0 && hist_total(&r->t.exec) == 0) continue;
            r->name = q->name;
            r->pool = p;
            n++;
        }
    }
    free(es);
    *out = rows;
    return n;
}

static int bulk_rows(struct server *srv, const struct registry *reg, int npools, struct brow **out)
{
    struct table *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    int nw = t ? t->nworkers : 0, n = 0;
    struct brow *rows = xcalloc((size_t)(reg->nbulks * npools + 1), sizeof *rows);
    for (int i = 0; i < reg->nbulks; i++) {
        const struct bulk_def *d = reg->bulks[i];
        uint32_t hash = hash_name(d->name);
        for (int p = 0; p < npools; p++) {
            struct brow *r = &rows[n];
            memset(r, 0, sizeof *r);
            for (int k = 0; k < nw; k++) {
                const struct metrics_entry *e = find_entry(&t->slot[k], hash, d->name, true);
                const struct bulk_stats *s =
                    e && p < e->npools ? __atomic_load_n(&e->by_pool[p], __ATOMIC_ACQUIRE) : NULL;
                if (s == NULL) continue;
                histogram_add(&r->t.time, &s->time);
                r->t.rows += PEEK(s->rows);
                r->t.errors += PEEK(s->errors);
            }
            if (p != d->pool_idx && hist_total(&r->t.time) == 0 && r->t.errors == 0 && r->t.rows == 0)
                continue;
            r->name = d->name;
            r->pool = p;
            n++;
        }
    }
    *out = rows;
    return n;
}

void metrics_render(struct server *srv, struct buf *b)
{
    const struct config *cfg = config_of(srv);
    int npools = (int)cfg->npools;
    struct pool_totals *pt = xcalloc((size_t)(npools ? npools : 1), sizeof *pt);
    sum_pools(srv, pt, npools);
    const struct registry *reg = __atomic_load_n(&srv->workers[0].reg, __ATOMIC_ACQUIRE);
    struct qrow *qr;
    struct brow *br;
    int nq = query_rows(srv, reg, npools, &qr), nb = bulk_rows(srv, reg, npools, &br);
    struct buf lb = BUF_INIT, lb2 = BUF_INIT;
#define POOL(i) (cfg->pools[i].name)

    /* pools */
    metrics_family(b, "db_pool_size", "gauge",
                   "Resident connections of the pool: pool_size, at least one per worker.");
    for (int i = 0; i < npools; i++)
        metrics_sample_u64(b, "db_pool_size", labels(&lb, "pool", POOL(i), NULL, NULL), (uint64_t)pt[i].size);
    metrics_family(b, "db_pool_usage", "gauge", "Connections of the pool checked out (running statements).");
    for (int i = 0; i < npools; i++)
        metrics_sample(b, "db_pool_usage", labels(&lb, "pool", POOL(i), NULL, NULL), pt[i].busy);
    metrics_family(b, "db_connection_time_seconds", "histogram",
                   "Time a request waited for a connection of the pool.");
    for (int i = 0; i < npools; i++)
        metrics_histogram(b, "db_connection_time_seconds", labels(&lb, "pool", POOL(i), NULL, NULL),
                          &pt[i].acquire);
    metrics_family(b, "sluice_transaction_duration_seconds", "histogram",
                   "Transactions of handlers and /batch?transaction=true, from BEGIN to their end.");
    for (int i = 0; i < npools; i++)
        metrics_histogram(b, "sluice_transaction_duration_seconds", labels(&lb, "pool", POOL(i), NULL, NULL),
                          &pt[i].txn_time);
    metrics_family(
        b, "sluice_transactions_total", "counter",
        "Transactions by outcome: commit, rollback, or error (the connection was lost or the client left).");
    static const char *const outcomes[3] = {"commit", "rollback", "error"};
    for (int i = 0; i < npools; i++)
        for (int o = 0; o < 3; o++)
            metrics_sample_u64(b, "sluice_transactions_total",
                               labels(&lb, "pool", POOL(i), "outcome", outcomes[o]), pt[i].txn_outcomes[o]);
    metrics_family(b, "prepared_stmt_cache_size", "gauge",
                   "Prepared statements held by all connections of the pool.");
    for (int i = 0; i < npools; i++)
        metrics_sample(b, "prepared_stmt_cache_size", labels(&lb, "pool", POOL(i), NULL, NULL), pt[i].stmts);

    /* named queries */
    metrics_family(b, "prepared_stmt_execution_time_seconds", "histogram",
                   "Time from sending a named query's execution to its result, successful executions.");
    for (int i = 0; i < nq; i++)
        metrics_histogram(b, "prepared_stmt_execution_time_seconds",
                          labels(&lb, "pool", POOL(qr[i].pool), "query", qr[i].name), &qr[i].t.exec);
    metrics_family(b, "prepared_stmt_executions_total", "counter", "Successful executions of a named query.");
    for (int i = 0; i < nq; i++)
        metrics_sample_u64(b, "prepared_stmt_executions_total",
                           labels(&lb, "pool", POOL(qr[i].pool), "query", qr[i].name),
                           hist_total(&qr[i].t.exec));

    /* bulk operations */
    metrics_family(b, "bulk_operation_time_seconds", "histogram",
                   "Duration of successful bulk loads, from the request to the answer.");
    for (int i = 0; i < nb; i++)
        metrics_histogram(b, "bulk_operation_time_seconds",
                          labels(&lb, "pool", POOL(br[i].pool), "operation", br[i].name), &br[i].t.time);
    metrics_family(b, "bulk_operation_rows_total", "counter", "Rows committed by bulk loads.");
    for (int i = 0; i < nb; i++)
        metrics_sample_u64(b, "bulk_operation_rows_total",
                           labels(&lb, "pool", POOL(br[i].pool), "operation", br[i].name), br[i].t.rows);
    metrics_family(b, "bulk_operation_executions_total", "counter", "Successful bulk loads.");
    for (int i = 0; i < nb; i++)
        metrics_sample_u64(b, "bulk_operation_executions_total",
                           labels(&lb, "pool", POOL(br[i].pool), "operation", br[i].name),
                           hist_total(&br[i].t.time));
    metrics_family(b, "sluice_bulk_operation_errors_total", "counter",
                   "Bulk loads answered with an error (after the body was accepted for loading).");
    for (int i = 0; i < nb; i++)
        metrics_sample_u64(b, "sluice_bulk_operation_errors_total",
                           labels(&lb, "pool", POOL(br[i].pool), "operation", br[i].name), br[i].t.errors);

    /* requests of named queries */
    metrics_family(b, "db_query_time_seconds", "histogram",
                   "Duration of requests for a named query, from arrival to answer, any status.");
    for (int i = 0; i < nq; i++)
        metrics_histogram(b, "db_query_time_seconds",
                          labels(&lb, "pool", POOL(qr[i].pool), "query", qr[i].name), &qr[i].t.time);
    metrics_family(b, "db_query_count", "counter",
                   "Requests for a named query by outcome: ok or the error code the client got.");
    for (int i = 0; i < nq; i++) {
        labels(&lb, "pool", POOL(qr[i].pool), "query", qr[i].name);
        for (int s = 0; s < METRICS_NSTATUS; s++) {
            if (s != METRICS_OK && qr[i].t.status[s] == 0) continue;
            buf_reset(&lb2);
            buf_puts(&lb2, lb.data);
            metrics_label(&lb2, "status", status_names[s]);
            metrics_sample_u64(b, "db_query_count", lb2.data, qr[i].t.status[s]);
        }
    }
    metrics_family(b, "db_slow_query_count", "counter",
                   "Requests for a named query slower than its slow_query_ms.");
    for (int i = 0; i < nq; i++)
        metrics_sample_u64(b, "db_slow_query_count",
                           labels(&lb, "pool", POOL(qr[i].pool), "query", qr[i].name), qr[i].t.slow);

    /* pool failures */
    metrics_family(b, "db_deadlock_count", "counter",
                   "Statements of the pool that failed with a deadlock (40P01).");
    for (int i = 0; i < npools; i++)
        metrics_sample_u64(b, "db_deadlock_count", labels(&lb, "pool", cfg->pools[i].name, NULL, NULL),
                           pt[i].deadlocks);
    metrics_family(b, "db_connection_errors", "counter",
                   "Failed connection attempts plus established connections lost, of the pool.");
    for (int i = 0; i < npools; i++)
        metrics_sample_u64(b, "db_connection_errors", labels(&lb, "pool", cfg->pools[i].name, NULL, NULL),
                           pt[i].conn_errors);
    breaker_families(srv, b, npools);
    metrics_family(b, "sluice_pool_connections", "gauge",
                   "Connections of the pool by state: open or connecting.");
    for (int i = 0; i < npools; i++) {
        metrics_sample(b, "sluice_pool_connections", labels(&lb, "pool", cfg->pools[i].name, "state", "open"),
                       pt[i].open);
        metrics_sample(b, "sluice_pool_connections",
                       labels(&lb, "pool", cfg->pools[i].name, "state", "connecting"), pt[i].connecting);
    }
    metrics_family(b, "sluice_pool_waiting", "gauge", "Requests queued for a connection of the pool.");
    for (int i = 0; i < npools; i++)
        metrics_sample(b, "sluice_pool_waiting", labels(&lb, "pool", cfg->pools[i].name, NULL, NULL),
                       pt[i].waiting);
    metrics_family(b, "sluice_pool_replication_lag_seconds", "gauge",
                   "How far the pool's server, a streaming replica, is behind its primary (the probe's "
                   "measure; absent for a primary or while not known).");
    for (int i = 0; i < npools; i++) {
        double lag;
        if (probe_replication_lag(i, &lag) && lag >= 0)
            metrics_sample(b, "sluice_pool_replication_lag_seconds",
                           labels(&lb, "pool", cfg->pools[i].name, NULL, NULL), lag);
    }
    metrics_family(b, "sluice_pool_role_changes_total", "counter",
                   "Servers of the pool seen in a new role (promoted or demoted), or its primary found on "
                   "another host.");
    for (int i = 0; i < npools; i++)
        metrics_sample_u64(b, "sluice_pool_role_changes_total",
                           labels(&lb, "pool", cfg->pools[i].name, NULL, NULL), pt[i].role_changes);
    metrics_family(b, "sluice_failover_wait_seconds", "histogram",
                   "Time requests of the pool waited for a usable server (only those that had to: none was "
                   "up or of the right role).");
    for (int i = 0; i < npools; i++)
        metrics_histogram(b, "sluice_failover_wait_seconds",
                          labels(&lb, "pool", cfg->pools[i].name, NULL, NULL), &pt[i].failover_wait);
    metrics_family(b, "sluice_read_your_writes_total", "counter",
                   "Readonly requests that carried Sluice-LSN, by the pool that served them: a standby that "
                   "had replayed it, one that did while the request waited, or the query's own pool.");
    for (int i = 0; i < npools; i++) {
        uint64_t n[RYW_NOUTCOMES];
        ryw_totals(srv, i, n);
        for (int o = 0; o < RYW_NOUTCOMES; o++)
            metrics_sample_u64(b, "sluice_read_your_writes_total",
                               labels(&lb, "pool", cfg->pools[i].name, "outcome", ryw_outcome_name(o)), n[o]);
    }

    evhub_metrics(b); /* live event channels */

    /* the process */
    http_families(srv, b);
    build_info(b);
    metrics_family(b, "sluice_workers", "gauge", "Worker threads (event loops) serving requests.");
    metrics_sample(b, "sluice_workers", NULL, srv->nworkers);
    metrics_family(b, "sluice_lua_memory_bytes", "gauge",
                   "Memory held by each worker's current Lua state (bounded by lua_memory_limit).");
    for (int k = 0; k < srv->nworkers; k++) {
        struct registry *reg = __atomic_load_n(&srv->workers[k].reg, __ATOMIC_ACQUIRE);
        char idx[16];
        snprintf(idx, sizeof idx, "%d", k);
        metrics_sample(b, "sluice_lua_memory_bytes", labels(&lb, "worker", idx, NULL, NULL),
                       (double)script_memory(reg ? reg->L : NULL));
    }
    struct process_view pv;
    read_process(&pv);
    if (pv.rss_bytes >= 0) {
        metrics_family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        metrics_sample(b, "process_resident_memory_bytes", NULL, pv.rss_bytes);
    }
    if (pv.open_fds >= 0) {
        metrics_family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
        metrics_sample(b, "process_open_fds", NULL, pv.open_fds);
    }
    if (pv.cpu_seconds >= 0) {
        metrics_family(b, "process_cpu_seconds_total", "counter",
                       "Total user and system CPU time spent in seconds.");
        metrics_sample(b, "process_cpu_seconds_total", NULL, pv.cpu_seconds);
    }
    if (pv.start_time >= 0) {
        metrics_family(b, "process_start_time_seconds", "gauge",
                       "Start time of the process since unix epoch in seconds.");
        metrics_sample(b, "process_start_time_seconds", NULL, pv.start_time);
    }

#undef POOL
    buf_free(&lb);
    buf_free(&lb2);
    free(br);
    free(qr);
    free(pt);
}

int metrics_handle(struct worker *w, h2o_req_t *req)
{
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        http_send_error(req, 405, "method_not_allowed", "use GET", NULL, NULL);
        return 0;
    }
    struct buf *b = &w->out;
    buf_reset(b);
    metrics_render(w->srv, b);
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    req->res.content_length = b->len;
    h2o_send_inline(req, b->data, b->len);
    return 0;
}
