/* metrics.c — per-worker request statistics, the slow-query report, and GET /metrics in the
 * Prometheus text format 0.0.4. Workers write only their own counters; a scrape sums every
 * worker's with relaxed loads (a snapshot: a histogram's _count is taken from its buckets so
 * each series stays self-consistent). */
#include "metrics.h"

#include <dirent.h>
#include <h2o.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "jsonw.h"
#include "log.h"
#include "server.h"
#include "util.h"

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

/* --- recording ---------------------------------------------------------------------------- */

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

bool metrics_query_done(struct query_def *q, int http_status, uint64_t started_us, const char *errmsg,
                        uint64_t *duration_us)
{
    uint64_t now = now_us();
    uint64_t us = now > started_us ? now - started_us : 0;
    *duration_us = us;
    struct query_stats *s = &q->stats;
    int st = metrics_status_of(http_status);
    histogram_observe(&s->time, (double)us / 1e6);
    s->status[st]++;
    q->calls++;
    if (st != METRICS_OK) {
        q->errors++;
        set_last_error(s, errmsg && *errmsg ? errmsg : metrics_status_name(st));
    }
    if (q->slow_ms > 0 && us > (uint64_t)q->slow_ms * 1000) {
        s->slow++;
        return true;
    }
    return false;
}

void metrics_query_exec(struct query_def *q, uint64_t exec_us)
{
    histogram_observe(&q->stats.exec, (double)exec_us / 1e6);
}

static const char *pool_name(const struct server *srv, int idx, const char *fallback)
{
    if (srv && idx >= 0 && (size_t)idx < srv->cfg->npools) return srv->cfg->pools[idx].name;
    return fallback ? fallback : "";
}

#define HOOK_LIMIT_MS 100 /* sluice.on_slow_query runs on the event loop: it must be quick */

static __thread uint64_t hook_deadline_ms;

/* Count hook (the worker states run interpreted, so it fires in any loop): a runaway
 * on_slow_query errors out instead of stalling the worker. */
static void on_guard(lua_State *L, lua_Debug *ar)
{
    if (now_ms() > hook_deadline_ms)
        luaL_error(L, "sluice.on_slow_query ran for more than %d ms", HOOK_LIMIT_MS);
}

/* Runs sluice.on_slow_query(ev) when the scripts define it. Only lua_pcall reaches Lua; any hook
 * already set on L is put back afterwards. */
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
            lua_Hook saved = lua_gethook(L);
            int saved_mask = lua_gethookmask(L), saved_count = lua_gethookcount(L);
            hook_deadline_ms = now_ms() + HOOK_LIMIT_MS;
            lua_sethook(L, on_guard, LUA_MASKCOUNT, 1000);
            if (lua_pcall(L, 1, 0, 0) != 0) {
                const char *e = lua_tostring(L, -1);
                log_printf(LOG_ERROR, "sluice.on_slow_query failed: %s",
                           e ? e : "(error object is not a string)");
            }
            lua_sethook(L, saved, saved_mask, saved_count);
        }
    }
    lua_settop(L, top);
}

void metrics_slow_query(struct worker *w, const struct query_def *q, int http_status, uint64_t duration_us,
                        const char *params_json)
{
    const char *pool = pool_name(w ? w->srv : NULL, q->pool_idx, q->pool);
    double ms = (double)duration_us / 1000.0;
    if (log_enabled(LOG_WARN)) {
        struct buf f = BUF_INIT;
        buf_puts(&f, "\"query\":");
        jsonw_string(&f, q->name, strlen(q->name));
        buf_puts(&f, ",\"pool\":");
        jsonw_string(&f, pool, strlen(pool));
        buf_printf(&f, ",\"duration_ms\":%.3f,\"threshold_ms\":%d,\"status\":%d", ms, q->slow_ms,
                   http_status);
        if (params_json) {
            buf_puts(&f, ",\"params\":");
            buf_puts(&f, params_json);
        }
        log_write(LOG_WARN, "slow query", f.data);
        buf_free(&f);
    }
    if (w && w->reg->L) call_hook(w->reg->L, q, pool, http_status, ms);
}

