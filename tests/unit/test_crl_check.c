/* tls_crl_check_attach: a CRL's signature is verified once per issuer, and
 * every verdict is the one OpenSSL gives without it. Test material is minted
 * here with the OpenSSL API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

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
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
