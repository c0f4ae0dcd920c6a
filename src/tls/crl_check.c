/*
 * CRL checks that remember their signature verification.
 *
 * With CRL checking on, OpenSSL's chain verification checks one CRL per
 * certificate of the chain, and its check of a CRL (the store's check_crl
 * function) verifies the CRL's signature every time: on a mutual listener
 * that is two ECDSA or RSA verifications per full handshake, about a fifth
 * of the handshake's work, spent proving again what was proved on the last
 * one.
 *
 * The store's check_crl is replaced by one that runs OpenSSL's own in full
 * the first time a CRL is checked with a given issuer certificate and, when
 * that passed cleanly, remembers the pair. The next check of the same CRL
 * object with an identical issuer certificate (X509_cmp: the same DER) skips
 * OpenSSL's function, so its signature verification, only when nothing else
 * that function decides could come out differently:
 *
 *   - the CRL is a plain one: no issuing distribution point (scope), no
 *     delta CRL indicator, no critical extension;
 *   - the issuer is the chain's next certificate (the same path: no other
 *     chain to validate for the CRL), names the CRL's issuer and the checked
 *     certificate's issuer;
 *   - no verification flag that changes CRL handling is set (deltas,
 *     extended CRL support, Suite B, no time checks);
 *   - the CRL is in date at the verification time, by the same comparisons
 *     OpenSSL makes (lastUpdate before it, nextUpdate after it).
 *
 * A pass is clean when OpenSSL's check returned 1 and reported no error to
 * the verify callback at all (a callback may let an error by, or clear it).
 * Everything else of the revocation check (finding the CRL, its dates, the
 * serial lookup, the reason) is OpenSSL's, every time. The remembered pairs
 * hold references, so a pointer is never taken for another object, and live
 * and die with the store: a reloaded trust starts empty. The state is the
 * process's own (workers are single-threaded).
 */
#include <stdlib.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

#define CRL_CHECK_SLOTS 16

/* Verification flags under which OpenSSL's CRL check depends on more than
 * the CRL and its issuer: never remembered, never skipped. */
#define CRL_CHECK_UNCACHED_FLAGS                                                                   \
    (X509_V_FLAG_EXTENDED_CRL_SUPPORT | X509_V_FLAG_USE_DELTAS | X509_V_FLAG_NO_CHECK_TIME |       \
     X509_V_FLAG_SUITEB_128_LOS_ONLY | X509_V_FLAG_SUITEB_192_LOS | X509_V_FLAG_SUITEB_128_LOS |   \
     X509_V_FLAG_IGNORE_CRITICAL)

struct crl_seen {
    X509_CRL *crl; /* a reference */
    X509 *issuer;  /* a reference */
    uint64_t hits; /* checks it spared: the slot with fewest is replaced */
};

struct crl_check {
    struct crl_seen v[CRL_CHECK_SLOTS];
    unsigned next; /* where the search for a slot to replace starts */
    struct tls_crl_check_counts counts;
};

static int g_idx = -1;
static X509_STORE_CTX_check_crl_fn g_openssl_check_crl;

/* While OpenSSL's check runs on a pair that may be remembered, the verify
 * callback goes through watch_cb, which notes whether any error was
 * reported (a callback may let an error by and even clear it: that is not
 * a clean pass) and hands every call to the callback it stands in front
 * of, the nested contexts of a CRL path check included, as OpenSSL would. */
struct crl_watch {
    X509_STORE_CTX_verify_cb outer;
    bool is_error_seen;
};

static _Thread_local struct crl_watch *g_watch;

static int watch_cb(int ok, X509_STORE_CTX *ctx)
{
    struct crl_watch *w = g_watch;
    if (w == NULL)
        return ok; /* not reached: installed only while g_watch is set */
    if (!ok)
        w->is_error_seen = true;
    return w->outer != NULL ? w->outer(ok, ctx) : ok;
}

static void seen_clear(struct crl_seen *s)
{
    X509_CRL_free(s->crl);
    X509_free(s->issuer);
    s->crl = NULL;
    s->issuer = NULL;
}

static void check_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    struct crl_check *c = ptr;
    if (c == NULL)
        return;
    for (size_t i = 0; i < CRL_CHECK_SLOTS; i++)
        seen_clear(&c->v[i]);
    free(c);
}

/* No scope, no delta, nothing critical, a nextUpdate. */
static bool is_plain(const X509_CRL *crl)
{
    if (X509_CRL_get0_nextUpdate(crl) == NULL ||
        X509_CRL_get_ext_by_NID(crl, NID_issuing_distribution_point, -1) >= 0 ||
        X509_CRL_get_ext_by_NID(crl, NID_delta_crl, -1) >= 0)
        return false;
    int n = X509_CRL_get_ext_count(crl);
    for (int i = 0; i < n; i++)
        if (X509_EXTENSION_get_critical(X509_CRL_get_ext(crl, i)))
            return false;
    return true;
}

/* OpenSSL's date checks of a CRL, both passing. */
static bool is_in_date(X509_STORE_CTX *ctx, const X509_CRL *crl)
{
    X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
    time_t at = 0;
    time_t *pat = NULL;
    if ((X509_VERIFY_PARAM_get_flags(p) & X509_V_FLAG_USE_CHECK_TIME) != 0) {
        at = X509_VERIFY_PARAM_get_time(p);
        pat = &at;
    }
    return X509_cmp_time(X509_CRL_get0_lastUpdate(crl), pat) < 0 &&
           X509_cmp_time(X509_CRL_get0_nextUpdate(crl), pat) > 0;
}

