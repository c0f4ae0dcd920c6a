#include "proxy/http1.h"
#include "proxy/betls.h"
#include "proxy/bpool.h"
#include "proxy/reject.h"
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
#define MAX_CHAIN    4

static enum conn_state start_exchange(struct session *c);

/* The access line of a request, and its metrics. */
static void http_access_log(struct session *c)
{
    struct http_conn *h = http_of(c);
    if (h->t_req > 0)
        shm_count_request(c->l->stats, h->status, ev_time() - h->t_req);
    session_access_log(c);
}

static void release_buffers(struct session *c)
{
    worker_buf_put(c->w, &http_of(c)->cin);
    worker_buf_put(c->w, &http_of(c)->bin);
    worker_buf_put(c->w, &c->ex->c2b);
    worker_buf_put(c->w, &c->ex->b2c);
}

static void close_backend(struct session *c)
{
    ev_io_stop(c->w->loop, &c->ex->be.io);
    c->ex->be.events = 0;
    betls_close(c);
    if (c->ex->be.fd >= 0)
        close(c->ex->be.fd);
    c->ex->be.fd = -1;
    c->ex->c2b.r = c->ex->c2b.w = 0;
    http_of(c)->bin.r = http_of(c)->bin.w = 0;
}

/* A read of the client may find bytes: the loop reported it readable since
 * a read last found it empty, or a record waits inside OpenSSL (read-ahead). */
static bool cli_may_read(const struct session *c)
{
    return c->cli.can_read || (c->ssl != NULL && SSL_has_pending(c->ssl));
}

/* recv() and send() toward the backend, over TLS when the group has it. */
static ssize_t be_recv(struct session *c, void *dst, size_t len)
{
    if (c->ex->be_ssl != NULL)
        return betls_read(c, dst, len);
    return recv(c->ex->be.fd, dst, len, 0);
}

