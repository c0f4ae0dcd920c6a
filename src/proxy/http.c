#include "proxy/conn.h"

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
#define MAX_CHAIN    4

static enum conn_state start_exchange(struct conn *c);

static void release_buffers(struct conn *c)
{
    conn_buf_put(c->w, &c->http->cin);
    conn_buf_put(c->w, &c->http->bin);
    conn_buf_put(c->w, &c->c2b);
    conn_buf_put(c->w, &c->b2c);
}

static void close_backend(struct conn *c)
{
    ev_io_stop(c->w->loop, &c->be.io);
    c->be.events = 0;
    betls_close(c);
    if (c->be.fd >= 0)
        close(c->be.fd);
    c->be.fd = -1;
    c->c2b.r = c->c2b.w = 0;
    c->http->bin.r = c->http->bin.w = 0;
}

/* A read of the client may find bytes: the loop reported it readable since
 * a read last found it empty, or a record waits inside OpenSSL (read-ahead). */
static bool cli_may_read(const struct conn *c)
{
    return c->cli.can_read || (c->ssl != NULL && SSL_has_pending(c->ssl));
}

/* recv() and send() toward the backend, over TLS when the group has it. */
static ssize_t be_recv(struct conn *c, void *dst, size_t len)
{
    if (c->http->be_ssl != NULL)
        return betls_read(c, dst, len);
    return recv(c->be.fd, dst, len, 0);
}

static ssize_t be_send(struct conn *c, const void *src, size_t len)
{
    if (c->http->be_ssl != NULL)
        return betls_write(c, src, len);
    return send(c->be.fd, src, len, MSG_NOSIGNAL);
}

/* Case-insensitive equality of a parsed host name and the SNI name, one
 * trailing dot of the SNI ignored as http_host_parse ignores the Host's. */
static bool name_is_sni(const struct http_host *h, const char *sni)
{
    size_t n = strlen(sni);
    if (n > 1 && sni[n - 1] == '.')
        n--;
    return h->kind == HTTP_HOST_NAME && h->name_len == n && strncasecmp(h->name, sni, n) == 0;
}

/*
 * The Host of a request on a mutual listener names the host the TLS
 * handshake was for: the SNI name. Without SNI (a client that connected by
 * address) only an address or no Host passes, so that leaving SNI out is
 * no way around the check. The Host is read by http_host_parse, as the
 * parser and the rules read it: what is compared is what is routed on.
 */
static bool host_matches_sni(struct conn *c, const char *host, size_t host_len)
{
    const char *sni = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
    struct http_host h;
    if (host != NULL && !http_host_parse(host, host_len, &h))
        return false;
    if (sni == NULL)
        return host == NULL || h.kind != HTTP_HOST_NAME;
    return host != NULL && name_is_sni(&h, sni);
}

/* Forgets what the previous request on this connection left behind, so
 * that neither its answer nor its log fields are taken for this one's. */
static void begin_request(struct conn *c)
{
    struct http_conn *h = c->http;
    h->t_req = ev_time(); /* a duration's start: the clock (see conn_new) */
    h->t_upstream = 0;
    h->n_requests++;
    h->status = 0;
    h->req_done = false;
    h->resp_head_done = false;
    h->resp_head_parsed = false;
    h->resp_done = false;
    h->sent_to_client = false;
    h->be_reused = false;
    h->retried = false;
    h->be_tls_failed = false;
    h->head_in_cin = 0;
    h->req_bytes = h->resp_bytes = 0;
    h->log_method[0] = '\0';
    h->log_path = "";
    c->outcome = CONN_OUT_OK;
    c->target = -1;
    c->tried = 0;
    c->n_tried = 0;
}

/* The request head is complete: check it, then route it. */
static enum conn_state request_ready(struct conn *c)
{
    struct http_conn *h = c->http;
    struct http_head *rq = &h->m->req;
    const struct cfg_listener *l = c->l->cfg;

