/* fakeserver.h — a gateway of two workers with their registries and pool shares, without loops
 * or a database: what /metrics and /admin/queries read. For unit tests. */
#ifndef FAKESERVER_H
#define FAKESERVER_H

#include "server.h"

struct fakeserver {
    struct server srv;
    struct config cfg;
    struct pool_config pc[2]; /* pool_name (pool_size 4) and "replica" (pool_size 1) */
};

/* A new fake with empty registries (each with a Lua state) and metrics reset. The caller adds
 * definitions to srv.workers[i].reg and ends it with fakeserver_free. */
struct fakeserver *fakeserver_new(const char *pool_name);
/* Frees f and what its registries hold; metrics are reset again. */
void fakeserver_free(struct fakeserver *f);

#endif
