/* The certificate tools of src/pki: inspect, verify, match, convert and
 * probe, against a PKI from pki_init plus bad inputs minted here. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "pki/internal.h"
#include "pki/pki.h"
#include "tls/tls.h"

#define DAY (24L * 3600)

static char dir[] = "/tmp/tg-test-certtools-XXXXXX";
static char pki[600];
static char foreign[600];
static X509 *inter;
static EVP_PKEY *inter_key;
static X509 *root;

/* A path in one of 32 rotating buffers, enough for any one test. */
static const char *path_of(const char *base, const char *name)
{
    static char paths[32][800];
    static int next;
    char *p = paths[next++ % 32];
    snprintf(p, sizeof(paths[0]), "%s/%s", base, name);
    return p;
}

static const char *tmp(const char *name)
{
    return path_of(dir, name);
}

static const char *pk(const char *name)
{
    return path_of(pki, name);
}

static X509 *read_cert(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    assert_non_null(b);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *read_key(const char *path, const char *pass)
{
    BIO *b = BIO_new_file(path, "r");
    assert_non_null(b);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)pass);
    BIO_free(b);
    return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

struct mint {
    const char *cn;
    EVP_PKEY *key;        /* the subject's key */
    X509 *issuer;         /* NULL: self-signed */
    EVP_PKEY *issuer_key; /* NULL: self-signed */
    long from, to;        /* validity, seconds from now */
    const char *eku;      /* NULL: serverAuth and clientAuth */
    const char *san;      /* NULL: DNS:localhost */
    const EVP_MD *md;     /* NULL: SHA-256 */
};

static X509 *mint(const struct mint *m)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    unsigned char serial[8];
    assert_int_equal(RAND_bytes(serial, sizeof(serial)), 1);
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_set_version(x, X509_VERSION_3);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)m->cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, m->issuer ? X509_get_subject_name(m->issuer) : name);
    X509_NAME_free(name);
    X509_gmtime_adj(X509_getm_notBefore(x), m->from);
    X509_gmtime_adj(X509_getm_notAfter(x), m->to);
    X509_set_pubkey(x, m->key);
    add_ext(x, m->issuer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, m->issuer, NID_ext_key_usage, m->eku ? m->eku : "serverAuth,clientAuth");
    add_ext(x, m->issuer, NID_subject_alt_name, m->san ? m->san : "DNS:localhost");
    add_ext(x, m->issuer, NID_authority_key_identifier, "keyid");
    EVP_PKEY *signer = m->issuer_key ? m->issuer_key : m->key;
    bool is_ed = EVP_PKEY_get_base_id(signer) == EVP_PKEY_ED25519;
    assert_true(X509_sign(x, signer, is_ed ? NULL : m->md ? m->md : EVP_sha256()) > 0);
    return x;
}

static void write_certs(const char *path, X509 *a, X509 *b, X509 *c)
{
    BIO *bio = BIO_new_file(path, "w");
    X509 *all[] = {a, b, c};
    for (int i = 0; i < 3; i++)
        if (all[i] != NULL)
            assert_int_equal(PEM_write_bio_X509(bio, all[i]), 1);
    BIO_free(bio);
}

static void write_key(const char *path, EVP_PKEY *k, const char *pass)
{
    BIO *bio = BIO_new_file(path, "w");
    const EVP_CIPHER *enc = pass ? EVP_aes_256_cbc() : NULL;
    assert_int_equal(
        PEM_write_bio_PKCS8PrivateKey(bio, k, enc, pass, pass ? (int)strlen(pass) : 0, NULL, NULL),
        1);
    BIO_free(bio);
}

static void write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static size_t read_bytes(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* A leaf signed by the PKI's intermediate. */
static X509 *leaf_of(const char *cn, EVP_PKEY *key, long from, long to)
{
    struct mint m = {
        .cn = cn, .key = key, .issuer = inter, .issuer_key = inter_key, .from = from, .to = to};
    return mint(&m);
}

static X509_CRL *make_crl(long last, long next)
{
    X509_CRL *crl = X509_CRL_new();
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(inter));
    ASN1_TIME *t = ASN1_TIME_adj(NULL, time(NULL), 0, last);
    X509_CRL_set1_lastUpdate(crl, t);
    ASN1_TIME_adj(t, time(NULL), 0, next);
    X509_CRL_set1_nextUpdate(crl, t);
    ASN1_TIME_free(t);
    assert_true(X509_CRL_sign(crl, inter_key, EVP_sha256()) > 0);
    return crl;
}

/* The CRLs of clients.crl whose issuer is the root. */
static void write_crls(const char *path, X509_CRL *extra)
{
    STACK_OF(X509_CRL) *crls = NULL;
    char err[256];
    assert_int_equal(tls_read_crls(pk("clients.crl"), &crls, err, sizeof(err)), TG_OK);
    BIO *bio = BIO_new_file(path, "w");
    for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
        X509_CRL *crl = sk_X509_CRL_value(crls, i);
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(root)) == 0)
            PEM_write_bio_X509_CRL(bio, crl);
    }
    if (extra != NULL)
        PEM_write_bio_X509_CRL(bio, extra);
    BIO_free(bio);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
}

