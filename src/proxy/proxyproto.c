/*
 * PROXY protocol v1 and v2 headers (haproxy's proxy-protocol.txt). The
 * encoders run on the way to a backend; the v2 decoder exists so that tests
 * and the fuzzer can check what the encoder sends, and it is strict because
 * its input is hostile.
 */
#include "proxy/proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* §2.2: the 12 bytes every v2 header starts with. */
static const uint8_t pp2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

enum {
    PP1_MAX_LEN = 107, /* §2.1: the longest v1 line, CRLF included */
    PP2_HDR_LEN = 16,  /* signature, ver/cmd, family, length */
    PP2_VERSION = 0x20,
    PP2_CMD_LOCAL = 0x00,
    PP2_CMD_PROXY = 0x01,
    PP2_FAM_UNSPEC = 0x00,
    PP2_FAM_TCP4 = 0x11,
    PP2_FAM_UDP4 = 0x12,
    PP2_FAM_TCP6 = 0x21,
    PP2_FAM_UDP6 = 0x22,
    PP2_FAM_UNIX_STREAM = 0x31,
    PP2_FAM_UNIX_DGRAM = 0x32,
    PP2_ADDR_LEN_INET = 12,
    PP2_ADDR_LEN_INET6 = 36,
    PP2_ADDR_LEN_UNIX = 216,
    PP2_TLV_HDR_LEN = 3,   /* type(1), length(2) */
    PP2_SSL_FIXED_LEN = 5, /* client(1), verify(4), then sub-TLVs (§2.2.5) */
    PP2_MAX_VALUE = 0xFFFF,
};

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
    memcpy(p, pp2_sig, sizeof(pp2_sig));
    p += sizeof(pp2_sig);
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

/* ---- v2 decoding ---- */

static size_t get_u16(const uint8_t *p)
{
    return (size_t)p[0] << 8 | p[1];
}

/*
 * §2.2: the address block size each family needs. Only the values the spec
 * lists are valid; UDP and UNIX are accepted but read as UNSPEC, which the
 * spec allows for families a receiver does not support.
 */
static bool pp2_addr_len(uint8_t fam, size_t *need)
{
    switch (fam) {
    case PP2_FAM_UNSPEC:
        *need = 0;
        return true;
    case PP2_FAM_TCP4:
    case PP2_FAM_UDP4:
        *need = PP2_ADDR_LEN_INET;
        return true;
    case PP2_FAM_TCP6:
    case PP2_FAM_UDP6:
        *need = PP2_ADDR_LEN_INET6;
        return true;
    case PP2_FAM_UNIX_STREAM:
    case PP2_FAM_UNIX_DGRAM:
        *need = PP2_ADDR_LEN_UNIX;
        return true;
    default:
        return false;
    }
}

static void set_in4(struct net_addr *a, const uint8_t *addr, const uint8_t *port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
    memset(a, 0, sizeof(*a));
    sin->sin_family = AF_INET;
    memcpy(&sin->sin_addr, addr, 4);
    memcpy(&sin->sin_port, port, 2);
    a->len = sizeof(*sin);
}

static void set_in6(struct net_addr *a, const uint8_t *addr, const uint8_t *port)
{
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->ss;
    memset(a, 0, sizeof(*a));
    sin6->sin6_family = AF_INET6;
    memcpy(&sin6->sin6_addr, addr, 16);
    memcpy(&sin6->sin6_port, port, 2);
    a->len = sizeof(*sin6);
}

/* Splits the next TLV off the n bytes at *p. False when it runs past them. */
static bool tlv_next(const uint8_t **p, size_t *n, uint8_t *type, const uint8_t **v, size_t *vlen)
{
    if (*n < PP2_TLV_HDR_LEN)
        return false;
    size_t l = get_u16(*p + 1);
    if (l > *n - PP2_TLV_HDR_LEN)
        return false;
    *type = (*p)[0];
    *v = *p + PP2_TLV_HDR_LEN;
    *vlen = l;
    *p += PP2_TLV_HDR_LEN + l;
    *n -= PP2_TLV_HDR_LEN + l;
    return true;
}

