/* stmt.c — per-connection LRU of prepared statements. Capacities are small (hundreds), and a
 * lookup happens once per query, so a flat array scanned linearly beats a hash plus list. */
#include "stmt.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void stmt_cache_init(struct stmt_cache *c, int capacity)
{
    c->cap = capacity > 0 ? capacity : 1;
    c->ids = xcalloc((size_t)c->cap, sizeof *c->ids);
    c->used = xcalloc((size_t)c->cap, sizeof *c->used);
    c->count = 0;
    c->tick = 0;
}

void stmt_cache_free(struct stmt_cache *c)
{
    free(c->ids);
    free(c->used);
    memset(c, 0, sizeof *c);
}

static int find(const struct stmt_cache *c, uint32_t id)
{
    for (int i = 0; i < c->cap; i++)
        if (c->ids[i] == id) return i;
    return -1;
}

bool stmt_cache_touch(struct stmt_cache *c, uint32_t id)
{
    int i = find(c, id);
    if (i < 0) return false;
    c->used[i] = ++c->tick;
    return true;
}

uint32_t stmt_cache_insert(struct stmt_cache *c, uint32_t id)
{
    uint32_t evicted = 0;
    int slot = find(c, 0);
    if (slot < 0) {
        slot = 0;
        for (int i = 1; i < c->cap; i++)
            if (c->used[i] < c->used[slot]) slot = i;
        evicted = c->ids[slot];
        c->count--;
    }
    c->ids[slot] = id;
    c->used[slot] = ++c->tick;
    c->count++;
    return evicted;
}

void stmt_cache_remove(struct stmt_cache *c, uint32_t id)
{
    int i = find(c, id);
    if (i < 0) return;
    c->ids[i] = 0;
    c->used[i] = 0;
    c->count--;
}
