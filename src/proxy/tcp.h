#ifndef TG_PROXY_TCP_H
#define TG_PROXY_TCP_H

/* Private to src/proxy: the tcp_ssl protocol, a byte relay. */

#include "proxy/session.h"

/* The table of tcp_ssl listeners. */
extern const struct proto_ops tcp_proto_ops;

/* The RELAY handler: moves bytes both ways between the client and the
 * target of s->ex (c2b, b2c); also the tunnel after a WebSocket upgrade. */
enum conn_state tcp_relay(struct session *c);

#endif
