/*
 * Client trust: a client_cas entry as loaded (CA certificates, CRLs), with
 * what it takes to judge a certificate again later without its chain
 * being verified anew: an index of the CRLs by issuer and a digest of the
 * CA certificates. A trust is refcounted and, but for the CRL signatures
 * it learns to trust (crl_verified), immutable once loaded, so a new one
 * can replace it while handshakes and connections still use it.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

struct crl_entry {
    X509_CRL *crl;                    /* owned reference */
    uint8_t issuer[TLS_DIGEST_LEN];   /* tls_name_digest of its issuer */
    int64_t last_update, next_update; /* unix seconds; next_update INT64_MAX when absent */
    /* Whether its signature verified: with a CA of the bundle at load, or
     * later with an intermediate a verified client chain holds (whose DER
     * is kept, so that the same intermediate costs a memcmp next time). */
    bool is_verified, is_bad;
    uint8_t *verifier_der; /* owned */
    size_t verifier_len;
};

struct tls_trust {
    unsigned refs;
    uint64_t serial;                     /* tls_trust_serial */
    struct tls_file_sig ca_sig, crl_sig; /* the files as they were just before loading */
    X509_STORE *store;
    STACK_OF(X509_NAME) *names;
    struct crl_entry *crls; /* owned array */
    size_t n_crls;
    bool is_crl_checked;
    struct tls_trust_info info;
};

int64_t tls_time_unix(const ASN1_TIME *t)
{
    struct tm tm;
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

void tls_name_digest(const X509_NAME *name, uint8_t out[TLS_DIGEST_LEN])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    const unsigned char *der = NULL;
    size_t der_len = 0;
    memset(out, 0, TLS_DIGEST_LEN);
    if (X509_NAME_get0_der((X509_NAME *)name, &der, &der_len) != 1)
        return;
    if (EVP_Digest(der, der_len, md, &md_len, EVP_sha256(), NULL) == 1)
        memcpy(out, md, TLS_DIGEST_LEN);
}

/* The CA certificates of store, in the store's order, digested together:
 * what a session's facts must match to resume under this trust. */
static void ca_digest(X509_STORE *store, uint8_t out[TLS_DIGEST_LEN])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned md_len = 0;
    memset(out, 0, TLS_DIGEST_LEN);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    if (m == NULL || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1)
        goto out;
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        uint8_t one[EVP_MAX_MD_SIZE];
        unsigned one_len = 0;
        if (x != NULL && X509_digest(x, EVP_sha256(), one, &one_len) == 1)
            EVP_DigestUpdate(m, one, one_len);
    }
    if (EVP_DigestFinal_ex(m, md, &md_len) == 1)
        memcpy(out, md, TLS_DIGEST_LEN);
out:
    EVP_MD_CTX_free(m);
}

/* Verifies e's signature with the CA certificates of the bundle that
 * name its issuer; leaves it unverified when the bundle has none. */
static void verify_with_bundle(struct tls_trust *t, struct crl_entry *e)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(t->store);
    ERR_set_mark();
    for (int i = 0; i < sk_X509_OBJECT_num(objs) && !e->is_verified; i++) {
        X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (x == NULL || X509_NAME_cmp(X509_get_subject_name(x), X509_CRL_get_issuer(e->crl)) != 0)
            continue;
        if (X509_CRL_verify(e->crl, X509_get0_pubkey(x)) == 1)
            e->is_verified = true;
        else
            e->is_bad = true; /* its issuer is here, and did not sign it */
    }
    ERR_pop_to_mark();
    if (e->is_verified)
        e->is_bad = false;
}

/* The latest nextUpdate of the CRLs of e's issuer: when that issuer's
 * clients start being refused (crl_expired). */
static int64_t issuer_next_update(const struct tls_trust *t, const struct crl_entry *e)
{
    int64_t latest = e->next_update;
    for (size_t k = 0; k < t->n_crls; k++)
        if (memcmp(t->crls[k].issuer, e->issuer, TLS_DIGEST_LEN) == 0 &&
            t->crls[k].next_update > latest)
            latest = t->crls[k].next_update;
    return latest;
}

