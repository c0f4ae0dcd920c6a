/* Unit tests for header rewriting (src/http/hdr.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "http/http.h"

/* ---- building heads by hand (h1.c is tested on its own) ---- */

static struct http_span span_of(const char *base, const char *from, const char *to)
{
    struct http_span s = {(uint32_t)(from - base), (uint32_t)(to - from)};
    return s;
}

/* Fills hd from a well-formed head text: the first line, then "Name: value"
 * lines up to the empty line. */
static void head_build(struct http_head *hd, const char *text)
{
    memset(hd, 0, sizeof(*hd));
    hd->base = text;
    hd->is_request = strncmp(text, "HTTP/", 5) != 0;
    const char *eol = strstr(text, "\r\n");
    assert_non_null(eol);
    const char *sp1 = memchr(text, ' ', (size_t)(eol - text));
    assert_non_null(sp1);
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
    assert_non_null(sp2);
    if (hd->is_request) {
        hd->method_s = span_of(text, text, sp1);
        hd->target = span_of(text, sp1 + 1, sp2);
        hd->major = (uint8_t)(sp2[6] - '0');
        hd->minor = (uint8_t)(sp2[8] - '0');
    } else {
        hd->major = (uint8_t)(text[5] - '0');
        hd->minor = (uint8_t)(text[7] - '0');
        hd->status = (unsigned)strtoul(sp1 + 1, NULL, 10);
        hd->reason = span_of(text, sp2 + 1, eol);
    }
    const char *p = eol + 2;
    while (strncmp(p, "\r\n", 2) != 0) {
        eol = strstr(p, "\r\n");
        assert_non_null(eol);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        assert_non_null(colon);
        const char *v = colon + 1, *end = eol;
        while (v < end && *v == ' ')
            v++;
        while (end > v && end[-1] == ' ')
            end--;
        assert_true(hd->n_headers < HTTP_MAX_HEADERS);
        hd->h[hd->n_headers].name = span_of(text, p, colon);
        hd->h[hd->n_headers].value = span_of(text, v, end);
        hd->n_headers++;
        p = eol + 2;
    }
    hd->len = (size_t)(p + 2 - text);
    hd->host = http_head_find(hd, "host");
    hd->keep_alive = true;
}

/* ---- identities ---- */

struct ident {
    struct net_addr addr;
    struct tls_info tls;
    struct hdr_identity id;
};

static void ident_init(struct ident *x, const char *client)
{
    char err[128];
    memset(x, 0, sizeof(*x));
    assert_int_equal(net_addr_parse(client, false, &x->addr, err, sizeof(err)), TG_OK);
    x->id.client = &x->addr;
    x->id.port = 8443;
    x->id.proto = "https";
}

static void ident_tls(struct ident *x, bool has_cert, bool verified, const char *verdict)
{
    x->id.tls = &x->tls;
    x->tls.has_client_cert = has_cert;
    x->tls.client_verified = verified;
    x->tls.client_verdict = verdict;
    snprintf(x->tls.client_subject, sizeof(x->tls.client_subject), "CN=alice,O=Example");
    snprintf(x->tls.client_issuer, sizeof(x->tls.client_issuer), "CN=Example CA");
    snprintf(x->tls.client_serial, sizeof(x->tls.client_serial), "1A2B");
    snprintf(x->tls.client_fingerprint, sizeof(x->tls.client_fingerprint), "ab12cd");
}

/* ---- running a rewrite, with its all-or-nothing twins ---- */

enum job_kind { JOB_REQUEST, JOB_RESPONSE, JOB_SIMPLE };

struct job {
    enum job_kind kind;
    const struct http_head *hd;
    const struct hdr_identity *id;
    bool keep_alive;
    const char *extra;
    unsigned status;
    const char *ctype;
    const char *body;
    bool head_only;
};

static enum tg_status job_run(const struct job *j, struct buf *b)
{
    switch (j->kind) {
    case JOB_REQUEST:
        return http_hdr_request(j->hd, j->id, b);
    case JOB_RESPONSE:
        return http_hdr_response(j->hd, j->keep_alive, j->extra, b);
    case JOB_SIMPLE:
        return http_hdr_simple(j->status, j->ctype, j->extra, j->body,
                               j->body ? strlen(j->body) : 0, j->keep_alive, j->head_only, b);
    }
    return TG_E_INTERNAL;
}

static void buf_put_str(struct buf *b, const char *s)
{
    assert_int_equal(buf_append(b, s, strlen(s)), TG_OK);
}

/*
 * Every buffer too small for the output gets TG_E_AGAIN and keeps exactly
 * what it had; the exact size, with or without compacting, is enough.
 */
