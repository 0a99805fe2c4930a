/* copy.c — POST /bulk/{name}. The body is read incrementally (bulkparse.c) and streamed into
 * COPY FROM STDIN on a leased connection (pool_acquire): one COPY per chunk of chunk_rows rows,
 * one transaction for the whole body (atomic) or one per chunk. upsert / update / delete copy
 * into a staging table first and merge with one statement per chunk. Between batches the worker
 * goes back to its event loop, so a large body never stalls other requests. */
#include "copy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "bulkparse.h"
#include "cache.h"
#include "call.h"
#include "copybin.h"
#include "http.h"
#include "reqinfo.h"
#include "jsonw.h"
#include "log.h"
#include "metrics.h"
#include "pgconn.h"
#include "reqlife.h"
#include "util.h"
#include "walpos.h"
#include "worker.h"

#define BATCH_ROWS 1000 /* rows encoded per loop turn */

enum step {
    ST_DESCRIBE, /* learning the column types */
    ST_BEGIN,    /* BEGIN of the body (atomic) or of the chunk */
    ST_TYPES,    /* the column types again, inside the transaction, before a binary COPY */
    ST_STAGE,    /* creating the staging table */
    ST_COPY,     /* COPY sent, waiting for COPY IN, then streaming */
    ST_COPIED,   /* COPY ended, waiting for its result */
    ST_MERGE,
    ST_TRUNCATE,
    ST_COMMIT,
    ST_ROLLBACK,
};

struct bulkreq {
    struct reqlife life; /* first: the request's lifecycle */
    struct bulk_def *d;
    struct pool_lease lease; /* while waiting for a connection */
    struct pgconn *conn;     /* once taken */
    struct pgconn_owner owner;
    enum bulk_format format;
    struct bulk_reader rd;
    bool reader_open, eof;
    enum step step;
    struct buf data;
    /* An atomic insert whose column types allow it streams in the binary format (copybin.h),
     * which the server reads much faster than text. From the first line that does not convert,
     * the rest of the body goes as text: that COPY ends, and a text COPY in the same transaction
     * starts with the lines not sent (carry). */
    bool binary;
    Oid *types; /* this load's column types: the reader's and the binary COPY's */
    bool types_changed;
    struct buf bin;
    size_t carry_off; /* the unsent lines are data[carry_off..len) */
    long carry_rows;
    long chunk_first_row, chunk_sent; /* rows of the current chunk */
    int chunks, committed_chunks;
    long rows_committed, affected;
    uint64_t lsn; /* the WAL position after the last COMMIT (the answer's Sluice-LSN) */
    /* the first error; answered once the connection is clean again */
    int err_status;
    char err[320];
    char sqlstate[6];
    long err_row;
    char err_column[64];
};

static void pump(struct bulkreq *br);
static bool streams_whole_body(const struct bulk_def *d);
static bool binary_fits(const struct bulk_def *d, const Oid *types);

/* The load ends (committed, failed or broken off, perhaps after some chunks committed): the
 * result cache drops the table before anyone is answered. */
static void wrote(struct bulkreq *br)
{
    cache_wrote(&br->d->table_id, 1, br->lsn);
}

/* The load ended early: the connection is closed, so the server rolls back what was not
 * committed. */
static void cleanup(struct reqlife *life)
{
    struct bulkreq *br = (struct bulkreq *)life;
    wrote(br);
    pool_cancel_lease(&br->lease);
    if (br->conn) pgconn_discard(br->conn);
    br->conn = NULL;
}

static void dispose(struct reqlife *life)
{
    struct bulkreq *br = (struct bulkreq *)life;
    if (br->reader_open) bulk_reader_free(&br->rd);
    buf_free(&br->data);
    buf_free(&br->bin);
    free(br->types);
}

static void on_client_gone(struct reqlife *life);
static const struct reqlife_kind copy_kind = {
    .cleanup = cleanup, .on_client_gone = on_client_gone, .dispose = dispose};

static void detach(struct bulkreq *br)
{
    if (br->conn) pgconn_release(br->conn);
    br->conn = NULL;
}

