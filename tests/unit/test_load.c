/* tls_read_file, tls_load_certificate, tls_load_client_ca: every format and
 * every diagnostic. Test material is minted here with the OpenSSL API. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"
#include "unit_x509.h"
#include "unit_tmpdir.h"

#define DAY (24L * 3600)

static char dir[] = "/tmp/tg-test-load-XXXXXX";
static struct unit_pair root, inter, leaf, other;

/* A path in one of 32 rotating buffers, enough for any one test. */
static const char *path_of(const char *name)
{
    static char paths[32][512];
    static int next;
    char *p = paths[next++ % 32];
    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Writes certs (NULL-terminated) as PEM, then key when not NULL. */
static void write_pem(const char *path, X509 *const *certs, EVP_PKEY *key)
{
    BIO *b = BIO_new_file(path, "w");
    assert_non_null(b);
    for (; *certs != NULL; certs++)
        assert_int_equal(PEM_write_bio_X509(b, *certs), 1);
    if (key != NULL)
        assert_int_equal(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL), 1);
    BIO_free(b);
}

static void write_der_cert(const char *path, X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    assert_true(n > 0);
    write_bytes(path, der, (size_t)n);
    OPENSSL_free(der);
}

static PKCS7 *make_p7(X509 *const *certs)
{
    PKCS7 *p7 = PKCS7_new();
    assert_non_null(p7);
    assert_int_equal(PKCS7_set_type(p7, NID_pkcs7_signed), 1);
    assert_int_equal(PKCS7_content_new(p7, NID_pkcs7_data), 1);
    for (; *certs != NULL; certs++)
        assert_int_equal(PKCS7_add_certificate(p7, *certs), 1);
    return p7;
}

static void write_p12(const char *path, PKCS12 *p12)
{
    unsigned char *der = NULL;
    int n = i2d_PKCS12(p12, &der);
    assert_true(n > 0);
    write_bytes(path, der, (size_t)n);
    OPENSSL_free(der);
    PKCS12_free(p12);
}

static void result_reset(void);

static int setup(void **state)
{
    (void)state;
    umask(077); /* key files as an operator should write them; see test_load_key_mode */
    if (mkdtemp(dir) == NULL)
        return -1;
    root = unit_make_pair("Test Root", NULL, -DAY, 3650 * DAY, true);
    inter = unit_make_pair("Test Intermediate", &root, -DAY, 1825 * DAY, true);
    leaf = unit_make_pair("leaf.test", &inter, -DAY, 365 * DAY, false);
    other = unit_make_pair("other.test", NULL, -DAY, 365 * DAY, false);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unit_free_pair(&root);
    unit_free_pair(&inter);
    unit_free_pair(&leaf);
    unit_free_pair(&other);
    result_reset();
    return unit_rm_tree(dir);
}

/* ---- tls_read_file ---- */

struct result {
    enum tg_status st;
    STACK_OF(X509) *certs;
    EVP_PKEY *key;
    char err[256];
};

/* The last result; each read frees the one before, the group teardown the
 * last one. */
static struct result last;

static void result_reset(void)
{
    sk_X509_pop_free(last.certs, X509_free);
    EVP_PKEY_free(last.key);
    memset(&last, 0, sizeof(last));
}

static struct result *read_file(const char *path, const char *password)
{
    result_reset();
    last.st = tls_read_file(path, password, &last.certs, &last.key, last.err, sizeof(last.err));
    if (last.st != TG_OK) {
        assert_null(last.certs);
        assert_null(last.key);
    }
    return &last;
}

static void assert_read_fails(const char *path, const char *password, const char *err)
{
    struct result *res = read_file(path, password);
    assert_int_equal(res->st, TG_E_CONFIG);
    assert_string_equal(res->err, err);
}

static void assert_same_cert(X509 *a, X509 *b)
{
    assert_int_equal(X509_cmp(a, b), 0);
}

static void test_read_pem_chain(void **state)
{
    (void)state;
    X509 *chain[] = {leaf.cert, inter.cert, root.cert, NULL};
    write_pem(path_of("chain.pem"), chain, NULL);
    struct result *r = read_file(path_of("chain.pem"), NULL);
    assert_int_equal(r->st, TG_OK);
    assert_int_equal(sk_X509_num(r->certs), 3);
    assert_same_cert(sk_X509_value(r->certs, 0), leaf.cert);
    assert_same_cert(sk_X509_value(r->certs, 2), root.cert);
    assert_null(r->key);
}

