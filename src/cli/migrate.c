/* migrate.c — `sluice migrate up|status`: applies the folder's NNNN_name.sql files in version
 * order, each in its own transaction, and records them with a SHA-256 of their bytes in
 * sluice_migrations. An advisory lock serialises concurrent migrators. Synchronous libpq: this
 * is a command-line tool, never the serving path. */
#include "migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "buf.h"
#include "conninfo.h"
#include "dbconnect.h"
#include "ownsql.h"
#include "util.h"

/* pg_advisory_lock key: the bytes of "sluice_m" read as a big-endian integer. */
#define LOCK_KEY           "8317151707346067309"
#define MAX_VERSION_DIGITS 18 /* keeps every version inside bigint */

/* One file of the folder. */
struct migration {
    long long version;
    char *file; /* "0001_forex.sql" */
    char *sql;  /* the file's bytes, NUL-terminated */
    size_t len;
    char checksum[2 * 32 + 1]; /* SHA-256, lower-case hex */
};

/* One row of sluice_migrations. */
struct applied {
    long long version;
    char *name;
    char *checksum;
    char *applied_at; /* ISO-8601, UTC */
};

struct run {
    const char *dir;
    struct migration *files;
    size_t nfiles;
    struct applied *done;
    size_t ndone;
    PGconn *conn;
    char *table;         /* schema-qualified sluice_migrations, safe to splice into SQL */
    const char *current; /* the file being applied, for server warnings */
};

/* ---- the folder ---- */

/* True for NNNN_name.sql (4 or more digits); the version is stored in *version. */
static bool parse_name(const char *name, long long *version, bool *too_long)
{
    size_t digits = strspn(name, "0123456789");
    size_t n = strlen(name);
    *too_long = false;
    if (digits < 4 || name[digits] != '_' || n < digits + 1 + 1 + 4) return false;
    if (strcmp(name + n - 4, ".sql") != 0) return false;
    if (digits > MAX_VERSION_DIGITS) {
        /* leading zeros do not count towards the size */
        size_t zeros = strspn(name, "0");
        if (digits - zeros > MAX_VERSION_DIGITS) {
            *too_long = true;
            return true;
        }
    }
    long long v = 0;
    for (size_t i = 0; i < digits; i++) v = v * 10 + (name[i] - '0');
    *version = v;
    return true;
}

static int read_whole(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return -1;
    struct buf b = BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, n);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        buf_free(&b);
        errno = EIO;
        return -1;
    }
    *len = b.len;
    *data = buf_steal(&b);
    return 0;
}

static void sha256_hex(const char *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        fprintf(stderr, "migrate: SHA-256 is not available\n");
        abort();
    }
    for (unsigned i = 0; i < mdlen; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int by_version(const void *a, const void *b)
{
    const struct migration *x = a, *y = b;
    if (x->version != y->version) return x->version < y->version ? -1 : 1;
    return strcmp(x->file, y->file);
}

/* Lists, reads and checksums the migration files of r->dir, sorted by version. Returns 0, or -1
 * after printing the reason (unreadable folder or file, duplicate or oversized version). */
static int scan_dir(struct run *r)
{
    DIR *d = opendir(r->dir);
    if (d == NULL) {
        fprintf(stderr, "migrate: cannot open migrations folder %s: %s\n", r->dir, strerror(errno));
        return -1;
    }
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        long long version;
        bool too_long;
        if (!parse_name(e->d_name, &version, &too_long)) continue;
        struct buf path = BUF_INIT;
        buf_printf(&path, "%s/%s", r->dir, e->d_name);
        struct stat st;
        if (stat(path.data, &st) < 0 || !S_ISREG(st.st_mode)) {
            buf_free(&path);
            continue;
        }
        if (too_long) {
            fprintf(stderr, "migrate: %s: the version number has more than %d digits\n", e->d_name,
                    MAX_VERSION_DIGITS);
            rc = -1;
        } else {
            if (r->nfiles == cap) {
                cap = cap ? 2 * cap : 16;
                r->files = xrealloc(r->files, cap * sizeof *r->files);
            }
            struct migration *m = &r->files[r->nfiles];
            memset(m, 0, sizeof *m);
            m->version = version;
            m->file = xstrdup(e->d_name);
            r->nfiles++;
            if (read_whole(path.data, &m->sql, &m->len) < 0) {
                fprintf(stderr, "migrate: cannot read %s: %s\n", path.data, strerror(errno));
                rc = -1;
            } else if (memchr(m->sql, '\0', m->len)) {
                fprintf(stderr, "migrate: %s: contains a NUL byte; a migration must be SQL text\n", m->file);
                rc = -1;
            } else {
                sha256_hex(m->sql, m->len, m->checksum);
            }
        }
        buf_free(&path);
    }
    closedir(d);
    if (rc < 0) return -1;
    if (r->nfiles > 1) qsort(r->files, r->nfiles, sizeof *r->files, by_version);
    for (size_t i = 1; i < r->nfiles; i++) {
        if (r->files[i].version == r->files[i - 1].version) {
            fprintf(stderr, "migrate: %s and %s have the same version number %lld\n", r->files[i - 1].file,
                    r->files[i].file, r->files[i].version);
            return -1;
        }
    }
    return 0;
}

