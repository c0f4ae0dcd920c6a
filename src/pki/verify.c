/*
 * The checks a TLS peer makes on a certificate, one by one, each with its
 * verdict (dates, revocation, trust, purpose, name), shared by `tollgate
 * cert verify` and `tollgate probe`.
 */
#include "pki/internal.h"
#include "pki/pki.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "core/suggest.h"

#include "tls/tls.h"

#define VERIFY_MAX_ERRORS 32

enum check_id { CHECK_DATES, CHECK_REVOCATION, CHECK_TRUST, CHECK_PURPOSE, CHECK_NAME, CHECK_N };

static const char *const check_names[CHECK_N] = {"dates", "revocation", "trust", "purpose", "name"};

/* Every error X509_verify_cert reported, in order. */
struct verify_errors {
    struct {
        int err;
        int depth;
    } e[VERIFY_MAX_ERRORS];
    int n;
};

/* Records the error and carries on, so that one run shows every problem
 * instead of the first. */
static int record_cb(int ok, X509_STORE_CTX *ctx)
{
    struct verify_errors *r = X509_STORE_CTX_get_app_data(ctx);
    if (ok || r == NULL)
        return 1;
    int err = X509_STORE_CTX_get_error(ctx);
    int depth = X509_STORE_CTX_get_error_depth(ctx);
    for (int i = 0; i < r->n; i++)
        if (r->e[i].err == err && r->e[i].depth == depth)
            return 1;
    if (r->n < VERIFY_MAX_ERRORS) {
        r->e[r->n].err = err;
        r->e[r->n].depth = depth;
        r->n++;
    }
    return 1;
}

static enum check_id category(int err)
{
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
        return CHECK_DATES;
    case X509_V_ERR_CERT_REVOKED:
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
        return CHECK_REVOCATION;
    case X509_V_ERR_INVALID_PURPOSE:
        return CHECK_PURPOSE;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return CHECK_NAME;
    default:
        return CHECK_TRUST;
    }
}

/* What a check found, before it becomes JSON. */
struct verdict {
    const char *verdict; /* "pass", "fail", "skip" */
    const char *reason;  /* NULL unless failed */
    char detail[1536];
};

static void detail_add(struct verdict *v, const char *fmt, ...) TG_PRINTF(2, 3);

/* Appends "; text" to v->detail. */
static void detail_add(struct verdict *v, const char *fmt, ...)
{
    size_t used = strlen(v->detail);
    if (used + 4 >= sizeof(v->detail))
        return;
    if (used > 0) {
        snprintf(v->detail + used, sizeof(v->detail) - used, "; ");
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->detail + used, sizeof(v->detail) - used, fmt, ap);
    va_end(ap);
}

/* "the certificate CN=x" or "chain certificate CN=y (depth 1)". */
static void label_of(STACK_OF(X509) *chain, int depth, char *dst, size_t dst_len)
{
    char subj[PKI_NAME_MAX];
    X509 *x = depth >= 0 && depth < sk_X509_num(chain) ? sk_X509_value(chain, depth) : NULL;
    if (x == NULL) {
        snprintf(dst, dst_len, "the certificate at depth %d", depth);
        return;
    }
    pki_subject(x, subj, sizeof(subj));
    if (depth == 0)
        snprintf(dst, dst_len, "the certificate %s", subj);
    else
        snprintf(dst, dst_len, "chain certificate %s (depth %d)", subj, depth);
}

/* The CRL of the issuer of x among crls, or NULL. */
static X509_CRL *crl_for(STACK_OF(X509_CRL) *crls, const X509 *x)
{
    for (int i = 0; i < sk_X509_CRL_num(crls); i++) {
        X509_CRL *crl = sk_X509_CRL_value(crls, i);
        if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_issuer_name(x)) == 0)
            return crl;
    }
    return NULL;
}

static const char *crl_reason_name(long r)
{
    static const char *const names[] = {
        "unspecified",   "keyCompromise",        "cACompromise",    "affiliationChanged",
        "superseded",    "cessationOfOperation", "certificateHold", "(unused)",
        "removeFromCRL", "privilegeWithdrawn",   "aACompromise",
    };
    return r >= 0 && r < (long)TG_ARRAY_LEN(names) ? names[r] : "unknown";
}

