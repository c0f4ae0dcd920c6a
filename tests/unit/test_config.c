/* The config loader: values and defaults, and the exact text and position
 * of every class of diagnostic. The files a config names are created empty
 * in a temporary directory (their content is the TLS module's business). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "net/net.h"

static char dir[] = "/tmp/tg-test-config-XXXXXX";

static const char *const files[] = {
    "pki/server-ecdsa.crt", "pki/server-ecdsa.key", "pki/server-rsa.crt", "pki/server-rsa.key",
    "pki/root.crt",         "pki/clients.crl",      "pki/password.txt",   "pki/admin.token"};

/* A path under dir in one of 16 rotating buffers. */
static const char *path_of(const char *name)
{
    static char paths[16][512];
    static int next;
    char *p = paths[next++ % 16];
    snprintf(p, sizeof(paths[0]), "%s/%s", dir, name);
    return p;
}

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(path_of(name), "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL || mkdir(path_of("pki"), 0700) != 0)
        return -1;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        write_file(files[i], "content is not checked here\n");
    write_file("pki/admin.token", "unit-test-admin-token-0123456789\n");
    if (chmod(path_of("pki/admin.token"), 0600) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        unlink(path_of(files[i]));
    unlink(path_of("tollgate.yaml"));
    rmdir(path_of("pki"));
    rmdir(dir);
    return 0;
}

/* Loads yaml as "t.yaml" from dir; prints every diagnostic on failure. */
static struct config *load_ok(const char *yaml, size_t n_warnings)
{
    struct diag d;
    struct config *cfg = NULL;
    diag_init(&d);
    enum tg_status st = config_load_buffer("t.yaml", dir, yaml, strlen(yaml), &cfg, &d);
    if (st != TG_OK || d.n != n_warnings)
        diag_print(&d, stderr);
    assert_int_equal(st, TG_OK);
    assert_non_null(cfg);
    assert_int_equal(d.n_errors, 0);
    assert_int_equal(d.n_warnings, n_warnings);
    diag_fini(&d);
    return cfg;
}

/* Loads yaml expecting exactly the diagnostics want, in this order. */
static void expect_diags(const char *yaml, const char *const *want, size_t n, bool is_ok)
{
    struct diag d;
    struct config *cfg = NULL;
    char line[2048];
    diag_init(&d);
    enum tg_status st = config_load_buffer("t.yaml", dir, yaml, strlen(yaml), &cfg, &d);
    bool is_same = d.n == n && (st == TG_OK) == is_ok && (cfg != NULL) == is_ok;
    for (size_t i = 0; i < d.n && i < n; i++) {
        diag_format(&d, i, line, sizeof(line));
        is_same = is_same && strcmp(line, want[i]) == 0;
    }
    if (!is_same) {
        fprintf(stderr, "status %d, got:\n", st);
        diag_print(&d, stderr);
        fprintf(stderr, "want:\n");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "%s\n", want[i]);
    }
    config_free(cfg);
    diag_fini(&d);
    assert_true(is_same);
}

#define EXPECT_ERRORS(yaml, ...)                                                                   \
    do {                                                                                           \
        const char *const want_[] = {__VA_ARGS__};                                                 \
        expect_diags(yaml, want_, sizeof(want_) / sizeof(want_[0]), false);                        \
    } while (0)

#define EXPECT_WARNINGS(yaml, ...)                                                                 \
    do {                                                                                           \
        const char *const want_[] = {__VA_ARGS__};                                                 \
        expect_diags(yaml, want_, sizeof(want_) / sizeof(want_[0]), true);                         \
    } while (0)

/* Six lines of valid sections; listeners start at line 7. */
#define BASE                                                                                       \
    "certificates:\n"                                                                              \
    "  site: { cert: pki/server-ecdsa.crt, key: pki/server-ecdsa.key }\n"                          \
    "client_cas:\n"                                                                                \
    "  partners: { ca: pki/root.crt }\n"                                                           \
    "target_groups:\n"                                                                             \
    "  web: { targets: [ { address: 127.0.0.1:8080 } ] }\n"

/* A valid https listener at lines 7-12 ("tls" at 11:5, its map at 11:10). */
#define HTTPS                                                                                      \
    "listeners:\n"                                                                                 \
    "  - name: api\n"                                                                              \
    "    protocol: https\n"                                                                        \
    "    listen: 127.0.0.1:18443\n"                                                                \
    "    tls: { certificates: [site] }\n"                                                          \
    "    default_target_group: web\n"

/* A file of $TG_TEST_DATA/config (set by ctest); owned by the caller.
 * design.yaml is the example of DESIGN.md, comments included, and
 * design_flow.yaml the same configuration in flow style. */
