/* fakeserver.c — two workers with registries and pool shares for unit tests (fakeserver.h). */
#include "fakeserver.h"

#include <lauxlib.h>
#include <stdlib.h>

#include "metrics.h"
#include "reqstats.h"
#include "util.h"

struct fakeserver *fakeserver_new(const char *pool_name)
{
    metrics_reset();
    struct fakeserver *f = xcalloc(1, sizeof *f);
    f->pc[0].name = xstrdup(pool_name);
    f->pc[0].pool_size = 4;
    f->pc[1].name = xstrdup("replica");
    f->pc[1].pool_size = 1; /* less than the workers: each still keeps one */
    f->cfg.pools = f->pc;
    f->cfg.npools = 2;
    f->srv.cfg = &f->cfg;
    f->srv.nworkers = 2;
    f->srv.workers = xcalloc(2, sizeof *f->srv.workers);
    for (int i = 0; i < 2; i++) {
        struct worker *w = &f->srv.workers[i];
        w->srv = &f->srv;
        w->index = i;
        w->reg = xcalloc(1, sizeof *w->reg);
        registry_init(w->reg);
        w->reg->L = luaL_newstate();
        w->npools = 2;
        w->pools = xcalloc(2, sizeof *w->pools);
    }
    return f;
}

void fakeserver_free(struct fakeserver *f)
{
    for (int i = 0; i < 2; i++) {
        lua_State *L = f->srv.workers[i].reg->L;
        registry_free(f->srv.workers[i].reg);
        free(f->srv.workers[i].reg);
        free(f->srv.workers[i].pools);
        reqstats_free(&f->srv.workers[i]);
        if (L) lua_close(L);
    }
    free(f->srv.workers);
    free(f->pc[0].name);
    free(f->pc[1].name);
    free(f);
    metrics_reset();
}
