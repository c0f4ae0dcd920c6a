/* Active health checks (src/health/health.c) against servers in this
 * process, on one libev loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "health/health.h"
#include "lb/lb.h"

/* A listening socket on 127.0.0.1 that answers each HTTP request with
 * "HTTP/1.1 <status>" (or `raw`), or never accepts when is_silent. */
struct server {
    struct ev_loop *loop;
    int fd;
    ev_io accept_w;
    unsigned status;
    const char *raw;
    bool is_silent;
    char address[32];
};

struct peer {
    struct server *srv;
    ev_io io;
    char buf[2048];
    size_t len;
};

static void peer_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct peer *p = io->data;
    ssize_t n = recv(io->fd, p->buf + p->len, sizeof(p->buf) - 1 - p->len, 0);
    if (n > 0) {
        p->len += (size_t)n;
        p->buf[p->len] = '\0';
        if (strstr(p->buf, "\r\n\r\n") == NULL)
            return;
        char resp[128];
        if (p->srv->raw != NULL)
            snprintf(resp, sizeof(resp), "%s", p->srv->raw);
        else
            snprintf(resp, sizeof(resp), "HTTP/1.1 %u X\r\nContent-Length: 0\r\n\r\n",
                     p->srv->status);
        ssize_t w = send(io->fd, resp, strlen(resp), MSG_NOSIGNAL);
        (void)w;
    }
    ev_io_stop(loop, io);
    close(io->fd);
    free(p);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct server *s = io->data;
    int fd = accept(s->fd, NULL, NULL);
    if (fd < 0)
        return;
    struct peer *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->srv = s;
    ev_io_init(&p->io, peer_cb, fd, EV_READ);
    p->io.data = p;
    ev_io_start(loop, &p->io);
}

static void server_start(struct server *s, struct ev_loop *loop, unsigned status)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->status = status;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    assert_int_equal(getsockname(s->fd, (struct sockaddr *)&a, &len), 0);
    snprintf(s->address, sizeof(s->address), "127.0.0.1:%u", ntohs(a.sin_port));
    ev_io_init(&s->accept_w, accept_cb, s->fd, EV_READ);
    s->accept_w.data = s;
    ev_io_start(loop, &s->accept_w);
}