/* ---- the database ---- */

/* Prints "migrate: <what>: <message>" for a failed result (or the connection's error if r is NULL). */
static void print_error(PGconn *conn, const PGresult *r, const char *what, const char *sql)
{
    const char *text = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (text == NULL && r) text = PQresultErrorMessage(r);
    if (text == NULL || *text == '\0') text = PQerrorMessage(conn);
    char *msg = xstrdup(text);
    dbconnect_one_line(msg);
    const char *pos = r ? PQresultErrorField(r, PG_DIAG_STATEMENT_POSITION) : NULL;
    if (pos && sql) {
        /* the position counts characters from 1; count UTF-8 lead bytes to find the line */
        long want = atol(pos), chars = 0, line = 1;
        for (const unsigned char *p = (const unsigned char *)sql; *p && chars < want; p++) {
            if ((*p & 0xC0) != 0x80) chars++;
            if (chars < want && *p == '\n') line++;
        }
        fprintf(stderr, "migrate: %s: %s (line %ld)\n", what, msg, line);
    } else {
        fprintf(stderr, "migrate: %s: %s\n", what, msg);
    }
    free(msg);
}

/* Runs sql that returns no rows we need. Returns 0, or -1 after printing "migrate: what: ...". */
static int exec_simple(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(res);
        return 0;
    }
    print_error(conn, res, what, NULL);
    PQclear(res);
    return -1;
}

/* Runs a migration file's SQL (possibly many statements). COPY FROM STDIN is refused; COPY TO
 * STDOUT output is discarded. Returns 0, or -1 after printing the first error. */
static int exec_script(PGconn *conn, const struct migration *m)
{
    if (!PQsendQuery(conn, m->sql)) {
        print_error(conn, NULL, m->file, NULL);
        return -1;
    }
    int rc = 0;
    PGresult *res;
    while ((res = PQgetResult(conn)) != NULL) {
        switch (PQresultStatus(res)) {
        case PGRES_COPY_IN:
            PQputCopyEnd(conn, "COPY FROM STDIN is not supported in a migration");
            break;
        case PGRES_COPY_OUT: {
            char *data;
            while (PQgetCopyData(conn, &data, 0) > 0) PQfreemem(data);
            break;
        }
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_EMPTY_QUERY:
            break;
        default:
            if (rc == 0) print_error(conn, res, m->file, m->sql);
            rc = -1;
            break;
        }
        PQclear(res);
    }
    if (rc == 0 && PQstatus(conn) != CONNECTION_OK) {
        print_error(conn, NULL, m->file, NULL);
        rc = -1;
    }
    return rc;
}

/* Server warnings go to stderr on one line, naming the file being applied. */
static void on_notice(void *arg, const PGresult *res)
{
    struct run *r = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    char *line = xstrdup(msg ? msg : PQresultErrorMessage(res));
    dbconnect_one_line(line);
    fprintf(stderr, "migrate: %s%s%s: %s\n", r->current ? r->current : "", r->current ? ": " : "",
            sev ? sev : "NOTICE", line);
    free(line);
}

