#ifndef TG_PROXY_HTTP_REQ_H
#define TG_PROXY_HTTP_REQ_H

/* Private to src/proxy: an HTTP request forwarded to an HTTP/1.1 target,
 * whichever protocol the client speaks (http1.c, h2.c): routing, the pick
 * of a target, the connection to it and the request head it receives
 * (http_fwd.c); the block of a request in progress (http_msg.c); answers
 * tollgate makes itself (http_answer.c). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"
#include "lb/lb.h"
#include "proxy/exchange.h"
#include "proxy/session.h"

/* What only a request in progress needs (http_msg.c): taken from the
 * worker's free list when a request head starts to arrive, given back once
 * the request is logged, so that an idle connection holds none. */
struct http_msg {
    struct h1 req_p, resp_p;
    struct http_head req, resp;
    char set_cookie[LB_COOKIE_MAX]; /* sticky cookie line for the response; "" = none */
    char log_path[512];
    struct http_msg *next_free; /* the free list's link */
};

/*
 * One request and its exchange: an HTTP/1.1 connection has one at a time,
 * an HTTP/2 connection one per stream. The exchange's c2b carries the
 * request toward the target (head, then body, framed for HTTP/1.1); bin
 * gets the target's raw response, which the client's protocol reads from.
 * A response tollgate makes itself (http_answer) is written as HTTP/1.1
 * into the exchange's b2c.
 */
struct http_req {
    struct exchange x;
    struct http_msg *m; /* owned: NULL between requests */
    struct buf bin;     /* raw bytes from the backend */
    struct buf *head;   /* borrowed: the buffer whose front is the request head */
    size_t head_kept;   /* bytes of that head still at the front of *head (for a retry) */
    bool req_done;      /* the whole request went into c2b */
    bool resp_head_done;
    bool resp_done;
    bool keep_alive;     /* the client connection may carry another request (HTTP/1.1) */
    bool be_reused;      /* the backend connection came from the pool */
    bool retried;        /* one retry on a fresh connection already made */
    bool sent_to_client; /* response bytes already went to the client */
    bool resp_head_parsed;
    char log_method[16];
    const char *log_path; /* for the access log: m->log_path, or "" */
    unsigned status;      /* status sent to the client, for the log */
    ev_tstamp t_req, t_upstream;
    uint64_t req_bytes, resp_bytes;
};

/* The request of the session's current exchange (s->ex). */
static inline struct http_req *http_req_of(struct session *s)
{
    return (struct http_req *)(void *)((char *)s->ex - offsetof(struct http_req, x));
}

static inline const struct http_req *http_req_cof(const struct session *s)
{
    return (const struct http_req *)(const void *)((const char *)s->ex -
                                                   offsetof(struct http_req, x));
}

/* http_msg.c: a request's block (parsers, heads, cookie, log path) for
 * r, from the worker's free list, parsers ready; false when out of
 * memory. http_msg_put() gives it back once the request is logged. */
bool http_msg_get(struct session *c, struct http_req *r);
void http_msg_put(struct http_req *r);

/* http_fwd.c: the forwarding of the current request (http_req_of(c)). */

/* Forgets what a previous request left behind, so that neither its
 * answer nor its log fields are taken for this one's. */
void http_req_begin(struct session *c);
/* The request head (m->req, in *head) is complete: checks it, then routes
 * it: CONN_ST_PICK with the exchange's group set, or CONN_ST_RESPOND with
 * an answer in b2c, or CONN_ST_CLOSED. */
enum conn_state http_request_ready(struct session *c);
/* The PICK and CONNECT steps; RELAY once the request head is in c2b. */
enum conn_state http_pick(struct session *c);
enum conn_state http_connect(struct session *c);
/* Moves c2b to the backend and the backend's bytes into bin. Returns
 * CONN_ST_RELAY, or the state a failure leads to (a retry, a 502). */
enum conn_state http_backend_io(struct session *c, bool *progress);
/* The backend failed before the response was complete: a retry on a fresh
 * connection when nothing is lost by it, else a 502 (or CLOSED when part
 * of the response went out). */
enum conn_state http_backend_failed(struct session *c, const char *why);
/* Closes the exchange's backend connection and forgets its buffered bytes. */
void http_close_backend(struct session *c);
/* The response is complete: the backend connection goes back to the pool
 * when it can carry another request, else it is closed. */
void http_release_backend(struct session *c);

/* http_answer.c: responses tollgate makes itself. http_answer() queues one
 * (extra: header lines, each ending in CRLF; body may be NULL) into b2c as
 * HTTP/1.1 and returns CONN_ST_RESPOND, or CONN_ST_CLOSED when it cannot.
 * http_error_page() logs the error and answers with a short text page,
 * then the connection closes. */
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
