/* fuzz_bulkparse.c — libFuzzer target: bulk bodies (JSON array, NDJSON, CSV) through
 * bulk_reader_init / bulk_reader_next with a fixed set of columns of varied types and small
 * batches. Input: byte 0 picks the format and max_rows, byte 1 how many of the columns are
 * declared, the rest is the body. Beyond crashes it checks the reader's contract (well-formed
 * COPY lines, batches of at most max_rows, a failure restores the buffer and repeats itself)
 * and, for JSON bodies, that the fast path answers as the reference reading does: jansson parses
 * each row, pgtype converts each value; both must accept the same bodies and write the same
 * values (numbers compared by value, json compared as JSON). Every line it writes also goes
 * through copybin_row (the binary COPY of atomic inserts), which converts it or leaves the
 * output as it was. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulkparse.h"
#include "copybin.h"
#include "jsonnum.h"
#include "pgtype.h"

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_bulkparse: check failed: %s (line %d)\n", #cond, __LINE__);                \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static char *const columns[] = {"id",   "name", "price", "ok", "data", "tags",
                                "meta", "ts",   "big",   "r",  "s",    "n"};
static const Oid types[] = {
    PGT_INT4,  PGT_TEXT,        PGT_NUMERIC, PGT_BOOL,   PGT_BYTEA, 1009 /* text[] */,
    PGT_JSONB, PGT_TIMESTAMPTZ, PGT_INT8,    PGT_FLOAT8, PGT_INT2,  1007 /* int4[] */,
};
#define NCOLS (int)(sizeof columns / sizeof columns[0])

static const char PREFIX[] = "earlier\tbatch\n";

/* ---- checking COPY text ---- */

/* Each line has ncols fields; a backslash starts \\ \t \n \r, or \N as a whole field; no raw CR,
 * no NUL. */
static void check_copy_lines(const char *s, size_t n, int ncols, long want_lines)
{
    long lines = 0;
    size_t i = 0;
    while (i < n) {
        int fields = 1;
        size_t field_start = i;
        for (;; i++) {
            CHECK(i < n); /* every line ends with \n */
            char c = s[i];
            CHECK(c != '\0' && c != '\r');
            if (c == '\n') break;
            if (c == '\t') {
                fields++;
                field_start = i + 1;
                continue;
            }
            if (c == '\\') {
                CHECK(i + 1 < n);
                char e = s[i + 1];
                if (e == 'N') {
                    CHECK(i == field_start && (s[i + 2] == '\t' || s[i + 2] == '\n'));
                } else {
                    CHECK(e == '\\' || e == 't' || e == 'n' || e == 'r');
                }
                i++;
            }
        }
        CHECK(fields == ncols);
        lines++;
        i++;
    }
    CHECK(lines == want_lines);
}

/* The same columns as copybin sees them: the types it does not convert read as text. */
static const Oid binary_types[] = {
    PGT_INT4,  PGT_TEXT,        PGT_NUMERIC, PGT_BOOL,   PGT_TEXT, PGT_TEXT,
    PGT_JSONB, PGT_TIMESTAMPTZ, PGT_INT8,    PGT_FLOAT8, PGT_INT2, PGT_TEXT,
};

static void check_binary(const char *s, size_t n, int ncols)
{
    struct buf bin = BUF_INIT;
    for (const char *end = s + n, *nl; s < end; s = nl + 1) {
        nl = memchr(s, '\n', (size_t)(end - s));
        size_t before = bin.len;
        if (copybin_row(s, (size_t)(nl - s), binary_types, ncols, &bin) == 0)
            CHECK(bin.len >= before + 2 + 4 * (size_t)ncols);
        else
            CHECK(bin.len == before);
    }
    buf_free(&bin);
}

/* ---- the reference reading of JSON bodies ---- */

static void put_copy(struct buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '\\':
            buf_append(out, "\\\\", 2);
            break;
        case '\t':
            buf_append(out, "\\t", 2);
            break;
        case '\n':
            buf_append(out, "\\n", 2);
            break;
        case '\r':
            buf_append(out, "\\r", 2);
            break;
        default:
            buf_putc(out, s[i]);
        }
    }
}

