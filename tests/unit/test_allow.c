/* Allow-lists: the patterns config_allow_term_set accepts and refuses,
 * allow files (config/allow.c), and what tls_allow_* match on
 * certificates minted here (tls/allow.c), each accepting case beside a
 * rejecting twin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "config/config.h"
#include "tls/tls.h"
#include "unit_x509.h"

#define DAY (24L * 3600)

static char dir[] = "/tmp/tg-test-allow-XXXXXX";
static EVP_PKEY *ca_key, *leaf_key, *other_key;
static X509 *ca;

/* ---- certificates ---- */

/* A leaf signed by ca: subject O=tollgate unit and CN=cn (no CN when cn
 * is NULL), serial serial (negative allowed), subjectAltName sans (none
 * when NULL), public key key (leaf_key when NULL). */
static X509 *mint_with(const char *cn, long serial, GENERAL_NAMES *sans, EVP_PKEY *key)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial), 1);
    X509_NAME *subject = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC, (const unsigned char *)"tollgate unit",
                               -1, -1, 0);
    if (cn != NULL)
        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1,
                                   0);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509_gmtime_adj(X509_getm_notBefore(x), -DAY);
    X509_gmtime_adj(X509_getm_notAfter(x), 365 * DAY);
    X509_set_pubkey(x, key != NULL ? key : leaf_key);
    if (sans != NULL)
        unit_add_sans(x, sans);
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    GENERAL_NAMES_free(sans);
    return x;
}

static GENERAL_NAMES *sans_new(void)
{
    GENERAL_NAMES *s = sk_GENERAL_NAME_new_null();
    assert_non_null(s);
    return s;
}

/* A leaf with one text subjectAltName entry. */
static X509 *mint_san(int type, const char *text)
{
    GENERAL_NAMES *s = sans_new();
    unit_san_text(s, type, text);
    return mint_with("san", 7, s, NULL);
}

/* A leaf with one iPAddress entry of len octets. */
static X509 *mint_ip_bytes(const void *addr, size_t len)
{
    GENERAL_NAMES *s = sans_new();
    unit_san_add(s, GEN_IPADD, addr, len);
    return mint_with("ip", 7, s, NULL);
}

/* The identity leaf most tests use: CN partner-api, serial 0x1234, and
 * one entry of each kind. */
static X509 *mint_identity(void)
{
    GENERAL_NAMES *s = sans_new();
    unit_san_text(s, GEN_DNS, "svc.partner.example");
    unit_san_text(s, GEN_URI, "spiffe://prod.example/ns/default/sa/web");
    unit_san_text(s, GEN_EMAIL, "Alice@Partner.Example");
    unit_san_ip(s, "10.1.2.3");
    unit_san_ip(s, "2001:db8::7");
    return mint_with("partner-api", 0x1234, s, NULL);
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    ca_key = EVP_EC_gen("P-256");
    leaf_key = EVP_EC_gen("P-256");
    other_key = EVP_EC_gen("P-256");
    ca = X509_new();
    if (ca_key == NULL || leaf_key == NULL || other_key == NULL || ca == NULL)
        return -1;
    X509_set_version(ca, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(ca), 1);
    X509_NAME *name = X509_get_subject_name(ca);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"tollgate unit", -1,
                               -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"Allow Test CA", -1,
                               -1, 0);
    X509_set_issuer_name(ca, name);
    X509_gmtime_adj(X509_getm_notBefore(ca), -DAY);
    X509_gmtime_adj(X509_getm_notAfter(ca), 365 * DAY);
    X509_set_pubkey(ca, ca_key);
    return X509_sign(ca, ca_key, EVP_sha256()) > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(leaf_key);
    EVP_PKEY_free(other_key);
    rmdir(dir);
    return 0;
}

/* ---- patterns ---- */

static void term_fini(struct cfg_allow_term *t)
{
    free(t->value);
    t->value = NULL;
}

/* value is accepted for field f and kept as written. */
static void accept_term(enum cfg_allow_field f, const char *value, struct cfg_allow_term *t)
{
    const char *why = NULL;
    memset(t, 0, sizeof(*t));
    t->pos = (struct cfg_pos){.line = 3, .col = 4};
    if (!config_allow_term_set(t, f, value, &why))
        fail_msg("%s \"%s\" refused: %s", config_allow_field_name(f), value, why);
    assert_int_equal(t->field, f);
    assert_string_equal(t->value, value);
    assert_int_equal(t->pos.line, 3);
    assert_int_equal(t->pos.col, 4);
}

static void accepts(enum cfg_allow_field f, const char *value)
{
    struct cfg_allow_term t;
    accept_term(f, value, &t);
    term_fini(&t);
}

/* value is refused for field f with a reason that contains want, and the
 * term is left as it was. */
static void refuses(enum cfg_allow_field f, const char *value, const char *want)
{
    struct cfg_allow_term t, before;
    memset(&t, 0xa5, sizeof(t));
    memcpy(&before, &t, sizeof(t));
    const char *why = NULL;
    if (config_allow_term_set(&t, f, value, &why))
        fail_msg("%s \"%s\" accepted", config_allow_field_name(f), value);
    assert_non_null(why);
    if (strstr(why, want) == NULL)
        fail_msg("%s \"%s\": reason \"%s\" lacks \"%s\"", config_allow_field_name(f), value, why,
                 want);
    assert_memory_equal(&t, &before, sizeof(t));
}

static void test_field_names(void **state)
{
    (void)state;
    static const char *const names[] = {"subject_cn",  "san_dns", "san_uri",
                                        "san_email",   "san_ip",  "fingerprint_sha256",
                                        "spki_sha256", "issuer",  "serial"};
    assert_int_equal(sizeof(names) / sizeof(names[0]), CFG_ALLOW_N_FIELDS);
    for (int f = 0; f < CFG_ALLOW_N_FIELDS; f++) {
        assert_string_equal(config_allow_field_name((enum cfg_allow_field)f), names[f]);
        assert_int_equal(config_allow_field_of(names[f]), f);
    }
    assert_string_equal(config_allow_field_name(CFG_ALLOW_N_FIELDS), "?");
    assert_string_equal(config_allow_field_name((enum cfg_allow_field) - 1), "?");
    assert_int_equal(config_allow_field_of("san_DNS"), -1);
    assert_int_equal(config_allow_field_of("san_dns "), -1);
    assert_int_equal(config_allow_field_of(""), -1);
    refuses(CFG_ALLOW_N_FIELDS, "x", "not an allow-list field");
}

