#include "master/master.h"

#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/log.h"
#include "core/shm.h"
#include "fleet/fleet.h"
#include "health/health.h"
#include "lb/lb.h"
#include "master/internal.h"
#include "proxy/history.h"
#include "proxy/proxy.h"
#include "tls/tls.h"

#define RESPAWN_BACKOFF 1.0
/* Every listener's client speaks first: accept() gets a connection with its
 * first bytes (one readiness wait fewer), a silent one after about this many
 * seconds, and it then meets handshake_timeout as before. */
#define LISTEN_DEFER_ACCEPT_S 1
/* Seconds a fleet's rotation may be late (the leader rotates on whole
 * seconds, the agents look every quarter second, etcd may elect). */
#define FLEET_KEYS_SLACK 5.0

/* A listening socket, shared by every generation that listens there. */
struct lsock {
    struct net_addr addr;
    int fd;
    unsigned refs; /* generations using it */
    struct lsock *next;
};

/* One config generation and its workers. Owns the config, the TLS servers
 * and the shared counters; borrows the listening sockets (refcounted). */
struct gen {
    unsigned id;
    struct config *cfg;
    struct proxy_listener *pls; /* cfg->n_listeners */
    struct gen_trust *trusts;   /* cfg->n_listeners */
    struct lsock **socks;       /* cfg->n_listeners, borrowed references */
    struct shm_stats *stats;
    struct ocsp_shm *ocsp;         /* one slot per certificates: entry */
    struct ocsp_fetch *ocsp_fetch; /* owned; NULL once the generation retires */
    pid_t *pids;                   /* one per slot; 0 when not running */
    ev_tstamp *started;
    unsigned n_workers;
    unsigned n_alive;
    bool is_retiring;
    double loaded_at; /* wall clock */
    struct gen *next;
};

struct master {
    struct ev_loop *loop;
    const char *config_path;
    struct ticket_shm *tickets; /* owned; shared with every worker */
    struct ticket_set keys;     /* what tickets holds; the master's copy */
    bool is_key_file;           /* keys come from ticket_keys_file: no rotation */
    bool is_fleet_keys;         /* keys come from the fleet: no rotation here */
    ev_tstamp fleet_keys_at;    /* when they last came */
    struct fleet_node *fleet;   /* owned; NULL unless a fleet node */
    uint64_t rotations;
    ev_timer rotate;
    ev_timer trust_tick; /* client CA files and CRL dates, every second */
    struct gen *gens;    /* gens[0] is current unless is_stopping */
    struct lsock *socks;
    unsigned next_gen;
    bool is_stopping;
    struct health *health; /* owned; NULL in workers */
    struct admin *admin;   /* owned; NULL in workers */
    ev_signal sig_hup, sig_term, sig_int, sig_quit, sig_usr1;
    ev_child child;
    ev_timer respawn;
};

static void gen_free(struct master *m, struct gen *g)
{
    if (g == NULL)
        return;
    if (g->id != 0)
        lb_shared_release(lb_shared_global(), g->cfg);
    for (size_t i = 0; g->cfg != NULL && i < g->cfg->n_listeners; i++) {
        if (g->pls != NULL)
            tls_server_free(g->pls[i].tls);
        struct lsock *s = g->socks ? g->socks[i] : NULL;
        if (s != NULL && --s->refs == 0) {
            struct lsock **pp = &m->socks;
            while (*pp != s)
                pp = &(*pp)->next;
            *pp = s->next;
            if (s->fd >= 0)
                close(s->fd);
            free(s);
        }
    }
    ocsp_fetch_free(g->ocsp_fetch);
    ocsp_shm_free(g->ocsp);
    shm_stats_free(g->stats);
    free(g->trusts);
    free(g->pls);
    free(g->socks);
    free(g->pids);
    free(g->started);
    config_free(g->cfg);
    free(g);
}

