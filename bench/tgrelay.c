/*
 * tgrelay: the cheapest plain TCP relay, for the bulk ceiling of bench/run.sh.
 * One thread, one epoll loop.
 *
 *   tgrelay -l PORT -t IP:PORT [-d SECONDS]
 *
 * Listens on 127.0.0.1:PORT and connects each accepted connection to the
 * target, then copies bytes both ways through a 64 KiB buffer per direction
 * with read() and write(): what a TLS terminator has to do at least, since it
 * cannot splice. A FIN is passed on as shutdown(SHUT_WR) once the buffer
 * toward that side is empty; the pair is closed when both directions ended,
 * at once on an error or a reset. Exits after -d seconds (default 60).
 *
 * Sockets are registered once, edge-triggered, and each side keeps whether it
 * can be read or written: a read that fills less than the buffer, or a write
 * that takes less than it was given, leaves the socket drained or full, and
 * the next edge says when that changed. No system call is spent on finding
 * nothing.
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
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"

#define BUFSZ 65536

struct pair;

struct side {
    int fd;
    struct pair *p; /* NULL for the listening socket */
    bool can_read;
    bool can_write;
    bool is_eof;  /* read() returned 0 */
    bool is_shut; /* we sent our FIN */
};

/* Direction d copies from s[d] to s[1 - d] through buf[d]: 0 is client to
 * target, 1 target to client. */
struct pair {
    struct side s[2];
    char *buf[2];
    size_t off[2], len[2];
    bool is_closed;
    struct pair *next_dead;
};

static int ep;
static struct sockaddr_in target;
static struct pair *dead; /* closed in this batch of events, freed after it */
static long n_pairs, n_failed;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr, "usage: tgrelay -l PORT -t IP:PORT [-d SECONDS]\n");
    exit(2);
}

static void ep_add(struct side *s, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = s};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &e) < 0) {
        perror("epoll_ctl");
        exit(1);
    }
}

/* Closing a descriptor removes it from epoll; events of this batch that still
 * point at the pair find it closed. */
static void pair_close(struct pair *p, bool is_failed)
{
    if (p->is_closed)
        return;
    p->is_closed = true;
    for (int i = 0; i < 2; i++) {
        if (p->s[i].fd >= 0)
            close(p->s[i].fd);
        p->s[i].fd = -1;
    }
    if (is_failed)
        n_failed++;
    p->next_dead = dead;
    dead = p;
}

/* Moves what can be moved in direction d; false when the pair must close. */
static bool pump(struct pair *p, int d)
{
    struct side *src = &p->s[d], *dst = &p->s[1 - d];
    for (;;) {
        while (p->len[d] > 0) {
            if (!dst->can_write)
                return true;
            ssize_t n = write(dst->fd, p->buf[d] + p->off[d], p->len[d]);
            if (n < 0) {
                if (errno == EAGAIN) {
                    dst->can_write = false;
                    return true;
                }
                return false;
            }
            p->off[d] += (size_t)n;
            p->len[d] -= (size_t)n;
            if (p->len[d] > 0)
                dst->can_write = false;
        }
        if (src->is_eof) {
            if (!dst->is_shut) {
                dst->is_shut = true;
                if (shutdown(dst->fd, SHUT_WR) < 0)
                    return false;
            }
            return true;
        }
        if (!src->can_read)
            return true;
        ssize_t n = read(src->fd, p->buf[d], BUFSZ);
        if (n < 0) {
            if (errno == EAGAIN) {
                src->can_read = false;
                return true;
            }
            return false;
        }
        if (n == 0) {
            src->is_eof = true;
            continue;
        }
        p->off[d] = 0;
        p->len[d] = (size_t)n;
        if (n < BUFSZ)
            src->can_read = false;
    }
}

static void on_side(struct side *s, uint32_t ev)
{
    struct pair *p = s->p;
    if (p->is_closed)
        return;
    /* An error or hang-up shows in the next read() or write(). */
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        s->can_read = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        s->can_write = true;
    if (!pump(p, 0) || !pump(p, 1)) {
        pair_close(p, errno != ECONNRESET && errno != EPIPE);
        return;
    }
    if (p->s[0].is_eof && p->s[1].is_eof && p->len[0] == 0 && p->len[1] == 0)
        pair_close(p, false);
}

static void on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int tfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct pair *p = calloc(1, sizeof(*p));
        char *bufs = malloc(2 * BUFSZ);
        if (tfd < 0 || p == NULL || bufs == NULL) {
            perror("tgrelay: new connection");
            exit(1);
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(tfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        p->buf[0] = bufs;
        p->buf[1] = bufs + BUFSZ;
        p->s[0] = (struct side){.fd = fd, .p = p, .can_write = true};
        /* Not writable until the connect completes (EPOLLOUT). */
        p->s[1] = (struct side){.fd = tfd, .p = p};
        n_pairs++;
        if (connect(tfd, (struct sockaddr *)&target, sizeof(target)) < 0 && errno != EINPROGRESS) {
            pair_close(p, true);
            continue;
        }
        /* epoll reports what is already pending when a socket is added. */
        ep_add(&p->s[0], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
        ep_add(&p->s[1], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    }
}

static void free_dead(void)
{
    while (dead != NULL) {
        struct pair *p = dead;
        dead = p->next_dead;
        free(p->buf[0]);
        free(p);
    }
}

int main(int argc, char **argv)
{
    long port = 0;
    double secs = 60;
    bool have_target = false;
    int ch;
    while ((ch = getopt(argc, argv, "l:t:d:")) != -1) {
        switch (ch) {
        case 'l': {
            char *end;
            port = strtol(optarg, &end, 10);
            if (*end != '\0' || port < 1 || port > 65535)
                usage();
            break;
        }
        case 't':
            if (!bench_parse_addr(optarg, &target))
                usage();
            have_target = true;
            break;
        case 'd':
            secs = strtod(optarg, NULL);
            break;
        default:
            usage();
        }
    }
    if (port == 0 || !have_target || secs <= 0 || optind != argc)
        usage();
    bench_process_setup();

    ep = epoll_create1(EPOLL_CLOEXEC);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ep < 0 || lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        listen(lfd, 4096) < 0) {
        fprintf(stderr, "tgrelay: port %ld: %s\n", port, strerror(errno));
        return 1;
    }
    struct side listener = {.fd = lfd};
    ep_add(&listener, EPOLLIN);

    double t_end = now() + secs;
    struct epoll_event evs[256];
    for (;;) {
        double left = t_end - now();
        if (left <= 0)
            break;
        int n = epoll_wait(ep, evs, 256, left > 1 ? 1000 : (int)(left * 1000) + 1);
        for (int i = 0; i < n; i++) {
            struct side *s = evs[i].data.ptr;
            if (s->p == NULL)
                on_accept(s->fd);
            else
                on_side(s, evs[i].events);
        }
        free_dead();
    }
    printf("pairs=%ld failed=%ld\n", n_pairs, n_failed);
    return 0;
}