void metrics_bulk_done(struct bulk_def *d, bool ok, long rows, uint64_t started_us)
{
    uint64_t now = now_us();
    if (rows > 0) d->stats.rows += (uint64_t)rows;
    if (ok)
        histogram_observe(&d->stats.time, (double)(now > started_us ? now - started_us : 0) / 1e6);
    else
        d->stats.errors++;
}

/* HTTP responses by status code, one slot per worker (indexed by w->index), allocated on first
 * use: struct worker is not this module's, and the hot path only increments. */
#define HTTP_CODES 500 /* 100..599 */
struct http_slot {
    uint64_t by_code[HTTP_CODES];
} __attribute__((aligned(64)));
struct http_table {
    int n;
    struct http_slot slot[];
};
static struct http_table *http_table;

static struct http_table *http_table_for(const struct server *srv)
{
    struct http_table *t = __atomic_load_n(&http_table, __ATOMIC_ACQUIRE);
    if (t != NULL || srv == NULL || srv->nworkers < 1) return t;
    size_t size = sizeof *t + (size_t)srv->nworkers * sizeof(struct http_slot);
    size = (size + 63) / 64 * 64;
    struct http_table *fresh = aligned_alloc(64, size);
    if (fresh == NULL) abort();
    memset(fresh, 0, size);
    fresh->n = srv->nworkers;
    struct http_table *expected = NULL;
    if (__atomic_compare_exchange_n(&http_table, &expected, fresh, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return fresh;
    free(fresh); /* another worker was first */
    return expected;
}

void metrics_http_status(struct worker *w, int http_status)
{
    struct http_table *t = http_table_for(w->srv);
    if (t == NULL || w->index < 0 || w->index >= t->n || http_status < 100 || http_status > 599) return;
    t->slot[w->index].by_code[http_status - 100]++;
}

/* --- reading ------------------------------------------------------------------------------ */

void metrics_query_totals(struct server *srv, const char *name, struct query_totals *out)
{
    memset(out, 0, sizeof *out);
    uint64_t newest = 0;
    size_t len = strlen(name);
    for (int k = 0; k < srv->nworkers; k++) {
        struct query_def *q = registry_find(srv->workers[k].reg, name, len);
        if (q == NULL) continue;
        const struct query_stats *s = &q->stats;
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
    }
    for (int i = 0; i < METRICS_NSTATUS; i++) out->calls += out->status[i];
    out->errors = out->calls - out->status[METRICS_OK];
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
    uint64_t deadlocks, conn_errors;
    struct histogram acquire;
};

static void sum_pools(struct server *srv, struct pool_totals *pt, int npools)
{
    for (int i = 0; i < npools; i++) {
        int configured = srv->cfg->pools[i].pool_size;
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
            int nconns = PEEK(p->nconns), nconnecting = PEEK(p->nconnecting);
            pt[i].busy += PEEK(p->nbusy);
            pt[i].open += nconns - nconnecting;
            pt[i].connecting += nconnecting;
            pt[i].waiting += PEEK(p->qlen);
            pt[i].stmts += PEEK(p->stmts_prepared);
            pt[i].deadlocks += PEEK(p->deadlocks);
            pt[i].conn_errors += PEEK(p->connect_errors) + PEEK(p->conn_lost);
            histogram_add(&pt[i].acquire, &p->acquire);
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

void metrics_render(struct server *srv, struct buf *b)
{
    const struct config *cfg = srv->cfg;
    int npools = (int)cfg->npools;
    struct pool_totals *pt = xcalloc((size_t)(npools ? npools : 1), sizeof *pt);
    sum_pools(srv, pt, npools);
    /* every worker loads the same scripts: the first one's registry names the series */
    const struct registry *reg = srv->workers[0].reg;
    int nq = reg->nqueries, nb = reg->nbulks;
    struct query_totals *qt = xcalloc((size_t)(nq ? nq : 1), sizeof *qt);
    for (int i = 0; i < nq; i++) metrics_query_totals(srv, reg->queries[i]->name, &qt[i]);
    struct bulk_stats *bt = xcalloc((size_t)(nb ? nb : 1), sizeof *bt);
    for (int i = 0; i < nb; i++) {
        const char *name = reg->bulks[i]->name;
        for (int k = 0; k < srv->nworkers; k++) {
            const struct bulk_def *d = registry_find_bulk(srv->workers[k].reg, name, strlen(name));
            if (d == NULL) continue;
            histogram_add(&bt[i].time, &d->stats.time);
            bt[i].rows += PEEK(d->stats.rows);
            bt[i].errors += PEEK(d->stats.errors);
        }
    }
    struct buf lb = BUF_INIT, lb2 = BUF_INIT;

    /* pools */
    metrics_family(b, "db_pool_size", "gauge",
                   "Resident connections of the pool: pool_size, at least one per worker.");
    for (int i = 0; i < npools; i++)
        metrics_sample_u64(b, "db_pool_size", labels(&lb, "pool", cfg->pools[i].name, NULL, NULL),
                           (uint64_t)pt[i].size);
    metrics_family(b, "db_pool_usage", "gauge", "Connections of the pool checked out (running statements).");
    for (int i = 0; i < npools; i++)
        metrics_sample(b, "db_pool_usage", labels(&lb, "pool", cfg->pools[i].name, NULL, NULL), pt[i].busy);
    metrics_family(b, "db_connection_time_seconds", "histogram",
                   "Time a request waited for a connection of the pool.");
    for (int i = 0; i < npools; i++)
        metrics_histogram(b, "db_connection_time_seconds",
                          labels(&lb, "pool", cfg->pools[i].name, NULL, NULL), &pt[i].acquire);
    metrics_family(b, "prepared_stmt_cache_size", "gauge",
                   "Prepared statements held by all connections of the pool.");
    for (int i = 0; i < npools; i++)
        metrics_sample(b, "prepared_stmt_cache_size", labels(&lb, "pool", cfg->pools[i].name, NULL, NULL),
                       pt[i].stmts);

    /* named queries */
    metrics_family(b, "prepared_stmt_execution_time_seconds", "histogram",
                   "Time from sending a named query's execution to its result, successful executions.");
    for (int i = 0; i < nq; i++)
        metrics_histogram(b, "prepared_stmt_execution_time_seconds",
                          labels(&lb, "pool",
                                 pool_name(srv, reg->queries[i]->pool_idx, reg->queries[i]->pool), "query",
                                 reg->queries[i]->name),
                          &qt[i].exec);
    metrics_family(b, "prepared_stmt_executions_total", "counter", "Successful executions of a named query.");
    for (int i = 0; i < nq; i++)
        metrics_sample_u64(b, "prepared_stmt_executions_total",
                           labels(&lb, "pool",
                                  pool_name(srv, reg->queries[i]->pool_idx, reg->queries[i]->pool), "query",
                                  reg->queries[i]->name),
                           hist_total(&qt[i].exec));

    /* bulk operations */
    metrics_family(b, "bulk_operation_time_seconds", "histogram",
                   "Duration of successful bulk loads, from the request to the answer.");
    for (int i = 0; i < nb; i++)
        metrics_histogram(b, "bulk_operation_time_seconds",
                          labels(&lb, "pool", pool_name(srv, reg->bulks[i]->pool_idx, reg->bulks[i]->pool),
                                 "operation", reg->bulks[i]->name),
                          &bt[i].time);
    metrics_family(b, "bulk_operation_rows_total", "counter", "Rows committed by bulk loads.");
    for (int i = 0; i < nb; i++)
        metrics_sample_u64(b, "bulk_operation_rows_total",
                           labels(&lb, "pool", pool_name(srv, reg->bulks[i]->pool_idx, reg->bulks[i]->pool),
                                  "operation", reg->bulks[i]->name),
                           bt[i].rows);
    metrics_family(b, "bulk_operation_executions_total", "counter", "Successful bulk loads.");
    for (int i = 0; i < nb; i++)
        metrics_sample_u64(b, "bulk_operation_executions_total",
                           labels(&lb, "pool", pool_name(srv, reg->bulks[i]->pool_idx, reg->bulks[i]->pool),
                                  "operation", reg->bulks[i]->name),
                           hist_total(&bt[i].time));
    metrics_family(b, "sluice_bulk_operation_errors_total", "counter",
                   "Bulk loads answered with an error (after the body was accepted for loading).");
    for (int i = 0; i < nb; i++)
        metrics_sample_u64(b, "sluice_bulk_operation_errors_total",
                           labels(&lb, "pool", pool_name(srv, reg->bulks[i]->pool_idx, reg->bulks[i]->pool),
                                  "operation", reg->bulks[i]->name),
                           bt[i].errors);

    /* requests of named queries */
    metrics_family(b, "db_query_time_seconds", "histogram",
                   "Duration of requests for a named query, from arrival to answer, any status.");
    for (int i = 0; i < nq; i++)
        metrics_histogram(b, "db_query_time_seconds",
                          labels(&lb, "pool",
                                 pool_name(srv, reg->queries[i]->pool_idx, reg->queries[i]->pool), "query",
                                 reg->queries[i]->name),
                          &qt[i].time);
    metrics_family(b, "db_query_count", "counter",
                   "Requests for a named query by outcome: ok or the error code the client got.");
    for (int i = 0; i < nq; i++) {
        labels(&lb, "pool", pool_name(srv, reg->queries[i]->pool_idx, reg->queries[i]->pool), "query",
               reg->queries[i]->name);
        for (int s = 0; s < METRICS_NSTATUS; s++) {
            if (s != METRICS_OK && qt[i].status[s] == 0) continue;
            buf_reset(&lb2);
            buf_puts(&lb2, lb.data);
            metrics_label(&lb2, "status", status_names[s]);
            metrics_sample_u64(b, "db_query_count", lb2.data, qt[i].status[s]);
        }
    }
    metrics_family(b, "db_slow_query_count", "counter",
                   "Requests for a named query slower than its slow_query_ms.");
    for (int i = 0; i < nq; i++)
        metrics_sample_u64(b, "db_slow_query_count",
                           labels(&lb, "pool",
                                  pool_name(srv, reg->queries[i]->pool_idx, reg->queries[i]->pool), "query",
                                  reg->queries[i]->name),
                           qt[i].slow);

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

    /* the process */
    metrics_family(b, "sluice_http_requests_total", "counter", "HTTP responses sent, by status code.");
    struct http_table *t = __atomic_load_n(&http_table, __ATOMIC_ACQUIRE);
    for (int c = 0; t && c < HTTP_CODES; c++) {
        uint64_t n = 0;
        for (int k = 0; k < t->n; k++) n += PEEK(t->slot[k].by_code[c]);
        if (n == 0) continue;
        char code[16];
        snprintf(code, sizeof code, "%d", c + 100);
        metrics_sample_u64(b, "sluice_http_requests_total", labels(&lb, "code", code, NULL, NULL), n);
    }
    metrics_family(b, "sluice_workers", "gauge", "Worker threads (event loops) serving requests.");
    metrics_sample(b, "sluice_workers", NULL, srv->nworkers);
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

    buf_free(&lb);
    buf_free(&lb2);
    free(bt);
    free(qt);
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
    metrics_http_status(w, 200);
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4; charset=utf-8"));
    req->res.content_length = b->len;
    h2o_send_inline(req, b->data, b->len);
    return 0;
}
