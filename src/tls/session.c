/*
 * What a session keeps of its client, and the judging of every resumption.
 *
 * The facts (struct tls_facts) ride in each ticket as its application data
 * (SSL_SESSION_set1_ticket_appdata), encrypted and authenticated with the
 * ticket itself, so any worker and any process sharing the ticket keys can
 * judge a resumption: the session's first full handshake bounds its life,
 * the client chain's window bounds it too, and the current trust re-judges
 * the chain's certificates (CA set, CRLs) without verifying signatures.
 *
 * Encoding, all integers big-endian:
 *   "TF" version(1) flags(1) first_time(i64)
 *   when has_client: not_before(i64) not_after(i64) ca_digest(16)
 *     n_certs(u8) { issuer(16) serial_len(u8) negative(u8) serial } x n_certs
 *     n_chain(u8) { len(u32) der } x n_chain
 */
#include <limits.h>
#include <string.h>
#include <time.h>

#include "tls/tls.h"

#define FACTS_VERSION 1
#define F_HAS_CLIENT  0x01
#define F_COMPLETE    0x02
#define F_CHAIN_KEPT  0x04
/* A ticket holds at most 0xFF00 bytes of encoded session in OpenSSL 3.0;
 * the chain is dropped when the session would come near it. */
#define TICKET_SESSION_MAX   0xFF00
#define TICKET_SESSION_SLACK 4096

static int g_policy_idx = -1;

struct wr {
    uint8_t *p;
    size_t cap, n;
    bool is_full;
};

static void put(struct wr *w, const void *src, size_t len)
{
    if (w->is_full || len > w->cap - w->n) {
        w->is_full = true;
        return;
    }
    memcpy(w->p + w->n, src, len);
    w->n += len;
}

static void put_u8(struct wr *w, unsigned v)
{
    uint8_t b = (uint8_t)v;
    put(w, &b, 1);
}

static void put_i64(struct wr *w, int64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
    put(w, b, 8);
}

static void put_u32(struct wr *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 4);
}

size_t tls_facts_encode(const struct tls_facts *f, uint8_t *dst, size_t cap)
{
    struct wr w = {dst, cap, 0, false};
    unsigned flags = (f->has_client ? F_HAS_CLIENT : 0) | (f->is_complete ? F_COMPLETE : 0) |
                     (f->is_chain_kept ? F_CHAIN_KEPT : 0);
    put(&w, "TF", 2);
    put_u8(&w, FACTS_VERSION);
    put_u8(&w, flags);
    put_i64(&w, f->first_time);
    if (f->has_client) {
        put_i64(&w, f->not_before);
        put_i64(&w, f->not_after);
        put(&w, f->ca_digest, TLS_DIGEST_LEN);
        size_t n = f->n_certs < TLS_FACTS_MAX_CERTS ? f->n_certs : TLS_FACTS_MAX_CERTS;
        put_u8(&w, (unsigned)n);
        for (size_t i = 0; i < n; i++) {
            const struct tls_cert_ref *r = &f->certs[i];
            size_t sl = r->serial_len < TLS_FACTS_SERIAL_MAX ? r->serial_len : TLS_FACTS_SERIAL_MAX;
            put(&w, r->issuer, TLS_DIGEST_LEN);
            put_u8(&w, (unsigned)sl);
            put_u8(&w, r->is_serial_negative);
            put(&w, r->serial, sl);
        }
        /* The chain: certificates back to back, each framed by its length. */
        size_t n_chain = 0, off = 0;
        const uint8_t *ders[256];
        size_t lens[256];
        while (f->is_chain_kept && off + 4 <= f->chain_len && n_chain < 255) {
            const uint8_t *q = f->chain + off;
            size_t len = (size_t)q[0] << 24 | (size_t)q[1] << 16 | (size_t)q[2] << 8 | q[3];
            if (len > f->chain_len - off - 4)
                break;
            ders[n_chain] = q + 4;
            lens[n_chain++] = len;
            off += 4 + len;
        }
        put_u8(&w, (unsigned)n_chain);
        for (size_t i = 0; i < n_chain; i++) {
            put_u32(&w, (uint32_t)lens[i]);
            put(&w, ders[i], lens[i]);
        }
    }
    return w.is_full ? 0 : w.n;
}

struct rd {
    const uint8_t *p;
    size_t len, off;
    bool is_bad;
};