    begin_request(c);
    h->keep_alive = rq->keep_alive;
    h->head_in_cin = rq->len;
    snprintf(h->log_method, sizeof(h->log_method), "%.*s", (int)rq->method_s.len,
             http_span_ptr(rq, rq->method_s));
    snprintf(h->m->log_path, sizeof(h->m->log_path), "%.*s", (int)rq->target.len,
             http_span_ptr(rq, rq->target));
    h->log_path = h->m->log_path;

    if (conn_reject_page_applies(c)) {
        char page[8192];
        const char *reason = NULL;
        int a = http_head_find(rq, "accept");
        bool json = a >= 0 && memmem(http_span_ptr(rq, rq->h[a].value), rq->h[a].value.len,
                                     "application/json", 16) != NULL;
        unsigned st = conn_reject_page(c, json, page, sizeof(page), &reason);
        if (st != 0) {
            if (c->reject_reason == NULL)
                conn_log_rejection(c, reason, "answered with the on_reject page");
            c->outcome = CONN_OUT_TLS_REJECTED;
            return http_answer(c, st, json ? "application/json" : "text/html; charset=utf-8", NULL,
                               page, false);
        }
    }
    if (rq->method == HTTP_CONNECT)
        return http_error_page(c, 405, "CONNECT is not supported");

    const char *host = rq->host >= 0 ? http_span_ptr(rq, rq->h[rq->host].value) : NULL;
    size_t host_len = rq->host >= 0 ? rq->h[rq->host].value.len : 0;
    /* A certificate accepted for one name must not be used for another. */
    if (l->has_tls && l->tls.mode == CFG_TLS_MUTUAL && !host_matches_sni(c, host, host_len))
        return http_error_page(c, 421, "the Host header does not match the TLS server name");

    const char *target;
    size_t tlen;
    http_target_from_path(rq, &target, &tlen);
    const struct cfg_rule *r = route_match(l, host, host_len, target, http_path_len(target, tlen));
    const struct cfg_target_group *g = l->default_target_group;
    if (r != NULL) {
        if (r->has_respond)
            return http_respond_rule(c, r);
        if (r->has_redirect)
            return http_redirect(c, r, host, host_len);
        g = r->target_group;
    }
    if (g == NULL)
        return http_answer(c, 404, "text/plain; charset=utf-8", NULL, "404 Not Found\n",
                           rq->body == HTTP_BODY_NONE);
    c->group = g;
    return CONN_ST_PICK;
}

enum conn_state http_read_head(struct conn *c)
{
    struct http_conn *h = c->http;
    if (c->timed_out) {
        if (buf_is_empty(&h->cin))
            return CONN_ST_DRAIN; /* an idle keep-alive connection: close quietly */
        begin_request(c);
        return http_error_page(c, 408, "the request head did not arrive in time");
    }
    h->t_req = 0;
    for (;;) {
        if (!buf_is_empty(&h->cin)) {
            size_t len;
            const uint8_t *p = buf_rdata(&h->cin, &len);
            if (!http_msg_get(c))
                return CONN_ST_CLOSED;
            bool first_bytes = h->m->req_p.fed == 0;
            enum tg_status st = h1_head(&h->m->req_p, &h->m->req, (const char *)p, len);
            if (st == TG_OK)
                return request_ready(c);
            /* Part of a head pipelined behind the last request: it has
             * header_timeout to complete, as any head, not idle_timeout. */
            if (st == TG_E_AGAIN && first_bytes && h->n_requests > 0)
                conn_set_timer(c, c->l->cfg->header_timeout_ms);
            if (st == TG_E_PROTO) {
                begin_request(c);
                return http_error_page(c, h->m->req_p.err_status, h->m->req_p.err_reason);
            }
        }
        if (c->cli.rd_shut)
            return buf_is_empty(&h->cin) ? CONN_ST_DRAIN : CONN_ST_CLOSED;
        /* Back from a response, the client has usually sent nothing more:
         * wait for the loop to say so instead of a read that finds nothing. */
        if (!cli_may_read(c)) {
            conn_buf_put(c->w, &h->cin);
            return CONN_ST_READ_HEAD;
        }
        if (!conn_buf_get(c->w, &h->cin))
            return CONN_ST_CLOSED;
        bool was_empty = buf_is_empty(&h->cin);
        size_t room, n = 0;
        uint8_t *dst = buf_wspace(&h->cin, &room);
        enum tg_status st = conn_cli_read(c, dst, room, &n);
        if (st == TG_E_AGAIN) {
            conn_buf_put(c->w, &h->cin);
            return CONN_ST_READ_HEAD;
        }
        if (st != TG_OK) {
            c->cli.rd_shut = true;
            continue;
        }
        buf_commit(&h->cin, n);
        c->bytes_in += n;
        if (was_empty && h->n_requests > 0)
            conn_set_timer(c, c->l->cfg->header_timeout_ms);
    }
}

