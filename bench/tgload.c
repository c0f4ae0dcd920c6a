/*
 * tgload: a small TLS load generator for bench/run.sh.
 *
 * One thread, one epoll loop, N non-blocking connections. Modes:
 *   hs         new connection per request: full TLS handshake (or a resumed
 *              one with -r), one small request, read the answer, close.
 *   bulk-up    write application data as fast as the server takes it.
 *   bulk-down  read application data as fast as the server sends it.
 *              With -P both speak plain TCP, no TLS (the bench's relay ceiling).
 *   hold       open -n connections, complete the handshake (and one echo on
 *              tcp), print "held=N", keep them idle for -d seconds.
 *   rate       fixed request rate (-R per second) over -c keep-alive
 *              connections; reports latency percentiles measured from the
 *              scheduled send time (no coordinated omission).
 * Every run is bounded by -d seconds and, for hs, -n requests.
 * The result is one line of key=value pairs on stdout.
 *
 * The client never verifies the server's chain (that would load the client
 * core, not the server's); TLS 1.3 still checks the CertificateVerify
 * signature. Without -r the client session cache is off, so every handshake
 * is a full one; the "resumed" count proves it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "addr.h"

enum mode { M_HS, M_BULK_UP, M_BULK_DOWN, M_HOLD, M_RATE };
enum proto { P_TCP, P_HTTP };
enum st { S_FREE, S_CONNECTING, S_HANDSHAKE, S_SEND, S_RECV, S_IDLE, S_BULK };

struct conn {
    int fd;
    enum st st;
    SSL *ssl;
    SSL_SESSION *sess; /* last ticket received on this slot (-r) */
    double t_start;    /* when this connection or request started */
    double t_sched;    /* rate mode: scheduled time of the request in flight */
    double next_send;  /* rate mode: next scheduled send */
    size_t sent;       /* bytes of the request written */
    char in[4096];
    size_t in_len;
    bool is_counted; /* hold: already counted as held */
};

static struct {
    enum mode mode;
    enum proto proto;
    struct sockaddr_in addr;
    int conc;
    double secs;
    long max_count;
    bool resume;
    bool is_plain; /* bulk modes without TLS (-P) */
    const char *cert, *key;
    double rate;
    size_t chunk;
    long hold_n;
} opt = {.mode = M_HS, .proto = P_HTTP, .conc = 32, .secs = 5, .max_count = 0,
         .rate = 1000, .chunk = 16384, .hold_n = 1000};

static SSL_CTX *ctx;
static int ep;
static struct conn *conns;
static long n_ok, n_fail, n_resumed, n_started;
static uint64_t bytes;
static double *lat;
static size_t lat_n, lat_cap;
static char *bulk_buf;
static long held;
static const char *last_err = "";

static const char http_req_close[] = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
static const char http_req_ka[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
static const char tcp_msg[] = "0123456789abcdef0123456789abcdef0123456789abcdef012345678901234\n";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: tgload -m hs|bulk-up|bulk-down|hold|rate -a IP:PORT [-p http|tcp]\n"
            "              [-c CONC] [-d SECONDS] [-n COUNT] [-r] [-C CERT -K KEY]\n"
            "              [-R RATE] [-s CHUNK] [-P (plain TCP, bulk modes only)]\n");
    exit(2);
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct conn *c = SSL_get_app_data(ssl);
    if (c == NULL)
        return 0;
    SSL_SESSION_free(c->sess);
    c->sess = sess;
    return 1; /* we keep the reference */
}

static void ep_set(struct conn *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e) < 0) {
        perror("epoll_ctl");
        exit(1);
    }
}

/* Closes with a reset: no TIME_WAIT on the client's ports. */
static void conn_drop(struct conn *c)
{
    if (c->ssl != NULL) {
        /* Without this SSL_free marks the session (our ticket) unresumable. */
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(c->fd);
        c->fd = -1;
    }
    c->st = S_FREE;
}

