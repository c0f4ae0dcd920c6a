/* pki_init and `tollgate pki init`: the files, their modes, and that the
 * certificates verify (and fail) as a TLS peer would check them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

#include "pki/pki.h"

static char dir[] = "/tmp/tg-test-pki-XXXXXX";
static char pki[600];     /* the PKI most tests look at (ECDSA CAs) */
static char foreign[600]; /* another PKI, to check that they don't mix */

/* A path in one of 8 rotating buffers: copy it to keep it long. */
static const char *path_of(const char *base, const char *name)
{
    static char paths[8][700];
    static int next;
    char *p = paths[next++ % 8];
    int n = snprintf(p, sizeof(paths[0]), "%s/%s", base, name);
    assert_true(n > 0 && (size_t)n < sizeof(paths[0]));
    return p;
}

static STACK_OF(X509) *read_certs(const char *path)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    BIO *b = BIO_new_file(path, "r");
    assert_non_null(b);
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        sk_X509_push(certs, x);
    ERR_clear_error();
    BIO_free(b);
    assert_true(sk_X509_num(certs) > 0);
    return certs;
}

static X509 *read_cert(const char *path)
{
    STACK_OF(X509) *certs = read_certs(path);
    X509 *x = sk_X509_shift(certs);
    sk_X509_pop_free(certs, X509_free);
    return x;
}

static EVP_PKEY *read_key(const char *path)
{
    BIO *b = BIO_new_file(path, "r");
    assert_non_null(b);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(k);
    return k;
}

/* The first line of base/p12-password.txt without its newline. */
static void read_password(const char *base, char *pw, size_t len)
{
    FILE *f = fopen(path_of(base, "p12-password.txt"), "r");
    assert_non_null(f);
    assert_non_null(fgets(pw, (int)len, f));
    fclose(f);
    size_t n = strlen(pw);
    assert_true(n > 0 && pw[n - 1] == '\n');
    pw[n - 1] = '\0';
}

struct check {
    int purpose;        /* X509_PURPOSE_SSL_SERVER or _CLIENT */
    const char *host;   /* NULL: no name check */
    const char *ip;     /* NULL: no address check */
    const char *crl;    /* NULL: no revocation check */
    const char *anchor; /* the PKI whose root is trusted; default pki */
};

/* Verifies the chain file (leaf then intermediate) as a TLS peer would;
 * returns the X509_V_* result. */
static int verify(const char *chain_file, const struct check *c)
{
    STACK_OF(X509) *chain = read_certs(chain_file);
    X509 *leaf = sk_X509_shift(chain);
    X509_STORE *store = X509_STORE_new();
    X509 *root = read_cert(path_of(c->anchor ? c->anchor : pki, "root.crt"));
    X509_STORE_add_cert(store, root);
    X509_free(root);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, chain), 1);
    X509_STORE_CTX_set_purpose(ctx, c->purpose);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    if (c->host != NULL)
        X509_VERIFY_PARAM_set1_host(param, c->host, 0);
    if (c->ip != NULL)
        X509_VERIFY_PARAM_set1_ip_asc(param, c->ip);
    STACK_OF(X509_CRL) *crls = NULL;
    if (c->crl != NULL) {
        crls = sk_X509_CRL_new_null();
        BIO *b = BIO_new_file(c->crl, "r");
        X509_CRL *crl;
        while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL)
            sk_X509_CRL_push(crls, crl);
        ERR_clear_error();
        BIO_free(b);
        assert_int_equal(sk_X509_CRL_num(crls), 2);
        X509_STORE_CTX_set0_crls(ctx, crls);
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    int ok = X509_verify_cert(ctx);
    int err = X509_STORE_CTX_get_error(ctx);
    ERR_clear_error();
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    assert_true((ok == 1) == (err == X509_V_OK));
    return err;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    (void)state;
    static const char *const hosts[] = {"api.test", "10.1.2.3", "localhost"};
    static const char *const clients[] = {"alice", "bob"};
    char err[256];
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(pki, sizeof(pki), "%s/pki", dir);
    snprintf(foreign, sizeof(foreign), "%s/a/b/foreign", dir);
    struct pki_init_opts o = {.dir = pki,
                              .key = PKI_KEY_ECDSA,
                              .hosts = hosts,
                              .n_hosts = 3,
                              .clients = clients,
                              .n_clients = 2};
    if (pki_init(&o, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "pki_init: %s\n", err);
        return -1;
    }
    struct pki_init_opts f = {.dir = foreign, .key = PKI_KEY_RSA};
    if (pki_init(&f, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "pki_init: %s\n", err);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void assert_mode(const char *path, mode_t want)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    if ((sb.st_mode & 07777) != want)
        fail_msg("%s: mode %04o, want %04o", path, (unsigned)(sb.st_mode & 07777), (unsigned)want);
}

