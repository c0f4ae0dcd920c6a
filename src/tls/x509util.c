/*
 * Reading X.509 files whatever their format (PEM, DER, PKCS#7, PKCS#12),
 * shared by the config loader (load.c) and the certificate tools.
 */
#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/decoder.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>

/* Large enough for any CA bundle in use; small enough to refuse a wrong path
 * such as a disk image. */
#define LOAD_MAX_FILE        (16u * 1024 * 1024)
#define LOAD_MAX_P12_NESTING 3

/* What one file yields while it is being read. */
struct reader {
    STACK_OF(X509) *certs;    /* owned until handed to the caller */
    EVP_PKEY *key;            /* owned until handed to the caller */
    STACK_OF(X509_CRL) *crls; /* owned; only when reading CRLs */
    const char *password;     /* borrowed; NULL when none was given */
    bool was_password_asked;  /* a decoder asked for the password */
};

static OSSL_PROVIDER *legacy_provider;

/* At exit, before OpenSSL's own cleanup (registered earlier, so run later),
 * so that leak checkers see a clean exit. */
static void legacy_provider_unload(void)
{
    OSSL_PROVIDER_unload(legacy_provider);
    legacy_provider = NULL;
}

/* Loads OpenSSL's "legacy" provider once, next to "default", for PKCS#12
 * files encrypted with RC2 or DES (older OpenSSL, Windows and Java tools
 * still write them). Returns true only on the call that loaded it, so that
 * the caller knows a retry can succeed. */
static bool legacy_provider_load(void)
{
    static bool is_tried;
    if (is_tried)
        return false;
    is_tried = true;
    /* retain_fallbacks = 1 keeps "default" available. */
    legacy_provider = OSSL_PROVIDER_try_load(NULL, "legacy", 1);
    if (legacy_provider == NULL)
        return false;
    atexit(legacy_provider_unload);
    return true;
}

static enum tg_status read_all(const char *path, unsigned char **data, size_t *len, char *err,
                               size_t err_len)
{
    enum tg_status st = TG_E_CONFIG;
    unsigned char *buf = NULL;
    size_t n = 0;
    struct stat sb = {0};
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is then
     * refused as not a regular file). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open: %s", strerror(errno));
        return TG_E_CONFIG;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, err_len, "cannot open: not a regular file");
        goto out;
    }
    if ((uint64_t)sb.st_size > LOAD_MAX_FILE) {
        snprintf(err, err_len, "file is too large (%lld bytes, limit %u)", (long long)sb.st_size,
                 LOAD_MAX_FILE);
        goto out;
    }
    buf = OPENSSL_malloc((size_t)sb.st_size + 1);
    if (buf == NULL) {
        snprintf(err, err_len, "out of memory");
        st = TG_E_NOMEM;
        goto out;
    }
    while (n < (size_t)sb.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)sb.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, err_len, "cannot read: %s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break; /* shrank while we read; use what is there */
        n += (size_t)r;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    buf = NULL;
    st = TG_OK;
out:
    OPENSSL_clear_free(buf, (size_t)sb.st_size + 1);
    close(fd);
    return st;
}

/* pem_password_cb: hands over the password and remembers that a decoder
 * needed one, so that a failure can be told apart from corrupt data. */
static int password_cb(char *buf, int size, int rwflag, void *u)
{
    struct reader *r = u;
    (void)rwflag;
    r->was_password_asked = true;
    if (r->password == NULL)
        return -1;
    size_t n = strlen(r->password);
    if (n > (size_t)size)
        return -1;
    memcpy(buf, r->password, n);
    return (int)n;
}

/* The reason a key did not decode once a decoder asked for the password. */
static void password_error(const struct reader *r, char *err, size_t err_len)
{
    if (r->password == NULL)
        snprintf(err, err_len,
                 "the private key is encrypted and no password was given (set password_file)");
    else
        snprintf(err, err_len, "wrong password");
}

static enum tg_status push_cert(struct reader *r, X509 *x, char *err, size_t err_len)
{
    if (sk_X509_push(r->certs, x) > 0)
        return TG_OK;
    X509_free(x);
    snprintf(err, err_len, "out of memory");
    return TG_E_NOMEM;
}

