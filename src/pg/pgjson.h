/* pgjson.h — PostgreSQL text-format values and results -> JSON bytes, with the type mapping of
 * docs/http-api.md ("Results"). */
#ifndef SLUICE_PGJSON_H
#define SLUICE_PGJSON_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "buf.h"

/* True when the non-NULL value of a number type goes out as a JSON number (within what a double
 * holds exactly); false for every other type. */
bool pgjson_is_number(Oid type, const char *val, size_t len);

/* Appends the JSON form of one non-NULL text-format value of type `type`. */
void pgjson_value(struct buf *b, Oid type, const char *val, size_t len);

/* Appends row `row` of res as a JSON object {"col":value,...}. */
void pgjson_row(struct buf *b, const PGresult *res, int row);

/* Appends {"rows":[...],"row_count":n}; for a statement without a result set, rows is [] and
 * row_count is the affected count (PQcmdTuples). */
void pgjson_result(struct buf *b, const PGresult *res);

#endif
