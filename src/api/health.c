/* health.c — /health (per pool state summed over the workers, with the server each pool is on
 * and, for a URL with several hosts, each host), /health/live, /health/ready. Other workers'
 * pools are read without locks: the figures are a snapshot, never used to decide. */
#include "health.h"

#include <string.h>

#include "http.h"
#include "jsonw.h"
#include "pgconn.h"
#include "probe.h"
#include "server.h"

#define PEEK(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

/* What /health shows of one host of a pool, summed over the workers. */
struct host_view {
    int connections;
    bool reached, failed; /* some worker's last connect reached it / failed */
};

struct pool_view {
    int size, open, in_use, waiting;
    bool healthy;
    const char *breaker;
    const char *last_error;
    const struct pool *any; /* a worker's share, for what the workers share (hosts, roles) */
    int nhosts;
    struct host_view hosts[PGHOSTS_MAX];
};

static void view_pool(struct server *srv, int idx, struct pool_view *v)
{
    memset(v, 0, sizeof *v);
    v->size = srv->cfg->pools[idx].pool_size;
    v->breaker = breaker_state_name(breaker_state(&srv->breakers[idx]));
    for (int i = 0; i < srv->nworkers; i++) {
        struct pool *pools = __atomic_load_n(&srv->workers[i].pools, __ATOMIC_ACQUIRE);
        if (pools == NULL || PEEK(pools[idx].shared) == NULL) continue; /* that worker is still starting */
        struct pool *p = &pools[idx];
        int busy = pool_count(p, PGCONN_PIPELINE) + pool_count(p, PGCONN_LEASED);
        v->open += pool_count(p, PGCONN_IDLE) + busy;
        v->in_use += busy;
        v->waiting += PEEK(p->qlen);
        if (PEEK(p->down_since_us) == 0 || pool_count(p, PGCONN_IDLE) + busy > 0) v->healthy = true;
        if (p->last_error[0]) v->last_error = p->last_error;
        v->any = p;
        v->nhosts = pool_nhosts(p);
        for (int h = 0; h < v->nhosts; h++) {
            v->hosts[h].connections += PEEK(p->hosts[h].conns);
            int last = PEEK(p->hosts[h].last_result);
            v->hosts[h].reached |= last > 0;
            v->hosts[h].failed |= last < 0;
        }
    }
    if (breaker_state(&srv->breakers[idx]) == BREAKER_OPEN) v->healthy = false;
}

/* A host's role as shown: what a connection last saw, while the host is reachable. */
static const char *shown_role(const struct pool_view *v, int h)
{
    const struct host_view *hv = &v->hosts[h];
    if (hv->connections == 0 && (hv->failed || !hv->reached)) return NULL;
    enum pg_role r = pool_host_role(v->any, h);
    return r == PG_ROLE_UNKNOWN ? NULL : pg_role_name(r);
}

static void put_opt_string(struct buf *b, const char *s)
{
    if (s == NULL)
        buf_puts(b, "null");
    else
        jsonw_string(b, s, strlen(s));
}

/* ,"target":..,"host":..,"role":.. and, for several hosts, ,"hosts":[{..},..] */
static void put_servers(struct buf *b, const struct pool_view *v)
{
    if (v->any == NULL) return;
    const struct pg_hosts *hosts = &v->any->shared->hosts;
    int top = -1;
    for (int h = 0; h < v->nhosts; h++)
        if (v->hosts[h].connections > 0 && (top < 0 || v->hosts[h].connections > v->hosts[top].connections))
            top = h;
    buf_printf(b, ",\"target\":\"%s\",\"host\":", pg_target_name(hosts->target));
    put_opt_string(b, top >= 0 ? hosts->h[top].name : NULL);
    buf_puts(b, ",\"role\":");
    put_opt_string(b, top >= 0 ? shown_role(v, top) : NULL);
    if (v->nhosts < 2) return;
    buf_puts(b, ",\"hosts\":[");
    for (int h = 0; h < v->nhosts; h++) {
        const struct host_view *hv = &v->hosts[h];
        buf_puts(b, h ? ",{\"host\":" : "{\"host\":");
        jsonw_string(b, hosts->h[h].name, strlen(hosts->h[h].name));
        const char *status = hv->connections > 0 || (hv->reached && !hv->failed) ? "up"
                             : hv->failed                                        ? "down"
                                                                                 : "unknown";
        buf_printf(b, ",\"status\":\"%s\",\"role\":", status);
        put_opt_string(b, shown_role(v, h));
        buf_printf(b, ",\"connections\":%d}", hv->connections);
    }
    buf_putc(b, ']');
}