static void describe_revoked(struct verdict *v, const char *label, STACK_OF(X509_CRL) *crls,
                             X509 *x)
{
    X509_REVOKED *rev = NULL;
    X509_CRL *crl = crl_for(crls, x);
    char when[64] = "";
    char why[64] = "";
    if (crl != NULL && X509_CRL_get0_by_cert(crl, &rev, x) == 1 && rev != NULL) {
        tls_time_format(X509_REVOKED_get0_revocationDate(rev), when, sizeof(when));
        ASN1_ENUMERATED *r = X509_REVOKED_get_ext_d2i(rev, NID_crl_reason, NULL, NULL);
        if (r != NULL)
            snprintf(why, sizeof(why), ", reason %s", crl_reason_name(ASN1_ENUMERATED_get(r)));
        ASN1_ENUMERATED_free(r);
    }
    if (when[0] != '\0')
        detail_add(v, "%s is revoked (since %s%s)", label, when, why);
    else
        detail_add(v, "%s is revoked", label);
}

static void eku_text(const X509 *x, char *dst, size_t dst_len)
{
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, NULL, NULL);
    size_t o = 0;
    dst[0] = '\0';
    for (int i = 0; i < sk_ASN1_OBJECT_num(eku) && o + 2 < dst_len; i++) {
        char name[80];
        const ASN1_OBJECT *obj = sk_ASN1_OBJECT_value(eku, i);
        int nid = OBJ_obj2nid(obj);
        if (nid != NID_undef)
            snprintf(name, sizeof(name), "%s", OBJ_nid2sn(nid));
        else if (OBJ_obj2txt(name, sizeof(name), obj, 1) <= 0)
            snprintf(name, sizeof(name), "?");
        int n = snprintf(dst + o, dst_len - o, "%s%s", i ? ", " : "", name);
        if (n < 0)
            break;
        o += (size_t)n;
    }
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    if (dst[0] == '\0')
        snprintf(dst, dst_len, "%s", "none");
}

/* One reported error in words, appended to v. */
static void describe(struct verdict *v, int err, int depth, STACK_OF(X509) *chain,
                     const struct pki_check_opts *o, time_t at)
{
    char label[PKI_NAME_MAX + 40];
    char name[PKI_NAME_MAX];
    char when[64];
    X509 *x = depth >= 0 && depth < sk_X509_num(chain) ? sk_X509_value(chain, depth) : NULL;
    label_of(chain, depth, label, sizeof(label));
    if (x == NULL) {
        detail_add(v, "%s: %s", label, X509_verify_cert_error_string(err));
        return;
    }
    pki_issuer(x, name, sizeof(name));
    X509_CRL *crl = crl_for(o->crls, x);
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED: {
        long days = -pki_days_until(X509_get0_notAfter(x), at);
        tls_time_format(X509_get0_notAfter(x), when, sizeof(when));
        detail_add(v, "%s expired on %s (%ld day%s ago)", label, when, days, days == 1 ? "" : "s");
        return;
    }
    case X509_V_ERR_CERT_NOT_YET_VALID:
        tls_time_format(X509_get0_notBefore(x), when, sizeof(when));
        detail_add(v, "%s is not valid before %s (check the clock, or wait)", label, when);
        return;
    case X509_V_ERR_CERT_REVOKED:
        describe_revoked(v, label, o->crls, x);
        return;
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        detail_add(v, "no CRL of %s (the issuer of %s) among the CRL files", name, label);
        return;
    case X509_V_ERR_CRL_HAS_EXPIRED:
        tls_time_format(crl ? X509_CRL_get0_nextUpdate(crl) : NULL, when, sizeof(when));
        detail_add(v, "the CRL of %s is past its nextUpdate (%s); fetch a fresh one", name, when);
        return;
    case X509_V_ERR_CRL_NOT_YET_VALID:
        tls_time_format(crl ? X509_CRL_get0_lastUpdate(crl) : NULL, when, sizeof(when));
        detail_add(v, "the CRL of %s is not valid before %s", name, when);
        return;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        detail_add(v, "the issuer of %s, %s, is neither in the chain nor in %s (%s)", label, name,
                   o->trust_label,
                   X509_check_ca(x) ? "a root these clients do not trust"
                                    : "a missing intermediate, or a certificate of another CA");
        return;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
        detail_add(v, "%s is self-signed and not in %s", label, o->trust_label);
        return;
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        detail_add(v, "the chain ends at self-signed %s, which is not in %s", label + 4,
                   o->trust_label);
        return;
    case X509_V_ERR_INVALID_PURPOSE: {
        char eku[256];
        eku_text(x, eku, sizeof(eku));
        detail_add(v, "%s is not for %s (extended key usage: %s)", label,
                   o->purpose == X509_PURPOSE_SSL_CLIENT ? "TLS client authentication (clientAuth)"
                                                         : "TLS server authentication (serverAuth)",
                   eku);
        return;
    }
    default:
        detail_add(v, "%s: %s", label, X509_verify_cert_error_string(err));
        return;
    }
}

