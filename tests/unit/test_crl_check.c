/* tls_crl_check_attach: a CRL's signature is verified once per issuer, and
 * every verdict is the one OpenSSL gives without it. Test material is minted
 * here with the OpenSSL API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"
#include "unit_x509.h"

#define DAY (24L * 3600)

static struct unit_pair root, inter, inter_twin, leaf, revoked, twin_leaf;

static struct unit_pair make_pair(const char *cn, const struct unit_pair *issuer, bool is_ca)
{
    return unit_make_pair(cn, issuer, -DAY, 365 * DAY, is_ca);
}

/* A CRL of issuer's, signed with key (issuer's own when NULL), in date from
 * a minute ago for a day, revoking gone when not NULL. */
static X509_CRL *make_crl(const struct unit_pair *issuer, EVP_PKEY *key, const X509 *gone)
{
    return unit_make_crl(issuer, key, -60, DAY, gone);
}

/* A store trusting root with the two CRLs; remembering ones when asked. */
static X509_STORE *make_store(X509_CRL *root_crl, X509_CRL *inter_crl, bool remembers)
{
    X509_STORE *s = X509_STORE_new();
    assert_non_null(s);
    assert_int_equal(X509_STORE_add_cert(s, root.cert), 1);
    if (root_crl != NULL)
        assert_int_equal(X509_STORE_add_crl(s, root_crl), 1);
    if (inter_crl != NULL)
        assert_int_equal(X509_STORE_add_crl(s, inter_crl), 1);
    if (remembers)
        assert_true(tls_crl_check_attach(s));
    return s;
}

static int let_everything_by(int ok, X509_STORE_CTX *ctx)
{
    (void)ok;
    (void)ctx;
    return 1;
}

/* The verification error of cert (sent with via as the client would) under
 * s at time at, with CRLs checked for the whole chain. */
static int verdict_cb(X509_STORE *s, X509 *cert, const struct unit_pair *via, time_t at,
                      X509_STORE_CTX_verify_cb cb)
{
    STACK_OF(X509) *sent = sk_X509_new_null();
    assert_non_null(sent);
    sk_X509_push(sent, via->cert);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(ctx, s, cert, sent), 1);
    X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_flags(p, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    X509_VERIFY_PARAM_set_time(p, at);
    if (cb != NULL)
        X509_STORE_CTX_set_verify_cb(ctx, cb);
    int rc = X509_verify_cert(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    sk_X509_free(sent);
    return rc == 1 && cb == NULL ? X509_V_OK : (err != X509_V_OK ? err : -1);
}

static int verdict(X509_STORE *s, X509 *cert, const struct unit_pair *via, time_t at)
{
    return verdict_cb(s, cert, via, at, NULL);
}

static int setup(void **state)
{
    (void)state;
    root = make_pair("Test Root", NULL, true);
    inter = make_pair("Test Intermediate", &root, true);
    /* The same name as inter, another key: a CRL of one is not the other's. */
    inter_twin = make_pair("Test Intermediate", &root, true);
    leaf = make_pair("leaf.test", &inter, false);
    revoked = make_pair("revoked.test", &inter, false);
    twin_leaf = make_pair("twin.test", &inter_twin, false);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    struct unit_pair *all[] = {&root, &inter, &inter_twin, &leaf, &revoked, &twin_leaf};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        unit_free_pair(all[i]);
    return 0;
}

/* One test's trust: root's CRL, inter's (or whatever ic is), and two
 * stores holding both: one remembering, one as OpenSSL alone. */
struct trust {
    X509_CRL *rc, *ic;
    X509_STORE *s, *plain;
};

static struct trust trust_new(X509_CRL *ic)
{
    struct trust t = {make_crl(&root, NULL, NULL), ic, NULL, NULL};
    t.s = make_store(t.rc, ic, true);
    t.plain = make_store(t.rc, ic, false);
    return t;
}

static void trust_free(struct trust *t)
{
    X509_STORE_free(t->s);
    X509_STORE_free(t->plain);
    X509_CRL_free(t->rc);
    X509_CRL_free(t->ic);
}

/* cert's verdict under t's remembering store, checked against OpenSSL's
 * own under the plain one. */
static int judged(const struct trust *t, X509 *cert, const struct unit_pair *via, time_t at)
{
    int got = verdict(t->s, cert, via, at);
    assert_int_equal(got, verdict(t->plain, cert, via, at));
    return got;
}

static void test_second_verification_skips_the_signatures(void **state)
{
    (void)state;
    struct trust t = trust_new(make_crl(&inter, NULL, NULL));
    time_t now = time(NULL);
    assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_OK);
    struct tls_crl_check_counts n = tls_crl_check_counts(t.s);
    /* leaf against inter's CRL and inter against root's in full; root, the
     * top of the chain, against root's CRL again: already proved. */
    assert_int_equal(n.full, 2);
    assert_int_equal(n.skipped, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_OK);
    n = tls_crl_check_counts(t.s);
    assert_int_equal(n.full, 2);
    assert_int_equal(n.skipped, 10);
    trust_free(&t);
}

static void test_revoked_serial_refused_after_the_crl_is_remembered(void **state)
{
    (void)state;
    struct trust t = trust_new(make_crl(&inter, NULL, revoked.cert));
    time_t now = time(NULL);
    assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_OK);
    uint64_t skipped = tls_crl_check_counts(t.s).skipped;
    for (int i = 0; i < 2; i++)
        assert_int_equal(judged(&t, revoked.cert, &inter, now), X509_V_ERR_CERT_REVOKED);
    assert_true(tls_crl_check_counts(t.s).skipped >= skipped + 2);
    trust_free(&t);
}

static void test_dates_checked_every_time(void **state)
{
    (void)state;
    struct trust t = trust_new(make_crl(&inter, NULL, NULL));
    time_t now = time(NULL);
    assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_OK);
    assert_int_equal(judged(&t, leaf.cert, &inter, now + 2 * DAY), X509_V_ERR_CRL_HAS_EXPIRED);
    assert_int_equal(judged(&t, leaf.cert, &inter, now - 3600), X509_V_ERR_CRL_NOT_YET_VALID);
    assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_OK);
    trust_free(&t);
}

static void test_forged_crl_refused_every_time(void **state)
{
    (void)state;
    struct trust t = trust_new(make_crl(&inter, leaf.key, NULL));
    time_t now = time(NULL);
    for (int i = 0; i < 3; i++)
        assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_ERR_CRL_SIGNATURE_FAILURE);
    trust_free(&t);
}

static void test_error_let_by_is_not_remembered(void **state)
{
    (void)state;
    struct trust t = trust_new(make_crl(&inter, leaf.key, NULL));
    time_t now = time(NULL);
    /* A callback that lets every error by: the check "passes" with an
     * error set, and must not be taken for a clean one. */
    assert_int_equal(verdict_cb(t.s, leaf.cert, &inter, now, let_everything_by),
                     X509_V_ERR_CRL_SIGNATURE_FAILURE);
    assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_ERR_CRL_SIGNATURE_FAILURE);
    trust_free(&t);
}

