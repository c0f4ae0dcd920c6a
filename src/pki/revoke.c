/*
 * tollgate pki revoke: adds a certificate of the development PKI of pki init
 * to its CA's CRL in DIR/clients.crl, which tollgate reloads by itself
 * (crl_check_interval) and then closes the live connections it revokes.
 */
#include "pki/internal.h"
#include "pki/pki.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/file.h"
#include "core/suggest.h"
#include "tls/tls.h"

#define REVOKE_HOUR 3600L

/* One CA of the PKI and what its CRLs in clients.crl list. */
struct revoke_ca {
    const char *role;                /* "intermediate" or "root": also the base of its file names */
    X509 *cert;                      /* owned */
    EVP_PKEY *key;                   /* owned */
    STACK_OF(X509_REVOKED) *entries; /* owned: sorted by serial, each serial once */
};

struct revoke_run {
    const struct pki_revoke_opts *o;
    struct pki_revoke_result *res;
    char *err;
    size_t err_len;
    struct revoke_ca cas[2];  /* the intermediate first, as clients.crl lists them */
    BIGNUM *number;           /* owned: the highest cRLNumber of clients.crl (0 when none) */
    X509 *target;             /* owned: the certificate to revoke */
    struct revoke_ca *issuer; /* borrowed: the CA that issued target */
};

static int entry_cmp(const X509_REVOKED *const *a, const X509_REVOKED *const *b)
{
    return ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(*a), X509_REVOKED_get0_serialNumber(*b));
}

static enum tg_status fail(struct revoke_run *r, enum tg_status st, const char *fmt, ...)
    TG_PRINTF(3, 4);

static enum tg_status fail(struct revoke_run *r, enum tg_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, r->err_len, fmt, ap);
    va_end(ap);
    return st;
}

/* dir/base + suffix into dst; false when it does not fit. */
static bool dir_path(char *dst, size_t len, const char *dir, const char *base, const char *suffix)
{
    int n = snprintf(dst, len, "%s/%s%s", dir, base, suffix);
    return n > 0 && (size_t)n < len;
}

/* Reads the CA's certificate and key (dir/ROLE.crt, dir/ROLE.key) and checks
 * that they belong together. */
static enum tg_status load_ca(struct revoke_run *r, struct revoke_ca *ca)
{
    char crt[PATH_MAX];
    char key[PATH_MAX];
    char why[512];
    STACK_OF(X509) *certs = NULL;
    STACK_OF(X509) *none = NULL;
    EVP_PKEY *unused = NULL;
    enum tg_status st = TG_E_CONFIG;
    if (!dir_path(crt, sizeof(crt), r->o->dir, ca->role, ".crt") ||
        !dir_path(key, sizeof(key), r->o->dir, ca->role, ".key"))
        return fail(r, TG_E_CONFIG, "directory name too long: %s", r->o->dir);
    if (tls_read_file(crt, NULL, &certs, &unused, why, sizeof(why)) != TG_OK) {
        fail(r, st, "%s: %s (pki revoke needs the CA files that pki init wrote)", crt, why);
        goto out;
    }
    if (sk_X509_num(certs) == 0 || X509_check_ca(sk_X509_value(certs, 0)) == 0) {
        fail(r, st, "%s: no CA certificate in it", crt);
        goto out;
    }
    ca->cert = sk_X509_shift(certs);
    if (tls_read_file(key, NULL, &none, &ca->key, why, sizeof(why)) != TG_OK) {
        fail(r, st, "%s: %s (pki revoke signs the CRL with the %s CA's key)", key, why, ca->role);
        goto out;
    }
    if (ca->key == NULL) {
        fail(r, st, "%s: no private key in it", key);
        goto out;
    }
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        fail(r, st, "%s does not belong to %s", key, crt);
        goto out;
    }
    ca->entries = sk_X509_REVOKED_new(entry_cmp);
    st = ca->entries != NULL ? TG_OK : fail(r, TG_E_NOMEM, "out of memory");
