#include "proxy/tcp.h"
#include "proxy/betls.h"
#include "proxy/exchange.h"
#include "proxy/worker.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "core/log.h"

#define CONN_ARGS(c) tg_pid(), (unsigned long long)(c)->id

/* Groups are capped at 64 targets (config check), so a mask covers them. */

static enum conn_state tcp_pick(struct session *c)
{
    const struct cfg_target_group *g = c->ex->group;
    bool skip[CFG_MAX_TARGETS];
    for (size_t i = 0; i < g->n_targets && i < CFG_MAX_TARGETS; i++)
        skip[i] = (c->ex->tried & (UINT64_C(1) << i)) != 0;
    int t = lb_pick(c->w->lb, g, &c->peer, skip);
    if (t == LB_REJECT) {
        char peer[64];
        net_addr_format(&c->peer, peer, sizeof(peer));
        log_warn("event=all_targets_down listener=%s " CONN_FMT " client=%s target_group=%s "
                 "action=reject",
                 c->l->cfg->name, CONN_ARGS(c), peer, g->name);
        c->ex->outcome = CONN_OUT_ALL_TARGETS_DOWN;
        return CONN_ST_DRAIN;
    }
    if (t < 0) {
        char peer[64];
        net_addr_format(&c->peer, peer, sizeof(peer));
        log_warn("event=no_target listener=%s " CONN_FMT " client=%s group=%s tried=%u",
                 c->l->cfg->name, CONN_ARGS(c), peer, g->name, c->ex->n_tried);
        c->ex->outcome = c->ex->be_tls_failed ? CONN_OUT_BACKEND_TLS_FAILED : CONN_OUT_NO_TARGET;
        return CONN_ST_DRAIN;
    }
    c->ex->target = t;
    exchange_lb_begin(c, t);
    return CONN_ST_CONNECT;
}

/* PROXY protocol header first, so it precedes every client byte. */
static bool write_proxy_header(struct session *c)
{
    enum cfg_proxy_proto pp = c->l->cfg->proxy_protocol;
    struct tls_info info;
    struct pp_info pi = {.src = c->peer, .dst = *session_local_addr(c)};
    unsigned char *der = NULL;
    size_t room, len = 0;
    enum tg_status st;

    tls_info_get(c->ssl, &c->verdict, &info);
    pi.alpn = info.alpn;
    pi.authority = info.sni;
    pi.has_ssl = true;
    pi.ssl_client = PP2_CLIENT_SSL;
    if (info.has_client_cert) {
        pi.ssl_client |= PP2_CLIENT_CERT_SESS;
        if (!info.resumed)
            pi.ssl_client |= PP2_CLIENT_CERT_CONN;
        int n = i2d_X509(SSL_get0_peer_certificate(c->ssl), &der);
        if (n > 0) {
            pi.client_cert_der = der;
            pi.client_cert_der_len = (size_t)n;
        }
        pi.ssl_cn = info.client_cn;
    }
    /* proxy-protocol.txt §2.2.5: verify is 0 only when a certificate was
     * presented and verified. */
    pi.ssl_verify = info.client_verified ? 0 : 1;
    pi.ssl_version = info.version;
    pi.ssl_cipher = info.cipher;

    uint8_t *dst = buf_wspace(&c->ex->c2b, &room);
    if (pp == CFG_PROXY_V1) {
        st = proxyproto_v1_encode(&pi, dst, room, &len);
    } else {
        st = proxyproto_v2_encode(&pi, dst, room, &len);
        /* A large client certificate: a block that fits the header. */
        if (st == TG_E_AGAIN && len > room && worker_buf_get_room(c->w, &c->ex->c2b, len)) {
            dst = buf_wspace(&c->ex->c2b, &room);
            st = proxyproto_v2_encode(&pi, dst, room, &len);
        }
    }
    OPENSSL_free(der);
    if (st != TG_OK)
        return false;
    buf_commit(&c->ex->c2b, len);
    return true;
}

/* A tcp_ssl session: one exchange for its whole life, in the same block. */
struct tcp_session {
    struct session s;
    struct exchange x;
    bool is_be_connected; /* the current target's TCP connect completed */
};

static struct tcp_session *tcp_of(struct session *c)
{
    return (struct tcp_session *)(void *)c;
}

