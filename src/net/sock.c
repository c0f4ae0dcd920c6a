#include "net/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum tg_status net_addr_parse(const char *s, bool allow_port0, struct net_addr *out, char *err,
                              size_t err_len)
{
    char host[256];
    const char *port_s;
    memset(out, 0, sizeof(*out));

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') {
            snprintf(err, err_len, "expected \"[IPv6]:PORT\", got \"%s\"", s);
            return TG_E_CONFIG;
        }
        size_t n = (size_t)(close - s - 1);
        if (n == 0 || n >= sizeof(host)) {
            snprintf(err, err_len, "bad IPv6 address in \"%s\"", s);
            return TG_E_CONFIG;
        }
        memcpy(host, s + 1, n);
        host[n] = '\0';
        port_s = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (colon == NULL || colon == s) {
            snprintf(err, err_len, "expected \"HOST:PORT\", got \"%s\"", s);
            return TG_E_CONFIG;
        }
        size_t n = (size_t)(colon - s);
        if (n >= sizeof(host) || memchr(s, ':', n) != NULL) {
            snprintf(err, err_len, "bad host in \"%s\" (write IPv6 as [addr]:port)", s);
            return TG_E_CONFIG;
        }
        memcpy(host, s, n);
        host[n] = '\0';
        port_s = colon + 1;
    }

    char *end = NULL;
    errno = 0;
    long port = strtol(port_s, &end, 10);
    if (*port_s == '\0' || *end != '\0' || errno != 0 || port < (allow_port0 ? 0 : 1) ||
        port > 65535) {
        snprintf(err, err_len, "bad port \"%s\" (1-65535)", port_s);
        return TG_E_CONFIG;
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, port_s, &hints, &res);
    if (rc != 0 || res == NULL) {
        snprintf(err, err_len, "cannot resolve \"%s\": %s", host, gai_strerror(rc));
        return TG_E_CONFIG;
    }
    if (res->ai_addrlen > sizeof(out->ss) ||
        (res->ai_family != AF_INET && res->ai_family != AF_INET6)) {
        snprintf(err, err_len, "cannot resolve \"%s\": not an IPv4 or IPv6 address", host);
        freeaddrinfo(res);
        return TG_E_CONFIG;
    }
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    return TG_OK;
}

bool net_addr_is_any(const struct net_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return a->ss.sin.sin_addr.s_addr == htonl(INADDR_ANY);
    if (a->ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&a->ss.sin6.sin6_addr);
    return false;
}

/* Dotted-quad text of an IPv4 address into dst (at least 16 bytes); its
 * length. glibc's inet_ntop formats with sprintf, and every proxied https
 * request names its client. */
static size_t ipv4_text(const uint8_t b[4], char *dst)
{
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        unsigned v = b[i];
        if (v >= 100)
            dst[n++] = (char)('0' + v / 100);
        if (v >= 10)
            dst[n++] = (char)('0' + v / 10 % 10);
        dst[n++] = (char)('0' + v % 10);
        dst[n++] = i < 3 ? '.' : '\0';
    }
    return n - 1;
}

void net_addr_host(const struct net_addr *a, char *dst, size_t dst_len)
{
    const void *src = NULL;
    if (a->ss.ss_family == AF_INET) {
        char text[INET_ADDRSTRLEN];
        size_t n =
            ipv4_text((const uint8_t *)&((const struct sockaddr_in *)&a->ss)->sin_addr, text);
        if (n < dst_len)
            memcpy(dst, text, n + 1);
        else
            snprintf(dst, dst_len, "?"); /* as inet_ntop's ENOSPC */
        return;
    }
    if (a->ss.ss_family == AF_INET6)
        src = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    if (src == NULL || inet_ntop(a->ss.ss_family, src, dst, (socklen_t)dst_len) == NULL)
        snprintf(dst, dst_len, "?");
}

unsigned net_addr_port(const struct net_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return 0;
}

void net_addr_format(const struct net_addr *a, char *dst, size_t dst_len)
{
    char host[INET6_ADDRSTRLEN];
    net_addr_host(a, host, sizeof(host));
    if (a->ss.ss_family == AF_INET6)
        snprintf(dst, dst_len, "[%s]:%u", host, net_addr_port(a));
    else
        snprintf(dst, dst_len, "%s:%u", host, net_addr_port(a));
}

bool net_addr_is_loopback(const struct net_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        uint32_t ip = ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr);
        return (ip >> 24) == 127;
    }
    if (a->ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
    return false;
}

bool net_addr_equal(const struct net_addr *a, const struct net_addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family || net_addr_port(a) != net_addr_port(b))
        return false;
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)&b->ss)->sin_addr.s_addr;
    if (a->ss.ss_family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
                      &((const struct sockaddr_in6 *)&b->ss)->sin6_addr,
                      sizeof(struct in6_addr)) == 0;
    return false;
}

enum tg_status net_listen(const struct net_addr *a, int backlog, int *fd_out)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TG_E_INTERNAL;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* Accepted sockets inherit it (Linux): no setsockopt() per connection. */
    net_set_nodelay(fd);
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return TG_E_INTERNAL;
    }
    *fd_out = fd;
    return TG_OK;
}

enum tg_status net_connect(const struct net_addr *a, int *fd_out, bool *in_progress)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TG_E_INTERNAL;
    net_set_nodelay(fd);
    *in_progress = false;
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            errno = e;
            return TG_E_INTERNAL;
        }
        *in_progress = true;
    }
    *fd_out = fd;
    return TG_OK;
}

enum tg_status net_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return TG_E_INTERNAL;
    if (err != 0) {
        errno = err;
        return TG_E_INTERNAL;
    }
    return TG_OK;
}

void net_set_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void net_set_defer_accept(int fd, int seconds)
{
    setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof(seconds));
}

bool net_is_ip_literal(const char *s)
{
    unsigned char a[16];
    return s != NULL && (inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1);
}

void net_address_host(const char *addr, char *dst, size_t len)
{
    const char *start = addr, *end = strrchr(addr, ':');
    if (addr[0] == '[') {
        start = addr + 1;
        end = strchr(addr, ']');
    }
    if (end == NULL)
        end = addr + strlen(addr);
    snprintf(dst, len, "%.*s", (int)(end - start), start);
}
