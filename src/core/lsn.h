/* lsn.h — WAL positions (PostgreSQL's pg_lsn, "16/B374D848") as 64-bit numbers: parsed from the
 * server's text and from the Sluice-LSN request header, written back in the server's own form. */
#ifndef SLUICE_LSN_H
#define SLUICE_LSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for the longest text: "FFFFFFFF/FFFFFFFF" and its NUL. */
#define LSN_TEXT 18

/* Parses s[0..n) as pg_lsn's input does: 1-8 hex digits, '/', 1-8 hex digits, nothing else (no
 * blanks). Returns true with *out, false when it is not a pg_lsn (*out untouched). */
bool lsn_parse(const char *s, size_t n, uint64_t *out);
/* Writes lsn as the server does ("%X/%X", upper case) into out; returns out. */
char *lsn_format(char out[LSN_TEXT], uint64_t lsn);
/* Parses a header value that holds one pg_lsn or several separated by commas (a header sent
 * twice and joined by a proxy), blanks around each allowed. Returns true with the largest in
 * *out, false when any part is not a pg_lsn or there is none. */
bool lsn_parse_list(const char *s, size_t n, uint64_t *out);

#endif
