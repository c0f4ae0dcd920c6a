/*
 * Helpers shared by the certificate tools: formatting certificates and keys,
 * ordering a file's certificates into a chain, reading files with a
 * password, option parsing and JSON.
 */
#include "pki/internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/ui.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

int pki_opt(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

void pki_sanitize(const unsigned char *src, size_t n, char *dst, size_t dst_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (dst_len == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = src[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            if (o + 1 >= dst_len)
                break;
            dst[o++] = (char)c;
        } else {
            if (o + 4 >= dst_len)
                break;
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    dst[o] = '\0';
}

json_t *pki_json_str(const char *s)
{
    json_t *v = json_string(s);
    if (v != NULL)
        return v;
    char clean[2048];
    pki_sanitize((const unsigned char *)s, strlen(s), clean, sizeof(clean));
    return json_string(clean);
}

void pki_json_set_str(json_t *obj, const char *key, const char *s)
{
    json_object_set_new(obj, key, s ? pki_json_str(s) : json_null());
}

const char *pki_json_get_str(const json_t *obj, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : def;
}

void pki_subject(const X509 *x, char *dst, size_t dst_len)
{
    tls_name_format(X509_get_subject_name(x), dst, dst_len);
    if (dst[0] == '\0')
        snprintf(dst, dst_len, "(empty subject)");
}

void pki_issuer(const X509 *x, char *dst, size_t dst_len)
{
    tls_name_format(X509_get_issuer_name(x), dst, dst_len);
    if (dst[0] == '\0')
        snprintf(dst, dst_len, "(empty issuer)");
}

static void hex_colons(const unsigned char *p, size_t n, bool is_upper, char *dst, size_t dst_len)
{
    const char *hex = is_upper ? "0123456789ABCDEF" : "0123456789abcdef";
    size_t o = 0;
    dst[0] = '\0';
    for (size_t i = 0; i < n && o + 3 < dst_len; i++) {
        if (i > 0 && is_upper)
            dst[o++] = ':';
        dst[o++] = hex[p[i] >> 4];
        dst[o++] = hex[p[i] & 15];
    }
    dst[o] = '\0';
}

void pki_fingerprint(const X509 *x, char *dst, size_t dst_len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (X509_digest(x, EVP_sha256(), md, &n) != 1)
        n = 0;
    hex_colons(md, n, true, dst, dst_len);
}

void pki_spki_fingerprint(const EVP_PKEY *k, char *dst, size_t dst_len)
{
    unsigned char *der = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int len = i2d_PUBKEY(k, &der);
    if (len <= 0 || EVP_Digest(der, (size_t)len, md, &n, EVP_sha256(), NULL) != 1)
        n = 0;
    OPENSSL_free(der);
    hex_colons(md, n, false, dst, dst_len);
}

void pki_key_describe(const EVP_PKEY *k, char *dst, size_t dst_len, int *bits, bool *is_weak)
{
    char group[64] = "";
    *bits = k ? EVP_PKEY_get_bits(k) : 0;
    *is_weak = false;
    switch (k ? EVP_PKEY_get_base_id(k) : EVP_PKEY_NONE) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
        snprintf(dst, dst_len, "RSA %d", *bits);
        *is_weak = *bits < 2048;
        return;
    case EVP_PKEY_DSA:
        snprintf(dst, dst_len, "DSA %d", *bits);
        *is_weak = true; /* TLS 1.3 has no DSA at all */
        return;
    case EVP_PKEY_EC: {
        size_t n = 0;
        if (!EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            &n))
            snprintf(group, sizeof(group), "(explicit curve)");
        const char *nist = EC_curve_nid2nist(OBJ_sn2nid(group));
        snprintf(dst, dst_len, "EC %s", nist ? nist : group);
        *is_weak = *bits < 224;
        return;
    }
    case EVP_PKEY_ED25519:
        snprintf(dst, dst_len, "Ed25519");
        return;
    case EVP_PKEY_ED448:
        snprintf(dst, dst_len, "Ed448");
        return;
    default:
        snprintf(dst, dst_len, "%s %d", k ? OBJ_nid2sn(EVP_PKEY_get_base_id(k)) : "none", *bits);
        return;
    }
}

long pki_days_until(const ASN1_TIME *t, time_t now)
{
    int days = 0;
    int secs = 0;
    ASN1_TIME *from = ASN1_TIME_set(NULL, now);
    if (from == NULL || t == NULL || !ASN1_TIME_diff(&days, &secs, from, t))
        days = 0;
    ASN1_TIME_free(from);
    /* ASN1_TIME_diff truncates towards zero; a past moment is a past day. */
    if (days == 0 && secs < 0)
        return -1;
    return days;
}

static void ip_text(const ASN1_OCTET_STRING *ip, char *dst, size_t dst_len)
{
    const unsigned char *p = ASN1_STRING_get0_data(ip);
    int n = ASN1_STRING_length(ip);
    if (n == 4 && inet_ntop(AF_INET, p, dst, (socklen_t)dst_len) != NULL)
        return;
    if (n == 16 && inet_ntop(AF_INET6, p, dst, (socklen_t)dst_len) != NULL)
        return;
    snprintf(dst, dst_len, "(%d-byte address)", n);
}

static void general_name_text(const GENERAL_NAME *g, char *dst, size_t dst_len)
{
    char v[600];
    const char *kind = "other";
    const ASN1_STRING *s = NULL;
    switch (g->type) {
    case GEN_DNS:
        kind = "DNS";
        s = g->d.dNSName;
        break;
    case GEN_EMAIL:
        kind = "email";
        s = g->d.rfc822Name;
        break;
    case GEN_URI:
        kind = "URI";
        s = g->d.uniformResourceIdentifier;
        break;
    case GEN_IPADD:
        ip_text(g->d.iPAddress, v, sizeof(v));
        snprintf(dst, dst_len, "IP:%s", v);
        return;
    case GEN_DIRNAME:
        tls_name_format(g->d.directoryName, v, sizeof(v));
        snprintf(dst, dst_len, "DirName:%s", v);
        return;
    default:
        snprintf(dst, dst_len, "othername");
        return;
    }
    pki_sanitize(ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s), v, sizeof(v));
    snprintf(dst, dst_len, "%s:%s", kind, v);
}