static void make_inputs(void)
{
    X509 *leaf = read_cert(pk("server-ecdsa.crt"));
    EVP_PKEY *ec = EVP_EC_gen("P-256");
    EVP_PKEY *rsa1024 = EVP_RSA_gen(1024);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *ed2 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(ec);
    assert_non_null(rsa1024);
    assert_non_null(ed);

    X509 *x = leaf_of("expired", ec, -30 * DAY, -DAY);
    write_certs(tmp("expired.crt"), x, inter, NULL);
    write_key(tmp("expired.key"), ec, NULL);
    X509_free(x);
    x = leaf_of("soon", ec, -DAY, 10 * DAY);
    write_certs(tmp("soon.crt"), x, inter, NULL);
    X509_free(x);
    x = leaf_of("notyet", ec, 10 * DAY, 40 * DAY);
    write_certs(tmp("notyet.crt"), x, inter, NULL);
    X509_free(x);
    x = leaf_of("weak", rsa1024, -DAY, 300 * DAY);
    write_certs(tmp("weak.crt"), x, inter, NULL);
    X509_free(x);
    struct mint m = {.cn = "sha1",
                     .key = ec,
                     .issuer = inter,
                     .issuer_key = inter_key,
                     .from = -DAY,
                     .to = 300 * DAY,
                     .md = EVP_sha1()};
    x = mint(&m);
    write_certs(tmp("sha1.crt"), x, inter, NULL);
    X509_free(x);
    m = (struct mint){.cn = "self", .key = ec, .from = -DAY, .to = 300 * DAY};
    x = mint(&m);
    write_certs(tmp("self.crt"), x, NULL, NULL);
    write_key(tmp("self.key"), ec, NULL);
    X509_free(x);
    m = (struct mint){.cn = "ed",
                      .key = ed,
                      .issuer = inter,
                      .issuer_key = inter_key,
                      .from = -DAY,
                      .to = 300 * DAY};
    x = mint(&m);
    write_certs(tmp("ed.crt"), x, inter, NULL);
    write_key(tmp("ed.key"), ed, NULL);
    write_key(tmp("ed2.key"), ed2, NULL);
    X509_free(x);

    /* Chains out of order, incomplete, and a key that belongs elsewhere. */
    write_certs(tmp("reversed.crt"), inter, leaf, NULL);
    write_certs(tmp("no-intermediate.crt"), leaf, root, NULL);
    write_certs(tmp("leaf-only.crt"), leaf, NULL, NULL);
    EVP_PKEY *server_key = read_key(pk("server-ecdsa.key"), NULL);
    assert_non_null(server_key);
    write_key(tmp("server-enc.key"), server_key, "s3cret");
    write_bytes(tmp("pass.txt"), "s3cret\n", 7);
    write_bytes(tmp("wrong.txt"), "nope\n", 5);

    /* DER and PKCS#7 of the server chain. */
    unsigned char *der = NULL;
    int n = i2d_X509(leaf, &der);
    write_bytes(tmp("server.der"), der, (size_t)n);
    write_bytes(tmp("truncated.der"), der, (size_t)n / 2);
    OPENSSL_free(der);
    PKCS7 *p7 = PKCS7_new();
    PKCS7_set_type(p7, NID_pkcs7_signed);
    PKCS7_content_new(p7, NID_pkcs7_data);
    PKCS7_add_certificate(p7, inter);
    PKCS7_add_certificate(p7, leaf);
    der = NULL;
    n = i2d_PKCS7(p7, &der);
    write_bytes(tmp("server.p7b"), der, (size_t)n);
    OPENSSL_free(der);
    PKCS7_free(p7);

    unsigned char buf[4096];
    size_t len = read_bytes(pk("server-ecdsa.crt"), buf, sizeof(buf));
    write_bytes(tmp("truncated.crt"), buf, len / 2);
    unsigned char junk[512];
    RAND_bytes(junk, sizeof(junk));
    junk[0] = 0x42; /* not a DER SEQUENCE either */
    write_bytes(tmp("garbage.bin"), junk, sizeof(junk));

    /* A key and certificates that do not belong together. */
    size_t na = read_bytes(pk("alice.crt"), buf, sizeof(buf));
    na += read_bytes(pk("revoked.key"), buf + na, sizeof(buf) - na);
    write_bytes(tmp("mixed.pem"), buf, na);

    X509_CRL *stale = make_crl(-10 * DAY, -DAY);
    write_crls(tmp("stale.crl"), stale);
    X509_CRL_free(stale);
    write_crls(tmp("root-only.crl"), NULL);

    EVP_PKEY_free(server_key);
    EVP_PKEY_free(ed2);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(ec);
    X509_free(leaf);
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    /* Nothing here may wait for a password on a terminal. */
    if (freopen("/dev/null", "r", stdin) == NULL || mkdtemp(dir) == NULL)
        return -1;
    snprintf(pki, sizeof(pki), "%s/pki", dir);
    snprintf(foreign, sizeof(foreign), "%s/foreign", dir);
    struct pki_init_opts o = {.dir = pki, .key = PKI_KEY_ECDSA};
    struct pki_init_opts f = {.dir = foreign, .key = PKI_KEY_ECDSA};
    if (pki_init(&o, err, sizeof(err)) != TG_OK || pki_init(&f, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "pki_init: %s\n", err);
        return -1;
    }
    inter = read_cert(pk("intermediate.crt"));
    root = read_cert(pk("root.crt"));
    inter_key = read_key(pk("intermediate.key"), NULL);
    make_inputs();
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    (void)state;
    X509_free(inter);
    X509_free(root);
    EVP_PKEY_free(inter_key);
    return nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- helpers on results ---- */

static bool has_warning(const json_t *f, const char *code)
{
    size_t i;
    const json_t *w;
    json_array_foreach(json_object_get(f, "warnings"), i,
                       w) if (strcmp(pki_json_get_str(w, "code", ""), code) == 0) return true;
    return false;
}

static size_t n_warnings(const json_t *f)
{
    return json_array_size(json_object_get(f, "warnings"));
}

static json_t *inspect_ok(const char *path, const char *password_file)
{
    char err[512];
    json_t *f = NULL;
    enum tg_status st = pki_inspect(path, password_file, time(NULL), &f, err, sizeof(err));
    if (st != TG_OK)
        fail_msg("inspect %s: %s", path, err);
    return f;
}

static void inspect_fails(const char *path, const char *password_file, const char *want)
{
    char err[512];
    json_t *f = NULL;
    assert_int_equal(pki_inspect(path, password_file, time(NULL), &f, err, sizeof(err)),
                     TG_E_CONFIG);
    assert_null(f);
    if (strstr(err, want) == NULL)
        fail_msg("inspect %s: \"%s\" lacks \"%s\"", path, err, want);
}

static const json_t *cert_at(const json_t *f, size_t i)
{
    return json_array_get(json_object_get(f, "certificates"), i);
}

static void chain_is(const json_t *f, int a, int b)
{
    const json_t *chain = json_object_get(f, "chain");
    assert_int_equal(json_array_size(chain), b ? 2 : 1);
    assert_int_equal(json_integer_value(json_array_get(chain, 0)), a);
    if (b)
        assert_int_equal(json_integer_value(json_array_get(chain, 1)), b);
}

/* ---- inspect ---- */

static void test_inspect_server_chain(void **state)
{
    (void)state;
    json_t *f = inspect_ok(pk("server-ecdsa.crt"), NULL);
    assert_string_equal(pki_json_get_str(f, "format", ""), "PEM");
    assert_int_equal(json_array_size(json_object_get(f, "certificates")), 2);
    assert_true(json_is_null(json_object_get(f, "key")));
    chain_is(f, 1, 2);
    assert_int_equal(n_warnings(f), 0);
    const json_t *leaf = cert_at(f, 0);
    assert_string_equal(pki_json_get_str(leaf, "subject", ""), "CN=localhost,O=tollgate dev PKI");
    char sans[256];
    pki_json_join(json_object_get(leaf, "sans"), ",", sans, sizeof(sans));
    assert_string_equal(sans, "DNS:localhost,IP:127.0.0.1,IP:::1");
    pki_json_join(json_object_get(leaf, "extended_key_usage"), ",", sans, sizeof(sans));
    assert_string_equal(sans, "serverAuth");
    assert_string_equal(pki_json_get_str(json_object_get(leaf, "key"), "type", ""), "EC P-256");
    assert_string_equal(pki_json_get_str(leaf, "signature_algorithm", ""), "ecdsa-with-SHA256");
    assert_false(json_is_true(json_object_get(json_object_get(leaf, "basic_constraints"), "ca")));
    assert_string_equal(pki_json_get_str(leaf, "status", ""), "valid");
    assert_true(json_integer_value(json_object_get(leaf, "days_left")) >= 364);
    const json_t *ca = json_object_get(cert_at(f, 1), "basic_constraints");
    assert_true(json_is_true(json_object_get(ca, "ca")));
    assert_int_equal(json_integer_value(json_object_get(ca, "path_len")), 0);

    /* The fingerprint is the SHA-256 of the DER certificate. */
    X509 *x = read_cert(pk("server-ecdsa.crt"));
    unsigned char md[32];
    unsigned int md_len = 0;
    X509_digest(x, EVP_sha256(), md, &md_len);
    char want[8];
    snprintf(want, sizeof(want), "%02X:%02X", md[0], md[1]);
    assert_memory_equal(pki_json_get_str(leaf, "sha256_fingerprint", ""), want, 5);
    assert_int_equal(strlen(pki_json_get_str(leaf, "sha256_fingerprint", "")), 95);
    X509_free(x);
    json_decref(f);

    f = inspect_ok(pk("server-rsa.key"), NULL);
    assert_string_equal(pki_json_get_str(json_object_get(f, "key"), "type", ""), "RSA 2048");
    json_decref(f);
}

static void test_inspect_formats(void **state)
{
    (void)state;
    json_t *pem = inspect_ok(pk("server-ecdsa.crt"), NULL);
    const char *fp = pki_json_get_str(cert_at(pem, 0), "sha256_fingerprint", "");
    json_t *der = inspect_ok(tmp("server.der"), NULL);
    assert_string_equal(pki_json_get_str(der, "format", ""), "DER certificate");
    assert_string_equal(pki_json_get_str(cert_at(der, 0), "sha256_fingerprint", ""), fp);
    json_t *p7 = inspect_ok(tmp("server.p7b"), NULL);
    assert_string_equal(pki_json_get_str(p7, "format", ""), "PKCS#7 (DER)");
    assert_string_equal(pki_json_get_str(cert_at(p7, 1), "sha256_fingerprint", ""), fp);
    chain_is(p7, 2, 1);
    assert_true(has_warning(p7, "out_of_order"));
    json_t *p12 = inspect_ok(pk("alice.p12"), pk("p12-password.txt"));
    assert_string_equal(pki_json_get_str(p12, "format", ""), "PKCS#12");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(p12, "key"), "matches")),
                     1);
    assert_int_equal(n_warnings(p12), 0);
    json_decref(p12);
    json_decref(p7);
    json_decref(der);
    json_decref(pem);
}

