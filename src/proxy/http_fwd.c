#include "proxy/http_req.h"

/* The forwarding of an HTTP request to an HTTP/1.1 target, shared by the
 * client protocols (HTTP/1.1 in http1.c, HTTP/2 in h2.c): the checks and
 * routing of a complete request head, the pick of a target (sticky
 * cookies, the pool of idle connections), the connection (TLS when the
 * group re-encrypts), the head the target receives (identity headers),
 * and the backend side of the relay. Each works on the session's current
 * exchange (c->ex, http_req_of(c)). */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "core/log.h"
#include "core/str.h"
#include "proxy/betls.h"
#include "proxy/bpool.h"
#include "proxy/reject.h"

#define CONN_ARGS(c) tg_pid(), (unsigned long long)(c)->id
#define MAX_CHAIN    4

static enum conn_state start_exchange(struct session *c);

void http_close_backend(struct session *c)
{
    struct http_req *r = http_req_of(c);
    ev_io_stop(c->w->loop, &c->ex->be.io);
    c->ex->be.events = 0;
    betls_close(c);
    if (c->ex->be.fd >= 0)
        close(c->ex->be.fd);
    c->ex->be.fd = -1;
    c->ex->c2b.r = c->ex->c2b.w = 0;
    r->bin.r = r->bin.w = 0;
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

/*
 * The Host of a request on a listener with sni entries picks the same
 * site as the handshake's SNI did: a client must not pass the handshake
 * of one site (a one-way name) and then ask for another (a mutual name).
 * A Host that is an address, or absent, names the listener's own site.
 */
static bool host_in_site(struct session *c, const char *host, size_t host_len)
{
    const struct cfg_listener *l = c->l->cfg;
    struct http_host h;
    if (l->tls.n_sites <= 1)
        return true;
    size_t site = 0;
    if (host != NULL) {
        if (!http_host_parse(host, host_len, &h))
            return false;
        /* A name with an empty label names no site here, but a backend
         * that tidies it up could read it as one. */
        if (h.kind == HTTP_HOST_NAME &&
            (h.name_len == 0 || h.name[0] == '.' || memmem(h.name, h.name_len, "..", 2) != NULL))
            return false;
        if (h.kind == HTTP_HOST_NAME)
            site = config_site_for_name(l, h.name, h.name_len);
    }
    return site == c->site;
}

void http_req_begin(struct session *c)
{
    struct http_req *r = http_req_of(c);
    r->t_req = ev_time(); /* a duration's start: the clock (see session_new) */
    r->t_upstream = 0;
    r->status = 0;
    r->req_done = false;
    r->resp_head_done = false;
    r->resp_head_parsed = false;
    r->resp_done = false;
    r->sent_to_client = false;
    r->be_reused = false;
    r->retried = false;
    c->ex->be_tls_failed = false;
    r->head_kept = 0;
    r->req_bytes = r->resp_bytes = 0;
    r->log_method[0] = '\0';
    r->log_path = "";
    c->ex->outcome = CONN_OUT_OK;
    c->ex->target = -1;
    c->ex->tried = 0;
    c->ex->n_tried = 0;
}

enum conn_state http_request_ready(struct session *c)
{
    struct http_req *r = http_req_of(c);
    struct http_head *rq = &r->m->req;
    const struct cfg_listener *l = c->l->cfg;

    r->keep_alive = rq->keep_alive;
    r->head_kept = rq->len;
    str_copy_n(r->log_method, sizeof(r->log_method), http_span_ptr(rq, rq->method_s),
               rq->method_s.len);
    str_copy_n(r->m->log_path, sizeof(r->m->log_path), http_span_ptr(rq, rq->target),
               rq->target.len);
    r->log_path = r->m->log_path;

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
    /* A handshake judged for one name must not serve another: the Host
     * names the site the handshake was judged under, and on a mutual site
     * the very name of the SNI. */
    if (l->has_tls && !host_in_site(c, host, host_len))
        return http_error_page(c, 421,
                               "the Host header names another site than the TLS server "
                               "name");
    if (l->has_tls && l->tls.sites[c->site].mode == CFG_TLS_MUTUAL &&
        !host_matches_sni(c, host, host_len))
        return http_error_page(c, 421, "the Host header does not match the TLS server name");

    const char *target;
    size_t tlen;
    http_target_from_path(rq, &target, &tlen);
    const struct cfg_rule *rule =
        route_match(l, host, host_len, target, http_path_len(target, tlen),
                    session_client_verified(c) ? SSL_get0_peer_certificate(c->ssl) : NULL);
    const struct cfg_target_group *g = l->default_target_group;
    if (rule != NULL) {
        if (rule->has_respond)
            return http_respond_rule(c, rule);
        if (rule->has_redirect)
            return http_redirect(c, rule, host, host_len);
        g = rule->target_group;
    }
    if (g == NULL)
        return http_answer(c, 404, "text/plain; charset=utf-8", NULL, "404 Not Found\n",
                           rq->body == HTTP_BODY_NONE);
    c->ex->group = g;
    return CONN_ST_PICK;
}

enum conn_state http_pick(struct session *c)
{
    const struct cfg_target_group *g = c->ex->group;
    struct http_req *r = http_req_of(c);
    bool skip[CFG_MAX_TARGETS];
    for (size_t i = 0; i < g->n_targets && i < CFG_MAX_TARGETS; i++)
        skip[i] = (c->ex->tried & (UINT64_C(1) << i)) != 0;
    /* sticky cookie: the target it names, while the head is kept */
    bool is_cookie = g->sticky.type == CFG_STICKY_COOKIE;
    int64_t now_s = (int64_t)ev_now(c->w->loop);
    int want = -1;
    r->m->set_cookie[0] = '\0';
    if (is_cookie && r->head_kept > 0) {
        size_t len;
        r->m->req.base = (const char *)buf_rdata(r->head, &len);
        for (size_t i = 0; i < r->m->req.n_headers && want < 0; i++) {
            const struct http_header *f = &r->m->req.h[i];
            if (http_span_ieq(&r->m->req, f->name, "cookie"))
                want = lb_cookie_target(c->w->lb, g, http_span_ptr(&r->m->req, f->value),
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
        (void)lb_cookie_header(c->w->lb, g, t, c->ssl != NULL, now_s, r->m->set_cookie,
                               sizeof(r->m->set_cookie));
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
    r->be_reused = true;
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
    struct http_req *r = http_req_of(c);
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
    r->m->req.base = (const char *)buf_rdata(r->head, &len);
    bool ok = worker_buf_get(c->w, &c->ex->c2b) &&
              http_hdr_request(&r->m->req, &id, &c->ex->c2b) == TG_OK;
    if (!ok && buf_has_mem(&c->ex->c2b)) {
        /* Only a head that does not fit the pooled block is measured. */
        size_t need = http_hdr_request_size(&r->m->req, &id);
        ok = need <= HTTP_MAX_FORWARD_HEAD_BYTES && worker_buf_get_room(c->w, &c->ex->c2b, need) &&
             http_hdr_request(&r->m->req, &id, &c->ex->c2b) == TG_OK;
    }
    der_free_all(ders, n_ders);
    return ok;
}

/* The backend connection is up: send the head, and from now on the body. */
static enum conn_state start_exchange(struct session *c)
{
    struct http_req *r = http_req_of(c);
    c->ex->c2b.r = c->ex->c2b.w = 0;
    if (!write_request_head(c))
        return http_error_page(c, 431, "the request head is too large to forward");
    /* A request without a body keeps its head in cin until the response
     * starts, so that a stale pooled connection can be retried. */
    if (r->m->req.body != HTTP_BODY_NONE) {
        buf_consume(r->head, r->head_kept);
        r->head_kept = 0;
    }
    r->req_done = r->m->req.body == HTTP_BODY_NONE;
    h1_next(&r->m->resp_p, r->m->req.method == HTTP_HEAD);
    r->t_upstream = ev_time();
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

enum conn_state http_connect(struct session *c)
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
    const struct http_req *r = http_req_cof(c);
    return r->be_reused && !r->retried && !r->resp_head_parsed && buf_is_empty(&r->bin) &&
           r->m->req.body == HTTP_BODY_NONE && r->head_kept > 0;
}

enum conn_state http_backend_failed(struct session *c, const char *why)
{
    struct http_req *r = http_req_of(c);
    if (can_retry(c)) {
        char e_why[LOG_KV_MAX];
        log_info("event=backend_retry listener=%s " CONN_FMT " target=%s reason=%s",
                 c->l->cfg->name, CONN_ARGS(c), c->ex->group->targets[c->ex->target].address,
                 log_kv(e_why, sizeof(e_why), why));
        http_close_backend(c);
        r->retried = true;
        r->be_reused = false;
        return CONN_ST_CONNECT;
    }
    http_close_backend(c);
    if (r->resp_head_done) {
        c->ex->outcome = CONN_OUT_BACKEND_TRUNCATED;
        return CONN_ST_CLOSED;
    }
    c->ex->outcome = CONN_OUT_BAD_GATEWAY;
    return http_error_page(c, 502, why);
}

enum conn_state http_backend_io(struct session *c, bool *progress)
{
    struct http_req *r = http_req_of(c);
    struct exchange *x = c->ex;
    if (!buf_is_empty(&x->c2b) && x->be.fd >= 0 && !x->be.wr_shut) {
        size_t len;
        const uint8_t *src = buf_rdata(&x->c2b, &len);
        ssize_t n = be_send(c, src, len);
        if (n > 0) {
            buf_consume(&x->c2b, (size_t)n);
            worker_buf_shrink(c->w, &x->c2b);
            *progress = true;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            if (can_retry(c) || r->head_kept > 0)
                return http_backend_failed(c, "the connection to the backend broke");
            /* The head went out and the target stopped taking the body: it
             * may have answered early (413, 401) and closed. Read on and
             * forward that answer; without one it is a 502. The rest of the
             * request is dropped, so the client connection ends after this
             * exchange. */
            x->be.wr_shut = true;
            x->c2b.r = x->c2b.w = 0;
            r->keep_alive = false;
            *progress = true;
        }
    }
    /* The backend is read only once the loop reported it readable: not in
     * the pass that just sent it the request, where nothing can be there. */
    if (!x->be.rd_shut && x->be.fd >= 0 && x->be.can_read && worker_buf_get(c->w, &r->bin) &&
        !buf_is_full(&r->bin)) {
        size_t room;
        uint8_t *dst =
            r->resp_head_parsed ? buf_wspace(&r->bin, &room) : buf_wspace_tail(&r->bin, &room);
        ssize_t n = room ? be_recv(c, dst, room) : -1;
        if (n > 0) {
            buf_commit(&r->bin, (size_t)n);
            /* A short plain read emptied the socket; over TLS bytes may
             * still wait inside OpenSSL, so only EAGAIN says empty. */
            if (x->be_ssl == NULL && (size_t)n < room)
                x->be.can_read = false;
            *progress = true;
        } else if (n < 0 && room > 0 && errno == EAGAIN) {
            x->be.can_read = false;
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR && room > 0)) {
            x->be.rd_shut = true;
            *progress = true;
        }
    }
    return CONN_ST_RELAY;
}

void http_release_backend(struct session *c)
{
    struct http_req *r = http_req_of(c);
    struct exchange *x = c->ex;
    bool reusable = r->req_done && r->m->resp.keep_alive && r->m->resp.body != HTTP_BODY_EOF &&
                    buf_is_empty(&r->bin) && buf_is_empty(&x->c2b) && !x->be.rd_shut &&
                    !x->be.wr_shut;
    if (reusable && x->be.fd >= 0) {
        ev_io_stop(c->w->loop, &x->be.io);
        x->be.events = 0;
        bpool_put(c->w->bpool, x->group, x->target, x->be.fd, x->be_ssl);
        x->be_ssl = NULL;
        x->be.fd = -1;
    } else {
        http_close_backend(c);
    }
}
