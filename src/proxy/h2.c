#include "proxy/h2.h"

/* HTTP/2 toward clients (RFC 9113), with nghttp2 for the framing, HPACK,
 * the stream states and flow control. This file is the connection: the
 * bytes between the client and nghttp2, the streams' birth and end, the
 * limits, timeouts and GOAWAY. Each stream's request is forwarded as
 * HTTP/1.1 (h2_stream.c, http_fwd.c).
 *
 * nghttp2 never touches a socket: what the client sent goes in through
 * nghttp2_session_mem_recv(), what it has to send comes out of
 * nghttp2_session_mem_send() into the connection's output buffer (x.b2c),
 * which is written to the client as it takes it. The callbacks only note
 * what arrived; streams are run after each read, outside nghttp2. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define CONN_ARGS(c) tg_pid(), (unsigned long long)(c)->id

static struct session *session_of(void *user)
{
    return user;
}

static struct h2_stream *stream_get(struct session *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h2_of(c)->ng, id);
}

/* The reason code of a connection error, from the HTTP/2 error code. */
static const char *error_reason(uint32_t code)
{
    switch (code) {
    case NGHTTP2_PROTOCOL_ERROR:
        return "h2_protocol_error";
    case NGHTTP2_FLOW_CONTROL_ERROR:
        return "h2_flow_control_error";
    case NGHTTP2_FRAME_SIZE_ERROR:
        return "h2_frame_size_error";
    case NGHTTP2_COMPRESSION_ERROR:
        return "h2_compression_error";
    case NGHTTP2_ENHANCE_YOUR_CALM:
        return "h2_flood";
    case NGHTTP2_SETTINGS_TIMEOUT:
        return "h2_settings_timeout";
    default:
        return "h2_error";
    }
}

/* One line for a connection ended because of what the client did. */
static void log_conn_error(struct session *c, const char *reason, const char *detail)
{
    struct h2_conn *h = h2_of(c);
    if (h->error != NULL)
        return;
    h->error = reason;
    char peer[64], e_detail[LOG_KV_MAX];
    net_addr_format(&c->peer, peer, sizeof(peer));
    log_warn("event=h2_connection_error listener=%s " CONN_FMT " client=%s reason=%s "
             "streams=%zu detail=%s",
             c->l->cfg->name, CONN_ARGS(c), peer, reason, h->n_streams,
             log_kv(e_detail, sizeof(e_detail), detail));
    shm_count_h2_error(c->l->stats, reason);
}

/*
 * RFC 9113 §5.1.1: a client's new stream id is above every one it used
 * before; HEADERS on a lower id it never opened is a connection error
 * PROTOCOL_ERROR. nghttp2 would drop that frame without a word, leaving the
 * client waiting for an answer that never comes. A lower id it did open
 * (trailers, or frames on a stream already reset, which must be ignored)
 * is nghttp2's to handle: the ids of the last H2_ID_RING streams tell
 * which; older ones are left to nghttp2.
 */
static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user)
{
    struct session *c = session_of(user);
    struct h2_conn *h = h2_of(c);
    if (hd->type != NGHTTP2_HEADERS || h->fatal || (hd->stream_id & 1) == 0)
        return 0;
    int32_t id = hd->stream_id;
    int32_t *slot = &h->opened[((uint32_t)id >> 1) % H2_ID_RING];
    if (id > h->last_stream) {
        h->last_stream = id;
        *slot = id;
        return 0;
    }
    if (*slot == id || h->last_stream - id >= 2 * H2_ID_RING ||
        nghttp2_session_find_stream(ng, id) != NULL)
        return 0;
    log_conn_error(c, "h2_protocol_error", "HEADERS on a stream id below the last one");
    (void)nghttp2_session_terminate_session(ng, NGHTTP2_PROTOCOL_ERROR);
    h->fatal = true;
    return 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    struct session *c = session_of(user);
    struct h2_conn *h = h2_of(c);
    if (frame->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        struct h2_stream *s = stream_get(c, frame->hd.stream_id);
        if (s != NULL)
            s->in_trailers = true;
        return 0;
    }
    /* nghttp2 holds the client to SETTINGS_MAX_CONCURRENT_STREAMS once the
     * client acknowledged it; this holds it before that too. */
    if (h->n_streams >= c->l->cfg->h2_max_streams || h->goaway_sent || c->cut_reason != NULL) {
        int rv = nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                           NGHTTP2_REFUSED_STREAM);
        (void)rv;
        return 0;
    }
    struct h2_stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->id = frame->hd.stream_id;
    s->st = CONN_ST_READ_HEAD;
    s->t_start = ev_time();
    s->last_activity = s->born = ev_now(c->w->loop);
    s->r.head = &s->head;
    s->r.log_path = "";
    exchange_init(&s->r.x, c);
    s->next = h->streams;
    if (h->streams != NULL)
        h->streams->prev = s;
    h->streams = s;
    h->n_streams++;
    h->n_opened++;
    shm_count_h2_streams(c->l->stats, 1);
    nghttp2_session_set_stream_user_data(ng, s->id, s);
    return 0;
}

