/* admin.c — /admin/...: bearer-token protected operator endpoints. The token is compared in
 * constant time and never logged. */
#include "admin.h"

#include <lua.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "explain.h"
#include "http.h"
#include "reqinfo.h"
#include "jsonw.h"
#include "metrics.h"
#include "script.h"
#include "server.h"

/* Returns true when authorized; otherwise it has answered 401 or 403. */
static bool authorize(struct worker *w, h2o_req_t *req)
{
    const char *token = worker_config(w)->admin_token;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        http_send_error(req, 401, "unauthorized", "an admin bearer token is required", NULL, NULL);
        return false;
    }
    h2o_iovec_t v = req->headers.entries[i].value;
    if (v.len < 7 || !h2o_lcstris(v.base, 7, H2O_STRLIT("bearer ")) ||
        !auth_same_secret(v.base + 7, v.len - 7, token, strlen(token))) {
        http_send_error(req, 403, "forbidden", "wrong admin token", NULL, NULL);
        return false;
    }
    reqinfo_set_subject(req, H2O_STRLIT("admin"));
    return true;
}

/* Per named query: definition and counters summed over the workers, request-time quantiles
 * (estimated from the db_query_time_seconds buckets: the bucket's upper bound), the slow count
 * and the newest error over the workers. */
static void send_queries(struct worker *w, h2o_req_t *req)
{
    struct server *srv = w->srv;
    struct buf *b = &w->out;
    buf_reset(b);
    buf_puts(b, "{\"queries\":[");
    for (int i = 0; i < w->reg->nqueries; i++) {
        struct query_def *q = w->reg->queries[i];
        struct query_totals t;
        metrics_query_totals(srv, q->name, &t);
        buf_puts(b, i ? ",{\"name\":" : "{\"name\":");
        jsonw_string(b, q->name, strlen(q->name));
        buf_puts(b, ",\"sql\":");
        jsonw_string(b, q->sql, strlen(q->sql));
        buf_printf(b, ",\"readonly\":%s,\"calls\":%llu,\"errors\":%llu", q->readonly ? "true" : "false",
                   (unsigned long long)t.calls, (unsigned long long)t.errors);
        buf_printf(b, ",\"p50_ms\":%g,\"p95_ms\":%g,\"p99_ms\":%g", histogram_quantile(&t.time, 0.50) * 1000,
                   histogram_quantile(&t.time, 0.95) * 1000, histogram_quantile(&t.time, 0.99) * 1000);
        buf_printf(b, ",\"slow\":%llu,\"slow_query_ms\":%d,\"last_error\":", (unsigned long long)t.slow,
                   q->slow_ms);
        if (t.last_error[0])
            jsonw_string(b, t.last_error, strlen(t.last_error));
        else
            buf_puts(b, "null");
        char *plan = metrics_plan_get(srv, q->name); /* explain_slow: already JSON */
        buf_puts(b, ",\"plan\":");
        buf_puts(b, plan ? plan : "null");
        free(plan);
        buf_putc(b, '}');
    }
    buf_puts(b, "]}");
    http_send_json(req, 200, b->data, b->len);
}

/* POST /admin/reload: the scripts are loaded once here to check them, so that a broken script is
 * reported to the caller; then every worker reloads (SIGHUP semantics). */
static void reload(struct worker *w, h2o_req_t *req)
{
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        http_send_error(req, 405, "method_not_allowed", "use POST", NULL, NULL);
        return;
    }
    char err[512];
    struct registry probe;
    registry_init(&probe);
    lua_State *L = script_load(worker_config(w), &probe, err, sizeof err);
    if (L == NULL) {
        registry_free(&probe);
        http_send_error(req, 400, "bad_request", err, NULL, NULL);
        return;
    }
    struct buf *b = &w->out;
    buf_reset(b);
    buf_printf(b, "{\"status\":\"reloading\",\"queries\":%d,\"bulk\":%d,\"handlers\":%d}", probe.nqueries,
               probe.nbulks, probe.nhandlers);
    script_close(L);
    registry_free(&probe);
    kill(getpid(), SIGHUP);
    http_send_json(req, 200, b->data, b->len);
}

int admin_handle(struct worker *w, h2o_req_t *req, h2o_iovec_t path)
{
    if (worker_config(w)->admin_token == NULL) {
        http_send_error(req, 404, "not_found", "no such endpoint", NULL, NULL);
        return 0;
    }
    if (!authorize(w, req)) return 0;
    if (path.len > 15 && memcmp(path.base, "/admin/explain/", 15) == 0)
        return explain_handle(w, req, path.base + 15, path.len - 15);
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/admin/reload"))) {
        reload(w, req);
        return 0;
    }
    if (h2o_memis(path.base, path.len, H2O_STRLIT("/admin/queries"))) {
        send_queries(w, req);
        return 0;
    }
    http_send_error(req, 404, "not_found", "no such endpoint", NULL, NULL);
    return 0;
}
