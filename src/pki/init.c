/*
 * tollgate pki init: a development PKI (root, intermediate, servers,
 * clients, CRLs, PKCS#12) minted with OpenSSL's API, for the demo, the
 * end-to-end tests and first experiments. Not for production: the CA keys
 * sit next to everything else.
 */
#include "pki/internal.h"
#include "pki/pki.h"

#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define PKI_HOUR           3600L
#define PKI_DAY            (24 * PKI_HOUR)
#define PKI_ROOT_DAYS      3650
#define PKI_INTER_DAYS     1825
#define PKI_LEAF_DAYS      365
#define PKI_P12_PW_BYTES   16 /* 128 random bits: 32 hex digits */
#define PKI_ORG            "tollgate dev PKI"
#define PKI_MAX_NAME       64
#define PKI_REVOKED_CLIENT "revoked"

/* A certificate and its private key, both owned. */
struct pki_pair {
    X509 *cert;
    EVP_PKEY *key;
};

/* What a certificate to issue looks like. */
struct pki_spec {
    const char *cn;
    enum pki_key_type key_type;
    const struct pki_pair *issuer; /* NULL: self-signed */
    long days;
    const char *basic_constraints;
    const char *key_usage;
    const char *ext_key_usage; /* NULL: none */
    GENERAL_NAMES *sans;       /* borrowed; NULL: none */
};

/* One run: the options, where errors go, and the tag that makes the CA
 * names of this PKI different from those of any other. */
struct pki_run {
    const struct pki_init_opts *o;
    char *err;
    size_t err_len;
    char tag[9];
    char p12_password[2 * PKI_P12_PW_BYTES + 1]; /* new each run; cleared at the end */
};

/* File names the PKI itself uses; a client may not take them. */
static const char *const reserved_names[] = {
    "root",       "intermediate", "ca-bundle",    "server-ecdsa",
    "server-rsa", "clients",      "p12-password", PKI_REVOKED_CLIENT,
};

static void pair_fini(struct pki_pair *p)
{
    X509_free(p->cert);
    EVP_PKEY_free(p->key);
    p->cert = NULL;
    p->key = NULL;
}

/* Fills err with what and OpenSSL's first queued error. */
static enum tg_status fail_ssl(struct pki_run *r, const char *what)
{
    char detail[256] = "unknown error";
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, detail, sizeof(detail));
    snprintf(r->err, r->err_len, "%s: %s", what, detail);
    return TG_E_INTERNAL;
}

static bool is_valid_dns_name(const char *s)
{
    size_t n = strlen(s);
    size_t label = 0;
    if (n == 0 || n > 253)
        return false;
    if (strncmp(s, "*.", 2) == 0)
        s += 2;
    for (; *s != '\0'; s++) {
        bool is_alnum =
            (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9');
        if (*s == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if (is_alnum || *s == '-') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

static bool is_ip_address(const char *s)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(s);
    ERR_clear_error();
    ASN1_OCTET_STRING_free(ip);
    return ip != NULL;
}

/* Client names become file names: keep them plain. */
static bool is_valid_client_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PKI_MAX_NAME || s[0] == '.' || s[0] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool is_ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_';
        if (!is_ok)
            return false;
    }
    return true;
}

static enum tg_status check_opts(struct pki_run *r)
{
    const struct pki_init_opts *o = r->o;
    if (o->dir == NULL || o->dir[0] == '\0') {
        snprintf(r->err, r->err_len, "no directory given");
        return TG_E_CONFIG;
    }
    for (size_t i = 0; i < o->n_hosts; i++) {
        if (!is_ip_address(o->hosts[i]) && !is_valid_dns_name(o->hosts[i])) {
            snprintf(r->err, r->err_len, "invalid host \"%s\": not a DNS name or an IP address",
                     o->hosts[i]);
            return TG_E_CONFIG;
        }
    }
    for (size_t i = 0; i < o->n_clients; i++) {
        const char *name = o->clients[i];
        if (!is_valid_client_name(name)) {
            snprintf(r->err, r->err_len,
                     "invalid client name \"%s\": use up to %d letters, digits, '.', '-', '_'",
                     name, PKI_MAX_NAME);
            return TG_E_CONFIG;
        }
        for (size_t k = 0; k < TG_ARRAY_LEN(reserved_names); k++) {
            if (strcmp(name, reserved_names[k]) == 0) {
                snprintf(r->err, r->err_len,
                         "client name \"%s\" is taken by a file of the PKI; choose another", name);
                return TG_E_CONFIG;
            }
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(name, o->clients[k]) == 0) {
                snprintf(r->err, r->err_len, "client \"%s\" is named twice", name);
                return TG_E_CONFIG;
            }
        }
    }
    return TG_OK;
}

