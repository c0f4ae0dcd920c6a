/* OCSP (src/tls/ocsp.c, src/core/ocsp_shm.c): the checks a response passes
 * before it is stapled, each accepted case beside the refused twin, the
 * request, the responder URL, and the shared slots. Certificates and
 * responses are made here with OpenSSL's API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

#include "core/ocsp_shm.h"
#include "tls/tls.h"
#include "unit_x509.h"

#define NO_NEXT LONG_MIN

struct pki {
    EVP_PKEY *ca_key, *leaf_key, *resp_key, *plain_key, *other_key;
    X509 *ca, *leaf, *resp, *plain, *other;
};

static struct pki g;

/* A certificate for cn with key, signed by issuer (self-signed when NULL). */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       long serial, const char *eku, const char *aia)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), -86400);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 30);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    X509_set_pubkey(x, key);
    if (issuer == NULL)
        unit_add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
    if (eku != NULL)
        unit_add_ext(x, issuer, NID_ext_key_usage, eku);
    if (aia != NULL)
        unit_add_ext(x, issuer, NID_info_access, aia);
    assert_true(X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static int setup(void **state)
{
    (void)state;
    g.ca_key = EVP_EC_gen("P-256");
    g.leaf_key = EVP_EC_gen("P-256");
    g.resp_key = EVP_EC_gen("P-256");
    g.plain_key = EVP_EC_gen("P-256");
    g.other_key = EVP_EC_gen("P-256");
    g.ca = make_cert("unit ca", g.ca_key, NULL, NULL, 1, NULL, NULL);
    g.leaf = make_cert("localhost", g.leaf_key, g.ca, g.ca_key, 2, "serverAuth",
                       "OCSP;URI:https://tls.example/,OCSP;URI:http://127.0.0.1:8888/ocsp");
    g.resp = make_cert("unit responder", g.resp_key, g.ca, g.ca_key, 3, "OCSPSigning", NULL);
    g.plain = make_cert("not a responder", g.plain_key, g.ca, g.ca_key, 4, "serverAuth", NULL);
    /* Another CA with the same name: an impostor. */
    g.other = make_cert("unit ca", g.other_key, NULL, NULL, 1, NULL, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    X509_free(g.ca);
    X509_free(g.leaf);
    X509_free(g.resp);
    X509_free(g.plain);
    X509_free(g.other);
    EVP_PKEY_free(g.ca_key);
    EVP_PKEY_free(g.leaf_key);
    EVP_PKEY_free(g.resp_key);
    EVP_PKEY_free(g.plain_key);
    EVP_PKEY_free(g.other_key);
    return 0;
}

/* A DER response about cert (issued by g.ca) with status, thisUpdate and
 * nextUpdate relative to now (NO_NEXT: none), signed by signer/key (the
 * signer's certificate is included when it is not the CA). */
static size_t make_resp(uint8_t *out, size_t cap, X509 *cert, int status, long this_off,
                        long next_off, X509 *signer, EVP_PKEY *key)
{
    OCSP_BASICRESP *bs = OCSP_BASICRESP_new();
    OCSP_CERTID *id = OCSP_cert_to_id(NULL, cert, g.ca);
    ASN1_TIME *thisu = X509_gmtime_adj(NULL, this_off);
    ASN1_TIME *nextu = next_off == NO_NEXT ? NULL : X509_gmtime_adj(NULL, next_off);
    ASN1_TIME *rev = status == V_OCSP_CERTSTATUS_REVOKED ? X509_gmtime_adj(NULL, -3600) : NULL;
    assert_non_null(OCSP_basic_add1_status(
        bs, id, status, rev ? OCSP_REVOKED_STATUS_KEYCOMPROMISE : 0, rev, thisu, nextu));
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (signer != g.ca)
        sk_X509_push(certs, signer);
    assert_int_equal(OCSP_basic_sign(bs, signer, key, EVP_sha256(), certs, 0), 1);
    OCSP_RESPONSE *r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, bs);
    unsigned char *der = NULL;
    int n = i2d_OCSP_RESPONSE(r, &der);
    assert_true(n > 0 && (size_t)n <= cap);
    memcpy(out, der, (size_t)n);
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
    sk_X509_free(certs);
    ASN1_TIME_free(thisu);
    ASN1_TIME_free(nextu);
    ASN1_TIME_free(rev);
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(bs);
    return (size_t)n;
}

static const char *check(const uint8_t *der, size_t len, struct tls_ocsp_facts *f)
{
    const char *reason = NULL;
    char detail[300];
    enum tg_status st = tls_ocsp_check(der, len, g.leaf, g.ca, (int64_t)time(NULL), f, &reason,
                                       detail, sizeof(detail));
    assert_true(st == TG_OK ? reason == NULL : reason != NULL);
    return st == TG_OK ? "ok" : reason;
}

static void test_good_from_the_ca(void **state)
{
    (void)state;
    uint8_t der[4096];
    struct tls_ocsp_facts f;
    size_t n =
        make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, -60, 3600, g.ca, g.ca_key);
    assert_string_equal(check(der, n, &f), "ok");
    assert_int_equal(f.status, TLS_OCSP_GOOD);
    assert_true(f.next_update - f.this_update == 3660);
    /* Twins: cut short, one byte more, nothing, too much. */
    assert_string_equal(check(der, n - 1, &f), "malformed");
    der[n] = 0;
    assert_string_equal(check(der, n + 1, &f), "malformed");
    assert_string_equal(check(der, 0, &f), "malformed");
    assert_string_equal(check(der, OCSP_RESP_MAX + 1, &f), "malformed");
}

