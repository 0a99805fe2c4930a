/* jsonnum.h — request bodies whose JSON numbers keep every digit on their way to PostgreSQL.
 * jansson holds a number as an int64 or a double: 0.1234567890123456789 would be rounded and
 * 123456789012345678901234567890 refused. jsonnum_load hands jansson such a literal as a marked
 * string instead; jsonnum_literal finds it again, and pgtype passes it to PostgreSQL as written. */
#ifndef SLUICE_JSONNUM_H
#define SLUICE_JSONNUM_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* json_loadb(text, len, flags | JSON_ALLOW_NUL) after marking every number literal with a
 * fraction or exponent, and every integer of more than 18 digits. Returns the new value (the
 * caller owns it), or NULL with *error describing the original text, positions included. */
json_t *jsonnum_load(const char *text, size_t len, size_t flags, json_error_t *error);

/* True when v is a number jsonnum_load marked: *lit and *len are then its literal as the client
 * wrote it (the JSON number grammar, nothing else). */
bool jsonnum_literal(const json_t *v, const char **lit, size_t *len);

/* True when lit[0..len) has no fraction and no exponent. */
bool jsonnum_is_integral(const char *lit, size_t len);

#endif
