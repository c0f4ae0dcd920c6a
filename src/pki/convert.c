/* tollgate cert convert IN -o OUT.pem [--key-out KEY.pem] [--password-file F] [--json] */
#include "pki/internal.h"
#include "pki/pki.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "core/suggest.h"

#include "core/file.h"
#include "tls/tls.h"

/* Writes the contents of a memory BIO to path. */
static enum tg_status write_bio(const char *path, BIO *bio, mode_t mode, char *err, size_t err_len)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    if (len < 0) {
        snprintf(err, err_len, "%s: out of memory", path);
        return TG_E_NOMEM;
    }
    return tg_write_file_atomic(path, data, (size_t)len, mode, err, err_len);
}

/* OUT.pem -> OUT.key (also for .crt and .cer); anything else gets ".key" added. */
static void derive_key_path(const char *out, char *dst, size_t dst_len)
{
    static const char *const exts[] = {".pem", ".crt", ".cer"};
    size_t n = strlen(out);
    for (size_t i = 0; i < TG_ARRAY_LEN(exts); i++) {
        size_t e = strlen(exts[i]);
        if (n > e && strcmp(out + n - e, exts[i]) == 0) {
            snprintf(dst, dst_len, "%.*s.key", (int)(n - e), out);
            return;
        }
    }
    snprintf(dst, dst_len, "%s.key", out);
}

/* Whether a and b name the same existing file, or the same string. */
static bool same_file(const char *a, const char *b)
{
    struct stat sa;
    struct stat sb;
    if (strcmp(a, b) == 0)
        return true;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static void note(json_t *notes, const char *fmt, ...) TG_PRINTF(2, 3);

static void note(json_t *notes, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(notes, pki_json_str(msg));
}

/* The certificates in the order they are written: the chain, then the rest. */
static enum tg_status write_certs(const char *path, STACK_OF(X509) *certs,
                                  const struct pki_chain *c, json_t *briefs, char *err,
                                  size_t err_len)
{
    enum tg_status st = TG_E_NOMEM;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL)
        goto out;
    for (int i = 0; i < c->n + c->n_rest; i++) {
        X509 *x = sk_X509_value(certs, i < c->n ? c->order[i] : c->rest[i - c->n]);
        if (PEM_write_bio_X509(bio, x) != 1)
            goto out;
        json_array_append_new(briefs, pki_cert_brief(x, time(NULL)));
    }
    st = write_bio(path, bio, 0644, err, err_len);
out:
    if (st == TG_E_NOMEM)
        snprintf(err, err_len, "%s: out of memory", path);
    BIO_free(bio);
    return st;
}

static enum tg_status write_key(const char *path, const EVP_PKEY *key, char *err, size_t err_len)
{
    enum tg_status st = TG_E_NOMEM;
    BIO *bio = BIO_new(BIO_s_secmem());
    /* PKCS#8 ("BEGIN PRIVATE KEY"), unencrypted: what servers and cloud
     * load balancers take. */
    if (bio != NULL && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1)
        st = write_bio(path, bio, 0600, err, err_len);
    else
        snprintf(err, err_len, "%s: cannot encode the key", path);
    BIO_free(bio);
    return st;
}

enum tg_status pki_convert(const struct pki_convert_opts *o, json_t **report, char *err,
                           size_t err_len)
{
    char key_path[4096];
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    struct pki_chain chain = {0};
    json_t *res = NULL;
    *report = NULL;
    enum tg_status st = pki_read(o->in, o->password_file, &certs, &key, err, err_len);
    if (st != TG_OK)
        goto out;
    st = pki_chain_build(certs, key, &chain);
    res = json_object();
    json_t *briefs = json_array();
    json_t *notes = json_array();
    json_object_set_new(res, "certificates", briefs);
    json_object_set_new(res, "notes", notes);
    if (st != TG_OK || res == NULL || briefs == NULL || notes == NULL) {
        snprintf(err, err_len, "out of memory");
        st = TG_E_NOMEM;
        goto out;
    }
    st = TG_E_CONFIG;
    int n = sk_X509_num(certs);
    if (key != NULL && n > 0 && chain.key_match < 0) {
        snprintf(err, err_len,
                 "%s: the private key belongs to none of its %d certificate%s; nothing written",
                 o->in, n, n == 1 ? "" : "s");
        goto out;
    }
    const char *cert_out = n > 0 ? o->out : NULL;
    const char *key_out = NULL;
    if (key != NULL) {
        if (o->key_out != NULL)
            snprintf(key_path, sizeof(key_path), "%s", o->key_out);
        else if (n > 0)
            derive_key_path(o->out, key_path, sizeof(key_path));
        else
            snprintf(key_path, sizeof(key_path), "%s", o->out); /* a key alone */
        key_out = key_path;
    }
    if ((cert_out && same_file(cert_out, o->in)) || (key_out && same_file(key_out, o->in))) {
        snprintf(err, err_len, "%s: the output would replace the input; choose another name",
                 o->in);
        goto out;
    }
    if (cert_out && key_out && same_file(cert_out, key_out)) {
        snprintf(err, err_len, "%s: certificates and key need files of their own (--key-out)",
                 cert_out);
        goto out;
    }
    pki_json_set_str(res, "in", o->in);
    pki_json_set_str(res, "format", pki_file_format(o->in));
    pki_json_set_str(res, "out", cert_out);
    pki_json_set_str(res, "key_out", key_out);
    if (cert_out != NULL &&
        (st = write_certs(cert_out, certs, &chain, briefs, err, err_len)) != TG_OK)
        goto out;
    if (key_out != NULL && (st = write_key(key_out, key, err, err_len)) != TG_OK)
        goto out;
    if (key_out != NULL) {
        char desc[128];
        int bits = 0;
        bool is_weak = false;
        pki_key_describe(key, desc, sizeof(desc), &bits, &is_weak);
        pki_json_set_str(res, "key_type", desc);
    }
    if (!chain.is_in_order && !chain.is_bundle)
        note(notes,
             "the certificates of %s were out of order; %s has them leaf first, then each "
             "issuer",
             o->in, cert_out);
    if (chain.n_rest > 0 && !chain.is_bundle)
        note(notes, "%d certificate%s not part of the leaf's chain; written after it", chain.n_rest,
             chain.n_rest == 1 ? " is" : "s are");
    if (chain.n > 0 && !chain.is_bundle) {
        X509 *top = sk_X509_value(certs, chain.order[chain.n - 1]);
        char issuer[PKI_NAME_MAX];
        pki_issuer(top, issuer, sizeof(issuer));
        if (X509_self_signed(top, 0) != 1 && chain.n_rest > 0)
            note(notes, "the chain is incomplete: the issuer %s is not in %s", issuer, o->in);
        else if (X509_self_signed(top, 0) == 1 && chain.n > 1)
            note(notes, "the chain includes its self-signed root; clients already have it, so it "
                        "may be left out");
    }
    *report = res;
    res = NULL;
    st = TG_OK;
out:
    json_decref(res);
    pki_chain_fini(&chain);
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    ERR_clear_error();
    return st;
}