enum conn_state http_pick(struct conn *c)
{
    const struct cfg_target_group *g = c->group;
    struct http_conn *h = c->http;
    bool skip[CFG_MAX_TARGETS];
    for (size_t i = 0; i < g->n_targets && i < CFG_MAX_TARGETS; i++)
        skip[i] = (c->tried & (UINT64_C(1) << i)) != 0;
    /* sticky cookie: the target it names, while the head is in cin */
    bool is_cookie = g->sticky.type == CFG_STICKY_COOKIE;
    int64_t now_s = (int64_t)ev_now(c->w->loop);
    int want = -1;
    h->m->set_cookie[0] = '\0';
    if (is_cookie && h->head_in_cin > 0) {
        size_t len;
        h->m->req.base = (const char *)buf_rdata(&h->cin, &len);
        for (size_t i = 0; i < h->m->req.n_headers && want < 0; i++) {
            const struct http_header *f = &h->m->req.h[i];
            if (http_span_ieq(&h->m->req, f->name, "cookie"))
                want = lb_cookie_target(c->w->lb, g, http_span_ptr(&h->m->req, f->value),
                                        f->value.len, now_s);
        }
    }
    int t = lb_pick_prefer(c->w->lb, g, &c->peer, skip, want);
    if (t == LB_REJECT) {
        log_warn("event=all_targets_down listener=%s " CONN_FMT " target_group=%s action=reject",
                 c->l->cfg->name, CONN_ARGS(c), g->name);
        c->outcome = CONN_OUT_ALL_TARGETS_DOWN;
        return http_error_page(c, 503, "every target of the group is down");
    }
    if (t < 0 && h->be_tls_failed) {
        c->outcome = CONN_OUT_BACKEND_TLS_FAILED;
        return http_error_page(c, 502, "the TLS handshake with the backend failed");
    }
    if (t < 0) {
        c->outcome = CONN_OUT_NO_TARGET;
        return http_error_page(
            c, 503, c->n_tried > 0 ? "no target could be reached" : "no target available");
    }
    c->target = t;
    conn_lb_begin(c, t);
    if (is_cookie && t != want)
        (void)lb_cookie_header(c->w->lb, g, t, c->ssl != NULL, now_s, h->m->set_cookie,
                               sizeof(h->m->set_cookie));
    SSL *ssl = NULL;
    int fd = bpool_take(c->w->bpool, g, t, &ssl);
    if (fd < 0)
        return CONN_ST_CONNECT;
    c->be.fd = fd;
    h->be_ssl = ssl;
    c->be.events = 0;
    c->be.rd_shut = c->be.wr_shut = false;
    c->be.can_read = false; /* the request is not sent yet: nothing can be there */
    conn_io_reuse_fd(&c->be.io, fd, 0);
    c->http->be_reused = true;
    return start_exchange(c);
}

static void der_free_all(uint8_t **ders, size_t n)
{
    for (size_t i = 0; i < n; i++)
        OPENSSL_free(ders[i]);
}

