/* The escaping of peer values in the event log (log_kv_escape) and the
 * access log (log_json_escape): every byte, every cut length, NUL bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/log.h"

static const char MARK[] = "\\...\"";

/* No byte that could end a line, start a field or leave the value. */
static void assert_one_field(const char *out, size_t len)
{
    assert_int_equal(strlen(out), len);
    bool quoted = len > 0 && out[0] == '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)out[i];
        assert_true(ch >= 0x20 && ch < 0x7f);
        if (!quoted)
            assert_true(ch != ' ' && ch != '"' && ch != '=' && ch != '\\');
    }
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    fail_msg("bad hex digit %c", ch);
    return 0;
}

/* Reads a value back the way a log reader would; *is_cut says whether it
 * ended in the marker. Returns the decoded length. */
static size_t decode(const char *in, unsigned char *out, bool *is_cut)
{
    size_t n = 0, len = strlen(in);
    *is_cut = false;
    if (len == 0 || in[0] != '"') {
        memcpy(out, in, len);
        return len;
    }
    assert_true(len >= 2);
    for (size_t i = 1; i < len;) {
        if (in[i] == '"') {
            assert_int_equal(i, len - 1); /* the closing quote ends the value */
            return n;
        }
        if (in[i] != '\\') {
            out[n++] = (unsigned char)in[i++];
            continue;
        }
        assert_true(i + 1 < len);
        char e = in[i + 1];
        if (e == '\\' || e == '"') {
            out[n++] = (unsigned char)e;
            i += 2;
        } else if (e == 'x') {
            assert_true(i + 3 < len);
            out[n++] = (unsigned char)(hexval(in[i + 2]) * 16 + hexval(in[i + 3]));
            i += 4;
        } else {
            assert_string_equal(in + i, MARK);
            *is_cut = true;
            return n;
        }
    }
    fail_msg("no closing quote in %s", in);
    return 0;
}

static void test_kv_every_byte(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        char src[3] = {'a', (char)b, 'z'};
        char out[64];
        size_t n = log_kv_escape(out, sizeof(out), src, sizeof(src));
        assert_one_field(out, n);
        unsigned char back[64];
        bool cut;
        size_t m = decode(out, back, &cut);
        assert_false(cut);
        assert_int_equal(m, 3);
        assert_memory_equal(back, src, 3);
        bool plain = b > 0x20 && b < 0x7f && b != '"' && b != '\\' && b != '=';
        assert_int_equal(out[0] == '"', !plain);
        if (b < 0x20 || b >= 0x7f)
            assert_non_null(strstr(out, "\\x"));
    }
}

static void test_kv_forms(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(log_kv(out, sizeof(out), "example.com"), "example.com");
    assert_string_equal(log_kv(out, sizeof(out), ""), "\"\"");
    assert_string_equal(log_kv(out, sizeof(out), NULL), "\"\"");
    assert_string_equal(log_kv(out, sizeof(out), "a\nevent=forged"), "\"a\\x0aevent=forged\"");
    assert_string_equal(log_kv(out, sizeof(out), "x \"y\" \\z"), "\"x \\\"y\\\" \\\\z\"");
    assert_string_equal(log_kv(out, sizeof(out), "\xc3\xa9"), "\"\\xc3\\xa9\"");
    /* The marker cannot be forged: a peer's backslash is doubled. */
    assert_string_equal(log_kv(out, sizeof(out), "\\...\""), "\"\\\\...\\\"\"");
}

static void test_kv_embedded_nul(void **state)
{
    (void)state;
    char out[64];
    const char src[] = {'a', '\0', 'b'};
    size_t n = log_kv_escape(out, sizeof(out), src, sizeof(src));
    assert_string_equal(out, "\"a\\x00b\"");
    assert_int_equal(n, strlen(out));
    /* Rejecting twin: a NUL-terminated reading stops at the NUL. */
    assert_string_equal(log_kv(out, sizeof(out), src), "a");
}

/* Every output length from 0 up for a value mixing all three forms: the
 * result always fits, is one field, and is the source or a marked prefix. */
