#ifndef TG_PROXY_SESSION_H
#define TG_PROXY_SESSION_H

/* Private to src/proxy: a session, one client connection, and the
 * table of functions of its listener protocol (struct proto_ops). */

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proxy/proxy.h"
#include "proxy/worker.h"

#define CONN_LINGER_MAX_BYTES (64u * 1024 * 1024) /* discarded at most in a lingering close */

/* States of a proxied connection; see docs/ARCHITECTURE.md for the diagram. */
enum conn_state {
    CONN_ST_ACCEPTED,
    CONN_ST_TLS_HANDSHAKE,
    CONN_ST_PICK,
    CONN_ST_CONNECT,
    CONN_ST_RELAY,
    CONN_ST_READ_HEAD, /* https/http: waiting for a request head */
    CONN_ST_RESPOND,   /* https/http: writing a response tollgate made */
    CONN_ST_DRAIN,
    CONN_ST_CLOSED,
    CONN_ST_COUNT
};

/* What became of a tcp_ssl connection or an https request: the access
 * log's "outcome" (conn_outcome_name). */
enum conn_outcome {
    CONN_OUT_OK,
    CONN_OUT_TLS_REJECTED,
    CONN_OUT_CLIENT_CLOSED,
    CONN_OUT_CLIENT_RESET,
    CONN_OUT_CLIENT_TLS_ERROR,
    CONN_OUT_ALL_TARGETS_DOWN,
    CONN_OUT_NO_TARGET,
    CONN_OUT_BACKEND_TLS_FAILED,
    CONN_OUT_BACKEND_RESET,
    CONN_OUT_BACKEND_TRUNCATED,
    CONN_OUT_BAD_GATEWAY,
    CONN_OUT_HTTP_ERROR,
    CONN_OUT_IDLE_TIMEOUT,
    CONN_OUT_RESPONSE_TIMEOUT,
    CONN_OUT_REVOKED,
    CONN_OUT_EXPIRED,
    CONN_OUT_OUT_OF_MEMORY,
    CONN_OUT_INTERNAL_ERROR,
    CONN_OUT_COUNT
};

/* The access-log name of o: "ok", "tls_rejected", "no_target", ... */
const char *conn_outcome_name(enum conn_outcome o);

/* How a connection is named in the event log: "conn=" CONN_FMT's pid and
 * connection id (tg_pid(), (unsigned long long)c->id). */
#define CONN_FMT "conn=%d.%llu"

/* One end of a connection. rd_shut: we saw its EOF; wr_shut: we shut our
 * writing toward it. can_read: a read may find bytes; set when the loop
 * reports the socket readable, cleared only when a read found it empty
 * (EAGAIN, or TLS wanting more from the socket), so while it is clear no
 * complete record waits inside OpenSSL either and waiting for EV_READ is
 * safe. */
struct side {
    int fd;
    ev_io io;
    int events; /* EV_READ|EV_WRITE currently registered */
    bool rd_shut;
    bool wr_shut;
    bool can_read;
    bool drained;     /* TLS: the socket's last read() emptied it (tls_report_reads) */
    bool wrote_ready; /* the loop reported it writable since this was last cleared */
};

/* Points a stopped watcher at a descriptor that has stayed open since a
 * watcher of this loop last registered it (a backend connection moving to
 * or from the pool): unlike ev_io_set(), this lets libev trust its kernel
 * state, so taking the same interest back costs no epoll_ctl(). A new
 * descriptor, even one with a recycled number, needs ev_io_set(). */
static inline void side_reuse_fd(ev_io *io, int fd, int events)
{
    ev_io_set(io, fd, events);
    io->events &= ~EV__IOFDSET;
}

struct session;
struct exchange;

typedef enum conn_state (*conn_handler)(struct session *s);

/* What the values in access_fields mean to session_access_log(). */
struct access_fields {
    ev_tstamp start;            /* the line's start: the session's accept when 0 */
    uint64_t base_in, base_out; /* bytes counted before this line: it counts those after */
    char *extra;                /* the protocol's JSON fields, each starting with ',' */
    size_t extra_len;
};

