/* retry.h — which failures may be retried, and how long to wait: exponential backoff with full
 * jitter (sleep = random(0, min(max_ms, base_ms * 2^attempt))). */
#ifndef SLUICE_RETRY_H
#define SLUICE_RETRY_H

#include <stdbool.h>
#include <stdint.h>

struct retry_policy {
    int attempts; /* total tries including the first, default 3 */
    int base_ms;  /* default 20 */
    int max_ms;   /* default 1000 */
};

void retry_policy_default(struct retry_policy *p);
/* True for SQLSTATEs a retry can cure: serialization failure 40001, deadlock 40P01. */
bool retry_sqlstate_transient(const char *sqlstate);
/* True for connection-class SQLSTATEs: 08xxx, 57P01, 57P02, 57P03, 53300 (they count against the
 * breaker). */
bool retry_sqlstate_connection(const char *sqlstate);
/* The delay before retry number `attempt` (1 = the first retry); rnd is a uniform random value. */
uint32_t retry_delay_ms(const struct retry_policy *p, int attempt, uint32_t rnd);

#endif
