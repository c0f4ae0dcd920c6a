#ifndef TG_PROXY_CONN_H
#define TG_PROXY_CONN_H

/* Private to src/proxy: the worker and the proxied connection. */

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/buf.h"
#include "http/http.h"
#include "lb/lb.h"
#include "proxy/proxy.h"

#define CONN_BUF_SIZE         (16 * 1024)
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

struct worker;

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

/* A listener as one worker runs it. */
struct wlistener {
    struct worker *w;               /* borrowed */
    const struct cfg_listener *cfg; /* borrowed */
    int fd;                         /* borrowed from the master */
    struct tls_server *tls;         /* borrowed */
    struct shm_listener_stats *stats;
    ev_io accept_w;
    struct tls_trust_watch watch; /* mutual: the client CA's files */
    ev_tstamp next_trust_check;
    uint64_t stale_judged; /* tls_trust_serial whose CRL nextUpdate passing was judged */
};

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
    bool drained; /* TLS: the socket's last read() emptied it (tls_report_reads) */
};

/* Points a stopped watcher at a descriptor that has stayed open since a
 * watcher of this loop last registered it (a backend connection moving to
 * or from the pool): unlike ev_io_set(), this lets libev trust its kernel
 * state, so taking the same interest back costs no epoll_ctl(). A new
 * descriptor, even one with a recycled number, needs ev_io_set(). */
static inline void conn_io_reuse_fd(ev_io *io, int fd, int events)
{
    ev_io_set(io, fd, events);
    io->events &= ~EV__IOFDSET;
}

struct session;

/* One unit of proxying: what the client sends to one target and what
 * comes back. A tcp_ssl session has one exchange for its whole life; an
 * https session has one per request, one at a time. A session reaches its
 * exchanges through s->ex and their next links, so a protocol that
 * multiplexes can hold several. Owned by its session (allocated with it by
 * the protocol, see struct proto_ops); exchange_fini() frees what it holds. */
struct exchange {
    struct exchange *next;                /* the session's other exchanges; NULL */
    const struct cfg_target_group *group; /* borrowed: where target points */
    int target;                           /* index into the group, -1 before PICK */
    uint64_t tried; /* bit i: target i failed to connect (i < CFG_MAX_TARGETS) */
    unsigned n_tried;
    int lb_target;                           /* counted as in use by lb, -1 when none */
    const struct cfg_target_group *lb_group; /* borrowed: lb_target's group */
    struct side be;            /* the backend: plain, or TLS when its group re-encrypts (be_ssl) */
    SSL *be_ssl;               /* owned: TLS to the backend (betls.c); NULL when plain */
    struct buf c2b;            /* client to backend */
    struct buf b2c;            /* backend to client */
    enum conn_outcome outcome; /* for the access log */
    bool be_tls_failed;        /* a target's TLS handshake failed for this exchange */
    ev_tstamp relay_timeout;   /* seconds of silence allowed in RELAY */
};

/* Prepares x for session s's listener: no target yet, its default group. */
void exchange_init(struct exchange *x, const struct session *s);

/* Frees what x holds: its backend socket, its TLS, its buffers. */
void exchange_fini(struct worker *w, struct exchange *x);

typedef enum conn_state (*conn_handler)(struct session *s);

/* What the values in access_fields mean to conn_access_log(). */
struct access_fields {
    ev_tstamp start;            /* the line's start: the session's accept when 0 */
    uint64_t base_in, base_out; /* bytes counted before this line: it counts those after */
    char *extra;                /* the protocol's JSON fields, each starting with ',' */
    size_t extra_len;
};

/*
 * A listener protocol: what its sessions do once the client's side is up.
 * One table per protocol (tcp.c, http.c), chosen when a session is made
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
    /* Arms the timer of a protocol state being entered (conn_set_timer). */
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
};

/* The table of listener protocol p. */
const struct proto_ops *proto_ops_for(enum cfg_listener_proto p);
extern const struct proto_ops tcp_proto_ops, http_proto_ops;

/* A client connection and what belongs to it for its whole life: the
 * socket, TLS, the verification verdict, timeouts, the trust re-judging
 * state. Owns its socket, SSL and timer, and through its protocol (ops)
 * its exchanges; only conn_run() frees it, when a handler returns
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
    struct net_addr local; /* the address it connected to; see conn_local_addr() */
    uint64_t bytes_in, bytes_out;
    const char *reject_reason;
    int64_t cert_not_after; /* on_expiry close: the client chain's notAfter (unix s); 0 = none */
    const char *cut_reason; /* set once the client's certificate was judged invalid */
    ev_tstamp cut_deadline; /* cut after its request in flight: closed by then at the latest */
    /* TLS_HANDSHAKE suspended for an OCSP lookup (ocspc.c): the lookup
     * it waits on (borrowed) and its place among that lookup's waiters. */
    struct lookup *ocsp_lookup;
    struct session *ocsp_prev, *ocsp_next;
};

