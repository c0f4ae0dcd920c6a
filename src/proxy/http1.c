#include "proxy/http1.h"
#include "proxy/tcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "core/log.h"

#define CONN_ARGS(c) tg_pid(), (unsigned long long)(c)->id

/* The access line of a request, and its metrics. */
static void http_access_log(struct session *c)
{
    struct http_conn *h = http_of(c);
    if (h->r.t_req > 0)
        shm_count_request(c->l->stats, h->r.status, ev_time() - h->r.t_req);
    session_access_log(c);
}

static void release_buffers(struct session *c)
{
    worker_buf_put(c->w, &http_of(c)->cin);
    worker_buf_put(c->w, &http_of(c)->r.bin);
    worker_buf_put(c->w, &c->ex->c2b);
    worker_buf_put(c->w, &c->ex->b2c);
}

/* A read of the client may find bytes: the loop reported it readable since
 * a read last found it empty, or a record waits inside OpenSSL (read-ahead). */
static bool cli_may_read(const struct session *c)
{
    return c->cli.can_read || (c->ssl != NULL && SSL_has_pending(c->ssl));
}

/* A request starts on this connection. */
static void begin_request(struct session *c)
{
    http_of(c)->n_requests++;
    http_req_begin(c);
}

/* The request head is complete: check it, then route it. */
static enum conn_state request_ready(struct session *c)
{
    begin_request(c);
    return http_request_ready(c);
}

static enum conn_state http_read_head(struct session *c)
{
    struct http_conn *h = http_of(c);
    if (c->timed_out) {
        if (buf_is_empty(&h->cin))
            return CONN_ST_DRAIN; /* an idle keep-alive connection: close quietly */
        begin_request(c);
        return http_error_page(c, 408, "the request head did not arrive in time");
    }
    h->r.t_req = 0;
    for (;;) {
        if (!buf_is_empty(&h->cin)) {
            size_t len;
            const uint8_t *p = buf_rdata(&h->cin, &len);
            if (!http_msg_get(c, &h->r))
                return CONN_ST_CLOSED;
            bool first_bytes = h->r.m->req_p.fed == 0;
            enum tg_status st = h1_head(&h->r.m->req_p, &h->r.m->req, (const char *)p, len);
            if (st == TG_OK)
                return request_ready(c);
            /* Part of a head pipelined behind the last request: it has
             * header_timeout to complete, as any head, not idle_timeout. */
            if (st == TG_E_AGAIN && first_bytes && h->n_requests > 0)
                session_set_timer(c, c->l->cfg->header_timeout_ms);
            if (st == TG_E_PROTO) {
                begin_request(c);
                return http_error_page(c, h->r.m->req_p.err_status, h->r.m->req_p.err_reason);
            }
        }
        if (c->cli.rd_shut)
            return buf_is_empty(&h->cin) ? CONN_ST_DRAIN : CONN_ST_CLOSED;
        /* Back from a response, the client has usually sent nothing more:
         * wait for the loop to say so instead of a read that finds nothing. */
        if (!cli_may_read(c)) {
            worker_buf_put(c->w, &h->cin);
            return CONN_ST_READ_HEAD;
        }
        if (!worker_buf_get(c->w, &h->cin))
            return CONN_ST_CLOSED;
        bool was_empty = buf_is_empty(&h->cin);
        size_t room, n = 0;
        uint8_t *dst = buf_wspace(&h->cin, &room);
        enum tg_status st = session_cli_read(c, dst, room, &n);
        if (st == TG_E_AGAIN) {
            worker_buf_put(c->w, &h->cin);
            return CONN_ST_READ_HEAD;
        }
        if (st != TG_OK) {
            c->cli.rd_shut = true;
            continue;
        }
        buf_commit(&h->cin, n);
        c->bytes_in += n;
        if (was_empty && h->n_requests > 0)
            session_set_timer(c, c->l->cfg->header_timeout_ms);
    }
}

