/* describe.c — learns parameter types and result columns of every named query and bulk endpoint
 * at start-up. Synchronous libpq: it runs once, before any worker serves. */
#include "describe.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "dbconnect.h"
#include "util.h"

/* One connection per pool, opened on first need; failed = do not try that pool again. */
struct conn_slot {
    PGconn *pg;
    bool failed;
};

static PGconn *pool_conn(const struct config *cfg, struct conn_slot *slots, int idx, char *err, size_t errlen)
{
    struct conn_slot *s = &slots[idx];
    if (s->pg != NULL || s->failed) return s->pg;
    char why[400];
    s->pg = dbconnect(cfg->pools[idx].url, "sluice-describe", 2, why, sizeof why);
    if (s->pg == NULL) {
        snprintf(err, errlen, "pool %s: cannot connect: %s", cfg->pools[idx].name, why);
        s->failed = true;
        return NULL;
    }
    /* A table locked by a running migration must not stall start-up. */
    PQclear(PQexec(s->pg, "SET statement_timeout = 5000"));
    PQclear(PQexec(s->pg, "SET lock_timeout = 5000"));
    return s->pg;
}

static char *server_message(PGconn *pg, const PGresult *r)
{
    const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (m == NULL) m = PQerrorMessage(pg);
    size_t n = strlen(m);
    while (n > 0 && m[n - 1] == '\n') n--;
    return xstrndup(m, n);
}

/* True when sql holds a word that can make a table's NOT NULL column NULL in a result: an outer
 * join (LEFT, RIGHT, FULL) or a grouping set (ROLLUP, CUBE, GROUPING SETS). Strings and comments
 * are not skipped: a false alarm only leaves a column nullable. */
static bool may_null_extend(const char *sql)
{
    static const char *const words[] = {"left", "right", "full", "rollup", "cube", "grouping", NULL};
    for (const char *p = sql; *p;) {
        if (!isalpha((unsigned char)*p) && *p != '_') {
            p++;
            continue;
        }
        const char *w = p;
        while (isalnum((unsigned char)*p) || *p == '_') p++;
        for (const char *const *k = words; *k; k++)
            if ((size_t)(p - w) == strlen(*k) && strncasecmp(w, *k, (size_t)(p - w)) == 0) return true;
    }
    return false;
}

/* Sets notnull on the columns of e that are NOT NULL columns of their table (r describes the
 * statement). One catalog query for all of them; on any failure they stay nullable. */
static void learn_notnull(PGconn *pg, const PGresult *r, const char *sql, struct describe_entry *e)
{
    if (e->ncols == 0 || may_null_extend(sql)) return;
    struct buf rels = BUF_INIT, nums = BUF_INIT;
    buf_putc(&rels, '{');
    buf_putc(&nums, '{');
    for (int i = 0; i < e->ncols; i++) {
        buf_printf(&rels, "%s%u", i ? "," : "", (unsigned)PQftable(r, i)); /* 0 = not a table's column */
        buf_printf(&nums, "%s%d", i ? "," : "", PQftablecol(r, i));
    }
    buf_putc(&rels, '}');
    buf_putc(&nums, '}');
    const char *values[2] = {rels.data, nums.data};
    PGresult *a = PQexecParams(pg,
                               "SELECT coalesce(a.attnotnull, false) FROM unnest($1::oid[], $2::int2[]) "
                               "WITH ORDINALITY AS c(rel, num, i) LEFT JOIN pg_attribute a "
                               "ON a.attrelid = c.rel AND a.attnum = c.num AND c.num > 0 ORDER BY c.i",
                               2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus(a) == PGRES_TUPLES_OK && PQntuples(a) == e->ncols)
        for (int i = 0; i < e->ncols; i++) e->cols[i].notnull = PQgetvalue(a, i, 0)[0] == 't';
    PQclear(a);
    buf_free(&rels);
    buf_free(&nums);
}

