/*
 * The one place that turns a peer's certificate into identity facts. Every
 * value here is chosen by the peer: each is bounded before it is written,
 * and a certificate whose facts would not fit is refused at the handshake
 * (tls_cert_limits), so that a verified client's facts are never cut.
 */
#include "tls/tls.h"

#include "core/log.h"
#include "core/str.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>

/* RFC 4514 text with control characters escaped as \XX, other characters
 * as UTF-8 (BMPString and UniversalString converted). */
#define NAME_FLAGS  (XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB)
#define VALUE_FLAGS (ASN1_STRFLGS_RFC2253 & ~ASN1_STRFLGS_ESC_MSB)

/* The longest prefix of text[0, len) no longer than max that ends between
 * two characters: never inside a UTF-8 sequence, nor inside an RFC 4514
 * escape (a backslash and one character, or a backslash and two hex
 * digits), so that a cut value never ends in a lone backslash that would
 * escape whatever follows it. */
static size_t safe_cut(const char *text, size_t len, size_t max)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)text[i];
        size_t n = 1;
        if (c == '\\')
            n = i + 2 < len && isxdigit((unsigned char)text[i + 1]) &&
                        isxdigit((unsigned char)text[i + 2])
                    ? 3
                    : 2;
        else if (c >= 0xc0)
            n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
        if (i + n > max || i + n > len)
            break;
        i += n;
    }
    return i;
}

/* Copies what bio holds into dst, cut by safe_cut when it does not fit;
 * returns the full length. */
static size_t bio_take(BIO *bio, char *dst, size_t dst_len)
{
    char *mem = NULL;
    long total = BIO_get_mem_data(bio, &mem);
    size_t full = total > 0 ? (size_t)total : 0;
    size_t n = full < dst_len ? full : safe_cut(mem, full, dst_len - 1);
    if (n > 0)
        memcpy(dst, mem, n);
    dst[n] = '\0';
    return full;
}

size_t tls_name_format(X509_NAME *name, char *dst, size_t dst_len)
{
    size_t full = 0;
    if (dst_len == 0)
        return 0;
    dst[0] = '\0';
    if (name == NULL)
        return 0;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return 0;
    if (X509_NAME_print_ex(bio, name, 0, NAME_FLAGS) >= 0)
        full = bio_take(bio, dst, dst_len);
    BIO_free(bio);
    return full;
}

/* The first commonName of a name, escaped as in tls_name_format, so that an
 * embedded NUL ("admin\0.example") reads as "admin\00.example", never as
 * "admin". Returns the full length. */
static size_t name_cn_format(X509_NAME *name, char *dst, size_t dst_len)
{
    size_t full = 0;
    dst[0] = '\0';
    int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (i < 0)
        return 0;
    ASN1_STRING *v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        return 0;
    if (ASN1_STRING_print_ex(bio, v, VALUE_FLAGS) >= 0)
        full = bio_take(bio, dst, dst_len);
    BIO_free(bio);
    return full;
}

size_t tls_cert_cn(X509 *cert, char *dst, size_t dst_len)
{
    return name_cn_format(X509_get_subject_name(cert), dst, dst_len);
}

bool tls_cert_sha256(X509 *cert, uint8_t md[32])
{
    unsigned char buf[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(cert, EVP_sha256(), buf, &n) != 1 || n != 32)
        return false;
    memcpy(md, buf, 32);
    return true;
}

