#include "http/http.h"

#include <string.h>

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static bool ieq(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

/*
 * The name of a rule's host pattern: "[v6]" gives what is inside the
 * brackets, and one trailing dot is dropped, as http_host_parse does for a
 * Host value, so that "example.com." names the same host as "example.com"
 * and cannot slip past a rule written without it.
 */
static void pattern_name(const char *s, size_t len, const char **name, size_t *name_len)
{
    *name = s;
    *name_len = len;
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        *name = s + 1;
        *name_len = len - 2;
        return;
    }
    if (len > 1 && s[len - 1] == '.')
        (*name_len)--;
}

/* How specific a rule's host is: higher wins. */
enum host_rank { HOST_NONE, HOST_WILDCARD, HOST_EXACT };

/* Matches and ranks one pattern. *suffix_len is the length of a wildcard's
 * ".suffix", so that the longest suffix wins among wildcards. */
static bool host_match(const char *pattern, const struct http_host *host, enum host_rank *rank,
                       size_t *suffix_len)
{
    const char *name = host->name, *pat;
    size_t name_len = host->name_len, pat_len;
    pattern_name(pattern, strlen(pattern), &pat, &pat_len);
    *suffix_len = 0;
    if (pat_len >= 2 && pat[0] == '*' && pat[1] == '.') {
        /* "*.suffix": at least one character of labels before ".suffix". */
        const char *suffix = pat + 1;
        size_t n = pat_len - 1;
        *rank = HOST_WILDCARD;
        *suffix_len = n;
        return name_len > n && ieq(name + name_len - n, suffix, n);
    }
    *rank = HOST_EXACT;
    return name_len == pat_len && ieq(name, pat, pat_len);
}

bool route_host_matches(const char *pattern, const char *host, size_t host_len)
{
    enum host_rank rank;
    size_t suffix_len;
    if (pattern == NULL)
        return true;
    struct http_host h;
    if (host == NULL || !http_host_parse(host, host_len, &h))
        return false;
    return host_match(pattern, &h, &rank, &suffix_len);
}

/* Orders two matching rules: positive when a is more specific than b. */
struct rank {
    enum host_rank host;
    size_t suffix_len;
    size_t path_len;
    bool has_client;
};

static int rank_cmp(const struct rank *a, const struct rank *b)
{
    if (a->host != b->host)
        return a->host > b->host ? 1 : -1;
    if (a->suffix_len != b->suffix_len)
        return a->suffix_len > b->suffix_len ? 1 : -1;
    if (a->path_len != b->path_len)
        return a->path_len > b->path_len ? 1 : -1;
    if (a->has_client != b->has_client)
        return a->has_client ? 1 : -1;
    return 0;
}

static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool is_unreserved(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

/* Where the segment before position o of out starts (its '/'), for "..". */
static size_t pop_segment(const char *out, size_t o)
{
    while (o > 0 && out[o - 1] != '/')
        o--;
    return o > 0 ? o - 1 : 0;
}

size_t route_normalize_path(const char *path, size_t len, char *out, size_t cap)
{
    size_t o = 0, i = 0;
    while (i < len) {
        /* One segment: an optional '/' and what follows up to the next. */
        size_t start = o;
        if (path[i] == '/') {
            if (o >= cap)
                return cap + 1;
            out[o++] = '/';
            i++;
        }
        size_t seg = o;
        while (i < len && path[i] != '/') {
            char ch = path[i];
            int hi = i + 2 < len ? hex_value(path[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(path[i + 2]) : -1;
            if (ch == '%' && hi >= 0 && lo >= 0 && is_unreserved((unsigned char)(hi * 16 + lo))) {
                ch = (char)(hi * 16 + lo);
                i += 2;
            }
            if (o >= cap)
                return cap + 1;
            out[o++] = ch;
            i++;
        }
        size_t n = o - seg;
        bool dot = n == 1 && out[seg] == '.';
        bool dotdot = n == 2 && out[seg] == '.' && out[seg + 1] == '.';
        if (!dot && !dotdot)
            continue;
        o = dot ? start : pop_segment(out, start);
        /* "/a/." and "/a/b/.." end in a directory: "/a/". */
        if (i == len) {
            if (o >= cap)
                return cap + 1;
            out[o++] = '/';
        }
    }
    return o;
}

const struct cfg_rule *route_match(const struct cfg_listener *l, const char *host, size_t host_len,
                                   const char *path, size_t path_len, X509 *client)
{
    const struct cfg_rule *best = NULL;
    struct rank best_rank = {0};
    char norm[HTTP_MAX_TARGET_BYTES];
    struct http_host h;
    /* The parser refuses a Host that does not parse; one built some other
     * way matches no host rule rather than some reading of it. */
    bool has_host = host != NULL && http_host_parse(host, host_len, &h);
    if (path == NULL)
        path_len = 0;
    /* Only the path takes part in matching, never the query or fragment. */
    for (size_t i = 0; i < path_len; i++) {
        if (path[i] == '?' || path[i] == '#') {
            path_len = i;
            break;
        }
    }
    size_t n = route_normalize_path(path, path_len, norm, sizeof(norm));
    if (n <= sizeof(norm)) {
        path = norm;
        path_len = n;
    }
    for (size_t i = 0; i < l->n_rules; i++) {
        const struct cfg_rule *r = &l->rules[i];
        struct rank rk = {HOST_NONE, 0, 0, r->has_client};
        if (r->has_client && (client == NULL || !tls_allow_rule_matches(&r->client, client)))
            continue;
        if (r->host != NULL) {
            if (!has_host || !host_match(r->host, &h, &rk.host, &rk.suffix_len))
                continue;
        }
        if (r->path != NULL) {
            rk.path_len = strlen(r->path);
            if (rk.path_len > path_len ||
                (rk.path_len > 0 && memcmp(path, r->path, rk.path_len) != 0))
                continue;
        }
        /* Strictly more specific only: on a tie the first in the file stays. */
        if (best == NULL || rank_cmp(&rk, &best_rank) > 0) {
            best = r;
            best_rank = rk;
        }
    }
    return best;
}
