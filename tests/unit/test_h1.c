/* Unit tests for the HTTP/1.1 head and body parser (src/http/h1.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

struct parsed {
    struct h1 h;
    struct http_head hd;
    enum tg_status st;
};

static void parse_request(struct parsed *p, const char *text, uint64_t max_body)
{
    h1_init(&p->h, true, max_body);
    p->st = h1_head(&p->h, &p->hd, text, strlen(text));
}

static void span_is(const struct http_head *hd, struct http_span s, const char *want)
{
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(http_span_ptr(hd, s), want, s.len);
}

static void test_simple_get(void **state)
{
    (void)state;
    struct parsed p;
    const char *req = "GET /a/b?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Pad:  v  \r\n\r\nNEXT";
    parse_request(&p, req, 0);
    assert_int_equal(p.st, TG_OK);
    assert_int_equal(p.hd.len, strlen(req) - 4);
    span_is(&p.hd, p.hd.method_s, "GET");
    span_is(&p.hd, p.hd.target, "/a/b?x=1");
    assert_int_equal(p.hd.n_headers, 2);
    span_is(&p.hd, p.hd.h[1].value, "v");
    assert_int_equal(p.hd.host, 0);
    assert_int_equal(p.hd.body, HTTP_BODY_NONE);
    assert_true(p.hd.keep_alive);
}

static void test_incremental_head(void **state)
{
    (void)state;
    const char *req = "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    struct h1 h;
    struct http_head hd;
    h1_init(&h, true, 0);
    size_t head = strlen(req) - 5;
    for (size_t n = 1; n < head; n++)
        assert_int_equal(h1_head(&h, &hd, req, n), TG_E_AGAIN);
    assert_int_equal(h1_head(&h, &hd, req, strlen(req)), TG_OK);
    assert_int_equal(hd.len, head);
    assert_int_equal(hd.body, HTTP_BODY_LENGTH);
    assert_int_equal(hd.content_length, 5);
    span_is(&hd, hd.h[1].name, "Content-Length");

    size_t n = 0;
    bool done = false;
    assert_int_equal(h1_body(&h, req + head, 3, &n, &done), TG_OK);
    assert_int_equal(n, 3);
    assert_false(done);
    assert_int_equal(h1_body(&h, req + head + 3, 10, &n, &done), TG_OK);
    assert_int_equal(n, 2);
    assert_true(done);
}

static void test_chunked_body_ends_exactly(void **state)
{
    (void)state;
    const char *req = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *body = "5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\n";
    struct parsed p;
    parse_request(&p, req, 0);
    assert_int_equal(p.st, TG_OK);
    assert_int_equal(p.hd.body, HTTP_BODY_CHUNKED);
    size_t n = 0;
    bool done = false;
    assert_int_equal(h1_body(&p.h, body, strlen(body), &n, &done), TG_OK);
    assert_true(done);
    assert_int_equal(n, strlen("5\r\nhello\r\n0\r\n\r\n"));
}

static void test_bad_chunk_refused(void **state)
{
    (void)state;
    const char *req = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    struct parsed p;
    parse_request(&p, req, 0);
    assert_int_equal(p.st, TG_OK);
    size_t n = 0;
    bool done = false;
    assert_int_equal(h1_body(&p.h, "zz\r\nhello\r\n", 11, &n, &done), TG_E_PROTO);
    assert_int_equal(p.h.err_status, 400);
}

/* RFC 9112 §6.3: each ambiguous framing is refused with 400. */
static void test_smuggling_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\x01b\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\nHost: h\n\n",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/9.9\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n",
        "GET / HTTP/1.1\r\n: v\r\nHost: h\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct parsed p;
        parse_request(&p, bad[i], 0);
        if (p.st != TG_E_PROTO)
            fail_msg("accepted case %zu: %s", i, bad[i]);
        assert_int_equal(p.h.err_status, 400);
    }
}

