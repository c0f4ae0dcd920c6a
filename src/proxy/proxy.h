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

/* §2.2: the 12 bytes every v2 header starts with. */
#define PP2_SIG_LEN 12
extern const uint8_t proxyproto_v2_sig[PP2_SIG_LEN];

/* The v2 header's fixed parts (§2.1, §2.2). */
enum {
    PP1_MAX_LEN = 107, /* §2.1: the longest v1 line, CRLF included */
    PP2_HDR_LEN = 16,  /* signature, ver/cmd, family, length */
    PP2_VERSION = 0x20,
    PP2_CMD_LOCAL = 0x00,
    PP2_CMD_PROXY = 0x01,
    PP2_FAM_UNSPEC = 0x00,
    PP2_FAM_TCP4 = 0x11,
    PP2_FAM_UDP4 = 0x12,
    PP2_FAM_TCP6 = 0x21,
    PP2_FAM_UDP6 = 0x22,
    PP2_FAM_UNIX_STREAM = 0x31,
    PP2_FAM_UNIX_DGRAM = 0x32,
    PP2_ADDR_LEN_INET = 12,
    PP2_ADDR_LEN_INET6 = 36,
    PP2_ADDR_LEN_UNIX = 216,
    PP2_TLV_HDR_LEN = 3,   /* type(1), length(2) */
    PP2_SSL_FIXED_LEN = 5, /* client(1), verify(4), then sub-TLVs (§2.2.5) */
    PP2_MAX_VALUE = 0xFFFF,
};

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

#endif
