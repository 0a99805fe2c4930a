/* endpoint.c — the registry of named queries: definition, lookup by name, route aliases. */
#include "endpoint.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlparam.h"
#include "util.h"

static atomic_uint next_query_id = 1;

static unsigned hash_name(const char *s, size_t len)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

void registry_init(struct registry *r)
{
    memset(r, 0, sizeof *r);
}

void registry_free(struct registry *r)
{
    for (int i = 0; i < r->nqueries; i++) query_def_free(r->queries[i]);
    free(r->queries);
    free(r->index);
    memset(r, 0, sizeof *r);
}

static void index_insert(struct registry *r, struct query_def *q)
{
    unsigned i = hash_name(q->name, strlen(q->name)) & r->index_mask;
    while (r->index[i] != NULL) i = (i + 1) & r->index_mask;
    r->index[i] = q;
}

struct query_def *registry_find(const struct registry *r, const char *name, size_t len)
{
    if (r->index == NULL) return NULL;
    unsigned i = hash_name(name, len) & r->index_mask;
    for (struct query_def *q; (q = r->index[i]) != NULL; i = (i + 1) & r->index_mask)
        if (strncmp(q->name, name, len) == 0 && q->name[len] == '\0') return q;
    return NULL;
}

int registry_add(struct registry *r, struct query_def *q)
{
    if (registry_find(r, q->name, strlen(q->name)) != NULL) return -SLUICE_EINVAL;
    if (r->nqueries == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->queries = xrealloc(r->queries, r->cap * sizeof *r->queries);
    }
    r->queries[r->nqueries++] = q;
    /* keep the index at most half full */
    if ((unsigned)r->nqueries * 2 > r->index_mask) {
        free(r->index);
        unsigned size = 32;
        while (size < (unsigned)r->nqueries * 4) size *= 2;
        r->index = xcalloc(size, sizeof *r->index);
        r->index_mask = size - 1;
        for (int i = 0; i < r->nqueries; i++) index_insert(r, r->queries[i]);
    } else {
        index_insert(r, q);
    }
    return 0;
}

struct query_def *query_def_new(const char *name, const char *sql, const char *route, char *err, unsigned errlen)
{
    struct sqlparams sp;
    if (sqlparam_rewrite(sql, &sp, err, errlen) != 0) return NULL;
    struct route_pattern *rp = NULL;
    if (route != NULL && (rp = route_parse(route, err, errlen)) == NULL) {
        sqlparam_free(&sp);
        return NULL;
    }
    struct query_def *q = xcalloc(1, sizeof *q);
    q->name = xstrdup(name);
    q->sql = xstrdup(sql);
    q->sql_numbered = sp.sql;
    q->param_names = sp.names;
    q->nparams = sp.count;
    q->route = rp;
    q->id = atomic_fetch_add(&next_query_id, 1);
    snprintf(q->stmt_name, sizeof q->stmt_name, "s%u", q->id);
    return q;
}

void query_def_free(struct query_def *q)
{
    if (q == NULL) return;
    struct sqlparams sp = {q->sql_numbered, q->param_names, q->nparams};
    sqlparam_free(&sp);
    free(q->name);
    free(q->sql);
    free(q->pool);
    free(q->param_types);
    route_free(q->route);
    free(q);
}

int query_def_param(const struct query_def *q, const char *name, size_t len)
{
    for (int i = 0; i < q->nparams; i++)
        if (strncmp(q->param_names[i], name, len) == 0 && q->param_names[i][len] == '\0') return i;
    return -1;
}

struct route_pattern *route_parse(const char *spec, char *err, unsigned errlen)
{
    const char *sp = strchr(spec, ' ');
    if (sp == NULL || sp == spec || sp[1] != '/') {
        snprintf(err, errlen, "route \"%s\": expected \"METHOD /path\"", spec);
        return NULL;
    }
    struct route_pattern *r = xcalloc(1, sizeof *r);
    r->method = xstrndup(spec, (size_t)(sp - spec));
    for (char *m = r->method; *m; m++)
        if (*m < 'A' || *m > 'Z') {
            snprintf(err, errlen, "route \"%s\": the method must be upper-case letters", spec);
            route_free(r);
            return NULL;
        }
    const char *p = sp + 1;
    while (*p == '/') {
        p++;
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 && end == NULL) break; /* trailing slash */
        if (n == 0 || memchr(p, ' ', n) || memchr(p, '?', n)) {
            snprintf(err, errlen, "route \"%s\": empty or invalid path segment", spec);
            route_free(r);
            return NULL;
        }
        r->segs = xrealloc(r->segs, (r->nsegs + 1) * sizeof *r->segs);
        r->segs[r->nsegs++] = xstrndup(p, n);
        p += n;
    }
    return r;
}

void route_free(struct route_pattern *r)
{
    if (r == NULL) return;
    for (int i = 0; i < r->nsegs; i++) free(r->segs[i]);
    free(r->segs);
    free(r->method);
    free(r);
}

int route_match(const struct route_pattern *r, const char *path, size_t len, const char **vals,
                size_t *lens, int max)
{
    const char *p = path, *end = path + len;
    int nvals = 0;
    for (int i = 0; i < r->nsegs; i++) {
        if (p >= end || *p != '/') return -1;
        p++;
        const char *s = p;
        while (p < end && *p != '/') p++;
        size_t n = (size_t)(p - s);
        if (n == 0) return -1;
        const char *seg = r->segs[i];
        if (seg[0] == '{') {
            if (nvals == max) return -1;
            vals[nvals] = s;
            lens[nvals++] = n;
        } else if (strlen(seg) != n || memcmp(seg, s, n) != 0) {
            return -1;
        }
    }
    if (p < end && !(p + 1 == end && *p == '/')) return -1;
    return nvals;
}