static void test_same_name_other_key_not_taken_for_the_issuer(void **state)
{
    (void)state;
    /* inter's CRL is remembered with inter; a chain through inter_twin (the
     * same name, another key) meets the same CRL and must get OpenSSL's
     * own verdict, not the remembered one. */
    struct trust t = trust_new(make_crl(&inter, NULL, NULL));
    time_t now = time(NULL);
    assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_OK);
    for (int i = 0; i < 2; i++)
        assert_int_not_equal(judged(&t, twin_leaf.cert, &inter_twin, now), X509_V_OK);
    trust_free(&t);
    /* And the other way round, remembered with the twin's own CRL. */
    t = trust_new(make_crl(&inter_twin, NULL, NULL));
    assert_int_equal(judged(&t, twin_leaf.cert, &inter_twin, now), X509_V_OK);
    for (int i = 0; i < 2; i++)
        assert_int_not_equal(judged(&t, leaf.cert, &inter, now), X509_V_OK);
    trust_free(&t);
}

static void test_missing_crl_refused(void **state)
{
    (void)state;
    struct trust t = trust_new(NULL);
    time_t now = time(NULL);
    for (int i = 0; i < 2; i++)
        assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_ERR_UNABLE_TO_GET_CRL);
    trust_free(&t);
}

static void test_many_issuers_stay_bounded(void **state)
{
    (void)state;
    /* More intermediates than the remembered slots: every verdict stays
     * right while older pairs are replaced. */
    struct trust t = trust_new(NULL);
    time_t now = time(NULL);
    enum { N = 40 };
    struct unit_pair ca[N], ee[N];
    for (int i = 0; i < N; i++) {
        char cn[32];
        snprintf(cn, sizeof(cn), "Test CA %d", i);
        ca[i] = make_pair(cn, &root, true);
        ee[i] = make_pair("ee.test", &ca[i], false);
        X509_CRL *crl = make_crl(&ca[i], NULL, i % 3 == 0 ? ee[i].cert : NULL);
        assert_int_equal(X509_STORE_add_crl(t.s, crl), 1);
        assert_int_equal(X509_STORE_add_crl(t.plain, crl), 1);
        X509_CRL_free(crl); /* the stores hold it */
    }
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++)
            assert_int_equal(judged(&t, ee[i].cert, &ca[i], now),
                             i % 3 == 0 ? X509_V_ERR_CERT_REVOKED : X509_V_OK);
    assert_true(tls_crl_check_counts(t.s).skipped > 0);
    for (int i = 0; i < N; i++) {
        unit_free_pair(&ca[i]);
        unit_free_pair(&ee[i]);
    }
    trust_free(&t);
}

/* ---- Inputs an attacker or an operator can produce: each judged by a
 * remembering store and a plain one, with every call of the verify callback
 * (its error, depth, certificate and CRL) compared too. ---- */

/* A CA certificate as unit_make_pair makes them, with keyUsage ku. */
static struct unit_pair make_pair_ku(const char *cn, const struct unit_pair *issuer, const char *ku)
{
    struct unit_pair p = make_pair(cn, issuer, true);
    unit_add_ext(p.cert, issuer->cert, NID_key_usage, ku);
    assert_true(X509_sign(p.cert, issuer->key, EVP_sha256()) > 0);
    return p;
}

/* x again, as another object decoded from the same DER (what a client
 * sending the same certificate again gives). */
static X509 *same_der(X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    const unsigned char *p = der;
    X509 *y = d2i_X509(NULL, &p, n);
    OPENSSL_free(der);
    assert_non_null(y);
    return y;
}

/* crl as read from a file: decoded from its DER, so that OpenSSL has its
 * digest (a CRL made in memory has none, and a store takes every second
 * one of the same issuer for a copy of the first, and drops it). Frees
 * crl. */
static X509_CRL *as_loaded(X509_CRL *crl)
{
    unsigned char *der = NULL;
    int n = i2d_X509_CRL(crl, &der);
    assert_true(n > 0);
    const unsigned char *p = der;
    X509_CRL *y = d2i_X509_CRL(NULL, &p, n);
    OPENSSL_free(der);
    X509_CRL_free(crl);
    assert_non_null(y);
    return y;
}

enum crl_kind { CRL_PLAIN, CRL_CRITICAL, CRL_IDP, CRL_DELTA, CRL_NO_NEXT, CRL_ENTRY_CRITICAL };

struct crl_opts {
    EVP_PKEY *key;       /* signs it; the issuer's own when NULL */
    const X509 *akid_of; /* an authority key identifier naming this key */
    time_t last, next;   /* absolute; 0: a minute ago, in a day */
    const X509 *gone;    /* revoked when not NULL */
    enum crl_kind kind;
};

static X509_CRL *mint_crl(const struct unit_pair *issuer, const struct crl_opts *o)
{
    time_t now = time(NULL);
    time_t last = o->last != 0 ? o->last : now - 60;
    time_t next = o->next != 0 ? o->next : now + DAY;
    X509_CRL *crl = X509_CRL_new();
    assert_non_null(crl);
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer->cert));
    ASN1_TIME *t = ASN1_TIME_set(NULL, last);
    X509_CRL_set1_lastUpdate(crl, t);
    if (o->kind != CRL_NO_NEXT) {
        ASN1_TIME_set(t, next);
        X509_CRL_set1_nextUpdate(crl, t);
    }
    if (o->gone != NULL) {
        X509_REVOKED *r = X509_REVOKED_new();
        assert_non_null(r);
        X509_REVOKED_set_serialNumber(r, (ASN1_INTEGER *)X509_get0_serialNumber(o->gone));
        ASN1_TIME_set(t, last);
        X509_REVOKED_set_revocationDate(r, t);
        if (o->kind == CRL_ENTRY_CRITICAL) {
            ASN1_ENUMERATED *reason = ASN1_ENUMERATED_new();
            ASN1_ENUMERATED_set(reason, 1);
            assert_int_equal(X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 1, 0), 1);
            ASN1_ENUMERATED_free(reason);
        }
        assert_int_equal(X509_CRL_add0_revoked(crl, r), 1);
        X509_CRL_sort(crl);
    }
    ASN1_TIME_free(t);
    if (o->akid_of != NULL) {
        X509V3_CTX v3;
        X509V3_set_ctx(&v3, (X509 *)o->akid_of, NULL, NULL, crl, 0);
        X509_EXTENSION *e =
            X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier, "keyid:always");
        assert_non_null(e);
        assert_int_equal(X509_CRL_add_ext(crl, e, -1), 1);
        X509_EXTENSION_free(e);
    }
    X509_EXTENSION *e = NULL;
    if (o->kind == CRL_CRITICAL) {
        /* An extension OpenSSL does not know, marked critical. */
        ASN1_OBJECT *oid = OBJ_txt2obj("1.3.6.1.4.1.55555.7", 1);
        ASN1_OCTET_STRING *v = ASN1_OCTET_STRING_new();
        assert_int_equal(ASN1_OCTET_STRING_set(v, (const unsigned char *)"\x05\x00", 2), 1);
        e = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, v);
        ASN1_OBJECT_free(oid);
        ASN1_OCTET_STRING_free(v);
    } else if (o->kind == CRL_IDP) {
        e = X509V3_EXT_conf_nid(NULL, NULL, NID_issuing_distribution_point, "onlyuser:TRUE");
    } else if (o->kind == CRL_DELTA) {
        /* a delta CRL indicator (base CRL number 1), critical as required */
        ASN1_INTEGER *base = ASN1_INTEGER_new();
        ASN1_INTEGER_set(base, 1);
        assert_int_equal(X509_CRL_add1_ext_i2d(crl, NID_delta_crl, base, 1, 0), 1);
        ASN1_INTEGER_free(base);
    }
    if (o->kind == CRL_CRITICAL || o->kind == CRL_IDP) {
        assert_non_null(e);
        assert_int_equal(X509_CRL_add_ext(crl, e, -1), 1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_CRL_sign(crl, o->key != NULL ? o->key : issuer->key, EVP_sha256()) > 0);
    return as_loaded(crl);
}