out:
    EVP_PKEY_free(unused);
    sk_X509_pop_free(none, X509_free);
    sk_X509_pop_free(certs, X509_free);
    return st;
}

/* o->cert as a file name: NAME means dir/NAME.crt; an argument with a '/'
 * is a path, and so is one that names a file when dir/NAME.crt is none. */
static enum tg_status target_path(struct revoke_run *r, char *dst, size_t len)
{
    const char *a = r->o->cert;
    struct stat sb;
    if (strchr(a, '/') == NULL) {
        if (!dir_path(dst, len, r->o->dir, a, ".crt"))
            return fail(r, TG_E_CONFIG, "name too long: %s", a);
        if (stat(dst, &sb) == 0 || stat(a, &sb) != 0)
            return TG_OK;
    }
    if (snprintf(dst, len, "%s", a) >= (int)len)
        return fail(r, TG_E_CONFIG, "path too long: %s", a);
    return TG_OK;
}

/* Reads the certificate to revoke: the leaf of its file (a NAME.crt of
 * pki init holds the leaf, then the intermediate). */
static enum tg_status load_target(struct revoke_run *r)
{
    char why[512];
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    struct pki_chain chain = {0};
    char *path = r->res->cert;
    enum tg_status st = target_path(r, path, sizeof(r->res->cert));
    if (st != TG_OK)
        return st;
    st = tls_read_file(path, NULL, &certs, &key, why, sizeof(why));
    if (st != TG_OK) {
        bool is_name = strchr(r->o->cert, '/') == NULL && strcmp(path, r->o->cert) != 0;
        fail(r, TG_E_CONFIG, "%s: %s%s%s%s", path, why,
             is_name ? " (a NAME means DIR/NAME.crt; is there a client \"" : "",
             is_name ? r->o->cert : "", is_name ? "\" in DIR? a file elsewhere needs a '/')" : "");
        goto out;
    }
    st = TG_E_CONFIG;
    if (sk_X509_num(certs) == 0) {
        fail(r, st, "%s: no certificate in it", path);
        goto out;
    }
    if (pki_chain_build(certs, NULL, &chain) != TG_OK) {
        st = fail(r, TG_E_NOMEM, "out of memory");
        goto out;
    }
    r->target = sk_X509_value(certs, chain.n > 0 ? chain.order[0] : 0);
    X509_up_ref(r->target);
    st = TG_OK;
out:
    pki_chain_fini(&chain);
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    return st;
}

/* The CA of the PKI that issued the target: same name as its issuer, and its
 * key verifies the target's signature. A CA never revokes itself. */
static enum tg_status find_issuer(struct revoke_run *r)
{
    char issuer[PKI_NAME_MAX];
    X509_NAME *name = X509_get_issuer_name(r->target);
    pki_issuer(r->target, issuer, sizeof(issuer));
    for (size_t i = 0; i < TG_ARRAY_LEN(r->cas); i++) {
        struct revoke_ca *ca = &r->cas[i];
        if (X509_NAME_cmp(name, X509_get_subject_name(ca->cert)) != 0)
            continue;
        if (X509_cmp(r->target, ca->cert) == 0)
            return fail(r, TG_E_CONFIG, "%s is the %s CA itself: a CA cannot revoke itself",
                        r->res->cert, ca->role);
        if (X509_verify(r->target, X509_get0_pubkey(ca->cert)) != 1) {
            ERR_clear_error();
            return fail(r, TG_E_CONFIG,
                        "%s names %s as its issuer, but the %s CA of %s did not sign it (a "
                        "certificate of another PKI with the same name?)",
                        r->res->cert, issuer, ca->role, r->o->dir);
        }
        r->issuer = ca;
        return TG_OK;
    }
    return fail(r, TG_E_CONFIG,
                "%s was issued by %s, which is neither the intermediate nor the root CA of %s; "
                "pki revoke only revokes certificates of that PKI",
                r->res->cert, issuer, r->o->dir);
}

