#ifndef TG_PROXY_HTTP1_H
#define TG_PROXY_HTTP1_H

/* Private to src/proxy: HTTP/1.1 toward clients on https and http
 * listeners (http1.c); the forwarding it shares with HTTP/2 is in
 * http_req.h. */

#include <stdbool.h>
#include <stddef.h>

#include "proxy/http_req.h"
#include "proxy/session.h"

/* The table of https and http listeners (HTTP/1.1). */
extern const struct proto_ops http_proto_ops;

/* The HTTP/1.1 side of a session: one request at a time. */
struct http_conn {
    struct http_req r; /* the current request; its exchange is the session's */
    struct buf cin;    /* raw bytes from the client; the head being parsed starts at r */
    bool is_tunnel;    /* after a 101: raw relay */
    unsigned n_requests;
    uint64_t logged_in, logged_out; /* connection byte totals at the last access log line */
};

/* An HTTP/1.1 session: the session and its HTTP state in one block
 * (http_proto_ops.size). */
struct http_session {
    struct session s;
    struct http_conn h;
};

/* The HTTP/1.1 state of a session. */
static inline struct http_conn *http_of(struct session *s)
{
    return &((struct http_session *)(void *)s)->h;
}

static inline const struct http_conn *http_cof(const struct session *s)
{
    return &((const struct http_session *)(const void *)s)->h;
}

#endif