/* A stack of the non-NULL certificates given (borrowed). */
static STACK_OF(X509) *chain_of(X509 *a, X509 *b, X509 *c)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    assert_non_null(sk);
    X509 *all[] = {a, b, c};
    for (size_t i = 0; i < 3; i++)
        if (all[i] != NULL)
            assert_true(sk_X509_push(sk, all[i]) > 0);
    return sk;
}

enum cb_mode {
    CB_NONE,     /* OpenSSL's default: every error stops it */
    CB_RECORD,   /* the same verdicts, every call recorded */
    CB_LET_BY,   /* every error let by (an optional client certificate) */
    CB_SOFT_CRL, /* CRL errors cleared and let by: a "soft-fail" application */
};

struct call {
    int ok, err, depth;
    const X509 *cert;
    const X509_CRL *crl;
};

struct outcome {
    int rc, err, depth;
    int n;
    struct call calls[64];
};

struct ask {
    X509 *cert;
    STACK_OF(X509) *sent;     /* what the client sends besides cert */
    time_t at;                /* 0: the wall clock */
    unsigned long flags;      /* set besides CRL_CHECK | CRL_CHECK_ALL */
    unsigned long clear;      /* cleared afterwards */
    STACK_OF(X509_CRL) *crls; /* the context's own CRLs */
    enum cb_mode cb;
};

static bool is_crl_error(int err)
{
    switch (err) {
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
        return true;
    default:
        return false;
    }
}

static int g_ask_idx = -1;

static int recording_cb(int ok, X509_STORE_CTX *ctx)
{
    const struct ask *a = X509_STORE_CTX_get_ex_data(ctx, g_ask_idx);
    struct outcome *o = X509_STORE_CTX_get_app_data(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    if (o->n < (int)(sizeof(o->calls) / sizeof(o->calls[0])))
        o->calls[o->n] = (struct call){ok, err, X509_STORE_CTX_get_error_depth(ctx),
                                       X509_STORE_CTX_get_current_cert(ctx),
                                       X509_STORE_CTX_get0_current_crl(ctx)};
    o->n++;
    if (a->cb == CB_LET_BY)
        return 1;
    if (a->cb == CB_SOFT_CRL && !ok && is_crl_error(err)) {
        X509_STORE_CTX_set_error(ctx, X509_V_OK);
        return 1;
    }
    return ok;
}

static struct outcome ask_run(X509_STORE *s, const struct ask *a)
{
    struct outcome o;
    memset(&o, 0, sizeof(o));
    if (g_ask_idx < 0)
        g_ask_idx = X509_STORE_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_CTX_init(ctx, s, a->cert, a->sent), 1);
    X509_VERIFY_PARAM *p = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_flags(p, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL | a->flags);
    if (a->clear != 0)
        X509_VERIFY_PARAM_clear_flags(p, a->clear);
    if (a->at != 0)
        X509_VERIFY_PARAM_set_time(p, a->at);
    if (a->crls != NULL)
        X509_STORE_CTX_set0_crls(ctx, a->crls);
    if (a->cb != CB_NONE) {
        X509_STORE_CTX_set_app_data(ctx, &o);
        X509_STORE_CTX_set_ex_data(ctx, g_ask_idx, (void *)a);
        X509_STORE_CTX_set_verify_cb(ctx, recording_cb);
    }
    o.rc = X509_verify_cert(ctx);
    o.err = X509_STORE_CTX_get_error(ctx);
    o.depth = X509_STORE_CTX_get_error_depth(ctx);
    X509_STORE_CTX_free(ctx);
    return o;
}

/* a's outcome under t's remembering store, every part of it checked
 * against OpenSSL's own under the plain one. */
static struct outcome asked(const struct trust *t, const struct ask *a)
{
    struct outcome got = ask_run(t->s, a);
    struct outcome want = ask_run(t->plain, a);
    assert_int_equal(got.rc, want.rc);
    assert_int_equal(got.err, want.err);
    assert_int_equal(got.depth, want.depth);
    assert_int_equal(got.n, want.n);
    for (int i = 0; i < got.n && i < (int)(sizeof(got.calls) / sizeof(got.calls[0])); i++) {
        assert_int_equal(got.calls[i].ok, want.calls[i].ok);
        assert_int_equal(got.calls[i].err, want.calls[i].err);
        assert_int_equal(got.calls[i].depth, want.calls[i].depth);
        assert_ptr_equal(got.calls[i].cert, want.calls[i].cert);
        assert_ptr_equal(got.calls[i].crl, want.calls[i].crl);
    }
    return got;
}

/* Two stores (one remembering) trusting the anchors, holding the CRLs
 * (both lists NULL-terminated, borrowed). */
static struct trust trust_of(X509 *const *anchors, X509_CRL *const *crls)
{
    struct trust t = {NULL, NULL, X509_STORE_new(), X509_STORE_new()};
    assert_non_null(t.s);
    assert_non_null(t.plain);
    for (size_t i = 0; anchors[i] != NULL; i++) {
        assert_int_equal(X509_STORE_add_cert(t.s, anchors[i]), 1);
        assert_int_equal(X509_STORE_add_cert(t.plain, anchors[i]), 1);
    }
    for (size_t i = 0; crls != NULL && crls[i] != NULL; i++) {
        assert_int_equal(X509_STORE_add_crl(t.s, crls[i]), 1);
        assert_int_equal(X509_STORE_add_crl(t.plain, crls[i]), 1);
    }
    assert_true(tls_crl_check_attach(t.s));
    return t;
}

static void trust_add_crl(struct trust *t, X509_CRL *crl)
{
    assert_int_equal(X509_STORE_add_crl(t->s, crl), 1);
    assert_int_equal(X509_STORE_add_crl(t->plain, crl), 1);
    X509_CRL_free(crl); /* the stores hold it */
}

/* The strict verification after a soft one: the remembering store's
 * outcome and OpenSSL's, everything freed before they are compared (the
 * two tests below fail). */
static void strict_after_soft(struct trust *t, struct ask *strict, int want_err)
{
    struct ask soft = *strict;
    soft.cb = CB_SOFT_CRL;
    struct outcome first = asked(t, &soft); /* both stores: the same */
    assert_int_equal(first.rc, 1);
    assert_int_equal(first.err, X509_V_OK);
    struct outcome got = ask_run(t->s, strict);
    struct outcome want = ask_run(t->plain, strict);
    assert_int_equal(want.rc, 0);
    assert_int_equal(want.err, want_err);
    assert_int_equal(want.depth, 0);
    /* The soft pass must not be remembered as clean (OpenSSL's check_crl
     * returned 1 and the error was X509_V_OK, the callback having cleared
     * it), or the strict verification would skip the check and accept
     * (rc 1, X509_V_OK where OpenSSL alone gives rc 0 and want_err). */
    assert_int_equal(got.rc, want.rc);
    assert_int_equal(got.err, want.err);
}

