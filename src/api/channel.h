/* channel.h — sluice.channel definitions: read from sluice._channels once the scripts ran. */
#ifndef SLUICE_CHANNEL_H
#define SLUICE_CHANNEL_H

#include <lua.h>
#include <stddef.h>

#include "config.h"
#include "endpoint.h"

#define CHANNEL_DEFAULT_BUFFER    1000
#define CHANNEL_MAX_BUFFER        1000000
#define CHANNEL_DEFAULT_KEEPALIVE 15 /* seconds */

/* Turns sluice._channels into channel definitions in reg (their auth policy and filter are
 * referenced in L's registry). Returns 0, or -1 with one line in err naming the channel. */
int channel_collect(lua_State *L, const struct config *cfg, struct registry *reg, char *err, size_t errlen);

#endif