/* RFC 9112 §3.2: one valid Host, and a target that does not name another. */
static void test_target_and_host(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\nHost: h\r\nHost: evil\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nhost: h\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n",
        "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET https://evil/x HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://h.evil/ HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET https://evil/x HTTP/1.0\r\n\r\n",
        "GET /\r\nHost: h\r\n\r\n",
        "CONNECT \r\nHost: h:443\r\n\r\n",
        /* Host is uri-host [":" port], read by http_host_parse. */
        "GET / HTTP/1.1\r\nHost: [localhost]evil.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost:evil.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost:\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: :443\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost:65536\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [v1.x]\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: %6cocalhost\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: ::1\r\n\r\n",
        /* So is an absolute-form target's authority. */
        "GET http://localhost:x/ HTTP/1.1\r\nHost: localhost:x\r\n\r\n",
        "GET http:///x HTTP/1.1\r\nHost: \r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct parsed p;
        parse_request(&p, bad[i], 0);
        if (p.st != TG_E_PROTO)
            fail_msg("accepted case %zu: %s", i, bad[i]);
        assert_int_equal(p.h.err_status, 400);
    }
    static const char *const good[] = {
        "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET http://h/x?y HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET HTTPS://H.example:8443 HTTP/1.1\r\nHost: h.EXAMPLE:8443\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: \r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: LOCALHOST.\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n",
        "GET http://localhost:443/ HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct parsed p;
        parse_request(&p, good[i], 0);
        if (p.st != TG_OK)
            fail_msg("refused case %zu (%s): %s", i, p.h.err_reason, good[i]);
    }
}

/* Twin of the empty-name cases: a one-character name is a name. */
static void test_short_header_name_accepted(void **state)
{
    (void)state;
    struct parsed p;
    parse_request(&p, "GET / HTTP/1.1\r\nX: v\r\nHost: h\r\n\r\n", 0);
    assert_int_equal(p.st, TG_OK);
    assert_int_equal(p.hd.n_headers, 2);
    span_is(&p.hd, p.hd.h[0].name, "X");
    span_is(&p.hd, p.hd.h[0].value, "v");
}

/* A request body's trailer fields are refused; a response's pass. */
static void test_trailers(void **state)
{
    (void)state;
    const char *req = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const char *body = "3\r\nabc\r\n0\r\nClient-Cert: :AAAA:\r\n\r\n";
    struct parsed p;
    size_t n = 0;
    bool done = false;
    parse_request(&p, req, 0);
    assert_int_equal(p.st, TG_OK);
    assert_int_equal(h1_body(&p.h, body, strlen(body), &n, &done), TG_E_PROTO);
    assert_int_equal(p.h.err_status, 400);
    /* Twin: without the trailer the body ends. */
    const char *plain = "3\r\nabc\r\n0\r\n\r\n";
    parse_request(&p, req, 0);
    assert_int_equal(h1_body(&p.h, plain, strlen(plain), &n, &done), TG_OK);
    assert_true(done);
    assert_int_equal(n, strlen(plain));

    struct h1 h;
    struct http_head hd;
    const char *resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    h1_init(&h, false, 0);
    assert_int_equal(h1_head(&h, &hd, resp, strlen(resp)), TG_OK);
    size_t before = hd.n_headers;
    assert_int_equal(h1_body(&h, body, strlen(body), &n, &done), TG_OK);
    assert_true(done);
    assert_int_equal(n, strlen(body));
    assert_int_equal(hd.n_headers, before);
}