static struct lsock *lsock_get(struct master *m, const struct net_addr *a, struct diag *d,
                               const struct config *cfg, const struct cfg_listener *l)
{
    for (struct lsock *s = m->socks; s != NULL; s = s->next) {
        if (net_addr_equal(&s->addr, a)) {
            s->refs++;
            return s;
        }
    }
    struct lsock *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    if (net_listen(a, 4096, &s->fd) != TG_OK) {
        diag_add(d, DIAG_ERROR, cfg->path, l->listen_pos.line, l->listen_pos.col, "listen",
                 "cannot listen on %s: %s", l->listen, strerror(errno));
        free(s);
        return NULL;
    }
    net_set_defer_accept(s->fd, LISTEN_DEFER_ACCEPT_S);
    s->addr = *a;
    s->refs = 1;
    s->next = m->socks;
    m->socks = s;
    return s;
}

/* Loads and checks a config, then builds everything its workers need.
 * Returns NULL with every problem in d. */
static struct gen *gen_new(struct master *m, const char *path, struct diag *d)
{
    struct config *cfg = NULL;
    enum tg_status loaded =
        m->fleet != NULL ? fleet_node_load(m->fleet, &cfg, d) : config_load(path, &cfg, d);
    if (loaded != TG_OK)
        return NULL;
    tls_config_check(cfg, d);
    if (diag_has_errors(d)) {
        config_free(cfg);
        return NULL;
    }
    struct gen *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        config_free(cfg);
        return NULL;
    }
    g->cfg = cfg;
    g->n_workers = config_worker_count(cfg);
    g->pls = calloc(cfg->n_listeners + 1, sizeof(*g->pls));
    size_t n_sites = 1;
    for (size_t i = 0; i < cfg->n_listeners; i++)
        n_sites += cfg->listeners[i].tls.n_sites;
    g->trusts = calloc(n_sites, sizeof(*g->trusts));
    g->socks = calloc(cfg->n_listeners + 1, sizeof(*g->socks));
    g->pids = calloc(g->n_workers, sizeof(*g->pids));
    g->started = calloc(g->n_workers, sizeof(*g->started));
    g->stats = shm_stats_new(cfg->n_listeners);
    g->ocsp = ocsp_shm_new(cfg->n_certificates);
    if (g->pls == NULL || g->trusts == NULL || g->socks == NULL || g->pids == NULL ||
        g->started == NULL || g->stats == NULL || g->ocsp == NULL) {
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        g->pls[i].cfg = l;
        if (l->has_tls) {
            /* tls_config_check already reported the warnings once. */
            struct diag again;
            diag_init(&again);
            enum tg_status st = tls_server_new(cfg, l, m->tickets, g->ocsp, &g->pls[i].tls, &again);
            diag_append_errors(d, &again);
            diag_fini(&again);
            if (st != TG_OK)
                goto fail;
        }
        g->socks[i] = lsock_get(m, &l->addr, d, cfg, l);
        if (g->socks[i] == NULL)
            goto fail;
        g->pls[i].fd = g->socks[i]->fd;
    }
    (void)lb_shared_register(lb_shared_global(), cfg);
    g->id = ++m->next_gen;
    g->loaded_at = ev_time();
    return g;
fail:
    gen_free(m, g);
    return NULL;
}

static void log_diag(const struct diag *d)
{
    char line[2048];
    for (size_t i = 0; i < d->n; i++) {
        diag_format(d, i, line, sizeof(line));
        if (d->v[i].level == DIAG_ERROR)
            log_err("event=config_error %s", line);
        else
            log_warn("event=config_warning %s", line);
    }
}

/* In a new worker: forget the master's watchers, keep only this
 * generation's sockets, and run the worker loop. Never returns. */
static void become_worker(struct master *m, struct gen *g, unsigned slot)
{
    ev_signal_stop(m->loop, &m->sig_hup);
    ev_signal_stop(m->loop, &m->sig_term);
    ev_signal_stop(m->loop, &m->sig_int);
    ev_signal_stop(m->loop, &m->sig_quit);
    ev_signal_stop(m->loop, &m->sig_usr1);
    health_free(m->health);
    m->health = NULL;
    ev_child_stop(m->loop, &m->child);
    ev_timer_stop(m->loop, &m->respawn);
    ev_timer_stop(m->loop, &m->rotate);
    ticket_set_wipe(&m->keys); /* workers read the shared set only */
    fleet_node_forget(m->fleet);
    for (struct gen *o = m->gens; o != NULL; o = o->next)
        ocsp_fetch_forget(o->ocsp_fetch);
    admin_free(m->admin);
    m->admin = NULL;
    ev_loop_fork(m->loop);
    for (struct lsock *s = m->socks; s != NULL; s = s->next) {
        bool mine = false;
        for (size_t i = 0; i < g->cfg->n_listeners; i++)
            mine = mine || g->socks[i] == s;
        if (!mine && s->fd >= 0)
            close(s->fd);
    }
    history_prepare(g->cfg);
    if (admin_drop_privileges(g->cfg->user) != TG_OK)
        _exit(1);
    struct proxy_worker_args a = {
        .cfg = g->cfg,
        .listeners = g->pls,
        .stats = g->stats,
        .generation = g->id,
        .slot = slot,
    };
    _exit(proxy_worker_main(&a));
}