/* What only a request in progress needs (http.c): taken from the worker's
 * free list when a request head starts to arrive, given back once the
 * request is logged, so that an idle keep-alive connection holds none. */
struct http_msg {
    struct h1 req_p, resp_p;
    struct http_head req, resp;
    char set_cookie[LB_COOKIE_MAX]; /* sticky cookie line for the response; "" = none */
    char log_path[512];
    struct http_msg *next_free; /* the free list's link */
};

/* The HTTP side of a session (http.c). */
struct http_conn {
    struct http_msg *m; /* owned: the current request's; NULL between requests */
    struct buf cin;     /* raw bytes from the client; the head being parsed starts at r */
    struct buf bin;     /* raw bytes from the backend */
    bool req_done;      /* the whole request went into c2b */
    bool resp_head_done;
    bool resp_done;
    bool keep_alive;     /* the client connection may carry another request */
    bool is_tunnel;      /* after a 101: raw relay */
    bool be_reused;      /* the backend connection came from the pool */
    bool retried;        /* one retry on a fresh connection already made */
    bool sent_to_client; /* response bytes already went to the client */
    bool resp_head_parsed;
    size_t head_in_cin; /* request head still at the front of cin (for a retry) */
    char log_method[16];
    const char *log_path; /* for the access log: m->log_path, or "" */
    unsigned n_requests;
    unsigned status; /* status sent to the client, for the log */
    ev_tstamp t_req, t_upstream;
    uint64_t logged_in, logged_out; /* connection byte totals at the last access log line */
    uint64_t req_bytes, resp_bytes;
};

/* An https/http session: the session, its HTTP state and its exchange in
 * one block (http_proto_ops.size). */
struct http_session {
    struct session s;
    struct http_conn h;
    struct exchange x;
};

/* The HTTP state of an https/http session. */
static inline struct http_conn *http_of(struct session *s)
{
    return &((struct http_session *)(void *)s)->h;
}

static inline const struct http_conn *http_cof(const struct session *s)
{
    return &((const struct http_session *)(const void *)s)->h;
}

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
    ev_signal sig_term, sig_quit, sig_usr1, sig_hup;
    struct lb_state *lb; /* owned picker state for cfg's target groups */
    struct bpool *bpool; /* owned idle backend connections */
    struct betls *betls; /* owned backend TLS contexts and sessions, made on first use */
    struct ocspc *ocspc; /* owned; NULL when no listener checks client OCSP */
    uint8_t **pool;      /* owned free CONN_BUF_SIZE blocks */
    size_t n_pool;
    size_t pool_cap;
};

/* Gives b a CONN_BUF_SIZE block from the worker's pool if it has none.
 * False when out of memory. */
bool conn_buf_get(struct worker *w, struct buf *b);

/* Gives b at least need bytes of free room: a pooled block when need fits
 * one, else a one-off block of need bytes (freed, not pooled, when put
 * back). False when out of memory, or when b holds unread bytes in a
 * block too small. */
bool conn_buf_get_room(struct worker *w, struct buf *b, size_t need);

/* Frees b's one-off block as soon as b is empty, so that a large head
 * costs its memory only while it is sent. */
void conn_buf_shrink(struct worker *w, struct buf *b);

/* Returns b's block to the pool when b is empty, so that an idle
 * connection holds no buffer memory. */
void conn_buf_put(struct worker *w, struct buf *b);

/* conn.c */
struct session *conn_new(struct worker *w, struct wlistener *l, int fd,
                         const struct net_addr *peer);
void conn_run(struct session *c);
void conn_set_timer(struct session *c, uint64_t ms);
const char *conn_state_name(enum conn_state st);

/* I/O toward the client, over TLS or plain (http listeners): statuses as
 * tls_read/tls_write; *want is set for TLS. */
TG_MUST_USE enum tg_status conn_cli_read(struct session *c, void *dst, size_t len, size_t *n);
TG_MUST_USE enum tg_status conn_cli_write(struct session *c, const void *src, size_t len,
                                          size_t *n);
