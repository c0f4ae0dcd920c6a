#include "proxy/h2.h"

/* An HTTP/2 stream's request, forwarded as HTTP/1.1 (RFC 9113 §8.3 to
 * RFC 9112): the header block becomes a request head that goes through
 * the same checks, routing and identity headers as an HTTP/1.1 client's
 * (http_fwd.c); the body goes out as it arrives, chunked when the client
 * gave no content-length; the target's response head becomes a HEADERS
 * frame and its body DATA frames, taken by nghttp2 as the client's
 * window allows. A response tollgate makes itself (http_answer.c) is
 * read the same way as a target's. */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

#define CONN_ARGS(c) tg_pid(), (unsigned long long)(c)->id

/* Room for a chunk's size line and its CRLF in c2b. */
#define CHUNK_FRAMING 12

static bool put(struct buf *b, const void *p, size_t len)
{
    return buf_append(b, p, len) == TG_OK;
}

static bool put_str(struct buf *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* The fields' lines named name (lower case), joined: cookie crumbs
 * become one Cookie header (RFC 9113 §8.2.3). */
static bool put_cookies(struct buf *b, const uint8_t *f, size_t len)
{
    bool first = true;
    for (size_t i = 0; i < len;) {
        const uint8_t *eol = memchr(f + i, '\n', len - i);
        size_t end = eol ? (size_t)(eol - f) + 1 : len;
        if (end - i > 8 && memcmp(f + i, "cookie: ", 8) == 0) {
            if (!put_str(b, first ? "Cookie: " : "; ") || !put(b, f + i + 8, end - i - 10))
                return false;
            first = false;
        }
        i = end;
    }
    return first || put_str(b, "\r\n");
}

/*
 * The HTTP/1.1 head of the stream's request, into s->head: the request
 * line from :method and :path, Host from :authority (a host field that
 * says otherwise is a malformed request, RFC 9113 §8.3.1), the fields,
 * and Transfer-Encoding: chunked for a body of unknown length. False when
 * it is malformed or does not fit: the caller answers 400 or 431.
 */
static bool make_head(struct session *c, struct h2_stream *s, unsigned *status)
{
    size_t flen;
    const uint8_t *f = buf_rdata(&s->fields, &flen);
    const char *method = (const char *)f + s->method_off;
    *status = 400;
    if (s->method_len == 0 ||
        (s->path_len == 0 && !(s->method_len == 7 && memcmp(method, "CONNECT", 7) == 0)))
        return false;
    if (!worker_buf_get(c->w, &s->head))
        return false;
    *status = 431;
    struct buf *b = &s->head;
    bool ok = put(b, method, s->method_len) && put_str(b, " ");
    if (s->path_len > 0)
        ok = ok && put(b, f + s->path_off, s->path_len);
    else
        ok = ok && put(b, f + s->authority_off, s->authority_len);
    ok = ok && put_str(b, " HTTP/1.1\r\n");
    if (s->authority_len > 0)
        ok = ok && put_str(b, "Host: ") && put(b, f + s->authority_off, s->authority_len) &&
             put_str(b, "\r\n");
    /* The fields after the pseudo-headers' values: "name: value\r\n". */
    size_t i = (size_t)s->method_off + s->method_len;
    if (s->path_off + s->path_len > i)
        i = (size_t)s->path_off + s->path_len;
    if (s->authority_len > 0 && (size_t)s->authority_off + s->authority_len > i)
        i = (size_t)s->authority_off + s->authority_len;
    const uint8_t *lines = f + i;
    size_t lines_len = flen - i;
    for (size_t j = 0; ok && j < lines_len;) {
        const uint8_t *eol = memchr(lines + j, '\n', lines_len - j);
        size_t end = eol ? (size_t)(eol - lines) + 1 : lines_len;
        const uint8_t *line = lines + j;
        size_t n = end - j;
        j = end;
        if (n > 8 && memcmp(line, "cookie: ", 8) == 0)
            continue;
        if (n > 6 && memcmp(line, "host: ", 6) == 0 && s->authority_len > 0) {
            if (n - 8 != s->authority_len ||
                strncasecmp((const char *)line + 6, (const char *)f + s->authority_off,
                            s->authority_len) != 0) {
                *status = 400;
                return false;
            }
            continue;
        }
        ok = put(b, line, n);
    }
    ok = ok && put_cookies(b, lines, lines_len);
    if (!s->headers_end_stream && !s->has_length)
        ok = ok && put_str(b, "Transfer-Encoding: chunked\r\n");
    return ok && put_str(b, "\r\n");
}

/* The whole header block arrived: check it, then route it. */
static enum conn_state head_ready(struct session *c, struct h2_stream *s)
{
    struct http_req *r = &s->r;
    /* The connection was cut (client certificate judged invalid): no new
     * request starts on it. */
    if (c->cut_reason != NULL)
        return CONN_ST_CLOSED;
    h2_of(c)->n_requests++;
    if (!http_msg_get(c, r))
        return CONN_ST_CLOSED;
    http_req_begin(c);
    unsigned status = 0;
    if (s->too_large)
        return http_error_page(c, 431, "the header list is over h2_max_header_list_size");
    if (!make_head(c, s, &status))
        return http_error_page(
            c, status, status == 400 ? "malformed request" : "the request head is too large");
    s->fields.r = s->fields.w = 0;
    worker_buf_put(c->w, &s->fields);
    size_t len;
    const uint8_t *p = buf_rdata(&s->head, &len);
    enum tg_status st = h1_head(&r->m->req_p, &r->m->req, (const char *)p, len);
    if (st != TG_OK)
        return http_error_page(c, st == TG_E_PROTO ? r->m->req_p.err_status : 400,
                               st == TG_E_PROTO ? r->m->req_p.err_reason : "malformed request");
    if (s->too_large_body) {
        s->discard = true;
        return http_error_page(c, 413, "body over max_body_size");
    }
    return http_request_ready(c);
}

/* The request body: from s->body into c2b, chunked when the client gave
 * no length. The client's window
 * opens by what went into c2b. */
static void request_body(struct session *c, struct h2_stream *s, bool *progress)
{
    struct http_req *r = &s->r;
    struct exchange *x = &r->x;
    bool chunked = r->m->req.body == HTTP_BODY_CHUNKED;
    if (r->req_done)
        return;
    while (!buf_is_empty(&s->body) && worker_buf_get(c->w, &x->c2b)) {
        size_t len, room;
        const uint8_t *src = buf_rdata(&s->body, &len);
        uint8_t *dst = buf_wspace(&x->c2b, &room);
        if (chunked && room <= CHUNK_FRAMING)
            break;
        size_t n = chunked ? room - CHUNK_FRAMING : room;
        if (n > len)
            n = len;
        if (n == 0)
            break;
        size_t o = chunked ? (size_t)snprintf((char *)dst, room, "%zx\r\n", n) : 0;
        memcpy(dst + o, src, n);
        o += n;
        if (chunked) {
            memcpy(dst + o, "\r\n", 2);
            o += 2;
        }
        buf_commit(&x->c2b, o);
        buf_consume(&s->body, n);
        r->req_bytes += n;
        (void)nghttp2_session_consume(h2_of(c)->ng, s->id, n);
        *progress = true;
    }
    if (buf_is_empty(&s->body))
        worker_buf_put(c->w, &s->body);
    if (!s->end_stream || !buf_is_empty(&s->body))
        return;
    if (chunked && (!worker_buf_get(c->w, &x->c2b) || !put_str(&x->c2b, "0\r\n\r\n")))
        return; /* wait for room */
    r->req_done = true;
    *progress = true;
}

/* The response head in bin, as a HEADERS frame: names in lower case,
 * without the fields of the HTTP/1.1 connection (http_hdr_response_fields)
 * and its framing (DATA frames carry the body as it is). */
static enum conn_state submit_response(struct session *c, struct h2_stream *s)
{
    struct http_req *r = &s->r;
    struct http_head *rs = &r->m->resp;
    nghttp2_nv nv[HTTP_MAX_HEADERS + 2];
    char lower[HTTP_MAX_HEAD_BYTES], status[4];
    size_t n = 0, used = 0;
    unsigned code = rs->status % 1000; /* three digits, as "%03u" (no format per response) */
    status[0] = (char)('0' + code / 100);
    status[1] = (char)('0' + code / 10 % 10);
    status[2] = (char)('0' + code % 10);
    status[3] = '\0';
    nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3, NGHTTP2_NV_FLAG_NONE};
    bool pass[HTTP_MAX_HEADERS];
    http_hdr_response_fields(rs, pass);
    for (size_t i = 0; i < rs->n_headers && n < TG_ARRAY_LEN(nv) - 1; i++) {
        const struct http_header *f = &rs->h[i];
        if (!pass[i] || http_span_ieq(rs, f->name, "transfer-encoding") ||
            used + f->name.len > sizeof(lower))
            continue;
        const char *name = http_span_ptr(rs, f->name);
        for (size_t k = 0; k < f->name.len; k++)
            lower[used + k] = (char)tolower((unsigned char)name[k]);
        nv[n++] = (nghttp2_nv){(uint8_t *)lower + used, (uint8_t *)http_span_ptr(rs, f->value),
                               f->name.len, f->value.len, NGHTTP2_NV_FLAG_NONE};
        used += f->name.len;
    }
    /* The sticky cookie: "Set-Cookie: value\r\n". */
    const char *ck = r->m->set_cookie;
    if (ck[0] != '\0' && n < TG_ARRAY_LEN(nv)) {
        const char *v = strchr(ck, ':');
        if (v != NULL) {
            v += 2;
            size_t vl = strcspn(v, "\r\n");
            nv[n++] =
                (nghttp2_nv){(uint8_t *)"set-cookie", (uint8_t *)v, 10, vl, NGHTTP2_NV_FLAG_NONE};
        }
    }
    bool no_body = rs->body == HTTP_BODY_NONE;
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = h2_stream_read_body};
    if (nghttp2_submit_response(h2_of(c)->ng, s->id, nv, n, no_body ? NULL : &dp) != 0)
        return CONN_ST_CLOSED;
    buf_consume(&r->bin, rs->len);
    /* A chunked body may end with trailer fields: kept to be sent as the
     * stream's trailers (a missing block only loses them). */
    if (rs->body == HTTP_BODY_CHUNKED && (s->trailers = malloc(H2_TRAILERS_MAX)) != NULL)
        h1_keep_trailers(&r->m->resp_p, s->trailers, H2_TRAILERS_MAX);
    s->held = false;
    r->resp_head_parsed = true; /* bin may now be compacted */
    r->sent_to_client = true;
    r->status = rs->status;
    r->resp_head_done = true;
    r->resp_done = no_body;
    c->ex->relay_timeout = (ev_tstamp)c->l->cfg->idle_timeout_ms / 1000.0;
    if (r->head_kept > 0) {
        buf_consume(r->head, r->head_kept);
        r->head_kept = 0;
    }
    return CONN_ST_RELAY;
}

