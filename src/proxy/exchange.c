/* The exchange: one unit of proxying, with what it shares across
 * protocols (target accounting, the backend connection, the exchange
 * states' timers and interest). */
#include "proxy/exchange.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "proxy/betls.h"
#include "proxy/echo.h"

#define CONN_ARGS(c) tg_pid(), (unsigned long long)(c)->id

void exchange_init(struct exchange *x, const struct session *s)
{
    x->group = s->l->cfg->target_group;
    x->target = -1;
    x->lb_target = -1;
    x->be.fd = -1;
    x->outcome = CONN_OUT_OK;
    x->relay_timeout = (ev_tstamp)s->l->cfg->idle_timeout_ms / 1000.0;
    ev_init(&x->be.io, session_io_cb);
    x->be.io.data = (void *)s;
}

void exchange_fini(struct worker *w, struct exchange *x)
{
    ev_io_stop(w->loop, &x->be.io);
    betls_ssl_free(x->be_ssl);
    x->be_ssl = NULL;
    if (x->be.fd >= 0)
        close(x->be.fd);
    x->be.fd = -1;
    x->c2b.r = x->c2b.w = 0;
    x->b2c.r = x->b2c.w = 0;
    worker_buf_put(w, &x->c2b);
    worker_buf_put(w, &x->b2c);
}

void exchange_lb_begin(struct session *c, int t)
{
    struct exchange *x = c->ex;
    x->lb_target = t;
    x->lb_group = x->group;
    lb_conn_begin(c->w->lb, x->group, t);
}

/* Target accounting on a state change: a connect that ends in RELAY worked
 * and one that goes back to PICK failed, and an https exchange that leaves
 * RELAY has its status (passive checks); a target stays in use only
 * through CONNECT and RELAY (least_conn). */
void exchange_lb_step(struct session *c, enum conn_state from, enum conn_state to)
{
    struct exchange *x = c->ex;
    if (x->lb_target < 0)
        return;
    if (from == CONN_ST_CONNECT && (to == CONN_ST_RELAY || to == CONN_ST_PICK))
        lb_connect_result(c->w->lb, x->lb_group, x->lb_target, to == CONN_ST_RELAY);
    if (to == CONN_ST_CONNECT || to == CONN_ST_RELAY)
        return;
    unsigned status = from == CONN_ST_RELAY ? c->ops->passive_status(c) : 0;
    if (status != 0)
        lb_response_result(c->w->lb, x->lb_group, x->lb_target, status);
    lb_conn_end(c->w->lb, x->lb_group, x->lb_target);
    x->lb_target = -1;
}

void exchange_enter(struct session *c, enum conn_state st)
{
    switch (st) {
    case CONN_ST_CONNECT:
        session_set_timer(c, c->l->cfg->connect_timeout_ms);
        break;
    case CONN_ST_RELAY:
        c->last_activity = ev_now(c->w->loop);
        session_set_timer(c, (uint64_t)(c->ex->relay_timeout * 1000.0));
        break;
    default:
        session_set_timer(c, 0);
        break;
    }
}

void exchange_interest(const struct session *c, const struct buf *cin, const struct buf *bin,
                       int *ce, int *be)
{
    const struct exchange *x = c->ex;
    if (c->st == CONN_ST_CONNECT) {
        *be = EV_WRITE;
        return;
    }
    if (c->st != CONN_ST_RELAY)
        return;
    if (c->want == TLS_WANT_WRITE)
        *ce |= EV_WRITE;
    if (!c->cli.rd_shut && (!buf_is_full(cin) || c->want == TLS_WANT_READ))
        *ce |= EV_READ;
    if (!buf_is_empty(&x->b2c) && !c->cli.wr_shut)
        *ce |= EV_WRITE;
    if (!x->be.rd_shut && !buf_is_full(bin))
        *be |= EV_READ;
    if (!buf_is_empty(&x->c2b) && !x->be.wr_shut)
        *be |= EV_WRITE;
}

enum conn_state exchange_connect_failed(struct session *c, const char *why)
{
    const struct cfg_target *t = &c->ex->group->targets[c->ex->target];
    char e_why[LOG_KV_MAX];
    log_warn("event=connect_failed listener=%s " CONN_FMT " target=%s error=%s", c->l->cfg->name,
             CONN_ARGS(c), t->address, log_kv(e_why, sizeof(e_why), why));
    return exchange_forget_target(c);
}

enum conn_state exchange_forget_target(struct session *c)
{
    ev_io_stop(c->w->loop, &c->ex->be.io);
    c->ex->be.events = 0;
    if (c->ex->be.fd >= 0)
        close(c->ex->be.fd);
    c->ex->be.fd = -1;
    c->ex->tried |= UINT64_C(1) << c->ex->target;
    c->ex->n_tried++;
    c->ex->target = -1;
    return CONN_ST_PICK;
}

enum tg_status exchange_open_backend(struct session *c, bool *in_progress)
{
    const struct cfg_target *t = &c->ex->group->targets[c->ex->target];
    enum tg_status st;
    *in_progress = false;
    if (t->is_builtin)
        st = echo_open(c->w, c->ops->echo_http, &c->ex->be.fd);
    else
        st = net_connect(&t->addr, &c->ex->be.fd, in_progress);
    if (st == TG_OK) {
        c->ex->be.events = 0;
        c->ex->be.rd_shut = false;
        c->ex->be.wr_shut = false;
        c->ex->be.can_read = false; /* nothing can be there before it is readable */
        c->ex->be.wrote_ready = false;
        ev_io_set(&c->ex->be.io, c->ex->be.fd, 0);
    }
    return st;
}