static void test_text_patterns(void **state)
{
    (void)state;
    char long_ok[1025], too_long[1026];
    memset(long_ok, 'a', sizeof(long_ok) - 1);
    long_ok[sizeof(long_ok) - 1] = '\0';
    memset(too_long, 'a', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';

    static const enum cfg_allow_field text[] = {CFG_ALLOW_SUBJECT_CN, CFG_ALLOW_ISSUER};
    for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
        accepts(text[i], "partner-api");
        accepts(text[i], "*");
        accepts(text[i], "a*b*c");
        accepts(text[i], "Z\xc3\xbcrich \\, #1");
        accepts(text[i], long_ok);
        refuses(text[i], "", "1-1024 bytes");
        refuses(text[i], too_long, "1-1024 bytes");
        refuses(text[i], "a\tb", "no control characters");
        refuses(text[i], "a\x7f", "no control characters");
        refuses(text[i], "a\x1b[0m", "no control characters");
        refuses(text[i], "a\xc2\x85", "no control characters"); /* C1 NEL */
        refuses(text[i], "a\xff", "printable UTF-8");
        refuses(text[i], "a\xc3", "printable UTF-8");
        refuses(text[i], "\xc0\xaf", "printable UTF-8"); /* overlong '/' */
    }

    accepts(CFG_ALLOW_SAN_DNS, "svc.partner.example");
    accepts(CFG_ALLOW_SAN_DNS, "*.partner.example");
    accepts(CFG_ALLOW_SAN_DNS, "Web-*.Example.COM");
    accepts(CFG_ALLOW_SAN_DNS, "*");
    accepts(CFG_ALLOW_SAN_DNS, "*.*.example");
    refuses(CFG_ALLOW_SAN_DNS, "a_b.example", "letters, digits, '-', '.' and '*' only");
    refuses(CFG_ALLOW_SAN_DNS, "a b.example", "letters, digits, '-', '.' and '*' only");
    refuses(CFG_ALLOW_SAN_DNS, "caf\xc3\xa9.example", "letters, digits, '-', '.' and '*' only");
    refuses(CFG_ALLOW_SAN_DNS, ".example", "empty label");
    refuses(CFG_ALLOW_SAN_DNS, "example.", "empty label");
    refuses(CFG_ALLOW_SAN_DNS, "a..example", "empty label");
    refuses(CFG_ALLOW_SAN_DNS, "", "1-1024 bytes");
    refuses(CFG_ALLOW_SAN_DNS, too_long, "1-1024 bytes");

    accepts(CFG_ALLOW_SAN_URI, "spiffe://prod.example/*");
    accepts(CFG_ALLOW_SAN_URI, "spiffe://prod.example/ns/*/sa/web");
    accepts(CFG_ALLOW_SAN_URI, "urn:uuid:*");
    refuses(CFG_ALLOW_SAN_URI, "prod.example/web", "starts with its scheme and ':'");
    refuses(CFG_ALLOW_SAN_URI, "://prod.example", "starts with its scheme and ':'");
    refuses(CFG_ALLOW_SAN_URI, "spiffe://a\nb", "no control characters");

    accepts(CFG_ALLOW_SAN_EMAIL, "alice@partner.example");
    accepts(CFG_ALLOW_SAN_EMAIL, "*@partner.example");
    refuses(CFG_ALLOW_SAN_EMAIL, "alice", "holds '@'");
    refuses(CFG_ALLOW_SAN_EMAIL, "*", "holds '@'");
    refuses(CFG_ALLOW_SAN_EMAIL, "a@b\r", "no control characters");
}

static const char fp_hex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
static const char fp_colons[] = "00:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:"
                                "10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F";