static const uint8_t *take(struct rd *r, size_t n)
{
    if (r->is_bad || n > r->len - r->off) {
        r->is_bad = true;
        return NULL;
    }
    const uint8_t *q = r->p + r->off;
    r->off += n;
    return q;
}

static unsigned get_u8(struct rd *r)
{
    const uint8_t *q = take(r, 1);
    return q ? q[0] : 0;
}

static int64_t get_i64(struct rd *r)
{
    const uint8_t *q = take(r, 8);
    uint64_t v = 0;
    for (int i = 0; q != NULL && i < 8; i++)
        v = v << 8 | q[i];
    return (int64_t)v;
}

static uint32_t get_u32(struct rd *r)
{
    const uint8_t *q = take(r, 4);
    return q ? (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3] : 0;
}

bool tls_facts_decode(const uint8_t *src, size_t len, struct tls_facts *f)
{
    struct rd r = {src, len, 0, false};
    memset(f, 0, sizeof(*f));
    const uint8_t *magic = take(&r, 2);
    if (magic == NULL || memcmp(magic, "TF", 2) != 0 || get_u8(&r) != FACTS_VERSION)
        return false;
    unsigned flags = get_u8(&r);
    f->first_time = get_i64(&r);
    f->has_client = (flags & F_HAS_CLIENT) != 0;
    f->is_complete = (flags & F_COMPLETE) != 0;
    f->is_chain_kept = (flags & F_CHAIN_KEPT) != 0;
    if (f->has_client) {
        f->not_before = get_i64(&r);
        f->not_after = get_i64(&r);
        const uint8_t *ca = take(&r, TLS_DIGEST_LEN);
        if (ca != NULL)
            memcpy(f->ca_digest, ca, TLS_DIGEST_LEN);
        f->n_certs = get_u8(&r);
        if (f->n_certs > TLS_FACTS_MAX_CERTS)
            return false;
        for (size_t i = 0; i < f->n_certs && !r.is_bad; i++) {
            struct tls_cert_ref *c = &f->certs[i];
            const uint8_t *issuer = take(&r, TLS_DIGEST_LEN);
            c->serial_len = (uint8_t)get_u8(&r);
            c->is_serial_negative = get_u8(&r) != 0;
            if (c->serial_len > TLS_FACTS_SERIAL_MAX)
                return false;
            const uint8_t *serial = take(&r, c->serial_len);
            if (issuer == NULL || serial == NULL)
                return false;
            memcpy(c->issuer, issuer, TLS_DIGEST_LEN);
            memcpy(c->serial, serial, c->serial_len);
        }
        size_t n_chain = get_u8(&r);
        size_t start = r.off;
        for (size_t i = 0; i < n_chain && !r.is_bad; i++)
            (void)take(&r, get_u32(&r));
        f->chain = r.is_bad ? NULL : src + start;
        f->chain_len = r.is_bad ? 0 : r.off - start;
    }
    return !r.is_bad && r.off == len;
}

bool tls_cert_ref_of(X509 *x, struct tls_cert_ref *r)
{
    const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
    int sl = ASN1_STRING_length(serial);
    memset(r, 0, sizeof(*r));
    if (sl < 0 || sl > TLS_FACTS_SERIAL_MAX)
        return false;
    tls_name_digest(X509_get_issuer_name(x), r->issuer);
    r->serial_len = (uint8_t)sl;
    r->is_serial_negative = ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER;
    memcpy(r->serial, ASN1_STRING_get0_data(serial), (size_t)sl);
    return true;
}

