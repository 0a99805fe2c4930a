/* clientwatch.c — notices a client that hung up while its request waits on the database. */
#include "clientwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_readable(h2o_socket_t *sock, const char *err)
{
    struct clientwatch *cw = sock->data;
    char c;
    ssize_t n = recv(h2o_socket_get_fd(sock), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) {
        /* Data (a pipelined next request) or nothing yet: the watch cannot tell more, and a
         * level-triggered watch on unread data would spin, so it ends here. */
        if (n > 0) clientwatch_stop(cw);
        return;
    }
    void (*on_gone)(void *) = cw->on_gone;
    void *arg = cw->arg;
    clientwatch_stop(cw);
    on_gone(arg);
}

void clientwatch_start(struct clientwatch *cw, h2o_req_t *req, h2o_loop_t *loop, void (*on_gone)(void *),
                       void *arg)
{
    cw->sock = NULL;
    if (req->conn->callbacks->get_socket == NULL) return;
    h2o_socket_t *client = req->conn->callbacks->get_socket(req->conn);
    int fd = client ? h2o_socket_get_fd(client) : -1;
    if (fd < 0 || (fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) return;
    cw->on_gone = on_gone;
    cw->arg = arg;
    cw->sock = h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    cw->sock->data = cw;
    h2o_socket_read_start(cw->sock, on_readable);
}

void clientwatch_stop(struct clientwatch *cw)
{
    if (cw->sock == NULL) return;
    h2o_socket_read_stop(cw->sock);
    h2o_socket_close(cw->sock);
    cw->sock = NULL;
}

/* Input that arrives meanwhile (a pipelined request, the peer's close) stays in the socket's
 * buffer, where h2o looks first when it reads the next request; only then does the socket leave
 * the poll set, so a level-triggered registration does not spin. */
static void on_early_input(h2o_socket_t *sock, const char *err)
{
    h2o_socket_read_stop(sock);
}

void clientwatch_keep_polled(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL) return;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock != NULL && !h2o_socket_is_reading(sock)) h2o_socket_read_start(sock, on_early_input);
}
