/*
 * tollgate probe: the client side of a TLS handshake, step by step. A CLI,
 * so blocking waits are fine, but every one is bounded: connect, handshake
 * and the post-handshake read (RFC 8446 §4.4.2: a TLS 1.3 server judges
 * the client's certificate after the client considers the handshake done,
 * so a refusal only shows up on the first read).
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

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

#define PROBE_GROUPS       "X25519:P-256:X448:P-521:P-384"
#define PROBE_FIRST_BYTES  48
#define PROBE_HOST_MAX     256
#define PROBE_CONNECT_MS   3000
#define PROBE_HANDSHAKE_MS 5000
#define PROBE_READ_MS      1000

/* Everything learned during one probe; filled by the callbacks. */
struct probe {
    const struct pki_probe_opts *o;
    json_t *steps;        /* owned: [{"dir", "message", "detail"}] */
    STACK_OF(X509) *peer; /* owned: the server's chain as received */
    json_t *ca_names;     /* owned: names from the CertificateRequest, or NULL */
    bool saw_cert_request;
    bool saw_server_hello;
    int n_sent;     /* certificates in our Certificate message; -1: none sent */
    int alert_read; /* (level << 8) | description; -1: none */
    unsigned char first[PROBE_FIRST_BYTES]; /* the server's first bytes */
    size_t n_first;
    size_t n_read; /* bytes received in all */
};

static void step(struct probe *p, const char *dir, const char *message, const char *detail)
{
    json_t *s = json_object();
    pki_json_set_str(s, "dir", dir);
    pki_json_set_str(s, "message", message);
    pki_json_set_str(s, "detail", detail);
    json_array_append_new(p->steps, s);
}

static const char *handshake_name(unsigned type, const unsigned char *msg, size_t len)
{
    /* RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello with this random. */
    static const unsigned char hrr[32] = {
        0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c,
        0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb,
        0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
    };
    switch (type) {
    case SSL3_MT_CLIENT_HELLO:
        return "ClientHello";
    case SSL3_MT_SERVER_HELLO:
        return len >= 38 && memcmp(msg + 6, hrr, 32) == 0 ? "HelloRetryRequest" : "ServerHello";
    case SSL3_MT_NEWSESSION_TICKET:
        return "NewSessionTicket";
    case SSL3_MT_ENCRYPTED_EXTENSIONS:
        return "EncryptedExtensions";
    case SSL3_MT_CERTIFICATE:
        return "Certificate";
    case SSL3_MT_CERTIFICATE_STATUS:
        return "CertificateStatus";
    case SSL3_MT_SERVER_KEY_EXCHANGE:
        return "ServerKeyExchange";
    case SSL3_MT_CERTIFICATE_REQUEST:
        return "CertificateRequest";
    case SSL3_MT_SERVER_DONE:
        return "ServerHelloDone";
    case SSL3_MT_CERTIFICATE_VERIFY:
        return "CertificateVerify";
    case SSL3_MT_CLIENT_KEY_EXCHANGE:
        return "ClientKeyExchange";
    case SSL3_MT_FINISHED:
        return "Finished";
    case SSL3_MT_KEY_UPDATE:
        return "KeyUpdate";
    default:
        return "(other handshake message)";
    }
}

static size_t get24(const unsigned char *b)
{
    return (size_t)b[0] << 16 | (size_t)b[1] << 8 | b[2];
}

/* The number of certificates in a Certificate message (RFC 8446 §4.4.2,
 * RFC 5246 §7.4.2), or -1 when it does not parse. */
static int count_certs(const unsigned char *m, size_t len, bool is_tls13)
{
    size_t off = 4;
    if (is_tls13) {
        if (len < off + 1)
            return -1;
        off += 1 + m[off];
    }
    if (len < off + 3)
        return -1;
    size_t end = off + 3 + get24(m + off);
    off += 3;
    if (end > len)
        return -1;
    int n = 0;
    while (off + 3 <= end) {
        off += 3 + get24(m + off);
        if (is_tls13 && off + 2 <= end)
            off += 2 + ((size_t)m[off] << 8 | m[off + 1]);
        if (off > end)
            return -1;
        n++;
    }
    return n;
}

