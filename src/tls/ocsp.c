/*
 * OCSP stapling: the request for a certificate, the checks every response
 * passes before it is stapled (RFC 6960; the bytes come from a responder or
 * a file, so they are hostile until checked), and the status callback that
 * staples the current response from shared memory (RFC 6066 §8).
 */
#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ocsp.h>
#include <openssl/x509v3.h>

static int g_slot_idx = -1;

/* The slot of a leaf is kept in its ex_data as index + 1 (0: none). */
static int slot_index(void)
{
    if (g_slot_idx < 0)
        g_slot_idx = X509_get_ex_new_index(0, "tollgate ocsp slot", NULL, NULL, NULL);
    return g_slot_idx;
}

bool tls_ocsp_url(X509 *cert, char *dst, size_t dst_len)
{
    bool found = false;
    STACK_OF(OPENSSL_STRING) *urls = X509_get1_ocsp(cert);
    for (int i = 0; i < sk_OPENSSL_STRING_num(urls) && !found; i++) {
        const char *u = sk_OPENSSL_STRING_value(urls, i);
        size_t n = strlen(u);
        /* RFC 6960 Appendix A: plain HTTP; a fetch over TLS could need the
         * very revocation status it is fetching. */
        if (n > 7 && n < dst_len && strncmp(u, "http://", 7) == 0) {
            memcpy(dst, u, n + 1);
            found = true;
        }
    }
    X509_email_free(urls);
    if (!found && dst_len > 0)
        dst[0] = '\0';
    return found;
}

X509 *tls_ocsp_issuer(X509 *leaf, STACK_OF(X509) *certs)
{
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        if (X509_check_issued(x, leaf) == X509_V_OK)
            return x;
    }
    return NULL;
}

enum tg_status tls_ocsp_request(X509 *leaf, X509 *issuer, unsigned char **der, size_t *len)
{
    enum tg_status st = TG_E_NOMEM;
    OCSP_REQUEST *req = OCSP_REQUEST_new();
    OCSP_CERTID *id = OCSP_cert_to_id(EVP_sha1(), leaf, issuer);
    *der = NULL;
    *len = 0;
    if (req == NULL || id == NULL)
        goto out;
    if (OCSP_request_add0_id(req, id) == NULL)
        goto out;
    id = NULL; /* owned by req now */
    int n = i2d_OCSP_REQUEST(req, der);
    if (n <= 0) {
        *der = NULL;
        goto out;
    }
    *len = (size_t)n;
    st = TG_OK;
out:
    OCSP_CERTID_free(id);
    OCSP_REQUEST_free(req);
    return st;
}

static bool unix_time(const ASN1_GENERALIZEDTIME *t, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
        return false;
    *out = (int64_t)timegm(&tm);
    return true;
}

/* The first queued OpenSSL error as text, or what. */
static void ssl_detail(char *dst, size_t len, const char *what)
{
    unsigned long e = ERR_peek_error();
    char text[200];
    if (e == 0) {
        snprintf(dst, len, "%s", what);
        return;
    }
    ERR_error_string_n(e, text, sizeof(text));
    snprintf(dst, len, "%s (%s)", what, text);
}

/* OCSP_basic_verify with issuer as the only trust anchor: the response is
 * signed by the issuer itself, or by a responder certificate that the
 * issuer signed for id-kp-OCSPSigning (RFC 6960 §4.2.2.2). */
static bool signed_by_issuer(OCSP_BASICRESP *bs, X509 *issuer, int64_t now)
{
    bool ok = false;
    X509_STORE *store = X509_STORE_new();
    STACK_OF(X509) *certs = sk_X509_new_null();
    if (store == NULL || certs == NULL || X509_STORE_add_cert(store, issuer) != 1 ||
        sk_X509_push(certs, issuer) <= 0)
        goto out;
    /* The issuer is often an intermediate: trust it without its root. */
    X509_VERIFY_PARAM *param = X509_STORE_get0_param(store);
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    X509_VERIFY_PARAM_set_time(param, (time_t)now);
    ok = OCSP_basic_verify(bs, certs, store, 0) == 1;
out:
    sk_X509_free(certs);
    X509_STORE_free(store);
    return ok;
}

enum tg_status tls_ocsp_check(const uint8_t *der, size_t len, X509 *leaf, X509 *issuer, int64_t now,
                              struct tls_ocsp_facts *out, const char **reason, char *detail,
                              size_t detail_len)
{
    return tls_ocsp_check_ex(der, len, leaf, issuer, now, 0, out, reason, detail, detail_len);
}