static void test_read_pem_truncated(void **state)
{
    (void)state;
    X509 *chain[] = {leaf.cert, inter.cert, NULL};
    write_pem(path_of("cut.pem"), chain, NULL);
    FILE *f = fopen(path_of("cut.pem"), "rb");
    char buf[8192];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    write_bytes(path_of("cut.pem"), buf, n - 100);
    assert_read_fails(path_of("cut.pem"), NULL, "PEM block 2 is truncated or corrupt");
}

static void test_read_pem_cert_and_key(void **state)
{
    (void)state;
    X509 *chain[] = {leaf.cert, NULL};
    write_pem(path_of("both.pem"), chain, leaf.key);
    struct result *r = read_file(path_of("both.pem"), NULL);
    assert_int_equal(r->st, TG_OK);
    assert_int_equal(sk_X509_num(r->certs), 1);
    assert_non_null(r->key);
    assert_int_equal(EVP_PKEY_eq(r->key, leaf.key), 1);
}

static void test_read_pem_only_crl(void **state)
{
    (void)state;
    X509_CRL *crl = unit_make_crl(&root, NULL, -60, DAY, NULL);
    BIO *b = BIO_new_file(path_of("only.crl"), "w");
    PEM_write_bio_X509_CRL(b, crl);
    BIO_free(b);
    X509_CRL_free(crl);
    assert_read_fails(path_of("only.crl"), NULL,
                      "no certificate or private key among its PEM blocks");
}

static void test_read_der_cert(void **state)
{
    (void)state;
    write_der_cert(path_of("leaf.der"), leaf.cert);
    struct result *r = read_file(path_of("leaf.der"), NULL);
    assert_int_equal(r->st, TG_OK);
    assert_int_equal(sk_X509_num(r->certs), 1);
    assert_same_cert(sk_X509_value(r->certs, 0), leaf.cert);
}

static void test_read_der_truncated(void **state)
{
    (void)state;
    unsigned char *der = NULL;
    int n = i2d_X509(leaf.cert, &der);
    write_bytes(path_of("cut.der"), der, (size_t)n - 10);
    OPENSSL_free(der);
    char want[128];
    snprintf(want, sizeof(want), "truncated: its DER header announces %d bytes, the file has %d", n,
             n - 10);
    assert_read_fails(path_of("cut.der"), NULL, want);
}

static void test_read_der_key(void **state)
{
    (void)state;
    unsigned char *der = NULL;
    int n = i2d_PrivateKey(leaf.key, &der);
    assert_true(n > 0);
    write_bytes(path_of("leaf.key.der"), der, (size_t)n);
    OPENSSL_clear_free(der, (size_t)n);
    struct result *r = read_file(path_of("leaf.key.der"), NULL);
    assert_int_equal(r->st, TG_OK);
    assert_int_equal(sk_X509_num(r->certs), 0);
    assert_int_equal(EVP_PKEY_eq(r->key, leaf.key), 1);
}

static void test_read_garbage(void **state)
{
    (void)state;
    static const char junk[] = "this is not a certificate\n\x01\x02\x03";
    write_bytes(path_of("junk"), junk, sizeof(junk));
    assert_read_fails(path_of("junk"), NULL,
                      "not a certificate or key in any known format (PEM, DER, PKCS#7, PKCS#12)");
    write_bytes(path_of("empty"), "", 0);
    assert_read_fails(path_of("empty"), NULL, "empty file");
}

static void test_read_missing(void **state)
{
    (void)state;
    assert_read_fails(path_of("nope.pem"), NULL, "cannot open: No such file or directory");
    assert_read_fails(dir, NULL, "cannot open: not a regular file");
}

