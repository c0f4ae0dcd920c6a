#include "http/http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <string.h>

#include <openssl/evp.h>

/* ---- comparing names ---- */

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

bool http_mem_ieq(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

/* The number of header slots in use; n_headers never exceeds the array, but
 * a head built by hand is not trusted to know that. */
static size_t n_headers(const struct http_head *hd)
{
    return hd->n_headers < HTTP_MAX_HEADERS ? hd->n_headers : HTTP_MAX_HEADERS;
}

int http_head_find(const struct http_head *hd, const char *name)
{
    size_t n = n_headers(hd);
    for (size_t i = 0; i < n; i++)
        if (http_span_ieq(hd, hd->h[i].name, name))
            return (int)i;
    return -1;
}

/* A name's byte as a backend that folds names CGI-style (HTTP_X_CLIENT_VERIFY)
 * or maps '_' to '-' reads it: lower case, '_' as '-'. */
static unsigned char folded(unsigned char c)
{
    return c == '_' ? '-' : lower(c);
}

/* True when name s, folded, is the lower-case literal lit ("x_client_verify"
 * and "X-Client-Verify" both name x-client-verify); with is_prefix, when it
 * starts with lit. */
static bool name_is_folded(const struct http_head *hd, struct http_span s, const char *lit,
                           bool is_prefix)
{
    size_t n = strlen(lit);
    if (is_prefix ? s.len < n : s.len != n)
        return false;
    const char *p = http_span_ptr(hd, s);
    for (size_t i = 0; i < n; i++)
        if (folded((unsigned char)p[i]) != (unsigned char)lit[i])
            return false;
    return true;
}

static bool has_underscore(const struct http_head *hd, struct http_span s)
{
    return memchr(http_span_ptr(hd, s), '_', s.len) != NULL;
}

/* ---- which headers pass ---- */

enum hdr_kind {
    HDR_KEEP,
    HDR_DROP,
    HDR_XFF, /* request X-Forwarded-For: its value joins ours */
};

/* RFC 9110 §7.6.1 and the older hop-by-hop list of RFC 2616 §13.5.1. */
static bool is_hop_by_hop(const struct http_head *hd, struct http_span name, bool keep_upgrade)
{
    return http_span_ieq(hd, name, "connection") || http_span_ieq(hd, name, "keep-alive") ||
           http_span_ieq(hd, name, "te") || http_span_ieq(hd, name, "trailer") ||
           http_span_ieq(hd, name, "proxy-connection") ||
           (!keep_upgrade && http_span_ieq(hd, name, "upgrade"));
}

/*
 * Headers about the client or the connection: the ones we set and those a
 * backend reads the same way (RFC 7239 Forwarded, X-Forwarded-Host,
 * X-Forwarded-Client-Cert, ...). A client's copy is never believed, in any
 * spelling: compared folded, so X_Client_Verify is X-Client-Verify.
 */
static bool is_identity(const struct http_head *hd, struct http_span name)
{
    return name_is_folded(hd, name, "x-forwarded-", true) ||
           name_is_folded(hd, name, "forwarded", false) ||
           name_is_folded(hd, name, "x-real-ip", false) ||
           name_is_folded(hd, name, "client-cert", false) ||
           name_is_folded(hd, name, "client-cert-chain", false) ||
           name_is_folded(hd, name, "x-client-", true);
}

/* Names with a '-' that tollgate itself acts on: an underscore spelling of
 * one could be read by a backend as the header tollgate did not see
 * (Transfer_Encoding next to a Content-Length). */
static bool is_acted_on_folded(const struct http_head *hd, struct http_span name)
{
    return name_is_folded(hd, name, "content-length", false) ||
           name_is_folded(hd, name, "transfer-encoding", false) ||
           name_is_folded(hd, name, "keep-alive", false) ||
           name_is_folded(hd, name, "proxy-connection", false);
}

/*
 * Headers that naming in Connection does not remove. Bodies are forwarded
 * verbatim, so dropping their framing would let the next hop read the body
 * as another request (RFC 9112 §11.2); Host picks the backend's site.
 */
static bool is_protected(const struct http_head *hd, struct http_span name, bool keep_upgrade)
{
    return http_span_ieq(hd, name, "content-length") ||
           http_span_ieq(hd, name, "transfer-encoding") || http_span_ieq(hd, name, "host") ||
           (keep_upgrade && http_span_ieq(hd, name, "upgrade"));
}

/* Drops every header named by token [p, p + len) of a Connection value. */
static void drop_named(const struct http_head *hd, const char *p, size_t len, bool keep_upgrade,
                       uint8_t *kind, size_t n)
{
    if (len == 0)
        return;
    for (size_t j = 0; j < n; j++) {
        struct http_span name = hd->h[j].name;
        if (kind[j] != HDR_DROP && name.len == len &&
            http_mem_ieq(http_span_ptr(hd, name), p, len) && !is_protected(hd, name, keep_upgrade))
            kind[j] = HDR_DROP;
    }
}

/* Walks the comma-separated tokens of a Connection value (RFC 9110 §7.6.1). */
static void drop_connection_tokens(const struct http_head *hd, struct http_span v,
                                   bool keep_upgrade, uint8_t *kind, size_t n)
{
    const char *p = http_span_ptr(hd, v);
    size_t i = 0;
    while (i < v.len) {
        while (i < v.len && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
            i++;
        size_t start = i;
        while (i < v.len && p[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        drop_named(hd, p + start, end - start, keep_upgrade, kind, n);
    }
}

/*
 * What becomes of one request header. A name with '_' is dropped unless the
 * listener allows them (nginx's underscores_in_headers), and even then when
 * it spells a header we set or act on. The client's X-Forwarded-For joins
 * ours only when the client is a trusted proxy; otherwise ours replaces it.
 */
static uint8_t classify_request(const struct http_head *hd, struct http_span name,
                                const struct hdr_identity *id)
{
    if (is_identity(hd, name)) {
        bool is_xff = http_span_ieq(hd, name, "x-forwarded-for");
        return is_xff && id->client_is_trusted_proxy ? HDR_XFF : HDR_DROP;
    }
    if (has_underscore(hd, name) && (!id->allow_underscores || is_acted_on_folded(hd, name)))
        return HDR_DROP;
    return HDR_KEEP;
}

/* id is NULL for a response. */
static void classify(const struct http_head *hd, const struct hdr_identity *id, bool keep_upgrade,
                     uint8_t *kind, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct http_span name = hd->h[i].name;
        kind[i] = HDR_KEEP;
        if (is_hop_by_hop(hd, name, keep_upgrade))
            kind[i] = HDR_DROP;
        else if (id != NULL)
            kind[i] = classify_request(hd, name, id);
    }
    for (size_t i = 0; i < n; i++)
        if (http_span_ieq(hd, hd->h[i].name, "connection"))
            drop_connection_tokens(hd, hd->h[i].value, keep_upgrade, kind, n);
}

void http_hdr_response_fields(const struct http_head *hd, bool *pass)
{
    uint8_t kind[HTTP_MAX_HEADERS];
    size_t n = n_headers(hd);
    classify(hd, NULL, false, kind, n);
    for (size_t i = 0; i < n; i++)
        pass[i] = kind[i] == HDR_KEEP;
}

/* ---- writing ---- */

/*
 * Output that is written where it fits and always counted: n is the size
 * the whole output needs, so one pass that did not fit still tells whether
 * compacting the buffer would make room.
 */
struct out {
    uint8_t *p;
    size_t cap;
    size_t n;
};

/* Where len more bytes go, or NULL when they do not fit (still counted). */
static uint8_t *out_reserve(struct out *o, size_t len)
{
    uint8_t *dst = NULL;
    if (o->n <= o->cap && len <= o->cap - o->n)
        dst = o->p + o->n;
    o->n += len;
    return dst;
}

static void put(struct out *o, const void *src, size_t len)
{
    uint8_t *dst = out_reserve(o, len);
    if (dst != NULL && len > 0)
        memcpy(dst, src, len);
}

static void put_str(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_uint(struct out *o, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    put(o, tmp + i, sizeof(tmp) - i);
}

/*
 * Bytes from a peer. The parser never lets CR, LF or NUL into a span;
 * they are replaced here too, so that no head built some other way can
 * split a line.
 */
static void put_span(struct out *o, const struct http_head *hd, struct http_span s)
{
    const char *src = http_span_ptr(hd, s);
    uint8_t *dst = out_reserve(o, s.len);
    if (dst == NULL)
        return;
    for (size_t i = 0; i < s.len; i++) {
        uint8_t c = (uint8_t)src[i];
        dst[i] = c == '\r' || c == '\n' || c == '\0' ? ' ' : c;
    }
}

/* A NUL-terminated string (at most max bytes) that did not come through the
 * parser, such as a certificate's subject: control characters become
 * "\XX" escapes (RFC 4514 §2.4), so the value stays on one line and keeps
 * its meaning. */
static void put_text(struct out *o, const char *s, size_t max)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strnlen(s, max);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7f)
            continue;
        put(o, s + run, i - run);
        char esc[3] = {'\\', hex[c >> 4], hex[c & 15]};
        put(o, esc, sizeof(esc));
        run = i + 1;
    }
    put(o, s + run, len - run);
}

/* RFC 8941 §3.3.5 sf-binary: ":" standard base64 with padding ":". */
static void put_sf_binary(struct out *o, const uint8_t *der, size_t len)
{
    /* Whole groups of 3 bytes per chunk, so only the last one is padded. */
    enum { CHUNK = 768 };
    unsigned char tmp[CHUNK / 3 * 4 + 1];
    put(o, ":", 1);
    for (size_t i = 0; i < len; i += CHUNK) {
        size_t n = len - i < CHUNK ? len - i : CHUNK;
        uint8_t *dst = out_reserve(o, (n + 2) / 3 * 4);
        if (dst == NULL)
            continue;
        int w = EVP_EncodeBlock(tmp, der + i, (int)n);
        assert(w == (int)((n + 2) / 3 * 4));
        (void)w;
        memcpy(dst, tmp, (n + 2) / 3 * 4);
    }
    put(o, ":", 1);
}

static void put_header_text(struct out *o, const char *name, const char *value, size_t max)
{
    put_str(o, name);
    put(o, ": ", 2);
    put_text(o, value, max);
    put(o, "\r\n", 2);
}

/* Every header of hd whose kind is HDR_KEEP, as "Name: value". */
static void put_kept(struct out *o, const struct http_head *hd, const uint8_t *kind, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (kind[i] != HDR_KEEP)
            continue;
        put_span(o, hd, hd->h[i].name);
        put(o, ": ", 2);
        put_span(o, hd, hd->h[i].value);
        put(o, "\r\n", 2);
    }
}

