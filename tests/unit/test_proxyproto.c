/* PROXY protocol v1/v2 (src/proxy/proxyproto.c) against haproxy's proxy-protocol.txt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/proxy.h"
#include "pp2_decode.h"

#define SIG 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A

enum { HDR_MAX = 16 + 65535, SENTINEL = 0xEE };

static struct net_addr addr(const char *s)
{
    struct net_addr a;
    char err[128];
    assert_int_equal(net_addr_parse(s, false, &a, err, sizeof(err)), TG_OK);
    return a;
}

static struct pp_info info4(void)
{
    struct pp_info pi = {0};
    pi.src = addr("192.168.0.1:56324");
    pi.dst = addr("192.168.0.11:443");
    return pi;
}

static struct pp_info info6(void)
{
    struct pp_info pi = {0};
    pi.src = addr("[2001:db8::1]:56324");
    pi.dst = addr("[2001:db8::2]:443");
    return pi;
}

typedef enum tg_status (*encode_fn)(const struct pp_info *, uint8_t *, size_t, size_t *);

/* Every cap below the header's size is refused and leaves dst untouched. */
static void assert_short_caps_refused(encode_fn enc, const struct pp_info *pi, size_t need)
{
    uint8_t *out = malloc(need);
    assert_non_null(out);
    for (size_t cap = 0; cap < need; cap++) {
        size_t len = 0;
        memset(out, SENTINEL, need);
        assert_int_equal(enc(pi, out, cap, &len), TG_E_AGAIN);
        for (size_t i = 0; i < need; i++)
            assert_int_equal(out[i], SENTINEL);
    }
    free(out);
}

/* Encodes into a buffer of exactly the expected size and compares. */
static void assert_encodes_to(encode_fn enc, const struct pp_info *pi, const void *want,
                              size_t want_len)
{
    uint8_t out[256];
    size_t len = 0;
    assert_true(want_len <= sizeof(out));
    assert_int_equal(enc(pi, out, want_len, &len), TG_OK);
    assert_int_equal(len, want_len);
    assert_memory_equal(out, want, want_len);
    assert_short_caps_refused(enc, pi, want_len);
}

/* ---- v1 ---- */

static void test_v1_tcp4(void **state)
{
    (void)state;
    struct pp_info pi = info4();
    const char *want = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    assert_encodes_to(proxyproto_v1_encode, &pi, want, strlen(want));
}

static void test_v1_tcp6(void **state)
{
    (void)state;
    struct pp_info pi = info6();
    const char *want = "PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n";
    assert_encodes_to(proxyproto_v1_encode, &pi, want, strlen(want));
}

/* §2.1: the worst case, 104 bytes, still under the 107-byte limit. */
static void test_v1_tcp6_longest(void **state)
{
    (void)state;
    struct pp_info pi = {0};
    pi.src = addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    pi.dst = addr("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
    const char *want = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_int_equal(strlen(want), 104);
    assert_encodes_to(proxyproto_v1_encode, &pi, want, strlen(want));
}

static void test_v1_unknown(void **state)
{
    (void)state;
    const char *want = "PROXY UNKNOWN\r\n";
    struct pp_info mixed = {0};
    mixed.src = addr("192.168.0.1:56324");
    mixed.dst = addr("[2001:db8::2]:443");
    assert_encodes_to(proxyproto_v1_encode, &mixed, want, strlen(want));

    struct pp_info none = {0}; /* AF_UNSPEC on both sides */
    assert_encodes_to(proxyproto_v1_encode, &none, want, strlen(want));
}

/* ---- v2 encoding, byte-exact ---- */

static const uint8_t v2_tcp4[] = {
    SIG,  0x21, 0x11, 0x00, 0x0C, /* PROXY, TCP4, 12 bytes */
    0xC0, 0xA8, 0x00, 0x01,       /* 192.168.0.1 */
    0xC0, 0xA8, 0x00, 0x0B,       /* 192.168.0.11 */
    0xDC, 0x04,                   /* 56324 */
    0x01, 0xBB,                   /* 443 */
};

static void test_v2_tcp4(void **state)
{
    (void)state;
    struct pp_info pi = info4();
    assert_encodes_to(proxyproto_v2_encode, &pi, v2_tcp4, sizeof(v2_tcp4));
}

static void test_v2_tcp6(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        SIG,  0x21, 0x21, 0x00, 0x24,                   /* PROXY, TCP6, 36 bytes */
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, /* 2001:db8::1 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, /* (second half) */
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00, /* 2001:db8::2 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, /* (second half) */
        0xDC, 0x04, 0x01, 0xBB,                         /* 56324, 443 */
    };
    struct pp_info pi = info6();
    assert_encodes_to(proxyproto_v2_encode, &pi, want, sizeof(want));
}

