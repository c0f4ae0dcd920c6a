/* Active health checks: tcp connect, http and https requests. */
#include "health/health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "core/log.h"
#include "net/net.h"
#include "tls/tls.h"

#define HC_RESP_MAX 512
#define HC_REQ_MAX  1024

enum hc_phase { HC_IDLE, HC_CONNECT, HC_TLS, HC_SEND, HC_RECV };

/* One target's check. */
struct hc {
    struct health *h;                 /* borrowed */
    const struct cfg_target_group *g; /* borrowed from the applied config */
    const struct cfg_target *t;       /* borrowed */
    SSL_CTX *ctx;                     /* borrowed from health.ctxs; https only */
    int slot;
    ev_timer tick;     /* every interval */
    ev_timer deadline; /* timeout of the check in flight */
    ev_io io;
    int fd;
    SSL *ssl; /* owned while a check runs */
    enum hc_phase phase;
    char req[HC_REQ_MAX];
    size_t req_len, req_off;
    char resp[HC_RESP_MAX];
    size_t resp_len;
};

struct health {
    struct ev_loop *loop; /* borrowed */
    struct lb_shared *sh; /* borrowed */
    struct hc *checks;    /* owned */
    size_t n_checks;
    SSL_CTX **ctxs; /* owned, one per group (NULL unless https) */
    size_t n_ctxs;
};

struct health *health_new(struct ev_loop *loop, struct lb_shared *sh)
{
    struct health *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->loop = loop;
    h->sh = sh;
    return h;
}

static void hc_stop_io(struct hc *c)
{
    ev_io_stop(c->h->loop, &c->io);
    ev_timer_stop(c->h->loop, &c->deadline);
    if (c->ssl != NULL) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->phase = HC_IDLE;
}

static void stop_all(struct health *h)
{
    for (size_t i = 0; i < h->n_checks; i++) {
        hc_stop_io(&h->checks[i]);
        ev_timer_stop(h->loop, &h->checks[i].tick);
    }
    free(h->checks);
    h->checks = NULL;
    h->n_checks = 0;
    for (size_t i = 0; i < h->n_ctxs; i++)
        SSL_CTX_free(h->ctxs[i]);
    free(h->ctxs);
    h->ctxs = NULL;
    h->n_ctxs = 0;
}

void health_free(struct health *h)
{
    if (h == NULL)
        return;
    stop_all(h);
    free(h);
}

static const char *hc_type_name(enum cfg_hc_type t)
{
    switch (t) {
    case CFG_HC_TCP:
        return "tcp";
    case CFG_HC_HTTP:
        return "http";
    case CFG_HC_HTTPS:
        return "https";
    default:
        return "none";
    }
}

enum lb_hc_result health_result_of(bool is_ok, const char *cause)
{
    if (is_ok)
        return LB_HC_PASS;
    if (cause == NULL)
        return LB_HC_ERROR;
    if (strcmp(cause, "refused") == 0)
        return LB_HC_REFUSED;
    if (strcmp(cause, "timeout") == 0)
        return LB_HC_TIMEOUT;
    if (strcmp(cause, "tls_error") == 0)
        return LB_HC_TLS_ERROR;
    if (strncmp(cause, "status_", 7) == 0)
        return LB_HC_STATUS;
    return LB_HC_ERROR;
}

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The outcome of one check: counted and kept as the last check in the
 * slot, then streaks, thresholds, and one log line when the state changes.
 * cause is a token; detail may be NULL. */