/* Creates dir and its missing parents (0755). */
static enum tg_status make_dir(struct pki_run *r, const char *dir)
{
    char path[PATH_MAX];
    struct stat sb;
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        snprintf(r->err, r->err_len, "directory name too long");
        return TG_E_CONFIG;
    }
    for (char *p = path + 1;; p++) {
        bool is_end = *p == '\0';
        if (*p != '/' && !is_end)
            continue;
        *p = '\0';
        if (mkdir(path, 0755) == 0) {
            /* mkdir applies the umask; the PKI's public files are meant to
             * be readable. */
            if (chmod(path, 0755) != 0)
                goto fail;
        } else if (errno != EEXIST) {
            goto fail;
        }
        if (is_end)
            break;
        *p = '/';
    }
    if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode))
        return TG_OK;
    errno = ENOTDIR;
fail:
    snprintf(r->err, r->err_len, "cannot create directory %s: %s", path, strerror(errno));
    return TG_E_INTERNAL;
}

/* Writes bytes to dir/name, replacing any old file atomically and never
 * readable by others on the way (tg_write_file_atomic). */
static enum tg_status write_file(struct pki_run *r, const char *name, mode_t mode, const void *data,
                                 size_t len)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", r->o->dir, name) >= (int)sizeof(path)) {
        snprintf(r->err, r->err_len, "path too long: %s/%s", r->o->dir, name);
        return TG_E_CONFIG;
    }
    return tg_write_file_atomic(path, data, len, mode, r->err, r->err_len) == TG_OK ? TG_OK
                                                                                    : TG_E_INTERNAL;
}

/* Writes what a memory BIO holds. */
static enum tg_status write_bio(struct pki_run *r, const char *name, mode_t mode, BIO *bio)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    return write_file(r, name, mode, data, len > 0 ? (size_t)len : 0);
}

/* Writes certificates as PEM, in order. */
static enum tg_status write_certs(struct pki_run *r, const char *name, X509 *a, X509 *b)
{
    enum tg_status st = TG_E_INTERNAL;
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio == NULL || !PEM_write_bio_X509(bio, a) || (b != NULL && !PEM_write_bio_X509(bio, b)))
        st = fail_ssl(r, name);
    else
        st = write_bio(r, name, 0644, bio);
    BIO_free(bio);
    return st;
}

/* Writes an unencrypted PKCS#8 key, 0600. Secure memory: the buffer is
 * cleared when freed. */
static enum tg_status write_key(struct pki_run *r, const char *name, EVP_PKEY *key)
{
    enum tg_status st = TG_E_INTERNAL;
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio == NULL || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))
        st = fail_ssl(r, name);
    else
        st = write_bio(r, name, 0600, bio);
    BIO_free(bio);
    return st;
}

/* A PKCS#12 of leaf, key and the intermediate: AES-256-CBC with PBKDF2 for
 * both the key and the certificates, and a SHA-256 MAC. */
static enum tg_status write_p12(struct pki_run *r, const char *name, const char *friendly,
                                const struct pki_pair *leaf, const struct pki_pair *inter)
{
    enum tg_status st = TG_E_INTERNAL;
    PKCS12 *p12 = NULL;
    BIO *bio = NULL;
    STACK_OF(X509) *ca = sk_X509_new_null();
    if (ca != NULL && sk_X509_push(ca, inter->cert) > 0)
        p12 = PKCS12_create(r->p12_password, friendly, leaf->key, leaf->cert, ca, NID_aes_256_cbc,
                            NID_aes_256_cbc, PKCS12_DEFAULT_ITER, -1, 0);
    /* mac_iter -1 above leaves the MAC out, so that it is made here with
     * SHA-256 whatever the library's default. */
    if (p12 != NULL &&
        PKCS12_set_mac(p12, r->p12_password, -1, NULL, 0, PKCS12_DEFAULT_ITER, EVP_sha256()))
        bio = BIO_new(BIO_s_mem());
    if (bio != NULL && i2d_PKCS12_bio(bio, p12))
        st = write_bio(r, name, 0600, bio);
    else
        st = fail_ssl(r, name);
    BIO_free(bio);
    PKCS12_free(p12);
    sk_X509_free(ca);
    return st;
}

/* A new random password for the .p12 files of this run, in hex (plain
 * characters: it goes on command lines), written 0600 to p12-password.txt
 * before any .p12 exists. */