static void reply_error(struct bulkreq *br)
{
    reqlife_done(&br->life);
    wrote(br);
    struct buf *b = &br->life.w->out;
    const char *code = http_error_code(br->err_status);
    buf_reset(b);
    buf_puts(b, "{\"error\":{\"code\":");
    jsonw_string(b, code, strlen(code));
    buf_puts(b, ",\"message\":");
    jsonw_string(b, br->err, strlen(br->err));
    buf_puts(b, ",\"bulk\":");
    jsonw_string(b, br->d->name, strlen(br->d->name));
    if (br->sqlstate[0]) buf_printf(b, ",\"sqlstate\":\"%s\"", br->sqlstate);
    if (br->err_row > 0) buf_printf(b, ",\"row\":%ld", br->err_row);
    if (br->err_column[0]) {
        buf_puts(b, ",\"column\":");
        jsonw_string(b, br->err_column, strlen(br->err_column));
    }
    buf_printf(b, ",\"committed_chunks\":%d,\"rows_committed\":%ld}}", br->committed_chunks,
               br->rows_committed);
    if (br->err_status == 503)
        http_retry_after(br->life.req, pool_retry_after(&br->life.w->pools[br->d->pool_idx]));
    br->d->errors++;
    metrics_bulk_done(br->life.w, br->d, false, br->rows_committed, br->life.started_us);
    http_send_json(br->life.req, br->err_status, b->data, b->len);
}

static void reply_ok(struct bulkreq *br)
{
    reqlife_done(&br->life);
    wrote(br);
    struct buf *b = &br->life.w->out;
    buf_reset(b);
    buf_printf(b, "{\"rows\":%ld,\"chunks\":%d,\"committed_chunks\":%d,\"took_ms\":%.1f", br->rows_committed,
               br->chunks, br->committed_chunks, (double)(now_us() - br->life.started_us) / 1000.0);
    if (br->d->mode != BULK_INSERT) buf_printf(b, ",\"affected\":%ld", br->affected);
    buf_putc(b, '}');
    br->d->calls++;
    br->d->rows += (uint64_t)br->rows_committed;
    metrics_bulk_done(br->life.w, br->d, true, br->rows_committed, br->life.started_us);
    http_set_lsn(br->life.req, br->lsn);
    http_send_json(br->life.req, 200, b->data, b->len);
}

/* Records the first error: the client's (status given) or the server's (from r). */
static void fail(struct bulkreq *br, int status, const char *msg, const PGresult *r)
{
    if (br->err_status) return;
    if (r != NULL) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        const char *context = PQresultErrorField(r, PG_DIAG_CONTEXT);
        status = call_status_for_sqlstate(state);
        snprintf(br->sqlstate, sizeof br->sqlstate, "%s", state ? state : "");
        const char *line = context ? strstr(context, ", line ") : NULL;
        if (line && br->step == ST_COPIED) br->err_row = br->chunk_first_row + strtol(line + 7, NULL, 10) - 1;
        /* "COPY t, line 3, column bid: ..." names the column too */
        const char *col = line ? strstr(line, ", column ") : NULL;
        if (col && br->step == ST_COPIED) {
            col += 9;
            size_t n = strcspn(col, ":");
            snprintf(br->err_column, sizeof br->err_column, "%.*s", (int)(n < 63 ? n : 63), col);
        }
        if (status == 500) {
            const char *outer = reqinfo_enter(br->life.req);
            log_printf(LOG_ERROR, "bulk %s failed: %s (SQLSTATE %s)", br->d->name, primary ? primary : "?",
                       state ? state : "?");
            reqinfo_leave(outer);
            msg = "internal error";
        } else {
            msg = primary ? primary : "database error";
        }
    }
    br->err_status = status;
    snprintf(br->err, sizeof br->err, "%s", msg);
}

static void begin(struct bulkreq *br)
{
    br->step = ST_BEGIN;
    pgconn_begin(br->conn); /* a failure reaches on_lost */
}

static void send_step(struct bulkreq *br, enum step step, const char *sql)
{
    br->step = step;
    pgconn_send(br->conn, sql, 0, NULL); /* a failure reaches on_lost */
}

/* COMMIT, and in the same round trip the WAL position it reached (its own result). */
static void commit(struct bulkreq *br)
{
    br->step = ST_COMMIT;
    pgconn_send_simple(br->conn, WALPOS_COMMIT_SQL); /* a failure reaches on_lost */
}

