#include "proxy/echo.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/*
 * builtin:echo for tcp_ssl: the far end of a socket pair, in the same loop,
 * that sends back every byte it reads and shuts its write side after the
 * EOF, with the same fixed-buffer backpressure as a real backend.
 */
struct echo {
    int fd;
    ev_io io;
    struct buf b; /* owned */
    bool rd_shut;
};

static void echo_free(struct ev_loop *loop, struct echo *e)
{
    ev_io_stop(loop, &e->io);
    close(e->fd);
    buf_fini(&e->b);
    free(e);
}

static void echo_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct echo *e = io->data;
    bool progress;
    do {
        progress = false;
        if (!e->rd_shut && !buf_is_full(&e->b)) {
            size_t room;
            uint8_t *dst = buf_wspace(&e->b, &room);
            ssize_t n = recv(e->fd, dst, room, 0);
            if (n > 0) {
                buf_commit(&e->b, (size_t)n);
                progress = true;
            } else if (n == 0) {
                e->rd_shut = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                echo_free(loop, e);
                return;
            }
        }
        if (!buf_is_empty(&e->b)) {
            size_t len;
            const uint8_t *src = buf_rdata(&e->b, &len);
            ssize_t n = send(e->fd, src, len, MSG_NOSIGNAL);
            if (n > 0) {
                buf_consume(&e->b, (size_t)n);
                progress = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                echo_free(loop, e);
                return;
            }
        }
    } while (progress);
    if (e->rd_shut && buf_is_empty(&e->b)) {
        shutdown(e->fd, SHUT_WR);
        echo_free(loop, e);
        return;
    }
    int events =
        (!e->rd_shut && !buf_is_full(&e->b) ? EV_READ : 0) | (!buf_is_empty(&e->b) ? EV_WRITE : 0);
    ev_io_stop(loop, &e->io);
    ev_io_set(&e->io, e->fd, events);
    ev_io_start(loop, &e->io);
}

enum tg_status echo_open(struct worker *w, bool is_http, int *fd)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        return TG_E_INTERNAL;
    if (is_http) {
        if (echo_http_open(w, sv[1]) != TG_OK) {
            close(sv[0]);
            close(sv[1]);
            errno = ENOMEM;
            return TG_E_NOMEM;
        }
        *fd = sv[0];
        return TG_OK;
    }
    struct echo *e = calloc(1, sizeof(*e));
    if (e == NULL || buf_init(&e->b, WORKER_BUF_SIZE) != TG_OK) {
        free(e);
        close(sv[0]);
        close(sv[1]);
        errno = ENOMEM;
        return TG_E_NOMEM;
    }
    e->fd = sv[1];
    ev_io_init(&e->io, echo_cb, e->fd, EV_READ);
    e->io.data = e;
    ev_io_start(w->loop, &e->io);
    *fd = sv[0];
    return TG_OK;
}
