/*
 * What tollgate's own TLS clients (backend re-encryption, https health
 * checks) set on a connection for the name they expect of the server.
 */
#include "net/net.h"
#include "tls/tls.h"

bool tls_client_set_peer(SSL *ssl, const char *name, bool verify)
{
    bool is_ip = net_is_ip_literal(name);
    /* RFC 6066 §3: an IP address is never sent as SNI. */
    if (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1)
        return false;
    if (!verify)
        return true;
    if (is_ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    return SSL_set1_host(ssl, name) == 1;
}
