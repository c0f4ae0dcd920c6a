/* suggest (src/core/suggest.c): edit distance and "did you mean" for the command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/suggest.h"

static const char *const commands[] = {"run",  "check", "demo",    "pki",
                                       "cert", "probe", "version", "help"};
static const char *const probe_opts[] = {"--sni",    "--ca",      "--cert",          "--key",
                                         "--crl",    "--timeout", "--password-file", "--json",
                                         "--tls1.2", "--tls1.3",  "--help"};

static void test_distance(void **state)
{
    (void)state;
    assert_int_equal(suggest_distance("check", "check"), 0);
    assert_int_equal(suggest_distance("chek", "check"), 1);   /* deletion */
    assert_int_equal(suggest_distance("checkk", "check"), 1); /* insertion */
    assert_int_equal(suggest_distance("chuck", "check"), 1);  /* substitution */
    assert_int_equal(suggest_distance("--sin", "--sni"), 1);  /* transposition */
    assert_int_equal(suggest_distance("", "abc"), 3);
    assert_int_equal(suggest_distance("abc", ""), 3);
    assert_int_equal(suggest_distance("ca", "abc"), 3); /* OSA, not full Damerau: 3, not 2 */
    assert_int_equal(suggest_distance("xyzzy", "check"), 5);
}

static void test_distance_refuses_long_words(void **state)
{
    (void)state;
    char longw[SUGGEST_MAX_LEN + 2];
    memset(longw, 'a', sizeof(longw) - 1);
    longw[sizeof(longw) - 1] = '\0';
    assert_int_equal(suggest_distance(longw, "a"), SIZE_MAX);
    longw[SUGGEST_MAX_LEN] = '\0'; /* exactly the limit: compared */
    assert_int_equal(suggest_distance(longw, longw), 0);
}

static void test_suggests_close_commands(void **state)
{
    (void)state;
    size_t n = sizeof(commands) / sizeof(commands[0]);
    assert_string_equal(suggest_closest("chek", commands, n), "check");
    assert_string_equal(suggest_closest("rnu", commands, n), "run");
    assert_string_equal(suggest_closest("verison", commands, n), "version");
    assert_string_equal(suggest_closest("porbe", commands, n), "probe");
    assert_string_equal(suggest_closest("vers", commands, n), "version"); /* prefix */
}

static void test_no_suggestion_when_nothing_is_close(void **state)
{
    (void)state;
    size_t n = sizeof(commands) / sizeof(commands[0]);
    assert_null(suggest_closest("xyzzy", commands, n));
    assert_null(suggest_closest("start", commands, n));
    assert_string_equal(suggest_closest("chxxk", commands, n), "check"); /* 2 edits, 5 bytes */
    assert_null(suggest_closest("cxxxk", commands, n));                  /* 3 edits: too far */
    assert_string_equal(suggest_closest("rn", commands, n), "run");      /* 1 edit, 2 bytes */
    assert_null(suggest_closest("xx", commands, n));                     /* 2 edits, 2 bytes */
    assert_null(suggest_closest("", commands, n));
    assert_null(suggest_closest("v", commands, n)); /* one byte: too short for a prefix */
    assert_null(suggest_closest("chek", commands, 0));
    char longw[SUGGEST_MAX_LEN + 8];
    memset(longw, 'c', sizeof(longw) - 1);
    longw[sizeof(longw) - 1] = '\0';
    assert_null(suggest_closest(longw, commands, n));
}

static void test_suggests_close_options(void **state)
{
    (void)state;
    size_t n = sizeof(probe_opts) / sizeof(probe_opts[0]);
    assert_string_equal(suggest_closest("--sin", probe_opts, n), "--sni");
    assert_string_equal(suggest_closest("--sin=example.com", probe_opts, n), "--sni");
    assert_string_equal(suggest_closest("--timout", probe_opts, n), "--timeout");
    assert_string_equal(suggest_closest("--passwd-file", probe_opts, n), "--password-file");
    assert_string_equal(suggest_closest("--pass", probe_opts, n), "--password-file"); /* prefix */
    assert_string_equal(suggest_closest("-sni", probe_opts, n), "--sni");
}

static void test_no_suggestion_for_far_or_ambiguous_options(void **state)
{
    (void)state;
    size_t n = sizeof(probe_opts) / sizeof(probe_opts[0]);
    assert_null(suggest_closest("--foo", probe_opts, n));
    assert_null(suggest_closest("--verbose", probe_opts, n));
    static const char *const pass[] = {"--password-file", "--passphrase"};
    assert_string_equal(suggest_closest("--passw", pass, 2), "--password-file");
    assert_null(suggest_closest("--pass", pass, 2)); /* a prefix of both */
    assert_null(suggest_closest("--=x", probe_opts, n));
}

static void test_print_unknown(void **state)
{
    (void)state;
    char out[256] = {0};
    FILE *f = fmemopen(out, sizeof(out) - 1, "w");
    assert_non_null(f);
    suggest_print_unknown(f, "tollgate", "command", "chek", commands,
                          sizeof(commands) / sizeof(commands[0]));
    suggest_print_unknown(f, "tollgate", "command", "xyzzy", commands,
                          sizeof(commands) / sizeof(commands[0]));
    fclose(f);
    assert_string_equal(out, "tollgate: unknown command 'chek'; did you mean 'check'?\n"
                             "tollgate: unknown command 'xyzzy'\n");
}

static void test_usage_error(void **state)
{
    (void)state;
    static const char *const opts[] = {"--sni", "--ca"};
    char out[256] = {0};
    FILE *f = fmemopen(out, sizeof(out) - 1, "w");
    assert_non_null(f);
    assert_int_equal(suggest_usage_error(f, "probe", "--sin", opts, 2), 2);
    assert_int_equal(suggest_usage_error(f, "probe", "--foo", opts, 2), 2);
    assert_int_equal(suggest_usage_error(f, "probe", "extra", opts, 2), 2);
    fclose(f);
    assert_string_equal(out, "tollgate probe: unknown option '--sin'; did you mean '--sni'?\n"
                             "see \"tollgate probe --help\"\n"
                             "tollgate probe: unknown option '--foo'\n"
                             "see \"tollgate probe --help\"\n"
                             "tollgate probe: unexpected argument 'extra'\n"
                             "see \"tollgate probe --help\"\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distance),
        cmocka_unit_test(test_distance_refuses_long_words),
        cmocka_unit_test(test_suggests_close_commands),
        cmocka_unit_test(test_no_suggestion_when_nothing_is_close),
        cmocka_unit_test(test_suggests_close_options),
        cmocka_unit_test(test_no_suggestion_for_far_or_ambiguous_options),
        cmocka_unit_test(test_print_unknown),
        cmocka_unit_test(test_usage_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
