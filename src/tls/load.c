/*
 * Loading the certificates: and client_cas: entries of a config: which
 * certificate is the leaf, the chain in order, dates, CRLs, and a diagnostic
 * positioned at the config key for every problem. The file formats
 * themselves are read by x509util.c.
 */
#include "tls/tls.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define LOAD_WARN_DAYS    30
#define LOAD_PASSWORD_MAX 1024

/* The config entry that diagnostics are about. */
struct entry {
    const struct config *cfg;
    struct diag *d;
    const char *section; /* "certificates" or "client_cas" */
    const char *name;
};

static void report(const struct entry *e, enum diag_level level, struct cfg_pos pos,
                   const char *field, const char *fmt, ...) TG_PRINTF(5, 6);

static void report(const struct entry *e, enum diag_level level, struct cfg_pos pos,
                   const char *field, const char *fmt, ...)
{
    char key[256];
    char msg[1024];
    va_list ap;
    snprintf(key, sizeof(key), "%s.%s.%s", e->section, e->name ? e->name : "?", field);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    diag_add(e->d, level, e->cfg->path, pos.line, pos.col, key, "%s", msg);
}

static void subject_of(const X509 *x, char *dst, size_t dst_len)
{
    tls_name_format(X509_get_subject_name(x), dst, dst_len);
}

/* Appends "; s" (or s when dst is empty), truncating with "..." */
static void list_append(char *dst, size_t dst_len, const char *s)
{
    size_t used = strlen(dst);
    int n = snprintf(dst + used, dst_len - used, "%s%s", used ? "; " : "", s);
    if (n < 0 || (size_t)n >= dst_len - used)
        snprintf(dst + dst_len - 4, 4, "...");
}

/*
 * Reports a certificate outside its validity period, or expiring within
 * LOAD_WARN_DAYS. An expired or not yet valid certificate is an error when
 * is_fatal (the leaf), a warning otherwise. Returns false on an error.
 */
static bool check_validity(const struct entry *e, struct cfg_pos pos, const char *field,
                           const char *path, const X509 *x, const char *what, bool is_fatal)
{
    char subj[512];
    char when[64];
    enum diag_level level = is_fatal ? DIAG_ERROR : DIAG_WARNING;
    const ASN1_TIME *not_before = X509_get0_notBefore(x);
    const ASN1_TIME *not_after = X509_get0_notAfter(x);
    subject_of(x, subj, sizeof(subj));
    if (X509_cmp_current_time(not_after) < 0) {
        tls_time_format(not_after, when, sizeof(when));
        report(e, level, pos, field, "%s: %s %s expired on %s; renew it", path, what, subj, when);
        return !is_fatal;
    }
    if (X509_cmp_current_time(not_before) > 0) {
        tls_time_format(not_before, when, sizeof(when));
        report(e, level, pos, field, "%s: %s %s is not valid before %s; check the clock", path,
               what, subj, when);
        return !is_fatal;
    }
    int days = 0;
    int secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, not_after) && days < LOAD_WARN_DAYS) {
        tls_time_format(not_after, when, sizeof(when));
        report(e, DIAG_WARNING, pos, field, "%s: %s %s expires in %d day%s (%s); renew it soon",
               path, what, subj, days, days == 1 ? "" : "s", when);
    }
    return true;
}

/* Index of the unused certificate that issued x, or -1. */
static int find_issuer(STACK_OF(X509) *certs, const bool *used, X509 *x)
{
    for (int j = 0; j < sk_X509_num(certs); j++)
        if (!used[j] && X509_check_issued(sk_X509_value(certs, j), x) == X509_V_OK)
            return j;
    return -1;
}

/*
 * Builds the chain from the leaf up, each certificate followed by its
 * issuer, and warns when the file had them out of order or holds
 * certificates that are not in the chain. The chain may stop at an
 * intermediate: clients are expected to hold the root. A file whose other
 * certificates cannot be linked to the leaf lacks an intermediate: refused.
 */