static void test_limits(void **state)
{
    (void)state;
    static char big[HTTP_MAX_HEAD_BYTES + 64];
    struct parsed p;

    /* A request target over the limit: 414. */
    memset(big, 'a', sizeof(big) - 1);
    memcpy(big, "GET /", 5);
    big[sizeof(big) - 1] = '\0';
    parse_request(&p, big, 0);
    assert_int_equal(p.st, TG_E_PROTO);
    assert_int_equal(p.h.err_status, 414);

    /* Too many headers: 431. */
    size_t o = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++)
        o += (size_t)snprintf(big + o, sizeof(big) - o, "X-%d: v\r\n", i);
    snprintf(big + o, sizeof(big) - o, "\r\n");
    parse_request(&p, big, 0);
    assert_int_equal(p.st, TG_E_PROTO);
    assert_int_equal(p.h.err_status, 431);

    /* A header section over the byte limit: 431. */
    o = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    memset(big + o, 'b', sizeof(big) - o - 1);
    big[sizeof(big) - 1] = '\0';
    parse_request(&p, big, 0);
    assert_int_equal(p.st, TG_E_PROTO);
    assert_int_equal(p.h.err_status, 431);

    /* A body over max_body: 413, and the twin just under it is fine. */
    parse_request(&p, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 10);
    assert_int_equal(p.st, TG_E_PROTO);
    assert_int_equal(p.h.err_status, 413);
    parse_request(&p, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n", 10);
    assert_int_equal(p.st, TG_OK);
}

static void test_chunked_over_max_body(void **state)
{
    (void)state;
    struct parsed p;
    parse_request(&p, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 4);
    assert_int_equal(p.st, TG_OK);
    size_t n;
    bool done;
    assert_int_equal(h1_body(&p.h, "5\r\nhello\r\n0\r\n\r\n", 15, &n, &done), TG_E_PROTO);
    assert_int_equal(p.h.err_status, 413);
}

static void test_responses(void **state)
{
    (void)state;
    struct h1 h;
    struct http_head hd;
    const char *r1 = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
    h1_init(&h, false, 0);
    assert_int_equal(h1_head(&h, &hd, r1, strlen(r1)), TG_OK);
    assert_int_equal(hd.status, 200);
    assert_int_equal(hd.body, HTTP_BODY_LENGTH);
    span_is(&hd, hd.reason, "OK");

    const char *r2 = "HTTP/1.1 200 OK\r\n\r\n";
    h1_init(&h, false, 0);
    assert_int_equal(h1_head(&h, &hd, r2, strlen(r2)), TG_OK);
    assert_int_equal(hd.body, HTTP_BODY_EOF);

    /* The same head answering a HEAD request has no body. */
    h1_next(&h, true);
    assert_int_equal(h1_head(&h, &hd, r1, strlen(r1)), TG_OK);
    assert_int_equal(hd.body, HTTP_BODY_NONE);

    const char *r3 = "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
    h1_next(&h, false);
    assert_int_equal(h1_head(&h, &hd, r3, strlen(r3)), TG_OK);
    assert_int_equal(hd.body, HTTP_BODY_NONE);

    const char *bad = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    h1_next(&h, false);
    assert_int_equal(h1_head(&h, &hd, bad, strlen(bad)), TG_E_PROTO);
    assert_int_equal(h.err_status, 502);

    /* RFC 9110 §15: three digits, 1xx to 5xx; every refusal is a 502. */
    const char *odd[] = {"HTTP/1.1 000 X\r\n\r\n", "HTTP/1.1 099 X\r\n\r\n",
                         "HTTP/1.1 600 X\r\n\r\n", "HTTP/0.9 200 OK\r\n\r\n"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        h1_next(&h, false);
        assert_int_equal(h1_head(&h, &hd, odd[i], strlen(odd[i])), TG_E_PROTO);
        assert_int_equal(h.err_status, 502);
    }
    const char *edge = "HTTP/1.1 599 X\r\nContent-Length: 0\r\n\r\n";
    h1_next(&h, false);
    assert_int_equal(h1_head(&h, &hd, edge, strlen(edge)), TG_OK);
    char many[4096];
    size_t o = (size_t)snprintf(many, sizeof(many), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < HTTP_MAX_HEADERS + 1; i++)
        o += (size_t)snprintf(many + o, sizeof(many) - o, "X%d: v\r\n", i);
    o += (size_t)snprintf(many + o, sizeof(many) - o, "\r\n");
    h1_next(&h, false);
    assert_int_equal(h1_head(&h, &hd, many, o), TG_E_PROTO);
    assert_int_equal(h.err_status, 502);

    const char *garbage = "SSH-2.0-OpenSSH\r\n\r\n";
    h1_next(&h, false);
    assert_int_equal(h1_head(&h, &hd, garbage, strlen(garbage)), TG_E_PROTO);
}

