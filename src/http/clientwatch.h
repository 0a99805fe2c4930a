/* clientwatch.h — notices a client that hung up while its request waits on the database.
 * h2o 2.2.5 does not read an HTTP/1 connection while a request is being served, so without this
 * a departed client is only noticed when the answer is written. A watch costs a dup() and an
 * epoll registration, so callers start it only for requests that have waited a while. */
#ifndef SLUICE_CLIENTWATCH_H
#define SLUICE_CLIENTWATCH_H

#include <h2o.h>

struct clientwatch {
    h2o_socket_t *sock; /* our dup() of the client's socket, read-watched */
    void (*on_gone)(void *arg);
    void *arg;
};

/* Starts watching req's HTTP/1 connection (a no-op over HTTP/2, or when the socket cannot be
 * had). on_gone runs at most once: on a reset, or on end-of-file, which a client that only
 * shut down its sending side also gives (taken as leaving, as nginx does by default). */
void clientwatch_start(struct clientwatch *cw, h2o_req_t *req, h2o_loop_t *loop, void (*on_gone)(void *),
                       void *arg);
/* Stops watching (safe when not started). */
void clientwatch_stop(struct clientwatch *cw);

/* Keeps an HTTP/1 connection in the poll set while req waits (a no-op over HTTP/2): h2o 2.2.5
 * takes it out when a request is complete and adds it back after the answer, an epoll_ctl DEL
 * and ADD for every request that waits on the database. The filter of clientwatch_register
 * hands the socket back to h2o as the answer starts. */
void clientwatch_keep_polled(h2o_req_t *req);
void clientwatch_register(h2o_pathconf_t *pathconf);

#endif
