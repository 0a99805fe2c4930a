/* bulkparse.c — reads a bulk body (JSON array of objects, NDJSON, CSV with a header row) a few rows
 * at a time and writes each row as one line of COPY text format. Only one row is ever decoded at
 * once: the JSON array is walked here and jansson parses one element at a time. Values convert
 * with the same rules as query parameters (pgtype.c). */
#include "bulkparse.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgtype.h"
#include "util.h"

enum { ST_READING, ST_DONE, ST_FAILED };

/* Longest piece of client text (a key, a header name) quoted back in an error. */
#define QUOTE_MAX 100

/* One CSV field: a slice of the body, or (copied) a slice of r->rec at off, for a quoted field
 * whose "" escapes had to be undone. */
struct bulk_field {
    const char *p;
    size_t len, off;
    bool copied, null;
};

/* COPY text format escapes: the character after the backslash, 0 for bytes that pass as they are. */
static const char copy_escape[256] = {['\\'] = '\\', ['\t'] = 't', ['\n'] = 'n', ['\r'] = 'r'};

static const unsigned char utf8_bom[3] = {0xEF, 0xBB, 0xBF};

static void fail(struct bulk_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(struct bulk_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->failed, sizeof r->failed, fmt, ap);
    va_end(ap);
    r->state = ST_FAILED;
}

static void copy_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen) snprintf(err, errlen, "%s", msg);
}

static bool is_json_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const char *skip_json_space(const char *p, const char *end)
{
    while (p < end && is_json_space(*p)) p++;
    return p;
}

