/* reqinfo.c — the request's id and trace, found again through req->prefilters, and the names of
 * what served it. Ids made here are a random per-process prefix, the worker and a counter: unique
 * without coordination, and cheap (no system call per request). */
#include "reqinfo.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "buf.h"
#include "jsonw.h"
#include "log.h"
#include "worker.h"

static char process_prefix[13]; /* 12 random base-32 characters, made once */
static pthread_once_t prefix_once = PTHREAD_ONCE_INIT;
static __thread uint64_t next_seq;   /* ids this worker made */
static __thread uint64_t span_state; /* xorshift state for span ids, seeded once per thread */

static uint64_t random64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != sizeof v) {
        struct timespec ts; /* no entropy yet (early boot): the clock still differs per start */
        clock_gettime(CLOCK_REALTIME, &ts);
        v = (uint64_t)ts.tv_sec * 1000000007ULL ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)(uintptr_t)&v << 17);
    }
    return v;
}

static void make_prefix(void)
{
    static const char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";
    uint64_t r = random64();
    for (int i = 0; i < 12; i++, r >>= 5) process_prefix[i] = alphabet[r & 31];
    process_prefix[12] = '\0';
}

/* prefix-worker-counter (hex), e.g. k3x9f2abq7mn-1-2a, into out[REQINFO_ID_MAX + 1]. */
static void make_id(char *out, int worker, uint64_t seq)
{
    static const char hex[] = "0123456789abcdef";
    char *p = out;
    memcpy(p, process_prefix, 12);
    p += 12;
    *p++ = '-';
    char digits[24];
    int n = 0;
    unsigned w = (unsigned)worker;
    do digits[n++] = (char)('0' + w % 10);
    while ((w /= 10) != 0);
    while (n) *p++ = digits[--n];
    *p++ = '-';
    do digits[n++] = hex[seq & 15];
    while ((seq >>= 4) != 0);
    while (n) *p++ = digits[--n];
    *p = '\0';
}

static void on_setup_ostream(h2o_req_prefilter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    h2o_setup_next_prefilter(self, req, slot);
}

bool reqinfo_id_valid(const char *s, size_t n)
{
    if (n == 0 || n > REQINFO_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == ':' || c == '-'))
            return false;
    }
    return true;
}

/* n lower-case hex digits, not all zero when nonzero is set. */
static bool lower_hex(const char *s, size_t n, bool nonzero)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
        any |= c != '0';
    }
    return any || !nonzero;
}

bool reqinfo_parse_traceparent(const char *s, size_t n, char trace_id[33], char flags[3])
{
    /* version "-" trace-id "-" parent-id "-" trace-flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55. A later
     * version may append "-" and more; version ff is invalid. */
    if (n < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-') return false;
    if (!lower_hex(s, 2, false) || (s[0] == 'f' && s[1] == 'f')) return false;
    bool v00 = s[0] == '0' && s[1] == '0';
    if (v00 ? n != 55 : (n > 55 && s[55] != '-')) return false;
    if (!lower_hex(s + 3, 32, true) || !lower_hex(s + 36, 16, true) || !lower_hex(s + 53, 2, false))
        return false;
    memcpy(trace_id, s + 3, 32);
    trace_id[32] = '\0';
    memcpy(flags, s + 53, 2);
    flags[2] = '\0';
    return true;
}

/* The first value of the request header name (lower case), or a NULL base. */
static h2o_iovec_t request_header(h2o_req_t *req, const char *name, size_t len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, len, -1);
    return i < 0 ? h2o_iovec_init(NULL, 0) : req->headers.entries[i].value;
}

static struct reqinfo *find(h2o_req_t *req)
{
    for (h2o_req_prefilter_t *p = req->prefilters; p != NULL; p = p->next)
        if (p->on_setup_ostream == on_setup_ostream) return (struct reqinfo *)p;
    return NULL;
}

struct reqinfo *reqinfo_of(h2o_req_t *req)
{
    struct reqinfo *ri = find(req);
    if (ri != NULL) return ri;
    /* Linked by hand rather than by h2o_add_prefilter: the same thing, and clearly ours. */
    ri = h2o_mem_alloc_pool(&req->pool, sizeof *ri);
    memset(ri, 0, sizeof *ri);
    ri->super.on_setup_ostream = on_setup_ostream;
    ri->super.next = req->prefilters;
    req->prefilters = &ri->super;

    h2o_iovec_t given = request_header(req, H2O_STRLIT("x-request-id"));
    if (given.base != NULL && reqinfo_id_valid(given.base, given.len)) {
        memcpy(ri->id, given.base, given.len);
        ri->id[given.len] = '\0';
    } else {
        pthread_once(&prefix_once, make_prefix);
        make_id(ri->id, worker_of(req)->index, ++next_seq);
    }
    h2o_iovec_t tp = request_header(req, H2O_STRLIT("traceparent"));
    if (tp.base == NULL || !reqinfo_parse_traceparent(tp.base, tp.len, ri->trace_id, ri->trace_flags))
        ri->trace_id[0] = '\0';

    struct buf f = BUF_INIT;
    buf_puts(&f, "\"request_id\":");
    jsonw_string(&f, ri->id, strlen(ri->id));
    if (ri->trace_id[0]) buf_printf(&f, ",\"trace_id\":\"%s\"", ri->trace_id);
    ri->log_fields = h2o_strdup(&req->pool, f.data, f.len).base;
    buf_free(&f);
    return ri;
}

static const char *pool_copy(h2o_req_t *req, const char *s, size_t n)
{
    return s == NULL || n == 0 ? NULL : h2o_strdup(&req->pool, s, n).base;
}

void reqinfo_set_pool(h2o_req_t *req, const char *name)
{
    reqinfo_of(req)->pool = pool_copy(req, name, name ? strlen(name) : 0);
}

void reqinfo_set_subject(h2o_req_t *req, const char *subject, size_t len)
{
    reqinfo_of(req)->subject = pool_copy(req, subject, len);
}

const char *reqinfo_enter(h2o_req_t *req)
{
    return log_set_context(reqinfo_of(req)->log_fields);
}

void reqinfo_leave(const char *previous)
{
    log_set_context(previous);
}

/* A new span id: 64 random bits (never zero), from a per-thread xorshift seeded once. */
static uint64_t span_id(void)
{
    if (span_state == 0) span_state = random64() | 1;
    uint64_t x = span_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    span_state = x;
    uint64_t v = x * 0x2545f4914f6cdd1dULL;
    return v ? v : 1;
}

void reqinfo_add_headers(h2o_req_t *req)
{
    struct reqinfo *ri = reqinfo_of(req);
    if (h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"), -1) < 0)
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, "X-Request-Id",
                              ri->id, strlen(ri->id));
    if (ri->trace_id[0] && h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("traceparent"), -1) < 0) {
        char *tp = h2o_mem_alloc_pool(&req->pool, 56);
        snprintf(tp, 56, "00-%s-%016llx-%s", ri->trace_id, (unsigned long long)span_id(), ri->trace_flags);
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("traceparent"), 0, NULL, tp, 55);
    }
}
