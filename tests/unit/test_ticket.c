/* ticket (src/core/ticket.c): the key file parser, the rotation ring and
 * the shared copy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/ticket.h"

static void key_of(struct ticket_key *k, uint8_t fill)
{
    memset(k->bytes, fill, sizeof(k->bytes));
}

static void test_rotation_keeps_three(void **state)
{
    (void)state;
    struct ticket_set s;
    struct ticket_key k;
    bool cur = false;
    ticket_set_wipe(&s);
    for (uint8_t i = 1; i <= 5; i++) {
        key_of(&k, i);
        ticket_set_rotate(&s, &k);
        assert_int_equal(s.n, i < 3 ? i : 3);
        assert_int_equal(s.enc, 0);
        assert_int_equal(s.v[0].bytes[0], i);
    }
    /* 5 encrypts, 4 and 3 decrypt, 2 and 1 are gone and wiped. */
    uint8_t name[TICKET_NAME_LEN];
    memset(name, 5, sizeof(name));
    assert_non_null(ticket_set_find(&s, name, &cur));
    assert_true(cur);
    memset(name, 3, sizeof(name));
    assert_non_null(ticket_set_find(&s, name, &cur));
    assert_false(cur);
    memset(name, 2, sizeof(name));
    assert_null(ticket_set_find(&s, name, &cur));
    for (size_t i = 3; i < TICKET_KEYS_MAX; i++)
        for (size_t b = 0; b < TICKET_KEY_LEN; b++)
            assert_int_equal(s.v[i].bytes[b], 0);
}

static void test_rotation_after_a_file_set(void **state)
{
    (void)state;
    struct ticket_set s;
    struct ticket_key k;
    ticket_set_wipe(&s);
    s.n = 8; /* a file set of eight keys, then generated keys */
    for (size_t i = 0; i < 8; i++)
        key_of(&s.v[i], (uint8_t)(10 + i));
    key_of(&k, 99);
    ticket_set_rotate(&s, &k);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.v[0].bytes[0], 99);
    assert_int_equal(s.v[1].bytes[0], 10);
    assert_int_equal(s.v[2].bytes[0], 11);
    assert_int_equal(s.v[7].bytes[0], 0);
}

static bool parse(const void *data, size_t len, struct ticket_set *s, char *err)
{
    return ticket_file_parse(data, len, s, err, 160);
}

static void test_binary_file(void **state)
{
    (void)state;
    uint8_t data[3 * TICKET_KEY_LEN];
    struct ticket_set s;
    char err[160];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(0x80 | (i / TICKET_KEY_LEN)); /* not base64 */
    assert_true(parse(data, TICKET_KEY_LEN, &s, err));
    assert_int_equal(s.n, 1);
    assert_int_equal(s.enc, 0); /* a lone key encrypts */
    assert_true(parse(data, sizeof(data), &s, err));
    assert_int_equal(s.n, 3);
    assert_int_equal(s.enc, 1); /* the last but one encrypts */
    assert_int_equal(s.v[2].bytes[0], 0x82);
    assert_false(parse(data, TICKET_KEY_LEN + 1, &s, err));
    assert_non_null(strstr(err, "holds 81 bytes"));
    assert_int_equal(s.n, 0);
    assert_false(parse(data, 0, &s, err));
    assert_false(parse(data, TICKET_KEY_LEN - 1, &s, err));
    memset(data + TICKET_KEY_LEN, 0x80, TICKET_NAME_LEN); /* key 2 named as key 1 */
    assert_false(parse(data, 2 * TICKET_KEY_LEN, &s, err));
    assert_non_null(strstr(err, "same name"));
}

/* 80 bytes 0x00..0x4f, base64 (108 characters). */
static const char b64_key[] =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1"
    "Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk8=";

static void test_base64_file(void **state)
{
    (void)state;
    struct ticket_set s;
    char err[160], text[512];
    snprintf(text, sizeof(text), "%s\n\n", b64_key);
    assert_true(parse(text, strlen(text), &s, err));
    assert_int_equal(s.n, 1);
    for (size_t i = 0; i < TICKET_KEY_LEN; i++)
        assert_int_equal(s.v[0].bytes[i], i);
    snprintf(text, sizeof(text), "%s\r\n", b64_key); /* CRLF */
    assert_true(parse(text, strlen(text), &s, err));
    snprintf(text, sizeof(text), "%.100s\n", b64_key); /* cut */
    assert_false(parse(text, strlen(text), &s, err));
    assert_non_null(strstr(err, "line 1"));
    snprintf(text, sizeof(text), "%s\n%s\n", b64_key, b64_key); /* same name twice */
    assert_false(parse(text, strlen(text), &s, err));
    snprintf(text, sizeof(text), "\n \n");
    assert_false(parse(text, strlen(text), &s, err));
    assert_non_null(strstr(err, "no key"));
    /* one character changed to one outside the alphabet makes it binary, and
     * 109 bytes are no whole number of keys */
    snprintf(text, sizeof(text), "%s\n", b64_key);
    text[5] = '*';
    assert_false(parse(text, strlen(text), &s, err));
    assert_int_equal(s.n, 0);
}

static void test_shared_copy(void **state)
{
    (void)state;
    struct ticket_shm *shm = ticket_shm_new();
    struct ticket_set s, got;
    struct ticket_key k;
    assert_non_null(shm);
    assert_true(ticket_shm_read(shm, &got));
    assert_int_equal(got.n, 0);
    ticket_set_wipe(&s);
    key_of(&k, 7);
    ticket_set_rotate(&s, &k);
    ticket_shm_publish(shm, &s);
    assert_true(ticket_shm_read(shm, &got));
    assert_int_equal(got.n, 1);
    assert_memory_equal(got.v[0].bytes, k.bytes, TICKET_KEY_LEN);
    atomic_store(&shm->seq, 3); /* a writer caught half-way: the reader gives up */
    assert_false(ticket_shm_read(shm, &got));
    ticket_shm_free(shm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rotation_keeps_three),
        cmocka_unit_test(test_rotation_after_a_file_set),
        cmocka_unit_test(test_binary_file),
        cmocka_unit_test(test_base64_file),
        cmocka_unit_test(test_shared_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