static void test_v2_mixed_is_unspec(void **state)
{
    (void)state;
    static const uint8_t want[] = {SIG, 0x21, 0x00, 0x00, 0x00};
    struct pp_info pi = {0};
    pi.src = addr("[2001:db8::1]:56324");
    pi.dst = addr("192.168.0.11:443");
    assert_encodes_to(proxyproto_v2_encode, &pi, want, sizeof(want));
}

/* Empty or absent values send no TLV at all; SSL facts only with has_ssl. */
static void test_v2_absent_values_omitted(void **state)
{
    (void)state;
    static const uint8_t der[] = {0x30};
    struct pp_info pi = info4();
    pi.alpn = "";
    pi.authority = NULL;
    pi.has_ssl = false;
    pi.ssl_version = "TLSv1.3";
    pi.ssl_cn = "alice";
    pi.client_cert_der = der;
    pi.client_cert_der_len = 0;
    assert_encodes_to(proxyproto_v2_encode, &pi, v2_tcp4, sizeof(v2_tcp4));
}

/* has_ssl with no strings: the SSL TLV carries just client and verify. */
static void test_v2_ssl_without_strings(void **state)
{
    (void)state;
    static const uint8_t want[] = {
        SIG,  0x21, 0x11, 0x00, 0x14, /* PROXY, TCP4, 12 + 8 bytes */
        0xC0, 0xA8, 0x00, 0x01,       /* 192.168.0.1 */
        0xC0, 0xA8, 0x00, 0x0B,       /* 192.168.0.11 */
        0xDC, 0x04, 0x01, 0xBB,       /* 56324, 443 */
        0x20, 0x00, 0x05,             /* SSL, 5 bytes */
        0x01,                         /* client: PP2_CLIENT_SSL */
        0x00, 0x00, 0x00, 0x12,       /* verify */
    };
    struct pp_info pi = info4();
    pi.has_ssl = true;
    pi.ssl_client = PP2_CLIENT_SSL;
    pi.ssl_verify = 0x12;
    pi.ssl_version = "";
    assert_encodes_to(proxyproto_v2_encode, &pi, want, sizeof(want));
}

/* ---- v2 round trip with every TLV ---- */

static const uint8_t cert_der[] = {0x30, 0x82, 0x01, 0x0A, 0x02, 0x01, 0x00, 0xFF};

static struct pp_info full_info(void)
{
    struct pp_info pi = info6();
    pi.alpn = "h2";
    pi.authority = "api.example.com";
    pi.has_ssl = true;
    pi.ssl_client = PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS;
    pi.ssl_verify = 0x01020304;
    pi.ssl_version = "TLSv1.3";
    pi.ssl_cipher = "TLS_AES_128_GCM_SHA256";
    pi.ssl_cn = "alice";
    pi.client_cert_der = cert_der;
    pi.client_cert_der_len = sizeof(cert_der);
    return pi;
}

static size_t encode_full(uint8_t *out, size_t cap)
{
    struct pp_info pi = full_info();
    size_t len = 0;
    assert_int_equal(proxyproto_v2_encode(&pi, out, cap, &len), TG_OK);
    return len;
}

