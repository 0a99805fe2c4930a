/* cache.c — the result cache's store (cache.h): a hash table of entries under one mutex, an LRU
 * list through them, and the generation counters of tables and pools as plain atomics, which the
 * request path reads without the lock. */
#include "cache.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hash64.h"
#include "util.h"

/* --- stats by query name ------------------------------------------------------------------- */

static pthread_mutex_t stats_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cache_stats *stats_head;

struct cache_stats *cache_stats_of(const char *name)
{
    pthread_mutex_lock(&stats_mu);
    struct cache_stats *s = stats_head;
    while (s != NULL && strcmp(s->name, name) != 0) s = s->next;
    if (s == NULL) {
        s = xcalloc(1, sizeof *s);
        s->name = xstrdup(name);
        s->next = stats_head;
        __atomic_store_n(&stats_head, s, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&stats_mu);
    return s;
}

struct cache_stats *cache_stats_all(void)
{
    return __atomic_load_n(&stats_head, __ATOMIC_ACQUIRE);
}

void cache_count(uint64_t *counter)
{
    __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* --- generations --------------------------------------------------------------------------- */

static pthread_mutex_t tables_mu = PTHREAD_MUTEX_INITIALIZER;
static char *table_names[CACHE_MAX_TABLES];
static int ntables; /* written under tables_mu, read with an acquire load */
static uint64_t table_gens[CACHE_MAX_TABLES];
static uint64_t pool_gens[CACHE_MAX_POOLS];
static uint64_t known_lsn;

bool cache_table_canon(const char *name, char *out, size_t n)
{
    if (strncasecmp(name, "public.", 7) == 0) name += 7;
    size_t len = strlen(name);
    if (len == 0 || len + 1 > n) return false;
    for (size_t i = 0; i <= len; i++) out[i] = (char)tolower((unsigned char)name[i]);
    return true;
}

static int find_locked(const char *canon, int count)
{
    for (int i = 0; i < count; i++)
        if (strcmp(table_names[i], canon) == 0) return i;
    return -1;
}

int cache_table_find(const char *name)
{
    char canon[256];
    if (!cache_table_canon(name, canon, sizeof canon)) return -1;
    return find_locked(canon, __atomic_load_n(&ntables, __ATOMIC_ACQUIRE));
}

int cache_table_id(const char *name)
{
    char canon[256];
    if (!cache_table_canon(name, canon, sizeof canon)) return -1;
    pthread_mutex_lock(&tables_mu);
    int id = find_locked(canon, ntables);
    if (id < 0 && ntables < CACHE_MAX_TABLES) {
        id = ntables;
        table_names[id] = xstrdup(canon);
        __atomic_store_n(&ntables, ntables + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&tables_mu);
    return id;
}

const char *cache_table_name(int id)
{
    return id >= 0 && id < __atomic_load_n(&ntables, __ATOMIC_ACQUIRE) ? table_names[id] : "";
}

static void bump_tables(const int *ids, int n)
{
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < CACHE_MAX_TABLES)
            __atomic_fetch_add(&table_gens[ids[i]], 1, __ATOMIC_SEQ_CST);
}

static uint64_t unknown_payloads;

bool cache_invalidate_named(const char *table)
{
    int id = cache_table_find(table);
    if (id < 0) {
        __atomic_fetch_add(&unknown_payloads, 1, __ATOMIC_RELAXED);
        return false;
    }
    bump_tables(&id, 1);
    return true;
}

uint64_t cache_unknown_payloads(void)
{
    return __atomic_load_n(&unknown_payloads, __ATOMIC_RELAXED);
}

void cache_bump_pool(int idx)
{
    if (idx >= 0 && idx < CACHE_MAX_POOLS) __atomic_fetch_add(&pool_gens[idx], 1, __ATOMIC_SEQ_CST);
}

uint64_t cache_gens(const int *ids, int n, int pool)
{
    uint64_t sum =
        pool >= 0 && pool < CACHE_MAX_POOLS ? __atomic_load_n(&pool_gens[pool], __ATOMIC_SEQ_CST) : 0;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < CACHE_MAX_TABLES)
            sum += __atomic_load_n(&table_gens[ids[i]], __ATOMIC_SEQ_CST);
    return sum;
}

void cache_wrote(const int *ids, int n, uint64_t lsn)
{
    bump_tables(ids, n);
    uint64_t cur = __atomic_load_n(&known_lsn, __ATOMIC_RELAXED);
    while (lsn > cur &&
           !__atomic_compare_exchange_n(&known_lsn, &cur, lsn, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
}

uint64_t cache_known_lsn(void)
{
    return __atomic_load_n(&known_lsn, __ATOMIC_ACQUIRE);
}

/* --- the store ------------------------------------------------------------------------------ */

struct entry {
    struct entry *hnext;       /* the bucket's chain */
    struct entry *prev, *next; /* LRU: head is the most recently used */
    uint64_t hash, gens, lsn, expires_ms, body_hash;
    struct cache_stats *stats;
    size_t keylen, len, size;
    char data[]; /* the key, then the body */
};

/* What an entry costs besides its key and body: itself and its bucket share. */
#define ENTRY_OVERHEAD (sizeof(struct entry) + 2 * sizeof(struct entry *))

static pthread_mutex_t store_mu = PTHREAD_MUTEX_INITIALIZER;
static struct entry **buckets;
static size_t nbuckets, nentries;
static struct entry lru = {.prev = &lru, .next = &lru};
static size_t bytes, max_bytes = (size_t)64 << 20;

static void lru_unlink(struct entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void lru_push(struct entry *e)
{
    e->next = lru.next;
    e->prev = &lru;
    lru.next->prev = e;
    lru.next = e;
}

static struct entry **slot_of(uint64_t hash, const void *key, size_t keylen)
{
    struct entry **pp = &buckets[hash & (nbuckets - 1)];
    while (*pp && !((*pp)->hash == hash && (*pp)->keylen == keylen && memcmp((*pp)->data, key, keylen) == 0))
        pp = &(*pp)->hnext;
    return pp;
}

static void drop(struct entry **pp)
{
    struct entry *e = *pp;
    *pp = e->hnext;
    lru_unlink(e);
    nentries--;
    __atomic_store_n(&bytes, bytes - e->size, __ATOMIC_RELAXED);
    free(e);
}

static void drop_entry(struct entry *e)
{
    drop(slot_of(e->hash, e->data, e->keylen));
}

static void grow(void)
{
    size_t n = nbuckets ? nbuckets * 2 : 1024;
    struct entry **nb = xcalloc(n, sizeof *nb);
    for (size_t i = 0; i < nbuckets; i++)
        for (struct entry *e = buckets[i], *next; e; e = next) {
            next = e->hnext;
            e->hnext = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    free(buckets);
    buckets = nb;
    nbuckets = n;
}

void cache_set_max(size_t max)
{
    pthread_mutex_lock(&store_mu);
    max_bytes = max;
    while (bytes > max_bytes && lru.prev != &lru) drop_entry(lru.prev);
    pthread_mutex_unlock(&store_mu);
}

size_t cache_bytes(void)
{
    return __atomic_load_n(&bytes, __ATOMIC_RELAXED);
}

enum cache_found cache_lookup(const void *key, size_t keylen, uint64_t hash, uint64_t gens, uint64_t min_lsn,
                              struct buf *out, uint64_t *body_hash)
{
    enum cache_found found = CACHE_MISS;
    pthread_mutex_lock(&store_mu);
    if (nbuckets > 0) {
        struct entry **pp = slot_of(hash, key, keylen);
        struct entry *e = *pp;
        if (e != NULL && e->gens != gens) {
            drop(pp);
            found = CACHE_STALE;
        } else if (e != NULL && e->expires_ms <= now_ms()) {
            drop(pp);
        } else if (e != NULL && e->lsn >= min_lsn) {
            lru_unlink(e);
            lru_push(e);
            buf_append(out, e->data + e->keylen, e->len);
            *body_hash = e->body_hash;
            found = CACHE_HIT;
        }
    }
    pthread_mutex_unlock(&store_mu);
    return found;
}

void cache_store(const void *key, size_t keylen, uint64_t hash, const char *body, size_t len, uint64_t gens,
                 uint64_t lsn, int ttl_ms, struct cache_stats *stats)
{
    size_t size = ENTRY_OVERHEAD + keylen + len;
    if (ttl_ms <= 0) return;
    /* built outside the lock: only linking it in is serialised */
    struct entry *e = xmalloc(sizeof *e + keylen + len);
    e->hash = hash;
    e->gens = gens;
    e->lsn = lsn;
    e->expires_ms = now_ms() + (uint64_t)ttl_ms;
    e->body_hash = hash64(body, len); /* the answer's ETag (etag.c) */
    e->stats = stats;
    e->keylen = keylen;
    e->len = len;
    e->size = size;
    memcpy(e->data, key, keylen);
    memcpy(e->data + keylen, body, len);

    pthread_mutex_lock(&store_mu);
    if (size > max_bytes) {
        pthread_mutex_unlock(&store_mu);
        free(e);
        return;
    }
    if (nentries >= nbuckets) grow();
    struct entry **pp = slot_of(e->hash, key, keylen);
    if (*pp != NULL) drop(pp);
    while (bytes + size > max_bytes && lru.prev != &lru) {
        struct entry *old = lru.prev;
        if (old->stats) cache_count(&old->stats->evictions);
        drop_entry(old);
    }
    pp = slot_of(e->hash, key, keylen); /* the chain may have changed */
    e->hnext = *pp;
    *pp = e;
    lru_push(e);
    nentries++;
    __atomic_store_n(&bytes, bytes + size, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&store_mu);
}

void cache_clear(void)
{
    pthread_mutex_lock(&store_mu);
    while (lru.prev != &lru) drop_entry(lru.prev);
    pthread_mutex_unlock(&store_mu);
}
