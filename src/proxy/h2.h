#ifndef TG_PROXY_H2_H
#define TG_PROXY_H2_H

/* Private to src/proxy: HTTP/2 toward clients on https listeners (h2.c
 * the connection, h2_stream.c a stream's request and response). Each
 * stream is one request, forwarded as HTTP/1.1 (http_req.h). */

#include <stdbool.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "proxy/http_req.h"
#include "proxy/session.h"

/* The table of https sessions whose client chose h2 in ALPN. */
extern const struct proto_ops h2_proto_ops;

/* The flow-control window of each stream's request body (the initial
 * window the connection advertises): a stream holds at most this much of
 * its body that its target has not taken yet. */
#define H2_STREAM_WINDOW WORKER_BUF_SIZE
/* Output that is written at once rather than at the end of the loop's
 * iteration: a full TLS record. */
#define H2_FLUSH_BYTES 16384
/* The connection's receive window: what all streams together may hold. */
#define H2_CONN_WINDOW (1024 * 1024)

/* A chunked response's trailer fields passed on as the stream's trailers:
 * at most this many bytes (names and values) and fields; more are dropped. */
#define H2_TRAILERS_MAX    2048
#define H2_TRAILERS_FIELDS 32

/* How many of the client's last stream ids the connection remembers. */
#define H2_ID_RING 64

/* One stream: its request (with its exchange) and what HTTP/2 adds. */
struct h2_stream {
    struct http_req r;
    struct h2_stream *prev, *next; /* the connection's streams */
    int32_t id;
    enum conn_state st; /* READ_HEAD, PICK, CONNECT, RELAY, RESPOND, DRAIN (done), CLOSED */
    struct buf fields;  /* the header block as it arrives: "name: value\r\n" lines */
    struct buf head;    /* the HTTP/1.1 request head made of it */
    struct buf body;    /* request body bytes not yet framed into c2b */
    size_t list_size;   /* the header list's size so far (RFC 9113 §6.5.2) */
    uint16_t method_len, path_len, authority_len; /* pseudo-headers in fields */
    uint16_t method_off, path_off, authority_off;
    bool too_large;          /* the header list went over h2_max_header_list_size */
    bool too_large_body;     /* the request body went over max_body_size: 413 */
    bool in_trailers;        /* the header block being received is the trailers */
    bool has_trailers;       /* the request has trailer fields: refused (400) */
    bool head_ready;         /* the whole header block arrived: route it */
    bool has_length;         /* the request has a content-length */
    bool end_stream;         /* the client sent its whole request */
    bool headers_end_stream; /* ... with its header block: no body */
    bool body_framed_end;    /* the chunked body's last chunk went into c2b */
    bool discard;            /* the request's body is no longer wanted (answered early) */
    bool deferred;           /* the response body waits for bytes from the backend */
    char *trailers;          /* owned: the target's trailer fields (chunked responses) */
    bool held;               /* an early answer's head, parsed, waits for its body */
    bool rst_sent;           /* RST_STREAM(NO_ERROR) after an early answer */
    uint64_t discarded;      /* request body bytes dropped after an early answer */
    uint32_t close_error;
    uint64_t body_seen;            /* request body bytes received */
    ev_tstamp t_start;             /* the clock when it opened (durations) */
    ev_tstamp born, last_activity; /* the loop's time: deadlines */
    uint64_t bytes_in, bytes_out;  /* this stream's bytes, for its access line */
};

/* The HTTP/2 side of a session. */
struct h2_conn {
    struct exchange x; /* the connection's own: b2c is the output toward the client */
    nghttp2_session *ng;
    struct h2_stream *streams; /* owned list */
    size_t n_streams;
    uint64_t n_opened;   /* streams opened over the connection's life */
    const uint8_t *pend; /* output nghttp2 gave that is not yet in x.b2c */
    size_t pend_len;
    double reset_tokens;        /* client resets still allowed now (count_reset) */
    ev_tstamp reset_at;         /* when reset_tokens was last brought up to date */
    int32_t last_stream;        /* the highest stream id the client opened */
    int32_t opened[H2_ID_RING]; /* the ids it opened last, at (id / 2) % H2_ID_RING */
    bool goaway_sent;
    bool idle_goaway;   /* GOAWAY for an idle connection was asked for */
    bool write_blocked; /* the client's socket took no more of x.b2c */
    bool fatal;         /* a connection error: nothing more is read */
    const char *error;  /* its reason code for the log */
    unsigned n_requests;
};

struct h2_session {
    struct session s;
    struct h2_conn h;
};

static inline struct h2_conn *h2_of(struct session *s)
{
    return &((struct h2_session *)(void *)s)->h;
}

static inline struct h2_stream *h2_stream_of(struct http_req *r)
{
    return (struct h2_stream *)(void *)((char *)r - offsetof(struct h2_stream, r));
}

/* h2_stream.c */
/* Runs stream s as far as it can go (c->ex points at it meanwhile). */
void h2_stream_run(struct session *c, struct h2_stream *s);
/* The response body's bytes for nghttp2 (its data source read callback). */
ssize_t h2_stream_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user);
/* The deadline of s, 0 for none; h2_stream_timeout() runs it past that. */
ev_tstamp h2_stream_deadline(const struct session *c, const struct h2_stream *s);
void h2_stream_timeout(struct session *c, struct h2_stream *s);
/* Resets s, whose request never started, with REFUSED_STREAM. */
void h2_stream_refuse(struct session *c, struct h2_stream *s);
/* len bytes of s's request body were dropped (not wanted any more). */
void h2_stream_discarded(struct session *c, struct h2_stream *s, size_t len);
/* Writes the access line of s and frees it. */
void h2_stream_free(struct session *c, struct h2_stream *s);

#endif