static void pass_dates(struct verdict *v, STACK_OF(X509) *chain, time_t at)
{
    char when[64];
    char now_text[64];
    X509 *leaf = sk_X509_value(chain, 0);
    ASN1_TIME *t = ASN1_TIME_set(NULL, at);
    tls_time_format(t, now_text, sizeof(now_text));
    ASN1_TIME_free(t);
    long days = pki_days_until(X509_get0_notAfter(leaf), at);
    tls_time_format(X509_get0_notAfter(leaf), when, sizeof(when));
    int others = sk_X509_num(chain) - 1;
    detail_add(v, "valid at %s, until %s (%ld day%s left)%s", now_text, when, days,
               days == 1 ? "" : "s", others > 0 ? "; the rest of the chain is valid too" : "");
    if (days < PKI_WARN_DAYS)
        detail_add(v, "renew it soon");
}

static void pass_trust(struct verdict *v, STACK_OF(X509) *chain, const struct pki_check_opts *o)
{
    char root[PKI_NAME_MAX];
    char via[PKI_NAME_MAX];
    int n = sk_X509_num(chain);
    pki_subject(sk_X509_value(chain, n - 1), root, sizeof(root));
    if (n == 1) {
        detail_add(v, "the certificate itself is a trust anchor in %s", o->trust_label);
        return;
    }
    if (n == 2) {
        detail_add(v, "issued by %s, trusted in %s", root, o->trust_label);
        return;
    }
    pki_subject(sk_X509_value(chain, 1), via, sizeof(via));
    detail_add(v, "chains to %s (in %s) via %s%s", root, o->trust_label, via,
               n > 3 ? " and more intermediates" : "");
}

static void pass_revocation(struct verdict *v, const struct pki_check_opts *o, int n_chain)
{
    char issuers[1024] = "";
    for (int i = 0; i < sk_X509_CRL_num(o->crls); i++) {
        char name[PKI_NAME_MAX];
        size_t used = strlen(issuers);
        tls_name_format(X509_CRL_get_issuer(sk_X509_CRL_value(o->crls, i)), name, sizeof(name));
        snprintf(issuers + used, sizeof(issuers) - used, "%s%s", i ? "; " : "", name);
    }
    detail_add(v, "not revoked: %d certificate%s checked against the CRLs of %s", n_chain,
               n_chain == 1 ? "" : "s", issuers);
}

static void check_name(struct verdict *v, X509 *leaf, const struct pki_check_opts *o)
{
    char *peer = NULL;
    if (o->name == NULL) {
        v->verdict = "skip";
        detail_add(v, "not checked (no %s given)", o->name_flag ? o->name_flag : "name");
        return;
    }
    bool is_ip = net_is_ip_literal(o->name);
    int rc =
        is_ip ? X509_check_ip_asc(leaf, o->name, 0) : X509_check_host(leaf, o->name, 0, 0, &peer);
    if (rc == 1) {
        if (is_ip)
            detail_add(v, "%s matches the certificate's IP address", o->name);
        else
            detail_add(v, "%s matches the certificate's DNS name %s", o->name, peer ? peer : "(?)");
        OPENSSL_free(peer);
        return;
    }
    OPENSSL_free(peer);
    char names[1024];
    char subj[PKI_NAME_MAX];
    json_t *sans = pki_sans_json(leaf);
    pki_json_join(sans, ", ", names, sizeof(names));
    json_decref(sans);
    pki_subject(leaf, subj, sizeof(subj));
    v->verdict = "fail";
    v->reason = "name_mismatch";
    if (names[0] == '\0')
        detail_add(v, "%s is not the certificate's name: it has no subject alternative names (%s)",
                   o->name, subj);
    else
        detail_add(v, "%s is not among the certificate's names: %s", o->name, names);
}