/* Request body: cin to c2b, as much as fits. */
static enum conn_state request_body(struct session *c, bool *progress)
{
    struct http_conn *h = http_of(c);
    if (h->r.req_done || buf_is_empty(&h->cin) || !worker_buf_get(c->w, &c->ex->c2b))
        return CONN_ST_RELAY;
    size_t len, room, n = 0;
    bool done = false;
    const uint8_t *src = buf_rdata(&h->cin, &len);
    uint8_t *dst = buf_wspace(&c->ex->c2b, &room);
    if (len > room)
        len = room;
    if (h1_body(&h->r.m->req_p, (const char *)src, len, &n, &done) != TG_OK) {
        http_close_backend(c);
        return http_error_page(c, h->r.m->req_p.err_status, h->r.m->req_p.err_reason);
    }
    memcpy(dst, src, n);
    buf_commit(&c->ex->c2b, n);
    buf_consume(&h->cin, n);
    h->r.req_bytes += n;
    h->r.req_done = done;
    *progress = *progress || n > 0 || done;
    return CONN_ST_RELAY;
}

/* The response head from bin: 1xx are passed on, the final one starts
 * the body (or the tunnel). */
static enum conn_state response_head(struct session *c, bool *progress)
{
    struct http_conn *h = http_of(c);
    if (!h->r.resp_head_parsed) {
        size_t len;
        const uint8_t *src = buf_rdata(&h->r.bin, &len);
        enum tg_status st = h1_head(&h->r.m->resp_p, &h->r.m->resp, (const char *)src, len);
        if (st == TG_E_AGAIN)
            return c->ex->be.rd_shut
                       ? http_backend_failed(c, "the backend closed before responding")
                       : CONN_ST_RELAY;
        if (st != TG_OK)
            return http_backend_failed(c, "the backend sent an invalid response");
        h->r.resp_head_parsed = true;
    }
    struct http_head *rs = &h->r.m->resp;
    bool interim = rs->status >= 100 && rs->status < 200 && rs->status != 101;
    if (rs->status == 101 && !h->r.m->req.is_upgrade)
        return http_backend_failed(c, "the backend switched protocols unasked");
    /* A final answer that comes before the whole request went out (a 413
     * from the head alone) ends the connection: the rest of the request
     * would otherwise be read as the next one. Say so to the client. */
    bool keep = interim || (h->r.keep_alive && h->r.req_done && rs->body != HTTP_BODY_EOF &&
                            rs->status != 101);
    size_t len;
    rs->base = (const char *)buf_rdata(&h->r.bin, &len);
    const char *extra = interim || h->r.m->set_cookie[0] == '\0' ? NULL : h->r.m->set_cookie;
    if (!worker_buf_get(c->w, &c->ex->b2c) ||
        http_hdr_response(rs, keep, extra, &c->ex->b2c) != TG_OK)
        return CONN_ST_RELAY; /* wait for room in b2c */
    buf_consume(&h->r.bin, rs->len);
    h->r.sent_to_client = true;
    *progress = true;
    if (h->r.head_kept > 0) {
        buf_consume(&h->cin, h->r.head_kept);
        h->r.head_kept = 0;
    }
    if (interim) {
        /* The next head is parsed from the front of bin, where a read
         * always finds room for it. */
        buf_compact(&h->r.bin);
        h->r.resp_head_parsed = false;
        h1_next(&h->r.m->resp_p, h->r.m->req.method == HTTP_HEAD);
        return CONN_ST_RELAY;
    }
    h->r.keep_alive = keep;
    h->r.status = rs->status;
    h->r.resp_head_done = true;
    h->r.resp_done = rs->body == HTTP_BODY_NONE && rs->status != 101;
    c->ex->relay_timeout = (ev_tstamp)c->l->cfg->idle_timeout_ms / 1000.0;
    if (rs->status == 101)
        h->is_tunnel = true;
    return CONN_ST_RELAY;
}

