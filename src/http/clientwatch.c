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

static h2o_socket_t *http1_socket(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL) return NULL;
    return req->conn->callbacks->get_socket(req->conn);
}

/* HTTP/1 only: an HTTP/2 connection carries other streams' frames, and a stream that is given up
 * is reset by the client, which h2o turns into the request's disposal. */
void clientwatch_start(struct clientwatch *cw, h2o_req_t *req, h2o_loop_t *loop, void (*on_gone)(void *),
                       void *arg)
{
    cw->sock = NULL;
    h2o_socket_t *client = http1_socket(req);
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

/* Input that arrives meanwhile (a pipelined request, the peer's close) is left in the kernel: the
 * socket does not read while parked, since h2o's request points into its input buffer, which a
 * read may move or replace. The socket then leaves the poll set, so that a level-triggered
 * registration does not spin, and h2o reads the input once it has answered. */
static void on_early_input(h2o_socket_t *sock, const char *err)
{
    h2o_socket_dont_read(sock, 0);
    h2o_socket_read_stop(sock);
}

void clientwatch_keep_polled(h2o_req_t *req)
{
    h2o_socket_t *sock = http1_socket(req);
    if (sock == NULL || h2o_socket_is_reading(sock)) return;
    h2o_socket_dont_read(sock, 1);
    h2o_socket_read_start(sock, on_early_input);
}

/* As the answer starts, the socket is given back to h2o as h2o left it (not reading, reads
 * allowed). h2o starts reading again once the answer is written: in the same turn when it is
 * written at once, so the poll set does not change. */
static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    h2o_socket_t *sock = http1_socket(req);
    if (sock != NULL && sock->_cb.read == on_early_input) on_early_input(sock, NULL);
    h2o_setup_next_ostream(req, slot);
}

void clientwatch_register(h2o_pathconf_t *pathconf)
{
    h2o_create_filter(pathconf, sizeof(h2o_filter_t))->on_setup_ostream = on_setup_ostream;
}