static void test_delegated_responder_needs_ocsp_signing(void **state)
{
    (void)state;
    uint8_t der[4096];
    struct tls_ocsp_facts f;
    size_t n =
        make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, -60, 3600, g.resp, g.resp_key);
    assert_string_equal(check(der, n, &f), "ok");
    n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, -60, 3600, g.plain,
                  g.plain_key);
    assert_string_equal(check(der, n, &f), "bad_signature");
}

static void test_wrong_signer(void **state)
{
    (void)state;
    uint8_t der[4096];
    struct tls_ocsp_facts f;
    size_t n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, -60, 3600, g.other,
                         g.other_key);
    assert_string_equal(check(der, n, &f), "bad_signature");
    /* The leaf's own key signs nothing the issuer vouches for. */
    n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, -60, 3600, g.leaf, g.leaf_key);
    assert_string_equal(check(der, n, &f), "bad_signature");
}

static void test_revoked_and_unknown(void **state)
{
    (void)state;
    uint8_t der[4096];
    struct tls_ocsp_facts f;
    size_t n =
        make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_REVOKED, -60, 3600, g.ca, g.ca_key);
    assert_string_equal(check(der, n, &f), "ok");
    assert_int_equal(f.status, TLS_OCSP_REVOKED);
    assert_int_equal(f.revocation_reason, OCSP_REVOKED_STATUS_KEYCOMPROMISE);
    assert_true(f.revoked_at > 0 && f.revoked_at < f.this_update);
    n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_UNKNOWN, -60, 3600, g.ca, g.ca_key);
    assert_string_equal(check(der, n, &f), "ok");
    assert_int_equal(f.status, TLS_OCSP_UNKNOWN);
}

static void test_about_another_certificate(void **state)
{
    (void)state;
    uint8_t der[4096];
    struct tls_ocsp_facts f;
    size_t n =
        make_resp(der, sizeof(der), g.plain, V_OCSP_CERTSTATUS_GOOD, -60, 3600, g.ca, g.ca_key);
    assert_string_equal(check(der, n, &f), "wrong_certificate");
}

static void test_dates(void **state)
{
    (void)state;
    uint8_t der[4096];
    struct tls_ocsp_facts f;
    size_t n;
    n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, -7200, -60, g.ca, g.ca_key);
    assert_string_equal(check(der, n, &f), "expired");
    /* Past nextUpdate by a little: no leeway on that side. */
    n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, -7200, -2, g.ca, g.ca_key);
    assert_string_equal(check(der, n, &f), "expired");
    n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, -7200, 30, g.ca, g.ca_key);
    assert_string_equal(check(der, n, &f), "ok");
    /* thisUpdate ahead: within the leeway (clock skew) or beyond it. */
    n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, TLS_OCSP_LEEWAY - 30, 7200,
                  g.ca, g.ca_key);
    assert_string_equal(check(der, n, &f), "ok");
    n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, TLS_OCSP_LEEWAY + 60, 7200,
                  g.ca, g.ca_key);
    assert_string_equal(check(der, n, &f), "not_yet_valid");
    n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, -60, NO_NEXT, g.ca, g.ca_key);
    assert_string_equal(check(der, n, &f), "no_next_update");
    /* The client-certificate cache may believe it briefly: accepted with
     * TLS_OCSP_NO_NEXT_UPDATE_OK, nextUpdate 0; thisUpdate still checked. */
    const char *reason = NULL;
    char detail[300];
    assert_int_equal(tls_ocsp_check_ex(der, n, g.leaf, g.ca, (int64_t)time(NULL),
                                       TLS_OCSP_NO_NEXT_UPDATE_OK, &f, &reason, detail,
                                       sizeof(detail)),
                     TG_OK);
    assert_int_equal(f.next_update, 0);
    assert_int_equal(f.status, TLS_OCSP_GOOD);
    n = make_resp(der, sizeof(der), g.leaf, V_OCSP_CERTSTATUS_GOOD, TLS_OCSP_LEEWAY + 60, NO_NEXT,
                  g.ca, g.ca_key);
    assert_int_equal(tls_ocsp_check_ex(der, n, g.leaf, g.ca, (int64_t)time(NULL),
                                       TLS_OCSP_NO_NEXT_UPDATE_OK, &f, &reason, detail,
                                       sizeof(detail)),
                     TG_E_PROTO);
    assert_string_equal(reason, "not_yet_valid");
}

