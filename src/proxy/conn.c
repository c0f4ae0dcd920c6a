#include "proxy/conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

static const char *const state_names[CONN_ST_COUNT] = {
    [CONN_ST_ACCEPTED] = "accepted", [CONN_ST_TLS_HANDSHAKE] = "tls_handshake",
    [CONN_ST_PICK] = "pick",         [CONN_ST_CONNECT] = "connect",
    [CONN_ST_RELAY] = "relay",       [CONN_ST_DRAIN] = "drain",
    [CONN_ST_CLOSED] = "closed",
};

const char *conn_state_name(enum conn_state st)
{
    return st < CONN_ST_COUNT ? state_names[st] : "?";
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents);

struct conn *conn_new(struct worker *w, struct wlistener *l, int fd, const struct net_addr *peer)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->w = w;
    c->l = l;
    c->id = ++w->next_id;
    c->st = CONN_ST_ACCEPTED;
    c->cli.fd = fd;
    c->be.fd = -1;
    c->target = -1;
    c->peer = *peer;
    c->local.len = sizeof(c->local.ss);
    if (getsockname(fd, (struct sockaddr *)&c->local.ss, &c->local.len) != 0)
        c->local.len = 0;
    c->t_accept = ev_now(w->loop);
    c->last_activity = c->t_accept;
    c->outcome = "ok";
    ev_io_init(&c->cli.io, io_cb, fd, 0);
    c->cli.io.data = c;
    ev_init(&c->be.io, io_cb);
    c->be.io.data = c;
    ev_init(&c->timer, timer_cb);
    c->timer.data = c;

    c->next = w->conns;
    if (w->conns != NULL)
        w->conns->prev = c;
    w->conns = c;
    w->n_conns++;
    atomic_fetch_add_explicit(&l->stats->conns_active, 1, memory_order_relaxed);
    shm_add(&l->stats->conns_total, 1);
    return c;
}

void conn_set_timer(struct conn *c, uint64_t ms)
{
    ev_timer_stop(c->w->loop, &c->timer);
    c->timed_out = false;
    if (ms == 0)
        return;
    ev_timer_set(&c->timer, (ev_tstamp)ms / 1000.0, 0.);
    ev_timer_start(c->w->loop, &c->timer);
}

static void peer_str(const struct conn *c, char *dst, size_t len)
{
    net_addr_format(&c->peer, dst, len);
}

/* One line per refused handshake (DESIGN.md "Rejection reasons"). */
static void log_rejection(struct conn *c, const char *reason, const char *detail)
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
    log_warn("event=tls_handshake_failed listener=%s conn=%d.%llu client=%s sni=%s reason=%s "
             "subject=\"%s\" issuer=\"%s\" detail=\"%s\"",
             c->l->cfg->name, (int)getpid(), (unsigned long long)c->id, peer, sni ? sni : "-",
             reason, subject, issuer, detail ? detail : "");
    c->reject_reason = reason;
    c->outcome = "tls_rejected";
    shm_add(&c->l->stats->handshake_failures, 1);
}

static enum conn_state st_accepted(struct conn *c)
{
    c->ssl = tls_server_ssl_new(c->l->tls, c->cli.fd);
    if (c->ssl == NULL) {
        log_err("event=conn_error listener=%s conn=%d.%llu error=\"cannot create SSL\"",
                c->l->cfg->name, (int)getpid(), (unsigned long long)c->id);
        c->outcome = "internal_error";
        return CONN_ST_CLOSED;
    }
    tls_verdict_attach(c->ssl, &c->verdict);
    return CONN_ST_TLS_HANDSHAKE;
}

static enum conn_state st_handshake(struct conn *c)
{
    if (c->timed_out) {
        log_rejection(c, "handshake_timeout", "no complete handshake in time");
        return CONN_ST_CLOSED;
    }
    enum tg_status st = tls_handshake(c->ssl, &c->want);
    if (st == TG_E_AGAIN)
        return CONN_ST_TLS_HANDSHAKE;
    if (st != TG_OK) {
        char detail[256];
        const char *reason = tls_reason_from_handshake(c->ssl, &c->verdict, detail, sizeof(detail));
        log_rejection(c, reason, detail);
        return CONN_ST_CLOSED;
    }
    c->t_handshake = ev_now(c->w->loop);
    shm_add(&c->l->stats->handshakes, 1);
    if (SSL_session_reused(c->ssl))
        shm_add(&c->l->stats->handshakes_resumed, 1);
    return CONN_ST_PICK;
}