/* Keeps what one CRL of clients.crl says: its entries (on the CA that signed
 * it) and its cRLNumber (the highest wins). */
static enum tg_status take_crl(struct revoke_run *r, const char *path, X509_CRL *crl)
{
    char issuer[PKI_NAME_MAX];
    struct revoke_ca *ca = NULL;
    int crit = -1;
    tls_name_format(X509_CRL_get_issuer(crl), issuer, sizeof(issuer));
    for (size_t i = 0; i < TG_ARRAY_LEN(r->cas) && ca == NULL; i++)
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(r->cas[i].cert)) == 0)
            ca = &r->cas[i];
    if (ca == NULL)
        return fail(r, TG_E_CONFIG,
                    "%s holds a CRL of %s, which is neither the intermediate nor the root CA "
                    "of %s; not rewriting it",
                    path, issuer, r->o->dir);
    if (X509_CRL_verify(crl, X509_get0_pubkey(ca->cert)) != 1) {
        ERR_clear_error();
        return fail(r, TG_E_CONFIG,
                    "%s: the CRL of %s does not verify with the %s CA's key; not rewriting it",
                    path, issuer, ca->role);
    }
    ASN1_INTEGER *num = X509_CRL_get_ext_d2i(crl, NID_crl_number, &crit, NULL);
    if (num == NULL && crit != -1)
        return fail(r, TG_E_CONFIG, "%s: the CRL of %s has a malformed cRLNumber", path, issuer);
    if (num != NULL) {
        BIGNUM *bn = ASN1_INTEGER_to_BN(num, NULL);
        bool ok = bn != NULL && !BN_is_negative(bn);
        if (ok && BN_cmp(bn, r->number) > 0)
            ok = BN_copy(r->number, bn) != NULL;
        BN_free(bn);
        ASN1_INTEGER_free(num);
        if (!ok)
            return fail(r, TG_E_CONFIG, "%s: the CRL of %s has a bad cRLNumber", path, issuer);
    }
    STACK_OF(X509_REVOKED) *rev = X509_CRL_get_REVOKED(crl);
    for (int i = 0; i < sk_X509_REVOKED_num(rev); i++) {
        X509_REVOKED *copy =
            ASN1_item_dup(ASN1_ITEM_rptr(X509_REVOKED), sk_X509_REVOKED_value(rev, i));
        if (copy == NULL || sk_X509_REVOKED_push(ca->entries, copy) <= 0) {
            X509_REVOKED_free(copy);
            return fail(r, TG_E_NOMEM, "out of memory");
        }
    }
    return TG_OK;
}

/* Sorts each CA's entries by serial and drops repeated serials (a file
 * with two CRLs of one CA), keeping the first. */
static void dedupe(struct revoke_ca *ca)
{
    STACK_OF(X509_REVOKED) *e = ca->entries;
    const X509_REVOKED *prev = NULL;
    int kept = 0;
    sk_X509_REVOKED_sort(e);
    for (int i = 0; i < sk_X509_REVOKED_num(e); i++) {
        X509_REVOKED *x = sk_X509_REVOKED_value(e, i);
        const X509_REVOKED *cur = x;
        if (prev != NULL && entry_cmp(&prev, &cur) == 0) {
            X509_REVOKED_free(x);
            continue;
        }
        sk_X509_REVOKED_set(e, kept++, x);
        prev = x;
    }
    while (sk_X509_REVOKED_num(e) > kept)
        sk_X509_REVOKED_pop(e);
}

/* Reads clients.crl (when it exists): every CRL must be one of the PKI's
 * CAs and verify with its key, or the file is left alone. */
