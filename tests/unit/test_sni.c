/* What tollgate reads of a ClientHello's server_name extension itself
 * (tls_sni_from_hello), before OpenSSL parses it: every malformed body is
 * refused, never read past its end. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

#include <string.h>

#include "tls/tls.h"

/* An extension body holding the given entries (type, name). */
static size_t body(uint8_t *out, const uint8_t *types, const char *const *names, const size_t *lens,
                   size_t n)
{
    size_t o = 2;
    for (size_t i = 0; i < n; i++) {
        out[o++] = types[i];
        out[o++] = (uint8_t)(lens[i] >> 8);
        out[o++] = (uint8_t)lens[i];
        memcpy(out + o, names[i], lens[i]);
        o += lens[i];
    }
    out[0] = (uint8_t)((o - 2) >> 8);
    out[1] = (uint8_t)(o - 2);
    return o;
}

static bool one(const char *name, size_t len, char *dst, size_t cap)
{
    uint8_t buf[1024];
    const uint8_t type = 0;
    size_t n = body(buf, &type, &name, &len, 1);
    return tls_sni_from_hello(buf, n, dst, cap);
}

static void test_accepts_a_host_name(void **state)
{
    (void)state;
    char dst[256];
    assert_true(one("api.test", 8, dst, sizeof(dst)));
    assert_string_equal(dst, "api.test");
    static char big[256];
    memset(big, 'a', 255);
    assert_true(one(big, 255, dst, sizeof(dst)));
    assert_int_equal(strlen(dst), 255);
    /* the first host_name counts, after an entry of another type */
    uint8_t buf[64];
    const uint8_t types[] = {7, 0, 0};
    const char *const names[] = {"xx", "first.test", "second.test"};
    const size_t lens[] = {2, 10, 11};
    size_t n = body(buf, types, names, lens, 3);
    assert_true(tls_sni_from_hello(buf, n, dst, sizeof(dst)));
    assert_string_equal(dst, "first.test");
}

static void test_refuses_malformed_bodies(void **state)
{
    (void)state;
    char dst[256];
    static char big[300];
    memset(big, 'a', sizeof(big));
    assert_false(one("", 0, dst, sizeof(dst)));     /* empty name */
    assert_false(one(big, 256, dst, sizeof(dst)));  /* over 255 */
    assert_false(one("a\0b", 3, dst, sizeof(dst))); /* a NUL inside */
    assert_false(one("api.test", 8, dst, 8));       /* no room for the NUL */
    assert_false(tls_sni_from_hello((const uint8_t *)"", 0, dst, sizeof(dst)));
    assert_false(tls_sni_from_hello((const uint8_t *)"\x00", 1, dst, sizeof(dst)));
    uint8_t buf[64];
    const uint8_t type = 0;
    const char *name = "api.test";
    size_t len = 8;
    size_t n = body(buf, &type, &name, &len, 1);
    /* the list length says more, or less, than the body holds */
    buf[1]++;
    assert_false(tls_sni_from_hello(buf, n, dst, sizeof(dst)));
    buf[1] -= 2;
    assert_false(tls_sni_from_hello(buf, n, dst, sizeof(dst)));
    buf[1]++;
    /* the name's length runs past the end */
    buf[4]++;
    assert_false(tls_sni_from_hello(buf, n, dst, sizeof(dst)));
    buf[4]--;
    /* a body cut anywhere is refused, never read past */
    for (size_t cut = 0; cut < n; cut++)
        assert_false(tls_sni_from_hello(buf, cut, dst, sizeof(dst)));
    assert_true(tls_sni_from_hello(buf, n, dst, sizeof(dst)));
    /* no host_name entry at all */
    buf[2] = 1;
    assert_false(tls_sni_from_hello(buf, n, dst, sizeof(dst)));
}

static void test_name_hash(void **state)
{
    (void)state;
    /* case and one trailing dot do not count; anything else does */
    assert_true(tls_name_hash("A.Test", 6) == tls_name_hash("a.test.", 7));
    assert_true(tls_name_hash("a.test", 6) != tls_name_hash("b.test", 6));
    assert_true(tls_name_hash("a.test", 6) != tls_name_hash("a.test..", 8));
    assert_true(tls_name_hash("", 0) != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts_a_host_name),
        cmocka_unit_test(test_refuses_malformed_bodies),
        cmocka_unit_test(test_name_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
