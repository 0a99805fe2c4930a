/* log.c — one line per event on stderr. A line is written with one write() so lines from
 * several workers never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "jsonw.h"

static enum log_level min_level = LOG_INFO;
static bool as_json = true;
static const char *const level_names[] = {"debug", "info", "warn", "error"};
static __thread int worker_index = -1;
static __thread const char *context; /* log_set_context */

const char *const log_reserved[] = {"ts", "level", "worker", "msg", "request_id", "trace_id"};
const size_t log_nreserved = sizeof log_reserved / sizeof log_reserved[0];

void log_set_worker(int index)
{
    worker_index = index;
}

void log_setup(enum log_level level, bool json)
{
    min_level = level;
    as_json = json;
}

bool log_enabled(enum log_level level)
{
    return level >= min_level;
}

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0) return i;
    return -1;
}

const char *log_set_context(const char *fields_json)
{
    const char *previous = context;
    context = fields_json;
    return previous;
}

void log_timestamp(char ts[25])
{
    static __thread time_t cached_sec = -1;
    static __thread char cached[64]; /* room for any int the compiler imagines */
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_sec = tv.tv_sec;
    }
    int ms = (int)(tv.tv_usec / 1000);
    memcpy(ts, cached, 19);
    ts[19] = '.';
    ts[20] = (char)('0' + ms / 100);
    ts[21] = (char)('0' + ms / 10 % 10);
    ts[22] = (char)('0' + ms % 10);
    ts[23] = 'Z';
    ts[24] = '\0';
}

void log_format_line(struct buf *b, enum log_level level, const char *msg, const char *fields_json)
{
    char ts[25];
    log_timestamp(ts);
    if (as_json) {
        buf_puts(b, "{\"ts\":\"");
        buf_puts(b, ts);
        buf_puts(b, "\",\"level\":\"");
        buf_puts(b, level_names[level]);
        buf_puts(b, "\",");
        if (worker_index >= 0) {
            buf_puts(b, "\"worker\":");
            buf_put_uint(b, (uint64_t)worker_index);
            buf_putc(b, ',');
        }
        buf_puts(b, "\"msg\":");
        jsonw_string(b, msg, strlen(msg));
        if (fields_json && *fields_json) {
            buf_putc(b, ',');
            buf_puts(b, fields_json);
        }
        buf_puts(b, "}\n");
    } else {
        /* A newline in a message must not start what reads as another line of the log. */
        buf_printf(b, "%s %-5s ", ts, level_names[level]);
        log_text_escape(b, msg, strlen(msg));
        if (fields_json && *fields_json) {
            buf_puts(b, " {");
            log_text_escape(b, fields_json, strlen(fields_json));
            buf_putc(b, '}');
        }
        buf_putc(b, '\n');
    }
}

void log_write_raw(const char *data, size_t len)
{
    while (len > 0) {
        ssize_t r = write(STDERR_FILENO, data, len);
        if (r <= 0) return; /* nowhere to report it */
        data += r;
        len -= (size_t)r;
    }
}

void log_write(enum log_level level, const char *msg, const char *fields_json)
{
    if (!log_enabled(level)) return;
    struct buf f = BUF_INIT;
    if (context != NULL) { /* the request this thread works for, after the line's own fields */
        if (fields_json && *fields_json) {
            buf_puts(&f, fields_json);
            buf_putc(&f, ',');
        }
        buf_puts(&f, context);
        fields_json = f.data;
    }
    struct buf b = BUF_INIT;
    log_format_line(&b, level, msg, fields_json);
    ssize_t r = write(STDERR_FILENO, b.data, b.len);
    (void)r;
    buf_free(&b);
    buf_free(&f);
}

void log_text_escape(struct buf *b, const char *s, size_t n)
{
    size_t from = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7f) continue;
        buf_append(b, s + from, i - from);
        from = i + 1;
        if (c == '\n')
            buf_puts(b, "\\n");
        else if (c == '\r')
            buf_puts(b, "\\r");
        else if (c == '\t')
            buf_puts(b, "\\t");
        else
            buf_printf(b, "\\x%02x", c);
    }
    buf_append(b, s + from, n - from);
}

void log_fields_rename_reserved(json_t *fields)
{
    if (!json_is_object(fields)) return;
    const char *const *reserved = log_reserved;
    for (size_t i = 0; i < log_nreserved; i++) {
        json_t *v = json_object_get(fields, reserved[i]);
        if (v == NULL) continue;
        json_incref(v);
        json_object_del(fields, reserved[i]);
        struct buf name = BUF_INIT;
        buf_puts(&name, reserved[i]);
        do { /* field_ts, or field_field_ts when the script also sent field_ts, ... */
            struct buf longer = BUF_INIT;
            buf_puts(&longer, "field_");
            buf_puts(&longer, name.data);
            buf_free(&name);
            name = longer;
        } while (json_object_get(fields, name.data) != NULL);
        json_object_set_new(fields, name.data, v);
        buf_free(&name);
    }
}

void log_printf(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level)) return;
    struct buf b = BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    log_write(level, b.data ? b.data : "", NULL);
    buf_free(&b);
}