/* Fills the chain-derived facts of a full handshake's verified client. */
static bool facts_from_handshake(SSL *ssl, const struct tls_verdict *v, int64_t now,
                                 struct tls_facts *f, uint8_t *chain_buf, size_t chain_cap)
{
    memset(f, 0, sizeof(*f));
    f->first_time = now;
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    STACK_OF(X509) *verified = SSL_get0_verified_chain(ssl);
    if (leaf == NULL || verified == NULL || SSL_get_verify_result(ssl) != X509_V_OK || v == NULL)
        return true; /* nothing verified to remember: the lifetime still holds */
    f->has_client = true;
    f->is_complete = true;
    f->not_before = INT64_MIN;
    f->not_after = INT64_MAX;
    memcpy(f->ca_digest, v->verified_ca, TLS_DIGEST_LEN);
    for (int i = 0; i < sk_X509_num(verified); i++) {
        X509 *x = sk_X509_value(verified, i);
        int64_t nb = tls_time_unix(X509_get0_notBefore(x));
        int64_t na = tls_time_unix(X509_get0_notAfter(x));
        if (nb > f->not_before)
            f->not_before = nb;
        if (na < f->not_after)
            f->not_after = na;
        if (f->n_certs == TLS_FACTS_MAX_CERTS || !tls_cert_ref_of(x, &f->certs[f->n_certs])) {
            f->is_complete = false;
            continue;
        }
        f->n_certs++;
    }
    /* The chain the client sent after its leaf, framed, if the ticket has
     * room for it beside the leaf OpenSSL keeps. */
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl);
    int leaf_len = i2d_X509(leaf, NULL);
    size_t room = chain_cap;
    if (leaf_len < 0 || (size_t)leaf_len + TICKET_SESSION_SLACK >= TICKET_SESSION_MAX)
        room = 0;
    else if (TICKET_SESSION_MAX - TICKET_SESSION_SLACK - (size_t)leaf_len < room)
        room = TICKET_SESSION_MAX - TICKET_SESSION_SLACK - (size_t)leaf_len;
    f->is_chain_kept = true;
    size_t off = 0;
    for (int i = 0; sent != NULL && i < sk_X509_num(sent); i++) {
        X509 *x = sk_X509_value(sent, i);
        if (X509_cmp(x, leaf) == 0)
            continue;
        int len = i2d_X509(x, NULL);
        if (len <= 0 || (size_t)len + 4 > room - off) {
            f->is_chain_kept = false;
            break;
        }
        uint8_t *q = chain_buf + off;
        q[0] = (uint8_t)(len >> 24);
        q[1] = (uint8_t)(len >> 16);
        q[2] = (uint8_t)(len >> 8);
        q[3] = (uint8_t)len;
        q += 4;
        (void)i2d_X509(x, &q);
        off += 4 + (size_t)len;
    }
    f->chain = f->is_chain_kept ? chain_buf : NULL;
    f->chain_len = f->is_chain_kept ? off : 0;
    return true;
}

static bool session_facts(SSL_SESSION *sess, struct tls_facts *f)
{
    void *data = NULL;
    size_t len = 0;
    if (sess == NULL || SSL_SESSION_get0_ticket_appdata(sess, &data, &len) != 1 || data == NULL)
        return false;
    return tls_facts_decode(data, len, f);
}

bool tls_facts_of(SSL *ssl, struct tls_facts *f)
{
    if (session_facts(SSL_get_session(ssl), f))
        return f->has_client;
    if (SSL_session_reused(ssl))
        return false;
    /* A full handshake without a ticket (a TLS 1.2 client that asked for
     * none): the verified chain is still there. The chain itself is not
     * needed here, only the certificates as CRLs name them. */
    if (!facts_from_handshake(ssl, tls_verdict_of(ssl), (int64_t)time(NULL), f, NULL, 0))
        return false;
    f->is_chain_kept = false;
    return f->has_client;
}

size_t tls_session_chain(SSL *ssl, const uint8_t **ders, size_t *lens, size_t max)
{
    struct tls_facts f;
    if (!SSL_session_reused(ssl) || !session_facts(SSL_get_session(ssl), &f) || !f.is_chain_kept)
        return 0;
    size_t n = 0, off = 0;
    /* The chain is framed as it was encoded; decode checked every length. */
    while (n < max && off + 4 <= f.chain_len) {
        const uint8_t *q = f.chain + off;
        size_t len = (size_t)q[0] << 24 | (size_t)q[1] << 16 | (size_t)q[2] << 8 | q[3];
        if (len > f.chain_len - off - 4)
            break;
        ders[n] = q + 4;
        lens[n++] = len;
        off += 4 + len;
    }
    return n;
}

int64_t tls_client_not_after(SSL *ssl, const struct tls_verdict *v)
{
    if (SSL_get0_peer_certificate(ssl) == NULL || SSL_get_verify_result(ssl) != X509_V_OK)
        return 0;
    if (SSL_session_reused(ssl))
        return v != NULL ? v->resumed_not_after : 0;
    STACK_OF(X509) *verified = SSL_get0_verified_chain(ssl);
    int64_t na = 0;
    for (int i = 0; verified != NULL && i < sk_X509_num(verified); i++) {
        int64_t t = tls_time_unix(X509_get0_notAfter(sk_X509_value(verified, i)));
        if (na == 0 || t < na)
            na = t;
    }
    return na;
}

/* How long a ticket made now may live: what is left of the session's
 * lifetime, and never past the client chain's notAfter. */