bool pki_check_chain(X509 *leaf, STACK_OF(X509) *untrusted, const struct pki_check_opts *o,
                     json_t *checks, json_t **chain_out, const char **reason)
{
    struct verify_errors errs = {0};
    struct verdict v[CHECK_N];
    STACK_OF(X509) *chain = NULL;
    time_t at = o->at ? o->at : time(NULL);
    memset(v, 0, sizeof(v));
    for (int i = 0; i < CHECK_N; i++)
        v[i].verdict = "pass";
    if (chain_out != NULL)
        *chain_out = NULL;
    *reason = NULL;
    X509_STORE_CTX *ctx = NULL;
    if (leaf == NULL) {
        for (int i = 0; i < CHECK_N; i++) {
            v[i].verdict = "skip";
            detail_add(&v[i], "not checked: no certificate was received");
        }
        goto report;
    }

    ctx = X509_STORE_CTX_new();
    if (ctx == NULL || X509_STORE_CTX_init(ctx, o->trust, leaf, untrusted) != 1) {
        v[CHECK_TRUST].verdict = "fail";
        v[CHECK_TRUST].reason = "tls_error";
        detail_add(&v[CHECK_TRUST], "out of memory");
        goto report;
    }
    X509_STORE_CTX_set_app_data(ctx, &errs);
    X509_STORE_CTX_set_verify_cb(ctx, record_cb);
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_time(param, at);
    if (o->purpose != 0)
        X509_STORE_CTX_set_purpose(ctx, o->purpose);
    if (o->crls != NULL) {
        X509_STORE_CTX_set0_crls(ctx, o->crls);
        /* As tollgate's own listeners check client chains. */
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    }
    if (X509_verify_cert(ctx) < 0 && errs.n == 0)
        record_cb(0, ctx);
    chain = X509_STORE_CTX_get1_chain(ctx);
    if (chain == NULL || sk_X509_num(chain) == 0) {
        sk_X509_pop_free(chain, X509_free);
        chain = sk_X509_new_null();
        if (chain != NULL && sk_X509_push(chain, leaf) > 0)
            X509_up_ref(leaf);
    }
    /* Leaf first: its problem is the one a peer names. */
    for (int i = 1; i < errs.n; i++)
        for (int j = i; j > 0 && errs.e[j].depth < errs.e[j - 1].depth; j--) {
            int err = errs.e[j].err;
            int depth = errs.e[j].depth;
            errs.e[j] = errs.e[j - 1];
            errs.e[j - 1].err = err;
            errs.e[j - 1].depth = depth;
        }
    for (int i = 0; i < errs.n; i++) {
        struct verdict *cv = &v[category(errs.e[i].err)];
        if (cv->reason == NULL) {
            cv->verdict = "fail";
            cv->reason = tls_reason_from_verify(errs.e[i].err);
        }
        describe(cv, errs.e[i].err, errs.e[i].depth, chain, o, at);
    }
    if (v[CHECK_DATES].reason == NULL)
        pass_dates(&v[CHECK_DATES], chain, at);
    if (o->crls == NULL) {
        v[CHECK_REVOCATION].verdict = "skip";
        /* Where the certificate says its CRL is, so that the user can fetch it. */
        CRL_DIST_POINTS *cdp = X509_get_ext_d2i(leaf, NID_crl_distribution_points, NULL, NULL);
        detail_add(&v[CHECK_REVOCATION], "not checked (no --crl given)%s",
                   cdp ? "; the certificate names a CRL distribution point" : "");
        CRL_DIST_POINTS_free(cdp);
    } else if (v[CHECK_REVOCATION].reason == NULL) {
        pass_revocation(&v[CHECK_REVOCATION], o, sk_X509_num(chain));
    }
    if (v[CHECK_TRUST].reason == NULL)
        pass_trust(&v[CHECK_TRUST], chain, o);
    if (o->purpose == 0) {
        v[CHECK_PURPOSE].verdict = "skip";
        detail_add(&v[CHECK_PURPOSE], "not checked (give --purpose server or client)");
    } else if (v[CHECK_PURPOSE].reason == NULL) {
        char eku[256];
        eku_text(leaf, eku, sizeof(eku));
        detail_add(&v[CHECK_PURPOSE], "allowed for %s (extended key usage: %s)",
                   o->purpose == X509_PURPOSE_SSL_CLIENT ? "TLS client authentication"
                                                         : "TLS server authentication",
                   strcmp(eku, "none") == 0 ? "any" : eku);
    }
    /* The name is checked here rather than by X509_verify_cert, to say which
     * of the certificate's names matched. */
    v[CHECK_NAME] = (struct verdict){.verdict = "pass"};
    check_name(&v[CHECK_NAME], leaf, o);

report:
    for (int i = 0; i < CHECK_N; i++) {
        json_t *c = json_object();
        pki_json_set_str(c, "check", check_names[i]);
        pki_json_set_str(c, "verdict", v[i].verdict);
        pki_json_set_str(c, "reason", v[i].reason);
        pki_json_set_str(c, "detail", v[i].detail);
        json_array_append_new(checks, c);
        if (v[i].reason != NULL && *reason == NULL)
            *reason = v[i].reason;
    }
    if (chain_out != NULL) {
        json_t *arr = json_array();
        for (int i = 0; i < sk_X509_num(chain); i++)
            json_array_append_new(arr, pki_cert_brief(sk_X509_value(chain, i), at));
        *chain_out = arr;
    }
    sk_X509_pop_free(chain, X509_free);
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return *reason == NULL;
}

