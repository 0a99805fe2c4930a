/* bulkparse.h — incremental readers of bulk bodies (a JSON array of objects, NDJSON, CSV with a
 * header row); each row becomes one line of COPY text format, converted for the column types. */
#ifndef SLUICE_BULKPARSE_H
#define SLUICE_BULKPARSE_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>

#include "buf.h"

enum bulk_format { BULK_JSON, BULK_NDJSON, BULK_CSV };

struct bulk_field;
struct bulk_value;

/* One pass over one body. The caller owns the struct (it may live on the stack); the reader owns
 * what it allocates, released by bulk_reader_free. */
struct bulk_reader { /* opaque to callers */
    enum bulk_format format;
    int state;            /* reading, done or failed */
    const char *p, *end;  /* the unread part of the body */
    char *const *columns; /* borrowed */
    const Oid *types;     /* borrowed */
    int ncolumns;
    size_t *namelen;           /* strlen of each column name */
    long rows;                 /* data rows read */
    json_t **vals;             /* JSON: the value of each column in the current row (borrowed) */
    struct bulk_value *fv;     /* JSON fast path: where each column's value is in the current row */
    unsigned char *kind;       /* JSON fast path: how each column takes a JSON value */
    int *col_field;            /* CSV: column -> its field in a record */
    struct bulk_field *fields; /* CSV: the fields of the current record */
    struct buf scratch;        /* one converted value */
    struct buf rec;            /* CSV: quoted fields of the current record, unescaped */
    struct buf tmp;            /* JSON fast path: a decoded key or bytea string, a number for strtod */
    char failed[256];          /* the error once state is failed: later calls repeat it */
};

/* Prepares to read body[0..len) (not copied: it must outlive the reader). columns/types: the
 * declared columns and their type OIDs (ncolumns of them; borrowed). Returns 0, or -1 with a
 * client-facing message in err (e.g. a CSV header that lacks a column or names an unknown one,
 * a JSON body that is not an array). Call bulk_reader_free in both cases. */
int bulk_reader_init(struct bulk_reader *r, enum bulk_format format, const char *body, size_t len,
                     char *const *columns, const Oid *types, int ncolumns, char *err, size_t errlen);

/* Appends up to max_rows rows to out as COPY text lines (columns in the declared order, fields
 * separated by \t, NULL as \N, backslash/tab/newline/CR escaped, each line ending in \n). JSON
 * values convert as query parameters do (pgtype_param_json), but numbers go to numeric, float,
 * integer and json columns as the client wrote them (1.50, 1e5: exact, no double in between).
 * Returns the number of rows appended, 0 at the end of the body, or -1 with err naming the row
 * (1-based, counting data rows as the client does) and, where it applies, the column, e.g.
 * `row 12, column "bid": expected a number`, `row 3: malformed JSON: ...`, `row 5: unknown column
 * "bidd"`, `row 7: missing column "ts"`, `row 2: expected a JSON object`. On error, out is
 * restored to its length before the call, and every later call fails with the same message. */
int bulk_reader_next(struct bulk_reader *r, struct buf *out, int max_rows, char *err, size_t errlen);

/* Data rows read so far (rows appended by successful calls). */
long bulk_reader_rows(const struct bulk_reader *r);

/* Releases what the reader allocated; safe after a failed init and on a zeroed struct. */
void bulk_reader_free(struct bulk_reader *r);

#endif
