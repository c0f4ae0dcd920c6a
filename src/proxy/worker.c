#include "proxy/worker.h"
#include "proxy/history.h"
#include "proxy/bpool.h"
#include "proxy/exchange.h"
#include "proxy/ocspc.h"
#include "proxy/session.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define ACCEPT_BATCH 64

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents);

static void stop_accepting(struct worker *w)
{
    for (size_t i = 0; i < w->n_ls; i++)
        ev_io_stop(w->loop, &w->ls[i].accept_w);
}

static void start_accepting(struct worker *w)
{
    for (size_t i = 0; i < w->n_ls; i++)
        ev_io_start(w->loop, &w->ls[i].accept_w);
}

/* Out of file descriptors: pause accepting briefly instead of spinning on
 * a listening socket that stays readable. */
static void accept_pause_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = t->data;
    if (!w->is_draining)
        start_accepting(w);
}

/* reason is max_connections or max_connections_per_client. */
static void refuse(struct wlistener *l, int fd, const struct net_addr *peer, const char *reason,
                   unsigned limit)
{
    char addr[64];
    net_addr_format(peer, addr, sizeof(addr));
    log_warn("event=conn_refused listener=%s client=%s reason=%s limit=%u", l->cfg->name, addr,
             reason, limit);
    shm_add(&l->stats->conns_refused, 1);
    close(fd);
}

/* Open connections over every listener of this generation, all workers. */
static int64_t total_active(const struct worker *w)
{
    int64_t n = 0;
    for (size_t i = 0; i < w->n_ls; i++)
        n += atomic_load_explicit(&w->ls[i].stats->conns_active, memory_order_relaxed);
    return n;
}

/* ---- max_connections_per_client ---- */

/*
 * Open connections per (listener, client address) in this worker. The
 * table is rebuilt from the worker's connection list rather than
 * decremented as connections close, so after a close it can be too high,
 * never too low. It never refuses on a count that may be stale: when a
 * connection closed since the last rebuild (the worker has fewer
 * connections than the table has seen accepted), it rebuilds first, or,
 * if it rebuilt less than CLIENTS_RECHECK_S ago, counts that one client's
 * connections on the list. Either walks the list once, and only for a
 * client already at its limit, after some connection closed.
 */
#define CLIENTS_REBUILD_S 1.0
#define CLIENTS_RECHECK_S 0.001

struct client_slot {
    uint8_t addr[16];  /* IPv6, or IPv4 as ::ffff:a.b.c.d */
    uint32_t listener; /* index into worker.ls plus one; 0: a free slot */
    uint32_t count;
};

/* A worker is one process: its table is the process's. */
static struct {
    struct client_slot *slots; /* owned */
    size_t cap;                /* a power of two; 0 before the first build */
    size_t used;               /* kept under cap / 2 */
    ev_tstamp built_at;
    size_t expected; /* the worker's n_conns if none closed since the rebuild */
    uint64_t seed;   /* so that colliding addresses cannot be chosen in advance */
} clients;

/* The connection being accepted, counted once session_new succeeds. */
struct client_ref {
    uint8_t addr[16];
    uint32_t listener; /* 0: the listener has no per-client limit */
};

static void client_ref_init(struct client_ref *r, const struct worker *w, const struct wlistener *l,
                            const struct net_addr *a)
{
    memset(r, 0, sizeof(*r));
    r->listener = l->cfg->max_connections_per_client > 0 ? (uint32_t)(l - w->ls) + 1 : 0;
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        r->addr[10] = r->addr[11] = 0xff;
        memcpy(r->addr + 12, &in->sin_addr, 4);
    } else if (a->ss.ss_family == AF_INET6) {
        memcpy(r->addr, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, 16);
    }
}

/* The key's slot, or the free slot where it goes. */
static struct client_slot *client_slot(const struct client_ref *r)
{
    uint64_t h = 14695981039346656037ull ^ clients.seed; /* FNV-1a */
    for (size_t i = 0; i < sizeof(r->addr); i++)
        h = (h ^ r->addr[i]) * 1099511628211ull;
    h = (h ^ r->listener) * 1099511628211ull;
    size_t mask = clients.cap - 1;
    for (size_t i = (size_t)(h ^ (h >> 32)) & mask;; i = (i + 1) & mask) {
        struct client_slot *s = &clients.slots[i];
        if (s->listener == 0 ||
            (s->listener == r->listener && memcmp(s->addr, r->addr, sizeof(r->addr)) == 0))
            return s;
    }
}

