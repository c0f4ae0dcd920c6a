#ifndef TG_CORE_OCSP_SHM_H
#define TG_CORE_OCSP_SHM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The OCSP responses a generation staples: one slot per certificates:
 * entry of its config, in an anonymous shared mapping the master makes
 * before it forks the generation's workers. One writer (the master, which
 * fetches and checks every response); readers (a worker's status callback,
 * the admin endpoint) copy a slot under a sequence counter (odd while it is
 * written) and retry when it moved, so they never see half a response.
 * Only responses that passed every check (tls_ocsp_check) are published.
 */

/* The largest response a slot holds, and so the largest one fetched or
 * read from an ocsp_file. */
#define OCSP_RESP_MAX  (16 * 1024)
#define OCSP_ERROR_MAX 160

/* What a slot offers (its cert_status when a response is there). */
enum ocsp_state {
    OCSP_STATE_OFF,     /* stapling is off for this certificate (no source, or ocsp: off) */
    OCSP_STATE_NONE,    /* no response yet, or the last one expired */
    OCSP_STATE_GOOD,    /* a response saying good is stapled */
    OCSP_STATE_REVOKED, /* a response saying revoked is stapled */
};

/* The facts about a slot, without the response itself. */
struct ocsp_info {
    uint32_t state;                  /* enum ocsp_state */
    uint32_t len;                    /* bytes of the response; 0 unless GOOD or REVOKED */
    int64_t this_update;             /* Unix seconds of the stapled response; 0 when none */
    int64_t next_update;             /* never stapled at or after this second */
    int64_t updated_at;              /* when the master published this response */
    int64_t last_error_at;           /* Unix seconds of the last failure; 0 when none */
    char last_error[OCSP_ERROR_MAX]; /* "reason: detail" of the last failure; "" when none */
};

struct ocsp_slot {
    _Atomic uint64_t seq;
    struct ocsp_info info;
    uint8_t der[OCSP_RESP_MAX];
};

struct ocsp_shm {
    size_t n;
    struct ocsp_slot v[];
};

/* Maps n zeroed slots (every one OCSP_STATE_OFF); NULL on failure. */
struct ocsp_shm *ocsp_shm_new(size_t n);
void ocsp_shm_free(struct ocsp_shm *shm);

/* Writer: replaces slot i's facts and response (len <= OCSP_RESP_MAX, else
 * nothing changes and false is returned). der may be NULL when len is 0. */
bool ocsp_shm_publish(struct ocsp_shm *shm, size_t i, const struct ocsp_info *info,
                      const uint8_t *der, size_t len);

/* Writer: records a failure in slot i (the response stays). */
void ocsp_shm_note_error(struct ocsp_shm *shm, size_t i, const char *error, int64_t at);

/* Copies slot i's facts into out; false if it kept changing (bounded) or i
 * is out of range. */
bool ocsp_shm_info(const struct ocsp_shm *shm, size_t i, struct ocsp_info *out);

/*
 * A worker's copy of slot i's response for a handshake at Unix time now:
 * allocates it with alloc (OPENSSL_malloc in the status callback; freed by
 * the caller or by OpenSSL) and returns it with its length in *len. NULL
 * when there is nothing to staple: no response, one whose nextUpdate is not
 * after now, allocation failure, or a slot that kept changing.
 */
uint8_t *ocsp_shm_copy(const struct ocsp_shm *shm, size_t i, int64_t now, size_t *len,
                       void *(*alloc)(size_t), void (*release)(void *));

/* "off", "none", "good" or "revoked". */
const char *ocsp_state_name(uint32_t state);

#endif