static enum tg_status order_chain(const struct entry *e, const struct cfg_certificate *c,
                                  STACK_OF(X509) *certs, int leaf_idx, STACK_OF(X509) **out)
{
    enum tg_status st = TG_E_NOMEM;
    int n = sk_X509_num(certs);
    bool *used = calloc((size_t)n, sizeof(*used));
    STACK_OF(X509) *chain = sk_X509_new_null();
    char subj[512];
    char list[768] = "";
    if (used == NULL || chain == NULL)
        goto out;
    used[leaf_idx] = true;
    bool is_in_order = leaf_idx == 0;
    int prev = leaf_idx;
    X509 *top = sk_X509_value(certs, leaf_idx);
    while (X509_self_signed(top, 0) != 1) {
        int j = find_issuer(certs, used, top);
        if (j < 0)
            break;
        top = sk_X509_value(certs, j);
        if (sk_X509_push(chain, top) <= 0)
            goto out;
        X509_up_ref(top);
        used[j] = true;
        is_in_order = is_in_order && j > prev;
        prev = j;
    }
    if (!is_in_order)
        report(e, DIAG_WARNING, c->cert_pos, "cert",
               "%s: certificates are out of order; they are used leaf first, then each issuer; "
               "reorder the file to silence this",
               c->cert);
    int n_left = 0;
    for (int i = 0; i < n; i++) {
        if (used[i])
            continue;
        subject_of(sk_X509_value(certs, i), subj, sizeof(subj));
        list_append(list, sizeof(list), subj);
        n_left++;
    }
    if (n_left > 0 && X509_self_signed(top, 0) == 1) {
        report(e, DIAG_WARNING, c->cert_pos, "cert",
               "%s: %d certificate%s not part of the chain and ignored: %s", c->cert, n_left,
               n_left == 1 ? " is" : "s are", list);
    } else if (n_left > 0) {
        char issuer[512];
        subject_of(top, subj, sizeof(subj));
        tls_name_format(X509_get_issuer_name(top), issuer, sizeof(issuer));
        /* The file carries the rest of the chain but not the link to it:
         * clients holding only the root could never verify this. */
        report(e, DIAG_ERROR, c->cert_pos, "cert",
               "%s: chain is incomplete: the issuer of %s (%s) is missing, so %d certificate%s "
               "left unlinked: %s; add the missing intermediate to the file",
               c->cert, subj, issuer, n_left, n_left == 1 ? " is" : "s are", list);
        st = TG_E_CONFIG;
        goto out;
    }
    *out = chain;
    chain = NULL;
    st = TG_OK;
out:
    sk_X509_pop_free(chain, X509_free);
    free(used);
    return st;
}

void tls_chain_fini(struct tls_chain *c)
{
    if (c == NULL)
        return;
    X509_free(c->leaf);
    sk_X509_pop_free(c->chain, X509_free);
    EVP_PKEY_free(c->key);
    c->leaf = NULL;
    c->chain = NULL;
    c->key = NULL;
}

/* Index of the certificate whose public key matches key, or -1. */
static int find_leaf(STACK_OF(X509) *certs, EVP_PKEY *key)
{
    int found = -1;
    ERR_set_mark(); /* every mismatch queues an error */
    for (int i = 0; i < sk_X509_num(certs) && found < 0; i++)
        if (X509_check_private_key(sk_X509_value(certs, i), key) == 1)
            found = i;
    ERR_pop_to_mark();
    return found;
}

/* Reads the certificates and the key of c; the key from c->key, or from the
 * certificate file when c->key is NULL. */
/* Warns when a file holding an unencrypted private key can be read by group
 * or others: any local user could then impersonate the server. */
