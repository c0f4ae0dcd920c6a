/* Minting certificates in unit tests: what test_*.c files share. Include
 * after <cmocka.h>. */
#ifndef TG_TESTS_UNIT_X509_H
#define TG_TESTS_UNIT_X509_H

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

#endif
