/* breaker.h — a circuit breaker per pool, shared by every worker: closed -> open after `failures`
 * connection-class failures within `window_ms`; open fails fast; after `open_ms` it lets
 * `half_open` probes through, and their outcome closes or reopens it. Pure state: the caller
 * passes the time, so tests drive it without a clock. Lock-free (atomics). */
#ifndef SLUICE_BREAKER_H
#define SLUICE_BREAKER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct breaker_policy {
    int failures;       /* default 5 */
    uint64_t window_ms; /* default 10000 */
    uint64_t open_ms;   /* default 5000 */
    int half_open;      /* probes let through while half-open, default 1 */
};

struct breaker {
    _Atomic int state;
    _Atomic int failures; /* within the current window */
    _Atomic uint64_t window_start_ms;
    _Atomic uint64_t opened_ms;
    _Atomic int probes;           /* probes let through since half-open */
    _Atomic uint64_t transitions; /* for metrics */
};

void breaker_policy_default(struct breaker_policy *p);
void breaker_init(struct breaker *b);
/* True when a request may proceed now. Moves open -> half-open once open_ms has passed. */
bool breaker_allow(struct breaker *b, const struct breaker_policy *p, uint64_t now_ms);
/* What breaker_allow would answer, without taking a half-open probe. */
bool breaker_would_allow(const struct breaker *b, const struct breaker_policy *p, uint64_t now_ms);
/* A connection-class failure (connect refused, connection lost, 08xxx, 57P01..03, 53300).
 * Returns true when this failure opened the breaker. */
bool breaker_failure(struct breaker *b, const struct breaker_policy *p, uint64_t now_ms);
/* A success: a half-open breaker closes; a closed one forgets earlier failures (they must come
 * in a row). Returns true when it closed now. */
bool breaker_success(struct breaker *b);
enum breaker_state breaker_state(const struct breaker *b);
const char *breaker_state_name(enum breaker_state s);
/* Seconds a client should wait before retrying (Retry-After), at least 1. */
int breaker_retry_after(const struct breaker *b, const struct breaker_policy *p, uint64_t now_ms);

#endif