static enum tg_status make_p12_password(struct pki_run *r)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[PKI_P12_PW_BYTES];
    char line[sizeof(r->p12_password) + 1];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return fail_ssl(r, "no random bytes");
    for (size_t i = 0; i < sizeof(b); i++) {
        r->p12_password[2 * i] = hex[b[i] >> 4];
        r->p12_password[2 * i + 1] = hex[b[i] & 0x0f];
    }
    r->p12_password[2 * sizeof(b)] = '\0';
    int n = snprintf(line, sizeof(line), "%s\n", r->p12_password);
    enum tg_status st = write_file(r, "p12-password.txt", 0600, line, (size_t)n);
    OPENSSL_cleanse(b, sizeof(b));
    OPENSSL_cleanse(line, sizeof(line));
    return st;
}

/* A positive random 128-bit serial (RFC 5280 §4.1.2.2: at most 20 octets). */
static bool set_random_serial(X509 *x)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return false;
    b[0] = (b[0] & 0x7f) | 0x40; /* positive, and always 16 octets */
    BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    bool ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok;
}

static bool add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    bool ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

static bool set_name(X509 *x, const char *cn)
{
    X509_NAME *name = X509_get_subject_name(x);
    return X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)PKI_ORG, -1,
                                      -1, 0) == 1 &&
           X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                      0) == 1;
}

static EVP_PKEY *new_key(enum pki_key_type type)
{
    return type == PKI_KEY_RSA ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
}

/* Issues a key and a certificate as s says. Valid from an hour ago, so that
 * a peer whose clock is slightly behind accepts it. */
static enum tg_status issue(struct pki_run *r, const struct pki_spec *s, struct pki_pair *out)
{
    struct pki_pair p = {0};
    p.key = new_key(s->key_type);
    p.cert = X509_new();
    if (p.key == NULL || p.cert == NULL)
        goto fail;
    X509 *x = p.cert;
    X509 *issuer = s->issuer ? s->issuer->cert : x;
    if (!X509_set_version(x, X509_VERSION_3) || !set_random_serial(x) || !set_name(x, s->cn) ||
        !X509_set_issuer_name(x, X509_get_subject_name(issuer)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -PKI_HOUR) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), s->days * PKI_DAY - PKI_HOUR) ||
        !X509_set_pubkey(x, p.key))
        goto fail;
    if (!add_ext(x, issuer, NID_basic_constraints, s->basic_constraints) ||
        !add_ext(x, issuer, NID_key_usage, s->key_usage) ||
        (s->ext_key_usage != NULL && !add_ext(x, issuer, NID_ext_key_usage, s->ext_key_usage)) ||
        !add_ext(x, issuer, NID_subject_key_identifier, "hash") ||
        !add_ext(x, issuer, NID_authority_key_identifier, "keyid:always"))
        goto fail;
    if (s->sans != NULL &&
        !X509_add1_ext_i2d(x, NID_subject_alt_name, s->sans, 0, X509V3_ADD_DEFAULT))
        goto fail;
    if (!X509_sign(x, s->issuer ? s->issuer->key : p.key, EVP_sha256()))
        goto fail;
    *out = p;
    return TG_OK;
fail:
    pair_fini(&p);
    char what[128];
    snprintf(what, sizeof(what), "cannot issue the certificate of %s", s->cn);
    return fail_ssl(r, what);
}

/* Adds host to the SANs as an IP address or a DNS name, once. */
static bool add_san(GENERAL_NAMES *sans, const char *host)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
    ERR_clear_error();
    if (g == NULL) {
        ASN1_OCTET_STRING_free(ip);
        return false;
    }
    if (ip != NULL) {
        GENERAL_NAME_set0_value(g, GEN_IPADD, ip);
    } else {
        ASN1_IA5STRING *dns = ASN1_IA5STRING_new();
        if (dns == NULL || !ASN1_STRING_set(dns, host, -1)) {
            ASN1_IA5STRING_free(dns);
            GENERAL_NAME_free(g);
            return false;
        }
        GENERAL_NAME_set0_value(g, GEN_DNS, dns);
    }
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); i++) {
        if (GENERAL_NAME_cmp(sk_GENERAL_NAME_value(sans, i), g) == 0) {
            GENERAL_NAME_free(g);
            return true;
        }
    }
    if (sk_GENERAL_NAME_push(sans, g) > 0)
        return true;
    GENERAL_NAME_free(g);
    return false;
}

