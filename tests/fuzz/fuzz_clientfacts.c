/*
 * Fuzzes every consumer of a client certificate's facts with a DER
 * certificate and its chain (the input: DER certificates back to back, the
 * first one the client's). Each consumer must stay inside its buffers and
 * keep its output well-formed whatever the certificate holds:
 *
 * - tls_cert_facts: every fact terminated inside its field, valid UTF-8
 *   without control characters (they are escaped), the serial hex of at
 *   most 20 octets; a certificate within tls_cert_limits has its names
 *   whole, never cut;
 * - the PROXY v2 encoder: a header that decodes back to the same
 *   certificate and CN, or a refusal when the certificate cannot fit;
 * - the identity headers, in each client_cert_header mode: a well-formed
 *   head with exactly one X-Client-Verify and the certificate headers the
 *   mode asks for, Client-Cert decoding back to the certificate;
 * - the access log's TLS fields: a JSON object that parses and gives the
 *   subject back;
 * - the on_reject page: JSON that parses, HTML whose only tags are its own;
 * - the allow-list matcher: a fact forwarded about the certificate, taken
 *   as a pattern, matches it (CN, issuer, serial, fingerprint), a negative
 *   serial matches nothing, and every field's widest pattern runs on
 *   whatever the subjectAltName holds.
 *
 * clang -fsanitize=fuzzer -DTG_LIBFUZZER builds a fuzzer; otherwise main()
 * replays every file in the directory given as argv[1].
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "fuzz_common.h"

#include "http/http.h"
#include "proxy/reject.h"
#include "proxy/proxy.h"
#include "pp2_decode.h"
#include "tls/tls.h"

enum { MAX_CHAIN = 4 };

/* A NUL inside the field, valid UTF-8 before it, no C0 control or DEL. */
static void check_text(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    CHECK(n < cap);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        CHECK(c >= 0x20 && c != 0x7f);
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
        CHECK(c < 0x80 || (c >= 0xc2 && c <= 0xf4));
        CHECK(i + len <= n);
        for (size_t k = 1; k < len; k++)
            CHECK(((unsigned char)s[i + k] & 0xc0) == 0x80);
        i += len;
    }
}

/* Cut or not, a name never ends inside an escape: an odd run of trailing
 * backslashes would escape whatever a consumer puts after it. */
static void check_escapes_whole(const char *s)
{
    size_t n = strlen(s), k = 0;
    while (k < n && s[n - 1 - k] == '\\')
        k++;
    CHECK(k % 2 == 0);
}

static void check_facts(X509 *leaf, const struct tls_info *info, bool within_limits)
{
    check_text(info->client_subject, sizeof(info->client_subject));
    check_text(info->client_issuer, sizeof(info->client_issuer));
    check_text(info->client_cn, sizeof(info->client_cn));
    check_escapes_whole(info->client_subject);
    check_escapes_whole(info->client_issuer);
    check_escapes_whole(info->client_cn);
    size_t n = strnlen(info->client_serial, sizeof(info->client_serial));
    CHECK(n < sizeof(info->client_serial) && n <= 2 * TLS_SERIAL_MAX + 1);
    for (size_t i = 0; i < n; i++)
        CHECK(strchr("0123456789abcdef", info->client_serial[i]) != NULL ||
              (i == 0 && info->client_serial[i] == '-'));
    CHECK(strlen(info->client_fingerprint) == 64);
    if (within_limits) {
        char probe[1];
        CHECK(tls_name_format(X509_get_subject_name(leaf), probe, 1) ==
              strlen(info->client_subject));
        CHECK(tls_name_format(X509_get_issuer_name(leaf), probe, 1) == strlen(info->client_issuer));
    }
}