static void hc_result(struct hc *c, bool is_ok, const char *cause, const char *detail)
{
    hc_stop_io(c);
    struct lb_slot *s = &c->h->sh->slots[c->slot];
    const struct cfg_health_check *hc = &c->g->health_check;
    lb_slot_note_check(s, health_result_of(is_ok, cause), cause, detail, unix_ms());
    int32_t was = atomic_load(&s->health);
    if (is_ok) {
        atomic_store(&s->hc_fail, 0);
        uint32_t ok = atomic_fetch_add(&s->hc_ok, 1) + 1;
        /* A passing check ends a passive ejection. */
        atomic_store(&s->eject_until_ms, 0);
        if (was == LB_HEALTH_UNKNOWN) {
            atomic_store(&s->health, LB_HEALTH_UP);
            lb_slot_note_change(s, "first_check", unix_ms());
            log_info("event=target_up target_group=%s target=%s check=%s cause=first_check",
                     c->g->name, c->t->address, hc_type_name(hc->type));
        } else if (was == LB_HEALTH_DOWN && ok >= hc->healthy_threshold) {
            atomic_store(&s->health, LB_HEALTH_UP);
            lb_slot_note_change(s, "passed", unix_ms());
            log_info("event=target_up target_group=%s target=%s check=%s cause=passed "
                     "successes=%u",
                     c->g->name, c->t->address, hc_type_name(hc->type), ok);
        }
        return;
    }
    atomic_store(&s->hc_ok, 0);
    uint32_t fail = atomic_fetch_add(&s->hc_fail, 1) + 1;
    char e_detail[LOG_KV_MAX];
    log_kv(e_detail, sizeof(e_detail), detail);
    log_debug("event=health_check_failed target_group=%s target=%s cause=%s detail=%s", c->g->name,
              c->t->address, cause, e_detail);
    if (was != LB_HEALTH_DOWN && fail >= hc->unhealthy_threshold) {
        atomic_store(&s->health, LB_HEALTH_DOWN);
        lb_slot_note_change(s, cause, unix_ms());
        log_warn("event=target_down target_group=%s target=%s check=%s cause=%s detail=%s "
                 "failures=%u",
                 c->g->name, c->t->address, hc_type_name(hc->type), cause, e_detail, fail);
    }
}

static const char *errno_cause(int e)
{
    switch (e) {
    case ECONNREFUSED:
        return "refused";
    case ETIMEDOUT:
        return "timeout";
    case EHOSTUNREACH:
    case ENETUNREACH:
        return "unreachable";
    case ECONNRESET:
    case EPIPE:
        return "reset";
    default:
        return "connect_error";
    }
}

static void hc_want(struct hc *c, int events)
{
    ev_io_stop(c->h->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->h->loop, &c->io);
}

/* "HTTP/1.x NNN " at the start of the response. */
static bool parse_status(const char *p, size_t len, unsigned *status)
{
    if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ')
        return false;
    unsigned v = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    *status = v;
    return v >= 100 && v <= 599;
}

/* Decides on the status line once it is complete (or cannot be). */
static void hc_check_response(struct hc *c, bool is_eof)
{
    const char *eol = memchr(c->resp, '\n', c->resp_len);
    if (eol == NULL && !is_eof && c->resp_len < sizeof(c->resp))
        return;
    unsigned status = 0;
    if (!parse_status(c->resp, c->resp_len, &status)) {
        hc_result(c, false, c->resp_len == 0 ? "closed" : "bad_response",
                  c->resp_len == 0 ? "closed before a status line" : "not an HTTP/1 status line");
        return;
    }
    const struct cfg_health_check *hc = &c->g->health_check;
    char cause[32];
    snprintf(cause, sizeof(cause), "status_%u", status);
    if (status < hc->expect_lo || status > hc->expect_hi) {
        char detail[64];
        snprintf(detail, sizeof(detail), "expected %u-%u", hc->expect_lo, hc->expect_hi);
        hc_result(c, false, cause, detail);
        return;
    }
    hc_result(c, true, cause, NULL);
}

/* TLS failure: the reason code a backend connection would log
 * (tls_client_failure), or OpenSSL's words when there is no precise one. */
static void hc_tls_failed(struct hc *c)
{
    char detail[256];
    const char *reason = tls_client_failure(c->ssl, detail, sizeof(detail));
    hc_result(c, false, "tls_error", strcmp(reason, "tls_error") == 0 ? detail : reason);
}

/* One step of SSL I/O: false when it must wait (interest set) or failed
 * (result given). */
static bool hc_ssl_step(struct hc *c, int r)
{
    if (r > 0)
        return true;
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        hc_want(c, EV_READ);
        return false;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        hc_want(c, EV_WRITE);
        return false;
    }
    if (err == SSL_ERROR_ZERO_RETURN && c->phase == HC_RECV) {
        hc_check_response(c, true);
        return false;
    }
    if (c->phase == HC_TLS)
        hc_tls_failed(c);
    else if (c->phase == HC_RECV && c->resp_len > 0)
        hc_check_response(c, true);
    else {
        ERR_clear_error();
        hc_result(c, false, "reset", "the connection broke");
    }
    return false;
}

static void hc_run(struct hc *c);

static void hc_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    hc_run(io->data);
}

