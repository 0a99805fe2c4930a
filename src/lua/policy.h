/* policy.h — the resilience part of sluice.policy { retry = {...}, breaker = {...} }, read from a
 * loaded script state. */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <lua.h>
#include <stddef.h>

#include "breaker.h"
#include "retry.h"

/* Fills both policies: the defaults, overridden by what sluice.policy set. Returns 0, or -1 with
 * a message in err for a key of the wrong type or range. */
int policy_read(lua_State *L, struct breaker_policy *bp, struct retry_policy *rp, char *err, size_t errlen);

#endif