/* Prepares sql as the unnamed statement and describes it into e. Returns 0 or -1 (e->error set). */
static int describe_sql(PGconn *pg, const char *sql, struct describe_entry *e)
{
    /* Preparing inside a rolled-back transaction leaves nothing behind. */
    PQclear(PQexec(pg, "BEGIN"));
    PGresult *r = PQprepare(pg, "", sql, 0, NULL);
    int rc = -1;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        e->error = server_message(pg, r);
        PQclear(r);
        PQclear(PQexec(pg, "ROLLBACK"));
        return -1;
    }
    PQclear(r);
    r = PQdescribePrepared(pg, "");
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        e->nparams = PQnparams(r);
        e->param_types = xcalloc((size_t)(e->nparams ? e->nparams : 1), sizeof(Oid));
        for (int i = 0; i < e->nparams; i++) e->param_types[i] = PQparamtype(r, i);
        e->ncols = PQnfields(r);
        e->returns_rows = e->ncols > 0;
        e->cols = xcalloc((size_t)(e->ncols ? e->ncols : 1), sizeof *e->cols);
        for (int i = 0; i < e->ncols; i++) {
            e->cols[i].name = xstrdup(PQfname(r, i));
            e->cols[i].type = PQftype(r, i);
        }
        learn_notnull(pg, r, sql, e);
        e->ok = true;
        rc = 0;
    } else {
        e->error = server_message(pg, r);
    }
    PQclear(r);
    PQclear(PQexec(pg, "ROLLBACK"));
    return rc;
}

static void note_first(char *err, size_t errlen, bool *noted, const char *fmt, const char *name,
                       const char *msg)
{
    if (*noted) return;
    snprintf(err, errlen, fmt, name, msg);
    *noted = true;
}

/* Fills e (name, sql, description) from the database of pool pool_idx. Returns 0, or -1 after
 * noting the first error in err (fmt names the definition: "query %s: %s"). */
static int describe_on(const struct config *cfg, struct conn_slot *slots, int pool_idx, const char *fmt,
                       const char *name, const char *sql, struct describe_entry *e, char *err, size_t errlen,
                       bool *noted)
{
    char cerr[512];
    e->name = xstrdup(name);
    e->sql = xstrdup(sql);
    PGconn *pg = pool_conn(cfg, slots, pool_idx, cerr, sizeof cerr);
    if (pg == NULL) {
        if (!*noted) snprintf(err, errlen, "%s", cerr);
        *noted = true;
        return -1;
    }
    if (describe_sql(pg, sql, e) != 0) {
        note_first(err, errlen, noted, fmt, name, e->error);
        return -1;
    }
    return 0;
}

int describe_all(const struct config *cfg, struct registry *reg, struct describe_result *out, char *err,
                 size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->nqueries = reg->nqueries;
    out->queries = xcalloc((size_t)(reg->nqueries ? reg->nqueries : 1), sizeof *out->queries);
    out->nbulks = reg->nbulks;
    out->bulks = xcalloc((size_t)(reg->nbulks ? reg->nbulks : 1), sizeof *out->bulks);
    struct conn_slot *slots = xcalloc(cfg->npools ? cfg->npools : 1, sizeof *slots);
    bool noted = false;

    for (int i = 0; i < reg->nqueries; i++) {
        struct query_def *q = reg->queries[i];
        struct describe_entry *e = &out->queries[i];
        if (describe_on(cfg, slots, q->pool_idx, "query %s: %s", q->name, q->sql_numbered, e, err, errlen,
                        &noted) != 0)
            continue;
        if (e->nparams != q->nparams) { /* cannot happen: $n come from the :name rewrite */
            e->ok = false;
            note_first(err, errlen, &noted, "query %s: %s", q->name, "parameter count differs");
            continue;
        }
        query_def_learn_types(q, e->param_types, e->nparams);
    }

    for (int i = 0; i < reg->nbulks; i++) {
        struct bulk_def *b = reg->bulks[i];
        struct describe_entry *e = &out->bulks[i];
        if (describe_on(cfg, slots, b->pool_idx, "bulk %s: %s", b->name, b->sql_describe, e, err, errlen,
                        &noted) != 0)
            continue;
        if (e->ncols != b->ncolumns) {
            e->ok = false;
            note_first(err, errlen, &noted, "bulk %s: %s", b->name, "column count differs");
            continue;
        }
        free(b->types);
        b->types = xcalloc((size_t)b->ncolumns, sizeof(Oid));
        for (int k = 0; k < b->ncolumns; k++) b->types[k] = e->cols[k].type;
        b->described = true;
    }

    for (size_t i = 0; i < cfg->npools; i++)
        if (slots[i].pg) PQfinish(slots[i].pg);
    free(slots);
    return noted ? -1 : 0;
}