/*
 * A final answer that comes while the client is still sending its body (a
 * 413 or 401 from the head alone) waits until it is all here, so that it
 * goes out in one piece: a client that stops sending as soon as it sees
 * the status may end its stream short of its content-length, which makes
 * the request malformed and the stream reset (RFC 9113 §8.1.1), and an
 * answer still on its way would be lost with it.
 */
static bool hold_early_answer(const struct http_req *r)
{
    const struct http_head *rs = &r->m->resp;
    if (r->req_done || r->x.be.rd_shut || buf_is_full(&r->bin))
        return false;
    if (rs->body == HTTP_BODY_LENGTH)
        return buf_len(&r->bin) - rs->len < rs->content_length;
    return rs->body == HTTP_BODY_EOF;
}

/* The response head from bin: 1xx are dropped (an HTTP/2 client needs
 * none of them), the final one is submitted. */
static enum conn_state response_head(struct session *c, struct h2_stream *s, bool *progress)
{
    struct http_req *r = &s->r;
    if (s->held)
        return hold_early_answer(r) ? CONN_ST_RELAY : submit_response(c, s);
    for (;;) {
        size_t len;
        const uint8_t *src = buf_rdata(&r->bin, &len);
        enum tg_status st = h1_head(&r->m->resp_p, &r->m->resp, (const char *)src, len);
        if (st == TG_E_AGAIN)
            return r->x.be.rd_shut ? http_backend_failed(c, "the backend closed before responding")
                                   : CONN_ST_RELAY;
        if (st != TG_OK)
            return http_backend_failed(c, "the backend sent an invalid response");
        *progress = true;
        unsigned code = r->m->resp.status;
        if (code == 101)
            return http_backend_failed(c, "the backend switched protocols unasked");
        if (code >= 200) {
            s->held = hold_early_answer(r);
            return s->held ? CONN_ST_RELAY : submit_response(c, s);
        }
        buf_consume(&r->bin, r->m->resp.len);
        buf_compact(&r->bin); /* the next head from the front: see http1.c */
        h1_next(&r->m->resp_p, r->m->req.method == HTTP_HEAD);
    }
}

