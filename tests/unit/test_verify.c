/* tls_reason_from_verify (src/tls/verify.c): X509_V_ERR_* to DESIGN.md rejection reasons. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/x509_vfy.h>

#include "tls/tls.h"

static const struct {
    int err;
    const char *reason;
} mapped[] = {
    {X509_V_ERR_CERT_HAS_EXPIRED, "cert_expired"},
    {X509_V_ERR_CERT_NOT_YET_VALID, "cert_not_yet_valid"},
    {X509_V_ERR_CERT_REVOKED, "cert_revoked"},
    {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, "unknown_ca"},
    {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, "unknown_ca"},
    {X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, "unknown_ca"},
    {X509_V_ERR_CERT_UNTRUSTED, "unknown_ca"},
    {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, "self_signed"},
    {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, "self_signed"},
    {X509_V_ERR_CERT_SIGNATURE_FAILURE, "bad_signature"},
    {X509_V_ERR_CRL_SIGNATURE_FAILURE, "bad_signature"},
    {X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE, "bad_signature"},
    /* Too weak for TLS_VERIFY_AUTH_LEVEL: SHA-1, RSA under 2048 bits. */
    {X509_V_ERR_CA_MD_TOO_WEAK, "bad_signature"},
    {X509_V_ERR_EE_KEY_TOO_SMALL, "bad_signature"},
    {X509_V_ERR_CA_KEY_TOO_SMALL, "bad_signature"},
    {X509_V_ERR_INVALID_PURPOSE, "wrong_purpose"},
    {X509_V_ERR_CERT_CHAIN_TOO_LONG, "chain_too_long"},
    {X509_V_ERR_PATH_LENGTH_EXCEEDED, "chain_too_long"},
    {X509_V_ERR_CRL_HAS_EXPIRED, "crl_expired"},
    {X509_V_ERR_UNABLE_TO_GET_CRL, "crl_missing"},
    {X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER, "crl_missing"},
    {TLS_V_ERR_SERIAL_TOO_LONG, "serial_too_long"},
    {TLS_V_ERR_NAME_TOO_LONG, "name_too_long"},
    {TLS_V_ERR_OCSP_UNAVAILABLE, "ocsp_unavailable"},
};

static void test_mapped_codes(void **state)
{
    (void)state;
    for (size_t i = 0; i < TG_ARRAY_LEN(mapped); i++) {
        const char *got = tls_reason_from_verify(mapped[i].err);
        assert_non_null(got);
        if (strcmp(got, mapped[i].reason) != 0)
            fail_msg("X509_V_ERR %d (%s): got \"%s\", want \"%s\"", mapped[i].err,
                     X509_verify_cert_error_string(mapped[i].err), got, mapped[i].reason);
    }
}

/* The verification level stays at 2 when the context's security level is
 * dropped for old protocol versions, in either order; the twin: without
 * it, verification follows the context (0). */
static void test_verify_level_survives_security_level_0(void **state)
{
    (void)state;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    SSL_CTX_set_security_level(ctx, 0);
    assert_int_equal(X509_VERIFY_PARAM_get_auth_level(SSL_CTX_get0_param(ctx)), -1);
    tls_ctx_set_verify_level(ctx);
    SSL_CTX_set_security_level(ctx, 0);
    assert_int_equal(X509_VERIFY_PARAM_get_auth_level(SSL_CTX_get0_param(ctx)),
                     TLS_VERIFY_AUTH_LEVEL);
    SSL *ssl = SSL_new(ctx);
    assert_non_null(ssl);
    assert_int_equal(SSL_get_security_level(ssl), 0);
    assert_int_equal(X509_VERIFY_PARAM_get_auth_level(SSL_get0_param(ssl)), 2);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

/* Codes with no reason of their own fall back to the generic one. */
static void test_unmapped_codes(void **state)
{
    (void)state;
    static const int unmapped[] = {
        X509_V_ERR_UNSPECIFIED,
        X509_V_ERR_OUT_OF_MEM,
        X509_V_ERR_HOSTNAME_MISMATCH,
        X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD,
        X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION,
        -1,
        99999,
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(unmapped); i++) {
        const char *got = tls_reason_from_verify(unmapped[i]);
        assert_non_null(got);
        if (strcmp(got, "tls_error") != 0)
            fail_msg("X509_V_ERR %d: got \"%s\", want \"tls_error\"", unmapped[i], got);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mapped_codes),
        cmocka_unit_test(test_verify_level_survives_security_level_0),
        cmocka_unit_test(test_unmapped_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