/* Writes NAME.crt (leaf then intermediate) and NAME.key. */
static enum tg_status write_leaf(struct pki_run *r, const char *base, const struct pki_pair *leaf,
                                 const struct pki_pair *inter)
{
    char name[PKI_MAX_NAME + 16];
    snprintf(name, sizeof(name), "%s.crt", base);
    enum tg_status st = write_certs(r, name, leaf->cert, inter->cert);
    if (st != TG_OK)
        return st;
    snprintf(name, sizeof(name), "%s.key", base);
    return write_key(r, name, leaf->key);
}

static enum tg_status issue_servers(struct pki_run *r, const struct pki_pair *inter)
{
    static const char *const defaults[] = {"localhost", "127.0.0.1", "::1"};
    enum tg_status st = TG_E_INTERNAL;
    GENERAL_NAMES *sans = sk_GENERAL_NAME_new_null();
    /* X.509 caps a common name at 64 characters (RFC 5280 appendix A.1). */
    const char *first = r->o->n_hosts > 0 ? r->o->hosts[0] : "localhost";
    const char *cn = strlen(first) <= PKI_MAX_NAME ? first : "localhost";
    bool ok = sans != NULL;
    for (size_t i = 0; i < TG_ARRAY_LEN(defaults) && ok; i++)
        ok = add_san(sans, defaults[i]);
    for (size_t i = 0; i < r->o->n_hosts && ok; i++)
        ok = add_san(sans, r->o->hosts[i]);
    if (!ok) {
        st = fail_ssl(r, "cannot build the server names");
        goto out;
    }
    /* Both kinds, whatever --key says, so that a listener can serve each. */
    for (int k = 0; k < 2; k++) {
        bool is_rsa = k == 1;
        struct pki_spec spec = {
            .cn = cn,
            .key_type = is_rsa ? PKI_KEY_RSA : PKI_KEY_ECDSA,
            .issuer = inter,
            .days = PKI_LEAF_DAYS,
            .basic_constraints = "critical,CA:FALSE",
            .key_usage =
                is_rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature",
            .ext_key_usage = "serverAuth",
            .sans = sans,
        };
        struct pki_pair leaf = {0};
        st = issue(r, &spec, &leaf);
        if (st == TG_OK)
            st = write_leaf(r, is_rsa ? "server-rsa" : "server-ecdsa", &leaf, inter);
        pair_fini(&leaf);
        if (st != TG_OK)
            goto out;
    }
out:
    GENERAL_NAMES_free(sans);
    return st;
}

/* Issues the client name: NAME.crt, NAME.key and NAME.p12. The certificate
 * is kept in *cert when cert is not NULL. */
static enum tg_status issue_client(struct pki_run *r, const struct pki_pair *inter,
                                   const char *name, X509 **cert)
{
    struct pki_spec spec = {
        .cn = name,
        .key_type = r->o->key,
        .issuer = inter,
        .days = PKI_LEAF_DAYS,
        .basic_constraints = "critical,CA:FALSE",
        .key_usage = "critical,digitalSignature",
        .ext_key_usage = "clientAuth",
    };
    struct pki_pair leaf = {0};
    char file[PKI_MAX_NAME + 16];
    enum tg_status st = issue(r, &spec, &leaf);
    if (st == TG_OK)
        st = write_leaf(r, name, &leaf, inter);
    if (st == TG_OK) {
        snprintf(file, sizeof(file), "%s.p12", name);
        st = write_p12(r, file, name, &leaf, inter);
    }
    if (st == TG_OK && cert != NULL) {
        *cert = leaf.cert;
        leaf.cert = NULL;
    }
    pair_fini(&leaf);
    return st;
}

/* clients.crl: the intermediate's CRL (revoking revoked) and the root's
 * (empty, so that checking the whole chain finds one for every CA). */