static void test_read_pkcs7(void **state)
{
    (void)state;
    X509 *chain[] = {leaf.cert, inter.cert, NULL};
    PKCS7 *p7 = make_p7(chain);
    BIO *b = BIO_new_file(path_of("chain.p7b"), "w");
    assert_int_equal(PEM_write_bio_PKCS7(b, p7), 1);
    BIO_free(b);
    unsigned char *der = NULL;
    int n = i2d_PKCS7(p7, &der);
    write_bytes(path_of("chain.p7c"), der, (size_t)n);
    OPENSSL_free(der);
    PKCS7_free(p7);

    struct result *r = read_file(path_of("chain.p7b"), NULL);
    assert_int_equal(r->st, TG_OK);
    assert_int_equal(sk_X509_num(r->certs), 2);
    r = read_file(path_of("chain.p7c"), NULL);
    assert_int_equal(r->st, TG_OK);
    assert_int_equal(sk_X509_num(r->certs), 2);
    assert_same_cert(sk_X509_value(r->certs, 1), inter.cert);

    /* The twin: a PKCS#7 type that holds no certificates. */
    p7 = PKCS7_new();
    PKCS7_set_type(p7, NID_pkcs7_data);
    b = BIO_new_file(path_of("data.p7"), "w");
    PEM_write_bio_PKCS7(b, p7);
    BIO_free(b);
    PKCS7_free(p7);
    assert_read_fails(path_of("data.p7"), NULL, "PKCS#7 data of a type that holds no certificates");
}

static void test_read_pkcs12(void **state)
{
    (void)state;
    STACK_OF(X509) *ca = sk_X509_new_null();
    sk_X509_push(ca, inter.cert);
    write_p12(path_of("leaf.p12"), PKCS12_create("secret", "leaf", leaf.key, leaf.cert, ca,
                                                 NID_aes_256_cbc, NID_aes_256_cbc, 2048, 2048, 0));
    sk_X509_free(ca);

    struct result *r = read_file(path_of("leaf.p12"), "secret");
    assert_int_equal(r->st, TG_OK);
    assert_int_equal(sk_X509_num(r->certs), 2);
    assert_int_equal(EVP_PKEY_eq(r->key, leaf.key), 1);
    assert_read_fails(path_of("leaf.p12"), "wrong", "wrong password");
    assert_read_fails(
        path_of("leaf.p12"), NULL,
        "the PKCS#12 file is protected by a password and none was given (set password_file)");
}

/* RC2-40 for the certificates and 3DES for the key, as OpenSSL 1.x and
 * many Windows and Java tools write it. Made in a separate library context
 * so that the default one has to load "legacy" by itself. */
static void test_read_pkcs12_legacy(void **state)
{
    (void)state;
    OSSL_LIB_CTX *lctx = OSSL_LIB_CTX_new();
    OSSL_PROVIDER *dflt = OSSL_PROVIDER_load(lctx, "default");
    OSSL_PROVIDER *legacy = OSSL_PROVIDER_load(lctx, "legacy");
    assert_non_null(legacy);
    STACK_OF(X509) *ca = sk_X509_new_null();
    sk_X509_push(ca, inter.cert);
    PKCS12 *p12 = PKCS12_create_ex("old", "leaf", leaf.key, leaf.cert, ca,
                                   NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
                                   NID_pbe_WithSHA1And40BitRC2_CBC, 2048, 2048, 0, lctx, NULL);
    assert_non_null(p12);
    write_p12(path_of("legacy.p12"), p12);
    sk_X509_free(ca);
    OSSL_PROVIDER_unload(legacy);
    OSSL_PROVIDER_unload(dflt);
    OSSL_LIB_CTX_free(lctx);

    assert_int_equal(OSSL_PROVIDER_available(NULL, "legacy"), 0);
    assert_read_fails(path_of("legacy.p12"), "wrong", "wrong password");
    struct result *r = read_file(path_of("legacy.p12"), "old");
    assert_int_equal(r->st, TG_OK);
    assert_int_equal(OSSL_PROVIDER_available(NULL, "legacy"), 1);
    assert_int_equal(sk_X509_num(r->certs), 2);
    assert_int_equal(EVP_PKEY_eq(r->key, leaf.key), 1);
}