enum tg_status tls_ocsp_check_ex(const uint8_t *der, size_t len, X509 *leaf, X509 *issuer,
                                 int64_t now, unsigned flags, struct tls_ocsp_facts *out,
                                 const char **reason, char *detail, size_t detail_len)
{
    enum tg_status st = TG_E_PROTO;
    OCSP_RESPONSE *resp = NULL;
    OCSP_BASICRESP *bs = NULL;
    OCSP_CERTID *id = NULL;
    memset(out, 0, sizeof(*out));
    out->revocation_reason = -1;
    *reason = "malformed";
    detail[0] = '\0';
    ERR_clear_error();
    if (len == 0 || len > OCSP_RESP_MAX) {
        snprintf(detail, detail_len, "%zu bytes (expected 1 to %d)", len, OCSP_RESP_MAX);
        goto out;
    }
    const unsigned char *p = der;
    resp = d2i_OCSP_RESPONSE(NULL, &p, (long)len);
    if (resp == NULL || p != der + len) {
        ssl_detail(detail, detail_len,
                   resp == NULL ? "not a DER OCSP response" : "bytes after the DER OCSP response");
        goto out;
    }
    int rs = OCSP_response_status(resp);
    if (rs != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
        *reason = "not_successful";
        snprintf(detail, detail_len, "the responder answered %s (%d)", OCSP_response_status_str(rs),
                 rs);
        goto out;
    }
    bs = OCSP_response_get1_basic(resp);
    if (bs == NULL) {
        ssl_detail(detail, detail_len, "not a basic OCSP response");
        goto out;
    }
    if (!signed_by_issuer(bs, issuer, now)) {
        *reason = "bad_signature";
        ssl_detail(detail, detail_len,
                   "not signed by the certificate's issuer nor by a responder it authorised");
        goto out;
    }
    st = TG_E_NOMEM;
    id = OCSP_cert_to_id(EVP_sha1(), leaf, issuer);
    if (id == NULL)
        goto out;
    st = TG_E_PROTO;
    int status = -1, why = -1;
    ASN1_GENERALIZEDTIME *rev = NULL, *this_upd = NULL, *next_upd = NULL;
    if (OCSP_resp_find_status(bs, id, &status, &why, &rev, &this_upd, &next_upd) != 1) {
        *reason = "wrong_certificate";
        snprintf(detail, detail_len, "the response says nothing about this certificate");
        goto out;
    }
    if (!unix_time(this_upd, &out->this_update) ||
        (next_upd != NULL && !unix_time(next_upd, &out->next_update))) {
        snprintf(detail, detail_len, "unreadable thisUpdate or nextUpdate");
        goto out;
    }
    bool has_next = next_upd != NULL;
    if (!has_next && (flags & TLS_OCSP_NO_NEXT_UPDATE_OK) == 0) {
        *reason = "no_next_update";
        snprintf(detail, detail_len,
                 "no nextUpdate: nothing says when it expires, so it is never stapled");
        goto out;
    }
    if (has_next && out->next_update <= out->this_update) {
        snprintf(detail, detail_len, "nextUpdate is not after thisUpdate");
        goto out;
    }
    if (out->this_update > now + TLS_OCSP_LEEWAY) {
        *reason = "not_yet_valid";
        snprintf(detail, detail_len, "thisUpdate is %lld s in the future; check the clock",
                 (long long)(out->this_update - now));
        goto out;
    }
    if (has_next && out->next_update <= now) {
        *reason = "expired";
        snprintf(detail, detail_len, "nextUpdate passed %lld s ago",
                 (long long)(now - out->next_update));
        goto out;
    }
    if (status == V_OCSP_CERTSTATUS_GOOD) {
        out->status = TLS_OCSP_GOOD;
    } else if (status == V_OCSP_CERTSTATUS_REVOKED) {
        out->status = TLS_OCSP_REVOKED;
        out->revocation_reason = why;
        if (!unix_time(rev, &out->revoked_at))
            out->revoked_at = 0;
    } else {
        out->status = TLS_OCSP_UNKNOWN;
    }
    *reason = NULL;
    st = TG_OK;
out:
    if (st == TG_E_NOMEM) {
        *reason = "malformed";
        snprintf(detail, detail_len, "out of memory");
    }
    ERR_clear_error();
    OCSP_CERTID_free(id);
    OCSP_BASICRESP_free(bs);
    OCSP_RESPONSE_free(resp);
    return st;
}