static void check_key_mode(const struct entry *e, struct cfg_pos pos, const char *key,
                           const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0 || (st.st_mode & 077) == 0)
        return;
    report(e, DIAG_WARNING, pos, key,
           "%s: private key file is readable by %s (mode %04o); chmod 600 it", path,
           (st.st_mode & 007) ? "every local user" : "its group", (unsigned)(st.st_mode & 07777));
}

static enum tg_status read_cert_and_key(const struct entry *e, const struct cfg_certificate *c,
                                        const char *password, STACK_OF(X509) **certs,
                                        EVP_PKEY **key)
{
    char err[512];
    STACK_OF(X509) *key_certs = NULL;
    if (tls_read_file(c->cert, password, certs, key, err, sizeof(err)) != TG_OK) {
        report(e, DIAG_ERROR, c->cert_pos, "cert", "%s: %s", c->cert, err);
        return TG_E_CONFIG;
    }
    if (c->key != NULL) {
        EVP_PKEY_free(*key);
        *key = NULL;
        enum tg_status st = tls_read_file(c->key, password, &key_certs, key, err, sizeof(err));
        sk_X509_pop_free(key_certs, X509_free);
        if (st != TG_OK) {
            report(e, DIAG_ERROR, c->key_pos, "key", "%s: %s", c->key, err);
            return TG_E_CONFIG;
        }
        if (*key == NULL) {
            report(e, DIAG_ERROR, c->key_pos, "key", "%s: no private key in it", c->key);
            return TG_E_CONFIG;
        }
    } else if (*key == NULL) {
        report(e, DIAG_ERROR, c->cert_pos, "cert",
               "%s: no private key in it; name the key file with key:", c->cert);
        return TG_E_CONFIG;
    }
    if (sk_X509_num(*certs) == 0) {
        report(e, DIAG_ERROR, c->cert_pos, "cert", "%s: no certificate in it", c->cert);
        return TG_E_CONFIG;
    }
    if (password == NULL) {
        if (c->key != NULL)
            check_key_mode(e, c->key_pos, "key", c->key);
        else
            check_key_mode(e, c->cert_pos, "cert", c->cert);
    }
    return TG_OK;
}

enum tg_status tls_load_certificate(const struct config *cfg, const struct cfg_certificate *c,
                                    struct tls_chain *out, struct diag *d)
{
    const struct entry e = {cfg, d, "certificates", c->name};
    enum tg_status st = TG_E_CONFIG;
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    char password[LOAD_PASSWORD_MAX];
    const char *pass = NULL;
    char err[512];
    memset(out, 0, sizeof(*out));

    if (c->password_file != NULL) {
        if (tls_read_password_file(c->password_file, password, sizeof(password), err,
                                   sizeof(err)) != TG_OK) {
            report(&e, DIAG_ERROR, c->password_file_pos, "password_file", "%s: %s",
                   c->password_file, err);
            goto out;
        }
        pass = password;
    }
    if (read_cert_and_key(&e, c, pass, &certs, &key) != TG_OK)
        goto out;
    int leaf_idx = find_leaf(certs, key);
    if (leaf_idx < 0) {
        char subj[512];
        int n = sk_X509_num(certs);
        subject_of(sk_X509_value(certs, 0), subj, sizeof(subj));
        report(&e, DIAG_ERROR, c->key ? c->key_pos : c->cert_pos, c->key ? "key" : "cert",
               "key does not match certificate %s (the key in %s belongs to none of the %d "
               "certificate%s in %s)",
               subj, c->key ? c->key : c->cert, n, n == 1 ? "" : "s", c->cert);
        goto out;
    }
    X509 *leaf = sk_X509_value(certs, leaf_idx);
    bool is_valid = check_validity(&e, c->cert_pos, "cert", c->cert, leaf, "certificate", true);
    st = order_chain(&e, c, certs, leaf_idx, &out->chain);
    if (st == TG_E_NOMEM)
        report(&e, DIAG_ERROR, c->cert_pos, "cert", "%s: out of memory", c->cert);
    if (st != TG_OK)
        goto out;
    for (int i = 0; i < sk_X509_num(out->chain); i++)
        check_validity(&e, c->cert_pos, "cert", c->cert, sk_X509_value(out->chain, i),
                       "chain certificate", false);
    if (!is_valid) {
        st = TG_E_CONFIG;
        goto out;
    }
    X509_up_ref(leaf);
    out->leaf = leaf;
    out->key = key;
    key = NULL;
    st = TG_OK;
out:
    if (st != TG_OK)
        tls_chain_fini(out);
    OPENSSL_cleanse(password, sizeof(password));
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    return st;
}

