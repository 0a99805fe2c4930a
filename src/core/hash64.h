/* hash64.h — a fast 64-bit hash of a byte string, for validators of response bodies (ETag) and
 * cache keys. Not cryptographic: it tells bodies apart, it does not resist a chosen collision. */
#ifndef SLUICE_HASH64_H
#define SLUICE_HASH64_H

#include <stddef.h>
#include <stdint.h>

/* The hash of p[0..n) (n may be 0). The same bytes give the same value on every run and machine
 * of the same byte order. */
uint64_t hash64(const void *p, size_t n);

/* Writes the hash as 16 lower-case hex digits and a NUL into out[17]. */
void hash64_hex(uint64_t h, char out[17]);

#endif
