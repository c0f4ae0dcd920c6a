#ifndef TG_PROXY_CONN_H
#define TG_PROXY_CONN_H

/* Private to src/proxy: the worker and the proxied connection. */

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "lb/lb.h"
#include "proxy/proxy.h"

#define CONN_BUF_SIZE (16 * 1024)

/* States of a proxied connection; see docs/ARCHITECTURE.md for the diagram. */
enum conn_state {
    CONN_ST_ACCEPTED,
    CONN_ST_TLS_HANDSHAKE,
    CONN_ST_PICK,
    CONN_ST_CONNECT,
    CONN_ST_RELAY,
    CONN_ST_DRAIN,
    CONN_ST_CLOSED,
    CONN_ST_COUNT
};

struct worker;

/* A listener as one worker runs it. */
struct wlistener {
    struct worker *w;               /* borrowed */
    const struct cfg_listener *cfg; /* borrowed */
    int fd;                         /* borrowed from the master */
    struct tls_server *tls;         /* borrowed */
    struct shm_listener_stats *stats;
    struct lb_wrr wrr; /* owned state of the target group's picker */
    ev_io accept_w;
};

/* One end of a connection. rd_shut: we saw its EOF; wr_shut: we shut our
 * writing toward it. */
struct side {
    int fd;
    ev_io io;
    int events; /* EV_READ|EV_WRITE currently registered */
    bool rd_shut;
    bool wr_shut;
};

/* A proxied connection. Owns its sockets, SSL, buffers and timer; only
 * conn_run() frees it, when a handler returns CONN_ST_CLOSED. */
struct conn {
    struct worker *w;         /* borrowed */
    struct wlistener *l;      /* borrowed */
    struct conn *prev, *next; /* the worker's list */
    uint64_t id;
    enum conn_state st;
    struct side cli; /* the client, over TLS */
    struct side be;  /* the backend, plaintext */
    SSL *ssl;
    enum tls_want want; /* what the last TLS call on cli waits for */
    struct tls_verdict verdict;
    struct buf c2b; /* client to backend */
    struct buf b2c; /* backend to client */
    ev_timer timer; /* the current waiting state's deadline */
    bool timed_out;
    ev_tstamp last_activity;
    ev_tstamp t_accept, t_handshake;
    int target;     /* index into the group, -1 before PICK */
    uint32_t tried; /* bit i: target i failed to connect (first 32 targets) */
    unsigned n_tried;
    struct net_addr peer;  /* the client */
    struct net_addr local; /* the address it connected to */
    uint64_t bytes_in, bytes_out;
    const char *outcome; /* for the access log: "ok", a reason code, ... */
    const char *reject_reason;
};

/* The worker process: one loop, its listeners and connections. */
struct worker {
    struct ev_loop *loop;
    const struct config *cfg;
    struct wlistener *ls; /* owned array, cfg->n_listeners */
    size_t n_ls;
    struct conn *conns; /* owned list */
    size_t n_conns;
    uint64_t next_id;
    bool is_draining;
    ev_timer drain_timer;
    ev_timer accept_pause; /* accept paused after EMFILE */
    ev_signal sig_term, sig_quit, sig_usr1, sig_hup;
};

/* conn.c */
struct conn *conn_new(struct worker *w, struct wlistener *l, int fd, const struct net_addr *peer);
void conn_run(struct conn *c);
void conn_set_timer(struct conn *c, uint64_t ms);
const char *conn_state_name(enum conn_state st);

/* tcp.c: the tcp_ssl handlers */
enum conn_state tcp_pick(struct conn *c);
enum conn_state tcp_connect(struct conn *c);
enum conn_state tcp_relay(struct conn *c);

/* echo.c: builtin:echo; *fd gets our end of a connected socket pair whose
 * other end echoes every byte (and the EOF) back. */
TG_MUST_USE enum tg_status echo_open(struct worker *w, int *fd);

#endif
