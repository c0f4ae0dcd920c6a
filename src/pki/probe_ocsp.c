/* tollgate probe: the OCSP response the server stapled (RFC 6066 §8), checked
 * as a client that honours it would. */
#include "pki/internal.h"

#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

static void iso(int64_t t, char *dst, size_t len)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (gmtime_r(&s, &tm) == NULL || strftime(dst, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(dst, len, "%lld", (long long)t);
}

/* The issuer of leaf: from the chain the server sent, else from the trust
 * anchors (borrowed). */
static X509 *find_issuer(X509 *leaf, STACK_OF(X509) *peer, X509_STORE *trust)
{
    X509 *x = tls_ocsp_issuer(leaf, peer);
    if (x != NULL || trust == NULL)
        return x;
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(trust);
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        X509 *c = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i));
        if (c != NULL && X509_check_issued(c, leaf) == X509_V_OK)
            return c;
    }
    return NULL;
}

static void verdict(json_t *o, const char *v, const char *reason, const char *detail)
{
    pki_json_set_str(o, "verdict", v);
    pki_json_set_str(o, "reason", reason);
    pki_json_set_str(o, "detail", detail);
}

json_t *pki_probe_ocsp(SSL *ssl, STACK_OF(X509) *peer, X509_STORE *trust, time_t now)
{
    json_t *o = json_object();
    const unsigned char *resp = NULL;
    long len = ssl != NULL ? SSL_get_tlsext_status_ocsp_resp(ssl, &resp) : -1;
    bool has = resp != NULL && len > 0;
    json_object_set_new(o, "requested", json_true());
    json_object_set_new(o, "stapled", json_boolean(has));
    json_object_set_new(o, "bytes", json_integer(has ? len : 0));
    pki_json_set_str(o, "status", NULL);
    pki_json_set_str(o, "this_update", NULL);
    pki_json_set_str(o, "next_update", NULL);
    if (!has) {
        verdict(o, "none", NULL, "the server stapled no OCSP response");
        return o;
    }
    X509 *leaf = sk_X509_num(peer) > 0 ? sk_X509_value(peer, 0) : NULL;
    X509 *issuer = leaf != NULL ? find_issuer(leaf, peer, trust) : NULL;
    if (issuer == NULL) {
        verdict(o, "skip", NULL,
                "cannot check it: the issuer of the server certificate is neither in the chain "
                "it sent nor among the trusted CAs");
        return o;
    }
    struct tls_ocsp_facts f;
    const char *reason = NULL;
    char detail[400], text[600], this_s[32], next_s[32];
    if (tls_ocsp_check(resp, (size_t)len, leaf, issuer, (int64_t)now, &f, &reason, detail,
                       sizeof(detail)) != TG_OK) {
        char code[64];
        snprintf(code, sizeof(code), "ocsp_%s", reason);
        snprintf(text, sizeof(text), "the stapled response does not verify: %s", detail);
        verdict(o, "fail", code, text);
        return o;
    }
    iso(f.this_update, this_s, sizeof(this_s));
    iso(f.next_update, next_s, sizeof(next_s));
    pki_json_set_str(o, "status", tls_ocsp_status_name(f.status));
    pki_json_set_str(o, "this_update", this_s);
    pki_json_set_str(o, "next_update", next_s);
    json_object_set_new(o, "next_update_in_seconds", json_integer(f.next_update - (int64_t)now));
    if (f.status == TLS_OCSP_REVOKED) {
        char rev[32];
        iso(f.revoked_at, rev, sizeof(rev));
        snprintf(text, sizeof(text),
                 "signed by the issuer's responder: the certificate was revoked on %s", rev);
        verdict(o, "fail", "cert_revoked", text);
    } else if (f.status == TLS_OCSP_UNKNOWN) {
        verdict(o, "fail", "ocsp_unknown", "the responder does not know the certificate");
    } else {
        verdict(o, "pass", NULL,
                "signed by the issuer or its responder, about this certificate, not expired");
    }
    return o;
}

void pki_probe_ocsp_print(const json_t *o)
{
    if (!json_is_object(o))
        return;
    const char *v = pki_json_get_str(o, "verdict", "none");
    const char *detail = pki_json_get_str(o, "detail", "");
    if (strcmp(v, "none") == 0) {
        printf("OCSP staple: none (%s)\n", detail);
        return;
    }
    printf("OCSP staple: %s, %zu bytes\n", pki_json_get_str(o, "status", "not readable"),
           (size_t)json_integer_value(json_object_get(o, "bytes")));
    if (json_is_string(json_object_get(o, "this_update")))
        printf("  this update %s, next update %s\n", pki_json_get_str(o, "this_update", "?"),
               pki_json_get_str(o, "next_update", "?"));
    const char *reason = pki_json_get_str(o, "reason", NULL);
    printf("  %s%s%s%s: %s\n",
           strcmp(v, "pass") == 0   ? "pass"
           : strcmp(v, "skip") == 0 ? "skip"
                                    : "FAIL",
           reason ? " (" : "", reason ? reason : "", reason ? ")" : "", detail);
}