static void test_v2_tlvs_round_trip(void **state)
{
    (void)state;
    static const uint8_t want_ssl[] = {
        0x07, 0x01, 0x02, 0x03, 0x04,                           /* client, verify */
        0x21, 0x00, 0x07, 'T',  'L',  'S',  'v', '1', '.', '3', /* VERSION */
        0x23, 0x00, 0x16, 'T',  'L',  'S',  '_', 'A', 'E', 'S', /* CIPHER */
        '_',  '1',  '2',  '8',  '_',  'G',  'C', 'M', '_', 'S', 'H', 'A',
        '2',  '5',  '6',  0x22, 0x00, 0x05, 'a', 'l', 'i', 'c', 'e', /* CN */
    };
    struct pp_info pi = full_info();
    uint8_t out[512];
    size_t len = encode_full(out, sizeof(out));
    /* 36 address bytes, ALPN 3+2, authority 3+15, SSL 3+48, cert 3+8 */
    assert_int_equal(len, 16 + 36 + 5 + 18 + 51 + 11);
    assert_int_equal(out[13], 0x21);
    assert_int_equal((size_t)out[14] << 8 | out[15], len - 16);

    struct pp_decoded d;
    size_t consumed = 0;
    assert_int_equal(proxyproto_v2_decode(out, len, &d, &consumed), TG_OK);
    assert_int_equal(consumed, len);
    assert_false(d.is_local);
    assert_true(net_addr_equal(&d.src, &pi.src));
    assert_true(net_addr_equal(&d.dst, &pi.dst));
    assert_int_equal(d.tlv_alpn_len, 2);
    assert_memory_equal(d.tlv_alpn, "h2", 2);
    assert_int_equal(d.tlv_authority_len, strlen("api.example.com"));
    assert_memory_equal(d.tlv_authority, "api.example.com", d.tlv_authority_len);
    assert_int_equal(d.tlv_ssl_len, sizeof(want_ssl));
    assert_memory_equal(d.tlv_ssl, want_ssl, sizeof(want_ssl));
    assert_int_equal(d.tlv_client_cert_len, sizeof(cert_der));
    assert_memory_equal(d.tlv_client_cert, cert_der, sizeof(cert_der));

    assert_short_caps_refused(proxyproto_v2_encode, &pi, len);
}

static void test_v2_tcp4_decodes(void **state)
{
    (void)state;
    struct pp_info pi = info4();
    struct pp_decoded d;
    size_t consumed = 0;
    assert_int_equal(proxyproto_v2_decode(v2_tcp4, sizeof(v2_tcp4), &d, &consumed), TG_OK);
    assert_int_equal(consumed, sizeof(v2_tcp4));
    assert_true(net_addr_equal(&d.src, &pi.src));
    assert_true(net_addr_equal(&d.dst, &pi.dst));
    assert_null(d.tlv_alpn);
    assert_null(d.tlv_authority);
    assert_null(d.tlv_ssl);
    assert_null(d.tlv_client_cert);
}

/* The largest client certificate the 16-bit length allows, and one byte more. */
static void test_v2_too_long(void **state)
{
    (void)state;
    uint8_t *der = calloc(1, 65536);
    uint8_t *out = malloc(HDR_MAX + 1);
    assert_non_null(der);
    assert_non_null(out);
    struct pp_info pi = info4();
    pi.client_cert_der = der;
    size_t len = 0;

    pi.client_cert_der_len = 65535 - 12 - 3;
    assert_int_equal(proxyproto_v2_encode(&pi, out, HDR_MAX + 1, &len), TG_OK);
    assert_int_equal(len, HDR_MAX);
    struct pp_decoded d;
    size_t consumed = 0;
    assert_int_equal(proxyproto_v2_decode(out, len, &d, &consumed), TG_OK);
    assert_int_equal(consumed, HDR_MAX);
    assert_int_equal(d.tlv_client_cert_len, pi.client_cert_der_len);

    pi.client_cert_der_len++;
    assert_int_equal(proxyproto_v2_encode(&pi, out, HDR_MAX + 1, &len), TG_E_PROTO);
    pi.client_cert_der_len = 65536;
    assert_int_equal(proxyproto_v2_encode(&pi, out, HDR_MAX + 1, &len), TG_E_PROTO);
    free(out);
    free(der);
}

