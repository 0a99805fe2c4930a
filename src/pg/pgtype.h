/* pgtype.h — PostgreSQL type OIDs and the conversion of client values (JSON or query-string
 * text) into the text form a parameter of that type takes. */
#ifndef SLUICE_PGTYPE_H
#define SLUICE_PGTYPE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* Built-in type OIDs (pg_type.dat). */
enum {
    PGT_BOOL = 16,
    PGT_BYTEA = 17,
    PGT_CHAR = 18,
    PGT_NAME = 19,
    PGT_INT8 = 20,
    PGT_INT2 = 21,
    PGT_INT4 = 23,
    PGT_TEXT = 25,
    PGT_OID = 26,
    PGT_JSON = 114,
    PGT_FLOAT4 = 700,
    PGT_FLOAT8 = 701,
    PGT_BPCHAR = 1042,
    PGT_VARCHAR = 1043,
    PGT_DATE = 1082,
    PGT_TIME = 1083,
    PGT_TIMESTAMP = 1114,
    PGT_TIMESTAMPTZ = 1184,
    PGT_INTERVAL = 1186,
    PGT_TIMETZ = 1266,
    PGT_NUMERIC = 1700,
    PGT_UUID = 2950,
    PGT_JSONB = 3802,
};

/* Element type of a built-in array type (e.g. 1007 int4[] -> 23), or 0 when type is not one. */
Oid pgtype_array_elem(Oid type);

/* A short name for docs and errors: "integer", "bigint", "numeric", "text", "boolean", ...,
 * "int4[]" style for arrays; NULL for an unknown OID. */
const char *pgtype_name(Oid type);

/* Converts a JSON parameter value for a parameter of type `type`. On success returns 0, appends
 * the text followed by one NUL byte to out (callers keep offsets: out may move), and sets
 * *is_null (nothing appended then) for JSON null. On a value of the wrong kind returns -1 with a
 * short client-facing reason in err, e.g. "expected an integer", "invalid base64". */
int pgtype_param_json(Oid type, const json_t *v, struct buf *out, bool *is_null, char *err, size_t errlen);

/* The same for a query-string value, which is always text: passed through in PostgreSQL's input
 * syntax, except bytea, which takes base64. Text must be valid UTF-8 without NUL bytes. */
int pgtype_param_text(Oid type, const char *s, size_t n, struct buf *out, char *err, size_t errlen);

#endif