/* After an error: roll back if a transaction is open, then answer. */
static void finish_failed(struct bulkreq *br)
{
    if (br->conn && PQtransactionStatus(br->conn->pg) != PQTRANS_IDLE && br->step != ST_ROLLBACK) {
        send_step(br, ST_ROLLBACK, "ROLLBACK");
        return;
    }
    detach(br);
    reply_error(br);
}

static void start_chunk(struct bulkreq *br)
{
    br->chunk_first_row = bulk_reader_rows(&br->rd) - br->carry_rows + 1;
    br->chunk_sent = 0;
    if (!br->d->atomic) {
        begin(br);
        return;
    }
    if (br->d->sql_stage && br->chunks == 0)
        send_step(br, ST_STAGE, br->d->sql_stage);
    else
        send_step(br, ST_COPY, br->binary ? br->d->sql_copy_binary : br->d->sql_copy);
}

static void end_body(struct bulkreq *br)
{
    if (br->d->atomic)
        commit(br);
    else {
        detach(br);
        reply_ok(br);
    }
}

/* Starts reading the body with br->types. Returns 0, or -1 once the client's error is on its way. */
static int open_reader(struct bulkreq *br)
{
    char err[256];
    struct bulk_def *d = br->d;
    br->reader_open = true;
    if (bulk_reader_init(&br->rd, br->format, br->life.req->entity.base, br->life.req->entity.len, d->columns,
                         br->types, d->ncolumns, err, sizeof err) == 0)
        return 0;
    fail(br, 400, err, NULL);
    finish_failed(br);
    return -1;
}

/* One step finished without error (its NULL result arrived). */
static void next_step(struct bulkreq *br)
{
    struct bulk_def *d = br->d;
    switch (br->step) {
    case ST_DESCRIBE:
        if (!d->described) {
            fail(br, 500, "cannot learn the column types", NULL);
            finish_failed(br);
            return;
        }
        br->types = xmalloc(sizeof(Oid) * (size_t)d->ncolumns);
        memcpy(br->types, d->types, sizeof(Oid) * (size_t)d->ncolumns);
        if (open_reader(br) != 0) return;
        if (d->atomic)
            begin(br);
        else
            start_chunk(br);
        return;
    case ST_BEGIN:
        if (d->atomic) {
            /* Binary values are not checked against the column's type: the types are read
             * again under the transaction's lock, which no ALTER TABLE passes until COMMIT. */
            if (binary_fits(d, br->types))
                send_step(br, ST_TYPES, d->sql_describe);
            else
                start_chunk(br);
            return;
        }
        if (d->sql_stage)
            send_step(br, ST_STAGE, d->sql_stage);
        else
            send_step(br, ST_COPY, d->sql_copy);
        return;
    case ST_TYPES:
        if (br->types_changed) { /* nothing read yet: the reader starts again with them */
            bulk_reader_free(&br->rd);
            br->reader_open = false;
            if (open_reader(br) != 0) return;
        }
        br->binary = binary_fits(d, br->types);
        start_chunk(br);
        return;
    case ST_STAGE:
        send_step(br, ST_COPY, d->sql_copy);
        return;
    case ST_COPY:
        return; /* COPY IN is handled as it arrives */
    case ST_COPIED:
        if (streams_whole_body(d)) {
            long sent = bulk_reader_rows(&br->rd) - br->carry_rows;
            br->chunks = (int)((sent + d->chunk_rows - 1) / d->chunk_rows);
        } else if (br->chunk_sent > 0)
            br->chunks++;
        if (d->sql_merge && br->chunk_sent > 0) {
            send_step(br, ST_MERGE, d->sql_merge);
            return;
        }
        /* fall through */
    case ST_MERGE:
        if (br->step == ST_MERGE && d->atomic && !br->eof) {
            send_step(br, ST_TRUNCATE, "TRUNCATE sluice_bulk_stage");
            return;
        }
        /* fall through */
    case ST_TRUNCATE:
        if (!d->atomic) {
            commit(br);
            return;
        }
        if (br->eof)
            end_body(br);
        else
            start_chunk(br);
        return;
    case ST_COMMIT:
        if (d->atomic) {
            br->committed_chunks = br->chunks;
            br->rows_committed = bulk_reader_rows(&br->rd);
            detach(br);
            reply_ok(br);
            return;
        }
        if (br->chunk_sent > 0) br->committed_chunks++;
        br->rows_committed = bulk_reader_rows(&br->rd);
        if (br->eof)
            end_body(br);
        else
            start_chunk(br);
        return;
    case ST_ROLLBACK:
        detach(br);
        reply_error(br);
        return;
    }
}

