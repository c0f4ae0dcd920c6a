#ifndef TG_FLEET_SEAL_H
#define TG_FLEET_SEAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/ticket.h"

/*
 * Session-ticket keys sealed for etcd. One node generates the keys and
 * stores them sealed (AES-256-GCM) under a key every node derives from a
 * secret file on its own disk; the others open them. Neither the secret nor
 * key bytes are ever written into a message.
 *
 * Token (text, as etcd stores it):
 *   "tgk1." base64(nonce, 12 bytes) "." base64(ciphertext | tag, 16 bytes)
 * base64 as fleet/b64.h (RFC 4648 §4, padded, canonical). The caller's aad
 * (the etcd key name) is bound into the tag, so a token copied under another
 * name does not open.
 *
 * Plaintext, big-endian fixed-size fields:
 *   0  u32 version (FLEET_TICKETS_VERSION)
 *   4  u64 rotated_at (unix seconds of the last rotation)
 *   12 u64 generation (raised by the node that rotates)
 *   20 u32 n (1..TICKET_KEYS_MAX)
 *   24 u32 enc (< n: the key that encrypts new tickets)
 *   28 n keys of TICKET_KEY_LEN bytes, distinct names; nothing after them
 */

#define FLEET_SECRET_MIN 32   /* bytes of secret a file must hold */
#define FLEET_SECRET_MAX 4096 /* bytes a secret file may hold, newline included */

#define FLEET_TOKEN_PREFIX    "tgk1."
#define FLEET_TOKEN_MAX       4096 /* bytes of a token fleet_tickets_open reads */
#define FLEET_TICKETS_VERSION 1
#define FLEET_TICKETS_HDR     28
#define FLEET_TICKETS_MAX     (FLEET_TICKETS_HDR + TICKET_KEYS_MAX * TICKET_KEY_LEN)

/* The sealing key. Wipe it with fleet_secret_wipe. */
struct fleet_secret {
    uint8_t key[32];
};

/*
 * Reads the secret file at path and derives the sealing key into *out:
 * HKDF-SHA256 (RFC 5869) of the file's bytes, salt "tollgate fleet", info
 * "session ticket keys v1". The file must be a regular file of at most
 * FLEET_SECRET_MAX bytes holding at least FLEET_SECRET_MIN bytes once one
 * trailing newline is dropped (any bytes: "openssl rand -base64 48" makes
 * one), and group and others must have no access to it (mode & 077 zero).
 * TG_E_CONFIG with a reason in err ("PATH: ...", saying how to fix a wide
 * mode: chmod 600) when refused, TG_E_NOMEM, TG_E_INTERNAL when OpenSSL
 * fails; *out is wiped on failure. Blocks on the file system only.
 */
TG_MUST_USE enum tg_status fleet_secret_load(const char *path, struct fleet_secret *out, char *err,
                                             size_t err_len);

/* The derivation fleet_secret_load applies to the len bytes at ikm (len > 0).
 * TG_E_INTERNAL, *out wiped, if OpenSSL fails. */
TG_MUST_USE enum tg_status fleet_secret_derive(const uint8_t *ikm, size_t len,
                                               struct fleet_secret *out);

/* Wipes *s; NULL does nothing. */
void fleet_secret_wipe(struct fleet_secret *s);

/*
 * Seals set (its n, enc and keys, as the plaintext above), the unix time of
 * its last rotation and its generation, bound to aad (a NUL-terminated
 * string, normally the etcd key name). Returns the token as a heap string
 * (free with free), or NULL when set would not open (n, enc, names), when
 * out of memory or when OpenSSL fails. Each call draws a fresh nonce.
 */
char *fleet_tickets_seal(const struct fleet_secret *s, const char *aad,
                         const struct ticket_set *set, uint64_t rotated_at, uint64_t generation);

/*
 * Opens the len bytes at token (not necessarily NUL-terminated, at most
 * FLEET_TOKEN_MAX) sealed with s and aad into *set, *rotated_at and
 * *generation. Refuses, with TG_E_PROTO and a reason in err (no key bytes),
 * a wrong prefix, malformed base64, a nonce not of 12 bytes, a tag that does
 * not match (another secret, another aad, a changed token) and a plaintext
 * fleet_tickets_decode refuses (base64 that finds no memory reads as
 * malformed); TG_E_INTERNAL when OpenSSL fails otherwise. On failure *set
 * is wiped and *rotated_at and *generation are 0.
 */
TG_MUST_USE enum tg_status fleet_tickets_open(const struct fleet_secret *s, const char *aad,
                                              const char *token, size_t len, struct ticket_set *set,
                                              uint64_t *rotated_at, uint64_t *generation, char *err,
                                              size_t err_len);

/* ---- the plaintext alone (pure functions, for the tests and the fuzzer) ---- */

/* Writes the plaintext of set into out and returns its length, or 0 when
 * set is one fleet_tickets_decode would refuse. */
size_t fleet_tickets_encode(const struct ticket_set *set, uint64_t rotated_at, uint64_t generation,
                            uint8_t out[FLEET_TICKETS_MAX]);

/*
 * Parses a plaintext: the version, n from 1 to TICKET_KEYS_MAX, enc < n,
 * exactly n keys with distinct names and no byte after them. TG_E_PROTO with
 * a reason in err on failure, *set wiped and *rotated_at, *generation 0.
 */
TG_MUST_USE enum tg_status fleet_tickets_decode(const uint8_t *pt, size_t len,
                                                struct ticket_set *set, uint64_t *rotated_at,
                                                uint64_t *generation, char *err, size_t err_len);

/*
 * Sealed files: a key pushed to the fleet with --with-keys is stored as
 * "tgf1.<base64 nonce>.<base64 ciphertext and tag>", AES-256-GCM under the
 * same secret, aad the etcd key it is stored under. At most
 * FLEET_SEALED_MAX bytes of plaintext.
 */
#define FLEET_FILE_PREFIX "tgf1."
#define FLEET_SEALED_MAX  (1u << 20)

/* A heap token; NULL when out of memory or too large. */
char *fleet_seal(const struct fleet_secret *s, const char *aad, const uint8_t *data, size_t len);

/* Opens token[0..len) into a heap buffer *out (NUL-terminated after
 * *out_len bytes; wipe before freeing). TG_E_PROTO when malformed or when
 * it does not open. */
TG_MUST_USE enum tg_status fleet_open(const struct fleet_secret *s, const char *aad,
                                      const char *token, size_t len, uint8_t **out, size_t *out_len,
                                      char *err, size_t err_len);

#endif