static void test_read_encrypted_key(void **state)
{
    (void)state;
    /* PKCS#8 ("ENCRYPTED PRIVATE KEY") and traditional ("Proc-Type") forms. */
    BIO *b = BIO_new_file(path_of("p8.key"), "w");
    assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, leaf.key, EVP_aes_256_cbc(), NULL, 0, NULL,
                                                   (void *)"hunter2"),
                     1);
    BIO_free(b);
    b = BIO_new_file(path_of("trad.key"), "w");
    assert_int_equal(PEM_write_bio_PrivateKey_traditional(
                         b, leaf.key, EVP_aes_128_cbc(), (unsigned char *)"hunter2", 7, NULL, NULL),
                     1);
    BIO_free(b);
    unsigned char *der = NULL;
    b = BIO_new(BIO_s_mem());
    assert_int_equal(
        i2d_PKCS8PrivateKey_bio(b, leaf.key, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)"hunter2"),
        1);
    long n = BIO_get_mem_data(b, &der);
    write_bytes(path_of("p8.der"), der, (size_t)n);
    BIO_free(b);

    const char *files[] = {"p8.key", "trad.key", "p8.der"};
    for (size_t i = 0; i < 3; i++) {
        struct result *r = read_file(path_of(files[i]), "hunter2");
        assert_int_equal(r->st, TG_OK);
        assert_int_equal(EVP_PKEY_eq(r->key, leaf.key), 1);
        assert_read_fails(path_of(files[i]), "hunter3", "wrong password");
        assert_read_fails(
            path_of(files[i]), NULL,
            "the private key is encrypted and no password was given (set password_file)");
    }
}

static void test_read_crls(void **state)
{
    (void)state;
    X509_CRL *crl = unit_make_crl(&root, NULL, -60, DAY, NULL);
    unsigned char *der = NULL;
    int n = i2d_X509_CRL(crl, &der);
    write_bytes(path_of("root.crl.der"), der, (size_t)n);
    OPENSSL_free(der);
    X509_CRL_free(crl);
    STACK_OF(X509_CRL) *crls = NULL;
    char err[256];
    assert_int_equal(tls_read_crls(path_of("root.crl.der"), &crls, err, sizeof(err)), TG_OK);
    assert_int_equal(sk_X509_CRL_num(crls), 1);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);

    X509 *chain[] = {leaf.cert, NULL};
    write_pem(path_of("no-crl.pem"), chain, NULL);
    assert_int_equal(tls_read_crls(path_of("no-crl.pem"), &crls, err, sizeof(err)), TG_E_CONFIG);
    assert_null(crls);
    assert_string_equal(err, "no CRL among its PEM blocks");
}

/* ---- tls_load_certificate ---- */

static struct config cfg = {.path = "/etc/tollgate.yaml"};

static struct cfg_certificate entry(const char *cert, const char *key)
{
    struct cfg_certificate c = {
        .name = "site",
        .cert = (char *)cert,
        .key = (char *)key,
        .pos = {3, 3},
        .cert_pos = {3, 11},
        .key_pos = {3, 40},
        .password_file_pos = {4, 5},
    };
    return c;
}

/* The index of the one diagnostic whose text contains s; fails when there
 * is none. */
static size_t find_diag(const struct diag *d, const char *s)
{
    char line[2048];
    for (size_t i = 0; i < d->n; i++) {
        diag_format(d, i, line, sizeof(line));
        if (strstr(line, s) != NULL)
            return i;
    }
    for (size_t i = 0; i < d->n; i++) {
        diag_format(d, i, line, sizeof(line));
        print_message("diag: %s\n", line);
    }
    fail_msg("no diagnostic contains \"%s\"", s);
    return 0;
}

static void test_load_ok(void **state)
{
    (void)state;
    X509 *chain[] = {leaf.cert, inter.cert, NULL};
    X509 *none[] = {NULL};
    write_pem(path_of("site.crt"), chain, NULL);
    write_pem(path_of("site.key"), none, leaf.key);
    struct cfg_certificate c = entry(path_of("site.crt"), path_of("site.key"));
    struct tls_chain out;
    struct diag d;
    diag_init(&d);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_OK);
    assert_int_equal(d.n, 0);
    assert_same_cert(out.leaf, leaf.cert);
    assert_int_equal(sk_X509_num(out.chain), 1);
    assert_same_cert(sk_X509_value(out.chain, 0), inter.cert);
    assert_int_equal(EVP_PKEY_eq(out.key, leaf.key), 1);
    tls_chain_fini(&out);
    tls_chain_fini(&out); /* twice is harmless */
    diag_fini(&d);
}