/* Writes the rewritten request head into c2b, which grows past its pooled
 * size for a head that needs it (a large client certificate), up to
 * HTTP_MAX_FORWARD_HEAD_BYTES. */
static bool write_request_head(struct conn *c)
{
    struct http_conn *h = c->http;
    struct tls_info info;
    const struct cfg_listener *l = c->l->cfg;
    enum cfg_cert_header what = l->tls.client_cert_header;
    struct hdr_identity id = {
        .client = &c->peer,
        .port = net_addr_port(&l->addr),
        .proto = c->ssl ? "https" : "http",
        .cert_header = what,
        .client_is_trusted_proxy =
            config_cidr_contains(l->trusted_proxies, l->n_trusted_proxies, &c->peer),
        .allow_underscores = l->allow_underscores_in_headers,
        .add_forwarded = l->add_forwarded_header,
    };
    uint8_t *ders[MAX_CHAIN + 1] = {0};
    const uint8_t *chain[MAX_CHAIN];
    size_t lens[MAX_CHAIN + 1], n_ders = 0;

    if (c->ssl != NULL) {
        tls_info_get(c->ssl, &c->verdict, &info);
        id.tls = &info;
        X509 *leaf = SSL_get0_peer_certificate(c->ssl);
        bool send_der = what == CFG_CERT_HEADER_FULL || what == CFG_CERT_HEADER_LEAF;
        int n = leaf && send_der ? i2d_X509(leaf, &ders[0]) : 0;
        if (n > 0) {
            lens[0] = (size_t)n;
            n_ders = 1;
            id.cert_der = ders[0];
            id.cert_der_len = lens[0];
            STACK_OF(X509) *sk =
                what == CFG_CERT_HEADER_FULL ? SSL_get_peer_cert_chain(c->ssl) : NULL;
            /* A resumed session has no chain of its own: the ticket kept
             * the one its first handshake got. */
            if (what == CFG_CERT_HEADER_FULL && sk == NULL) {
                size_t kept = tls_session_chain(c->ssl, chain, lens + 1, MAX_CHAIN);
                n_ders += kept;
            }
            for (int i = 0; sk != NULL && i < sk_X509_num(sk) && n_ders <= MAX_CHAIN; i++) {
                X509 *x = sk_X509_value(sk, i);
                if (X509_cmp(x, leaf) == 0)
                    continue;
                n = i2d_X509(x, &ders[n_ders]);
                if (n <= 0)
                    break;
                lens[n_ders] = (size_t)n;
                chain[n_ders - 1] = ders[n_ders];
                n_ders++;
            }
            id.chain_der = chain;
            id.chain_der_len = lens + 1;
            id.n_chain = n_ders - 1;
        }
    }
    size_t len;
    h->m->req.base = (const char *)buf_rdata(&h->cin, &len);
    bool ok = conn_buf_get(c->w, &c->c2b) && http_hdr_request(&h->m->req, &id, &c->c2b) == TG_OK;
    if (!ok && buf_has_mem(&c->c2b)) {
        /* Only a head that does not fit the pooled block is measured. */
        size_t need = http_hdr_request_size(&h->m->req, &id);
        ok = need <= HTTP_MAX_FORWARD_HEAD_BYTES && conn_buf_get_room(c->w, &c->c2b, need) &&
             http_hdr_request(&h->m->req, &id, &c->c2b) == TG_OK;
    }
    der_free_all(ders, n_ders);
    return ok;
}