static const char fp_b64[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

static void expect_bytes(enum cfg_allow_field f, const char *value, const uint8_t *want,
                         size_t want_len)
{
    struct cfg_allow_term t;
    accept_term(f, value, &t);
    assert_int_equal(t.n_bytes, want_len);
    assert_memory_equal(t.bytes, want, want_len);
    term_fini(&t);
}

static void test_digest_patterns(void **state)
{
    (void)state;
    uint8_t seq[32];
    for (size_t i = 0; i < sizeof(seq); i++)
        seq[i] = (uint8_t)i;
    static const enum cfg_allow_field digests[] = {CFG_ALLOW_FINGERPRINT_SHA256,
                                                   CFG_ALLOW_SPKI_SHA256};
    for (size_t i = 0; i < 2; i++) {
        enum cfg_allow_field f = digests[i];
        const char *want = f == CFG_ALLOW_SPKI_SHA256 ? "or 44 characters of base64"
                                                      : "64 hex digits, bare or as pairs";
        expect_bytes(f, fp_hex, seq, 32);
        expect_bytes(f, fp_colons, seq, 32);
        char upper[sizeof(fp_hex)];
        for (size_t k = 0; k < sizeof(fp_hex); k++)
            upper[k] = (char)(fp_hex[k] >= 'a' ? fp_hex[k] - 'a' + 'A' : fp_hex[k]);
        expect_bytes(f, upper, seq, 32);
        refuses(f, "", want);
        refuses(f, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1", want);
        refuses(f, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0", want);
        refuses(f, "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g", want);
        refuses(f, "00:0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", want);
        refuses(f,
                "00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14:15:16:17:"
                "18:19:1a:1b:1c:1d:1e:1f:",
                want);
        refuses(f,
                "00::01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14:15:16:17:"
                "18:19:1a:1b:1c:1d:1e:1f",
                want);
        refuses(f,
                ":00:01:02:03:04:05:06:07:08:09:0a:0b:0c:0d:0e:0f:10:11:12:13:14:15:16:17:"
                "18:19:1a:1b:1c:1d:1e:1f",
                want);
        refuses(f, " 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", want);
    }
    expect_bytes(CFG_ALLOW_SPKI_SHA256, fp_b64, seq, 32);
    refuses(CFG_ALLOW_FINGERPRINT_SHA256, fp_b64, "64 hex digits");
    const char *b64 = "or 44 characters of base64";
    refuses(CFG_ALLOW_SPKI_SHA256, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", b64);
    refuses(CFG_ALLOW_SPKI_SHA256, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8==", b64);
    refuses(CFG_ALLOW_SPKI_SHA256, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=", b64);
    refuses(CFG_ALLOW_SPKI_SHA256, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH_8=", b64);
    refuses(CFG_ALLOW_SPKI_SHA256, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdH-8=", b64);
    refuses(CFG_ALLOW_SPKI_SHA256, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd Hh8=", b64);
}

static void test_serial_patterns(void **state)
{
    (void)state;
    const char *want = "1-40 hex digits, bare or as pairs";
    expect_bytes(CFG_ALLOW_SERIAL, "1234", (const uint8_t[]){0x12, 0x34}, 2);
    expect_bytes(CFG_ALLOW_SERIAL, "12:34", (const uint8_t[]){0x12, 0x34}, 2);
    expect_bytes(CFG_ALLOW_SERIAL, "00:00:12:34", (const uint8_t[]){0x12, 0x34}, 2);
    expect_bytes(CFG_ALLOW_SERIAL, "0001234", (const uint8_t[]){0x12, 0x34}, 2);
    expect_bytes(CFG_ALLOW_SERIAL, "abc", (const uint8_t[]){0x0a, 0xbc}, 2);
    expect_bytes(CFG_ALLOW_SERIAL, "80", (const uint8_t[]){0x80}, 1);
    expect_bytes(CFG_ALLOW_SERIAL, "1", (const uint8_t[]){0x01}, 1);
    expect_bytes(CFG_ALLOW_SERIAL, "0", (const uint8_t[]){0x00}, 1);
    expect_bytes(CFG_ALLOW_SERIAL, "00:00:00", (const uint8_t[]){0x00}, 1);
    uint8_t ff[20];
    memset(ff, 0xff, sizeof(ff));
    expect_bytes(CFG_ALLOW_SERIAL, "ffffffffffffffffffffffffffffffffffffffff", ff, 20);
    refuses(CFG_ALLOW_SERIAL, "0ffffffffffffffffffffffffffffffffffffffff", want);
    refuses(CFG_ALLOW_SERIAL, "", want);
    refuses(CFG_ALLOW_SERIAL, "1:2", want);
    refuses(CFG_ALLOW_SERIAL, "01:0203", want);
    refuses(CFG_ALLOW_SERIAL, "12:", want);
    refuses(CFG_ALLOW_SERIAL, "-1", want);
    refuses(CFG_ALLOW_SERIAL, "0x12", want);
}

static void test_ip_patterns(void **state)
{
    (void)state;
    struct cfg_allow_term t;
    accept_term(CFG_ALLOW_SAN_IP, "10.1.2.3", &t);
    assert_int_equal(t.net.family, AF_INET);
    assert_int_equal(t.net.prefix, 32);
    assert_memory_equal(t.net.addr, ((const uint8_t[]){10, 1, 2, 3}), 4);
    term_fini(&t);
    accept_term(CFG_ALLOW_SAN_IP, "10.0.0.0/8", &t);
    assert_int_equal(t.net.prefix, 8);
    term_fini(&t);
    accept_term(CFG_ALLOW_SAN_IP, "2001:db8::/32", &t);
    assert_int_equal(t.net.family, AF_INET6);
    assert_int_equal(t.net.prefix, 32);
    term_fini(&t);
    accepts(CFG_ALLOW_SAN_IP, "::/0");
    refuses(CFG_ALLOW_SAN_IP, "10.1.2", "not an IPv4 or IPv6 address");
    refuses(CFG_ALLOW_SAN_IP, "host.example", "not an IPv4 or IPv6 address");
    refuses(CFG_ALLOW_SAN_IP, "", "not an IPv4 or IPv6 address");
    refuses(CFG_ALLOW_SAN_IP, "10.0.0.0/33", "prefix length 0-32");
    refuses(CFG_ALLOW_SAN_IP, "2001:db8::/129", "prefix length 0-128");
    refuses(CFG_ALLOW_SAN_IP, "10.0.0.0/08", "prefix length 0-32");
}

/* ---- matching ---- */

/* Whether leaf matches the one-term rule "f value". */
static bool match1(enum cfg_allow_field f, const char *value, X509 *leaf)
{
    struct cfg_allow_term t;
    accept_term(f, value, &t);
    struct cfg_allow_rule r = {.terms = &t, .n_terms = 1};
    bool is_match = tls_allow_rule_matches(&r, leaf);
    /* The list form agrees. */
    struct cfg_allow a = {.rules = &r, .n_rules = 1};
    assert_int_equal(tls_allow_matches(&a, leaf), is_match);
    term_fini(&t);
    return is_match;
}

#define MATCH(f, value, leaf)                                                                      \
    do {                                                                                           \
        if (!match1(f, value, leaf))                                                               \
            fail_msg("%s \"%s\" does not match", config_allow_field_name(f), value);               \
    } while (0)
#define NO_MATCH(f, value, leaf)                                                                   \
    do {                                                                                           \
        if (match1(f, value, leaf))                                                                \
            fail_msg("%s \"%s\" matches", config_allow_field_name(f), value);                      \
    } while (0)

static void test_subject_cn(void **state)
{
    (void)state;
    X509 *x = mint_identity();
    MATCH(CFG_ALLOW_SUBJECT_CN, "partner-api", x);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "Partner-api", x); /* case-sensitive */
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "partner-ap", x);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "partner-api-x", x);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "tollgate unit", x); /* the O is not the CN */
    MATCH(CFG_ALLOW_SUBJECT_CN, "*", x);
    MATCH(CFG_ALLOW_SUBJECT_CN, "**", x);
    MATCH(CFG_ALLOW_SUBJECT_CN, "partner*", x);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "x*", x);
    MATCH(CFG_ALLOW_SUBJECT_CN, "*api", x);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "*x", x);
    MATCH(CFG_ALLOW_SUBJECT_CN, "partner-api*", x); /* '*' takes nothing */
    MATCH(CFG_ALLOW_SUBJECT_CN, "*partner-api", x);
    MATCH(CFG_ALLOW_SUBJECT_CN, "*partner-api*", x);
    MATCH(CFG_ALLOW_SUBJECT_CN, "p*r*-*i", x);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "p*x*i", x);
    MATCH(CFG_ALLOW_SUBJECT_CN, "part*api", x);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "part*apix", x);
    MATCH(CFG_ALLOW_SUBJECT_CN, "*a*", x);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "*a*a*a*", x); /* "partner-api" has two */
    MATCH(CFG_ALLOW_SUBJECT_CN, "*a*a*", x);
    X509_free(x);

    /* The escaped text, as X-Client-Subject shows it. */
    x = mint_with("admin\\,ops", 7, NULL, NULL);
    MATCH(CFG_ALLOW_SUBJECT_CN, "admin\\\\\\,ops", x); /* both escaped */
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "admin\\,ops", x);
    X509_free(x);
    x = mint_with("Z\xc3\xbcrich", 7, NULL, NULL);
    MATCH(CFG_ALLOW_SUBJECT_CN, "Z\xc3\xbcrich", x);
    MATCH(CFG_ALLOW_SUBJECT_CN, "Z*rich", x);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "Zurich", x);
    X509_free(x);

    /* An embedded NUL is escaped, never an end. */
    x = X509_new();
    assert_non_null(x);
    X509_NAME *name = X509_get_subject_name(x);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", V_ASN1_UTF8STRING,
                                                (const unsigned char *)"admin\0.example", 14, -1,
                                                0),
                     1);
    X509_set_pubkey(x, leaf_key);
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "admin", x);
    MATCH(CFG_ALLOW_SUBJECT_CN, "admin\\00.example", x);
    X509_free(x);

    /* No CN: nothing matches, not even "*". */
    x = mint_with(NULL, 7, NULL, NULL);
    NO_MATCH(CFG_ALLOW_SUBJECT_CN, "*", x);
    X509_free(x);
}

static void test_issuer(void **state)
{
    (void)state;
    X509 *x = mint_identity();
    MATCH(CFG_ALLOW_ISSUER, "CN=Allow Test CA,O=tollgate unit", x);
    NO_MATCH(CFG_ALLOW_ISSUER, "cn=allow test ca,o=tollgate unit", x);
    NO_MATCH(CFG_ALLOW_ISSUER, "CN=Allow Test CA", x);
    MATCH(CFG_ALLOW_ISSUER, "CN=Allow Test CA,*", x);
    MATCH(CFG_ALLOW_ISSUER, "*,O=tollgate unit", x);
    NO_MATCH(CFG_ALLOW_ISSUER, "CN=Other CA,*", x);
    NO_MATCH(CFG_ALLOW_ISSUER, "*,O=other", x);
    /* The subject is not the issuer. */
    NO_MATCH(CFG_ALLOW_ISSUER, "CN=partner-api,*", x);
    X509_free(x);
}