typedef void (*write_fn)(struct out *o, const void *arg);

/*
 * Runs fn into the free tail of b and commits it when it fits. When it
 * only fits after the unread bytes move to the front, compacts and runs fn
 * again (the output is the same). Otherwise b is left exactly as it was.
 */
static enum tg_status emit(struct buf *b, write_fn fn, const void *arg)
{
    if (!buf_has_mem(b))
        return TG_E_AGAIN;
    size_t tail;
    struct out o = {0};
    o.p = buf_wspace_tail(b, &tail);
    o.cap = tail;
    fn(&o, arg);
    if (o.n > b->cap - buf_len(b))
        return TG_E_AGAIN;
    if (o.n > tail) {
        size_t need = o.n;
        buf_compact(b);
        o = (struct out){0};
        o.p = buf_wspace_tail(b, &tail);
        o.cap = tail;
        fn(&o, arg);
        assert(o.n == need && o.n <= tail);
        (void)need;
    }
    buf_commit(b, o.n);
    return TG_OK;
}

/* ---- requests to backends ---- */

struct req_args {
    const struct http_head *hd;
    const struct hdr_identity *id;
    const uint8_t *kind;
    size_t n;
    const char *ip; /* the client's address, "" when unknown */
};

static void put_forwarded_for(struct out *o, const struct req_args *a)
{
    bool first = true;
    for (size_t i = 0; i < a->n; i++) {
        struct http_span v = a->hd->h[i].value;
        if (a->kind[i] != HDR_XFF || v.len == 0)
            continue;
        put_str(o, first ? "X-Forwarded-For: " : ", ");
        put_span(o, a->hd, v);
        first = false;
    }
    if (a->ip[0] != '\0') {
        put_str(o, first ? "X-Forwarded-For: " : ", ");
        put_str(o, a->ip);
        first = false;
    }
    if (!first)
        put(o, "\r\n", 2);
}

