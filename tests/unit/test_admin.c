/* The pure parts of /metrics (src/admin/metrics.c) and the shared counters
 * (src/core/shm.c): label escaping, histogram lines, bucket boundaries,
 * reason and version slots, folding a retired generation. The request
 * guard (src/admin/guard.c): Host, Origin, Sec-Fetch-Site, bearer token.
 * The status page's data (src/admin/refusals.c, shm.c): the ring of last
 * refusals, peer text made valid UTF-8, refusals per minute; its CSP (ui.c). */
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
#include "admin/internal.h"
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
    assert_int_equal(shm_read_refusals(&s->refusals, got, SHM_REFUSALS), 0);
    char long_name[SHM_REFUSAL_NAME * 2];
    memset(long_name, 'A', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    for (int i = 0; i < SHM_REFUSALS + 3; i++) {
        char subject[32];
        snprintf(subject, sizeof(subject), "CN=c%d", i);
        shm_note_refusal(&s->refusals, i == 0 ? "no_such_reason" : "unknown_ca", "127.0.0.1:1",
                         i == SHM_REFUSALS + 2 ? long_name : subject, NULL, 1000 + i);
    }
    size_t n = shm_read_refusals(&s->refusals, got, SHM_REFUSALS + 4);
    /* Bounded: only the last SHM_REFUSALS, newest first. */
    assert_int_equal(n, SHM_REFUSALS);
    assert_int_equal(got[0].unix_ms, 1000 + SHM_REFUSALS + 2);
    assert_int_equal(strlen(got[0].subject), SHM_REFUSAL_NAME - 1);
    assert_string_equal(got[1].subject, "CN=c17");
    assert_string_equal(got[1].issuer, "");
    assert_string_equal(shm_reason_name(got[1].reason), "unknown_ca");
    assert_int_equal(got[SHM_REFUSALS - 1].unix_ms, 1000 + 3);
    /* max is honoured. */
    assert_int_equal(shm_read_refusals(&s->refusals, got, 2), 2);
    /* An entry caught while it is written (odd sequence) is skipped. */
    uint64_t t = atomic_load(&s->refusals.next) - 1;
    atomic_store(&s->refusals.v[t % SHM_REFUSALS].seq, 2 * t + 1);
    n = shm_read_refusals(&s->refusals, got, SHM_REFUSALS);
    assert_int_equal(n, SHM_REFUSALS - 1);
    assert_string_equal(got[0].subject, "CN=c17");
    free(s);

    /* The first refusal had an unknown reason: it counts as tls_error. */
    s = calloc(1, sizeof(*s));
    assert_non_null(s);
    shm_note_refusal(&s->refusals, "no_such_reason", NULL, NULL, NULL, 5);
    assert_int_equal(shm_read_refusals(&s->refusals, got, 1), 1);
    assert_string_equal(shm_reason_name(got[0].reason), "tls_error");
    assert_string_equal(got[0].subject, "");
    free(s);
}

static void test_utf8_clean(void **state)
{
    (void)state;
    char ok[] = "CN=J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x94\x92 <script>";
    admin_utf8_clean(ok);
    assert_string_equal(ok, "CN=J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x94\x92 <script>");
    /* Rejecting twins: a lone continuation byte, an overlong '/', a
     * surrogate, a sequence cut by the end, a byte never valid. */
    char bad[] = "a\x80"
                 "b\xc0\xaf"
                 "c\xed\xa0\x80"
                 "d\xff\xe2\x82";
    admin_utf8_clean(bad);
    assert_string_equal(bad, "a?b??c???d???");
}

static void test_refusal_json(void **state)
{
    (void)state;
    struct shm_refusal r = {.unix_ms = 1700000000123, .reason = 4};
    snprintf(r.client, sizeof(r.client), "127.0.0.1:5");
    snprintf(r.subject, sizeof(r.subject), "CN=\\<script\\>alert(1)\\</script\\>\xff");
    snprintf(r.issuer, sizeof(r.issuer), "CN=ca");
    json_t *j = admin_refusal_json(&r, "mtls");
    assert_non_null(j);
    /* Invalid UTF-8 is made valid so the string exists; markup stays text
     * for the page to show with textContent. */
    assert_string_equal(json_string_value(json_object_get(j, "subject")),
                        "CN=\\<script\\>alert(1)\\</script\\>?");
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "unknown_ca");
    assert_string_equal(json_string_value(json_object_get(j, "listener")), "mtls");
    assert_string_equal(json_string_value(json_object_get(j, "at")), "2023-11-14T22:13:20Z");
    json_decref(j);
    /* A subject that fills its field without a NUL is still cut. */
    memset(r.subject, 'x', sizeof(r.subject));
    j = admin_refusal_json(&r, "mtls");
    assert_non_null(j);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "subject"))),
                     SHM_REFUSAL_NAME - 1);
    json_decref(j);
}

static json_int_t minute_count(json_t *h, const char *reason, size_t i)
{
    json_t *arr = json_object_get(json_object_get(h, "by_reason"), reason);
    return arr ? json_integer_value(json_array_get(arr, i)) : -1;
}

