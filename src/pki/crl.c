/*
 * The CRLs of the development PKI, built with OpenSSL's API: shared by
 * `pki init` (the first ones) and `pki revoke` (each one after).
 */
#include "pki/internal.h"

#include <stdbool.h>

#include <openssl/bn.h>
#include <openssl/x509v3.h>

#define PKI_CRL_HOUR 3600L
#define PKI_CRL_DAY  (24 * PKI_CRL_HOUR)

X509_REVOKED *pki_crl_entry(const ASN1_INTEGER *serial, const ASN1_TIME *when, int reason)
{
    X509_REVOKED *rev = X509_REVOKED_new();
    ASN1_ENUMERATED *code = NULL;
    bool ok = rev != NULL && X509_REVOKED_set_serialNumber(rev, (ASN1_INTEGER *)serial) &&
              X509_REVOKED_set_revocationDate(rev, (ASN1_TIME *)when);
    /* RFC 5280 §5.3.1: unspecified (0) SHOULD be absent. */
    if (ok && reason > 0) {
        code = ASN1_ENUMERATED_new();
        ok = code != NULL && ASN1_ENUMERATED_set(code, reason) &&
             X509_REVOKED_add1_ext_i2d(rev, NID_crl_reason, code, 0, 0);
    }
    ASN1_ENUMERATED_free(code);
    if (!ok) {
        X509_REVOKED_free(rev);
        rev = NULL;
    }
    return rev;
}

X509_CRL *pki_crl_make(const struct pki_crl_spec *s)
{
    time_t now = s->now;
    X509_CRL *crl = X509_CRL_new();
    ASN1_TIME *last = X509_time_adj_ex(NULL, 0, -PKI_CRL_HOUR, &now);
    ASN1_TIME *next = X509_time_adj_ex(NULL, 0, s->days * PKI_CRL_DAY - PKI_CRL_HOUR, &now);
    ASN1_INTEGER *number = BN_to_ASN1_INTEGER(s->number, NULL);
    X509_EXTENSION *aki = NULL;
    X509V3_CTX ctx;
    bool ok = crl != NULL && last != NULL && next != NULL && number != NULL &&
              X509_CRL_set_version(crl, X509_CRL_VERSION_2) &&
              X509_CRL_set_issuer_name(crl, X509_get_subject_name(s->issuer)) &&
              X509_CRL_set1_lastUpdate(crl, last) && X509_CRL_set1_nextUpdate(crl, next) &&
              X509_CRL_add1_ext_i2d(crl, NID_crl_number, number, 0, 0);
    for (int i = 0; ok && i < sk_X509_REVOKED_num(s->entries); i++) {
        X509_REVOKED *copy =
            ASN1_item_dup(ASN1_ITEM_rptr(X509_REVOKED), sk_X509_REVOKED_value(s->entries, i));
        ok = copy != NULL && X509_CRL_add0_revoked(crl, copy);
        if (!ok)
            X509_REVOKED_free(copy);
    }
    if (ok) {
        X509V3_set_ctx(&ctx, s->issuer, NULL, NULL, crl, 0);
        aki = X509V3_EXT_conf_nid(NULL, &ctx, NID_authority_key_identifier, "keyid:always");
        ok = aki != NULL && X509_CRL_add_ext(crl, aki, -1) && X509_CRL_sort(crl) &&
             X509_CRL_sign(crl, s->key, EVP_sha256()) > 0;
    }
    X509_EXTENSION_free(aki);
    ASN1_INTEGER_free(number);
    ASN1_TIME_free(next);
    ASN1_TIME_free(last);
    if (!ok) {
        X509_CRL_free(crl);
        crl = NULL;
    }
    return crl;
}