static void on_result(void *arg, PGresult *r)
{
    struct bulkreq *br = arg;
    if (r == NULL) {
        if (br->err_status)
            finish_failed(br);
        else if (br->step != ST_COPY)
            next_step(br);
        return;
    }
    switch (PQresultStatus(r)) {
    case PGRES_COPY_IN:
        pump(br);
        break;
    case PGRES_TUPLES_OK:
        if (br->step == ST_DESCRIBE) { /* loads under way read their own copy */
            free(br->d->types);
            br->d->types = xcalloc((size_t)br->d->ncolumns, sizeof(Oid));
            for (int i = 0; i < br->d->ncolumns && i < PQnfields(r); i++) br->d->types[i] = PQftype(r, i);
            br->d->described = PQnfields(r) == br->d->ncolumns;
        } else if (br->step == ST_TYPES) {
            for (int i = 0; i < br->d->ncolumns && i < PQnfields(r); i++) {
                Oid t = PQftype(r, i);
                if (t != br->types[i]) br->types_changed = true;
                br->types[i] = br->d->types[i] = t; /* later loads start from these */
            }
            if (PQnfields(r) != br->d->ncolumns) fail(br, 500, "the table's columns changed", NULL);
        } else if (br->step == ST_COMMIT) {
            br->lsn = walpos_of(r);
        }
        break;
    case PGRES_COMMAND_OK:
        if (br->step == ST_MERGE) br->affected += strtol(PQcmdTuples(r), NULL, 10);
        break;
    default:
        fail(br, 500, NULL, r);
        break;
    }
    PQclear(r);
}

/* Streams rows of the current chunk: one batch per loop turn. */
/* One COPY streams the whole body when nothing has to happen between chunks (an atomic insert):
 * the server then works while the gateway parses, with no round trip per chunk. chunk_rows still
 * sets the reply's chunk count. Other loads end their COPY at each chunk. */
static bool streams_whole_body(const struct bulk_def *d)
{
    return d->atomic && d->mode == BULK_INSERT;
}

/* Every column's type converts (copybin.h), and one COPY takes the whole body. */
static bool binary_fits(const struct bulk_def *d, const Oid *types)
{
    if (!streams_whole_body(d) || d->sql_copy_binary == NULL) return false;
    for (int c = 0; c < d->ncolumns; c++)
        if (!copybin_supports(types[c])) return false;
    return true;
}

/* Converts the text lines of data into br->bin (after the header on the COPY's first batch).
 * Returns the lines converted; when one does not convert, the rest stay in data from carry_off
 * and are counted in carry_rows. */
static int to_binary(struct bulkreq *br, int lines)
{
    buf_reset(&br->bin);
    if (br->chunk_sent == 0) copybin_header(&br->bin);
    const char *p = br->data.data, *end = p + br->data.len;
    for (int i = 0; i < lines; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (copybin_row(p, (size_t)(nl - p), br->types, br->d->ncolumns, &br->bin) != 0) {
            br->carry_off = (size_t)(p - br->data.data);
            br->carry_rows = lines - i;
            return i;
        }
        p = nl + 1;
    }
    return lines;
}