static void test_refusals_per_minute(void **state)
{
    (void)state;
    struct admin_hist h = {0};
    uint64_t tot[SHM_REASON_COUNT] = {0};
    int64_t t0 = 6000000; /* a minute boundary */
    size_t ca = shm_reason_index("unknown_ca"), nc = shm_reason_index("no_client_cert");
    tot[ca] = 7; /* before the first sample: not counted anywhere */
    assert_int_equal(admin_hist_note(&h, "mtls", tot, t0), TG_OK);
    tot[ca] = 9; /* two refusals in minute 0 */
    assert_int_equal(admin_hist_note(&h, "mtls", tot, t0 + 30), TG_OK);
    tot[ca] = 10; /* one more in minute 1 */
    assert_int_equal(admin_hist_note(&h, "mtls", tot, t0 + 65), TG_OK);
    tot[nc] = 4; /* minute 2 not sampled; minute 3: four */
    assert_int_equal(admin_hist_note(&h, "mtls", tot, t0 + 185), TG_OK);
    tot[nc] = 5;
    assert_int_equal(admin_hist_note(&h, "mtls", tot, t0 + 190), TG_OK);

    json_t *j = admin_hist_json(&h, "mtls", t0 + 190);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "step_seconds")), 60);
    /* The hour ends with minute 3 (the last slot, 59). */
    assert_int_equal(json_integer_value(json_object_get(j, "start_unix")), t0 + 180 - 59 * 60);
    assert_int_equal(minute_count(j, "unknown_ca", 56), 2);
    assert_int_equal(minute_count(j, "unknown_ca", 57), 1);
    assert_int_equal(minute_count(j, "unknown_ca", 58), 0);
    /* Minute 2 was not sampled: what happened then counts in minute 3. */
    assert_int_equal(minute_count(j, "no_client_cert", 59), 5);
    assert_int_equal(minute_count(j, "no_client_cert", 57), 0);
    /* Rejecting twin: reasons without a refusal are left out. */
    assert_int_equal(minute_count(j, "cert_expired", 0), -1);
    json_decref(j);

    /* An hour later the old minutes are gone; an unknown listener is empty. */
    j = admin_hist_json(&h, "mtls", t0 + 185 + 3600);
    assert_int_equal(json_object_size(json_object_get(j, "by_reason")), 0);
    json_decref(j);
    j = admin_hist_json(&h, "other", t0);
    assert_int_equal(json_object_size(json_object_get(j, "by_reason")), 0);
    json_decref(j);
    /* A listener not sampled for over an hour is forgotten. */
    admin_hist_prune(&h, t0 + 190 + 61 * 60);
    assert_null(h.ls);
    admin_hist_fini(&h);
}

static void test_ui_csp(void **state)
{
    (void)state;
    char csp[400];
    const char page[] = "<html><style>p{}</style><script>x</script></html>";
    assert_true(admin_ui_csp_for(page, strlen(page), csp, sizeof(csp)));
    assert_non_null(
        strstr(csp, "script-src 'sha256-LXEWQrcmsEQBYnyp+6wy9chTD7GQPMTbAiWHF5IaSIE='"));
    assert_non_null(strstr(csp, "style-src 'sha256-gG2yISYereRMiG2lMXrbiUgi0Ubw9p7QCeWcroOvy9Y='"));
    assert_non_null(strstr(csp, "default-src 'none'"));
    assert_null(strstr(csp, "unsafe"));
    /* Rejecting twins: no script, an unclosed one, no room. */
    const char noscript[] = "<html><style>p{}</style></html>";
    assert_false(admin_ui_csp_for(noscript, strlen(noscript), csp, sizeof(csp)));
    const char open[] = "<style>p{}</style><script>x";
    assert_false(admin_ui_csp_for(open, strlen(open), csp, sizeof(csp)));
    assert_false(admin_ui_csp_for(page, strlen(page), csp, 60));
    /* The page built into the binary has both. */
    assert_true(admin_ui_csp_for((const char *)admin_ui_page, admin_ui_page_len, csp, sizeof(csp)));
    assert_non_null(strstr(admin_ui_headers(), "Content-Security-Policy: default-src 'none'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_escape),
        cmocka_unit_test(test_out_grows),
        cmocka_unit_test(test_out_double),
        cmocka_unit_test(test_hist_boundaries),
        cmocka_unit_test(test_histogram_lines),
        cmocka_unit_test(test_reasons_and_versions),
        cmocka_unit_test(test_counting_and_folding),
        cmocka_unit_test(test_guard_host),
        cmocka_unit_test(test_guard_web_pages),
        cmocka_unit_test(test_guard_token),
        cmocka_unit_test(test_refusal_ring),
        cmocka_unit_test(test_utf8_clean),
        cmocka_unit_test(test_refusal_json),
        cmocka_unit_test(test_refusals_per_minute),
        cmocka_unit_test(test_ui_csp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