static void test_kv_cut_at_every_length(void **state)
{
    (void)state;
    const char *srcs[] = {"plain-host.example", "with space", "q\"b\\n\n\x01\xff end", ""};
    for (size_t k = 0; k < sizeof(srcs) / sizeof(srcs[0]); k++) {
        size_t slen = strlen(srcs[k]);
        char full[256];
        size_t full_len = log_kv_escape(full, sizeof(full), srcs[k], slen);
        for (size_t dl = 0; dl <= full_len + 2; dl++) {
            char *out = malloc(dl > 0 ? dl : 1);
            assert_non_null(out);
            size_t n = log_kv_escape(out, dl, srcs[k], slen);
            if (dl == 0) {
                assert_int_equal(n, 0);
                free(out);
                continue;
            }
            assert_true(n < dl);
            assert_one_field(out, n);
            if (dl < LOG_KV_MIN) {
                assert_int_equal(n, 0);
                free(out);
                continue;
            }
            unsigned char back[256];
            bool cut;
            size_t m = decode(out, back, &cut);
            assert_int_equal(cut, dl <= full_len);
            if (cut) {
                assert_true(m < slen);
                /* Cut as late as the room allowed: one more escape would not fit. */
                assert_true(n + 4 >= dl - 1);
            } else {
                assert_string_equal(out, full);
                assert_int_equal(m, slen);
            }
            assert_memory_equal(back, srcs[k], m);
            free(out);
        }
    }
}

static void test_kv_long_value(void **state)
{
    (void)state;
    size_t len = 64 * 1024;
    char *src = malloc(len);
    assert_non_null(src);
    for (size_t i = 0; i < len; i++)
        src[i] = (char)(i % 7 == 0 ? '\n' : 'a');
    char out[LOG_KV_MAX];
    size_t n = log_kv_escape(out, sizeof(out), src, len);
    assert_true(n < sizeof(out));
    assert_one_field(out, n);
    assert_string_equal(out + n - strlen(MARK), MARK);
    free(src);
}

static void test_json_every_byte(void **state)
{
    (void)state;
    for (int b = 1; b < 256; b++) {
        char src[4] = {'a', (char)b, 'z', '\0'};
        char out[64];
        size_t n = log_json_escape(out, sizeof(out), src);
        assert_int_equal(strlen(out), n);
        for (size_t i = 0; i < n; i++)
            assert_true((unsigned char)out[i] >= 0x20 && (unsigned char)out[i] < 0x7f);
        if (b < 0x20 || b == 0x7f) {
            char want[16];
            snprintf(want, sizeof(want), "a\\u%04xz", b);
            assert_string_equal(out, want);
        } else if (b >= 0x80) {
            /* A lone byte from 0x80 up is never well-formed UTF-8. */
            assert_string_equal(out, "a\\ufffdz");
        }
    }
}

static void test_json_utf8(void **state)
{
    (void)state;
    char out[128];
    log_json_escape(out, sizeof(out), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92");
    assert_string_equal(out, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92");
    /* Rejecting twins: overlong, surrogate, past U+10FFFF, truncated. */
    log_json_escape(out, sizeof(out), "\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82");
    assert_string_equal(out, "\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\\ufffd|"
                             "\\ufffd\\ufffd");
    /* Characters that end a line for some readers are escaped too. */
    log_json_escape(out, sizeof(out),
                    "a\xc2\x85"
                    "b\xe2\x80\xa8"
                    "c\xe2\x80\xa9"
                    "d\xc2\xa0");
    assert_string_equal(out, "a\\u0085b\\u2028c\\u2029d\xc2\xa0");
    /* A cut never splits a character or an escape. */
    log_json_escape(out, 5, "ab\xe2\x82\xac");
    assert_string_equal(out, "ab");
    log_json_escape(out, 7, "a\n");
    assert_string_equal(out, "a");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_every_byte),   cmocka_unit_test(test_kv_forms),
        cmocka_unit_test(test_kv_embedded_nul), cmocka_unit_test(test_kv_cut_at_every_length),
        cmocka_unit_test(test_kv_long_value),   cmocka_unit_test(test_json_every_byte),
        cmocka_unit_test(test_json_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