void pki_checks_print(const json_t *checks, const char *indent)
{
    size_t i;
    const json_t *c;
    json_array_foreach(checks, i, c)
    {
        const char *verdict = pki_json_get_str(c, "verdict", "?");
        const char *reason = pki_json_get_str(c, "reason", NULL);
        const char *label = strcmp(verdict, "pass") == 0   ? "PASS"
                            : strcmp(verdict, "skip") == 0 ? "SKIP"
                                                           : "FAIL";
        printf("%s%-11s %s  %s%s%s\n", indent, pki_json_get_str(c, "check", "?"), label,
               reason ? reason : "", reason ? ": " : "", pki_json_get_str(c, "detail", ""));
    }
}

enum tg_status pki_read_crls(const char *const *paths, size_t n, STACK_OF(X509_CRL) **out,
                             char *err, size_t err_len)
{
    char why[512];
    STACK_OF(X509_CRL) *all = sk_X509_CRL_new_null();
    *out = NULL;
    if (all == NULL) {
        snprintf(err, err_len, "out of memory");
        return TG_E_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        STACK_OF(X509_CRL) *crls = NULL;
        if (tls_read_crls(paths[i], &crls, why, sizeof(why)) != TG_OK) {
            snprintf(err, err_len, "%s: %s", paths[i], why);
            sk_X509_CRL_pop_free(all, X509_CRL_free);
            return TG_E_CONFIG;
        }
        X509_CRL *crl;
        while ((crl = sk_X509_CRL_shift(crls)) != NULL)
            if (sk_X509_CRL_push(all, crl) <= 0)
                X509_CRL_free(crl);
        sk_X509_CRL_free(crls);
    }
    *out = all;
    return TG_OK;
}

enum tg_status pki_trust_store(const char *path, X509_STORE **out, char *label, size_t label_len,
                               char *err, size_t err_len)
{
    char why[512];
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    enum tg_status st = TG_E_NOMEM;
    X509_STORE *store = X509_STORE_new();
    *out = NULL;
    if (store == NULL) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    if (path == NULL) {
        if (X509_STORE_set_default_paths(store) != 1) {
            snprintf(err, err_len, "cannot load the system trust store; give --ca");
            st = TG_E_CONFIG;
            goto out;
        }
        snprintf(label, label_len, "the system trust store");
    } else {
        st = tls_read_file(path, NULL, &certs, &key, why, sizeof(why));
        if (st != TG_OK) {
            snprintf(err, err_len, "%s: %s", path, why);
            goto out;
        }
        st = TG_E_CONFIG;
        if (sk_X509_num(certs) == 0) {
            snprintf(err, err_len, "%s: no certificate in it", path);
            goto out;
        }
        for (int i = 0; i < sk_X509_num(certs); i++)
            X509_STORE_add_cert(store, sk_X509_value(certs, i));
        snprintf(label, label_len, "%s", path);
    }
    *out = store;
    store = NULL;
    st = TG_OK;
out:
    X509_STORE_free(store);
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    ERR_clear_error();
    return st;
}

