/* sticky: cookie: a signed cookie naming the target a client stays with. */
#include "lb/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* VALUE is "<target id>.<expiry>.<mac>": the target id is the hash of the
 * target's address (16 hex digits), the expiry Unix seconds, the mac the
 * first 8 bytes of HMAC-SHA256(key, group name, NUL, id "." expiry) in hex.
 * The address, not the index, so that a reload that reorders the targets
 * keeps the clients where they were. */
#define MAC_LEN       8
#define VALUE_MAX     64
#define MAX_TTL_S     (10LL * 365 * 24 * 3600)
#define COOKIE_HEADER "Set-Cookie: "

static bool cookie_mac(const struct lb_state *s, const struct cfg_target_group *g,
                       const char *signed_part, size_t len, uint8_t mac[MAC_LEN])
{
    uint8_t full[EVP_MAX_MD_SIZE];
    unsigned full_len = 0;
    size_t name_len = strlen(g->name) + 1; /* with its NUL: "ab"+"c.." differs from "a"+"bc.." */
    uint8_t buf[512];
    if (s->sh == NULL || name_len + len > sizeof(buf))
        return false;
    memcpy(buf, g->name, name_len);
    memcpy(buf + name_len, signed_part, len);
    if (HMAC(EVP_sha256(), s->sh->cookie_key, LB_COOKIE_KEY_LEN, buf, name_len + len, full,
             &full_len) == NULL ||
        full_len < MAC_LEN)
        return false;
    memcpy(mac, full, MAC_LEN);
    return true;
}

static bool hex_decode(const char *p, size_t len, uint8_t *out, size_t out_len)
{
    if (len != out_len * 2)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (v < 0)
            return false;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return true;
}

static bool parse_u64_hex16(const char *p, size_t len, uint64_t *out)
{
    uint8_t b[8];
    if (!hex_decode(p, len, b, sizeof(b)))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < sizeof(b); i++)
        v = v << 8 | b[i];
    *out = v;
    return true;
}

static bool parse_i64_dec(const char *p, size_t len, int64_t *out)
{
    if (len == 0 || len > 18)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return true;
}

/* The target a cookie value names, or -1. */
static int value_target(struct lb_state *s, struct lb_group *lg, const char *v, size_t len,
                        int64_t now_s)
{
    const char *dot1 = memchr(v, '.', len);
    if (dot1 == NULL)
        return -1;
    const char *rest = dot1 + 1;
    const char *dot2 = memchr(rest, '.', len - (size_t)(rest - v));
    if (dot2 == NULL)
        return -1;
    uint64_t id = 0;
    int64_t exp = 0;
    uint8_t mac[MAC_LEN], want[MAC_LEN];
    if (!parse_u64_hex16(v, (size_t)(dot1 - v), &id) ||
        !parse_i64_dec(rest, (size_t)(dot2 - rest), &exp) ||
        !hex_decode(dot2 + 1, len - (size_t)(dot2 + 1 - v), mac, sizeof(mac)))
        return -1;
    if (!cookie_mac(s, lg->g, v, (size_t)(dot2 - v), want) ||
        CRYPTO_memcmp(mac, want, MAC_LEN) != 0 || exp <= now_s)
        return -1;
    for (size_t i = 0; i < lg->g->n_targets && i < CFG_MAX_TARGETS; i++) {
        if (lg->hash[i] == id)
            return (int)i;
    }
    return -1;
}

int lb_cookie_target(struct lb_state *s, const struct cfg_target_group *g, const char *hdr,
                     size_t len, int64_t now_s)
{
    struct lb_group *lg = lb_group_of(s, g);
    if (lg == NULL || g->sticky.name == NULL)
        return -1;
    size_t name_len = strlen(g->sticky.name);
    size_t i = 0;
    /* RFC 6265 §4.2.1: cookie-pair *( ";" SP cookie-pair ) */
    while (i < len) {
        while (i < len && (hdr[i] == ' ' || hdr[i] == '\t' || hdr[i] == ';'))
            i++;
        size_t start = i;
        while (i < len && hdr[i] != ';')
            i++;
        size_t end = i;
        while (end > start && (hdr[end - 1] == ' ' || hdr[end - 1] == '\t'))
            end--;
        if (end - start > name_len && hdr[start + name_len] == '=' &&
            memcmp(hdr + start, g->sticky.name, name_len) == 0) {
            const char *v = hdr + start + name_len + 1;
            size_t vlen = end - start - name_len - 1;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
                v++;
                vlen -= 2;
            }
            int t = vlen <= VALUE_MAX ? value_target(s, lg, v, vlen, now_s) : -1;
            if (t >= 0)
                return t;
        }
    }
    return -1;
}

bool lb_cookie_header(struct lb_state *s, const struct cfg_target_group *g, int t, bool is_secure,
                      int64_t now_s, char *dst, size_t cap)
{
    struct lb_group *lg = lb_group_of(s, g);
    if (cap > 0)
        dst[0] = '\0';
    if (lg == NULL || t < 0 || (size_t)t >= g->n_targets || g->sticky.name == NULL)
        return false;
    long long ttl = (long long)(g->sticky.ttl_ms / 1000);
    if (ttl > MAX_TTL_S)
        ttl = MAX_TTL_S;
    char part[VALUE_MAX];
    int n =
        snprintf(part, sizeof(part), "%016" PRIx64 ".%lld", lg->hash[t], (long long)now_s + ttl);
    uint8_t mac[MAC_LEN];
    if (n < 0 || (size_t)n >= sizeof(part) || !cookie_mac(s, g, part, (size_t)n, mac))
        return false;
    char hex[MAC_LEN * 2 + 1];
    for (size_t i = 0; i < MAC_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    n = snprintf(dst, cap,
                 COOKIE_HEADER "%s=%s.%s; Max-Age=%lld; Path=/; HttpOnly; SameSite=Lax%s\r\n",
                 g->sticky.name, part, hex, ttl, is_secure ? "; Secure" : "");
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            dst[0] = '\0';
        return false;
    }
    return true;
}