/* Indexes the CRLs of store and fills the facts /status shows: the newest
 * CRL's number and dates, the revoked serials of all, and the first time
 * an issuer is left with no CRL in date. */
static bool index_crls(struct tls_trust *t)
{
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(t->store);
    size_t n = 0;
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++)
        n += X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i)) != NULL;
    t->crls = calloc(n ? n : 1, sizeof(*t->crls));
    if (t->crls == NULL)
        return false;
    struct tls_trust_info *info = &t->info;
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(sk_X509_OBJECT_value(objs, i));
        if (crl == NULL || X509_CRL_up_ref(crl) != 1)
            continue;
        struct crl_entry *e = &t->crls[t->n_crls++];
        e->crl = crl;
        tls_name_digest(X509_CRL_get_issuer(crl), e->issuer);
        e->last_update = tls_time_unix(X509_CRL_get0_lastUpdate(crl));
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
        e->next_update = next != NULL ? tls_time_unix(next) : INT64_MAX;
        verify_with_bundle(t, e);
        info->n_bad_signatures += e->is_bad;
        STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
        info->n_revoked += (size_t)(rev != NULL ? sk_X509_REVOKED_num(rev) : 0);
        if (e->last_update >= info->crl_last_update) {
            info->crl_last_update = e->last_update;
            ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
            char *dec = num != NULL ? i2s_ASN1_INTEGER(NULL, num) : NULL;
            snprintf(info->crl_number, sizeof(info->crl_number), "%s", dec ? dec : "");
            OPENSSL_free(dec);
            ASN1_INTEGER_free(num);
        }
    }
    info->n_crls = t->n_crls;
    info->crl_next_update = t->n_crls > 0 ? INT64_MAX : 0;
    for (size_t k = 0; k < t->n_crls; k++) {
        int64_t until = issuer_next_update(t, &t->crls[k]);
        if (until < info->crl_next_update)
            info->crl_next_update = until;
    }
    return true;
}

void tls_file_sig_get(const char *path, struct tls_file_sig *sig)
{
    struct stat st;
    memset(sig, 0, sizeof(*sig));
    if (path == NULL || stat(path, &st) != 0)
        return;
    sig->exists = true;
    sig->dev = (uint64_t)st.st_dev;
    sig->ino = (uint64_t)st.st_ino;
    sig->size = (int64_t)st.st_size;
    sig->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    sig->ctime_ns = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
}