/* The PROXY header of a group that re-encrypts goes out in clear, before
 * the ClientHello, as HAProxy (send-proxy with ssl) and nginx
 * (proxy_protocol with proxy_ssl) send it and as a receiver that accepts
 * PROXY and TLS on one port reads it. TG_OK once c2b is empty. */
static enum tg_status send_proxy_header(struct session *c)
{
    while (!buf_is_empty(&c->ex->c2b)) {
        size_t len;
        const uint8_t *src = buf_rdata(&c->ex->c2b, &len);
        ssize_t n = send(c->ex->be.fd, src, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno == EAGAIN ? TG_E_AGAIN : TG_E_CLOSED;
        buf_consume(&c->ex->c2b, (size_t)n);
    }
    worker_buf_shrink(c->w, &c->ex->c2b);
    return TG_OK;
}

/* The target's socket is connected: the PROXY header, then, for a group
 * with tls, the handshake with the target (a failed one moves to the next
 * target, as a failed connect does). Client bytes are read only in RELAY,
 * so none reaches a target before its certificate passed. */
static enum conn_state connected(struct session *c)
{
    struct tcp_session *ts = tcp_of(c);
    if (!ts->is_be_connected) {
        ts->is_be_connected = true;
        if (c->l->cfg->proxy_protocol != CFG_PROXY_NONE &&
            (!worker_buf_get(c->w, &c->ex->c2b) || !write_proxy_header(c))) {
            log_err("event=conn_error listener=%s " CONN_FMT " error=\"PROXY header does not fit\"",
                    c->l->cfg->name, CONN_ARGS(c));
            c->ex->outcome = CONN_OUT_INTERNAL_ERROR;
            return CONN_ST_CLOSED;
        }
    }
    if (!betls_wanted(c))
        return CONN_ST_RELAY; /* the header, if any, leads the relayed bytes */
    if (c->ex->be_ssl == NULL) {
        enum tg_status st = send_proxy_header(c);
        if (st == TG_E_AGAIN)
            return CONN_ST_CONNECT;
        if (st != TG_OK)
            return exchange_connect_failed(c, strerror(errno));
    }
    enum tg_status st = betls_handshake(c);
    if (st == TG_E_AGAIN)
        return CONN_ST_CONNECT;
    return st == TG_OK ? CONN_ST_RELAY : CONN_ST_PICK;
}

static enum conn_state tcp_connect(struct session *c)
{
    struct tcp_session *ts = tcp_of(c);
    if (c->ex->be.fd < 0) {
        /* A new target: what an earlier one was sent is not its business. */
        ts->is_be_connected = false;
        c->ex->c2b.r = c->ex->c2b.w = 0;
        bool in_progress = false;
        if (exchange_open_backend(c, &in_progress) != TG_OK)
            return exchange_connect_failed(c, strerror(errno));
        return in_progress ? CONN_ST_CONNECT : connected(c);
    }
    if (c->timed_out && c->ex->be_ssl != NULL)
        return betls_connect_failed(c, "handshake_timeout", "no complete handshake in time");
    if (c->timed_out)
        return exchange_connect_failed(c, "connect timeout");
    if (!ts->is_be_connected && net_connect_result(c->ex->be.fd) != TG_OK)
        return exchange_connect_failed(c, strerror(errno));
    return connected(c);
}

/* Everything from the client went to the backend, which saw its EOF. */
static bool up_done(const struct session *c)
{
    return c->cli.rd_shut && buf_is_empty(&c->ex->c2b) && c->ex->be.wr_shut;
}

/* Everything from the backend went to the client, which saw its EOF. */
static bool down_done(const struct session *c)
{
    return c->ex->be.rd_shut && buf_is_empty(&c->ex->b2c) && c->cli.wr_shut;
}

/* When the other direction is done, the relay closes the connection as
 * soon as this one is: close() sends the FIN, so the pumps skip the
 * shutdown(SHUT_WR) that would precede it. */

/* The target side: plain TCP, or TLS when the group re-encrypts (a tcp_ssl
 * listener's group, or an https group after a WebSocket upgrade; betls.c).
 * Both return what recv()/send() do. */
static SSL *be_tls(const struct session *c)
{
    return c->ex->be_ssl;
}

static bool be_readable(const struct session *c)
{
    SSL *ssl = be_tls(c);
    return c->ex->be.can_read || (ssl != NULL && SSL_has_pending(ssl));
}

static ssize_t be_recv(struct session *c, void *dst, size_t len)
{
    if (be_tls(c) != NULL)
        return betls_read(c, dst, len);
    ssize_t n = recv(c->ex->be.fd, dst, len, 0);
    if (n > 0)
        c->ex->be.can_read = (size_t)n == len; /* a short read emptied the socket */
    return n;
}

static ssize_t be_send(struct session *c, const void *src, size_t len)
{
    if (be_tls(c) != NULL)
        return betls_write(c, src, len);
    return send(c->ex->be.fd, src, len, MSG_NOSIGNAL);
}

/* The end of the client's stream toward the target: close_notify over TLS
 * when it goes out at once (a socket buffer full at that moment leaves the
 * FIN alone to end the stream), then the TCP half-close (always over TLS,
 * so that the end arrives even when the socket buffer is full; for plain
 * TCP not right before close(), which sends the FIN anyway). */
static void be_end_stream(struct session *c)
{
    SSL *ssl = be_tls(c);
    if (ssl != NULL) {
        enum tls_want want;
        enum tg_status st = tls_shutdown(ssl, &want);
        (void)st;
    }
    if (ssl != NULL || !down_done(c))
        shutdown(c->ex->be.fd, SHUT_WR);
}

/* Client to backend: TLS read into c2b, send out of it. */
static bool pump_up(struct session *c, bool *progress)
{
    if (!c->cli.rd_shut && c->cli.can_read && !buf_is_full(&c->ex->c2b)) {
        if (!worker_buf_get(c->w, &c->ex->c2b)) {
            c->ex->outcome = CONN_OUT_OUT_OF_MEMORY;
            return false;
        }
        size_t room, n = 0;
        uint8_t *dst = buf_wspace(&c->ex->c2b, &room);
        enum tg_status st = session_cli_read(c, dst, room, &n);
        if (st == TG_OK) {
            buf_commit(&c->ex->c2b, n);
            c->bytes_in += n;
            *progress = true;
        } else if (st == TG_E_CLOSED) {
            c->cli.rd_shut = true;
            *progress = true;
        } else if (st == TG_E_RESET) {
            /* An abortive close: nothing can reach the client any more, and
             * it withdrew what it had not yet had delivered. Close both
             * sides now (as HAProxy and nginx do) rather than half-close
             * toward the target and wait for its end. */
            c->ex->outcome = CONN_OUT_CLIENT_RESET;
            return false;
        } else if (st == TG_E_PROTO) {
            c->ex->outcome = CONN_OUT_CLIENT_TLS_ERROR;
            return false;
        }
    }
    if (!buf_is_empty(&c->ex->c2b) && !c->ex->be.wr_shut) {
        size_t len;
        const uint8_t *src = buf_rdata(&c->ex->c2b, &len);
        ssize_t n = be_send(c, src, len);
        if (n > 0) {
            buf_consume(&c->ex->c2b, (size_t)n);
            worker_buf_shrink(c->w, &c->ex->c2b);
            *progress = true;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            c->ex->outcome = CONN_OUT_BACKEND_RESET;
            return false;
        }
    }
    if (c->cli.rd_shut && buf_is_empty(&c->ex->c2b) && !c->ex->be.wr_shut) {
        be_end_stream(c);
        c->ex->be.wr_shut = true;
        *progress = true;
    }
    return true;
}

/* Backend to client: recv into b2c, TLS write out of it. */
static bool pump_down(struct session *c, bool *progress)
{
    if (!c->ex->be.rd_shut && be_readable(c) && !buf_is_full(&c->ex->b2c)) {
        if (!worker_buf_get(c->w, &c->ex->b2c)) {
            c->ex->outcome = CONN_OUT_OUT_OF_MEMORY;
            return false;
        }
        size_t room;
        uint8_t *dst = buf_wspace(&c->ex->b2c, &room);
        ssize_t n = be_recv(c, dst, room);
        if (n > 0) {
            buf_commit(&c->ex->b2c, (size_t)n);
            *progress = true;
        } else if (n == 0) {
            c->ex->be.rd_shut = true;
            *progress = true;
        } else if (errno == EAGAIN) {
            c->ex->be.can_read = false;
        } else if (errno != EINTR) {
            c->ex->outcome = CONN_OUT_BACKEND_RESET;
            return false;
        }
    }
    if (!buf_is_empty(&c->ex->b2c) && !c->cli.wr_shut) {
        size_t len, n = 0;
        const uint8_t *src = buf_rdata(&c->ex->b2c, &len);
        enum tg_status st = session_cli_write(c, src, len, &n);
        if (st == TG_OK) {
            buf_consume(&c->ex->b2c, n);
            c->bytes_out += n;
            *progress = true;
        } else if (st != TG_E_AGAIN) {
            c->ex->outcome = CONN_OUT_CLIENT_RESET;
            return false;
        }
    }
    if (c->ex->be.rd_shut && buf_is_empty(&c->ex->b2c) && !c->cli.wr_shut) {
        enum tg_status st = up_done(c) ? session_cli_close_notify(c) : session_cli_shutdown(c);
        if (st == TG_OK) {
            c->cli.wr_shut = true;
            *progress = true;
        } else if (st != TG_E_AGAIN) {
            c->cli.wr_shut = true;
            *progress = true;
        }
    }
    return true;
}

enum conn_state tcp_relay(struct session *c)
{
    if (c->timed_out) {
        c->ex->outcome = CONN_OUT_IDLE_TIMEOUT;
        return CONN_ST_CLOSED;
    }
    bool any = false, progress;
    do {
        progress = false;
        if (!pump_up(c, &progress) || !pump_down(c, &progress))
            return CONN_ST_CLOSED;
        any = any || progress;
    } while (progress);
    if (any)
        c->last_activity = ev_now(c->w->loop);
    worker_buf_put(c->w, &c->ex->c2b);
    worker_buf_put(c->w, &c->ex->b2c);
    if (c->cli.rd_shut && c->cli.wr_shut && c->ex->be.rd_shut && c->ex->be.wr_shut)
        return CONN_ST_CLOSED;
    return CONN_ST_RELAY;
}

static enum tg_status tcp_init(struct session *c)
{
    struct tcp_session *ts = tcp_of(c);
    exchange_init(&ts->x, c);
    c->ex = &ts->x;
    return TG_OK;
}

static void tcp_fini(struct session *c)
{
    exchange_fini(c->w, c->ex);
}

static enum conn_state tcp_established(struct session *c)
{
    return CONN_ST_PICK;
    (void)c;
}

static void tcp_interest(struct session *c, int *ce, int *be)
{
    exchange_interest(c, &c->ex->c2b, &c->ex->b2c, ce, be);
}

static ev_tstamp tcp_idle_timeout(const struct session *c)
{
    return c->st == CONN_ST_RELAY ? c->ex->relay_timeout : 0;
}

static unsigned tcp_passive_status(const struct session *c)
{
    return 0;
    (void)c;
}

/* A byte stream has no request to finish: a cut closes at once. */
static bool tcp_on_cut(struct session *c)
{
    return false;
    (void)c;
}

/* One access line per connection, written when it closes. */
static void tcp_log_last(struct session *c)
{
    session_access_log(c);
}

static void tcp_log_fields(struct session *c, struct access_fields *f, ev_tstamp now)
{
    (void)c, (void)f, (void)now;
}

const struct proto_ops tcp_proto_ops = {
    .name = "tcp_ssl",
    .size = sizeof(struct tcp_session),
    .echo_http = false,
    .is_lingering = false,
    .init = tcp_init,
    .fini = tcp_fini,
    .on_established = tcp_established,
    .step =
        {[CONN_ST_PICK] = tcp_pick, [CONN_ST_CONNECT] = tcp_connect, [CONN_ST_RELAY] = tcp_relay},
    .on_enter = exchange_enter,
    .interest = tcp_interest,
    .idle_timeout = tcp_idle_timeout,
    .passive_status = tcp_passive_status,
    .on_cut = tcp_on_cut,
    .log_last = tcp_log_last,
    .log_fields = tcp_log_fields,
    .on_drain = proto_drain_nothing, /* a relay cannot say "no more" */
};
