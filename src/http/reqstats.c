/* reqstats.c — HTTP responses by endpoint, method and status (reqstats.h). Each worker keeps a
 * list of its series that scrapes walk (append-only, published with release stores) and a private
 * hash index over it that only the worker itself reads, so the request path takes no lock. */
#include "reqstats.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "server.h"
#include "util.h"
#include "worker.h"

#define PEEK(x)       __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define ENDPOINT_ENV  "SLUICE_ENDPOINT" /* where reqstats_name keeps the label in the request */
#define INDEX_INITIAL 64

static const char *const method_names[REQSTATS_NMETHODS] = {"GET",   "HEAD",   "POST",    "PUT",
                                                            "PATCH", "DELETE", "OPTIONS", "other"};

const char *reqstats_method_name(int m)
{
    return m >= 0 && m < REQSTATS_NMETHODS ? method_names[m] : "other";
}

int reqstats_method_of(const char *method, size_t len)
{
    for (int m = 0; m < REQSTATS_OTHER; m++)
        if (h2o_memis(method, len, method_names[m], strlen(method_names[m]))) return m;
    return REQSTATS_OTHER;
}

void reqstats_name(h2o_req_t *req, const char *kind, const char *name)
{
    h2o_iovec_t *v = h2o_req_getenv(req, H2O_STRLIT(ENDPOINT_ENV), 1);
    *v = name ? h2o_concat(&req->pool, h2o_iovec_init(kind, strlen(kind)), h2o_iovec_init(H2O_STRLIT("/")),
                           h2o_iovec_init(name, strlen(name)))
              : h2o_strdup(&req->pool, kind, SIZE_MAX);
}

/* --- the store ------------------------------------------------------------------------------- */

struct series {
    struct series *next; /* the worker's list, newest first */
    uint32_t hash;
    int method, status;
    char *endpoint;
    uint64_t count;
    struct histogram time;
};

struct reqstats {
    struct series *all;    /* what scrapes read */
    struct series **index; /* open addressing, the owner's only; cap a power of two */
    size_t cap, n;
};

static uint32_t hash_of(const char *endpoint, size_t len, int method, int status)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)endpoint[i]) * 16777619u;
    h = (h ^ (uint32_t)method) * 16777619u;
    return (h ^ (uint32_t)status) * 16777619u;
}

static void index_put(struct series **index, size_t cap, struct series *s)
{
    size_t i = s->hash & (cap - 1);
    while (index[i] != NULL) i = (i + 1) & (cap - 1);
    index[i] = s;
}

static struct series *series_of(struct reqstats *rs, const char *endpoint, size_t len, int method, int status)
{
    uint32_t h = hash_of(endpoint, len, method, status);
    for (size_t i = h & (rs->cap - 1); rs->index[i] != NULL; i = (i + 1) & (rs->cap - 1)) {
        struct series *s = rs->index[i];
        if (s->hash == h && s->method == method && s->status == status && strlen(s->endpoint) == len &&
            memcmp(s->endpoint, endpoint, len) == 0)
            return s;
    }
    if ((rs->n + 1) * 2 > rs->cap) { /* keep it at most half full */
        size_t cap = rs->cap * 2;
        struct series **index = xcalloc(cap, sizeof *index);
        for (size_t i = 0; i < rs->cap; i++)
            if (rs->index[i]) index_put(index, cap, rs->index[i]);
        free(rs->index);
        rs->index = index;
        rs->cap = cap;
    }
    struct series *s = xcalloc(1, sizeof *s);
    s->hash = h;
    s->method = method;
    s->status = status;
    s->endpoint = xstrndup(endpoint, len);
    s->next = rs->all;
    index_put(rs->index, rs->cap, s);
    rs->n++;
    __atomic_store_n(&rs->all, s, __ATOMIC_RELEASE);
    return s;
}