static void test_inspect_warnings(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        const char *code;
    } cases[] = {
        {"reversed.crt", "out_of_order"}, {"no-intermediate.crt", "missing_intermediate"},
        {"expired.crt", "expired"},       {"soon.crt", "expiring_soon"},
        {"notyet.crt", "not_yet_valid"},  {"weak.crt", "weak_key"},
        {"sha1.crt", "weak_signature"},   {"mixed.pem", "key_mismatch"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        json_t *f = inspect_ok(tmp(cases[i].file), NULL);
        if (!has_warning(f, cases[i].code) || n_warnings(f) != 1) {
            char *dump = json_dumps(json_object_get(f, "warnings"), 0);
            fail_msg("%s: want exactly %s, got %s", cases[i].file, cases[i].code, dump);
        }
        json_decref(f);
    }
    json_t *f = inspect_ok(tmp("reversed.crt"), NULL);
    chain_is(f, 2, 1);
    json_decref(f);
    /* A CA bundle is not a chain with extras; a lone leaf is not an error. */
    f = inspect_ok(pk("ca-bundle.crt"), NULL);
    assert_int_equal(n_warnings(f), 0);
    json_decref(f);
    f = inspect_ok(tmp("leaf-only.crt"), NULL);
    assert_int_equal(n_warnings(f), 0);
    assert_int_equal(json_array_size(json_object_get(f, "notes")), 1);
    json_decref(f);
}

static void test_inspect_bad_files(void **state)
{
    (void)state;
    inspect_fails(tmp("garbage.bin"), NULL, "not a certificate or key in any known format");
    inspect_fails(tmp("truncated.crt"), NULL, "truncated or corrupt");
    inspect_fails(tmp("truncated.der"), NULL, "truncated");
    inspect_fails(tmp("missing.crt"), NULL, "cannot open");
    inspect_fails(pk("alice.p12"), NULL, "--password-file");
    inspect_fails(pk("alice.p12"), tmp("wrong.txt"), "wrong password");
    inspect_fails(tmp("server-enc.key"), tmp("wrong.txt"), "wrong password");
    inspect_fails(tmp("server-enc.key"), tmp("missing.txt"), "--password-file");
    json_t *f = inspect_ok(tmp("server-enc.key"), tmp("pass.txt"));
    assert_string_equal(pki_json_get_str(json_object_get(f, "key"), "type", ""), "EC P-256");
    json_decref(f);
}

