/* retry.c — retry classification and backoff with full jitter. */
#include "retry.h"

#include <string.h>

void retry_policy_default(struct retry_policy *p)
{
    p->attempts = 3;
    p->base_ms = 20;
    p->max_ms = 1000;
}

bool retry_sqlstate_transient(const char *s)
{
    return s && (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0);
}

bool retry_sqlstate_connection(const char *s)
{
    return s && (strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
                 strcmp(s, "57P03") == 0 || strcmp(s, "53300") == 0);
}

uint32_t retry_delay_ms(const struct retry_policy *p, int attempt, uint32_t rnd)
{
    uint64_t cap = (uint64_t)(p->base_ms > 0 ? p->base_ms : 1);
    for (int i = 1; i < attempt && cap < (uint64_t)p->max_ms; i++) cap *= 2;
    if (cap > (uint64_t)p->max_ms) cap = (uint64_t)p->max_ms;
    return (uint32_t)(rnd % (cap + 1));
}
