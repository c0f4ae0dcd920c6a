#include "proxy/conn.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
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

static void refuse(struct wlistener *l, int fd, const struct net_addr *peer)
{
    char addr[64];
    net_addr_format(peer, addr, sizeof(addr));
    log_warn("event=conn_refused listener=%s client=%s reason=max_connections limit=%u",
             l->cfg->name, addr, l->cfg->max_connections);
    shm_add(&l->stats->conns_refused, 1);
    close(fd);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct wlistener *l = io->data;
    struct worker *w = l->w;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct net_addr peer;
        peer.len = sizeof(peer.ss);
        int fd =
            accept4(l->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_err("event=accept_failed listener=%s error=\"%s\" action=pause_100ms",
                        l->cfg->name, strerror(errno));
                stop_accepting(w);
                ev_timer_set(&w->accept_pause, 0.1, 0.);
                ev_timer_start(w->loop, &w->accept_pause);
            }
            return; /* EAGAIN, or a connection that died in the backlog */
        }
        int64_t active = atomic_load_explicit(&l->stats->conns_active, memory_order_relaxed);
        if (active >= (int64_t)l->cfg->max_connections) {
            refuse(l, fd, &peer);
            continue;
        }
        net_set_nodelay(fd);
        struct conn *c = conn_new(w, l, fd, &peer);
        if (c == NULL) {
            log_err("event=accept_failed listener=%s error=\"out of memory\"", l->cfg->name);
            close(fd);
            continue;
        }
        conn_run(c);
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
    if (w->n_conns == 0) {
        ev_break(w->loop, EVBREAK_ALL);
        return;
    }
    ev_timer_set(&w->drain_timer, (ev_tstamp)w->cfg->drain_timeout_ms / 1000.0, 0.);
    ev_timer_start(w->loop, &w->drain_timer);
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
    default:
        break; /* SIGHUP is the master's business */
    }
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
    for (size_t i = 0; i < w.n_ls; i++) {
        struct wlistener *l = &w.ls[i];
        l->w = &w;
        l->cfg = a->listeners[i].cfg;
        l->fd = a->listeners[i].fd;
        l->tls = a->listeners[i].tls;
        l->stats = &a->stats->listeners[i];
        ev_io_init(&l->accept_w, accept_cb, l->fd, EV_READ);
        l->accept_w.data = l;
    }
    ev_init(&w.drain_timer, drain_timeout_cb);
    w.drain_timer.data = &w;
    ev_init(&w.accept_pause, accept_pause_cb);
    w.accept_pause.data = &w;
    watch_signal(&w, &w.sig_term, SIGTERM);
    watch_signal(&w, &w.sig_quit, SIGQUIT);
    watch_signal(&w, &w.sig_usr1, SIGUSR1);
    watch_signal(&w, &w.sig_hup, SIGHUP);

    start_accepting(&w);
    log_info("event=worker_started generation=%u slot=%u listeners=%zu", a->generation, a->slot,
             w.n_ls);
    ev_run(w.loop, 0);
    log_info("event=worker_exit generation=%u slot=%u open_connections=%zu", a->generation, a->slot,
             w.n_conns);
    return 0;
}
