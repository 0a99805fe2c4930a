/* jsonw.h — JSON strings written into a buffer, UTF-8 checked. (jansson owns the json_* prefix;
 * pgjson.h writes PostgreSQL values.) */
#ifndef SLUICE_JSONW_H
#define SLUICE_JSONW_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* True when s[0..n) is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
bool jsonw_utf8_valid(const char *s, size_t n);

/* Appends s[0..n) as a quoted JSON string; control characters and invalid UTF-8 are escaped
 * (invalid bytes become U+FFFD). */
void jsonw_string(struct buf *b, const char *s, size_t n);

/* The number of bytes jsonw_string(b, s, n) appends, without writing them. */
size_t jsonw_string_size(const char *s, size_t n);

#endif