static bool spawn(struct master *m, struct gen *g, unsigned slot)
{
    pid_t pid = fork();
    if (pid < 0) {
        log_err("event=fork_failed generation=%u slot=%u error=\"%s\"", g->id, slot,
                strerror(errno));
        return false;
    }
    if (pid == 0)
        become_worker(m, g, slot);
    g->pids[slot] = pid;
    g->started[slot] = ev_now(m->loop);
    g->n_alive++;
    return true;
}

/* A new key encrypts from now on; the two before it still decrypt. */
static void rotate_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct master *m = t->data;
    struct ticket_key fresh;
    /* The fleet's leader rotates its keys every interval: a node whose keys
     * have not come for two intervals and the slack (etcd or the leader out
     * of reach) rotates on its own again, keeping the fleet's last keys to
     * decrypt. */
    if (m->is_fleet_keys && ev_now(loop) - m->fleet_keys_at < 2 * t->repeat + FLEET_KEYS_SLACK)
        return;
    if (m->is_fleet_keys) {
        log_warn("event=fleet_ticket_keys_stale since_s=%.0f action=rotate_locally",
                 ev_now(loop) - m->fleet_keys_at);
        m->is_fleet_keys = false;
    }
    if (m->is_key_file || tls_ticket_key_generate(&fresh) != TG_OK) {
        log_err("event=ticket_key_rotation_failed action=keep_keys");
        return;
    }
    ticket_set_rotate(&m->keys, &fresh);
    explicit_bzero(&fresh, sizeof(fresh));
    ticket_shm_publish(m->tickets, &m->keys);
    m->rotations++;
    log_info("event=ticket_key_rotated rotation=%llu keys=%zu", (unsigned long long)m->rotations,
             m->keys.n);
}

/* Publishes the keys a newly loaded config asks for: those of its
 * ticket_keys_file, or generated ones rotated every ticket_key_rotation.
 * Generated keys survive a reload (sessions made before it still resume);
 * leaving file mode starts over with a fresh key. */
static void apply_ticket_keys(struct master *m, const struct config *cfg)
{
    if (cfg->ticket_keys != NULL && !m->is_fleet_keys) {
        ev_timer_stop(m->loop, &m->rotate);
        ticket_set_wipe(&m->keys);
        m->keys = *cfg->ticket_keys;
        m->is_key_file = true;
        ticket_shm_publish(m->tickets, &m->keys);
        log_info("event=ticket_keys source=file keys=%zu", m->keys.n);
        return;
    }
    if (!m->is_fleet_keys && (m->is_key_file || m->keys.n == 0)) {
        struct ticket_key fresh;
        ticket_set_wipe(&m->keys);
        m->is_key_file = false;
        if (tls_ticket_key_generate(&fresh) == TG_OK)
            ticket_set_rotate(&m->keys, &fresh);
        explicit_bzero(&fresh, sizeof(fresh));
        ticket_shm_publish(m->tickets, &m->keys);
    }
    /* A reload that keeps the interval keeps the countdown: reloads more
     * frequent than the interval must not postpone rotation for ever. */
    double every = (double)cfg->ticket_key_rotation_ms / 1000.0;
    if (!ev_is_active(&m->rotate) || m->rotate.repeat != every) {
        ev_timer_stop(m->loop, &m->rotate);
        ev_timer_set(&m->rotate, every, every);
        ev_timer_start(m->loop, &m->rotate);
    }
    log_info("event=ticket_keys source=%s keys=%zu rotation_ms=%llu",
             m->is_fleet_keys ? "fleet" : "generated", m->keys.n,
             (unsigned long long)cfg->ticket_key_rotation_ms);
}

