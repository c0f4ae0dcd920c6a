/* Minting certificates in unit tests: what test_*.c files share. Include
 * after <cmocka.h>. */
#ifndef TG_TESTS_UNIT_X509_H
#define TG_TESTS_UNIT_X509_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>

#include <openssl/evp.h>
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

/* A certificate and its key. */
struct unit_pair {
    X509 *cert;
    EVP_PKEY *key;
};

/* A certificate for key, signed by issuer (self-signed when NULL), valid from
 * now + from to now + to (seconds), with basic constraints, subject and
 * authority key identifiers; serials count up from 1 in each test file. */
static inline X509 *unit_make_cert(const char *cn, EVP_PKEY *key, const struct unit_pair *issuer,
                                   long from, long to, bool is_ca)
{
    static long serial = 1;
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer->cert) : name);
    X509_gmtime_adj(X509_getm_notBefore(x), from);
    X509_gmtime_adj(X509_getm_notAfter(x), to);
    X509_set_pubkey(x, key);
    X509 *signer = issuer ? issuer->cert : x;
    unit_add_ext(x, signer, NID_basic_constraints,
                 is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    unit_add_ext(x, signer, NID_subject_key_identifier, "hash");
    unit_add_ext(x, signer, NID_authority_key_identifier, "keyid:always");
    assert_true(X509_sign(x, issuer ? issuer->key : key, EVP_sha256()) > 0);
    return x;
}

/* A new P-256 key and its certificate (unit_make_cert). */
static inline struct unit_pair unit_make_pair(const char *cn, const struct unit_pair *issuer,
                                              long from, long to, bool is_ca)
{
    struct unit_pair p;
    p.key = EVP_EC_gen("P-256");
    assert_non_null(p.key);
    p.cert = unit_make_cert(cn, p.key, issuer, from, to, is_ca);
    return p;
}

static inline void unit_free_pair(struct unit_pair *p)
{
    X509_free(p->cert);
    EVP_PKEY_free(p->key);
    p->cert = NULL;
    p->key = NULL;
}

/* A CRL named for issuer's subject and signed with key (issuer's own when
 * NULL), in date from now + last to now + next (seconds), revoking gone
 * when not NULL. */
static inline X509_CRL *unit_make_crl(const struct unit_pair *issuer, EVP_PKEY *key, long last,
                                      long next, const X509 *gone)
{
    X509_CRL *crl = X509_CRL_new();
    assert_non_null(crl);
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(issuer->cert));
    ASN1_TIME *t = X509_gmtime_adj(NULL, last);
    X509_CRL_set1_lastUpdate(crl, t);
    X509_gmtime_adj(t, next);
    X509_CRL_set1_nextUpdate(crl, t);
    if (gone != NULL) {
        X509_REVOKED *r = X509_REVOKED_new();
        assert_non_null(r);
        X509_REVOKED_set_serialNumber(r, (ASN1_INTEGER *)X509_get0_serialNumber(gone));
        X509_gmtime_adj(t, -60);
        X509_REVOKED_set_revocationDate(r, t);
        assert_int_equal(X509_CRL_add0_revoked(crl, r), 1);
        X509_CRL_sort(crl);
    }
    ASN1_TIME_free(t);
    assert_true(X509_CRL_sign(crl, key != NULL ? key : issuer->key, EVP_sha256()) > 0);
    return crl;
}

#endif
