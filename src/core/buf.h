/* buf.h — a growable byte buffer: JSON bodies, SQL text, parameter values are built in one. */
#ifndef SLUICE_BUF_H
#define SLUICE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* data is always NUL-terminated after any append (data[len] == 0) once cap > 0. */
struct buf {
    char *data;
    size_t len, cap;
};

#define BUF_INIT                                                                                             \
    {                                                                                                        \
        NULL, 0, 0                                                                                           \
    }

void buf_init(struct buf *b);
void buf_free(struct buf *b);                  /* releases memory; b is empty afterwards */
void buf_reset(struct buf *b);                 /* len = 0, keeps the memory */
void buf_reserve(struct buf *b, size_t extra); /* room for extra more bytes plus the NUL */
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Appends v in decimal. */
void buf_put_uint(struct buf *b, uint64_t v);

/* For writers that append many small pieces (JSON of every value of a response): these leave
 * data[len] unset; buf_terminate restores the NUL once the piece is done. */
static inline void buf_need(struct buf *b, size_t n)
{
    if (b->len + n + 1 > b->cap) buf_reserve(b, n);
}
static inline void buf_put_raw(struct buf *b, const void *p, size_t n)
{
    buf_need(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
}
static inline void buf_putc_raw(struct buf *b, char c)
{
    buf_need(b, 1);
    b->data[b->len++] = c;
}
#define BUF_PUTLIT(b, lit) buf_put_raw((b), (lit), sizeof(lit) - 1)
static inline void buf_terminate(struct buf *b)
{
    buf_need(b, 0);
    b->data[b->len] = '\0';
}

/* Hands the bytes to the caller (free() them); b is empty afterwards. Never NULL. */
char *buf_steal(struct buf *b);

#endif
