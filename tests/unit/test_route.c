/* Unit tests for the rule matcher (src/http/route.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http/http.h"

#define RULE(h, p)                                                                                 \
    {                                                                                              \
        .host = (char *)(h), .path = (char *)(p)                                                   \
    }

/* The index of the rule route_match picks for host and target, or -1. */
static int pick(struct cfg_rule *rules, size_t n, const char *host, const char *target)
{
    struct cfg_listener l;
    memset(&l, 0, sizeof(l));
    l.rules = rules;
    l.n_rules = n;
    const struct cfg_rule *r =
        route_match(&l, host, host ? strlen(host) : 0, target, target ? strlen(target) : 0, NULL);
    return r == NULL ? -1 : (int)(r - rules);
}

static bool host_ok(const char *pattern, const char *host)
{
    return route_host_matches(pattern, host, strlen(host));
}

static void test_exact_host(void **state)
{
    (void)state;
    assert_true(host_ok("api.example.com", "api.example.com"));
    assert_true(host_ok("api.example.com", "API.Example.COM"));
    assert_true(host_ok("api.example.com", "api.example.com:8443"));
    assert_true(host_ok("API.EXAMPLE.COM", "api.example.com:443"));
    assert_true(host_ok("api.example.com", "api.example.com."));
    assert_true(host_ok("api.example.com", "api.example.com.:8443"));
    /* Rejecting twins. */
    assert_false(host_ok("api.example.com", "example.com"));
    assert_false(host_ok("api.example.com", "xapi.example.com"));
    assert_false(host_ok("api.example.com", "api.example.co"));
    assert_false(host_ok("api.example.com", "api.example.com.evil"));
    assert_false(host_ok("api.example.com", "api.example.comx:8443"));
    assert_false(host_ok("api.example.com", ""));
    assert_false(host_ok("api.example.com", ":8443"));
    assert_false(route_host_matches("api.example.com", NULL, 0));
}

static void test_wildcard_host(void **state)
{
    (void)state;
    assert_true(host_ok("*.example.com", "a.example.com"));
    assert_true(host_ok("*.example.com", "a.b.example.com"));
    assert_true(host_ok("*.example.com", "WWW.EXAMPLE.com:443"));
    assert_true(host_ok("*.Example.Com", "www.example.com"));
    /* Rejecting twins: at least one label before the suffix. */
    assert_false(host_ok("*.example.com", "example.com"));
    assert_false(host_ok("*.example.com", ".example.com"));
    assert_false(host_ok("*.example.com", "badexample.com"));
    assert_false(host_ok("*.example.com", "a.example.com.evil"));
    assert_false(host_ok("*.example.com", "a.example.org"));
}

static void test_ipv6_host(void **state)
{
    (void)state;
    assert_true(host_ok("[::1]", "[::1]:8443"));
    assert_true(host_ok("::1", "[::1]:8443"));
    assert_true(host_ok("::1", "[::1]"));
    assert_true(host_ok("2001:db8::1", "[2001:DB8::1]"));
    assert_false(host_ok("::1", "[::2]:8443"));
    assert_false(host_ok("::1", "[::1"));
    /* A Host is uri-host: an IPv6 literal only in brackets. */
    assert_false(host_ok("::1", "::1"));
    assert_false(host_ok("::1", "[::1]evil"));
    assert_false(host_ok("127.0.0.1", "[::1]:8443"));
    assert_true(host_ok("127.0.0.1", "127.0.0.1:8443"));
}

static void test_no_host_rule_matches_any_host(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {RULE(NULL, "/ping")};
    assert_int_equal(pick(rules, 1, "anything.example", "/ping"), 0);
    assert_int_equal(pick(rules, 1, NULL, "/ping"), 0);
    assert_int_equal(pick(rules, 1, "", "/ping"), 0);
    assert_int_equal(pick(rules, 1, NULL, "/pong"), -1);
}

static void test_host_rule_needs_a_host(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {RULE("api.example.com", NULL), RULE("*.example.com", NULL)};
    assert_int_equal(pick(rules, 2, "api.example.com", "/"), 0);
    assert_int_equal(pick(rules, 2, "www.example.com", "/"), 1);
    assert_int_equal(pick(rules, 2, NULL, "/"), -1);
    assert_int_equal(pick(rules, 2, "", "/"), -1);
    assert_int_equal(pick(rules, 2, "example.org", "/"), -1);
}

