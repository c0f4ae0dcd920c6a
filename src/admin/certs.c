#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/internal.h"
#include "tls/tls.h"

void admin_certs_fini(struct admin_certs *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->v[i].name);
        json_decref(c->v[i].sans);
    }
    free(c->v);
    json_decref(c->errors);
    memset(c, 0, sizeof(*c));
}

static json_t *sans_json(X509 *x)
{
    json_t *arr = json_array();
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        char buf[300];
        if (g->type == GEN_DNS) {
            const ASN1_IA5STRING *s = g->d.dNSName;
            snprintf(buf, sizeof(buf), "DNS:%.*s", s->length, (const char *)s->data);
        } else if (g->type == GEN_IPADD) {
            const ASN1_OCTET_STRING *ip = g->d.iPAddress;
            if (ip->length == 4) {
                snprintf(buf, sizeof(buf), "IP:%u.%u.%u.%u", ip->data[0], ip->data[1], ip->data[2],
                         ip->data[3]);
            } else if (ip->length == 16) {
                char a6[INET6_ADDRSTRLEN];
                if (inet_ntop(AF_INET6, ip->data, a6, sizeof(a6)) == NULL)
                    continue;
                snprintf(buf, sizeof(buf), "IP:%s", a6);
            } else {
                continue;
            }
        } else {
            continue;
        }
        json_array_append_new(arr, json_string(buf));
    }
    GENERAL_NAMES_free(gens);
    return arr;
}

static void add_cert(struct admin_certs *c, const char *name, const char *kind, bool is_leaf,
                     X509 *x)
{
    struct admin_cert *v = realloc(c->v, (c->n + 1) * sizeof(*v));
    if (v == NULL)
        return;
    c->v = v;
    struct admin_cert *e = &v[c->n];
    memset(e, 0, sizeof(*e));
    e->name = strdup(name);
    if (e->name == NULL)
        return;
    e->kind = kind;
    e->is_leaf = is_leaf;
    tls_name_format(X509_get_subject_name(x), e->subject, sizeof(e->subject));
    tls_name_format(X509_get_issuer_name(x), e->issuer, sizeof(e->issuer));
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    snprintf(e->serial, sizeof(e->serial), "%s", hex ? hex : "");
    OPENSSL_free(hex);
    BN_free(bn);
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
        e->not_after = timegm(&tm);
    e->sans = sans_json(x);
    c->n++;
}

static void read_file(struct admin_certs *c, const char *name, const char *kind, const char *path,
                      const char *password_file)
{
    char password[1024] = "", err[512] = "";
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    if (password_file != NULL && tls_read_password_file(password_file, password, sizeof(password),
                                                        err, sizeof(err)) != TG_OK) {
        json_array_append_new(c->errors, json_pack("{s:s,s:s}", "certificate", name, "error", err));
        return;
    }
    enum tg_status st =
        tls_read_file(path, password_file ? password : NULL, &certs, &key, err, sizeof(err));
    OPENSSL_cleanse(password, sizeof(password));
    EVP_PKEY_free(key);
    if (st != TG_OK) {
        json_array_append_new(c->errors, json_pack("{s:s,s:s}", "certificate", name, "error", err));
        return;
    }
    for (int i = 0; i < sk_X509_num(certs); i++)
        add_cert(c, name, kind, i == 0, sk_X509_value(certs, i));
    sk_X509_pop_free(certs, X509_free);
}

void admin_certs_update(struct admin_certs *c, unsigned gen, const struct config *cfg)
{
    if (c->gen == gen)
        return;
    admin_certs_fini(c);
    c->gen = gen;
    c->errors = json_array();
    for (size_t i = 0; i < cfg->n_certificates; i++) {
        const struct cfg_certificate *e = &cfg->certificates[i];
        read_file(c, e->name, "server", e->cert, e->password_file);
    }
    for (size_t i = 0; i < cfg->n_client_cas; i++) {
        const struct cfg_client_ca *e = &cfg->client_cas[i];
        read_file(c, e->name, "ca", e->ca, NULL);
    }
}

void admin_certs_metrics(const struct admin_certs *c, struct admin_out *o)
{
    admin_out_printf(o, "# HELP tollgate_certificate_not_after_timestamp_seconds When a loaded "
                        "server or CA certificate expires (Unix time).\n"
                        "# TYPE tollgate_certificate_not_after_timestamp_seconds gauge\n");
    for (size_t i = 0; i < c->n; i++) {
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = strcmp(c->v[j].name, c->v[i].name) == 0 &&
                  strcmp(c->v[j].serial, c->v[i].serial) == 0;
        if (dup)
            continue;
        admin_out_printf(o, "tollgate_certificate_not_after_timestamp_seconds{certificate=\"");
        admin_label_escape(o, c->v[i].name);
        admin_out_printf(o, "\",serial=\"");
        admin_label_escape(o, c->v[i].serial);
        admin_out_printf(o, "\"} %lld\n", (long long)c->v[i].not_after);
    }
    /* The documented name: per certificates/client_cas entry, the seconds until
     * the first of its certificates expires (negative once one has). */
    admin_out_printf(o, "# HELP tollgate_certificate_expiry_seconds Seconds until the first "
                        "certificate of a certificates or client_cas entry expires.\n"
                        "# TYPE tollgate_certificate_expiry_seconds gauge\n");
    time_t now = time(NULL);
    for (size_t i = 0; i < c->n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(c->v[j].name, c->v[i].name) == 0;
        if (seen)
            continue;
        time_t first = c->v[i].not_after;
        for (size_t j = i + 1; j < c->n; j++)
            if (strcmp(c->v[j].name, c->v[i].name) == 0 && c->v[j].not_after < first)
                first = c->v[j].not_after;
        admin_out_printf(o, "tollgate_certificate_expiry_seconds{name=\"");
        admin_label_escape(o, c->v[i].name);
        admin_out_printf(o, "\"} %lld\n", (long long)(first - now));
    }
}

json_t *admin_certs_json(const struct admin_certs *c)
{
    json_t *arr = json_array();
    time_t now = time(NULL);
    for (size_t i = 0; arr != NULL && i < c->n; i++) {
        const struct admin_cert *e = &c->v[i];
        char na[32];
        struct tm tm;
        gmtime_r(&e->not_after, &tm);
        strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
        double left = difftime(e->not_after, now) / 86400.0;
        long days = (long)left;
        if (left < 0 && (double)days != left)
            days--; /* floor: a certificate that expired an hour ago has -1 days left */
        const char *role = strcmp(e->kind, "ca") == 0 ? "ca" : e->is_leaf ? "leaf" : "chain";
        json_array_append_new(
            arr, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:O,s:s,s:I,s:I}", "name", e->name, "kind",
                           e->kind, "role", role, "subject", e->subject, "issuer", e->issuer,
                           "serial", e->serial, "sans", e->sans, "not_after", na, "not_after_unix",
                           (json_int_t)e->not_after, "days_left", (json_int_t)days));
    }
    return arr;
}