/*
 * RFC 7239 Forwarded with one element, ours: "for=" the client address
 * (an IPv6 address bracketed and quoted, §6) and "proto=". A client's
 * Forwarded never reaches here (it is dropped), trusted proxy or not.
 */
static void put_forwarded(struct out *o, const struct req_args *a)
{
    bool is_v6 = strchr(a->ip, ':') != NULL;
    put_str(o, "Forwarded: for=");
    put_str(o, is_v6 ? "\"[" : "");
    put_text(o, a->ip, INET6_ADDRSTRLEN);
    put_str(o, is_v6 ? "]\"" : "");
    if (a->id->proto != NULL) {
        put_str(o, ";proto=");
        put_text(o, a->id->proto, 16);
    }
    put(o, "\r\n", 2);
}

static void put_client_cert(struct out *o, const struct tls_info *t, const struct hdr_identity *id)
{
    put_str(o, "X-Client-Verify: ");
    if (!t->has_client_cert) {
        put_str(o, "NONE");
    } else if (t->client_verified) {
        put_str(o, "SUCCESS");
    } else {
        const char *why = t->client_verdict;
        if (why == NULL || why[0] == '\0' || strcmp(why, "SUCCESS") == 0 ||
            strcmp(why, "NONE") == 0)
            why = "tls_error"; /* unverified, yet no reason recorded */
        put_str(o, "FAILED:");
        put_text(o, why, 64);
    }
    put(o, "\r\n", 2);
    if (!t->has_client_cert || id->cert_header == CFG_CERT_HEADER_OFF)
        return;
    put_header_text(o, "X-Client-Subject", t->client_subject, sizeof(t->client_subject));
    put_header_text(o, "X-Client-Issuer", t->client_issuer, sizeof(t->client_issuer));
    put_header_text(o, "X-Client-Serial", t->client_serial, sizeof(t->client_serial));
    put_header_text(o, "X-Client-Fingerprint", t->client_fingerprint,
                    sizeof(t->client_fingerprint));
    if (id->cert_header == CFG_CERT_HEADER_HASH)
        return;
    /* RFC 9440 §2.2 and §2.3. */
    if (id->cert_der != NULL && id->cert_der_len > 0) {
        put_str(o, "Client-Cert: ");
        put_sf_binary(o, id->cert_der, id->cert_der_len);
        put(o, "\r\n", 2);
    }
    if (id->cert_header == CFG_CERT_HEADER_FULL && id->n_chain > 0 && id->chain_der != NULL &&
        id->chain_der_len != NULL) {
        put_str(o, "Client-Cert-Chain: ");
        for (size_t i = 0; i < id->n_chain; i++) {
            if (i > 0)
                put(o, ", ", 2);
            put_sf_binary(o, id->chain_der[i], id->chain_der[i] ? id->chain_der_len[i] : 0);
        }
        put(o, "\r\n", 2);
    }
}

