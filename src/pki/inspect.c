/* tollgate cert inspect FILE... [--password-file F] [--json] */
#include "pki/internal.h"
#include "pki/pki.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "core/suggest.h"

#include "tls/tls.h"

static void add_msg(json_t *list, const char *code, const char *fmt, ...) TG_PRINTF(3, 4);

/* Appends {"code", "message"} (or just the message when code is NULL). */
static void add_msg(json_t *list, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (code == NULL) {
        json_array_append_new(list, pki_json_str(msg));
        return;
    }
    json_t *w = json_object();
    pki_json_set_str(w, "code", code);
    pki_json_set_str(w, "message", msg);
    json_array_append_new(list, w);
}

static void serial_text(const X509 *x, char *dst, size_t dst_len)
{
    unsigned char bin[128];
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    int n = bn != NULL && BN_num_bytes(bn) <= (int)sizeof(bin) ? BN_bn2bin(bn, bin) : -1;
    BN_free(bn);
    if (n == 0) {
        snprintf(dst, dst_len, "00");
        return;
    }
    if (n < 0) {
        snprintf(dst, dst_len, "(invalid serial)");
        return;
    }
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (int i = 0; i < n && o + 3 < dst_len; i++) {
        if (i > 0)
            dst[o++] = ':';
        dst[o++] = hex[bin[i] >> 4];
        dst[o++] = hex[bin[i] & 15];
    }
    dst[o] = '\0';
}

static json_t *key_usage_json(const X509 *x)
{
    static const struct {
        uint32_t bit;
        const char *name;
    } bits[] = {
        {KU_DIGITAL_SIGNATURE, "digitalSignature"},
        {KU_NON_REPUDIATION, "nonRepudiation"},
        {KU_KEY_ENCIPHERMENT, "keyEncipherment"},
        {KU_DATA_ENCIPHERMENT, "dataEncipherment"},
        {KU_KEY_AGREEMENT, "keyAgreement"},
        {KU_KEY_CERT_SIGN, "keyCertSign"},
        {KU_CRL_SIGN, "cRLSign"},
        {KU_ENCIPHER_ONLY, "encipherOnly"},
        {KU_DECIPHER_ONLY, "decipherOnly"},
    };
    uint32_t ku = X509_get_key_usage((X509 *)x);
    if (ku == UINT32_MAX)
        return json_null(); /* no extension: any use */
    json_t *arr = json_array();
    for (size_t i = 0; i < TG_ARRAY_LEN(bits); i++)
        if (ku & bits[i].bit)
            json_array_append_new(arr, json_string(bits[i].name));
    return arr;
}

static json_t *eku_json(const X509 *x)
{
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    if (eku == NULL)
        return json_null();
    json_t *arr = json_array();
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++) {
        ASN1_OBJECT *obj = sk_ASN1_OBJECT_value(eku, i);
        int nid = OBJ_obj2nid(obj);
        char oid[128];
        if (nid != NID_undef)
            snprintf(oid, sizeof(oid), "%s", OBJ_nid2sn(nid));
        else if (OBJ_obj2txt(oid, sizeof(oid), obj, 1) <= 0)
            snprintf(oid, sizeof(oid), "(invalid OID)");
        json_array_append_new(arr, pki_json_str(oid));
    }
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    return arr;
}

static json_t *basic_constraints_json(const X509 *x)
{
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
    if (bc == NULL)
        return json_null();
    json_t *o = json_object();
    json_object_set_new(o, "ca", json_boolean(bc->ca != 0));
    long pathlen = bc->pathlen ? ASN1_INTEGER_get(bc->pathlen) : -1;
    json_object_set_new(o, "path_len", pathlen >= 0 ? json_integer(pathlen) : json_null());
    BASIC_CONSTRAINTS_free(bc);
    return o;
}

static json_t *crl_dp_json(const X509 *x)
{
    json_t *arr = json_array();
    CRL_DIST_POINTS *dps = X509_get_ext_d2i(x, NID_crl_distribution_points, NULL, NULL);
    for (int i = 0; i < sk_DIST_POINT_num(dps); i++) {
        DIST_POINT *dp = sk_DIST_POINT_value(dps, i);
        if (dp->distpoint == NULL || dp->distpoint->type != 0)
            continue;
        GENERAL_NAMES *names = dp->distpoint->name.fullname;
        for (int j = 0; j < sk_GENERAL_NAME_num(names); j++) {
            const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, j);
            if (g->type != GEN_URI)
                continue;
            char uri[600];
            const ASN1_STRING *s = g->d.uniformResourceIdentifier;
            pki_sanitize(ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s), uri, sizeof(uri));
            json_array_append_new(arr, pki_json_str(uri));
        }
    }
    CRL_DIST_POINTS_free(dps);
    return arr;
}