static void test_callback_clearing_a_crl_error_is_not_a_clean_pass(void **state)
{
    (void)state;
    /* One store, two applications (or two verifications): one whose
     * callback clears CRL errors and lets them by ("soft fail"), one that
     * does not. After the first, OpenSSL's check has returned 1 with no
     * error set although the CRL's signature failed. */
    struct trust t = trust_new(make_crl(&inter, leaf.key, NULL)); /* forged */
    STACK_OF(X509) *sent = chain_of(inter.cert, NULL, NULL);
    struct ask strict = {.cert = leaf.cert, .sent = sent, .at = time(NULL), .cb = CB_RECORD};
    strict_after_soft(&t, &strict, X509_V_ERR_CRL_SIGNATURE_FAILURE);
    sk_X509_free(sent);
    trust_free(&t);
}

static void test_callback_clearing_no_crl_sign_is_not_a_clean_pass(void **state)
{
    (void)state;
    /* An intermediate whose keyUsage lacks cRLSign, and its CRL, properly
     * signed: OpenSSL refuses with X509_V_ERR_KEYUSAGE_NO_CRL_SIGN. */
    struct unit_pair ca =
        make_pair_ku("Test KU CA", &root, "critical,keyCertSign,digitalSignature");
    struct unit_pair ee = make_pair("ku.test", &ca, false);
    struct trust t = trust_new(make_crl(&ca, NULL, NULL));
    STACK_OF(X509) *sent = chain_of(ca.cert, NULL, NULL);
    struct ask strict = {.cert = ee.cert, .sent = sent, .at = time(NULL), .cb = CB_RECORD};
    for (int i = 0; i < 2; i++)
        assert_int_equal(asked(&t, &strict).err, X509_V_ERR_KEYUSAGE_NO_CRL_SIGN);
    strict_after_soft(&t, &strict, X509_V_ERR_KEYUSAGE_NO_CRL_SIGN);
    sk_X509_free(sent);
    trust_free(&t);
    unit_free_pair(&ca);
    unit_free_pair(&ee);
}

static void test_issuer_without_crl_sign_refused_every_time(void **state)
{
    (void)state;
    /* An intermediate whose keyUsage lacks cRLSign, and its CRL, properly
     * signed: never remembered, refused every time. */
    struct unit_pair ca =
        make_pair_ku("Test KU CA", &root, "critical,keyCertSign,digitalSignature");
    struct unit_pair ee = make_pair("ku.test", &ca, false);
    struct trust t = trust_new(make_crl(&ca, NULL, NULL));
    STACK_OF(X509) *sent = chain_of(ca.cert, NULL, NULL);
    struct ask a = {.cert = ee.cert, .sent = sent, .at = time(NULL), .cb = CB_RECORD};
    for (int i = 0; i < 3; i++) {
        a.cb = CB_RECORD;
        assert_int_equal(asked(&t, &a).err, X509_V_ERR_KEYUSAGE_NO_CRL_SIGN);
        a.cb = CB_LET_BY;
        (void)asked(&t, &a);
    }
    sk_X509_free(sent);
    trust_free(&t);
    unit_free_pair(&ca);
    unit_free_pair(&ee);
}

static void test_newer_crl_of_the_same_issuer_is_the_one_checked(void **state)
{
    (void)state;
    time_t now = time(NULL);
    struct crl_opts good = {.last = now - 3600};
    struct trust t = trust_new(mint_crl(&inter, &good));
    STACK_OF(X509) *sent = chain_of(inter.cert, NULL, NULL);
    struct ask a = {.cert = leaf.cert, .sent = sent, .at = now, .cb = CB_RECORD};
    assert_int_equal(asked(&t, &a).err, X509_V_OK);
    /* A newer CRL of the same name, forged: OpenSSL takes the newest. */
    struct crl_opts forged = {.key = leaf.key, .last = now - 20};
    trust_add_crl(&t, mint_crl(&inter, &forged));
    for (int i = 0; i < 2; i++)
        assert_int_equal(asked(&t, &a).err, X509_V_ERR_CRL_SIGNATURE_FAILURE);
    /* Before the forged one's lastUpdate, the good one again. */
    a.at = now - 40;
    for (int i = 0; i < 2; i++)
        assert_int_equal(asked(&t, &a).err, X509_V_OK);
    /* A newer one still, genuine and revoking the leaf. */
    a.at = now;
    struct crl_opts newest = {.last = now - 10, .gone = leaf.cert};
    trust_add_crl(&t, mint_crl(&inter, &newest));
    for (int i = 0; i < 2; i++)
        assert_int_equal(asked(&t, &a).err, X509_V_ERR_CERT_REVOKED);
    sk_X509_free(sent);
    trust_free(&t);
}

static void test_crls_with_the_same_last_update(void **state)
{
    (void)state;
    /* A genuine and a forged CRL with the same lastUpdate: OpenSSL keeps
     * the first it meets; both orders of loading. */
    time_t now = time(NULL);
    struct crl_opts good = {.last = now - 60};
    struct crl_opts forged = {.key = leaf.key, .last = now - 60};
    STACK_OF(X509) *sent = chain_of(inter.cert, NULL, NULL);
    for (int order = 0; order < 2; order++) {
        X509_CRL *g = mint_crl(&inter, &good);
        X509_CRL *f = mint_crl(&inter, &forged);
        X509_CRL *crls[] = {order ? f : g, order ? g : f, NULL};
        X509 *anchors[] = {root.cert, NULL};
        struct trust t = trust_of(anchors, crls);
        trust_add_crl(&t, make_crl(&root, NULL, NULL));
        struct ask a = {.cert = leaf.cert, .sent = sent, .at = now, .cb = CB_RECORD};
        int first = asked(&t, &a).err;
        for (int i = 0; i < 2; i++)
            assert_int_equal(asked(&t, &a).err, first);
        trust_free(&t);
        X509_CRL_free(g);
        X509_CRL_free(f);
    }
    sk_X509_free(sent);
}

static void test_crls_naming_another_key(void **state)
{
    (void)state;
    /* inter and inter_twin share a name. A CRL whose authority key
     * identifier names the twin (signed by it), one naming inter, and one
     * naming no key, signed by inter: chains through both, alternately. */
    time_t now = time(NULL);
    struct crl_opts of_twin = {.akid_of = inter_twin.cert, .key = inter_twin.key, .last = now - 30};
    struct crl_opts of_inter = {.akid_of = inter.cert, .last = now - 90};
    struct crl_opts no_akid = {.last = now - 60, .gone = twin_leaf.cert};
    X509_CRL *c1 = NULL;
    X509_CRL *c2 = NULL;
    X509_CRL *c3 = NULL;
    STACK_OF(X509) *via_inter = chain_of(inter.cert, NULL, NULL);
    STACK_OF(X509) *via_twin = chain_of(inter_twin.cert, NULL, NULL);
    for (int set = 0; set < 3; set++) {
        /* set 0: all three; 1: no twin's; 2: no inter's */
        X509_CRL *crls[4] = {NULL, NULL, NULL, NULL};
        size_t n = 0;
        c1 = mint_crl(&inter_twin, &of_twin);
        c2 = mint_crl(&inter, &of_inter);
        /* named for inter's subject (the twin's too), signed by inter */
        c3 = mint_crl(&inter, &no_akid);
        if (set != 1)
            crls[n++] = c1;
        if (set != 2)
            crls[n++] = c2;
        crls[n++] = c3;
        X509 *anchors[] = {root.cert, NULL};
        struct trust t = trust_of(anchors, crls);
        trust_add_crl(&t, make_crl(&root, NULL, NULL));
        for (int i = 0; i < 3; i++) {
            struct ask a = {.cert = leaf.cert, .sent = via_inter, .at = now, .cb = CB_RECORD};
            (void)asked(&t, &a);
            struct ask b = {.cert = twin_leaf.cert, .sent = via_twin, .at = now, .cb = CB_RECORD};
            (void)asked(&t, &b);
            /* a leaf of inter sent with the twin: no chain, but the CRLs
             * are looked at under a callback that lets errors by */
            struct ask c = {.cert = leaf.cert, .sent = via_twin, .at = now, .cb = CB_LET_BY};
            (void)asked(&t, &c);
            struct ask d = {.cert = twin_leaf.cert, .sent = via_inter, .at = now, .cb = CB_LET_BY};
            (void)asked(&t, &d);
        }
        trust_free(&t);
        X509_CRL_free(c1);
        X509_CRL_free(c2);
        X509_CRL_free(c3);
    }
    sk_X509_free(via_inter);
    sk_X509_free(via_twin);
}