static long remaining(const struct tls_session_policy *p, const struct tls_facts *f, int64_t now)
{
    int64_t end = f->first_time + (int64_t)p->lifetime_s;
    if (f->has_client && f->not_after < end)
        end = f->not_after;
    int64_t left = end - now;
    if (left < 1)
        left = 1;
    return left > LONG_MAX ? LONG_MAX : (long)left;
}

/* OpenSSL calls this for every ticket it is about to make (full handshakes
 * and renewals alike): a new session gets its facts, a resumed one keeps
 * those of its first handshake. */
/* The policy of the context ssl is on now: OpenSSL passes the callbacks
 * the argument of the context the SSL was made from, which is not the
 * one of the site its ClientHello moved it to. */
static const struct tls_session_policy *policy_now(SSL *ssl, void *arg)
{
    const struct tls_session_policy *p = tls_session_policy_of(SSL_get_SSL_CTX(ssl));
    return p != NULL ? p : arg;
}

static int gen_cb(SSL *ssl, void *arg)
{
    const struct tls_session_policy *p = policy_now(ssl, arg);
    SSL_SESSION *sess = SSL_get_session(ssl);
    int64_t now = (int64_t)time(NULL);
    struct tls_facts f;
    if (sess == NULL)
        return 0;
    if (!SSL_session_reused(ssl) || !session_facts(sess, &f)) {
        static uint8_t chain[TLS_FACTS_CHAIN_MAX];
        static uint8_t enc[TLS_FACTS_ENCODED_MAX];
        if (!facts_from_handshake(ssl, tls_verdict_of(ssl), now, &f, chain, sizeof(chain)))
            return 0;
        size_t len = tls_facts_encode(&f, enc, sizeof(enc));
        if (len == 0 || SSL_SESSION_set1_ticket_appdata(sess, enc, len) != 1)
            return 0;
    }
    SSL_SESSION_set_timeout(sess, remaining(p, &f, now));
    return 1;
}

/* Judges an offered session: NULL to resume it, else why not. */
static const char *judge(SSL *ssl, const struct tls_session_policy *p, SSL_SESSION *sess,
                         int64_t now, int64_t *not_after)
{
    struct tls_facts f;
    if (!session_facts(sess, &f) || now >= f.first_time + (int64_t)p->lifetime_s ||
        now < f.first_time)
        return "session_expired";
    if (!f.has_client)
        return NULL;
    if (!f.is_complete || !f.is_chain_kept)
        return "session_incomplete";
    *not_after = f.not_after;
    if (p->trust == NULL)
        return "trust_changed";
    const char *why = tls_trust_recheck(p->trust, &f, now);
    if (why != NULL)
        return why;
    /* The allow-list as it is now: the session's leaf is in it. */
    if (!tls_site_allows(SSL_get_SSL_CTX(ssl), SSL_SESSION_get0_peer(sess)))
        return "not_allowed";
    /* OCSP: what this worker last heard of the leaf (certs[0]). Only a
     * revocation refuses: a miss (or a failure) does not hold up a
     * resumption, whose certificate was judged at its full handshake. */
    enum tls_ocsp_verdict seen;
    if (p->ocsp_mode != CFG_CLIENT_OCSP_OFF && p->ocsp_cache != NULL && f.n_certs > 0 &&
        tls_ocsp_cache_get(p->ocsp_cache, &f.certs[0], now, &seen) && seen == TLS_OCSP_V_REVOKED)
        return "cert_revoked";
    return NULL;
}