static void check_all_or_nothing(const struct job *j, const char *want, size_t len)
{
    struct buf b = {0};
    assert_int_equal(job_run(j, &b), TG_E_AGAIN); /* no memory yet */

    for (size_t cap = 0; cap < len; cap++) {
        assert_int_equal(buf_init(&b, cap + 1), TG_OK);
        b.cap = cap; /* malloc(0) may give NULL; keep a real pointer */
        assert_int_equal(job_run(j, &b), TG_E_AGAIN);
        assert_int_equal(b.r, 0);
        assert_int_equal(b.w, 0);
        buf_fini(&b);
    }

    /* Already holding bytes: one byte too many, then exactly enough. */
    const char *held = "0123456789ABCDEFGHIJKLMNOPQRSTUV";
    assert_int_equal(buf_init(&b, len + 10), TG_OK);
    buf_put_str(&b, "0123456789X");
    assert_int_equal(job_run(j, &b), TG_E_AGAIN);
    assert_int_equal(b.r, 0);
    assert_int_equal(b.w, 11);
    assert_memory_equal(b.data, "0123456789X", 11);
    b.w = 10;
    assert_int_equal(job_run(j, &b), TG_OK);
    assert_int_equal(b.r, 0);
    assert_int_equal(b.w, len + 10);
    assert_memory_equal(b.data, "0123456789", 10);
    assert_memory_equal(b.data + 10, want, len);
    buf_fini(&b);

    /* Too small even after compacting: nothing moves. */
    assert_int_equal(buf_init(&b, len + 10), TG_OK);
    buf_put_str(&b, held);
    buf_consume(&b, 21);
    assert_int_equal(job_run(j, &b), TG_E_AGAIN);
    assert_int_equal(b.r, 21);
    assert_int_equal(b.w, 32);
    assert_memory_equal(b.data, held, 32);
    buf_fini(&b);

    /* Fits only after compacting: the held bytes move, then the output follows. */
    assert_int_equal(buf_init(&b, len + 10), TG_OK);
    assert_true(len + 10 >= 32);
    buf_put_str(&b, held);
    buf_consume(&b, 22);
    assert_int_equal(job_run(j, &b), TG_OK);
    assert_int_equal(b.r, 0);
    assert_int_equal(buf_len(&b), len + 10);
    assert_memory_equal(b.data, held + 22, 10);
    assert_memory_equal(b.data + 10, want, len);
    buf_fini(&b);
}

/* Runs j into a large buffer and returns its output (static, NUL-terminated). */
static const char *render(const struct job *j, size_t *len_out)
{
    static char text[1 << 16];
    struct buf b;
    assert_int_equal(buf_init(&b, sizeof(text) - 1), TG_OK);
    assert_int_equal(job_run(j, &b), TG_OK);
    size_t len;
    const uint8_t *p = buf_rdata(&b, &len);
    memcpy(text, p, len);
    text[len] = '\0';
    buf_fini(&b);
    if (len_out != NULL)
        *len_out = len;
    return text;
}

/* Asserts the exact output of j and its all-or-nothing behaviour. */
static void expect(const struct job *j, const char *want)
{
    size_t len;
    const char *got = render(j, &len);
    if (strcmp(got, want) != 0)
        print_error("got:\n%s\nwant:\n%s\n", got, want);
    assert_string_equal(got, want);
    check_all_or_nothing(j, want, len);
}

static void expect_request(const char *head, const struct hdr_identity *id, const char *want)
{
    struct http_head hd;
    head_build(&hd, head);
    struct job j = {.kind = JOB_REQUEST, .hd = &hd, .id = id};
    expect(&j, want);
}

static void expect_response(const char *head, bool keep_alive, const char *extra, const char *want)
{
    struct http_head hd;
    head_build(&hd, head);
    struct job j = {.kind = JOB_RESPONSE, .hd = &hd, .keep_alive = keep_alive, .extra = extra};
    expect(&j, want);
}

/* Counts lines of text that start with prefix, case-insensitively. */
static int count_lines(const char *text, const char *prefix)
{
    int n = 0;
    size_t plen = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncasecmp(p, prefix, plen) == 0)
            n++;
        p = strstr(p, "\r\n");
        if (p != NULL)
            p += 2;
    }
    return n;
}

#define IDENT_TAIL                                                                                 \
    "X-Forwarded-Proto: https\r\nX-Forwarded-Port: 8443\r\nX-Real-IP: 203.0.113.7\r\n"

/* ---- small functions ---- */