/* Counts one more connection of r's client. A table too full for another
 * client (a rebuild that ran out of memory) leaves it uncounted. */
static void client_count(const struct client_ref *r)
{
    if (clients.cap == 0)
        return;
    struct client_slot *s = client_slot(r);
    if (s->listener == 0) {
        if (2 * (clients.used + 1) >= clients.cap)
            return;
        memcpy(s->addr, r->addr, sizeof(r->addr));
        s->listener = r->listener;
        clients.used++;
    }
    s->count++;
}

/* Recounts from the worker's list. False when out of memory. */
static bool clients_rebuild(struct worker *w)
{
    size_t cap = 64;
    while (cap < 4 * (w->n_conns + 16))
        cap *= 2;
    if (cap > clients.cap || 4 * cap < clients.cap) {
        struct client_slot *slots = calloc(cap, sizeof(*slots));
        if (slots == NULL)
            return false;
        free(clients.slots);
        clients.slots = slots;
        clients.cap = cap;
    } else {
        memset(clients.slots, 0, clients.cap * sizeof(*clients.slots));
    }
    if (clients.seed == 0)
        clients.seed = ((uint64_t)(uintptr_t)clients.slots << 16) ^ (uint64_t)getpid() ^
                       (uint64_t)(ev_time() * 1e6);
    clients.used = 0;
    clients.built_at = ev_now(w->loop);
    clients.expected = w->n_conns;
    for (const struct session *c = w->conns; c != NULL; c = c->next) {
        struct client_ref r;
        client_ref_init(&r, w, c->l, &c->peer);
        if (r.listener != 0)
            client_count(&r);
    }
    return true;
}

/* r's client's connections on the worker's list: exact, and O(n). */
static uint32_t client_scan(const struct worker *w, const struct client_ref *r)
{
    uint32_t n = 0;
    for (const struct session *c = w->conns; c != NULL; c = c->next) {
        struct client_ref cr;
        client_ref_init(&cr, w, c->l, &c->peer);
        n += cr.listener == r->listener && memcmp(cr.addr, r->addr, sizeof(r->addr)) == 0;
    }
    return n;
}

/* True when r's client already has its listener's max_connections_per_client
 * open in this worker. Out of memory refuses no one. */
static bool client_at_limit(struct worker *w, const struct wlistener *l, const struct client_ref *r)
{
    if (r->listener == 0)
        return false;
    ev_tstamp now = ev_now(w->loop);
    if (clients.cap == 0 || now - clients.built_at >= CLIENTS_REBUILD_S ||
        2 * (clients.used + 1) >= clients.cap) {
        if (!clients_rebuild(w))
            return false;
    }
    unsigned limit = l->cfg->max_connections_per_client;
    if (client_slot(r)->count < limit)
        return false;
    if (w->n_conns == clients.expected)
        return true; /* nothing closed since the rebuild: the count is exact */
    if (now - clients.built_at >= CLIENTS_RECHECK_S)
        return clients_rebuild(w) && client_slot(r)->count >= limit;
    return client_scan(w, r) >= limit;
}

/* A descriptor held in reserve. Out of descriptors, it is given up for a
 * moment to accept and close the connections waiting in the backlog, so
 * that their clients are refused at once instead of hanging there. */
static int spare_fd = -1;

/* Accepts and closes up to ACCEPT_BATCH waiting connections with the spare
 * descriptor's slot; returns how many. */