json_t *pki_sans_json(const X509 *x)
{
    json_t *arr = json_array();
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; arr != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        char text[700];
        general_name_text(sk_GENERAL_NAME_value(names, i), text, sizeof(text));
        json_array_append_new(arr, pki_json_str(text));
    }
    GENERAL_NAMES_free(names);
    return arr;
}

void pki_json_join(const json_t *arr, const char *sep, char *dst, size_t dst_len)
{
    size_t o = 0;
    size_t i;
    const json_t *v;
    dst[0] = '\0';
    json_array_foreach(arr, i, v)
    {
        const char *s = json_is_string(v) ? json_string_value(v) : "?";
        int n = snprintf(dst + o, dst_len - o, "%s%s", i ? sep : "", s);
        if (n < 0 || (size_t)n >= dst_len - o) {
            if (dst_len > 4)
                snprintf(dst + dst_len - 4, 4, "...");
            return;
        }
        o += (size_t)n;
    }
}

json_t *pki_cert_brief(const X509 *x, time_t now)
{
    char buf[PKI_NAME_MAX];
    int bits = 0;
    bool is_weak = false;
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    pki_subject(x, buf, sizeof(buf));
    pki_json_set_str(o, "subject", buf);
    pki_issuer(x, buf, sizeof(buf));
    pki_json_set_str(o, "issuer", buf);
    tls_time_format(X509_get0_notBefore(x), buf, sizeof(buf));
    pki_json_set_str(o, "not_before", buf);
    tls_time_format(X509_get0_notAfter(x), buf, sizeof(buf));
    pki_json_set_str(o, "not_after", buf);
    json_object_set_new(o, "days_left", json_integer(pki_days_until(X509_get0_notAfter(x), now)));
    pki_key_describe(X509_get0_pubkey(x), buf, sizeof(buf), &bits, &is_weak);
    pki_json_set_str(o, "key", buf);
    json_object_set_new(o, "is_ca", json_boolean(X509_check_ca((X509 *)x) != 0));
    json_object_set_new(o, "self_signed", json_boolean(X509_self_signed((X509 *)x, 0) == 1));
    pki_fingerprint(x, buf, sizeof(buf));
    pki_json_set_str(o, "sha256_fingerprint", buf);
    return o;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil), so that parsing needs neither timegm nor TZ. */
