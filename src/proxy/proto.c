/* The listener protocols: one table each (struct proto_ops). */
#include "proxy/http1.h"
#include "proxy/session.h"
#include "proxy/tcp.h"

const struct proto_ops *proto_ops_for(enum cfg_listener_proto p)
{
    return p == CFG_PROTO_TCP_SSL ? &tcp_proto_ops : &http_proto_ops;
}