static void check_proxy_v2(const struct tls_info *info, const uint8_t *der, size_t der_len)
{
    struct pp_info pi = {0};
    pi.src.ss.ss_family = AF_UNSPEC;
    pi.dst.ss.ss_family = AF_UNSPEC;
    pi.authority = "localhost";
    pi.has_ssl = true;
    pi.ssl_client = PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS;
    pi.ssl_verify = info->client_verified ? 0 : 1;
    pi.ssl_version = info->version;
    pi.ssl_cipher = info->cipher;
    pi.ssl_cn = info->client_cn;
    pi.client_cert_der = der;
    pi.client_cert_der_len = der_len;
    size_t need = 0;
    enum tg_status st = proxyproto_v2_encode(&pi, NULL, 0, &need);
    if (st == TG_E_PROTO)
        return; /* a certificate over the 16-bit TLV length */
    CHECK(st == TG_E_AGAIN && need > 16);
    uint8_t *out = malloc(need);
    CHECK(out != NULL);
    size_t len = 0;
    CHECK(proxyproto_v2_encode(&pi, out, need, &len) == TG_OK && len == need);
    struct pp_decoded d;
    size_t used = 0;
    CHECK(proxyproto_v2_decode(out, len, &d, &used) == TG_OK && used == len);
    CHECK(d.tlv_client_cert_len == der_len && memcmp(d.tlv_client_cert, der, der_len) == 0);
    /* The SSL TLV: client (1), verify (4), then version, cipher, CN. */
    const uint8_t *p = d.tlv_ssl + 5, *end = d.tlv_ssl + d.tlv_ssl_len;
    bool cn_seen = false;
    while (p + 3 <= end) {
        size_t vlen = (size_t)p[1] << 8 | p[2];
        CHECK(p + 3 + vlen <= end);
        if (p[0] == PP2_SUBTYPE_SSL_CN) {
            CHECK(vlen == strlen(info->client_cn) && memcmp(p + 3, info->client_cn, vlen) == 0);
            cn_seen = true;
        }
        p += 3 + vlen;
    }
    CHECK(p == end);
    CHECK(cn_seen == (info->client_cn[0] != '\0'));
    free(out);
}

static void check_headers(const struct tls_info *info, const uint8_t *const *ders,
                          const size_t *lens, size_t n_ders)
{
    static const char req[] = "GET /x HTTP/1.1\r\nHost: localhost\r\n\r\n";
    struct h1 parser;
    struct http_head hd;
    h1_init(&parser, true, 0);
    CHECK(h1_head(&parser, &hd, req, sizeof(req) - 1) == TG_OK);
    struct net_addr client = {0};
    client.ss.ss_family = AF_UNSPEC;
    for (int mode = CFG_CERT_HEADER_FULL; mode <= CFG_CERT_HEADER_OFF; mode++) {
        struct hdr_identity id = {
            .client = &client,
            .port = 443,
            .proto = "https",
            .tls = info,
            .cert_der = ders[0],
            .cert_der_len = lens[0],
            .chain_der = ders + 1,
            .chain_der_len = lens + 1,
            .n_chain = n_ders - 1,
            .cert_header = (enum cfg_cert_header)mode,
        };
        size_t need = http_hdr_request_size(&hd, &id);
        struct buf b = {0};
        CHECK(buf_init(&b, need) == TG_OK);
        CHECK(http_hdr_request(&hd, &id, &b) == TG_OK);
        size_t len;
        const char *out = (const char *)buf_rdata(&b, &len);
        CHECK(len == need);
        fz_check_head(out, len);
        CHECK(fz_count_named(out, len, "X-Client-Verify") == 1);
        bool facts = mode != CFG_CERT_HEADER_OFF;
        bool leaf = mode == CFG_CERT_HEADER_FULL || mode == CFG_CERT_HEADER_LEAF;
        CHECK(fz_count_named(out, len, "X-Client-Subject") == (facts ? 1 : 0));
        CHECK(fz_count_named(out, len, "X-Client-Fingerprint") == (facts ? 1 : 0));
        CHECK(fz_count_named(out, len, "Client-Cert") == (leaf ? 1 : 0));
        CHECK(fz_count_named(out, len, "Client-Cert-Chain") ==
              (mode == CFG_CERT_HEADER_FULL && n_ders > 1 ? 1 : 0));
        size_t vlen = 0;
        const char *v = fz_header_value(out, len, "Client-Cert", &vlen);
        if (leaf) {
            CHECK(v != NULL && vlen >= 2 && v[0] == ':' && v[vlen - 1] == ':');
            uint8_t *dec = malloc(vlen);
            CHECK(dec != NULL);
            int n = EVP_DecodeBlock(dec, (const unsigned char *)v + 1, (int)vlen - 2);
            size_t pad = (vlen > 3 && v[vlen - 2] == '=') + (vlen > 4 && v[vlen - 3] == '=');
            CHECK(n >= 0 && (size_t)n - pad == lens[0] && memcmp(dec, ders[0], lens[0]) == 0);
            free(dec);
        }
        buf_fini(&b);
    }
}

