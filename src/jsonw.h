/* jsonw.h — PostgreSQL text-format values and results -> JSON bytes, with the type mapping of
 * DESIGN.md §5. (jansson owns the json_* prefix.) */
#ifndef SLUICE_JSONW_H
#define SLUICE_JSONW_H

#include <libpq-fe.h>
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

/* Appends the JSON form of one non-NULL text-format value of type `type`. */
void jsonw_value(struct buf *b, Oid type, const char *val, size_t len);

/* Appends row `row` of res as a JSON object {"col":value,...}. */
void jsonw_row(struct buf *b, const PGresult *res, int row);

/* Appends {"rows":[...],"row_count":n}; for a statement without a result set, rows is [] and
 * row_count is the affected count (PQcmdTuples). */
void jsonw_result(struct buf *b, const PGresult *res);

#endif