static void test_span_ieq_and_find(void **state)
{
    (void)state;
    struct http_head hd;
    head_build(&hd, "GET / HTTP/1.1\r\nHost: h\r\nX-Thing: 1\r\nx-thing: 2\r\n\r\n");
    assert_true(http_span_ieq(&hd, hd.h[1].name, "x-thing"));
    assert_true(http_span_ieq(&hd, hd.h[1].name, "X-THING"));
    assert_false(http_span_ieq(&hd, hd.h[1].name, "x-thin"));
    assert_false(http_span_ieq(&hd, hd.h[1].name, "x-things"));
    assert_false(http_span_ieq(&hd, hd.h[1].name, "y-thing"));
    assert_int_equal(http_head_find(&hd, "X-THING"), 1);
    assert_int_equal(http_head_find(&hd, "host"), 0);
    assert_int_equal(http_head_find(&hd, "x-other"), -1);
    assert_int_equal(http_head_find(&hd, "x-thin"), -1);
}

static void test_reason(void **state)
{
    (void)state;
    assert_string_equal(http_reason(200), "OK");
    assert_string_equal(http_reason(404), "Not Found");
    assert_string_equal(http_reason(421), "Misdirected Request");
    assert_string_equal(http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(http_reason(502), "Bad Gateway");
    assert_string_equal(http_reason(504), "Gateway Timeout");
    assert_string_equal(http_reason(299), "Unknown");
    assert_string_equal(http_reason(0), "Unknown");
}

/* ---- requests ---- */

static void test_request_plain(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    expect_request("GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n", &x.id,
                   "GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
    expect_request("POST /up HTTP/1.0\r\nContent-Length: 5\r\n\r\n", &x.id,
                   "POST /up HTTP/1.0\r\nContent-Length: 5\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
}

static void test_request_ipv6_client(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "[2001:db8::1]:5555");
    x.id.proto = "http";
    x.id.port = 80;
    x.id.client_is_trusted_proxy = true;
    expect_request("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n", &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\n"
                   "X-Forwarded-For: 198.51.100.1, 2001:db8::1\r\n"
                   "X-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\n"
                   "X-Real-IP: 2001:db8::1\r\n\r\n");
}

/* Each hop-by-hop header, in several spellings, is removed both ways. */
static void test_hop_by_hop(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "Connection: close",
        "connection: keep-alive",
        "CONNECTION: Close",
        "Keep-Alive: timeout=5",
        "keep-alive: max=100",
        "TE: trailers",
        "te: gzip",
        "Trailer: Expires",
        "TRAILER: x",
        "Proxy-Connection: close",
        "proxy-connection: keep-alive",
        "Upgrade: websocket",
        "upgrade: h2c",
        "UPGRADE: TLS/1.2",
    };
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char req[256], resp[256];
        snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\nAccept: a\r\n\r\n",
                 lines[i]);
        expect_request(req, &x.id,
                       "GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\n"
                       "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 200 OK\r\n%s\r\nContent-Length: 0\r\nServer: s\r\n\r\n", lines[i]);
        expect_response(resp, true, NULL,
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nServer: s\r\n\r\n");
    }
    /* Rejecting twin: names that merely resemble them stay. */
    expect_request("GET / HTTP/1.1\r\nHost: h\r\nConnection-Id: 1\r\nTEA: 2\r\n"
                   "X-Keep-Alive: 3\r\nUpgrade-Insecure-Requests: 1\r\n\r\n",
                   &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\nConnection-Id: 1\r\nTEA: 2\r\n"
                   "X-Keep-Alive: 3\r\nUpgrade-Insecure-Requests: 1\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
}

/* RFC 9110 §7.6.1: Connection names more hop-by-hop headers. */
static void test_connection_named_headers(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    expect_request("GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Foo\r\nX-Foo: 1\r\n"
                   "X-Foobar: keep\r\nx-foo: 2\r\nX-Bar: 3\r\nConnection: close , x-BAR,,\r\n"
                   "X-Baz: keep\r\n\r\n",
                   &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\nX-Foobar: keep\r\nX-Baz: keep\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
    expect_response("HTTP/1.1 200 OK\r\nConnection: x-a,\tx-b\r\nX-A: 1\r\nX-B: 2\r\n"
                    "X-C: 3\r\nContent-Length: 0\r\n\r\n",
                    true, NULL, "HTTP/1.1 200 OK\r\nX-C: 3\r\nContent-Length: 0\r\n\r\n");
}

/* Naming the framing headers in Connection must not strip them: the body
 * is forwarded verbatim, so the next hop would misread it. */
static void test_connection_cannot_remove_framing(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    expect_request("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                   "Connection: transfer-encoding, Host, content-length\r\n\r\n",
                   &x.id,
                   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
    expect_response("HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 3\r\n\r\n",
                    true, NULL, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
}

static void test_request_upgrade(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    const char *head = "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
                       "Upgrade: websocket\r\nSec-WebSocket-Key: k==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n";
    struct http_head hd;
    head_build(&hd, head);
    hd.is_upgrade = true;
    struct job j = {.kind = JOB_REQUEST, .hd = &hd, .id = &x.id};
    expect(&j, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k==\r\n"
               "Sec-WebSocket-Version: 13\r\nConnection: upgrade\r\n"
               "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
    /* Rejecting twin: not an upgrade, so Upgrade goes and no Connection is sent. */
    hd.is_upgrade = false;
    expect(&j, "GET /ws HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: k==\r\n"
               "Sec-WebSocket-Version: 13\r\n"
               "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
}

static void test_spoofed_identity_removed(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    ident_tls(&x, false, false, "NONE");
    expect_request("GET / HTTP/1.1\r\nHost: h\r\n"
                   "X-Forwarded-Proto: http\r\nx-forwarded-port: 1\r\nX-REAL-IP: 1.2.3.4\r\n"
                   "Client-Cert: :AAAA:\r\nclient-cert-chain: :AAAA:\r\n"
                   "X-Client-Verify: SUCCESS\r\nx-client-subject: CN=admin\r\n"
                   "X-CLIENT-ISSUER: CN=ca\r\nX-Client-Serial: 1\r\n"
                   "x-Client-Fingerprint: 00\r\nX-Client-Anything: 1\r\n"
                   "Forwarded: for=1.2.3.4\r\nX-Forwarded-Host: h\r\nX-Clientele: keep\r\n"
                   "X-Forwarded-Client-Cert: Hash=00\r\nFORWARDED: by=x\r\n"
                   "X-Forwarded-Server: s\r\nX-Forwarded: x\r\nForwarded-For: keep\r\n"
                   "Client-Certificate: keep\r\n\r\n",
                   &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\nX-Clientele: keep\r\nX-Forwarded: x\r\n"
                   "Forwarded-For: keep\r\nClient-Certificate: keep\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "X-Client-Verify: NONE\r\n\r\n");
    /* On plain http too: no TLS facts, and still no client copies. */
    x.id.tls = NULL;
    expect_request("GET / HTTP/1.1\r\nHost: h\r\nX-Client-Verify: SUCCESS\r\n"
                   "x-real-ip: 10.0.0.1\r\n\r\n",
                   &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
}

/* The client's X-Forwarded-For is believed only from a trusted proxy. */
static void test_forwarded_for_replaced(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    expect_request("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.1\r\n"
                   "x-forwarded-for: 198.51.100.2\r\n\r\n",
                   &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
    /* An underscore spelling is no way to keep a list, trusted or not. */
    x.id.allow_underscores = true;
    x.id.client_is_trusted_proxy = true;
    expect_request("GET / HTTP/1.1\r\nHost: h\r\nX_Forwarded_For: 198.51.100.1\r\n\r\n", &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
}

static void test_forwarded_for_append(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    x.id.client_is_trusted_proxy = true;
    expect_request("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.1\r\n\r\n", &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\n"
                   "X-Forwarded-For: 198.51.100.1, 203.0.113.7\r\n" IDENT_TAIL "\r\n");
    /* Several headers, any case, become one list in order; empty ones vanish. */
    expect_request(
        "GET / HTTP/1.1\r\nX-Forwarded-For: 198.51.100.1, 198.51.100.2\r\nHost: h\r\n"
        "x-forwarded-for:\r\nX-FORWARDED-FOR: 198.51.100.3\r\n\r\n",
        &x.id,
        "GET / HTTP/1.1\r\nHost: h\r\n"
        "X-Forwarded-For: 198.51.100.1, 198.51.100.2, 198.51.100.3, 203.0.113.7\r\n" IDENT_TAIL
        "\r\n");
}

/* RFC 7239 Forwarded: ours only when asked, one element, IPv6 quoted
 * (§6); the client's is dropped either way. */
static void test_forwarded_added(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    const char *req = "GET / HTTP/1.1\r\nHost: h\r\nForwarded: for=10.0.0.1;proto=https\r\n"
                      "forwarded: by=x\r\n\r\n";
    expect_request(req, &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "\r\n");
    x.id.add_forwarded = true;
    x.id.client_is_trusted_proxy = true;
    expect_request(req, &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n"
                   "Forwarded: for=203.0.113.7;proto=https\r\n" IDENT_TAIL "\r\n");
    ident_init(&x, "[2001:db8::1]:5555");
    x.id.add_forwarded = true;
    x.id.proto = "http";
    expect_request(req, &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\n"
                   "X-Forwarded-For: 2001:db8::1\r\n"
                   "Forwarded: for=\"[2001:db8::1]\";proto=http\r\n"
                   "X-Forwarded-Proto: http\r\nX-Forwarded-Port: 8443\r\n"
                   "X-Real-IP: 2001:db8::1\r\n\r\n");
}

/* Names with '_': dropped by default; when allowed, kept unless they spell
 * a header we set or act on. */
static void test_underscore_spellings(void **state)
{
    (void)state;
    static const char *const identity[] = {
        "X_Client_Verify: SUCCESS",
        "x_client_subject: CN=admin",
        "X-Client_Verify: SUCCESS",
        "X_Real_IP: 10.0.0.1",
        "Client_Cert: :AAAA:",
        "CLIENT_CERT_CHAIN: :AAAA:",
        "X_Forwarded_Proto: http",
        "X_Forwarded_Port: 1",
        "X_Forwarded_Host: evil",
        "X_Forwarded_For: 1.2.3.4",
        "Content_Length: 5",
        "Transfer_Encoding: chunked",
        "Keep_Alive: 1",
        "Proxy_Connection: close",
    };
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    ident_tls(&x, false, false, "NONE");
    for (int allow = 0; allow < 2; allow++) {
        x.id.allow_underscores = allow != 0;
        x.id.client_is_trusted_proxy = allow != 0;
        for (size_t i = 0; i < sizeof(identity) / sizeof(identity[0]); i++) {
            char req[256];
            snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\nX-Custom: 1\r\n\r\n",
                     identity[i]);
            expect_request(req, &x.id,
                           "GET / HTTP/1.1\r\nHost: h\r\nX-Custom: 1\r\n"
                           "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL
                           "X-Client-Verify: NONE\r\n\r\n");
        }
    }
    /* Twins: an ordinary name with '_' only passes when allowed. */
    const char *req = "GET / HTTP/1.1\r\nHost: h\r\nX_Custom: 1\r\nmy_header: 2\r\n"
                      "X-Custom-Dash: 3\r\n\r\n";
    x.id.allow_underscores = false;
    expect_request(req, &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\nX-Custom-Dash: 3\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "X-Client-Verify: NONE\r\n\r\n");
    x.id.allow_underscores = true;
    expect_request(req, &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\nX_Custom: 1\r\nmy_header: 2\r\n"
                   "X-Custom-Dash: 3\r\n"
                   "X-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL "X-Client-Verify: NONE\r\n\r\n");
    /* Responses come from our backend: names with '_' pass there. */
    expect_response("HTTP/1.1 200 OK\r\nX_Backend: 1\r\nContent-Length: 0\r\n\r\n", true, NULL,
                    "HTTP/1.1 200 OK\r\nX_Backend: 1\r\nContent-Length: 0\r\n\r\n");
}

/* Decodes the sf-binary ":b64:" at p (up to its closing colon) and checks
 * it is exactly der. Returns the byte after the closing colon. */
static const char *check_sf_binary(const char *p, const uint8_t *der, size_t der_len)
{
    assert_int_equal(*p, ':');
    const char *end = strchr(p + 1, ':');
    assert_non_null(end);
    size_t b64_len = (size_t)(end - p - 1);
    assert_int_equal(b64_len % 4, 0);
    assert_int_equal(b64_len, (der_len + 2) / 3 * 4);
    uint8_t *dec = malloc(b64_len / 4 * 3 + 1);
    assert_non_null(dec);
    int n = EVP_DecodeBlock(dec, (const unsigned char *)p + 1, (int)b64_len);
    assert_true(n >= 0);
    size_t pad = 0;
    while (pad < 2 && pad < b64_len && p[b64_len - pad] == '=')
        pad++;
    assert_int_equal((size_t)n - pad, der_len);
    assert_memory_equal(dec, der, der_len);
    free(dec);
    return end + 1;
}

static void test_client_cert_verified(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    ident_tls(&x, true, true, "SUCCESS");
    static const uint8_t der[] = {0x30, 0x82, 0x01, 0xff, 0xfb, 0x00};
    static const uint8_t ca1[] = {0x30, 0x03, 0x02};
    static const uint8_t ca2[] = {0xfe};
    const uint8_t *chain[] = {ca1, ca2};
    const size_t chain_len[] = {sizeof(ca1), sizeof(ca2)};
    x.id.cert_der = der;
    x.id.cert_der_len = sizeof(der);
    x.id.chain_der = chain;
    x.id.chain_der_len = chain_len;
    x.id.n_chain = 2;
    expect_request("GET / HTTP/1.1\r\nHost: h\r\n\r\n", &x.id,
                   "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 203.0.113.7\r\n" IDENT_TAIL
                   "X-Client-Verify: SUCCESS\r\n"
                   "X-Client-Subject: CN=alice,O=Example\r\n"
                   "X-Client-Issuer: CN=Example CA\r\n"
                   "X-Client-Serial: 1A2B\r\n"
                   "X-Client-Fingerprint: ab12cd\r\n"
                   "Client-Cert: :MIIB//sA:\r\n"
                   "Client-Cert-Chain: :MAMC:, :/g==:\r\n\r\n");
    /* Rejecting twin: no chain, no Client-Cert-Chain. */
    x.id.n_chain = 0;
    size_t len;
    struct http_head hd;
    head_build(&hd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    struct job j = {.kind = JOB_REQUEST, .hd = &hd, .id = &x.id};
    const char *out = render(&j, &len);
    assert_non_null(strstr(out, "Client-Cert: :MIIB//sA:\r\n"));
    assert_null(strstr(out, "Client-Cert-Chain"));
}

static void test_client_cert_verdicts(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    struct http_head hd;
    head_build(&hd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    struct job j = {.kind = JOB_REQUEST, .hd = &hd, .id = &x.id};

    ident_tls(&x, true, false, "cert_expired");
    const char *out = render(&j, NULL);
    assert_non_null(strstr(out, "\r\nX-Client-Verify: FAILED:cert_expired\r\n"));
    assert_non_null(strstr(out, "\r\nX-Client-Subject: CN=alice,O=Example\r\n"));

    /* Unverified without a recorded reason still says FAILED. */
    ident_tls(&x, true, false, NULL);
    out = render(&j, NULL);
    assert_non_null(strstr(out, "\r\nX-Client-Verify: FAILED:tls_error\r\n"));

    ident_tls(&x, false, false, "NONE");
    out = render(&j, NULL);
    assert_non_null(strstr(out, "\r\nX-Client-Verify: NONE\r\n"));
    assert_int_equal(count_lines(out, "X-Client-"), 1);
    assert_int_equal(count_lines(out, "Client-Cert"), 0);

    /* Plain http: no X-Client-* at all. */
    x.id.tls = NULL;
    out = render(&j, NULL);
    assert_int_equal(count_lines(out, "X-Client-"), 0);
}

/* Client-Cert decodes back to the exact DER, across padding lengths and
 * the encoder's internal chunk size. */
static void test_client_cert_round_trip(void **state)
{
    (void)state;
    static const size_t lens[] = {1, 2, 3, 4, 5, 767, 768, 769, 770, 1536, 1537, 2100};
    uint8_t *der = malloc(2100);
    uint8_t *link = malloc(700);
    assert_non_null(der);
    assert_non_null(link);
    for (size_t i = 0; i < 2100; i++)
        der[i] = (uint8_t)(i * 151 + 7);
    for (size_t i = 0; i < 700; i++)
        link[i] = (uint8_t)(255 - i);
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    ident_tls(&x, true, true, "SUCCESS");
    struct http_head hd;
    head_build(&hd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    struct job j = {.kind = JOB_REQUEST, .hd = &hd, .id = &x.id};

    for (size_t k = 0; k < sizeof(lens) / sizeof(lens[0]); k++) {
        const uint8_t *chain[] = {link, der};
        const size_t chain_len[] = {lens[k] % 700 + 1, lens[k]};
        x.id.cert_der = der;
        x.id.cert_der_len = lens[k];
        x.id.chain_der = chain;
        x.id.chain_der_len = chain_len;
        x.id.n_chain = 2;
        size_t len;
        const char *out = render(&j, &len);
        const char *p = strstr(out, "\r\nClient-Cert: ");
        assert_non_null(p);
        p = check_sf_binary(p + strlen("\r\nClient-Cert: "), der, lens[k]);
        assert_memory_equal(p, "\r\n", 2);
        p = strstr(out, "\r\nClient-Cert-Chain: ");
        assert_non_null(p);
        p = check_sf_binary(p + strlen("\r\nClient-Cert-Chain: "), link, chain_len[0]);
        assert_memory_equal(p, ", ", 2);
        p = check_sf_binary(p + 2, der, lens[k]);
        assert_memory_equal(p, "\r\n\r\n", 4);
        if (k == 7) {
            char *want = malloc(len + 1);
            assert_non_null(want);
            memcpy(want, out, len + 1);
            check_all_or_nothing(&j, want, len);
            free(want);
        }
    }
    free(link);
    free(der);
}

/* A subject, issuer or reason with CR, LF or other controls never splits a
 * header: each becomes a "\XX" escape on the same line. */
static void test_control_characters_cannot_split(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    ident_tls(&x, true, false, "bad\r\nX-Injected: 2");
    snprintf(x.tls.client_subject, sizeof(x.tls.client_subject),
             "CN=evil\r\nX-Injected: 1\r\n\r\nGET /admin HTTP/1.1");
    snprintf(x.tls.client_issuer, sizeof(x.tls.client_issuer), "CN=a\tb\x7f\x01\nc");
    snprintf(x.tls.client_serial, sizeof(x.tls.client_serial), "01\n");
    snprintf(x.tls.client_fingerprint, sizeof(x.tls.client_fingerprint), "\rff");
    struct http_head hd;
    head_build(&hd, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    struct job j = {.kind = JOB_REQUEST, .hd = &hd, .id = &x.id};
    size_t len;
    const char *out = render(&j, &len);
    assert_non_null(
        strstr(out, "\r\nX-Client-Subject: CN=evil\\0D\\0AX-Injected: 1\\0D\\0A\\0D\\0AGET /admin "
                    "HTTP/1.1\r\n"));
    assert_non_null(strstr(out, "\r\nX-Client-Issuer: CN=a\\09b\\7F\\01\\0Ac\r\n"));
    assert_non_null(strstr(out, "\r\nX-Client-Verify: FAILED:bad\\0D\\0AX-Injected: 2\r\n"));
    assert_non_null(strstr(out, "\r\nX-Client-Serial: 01\\0A\r\n"));
    assert_non_null(strstr(out, "\r\nX-Client-Fingerprint: \\0Dff\r\n"));
    assert_int_equal(count_lines(out, "X-Injected"), 0);
    assert_int_equal(count_lines(out, "GET"), 1);
    /* Every CR is followed by LF, every LF preceded by CR; one empty line, at the end. */
    for (size_t i = 0; i < len; i++) {
        if (out[i] == '\r')
            assert_int_equal(out[i + 1], '\n');
        if (out[i] == '\n')
            assert_int_equal(out[i - 1], '\r');
    }
    assert_ptr_equal(strstr(out, "\r\n\r\n"), out + len - 4);
}

/* Spans that carry CR or LF (a head not from the parser) cannot split lines. */
static void test_span_bytes_cannot_split(void **state)
{
    (void)state;
    struct ident x;
    ident_init(&x, "203.0.113.7:5555");
    struct http_head hd;
    head_build(&hd, "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n");
    static const char evil[] = "v\r\nX-Real-IP: 6.6.6.6\n\0z";
    char *text = malloc(hd.len + sizeof(evil));
    assert_non_null(text);
    memcpy(text, hd.base, hd.len);
    memcpy(text + hd.len, evil, sizeof(evil));
    hd.base = text;
    hd.h[1].value.off = (uint32_t)hd.len;
    hd.h[1].value.len = sizeof(evil) - 1;
    struct job j = {.kind = JOB_REQUEST, .hd = &hd, .id = &x.id};
    const char *out = render(&j, NULL);
    assert_non_null(strstr(out, "\r\nX-A: v  X-Real-IP: 6.6.6.6  z\r\n"));
    assert_int_equal(count_lines(out, "X-Real-IP"), 1);
    free(text);
}

/* ---- responses ---- */

static void test_response_plain(void **state)
{
    (void)state;
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                       "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n";
    expect_response(head, true, NULL,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n");
    expect_response(head, false, NULL,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                    "Connection: close\r\n\r\n");
    expect_response(head, true, "Set-Cookie: tg=1; HttpOnly\r\n",
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                    "Set-Cookie: tg=1; HttpOnly\r\n\r\n");
}

static void test_response_reason_and_version(void **state)
{
    (void)state;
    /* The reason as sent; the standard one when none was sent; always HTTP/1.1. */
    expect_response("HTTP/1.0 404 Nope Nope\r\nServer: s\r\n\r\n", false, NULL,
                    "HTTP/1.1 404 Nope Nope\r\nServer: s\r\nConnection: close\r\n\r\n");
    expect_response("HTTP/1.1 503 \r\nContent-Length: 0\r\n\r\n", true, NULL,
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
}

static void test_response_keeps_framing_and_identity(void **state)
{
    (void)state;
    /* Bodies pass verbatim, so their framing does too; responses are not
     * stripped of X-Client-* (they come from our backend). */
    expect_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Client-Id: 7\r\n"
                    "TE: trailers\r\nTrailer: X-Sum\r\n\r\n",
                    true, NULL,
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Client-Id: 7\r\n\r\n");
}

static void test_response_101(void **state)
{
    (void)state;
    const char *head = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                       "Upgrade: websocket\r\nSec-WebSocket-Accept: abc=\r\n\r\n";
    expect_response(head, false, NULL,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Sec-WebSocket-Accept: abc=\r\nConnection: upgrade\r\n\r\n");
    /* Rejecting twin: any other status loses Upgrade. */
    expect_response("HTTP/1.1 426 Upgrade Required\r\nConnection: Upgrade\r\n"
                    "Upgrade: TLS/1.2\r\nContent-Length: 0\r\n\r\n",
                    true, NULL, "HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n");
}

static void test_response_interim(void **state)
{
    (void)state;
    expect_response("HTTP/1.1 100 Continue\r\n\r\n", true, NULL, "HTTP/1.1 100 Continue\r\n\r\n");
}

/* ---- responses made by tollgate ---- */

static void expect_simple(unsigned status, const char *ctype, const char *extra, const char *body,
                          bool keep_alive, bool head_only, const char *want)
{
    struct job j = {.kind = JOB_SIMPLE,
                    .status = status,
                    .ctype = ctype,
                    .extra = extra,
                    .body = body,
                    .keep_alive = keep_alive,
                    .head_only = head_only};
    expect(&j, want);
}

static void test_simple(void **state)
{
    (void)state;
    expect_simple(404, "text/plain; charset=utf-8", NULL, "404 Not Found\n", true, false,
                  "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
                  "Content-Length: 14\r\n\r\n404 Not Found\n");
    expect_simple(502, "text/plain", NULL, "bad\n", false, false,
                  "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n"
                  "Connection: close\r\n\r\nbad\n");
    /* HEAD: the length the GET would have had, no body. */
    expect_simple(200, "text/plain", "X-A: 1\r\nX-B: 2\r\n", "pong\n", true, true,
                  "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
                  "X-A: 1\r\nX-B: 2\r\n\r\n");
}

static void test_simple_redirect_and_types(void **state)
{
    (void)state;
    expect_simple(301, NULL, "Location: https://h:8443/a?b\r\n", NULL, true, false,
                  "HTTP/1.1 301 Moved Permanently\r\nContent-Length: 0\r\n"
                  "Location: https://h:8443/a?b\r\n\r\n");
    expect_simple(200, NULL, NULL, "xy", true, false,
                  "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                  "Content-Length: 2\r\n\r\nxy");
    /* A Content-Type among the extra lines is not doubled. */
    expect_simple(200, NULL, "X-A: 1\r\ncontent-TYPE: text/html\r\n", "<p>", true, false,
                  "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: 1\r\n"
                  "content-TYPE: text/html\r\n\r\n<p>");
    expect_simple(200, "text/html", NULL, NULL, true, false,
                  "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n");
}

static void test_simple_bodiless_statuses(void **state)
{
    (void)state;
    /* RFC 9110 §8.6: no Content-Length or content in a 204 or 304. */
    expect_simple(204, "text/plain", NULL, "ignored", true, false,
                  "HTTP/1.1 204 No Content\r\n\r\n");
    expect_simple(304, NULL, "ETag: \"x\"\r\n", NULL, false, false,
                  "HTTP/1.1 304 Not Modified\r\nConnection: close\r\nETag: \"x\"\r\n\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_span_ieq_and_find),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_request_plain),
        cmocka_unit_test(test_request_ipv6_client),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_connection_named_headers),
        cmocka_unit_test(test_connection_cannot_remove_framing),
        cmocka_unit_test(test_request_upgrade),
        cmocka_unit_test(test_spoofed_identity_removed),
        cmocka_unit_test(test_forwarded_for_replaced),
        cmocka_unit_test(test_forwarded_for_append),
        cmocka_unit_test(test_underscore_spellings),
        cmocka_unit_test(test_forwarded_added),
        cmocka_unit_test(test_client_cert_verified),
        cmocka_unit_test(test_client_cert_verdicts),
        cmocka_unit_test(test_client_cert_round_trip),
        cmocka_unit_test(test_control_characters_cannot_split),
        cmocka_unit_test(test_span_bytes_cannot_split),
        cmocka_unit_test(test_response_plain),
        cmocka_unit_test(test_response_reason_and_version),
        cmocka_unit_test(test_response_keeps_framing_and_identity),
        cmocka_unit_test(test_response_101),
        cmocka_unit_test(test_response_interim),
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_simple_redirect_and_types),
        cmocka_unit_test(test_simple_bodiless_statuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