static void check_access_json(const struct tls_info *info)
{
    char *line = malloc(TLS_INFO_JSON_MAX + 2);
    CHECK(line != NULL);
    line[0] = '{';
    size_t n = tls_info_json(info, line + 1, TLS_INFO_JSON_MAX);
    CHECK(n + 1 < TLS_INFO_JSON_MAX);
    line[n + 1] = '}';
    json_error_t err;
    json_t *j = json_loadb(line, n + 2, 0, &err);
    CHECK(j != NULL);
    CHECK(strcmp(json_string_value(json_object_get(j, "client_subject")), info->client_subject) ==
          0);
    CHECK(strcmp(json_string_value(json_object_get(j, "client_issuer")), info->client_issuer) == 0);
    json_decref(j);
    free(line);
}

static bool known_tag(const char *p)
{
    static const char *const tags[] = {"!doctype", "html>", "head>", "title>", "body>",
                                       "h1>",      "p>",    "code>", "ul>",    "li>"};
    if (*p == '/')
        p++;
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        if (strncmp(p, tags[i], strlen(tags[i])) == 0)
            return true;
    return false;
}

static void check_reject_page(const struct tls_info *info, X509 *leaf)
{
    STACK_OF(X509_NAME) *cas = sk_X509_NAME_new_null();
    CHECK(cas != NULL);
    /* The accepted CAs come from the configuration; names from the
     * certificate stand in for an operator's odd ones. */
    CHECK(sk_X509_NAME_push(cas, X509_get_subject_name(leaf)) > 0);
    CHECK(sk_X509_NAME_push(cas, X509_get_issuer_name(leaf)) > 0);
    static char page[8192];
    const char *reason = NULL;
    unsigned st = reject_page_render(info, cas, true, page, sizeof(page), &reason);
    CHECK(st == 495 && reason != NULL);
    size_t len = strnlen(page, sizeof(page));
    CHECK(len < sizeof(page) && len > 0 && page[len - 1] == '\n');
    json_error_t err;
    json_t *j = json_loadb(page, len, 0, &err);
    CHECK(j != NULL);
    CHECK(json_integer_value(json_object_get(j, "status")) == 495);
    json_decref(j);

    st = reject_page_render(info, cas, false, page, sizeof(page), &reason);
    CHECK(st == 495);
    len = strnlen(page, sizeof(page));
    CHECK(len < sizeof(page));
    CHECK(len > 15 && strcmp(page + len - 15, "</body></html>\n") == 0);
    for (const char *p = strchr(page, '<'); p != NULL; p = strchr(p + 1, '<'))
        CHECK(known_tag(p + 1));
    sk_X509_NAME_free(cas);
}

/* Whether leaf matches the one-term rule "f value"; -1 when value is not
 * a pattern of f. */
static int allow_match(X509 *leaf, enum cfg_allow_field f, const char *value)
{
    struct cfg_allow_term t = {0};
    const char *why = NULL;
    if (!config_allow_term_set(&t, f, value, &why))
        return -1;
    struct cfg_allow_rule r = {.terms = &t, .n_terms = 1};
    struct cfg_allow a = {.rules = &r, .n_rules = 1};
    bool is_match = tls_allow_rule_matches(&r, leaf);
    CHECK(tls_allow_matches(&a, leaf) == is_match);
    free(t.value);
    return is_match;
}

