/* The pure parts of /metrics (src/admin/metrics.c) and the shared counters
 * (src/core/shm.c): label escaping, histogram lines, bucket boundaries,
 * reason and version slots, folding a retired generation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "admin/admin.h"
#include "core/shm.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_escape),         cmocka_unit_test(test_out_grows),
        cmocka_unit_test(test_out_double),           cmocka_unit_test(test_hist_boundaries),
        cmocka_unit_test(test_histogram_lines),      cmocka_unit_test(test_reasons_and_versions),
        cmocka_unit_test(test_counting_and_folding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