/* Adds the certificates of a PKCS#7 SignedData ("certs-only" bundle). */
static enum tg_status add_pkcs7(struct reader *r, const unsigned char *der, long len, char *err,
                                size_t err_len)
{
    enum tg_status st = TG_E_CONFIG;
    const unsigned char *p = der;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, len);
    if (p7 == NULL) {
        snprintf(err, err_len, "corrupt PKCS#7 data");
        return TG_E_CONFIG;
    }
    if (!PKCS7_type_is_signed(p7) || p7->d.sign == NULL) {
        snprintf(err, err_len, "PKCS#7 data of a type that holds no certificates");
        goto out;
    }
    STACK_OF(X509) *in = p7->d.sign->cert;
    for (int i = 0; i < sk_X509_num(in); i++) {
        X509 *x = sk_X509_value(in, i);
        X509_up_ref(x);
        st = push_cert(r, x, err, err_len);
        if (st != TG_OK)
            goto out;
    }
    st = TG_OK;
out:
    PKCS7_free(p7);
    return st;
}

static bool is_cert_block(const char *name)
{
    return strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0 ||
           strcmp(name, PEM_STRING_X509_TRUSTED) == 0;
}

static bool is_key_block(const char *name)
{
    size_t n = strlen(name);
    return n >= 11 && strcmp(name + n - 11, "PRIVATE KEY") == 0;
}

/* Decodes one PEM private key block, encrypted or not. The block is written
 * back as PEM into secure memory so that OpenSSL's own PEM key reader deals
 * with both PKCS#8 and traditional ("Proc-Type: 4,ENCRYPTED") encryption. */
static enum tg_status pem_key(struct reader *r, int index, const char *name, const char *header,
                              const unsigned char *der, long len, char *err, size_t err_len)
{
    enum tg_status st = TG_E_CONFIG;
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio == NULL || !PEM_write_bio(bio, name, header, der, len)) {
        snprintf(err, err_len, "out of memory");
        st = TG_E_NOMEM;
        goto out;
    }
    r->was_password_asked = false;
    r->key = PEM_read_bio_PrivateKey_ex(bio, NULL, password_cb, r, NULL, NULL);
    if (r->key != NULL)
        st = TG_OK;
    else if (r->was_password_asked)
        password_error(r, err, err_len);
    else
        snprintf(err, err_len, "PEM block %d (%s) is not a valid private key", index, name);
out:
    BIO_free(bio);
    return st;
}

static enum tg_status on_pem_block(struct reader *r, int index, const char *name,
                                   const char *header, const unsigned char *der, long len,
                                   char *err, size_t err_len)
{
    const unsigned char *p = der;
    if (r->crls != NULL) {
        if (strcmp(name, PEM_STRING_X509_CRL) != 0)
            return TG_OK;
        X509_CRL *crl = d2i_X509_CRL(NULL, &p, len);
        if (crl == NULL) {
            snprintf(err, err_len, "PEM block %d (%s) is not a valid CRL", index, name);
            return TG_E_CONFIG;
        }
        if (sk_X509_CRL_push(r->crls, crl) > 0)
            return TG_OK;
        X509_CRL_free(crl);
        snprintf(err, err_len, "out of memory");
        return TG_E_NOMEM;
    }
    if (is_cert_block(name)) {
        X509 *x = strcmp(name, PEM_STRING_X509_TRUSTED) == 0 ? d2i_X509_AUX(NULL, &p, len)
                                                             : d2i_X509(NULL, &p, len);
        if (x == NULL) {
            snprintf(err, err_len, "PEM block %d (%s) is not a valid certificate", index, name);
            return TG_E_CONFIG;
        }
        return push_cert(r, x, err, err_len);
    }
    if (strcmp(name, PEM_STRING_PKCS7) == 0 || strcmp(name, PEM_STRING_PKCS7_SIGNED) == 0)
        return add_pkcs7(r, der, len, err, err_len);
    if (is_key_block(name) && r->key == NULL)
        return pem_key(r, index, name, header, der, len, err, err_len);
    return TG_OK; /* parameters, requests, public keys, further keys: not ours */
}

/* Reads every PEM block in turn. Text between blocks is allowed (openssl
 * writes "subject=" lines there); a block that does not end is an error. */
static enum tg_status read_pem(struct reader *r, const unsigned char *data, size_t len, char *err,
                               size_t err_len)
{
    enum tg_status st = TG_OK;
    BIO *bio = BIO_new_mem_buf(data, (int)len);
    if (bio == NULL) {
        snprintf(err, err_len, "out of memory");
        return TG_E_NOMEM;
    }
    for (int index = 1; st == TG_OK; index++) {
        char *name = NULL;
        char *header = NULL;
        unsigned char *der = NULL;
        long der_len = 0;
        if (!PEM_read_bio(bio, &name, &header, &der, &der_len)) {
            unsigned long e = ERR_peek_last_error();
            if (ERR_GET_LIB(e) != ERR_LIB_PEM || ERR_GET_REASON(e) != PEM_R_NO_START_LINE) {
                snprintf(err, err_len, "PEM block %d is truncated or corrupt", index);
                st = TG_E_CONFIG;
            }
            break;
        }
        st = on_pem_block(r, index, name, header, der, der_len, err, err_len);
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_clear_free(der, (size_t)der_len);
    }
    BIO_free(bio);
    return st;
}