static const char *const convert_opts[] = {"-o",     "--out", "--key-out", "--password-file",
                                           "--json", "--help"};

static void usage(FILE *out)
{
    fputs("usage: tollgate cert convert IN -o OUT.pem [--key-out KEY.pem]\n"
          "                             [--password-file F] [--json]\n"
          "  Converts DER, PKCS#7 and PKCS#12 (also legacy RC2 ones) and encrypted PEM\n"
          "  keys to the PEM that tollgate and cloud load balancers take: OUT.pem has the\n"
          "  certificates leaf first, then each issuer; the key goes unencrypted, mode\n"
          "  0600, to its own file.\n"
          "\n"
          "options:\n"
          "  -o, --out        the certificates, PEM, leaf first\n"
          "  --key-out        the private key, PEM, unencrypted, mode 0600\n"
          "                   (default: OUT.key)\n"
          "  --password-file  file whose first line is the password of IN (asked on a\n"
          "                   terminal when missing)\n"
          "  --json           the result as JSON\n"
          "  -h, --help       this help\n"
          "\n"
          "examples:\n"
          "  tollgate cert convert site.pfx -o site.pem --key-out site.key \\\n"
          "      --password-file pass.txt\n"
          "  tollgate cert convert chain.p7b -o chain.pem\n"
          "  tollgate cert convert server.der -o server.pem\n"
          "\n"
          "exit codes: 0 written, 1 IN cannot be read or converted, 2 usage error.\n",
          out);
}

static void print_report(const json_t *r)
{
    size_t i;
    const json_t *v;
    const json_t *certs = json_object_get(r, "certificates");
    printf("read   %s (%s)\n", pki_json_get_str(r, "in", "?"), pki_json_get_str(r, "format", "?"));
    if (json_array_size(certs) > 0)
        printf("wrote  %s: %zu certificate%s, leaf first\n", pki_json_get_str(r, "out", "?"),
               json_array_size(certs), json_array_size(certs) == 1 ? "" : "s");
    json_array_foreach(certs, i, v)
        printf("         %zu %s (expires %s)\n", i + 1, pki_json_get_str(v, "subject", "?"),
               pki_json_get_str(v, "not_after", "?"));
    if (json_is_string(json_object_get(r, "key_out")))
        printf("wrote  %s: %s private key, unencrypted, mode 0600\n",
               pki_json_get_str(r, "key_out", "?"), pki_json_get_str(r, "key_type", "?"));
    json_array_foreach(json_object_get(r, "notes"), i, v)
        printf("note: %s\n", json_string_value(v));
}

int pki_cmd_convert(int argc, char **argv)
{
    struct pki_convert_opts o = {0};
    bool is_json = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m = 0;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            is_json = true;
        } else if ((m = pki_opt(argc, argv, &i, "-o", &v)) > 0 ||
                   (m == 0 && (m = pki_opt(argc, argv, &i, "--out", &v)) > 0)) {
            o.out = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--key-out", &v)) > 0) {
            o.key_out = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--password-file", &v)) > 0) {
            o.password_file = v;
        } else if (m < 0) {
            fprintf(stderr, "tollgate cert convert: %s needs a value\n", argv[i]);
            return 2;
        } else if ((argv[i][0] == '-' && argv[i][1] != '\0') || o.in != NULL) {
            return suggest_usage_error(stderr, "cert convert", argv[i], convert_opts,
                                       TG_ARRAY_LEN(convert_opts));
        } else {
            o.in = argv[i];
        }
    }
    if (o.in == NULL || o.out == NULL) {
        usage(stderr);
        return 2;
    }
    char err[1024];
    json_t *res = NULL;
    if (pki_convert(&o, &res, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate cert convert: %s\n", err);
        return 1;
    }
    if (is_json)
        pki_json_print(res);
    else
        print_report(res);
    json_decref(res);
    return 0;
}