static void conn_fail(struct conn *c, const char *why)
{
    n_fail++;
    last_err = why;
    conn_drop(c);
}

static void conn_start(struct conn *c)
{
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        n_fail++;
        last_err = "socket";
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->t_start = now();
    c->in_len = 0;
    c->sent = 0;
    c->is_counted = false;
    n_started++;
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &e) < 0) {
        perror("epoll_ctl add");
        exit(1);
    }
    c->st = S_CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&opt.addr, sizeof(opt.addr)) < 0 &&
        errno != EINPROGRESS) {
        conn_fail(c, "connect");
    }
}

/* Maps an SSL result to epoll interest; false on a hard error. */
static bool ssl_want(struct conn *c, int r)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) {
        ep_set(c, EPOLLIN);
        return true;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        ep_set(c, EPOLLOUT);
        return true;
    }
    unsigned long ec = ERR_peek_error();
    last_err = ec ? ERR_reason_error_string(ec) : (e == SSL_ERROR_ZERO_RETURN ? "eof" : "syscall");
    if (last_err == NULL)
        last_err = "ssl";
    ERR_clear_error();
    return false;
}

static void request_start(struct conn *c, double sched)
{
    c->st = S_SEND;
    c->sent = 0;
    c->in_len = 0;
    c->t_sched = sched;
}