/* Unpacks the bags of one PKCS#12 SafeContents, recursing into nested ones. */
static enum tg_status p12_bags(struct reader *r, const STACK_OF(PKCS12_SAFEBAG) *bags,
                               const char *pass, int depth, char *err, size_t err_len)
{
    if (depth > LOAD_MAX_P12_NESTING) {
        snprintf(err, err_len, "PKCS#12 bags are nested too deeply");
        return TG_E_CONFIG;
    }
    int pass_len = pass ? (int)strlen(pass) : 0;
    for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++) {
        const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, i);
        enum tg_status st = TG_OK;
        switch (PKCS12_SAFEBAG_get_nid(bag)) {
        case NID_keyBag:
            if (r->key == NULL)
                r->key = EVP_PKCS82PKEY(PKCS12_SAFEBAG_get0_p8inf(bag));
            if (r->key == NULL) {
                snprintf(err, err_len, "corrupt private key in the PKCS#12 file");
                return TG_E_CONFIG;
            }
            break;
        case NID_pkcs8ShroudedKeyBag: {
            if (r->key != NULL)
                break;
            PKCS8_PRIV_KEY_INFO *p8 = PKCS12_decrypt_skey(bag, pass, pass_len);
            if (p8 == NULL && legacy_provider_load())
                p8 = PKCS12_decrypt_skey(bag, pass, pass_len);
            r->key = p8 ? EVP_PKCS82PKEY(p8) : NULL;
            PKCS8_PRIV_KEY_INFO_free(p8);
            if (r->key == NULL) {
                snprintf(err, err_len, "cannot decrypt the private key in the PKCS#12 file");
                return TG_E_CONFIG;
            }
            break;
        }
        case NID_certBag:
            if (PKCS12_SAFEBAG_get_bag_nid(bag) == NID_x509Certificate) {
                X509 *x = PKCS12_SAFEBAG_get1_cert(bag);
                if (x == NULL) {
                    snprintf(err, err_len, "corrupt certificate in the PKCS#12 file");
                    return TG_E_CONFIG;
                }
                st = push_cert(r, x, err, err_len);
            }
            break;
        case NID_safeContentsBag:
            st = p12_bags(r, PKCS12_SAFEBAG_get0_safes(bag), pass, depth + 1, err, err_len);
            break;
        default:
            break; /* CRL and secret bags are not ours */
        }
        if (st != TG_OK)
            return st;
    }
    return TG_OK;
}

/* Opens an encrypted SafeContents, loading the legacy provider when the
 * cipher is one that "default" lacks (RC2-40, the old OpenSSL default). */
static STACK_OF(PKCS12_SAFEBAG) *p12_decrypt(PKCS7 *p7, const char *pass, char *err, size_t err_len)
{
    int pass_len = pass ? (int)strlen(pass) : 0;
    STACK_OF(PKCS12_SAFEBAG) *bags = PKCS12_unpack_p7encdata(p7, pass, pass_len);
    if (bags == NULL && legacy_provider_load())
        bags = PKCS12_unpack_p7encdata(p7, pass, pass_len);
    if (bags == NULL) {
        char alg[80] = "unknown";
        if (p7->d.encrypted != NULL && p7->d.encrypted->enc_data != NULL)
            OBJ_obj2txt(alg, sizeof(alg), p7->d.encrypted->enc_data->algorithm->algorithm, 0);
        snprintf(err, err_len, "cannot decrypt the PKCS#12 contents (algorithm %s)", alg);
    }
    return bags;
}