static enum conn_state relay(struct session *c, struct h2_stream *s)
{
    struct http_req *r = &s->r;
    enum conn_state next;
    bool progress;
    do {
        progress = false;
        request_body(c, s, &progress);
        if ((next = http_backend_io(c, &progress)) != CONN_ST_RELAY)
            return next;
        if (!r->resp_head_done && (!buf_is_empty(&r->bin) || r->x.be.rd_shut)) {
            if ((next = response_head(c, s, &progress)) != CONN_ST_RELAY)
                return next;
        }
        if (progress)
            s->last_activity = ev_now(c->w->loop);
    } while (progress);
    if (r->resp_head_done && s->deferred && (!buf_is_empty(&r->bin) || r->x.be.rd_shut)) {
        s->deferred = false;
        (void)nghttp2_session_resume_data(h2_of(c)->ng, s->id);
    }
    if (r->resp_done) {
        http_release_backend(c);
        return CONN_ST_DRAIN;
    }
    return CONN_ST_RELAY;
}

/* An answer tollgate made (b2c, HTTP/1.1): read as a target's response
 * that is all in bin, with no backend connection behind it. The rest of
 * the request body is not wanted. */
static enum conn_state respond(struct session *c, struct h2_stream *s)
{
    struct http_req *r = &s->r;
    struct exchange *x = &r->x;
    if (x->be.fd >= 0)
        http_close_backend(c);
    struct buf answer = x->b2c;
    x->b2c = r->bin;
    r->bin = answer;
    x->b2c.r = x->b2c.w = 0;
    worker_buf_put(c->w, &x->b2c);
    x->be.rd_shut = true;
    r->resp_head_parsed = false;
    r->resp_head_done = false;
    h1_next(&r->m->resp_p, r->m->req.method == HTTP_HEAD);
    if (!r->req_done) {
        s->discard = true;
        size_t len = buf_len(&s->body);
        if (len > 0)
            (void)nghttp2_session_consume(h2_of(c)->ng, s->id, len);
        s->body.r = s->body.w = 0;
        worker_buf_put(c->w, &s->body);
        r->req_done = true;
    }
    return CONN_ST_RELAY;
}

