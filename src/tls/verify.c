#include "tls/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>

void tls_ctx_set_verify_level(SSL_CTX *ctx)
{
    X509_VERIFY_PARAM_set_auth_level(SSL_CTX_get0_param(ctx), TLS_VERIFY_AUTH_LEVEL);
}

const char *tls_reason_from_verify(int e)
{
    switch (e) {
    case X509_V_OK:
        return "none";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "cert_expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "cert_not_yet_valid";
    case X509_V_ERR_CERT_REVOKED:
        return "cert_revoked";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return "self_signed";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
        return "unknown_ca";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL:
    case X509_V_ERR_CA_MD_TOO_WEAK:
        return "bad_signature";
    case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE:
        return "wrong_purpose";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
        return "chain_too_long";
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return "crl_expired";
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
        return "crl_missing";
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return "crl_expired";
    case TLS_V_ERR_SERIAL_TOO_LONG:
        return "serial_too_long";
    case TLS_V_ERR_NAME_TOO_LONG:
        return "name_too_long";
    case TLS_V_ERR_OCSP_UNAVAILABLE:
        return "ocsp_unavailable";
    case TLS_V_ERR_NOT_ALLOWED:
        return "not_allowed";
    default:
        return "tls_error";
    }
}

const char *tls_reason_from_ssl_error(unsigned long err)
{
    if (ERR_GET_LIB(err) != ERR_LIB_SSL)
        return NULL;
    switch (ERR_GET_REASON(err)) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return "no_client_cert";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return "protocol_version";
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_NO_CIPHERS_AVAILABLE:
        return "no_shared_cipher";
    case SSL_R_CALLBACK_FAILED:
        return NULL; /* the SNI callback: its own verdict says why */
    default:
        return NULL;
    }
}

const char *tls_reason_from_handshake(SSL *ssl, const struct tls_verdict *v, char *detail,
                                      size_t detail_len)
{
    const char *reason = NULL;
    unsigned long first = 0;
    unsigned long e;
    detail[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        if (first == 0) {
            first = e;
            ERR_error_string_n(e, detail, detail_len);
        }
        if (reason == NULL)
            reason = tls_reason_from_ssl_error(e);
    }
    if (v != NULL && v->sni_fail != NULL)
        return v->sni_fail;
    /* A certificate that failed verification says more than the alert. */
    if (v != NULL && v->first_error != X509_V_OK)
        return tls_reason_from_verify(v->first_error);
    if (reason == NULL && ssl != NULL) {
        long vr = SSL_get_verify_result(ssl);
        if (vr != X509_V_OK)
            reason = tls_reason_from_verify((int)vr);
    }
    return reason ? reason : "tls_error";
}