static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    struct probe *p = arg;
    const unsigned char *m = buf;
    char detail[128] = "";
    (void)version;
    if (content_type != SSL3_RT_HANDSHAKE || len < 4)
        return;
    const char *name = handshake_name(m[0], m, len);
    if (m[0] == SSL3_MT_SERVER_HELLO && !write_p)
        p->saw_server_hello = true;
    if (m[0] == SSL3_MT_CERTIFICATE) {
        int n = count_certs(m, len, SSL_version(ssl) == TLS1_3_VERSION);
        if (write_p)
            p->n_sent = n < 0 ? 0 : n;
        if (n == 0)
            snprintf(detail, sizeof(detail), "empty: no certificate");
        else if (n > 0)
            snprintf(detail, sizeof(detail), "%d certificate%s", n, n == 1 ? "" : "s");
    }
    step(p, write_p ? ">" : "<", name, detail[0] ? detail : NULL);
}

static void alert_name(int desc, char *dst, size_t dst_len)
{
    snprintf(dst, dst_len, "%s", pki_alert_name(desc));
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    struct probe *p = SSL_get_app_data(ssl);
    if (p == NULL || !(where & SSL_CB_ALERT))
        return;
    char detail[160];
    char name[64];
    alert_name(ret & 0xff, name, sizeof(name));
    snprintf(detail, sizeof(detail), "%s %s (%d)", SSL_alert_type_string_long(ret), name,
             ret & 0xff);
    if ((where & SSL_CB_READ) && (p->alert_read < 0 || (p->alert_read >> 8) != SSL3_AL_FATAL))
        p->alert_read = ret;
    step(p, (where & SSL_CB_READ) ? "<" : ">", "Alert", detail);
}

/* Keeps the chain the server sent; our own checks come later, so that the
 * handshake goes on to show whether the server accepts us. */
static int verify_cb(int ok, X509_STORE_CTX *xs)
{
    (void)ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct probe *p = ssl ? SSL_get_app_data(ssl) : NULL;
    STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(xs);
    if (p != NULL && p->peer == NULL && sent != NULL) {
        p->peer = sk_X509_dup(sent);
        for (int i = 0; p->peer != NULL && i < sk_X509_num(p->peer); i++)
            X509_up_ref(sk_X509_value(p->peer, i));
    }
    return 1;
}

/* Called when the server asks for our certificate (CertificateRequest). */
static int cert_cb(SSL *ssl, void *arg)
{
    struct probe *p = arg;
    if (p->saw_cert_request)
        return 1;
    p->saw_cert_request = true;
    const STACK_OF(X509_NAME) *names = SSL_get0_peer_CA_list(ssl);
    if (names == NULL)
        names = SSL_get_client_CA_list(ssl);
    p->ca_names = json_array();
    for (int i = 0; p->ca_names != NULL && i < sk_X509_NAME_num(names); i++) {
        char name[PKI_NAME_MAX];
        tls_name_format(sk_X509_NAME_value(names, i), name, sizeof(name));
        json_array_append_new(p->ca_names, pki_json_str(name));
    }
    return 1;
}

/* Records the server's first bytes, to tell a non-TLS answer apart. */
static long bio_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
                   size_t *processed)
{
    struct probe *p = (struct probe *)BIO_get_callback_arg(b);
    (void)len;
    (void)argi;
    (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN) && ret > 0 && processed != NULL && p != NULL) {
        size_t n = *processed;
        size_t room = sizeof(p->first) - p->n_first;
        memcpy(p->first + p->n_first, argp, n < room ? n : room);
        p->n_first += n < room ? n : room;
        p->n_read += n;
    }
    return ret;
}

static void set_outcome(json_t *res, bool is_accepted, const char *stage, const char *reason,
                        const char *alert, const char *meaning)
{
    json_t *o = json_object();
    json_object_set_new(o, "accepted", json_boolean(is_accepted));
    pki_json_set_str(o, "stage", stage);
    pki_json_set_str(o, "reason", reason);
    pki_json_set_str(o, "alert", alert);
    pki_json_set_str(o, "meaning", meaning);
    json_object_set_new(res, "outcome", o);
}