/* A routed request found unacceptable by what came after its head: the
 * target gets no more of it, the client an error page (or, when its
 * response has started, a reset). */
static enum conn_state refuse_routed(struct session *c, struct h2_stream *s, unsigned status,
                                     const char *why)
{
    s->discard = true;
    http_close_backend(c);
    return http_error_page(c, status, why);
}

static enum conn_state step(struct session *c, struct h2_stream *s)
{
    bool routed = s->st == CONN_ST_PICK || s->st == CONN_ST_CONNECT || s->st == CONN_ST_RELAY;
    /* The body went over max_body_size; or it ended with trailers, refused
     * as from HTTP/1.1 clients: a target that merged them into the header
     * fields would take identity fields tollgate never rewrote. */
    if (routed && s->too_large_body && !s->discard)
        return refuse_routed(c, s, 413, "body over max_body_size");
    if (routed && s->has_trailers && !s->discard)
        return refuse_routed(c, s, 400, "trailer fields in requests are refused");
    switch (s->st) {
    case CONN_ST_READ_HEAD:
        return s->head_ready ? head_ready(c, s) : CONN_ST_READ_HEAD;
    case CONN_ST_PICK:
        return http_pick(c);
    case CONN_ST_CONNECT:
        /* A connect in progress is asked for its result only once the
         * socket became writable (or its time is up): a stream is stepped
         * on every pass of its connection. */
        if (s->r.x.be.fd >= 0 && s->r.x.be_ssl == NULL && !s->r.x.be.wrote_ready && !c->timed_out)
            return CONN_ST_CONNECT;
        return http_connect(c);
    case CONN_ST_RELAY:
        return relay(c, s);
    case CONN_ST_RESPOND:
        return respond(c, s);
    default:
        return s->st;
    }
}