static void pump(struct bulkreq *br)
{
    char err[256];
    int n;
    if (br->carry_rows > 0) { /* the text COPY after a binary one begins with what it left */
        n = (int)br->carry_rows;
        memmove(br->data.data, br->data.data + br->carry_off, br->data.len - br->carry_off);
        br->data.len -= br->carry_off;
        br->carry_rows = 0;
    } else {
        buf_reset(&br->data);
        bool whole = streams_whole_body(br->d);
        long room = whole ? BATCH_ROWS : br->d->chunk_rows - br->chunk_sent;
        n = bulk_reader_next(&br->rd, &br->data, room < BATCH_ROWS ? (int)room : BATCH_ROWS, err, sizeof err);
    }
    if (n < 0) {
        fail(br, 400, err, NULL);
        if (strncmp(err, "row ", 4) == 0) br->err_row = strtol(err + 4, NULL, 10);
        br->step = ST_COPIED;
        pgconn_end_copy(br->conn, "invalid row"); /* its error result is expected, not reported */
        return;
    }
    if (n == 0) br->eof = true;
    bool switching = false;
    if (br->binary) {
        int converted = to_binary(br, n);
        switching = converted < n;
        if (n == 0 || switching) copybin_trailer(&br->bin);
        if (br->bin.len > 0 && pgconn_put_copy(br->conn, br->bin.data, br->bin.len) != 0) return;
        n = converted;
        if (switching) br->binary = false; /* the next COPY of this body is text */
    } else if (n > 0 && pgconn_put_copy(br->conn, br->data.data, br->data.len) != 0) {
        return;
    }
    br->chunk_sent += n;
    if (n == 0 || switching || (!streams_whole_body(br->d) && br->chunk_sent >= br->d->chunk_rows)) {
        br->step = ST_COPIED;
        pgconn_end_copy(br->conn, NULL);
        return;
    }
    int f = pgconn_flush(br->conn);
    /* Either way the next batch waits for the socket to be writable: a turn of the event loop,
     * so other requests get in between batches, without a timer's delay. */
    if (f == 0) pgconn_yield(br->conn);
    /* f == 1: on_writable resumes; f < 0: on_lost follows */
}

static void on_writable(void *arg)
{
    struct bulkreq *br = arg;
    if (br->step == ST_COPY) pump(br);
}

static void on_lost(void *arg, const char *why)
{
    struct bulkreq *br = arg;
    br->conn = NULL;
    br->err_status = 0; /* the lost connection is what the client must hear about */
    fail(br, 503, "the database connection was lost; nothing after the last committed chunk was applied",
         NULL);
    reply_error(br);
}

static void on_conn(void *arg, struct pgconn *c, const char *err)
{
    struct bulkreq *br = arg;
    if (c == NULL) {
        fail(br, 503, err, NULL);
        reply_error(br);
        return;
    }
    br->conn = c;
    pgconn_own(br->conn, &br->owner);
    if (br->d->described) {
        br->step = ST_DESCRIBE;
        next_step(br);
    } else {
        send_step(br, ST_DESCRIBE, br->d->sql_describe);
    }
}

static bool content_type_is(h2o_req_t *req, const char *type)
{
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i < 0) return false;
    h2o_iovec_t v = req->headers.entries[i].value;
    size_t n = 0;
    while (n < v.len && v.base[n] != ';' && v.base[n] != ' ') n++;
    return h2o_lcstris(v.base, n, type, strlen(type));
}

/* The client hung up mid-load (cleanup closed the connection): the answer, with what was
 * committed, only makes h2o free the request. */
static void on_client_gone(struct reqlife *life)
{
    struct bulkreq *br = (struct bulkreq *)life;
    br->err_status = 0;
    fail(br, 503, "the client closed the connection", NULL);
    reply_error(br);
}

int copy_handle(struct worker *w, h2o_req_t *req, struct bulk_def *d)
{
    if (!auth_allow(w, req, d->auth, NULL, 0, d->name)) return 0;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"))) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("POST"));
        http_send_error(req, 405, "method_not_allowed", "bulk endpoints take POST", NULL, NULL);
        return 0;
    }
    enum bulk_format format;
    if (content_type_is(req, "application/json"))
        format = BULK_JSON;
    else if (content_type_is(req, "application/x-ndjson"))
        format = BULK_NDJSON;
    else if (content_type_is(req, "text/csv"))
        format = BULK_CSV;
    else {
        http_send_error(req, 415, "unsupported_media_type",
                        "the body must be application/json, application/x-ndjson or text/csv", NULL, NULL);
        return 0;
    }

    struct bulkreq *br = reqlife_new(w, req, sizeof *br, &copy_kind, d->reg);
    br->d = d;
    br->format = format;
    br->owner = (struct pgconn_owner){on_result, on_writable, on_lost, br};
    reqlife_wait(&br->life, 0); /* no deadline: a load takes as long as its body */

    char err[200];
    reqinfo_set_pool(req, worker_config(w)->pools[d->pool_idx].name);
    if (pool_acquire(&w->pools[d->pool_idx], &br->lease, on_conn, br, err, sizeof err) != 0) {
        fail(br, 503, err, NULL);
        reply_error(br);
    }
    return 0;
}