static void test_san_dns(void **state)
{
    (void)state;
    X509 *x = mint_san(GEN_DNS, "a.example.com");
    MATCH(CFG_ALLOW_SAN_DNS, "a.example.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "A.Example.COM", x); /* case-insensitive */
    NO_MATCH(CFG_ALLOW_SAN_DNS, "b.example.com", x);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "a.example.co", x);
    MATCH(CFG_ALLOW_SAN_DNS, "*.example.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "*.EXAMPLE.com", x);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "*.com", x);          /* one label only */
    MATCH(CFG_ALLOW_SAN_DNS, "*.*.com", x);           /* several '*' */
    NO_MATCH(CFG_ALLOW_SAN_DNS, "*", x);              /* one label */
    NO_MATCH(CFG_ALLOW_SAN_DNS, "*a.example.com", x); /* '*' takes at least one */
    NO_MATCH(CFG_ALLOW_SAN_DNS, "a*.example.com", x);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "*.a.example.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "a.*.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "a.ex*le.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "a.e*e.com", x);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "a.ex*xle.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "a.*e.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "a.exampl*.com", x);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "a.example*.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "a.*a*.com", x);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "a.**********.com", x); /* ten or more; "example" has 7 */
    MATCH(CFG_ALLOW_SAN_DNS, "a.*******.com", x);
    X509_free(x);

    x = mint_san(GEN_DNS, "example.com");
    NO_MATCH(CFG_ALLOW_SAN_DNS, "*.example.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "*.com", x);
    X509_free(x);
    x = mint_san(GEN_DNS, "a.b.example.com");
    NO_MATCH(CFG_ALLOW_SAN_DNS, "*.example.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "*.b.example.com", x);
    MATCH(CFG_ALLOW_SAN_DNS, "*.*.example.com", x);
    X509_free(x);
    x = mint_san(GEN_DNS, "Web-1.Example.COM");
    MATCH(CFG_ALLOW_SAN_DNS, "web-*.example.com", x);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "web-1*.example.com", x);
    X509_free(x);
    /* A trailing dot is one more (empty) label. */
    x = mint_san(GEN_DNS, "a.example.com.");
    NO_MATCH(CFG_ALLOW_SAN_DNS, "a.example.com", x);
    X509_free(x);

    /* A URI or email entry is not a DNS name. */
    x = mint_san(GEN_URI, "dns:a.example.com");
    NO_MATCH(CFG_ALLOW_SAN_DNS, "*.example.com", x);
    X509_free(x);
}

static void test_san_uri(void **state)
{
    (void)state;
    X509 *x = mint_identity();
    MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/ns/default/sa/web", x);
    NO_MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/ns/default/sa/we", x);
    NO_MATCH(CFG_ALLOW_SAN_URI, "SPIFFE://prod.example/ns/default/sa/web", x); /* case */
    MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/*", x);
    NO_MATCH(CFG_ALLOW_SAN_URI, "spiffe://staging.example/*", x);
    NO_MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example", x);
    MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/ns/*/sa/web", x);
    NO_MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/ns/*/sa/db", x);
    MATCH(CFG_ALLOW_SAN_URI, "*:*", x);
    MATCH(CFG_ALLOW_SAN_URI, "spiffe:*/web", x);
    NO_MATCH(CFG_ALLOW_SAN_URI, "https:*", x);
    X509_free(x);

    /* '*' crosses '/'. */
    x = mint_san(GEN_URI, "spiffe://prod.example/ns/a/b/sa/web");
    MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/ns/*/sa/web", x);
    MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/*/web", x);
    NO_MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/ns/*/sa/db", x);
    X509_free(x);
    x = mint_san(GEN_URI, "spiffe://prod.example/");
    MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/*", x); /* zero characters */
    X509_free(x);
}

static void test_san_email(void **state)
{
    (void)state;
    X509 *x = mint_identity();
    MATCH(CFG_ALLOW_SAN_EMAIL, "Alice@Partner.Example", x);
    MATCH(CFG_ALLOW_SAN_EMAIL, "alice@partner.example", x); /* case-insensitive */
    NO_MATCH(CFG_ALLOW_SAN_EMAIL, "bob@partner.example", x);
    MATCH(CFG_ALLOW_SAN_EMAIL, "*@partner.example", x);
    MATCH(CFG_ALLOW_SAN_EMAIL, "*@*", x);
    NO_MATCH(CFG_ALLOW_SAN_EMAIL, "*@other.example", x);
    NO_MATCH(CFG_ALLOW_SAN_EMAIL, "*@partner", x);
    MATCH(CFG_ALLOW_SAN_EMAIL, "*@*.example", x);
    X509_free(x);
}

static void test_san_ip(void **state)
{
    (void)state;
    X509 *x = mint_identity();
    MATCH(CFG_ALLOW_SAN_IP, "10.1.2.3", x);
    NO_MATCH(CFG_ALLOW_SAN_IP, "10.1.2.4", x);
    MATCH(CFG_ALLOW_SAN_IP, "10.0.0.0/8", x);
    NO_MATCH(CFG_ALLOW_SAN_IP, "11.0.0.0/8", x);
    MATCH(CFG_ALLOW_SAN_IP, "10.1.2.2/31", x);
    NO_MATCH(CFG_ALLOW_SAN_IP, "10.1.2.0/31", x);
    MATCH(CFG_ALLOW_SAN_IP, "0.0.0.0/0", x);
    MATCH(CFG_ALLOW_SAN_IP, "2001:db8::7", x);
    NO_MATCH(CFG_ALLOW_SAN_IP, "2001:db8::8", x);
    MATCH(CFG_ALLOW_SAN_IP, "2001:db8::/32", x);
    NO_MATCH(CFG_ALLOW_SAN_IP, "2001:db9::/32", x);
    X509_free(x);

    /* IPv4 and IPv6 apart: no mapping either way. */
    GENERAL_NAMES *s = sans_new();
    unit_san_ip(s, "10.1.2.3");
    x = mint_with("v4", 7, s, NULL);
    MATCH(CFG_ALLOW_SAN_IP, "0.0.0.0/0", x);
    NO_MATCH(CFG_ALLOW_SAN_IP, "::/0", x);
    NO_MATCH(CFG_ALLOW_SAN_IP, "::ffff:10.1.2.3", x);
    X509_free(x);
    s = sans_new();
    unit_san_ip(s, "::ffff:10.1.2.3");
    x = mint_with("mapped", 7, s, NULL);
    NO_MATCH(CFG_ALLOW_SAN_IP, "10.0.0.0/8", x);
    MATCH(CFG_ALLOW_SAN_IP, "::ffff:0:0/96", x);
    X509_free(x);

    /* An address with a mask (8 or 32 octets, as name constraints write
     * it) or of another length is no address. */
    static const uint8_t eight[8] = {10, 0, 0, 0, 255, 0, 0, 0};
    x = mint_ip_bytes(eight, sizeof(eight));
    NO_MATCH(CFG_ALLOW_SAN_IP, "0.0.0.0/0", x);
    NO_MATCH(CFG_ALLOW_SAN_IP, "::/0", x);
    X509_free(x);
    static const uint8_t five[5] = {10, 1, 2, 3, 4};
    x = mint_ip_bytes(five, sizeof(five));
    NO_MATCH(CFG_ALLOW_SAN_IP, "0.0.0.0/0", x);
    X509_free(x);
    static const uint8_t four[4] = {10, 1, 2, 3};
    x = mint_ip_bytes(four, sizeof(four));
    MATCH(CFG_ALLOW_SAN_IP, "10.1.2.3", x);
    X509_free(x);
}