static char *read_data(const char *name)
{
    const char *base = getenv("TG_TEST_DATA");
    char path[512];
    snprintf(path, sizeof(path), "%s/config/%s", base ? base : "tests/unit/data", name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s (set TG_TEST_DATA to tests/unit/data)", path);
    char *text = calloc(1, 65536);
    assert_non_null(text);
    size_t n = fread(text, 1, 65535, f);
    fclose(f);
    text[n] = '\0';
    return text;
}

static void check_design(const struct config *cfg)
{
    assert_int_equal(cfg->workers, 0);
    assert_string_equal(cfg->admin_listen, "127.0.0.1:9901");
    assert_int_equal(net_addr_port(&cfg->admin_addr), 9901);
    assert_int_equal(cfg->log_level, LOG_LEVEL_INFO);
    assert_string_equal(cfg->access_log, "stdout");

    assert_int_equal(cfg->n_certificates, 2);
    const struct cfg_certificate *site = config_find_certificate(cfg, "site");
    const struct cfg_certificate *rsa = config_find_certificate(cfg, "site-rsa");
    assert_non_null(site);
    assert_non_null(rsa);
    assert_string_equal(site->cert, path_of("pki/server-ecdsa.crt"));
    assert_string_equal(site->key, path_of("pki/server-ecdsa.key"));
    assert_null(site->password_file);
    assert_string_equal(rsa->cert, path_of("pki/server-rsa.crt"));
    const struct cfg_client_ca *partners = config_find_client_ca(cfg, "partners");
    assert_non_null(partners);
    assert_string_equal(partners->ca, path_of("pki/root.crt"));
    assert_string_equal(partners->crl, path_of("pki/clients.crl"));

    const struct cfg_target_group *web = config_find_target_group(cfg, "web");
    assert_non_null(web);
    assert_int_equal(web->algorithm, CFG_LB_WRR);
    assert_int_equal(web->n_targets, 2);
    assert_string_equal(web->targets[0].address, "127.0.0.1:8080");
    assert_int_equal(web->targets[0].weight, 10);
    assert_int_equal(net_addr_port(&web->targets[0].addr), 8080);
    assert_int_equal(web->targets[1].weight, 1);
    assert_false(web->targets[1].is_builtin);
    assert_int_equal(web->health_check.type, CFG_HC_HTTP);
    assert_string_equal(web->health_check.path, "/healthz");
    assert_int_equal(web->health_check.interval_ms, 2000);
    assert_int_equal(web->health_check.timeout_ms, 1000);
    assert_int_equal(web->health_check.healthy_threshold, 2);
    assert_int_equal(web->health_check.unhealthy_threshold, 3);
    assert_int_equal(web->sticky.type, CFG_STICKY_COOKIE);
    assert_int_equal(web->sticky.ttl_ms, 3600 * 1000);

    assert_int_equal(cfg->n_listeners, 3);
    const struct cfg_listener *api = &cfg->listeners[0];
    assert_string_equal(api->name, "api");
    assert_int_equal(api->protocol, CFG_PROTO_HTTPS);
    assert_int_equal(net_addr_port(&api->addr), 8443);
    assert_true(api->has_tls);
    assert_int_equal(api->tls.mode, CFG_TLS_MUTUAL);
    assert_int_equal(api->tls.client_auth, CFG_CLIENT_AUTH_REQUIRED);
    assert_int_equal(api->tls.n_certificates, 2);
    assert_ptr_equal(api->tls.certificates[0], site);
    assert_ptr_equal(api->tls.certificates[1], rsa);
    assert_ptr_equal(api->tls.client_ca, partners);
    assert_int_equal(api->tls.verify_depth, 3);
    assert_int_equal(api->tls.policy, CFG_POLICY_INTERMEDIATE);
    assert_int_equal(api->n_rules, 2);
    assert_string_equal(api->rules[0].host, "api.example.com");
    assert_string_equal(api->rules[0].path, "/v1/");
    assert_ptr_equal(api->rules[0].target_group, web);
    assert_null(api->rules[1].host);
    assert_true(api->rules[1].has_respond);
    assert_int_equal(api->rules[1].respond_status, 200);
    assert_string_equal(api->rules[1].respond_body, "pong\n");
    assert_ptr_equal(api->default_target_group, web);

    const struct cfg_listener *db = &cfg->listeners[1];
    assert_int_equal(db->protocol, CFG_PROTO_TCP_SSL);
    assert_ptr_equal(db->target_group, web);
    assert_int_equal(db->proxy_protocol, CFG_PROXY_V2);
    assert_int_equal(db->max_connections, 20000);
    assert_int_equal(db->idle_timeout_ms, 5 * 60 * 1000);
    assert_int_equal(db->handshake_timeout_ms, 10 * 1000);

    const struct cfg_listener *redirect = &cfg->listeners[2];
    assert_int_equal(redirect->protocol, CFG_PROTO_HTTP);
    assert_false(redirect->has_tls);
    assert_int_equal(redirect->n_rules, 1);
    assert_true(redirect->rules[0].has_redirect);
    assert_string_equal(redirect->rules[0].redirect_scheme, "https");
    assert_int_equal(redirect->rules[0].redirect_port, 8443);
    assert_int_equal(redirect->rules[0].redirect_status, 301);
    assert_null(redirect->rules[0].redirect_host);
}

static void test_design_example_block(void **state)
{
    (void)state;
    char *yaml = read_data("design.yaml");
    struct config *cfg = load_ok(yaml, 0);
    assert_string_equal(cfg->path, "t.yaml");
    check_design(cfg);
    config_free(cfg);
    free(yaml);
}

static void test_design_example_flow(void **state)
{
    (void)state;
    char *yaml = read_data("design_flow.yaml");
    struct config *cfg = load_ok(yaml, 0);
    check_design(cfg);
    config_free(cfg);
    free(yaml);
}

static void test_defaults(void **state)
{
    (void)state;
    struct config *cfg = load_ok(BASE HTTPS, 0);
    assert_int_equal(cfg->workers, 0);
    assert_null(cfg->admin_listen);
    assert_false(cfg->admin_allow_remote);
    assert_int_equal(cfg->log_level, LOG_LEVEL_INFO);
    assert_string_equal(cfg->access_log, "stdout");
    assert_int_equal(cfg->drain_timeout_ms, 30 * 1000);
    assert_null(cfg->user);
    assert_int_equal(cfg->ticket_key_rotation_ms, 3600 * 1000);
    assert_null(cfg->ticket_keys_file);
    assert_null(cfg->ticket_keys);

    const struct cfg_target_group *g = &cfg->target_groups[0];
    assert_int_equal(g->algorithm, CFG_LB_WRR);
    assert_int_equal(g->targets[0].weight, 1);
    assert_int_equal(g->health_check.type, CFG_HC_NONE);
    assert_string_equal(g->health_check.path, "/");
    assert_string_equal(g->health_check.method, "GET");
    assert_null(g->health_check.host);
    assert_int_equal(g->health_check.expect_lo, 200);
    assert_int_equal(g->health_check.expect_hi, 399);
    assert_int_equal(g->health_check.interval_ms, 5000);
    assert_int_equal(g->health_check.timeout_ms, 2000);
    assert_int_equal(g->health_check.healthy_threshold, 2);
    assert_int_equal(g->health_check.unhealthy_threshold, 3);
    assert_int_equal(g->passive.consecutive_failures, 0);
    assert_false(g->passive.count_5xx);
    assert_int_equal(g->passive.ejection_ms, 30 * 1000);
    assert_int_equal(g->sticky.type, CFG_STICKY_NONE);
    assert_int_equal(g->sticky.ttl_ms, 3600 * 1000);
    assert_string_equal(g->sticky.name, "tollgate_sticky");
    assert_false(g->tls.enabled);
    assert_true(g->tls.verify);
    assert_int_equal(g->when_all_down, CFG_ALL_DOWN_FAIL_OPEN);

    const struct cfg_listener *l = &cfg->listeners[0];
    assert_int_equal(l->tls.mode, CFG_TLS_ONE_WAY);
    assert_int_equal(l->tls.client_auth, CFG_CLIENT_AUTH_REQUIRED);
    assert_int_equal(l->tls.verify_depth, 3);
    assert_int_equal(l->tls.policy, CFG_POLICY_INTERMEDIATE);
    assert_null(l->tls.client_ca);
    assert_false(l->tls.strict_sni);
    assert_null(l->tls.on_reject);
    assert_int_equal(l->proxy_protocol, CFG_PROXY_NONE);
    assert_int_equal(l->max_connections, 10000);
    assert_int_equal(l->handshake_timeout_ms, 10 * 1000);
    assert_int_equal(l->idle_timeout_ms, 5 * 60 * 1000);
    assert_int_equal(l->connect_timeout_ms, 5 * 1000);
    assert_int_equal(l->header_timeout_ms, 10 * 1000);
    assert_int_equal(l->response_timeout_ms, 60 * 1000);
    assert_int_equal(l->max_body_size, 0);
    assert_int_equal(l->n_trusted_proxies, 0);
    assert_false(l->allow_underscores_in_headers);
    assert_false(l->add_forwarded_header);
    assert_int_equal(l->tls.pos.line, 11);
    assert_int_equal(l->tls.pos.col, 5);
    assert_int_equal(l->listen_pos.line, 10);
    assert_int_equal(cfg->certificates[0].cert_pos.line, 2);
    assert_int_equal(cfg->certificates[0].cert_pos.col, 11);
    config_free(cfg);
}

/* Every key with a value other than its default. */
static void test_every_key(void **state)
{
    (void)state;
    struct config *cfg = load_ok(
        "workers: 4\n"
        "admin: { listen: 0.0.0.0:9902, allow_remote: true, token_file: pki/admin.token,\n"
        "         server_names: [admin.example, '[::1]'] }\n"
        "max_draining_generations: 2\n"
        "ticket_key_rotation: 90s\n"
        "log: { level: debug, access: logs/access.log }\n"
        "drain_timeout: 500ms\n"
        "user: root\n"
        "certificates:\n"
        "  p12: { cert: /dev/null, password_file: pki/password.txt }\n"
        "client_cas:\n"
        "  partners: { ca: pki/root.crt }\n"
        "target_groups:\n"
        "  app:\n"
        "    algorithm: least_conn\n"
        "    targets: [ { address: builtin:echo, weight: 0 }, { address: '[::1]:9000' } ]\n"
        "    health_check: { type: https, path: /h, method: HEAD, host: h.example, expect: 204,\n"
        "                    interval: 1m, timeout: 3s, healthy_threshold: 5,\n"
        "                    unhealthy_threshold: 7 }\n"
        "    passive: { consecutive_failures: 4, count_5xx: true, ejection: 1m }\n"
        "    sticky: { type: cookie, ttl: 2h, name: sid }\n"
        "    tls: { verify: false, ca: partners, server_name: app.internal }\n"
        "    when_all_down: reject\n"
        "  hash: { algorithm: ip_hash, targets: [ { address: 127.0.0.1:1 } ],\n"
        "          sticky: { type: source_ip }, health_check: { expect: 200-204, type: http } }\n"
        "listeners:\n"
        "  - name: web.1\n"
        "    protocol: https\n"
        "    listen: '[::1]:18443'\n"
        "    tls: { mode: mutual, client_auth: optional, certificates: [p12],\n"
        "           client_ca: partners, verify_depth: 16, policy: custom,\n"
        "           min_version: TLSv1.2, max_version: TLSv1.3, ciphers: 'ECDHE+AESGCM',\n"
        "           ciphersuites: TLS_AES_128_GCM_SHA256, groups: 'X25519:P-256',\n"
        "           strict_sni: true, on_reject: page }\n"
        "    handshake_timeout: 1s\n"
        "    idle_timeout: 2s\n"
        "    connect_timeout: 3s\n"
        "    header_timeout: 4s\n"
        "    response_timeout: 5s\n"
        "    max_body_size: 16k\n"
        "    max_connections: 1\n"
        "    trusted_proxies: [ 10.0.0.0/8, '2001:db8::/32', 192.0.2.7 ]\n"
        "    allow_underscores_in_headers: true\n"
        "    add_forwarded_header: true\n"
        "    rules:\n"
        "      - { host: '*.example.com', respond: { status: 403, body: '',\n"
        "                                            headers: { X-Why: denied } } }\n"
        "      - { redirect: { scheme: http, host: b.example, port: 80, path: /x,\n"
        "                      status: 308 } }\n"
        "  - { name: raw, protocol: tcp_ssl, listen: 127.0.0.1:5000, target_group: hash,\n"
        "      proxy_protocol: v1, tls: { certificates: [p12], policy: modern, groups: P-384 } }\n",
        0);
    assert_int_equal(cfg->workers, 4);
    assert_int_equal(config_worker_count(cfg), 4);
    assert_true(cfg->admin_allow_remote);
    assert_string_equal(cfg->admin_token, "unit-test-admin-token-0123456789");
    assert_int_equal(cfg->admin_token_len, 32);
    assert_int_equal(cfg->n_admin_server_names, 2);
    assert_string_equal(cfg->admin_server_names[1], "[::1]");
    assert_int_equal(cfg->max_draining_generations, 2);
    assert_int_equal(cfg->ticket_key_rotation_ms, 90 * 1000);
    assert_int_equal(cfg->log_level, LOG_LEVEL_DEBUG);
    assert_string_equal(cfg->access_log, path_of("logs/access.log"));
    assert_int_equal(cfg->drain_timeout_ms, 500);
    assert_string_equal(cfg->user, "root");
    assert_string_equal(cfg->certificates[0].cert, "/dev/null");
    assert_null(cfg->certificates[0].key);
    assert_string_equal(cfg->certificates[0].password_file, path_of("pki/password.txt"));

    const struct cfg_target_group *g = &cfg->target_groups[0];
    assert_int_equal(g->algorithm, CFG_LB_LEAST_CONN);
    assert_true(g->targets[0].is_builtin);
    assert_int_equal(g->targets[0].weight, 0);
    assert_int_equal(g->targets[1].addr.ss.ss_family, AF_INET6);
    assert_int_equal(g->health_check.type, CFG_HC_HTTPS);
    assert_string_equal(g->health_check.method, "HEAD");
    assert_string_equal(g->health_check.host, "h.example");
    assert_int_equal(g->health_check.expect_lo, 204);
    assert_int_equal(g->health_check.expect_hi, 204);
    assert_int_equal(g->health_check.interval_ms, 60 * 1000);
    assert_int_equal(g->health_check.healthy_threshold, 5);
    assert_int_equal(g->health_check.unhealthy_threshold, 7);
    assert_int_equal(g->passive.consecutive_failures, 4);
    assert_true(g->passive.count_5xx);
    assert_int_equal(g->passive.ejection_ms, 60 * 1000);
    assert_string_equal(g->sticky.name, "sid");
    assert_int_equal(g->sticky.ttl_ms, 2 * 3600 * 1000);
    assert_true(g->tls.enabled);
    assert_false(g->tls.verify);
    assert_ptr_equal(g->tls.ca, config_find_client_ca(cfg, "partners"));
    assert_string_equal(g->tls.server_name, "app.internal");
    assert_int_equal(g->when_all_down, CFG_ALL_DOWN_REJECT);
    const struct cfg_target_group *h = &cfg->target_groups[1];
    assert_int_equal(h->algorithm, CFG_LB_IP_HASH);
    assert_int_equal(h->sticky.type, CFG_STICKY_SOURCE_IP);
    assert_int_equal(h->health_check.expect_lo, 200);
    assert_int_equal(h->health_check.expect_hi, 204);

    const struct cfg_listener *l = &cfg->listeners[0];
    assert_string_equal(l->name, "web.1");
    assert_int_equal(l->tls.client_auth, CFG_CLIENT_AUTH_OPTIONAL);
    assert_int_equal(l->tls.verify_depth, 16);
    assert_int_equal(l->tls.policy, CFG_POLICY_CUSTOM);
    assert_string_equal(l->tls.min_version, "TLSv1.2");
    assert_string_equal(l->tls.max_version, "TLSv1.3");
    assert_string_equal(l->tls.ciphers, "ECDHE+AESGCM");
    assert_string_equal(l->tls.ciphersuites, "TLS_AES_128_GCM_SHA256");
    assert_string_equal(l->tls.groups, "X25519:P-256");
    assert_true(l->tls.strict_sni);
    assert_string_equal(l->tls.on_reject, "page");
    assert_int_equal(l->handshake_timeout_ms, 1000);
    assert_int_equal(l->idle_timeout_ms, 2000);
    assert_int_equal(l->connect_timeout_ms, 3000);
    assert_int_equal(l->header_timeout_ms, 4000);
    assert_int_equal(l->response_timeout_ms, 5000);
    assert_int_equal(l->max_body_size, 16 * 1024);
    assert_int_equal(l->max_connections, 1);
    assert_int_equal(l->n_trusted_proxies, 3);
    assert_int_equal(l->trusted_proxies[1].family, AF_INET6);
    assert_int_equal(l->trusted_proxies[1].prefix, 32);
    assert_int_equal(l->trusted_proxies[2].prefix, 32);
    assert_true(l->allow_underscores_in_headers);
    assert_true(l->add_forwarded_header);
    assert_null(l->default_target_group);
    assert_string_equal(l->rules[0].host, "*.example.com");
    assert_int_equal(l->rules[0].respond_status, 403);
    assert_string_equal(l->rules[0].respond_body, "");
    assert_int_equal(l->rules[0].n_respond_headers, 1);
    assert_string_equal(l->rules[0].respond_headers[0].name, "X-Why");
    assert_string_equal(l->rules[0].respond_headers[0].value, "denied");
    assert_string_equal(l->rules[1].redirect_scheme, "http");
    assert_string_equal(l->rules[1].redirect_host, "b.example");
    assert_int_equal(l->rules[1].redirect_port, 80);
    assert_string_equal(l->rules[1].redirect_path, "/x");
    assert_int_equal(l->rules[1].redirect_status, 308);
    assert_int_equal(cfg->listeners[1].proxy_protocol, CFG_PROXY_V1);
    assert_int_equal(cfg->listeners[1].tls.policy, CFG_POLICY_MODERN);
    assert_string_equal(cfg->listeners[1].tls.groups, "P-384");
    config_free(cfg);
}

static void test_load_file(void **state)
{
    (void)state;
    char *yaml = read_data("design.yaml");
    write_file("tollgate.yaml", yaml);
    free(yaml);
    struct diag d;
    struct config *cfg = NULL;
    diag_init(&d);
    assert_int_equal(config_load(path_of("tollgate.yaml"), &cfg, &d), TG_OK);
    assert_string_equal(cfg->path, path_of("tollgate.yaml"));
    /* relative to the directory of the config file, not the cwd */
    assert_string_equal(cfg->certificates[0].cert, path_of("pki/server-ecdsa.crt"));
    config_free(cfg);

    cfg = (struct config *)1;
    assert_int_equal(config_load(path_of("missing.yaml"), &cfg, &d), TG_E_CONFIG);
    assert_null(cfg);
    assert_int_equal(d.n, 1);
    char line[1024], want[1024];
    diag_format(&d, 0, line, sizeof(line));
    snprintf(want, sizeof(want), "cannot read config file \"%s\": No such file or directory",
             path_of("missing.yaml"));
    assert_string_equal(line, want);
    diag_fini(&d);

    /* Errors already in d are the caller's; a good config still loads. */
    diag_init(&d);
    diag_add(&d, DIAG_ERROR, NULL, 0, 0, NULL, "earlier");
    assert_int_equal(config_load(path_of("tollgate.yaml"), &cfg, &d), TG_OK);
    config_free(cfg);
    diag_fini(&d);
    config_free(NULL);
}

static void test_yaml_syntax(void **state)
{
    (void)state;
    EXPECT_ERRORS("listeners: [\n  { name: a }\n",
                  "t.yaml:3:1: invalid YAML: flow sequence without a closing bracket");
    EXPECT_ERRORS("listeners:\n  - name: a\n   protocol: http\n",
                  "t.yaml:3:4: invalid YAML: did not find expected '-' indicator");
    EXPECT_ERRORS("listeners:\n\t- a\n",
                  "t.yaml:2:1: invalid YAML: tab character may not be used as indentation");
    EXPECT_ERRORS("workers: 1\nuser: \"abc\n",
                  "t.yaml:2:8: invalid YAML: double-quoted scalar without closing quote");
    EXPECT_ERRORS("workers: 1\nlog: { level: info]\n",
                  "t.yaml:2:19: invalid YAML: mismatched flow sequence end");
    EXPECT_ERRORS("workers: 1\nuser: \"a\xff\"\n",
                  "t.yaml:2:9: invalid YAML: invalid UTF-8 byte 0xff");
    /* the accepting twin: UTF-8 of every length */
    struct config *cfg =
        load_ok(BASE HTTPS "    rules: [ { path: /caf\xc3\xa9, respond: { body: \"\xe2\x9c\x93 "
                           "\xf0\x9f\x98\x80\\u00e9\" } } ]\n",
                0);
    assert_string_equal(cfg->listeners[0].rules[0].path, "/caf\xc3\xa9");
    assert_string_equal(cfg->listeners[0].rules[0].respond_body,
                        "\xe2\x9c\x93 \xf0\x9f\x98\x80\xc3\xa9");
    config_free(cfg);
    /* libfyaml 0.7.12 never returns on this one; it must not get to see it */
    EXPECT_ERRORS("%\xff\xff\n", "t.yaml:1:2: invalid YAML: invalid UTF-8 byte 0xff");
    EXPECT_ERRORS("user: \xc0\xaf\n", "t.yaml:1:7: invalid YAML: invalid UTF-8 byte 0xc0");
    EXPECT_ERRORS("user: \xed\xa0\x80\n", "t.yaml:1:7: invalid YAML: invalid UTF-8 byte 0xed");
    EXPECT_ERRORS("workers: 1\nuser: a\x01\n",
                  "t.yaml:2:8: invalid YAML: control character 0x01 (write it as an escape in a "
                  "double-quoted string)");
    EXPECT_ERRORS(BASE HTTPS "---\nworkers: 2\n", "t.yaml:13:1: only one YAML document is allowed");
    EXPECT_ERRORS(BASE HTTPS "workers: &w 2\ndrain_timeout: !!str 5s\n",
                  "t.yaml:13:10: anchors and aliases are not supported",
                  "t.yaml:14:16: tags are not supported");
    EXPECT_ERRORS(BASE HTTPS "user: *u\n", "t.yaml:13:7: anchors and aliases are not supported");
    EXPECT_ERRORS(BASE HTTPS "? [a]\n: 1\n", "t.yaml:13:3: mapping keys must be non-empty strings");
    EXPECT_ERRORS(BASE HTTPS "user: \"a\\0b\"\n",
                  "t.yaml:13:1: user: the value contains a NUL character");
}

static void test_shape(void **state)
{
    (void)state;
    EXPECT_ERRORS("", "t.yaml:1:1: listeners: required key is missing (expected a sequence of "
                      "listeners)");
    EXPECT_ERRORS("- a\n", "t.yaml:1:1: the top level must be a mapping with keys such as "
                           "listeners, target_groups and certificates");
    EXPECT_ERRORS("listeners: []\n", "t.yaml:1:1: listeners: at least one listener is required");
    EXPECT_ERRORS(
        BASE HTTPS "worker: 2\n",
        "t.yaml:13:1: worker: unknown key \"worker\" (expected one of: workers, admin, "
        "log, drain_timeout, user, certificates, client_cas, target_groups, listeners, "
        "max_connections, max_draining_generations, ticket_key_rotation, ticket_keys_file, "
        "state_dir, trust_history, fleet)");
    EXPECT_ERRORS(BASE HTTPS "    idle: 5m\n",
                  "t.yaml:13:5: listeners[0].idle: unknown key \"idle\" (expected one of: name, "
                  "protocol, listen, tls, target_group, default_target_group, proxy_protocol, "
                  "max_connections, max_connections_per_client, handshake_timeout, idle_timeout, "
                  "connect_timeout, "
                  "header_timeout, response_timeout, max_body_size, rules, trusted_proxies, "
                  "allow_underscores_in_headers, add_forwarded_header, alpn, h2_max_streams, "
                  "h2_max_header_list_size, h2_max_resets_per_second)");
    /* wrong types: a mapping, a sequence, a string, nothing */
    EXPECT_ERRORS(BASE HTTPS "    max_connections: { a: 1 }\n",
                  "t.yaml:13:5: listeners[0].max_connections: expected a whole number from 1 to "
                  "1000000, got a mapping");
    EXPECT_ERRORS(BASE HTTPS "log: [info]\n",
                  "t.yaml:13:1: log: expected a mapping (key: value), got a sequence");
    EXPECT_ERRORS(BASE HTTPS "    rules: /x\n",
                  "t.yaml:13:5: listeners[0].rules: expected a sequence (- item, or [a, b]), got a "
                  "string");
    EXPECT_ERRORS(BASE HTTPS "user:\n", "t.yaml:13:1: user: missing value (expected a string)");
    EXPECT_ERRORS(BASE HTTPS "user: ''\n", "t.yaml:13:1: user: must not be empty");
    EXPECT_ERRORS(BASE HTTPS "    tls: { certificates: site }\n",
                  "t.yaml:13:5: listeners[0].tls: duplicate key (first defined at line 11, column "
                  "5)");
    EXPECT_ERRORS(BASE "listeners:\n  - name: api\n    protocol: http\n    listen: 127.0.0.1:1\n"
                       "    rules: [ { respond: {} } ]\n    default_target_group: web\n"
                       "    name: x\n",
                  "t.yaml:13:5: listeners[0].name: duplicate key (first defined at line 8, column "
                  "5)");
    /* null sections read as empty ones */
    struct config *cfg = load_ok(BASE HTTPS "admin:\nlog:\n", 0);
    assert_string_equal(cfg->admin_listen, "127.0.0.1:9901");
    config_free(cfg);
}

static void test_enums_and_names(void **state)
{
    (void)state;
    EXPECT_ERRORS(BASE HTTPS "    proxy_protocol: v3\n",
                  "t.yaml:13:5: listeners[0].proxy_protocol: unknown value \"v3\" (expected none, "
                  "v1 or v2)");
    EXPECT_ERRORS(BASE "listeners:\n  - { name: a, protocol: tcp, listen: 127.0.0.1:1 }\n",
                  "t.yaml:8:16: listeners[0].protocol: unknown value \"tcp\" (expected tcp_ssl, "
                  "https or http)");
    EXPECT_ERRORS(BASE "listeners:\n  - name: api\n    protocol: https\n"
                       "    listen: 127.0.0.1:18443\n"
                       "    tls: { mode: two-way, certificates: [site], client_ca: partners }\n"
                       "    default_target_group: web\n",
                  "t.yaml:11:12: listeners[0].tls.mode: unknown value \"two-way\" (expected "
                  "one-way or mutual)");
    EXPECT_ERRORS(BASE HTTPS "log: { level: loud }\n",
                  "t.yaml:13:8: log.level: unknown value \"loud\" (expected error, warn, info or "
                  "debug)");
    EXPECT_ERRORS(BASE HTTPS "admin: { allow_remote: yes }\n",
                  "t.yaml:13:10: admin.allow_remote: unknown value \"yes\" (expected true or "
                  "false)");
    EXPECT_ERRORS("certificates:\n  \"a b\": { cert: pki/root.crt }\n"
                  "  "
                  "x123456789x123456789x123456789x123456789x123456789x123456789xxxxx"
                  ": { cert: pki/root.crt }\n" HTTPS,
                  "t.yaml:2:3: certificates.a b: invalid name \"a b\" (expected 1 to 64 of A-Z "
                  "a-z 0-9 _ . -)",
                  "t.yaml:3:3: certificates.x123456789x123456789x123456789x123456789x123456789"
                  "x123456789xxxxx: invalid name \"x123456789x123456789x123456789x123456789"
                  "x123456789x123456789xxxxx\" (expected 1 to 64 of A-Z a-z 0-9 _ . -)",
                  "t.yaml:8:27: listeners[0].tls.certificates[0]: unknown certificate \"site\" "
                  "(defined: a b, x123456789x123456789x123456789x123456789x123456789x123456789"
                  "xxxxx)",
                  "t.yaml:9:5: listeners[0].default_target_group: unknown target group \"web\" "
                  "(none is defined under target_groups)");
    /* 64 characters is the longest name */
    struct config *cfg = load_ok(
        "certificates:\n  "
        "x123456789x123456789x123456789x123456789x123456789x123456789xxxx: { cert: pki/root.crt "
        "}\n"
        "target_groups:\n  web: { targets: [ { address: 127.0.0.1:1 } ] }\n"
        "listeners:\n  - { name: a, protocol: https, listen: 127.0.0.1:1, default_target_group: "
        "web,\n      tls: { certificates: "
        "[x123456789x123456789x123456789x123456789x123456789x123456789xxxx] } }\n",
        0);
    config_free(cfg);
}

static void test_ranges(void **state)
{
    (void)state;
    EXPECT_ERRORS(BASE HTTPS "workers: 0\n",
                  "t.yaml:13:1: workers: 0 is out of range (expected 1 to 256)");
    EXPECT_ERRORS(BASE HTTPS "workers: 257\n",
                  "t.yaml:13:1: workers: 257 is out of range (expected 1 to 256)");
    EXPECT_ERRORS(BASE HTTPS "workers: -1\n",
                  "t.yaml:13:1: workers: -1 is out of range (expected 1 to 256)");
    EXPECT_ERRORS(BASE HTTPS "workers: two\n",
                  "t.yaml:13:1: workers: unknown value \"two\" (expected auto or a whole number "
                  "from 1 to 256)");
    EXPECT_ERRORS(BASE HTTPS "workers: 2x\n",
                  "t.yaml:13:1: workers: \"2x\" is not a whole number (expected 1 to 256)");
    struct config *cfg = load_ok(BASE HTTPS "workers: 256\n", 0);
    assert_int_equal(cfg->workers, 256);
    config_free(cfg);

    EXPECT_ERRORS("target_groups:\n"
                  "  web: { targets: [ { address: 127.0.0.1:1, weight: 1001 },\n"
                  "                    { address: 127.0.0.1:2, weight: -1 },\n"
                  "                    { address: 127.0.0.1:3, weight: 99999999999999999999 },\n"
                  "                    { address: 127.0.0.1:4, weight: ten } ] }\n",
                  "t.yaml:1:1: listeners: required key is missing (expected a sequence of "
                  "listeners)",
                  "t.yaml:2:45: target_groups.web.targets[0].weight: 1001 is out of range "
                  "(expected 0 to 1000)",
                  "t.yaml:3:45: target_groups.web.targets[1].weight: -1 is out of range (expected "
                  "0 to 1000)",
                  "t.yaml:4:45: target_groups.web.targets[2].weight: 99999999999999999999 is out "
                  "of range (expected 0 to 1000)",
                  "t.yaml:5:45: target_groups.web.targets[3].weight: \"ten\" is not a whole "
                  "number (expected 0 to 1000)");
    EXPECT_ERRORS(BASE "listeners:\n  - name: api\n    protocol: https\n"
                       "    listen: 127.0.0.1:18443\n"
                       "    tls: { certificates: [site], mode: mutual, client_ca: partners,\n"
                       "           verify_depth: 17 }\n"
                       "    rules: [ { respond: { status: 99 } },\n"
                       "             { redirect: { status: 305, port: 65536 } } ]\n",
                  "t.yaml:12:12: listeners[0].tls.verify_depth: 17 is out of range (expected 0 to "
                  "16)",
                  "t.yaml:13:27: listeners[0].rules[0].respond.status: 99 is out of range "
                  "(expected 200 to 599)",
                  "t.yaml:14:28: listeners[0].rules[1].redirect.status: 305 is not a redirect "
                  "status (expected 301, 302, 303, 307 or 308)",
                  "t.yaml:14:41: listeners[0].rules[1].redirect.port: 65536 is out of range "
                  "(expected 1 to 65535)");
}

static void test_durations_and_sizes_in_config(void **state)
{
    (void)state;
    EXPECT_ERRORS(BASE HTTPS "    idle_timeout: 1.5s\n    max_body_size: 16kb\n"
                             "drain_timeout: 30\n",
                  "t.yaml:13:5: listeners[0].idle_timeout: bad duration \"1.5s\" (expected a "
                  "whole number with a unit: 500ms, 2s, 5m, 1h; or 0)",
                  "t.yaml:14:5: listeners[0].max_body_size: bad size \"16kb\" (expected bytes, or "
                  "a whole number with k, m or g: 512, 16k, 1m)",
                  "t.yaml:15:1: drain_timeout: bad duration \"30\" (expected a whole number with "
                  "a unit: 500ms, 2s, 5m, 1h; or 0)");
    struct config *cfg = load_ok(BASE HTTPS "    max_body_size: 1m\ndrain_timeout: 0\n", 0);
    assert_int_equal(cfg->drain_timeout_ms, 0);
    config_free(cfg);
}

static bool in_nets(const struct cfg_cidr *nets, size_t n, const char *addr)
{
    struct net_addr a;
    char err[128];
    assert_int_equal(net_addr_parse(addr, false, &a, err, sizeof(err)), TG_OK);
    return config_cidr_contains(nets, n, &a);
}

/* listeners[].trusted_proxies: strict networks, each error at its entry. */
static void test_trusted_proxies(void **state)
{
    (void)state;
    EXPECT_ERRORS(BASE HTTPS "    trusted_proxies: [ 10.0.0.0/33, 10.0.0/8, '::1/129', 10.0.0.0/,\n"
                             "      ' 10.0.0.1', 10.0.0.0/08, 'fe80::1%eth0', [1], 10.0.0.0/-1,\n"
                             "      10.0.0.1/8 ]\n",
                  "t.yaml:13:24: listeners[0].trusted_proxies[0]: not a prefix length 0-32 "
                  "(expected a network such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)",
                  "t.yaml:13:37: listeners[0].trusted_proxies[1]: not an IPv4 or IPv6 address "
                  "(expected a network such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)",
                  "t.yaml:13:47: listeners[0].trusted_proxies[2]: not a prefix length 0-128 "
                  "(expected a network such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)",
                  "t.yaml:13:58: listeners[0].trusted_proxies[3]: not a prefix length 0-32 "
                  "(expected a network such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)",
                  "t.yaml:14:7: listeners[0].trusted_proxies[4]: not an IPv4 or IPv6 address "
                  "(expected a network such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)",
                  "t.yaml:14:20: listeners[0].trusted_proxies[5]: not a prefix length 0-32 "
                  "(expected a network such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)",
                  "t.yaml:14:33: listeners[0].trusted_proxies[6]: not an IPv4 or IPv6 address "
                  "(expected a network such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)",
                  "t.yaml:14:49: listeners[0].trusted_proxies[7]: expected an address or network "
                  "as a string (expected a network such as 10.0.0.0/8, 2001:db8::/32 or "
                  "192.0.2.7)",
                  "t.yaml:14:54: listeners[0].trusted_proxies[8]: not a prefix length 0-32 "
                  "(expected a network such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)");
    EXPECT_ERRORS(BASE "listeners:\n"
                       "  - { name: a, protocol: tcp_ssl, listen: 127.0.0.1:1, target_group: web,\n"
                       "      tls: { certificates: [site] }, trusted_proxies: [ 10.0.0.0/8 ],\n"
                       "      allow_underscores_in_headers: true, add_forwarded_header: true }\n",
                  "t.yaml:9:38: listeners[0].trusted_proxies: only used with protocol https or "
                  "http",
                  "t.yaml:10:7: listeners[0].allow_underscores_in_headers: only used with "
                  "protocol https or http",
                  "t.yaml:10:43: listeners[0].add_forwarded_header: only used with protocol "
                  "https or http");

    /* Twins: what each network holds and what it does not. */
    struct config *cfg = load_ok(BASE HTTPS "    trusted_proxies: [ 127.0.0.1/8, '2001:db8::/33',\n"
                                            "      192.0.2.7, '::1', 0.0.0.0/0 ]\n",
                                 0);
    const struct cfg_listener *l = &cfg->listeners[0];
    assert_int_equal(l->n_trusted_proxies, 5);
    assert_memory_equal(l->trusted_proxies[0].addr, "\x7f\0\0\0", 4); /* host bits cleared */
    assert_true(in_nets(l->trusted_proxies, 1, "127.255.0.9:1"));
    assert_false(in_nets(l->trusted_proxies, 1, "128.0.0.1:1"));
    assert_true(in_nets(l->trusted_proxies, 2, "[2001:db8:7fff::1]:1"));
    assert_false(in_nets(l->trusted_proxies, 2, "[2001:db8:8000::1]:1"));
    assert_true(in_nets(l->trusted_proxies, 3, "192.0.2.7:1"));
    assert_false(in_nets(l->trusted_proxies, 3, "192.0.2.8:1"));
    assert_true(in_nets(l->trusted_proxies, 4, "[::1]:1"));
    assert_false(in_nets(l->trusted_proxies, 4, "[::2]:1"));
    /* An IPv4-mapped address is its IPv4 address; families never mix. */
    assert_true(in_nets(l->trusted_proxies, 1, "[::ffff:127.0.0.1]:1"));
    assert_false(in_nets(l->trusted_proxies + 1, 3, "[::ffff:127.0.0.1]:1"));
    assert_true(in_nets(l->trusted_proxies, 5, "203.0.113.1:1"));
    assert_false(in_nets(l->trusted_proxies, 4, "203.0.113.1:1"));
    assert_false(in_nets(l->trusted_proxies, 0, "127.0.0.1:1"));
    config_free(cfg);
}

static void test_required_keys(void **state)
{
    (void)state;
    EXPECT_ERRORS("certificates:\n  site: { key: pki/server-ecdsa.key }\n"
                  "client_cas:\n  partners: { crl: pki/clients.crl }\n"
                  "target_groups:\n  web: { targets: [ { weight: 1 } ], sticky: { ttl: 1h } }\n"
                  "  none: {}\n"
                  "listeners:\n  - { }\n",
                  "t.yaml:2:3: certificates.site.cert: required key is missing (expected the "
                  "certificate file)",
                  "t.yaml:4:3: client_cas.partners.ca: required key is missing (expected the CA "
                  "certificate file)",
                  "t.yaml:6:21: target_groups.web.targets[0].address: required key is missing "
                  "(expected HOST:PORT or builtin:echo)",
                  "t.yaml:6:38: target_groups.web.sticky.type: required key is missing (expected "
                  "none, source_ip or cookie)",
                  "t.yaml:7:3: target_groups.none.targets: required key is missing (expected a "
                  "sequence of { address: HOST:PORT, weight: N })",
                  "t.yaml:9:5: listeners[0].name: required key is missing (expected a name such "
                  "as api)",
                  "t.yaml:9:5: listeners[0].protocol: required key is missing (expected tcp_ssl, "
                  "https or http)",
                  "t.yaml:9:5: listeners[0].listen: required key is missing (expected an address "
                  "such as 0.0.0.0:8443)");
}

static void test_references(void **state)
{
    (void)state;
    EXPECT_ERRORS(BASE
                  "  api: { targets: [ { address: 127.0.0.1:1 } ], tls: { ca: other } }\n"
                  "listeners:\n"
                  "  - name: api\n"
                  "    protocol: https\n"
                  "    listen: 127.0.0.1:18443\n"
                  "    tls: { certificates: [site, site2], mode: mutual, client_ca: parters }\n"
                  "    rules: [ { path: /a, target_group: wbe } ]\n"
                  "    default_target_group: apj\n"
                  "  - { name: db, protocol: tcp_ssl, listen: 127.0.0.1:5432,\n"
                  "      tls: { certificates: [site] }, target_group: pg }\n",
                  "t.yaml:7:56: target_groups.api.tls.ca: unknown client_ca \"other\" (defined: "
                  "partners)",
                  "t.yaml:12:33: listeners[0].tls.certificates[1]: unknown certificate \"site2\" "
                  "(defined: site)",
                  "t.yaml:12:55: listeners[0].tls.client_ca: unknown client_ca \"parters\" "
                  "(defined: partners)",
                  "t.yaml:13:26: listeners[0].rules[0].target_group: unknown target group \"wbe\" "
                  "(defined: web, api)",
                  "t.yaml:14:5: listeners[0].default_target_group: unknown target group \"apj\" "
                  "(defined: web, api)",
                  "t.yaml:16:38: listeners[1].target_group: unknown target group \"pg\" (defined: "
                  "web, api)");
}

static void test_protocol_rules(void **state)
{
    (void)state;
    EXPECT_ERRORS(BASE "listeners:\n"
                       "  - { name: a, protocol: tcp_ssl, listen: 127.0.0.1:1 }\n"
                       "  - { name: b, protocol: https, listen: 127.0.0.1:2, tls: {} }\n"
                       "  - { name: c, protocol: https, listen: 127.0.0.1:3,\n"
                       "      tls: { certificates: [] }, default_target_group: web }\n"
                       "  - { name: d, protocol: http, listen: 127.0.0.1:4, tls: {},\n"
                       "      default_target_group: web }\n",
                  "t.yaml:8:5: listeners[0].tls: required for protocol tcp_ssl (at least "
                  "certificates: [NAME])",
                  "t.yaml:8:5: listeners[0].target_group: required for protocol tcp_ssl (a name "
                  "from target_groups)",
                  "t.yaml:9:5: listeners[1].rules: protocol https needs rules, "
                  "default_target_group or both",
                  "t.yaml:9:54: listeners[1].tls.certificates: required key is missing (expected "
                  "a list of names from certificates, such as [site])",
                  "t.yaml:11:14: listeners[2].tls.certificates: at least one certificate is "
                  "required",
                  "t.yaml:12:53: listeners[3].tls: protocol http does not take tls (use https to "
                  "terminate TLS)");
    EXPECT_ERRORS(BASE "listeners:\n"
                       "  - { name: a, protocol: tcp_ssl, listen: 127.0.0.1:1, target_group: web,\n"
                       "      tls: { certificates: [site] }, rules: [], header_timeout: 1s,\n"
                       "      default_target_group: web, max_body_size: 1k,\n"
                       "      response_timeout: 1s }\n"
                       "  - { name: b, protocol: https, listen: 127.0.0.1:2, target_group: web,\n"
                       "      tls: { certificates: [site] }, proxy_protocol: v2,\n"
                       "      default_target_group: web }\n",
                  "t.yaml:9:38: listeners[0].rules: only used with protocol https or http",
                  "t.yaml:9:49: listeners[0].header_timeout: only used with protocol https or "
                  "http",
                  "t.yaml:10:7: listeners[0].default_target_group: only used with protocol https "
                  "or http",
                  "t.yaml:10:34: listeners[0].max_body_size: only used with protocol https or "
                  "http",
                  "t.yaml:11:7: listeners[0].response_timeout: only used with protocol https or "
                  "http",
                  "t.yaml:12:54: listeners[1].target_group: only used with protocol tcp_ssl "
                  "(https listeners use default_target_group and rules)",
                  "t.yaml:13:38: listeners[1].proxy_protocol: only used with protocol tcp_ssl");
}

static void test_tls_rules(void **state)
{
    (void)state;
    EXPECT_ERRORS(BASE
                  "listeners:\n"
                  "  - name: a\n"
                  "    protocol: https\n"
                  "    listen: 127.0.0.1:1\n"
                  "    default_target_group: web\n"
                  "    tls:\n"
                  "      certificates: [site]\n"
                  "      mode: mutual\n"
                  "      on_reject: page\n"
                  "      min_version: TLSv1.2\n"
                  "      groups: X25519\n"
                  "  - name: b\n"
                  "    protocol: https\n"
                  "    listen: 127.0.0.1:2\n"
                  "    default_target_group: web\n"
                  "    tls:\n"
                  "      certificates: [site]\n"
                  "      client_auth: optional\n"
                  "      client_ca: partners\n"
                  "      verify_depth: 2\n"
                  "      policy: modern\n"
                  "      ciphers: HIGH\n"
                  "      ciphersuites: TLS_AES_256_GCM_SHA384\n"
                  "      max_version: TLSv1.3\n"
                  "  - name: c\n"
                  "    protocol: https\n"
                  "    listen: 127.0.0.1:3\n"
                  "    default_target_group: web\n"
                  "    tls: { certificates: [site, site], policy: custom,\n"
                  "           min_version: TLSv1.3, max_version: TLSv1.2, on_reject: pages }\n",
                  "t.yaml:14:7: listeners[0].tls.mode: mode mutual needs client_ca (the CA that "
                  "signs client certificates, from client_cas)",
                  "t.yaml:15:7: listeners[0].tls.on_reject: only used with protocol https, mode "
                  "mutual and client_auth optional (a refused handshake cannot show a page)",
                  "t.yaml:16:7: listeners[0].tls.min_version: only used with policy: custom "
                  "(policy is intermediate)",
                  "t.yaml:24:7: listeners[1].tls.client_auth: only used with mode: mutual (mode is "
                  "one-way)",
                  "t.yaml:25:7: listeners[1].tls.client_ca: only used with mode: mutual (mode is "
                  "one-way)",
                  "t.yaml:26:7: listeners[1].tls.verify_depth: only used with mode: mutual (mode "
                  "is one-way)",
                  "t.yaml:28:7: listeners[1].tls.ciphers: only used with policy: custom (policy "
                  "is modern)",
                  "t.yaml:29:7: listeners[1].tls.ciphersuites: only used with policy: custom "
                  "(policy is modern)",
                  "t.yaml:30:7: listeners[1].tls.max_version: only used with policy: custom "
                  "(policy is modern)",
                  "t.yaml:35:33: listeners[2].tls.certificates[1]: certificate \"site\" is listed "
                  "twice",
                  "t.yaml:36:34: listeners[2].tls.max_version: TLSv1.2 is lower than min_version "
                  "TLSv1.3",
                  "t.yaml:36:56: listeners[2].tls.on_reject: unknown value \"pages\" (expected "
                  "page)");
}

/* tcp_ssl + mutual + optional relays every client: only PROXY v2 lets the
 * target tell verified ones from the others. */
static void test_optional_tcp_ssl_needs_proxy_v2(void **state)
{
    (void)state;
    EXPECT_ERRORS(BASE "listeners:\n"
                       "  - name: none\n"
                       "    protocol: tcp_ssl\n"
                       "    listen: 127.0.0.1:1\n"
                       "    target_group: web\n"
                       "    tls: { mode: mutual, client_auth: optional, certificates: [site],\n"
                       "           client_ca: partners }\n"
                       "  - name: v1\n"
                       "    protocol: tcp_ssl\n"
                       "    listen: 127.0.0.1:2\n"
                       "    target_group: web\n"
                       "    proxy_protocol: v1\n"
                       "    tls:\n"
                       "      mode: mutual\n"
                       "      client_auth: optional\n"
                       "      certificates: [site]\n"
                       "      client_ca: partners\n",
                  "t.yaml:12:26: listeners[0].tls.client_auth: optional relays clients without a "
                  "valid certificate, and without PROXY v2 the targets cannot tell them apart: "
                  "set proxy_protocol: v2 (its SSL TLV carries the verdict) or client_auth: "
                  "required",
                  "t.yaml:21:7: listeners[1].tls.client_auth: optional relays clients without a "
                  "valid certificate, and without PROXY v2 the targets cannot tell them apart: "
                  "set proxy_protocol: v2 (its SSL TLV carries the verdict) or client_auth: "
                  "required");
    /* The two ways out, and https (X-Client-Verify carries the verdict). */
    struct config *cfg =
        load_ok(BASE "listeners:\n"
                     "  - { name: v2, protocol: tcp_ssl, listen: 127.0.0.1:1,\n"
                     "      target_group: web, proxy_protocol: v2,\n"
                     "      tls: { mode: mutual, client_auth: optional,\n"
                     "             certificates: [site], client_ca: partners } }\n"
                     "  - { name: req, protocol: tcp_ssl, listen: 127.0.0.1:2,\n"
                     "      target_group: web,\n"
                     "      tls: { mode: mutual, client_auth: required,\n"
                     "             certificates: [site], client_ca: partners } }\n"
                     "  - { name: web, protocol: https, listen: 127.0.0.1:3,\n"
                     "      default_target_group: web,\n"
                     "      tls: { mode: mutual, client_auth: optional,\n"
                     "             certificates: [site], client_ca: partners } }\n",
                0);
    assert_int_equal(cfg->listeners[0].tls.client_auth, CFG_CLIENT_AUTH_OPTIONAL);
    assert_int_equal(cfg->listeners[0].proxy_protocol, CFG_PROXY_V2);
    config_free(cfg);
}

/* verify_depth counts intermediates: 0 (signed by the root) is allowed,
 * the twin of 17 refused in test_ranges. */
static void test_verify_depth_zero(void **state)
{
    (void)state;
    struct config *cfg =
        load_ok(BASE "listeners:\n"
                     "  - { name: a, protocol: tcp_ssl, listen: 127.0.0.1:1, target_group: web,\n"
                     "      tls: { mode: mutual, certificates: [site], client_ca: partners,\n"
                     "             verify_depth: 0 } }\n",
                0);
    assert_int_equal(cfg->listeners[0].tls.verify_depth, 0);
    config_free(cfg);
}

static void test_addresses(void **state)
{
    (void)state;
    EXPECT_ERRORS(
        BASE "  echo: { targets: [ { address: builtin:echo }, { address: builtin:cat },\n"
             "                    { address: 127.0.0.1 }, { address: '[::1]:0' } ] }\n"
             "admin: { listen: 0.0.0.0:9901 }\n"
             "listeners:\n"
             "  - { name: a, protocol: http, listen: 0.0.0.0:8080, default_target_group: web }\n"
             "  - { name: b, protocol: http, listen: 0.0.0.0:8080, default_target_group: web }\n"
             "  - { name: c, protocol: http, listen: 127.0.0.1:8080, default_target_group: web }\n"
             "  - { name: d, protocol: http, listen: '[::]:8080', default_target_group: web }\n"
             "  - { name: e, protocol: http, listen: 127.0.0.1:9901, default_target_group: web }\n"
             "  - { name: f, protocol: http, listen: 8080, default_target_group: web }\n"
             "  - { name: a, protocol: http, listen: 127.0.0.2:1, default_target_group: web }\n",
        "t.yaml:7:51: target_groups.echo.targets[1].address: unknown built-in target "
        "\"builtin:cat\" (expected builtin:echo)",
        "t.yaml:8:23: target_groups.echo.targets[2].address: expected \"HOST:PORT\", got "
        "\"127.0.0.1\"",
        "t.yaml:8:47: target_groups.echo.targets[3].address: bad port \"0\" (1-65535)",
        "t.yaml:9:10: admin.listen: \"0.0.0.0:9901\" is not a loopback address (set "
        "admin.allow_remote: true, with admin.token_file, to expose the admin endpoint anyway)",
        "t.yaml:12:32: listeners[1].listen: 0.0.0.0:8080 is already used by listener "
        "\"a\" (line 11)",
        "t.yaml:13:32: listeners[2].listen: 127.0.0.1:8080 overlaps 0.0.0.0:8080 of "
        "listener \"a\" (line 11)",
        "t.yaml:15:32: listeners[4].listen: 127.0.0.1:9901 overlaps the admin endpoint "
        "0.0.0.0:9901",
        "t.yaml:16:32: listeners[5].listen: expected \"HOST:PORT\", got \"8080\"",
        "t.yaml:17:7: listeners[6].name: duplicate listener name \"a\" (first used at "
        "line 11)");
    struct config *cfg = load_ok(BASE HTTPS "admin: { listen: 0.0.0.0:9901, allow_remote: true,\n"
                                            "         token_file: pki/admin.token }\n",
                                 0);
    assert_true(cfg->admin_allow_remote);
    config_free(cfg);
}

static void test_targets_and_checks(void **state)
{
    (void)state;
    EXPECT_ERRORS("target_groups:\n"
                  "  a: { targets: [] }\n"
                  "  b:\n"
                  "    targets: [ { address: 127.0.0.1:1 } ]\n"
                  "    health_check: { path: /x, method: GET, host: h, expect: 200, interval: 0 }\n"
                  "    sticky: { type: source_ip, name: s }\n"
                  "  c:\n"
                  "    targets: [ { address: 127.0.0.1:1 } ]\n"
                  "    health_check: { type: http, path: x, method: 'G T', expect: 300-200,\n"
                  "                    healthy_threshold: 0, unhealthy_threshold: 101 }\n"
                  "    sticky: { type: cookie, name: 'a=b' }\n"
                  "    passive: { ejection: 0s }\n"
                  "listeners: [ { name: a, protocol: http, listen: 127.0.0.1:1,\n"
                  "               default_target_group: a } ]\n",
                  "t.yaml:2:8: target_groups.a.targets: at least one target is required",
                  "t.yaml:5:21: target_groups.b.health_check.path: only used with health_check "
                  "type http or https",
                  "t.yaml:5:31: target_groups.b.health_check.method: only used with health_check "
                  "type http or https",
                  "t.yaml:5:44: target_groups.b.health_check.host: only used with health_check "
                  "type http or https",
                  "t.yaml:5:53: target_groups.b.health_check.expect: only used with health_check "
                  "type http or https",
                  "t.yaml:5:66: target_groups.b.health_check.interval: must be greater than 0",
                  "t.yaml:6:32: target_groups.b.sticky.name: only used with sticky type cookie",
                  "t.yaml:9:33: target_groups.c.health_check.path: must start with \"/\" (for "
                  "example /healthz)",
                  "t.yaml:9:42: target_groups.c.health_check.method: not an HTTP method (expected "
                  "a token such as GET or HEAD)",
                  "t.yaml:9:57: target_groups.c.health_check.expect: bad status range "
                  "\"300-200\" (expected a code such as 200 or a range such as 200-399, within "
                  "100-599)",
                  "t.yaml:10:21: target_groups.c.health_check.healthy_threshold: 0 is out of "
                  "range (expected 1 to 100)",
                  "t.yaml:10:43: target_groups.c.health_check.unhealthy_threshold: 101 is out of "
                  "range (expected 1 to 100)",
                  "t.yaml:11:29: target_groups.c.sticky.name: not a valid cookie name (expected "
                  "letters, digits and !#$%&'*+-.^_`|~)",
                  "t.yaml:12:16: target_groups.c.passive.ejection: must be greater than 0");
    EXPECT_WARNINGS(
        "target_groups:\n"
        "  z: { targets: [ { address: 127.0.0.1:1, weight: 0 } ],\n"
        "       health_check: { interval: 1s, timeout: 2s } }\n"
        "listeners:\n"
        "  - { name: z, protocol: http, listen: 127.0.0.1:2, default_target_group: z }\n",
        "t.yaml:2:8: warning: target_groups.z.targets: every target has weight 0: the "
        "group gets no traffic",
        "t.yaml:3:38: warning: target_groups.z.health_check.timeout: longer than the "
        "interval (1000ms): checks will overlap");
}

static void test_rules(void **state)
{
    (void)state;
    EXPECT_ERRORS(BASE "listeners:\n"
                       "  - name: a\n"
                       "    protocol: https\n"
                       "    listen: 127.0.0.1:1\n"
                       "    tls: { certificates: [site] }\n"
                       "    rules:\n"
                       "      - { path: /a, target_group: web, respond: { status: 204 } }\n"
                       "      - { host: a.example }\n"
                       "      - { host: 'a b', path: nope, respond: { headers: { 'X Y': z } } }\n"
                       "      - { host: '*.', redirect: { path: '/a b', host: 'x/y' } }\n"
                       "      - { respond: { headers: { X-A: \"a\\r\\nb\" } } }\n",
                  "t.yaml:13:9: listeners[0].rules[0]: a rule takes exactly one action, this one "
                  "has target_group and respond",
                  "t.yaml:14:9: listeners[0].rules[1]: a rule needs one action: target_group, "
                  "respond or redirect",
                  "t.yaml:15:11: listeners[0].rules[2].host: not a host pattern (expected a name "
                  "such as api.example.com or *.example.com)",
                  "t.yaml:15:24: listeners[0].rules[2].path: must start with \"/\" (for example "
                  "/api/)",
                  "t.yaml:15:58: listeners[0].rules[2].respond.headers.X Y: not a valid header "
                  "name (expected letters, digits and !#$%&'*+-.^_`|~)",
                  "t.yaml:16:11: listeners[0].rules[3].host: not a host pattern (expected a name "
                  "such as api.example.com or *.example.com)",
                  "t.yaml:16:35: listeners[0].rules[3].redirect.path: must not contain spaces or "
                  "control characters",
                  "t.yaml:16:49: listeners[0].rules[3].redirect.host: not a host name (expected "
                  "letters, digits, - and .)",
                  "t.yaml:17:33: listeners[0].rules[4].respond.headers.X-A: a header value must "
                  "not contain line breaks");
}

static void test_files(void **state)
{
    (void)state;
    char want[5][1024];
    snprintf(want[0], sizeof(want[0]),
             "t.yaml:2:8: certificates.a.cert: cannot read \"%s\": No such file or directory",
             path_of("pki/nope.crt"));
    snprintf(want[1], sizeof(want[1]),
             "t.yaml:2:28: certificates.a.key: cannot read \"%s\": No such file or directory",
             path_of("nope.key"));
    snprintf(want[2], sizeof(want[2]),
             "t.yaml:3:8: certificates.a.password_file: cannot read \"/nonexistent/pw\": No such "
             "file or directory");
    snprintf(want[3], sizeof(want[3]),
             "t.yaml:5:8: client_cas.b.ca: cannot read \"%s\": Is a directory", path_of("pki"));
    snprintf(want[4], sizeof(want[4]),
             "t.yaml:5:17: client_cas.b.crl: cannot read \"%s\": No such file or directory",
             path_of("pki/nope.crl"));
    EXPECT_ERRORS("certificates:\n"
                  "  a: { cert: pki/nope.crt, key: nope.key,\n"
                  "       password_file: /nonexistent/pw }\n"
                  "client_cas:\n"
                  "  b: { ca: pki, crl: pki/nope.crl }\n" HTTPS,
                  want[0], want[1], want[2], want[3], want[4],
                  "t.yaml:10:27: listeners[0].tls.certificates[0]: unknown certificate \"site\" "
                  "(defined: a)",
                  "t.yaml:11:5: listeners[0].default_target_group: unknown target group \"web\" "
                  "(none is defined under target_groups)");
}

/* Errors from every stage in one file all come out, top to bottom. */
static void test_many_errors(void **state)
{
    (void)state;
    EXPECT_ERRORS(
        "workers: many\n"
        "certificates:\n"
        "  site: { cert: pki/server-ecdsa.crt, kye: x }\n"
        "target_groups:\n"
        "  web: { algorithm: random, targets: [ { address: 127.0.0.1:1, weight: 2000 } ] }\n"
        "listeners:\n"
        "  - name: api\n"
        "    protocol: https\n"
        "    listen: 127.0.0.1:99999\n"
        "    tls: { mode: mutual, certificates: [site, gone] }\n"
        "    default_target_group: web\n"
        "    idle_timeout: 5 minutes\n",
        "t.yaml:1:1: workers: unknown value \"many\" (expected auto or a whole number "
        "from 1 to 256)",
        "t.yaml:3:39: certificates.site.kye: unknown key \"kye\" (expected one of: "
        "cert, key, password_file, ocsp, ocsp_file)",
        "t.yaml:5:10: target_groups.web.algorithm: unknown value \"random\" (expected "
        "wrr, least_conn or ip_hash)",
        "t.yaml:5:64: target_groups.web.targets[0].weight: 2000 is out of range "
        "(expected 0 to 1000)",
        "t.yaml:9:5: listeners[0].listen: bad port \"99999\" (1-65535)",
        "t.yaml:10:12: listeners[0].tls.mode: mode mutual needs client_ca (the CA that "
        "signs client certificates, from client_cas)",
        "t.yaml:10:47: listeners[0].tls.certificates[1]: unknown certificate \"gone\" "
        "(defined: site)",
        "t.yaml:12:5: listeners[0].idle_timeout: bad duration \"5 minutes\" (expected a "
        "whole number with a unit: 500ms, 2s, 5m, 1h; or 0)");
}

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"0", 0},       {"0s", 0},       {"500ms", 500}, {"2s", 2000},
        {"5m", 300000}, {"1h", 3600000}, {"007s", 7000}, {"18446744073709551615ms", UINT64_MAX}};
    /* each accepted form has rejected neighbours */
    static const char *const bad[] = {"5x",
                                      "",
                                      "-1s",
                                      "1.5s",
                                      "+2s",
                                      " 2s",
                                      "2s ",
                                      "2",
                                      "2S",
                                      "ms",
                                      "s",
                                      "2 s",
                                      "1h30m",
                                      "0x10s",
                                      "18446744073709551616ms",
                                      "18446744073709551615s",
                                      "5124095576031h"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t ms = 1;
        assert_true(config_parse_duration(good[i].s, &ms));
        assert_int_equal(ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 42;
        if (config_parse_duration(bad[i], &ms))
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(ms, 42);
    }
    uint64_t ms = 0;
    assert_true(config_parse_duration("5124095576030h", &ms));
    assert_false(config_parse_duration(NULL, &ms));
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t bytes;
    } good[] = {{"0", 0},
                {"512", 512},
                {"16k", 16384},
                {"16K", 16384},
                {"1m", 1048576},
                {"1M", 1048576},
                {"1g", 1073741824},
                {"18446744073709551615", UINT64_MAX},
                {"17179869183g", 17179869183ULL << 30}};
    static const char *const bad[] = {
        "5x",          "",   "-1",  "1.5k", "16kb", "k",   " 1k",
        "1k ",         "+1", "1 k", "0x10", "1t",   "1kk", "18446744073709551616",
        "17179869184g"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t b = 1;
        assert_true(config_parse_size(good[i].s, &b));
        assert_int_equal(b, good[i].bytes);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t b = 42;
        if (config_parse_size(bad[i], &b))
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(b, 42);
    }
    uint64_t b = 0;
    assert_false(config_parse_size(NULL, &b));
}