static enum tg_status read_crls(struct revoke_run *r, const char *path)
{
    char why[512];
    struct stat sb;
    STACK_OF(X509_CRL) *crls = NULL;
    enum tg_status st = TG_OK;
    if (stat(path, &sb) != 0 && errno == ENOENT)
        return TG_OK; /* a new file, from cRLNumber 1 */
    if (tls_read_crls(path, &crls, why, sizeof(why)) != TG_OK)
        return fail(r, TG_E_CONFIG, "%s: %s; not rewriting it", path, why);
    for (int i = 0; i < sk_X509_CRL_num(crls) && st == TG_OK; i++)
        st = take_crl(r, path, sk_X509_CRL_value(crls, i));
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    for (size_t i = 0; i < TG_ARRAY_LEN(r->cas) && st == TG_OK; i++)
        dedupe(&r->cas[i]);
    return st;
}

/* "6b2f..." as the event log writes serials: the INTEGER's content octets in
 * lower-case hex, "-" first when negative. */
static enum tg_status serial_text(struct revoke_run *r, const ASN1_INTEGER *serial)
{
    static const char hex[] = "0123456789abcdef";
    char *dst = r->res->serial;
    const unsigned char *d = ASN1_STRING_get0_data(serial);
    int n = ASN1_STRING_length(serial);
    size_t o = 0;
    if (n <= 0 || 2 * (size_t)n + 2 > sizeof(r->res->serial))
        return fail(r, TG_E_CONFIG,
                    "%s: its serial is %d octets long, more than RFC 5280 allows (20); tollgate "
                    "refuses it anyway (serial_too_long)",
                    r->res->cert, n);
    if (ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER)
        dst[o++] = '-';
    for (int i = 0; i < n; i++) {
        dst[o++] = hex[d[i] >> 4];
        dst[o++] = hex[d[i] & 15];
    }
    dst[o] = '\0';
    return TG_OK;
}

static void number_text(const BIGNUM *bn, char *dst, size_t len)
{
    char *dec = BN_bn2dec(bn);
    snprintf(dst, len, "%s", dec != NULL ? dec : "?");
    OPENSSL_free(dec);
}

/* The entry of the target's serial in its issuer's list, or NULL. */
static const X509_REVOKED *find_entry(struct revoke_run *r)
{
    const ASN1_INTEGER *serial = X509_get0_serialNumber(r->target);
    STACK_OF(X509_REVOKED) *e = r->issuer->entries;
    for (int i = 0; i < sk_X509_REVOKED_num(e); i++)
        if (ASN1_INTEGER_cmp(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(e, i)), serial) ==
            0)
            return sk_X509_REVOKED_value(e, i);
    return NULL;
}

/* Both CRLs with the next number and the new entry, written over path. */
static enum tg_status write_crls(struct revoke_run *r, const char *path)
{
    enum tg_status st = TG_E_INTERNAL;
    time_t now = time(NULL);
    X509_CRL *made[2] = {NULL, NULL};
    BIO *bio = NULL;
    ASN1_TIME *when = X509_time_adj_ex(NULL, 0, -REVOKE_HOUR, &now);
    X509_REVOKED *entry =
        when != NULL ? pki_crl_entry(X509_get0_serialNumber(r->target), when, r->o->reason) : NULL;
    if (entry == NULL || sk_X509_REVOKED_push(r->issuer->entries, entry) <= 0 ||
        !BN_add_word(r->number, 1)) {
        X509_REVOKED_free(entry);
        goto ssl_fail;
    }
    if (BN_num_bytes(r->number) > PKI_CRL_NUMBER_MAX) {
        st = fail(r, TG_E_CONFIG,
                  "the next cRLNumber would be longer than %d octets (RFC 5280 "
                  "§5.2.3); start a new CRL series",
                  PKI_CRL_NUMBER_MAX);
        goto out;
    }
    for (size_t i = 0; i < TG_ARRAY_LEN(r->cas); i++) {
        struct pki_crl_spec spec = {
            .issuer = r->cas[i].cert,
            .key = r->cas[i].key,
            .entries = r->cas[i].entries,
            .number = r->number,
            .now = now,
            .days = r->o->crl_days > 0 ? r->o->crl_days : PKI_CRL_DAYS,
        };
        made[i] = pki_crl_make(&spec);
        if (made[i] == NULL)
            goto ssl_fail;
    }
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || !PEM_write_bio_X509_CRL(bio, made[0]) ||
        !PEM_write_bio_X509_CRL(bio, made[1]))
        goto ssl_fail;
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    if (len <= 0 ||
        tg_write_file_atomic(path, data, (size_t)len, 0644, r->err, r->err_len) != TG_OK) {
        st = TG_E_CONFIG;
        goto out;
    }
    number_text(r->number, r->res->crl_number, sizeof(r->res->crl_number));
    tls_time_format(X509_CRL_get0_nextUpdate(made[r->issuer - r->cas]), r->res->next_update,
                    sizeof(r->res->next_update));
    r->res->n_revoked = sk_X509_REVOKED_num(r->issuer->entries);
    st = TG_OK;
    goto out;
