/*
 * Allow-lists on verified client certificates. A list holds rules; a
 * certificate is on the list when it matches one rule, and it matches a
 * rule when it matches every term of it. An empty list, and a rule
 * without terms, match nothing. Each term tests one field of the leaf:
 *
 * - subject_cn: the subject's first CN, as the text X-Client-Subject shows
 *   it (RFC 4514 escaping: "\,", "\00" for a NUL, UTF-8 kept).
 *   Case-sensitive; '*' matches zero or more of any characters. A
 *   certificate without a CN, or with an empty one, matches no subject_cn
 *   term.
 * - san_dns: any DNS name of the subjectAltName. Case-insensitive (ASCII);
 *   '*' matches one or more characters other than '.', so "*.example.com"
 *   matches "a.example.com" but neither "example.com" nor
 *   "a.b.example.com", and "web-*.example.com" matches
 *   "web-1.example.com".
 * - san_uri: any URI of the subjectAltName. Case-sensitive; '*' matches
 *   zero or more of any characters, '/' included: "spiffe://prod/" and a
 *   '*' matches every workload of trust domain prod, and
 *   "spiffe://prod/ns/", '*', "/sa/web" matches
 *   "spiffe://prod/ns/a/sa/web" and "spiffe://prod/ns/a/b/sa/web" too.
 * - san_email: any rfc822Name of the subjectAltName. Case-insensitive
 *   (ASCII), the whole address; '*' matches zero or more of any
 *   characters.
 * - issuer: the issuer name as RFC 4514 text, as X-Client-Issuer shows it
 *   ("CN=Partners CA,O=Example"). Case-sensitive; '*' matches zero or more
 *   of any characters.
 * - san_ip: any iPAddress of the subjectAltName (4 or 16 octets) inside
 *   the term's address or network. IPv4 and IPv6 are apart: an
 *   IPv4-mapped IPv6 address does not match an IPv4 network.
 * - fingerprint_sha256: the SHA-256 of the leaf's DER equals the term's
 *   (X-Client-Fingerprint).
 * - spki_sha256: the SHA-256 of the leaf's DER SubjectPublicKeyInfo equals
 *   the term's (a key pin: it survives renewal with the same key).
 * - serial: the leaf's serial number equals the term's as a number
 *   (leading zero octets do not count); a negative serial never matches.
 *
 * A pattern without '*' is an exact comparison (under the field's case
 * rule); a pattern may hold several '*', and there is no escape: '*' in a
 * pattern is always a wildcard.
 *
 * A subjectAltName entry whose text holds a NUL, a control character or a
 * byte outside printable ASCII never matches (nor does an iPAddress of
 * other than 4 or 16 octets), and only the first TLS_SAN_MAX entries are
 * read. The glob matcher keeps one backtrack point (the last '*'), so a
 * term costs at most the pattern's length times the entries' total
 * length, both bounded (1024 bytes; the client's chain is at most
 * TLS_MAX_CLIENT_CHAIN).
 */
#include "tls/tls.h"

#include <string.h>

static unsigned char ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool same_char(char a, char b, bool is_fold)
{
    unsigned char x = (unsigned char)a, y = (unsigned char)b;
    return is_fold ? ascii_lower(x) == ascii_lower(y) : x == y;
}

/*
 * Whether v[0, vn) matches the pattern p[0, pn): '*' matches zero or more
 * characters (one or more with is_star_one), any other byte itself (ASCII
 * case folded with is_fold). Greedy with one backtrack point, the last
 * '*': an earlier '*' never needs to take more, since the last one can
 * take it instead. O(pn * vn).
 */