static json_t *ocsp_json(const X509 *x)
{
    json_t *arr = json_array();
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp((X509 *)x);
    for (int i = 0; i < sk_OPENSSL_STRING_num(urls); i++) {
        const char *u = sk_OPENSSL_STRING_value(urls, i);
        char clean[600];
        pki_sanitize((const unsigned char *)u, strlen(u), clean, sizeof(clean));
        json_array_append_new(arr, pki_json_str(clean));
    }
    X509_email_free(urls);
    return arr;
}

/* The signature algorithm's name, and whether its digest is broken. */
static void signature_of(const X509 *x, char *dst, size_t dst_len, bool *is_weak)
{
    int md = NID_undef;
    int nid = X509_get_signature_nid(x);
    *is_weak = false;
    if (nid != NID_undef) {
        snprintf(dst, dst_len, "%s", OBJ_nid2ln(nid));
    } else {
        const X509_ALGOR *alg = NULL;
        X509_get0_signature(NULL, &alg, x);
        if (alg == NULL || OBJ_obj2txt(dst, (int)dst_len, alg->algorithm, 1) <= 0)
            snprintf(dst, dst_len, "(unknown)");
    }
    if (X509_get_signature_info((X509 *)x, &md, NULL, NULL, NULL) == 1)
        *is_weak = md == NID_sha1 || md == NID_md5 || md == NID_md4 || md == NID_md2;
}

/* The facts of one certificate; warnings about it go to warnings. */
static json_t *cert_json(const X509 *x, int number, time_t now, json_t *warnings)
{
    char buf[PKI_NAME_MAX];
    char subj[PKI_NAME_MAX];
    char when[64];
    int bits = 0;
    bool is_weak = false;
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "index", json_integer(number));
    pki_subject(x, subj, sizeof(subj));
    pki_json_set_str(o, "subject", subj);
    pki_issuer(x, buf, sizeof(buf));
    pki_json_set_str(o, "issuer", buf);
    serial_text(x, buf, sizeof(buf));
    pki_json_set_str(o, "serial", buf);
    json_object_set_new(o, "sans", pki_sans_json(x));

    const ASN1_TIME *nb = X509_get0_notBefore(x);
    const ASN1_TIME *na = X509_get0_notAfter(x);
    tls_time_format(nb, buf, sizeof(buf));
    pki_json_set_str(o, "not_before", buf);
    tls_time_format(na, when, sizeof(when));
    pki_json_set_str(o, "not_after", when);
    long days = pki_days_until(na, now);
    json_object_set_new(o, "days_left", json_integer(days));
    const char *status = "valid";
    if (X509_cmp_time(na, &now) < 0) {
        status = "expired";
        add_msg(warnings, "expired", "certificate %d (%s) expired on %s (%ld day%s ago)", number,
                subj, when, -days, days == -1 ? "" : "s");
    } else if (X509_cmp_time(nb, &now) > 0) {
        status = "not_yet_valid";
        add_msg(warnings, "not_yet_valid", "certificate %d (%s) is not valid before %s", number,
                subj, buf);
    } else if (days < PKI_WARN_DAYS) {
        add_msg(warnings, "expiring_soon", "certificate %d (%s) expires in %ld day%s (%s)", number,
                subj, days, days == 1 ? "" : "s", when);
    }
    pki_json_set_str(o, "status", status);

    pki_key_describe(X509_get0_pubkey(x), buf, sizeof(buf), &bits, &is_weak);
    json_t *key = json_object();
    pki_json_set_str(key, "type", buf);
    json_object_set_new(key, "bits", json_integer(bits));
    json_object_set_new(o, "key", key);
    if (is_weak)
        add_msg(warnings, "weak_key", "certificate %d (%s) has a weak key: %s", number, subj, buf);

    bool is_self_signed = X509_self_signed((X509 *)x, 0) == 1;
    signature_of(x, buf, sizeof(buf), &is_weak);
    pki_json_set_str(o, "signature_algorithm", buf);
    /* A root's own signature is never checked by anyone. */
    if (is_weak && !is_self_signed)
        add_msg(warnings, "weak_signature",
                "certificate %d (%s) is signed with %s, which clients refuse; reissue it with "
                "SHA-256",
                number, subj, buf);
    json_object_set_new(o, "basic_constraints", basic_constraints_json(x));
    json_object_set_new(o, "key_usage", key_usage_json(x));
    json_object_set_new(o, "extended_key_usage", eku_json(x));
    pki_fingerprint(x, buf, sizeof(buf));
    pki_json_set_str(o, "sha256_fingerprint", buf);
    json_object_set_new(o, "crl_distribution_points", crl_dp_json(x));
    json_object_set_new(o, "ocsp", ocsp_json(x));
    json_object_set_new(o, "self_signed", json_boolean(is_self_signed));
    return o;
}