static void test_crl_dates_at_the_edges(void **state)
{
    (void)state;
    time_t now = time(NULL);
    time_t last = now - 600;
    time_t next = now + 600;
    struct crl_opts o = {.last = last, .next = next};
    struct trust t = trust_new(mint_crl(&inter, &o));
    STACK_OF(X509) *sent = chain_of(inter.cert, NULL, NULL);
    struct ask a = {.cert = leaf.cert, .sent = sent, .at = now, .cb = CB_RECORD};
    assert_int_equal(asked(&t, &a).err, X509_V_OK);
    /* and times no ASN.1 time can be compared with (year 10000 and on) */
    time_t at[] = {last - 1,
                   last,
                   last + 1,
                   now,
                   next - 1,
                   next,
                   next + 1,
                   now,
                   last,
                   next,
                   (time_t)253402300800,
                   (time_t)1};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
        a.at = at[i];
        a.cb = CB_RECORD;
        (void)asked(&t, &a);
        a.cb = CB_LET_BY;
        (void)asked(&t, &a);
    }
    /* The wall clock (no X509_V_FLAG_USE_CHECK_TIME). */
    a.at = 0;
    a.cb = CB_RECORD;
    for (int i = 0; i < 2; i++)
        assert_int_equal(asked(&t, &a).err, X509_V_OK);
    sk_X509_free(sent);
    trust_free(&t);
}

static void test_crl_dates_crossed_on_the_wall_clock(void **state)
{
    (void)state;
    /* One CRL that stops being in date, one that starts to be, a second
     * or two from now; remembered before, judged after. Wall clock only. */
    time_t now = time(NULL);
    struct crl_opts ending = {.last = now - 60, .next = now + 1};
    struct trust t = trust_new(mint_crl(&inter, &ending));
    STACK_OF(X509) *sent = chain_of(inter.cert, NULL, NULL);
    struct ask a = {.cert = leaf.cert, .sent = sent, .cb = CB_RECORD};
    (void)asked(&t, &a);
    (void)asked(&t, &a);
    struct crl_opts starting = {.last = now + 1, .next = now + DAY};
    struct trust u = trust_new(mint_crl(&inter, &starting));
    (void)asked(&u, &a);
    for (int i = 0; i < 30 && time(NULL) <= now + 2; i++)
        usleep(100 * 1000);
    assert_true(time(NULL) > now + 2);
    assert_int_equal(asked(&t, &a).err, X509_V_ERR_CRL_HAS_EXPIRED);
    for (int i = 0; i < 2; i++)
        assert_int_equal(asked(&u, &a).err, X509_V_OK);
    sk_X509_free(sent);
    trust_free(&t);
    trust_free(&u);
}

static void test_partial_chain_anchor_not_self_signed(void **state)
{
    (void)state;
    /* inter trusted alone (X509_V_FLAG_PARTIAL_CHAIN): the top of the chain
     * is not self-signed, so its CRL's issuer is looked for at the top:
     * inter itself. Root's CRL without an authority key identifier is then
     * checked with inter's key; a CRL in root's name signed by inter's key
     * passes. */
    time_t now = time(NULL);
    struct crl_opts by_root = {0};
    struct crl_opts by_inter = {.key = inter.key};
    for (int which = 0; which < 2; which++) {
        X509_CRL *rc = mint_crl(&root, which ? &by_inter : &by_root);
        X509_CRL *ic = make_crl(&inter, NULL, revoked.cert);
        X509 *anchors[] = {inter.cert, NULL};
        X509_CRL *crls[] = {rc, ic, NULL};
        struct trust t = trust_of(anchors, crls);
        for (int i = 0; i < 3; i++) {
            struct ask a = {
                .cert = leaf.cert, .at = now, .flags = X509_V_FLAG_PARTIAL_CHAIN, .cb = CB_RECORD};
            (void)asked(&t, &a);
            a.cert = revoked.cert;
            assert_int_not_equal(asked(&t, &a).err, X509_V_OK);
            a.cert = leaf.cert;
            a.cb = CB_LET_BY;
            (void)asked(&t, &a);
        }
        trust_free(&t);
        X509_CRL_free(rc);
        X509_CRL_free(ic);
    }
}

static void test_self_issued_anchor_not_self_signed(void **state)
{
    (void)state;
    /* T names itself as its issuer but was signed by another key O of the
     * same name: self-issued, not self-signed. A CRL in that name may be
     * checked with T (for T's leaf, and for T itself at the top of a
     * partial chain) and with O (for T, when O ends the chain). */
    time_t now = time(NULL);
    struct unit_pair o = make_pair("Test Self Issued", NULL, true);
    struct unit_pair tt = make_pair("Test Self Issued", &o, true);
    struct unit_pair ee = make_pair("self-issued.test", &tt, false);
    struct crl_opts by_t = {0};
    struct crl_opts by_o = {.key = o.key, .last = now - 30};
    struct crl_opts by_t_akid = {.akid_of = tt.cert};
    struct crl_opts by_o_akid = {.akid_of = o.cert, .key = o.key, .last = now - 30};
    struct crl_opts *sets[][2] = {
        {&by_t, NULL}, {&by_o, NULL}, {&by_t, &by_o}, {&by_t_akid, &by_o_akid}};
    for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
        X509_CRL *c0 = mint_crl(&tt, sets[s][0]);
        X509_CRL *c1 = sets[s][1] != NULL ? mint_crl(&tt, sets[s][1]) : NULL;
        X509_CRL *crls[] = {c0, c1, NULL};
        for (int with_o = 0; with_o < 2; with_o++) {
            X509 *anchors[] = {tt.cert, with_o ? o.cert : NULL, NULL};
            struct trust t = trust_of(anchors, crls);
            for (int i = 0; i < 3; i++) {
                struct ask a = {.cert = ee.cert,
                                .at = now,
                                .flags = X509_V_FLAG_PARTIAL_CHAIN,
                                .cb = CB_RECORD};
                (void)asked(&t, &a);
                a.cb = CB_LET_BY;
                (void)asked(&t, &a);
                a.flags = 0;
                a.cb = CB_RECORD;
                (void)asked(&t, &a);
            }
            trust_free(&t);
        }
        X509_CRL_free(c0);
        X509_CRL_free(c1);
    }
    unit_free_pair(&o);
    unit_free_pair(&tt);
    unit_free_pair(&ee);
}