static void test_files_and_modes(void **state)
{
    (void)state;
    static const char *const public_files[] = {
        "root.crt",  "intermediate.crt", "ca-bundle.crt", "server-ecdsa.crt", "server-rsa.crt",
        "alice.crt", "bob.crt",          "revoked.crt",   "clients.crl",
    };
    /* Private keys, and the PKCS#12 files that hold them with their password. */
    static const char *const keys[] = {
        "root.key",  "intermediate.key", "server-ecdsa.key", "server-rsa.key",
        "alice.key", "bob.key",          "revoked.key",      "alice.p12",
        "bob.p12",   "revoked.p12",      "p12-password.txt",
    };
    assert_mode(pki, 0755);
    assert_mode(foreign, 0755);
    for (size_t i = 0; i < sizeof(public_files) / sizeof(public_files[0]); i++)
        assert_mode(path_of(pki, public_files[i]), 0644);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_mode(path_of(pki, keys[i]), 0600);

    /* Only those files: no temporary one left behind. */
    size_t n_files = 0;
    DIR *d = opendir(pki);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        assert_true(e->d_name[0] != '.');
        n_files++;
    }
    closedir(d);
    assert_int_equal(n_files, sizeof(public_files) / sizeof(public_files[0]) +
                                  sizeof(keys) / sizeof(keys[0]));
    /* The .p12 password: 128 random bits in hex, a new one for each PKI. */
    char pw[64] = "";
    char other[64] = "";
    read_password(pki, pw, sizeof(pw));
    read_password(foreign, other, sizeof(other));
    assert_int_equal(strlen(pw), 32);
    assert_int_equal(strspn(pw, "0123456789abcdef"), 32);
    assert_int_equal(strlen(other), 32);
    assert_string_not_equal(pw, other);

    /* Each leaf file: the leaf, then the intermediate. */
    X509 *inter = read_cert(path_of(pki, "intermediate.crt"));
    STACK_OF(X509) *chain = read_certs(path_of(pki, "alice.crt"));
    assert_int_equal(sk_X509_num(chain), 2);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 1), inter), 0);
    sk_X509_pop_free(chain, X509_free);
    chain = read_certs(path_of(pki, "ca-bundle.crt"));
    assert_int_equal(sk_X509_num(chain), 2);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), inter), 0);
    sk_X509_pop_free(chain, X509_free);
    X509_free(inter);
}

