/*
 * Pieces of `tollgate probe` that do not touch the handshake itself: the
 * target, the TCP connection with its timeout, our client certificate, and
 * what a server's alert means.
 */
#include "pki/internal.h"
#include "pki/pki.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

int64_t pki_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int pki_wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - pki_now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -1 : r > 0;
    }
}

bool pki_split_target(const char *t, char *host, size_t host_len, char *port, size_t port_len)
{
    const char *colon;
    const char *h = t;
    size_t hn;
    if (t[0] == '[') {
        const char *close = strchr(t, ']');
        if (close == NULL || close[1] != ':')
            return false;
        h = t + 1;
        hn = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(t, ':');
        if (colon == NULL || memchr(t, ':', (size_t)(colon - t)) != NULL)
            return false;
        hn = (size_t)(colon - t);
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(colon + 1, &end, 10);
    if (hn == 0 || hn >= host_len || errno != 0 || end == colon + 1 || *end != '\0' || v < 1 ||
        v > 65535)
        return false;
    memcpy(host, h, hn);
    host[hn] = '\0';
    snprintf(port, port_len, "%ld", v);
    return true;
}

static void addr_format(const struct addrinfo *a, const char *port, char *dst, size_t dst_len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    const void *sa = a->ai_family == AF_INET6
                         ? (const void *)&((const struct sockaddr_in6 *)a->ai_addr)->sin6_addr
                         : (const void *)&((const struct sockaddr_in *)a->ai_addr)->sin_addr;
    inet_ntop(a->ai_family, sa, ip, sizeof(ip));
    snprintf(dst, dst_len, a->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", ip, port);
}

/* One non-blocking connect bounded by deadline: 0 or an errno value. */
static int connect_one(int fd, const struct addrinfo *a, int64_t deadline)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return errno;
    int r = pki_wait_fd(fd, POLLOUT, deadline);
    if (r == 0)
        return ETIMEDOUT;
    if (r < 0)
        return errno;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return errno;
    return err;
}

int pki_connect(const char *host, const char *port, int timeout_ms, char *addr, size_t addr_len,
                const char **reason, char *msg, size_t msg_len)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *ai = NULL;
    snprintf(addr, addr_len, "%s:%s", host, port);
    *reason = NULL;
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0) {
        *reason = "resolve_failed";
        snprintf(msg, msg_len, "cannot resolve %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    int err = 0;
    int64_t start = pki_now_ms();
    for (const struct addrinfo *a = ai; a != NULL && fd < 0; a = a->ai_next) {
        addr_format(a, port, addr, addr_len);
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        err = fd < 0 ? errno : connect_one(fd, a, start + timeout_ms);
        if (fd >= 0 && err != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (fd >= 0) {
        snprintf(msg, msg_len, "%s: connected in %lld ms", addr, (long long)(pki_now_ms() - start));
        return fd;
    }
    if (err == ECONNREFUSED) {
        *reason = "connection_refused";
        snprintf(msg, msg_len,
                 "nothing listens on %s (connection refused): is the server running, and is this "
                 "the listener's port?",
                 addr);
    } else if (err == ETIMEDOUT) {
        *reason = "connect_timeout";
        snprintf(msg, msg_len,
                 "no answer from %s within %d ms: a firewall drops the packets, or the host is "
                 "down",
                 addr, timeout_ms);
    } else {
        *reason = "connect_failed";
        snprintf(msg, msg_len, "cannot connect to %s: %s", addr, strerror(err));
    }
    return -1;
}

void pki_client_cert_fini(struct pki_client_cert *c)
{
    X509_free(c->leaf);
    sk_X509_pop_free(c->chain, X509_free);
    EVP_PKEY_free(c->key);
    memset(c, 0, sizeof(*c));
}

enum tg_status pki_client_cert_load(const struct pki_probe_opts *o, struct pki_client_cert *c,
                                    char *err, size_t err_len)
{
    STACK_OF(X509) *certs = NULL;
    STACK_OF(X509) *key_certs = NULL;
    struct pki_chain order = {0};
    char why[1024];
    enum tg_status st = pki_read(o->cert, o->password_file, &certs, &c->key, why, sizeof(why));
    if (st != TG_OK) {
        snprintf(err, err_len, "--cert: %s", why);
        goto out;
    }
    if (o->key != NULL && strcmp(o->key, o->cert) != 0) {
        EVP_PKEY_free(c->key);
        c->key = NULL;
        st = pki_read(o->key, o->password_file, &key_certs, &c->key, why, sizeof(why));
        if (st != TG_OK) {
            snprintf(err, err_len, "--key: %s", why);
            goto out;
        }
    }
    st = TG_E_CONFIG;
    if (sk_X509_num(certs) == 0) {
        snprintf(err, err_len, "--cert: %s: no certificate in it", o->cert);
        goto out;
    }
    if (c->key == NULL) {
        snprintf(err, err_len, "--key: no private key in %s; give the key file with --key",
                 o->key ? o->key : o->cert);
        goto out;
    }
    if (pki_chain_build(certs, c->key, &order) != TG_OK)
        goto out;
    if (order.key_match < 0) {
        snprintf(err, err_len,
                 "--key: the key does not belong to any certificate in %s (see "
                 "tollgate cert match)",
                 o->cert);
        goto out;
    }
    c->chain = sk_X509_new_null();
    if (c->chain == NULL)
        goto out;
    c->leaf = sk_X509_value(certs, order.order[0]);
    X509_up_ref(c->leaf);
    for (int i = 1; i < order.n; i++) {
        X509 *x = sk_X509_value(certs, order.order[i]);
        if (sk_X509_push(c->chain, x) <= 0)
            goto out;
        X509_up_ref(x);
    }
    st = TG_OK;
out:
    pki_chain_fini(&order);
    sk_X509_pop_free(key_certs, X509_free);
    sk_X509_pop_free(certs, X509_free);
    if (st != TG_OK)
        pki_client_cert_fini(c);
    return st;
}

/* Whether any certificate of ours expired or is not yet valid. */
int pki_client_cert_dates(const struct pki_client_cert *c)
{
    time_t now = time(NULL);
    for (int i = -1; c->leaf != NULL && i < sk_X509_num(c->chain); i++) {
        X509 *x = i < 0 ? c->leaf : sk_X509_value(c->chain, i);
        if (X509_cmp_time(X509_get0_notAfter(x), &now) < 0)
            return 1;
        if (X509_cmp_time(X509_get0_notBefore(x), &now) > 0)
            return -1;
    }
    return 0;
}

/*
 * The reason code and meaning of a fatal alert from the server. Which
 * verification error OpenSSL turns into which alert is in its
 * ssl_verify_alarm_type(); what we know of our own certificate refines
 * alerts that stand for several errors.
 */
const char *pki_alert_reason(bool saw_request, int n_sent, const struct pki_client_cert *c,
                             int desc, const char **meaning)
{
    bool is_ours_sent = n_sent > 0;
    switch (desc) {
    case SSL_AD_HANDSHAKE_FAILURE:
        if (saw_request && !is_ours_sent) {
            *meaning = "the server requires a client certificate and none was sent";
            return "no_client_cert";
        }
        *meaning = "the server found nothing acceptable in our ClientHello (versions, ciphers, "
                   "groups, signature algorithms) or refused without saying why";
        return "no_shared_cipher";
    case SSL_AD_CERTIFICATE_REQUIRED:
        *meaning = "the server requires a client certificate and none was sent";
        return "no_client_cert";
    case SSL_AD_CERTIFICATE_EXPIRED:
        if (pki_client_cert_dates(c) <= 0 && is_ours_sent) {
            *meaning = "our certificate is within its dates, so the server's CRL is past its "
                       "nextUpdate: the server needs a fresh CRL";
            return "crl_expired";
        }
        *meaning = "our certificate (or one of its chain) has expired";
        return "cert_expired";
    case SSL_AD_BAD_CERTIFICATE:
        if (pki_client_cert_dates(c) < 0) {
            *meaning = "our certificate is not valid yet";
            return "cert_not_yet_valid";
        }
        *meaning = "the server rejected our certificate without naming the check that failed";
        return "tls_error";
    case SSL_AD_UNKNOWN_CA:
        if (c->leaf != NULL && X509_self_signed(c->leaf, 0) == 1) {
            *meaning = "our certificate is self-signed and the server does not trust it";
            return "self_signed";
        }
        *meaning = "the server does not trust the CA that issued our certificate (or found no "
                   "CRL for it); compare with the CA names it accepts";
        return "unknown_ca";
    case SSL_AD_CERTIFICATE_REVOKED:
        *meaning = "our certificate is revoked: it is on the server's CRL";
        return "cert_revoked";
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
        *meaning = "our certificate is not allowed for TLS client authentication (its extended "
                   "key usage lacks clientAuth)";
        return "wrong_purpose";
    case SSL_AD_DECRYPT_ERROR:
        *meaning = "a signature did not verify (a certificate of our chain, or our handshake "
                   "signature)";
        return "bad_signature";
    case SSL_AD_PROTOCOL_VERSION:
    case SSL_AD_INAPPROPRIATE_FALLBACK:
        *meaning = "the server accepts none of the TLS versions we offered";
        return "protocol_version";
    case SSL_AD_INSUFFICIENT_SECURITY:
        *meaning = "the server wants stronger ciphers than we offered";
        return "no_shared_cipher";
    case SSL_AD_UNRECOGNIZED_NAME:
        *meaning = "the server has no certificate for the name we sent as SNI";
        return "unknown_sni";
    default:
        *meaning = "the server ended the handshake with this alert";
        return "tls_error";
    }
}
const char *pki_alert_name(int desc)
{
    /* RFC 8446 §6 and RFC 5246 §7.2; OpenSSL 3.0 names none of the TLS 1.3
     * ones ("certificate required" comes out as "unknown"). */
    static const struct {
        int desc;
        const char *name;
    } names[] = {
        {0, "close_notify"},
        {10, "unexpected_message"},
        {20, "bad_record_mac"},
        {21, "decryption_failed"},
        {22, "record_overflow"},
        {30, "decompression_failure"},
        {40, "handshake_failure"},
        {41, "no_certificate"},
        {42, "bad_certificate"},
        {43, "unsupported_certificate"},
        {44, "certificate_revoked"},
        {45, "certificate_expired"},
        {46, "certificate_unknown"},
        {47, "illegal_parameter"},
        {48, "unknown_ca"},
        {49, "access_denied"},
        {50, "decode_error"},
        {51, "decrypt_error"},
        {60, "export_restriction"},
        {70, "protocol_version"},
        {71, "insufficient_security"},
        {80, "internal_error"},
        {86, "inappropriate_fallback"},
        {90, "user_canceled"},
        {100, "no_renegotiation"},
        {109, "missing_extension"},
        {110, "unsupported_extension"},
        {111, "certificate_unobtainable"},
        {112, "unrecognized_name"},
        {113, "bad_certificate_status_response"},
        {114, "bad_certificate_hash_value"},
        {115, "unknown_psk_identity"},
        {116, "certificate_required"},
        {120, "no_application_protocol"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(names); i++)
        if (names[i].desc == desc)
            return names[i].name;
    return "unknown_alert";
}
