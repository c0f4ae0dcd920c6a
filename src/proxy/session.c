#include "proxy/session.h"

#include "proxy/exchange.h"
#include "proxy/ocspc.h"

#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/log.h"

static const char *const state_names[CONN_ST_COUNT] = {
    [CONN_ST_ACCEPTED] = "accepted", [CONN_ST_TLS_HANDSHAKE] = "tls_handshake",
    [CONN_ST_PICK] = "pick",         [CONN_ST_CONNECT] = "connect",
    [CONN_ST_RELAY] = "relay",       [CONN_ST_READ_HEAD] = "read_head",
    [CONN_ST_RESPOND] = "respond",   [CONN_ST_DRAIN] = "drain",
    [CONN_ST_CLOSED] = "closed",
};

const char *session_state_name(enum conn_state st)
{
    return st < CONN_ST_COUNT ? state_names[st] : "?";
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

struct session *session_new(struct worker *w, struct wlistener *l, int fd,
                            const struct net_addr *peer)
{
    const struct proto_ops *ops = proto_ops_for(l->cfg);
    struct session *c = calloc(1, proto_session_size(l->cfg));
    if (c == NULL)
        return NULL;
    c->w = w;
    c->l = l;
    c->ops = ops;
    c->id = ++w->next_id;
    c->st = CONN_ST_ACCEPTED;
    c->cli.fd = fd;
    c->cli.can_read = true;
    c->peer = *peer;
    /* Durations (handshake, request, connection) are read from the clock,
     * not the loop's cached time: a handshake can start and end within
     * what the loop reports as one instant. Timers use the loop's time. */
    c->t_accept = ev_time();
    c->last_activity = ev_now(w->loop);
    ev_io_init(&c->cli.io, session_io_cb, fd, 0);
    c->cli.io.data = c;
    ev_init(&c->timer, timer_cb);
    c->timer.data = c;
    if (ops->init(c) != TG_OK) {
        free(c);
        return NULL;
    }

    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    shm_count_accept(l->stats);
    return c;
}

const struct net_addr *session_local_addr(struct session *c)
{
    if (c->local.len != 0)
        return &c->local;
    /* The listener's own address unless it is a wildcard (or port 0): one
     * getsockname() per connection saved, and only when asked for. */
    const struct net_addr *a = &c->l->cfg->addr;
    if (!net_addr_is_any(a) && net_addr_port(a) != 0) {
        c->local = *a;
        return &c->local;
    }
    c->local.len = sizeof(c->local.ss);
    if (getsockname(c->cli.fd, (struct sockaddr *)&c->local.ss, &c->local.len) != 0)
        c->local.len = 0;
    return &c->local;
}

void session_set_timer(struct session *c, uint64_t ms)
{
    ev_timer_stop(c->w->loop, &c->timer);
    c->timed_out = false;
    if (ms == 0)
        return;
    ev_timer_set(&c->timer, (ev_tstamp)ms / 1000.0, 0.);
    ev_timer_start(c->w->loop, &c->timer);
}

static void peer_str(const struct session *c, char *dst, size_t len)
{
    net_addr_format(&c->peer, dst, len);
}

/* One line per refused handshake, with its reason code. */
void session_log_rejection(struct session *c, const char *reason, const char *detail)
{
    char peer[64], subject[512] = "", issuer[512] = "";
    const char *sni = c->ssl ? SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
    X509 *offered = c->verdict.offered;
    if (offered == NULL && c->ssl != NULL)
        offered = SSL_get0_peer_certificate(c->ssl);
    if (offered != NULL) {
        tls_name_format(X509_get_subject_name(offered), subject, sizeof(subject));
        tls_name_format(X509_get_issuer_name(offered), issuer, sizeof(issuer));
    }
    peer_str(c, peer, sizeof(peer));
    char e_sni[LOG_KV_MAX], e_subj[LOG_KV_MAX], e_iss[LOG_KV_MAX], e_detail[LOG_KV_MAX];
    log_warn("event=tls_handshake_failed listener=%s conn=%d.%llu client=%s sni=%s reason=%s "
             "subject=%s issuer=%s detail=%s",
             c->l->cfg->name, tg_pid(), (unsigned long long)c->id, peer,
             log_kv(e_sni, sizeof(e_sni), sni ? sni : "-"), reason,
             log_kv(e_subj, sizeof(e_subj), subject), log_kv(e_iss, sizeof(e_iss), issuer),
             log_kv(e_detail, sizeof(e_detail), detail));
    c->reject_reason = reason;
    c->ex->outcome = CONN_OUT_TLS_REJECTED;
    shm_count_handshake_failure(c->l->stats, reason);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    shm_note_refusal(&c->l->stats->refusals, reason, peer, subject, issuer,
                     (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000);
}

enum tg_status session_cli_read(struct session *c, void *dst, size_t len, size_t *n)
{
    if (c->ssl != NULL) {
        enum tg_status st = tls_read(c->ssl, dst, len, n, &c->want);
        if (st == TG_E_AGAIN && c->want == TLS_WANT_READ) {
            c->cli.can_read = false;
        } else if (st == TG_OK && c->cli.drained && !SSL_has_pending(c->ssl)) {
            /* The last read() emptied the socket (perhaps during the
             * handshake, with this record already in OpenSSL's buffer) and
             * nothing waits inside OpenSSL: the next read would find
             * nothing. (If more arrived since, the loop says.) */
            c->cli.can_read = false;
        }
        return st;
    }
    ssize_t r = recv(c->cli.fd, dst, len, 0);
    *n = 0;
    if (r > 0) {
        *n = (size_t)r;
        c->cli.can_read = (size_t)r == len; /* a short read emptied the socket */
        return TG_OK;
    }
    if (r == 0)
        return TG_E_CLOSED;
    if (errno == EAGAIN || errno == EINTR) {
        c->want = TLS_WANT_READ;
        c->cli.can_read = errno != EAGAIN;
        return TG_E_AGAIN;
    }
    return errno == ECONNRESET ? TG_E_RESET : TG_E_CLOSED;
}

enum tg_status session_cli_write(struct session *c, const void *src, size_t len, size_t *n)
{
    if (c->ssl != NULL)
        return tls_write(c->ssl, src, len, n, &c->want);
    ssize_t r = send(c->cli.fd, src, len, MSG_NOSIGNAL);
    *n = 0;
    if (r >= 0) {
        *n = (size_t)r;
        return TG_OK;
    }
    if (errno == EAGAIN || errno == EINTR) {
        c->want = TLS_WANT_WRITE;
        return TG_E_AGAIN;
    }
    return TG_E_CLOSED;
}

enum tg_status session_cli_close_notify(struct session *c)
{
    if (c->ssl == NULL)
        return TG_OK;
    enum tg_status st = tls_shutdown(c->ssl, &c->want);
    return st == TG_E_AGAIN ? st : TG_OK;
}

enum tg_status session_cli_shutdown(struct session *c)
{
    if (session_cli_close_notify(c) == TG_E_AGAIN)
        return TG_E_AGAIN;
    shutdown(c->cli.fd, SHUT_WR);
    return TG_OK;
}

/* The client's side is up: the protocol the client chose (ALPN) takes the
 * session over, its own table's state made anew. */
static enum conn_state established(struct session *c)
{
    const struct proto_ops *ops = proto_ops_negotiated(c);
    if (ops != c->ops) {
        c->ops->fini(c);
        memset((char *)c + sizeof(*c), 0, ops->size - sizeof(*c));
        c->ops = ops;
        if (ops->init(c) != TG_OK) {
            log_err("event=conn_error listener=%s conn=%d.%llu error=\"out of memory\"",
                    c->l->cfg->name, tg_pid(), (unsigned long long)c->id);
            return CONN_ST_CLOSED;
        }
    }
    return c->ops->on_established(c);
}

static enum conn_state st_accepted(struct session *c)
{
    if (c->l->tls == NULL)
        return established(c);
    c->ssl = tls_server_ssl_new(c->l->tls, c->cli.fd);
    if (c->ssl == NULL) {
        log_err("event=conn_error listener=%s conn=%d.%llu error=\"cannot create SSL\"",
                c->l->cfg->name, tg_pid(), (unsigned long long)c->id);
        c->ex->outcome = CONN_OUT_INTERNAL_ERROR;
        return CONN_ST_CLOSED;
    }
    tls_verdict_attach(c->ssl, &c->verdict);
    tls_report_reads(c->ssl, &c->cli.drained);
    return CONN_ST_TLS_HANDSHAKE;
}

/* One line for a session the client offered and tollgate refused: the
 * handshake went on as a full one. An expired or incomplete session is
 * routine; the other reasons say the client's certificate is no longer
 * what it was. */
static void log_resumption_refused(struct session *c)
{
    const char *why = c->verdict.resume_refused;
    if (why == NULL)
        return;
    c->verdict.resume_refused = NULL;
    char peer[64];
    peer_str(c, peer, sizeof(peer));
    if (strcmp(why, "session_expired") == 0 || strcmp(why, "session_incomplete") == 0)
        log_info("event=resumption_refused listener=%s conn=%d.%llu client=%s reason=%s",
                 c->l->cfg->name, tg_pid(), (unsigned long long)c->id, peer, why);
    else
        log_warn("event=resumption_refused listener=%s conn=%d.%llu client=%s reason=%s",
                 c->l->cfg->name, tg_pid(), (unsigned long long)c->id, peer, why);
    shm_count_resumption_refused(c->l->stats, why);
}

static enum conn_state st_handshake(struct session *c)
{
    if (c->timed_out) {
        log_resumption_refused(c);
        session_log_rejection(c, "handshake_timeout", "no complete handshake in time");
        return CONN_ST_CLOSED;
    }
    enum tg_status st = tls_handshake(c->ssl, &c->want);
    /* Suspended for an OCSP lookup: wait for it (no socket interest, see
     * session_update_io), or run on at once when the answer is known. */
    while (st == TG_E_AGAIN && c->want == TLS_WANT_OCSP && c->ocsp_lookup == NULL &&
           !ocspc_wait(c->w->ocspc, c))
        st = tls_handshake(c->ssl, &c->want);
    if (st == TG_E_AGAIN)
        return CONN_ST_TLS_HANDSHAKE;
    tls_verdict_handshake_done(&c->verdict);
    log_resumption_refused(c);
    if (st != TG_OK && BIO_number_read(SSL_get_rbio(c->ssl)) == 0) {
        /* Not a refused handshake: a port check or a scanner that connected
         * and left without sending a byte. Noted, not counted as a failure. */
        char peer[64];
        ERR_clear_error(); /* nothing to report: keep the queue empty (tls/io.c) */
        peer_str(c, peer, sizeof(peer));
        log_info("event=client_closed_before_hello listener=%s conn=%d.%llu client=%s",
                 c->l->cfg->name, tg_pid(), (unsigned long long)c->id, peer);
        c->ex->outcome = CONN_OUT_CLIENT_CLOSED;
        return CONN_ST_CLOSED;
    }
    if (st != TG_OK) {
        char detail[256];
        const char *reason = tls_reason_from_handshake(c->ssl, &c->verdict, detail, sizeof(detail));
        session_log_rejection(c, reason, detail);
        return CONN_ST_CLOSED;
    }
    c->t_handshake = ev_time();
    if (c->cli.drained && !SSL_has_pending(c->ssl))
        c->cli.can_read = false; /* the handshake's last read() emptied the socket */
    shm_count_handshake(c->l->stats, SSL_version(c->ssl), SSL_session_reused(c->ssl) == 1,
                        c->t_handshake - c->t_accept);
    const struct cfg_tls *t = &c->l->cfg->tls;
    c->site = (uint16_t)tls_site_of(c->ssl);
    bool is_mutual = t->sites[c->site].mode == CFG_TLS_MUTUAL;
    /* The client CA files or the allow-list changed between the client's
     * certificate (or offered session) being judged and the handshake's
     * end. */
    const char *late = is_mutual ? session_judge_late(c) : NULL;
    if (late != NULL) {
        session_log_rejection(c, late,
                              "judged again: the client CA files or allow-list changed during "
                              "the handshake");
        return CONN_ST_CLOSED;
    }
    if (is_mutual && session_client_verified(c))
        session_judge_accepted(c);
    if (is_mutual && t->on_expiry == CFG_ON_INVALID_CLOSE) {
        c->cert_not_after = tls_client_not_after(c->ssl, &c->verdict);
        if (c->cert_not_after > 0 &&
            (c->w->next_expiry == 0 || c->cert_not_after < c->w->next_expiry))
            c->w->next_expiry = c->cert_not_after;
    }
    return established(c);
}

/* Flushes what is left for the client, sends close_notify, then closes. */
static enum conn_state st_drain(struct session *c)
{
    struct buf *b2c = &c->ex->b2c;
    if (c->timed_out)
        return CONN_ST_CLOSED;
    while (!buf_is_empty(b2c)) {
        size_t len, n = 0;
        const uint8_t *src = buf_rdata(b2c, &len);
        enum tg_status st = session_cli_write(c, src, len, &n);
        if (st == TG_E_AGAIN)
            return CONN_ST_DRAIN;
        if (st != TG_OK)
            return CONN_ST_CLOSED;
        buf_consume(b2c, n);
        c->bytes_out += n;
    }
    if (!c->lingering) {
        if (session_cli_shutdown(c) == TG_E_AGAIN)
            return CONN_ST_DRAIN;
        /* RFC 9112 §9.6: an https client may still be sending a request we
         * answered early (413, a backend's early reply). Closing now would
         * reset the connection and could destroy the answer before it is
         * read; keep reading and discarding until the client closes, for at
         * most the DRAIN timer and a bounded number of bytes. */
        if (!c->ops->is_lingering || c->cli.rd_shut)
            return CONN_ST_CLOSED;
        c->lingering = true;
    }
    uint8_t sink[16384];
    for (;;) {
        size_t n = 0;
        enum tg_status st = session_cli_read(c, sink, sizeof(sink), &n);
        if (st == TG_E_AGAIN)
            return CONN_ST_DRAIN;
        if (st != TG_OK)
            return CONN_ST_CLOSED;
        c->linger_bytes += n;
        if (c->linger_bytes > CONN_LINGER_MAX_BYTES)
            return CONN_ST_CLOSED;
    }
}

static enum conn_state st_closed(struct session *c)
{
    return CONN_ST_CLOSED;
    (void)c;
}

/* The session's own states; the protocol's table has the others. */
static const conn_handler session_step[CONN_ST_COUNT] = {
    [CONN_ST_ACCEPTED] = st_accepted,
    [CONN_ST_TLS_HANDSHAKE] = st_handshake,
    [CONN_ST_DRAIN] = st_drain,
    [CONN_ST_CLOSED] = st_closed,
};

/* Arms the timer of the state being entered. */
static void enter_state(struct session *c, enum conn_state st)
{
    const struct cfg_listener *l = c->l->cfg;
    switch (st) {
    case CONN_ST_TLS_HANDSHAKE:
        session_set_timer(c, l->handshake_timeout_ms);
        break;
    case CONN_ST_DRAIN:
        session_set_timer(c, 2000);
        break;
    case CONN_ST_ACCEPTED:
        session_set_timer(c, 0);
        break;
    default:
        c->ops->on_enter(c, st);
        break;
    }
}

void session_side_set(struct session *c, struct side *s, int events)
{
    if (s->fd < 0 || s->events == events)
        return;
    ev_io_stop(c->w->loop, &s->io);
    s->events = events;
    if (events != 0) {
        /* The watcher already holds s->fd (ev_io_set() when it was opened or
         * taken); only the interest changes, and a pending "new fd" mark is
         * kept. Setting the fd again would cost a failed EPOLL_CTL_ADD. */
        ev_io_modify(&s->io, events);
        ev_io_start(c->w->loop, &s->io);
    }
}

/* Works out read/write interest from the state and the buffers. */
static void session_update_io(struct session *c)
{
    int ce = 0, be = 0;
    switch (c->st) {
    case CONN_ST_TLS_HANDSHAKE:
        /* Waiting for OCSP: the lookup runs the connection again. */
        if (c->want != TLS_WANT_OCSP)
            ce = c->want == TLS_WANT_WRITE ? EV_WRITE : EV_READ;
        break;
    case CONN_ST_DRAIN:
        ce = c->want == TLS_WANT_READ ? EV_READ : EV_WRITE;
        break;
    case CONN_ST_ACCEPTED:
    case CONN_ST_CLOSED:
        break;
    default:
        c->ops->interest(c, &ce, &be);
        break;
    }
    session_side_set(c, &c->cli, ce);
    session_side_set(c, &c->ex->be, be);
}

static void format_time(ev_tstamp t, char *dst, size_t len)
{
    time_t sec = (time_t)t;
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(dst, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)((t - (double)sec) * 1000));
}

static const char *const outcome_names[CONN_OUT_COUNT] = {
    [CONN_OUT_OK] = "ok",
    [CONN_OUT_TLS_REJECTED] = "tls_rejected",
    [CONN_OUT_CLIENT_CLOSED] = "client_closed",
    [CONN_OUT_CLIENT_RESET] = "client_reset",
    [CONN_OUT_CLIENT_TLS_ERROR] = "client_tls_error",
    [CONN_OUT_ALL_TARGETS_DOWN] = "all_targets_down",
    [CONN_OUT_NO_TARGET] = "no_target",
    [CONN_OUT_BACKEND_TLS_FAILED] = "backend_tls_failed",
    [CONN_OUT_BACKEND_RESET] = "backend_reset",
    [CONN_OUT_BACKEND_TRUNCATED] = "backend_truncated",
    [CONN_OUT_BAD_GATEWAY] = "bad_gateway",
    [CONN_OUT_HTTP_ERROR] = "http_error",
    [CONN_OUT_IDLE_TIMEOUT] = "idle_timeout",
    [CONN_OUT_RESPONSE_TIMEOUT] = "response_timeout",
    [CONN_OUT_REVOKED] = "revoked",
    [CONN_OUT_EXPIRED] = "expired",
    [CONN_OUT_OUT_OF_MEMORY] = "out_of_memory",
    [CONN_OUT_INTERNAL_ERROR] = "internal_error",
};

const char *conn_outcome_name(enum conn_outcome o)
{
    return o < CONN_OUT_COUNT && outcome_names[o] != NULL ? outcome_names[o] : "internal_error";
}

/* One JSON line per tcp_ssl connection or https request. */
void session_access_log(struct session *c)
{
    if (!log_access_enabled())
        return;
    const struct exchange *x = c->ex;
    struct tls_info info;
    char peer[64], ts[96], target[300] = "";
    char tls_fields[TLS_INFO_JSON_MAX], e_target[600], extra[2400] = "";
    ev_tstamp now = ev_time();
    struct access_fields f = {.extra = extra, .extra_len = sizeof(extra)};
    c->ops->log_fields(c, &f, now);
    ev_tstamp start = f.start > 0 ? f.start : c->t_accept;
    uint64_t base_in = f.base_in, base_out = f.base_out;

    tls_info_clear(&info);
    if (c->ssl != NULL && c->t_handshake > 0)
        tls_info_get(c->ssl, &c->verdict, &info);
    if (x->target >= 0 && x->group != NULL)
        snprintf(target, sizeof(target), "%s", x->group->targets[x->target].address);
    peer_str(c, peer, sizeof(peer));
    format_time(start, ts, sizeof(ts));
    tls_info_json(&info, tls_fields, sizeof(tls_fields));
    log_json_escape(e_target, sizeof(e_target), target);
    char line[TLS_INFO_JSON_MAX + 4096];
    int n =
        snprintf(line, sizeof(line),
                 "{\"time\":\"%s\",\"listener\":\"%s\",\"conn\":\"%d.%llu\",\"client\":\"%s\","
                 "%s,\"handshake_ms\":%.3f,"
                 "\"target\":\"%s\",\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.3f,"
                 "\"outcome\":\"%s\",\"reason\":\"%s\"%s}",
                 ts, c->l->cfg->name, tg_pid(), (unsigned long long)c->id, peer, tls_fields,
                 c->t_handshake > 0 ? (c->t_handshake - c->t_accept) * 1000.0 : 0.0, e_target,
                 (unsigned long long)(c->bytes_in - base_in),
                 (unsigned long long)(c->bytes_out - base_out), (now - start) * 1000.0,
                 conn_outcome_name(x->outcome), c->reject_reason ? c->reject_reason : "", extra);
    if (n > 0)
        log_access_write(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void session_defer(struct session *c)
{
    struct worker *w = c->w;
    if (c->defer_list != NULL)
        return;
    /* Queued while the deferred sessions run: the next iteration's. */
    struct session **list = w->in_deferred ? &w->deferred_later : &w->deferred;
    c->defer_list = list;
    c->defer_prev = NULL;
    c->defer_next = *list;
    if (*list != NULL)
        (*list)->defer_prev = c;
    *list = c;
}

static void defer_unlink(struct session *c)
{
    struct session **list = c->defer_list;
    if (list == NULL)
        return;
    c->defer_list = NULL;
    if (c->defer_prev != NULL)
        c->defer_prev->defer_next = c->defer_next;
    else
        *list = c->defer_next;
    if (c->defer_next != NULL)
        c->defer_next->defer_prev = c->defer_prev;
}

void session_run_deferred(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop, (void)revents;
    struct worker *w = p->data;
    w->in_deferred = true;
    while (w->deferred != NULL) {
        struct session *c = w->deferred;
        defer_unlink(c);
        session_run(c);
    }
    w->deferred = w->deferred_later;
    for (struct session *c = w->deferred; c != NULL; c = c->defer_next)
        c->defer_list = &w->deferred;
    w->deferred_later = NULL;
    w->in_deferred = false;
}

static void session_free(struct session *c)
{
    struct worker *w = c->w;
    defer_unlink(c);
    if (c->cut_deadline > 0)
        w->n_cut_pending--;
    c->ops->log_last(c);
    ev_io_stop(w->loop, &c->cli.io);
    ev_io_stop(w->loop, &c->ex->be.io);
    ev_timer_stop(w->loop, &c->timer);
    if (c->ssl != NULL && c->verdict.is_ocsp_waiting) {
        /* A handshake suspended for OCSP (closed by its timeout, or at
         * exit): off the waiters, then its job resumed and refused, so
         * that OpenSSL ends it before the SSL goes. */
        ocspc_cancel(c);
        c->verdict.is_ocsp_abort = true;
        enum tls_want want;
        enum tg_status st = tls_handshake(c->ssl, &want);
        (void)st;
        ERR_clear_error();
    }
    if (c->ssl != NULL) {
        /* Never block here: a quiet shutdown just drops the session. */
        SSL_set_quiet_shutdown(c->ssl, 1);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    tls_verdict_fini(&c->verdict);
    c->ops->fini(c);
    if (c->cli.fd >= 0)
        close(c->cli.fd);
    shm_count_close(c->l->stats, c->bytes_in, c->bytes_out);

    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    w->n_conns--;
    free(c);
    if (w->is_draining && w->n_conns == 0)
        ev_break(w->loop, EVBREAK_ALL);
}

void session_run(struct session *c)
{
    for (;;) {
        conn_handler step = c->ops->step[c->st];
        enum conn_state next = step != NULL ? step(c) : session_step[c->st](c);
        if (next == c->st)
            break;
        log_debug("event=conn_state conn=%d.%llu from=%s to=%s", tg_pid(),
                  (unsigned long long)c->id, session_state_name(c->st), session_state_name(next));
        exchange_lb_step(c, c->st, next);
        c->st = next;
        if (next == CONN_ST_CLOSED) {
            session_free(c);
            return;
        }
        enter_state(c, next);
    }
    session_update_io(c);
}

void session_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct session *c = io->data;
    if (revents & EV_READ) {
        struct side *s = (struct side *)(void *)((char *)io - offsetof(struct side, io));
        s->can_read = true;
        s->drained = false;
    }
    if (revents & EV_WRITE) {
        struct side *s = (struct side *)(void *)((char *)io - offsetof(struct side, io));
        s->wrote_ready = true;
    }
    session_run(c);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct session *c = t->data;
    /* An idle deadline moves with activity; re-arm for what is left. */
    ev_tstamp idle = c->ops->idle_timeout(c);
    if (idle > 0) {
        ev_tstamp left = c->last_activity + idle - ev_now(loop);
        if (left > 0.001) {
            ev_timer_set(t, left, 0.);
            ev_timer_start(loop, t);
            return;
        }
    }
    c->timed_out = true;
    session_run(c);
}

static bool is_expiry(const char *why)
{
    return strcmp(why, "cert_expired") == 0 || strcmp(why, "cert_not_yet_valid") == 0;
}

/* Closes c now: its access-log outcome says why. */
static void close_cut(struct session *c, const char *why)
{
    c->ex->outcome = is_expiry(why) ? CONN_OUT_EXPIRED : CONN_OUT_REVOKED;
    c->reject_reason = why;
    /* One try at close_notify: the socket closes right after either way. */
    if (session_cli_close_notify(c) == TG_E_AGAIN)
        log_debug("event=close_notify_pending conn=%d.%llu", tg_pid(), (unsigned long long)c->id);
    exchange_lb_step(c, c->st, CONN_ST_CLOSED);
    c->st = CONN_ST_CLOSED;
    session_free(c);
}

/* Closes c because its client certificate is no longer valid (why): at
 * once, or after the https request in flight (within the listener's
 * response_timeout: session_cut_overdue). One log line, a metric. */
static void session_cut(struct session *c, const char *why, const struct tls_trust *t)
{
    struct tls_info info;
    char peer[64], e_subj[LOG_KV_MAX];
    const char *crl_number = t != NULL ? tls_trust_info(t)->crl_number : "";
    bool expiry = is_expiry(why);
    tls_info_clear(&info);
    X509 *leaf = SSL_get0_peer_certificate(c->ssl);
    if (leaf != NULL)
        tls_cert_facts(leaf, &info);
    peer_str(c, peer, sizeof(peer));
    bool later = c->ops->on_cut(c);
    log_warn("event=%s listener=%s conn=%d.%llu client=%s reason=%s serial=%s subject=%s "
             "crl_number=%s action=%s",
             expiry ? "connection_expired" : "connection_revoked", c->l->cfg->name, tg_pid(),
             (unsigned long long)c->id, peer, why, info.client_serial[0] ? info.client_serial : "-",
             log_kv(e_subj, sizeof(e_subj), info.client_subject), crl_number[0] ? crl_number : "-",
             later ? "close_after_request" : "close");
    shm_count_conn_cut(c->l->stats, why);
    c->cut_reason = why;
    if (later) {
        c->cut_deadline = ev_now(c->w->loop) + (ev_tstamp)c->l->cfg->response_timeout_ms / 1000.0;
        c->w->n_cut_pending++;
        return;
    }
    close_cut(c, why);
}

void session_cut_overdue(struct worker *w, ev_tstamp now)
{
    struct session *next;
    for (struct session *c = w->conns; c != NULL && w->n_cut_pending > 0; c = next) {
        next = c->next;
        if (c->cut_deadline > 0 && now >= c->cut_deadline && c->st != CONN_ST_CLOSED) {
            log_warn("event=connection_cut_overdue listener=%s conn=%d.%llu reason=%s "
                     "effect=\"the request in flight did not end within response_timeout\"",
                     c->l->cfg->name, tg_pid(), (unsigned long long)c->id, c->cut_reason);
            close_cut(c, c->cut_reason);
        }
    }
}

/* c's verified client (facts f) judged again under t, its site's trust,
 * then under the site's allow-list: NULL while both accept it. */
static const char *rejudge(struct session *c, struct tls_trust *t, const struct tls_facts *f,
                           int64_t now)
{
    const char *why = tls_trust_recheck(t, f, now);
    /* Other CA certificates, or a CRL only the chain can verify: verify the
     * chain again under them. */
    if (why != NULL && (strcmp(why, "trust_changed") == 0 || strcmp(why, "bad_signature") == 0))
        why = tls_reverify(c->ssl, t);
    if (why == NULL && !tls_site_allows(SSL_get_SSL_CTX(c->ssl), SSL_get0_peer_certificate(c->ssl)))
        why = "not_allowed";
    return why;
}

const char *session_judge_late(struct session *c)
{
    struct tls_trust *cur = tls_server_trust(c->l->tls, c->site);
    struct tls_facts f;
    if (cur == NULL || c->verdict.judged_under == 0)
        return NULL;
    if (c->verdict.judged_under == tls_trust_serial(cur))
        return !session_client_verified(c) ||
                       tls_site_allows(SSL_get_SSL_CTX(c->ssl), SSL_get0_peer_certificate(c->ssl))
                   ? NULL
                   : "not_allowed";
    if (!tls_facts_of(c->ssl, &f))
        return NULL;
    return rejudge(c, cur, &f, (int64_t)time(NULL));
}

/* Whether c has a verified client certificate its listener judges. */
static bool is_judged(const struct session *c)
{
    return c->ssl != NULL && c->t_handshake > 0 && c->cut_reason == NULL &&
           c->st != CONN_ST_DRAIN && c->st != CONN_ST_CLOSED;
}

void session_recheck_trust(struct worker *w, struct wlistener *l, size_t site)
{
    const struct cfg_tls *cfg = &l->cfg->tls;
    struct tls_trust *t = tls_server_trust(l->tls, site);
    int64_t now = (int64_t)time(NULL);
    struct session *next;
    if (t == NULL)
        return;
    for (struct session *c = w->conns; c != NULL; c = next) {
        next = c->next;
        struct tls_facts f;
        if (c->l != l || c->site != site || !is_judged(c) || !tls_facts_of(c->ssl, &f))
            continue;
        const char *why = rejudge(c, t, &f, now);
        if (why == NULL)
            continue;
        enum cfg_on_invalid on = is_expiry(why) ? cfg->on_expiry : cfg->on_revoke;
        if (on == CFG_ON_INVALID_CLOSE)
            session_cut(c, why, t);
    }
}

void session_expire_due(struct worker *w, int64_t now)
{
    struct session *next;
    w->next_expiry = 0;
    for (struct session *c = w->conns; c != NULL; c = next) {
        next = c->next;
        if (c->cert_not_after == 0 || !is_judged(c))
            continue;
        if (now > c->cert_not_after) {
            session_cut(c, "cert_expired", NULL);
            continue;
        }
        if (w->next_expiry == 0 || c->cert_not_after < w->next_expiry)
            w->next_expiry = c->cert_not_after;
    }
}