/* Looks at the current generation's client CA files (master_trust_tick). */
static void trust_tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct master *m = t->data;
    struct gen *g = m->gens;
    if (g != NULL && !m->is_stopping)
        master_trust_tick(g->cfg, g->pls, g->trusts, ev_now(loop));
}

static void gen_start(struct master *m, struct gen *g)
{
    /* Before the workers: a response kept from the generation before is
     * in the slots when they start. */
    g->ocsp_fetch = ocsp_fetch_new(m->loop, g->cfg, g->ocsp, g->next ? g->next->ocsp_fetch : NULL);
    if (g->ocsp_fetch == NULL)
        log_err("event=ocsp_unavailable generation=%u reason=out_of_memory", g->id);
    for (unsigned i = 0; i < g->n_workers; i++)
        spawn(m, g, i);
    char path[64];
    for (size_t i = 0; i < g->cfg->n_listeners; i++) {
        const struct cfg_listener *l = &g->cfg->listeners[i];
        net_addr_format(&l->addr, path, sizeof(path));
        log_info("event=listening generation=%u listener=%s protocol=%s address=%s", g->id, l->name,
                 config_proto_name(l->protocol), path);
    }
    log_info("event=ready generation=%u workers=%u config=%s", g->id, g->n_workers, g->cfg->path);
    health_apply(m->health, g->cfg);
}

static void gen_signal(struct gen *g, int sig)
{
    for (unsigned i = 0; i < g->n_workers; i++)
        if (g->pids[i] > 0)
            kill(g->pids[i], sig);
}

static void apply_logging(const struct config *cfg)
{
    log_set_level(cfg->log_level);
    if (log_access_open(cfg->access_log) != TG_OK)
        log_warn("event=access_log_unavailable path=%s action=keep_previous", cfg->access_log);
}

/* Old generations whose workers still drain their connections. */
static unsigned draining_generations(const struct master *m)
{
    unsigned n = 0;
    for (const struct gen *g = m->gens; g != NULL; g = g->next)
        n += g->is_retiring;
    return n;
}

/* SIGHUP and POST /reload. Its errors and warnings go to out when not
 * NULL. Refused without trying while max_draining_generations old ones
 * still drain: each keeps its workers, TLS contexts and counters, so
 * reloads in a loop would otherwise pile them up. */
static enum admin_reload reload(struct master *m, struct diag *out)
{
    struct diag local;
    diag_init(&local);
    struct diag *d = out != NULL ? out : &local;
    unsigned draining = draining_generations(m);
    unsigned limit = m->gens != NULL ? m->gens->cfg->max_draining_generations : 1;
    if (draining >= limit) {
        log_warn("event=reload_refused reason=too_many_draining generations=%u limit=%u "
                 "action=keep_serving generation=%u",
                 draining, limit, m->gens ? m->gens->id : 0);
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL,
                 "%u old generations are still draining (max_draining_generations: %u); "
                 "reload again once they have finished",
                 draining, limit);
        diag_fini(&local);
        return ADMIN_RELOAD_BUSY;
    }
    admin_sd_notify("RELOADING=1");
    log_info("event=reload_start config=%s", m->config_path);
    struct gen *g = gen_new(m, m->config_path, d);
    if (g != NULL && m->admin != NULL && admin_configure(m->admin, g->cfg, d) != TG_OK) {
        gen_free(m, g);
        g = NULL;
    }
    log_diag(d);
    if (m->fleet != NULL)
        fleet_node_loaded(m->fleet, g != NULL);
    if (g == NULL) {
        log_err("event=reload result=failed errors=%zu action=keep_serving generation=%u",
                d->n_errors, m->gens ? m->gens->id : 0);
        diag_fini(&local);
        admin_note_reload(m->admin, false, ev_time());
        admin_sd_notify("READY=1\nSTATUS=reload failed; serving the previous configuration");
        return ADMIN_RELOAD_FAILED;
    }
    diag_fini(&local);
    admin_note_reload(m->admin, true, ev_time());
    apply_logging(g->cfg);
    apply_ticket_keys(m, g->cfg);
    struct gen *old = m->gens;
    g->next = old;
    m->gens = g;
    gen_start(m, g);
    if (old != NULL && !old->is_retiring) {
        old->is_retiring = true;
        gen_signal(old, SIGTERM);
    }
    /* Its workers accept no more handshakes: nothing left to staple for. */
    for (struct gen *o = old; o != NULL; o = o->next) {
        ocsp_fetch_free(o->ocsp_fetch);
        o->ocsp_fetch = NULL;
    }
    log_info("event=reload result=ok generation=%u", g->id);
    admin_sd_notify("READY=1\nSTATUS=serving");
    return ADMIN_RELOAD_OK;
}