static long days_from_civil(long y, long m, long d)
{
    y -= m <= 2;
    long era = (y >= 0 ? y : y - 399) / 400;
    long yoe = y - era * 400;
    long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* Reads exactly n digits at *p into *v. */
static bool digits(const char **p, int n, long *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        *v = *v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    return true;
}

bool pki_parse_time(const char *s, time_t *out)
{
    if (s[0] == '@') {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s + 1, &end, 10);
        if (errno != 0 || end == s + 1 || *end != '\0' || v < 0)
            return false;
        *out = (time_t)v;
        return true;
    }
    long y, mo, d, h = 0, mi = 0, se = 0;
    const char *p = s;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d))
        return false;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi))
            return false;
        if (*p == ':' && (p++, !digits(&p, 2, &se)))
            return false;
        if (*p == 'Z')
            p++;
    }
    if (*p != '\0' || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        se > 60)
        return false;
    *out = (time_t)(days_from_civil(y, mo, d) * 86400L + h * 3600L + mi * 60L + se);
    return true;
}

void pki_chain_fini(struct pki_chain *c)
{
    if (c == NULL)
        return;
    free(c->order);
    free(c->rest);
    memset(c, 0, sizeof(*c));
}

/* Whether certs[i] issued some other certificate of the file. */
static bool issued_another(STACK_OF(X509) *certs, int i)
{
    X509 *issuer = sk_X509_value(certs, i);
    for (int j = 0; j < sk_X509_num(certs); j++)
        if (j != i && X509_check_issued(issuer, sk_X509_value(certs, j)) == X509_V_OK)
            return true;
    return false;
}

static int pick_leaf(STACK_OF(X509) *certs, int key_match)
{
    int n = sk_X509_num(certs);
    if (key_match >= 0)
        return key_match;
    /* An end-entity certificate first, else any that issued nothing here. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++)
            if ((pass == 1 || X509_check_ca(sk_X509_value(certs, i)) == 0) &&
                !issued_another(certs, i))
                return i;
    return 0;
}

enum tg_status pki_chain_build(STACK_OF(X509) *certs, const EVP_PKEY *key, struct pki_chain *out)
{
    enum tg_status st = TG_E_NOMEM;
    int n = sk_X509_num(certs);
    bool *used = NULL;
    memset(out, 0, sizeof(*out));
    out->key_match = -1;
    out->is_in_order = true;
    if (n <= 0)
        return TG_OK;
    out->order = calloc((size_t)n, sizeof(*out->order));
    out->rest = calloc((size_t)n, sizeof(*out->rest));
    used = calloc((size_t)n, sizeof(*used));
    if (out->order == NULL || out->rest == NULL || used == NULL)
        goto out;
    if (key != NULL) {
        for (int i = 0; i < n && out->key_match < 0; i++)
            if (EVP_PKEY_eq(X509_get0_pubkey(sk_X509_value(certs, i)), key) == 1)
                out->key_match = i;
    }
    /* Beyond PKI_CHAIN_MAX (a big trust bundle), ordering costs n^2 issuer
     * checks for no insight: keep the file order. */
    if (n > PKI_CHAIN_MAX) {
        for (int i = 0; i < n; i++)
            out->rest[out->n_rest++] = i;
        out->is_bundle = true;
        st = TG_OK;
        goto out;
    }
    int cur = pick_leaf(certs, out->key_match);
    out->order[out->n++] = cur;
    used[cur] = true;
    while (X509_self_signed(sk_X509_value(certs, cur), 0) != 1) {
        int next = -1;
        for (int j = 0; j < n && next < 0; j++)
            if (!used[j] &&
                X509_check_issued(sk_X509_value(certs, j), sk_X509_value(certs, cur)) == X509_V_OK)
                next = j;
        if (next < 0)
            break;
        used[next] = true;
        out->order[out->n++] = next;
        cur = next;
    }
    for (int i = 0; i < out->n; i++)
        if (out->order[i] != i)
            out->is_in_order = false;
    bool is_all_ca = true;
    for (int i = 0; i < n; i++) {
        is_all_ca = is_all_ca && X509_check_ca(sk_X509_value(certs, i)) != 0;
        if (!used[i])
            out->rest[out->n_rest++] = i;
    }
    out->is_bundle = is_all_ca && out->key_match < 0 && out->n_rest > 0;
    st = TG_OK;
out:
    free(used);
    if (st != TG_OK)
        pki_chain_fini(out);
    ERR_clear_error(); /* X509_check_issued and friends may leave some */
    return st;
}

