/* endpoint.c — the registry of named queries: definition, lookup by name, route aliases. */
#include "endpoint.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ownsql.h"
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
    for (int i = 0; i < r->nbulks; i++) bulk_def_free(r->bulks[i]);
    for (int i = 0; i < r->nhandlers; i++) {
        route_free(r->handlers[i]->route);
        free(r->handlers[i]->name);
        free(r->handlers[i]);
    }
    free(r->handlers);
    for (int i = 0; i < r->nchannels; i++) {
        free(r->channels[i]->name);
        free(r->channels[i]->listen);
        free(r->channels[i]->pool);
        free(r->channels[i]);
    }
    free(r->channels);
    free(r->queries);
    free(r->bulks);
    free(r->index);
    memset(r, 0, sizeof *r);
}

struct channel_def *registry_find_channel(const struct registry *r, const char *name, size_t len)
{
    for (int i = 0; i < r->nchannels; i++)
        if (strlen(r->channels[i]->name) == len && memcmp(r->channels[i]->name, name, len) == 0)
            return r->channels[i];
    return NULL;
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
        if (strlen(q->name) == len && memcmp(q->name, name, len) == 0) return q;
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
    q->reg = r;
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

struct query_def *query_def_new(const char *name, const char *sql, const char *route, char *err,
                                unsigned errlen)
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
    free(q->cache_tables);
    free(q->write_tables);
    for (int i = 0; q->param_default && i < q->nparams; i++)
        if (q->param_default[i]) json_decref(q->param_default[i]);
    free(q->param_default);
    route_free(q->route);
    free(q);
}

void query_def_learn_types(struct query_def *q, const Oid *types, int n)
{
    free(q->param_types);
    q->param_types = xcalloc((size_t)(q->nparams ? q->nparams : 1), sizeof(Oid));
    for (int i = 0; i < n && i < q->nparams; i++) q->param_types[i] = types[i];
    q->described = true;
}

void query_def_forget_types(struct query_def *q)
{
    q->described = false;
}

int query_def_param(const struct query_def *q, const char *name, size_t len)
{
    /* name may hold a NUL (%00 in a query string): compare lengths first, then bytes */
    for (int i = 0; i < q->nparams; i++)
        if (strlen(q->param_names[i]) == len && memcmp(q->param_names[i], name, len) == 0) return i;
    return -1;
}

json_t *query_def_default(const struct query_def *q, int i)
{
    return q->param_default ? q->param_default[i] : NULL;
}