static SSL_CTX *client_ctx(const struct pki_probe_opts *o, struct probe *p,
                           struct pki_client_cert *c)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return NULL;
    bool is_ok =
        SSL_CTX_set_min_proto_version(ctx, o->min_version ? o->min_version : TLS1_2_VERSION) == 1 &&
        SSL_CTX_set_max_proto_version(ctx, o->max_version) == 1 &&
        SSL_CTX_set1_groups_list(ctx, PROBE_GROUPS) == 1;
    if (is_ok && c->leaf != NULL)
        is_ok = SSL_CTX_use_cert_and_key(ctx, c->leaf, c->key, c->chain, 1) == 1;
    if (!is_ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
    SSL_CTX_set_msg_callback(ctx, msg_cb);
    SSL_CTX_set_msg_callback_arg(ctx, p);
    SSL_CTX_set_info_callback(ctx, info_cb);
    return ctx;
}

static bool looks_like_tls(const unsigned char *b, size_t n)
{
    /* A record: content type 20..24, then version major 3 (RFC 8446 §5.1). */
    return n >= 2 && b[0] >= 20 && b[0] <= 24 && b[1] == 3;
}

enum hs_result { HS_DONE, HS_TIMEOUT, HS_FAILED };

/* Drives SSL_connect (or, with is_read, one SSL_read) until done, failed
 * or the deadline passes. *n gets the bytes read. */
static enum hs_result drive(SSL *ssl, int fd, int64_t deadline, bool is_read, int *ssl_err,
                            size_t *n)
{
    unsigned char buf[4096];
    for (;;) {
        ERR_clear_error();
        int r = is_read ? SSL_read(ssl, buf, sizeof(buf)) : SSL_connect(ssl);
        if (r > 0) {
            *n = is_read ? (size_t)r : 0;
            return HS_DONE;
        }
        int e = SSL_get_error(ssl, r);
        *ssl_err = e;
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            return HS_FAILED;
        int w = pki_wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (w == 0)
            return HS_TIMEOUT;
        if (w < 0)
            return HS_FAILED;
    }
}

/* OpenSSL stops at the first record header that is not TLS; a few more of
 * the server's bytes make its banner readable ("SSH-2.0-...", "HTTP/1.1"). */
static void more_bytes(struct probe *p, int fd)
{
    int64_t deadline = pki_now_ms() + 200;
    while (p->n_first < sizeof(p->first) && pki_wait_fd(fd, POLLIN, deadline) > 0) {
        ssize_t n = recv(fd, p->first + p->n_first, sizeof(p->first) - p->n_first, 0);
        if (n <= 0)
            return;
        p->n_first += (size_t)n;
    }
}

/* Why the handshake failed, as an outcome. */
static void handshake_failed(struct probe *p, const struct pki_client_cert *c, SSL *ssl, int fd,
                             enum hs_result hr, int timeout_ms, json_t *res)
{
    char meaning[700];
    char text[200];
    char alert[64];
    const char *m = NULL;
    if (p->alert_read >= 0 && (p->alert_read >> 8) == SSL3_AL_FATAL) {
        int desc = p->alert_read & 0xff;
        const char *reason = pki_alert_reason(p->saw_cert_request, p->n_sent, c, desc, &m);
        alert_name(desc, alert, sizeof(alert));
        snprintf(meaning, sizeof(meaning), "refused by the server with alert %s (%d): %s", alert,
                 desc, m);
        set_outcome(res, false, "handshake", reason, alert, meaning);
        return;
    }
    if (p->n_first > 0 && !looks_like_tls(p->first, p->n_first)) {
        more_bytes(p, fd);
        pki_sanitize(p->first, p->n_first, text, sizeof(text));
        bool is_http = p->n_first >= 5 && memcmp(p->first, "HTTP/", 5) == 0;
        snprintf(meaning, sizeof(meaning),
                 "the server answered with something that is not TLS: \"%s\"%s", text,
                 is_http ? "; this port speaks plain HTTP" : "; is this the right port?");
        set_outcome(res, false, "handshake", "not_tls", NULL, meaning);
        return;
    }
    if (hr == HS_TIMEOUT) {
        if (p->n_read == 0)
            snprintf(meaning, sizeof(meaning),
                     "the server accepted the TCP connection but did not answer the ClientHello "
                     "within %d ms: it probably does not speak TLS on this port",
                     timeout_ms);
        else
            snprintf(meaning, sizeof(meaning), "the handshake did not finish within %d ms",
                     timeout_ms);
        set_outcome(res, false, "handshake", "handshake_timeout", NULL, meaning);
        return;
    }
    if (p->n_read == 0) {
        snprintf(meaning, sizeof(meaning),
                 "the server closed the connection without answering the ClientHello: it may "
                 "not speak TLS on this port, or it turns connections away (limits, rules)");
        set_outcome(res, false, "handshake", "tls_error", NULL, meaning);
        return;
    }
    const char *reason = tls_reason_from_handshake(ssl, NULL, text, sizeof(text));
    if (text[0] == '\0')
        snprintf(meaning, sizeof(meaning),
                 "the server closed the connection during the handshake without an alert");
    else
        snprintf(meaning, sizeof(meaning), "the handshake failed on our side: %s", text);
    set_outcome(res, false, "handshake", reason, NULL, meaning);
}