static void test_key_rollover_chain(void **state)
{
    (void)state;
    /* A root that changed keys under one name: the new key certified by the
     * old (a self-issued cross certificate, sent by the client), an
     * intermediate under the new key. A CRL in the root's name is then
     * issued by the next certificate for some of the chain and by one
     * further up (CRL_SCORE_SAME_PATH) for others. */
    time_t now = time(NULL);
    struct unit_pair old = make_pair("Test Roll Root", NULL, true);
    struct unit_pair cross = make_pair("Test Roll Root", &old, true);
    struct unit_pair ca = make_pair("Test Roll CA", &cross, true);
    struct unit_pair ee = make_pair("roll.test", &ca, false);
    struct unit_pair ee2 = make_pair("roll2.test", &ca, false);
    struct crl_opts by_old = {.akid_of = old.cert, .last = now - 90};
    struct crl_opts by_new = {.akid_of = cross.cert, .key = cross.key, .last = now - 60};
    struct crl_opts by_old_bare = {.last = now - 30};
    struct crl_opts by_new_bare = {.key = cross.key, .last = now - 30};
    struct crl_opts ca_crl = {.gone = ee2.cert};
    struct crl_opts *sets[][2] = {{&by_old, NULL},      {&by_new, NULL},
                                  {&by_old, &by_new},   {&by_old_bare, NULL},
                                  {&by_new_bare, NULL}, {&by_old, &by_new_bare}};
    STACK_OF(X509) *sent = chain_of(ca.cert, cross.cert, NULL);
    for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
        X509_CRL *c0 = mint_crl(&old, sets[s][0]);
        X509_CRL *c1 = sets[s][1] != NULL ? mint_crl(&old, sets[s][1]) : NULL;
        X509_CRL *cc = mint_crl(&ca, &ca_crl);
        X509_CRL *crls[] = {cc, c0, c1, NULL};
        X509 *anchors[] = {old.cert, NULL};
        struct trust t = trust_of(anchors, crls);
        for (int i = 0; i < 3; i++) {
            struct ask a = {.cert = ee.cert, .sent = sent, .at = now, .cb = CB_RECORD};
            (void)asked(&t, &a);
            a.cert = ee2.cert;
            (void)asked(&t, &a);
            a.cb = CB_LET_BY;
            (void)asked(&t, &a);
            a.cert = ee.cert;
            (void)asked(&t, &a);
        }
        trust_free(&t);
        X509_CRL_free(c0);
        X509_CRL_free(c1);
        X509_CRL_free(cc);
    }
    sk_X509_free(sent);
    unit_free_pair(&old);
    unit_free_pair(&cross);
    unit_free_pair(&ca);
    unit_free_pair(&ee);
    unit_free_pair(&ee2);
}

static void test_issuer_sent_again_as_another_object(void **state)
{
    (void)state;
    /* The same intermediate (and root) decoded afresh, as each handshake
     * does: the pair remembered with one object serves the next. */
    time_t now = time(NULL);
    struct trust t = trust_new(make_crl(&inter, NULL, revoked.cert));
    X509 *copies[6];
    for (int i = 0; i < 6; i++) {
        copies[i] = same_der(i % 2 ? root.cert : inter.cert);
    }
    STACK_OF(X509) *first = chain_of(copies[0], NULL, NULL);
    struct ask a = {.cert = leaf.cert, .sent = first, .at = now, .cb = CB_RECORD};
    assert_int_equal(asked(&t, &a).err, X509_V_OK);
    uint64_t skipped = tls_crl_check_counts(t.s).skipped;
    for (int i = 2; i < 6; i += 2) {
        STACK_OF(X509) *sent = chain_of(copies[i], copies[i + 1], NULL);
        a.sent = sent;
        a.cert = leaf.cert;
        assert_int_equal(asked(&t, &a).err, X509_V_OK);
        X509 *rev = same_der(revoked.cert);
        a.cert = rev;
        assert_int_equal(asked(&t, &a).err, X509_V_ERR_CERT_REVOKED);
        X509_free(rev);
        sk_X509_free(sent);
    }
    assert_true(tls_crl_check_counts(t.s).skipped >= skipped + 4);
    sk_X509_free(first);
    for (int i = 0; i < 6; i++)
        X509_free(copies[i]);
    trust_free(&t);
}

static void test_issuer_trusted_and_sent(void **state)
{
    (void)state;
    /* inter (and the leaf) also trusted: the chain's inter is then the
     * store's object, or, with X509_V_FLAG_PARTIAL_CHAIN, the top of a
     * chain whose root's CRL is looked at with inter's (or the leaf's) own
     * key. Pairs are remembered under one and judged under the others. */
    time_t now = time(NULL);
    X509 *copy = same_der(inter.cert);
    STACK_OF(X509) *sent = chain_of(copy, NULL, NULL);
    X509 *anchor_sets[][4] = {{root.cert, NULL},
                              {root.cert, inter.cert, NULL},
                              {inter.cert, NULL},
                              {root.cert, inter.cert, leaf.cert, NULL}};
    X509_CRL *rc = make_crl(&root, NULL, NULL);
    X509_CRL *ic = make_crl(&inter, NULL, revoked.cert);
    X509_CRL *crls[] = {rc, ic, NULL};
    for (size_t s = 0; s < sizeof(anchor_sets) / sizeof(anchor_sets[0]); s++) {
        struct trust t = trust_of(anchor_sets[s], crls);
        for (int round = 0; round < 2; round++) {
            unsigned long flags[] = {0, X509_V_FLAG_PARTIAL_CHAIN};
            for (size_t f = 0; f < 2; f++) {
                struct ask a = {
                    .cert = leaf.cert, .sent = sent, .at = now, .flags = flags[f], .cb = CB_RECORD};
                (void)asked(&t, &a);
                a.cert = revoked.cert;
                (void)asked(&t, &a);
                a.sent = NULL;
                (void)asked(&t, &a);
                a.cert = leaf.cert;
                a.cb = CB_LET_BY;
                (void)asked(&t, &a);
            }
        }
        trust_free(&t);
    }
    X509_CRL_free(rc);
    X509_CRL_free(ic);
    sk_X509_free(sent);
    X509_free(copy);
}

static void test_crls_that_are_not_plain(void **state)
{
    (void)state;
    /* Each kind, genuine and forged, revoking or not: OpenSSL's verdict
     * every time, and never a skipped check of that CRL. */
    time_t now = time(NULL);
    enum crl_kind kinds[] = {CRL_CRITICAL, CRL_IDP, CRL_DELTA, CRL_NO_NEXT, CRL_ENTRY_CRITICAL};
    STACK_OF(X509) *sent = chain_of(inter.cert, NULL, NULL);
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        for (int forged = 0; forged < 2; forged++) {
            struct crl_opts o = {
                .kind = kinds[k], .gone = revoked.cert, .key = forged ? leaf.key : NULL};
            struct trust t = trust_new(mint_crl(&inter, &o));
            for (int i = 0; i < 3; i++) {
                struct ask a = {.cert = leaf.cert, .sent = sent, .at = now, .cb = CB_RECORD};
                (void)asked(&t, &a);
                a.cert = revoked.cert;
                (void)asked(&t, &a);
                a.cb = CB_LET_BY;
                (void)asked(&t, &a);
                a.flags = X509_V_FLAG_IGNORE_CRITICAL;
                (void)asked(&t, &a);
            }
            if (kinds[k] != CRL_ENTRY_CRITICAL) {
                /* only root's CRL (checked at two depths) is remembered */
                struct tls_crl_check_counts n = tls_crl_check_counts(t.s);
                assert_true(n.full >= 12);
            }
            trust_free(&t);
        }
    }
    sk_X509_free(sent);
}

