/* tollgate as a TLS client (src/tls/client.c): the context of a target
 * group and the reason code of a failed handshake, over in-memory BIO
 * pairs against servers with certificates minted here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"
#include "unit_x509.h"

#define DAY (24L * 3600)

static char dir[] = "/tmp/tg-test-client-XXXXXX";
static char ca_path[512];

/* An EC key and its certificate. */
struct id {
    EVP_PKEY *key;
    X509 *crt;
};

static struct id root, foreign, good, expired, stranger;
static struct config *cfg;

/* A CA (ca NULL: self-signed, for "CA:TRUE") or a server certificate for
 * localhost and 127.0.0.1 issued by ca, valid from now + from to now + to. */
static struct id mint(const char *cn, const struct id *ca, long from, long to)
{
    struct id n = {.key = EVP_EC_gen("P-256"), .crt = X509_new()};
    assert_non_null(n.key);
    assert_non_null(n.crt);
    static long serial = 100;
    X509 *x = n.crt;
    X509 *signer = ca != NULL ? ca->crt : x;
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++), 1);
    X509_NAME *subject = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(signer));
    X509_gmtime_adj(X509_getm_notBefore(x), from);
    X509_gmtime_adj(X509_getm_notAfter(x), to);
    X509_set_pubkey(x, n.key);
    if (ca == NULL) {
        unit_add_ext(x, signer, NID_basic_constraints, "critical,CA:TRUE");
        unit_add_ext(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        unit_add_ext(x, signer, NID_basic_constraints, "critical,CA:FALSE");
        unit_add_ext(x, signer, NID_ext_key_usage, "serverAuth");
        unit_add_ext(x, signer, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    }
    assert_true(X509_sign(x, ca != NULL ? ca->key : n.key, EVP_sha256()) > 0);
    return n;
}

static const char yaml[] = "client_cas:\n"
                           "  roots: { ca: root.crt }\n"
                           "target_groups:\n"
                           "  checked:\n"
                           "    targets: [ { address: 127.0.0.1:8443 } ]\n"
                           "    tls: { ca: roots, server_name: localhost }\n"
                           "  open:\n"
                           "    targets: [ { address: 127.0.0.1:8443 } ]\n"
                           "    tls: { verify: false }\n"
                           "listeners:\n"
                           "  - { name: web, protocol: http, listen: 127.0.0.1:18080,\n"
                           "      default_target_group: checked }\n";

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL)
        return -1;
    root = mint("Client Test Root", NULL, -DAY, 3650 * DAY);
    foreign = mint("Foreign Root", NULL, -DAY, 3650 * DAY);
    good = mint("localhost", &root, -DAY, 365 * DAY);
    expired = mint("localhost", &root, -30 * DAY, -DAY);
    stranger = mint("localhost", &foreign, -DAY, 365 * DAY);
    snprintf(ca_path, sizeof(ca_path), "%s/root.crt", dir);
    FILE *f = fopen(ca_path, "w");
    if (f == NULL || PEM_write_X509(f, root.crt) != 1)
        return -1;
    fclose(f);
    struct diag d;
    diag_init(&d);
    enum tg_status st = config_load_buffer("t.yaml", dir, yaml, strlen(yaml), &cfg, &d);
    if (st != TG_OK)
        diag_print(&d, stderr);
    diag_fini(&d);
    return st == TG_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    config_free(cfg);
    struct id *const all[] = {&root, &foreign, &good, &expired, &stranger};
    for (size_t i = 0; i < TG_ARRAY_LEN(all); i++) {
        X509_free(all[i]->crt);
        EVP_PKEY_free(all[i]->key);
    }
    unlink(ca_path);
    return rmdir(dir);
}

static const struct cfg_target_group *group(const char *name)
{
    const struct cfg_target_group *g = config_find_target_group(cfg, name);
    assert_non_null(g);
    return g;
}