/* ---- v2 decoding: rejections ---- */

static enum tg_status decode(const uint8_t *src, size_t len)
{
    struct pp_decoded d;
    size_t consumed = 0;
    enum tg_status st = proxyproto_v2_decode(src, len, &d, &consumed);
    if (st != TG_OK)
        assert_int_equal(consumed, 0);
    return st;
}

/* A header with the given ver/cmd and family bytes around body. */
static size_t mk_hdr(uint8_t *out, uint8_t ver_cmd, uint8_t fam, const uint8_t *body,
                     size_t body_len)
{
    static const uint8_t sig[] = {SIG};
    memcpy(out, sig, sizeof(sig));
    out[12] = ver_cmd;
    out[13] = fam;
    out[14] = (uint8_t)(body_len >> 8);
    out[15] = (uint8_t)body_len;
    if (body_len > 0)
        memcpy(out + 16, body, body_len);
    return 16 + body_len;
}

static const uint8_t addr4[12] = {192, 168, 0, 1, 192, 168, 0, 11, 0xDC, 0x04, 0x01, 0xBB};

/* A TCP4 header whose TLV area is tlvs. */
static size_t mk_tcp4(uint8_t *out, const uint8_t *tlvs, size_t tlvs_len)
{
    uint8_t body[128];
    assert_true(sizeof(addr4) + tlvs_len <= sizeof(body));
    memcpy(body, addr4, sizeof(addr4));
    memcpy(body + sizeof(addr4), tlvs, tlvs_len);
    return mk_hdr(out, 0x21, 0x11, body, sizeof(addr4) + tlvs_len);
}

static void test_decode_truncated(void **state)
{
    (void)state;
    uint8_t out[512];
    size_t len = encode_full(out, sizeof(out));
    assert_int_equal(decode(out, len), TG_OK);
    for (size_t n = 0; n < len; n++)
        assert_int_equal(decode(out, n), TG_E_AGAIN);
}

static void test_decode_stops_at_header_end(void **state)
{
    (void)state;
    uint8_t in[sizeof(v2_tcp4) + 5];
    memcpy(in, v2_tcp4, sizeof(v2_tcp4));
    memcpy(in + sizeof(v2_tcp4), "GET /", 5);
    struct pp_decoded d;
    size_t consumed = 0;
    assert_int_equal(proxyproto_v2_decode(in, sizeof(in), &d, &consumed), TG_OK);
    assert_int_equal(consumed, sizeof(v2_tcp4));
}

static void test_decode_bad_signature(void **state)
{
    (void)state;
    uint8_t in[sizeof(v2_tcp4)];
    for (size_t i = 0; i < 12; i++) {
        memcpy(in, v2_tcp4, sizeof(in));
        in[i] ^= 0x20;
        assert_int_equal(decode(in, sizeof(in)), TG_E_PROTO);
        /* refused as soon as the wrong byte is in, without waiting for 16 */
        assert_int_equal(decode(in, i + 1), TG_E_PROTO);
        assert_int_equal(decode(in, i), TG_E_AGAIN);
    }
    /* a v1 header is not a v2 one */
    const char *v1 = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
    assert_int_equal(decode((const uint8_t *)v1, strlen(v1)), TG_E_PROTO);
}

static void test_decode_version_and_command(void **state)
{
    (void)state;
    static const uint8_t bad[] = {0x11, 0x31, 0x01, 0xF1, 0x22, 0x2F};
    uint8_t in[64];
    for (size_t i = 0; i < sizeof(bad); i++) {
        size_t n = mk_hdr(in, bad[i], 0x11, addr4, sizeof(addr4));
        assert_int_equal(decode(in, n), TG_E_PROTO);
    }
    size_t n = mk_hdr(in, 0x21, 0x11, addr4, sizeof(addr4));
    assert_int_equal(decode(in, n), TG_OK);
}