/* The hex of n bytes, lower case, optionally with ':' between pairs. */
static void hex_of(const uint8_t *b, size_t n, bool has_colons, char *dst)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (has_colons && i > 0)
            dst[o++] = ':';
        dst[o++] = hex[b[i] >> 4];
        dst[o++] = hex[b[i] & 15];
    }
    dst[o] = '\0';
}

static void test_fingerprint(void **state)
{
    (void)state;
    X509 *x = mint_identity(), *twin = mint_identity();
    struct tls_info info;
    tls_info_clear(&info);
    tls_cert_facts(x, &info);
    /* The fingerprint X-Client-Fingerprint shows. */
    MATCH(CFG_ALLOW_FINGERPRINT_SHA256, info.client_fingerprint, x);
    uint8_t md[32];
    assert_true(tls_cert_sha256(x, md));
    char text[3 * 32];
    hex_of(md, 32, true, text);
    MATCH(CFG_ALLOW_FINGERPRINT_SHA256, text, x);
    /* The same fields and key, signed again: another certificate (ECDSA
     * signatures differ). */
    NO_MATCH(CFG_ALLOW_FINGERPRINT_SHA256, text, twin);
    md[31] ^= 1;
    hex_of(md, 32, false, text);
    NO_MATCH(CFG_ALLOW_FINGERPRINT_SHA256, text, x);
    X509_free(x);
    X509_free(twin);
}

static void test_spki(void **state)
{
    (void)state;
    X509 *x = mint_identity();
    X509 *same_key = mint_with("renewed", 99, NULL, NULL);
    X509 *other = mint_with("partner-api", 0x1234, NULL, other_key);
    /* The pin as `openssl pkey -pubout -outform DER | sha256sum` gives it,
     * from the key rather than the certificate's encoding. */
    unsigned char *der = NULL;
    int len = i2d_PUBKEY(leaf_key, &der);
    assert_true(len > 0);
    uint8_t md[32];
    unsigned int md_len = 0;
    assert_int_equal(EVP_Digest(der, (size_t)len, md, &md_len, EVP_sha256(), NULL), 1);
    OPENSSL_free(der);
    uint8_t got[32];
    assert_true(tls_cert_spki_sha256(x, got));
    assert_memory_equal(got, md, 32);
    char hex[3 * 32], b64[64];
    hex_of(md, 32, false, hex);
    assert_int_equal(EVP_EncodeBlock((unsigned char *)b64, md, 32), 44);
    MATCH(CFG_ALLOW_SPKI_SHA256, hex, x);
    MATCH(CFG_ALLOW_SPKI_SHA256, b64, x);
    MATCH(CFG_ALLOW_SPKI_SHA256, hex, same_key); /* survives renewal */
    MATCH(CFG_ALLOW_SPKI_SHA256, b64, same_key);
    NO_MATCH(CFG_ALLOW_SPKI_SHA256, hex, other);
    NO_MATCH(CFG_ALLOW_SPKI_SHA256, b64, other);
    /* The certificate's fingerprint is not its key's. */
    assert_true(tls_cert_sha256(x, md));
    hex_of(md, 32, false, hex);
    NO_MATCH(CFG_ALLOW_SPKI_SHA256, hex, x);
    X509_free(x);
    X509_free(same_key);
    X509_free(other);
}

static void test_serial(void **state)
{
    (void)state;
    X509 *x = mint_identity();
    MATCH(CFG_ALLOW_SERIAL, "1234", x);
    MATCH(CFG_ALLOW_SERIAL, "12:34", x);
    MATCH(CFG_ALLOW_SERIAL, "00:12:34", x);
    MATCH(CFG_ALLOW_SERIAL, "01234", x);
    NO_MATCH(CFG_ALLOW_SERIAL, "1235", x);
    NO_MATCH(CFG_ALLOW_SERIAL, "12", x);
    NO_MATCH(CFG_ALLOW_SERIAL, "123400", x);
    X509_free(x);
    /* DER pads 0x80 with a zero octet; the magnitude does not. */
    x = mint_with("c", 0x80, NULL, NULL);
    MATCH(CFG_ALLOW_SERIAL, "80", x);
    MATCH(CFG_ALLOW_SERIAL, "00:80", x);
    NO_MATCH(CFG_ALLOW_SERIAL, "8", x);
    X509_free(x);
    x = mint_with("c", 0, NULL, NULL);
    MATCH(CFG_ALLOW_SERIAL, "0", x);
    MATCH(CFG_ALLOW_SERIAL, "00:00", x);
    NO_MATCH(CFG_ALLOW_SERIAL, "1", x);
    X509_free(x);
    /* A negative serial never matches, not even its magnitude. */
    x = mint_with("c", -0x1234, NULL, NULL);
    NO_MATCH(CFG_ALLOW_SERIAL, "1234", x);
    X509_free(x);
    /* A serial of 20 octets, the most RFC 5280 allows. */
    BIGNUM *bn = NULL;
    assert_true(BN_hex2bn(&bn, "7fffffffffffffffffffffffffffffffffffff01") > 0);
    x = mint_with("c", 1, NULL, NULL);
    assert_non_null(BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)));
    BN_free(bn);
    MATCH(CFG_ALLOW_SERIAL, "7fffffffffffffffffffffffffffffffffffff01", x);
    NO_MATCH(CFG_ALLOW_SERIAL, "7fffffffffffffffffffffffffffffffffffff02", x);
    X509_free(x);
}

/* A subjectAltName entry with a NUL, a control character or a byte
 * outside printable ASCII never matches; its clean twin does. */
