#ifndef TG_NET_NET_H
#define TG_NET_NET_H

#include <stdbool.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/status.h"

/* An IPv4 or IPv6 socket address: listeners, targets and peers are TCP over
 * IP. 28 bytes instead of sockaddr_storage's 128, which every connection
 * would carry twice (peer and local address). ss_family reads the family
 * field that the three sockaddr types begin with. */
union net_sockaddr {
    sa_family_t ss_family;
    struct sockaddr sa;
    struct sockaddr_in sin;
    struct sockaddr_in6 sin6;
};

/* An address with its length, as the socket calls want it. */
struct net_addr {
    union net_sockaddr ss;
    socklen_t len;
};

/*
 * Parses "HOST:PORT" where HOST is an IPv4 literal, "[IPv6]" literal or a
 * name (resolved with getaddrinfo, first result; this can block, so call it
 * only while loading a config). Port 1..65535 (0 allowed when allow_port0).
 * On failure writes a human-readable reason into err and returns
 * TG_E_CONFIG.
 */
TG_MUST_USE enum tg_status net_addr_parse(const char *s, bool allow_port0, struct net_addr *out,
                                          char *err, size_t err_len);

/* Formats an address as "1.2.3.4:80" or "[::1]:80" into dst. */
void net_addr_format(const struct net_addr *a, char *dst, size_t dst_len);

/* True for the wildcard address (0.0.0.0 or ::), whatever the port. */
bool net_addr_is_any(const struct net_addr *a);

/* Whether s is an IPv4 or IPv6 address literal (no brackets, no port):
 * what TLS clients check as an IP SAN and never send as SNI. */
bool net_is_ip_literal(const char *s);

/* The host part of an address as written, "h:80" or "[::1]:80" (a
 * bracketed IPv6 address loses its brackets; no port leaves it whole),
 * into dst, cut to len - 1 bytes. */
void net_address_host(const char *addr, char *dst, size_t len);

/* Formats only the host part ("1.2.3.4", "::1"). */
void net_addr_host(const struct net_addr *a, char *dst, size_t dst_len);

/* Returns the port in host order. */
unsigned net_addr_port(const struct net_addr *a);

/* True when the address is loopback (127.0.0.0/8 or ::1). */
bool net_addr_is_loopback(const struct net_addr *a);

/* True when both addresses are equal (family, address, port). */
bool net_addr_equal(const struct net_addr *a, const struct net_addr *b);

/* Opens a non-blocking, close-on-exec listening TCP socket with SO_REUSEADDR
 * and TCP_NODELAY, which accepted sockets inherit (and IPV6_V6ONLY for
 * IPv6). Returns TG_E_INTERNAL with errno set. */
TG_MUST_USE enum tg_status net_listen(const struct net_addr *a, int backlog, int *fd_out);

/* Starts a non-blocking connect. *in_progress is true when the caller must
 * wait for writability and then call net_connect_result(). */
TG_MUST_USE enum tg_status net_connect(const struct net_addr *a, int *fd_out, bool *in_progress);

/* After a non-blocking connect became writable: TG_OK or TG_E_INTERNAL with
 * errno set to the connect error. */
TG_MUST_USE enum tg_status net_connect_result(int fd);

/* Sets TCP_NODELAY; failures are ignored (not every socket is TCP). */
void net_set_nodelay(int fd);

/* Sets TCP_DEFER_ACCEPT on a listening socket: the kernel completes a
 * connection for accept() once its first bytes arrived, or after about
 * `seconds` of silence; failures are ignored. */
void net_set_defer_accept(int fd, int seconds);

#endif
