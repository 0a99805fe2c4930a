/* bulkparse_bench.c — rows per second of the bulk body readers (JSON array, NDJSON, CSV) for the
 * tick table (text, numeric, numeric, timestamptz), 10,000 rows per call, no database involved.
 * Build and run from the repository root:
 *   gcc -std=gnu11 -O2 -g -Isrc $(pkg-config --cflags jansson libpq) -o build/bulkparse_bench \
 *       bench/bulkparse_bench.c src/bulkparse.c src/pgtype.c src/jsonw.c src/buf.c src/util.c \
 *       $(pkg-config --libs jansson libpq) -lm
 *   build/bulkparse_bench [rows]        (default 200000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bulkparse.h"
#include "pgtype.h"
#include "util.h"

static char *const cols[] = {"pair", "bid", "ask", "ts"};
static const Oid types[] = {PGT_TEXT, PGT_NUMERIC, PGT_NUMERIC, PGT_TIMESTAMPTZ};

/* CPU time of this thread in microseconds: steadier than the wall clock on a busy machine. */
static uint64_t cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void run(const char *label, enum bulk_format fmt, const struct buf *body, long nrows)
{
    double best = 0, best_cpu = 0;
    size_t outlen = 0;
    for (int round = 0; round < 5; round++) {
        struct bulk_reader r;
        struct buf out = BUF_INIT;
        char err[256];
        uint64_t t0 = now_us(), c0 = cpu_us();
        if (bulk_reader_init(&r, fmt, body->data, body->len, cols, types, 4, err, sizeof err) != 0) {
            fprintf(stderr, "%s: %s\n", label, err);
            exit(1);
        }
        int n;
        while ((n = bulk_reader_next(&r, &out, 10000, err, sizeof err)) > 0) {
            outlen += out.len;
            buf_reset(&out); /* as the COPY driver does once a chunk is sent */
        }
        uint64_t t1 = now_us(), c1 = cpu_us();
        if (n < 0 || bulk_reader_rows(&r) != nrows) {
            fprintf(stderr, "%s: %s (%ld rows)\n", label, n < 0 ? err : "short", bulk_reader_rows(&r));
            exit(1);
        }
        double rate = nrows / ((t1 - t0) / 1e6);
        double cpu_rate = nrows / ((c1 - c0) / 1e6);
        if (rate > best) best = rate;
        if (cpu_rate > best_cpu) best_cpu = cpu_rate;
        bulk_reader_free(&r);
        buf_free(&out);
    }
    printf("%-7s %ld rows, %.1f MB body, %.1f MB COPY text: best of 5 %.0f rows/s (%.0f per CPU second)\n",
           label, nrows, body->len / 1e6, outlen / 5 / 1e6, best, best_cpu);
}

int main(int argc, char **argv)
{
    long nrows = argc > 1 ? atol(argv[1]) : 200000;
    struct buf json = BUF_INIT, ndjson = BUF_INIT, csv = BUF_INIT;
    const char *row =
        "{\"pair\":\"EURUSD\",\"bid\":1.08345,\"ask\":1.08361,\"ts\":\"2026-01-05T00:00:00.010Z\"}";
    buf_putc(&json, '[');
    buf_puts(&csv, "pair,bid,ask,ts\n");
    for (long i = 0; i < nrows; i++) {
        if (i) buf_putc(&json, ',');
        buf_puts(&json, row);
        buf_puts(&ndjson, row);
        buf_putc(&ndjson, '\n');
        buf_puts(&csv, "EURUSD,1.08345,1.08361,2026-01-05T00:00:00.010Z\n");
    }
    buf_putc(&json, ']');
    run("json", BULK_JSON, &json, nrows);
    run("ndjson", BULK_NDJSON, &ndjson, nrows);
    run("csv", BULK_CSV, &csv, nrows);
    buf_free(&json);
    buf_free(&ndjson);
    buf_free(&csv);
    return 0;
}