static void lat_add(double v)
{
    if (lat_n == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 65536;
        lat = realloc(lat, lat_cap * sizeof(*lat));
        if (lat == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    lat[lat_n++] = v;
}

/* Whole answer in c->in? For http: head plus Content-Length body. */
static int answer_complete(struct conn *c)
{
    if (opt.proto == P_TCP)
        return c->in_len >= sizeof(tcp_msg) - 1 ? 1 : 0;
    c->in[c->in_len < sizeof(c->in) ? c->in_len : sizeof(c->in) - 1] = '\0';
    char *end = strstr(c->in, "\r\n\r\n");
    if (end == NULL)
        return c->in_len >= sizeof(c->in) - 1 ? -1 : 0;
    if (strncmp(c->in, "HTTP/1.1 200", 12) != 0 && strncmp(c->in, "HTTP/1.0 200", 12) != 0)
        return -1;
    size_t head = (size_t)(end - c->in) + 4;
    long clen = 0;
    for (char *p = c->in; p < end; p++) {
        if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0) {
            clen = strtol(p + 15, NULL, 10);
            break;
        }
    }
    return c->in_len >= head + (size_t)clen ? 1 : 0;
}

static void after_answer(struct conn *c)
{
    double t = now();
    n_ok++;
    if (opt.mode == M_HS) {
        if (SSL_session_reused(c->ssl))
            n_resumed++;
        conn_drop(c);
        return;
    }
    if (opt.mode == M_HOLD) {
        c->st = S_IDLE;
        if (!c->is_counted) {
            c->is_counted = true;
            held++;
        }
        ep_set(c, EPOLLIN);
        return;
    }
    /* M_RATE */
    lat_add(t - c->t_sched);
    c->st = S_IDLE;
    ep_set(c, EPOLLIN);
}

/* The bulk loop of S_BULK with write()/read() in place of SSL_write/SSL_read. */
static void bulk_plain(struct conn *c)
{
    for (int i = 0; i < 16; i++) {
        ssize_t r;
        if (opt.mode == M_BULK_UP)
            r = write(c->fd, bulk_buf, opt.chunk);
        else
            r = read(c->fd, bulk_buf, opt.chunk);
        if (r < 0 && errno == EAGAIN)
            return;
        if (r <= 0) {
            conn_fail(c, r == 0 ? "eof" : strerror(errno));
            return;
        }
        bytes += (uint64_t)r;
    }
}

static void conn_step(struct conn *c, uint32_t ev)
{
    for (;;) {
        switch (c->st) {
        case S_FREE:
            return;
        case S_CONNECTING: {
            int err = 0;
            socklen_t len = sizeof(err);
            if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
                conn_fail(c, "connect refused");
                return;
            }
            if (opt.is_plain) {
                c->st = S_BULK;
                ep_set(c, opt.mode == M_BULK_UP ? EPOLLOUT : EPOLLIN);
                break;
            }
            c->ssl = SSL_new(ctx);
            if (c->ssl == NULL) {
                conn_fail(c, "SSL_new");
                return;
            }
            SSL_set_app_data(c->ssl, c);
            SSL_set_fd(c->ssl, c->fd);
            SSL_set_connect_state(c->ssl);
            SSL_set_tlsext_host_name(c->ssl, "localhost");
            if (opt.resume && c->sess != NULL)
                SSL_set_session(c->ssl, c->sess);
            c->st = S_HANDSHAKE;
            break;
        }
        case S_HANDSHAKE: {
            int r = SSL_do_handshake(c->ssl);
            if (r != 1) {
                if (!ssl_want(c, r))
                    conn_fail(c, last_err);
                return;
            }
            if (opt.mode == M_BULK_UP || opt.mode == M_BULK_DOWN) {
                c->st = S_BULK;
                ep_set(c, opt.mode == M_BULK_UP ? EPOLLOUT : EPOLLIN);
                break;
            }
            request_start(c, now());
            if (opt.mode == M_RATE) {
                /* The first request only warms the connection up. */
                c->t_sched = -1;
            }
            break;
        }
        case S_SEND: {
            const char *req;
            size_t len;
            if (opt.proto == P_TCP) {
                req = tcp_msg;
                len = sizeof(tcp_msg) - 1;
            } else if (opt.mode == M_HS) {
                req = http_req_close;
                len = sizeof(http_req_close) - 1;
            } else {
                req = http_req_ka;
                len = sizeof(http_req_ka) - 1;
            }
            int r = SSL_write(c->ssl, req + c->sent, (int)(len - c->sent));
            if (r <= 0) {
                if (!ssl_want(c, r))
                    conn_fail(c, last_err);
                return;
            }
            c->sent += (size_t)r;
            if (c->sent < len)
                break;
            c->st = S_RECV;
            c->in_len = 0;
            break;
        }
        case S_RECV: {
            int r = SSL_read(c->ssl, c->in + c->in_len, (int)(sizeof(c->in) - 1 - c->in_len));
            if (r <= 0) {
                if (!ssl_want(c, r))
                    conn_fail(c, last_err);
                return;
            }
            c->in_len += (size_t)r;
            int done = answer_complete(c);
            if (done < 0) {
                conn_fail(c, "bad answer");
                return;
            }
            if (done == 0)
                break;
            if (opt.mode == M_RATE && c->t_sched < 0) {
                c->st = S_IDLE;
                ep_set(c, EPOLLIN);
                return;
            }
            after_answer(c);
            return;
        }
        case S_IDLE: {
            /* Nothing expected: a read means the peer closed or sent junk. */
            if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                return;
            char tmp[256];
            int r = SSL_read(c->ssl, tmp, sizeof(tmp));
            if (r > 0) {
                conn_fail(c, "unexpected data");
                return;
            }
            if (!ssl_want(c, r)) {
                if (c->is_counted)
                    held--;
                conn_fail(c, "closed while idle");
            }
            return;
        }
        case S_BULK: {
            if (opt.is_plain) {
                bulk_plain(c);
                return;
            }
            for (int i = 0; i < 16; i++) {
                int r;
                if (opt.mode == M_BULK_UP)
                    r = SSL_write(c->ssl, bulk_buf, (int)opt.chunk);
                else
                    r = SSL_read(c->ssl, bulk_buf, (int)opt.chunk);
                if (r <= 0) {
                    if (!ssl_want(c, r))
                        conn_fail(c, last_err);
                    return;
                }
                bytes += (uint64_t)r;
            }
            return;
        }
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double p)
{
    if (lat_n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(lat_n - 1) + 0.5);
    return lat[i];
}

int main(int argc, char **argv)
{
    int ch;
    bool have_addr = false;
    while ((ch = getopt(argc, argv, "m:a:p:c:d:n:rC:K:R:s:P")) != -1) {
        switch (ch) {
        case 'm':
            if (strcmp(optarg, "hs") == 0)
                opt.mode = M_HS;
            else if (strcmp(optarg, "bulk-up") == 0)
                opt.mode = M_BULK_UP;
            else if (strcmp(optarg, "bulk-down") == 0)
                opt.mode = M_BULK_DOWN;
            else if (strcmp(optarg, "hold") == 0)
                opt.mode = M_HOLD;
            else if (strcmp(optarg, "rate") == 0)
                opt.mode = M_RATE;
            else
                usage();
            break;
        case 'a':
            if (!bench_parse_addr(optarg, &opt.addr))
                usage();
            have_addr = true;
            break;
        case 'p':
            if (strcmp(optarg, "http") == 0)
                opt.proto = P_HTTP;
            else if (strcmp(optarg, "tcp") == 0)
                opt.proto = P_TCP;
            else
                usage();
            break;
        case 'c':
            opt.conc = (int)strtol(optarg, NULL, 10);
            break;
        case 'd':
            opt.secs = strtod(optarg, NULL);
            break;
        case 'n':
            opt.max_count = strtol(optarg, NULL, 10);
            break;
        case 'r':
            opt.resume = true;
            break;
        case 'C':
            opt.cert = optarg;
            break;
        case 'K':
            opt.key = optarg;
            break;
        case 'R':
            opt.rate = strtod(optarg, NULL);
            break;
        case 's':
            opt.chunk = (size_t)strtoul(optarg, NULL, 10);
            break;
        case 'P':
            opt.is_plain = true;
            break;
        default:
            usage();
        }
    }
    if (!have_addr || opt.conc < 1 || opt.secs <= 0 || opt.chunk < 1 || opt.rate <= 0)
        usage();
    if (opt.is_plain && opt.mode != M_BULK_UP && opt.mode != M_BULK_DOWN)
        usage();
    bench_process_setup();

    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set1_groups_list(ctx, "X25519");
    /* The suite browsers prefer; the AES-128-GCM ceiling applies. */
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (opt.resume) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    } else {
        /* Tickets are still issued by the server, as for real clients. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    if (opt.cert != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, opt.cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, opt.key ? opt.key : opt.cert, SSL_FILETYPE_PEM) != 1) {
            fprintf(stderr, "tgload: cannot load client certificate %s\n", opt.cert);
            ERR_print_errors_fp(stderr);
            return 1;
        }
    }

    long nslots = opt.mode == M_HOLD ? opt.hold_n : opt.conc;
    if (opt.mode == M_HOLD && opt.max_count > 0)
        nslots = opt.max_count;
    conns = calloc((size_t)nslots, sizeof(*conns));
    bulk_buf = malloc(opt.chunk);
    if (conns == NULL || bulk_buf == NULL) {
        perror("calloc");
        return 1;
    }
    memset(bulk_buf, 'x', opt.chunk);
    for (long i = 0; i < nslots; i++) {
        conns[i].fd = -1;
        conns[i].st = S_FREE;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);

    double t0 = now();
    double t_end = t0 + opt.secs;
    double t_meas = t0; /* rate, bulk: measured from here */
    long opened = 0;    /* hold: connections started so far */
    bool is_held_reported = false;
    double interval = 0;
    if (opt.mode == M_RATE) {
        interval = (double)opt.conc / opt.rate; /* per connection */
        for (long i = 0; i < nslots; i++)
            conn_start(&conns[i]);
        /* Warm up: every connection completes its handshake and one request. */
        double t_warm = now() + 10;
        while (now() < t_warm) {
            int idle = 0;
            for (long i = 0; i < nslots; i++)
                idle += conns[i].st == S_IDLE;
            if (idle == nslots)
                break;
            struct epoll_event evs[256];
            int n = epoll_wait(ep, evs, 256, 10);
            for (int i = 0; i < n; i++)
                conn_step(evs[i].data.ptr, evs[i].events);
        }
        n_ok = 0;
        t_meas = now();
        t_end = t_meas + opt.secs;
        for (long i = 0; i < nslots; i++)
            conns[i].next_send = t_meas + interval * (double)i / (double)nslots;
    } else if (opt.mode != M_HOLD) {
        for (long i = 0; i < nslots; i++)
            conn_start(&conns[i]);
    }

    struct epoll_event evs[512];
    double t_hold_until = 0;
    for (;;) {
        double t = now();
        if (opt.mode == M_HOLD) {
            /* Keep at most opt.conc handshakes in flight. */
            long busy = 0;
            for (long i = 0; i < opened; i++)
                busy += conns[i].st != S_IDLE && conns[i].st != S_FREE;
            while (opened < nslots && busy < opt.conc) {
                conn_start(&conns[opened++]);
                busy++;
            }
            if (!is_held_reported && held == nslots) {
                printf("held=%ld secs=%.3f\n", held, t - t0);
                fflush(stdout);
                is_held_reported = true;
                t_hold_until = t + opt.secs;
            }
            if (is_held_reported && t >= t_hold_until)
                break;
            if (!is_held_reported && t >= t0 + 120) {
                last_err = "hold: timed out opening connections";
                break;
            }
        } else {
            if (t >= t_end)
                break;
            if (opt.max_count > 0 && n_ok >= opt.max_count)
                break;
        }
        if (opt.mode == M_HS || opt.mode == M_BULK_UP || opt.mode == M_BULK_DOWN) {
            for (long i = 0; i < nslots; i++) {
                if (conns[i].st == S_FREE)
                    conn_start(&conns[i]);
                else if (conns[i].st != S_BULK && t - conns[i].t_start > 10)
                    conn_fail(&conns[i], "timeout");
            }
        }
        int timeout_ms = 50;
        if (opt.mode == M_RATE) {
            double next = t_end;
            for (long i = 0; i < nslots; i++) {
                struct conn *c = &conns[i];
                if (c->st == S_FREE) {
                    continue;
                }
                if (c->st == S_IDLE && c->next_send <= t) {
                    request_start(c, c->next_send);
                    c->next_send += interval;
                    conn_step(c, 0);
                }
                if (c->st == S_IDLE && c->next_send < next)
                    next = c->next_send;
            }
            double w = (next - now()) * 1000;
            timeout_ms = w <= 0 ? 0 : (w < 1 ? 1 : (int)w);
        }
        int n = epoll_wait(ep, evs, 512, timeout_ms);
        for (int i = 0; i < n; i++)
            conn_step(evs[i].data.ptr, evs[i].events);
    }
    double elapsed = now() - t_meas;

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

    printf("ok=%ld fail=%ld resumed=%ld secs=%.3f rate=%.1f mbps=%.2f cpu_s=%.3f", n_ok, n_fail,
           n_resumed, elapsed, (double)n_ok / elapsed, (double)bytes / elapsed / 1e6, cpu);
    if (opt.mode == M_RATE) {
        qsort(lat, lat_n, sizeof(*lat), cmp_double);
        printf(" samples=%zu p50_ms=%.3f p99_ms=%.3f max_ms=%.3f", lat_n, pct(0.5) * 1000,
               pct(0.99) * 1000, lat_n ? lat[lat_n - 1] * 1000 : 0.0);
    }
    if (opt.mode == M_HOLD)
        printf(" held=%ld", held);
    printf(" last_err=\"%s\"\n", n_fail ? last_err : "");
    fflush(stdout);
    /* Exit without closing: the kernel resets what is left. */
    _exit(0);
}