static void test_hostile_sans(void **state)
{
    (void)state;
    static const char nul_dns[] = "x\0y.partner.example";
    GENERAL_NAMES *s = sans_new();
    unit_san_add(s, GEN_DNS, nul_dns, sizeof(nul_dns) - 1);
    X509 *x = mint_with("n", 7, s, NULL);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "*.partner.example", x);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "x", x);
    X509_free(x);
    x = mint_san(GEN_DNS, "xy.partner.example");
    MATCH(CFG_ALLOW_SAN_DNS, "*.partner.example", x);
    X509_free(x);

    /* Any other entry of the kind still counts. */
    s = sans_new();
    unit_san_add(s, GEN_DNS, nul_dns, sizeof(nul_dns) - 1);
    unit_san_text(s, GEN_DNS, "ok.partner.example");
    x = mint_with("n", 7, s, NULL);
    MATCH(CFG_ALLOW_SAN_DNS, "*.partner.example", x);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "x*.partner.example", x);
    X509_free(x);

    static const char nul_uri[] = "spiffe://prod.example/\0admin";
    s = sans_new();
    unit_san_add(s, GEN_URI, nul_uri, sizeof(nul_uri) - 1);
    x = mint_with("n", 7, s, NULL);
    NO_MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/*", x);
    X509_free(x);
    x = mint_san(GEN_URI, "spiffe://prod.example/a\nb");
    NO_MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/*", x);
    X509_free(x);
    x = mint_san(GEN_URI, "spiffe://prod.example/a\x7f");
    NO_MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/*", x);
    X509_free(x);
    x = mint_san(GEN_URI, "spiffe://prod.example/caf\xc3\xa9");
    NO_MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/*", x);
    X509_free(x);
    x = mint_san(GEN_URI, "spiffe://prod.example/cafe");
    MATCH(CFG_ALLOW_SAN_URI, "spiffe://prod.example/*", x);
    X509_free(x);

    x = mint_san(GEN_EMAIL, "alice@partner.example\r");
    NO_MATCH(CFG_ALLOW_SAN_EMAIL, "*@partner.example*", x);
    X509_free(x);
    x = mint_san(GEN_EMAIL, "\x1b[0malice@partner.example");
    NO_MATCH(CFG_ALLOW_SAN_EMAIL, "*@partner.example", x);
    X509_free(x);

    /* An empty entry is no value. */
    s = sans_new();
    unit_san_add(s, GEN_URI, "", 0);
    x = mint_with("n", 7, s, NULL);
    NO_MATCH(CFG_ALLOW_SAN_URI, "*:*", x);
    X509_free(x);

    /* No subjectAltName at all. */
    x = mint_with("n", 7, NULL, NULL);
    NO_MATCH(CFG_ALLOW_SAN_DNS, "*", x);
    NO_MATCH(CFG_ALLOW_SAN_URI, "*:*", x);
    NO_MATCH(CFG_ALLOW_SAN_EMAIL, "*@*", x);
    NO_MATCH(CFG_ALLOW_SAN_IP, "0.0.0.0/0", x);
    X509_free(x);
}

/* Only the first TLS_SAN_MAX entries are read. */
static void test_many_sans(void **state)
{
    (void)state;
    GENERAL_NAMES *s = sans_new();
    for (int i = 0; i < TLS_SAN_MAX + 100; i++) {
        char name[32];
        snprintf(name, sizeof(name), "n%d.example", i);
        unit_san_text(s, GEN_DNS, name);
    }
    X509 *x = mint_with("many", 7, s, NULL);
    MATCH(CFG_ALLOW_SAN_DNS, "n0.example", x);
    char name[32];
    snprintf(name, sizeof(name), "n%d.example", TLS_SAN_MAX - 1);
    MATCH(CFG_ALLOW_SAN_DNS, name, x);
    snprintf(name, sizeof(name), "n%d.example", TLS_SAN_MAX);
    NO_MATCH(CFG_ALLOW_SAN_DNS, name, x);
    X509_free(x);
}

/* A pattern built to make a backtracking matcher explode takes the
 * matcher's O(pattern * value) at worst. */
static void test_glob_worst_case(void **state)
{
    (void)state;
    char uri[4096 + 16], pat[1025];
    memcpy(uri, "urn:", 4);
    memset(uri + 4, 'a', 4096);
    uri[4 + 4096] = '\0';
    memcpy(pat, "urn:", 4);
    size_t o = 4;
    while (o + 2 < sizeof(pat) - 1) {
        pat[o++] = '*';
        pat[o++] = 'a';
    }
    pat[o++] = 'b';
    pat[o] = '\0';
    X509 *x = mint_san(GEN_URI, uri);
    NO_MATCH(CFG_ALLOW_SAN_URI, pat, x);
    pat[o - 1] = '*';
    MATCH(CFG_ALLOW_SAN_URI, pat, x);
    X509_free(x);

    /* The same through san_dns's one-or-more '*', label by label. */
    char dns[64 * 4], dpat[1025];
    for (size_t i = 0; i < 4; i++) {
        memset(dns + 64 * i, 'a', 63);
        dns[64 * i + 63] = '.';
    }
    dns[sizeof(dns) - 1] = '\0';
    o = 0;
    for (size_t label = 0; label < 4; label++) {
        for (size_t k = 0; k < 120; k++) {
            dpat[o++] = '*';
            dpat[o++] = 'a';
        }
        dpat[o++] = label < 3 ? 'a' : 'b';
        dpat[o++] = '.';
    }
    dpat[o - 1] = '\0';
    x = mint_san(GEN_DNS, dns);
    NO_MATCH(CFG_ALLOW_SAN_DNS, dpat, x);
    X509_free(x);
}

static void test_rules_and_lists(void **state)
{
    (void)state;
    X509 *x = mint_identity();
    struct cfg_allow_term t[3];
    accept_term(CFG_ALLOW_SUBJECT_CN, "partner-api", &t[0]);
    accept_term(CFG_ALLOW_SAN_URI, "spiffe://prod.example/*", &t[1]);
    accept_term(CFG_ALLOW_SAN_URI, "spiffe://staging.example/*", &t[2]);

    /* Every term of a rule. */
    struct cfg_allow_rule both = {.terms = t, .n_terms = 2};
    assert_true(tls_allow_rule_matches(&both, x));
    struct cfg_allow_term mixed[2] = {t[0], t[2]};
    struct cfg_allow_rule one_fails = {.terms = mixed, .n_terms = 2};
    assert_false(tls_allow_rule_matches(&one_fails, x));
    struct cfg_allow_rule none = {.terms = t, .n_terms = 0};
    assert_false(tls_allow_rule_matches(&none, x));
    assert_false(tls_allow_rule_matches(NULL, x));
    assert_false(tls_allow_rule_matches(&both, NULL));

    /* One rule of a list. */
    struct cfg_allow_rule rules[3] = {
        {.terms = &t[2], .n_terms = 1}, one_fails, {.terms = &t[1], .n_terms = 1}};
    struct cfg_allow list = {.rules = rules, .n_rules = 3};
    assert_true(tls_allow_matches(&list, x));
    list.n_rules = 2;
    assert_false(tls_allow_matches(&list, x));
    list.n_rules = 0;
    assert_false(tls_allow_matches(&list, x)); /* empty: nobody */
    assert_false(tls_allow_matches(NULL, x));
    list.n_rules = 3;
    assert_false(tls_allow_matches(&list, NULL));
    for (size_t i = 0; i < 3; i++)
        term_fini(&t[i]);
    X509_free(x);
}

/* ---- allow files ---- */

static const char *path_of(const char *name)
{
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

static const char *write_bytes(const char *name, const char *data, size_t len)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    return p;
}

static const char *write_text(const char *name, const char *text)
{
    return write_bytes(name, text, strlen(text));
}

/* Loads path expecting the diagnostics want (formatted, with "FILE" for
 * the path) and nothing else; out must stay untouched. */
