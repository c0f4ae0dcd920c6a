/*
 * tgback: the plaintext backend for bench/run.sh. One thread, one epoll loop.
 *
 *   tgback HTTP_PORT ECHO_PORT SINK_PORT SOURCE_PORT
 *
 * HTTP_PORT    HTTP/1.1 keep-alive: every request head (no body) gets a fixed
 *              200 answer with a 13-byte body; "Connection: close" closes.
 * ECHO_PORT    echoes bytes back, with backpressure.
 * SINK_PORT    reads and discards.
 * SOURCE_PORT  sends 64 KiB chunks for as long as the peer reads.
 * Listens on 127.0.0.1 only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum kind { K_LISTEN_HTTP, K_LISTEN_ECHO, K_LISTEN_SINK, K_LISTEN_SOURCE, K_HTTP, K_ECHO, K_SINK, K_SOURCE };

#define BUFSZ 65536

struct conn {
    enum kind kind;
    char *buf; /* input (http, echo) */
    size_t len;
    const char *out; /* pending output */
    size_t out_len;
    bool is_closing; /* close once out is written */
};

static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
                           "hello, world\n";
static char *source_buf;
static int ep;
static struct conn **conns;
static int max_fd;

static void set_ev(int fd, uint32_t ev, int op)
{
    struct epoll_event e = {.events = ev, .data.fd = fd};
    if (epoll_ctl(ep, op, fd, &e) < 0) {
        perror("epoll_ctl");
        exit(1);
    }
}

static void drop(int fd)
{
    struct conn *c = conns[fd];
    if (c != NULL) {
        free(c->buf);
        free(c);
        conns[fd] = NULL;
    }
    close(fd);
}

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0) {
        fprintf(stderr, "tgback: port %d: %s\n", port, strerror(errno));
        exit(1);
    }
    return fd;
}

/* Writes pending output; returns false when the connection was dropped. */
static bool flush_out(int fd, struct conn *c)
{
    while (c->out_len > 0) {
        ssize_t n = write(fd, c->out, c->out_len);
        if (n < 0) {
            if (errno == EAGAIN)
                return true;
            drop(fd);
            return false;
        }
        c->out += n;
        c->out_len -= (size_t)n;
    }
    if (c->is_closing) {
        drop(fd);
        return false;
    }
    return true;
}

static void on_http(int fd, struct conn *c)
{
    if (c->out_len > 0 && !flush_out(fd, c))
        return;
    if (c->out_len > 0) {
        set_ev(fd, EPOLLOUT, EPOLL_CTL_MOD);
        return;
    }
    ssize_t n = read(fd, c->buf + c->len, BUFSZ - 1 - c->len);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        drop(fd);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    /* Answer every complete head; requests carry no body here. */
    size_t answers = 0;
    char *p = c->buf;
    for (;;) {
        char *end = strstr(p, "\r\n\r\n");
        if (end == NULL)
            break;
        for (char *q = p; q < end; q++) {
            if ((q == p || q[-1] == '\n') && strncasecmp(q, "connection: close", 17) == 0)
                c->is_closing = true;
        }
        answers++;
        p = end + 4;
    }
    size_t rest = c->len - (size_t)(p - c->buf);
    memmove(c->buf, p, rest);
    c->len = rest;
    if (c->len == BUFSZ - 1) {
        drop(fd);
        return;
    }
    if (answers == 0)
        return;
    static char many[sizeof(resp) * 64];
    if (answers > 64)
        answers = 64;
    for (size_t i = 0; i < answers; i++)
        memcpy(many + i * (sizeof(resp) - 1), resp, sizeof(resp) - 1);
    c->out = many;
    c->out_len = answers * (sizeof(resp) - 1);
    if (!flush_out(fd, c))
        return;
    /* Answers are tiny; a short write into an empty socket buffer means the
     * peer is not reading: give up on it rather than keep a copy. */
    if (c->out_len > 0)
        drop(fd);
}

static void on_echo(int fd, struct conn *c)
{
    if (c->out_len > 0) {
        if (!flush_out(fd, c))
            return;
        if (c->out_len > 0)
            return;
        c->len = 0;
        set_ev(fd, EPOLLIN, EPOLL_CTL_MOD);
    }
    ssize_t n = read(fd, c->buf, BUFSZ);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        drop(fd);
        return;
    }
    c->out = c->buf;
    c->out_len = (size_t)n;
    if (!flush_out(fd, c))
        return;
    if (c->out_len > 0)
        set_ev(fd, EPOLLOUT, EPOLL_CTL_MOD);
}

static void on_sink(int fd)
{
    static char tmp[BUFSZ];
    for (int i = 0; i < 8; i++) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            drop(fd);
            return;
        }
    }
}

static void on_source(int fd, uint32_t ev)
{
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        char tmp[4096];
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            drop(fd);
            return;
        }
    }
    if (!(ev & EPOLLOUT))
        return;
    for (int i = 0; i < 8; i++) {
        ssize_t n = write(fd, source_buf, BUFSZ);
        if (n < 0) {
            if (errno != EAGAIN)
                drop(fd);
            return;
        }
    }
}

static void on_accept(int lfd, enum kind k)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (fd >= max_fd) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        c->kind = k;
        if (k == K_HTTP || k == K_ECHO)
            c->buf = malloc(BUFSZ);
        conns[fd] = c;
        set_ev(fd, k == K_SOURCE ? EPOLLIN | EPOLLOUT : EPOLLIN, EPOLL_CTL_ADD);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: tgback HTTP_PORT ECHO_PORT SINK_PORT SOURCE_PORT\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    max_fd = (int)rl.rlim_cur;
    conns = calloc((size_t)max_fd, sizeof(*conns));
    source_buf = malloc(BUFSZ);
    memset(source_buf, 'y', BUFSZ);
    ep = epoll_create1(EPOLL_CLOEXEC);
    int lfd[4];
    for (int i = 0; i < 4; i++) {
        lfd[i] = listen_on((int)strtol(argv[i + 1], NULL, 10));
        struct conn *c = calloc(1, sizeof(*c));
        c->kind = (enum kind)i;
        conns[lfd[i]] = c;
        set_ev(lfd[i], EPOLLIN, EPOLL_CTL_ADD);
    }
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            struct conn *c = conns[fd];
            if (c == NULL)
                continue;
            switch (c->kind) {
            case K_LISTEN_HTTP:
            case K_LISTEN_ECHO:
            case K_LISTEN_SINK:
            case K_LISTEN_SOURCE:
                on_accept(fd, (enum kind)(c->kind + 4));
                break;
            case K_HTTP:
                on_http(fd, c);
                break;
            case K_ECHO:
                on_echo(fd, c);
                break;
            case K_SINK:
                on_sink(fd);
                break;
            case K_SOURCE:
                on_source(fd, evs[i].events);
                break;
            }
        }
    }
}