static ssize_t be_send(struct session *c, const void *src, size_t len)
{
    if (c->ex->be_ssl != NULL)
        return betls_write(c, src, len);
    return send(c->ex->be.fd, src, len, MSG_NOSIGNAL);
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
static bool host_matches_sni(struct session *c, const char *host, size_t host_len)
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
static void begin_request(struct session *c)
{
    struct http_conn *h = http_of(c);
    h->t_req = ev_time(); /* a duration's start: the clock (see session_new) */
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
    c->ex->be_tls_failed = false;
    h->head_in_cin = 0;
    h->req_bytes = h->resp_bytes = 0;
    h->log_method[0] = '\0';
    h->log_path = "";
    c->ex->outcome = CONN_OUT_OK;
    c->ex->target = -1;
    c->ex->tried = 0;
    c->ex->n_tried = 0;
}

/* The request head is complete: check it, then route it. */
static enum conn_state request_ready(struct session *c)
{
    struct http_conn *h = http_of(c);
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

    if (reject_page_applies(c)) {
        char page[8192];
        const char *reason = NULL;
        int a = http_head_find(rq, "accept");
        bool json = a >= 0 && memmem(http_span_ptr(rq, rq->h[a].value), rq->h[a].value.len,
                                     "application/json", 16) != NULL;
        unsigned st = reject_page(c, json, page, sizeof(page), &reason);
        if (st != 0) {
            if (c->reject_reason == NULL)
                session_log_rejection(c, reason, "answered with the on_reject page");
            c->ex->outcome = CONN_OUT_TLS_REJECTED;
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
    c->ex->group = g;
    return CONN_ST_PICK;
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
                session_set_timer(c, c->l->cfg->header_timeout_ms);
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

static enum conn_state http_pick(struct session *c)
{
    const struct cfg_target_group *g = c->ex->group;
    struct http_conn *h = http_of(c);
    bool skip[CFG_MAX_TARGETS];
    for (size_t i = 0; i < g->n_targets && i < CFG_MAX_TARGETS; i++)
        skip[i] = (c->ex->tried & (UINT64_C(1) << i)) != 0;
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
        c->ex->outcome = CONN_OUT_ALL_TARGETS_DOWN;
        return http_error_page(c, 503, "every target of the group is down");
    }
    if (t < 0 && c->ex->be_tls_failed) {
        c->ex->outcome = CONN_OUT_BACKEND_TLS_FAILED;
        return http_error_page(c, 502, "the TLS handshake with the backend failed");
    }
    if (t < 0) {
        c->ex->outcome = CONN_OUT_NO_TARGET;
        return http_error_page(
            c, 503, c->ex->n_tried > 0 ? "no target could be reached" : "no target available");
    }
    c->ex->target = t;
    exchange_lb_begin(c, t);
    if (is_cookie && t != want)
        (void)lb_cookie_header(c->w->lb, g, t, c->ssl != NULL, now_s, h->m->set_cookie,
                               sizeof(h->m->set_cookie));
    SSL *ssl = NULL;
    int fd = bpool_take(c->w->bpool, g, t, &ssl);
    if (fd < 0)
        return CONN_ST_CONNECT;
    c->ex->be.fd = fd;
    c->ex->be_ssl = ssl;
    c->ex->be.events = 0;
    c->ex->be.rd_shut = c->ex->be.wr_shut = false;
    c->ex->be.can_read = false; /* the request is not sent yet: nothing can be there */
    side_reuse_fd(&c->ex->be.io, fd, 0);
    http_of(c)->be_reused = true;
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
static bool write_request_head(struct session *c)
{
    struct http_conn *h = http_of(c);
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
    bool ok = worker_buf_get(c->w, &c->ex->c2b) &&
              http_hdr_request(&h->m->req, &id, &c->ex->c2b) == TG_OK;
    if (!ok && buf_has_mem(&c->ex->c2b)) {
        /* Only a head that does not fit the pooled block is measured. */
        size_t need = http_hdr_request_size(&h->m->req, &id);
        ok = need <= HTTP_MAX_FORWARD_HEAD_BYTES && worker_buf_get_room(c->w, &c->ex->c2b, need) &&
             http_hdr_request(&h->m->req, &id, &c->ex->c2b) == TG_OK;
    }
    der_free_all(ders, n_ders);
    return ok;
}

/* The backend connection is up: send the head, and from now on the body. */
static enum conn_state start_exchange(struct session *c)
{
    struct http_conn *h = http_of(c);
    c->ex->c2b.r = c->ex->c2b.w = 0;
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
    c->ex->relay_timeout = (ev_tstamp)c->l->cfg->response_timeout_ms / 1000.0;
    return CONN_ST_RELAY;
}

/* Connected: over TLS the handshake comes first, and a failed one is a
 * failed connect (the next target, or a 502). */
static enum conn_state backend_connected(struct session *c)
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

static enum conn_state http_connect(struct session *c)
{
    if (c->ex->be.fd < 0) {
        bool in_progress = false;
        if (exchange_open_backend(c, &in_progress) != TG_OK)
            return exchange_connect_failed(c, strerror(errno));
        if (in_progress)
            return CONN_ST_CONNECT;
        return backend_connected(c);
    }
    if (c->timed_out && c->ex->be_ssl != NULL)
        return betls_connect_failed(c, "handshake_timeout", "no complete handshake in time");
    if (c->timed_out)
        return exchange_connect_failed(c, "connect timeout");
    if (c->ex->be_ssl == NULL && net_connect_result(c->ex->be.fd) != TG_OK)
        return exchange_connect_failed(c, strerror(errno));
    return backend_connected(c);
}

/* A pooled connection that the target had closed: one retry on a fresh
 * connection, when nothing of the request is lost by it. */
static bool can_retry(const struct session *c)
{
    const struct http_conn *h = http_cof(c);
    return h->be_reused && !h->retried && !h->resp_head_parsed && buf_is_empty(&h->bin) &&
           h->m->req.body == HTTP_BODY_NONE && h->head_in_cin > 0;
}

static enum conn_state backend_failed(struct session *c, const char *why)
{
    struct http_conn *h = http_of(c);
    if (can_retry(c)) {
        char e_why[LOG_KV_MAX];
        log_info("event=backend_retry listener=%s " CONN_FMT " target=%s reason=%s",
                 c->l->cfg->name, CONN_ARGS(c), c->ex->group->targets[c->ex->target].address,
                 log_kv(e_why, sizeof(e_why), why));
        close_backend(c);
        h->retried = true;
        h->be_reused = false;
        return CONN_ST_CONNECT;
    }
    close_backend(c);
    if (h->resp_head_done) {
        c->ex->outcome = CONN_OUT_BACKEND_TRUNCATED;
        return CONN_ST_CLOSED;
    }
    c->ex->outcome = CONN_OUT_BAD_GATEWAY;
    return http_error_page(c, 502, why);
}

/* Request body: cin to c2b, as much as fits. */
static enum conn_state request_body(struct session *c, bool *progress)
{
    struct http_conn *h = http_of(c);
    if (h->req_done || buf_is_empty(&h->cin) || !worker_buf_get(c->w, &c->ex->c2b))
        return CONN_ST_RELAY;
    size_t len, room, n = 0;
    bool done = false;
    const uint8_t *src = buf_rdata(&h->cin, &len);
    uint8_t *dst = buf_wspace(&c->ex->c2b, &room);
    if (len > room)
        len = room;
    if (h1_body(&h->m->req_p, (const char *)src, len, &n, &done) != TG_OK) {
        close_backend(c);
        return http_error_page(c, h->m->req_p.err_status, h->m->req_p.err_reason);
    }
    memcpy(dst, src, n);
    buf_commit(&c->ex->c2b, n);
    buf_consume(&h->cin, n);
    h->req_bytes += n;
    h->req_done = done;
    *progress = *progress || n > 0 || done;
    return CONN_ST_RELAY;
}

/* The response head from bin: 1xx are passed on, the final one starts
 * the body (or the tunnel). */
static enum conn_state response_head(struct session *c, bool *progress)
{
    struct http_conn *h = http_of(c);
    if (!h->resp_head_parsed) {
        size_t len;
        const uint8_t *src = buf_rdata(&h->bin, &len);
        enum tg_status st = h1_head(&h->m->resp_p, &h->m->resp, (const char *)src, len);
        if (st == TG_E_AGAIN)
            return c->ex->be.rd_shut ? backend_failed(c, "the backend closed before responding")
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
    if (!worker_buf_get(c->w, &c->ex->b2c) ||
        http_hdr_response(rs, keep, extra, &c->ex->b2c) != TG_OK)
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
    c->ex->relay_timeout = (ev_tstamp)c->l->cfg->idle_timeout_ms / 1000.0;
    if (rs->status == 101)
        h->is_tunnel = true;
    return CONN_ST_RELAY;
}

/* Response body: bin to b2c, as much as fits. */
static enum conn_state response_body(struct session *c, bool *progress)
{
    struct http_conn *h = http_of(c);
    if (h->resp_done)
        return CONN_ST_RELAY;
    if (!buf_is_empty(&h->bin) && worker_buf_get(c->w, &c->ex->b2c)) {
        size_t len, room, n = 0;
        bool done = false;
        const uint8_t *src = buf_rdata(&h->bin, &len);
        uint8_t *dst = buf_wspace(&c->ex->b2c, &room);
        if (len > room)
            len = room;
        if (h1_body(&h->m->resp_p, (const char *)src, len, &n, &done) != TG_OK) {
            close_backend(c);
            c->ex->outcome = CONN_OUT_BAD_GATEWAY;
            return CONN_ST_CLOSED;
        }
        memcpy(dst, src, n);
        buf_commit(&c->ex->b2c, n);
        buf_consume(&h->bin, n);
        h->resp_bytes += n;
        h->resp_done = done;
        *progress = *progress || n > 0 || done;
    }
    if (!h->resp_done && c->ex->be.rd_shut && buf_is_empty(&h->bin)) {
        if (h->m->resp.body != HTTP_BODY_EOF) {
            close_backend(c);
            c->ex->outcome = CONN_OUT_BACKEND_TRUNCATED;
            return CONN_ST_CLOSED;
        }
        h->resp_done = true;
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
        if (h->head_in_cin > 0)
            dst = buf_wspace_tail(&h->cin, &room); /* the head must stay put */
        enum tg_status st = room ? session_cli_read(c, dst, room, &n) : TG_E_AGAIN;
        if (st == TG_OK) {
            buf_commit(&h->cin, n);
            c->bytes_in += n;
            *progress = true;
        } else if (st != TG_E_AGAIN) {
            c->cli.rd_shut = true;
            if (!h->req_done) {
                c->ex->outcome = CONN_OUT_CLIENT_CLOSED;
                return CONN_ST_CLOSED;
            }
        }
    }
    if ((next = request_body(c, progress)) != CONN_ST_RELAY)
        return next;
    if (!buf_is_empty(&c->ex->c2b) && c->ex->be.fd >= 0 && !c->ex->be.wr_shut) {
        size_t len;
        const uint8_t *src = buf_rdata(&c->ex->c2b, &len);
        ssize_t n = be_send(c, src, len);
        if (n > 0) {
            buf_consume(&c->ex->c2b, (size_t)n);
            worker_buf_shrink(c->w, &c->ex->c2b);
            *progress = true;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            if (can_retry(c) || h->head_in_cin > 0)
                return backend_failed(c, "the connection to the backend broke");
            /* The head went out and the target stopped taking the body: it
             * may have answered early (413, 401) and closed. Read on and
             * forward that answer; without one it is a 502 below. The rest
             * of the request is dropped, so the client connection ends
             * after this exchange. */
            c->ex->be.wr_shut = true;
            c->ex->c2b.r = c->ex->c2b.w = 0;
            h->keep_alive = false;
            *progress = true;
        }
    }
    /* The backend is read only once the loop reported it readable: not in
     * the pass that just sent it the request, where nothing can be there. */
    if (!c->ex->be.rd_shut && c->ex->be.fd >= 0 && c->ex->be.can_read &&
        worker_buf_get(c->w, &h->bin) && !buf_is_full(&h->bin)) {
        size_t room;
        uint8_t *dst =
            h->resp_head_parsed ? buf_wspace(&h->bin, &room) : buf_wspace_tail(&h->bin, &room);
        ssize_t n = room ? be_recv(c, dst, room) : -1;
        if (n > 0) {
            buf_commit(&h->bin, (size_t)n);
            /* A short plain read emptied the socket; over TLS bytes may
             * still wait inside OpenSSL, so only EAGAIN says empty. */
            if (c->ex->be_ssl == NULL && (size_t)n < room)
                c->ex->be.can_read = false;
            *progress = true;
        } else if (n < 0 && room > 0 && errno == EAGAIN) {
            c->ex->be.can_read = false;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR && room > 0)) {
            c->ex->be.rd_shut = true;
            *progress = true;
        }
    }
    if (!h->resp_head_done && (!buf_is_empty(&h->bin) || c->ex->be.rd_shut)) {
        if ((next = response_head(c, progress)) != CONN_ST_RELAY || h->is_tunnel)
            return next;
    }
    if (h->resp_head_done && (next = response_body(c, progress)) != CONN_ST_RELAY)
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
            close_backend(c);
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
    bool reusable = h->req_done && h->m->resp.keep_alive && h->m->resp.body != HTTP_BODY_EOF &&
                    buf_is_empty(&h->bin) && buf_is_empty(&c->ex->c2b) && !c->ex->be.rd_shut &&
                    !c->ex->be.wr_shut;
    if (reusable && c->ex->be.fd >= 0) {
        ev_io_stop(c->w->loop, &c->ex->be.io);
        c->ex->be.events = 0;
        bpool_put(c->w->bpool, c->ex->group, c->ex->target, c->ex->be.fd, c->ex->be_ssl);
        c->ex->be_ssl = NULL;
        c->ex->be.fd = -1;
    } else {
        close_backend(c);
    }
    http_access_log(c);
    h->t_req = 0;
    bool again = h->req_done && h->keep_alive && !client_done(c);
    http_msg_put(h);
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
    struct buf *pairs[2][2] = {{&h->cin, &c->ex->c2b}, {&h->bin, &c->ex->b2c}};
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
        if (!h->resp_head_done) {
            close_backend(c);
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
    if (h->resp_done && buf_is_empty(&c->ex->b2c))
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
    h->t_req = 0;
    buf_consume(&h->cin, h->head_in_cin);
    h->head_in_cin = 0;
    http_msg_put(h);
    if (!h->keep_alive || client_done(c))
        return CONN_ST_DRAIN;
    release_buffers(c);
    return c->cut_reason != NULL ? CONN_ST_CLOSED : CONN_ST_READ_HEAD;
}

static enum tg_status http_init(struct session *c)
{
    struct http_session *hs = (struct http_session *)(void *)c;
    hs->h.log_path = "";
    exchange_init(&hs->x, c);
    c->ex = &hs->x;
    return TG_OK;
}

static void http_fini(struct session *c)
{
    struct http_conn *h = http_of(c);
    http_msg_put(h);
    h->cin.r = h->cin.w = 0;
    h->bin.r = h->bin.w = 0;
    worker_buf_put(c->w, &h->cin);
    worker_buf_put(c->w, &h->bin);
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
        exchange_interest(c, h->is_tunnel ? &x->c2b : &h->cin, h->is_tunnel ? &x->b2c : &h->bin, ce,
                          be);
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
    return h->is_tunnel ? 0 : h->status;
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
    h->keep_alive = false;
    return true;
}

/* Each request is logged when it completes; what is left is a request cut
 * short or a connection refused before any. */
static void http_log_last(struct session *c)
{
    struct http_conn *h = http_of(c);
    if (h->t_req > 0 || (c->reject_reason != NULL && h->n_requests == 0))
        http_access_log(c);
}

/* The current request's fields: method, path, status, upstream time; its
 * start; and the bytes since the previous line (this request's). */
static void http_log_fields(struct session *c, struct access_fields *f, ev_tstamp now)
{
    struct http_conn *h = http_of(c);
    char e_method[64], e_path[1100];
    f->start = h->t_req > 0 ? h->t_req : 0;
    f->base_in = h->logged_in;
    f->base_out = h->logged_out;
    h->logged_in = c->bytes_in;
    h->logged_out = c->bytes_out;
    log_json_escape(e_method, sizeof(e_method), h->log_method);
    log_json_escape(e_path, sizeof(e_path), h->log_path);
    double upstream = h->t_upstream > 0 ? (now - h->t_upstream) * 1000.0 : 0.0;
    snprintf(f->extra, f->extra_len,
             ",\"method\":\"%s\",\"path\":\"%s\",\"status\":%u,\"upstream_ms\":%.3f,"
             "\"request\":%u",
             e_method, e_path, h->status, upstream, h->n_requests);
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
};
