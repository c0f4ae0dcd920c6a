/* The pure parts of /metrics (src/admin/metrics.c) and the shared counters
 * (src/core/shm.c): label escaping, histogram lines, bucket boundaries,
 * reason and version slots, folding a retired generation. The request
 * guard (src/admin/guard.c): Host, Origin, Sec-Fetch-Site, bearer token.
 * The ring of the last refusals (src/core/shm.c). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin/admin.h"
#include "core/shm.h"
#include "http/http.h"
#include "net/net.h"

static void test_label_escape(void **state)
{
    (void)state;
    struct admin_out o = {0};
    admin_label_escape(&o, "a\"b\\c\nd");
    assert_false(o.failed);
    assert_string_equal(o.p, "a\\\"b\\\\c\\nd");
    admin_out_fini(&o);
    /* Rejecting twin: NULL is an empty value, not a crash. */
    admin_label_escape(&o, NULL);
    assert_int_equal(o.len, 0);
    admin_out_fini(&o);
}

static void test_out_grows(void **state)
{
    (void)state;
    struct admin_out o = {0};
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 10; i++)
        admin_out_printf(&o, "%s", big);
    assert_false(o.failed);
    assert_int_equal(o.len, 10 * (sizeof(big) - 1));
    assert_int_equal(strlen(o.p), o.len);
    admin_out_fini(&o);
}

static void test_out_double(void **state)
{
    (void)state;
    struct admin_out o = {0};
    admin_out_double(&o, INFINITY);
    admin_out_printf(&o, " ");
    admin_out_double(&o, 0.25);
    admin_out_printf(&o, " ");
    admin_out_double(&o, 12);
    assert_string_equal(o.p, "+Inf 0.25 12");
    admin_out_fini(&o);
}

static void test_hist_boundaries(void **state)
{
    (void)state;
    struct shm_hist h;
    memset(&h, 0, sizeof(h));
    shm_hist_observe(&h, 0.001);  /* on a bound: that bucket (le is inclusive) */
    shm_hist_observe(&h, 0.0011); /* just over: the next one */
    shm_hist_observe(&h, -1.0);   /* clock step backwards: counted as 0 */
    shm_hist_observe(&h, 1e6);    /* over the last bound: +Inf */
    assert_int_equal(shm_get(&h.buckets[1]), 1);
    assert_int_equal(shm_get(&h.buckets[2]), 1);
    assert_int_equal(shm_get(&h.buckets[0]), 1);
    assert_int_equal(shm_get(&h.buckets[SHM_HIST_BOUNDS]), 1);
    assert_int_equal(shm_get(&h.count), 4);
}