/* The backend connection is up: send the head, and from now on the body. */
static enum conn_state start_exchange(struct conn *c)
{
    struct http_conn *h = c->http;
    c->c2b.r = c->c2b.w = 0;
    if (!write_request_head(c))
        return http_error_page(c, 431, "the request head is too large to forward");
    /* A request without a body keeps its head in cin until the response
     * starts, so that a stale pooled connection can be retried. */
    if (h->m->req.body != HTTP_BODY_NONE) {
        buf_consume(&h->cin, h->head_in_cin);
        h->head_in_cin = 0;
    }
    h->req_done = h->m->req.body == HTTP_BODY_NONE;
    h1_next(&h->m->resp_p, h->m->req.method == HTTP_HEAD);
    h->t_upstream = ev_time();
    c->relay_timeout = (ev_tstamp)c->l->cfg->response_timeout_ms / 1000.0;
    return CONN_ST_RELAY;
}

/* Connected: over TLS the handshake comes first, and a failed one is a
 * failed connect (the next target, or a 502). */
static enum conn_state backend_connected(struct conn *c)
{
    if (betls_wanted(c)) {
        enum tg_status st = betls_handshake(c);
        if (st == TG_E_AGAIN)
            return CONN_ST_CONNECT;
        if (st != TG_OK)
            return CONN_ST_PICK;
    }
    return start_exchange(c);
}

enum conn_state http_connect(struct conn *c)
{
    if (c->be.fd < 0) {
        bool in_progress = false;
        if (tcp_open_backend(c, &in_progress) != TG_OK)
            return tcp_connect_failed(c, strerror(errno));
        if (in_progress)
            return CONN_ST_CONNECT;
        return backend_connected(c);
    }
    if (c->timed_out && c->http->be_ssl != NULL)
        return betls_connect_failed(c, "handshake_timeout", "no complete handshake in time");
    if (c->timed_out)
        return tcp_connect_failed(c, "connect timeout");
    if (c->http->be_ssl == NULL && net_connect_result(c->be.fd) != TG_OK)
        return tcp_connect_failed(c, strerror(errno));
    return backend_connected(c);
}

/* A pooled connection that the target had closed: one retry on a fresh
 * connection, when nothing of the request is lost by it. */
static bool can_retry(const struct conn *c)
{
    const struct http_conn *h = c->http;
    return h->be_reused && !h->retried && !h->resp_head_parsed && buf_is_empty(&h->bin) &&
           h->m->req.body == HTTP_BODY_NONE && h->head_in_cin > 0;
}

static enum conn_state backend_failed(struct conn *c, const char *why)
{
    struct http_conn *h = c->http;
    if (can_retry(c)) {
        char e_why[LOG_KV_MAX];
        log_info("event=backend_retry listener=%s " CONN_FMT " target=%s reason=%s",
                 c->l->cfg->name, CONN_ARGS(c), c->group->targets[c->target].address,
                 log_kv(e_why, sizeof(e_why), why));
        close_backend(c);
        h->retried = true;
        h->be_reused = false;
        return CONN_ST_CONNECT;
    }
    close_backend(c);
    if (h->resp_head_done) {
        c->outcome = CONN_OUT_BACKEND_TRUNCATED;
        return CONN_ST_CLOSED;
    }
    c->outcome = CONN_OUT_BAD_GATEWAY;
    return http_error_page(c, 502, why);
}

/* Request body: cin to c2b, as much as fits. */
static enum conn_state request_body(struct conn *c, bool *progress)
{
    struct http_conn *h = c->http;
    if (h->req_done || buf_is_empty(&h->cin) || !conn_buf_get(c->w, &c->c2b))
        return CONN_ST_RELAY;
    size_t len, room, n = 0;
    bool done = false;
    const uint8_t *src = buf_rdata(&h->cin, &len);
    uint8_t *dst = buf_wspace(&c->c2b, &room);
    if (len > room)
        len = room;
    if (h1_body(&h->m->req_p, (const char *)src, len, &n, &done) != TG_OK) {
        close_backend(c);
        return http_error_page(c, h->m->req_p.err_status, h->m->req_p.err_reason);
    }
    memcpy(dst, src, n);
    buf_commit(&c->c2b, n);
    buf_consume(&h->cin, n);
    h->req_bytes += n;
    h->req_done = done;
    *progress = *progress || n > 0 || done;
    return CONN_ST_RELAY;
}