static void test_server_chains(void **state)
{
    (void)state;
    const char *servers[] = {"server-ecdsa", "server-rsa"};
    const int key_types[] = {EVP_PKEY_EC, EVP_PKEY_RSA};
    char name[64];
    for (int i = 0; i < 2; i++) {
        char crt[700];
        snprintf(crt, sizeof(crt), "%s/%s.crt", pki, servers[i]);
        struct check c = {.purpose = X509_PURPOSE_SSL_SERVER, .host = "localhost"};
        assert_int_equal(verify(crt, &c), X509_V_OK);
        c = (struct check){.purpose = X509_PURPOSE_SSL_SERVER, .ip = "127.0.0.1"};
        assert_int_equal(verify(crt, &c), X509_V_OK);
        c.ip = "::1";
        assert_int_equal(verify(crt, &c), X509_V_OK);
        c.ip = "10.1.2.3";
        assert_int_equal(verify(crt, &c), X509_V_OK);
        c = (struct check){.purpose = X509_PURPOSE_SSL_SERVER, .host = "api.test"};
        assert_int_equal(verify(crt, &c), X509_V_OK);

        /* The twins: another name, another address, the client purpose, a
         * foreign root. */
        c.host = "evil.test";
        assert_int_equal(verify(crt, &c), X509_V_ERR_HOSTNAME_MISMATCH);
        c = (struct check){.purpose = X509_PURPOSE_SSL_SERVER, .ip = "127.0.0.2"};
        assert_int_equal(verify(crt, &c), X509_V_ERR_IP_ADDRESS_MISMATCH);
        c = (struct check){.purpose = X509_PURPOSE_SSL_CLIENT};
        assert_int_equal(verify(crt, &c), X509_V_ERR_INVALID_PURPOSE);
        c = (struct check){.purpose = X509_PURPOSE_SSL_SERVER, .anchor = foreign};
        assert_int_equal(verify(crt, &c), X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

        X509 *x = read_cert(crt);
        snprintf(name, sizeof(name), "%s.key", servers[i]);
        EVP_PKEY *k = read_key(path_of(pki, name));
        assert_int_equal(EVP_PKEY_get_base_id(k), key_types[i]);
        assert_int_equal(X509_check_private_key(x, k), 1);
        /* CN = the first --hosts name. */
        char cn[64];
        X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
        assert_string_equal(cn, "api.test");
        EVP_PKEY_free(k);
        X509_free(x);
    }
    /* The foreign PKI had no --hosts: CN localhost, default SANs only. */
    struct check c = {.purpose = X509_PURPOSE_SSL_SERVER, .host = "localhost", .anchor = foreign};
    assert_int_equal(verify(path_of(foreign, "server-rsa.crt"), &c), X509_V_OK);
    c.host = "api.test";
    assert_int_equal(verify(path_of(foreign, "server-rsa.crt"), &c), X509_V_ERR_HOSTNAME_MISMATCH);
}

static void test_client_chains(void **state)
{
    (void)state;
    struct check c = {.purpose = X509_PURPOSE_SSL_CLIENT};
    assert_int_equal(verify(path_of(pki, "alice.crt"), &c), X509_V_OK);
    assert_int_equal(verify(path_of(pki, "bob.crt"), &c), X509_V_OK);
    c.anchor = foreign;
    assert_int_equal(verify(path_of(foreign, "alice.crt"), &c), X509_V_OK);

    /* The twins: a client certificate is no server certificate, and one
     * PKI's client is unknown to another. */
    c = (struct check){.purpose = X509_PURPOSE_SSL_SERVER};
    assert_int_equal(verify(path_of(pki, "alice.crt"), &c), X509_V_ERR_INVALID_PURPOSE);
    c = (struct check){.purpose = X509_PURPOSE_SSL_CLIENT, .anchor = foreign};
    assert_int_equal(verify(path_of(pki, "alice.crt"), &c),
                     X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

    X509 *x = read_cert(path_of(pki, "alice.crt"));
    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, "alice");
    EVP_PKEY *k = read_key(path_of(pki, "alice.key"));
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    assert_int_equal(X509_check_private_key(x, k), 1);
    EVP_PKEY_free(k);
    X509_free(x);
    k = read_key(path_of(foreign, "alice.key")); /* --key rsa */
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_RSA);
    EVP_PKEY_free(k);
}