static int connect_db(struct run *r, const char *conninfo)
{
    char err[512];
    r->conn = dbconnect(conninfo, "sluice migrate", 10, err, sizeof err); /* a silent host: 10 s */
    if (r->conn == NULL) {
        char *url = url_redact(conninfo); /* which database: the primary pool's, or the first */
        fprintf(stderr, "migrate: cannot connect to %s: %s\n",
                url[0] ? url : "libpq's defaults (PG* variables)", err);
        free(url);
        return -1;
    }
    PQsetNoticeReceiver(r->conn, on_notice, r);
    return exec_simple(r->conn, "SET client_min_messages = warning", "cannot configure the session");
}

/* Sets r->table to the qualified name of sluice_migrations, creating it when create is set.
 * Returns 1 when the table exists, 0 when it does not (create unset), -1 on error. */
static int find_table(struct run *r, bool create)
{
    if (create && exec_simple(r->conn,
                              "CREATE TABLE IF NOT EXISTS sluice_migrations ("
                              " version bigint PRIMARY KEY,"
                              " name text NOT NULL,"
                              " checksum text NOT NULL,"
                              " applied_at timestamptz NOT NULL DEFAULT now())",
                              "cannot create table sluice_migrations") < 0)
        return -1;
    /* qualified once, so that a migration changing search_path cannot redirect the bookkeeping */
    PGresult *res = PQexec(r->conn, "SELECT format('%I.%I', n.nspname, c.relname)"
                                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                    " WHERE c.oid = to_regclass('sluice_migrations')");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        print_error(r->conn, res, "cannot find table sluice_migrations", NULL);
        PQclear(res);
        return -1;
    }
    int found = PQntuples(res) == 1;
    if (found) r->table = xstrdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return found;
}

static int load_applied(struct run *r)
{
    struct buf q = BUF_INIT;
    buf_printf(&q,
               "SELECT version, name, checksum,"
               " to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
               " FROM %s ORDER BY version",
               r->table);
    PGresult *res = PQexec(r->conn, q.data);
    buf_free(&q);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        print_error(r->conn, res, "cannot read sluice_migrations", NULL);
        PQclear(res);
        return -1;
    }
    r->ndone = (size_t)PQntuples(res);
    r->done = xcalloc(r->ndone ? r->ndone : 1, sizeof *r->done);
    for (size_t i = 0; i < r->ndone; i++) {
        r->done[i].version = strtoll(PQgetvalue(res, (int)i, 0), NULL, 10);
        r->done[i].name = xstrdup(PQgetvalue(res, (int)i, 1));
        r->done[i].checksum = xstrdup(PQgetvalue(res, (int)i, 2));
        r->done[i].applied_at = xstrdup(PQgetvalue(res, (int)i, 3));
    }
    PQclear(res);
    return 0;
}

static const struct applied *applied_version(const struct run *r, long long version)
{
    for (size_t i = 0; i < r->ndone; i++)
        if (r->done[i].version == version) return &r->done[i];
    return NULL;
}

static const struct migration *file_version(const struct run *r, long long version)
{
    for (size_t i = 0; i < r->nfiles; i++)
        if (r->files[i].version == version) return &r->files[i];
    return NULL;
}

/* Applies one file in its own transaction together with its record. Returns 0 or -1 (rolled back). */
static int apply_one(struct run *r, const struct migration *m)
{
    r->current = m->file;
    if (exec_simple(r->conn, "BEGIN", m->file) < 0) return -1;
    if (exec_script(r->conn, m) < 0) goto rollback;

    /* a file that ends the transaction itself has committed its work: record it all the same */
    bool own_commit = PQtransactionStatus(r->conn) == PQTRANS_IDLE;
    if (own_commit)
        fprintf(stderr,
                "migrate: %s: warning: the file ends the transaction itself, so it did not run atomically\n",
                m->file);

    char version[32];
    snprintf(version, sizeof version, "%lld", m->version);
    const char *params[] = {version, m->file, m->checksum};
    struct buf q = BUF_INIT;
    buf_printf(&q, "INSERT INTO %s (version, name, checksum) VALUES ($1, $2, $3)", r->table);
    PGresult *res = PQexecParams(r->conn, q.data, 3, NULL, params, NULL, NULL, 0);
    buf_free(&q);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        print_error(r->conn, res, m->file, NULL);
        PQclear(res);
        goto rollback;
    }
    PQclear(res);
    if (!own_commit && exec_simple(r->conn, "COMMIT", m->file) < 0) goto rollback;
    r->current = NULL;
    return 0;