/* The response head from bin: 1xx are passed on, the final one starts
 * the body (or the tunnel). */
static enum conn_state response_head(struct conn *c, bool *progress)
{
    struct http_conn *h = c->http;
    if (!h->resp_head_parsed) {
        size_t len;
        const uint8_t *src = buf_rdata(&h->bin, &len);
        enum tg_status st = h1_head(&h->m->resp_p, &h->m->resp, (const char *)src, len);
        if (st == TG_E_AGAIN)
            return c->be.rd_shut ? backend_failed(c, "the backend closed before responding")
                                 : CONN_ST_RELAY;
        if (st != TG_OK)
            return backend_failed(c, "the backend sent an invalid response");
        h->resp_head_parsed = true;
    }
    struct http_head *rs = &h->m->resp;
    bool interim = rs->status >= 100 && rs->status < 200 && rs->status != 101;
    if (rs->status == 101 && !h->m->req.is_upgrade)
        return backend_failed(c, "the backend switched protocols unasked");
    /* A final answer that comes before the whole request went out (a 413
     * from the head alone) ends the connection: the rest of the request
     * would otherwise be read as the next one. Say so to the client. */
    bool keep =
        interim || (h->keep_alive && h->req_done && rs->body != HTTP_BODY_EOF && rs->status != 101);
    size_t len;
    rs->base = (const char *)buf_rdata(&h->bin, &len);
    const char *extra = interim || h->m->set_cookie[0] == '\0' ? NULL : h->m->set_cookie;
    if (!conn_buf_get(c->w, &c->b2c) || http_hdr_response(rs, keep, extra, &c->b2c) != TG_OK)
        return CONN_ST_RELAY; /* wait for room in b2c */
    buf_consume(&h->bin, rs->len);
    h->sent_to_client = true;
    *progress = true;
    if (h->head_in_cin > 0) {
        buf_consume(&h->cin, h->head_in_cin);
        h->head_in_cin = 0;
    }
    if (interim) {
        h->resp_head_parsed = false;
        h1_next(&h->m->resp_p, h->m->req.method == HTTP_HEAD);
        return CONN_ST_RELAY;
    }
    h->keep_alive = keep;
    h->status = rs->status;
    h->resp_head_done = true;
    h->resp_done = rs->body == HTTP_BODY_NONE && rs->status != 101;
    c->relay_timeout = (ev_tstamp)c->l->cfg->idle_timeout_ms / 1000.0;
    if (rs->status == 101)
        h->is_tunnel = true;
    return CONN_ST_RELAY;
}

/* Response body: bin to b2c, as much as fits. */
static enum conn_state response_body(struct conn *c, bool *progress)
{
    struct http_conn *h = c->http;
    if (h->resp_done)
        return CONN_ST_RELAY;
    if (!buf_is_empty(&h->bin) && conn_buf_get(c->w, &c->b2c)) {
        size_t len, room, n = 0;
        bool done = false;
        const uint8_t *src = buf_rdata(&h->bin, &len);
        uint8_t *dst = buf_wspace(&c->b2c, &room);
        if (len > room)
            len = room;
        if (h1_body(&h->m->resp_p, (const char *)src, len, &n, &done) != TG_OK) {
            close_backend(c);
            c->outcome = CONN_OUT_BAD_GATEWAY;
            return CONN_ST_CLOSED;
        }
        memcpy(dst, src, n);
        buf_commit(&c->b2c, n);
        buf_consume(&h->bin, n);
        h->resp_bytes += n;
        h->resp_done = done;
        *progress = *progress || n > 0 || done;
    }
    if (!h->resp_done && c->be.rd_shut && buf_is_empty(&h->bin)) {
        if (h->m->resp.body != HTTP_BODY_EOF) {
            close_backend(c);
            c->outcome = CONN_OUT_BACKEND_TRUNCATED;
            return CONN_ST_CLOSED;
        }
        h->resp_done = true;
        *progress = true;
    }
    return CONN_ST_RELAY;
}