enum tg_status pki_verify(const struct pki_verify_opts *o, json_t **out, char *err, size_t err_len)
{
    char why[1024];
    char label[600];
    STACK_OF(X509) *certs = NULL;
    STACK_OF(X509) *untrusted = NULL;
    STACK_OF(X509_CRL) *crls = NULL;
    EVP_PKEY *key = NULL;
    X509_STORE *store = NULL;
    struct pki_chain order = {0};
    json_t *res = NULL;
    *out = NULL;
    enum tg_status st = pki_read(o->cert, o->password_file, &certs, &key, why, sizeof(why));
    if (st != TG_OK) {
        snprintf(err, err_len, "cert: %s", why);
        goto out;
    }
    st = TG_E_CONFIG;
    if (sk_X509_num(certs) == 0) {
        snprintf(err, err_len, "cert: %s: no certificate in it (only a key)", o->cert);
        goto out;
    }
    if (pki_trust_store(o->ca, &store, label, sizeof(label), why, sizeof(why)) != TG_OK) {
        snprintf(err, err_len, "--ca: %s", why);
        goto out;
    }
    if (o->n_crls > 0 && pki_read_crls(o->crls, o->n_crls, &crls, why, sizeof(why)) != TG_OK) {
        snprintf(err, err_len, "--crl: %s", why);
        goto out;
    }
    st = TG_E_NOMEM;
    untrusted = sk_X509_new_null();
    res = json_object();
    if (untrusted == NULL || res == NULL || pki_chain_build(certs, key, &order) != TG_OK) {
        snprintf(err, err_len, "out of memory");
        goto out;
    }
    X509 *leaf = sk_X509_value(certs, order.n > 0 ? order.order[0] : 0);
    for (int i = 0; i < sk_X509_num(certs); i++)
        if (sk_X509_value(certs, i) != leaf &&
            sk_X509_push(untrusted, sk_X509_value(certs, i)) <= 0)
            goto out;
    static const int purposes[] = {0, X509_PURPOSE_SSL_SERVER, X509_PURPOSE_SSL_CLIENT};
    struct pki_check_opts co = {
        .trust = store,
        .trust_label = label,
        .crls = crls,
        .name = o->host,
        .name_flag = "--host",
        .purpose = purposes[o->purpose],
        .at = o->at ? o->at : time(NULL),
    };
    char when[64];
    ASN1_TIME *t = ASN1_TIME_set(NULL, co.at);
    tls_time_format(t, when, sizeof(when));
    ASN1_TIME_free(t);
    json_t *checks = json_array();
    json_t *chain = NULL;
    const char *reason = NULL;
    bool is_ok = pki_check_chain(leaf, untrusted, &co, checks, &chain, &reason);
    pki_json_set_str(res, "file", o->cert);
    json_object_set_new(res, "certificate", pki_cert_brief(leaf, co.at));
    json_object_set_new(res, "chain", chain);
    pki_json_set_str(res, "trust", label);
    pki_json_set_str(res, "at", when);
    json_object_set_new(res, "checks", checks);
    json_object_set_new(res, "ok", json_boolean(is_ok));
    pki_json_set_str(res, "reason", reason);
    *out = res;
    res = NULL;
    st = TG_OK;
out:
    json_decref(res);
    pki_chain_fini(&order);
    X509_STORE_free(store);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    sk_X509_free(untrusted);
    sk_X509_pop_free(certs, X509_free);
    EVP_PKEY_free(key);
    return st;
}

static const char *const verify_opts[] = {"--ca", "--crl",           "--host", "--purpose",
                                          "--at", "--password-file", "--json", "--help"};

static void usage(FILE *out)
{
    fputs("usage: tollgate cert verify CERT [--ca CA] [--crl CRL]... [--host NAME]\n"
          "                            [--purpose server|client] [--at TIME]\n"
          "                            [--password-file F] [--json]\n"
          "  Checks CERT (with the chain in its file) as a TLS peer would, one check at a\n"
          "  time: dates, revocation, trust, purpose, name, each PASS, FAIL or SKIP, and\n"
          "  the reason code tollgate's logs would give.\n"
          "\n"
          "options:\n"
          "  --ca             trusted CA certificates (default: the system trust store)\n"
          "  --crl            CRL file(s); revocation is checked only with them\n"
          "  --host           DNS name or IP address the certificate must cover\n"
          "  --purpose        server (TLS server authentication) or client\n"
          "  --at             check at another time: 2026-01-31, 2026-01-31T12:00:00Z or\n"
          "                   @EPOCH (UTC)\n"
          "  --password-file  file whose first line is the password of CERT\n"
          "  --json           the result as JSON\n"
          "  -h, --help       this help\n"
          "\n"
          "examples:\n"
          "  tollgate cert verify pki/server-ecdsa.crt --ca pki/ca-bundle.crt \\\n"
          "      --host localhost\n"
          "  tollgate cert verify pki/revoked.crt --ca pki/ca-bundle.crt \\\n"
          "      --crl pki/clients.crl --purpose client\n"
          "  tollgate cert verify site.pem --at 2027-01-01\n"
          "\n"
          "exit codes: 0 every check passes, 1 rejected, 2 usage error or an unreadable\n"
          "--ca or --crl.\n",
          out);
}