/* sni entries: what each takes from the listener, and which site a name
 * picks (config_site_for_name): exact first, the longest wildcard at any
 * depth, else the listener's own; one trailing dot and case ignored. */
static void test_sites(void **state)
{
    (void)state;
    struct config *cfg = load_ok(BASE "listeners:\n"
                                      "  - name: api\n"
                                      "    protocol: https\n"
                                      "    listen: 127.0.0.1:18443\n"
                                      "    default_target_group: web\n"
                                      "    tls:\n"
                                      "      certificates: [site]\n"
                                      "      mode: mutual\n"
                                      "      client_ca: partners\n"
                                      "      verify_depth: 2\n"
                                      "      allow: [ { san_dns: \"*.example.com\" } ]\n"
                                      "      sni:\n"
                                      "        - names: [api.example.com, \"*.example.com\"]\n"
                                      "        - names: [\"*.eu.example.com\"]\n"
                                      "          mode: one-way\n"
                                      "        - names: [Pay.Example.Com]\n"
                                      "          client_auth: optional\n"
                                      "          allow: [ { subject_cn: pay } ]\n",
                                 2 /* *.example.com also covers the other two entries */);
    const struct cfg_listener *l = &cfg->listeners[0];
    const struct cfg_tls *t = &l->tls;
    assert_int_equal(t->n_sites, 4);
    /* the listener's own */
    assert_int_equal(t->sites[0].mode, CFG_TLS_MUTUAL);
    assert_ptr_equal(t->sites[0].client_ca, &cfg->client_cas[0]);
    assert_ptr_equal(t->sites[0].allow_site, &t->sites[0]);
    /* an entry that sets nothing but names takes everything */
    assert_int_equal(t->sites[1].mode, CFG_TLS_MUTUAL);
    assert_int_equal(t->sites[1].verify_depth, 2);
    assert_ptr_equal(t->sites[1].client_ca, &cfg->client_cas[0]);
    assert_ptr_equal(t->sites[1].allow_site, &t->sites[0]);
    assert_int_equal(t->sites[1].n_certificates, 1);
    /* one-way: no client CA, no allow-list */
    assert_int_equal(t->sites[2].mode, CFG_TLS_ONE_WAY);
    assert_null(t->sites[2].allow_site);
    /* its own allow-list, optional; names stored in lower case */
    assert_int_equal(t->sites[3].client_auth, CFG_CLIENT_AUTH_OPTIONAL);
    assert_ptr_equal(t->sites[3].allow_site, &t->sites[3]);
    assert_string_equal(t->sites[3].names[0], "pay.example.com");

    static const struct {
        const char *name;
        size_t site;
    } picks[] = {
        {"api.example.com", 1},
        {"API.example.COM.", 1},
        {"a.example.com", 1},
        {"x.y.example.com", 1},
        {"a.eu.example.com", 2},
        {"x.y.eu.example.com", 2},
        {"eu.example.com", 1},
        {"pay.example.com", 3},
        {"pay.example.com.", 3},
        {"example.com", 0},
        {"xexample.com", 0},
        {"example.com.evil", 0},
        {"localhost", 0},
        {"", 0},
        {".", 0},
        {"pay.example.com..", 0}, /* two dots: only one is ignored */
    };
    for (size_t i = 0; i < sizeof(picks) / sizeof(picks[0]); i++) {
        size_t got = config_site_for_name(l, picks[i].name, strlen(picks[i].name));
        if (got != picks[i].site)
            fail_msg("%s: site %zu, expected %zu", picks[i].name, got, picks[i].site);
    }
    assert_int_equal(config_site_for_name(l, NULL, 0), 0);
    assert_true(config_tls_any_mutual(t, false));
    assert_true(config_tls_any_mutual(t, true));
    config_free(cfg);
}