void tls_ocsp_config_check(const struct config *cfg, const struct cfg_certificate *c,
                           const struct tls_chain *chain, struct diag *d)
{
    char url[1024], key[256], err[300], detail[300];
    if (c->ocsp == CFG_OCSP_OFF)
        return;
    bool has_url = tls_ocsp_url(chain->leaf, url, sizeof(url));
    if (c->ocsp_file == NULL && !has_url)
        return;
    X509 *issuer = tls_ocsp_issuer(chain->leaf, chain->chain);
    if (issuer == NULL) {
        snprintf(key, sizeof(key), "certificates.%s.cert", c->name);
        diag_add(d, DIAG_WARNING, cfg->path, c->cert_pos.line, c->cert_pos.col, key,
                 "%s: OCSP stapling needs the issuer of the certificate in this file; add it "
                 "after the certificate (or set ocsp: off)",
                 c->cert);
        return;
    }
    if (c->ocsp_file == NULL)
        return;
    uint8_t *buf = OPENSSL_malloc(OCSP_RESP_MAX);
    size_t len = 0;
    struct tls_ocsp_facts f;
    const char *reason = NULL;
    snprintf(key, sizeof(key), "certificates.%s.ocsp_file", c->name);
    if (buf == NULL)
        return;
    if (tls_ocsp_read_file(c->ocsp_file, buf, OCSP_RESP_MAX, &len, err, sizeof(err)) != TG_OK) {
        snprintf(detail, sizeof(detail), "%s", err);
        reason = "unreadable";
    } else if (tls_ocsp_check(buf, len, chain->leaf, issuer, (int64_t)time(NULL), &f, &reason,
                              detail, sizeof(detail)) == TG_OK &&
               f.status != TLS_OCSP_GOOD) {
        reason = f.status == TLS_OCSP_REVOKED ? "revoked" : "status_unknown";
        snprintf(detail, sizeof(detail), "the response says the certificate is %s",
                 tls_ocsp_status_name(f.status));
    }
    if (reason != NULL)
        diag_add(d, DIAG_WARNING, cfg->path, c->ocsp_file_pos.line, c->ocsp_file_pos.col, key,
                 "%s: %s: %s; no good response is stapled until the file holds one", c->ocsp_file,
                 reason, detail);
    OPENSSL_free(buf);
}

const char *tls_ocsp_status_name(enum tls_ocsp_status s)
{
    return s == TLS_OCSP_GOOD ? "good" : s == TLS_OCSP_REVOKED ? "revoked" : "unknown";
}

enum tg_status tls_ocsp_read_file(const char *path, uint8_t *buf, size_t cap, size_t *len,
                                  char *err, size_t err_len)
{
    enum tg_status st = TG_E_CONFIG;
    struct stat sb;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, err_len, "cannot open: %s", strerror(errno));
        return TG_E_CONFIG;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, err_len, "cannot open: not a regular file");
        goto out;
    }
    if (sb.st_size <= 0 || (uint64_t)sb.st_size > cap) {
        snprintf(err, err_len, "holds %lld bytes; an OCSP response file holds 1 to %zu",
                 (long long)sb.st_size, cap);
        goto out;
    }
    size_t want = (size_t)sb.st_size;
    while (*len < want) {
        ssize_t n = read(fd, buf + *len, want - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, err_len, "cannot read: %s", n < 0 ? strerror(errno) : "file shrank");
            goto out;
        }
        *len += (size_t)n;
    }
    st = TG_OK;
out:
    close(fd);
    return st;
}

static void *staple_alloc(size_t n)
{
    return OPENSSL_malloc(n);
}

static void staple_release(void *p)
{
    OPENSSL_free(p);
}

/* RFC 6066 §8: called only when the client asked for the status, after the
 * certificate was chosen; the response it hands over is OpenSSL's to free. */
static int status_cb(SSL *ssl, void *arg)
{
    const struct ocsp_shm *shm = arg;
    if (SSL_get_tlsext_status_type(ssl) != TLSEXT_STATUSTYPE_ocsp)
        return SSL_TLSEXT_ERR_NOACK;
    X509 *leaf = SSL_get_certificate(ssl);
    uintptr_t slot = leaf != NULL ? (uintptr_t)X509_get_ex_data(leaf, slot_index()) : 0;
    if (slot == 0)
        return SSL_TLSEXT_ERR_NOACK;
    size_t len = 0;
    uint8_t *resp = ocsp_shm_copy(shm, (size_t)(slot - 1), (int64_t)time(NULL), &len, staple_alloc,
                                  staple_release);
    if (resp == NULL)
        return SSL_TLSEXT_ERR_NOACK;
    if (SSL_set_tlsext_status_ocsp_resp(ssl, resp, (long)len) != 1) {
        OPENSSL_free(resp);
        return SSL_TLSEXT_ERR_NOACK;
    }
    return SSL_TLSEXT_ERR_OK;
}

enum tg_status tls_ocsp_staple(SSL_CTX *ctx, X509 *leaf, const struct ocsp_shm *shm, size_t slot)
{
    if (shm == NULL || slot >= shm->n)
        return TG_OK;
    if (X509_set_ex_data(leaf, slot_index(), (void *)(uintptr_t)(slot + 1)) != 1)
        return TG_E_NOMEM;
    SSL_CTX_set_tlsext_status_cb(ctx, status_cb);
    SSL_CTX_set_tlsext_status_arg(ctx, (void *)shm);
    return TG_OK;
}
