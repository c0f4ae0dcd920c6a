#ifndef TG_PROXY_PROXY_H
#define TG_PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/shm.h"
#include "core/status.h"
#include "net/net.h"
#include "tls/tls.h"

/* ---- the worker process (worker.c) ---- */

/* One listening socket as the master hands it to a worker. */
struct proxy_listener {
    const struct cfg_listener *cfg; /* borrowed from the generation's config */
    int fd;                         /* listening socket, shared with the master */
    struct tls_server *tls;         /* borrowed; NULL for plain http */
};

struct proxy_worker_args {
    const struct config *cfg;         /* borrowed, read-only */
    struct proxy_listener *listeners; /* borrowed array, cfg->n_listeners long */
    struct shm_stats *stats;          /* borrowed shared counters of this generation */
    unsigned generation;
    unsigned slot; /* 0..workers-1 */
};

/*
 * Runs a worker in the current (freshly forked) process: one libev loop
 * accepting on every listener and proxying, until SIGTERM/SIGQUIT drains it
 * (stop accepting, finish connections, at most cfg->drain_timeout_ms).
 * Returns the process exit code. Blocks until then.
 */
int proxy_worker_main(const struct proxy_worker_args *a);

/* ---- PROXY protocol (proxyproto.c), haproxy's proxy-protocol.txt ---- */

/* PROXY v2 TLV types (proxy-protocol.txt §2.2). */
enum {
    PP2_TYPE_ALPN = 0x01,
    PP2_TYPE_AUTHORITY = 0x02,
    PP2_TYPE_SSL = 0x20,
    PP2_SUBTYPE_SSL_VERSION = 0x21,
    PP2_SUBTYPE_SSL_CN = 0x22,
    PP2_SUBTYPE_SSL_CIPHER = 0x23,
    PP2_SUBTYPE_SSL_SIG_ALG = 0x24,
    PP2_SUBTYPE_SSL_KEY_ALG = 0x25,
    /* tollgate's own, in the custom range 0xE0-0xEF: the client
     * certificate, DER. */
    PP2_TYPE_TOLLGATE_CLIENT_CERT = 0xE0,
};

/* PP2_TYPE_SSL client flags (§2.2.5). */
enum {
    PP2_CLIENT_SSL = 0x01,
    PP2_CLIENT_CERT_CONN = 0x02,
    PP2_CLIENT_CERT_SESS = 0x04,
};

/* What a PROXY header says about a connection. Strings are borrowed and
 * may be NULL (v1 uses only the addresses). */
struct pp_info {
    struct net_addr src; /* the client */
    struct net_addr dst; /* the address the client connected to */
    const char *alpn;
    const char *authority; /* SNI */
    bool has_ssl;
    uint8_t ssl_client;  /* PP2_CLIENT_* flags */
    uint32_t ssl_verify; /* 0 = client certificate verified */
    const char *ssl_version;
    const char *ssl_cipher;
    const char *ssl_cn;
    const uint8_t *client_cert_der;
    size_t client_cert_der_len;
};

/*
 * Encodes a v1 ("PROXY TCP4 ...\r\n") or v2 (binary, PROXY command) header
 * into dst. Returns TG_OK with *len set, TG_E_AGAIN when cap is too small
 * (v2 sets *len to the size it needs; v1 needs at most 108 bytes), and for
 * v2 TG_E_PROTO when a value cannot fit its 16-bit length field.
 * Addresses of another family than IPv4/IPv6, or of mixed families, are
 * encoded as "PROXY UNKNOWN" (v1) or AF_UNSPEC (v2) as the spec says.
 */
TG_MUST_USE enum tg_status proxyproto_v1_encode(const struct pp_info *pi, uint8_t *dst, size_t cap,
                                                size_t *len);
TG_MUST_USE enum tg_status proxyproto_v2_encode(const struct pp_info *pi, uint8_t *dst, size_t cap,
                                                size_t *len);

/* A decoded v2 header, for tests and fuzzing: TLV values point into the
 * input buffer. */
struct pp_decoded {
    bool is_local;
    struct net_addr src, dst;
    const uint8_t *tlv_alpn;
    size_t tlv_alpn_len;
    const uint8_t *tlv_authority;
    size_t tlv_authority_len;
    const uint8_t *tlv_ssl; /* the whole SSL TLV value */
    size_t tlv_ssl_len;
    const uint8_t *tlv_client_cert;
    size_t tlv_client_cert_len;
};

/* Decodes a v2 header from src. TG_OK with *consumed = header length;
 * TG_E_AGAIN when more bytes are needed; TG_E_PROTO when malformed. */
TG_MUST_USE enum tg_status proxyproto_v2_decode(const uint8_t *src, size_t len,
                                                struct pp_decoded *out, size_t *consumed);

#endif
