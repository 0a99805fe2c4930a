/* fakepg.c — the scripted PostgreSQL server of fakepg.h: one thread, one poll() loop over the
 * listening socket, a wake-up pipe and every client. The thread holds the mutex except while it
 * waits in poll(), so the control functions see and change a consistent state. */
#define _GNU_SOURCE
#include "fakepg.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SSL_CODE    80877103
#define GSSENC_CODE 80877104
#define CANCEL_CODE 80877102
#define MAX_MSG     (64u << 20) /* larger lengths are taken for garbage: the client is closed */
#define TEXT_OID    25

/* A growable byte buffer; p is malloc'd (or NULL when empty and never used). */
struct buf {
    char *p;
    size_t len, cap;
};

/* A prepared statement (sql, nparams, types) or a portal (sql, arg) under its name. */
struct named {
    struct named *next;
    char *name, *sql;
    int nparams;
    uint32_t *types; /* nparams entries, 0 where the client left the type open */
    char *arg;       /* a portal's first parameter; NULL for SQL NULL or none */
};

struct client {
    struct client *next;
    int fd;
    bool started;      /* the StartupMessage was answered */
    bool dead;         /* to be closed at the end of this round */
    bool skipping;     /* an extended-protocol error: messages are ignored until Sync */
    bool copying;      /* in COPY FROM STDIN */
    bool delay_done;   /* the statement about to run has had its sleep: run it now */
    bool cancelled;    /* a CancelRequest arrived during the sleep */
    bool standby_sent; /* the in_hot_standby value this client was last told */
    char txn;          /* 'I' idle, 'T' in a transaction block, 'E' in a failed one */
    int32_t pid, secret;
    struct buf in, out;
    size_t in_off; /* start of the first unprocessed message in `in` */
    struct named *stmts, *portals;
    char *query;    /* a simple query being run (its statements from qpos on are still to run) */
    size_t qpos;    /* ... kept while a statement sleeps or COPY data is read */
    bool q_ran;     /* ... it held a statement (else the answer is EmptyQueryResponse) */
    int64_t wake;   /* while non-zero, the client sleeps until this CLOCK_MONOTONIC ms */
    long copy_rows; /* newline-terminated lines received by the COPY */
};

struct fakepg {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int lfd, wake[2], port;
    char conninfo[128];
    bool stop, refuse, standby;
    unsigned kill_gen, kill_done; /* fakepg_kill_all asks (gen) and waits until it is done */
    struct fakepg_stats st;
    struct client *clients;
    int32_t next_pid;
    struct pollfd *pfd; /* poll() set, with the client each entry from 2 on belongs to */
    struct client **pcl;
    size_t pcap;
};

enum outcome { DONE, FAILED, SUSPENDED, COPYING, DIED };

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL) abort();
    return p;
}