static bool hc_send(struct hc *c)
{
    while (c->req_off < c->req_len) {
        const char *p = c->req + c->req_off;
        size_t len = c->req_len - c->req_off;
        if (c->ssl != NULL) {
            int r = SSL_write(c->ssl, p, (int)len);
            if (!hc_ssl_step(c, r))
                return false;
            c->req_off += (size_t)r;
            continue;
        }
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            hc_want(c, EV_WRITE);
            return false;
        }
        if (n < 0) {
            hc_result(c, false, errno_cause(errno), strerror(errno));
            return false;
        }
        c->req_off += (size_t)n;
    }
    return true;
}

static void hc_recv(struct hc *c)
{
    while (c->phase == HC_RECV && c->resp_len < sizeof(c->resp)) {
        char *dst = c->resp + c->resp_len;
        size_t room = sizeof(c->resp) - c->resp_len;
        if (c->ssl != NULL) {
            int r = SSL_read(c->ssl, dst, (int)room);
            if (!hc_ssl_step(c, r))
                return;
            c->resp_len += (size_t)r;
        } else {
            ssize_t n = recv(c->fd, dst, room, 0);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                hc_want(c, EV_READ);
                return;
            }
            if (n <= 0) {
                if (n < 0 && c->resp_len == 0) {
                    hc_result(c, false, errno_cause(errno), strerror(errno));
                    return;
                }
                hc_check_response(c, true);
                return;
            }
            c->resp_len += (size_t)n;
        }
        hc_check_response(c, false);
    }
    if (c->phase == HC_RECV)
        hc_check_response(c, true);
}

static void hc_run(struct hc *c)
{
    if (c->phase == HC_CONNECT) {
        if (net_connect_result(c->fd) != TG_OK) {
            hc_result(c, false, errno_cause(errno), strerror(errno));
            return;
        }
        if (c->g->health_check.type == CFG_HC_TCP) {
            hc_result(c, true, "connected", NULL);
            return;
        }
        c->phase = c->ssl != NULL ? HC_TLS : HC_SEND;
    }
    if (c->phase == HC_TLS) {
        if (!hc_ssl_step(c, SSL_connect(c->ssl)))
            return;
        c->phase = HC_SEND;
    }
    if (c->phase == HC_SEND) {
        if (!hc_send(c))
            return;
        c->phase = HC_RECV;
    }
    if (c->phase == HC_RECV)
        hc_recv(c);
}

static void hc_deadline_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct hc *c = t->data;
    if (c->phase != HC_IDLE)
        hc_result(c, false, "timeout", "no answer within the timeout");
}

/* SNI and the name to verify: tls.server_name, else the health check's
 * Host without its port, else the target's host. */
static bool hc_ssl_setup(struct hc *c)
{
    char name[256];
    const struct cfg_target_group *g = c->g;
    if (g->tls.server_name != NULL)
        snprintf(name, sizeof(name), "%s", g->tls.server_name);
    else if (g->health_check.host != NULL)
        net_address_host(g->health_check.host, name, sizeof(name));
    else
        net_address_host(c->t->address, name, sizeof(name));
    c->ssl = SSL_new(c->ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        return false;
    return tls_client_set_peer(c->ssl, name, g->tls.verify);
}

static void hc_start(struct hc *c)
{
    const struct cfg_health_check *hc = &c->g->health_check;
    if (c->phase != HC_IDLE)
        return; /* the one in flight still has time: its deadline decides */
    bool in_progress = false;
    c->resp_len = 0;
    c->req_off = 0;
    if (net_connect(&c->t->addr, &c->fd, &in_progress) != TG_OK) {
        c->fd = -1;
        hc_result(c, false, errno_cause(errno), strerror(errno));
        return;
    }
    if (hc->type == CFG_HC_HTTPS && (c->ctx == NULL || !hc_ssl_setup(c))) {
        ERR_clear_error();
        hc_result(c, false, "tls_error", "cannot set up TLS");
        return;
    }
    c->phase = HC_CONNECT;
    ev_io_init(&c->io, hc_io_cb, c->fd, EV_WRITE);
    c->io.data = c;
    ev_timer_set(&c->deadline, (ev_tstamp)hc->timeout_ms / 1000.0, 0.);
    ev_timer_start(c->h->loop, &c->deadline);
    if (in_progress)
        ev_io_start(c->h->loop, &c->io);
    else
        hc_run(c);
}

static void hc_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    hc_start(t->data);
}