/* Sends close_notify, then closes. */
static enum conn_state st_drain(struct conn *c)
{
    if (c->timed_out || c->ssl == NULL)
        return CONN_ST_CLOSED;
    enum tg_status st = tls_shutdown(c->ssl, &c->want);
    if (st == TG_E_AGAIN)
        return CONN_ST_DRAIN;
    return CONN_ST_CLOSED;
}

static enum conn_state st_closed(struct conn *c)
{
    return CONN_ST_CLOSED;
    (void)c;
}

typedef enum conn_state (*conn_handler)(struct conn *c);

static const conn_handler handlers[CONN_ST_COUNT] = {
    [CONN_ST_ACCEPTED] = st_accepted, [CONN_ST_TLS_HANDSHAKE] = st_handshake,
    [CONN_ST_PICK] = tcp_pick,        [CONN_ST_CONNECT] = tcp_connect,
    [CONN_ST_RELAY] = tcp_relay,      [CONN_ST_DRAIN] = st_drain,
    [CONN_ST_CLOSED] = st_closed,
};

/* Arms the timer of the state being entered. */
static void enter_state(struct conn *c, enum conn_state st)
{
    const struct cfg_listener *l = c->l->cfg;
    switch (st) {
    case CONN_ST_TLS_HANDSHAKE:
        conn_set_timer(c, l->handshake_timeout_ms);
        break;
    case CONN_ST_CONNECT:
        conn_set_timer(c, l->connect_timeout_ms);
        break;
    case CONN_ST_RELAY:
        c->last_activity = ev_now(c->w->loop);
        conn_set_timer(c, l->idle_timeout_ms);
        break;
    case CONN_ST_DRAIN:
        conn_set_timer(c, 2000);
        break;
    default:
        conn_set_timer(c, 0);
        break;
    }
}

static void side_set(struct conn *c, struct side *s, int events)
{
    if (s->fd < 0 || s->events == events)
        return;
    ev_io_stop(c->w->loop, &s->io);
    s->events = events;
    if (events != 0) {
        ev_io_set(&s->io, s->fd, events);
        ev_io_start(c->w->loop, &s->io);
    }
}

/* Works out read/write interest from the state and the buffers. */
static void conn_update_io(struct conn *c)
{
    int ce = 0, be = 0;
    switch (c->st) {
    case CONN_ST_TLS_HANDSHAKE:
    case CONN_ST_DRAIN:
        ce = c->want == TLS_WANT_WRITE ? EV_WRITE : EV_READ;
        break;
    case CONN_ST_CONNECT:
        be = EV_WRITE;
        break;
    case CONN_ST_RELAY:
        if (c->want == TLS_WANT_WRITE)
            ce |= EV_WRITE;
        if (!c->cli.rd_shut && (!buf_is_full(&c->c2b) || c->want == TLS_WANT_READ))
            ce |= EV_READ;
        if (!buf_is_empty(&c->b2c) && !c->cli.wr_shut)
            ce |= EV_WRITE;
        if (!c->be.rd_shut && !buf_is_full(&c->b2c))
            be |= EV_READ;
        if (!buf_is_empty(&c->c2b) && !c->be.wr_shut)
            be |= EV_WRITE;
        break;
    default:
        break;
    }
    side_set(c, &c->cli, ce);
    side_set(c, &c->be, be);
}

static void format_time(ev_tstamp t, char *dst, size_t len)
{
    time_t sec = (time_t)t;
    struct tm tm;
    gmtime_r(&sec, &tm);
    snprintf(dst, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)((t - (double)sec) * 1000));
}