static void test_crl(void **state)
{
    (void)state;
    const char *crl = path_of(pki, "clients.crl");
    struct check c = {.purpose = X509_PURPOSE_SSL_CLIENT, .crl = crl};
    assert_int_equal(verify(path_of(pki, "alice.crt"), &c), X509_V_OK);
    assert_int_equal(verify(path_of(pki, "revoked.crt"), &c), X509_V_ERR_CERT_REVOKED);
    /* Without the CRL check, "revoked" is a valid client: it is the CRL
     * that refuses it. */
    c.crl = NULL;
    assert_int_equal(verify(path_of(pki, "revoked.crt"), &c), X509_V_OK);

    /* Both CRLs: the intermediate's first, fresh for 30 days. */
    BIO *b = BIO_new_file(crl, "r");
    X509_CRL *inter_crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL);
    BIO_free(b);
    X509 *inter = read_cert(path_of(pki, "intermediate.crt"));
    assert_int_equal(X509_NAME_cmp(X509_CRL_get_issuer(inter_crl), X509_get_subject_name(inter)),
                     0);
    assert_int_equal(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(inter_crl)), 1);
    int days = 0;
    int secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, NULL, X509_CRL_get0_nextUpdate(inter_crl)), 1);
    assert_int_equal(days, 29); /* 30 days from an hour ago */
    X509_CRL_free(inter_crl);
    X509_free(inter);
}

static void test_ca_properties(void **state)
{
    (void)state;
    X509 *root = read_cert(path_of(pki, "root.crt"));
    X509 *inter = read_cert(path_of(pki, "intermediate.crt"));
    X509 *leaf = read_cert(path_of(pki, "server-ecdsa.crt"));
    assert_int_equal(X509_check_ca(root), 1);
    assert_int_equal(X509_check_ca(inter), 1);
    assert_int_equal(X509_check_ca(leaf), 0);
    assert_int_equal(X509_get_pathlen(inter), 0);
    assert_true(X509_get_key_usage(root) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
    int crit = 0;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(root, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    assert_non_null(X509_get0_subject_key_id(inter));
    assert_non_null(X509_get0_authority_key_id(inter));
    assert_int_equal(
        ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(inter), X509_get0_subject_key_id(root)),
        0);

    /* Lifetimes: 10 years, 5 years, 1 year; the leaf from an hour ago. */
    int days = 0;
    int secs = 0;
    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(root), X509_get0_notAfter(root));
    assert_int_equal(days, 3650);
    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(inter), X509_get0_notAfter(inter));
    assert_int_equal(days, 1825);
    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(leaf), X509_get0_notAfter(leaf));
    assert_int_equal(days, 365);
    ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(leaf), NULL);
    assert_int_equal(days, 0);
    /* backdated one hour; generous above for slow runs (valgrind) */
    assert_true(secs >= 3600 && secs < 3600 + 900);

    /* Serials: positive, 128 bits, all different. */
    const ASN1_INTEGER *s1 = X509_get0_serialNumber(root);
    const ASN1_INTEGER *s2 = X509_get0_serialNumber(inter);
    assert_int_equal(ASN1_STRING_length(s1), 16);
    assert_int_equal(ASN1_STRING_type(s1), V_ASN1_INTEGER);
    assert_int_not_equal(ASN1_INTEGER_cmp(s1, s2), 0);
    assert_int_not_equal(ASN1_INTEGER_cmp(s2, X509_get0_serialNumber(leaf)), 0);
    X509_free(leaf);
    X509_free(inter);
    X509_free(root);
}