/* The chain as found and what is wrong with its order or completeness. */
static void chain_findings(STACK_OF(X509) *certs, const struct pki_chain *c, json_t *file,
                           json_t *warnings, json_t *notes)
{
    char subj[PKI_NAME_MAX];
    char issuer[PKI_NAME_MAX];
    char list[1024] = "";
    char path[1024] = "";
    json_t *order = json_array();
    for (int i = 0; i < c->n; i++) {
        size_t used = strlen(path);
        json_array_append_new(order, json_integer(c->order[i] + 1));
        snprintf(path + used, sizeof(path) - used, "%s%d", i ? " -> " : "", c->order[i] + 1);
    }
    json_object_set_new(file, "chain", order);
    for (int i = 0; i < c->n_rest; i++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof(list) - used, "%s%d", i ? ", " : "", c->rest[i] + 1);
    }
    if (c->is_bundle) {
        add_msg(notes, NULL, "a bundle of %d CA certificates (no leaf): trust anchors, not a chain",
                sk_X509_num(certs));
        return;
    }
    if (c->n == 0)
        return;
    if (!c->is_in_order)
        add_msg(warnings, "out_of_order",
                "certificates are out of order: the chain is %s; servers send them leaf first, "
                "then each issuer (tollgate cert convert writes them that way)",
                path);
    X509 *top = sk_X509_value(certs, c->order[c->n - 1]);
    bool is_complete = X509_self_signed(top, 0) == 1;
    pki_subject(top, subj, sizeof(subj));
    pki_issuer(top, issuer, sizeof(issuer));
    if (c->n_rest > 0 && !is_complete)
        add_msg(warnings, "missing_intermediate",
                "missing intermediate: the chain stops at %s because its issuer (%s) is not in "
                "the file, so certificate%s %s cannot be linked to it",
                subj, issuer, c->n_rest == 1 ? "" : "s", list);
    else if (c->n_rest > 0)
        add_msg(warnings, "extra_certificates",
                "certificate%s %s %s not part of the chain of certificate %d",
                c->n_rest == 1 ? "" : "s", list, c->n_rest == 1 ? "is" : "are", c->order[0] + 1);
    else if (!is_complete && X509_check_ca(top))
        add_msg(notes, NULL, "the chain ends at %s; clients must trust its issuer %s", subj,
                issuer);
    else if (!is_complete)
        add_msg(notes, NULL,
                "the file holds no issuer of %s: add the intermediate %s unless clients trust it "
                "as a root",
                subj, issuer);
}

static json_t *key_json(const EVP_PKEY *key, const struct pki_chain *c, json_t *warnings)
{
    char buf[256];
    int bits = 0;
    bool is_weak = false;
    json_t *o = json_object();
    pki_key_describe(key, buf, sizeof(buf), &bits, &is_weak);
    pki_json_set_str(o, "type", buf);
    json_object_set_new(o, "bits", json_integer(bits));
    pki_spki_fingerprint(key, buf, sizeof(buf));
    pki_json_set_str(o, "spki_sha256", buf);
    json_object_set_new(o, "matches",
                        c->key_match >= 0 ? json_integer(c->key_match + 1) : json_null());
    if (c->key_match < 0 && c->n > 0)
        add_msg(warnings, "key_mismatch",
                "the private key belongs to none of the certificates in the file");
    return o;
}