static void stop(struct master *m, const char *why)
{
    if (m->is_stopping)
        return;
    m->is_stopping = true;
    admin_sd_notify("STOPPING=1");
    admin_set_draining(m->admin);
    log_info("event=master_stopping reason=%s", why);
    health_apply(m->health, NULL);
    /* New clients are refused at once rather than queued on a socket no
     * process will accept from again. */
    for (struct lsock *s = m->socks; s != NULL; s = s->next) {
        if (s->fd >= 0)
            close(s->fd);
        s->fd = -1;
    }
    for (struct gen *g = m->gens; g != NULL; g = g->next) {
        g->is_retiring = true;
        gen_signal(g, SIGTERM);
    }
    if (m->gens == NULL)
        ev_break(m->loop, EVBREAK_ALL);
}

static void signal_cb(struct ev_loop *loop, ev_signal *s, int revents)
{
    (void)loop;
    (void)revents;
    struct master *m = s->data;
    switch (s->signum) {
    case SIGHUP:
        if (!m->is_stopping)
            (void)reload(m, NULL);
        /* A fleet node also tries again the newest revision it refused
         * (its operator may have fixed what was missing). */
        fleet_node_retry(m->fleet);
        break;
    case SIGUSR1:
        log_access_reopen();
        for (struct gen *g = m->gens; g != NULL; g = g->next)
            gen_signal(g, SIGUSR1);
        break;
    default:
        stop(m, strsignal(s->signum));
        break;
    }
}

/* Restarts the current generation's dead workers; slow after a crash loop. */
static void respawn_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct master *m = t->data;
    struct gen *g = m->gens;
    if (m->is_stopping || g == NULL || g->is_retiring)
        return;
    for (unsigned i = 0; i < g->n_workers; i++)
        if (g->pids[i] == 0)
            spawn(m, g, i);
}

static void child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
    (void)revents;
    struct master *m = w->data;
    pid_t pid = w->rpid;
    int status = w->rstatus;
    /* least_conn must not count the connections of a worker that is gone */
    lb_shared_worker_exited(lb_shared_global(), (int)pid);
    for (struct gen **pg = &m->gens; *pg != NULL; pg = &(*pg)->next) {
        struct gen *g = *pg;
        for (unsigned i = 0; i < g->n_workers; i++) {
            if (g->pids[i] != pid)
                continue;
            g->pids[i] = 0;
            g->n_alive--;
            shm_worker_died(g->stats, i);
            bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            if (!g->is_retiring) {
                log_err("event=worker_died generation=%u slot=%u pid=%d status=%s%d "
                        "action=restart",
                        g->id, i, (int)pid, WIFSIGNALED(status) ? "signal:" : "exit:",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                bool crash_loop = ev_now(loop) - g->started[i] < RESPAWN_BACKOFF;
                if (crash_loop) {
                    ev_timer_set(&m->respawn, RESPAWN_BACKOFF, 0.);
                    ev_timer_start(loop, &m->respawn);
                } else {
                    spawn(m, g, i);
                }
            } else {
                log_info("event=worker_exited generation=%u slot=%u pid=%d clean=%s", g->id, i,
                         (int)pid, clean ? "yes" : "no");
            }
            if (g->is_retiring && g->n_alive == 0) {
                *pg = g->next;
                log_info("event=generation_retired generation=%u", g->id);
                admin_retire(m->admin, g->cfg, g->stats);
                gen_free(m, g);
                if (m->is_stopping && m->gens == NULL)
                    ev_break(loop, EVBREAK_ALL);
            }
            return;
        }
    }
}

