#ifndef TG_HTTP_HTTP_H
#define TG_HTTP_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/status.h"
#include "net/net.h"
#include "tls/tls.h"

/* ---- limits ---- */

#define HTTP_MAX_HEADERS      100   /* more: 431 */
#define HTTP_MAX_HEAD_BYTES   16384 /* request line + headers; more: 431 */
#define HTTP_MAX_TARGET_BYTES 8192  /* request target; more: 414 */

/* ---- a parsed message head (h1.c) ---- */

/* A span of the head: offset from http_head.base and length. Offsets, not
 * pointers, so that a head stays valid wherever its bytes are. */
struct http_span {
    uint32_t off;
    uint32_t len;
};

struct http_header {
    struct http_span name;
    struct http_span value; /* without surrounding whitespace */
};

/* How the body after a head is delimited (RFC 9112 §6.3). */
enum http_body {
    HTTP_BODY_NONE,    /* no body (GET without length, 204, 304, HEAD response) */
    HTTP_BODY_LENGTH,  /* Content-Length bytes */
    HTTP_BODY_CHUNKED, /* Transfer-Encoding: chunked */
    HTTP_BODY_EOF,     /* response delimited by the connection closing */
};

struct http_head {
    const char *base; /* borrowed: the first byte of the head */
    size_t len;       /* bytes of the head, including the empty line */
    bool is_request;
    uint8_t method;            /* llhttp_method_t, requests */
    struct http_span method_s; /* requests */
    struct http_span target;   /* requests: the request-target as sent */
    unsigned status;           /* responses */
    struct http_span reason;   /* responses */
    uint8_t major, minor;      /* HTTP version */
    struct http_header h[HTTP_MAX_HEADERS];
    size_t n_headers;
    /* Derived by the parser. */
    enum http_body body;
    uint64_t content_length;
    bool keep_alive;      /* the sender allows another message after this one */
    bool is_upgrade;      /* request: GET, Connection: upgrade, Upgrade: websocket;
                           * response: 101 */
    bool expect_continue; /* request: Expect: 100-continue */
    int host;             /* index into h of the Host header, -1 when absent */
};

/* Pointer to the first byte of a span. */
static inline const char *http_span_ptr(const struct http_head *hd, struct http_span s)
{
    return hd->base + s.off;
}

/* Whether len bytes at a and at b are equal, ignoring ASCII case. */
bool http_mem_ieq(const char *a, const char *b, size_t len);

/* Case-insensitive comparison of a span with a NUL-terminated string.
 * Inline: called with a literal, its length is known when compiling, and
 * most names differ from it in length already. */
static inline bool http_span_ieq(const struct http_head *hd, struct http_span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && http_mem_ieq(http_span_ptr(hd, s), lit, n);
}

/* Index of the first header with this name (case-insensitive), or -1. */
int http_head_find(const struct http_head *hd, const char *name);

/* ---- the parser (h1.c): llhttp in strict mode, no lenient flags ---- */

#include <llhttp.h>

/*
 * Parses one message at a time: first its head (h1_head), then its body
 * (h1_body), then h1_next for the following message. Bodies are not copied:
 * the caller forwards the bytes h1_body says belong to the message.
 */
struct h1 {
    llhttp_t p;
    bool is_request;
    uint64_t max_body;    /* 0 = unlimited */
    struct http_head *hd; /* borrowed while a head is parsed */
    size_t fed;           /* head bytes already given to llhttp */
    int last_cb;          /* which span callback ran last (to join spans) */
    bool head_done;
    bool message_done;
    bool no_body_response; /* the request was HEAD: the response has no body */
    uint64_t body_seen;
    uint64_t length_left; /* HTTP_BODY_LENGTH */
    unsigned n_content_length;
    unsigned n_transfer_encoding;
    char *sink; /* h1_body_decode: where a chunked body's payload goes */
    size_t sink_cap, sink_len;
    char *tr; /* h1_keep_trailers: a response's trailer fields, "name\0value\0" each */
    size_t tr_cap, tr_len;
    bool tr_overflow;       /* they did not fit in tr_cap: none are kept */
    unsigned err_status;    /* 400, 413, 414, 431 for a refused request; 502 for a response */
    const char *err_reason; /* short text for the log */
};

void h1_init(struct h1 *h, bool is_request, uint64_t max_body);

/* Prepares for the next message on the same connection. For a response
 * parser, request_was_head says the next response answers a HEAD. */
void h1_next(struct h1 *h, bool request_was_head);

/*
 * Parses the head that starts at base, of which avail bytes are in memory
 * (the caller never moves them while a head is parsed, and passes the same
 * base with a growing avail). TG_OK: the head is complete, hd filled,
 * hd->len its size. TG_E_AGAIN: more bytes needed. TG_E_PROTO: refused,
 * h->err_status and h->err_reason say why.
 */