static void test_load_key_mode(void **state)
{
    (void)state;
    X509 *chain[] = {leaf.cert, inter.cert, NULL};
    X509 *none[] = {NULL};
    write_pem(path_of("open.crt"), chain, NULL);
    write_pem(path_of("open.key"), none, leaf.key);
    struct cfg_certificate c = entry(path_of("open.crt"), path_of("open.key"));
    struct tls_chain out;
    struct diag d;

    /* 0600: nothing to say. */
    diag_init(&d);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_OK);
    assert_int_equal(d.n, 0);
    tls_chain_fini(&out);
    diag_fini(&d);

    /* 0644: loads, with a warning naming the file and its mode. */
    assert_int_equal(chmod(path_of("open.key"), 0644), 0);
    diag_init(&d);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_OK);
    assert_int_equal(d.n_warnings, 1);
    find_diag(&d, "open.key: private key file is readable by every local user (mode 0644); "
                  "chmod 600 it");
    tls_chain_fini(&out);
    diag_fini(&d);

    /* 0640: the group only. */
    assert_int_equal(chmod(path_of("open.key"), 0640), 0);
    diag_init(&d);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_OK);
    find_diag(&d, "readable by its group (mode 0640)");
    tls_chain_fini(&out);
    diag_fini(&d);
}

static void test_load_reversed_chain(void **state)
{
    (void)state;
    X509 *chain[] = {root.cert, inter.cert, leaf.cert, NULL};
    write_pem(path_of("rev.crt"), chain, leaf.key);
    struct cfg_certificate c = entry(path_of("rev.crt"), NULL);
    struct tls_chain out;
    struct diag d;
    diag_init(&d);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_OK);
    assert_int_equal(d.n_errors, 0);
    assert_int_equal(d.n_warnings, 1);
    size_t i = find_diag(&d, "certificates are out of order");
    assert_int_equal(d.v[i].level, DIAG_WARNING);
    assert_string_equal(d.v[i].key, "certificates.site.cert");
    assert_int_equal(d.v[i].line, 3);
    assert_int_equal(d.v[i].col, 11);
    assert_same_cert(out.leaf, leaf.cert);
    assert_int_equal(sk_X509_num(out.chain), 2);
    assert_same_cert(sk_X509_value(out.chain, 0), inter.cert);
    assert_same_cert(sk_X509_value(out.chain, 1), root.cert);
    tls_chain_fini(&out);
    diag_fini(&d);
}

static void test_load_mismatched_key(void **state)
{
    (void)state;
    X509 *chain[] = {leaf.cert, inter.cert, NULL};
    X509 *none[] = {NULL};
    write_pem(path_of("mm.crt"), chain, NULL);
    write_pem(path_of("other.key"), none, other.key);
    struct cfg_certificate c = entry(path_of("mm.crt"), path_of("other.key"));
    struct tls_chain out;
    struct diag d;
    diag_init(&d);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_E_CONFIG);
    assert_null(out.leaf);
    assert_null(out.chain);
    assert_null(out.key);
    assert_int_equal(d.n_errors, 1);
    size_t i = find_diag(&d, "key does not match certificate CN=leaf.test");
    assert_string_equal(d.v[i].key, "certificates.site.key");
    diag_fini(&d);
}