/* Moves bytes between the sockets and the buffers. Returns a state other
 * than RELAY when the exchange has to end. */
static enum conn_state pump(struct conn *c, bool *progress)
{
    struct http_conn *h = c->http;
    enum conn_state next;

    /* The client is read only when it can have sent something: after a
     * request without a body it has nothing more to say until its next
     * request, which READ_HEAD reads once this response is out (unless the
     * loop reports bytes or its EOF sooner). */
    if (!c->cli.rd_shut && cli_may_read(c) && conn_buf_get(c->w, &h->cin) &&
        !buf_is_full(&h->cin)) {
        size_t room, n = 0;
        uint8_t *dst = buf_wspace(&h->cin, &room);
        if (h->head_in_cin > 0)
            dst = buf_wspace_tail(&h->cin, &room); /* the head must stay put */
        enum tg_status st = room ? conn_cli_read(c, dst, room, &n) : TG_E_AGAIN;
        if (st == TG_OK) {
            buf_commit(&h->cin, n);
            c->bytes_in += n;
            *progress = true;
        } else if (st != TG_E_AGAIN) {
            c->cli.rd_shut = true;
            if (!h->req_done) {
                c->outcome = CONN_OUT_CLIENT_CLOSED;
                return CONN_ST_CLOSED;
            }
        }
    }
    if ((next = request_body(c, progress)) != CONN_ST_RELAY)
        return next;
    if (!buf_is_empty(&c->c2b) && c->be.fd >= 0 && !c->be.wr_shut) {
        size_t len;
        const uint8_t *src = buf_rdata(&c->c2b, &len);
        ssize_t n = be_send(c, src, len);
        if (n > 0) {
            buf_consume(&c->c2b, (size_t)n);
            conn_buf_shrink(c->w, &c->c2b);
            *progress = true;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            if (can_retry(c) || h->head_in_cin > 0)
                return backend_failed(c, "the connection to the backend broke");
            /* The head went out and the target stopped taking the body: it
             * may have answered early (413, 401) and closed. Read on and
             * forward that answer; without one it is a 502 below. The rest
             * of the request is dropped, so the client connection ends
             * after this exchange. */
            c->be.wr_shut = true;
            c->c2b.r = c->c2b.w = 0;
            h->keep_alive = false;
            *progress = true;
        }
    }
    /* The backend is read only once the loop reported it readable: not in
     * the pass that just sent it the request, where nothing can be there. */
    if (!c->be.rd_shut && c->be.fd >= 0 && c->be.can_read && conn_buf_get(c->w, &h->bin) &&
        !buf_is_full(&h->bin)) {
        size_t room;
        uint8_t *dst =
            h->resp_head_parsed ? buf_wspace(&h->bin, &room) : buf_wspace_tail(&h->bin, &room);
        ssize_t n = room ? be_recv(c, dst, room) : -1;
        if (n > 0) {
            buf_commit(&h->bin, (size_t)n);
            /* A short plain read emptied the socket; over TLS bytes may
             * still wait inside OpenSSL, so only EAGAIN says empty. */
            if (h->be_ssl == NULL && (size_t)n < room)
                c->be.can_read = false;
            *progress = true;
        } else if (n < 0 && room > 0 && errno == EAGAIN) {
            c->be.can_read = false;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR && room > 0)) {
            c->be.rd_shut = true;
            *progress = true;
        }
    }
    if (!h->resp_head_done && (!buf_is_empty(&h->bin) || c->be.rd_shut)) {
        if ((next = response_head(c, progress)) != CONN_ST_RELAY || h->is_tunnel)
            return next;
    }
    if (h->resp_head_done && (next = response_body(c, progress)) != CONN_ST_RELAY)
        return next;
    if (!buf_is_empty(&c->b2c)) {
        size_t len, n = 0;
        const uint8_t *src = buf_rdata(&c->b2c, &len);
        enum tg_status st = conn_cli_write(c, src, len, &n);
        if (st == TG_OK) {
            buf_consume(&c->b2c, n);
            c->bytes_out += n;
            *progress = true;
        } else if (st != TG_E_AGAIN) {
            close_backend(c);
            c->outcome = CONN_OUT_CLIENT_RESET;
            return CONN_ST_CLOSED;
        }
    }
    return CONN_ST_RELAY;
}