static int shed_backlog(struct wlistener *l)
{
    int n = 0;
    if (spare_fd < 0)
        return 0;
    close(spare_fd);
    while (n < ACCEPT_BATCH) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        close(fd);
        n++;
    }
    shm_add(&l->stats->conns_refused, (uint64_t)n);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return n;
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct wlistener *l = io->data;
    struct worker *w = l->w;
    if (spare_fd < 0)
        spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct net_addr peer;
        peer.len = sizeof(peer.ss);
        int fd =
            accept4(l->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                int err = errno;
                int shed = shed_backlog(l);
                log_err("event=accept_failed listener=%s error=\"%s\" refused=%d "
                        "action=pause_100ms",
                        l->cfg->name, strerror(err), shed);
                stop_accepting(w);
                ev_timer_set(&w->accept_pause, 0.1, 0.);
                ev_timer_start(w->loop, &w->accept_pause);
            }
            return; /* EAGAIN, or a connection that died in the backlog */
        }
        int64_t active = atomic_load_explicit(&l->stats->conns_active, memory_order_relaxed);
        if (active >= (int64_t)l->cfg->max_connections) {
            refuse(l, fd, &peer, "max_connections", l->cfg->max_connections);
            continue;
        }
        if (w->cfg->max_connections > 0 && total_active(w) >= (int64_t)w->cfg->max_connections) {
            refuse(l, fd, &peer, "max_connections_total", w->cfg->max_connections);
            continue;
        }
        struct client_ref client;
        client_ref_init(&client, w, l, &peer);
        if (client_at_limit(w, l, &client)) {
            refuse(l, fd, &peer, "max_connections_per_client", l->cfg->max_connections_per_client);
            continue;
        }
        /* TCP_NODELAY comes from the listening socket (net_listen). */
        struct session *c = session_new(w, l, fd, &peer);
        if (c == NULL) {
            log_err("event=accept_failed listener=%s error=\"out of memory\"", l->cfg->name);
            close(fd);
            continue;
        }
        /* Every accepted connection, so that a close shows as a shortfall. */
        clients.expected++;
        if (client.listener != 0)
            client_count(&client);
        session_run(c);
    }
}

static void drain_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = t->data;
    log_warn("event=drain_timeout open_connections=%zu action=close", w->n_conns);
    ev_break(loop, EVBREAK_ALL);
}

static void drain(struct worker *w, const char *why)
{
    if (w->is_draining)
        return;
    w->is_draining = true;
    stop_accepting(w);
    ev_timer_stop(w->loop, &w->accept_pause);
    for (size_t i = 0; i < w->n_ls; i++) {
        close(w->ls[i].fd);
        w->ls[i].fd = -1;
    }
    log_info("event=worker_draining reason=%s open_connections=%zu", why, w->n_conns);
    struct session *next;
    for (struct session *c = w->conns; c != NULL; c = next) {
        next = c->next;
        c->ops->on_drain(c);
    }
    if (w->n_conns == 0) {
        ev_break(w->loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&w->drain_timer, (ev_tstamp)w->cfg->drain_timeout_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &w->drain_timer);
}

static void trust_tick_cb(struct ev_loop *loop, ev_timer *t, int revents);

/* SIGUSR2 from the master: the trust files changed (a fleet revision
 * installed new CRLs or allow files); look at them now rather than at the
 * next crl_check_interval. */
static void trust_check_now(struct worker *w)
{
    for (size_t i = 0; i < w->n_ls; i++)
        for (size_t k = 0; k < w->ls[i].n_sites; k++) {
            w->ls[i].sites[k].next_trust_check = 0;
            w->ls[i].sites[k].next_allow_check = 0;
            w->ls[i].sites[k].next_next_check = 0;
        }
    trust_tick_cb(w->loop, &w->trust_tick, 0);
}

static void signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct worker *w = s->data;
    switch (s->signum) {
    case SIGTERM:
    case SIGQUIT:
        drain(w, s->signum == SIGTERM ? "SIGTERM" : "SIGQUIT");
        break;
    case SIGUSR1:
        log_access_reopen();
        break;
    case SIGUSR2:
        trust_check_now(w);
        break;
    default:
        break; /* SIGHUP is the master's business */
    }
}

/* A site's client CA files changed: verify new handshakes under the new
 * trust, and judge the established connections again. */