static void test_path_prefix(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {RULE(NULL, "/v1/")};
    assert_int_equal(pick(rules, 1, "h", "/v1/"), 0);
    assert_int_equal(pick(rules, 1, "h", "/v1/users/7"), 0);
    /* Rejecting twins: shorter, different case, elsewhere. */
    assert_int_equal(pick(rules, 1, "h", "/v1"), -1);
    assert_int_equal(pick(rules, 1, "h", "/V1/users"), -1);
    assert_int_equal(pick(rules, 1, "h", "/api/v1/"), -1);
    assert_int_equal(pick(rules, 1, "h", ""), -1);
    assert_int_equal(pick(rules, 1, "h", NULL), -1);
}

static void test_query_and_fragment_ignored(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {RULE(NULL, "/v1/"), RULE(NULL, "/search")};
    assert_int_equal(pick(rules, 2, "h", "/v1/x?y=1"), 0);
    assert_int_equal(pick(rules, 2, "h", "/search?q=/v1/"), 1);
    assert_int_equal(pick(rules, 2, "h", "/search#/v1/"), 1);
    /* The prefix has to be in the path, not in the query or fragment. */
    assert_int_equal(pick(rules, 2, "h", "/v?1/"), -1);
    assert_int_equal(pick(rules, 2, "h", "/v1?/"), -1);
    assert_int_equal(pick(rules, 2, "h", "/v1#/"), -1);
    assert_int_equal(pick(rules, 2, "h", "/?/search"), -1);
}

static void test_host_precedence(void **state)
{
    (void)state;
    /* Host specificity wins over path length: exact, longest wildcard, none. */
    struct cfg_rule rules[] = {
        RULE(NULL, "/a/b/c/"),
        RULE("*.example.com", "/a/b/"),
        RULE("*.api.example.com", "/a/"),
        RULE("x.api.example.com", "/"),
    };
    assert_int_equal(pick(rules, 4, "x.api.example.com", "/a/b/c/d"), 3);
    assert_int_equal(pick(rules, 4, "y.api.example.com", "/a/b/c/d"), 2);
    assert_int_equal(pick(rules, 4, "www.example.com", "/a/b/c/d"), 1);
    assert_int_equal(pick(rules, 4, "www.example.org", "/a/b/c/d"), 0);
    /* A host rule whose path does not match gives way to a less specific one. */
    assert_int_equal(pick(rules, 4, "y.api.example.com", "/z"), -1);
    assert_int_equal(pick(rules, 4, "x.api.example.com", "/z"), 3);
    assert_int_equal(pick(rules, 4, "y.api.example.com", "/a/b/"), 2);
    assert_int_equal(pick(rules, 4, "www.example.com", "/a/"), -1);
}

static void test_precedence_independent_of_order(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {
        RULE("x.api.example.com", "/"),
        RULE("*.api.example.com", "/a/"),
        RULE("*.example.com", "/a/b/"),
        RULE(NULL, "/a/b/c/"),
    };
    assert_int_equal(pick(rules, 4, "x.api.example.com", "/a/b/c/d"), 0);
    assert_int_equal(pick(rules, 4, "y.api.example.com", "/a/b/c/d"), 1);
    assert_int_equal(pick(rules, 4, "www.example.com", "/a/b/c/d"), 2);
    assert_int_equal(pick(rules, 4, "www.example.org", "/a/b/c/d"), 3);
}

static void test_longest_path_wins(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {
        RULE("h.example", NULL),
        RULE("h.example", "/"),
        RULE("h.example", "/api/v2/"),
        RULE("h.example", "/api/"),
    };
    assert_int_equal(pick(rules, 4, "h.example", "/api/v2/users"), 2);
    assert_int_equal(pick(rules, 4, "h.example", "/api/v1/users"), 3);
    assert_int_equal(pick(rules, 4, "h.example", "/static"), 1);
    assert_int_equal(pick(rules, 4, "h.example", "*"), 0);
    assert_int_equal(pick(rules, 4, "other.example", "/api/v2/users"), -1);
}