/*
 * A listener protocol: what its sessions do once the client's side is up.
 * One table per protocol (tcp.c, http1.c), chosen when a session is made
 * (proto_ops_for()); the generic session code calls only these. Every
 * function is set.
 */
struct proto_ops {
    const char *name;
    size_t size;       /* bytes of the session with the protocol's own state after it */
    bool echo_http;    /* builtin:echo answers HTTP requests rather than echoing bytes */
    bool is_lingering; /* DRAIN discards what the client still sends (RFC 9112 §9.6) */
    /* Fills the protocol's state after the session's, sets s->ex. */
    TG_MUST_USE enum tg_status (*init)(struct session *s);
    /* Frees the protocol's state and its exchanges. */
    void (*fini)(struct session *s);
    /* The client's side is up (TLS done, or accepted on a plain listener):
     * the first state of the protocol. */
    enum conn_state (*on_established)(struct session *s);
    /* Handlers of the states past the handshake other than DRAIN and
     * CLOSED; NULL for a state the protocol never enters. */
    conn_handler step[CONN_ST_COUNT];
    /* Arms the timer of a protocol state being entered (session_set_timer). */
    void (*on_enter)(struct session *s, enum conn_state st);
    /* Read/write interest on the client (*ce) and the backend of s->ex
     * (*be) in a protocol state, from the buffers' fill. */
    void (*interest)(struct session *s, int *ce, int *be);
    /* The idle time in seconds of the current state when its timer slides
     * with activity (re-armed for what is left), 0 when it is a deadline. */
    ev_tstamp (*idle_timeout)(const struct session *s);
    /* The status the target answered the exchange that leaves RELAY with,
     * for passive checks; 0 for none. */
    unsigned (*passive_status)(const struct session *s);
    /* The client's certificate was judged invalid: true when the session
     * ends after its request in flight (and starts no other), false when
     * it closes now. */
    bool (*on_cut)(struct session *s);
    /* The session closes: writes the access lines of what is left. */
    void (*log_last)(struct session *s);
    /* The protocol's part of the access line being written. */
    void (*log_fields)(struct session *s, struct access_fields *f, ev_tstamp now);
    /* The worker drains (reload, shutdown): the session finishes what is
     * in flight and takes nothing new, where the protocol can say so. */
    void (*on_drain)(struct session *s);
};

/* The table a session of listener l starts with, and the bytes a session
 * of l is allocated with (the largest table it may move to). */
const struct proto_ops *proto_ops_for(const struct cfg_listener *l);
size_t proto_session_size(const struct cfg_listener *l);
/* The table for what the client chose in the TLS handshake (ALPN): the
 * session's own table when the choice changes nothing. */
const struct proto_ops *proto_ops_negotiated(const struct session *s);
/* on_drain for a protocol that has no way to tell its client to stop: the
 * session runs on until it ends or the worker's drain timeout. */
void proto_drain_nothing(struct session *s);

/* A client connection and what belongs to it for its whole life: the
 * socket, TLS, the verification verdict, timeouts, the trust re-judging
 * state. Owns its socket, SSL and timer, and through its protocol (ops)
 * its exchanges; only session_run() frees it, when a handler returns
 * CONN_ST_CLOSED. */
struct session {
    struct worker *w;            /* borrowed */
    struct wlistener *l;         /* borrowed */
    const struct proto_ops *ops; /* the listener's protocol */
    struct session *prev, *next; /* the worker's list */
    struct exchange *ex;         /* the current exchange (owned through ops) */
    uint64_t id;
    enum conn_state st;
    struct side cli; /* the client: TLS (plain on http listeners) */
    SSL *ssl;
    enum tls_want want; /* what the last TLS call on cli waits for */
    struct tls_verdict verdict;
    ev_timer timer; /* the current waiting state's deadline */
    bool timed_out;
    bool lingering;        /* DRAIN: closed our side, discarding what the client still sends */
    uint64_t linger_bytes; /* discarded so far */
    ev_tstamp last_activity;
    ev_tstamp t_accept, t_handshake;
    struct net_addr peer;  /* the client */
    struct net_addr local; /* the address it connected to; see session_local_addr() */
    uint64_t bytes_in, bytes_out;
    const char *reject_reason;
    int64_t cert_not_after; /* on_expiry close: the client chain's notAfter (unix s); 0 = none */
    uint16_t site;          /* the site of the listener's tls the handshake was judged under */
    const char *cut_reason; /* set once the client's certificate was judged invalid */
    ev_tstamp cut_deadline; /* cut after its request in flight: closed by then at the latest */
    /* TLS_HANDSHAKE suspended for an OCSP lookup (ocspc.c): the lookup
     * it waits on (borrowed) and its place among that lookup's waiters. */
    struct lookup *ocsp_lookup;
    struct session *ocsp_prev, *ocsp_next;
    /* Queued to run again before the loop next waits (session_defer). */
    struct session *defer_prev, *defer_next;
    struct session **defer_list; /* the worker's list it is in; NULL when not queued */
};