/* The issuer OpenSSL checks crl with, when the check may be remembered or
 * skipped (see the top of this file); NULL otherwise. */
static X509 *plain_issuer(X509_STORE_CTX *ctx, X509_CRL *crl)
{
    X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
    if ((X509_VERIFY_PARAM_get_flags(p) & CRL_CHECK_UNCACHED_FLAGS) != 0 || !is_plain(crl))
        return NULL;
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    int depth = X509_STORE_CTX_get_error_depth(ctx);
    int top = sk_X509_num(chain) - 1;
    if (chain == NULL || depth < 0 || depth > top)
        return NULL;
    X509 *cert = sk_X509_value(chain, depth);
    X509 *next = sk_X509_value(chain, depth < top ? depth + 1 : top);
    X509 *issuer = X509_STORE_CTX_get0_current_issuer(ctx);
    if (issuer == NULL || issuer != next ||
        X509_NAME_cmp(X509_get_subject_name(issuer), X509_CRL_get_issuer(crl)) != 0 ||
        X509_NAME_cmp(X509_get_issuer_name(cert), X509_CRL_get_issuer(crl)) != 0)
        return NULL;
    return issuer;
}

/* An empty slot, else the one that spared fewest checks (the first of
 * them after the last replaced): pairs a client made up to push others out
 * (an intermediate with altered signature bytes is remembered before its
 * signature is checked) never spare one, so they replace each other. */
static struct crl_seen *slot_to_fill(struct crl_check *c)
{
    struct crl_seen *best = NULL;
    for (size_t k = 0; k < CRL_CHECK_SLOTS; k++) {
        struct crl_seen *s = &c->v[(c->next + k) % CRL_CHECK_SLOTS];
        if (s->crl == NULL)
            return s;
        if (best == NULL || s->hits < best->hits)
            best = s;
    }
    c->next = (unsigned)((best - c->v + 1) % CRL_CHECK_SLOTS);
    return best;
}

static void remember(struct crl_check *c, X509_CRL *crl, X509 *issuer)
{
    struct crl_seen *s = slot_to_fill(c);
    seen_clear(s);
    s->hits = 0;
    if (X509_CRL_up_ref(crl) != 1)
        return;
    if (X509_up_ref(issuer) != 1) {
        X509_CRL_free(crl);
        return;
    }
    s->crl = crl;
    s->issuer = issuer;
}

static int check_crl(X509_STORE_CTX *ctx, X509_CRL *crl)
{
    struct crl_check *c = X509_STORE_get_ex_data(X509_STORE_CTX_get0_store(ctx), g_idx);
    X509 *issuer = c != NULL ? plain_issuer(ctx, crl) : NULL;
    bool in_date = issuer != NULL && is_in_date(ctx, crl);
    if (in_date) {
        for (size_t i = 0; i < CRL_CHECK_SLOTS; i++) {
            if (c->v[i].crl == crl && X509_cmp(c->v[i].issuer, issuer) == 0) {
                c->v[i].hits++;
                c->counts.skipped++;
                return 1;
            }
        }
    }
    if (c != NULL)
        c->counts.full++;
    /* Nested (a CRL path checked inside another check): OpenSSL's as is. */
    X509_STORE_CTX_verify_cb outer = X509_STORE_CTX_get_verify_cb(ctx);
    if (!in_date || outer == watch_cb)
        return g_openssl_check_crl(ctx, crl);
    struct crl_watch w = {outer, false};
    struct crl_watch *saved = g_watch;
    g_watch = &w;
    X509_STORE_CTX_set_verify_cb(ctx, watch_cb);
    int ok = g_openssl_check_crl(ctx, crl);
    X509_STORE_CTX_set_verify_cb(ctx, outer);
    g_watch = saved;
    /* Only a clean pass: no error reported, let by or cleared or not. */
    if (ok == 1 && !w.is_error_seen && X509_STORE_CTX_get_error(ctx) == X509_V_OK)
        remember(c, crl, issuer);
    return ok;
}

/* OpenSSL's own check_crl, as a context on a store without one gets it. */
static X509_STORE_CTX_check_crl_fn openssl_check_crl(void)
{
    X509_STORE_CTX_check_crl_fn fn = NULL;
    X509_STORE *s = X509_STORE_new();
    X509_STORE_CTX *x = X509_STORE_CTX_new();
    if (s != NULL && x != NULL && X509_STORE_CTX_init(x, s, NULL, NULL) == 1)
        fn = X509_STORE_CTX_get_check_crl(x);
    X509_STORE_CTX_free(x);
    X509_STORE_free(s);
    return fn;
}

bool tls_crl_check_attach(X509_STORE *store)
{
    if (g_idx < 0)
        g_idx = X509_STORE_get_ex_new_index(0, NULL, NULL, NULL, check_free);
    if (g_openssl_check_crl == NULL)
        g_openssl_check_crl = openssl_check_crl();
    if (g_idx < 0 || g_openssl_check_crl == NULL)
        return false;
    if (X509_STORE_get_ex_data(store, g_idx) != NULL)
        return true; /* attached already */
    struct crl_check *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return false;
    if (X509_STORE_set_ex_data(store, g_idx, c) != 1) {
        free(c);
        return false;
    }
    X509_STORE_set_check_crl(store, check_crl);
    return true;
}

struct tls_crl_check_counts tls_crl_check_counts(X509_STORE *store)
{
    struct tls_crl_check_counts none = {0, 0};
    struct crl_check *c = g_idx >= 0 ? X509_STORE_get_ex_data(store, g_idx) : NULL;
    return c != NULL ? c->counts : none;
}
