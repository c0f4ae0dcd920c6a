#include "admin/admin.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "admin/internal.h"
#include "core/log.h"
#include "http/http.h"
#include "lb/lb.h"

#define ADMIN_MAX_CONNS 64
#define ADMIN_REQ_MAX   8192
#define ADMIN_TIMEOUT   5.0

/* One admin client: read one request head, write one answer, close. */
struct admin_conn {
    struct admin *a; /* borrowed */
    struct admin_conn *prev, *next;
    int fd;
    ev_io io;
    ev_timer timer;
    struct h1 parser;
    struct http_head head;
    char in[ADMIN_REQ_MAX];
    size_t in_len;
    struct admin_out out; /* the whole answer */
    size_t sent;
    char peer[64];
    char local[64]; /* the address it came in on, without the port */
};

static void conn_free(struct admin_conn *c)
{
    struct admin *a = c->a;
    ev_io_stop(a->loop, &c->io);
    ev_timer_stop(a->loop, &c->timer);
    if (c->fd >= 0)
        close(c->fd);
    admin_out_fini(&c->out);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    a->n_conns--;
    free(c);
}

static void listen_stop(struct admin *a)
{
    if (a->fd < 0)
        return;
    ev_timer_stop(a->loop, &a->hist_timer);
    ev_io_stop(a->loop, &a->accept_w);
    close(a->fd);
    a->fd = -1;
}

/* ---- answers ---- */

static const char *status_text(unsigned status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 421:
        return "Misdirected Request";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

#define ADMIN_HTML "text/html; charset=utf-8"

/* Replaces whatever c->out holds with a full response around body; extra
 * is more header lines, each ending in CRLF (or NULL). Every answer but the
 * page (the one ADMIN_HTML answer, which brings its own policy) gets a
 * Content-Security-Policy that forbids everything: nothing else is meant
 * to render in a browser. */
static void respond(struct admin_conn *c, unsigned status, const char *ctype, const char *extra,
                    const char *body, size_t body_len, bool head_only)
{
    admin_out_fini(&c->out);
    bool is_html = strcmp(ctype, ADMIN_HTML) == 0;
    admin_out_printf(&c->out,
                     "HTTP/1.1 %u %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                     "X-Frame-Options: DENY\r\n%s%sConnection: close\r\n\r\n",
                     status, status_text(status), ctype, body_len,
                     is_html ? ""
                             : "Content-Security-Policy: default-src 'none'; "
                               "frame-ancestors 'none'\r\n",
                     extra ? extra : "");
    if (!head_only && body_len > 0 && !c->out.failed) {
        admin_out_printf(&c->out, "%.*s", (int)body_len, body);
    }
}

static void respond_text(struct admin_conn *c, unsigned status, const char *body)
{
    respond(c, status, "text/plain; charset=utf-8", NULL, body, strlen(body), false);
}

static void respond_json(struct admin_conn *c, unsigned status, json_t *doc, bool head_only)
{
    char *text = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (text == NULL) {
        respond_text(c, 500, "out of memory\n");
        return;
    }
    size_t n = strlen(text);
    /* A trailing newline is kinder to curl users. */
    char *full = malloc(n + 2);
    if (full == NULL) {
        free(text);
        respond_text(c, 500, "out of memory\n");
        return;
    }
    memcpy(full, text, n);
    full[n] = '\n';
    full[n + 1] = '\0';
    respond(c, status, "application/json", NULL, full, n + 1, head_only);
    free(full);
    free(text);
}

static json_t *diag_json(const struct diag *d, enum diag_level level)
{
    json_t *arr = json_array();
    char line[2048];
    for (size_t i = 0; arr != NULL && i < d->n; i++) {
        if (d->v[i].level != level)
            continue;
        diag_format(d, i, line, sizeof(line));
        json_array_append_new(arr, json_string(line));
    }
    return arr;
}

static void handle_reload(struct admin_conn *c)
{
    struct admin *a = c->a;
    if (a->is_draining) {
        json_t *doc = json_pack("{s:s,s:s}", "result", "refused", "reason", "draining");
        respond_json(c, 503, doc, false);
        return;
    }
    struct diag d;
    diag_init(&d);
    log_info("event=admin_reload client=%s", c->peer);
    enum admin_reload r = a->ops.reload(a->ops.ctx, &d);
    unsigned gen = 0;
    struct admin_gen g;
    if (a->ops.generations(a->ops.ctx, &g, 1) == 1)
        gen = g.id;
    static const char *const results[] = {"ok", "failed", "refused"};
    json_t *doc =
        json_pack("{s:s,s:i,s:o,s:o}", "result", results[r], "generation", (json_int_t)gen,
                  "errors", diag_json(&d, DIAG_ERROR), "warnings", diag_json(&d, DIAG_WARNING));
    if (doc != NULL && r == ADMIN_RELOAD_BUSY)
        json_object_set_new(doc, "reason", json_string("too_many_draining"));
    diag_fini(&d);
    respond_json(c, r == ADMIN_RELOAD_OK ? 200 : r == ADMIN_RELOAD_BUSY ? 429 : 409, doc, false);
}

static void handle_metrics(struct admin_conn *c, bool head_only)
{
    struct admin_out body = {0};
    admin_metrics(c->a, &body);
    if (body.failed)
        respond_text(c, 500, "out of memory\n");
    else
        respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, body.p ? body.p : "",
                body.len, head_only);
    admin_out_fini(&body);
}