/* Appends len bytes at p to b, a pooled block first, then a larger one
 * of at most max bytes. */
static bool append(struct worker *w, struct buf *b, const void *p, size_t len, size_t max)
{
    if (!worker_buf_get(w, b))
        return false;
    if (buf_append(b, p, len) == TG_OK)
        return true;
    size_t need = buf_len(b) + len;
    if (need > max)
        return false;
    struct buf bigger = {0};
    if (buf_init(&bigger, max) != TG_OK)
        return false;
    size_t n;
    const uint8_t *old = buf_rdata(b, &n);
    if (buf_append(&bigger, old, n) != TG_OK || buf_append(&bigger, p, len) != TG_OK) {
        buf_fini(&bigger);
        return false;
    }
    b->r = b->w = 0;
    worker_buf_put(w, b);
    buf_fini(b);
    *b = bigger;
    return true;
}

/* Keeps a pseudo-header's value in the stream's fields. */
static bool keep_pseudo(struct worker *w, struct h2_stream *s, const uint8_t *v, size_t len,
                        uint16_t *off, uint16_t *n)
{
    size_t at = buf_len(&s->fields);
    if (!append(w, &s->fields, v, len, WORKER_BUF_SIZE))
        return false;
    *off = (uint16_t)at;
    *n = (uint16_t)len;
    return true;
}

static bool is(const uint8_t *name, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(name, lit, len) == 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)ng, (void)flags;
    struct session *c = session_of(user);
    struct h2_stream *s = stream_get(c, frame->hd.stream_id);
    if (s == NULL || s->too_large)
        return 0;
    /* RFC 9113 §6.5.2: each field counts its name, its value and 32. */
    s->list_size += namelen + valuelen + 32;
    if (s->list_size > c->l->cfg->h2_max_header_list_size) {
        s->too_large = true;
        return 0;
    }
    bool ok = true;
    if (s->in_trailers) {
        s->has_trailers = true; /* refused: see h2_stream.c trailers_refused */
    } else if (namelen > 0 && name[0] == ':') {
        /* nghttp2 checked the pseudo-headers: known, once each, first. */
        if (is(name, namelen, ":method"))
            ok = keep_pseudo(c->w, s, value, valuelen, &s->method_off, &s->method_len);
        else if (is(name, namelen, ":path"))
            ok = keep_pseudo(c->w, s, value, valuelen, &s->path_off, &s->path_len);
        else if (is(name, namelen, ":authority"))
            ok = keep_pseudo(c->w, s, value, valuelen, &s->authority_off, &s->authority_len);
    } else {
        if (is(name, namelen, "content-length"))
            s->has_length = true;
        ok = append(c->w, &s->fields, name, namelen, WORKER_BUF_SIZE) &&
             append(c->w, &s->fields, ": ", 2, WORKER_BUF_SIZE) &&
             append(c->w, &s->fields, value, valuelen, WORKER_BUF_SIZE) &&
             append(c->w, &s->fields, "\r\n", 2, WORKER_BUF_SIZE);
    }
    if (!ok)
        s->too_large = true;
    return 0;
}

/* Stream resets from the client, h2_max_resets_per_second with a burst
 * of as many (a token bucket): past that, the connection ends with
 * GOAWAY(ENHANCE_YOUR_CALM), the answer to CVE-2023-44487. */
