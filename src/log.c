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

void log_write(enum log_level level, const char *msg, const char *fields_json)
{
    if (!log_enabled(level)) return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[64];
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));

    struct buf b = BUF_INIT;
    if (as_json) {
        buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",", ts, level_names[level]);
        if (worker_index >= 0) buf_printf(&b, "\"worker\":%d,", worker_index);
        buf_puts(&b, "\"msg\":");
        jsonw_string(&b, msg, strlen(msg));
        if (fields_json && *fields_json) {
            buf_putc(&b, ',');
            buf_puts(&b, fields_json);
        }
        buf_puts(&b, "}\n");
    } else {
        buf_printf(&b, "%s %-5s %s", ts, level_names[level], msg);
        if (fields_json && *fields_json) buf_printf(&b, " {%s}", fields_json);
        buf_putc(&b, '\n');
    }
    ssize_t r = write(STDERR_FILENO, b.data, b.len);
    (void)r;
    buf_free(&b);
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