static void test_unsuccessful(void **state)
{
    (void)state;
    OCSP_RESPONSE *r = OCSP_response_create(OCSP_RESPONSE_STATUS_TRYLATER, NULL);
    unsigned char *der = NULL;
    int n = i2d_OCSP_RESPONSE(r, &der);
    struct tls_ocsp_facts f;
    assert_true(n > 0);
    assert_string_equal(check(der, (size_t)n, &f), "not_successful");
    OPENSSL_free(der);
    OCSP_RESPONSE_free(r);
}

static void test_request_names_the_certificate(void **state)
{
    (void)state;
    unsigned char *der = NULL;
    size_t len = 0;
    assert_int_equal(tls_ocsp_request(g.leaf, g.ca, &der, &len), TG_OK);
    const unsigned char *p = der;
    OCSP_REQUEST *req = d2i_OCSP_REQUEST(NULL, &p, (long)len);
    assert_non_null(req);
    assert_ptr_equal(p, der + len);
    assert_int_equal(OCSP_request_onereq_count(req), 1);
    OCSP_CERTID *want = OCSP_cert_to_id(NULL, g.leaf, g.ca);
    OCSP_CERTID *other = OCSP_cert_to_id(NULL, g.plain, g.ca);
    OCSP_CERTID *got = OCSP_onereq_get0_id(OCSP_request_onereq_get0(req, 0));
    assert_int_equal(OCSP_id_cmp(want, got), 0);
    assert_int_not_equal(OCSP_id_cmp(other, got), 0);
    OCSP_CERTID_free(want);
    OCSP_CERTID_free(other);
    OCSP_REQUEST_free(req);
    OPENSSL_free(der);
}

static void test_url_and_issuer(void **state)
{
    (void)state;
    char url[256];
    /* The https:// responder is skipped for the http:// one. */
    assert_true(tls_ocsp_url(g.leaf, url, sizeof(url)));
    assert_string_equal(url, "http://127.0.0.1:8888/ocsp");
    assert_false(tls_ocsp_url(g.leaf, url, 10)); /* does not fit */
    assert_string_equal(url, "");
    assert_false(tls_ocsp_url(g.resp, url, sizeof(url)));
    STACK_OF(X509) *certs = sk_X509_new_null();
    sk_X509_push(certs, g.plain);
    assert_null(tls_ocsp_issuer(g.leaf, certs));
    sk_X509_push(certs, g.ca);
    assert_ptr_equal(tls_ocsp_issuer(g.leaf, certs), g.ca);
    sk_X509_free(certs);
}

static void test_shm_slots(void **state)
{
    (void)state;
    struct ocsp_shm *shm = ocsp_shm_new(2);
    assert_non_null(shm);
    uint8_t der[64];
    memset(der, 0xab, sizeof(der));
    size_t len = 99;
    struct ocsp_info info = {.state = OCSP_STATE_GOOD, .this_update = 1000, .next_update = 2000};
    /* Nothing yet; then a response, while nextUpdate has not passed. */
    assert_null(ocsp_shm_copy(shm, 0, 1500, &len, malloc, free));
    assert_int_equal(len, 0);
    assert_true(ocsp_shm_publish(shm, 0, &info, der, sizeof(der)));
    uint8_t *got = ocsp_shm_copy(shm, 0, 1500, &len, malloc, free);
    assert_non_null(got);
    assert_int_equal(len, sizeof(der));
    assert_memory_equal(got, der, sizeof(der));
    free(got);
    assert_null(ocsp_shm_copy(shm, 0, 2000, &len, malloc, free));
    assert_null(ocsp_shm_copy(shm, 1, 1500, &len, malloc, free));
    assert_null(ocsp_shm_copy(shm, 2, 1500, &len, malloc, free));
    /* A failure keeps the response; an oversize one is refused. */
    ocsp_shm_note_error(shm, 0, "timeout: the responder did not answer", 1600);
    struct ocsp_info out;
    assert_true(ocsp_shm_info(shm, 0, &out));
    assert_int_equal(out.state, OCSP_STATE_GOOD);
    assert_int_equal(out.len, sizeof(der));
    assert_string_equal(out.last_error, "timeout: the responder did not answer");
    assert_false(ocsp_shm_publish(shm, 0, &info, der, OCSP_RESP_MAX + 1));
    assert_false(ocsp_shm_info(shm, 2, &out));
    /* Cleared: nothing to staple any more. */
    struct ocsp_info none = {.state = OCSP_STATE_NONE};
    assert_true(ocsp_shm_publish(shm, 0, &none, NULL, 0));
    assert_null(ocsp_shm_copy(shm, 0, 1500, &len, malloc, free));
    assert_string_equal(ocsp_state_name(OCSP_STATE_REVOKED), "revoked");
    ocsp_shm_free(shm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_from_the_ca),
        cmocka_unit_test(test_delegated_responder_needs_ocsp_signing),
        cmocka_unit_test(test_wrong_signer),
        cmocka_unit_test(test_revoked_and_unknown),
        cmocka_unit_test(test_about_another_certificate),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_unsuccessful),
        cmocka_unit_test(test_request_names_the_certificate),
        cmocka_unit_test(test_url_and_issuer),
        cmocka_unit_test(test_shm_slots),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