/* After a completed handshake: TLS 1.3 servers refuse a client certificate
 * now, so wait briefly for an alert; silence means accepted. */
static void after_handshake(struct probe *p, const struct pki_client_cert *c, SSL *ssl, int fd,
                            const struct pki_probe_opts *o, json_t *res)
{
    char meaning[600];
    char alert[64];
    const char *m = NULL;
    int read_ms = o->read_timeout_ms > 0 ? o->read_timeout_ms : PROBE_READ_MS;
    const char *who = p->n_sent > 0 ? "the server accepted the connection and our certificate"
                                    : "the server accepted the connection";
    if (SSL_version(ssl) != TLS1_3_VERSION) {
        set_outcome(res, true, "done", NULL, NULL, who);
        return;
    }
    int ssl_err = 0;
    size_t n = 0;
    enum hs_result r = drive(ssl, fd, pki_now_ms() + read_ms, true, &ssl_err, &n);
    if (r == HS_TIMEOUT) {
        snprintf(meaning, sizeof(meaning), "%s (no refusal within %d ms after the handshake)", who,
                 read_ms);
        set_outcome(res, true, "done", NULL, NULL, meaning);
    } else if (r == HS_DONE) {
        snprintf(meaning, sizeof(meaning), "%s; it sent %zu bytes of data first", who, n);
        set_outcome(res, true, "done", NULL, NULL, meaning);
    } else if (p->alert_read >= 0 && (p->alert_read >> 8) == SSL3_AL_FATAL) {
        int desc = p->alert_read & 0xff;
        const char *reason = pki_alert_reason(p->saw_cert_request, p->n_sent, c, desc, &m);
        alert_name(desc, alert, sizeof(alert));
        snprintf(meaning, sizeof(meaning),
                 "refused by the server after the handshake with alert %s (%d): %s", alert, desc,
                 m);
        set_outcome(res, false, "after_handshake", reason, alert, meaning);
    } else if (ssl_err == SSL_ERROR_ZERO_RETURN) {
        snprintf(meaning, sizeof(meaning),
                 "%s, then closed it at once (close_notify): nothing behind it took the "
                 "connection (no healthy backend?)",
                 who);
        set_outcome(res, true, "done", NULL, NULL, meaning);
    } else {
        snprintf(meaning, sizeof(meaning),
                 "the server closed the connection right after the handshake without an alert");
        set_outcome(res, false, "after_handshake", "tls_error", NULL, meaning);
    }
    ERR_clear_error();
}

static const char *version_name(int v)
{
    return v == TLS1_3_VERSION ? "TLSv1.3" : v == TLS1_2_VERSION ? "TLSv1.2" : "TLSv1.1-";
}