static void test_first_in_file_on_ties(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {
        RULE("*.example.com", "/x"),
        RULE("*.EXAMPLE.com", "/x"),
        RULE(NULL, NULL),
        RULE(NULL, NULL),
        RULE("a.example.com", "/x"),
        RULE("A.example.com", "/x"),
    };
    assert_int_equal(pick(rules, 6, "b.example.com", "/x"), 0);
    assert_int_equal(pick(rules, 6, "other", "/y"), 2);
    assert_int_equal(pick(rules, 6, "a.example.com:8443", "/x/y"), 4);
}

static void test_port_and_case_ignored(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {RULE("Api.Example.Com", "/v1/"), RULE("*.example.com", NULL)};
    assert_int_equal(pick(rules, 2, "api.example.com:8443", "/v1/x"), 0);
    assert_int_equal(pick(rules, 2, "API.EXAMPLE.COM", "/v1/x"), 0);
    assert_int_equal(pick(rules, 2, "API.EXAMPLE.COM.:443", "/v1/x"), 0);
    assert_int_equal(pick(rules, 2, "api.example.com:8443", "/v2/x"), 1);
    assert_int_equal(pick(rules, 2, "WWW.example.COM:1", "/"), 1);
}

static void test_ipv6_host_rule(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {RULE("::1", "/six"), RULE("127.0.0.1", "/four")};
    assert_int_equal(pick(rules, 2, "[::1]:8443", "/six"), 0);
    assert_int_equal(pick(rules, 2, "[::1]", "/six/x"), 0);
    assert_int_equal(pick(rules, 2, "127.0.0.1:8443", "/four"), 1);
    assert_int_equal(pick(rules, 2, "[::1]:8443", "/four"), -1);
    assert_int_equal(pick(rules, 2, "[::2]:8443", "/six"), -1);
}

/* ---- http_host_parse ---- */

struct host_want {
    enum http_host_kind kind;
    const char *name;
    bool has_port;
    unsigned port;
};

static void host_is(const char *value, struct host_want w)
{
    struct http_host h;
    if (!http_host_parse(value, strlen(value), &h))
        fail_msg("Host \"%s\" refused", value);
    assert_int_equal(h.kind, w.kind);
    if (h.name_len != strlen(w.name) || memcmp(h.name, w.name, h.name_len) != 0)
        fail_msg("Host \"%s\" gave name %.*s, want %s", value, (int)h.name_len, h.name, w.name);
    assert_int_equal(h.has_port, w.has_port);
    assert_int_equal(h.port, w.port);
}

static void host_refused(const char *value, size_t len)
{
    struct http_host h;
    memset(&h, 0x55, sizeof(h));
    if (http_host_parse(value, len, &h))
        fail_msg("Host \"%.*s\" accepted", (int)len, value);
    assert_null(h.name);
    assert_int_equal(h.name_len, 0);
}

#define REFUSED(s) host_refused(s, strlen(s))