static void test_p12(void **state)
{
    (void)state;
    BIO *b = BIO_new_file(path_of(pki, "bob.p12"), "rb");
    PKCS12 *p12 = d2i_PKCS12_bio(b, NULL);
    BIO_free(b);
    assert_non_null(p12);
    char pw[64] = "";
    read_password(pki, pw, sizeof(pw));
    assert_int_equal(PKCS12_verify_mac(p12, pw, -1), 1);
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *ca = NULL;
    assert_int_equal(PKCS12_parse(p12, pw, &key, &cert, &ca), 1);
    X509 *bob = read_cert(path_of(pki, "bob.crt"));
    X509 *inter = read_cert(path_of(pki, "intermediate.crt"));
    assert_int_equal(X509_cmp(cert, bob), 0);
    assert_int_equal(X509_check_private_key(bob, key), 1);
    assert_int_equal(sk_X509_num(ca), 1);
    assert_int_equal(X509_cmp(sk_X509_value(ca, 0), inter), 0);
    EVP_PKEY_free(key);
    X509_free(cert);
    sk_X509_pop_free(ca, X509_free);

    /* The twins: a wrong password, and the fixed one of older versions,
     * open nothing. */
    static const char *const wrong[] = {"tollgate", "tollgat"};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        key = NULL;
        cert = NULL;
        ca = NULL;
        assert_int_equal(PKCS12_verify_mac(p12, wrong[i], -1), 0);
        assert_int_equal(PKCS12_parse(p12, wrong[i], &key, &cert, &ca), 0);
        assert_null(key);
        assert_null(cert);
        ERR_clear_error();
    }
    PKCS12_free(p12);
    X509_free(inter);
    X509_free(bob);
}

static void test_bad_options(void **state)
{
    (void)state;
    char err[256];
    char sub[700];
    const char *bad_host[] = {"bad host!"};
    struct pki_init_opts o = {.dir = path_of(dir, "bad"), .hosts = bad_host, .n_hosts = 1};
    assert_int_equal(pki_init(&o, err, sizeof(err)), TG_E_CONFIG);
    assert_string_equal(err, "invalid host \"bad host!\": not a DNS name or an IP address");
    assert_int_equal(access(path_of(dir, "bad"), F_OK), -1); /* nothing written */

    const char *names[][1] = {{"revoked"}, {"../x"}, {"root"}};
    const char *want[] = {
        "client name \"revoked\" is taken by a file of the PKI; choose another",
        "invalid client name \"../x\": use up to 64 letters, digits, '.', '-', '_'",
        "client name \"root\" is taken by a file of the PKI; choose another",
    };
    for (size_t i = 0; i < 3; i++) {
        o = (struct pki_init_opts){.dir = path_of(dir, "bad"), .clients = names[i], .n_clients = 1};
        assert_int_equal(pki_init(&o, err, sizeof(err)), TG_E_CONFIG);
        assert_string_equal(err, want[i]);
    }
    const char *twice[] = {"carol", "carol"};
    o = (struct pki_init_opts){.dir = path_of(dir, "bad"), .clients = twice, .n_clients = 2};
    assert_int_equal(pki_init(&o, err, sizeof(err)), TG_E_CONFIG);
    assert_string_equal(err, "client \"carol\" is named twice");

    /* A directory that cannot be made: below a regular file. */
    snprintf(sub, sizeof(sub), "%s/root.crt/sub", pki);
    o = (struct pki_init_opts){.dir = sub};
    assert_int_equal(pki_init(&o, err, sizeof(err)), TG_E_INTERNAL);
    char want_dir[800];
    snprintf(want_dir, sizeof(want_dir), "cannot create directory %s: Not a directory", sub);
    assert_string_equal(err, want_dir);
}

static void test_replace(void **state)
{
    (void)state;
    char err[256];
    X509 *before = read_cert(path_of(foreign, "root.crt"));
    struct pki_init_opts o = {.dir = foreign, .key = PKI_KEY_RSA};
    assert_int_equal(pki_init(&o, err, sizeof(err)), TG_OK);
    X509 *after = read_cert(path_of(foreign, "root.crt"));
    assert_int_not_equal(X509_cmp(before, after), 0);
    assert_mode(path_of(foreign, "root.key"), 0600);
    struct check c = {.purpose = X509_PURPOSE_SSL_CLIENT, .anchor = foreign};
    assert_int_equal(verify(path_of(foreign, "alice.crt"), &c), X509_V_OK);
    X509_free(after);
    X509_free(before);
}

static int run_cmd_of(int (*cmd)(int, char **), int argc, const char **argv)
{
    /* The command prints a summary; keep test output readable. */
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    FILE *null = freopen("/dev/null", "w", stdout);
    assert_non_null(null);
    int rc = cmd(argc, (char **)argv);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    return rc;
}

