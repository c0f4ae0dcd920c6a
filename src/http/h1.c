#include "http/http.h"

#include <string.h>

enum { CB_NONE, CB_FIELD, CB_VALUE };

static struct h1 *self(llhttp_t *p)
{
    return p->data;
}

static int refuse(struct h1 *h, unsigned status, const char *reason)
{
    h->err_status = status;
    h->err_reason = reason;
    return -1;
}

/* Extends span s to cover [at, at+len), which follows it in memory. */
static void span_extend(struct h1 *h, struct http_span *s, const char *at, size_t len, bool fresh)
{
    uint32_t off = (uint32_t)(at - h->hd->base);
    if (fresh) {
        s->off = off;
        s->len = (uint32_t)len;
    } else {
        s->len = (uint32_t)(off + len - s->off);
    }
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    struct h1 *h = self(p);
    span_extend(h, &h->hd->method_s, at, len, h->hd->method_s.len == 0);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct h1 *h = self(p);
    span_extend(h, &h->hd->target, at, len, h->hd->target.len == 0);
    if (h->hd->target.len > HTTP_MAX_TARGET_BYTES)
        return refuse(h, 414, "request target too long");
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t len)
{
    struct h1 *h = self(p);
    span_extend(h, &h->hd->reason, at, len, h->hd->reason.len == 0);
    return 0;
}

/* A piece of a response's trailer field, kept when the reader wants them
 * (h1_keep_trailers): all of them, or none when they do not fit. */
static int keep_trailer(struct h1 *h, const char *at, size_t len)
{
    if (h->tr == NULL || h->tr_overflow)
        return 0;
    if (len > h->tr_cap - h->tr_len) {
        h->tr_overflow = true;
        return 0;
    }
    memcpy(h->tr + h->tr_len, at, len);
    h->tr_len += len;
    return 0;
}

/* The end of a trailer field's name or value: a NUL after it. */
static int on_trailer_part_complete(llhttp_t *p)
{
    struct h1 *h = self(p);
    if (h->head_done && !h->is_request)
        return keep_trailer(h, "", 1);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct h1 *h = self(p);
    struct http_head *hd = h->hd;
    bool fresh = h->last_cb != CB_FIELD;
    /* RFC 9112 §7.1.2: trailer fields of a request body would reach the
     * backend as they are, past the header rewriting that removes a
     * client's copies of identity headers; they are refused, not passed. */
    if (h->head_done && h->is_request)
        return refuse(h, 400, "trailer fields in a request");
    if (h->head_done)
        return keep_trailer(h, at, len); /* and pass through as body bytes */
    if (fresh) {
        if (hd->n_headers == HTTP_MAX_HEADERS)
            return refuse(h, h->is_request ? 431 : 502, "too many header fields");
        hd->n_headers++;
        memset(&hd->h[hd->n_headers - 1], 0, sizeof(hd->h[0]));
    }
    span_extend(h, &hd->h[hd->n_headers - 1].name, at, len, fresh);
    h->last_cb = CB_FIELD;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct h1 *h = self(p);
    struct http_head *hd = h->hd;
    bool fresh = h->last_cb != CB_VALUE;
    if (h->head_done)
        return keep_trailer(h, at, len); /* request trailers are refused */
    /* RFC 9110 §5.1: a field name is one or more tchar; a value with no
     * name before it is refused, never attached to the previous field. */
    if (hd->n_headers == 0 || (fresh && h->last_cb != CB_FIELD))
        return refuse(h, h->is_request ? 400 : 502, "header field without a name");
    span_extend(h, &hd->h[hd->n_headers - 1].value, at, len, fresh);
    h->last_cb = CB_VALUE;
    return 0;
}

/*
 * Trims trailing whitespace; returns false on a value that spans a line break,
 * which is obs-fold (RFC 9112 §5.2): refused rather than unfolded, and on an
 * empty field name (RFC 9110 §5.1).
 */
static bool trim_values(struct http_head *hd)
{
    for (size_t i = 0; i < hd->n_headers; i++) {
        struct http_span *v = &hd->h[i].value;
        if (hd->h[i].name.len == 0)
            return false;
        if (memchr(hd->base + v->off, '\n', v->len) || memchr(hd->base + v->off, '\r', v->len))
            return false;
        while (v->len > 0 &&
               (hd->base[v->off + v->len - 1] == ' ' || hd->base[v->off + v->len - 1] == '\t'))
            v->len--;
    }
    return true;
}