/* ---- verify ---- */

static json_t *verify(const char *cert, const char *ca, const char *crl, const char *host,
                      enum pki_purpose purpose, time_t at)
{
    char err[512];
    json_t *r = NULL;
    struct pki_verify_opts o = {.cert = cert,
                                .ca = ca,
                                .crls = &crl,
                                .n_crls = crl ? 1 : 0,
                                .host = host,
                                .purpose = purpose,
                                .at = at};
    if (pki_verify(&o, &r, err, sizeof(err)) != TG_OK)
        fail_msg("verify %s: %s", cert, err);
    return r;
}

/* The verdict of one check, "pass", "fail" or "skip". */
static const char *verdict(const json_t *r, const char *check)
{
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(r, "checks"), i,
                       c) if (strcmp(pki_json_get_str(c, "check", ""), check) ==
                              0) return pki_json_get_str(c, "verdict", "?");
    return "missing";
}

/* Exactly one failed check, with this reason. */
static void rejected(json_t *r, const char *check, const char *reason)
{
    assert_false(json_is_true(json_object_get(r, "ok")));
    assert_string_equal(pki_json_get_str(r, "reason", ""), reason);
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(r, "checks"), i, c)
    {
        bool is_it = strcmp(pki_json_get_str(c, "check", ""), check) == 0;
        if (is_it != (strcmp(pki_json_get_str(c, "verdict", ""), "fail") == 0)) {
            char *dump = json_dumps(json_object_get(r, "checks"), JSON_INDENT(1));
            fail_msg("want only %s to fail: %s", check, dump);
        }
    }
    json_decref(r);
}

static void accepted(json_t *r)
{
    if (!json_is_true(json_object_get(r, "ok"))) {
        char *dump = json_dumps(json_object_get(r, "checks"), JSON_INDENT(1));
        fail_msg("want every check to pass: %s", dump);
    }
    json_decref(r);
}

static void test_verify_server(void **state)
{
    (void)state;
    const char *bundle = pk("ca-bundle.crt");
    json_t *r = verify(pk("server-ecdsa.crt"), bundle, NULL, "localhost", PKI_PURPOSE_SERVER, 0);
    assert_string_equal(verdict(r, "dates"), "pass");
    assert_string_equal(verdict(r, "revocation"), "skip");
    assert_string_equal(verdict(r, "trust"), "pass");
    assert_string_equal(verdict(r, "purpose"), "pass");
    assert_string_equal(verdict(r, "name"), "pass");
    assert_int_equal(json_array_size(json_object_get(r, "chain")), 3);
    accepted(r);
    accepted(
        verify(pk("server-rsa.crt"), pk("root.crt"), NULL, "127.0.0.1", PKI_PURPOSE_SERVER, 0));
    accepted(verify(pk("server-ecdsa.crt"), bundle, NULL, "::1", PKI_PURPOSE_SERVER, 0));
    /* Twins: another name, another address, the client purpose, a foreign CA. */
    rejected(verify(pk("server-ecdsa.crt"), bundle, NULL, "evil.test", PKI_PURPOSE_SERVER, 0),
             "name", "name_mismatch");
    rejected(verify(pk("server-ecdsa.crt"), bundle, NULL, "127.0.0.2", PKI_PURPOSE_SERVER, 0),
             "name", "name_mismatch");
    rejected(verify(pk("server-ecdsa.crt"), bundle, NULL, NULL, PKI_PURPOSE_CLIENT, 0), "purpose",
             "wrong_purpose");
    rejected(verify(pk("server-ecdsa.crt"), path_of(foreign, "root.crt"), NULL, NULL,
                    PKI_PURPOSE_SERVER, 0),
             "trust", "unknown_ca");
}

static void test_verify_dates(void **state)
{
    (void)state;
    const char *root_crt = pk("root.crt");
    accepted(verify(tmp("soon.crt"), root_crt, NULL, NULL, PKI_PURPOSE_SERVER, 0));
    rejected(verify(tmp("expired.crt"), root_crt, NULL, NULL, PKI_PURPOSE_SERVER, 0), "dates",
             "cert_expired");
    rejected(verify(tmp("notyet.crt"), root_crt, NULL, NULL, PKI_PURPOSE_SERVER, 0), "dates",
             "cert_not_yet_valid");
    /* --at: the same certificates at other times. */
    accepted(
        verify(tmp("notyet.crt"), root_crt, NULL, NULL, PKI_PURPOSE_SERVER, time(NULL) + 20 * DAY));
    rejected(
        verify(tmp("soon.crt"), root_crt, NULL, NULL, PKI_PURPOSE_SERVER, time(NULL) + 20 * DAY),
        "dates", "cert_expired");
    rejected(verify(pk("server-ecdsa.crt"), root_crt, NULL, NULL, PKI_PURPOSE_SERVER,
                    time(NULL) + 400 * DAY),
             "dates", "cert_expired");
}

static void test_verify_revocation(void **state)
{
    (void)state;
    const char *root_crt = pk("root.crt");
    const char *crl = pk("clients.crl");
    json_t *r = verify(pk("alice.crt"), root_crt, crl, NULL, PKI_PURPOSE_CLIENT, 0);
    assert_string_equal(verdict(r, "revocation"), "pass");
    accepted(r);
    rejected(verify(pk("revoked.crt"), root_crt, crl, NULL, PKI_PURPOSE_CLIENT, 0), "revocation",
             "cert_revoked");
    /* Without a CRL nobody can tell. */
    accepted(verify(pk("revoked.crt"), root_crt, NULL, NULL, PKI_PURPOSE_CLIENT, 0));
    rejected(verify(pk("alice.crt"), root_crt, tmp("stale.crl"), NULL, PKI_PURPOSE_CLIENT, 0),
             "revocation", "crl_expired");
    rejected(verify(pk("alice.crt"), root_crt, tmp("root-only.crl"), NULL, PKI_PURPOSE_CLIENT, 0),
             "revocation", "crl_missing");
}