/* The request of an http/https check; Connection: close so that the
 * target ends it. */
static bool hc_build_request(struct hc *c)
{
    const struct cfg_health_check *hc = &c->g->health_check;
    int n = snprintf(c->req, sizeof(c->req),
                     "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tollgate-health-check\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n",
                     hc->method ? hc->method : "GET", hc->path ? hc->path : "/",
                     hc->host ? hc->host : c->t->address);
    if (n < 0 || (size_t)n >= sizeof(c->req))
        return false;
    c->req_len = (size_t)n;
    return true;
}

/* The client context of a group's https checks: the one backend
 * connections use, without their session cache, so that every check
 * judges the certificate the target has now. */
static SSL_CTX *group_ctx(const struct config *cfg, const struct cfg_target_group *g)
{
    char err[256];
    SSL_CTX *ctx = tls_client_ctx_new(cfg, g, err, sizeof(err));
    if (ctx == NULL) {
        char e_err[LOG_KV_MAX];
        log_err("event=health_check_setup_failed target_group=%s error=%s", g->name,
                log_kv(e_err, sizeof(e_err), err));
    }
    return ctx;
}

/* A group without checks (any more): its targets are up unless passive
 * checks say otherwise; a state left by an earlier config must not stick. */
static void forget_group(struct health *h, const struct cfg_target_group *g)
{
    for (size_t j = 0; j < g->n_targets; j++) {
        int slot = lb_shared_find(h->sh, g->name, g->targets[j].address);
        if (slot < 0)
            continue;
        struct lb_slot *s = &h->sh->slots[slot];
        if (atomic_exchange(&s->health, LB_HEALTH_UNKNOWN) == LB_HEALTH_DOWN) {
            lb_slot_note_change(s, "checks_removed", unix_ms());
            log_info("event=target_up target_group=%s target=%s cause=checks_removed", g->name,
                     g->targets[j].address);
        }
        atomic_store(&s->hc_ok, 0);
        atomic_store(&s->hc_fail, 0);
    }
}

void health_apply(struct health *h, const struct config *cfg)
{
    stop_all(h);
    if (cfg == NULL || h->sh == NULL)
        return;
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        if (cfg->target_groups[i].health_check.type == CFG_HC_NONE)
            forget_group(h, &cfg->target_groups[i]);
    }
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        if (cfg->target_groups[i].health_check.type != CFG_HC_NONE)
            n += cfg->target_groups[i].n_targets;
    }
    h->ctxs = calloc(cfg->n_target_groups + 1, sizeof(*h->ctxs));
    h->checks = calloc(n + 1, sizeof(*h->checks));
    if (h->ctxs == NULL || h->checks == NULL) {
        log_err("event=health_checks_off error=\"out of memory\"");
        stop_all(h);
        return;
    }
    h->n_ctxs = cfg->n_target_groups;
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        const struct cfg_target_group *g = &cfg->target_groups[i];
        if (g->health_check.type == CFG_HC_HTTPS)
            h->ctxs[i] = group_ctx(cfg, g);
        for (size_t j = 0; g->health_check.type != CFG_HC_NONE && j < g->n_targets; j++) {
            const struct cfg_target *t = &g->targets[j];
            int slot = lb_shared_find(h->sh, g->name, t->address);
            if (t->is_builtin || slot < 0)
                continue; /* built-in targets are always up */
            struct hc *c = &h->checks[h->n_checks++];
            c->h = h;
            c->g = g;
            c->t = t;
            c->ctx = h->ctxs[i];
            c->slot = slot;
            c->fd = -1;
            if (g->health_check.type != CFG_HC_TCP && !hc_build_request(c)) {
                log_err("event=health_check_setup_failed target_group=%s target=%s "
                        "error=\"request too long\"",
                        g->name, t->address);
                h->n_checks--;
                continue;
            }
            ev_init(&c->deadline, hc_deadline_cb);
            c->deadline.data = c;
            ev_init(&c->io, hc_io_cb);
            c->io.data = c;
            ev_timer_init(&c->tick, hc_tick_cb, 0.001,
                          (ev_tstamp)g->health_check.interval_ms / 1000.0);
            c->tick.data = c;
            ev_timer_start(h->loop, &c->tick);
        }
    }
}