static void count_reset(struct session *c)
{
    struct h2_conn *h = h2_of(c);
    double rate = c->l->cfg->h2_max_resets_per_second;
    ev_tstamp now = ev_now(c->w->loop);
    if (h->reset_at == 0)
        h->reset_tokens = rate;
    else
        h->reset_tokens += (now - h->reset_at) * rate;
    if (h->reset_tokens > rate)
        h->reset_tokens = rate;
    h->reset_at = now;
    h->reset_tokens -= 1.0;
    if (h->reset_tokens >= 0 || h->fatal)
        return;
    log_conn_error(c, "h2_flood", "stream resets over h2_max_resets_per_second");
    (void)nghttp2_session_terminate_session(h->ng, NGHTTP2_ENHANCE_YOUR_CALM);
    h->fatal = true;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    (void)ng;
    struct session *c = session_of(user);
    if (frame->hd.type == NGHTTP2_RST_STREAM)
        count_reset(c);
    struct h2_stream *s = stream_get(c, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    s->last_activity = ev_now(c->w->loop);
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            s->end_stream = true;
        if (!s->in_trailers) {
            s->head_ready = true;
            s->headers_end_stream = s->end_stream;
        }
        break;
    case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
            s->end_stream = true;
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    struct session *c = session_of(user);
    struct h2_stream *s = stream_get(c, id);
    if (s == NULL) {
        (void)nghttp2_session_consume_connection(ng, len);
        return 0;
    }
    s->bytes_in += len;
    s->body_seen += len;
    s->last_activity = ev_now(c->w->loop);
    uint64_t max = c->l->cfg->max_body_size;
    if (max > 0 && s->body_seen > max && !s->discard)
        s->too_large_body = true;
    bool unwanted = s->discard || s->too_large_body || s->st == CONN_ST_DRAIN;
    if (unwanted) {
        (void)nghttp2_session_consume(ng, id, len);
        h2_stream_discarded(c, s, len);
        return 0;
    }
    if (!append(c->w, &s->body, data, len, NGHTTP2_INITIAL_WINDOW_SIZE)) {
        /* More than any window allows, or out of memory. */
        (void)nghttp2_session_consume(ng, id, len);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
    (void)ng;
    struct session *c = session_of(user);
    struct h2_stream *s = stream_get(c, id);
    if (s == NULL)
        return 0;
    s->close_error = error_code;
    h2_stream_free(c, s);
    return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *frame, void *user)
{
    (void)ng;
    struct session *c = session_of(user);
    if (frame->hd.type == NGHTTP2_RST_STREAM)
        log_debug("event=h2_stream_reset " CONN_FMT " stream=%d error=%s", CONN_ARGS(c),
                  frame->hd.stream_id, nghttp2_http2_strerror(frame->rst_stream.error_code));
    if (frame->hd.type == NGHTTP2_GOAWAY) {
        h2_of(c)->goaway_sent = true;
        if (frame->goaway.error_code != NGHTTP2_NO_ERROR)
            log_conn_error(c, error_reason(frame->goaway.error_code),
                           nghttp2_http2_strerror(frame->goaway.error_code));
    }
    return 0;
}

/* nghttp2 refused a frame or a header: the stream (or the connection)
 * ends with the error nghttp2 chose; noted at debug level, since the
 * client sees it. */
static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *frame, int lib_error,
                            void *user)
{
    (void)ng;
    struct session *c = session_of(user);
    log_debug("event=h2_invalid_frame " CONN_FMT " stream=%d type=%u error=\"%s\"", CONN_ARGS(c),
              frame->hd.stream_id, frame->hd.type, nghttp2_strerror(lib_error));
    return 0;
}

static enum tg_status h2_init(struct session *c)
{
    struct h2_conn *h = h2_of(c);
    const struct cfg_listener *l = c->l->cfg;
    exchange_init(&h->x, c);
    c->ex = &h->x;
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return TG_E_NOMEM;
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cb);
        return TG_E_NOMEM;
    }
    /* Window updates follow what the targets took, not what arrived. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* CVE-2023-44487, streams opened and reset at once, is counted by
     * count_reset(); nghttp2's own limit stays as a looser backstop. */
    nghttp2_option_set_stream_reset_rate_limit(opt, 4ull * l->h2_max_resets_per_second,
                                               4ull * l->h2_max_resets_per_second);
    int rv = nghttp2_session_server_new2(&h->ng, cb, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0)
        return TG_E_NOMEM;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, l->h2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, l->h2_max_header_list_size},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, TG_ARRAY_LEN(iv)) != 0 ||
        nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW) != 0)
        return TG_E_NOMEM;
    shm_count_h2_conn(c->l->stats);
    return TG_OK;
}