static void test_load_expired(void **state)
{
    (void)state;
    struct unit_pair old = unit_make_pair("old.test", &inter, -400 * DAY, -DAY, false);
    struct unit_pair soon = unit_make_pair("soon.test", &inter, -DAY, 10 * DAY + 3600, false);
    X509 *old_chain[] = {old.cert, inter.cert, NULL};
    X509 *soon_chain[] = {soon.cert, inter.cert, NULL};
    write_pem(path_of("old.crt"), old_chain, old.key);
    write_pem(path_of("soon.crt"), soon_chain, soon.key);
    struct tls_chain out;
    struct diag d;
    diag_init(&d);

    struct cfg_certificate c = entry(path_of("old.crt"), NULL);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_E_CONFIG);
    size_t i = find_diag(&d, "certificate CN=old.test expired on ");
    assert_int_equal(d.v[i].level, DIAG_ERROR);
    char when[64];
    tls_time_format(X509_get0_notAfter(old.cert), when, sizeof(when));
    assert_non_null(strstr(d.v[i].msg, when));

    /* The twin: still valid, but only for 10 days: a warning. */
    diag_fini(&d);
    diag_init(&d);
    c = entry(path_of("soon.crt"), NULL);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_OK);
    assert_int_equal(d.n_errors, 0);
    i = find_diag(&d, "certificate CN=soon.test expires in 10 days");
    assert_int_equal(d.v[i].level, DIAG_WARNING);
    tls_chain_fini(&out);
    diag_fini(&d);

    /* Not yet valid is an error too. */
    struct unit_pair later = unit_make_pair("later.test", &inter, 2 * DAY, 365 * DAY, false);
    X509 *later_chain[] = {later.cert, inter.cert, NULL};
    write_pem(path_of("later.crt"), later_chain, later.key);
    diag_init(&d);
    c = entry(path_of("later.crt"), NULL);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_E_CONFIG);
    find_diag(&d, "certificate CN=later.test is not valid before ");
    diag_fini(&d);
    unit_free_pair(&old);
    unit_free_pair(&soon);
    unit_free_pair(&later);
}

static void test_load_incomplete_chain(void **state)
{
    (void)state;
    struct tls_chain out;
    struct diag d;
    diag_init(&d);
    /* leaf + root: the intermediate between them is missing. */
    X509 *gap[] = {leaf.cert, root.cert, NULL};
    write_pem(path_of("gap.crt"), gap, leaf.key);
    struct cfg_certificate c = entry(path_of("gap.crt"), NULL);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_E_CONFIG);
    assert_int_equal(d.n_errors, 1);
    find_diag(&d, "chain is incomplete: the issuer of CN=leaf.test (CN=Test Intermediate) is "
                  "missing, so 1 certificate is left unlinked: CN=Test Root; add the missing "
                  "intermediate to the file");
    diag_fini(&d);

    /* leaf + intermediate without the root: normal, no warning. A stray
     * certificate is reported. */
    diag_init(&d);
    X509 *stray[] = {leaf.cert, inter.cert, root.cert, other.cert, NULL};
    write_pem(path_of("stray.crt"), stray, leaf.key);
    c = entry(path_of("stray.crt"), NULL);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_OK);
    assert_int_equal(d.n_warnings, 1);
    find_diag(&d, "1 certificate is not part of the chain and ignored: CN=other.test");
    assert_int_equal(sk_X509_num(out.chain), 2);
    tls_chain_fini(&out);
    diag_fini(&d);
}

static void test_load_password_file(void **state)
{
    (void)state;
    X509 *chain[] = {leaf.cert, inter.cert, NULL};
    write_pem(path_of("pw.crt"), chain, NULL);
    BIO *b = BIO_new_file(path_of("pw.key"), "w");
    PEM_write_bio_PKCS8PrivateKey(b, leaf.key, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)"s3cret");
    BIO_free(b);
    write_bytes(path_of("pw.txt"), "s3cret\r\n", 8);
    write_bytes(path_of("bad-pw.txt"), "s3cre7\n", 7);
    struct cfg_certificate c = entry(path_of("pw.crt"), path_of("pw.key"));
    struct tls_chain out;
    struct diag d;
    diag_init(&d);
    c.password_file = (char *)path_of("pw.txt");
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_OK);
    assert_int_equal(d.n, 0);
    tls_chain_fini(&out);

    c.password_file = (char *)path_of("bad-pw.txt");
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_E_CONFIG);
    size_t i = find_diag(&d, "pw.key: wrong password");
    assert_string_equal(d.v[i].key, "certificates.site.key");

    c.password_file = (char *)path_of("missing-pw.txt");
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_E_CONFIG);
    i = find_diag(&d, "missing-pw.txt: cannot open: No such file or directory");
    assert_string_equal(d.v[i].key, "certificates.site.password_file");
    assert_int_equal(d.v[i].line, 4);
    diag_fini(&d);
}