/* close_notify (TLS) then shutdown(SHUT_WR). TG_E_AGAIN while TLS waits. */
TG_MUST_USE enum tg_status conn_cli_shutdown(struct session *c);
/* close_notify only, for a connection closed right after: close() sends
 * the FIN. TG_E_AGAIN while TLS waits; TG_OK otherwise (also without TLS). */
TG_MUST_USE enum tg_status conn_cli_close_notify(struct session *c);
/* The address the client connected to (c->local), found on first use:
 * the listener's when it is not a wildcard, else getsockname(); len 0 when
 * that failed. */
const struct net_addr *conn_local_addr(struct session *c);

/* Judges every established connection of l again under t (its new
 * trust) and cuts those it no longer accepts (on_revoke, on_expiry). */
void conn_recheck_trust(struct worker *w, struct wlistener *l, struct tls_trust *t);

/* Closes the cut connections whose request in flight outlived their
 * cut_deadline. */
void conn_cut_overdue(struct worker *w, ev_tstamp now);

/* For a connection whose handshake just ended: the reason to refuse it
 * when the trust it was judged under is no longer the listener's and the
 * current one does not accept it; NULL otherwise. */
const char *conn_judge_late(struct session *c);

/* Cuts the connections whose client certificate is past its notAfter
 * (on_expiry: close) at unix time now, and sets w->next_expiry anew. */
void conn_expire_due(struct worker *w, int64_t now);

/* Writes the access log line of a connection (tcp_ssl) or a request. */
void conn_access_log(struct session *c);
void conn_log_rejection(struct session *c, const char *reason, const char *detail);

/* on_reject: page (reject.c). Whether the listener answers refused client
 * certificates with a page; and the page: its status (495, 496), or 0 when
 * the client's certificate was accepted. *reason gets the reason code. */
bool conn_reject_page_applies(const struct session *c);
unsigned conn_reject_page(struct session *c, bool json, char *dst, size_t cap, const char **reason);

/* The page itself, from the facts of the client's certificate and the CA
 * names the listener accepts: HTML or JSON into dst (cap bytes, at least
 * REJECT_PAGE_MIN), always complete and terminated; names are shown cut to 256 bytes
 * and the CA list ends early rather than cut the page. Returns the status
 * (495, 496) with *reason set, or 0 when info says the client verified. */
#define REJECT_PAGE_MIN 4096
unsigned reject_page_render(const struct tls_info *info, const STACK_OF(X509_NAME) *cas, bool json,
                            char *dst, size_t cap, const char **reason);

/* Target t of c->group is now in use by c (least_conn counts it until the
 * connection leaves CONNECT and RELAY). */
void conn_lb_begin(struct session *c, int t);

/* ocspc.c: OCSP for client certificates, per worker (the cache and the
 * lookups in flight). NULL when out of memory. */
struct ocspc;
struct lookup;
struct ocspc *ocspc_new(struct worker *w);
void ocspc_free(struct ocspc *o);
/* The cache the listeners' verify callbacks and resumptions consult. */
struct tls_ocsp_cache *ocspc_cache(struct ocspc *o);
/* c's handshake was suspended for the OCSP status of its client's leaf
 * (c->verdict.ocsp_leaf): true when c now waits for a lookup (one fetch
 * per certificate; conn_run(c) is called when it ends, with
 * c->verdict.ocsp_result set); false when the result is set at once
 * (cached meanwhile, or unavailable: no issuer, no URL, no HTTP client,
 * too many lookups): run the handshake again. o may be NULL. */
bool ocspc_wait(struct ocspc *o, struct session *c);
/* Takes c off the waiters of its lookup, if any (c is closing). */
void ocspc_cancel(struct session *c);

/* tcp.c: the tcp_ssl handlers, also the tunnel after a WebSocket upgrade */
enum conn_state tcp_pick(struct session *c);
enum conn_state tcp_connect(struct session *c);
enum conn_state tcp_relay(struct session *c);
/* Logs a failed connect, forgets the socket and marks the target tried:
 * returns CONN_ST_PICK for the next one. */
enum conn_state tcp_connect_failed(struct session *c, const char *why);

/* Starts a connection to c->group's target c->target: *in_progress when
 * the caller waits for writability. Plain sockets or builtin:echo. */
TG_MUST_USE enum tg_status tcp_open_backend(struct session *c, bool *in_progress);

/* http.c: the https/http handlers */
enum conn_state http_read_head(struct session *c);
enum conn_state http_pick(struct session *c);
enum conn_state http_connect(struct session *c);
enum conn_state http_relay(struct session *c);
enum conn_state http_respond(struct session *c);