bool tls_cert_spki_sha256(X509 *cert, uint8_t md[32])
{
    unsigned char *der = NULL;
    unsigned char buf[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    bool is_ok =
        len > 0 && EVP_Digest(der, (size_t)len, buf, &n, EVP_sha256(), NULL) == 1 && n == 32;
    OPENSSL_free(der);
    if (is_ok)
        memcpy(md, buf, 32);
    return is_ok;
}

bool tls_cert_serial(X509 *cert, const uint8_t **mag, size_t *len)
{
    static const uint8_t zero[1] = {0};
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    if (serial == NULL || ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER)
        return false;
    int n = ASN1_STRING_length(serial);
    const uint8_t *p = ASN1_STRING_get0_data(serial);
    if (n < 0 || (n > 0 && p == NULL))
        return false;
    while (n > 0 && p[0] == 0) {
        p++;
        n--;
    }
    if (n > TLS_SERIAL_MAX)
        return false;
    *mag = n > 0 ? p : zero;
    *len = n > 0 ? (size_t)n : 1;
    return true;
}

GENERAL_NAMES *tls_cert_sans(X509 *cert)
{
    /* NULL as well for a certificate with two subjectAltName extensions. */
    return X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
}

bool tls_san_value(const GENERAL_NAMES *sans, int i, int type, const uint8_t **data, size_t *len)
{
    if (i < 0 || i >= TLS_SAN_MAX || i >= sk_GENERAL_NAME_num(sans))
        return false;
    const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
    if (g == NULL || g->type != type)
        return false;
    const ASN1_STRING *s;
    switch (type) {
    case GEN_DNS:
        s = g->d.dNSName;
        break;
    case GEN_EMAIL:
        s = g->d.rfc822Name;
        break;
    case GEN_URI:
        s = g->d.uniformResourceIdentifier;
        break;
    case GEN_IPADD:
        s = g->d.iPAddress;
        break;
    default:
        return false;
    }
    /* Nothing past ASN1_STRING_length is read: a NUL inside the string is
     * one of its bytes, not its end. */
    int n = s != NULL ? ASN1_STRING_length(s) : 0;
    const uint8_t *p = s != NULL ? ASN1_STRING_get0_data(s) : NULL;
    if (n <= 0 || p == NULL)
        return false;
    if (type == GEN_IPADD) {
        if (n != 4 && n != 16)
            return false;
    } else {
        for (int k = 0; k < n; k++)
            if (p[k] < 0x20 || p[k] > 0x7e)
                return false;
    }
    *data = p;
    *len = (size_t)n;
    return true;
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

int tls_cert_limits(X509 *cert)
{
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    if (serial == NULL || ASN1_STRING_length(serial) > TLS_SERIAL_MAX)
        return TLS_V_ERR_SERIAL_TOO_LONG;
    char probe[1];
    X509_NAME *subject = X509_get_subject_name(cert);
    if (tls_name_format(subject, probe, sizeof(probe)) > TLS_NAME_MAX ||
        tls_name_format(X509_get_issuer_name(cert), probe, sizeof(probe)) > TLS_NAME_MAX ||
        name_cn_format(subject, probe, sizeof(probe)) > TLS_CN_MAX)
        return TLS_V_ERR_NAME_TOO_LONG;
    return X509_V_OK;
}

void tls_cert_facts(X509 *cert, struct tls_info *info)
{
    X509_NAME *subject = X509_get_subject_name(cert);
    tls_name_format(subject, info->client_subject, sizeof(info->client_subject));
    tls_name_format(X509_get_issuer_name(cert), info->client_issuer, sizeof(info->client_issuer));
    name_cn_format(subject, info->client_cn, sizeof(info->client_cn));

    /* ASN1_INTEGER keeps the magnitude, big-endian, without sign padding.
     * A serial over RFC 5280's 20 octets is left out (and fails
     * verification, see tls_cert_limits). */
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    int n = serial != NULL ? ASN1_STRING_length(serial) : 0;
    info->client_serial[0] = '\0';
    if (n > 0 && n <= TLS_SERIAL_MAX) {
        size_t o = 0;
        if (ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER)
            info->client_serial[o++] = '-';
        hex_encode(ASN1_STRING_get0_data(serial), (size_t)n, info->client_serial + o,
                   sizeof(info->client_serial) - o);
    }

    uint8_t md[32];
    info->client_fingerprint[0] = '\0';
    if (tls_cert_sha256(cert, md))
        hex_encode(md, sizeof(md), info->client_fingerprint, sizeof(info->client_fingerprint));
}

void tls_info_clear(struct tls_info *info)
{
    /* Field by field: the name fields are 8 KiB that a request need not
     * zero when the first byte terminates them. */
    info->version[0] = info->cipher[0] = info->sni[0] = info->alpn[0] = '\0';
    info->resumed = info->has_client_cert = info->client_verified = false;
    info->client_verdict = "NONE";
    info->verify_result = X509_V_OK;
    info->client_subject[0] = info->client_issuer[0] = info->client_cn[0] = '\0';
    info->client_serial[0] = info->client_fingerprint[0] = '\0';
}

void tls_info_get(SSL *ssl, const struct tls_verdict *v, struct tls_info *info)
{
    tls_info_clear(info);
    /* Every request of a connection asks: no format to parse. */
    str_copy(info->version, sizeof(info->version), SSL_get_version(ssl));
    const char *cipher = SSL_get_cipher_name(ssl);
    str_copy(info->cipher, sizeof(info->cipher), cipher ? cipher : "");
    /* OpenSSL refuses a host_name over 255 bytes or with a NUL in it. */
    const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    str_copy(info->sni, sizeof(info->sni), sni ? sni : "");
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
    tls_cert_facts(cert, info);
    int err = v != NULL && v->first_error != X509_V_OK ? v->first_error : (int)info->verify_result;
    info->client_verified = err == X509_V_OK;
    info->client_verdict = info->client_verified ? "SUCCESS" : tls_reason_from_verify(err);
}

size_t tls_info_json(const struct tls_info *info, char *dst, size_t cap)
{
    /* JSON escaping at most triples a name (a C1 control, two bytes of
     * UTF-8, becomes \u0085) and makes six bytes of any other byte. */
    char sni[6 * sizeof(info->sni)];
    char subject[3 * TLS_NAME_MAX + 1], issuer[3 * TLS_NAME_MAX + 1];
    log_json_escape(sni, sizeof(sni), info->sni);
    log_json_escape(subject, sizeof(subject), info->client_subject);
    log_json_escape(issuer, sizeof(issuer), info->client_issuer);
    int n = snprintf(dst, cap,
                     "\"sni\":\"%s\",\"tls_version\":\"%s\",\"cipher\":\"%s\",\"resumed\":%s,"
                     "\"client_subject\":\"%s\",\"client_issuer\":\"%s\",\"client_serial\":\"%s\","
                     "\"client_fingerprint\":\"%s\",\"client_verify\":\"%s\"",
                     sni, info->version, info->cipher, info->resumed ? "true" : "false", subject,
                     issuer, info->client_serial, info->client_fingerprint,
                     info->client_verdict ? info->client_verdict : "NONE");
    if (n < 0 || cap == 0)
        return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}
