/* diag (src/core/diag.c): the JSON form of `tollgate check --format json`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/diag.h"

/* diag_json_string(s) into out (NUL-terminated). */
static void json_of(const char *s, char *out, size_t out_len)
{
    memset(out, 0, out_len);
    FILE *f = fmemopen(out, out_len - 1, "w");
    assert_non_null(f);
    diag_json_string(f, s);
    fclose(f);
}

static void test_plain_and_utf8_pass_through(void **state)
{
    (void)state;
    char out[128];
    json_of("listeners[0].tls.mode", out, sizeof(out));
    assert_string_equal(out, "\"listeners[0].tls.mode\"");
    json_of("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92", out, sizeof(out));
    assert_string_equal(out, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92\"");
    json_of(NULL, out, sizeof(out));
    assert_string_equal(out, "null");
}

static void test_quotes_backslashes_and_control_bytes_escaped(void **state)
{
    (void)state;
    char out[128];
    json_of("a \"q\" \\ b\nc\td\x01\x1f\x7f", out, sizeof(out));
    assert_string_equal(out, "\"a \\\"q\\\" \\\\ b\\nc\\td\\u0001\\u001f\\u007f\"");
}

static void test_malformed_utf8_replaced(void **state)
{
    (void)state;
    char out[128];
    /* a lone continuation byte, an overlong '/', a surrogate, above U+10FFFF,
     * and a sequence cut short by the end of the string */
    json_of("\x80|\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80|\xe2\x82", out, sizeof(out));
    assert_string_equal(out, "\"\\ufffd|\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|"
                             "\\ufffd\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\"");
}

static void test_print_json(void **state)
{
    (void)state;
    struct diag d;
    diag_init(&d);
    char out[512];
    memset(out, 0, sizeof(out));
    FILE *f = fmemopen(out, sizeof(out) - 1, "w");
    assert_non_null(f);
    diag_print_json(&d, f);
    diag_add(&d, DIAG_ERROR, "t.yaml", 3, 5, "workers", "must be %d to %d", 1, 64);
    diag_add(&d, DIAG_WARNING, NULL, 0, 0, NULL, "no listeners");
    diag_print_json(&d, f);
    fclose(f);
    assert_string_equal(out, "{\"ok\": true, \"errors\": [], \"warnings\": []}\n"
                             "{\"ok\": false, \"errors\": [{\"file\": \"t.yaml\", \"line\": 3, "
                             "\"column\": 5, \"key\": \"workers\", \"message\": \"must be 1 to "
                             "64\"}], \"warnings\": [{\"file\": null, \"line\": 0, \"column\": 0, "
                             "\"key\": null, \"message\": \"no listeners\"}]}\n");
    diag_fini(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_utf8_pass_through),
        cmocka_unit_test(test_quotes_backslashes_and_control_bytes_escaped),
        cmocka_unit_test(test_malformed_utf8_replaced),
        cmocka_unit_test(test_print_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
