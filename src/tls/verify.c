/*
 * Per-connection verdicts: what a handshake learned of the client's
 * certificate (the verify callback of mutual sites, with the allow-list
 * and OCSP), and the stable reason codes of a refusal.
 */
#include "tls/tls.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/async.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>

static int g_verdict_idx = -1;

static int verdict_index(void)
{
    if (g_verdict_idx < 0)
        g_verdict_idx = SSL_get_ex_new_index(0, "tollgate verdict", NULL, NULL, NULL);
    return g_verdict_idx;
}

void tls_verdict_attach(SSL *ssl, struct tls_verdict *v)
{
    memset(v, 0, sizeof(*v));
    v->first_error = X509_V_OK;
    SSL_set_ex_data(ssl, verdict_index(), v);
}

void tls_verdict_fini(struct tls_verdict *v)
{
    X509_free(v->offered);
    v->offered = NULL;
    X509_free(v->ocsp_leaf);
    v->ocsp_leaf = NULL;
    X509_free(v->ocsp_issuer);
    v->ocsp_issuer = NULL;
    tls_verdict_handshake_done(v);
}

void tls_verdict_handshake_done(struct tls_verdict *v)
{
    tls_trust_unref(v->ocsp_trust);
    v->ocsp_trust = NULL;
}

struct tls_verdict *tls_verdict_of(SSL *ssl)
{
    return SSL_get_ex_data(ssl, verdict_index());
}

/*
 * OCSP for a leaf whose chain verified: 1 to go on, 0 (with the error set
 * on xs) to refuse. A status the worker's cache does not know suspends the
 * handshake: the callback runs inside the handshake's async job
 * (SSL_MODE_ASYNC), leaves the leaf and its issuer in the verdict and
 * pauses the job; the connection, seeing TLS_WANT_OCSP, looks the status
 * up and runs the handshake again with the result in the verdict, which
 * resumes the job here. Nothing on this stack (the job's own, 32 KiB)
 * logs or talks to libcurl.
 */
static int ocsp_judge(struct tls_verdict *v, const struct tls_session_policy *p, X509_STORE_CTX *xs)
{
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    struct tls_cert_ref key;
    enum tls_ocsp_verdict r = TLS_OCSP_V_UNAVAILABLE;
    v->is_ocsp_done = true;
    bool known = leaf != NULL && tls_cert_ref_of(leaf, &key) &&
                 tls_ocsp_cache_get(p->ocsp_cache, &key, (int64_t)time(NULL), &r);
    if (!known && leaf != NULL && ASYNC_get_current_job() != NULL) {
        STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(xs);
        X509 *issuer = sk_X509_num(chain) > 1 ? sk_X509_value(chain, 1) : NULL;
        if (X509_up_ref(leaf) == 1)
            v->ocsp_leaf = leaf;
        if (issuer != NULL && X509_up_ref(issuer) == 1)
            v->ocsp_issuer = issuer;
        v->ocsp_responder = p->ocsp_responder;
        v->ocsp_result = TLS_OCSP_V_UNAVAILABLE;
        if (v->ocsp_trust == NULL)
            v->ocsp_trust = tls_trust_ref(p->trust);
        v->is_ocsp_waiting = true;
        (void)ASYNC_pause_job();
        v->is_ocsp_waiting = false;
        X509_free(v->ocsp_leaf);
        v->ocsp_leaf = NULL;
        X509_free(v->ocsp_issuer);
        v->ocsp_issuer = NULL;
        if (v->is_ocsp_abort) {
            X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
            return 0;
        }
        r = v->ocsp_result;
    }
    if (r == TLS_OCSP_V_GOOD)
        return 1;
    if (r == TLS_OCSP_V_REVOKED) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_CERT_REVOKED);
        return 0;
    }
    if (p->ocsp_mode == CFG_CLIENT_OCSP_REQUIRE) {
        X509_STORE_CTX_set_error(xs, TLS_V_ERR_OCSP_UNAVAILABLE);
        return 0;
    }
    return 1; /* prefer: the lookup logged event=ocsp_unavailable */
}