/* Response body: bin to b2c, as much as fits. */
static enum conn_state response_body(struct session *c, bool *progress)
{
    struct http_conn *h = http_of(c);
    if (h->r.resp_done)
        return CONN_ST_RELAY;
    if (!buf_is_empty(&h->r.bin) && worker_buf_get(c->w, &c->ex->b2c)) {
        size_t len, room, n = 0;
        bool done = false;
        const uint8_t *src = buf_rdata(&h->r.bin, &len);
        uint8_t *dst = buf_wspace(&c->ex->b2c, &room);
        if (len > room)
            len = room;
        if (h1_body(&h->r.m->resp_p, (const char *)src, len, &n, &done) != TG_OK) {
            http_close_backend(c);
            c->ex->outcome = CONN_OUT_BAD_GATEWAY;
            return CONN_ST_CLOSED;
        }
        memcpy(dst, src, n);
        buf_commit(&c->ex->b2c, n);
        buf_consume(&h->r.bin, n);
        h->r.resp_bytes += n;
        h->r.resp_done = done;
        *progress = *progress || n > 0 || done;
    }
    if (!h->r.resp_done && c->ex->be.rd_shut && buf_is_empty(&h->r.bin)) {
        if (h->r.m->resp.body != HTTP_BODY_EOF) {
            http_close_backend(c);
            c->ex->outcome = CONN_OUT_BACKEND_TRUNCATED;
            return CONN_ST_CLOSED;
        }
        h->r.resp_done = true;
        *progress = true;
    }
    return CONN_ST_RELAY;
}

/* Moves bytes between the sockets and the buffers. Returns a state other
 * than RELAY when the exchange has to end. */
static enum conn_state pump(struct session *c, bool *progress)
{
    struct http_conn *h = http_of(c);
    enum conn_state next;

    /* The client is read only when it can have sent something: after a
     * request without a body it has nothing more to say until its next
     * request, which READ_HEAD reads once this response is out (unless the
     * loop reports bytes or its EOF sooner). */
    if (!c->cli.rd_shut && cli_may_read(c) && worker_buf_get(c->w, &h->cin) &&
        !buf_is_full(&h->cin)) {
        size_t room, n = 0;
        uint8_t *dst = buf_wspace(&h->cin, &room);
        if (h->r.head_kept > 0)
            dst = buf_wspace_tail(&h->cin, &room); /* the head must stay put */
        enum tg_status st = room ? session_cli_read(c, dst, room, &n) : TG_E_AGAIN;
        if (st == TG_OK) {
            buf_commit(&h->cin, n);
            c->bytes_in += n;
            *progress = true;
        } else if (st != TG_E_AGAIN) {
            c->cli.rd_shut = true;
            if (!h->r.req_done) {
                c->ex->outcome = CONN_OUT_CLIENT_CLOSED;
                return CONN_ST_CLOSED;
            }
        }
    }
    if ((next = request_body(c, progress)) != CONN_ST_RELAY)
        return next;
    if ((next = http_backend_io(c, progress)) != CONN_ST_RELAY)
        return next;
    if (!h->r.resp_head_done && (!buf_is_empty(&h->r.bin) || c->ex->be.rd_shut)) {
        if ((next = response_head(c, progress)) != CONN_ST_RELAY || h->is_tunnel)
            return next;
    }
    if (h->r.resp_head_done && (next = response_body(c, progress)) != CONN_ST_RELAY)
        return next;
    if (!buf_is_empty(&c->ex->b2c)) {
        size_t len, n = 0;
        const uint8_t *src = buf_rdata(&c->ex->b2c, &len);
        enum tg_status st = session_cli_write(c, src, len, &n);
        if (st == TG_OK) {
            buf_consume(&c->ex->b2c, n);
            c->bytes_out += n;
            *progress = true;
        } else if (st != TG_E_AGAIN) {
            http_close_backend(c);
            c->ex->outcome = CONN_OUT_CLIENT_RESET;
            return CONN_ST_CLOSED;
        }
    }
    return CONN_ST_RELAY;
}

/* The client sent its EOF and nothing more is buffered: requests it
 * pipelined before closing its side are still answered. */
static bool client_done(const struct session *c)
{
    return c->cli.rd_shut && buf_is_empty(&http_cof(c)->cin);
}

/* The response went out whole: log it, keep the backend connection when
 * it can carry another request, and wait for the next request. */
static enum conn_state finish_request(struct session *c)
{
    struct http_conn *h = http_of(c);
    http_release_backend(c);
    http_access_log(c);
    h->r.t_req = 0;
    bool again = h->r.req_done && h->r.keep_alive && !client_done(c);
    http_msg_put(&h->r);
    if (!again)
        return CONN_ST_DRAIN;
    release_buffers(c);
    /* A cut connection finishes its request in flight, never another. */
    return c->cut_reason != NULL ? CONN_ST_CLOSED : CONN_ST_READ_HEAD;
}

