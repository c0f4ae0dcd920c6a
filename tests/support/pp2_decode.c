/* A strict PROXY v2 decoder (proxy-protocol.txt §2.2) for the tests and
 * the fuzzer: its input is hostile. */
#include "pp2_decode.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

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
    size_t sig_n = len < sizeof(proxyproto_v2_sig) ? len : sizeof(proxyproto_v2_sig);
    if (sig_n > 0 && memcmp(src, proxyproto_v2_sig, sig_n) != 0)
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