static void trust_poll(struct worker *w, struct wlistener *l, size_t site,
                       const struct tls_trust *current)
{
    const struct cfg_client_ca *ca = l->cfg->tls.sites[site].client_ca;
    struct tls_trust *fresh = NULL;
    char err[256];
    enum tg_status st =
        tls_trust_watch_poll(&l->sites[site].watch, w->cfg, ca, current, &fresh, err, sizeof(err));
    if (st == TG_E_AGAIN)
        return;
    if (st != TG_OK) {
        /* The master logs the refusal once (event=trust_reload_failed). */
        log_debug("event=trust_reload_failed listener=%s client_ca=%s", l->cfg->name, ca->name);
        return;
    }
    if (tls_server_set_trust(l->tls, site, fresh) != TG_OK) {
        log_err("event=trust_apply_failed listener=%s client_ca=%s error=\"out of memory\"",
                l->cfg->name, ca->name);
        tls_trust_unref(fresh);
        return;
    }
    const struct tls_trust_info *info = tls_trust_info(fresh);
    log_info("event=trust_applied listener=%s client_ca=%s crl_number=%s", l->cfg->name, ca->name,
             info->crl_number[0] ? info->crl_number : "-");
    session_recheck_trust(w, l, site);
    tls_trust_unref(fresh);
}

/* A site's allow file changed: new handshakes and resumptions are judged
 * under the new list, and so are the established connections of every
 * site that uses it. */
static void allow_poll(struct worker *w, struct wlistener *l, size_t site)
{
    char err[512];
    enum tg_status st = tls_server_allow_poll(l->tls, site, err, sizeof(err));
    if (st == TG_E_AGAIN)
        return;
    if (st != TG_OK) {
        log_debug("event=allow_reload_failed listener=%s", l->cfg->name);
        return;
    }
    log_info("event=allow_applied listener=%s allow_file=%s", l->cfg->name,
             l->cfg->tls.sites[site].allow_file);
    for (size_t i = 0; i < l->n_sites; i++) {
        size_t owner;
        if (tls_server_allow_owner(l->tls, i, &owner) && owner == site)
            session_recheck_trust(w, l, i);
    }
}

/* The next trust of every site with client_ca_next (report-only). One
 * that does not load is logged and judges nothing; false when out of
 * memory. */
static bool load_next_trusts(struct worker *w)
{
    bool any = false;
    for (size_t i = 0; i < w->n_ls; i++) {
        struct wlistener *l = &w->ls[i];
        for (size_t k = 0; k < l->n_sites; k++) {
            const struct cfg_client_ca *ca = l->cfg->tls.sites[k].client_ca_next;
            if (ca == NULL || l->cfg->tls.sites[k].mode != CFG_TLS_MUTUAL)
                continue;
            struct diag d;
            diag_init(&d);
            if (tls_trust_load(w->cfg, ca, &l->sites[k].next, &d) != TG_OK)
                log_warn("event=trust_next_unavailable listener=%s client_ca_next=%s "
                         "effect=\"accepted clients are not judged under it\"",
                         l->cfg->name, ca->name);
            diag_fini(&d);
            any = true;
        }
    }
    if (any && (w->next_seen = calloc(WORKER_NEXT_SEEN, sizeof(*w->next_seen))) == NULL)
        return false;
    return true;
}

/* client_ca_next's files changed: later handshakes are judged under the
 * new next trust (the connections already judged are not). */
static void next_poll(struct worker *w, struct wlistener *l, size_t site)
{
    struct wsite *ws = &l->sites[site];
    const struct cfg_client_ca *ca = l->cfg->tls.sites[site].client_ca_next;
    struct tls_trust *fresh = NULL;
    char err[256];
    if (tls_trust_watch_poll(&ws->next_watch, w->cfg, ca, ws->next, &fresh, err, sizeof(err)) !=
        TG_OK)
        return;
    tls_trust_unref(ws->next);
    ws->next = fresh;
    log_info("event=trust_next_applied listener=%s client_ca_next=%s", l->cfg->name, ca->name);
}