TG_MUST_USE enum tg_status h1_head(struct h1 *h, struct http_head *hd, const char *base,
                                   size_t avail);

/*
 * Given len bytes that follow the head (or the previous body bytes), says
 * how many belong to the body (*n) and whether the message ended (*done).
 * Chunked bodies are validated by llhttp as they pass. TG_E_PROTO on a
 * framing error or a body over max_body (err_status 413).
 */
TG_MUST_USE enum tg_status h1_body(struct h1 *h, const char *data, size_t len, size_t *n,
                                   bool *done);

/*
 * As h1_body, for a reader that wants the body's payload rather than its
 * bytes on the wire (a chunked body without its framing): takes at most
 * cap of the len bytes at data (*n_in) and writes their payload, at most
 * cap bytes, to out (*n_out).
 */
TG_MUST_USE enum tg_status h1_body_decode(struct h1 *h, const char *data, size_t len, char *out,
                                          size_t cap, size_t *n_in, size_t *n_out, bool *done);

/* For a response whose reader passes trailers on (an HTTP/2 client): the
 * trailer fields of its chunked body are also copied into dst (cap bytes),
 * each as its name, NUL, its value, NUL, in h->tr_len bytes; all of them
 * or, when they do not fit (h->tr_overflow), none. Set after h1_next. */
void h1_keep_trailers(struct h1 *h, char *dst, size_t cap);

/* ---- the host a request names (host.c) ---- */

#define HTTP_HOST_MAX_NAME 253 /* a DNS name's longest text form (RFC 1035 §2.3.4) */

enum http_host_kind {
    HTTP_HOST_EMPTY, /* an empty value (RFC 9112 §3.2) */
    HTTP_HOST_NAME,  /* a reg-name */
    HTTP_HOST_IPV4,  /* an IPv4address */
    HTTP_HOST_IPV6,  /* "[" IPv6address "]" */
};

struct http_host {
    enum http_host_kind kind;
    const char *name; /* borrowed from the value: the host without brackets
                       * and, for a reg-name, without one trailing dot */
    size_t name_len;
    bool has_port;
    unsigned port; /* 0-65535 when has_port */
};

/*
 * Parses a Host value or an absolute-form target's authority (len bytes at
 * s, not terminated) as uri-host [":" port] (RFC 9110 §7.2, RFC 3986
 * §3.2.2): a reg-name of unreserved and sub-delim characters (no
 * percent-encoding, at most HTTP_HOST_MAX_NAME bytes), an IPv4 literal, or
 * a bracketed IPv6 literal (no IPvFuture, no zone), then an optional port
 * of 1 to 5 digits up to 65535. An empty value is accepted (kind EMPTY);
 * an empty host with a port is not. Pure; returns false for anything else,
 * with *out cleared.
 */
bool http_host_parse(const char *s, size_t len, struct http_host *out);

/* ---- rules (route.c) ---- */

/*
 * Picks the rule for a request on listener l. host is the Host header
 * value, read with http_host_parse (its port is ignored; a value that does
 * not parse, or NULL, matches no host rule), path the
 * request-target's path (the query, if any, is ignored for matching).
 * A rule with client: matches only when client (the verified client
 * certificate, NULL when there is none) matches every one of its terms.
 * Among the rules that match, the one with the most specific host wins
 * (exact, then the longest "*.suffix", then none), then the longest path
 * prefix, then one with client: over one without, then the first in the
 * file. Returns NULL when none matches; the caller then uses
 * default_target_group or answers 404.
 */
const struct cfg_rule *route_match(const struct cfg_listener *l, const char *host, size_t host_len,
                                   const char *path, size_t path_len, X509 *client);

/*
 * The path as a backend will act on it, so that a rule cannot be passed by
 * spelling its path differently: percent-encoded unreserved characters
 * decoded (RFC 3986 §6.2.2.2) and "." and ".." segments removed (§5.2.4,
 * §6.2.2.3); other escapes (%2F) stay. route_match matches on this form.
 * Writes into out (cap bytes, not terminated); returns the length, or
 * cap + 1 when it does not fit.
 */
size_t route_normalize_path(const char *path, size_t len, char *out, size_t cap);

/* True when the Host value host (read with http_host_parse, port ignored,
 * case-insensitive) matches pattern: exact, or "*.suffix" matching one or
 * more labels before ".suffix". A pattern may be a bracketed IPv6 literal;
 * one trailing dot of either is ignored. False when host does not parse. */
bool route_host_matches(const char *pattern, const char *host, size_t host_len);

/* ---- header rewriting (hdr.c) ---- */

