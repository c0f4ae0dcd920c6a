#ifndef TG_PROXY_EXCHANGE_H
#define TG_PROXY_EXCHANGE_H

/* Private to src/proxy: an exchange, one unit of proxying of a session:
 * its target, its backend connection and the buffers between the two. */

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "lb/lb.h"
#include "proxy/session.h"

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

/* Target t of c->ex's group is now in use by it (least_conn counts it
 * until the session leaves CONNECT and RELAY). */
void exchange_lb_begin(struct session *c, int t);

/* Target accounting as c moves from state from to state to: a connect
 * that ends in RELAY worked and one that goes back to PICK failed; an
 * exchange that leaves RELAY has its status (passive checks); a target
 * stays in use only through CONNECT and RELAY (least_conn). */
void exchange_lb_step(struct session *c, enum conn_state from, enum conn_state to);

/* Logs a failed connect, forgets the socket and marks the target tried:
 * returns CONN_ST_PICK for the next one. */
enum conn_state exchange_connect_failed(struct session *c, const char *why);
/* Closes the backend socket of c's exchange and marks its target tried:
 * returns CONN_ST_PICK for the next one. */
enum conn_state exchange_forget_target(struct session *c);

/* Starts a connection to the target of c->ex (group, target): *in_progress when
 * the caller waits for writability. Plain sockets or builtin:echo. */
TG_MUST_USE enum tg_status exchange_open_backend(struct session *c, bool *in_progress);

/* The exchange states' part of proto_ops.on_enter: the timers of
 * CONNECT and RELAY; no timer in PICK. */
void exchange_enter(struct session *s, enum conn_state st);

/* The exchange states' part of proto_ops.interest (CONNECT, RELAY; none
 * in PICK): cin and bin are the buffers bytes from the client and from
 * the backend land in (c2b and b2c for tcp_ssl and tunnels, the parsers'
 * input for https). */
void exchange_interest(const struct session *s, const struct buf *cin, const struct buf *bin,
                       int *ce, int *be);

#endif