/* session.c */
struct session *session_new(struct worker *w, struct wlistener *l, int fd,
                            const struct net_addr *peer);
void session_run(struct session *c);
/* The callback of the session's watchers, the client's and its exchanges'
 * backends' (io->data is the session): marks the side readable, runs it. */
void session_io_cb(struct ev_loop *loop, ev_io *io, int revents);
void session_set_timer(struct session *c, uint64_t ms);
/* Runs c once more after every event of this loop iteration was handled,
 * before the loop waits again: a protocol that multiplexes gathers what
 * all of them produced into one write. w->in_deferred is true during that
 * run. Idempotent; a freed session leaves the queue. */
void session_defer(struct session *c);
/* The worker's ev_prepare callback: runs the deferred sessions. */
void session_run_deferred(struct ev_loop *loop, ev_prepare *p, int revents);

/* Sets the read/write interest of side s (the client's or an exchange's
 * backend) of session c. */
void session_side_set(struct session *c, struct side *s, int events);
const char *session_state_name(enum conn_state st);

/* I/O toward the client, over TLS or plain (http listeners): statuses as
 * tls_read/tls_write; *want is set for TLS. */
TG_MUST_USE enum tg_status session_cli_read(struct session *c, void *dst, size_t len, size_t *n);
TG_MUST_USE enum tg_status session_cli_write(struct session *c, const void *src, size_t len,
                                             size_t *n);
/* close_notify (TLS) then shutdown(SHUT_WR). TG_E_AGAIN while TLS waits. */
TG_MUST_USE enum tg_status session_cli_shutdown(struct session *c);
/* close_notify only, for a connection closed right after: close() sends
 * the FIN. TG_E_AGAIN while TLS waits; TG_OK otherwise (also without TLS). */
TG_MUST_USE enum tg_status session_cli_close_notify(struct session *c);
/* The address the client connected to (c->local), found on first use:
 * the listener's when it is not a wildcard, else getsockname(); len 0 when
 * that failed. */
const struct net_addr *session_local_addr(struct session *c);

/* Judges every established connection of site of l again under the
 * site's current trust and allow-list, and cuts those they no longer
 * accept (on_revoke, on_expiry). */
void session_recheck_trust(struct worker *w, struct wlistener *l, size_t site);

/* Closes the cut connections whose request in flight outlived their
 * cut_deadline. */
void session_cut_overdue(struct worker *w, ev_tstamp now);

/* For a connection whose handshake just ended: the reason to refuse it
 * when the trust it was judged under is no longer its site's and the
 * current one does not accept it, or the site's allow-list changed
 * meanwhile and no longer has it; NULL otherwise. */
const char *session_judge_late(struct session *c);

/* Whether c's client sent a certificate that verified (and passed its
 * site's allow-list). */
bool session_client_verified(struct session *c);

/* For a connection of a mutual site whose verified client was just
 * accepted: notes it in the trust history and judges it under the site's
 * client_ca_next, which reports and never refuses (accepted.c). */
void session_judge_accepted(struct session *c);

/* Cuts the connections whose client certificate is past its notAfter
 * (on_expiry: close) at unix time now, and sets w->next_expiry anew. */
void session_expire_due(struct worker *w, int64_t now);

/* Writes the access log line of a connection (tcp_ssl) or a request. */
void session_access_log(struct session *c);
void session_log_rejection(struct session *c, const char *reason, const char *detail);

#endif