ssl_fail : {
    char detail[256] = "unknown error";
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, detail, sizeof(detail));
    st = fail(r, TG_E_INTERNAL, "cannot make the CRLs: %s", detail);
}
out:
    BIO_free(bio);
    X509_CRL_free(made[1]);
    X509_CRL_free(made[0]);
    ASN1_TIME_free(when);
    return st;
}

/* Holds an exclusive lock on dir while it is open, so that two pki revoke
 * runs at once do not lose each other's entry; -1 when it cannot. */
static int lock_dir(struct revoke_run *r)
{
    int fd = open(r->o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        fail(r, TG_E_CONFIG, "%s: %s", r->o->dir, strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            fail(r, TG_E_CONFIG, "%s: cannot lock: %s", r->o->dir, strerror(errno));
            close(fd);
            return -1;
        }
    }
    return fd;
}

enum tg_status pki_revoke(const struct pki_revoke_opts *o, struct pki_revoke_result *res, char *err,
                          size_t err_len)
{
    struct revoke_run r = {
        .o = o,
        .res = res,
        .err = err,
        .err_len = err_len,
        .cas = {{.role = "intermediate"}, {.role = "root"}},
    };
    char crl_path[PATH_MAX];
    int lock = -1;
    enum tg_status st = TG_E_CONFIG;
    memset(res, 0, sizeof(*res));
    err[0] = '\0';
    ERR_set_mark();
    if (o->dir == NULL || o->cert == NULL) {
        fail(&r, st, "no directory or certificate given");
        goto out;
    }
    if (o->crl_days < 0 || o->crl_days > PKI_CRL_DAYS_MAX) {
        fail(&r, st, "--crl-days must be between 1 and %d", PKI_CRL_DAYS_MAX);
        goto out;
    }
    if (!dir_path(crl_path, sizeof(crl_path), o->dir, "clients", ".crl")) {
        fail(&r, st, "directory name too long: %s", o->dir);
        goto out;
    }
    r.number = BN_new(); /* 0 */
    if (r.number == NULL) {
        st = fail(&r, TG_E_NOMEM, "out of memory");
        goto out;
    }
    lock = lock_dir(&r);
    if (lock < 0)
        goto out;
    for (size_t i = 0; i < TG_ARRAY_LEN(r.cas); i++)
        if ((st = load_ca(&r, &r.cas[i])) != TG_OK)
            goto out;
    if ((st = load_target(&r)) != TG_OK || (st = find_issuer(&r)) != TG_OK)
        goto out;
    pki_subject(r.target, res->subject, sizeof(res->subject));
    res->ca = r.issuer->role;
    if ((st = serial_text(&r, X509_get0_serialNumber(r.target))) != TG_OK ||
        (st = read_crls(&r, crl_path)) != TG_OK)
        goto out;
    const X509_REVOKED *old = find_entry(&r);
    if (old != NULL) {
        res->is_already_revoked = true;
        tls_time_format(X509_REVOKED_get0_revocationDate(old), res->revoked_at,
                        sizeof(res->revoked_at));
        number_text(r.number, res->crl_number, sizeof(res->crl_number));
        res->n_revoked = sk_X509_REVOKED_num(r.issuer->entries);
        st = TG_OK;
        goto out;
    }
    st = write_crls(&r, crl_path);
out:
    if (lock >= 0)
        close(lock); /* releases the lock */
    X509_free(r.target);
    BN_free(r.number);
    for (size_t i = 0; i < TG_ARRAY_LEN(r.cas); i++) {
        sk_X509_REVOKED_pop_free(r.cas[i].entries, X509_REVOKED_free);
        EVP_PKEY_free(r.cas[i].key);
        X509_free(r.cas[i].cert);
    }
    ERR_pop_to_mark();
    return st;
}