/* A server context with n's certificate, at most TLS version max (0: any). */
static SSL_CTX *server_ctx(const struct id *n, int max)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, n->crt), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, n->key), 1);
    if (max != 0)
        assert_int_equal(SSL_CTX_set_max_proto_version(ctx, max), 1);
    return ctx;
}

/* One client handshake of group g's context, expecting name, against srv
 * (NULL: against the bytes in `answer`, then EOF). *reason and detail get
 * tls_client_failure's verdict when it fails; the client SSL comes back in
 * *out when not NULL (owned by the caller). True when it succeeded. */
struct run {
    const char *name;
    SSL_CTX *srv;
    const char *answer;
    const char *reason;
    char detail[256];
    SSL *ssl;
};

static bool run(const struct cfg_target_group *g, struct run *r)
{
    char err[256];
    SSL_CTX *ctx = tls_client_ctx_new(cfg, g, err, sizeof(err));
    if (ctx == NULL)
        fail_msg("tls_client_ctx_new: %s", err);
    SSL *cli = SSL_new(ctx);
    assert_non_null(cli);
    SSL_CTX_free(ctx); /* cli keeps a reference */
    assert_true(tls_client_set_peer(cli, r->name, g->tls.verify));
    BIO *cb = NULL, *sb = NULL;
    assert_int_equal(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
    SSL_set_bio(cli, cb, cb);
    SSL_set_connect_state(cli);
    SSL *srv = NULL;
    if (r->srv != NULL) {
        srv = SSL_new(r->srv);
        assert_non_null(srv);
        SSL_set_bio(srv, sb, sb);
        SSL_set_accept_state(srv);
    }
    bool is_ok = false;
    for (int i = 0; i < 16; i++) {
        ERR_clear_error();
        int rc = SSL_do_handshake(cli);
        if (rc == 1) {
            is_ok = true;
            break;
        }
        int e = SSL_get_error(cli, rc);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
            break;
        if (srv != NULL) {
            (void)SSL_do_handshake(srv);
            continue;
        }
        /* No server: take the ClientHello, answer, then end the stream. */
        char hello[4096];
        while (BIO_read(sb, hello, sizeof(hello)) > 0)
            ;
        if (r->answer != NULL)
            assert_int_equal(BIO_write(sb, r->answer, (int)strlen(r->answer)),
                             (int)strlen(r->answer));
        (void)BIO_shutdown_wr(sb);
    }
    /* The server's own failures share this thread's error queue: only
     * the client's last step may speak. */
    if (!is_ok)
        r->reason = tls_client_failure(cli, r->detail, sizeof(r->detail));
    assert_int_equal(ERR_peek_error(), 0);
    SSL_free(srv);
    if (srv == NULL)
        BIO_free(sb);
    r->ssl = cli;
    return is_ok;
}

static void run_free(struct run *r)
{
    SSL_free(r->ssl);
    r->ssl = NULL;
    SSL_CTX_free(r->srv);
    r->srv = NULL;
}

/* The twin of every refusal below: the right certificate for the name. */
static void test_good_certificate_passes(void **state)
{
    (void)state;
    struct run r = {.name = "localhost", .srv = server_ctx(&good, 0)};
    assert_true(run(group("checked"), &r));
    assert_non_null(tls_client_offered_cert(r.ssl));
    run_free(&r);
    struct run by_ip = {.name = "127.0.0.1", .srv = server_ctx(&good, 0)};
    assert_true(run(group("checked"), &by_ip));
    run_free(&by_ip);
}

static void expect_refused(const char *group_name, const char *name, const struct id *server,
                           const char *reason, const char *detail)
{
    struct run r = {.name = name, .srv = server_ctx(server, 0)};
    assert_false(run(group(group_name), &r));
    if (strcmp(r.reason, reason) != 0 || strcmp(r.detail, detail) != 0)
        fail_msg("%s against %s: got %s (%s), want %s (%s)", group_name, name, r.reason, r.detail,
                 reason, detail);
    /* The certificate the log names, although the handshake kept none. */
    X509 *offered = tls_client_offered_cert(r.ssl);
    assert_non_null(offered);
    assert_int_equal(X509_cmp(offered, server->crt), 0);
    run_free(&r);
}

static void test_expired(void **state)
{
    (void)state;
    expect_refused("checked", "localhost", &expired, "cert_expired", "certificate has expired");
}

static void test_wrong_host_name(void **state)
{
    (void)state;
    expect_refused("checked", "other.example", &good, "name_mismatch", "hostname mismatch");
}

static void test_wrong_address(void **state)
{
    (void)state;
    expect_refused("checked", "127.0.0.2", &good, "name_mismatch", "IP address mismatch");
}

static void test_unknown_ca(void **state)
{
    (void)state;
    expect_refused("checked", "localhost", &stranger, "unknown_ca",
                   "unable to get local issuer certificate");
}

/* verify: false takes what the checked group refuses. */
static void test_no_verify_accepts_any(void **state)
{
    (void)state;
    const struct id *const any[] = {&stranger, &expired};
    for (size_t i = 0; i < TG_ARRAY_LEN(any); i++) {
        struct run r = {.name = "other.example", .srv = server_ctx(any[i], 0)};
        assert_true(run(group("open"), &r));
        run_free(&r);
    }
}

/* Without verification the chain's verify result is not the reason of a
 * failure that came later: here the server wants a client certificate
 * (TLS 1.2, so the client learns it in the handshake). */
static void test_no_verify_blames_the_alert_not_the_chain(void **state)
{
    (void)state;
    struct run r = {.name = "localhost", .srv = server_ctx(&stranger, TLS1_2_VERSION)};
    SSL_CTX_set_verify(r.srv, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    assert_false(run(group("open"), &r));
    assert_int_not_equal(SSL_get_verify_result(r.ssl), X509_V_OK);
    assert_string_equal(r.reason, "tls_error");
    assert_non_null(strstr(r.detail, "handshake failure"));
    run_free(&r);
}

/* A server below the TLS 1.2 floor. */
static void test_old_protocol(void **state)
{
    (void)state;
    struct run r = {.name = "localhost", .srv = server_ctx(&good, TLS1_1_VERSION)};
    SSL_CTX_set_security_level(r.srv, 0);
    SSL_CTX_set_min_proto_version(r.srv, TLS1_VERSION);
    assert_false(run(group("checked"), &r));
    assert_string_equal(r.reason, "protocol_version");
    run_free(&r);
}

/* A target that answers in plaintext HTTP. */
static void test_plaintext_answer(void **state)
{
    (void)state;
    struct run r = {.name = "localhost", .answer = "HTTP/1.1 400 Bad Request\r\n\r\n"};
    assert_false(run(group("checked"), &r));
    assert_string_equal(r.reason, "protocol_version");
    assert_non_null(strstr(r.detail, "wrong version number"));
    run_free(&r);
}

/* A target that closes without a word: no OpenSSL error to quote. */
static void test_closed_during_handshake(void **state)
{
    (void)state;
    struct run r = {.name = "localhost"};
    assert_false(run(group("checked"), &r));
    assert_string_equal(r.reason, "tls_error");
    assert_string_equal(r.detail, "closed by the server during the handshake");
    assert_null(tls_client_offered_cert(r.ssl));
    run_free(&r);
}

/* The mapping itself: a verify result decides before the error queue. */
static void test_reason_table(void **state)
{
    (void)state;
    unsigned long version = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_WRONG_VERSION_NUMBER);
    unsigned long alert = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_TLSV1_ALERT_PROTOCOL_VERSION);
    unsigned long cipher = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_NO_SHARED_CIPHER);
    unsigned long failed = ERR_PACK(ERR_LIB_SSL, 0, SSL_R_CERTIFICATE_VERIFY_FAILED);
    unsigned long sys = ERR_PACK(ERR_LIB_SYS, 0, 104);
    const struct {
        long v;
        unsigned long err;
        const char *reason;
    } cases[] = {
        {X509_V_ERR_HOSTNAME_MISMATCH, 0, "name_mismatch"},
        {X509_V_ERR_IP_ADDRESS_MISMATCH, 0, "name_mismatch"},
        {X509_V_ERR_CERT_HAS_EXPIRED, 0, "cert_expired"},
        {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 0, "unknown_ca"},
        {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, 0, "self_signed"},
        {X509_V_ERR_CERT_REVOKED, 0, "cert_revoked"},
        {X509_V_ERR_CA_MD_TOO_WEAK, 0, "bad_signature"},
        {X509_V_ERR_UNSPECIFIED, 0, "tls_error"},
        {X509_V_OK, 0, "tls_error"},
        {X509_V_OK, failed, "tls_error"},
        {X509_V_OK, sys, "tls_error"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(cases); i++) {
        const char *got = tls_client_reason(cases[i].v, cases[i].err);
        if (strcmp(got, cases[i].reason) != 0)
            fail_msg("case %zu (%ld, %lx): got %s, want %s", i, cases[i].v, cases[i].err, got,
                     cases[i].reason);
    }
    assert_string_equal(tls_client_reason(X509_V_OK, version), "protocol_version");
    assert_string_equal(tls_client_reason(X509_V_OK, alert), "protocol_version");
    assert_string_equal(tls_client_reason(X509_V_OK, cipher), "no_shared_cipher");
    /* The certificate check is named, not the protocol error after it. */
    assert_string_equal(tls_client_reason(X509_V_ERR_CERT_HAS_EXPIRED, version), "cert_expired");
    assert_string_equal(tls_client_reason(X509_V_ERR_HOSTNAME_MISMATCH, cipher), "name_mismatch");
    /* Every verify reason is tls_reason_from_verify's. */
    for (int v = 1; v < 100; v++) {
        if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
            continue;
        assert_string_equal(tls_client_reason(v, 0), tls_reason_from_verify(v));
    }
}