static void write_request(struct out *o, const void *arg)
{
    const struct req_args *a = arg;
    const struct http_head *hd = a->hd;
    const struct hdr_identity *id = a->id;

    put_span(o, hd, hd->method_s);
    put(o, " ", 1);
    put_span(o, hd, hd->target);
    put_str(o, " HTTP/");
    put_uint(o, hd->major);
    put(o, ".", 1);
    put_uint(o, hd->minor);
    put(o, "\r\n", 2);
    put_kept(o, hd, a->kind, a->n);
    if (hd->is_upgrade)
        put_str(o, "Connection: upgrade\r\n");
    put_forwarded_for(o, a);
    if (id->add_forwarded && a->ip[0] != '\0')
        put_forwarded(o, a);
    if (id->proto != NULL)
        put_header_text(o, "X-Forwarded-Proto", id->proto, 16);
    put_str(o, "X-Forwarded-Port: ");
    put_uint(o, id->port);
    put(o, "\r\n", 2);
    if (a->ip[0] != '\0')
        put_header_text(o, "X-Real-IP", a->ip, INET6_ADDRSTRLEN);
    if (id->tls != NULL)
        put_client_cert(o, id->tls, id);
    put(o, "\r\n", 2);
}

/* The arguments of write_request for hd and id; kind and ip are the
 * caller's, filled here. */
static void request_args(struct req_args *a, const struct http_head *hd,
                         const struct hdr_identity *id, uint8_t *kind, char *ip, size_t ip_len)
{
    *a = (struct req_args){.hd = hd, .id = id, .kind = kind, .n = n_headers(hd), .ip = ip};
    classify(hd, id, hd->is_upgrade, kind, a->n);
    ip[0] = '\0';
    if (id->client != NULL)
        net_addr_host(id->client, ip, ip_len);
}

enum tg_status http_hdr_request(const struct http_head *hd, const struct hdr_identity *id,
                                struct buf *out)
{
    uint8_t kind[HTTP_MAX_HEADERS];
    char ip[INET6_ADDRSTRLEN];
    struct req_args a;
    request_args(&a, hd, id, kind, ip, sizeof(ip));
    return emit(out, write_request, &a);
}