static void test_verify_chains(void **state)
{
    (void)state;
    const char *root_crt = pk("root.crt");
    /* The order of the file does not matter to a verifier; completeness does. */
    accepted(verify(tmp("reversed.crt"), root_crt, NULL, "localhost", PKI_PURPOSE_SERVER, 0));
    rejected(verify(tmp("leaf-only.crt"), root_crt, NULL, "localhost", PKI_PURPOSE_SERVER, 0),
             "trust", "unknown_ca");
    rejected(verify(tmp("no-intermediate.crt"), root_crt, NULL, NULL, PKI_PURPOSE_SERVER, 0),
             "trust", "unknown_ca");
    accepted(verify(tmp("leaf-only.crt"), pk("ca-bundle.crt"), NULL, NULL, PKI_PURPOSE_SERVER, 0));
    rejected(verify(tmp("self.crt"), root_crt, NULL, NULL, PKI_PURPOSE_SERVER, 0), "trust",
             "self_signed");
    accepted(verify(tmp("self.crt"), tmp("self.crt"), NULL, "localhost", PKI_PURPOSE_SERVER, 0));
}

static void test_verify_input_errors(void **state)
{
    (void)state;
    char err[512];
    json_t *r = NULL;
    const char *crl = tmp("garbage.bin");
    struct pki_verify_opts o = {.cert = tmp("missing.crt"), .ca = pk("root.crt")};
    assert_int_equal(pki_verify(&o, &r, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "cert:"));
    o = (struct pki_verify_opts){.cert = pk("alice.crt"), .ca = tmp("garbage.bin")};
    assert_int_equal(pki_verify(&o, &r, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "--ca:"));
    o = (struct pki_verify_opts){
        .cert = pk("alice.crt"), .ca = pk("root.crt"), .crls = &crl, .n_crls = 1};
    assert_int_equal(pki_verify(&o, &r, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "--crl:"));
    assert_null(r);
}

/* ---- match ---- */

static void match_is(const char *cert, const char *key, const char *pw, bool want, int index)
{
    char err[512];
    json_t *r = NULL;
    if (pki_match(cert, key, pw, &r, err, sizeof(err)) != TG_OK)
        fail_msg("match %s %s: %s", cert, key, err);
    if (json_is_true(json_object_get(r, "match")) != want)
        fail_msg("match %s %s: %s", cert, key, pki_json_get_str(r, "message", ""));
    if (want)
        assert_int_equal(json_integer_value(json_object_get(r, "matched_index")), index);
    else
        assert_string_not_equal(pki_json_get_str(r, "key_spki_sha256", "a"),
                                pki_json_get_str(r, "cert_spki_sha256", "b"));
    json_decref(r);
}

static void test_match(void **state)
{
    (void)state;
    match_is(pk("server-ecdsa.crt"), pk("server-ecdsa.key"), NULL, true, 1);
    match_is(pk("server-rsa.crt"), pk("server-rsa.key"), NULL, true, 1);
    match_is(tmp("ed.crt"), tmp("ed.key"), NULL, true, 1);
    match_is(pk("alice.p12"), pk("alice.p12"), pk("p12-password.txt"), true, 1);
    match_is(tmp("reversed.crt"), pk("server-ecdsa.key"), NULL, true, 2);
    match_is(pk("server-ecdsa.crt"), tmp("server-enc.key"), tmp("pass.txt"), true, 1);
    /* Twins: another key of another type, of the same type, an Ed25519 one. */
    match_is(pk("server-ecdsa.crt"), pk("server-rsa.key"), NULL, false, 0);
    match_is(pk("alice.crt"), pk("revoked.key"), NULL, false, 0);
    match_is(tmp("ed.crt"), tmp("ed2.key"), NULL, false, 0);

    char err[512];
    json_t *r = NULL;
    assert_int_equal(pki_match(pk("alice.crt"), pk("alice.crt"), NULL, &r, err, sizeof(err)),
                     TG_E_CONFIG);
    assert_non_null(strstr(err, "no private key"));
    assert_int_equal(pki_match(pk("alice.key"), pk("alice.key"), NULL, &r, err, sizeof(err)),
                     TG_E_CONFIG);
    assert_non_null(strstr(err, "no certificate"));
    assert_int_equal(
        pki_match(pk("alice.crt"), tmp("server-enc.key"), tmp("wrong.txt"), &r, err, sizeof(err)),
        TG_E_CONFIG);
    assert_non_null(strstr(err, "wrong password"));
    assert_null(r);
}

/* ---- convert ---- */

static mode_t mode_of(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_mode & 07777;
}

static json_t *convert_ok(const char *in, const char *out, const char *key_out, const char *pw)
{
    char err[512];
    json_t *r = NULL;
    struct pki_convert_opts o = {.in = in, .out = out, .key_out = key_out, .password_file = pw};
    if (pki_convert(&o, &r, err, sizeof(err)) != TG_OK)
        fail_msg("convert %s: %s", in, err);
    return r;
}

/* The fingerprints of a file's certificates, in file order. */
static void fingerprints(const char *path, const char *pw, char *dst, size_t dst_len)
{
    json_t *f = inspect_ok(path, pw);
    json_t *fps = json_array();
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(f, "certificates"), i, c)
        json_array_append_new(fps, json_string(pki_json_get_str(c, "sha256_fingerprint", "")));
    pki_json_join(fps, ",", dst, dst_len);
    json_decref(fps);
    json_decref(f);
}

static void test_convert_p12_round_trip(void **state)
{
    (void)state;
    char before[1024];
    char after[1024];
    json_t *r = convert_ok(pk("alice.p12"), tmp("alice.pem"), NULL, pk("p12-password.txt"));
    assert_string_equal(pki_json_get_str(r, "key_out", ""), tmp("alice.key"));
    json_decref(r);
    assert_int_equal(mode_of(tmp("alice.pem")), 0644);
    assert_int_equal(mode_of(tmp("alice.key")), 0600);
    fingerprints(pk("alice.p12"), pk("p12-password.txt"), before, sizeof(before));
    fingerprints(tmp("alice.pem"), NULL, after, sizeof(after));
    assert_string_equal(before, after);
    fingerprints(pk("alice.crt"), NULL, before, sizeof(before));
    assert_string_equal(before, after);
    /* The key is plain PEM now, and still the certificate's. */
    EVP_PKEY *k = read_key(tmp("alice.key"), NULL);
    assert_non_null(k);
    EVP_PKEY_free(k);
    match_is(tmp("alice.pem"), tmp("alice.key"), NULL, true, 1);
    json_t *f = inspect_ok(tmp("alice.pem"), NULL);
    assert_int_equal(n_warnings(f), 0);
    json_decref(f);
}