static void test_decode_local(void **state)
{
    (void)state;
    uint8_t in[64];
    struct pp_decoded d;
    size_t consumed = 0;
    size_t n = mk_hdr(in, 0x20, 0x00, NULL, 0);
    assert_int_equal(proxyproto_v2_decode(in, n, &d, &consumed), TG_OK);
    assert_true(d.is_local);
    assert_int_equal(consumed, 16);

    /* LOCAL ignores addresses even when a family is given */
    n = mk_hdr(in, 0x20, 0x11, addr4, sizeof(addr4));
    assert_int_equal(proxyproto_v2_decode(in, n, &d, &consumed), TG_OK);
    assert_true(d.is_local);
    assert_int_equal(d.src.ss.ss_family, AF_UNSPEC);
    assert_int_equal(consumed, n);
}

static void test_decode_family(void **state)
{
    (void)state;
    uint8_t body[216] = {0};
    uint8_t in[16 + sizeof(body)];
    struct pp_decoded d;
    size_t consumed = 0;
    static const uint8_t bad[] = {0x01, 0x13, 0x10, 0x23, 0x33, 0x41, 0xFF};
    for (size_t i = 0; i < sizeof(bad); i++) {
        size_t n = mk_hdr(in, 0x21, bad[i], body, sizeof(body));
        assert_int_equal(decode(in, n), TG_E_PROTO);
    }
    /* UDP and UNIX are valid but read as UNSPEC: no addresses */
    static const uint8_t unspec[] = {0x00, 0x12, 0x22, 0x31, 0x32};
    for (size_t i = 0; i < sizeof(unspec); i++) {
        size_t n = mk_hdr(in, 0x21, unspec[i], body, sizeof(body));
        assert_int_equal(proxyproto_v2_decode(in, n, &d, &consumed), TG_OK);
        assert_int_equal(consumed, n);
        assert_int_equal(d.src.ss.ss_family, AF_UNSPEC);
        assert_int_equal(d.dst.ss.ss_family, AF_UNSPEC);
    }
}

static void test_decode_address_too_short(void **state)
{
    (void)state;
    static const struct {
        uint8_t fam;
        size_t need;
    } cases[] = {{0x11, 12}, {0x12, 12}, {0x21, 36}, {0x22, 36}, {0x31, 216}, {0x32, 216}};
    uint8_t body[216] = {0};
    uint8_t in[16 + sizeof(body)];
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        size_t n = mk_hdr(in, 0x21, cases[i].fam, body, cases[i].need - 1);
        assert_int_equal(decode(in, n), TG_E_PROTO);
        n = mk_hdr(in, 0x21, cases[i].fam, body, cases[i].need);
        assert_int_equal(decode(in, n), TG_OK);
    }
}

static void test_decode_tlv_bounds(void **state)
{
    (void)state;
    uint8_t in[128];
    static const uint8_t alpn_ok[] = {0x01, 0x00, 0x02, 'h', '2'};
    static const uint8_t alpn_over[] = {0x01, 0x00, 0x03, 'h', '2'};
    static const uint8_t alpn_huge[] = {0x01, 0xFF, 0xFF, 'h', '2'};
    static const uint8_t partial_head[] = {0x01, 0x00};
    static const uint8_t empty_ok[] = {0x02, 0x00, 0x00};
    static const uint8_t unknown_ok[] = {0x04, 0x00, 0x01, 0x00, 0xE5, 0x00, 0x00};
    static const uint8_t dup[] = {0x01, 0x00, 0x01, 'a', 0x01, 0x00, 0x01, 'b'};

    struct pp_decoded d;
    size_t consumed = 0;
    size_t n = mk_tcp4(in, alpn_ok, sizeof(alpn_ok));
    assert_int_equal(proxyproto_v2_decode(in, n, &d, &consumed), TG_OK);
    assert_int_equal(d.tlv_alpn_len, 2);
    assert_memory_equal(d.tlv_alpn, "h2", 2);

    n = mk_tcp4(in, alpn_over, sizeof(alpn_over));
    assert_int_equal(decode(in, n), TG_E_PROTO);
    n = mk_tcp4(in, alpn_huge, sizeof(alpn_huge));
    assert_int_equal(decode(in, n), TG_E_PROTO);
    n = mk_tcp4(in, partial_head, sizeof(partial_head));
    assert_int_equal(decode(in, n), TG_E_PROTO);
    n = mk_tcp4(in, dup, sizeof(dup));
    assert_int_equal(decode(in, n), TG_E_PROTO);

    n = mk_tcp4(in, empty_ok, sizeof(empty_ok));
    assert_int_equal(proxyproto_v2_decode(in, n, &d, &consumed), TG_OK);
    assert_non_null(d.tlv_authority);
    assert_int_equal(d.tlv_authority_len, 0);

    n = mk_tcp4(in, unknown_ok, sizeof(unknown_ok));
    assert_int_equal(proxyproto_v2_decode(in, n, &d, &consumed), TG_OK);
    assert_int_equal(consumed, n);
    assert_null(d.tlv_alpn);
    assert_null(d.tlv_authority);
}