static void h2_fini(struct session *c)
{
    struct h2_conn *h = h2_of(c);
    while (h->streams != NULL)
        h2_stream_free(c, h->streams);
    nghttp2_session_del(h->ng);
    h->ng = NULL;
    c->ex = &h->x;
    exchange_fini(c->w, &h->x);
}

static enum conn_state h2_established(struct session *c)
{
    return CONN_ST_RELAY;
    (void)c;
}

/* A read of the client may find bytes. */
static bool cli_may_read(const struct session *c)
{
    return c->cli.can_read || (c->ssl != NULL && SSL_has_pending(c->ssl));
}

/* Output waits that the client has not taken: read nothing more until it
 * does, so that a client that does not read cannot make us queue. */
static bool output_backlog(const struct h2_conn *h)
{
    return h->pend_len > 0 || buf_is_full(&h->x.b2c);
}

/* One read from the client into nghttp2. False when the connection ends. */
static bool read_client(struct session *c, bool *progress)
{
    struct h2_conn *h = h2_of(c);
    if (h->fatal || c->cli.rd_shut || output_backlog(h) || !cli_may_read(c))
        return true;
    uint8_t in[16384];
    size_t n = 0;
    enum tg_status st = session_cli_read(c, in, sizeof(in), &n);
    if (st == TG_E_AGAIN)
        return true;
    if (st != TG_OK) {
        c->cli.rd_shut = true;
        return false;
    }
    c->bytes_in += n;
    *progress = true;
    ssize_t rv = nghttp2_session_mem_recv(h->ng, in, n);
    if (rv < 0) {
        /* The client's bytes are not HTTP/2 (no preface) or a flood that
         * nghttp2 stopped: nothing more is read, what is queued (GOAWAY)
         * still goes out. */
        bool flood = rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
        log_conn_error(c, flood ? "h2_flood" : "h2_protocol_error", nghttp2_strerror((int)rv));
        /* RFC 9113 §5.4.1: GOAWAY first, where nghttp2 did not queue one. */
        (void)nghttp2_session_terminate_session(h->ng, flood ? NGHTTP2_ENHANCE_YOUR_CALM
                                                             : NGHTTP2_PROTOCOL_ERROR);
        h->fatal = true;
    }
    return true;
}

/* nghttp2's output into x.b2c, then x.b2c to the client. False when the
 * client's side failed. */
static bool write_client(struct session *c, bool *progress)
{
    struct h2_conn *h = h2_of(c);
    struct buf *out = &h->x.b2c;
    for (;;) {
        if (h->pend_len > 0) {
            if (!worker_buf_get(c->w, out))
                return false;
            size_t room;
            uint8_t *dst = buf_wspace(out, &room);
            size_t n = h->pend_len < room ? h->pend_len : room;
            memcpy(dst, h->pend, n);
            buf_commit(out, n);
            h->pend += n;
            h->pend_len -= n;
            if (h->pend_len > 0)
                break;
        }
        ssize_t n = nghttp2_session_mem_send(h->ng, &h->pend);
        if (n < 0) {
            log_conn_error(c, "h2_internal_error", nghttp2_strerror((int)n));
            return false;
        }
        if (n == 0)
            break;
        h->pend_len = (size_t)n;
    }
    /* Output waits for the end of the loop's iteration (session_defer),
     * so that the responses of every backend that answered in it go out in
     * one write and one TLS record, unless it already fills a record. */
    if (!c->w->in_deferred && !buf_is_empty(out) && buf_len(out) < H2_FLUSH_BYTES) {
        session_defer(c);
        return true;
    }
    h->write_blocked = false;
    while (!buf_is_empty(out)) {
        size_t len, n = 0;
        const uint8_t *src = buf_rdata(out, &len);
        enum tg_status st = session_cli_write(c, src, len, &n);
        if (st == TG_E_AGAIN) {
            h->write_blocked = true;
            break;
        }
        if (st != TG_OK)
            return false;
        buf_consume(out, n);
        c->bytes_out += n;
        *progress = true;
    }
    if (buf_is_empty(out))
        worker_buf_put(c->w, out);
    return true;
}