static void trust_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = t->data;
    ev_tstamp now = ev_now(loop);
    int64_t unix_now = (int64_t)time(NULL);
    for (size_t i = 0; i < w->n_ls; i++) {
        struct wlistener *l = &w->ls[i];
        for (size_t k = 0; k < l->n_sites; k++) {
            struct wsite *ws = &l->sites[k];
            const struct cfg_site *cs = &l->cfg->tls.sites[k];
            struct tls_trust *cur = tls_server_trust(l->tls, k);
            uint64_t every = cur != NULL ? cs->client_ca->check_interval_ms : 0;
            if (every != 0 && now >= ws->next_trust_check) {
                ws->next_trust_check = now + (ev_tstamp)every / 1000.0;
                trust_poll(w, l, k, cur);
            }
            if (every != 0 && cs->allow_file != NULL && cs->allow_site == cs &&
                now >= ws->next_allow_check) {
                ws->next_allow_check = now + (ev_tstamp)every / 1000.0;
                allow_poll(w, l, k);
            }
            /* Also when it did not load: a fixed file is picked up. */
            uint64_t next_every = cs->client_ca_next != NULL && cs->mode == CFG_TLS_MUTUAL
                                      ? cs->client_ca_next->check_interval_ms
                                      : 0;
            if (next_every != 0 && now >= ws->next_next_check) {
                ws->next_next_check = now + (ev_tstamp)next_every / 1000.0;
                next_poll(w, l, k);
            }
            /* A CRL past its nextUpdate (with no fresher one of its issuer)
             * refuses the clients it covers from then on, the connected
             * ones too. */
            cur = tls_server_trust(l->tls, k);
            if (cur == NULL || ws->stale_judged == tls_trust_serial(cur))
                continue;
            int64_t until = tls_trust_info(cur)->crl_next_update;
            if (until != 0 && unix_now > until) {
                ws->stale_judged = tls_trust_serial(cur);
                session_recheck_trust(w, l, k);
            }
        }
    }
    if (w->n_cut_pending > 0)
        session_cut_overdue(w, now);
    if (w->next_expiry != 0 && unix_now > w->next_expiry)
        session_expire_due(w, unix_now);
}

static void watch_signal(struct worker *w, ev_signal *s, int signum)
{
    ev_signal_init(s, signal_cb, signum);
    s->data = w;
    ev_signal_start(w->loop, s);
}

int proxy_worker_main(const struct proxy_worker_args *a)
{
    struct worker w;
    memset(&w, 0, sizeof(w));
    /* The worker must not outlive its master. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    signal(SIGPIPE, SIG_IGN);

    w.loop = ev_default_loop(EVFLAG_AUTO);
    w.cfg = a->cfg;
    w.n_ls = a->cfg->n_listeners;
    w.ls = calloc(w.n_ls ? w.n_ls : 1, sizeof(*w.ls));
    if (w.loop == NULL || w.ls == NULL) {
        log_err("event=worker_start_failed error=\"out of memory\"");
        return 1;
    }
    w.bpool = bpool_new(&w);
    if (lb_state_new(a->cfg, lb_shared_global(), &w.lb) != TG_OK || w.bpool == NULL) {
        log_err("event=worker_start_failed error=\"out of memory\"");
        return 1;
    }
    shm_set_worker_slot(a->slot);
    for (size_t i = 0; i < w.n_ls; i++) {
        struct wlistener *l = &w.ls[i];
        l->w = &w;
        l->cfg = a->listeners[i].cfg;
        l->fd = a->listeners[i].fd;
        l->tls = a->listeners[i].tls;
        l->stats = &a->stats->listeners[i];
        l->n_sites = l->tls != NULL ? tls_server_n_sites(l->tls) : 0;
        l->sites = calloc(l->n_sites ? l->n_sites : 1, sizeof(*l->sites));
        if (l->sites == NULL) {
            log_err("event=worker_start_failed error=\"out of memory\"");
            return 1;
        }
        ev_io_init(&l->accept_w, accept_cb, l->fd, EV_READ);
        l->accept_w.data = l;
    }
    /* OCSP for client certificates: one cache for the worker, consulted by
     * every listener whose client CA has ocsp on. */
    for (size_t i = 0; i < w.n_ls; i++) {
        struct wlistener *l = &w.ls[i];
        bool wants = false;
        for (size_t k = 0; k < l->n_sites; k++) {
            const struct cfg_site *cs = &l->cfg->tls.sites[k];
            wants =
                wants || (cs->mode == CFG_TLS_MUTUAL && cs->client_ca->ocsp != CFG_CLIENT_OCSP_OFF);
        }
        if (!wants)
            continue;
        if (w.ocspc == NULL && (w.ocspc = ocspc_new(&w)) == NULL) {
            log_err("event=worker_start_failed error=\"out of memory\"");
            return 1;
        }
        tls_server_set_ocsp_cache(l->tls, ocspc_cache(w.ocspc));
    }
    w.history = history_new(a->cfg);
    if (!load_next_trusts(&w)) {
        log_err("event=worker_start_failed error=\"out of memory\"");
        return 1;
    }
    ev_prepare_init(&w.run_deferred, session_run_deferred);
    w.run_deferred.data = &w;
    ev_prepare_start(w.loop, &w.run_deferred);
    ev_unref(w.loop); /* it alone does not keep the loop running */
    ev_init(&w.drain_timer, drain_timeout_cb);
    w.drain_timer.data = &w;
    ev_init(&w.accept_pause, accept_pause_cb);
    w.accept_pause.data = &w;
    bool is_mutual = false;
    for (size_t i = 0; i < w.n_ls; i++)
        for (size_t k = 0; k < w.ls[i].n_sites; k++)
            is_mutual = is_mutual || tls_server_trust(w.ls[i].tls, k) != NULL;
    ev_timer_init(&w.trust_tick, trust_tick_cb, 1., 1.);
    w.trust_tick.data = &w;
    if (is_mutual)
        ev_timer_start(w.loop, &w.trust_tick);
    watch_signal(&w, &w.sig_term, SIGTERM);
    watch_signal(&w, &w.sig_quit, SIGQUIT);
    watch_signal(&w, &w.sig_usr1, SIGUSR1);
    watch_signal(&w, &w.sig_hup, SIGHUP);
    watch_signal(&w, &w.sig_usr2, SIGUSR2);

    start_accepting(&w);
    log_info("event=worker_started generation=%u slot=%u listeners=%zu", a->generation, a->slot,
             w.n_ls);
    ev_run(w.loop, 0);
    lb_state_drop_conns(w.lb);
    ocspc_free(w.ocspc);
    w.ocspc = NULL;
    history_free(w.history);
    w.history = NULL;
    for (size_t i = 0; i < w.n_ls; i++)
        for (size_t k = 0; k < w.ls[i].n_sites; k++)
            tls_trust_unref(w.ls[i].sites[k].next);
    free(w.next_seen);
    w.next_seen = NULL;
    log_info("event=worker_exit generation=%u slot=%u open_connections=%zu", a->generation, a->slot,
             w.n_conns);
    return 0;
}