static void test_flags_that_change_crl_handling(void **state)
{
    (void)state;
    /* Pairs remembered under the usual flags, then verifications under
     * each flag that changes CRL handling (and some that do not). */
    time_t now = time(NULL);
    unsigned long flags[] = {
        X509_V_FLAG_IGNORE_CRITICAL,      X509_V_FLAG_USE_DELTAS,
        X509_V_FLAG_EXTENDED_CRL_SUPPORT, X509_V_FLAG_EXTENDED_CRL_SUPPORT | X509_V_FLAG_USE_DELTAS,
        X509_V_FLAG_NO_CHECK_TIME,        X509_V_FLAG_PARTIAL_CHAIN,
        X509_V_FLAG_X509_STRICT,          X509_V_FLAG_SUITEB_128_LOS,
        X509_V_FLAG_CHECK_SS_SIGNATURE};
    STACK_OF(X509) *sent = chain_of(inter.cert, NULL, NULL);
    for (int forged = 0; forged < 2; forged++) {
        struct trust t = trust_new(make_crl(&inter, forged ? leaf.key : NULL, revoked.cert));
        struct ask a = {.cert = leaf.cert, .sent = sent, .at = now, .cb = CB_RECORD};
        (void)asked(&t, &a);
        for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
            for (int i = 0; i < 2; i++) {
                a.cert = i ? revoked.cert : leaf.cert;
                a.flags = flags[f];
                a.clear = 0;
                (void)asked(&t, &a);
                a.clear = X509_V_FLAG_CRL_CHECK_ALL;
                (void)asked(&t, &a);
                /* outside the CRL's dates */
                a.clear = 0;
                a.at = now + 2 * DAY;
                (void)asked(&t, &a);
                a.at = now;
            }
        }
        a.flags = 0;
        a.cert = leaf.cert;
        (void)asked(&t, &a);
        trust_free(&t);
    }
    sk_X509_free(sent);
}

static void test_crls_of_the_context_not_the_store(void **state)
{
    (void)state;
    /* CRLs given to the context (X509_STORE_CTX_set0_crls), freed by their
     * owner after the verification: a remembered one is kept alive by its
     * reference, so no later CRL can take its address. */
    time_t now = time(NULL);
    struct trust t = trust_new(NULL);
    STACK_OF(X509) *sent = chain_of(inter.cert, NULL, NULL);
    struct crl_opts good = {0};
    struct crl_opts forged = {.key = leaf.key};
    for (int round = 0; round < 8; round++) {
        STACK_OF(X509_CRL) *crls = sk_X509_CRL_new_null();
        assert_non_null(crls);
        X509_CRL *c = mint_crl(&inter, round % 2 ? &forged : &good);
        assert_true(sk_X509_CRL_push(crls, c) > 0);
        struct ask a = {.cert = leaf.cert, .sent = sent, .at = now, .crls = crls, .cb = CB_RECORD};
        for (int i = 0; i < 2; i++)
            assert_int_equal(asked(&t, &a).err,
                             round % 2 ? X509_V_ERR_CRL_SIGNATURE_FAILURE : X509_V_OK);
        sk_X509_CRL_pop_free(crls, X509_CRL_free);
    }
    sk_X509_free(sent);
    trust_free(&t);
}

static void test_every_callback_call_compared(void **state)
{
    (void)state;
    /* Pairs remembered by clean verifications, then chains with errors
     * judged under a callback that lets every error by: the calls (error,
     * depth, certificate, current CRL) must be OpenSSL's. */
    time_t now = time(NULL);
    struct unit_pair stranger = make_pair("Test Root", NULL, true); /* root's name, untrusted */
    struct unit_pair stray = make_pair("Test Intermediate", &stranger, true);
    struct unit_pair stray_leaf = make_pair("stray.test", &stray, false);
    struct trust t = trust_new(make_crl(&inter, NULL, revoked.cert));
    STACK_OF(X509) *sent = chain_of(inter.cert, NULL, NULL);
    STACK_OF(X509) *strays = chain_of(stray.cert, stranger.cert, NULL);
    STACK_OF(X509) *mixed = chain_of(inter.cert, stranger.cert, NULL);
    struct ask clean = {.cert = leaf.cert, .sent = sent, .at = now, .cb = CB_RECORD};
    assert_int_equal(asked(&t, &clean).err, X509_V_OK);
    struct ask cases[] = {
        {.cert = revoked.cert, .sent = sent, .at = now},
        {.cert = leaf.cert, .sent = sent, .at = now + 2 * DAY},
        {.cert = leaf.cert, .sent = sent, .at = now - 3600},
        {.cert = leaf.cert, .sent = NULL, .at = now},
        {.cert = stray_leaf.cert, .sent = strays, .at = now},
        {.cert = leaf.cert, .sent = mixed, .at = now},
        {.cert = twin_leaf.cert, .sent = sent, .at = now},
        {.cert = leaf.cert, .sent = sent, .at = now},
    };
    for (int round = 0; round < 2; round++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            cases[i].cb = CB_LET_BY;
            (void)asked(&t, &cases[i]);
            cases[i].cb = CB_RECORD;
            (void)asked(&t, &cases[i]);
        }
    }
    sk_X509_free(sent);
    sk_X509_free(strays);
    sk_X509_free(mixed);
    trust_free(&t);
    unit_free_pair(&stranger);
    unit_free_pair(&stray);
    unit_free_pair(&stray_leaf);
}

static void test_store_freed_while_pairs_are_held(void **state)
{
    (void)state;
    /* More pairs than slots, some replaced, then the store freed while the
     * CRLs and certificates live on elsewhere; a new store starts empty. */
    time_t now = time(NULL);
    enum { N = 20 };
    struct unit_pair ca[N], ee[N];
    X509_CRL *crls[N + 2];
    for (int i = 0; i < N; i++) {
        char cn[32];
        snprintf(cn, sizeof(cn), "Test Slot CA %d", i);
        ca[i] = make_pair(cn, &root, true);
        ee[i] = make_pair("slot.test", &ca[i], false);
        crls[i] = make_crl(&ca[i], i == 7 ? ee[i].key : NULL, NULL);
    }
    crls[N] = make_crl(&root, NULL, NULL);
    crls[N + 1] = NULL;
    X509 *anchors[] = {root.cert, NULL};
    for (int round = 0; round < 2; round++) {
        struct trust t = trust_of(anchors, crls);
        for (int pass = 0; pass < 2; pass++) {
            for (int i = 0; i < N; i++) {
                STACK_OF(X509) *sent = chain_of(ca[i].cert, NULL, NULL);
                struct ask a = {.cert = ee[i].cert, .sent = sent, .at = now, .cb = CB_RECORD};
                assert_int_equal(asked(&t, &a).err,
                                 i == 7 ? X509_V_ERR_CRL_SIGNATURE_FAILURE : X509_V_OK);
                sk_X509_free(sent);
            }
        }
        if (round == 0)
            assert_true(tls_crl_check_counts(t.s).skipped > 0);
        trust_free(&t);
    }
    for (int i = 0; i <= N; i++)
        X509_CRL_free(crls[i]);
    for (int i = 0; i < N; i++) {
        unit_free_pair(&ca[i]);
        unit_free_pair(&ee[i]);
    }
}

/* cert again, with crlDistributionPoints: one point, with reasons when
 * reasons is not 0 (a bit mask), and a cRLIssuer when crl_issuer is not
 * NULL; signed by issuer and decoded afresh. Frees cert. */
