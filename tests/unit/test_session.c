/* session facts (src/tls/session.c): the encoding a ticket carries, and its
 * bounded decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tls/tls.h"

/* Two framed "certificates" (the decoder does not parse DER). */
static const uint8_t CHAIN[] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0, 2, 'd', 'e'};

static void sample(struct tls_facts *f)
{
    memset(f, 0, sizeof(*f));
    f->first_time = 1700000000;
    f->has_client = true;
    f->is_complete = true;
    f->is_chain_kept = true;
    f->not_before = 1690000000;
    f->not_after = 1800000000;
    memset(f->ca_digest, 0xca, sizeof(f->ca_digest));
    f->n_certs = 3;
    for (size_t i = 0; i < f->n_certs; i++) {
        memset(f->certs[i].issuer, (int)i + 1, TLS_DIGEST_LEN);
        f->certs[i].serial_len = (uint8_t)(i * 10 + 1);
        f->certs[i].is_serial_negative = i == 2;
        memset(f->certs[i].serial, 0x40 + (int)i, f->certs[i].serial_len);
    }
    f->chain = CHAIN;
    f->chain_len = sizeof(CHAIN);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct tls_facts f, g;
    uint8_t buf[1024];
    sample(&f);
    size_t n = tls_facts_encode(&f, buf, sizeof(buf));
    assert_true(n > 0);
    assert_true(tls_facts_decode(buf, n, &g));
    assert_int_equal(g.first_time, f.first_time);
    assert_true(g.has_client && g.is_complete && g.is_chain_kept);
    assert_int_equal(g.not_before, f.not_before);
    assert_int_equal(g.not_after, f.not_after);
    assert_memory_equal(g.ca_digest, f.ca_digest, TLS_DIGEST_LEN);
    assert_int_equal(g.n_certs, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(g.certs[i].serial_len, f.certs[i].serial_len);
        assert_int_equal(g.certs[i].is_serial_negative, f.certs[i].is_serial_negative);
        assert_memory_equal(g.certs[i].serial, f.certs[i].serial, f.certs[i].serial_len);
        assert_memory_equal(g.certs[i].issuer, f.certs[i].issuer, TLS_DIGEST_LEN);
    }
    assert_int_equal(g.chain_len, sizeof(CHAIN));
    assert_memory_equal(g.chain, CHAIN, sizeof(CHAIN));

    /* Without a client only the start is kept. */
    memset(&f, 0, sizeof(f));
    f.first_time = 42;
    n = tls_facts_encode(&f, buf, sizeof(buf));
    assert_true(n > 0 && n < 32);
    assert_true(tls_facts_decode(buf, n, &g));
    assert_false(g.has_client);
    assert_int_equal(g.first_time, 42);
}

static void test_too_small_a_buffer(void **state)
{
    (void)state;
    struct tls_facts f;
    uint8_t buf[1024];
    sample(&f);
    size_t n = tls_facts_encode(&f, buf, sizeof(buf));
    for (size_t cap = 0; cap < n; cap++)
        assert_int_equal(tls_facts_encode(&f, buf, cap), 0);
    assert_int_equal(tls_facts_encode(&f, buf, n), n);
}

/* Every cut, every extra byte and every flipped length is refused without
 * reading past the input (run under ASan and valgrind by the test suites). */
static void test_truncated_and_garbled(void **state)
{
    (void)state;
    struct tls_facts f, g;
    uint8_t buf[1024];
    sample(&f);
    size_t n = tls_facts_encode(&f, buf, sizeof(buf));
    for (size_t len = 0; len < n; len++) {
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, buf, len);
        assert_false(tls_facts_decode(copy, len, &g));
        free(copy);
    }
    uint8_t longer[1025];
    memcpy(longer, buf, n);
    longer[n] = 0;
    assert_false(tls_facts_decode(longer, n + 1, &g));
    for (size_t i = 0; i < n; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            uint8_t *copy = malloc(n);
            memcpy(copy, buf, n);
            copy[i] ^= (uint8_t)(1u << bit);
            if (tls_facts_decode(copy, n, &g)) {
                /* Whatever it accepts stays within bounds. */
                assert_true(g.n_certs <= TLS_FACTS_MAX_CERTS);
                assert_true(g.chain_len <= n);
                for (size_t k = 0; k < g.n_certs; k++)
                    assert_true(g.certs[k].serial_len <= TLS_FACTS_SERIAL_MAX);
            }
            free(copy);
        }
    }
    /* A count of certificates over the limit is refused. */
    memset(&f, 0, sizeof(f));
    f.has_client = true;
    n = tls_facts_encode(&f, buf, sizeof(buf));
    /* magic(2) version(1) flags(1) first(8) nb(8) na(8) ca(16): n_certs */
    buf[44] = TLS_FACTS_MAX_CERTS + 1;
    assert_false(tls_facts_decode(buf, n, &g));
    /* Another version is not read. */
    sample(&f);
    n = tls_facts_encode(&f, buf, sizeof(buf));
    buf[2] = 99;
    assert_false(tls_facts_decode(buf, n, &g));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_too_small_a_buffer),
        cmocka_unit_test(test_truncated_and_garbled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
