/* stmt.h — per-connection LRU of prepared statements, keyed by query id. It only remembers
 * which statements exist on the server; the connection sends PREPARE / DEALLOCATE. */
#ifndef SLUICE_STMT_H
#define SLUICE_STMT_H

#include <stdbool.h>
#include <stdint.h>

struct stmt_cache {
    uint32_t *ids;  /* ids[slot], 0 = free */
    uint64_t *used; /* last-use tick per slot */
    int cap, count;
    uint64_t tick;
};

void stmt_cache_init(struct stmt_cache *c, int capacity);
void stmt_cache_free(struct stmt_cache *c);
/* True when id is prepared on this connection; marks it most recently used. */
bool stmt_cache_touch(struct stmt_cache *c, uint32_t id);
/* Records id as prepared. When the cache is full, the least recently used id is dropped and
 * returned (the caller DEALLOCATEs it); otherwise returns 0. */
uint32_t stmt_cache_insert(struct stmt_cache *c, uint32_t id);
/* Forgets id (after the server lost or refused it). */
void stmt_cache_remove(struct stmt_cache *c, uint32_t id);

#endif
