/*
 * Fuzzes proxyproto_v2_decode. Whatever it accepts must stay inside the
 * input, must need every byte it consumed, and must survive a round trip:
 * re-encoding the addresses, ALPN, authority and client certificate and
 * decoding again gives the same values. The v1 encoder gets the same
 * addresses: one line of at most 107 bytes (the spec's limit) that says
 * them back, and TG_E_AGAIN, writing nothing past the end, when it does
 * not fit.
 *
 * clang -fsanitize=fuzzer -DTG_LIBFUZZER builds a fuzzer; otherwise main()
 * replays every file in the directory given as argv[1].
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

#include "proxy/proxy.h"
#include "pp2_decode.h"

enum { PP2_MAX_HDR = 16 + 65535 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A span, if non-NULL, lies within [base, base + len). */
static bool within(const uint8_t *p, size_t n, const uint8_t *base, size_t len)
{
    if (p == NULL)
        return n == 0;
    return p >= base && (size_t)(p - base) <= len && n <= len - (size_t)(p - base);
}

static bool same_addr(const struct net_addr *a, const struct net_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    return a->ss.ss_family == AF_UNSPEC || net_addr_equal(a, b);
}

static bool same_bytes(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

/* A TLV value as the C string pp_info wants; NULL when it has a NUL inside. */
static char *dup_str(const uint8_t *v, size_t n)
{
    if (n > 0 && memchr(v, '\0', n) != NULL)
        return NULL;
    char *s = malloc(n + 1);
    CHECK(s != NULL);
    if (n > 0)
        memcpy(s, v, n);
    s[n] = '\0';
    return s;
}

/* The address and port of a as v1 writes them. */
static void v1_addr(const struct net_addr *a, char *ip, size_t ip_len, unsigned *port)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        CHECK(inet_ntop(AF_INET, &in->sin_addr, ip, (socklen_t)ip_len) != NULL);
        *port = ntohs(in->sin_port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        CHECK(inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)ip_len) != NULL);
        *port = ntohs(in6->sin6_port);
    }
}

/* PROXY protocol §2.1: "PROXY TCP4|TCP6 src dst sport dport\r\n", or
 * "PROXY UNKNOWN..." for other or mixed families; 107 bytes at most. */
static void check_v1(const struct pp_decoded *d)
{
    struct pp_info pi = {0};
    pi.src = d->src;
    pi.dst = d->dst;
    uint8_t line[108];
    memset(line, 0xa5, sizeof(line));
    size_t len = 0;
    CHECK(proxyproto_v1_encode(&pi, line, sizeof(line), &len) == TG_OK);
    CHECK(len >= 8 && len <= 107);
    CHECK(memcmp(line, "PROXY ", 6) == 0 && memcmp(line + len - 2, "\r\n", 2) == 0);
    CHECK(memchr(line, '\n', len - 1) == NULL && memchr(line, '\r', len - 2) == NULL);

    int fam = d->src.ss.ss_family;
    if ((fam == AF_INET || fam == AF_INET6) && d->dst.ss.ss_family == fam) {
        char want[160], src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
        unsigned sport, dport;
        v1_addr(&d->src, src, sizeof(src), &sport);
        v1_addr(&d->dst, dst, sizeof(dst), &dport);
        int n = snprintf(want, sizeof(want), "PROXY %s %s %s %u %u\r\n",
                         fam == AF_INET ? "TCP4" : "TCP6", src, dst, sport, dport);
        CHECK(n > 0 && (size_t)n == len && memcmp(want, line, len) == 0);
    } else {
        CHECK(len >= 15 && memcmp(line, "PROXY UNKNOWN", 13) == 0);
    }

    /* One byte short: refused, and nothing written past the end. */
    uint8_t small[108];
    memset(small, 0x5a, sizeof(small));
    size_t small_len = 0;
    CHECK(proxyproto_v1_encode(&pi, small, len - 1, &small_len) == TG_E_AGAIN);
    for (size_t i = len - 1; i < sizeof(small); i++)
        CHECK(small[i] == 0x5a);
}

static void round_trip(const struct pp_decoded *d)
{
    check_v1(d);
    char *alpn = dup_str(d->tlv_alpn, d->tlv_alpn_len);
    char *authority = dup_str(d->tlv_authority, d->tlv_authority_len);
    uint8_t *out = malloc(PP2_MAX_HDR);
    CHECK(out != NULL);
    if (alpn == NULL || authority == NULL)
        goto out; /* a string with a NUL cannot be said again */

    struct pp_info pi = {0};
    pi.src = d->src;
    pi.dst = d->dst;
    pi.alpn = alpn;
    pi.authority = authority;
    pi.client_cert_der = d->tlv_client_cert;
    pi.client_cert_der_len = d->tlv_client_cert_len;
    size_t len = 0;
    /* Never longer than what was decoded, so it always fits. */
    CHECK(proxyproto_v2_encode(&pi, out, PP2_MAX_HDR, &len) == TG_OK);

    struct pp_decoded again;
    size_t consumed = 0;
    CHECK(proxyproto_v2_decode(out, len, &again, &consumed) == TG_OK);
    CHECK(consumed == len);
    CHECK(!again.is_local);
    CHECK(same_addr(&again.src, &d->src));
    CHECK(same_addr(&again.dst, &d->dst));
    CHECK(same_bytes(again.tlv_alpn, again.tlv_alpn_len, d->tlv_alpn, d->tlv_alpn_len));
    CHECK(same_bytes(again.tlv_authority, again.tlv_authority_len, d->tlv_authority,
                     d->tlv_authority_len));
    CHECK(same_bytes(again.tlv_client_cert, again.tlv_client_cert_len, d->tlv_client_cert,
                     d->tlv_client_cert_len));
    CHECK(again.tlv_ssl == NULL);
out:
    free(out);
    free(authority);
    free(alpn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pp_decoded d;
    size_t consumed = 0;
    enum tg_status st = proxyproto_v2_decode(data, size, &d, &consumed);
    CHECK(st == TG_OK || st == TG_E_AGAIN || st == TG_E_PROTO);
    if (st != TG_OK) {
        CHECK(consumed == 0);
        return 0;
    }
    CHECK(consumed >= 16 && consumed <= size && consumed <= PP2_MAX_HDR);
    CHECK(within(d.tlv_alpn, d.tlv_alpn_len, data, consumed));
    CHECK(within(d.tlv_authority, d.tlv_authority_len, data, consumed));
    CHECK(within(d.tlv_ssl, d.tlv_ssl_len, data, consumed));
    CHECK(within(d.tlv_client_cert, d.tlv_client_cert_len, data, consumed));
    CHECK(!d.is_local || (d.src.ss.ss_family == AF_UNSPEC && d.dst.ss.ss_family == AF_UNSPEC));

    /* One byte short of the header is never enough. */
    struct pp_decoded short_d;
    size_t short_consumed = 0;
    CHECK(proxyproto_v2_decode(data, consumed - 1, &short_d, &short_consumed) == TG_E_AGAIN);

    round_trip(&d);
    return 0;
}