static void test_load_key_in_cert_file(void **state)
{
    (void)state;
    STACK_OF(X509) *ca = sk_X509_new_null();
    sk_X509_push(ca, inter.cert);
    write_p12(path_of("site.p12"),
              PKCS12_create("pw", "site", leaf.key, leaf.cert, ca, 0, 0, 0, 0, 0));
    sk_X509_free(ca);
    write_bytes(path_of("p12-pw.txt"), "pw", 2);
    struct cfg_certificate c = entry(path_of("site.p12"), NULL);
    c.password_file = (char *)path_of("p12-pw.txt");
    struct tls_chain out;
    struct diag d;
    diag_init(&d);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_OK);
    assert_int_equal(d.n, 0);
    assert_same_cert(out.leaf, leaf.cert);
    tls_chain_fini(&out);

    /* The twin: no key anywhere. */
    X509 *chain[] = {leaf.cert, NULL};
    write_pem(path_of("nokey.crt"), chain, NULL);
    c = entry(path_of("nokey.crt"), NULL);
    assert_int_equal(tls_load_certificate(&cfg, &c, &out, &d), TG_E_CONFIG);
    find_diag(&d, "nokey.crt: no private key in it; name the key file with key:");
    diag_fini(&d);
}

/* ---- tls_load_client_ca ---- */

static void write_crls(const char *path, X509_CRL *a, X509_CRL *b)
{
    BIO *bio = BIO_new_file(path, "w");
    PEM_write_bio_X509_CRL(bio, a);
    if (b != NULL)
        PEM_write_bio_X509_CRL(bio, b);
    BIO_free(bio);
    X509_CRL_free(a);
    X509_CRL_free(b);
}

static struct cfg_client_ca ca_entry(const char *ca, const char *crl)
{
    struct cfg_client_ca c = {
        .name = "partners",
        .ca = (char *)ca,
        .crl = (char *)crl,
        .pos = {7, 3},
        .ca_pos = {7, 15},
        .crl_pos = {7, 40},
    };
    return c;
}

static void test_client_ca_ok(void **state)
{
    (void)state;
    X509 *bundle[] = {inter.cert, root.cert, NULL};
    write_pem(path_of("bundle.crt"), bundle, NULL);
    write_crls(path_of("fresh.crl"), unit_make_crl(&inter, NULL, -60, 30 * DAY, NULL),
               unit_make_crl(&root, NULL, -60, 30 * DAY, NULL));
    struct cfg_client_ca ca = ca_entry(path_of("bundle.crt"), path_of("fresh.crl"));
    X509_STORE *store = NULL;
    STACK_OF(X509_NAME) *names = NULL;
    struct diag d;
    diag_init(&d);
    assert_int_equal(tls_load_client_ca(&cfg, &ca, &store, &names, &d), TG_OK);
    assert_int_equal(d.n, 0);
    assert_non_null(store);
    assert_int_equal(sk_X509_NAME_num(names), 2);
    assert_int_equal(X509_NAME_cmp(sk_X509_NAME_value(names, 1), X509_get_subject_name(root.cert)),
                     0);
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    assert_int_equal(sk_X509_OBJECT_num(objs), 4); /* 2 certificates, 2 CRLs */
    X509_STORE_free(store);
    sk_X509_NAME_pop_free(names, X509_NAME_free);

    /* The twin: a bundle without any certificate. */
    X509 *none[] = {NULL};
    write_pem(path_of("keyonly.pem"), none, other.key);
    ca = ca_entry(path_of("keyonly.pem"), NULL);
    assert_int_equal(tls_load_client_ca(&cfg, &ca, &store, &names, &d), TG_E_CONFIG);
    assert_null(store);
    assert_null(names);
    size_t i = find_diag(&d, "keyonly.pem: no certificate in it");
    assert_string_equal(d.v[i].key, "client_cas.partners.ca");
    diag_fini(&d);
}