/* Warns about a CRL that is stale, not yet valid, or whose signature does
 * not verify with the CA of its issuer's name in the bundle. */
static void check_crl(const struct entry *e, const struct cfg_client_ca *ca, STACK_OF(X509) *certs,
                      const X509_CRL *crl)
{
    char issuer[512];
    char when[64];
    const ASN1_TIME *next = X509_CRL_get0_nextUpdate(crl);
    const ASN1_TIME *last = X509_CRL_get0_lastUpdate(crl);
    tls_name_format(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
    if (next != NULL && X509_cmp_current_time(next) < 0) {
        tls_time_format(next, when, sizeof(when));
        report(e, DIAG_WARNING, ca->crl_pos, "crl",
               "%s: CRL of %s is past its nextUpdate (%s); with CRL checking, clients it covers "
               "are refused (crl_expired) until a fresh CRL is installed",
               ca->crl, issuer, when);
    } else if (last != NULL && X509_cmp_current_time(last) > 0) {
        tls_time_format(last, when, sizeof(when));
        report(e, DIAG_WARNING, ca->crl_pos, "crl",
               "%s: CRL of %s is not valid before %s (lastUpdate); check the clock", ca->crl,
               issuer, when);
    }
    /* The issuer is often an intermediate that clients send and the bundle
     * lacks; then there is nothing here to check the signature with. */
    bool has_issuer = false;
    bool is_signed = false;
    ERR_set_mark();
    for (int i = 0; i < sk_X509_num(certs) && !is_signed; i++) {
        X509 *x = sk_X509_value(certs, i);
        if (X509_NAME_cmp(X509_get_subject_name(x), X509_CRL_get_issuer(crl)) != 0)
            continue;
        has_issuer = true;
        is_signed = X509_CRL_verify((X509_CRL *)crl, X509_get0_pubkey(x)) == 1;
    }
    ERR_pop_to_mark();
    if (has_issuer && !is_signed)
        report(e, DIAG_WARNING, ca->crl_pos, "crl",
               "%s: the signature of the CRL of %s does not verify with that CA in %s", ca->crl,
               issuer, ca->ca);
}

static void check_ca(const struct entry *e, const struct cfg_client_ca *ca, const X509 *x)
{
    if (X509_check_ca((X509 *)x) == 0) {
        char subj[512];
        subject_of(x, subj, sizeof(subj));
        report(e, DIAG_WARNING, ca->ca_pos, "ca",
               "%s: %s is not a CA certificate; no client certificate can chain to it", ca->ca,
               subj);
    }
    check_validity(e, ca->ca_pos, "ca", ca->ca, x, "CA certificate", false);
}

/* Checks each CA certificate and adds it to store and its subject to names.
 * False when out of memory. */
static bool add_cas(const struct entry *e, const struct cfg_client_ca *ca, STACK_OF(X509) *certs,
                    X509_STORE *store, STACK_OF(X509_NAME) *names)
{
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        check_ca(e, ca, x);
        if (X509_STORE_add_cert(store, x) != 1)
            return false;
        X509_NAME *name = X509_NAME_dup(X509_get_subject_name(x));
        if (name == NULL || sk_X509_NAME_push(names, name) <= 0) {
            X509_NAME_free(name);
            return false;
        }
    }
    return true;
}