static bool is_page(const char *path)
{
    return strcmp(path, "/") == 0 || strcmp(path, "/ui") == 0;
}

static void handle_page(struct admin_conn *c, bool is_get, bool is_head)
{
    if (!is_get && !is_head) {
        respond(c, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n", "use GET\n", 8, false);
        return;
    }
    respond(c, 200, ADMIN_HTML, admin_ui_headers(), (const char *)admin_ui_page, admin_ui_page_len,
            is_head);
}

static void handle(struct admin_conn *c)
{
    struct http_head *hd = &c->head;
    const char *target = http_span_ptr(hd, hd->target);
    size_t tlen = hd->target.len;
    const char *q = memchr(target, '?', tlen);
    if (q != NULL)
        tlen = (size_t)(q - target);
    bool is_get = hd->method == HTTP_GET, is_head = hd->method == HTTP_HEAD;
    bool is_post = hd->method == HTTP_POST;
    char path[64];
    snprintf(path, sizeof(path), "%.*s", (int)(tlen < 63 ? tlen : 63), target);
    if (log_get_level() >= LOG_LEVEL_DEBUG) {
        char e_method[LOG_KV_MIN * 4], e_path[LOG_KV_MAX];
        log_kv_escape(e_method, sizeof(e_method), http_span_ptr(hd, hd->method_s),
                      hd->method_s.len);
        log_kv_escape(e_path, sizeof(e_path), target, hd->target.len);
        log_debug("event=admin_request client=%s method=%s path=%s", c->peer, e_method, e_path);
    }

    const char *why = NULL;
    unsigned refused = admin_guard_check(&c->a->guard, hd, c->local, &why);
    /* The page holds no data and cannot be fetched with a header by a
     * navigation: it is served without the token (the Host and web-page
     * checks still apply) and asks for the token itself. */
    if (refused == 401 && is_page(path)) {
        handle_page(c, is_get, is_head);
        return;
    }
    if (refused != 0) {
        char e_host[LOG_KV_MAX] = "-";
        if (hd->host >= 0)
            log_kv_escape(e_host, sizeof(e_host), http_span_ptr(hd, hd->h[hd->host].value),
                          hd->h[hd->host].value.len);
        log_info("event=admin_refused client=%s status=%u reason=%s host=%s", c->peer, refused, why,
                 e_host);
        if (refused == 401)
            respond(c, 401, "text/plain; charset=utf-8",
                    "WWW-Authenticate: Bearer realm=\"tollgate admin\"\r\n",
                    "a bearer token is required\n", 27, false);
        else if (refused == 403)
            respond_text(c, 403, "requests from web pages are refused\n");
        else if (refused == 421)
            respond_text(c, 421, "unknown Host; see admin.server_names\n");
        else
            respond_text(c, refused, "a Host header is required\n");
        return;
    }

    if (is_page(path)) {
        handle_page(c, is_get, is_head);
        return;
    }
    if (strcmp(path, "/reload") == 0) {
        if (!is_post)
            respond(c, 405, "text/plain; charset=utf-8", "Allow: POST\r\n", "use POST\n", 9, false);
        else
            handle_reload(c);
        return;
    }
    bool known = strcmp(path, "/metrics") == 0 || strcmp(path, "/status") == 0 ||
                 strcmp(path, "/healthz") == 0;
    if (!known) {
        respond_text(c, 404, "not found; try /, /metrics, /status, /healthz or POST /reload\n");
        return;
    }
    if (!is_get && !is_head) {
        respond(c, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n", "use GET\n", 8, false);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        handle_metrics(c, is_head);
    } else if (strcmp(path, "/status") == 0) {
        respond_json(c, 200, admin_status_json(c->a), is_head);
    } else if (c->a->is_draining) {
        respond(c, 503, "text/plain; charset=utf-8", NULL, "draining\n", 9, is_head);
    } else {
        respond(c, 200, "text/plain; charset=utf-8", NULL, "ok\n", 3, is_head);
    }
}

/* ---- connections ---- */

static void conn_write(struct admin_conn *c)
{
    while (c->sent < c->out.len) {
        ssize_t n = send(c->fd, c->out.p + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            ev_io_stop(c->a->loop, &c->io);
            ev_io_set(&c->io, c->fd, EV_WRITE);
            ev_io_start(c->a->loop, &c->io);
            return;
        }
        if (n <= 0) {
            conn_free(c);
            return;
        }
        c->sent += (size_t)n;
    }
    shutdown(c->fd, SHUT_WR);
    conn_free(c);
}

static void conn_read(struct admin_conn *c)
{
    for (;;) {
        if (c->in_len == sizeof(c->in)) {
            respond_text(c, 400, "request head too large\n");
            break;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            conn_free(c);
            return;
        }
        c->in_len += (size_t)n;
        enum tg_status st = h1_head(&c->parser, &c->head, c->in, c->in_len);
        if (st == TG_E_AGAIN)
            continue;
        if (st != TG_OK) {
            char e_reason[LOG_KV_MAX];
            log_info("event=admin_bad_request client=%s reason=%s", c->peer,
                     log_kv(e_reason, sizeof(e_reason),
                            c->parser.err_reason ? c->parser.err_reason : "malformed"));
            respond_text(c, 400, "bad request\n");
            break;
        }
        handle(c);
        break;
    }
    if (c->out.failed) {
        conn_free(c);
        return;
    }
    conn_write(c);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct admin_conn *c = io->data;
    if (revents & EV_WRITE)
        conn_write(c);
    else
        conn_read(c);
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    conn_free(t->data);
}

static void accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct admin *a = io->data;
    for (int i = 0; i < 16; i++) {
        struct net_addr peer;
        peer.len = sizeof(peer.ss);
        int fd =
            accept4(a->fd, (struct sockaddr *)&peer.ss, &peer.len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        struct admin_conn *c = a->n_conns < ADMIN_MAX_CONNS ? calloc(1, sizeof(*c)) : NULL;
        if (c == NULL) {
            log_warn("event=admin_refused reason=too_many_connections limit=%d", ADMIN_MAX_CONNS);
            close(fd);
            continue;
        }
        c->a = a;
        c->fd = fd;
        net_addr_format(&peer, c->peer, sizeof(c->peer));
        struct net_addr local;
        local.len = sizeof(local.ss);
        if (getsockname(fd, (struct sockaddr *)&local.ss, &local.len) == 0) {
            net_addr_format(&local, c->local, sizeof(c->local));
            char *colon = strrchr(c->local, ':');
            if (colon != NULL)
                *colon = '\0';
        }
        h1_init(&c->parser, true, 0);
        ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
        c->io.data = c;
        ev_timer_init(&c->timer, conn_timer_cb, ADMIN_TIMEOUT, 0.);
        c->timer.data = c;
        ev_io_start(a->loop, &c->io);
        ev_timer_start(a->loop, &c->timer);
        c->next = a->conns;
        if (a->conns != NULL)
            a->conns->prev = c;
        a->conns = c;
        a->n_conns++;
    }
}

/* ---- the object ---- */

/* Refusal totals are sampled this often (seconds) for the per-minute
 * counts of /status, whether or not anyone reads it. */
#define ADMIN_HIST_EVERY 10.0

static void hist_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    admin_hist_sample(t->data, (double)now.tv_sec);
}

struct admin *admin_new(struct ev_loop *loop, const struct admin_ops *ops)
{
    struct admin *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->loop = loop;
    a->ops = *ops;
    a->fd = -1;
    return a;
}

void admin_free(struct admin *a)
{
    if (a == NULL)
        return;
    while (a->conns != NULL)
        conn_free(a->conns);
    listen_stop(a);
    while (a->totals != NULL) {
        struct admin_total *t = a->totals;
        a->totals = t->next;
        free(t->listener);
        free(t);
    }
    admin_certs_fini(&a->certs);
    admin_guard_fini(&a->guard);
    admin_hist_fini(&a->hist);
    free(a);
}

enum tg_status admin_configure(struct admin *a, const struct config *cfg, struct diag *d)
{
    if (cfg->admin_listen == NULL) {
        if (a->fd >= 0)
            log_info("event=admin_stopped");
        listen_stop(a);
        return TG_OK;
    }
    struct admin_guard guard = {0};
    if (admin_guard_set(&guard, cfg) != TG_OK) {
        diag_add(d, DIAG_ERROR, cfg->path, 0, 0, "admin", "out of memory");
        return TG_E_CONFIG;
    }
    if (a->fd >= 0 && net_addr_equal(&a->addr, &cfg->admin_addr)) {
        admin_guard_fini(&a->guard);
        a->guard = guard;
        return TG_OK;
    }
    int fd = -1;
    if (net_listen(&cfg->admin_addr, 64, &fd) != TG_OK) {
        diag_add(d, DIAG_ERROR, cfg->path, 0, 0, "admin.listen",
                 "cannot listen on %s: %s (is another process using it?)", cfg->admin_listen,
                 strerror(errno));
        admin_guard_fini(&guard);
        return TG_E_CONFIG;
    }
    admin_guard_fini(&a->guard);
    a->guard = guard;
    listen_stop(a);
    a->fd = fd;
    a->addr = cfg->admin_addr;
    ev_io_init(&a->accept_w, accept_cb, fd, EV_READ);
    a->accept_w.data = a;
    ev_io_start(a->loop, &a->accept_w);
    ev_timer_init(&a->hist_timer, hist_timer_cb, 0., ADMIN_HIST_EVERY);
    a->hist_timer.data = a;
    ev_timer_start(a->loop, &a->hist_timer);
    char addr[64];
    net_addr_format(&a->addr, addr, sizeof(addr));
    log_info("event=admin_listening address=%s", addr);
    return TG_OK;
}

void admin_set_draining(struct admin *a)
{
    if (a != NULL)
        a->is_draining = true;
}

void admin_note_reload(struct admin *a, bool ok, double now)
{
    if (a == NULL)
        return;
    if (ok) {
        a->reloads_ok++;
        a->last_reload_ok = now;
    } else {
        a->reloads_failed++;
    }
}

void admin_retire(struct admin *a, const struct config *cfg, const struct shm_stats *stats)
{
    if (a == NULL || cfg == NULL || stats == NULL)
        return;
    for (size_t i = 0; i < cfg->n_listeners && i < stats->n_listeners; i++) {
        const char *name = cfg->listeners[i].name;
        struct admin_total *t = a->totals;
        while (t != NULL && strcmp(t->listener, name) != 0)
            t = t->next;
        if (t == NULL) {
            t = calloc(1, sizeof(*t));
            if (t == NULL || (t->listener = strdup(name)) == NULL) {
                free(t);
                log_err("event=metrics_lost listener=%s error=\"out of memory\"", name);
                continue;
            }
            t->next = a->totals;
            a->totals = t;
        }
        shm_listener_stats_add(&t->s, &stats->listeners[i]);
    }
}