static void test_client_ca_stale_crl(void **state)
{
    (void)state;
    X509 *bundle[] = {root.cert, NULL};
    write_pem(path_of("root.crt"), bundle, NULL);
    X509_CRL *stale = unit_make_crl(&root, NULL, -40 * DAY, -10 * DAY, NULL);
    char when[64];
    tls_time_format(X509_CRL_get0_nextUpdate(stale), when, sizeof(when));
    write_crls(path_of("stale.crl"), stale, NULL);
    struct cfg_client_ca ca = ca_entry(path_of("root.crt"), path_of("stale.crl"));
    X509_STORE *store = NULL;
    struct diag d;
    diag_init(&d);
    assert_int_equal(tls_load_client_ca(&cfg, &ca, &store, NULL, &d), TG_OK);
    assert_int_equal(d.n_errors, 0);
    assert_int_equal(d.n_warnings, 1);
    char want[128];
    snprintf(want, sizeof(want), "CRL of CN=Test Root is past its nextUpdate (%s)", when);
    size_t i = find_diag(&d, want);
    assert_string_equal(d.v[i].key, "client_cas.partners.crl");
    assert_int_equal(d.v[i].col, 40);
    X509_STORE_free(store);
    diag_fini(&d);

    /* A CRL that claims the root's name but was signed by another key. */
    struct unit_pair fake = unit_make_pair("Test Root", NULL, -DAY, DAY, true);
    write_crls(path_of("forged.crl"), unit_make_crl(&fake, NULL, -60, DAY, NULL), NULL);
    unit_free_pair(&fake);
    ca = ca_entry(path_of("root.crt"), path_of("forged.crl"));
    diag_init(&d);
    assert_int_equal(tls_load_client_ca(&cfg, &ca, NULL, NULL, &d), TG_OK);
    find_diag(&d, "the signature of the CRL of CN=Test Root does not verify");
    diag_fini(&d);

    /* The CRL file itself missing is an error. */
    ca = ca_entry(path_of("root.crt"), path_of("none.crl"));
    diag_init(&d);
    assert_int_equal(tls_load_client_ca(&cfg, &ca, NULL, NULL, &d), TG_E_CONFIG);
    find_diag(&d, "none.crl: cannot open: No such file or directory");
    diag_fini(&d);
}

static void test_config_check(void **state)
{
    (void)state;
    X509 *chain[] = {leaf.cert, inter.cert, NULL};
    write_pem(path_of("cc.crt"), chain, leaf.key);
    X509 *bundle[] = {root.cert, NULL};
    write_pem(path_of("cc-root.crt"), bundle, NULL);
    struct cfg_certificate certs[2] = {entry(path_of("cc.crt"), NULL),
                                       entry(path_of("absent.crt"), NULL)};
    certs[1].name = "gone";
    struct cfg_client_ca cas[1] = {ca_entry(path_of("cc-root.crt"), NULL)};
    struct config c = {.path = "t.yaml",
                       .certificates = certs,
                       .n_certificates = 2,
                       .client_cas = cas,
                       .n_client_cas = 1};
    struct diag d;
    diag_init(&d);
    tls_config_check(&c, &d);
    assert_int_equal(d.n_errors, 1);
    assert_int_equal(d.n_warnings, 0);
    char line[1024];
    diag_format(&d, 0, line, sizeof(line));
    char want[1024];
    snprintf(want, sizeof(want),
             "t.yaml:3:11: certificates.gone.cert: %s: cannot open: No such file or directory",
             path_of("absent.crt"));
    assert_string_equal(line, want);
    diag_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_pem_chain),
        cmocka_unit_test(test_read_pem_truncated),
        cmocka_unit_test(test_read_pem_cert_and_key),
        cmocka_unit_test(test_read_pem_only_crl),
        cmocka_unit_test(test_read_der_cert),
        cmocka_unit_test(test_read_der_truncated),
        cmocka_unit_test(test_read_der_key),
        cmocka_unit_test(test_read_garbage),
        cmocka_unit_test(test_read_missing),
        cmocka_unit_test(test_read_pkcs7),
        cmocka_unit_test(test_read_pkcs12),
        cmocka_unit_test(test_read_pkcs12_legacy),
        cmocka_unit_test(test_read_encrypted_key),
        cmocka_unit_test(test_read_crls),
        cmocka_unit_test(test_load_ok),
        cmocka_unit_test(test_load_key_mode),
        cmocka_unit_test(test_load_reversed_chain),
        cmocka_unit_test(test_load_mismatched_key),
        cmocka_unit_test(test_load_expired),
        cmocka_unit_test(test_load_incomplete_chain),
        cmocka_unit_test(test_load_password_file),
        cmocka_unit_test(test_load_key_in_cert_file),
        cmocka_unit_test(test_client_ca_ok),
        cmocka_unit_test(test_client_ca_stale_crl),
        cmocka_unit_test(test_config_check),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
