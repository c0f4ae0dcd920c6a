/*
 * PROXY protocol v1 and v2 headers (haproxy's proxy-protocol.txt), as
 * sent to a backend. (The tests' v2 decoder, tests/support/pp2_decode.c,
 * checks what these encoders send.)
 */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

const uint8_t proxyproto_v2_sig[PP2_SIG_LEN] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* The family both addresses share (AF_INET or AF_INET6), else AF_UNSPEC. */
static int pp_family(const struct pp_info *pi)
{
    int f = pi->src.ss.ss_family;
    if (f != pi->dst.ss.ss_family || (f != AF_INET && f != AF_INET6))
        return AF_UNSPEC;
    return f;
}

enum tg_status proxyproto_v1_encode(const struct pp_info *pi, uint8_t *dst, size_t cap, size_t *len)
{
    char line[PP1_MAX_LEN + 1];
    int n;
    int fam = pp_family(pi);
    if (fam == AF_UNSPEC) {
        n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
    } else {
        char src[INET6_ADDRSTRLEN];
        char dst_host[INET6_ADDRSTRLEN];
        net_addr_host(&pi->src, src, sizeof(src));
        net_addr_host(&pi->dst, dst_host, sizeof(dst_host));
        n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
                     fam == AF_INET ? "TCP4" : "TCP6", src, dst_host, net_addr_port(&pi->src),
                     net_addr_port(&pi->dst));
    }
    if (n < 0 || (size_t)n >= sizeof(line))
        return TG_E_INTERNAL;
    if ((size_t)n > cap)
        return TG_E_AGAIN;
    memcpy(dst, line, (size_t)n);
    *len = (size_t)n;
    return TG_OK;
}

/* ---- v2 encoding ---- */

/* Length of an optional string: 0 when NULL, which means "not sent". */
static size_t opt_len(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

/* Bytes a TLV with an n-byte value takes; absent (0) when n is 0. */
static size_t tlv_size(size_t n)
{
    return n > 0 ? PP2_TLV_HDR_LEN + n : 0;
}

static uint8_t *put_u16(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return p + 4;
}

static uint8_t *put_tlv_head(uint8_t *p, uint8_t type, size_t n)
{
    *p++ = type;
    return put_u16(p, n);
}

/* Writes a TLV unless its value is empty. */
static uint8_t *put_tlv(uint8_t *p, uint8_t type, const void *v, size_t n)
{
    if (n == 0)
        return p;
    p = put_tlv_head(p, type, n);
    memcpy(p, v, n);
    return p + n;
}

/* §2.2: addresses then ports, all in network byte order as sockaddrs keep them. */
static uint8_t *put_addrs(uint8_t *p, const struct pp_info *pi, int fam)
{
    if (fam == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)&pi->src.ss;
        const struct sockaddr_in *d = (const struct sockaddr_in *)&pi->dst.ss;
        memcpy(p, &s->sin_addr, 4);
        memcpy(p + 4, &d->sin_addr, 4);
        memcpy(p + 8, &s->sin_port, 2);
        memcpy(p + 10, &d->sin_port, 2);
        return p + PP2_ADDR_LEN_INET;
    }
    if (fam == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)&pi->src.ss;
        const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)&pi->dst.ss;
        memcpy(p, &s->sin6_addr, 16);
        memcpy(p + 16, &d->sin6_addr, 16);
        memcpy(p + 32, &s->sin6_port, 2);
        memcpy(p + 34, &d->sin6_port, 2);
        return p + PP2_ADDR_LEN_INET6;
    }
    return p;
}

/*
 * Sizes are worked out before anything is written, so a short dst is left
 * untouched. A header whose values cannot fit the 16-bit length fields (a
 * client certificate near 64 KiB) cannot be sent at all: TG_E_PROTO.
 */
enum tg_status proxyproto_v2_encode(const struct pp_info *pi, uint8_t *dst, size_t cap, size_t *len)
{
    int fam = pp_family(pi);
    uint8_t fam_byte = PP2_FAM_UNSPEC;
    size_t addr_len = 0;
    if (fam == AF_INET) {
        fam_byte = PP2_FAM_TCP4;
        addr_len = PP2_ADDR_LEN_INET;
    } else if (fam == AF_INET6) {
        fam_byte = PP2_FAM_TCP6;
        addr_len = PP2_ADDR_LEN_INET6;
    }

    size_t alpn_len = opt_len(pi->alpn);
    size_t authority_len = opt_len(pi->authority);
    size_t cert_len = pi->client_cert_der_len;
    size_t version_len = pi->has_ssl ? opt_len(pi->ssl_version) : 0;
    size_t cipher_len = pi->has_ssl ? opt_len(pi->ssl_cipher) : 0;
    size_t cn_len = pi->has_ssl ? opt_len(pi->ssl_cn) : 0;
    if (alpn_len > PP2_MAX_VALUE || authority_len > PP2_MAX_VALUE || cert_len > PP2_MAX_VALUE ||
        version_len > PP2_MAX_VALUE || cipher_len > PP2_MAX_VALUE || cn_len > PP2_MAX_VALUE)
        return TG_E_PROTO;
    size_t ssl_len = 0;
    if (pi->has_ssl)
        ssl_len =
            PP2_SSL_FIXED_LEN + tlv_size(version_len) + tlv_size(cipher_len) + tlv_size(cn_len);
    size_t body = addr_len + tlv_size(alpn_len) + tlv_size(authority_len) + tlv_size(ssl_len) +
                  tlv_size(cert_len);
    if (ssl_len > PP2_MAX_VALUE || body > PP2_MAX_VALUE)
        return TG_E_PROTO;
    if (PP2_HDR_LEN + body > cap) {
        *len = PP2_HDR_LEN + body;
        return TG_E_AGAIN;
    }

    uint8_t *p = dst;
    memcpy(p, proxyproto_v2_sig, sizeof(proxyproto_v2_sig));
    p += sizeof(proxyproto_v2_sig);
    *p++ = PP2_VERSION | PP2_CMD_PROXY;
    *p++ = fam_byte;
    p = put_u16(p, body);
    p = put_addrs(p, pi, fam);
    p = put_tlv(p, PP2_TYPE_ALPN, pi->alpn, alpn_len);
    p = put_tlv(p, PP2_TYPE_AUTHORITY, pi->authority, authority_len);
    if (pi->has_ssl) {
        p = put_tlv_head(p, PP2_TYPE_SSL, ssl_len);
        *p++ = pi->ssl_client;
        p = put_u32(p, pi->ssl_verify);
        p = put_tlv(p, PP2_SUBTYPE_SSL_VERSION, pi->ssl_version, version_len);
        p = put_tlv(p, PP2_SUBTYPE_SSL_CIPHER, pi->ssl_cipher, cipher_len);
        p = put_tlv(p, PP2_SUBTYPE_SSL_CN, pi->ssl_cn, cn_len);
    }
    p = put_tlv(p, PP2_TYPE_TOLLGATE_CLIENT_CERT, pi->client_cert_der, cert_len);
    *len = (size_t)(p - dst);
    return TG_OK;
}