static int run_cmd(int argc, const char **argv)
{
    return run_cmd_of(pki_cmd_init, argc, argv);
}

static void test_cmd(void **state)
{
    (void)state;
    char out[700];
    snprintf(out, sizeof(out), "%s/cmd", dir);
    const char *ok[] = {"init",      out,         "--key=rsa", "--hosts", "a.test,10.9.9.9",
                        "--clients", "carol,dave"};
    assert_int_equal(run_cmd(7, ok), 0);
    EVP_PKEY *k = read_key(path_of(out, "dave.key"));
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_RSA);
    EVP_PKEY_free(k);
    struct check c = {.purpose = X509_PURPOSE_SSL_SERVER, .ip = "10.9.9.9", .anchor = out};
    assert_int_equal(verify(path_of(out, "server-ecdsa.crt"), &c), X509_V_OK);
    assert_int_equal(access(path_of(out, "alice.crt"), F_OK), -1); /* --clients replaces */

    const char *help[] = {"init", "--help"};
    assert_int_equal(run_cmd(2, help), 0);

    /* The twins: every usage error exits 2. */
    const char *no_dir[] = {"init"};
    const char *bad_key[] = {"init", out, "--key", "dsa"};
    const char *no_value[] = {"init", out, "--hosts"};
    const char *empty_item[] = {"init", out, "--clients", "alice,,bob"};
    const char *unknown[] = {"init", out, "--force"};
    const char *two_dirs[] = {"init", out, "other"};
    const char *reserved[] = {"init", out, "--clients=intermediate"};
    assert_int_equal(run_cmd(1, no_dir), 2);
    assert_int_equal(run_cmd(4, bad_key), 2);
    assert_int_equal(run_cmd(3, no_value), 2);
    assert_int_equal(run_cmd(4, empty_item), 2);
    assert_int_equal(run_cmd(3, unknown), 2);
    assert_int_equal(run_cmd(3, two_dirs), 2);
    assert_int_equal(run_cmd(3, reserved), 2);
}

/* The bytes of a file (at most 64 KiB), for "unchanged" checks. */
static size_t slurp(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, len, f);
    assert_true(feof(f));
    fclose(f);
    return n;
}

/* The cRLNumber of the first CRL of path issued by the subject of ca_file. */
static long crl_number_of(const char *path, const char *ca_file, int *n_revoked)
{
    X509 *ca = read_cert(ca_file);
    BIO *b = BIO_new_file(path, "r");
    assert_non_null(b);
    X509_CRL *crl;
    long number = -1;
    while (number < 0 && (crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ca)) == 0) {
            assert_int_equal(X509_CRL_verify(crl, X509_get0_pubkey(ca)), 1);
            ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, NULL, NULL);
            assert_non_null(num);
            number = ASN1_INTEGER_get(num);
            ASN1_INTEGER_free(num);
            STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl); /* NULL: none */
            *n_revoked = rev != NULL ? sk_X509_REVOKED_num(rev) : 0;
        }
        X509_CRL_free(crl);
    }
    ERR_clear_error();
    BIO_free(b);
    X509_free(ca);
    assert_true(number >= 0);
    return number;
}

