/* accesslog.h — one line per request (log.access), written to the log's destination in batches:
 * each worker gathers lines and writes them when PIPE_BUF bytes (64 KiB on a regular file) have
 * gathered, after at most ACCESSLOG_FLUSH_MS, and when it stops, instead of one write(2) per
 * request. */
#ifndef SLUICE_ACCESSLOG_H
#define SLUICE_ACCESSLOG_H

#include <h2o.h>

struct worker;

#define ACCESSLOG_FLUSH_MS 100

/* Registers the logger on pathconf (the served path and the host's fallback path: h2o answers
 * some requests before routing). h2o calls it when it frees each request. */
void accesslog_register(h2o_pathconf_t *pathconf);
/* Prepares w's batch and its timer on w's loop; call on the worker's thread. */
void accesslog_init(struct worker *w);
/* Writes what w has gathered. */
void accesslog_flush(struct worker *w);
/* Flushes and frees w's batch. */
void accesslog_free(struct worker *w);

#endif