/* Runs every stream that may move. A stream can end (and be freed) only
 * inside nghttp2's callbacks, never here. */
static void run_streams(struct session *c)
{
    struct h2_conn *h = h2_of(c);
    for (struct h2_stream *s = h->streams; s != NULL; s = s->next)
        h2_stream_run(c, s);
    c->ex = &h->x;
}

/* How long a connection without streams may stay silent: header_timeout
 * until its first request (as an HTTP/1.1 connection waits for its first
 * head), idle_timeout after. */
static ev_tstamp idle_limit(const struct session *c)
{
    const struct cfg_listener *l = c->l->cfg;
    uint64_t ms = h2_of((struct session *)(void *)c)->n_opened == 0 ? l->header_timeout_ms
                                                                    : l->idle_timeout_ms;
    return (ev_tstamp)ms / 1000.0;
}

/* The connection's timer: the earliest of its streams' deadlines, or the
 * idle limit when it has none. */
static void arm_timer(struct session *c)
{
    struct h2_conn *h = h2_of(c);
    ev_tstamp now = ev_now(c->w->loop), next = 0;
    for (struct h2_stream *s = h->streams; s != NULL; s = s->next) {
        ev_tstamp d = h2_stream_deadline(c, s);
        if (d > 0 && (next == 0 || d < next))
            next = d;
    }
    if (h->n_streams == 0)
        next = c->last_activity + idle_limit(c);
    /* A client that takes none of our output is gone after idle_timeout,
     * whatever its streams wait for. */
    ev_tstamp stuck = c->last_activity + (ev_tstamp)c->l->cfg->idle_timeout_ms / 1000.0;
    if (output_backlog(h) || h->write_blocked)
        next = next == 0 || stuck < next ? stuck : next;
    if (next == 0)
        next = stuck;
    double ms = (next - now) * 1000.0;
    session_set_timer(c, ms < 1.0 ? 1 : (uint64_t)ms);
}

/* The timer went off: streams past their deadline are ended; an idle
 * connection gets GOAWAY, then, if it is still there an idle limit later,
 * is closed; a connection whose client took none of its output for
 * idle_timeout is closed. True when the connection closes now. */
static bool run_timeouts(struct session *c)
{
    struct h2_conn *h = h2_of(c);
    ev_tstamp now = ev_now(c->w->loop);
    for (struct h2_stream *s = h->streams; s != NULL; s = s->next) {
        ev_tstamp d = h2_stream_deadline(c, s);
        if (d > 0 && now >= d)
            h2_stream_timeout(c, s);
    }
    c->ex = &h->x;
    c->timed_out = false;
    bool silent = now >= c->last_activity + (ev_tstamp)c->l->cfg->idle_timeout_ms / 1000.0;
    if ((output_backlog(h) || h->write_blocked) && silent)
        return true;
    if (h->n_streams > 0 || now < c->last_activity + idle_limit(c))
        return false;
    if (h->idle_goaway)
        return true;
    h->idle_goaway = true;
    c->last_activity = now; /* an idle limit for the GOAWAY to go out */
    (void)nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
    return false;
}

static enum conn_state h2_relay(struct session *c)
{
    struct h2_conn *h = h2_of(c);
    if (c->timed_out && run_timeouts(c))
        return CONN_ST_CLOSED;
    bool any = false, progress;
    do {
        progress = false;
        bool up = read_client(c, &progress);
        run_streams(c);
        if (!write_client(c, &progress) || !up)
            return CONN_ST_CLOSED;
        any = any || progress;
    } while (progress);
    if (any)
        c->last_activity = ev_now(c->w->loop);
    bool done = h->fatal ? !output_backlog(h) && buf_is_empty(&h->x.b2c)
                         : !nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng);
    if (done && h->pend_len == 0 && buf_is_empty(&h->x.b2c))
        return h->fatal ? CONN_ST_CLOSED : CONN_ST_DRAIN;
    arm_timer(c);
    return CONN_ST_RELAY;
}

static void h2_enter(struct session *c, enum conn_state st)
{
    if (st == CONN_ST_RELAY) {
        c->last_activity = ev_now(c->w->loop);
        session_set_timer(c, c->l->cfg->idle_timeout_ms);
    }
}