static X509 *with_dp(X509 *cert, const struct unit_pair *issuer, int reasons,
                     const X509_NAME *crl_issuer)
{
    STACK_OF(DIST_POINT) *dps = sk_DIST_POINT_new_null();
    DIST_POINT *dp = DIST_POINT_new();
    assert_non_null(dps);
    assert_non_null(dp);
    dp->distpoint = DIST_POINT_NAME_new();
    assert_non_null(dp->distpoint);
    dp->distpoint->type = 0;
    dp->distpoint->name.fullname = GENERAL_NAMES_new();
    unit_san_text(dp->distpoint->name.fullname, GEN_URI, "http://crl.test/inter.crl");
    if (reasons != 0) {
        dp->reasons = ASN1_BIT_STRING_new();
        for (int bit = 0; bit < 9; bit++)
            if (reasons & (1 << bit))
                assert_int_equal(ASN1_BIT_STRING_set_bit(dp->reasons, bit, 1), 1);
    }
    if (crl_issuer != NULL) {
        dp->CRLissuer = GENERAL_NAMES_new();
        GENERAL_NAME *g = GENERAL_NAME_new();
        assert_non_null(g);
        GENERAL_NAME_set0_value(g, GEN_DIRNAME, X509_NAME_dup(crl_issuer));
        assert_true(sk_GENERAL_NAME_push(dp->CRLissuer, g) > 0);
    }
    assert_true(sk_DIST_POINT_push(dps, dp) > 0);
    assert_int_equal(
        X509_add1_ext_i2d(cert, NID_crl_distribution_points, dps, 0, X509V3_ADD_DEFAULT), 1);
    sk_DIST_POINT_pop_free(dps, DIST_POINT_free);
    assert_true(X509_sign(cert, issuer->key, EVP_sha256()) > 0);
    X509 *y = same_der(cert);
    X509_free(cert);
    return y;
}

static void test_certificates_with_distribution_points(void **state)
{
    (void)state;
    /* A plain CRL covers a certificate's distribution point for all
     * reasons or for some (then OpenSSL looks for another CRL for the
     * rest, and finds none); with a cRLIssuer of another name it falls
     * back to the CRL of the certificate's issuer. */
    time_t now = time(NULL);
    const X509_NAME *other = X509_get_subject_name(root.cert);
    struct {
        int reasons;
        const X509_NAME *crl_issuer;
        int want; /* with inter's genuine CRL */
    } dps[] = {{0, NULL, X509_V_OK},
               {1 << 1, NULL, X509_V_ERR_UNABLE_TO_GET_CRL}, /* keyCompromise only */
               {0x1fe, NULL, X509_V_OK},                     /* every reason */
               {0, other, X509_V_OK},
               {1 << 1, other, X509_V_OK}};
    STACK_OF(X509) *sent = chain_of(inter.cert, NULL, NULL);
    for (int forged = 0; forged < 2; forged++) {
        struct trust t = trust_new(make_crl(&inter, forged ? leaf.key : NULL, NULL));
        for (int round = 0; round < 2; round++) {
            for (size_t i = 0; i < sizeof(dps) / sizeof(dps[0]); i++) {
                struct unit_pair ee = make_pair("dp.test", &inter, false);
                ee.cert = with_dp(ee.cert, &inter, dps[i].reasons, dps[i].crl_issuer);
                struct ask a = {.cert = ee.cert, .sent = sent, .at = now, .cb = CB_RECORD};
                assert_int_equal(asked(&t, &a).err,
                                 forged ? X509_V_ERR_CRL_SIGNATURE_FAILURE : dps[i].want);
                a.cb = CB_LET_BY;
                (void)asked(&t, &a);
                a.flags = X509_V_FLAG_EXTENDED_CRL_SUPPORT;
                (void)asked(&t, &a);
                unit_free_pair(&ee);
            }
            struct ask plain = {.cert = leaf.cert, .sent = sent, .at = now, .cb = CB_RECORD};
            (void)asked(&t, &plain);
        }
        trust_free(&t);
    }
    sk_X509_free(sent);
}

/* inter as a client could send it with its signature's last byte changed:
 * the same name and key, so its CRL check passes, but not the same DER. */
static X509 *altered_copy(X509 *x, unsigned char delta)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    der[n - 1] ^= delta; /* the DER's last byte is the signature's */
    const unsigned char *p = der;
    X509 *y = d2i_X509(NULL, &p, n);
    OPENSSL_free(der);
    assert_non_null(y);
    return y;
}

static void test_made_up_issuers_do_not_push_out_a_busy_pair(void **state)
{
    (void)state;
    /* A client that sends inter with altered signature bytes, again and
     * again, gets its CRL check remembered (before the signature is
     * checked) but must not push out the pairs real handshakes use. */
    struct trust t = trust_new(make_crl(&inter, NULL, NULL));
    time_t now = time(NULL);
    for (int i = 0; i < 3; i++)
        assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_OK);
    for (int i = 1; i <= 40; i++) {
        struct unit_pair fake = {altered_copy(inter.cert, (unsigned char)i), NULL};
        assert_int_not_equal(X509_cmp(fake.cert, inter.cert), 0);
        assert_int_not_equal(judged(&t, leaf.cert, &fake, now), X509_V_OK);
        X509_free(fake.cert);
    }
    uint64_t full = tls_crl_check_counts(t.s).full;
    assert_int_equal(judged(&t, leaf.cert, &inter, now), X509_V_OK);
    assert_int_equal(tls_crl_check_counts(t.s).full, full); /* both still remembered */
    trust_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_verification_skips_the_signatures),
        cmocka_unit_test(test_revoked_serial_refused_after_the_crl_is_remembered),
        cmocka_unit_test(test_dates_checked_every_time),
        cmocka_unit_test(test_forged_crl_refused_every_time),
        cmocka_unit_test(test_error_let_by_is_not_remembered),
        cmocka_unit_test(test_same_name_other_key_not_taken_for_the_issuer),
        cmocka_unit_test(test_missing_crl_refused),
        cmocka_unit_test(test_many_issuers_stay_bounded),
        cmocka_unit_test(test_made_up_issuers_do_not_push_out_a_busy_pair),
        cmocka_unit_test(test_callback_clearing_a_crl_error_is_not_a_clean_pass),
        cmocka_unit_test(test_callback_clearing_no_crl_sign_is_not_a_clean_pass),
        cmocka_unit_test(test_issuer_without_crl_sign_refused_every_time),
        cmocka_unit_test(test_newer_crl_of_the_same_issuer_is_the_one_checked),
        cmocka_unit_test(test_crls_with_the_same_last_update),
        cmocka_unit_test(test_crls_naming_another_key),
        cmocka_unit_test(test_crl_dates_at_the_edges),
        cmocka_unit_test(test_crl_dates_crossed_on_the_wall_clock),
        cmocka_unit_test(test_partial_chain_anchor_not_self_signed),
        cmocka_unit_test(test_self_issued_anchor_not_self_signed),
        cmocka_unit_test(test_key_rollover_chain),
        cmocka_unit_test(test_issuer_sent_again_as_another_object),
        cmocka_unit_test(test_issuer_trusted_and_sent),
        cmocka_unit_test(test_crls_that_are_not_plain),
        cmocka_unit_test(test_flags_that_change_crl_handling),
        cmocka_unit_test(test_crls_of_the_context_not_the_store),
        cmocka_unit_test(test_every_callback_call_compared),
        cmocka_unit_test(test_store_freed_while_pairs_are_held),
        cmocka_unit_test(test_certificates_with_distribution_points),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