/* RFC 9112 §6.3: how the body is delimited, refusing ambiguous framing. */
static int decide_body(struct h1 *h)
{
    struct http_head *hd = h->hd;
    for (size_t i = 0; i < hd->n_headers; i++) {
        if (http_span_ieq(hd, hd->h[i].name, "content-length"))
            h->n_content_length++;
        else if (http_span_ieq(hd, hd->h[i].name, "transfer-encoding"))
            h->n_transfer_encoding++;
    }
    /* RFC 9112 §6.3 item 3: both present is a smuggling vector; refuse it. */
    if (h->n_content_length > 0 && h->n_transfer_encoding > 0)
        return refuse(h, h->is_request ? 400 : 502, "Content-Length with Transfer-Encoding");
    /* RFC 9110 §8.6: repeated Content-Length, even with equal values, is refused. */
    if (h->n_content_length > 1)
        return refuse(h, h->is_request ? 400 : 502, "repeated Content-Length");

    bool chunked = (h->p.flags & F_CHUNKED) != 0;
    bool has_length = (h->p.flags & F_CONTENT_LENGTH) != 0;
    /* RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty
     * framing (a 1.0 hop may not decode chunked, and would read the body
     * by other means); refused, whatever else frames it. */
    if (h->n_transfer_encoding > 0 && hd->major == 1 && hd->minor == 0)
        return refuse(h, h->is_request ? 400 : 502, "Transfer-Encoding in an HTTP/1.0 message");
    if (h->n_transfer_encoding > 0 && !chunked)
        return refuse(h, h->is_request ? 400 : 502, "Transfer-Encoding without final chunked");
    if (h->is_request) {
        if (chunked)
            hd->body = HTTP_BODY_CHUNKED;
        else if (has_length && h->p.content_length > 0)
            hd->body = HTTP_BODY_LENGTH;
        else
            hd->body = HTTP_BODY_NONE;
    } else {
        unsigned st = hd->status;
        if (h->no_body_response || (st >= 100 && st < 200) || st == 204 || st == 304)
            hd->body = HTTP_BODY_NONE;
        else if (chunked)
            hd->body = HTTP_BODY_CHUNKED;
        else if (has_length)
            hd->body = h->p.content_length > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
        else
            hd->body = HTTP_BODY_EOF;
    }
    hd->content_length = hd->body == HTTP_BODY_LENGTH ? h->p.content_length : 0;
    if (h->is_request && h->max_body > 0 && hd->body == HTTP_BODY_LENGTH &&
        hd->content_length > h->max_body)
        return refuse(h, 413, "body over max_body_size");
    return 0;
}

/*
 * The only upgrade that becomes a tunnel is a WebSocket opening handshake
 * (RFC 6455 §4.1: GET, Upgrade: websocket). Any other Upgrade (h2c, TLS)
 * stays hop-by-hop and the request is proxied as a plain one, so a backend
 * cannot switch a connection to a protocol tollgate does not inspect.
 */
static bool is_websocket(const struct http_head *hd)
{
    int u = http_head_find(hd, "upgrade");
    return hd->method == HTTP_GET && u >= 0 && http_span_ieq(hd, hd->h[u].value, "websocket");
}