static void server_stop(struct server *s)
{
    ev_io_stop(s->loop, &s->accept_w);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* A config of one group "g" with one target and a fast check. */
struct fixture {
    struct cfg_target target;
    struct cfg_target_group g;
    struct config cfg;
    struct lb_shared *sh;
    struct health *h;
    struct ev_loop *loop;
    struct lb_slot *slot;
};

static void fixture_init(struct fixture *f, struct ev_loop *loop, const char *address,
                         enum cfg_hc_type type)
{
    memset(f, 0, sizeof(*f));
    f->loop = loop;
    f->target.address = (char *)address;
    f->target.weight = 1;
    char err[128];
    assert_int_equal(net_addr_parse(address, false, &f->target.addr, err, sizeof(err)), TG_OK);
    f->g.name = "g";
    f->g.targets = &f->target;
    f->g.n_targets = 1;
    f->g.health_check.type = type;
    f->g.health_check.path = "/health";
    f->g.health_check.method = "GET";
    f->g.health_check.expect_lo = 200;
    f->g.health_check.expect_hi = 299;
    f->g.health_check.interval_ms = 40;
    f->g.health_check.timeout_ms = 150;
    f->g.health_check.healthy_threshold = 2;
    f->g.health_check.unhealthy_threshold = 2;
    f->cfg.target_groups = &f->g;
    f->cfg.n_target_groups = 1;
    f->sh = lb_shared_new(16);
    assert_non_null(f->sh);
    assert_true(lb_shared_register(f->sh, &f->cfg));
    f->slot = &f->sh->slots[lb_shared_find(f->sh, "g", address)];
    f->h = health_new(loop, f->sh);
    assert_non_null(f->h);
}

static void fixture_fini(struct fixture *f)
{
    health_free(f->h);
    lb_shared_free(f->sh);
}

/* Runs the loop until the slot's health is want or 5 seconds pass. */
static bool run_until(struct fixture *f, enum lb_health want)
{
    ev_tstamp deadline = ev_time() + 5.0;
    while (ev_time() < deadline) {
        if (atomic_load(&f->slot->health) == (int32_t)want)
            return true;
        ev_run(f->loop, EVRUN_ONCE);
    }
    return atomic_load(&f->slot->health) == (int32_t)want;
}

static void test_tcp_up_then_refused(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_default_loop(0);
    struct server s;
    server_start(&s, loop, 200);
    struct fixture f;
    fixture_init(&f, loop, s.address, CFG_HC_TCP);
    health_apply(f.h, &f.cfg);
    assert_true(run_until(&f, LB_HEALTH_UP));
    server_stop(&s);
    assert_true(run_until(&f, LB_HEALTH_DOWN));
    assert_true(atomic_load(&f.slot->hc_fail) >= 2);
    /* every check counted; the last one refused */
    assert_true(atomic_load(&f.slot->hc_total[LB_HC_PASS]) >= 1);
    assert_true(atomic_load(&f.slot->hc_total[LB_HC_REFUSED]) >= 2);
    assert_int_equal(atomic_load(&f.slot->hc_total[LB_HC_STATUS]), 0);
    assert_int_equal(atomic_load(&f.slot->hc_last_result), LB_HC_REFUSED);
    assert_string_equal(f.slot->hc_last_cause, "refused");
    assert_true(atomic_load(&f.slot->hc_last_unix_ms) > INT64_C(1600000000000));
    health_apply(f.h, NULL);
    fixture_fini(&f);
}

static void test_http_status(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_default_loop(0);
    struct server s;
    server_start(&s, loop, 204);
    struct fixture f;
    fixture_init(&f, loop, s.address, CFG_HC_HTTP);
    health_apply(f.h, &f.cfg);
    assert_true(run_until(&f, LB_HEALTH_UP));
    assert_string_equal(f.slot->hc_last_cause, "status_204");
    s.status = 500;
    assert_true(run_until(&f, LB_HEALTH_DOWN));
    assert_int_equal(atomic_load(&f.slot->hc_last_result), LB_HC_STATUS);
    assert_string_equal(f.slot->hc_last_cause, "status_500");
    assert_string_equal(f.slot->hc_last_detail, "expected 200-299");
    assert_true(atomic_load(&f.slot->hc_total[LB_HC_STATUS]) >= 2);
    /* a passing check also ends a passive ejection */
    atomic_store(&f.slot->eject_until_ms, INT64_MAX);
    s.status = 299;
    assert_true(run_until(&f, LB_HEALTH_UP));
    assert_true(atomic_load(&f.slot->hc_ok) >= 2);
    assert_int_equal(atomic_load(&f.slot->eject_until_ms), 0);
    s.status = 300; /* just past the range */
    assert_true(run_until(&f, LB_HEALTH_DOWN));
    server_stop(&s);
    fixture_fini(&f);
}

static void test_http_bad_response(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_default_loop(0);
    struct server s;
    server_start(&s, loop, 200);
    s.raw = "SSH-2.0-OpenSSH\r\n";
    struct fixture f;
    fixture_init(&f, loop, s.address, CFG_HC_HTTP);
    health_apply(f.h, &f.cfg);
    assert_true(run_until(&f, LB_HEALTH_DOWN));
    assert_int_equal(atomic_load(&f.slot->hc_last_result), LB_HC_ERROR);
    assert_string_equal(f.slot->hc_last_cause, "bad_response");
    s.raw = "HTTP/1.1 200";
    assert_true(run_until(&f, LB_HEALTH_UP));
    server_stop(&s);
    fixture_fini(&f);
}

/* Accepted by the kernel, never answered: the timeout decides. */
static void test_http_timeout(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_default_loop(0);
    struct server s;
    server_start(&s, loop, 200);
    ev_io_stop(loop, &s.accept_w);
    struct fixture f;
    fixture_init(&f, loop, s.address, CFG_HC_HTTP);
    f.g.health_check.timeout_ms = 60;
    health_apply(f.h, &f.cfg);
    ev_tstamp t0 = ev_time();
    assert_true(run_until(&f, LB_HEALTH_DOWN));
    assert_true(ev_time() - t0 >= 0.1); /* two timeouts of 60ms */
    assert_true(atomic_load(&f.slot->hc_total[LB_HC_TIMEOUT]) >= 2);
    assert_int_equal(atomic_load(&f.slot->hc_total[LB_HC_PASS]), 0);
    assert_string_equal(f.slot->hc_last_cause, "timeout");
    server_stop(&s);
    fixture_fini(&f);
}

/* A reload keeps the state; checks removed put the target back up. */
static void test_apply_keeps_and_forgets(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_default_loop(0);
    struct fixture f;
    fixture_init(&f, loop, "127.0.0.1:1", CFG_HC_TCP);
    atomic_store(&f.slot->health, LB_HEALTH_DOWN);
    f.g.health_check.interval_ms = 60000;
    health_apply(f.h, &f.cfg);
    assert_int_equal(atomic_load(&f.slot->health), LB_HEALTH_DOWN);
    f.g.health_check.type = CFG_HC_NONE;
    health_apply(f.h, &f.cfg);
    assert_int_equal(atomic_load(&f.slot->health), LB_HEALTH_UNKNOWN);
    health_apply(f.h, NULL);
    fixture_fini(&f);
    health_free(NULL);
}

/* Causes map to a small stable set of results. */
static void test_result_of(void **state)
{
    (void)state;
    assert_int_equal(health_result_of(true, "connected"), LB_HC_PASS);
    assert_int_equal(health_result_of(true, "status_204"), LB_HC_PASS);
    assert_int_equal(health_result_of(true, NULL), LB_HC_PASS);
    assert_int_equal(health_result_of(false, "refused"), LB_HC_REFUSED);
    assert_int_equal(health_result_of(false, "timeout"), LB_HC_TIMEOUT);
    assert_int_equal(health_result_of(false, "status_500"), LB_HC_STATUS);
    assert_int_equal(health_result_of(false, "tls_error"), LB_HC_TLS_ERROR);
    /* the rest, and near misses, are errors */
    assert_int_equal(health_result_of(false, "reset"), LB_HC_ERROR);
    assert_int_equal(health_result_of(false, "unreachable"), LB_HC_ERROR);
    assert_int_equal(health_result_of(false, "bad_response"), LB_HC_ERROR);
    assert_int_equal(health_result_of(false, "closed"), LB_HC_ERROR);
    assert_int_equal(health_result_of(false, "status"), LB_HC_ERROR);
    assert_int_equal(health_result_of(false, "refused2"), LB_HC_ERROR);
    assert_int_equal(health_result_of(false, ""), LB_HC_ERROR);
    assert_int_equal(health_result_of(false, NULL), LB_HC_ERROR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_up_then_refused),     cmocka_unit_test(test_http_status),
        cmocka_unit_test(test_http_bad_response),       cmocka_unit_test(test_http_timeout),
        cmocka_unit_test(test_apply_keeps_and_forgets), cmocka_unit_test(test_result_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