void describe_apply(const struct describe_result *d, struct registry *reg)
{
    if (d == NULL) return;
    for (int i = 0; i < reg->nqueries; i++) {
        struct query_def *q = reg->queries[i];
        const struct describe_entry *e = describe_find_query(d, q);
        if (e == NULL || e->nparams != q->nparams) continue;
        query_def_learn_types(q, e->param_types, e->nparams);
    }
    for (int i = 0; i < reg->nbulks; i++) {
        struct bulk_def *b = reg->bulks[i];
        const struct describe_entry *e = describe_find_bulk(d, b);
        if (e == NULL || e->ncols != b->ncolumns) continue;
        free(b->types);
        b->types = xcalloc((size_t)b->ncolumns, sizeof(Oid));
        for (int k = 0; k < b->ncolumns; k++) b->types[k] = e->cols[k].type;
        b->described = true;
    }
}

static const struct describe_entry *find(const struct describe_entry *v, int n, const char *name,
                                         const char *sql)
{
    for (int i = 0; i < n; i++)
        if (v[i].ok && strcmp(v[i].name, name) == 0 && strcmp(v[i].sql, sql) == 0) return &v[i];
    return NULL;
}

const struct describe_entry *describe_find_query(const struct describe_result *d, const struct query_def *q)
{
    return d ? find(d->queries, d->nqueries, q->name, q->sql_numbered) : NULL;
}

const struct describe_entry *describe_find_bulk(const struct describe_result *d, const struct bulk_def *b)
{
    return d ? find(d->bulks, d->nbulks, b->name, b->sql_describe) : NULL;
}

static void entry_free(struct describe_entry *e)
{
    free(e->name);
    free(e->sql);
    free(e->error);
    free(e->param_types);
    for (int i = 0; i < e->ncols; i++) free(e->cols[i].name);
    free(e->cols);
}

void describe_free(struct describe_result *d)
{
    if (d == NULL) return;
    for (int i = 0; i < d->nqueries; i++) entry_free(&d->queries[i]);
    for (int i = 0; i < d->nbulks; i++) entry_free(&d->bulks[i]);
    free(d->queries);
    free(d->bulks);
    memset(d, 0, sizeof *d);
}

/* --- the description in force ---------------------------------------------------------------- */

static _Atomic(struct describe_result *) current;
/* Every description ever handed over, freed by describe_forget_all (a worker may still read one). */
static struct describe_result **kept;
static size_t nkept;
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

void describe_set_current(struct describe_result *d)
{
    if (d != NULL) {
        pthread_mutex_lock(&kept_lock);
        kept = xrealloc(kept, (nkept + 1) * sizeof *kept);
        kept[nkept++] = d;
        pthread_mutex_unlock(&kept_lock);
    }
    atomic_store(&current, d);
}

const struct describe_result *describe_current(void)
{
    return atomic_load(&current);
}

void describe_forget_all(void)
{
    atomic_store(&current, NULL);
    pthread_mutex_lock(&kept_lock);
    for (size_t i = 0; i < nkept; i++) {
        describe_free(kept[i]);
        free(kept[i]);
    }
    free(kept);
    kept = NULL;
    nkept = 0;
    pthread_mutex_unlock(&kept_lock);
}