/* ---- the command ---- */

static const struct {
    const char *name;
    int code;
} reasons[] = {
    {"unspecified", CRL_REASON_UNSPECIFIED},
    {"keyCompromise", CRL_REASON_KEY_COMPROMISE},
    {"cACompromise", CRL_REASON_CA_COMPROMISE},
    {"affiliationChanged", CRL_REASON_AFFILIATION_CHANGED},
    {"superseded", CRL_REASON_SUPERSEDED},
    {"cessationOfOperation", CRL_REASON_CESSATION_OF_OPERATION},
    {"privilegeWithdrawn", CRL_REASON_PRIVILEGE_WITHDRAWN},
    {"aACompromise", CRL_REASON_AA_COMPROMISE},
};

static const char *const revoke_opts[] = {"--reason", "--crl-days", "--help"};

static void usage(FILE *out)
{
    fputs("usage: tollgate pki revoke DIR NAME|CERTFILE [--reason REASON] [--crl-days N]\n"
          "  Revokes a certificate of the development PKI that \"tollgate pki init\" wrote\n"
          "  into DIR: adds its serial to the CRL of the CA that issued it (the\n"
          "  intermediate, or the root) in DIR/clients.crl, keeping every entry already\n"
          "  there, with the next CRL number, and signs both CRLs again with DIR's CA\n"
          "  keys. The file is replaced atomically (mode 0644); a running tollgate\n"
          "  whose client_cas entry reads it loads it within crl_check_interval and\n"
          "  closes the connections of the revoked certificate. Revoking a serial that\n"
          "  is already listed changes nothing.\n"
          "\n"
          "arguments:\n"
          "  DIR         the directory of pki init (root.crt, root.key, intermediate.crt,\n"
          "              intermediate.key, clients.crl)\n"
          "  NAME        a client of DIR: DIR/NAME.crt\n"
          "  CERTFILE    a certificate file (an argument with a '/', e.g. ./old/bob.crt)\n"
          "\n"
          "options:\n"
          "  --reason    the CRL reason: unspecified (the default: no reason in the\n"
          "              entry), keyCompromise, cACompromise, affiliationChanged,\n"
          "              superseded, cessationOfOperation, privilegeWithdrawn, aACompromise\n"
          "  --crl-days  how long the new CRLs are valid (default 30, as pki init); a CRL\n"
          "              past its next update refuses every client (crl_expired)\n"
          "  -h, --help  this help\n"
          "\n"
          "examples:\n"
          "  tollgate pki revoke pki alice\n"
          "  tollgate pki revoke pki bob --reason keyCompromise\n"
          "  tollgate pki revoke /etc/tollgate/pki ./retired/carol.crt \\\n"
          "      --reason superseded --crl-days 7\n"
          "\n"
          "For a CA of your own, publish a new CRL with its tooling and write the file\n"
          "atomically (a temporary file, then mv).\n"
          "\n"
          "exit codes: 0 revoked (or already revoked), 1 refused (not a certificate of\n"
          "DIR's CAs, a missing or wrong CA file or key, a clients.crl it cannot keep),\n"
          "2 usage error.\n",
          out);
}

