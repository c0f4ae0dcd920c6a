/* TLS to the targets of target groups that have a tls block (https, http
 * and tcp_ssl listeners): the client side of the TLS checks (trust, dates,
 * revocation, name). */
#include "proxy/betls.h"
#include "proxy/exchange.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "core/log.h"

#define CONN_ARGS(c) tg_pid(), (unsigned long long)(c)->id

/* A group's client context and the last session of each of its targets,
 * for resumption. */
struct betls_group {
    SSL_CTX *ctx; /* owned; NULL until first used */
    bool is_failed;
    SSL_SESSION *sess[CFG_MAX_TARGETS]; /* owned */
};

/* A worker's backend TLS state, one entry per target group of its config. */
struct betls {
    const struct config *cfg; /* borrowed */
    struct betls_group *groups;
    size_t n_groups;
};

/* OpenSSL hands over a new session (after the handshake, or a TLS 1.3
 * NewSessionTicket later): keep it as the target's next one. The SSL's
 * app data is the target's slot. */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    SSL_SESSION **slot = SSL_get_app_data(ssl);
    if (slot == NULL)
        return 0;
    SSL_SESSION_free(*slot);
    *slot = sess;
    return 1; /* the reference is ours now */
}

/* The client context of a group (tls_client_ctx_new) with a session
 * cache of one session per target, kept by new_session_cb. */