static bool sig_equal(const struct tls_file_sig *a, const struct tls_file_sig *b)
{
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

enum tg_status tls_trust_load(const struct config *cfg, const struct cfg_client_ca *ca,
                              struct tls_trust **out, struct diag *d)
{
    *out = NULL;
    struct tls_trust *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return TG_E_NOMEM;
    t->refs = 1;
    /* Signatures first: a file replaced while it is read is seen as
     * changed by the next look (tls_trust_watch_poll). */
    tls_file_sig_get(ca->ca, &t->ca_sig);
    tls_file_sig_get(ca->crl, &t->crl_sig);
    enum tg_status st = tls_load_client_ca(cfg, ca, &t->store, &t->names, d);
    if (st != TG_OK)
        goto out;
    t->is_crl_checked = ca->crl != NULL;
    ca_digest(t->store, t->info.ca_digest);
    if (!index_crls(t)) {
        st = TG_E_NOMEM;
        goto out;
    }
    t->info.loaded_at = (int64_t)time(NULL);
    static uint64_t serials;
    t->serial = ++serials;
    *out = t;
    t = NULL;
out:
    tls_trust_unref(t);
    return st;
}

struct tls_trust *tls_trust_ref(struct tls_trust *t)
{
    if (t != NULL)
        t->refs++;
    return t;
}

void tls_trust_unref(struct tls_trust *t)
{
    if (t == NULL || --t->refs > 0)
        return;
    for (size_t i = 0; i < t->n_crls; i++) {
        X509_CRL_free(t->crls[i].crl);
        free(t->crls[i].verifier_der);
    }
    free(t->crls);
    sk_X509_NAME_pop_free(t->names, X509_NAME_free);
    X509_STORE_free(t->store);
    free(t);
}

X509_STORE *tls_trust_store(const struct tls_trust *t)
{
    return t->store;
}

STACK_OF(X509_NAME) *tls_trust_names(const struct tls_trust *t)
{
    return t->names;
}

const struct tls_trust_info *tls_trust_info(const struct tls_trust *t)
{
    return &t->info;
}

bool tls_trust_is_crl_checked(const struct tls_trust *t)
{
    return t->is_crl_checked;
}

uint64_t tls_trust_serial(const struct tls_trust *t)
{
    return t->serial;
}

/* Whether serial (as recorded in a session's facts) is on crl. */
static bool is_revoked(X509_CRL *crl, const struct tls_cert_ref *r)
{
    ASN1_INTEGER *serial = ASN1_INTEGER_new();
    X509_REVOKED *rev = NULL;
    bool revoked = false;
    if (serial == NULL)
        return true; /* cannot tell: refuse rather than accept */
    if (ASN1_STRING_set(serial, r->serial, r->serial_len) == 1) {
        if (r->is_serial_negative)
            serial->type = V_ASN1_NEG_INTEGER;
        revoked = X509_CRL_get0_by_serial(crl, &rev, serial) == 1;
    } else {
        revoked = true;
    }
    ASN1_INTEGER_free(serial);
    return revoked;
}

/* Whether e's signature verified, trying the certificates of the client
 * chain f kept (verified under this trust's CA set when the session began)
 * for an issuer the bundle does not hold. */
static bool crl_verified(struct crl_entry *e, const struct tls_facts *f)
{
    if (e->is_verified || e->is_bad)
        return e->is_verified;
    size_t off = 0;
    while (f->is_chain_kept && off + 4 <= f->chain_len) {
        const uint8_t *q = f->chain + off;
        size_t len = (size_t)q[0] << 24 | (size_t)q[1] << 16 | (size_t)q[2] << 8 | q[3];
        if (len > f->chain_len - off - 4)
            break;
        off += 4 + len;
        q += 4;
        if (e->verifier_der != NULL && len == e->verifier_len &&
            memcmp(q, e->verifier_der, len) == 0)
            return true;
        const unsigned char *p = q;
        X509 *x = d2i_X509(NULL, &p, (long)len);
        uint8_t subject[TLS_DIGEST_LEN];
        bool ok = false;
        if (x != NULL) {
            tls_name_digest(X509_get_subject_name(x), subject);
            ERR_set_mark();
            ok = memcmp(subject, e->issuer, TLS_DIGEST_LEN) == 0 &&
                 X509_CRL_verify(e->crl, X509_get0_pubkey(x)) == 1;
            ERR_pop_to_mark();
        }
        X509_free(x);
        if (!ok)
            continue;
        uint8_t *copy = malloc(len);
        if (copy != NULL) {
            memcpy(copy, q, len);
            free(e->verifier_der);
            e->verifier_der = copy;
            e->verifier_len = len;
        }
        return true;
    }
    return false;
}

const char *tls_trust_recheck(struct tls_trust *t, const struct tls_facts *f, int64_t now)
{
    if (!f->has_client)
        return NULL;
    if (now > f->not_after)
        return "cert_expired";
    if (now < f->not_before)
        return "cert_not_yet_valid";
    if (memcmp(f->ca_digest, t->info.ca_digest, TLS_DIGEST_LEN) != 0)
        return "trust_changed";
    if (!t->is_crl_checked)
        return NULL;
    /* As OpenSSL's own check: each certificate needs a CRL of its issuer
     * that is signed by that issuer and in date; a serial on any signed CRL
     * of its issuer is revoked. A CRL that does not verify counts for
     * nothing (a forged one can neither clear nor condemn). */
    for (size_t i = 0; i < f->n_certs; i++) {
        const struct tls_cert_ref *r = &f->certs[i];
        bool has_crl = false, has_signed = false, has_current = false;
        for (size_t k = 0; k < t->n_crls; k++) {
            struct crl_entry *e = &t->crls[k];
            if (memcmp(e->issuer, r->issuer, TLS_DIGEST_LEN) != 0)
                continue;
            has_crl = true;
            if (!crl_verified(e, f))
                continue;
            has_signed = true;
            if (is_revoked(e->crl, r))
                return "cert_revoked";
            has_current = has_current || (now >= e->last_update && now <= e->next_update);
        }
        if (!has_crl)
            return "crl_missing";
        if (!has_signed)
            return "bad_signature";
        if (!has_current)
            return "crl_expired";
    }
    return NULL;
}

/* The first error of d as one line, for the log. */
static void first_error(const struct diag *d, char *err, size_t err_len)
{
    snprintf(err, err_len, "cannot load");
    for (size_t i = 0; i < d->n; i++) {
        if (d->v[i].level == DIAG_ERROR) {
            snprintf(err, err_len, "%s", d->v[i].msg);
            return;
        }
    }
}

enum tg_status tls_trust_watch_poll(struct tls_trust_watch *w, const struct config *cfg,
                                    const struct cfg_client_ca *ca, const struct tls_trust *current,
                                    struct tls_trust **out, char *err, size_t err_len)
{
    struct tls_file_sig ca_sig, crl_sig;
    *out = NULL;
    err[0] = '\0';
    tls_file_sig_get(ca->ca, &ca_sig);
    tls_file_sig_get(ca->crl, &crl_sig);
    if (current != NULL && sig_equal(&ca_sig, &current->ca_sig) &&
        sig_equal(&crl_sig, &current->crl_sig))
        return TG_E_AGAIN;
    if (w->has_failed && sig_equal(&ca_sig, &w->failed_ca) && sig_equal(&crl_sig, &w->failed_crl))
        return TG_E_AGAIN; /* refused already: wait for the next change */
    struct diag d;
    diag_init(&d);
    struct tls_trust *t = NULL;
    enum tg_status st = tls_trust_load(cfg, ca, &t, &d);
    if (st == TG_OK && t->info.n_bad_signatures > 0) {
        /* Forged, or signed by another key: the CRL in use stays. */
        diag_add(&d, DIAG_ERROR, NULL, 0, 0, NULL,
                 "%s: %zu CRL(s) not signed by their issuer's CA in %s", ca->crl,
                 t->info.n_bad_signatures, ca->ca);
        tls_trust_unref(t);
        t = NULL;
        st = TG_E_CONFIG;
    }
    if (st == TG_OK) {
        w->has_failed = false;
        *out = t;
    } else {
        first_error(&d, err, err_len);
        w->has_failed = true;
        w->failed_ca = ca_sig;
        w->failed_crl = crl_sig;
    }
    diag_fini(&d);
    return st;
}

const char *tls_trust_verify(const struct tls_trust *t, X509 *leaf, STACK_OF(X509) *chain,
                             unsigned depth, int64_t at)
{
    const char *why = "tls_error";
    X509_STORE_CTX *xs = X509_STORE_CTX_new();
    if (xs == NULL || X509_STORE_CTX_init(xs, t->store, leaf, chain) != 1)
        goto out;
    X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(xs);
    X509_VERIFY_PARAM_set_purpose(p, X509_PURPOSE_SSL_CLIENT);
    X509_VERIFY_PARAM_set_depth(p, (int)depth);
    X509_VERIFY_PARAM_set_auth_level(p, TLS_VERIFY_AUTH_LEVEL);
    X509_VERIFY_PARAM_set_time(p, (time_t)at);
    if (t->is_crl_checked)
        X509_VERIFY_PARAM_set_flags(p, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    if (X509_verify_cert(xs) != 1) {
        why = tls_reason_from_verify(X509_STORE_CTX_get_error(xs));
        goto out;
    }
    int lim = tls_cert_limits(leaf);
    why = lim == X509_V_OK ? NULL : tls_reason_from_verify(lim);
out:
    X509_STORE_CTX_free(xs);
    return why;
}