static json_t *client_hello_json(const struct pki_probe_opts *o, const char *sni,
                                 const struct pki_client_cert *c)
{
    json_t *h = json_object();
    json_t *versions = json_array();
    int lo = o->min_version ? o->min_version : TLS1_2_VERSION;
    int hi = o->max_version ? o->max_version : TLS1_3_VERSION;
    for (int v = hi; v >= lo && v >= TLS1_2_VERSION; v--)
        json_array_append_new(versions, json_string(version_name(v)));
    json_object_set_new(h, "versions", versions);
    json_object_set_new(h, "groups",
                        json_pack("[sssss]", "X25519", "P-256", "X448", "P-521", "P-384"));
    pki_json_set_str(h, "key_share", hi == TLS1_3_VERSION ? "X25519" : NULL);
    pki_json_set_str(h, "sni", sni);
    char subj[PKI_NAME_MAX];
    if (c->leaf != NULL)
        pki_subject(c->leaf, subj, sizeof(subj));
    pki_json_set_str(h, "client_certificate", c->leaf ? subj : NULL);
    return h;
}

/* Sets the detail of the first step with this direction and message. */
static void step_detail(json_t *steps, const char *dir, const char *message, const char *detail)
{
    size_t i;
    json_t *s;
    json_array_foreach(steps, i, s)
    {
        if (strcmp(pki_json_get_str(s, "dir", ""), dir) == 0 &&
            strcmp(pki_json_get_str(s, "message", ""), message) == 0) {
            pki_json_set_str(s, "detail", detail);
            return;
        }
    }
}

static json_t *server_hello_json(SSL *ssl, char *summary, size_t summary_len)
{
    json_t *h = json_object();
    const char *cipher = SSL_get_cipher_name(ssl);
    int nid = SSL_get_negotiated_group(ssl);
    const char *group = nid > 0 ? SSL_group_to_name(ssl, nid) : NULL;
    pki_json_set_str(h, "version", SSL_get_version(ssl));
    pki_json_set_str(h, "cipher", cipher);
    pki_json_set_str(h, "group", group);
    snprintf(summary, summary_len, "%s, %s, group %s", SSL_get_version(ssl),
             cipher ? cipher : "(none)", group ? group : "(none)");
    return h;
}

/* Whether a certificate of ours was issued by (or is) one of the CA names
 * the server listed: if not, the server is likely to refuse it. */
static json_t *issuer_listed(const struct pki_client_cert *c, const json_t *ca_names)
{
    if (c->leaf == NULL || json_array_size(ca_names) == 0)
        return json_null();
    for (int i = -1; i < sk_X509_num(c->chain); i++) {
        X509 *x = i < 0 ? c->leaf : sk_X509_value(c->chain, i);
        char issuer[PKI_NAME_MAX];
        char subject[PKI_NAME_MAX];
        size_t j;
        const json_t *n;
        pki_issuer(x, issuer, sizeof(issuer));
        pki_subject(x, subject, sizeof(subject));
        json_array_foreach(ca_names, j, n)
        {
            const char *s = json_string_value(n);
            if (s && (strcmp(s, issuer) == 0 || (i >= 0 && strcmp(s, subject) == 0)))
                return json_true();
        }
    }
    return json_false();
}

/* Everything after the wire: the server's chain and our checks on it, what
 * happened to our certificate, the final verdict. */