static SSL_TICKET_RETURN dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *keyname,
                                size_t keyname_len, SSL_TICKET_STATUS status, void *arg)
{
    (void)keyname;
    (void)keyname_len;
    const struct tls_session_policy *p = policy_now(ssl, arg);
    switch (status) {
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW:
        break;
    case SSL_TICKET_EMPTY:
    case SSL_TICKET_NO_DECRYPT:
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    default:
        return SSL_TICKET_RETURN_ABORT;
    }
    struct tls_verdict *v = tls_verdict_of(ssl);
    /* TLS 1.3 lets a ClientHello offer many tickets: once one is refused,
     * the others of that hello are not judged (nor resumed). */
    if (v != NULL && v->resume_refused != NULL)
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    /* RFC 6066 §3: a session is resumed only for the name it was made for
     * (TLS 1.2 keeps that name as the connection's; a full handshake
     * follows, judged for the name asked now). */
    const char *made_for = SSL_SESSION_get0_hostname(sess);
    uint64_t asked = v != NULL ? v->sni_hash : 0;
    if (v != NULL && (made_for != NULL ? tls_name_hash(made_for, strlen(made_for)) : 0) != asked)
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    int64_t not_after = 0;
    const char *why = judge(ssl, p, sess, (int64_t)time(NULL), &not_after);
    if (why != NULL) {
        if (v != NULL)
            v->resume_refused = why;
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    if (v != NULL) {
        v->resume_refused = NULL;
        v->resumed_not_after = not_after;
        v->judged_under = p->trust != NULL ? tls_trust_serial(p->trust) : 0;
    }
    return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE : SSL_TICKET_RETURN_USE_RENEW;
}

enum tg_status tls_session_use(SSL_CTX *ctx, struct tls_session_policy *p)
{
    if (g_policy_idx < 0)
        g_policy_idx = SSL_CTX_get_ex_new_index(0, "tollgate session policy", NULL, NULL, NULL);
    if (g_policy_idx < 0 || SSL_CTX_set_ex_data(ctx, g_policy_idx, p) != 1 ||
        SSL_CTX_set_session_ticket_cb(ctx, gen_cb, dec_cb, p) != 1)
        return TG_E_INTERNAL;
    /* OpenSSL's own bound on a session, and the lifetime hint of a ticket
     * made at a full handshake (gen_cb shortens renewals). */
    SSL_CTX_set_timeout(ctx, p->lifetime_s > LONG_MAX ? LONG_MAX : (long)p->lifetime_s);
    return TG_OK;
}

const struct tls_session_policy *tls_session_policy_of(SSL_CTX *ctx)
{
    return g_policy_idx < 0 ? NULL : SSL_CTX_get_ex_data(ctx, g_policy_idx);
}

/* The client's chain of an established connection, without its leaf:
 * what it sent (a full handshake) or what its session kept (resumed). The
 * caller frees the stack and its certificates. */
static STACK_OF(X509) *sent_chain(SSL *ssl)
{
    STACK_OF(X509) *out = sk_X509_new_null();
    STACK_OF(X509) *sent = SSL_get_peer_cert_chain(ssl);
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    if (out == NULL)
        return NULL;
    for (int i = 0; sent != NULL && i < sk_X509_num(sent); i++) {
        X509 *x = sk_X509_value(sent, i);
        if (X509_cmp(x, leaf) != 0 && X509_up_ref(x) == 1 && sk_X509_push(out, x) <= 0)
            X509_free(x);
    }
    if (sent != NULL)
        return out;
    const uint8_t *ders[TLS_FACTS_MAX_CERTS];
    size_t lens[TLS_FACTS_MAX_CERTS];
    size_t n = tls_session_chain(ssl, ders, lens, TLS_FACTS_MAX_CERTS);
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = ders[i];
        X509 *x = d2i_X509(NULL, &p, (long)lens[i]);
        if (x != NULL && sk_X509_push(out, x) <= 0)
            X509_free(x);
    }
    return out;
}

const char *tls_reverify(SSL *ssl, const struct tls_trust *t)
{
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    if (leaf == NULL)
        return NULL;
    const char *why = "tls_error";
    STACK_OF(X509) *chain = sent_chain(ssl);
    X509_STORE_CTX *xs = X509_STORE_CTX_new();
    if (chain == NULL || xs == NULL ||
        X509_STORE_CTX_init(xs, tls_trust_store(t), leaf, chain) != 1 ||
        X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(xs), SSL_get0_param(ssl)) != 1)
        goto out;
    /* Revocation as t has it (another entry, for client_ca_next, may have
     * CRLs where the connection's has none, or the other way round). */
    const unsigned long crl_flags = X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
    if (tls_trust_is_crl_checked(t))
        X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(xs), crl_flags);
    else
        X509_VERIFY_PARAM_clear_flags(X509_STORE_CTX_get0_param(xs), crl_flags);
    why = X509_verify_cert(xs) == 1 ? NULL : tls_reason_from_verify(X509_STORE_CTX_get_error(xs));
out:
    X509_STORE_CTX_free(xs);
    sk_X509_pop_free(chain, X509_free);
    return why;
}

uint64_t tls_name_hash(const char *name, size_t len)
{
    if (len > 1 && name[len - 1] == '.')
        len--;
    uint64_t h = UINT64_C(1469598103934665603); /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch - 'A' + 'a');
        h = (h ^ ch) * UINT64_C(1099511628211);
    }
    return h != 0 ? h : 1;
}
