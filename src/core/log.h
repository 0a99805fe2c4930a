/* log.h — one line per event on stderr (access lines too, accesslog.c), JSON ({"ts","level","msg",...fields})
 * or plain text. */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Names the calling thread's worker in its lines ("worker":n); -1 (the default) for the main
 * thread. */
void log_set_worker(int index);
/* Set once at start-up (and at reload); before it, level is info and format JSON. */
void log_setup(enum log_level level, bool json);
bool log_enabled(enum log_level level);
/* Parses "debug" | "info" | "warn" | "error"; returns -1 for anything else. */
int log_level_parse(const char *name);

/* Until called again with NULL, every line this thread writes also carries fields_json (the
 * members of a JSON object without braces, e.g. the request id of the request being served). The
 * text is the caller's and must stay valid until then. */
const char *log_set_context(const char *fields_json); /* returns the one it replaced */
/* Appends one line (with its newline) in the configured format to b, as log_write writes it,
 * without the context of log_set_context. */
void log_format_line(struct buf *b, enum log_level level, const char *msg, const char *fields_json);
/* Writes the time now as 2024-01-02T03:04:05.678Z (24 characters) and a NUL into ts, as lines
 * carry it. The date and time of day are formatted once a second per thread: access lines ask
 * for them on every request. */
void log_timestamp(char ts[25]);
/* Writes data[0..len) to the log's destination (stderr) as it is, whole. */
void log_write_raw(const char *data, size_t len);

/* fields_json: NULL, or the members of a JSON object without braces, e.g. "\"pool\":\"primary\"",
 * none of them named as a member the line has already (log_fields_rename_reserved). In text
 * format, control characters of msg and the fields are escaped, so one call is one line. */
void log_write(enum log_level level, const char *msg, const char *fields_json);
void log_printf(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The members log_write writes itself ("ts", "level", "worker", "msg", and "request_id" and
 * "trace_id" of the request a line is about); log_nreserved of them. */
extern const char *const log_reserved[];
extern const size_t log_nreserved;

/* Renames each member of the JSON object fields named as one that log_write writes itself ("ts",
 * "level", "worker", "msg", "request_id", "trace_id") to "field_<name>" (prefixed again while that name is
 * taken too), so that fields from a script can neither replace nor duplicate them. Values are kept; fields
 * stays the caller's. */
void log_fields_rename_reserved(json_t *fields);
/* Appends s[0..n) to b for a text-format line: \n, \r and \t as those two characters, any other
 * control character (below 0x20, and 0x7f) as \xHH; every other byte as it is. */
void log_text_escape(struct buf *b, const char *s, size_t n);

#define log_debug(...) (log_enabled(LOG_DEBUG) ? log_printf(LOG_DEBUG, __VA_ARGS__) : (void)0)
#define log_info(...)  log_printf(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_printf(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_printf(LOG_ERROR, __VA_ARGS__)

#endif
