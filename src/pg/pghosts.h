/* pghosts.h — what a pool's connection string asks of its servers: the hosts it lists (libpq's
 * multi-host form) and the role it wants (target_session_attrs), and what a connected server says
 * its role is (the in_hot_standby and default_transaction_read_only it reports, PostgreSQL 14+). */
#ifndef SLUICE_PGHOSTS_H
#define SLUICE_PGHOSTS_H

#include <libpq-fe.h>
#include <stdbool.h>

/* target_session_attrs, as libpq 15 spells it. */
enum pg_target {
    PG_TARGET_ANY,
    PG_TARGET_READ_WRITE,
    PG_TARGET_PRIMARY,
    PG_TARGET_READ_ONLY,
    PG_TARGET_STANDBY,
    PG_TARGET_PREFER_STANDBY,
};

/* A server's role as last seen: unknown until a connection reports it. */
enum pg_role { PG_ROLE_UNKNOWN, PG_ROLE_PRIMARY, PG_ROLE_STANDBY };

/* One host of the list. Empty strings where the URL says nothing (libpq's defaults apply). */
struct pg_host {
    char *host;     /* name, IP or socket directory */
    char *hostaddr; /* numeric address, when the URL gives hostaddr */
    char *port;     /* this host's port: its entry of a port list (libpq's default for an empty
                       entry), or the one port given, or "" */
    char *name;     /* "host:port" as shown (/health, logs); never holds a password */
};

/* The most hosts a pool follows; hosts listed past it are left out (truncated is set). */
#define PGHOSTS_MAX 64

struct pg_hosts {
    enum pg_target target;
    int n;             /* 1..PGHOSTS_MAX: a URL without hosts is one host with libpq's defaults */
    bool truncated;    /* the URL lists more than PGHOSTS_MAX hosts */
    struct pg_host *h; /* n entries */
};

/* Reads url's hosts and target_session_attrs (PGTARGETSESSIONATTRS when the URL has none). A URL
 * libpq cannot parse gives one empty host and PG_TARGET_ANY (connecting then reports why). The
 * caller frees the result with pghosts_free. */
void pghosts_parse(const char *url, struct pg_hosts *out);
void pghosts_free(struct pg_hosts *hosts);
/* "any", "read-write", ... */
const char *pg_target_name(enum pg_target t);
/* True for the targets whose connections spread over every matching host (standby,
 * prefer-standby, read-only); the others follow one server (the first that matches). */
bool pg_target_spreads(enum pg_target t);

/* The role pg's server reports (in_hot_standby), PG_ROLE_UNKNOWN before PostgreSQL 14. */
enum pg_role pg_role_of(const PGconn *pg);
/* True when pg's server suits t now, by what it reported last (libpq's own rules for
 * target_session_attrs); true as well when the server reports nothing to judge by. For
 * prefer-standby this asks for a standby: whether a primary may serve is the pool's call. */
bool pg_target_accepts(enum pg_target t, const PGconn *pg);
const char *pg_role_name(enum pg_role r);

#endif
