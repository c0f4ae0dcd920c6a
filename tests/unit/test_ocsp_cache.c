/* The per-worker OCSP cache of client certificates (src/tls/ocsp_cache.c):
 * what is put is found until it expires, a full cache drops its oldest
 * entry, and a key is (issuer, serial, sign) exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls/tls.h"

#define NOW 1700000000

static struct tls_cert_ref key(unsigned issuer, unsigned serial)
{
    struct tls_cert_ref r;
    memset(&r, 0, sizeof(r));
    memset(r.issuer, (int)issuer, TLS_DIGEST_LEN);
    r.serial_len = 3;
    r.serial[0] = (uint8_t)(serial >> 16);
    r.serial[1] = (uint8_t)(serial >> 8);
    r.serial[2] = (uint8_t)serial;
    return r;
}

static void test_put_then_get(void **state)
{
    (void)state;
    struct tls_ocsp_cache *c = tls_ocsp_cache_new(8);
    enum tls_ocsp_verdict v;
    struct tls_cert_ref a = key(1, 7), b = key(1, 8);
    assert_non_null(c);
    assert_false(tls_ocsp_cache_get(c, &a, NOW, &v));
    tls_ocsp_cache_put(c, &a, TLS_OCSP_V_REVOKED, NOW + 60);
    assert_true(tls_ocsp_cache_get(c, &a, NOW, &v));
    assert_int_equal(v, TLS_OCSP_V_REVOKED);
    /* Rejecting twins: another serial, another issuer, the negative twin. */
    assert_false(tls_ocsp_cache_get(c, &b, NOW, &v));
    struct tls_cert_ref other = key(2, 7), neg = a;
    neg.is_serial_negative = true;
    assert_false(tls_ocsp_cache_get(c, &other, NOW, &v));
    assert_false(tls_ocsp_cache_get(c, &neg, NOW, &v));
    /* Written again: the new verdict replaces the old one. */
    tls_ocsp_cache_put(c, &a, TLS_OCSP_V_GOOD, NOW + 60);
    assert_true(tls_ocsp_cache_get(c, &a, NOW, &v));
    assert_int_equal(v, TLS_OCSP_V_GOOD);
    assert_int_equal(tls_ocsp_cache_len(c), 1);
    tls_ocsp_cache_free(c);
    tls_ocsp_cache_free(NULL);
}

static void test_expiry(void **state)
{
    (void)state;
    struct tls_ocsp_cache *c = tls_ocsp_cache_new(4);
    enum tls_ocsp_verdict v;
    struct tls_cert_ref a = key(1, 1);
    struct tls_ocsp_facts f = {
        .status = TLS_OCSP_GOOD, .this_update = NOW - 10, .next_update = NOW + 30};
    tls_ocsp_cache_put(c, &a, TLS_OCSP_V_GOOD, tls_ocsp_cache_until(&f, NOW));
    assert_true(tls_ocsp_cache_get(c, &a, NOW + 29, &v));
    /* At nextUpdate it is no longer believed, and it is gone. */
    assert_false(tls_ocsp_cache_get(c, &a, NOW + 30, &v));
    assert_int_equal(tls_ocsp_cache_len(c), 0);
    assert_false(tls_ocsp_cache_get(c, &a, NOW, &v));
    /* Without nextUpdate: the bounded maximum age. */
    f.next_update = 0;
    assert_int_equal(tls_ocsp_cache_until(&f, NOW), NOW + TLS_OCSP_CACHE_MAX_AGE);
    tls_ocsp_cache_free(c);
}

static void test_bound_drops_oldest(void **state)
{
    (void)state;
    enum { CAP = 16 };
    struct tls_ocsp_cache *c = tls_ocsp_cache_new(CAP);
    enum tls_ocsp_verdict v;
    for (unsigned i = 0; i < CAP; i++) {
        struct tls_cert_ref k = key(3, i);
        tls_ocsp_cache_put(c, &k, TLS_OCSP_V_GOOD, NOW + 100);
    }
    assert_int_equal(tls_ocsp_cache_len(c), CAP);
    /* Entry 0 written again becomes the newest: entry 1 is now the oldest. */
    struct tls_cert_ref k0 = key(3, 0);
    tls_ocsp_cache_put(c, &k0, TLS_OCSP_V_REVOKED, NOW + 100);
    struct tls_cert_ref extra = key(3, 1000);
    tls_ocsp_cache_put(c, &extra, TLS_OCSP_V_GOOD, NOW + 100);
    assert_int_equal(tls_ocsp_cache_len(c), CAP);
    struct tls_cert_ref k1 = key(3, 1);
    assert_false(tls_ocsp_cache_get(c, &k1, NOW, &v));
    assert_true(tls_ocsp_cache_get(c, &k0, NOW, &v));
    assert_int_equal(v, TLS_OCSP_V_REVOKED);
    assert_true(tls_ocsp_cache_get(c, &extra, NOW, &v));
    /* Many more than it holds: never more than CAP, the newest all there. */
    for (unsigned i = 0; i < 10 * CAP; i++) {
        struct tls_cert_ref k = key(4, i);
        tls_ocsp_cache_put(c, &k, TLS_OCSP_V_GOOD, NOW + 100);
    }
    assert_int_equal(tls_ocsp_cache_len(c), CAP);
    for (unsigned i = 9 * CAP; i < 10 * CAP; i++) {
        struct tls_cert_ref k = key(4, i);
        assert_true(tls_ocsp_cache_get(c, &k, NOW, &v));
    }
    struct tls_cert_ref gone = key(4, 9 * CAP - 1);
    assert_false(tls_ocsp_cache_get(c, &gone, NOW, &v));
    tls_ocsp_cache_free(c);
    assert_null(tls_ocsp_cache_new(0));
}

/* The key of a real certificate is what the facts of a session carry. */
static void test_cert_ref_of(void **state)
{
    (void)state;
    X509 *x = X509_new();
    struct tls_cert_ref r;
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 0x1234);
    assert_true(tls_cert_ref_of(x, &r));
    assert_int_equal(r.serial_len, 2);
    assert_int_equal(r.serial[0], 0x12);
    assert_int_equal(r.serial[1], 0x34);
    /* Rejecting twin: a serial longer than a reference holds. */
    uint8_t big[TLS_FACTS_SERIAL_MAX + 1];
    memset(big, 0x11, sizeof(big));
    ASN1_STRING_set(X509_get_serialNumber(x), big, sizeof(big));
    assert_false(tls_cert_ref_of(x, &r));
    X509_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_then_get),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_bound_drops_oldest),
        cmocka_unit_test(test_cert_ref_of),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