static void test_accessors(void **state)
{
    (void)state;
    char *yaml = read_data("design.yaml");
    struct config *cfg = load_ok(yaml, 0);
    free(yaml);
    assert_true(config_worker_count(cfg) >= 1);
    assert_string_equal(config_proto_name(CFG_PROTO_TCP_SSL), "tcp_ssl");
    assert_string_equal(config_proto_name(CFG_PROTO_HTTPS), "https");
    assert_string_equal(config_proto_name(CFG_PROTO_HTTP), "http");
    assert_null(config_find_certificate(cfg, "sit"));
    assert_null(config_find_client_ca(cfg, "site"));
    assert_null(config_find_target_group(cfg, ""));
    assert_ptr_equal(config_find_target_group(cfg, "web"), &cfg->target_groups[0]);
    config_free(cfg);

    /* a base directory of NULL keeps relative paths relative */
    struct diag d;
    diag_init(&d);
    static const char rel[] = "certificates: { s: { cert: /dev/null, key: rel/x.key } }\n"
                              "listeners: [ { name: a, protocol: http, listen: 127.0.0.1:1,\n"
                              "               rules: [ { respond: {} } ] } ]\n";
    assert_int_equal(config_load_buffer("m", NULL, rel, strlen(rel), &cfg, &d), TG_E_CONFIG);
    assert_int_equal(d.n, 1);
    char line[512];
    diag_format(&d, 0, line, sizeof(line));
    assert_string_equal(line, "m:1:39: certificates.s.key: cannot read \"rel/x.key\": No such "
                              "file or directory");
    diag_fini(&d);
}