/* RFC 9110 §7.2 and RFC 3986 §3.2.2, §3.2.3: uri-host [":" port]. */
static void test_host_parse(void **state)
{
    (void)state;
    host_is("localhost", (struct host_want){HTTP_HOST_NAME, "localhost", false, 0});
    host_is("LocalHost:443", (struct host_want){HTTP_HOST_NAME, "LocalHost", true, 443});
    host_is("localhost:65535", (struct host_want){HTTP_HOST_NAME, "localhost", true, 65535});
    host_is("localhost:0", (struct host_want){HTTP_HOST_NAME, "localhost", true, 0});
    host_is("a.b-c_d~e", (struct host_want){HTTP_HOST_NAME, "a.b-c_d~e", false, 0});
    host_is("127.0.0.1", (struct host_want){HTTP_HOST_IPV4, "127.0.0.1", false, 0});
    host_is("255.255.255.255:80", (struct host_want){HTTP_HOST_IPV4, "255.255.255.255", true, 80});
    host_is("[::1]", (struct host_want){HTTP_HOST_IPV6, "::1", false, 0});
    host_is("[::1]:443", (struct host_want){HTTP_HOST_IPV6, "::1", true, 443});
    host_is("[2001:DB8::1.2.3.4]",
            (struct host_want){HTTP_HOST_IPV6, "2001:DB8::1.2.3.4", false, 0});
    host_is("", (struct host_want){HTTP_HOST_EMPTY, "", false, 0});
    /* One trailing dot is dropped from a name, never from an address. */
    host_is("localhost.", (struct host_want){HTTP_HOST_NAME, "localhost", false, 0});
    host_is("LOCALHOST.:8443", (struct host_want){HTTP_HOST_NAME, "LOCALHOST", true, 8443});
    host_is("localhost..", (struct host_want){HTTP_HOST_NAME, "localhost.", false, 0});
    host_is(".", (struct host_want){HTTP_HOST_NAME, ".", false, 0});
    /* Not dotted-quad: a reg-name, not an address. */
    host_is("127.1", (struct host_want){HTTP_HOST_NAME, "127.1", false, 0});
    host_is("127.0.0.01", (struct host_want){HTTP_HOST_NAME, "127.0.0.01", false, 0});
    host_is("256.0.0.1", (struct host_want){HTTP_HOST_NAME, "256.0.0.1", false, 0});
    host_is("127.0.0.1.", (struct host_want){HTTP_HOST_NAME, "127.0.0.1", false, 0});

    /* Rejecting twins. Ports: empty, not decimal, too large, too long. */
    REFUSED(":443");
    REFUSED(":");
    REFUSED("localhost:");
    REFUSED("localhost:0x50");
    REFUSED("localhost:65536");
    REFUSED("localhost:99999");
    REFUSED("localhost:000443");
    REFUSED("localhost:+443");
    REFUSED("localhost: 443");
    REFUSED("localhost:evil.example");
    REFUSED("localhost:443:443");
    /* IP literals: only IPv6 in brackets, whole, nothing after but a port. */
    REFUSED("[localhost]evil.example");
    REFUSED("[localhost]");
    REFUSED("[::1]evil.example");
    REFUSED("[::1]:");
    REFUSED("[::1]:x");
    REFUSED("[::1]]");
    REFUSED("[::1");
    REFUSED("::1]");
    REFUSED("::1");
    REFUSED("[]");
    REFUSED("[127.0.0.1]");
    REFUSED("[v1.x]");
    REFUSED("[fe80::1%25eth0]");
    REFUSED("[::g]");
    REFUSED("x[::1]");
    /* Characters outside a reg-name. */
    REFUSED("a b");
    REFUSED(" localhost");
    REFUSED("localhost\t");
    REFUSED("a@b");
    REFUSED("user@localhost");
    REFUSED("a/b");
    REFUSED("a\\b");
    REFUSED("a?b");
    REFUSED("a#b");
    REFUSED("a\"b");
    REFUSED("a<b");
    REFUSED("%6cocalhost");
    REFUSED("localhost%2e");
    REFUSED("caf\xc3\xa9");
    host_refused("local\0host", 10);
    /* Length: 253 bytes pass (254 with the trailing dot), 254 do not. */
    char name[300];
    memset(name, 'a', sizeof(name));
    host_refused(name, sizeof(name));
    host_refused(name, 254);
    struct http_host h;
    assert_true(http_host_parse(name, 253, &h));
    assert_int_equal(h.name_len, 253);
    name[253] = '.';
    assert_true(http_host_parse(name, 254, &h));
    assert_int_equal(h.name_len, 253);
}

/* Rules read the Host as the parser does: a spelling the parser refuses
 * matches no host rule, and one it accepts matches as parsed. */
static void test_route_reads_host_as_parsed(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {RULE("localhost", "/"), RULE(NULL, "/")};
    assert_int_equal(pick(rules, 2, "localhost", "/"), 0);
    assert_int_equal(pick(rules, 2, "LOCALHOST.:443", "/"), 0);
    assert_int_equal(pick(rules, 2, "localhost:evil.example", "/"), 1);
    assert_int_equal(pick(rules, 2, "[localhost]evil.example", "/"), 1);
    assert_int_equal(pick(rules, 2, "localhost:", "/"), 1);
    assert_int_equal(pick(rules, 2, "%6cocalhost", "/"), 1);
}