static bool parse_reason(const char *v, int *code)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(reasons); i++) {
        if (strcasecmp(v, reasons[i].name) == 0) {
            *code = reasons[i].code;
            return true;
        }
    }
    return false;
}

static const char *reason_name(int code)
{
    for (size_t i = 0; i < TG_ARRAY_LEN(reasons); i++)
        if (reasons[i].code == code)
            return reasons[i].name;
    return "?";
}

static bool parse_days(const char *v, long *days)
{
    char *end = NULL;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || n < 1 || n > PKI_CRL_DAYS_MAX)
        return false;
    *days = n;
    return true;
}

static void print_result(const struct pki_revoke_opts *o, const struct pki_revoke_result *res)
{
    if (res->is_already_revoked) {
        printf("already revoked: %s (serial %s, %s)\n"
               "  is on the %s CA's CRL in %s/clients.crl since %s (CRL number %s);\n"
               "  nothing changed\n",
               res->cert, res->serial, res->subject, res->ca, o->dir, res->revoked_at,
               res->crl_number);
        return;
    }
    printf("revoked %s on the %s CA's CRL:\n", res->cert, res->ca);
    printf("  %-12s %s\n", "serial", res->serial);
    printf("  %-12s %s\n", "subject", res->subject);
    printf("  %-12s %s\n", "reason", reason_name(o->reason));
    printf("  %-12s %s\n", "CRL number", res->crl_number);
    printf("  %-12s %s\n", "next update", res->next_update);
    printf("  %-12s %d on the %s CA's CRL\n", "revoked", res->n_revoked, res->ca);
    printf("wrote %s/clients.crl (mode 0644). A tollgate that reads it loads it within\n"
           "crl_check_interval (default 5s) and closes this certificate's connections\n"
           "(event=connection_revoked serial=%s).\n",
           o->dir, res->serial);
}

int pki_cmd_revoke(int argc, char **argv)
{
    struct pki_revoke_opts o = {.reason = CRL_REASON_UNSPECIFIED};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        int m = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if ((m = pki_opt(argc, argv, &i, "--reason", &v)) != 0) {
            if (m < 0) {
                fprintf(stderr, "tollgate pki revoke: --reason needs a value\n");
                return 2;
            }
            if (!parse_reason(v, &o.reason)) {
                const char *names[TG_ARRAY_LEN(reasons)];
                for (size_t k = 0; k < TG_ARRAY_LEN(reasons); k++)
                    names[k] = reasons[k].name;
                suggest_print_unknown(stderr, "tollgate pki revoke", "reason", v, names,
                                      TG_ARRAY_LEN(names));
                fprintf(stderr, "see \"tollgate pki revoke --help\" for the reasons\n");
                return 2;
            }
        } else if ((m = pki_opt(argc, argv, &i, "--crl-days", &v)) != 0) {
            if (m < 0 || !parse_days(v, &o.crl_days)) {
                fprintf(stderr,
                        "tollgate pki revoke: --crl-days takes a number of days from 1 "
                        "to %d\n",
                        PKI_CRL_DAYS_MAX);
                return 2;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            return suggest_usage_error(stderr, "pki revoke", a, revoke_opts,
                                       TG_ARRAY_LEN(revoke_opts));
        } else if (o.dir == NULL) {
            o.dir = a;
        } else if (o.cert == NULL) {
            o.cert = a;
        } else {
            return suggest_usage_error(stderr, "pki revoke", a, revoke_opts,
                                       TG_ARRAY_LEN(revoke_opts));
        }
    }
    if (o.dir == NULL || o.cert == NULL) {
        usage(stderr);
        return 2;
    }
    char err[1024];
    struct pki_revoke_result res;
    if (pki_revoke(&o, &res, err, sizeof(err)) != TG_OK) {
        fprintf(stderr, "tollgate pki revoke: %s\n", err);
        return 1;
    }
    print_result(&o, &res);
    return 0;
}
