#include "tls/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>

void tls_name_format(X509_NAME *name, char *dst, size_t dst_len)
{
    dst[0] = '\0';
    if (name == NULL || dst_len == 0)
        return;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return;
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        int n = BIO_read(bio, dst, (int)(dst_len - 1));
        dst[n > 0 ? n : 0] = '\0';
    }
    BIO_free(bio);
}

static void hex_encode(const unsigned char *src, size_t len, char *dst, size_t dst_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len && o + 2 < dst_len; i++) {
        dst[o++] = hex[src[i] >> 4];
        dst[o++] = hex[src[i] & 15];
    }
    dst[o] = '\0';
}

static void client_cert_facts(X509 *cert, struct tls_info *info)
{
    tls_name_format(X509_get_subject_name(cert), info->client_subject,
                    sizeof(info->client_subject));
    tls_name_format(X509_get_issuer_name(cert), info->client_issuer, sizeof(info->client_issuer));
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, info->client_cn,
                              sizeof(info->client_cn));

    unsigned char serial[64];
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    int n = bn ? BN_bn2bin(bn, serial) : 0;
    if (n > 0 && (size_t)n <= sizeof(serial))
        hex_encode(serial, (size_t)n, info->client_serial, sizeof(info->client_serial));
    BN_free(bn);

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (X509_digest(cert, EVP_sha256(), md, &md_len) == 1)
        hex_encode(md, md_len, info->client_fingerprint, sizeof(info->client_fingerprint));
}

void tls_info_get(SSL *ssl, const struct tls_verdict *v, struct tls_info *info)
{
    memset(info, 0, sizeof(*info));
    snprintf(info->version, sizeof(info->version), "%s", SSL_get_version(ssl));
    const char *cipher = SSL_get_cipher_name(ssl);
    snprintf(info->cipher, sizeof(info->cipher), "%s", cipher ? cipher : "");
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    snprintf(info->sni, sizeof(info->sni), "%s", sni ? sni : "");
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn != NULL && alpn_len < sizeof(info->alpn)) {
        memcpy(info->alpn, alpn, alpn_len);
        info->alpn[alpn_len] = '\0';
    }
    info->resumed = SSL_session_reused(ssl) == 1;
    info->verify_result = SSL_get_verify_result(ssl);

    X509 *cert = SSL_get0_peer_certificate(ssl);
    info->client_verdict = "NONE";
    if (cert == NULL)
        return;
    info->has_client_cert = true;
    client_cert_facts(cert, info);
    int err = v != NULL && v->first_error != X509_V_OK ? v->first_error : (int)info->verify_result;
    info->client_verified = err == X509_V_OK;
    info->client_verdict = info->client_verified ? "SUCCESS" : tls_reason_from_verify(err);
}
