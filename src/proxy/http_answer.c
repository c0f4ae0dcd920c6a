#include "proxy/http_req.h"

/* Answers tollgate makes itself on https/http listeners: respond rules,
 * redirects, error pages. The request flow (http_fwd.c) decides; this file
 * builds the response into b2c and hands over to RESPOND. */

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

#define CONN_ARGS(c) tg_pid(), (unsigned long long)(c)->id

/* Queues a response made by tollgate (respond rules, redirects, error
 * pages) and moves to RESPOND, which writes it out. */
enum conn_state http_answer(struct session *c, unsigned status, const char *ctype,
                            const char *extra, const char *body, bool keep_alive)
{
    struct http_req *h = http_req_of(c);
    bool head_only = h->m != NULL && h->m->req_p.head_done && h->m->req.method == HTTP_HEAD;
    h->keep_alive = h->keep_alive && keep_alive;
    h->status = status;
    c->ex->b2c.r = c->ex->b2c.w = 0;
    if (!worker_buf_get(c->w, &c->ex->b2c))
        return CONN_ST_CLOSED;
    if (http_hdr_simple(status, ctype, extra, body, body ? strlen(body) : 0, h->keep_alive,
                        head_only, &c->ex->b2c) != TG_OK) {
        log_err("event=http_error listener=%s " CONN_FMT " error=\"response does not fit\"",
                c->l->cfg->name, CONN_ARGS(c));
        return CONN_ST_CLOSED;
    }
    return CONN_ST_RESPOND;
}

/* An error page: short, says what happened, names nothing internal. The
 * connection closes after it, since the request stream may be out of step. */
enum conn_state http_error_page(struct session *c, unsigned status, const char *what)
{
    char peer[64], body[256];
    net_addr_format(&c->peer, peer, sizeof(peer));
    char e_what[LOG_KV_MAX];
    log_info("event=http_error listener=%s " CONN_FMT " client=%s status=%u reason=%s",
             c->l->cfg->name, CONN_ARGS(c), peer, status, log_kv(e_what, sizeof(e_what), what));
    if (c->ex->outcome == CONN_OUT_OK)
        c->ex->outcome = CONN_OUT_HTTP_ERROR; /* a 502/503/504 keeps its own (no_target, ...) */
    if (http_req_of(c)->sent_to_client)
        return CONN_ST_CLOSED;
    snprintf(body, sizeof(body), "%u %s: %s\n", status, http_reason(status), what);
    return http_answer(c, status, "text/plain; charset=utf-8", NULL, body, false);
}

/* The Host value without its port, as a pointer and length. */
void http_host_name(const char *host, size_t len, const char **name, size_t *name_len)
{
    *name = host;
    *name_len = len;
    if (len > 0 && host[0] == '[') {
        const char *close = memchr(host, ']', len);
        if (close != NULL) {
            *name = host + 1;
            *name_len = (size_t)(close - host - 1);
        }
        return;
    }
    const char *colon = memchr(host, ':', len);
    if (colon != NULL)
        *name_len = (size_t)(colon - host);
}

size_t http_path_len(const char *target, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (target[i] == '?' || target[i] == '#')
            return i;
    return len;
}

/* The request-target from its path on: an absolute-form target (RFC 9112
 * §3.2.2, "https://host/p?q", whose authority h1 checked against Host)
 * without its scheme and authority, so that rules and redirects see the
 * same path as for "/p?q". */
void http_target_from_path(const struct http_head *rq, const char **p, size_t *len)
{
    const char *t = http_span_ptr(rq, rq->target);
    size_t n = rq->target.len;
    *p = t;
    *len = n;
    if (n == 0 || t[0] == '/' || rq->method == HTTP_CONNECT)
        return;
    const char *sep = memchr(t, ':', n);
    if (sep == NULL || (size_t)(t + n - sep) < 3 || sep[1] != '/' || sep[2] != '/')
        return;
    const char *q = sep + 3;
    while (q < t + n && *q != '/' && *q != '?' && *q != '#')
        q++;
    *p = q;
    *len = (size_t)(t + n - q);
}

enum conn_state http_redirect(struct session *c, const struct cfg_rule *r, const char *host,
                              size_t host_len)
{
    const struct http_head *rq = &http_req_of(c)->m->req;
    const char *target;
    size_t tlen;
    http_target_from_path(rq, &target, &tlen);
    size_t plen = http_path_len(target, tlen);
    const char *query = target + plen;
    size_t qlen = tlen - plen;
    const char *hname = NULL;
    size_t hlen = 0;
    char port[16] = "", location[HTTP_MAX_TARGET_BYTES + 600];

    http_host_name(host ? host : "", host ? host_len : 0, &hname, &hlen);
    if (r->redirect_host != NULL) {
        hname = r->redirect_host;
        hlen = strlen(hname);
    }
    if (r->redirect_port != 0)
        snprintf(port, sizeof(port), ":%u", r->redirect_port);
    const char *scheme = r->redirect_scheme ? r->redirect_scheme : (c->ssl ? "https" : "http");
    const char *path = r->redirect_path ? r->redirect_path : target;
    int path_n = r->redirect_path ? (int)strlen(path) : (int)plen;
    int n = snprintf(location, sizeof(location), "Location: %s://%.*s%s%.*s%.*s\r\n", scheme,
                     (int)hlen, hname, port, path_n, path, (int)qlen, query);
    if (n < 0 || (size_t)n >= sizeof(location))
        return http_error_page(c, 414, "the redirect target would be too long");
    return http_answer(c, r->redirect_status, NULL, location, NULL,
                       http_req_of(c)->m->req.body == HTTP_BODY_NONE);
}

enum conn_state http_respond_rule(struct session *c, const struct cfg_rule *r)
{
    char extra[2048];
    size_t o = 0;
    extra[0] = '\0';
    for (size_t i = 0; i < r->n_respond_headers; i++) {
        int n = snprintf(extra + o, sizeof(extra) - o, "%s: %s\r\n", r->respond_headers[i].name,
                         r->respond_headers[i].value);
        if (n < 0 || (size_t)n >= sizeof(extra) - o)
            break;
        o += (size_t)n;
    }
    bool has_ctype = false;
    for (size_t i = 0; i < r->n_respond_headers; i++)
        has_ctype = has_ctype || strcasecmp(r->respond_headers[i].name, "content-type") == 0;
    return http_answer(c, r->respond_status,
                       has_ctype || r->respond_body == NULL ? NULL : "text/plain; charset=utf-8",
                       o > 0 ? extra : NULL, r->respond_body,
                       http_req_of(c)->m->req.body == HTTP_BODY_NONE);
}