#define POOL_MAX 4096

bool worker_buf_get(struct worker *w, struct buf *b)
{
    if (buf_has_mem(b))
        return true;
    uint8_t *mem = w->n_pool > 0 ? w->pool[--w->n_pool] : malloc(WORKER_BUF_SIZE);
    if (mem == NULL)
        return false;
    buf_attach(b, mem, WORKER_BUF_SIZE);
    return true;
}

bool worker_buf_get_room(struct worker *w, struct buf *b, size_t need)
{
    if (need <= WORKER_BUF_SIZE)
        return worker_buf_get(w, b);
    if (buf_has_mem(b) && b->cap - buf_len(b) >= need)
        return true;
    if (buf_has_mem(b) && !buf_is_empty(b))
        return false;
    worker_buf_put(w, b);
    uint8_t *mem = malloc(need);
    if (mem == NULL)
        return false;
    buf_attach(b, mem, need);
    return true;
}

void worker_buf_shrink(struct worker *w, struct buf *b)
{
    if (b->cap > WORKER_BUF_SIZE && buf_is_empty(b))
        worker_buf_put(w, b);
}

void worker_buf_put(struct worker *w, struct buf *b)
{
    if (!buf_has_mem(b) || !buf_is_empty(b))
        return;
    bool pooled = b->cap == WORKER_BUF_SIZE;
    uint8_t *mem = buf_detach(b);
    if (!pooled) {
        free(mem); /* a one-off larger block (worker_buf_get_room) */
        return;
    }
    if (w->n_pool == w->pool_cap && w->pool_cap < POOL_MAX) {
        size_t cap = w->pool_cap ? w->pool_cap * 2 : 64;
        uint8_t **pool = realloc(w->pool, cap * sizeof(*pool));
        if (pool != NULL) {
            w->pool = pool;
            w->pool_cap = cap;
        }
    }
    if (w->n_pool < w->pool_cap)
        w->pool[w->n_pool++] = mem;
    else
        free(mem);
}
