#ifndef TG_PROXY_WORKER_H
#define TG_PROXY_WORKER_H

/* Private to src/proxy: the worker process as its connections see it: its
 * loop, listeners, shared state and the pool of buffer blocks. */

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "proxy/proxy.h"

#define WORKER_BUF_SIZE (16 * 1024)

struct session;
struct lb_state;
struct bpool;
struct betls;
struct ocspc;

/* A listener as one worker runs it. */
struct wlistener {
    struct worker *w;               /* borrowed */
    const struct cfg_listener *cfg; /* borrowed */
    int fd;                         /* borrowed from the master */
    struct tls_server *tls;         /* borrowed */
    struct shm_listener_stats *stats;
    ev_io accept_w;
    struct wsite *sites; /* owned: one per site of the listener's tls (none for http) */
    size_t n_sites;
};

/* A listener's site (struct cfg_site) as the worker watches it. */
struct wsite {
    struct tls_trust_watch watch; /* mutual: the client CA's files */
    ev_tstamp next_trust_check;
    uint64_t stale_judged; /* tls_trust_serial whose CRL nextUpdate passing was judged */
    ev_tstamp next_allow_check;
    /* client_ca_next: the next trust as loaded (one reference; NULL when
     * the site has none or it does not load) and its files' watch. */
    struct tls_trust *next;
    struct tls_trust_watch next_watch;
    ev_tstamp next_next_check;
};

/* The clients a worker reported to client_ca_next's judgement, so that
 * each is logged once an hour (a bounded table, newest wins a slot). */
#define WORKER_NEXT_SEEN 4096
struct next_seen {
    uint8_t fp[32];
    uint32_t listener;
    int64_t logged; /* unix seconds; 0: free */
};

/* The worker process: one loop, its listeners and connections. */
struct worker {
    struct ev_loop *loop;
    const struct config *cfg;
    struct wlistener *ls; /* owned array, cfg->n_listeners */
    size_t n_ls;
    struct session *conns; /* owned list */
    size_t n_conns;
    uint64_t next_id;
    bool is_draining;
    ev_timer drain_timer;
    ev_timer accept_pause; /* accept paused after EMFILE */
    ev_timer trust_tick;   /* mutual listeners: trust files and certificate expiry, every second */
    int64_t next_expiry;   /* the earliest cert_not_after of the connections; 0 = none */
    size_t n_cut_pending;  /* connections with a cut_deadline */
    ev_signal sig_term, sig_quit, sig_usr1, sig_usr2, sig_hup;
    /* Sessions that asked to run once more before the loop next waits
     * (session_defer), and the watcher that runs them. */
    struct session *deferred, *deferred_later;
    ev_prepare run_deferred;
    bool in_deferred;            /* the sessions being run are the deferred ones */
    struct lb_state *lb;         /* owned picker state for cfg's target groups */
    struct bpool *bpool;         /* owned idle backend connections */
    struct betls *betls;         /* owned backend TLS contexts and sessions, made on first use */
    struct ocspc *ocspc;         /* owned; NULL when no listener checks client OCSP */
    struct history *history;     /* owned; NULL when no trust history is kept */
    struct next_seen *next_seen; /* owned, WORKER_NEXT_SEEN; NULL when no site has a next CA */
    uint8_t **pool;              /* owned free WORKER_BUF_SIZE blocks */
    size_t n_pool;
    size_t pool_cap;
};

/* Gives b a WORKER_BUF_SIZE block from the worker's pool if it has none.
 * False when out of memory. */
bool worker_buf_get(struct worker *w, struct buf *b);

/* Gives b at least need bytes of free room: a pooled block when need fits
 * one, else a one-off block of need bytes (freed, not pooled, when put
 * back). False when out of memory, or when b holds unread bytes in a
 * block too small. */
bool worker_buf_get_room(struct worker *w, struct buf *b, size_t need);

/* Frees b's one-off block as soon as b is empty, so that a large head
 * costs its memory only while it is sent. */
void worker_buf_shrink(struct worker *w, struct buf *b);

/* Returns b's block to the pool when b is empty, so that an idle
 * connection holds no buffer memory. */
void worker_buf_put(struct worker *w, struct buf *b);

#endif