/* After a 101: what is already buffered goes first, then raw relay. */
static enum conn_state tunnel(struct session *c)
{
    struct http_conn *h = http_of(c);
    struct buf *pairs[2][2] = {{&h->cin, &c->ex->c2b}, {&h->r.bin, &c->ex->b2c}};
    for (int i = 0; i < 2; i++) {
        struct buf *from = pairs[i][0], *to = pairs[i][1];
        if (buf_is_empty(from))
            continue;
        if (!worker_buf_get(c->w, to))
            return CONN_ST_CLOSED;
        size_t len, room;
        const uint8_t *src = buf_rdata(from, &len);
        uint8_t *dst = buf_wspace(to, &room);
        if (len > room)
            len = room;
        memcpy(dst, src, len);
        buf_commit(to, len);
        buf_consume(from, len);
    }
    return tcp_relay(c); /* plain or TLS to the target: see tcp.c be_recv() */
}

static enum conn_state http_relay(struct session *c)
{
    struct http_conn *h = http_of(c);
    if (h->is_tunnel)
        return tunnel(c);
    if (c->timed_out) {
        if (!h->r.resp_head_done) {
            http_close_backend(c);
            c->ex->outcome = CONN_OUT_RESPONSE_TIMEOUT;
            return http_error_page(c, 504, "the backend did not answer in time");
        }
        c->ex->outcome = CONN_OUT_IDLE_TIMEOUT;
        return CONN_ST_CLOSED;
    }
    bool any = false, progress;
    do {
        progress = false;
        enum conn_state next = pump(c, &progress);
        if (next != CONN_ST_RELAY)
            return next;
        if (h->is_tunnel)
            return tunnel(c);
        any = any || progress;
    } while (progress);
    if (any)
        c->last_activity = ev_now(c->w->loop);
    if (h->r.resp_done && buf_is_empty(&c->ex->b2c))
        return finish_request(c);
    release_buffers(c);
    return CONN_ST_RELAY;
}

static enum conn_state http_respond(struct session *c)
{
    struct http_conn *h = http_of(c);
    if (c->timed_out)
        return CONN_ST_CLOSED;
    while (!buf_is_empty(&c->ex->b2c)) {
        size_t len, n = 0;
        const uint8_t *src = buf_rdata(&c->ex->b2c, &len);
        enum tg_status st = session_cli_write(c, src, len, &n);
        if (st == TG_E_AGAIN)
            return CONN_ST_RESPOND;
        if (st != TG_OK)
            return CONN_ST_CLOSED;
        buf_consume(&c->ex->b2c, n);
        c->bytes_out += n;
        c->last_activity = ev_now(c->w->loop);
    }
    http_access_log(c);
    h->r.t_req = 0;
    buf_consume(&h->cin, h->r.head_kept);
    h->r.head_kept = 0;
    http_msg_put(&h->r);
    if (!h->r.keep_alive || client_done(c))
        return CONN_ST_DRAIN;
    release_buffers(c);
    return c->cut_reason != NULL ? CONN_ST_CLOSED : CONN_ST_READ_HEAD;
}

static enum tg_status http_init(struct session *c)
{
    struct http_session *hs = (struct http_session *)(void *)c;
    hs->h.r.log_path = "";
    hs->h.r.head = &hs->h.cin;
    exchange_init(&hs->h.r.x, c);
    c->ex = &hs->h.r.x;
    return TG_OK;
}

static void http_fini(struct session *c)
{
    struct http_conn *h = http_of(c);
    http_msg_put(&h->r);
    h->cin.r = h->cin.w = 0;
    h->r.bin.r = h->r.bin.w = 0;
    worker_buf_put(c->w, &h->cin);
    worker_buf_put(c->w, &h->r.bin);
    exchange_fini(c->w, c->ex);
}

static enum conn_state http_established(struct session *c)
{
    return CONN_ST_READ_HEAD;
    (void)c;
}

static void http_enter(struct session *c, enum conn_state st)
{
    const struct cfg_listener *l = c->l->cfg;
    switch (st) {
    case CONN_ST_READ_HEAD:
        c->last_activity = ev_now(c->w->loop);
        session_set_timer(c,
                          http_of(c)->n_requests == 0 ? l->header_timeout_ms : l->idle_timeout_ms);
        break;
    case CONN_ST_RESPOND:
        c->last_activity = ev_now(c->w->loop);
        session_set_timer(c, l->idle_timeout_ms);
        break;
    default:
        exchange_enter(c, st);
        break;
    }
}