/* The backend's read/write interest in the stream's state. */
static void interest(struct session *c, struct h2_stream *s)
{
    struct http_req *r = &s->r;
    struct exchange *x = &r->x;
    int ev = 0;
    if (s->st == CONN_ST_CONNECT)
        ev = EV_WRITE;
    if (s->st == CONN_ST_RELAY && x->be.fd >= 0) {
        if (!x->be.rd_shut && !r->resp_done && !buf_is_full(&r->bin))
            ev |= EV_READ;
        if (!buf_is_empty(&x->c2b) && !x->be.wr_shut)
            ev |= EV_WRITE;
    }
    session_side_set(c, &x->be, ev);
}

/* A stream that cannot go on: reset it (the client sees RST_STREAM). */
static void reset(struct session *c, struct h2_stream *s, uint32_t code)
{
    if (s->r.x.be.fd >= 0)
        http_close_backend(c);
    (void)nghttp2_submit_rst_stream(h2_of(c)->ng, NGHTTP2_FLAG_NONE, s->id, code);
}

void h2_stream_refuse(struct session *c, struct h2_stream *s)
{
    c->ex = &s->r.x;
    reset(c, s, NGHTTP2_REFUSED_STREAM);
    s->st = CONN_ST_CLOSED;
}

static void enter(struct session *c, struct h2_stream *s, enum conn_state st)
{
    s->last_activity = ev_now(c->w->loop);
    if (st == CONN_ST_CONNECT)
        s->r.x.relay_timeout = (ev_tstamp)c->l->cfg->connect_timeout_ms / 1000.0;
    if (st == CONN_ST_CLOSED)
        reset(c, s, NGHTTP2_INTERNAL_ERROR);
}

/* Done before the client finished its request (an early answer): what it
 * still sends is taken and dropped for a while, as an HTTP/1.1 lingering
 * close does, since some clients take an early RST_STREAM for an error even
 * after a whole response; then RST_STREAM(NO_ERROR) asks it to stop
 * (RFC 9113 §8.1). */
#define H2_LINGER_SECONDS 2.0