static void test_convert_orders_and_decrypts(void **state)
{
    (void)state;
    char want[1024];
    char got[1024];
    json_decref(convert_ok(tmp("server.p7b"), tmp("p7.pem"), NULL, NULL));
    fingerprints(pk("server-ecdsa.crt"), NULL, want, sizeof(want));
    fingerprints(tmp("p7.pem"), NULL, got, sizeof(got));
    assert_string_equal(want, got); /* leaf first, though the PKCS#7 had it second */
    json_t *r = convert_ok(tmp("reversed.crt"), tmp("ordered.pem"), NULL, NULL);
    assert_int_equal(json_array_size(json_object_get(r, "notes")), 1);
    json_decref(r);
    fingerprints(tmp("ordered.pem"), NULL, got, sizeof(got));
    assert_string_equal(want, got);
    json_decref(convert_ok(tmp("server.der"), tmp("der.pem"), NULL, NULL));
    r = convert_ok(tmp("server-enc.key"), tmp("plain.key"), NULL, tmp("pass.txt"));
    assert_string_equal(pki_json_get_str(r, "key_out", ""), tmp("plain.key"));
    json_decref(r);
    assert_int_equal(mode_of(tmp("plain.key")), 0600);
    match_is(pk("server-ecdsa.crt"), tmp("plain.key"), NULL, true, 1);
}

static void convert_fails(const char *in, const char *out, const char *pw, const char *want)
{
    char err[512];
    json_t *r = NULL;
    struct pki_convert_opts o = {.in = in, .out = out, .password_file = pw};
    bool did_exist = access(out, F_OK) == 0;
    assert_int_equal(pki_convert(&o, &r, err, sizeof(err)), TG_E_CONFIG);
    assert_null(r);
    if (strstr(err, want) == NULL)
        fail_msg("convert %s: \"%s\" lacks \"%s\"", in, err, want);
    assert_int_equal(access(out, F_OK) == 0, did_exist);
}

static void test_convert_refusals(void **state)
{
    (void)state;
    convert_fails(tmp("server-enc.key"), tmp("c1.pem"), tmp("wrong.txt"), "wrong password");
    convert_fails(pk("alice.p12"), tmp("c2.pem"), NULL, "--password-file");
    convert_fails(tmp("garbage.bin"), tmp("c3.pem"), NULL, "not a certificate or key");
    convert_fails(tmp("truncated.crt"), tmp("c4.pem"), NULL, "truncated");
    convert_fails(pk("server-ecdsa.crt"), pk("server-ecdsa.crt"), NULL, "replace the input");
    convert_fails(pk("server-ecdsa.crt"), tmp("no/such/dir.pem"), NULL, "cannot create");
    convert_fails(tmp("mixed.pem"), tmp("c5.pem"), NULL, "belongs to none");
}

/* ---- probe, against servers forked here ---- */

enum server_kind { SRV_ONE_WAY, SRV_MUTUAL, SRV_HTTP, SRV_SILENT };

struct server {
    pid_t pid;
    char target[32];
};