static void test_decode_ssl_bounds(void **state)
{
    (void)state;
    uint8_t in[128];
    static const uint8_t ok[] = {0x20, 0x00, 0x0A, 0x01, 0, 0, 0, 0, 0x21, 0x00, 0x02, 'v', '3'};
    static const uint8_t fixed_only[] = {0x20, 0x00, 0x05, 0x01, 0, 0, 0, 0};
    static const uint8_t too_short[] = {0x20, 0x00, 0x04, 0x01, 0, 0, 0};
    static const uint8_t sub_over[] = {0x20, 0x00, 0x0A, 0x01, 0,   0,  0,
                                       0,    0x21, 0x00, 0x03, 'v', '3'};
    static const uint8_t sub_partial[] = {0x20, 0x00, 0x07, 0x01, 0, 0, 0, 0, 0x21, 0x00};

    struct pp_decoded d;
    size_t consumed = 0;
    size_t n = mk_tcp4(in, ok, sizeof(ok));
    assert_int_equal(proxyproto_v2_decode(in, n, &d, &consumed), TG_OK);
    assert_int_equal(d.tlv_ssl_len, 10);
    assert_memory_equal(d.tlv_ssl, ok + 3, 10);
    n = mk_tcp4(in, fixed_only, sizeof(fixed_only));
    assert_int_equal(decode(in, n), TG_OK);

    n = mk_tcp4(in, too_short, sizeof(too_short));
    assert_int_equal(decode(in, n), TG_E_PROTO);
    n = mk_tcp4(in, sub_over, sizeof(sub_over));
    assert_int_equal(decode(in, n), TG_E_PROTO);
    n = mk_tcp4(in, sub_partial, sizeof(sub_partial));
    assert_int_equal(decode(in, n), TG_E_PROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1_tcp4),
        cmocka_unit_test(test_v1_tcp6),
        cmocka_unit_test(test_v1_tcp6_longest),
        cmocka_unit_test(test_v1_unknown),
        cmocka_unit_test(test_v2_tcp4),
        cmocka_unit_test(test_v2_tcp6),
        cmocka_unit_test(test_v2_mixed_is_unspec),
        cmocka_unit_test(test_v2_absent_values_omitted),
        cmocka_unit_test(test_v2_ssl_without_strings),
        cmocka_unit_test(test_v2_tlvs_round_trip),
        cmocka_unit_test(test_v2_tcp4_decodes),
        cmocka_unit_test(test_v2_too_long),
        cmocka_unit_test(test_decode_truncated),
        cmocka_unit_test(test_decode_stops_at_header_end),
        cmocka_unit_test(test_decode_bad_signature),
        cmocka_unit_test(test_decode_version_and_command),
        cmocka_unit_test(test_decode_local),
        cmocka_unit_test(test_decode_family),
        cmocka_unit_test(test_decode_address_too_short),
        cmocka_unit_test(test_decode_tlv_bounds),
        cmocka_unit_test(test_decode_ssl_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