static void finish(struct probe *p, const struct pki_client_cert *c, SSL *ssl, bool is_done,
                   const struct pki_check_opts *co, json_t *res)
{
    char text[800];
    time_t now = time(NULL);
    const json_t *outcome = json_object_get(res, "outcome");
    bool is_accepted = json_is_true(json_object_get(outcome, "accepted"));

    const json_t *hello = json_object_get(res, "client_hello");
    char versions[64];
    char groups[128];
    pki_json_join(json_object_get(hello, "versions"), ", ", versions, sizeof(versions));
    pki_json_join(json_object_get(hello, "groups"), ", ", groups, sizeof(groups));
    snprintf(text, sizeof(text), "versions %s; groups %s; SNI %s", versions, groups,
             pki_json_get_str(hello, "sni", "(none: the host is an IP address)"));
    step_detail(p->steps, ">", "ClientHello", text);

    if (p->saw_server_hello && ssl != NULL) {
        json_object_set_new(res, "server_hello", server_hello_json(ssl, text, sizeof(text)));
        step_detail(p->steps, "<", "ServerHello", text);
    } else {
        json_object_set_new(res, "server_hello", json_null());
    }

    json_t *chain = json_array();
    for (int i = 0; i < sk_X509_num(p->peer); i++)
        json_array_append_new(chain, pki_cert_brief(sk_X509_value(p->peer, i), now));
    json_object_set_new(res, "server_chain", chain);
    json_t *checks = json_array();
    const char *reason = NULL;
    X509 *leaf = sk_X509_num(p->peer) > 0 ? sk_X509_value(p->peer, 0) : NULL;
    bool are_checks_ok = pki_check_chain(leaf, p->peer, co, checks, NULL, &reason);
    json_object_set_new(res, "checks", checks);
    pki_json_set_str(res, "checks_reason", reason);

    json_t *req = json_object();
    json_object_set_new(req, "seen", json_boolean(p->saw_cert_request));
    json_object_set_new(req, "ca_names", p->ca_names ? json_incref(p->ca_names) : json_array());
    json_object_set_new(res, "certificate_request", req);
    if (p->saw_cert_request) {
        size_t n = json_array_size(p->ca_names);
        snprintf(text, sizeof(text), "the server asks for a client certificate; %zu CA name%s", n,
                 n == 1 ? "" : "s");
        step_detail(p->steps, "<", "CertificateRequest", text);
    }

    json_t *mine = json_object();
    json_object_set_new(mine, "configured", json_boolean(c->leaf != NULL));
    char subj[PKI_NAME_MAX];
    if (c->leaf != NULL)
        pki_subject(c->leaf, subj, sizeof(subj));
    pki_json_set_str(mine, "subject", c->leaf ? subj : NULL);
    json_object_set_new(mine, "requested", json_boolean(p->saw_cert_request));
    json_object_set_new(mine, "sent", json_boolean(p->n_sent > 0));
    json_object_set_new(mine, "certificates_sent", json_integer(p->n_sent > 0 ? p->n_sent : 0));
    json_object_set_new(mine, "issuer_listed", issuer_listed(c, p->ca_names));
    json_object_set_new(mine, "accepted", p->n_sent > 0 ? json_boolean(is_accepted) : json_null());
    json_object_set_new(res, "client_certificate", mine);
    if (p->n_sent > 0)
        snprintf(text, sizeof(text), "%d certificate%s: %s", p->n_sent, p->n_sent == 1 ? "" : "s",
                 subj);
    else if (p->n_sent == 0 && c->leaf == NULL)
        snprintf(text, sizeof(text), "empty: we have no certificate (give --cert and --key)");
    else
        snprintf(text, sizeof(text),
                 "empty: our certificate does not suit the server's request (signature "
                 "algorithms)");
    step_detail(p->steps, ">", "Certificate", text);
    /* A staple only counts once the handshake is done: before that
     * OpenSSL may hold a response it has not matched to anything. */
    json_t *ocsp = pki_probe_ocsp(is_done ? ssl : NULL, p->peer, co->trust, now);
    bool is_staple_ok = strcmp(pki_json_get_str(ocsp, "verdict", ""), "fail") != 0;
    json_object_set_new(res, "ocsp_staple", ocsp);
    json_object_set_new(res, "ok", json_boolean(is_accepted && are_checks_ok && is_staple_ok));
}

static void free_probe(struct probe *p)
{
    json_decref(p->steps);
    json_decref(p->ca_names);
    sk_X509_pop_free(p->peer, X509_free);
}