/* Appends s[0..n) escaped for COPY text format. */
static void put_copy_text(struct buf *out, const char *s, size_t n)
{
    buf_reserve(out, 2 * n);
    char *o = out->data + out->len;
    for (size_t i = 0; i < n; i++) {
        char e = copy_escape[(unsigned char)s[i]];
        if (e) {
            *o++ = '\\';
            *o++ = e;
        } else {
            *o++ = s[i];
        }
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
}

/* The declared column named s[0..n), or -1. */
static int find_column(const struct bulk_reader *r, const char *s, size_t n)
{
    for (int c = 0; c < r->ncolumns; c++)
        if (r->namelen[c] == n && memcmp(r->columns[c], s, n) == 0) return c;
    return -1;
}

/* ---- JSON rows (both the array and NDJSON) ---- */

/* Appends the COPY line of one parsed JSON object. Returns 0, or -1 after fail(). */
static int put_object_row(struct bulk_reader *r, json_t *obj, struct buf *out)
{
    long row = r->rows + 1;
    size_t found = 0;
    for (int c = 0; c < r->ncolumns; c++) {
        r->vals[c] = json_object_getn(obj, r->columns[c], r->namelen[c]);
        if (r->vals[c]) found++;
    }
    if (found != json_object_size(obj)) {
        const char *key;
        size_t keylen;
        json_t *v;
        json_object_keylen_foreach(obj, key, keylen, v)
        {
            if (find_column(r, key, keylen) < 0) {
                fail(r, "row %ld: unknown column \"%.*s\"", row,
                     (int)(keylen < QUOTE_MAX ? keylen : QUOTE_MAX), key);
                return -1;
            }
        }
    }
    for (int c = 0; c < r->ncolumns; c++) {
        if (r->vals[c] == NULL) {
            fail(r, "row %ld: missing column \"%s\"", row, r->columns[c]);
            return -1;
        }
    }
    for (int c = 0; c < r->ncolumns; c++) {
        if (c > 0) buf_putc(out, '\t');
        if (json_is_null(r->vals[c])) {
            buf_append(out, "\\N", 2);
            continue;
        }
        char why[160];
        bool is_null;
        buf_reset(&r->scratch);
        if (pgtype_param_json(r->types[c], r->vals[c], &r->scratch, &is_null, why, sizeof why) < 0) {
            fail(r, "row %ld, column \"%s\": %s", row, r->columns[c], why);
            return -1;
        }
        put_copy_text(out, r->scratch.data, r->scratch.len - 1); /* without pgtype's NUL */
    }
    buf_putc(out, '\n');
    return 0;
}

/* Parses the object at p[0..n) (p[0] is '{') and appends its line. eof_check: the object must
 * fill the rest of p[0..n) but for whitespace. Returns the bytes consumed, or -1 after fail(). */
static long json_row(struct bulk_reader *r, const char *p, size_t n, bool eof_check, struct buf *out)
{
    json_error_t e;
    size_t flags = JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | (eof_check ? 0 : JSON_DISABLE_EOF_CHECK);
    json_t *obj = json_loadb(p, n, flags, &e);
    if (obj == NULL) {
        fail(r, "row %ld: malformed JSON: %s", r->rows + 1, e.text);
        return -1;
    }
    /* With JSON_DISABLE_EOF_CHECK, position is where the value ended (checked in the tests). */
    long used = e.position;
    int rc = put_object_row(r, obj, out);
    json_decref(obj);
    return rc < 0 ? -1 : used;
}

/* JSON array: r->p is just after '[' (first) or just after an element. 1 = a row was appended,
 * 0 = the array ended, -1 after fail(). */
static int next_array_row(struct bulk_reader *r, struct buf *out, bool first)
{
    const char *p = skip_json_space(r->p, r->end);
    long row = r->rows + 1;
    bool comma = false;
    if (!first) {
        if (p == r->end) {
            fail(r, "malformed JSON after row %ld: the array is not closed", r->rows);
            return -1;
        }
        if (*p == ',') {
            comma = true;
            p = skip_json_space(p + 1, r->end);
        } else if (*p != ']') {
            fail(r, "malformed JSON after row %ld: expected ',' or ']'", r->rows);
            return -1;
        }
    }
    if (p == r->end) {
        fail(r, "row %ld: malformed JSON: unexpected end of the body", row);
        return -1;
    }
    if (*p == ']' && !comma) { /* "[..., ]" falls through to "expected a JSON object" */
        if (skip_json_space(p + 1, r->end) != r->end) {
            fail(r, "unexpected data after the array");
            return -1;
        }
        r->p = r->end;
        return 0;
    }
    if (*p != '{') {
        fail(r, "row %ld: expected a JSON object", row);
        return -1;
    }
    long used = json_row(r, p, (size_t)(r->end - p), false, out);
    if (used < 0) return -1;
    r->p = p + used;
    return 1;
}

/* NDJSON: one object per line; blank lines are skipped. Same returns as next_array_row. */
static int next_ndjson_row(struct bulk_reader *r, struct buf *out)
{
    while (r->p < r->end) {
        const char *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
        const char *eol = nl ? nl : r->end;
        const char *p = skip_json_space(r->p, eol);
        r->p = nl ? nl + 1 : r->end;
        if (p == eol) continue;
        if (*p != '{') {
            fail(r, "row %ld: expected a JSON object", r->rows + 1);
            return -1;
        }
        return json_row(r, p, (size_t)(eol - p), true, out) < 0 ? -1 : 1;
    }
    return 0;
}

/* ---- CSV ---- */

/* True when only line ends remain: the end of the data. */
static bool csv_at_end(const struct bulk_reader *r)
{
    for (const char *p = r->p; p < r->end; p++)
        if (*p != '\n' && *p != '\r') return false;
    return true;
}

/* Reads the field at r->p (RFC 4180). Sets *f and *eor (the field ended its record) and moves
 * r->p past the separator or line end. Returns 0, or -1 with *why for an unterminated quote or
 * a character other than a separator after a closing quote. */
static int csv_field(struct bulk_reader *r, struct bulk_field *f, bool *eor, const char **why)
{
    const char *p = r->p, *end = r->end;
    f->copied = f->null = false;
    if (p < end && *p == '"') {
        const char *start = ++p;
        for (;;) {
            const char *q = memchr(p, '"', (size_t)(end - p));
            if (q == NULL) {
                *why = "unterminated quoted field";
                return -1;
            }
            if (q + 1 < end && q[1] == '"') { /* "" is one quote: copy the field to undo it */
                if (!f->copied) {
                    f->copied = true;
                    f->off = r->rec.len;
                }
                buf_append(&r->rec, p, (size_t)(q + 1 - p));
                p = q + 2;
                continue;
            }
            if (f->copied) {
                buf_append(&r->rec, p, (size_t)(q - p));
                f->len = r->rec.len - f->off;
            } else {
                f->p = start;
                f->len = (size_t)(q - start);
            }
            p = q + 1;
            break;
        }
        if (p < end && *p != ',' && *p != '\n' && *p != '\r') {
            *why = "unexpected character after a closing quote";
            return -1;
        }
    } else {
        f->p = p;
        while (p < end && *p != ',' && *p != '\n' && *p != '\r') p++;
        f->len = (size_t)(p - f->p);
        f->null = f->len == 0; /* unquoted empty = NULL; "" = the empty string */
    }
    if (p == end) {
        *eor = true;
    } else if (*p == ',') {
        *eor = false;
        p++;
    } else {
        *eor = true;
        if (*p == '\r' && p + 1 < end && p[1] == '\n') p++;
        p++;
    }
    r->p = p;
    return 0;
}

static const char *field_text(const struct bulk_reader *r, const struct bulk_field *f)
{
    return f->copied ? r->rec.data + f->off : f->p;
}

/* Maps each declared column to its field from the header row. Returns 0, or -1 after fail(). */
static int read_csv_header(struct bulk_reader *r)
{
    if (csv_at_end(r)) {
        fail(r, "the CSV body has no header row");
        return -1;
    }
    for (int c = 0; c < r->ncolumns; c++) r->col_field[c] = -1;
    bool eor = false;
    for (int nf = 0; !eor; nf++) {
        struct bulk_field f;
        const char *why;
        buf_reset(&r->rec);
        if (csv_field(r, &f, &eor, &why) < 0) {
            fail(r, "CSV header: %s", why);
            return -1;
        }
        const char *name = field_text(r, &f);
        int c = find_column(r, name, f.len);
        if (c < 0) {
            fail(r, "CSV header: unknown column \"%.*s\"", (int)(f.len < QUOTE_MAX ? f.len : QUOTE_MAX),
                 name);
            return -1;
        }
        if (r->col_field[c] >= 0) {
            fail(r, "CSV header: column \"%s\" appears twice", r->columns[c]);
            return -1;
        }
        r->col_field[c] = nf; /* nf < ncolumns: each field so far named a different column */
    }
    for (int c = 0; c < r->ncolumns; c++) {
        if (r->col_field[c] < 0) {
            fail(r, "CSV header: missing column \"%s\"", r->columns[c]);
            return -1;
        }
    }
    return 0;
}

/* One CSV record. Same returns as next_array_row. */
static int next_csv_row(struct bulk_reader *r, struct buf *out)
{
    if (csv_at_end(r)) {
        r->p = r->end;
        return 0;
    }
    long row = r->rows + 1;
    int nf = 0;
    bool eor = false;
    buf_reset(&r->rec);
    while (!eor) {
        struct bulk_field f;
        const char *why;
        if (csv_field(r, &f, &eor, &why) < 0) {
            /* the header has ncolumns fields, so field nf < ncolumns has a name */
            int c = -1;
            for (int i = 0; i < r->ncolumns && c < 0; i++)
                if (r->col_field[i] == nf) c = i;
            if (c >= 0)
                fail(r, "row %ld, column \"%s\": %s", row, r->columns[c], why);
            else
                fail(r, "row %ld: %s", row, why);
            return -1;
        }
        if (nf < r->ncolumns) r->fields[nf] = f;
        nf++;
    }
    if (nf != r->ncolumns) {
        fail(r, "row %ld: expected %d fields, got %d", row, r->ncolumns, nf);
        return -1;
    }
    for (int c = 0; c < r->ncolumns; c++) {
        const struct bulk_field *f = &r->fields[r->col_field[c]];
        if (c > 0) buf_putc(out, '\t');
        if (f->null) {
            buf_append(out, "\\N", 2);
            continue;
        }
        char why[160];
        buf_reset(&r->scratch);
        if (pgtype_param_text(r->types[c], field_text(r, f), f->len, &r->scratch, why, sizeof why) < 0) {
            fail(r, "row %ld, column \"%s\": %s", row, r->columns[c], why);
            return -1;
        }
        put_copy_text(out, r->scratch.data, r->scratch.len - 1);
    }
    buf_putc(out, '\n');
    return 1;
}

/* ---- public ---- */

int bulk_reader_init(struct bulk_reader *r, enum bulk_format format, const char *body, size_t len,
                     char *const *columns, const Oid *types, int ncolumns, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->scratch);
    buf_init(&r->rec);
    r->format = format;
    r->state = ST_READING;
    r->p = body;
    r->end = body + len;
    r->columns = columns;
    r->types = types;
    r->ncolumns = ncolumns;
    if (ncolumns < 1) {
        fail(r, "no columns declared");
        goto failed;
    }
    r->namelen = xmalloc((size_t)ncolumns * sizeof *r->namelen);
    for (int c = 0; c < ncolumns; c++) r->namelen[c] = strlen(columns[c]);

    /* A UTF-8 byte order mark, as spreadsheet exports write, is not data. */
    if (len >= 3 && memcmp(body, utf8_bom, 3) == 0) r->p += 3;

    switch (format) {
    case BULK_JSON:
        r->vals = xcalloc((size_t)ncolumns, sizeof *r->vals);
        r->p = skip_json_space(r->p, r->end);
        if (r->p == r->end || *r->p != '[') {
            fail(r, "the body must be a JSON array of objects");
            goto failed;
        }
        r->p++;
        return 0;
    case BULK_NDJSON:
        r->vals = xcalloc((size_t)ncolumns, sizeof *r->vals);
        return 0;
    case BULK_CSV:
        r->col_field = xmalloc((size_t)ncolumns * sizeof *r->col_field);
        r->fields = xmalloc((size_t)ncolumns * sizeof *r->fields);
        if (read_csv_header(r) < 0) goto failed;
        return 0;
    }
    fail(r, "unknown bulk format");
failed:
    copy_err(err, errlen, r->failed);
    return -1;
}

