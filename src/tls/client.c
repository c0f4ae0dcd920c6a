/*
 * tollgate as a TLS client of its targets: backend re-encryption and https
 * health checks build their contexts here, from the same target group
 * settings, and name a failed handshake with the same reason codes.
 */
#include <stdio.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "net/net.h"
#include "tls/tls.h"

/* The ex_data slot of a client SSL that keeps the leaf the server offered:
 * a handshake refused for that certificate keeps no peer certificate of
 * its own, and the log wants its subject and issuer. */
static int offered_idx = -1;

static void offered_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                         void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    X509_free(ptr);
}

/* Keeps the first leaf seen; the verdict is OpenSSL's. */
static int keep_offered(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    X509 *leaf = X509_STORE_CTX_get0_cert(x);
    if (ssl != NULL && leaf != NULL && SSL_get_ex_data(ssl, offered_idx) == NULL &&
        X509_up_ref(leaf) == 1 && SSL_set_ex_data(ssl, offered_idx, leaf) != 1)
        X509_free(leaf);
    return ok;
}

/* The trust anchors of a verifying group: its client_cas entry, with CRL
 * checking of every certificate of the chain when the entry has a CRL, or
 * the system store. */
static bool set_trust(SSL_CTX *ctx, const struct config *cfg, const struct cfg_target_group *g,
                      char *err, size_t err_len)
{
    if (g->tls.ca == NULL) {
        if (SSL_CTX_set_default_verify_paths(ctx) == 1)
            return true;
        snprintf(err, err_len, "cannot read the system CA store");
        return false;
    }
    X509_STORE *store = NULL;
    struct diag d;
    diag_init(&d);
    enum tg_status st = tls_load_client_ca(cfg, g->tls.ca, &store, NULL, &d);
    if (st != TG_OK || store == NULL) {
        size_t i = 0;
        while (i < d.n && d.v[i].level != DIAG_ERROR)
            i++;
        if (i < d.n)
            snprintf(err, err_len, "ca %s: %s", g->tls.ca_name, d.v[i].msg);
        else
            snprintf(err, err_len, "ca %s: cannot load", g->tls.ca_name);
        diag_fini(&d);
        X509_STORE_free(store);
        return false;
    }
    diag_fini(&d);
    if (g->tls.ca->crl != NULL)
        X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    SSL_CTX_set_cert_store(ctx, store); /* ctx owns it now */
    return true;
}

SSL_CTX *tls_client_ctx_new(const struct config *cfg, const struct cfg_target_group *g, char *err,
                            size_t err_len)
{
    err[0] = '\0';
    if (offered_idx < 0)
        offered_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, offered_free);
    SSL_CTX *ctx = offered_idx < 0 ? NULL : SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    /* The same floor as the listeners' default: no SSLv3, TLS 1.0 or 1.1. */
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        snprintf(err, err_len, "cannot set the protocol floor");
        goto fail;
    }
    /* A bare EOF ends a read like close_notify: HTTP framing, not the TLS
     * layer, says whether a response was whole. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    tls_ctx_set_verify_level(ctx);
    SSL_CTX_set_verify(ctx, g->tls.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, keep_offered);
    if (g->tls.verify && !set_trust(ctx, cfg, g, err, err_len))
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

bool tls_client_set_peer(SSL *ssl, const char *name, bool verify)
{
    bool is_ip = net_is_ip_literal(name);
    /* RFC 6066 §3: an IP address is never sent as SNI. */
    if (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1)
        return false;
    if (!verify)
        return true;
    if (is_ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    return SSL_set1_host(ssl, name) == 1;
}

X509 *tls_client_offered_cert(SSL *ssl)
{
    X509 *crt = SSL_get0_peer_certificate(ssl);
    if (crt == NULL && offered_idx >= 0)
        crt = SSL_get_ex_data(ssl, offered_idx);
    return crt;
}

const char *tls_client_reason(long verify_result, unsigned long err)
{
    switch (verify_result) {
    case X509_V_OK:
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        return "name_mismatch";
    default:
        /* The certificate check that failed says more than the alert
         * that followed it. */
        return tls_reason_from_verify((int)verify_result);
    }
    const char *reason = tls_reason_from_ssl_error(err);
    return reason != NULL ? reason : "tls_error";
}

const char *tls_client_failure(SSL *ssl, char *detail, size_t detail_len)
{
    /* Without verification OpenSSL still records what the chain check
     * found, but it did not end the handshake. */
    long v = X509_V_OK;
    if ((SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0)
        v = SSL_get_verify_result(ssl);
    unsigned long first = 0, mapped = 0, e;
    while ((e = ERR_get_error()) != 0) {
        if (first == 0)
            first = e;
        if (mapped == 0 && tls_reason_from_ssl_error(e) != NULL)
            mapped = e;
    }
    if (v != X509_V_OK)
        snprintf(detail, detail_len, "%s", X509_verify_cert_error_string(v));
    else if (first != 0)
        ERR_error_string_n(first, detail, detail_len);
    else if ((SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN) != 0)
        snprintf(detail, detail_len, "closed by the server during the handshake");
    else
        snprintf(detail, detail_len, "the handshake broke off");
    return tls_client_reason(v, mapped != 0 ? mapped : first);
}