static bool span_ieq_mem(const struct http_head *hd, struct http_span s, const char *p, size_t len)
{
    if (s.len != len)
        return false;
    const char *a = http_span_ptr(hd, s);
    for (size_t i = 0; i < len; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)p[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

/*
 * The request-target and Host of a request, as RFC 9112 §3.2 asks: a
 * target, at most one Host, whose value http_host_parse accepts (the rules
 * and the Host-vs-SNI check read it the same way); "*" only for OPTIONS
 * (§3.2.4); an absolute-form target (§3.2.2) only when its authority is the
 * Host value, since the next hop routes by the target's authority while
 * rules and the mTLS Host check look at Host. NULL when fine, else why not.
 */
static const char *check_target_and_host(const struct http_head *hd)
{
    int n_host = 0;
    for (size_t i = 0; i < hd->n_headers; i++)
        n_host += http_span_ieq(hd, hd->h[i].name, "host");
    if (n_host > 1)
        return "more than one Host";
    struct http_host parsed;
    if (hd->host >= 0) {
        struct http_span v = hd->h[hd->host].value;
        if (!http_host_parse(http_span_ptr(hd, v), v.len, &parsed))
            return "invalid Host value";
    }
    const char *t = http_span_ptr(hd, hd->target);
    size_t tlen = hd->target.len;
    if (tlen == 0)
        return "empty request target";
    if (t[0] == '/')
        return NULL;
    if (tlen == 1 && t[0] == '*')
        return hd->method == HTTP_OPTIONS ? NULL : "asterisk-form target without OPTIONS";
    if (hd->method == HTTP_CONNECT)
        return NULL; /* authority-form; CONNECT is refused later with 405 */
    const char *sep = tlen >= 3 ? memchr(t, ':', tlen) : NULL;
    if (sep == NULL || (size_t)(t + tlen - sep) < 3 || sep[1] != '/' || sep[2] != '/')
        return "request target in no known form";
    const char *auth = sep + 3, *end = t + tlen;
    const char *auth_end = auth;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    if (memchr(auth, '@', (size_t)(auth_end - auth)) != NULL)
        return "userinfo in the request target"; /* RFC 9110 §4.2.4 */
    if (!http_host_parse(auth, (size_t)(auth_end - auth), &parsed) ||
        parsed.kind == HTTP_HOST_EMPTY)
        return "invalid authority in the request target";
    if (hd->host < 0 || !span_ieq_mem(hd, hd->h[hd->host].value, auth, (size_t)(auth_end - auth)))
        return "absolute-form target whose authority is not the Host";
    return NULL;
}

static int on_headers_complete(llhttp_t *p)
{
    struct h1 *h = self(p);
    struct http_head *hd = h->hd;
    hd->major = p->http_major;
    hd->minor = p->http_minor;
    hd->method = p->method;
    hd->status = p->status_code;
    if (!trim_values(hd))
        return refuse(h, h->is_request ? 400 : 502, "obs-fold or empty name in header field");
    if (decide_body(h) != 0)
        return -1;
    hd->keep_alive = llhttp_should_keep_alive(p) != 0;
    hd->is_upgrade = h->is_request ? p->upgrade != 0 && is_websocket(hd) : hd->status == 101;
    hd->host = http_head_find(hd, "host");
    int e = http_head_find(hd, "expect");
    hd->expect_continue = e >= 0 && http_span_ieq(hd, hd->h[e].value, "100-continue");
    if (h->is_request && hd->major == 1 && hd->minor == 1 && hd->host < 0)
        return refuse(h, 400, "HTTP/1.1 request without Host"); /* RFC 9112 §3.2 */
    /* llhttp takes HTTP/0.9, which has no place behind a proxy (RFC 9112
     * §2.3); only HTTP/1.x is spoken here. */
    if (hd->major != 1)
        return refuse(h, h->is_request ? 400 : 502, "not HTTP/1.x");
    /* RFC 9110 §15: a status code is three digits, 1xx to 5xx. */
    if (!h->is_request && (hd->status < 100 || hd->status > 599))
        return refuse(h, 502, "status code out of range");
    if (h->is_request) {
        const char *why = check_target_and_host(hd);
        if (why != NULL)
            return refuse(h, 400, why);
    }
    h->head_done = true;
    h->length_left = hd->content_length;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct h1 *h = self(p);
    h->body_seen += len;
    if (h->sink != NULL && len <= h->sink_cap - h->sink_len) {
        memcpy(h->sink + h->sink_len, at, len);
        h->sink_len += len;
    }
    if (h->is_request && h->max_body > 0 && h->body_seen > h->max_body)
        return refuse(h, 413, "body over max_body_size");
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    self(p)->message_done = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_header_field_complete = on_trailer_part_complete,
    .on_header_value_complete = on_trailer_part_complete,
    .on_message_complete = on_message_complete,
};

void h1_init(struct h1 *h, bool is_request, uint64_t max_body)
{
    memset(h, 0, sizeof(*h));
    llhttp_init(&h->p, is_request ? HTTP_REQUEST : HTTP_RESPONSE, &settings);
    h->p.data = h;
    h->is_request = is_request;
    h->max_body = max_body;
}

void h1_next(struct h1 *h, bool request_was_head)
{
    bool is_request = h->is_request;
    uint64_t max_body = h->max_body;
    h1_init(h, is_request, max_body);
    h->no_body_response = request_was_head;
}

enum tg_status h1_head(struct h1 *h, struct http_head *hd, const char *base, size_t avail)
{
    if (h->fed == 0) {
        memset(hd, 0, sizeof(*hd));
        hd->is_request = h->is_request;
        hd->host = -1;
    }
    hd->base = base;
    h->hd = hd;
    size_t limit = avail < HTTP_MAX_HEAD_BYTES ? avail : HTTP_MAX_HEAD_BYTES;
    if (limit <= h->fed)
        goto check_limit;
    enum llhttp_errno e = llhttp_execute(&h->p, base + h->fed, limit - h->fed);
    if (e == HPE_PAUSED && h->head_done) {
        hd->len = (size_t)(llhttp_get_error_pos(&h->p) - base);
        h->fed = hd->len;
        return TG_OK;
    }
    if (e != HPE_OK) {
        if (h->err_status == 0) {
            h->err_status = h->is_request ? 400 : 502;
            h->err_reason = llhttp_get_error_reason(&h->p);
        }
        return TG_E_PROTO;
    }
    h->fed = limit;
check_limit:
    if (h->fed >= HTTP_MAX_HEAD_BYTES) {
        bool in_target = h->is_request && hd->n_headers == 0;
        h->err_status = h->is_request ? (in_target ? 414 : 431) : 502;
        h->err_reason = in_target ? "request line too long" : "header section too large";
        return TG_E_PROTO;
    }
    return TG_E_AGAIN;
}

enum tg_status h1_body(struct h1 *h, const char *data, size_t len, size_t *n, bool *done)
{
    const struct http_head *hd = h->hd;
    *n = 0;
    *done = false;
    switch (hd->body) {
    case HTTP_BODY_NONE:
        *done = true;
        return TG_OK;
    case HTTP_BODY_EOF:
        *n = len;
        return TG_OK;
    case HTTP_BODY_LENGTH:
        *n = len < h->length_left ? len : (size_t)h->length_left;
        h->length_left -= *n;
        *done = h->length_left == 0;
        return TG_OK;
    case HTTP_BODY_CHUNKED:
        break;
    }
    if (len == 0)
        return TG_OK;
    llhttp_resume(&h->p);
    enum llhttp_errno e = llhttp_execute(&h->p, data, len);
    if (e == HPE_PAUSED && h->message_done) {
        *n = (size_t)(llhttp_get_error_pos(&h->p) - data);
        *done = true;
        return TG_OK;
    }
    if (e != HPE_OK) {
        if (h->err_status == 0) {
            h->err_status = h->is_request ? 400 : 502;
            h->err_reason = llhttp_get_error_reason(&h->p);
        }
        return TG_E_PROTO;
    }
    *n = len;
    return TG_OK;
}

enum tg_status h1_body_decode(struct h1 *h, const char *data, size_t len, char *out, size_t cap,
                              size_t *n_in, size_t *n_out, bool *done)
{
    /* A chunked body's payload is never longer than its framing: feeding at
     * most cap bytes keeps the decoded bytes within out. */
    if (len > cap)
        len = cap;
    if (h->hd->body != HTTP_BODY_CHUNKED) {
        enum tg_status st = h1_body(h, data, len, n_in, done);
        if (st == TG_OK)
            memcpy(out, data, *n_in);
        *n_out = st == TG_OK ? *n_in : 0;
        return st;
    }
    h->sink = out;
    h->sink_cap = cap;
    h->sink_len = 0;
    enum tg_status st = h1_body(h, data, len, n_in, done);
    *n_out = h->sink_len;
    h->sink = NULL;
    return st;
}

void h1_keep_trailers(struct h1 *h, char *dst, size_t cap)
{
    h->tr = dst;
    h->tr_cap = cap;
}