static void serve_tls(int c, enum server_kind kind)
{
    char err[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (SSL_CTX_use_certificate_chain_file(ctx, pk("server-ecdsa.crt")) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, pk("server-ecdsa.key"), SSL_FILETYPE_PEM) != 1)
        _exit(3);
    if (kind == SRV_MUTUAL) {
        STACK_OF(X509_CRL) *crls = NULL;
        X509_STORE *store = SSL_CTX_get_cert_store(ctx);
        X509_STORE_add_cert(store, root);
        if (tls_read_crls(pk("clients.crl"), &crls, err, sizeof(err)) != TG_OK)
            _exit(3);
        for (int i = 0; i < sk_X509_CRL_num(crls); i++)
            X509_STORE_add_crl(store, sk_X509_CRL_value(crls, i));
        sk_X509_CRL_pop_free(crls, X509_CRL_free);
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
        sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(root)));
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, c);
    if (SSL_accept(ssl) == 1) {
        char buf[256];
        while (SSL_read(ssl, buf, sizeof(buf)) > 0)
            ;
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

/* A one-connection server in a child process (bounded by alarm). */
static struct server serve(enum server_kind kind)
{
    struct server srv = {0};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(srv.target, sizeof(srv.target), "127.0.0.1:%d", ntohs(sa.sin_port));
    fflush(NULL);
    srv.pid = fork();
    assert_true(srv.pid >= 0);
    if (srv.pid == 0) {
        alarm(10);
        int c = accept(fd, NULL, NULL);
        char buf[512];
        if (kind == SRV_HTTP) {
            static const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
            if (read(c, buf, sizeof(buf)) > 0 && write(c, answer, sizeof(answer) - 1) < 0)
                _exit(1);
        }
        if (kind == SRV_ONE_WAY || kind == SRV_MUTUAL)
            serve_tls(c, kind);
        while (read(c, buf, sizeof(buf)) > 0)
            ;
        _exit(0);
    }
    close(fd);
    return srv;
}

static void reap(struct server *srv)
{
    int status = 0;
    assert_int_equal(waitpid(srv->pid, &status, 0), srv->pid);
    assert_true(WIFEXITED(status));
}

struct probe_args {
    const char *sni;
    const char *ca;
    const char *cert;
    const char *key;
    const char *pw;
    int version;
    int handshake_ms;
};

static json_t *probe(const char *target, const struct probe_args *a)
{
    char err[512];
    json_t *r = NULL;
    struct pki_probe_opts o = {.target = target,
                               .sni = a->sni,
                               .ca = a->ca ? a->ca : pk("root.crt"),
                               .cert = a->cert,
                               .key = a->key,
                               .password_file = a->pw,
                               .min_version = a->version,
                               .max_version = a->version,
                               .handshake_timeout_ms = a->handshake_ms,
                               .read_timeout_ms = 300};
    if (pki_probe(&o, &r, err, sizeof(err)) != TG_OK)
        fail_msg("probe %s: %s", target, err);
    return r;
}

static const json_t *outcome(const json_t *r)
{
    return json_object_get(r, "outcome");
}

/* Runs a probe against a fresh server of kind; checks the outcome's reason
 * (NULL: accepted) and returns the result. */
static json_t *probe_server(enum server_kind kind, const struct probe_args *a, const char *reason)
{
    struct server srv = serve(kind);
    json_t *r = probe(srv.target, a);
    reap(&srv);
    const json_t *o = outcome(r);
    const char *got = pki_json_get_str(o, "reason", NULL);
    if (reason == NULL ? got != NULL : got == NULL || strcmp(got, reason) != 0) {
        char *dump = json_dumps(r, JSON_INDENT(1));
        fail_msg("want %s, got: %s", reason ? reason : "accepted", dump);
    }
    assert_int_equal(json_is_true(json_object_get(o, "accepted")), reason == NULL);
    return r;
}

static void test_probe_transport(void **state)
{
    (void)state;
    /* A port that was just free: nothing listens. */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    char target[32];
    snprintf(target, sizeof(target), "127.0.0.1:%d", ntohs(sa.sin_port));
    close(fd);
    struct probe_args a = {0};
    json_t *r = probe(target, &a);
    assert_string_equal(pki_json_get_str(outcome(r), "reason", ""), "connection_refused");
    assert_string_equal(pki_json_get_str(outcome(r), "stage", ""), "connect");
    assert_false(json_is_true(json_object_get(r, "ok")));
    json_decref(r);

    r = probe_server(SRV_HTTP, &a, "not_tls");
    assert_non_null(strstr(pki_json_get_str(outcome(r), "meaning", ""), "HTTP/1.1 400"));
    json_decref(r);

    a.handshake_ms = 300;
    int64_t start = pki_now_ms();
    r = probe_server(SRV_SILENT, &a, "handshake_timeout");
    assert_true(pki_now_ms() - start < 3000);
    json_decref(r);
}

static void test_probe_one_way(void **state)
{
    (void)state;
    struct probe_args a = {.sni = "localhost"};
    json_t *r = probe_server(SRV_ONE_WAY, &a, NULL);
    assert_true(json_is_true(json_object_get(r, "ok")));
    assert_string_equal(pki_json_get_str(json_object_get(r, "server_hello"), "version", ""),
                        "TLSv1.3");
    assert_int_equal(json_array_size(json_object_get(r, "server_chain")), 2);
    assert_false(json_is_true(json_object_get(json_object_get(r, "certificate_request"), "seen")));
    json_decref(r);
    a.version = TLS1_2_VERSION;
    r = probe_server(SRV_ONE_WAY, &a, NULL);
    assert_true(json_is_true(json_object_get(r, "ok")));
    assert_string_equal(pki_json_get_str(json_object_get(r, "server_hello"), "version", ""),
                        "TLSv1.2");
    json_decref(r);

    /* Twins: the server accepts, but a client check fails. */
    a = (struct probe_args){.sni = "evil.test"};
    r = probe_server(SRV_ONE_WAY, &a, NULL);
    assert_false(json_is_true(json_object_get(r, "ok")));
    assert_string_equal(pki_json_get_str(r, "checks_reason", ""), "name_mismatch");
    json_decref(r);
    a = (struct probe_args){.ca = path_of(foreign, "root.crt")};
    r = probe_server(SRV_ONE_WAY, &a, NULL);
    assert_false(json_is_true(json_object_get(r, "ok")));
    assert_string_equal(pki_json_get_str(r, "checks_reason", ""), "unknown_ca");
    json_decref(r);
}

static void test_probe_mutual(void **state)
{
    (void)state;
    struct probe_args a = {.cert = pk("alice.crt"), .key = pk("alice.key")};
    json_t *r = probe_server(SRV_MUTUAL, &a, NULL);
    const json_t *mine = json_object_get(r, "client_certificate");
    assert_true(json_is_true(json_object_get(mine, "sent")));
    assert_true(json_is_true(json_object_get(mine, "accepted")));
    assert_true(json_is_true(json_object_get(mine, "issuer_listed")));
    const json_t *req = json_object_get(r, "certificate_request");
    assert_true(json_is_true(json_object_get(req, "seen")));
    assert_int_equal(json_array_size(json_object_get(req, "ca_names")), 1);
    assert_true(json_is_true(json_object_get(r, "ok")));
    json_decref(r);
    a = (struct probe_args){
        .cert = pk("alice.p12"), .pw = pk("p12-password.txt"), .version = TLS1_2_VERSION};
    json_decref(probe_server(SRV_MUTUAL, &a, NULL));

    /* Twins: each refusal with its reason. */
    a = (struct probe_args){0};
    r = probe_server(SRV_MUTUAL, &a, "no_client_cert");
    assert_string_equal(pki_json_get_str(outcome(r), "alert", ""), "certificate_required");
    assert_string_equal(pki_json_get_str(outcome(r), "stage", ""), "after_handshake");
    json_decref(r);
    a.version = TLS1_2_VERSION;
    r = probe_server(SRV_MUTUAL, &a, "no_client_cert");
    assert_string_equal(pki_json_get_str(outcome(r), "alert", ""), "handshake_failure");
    json_decref(r);
    a = (struct probe_args){.cert = pk("revoked.crt"), .key = pk("revoked.key")};
    json_decref(probe_server(SRV_MUTUAL, &a, "cert_revoked"));
    a = (struct probe_args){.cert = path_of(foreign, "alice.crt"),
                            .key = path_of(foreign, "alice.key")};
    r = probe_server(SRV_MUTUAL, &a, "unknown_ca");
    assert_true(
        json_is_false(json_object_get(json_object_get(r, "client_certificate"), "issuer_listed")));
    json_decref(r);
    a = (struct probe_args){.cert = tmp("expired.crt"), .key = tmp("expired.key")};
    json_decref(probe_server(SRV_MUTUAL, &a, "cert_expired"));
    a = (struct probe_args){.cert = tmp("self.crt"), .key = tmp("self.key")};
    json_decref(probe_server(SRV_MUTUAL, &a, "self_signed"));
}

static void test_probe_usage_errors(void **state)
{
    (void)state;
    char err[512];
    json_t *r = NULL;
    struct pki_probe_opts o = {.target = "localhost"};
    assert_int_equal(pki_probe(&o, &r, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "HOST:PORT"));
    o = (struct pki_probe_opts){
        .target = "localhost:1", .cert = pk("alice.crt"), .key = pk("revoked.key")};
    assert_int_equal(pki_probe(&o, &r, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "--key"));
    o = (struct pki_probe_opts){.target = "localhost:1", .cert = pk("alice.p12")};
    assert_int_equal(pki_probe(&o, &r, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "--cert"));
    assert_null(r);
}

/* ---- small parsers ---- */

static void test_parse_time_and_target(void **state)
{
    (void)state;
    time_t t = 0;
    assert_true(pki_parse_time("2026-01-31", &t));
    assert_int_equal(t, 1769817600);
    assert_true(pki_parse_time("2026-01-31T12:00:00Z", &t));
    assert_int_equal(t, 1769860800);
    assert_true(pki_parse_time("2026-01-31 12:00", &t));
    assert_int_equal(t, 1769860800);
    assert_true(pki_parse_time("@1769860800", &t));
    assert_int_equal(t, 1769860800);
    static const char *const bad[] = {"",    "2026",        "2026-13-01", "2026-01-31T25:00", "@",
                                      "@-5", "2026-01-31X", "1969-12-31", "tomorrow"};
    for (size_t i = 0; i < TG_ARRAY_LEN(bad); i++)
        if (pki_parse_time(bad[i], &t))
            fail_msg("\"%s\" parsed", bad[i]);

    char host[64];
    char port[8];
    assert_true(pki_split_target("localhost:8443", host, sizeof(host), port, sizeof(port)));
    assert_string_equal(host, "localhost");
    assert_string_equal(port, "8443");
    assert_true(pki_split_target("[::1]:443", host, sizeof(host), port, sizeof(port)));
    assert_string_equal(host, "::1");
    static const char *const bad_targets[] = {"localhost",  ":443",    "host:",    "host:0",
                                              "host:65536", "::1:443", "[::1]443", "host:44x"};
    for (size_t i = 0; i < TG_ARRAY_LEN(bad_targets); i++)
        if (pki_split_target(bad_targets[i], host, sizeof(host), port, sizeof(port)))
            fail_msg("\"%s\" parsed", bad_targets[i]);
}

/* ---- exit codes of the commands ---- */

static int run(int (*cmd)(int, char **), const char *a0, const char *a1, const char *a2,
               const char *a3, const char *a4, const char *a5)
{
    char *argv[8] = {(char *)a0, (char *)a1, (char *)a2, (char *)a3, (char *)a4, (char *)a5};
    int argc = 0;
    while (argc < 6 && argv[argc] != NULL)
        argc++;
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    FILE *devnull = freopen("/dev/null", "w", stdout);
    assert_non_null(devnull);
    int rc = cmd(argc, argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    return rc;
}

static void test_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(run(pki_cmd_cert, "cert", NULL, NULL, NULL, NULL, NULL), 2);
    assert_int_equal(run(pki_cmd_cert, "cert", "frobnicate", NULL, NULL, NULL, NULL), 2);
    assert_int_equal(run(pki_cmd_cert, "cert", "inspect", pk("root.crt"), NULL, NULL, NULL), 0);
    assert_int_equal(run(pki_cmd_cert, "cert", "inspect", tmp("garbage.bin"), NULL, NULL, NULL), 1);
    assert_int_equal(run(pki_cmd_cert, "cert", "inspect", "--bogus", NULL, NULL, NULL), 2);
    assert_int_equal(
        run(pki_cmd_cert, "cert", "verify", pk("alice.crt"), "--ca", pk("root.crt"), NULL), 0);
    assert_int_equal(
        run(pki_cmd_cert, "cert", "verify", tmp("expired.crt"), "--ca", pk("root.crt"), NULL), 1);
    assert_int_equal(
        run(pki_cmd_cert, "cert", "verify", pk("alice.crt"), "--ca", tmp("missing.crt"), NULL), 2);
    assert_int_equal(
        run(pki_cmd_cert, "cert", "verify", pk("alice.crt"), "--at", "yesterday", NULL), 2);
    assert_int_equal(
        run(pki_cmd_cert, "cert", "match", "--cert", pk("alice.crt"), "--key", pk("alice.key")), 0);
    assert_int_equal(
        run(pki_cmd_cert, "cert", "match", "--cert", pk("alice.crt"), "--key", pk("revoked.key")),
        1);
    assert_int_equal(run(pki_cmd_cert, "cert", "match", "--cert", pk("alice.crt"), NULL, NULL), 2);
    assert_int_equal(run(pki_cmd_cert, "cert", "convert", pk("alice.crt"), NULL, NULL, NULL), 2);
    assert_int_equal(run(pki_cmd_probe, "probe", NULL, NULL, NULL, NULL, NULL), 2);
    assert_int_equal(run(pki_cmd_probe, "probe", "no-port", NULL, NULL, NULL, NULL), 2);
    assert_int_equal(
        run(pki_cmd_probe, "probe", "localhost:1", "--ca", tmp("missing.crt"), NULL, NULL), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inspect_server_chain),
        cmocka_unit_test(test_inspect_formats),
        cmocka_unit_test(test_inspect_warnings),
        cmocka_unit_test(test_inspect_bad_files),
        cmocka_unit_test(test_verify_server),
        cmocka_unit_test(test_verify_dates),
        cmocka_unit_test(test_verify_revocation),
        cmocka_unit_test(test_verify_chains),
        cmocka_unit_test(test_verify_input_errors),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_convert_p12_round_trip),
        cmocka_unit_test(test_convert_orders_and_decrypts),
        cmocka_unit_test(test_convert_refusals),
        cmocka_unit_test(test_probe_transport),
        cmocka_unit_test(test_probe_one_way),
        cmocka_unit_test(test_probe_mutual),
        cmocka_unit_test(test_probe_usage_errors),
        cmocka_unit_test(test_parse_time_and_target),
        cmocka_unit_test(test_exit_codes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