size_t http_hdr_request_size(const struct http_head *hd, const struct hdr_identity *id)
{
    uint8_t kind[HTTP_MAX_HEADERS];
    char ip[INET6_ADDRSTRLEN];
    struct req_args a;
    request_args(&a, hd, id, kind, ip, sizeof(ip));
    struct out o = {0};
    write_request(&o, &a);
    return o.n;
}

/* ---- responses to clients ---- */

struct resp_args {
    const struct http_head *hd;
    bool keep_alive;
    const char *extra;
    const uint8_t *kind;
    size_t n;
};

static void put_status_line(struct out *o, unsigned status)
{
    put_str(o, "HTTP/1.1 ");
    put_uint(o, status);
    put(o, " ", 1);
}

static void write_response(struct out *o, const void *arg)
{
    const struct resp_args *a = arg;
    const struct http_head *hd = a->hd;

    put_status_line(o, hd->status);
    if (hd->reason.len > 0)
        put_span(o, hd, hd->reason);
    else
        put_str(o, http_reason(hd->status));
    put(o, "\r\n", 2);
    put_kept(o, hd, a->kind, a->n);
    if (hd->status == 101)
        put_str(o, "Connection: upgrade\r\n");
    else if (!a->keep_alive)
        put_str(o, "Connection: close\r\n");
    if (a->extra != NULL)
        put_str(o, a->extra);
    put(o, "\r\n", 2);
}

enum tg_status http_hdr_response(const struct http_head *hd, bool keep_alive, const char *extra,
                                 struct buf *out)
{
    uint8_t kind[HTTP_MAX_HEADERS];
    struct resp_args a = {
        .hd = hd, .keep_alive = keep_alive, .extra = extra, .kind = kind, .n = n_headers(hd)};
    classify(hd, NULL, hd->status == 101, kind, a.n);
    return emit(out, write_response, &a);
}

/* ---- responses made by tollgate ---- */

struct simple_args {
    unsigned status;
    const char *content_type;
    const char *extra;
    const char *body;
    size_t body_len;
    bool keep_alive;
    bool head_only;
};

/* True when lines (each ending in CRLF) contain a Content-Type. */
static bool has_content_type(const char *lines)
{
    static const char name[] = "content-type:";
    for (const char *p = lines; p != NULL && *p != '\0';) {
        if (strnlen(p, sizeof(name) - 1) == sizeof(name) - 1 &&
            http_mem_ieq(p, name, sizeof(name) - 1))
            return true;
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return false;
}

static void write_simple(struct out *o, const void *arg)
{
    const struct simple_args *a = arg;
    /* RFC 9110 §8.6, §15.3.5, §15.4.5: 1xx, 204 and 304 carry no content
     * and 1xx and 204 no Content-Length either. */
    bool bodiless = a->status < 200 || a->status == 204 || a->status == 304;

    put_status_line(o, a->status);
    put_str(o, http_reason(a->status));
    put(o, "\r\n", 2);
    if (!bodiless) {
        const char *ctype = a->content_type;
        if (ctype == NULL && a->body_len > 0 && !has_content_type(a->extra))
            ctype = "application/octet-stream";
        if (ctype != NULL)
            put_header_text(o, "Content-Type", ctype, 256);
        put_str(o, "Content-Length: ");
        put_uint(o, a->body_len);
        put(o, "\r\n", 2);
    }
    if (!a->keep_alive)
        put_str(o, "Connection: close\r\n");
    if (a->extra != NULL)
        put_str(o, a->extra);
    put(o, "\r\n", 2);
    if (!bodiless && !a->head_only && a->body != NULL)
        put(o, a->body, a->body_len);
}

enum tg_status http_hdr_simple(unsigned status, const char *content_type, const char *extra,
                               const char *body, size_t body_len, bool keep_alive, bool head_only,
                               struct buf *out)
{
    struct simple_args a = {
        .status = status,
        .content_type = content_type,
        .extra = extra,
        .body = body,
        .body_len = body != NULL ? body_len : 0,
        .keep_alive = keep_alive,
        .head_only = head_only,
    };
    return emit(out, write_simple, &a);
}

/* ---- reason phrases (RFC 9110 §15) ---- */

struct reason {
    unsigned status;
    const char *text;
};

static const struct reason reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {495, "SSL Certificate Error"},    /* nginx */
    {496, "SSL Certificate Required"}, /* nginx */
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

const char *http_reason(unsigned status)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(reasons); i++)
        if (reasons[i].status == status)
            return reasons[i].text;
    return "Unknown";
}