static void expect_file_errors(const char *path, const char *const *want, size_t n)
{
    struct diag d;
    diag_init(&d);
    struct cfg_allow out = {.rules = (struct cfg_allow_rule *)&out, .n_rules = 77};
    enum tg_status st = config_allow_file_load(path, &out, &d);
    bool is_same = st == TG_E_CONFIG && d.n == n && d.n_errors == n;
    for (size_t i = 0; is_same && i < n; i++) {
        char line[2048], expect[2048];
        diag_format(&d, i, line, sizeof(line));
        const char *file = strstr(want[i], "FILE");
        if (file != NULL)
            snprintf(expect, sizeof(expect), "%.*s%s%s", (int)(file - want[i]), want[i], path,
                     file + 4);
        else
            snprintf(expect, sizeof(expect), "%s", want[i]);
        if (strcmp(line, expect) != 0) {
            fprintf(stderr, "diag %zu:\n  got:  %s\n  want: %s\n", i, line, expect);
            is_same = false;
        }
    }
    if (!is_same) {
        fprintf(stderr, "status %d, %zu diagnostics:\n", st, d.n);
        diag_print(&d, stderr);
    }
    diag_fini(&d);
    assert_true(is_same);
    assert_ptr_equal(out.rules, &out);
    assert_int_equal(out.n_rules, 77);
}

#define EXPECT_FILE_ERRORS(path, ...)                                                              \
    do {                                                                                           \
        const char *const want_[] = {__VA_ARGS__};                                                 \
        expect_file_errors(path, want_, sizeof(want_) / sizeof(want_[0]));                         \
    } while (0)

static void load_ok(const char *path, struct cfg_allow *out)
{
    struct diag d;
    diag_init(&d);
    enum tg_status st = config_allow_file_load(path, out, &d);
    if (st != TG_OK || d.n != 0)
        diag_print(&d, stderr);
    assert_int_equal(st, TG_OK);
    assert_int_equal(d.n, 0);
    diag_fini(&d);
}

static void expect_rule(const struct cfg_allow *a, size_t i, enum cfg_allow_field f,
                        const char *value, int line, int col)
{
    assert_true(i < a->n_rules);
    const struct cfg_allow_rule *r = &a->rules[i];
    assert_int_equal(r->n_terms, 1);
    assert_int_equal(r->terms[0].field, f);
    assert_string_equal(r->terms[0].value, value);
    assert_int_equal(r->terms[0].pos.line, line);
    assert_int_equal(r->terms[0].pos.col, col);
    assert_int_equal(r->pos.line, line);
    assert_int_equal(r->pos.col, col);
}

