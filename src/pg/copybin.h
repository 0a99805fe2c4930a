/* copybin.h — COPY text lines turned into COPY binary tuples, for the types where PostgreSQL's
 * binary input is much cheaper than parsing text (numeric, timestamps, dates, integers, floats)
 * and the conversion can be done exactly. Only a value in one plain, unambiguous spelling is
 * converted (e.g. a timestamptz with an explicit offset, an integer without a sign or spaces);
 * any other spelling makes the line "not convertible" and the caller sends it as text, so the
 * server's own input rules and error messages still apply to it. */
#ifndef SLUICE_COPYBIN_H
#define SLUICE_COPYBIN_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

/* True when values of type can be converted (then the whole COPY may use the binary format). */
bool copybin_supports(Oid type);

/* The binary COPY header (signature, flags, extension length) and the trailer that ends it. */
void copybin_header(struct buf *out);
void copybin_trailer(struct buf *out);

/* Appends the binary tuple of one COPY text line (without its \n: fields split by \t, \N for
 * NULL, backslash escapes \\ \t \n \r) of ncols fields of the given types. Returns 0, or -1 when
 * a field is not in a convertible spelling or the line has another number of fields; out is
 * then as it was. */
int copybin_row(const char *line, size_t len, const Oid *types, int ncols, struct buf *out);

#endif
