/* tollgate cert match --cert C --key K [--password-file F] [--json] */
#include "pki/internal.h"
#include "pki/pki.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "core/suggest.h"

#include "tls/tls.h"

enum tg_status pki_match(const char *cert_path, const char *key_path, const char *password_file,
                         json_t **out, char *err, size_t err_len)
{
    char buf[PKI_NAME_MAX];
    char cert_desc[128];
    char key_desc[128];
    char cert_fp[PKI_FP_MAX];
    char key_fp[PKI_FP_MAX];
    char msg[1024];
    int bits = 0;
    bool is_weak = false;
    STACK_OF(X509) *certs = NULL;
    STACK_OF(X509) *key_certs = NULL;
    EVP_PKEY *cert_key = NULL;
    EVP_PKEY *key = NULL;
    json_t *res = NULL;
    *out = NULL;
    enum tg_status st = pki_read(cert_path, password_file, &certs, &cert_key, err, err_len);
    if (st != TG_OK)
        goto out;
    st = pki_read(key_path, password_file, &key_certs, &key, err, err_len);
    if (st != TG_OK)
        goto out;
    st = TG_E_CONFIG;
    if (sk_X509_num(certs) == 0) {
        snprintf(err, err_len, "%s: no certificate in it (--cert)", cert_path);
        goto out;
    }
    if (key == NULL) {
        snprintf(err, err_len, "%s: no private key in it (--key)", key_path);
        goto out;
    }
    int matched = -1;
    for (int i = 0; i < sk_X509_num(certs) && matched < 0; i++)
        if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(certs, i)), key) == 1)
            matched = i;
    X509 *first = sk_X509_value(certs, 0);
    pki_key_describe(X509_get0_pubkey(first), cert_desc, sizeof(cert_desc), &bits, &is_weak);
    pki_key_describe(key, key_desc, sizeof(key_desc), &bits, &is_weak);
    pki_spki_fingerprint(X509_get0_pubkey(first), cert_fp, sizeof(cert_fp));
    pki_spki_fingerprint(key, key_fp, sizeof(key_fp));
    pki_subject(first, buf, sizeof(buf));
    if (matched == 0) {
        snprintf(msg, sizeof(msg), "the key belongs to the certificate %s", buf);
    } else if (matched > 0) {
        char other[PKI_NAME_MAX];
        pki_subject(sk_X509_value(certs, matched), other, sizeof(other));
        snprintf(msg, sizeof(msg),
                 "the key belongs to certificate %d of %s (%s), which is not the first one; "
                 "servers send the first certificate as theirs, so put the leaf first "
                 "(tollgate cert convert does)",
                 matched + 1, cert_path, other);
    } else if (strcmp(cert_desc, key_desc) != 0) {
        snprintf(msg, sizeof(msg),
                 "the key does not belong to %s: the key is %s, the certificate's key is %s", buf,
                 key_desc, cert_desc);
    } else {
        snprintf(msg, sizeof(msg),
                 "the key does not belong to %s (nor to any other certificate in %s): both are "
                 "%s but the public keys differ",
                 buf, cert_path, key_desc);
    }
    st = TG_E_NOMEM;
    res = json_object();
    if (res == NULL) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    pki_json_set_str(res, "cert", cert_path);
    pki_json_set_str(res, "key", key_path);
    json_object_set_new(res, "certificate", pki_cert_brief(first, time(NULL)));
    pki_json_set_str(res, "cert_key_type", cert_desc);
    pki_json_set_str(res, "cert_spki_sha256", cert_fp);
    pki_json_set_str(res, "key_type", key_desc);
    pki_json_set_str(res, "key_spki_sha256", key_fp);
    json_object_set_new(res, "match", json_boolean(matched >= 0));
    json_object_set_new(res, "matched_index",
                        matched >= 0 ? json_integer(matched + 1) : json_null());
    pki_json_set_str(res, "message", msg);
    *out = res;
    res = NULL;
    st = TG_OK;
out:
    json_decref(res);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cert_key);
    sk_X509_pop_free(key_certs, X509_free);
    sk_X509_pop_free(certs, X509_free);
    ERR_clear_error();
    return st;
}

static const char *const match_opts[] = {"--cert", "--key", "--password-file", "--json", "--help"};

static void usage(FILE *out)
{
    fputs("usage: tollgate cert match --cert C --key K [--password-file F] [--json]\n"
          "  Whether the private key in K belongs to the certificate in C (RSA, ECDSA,\n"
          "  EdDSA; any file format).\n"
          "\n"
          "options:\n"
          "  --cert           the certificate (the first one of the file)\n"
          "  --key            the private key\n"
          "  --password-file  file whose first line is the password of an encrypted key\n"
          "  --json           the result as JSON\n"
          "  -h, --help       this help\n"
          "\n"
          "examples:\n"
          "  tollgate cert match --cert pki/server-ecdsa.crt --key pki/server-ecdsa.key\n"
          "  tollgate cert match --cert site.p12 --key site.p12 --password-file pass.txt\n"
          "\n"
          "exit codes: 0 the key belongs to the certificate, 1 it does not (or a file\n"
          "cannot be read), 2 usage error.\n",
          out);
}

int pki_cmd_match(int argc, char **argv)
{
    const char *cert = NULL;
    const char *key = NULL;
    const char *password_file = NULL;
    bool is_json = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m = 0;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            is_json = true;
        } else if ((m = pki_opt(argc, argv, &i, "--cert", &v)) > 0) {
            cert = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--key", &v)) > 0) {
            key = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--password-file", &v)) > 0) {
            password_file = v;
        } else if (m < 0) {
            fprintf(stderr, "tollgate cert match: %s needs a value\n", argv[i]);
            return 2;
        } else {
            return suggest_usage_error(stderr, "cert match", argv[i], match_opts,
                                       TG_ARRAY_LEN(match_opts));
        }
    }
    if (cert == NULL || key == NULL) {
        usage(stderr);
        return 2;
    }
    char err[1024];
    json_t *res = NULL;
    if (pki_match(cert, key, password_file, &res, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate cert match: %s\n", err);
        return 1;
    }
    bool is_match = json_is_true(json_object_get(res, "match"));
    if (is_json) {
        pki_json_print(res);
    } else {
        printf("certificate  %s (%s)\n",
               pki_json_get_str(json_object_get(res, "certificate"), "subject", "?"), cert);
        printf("  public key %s, SPKI SHA-256 %s\n", pki_json_get_str(res, "cert_key_type", "?"),
               pki_json_get_str(res, "cert_spki_sha256", "?"));
        printf("key          %s\n", key);
        printf("  key        %s, SPKI SHA-256 %s\n", pki_json_get_str(res, "key_type", "?"),
               pki_json_get_str(res, "key_spki_sha256", "?"));
        printf("result: %s: %s\n", is_match ? "MATCH" : "MISMATCH",
               pki_json_get_str(res, "message", ""));
    }
    json_decref(res);
    return is_match ? 0 : 1;
}
