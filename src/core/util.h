/* util.h — allocation that aborts on out-of-memory, clocks, and small helpers shared by every module. */
#ifndef SLUICE_UTIL_H
#define SLUICE_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Error codes returned (negated) by calls that can fail. */
enum {
    SLUICE_OK = 0,
    SLUICE_EINVAL = 1, /* bad input from a client or an operator */
    SLUICE_ENOMEM = 2, /* a configured limit was hit */
    SLUICE_EIO = 3,    /* the database or a socket failed */
    SLUICE_ETIMEDOUT = 4,
    SLUICE_EBUSY = 5, /* no capacity: pool queue full, breaker open */
};

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define ARRAY_SIZE(a)                   (sizeof(a) / sizeof((a)[0]))

/* These never return NULL: out of memory aborts the process, so call sites stay simple. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Monotonic clock in milliseconds / microseconds. */
uint64_t now_ms(void);
uint64_t now_us(void);

/* The value of a hexadecimal digit (either case), or -1. */
static inline int hex_digit(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

#endif