static enum tg_status write_crls(struct pki_run *r, const struct pki_pair *root,
                                 const struct pki_pair *inter, X509 *revoked)
{
    enum tg_status st = TG_E_INTERNAL;
    time_t now = time(NULL);
    X509_CRL *inter_crl = NULL;
    X509_CRL *root_crl = NULL;
    BIO *bio = NULL;
    BIGNUM *one = BN_new();
    ASN1_TIME *when = X509_time_adj_ex(NULL, 0, -PKI_HOUR, &now);
    X509_REVOKED *entry = when != NULL ? pki_crl_entry(X509_get0_serialNumber(revoked), when,
                                                       CRL_REASON_KEY_COMPROMISE)
                                       : NULL;
    STACK_OF(X509_REVOKED) *entries = sk_X509_REVOKED_new_null();
    if (one == NULL || !BN_one(one) || entry == NULL || entries == NULL ||
        sk_X509_REVOKED_push(entries, entry) <= 0)
        goto fail;
    entry = NULL; /* in entries */
    struct pki_crl_spec spec = {
        .issuer = inter->cert,
        .key = inter->key,
        .entries = entries,
        .number = one,
        .now = now,
        .days = PKI_CRL_DAYS,
    };
    inter_crl = pki_crl_make(&spec);
    spec.issuer = root->cert;
    spec.key = root->key;
    spec.entries = NULL;
    root_crl = pki_crl_make(&spec);
    bio = BIO_new(BIO_s_mem());
    if (inter_crl == NULL || root_crl == NULL || bio == NULL ||
        !PEM_write_bio_X509_CRL(bio, inter_crl) || !PEM_write_bio_X509_CRL(bio, root_crl))
        goto fail;
    st = write_bio(r, "clients.crl", 0644, bio);
    goto out;
fail:
    st = fail_ssl(r, "cannot make the CRLs");
out:
    BIO_free(bio);
    X509_CRL_free(root_crl);
    X509_CRL_free(inter_crl);
    sk_X509_REVOKED_pop_free(entries, X509_REVOKED_free);
    X509_REVOKED_free(entry);
    ASN1_TIME_free(when);
    BN_free(one);
    return st;
}

/* The root and the intermediate, and their files. */
static enum tg_status issue_cas(struct pki_run *r, struct pki_pair *root, struct pki_pair *inter)
{
    char root_cn[64];
    char inter_cn[64];
    snprintf(root_cn, sizeof(root_cn), "tollgate dev root CA %s", r->tag);
    snprintf(inter_cn, sizeof(inter_cn), "tollgate dev intermediate CA %s", r->tag);
    const struct pki_spec root_spec = {
        .cn = root_cn,
        .key_type = r->o->key,
        .days = PKI_ROOT_DAYS,
        .basic_constraints = "critical,CA:TRUE",
        .key_usage = "critical,keyCertSign,cRLSign",
    };
    enum tg_status st = issue(r, &root_spec, root);
    if (st != TG_OK)
        return st;
    const struct pki_spec inter_spec = {
        .cn = inter_cn,
        .key_type = r->o->key,
        .issuer = root,
        .days = PKI_INTER_DAYS,
        .basic_constraints = "critical,CA:TRUE,pathlen:0",
        .key_usage = "critical,keyCertSign,cRLSign",
    };
    st = issue(r, &inter_spec, inter);
    if (st == TG_OK)
        st = write_certs(r, "root.crt", root->cert, NULL);
    if (st == TG_OK)
        st = write_key(r, "root.key", root->key);
    if (st == TG_OK)
        st = write_certs(r, "intermediate.crt", inter->cert, NULL);
    if (st == TG_OK)
        st = write_key(r, "intermediate.key", inter->key);
    if (st == TG_OK)
        st = write_certs(r, "ca-bundle.crt", inter->cert, root->cert);
    return st;
}

enum tg_status pki_init(const struct pki_init_opts *o, char *err, size_t err_len)
{
    static const char *const default_clients[] = {"alice"};
    struct pki_init_opts opts = *o;
    struct pki_run r = {.o = &opts, .err = err, .err_len = err_len};
    struct pki_pair root = {0};
    struct pki_pair inter = {0};
    X509 *revoked = NULL;
    unsigned char tag[4];
    err[0] = '\0';
    if (opts.n_clients == 0) {
        opts.clients = default_clients;
        opts.n_clients = TG_ARRAY_LEN(default_clients);
    }
    ERR_set_mark();
    enum tg_status st = check_opts(&r);
    if (st == TG_OK)
        st = make_dir(&r, opts.dir);
    if (st != TG_OK)
        goto out;
    if (RAND_bytes(tag, sizeof(tag)) != 1) {
        st = fail_ssl(&r, "no random bytes");
        goto out;
    }
    snprintf(r.tag, sizeof(r.tag), "%02x%02x%02x%02x", tag[0], tag[1], tag[2], tag[3]);
    st = make_p12_password(&r);
    if (st == TG_OK)
        st = issue_cas(&r, &root, &inter);
    if (st == TG_OK)
        st = issue_servers(&r, &inter);
    for (size_t i = 0; i < opts.n_clients && st == TG_OK; i++)
        st = issue_client(&r, &inter, opts.clients[i], NULL);
    if (st == TG_OK)
        st = issue_client(&r, &inter, PKI_REVOKED_CLIENT, &revoked);
    if (st == TG_OK)
        st = write_crls(&r, &root, &inter, revoked);
out:
    OPENSSL_cleanse(r.p12_password, sizeof(r.p12_password));
    X509_free(revoked);
    pair_fini(&inter);
    pair_fini(&root);
    ERR_pop_to_mark();
    return st;
}