/* The context's settings; its twin, a CA file that no longer loads. */
static void test_ctx_settings(void **state)
{
    (void)state;
    char err[256];
    SSL_CTX *ctx = tls_client_ctx_new(cfg, group("checked"), err, sizeof(err));
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_PEER);
    assert_int_equal(X509_VERIFY_PARAM_get_auth_level(SSL_CTX_get0_param(ctx)),
                     TLS_VERIFY_AUTH_LEVEL);
    uint64_t opts = SSL_CTX_get_options(ctx);
    assert_true((opts & SSL_OP_NO_RENEGOTIATION) != 0);
    assert_true((opts & SSL_OP_NO_COMPRESSION) != 0);
    SSL_CTX_free(ctx);
    ctx = tls_client_ctx_new(cfg, group("open"), err, sizeof(err));
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_get_verify_mode(ctx), SSL_VERIFY_NONE);
    assert_int_equal(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION);
    SSL_CTX_free(ctx);

    FILE *f = fopen(ca_path, "w");
    assert_non_null(f);
    fputs("not a certificate\n", f);
    fclose(f);
    ctx = tls_client_ctx_new(cfg, group("checked"), err, sizeof(err));
    assert_null(ctx);
    assert_non_null(strstr(err, "ca roots: "));
    assert_int_equal(ERR_peek_error(), 0);
    f = fopen(ca_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, root.crt), 1);
    fclose(f);
    ctx = tls_client_ctx_new(cfg, group("checked"), err, sizeof(err));
    assert_non_null(ctx);
    SSL_CTX_free(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_certificate_passes),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_wrong_host_name),
        cmocka_unit_test(test_wrong_address),
        cmocka_unit_test(test_unknown_ca),
        cmocka_unit_test(test_no_verify_accepts_any),
        cmocka_unit_test(test_no_verify_blames_the_alert_not_the_chain),
        cmocka_unit_test(test_old_protocol),
        cmocka_unit_test(test_plaintext_answer),
        cmocka_unit_test(test_closed_during_handshake),
        cmocka_unit_test(test_reason_table),
        cmocka_unit_test(test_ctx_settings),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