static void norm_is(const char *in, const char *want)
{
    char out[64];
    size_t n = route_normalize_path(in, strlen(in), out, sizeof(out));
    if (n > sizeof(out) || n != strlen(want) || memcmp(out, want, n) != 0)
        fail_msg("normalize(%s) gave %.*s, want %s", in, (int)(n > sizeof(out) ? 0 : n), out, want);
}

/* RFC 3986 §5.2.4 and §6.2.2: what a backend acts on. */
static void test_normalize_path(void **state)
{
    (void)state;
    norm_is("/a/b/c", "/a/b/c");
    norm_is("/a/./b", "/a/b");
    norm_is("/a/b/../c", "/a/c");
    norm_is("/a/b/..", "/a/");
    norm_is("/a/.", "/a/");
    norm_is("/../../x", "/x");
    norm_is("/..", "/");
    norm_is("/%2e%2E/admin/", "/admin/");
    norm_is("/x/%2e%2e/admin", "/admin");
    norm_is("/%61dmin/%7euser", "/admin/~user");
    norm_is("/a%2Fb", "/a%2Fb"); /* a reserved escape stays */
    norm_is("/a%2", "/a%2");
    norm_is("/a%zz", "/a%zz");
    norm_is("/a..b/.c/", "/a..b/.c/"); /* dots inside a segment are a name */
    norm_is("", "");
    char small[4];
    assert_int_equal(route_normalize_path("/abcdef", 7, small, sizeof(small)), sizeof(small) + 1);
}

/* A rule's path cannot be passed by dot segments or escapes. */
static void test_path_rule_not_dodged(void **state)
{
    (void)state;
    struct cfg_rule rules[] = {RULE(NULL, "/admin/"), RULE(NULL, "/")};
    assert_int_equal(pick(rules, 2, "h", "/admin/x"), 0);
    assert_int_equal(pick(rules, 2, "h", "/x/../admin/x"), 0);
    assert_int_equal(pick(rules, 2, "h", "/./admin/x"), 0);
    assert_int_equal(pick(rules, 2, "h", "/%61dmin/x"), 0);
    assert_int_equal(pick(rules, 2, "h", "/x/%2e%2e/admin/?q=/"), 0);
    /* Rejecting twins. */
    assert_int_equal(pick(rules, 2, "h", "/admin"), 1);
    assert_int_equal(pick(rules, 2, "h", "/admin/../x"), 1);
    assert_int_equal(pick(rules, 2, "h", "/Admin/x"), 1);
    assert_int_equal(pick(rules, 2, "h", "/admin%2Fx"), 1);
}

static void test_no_rules(void **state)
{
    (void)state;
    assert_int_equal(pick(NULL, 0, "h", "/"), -1);
    struct cfg_rule rules[] = {RULE("a.example", "/a"), RULE("*.b.example", "/b")};
    assert_int_equal(pick(rules, 2, "a.example", "/b"), -1);
    assert_int_equal(pick(rules, 2, "x.b.example", "/a"), -1);
    assert_int_equal(pick(rules, 2, "b.example", "/b"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_host),
        cmocka_unit_test(test_wildcard_host),
        cmocka_unit_test(test_ipv6_host),
        cmocka_unit_test(test_no_host_rule_matches_any_host),
        cmocka_unit_test(test_host_rule_needs_a_host),
        cmocka_unit_test(test_path_prefix),
        cmocka_unit_test(test_query_and_fragment_ignored),
        cmocka_unit_test(test_host_precedence),
        cmocka_unit_test(test_precedence_independent_of_order),
        cmocka_unit_test(test_longest_path_wins),
        cmocka_unit_test(test_first_in_file_on_ties),
        cmocka_unit_test(test_port_and_case_ignored),
        cmocka_unit_test(test_ipv6_host_rule),
        cmocka_unit_test(test_no_rules),
        cmocka_unit_test(test_normalize_path),
        cmocka_unit_test(test_path_rule_not_dodged),
        cmocka_unit_test(test_host_parse),
        cmocka_unit_test(test_route_reads_host_as_parsed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