static SSL_CTX *group_ctx(const struct config *cfg, const struct cfg_target_group *g)
{
    char err[256];
    SSL_CTX *ctx = tls_client_ctx_new(cfg, g, err, sizeof(err));
    if (ctx == NULL) {
        char e_err[LOG_KV_MAX];
        log_err("event=backend_tls_setup_failed target_group=%s ca=%s error=%s", g->name,
                g->tls.ca_name ? g->tls.ca_name : "-", log_kv(e_err, sizeof(e_err), err));
        return NULL;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    return ctx;
}

/* The entry of c's group, its context made on first use; NULL when it
 * cannot be made (logged once). */
static struct betls_group *group_of(struct session *c)
{
    struct worker *w = c->w;
    const struct config *cfg = w->cfg;
    if (w->betls == NULL) {
        struct betls *b = calloc(1, sizeof(*b));
        if (b == NULL)
            return NULL;
        b->groups = calloc(cfg->n_target_groups + 1, sizeof(*b->groups));
        if (b->groups == NULL) {
            free(b);
            return NULL;
        }
        b->cfg = cfg;
        b->n_groups = cfg->n_target_groups;
        w->betls = b;
    }
    const struct cfg_target_group *g = c->ex->group;
    if (g < cfg->target_groups || g >= cfg->target_groups + cfg->n_target_groups)
        return NULL;
    struct betls_group *bg = &w->betls->groups[g - cfg->target_groups];
    if (bg->ctx == NULL && !bg->is_failed) {
        bg->ctx = group_ctx(cfg, g);
        bg->is_failed = bg->ctx == NULL;
    }
    return bg->ctx != NULL ? bg : NULL;
}

bool betls_wanted(const struct session *c)
{
    return c->ex->group != NULL && c->ex->group->tls.enabled && c->ex->target >= 0 &&
           c->ex->target < CFG_MAX_TARGETS && !c->ex->group->targets[c->ex->target].is_builtin;
}

/* SNI (names only: RFC 6066 §3 has no addresses) and the name or address
 * the certificate must carry: tls.server_name, else the target's host. */
static bool set_names(SSL *ssl, const struct cfg_target_group *g, const struct cfg_target *t)
{
    char name[256];
    if (g->tls.server_name != NULL)
        snprintf(name, sizeof(name), "%s", g->tls.server_name);
    else
        net_address_host(t->address, name, sizeof(name));
    return tls_client_set_peer(ssl, name, g->tls.verify);
}

/* Logs the failure, forgets the connection and marks the target tried. */
enum conn_state betls_connect_failed(struct session *c, const char *reason, const char *detail)
{
    char peer[64], subject[512] = "", issuer[512] = "";
    const struct cfg_target *t = &c->ex->group->targets[c->ex->target];
    SSL *ssl = c->ex->be_ssl;
    X509 *crt = ssl ? tls_client_offered_cert(ssl) : NULL;
    if (crt != NULL) {
        tls_name_format(X509_get_subject_name(crt), subject, sizeof(subject));
        tls_name_format(X509_get_issuer_name(crt), issuer, sizeof(issuer));
    }
    net_addr_format(&c->peer, peer, sizeof(peer));
    char e_subj[LOG_KV_MAX], e_iss[LOG_KV_MAX], e_detail[LOG_KV_MAX];
    log_warn("event=backend_tls_failed listener=%s " CONN_FMT " client=%s target_group=%s "
             "target=%s reason=%s subject=%s issuer=%s detail=%s",
             c->l->cfg->name, CONN_ARGS(c), peer, c->ex->group->name, t->address, reason,
             log_kv(e_subj, sizeof(e_subj), subject), log_kv(e_iss, sizeof(e_iss), issuer),
             log_kv(e_detail, sizeof(e_detail), detail));
    /* A session that no longer gets through is not offered again. */
    struct betls_group *bg = group_of(c);
    if (bg != NULL) {
        SSL_SESSION_free(bg->sess[c->ex->target]);
        bg->sess[c->ex->target] = NULL;
    }
    c->ex->be_tls_failed = true;
    betls_close(c);
    return exchange_forget_target(c);
}

/* A new client SSL on c->ex->be.fd for c's target. */
static bool start(struct session *c)
{
    struct betls_group *bg = group_of(c);
    if (bg == NULL)
        return false;
    SSL *ssl = SSL_new(bg->ctx);
    if (ssl == NULL || SSL_set_fd(ssl, c->ex->be.fd) != 1 ||
        !set_names(ssl, c->ex->group, &c->ex->group->targets[c->ex->target])) {
        SSL_free(ssl);
        ERR_clear_error();
        return false;
    }
    SSL_SESSION **slot = &bg->sess[c->ex->target];
    SSL_set_app_data(ssl, slot);
    if (*slot != NULL && SSL_SESSION_is_resumable(*slot))
        (void)SSL_set_session(ssl, *slot);
    SSL_set_connect_state(ssl);
    c->ex->be_ssl = ssl;
    return true;
}

/* Watches the backend socket for what the handshake waits for.
 * session_update_io() asks for writability throughout CONNECT and leaves a
 * side alone whose recorded interest is already what it wants: so the
 * interest is recorded as EV_WRITE while the watcher may wait for reading
 * (the target's flight). betls_handshake() resets it when done. */
static void watch(struct session *c, int events)
{
    ev_io_stop(c->w->loop, &c->ex->be.io);
    ev_io_modify(&c->ex->be.io, events); /* the watcher holds c->ex->be.fd already */
    ev_io_start(c->w->loop, &c->ex->be.io);
    c->ex->be.events = EV_WRITE;
}

enum tg_status betls_handshake(struct session *c)
{
    if (c->ex->be_ssl == NULL && !start(c)) {
        (void)betls_connect_failed(c, "tls_error", "cannot set up TLS to the target");
        return TG_E_PROTO;
    }
    SSL *ssl = c->ex->be_ssl;
    enum tls_want want = TLS_WANT_NONE;
    enum tg_status st = tls_handshake(ssl, &want);
    if (st == TG_E_AGAIN) {
        watch(c, want == TLS_WANT_WRITE ? EV_WRITE : EV_READ);
        return TG_E_AGAIN;
    }
    ev_io_stop(c->w->loop, &c->ex->be.io);
    c->ex->be.events = 0;
    if (st == TG_OK) {
        log_debug("event=backend_tls_up " CONN_FMT " target=%s version=%s resumed=%s", CONN_ARGS(c),
                  c->ex->group->targets[c->ex->target].address, SSL_get_version(ssl),
                  SSL_session_reused(ssl) == 1 ? "true" : "false");
        return TG_OK;
    }
    char detail[256];
    const char *reason = tls_client_failure(ssl, detail, sizeof(detail));
    (void)betls_connect_failed(c, reason, detail);
    return TG_E_PROTO;
}

ssize_t betls_read(struct session *c, void *dst, size_t len)
{
    enum tls_want want;
    size_t n = 0;
    enum tg_status st = tls_read(c->ex->be_ssl, dst, len, &n, &want);
    if (st == TG_OK)
        return (ssize_t)n;
    if (st == TG_E_CLOSED || st == TG_E_RESET)
        return 0;
    errno = st == TG_E_AGAIN ? EAGAIN : EPROTO;
    return -1;
}

ssize_t betls_write(struct session *c, const void *src, size_t len)
{
    enum tls_want want;
    size_t n = 0;
    enum tg_status st = tls_write(c->ex->be_ssl, src, len, &n, &want);
    if (st == TG_OK)
        return (ssize_t)n;
    errno = st == TG_E_AGAIN ? EAGAIN : st == TG_E_CLOSED ? EPIPE : EPROTO;
    return -1;
}

void betls_ssl_free(SSL *ssl)
{
    if (ssl == NULL)
        return;
    /* close_notify when it goes out at once; never wait for it. */
    if (SSL_is_init_finished(ssl)) {
        enum tls_want want;
        enum tg_status st = tls_shutdown(ssl, &want);
        (void)st;
    }
    SSL_set_quiet_shutdown(ssl, 1);
    SSL_free(ssl);
}

void betls_close(struct session *c)
{
    betls_ssl_free(c->ex->be_ssl);
    c->ex->be_ssl = NULL;
}

bool betls_idle_ok(SSL *ssl)
{
    uint8_t byte;
    enum tls_want want;
    size_t n = 0;
    /* What an idle connection may get is a record without data, such as a
     * TLS 1.3 NewSessionTicket (RFC 8446 §4.6.1); data unasked for, an
     * alert or the end all end it. */
    return tls_read(ssl, &byte, 1, &n, &want) == TG_E_AGAIN;
}