static void test_revoke(void **state)
{
    (void)state;
    static const char *const clients[] = {"alice", "bob"};
    char d[700];
    char err[512];
    char before[65536];
    char after[65536];
    int n = 0;
    struct pki_revoke_result res;
    snprintf(d, sizeof(d), "%s/rev", dir);
    struct pki_init_opts io = {.dir = d, .clients = clients, .n_clients = 2};
    assert_int_equal(pki_init(&io, err, sizeof(err)), TG_OK);
    char crl[700];
    snprintf(crl, sizeof(crl), "%s", path_of(d, "clients.crl"));
    struct check c = {.purpose = X509_PURPOSE_SSL_CLIENT, .crl = crl, .anchor = d};

    struct pki_revoke_opts o = {.dir = d, .cert = "alice", .reason = CRL_REASON_SUPERSEDED};
    assert_int_equal(pki_revoke(&o, &res, err, sizeof(err)), TG_OK);
    assert_false(res.is_already_revoked);
    assert_string_equal(res.ca, "intermediate");
    assert_string_equal(res.crl_number, "2");
    assert_int_equal(res.n_revoked, 2); /* "revoked" of pki init is kept */
    assert_mode(crl, 0644);
    assert_int_equal(verify(path_of(d, "alice.crt"), &c), X509_V_ERR_CERT_REVOKED);
    assert_int_equal(verify(path_of(d, "revoked.crt"), &c), X509_V_ERR_CERT_REVOKED);
    assert_int_equal(verify(path_of(d, "bob.crt"), &c), X509_V_OK); /* the twin */
    assert_int_equal(crl_number_of(crl, path_of(d, "intermediate.crt"), &n), 2);
    assert_int_equal(n, 2);
    assert_int_equal(crl_number_of(crl, path_of(d, "root.crt"), &n), 2);
    assert_int_equal(n, 0);

    /* Again: already revoked, and the file stays as it is. */
    size_t len = slurp(crl, before, sizeof(before));
    assert_int_equal(pki_revoke(&o, &res, err, sizeof(err)), TG_OK);
    assert_true(res.is_already_revoked);
    assert_string_equal(res.crl_number, "2");
    assert_int_equal(slurp(crl, after, sizeof(after)), len);
    assert_memory_equal(before, after, len);

    /* A path works too; the intermediate goes on the root's CRL and with it
     * every client falls. */
    o.cert = path_of(d, "intermediate.crt");
    assert_int_equal(pki_revoke(&o, &res, err, sizeof(err)), TG_OK);
    assert_string_equal(res.ca, "root");
    assert_string_equal(res.crl_number, "3");
    assert_int_equal(crl_number_of(crl, path_of(d, "root.crt"), &n), 3);
    assert_int_equal(n, 1);
    assert_int_equal(crl_number_of(crl, path_of(d, "intermediate.crt"), &n), 3);
    assert_int_equal(n, 2);
    assert_int_equal(verify(path_of(d, "bob.crt"), &c), X509_V_ERR_CERT_REVOKED);

    /* Without clients.crl, a new one from number 1. */
    assert_int_equal(remove(crl), 0);
    o.cert = "bob";
    o.crl_days = 2;
    assert_int_equal(pki_revoke(&o, &res, err, sizeof(err)), TG_OK);
    assert_string_equal(res.crl_number, "1");
    assert_int_equal(crl_number_of(crl, path_of(d, "intermediate.crt"), &n), 1);
    assert_int_equal(n, 1);
    assert_int_equal(verify(path_of(d, "alice.crt"), &c), X509_V_OK);
}