static void test_file_good(void **state)
{
    (void)state;
    const char *path =
        write_text("good.allow", "# partners allowed in\n"
                                 "\n"
                                 "subject_cn partner-api\n"
                                 "  san_uri   spiffe://prod.example/ns/*/sa/web  \n"
                                 "\tsan_dns\t*.partner.example\t\n"
                                 "   # indented comment\n"
                                 "   \t \n"
                                 "san_email *@partner.example\r\n"
                                 "san_ip 10.0.0.0/8\r\n"
                                 "\r\n"
                                 "issuer CN=Other CA,O=tollgate unit\n"
                                 "serial 12:34\n"
                                 "subject_cn Z\xc3\xbcrich # not a comment\n"
                                 "fingerprint_sha256 "
                                 "000102030405060708090a0b0c0d0e0f"
                                 "101112131415161718191a1b1c1d1e1f\n"
                                 "spki_sha256 AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    struct cfg_allow a = {0};
    load_ok(path, &a);
    assert_int_equal(a.n_rules, 10);
    expect_rule(&a, 0, CFG_ALLOW_SUBJECT_CN, "partner-api", 3, 1);
    expect_rule(&a, 1, CFG_ALLOW_SAN_URI, "spiffe://prod.example/ns/*/sa/web", 4, 3);
    expect_rule(&a, 2, CFG_ALLOW_SAN_DNS, "*.partner.example", 5, 2);
    expect_rule(&a, 3, CFG_ALLOW_SAN_EMAIL, "*@partner.example", 8, 1);
    expect_rule(&a, 4, CFG_ALLOW_SAN_IP, "10.0.0.0/8", 9, 1);
    assert_int_equal(a.rules[4].terms[0].net.prefix, 8);
    expect_rule(&a, 5, CFG_ALLOW_ISSUER, "CN=Other CA,O=tollgate unit", 11, 1);
    expect_rule(&a, 6, CFG_ALLOW_SERIAL, "12:34", 12, 1);
    assert_int_equal(a.rules[6].terms[0].n_bytes, 2);
    expect_rule(&a, 7, CFG_ALLOW_SUBJECT_CN, "Z\xc3\xbcrich # not a comment", 13, 1);
    expect_rule(&a, 8, CFG_ALLOW_FINGERPRINT_SHA256,
                "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", 14, 1);
    expect_rule(&a, 9, CFG_ALLOW_SPKI_SHA256, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 15,
                1);

    /* What the file lets in. */
    X509 *x = mint_identity(), *y = mint_san(GEN_URI, "spiffe://staging.example/x");
    assert_true(tls_allow_matches(&a, x));
    assert_false(tls_allow_matches(&a, y));
    X509_free(x);
    X509_free(y);
    config_allow_fini(&a);
    assert_null(a.rules);
    assert_int_equal(a.n_rules, 0);
    config_allow_fini(&a); /* twice is harmless */

    /* A byte order mark first; columns count characters. */
    path = write_text("bom.allow", "\xef\xbb\xbfsubject_cn x\n"
                                   "subject_cn \xc3\xbc\xc3\xbc y\n");
    load_ok(path, &a);
    assert_int_equal(a.n_rules, 2);
    expect_rule(&a, 0, CFG_ALLOW_SUBJECT_CN, "x", 1, 1);
    config_allow_fini(&a);
}

static void test_file_empty(void **state)
{
    (void)state;
    struct cfg_allow a = {0};
    X509 *x = mint_identity();
    static const char *const texts[] = {"", "\n\n", "# nobody yet\n", "  \r\n\t\n# x"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        load_ok(write_text("empty.allow", texts[i]), &a);
        assert_int_equal(a.n_rules, 0);
        assert_false(tls_allow_matches(&a, x)); /* an empty list lets nobody in */
        config_allow_fini(&a);
    }
    X509_free(x);
}

static void test_file_bad_lines(void **state)
{
    (void)state;
    const char *path =
        write_text("bad.allow", "# every kind of bad line, and good ones between them\n"
                                "subject_cn partner-api\n"
                                "san_dsn *.partner.example\n"
                                "  colour blue\n"
                                "san_uri\n"
                                "san_dns   \t\n"
                                "san_dns  a_b.example\n"
                                "san_uri prod.example/web\n"
                                "san_email alice\n"
                                "san_ip 10.0.0.0/33\n"
                                "san_ip  host\n"
                                "fingerprint_sha256 abcd\n"
                                "spki_sha256 AAAA=\n"
                                "serial 12:3\n"
                                "subject_cn a\x01"
                                "b\n"
                                "issuer \xc3\xbc\xff\n"
                                "subject_cn \xc3\xbc\xc2\x85\n"
                                "san_dns ok.example\rx\n"
                                "subject_cn ok\n");
    EXPECT_FILE_ERRORS(
        path,
        "FILE:3:1: unknown field \"san_dsn\"; did you mean \"san_dns\"? (fields: subject_cn, "
        "san_dns, san_uri, san_email, san_ip, fingerprint_sha256, spki_sha256, issuer, serial)",
        "FILE:4:3: unknown field \"colour\" (fields: subject_cn, san_dns, san_uri, san_email, "
        "san_ip, fingerprint_sha256, spki_sha256, issuer, serial)",
        "FILE:5:1: san_uri: a value is needed after the field: san_uri VALUE",
        "FILE:6:1: san_dns: a value is needed after the field: san_dns VALUE",
        "FILE:7:10: san_dns: a DNS name pattern takes letters, digits, '-', '.' and '*' only "
        "(e.g. *.example.com)",
        "FILE:8:9: san_uri: a URI pattern starts with its scheme and ':' (e.g. "
        "spiffe://example.org/*)",
        "FILE:9:11: san_email: an email pattern holds '@' (e.g. *@example.com)",
        "FILE:10:8: san_ip: not a prefix length 0-32",
        "FILE:11:9: san_ip: not an IPv4 or IPv6 address",
        "FILE:12:20: fingerprint_sha256: a SHA-256 fingerprint is 64 hex digits, bare or as "
        "pairs separated by ':'",
        "FILE:13:13: spki_sha256: a SHA-256 SPKI hash is 64 hex digits (bare or as pairs "
        "separated by ':') or 44 characters of base64 ending in '='",
        "FILE:14:8: serial: a serial number is 1-40 hex digits, bare or as pairs separated by "
        "':'",
        "FILE:15:13: a control character: only printable text, spaces and tabs are accepted "
        "(lines end in LF or CRLF)",
        "FILE:16:9: not UTF-8: an allow file is UTF-8 text, one \"FIELD VALUE\" a line",
        "FILE:17:13: a control character: only printable text, spaces and tabs are accepted "
        "(lines end in LF or CRLF)",
        "FILE:18:19: a control character: only printable text, spaces and tabs are accepted "
        "(lines end in LF or CRLF)");

    /* A NUL byte, reported where it is; the lines after it are read. */
    static const char nul[] = "subject_cn ok\n"
                              "subject_cn a\0b\n"
                              "san_dns x_y\n";
    path = write_bytes("nul.allow", nul, sizeof(nul) - 1);
    EXPECT_FILE_ERRORS(path,
                       "FILE:2:13: a NUL byte: an allow file is text, one \"FIELD VALUE\" a line",
                       "FILE:3:9: san_dns: a DNS name pattern takes letters, digits, '-', '.' "
                       "and '*' only (e.g. *.example.com)");

    /* A text field longer than 1024 bytes. */
    char line[16 + 1100];
    int n = snprintf(line, sizeof(line), "subject_cn ");
    memset(line + n, 'a', 1025);
    line[n + 1025] = '\0';
    path = write_text("long.allow", line);
    EXPECT_FILE_ERRORS(path, "FILE:1:12: subject_cn: a pattern is 1-1024 bytes of text");
}

static void test_file_too_many_errors(void **state)
{
    (void)state;
    size_t cap = 200 * 16;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t o = 0;
    for (int i = 0; i < 200; i++)
        o += (size_t)snprintf(text + o, cap - o, "bogus %d\n", i);
    const char *path = write_bytes("many.allow", text, o);
    free(text);
    struct diag d;
    diag_init(&d);
    struct cfg_allow a = {0};
    assert_int_equal(config_allow_file_load(path, &a, &d), TG_E_CONFIG);
    assert_int_equal(d.n_errors, 101);
    char line[2048], want[1024];
    diag_format(&d, 99, line, sizeof(line));
    snprintf(want, sizeof(want), "%s:100:1: unknown field \"bogus\"", path);
    assert_memory_equal(line, want, strlen(want));
    diag_format(&d, 100, line, sizeof(line));
    snprintf(want, sizeof(want), "%s:100:0: too many errors; the rest of the file is not read",
             path);
    assert_string_equal(line, want);
    diag_fini(&d);
    assert_null(a.rules);
}

static void test_file_unreadable(void **state)
{
    (void)state;
    char want[1024];
    const char *missing = path_of("missing.allow");
    snprintf(want, sizeof(want),
             "cannot read allow file \"%s\": cannot read: No such file or directory", missing);
    EXPECT_FILE_ERRORS(missing, want);

    const char *sub = path_of("sub.allow");
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(want, sizeof(want), "cannot read allow file \"%s\": not a regular file", sub);
    EXPECT_FILE_ERRORS(sub, want);
    rmdir(sub);

    /* A FIFO without a writer is refused, not waited on. */
    const char *fifo = path_of("fifo.allow");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(want, sizeof(want), "cannot read allow file \"%s\": not a regular file", fifo);
    EXPECT_FILE_ERRORS(fifo, want);
    unlink(fifo);
}

static void test_file_size_limit(void **state)
{
    (void)state;
    /* CFG_ALLOW_FILE_MAX bytes of comment lines are read; one more is
     * refused unread. */
    size_t max = CFG_ALLOW_FILE_MAX;
    char *text = malloc(max + 1);
    assert_non_null(text);
    memset(text, '#', max + 1);
    for (size_t i = 63; i < max + 1; i += 64)
        text[i] = '\n';
    const char *path = write_bytes("max.allow", text, max);
    struct cfg_allow a = {0};
    load_ok(path, &a);
    assert_int_equal(a.n_rules, 0);
    path = write_bytes("over.allow", text, max + 1);
    free(text);
    char want[1024];
    snprintf(want, sizeof(want), "cannot read allow file \"%s\": larger than %zu bytes", path, max);
    EXPECT_FILE_ERRORS(path, want);
    unlink(path_of("max.allow"));
    unlink(path);
}

static int cleanup_files(void **state)
{
    (void)state;
    static const char *const names[] = {"good.allow", "bom.allow", "empty.allow",
                                        "bad.allow",  "nul.allow", "long.allow",
                                        "many.allow", "max.allow", "over.allow"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unlink(path_of(names[i]));
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_names),
        cmocka_unit_test(test_text_patterns),
        cmocka_unit_test(test_digest_patterns),
        cmocka_unit_test(test_serial_patterns),
        cmocka_unit_test(test_ip_patterns),
        cmocka_unit_test(test_subject_cn),
        cmocka_unit_test(test_issuer),
        cmocka_unit_test(test_san_dns),
        cmocka_unit_test(test_san_uri),
        cmocka_unit_test(test_san_email),
        cmocka_unit_test(test_san_ip),
        cmocka_unit_test(test_fingerprint),
        cmocka_unit_test(test_spki),
        cmocka_unit_test(test_serial),
        cmocka_unit_test(test_hostile_sans),
        cmocka_unit_test(test_many_sans),
        cmocka_unit_test(test_glob_worst_case),
        cmocka_unit_test(test_rules_and_lists),
        cmocka_unit_test_teardown(test_file_good, cleanup_files),
        cmocka_unit_test_teardown(test_file_empty, cleanup_files),
        cmocka_unit_test_teardown(test_file_bad_lines, cleanup_files),
        cmocka_unit_test_teardown(test_file_too_many_errors, cleanup_files),
        cmocka_unit_test_teardown(test_file_unreadable, cleanup_files),
        cmocka_unit_test_teardown(test_file_size_limit, cleanup_files),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
