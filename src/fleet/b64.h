#ifndef TG_FLEET_B64_H
#define TG_FLEET_B64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Standard base64 (RFC 4648 §4, with padding), as etcd's JSON gateway
 * carries keys and values. Pure functions.
 */

/* The encoding of data[0..len) as a NUL-terminated heap string; NULL when
 * out of memory. */
char *fleet_b64_encode(const uint8_t *data, size_t len);

/* Decodes the len characters at s (no whitespace, padding required, the
 * bits a padded group leaves over zero: one encoding per byte string) into
 * a heap buffer of *out_len bytes (NUL-terminated for convenience).
 * False on a malformed input, one decoding to more than max bytes, or no
 * memory. */
bool fleet_b64_decode(const char *s, size_t len, size_t max, uint8_t **out, size_t *out_len);

#endif
