/* worker.c — what a request may ask of its worker: the configuration in force and timeout
 * queues by duration (worker.h). The thread itself is run by server.c. */
#include "worker.h"

#include "server.h"
#include "util.h"

const struct config *worker_config(const struct worker *w)
{
    return __atomic_load_n(&w->srv->cfg, __ATOMIC_ACQUIRE); /* swapped by a reload */
}

h2o_timeout_t *worker_timeout(struct worker *w, uint64_t ms)
{
    int best = -1;
    for (int i = 0; i < w->ntimeouts; i++) {
        if (w->timeouts[i].ms == ms) return &w->timeouts[i].timeout;
        if (w->timeouts[i].ms > ms && (best < 0 || w->timeouts[i].ms < w->timeouts[best].ms)) best = i;
    }
    if (w->ntimeouts < (int)ARRAY_SIZE(w->timeouts)) {
        int i = w->ntimeouts++;
        w->timeouts[i].ms = ms;
        h2o_timeout_init(w->ctx.loop, &w->timeouts[i].timeout, ms);
        return &w->timeouts[i].timeout;
    }
    if (best < 0)
        for (int i = 0; i < w->ntimeouts; i++)
            if (best < 0 || w->timeouts[i].ms > w->timeouts[best].ms) best = i;
    return &w->timeouts[best].timeout;
}
