/* The listener protocols: one table each (struct proto_ops). */
#include "proxy/h2.h"
#include "proxy/http1.h"
#include "proxy/session.h"
#include "proxy/tcp.h"

#include <string.h>

const struct proto_ops *proto_ops_for(const struct cfg_listener *l)
{
    return l->protocol == CFG_PROTO_TCP_SSL ? &tcp_proto_ops : &http_proto_ops;
}

size_t proto_session_size(const struct cfg_listener *l)
{
    size_t n = proto_ops_for(l)->size;
    if (l->protocol == CFG_PROTO_HTTPS && (l->alpn & CFG_ALPN_H2) && h2_proto_ops.size > n)
        n = h2_proto_ops.size;
    return n;
}

const struct proto_ops *proto_ops_negotiated(const struct session *s)
{
    const unsigned char *p = NULL;
    unsigned len = 0;
    if (s->ssl == NULL || s->l->cfg->protocol != CFG_PROTO_HTTPS)
        return s->ops;
    SSL_get0_alpn_selected(s->ssl, &p, &len);
    if (len == 2 && memcmp(p, "h2", 2) == 0)
        return &h2_proto_ops;
    return s->ops;
}

void proto_drain_nothing(struct session *s)
{
    (void)s;
}