static void count(struct worker *w, const char *endpoint, size_t len, int method, int status, double seconds)
{
    struct reqstats *rs = w->reqstats;
    if (rs == NULL) {
        rs = xcalloc(1, sizeof *rs);
        rs->cap = INDEX_INITIAL;
        rs->index = xcalloc(rs->cap, sizeof *rs->index);
        __atomic_store_n(&w->reqstats, rs, __ATOMIC_RELEASE);
    }
    struct series *s = series_of(rs, endpoint, len, method, status);
    __atomic_store_n(&s->count, s->count + 1, __ATOMIC_RELAXED);
    histogram_observe(&s->time, seconds < 0 ? 0 : seconds);
}

void reqstats_count(struct worker *w, const char *endpoint, int method, int status, double seconds)
{
    count(w, endpoint, strlen(endpoint), method, status, seconds);
}

/* --- the filter ------------------------------------------------------------------------------ */

h2o_iovec_t reqstats_endpoint(h2o_req_t *req)
{
    h2o_iovec_t name = h2o_iovec_init(H2O_STRLIT(REQSTATS_UNKNOWN));
    for (size_t i = 0; i + 1 < req->env.size; i += 2)
        if (h2o_memis(req->env.entries[i].base, req->env.entries[i].len, H2O_STRLIT(ENDPOINT_ENV)))
            name = req->env.entries[i + 1];
    return name;
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    h2o_iovec_t name = reqstats_endpoint(req);
    struct timeval now;
    gettimeofday(&now, NULL);
    double seconds = (double)(now.tv_sec - req->processed_at.at.tv_sec) +
                     (double)(now.tv_usec - req->processed_at.at.tv_usec) / 1e6;
    count(worker_of(req), name.base, name.len, reqstats_method_of(req->method.base, req->method.len),
          req->res.status, seconds);
    h2o_setup_next_ostream(req, slot);
}

void reqstats_register(h2o_pathconf_t *pathconf)
{
    h2o_create_filter(pathconf, sizeof(h2o_filter_t))->on_setup_ostream = on_setup_ostream;
}

/* --- reading --------------------------------------------------------------------------------- */

static int row_order(const void *a, const void *b)
{
    const struct reqstats_row *x = a, *y = b;
    int c = strcmp(x->endpoint, y->endpoint);
    if (c != 0) return c;
    if (x->method != y->method) return x->method < y->method ? -1 : 1;
    return x->status < y->status ? -1 : x->status > y->status;
}

size_t reqstats_rows(const struct server *srv, struct reqstats_row **out)
{
    size_t n = 0, cap = 0;
    struct reqstats_row *rows = NULL;
    for (int k = 0; k < srv->nworkers; k++) {
        const struct reqstats *rs = __atomic_load_n(&srv->workers[k].reqstats, __ATOMIC_ACQUIRE);
        for (const struct series *s = rs ? __atomic_load_n(&rs->all, __ATOMIC_ACQUIRE) : NULL; s;
             s = s->next) {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                rows = xrealloc(rows, cap * sizeof *rows);
            }
            struct reqstats_row *r = &rows[n++];
            memset(r, 0, sizeof *r);
            r->endpoint = s->endpoint;
            r->method = s->method;
            r->status = s->status;
            r->count = PEEK(s->count);
            histogram_add(&r->time, &s->time);
        }
    }
    if (n == 0) {
        free(rows);
        *out = NULL;
        return 0;
    }
    qsort(rows, n, sizeof *rows, row_order);
    /* the same series of several workers: sum them into the first */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && row_order(&rows[m - 1], &rows[i]) == 0) {
            rows[m - 1].count += rows[i].count;
            histogram_add(&rows[m - 1].time, &rows[i].time);
        } else {
            rows[m++] = rows[i];
        }
    }
    *out = rows;
    return m;
}

void reqstats_free(struct worker *w)
{
    struct reqstats *rs = w->reqstats;
    if (rs == NULL) return;
    for (struct series *s = rs->all, *next; s; s = next) {
        next = s->next;
        free(s->endpoint);
        free(s);
    }
    free(rs->index);
    free(rs);
    w->reqstats = NULL;
}