/* alpn and the h2_* limits: defaults, values, refusals (each a twin of
 * an accepted form), and that only https listeners take them. */
static void test_h2_keys(void **state)
{
    (void)state;
    struct config *cfg = load_ok(BASE HTTPS, 0);
    const struct cfg_listener *l = &cfg->listeners[0];
    assert_int_equal(l->alpn, CFG_ALPN_H2 | CFG_ALPN_HTTP1);
    assert_int_equal(l->h2_max_streams, 100);
    assert_int_equal(l->h2_max_header_list_size, 16384);
    assert_int_equal(l->h2_max_resets_per_second, 100);
    config_free(cfg);
    cfg = load_ok(BASE HTTPS "    alpn: [http/1.1]\n    h2_max_streams: 1\n"
                             "    h2_max_header_list_size: 1024\n"
                             "    h2_max_resets_per_second: 5\n",
                  0);
    l = &cfg->listeners[0];
    assert_int_equal(l->alpn, CFG_ALPN_HTTP1);
    assert_int_equal(l->h2_max_streams, 1);
    assert_int_equal(l->h2_max_header_list_size, 1024);
    assert_int_equal(l->h2_max_resets_per_second, 5);
    config_free(cfg);
    cfg = load_ok(BASE HTTPS "    alpn: [h2]\n", 0);
    assert_int_equal(cfg->listeners[0].alpn, CFG_ALPN_H2);
    config_free(cfg);
    EXPECT_ERRORS(BASE HTTPS "    alpn: [h2, h2]\n",
                  "t.yaml:13:16: listeners[0].alpn[1]: \"h2\" is listed twice");
    EXPECT_ERRORS(
        BASE HTTPS "    alpn: [h3]\n",
        "t.yaml:13:12: listeners[0].alpn[0]: unknown value \"h3\" (expected h2 or http/1.1)");
    EXPECT_ERRORS(
        BASE HTTPS "    alpn: []\n",
        "t.yaml:13:5: listeners[0].alpn: at least one protocol is required (h2, http/1.1)");
    EXPECT_ERRORS(
        BASE HTTPS "    alpn: h2\n",
        "t.yaml:13:5: listeners[0].alpn: expected a sequence (- item, or [a, b]), got a string");
    EXPECT_ERRORS(
        BASE HTTPS "    h2_max_streams: 0\n    h2_max_header_list_size: 16385\n",
        "t.yaml:13:5: listeners[0].h2_max_streams: 0 is out of range (expected 1 to 1000)",
        "t.yaml:14:5: listeners[0].h2_max_header_list_size: 16385 is out of range (expected 1024 "
        "to 16384)");
    EXPECT_ERRORS(
        BASE "listeners:\n"
             "  - { name: a, protocol: tcp_ssl, listen: 127.0.0.1:1, target_group: web,\n"
             "      tls: { certificates: [site] }, alpn: [h2], h2_max_streams: 5 }\n"
             "  - { name: b, protocol: http, listen: 127.0.0.1:2,\n"
             "      default_target_group: web, h2_max_resets_per_second: 5 }\n",
        "t.yaml:9:45: listeners[0].alpn[0]: only used with protocol https",
        "t.yaml:9:50: listeners[0].h2_max_streams: only used with protocol https",
        "t.yaml:11:34: listeners[1].h2_max_resets_per_second: only used with protocol https");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_design_example_block),
        cmocka_unit_test(test_design_example_flow),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_yaml_syntax),
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_enums_and_names),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_durations_and_sizes_in_config),
        cmocka_unit_test(test_trusted_proxies),
        cmocka_unit_test(test_required_keys),
        cmocka_unit_test(test_references),
        cmocka_unit_test(test_protocol_rules),
        cmocka_unit_test(test_tls_rules),
        cmocka_unit_test(test_optional_tcp_ssl_needs_proxy_v2),
        cmocka_unit_test(test_verify_depth_zero),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_targets_and_checks),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_many_errors),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_accessors),
        cmocka_unit_test(test_sites),
        cmocka_unit_test(test_h2_keys),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
