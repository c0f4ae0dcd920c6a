/* Minting certificates in unit tests: what test_*.c files share. Include
 * after <cmocka.h>. */
#ifndef TG_TESTS_UNIT_X509_H
#define TG_TESTS_UNIT_X509_H

#include <arpa/inet.h>
#include <string.h>

#include <openssl/x509v3.h>

/* Adds extension nid with its openssl.cnf text value to x, issued by
 * signer (x itself when self-signed); fails the test when it cannot. */
static inline void unit_add_ext(X509 *x, X509 *signer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, signer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(e);
    assert_int_equal(X509_add_ext(x, e, -1), 1);
    X509_EXTENSION_free(e);
}

/* Appends a subjectAltName entry to sans: for GEN_DNS, GEN_EMAIL and
 * GEN_URI len bytes of text (any bytes: a NUL or a control character
 * too), for GEN_IPADD len octets (any count); fails the test when it
 * cannot. */
static inline void unit_san_add(GENERAL_NAMES *sans, int type, const void *data, size_t len)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_STRING *s = type == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    assert_non_null(g);
    assert_non_null(s);
    assert_int_equal(ASN1_STRING_set(s, data, (int)len), 1);
    GENERAL_NAME_set0_value(g, type, s);
    assert_true(sk_GENERAL_NAME_push(sans, g) > 0);
}

/* unit_san_add for a NUL-terminated text entry. */
static inline void unit_san_text(GENERAL_NAMES *sans, int type, const char *text)
{
    unit_san_add(sans, type, text, strlen(text));
}

/* unit_san_add for an IPv4 or IPv6 address in text form. */
static inline void unit_san_ip(GENERAL_NAMES *sans, const char *text)
{
    unsigned char a[16];
    int family = strchr(text, ':') != NULL ? AF_INET6 : AF_INET;
    assert_int_equal(inet_pton(family, text, a), 1);
    unit_san_add(sans, GEN_IPADD, a, family == AF_INET6 ? 16 : 4);
}

/* Adds sans to x as its subjectAltName extension (sans stays the
 * caller's). */
static inline void unit_add_sans(X509 *x, GENERAL_NAMES *sans)
{
    assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, sans, 0, X509V3_ADD_DEFAULT), 1);
}

#endif