enum tg_status pki_inspect(const char *path, const char *password_file, time_t now, json_t **out,
                           char *err, size_t err_len)
{
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    struct pki_chain chain = {0};
    json_t *file = NULL;
    *out = NULL;
    enum tg_status st = pki_read(path, password_file, &certs, &key, err, err_len);
    if (st != TG_OK)
        goto out;
    st = pki_chain_build(certs, key, &chain);
    file = json_object();
    json_t *list = json_array();
    json_t *warnings = json_array();
    json_t *notes = json_array();
    if (st != TG_OK || file == NULL || list == NULL || warnings == NULL || notes == NULL) {
        json_decref(list);
        json_decref(warnings);
        json_decref(notes);
        snprintf(err, err_len, "%s: out of memory", path);
        st = TG_E_NOMEM;
        goto out;
    }
    pki_json_set_str(file, "file", path);
    pki_json_set_str(file, "format", pki_file_format(path));
    for (int i = 0; i < sk_X509_num(certs); i++)
        json_array_append_new(list, cert_json(sk_X509_value(certs, i), i + 1, now, warnings));
    json_object_set_new(file, "certificates", list);
    json_object_set_new(file, "key", key ? key_json(key, &chain, warnings) : json_null());
    chain_findings(certs, &chain, file, warnings, notes);
    json_object_set_new(file, "warnings", warnings);
    json_object_set_new(file, "notes", notes);
    *out = file;
    file = NULL;
out:
    json_decref(file);
    pki_chain_fini(&chain);
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    ERR_clear_error();
    return st;
}

static void print_list(const char *label, const json_t *arr, const char *none)
{
    char text[2048];
    if (!json_is_array(arr)) {
        printf("  %-12s %s\n", label, none);
        return;
    }
    pki_json_join(arr, ", ", text, sizeof(text));
    printf("  %-12s %s\n", label, text[0] ? text : "(none)");
}

static void print_cert(const json_t *c)
{
    printf("certificate %lld\n", (long long)json_integer_value(json_object_get(c, "index")));
    printf("  %-12s %s\n", "subject", pki_json_get_str(c, "subject", "?"));
    printf("  %-12s %s\n", "issuer", pki_json_get_str(c, "issuer", "?"));
    printf("  %-12s %s\n", "serial", pki_json_get_str(c, "serial", "?"));
    print_list("SANs", json_object_get(c, "sans"), "(none)");
    long long days = json_integer_value(json_object_get(c, "days_left"));
    const char *status = pki_json_get_str(c, "status", "?");
    char left[64];
    if (strcmp(status, "expired") == 0)
        snprintf(left, sizeof(left), "EXPIRED %lld day%s ago", -days, days == -1 ? "" : "s");
    else if (strcmp(status, "not_yet_valid") == 0)
        snprintf(left, sizeof(left), "NOT YET VALID");
    else
        snprintf(left, sizeof(left), "%lld day%s left", days, days == 1 ? "" : "s");
    printf("  %-12s %s to %s (%s)\n", "valid", pki_json_get_str(c, "not_before", "?"),
           pki_json_get_str(c, "not_after", "?"), left);
    printf("  %-12s %s\n", "key", pki_json_get_str(json_object_get(c, "key"), "type", "?"));
    printf("  %-12s %s\n", "signature", pki_json_get_str(c, "signature_algorithm", "?"));
    const json_t *bc = json_object_get(c, "basic_constraints");
    if (!json_is_object(bc)) {
        printf("  %-12s %s\n", "CA", "no (no basic constraints)");
    } else if (json_is_true(json_object_get(bc, "ca"))) {
        const json_t *pl = json_object_get(bc, "path_len");
        if (json_is_integer(pl))
            printf("  %-12s yes, path length %lld\n", "CA", (long long)json_integer_value(pl));
        else
            printf("  %-12s yes\n", "CA");
    } else {
        printf("  %-12s no\n", "CA");
    }
    print_list("key usage", json_object_get(c, "key_usage"), "(any)");
    print_list("EKU", json_object_get(c, "extended_key_usage"), "(any)");
    printf("  %-12s %s\n", "SHA-256", pki_json_get_str(c, "sha256_fingerprint", "?"));
    print_list("CRL", json_object_get(c, "crl_distribution_points"), "(none)");
    print_list("OCSP", json_object_get(c, "ocsp"), "(none)");
}

