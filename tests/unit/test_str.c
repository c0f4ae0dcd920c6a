/* The hot-path text helpers give what the libc calls they replace give:
 * str_copy and str_copy_n as snprintf("%s") and ("%.*s"), net_addr_host
 * as inet_ntop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"
#include "net/net.h"

static void check_copy_n(const char *src, size_t len, size_t dst_len)
{
    char want[64], got[64];
    memset(want, 'x', sizeof(want));
    memset(got, 'x', sizeof(got));
    int n = snprintf(want, dst_len, "%.*s", (int)len, src);
    assert_true(n >= 0);
    size_t w = str_copy_n(got, dst_len, src, len);
    assert_memory_equal(got, want, sizeof(got)); /* not a byte more written */
    if (dst_len > 0)
        assert_int_equal(w, strlen(want));
    else
        assert_int_equal(w, 0);
}

static void test_copy_n_as_snprintf(void **state)
{
    (void)state;
    const char text[] = "GET\0hidden"; /* a NUL inside the span ends it */
    for (size_t dst_len = 0; dst_len <= 12; dst_len++)
        for (size_t len = 0; len <= sizeof(text) - 1; len++)
            check_copy_n(text, len, dst_len);
    const char path[] = "/a/long/path?with=query";
    for (size_t dst_len = 0; dst_len <= sizeof(path) + 2; dst_len++)
        check_copy_n(path, sizeof(path) - 1, dst_len);
}

static void test_copy_as_snprintf(void **state)
{
    (void)state;
    const char *texts[] = {"", "T", "TLSv1.3", "TLS_AES_128_GCM_SHA256", "host.example"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        for (size_t dst_len = 0; dst_len <= 30; dst_len++) {
            char want[32], got[32];
            memset(want, 'x', sizeof(want));
            memset(got, 'x', sizeof(got));
            snprintf(want, dst_len, "%s", texts[i]);
            str_copy(got, dst_len, texts[i]);
            assert_memory_equal(got, want, sizeof(got));
        }
    }
}

static struct net_addr v4(const uint8_t b[4])
{
    struct net_addr a;
    memset(&a, 0, sizeof(a));
    struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, b, 4);
    a.len = sizeof(*in);
    return a;
}

static void check_v4(const uint8_t b[4])
{
    char want[INET_ADDRSTRLEN], got[INET_ADDRSTRLEN];
    struct net_addr a = v4(b);
    assert_non_null(inet_ntop(AF_INET, b, want, sizeof(want)));
    net_addr_host(&a, got, sizeof(got));
    assert_string_equal(got, want);
}

static void test_ipv4_as_inet_ntop(void **state)
{
    (void)state;
    for (unsigned v = 0; v < 256; v++) {
        for (int pos = 0; pos < 4; pos++) {
            uint8_t b[4] = {1, 22, 133, 4};
            b[pos] = (uint8_t)v;
            check_v4(b);
        }
    }
    srandom(7);
    for (int i = 0; i < 20000; i++) {
        uint8_t b[4];
        for (int k = 0; k < 4; k++)
            b[k] = (uint8_t)random();
        check_v4(b);
    }
}

static void test_ipv4_small_buffer(void **state)
{
    (void)state;
    uint8_t b[4] = {1, 2, 3, 4}, wide[4] = {255, 255, 255, 255};
    struct net_addr a = v4(b), w = v4(wide);
    char out[INET_ADDRSTRLEN];
    net_addr_host(&a, out, 8); /* "1.2.3.4" and its NUL: fits */
    assert_string_equal(out, "1.2.3.4");
    net_addr_host(&a, out, 7); /* one short: inet_ntop fails there too */
    assert_string_equal(out, "?");
    net_addr_host(&w, out, 16);
    assert_string_equal(out, "255.255.255.255");
    net_addr_host(&w, out, 15);
    assert_string_equal(out, "?");
}

static void test_ipv6_unchanged(void **state)
{
    (void)state;
    const char *texts[] = {"::1", "2001:db8::1", "::ffff:192.0.2.1", "fe80::1:2:3:4"};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct net_addr a;
        memset(&a, 0, sizeof(a));
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.ss;
        in6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, texts[i], &in6->sin6_addr), 1);
        a.len = sizeof(*in6);
        char want[INET6_ADDRSTRLEN], got[INET6_ADDRSTRLEN];
        assert_non_null(inet_ntop(AF_INET6, &in6->sin6_addr, want, sizeof(want)));
        net_addr_host(&a, got, sizeof(got));
        assert_string_equal(got, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_n_as_snprintf), cmocka_unit_test(test_copy_as_snprintf),
        cmocka_unit_test(test_ipv4_as_inet_ntop),  cmocka_unit_test(test_ipv4_small_buffer),
        cmocka_unit_test(test_ipv6_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
