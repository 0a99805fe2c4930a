/* pgsock.c — a libpq connection of its own on an h2o loop (see pgsock.h). */
#include "pgsock.h"

#include <fcntl.h>

bool pgsock_attach(h2o_loop_t *loop, PGconn *pg, h2o_socket_t **sock, void *data)
{
    if (*sock) h2o_socket_close(*sock);
    *sock = NULL;
    int fd = PQsocket(pg) >= 0 ? fcntl(PQsocket(pg), F_DUPFD_CLOEXEC, 0) : -1;
    if (fd < 0) return false;
    *sock = h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    (*sock)->data = data;
    return true;
}

int pgsock_connect_step(h2o_loop_t *loop, PGconn *pg, h2o_socket_t **sock, void *data, h2o_socket_cb cb)
{
    switch (PQconnectPoll(pg)) {
    case PGRES_POLLING_READING:
        if (!pgsock_attach(loop, pg, sock, data)) return -1;
        h2o_socket_read_start(*sock, cb);
        return 0;
    case PGRES_POLLING_WRITING:
        if (!pgsock_attach(loop, pg, sock, data)) return -1;
        h2o_socket_notify_write(*sock, cb);
        return 0;
    case PGRES_POLLING_OK:
        if (PQsetnonblocking(pg, 1) != 0 || !pgsock_attach(loop, pg, sock, data)) return -1;
        h2o_socket_read_start(*sock, cb); /* kept on: a closed connection is noticed while idle */
        return 1;
    default:
        return -1;
    }
}
