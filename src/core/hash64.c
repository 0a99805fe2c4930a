/* hash64.c — 8 bytes at a time: each word is mixed in with a multiply and a rotate, the length
 * goes in last, and a final avalanche spreads every input bit over the result. */
#include "hash64.h"

#include <string.h>

#define K1 0x9e3779b97f4a7c15ULL /* odd constants with well-spread bits */
#define K2 0xc2b2ae3d27d4eb4fULL
#define K3 0x165667b19e3779f9ULL

static inline uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8); /* unaligned-safe; compiles to one load */
    return v;
}

static inline uint64_t mix(uint64_t h, uint64_t v)
{
    v *= K2;
    v = rotl(v, 31);
    v *= K1;
    h ^= v;
    return rotl(h, 27) * K1 + K3;
}

uint64_t hash64(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = K3 ^ (n * K2);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) h = mix(h, load64(s + i));
    if (i < n) {
        uint64_t tail = 0;
        memcpy(&tail, s + i, n - i);
        h = mix(h, tail ^ ((uint64_t)(n - i) << 56));
    }
    h ^= n;
    h ^= h >> 33;
    h *= K2;
    h ^= h >> 29;
    h *= K3;
    h ^= h >> 32;
    return h;
}

void hash64_hex(uint64_t h, char out[17])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--) {
        out[i] = digits[h & 15];
        h >>= 4;
    }
    out[16] = '\0';
}