static void print_result(const json_t *r)
{
    const json_t *cert = json_object_get(r, "certificate");
    size_t n = json_array_size(json_object_get(r, "chain"));
    printf("certificate  %s (%s)\n", pki_json_get_str(cert, "subject", "?"),
           pki_json_get_str(r, "file", "?"));
    printf("chain        %zu certificate%s as built\n", n, n == 1 ? "" : "s");
    printf("trust        %s\n", pki_json_get_str(r, "trust", "?"));
    printf("checked at   %s\n", pki_json_get_str(r, "at", "?"));
    pki_checks_print(json_object_get(r, "checks"), "  ");
    if (json_is_true(json_object_get(r, "ok")))
        printf("result: OK, every check passed\n");
    else
        printf("result: REJECTED (%s)\n", pki_json_get_str(r, "reason", "?"));
}

int pki_cmd_verify(int argc, char **argv)
{
    struct pki_verify_opts o = {0};
    const char *crls[16];
    bool is_json = false;
    int rc = 2;
    json_t *res = NULL;
    o.crls = crls;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        int m = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--json") == 0) {
            is_json = true;
        } else if ((m = pki_opt(argc, argv, &i, "--ca", &v)) > 0) {
            o.ca = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--crl", &v)) > 0) {
            if (o.n_crls == TG_ARRAY_LEN(crls)) {
                fprintf(stderr, "tollgate cert verify: at most %zu --crl files\n",
                        TG_ARRAY_LEN(crls));
                return 2;
            }
            crls[o.n_crls++] = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--host", &v)) > 0) {
            o.host = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--password-file", &v)) > 0) {
            o.password_file = v;
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--purpose", &v)) > 0) {
            if (strcmp(v, "server") == 0) {
                o.purpose = PKI_PURPOSE_SERVER;
            } else if (strcmp(v, "client") == 0) {
                o.purpose = PKI_PURPOSE_CLIENT;
            } else {
                fprintf(stderr, "tollgate cert verify: --purpose takes server or client\n");
                return 2;
            }
        } else if (m == 0 && (m = pki_opt(argc, argv, &i, "--at", &v)) > 0) {
            if (!pki_parse_time(v, &o.at)) {
                fprintf(stderr,
                        "tollgate cert verify: --at \"%s\": give 2026-01-31, "
                        "2026-01-31T12:00:00Z or @EPOCH (UTC)\n",
                        v);
                return 2;
            }
        } else if (m < 0) {
            fprintf(stderr, "tollgate cert verify: %s needs a value\n", a);
            return 2;
        } else if (a[0] == '-' && a[1] != '\0') {
            return suggest_usage_error(stderr, "cert verify", a, verify_opts,
                                       TG_ARRAY_LEN(verify_opts));
        } else if (o.cert == NULL) {
            o.cert = a;
        } else {
            fprintf(stderr,
                    "tollgate cert verify: one certificate file only (got \"%s\" and "
                    "\"%s\")\n",
                    o.cert, a);
            return 2;
        }
    }
    if (o.cert == NULL) {
        usage(stderr);
        return 2;
    }
    char err[1200];
    enum tg_status st = pki_verify(&o, &res, err, sizeof(err));
    if (st != TG_OK) {
        fprintf(stderr, "tollgate cert verify: %s\n", err);
        /* The certificate being bad is the answer; a bad --ca or --crl is the
         * command's fault. */
        rc = strncmp(err, "cert:", 5) == 0 ? 1 : 2;
        goto out;
    }
    if (is_json)
        pki_json_print(res);
    else
        print_result(res);
    rc = json_is_true(json_object_get(res, "ok")) ? 0 : 1;
out:
    json_decref(res);
    return rc;
}
