/*
 * The Host header value and the authority of an absolute-form target
 * (RFC 9110 §7.2, RFC 3986 §3.2.2 and §3.2.3), parsed once and strictly so
 * that the parser, rule matching and the Host-vs-SNI check of mutual
 * listeners all see the same host.
 */
#include "http/http.h"

#include <arpa/inet.h>
#include <string.h>

/* RFC 3986 §2.3 unreserved and §2.2 sub-delims: what a reg-name holds.
 * pct-encoded is left out on purpose: no DNS name needs it, and a backend
 * that decodes it would see a different host than the one checked here. */
static bool is_reg_name_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("-._~!$&'()*+,;=", ch) != NULL);
}

/* RFC 3986 §3.2.2 IPv4address: four dec-octets, no leading zeros. */
static bool is_ipv4(const char *s, size_t len)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= len || s[i] != '.')
                return false;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < len && i - start < 3 && s[i] >= '0' && s[i] <= '9')
            v = v * 10 + (unsigned)(s[i++] - '0');
        size_t n = i - start;
        if (n == 0 || v > 255 || (n > 1 && s[start] == '0'))
            return false;
    }
    return i == len;
}

/* The inside of "[...]": an IPv6address only. IPvFuture ("v1.x") and
 * zone identifiers ("%25eth0", RFC 6874) name nothing a backend can use. */
static bool is_ipv6(const char *s, size_t len)
{
    char tmp[INET6_ADDRSTRLEN];
    struct in6_addr a;
    if (len < 2 || len >= sizeof(tmp))
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') ||
                  (ch >= 'A' && ch <= 'F') || ch == ':' || ch == '.';
        if (!ok)
            return false;
    }
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return inet_pton(AF_INET6, tmp, &a) == 1;
}

/* [":" port] after the host: 1 to 5 digits, at most 65535. */
static bool parse_port(const char *s, size_t len, struct http_host *out)
{
    if (len == 0)
        return true;
    if (s[0] != ':' || len < 2 || len > 6)
        return false;
    unsigned v = 0;
    for (size_t i = 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    out->has_port = true;
    out->port = v;
    return true;
}

static bool parse(const char *s, size_t len, struct http_host *out)
{
    out->name = s;
    if (s == NULL || len == 0) {
        out->kind = HTTP_HOST_EMPTY; /* RFC 9112 §3.2: an empty Host is allowed */
        return true;
    }
    size_t host_len;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || !is_ipv6(s + 1, (size_t)(close - s - 1)))
            return false;
        out->kind = HTTP_HOST_IPV6;
        out->name = s + 1;
        out->name_len = (size_t)(close - s - 1);
        host_len = (size_t)(close - s) + 1;
    } else {
        const char *colon = memchr(s, ':', len);
        host_len = colon != NULL ? (size_t)(colon - s) : len;
        if (host_len == 0)
            return false;
        for (size_t i = 0; i < host_len; i++)
            if (!is_reg_name_char((unsigned char)s[i]))
                return false;
        out->kind = is_ipv4(s, host_len) ? HTTP_HOST_IPV4 : HTTP_HOST_NAME;
        out->name_len = host_len;
        /* "example.com." names the host "example.com" does (RFC 1034 §3.1). */
        if (out->kind == HTTP_HOST_NAME && host_len > 1 && s[host_len - 1] == '.')
            out->name_len--;
        if (out->name_len > HTTP_HOST_MAX_NAME)
            return false;
    }
    return parse_port(s + host_len, len - host_len, out);
}

bool http_host_parse(const char *s, size_t len, struct http_host *out)
{
    memset(out, 0, sizeof(*out));
    if (parse(s, len, out))
        return true;
    memset(out, 0, sizeof(*out));
    return false;
}
