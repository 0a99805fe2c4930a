/* pgsock.h — a libpq connection of its own (not a pool's) on an h2o loop: h2o watches a dup() of
 * libpq's socket with DONT_READ, so each side closes only its own descriptor, and one step of an
 * asynchronous connect re-attaches it (PQconnectPoll may switch sockets). */
#ifndef SLUICE_PGSOCK_H
#define SLUICE_PGSOCK_H

#include <h2o.h>
#include <libpq-fe.h>
#include <stdbool.h>

/* Closes *sock (if any) and watches a new dup() of pg's socket on loop, with data as its
 * sock->data. Returns false (and *sock NULL) when pg has no socket or it cannot be duplicated. */
bool pgsock_attach(h2o_loop_t *loop, PGconn *pg, h2o_socket_t **sock, void *data);

/* One PQconnectPoll step: waits for the socket to be readable or writable again with cb.
 * Returns 0 while connecting, 1 once connected (pg is then non-blocking and cb is called on
 * every readable event from then on), -1 when the connect failed (PQerrorMessage says why). */
int pgsock_connect_step(h2o_loop_t *loop, PGconn *pg, h2o_socket_t **sock, void *data, h2o_socket_cb cb);

#endif