/* http_msg.c: a request's block (parsers, heads, cookie, log path) for c,
 * from the worker's free list, parsers ready; false when out of memory.
 * http_msg_put() gives it back once the request is logged. */
bool http_msg_get(struct session *c);
void http_msg_put(struct http_conn *h);

/* http_answer.c: responses tollgate makes itself. http_answer() queues one
 * (extra: header lines, each ending in CRLF; body may be NULL) and returns
 * CONN_ST_RESPOND, or CONN_ST_CLOSED when it cannot. http_error_page()
 * logs the error and answers with a short text page, then the connection
 * closes. */
enum conn_state http_answer(struct session *c, unsigned status, const char *ctype,
                            const char *extra, const char *body, bool keep_alive);
enum conn_state http_error_page(struct session *c, unsigned status, const char *what);
enum conn_state http_redirect(struct session *c, const struct cfg_rule *r, const char *host,
                              size_t host_len);
enum conn_state http_respond_rule(struct session *c, const struct cfg_rule *r);
/* The Host value without its port; a request-target from its path on; the
 * length of a target's path (before '?' or '#'). */
void http_host_name(const char *host, size_t len, const char **name, size_t *name_len);
void http_target_from_path(const struct http_head *rq, const char **p, size_t *len);
size_t http_path_len(const char *target, size_t len);

/* The exchange states' part of proto_ops.on_enter: the timers of
 * CONNECT and RELAY; no timer in PICK. */
void exchange_enter(struct session *s, enum conn_state st);

/* The exchange states' part of proto_ops.interest (CONNECT, RELAY; none
 * in PICK): cin and bin are the buffers bytes from the client and from
 * the backend land in (c2b and b2c for tcp_ssl and tunnels, the parsers'
 * input for https). */
void exchange_interest(const struct session *s, const struct buf *cin, const struct buf *bin,
                       int *ce, int *be);

/* bpool.c: idle keep-alive backend connections, per worker and target */
struct bpool;
struct bpool *bpool_new(struct worker *w);
/* An idle connection to (g, target) or -1; *ssl gets its TLS (owned by
 * the caller now), NULL when plain. */
int bpool_take(struct bpool *p, const struct cfg_target_group *g, int target, SSL **ssl);
/* Keeps fd and its ssl (may be NULL) for reuse, or closes them when the
 * pool is full. Takes ownership of both. */
void bpool_put(struct bpool *p, const struct cfg_target_group *g, int target, int fd, SSL *ssl);

/* betls.c: TLS to the targets of https groups with a tls block */
struct betls;
/* True when c's group re-encrypts to its current target (never to
 * builtin:echo). */
bool betls_wanted(const struct session *c);
/* One step of the client handshake on the connected c->be.fd, the SSL
 * made on the first call (c->http->be_ssl). TG_OK when done; TG_E_AGAIN
 * while it waits (the backend watcher is set); TG_E_PROTO when it failed:
 * then one event=backend_tls_failed line with the reason code is logged,
 * the socket is closed and the target marked tried (go back to PICK). */
TG_MUST_USE enum tg_status betls_handshake(struct session *c);
/* The same end for a failure found by the caller (a timeout). Returns
 * CONN_ST_PICK. */
enum conn_state betls_connect_failed(struct session *c, const char *reason, const char *detail);
/* recv()/send() on the backend TLS: bytes moved, 0 at the end (read), or
 * -1 with errno EAGAIN while TLS waits, else another errno. */
ssize_t betls_read(struct session *c, void *dst, size_t len);
ssize_t betls_write(struct session *c, const void *src, size_t len);
/* Frees c->http->be_ssl (close_notify if it goes out at once); the
 * socket stays. No-op without one. */
void betls_close(struct session *c);
/* Frees a backend SSL the way betls_close does; NULL does nothing. */
void betls_ssl_free(SSL *ssl);
/* For an idle pooled connection that became readable: true when what
 * came was no data (a session ticket), so it can stay. */
bool betls_idle_ok(SSL *ssl);

/* echo.c: builtin:echo; *fd gets our end of a connected socket pair whose
 * other end echoes every byte (and the EOF) back (tcp_ssl), or answers
 * every HTTP request with JSON describing it (is_http). */
TG_MUST_USE enum tg_status echo_open(struct worker *w, bool is_http, int *fd);

/* echo_http.c: serves builtin:echo for HTTP on fd (our end of the pair). */
TG_MUST_USE enum tg_status echo_http_open(struct worker *w, int fd);

#endif