static void watch_signal(struct master *m, ev_signal *s, int signum)
{
    ev_signal_init(s, signal_cb, signum);
    s->data = m;
    ev_signal_start(m->loop, s);
}

static size_t admin_generations(void *ctx, struct admin_gen *out, size_t max)
{
    struct master *m = ctx;
    size_t n = 0;
    for (struct gen *g = m->gens; g != NULL && n < max; g = g->next) {
        out[n].id = g->id;
        out[n].cfg = g->cfg;
        out[n].stats = g->stats;
        out[n].ocsp = g->ocsp;
        out[n].is_retiring = g->is_retiring;
        out[n].loaded_at = g->loaded_at;
        n++;
    }
    return n;
}

static size_t admin_trusts(void *ctx, struct admin_trust *out, size_t max)
{
    struct master *m = ctx;
    return m->gens != NULL ? master_trust_list(m->gens->cfg, m->gens->pls, out, max) : 0;
}

static enum admin_reload ops_reload(void *ctx, struct diag *d)
{
    struct master *m = ctx;
    return m->is_stopping ? ADMIN_RELOAD_FAILED : reload(m, d);
}

static json_t *ops_fleet(void *ctx)
{
    struct master *m = ctx;
    return m->fleet != NULL ? fleet_node_status_json(m->fleet) : NULL;
}

/* The fleet's keys replace the node's own, from now on and across
 * reloads. */
static void fleet_tickets(void *ctx, const struct ticket_set *set)
{
    struct master *m = ctx;
    ticket_set_wipe(&m->keys);
    m->keys = *set;
    m->is_fleet_keys = true;
    m->is_key_file = false;
    m->fleet_keys_at = ev_now(m->loop);
    ticket_shm_publish(m->tickets, &m->keys);
}

static json_t *fleet_status(void *ctx)
{
    struct master *m = ctx;
    return m->admin != NULL ? admin_status_json(m->admin) : json_object();
}

static void fleet_trust_changed(void *ctx)
{
    struct master *m = ctx;
    for (struct gen *g = m->gens; g != NULL; g = g->next)
        gen_signal(g, SIGUSR2);
}

static bool fleet_is_busy(void *ctx)
{
    struct master *m = ctx;
    unsigned limit = m->gens != NULL ? m->gens->cfg->max_draining_generations : 1;
    return m->is_stopping || draining_generations(m) >= limit;
}

static const struct config *fleet_current(void *ctx)
{
    struct master *m = ctx;
    return m->gens != NULL && !m->is_stopping ? m->gens->cfg : NULL;
}

/* The admin endpoint of the first generation; refuses to start without it. */
static enum tg_status start_admin(struct master *m, struct gen *g)
{
    struct admin_ops ops = {
        .ctx = m,
        .generations = admin_generations,
        .reload = ops_reload,
        .trusts = admin_trusts,
        .fleet = ops_fleet,
    };
    m->admin = admin_new(m->loop, &ops);
    struct diag d;
    diag_init(&d);
    if (m->admin == NULL || admin_configure(m->admin, g->cfg, &d) != TG_OK) {
        if (m->admin == NULL)
            diag_add(&d, DIAG_ERROR, NULL, 0, 0, NULL, "out of memory");
        diag_print(&d, stderr);
        fprintf(stderr, "tollgate: %s: admin endpoint unavailable; not started\n", g->cfg->path);
        diag_fini(&d);
        return TG_E_CONFIG;
    }
    diag_fini(&d);
    return TG_OK;
}

/* Releases what run made before the first generation. */
static void run_fini(struct master *m)
{
    fleet_node_free(m->fleet);
    m->fleet = NULL;
    health_free(m->health);
    m->health = NULL;
    ticket_set_wipe(&m->keys);
    ticket_shm_free(m->tickets);
    m->tickets = NULL;
}