/* One row object -> its COPY line. Returns 0, or -1 for a row the reader must refuse. */
static int ref_row(const json_t *obj, int ncols, struct buf *out)
{
    if (!json_is_object(obj)) return -1;
    size_t found = 0;
    for (int c = 0; c < ncols; c++) {
        if (json_object_get(obj, columns[c]) == NULL) return -1; /* missing */
        found++;
    }
    if (found != json_object_size(obj)) return -1; /* unknown key */
    struct buf v = BUF_INIT;
    int rc = 0;
    for (int c = 0; c < ncols && rc == 0; c++) {
        if (c > 0) buf_putc(out, '\t');
        const json_t *j = json_object_get(obj, columns[c]);
        bool is_null;
        char err[256];
        buf_reset(&v);
        if (json_is_null(j)) {
            buf_append(out, "\\N", 2);
        } else if (pgtype_param_json(types[c], j, &v, &is_null, err, sizeof err) != 0) {
            rc = -1;
        } else {
            put_copy(out, v.data, v.len - 1);
        }
    }
    buf_putc(out, '\n');
    buf_free(&v);
    return rc;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const size_t JFLAGS = JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;

/* jansson limits nesting; a whole-array reading sees every row one level deeper than the
 * reader's row by row reading, so bodies nested that deep are not read whole. */
static bool deeply_nested(const char *s, size_t n)
{
    size_t opens = 0;
    for (size_t i = 0; i < n; i++) opens += s[i] == '[' || s[i] == '{';
    return opens >= JSON_PARSER_MAX_DEPTH - 8;
}

/* JSON array: the elements one at a time, each read by jansson where it starts. Returns the
 * good rows; *ok when the array is well formed and every row good. */
static long ref_read_array(const char *p, const char *end, int ncols, struct buf *out, bool *ok)
{
    long rows = 0;
    *ok = false;
    while (p < end && is_space(*p)) p++;
    if (p == end || *p++ != '[') return 0;
    for (bool first = true;; first = false) {
        while (p < end && is_space(*p)) p++;
        if (p == end) return rows;
        if (*p == ']' && first) break;
        if (!first) {
            if (*p == ']') break;
            if (*p++ != ',') return rows;
            while (p < end && is_space(*p)) p++;
        }
        json_error_t e;
        json_t *obj =
            p < end ? jsonnum_load(p, (size_t)(end - p), JFLAGS | JSON_DISABLE_EOF_CHECK, &e) : NULL;
        size_t before = out->len;
        int rc = obj ? ref_row(obj, ncols, out) : -1;
        json_decref(obj);
        if (rc < 0) {
            out->len = before;
            return rows;
        }
        rows++;
        p += e.position;
    }
    for (p++; p < end && is_space(*p); p++) {
    }
    *ok = p == end;
    return rows;
}

/* Reads the whole body the reference way. Returns the good rows' lines in out and the number of
 * good rows before the first bad one; *ok says whether the whole body is acceptable. */
static long ref_read(enum bulk_format fmt, const char *body, size_t len, int ncols, struct buf *out, bool *ok)
{
    long rows = 0;
    *ok = false;
    if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0) body += 3, len -= 3;
    if (fmt == BULK_JSON) {
        rows = ref_read_array(body, body + len, ncols, out, ok);
        if (*ok && !deeply_nested(body, len)) {
            /* the whole body is one valid JSON array as well */
            json_error_t e;
            json_t *arr = jsonnum_load(body, len, JFLAGS, &e);
            *ok = arr != NULL && json_is_array(arr) && json_array_size(arr) == (size_t)rows;
            json_decref(arr);
        }
        return rows;
    }
    /* NDJSON: a row per line, blank lines skipped */
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *s = p;
        while (s < eol && is_space(*s)) s++;
        p = nl ? nl + 1 : end;
        if (s == eol) continue;
        json_error_t e;
        json_t *obj = jsonnum_load(s, (size_t)(eol - s), JFLAGS, &e);
        size_t before = out->len;
        int rc = obj ? ref_row(obj, ncols, out) : -1;
        json_decref(obj);
        if (rc < 0) {
            out->len = before;
            return rows;
        }
        rows++;
    }
    *ok = true;
    return rows;
}

/* COPY text field -> the bytes it stands for. */
static void copy_unescape(const char *s, size_t n, struct buf *out)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            char e = s[++i];
            c = e == 't' ? '\t' : e == 'n' ? '\n' : e == 'r' ? '\r' : e;
        }
        buf_putc(out, c);
    }
}

/* Two fields of column c agree: the same text, or (numbers written as the client wrote them,
 * json text kept as it was) the same value. */
