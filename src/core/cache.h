/* cache.h — the result cache's store: answers of readonly named queries kept in memory, one store
 * for the whole process, bounded by cache_max_bytes with LRU eviction; and the generations of
 * tables and pools that make an entry stale. A write bumps the generation of the tables it
 * changed; an entry remembers the sum of its generations when its query was sent and is a miss
 * (and dropped) once the sum moved. Generations only grow, so an equal sum means none moved.
 * Any thread may call any function here. */
#ifndef SLUICE_CACHE_H
#define SLUICE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CACHE_MAX_TABLES 4096 /* distinct table names over the life of the process */
#define CACHE_MAX_POOLS  64

/* Counters of one query name, kept for the life of the process (read by /metrics and
 * /admin/queries). */
struct cache_stats {
    char *name;
    uint64_t hits, misses, invalidations, evictions, coalesced; /* atomics */
    struct cache_stats *next;
};

/* The stats of query name, made on first use; never freed. Never fails. */
struct cache_stats *cache_stats_of(const char *name);
/* The first of every query's stats (walk ->next); a snapshot safe to read from any thread. */
struct cache_stats *cache_stats_all(void);
void cache_count(uint64_t *counter);

/* The canonical form of a table name: lower case, without a leading "public.". Writes at most
 * n bytes (NUL included) to out; returns false when the name is empty or too long. */
bool cache_table_canon(const char *name, char *out, size_t n);
/* The id of table name (canonical form), made on first use; -1 when CACHE_MAX_TABLES are in use
 * or the name is not valid. */
int cache_table_id(const char *name);
/* The id of a table already known, or -1 (a NOTIFY payload naming a table nothing declared). */
int cache_table_find(const char *name);
/* The canonical name of table id (static storage), "" for an unknown id. */
const char *cache_table_name(int id);
/* A write to the tables (ids) committed, or may have, at WAL position lsn (0: unknown): every
 * entry that depends on them becomes stale, before the caller answers, and lsn is noted. */
void cache_wrote(const int *ids, int n, uint64_t lsn);
/* Every entry of the queries of pool idx becomes stale (its LISTEN connection was lost). */
void cache_bump_pool(int idx);
/* A NOTIFY sluice_invalidate payload: the table it names becomes stale. Returns false (and
 * counts it) when no query or bulk load declared that table. */
bool cache_invalidate_named(const char *table);
/* Payloads that named an unknown table, since start. */
uint64_t cache_unknown_payloads(void);
/* The generation sum an entry of these tables and pool depends on. */
uint64_t cache_gens(const int *ids, int n, int pool);

/* The newest WAL position a write through this process reported (Sluice-LSN), 0 when none. */
uint64_t cache_known_lsn(void);

/* Sets the store's bound (cache_max_bytes): entries are evicted until they fit. */
void cache_set_max(size_t max_bytes);
/* Bytes held by every entry together (keys, bodies and bookkeeping); never above the bound. */
size_t cache_bytes(void);

/* What a lookup found. */
enum cache_found { CACHE_MISS, CACHE_HIT, CACHE_STALE };

/* key's hash is hash64(key, keylen): the caller makes it once for every use of the key. */

/* Looks key up: a hit when an entry is there, younger than its ttl, of generation sum gens and
 * read at a WAL position at or after min_lsn; its body is appended to out and *body_hash set
 * (hash64 of the body: its ETag).
 * An entry of another generation sum is dropped (CACHE_STALE); an expired one too (CACHE_MISS). */
enum cache_found cache_lookup(const void *key, size_t keylen, uint64_t hash, uint64_t gens, uint64_t min_lsn,
                              struct buf *out, uint64_t *body_hash);
/* Stores body under key (replacing an entry of the same key), with its generation sum, the WAL
 * position it was read at and its ttl; evicts least recently used entries until the store holds
 * at most cache_max_bytes (counted in their query's stats). An entry larger than the bound alone
 * is not stored. stats: the query's counters. */
void cache_store(const void *key, size_t keylen, uint64_t hash, const char *body, size_t len, uint64_t gens,
                 uint64_t lsn, int ttl_ms, struct cache_stats *stats);
/* Drops every entry (tests and shutdown). */
void cache_clear(void);

#endif
