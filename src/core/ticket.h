#ifndef TG_CORE_TICKET_H
#define TG_CORE_TICKET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Session-ticket keys: the set a master publishes (generated and rotated,
 * or read from ticket_keys_file), the parser of that file, and the shared
 * mapping workers read the set from. Pure functions except ticket_shm_*.
 * Key bytes are never written into a message.
 */

#define TICKET_KEY_LEN     80 /* name (16) | HMAC-SHA256 secret (32) | AES-256 key (32) */
#define TICKET_NAME_LEN    16
#define TICKET_KEYS_MAX    8 /* keys a ticket_keys_file may hold */
#define TICKET_KEYS_ROTATE 3 /* generated keys kept: the newest and the two before it */

struct ticket_key {
    uint8_t bytes[TICKET_KEY_LEN];
};

/* The keys in use: v[enc] encrypts new tickets, every v[0..n) decrypts. */
struct ticket_set {
    size_t n;
    size_t enc;
    struct ticket_key v[TICKET_KEYS_MAX];
};

static inline const uint8_t *ticket_key_name(const struct ticket_key *k)
{
    return k->bytes;
}
static inline const uint8_t *ticket_key_hmac(const struct ticket_key *k)
{
    return k->bytes + 16;
}
static inline const uint8_t *ticket_key_aes(const struct ticket_key *k)
{
    return k->bytes + 48;
}

/* Wipes every key of s and empties it. */
void ticket_set_wipe(struct ticket_set *s);

/* One rotation: fresh becomes v[0] and encrypts; the keys before it move
 * down; at most TICKET_KEYS_ROTATE stay, the one that falls off is wiped. */
void ticket_set_rotate(struct ticket_set *s, const struct ticket_key *fresh);

/* The key named name, or NULL; *is_current tells whether it encrypts. */
const struct ticket_key *ticket_set_find(const struct ticket_set *s, const uint8_t *name,
                                         bool *is_current);

/*
 * Parses the contents of a ticket_keys_file into out: either binary, a
 * multiple of 80 bytes, or text, one base64 line of 80 bytes per key
 * (blank lines ignored). 1 to TICKET_KEYS_MAX keys. With one key it
 * encrypts; with more, the last but one encrypts and the last is accepted
 * only (staged for the next rotation). Every key decrypts. On failure
 * returns false with a reason (no key bytes) in err.
 */
bool ticket_file_parse(const uint8_t *data, size_t len, struct ticket_set *out, char *err,
                       size_t err_len);

/*
 * The set shared by the master and its workers: an anonymous shared
 * mapping made before the first fork (reachable by no other process),
 * excluded from core dumps. One writer (the master); readers copy the set
 * under a sequence counter (odd while written) and retry if it changed.
 */
struct ticket_shm {
    _Atomic uint64_t seq;
    struct ticket_set set;
};

struct ticket_shm *ticket_shm_new(void);
void ticket_shm_free(struct ticket_shm *shm);
void ticket_shm_publish(struct ticket_shm *shm, const struct ticket_set *s);
/* Copies the current set into out; false if it kept changing (bounded). */
bool ticket_shm_read(const struct ticket_shm *shm, struct ticket_set *out);

#endif