static bool same_field(int c, const char *a, size_t an, const char *b, size_t bn)
{
    if (an == bn && memcmp(a, b, an) == 0) return true;
    if (an == 2 && memcmp(a, "\\N", 2) == 0) return false;
    if (bn == 2 && memcmp(b, "\\N", 2) == 0) return false;
    struct buf x = BUF_INIT, y = BUF_INIT;
    copy_unescape(a, an, &x);
    copy_unescape(b, bn, &y);
    bool same = false;
    if (types[c] == PGT_NUMERIC || types[c] == PGT_FLOAT8) {
        char *xe, *ye;
        double dx = strtod(x.data ? x.data : "", &xe), dy = strtod(y.data ? y.data : "", &ye);
        same = x.len && y.len && *xe == '\0' && *ye == '\0' && dx == dy;
    } else if (types[c] == PGT_JSONB) {
        json_error_t e;
        json_t *jx = json_loadb(x.data ? x.data : "", x.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        json_t *jy = json_loadb(y.data ? y.data : "", y.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
        same = jx && jy && json_equal(jx, jy);
        json_decref(jx);
        json_decref(jy);
    }
    buf_free(&x);
    buf_free(&y);
    return same;
}

/* The reader's lines and the reference's agree field by field. */
static void compare_lines(const char *a, size_t an, const char *b, size_t bn, int ncols)
{
    const char *ae = a + an, *be = b + bn;
    while (a < ae && b < be) {
        for (int c = 0; c < ncols; c++) {
            const char *x = a, *y = b;
            while (a < ae && *a != '\t' && *a != '\n') a++;
            while (b < be && *b != '\t' && *b != '\n') b++;
            if (!same_field(c, x, (size_t)(a - x), y, (size_t)(b - y))) {
                fprintf(stderr, "fuzz_bulkparse: column \"%s\": reader [%.*s] reference [%.*s]\n", columns[c],
                        (int)(a - x), x, (int)(b - y), y);
                abort();
            }
            CHECK(a < ae && b < be && *a == *b);
            a++, b++;
        }
    }
    CHECK(a == ae && b == be);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    enum bulk_format fmt = (enum bulk_format)(data[0] % 3);
    int max_rows = 1 + (data[0] / 3) % 4;
    int ncols = 1 + data[1] % NCOLS;
    size_t len = size - 2;
    /* the body in a block of its exact size, so that ASan sees a read past its end */
    char *body = malloc(len ? len : 1);
    CHECK(body != NULL);
    memcpy(body, data + 2, len);

    struct bulk_reader r;
    char err[256] = "", err2[256] = "";
    struct buf out = BUF_INIT;
    buf_puts(&out, PREFIX);
    bool read_ok = false;
    long rows = 0;

    if (bulk_reader_init(&r, fmt, body, len, columns, types, ncols, err, sizeof err) != 0) {
        CHECK(err[0] != '\0');
        CHECK(bulk_reader_next(&r, &out, max_rows, err2, sizeof err2) == -1);
    } else {
        for (;;) {
            size_t before = out.len;
            int rc = bulk_reader_next(&r, &out, max_rows, err, sizeof err);
            CHECK(out.data[out.len] == '\0');
            if (rc < 0) {
                CHECK(rc == -1 && err[0] != '\0');
                CHECK(out.len == before); /* the failed batch is taken back */
                CHECK(bulk_reader_rows(&r) == rows);
                CHECK(bulk_reader_next(&r, &out, max_rows, err2, sizeof err2) == -1);
                CHECK(strcmp(err, err2) == 0);
                break;
            }
            CHECK(rc <= max_rows);
            check_copy_lines(out.data + before, out.len - before, ncols, rc);
            check_binary(out.data + before, out.len - before, ncols);
            rows += rc;
            CHECK(bulk_reader_rows(&r) == rows);
            if (rc == 0) {
                CHECK(out.len == before);
                CHECK(bulk_reader_next(&r, &out, max_rows, err2, sizeof err2) == 0); /* the end stays */
                read_ok = true;
                break;
            }
        }
    }
    bulk_reader_free(&r);
    CHECK(memcmp(out.data, PREFIX, sizeof PREFIX - 1) == 0);

    if (fmt != BULK_CSV) {
        struct buf ref = BUF_INIT;
        bool ref_ok;
        long ref_rows = ref_read(fmt, body, len, ncols, &ref, &ref_ok);
        if (read_ok != ref_ok) {
            fprintf(stderr, "fuzz_bulkparse: reader %s (%s), reference %s after %ld rows\n",
                    read_ok ? "accepts" : "refuses", err, ref_ok ? "accepts" : "refuses", ref_rows);
            abort();
        }
        /* the rows the reader delivered are the reference's first ones */
        CHECK(rows <= ref_rows);
        if (read_ok) CHECK(rows == ref_rows);
        const char *mine = out.data + sizeof PREFIX - 1;
        size_t mlen = out.len - (sizeof PREFIX - 1);
        size_t rlen = 0; /* the reference's first `rows` lines */
        for (long k = 0; k < rows; k++) {
            const char *nl = memchr(ref.data + rlen, '\n', ref.len - rlen);
            CHECK(nl != NULL);
            rlen = (size_t)(nl - ref.data) + 1;
        }
        compare_lines(mine, mlen, ref.data ? ref.data : "", rlen, ncols);
        buf_free(&ref);
    }
    buf_free(&out);
    free(body);
    return 0;
}
