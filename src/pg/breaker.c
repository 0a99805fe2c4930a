/* breaker.c — a lock-free circuit breaker shared by the workers of one pool. */
#include "breaker.h"

void breaker_policy_default(struct breaker_policy *p)
{
    p->failures = 5;
    p->window_ms = 10000;
    p->open_ms = 5000;
    p->half_open = 1;
}

void breaker_init(struct breaker *b)
{
    atomic_store(&b->state, BREAKER_CLOSED);
    atomic_store(&b->failures, 0);
    atomic_store(&b->window_start_ms, 0);
    atomic_store(&b->opened_ms, 0);
    atomic_store(&b->probes, 0);
    atomic_store(&b->transitions, 0);
}

static bool move(struct breaker *b, int from, int to)
{
    if (!atomic_compare_exchange_strong(&b->state, &from, to)) return false;
    atomic_fetch_add(&b->transitions, 1);
    return true;
}

bool breaker_allow(struct breaker *b, const struct breaker_policy *p, uint64_t now_ms)
{
    int s = atomic_load(&b->state);
    if (s == BREAKER_CLOSED) return true;
    if (s == BREAKER_OPEN) {
        if (now_ms < atomic_load(&b->opened_ms) + p->open_ms) return false;
        if (move(b, BREAKER_OPEN, BREAKER_HALF_OPEN)) {
            atomic_store(&b->probes, 0);
            atomic_store(&b->opened_ms, now_ms); /* half-open since */
        }
    }
    /* half-open: a bounded number of probes; if they all ended without a verdict (abandoned by
     * their clients), new ones are let through after another open_ms */
    if (atomic_load(&b->probes) >= p->half_open && now_ms >= atomic_load(&b->opened_ms) + p->open_ms) {
        atomic_store(&b->probes, 0);
        atomic_store(&b->opened_ms, now_ms);
    }
    return atomic_fetch_add(&b->probes, 1) < p->half_open;
}

bool breaker_would_allow(const struct breaker *b, const struct breaker_policy *p, uint64_t now_ms)
{
    struct breaker *m = (struct breaker *)b;
    int s = atomic_load(&m->state);
    if (s == BREAKER_CLOSED) return true;
    if (s == BREAKER_OPEN) return now_ms >= atomic_load(&m->opened_ms) + p->open_ms;
    return atomic_load(&m->probes) < p->half_open;
}

bool breaker_failure(struct breaker *b, const struct breaker_policy *p, uint64_t now_ms)
{
    int s = atomic_load(&b->state);
    if (s == BREAKER_HALF_OPEN) {
        if (!move(b, BREAKER_HALF_OPEN, BREAKER_OPEN)) return false;
        atomic_store(&b->opened_ms, now_ms);
        return true;
    }
    if (s == BREAKER_OPEN) return false;
    uint64_t start = atomic_load(&b->window_start_ms);
    if (now_ms >= start + p->window_ms) {
        /* a new window; a race here only loses a count or two */
        atomic_store(&b->window_start_ms, now_ms);
        atomic_store(&b->failures, 0);
    }
    if (atomic_fetch_add(&b->failures, 1) + 1 < p->failures) return false;
    if (!move(b, BREAKER_CLOSED, BREAKER_OPEN)) return false;
    atomic_store(&b->opened_ms, now_ms);
    atomic_store(&b->failures, 0);
    return true;
}

bool breaker_success(struct breaker *b)
{
    int s = atomic_load(&b->state);
    if (s == BREAKER_CLOSED) {
        /* failures must come in a row to open it */
        if (atomic_load(&b->failures) != 0) atomic_store(&b->failures, 0);
        return false;
    }
    if (s != BREAKER_HALF_OPEN) return false;
    if (!move(b, BREAKER_HALF_OPEN, BREAKER_CLOSED)) return false;
    atomic_store(&b->failures, 0);
    return true;
}

enum breaker_state breaker_state(const struct breaker *b)
{
    return (enum breaker_state)atomic_load(&((struct breaker *)b)->state);
}

const char *breaker_state_name(enum breaker_state s)
{
    return s == BREAKER_OPEN ? "open" : s == BREAKER_HALF_OPEN ? "half_open" : "closed";
}

int breaker_retry_after(const struct breaker *b, const struct breaker_policy *p, uint64_t now_ms)
{
    uint64_t until = atomic_load(&((struct breaker *)b)->opened_ms) + p->open_ms;
    if (breaker_state(b) != BREAKER_OPEN || until <= now_ms) return 1;
    int s = (int)((until - now_ms + 999) / 1000);
    return s < 1 ? 1 : s;
}