static void http_interest(struct session *c, int *ce, int *be)
{
    struct http_conn *h = http_of(c);
    struct exchange *x = c->ex;
    switch (c->st) {
    case CONN_ST_READ_HEAD:
        *ce = c->want == TLS_WANT_WRITE ? EV_WRITE : EV_READ;
        break;
    case CONN_ST_RESPOND:
        *ce = c->want == TLS_WANT_READ ? EV_READ : EV_WRITE;
        break;
    default:
        /* A tunnel relays raw bytes: they land where tcp_ssl's do. */
        exchange_interest(c, h->is_tunnel ? &x->c2b : &h->cin, h->is_tunnel ? &x->b2c : &h->r.bin,
                          ce, be);
        break;
    }
}

static ev_tstamp http_idle_timeout(const struct session *c)
{
    if (c->st == CONN_ST_RELAY)
        return c->ex->relay_timeout;
    if (c->st == CONN_ST_RESPOND)
        return (ev_tstamp)c->l->cfg->idle_timeout_ms / 1000.0;
    return 0;
}

static unsigned http_passive_status(const struct session *c)
{
    const struct http_conn *h = http_cof(c);
    return h->is_tunnel ? 0 : h->r.status;
}

/* A request being forwarded or answered may finish before the
 * connection is cut; then no other starts. */
static bool http_on_cut(struct session *c)
{
    struct http_conn *h = http_of(c);
    if (h->is_tunnel)
        return false;
    if (c->st != CONN_ST_PICK && c->st != CONN_ST_CONNECT && c->st != CONN_ST_RELAY &&
        c->st != CONN_ST_RESPOND)
        return false;
    h->r.keep_alive = false;
    return true;
}

/* Each request is logged when it completes; what is left is a request cut
 * short or a connection refused before any. */
static void http_log_last(struct session *c)
{
    struct http_conn *h = http_of(c);
    if (h->r.t_req > 0 || (c->reject_reason != NULL && h->n_requests == 0))
        http_access_log(c);
}

/* The current request's fields: method, path, status, upstream time; its
 * start; and the bytes since the previous line (this request's). */
static void http_log_fields(struct session *c, struct access_fields *f, ev_tstamp now)
{
    struct http_conn *h = http_of(c);
    char e_method[64], e_path[1100];
    f->start = h->r.t_req > 0 ? h->r.t_req : 0;
    f->base_in = h->logged_in;
    f->base_out = h->logged_out;
    h->logged_in = c->bytes_in;
    h->logged_out = c->bytes_out;
    log_json_escape(e_method, sizeof(e_method), h->r.log_method);
    log_json_escape(e_path, sizeof(e_path), h->r.log_path);
    double upstream = h->r.t_upstream > 0 ? (now - h->r.t_upstream) * 1000.0 : 0.0;
    snprintf(f->extra, f->extra_len,
             ",\"method\":\"%s\",\"path\":\"%s\",\"status\":%u,\"upstream_ms\":%.3f,"
             "\"request\":%u",
             e_method, e_path, h->r.status, upstream, h->n_requests);
}

const struct proto_ops http_proto_ops = {
    .name = "http/1.1",
    .size = sizeof(struct http_session),
    .echo_http = true,
    .is_lingering = true,
    .init = http_init,
    .fini = http_fini,
    .on_established = http_established,
    .step =
        {
            [CONN_ST_PICK] = http_pick,
            [CONN_ST_CONNECT] = http_connect,
            [CONN_ST_RELAY] = http_relay,
            [CONN_ST_READ_HEAD] = http_read_head,
            [CONN_ST_RESPOND] = http_respond,
        },
    .on_enter = http_enter,
    .interest = http_interest,
    .idle_timeout = http_idle_timeout,
    .passive_status = http_passive_status,
    .on_cut = http_on_cut,
    .log_last = http_log_last,
    .log_fields = http_log_fields,
    /* The request in flight finishes; the connection then ends at its next
     * idle or header timeout, or the drain timeout. */
    .on_drain = proto_drain_nothing,
};