static void test_histogram_lines(void **state)
{
    (void)state;
    struct shm_hist h;
    memset(&h, 0, sizeof(h));
    shm_hist_observe(&h, 0.002);
    shm_hist_observe(&h, 0.5);
    struct admin_out o = {0};
    admin_out_histogram(&o, "x_seconds", "listener=\"a\"", &h);
    assert_false(o.failed);
    assert_non_null(strstr(o.p, "x_seconds_bucket{listener=\"a\",le=\"0.001\"} 0\n"));
    assert_non_null(strstr(o.p, "x_seconds_bucket{listener=\"a\",le=\"0.0025\"} 1\n"));
    assert_non_null(strstr(o.p, "x_seconds_bucket{listener=\"a\",le=\"0.5\"} 2\n"));
    assert_non_null(strstr(o.p, "x_seconds_bucket{listener=\"a\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(o.p, "x_seconds_sum{listener=\"a\"} 0.502\n"));
    assert_non_null(strstr(o.p, "x_seconds_count{listener=\"a\"} 2\n"));
    size_t lines = 0;
    for (const char *p = o.p; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, SHM_HIST_BOUNDS + 1 + 2);
    admin_out_fini(&o);
    /* Without labels there is no leading comma. */
    admin_out_histogram(&o, "y", "", &h);
    assert_non_null(strstr(o.p, "y_bucket{le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(o.p, "y_count{} 2\n"));
    admin_out_fini(&o);
}

static void test_reasons_and_versions(void **state)
{
    (void)state;
    assert_string_equal(shm_reason_name(shm_reason_index("unknown_ca")), "unknown_ca");
    assert_string_equal(shm_reason_name(shm_reason_index("handshake_timeout")),
                        "handshake_timeout");
    /* Unknown codes and NULL count as tls_error, never out of range. */
    assert_string_equal(shm_reason_name(shm_reason_index("made_up")), "tls_error");
    assert_string_equal(shm_reason_name(shm_reason_index(NULL)), "tls_error");
    for (size_t i = 0; i < SHM_REASON_COUNT; i++)
        assert_int_equal(shm_reason_index(shm_reason_name(i)), i);
    assert_int_equal(shm_tls_version_of(0x0304), SHM_TLS_V1_3);
    assert_int_equal(shm_tls_version_of(0x0303), SHM_TLS_V1_2);
    assert_int_equal(shm_tls_version_of(0xfefd), SHM_TLS_OTHER); /* DTLS 1.2 */
    assert_string_equal(shm_tls_version_name(SHM_TLS_V1_3), "TLSv1.3");
}

static void test_counting_and_folding(void **state)
{
    (void)state;
    struct shm_stats *st = shm_stats_new(1);
    assert_non_null(st);
    struct shm_listener_stats *s = &st->listeners[0];
    shm_count_accept(s);
    shm_count_handshake(s, 0x0304, true, 0.003);
    shm_count_handshake_failure(s, "no_client_cert");
    shm_count_request(s, 200, 0.01);
    shm_count_request(s, 99, 0.01);  /* out of range: ignored */
    shm_count_request(s, 600, 0.01); /* out of range: ignored */
    shm_count_close(s, 10, 20);
    assert_int_equal(atomic_load(&s->conns_active), 0);
    assert_int_equal(shm_get(&s->hs_by_version[SHM_TLS_V1_3][1]), 1);
    assert_int_equal(shm_get(&s->handshakes_resumed), 1);
    assert_int_equal(shm_get(&s->hs_failures[shm_reason_index("no_client_cert")]), 1);
    assert_int_equal(shm_get(&s->requests[200 - SHM_STATUS_MIN]), 1);
    assert_int_equal(shm_get(&s->req_duration.count), 1);

    struct shm_listener_stats *total = calloc(1, sizeof(*total));
    assert_non_null(total);
    atomic_store(&s->conns_active, 5); /* a gauge is never folded */
    shm_listener_stats_add(total, s);
    shm_listener_stats_add(total, s);
    assert_int_equal(shm_get(&total->conns_total), 2);
    assert_int_equal(shm_get(&total->bytes_out), 40);
    assert_int_equal(shm_get(&total->hs_duration.count), 2);
    assert_int_equal(atomic_load(&total->conns_active), 0);
    free(total);
    shm_stats_free(st);
}

static const char TOKEN[] = "guard-unit-token-0123456789abcdef";

/* The guard's verdict on one request head (status, 0 = served). */
static unsigned verdict(const struct admin_guard *g, const char *req, const char *local,
                        const char **why)
{
    struct h1 h;
    struct http_head hd;
    h1_init(&h, true, 0);
    assert_int_equal(h1_head(&h, &hd, req, strlen(req)), TG_OK);
    return admin_guard_check(g, &hd, local, why);
}

static void guard_for(struct admin_guard *g, const char *listen, bool with_token)
{
    char *names[] = {"admin.example", "[::1]"};
    struct config cfg = {0};
    char err[128];
    assert_int_equal(net_addr_parse(listen, false, &cfg.admin_addr, err, sizeof(err)), TG_OK);
    cfg.admin_server_names = names;
    cfg.n_admin_server_names = 2;
    if (with_token) {
        cfg.admin_token = (char *)TOKEN;
        cfg.admin_token_len = strlen(TOKEN);
    }
    assert_int_equal(admin_guard_set(g, &cfg), TG_OK);
}

static void test_guard_host(void **state)
{
    (void)state;
    struct admin_guard g = {0};
    const char *why;
    guard_for(&g, "127.0.0.1:9901", false);
    static const char *const ok[] = {
        "127.0.0.1",          "127.0.0.1:9901", "localhost:1", "LOCALHOST",
        "admin.example:8443", "Admin.Example",  "[::1]:9901",  "10.1.2.3"};
    static const char *const bad[] = {"evil.example",
                                      "evil.example:9901",
                                      "127.0.0.2",
                                      "localhost.evil.example",
                                      "admin.example.evil",
                                      "localhost:",
                                      "localhost:123456",
                                      "localhost:9x",
                                      "[::1",
                                      "[::2]:9901",
                                      "10.1.2.3:1:2"};
    char req[256];
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(req, sizeof(req), "GET /status HTTP/1.1\r\nHost: %s\r\n\r\n", ok[i]);
        assert_int_equal(verdict(&g, req, "10.1.2.3", &why), 0);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(req, sizeof(req), "GET /status HTTP/1.1\r\nHost: %s\r\n\r\n", bad[i]);
        struct h1 h;
        struct http_head hd;
        h1_init(&h, true, 0);
        if (h1_head(&h, &hd, req, strlen(req)) != TG_OK)
            continue; /* refused by the parser already */
        assert_int_equal(admin_guard_check(&g, &hd, "10.1.2.3", &why), 421);
        assert_string_equal(why, "unknown_host");
    }
    /* The local address is optional. */
    assert_int_equal(verdict(&g, "GET / HTTP/1.1\r\nHost: 10.1.2.3\r\n\r\n", NULL, &why), 421);
    /* HTTP/1.1 without Host: the parser answers 400 before the guard
     * (which would too); HTTP/1.0 predates Host. */
    struct h1 h;
    struct http_head hd;
    h1_init(&h, true, 0);
    assert_int_not_equal(h1_head(&h, &hd, "GET / HTTP/1.1\r\n\r\n", 18), TG_OK);
    assert_int_equal(verdict(&g, "GET / HTTP/1.0\r\n\r\n", NULL, &why), 0);
    admin_guard_fini(&g);

    /* An IPv6 endpoint accepts its bracketed address. */
    guard_for(&g, "[::1]:9901", false);
    assert_int_equal(verdict(&g, "GET / HTTP/1.1\r\nHost: [::1]:9901\r\n\r\n", NULL, &why), 0);
    assert_int_equal(verdict(&g, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", NULL, &why), 421);
    admin_guard_fini(&g);
}

static void test_guard_web_pages(void **state)
{
    (void)state;
    struct admin_guard g = {0};
    const char *why;
    guard_for(&g, "127.0.0.1:9901", false);
    static const char *const bad[] = {"Origin: null",
                                      "Origin: http://127.0.0.1:9901",
                                      "Sec-Fetch-Site: cross-site",
                                      "Sec-Fetch-Site: same-site",
                                      "sec-fetch-site: CROSS-SITE",
                                      "Sec-Fetch-Site: other"};
    static const char *const ok[] = {"Sec-Fetch-Site: same-origin", "Sec-Fetch-Site: none",
                                     "Sec-Fetch-Mode: navigate", "X-Origin: x"};
    char req[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(req, sizeof(req), "POST /reload HTTP/1.1\r\nHost: localhost\r\n%s\r\n\r\n",
                 bad[i]);
        assert_int_equal(verdict(&g, req, NULL, &why), 403);
        assert_string_equal(why, "cross_site");
    }
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(req, sizeof(req), "POST /reload HTTP/1.1\r\nHost: localhost\r\n%s\r\n\r\n", ok[i]);
        assert_int_equal(verdict(&g, req, NULL, &why), 0);
    }
    admin_guard_fini(&g);
}

static void test_guard_token(void **state)
{
    (void)state;
    struct admin_guard g = {0};
    const char *why;
    guard_for(&g, "127.0.0.1:9901", true);
    char req[512];
    static const char *const bad[] = {
        "",
        "Authorization: Bearer guard-unit-token-0123456789abcde\r\n",
        "Authorization: Bearer guard-unit-token-0123456789abcdef0\r\n",
        "Authorization: Bearer GUARD-UNIT-TOKEN-0123456789ABCDEF\r\n",
        "Authorization: Basic guard-unit-token-0123456789abcdef\r\n",
        "Authorization: Bearerguard-unit-token-0123456789abcdef\r\n",
        "Authorization: guard-unit-token-0123456789abcdef\r\n",
        "Authorization: Bearer\r\n",
        "Authorization: Bearer guard-unit-token-0123456789abcdef\r\n"
        "Authorization: Bearer guard-unit-token-0123456789abcdef\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(req, sizeof(req), "GET /metrics HTTP/1.1\r\nHost: localhost\r\n%s\r\n", bad[i]);
        assert_int_equal(verdict(&g, req, NULL, &why), 401);
        assert_string_equal(why, "no_valid_token");
    }
    static const char *const ok[] = {
        "Authorization: Bearer guard-unit-token-0123456789abcdef\r\n",
        "authorization: bearer   guard-unit-token-0123456789abcdef\r\n",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        snprintf(req, sizeof(req), "GET /metrics HTTP/1.1\r\nHost: localhost\r\n%s\r\n", ok[i]);
        assert_int_equal(verdict(&g, req, NULL, &why), 0);
    }
    /* The Host and web-page checks come first: no token is looked at. */
    snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: evil.example\r\n%s\r\n", ok[0]);
    assert_int_equal(verdict(&g, req, NULL, &why), 421);
    admin_guard_fini(&g);
    /* Without a token configured, no header is needed. */
    guard_for(&g, "127.0.0.1:9901", false);
    assert_int_equal(verdict(&g, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", NULL, &why), 0);
    admin_guard_fini(&g);
}

/* ---- the last refusals ---- */

static void test_refusal_ring(void **state)
{
    (void)state;
    struct shm_listener_stats *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    struct shm_refusal got[SHM_REFUSALS + 4];
    /* Empty: nothing to read. */
    assert_int_equal(shm_read_refusals(s, got, SHM_REFUSALS), 0);
    char long_name[SHM_REFUSAL_NAME * 2];
    memset(long_name, 'A', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    for (int i = 0; i < SHM_REFUSALS + 3; i++) {
        char subject[32];
        snprintf(subject, sizeof(subject), "CN=c%d", i);
        shm_note_refusal(s, i == 0 ? "no_such_reason" : "unknown_ca", "127.0.0.1:1",
                         i == SHM_REFUSALS + 2 ? long_name : subject, NULL, 1000 + i);
    }
    size_t n = shm_read_refusals(s, got, SHM_REFUSALS + 4);
    /* Bounded: only the last SHM_REFUSALS, newest first. */
    assert_int_equal(n, SHM_REFUSALS);
    assert_int_equal(got[0].unix_ms, 1000 + SHM_REFUSALS + 2);
    assert_int_equal(strlen(got[0].subject), SHM_REFUSAL_NAME - 1);
    assert_string_equal(got[1].subject, "CN=c17");
    assert_string_equal(got[1].issuer, "");
    assert_string_equal(shm_reason_name(got[1].reason), "unknown_ca");
    assert_int_equal(got[SHM_REFUSALS - 1].unix_ms, 1000 + 3);
    /* max is honoured. */
    assert_int_equal(shm_read_refusals(s, got, 2), 2);
    /* An entry caught while it is written (odd sequence) is skipped. */
    uint64_t t = atomic_load(&s->refusals.next) - 1;
    atomic_store(&s->refusals.v[t % SHM_REFUSALS].seq, 2 * t + 1);
    n = shm_read_refusals(s, got, SHM_REFUSALS);
    assert_int_equal(n, SHM_REFUSALS - 1);
    assert_string_equal(got[0].subject, "CN=c17");
    free(s);

    /* The first refusal had an unknown reason: it counts as tls_error. */
    s = calloc(1, sizeof(*s));
    assert_non_null(s);
    shm_note_refusal(s, "no_such_reason", NULL, NULL, NULL, 5);
    assert_int_equal(shm_read_refusals(s, got, 1), 1);
    assert_string_equal(shm_reason_name(got[0].reason), "tls_error");
    assert_string_equal(got[0].subject, "");
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_escape),         cmocka_unit_test(test_out_grows),
        cmocka_unit_test(test_out_double),           cmocka_unit_test(test_hist_boundaries),
        cmocka_unit_test(test_histogram_lines),      cmocka_unit_test(test_reasons_and_versions),
        cmocka_unit_test(test_counting_and_folding), cmocka_unit_test(test_guard_host),
        cmocka_unit_test(test_guard_web_pages),      cmocka_unit_test(test_guard_token),
        cmocka_unit_test(test_refusal_ring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