/* Each refusal leaves clients.crl as it was. */
static void test_revoke_refusals(void **state)
{
    (void)state;
    char d[700];
    char err[512];
    char before[65536];
    char after[65536];
    struct pki_revoke_result res;
    snprintf(d, sizeof(d), "%s/refuse", dir);
    struct pki_init_opts io = {.dir = d};
    assert_int_equal(pki_init(&io, err, sizeof(err)), TG_OK);
    char crl[700];
    snprintf(crl, sizeof(crl), "%s", path_of(d, "clients.crl"));
    size_t len = slurp(crl, before, sizeof(before));
    const char *refused[] = {
        path_of(foreign, "alice.crt"), /* another PKI's client */
        path_of(foreign, "root.crt"),  /* another PKI's CA */
        "root",                        /* a CA does not revoke itself */
        "nobody",                      /* no such client */
        path_of(d, "alice.key"),       /* no certificate in it */
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct pki_revoke_opts o = {.dir = d, .cert = refused[i]};
        err[0] = '\0';
        assert_int_equal(pki_revoke(&o, &res, err, sizeof(err)), TG_E_CONFIG);
        assert_true(err[0] != '\0');
        assert_int_equal(slurp(crl, after, sizeof(after)), len);
        assert_memory_equal(before, after, len);
    }

    /* A missing CA key. */
    char moved[700];
    snprintf(moved, sizeof(moved), "%s.away", path_of(d, "intermediate.key"));
    assert_int_equal(rename(path_of(d, "intermediate.key"), moved), 0);
    struct pki_revoke_opts o = {.dir = d, .cert = "alice"};
    assert_int_equal(pki_revoke(&o, &res, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "intermediate.key"));
    /* The root's key in its place: it does not belong to the intermediate. */
    FILE *f = fopen(path_of(d, "intermediate.key"), "w");
    assert_non_null(f);
    char key[8192];
    fwrite(key, 1, slurp(path_of(d, "root.key"), key, sizeof(key)), f);
    fclose(f);
    assert_int_equal(pki_revoke(&o, &res, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "does not belong"));
    assert_int_equal(rename(moved, path_of(d, "intermediate.key")), 0);

    /* A CRL of another CA in clients.crl is not dropped silently. */
    char foreign_crl[65536];
    size_t flen = slurp(path_of(foreign, "clients.crl"), foreign_crl, sizeof(foreign_crl));
    f = fopen(crl, "ab");
    assert_non_null(f);
    fwrite(foreign_crl, 1, flen, f);
    fclose(f);
    assert_int_equal(pki_revoke(&o, &res, err, sizeof(err)), TG_E_CONFIG);
    assert_non_null(strstr(err, "not rewriting"));
    /* The twin: the file as pki init wrote it is taken. */
    f = fopen(crl, "wb");
    assert_non_null(f);
    fwrite(before, 1, len, f);
    fclose(f);
    assert_int_equal(pki_revoke(&o, &res, err, sizeof(err)), TG_OK);
    assert_string_equal(res.crl_number, "2");
}

static void test_revoke_cmd(void **state)
{
    (void)state;
    char d[700];
    char err[256];
    snprintf(d, sizeof(d), "%s/revcmd", dir);
    struct pki_init_opts io = {.dir = d};
    assert_int_equal(pki_init(&io, err, sizeof(err)), TG_OK);
    const char *ok[] = {"revoke", d, "alice", "--reason=keyCompromise", "--crl-days", "7"};
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 6, ok), 0);
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 6, ok), 0); /* already revoked */
    const char *help[] = {"revoke", "--help"};
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 2, help), 0);
    const char *refused[] = {"revoke", d, "root"};
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 3, refused), 1);

    /* The twins: every usage error exits 2. */
    const char *no_cert[] = {"revoke", d};
    const char *bad_reason[] = {"revoke", d, "alice", "--reason", "certificateHold"};
    const char *no_reason[] = {"revoke", d, "alice", "--reason"};
    const char *zero_days[] = {"revoke", d, "alice", "--crl-days", "0"};
    const char *many_days[] = {"revoke", d, "alice", "--crl-days=3651"};
    const char *junk_days[] = {"revoke", d, "alice", "--crl-days", "7d"};
    const char *unknown[] = {"revoke", d, "alice", "--force"};
    const char *extra[] = {"revoke", d, "alice", "bob"};
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 2, no_cert), 2);
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 5, bad_reason), 2);
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 4, no_reason), 2);
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 5, zero_days), 2);
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 4, many_days), 2);
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 5, junk_days), 2);
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 4, unknown), 2);
    assert_int_equal(run_cmd_of(pki_cmd_revoke, 4, extra), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_files_and_modes),
        cmocka_unit_test(test_server_chains),
        cmocka_unit_test(test_client_chains),
        cmocka_unit_test(test_crl),
        cmocka_unit_test(test_ca_properties),
        cmocka_unit_test(test_p12),
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_cmd),
        cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_revoke_refusals),
        cmocka_unit_test(test_revoke_cmd),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