/* One JSON line per tcp_ssl connection (DESIGN.md "Observability"). */
static void access_log(struct conn *c)
{
    if (!log_access_enabled())
        return;
    struct tls_info info;
    char peer[64], ts[96], target[300] = "";
    char e_sni[512], e_subj[1100], e_iss[1100], e_target[600];
    ev_tstamp now = ev_now(c->w->loop);

    memset(&info, 0, sizeof(info));
    info.client_verdict = "NONE";
    if (c->ssl != NULL && c->t_handshake > 0)
        tls_info_get(c->ssl, &c->verdict, &info);
    if (c->target >= 0)
        snprintf(target, sizeof(target), "%s", c->l->cfg->target_group->targets[c->target].address);
    peer_str(c, peer, sizeof(peer));
    format_time(c->t_accept, ts, sizeof(ts));
    log_json_escape(e_sni, sizeof(e_sni), info.sni);
    log_json_escape(e_subj, sizeof(e_subj), info.client_subject);
    log_json_escape(e_iss, sizeof(e_iss), info.client_issuer);
    log_json_escape(e_target, sizeof(e_target), target);

    char line[4096];
    int n = snprintf(line, sizeof(line),
                     "{\"time\":\"%s\",\"listener\":\"%s\",\"conn\":\"%d.%llu\",\"client\":\"%s\","
                     "\"sni\":\"%s\",\"tls_version\":\"%s\",\"cipher\":\"%s\",\"resumed\":%s,"
                     "\"client_subject\":\"%s\",\"client_issuer\":\"%s\",\"client_serial\":\"%s\","
                     "\"client_fingerprint\":\"%s\",\"client_verify\":\"%s\",\"handshake_ms\":%.3f,"
                     "\"target\":\"%s\",\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.3f,"
                     "\"outcome\":\"%s\",\"reason\":\"%s\"}",
                     ts, c->l->cfg->name, (int)getpid(), (unsigned long long)c->id, peer, e_sni,
                     info.version, info.cipher, info.resumed ? "true" : "false", e_subj, e_iss,
                     info.client_serial, info.client_fingerprint, info.client_verdict,
                     c->t_handshake > 0 ? (c->t_handshake - c->t_accept) * 1000.0 : 0.0, e_target,
                     (unsigned long long)c->bytes_in, (unsigned long long)c->bytes_out,
                     (now - c->t_accept) * 1000.0, c->outcome,
                     c->reject_reason ? c->reject_reason : "");
    if (n > 0)
        log_access_write(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;
    access_log(c);
    ev_io_stop(w->loop, &c->cli.io);
    ev_io_stop(w->loop, &c->be.io);
    ev_timer_stop(w->loop, &c->timer);
    if (c->ssl != NULL) {
        /* Never block here: a quiet shutdown just drops the session. */
        SSL_set_quiet_shutdown(c->ssl, 1);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    tls_verdict_fini(&c->verdict);
    if (c->cli.fd >= 0)
        close(c->cli.fd);
    if (c->be.fd >= 0)
        close(c->be.fd);
    buf_fini(&c->c2b);
    buf_fini(&c->b2c);
    shm_add(&c->l->stats->bytes_in, c->bytes_in);
    shm_add(&c->l->stats->bytes_out, c->bytes_out);
    atomic_fetch_sub_explicit(&c->l->stats->conns_active, 1, memory_order_relaxed);

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

void conn_run(struct conn *c)
{
    for (;;) {
        enum conn_state next = handlers[c->st](c);
        if (next == c->st)
            break;
        log_debug("event=conn_state conn=%d.%llu from=%s to=%s", (int)getpid(),
                  (unsigned long long)c->id, conn_state_name(c->st), conn_state_name(next));
        c->st = next;
        if (next == CONN_ST_CLOSED) {
            conn_free(c);
            return;
        }
        enter_state(c, next);
    }
    conn_update_io(c);
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    conn_run(io->data);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct conn *c = t->data;
    if (c->st == CONN_ST_RELAY) {
        /* The idle deadline moves with activity; re-arm for what is left. */
        ev_tstamp idle = (ev_tstamp)c->l->cfg->idle_timeout_ms / 1000.0;
        ev_tstamp left = c->last_activity + idle - ev_now(loop);
        if (left > 0.001) {
            ev_timer_set(t, left, 0.);
            ev_timer_start(loop, t);
            return;
        }
    }
    c->timed_out = true;
    conn_run(c);
}