static int send_health(struct worker *w, h2o_req_t *req)
{
    struct server *srv = w->srv;
    struct buf *b = &w->out;
    int required_down = 0, any_down = 0;
    struct buf pools = BUF_INIT;
    for (int i = 0; i < w->npools; i++) {
        struct pool_view v;
        view_pool(srv, i, &v);
        const struct pool_config *pc = &srv->cfg->pools[i];
        if (!v.healthy) {
            any_down++;
            if (!pc->optional) required_down++;
        }
        buf_puts(&pools, i ? "," : "");
        jsonw_string(&pools, pc->name, strlen(pc->name));
        buf_printf(
            &pools,
            ":{\"status\":\"%s\",\"size\":%d,\"open\":%d,\"in_use\":%d,\"waiting\":%d,\"breaker\":\"%s\"",
            v.healthy ? "ok" : "down", v.size, v.open, v.in_use, v.waiting, v.breaker);
        double lag;
        if (!probe_replication_lag(i, &lag) || lag < 0)
            buf_puts(&pools, ",\"replication_lag_seconds\":null");
        else
            buf_printf(&pools, ",\"replication_lag_seconds\":%.3f", lag);
        put_servers(&pools, &v);
        if (!v.healthy && v.last_error) {
            buf_puts(&pools, ",\"last_error\":");
            jsonw_string(&pools, v.last_error, strlen(v.last_error));
        }
        buf_putc(&pools, '}');
    }
    const char *status = required_down ? "down" : any_down ? "degraded" : "ok";
    buf_reset(b);
    buf_printf(b, "{\"status\":\"%s\",\"pools\":{%s}}", status, pools.data ? pools.data : "");
    buf_free(&pools);
    http_send_json(req, required_down ? 503 : 200, b->data, b->len);
    return 0;
}

static int send_ready(struct worker *w, h2o_req_t *req)
{
    /* From SIGTERM on, so that a load balancer moves traffic away during shutdown_grace. */
    if (w->stopping || __atomic_load_n(&w->srv->draining, __ATOMIC_ACQUIRE)) {
        http_send_error(req, 503, "unavailable", "shutting down", NULL, NULL);
        return 0;
    }
    for (int i = 0; i < w->npools; i++) {
        struct pool_view v;
        view_pool(w->srv, i, &v);
        if (!v.healthy && !worker_config(w)->pools[i].optional) {
            http_send_error(req, 503, "unavailable", "a required pool cannot serve", NULL, NULL);
            return 0;
        }
    }
    http_send_json(req, 200, H2O_STRLIT("{\"status\":\"ok\"}"));
    return 0;
}

int health_handle(struct worker *w, h2o_req_t *req, h2o_iovec_t path)
{
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/health/live"))) {
        if (w->stopping) {
            http_send_error(req, 503, "unavailable", "shutting down", NULL, NULL);
            return 0;
        }
        http_send_json(req, 200, H2O_STRLIT("{\"status\":\"ok\"}"));
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/health/ready"))) return send_ready(w, req);
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/health"))) return send_health(w, req);
    http_send_error(req, 404, "not_found", "no such endpoint", NULL, NULL);
    return 0;
}