/* Runs a config file (fo NULL) or a fleet node (path names it in logs). */
static int run(const char *path, const struct fleet_opts *fo)
{
    struct master m;
    memset(&m, 0, sizeof(m));
    signal(SIGPIPE, SIG_IGN);
    /* The master's "look at your trust files now" to its workers: ignored
     * until a worker's loop watches it, so that one that has just started
     * does not die of it. */
    signal(SIGUSR2, SIG_IGN);
    m.loop = ev_default_loop(EVFLAG_AUTO);
    m.config_path = path;
    /* Target health and connection counts, shared with every worker. */
    lb_shared_set_global(lb_shared_new(LB_SHARED_SLOTS));
    m.health = health_new(m.loop, lb_shared_global());
    m.tickets = ticket_shm_new();
    if (!ocsp_fetch_global_init())
        log_warn("event=ocsp_unavailable reason=no_http_client detail=\"libcurl could not "
                 "start; responses are read from ocsp_file only\"");
    if (m.loop == NULL || m.tickets == NULL) {
        log_err("event=start_failed error=\"cannot initialise the event loop or shared memory\"");
        run_fini(&m);
        return 1;
    }
    ev_init(&m.rotate, rotate_cb);
    m.rotate.data = &m;
    ev_timer_init(&m.trust_tick, trust_tick_cb, 1., 1.);
    m.trust_tick.data = &m;
    struct diag d;
    diag_init(&d);
    if (fo != NULL && (m.fleet = fleet_node_new(fo, &d)) == NULL) {
        diag_print(&d, stderr);
        fprintf(stderr, "tollgate: %s: node %s not started\n", path, fo->node);
        diag_fini(&d);
        run_fini(&m);
        return 1;
    }
    struct gen *g = gen_new(&m, path, &d);
    if (m.fleet != NULL)
        fleet_node_loaded(m.fleet, g != NULL);
    if (g == NULL) {
        diag_print(&d, stderr);
        fprintf(stderr, "tollgate: %s: %zu error(s); not started\n", path, d.n_errors);
        diag_fini(&d);
        run_fini(&m);
        return 1;
    }
    log_diag(&d);
    diag_fini(&d);
    apply_logging(g->cfg);
    apply_ticket_keys(&m, g->cfg);
    if (m.keys.n == 0) {
        log_err("event=start_failed error=\"cannot generate a session-ticket key\"");
        gen_free(&m, g);
        run_fini(&m);
        return 1;
    }

    watch_signal(&m, &m.sig_hup, SIGHUP);
    watch_signal(&m, &m.sig_term, SIGTERM);
    watch_signal(&m, &m.sig_int, SIGINT);
    watch_signal(&m, &m.sig_quit, SIGQUIT);
    watch_signal(&m, &m.sig_usr1, SIGUSR1);
    ev_child_init(&m.child, child_cb, 0, 0);
    m.child.data = &m;
    ev_child_start(m.loop, &m.child);
    ev_init(&m.respawn, respawn_cb);
    m.respawn.data = &m;

    m.gens = g;
    if (start_admin(&m, g) != TG_OK) {
        gen_free(&m, g);
        run_fini(&m);
        return 1;
    }
    gen_start(&m, g);
    if (m.fleet != NULL) {
        const struct fleet_node_ops fops = {
            .ctx = &m,
            .reload = ops_reload,
            .tickets = fleet_tickets,
            .status = fleet_status,
            .current = fleet_current,
            .trust_changed = fleet_trust_changed,
            .is_busy = fleet_is_busy,
        };
        fleet_node_start(m.fleet, m.loop, &fops);
    }
    ev_timer_start(m.loop, &m.trust_tick);
    admin_sd_notify("READY=1\nSTATUS=serving");
    ev_run(m.loop, 0);
    admin_free(m.admin);
    m.admin = NULL;
    while (m.socks != NULL) {
        struct lsock *s = m.socks;
        m.socks = s->next;
        if (s->fd >= 0)
            close(s->fd);
        free(s);
    }
    ev_timer_stop(m.loop, &m.rotate);
    ev_timer_stop(m.loop, &m.trust_tick);
    run_fini(&m);
    ocsp_fetch_global_fini();
    log_info("event=master_exit");
    return 0;
}

int master_run_config(const char *path)
{
    return run(path, NULL);
}

int master_run_fleet(const struct fleet_opts *o)
{
    char name[300];
    snprintf(name, sizeof(name), "fleet:%s", o->prefix);
    return run(name, o);
}