static void test_upgrade_and_expect(void **state)
{
    (void)state;
    struct parsed p;
    parse_request(&p,
                  "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  "Expect: 100-continue\r\n\r\n",
                  0);
    assert_int_equal(p.st, TG_OK);
    assert_true(p.hd.is_upgrade);
    assert_true(p.hd.expect_continue);
    parse_request(&p, "GET /ws HTTP/1.1\r\nHost: h\r\n\r\n", 0);
    assert_int_equal(p.st, TG_OK);
    assert_false(p.hd.is_upgrade);
    assert_false(p.hd.expect_continue);
}

/* Only a WebSocket handshake is an upgrade; h2c and the like stay plain. */
static void test_other_upgrades_are_plain(void **state)
{
    (void)state;
    static const char *const plain[] = {
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        "HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: TLS/1.2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocketx\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        struct parsed p;
        parse_request(&p, plain[i], 0);
        assert_int_equal(p.st, TG_OK);
        if (p.hd.is_upgrade)
            fail_msg("case %zu taken for an upgrade: %s", i, plain[i]);
    }
    struct parsed p;
    parse_request(&p,
                  "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
                  "Upgrade: WebSocket\r\n\r\n",
                  0);
    assert_int_equal(p.st, TG_OK);
    assert_true(p.hd.is_upgrade);
}

/* RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty
 * framing, refused even when it ends in chunked. */
static void test_http10_transfer_encoding(void **state)
{
    (void)state;
    struct parsed p;
    parse_request(&p, "POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0);
    assert_int_equal(p.st, TG_E_PROTO);
    assert_int_equal(p.h.err_status, 400);
    parse_request(&p, "POST /a HTTP/1.0\r\nHost: h\r\ntransfer-encoding: CHUNKED\r\n\r\n", 0);
    assert_int_equal(p.st, TG_E_PROTO);
    assert_int_equal(p.h.err_status, 400);
    /* Twins: HTTP/1.0 with Content-Length, HTTP/1.1 chunked. */
    parse_request(&p, "POST /a HTTP/1.0\r\nContent-Length: 3\r\n\r\n", 0);
    assert_int_equal(p.st, TG_OK);
    assert_int_equal(p.hd.body, HTTP_BODY_LENGTH);
    parse_request(&p, "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 0);
    assert_int_equal(p.st, TG_OK);
    assert_int_equal(p.hd.body, HTTP_BODY_CHUNKED);

    /* A response too: 502. */
    static const char resp[] = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    h1_init(&p.h, false, 0);
    assert_int_equal(h1_head(&p.h, &p.hd, resp, strlen(resp)), TG_E_PROTO);
    assert_int_equal(p.h.err_status, 502);
    static const char resp11[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    h1_init(&p.h, false, 0);
    assert_int_equal(h1_head(&p.h, &p.hd, resp11, strlen(resp11)), TG_OK);
}

static void test_http10_keepalive(void **state)
{
    (void)state;
    struct parsed p;
    parse_request(&p, "GET / HTTP/1.0\r\n\r\n", 0);
    assert_int_equal(p.st, TG_OK);
    assert_false(p.hd.keep_alive);
    parse_request(&p, "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 0);
    assert_int_equal(p.st, TG_OK);
    assert_false(p.hd.keep_alive);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_incremental_head),
        cmocka_unit_test(test_chunked_body_ends_exactly),
        cmocka_unit_test(test_bad_chunk_refused),
        cmocka_unit_test(test_smuggling_refused),
        cmocka_unit_test(test_short_header_name_accepted),
        cmocka_unit_test(test_target_and_host),
        cmocka_unit_test(test_trailers),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_chunked_over_max_body),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_upgrade_and_expect),
        cmocka_unit_test(test_other_upgrades_are_plain),
        cmocka_unit_test(test_http10_keepalive),
        cmocka_unit_test(test_http10_transfer_encoding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
