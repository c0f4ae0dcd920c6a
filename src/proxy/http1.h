#ifndef TG_PROXY_HTTP1_H
#define TG_PROXY_HTTP1_H

/* Private to src/proxy: HTTP/1.1 on https and http listeners (http1.c
 * the request flow, http_msg.c a request's block, http_answer.c answers
 * tollgate makes itself). */

#include <stdbool.h>
#include <stddef.h>

#include "http/http.h"
#include "lb/lb.h"
#include "proxy/exchange.h"
#include "proxy/session.h"

/* The table of https and http listeners. */
extern const struct proto_ops http_proto_ops;

/* What only a request in progress needs (http1.c): taken from the worker's
 * free list when a request head starts to arrive, given back once the
 * request is logged, so that an idle keep-alive connection holds none. */
struct http_msg {
    struct h1 req_p, resp_p;
    struct http_head req, resp;
    char set_cookie[LB_COOKIE_MAX]; /* sticky cookie line for the response; "" = none */
    char log_path[512];
    struct http_msg *next_free; /* the free list's link */
};

/* The HTTP side of a session (http1.c). */
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

#endif