static enum tg_status read_p12(struct reader *r, PKCS12 *p12, char *err, size_t err_len)
{
    enum tg_status st = TG_E_CONFIG;
    STACK_OF(PKCS7) *safes = NULL;
    /* PKCS#12 tells "" (two zero bytes) and no password (nothing) apart; a
     * file saved "without a password" may use either. */
    const char *pass = r->password ? r->password : "";
    if (PKCS12_mac_present(p12) && !PKCS12_verify_mac(p12, pass, -1)) {
        if (r->password != NULL) {
            snprintf(err, err_len, "wrong password");
            return TG_E_CONFIG;
        }
        if (!PKCS12_verify_mac(p12, NULL, 0)) {
            snprintf(err, err_len,
                     "the PKCS#12 file is protected by a password and none was given "
                     "(set password_file)");
            return TG_E_CONFIG;
        }
        pass = NULL;
    }
    safes = PKCS12_unpack_authsafes(p12);
    if (safes == NULL) {
        snprintf(err, err_len, "corrupt PKCS#12 contents");
        return TG_E_CONFIG;
    }
    for (int i = 0; i < sk_PKCS7_num(safes); i++) {
        PKCS7 *p7 = sk_PKCS7_value(safes, i);
        STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
        if (PKCS7_type_is_data(p7))
            bags = PKCS12_unpack_p7data(p7);
        else if (PKCS7_type_is_encrypted(p7))
            bags = p12_decrypt(p7, pass, err, err_len);
        else
            continue; /* public-key-protected contents: not supported, skip */
        if (bags == NULL) {
            if (PKCS7_type_is_data(p7))
                snprintf(err, err_len, "corrupt PKCS#12 contents");
            goto out;
        }
        st = p12_bags(r, bags, pass, 0, err, err_len);
        sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
        if (st != TG_OK)
            goto out;
    }
    st = TG_OK;
out:
    sk_PKCS7_pop_free(safes, PKCS7_free);
    return st;
}

/* The total length a DER SEQUENCE announces in its header, when it has a
 * definite one, so that a cut file is reported as such. */
static bool der_announced_len(const unsigned char *d, size_t n, size_t *total)
{
    if (n < 2 || d[0] != 0x30)
        return false;
    size_t hdr = 2;
    size_t len = d[1];
    if (len & 0x80) {
        size_t k = len & 0x7f;
        if (k == 0 || k > 4 || n < 2 + k)
            return false;
        len = 0;
        for (size_t i = 0; i < k; i++)
            len = len << 8 | d[2 + i];
        hdr += k;
    }
    *total = hdr + len;
    return true;
}

static bool der_truncated(const unsigned char *data, size_t len, char *err, size_t err_len)
{
    size_t total = 0;
    if (!der_announced_len(data, len, &total) || total <= len)
        return false;
    snprintf(err, err_len, "truncated: its DER header announces %zu bytes, the file has %zu", total,
             len);
    return true;
}

/* A DER private key: PKCS#8 (encrypted or not) or a traditional one. */
static enum tg_status der_key(struct reader *r, const unsigned char *data, size_t len, char *err,
                              size_t err_len)
{
    OSSL_DECODER_CTX *dctx =
        OSSL_DECODER_CTX_new_for_pkey(&r->key, "DER", NULL, NULL, EVP_PKEY_KEYPAIR, NULL, NULL);
    if (dctx == NULL) {
        snprintf(err, err_len, "out of memory");
        return TG_E_NOMEM;
    }
    r->was_password_asked = false;
    OSSL_DECODER_CTX_set_pem_password_cb(dctx, password_cb, r);
    const unsigned char *p = data;
    size_t left = len;
    int ok = OSSL_DECODER_from_data(dctx, &p, &left);
    OSSL_DECODER_CTX_free(dctx);
    if (ok && r->key != NULL)
        return TG_OK;
    EVP_PKEY_free(r->key);
    r->key = NULL;
    if (r->was_password_asked) {
        password_error(r, err, err_len);
        return TG_E_CONFIG;
    }
    return TG_E_AGAIN; /* not a key: let the caller say so */
}

/* Tries each binary format in turn: certificate, PKCS#12, PKCS#7, key. */
static enum tg_status read_der(struct reader *r, const unsigned char *data, size_t len, char *err,
                               size_t err_len)
{
    if (der_truncated(data, len, err, err_len))
        return TG_E_CONFIG;
    const unsigned char *p = data;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (x != NULL)
        return push_cert(r, x, err, err_len);
    p = data;
    PKCS12 *p12 = d2i_PKCS12(NULL, &p, (long)len);
    if (p12 != NULL) {
        enum tg_status st = read_p12(r, p12, err, err_len);
        PKCS12_free(p12);
        return st;
    }
    p = data;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)len);
    if (p7 != NULL) {
        PKCS7_free(p7);
        return add_pkcs7(r, data, (long)len, err, err_len);
    }
    enum tg_status st = der_key(r, data, len, err, err_len);
    if (st != TG_E_AGAIN)
        return st;
    snprintf(err, err_len,
             "not a certificate or key in any known format (PEM, DER, PKCS#7, PKCS#12)");
    return TG_E_CONFIG;
}