static void print_file(const json_t *f)
{
    const json_t *certs = json_object_get(f, "certificates");
    const json_t *key = json_object_get(f, "key");
    size_t n = json_array_size(certs);
    size_t i;
    const json_t *v;
    printf("== %s (%s): %zu certificate%s, %s\n", pki_json_get_str(f, "file", "?"),
           pki_json_get_str(f, "format", "?"), n, n == 1 ? "" : "s",
           json_is_object(key) ? "a private key" : "no private key");
    json_array_foreach(certs, i, v) print_cert(v);
    const json_t *chain = json_object_get(f, "chain");
    if (json_array_size(chain) > 0) {
        printf("chain (leaf first):");
        json_array_foreach(chain, i, v)
        {
            const json_t *c = json_array_get(certs, (size_t)json_integer_value(v) - 1);
            printf("%s %lld %s", i ? " ->" : "", (long long)json_integer_value(v),
                   pki_json_get_str(c, "subject", "?"));
        }
        printf("\n");
    }
    if (json_is_object(key)) {
        const json_t *m = json_object_get(key, "matches");
        char match[64] = "matches none of the certificates";
        if (json_is_integer(m))
            snprintf(match, sizeof(match), "matches certificate %lld",
                     (long long)json_integer_value(m));
        printf("private key: %s, %s\n", pki_json_get_str(key, "type", "?"), match);
    }
    json_array_foreach(json_object_get(f, "notes"), i, v)
        printf("note: %s\n", json_string_value(v));
    const json_t *warnings = json_object_get(f, "warnings");
    if (json_array_size(warnings) == 0)
        printf("no warnings\n");
    json_array_foreach(warnings, i, v) printf("warning: %s: %s\n", pki_json_get_str(v, "code", "?"),
                                              pki_json_get_str(v, "message", "?"));
}

static const char *const inspect_opts[] = {"--password-file", "--json", "--help"};

static void usage(FILE *out)
{
    fputs("usage: tollgate cert inspect FILE... [--password-file F] [--json]\n"
          "  Shows every certificate and key of each FILE (PEM, DER, PKCS#7, PKCS#12):\n"
          "  names, dates, key, usages, fingerprints, the chain as found, and what is\n"
          "  wrong with it (out_of_order, missing_intermediate, expired, expiring_soon,\n"
          "  weak_key, weak_signature, key_mismatch).\n"
          "\n"
          "options:\n"
          "  --password-file  file whose first line is the password of encrypted keys and\n"
          "                   PKCS#12 files (asked on a terminal when missing)\n"
          "  --json           the same as JSON\n"
          "  -h, --help       this help\n"
          "\n"
          "examples:\n"
          "  tollgate cert inspect pki/server-ecdsa.crt\n"
          "  tollgate cert inspect pki/alice.p12 --password-file pki/p12-password.txt\n"
          "  tollgate cert inspect chain.pem site.key --json\n"
          "\n"
          "exit codes: 0 every file read (warnings are in the report), 1 a file cannot be\n"
          "read, 2 usage error.\n",
          out);
}

int pki_cmd_inspect(int argc, char **argv)
{
    const char *password_file = NULL;
    bool is_json = false;
    int n_files = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int m;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            is_json = true;
        } else if ((m = pki_opt(argc, argv, &i, "--password-file", &v)) != 0) {
            if (m < 0) {
                fprintf(stderr, "tollgate cert inspect: --password-file takes a file\n");
                return 2;
            }
            password_file = v;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return suggest_usage_error(stderr, "cert inspect", argv[i], inspect_opts,
                                       TG_ARRAY_LEN(inspect_opts));
        } else {
            n_files++;
        }
    }
    if (n_files == 0) {
        usage(stderr);
        return 2;
    }
    int rc = 0;
    json_t *files = json_array();
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--password-file") == 0) {
            i++;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            continue;
        char err[1024];
        json_t *f = NULL;
        if (pki_inspect(argv[i], password_file, time(NULL), &f, err, sizeof(err)) != TG_OK) {
            fprintf(stderr, "tollgate cert inspect: %s\n", err);
            f = json_object();
            pki_json_set_str(f, "file", argv[i]);
            pki_json_set_str(f, "error", err);
            rc = 1;
        } else if (!is_json) {
            print_file(f);
        }
        json_array_append_new(files, f);
    }
    if (is_json) {
        json_t *root = json_pack("{s:O}", "files", files);
        pki_json_print(root);
        json_decref(root);
    }
    json_decref(files);
    return rc;
}