void query_def_set_default(struct query_def *q, int i, json_t *v)
{
    if (q->param_default == NULL) q->param_default = xcalloc((size_t)q->nparams, sizeof *q->param_default);
    if (q->param_default[i]) json_decref(q->param_default[i]);
    q->param_default[i] = v;
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

int route_match(const struct route_pattern *r, const struct urlpath *path, const char **vals, size_t *lens,
                int max)
{
    int n = path->n;
    if (n == r->nsegs + 1 && path->lens[n - 1] == 0) n--; /* a trailing '/' */
    if (n != r->nsegs) return -1;
    int nvals = 0;
    for (int i = 0; i < n; i++) {
        size_t len = path->lens[i];
        if (len == 0) return -1;
        const char *seg = r->segs[i];
        if (seg[0] == '{') {
            if (nvals == max) return -1;
            vals[nvals] = path->segs[i];
            lens[nvals++] = len;
        } else if (strlen(seg) != len || memcmp(seg, path->segs[i], len) != 0) {
            return -1;
        }
    }
    return nvals;
}

/* --- bulk definitions ----------------------------------------------------------------------- */

int registry_add_bulk(struct registry *r, struct bulk_def *b)
{
    if (registry_find_bulk(r, b->name, strlen(b->name)) != NULL) return -SLUICE_EINVAL;
    r->bulks = xrealloc(r->bulks, (size_t)(r->nbulks + 1) * sizeof *r->bulks);
    r->bulks[r->nbulks++] = b;
    b->reg = r;
    return 0;
}

struct bulk_def *registry_find_bulk(const struct registry *r, const char *name, size_t len)
{
    for (int i = 0; i < r->nbulks; i++)
        if (strlen(r->bulks[i]->name) == len && memcmp(r->bulks[i]->name, name, len) == 0) return r->bulks[i];
    return NULL;
}

void endpoint_quote_ident(struct buf *b, const char *ident)
{
    buf_putc(b, '"');
    for (const char *p = ident; *p; p++) {
        if (*p == '"') buf_putc(b, '"');
        if (*p == '.') {
            buf_puts(b, "\".\"");
            continue;
        }
        buf_putc(b, *p);
    }
    buf_putc(b, '"');
}

/* t.k1 = s.k1 AND t.k2 = s.k2 ...: the target row of a staged row, by d's key. */
static void keys_match(struct buf *b, const struct bulk_def *d)
{
    for (int i = 0; i < d->nkey; i++) {
        if (i) buf_puts(b, " AND ");
        buf_puts(b, "t.");
        endpoint_quote_ident(b, d->key[i]);
        buf_puts(b, " = s.");
        endpoint_quote_ident(b, d->key[i]);
    }
}

static void column_list(struct buf *b, char **cols, int n, const char *prefix)
{
    for (int i = 0; i < n; i++) {
        if (i) buf_puts(b, ", ");
        if (prefix) buf_puts(b, prefix);
        endpoint_quote_ident(b, cols[i]);
    }
}

static bool is_key(const struct bulk_def *d, const char *col)
{
    for (int i = 0; i < d->nkey; i++)
        if (strcmp(d->key[i], col) == 0) return true;
    return false;
}

int bulk_def_prepare(struct bulk_def *d, char *err, unsigned errlen)
{
    for (int i = 0; i < d->nkey; i++) {
        bool declared = false;
        for (int k = 0; k < d->ncolumns; k++) declared |= strcmp(d->columns[k], d->key[i]) == 0;
        if (!declared) {
            snprintf(err, errlen, "key column \"%s\" is not one of the columns", d->key[i]);
            return -1;
        }
    }
    if (d->mode != BULK_INSERT && d->nkey == 0) {
        snprintf(err, errlen, "mode %s needs key columns",
                 d->mode == BULK_UPSERT   ? "upsert"
                 : d->mode == BULK_UPDATE ? "update"
                                          : "delete");
        return -1;
    }
    struct buf b = BUF_INIT;
    buf_puts(&b, "SELECT ");
    column_list(&b, d->columns, d->ncolumns, NULL);
    buf_puts(&b, " FROM ");
    endpoint_quote_ident(&b, d->table);
    buf_puts(&b, " LIMIT 0 " OWN_SQL_MARK);
    d->sql_describe = buf_steal(&b);

    const char *stage = "sluice_bulk_stage";
    buf_puts(&b, "COPY ");
    if (d->mode == BULK_INSERT)
        endpoint_quote_ident(&b, d->table);
    else
        buf_puts(&b, stage);
    buf_puts(&b, " (");
    column_list(&b, d->columns, d->ncolumns, NULL);
    buf_puts(&b, ") FROM STDIN");
    d->sql_copy = buf_steal(&b);
    if (d->mode == BULK_INSERT) {
        buf_printf(&b, "%s (FORMAT binary)", d->sql_copy);
        d->sql_copy_binary = buf_steal(&b);
        return 0;
    }

    /* A staging table with the columns' types and none of the table's constraints. */
    buf_printf(&b, "CREATE TEMP TABLE IF NOT EXISTS %s ON COMMIT DROP AS ", stage);
    buf_puts(&b, d->sql_describe);
    b.len -= strlen(" LIMIT 0 " OWN_SQL_MARK);
    buf_puts(&b, " WITH NO DATA");
    d->sql_stage = buf_steal(&b);

    if (d->mode == BULK_UPSERT) {
        buf_puts(&b, "INSERT INTO ");
        endpoint_quote_ident(&b, d->table);
        buf_puts(&b, " (");
        column_list(&b, d->columns, d->ncolumns, NULL);
        buf_puts(&b, ") SELECT ");
        column_list(&b, d->columns, d->ncolumns, NULL);
        buf_printf(&b, " FROM %s ON CONFLICT (", stage);
        column_list(&b, d->key, d->nkey, NULL);
        buf_puts(&b, ") DO ");
        int nset = 0;
        for (int i = 0; i < d->ncolumns; i++) {
            if (is_key(d, d->columns[i])) continue;
            buf_puts(&b, nset++ ? ", " : "UPDATE SET ");
            endpoint_quote_ident(&b, d->columns[i]);
            buf_puts(&b, " = EXCLUDED.");
            endpoint_quote_ident(&b, d->columns[i]);
        }
        if (nset == 0) buf_puts(&b, "NOTHING");
    } else if (d->mode == BULK_UPDATE) {
        buf_puts(&b, "UPDATE ");
        endpoint_quote_ident(&b, d->table);
        buf_puts(&b, " AS t SET ");
        int nset = 0;
        for (int i = 0; i < d->ncolumns; i++) {
            if (is_key(d, d->columns[i])) continue;
            if (nset++) buf_puts(&b, ", ");
            endpoint_quote_ident(&b, d->columns[i]);
            buf_puts(&b, " = s.");
            endpoint_quote_ident(&b, d->columns[i]);
        }
        if (nset == 0) {
            snprintf(err, errlen, "mode update needs a column that is not a key");
            buf_free(&b);
            return -1;
        }
        buf_printf(&b, " FROM %s AS s WHERE ", stage);
        keys_match(&b, d);
    } else {
        buf_puts(&b, "DELETE FROM ");
        endpoint_quote_ident(&b, d->table);
        buf_printf(&b, " AS t USING %s AS s WHERE ", stage);
        keys_match(&b, d);
    }
    d->sql_merge = buf_steal(&b);
    return 0;
}

void bulk_def_free(struct bulk_def *d)
{
    if (d == NULL) return;
    for (int i = 0; i < d->ncolumns; i++) free(d->columns[i]);
    for (int i = 0; i < d->nkey; i++) free(d->key[i]);
    free(d->columns);
    free(d->key);
    free(d->name);
    free(d->table);
    free(d->pool);
    free(d->sql_describe);
    free(d->sql_copy);
    free(d->sql_copy_binary);
    free(d->sql_stage);
    free(d->sql_merge);
    free(d->types);
    free(d);
}
