#ifndef TG_TESTS_PP2_DECODE_H
#define TG_TESTS_PP2_DECODE_H

/* A strict PROXY v2 decoder, for the tests and the fuzzer to check what
 * tollgate's encoder (src/proxy/proxyproto.c) sends. Not part of tollgate. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/proxy.h"

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