/* The client sent its EOF and nothing more is buffered: requests it
 * pipelined before closing its side are still answered. */
static bool client_done(const struct conn *c)
{
    return c->cli.rd_shut && buf_is_empty(&c->http->cin);
}

/* The response went out whole: log it, keep the backend connection when
 * it can carry another request, and wait for the next request. */
static enum conn_state finish_request(struct conn *c)
{
    struct http_conn *h = c->http;
    bool reusable = h->req_done && h->m->resp.keep_alive && h->m->resp.body != HTTP_BODY_EOF &&
                    buf_is_empty(&h->bin) && buf_is_empty(&c->c2b) && !c->be.rd_shut &&
                    !c->be.wr_shut;
    if (reusable && c->be.fd >= 0) {
        ev_io_stop(c->w->loop, &c->be.io);
        c->be.events = 0;
        bpool_put(c->w->bpool, c->group, c->target, c->be.fd, h->be_ssl);
        h->be_ssl = NULL;
        c->be.fd = -1;
    } else {
        close_backend(c);
    }
    conn_access_log(c);
    h->t_req = 0;
    bool again = h->req_done && h->keep_alive && !client_done(c);
    http_msg_put(h);
    if (!again)
        return CONN_ST_DRAIN;
    release_buffers(c);
    return CONN_ST_READ_HEAD;
}

/* After a 101: what is already buffered goes first, then raw relay. */
static enum conn_state tunnel(struct conn *c)
{
    struct http_conn *h = c->http;
    struct buf *pairs[2][2] = {{&h->cin, &c->c2b}, {&h->bin, &c->b2c}};
    for (int i = 0; i < 2; i++) {
        struct buf *from = pairs[i][0], *to = pairs[i][1];
        if (buf_is_empty(from))
            continue;
        if (!conn_buf_get(c->w, to))
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

enum conn_state http_relay(struct conn *c)
{
    struct http_conn *h = c->http;
    if (h->is_tunnel)
        return tunnel(c);
    if (c->timed_out) {
        if (!h->resp_head_done) {
            close_backend(c);
            c->outcome = CONN_OUT_RESPONSE_TIMEOUT;
            return http_error_page(c, 504, "the backend did not answer in time");
        }
        c->outcome = CONN_OUT_IDLE_TIMEOUT;
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
    if (h->resp_done && buf_is_empty(&c->b2c))
        return finish_request(c);
    release_buffers(c);
    return CONN_ST_RELAY;
}

enum conn_state http_respond(struct conn *c)
{
    struct http_conn *h = c->http;
    if (c->timed_out)
        return CONN_ST_CLOSED;
    while (!buf_is_empty(&c->b2c)) {
        size_t len, n = 0;
        const uint8_t *src = buf_rdata(&c->b2c, &len);
        enum tg_status st = conn_cli_write(c, src, len, &n);
        if (st == TG_E_AGAIN)
            return CONN_ST_RESPOND;
        if (st != TG_OK)
            return CONN_ST_CLOSED;
        buf_consume(&c->b2c, n);
        c->bytes_out += n;
        c->last_activity = ev_now(c->w->loop);
    }
    conn_access_log(c);
    h->t_req = 0;
    buf_consume(&h->cin, h->head_in_cin);
    h->head_in_cin = 0;
    http_msg_put(h);
    if (!h->keep_alive || client_done(c))
        return CONN_ST_DRAIN;
    release_buffers(c);
    return CONN_ST_READ_HEAD;
}