/* A malloc'd copy of the n bytes at s, NUL-terminated. */
static char *xstrndup(const char *s, size_t n)
{
    char *d = strndup(s, n);
    if (d == NULL) abort();
    return d;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- writing messages ---------------------------------------------------------------------- */

static void put(struct buf *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 256;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put8(struct buf *b, uint8_t v)
{
    put(b, &v, 1);
}

static void put16(struct buf *b, uint16_t v)
{
    v = htons(v);
    put(b, &v, 2);
}

static void put32(struct buf *b, uint32_t v)
{
    v = htonl(v);
    put(b, &v, 4);
}

static void putstr(struct buf *b, const char *s)
{
    put(b, s, strlen(s) + 1);
}

/* Starts a message of the given type; returns where its length goes, for msg_end. */
static size_t msg_begin(struct buf *b, char type)
{
    put8(b, (uint8_t)type);
    size_t at = b->len;
    put32(b, 0);
    return at;
}

static void msg_end(struct buf *b, size_t at)
{
    uint32_t n = htonl((uint32_t)(b->len - at));
    memcpy(b->p + at, &n, 4);
}

/* A message whose body is a list of strings (ParameterStatus, CommandComplete). */
static void msg_strings(struct buf *b, char type, const char *s1, const char *s2)
{
    size_t at = msg_begin(b, type);
    putstr(b, s1);
    if (s2 != NULL) putstr(b, s2);
    msg_end(b, at);
}

static void msg_empty(struct buf *b, char type)
{
    msg_end(b, msg_begin(b, type));
}

static void row_description(struct buf *b)
{
    size_t at = msg_begin(b, 'T');
    put16(b, 1);
    putstr(b, "v");
    put32(b, 0);            /* table oid */
    put16(b, 0);            /* column number */
    put32(b, TEXT_OID);     /* type */
    put16(b, (uint16_t)-1); /* typlen: variable */
    put32(b, (uint32_t)-1); /* typmod */
    put16(b, 0);            /* text format */
    msg_end(b, at);
}

/* A DataRow of one column; v NULL is SQL NULL. */
static void data_row(struct buf *b, const char *v)
{
    size_t at = msg_begin(b, 'D');
    put16(b, 1);
    put32(b, v ? (uint32_t)strlen(v) : (uint32_t)-1);
    if (v != NULL) put(b, v, strlen(v));
    msg_end(b, at);
}

/* Sends ReadyForQuery, preceded by in_hot_standby when it changed since the client was told. */
static void ready(struct fakepg *f, struct client *c)
{
    if (c->standby_sent != f->standby) {
        c->standby_sent = f->standby;
        msg_strings(&c->out, 'S', "in_hot_standby", f->standby ? "on" : "off");
    }
    size_t at = msg_begin(&c->out, 'Z');
    put8(&c->out, (uint8_t)c->txn);
    msg_end(&c->out, at);
}

/* Sends an ErrorResponse; a transaction block fails with it, and outside a simple query the
 * extended protocol skips to the next Sync. Returns FAILED for the caller to pass on. */
static enum outcome error(struct client *c, const char *severity, const char *code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *fields[] = {"S", severity, "V", severity, "C", code, "M", msg};
    size_t at = msg_begin(&c->out, 'E');
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i += 2) {
        put8(&c->out, (uint8_t)fields[i][0]);
        putstr(&c->out, fields[i + 1]);
    }
    put8(&c->out, 0);
    msg_end(&c->out, at);
    if (c->txn == 'T') c->txn = 'E';
    if (c->query == NULL) c->skipping = true;
    return FAILED;
}

/* --- reading messages ---------------------------------------------------------------------- */

/* A cursor over a message body; `bad` is set when a read went past its end. */
struct rd {
    const unsigned char *p;
    size_t n;
    bool bad;
};

static const unsigned char *get(struct rd *r, size_t n)
{
    if (r->bad || r->n < n) {
        r->bad = true;
        return NULL;
    }
    const unsigned char *p = r->p;
    r->p += n;
    r->n -= n;
    return p;
}

static uint32_t get32(struct rd *r)
{
    const unsigned char *p = get(r, 4);
    return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : 0;
}

static uint16_t get16(struct rd *r)
{
    const unsigned char *p = get(r, 2);
    return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

/* A NUL-terminated string inside the body (pointing into it), or "" with `bad` set. */
static const char *getstr(struct rd *r)
{
    const unsigned char *end = r->bad ? NULL : memchr(r->p, 0, r->n);
    if (end == NULL) {
        r->bad = true;
        return "";
    }
    return (const char *)get(r, (size_t)(end - r->p) + 1);
}

/* --- statements and portals ---------------------------------------------------------------- */

static void named_free(struct named *n)
{
    free(n->name);
    free(n->sql);
    free(n->types);
    free(n->arg);
    free(n);
}

/* The link pointing at the entry with that name, or NULL. */
static struct named **lookup(struct named **head, const char *name)
{
    for (; *head != NULL; head = &(*head)->next)
        if (strcmp((*head)->name, name) == 0) return head;
    return NULL;
}

static void drop(struct named **head, const char *name)
{
    struct named **link = lookup(head, name);
    if (link == NULL) return;
    struct named *n = *link;
    *link = n->next;
    named_free(n);
}

static void drop_all(struct named **head)
{
    while (*head != NULL) {
        struct named *n = *head;
        *head = n->next;
        named_free(n);
    }
}

/* Adds a new entry (replacing one of the same name); the list owns it. */
static struct named *add(struct named **head, const char *name, const char *sql)
{
    drop(head, name);
    struct named *n = xrealloc(NULL, sizeof *n);
    memset(n, 0, sizeof *n);
    n->name = xstrndup(name, strlen(name));
    n->sql = xstrndup(sql, strlen(sql));
    n->next = *head;
    *head = n;
    return n;
}

/* --- scripted answers ---------------------------------------------------------------------- */

static bool starts_with(const char *sql, const char *word)
{
    while (isspace((unsigned char)*sql) || *sql == '(') sql++;
    size_t n = strlen(word);
    return strncasecmp(sql, word, n) == 0 && !isalnum((unsigned char)sql[n]) && sql[n] != '_';
}

/* The number after `key` in sql, or -1 when sql does not contain key. */
static long scripted(const char *sql, const char *key)
{
    const char *p = strstr(sql, key);
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static bool echoes(const char *sql)
{
    const char *p = sql;
    while (isspace((unsigned char)*p)) p++;
    return strstr(sql, "echo") != NULL || strncasecmp(p, "select $1", 9) == 0;
}

static bool returns_rows(const char *sql)
{
    return starts_with(sql, "SELECT") || echoes(sql) || strstr(sql, "rows:") != NULL;
}

static bool ends_transaction(const char *sql)
{
    return starts_with(sql, "COMMIT") || starts_with(sql, "END") || starts_with(sql, "ROLLBACK") ||
           starts_with(sql, "ABORT");
}

/* The number of parameters of a statement: the highest $n in its text (quotes are not parsed). */
static int count_params(const char *sql)
{
    int max = 0;
    for (const char *p = strchr(sql, '$'); p != NULL; p = strchr(p + 1, '$')) {
        int n = atoi(p + 1);
        if (n > max) max = n;
    }
    return max;
}

/* Where the statement starting at s ends: at its ';' or the NUL. Quoted text is skipped. */
static size_t statement_end(const char *s, size_t i)
{
    char quote = 0;
    for (; s[i] != '\0'; i++) {
        if (quote) {
            if (s[i] == quote) quote = 0;
        } else if (s[i] == '\'' || s[i] == '"') {
            quote = s[i];
        } else if (s[i] == ';') {
            break;
        }
    }
    return i;
}

/* In a failed transaction block only COMMIT/ROLLBACK are accepted: sends 25P02 and returns true
 * for anything else. */
static bool refused_in_failed_block(struct client *c, const char *sql)
{
    if (c->txn != 'E' || ends_transaction(sql)) return false;
    error(c, "ERROR", "25P02",
          "current transaction is aborted, commands ignored until end of transaction block");
    return true;
}

/* DEALLOCATE [PREPARE] name|ALL: forgets the statement like PostgreSQL (an unquoted name is
 * folded to lower case). Returns FAILED (26000 sent) for a name that is not prepared. */
static enum outcome deallocate(struct client *c, const char *sql)
{
    const char *p = sql;
    while (isspace((unsigned char)*p)) p++;
    p += strlen("DEALLOCATE");
    while (isspace((unsigned char)*p)) p++;
    if (starts_with(p, "PREPARE")) p += strlen("PREPARE");
    while (isspace((unsigned char)*p)) p++;
    if (starts_with(p, "ALL")) {
        drop_all(&c->stmts);
        msg_strings(&c->out, 'C', "DEALLOCATE ALL", NULL);
        return DONE;
    }
    char name[64];
    size_t n = 0;
    bool quoted = *p == '"';
    for (p += quoted; *p && n + 1 < sizeof name; p++) {
        if (quoted ? *p == '"' : !(isalnum((unsigned char)*p) || *p == '_')) break;
        name[n++] = quoted ? *p : (char)tolower((unsigned char)*p);
    }
    name[n] = '\0';
    if (lookup(&c->stmts, name) == NULL)
        return error(c, "ERROR", "26000", "prepared statement \"%s\" does not exist", name);
    drop(&c->stmts, name);
    msg_strings(&c->out, 'C', "DEALLOCATE", NULL);
    return DONE;
}

/* The answer of a statement that is neither a row source nor a COPY. */
static enum outcome command(struct client *c, const char *sql)
{
    const char *tag = "UPDATE 1";
    if (starts_with(sql, "BEGIN") || starts_with(sql, "START")) {
        tag = "BEGIN";
        if (c->txn == 'I') c->txn = 'T';
    } else if (starts_with(sql, "COMMIT") || starts_with(sql, "END")) {
        tag = c->txn == 'E' ? "ROLLBACK" : "COMMIT"; /* as PostgreSQL reports a failed block */
        c->txn = 'I';
    } else if (starts_with(sql, "ROLLBACK") || starts_with(sql, "ABORT")) {
        tag = "ROLLBACK";
        c->txn = 'I';
    } else if (starts_with(sql, "SET")) {
        tag = "SET";
    } else if (starts_with(sql, "RESET")) {
        tag = "RESET";
    } else if (starts_with(sql, "DEALLOCATE")) {
        return deallocate(c, sql);
    } else if (starts_with(sql, "INSERT")) {
        tag = "INSERT 0 1";
    } else if (starts_with(sql, "DELETE")) {
        tag = "DELETE 1";
    }
    msg_strings(&c->out, 'C', tag, NULL);
    return DONE;
}

/* Runs one statement: its answer goes to c->out. `arg` is its first parameter (NULL: none or
 * SQL NULL); a simple query also gets the RowDescription. SUSPENDED means it sleeps first: the
 * caller runs it again once c->wake has passed (c->delay_done is then set). */
static enum outcome run(struct fakepg *f, struct client *c, const char *sql, const char *arg, bool simple)
{
    if (refused_in_failed_block(c, sql)) return FAILED;
    if (scripted(sql, "sleep:") > 0 && !c->delay_done) {
        c->wake = now_ms() + scripted(sql, "sleep:");
        return SUSPENDED;
    }
    bool cancelled = c->delay_done && c->cancelled;
    c->delay_done = c->cancelled = false;
    if (cancelled) return error(c, "ERROR", "57014", "canceling statement due to user request");
    if (strstr(sql, "die") != NULL) return DIED;
    const char *fail = strstr(sql, "fail:");
    if (fail != NULL) {
        char state[6];
        snprintf(state, sizeof state, "%s", fail + 5);
        return error(c, "ERROR", state, "scripted failure %s", state);
    }
    if (strstr(sql, "readonly") != NULL && f->standby && !starts_with(sql, "SELECT"))
        return error(c, "ERROR", "25006", "cannot execute this statement in a read-only transaction");
    if (starts_with(sql, "COPY") && strcasestr(sql, "FROM STDIN") != NULL) {
        size_t at = msg_begin(&c->out, 'G');
        put8(&c->out, 0);  /* text */
        put16(&c->out, 0); /* no column format codes */
        msg_end(&c->out, at);
        c->copying = true;
        c->copy_rows = 0;
        return COPYING;
    }
    if (!returns_rows(sql)) return command(c, sql);
    if (simple) row_description(&c->out);
    long n = scripted(sql, "rows:");
    char tag[32];
    if (n >= 0) {
        for (long i = 1; i <= n; i++) {
            snprintf(tag, sizeof tag, "%ld", i);
            data_row(&c->out, tag);
        }
    } else {
        n = 1;
        data_row(&c->out, echoes(sql) ? arg : "1");
    }
    snprintf(tag, sizeof tag, "SELECT %ld", n);
    msg_strings(&c->out, 'C', tag, NULL);
    return DONE;
}

/* --- simple query and COPY ----------------------------------------------------------------- */

/* Runs the statements of c->query from c->qpos on, then ends the query with ReadyForQuery; stops
 * early while a statement sleeps or reads COPY data. Returns false when the connection died. */
static bool continue_query(struct fakepg *f, struct client *c)
{
    while (c->query[c->qpos] != '\0') {
        size_t start = c->qpos, end = statement_end(c->query, start);
        while (start < end && isspace((unsigned char)c->query[start])) start++;
        if (start == end) { /* an empty statement, as in "SELECT 1;;" */
            c->qpos = end + (c->query[end] == ';');
            continue;
        }
        c->q_ran = true;
        char *sql = xstrndup(c->query + start, end - start);
        enum outcome o = run(f, c, sql, NULL, true);
        free(sql);
        if (o == SUSPENDED) return true;
        c->qpos = end + (c->query[end] == ';');
        if (o == DIED) return false;
        if (o == COPYING) return true;
        if (o == FAILED) break; /* PostgreSQL drops the rest of the query string */
    }
    if (!c->q_ran) msg_empty(&c->out, 'I');
    free(c->query);
    c->query = NULL;
    ready(f, c);
    return true;
}

/* A message while COPY FROM STDIN reads data. Returns false when the connection died. */
static bool copy_message(struct fakepg *f, struct client *c, char type, const unsigned char *body, size_t n)
{
    if (type == 'd') {
        for (size_t i = 0; i < n; i++) c->copy_rows += body[i] == '\n';
        return true;
    }
    if (type == 'H' || type == 'S') return true; /* ignored during COPY, as PostgreSQL does */
    c->copying = false;
    if (type == 'c') {
        char tag[32];
        snprintf(tag, sizeof tag, "COPY %ld", c->copy_rows);
        msg_strings(&c->out, 'C', tag, NULL);
    } else if (type == 'f') {
        error(c, "ERROR", "57014", "COPY from stdin failed: %.*s", (int)(n ? n - 1 : 0), (const char *)body);
    } else {
        error(c, "ERROR", "08P01", "unexpected message type 0x%02X during COPY from stdin",
              (unsigned char)type);
    }
    if (c->query == NULL) return true; /* an extended-protocol COPY: the client's Sync follows */
    if (type != 'c') c->qpos += strlen(c->query + c->qpos); /* a failed COPY ends its query */
    return continue_query(f, c);
}

/* --- extended protocol --------------------------------------------------------------------- */

static void on_parse(struct fakepg *f, struct client *c, struct rd *r)
{
    const char *name = getstr(r), *sql = getstr(r);
    int ntypes = get16(r);
    struct rd types = {get(r, (size_t)ntypes * 4), (size_t)ntypes * 4, false};
    if (r->bad) return;
    if (refused_in_failed_block(c, sql)) return;
    if (*name != '\0' && lookup(&c->stmts, name) != NULL) {
        error(c, "ERROR", "42P05", "prepared statement \"%s\" already exists", name);
        return;
    }
    struct named *s = add(&c->stmts, name, sql);
    int used = count_params(sql);
    s->nparams = used > ntypes ? used : ntypes;
    s->types = xrealloc(NULL, (size_t)s->nparams * sizeof *s->types);
    for (int i = 0; i < s->nparams; i++) s->types[i] = i < ntypes ? get32(&types) : 0;
    msg_empty(&c->out, '1');
}

static void on_bind(struct client *c, struct rd *r)
{
    const char *portal = getstr(r), *name = getstr(r);
    int nformats = get16(r);
    get(r, (size_t)nformats * 2);
    int nvals = get16(r);
    const char *arg = NULL;
    size_t arglen = 0;
    for (int i = 0; i < nvals; i++) {
        uint32_t len = get32(r);
        if (len == (uint32_t)-1) continue;
        const unsigned char *v = get(r, len);
        if (i == 0) arg = (const char *)v, arglen = len;
    }
    if (r->bad) return;
    struct named **s = lookup(&c->stmts, name);
    if (s == NULL) {
        if (*name == '\0')
            error(c, "ERROR", "26000", "unnamed prepared statement does not exist");
        else
            error(c, "ERROR", "26000", "prepared statement \"%s\" does not exist", name);
        return;
    }
    if (nvals != (*s)->nparams) {
        error(c, "ERROR", "08P01",
              "bind message supplies %d parameters, but prepared statement \"%s\" requires %d", nvals, name,
              (*s)->nparams);
        return;
    }
    if (refused_in_failed_block(c, (*s)->sql)) return;
    struct named *p = add(&c->portals, portal, (*s)->sql);
    if (arg != NULL) p->arg = xstrndup(arg, arglen);
    msg_empty(&c->out, '2');
}

/* Describe 'S' (ParameterDescription then RowDescription/NoData) or 'P' (RowDescription/NoData). */
static void on_describe(struct client *c, struct rd *r)
{
    const unsigned char *kind = get(r, 1);
    const char *name = getstr(r);
    if (r->bad) return;
    struct named **n = lookup(*kind == 'S' ? &c->stmts : &c->portals, name);
    if (n == NULL && *kind == 'S') {
        error(c, "ERROR", "26000", "prepared statement \"%s\" does not exist", name);
        return;
    }
    if (n == NULL) {
        error(c, "ERROR", "34000", "portal \"%s\" does not exist", name);
        return;
    }
    if (*kind == 'S') {
        size_t at = msg_begin(&c->out, 't');
        put16(&c->out, (uint16_t)(*n)->nparams);
        for (int i = 0; i < (*n)->nparams; i++) put32(&c->out, (*n)->types[i] ? (*n)->types[i] : TEXT_OID);
        msg_end(&c->out, at);
    }
    if (returns_rows((*n)->sql))
        row_description(&c->out);
    else
        msg_empty(&c->out, 'n');
}

/* Execute: returns SUSPENDED when the statement sleeps (the message is then kept, to be run
 * again when the sleep ends), DIED when the connection is to close, else DONE or FAILED. */
static enum outcome on_execute(struct fakepg *f, struct client *c, struct rd *r)
{
    const char *name = getstr(r);
    get32(r); /* the row limit: every answer is complete */
    if (r->bad) return DONE;
    if (!c->delay_done) f->st.executes++;
    struct named **p = lookup(&c->portals, name);
    if (p == NULL) return error(c, "ERROR", "34000", "portal \"%s\" does not exist", name);
    return run(f, c, (*p)->sql, (*p)->arg, false);
}

/* --- connections --------------------------------------------------------------------------- */

/* The first packet of a connection: SSLRequest, GSSENCRequest, CancelRequest or StartupMessage.
 * Returns false when the connection is to be closed. */
static bool startup(struct fakepg *f, struct client *c, uint32_t code, struct rd *r)
{
    if (code == SSL_CODE || code == GSSENC_CODE) {
        put8(&c->out, 'N'); /* no encryption: the client goes on in the clear */
        return true;
    }
    if (code == CANCEL_CODE) {
        int32_t pid = (int32_t)get32(r), secret = (int32_t)get32(r);
        f->st.cancels++;
        for (struct client *t = f->clients; t != NULL; t = t->next) {
            if (t->pid != pid || t->secret != secret || !t->started || t->wake == 0) continue;
            t->cancelled = true;
            t->wake = now_ms(); /* ends the sleep in this round */
        }
        return false;
    }
    if (code >> 16 != 3) return false;
    c->started = true;
    c->pid = ++f->next_pid;
    c->secret = (int32_t)((uint32_t)c->pid * 2654435761u ^ 0x5bd1e995u);
    c->txn = 'I';
    c->standby_sent = f->standby;
    size_t at = msg_begin(&c->out, 'R');
    put32(&c->out, 0); /* AuthenticationOk */
    msg_end(&c->out, at);
    static const char *const params[][2] = {
        {"server_version", "15.0"},    {"server_encoding", "UTF8"},
        {"client_encoding", "UTF8"},   {"DateStyle", "ISO, MDY"},
        {"integer_datetimes", "on"},   {"standard_conforming_strings", "on"},
        {"TimeZone", "UTC"},           {"default_transaction_read_only", "off"},
        {"IntervalStyle", "postgres"}, {"is_superuser", "off"},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        msg_strings(&c->out, 'S', params[i][0], params[i][1]);
    msg_strings(&c->out, 'S', "in_hot_standby", f->standby ? "on" : "off");
    at = msg_begin(&c->out, 'K');
    put32(&c->out, (uint32_t)c->pid);
    put32(&c->out, (uint32_t)c->secret);
    msg_end(&c->out, at);
    ready(f, c);
    return true;
}

/* One message of a started connection. Returns false when it is to be kept for later (its
 * statement sleeps); sets c->dead when the connection is to close. */
static bool dispatch(struct fakepg *f, struct client *c, char type, struct rd *r)
{
    if (c->copying) {
        if (!copy_message(f, c, type, r->p, r->n)) c->dead = true;
        return true;
    }
    if (type == 'X') {
        c->dead = true;
        return true;
    }
    if (type == 'S') {
        f->st.syncs++;
        c->skipping = false;
        ready(f, c);
        return true;
    }
    if (c->skipping) return true; /* after an error, until Sync */
    switch (type) {
    case 'Q': {
        f->st.simple_queries++;
        const char *sql = getstr(r);
        c->query = xstrndup(sql, strlen(sql));
        c->qpos = 0;
        c->q_ran = false;
        if (!continue_query(f, c)) c->dead = true;
        break;
    }
    case 'P':
        f->st.parses++;
        on_parse(f, c, r);
        break;
    case 'B':
        on_bind(c, r);
        break;
    case 'D':
        on_describe(c, r);
        break;
    case 'E':
        switch (on_execute(f, c, r)) {
        case SUSPENDED:
            return false;
        case DIED:
            c->dead = true;
            break;
        default:
            break;
        }
        break;
    case 'C': {
        const unsigned char *kind = get(r, 1);
        const char *name = getstr(r);
        if (r->bad) break;
        drop(*kind == 'S' ? &c->stmts : &c->portals, name);
        msg_empty(&c->out, '3');
        break;
    }
    case 'H': /* Flush: everything is sent at the end of each round anyway */
    case 'd': /* COPY messages outside COPY are ignored, as PostgreSQL does after a failed COPY */
    case 'c':
    case 'f':
        break;
    default:
        error(c, "FATAL", "08P01", "invalid frontend message type %d", type);
        c->dead = true;
        return true;
    }
    if (r->bad) {
        error(c, "FATAL", "08P01", "invalid message format");
        c->dead = true;
    }
    return true;
}

/* Handles the complete messages in c->in, in order, until one has to wait. */
static void serve(struct fakepg *f, struct client *c)
{
    while (!c->dead && c->wake == 0) {
        const unsigned char *p = (const unsigned char *)c->in.p + c->in_off;
        size_t avail = c->in.len - c->in_off, head = c->started ? 5 : 4;
        if (avail < head) break;
        struct rd lr = {p + head - 4, 4, false};
        uint32_t len = get32(&lr);
        if (len < 4 || len > MAX_MSG || (!c->started && len < 8)) {
            c->dead = true;
            break;
        }
        if (avail < head - 4 + len) break;
        struct rd r = {p + head, len - 4, false};
        if (!c->started) {
            uint32_t code = get32(&r);
            if (!startup(f, c, code, &r)) c->dead = true;
        } else if (!dispatch(f, c, (char)p[0], &r)) {
            break;
        }
        c->in_off += head - 4 + len;
    }
    if (c->in_off > 0) { /* keep the unprocessed rest at the front */
        memmove(c->in.p, c->in.p + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
}

/* Sends what c->out holds, as far as the socket takes it; a send error kills the client. */
static void flush_out(struct client *c)
{
    size_t off = 0;
    while (off < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + off, c->out.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) c->dead = true;
            break;
        }
        off += (size_t)n;
    }
    memmove(c->out.p, c->out.p + off, c->out.len - off);
    c->out.len -= off;
}

/* Reads what the socket has; end of file or an error kills the client. */
static void read_in(struct client *c)
{
    if (c->in.cap - c->in.len < 16384) {
        c->in.cap = c->in.cap * 2 + 16384;
        c->in.p = xrealloc(c->in.p, c->in.cap);
    }
    ssize_t n = recv(c->fd, c->in.p + c->in.len, c->in.cap - c->in.len, 0);
    if (n > 0)
        c->in.len += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        c->dead = true;
}

/* Closes the client's socket and frees it with all it holds. */
static void client_free(struct fakepg *f, struct client *c)
{
    /* Unread input would make close() send a reset, which may cost the client answers it has
     * not read yet; drained, the close is an orderly end of file. */
    char drain[4096];
    while (recv(c->fd, drain, sizeof drain, MSG_DONTWAIT) > 0) {
    }
    close(c->fd);
    drop_all(&c->stmts);
    drop_all(&c->portals);
    free(c->in.p);
    free(c->out.p);
    free(c->query);
    free(c);
    f->st.open--;
}

/* Closes every client at once: nothing more is sent. */
static void close_all(struct fakepg *f)
{
    while (f->clients != NULL) {
        struct client *c = f->clients;
        f->clients = c->next;
        client_free(f, c);
    }
}

/* Closes the dead clients; a dying one first gets what was already answered, if the socket
 * takes it, so that a client sees the answers before the statement that killed it. */
static void sweep(struct fakepg *f)
{
    for (struct client **link = &f->clients; *link != NULL;) {
        struct client *c = *link;
        if (!c->dead) {
            link = &c->next;
            continue;
        }
        if (c->out.len > 0) flush_out(c);
        *link = c->next;
        client_free(f, c);
    }
}

static void accept_all(struct fakepg *f)
{
    for (;;) {
        int fd = accept4(f->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        f->st.accepted++;
        if (f->refuse) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct client *c = xrealloc(NULL, sizeof *c);
        memset(c, 0, sizeof *c);
        c->fd = fd;
        c->next = f->clients;
        f->clients = c;
        f->st.open++;
    }
}

/* Fills f->pfd (wake pipe, listener, clients) and returns the poll() timeout: the nearest wake. */
static int prepare_poll(struct fakepg *f, size_t *n)
{
    int64_t now = now_ms(), timeout = -1;
    size_t count = 2;
    for (struct client *c = f->clients; c != NULL; c = c->next) count++;
    if (count > f->pcap) {
        f->pcap = count * 2;
        f->pfd = xrealloc(f->pfd, f->pcap * sizeof *f->pfd);
        f->pcl = xrealloc(f->pcl, f->pcap * sizeof *f->pcl);
    }
    f->pfd[0] = (struct pollfd){.fd = f->wake[0], .events = POLLIN};
    f->pfd[1] = (struct pollfd){.fd = f->lfd, .events = POLLIN};
    *n = 2;
    for (struct client *c = f->clients; c != NULL; c = c->next) {
        f->pcl[*n] = c;
        f->pfd[(*n)++] = (struct pollfd){.fd = c->fd, .events = POLLIN | (c->out.len ? POLLOUT : 0)};
        if (c->wake != 0 && (timeout < 0 || c->wake - now < timeout))
            timeout = c->wake > now ? c->wake - now : 0;
    }
    return (int)timeout;
}

static void *server_main(void *arg)
{
    struct fakepg *f = arg;
    pthread_mutex_lock(&f->mu);
    while (!f->stop) {
        size_t n;
        int timeout = prepare_poll(f, &n);
        pthread_mutex_unlock(&f->mu);
        int ready_fds = poll(f->pfd, n, timeout);
        pthread_mutex_lock(&f->mu);
        if (ready_fds < 0 && errno != EINTR) abort();
        if (ready_fds > 0 && f->pfd[0].revents) {
            char drain[64];
            while (read(f->wake[0], drain, sizeof drain) > 0) {
            }
        }
        if (f->kill_done != f->kill_gen) {
            close_all(f);
            f->kill_done = f->kill_gen;
            pthread_cond_broadcast(&f->cond);
            continue;
        }
        if (ready_fds > 0 && f->pfd[1].revents) accept_all(f);
        /* Clients accepted just now are not in pfd yet: they are polled from the next round. */
        for (size_t i = 2; ready_fds > 0 && i < n; i++) {
            struct client *c = f->pcl[i];
            if (f->pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) read_in(c);
            if (!c->dead) serve(f, c);
        }
        int64_t now = now_ms();
        for (struct client *c = f->clients; c != NULL; c = c->next) {
            if (c->dead || c->wake == 0 || c->wake > now) continue;
            c->wake = 0;
            c->delay_done = true;
            /* A sleeping simple query goes on from its statement; a sleeping Execute is still
             * the first message in c->in and runs again. */
            if (c->query != NULL && !continue_query(f, c)) c->dead = true;
            serve(f, c);
            c->delay_done = false;
        }
        for (struct client *c = f->clients; c != NULL; c = c->next)
            if (!c->dead && c->out.len > 0) flush_out(c);
        sweep(f);
    }
    close_all(f);
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->mu);
    return NULL;
}

/* --- control ------------------------------------------------------------------------------- */

/* Wakes the server thread from poll(); the pipe is non-blocking, and a full one wakes it anyway. */
static void poke(struct fakepg *f)
{
    ssize_t n = write(f->wake[1], "w", 1);
    (void)n;
}

struct fakepg *fakepg_start(void)
{
    struct fakepg *f = xrealloc(NULL, sizeof *f);
    memset(f, 0, sizeof *f);
    f->next_pid = 1000;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof sa;
    int one = 1;
    f->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->lfd < 0 || setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(f->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(f->lfd, 128) != 0 ||
        getsockname(f->lfd, (struct sockaddr *)&sa, &salen) != 0 ||
        pipe2(f->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        perror("fakepg_start");
        abort();
    }
    f->port = ntohs(sa.sin_port);
    snprintf(f->conninfo, sizeof f->conninfo,
             "host=127.0.0.1 port=%d user=test dbname=test sslmode=disable gssencmode=disable", f->port);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cond, NULL);
    if (pthread_create(&f->thread, NULL, server_main, f) != 0) abort();
    return f;
}

void fakepg_stop(struct fakepg *f)
{
    pthread_mutex_lock(&f->mu);
    f->stop = true;
    poke(f);
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->thread, NULL);
    close(f->lfd);
    close(f->wake[0]);
    close(f->wake[1]);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cond);
    free(f->pfd);
    free(f->pcl);
    free(f);
}

const char *fakepg_conninfo(const struct fakepg *f)
{
    return f->conninfo;
}

int fakepg_port(const struct fakepg *f)
{
    return f->port;
}

void fakepg_refuse(struct fakepg *f, bool refuse)
{
    pthread_mutex_lock(&f->mu);
    f->refuse = refuse;
    pthread_mutex_unlock(&f->mu);
}

void fakepg_set_standby(struct fakepg *f, bool standby)
{
    pthread_mutex_lock(&f->mu);
    f->standby = standby;
    pthread_mutex_unlock(&f->mu);
}

void fakepg_kill_all(struct fakepg *f)
{
    pthread_mutex_lock(&f->mu);
    unsigned gen = ++f->kill_gen;
    poke(f);
    while ((int)(f->kill_done - gen) < 0 && !f->stop) pthread_cond_wait(&f->cond, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

struct fakepg_stats fakepg_stats(struct fakepg *f)
{
    pthread_mutex_lock(&f->mu);
    struct fakepg_stats st = f->st;
    pthread_mutex_unlock(&f->mu);
    return st;
}
