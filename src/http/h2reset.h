/* h2reset.h — the Rapid Reset guard (CVE-2023-44487) for HTTP/2 connections: requests the client
 * ends before their answer began are counted per connection, and a connection past its budget is
 * closed. h2o 2.2.5 starts a request as soon as its HEADERS arrive and sets no limit of its own. */
#ifndef SLUICE_H2RESET_H
#define SLUICE_H2RESET_H

#include <h2o.h>
#include <stdbool.h>

struct worker;

/* Each connection may end H2RESET_BURST requests before their answer, and earns
 * H2RESET_PER_SECOND more every second; one more closes it. HTTP/2 allows a client 100
 * requests at once (h2o's SETTINGS_MAX_CONCURRENT_STREAMS), so closing a connection with all of
 * them waiting stays within the budget. */
#define H2RESET_BURST      100
#define H2RESET_PER_SECOND 10

/* Called first for every request. Returns true to go on serving req (an HTTP/2 request is then
 * watched until it is freed); false when req's connection is being closed for resetting too
 * many streams: req has been answered 503 here, without any other work. */
bool h2reset_admit(struct worker *w, h2o_req_t *req);

/* Frees the worker's table (at exit). */
void h2reset_free(struct worker *w);

#endif