/* Identity facts to forward to the backend. */
struct hdr_identity {
    const struct net_addr *client; /* the client's address */
    unsigned port;                 /* the listener's port, for X-Forwarded-Port */
    const char *proto;             /* "https" or "http" */
    const struct tls_info *tls;    /* NULL on plain http */
    /* The client certificate (leaf) and its chain as sent (without the
     * leaf), DER; NULL/0 when none. */
    const uint8_t *cert_der;
    size_t cert_der_len;
    const uint8_t *const *chain_der;
    const size_t *chain_der_len;
    size_t n_chain;
    enum cfg_cert_header cert_header; /* which certificate headers (default full) */
    /* The listener's header policy. */
    bool client_is_trusted_proxy; /* the client is in trusted_proxies */
    bool allow_underscores;       /* allow_underscores_in_headers */
    bool add_forwarded;           /* add_forwarded_header */
};

/*
 * Writes the request head to send to a backend into out, all or nothing:
 * the request line (the client's method, target and version); every header
 * except hop-by-hop ones (Connection and the headers it names, Keep-Alive,
 * TE, Trailer, Proxy-Connection, Upgrade unless is_upgrade), except any
 * copy of an identity header (X-Forwarded-*, Forwarded, X-Real-IP,
 * Client-Cert, Client-Cert-Chain, X-Client-*) in any spelling ('_' read as
 * '-', any case), and except names with '_' unless allow_underscores (and
 * even then not Content_Length, Transfer_Encoding, Keep_Alive,
 * Proxy_Connection); then X-Forwarded-For: the client's list followed by
 * the client address when client_is_trusted_proxy, else the client address
 * alone; with add_forwarded, RFC 7239 Forwarded: for=<client>;proto=<proto>
 * (IPv6 as for="[addr]"); then the identity headers: X-Forwarded-Proto,
 * -Port, X-Real-IP and, when tls is set, X-Client-Verify (SUCCESS, NONE or
 * FAILED:<reason>) and, with a client certificate, as cert_header says:
 * X-Client-Subject, X-Client-Issuer, X-Client-Serial, X-Client-Fingerprint
 * (not with off), RFC 9440 Client-Cert (full and leaf) and
 * Client-Cert-Chain (full). With is_upgrade it sends "Connection: upgrade"
 * and the Upgrade header.
 * Returns TG_OK, or TG_E_AGAIN when out has not enough room (out
 * unchanged).
 */
TG_MUST_USE enum tg_status http_hdr_request(const struct http_head *hd,
                                            const struct hdr_identity *id, struct buf *out);

/* The bytes http_hdr_request needs for hd and id: a buffer with that much
 * free room takes the head. */
size_t http_hdr_request_size(const struct http_head *hd, const struct hdr_identity *id);

/* The largest head http_hdr_request may be asked to write: the client's
 * head plus what tollgate adds, of which the certificate headers are the
 * most (a client's certificate message is at most TLS_MAX_CLIENT_CHAIN;
 * base64 is 4/3 of it), then the facts (two names of TLS_NAME_MAX). A
 * larger head is refused (431). */
#define HTTP_MAX_FORWARD_HEAD_BYTES                                                                \
    (HTTP_MAX_HEAD_BYTES + TLS_MAX_CLIENT_CHAIN / 3 * 4 + 4 * TLS_NAME_MAX + 4096)

/*
 * Writes the response head to send to a client into out, all or nothing:
 * status line as "HTTP/1.1 <status> <reason>", headers without hop-by-hop
 * ones (as above), plus "Connection: close" when !keep_alive, or
 * "Connection: upgrade" and the Upgrade header for a 101. extra (may be
 * NULL) is appended verbatim before the empty line (e.g. a Set-Cookie line,
 * already CRLF-terminated). TG_E_AGAIN when out has no room.
 */
TG_MUST_USE enum tg_status http_hdr_response(const struct http_head *hd, bool keep_alive,
                                             const char *extra, struct buf *out);

/* Which fields of a response head pass to a client of another HTTP
 * version (pass[i] for hd->h[i]): not the hop-by-hop ones, nor those its
 * Connection header names, as http_hdr_response drops them (no upgrade
 * kept). The message framing (Transfer-Encoding) is the caller's. */
void http_hdr_response_fields(const struct http_head *hd, bool *pass);

/*
 * Writes a complete response generated by tollgate (error pages, respond
 * and redirect rules): status line, Content-Type (when body_len > 0 or
 * content_type given), Content-Length, "Connection: close" when
 * !keep_alive, the extra header lines (each "Name: value\r\n", may be
 * NULL), the empty line and body (omitted when head_only, for HEAD).
 * TG_E_AGAIN when it does not fit.
 */
TG_MUST_USE enum tg_status http_hdr_simple(unsigned status, const char *content_type,
                                           const char *extra, const char *body, size_t body_len,
                                           bool keep_alive, bool head_only, struct buf *out);

/* The standard reason phrase for a status ("Bad Gateway"), or "Unknown". */
const char *http_reason(unsigned status);

#endif