enum tg_status pki_probe(const struct pki_probe_opts *o, json_t **out, char *err, size_t err_len)
{
    struct probe p = {.o = o, .n_sent = -1, .alert_read = -1};
    struct pki_client_cert c = {0};
    char host[PROBE_HOST_MAX];
    char port[8];
    char label[600];
    char why[1024];
    X509_STORE *trust = NULL;
    STACK_OF(X509_CRL) *crls = NULL;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int fd = -1;
    bool is_done = false; /* the handshake completed */
    json_t *res = NULL;
    enum tg_status st = TG_E_CONFIG;
    *out = NULL;
    if (!pki_split_target(o->target, host, sizeof(host), port, sizeof(port))) {
        snprintf(err, err_len, "\"%s\": give HOST:PORT, e.g. localhost:8443 or [::1]:8443",
                 o->target);
        goto out;
    }
    if (pki_trust_store(o->ca, &trust, label, sizeof(label), why, sizeof(why)) != TG_OK) {
        snprintf(err, err_len, "--ca: %s", why);
        goto out;
    }
    if (o->n_crls > 0 && pki_read_crls(o->crls, o->n_crls, &crls, why, sizeof(why)) != TG_OK) {
        snprintf(err, err_len, "--crl: %s", why);
        goto out;
    }
    if (o->cert == NULL && o->key != NULL) {
        snprintf(err, err_len, "--key needs --cert");
        goto out;
    }
    if (o->cert != NULL && pki_client_cert_load(o, &c, err, err_len) != TG_OK)
        goto out;
    st = TG_E_NOMEM;
    res = json_object();
    p.steps = json_array();
    ctx = client_ctx(o, &p, &c);
    if (res == NULL || p.steps == NULL || ctx == NULL) {
        snprintf(err, err_len, "cannot set up a TLS client (out of memory)");
        goto out;
    }
    const char *sni = o->sni ? o->sni : net_is_ip_literal(host) ? NULL : host;
    pki_json_set_str(res, "target", o->target);
    pki_json_set_str(res, "sni", sni);
    json_object_set_new(res, "client_hello", client_hello_json(o, sni, &c));
    char addr[INET6_ADDRSTRLEN + 16];
    char msg[600];
    const char *reason = NULL;
    int connect_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : PROBE_CONNECT_MS;
    fd = pki_connect(host, port, connect_ms, addr, sizeof(addr), &reason, msg, sizeof(msg));
    pki_json_set_str(res, "address", addr);
    step(&p, "-", reason && strcmp(reason, "resolve_failed") == 0 ? "DNS" : "TCP connect", msg);
    if (fd < 0)
        set_outcome(res, false, strcmp(reason, "resolve_failed") == 0 ? "resolve" : "connect",
                    reason, NULL, msg);
    if (fd >= 0) {
        BIO *bio = BIO_new_socket(fd, BIO_NOCLOSE);
        ssl = SSL_new(ctx);
        if (bio == NULL || ssl == NULL || (sni != NULL && !SSL_set_tlsext_host_name(ssl, sni))) {
            BIO_free(bio);
            snprintf(err, err_len, "cannot set up a TLS client (out of memory)");
            goto out;
        }
        BIO_set_callback_ex(bio, bio_cb);
        BIO_set_callback_arg(bio, (char *)&p);
        SSL_set_bio(ssl, bio, bio);
        SSL_set_app_data(ssl, &p);
        /* RFC 6066 §8: ask for the certificate status, to report the staple. */
        SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp);
        SSL_set_cert_cb(ssl, cert_cb, &p);
        int timeout = o->handshake_timeout_ms > 0 ? o->handshake_timeout_ms : PROBE_HANDSHAKE_MS;
        int ssl_err = 0;
        size_t n = 0;
        enum hs_result hr = drive(ssl, fd, pki_now_ms() + timeout, false, &ssl_err, &n);
        is_done = hr == HS_DONE;
        if (hr == HS_DONE)
            after_handshake(&p, &c, ssl, fd, o, res);
        else
            handshake_failed(&p, &c, ssl, fd, hr, timeout, res);
        if (hr == HS_DONE)
            (void)SSL_shutdown(ssl); /* close_notify, best effort */
    }
    struct pki_check_opts co = {
        .trust = trust,
        .trust_label = label,
        .crls = crls,
        .name = o->sni ? o->sni : host,
        .name_flag = "--sni",
        .purpose = X509_PURPOSE_SSL_SERVER,
    };
    finish(&p, &c, ssl, is_done, &co, res);
    json_object_set(res, "steps", p.steps);
    *out = res;
    res = NULL;
    st = TG_OK;
out:
    json_decref(res);
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    SSL_CTX_free(ctx);
    free_probe(&p);
    pki_client_cert_fini(&c);
    sk_X509_CRL_pop_free(crls, X509_CRL_free);
    X509_STORE_free(trust);
    ERR_clear_error();
    return st;
}