rollback:
    r->current = NULL;
    if (PQtransactionStatus(r->conn) != PQTRANS_IDLE) {
        PGresult *rb = PQexec(r->conn, "ROLLBACK");
        PQclear(rb);
    }
    return -1;
}

static int cmd_up(struct run *r)
{
    if (exec_simple(r->conn, "SELECT pg_advisory_lock(" LOCK_KEY ") " OWN_SQL_MARK,
                    "cannot take the migration lock") < 0)
        return 1;
    /* everything below runs under the lock, so a concurrent migrator sees our records */
    if (find_table(r, true) != 1 || load_applied(r) < 0) return 1;

    int edited = 0;
    for (size_t i = 0; i < r->ndone; i++) {
        const struct applied *a = &r->done[i];
        const struct migration *m = file_version(r, a->version);
        if (m == NULL) {
            fprintf(stderr, "migrate: warning: %s (version %lld) was applied on %s but its file is missing\n",
                    a->name, a->version, a->applied_at);
        } else if (strcmp(m->checksum, a->checksum) != 0) {
            fprintf(stderr,
                    "migrate: %s was edited after it was applied (checksum differs); add a new migration "
                    "instead\n",
                    m->file);
            edited++;
        }
    }
    if (edited) return 1;

    size_t applied = 0;
    for (size_t i = 0; i < r->nfiles; i++) {
        const struct migration *m = &r->files[i];
        if (applied_version(r, m->version)) continue;
        if (apply_one(r, m) < 0) return 1;
        printf("applied %s\n", m->file);
        fflush(stdout);
        applied++;
    }
    if (applied == 0) printf("up to date\n");
    PGresult *res = PQexec(r->conn, "SELECT pg_advisory_unlock(" LOCK_KEY ") " OWN_SQL_MARK);
    PQclear(res);
    return 0;
}

static int cmd_status(struct run *r)
{
    int found = find_table(r, false);
    if (found < 0) return 1;
    if (found && load_applied(r) < 0) return 1;
    if (r->nfiles == 0 && r->ndone == 0) {
        printf("no migrations in %s\n", r->dir);
        return 0;
    }
    int rc = 0;
    size_t i = 0, j = 0;
    /* both lists are sorted by version: merge them */
    while (i < r->nfiles || j < r->ndone) {
        const struct migration *m = i < r->nfiles ? &r->files[i] : NULL;
        const struct applied *a = j < r->ndone ? &r->done[j] : NULL;
        if (m && (!a || m->version < a->version)) {
            printf("pending  %s\n", m->file);
            i++;
        } else if (a && (!m || a->version < m->version)) {
            printf("missing  %s  %s\n", a->name, a->applied_at);
            j++;
        } else {
            bool same = strcmp(m->checksum, a->checksum) == 0;
            printf("%s  %s  %s\n", same ? "applied" : "edited ", m->file, a->applied_at);
            if (!same) rc = 1;
            i++;
            j++;
        }
    }
    return rc;
}

int migrate_run(const char *conninfo, const char *dir, const char *command)
{
    bool up = command == NULL || strcmp(command, "up") == 0;
    if (!up && strcmp(command, "status") != 0) {
        fprintf(stderr, "migrate: unknown command \"%s\" (expected up or status)\n", command);
        return 1;
    }
    struct run r = {.dir = dir ? dir : "migrations"};
    int rc = 1;
    if (scan_dir(&r) == 0 && connect_db(&r, conninfo) == 0) rc = up ? cmd_up(&r) : cmd_status(&r);
    fflush(stdout);

    if (r.conn) PQfinish(r.conn); /* also releases the advisory lock on every path */
    for (size_t i = 0; i < r.nfiles; i++) {
        free(r.files[i].file);
        free(r.files[i].sql);
    }
    free(r.files);
    for (size_t i = 0; i < r.ndone; i++) {
        free(r.done[i].name);
        free(r.done[i].checksum);
        free(r.done[i].applied_at);
    }
    free(r.done);
    free(r.table);
    return rc;
}
