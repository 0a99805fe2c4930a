/* walpos.c — replay positions of standby pools, shared by the workers through relaxed atomics,
 * and the hurried polls: a request that waits for a standby marks its pool hurried; a mark while
 * the polls are stopped (or a fresh wait) wakes the probe's loop through an h2o message, which
 * polls every hurried pool at once and then each WALPOS_FAST_MS until no mark is fresh. */
#include "walpos.h"

#include <string.h>

#include "lsn.h"
#include "util.h"

static uint64_t replay[WALPOS_MAX_POOLS];
static uint64_t hurried_until_ms[WALPOS_MAX_POOLS];
static uint64_t polled_us[WALPOS_MAX_POOLS]; /* when the last poll was asked for */

/* The polls, on the probe's loop. `running` is set while the fast timer runs (other threads then
 * send no message); `queued` while the wake message is on its way, so it is never linked twice. */
static bool started;
static int running, queued;
static h2o_loop_t *poll_loop;
static void (*poll_fn)(int idx);
static h2o_multithread_receiver_t receiver;
static h2o_multithread_message_t wake;
static h2o_timeout_t fast;
static h2o_timeout_entry_t fast_entry;

uint64_t walpos_of(const PGresult *r)
{
    uint64_t lsn = 0;
    if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) != 1 ||
        PQgetisnull(r, 0, 0))
        return 0;
    const char *v = PQgetvalue(r, 0, 0);
    return lsn_parse(v, strlen(v), &lsn) ? lsn : 0;
}

void walpos_set_replay(int idx, uint64_t lsn)
{
    if (idx >= 0 && idx < WALPOS_MAX_POOLS) __atomic_store_n(&replay[idx], lsn, __ATOMIC_RELAXED);
}

uint64_t walpos_replay(int idx)
{
    return idx >= 0 && idx < WALPOS_MAX_POOLS ? __atomic_load_n(&replay[idx], __ATOMIC_RELAXED) : 0;
}

/* Polls (when poll) every pool hurried now; returns whether there was one. */
static bool poll_hurried(bool poll)
{
    uint64_t now = now_ms();
    bool any = false;
    for (int i = 0; i < WALPOS_MAX_POOLS; i++)
        if (__atomic_load_n(&hurried_until_ms[i], __ATOMIC_SEQ_CST) > now) {
            any = true;
            if (!poll) continue;
            __atomic_store_n(&polled_us[i], now_us(), __ATOMIC_RELAXED);
            poll_fn(i);
        }
    return any;
}

static void run_fast(void)
{
    __atomic_store_n(&running, 1, __ATOMIC_SEQ_CST);
    if (!h2o_timeout_is_linked(&fast_entry)) h2o_timeout_link(poll_loop, &fast, &fast_entry);
}

static void on_fast(h2o_timeout_entry_t *entry)
{
    if (poll_hurried(true)) {
        h2o_timeout_link(poll_loop, &fast, &fast_entry);
        return;
    }
    __atomic_store_n(&running, 0, __ATOMIC_SEQ_CST);
    /* A hurry that still saw `running` sent no message: look once more before stopping. */
    if (poll_hurried(false)) run_fast();
}

static void on_wake(h2o_multithread_receiver_t *r, h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) h2o_linklist_unlink(messages->next);
    __atomic_store_n(&queued, 0, __ATOMIC_SEQ_CST);
    poll_hurried(true); /* at once: the answer is one round trip away */
    run_fast();
}

void walpos_hurry(int idx, bool fresh)
{
    if (idx < 0 || idx >= WALPOS_MAX_POOLS) return;
    __atomic_store_n(&hurried_until_ms[idx], now_ms() + WALPOS_HURRY_MS, __ATOMIC_SEQ_CST);
    if (!__atomic_load_n(&started, __ATOMIC_ACQUIRE)) return;
    bool wanted = !__atomic_load_n(&running, __ATOMIC_SEQ_CST) ||
                  (fresh && now_us() - __atomic_load_n(&polled_us[idx], __ATOMIC_RELAXED) >= WALPOS_SOON_US);
    int expected = 0;
    if (wanted &&
        __atomic_compare_exchange_n(&queued, &expected, 1, false, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED))
        h2o_multithread_send_message(&receiver, &wake);
}

void walpos_start(h2o_loop_t *loop, h2o_multithread_queue_t *queue, void (*poll)(int idx))
{
    poll_loop = loop;
    poll_fn = poll;
    h2o_timeout_init(loop, &fast, WALPOS_FAST_MS);
    fast_entry.cb = on_fast;
    h2o_multithread_register_receiver(queue, &receiver, on_wake);
    __atomic_store_n(&started, true, __ATOMIC_RELEASE);
}