/* Adds the CRLs of ca->crl to store, checking each. */
static enum tg_status add_crls(const struct entry *e, const struct cfg_client_ca *ca,
                               STACK_OF(X509) *certs, X509_STORE *store)
{
    char err[512];
    STACK_OF(X509_CRL) *crls = NULL;
    enum tg_status st = tls_read_crls(ca->crl, &crls, err, sizeof(err));
    if (st != TG_OK) {
        report(e, DIAG_ERROR, ca->crl_pos, "crl", "%s: %s", ca->crl, err);
        return st;
    }
    for (int i = 0; i < sk_X509_CRL_num(crls) && st == TG_OK; i++) {
        X509_CRL *crl = sk_X509_CRL_value(crls, i);
        check_crl(e, ca, certs, crl);
        if (X509_STORE_add_crl(store, crl) != 1) {
            report(e, DIAG_ERROR, ca->crl_pos, "crl", "%s: out of memory", ca->crl);
            st = TG_E_NOMEM;
        }
    }
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    return st;
}

enum tg_status tls_load_client_ca(const struct config *cfg, const struct cfg_client_ca *ca,
                                  X509_STORE **store_out, STACK_OF(X509_NAME) **names_out,
                                  struct diag *d)
{
    const struct entry e = {cfg, d, "client_cas", ca->name};
    enum tg_status st = TG_E_CONFIG;
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    X509_STORE *store = NULL;
    STACK_OF(X509_NAME) *names = NULL;
    char err[512];
    if (store_out != NULL)
        *store_out = NULL;
    if (names_out != NULL)
        *names_out = NULL;

    if (tls_read_file(ca->ca, NULL, &certs, &key, err, sizeof(err)) != TG_OK) {
        report(&e, DIAG_ERROR, ca->ca_pos, "ca", "%s: %s", ca->ca, err);
        goto out;
    }
    if (key != NULL)
        report(&e, DIAG_WARNING, ca->ca_pos, "ca",
               "%s: also holds a private key; a CA bundle needs only certificates, keep CA keys "
               "elsewhere",
               ca->ca);
    if (sk_X509_num(certs) == 0) {
        report(&e, DIAG_ERROR, ca->ca_pos, "ca", "%s: no certificate in it", ca->ca);
        goto out;
    }
    store = X509_STORE_new();
    names = sk_X509_NAME_new_null();
    if (store == NULL || names == NULL || !add_cas(&e, ca, certs, store, names)) {
        report(&e, DIAG_ERROR, ca->ca_pos, "ca", "%s: out of memory", ca->ca);
        st = TG_E_NOMEM;
        goto out;
    }
    if (ca->crl != NULL && add_crls(&e, ca, certs, store) != TG_OK)
        goto out;
    /* Best effort: without it the store checks CRLs as OpenSSL does. */
    (void)tls_crl_check_attach(store);
    if (store_out != NULL) {
        *store_out = store;
        store = NULL;
    }
    if (names_out != NULL) {
        *names_out = names;
        names = NULL;
    }
    st = TG_OK;
out:
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    X509_STORE_free(store);
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    return st;
}

void tls_config_check(const struct config *cfg, struct diag *d)
{
    for (size_t i = 0; i < cfg->n_certificates; i++) {
        struct tls_chain chain;
        /* Problems are in d; the loaded objects are not needed here. */
        enum tg_status st = tls_load_certificate(cfg, &cfg->certificates[i], &chain, d);
        if (st == TG_OK) {
            tls_ocsp_config_check(cfg, &cfg->certificates[i], &chain, d);
            tls_chain_fini(&chain);
        }
    }
    for (size_t i = 0; i < cfg->n_client_cas; i++) {
        enum tg_status st = tls_load_client_ca(cfg, &cfg->client_cas[i], NULL, NULL, d);
        (void)st;
    }
}