/* Asks on the terminal; false when there is none or the user gave up. */
static bool ask_password(const char *path, char *dst, size_t dst_len)
{
    char prompt[600];
    if (!isatty(STDIN_FILENO))
        return false;
    snprintf(prompt, sizeof(prompt), "Password for %s: ", path);
    return EVP_read_pw_string(dst, (int)dst_len, prompt, 0) == 0;
}

enum tg_status pki_read(const char *path, const char *password_file, STACK_OF(X509) **certs,
                        EVP_PKEY **key, char *err, size_t err_len)
{
    char password[PKI_PASSWORD_MAX];
    char why[512];
    const char *pass = NULL;
    enum tg_status st;
    *certs = NULL;
    *key = NULL;
    if (password_file != NULL) {
        st = tls_read_password_file(password_file, password, sizeof(password), why, sizeof(why));
        if (st != TG_OK) {
            snprintf(err, err_len, "%s (--password-file): %s", password_file, why);
            goto out;
        }
        pass = password;
    }
    st = tls_read_file(path, pass, certs, key, why, sizeof(why));
    if (st != TG_OK && pass == NULL && strstr(why, "password") != NULL) {
        if (ask_password(path, password, sizeof(password))) {
            pass = password;
            st = tls_read_file(path, pass, certs, key, why, sizeof(why));
        } else {
            snprintf(err, err_len,
                     "%s: protected by a password and none was given; pass --password-file FILE "
                     "(a file whose first line is the password)",
                     path);
            goto out;
        }
    }
    if (st != TG_OK)
        snprintf(err, err_len, "%s: %s", path, why);
out:
    OPENSSL_cleanse(password, sizeof(password));
    return st;
}

const char *pki_file_format(const char *path)
{
    static unsigned char buf[64 * 1024];
    const char *fmt = "unknown";
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return fmt;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (memmem(buf, n, "-----BEGIN ", 11) != NULL)
        return memmem(buf, n, "-----BEGIN PKCS7", 16) ? "PKCS#7 (PEM)" : "PEM";
    ERR_set_mark();
    const unsigned char *p = buf;
    X509 *x = d2i_X509(NULL, &p, (long)n);
    PKCS12 *p12 = NULL;
    PKCS7 *p7 = NULL;
    if (x != NULL) {
        fmt = "DER certificate";
    } else if ((p = buf, p12 = d2i_PKCS12(NULL, &p, (long)n)) != NULL) {
        fmt = "PKCS#12";
    } else if ((p = buf, p7 = d2i_PKCS7(NULL, &p, (long)n)) != NULL) {
        fmt = "PKCS#7 (DER)";
    } else if (n > 0 && buf[0] == 0x30) {
        fmt = "DER private key";
    }
    X509_free(x);
    PKCS12_free(p12);
    PKCS7_free(p7);
    ERR_pop_to_mark();
    return fmt;
}

void pki_json_print(const json_t *v)
{
    json_dumpf(v, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
}