int bulk_reader_next(struct bulk_reader *r, struct buf *out, int max_rows, char *err, size_t errlen)
{
    if (r->state == ST_FAILED) {
        copy_err(err, errlen, r->failed[0] ? r->failed : "the bulk reader is closed");
        return -1;
    }
    if (r->state == ST_DONE) return 0;
    if (max_rows < 1) max_rows = 1;

    size_t start = out->len;
    long rows_before = r->rows;
    int n = 0;
    while (n < max_rows) {
        int rc;
        switch (r->format) {
        case BULK_JSON:
            rc = next_array_row(r, out, r->rows == 0);
            break;
        case BULK_NDJSON:
            rc = next_ndjson_row(r, out);
            break;
        default:
            rc = next_csv_row(r, out);
            break;
        }
        if (rc < 0) {
            out->len = start;
            if (out->cap) out->data[start] = '\0';
            r->rows = rows_before;
            copy_err(err, errlen, r->failed);
            return -1;
        }
        if (rc == 0) {
            r->state = ST_DONE;
            break;
        }
        n++;
        r->rows++;
    }
    return n;
}

long bulk_reader_rows(const struct bulk_reader *r)
{
    return r->rows;
}

void bulk_reader_free(struct bulk_reader *r)
{
    free(r->namelen);
    free(r->vals);
    free(r->col_field);
    free(r->fields);
    buf_free(&r->scratch);
    buf_free(&r->rec);
    r->namelen = NULL;
    r->vals = NULL;
    r->col_field = NULL;
    r->fields = NULL;
    r->state = ST_FAILED;
    r->failed[0] = '\0';
}
