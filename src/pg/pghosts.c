/* pghosts.c — a pool's hosts and wanted role from its connection string (PQconninfoParse), and a
 * connected server's role from what it reports (pghosts.h). */
#include "pghosts.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "util.h"

static const char *const target_names[] = {"any",       "read-write", "primary",
                                           "read-only", "standby",    "prefer-standby"};

const char *pg_target_name(enum pg_target t)
{
    return target_names[t];
}

bool pg_target_spreads(enum pg_target t)
{
    return t == PG_TARGET_STANDBY || t == PG_TARGET_PREFER_STANDBY || t == PG_TARGET_READ_ONLY;
}

const char *pg_role_name(enum pg_role r)
{
    return r == PG_ROLE_PRIMARY ? "primary" : r == PG_ROLE_STANDBY ? "standby" : "unknown";
}

static enum pg_target target_of(const char *v)
{
    for (size_t i = 0; v != NULL && i < sizeof target_names / sizeof target_names[0]; i++)
        if (strcmp(v, target_names[i]) == 0) return (enum pg_target)i;
    return PG_TARGET_ANY; /* unset; a value libpq refuses fails the connect with libpq's reason */
}

/* The items of a comma-separated list as libpq splits it (no quoting, empty items kept). */
static int split(const char *list, char ***items)
{
    int n = 1;
    for (const char *p = list; *p; p++) n += *p == ',';
    char **v = xcalloc((size_t)n, sizeof *v);
    const char *start = list;
    for (int i = 0; i < n; i++) {
        const char *end = strchr(start, ',');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        v[i] = xmalloc(len + 1);
        memcpy(v[i], start, len);
        v[i][len] = '\0';
        start = end ? end + 1 : start + len;
    }
    *items = v;
    return n;
}

static void free_items(char **items, int n)
{
    for (int i = 0; i < n; i++) free(items[i]);
    free(items);
}

/* item i of a list of n, the single item of a one-item list, else "" */
static const char *pick(char **items, int count, int n, int i)
{
    if (count == n) return items[i];
    if (count == 1) return items[0];
    return "";
}

void pghosts_parse(const char *url, struct pg_hosts *out)
{
    memset(out, 0, sizeof *out);
    const char *host = "", *hostaddr = "", *port = "", *target = getenv("PGTARGETSESSIONATTRS");
    char *err = NULL;
    /* a bare database name is no conninfo: libpq reads it as dbname, with every default */
    bool conninfo = url != NULL && (strstr(url, "://") != NULL || strchr(url, '=') != NULL);
    PQconninfoOption *opts = conninfo ? PQconninfoParse(url, &err) : NULL;
    if (err != NULL) PQfreemem(err); /* libpq's text may quote the URL, password included */
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
        if (o->val == NULL) continue;
        if (strcmp(o->keyword, "host") == 0) host = o->val;
        if (strcmp(o->keyword, "hostaddr") == 0) hostaddr = o->val;
        if (strcmp(o->keyword, "port") == 0) port = o->val;
        if (strcmp(o->keyword, "target_session_attrs") == 0) target = o->val;
    }
    out->target = target_of(target);
    char **hosts, **addrs, **ports;
    int nh = split(host, &hosts), na = split(hostaddr, &addrs), np = split(port, &ports);
    /* libpq counts hostaddr entries when there are any, else host entries */
    out->n = *hostaddr ? na : nh;
    if (out->n > PGHOSTS_MAX) {
        out->n = PGHOSTS_MAX;
        out->truncated = true;
    }
    out->h = xcalloc((size_t)out->n, sizeof *out->h);
    const char *default_port = getenv("PGPORT") && *getenv("PGPORT") ? getenv("PGPORT") : "5432";
    for (int i = 0; i < out->n; i++) {
        struct pg_host *h = &out->h[i];
        h->host = xstrdup(pick(hosts, nh, out->n, i));
        h->hostaddr = xstrdup(*hostaddr ? pick(addrs, na, out->n, i) : "");
        h->port = xstrdup(pick(ports, np, out->n, i));
        if (!*h->port && np > 1) { /* an empty entry of a port list: libpq's default port */
            free(h->port);
            h->port = xstrdup(default_port);
        }
        const char *shown = *h->host ? h->host : *h->hostaddr ? h->hostaddr : getenv("PGHOST");
        struct buf b = BUF_INIT;
        bool v6 = shown && strchr(shown, ':') != NULL && shown[0] != '/';
        buf_printf(&b, "%s%s%s:%s", v6 ? "[" : "", shown && *shown ? shown : "localhost", v6 ? "]" : "",
                   *h->port ? h->port : default_port);
        h->name = buf_steal(&b);
    }
    free_items(hosts, nh);
    free_items(addrs, na);
    free_items(ports, np);
    if (opts) PQconninfoFree(opts);
}

void pghosts_free(struct pg_hosts *hosts)
{
    for (int i = 0; i < hosts->n; i++) {
        free(hosts->h[i].host);
        free(hosts->h[i].hostaddr);
        free(hosts->h[i].port);
        free(hosts->h[i].name);
    }
    free(hosts->h);
    memset(hosts, 0, sizeof *hosts);
}

static bool is_on(const PGconn *pg, const char *param)
{
    const char *v = PQparameterStatus(pg, param);
    return v != NULL && strcmp(v, "on") == 0;
}

enum pg_role pg_role_of(const PGconn *pg)
{
    const char *v = PQparameterStatus(pg, "in_hot_standby");
    if (v == NULL) return PG_ROLE_UNKNOWN;
    return strcmp(v, "on") == 0 ? PG_ROLE_STANDBY : PG_ROLE_PRIMARY;
}

bool pg_target_accepts(enum pg_target t, const PGconn *pg)
{
    if (PQparameterStatus(pg, "in_hot_standby") == NULL) return true; /* nothing to judge by */
    bool standby = is_on(pg, "in_hot_standby");
    bool read_only = standby || is_on(pg, "default_transaction_read_only");
    switch (t) {
    case PG_TARGET_READ_WRITE:
        return !read_only;
    case PG_TARGET_PRIMARY:
        return !standby;
    case PG_TARGET_READ_ONLY:
        return read_only;
    case PG_TARGET_STANDBY:
    case PG_TARGET_PREFER_STANDBY:
        return standby;
    default:
        return true;
    }
}
