#include "proxy/bpool.h"
#include "proxy/betls.h"

#include <stdlib.h>
#include <unistd.h>

#define BPOOL_MAX_PER_TARGET 64
#define BPOOL_IDLE_SECONDS   30.0

/* An idle keep-alive connection to a target, waiting for the next request.
 * Readability means the target closed it (or sent something unasked for):
 * either way it is dropped, unless over TLS what came was no data. */
struct pooled {
    struct bpool *p;
    const struct cfg_target_group *g;
    int target;
    int fd;
    SSL *ssl; /* owned; NULL when plain */
    ev_io io;
    ev_timer idle;
    struct pooled *prev, *next;
};

struct bpool {
    struct worker *w;
    struct pooled *head;
};

struct bpool *bpool_new(struct worker *w)
{
    struct bpool *p = calloc(1, sizeof(*p));
    if (p != NULL)
        p->w = w;
    return p;
}

static void unlink_pooled(struct pooled *e)
{
    struct bpool *p = e->p;
    ev_io_stop(p->w->loop, &e->io);
    ev_timer_stop(p->w->loop, &e->idle);
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        p->head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
}

static void drop(struct pooled *e)
{
    unlink_pooled(e);
    betls_ssl_free(e->ssl);
    close(e->fd);
    free(e);
}

static void pooled_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct pooled *e = io->data;
    if (e->ssl == NULL || !betls_idle_ok(e->ssl))
        drop(e);
}

static void pooled_idle_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    drop(t->data);
}

int bpool_take(struct bpool *p, const struct cfg_target_group *g, int target, SSL **ssl)
{
    *ssl = NULL;
    for (struct pooled *e = p->head; e != NULL; e = e->next) {
        if (e->g == g && e->target == target) {
            int fd = e->fd;
            *ssl = e->ssl;
            unlink_pooled(e);
            free(e);
            return fd;
        }
    }
    return -1;
}

void bpool_put(struct bpool *p, const struct cfg_target_group *g, int target, int fd, SSL *ssl)
{
    unsigned n = 0;
    for (struct pooled *e = p->head; e != NULL; e = e->next)
        n += e->g == g && e->target == target;
    /* Decrypted bytes left over would be taken for the next response. */
    bool is_clean = ssl == NULL || !SSL_has_pending(ssl);
    struct pooled *e = n < BPOOL_MAX_PER_TARGET && is_clean ? calloc(1, sizeof(*e)) : NULL;
    if (e == NULL) {
        betls_ssl_free(ssl);
        close(fd);
        return;
    }
    e->p = p;
    e->g = g;
    e->target = target;
    e->fd = fd;
    e->ssl = ssl;
    ev_init(&e->io, pooled_io_cb);
    side_reuse_fd(&e->io, fd, EV_READ); /* the connection's watcher registered it */
    e->io.data = e;
    ev_timer_init(&e->idle, pooled_idle_cb, BPOOL_IDLE_SECONDS, 0.);
    e->idle.data = e;
    ev_io_start(p->w->loop, &e->io);
    ev_timer_start(p->w->loop, &e->idle);
    e->next = p->head;
    if (p->head != NULL)
        p->head->prev = e;
    p->head = e;
}