static bool glob_match(const char *p, size_t pn, const char *v, size_t vn, bool is_fold,
                       bool is_star_one)
{
    size_t pi = 0, vi = 0, star_p = 0, star_v = 0;
    bool has_star = false;
    while (vi < vn) {
        if (pi < pn && p[pi] == '*') {
            /* With is_star_one a '*' first takes one character, as "?*". */
            if (is_star_one)
                vi++;
            star_p = ++pi;
            star_v = vi;
            has_star = true;
        } else if (pi < pn && same_char(p[pi], v[vi], is_fold)) {
            pi++;
            vi++;
        } else if (has_star) {
            pi = star_p;
            vi = ++star_v;
        } else {
            return false;
        }
    }
    while (!is_star_one && pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

/* san_dns: label by label, the same number of labels, '*' one or more
 * characters inside its label. */
static bool dns_match(const char *p, size_t pn, const char *v, size_t vn)
{
    for (;;) {
        const char *pdot = memchr(p, '.', pn), *vdot = memchr(v, '.', vn);
        size_t pl = pdot != NULL ? (size_t)(pdot - p) : pn;
        size_t vl = vdot != NULL ? (size_t)(vdot - v) : vn;
        if ((pdot == NULL) != (vdot == NULL) || !glob_match(p, pl, v, vl, true, true))
            return false;
        if (pdot == NULL)
            return true;
        p += pl + 1;
        pn -= pl + 1;
        v += vl + 1;
        vn -= vl + 1;
    }
}

/* What a rule's terms read from one leaf, each worked out once, when a
 * term first asks. */
struct facts {
    X509 *leaf;
    bool has_cn, has_issuer, has_sans, has_fp, has_spki; /* worked out */
    size_t cn_len, issuer_len;                           /* 0: none (or too long) */
    char cn[TLS_CN_MAX + 1];
    char issuer[TLS_NAME_MAX + 1];
    GENERAL_NAMES *sans; /* owned; NULL when none */
    bool is_fp_ok, is_spki_ok;
    uint8_t fp[32], spki[32];
};

static void facts_fini(struct facts *x)
{
    GENERAL_NAMES_free(x->sans);
    x->sans = NULL;
}

static const char *facts_cn(struct facts *x, size_t *len)
{
    if (!x->has_cn) {
        x->has_cn = true;
        x->cn_len = tls_cert_cn(x->leaf, x->cn, sizeof(x->cn));
        if (x->cn_len >= sizeof(x->cn))
            x->cn_len = 0; /* cut text matches nothing */
    }
    *len = x->cn_len;
    return x->cn;
}

static const char *facts_issuer(struct facts *x, size_t *len)
{
    if (!x->has_issuer) {
        x->has_issuer = true;
        x->issuer_len =
            tls_name_format(X509_get_issuer_name(x->leaf), x->issuer, sizeof(x->issuer));
        if (x->issuer_len >= sizeof(x->issuer))
            x->issuer_len = 0;
    }
    *len = x->issuer_len;
    return x->issuer;
}

static GENERAL_NAMES *facts_sans(struct facts *x)
{
    if (!x->has_sans) {
        x->has_sans = true;
        x->sans = tls_cert_sans(x->leaf);
    }
    return x->sans;
}

static bool text_match(const struct cfg_allow_term *t, const char *v, size_t vn)
{
    const char *p = t->value;
    size_t pn = strlen(p);
    switch (t->field) {
    case CFG_ALLOW_SAN_DNS:
        return dns_match(p, pn, v, vn);
    case CFG_ALLOW_SAN_EMAIL:
        return glob_match(p, pn, v, vn, true, false);
    default:
        return glob_match(p, pn, v, vn, false, false);
    }
}

/* Any subjectAltName entry of type matches t. */
static bool san_match(const struct cfg_allow_term *t, struct facts *x, int type)
{
    GENERAL_NAMES *sans = facts_sans(x);
    const uint8_t *data;
    size_t len;
    for (int i = 0; i < TLS_SAN_MAX && i < sk_GENERAL_NAME_num(sans); i++) {
        if (!tls_san_value(sans, i, type, &data, &len))
            continue;
        if (type == GEN_IPADD) {
            if (config_cidr_match(&t->net, len == 4 ? AF_INET : AF_INET6, data))
                return true;
        } else if (text_match(t, (const char *)data, len)) {
            return true;
        }
    }
    return false;
}

static bool term_matches(const struct cfg_allow_term *t, struct facts *x)
{
    const char *text;
    size_t len;
    const uint8_t *mag;
    switch (t->field) {
    case CFG_ALLOW_SUBJECT_CN:
        text = facts_cn(x, &len);
        return len > 0 && text_match(t, text, len);
    case CFG_ALLOW_ISSUER:
        text = facts_issuer(x, &len);
        return len > 0 && text_match(t, text, len);
    case CFG_ALLOW_SAN_DNS:
        return san_match(t, x, GEN_DNS);
    case CFG_ALLOW_SAN_URI:
        return san_match(t, x, GEN_URI);
    case CFG_ALLOW_SAN_EMAIL:
        return san_match(t, x, GEN_EMAIL);
    case CFG_ALLOW_SAN_IP:
        return san_match(t, x, GEN_IPADD);
    case CFG_ALLOW_FINGERPRINT_SHA256:
        if (!x->has_fp) {
            x->has_fp = true;
            x->is_fp_ok = tls_cert_sha256(x->leaf, x->fp);
        }
        return x->is_fp_ok && t->n_bytes == 32 && memcmp(x->fp, t->bytes, 32) == 0;
    case CFG_ALLOW_SPKI_SHA256:
        if (!x->has_spki) {
            x->has_spki = true;
            x->is_spki_ok = tls_cert_spki_sha256(x->leaf, x->spki);
        }
        return x->is_spki_ok && t->n_bytes == 32 && memcmp(x->spki, t->bytes, 32) == 0;
    case CFG_ALLOW_SERIAL:
        return tls_cert_serial(x->leaf, &mag, &len) && len == t->n_bytes &&
               memcmp(mag, t->bytes, len) == 0;
    default:
        return false;
    }
}

static bool rule_matches(const struct cfg_allow_rule *r, struct facts *x)
{
    if (r->n_terms == 0)
        return false;
    for (size_t i = 0; i < r->n_terms; i++)
        if (!term_matches(&r->terms[i], x))
            return false;
    return true;
}

bool tls_allow_rule_matches(const struct cfg_allow_rule *r, X509 *leaf)
{
    if (r == NULL || leaf == NULL)
        return false;
    struct facts x = {.leaf = leaf};
    bool is_match = rule_matches(r, &x);
    facts_fini(&x);
    return is_match;
}

bool tls_allow_matches(const struct cfg_allow *a, X509 *leaf)
{
    if (a == NULL || leaf == NULL)
        return false;
    struct facts x = {.leaf = leaf};
    bool is_match = false;
    for (size_t i = 0; i < a->n_rules && !is_match; i++)
        is_match = rule_matches(&a->rules[i], &x);
    facts_fini(&x);
    return is_match;
}
