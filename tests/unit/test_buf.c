/* struct buf (src/core/buf.c): offsets, compaction, backpressure, all-or-nothing appends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"

/* Writes n bytes counting up from first through wspace/commit. */
static void fill(struct buf *b, uint8_t first, size_t n)
{
    size_t space = 0;
    uint8_t *w = buf_wspace(b, &space);
    assert_true(n <= space);
    for (size_t i = 0; i < n; i++)
        w[i] = (uint8_t)(first + i);
    buf_commit(b, n);
}

/* The readable bytes count up from first, n of them. */
static void assert_rdata(const struct buf *b, uint8_t first, size_t n)
{
    size_t len = 0;
    const uint8_t *r = buf_rdata(b, &len);
    assert_int_equal(len, n);
    assert_int_equal(buf_len(b), n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(r[i], (uint8_t)(first + i));
}

static void test_init_fini(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 64), TG_OK);
    assert_non_null(b.data);
    assert_int_equal(b.cap, 64);
    assert_true(buf_is_empty(&b));
    assert_false(buf_is_full(&b));
    buf_fini(&b);
    assert_null(b.data);
    assert_int_equal(b.cap, 0);
    buf_fini(&b); /* twice is harmless */
}

static void test_write_then_read(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 64), TG_OK);
    size_t space = 0;
    uint8_t *w = buf_wspace(&b, &space);
    assert_ptr_equal(w, b.data);
    assert_int_equal(space, 64);

    fill(&b, 1, 10);
    assert_false(buf_is_empty(&b));
    assert_rdata(&b, 1, 10);
    w = buf_wspace(&b, &space);
    assert_ptr_equal(w, b.data + 10);
    assert_int_equal(space, 54);

    buf_consume(&b, 4);
    assert_rdata(&b, 5, 6);
    buf_consume(&b, 0);
    assert_rdata(&b, 5, 6);

    /* reading everything rewinds both offsets, so the whole capacity is free again */
    buf_consume(&b, 6);
    assert_true(buf_is_empty(&b));
    assert_int_equal(b.r, 0);
    assert_int_equal(b.w, 0);
    w = buf_wspace(&b, &space);
    assert_ptr_equal(w, b.data);
    assert_int_equal(space, 64);
    buf_fini(&b);
}

static void test_compacts_when_tail_is_short(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 16), TG_OK);
    fill(&b, 0, 14);
    buf_consume(&b, 10);
    /* 2 bytes of tail (< cap/4): the 4 unread bytes move to the front */
    size_t space = 0;
    uint8_t *w = buf_wspace(&b, &space);
    assert_int_equal(space, 12);
    assert_ptr_equal(w, b.data + 4);
    assert_int_equal(b.r, 0);
    assert_rdata(&b, 10, 4);
    buf_fini(&b);
}

static void test_no_compaction_when_tail_is_long(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 16), TG_OK);
    fill(&b, 0, 8);
    buf_consume(&b, 4);
    size_t before = 0;
    const uint8_t *r = buf_rdata(&b, &before);
    /* 8 bytes of tail (>= cap/4): nothing is copied */
    size_t space = 0;
    uint8_t *w = buf_wspace(&b, &space);
    assert_int_equal(space, 8);
    assert_ptr_equal(w, b.data + 8);
    size_t after = 0;
    assert_ptr_equal(buf_rdata(&b, &after), r);
    assert_rdata(&b, 4, 4);
    buf_fini(&b);
}

static void test_full_buffer(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 16), TG_OK);
    fill(&b, 0, 15);
    assert_false(buf_is_full(&b));
    fill(&b, 15, 1);
    assert_true(buf_is_full(&b));
    size_t space = 99;
    buf_wspace(&b, &space);
    assert_int_equal(space, 0);
    assert_rdata(&b, 0, 16);

    /* one byte read makes one byte writable again, at the end after compacting */
    buf_consume(&b, 1);
    assert_false(buf_is_full(&b));
    buf_wspace(&b, &space);
    assert_int_equal(space, 1);
    fill(&b, 16, 1);
    assert_true(buf_is_full(&b));
    assert_rdata(&b, 1, 16);
    buf_fini(&b);
}

static void test_append(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 8), TG_OK);
    assert_int_equal(buf_append(&b, "abc", 3), TG_OK);
    assert_int_equal(buf_append(&b, "defgh", 5), TG_OK);
    assert_true(buf_is_full(&b));
    size_t len = 0;
    const uint8_t *r = buf_rdata(&b, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(r, "abcdefgh", 8);
    assert_int_equal(buf_append(&b, "x", 0), TG_OK);
    assert_int_equal(buf_len(&b), 8);
    buf_fini(&b);
}

/* Too big for the free space: nothing is written at all. */
static void test_append_all_or_nothing(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 8), TG_OK);
    assert_int_equal(buf_append(&b, "abcde", 5), TG_OK);
    assert_int_equal(buf_append(&b, "wxyz", 4), TG_E_AGAIN);
    size_t len = 0;
    const uint8_t *r = buf_rdata(&b, &len);
    assert_int_equal(len, 5);
    assert_memory_equal(r, "abcde", 5);
    assert_int_equal(buf_append(&b, "xyz", 3), TG_OK);

    struct buf empty;
    assert_int_equal(buf_init(&empty, 4), TG_OK);
    assert_int_equal(buf_append(&empty, "12345", 5), TG_E_AGAIN);
    assert_true(buf_is_empty(&empty));
    buf_fini(&empty);
    buf_fini(&b);
}

/* Space freed at the front is used when the tail alone is too short. */
static void test_append_compacts(void **state)
{
    (void)state;
    struct buf b;
    assert_int_equal(buf_init(&b, 8), TG_OK);
    assert_int_equal(buf_append(&b, "abcdef", 6), TG_OK);
    buf_consume(&b, 4);
    assert_int_equal(buf_append(&b, "ghijkl", 6), TG_OK);
    assert_true(buf_is_full(&b));
    size_t len = 0;
    const uint8_t *r = buf_rdata(&b, &len);
    assert_int_equal(len, 8);
    assert_memory_equal(r, "efghijkl", 8);
    assert_int_equal(buf_append(&b, "m", 1), TG_E_AGAIN);
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_fini),
        cmocka_unit_test(test_write_then_read),
        cmocka_unit_test(test_compacts_when_tail_is_short),
        cmocka_unit_test(test_no_compaction_when_tail_is_long),
        cmocka_unit_test(test_full_buffer),
        cmocka_unit_test(test_append),
        cmocka_unit_test(test_append_all_or_nothing),
        cmocka_unit_test(test_append_compacts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