int tls_verify_client_cb(int ok, X509_STORE_CTX *xs)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    if (ssl == NULL)
        return ok;
    struct tls_verdict *v = tls_verdict_of(ssl);
    if (v != NULL && v->offered == NULL) {
        /* The trust this chain is judged under, for the session's facts. */
        const struct tls_session_policy *p = tls_session_policy_of(SSL_get_SSL_CTX(ssl));
        if (p != NULL && p->trust != NULL) {
            memcpy(v->verified_ca, tls_trust_info(p->trust)->ca_digest, TLS_DIGEST_LEN);
            v->judged_under = tls_trust_serial(p->trust);
        }
        X509 *leaf = X509_STORE_CTX_get0_cert(xs);
        if (leaf != NULL && X509_up_ref(leaf) == 1)
            v->offered = leaf;
        /* Facts that would not fit what tollgate forwards refuse the leaf. */
        int lim = leaf != NULL ? tls_cert_limits(leaf) : X509_V_OK;
        if (lim != X509_V_OK) {
            ok = 0;
            X509_STORE_CTX_set_error(xs, lim);
        }
    }
    /* The leaf comes last (depth 0) once the whole chain verified: then
     * the allow-list, and OCSP only for a client it lets in. */
    if (ok && v != NULL && v->first_error == X509_V_OK && X509_STORE_CTX_get_error_depth(xs) == 0 &&
        !tls_site_allows(SSL_get_SSL_CTX(ssl), X509_STORE_CTX_get0_cert(xs))) {
        ok = 0;
        X509_STORE_CTX_set_error(xs, TLS_V_ERR_NOT_ALLOWED);
    }
    const struct tls_session_policy *pol = tls_session_policy_of(SSL_get_SSL_CTX(ssl));
    if (ok && v != NULL && !v->is_ocsp_done && v->first_error == X509_V_OK &&
        X509_STORE_CTX_get_error_depth(xs) == 0 && pol != NULL &&
        pol->ocsp_mode != CFG_CLIENT_OCSP_OFF && pol->ocsp_cache != NULL)
        ok = ocsp_judge(v, pol, xs);
    if (!ok && v != NULL && v->first_error == X509_V_OK) {
        v->first_error = X509_STORE_CTX_get_error(xs);
        v->error_depth = X509_STORE_CTX_get_error_depth(xs);
    }
    /* The session keeps the store's final error as its verify result, and a
     * resumption reports that: keep it the first error, the one that says
     * why (self_signed, not the crl_missing that follows from it). */
    if (v != NULL && v->first_error != X509_V_OK)
        X509_STORE_CTX_set_error(xs, v->first_error);
    if (SSL_get_verify_mode(ssl) & SSL_VERIFY_FAIL_IF_NO_PEER_CERT)
        return ok;
    return 1;
}

void tls_ctx_set_verify_level(SSL_CTX *ctx)
{
    X509_VERIFY_PARAM_set_auth_level(SSL_CTX_get0_param(ctx), TLS_VERIFY_AUTH_LEVEL);
}

const char *tls_reason_from_verify(int e)
{
    switch (e) {
    case X509_V_OK:
        return "none";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "cert_expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "cert_not_yet_valid";
    case X509_V_ERR_CERT_REVOKED:
        return "cert_revoked";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return "self_signed";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
        return "unknown_ca";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL:
    case X509_V_ERR_CA_MD_TOO_WEAK:
        return "bad_signature";
    case X509_V_ERR_INVALID_PURPOSE:
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE:
        return "wrong_purpose";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
        return "chain_too_long";
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return "crl_expired";
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
        return "crl_missing";
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return "crl_expired";
    case TLS_V_ERR_SERIAL_TOO_LONG:
        return "serial_too_long";
    case TLS_V_ERR_NAME_TOO_LONG:
        return "name_too_long";
    case TLS_V_ERR_OCSP_UNAVAILABLE:
        return "ocsp_unavailable";
    case TLS_V_ERR_NOT_ALLOWED:
        return "not_allowed";
    default:
        return "tls_error";
    }
}

const char *tls_reason_from_ssl_error(unsigned long err)
{
    if (ERR_GET_LIB(err) != ERR_LIB_SSL)
        return NULL;
    switch (ERR_GET_REASON(err)) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return "no_client_cert";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_UNKNOWN_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return "protocol_version";
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SHARED_GROUPS:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
    case SSL_R_NO_CIPHERS_AVAILABLE:
        return "no_shared_cipher";
    case SSL_R_CALLBACK_FAILED:
        return NULL; /* the SNI callback: its own verdict says why */
    default:
        return NULL;
    }
}

const char *tls_reason_from_handshake(SSL *ssl, const struct tls_verdict *v, char *detail,
                                      size_t detail_len)
{
    const char *reason = NULL;
    unsigned long first = 0;
    unsigned long e;
    detail[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        if (first == 0) {
            first = e;
            ERR_error_string_n(e, detail, detail_len);
        }
        if (reason == NULL)
            reason = tls_reason_from_ssl_error(e);
    }
    if (v != NULL && v->sni_fail != NULL)
        return v->sni_fail;
    /* A certificate that failed verification says more than the alert. */
    if (v != NULL && v->first_error != X509_V_OK)
        return tls_reason_from_verify(v->first_error);
    if (reason == NULL && ssl != NULL) {
        long vr = SSL_get_verify_result(ssl);
        if (vr != X509_V_OK)
            reason = tls_reason_from_verify((int)vr);
    }
    return reason ? reason : "tls_error";
}