static void check_allow(X509 *leaf, const struct tls_info *info, bool within_limits)
{
    CHECK(allow_match(leaf, CFG_ALLOW_FINGERPRINT_SHA256, info->client_fingerprint) == 1);
    if (info->client_serial[0] == '-')
        CHECK(allow_match(leaf, CFG_ALLOW_SERIAL, info->client_serial + 1) != 1);
    else if (info->client_serial[0] != '\0')
        CHECK(allow_match(leaf, CFG_ALLOW_SERIAL, info->client_serial) == 1);
    if (within_limits) {
        CHECK(allow_match(leaf, CFG_ALLOW_SUBJECT_CN, "*") == (info->client_cn[0] != '\0'));
        CHECK(allow_match(leaf, CFG_ALLOW_SUBJECT_CN, info->client_cn) != 0);
        CHECK(allow_match(leaf, CFG_ALLOW_ISSUER, info->client_issuer) != 0);
    }
    static const struct {
        enum cfg_allow_field f;
        const char *value;
    } widest[] = {
        {CFG_ALLOW_SAN_DNS, "*.*"},
        {CFG_ALLOW_SAN_DNS, "*"},
        {CFG_ALLOW_SAN_URI, "*:*"},
        {CFG_ALLOW_SAN_EMAIL, "*@*"},
        {CFG_ALLOW_SAN_IP, "0.0.0.0/0"},
        {CFG_ALLOW_SAN_IP, "::/0"},
        {CFG_ALLOW_ISSUER, "*"},
        {CFG_ALLOW_SPKI_SHA256, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
    };
    for (size_t i = 0; i < sizeof(widest) / sizeof(widest[0]); i++)
        CHECK(allow_match(leaf, widest[i].f, widest[i].value) >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    X509 *certs[MAX_CHAIN + 1] = {0};
    uint8_t *ders[MAX_CHAIN + 1] = {0};
    size_t lens[MAX_CHAIN + 1] = {0};
    size_t n = 0;
    const unsigned char *p = data, *end = data + size;
    while (n <= MAX_CHAIN && p < end) {
        X509 *x = d2i_X509(NULL, &p, (long)(end - p));
        if (x == NULL)
            break;
        int len = i2d_X509(x, &ders[n]);
        if (len <= 0) {
            X509_free(x);
            break;
        }
        lens[n] = (size_t)len;
        certs[n++] = x;
    }
    if (n == 0)
        return 0;

    struct tls_info info;
    memset(&info, 0, sizeof(info));
    snprintf(info.version, sizeof(info.version), "TLSv1.3");
    snprintf(info.cipher, sizeof(info.cipher), "TLS_AES_128_GCM_SHA256");
    snprintf(info.sni, sizeof(info.sni), "localhost");
    info.has_client_cert = true;
    tls_cert_facts(certs[0], &info);
    int lim = tls_cert_limits(certs[0]);
    CHECK(lim == X509_V_OK || lim == TLS_V_ERR_SERIAL_TOO_LONG || lim == TLS_V_ERR_NAME_TOO_LONG);
    /* Either verdict, chosen by the input, so both paths are fed. */
    info.client_verified = lim == X509_V_OK && size % 2 == 0;
    info.client_verdict = info.client_verified ? "SUCCESS"
                          : lim != X509_V_OK   ? tls_reason_from_verify(lim)
                                               : "self_signed";
    check_facts(certs[0], &info, lim == X509_V_OK);
    check_proxy_v2(&info, ders[0], lens[0]);
    check_headers(&info, (const uint8_t *const *)ders, lens, n);
    check_access_json(&info);
    check_allow(certs[0], &info, lim == X509_V_OK);
    if (!info.client_verified)
        check_reject_page(&info, certs[0]);

    for (size_t i = 0; i < n; i++) {
        X509_free(certs[i]);
        OPENSSL_free(ders[i]);
    }
    return 0;
}