enum tg_status tls_read_file(const char *path, const char *password, STACK_OF(X509) **certs,
                             EVP_PKEY **key, char *err, size_t err_len)
{
    struct reader r = {.password = password};
    unsigned char *data = NULL;
    size_t len = 0;
    *certs = NULL;
    *key = NULL;
    err[0] = '\0';
    /* Failed attempts at one format leave errors behind; the caller gets
     * err instead, so the queue is restored as it was. */
    ERR_set_mark();
    enum tg_status st = read_all(path, &data, &len, err, err_len);
    if (st != TG_OK)
        goto out;
    st = TG_E_CONFIG;
    if (len == 0) {
        snprintf(err, err_len, "empty file");
        goto out;
    }
    r.certs = sk_X509_new_null();
    if (r.certs == NULL) {
        snprintf(err, err_len, "out of memory");
        st = TG_E_NOMEM;
        goto out;
    }
    if (memmem(data, len, "-----BEGIN ", 11) != NULL) {
        st = read_pem(&r, data, len, err, err_len);
        if (st == TG_OK && sk_X509_num(r.certs) == 0 && r.key == NULL) {
            snprintf(err, err_len, "no certificate or private key among its PEM blocks");
            st = TG_E_CONFIG;
        }
    } else {
        st = read_der(&r, data, len, err, err_len);
    }
    if (st != TG_OK)
        goto out;
    *certs = r.certs;
    *key = r.key;
    r.certs = NULL;
    r.key = NULL;
out:
    sk_X509_pop_free(r.certs, X509_free);
    EVP_PKEY_free(r.key);
    OPENSSL_clear_free(data, len + 1);
    ERR_pop_to_mark();
    return st;
}

enum tg_status tls_read_crls(const char *path, STACK_OF(X509_CRL) **crls, char *err, size_t err_len)
{
    struct reader r = {0};
    unsigned char *data = NULL;
    size_t len = 0;
    *crls = NULL;
    err[0] = '\0';
    ERR_set_mark();
    enum tg_status st = read_all(path, &data, &len, err, err_len);
    if (st != TG_OK)
        goto out;
    st = TG_E_NOMEM;
    r.crls = sk_X509_CRL_new_null();
    if (r.crls == NULL) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    st = TG_E_CONFIG;
    if (len == 0) {
        snprintf(err, err_len, "empty file");
        goto out;
    }
    if (memmem(data, len, "-----BEGIN ", 11) != NULL) {
        st = read_pem(&r, data, len, err, err_len);
        if (st == TG_OK && sk_X509_CRL_num(r.crls) == 0) {
            snprintf(err, err_len, "no CRL among its PEM blocks");
            st = TG_E_CONFIG;
        }
    } else if (!der_truncated(data, len, err, err_len)) {
        const unsigned char *p = data;
        X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)len);
        if (crl == NULL)
            snprintf(err, err_len, "not a CRL in PEM or DER format");
        else if (sk_X509_CRL_push(r.crls, crl) <= 0)
            X509_CRL_free(crl);
        else
            st = TG_OK;
    }
    if (st != TG_OK)
        goto out;
    *crls = r.crls;
    r.crls = NULL;
out:
    sk_X509_CRL_pop_free(r.crls, X509_CRL_free);
    OPENSSL_clear_free(data, len + 1);
    ERR_pop_to_mark();
    return st;
}

enum tg_status tls_read_password_file(const char *path, char *dst, size_t dst_len, char *err,
                                      size_t err_len)
{
    unsigned char *data = NULL;
    size_t len = 0;
    err[0] = '\0';
    enum tg_status st = read_all(path, &data, &len, err, err_len);
    if (st != TG_OK)
        return st;
    size_t n = 0;
    while (n < len && data[n] != '\n')
        n++;
    if (n > 0 && data[n - 1] == '\r')
        n--;
    if (n >= dst_len) {
        snprintf(err, err_len, "the password is longer than %zu bytes", dst_len - 1);
        st = TG_E_CONFIG;
    } else {
        memcpy(dst, data, n);
        dst[n] = '\0';
    }
    OPENSSL_clear_free(data, len + 1);
    return st;
}

void tls_time_format(const ASN1_TIME *t, char *dst, size_t dst_len)
{
    struct tm tm;
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm) ||
        strftime(dst, dst_len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(dst, dst_len, "(invalid date)");
}