static void stop_linger(struct session *c, struct h2_stream *s)
{
    if (s->rst_sent)
        return;
    s->rst_sent = true;
    (void)nghttp2_submit_rst_stream(h2_of(c)->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
}

void h2_stream_discarded(struct session *c, struct h2_stream *s, size_t len)
{
    s->discarded += len;
    if (s->discarded > CONN_LINGER_MAX_BYTES)
        stop_linger(c, s);
}

void h2_stream_run(struct session *c, struct h2_stream *s)
{
    c->ex = &s->r.x;
    for (;;) {
        enum conn_state next = step(c, s);
        if (next == s->st)
            break;
        exchange_lb_step(c, s->st, next);
        s->st = next;
        enter(c, s, next);
        if (next == CONN_ST_CLOSED || next == CONN_ST_DRAIN)
            break;
    }
    interest(c, s);
}

/* Fields never sent as trailers: framing, connection-specific, routing. */
static bool is_forbidden_trailer(const char *name)
{
    static const char *const no[] = {"content-length", "transfer-encoding", "connection",
                                     "keep-alive",     "proxy-connection",  "te",
                                     "trailer",        "upgrade",           "host"};
    for (size_t i = 0; i < TG_ARRAY_LEN(no); i++)
        if (strcmp(name, no[i]) == 0)
            return true;
    return false;
}

/* The target's trailer fields (kept by the parser as name, NUL, value,
 * NUL) as the stream's trailers, names in lower case. True when there are
 * some: the DATA that ends the body then does not end the stream. */
static bool submit_trailers(struct session *c, struct h2_stream *s)
{
    const struct h1 *p = &s->r.m->resp_p;
    nghttp2_nv nv[H2_TRAILERS_FIELDS];
    size_t n = 0;
    if (s->trailers == NULL || p->tr_overflow)
        return false;
    for (size_t i = 0; i < p->tr_len && n < TG_ARRAY_LEN(nv);) {
        char *name = s->trailers + i;
        size_t nl = strnlen(name, p->tr_len - i);
        if (i + nl + 1 >= p->tr_len)
            break; /* a name without its value */
        char *value = name + nl + 1;
        size_t vl = strnlen(value, p->tr_len - i - nl - 1);
        i += nl + 1 + vl + 1;
        for (size_t k = 0; k < nl; k++)
            name[k] = (char)tolower((unsigned char)name[k]);
        while (vl > 0 && (value[vl - 1] == ' ' || value[vl - 1] == '\t'))
            vl--;
        if (nl == 0 || is_forbidden_trailer(name))
            continue;
        nv[n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nl, vl, NGHTTP2_NV_FLAG_NONE};
    }
    return n > 0 && nghttp2_submit_trailer(h2_of(c)->ng, s->id, nv, n) == 0;
}

ssize_t h2_stream_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)ng, (void)id;
    struct session *c = user;
    struct h2_stream *s = src->ptr;
    struct http_req *r = &s->r;
    for (;;) {
        size_t len, n_in = 0, n_out = 0;
        bool done = false;
        const uint8_t *p = buf_rdata(&r->bin, &len);
        if (len == 0)
            break;
        if (h1_body_decode(&r->m->resp_p, (const char *)p, len, (char *)buf, length, &n_in, &n_out,
                           &done) != TG_OK) {
            r->x.outcome = CONN_OUT_BAD_GATEWAY;
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        buf_consume(&r->bin, n_in);
        r->resp_bytes += n_out;
        s->bytes_out += n_out;
        if (done) {
            r->resp_done = true;
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            if (submit_trailers(c, s))
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
        if (n_out > 0 || done)
            return (ssize_t)n_out;
    }
    if (r->x.be.rd_shut) {
        if (r->m->resp.body == HTTP_BODY_EOF) {
            r->resp_done = true;
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            return 0;
        }
        r->x.outcome = CONN_OUT_BACKEND_TRUNCATED;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
}

ev_tstamp h2_stream_deadline(const struct session *c, const struct h2_stream *s)
{
    const struct cfg_listener *l = c->l->cfg;
    switch (s->st) {
    case CONN_ST_READ_HEAD:
        return s->born + (ev_tstamp)l->header_timeout_ms / 1000.0;
    case CONN_ST_CONNECT:
        return s->last_activity + (ev_tstamp)l->connect_timeout_ms / 1000.0;
    case CONN_ST_RELAY:
        return s->last_activity + s->r.x.relay_timeout;
    case CONN_ST_DRAIN:
        return s->end_stream || s->rst_sent ? 0 : s->last_activity + H2_LINGER_SECONDS;
    default:
        return 0;
    }
}

void h2_stream_timeout(struct session *c, struct h2_stream *s)
{
    struct http_req *r = &s->r;
    c->ex = &r->x;
    if (s->st == CONN_ST_DRAIN) {
        stop_linger(c, s);
        return;
    }
    if (s->st == CONN_ST_READ_HEAD) {
        reset(c, s, NGHTTP2_CANCEL);
        s->st = CONN_ST_CLOSED;
        return;
    }
    if (s->st == CONN_ST_RELAY && !r->resp_head_done) {
        http_close_backend(c);
        r->x.outcome = CONN_OUT_RESPONSE_TIMEOUT;
        enum conn_state next = http_error_page(c, 504, "the backend did not answer in time");
        exchange_lb_step(c, s->st, next);
        s->st = next;
        h2_stream_run(c, s);
        return;
    }
    if (s->st == CONN_ST_CONNECT) {
        c->timed_out = true;
        h2_stream_run(c, s);
        c->timed_out = false;
        return;
    }
    r->x.outcome = CONN_OUT_IDLE_TIMEOUT;
    exchange_lb_step(c, s->st, CONN_ST_CLOSED);
    s->st = CONN_ST_CLOSED;
    reset(c, s, NGHTTP2_CANCEL);
}

void h2_stream_free(struct session *c, struct h2_stream *s)
{
    struct h2_conn *h = h2_of(c);
    struct http_req *r = &s->r;
    c->ex = &r->x;
    /* The response went out whole and the stream closed before it was
     * run again: its backend connection may go back to the pool. */
    if (s->st == CONN_ST_RELAY && r->resp_done) {
        http_release_backend(c);
        exchange_lb_step(c, s->st, CONN_ST_DRAIN);
        s->st = CONN_ST_DRAIN;
    }
    if (s->st != CONN_ST_DRAIN && s->st != CONN_ST_CLOSED && r->x.outcome == CONN_OUT_OK)
        r->x.outcome =
            s->close_error != NGHTTP2_NO_ERROR ? CONN_OUT_CLIENT_RESET : CONN_OUT_CLIENT_CLOSED;
    exchange_lb_step(c, s->st, CONN_ST_CLOSED);
    /* A stream reset before its header block was whole is not a request. */
    if (r->t_req > 0) {
        shm_count_request(c->l->stats, r->status, ev_time() - r->t_req);
        shm_count_h2_request(c->l->stats);
        session_access_log(c);
    }
    http_msg_put(r);
    /* Body bytes the stream still held were never given back to the
     * connection's window (it opens as bytes go to the target): give them
     * back now, or every such stream would shrink it for good. */
    size_t held = buf_len(&s->body);
    if (held > 0 && h->ng != NULL)
        (void)nghttp2_session_consume_connection(h->ng, held);
    free(s->trailers);
    struct buf *bufs[] = {&s->fields, &s->head, &s->body, &r->bin};
    for (size_t i = 0; i < TG_ARRAY_LEN(bufs); i++) {
        bufs[i]->r = bufs[i]->w = 0;
        worker_buf_put(c->w, bufs[i]);
    }
    exchange_fini(c->w, &r->x);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    h->n_streams--;
    shm_count_h2_streams(c->l->stats, -1);
    free(s);
    c->ex = &h->x;
}