/* §2.2.5: client, verify, then sub-TLVs that must end exactly where it ends. */
static bool pp2_ssl_valid(const uint8_t *v, size_t n)
{
    if (n < PP2_SSL_FIXED_LEN)
        return false;
    const uint8_t *p = v + PP2_SSL_FIXED_LEN;
    n -= PP2_SSL_FIXED_LEN;
    while (n > 0) {
        uint8_t type;
        const uint8_t *sv;
        size_t sl;
        if (!tlv_next(&p, &n, &type, &sv, &sl))
            return false;
    }
    return true;
}

/* Records a TLV we understand; a second copy is refused as ambiguous. */
static bool take(const uint8_t **dst, size_t *dst_len, const uint8_t *v, size_t n)
{
    if (*dst != NULL)
        return false;
    *dst = v;
    *dst_len = n;
    return true;
}

static enum tg_status pp2_parse_tlvs(const uint8_t *p, size_t n, struct pp_decoded *out)
{
    while (n > 0) {
        uint8_t type;
        const uint8_t *v;
        size_t vl;
        if (!tlv_next(&p, &n, &type, &v, &vl))
            return TG_E_PROTO;
        bool ok = true;
        switch (type) {
        case PP2_TYPE_ALPN:
            ok = take(&out->tlv_alpn, &out->tlv_alpn_len, v, vl);
            break;
        case PP2_TYPE_AUTHORITY:
            ok = take(&out->tlv_authority, &out->tlv_authority_len, v, vl);
            break;
        case PP2_TYPE_SSL:
            ok = pp2_ssl_valid(v, vl) && take(&out->tlv_ssl, &out->tlv_ssl_len, v, vl);
            break;
        case PP2_TYPE_TOLLGATE_CLIENT_CERT:
            ok = take(&out->tlv_client_cert, &out->tlv_client_cert_len, v, vl);
            break;
        default:
            break; /* §2.2: receivers ignore TLV types they do not know */
        }
        if (!ok)
            return TG_E_PROTO;
    }
    return TG_OK;
}

enum tg_status proxyproto_v2_decode(const uint8_t *src, size_t len, struct pp_decoded *out,
                                    size_t *consumed)
{
    memset(out, 0, sizeof(*out));
    *consumed = 0;
    /* A wrong signature is refused as soon as its first bytes are in. */
    size_t sig_n = len < sizeof(pp2_sig) ? len : sizeof(pp2_sig);
    if (sig_n > 0 && memcmp(src, pp2_sig, sig_n) != 0)
        return TG_E_PROTO;
    if (len < PP2_HDR_LEN)
        return TG_E_AGAIN;

    uint8_t ver_cmd = src[12];
    uint8_t fam = src[13];
    uint8_t cmd = ver_cmd & 0x0F;
    size_t need;
    if ((ver_cmd & 0xF0) != PP2_VERSION)
        return TG_E_PROTO;
    if (cmd != PP2_CMD_LOCAL && cmd != PP2_CMD_PROXY)
        return TG_E_PROTO;
    if (!pp2_addr_len(fam, &need))
        return TG_E_PROTO;
    /* The length is 16 bits, so a header never exceeds 16 + 65535 bytes. */
    size_t body = get_u16(src + 14);
    if (body < need)
        return TG_E_PROTO;
    if (len - PP2_HDR_LEN < body)
        return TG_E_AGAIN;

    const uint8_t *a = src + PP2_HDR_LEN;
    /* §2.2: a LOCAL header's addresses are ignored; so are those we read as UNSPEC. */
    out->is_local = cmd == PP2_CMD_LOCAL;
    if (!out->is_local && fam == PP2_FAM_TCP4) {
        set_in4(&out->src, a, a + 8);
        set_in4(&out->dst, a + 4, a + 10);
    } else if (!out->is_local && fam == PP2_FAM_TCP6) {
        set_in6(&out->src, a, a + 32);
        set_in6(&out->dst, a + 16, a + 34);
    }
    enum tg_status st = pp2_parse_tlvs(a + need, body - need, out);
    if (st != TG_OK) {
        memset(out, 0, sizeof(*out));
        return st;
    }
    *consumed = PP2_HDR_LEN + body;
    return TG_OK;
}