static void h2_interest(struct session *c, int *ce, int *be)
{
    struct h2_conn *h = h2_of(c);
    (void)be; /* each stream's backend is set by h2_stream_run */
    if (c->st != CONN_ST_RELAY)
        return;
    if (c->want == TLS_WANT_WRITE || h->write_blocked)
        *ce |= EV_WRITE;
    if (!c->cli.rd_shut && !h->fatal && !output_backlog(h) &&
        (nghttp2_session_want_read(h->ng) || c->want == TLS_WANT_READ))
        *ce |= EV_READ;
}

static ev_tstamp h2_idle_timeout(const struct session *c)
{
    return 0; /* arm_timer sets each deadline */
    (void)c;
}

static unsigned h2_passive_status(const struct session *c)
{
    if (c->ex == &((const struct h2_session *)(const void *)c)->h.x)
        return 0;
    return http_req_cof(c)->status;
}

/* Streams in flight finish; no new one starts (GOAWAY), then the
 * connection closes. */
/* GOAWAY(NO_ERROR) naming the last stream the client opened: those finish,
 * no new one starts. */
static void graceful_goaway(struct h2_conn *h)
{
    (void)nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE,
                                nghttp2_session_get_last_proc_stream_id(h->ng), NGHTTP2_NO_ERROR,
                                NULL, 0);
}

static bool h2_on_cut(struct session *c)
{
    struct h2_conn *h = h2_of(c);
    /* A stream whose header block is not whole is no request in flight:
     * it is refused, never routed under the judged-invalid certificate. */
    bool in_flight = false;
    for (struct h2_stream *s = h->streams; s != NULL; s = s->next) {
        if (s->st == CONN_ST_READ_HEAD)
            h2_stream_refuse(c, s);
        else
            in_flight = in_flight || s->st != CONN_ST_CLOSED;
    }
    c->ex = &h->x;
    if (!in_flight)
        return false;
    graceful_goaway(h);
    session_defer(c); /* the GOAWAY goes out before the loop waits again */
    return true;
}

/* The session closes: the streams still open end with it, each with its
 * access line (while the session's TLS facts are still there). */
static void h2_log_last(struct session *c)
{
    struct h2_conn *h = h2_of(c);
    while (h->streams != NULL)
        h2_stream_free(c, h->streams);
}

/* A stream's line: its request's fields and the stream's own bytes. */
static void h2_log_fields(struct session *c, struct access_fields *f, ev_tstamp now)
{
    struct http_req *r = http_req_of(c);
    struct h2_stream *s = h2_stream_of(r);
    char e_method[64], e_path[1100];
    f->start = r->t_req > 0 ? r->t_req : s->t_start;
    f->base_in = c->bytes_in - s->bytes_in;
    f->base_out = c->bytes_out - s->bytes_out;
    log_json_escape(e_method, sizeof(e_method), r->log_method);
    log_json_escape(e_path, sizeof(e_path), r->log_path);
    double upstream = r->t_upstream > 0 ? (now - r->t_upstream) * 1000.0 : 0.0;
    snprintf(f->extra, f->extra_len,
             ",\"method\":\"%s\",\"path\":\"%s\",\"status\":%u,\"upstream_ms\":%.3f,"
             "\"request\":%u,\"protocol\":\"h2\",\"stream\":%d",
             e_method, e_path, r->status, upstream, h2_of(c)->n_requests, s->id);
}

/* GOAWAY: the streams the client already opened finish, then the
 * connection closes. */
static void h2_on_drain(struct session *c)
{
    struct h2_conn *h = h2_of(c);
    if (c->st != CONN_ST_RELAY || h->goaway_sent)
        return;
    graceful_goaway(h);
    session_run(c);
}

const struct proto_ops h2_proto_ops = {
    .name = "h2",
    .size = sizeof(struct h2_session),
    .echo_http = true,
    .is_lingering = false,
    .init = h2_init,
    .fini = h2_fini,
    .on_established = h2_established,
    .step = {[CONN_ST_RELAY] = h2_relay},
    .on_enter = h2_enter,
    .interest = h2_interest,
    .idle_timeout = h2_idle_timeout,
    .passive_status = h2_passive_status,
    .on_cut = h2_on_cut,
    .log_last = h2_log_last,
    .log_fields = h2_log_fields,
    .on_drain = h2_on_drain,
};
